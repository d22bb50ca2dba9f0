//! `crm import contacts FILE --tenant T`: upsert by email.
//!
//! FILE is CSV with a header row, or the JSON lines `crm export` writes
//! (a `.jsonl`/`.ndjson` file, or one whose first character is `{`): its
//! contact lines are imported, other objects' lines and deleted contacts
//! are skipped. Every field of the tenant's contacts can be given, custom
//! fields included; plugin rules run as for any write.
//!
//! Each row is its own write request, submitted a thousand at a time so the
//! group-commit writer applies them in few transactions while a bad row
//! fails alone; the next thousand rows are read while the writer applies
//! the last. Column names are checked before anything is written.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result, bail};
use crm_core::metadata::ObjectDef;
use crm_core::{Fields, Kernel, Mutation, Value, WriteRequest};

use crate::caller::Caller;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value as Json;

const CHUNK: usize = 1000;
/// Rejections listed in full before the summary only counts them.
const SHOWN_REJECTIONS: usize = 50;

pub async fn contacts(kernel: &Kernel, tenant: &str, file: &Path, as_user: Option<&str>) -> Result<()> {
    let info = kernel.system().find_tenant(tenant).map_err(|error| anyhow::anyhow!(error.message))?;
    let caller = Caller::resolve(kernel, &info.id, as_user)?;
    let store = kernel.tenant(&info.id).map_err(|error| anyhow::anyhow!(error.message))?;
    let object = store.object("contact").map_err(|error| anyhow::anyhow!(error.message))?.clone();
    if is_json_lines(file)? {
        return json_lines(&store, &caller, &info.name, &object, file).await;
    }
    let metadata = store.metadata();
    let total_bytes = std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?.len();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(file)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let headers = reader.headers().with_context(|| format!("{} has no header row", file.display()))?.clone();
    let mut columns = Vec::new();
    for header in headers.iter() {
        let field = crm_api::names::snake(header.trim());
        if object.field(&field).is_none_or(|def| def.computed) {
            let known: Vec<&str> = object.fields.iter().map(|field| field.name.as_str()).collect();
            bail!("unknown column '{header}'; contact columns are: {}", known.join(", "));
        }
        columns.push(field);
    }
    if !columns.iter().any(|column| column == "email") {
        bail!("the file needs an 'email' column: contacts are matched by email");
    }

    let progress = ProgressBar::new(total_bytes);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut counts = Counts::default();
    let mut writing = Writing::default();
    let mut rejected: Vec<(u64, String)> = Vec::new();
    let mut chunk: Vec<(u64, WriteRequest)> = Vec::with_capacity(CHUNK);
    let mut records = reader.records();
    loop {
        let next = records.next();
        let done = next.is_none();
        if let Some(row) = next {
            let line = row.as_ref().ok().and_then(|row| row.position()).map(|p| p.line()).unwrap_or(0);
            match row {
                Err(error) => {
                    rejected.push((error.position().map(|p| p.line()).unwrap_or(line), format!("unreadable row: {error}")))
                }
                Ok(row) => {
                    let mut fields = Fields::new();
                    for (column, cell) in columns.iter().zip(row.iter()) {
                        if !cell.is_empty() {
                            fields.insert(column.clone(), Value::Text(cell.to_string()));
                        }
                    }
                    let mutation = Mutation::Upsert { object: "contact".into(), key: "email".into(), fields };
                    match caller.request(&metadata, mutation) {
                        Ok(request) => chunk.push((line, request)),
                        Err(refused) => rejected.push((line, refused)),
                    }
                }
            }
            progress.set_position(records.reader().position().byte());
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            writing.submit(&store, &mut chunk, &mut counts, &mut rejected).await;
            progress.set_message(format!(
                "{} created, {} updated, {} rejected",
                counts.created,
                counts.updated,
                rejected.len()
            ));
        }
        if done {
            break;
        }
    }
    writing.finish(&mut counts, &mut rejected).await;
    progress.finish_and_clear();
    report(&info.name, counts, rejected);
    Ok(())
}

/// The chunk the writer is applying while the next one is read: each
/// chunk is queued behind the previous one, so rows are applied in file
/// order, and its outcomes are counted once the next chunk is queued.
#[derive(Default)]
struct Writing {
    in_flight: Option<(Vec<u64>, crm_core::Submitted)>,
}

impl Writing {
    /// Queues `chunk` (row numbers and their requests), then counts the
    /// outcomes of the chunk queued before it.
    async fn submit(
        &mut self,
        store: &crm_core::TenantStore,
        chunk: &mut Vec<(u64, WriteRequest)>,
        counts: &mut Counts,
        rejected: &mut Vec<(u64, String)>,
    ) {
        let rows: Vec<u64> = chunk.iter().map(|(row, _)| *row).collect();
        let submitted = store.submit_each(chunk.drain(..).map(|(_, request)| request).collect());
        let previous = self.in_flight.replace((rows, submitted));
        if let Some((rows, submitted)) = previous {
            counts.tally(rows, submitted.outcomes().await, rejected);
        }
    }

    /// Counts the outcomes of the last chunk queued.
    async fn finish(&mut self, counts: &mut Counts, rejected: &mut Vec<(u64, String)>) {
        if let Some((rows, submitted)) = self.in_flight.take() {
            counts.tally(rows, submitted.outcomes().await, rejected);
        }
    }
}

#[derive(Default)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
}

impl Counts {
    fn tally(&mut self, rows: Vec<u64>, outcomes: Vec<crm_core::Result<Vec<crm_core::Applied>>>, rejected: &mut Vec<(u64, String)>) {
        for (row, outcome) in rows.into_iter().zip(outcomes) {
            match outcome {
                Ok(applied) => match applied.first().and_then(|applied| applied.op) {
                    Some(crm_core::ChangeOp::Created) => self.created += 1,
                    Some(_) => self.updated += 1,
                    None => self.unchanged += 1,
                },
                Err(error) => rejected.push((row, error.message)),
            }
        }
    }
}

fn report(tenant: &str, counts: Counts, mut rejected: Vec<(u64, String)>) {
    let Counts { created, updated, unchanged } = counts;
    rejected.sort_by_key(|(line, _)| *line);
    for (line, reason) in rejected.iter().take(SHOWN_REJECTIONS) {
        println!("line {line}: rejected: {reason}");
    }
    if rejected.len() > SHOWN_REJECTIONS {
        println!("… and {} more rejected rows", rejected.len() - SHOWN_REJECTIONS);
    }
    println!(
        "imported into tenant '{tenant}': {created} created, {updated} updated, {unchanged} unchanged, {} rejected",
        rejected.len()
    );
}

/// JSON lines: by extension, else by a first character `{`.
fn is_json_lines(file: &Path) -> Result<bool> {
    let extension = file.extension().and_then(|extension| extension.to_str()).unwrap_or_default().to_ascii_lowercase();
    if matches!(extension.as_str(), "jsonl" | "ndjson") {
        return Ok(true);
    }
    if extension == "csv" {
        return Ok(false);
    }
    let mut start = [0u8; 64];
    let read = std::fs::File::open(file)
        .and_then(|mut handle| handle.read(&mut start))
        .with_context(|| format!("cannot read {}", file.display()))?;
    Ok(start[..read].iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{'))
}

/// A JSON value of an exported field as the loose value `normalize` checks
/// against the field's type (date-times come as RFC 3339 text).
fn from_json(json: &Json) -> Option<Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(flag) => Value::Bool(*flag),
        Json::Number(number) => match number.as_i64() {
            Some(int) => Value::Int(int),
            None => Value::Float(number.as_f64()?),
        },
        Json::String(text) => Value::Text(text.clone()),
        Json::Array(items) => Value::List(items.iter().map(|item| item.as_str().map(str::to_string)).collect::<Option<_>>()?),
        Json::Object(_) => return None,
    })
}

/// The fields of one exported contact line, or why it cannot be imported.
/// Kernel-computed fields are left out: the kernel computes them again.
fn contact_fields(object: &ObjectDef, fields: &serde_json::Map<String, Json>) -> std::result::Result<Fields, String> {
    let mut out = Fields::new();
    for (name, json) in fields {
        let Some(field) = object.field(name) else {
            return Err(format!("{name}: contact has no field '{name}'"));
        };
        if field.computed {
            continue;
        }
        match from_json(json) {
            Some(value) => {
                out.insert(name.clone(), value);
            }
            None if json.is_null() => {}
            None => return Err(format!("{name}: {json} is not a value of a field")),
        }
    }
    if out.get("email").is_none_or(Value::is_null) {
        return Err("email: is required: contacts are matched by email".into());
    }
    Ok(out)
}

async fn json_lines(store: &crm_core::TenantStore, caller: &Caller, tenant: &str, object: &ObjectDef, file: &Path) -> Result<()> {
    let metadata = store.metadata();
    let reader = BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?);
    let mut counts = Counts::default();
    let mut writing = Writing::default();
    let (mut other_objects, mut deleted) = (0u64, 0u64);
    let mut rejected: Vec<(u64, String)> = Vec::new();
    let mut chunk: Vec<(u64, WriteRequest)> = Vec::with_capacity(CHUNK);
    let mut lines = reader.lines().enumerate();
    loop {
        let next = lines.next();
        let done = next.is_none();
        if let Some((index, line)) = next {
            let number = index as u64 + 1;
            let line = match line {
                Ok(line) => line,
                Err(error) => {
                    // The lines before the unreadable one are imported
                    // (an import again after the fix finds them by email);
                    // say so before failing.
                    if !chunk.is_empty() {
                        writing.submit(store, &mut chunk, &mut counts, &mut rejected).await;
                    }
                    writing.finish(&mut counts, &mut rejected).await;
                    report(tenant, counts, rejected);
                    return Err(error).with_context(|| format!("cannot read line {number} of {}", file.display()));
                }
            };
            if !line.trim().is_empty() {
                match serde_json::from_str::<Json>(&line) {
                    Err(error) => rejected.push((number, format!("not a JSON line of an export: {error}"))),
                    Ok(entry) if entry["object"] != "contact" => other_objects += 1,
                    Ok(entry) if !entry["deleted_at"].is_null() => deleted += 1,
                    Ok(entry) => match entry["fields"]
                        .as_object()
                        .ok_or_else(|| "no 'fields' object".to_string())
                        .and_then(|fields| contact_fields(object, fields))
                    {
                        Err(reason) => rejected.push((number, reason)),
                        Ok(fields) => {
                            let mutation = Mutation::Upsert { object: "contact".into(), key: "email".into(), fields };
                            match caller.request(&metadata, mutation) {
                                Ok(request) => chunk.push((number, request)),
                                Err(refused) => rejected.push((number, refused)),
                            }
                        }
                    },
                }
            }
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            writing.submit(store, &mut chunk, &mut counts, &mut rejected).await;
        }
        if done {
            break;
        }
    }
    writing.finish(&mut counts, &mut rejected).await;
    if other_objects + deleted > 0 {
        println!("skipped {other_objects} lines of other objects and {deleted} deleted contacts");
    }
    report(tenant, counts, rejected);
    Ok(())
}
