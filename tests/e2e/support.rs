//! Drives the real `crm` binary: a server per test on port 0 in a temporary
//! data directory, GraphQL over HTTP and WebSocket, and the CLI.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The binary under test.
pub const CRM: &str = env!("CARGO_BIN_EXE_crm");

/// How long a server may take to print its listening line, and the outer
/// bound of every other wait, so a hung server fails a test instead of
/// hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Settings the binary reads from the environment; the tests pass flags,
/// so a developer's own `CRM_*` variables must not leak in.
const CRM_ENV: [&str; 15] = [
    "CRM_DATA_DIR",
    "CRM_PLUGIN_CACHE",
    "CRM_DEV_CLOCK",
    "CRM_SMTP_URL",
    "CRM_SMTP_FROM",
    "CRM_SMTP_CONNECTIONS",
    "CRM_LISTEN",
    "CRM_MAX_BODY_BYTES",
    "CRM_MAX_BATCH",
    "CRM_LOG",
    "CRM_RATE_LIMIT_KEY",
    "CRM_RATE_LIMIT_TENANT",
    "CRM_TLS_CERT",
    "CRM_TLS_KEY",
    "CRM_QUERY_PLANS",
];

pub fn command() -> Command {
    let mut command = Command::new(CRM);
    for name in CRM_ENV {
        command.env_remove(name);
    }
    command.env("CRM_LOG", "warn").env("CRM_PLUGIN_CACHE", plugin_cache()).stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// One compiled-plugin cache for every server and command of the run (it
/// outlives the run, under cargo's scratch directory for tests): the first
/// use compiles the bundled plugins into it once, then servers start
/// without compiling them again.
fn plugin_cache() -> &'static Path {
    static CACHE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-plugin-cache");
        let data = data_dir();
        let mut warm = std::process::Command::new(CRM)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .env("CRM_PLUGIN_CACHE", &cache)
            .env("CRM_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crm serve to warm the plugin cache");
        let stdout = std::io::BufReader::new(warm.stdout.take().expect("piped stdout"));
        for line in std::io::BufRead::lines(stdout) {
            if line.map(|line| line.starts_with("crm listening on")).unwrap_or(true) {
                break;
            }
        }
        let _ = warm.kill();
        let _ = warm.wait();
        cache
    })
}

/// A data directory removed when the test ends.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("crm-e2e-").tempdir().expect("create a temporary data directory")
}

/// Runs `crm ARGS --data-dir DIR` to completion.
pub async fn crm(dir: &Path, args: &[&str]) -> Output {
    let run = command().args(args).arg("--data-dir").arg(dir).output();
    tokio::time::timeout(TIMEOUT, run).await.expect("crm command timed out").expect("run crm")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `crm tenant create NAME` before any server runs; returns the admin key.
pub async fn create_tenant(dir: &Path, name: &str) -> String {
    let output = crm(dir, &["tenant", "create", name]).await;
    assert!(output.status.success(), "tenant create failed: {}", stderr(&output));
    let text = stdout(&output);
    let key = text
        .lines()
        .find_map(|line| line.strip_prefix("admin API key (shown once): "))
        .unwrap_or_else(|| panic!("no key in tenant create output: {text}"))
        .trim()
        .to_string();
    assert!(key.starts_with("crm_"), "unexpected key format: {key}");
    key
}

/// A response: status, content type, `retry-after` and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    /// The `location` header of a redirect.
    pub location: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text))
    }
}

/// A running `crm serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http`, or `https` for a server started with [`Server::start_tls`].
    pub scheme: &'static str,
    /// A TLS client configuration trusting the server's certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
    pub dir: PathBuf,
    /// The admin key of the `default` tenant.
    pub key: String,
    /// What the server printed before it listened.
    pub startup: Vec<String>,
    client: reqwest::Client,
    _owned_dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Server {
    /// A server on a fresh data directory.
    pub async fn start(args: &[&str]) -> Server {
        let dir = data_dir();
        let mut server = Server::start_in(dir.path(), args).await;
        server._owned_dir = Some(dir);
        server
    }

    /// A server on an existing data directory (the caller keeps it alive).
    pub async fn start_in(dir: &Path, args: &[&str]) -> Server {
        Server::launch(dir, args, None).await
    }

    /// A server on a fresh data directory serving HTTPS and WSS with a
    /// certificate; the clients trust `ca_pem` (the certificate itself, when
    /// it is self-signed). `args` carry `--tls-cert` and `--tls-key`.
    pub async fn start_tls(args: &[&str], ca_pem: &str) -> Server {
        let dir = data_dir();
        let mut server = Server::launch(dir.path(), args, Some(ca_pem)).await;
        server._owned_dir = Some(dir);
        server
    }

    async fn launch(dir: &Path, args: &[&str], ca_pem: Option<&str>) -> Server {
        let scheme = if ca_pem.is_some() { "https" } else { "http" };
        let listening = format!("crm listening on {scheme}://");
        let mut child = command()
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crm serve");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut startup = Vec::new();
        let wait = async {
            while let Some(line) = lines.next_line().await.expect("read server stdout") {
                if let Some(rest) = line.strip_prefix(listening.as_str()) {
                    let addr = rest.split('/').next().unwrap_or_default().to_string();
                    startup.push(line);
                    return Some(addr);
                }
                startup.push(line);
            }
            None
        };
        let addr = match tokio::time::timeout(TIMEOUT, wait).await {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("crm serve exited before listening: {:?}; printed {startup:?}", child.try_wait()),
            Err(_) => panic!("crm serve did not listen within {TIMEOUT:?}; printed {startup:?}"),
        };
        // Keep draining stdout so the server never blocks or fails on a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let key = std::fs::read_to_string(dir.join("admin-key")).expect("read admin-key").trim().to_string();
        assert!(key.starts_with("crm_"), "unexpected admin key: {key}");
        let mut client = reqwest::Client::builder().timeout(TIMEOUT);
        let mut tls = None;
        if let Some(ca_pem) = ca_pem {
            let certificate = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("a PEM certificate");
            client = client.use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(certificate);
            tls = Some(tls_client_config(ca_pem));
        }
        let client = client.build().expect("http client");
        Server { child, addr, scheme, tls, dir: dir.to_path_buf(), key, startup, client, _owned_dir: None }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/graphql", self.scheme, self.addr)
    }

    /// Kills the server with SIGKILL and waits until it is gone.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("kill the server");
        tokio::time::timeout(TIMEOUT, self.child.wait()).await.expect("server did not die").expect("wait for the server");
    }

    /// The id of the only tenant (the API does not expose tenant ids; the
    /// data directory holds one file per tenant).
    pub fn only_tenant_id(&self) -> String {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.join("tenants"))
            .expect("list tenants")
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.strip_suffix(".redb")).map(str::to_string))
            .collect();
        assert_eq!(ids.len(), 1, "expected exactly one tenant file, found {ids:?}");
        ids.remove(0)
    }

    /// POSTs raw bytes to /graphql with the given headers.
    pub async fn post_raw(&self, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> Reply {
        let mut request = self.client.post(self.url()).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply(request.send().await.expect("POST /graphql")).await
    }

    /// POSTs a JSON body to a path (`/auth/login`).
    pub async fn post_json(&self, path: &str, body: Value) -> Reply {
        let request = self.client.post(format!("{}://{}{path}", self.scheme, self.addr)).json(&body);
        reply(request.send().await.expect("POST")).await
    }

    /// GETs a path (`/healthz`, `/graphql?query=…`) with the given headers.
    pub async fn get(&self, path_and_query: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.get(format!("{}://{}{path_and_query}", self.scheme, self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        reply(request.send().await.expect("GET")).await
    }

    /// Any method on a path of the server (a plugin's public route, say),
    /// without following redirects.
    pub async fn request(&self, method: &str, path_and_query: &str, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(TIMEOUT).build().expect("http client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut request = client.request(method, format!("{}://{}{path_and_query}", self.scheme, self.addr)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        reply(request.send().await.expect("HTTP request")).await
    }

    /// A GraphQL request with `key` (none: no Authorization header).
    pub async fn post_gql(&self, key: Option<&str>, query: &str, variables: Value) -> Reply {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables })).expect("encode request");
        let bearer = key.map(|key| format!("Bearer {key}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        self.post_raw(&headers, body).await
    }

    /// A GraphQL request with `key`; asserts HTTP 200 and returns the body.
    pub async fn gql_as(&self, key: &str, query: &str, variables: Value) -> Value {
        let reply = self.post_gql(Some(key), query, variables).await;
        assert_eq!(reply.status, 200, "unexpected status for {query}: {}", reply.text);
        reply.json()
    }

    /// A GraphQL request with the admin key of `default`; the whole body.
    pub async fn gql(&self, query: &str, variables: Value) -> Value {
        self.gql_as(&self.key, query, variables).await
    }

    /// `data` of a request that must succeed without errors.
    pub async fn ok_as(&self, key: &str, query: &str, variables: Value) -> Value {
        let body = self.gql_as(key, query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors for {query}: {body}");
        body["data"].clone()
    }

    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        self.ok_as(&self.key, query, variables).await
    }

    /// The error code of a request that must fail with exactly one error.
    pub async fn code_as(&self, key: &str, query: &str, variables: Value) -> String {
        let body = self.gql_as(key, query, variables).await;
        single_code(&body)
    }

    pub async fn code(&self, query: &str, variables: Value) -> String {
        self.code_as(&self.key, query, variables).await
    }

    /// `crm_store_reads_total` of a tenant from /metrics.
    pub async fn reads(&self, tenant: &str) -> u64 {
        let metrics = self.get("/metrics", &[]).await;
        assert_eq!(metrics.status, 200);
        let prefix = format!("crm_store_reads_total{{tenant=\"{tenant}\"}} ");
        metrics
            .text
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no read counter for tenant {tenant} in {}", metrics.text))
            .trim()
            .parse()
            .expect("numeric counter")
    }

    /// The change feed from `after` to its end: (changes, cursor).
    pub async fn changes_since_as(&self, key: &str, after: Option<&str>) -> (Vec<Value>, String) {
        let mut all = Vec::new();
        let mut cursor = after.map(str::to_string);
        loop {
            let data = self
                .ok_as(
                    key,
                    "query($after: String) { changes(after: $after, first: 1000) { cursor hasMore changes { cursor object operation id version data } } }",
                    json!({ "after": cursor }),
                )
                .await;
            let feed = &data["changes"];
            all.extend(feed["changes"].as_array().expect("changes list").iter().cloned());
            cursor = Some(feed["cursor"].as_str().expect("cursor").to_string());
            if !feed["hasMore"].as_bool().expect("hasMore") {
                return (all, cursor.unwrap_or_default());
            }
        }
    }

    pub async fn changes_since(&self, after: Option<&str>) -> (Vec<Value>, String) {
        self.changes_since_as(&self.key, after).await
    }

    /// `totalCount` of a list query such as `contacts` or `deals`.
    pub async fn count_as(&self, key: &str, plural: &str) -> u64 {
        let data = self.ok_as(key, &format!("{{ {plural}(first: 1) {{ totalCount }} }}"), json!({})).await;
        data[plural]["totalCount"].as_u64().expect("totalCount")
    }

    pub async fn count(&self, plural: &str) -> u64 {
        self.count_as(&self.key, plural).await
    }

    /// Opens a graphql-transport-ws connection (not yet initialized).
    pub async fn websocket(&self) -> Ws {
        let ws_scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let mut request = format!("{ws_scheme}://{}/graphql", self.addr).into_client_request().expect("ws request");
        request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().expect("header"));
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector);
        let (stream, response) = tokio::time::timeout(TIMEOUT, connect)
            .await
            .expect("websocket connect timed out")
            .expect("websocket connect");
        let protocol = response.headers().get("sec-websocket-protocol").and_then(|value| value.to_str().ok());
        assert_eq!(protocol, Some("graphql-transport-ws"));
        Ws { stream }
    }
}

/// A rustls client configuration (ring provider) trusting only `ca_pem`.
fn tls_client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.expect("a PEM certificate")).expect("a usable root certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let (retry_after, location) = (header("retry-after"), header("location"));
    let text = response.text().await.expect("response body");
    Reply { status, content_type, retry_after, location, text }
}

/// Every `extensions.code` of a response.
pub fn codes(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors.iter().map(|error| error["extensions"]["code"].as_str().unwrap_or("<none>").to_string()).collect()
        })
        .unwrap_or_default()
}

/// The code of a response that carries exactly one error.
pub fn single_code(body: &Value) -> String {
    let codes = codes(body);
    assert_eq!(codes.len(), 1, "expected exactly one error, got {body}");
    codes.into_iter().next().unwrap_or_default()
}

/// The numeric value of a JSON number, for float comparisons.
pub fn num(value: &Value) -> f64 {
    value.as_f64().unwrap_or_else(|| panic!("not a number: {value}"))
}

pub fn assert_close(actual: &Value, expected: f64) {
    let actual = num(actual);
    assert!((actual - expected).abs() < 1e-6, "expected {expected}, got {actual}");
}

/// A graphql-transport-ws client.
pub struct Ws {
    stream: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// What the server sent: a protocol message, or the end of the connection.
#[derive(Debug)]
pub enum WsEvent {
    Message(Value),
    Closed { code: Option<u16>, reason: String },
}

impl Ws {
    pub async fn send(&mut self, message: Value) {
        self.stream.send(Message::text(message.to_string())).await.expect("send websocket message");
    }

    /// The next protocol message or the close; pings are answered.
    /// `None` when nothing arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<WsEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            match next {
                None => return Some(WsEvent::Closed { code: None, reason: "stream ended".into() }),
                Some(Err(error)) => return Some(WsEvent::Closed { code: None, reason: error.to_string() }),
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).expect("server message is JSON");
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(WsEvent::Message(message));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(WsEvent::Closed {
                        code: frame.as_ref().map(|frame| u16::from(frame.code)),
                        reason: frame.map(|frame| frame.reason.to_string()).unwrap_or_default(),
                    });
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next protocol message; panics on close or after [`TIMEOUT`].
    pub async fn message(&mut self) -> Value {
        match self.next_within(TIMEOUT).await {
            Some(WsEvent::Message(message)) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// `connection_init` with a key; asserts the ack.
    pub async fn init(&mut self, key: &str) {
        self.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } })).await;
        let ack = self.message().await;
        assert_eq!(ack["type"], "connection_ack", "expected connection_ack, got {ack}");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })).await;
    }

    /// The payload of the next `next` message of subscription `id`.
    pub async fn next_of(&mut self, id: &str) -> Value {
        let message = self.message().await;
        assert_eq!(message["type"], "next", "expected a next message, got {message}");
        assert_eq!(message["id"], id, "message of another subscription: {message}");
        message["payload"].clone()
    }

    /// Waits until subscription `id` is live: repeats `probe` (a write the
    /// subscription sees) until a `next` arrives. Subscriptions start
    /// asynchronously and the protocol has no subscribe acknowledgement, so
    /// this is the readiness condition. Returns the first probe payload seen;
    /// later probes may still arrive and are the caller's to skip.
    pub async fn wait_live<F, Fut>(&mut self, id: &str, mut probe: F) -> Value
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "subscription {id} never delivered a probe");
            probe().await;
            if let Some(event) = self.next_within(Duration::from_millis(500)).await {
                match event {
                    WsEvent::Message(message) if message["type"] == "next" && message["id"] == id => {
                        return message["payload"].clone();
                    }
                    other => panic!("unexpected while waiting for subscription {id}: {other:?}"),
                }
            }
        }
    }
}

/// Polls until `probe` returns Some, for up to sixty seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..1200 {
        if let Some(value) = probe().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not reached within 60 s");
}

/// `crm mail-sink`, a real SMTP server on a free loopback port; what it
/// receives lands in its own temporary directory as `<n>.eml`.
pub struct MailSink {
    _child: Child,
    /// `smtp://127.0.0.1:PORT`, for `crm serve --smtp-url`.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl MailSink {
    /// `extra` are further `crm mail-sink` flags (`--reject`, `--defer`).
    pub async fn start(extra: &[&str]) -> MailSink {
        let dir = data_dir();
        let mut child = command()
            .args(["mail-sink", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crm mail-sink");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = tokio::time::timeout(TIMEOUT, lines.next_line()).await.expect("mail sink started").expect("read stdout").expect("a line");
        let url = line
            .strip_prefix("mail sink listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected mail sink output: {line}"))
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        MailSink { _child: child, url, dir }
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        let mut numbered: Vec<(u64, String)> = std::fs::read_dir(self.dir.path())
            .expect("read the mail sink directory")
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let n = path.file_name()?.to_str()?.strip_suffix(".eml")?.parse().ok()?;
                Some((n, std::fs::read_to_string(&path).ok()?))
            })
            .collect();
        numbered.sort();
        numbered.into_iter().map(|(_, text)| text).collect()
    }
}
