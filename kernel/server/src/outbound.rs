//! The SMTP transport of the kernel's outbound channel.
//!
//! Plugins queue messages with `outbound.send`, which stores an
//! `outbound_message` record with status `queued` in the same transaction
//! as the rest of the plugin's write. Without a transport those records are
//! the dev mailbox an admin reads over GraphQL. With `--smtp-url`, one
//! worker per open tenant hands queued email to the SMTP server and writes
//! the outcome back on the record:
//!
//! - `delivered`: the SMTP server accepted the message (`sent_at` set);
//! - `bounced`: it refused it permanently (a 5xx reply; `error` says why);
//! - `failed`: the address is unusable, or transient failures (4xx, network)
//!   went on for [`MAX_ATTEMPTS`] attempts; until then the message stays
//!   `queued` with `attempts` and `retry_at` (backoff by the kernel clock).
//!
//! Delivery is at least once: a crash between the SMTP server's acceptance
//! and the status write sends that message again after the restart.
//! Status writes are ordinary audited writes by the actor `outbound`, so
//! plugins follow delivery with an after-commit hook on `outbound_message`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crm_core::query::{Condition, Filter, ListQuery, PageRequest};
use crm_core::{Actor, Kernel, Mutation, Record, TenantStore, Value, WriteRequest};
use futures::StreamExt;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

/// Transient failures tolerated before a message is marked `failed`.
pub const MAX_ATTEMPTS: i64 = 8;
/// Queued messages taken per pass.
const PAGE: usize = 256;

/// How the server reaches its SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtp://[user:pass@]host[:port]` (plain; add `?tls=required` for
    /// STARTTLS) or `smtps://…` (TLS from the first byte).
    pub url: String,
    /// The sender of every message (`Name <address>` or an address).
    pub from: String,
    /// SMTP connections used at once.
    pub connections: u32,
}

/// The transport, ready to send.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    connections: usize,
    domain: String,
}

impl Smtp {
    pub fn new(config: &SmtpConfig) -> Result<Smtp> {
        let from: Mailbox = config.from.parse().with_context(|| format!("--smtp-from '{}' is not an email address", config.from))?;
        let connections = config.connections.max(1);
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&config.url)
            .context("--smtp-url must look like smtp://host:port, smtp://user:pass@host:587?tls=required or smtps://host")?
            .pool_config(PoolConfig::new().max_size(connections))
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let domain = from.email.domain().to_string();
        Ok(Smtp { transport, from, connections: connections as usize, domain })
    }

    /// Starts the workers: one per tenant store as it opens.
    pub fn start(self, kernel: Arc<Kernel>) {
        tokio::spawn(async move {
            let mut running: HashSet<String> = HashSet::new();
            loop {
                for store in kernel.open_tenants() {
                    if running.insert(store.id().to_string()) {
                        tokio::spawn(self.clone().worker(store));
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// Sends the tenant's queued email as it arrives, and retries when due.
    async fn worker(self, store: Arc<TenantStore>) {
        let mut changes = store.subscribe();
        loop {
            match self.pass(&store).await {
                // A full page: more may be waiting.
                Ok(taken) if taken == PAGE => continue,
                Ok(_) => {}
                Err(error) => tracing::error!(tenant = %store.id(), %error, "outbound delivery pass failed"),
            }
            tokio::select! {
                changed = changes.recv() => {
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changed {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Sends one page of due messages; returns how many it took.
    async fn pass(&self, store: &Arc<TenantStore>) -> Result<usize> {
        let now = crm_core::clock::now_ms();
        let due = Filter::And(vec![
            Filter::field("status", Condition::Eq(Value::Text("queued".into()))),
            Filter::field("channel", Condition::Eq(Value::Text("email".into()))),
            Filter::Or(vec![Filter::field("retry_at", Condition::IsNull(true)), Filter::field("retry_at", Condition::Lte(Value::Int(now)))]),
        ]);
        let query = ListQuery::new("outbound_message").filter(due).sort("id", false);
        let page = store.list(&query, &PageRequest { first: Some(PAGE), ..PageRequest::default() }).map_err(|e| anyhow::anyhow!(e.message))?;
        let taken = page.records.len();
        if taken == 0 {
            return Ok(0);
        }
        // A message a plugin queued in a deferred write is sent only once it
        // is durable: a crash must not take back a message already sent.
        if store.unsynced() {
            store.sync().await.map_err(|e| anyhow::anyhow!(e.message))?;
        }
        let outcomes: Vec<(Record, Outcome)> = futures::stream::iter(page.records)
            .map(|record| async move {
                let outcome = self.send(&record).await;
                (record, outcome)
            })
            .buffer_unordered(self.connections)
            .collect()
            .await;
        let at = crm_core::clock::now_ms();
        let requests = outcomes.into_iter().map(|(record, outcome)| status_write(&record, outcome, at)).collect();
        for result in store.write_each(requests).await {
            if let Err(error) = result {
                // The record changed or went away meanwhile; the next pass
                // sees it as it is now.
                tracing::warn!(tenant = %store.id(), error = %error.message, "cannot record an outbound message's status");
            }
        }
        Ok(taken)
    }

    async fn send(&self, record: &Record) -> Outcome {
        let email = match self.compose(record) {
            Ok(email) => email,
            Err(reason) => return Outcome::Unsendable(reason),
        };
        match self.transport.send(email).await {
            Ok(_) => Outcome::Delivered,
            Err(error) if error.is_permanent() => Outcome::Bounced(error.to_string()),
            Err(error) => Outcome::Transient(error.to_string()),
        }
    }

    fn compose(&self, record: &Record) -> std::result::Result<lettre::Message, String> {
        let text = |field: &str| match record.get(field) {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        };
        let recipient = text("recipient").unwrap_or_default();
        let to: Mailbox = recipient.parse().map_err(|_| format!("'{recipient}' is not an email address"))?;
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(text("subject").unwrap_or_default())
            .message_id(Some(format!("<{}@{}>", record.id, self.domain)));
        let body = text("body").unwrap_or_default();
        let message = match text("html") {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(body, html)),
            None => builder.header(ContentType::TEXT_PLAIN).body(body),
        };
        message.map_err(|error| format!("cannot compose the message: {error}"))
    }
}

/// What became of one message.
#[derive(Debug)]
enum Outcome {
    Delivered,
    Bounced(String),
    Transient(String),
    Unsendable(String),
}

/// The status update a send outcome leads to.
fn status_write(record: &Record, outcome: Outcome, at: i64) -> WriteRequest {
    let attempts = match record.get("attempts") {
        Value::Int(attempts) => *attempts,
        _ => 0,
    } + 1;
    let mut fields = crm_core::Fields::from([("attempts".to_string(), Value::Int(attempts))]);
    let mut set = |name: &str, value: Value| {
        fields.insert(name.to_string(), value);
    };
    match outcome {
        Outcome::Delivered => {
            set("status", Value::Text("delivered".into()));
            set("sent_at", Value::Int(at));
            set("retry_at", Value::Null);
            set("error", Value::Null);
        }
        Outcome::Bounced(reason) => {
            set("status", Value::Text("bounced".into()));
            set("error", Value::Text(reason));
            set("retry_at", Value::Null);
        }
        Outcome::Unsendable(reason) => {
            set("status", Value::Text("failed".into()));
            set("error", Value::Text(reason));
            set("retry_at", Value::Null);
        }
        Outcome::Transient(reason) if attempts >= MAX_ATTEMPTS => {
            set("status", Value::Text("failed".into()));
            set("error", Value::Text(format!("gave up after {attempts} attempts: {reason}")));
            set("retry_at", Value::Null);
        }
        Outcome::Transient(reason) => {
            set("error", Value::Text(reason));
            set("retry_at", Value::Int(at + backoff_ms(attempts)));
        }
    }
    let update = Mutation::Update { object: "outbound_message".into(), id: record.id, fields, expected_version: Some(record.version) };
    WriteRequest::new(Actor("outbound".into()), vec![update])
}

/// Wait before attempt `attempts + 1`: 30 s doubling, at most an hour.
fn backoff_ms(attempts: i64) -> i64 {
    (30_000i64 << (attempts - 1).clamp(0, 7)).min(3_600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff_ms(1), 30_000);
        assert_eq!(backoff_ms(2), 60_000);
        assert_eq!(backoff_ms(3), 120_000);
        assert_eq!(backoff_ms(7), 1_920_000);
        assert_eq!(backoff_ms(8), 3_600_000);
        assert_eq!(backoff_ms(40), 3_600_000);
    }

    #[test]
    fn outcomes_become_statuses() {
        let mut record = Record {
            id: crm_core::RecordId(1),
            version: 3,
            created_at: 0,
            updated_at: 0,
            deleted_at: None,
            fields: Default::default(),
        };
        let fields = |request: WriteRequest| match request.mutations.into_iter().next() {
            Some(Mutation::Update { fields, expected_version, .. }) => {
                assert_eq!(expected_version, Some(3));
                fields
            }
            other => panic!("unexpected {other:?}"),
        };
        let delivered = fields(status_write(&record, Outcome::Delivered, 1000));
        assert_eq!(delivered["status"], Value::Text("delivered".into()));
        assert_eq!(delivered["sent_at"], Value::Int(1000));
        let bounced = fields(status_write(&record, Outcome::Bounced("550 no such user".into()), 1000));
        assert_eq!(bounced["status"], Value::Text("bounced".into()));
        let retry = fields(status_write(&record, Outcome::Transient("451 try later".into()), 1000));
        assert!(!retry.contains_key("status"), "a transient failure keeps the message queued");
        assert_eq!(retry["retry_at"], Value::Int(31_000));
        assert_eq!(retry["attempts"], Value::Int(1));
        record.fields.insert("attempts".into(), Value::Int(MAX_ATTEMPTS - 1));
        let gave_up = fields(status_write(&record, Outcome::Transient("451 try later".into()), 1000));
        assert_eq!(gave_up["status"], Value::Text("failed".into()));
    }
}
