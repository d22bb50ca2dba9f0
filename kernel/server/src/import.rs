//! `crm import contacts FILE.csv --tenant T`: upsert by email.
//!
//! Each row is its own write request, submitted a thousand at a time so the
//! group-commit writer applies them in few transactions while a bad row
//! fails alone. Column names are checked before anything is written.

use std::path::Path;

use anyhow::{Context, Result, bail};
use crm_core::{Actor, Fields, Kernel, Mutation, Value, WriteRequest};
use indicatif::{ProgressBar, ProgressStyle};

const CHUNK: usize = 1000;
/// Rejections listed in full before the summary only counts them.
const SHOWN_REJECTIONS: usize = 50;

pub async fn contacts(kernel: &Kernel, tenant: &str, file: &Path) -> Result<()> {
    let info = kernel.system().find_tenant(tenant).map_err(|error| anyhow::anyhow!(error.message))?;
    let store = kernel.tenant(&info.id).map_err(|error| anyhow::anyhow!(error.message))?;
    let object = store.object("contact").map_err(|error| anyhow::anyhow!(error.message))?.clone();
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
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut created, mut updated, mut unchanged) = (0u64, 0u64, 0u64);
    let mut rejected: Vec<(u64, String)> = Vec::new();
    let mut chunk: Vec<(u64, WriteRequest)> = Vec::with_capacity(CHUNK);
    let mut records = reader.records();
    loop {
        let next = records.next();
        let done = next.is_none();
        if let Some(row) = next {
            let line = row.as_ref().ok().and_then(|row| row.position()).map(|p| p.line()).unwrap_or(0);
            match row {
                Err(error) => rejected.push((error.position().map(|p| p.line()).unwrap_or(line), format!("unreadable row: {error}"))),
                Ok(row) => {
                    let mut fields = Fields::new();
                    for (column, cell) in columns.iter().zip(row.iter()) {
                        if !cell.is_empty() {
                            fields.insert(column.clone(), Value::Text(cell.to_string()));
                        }
                    }
                    let mutation = Mutation::Upsert { object: "contact".into(), key: "email".into(), fields };
                    chunk.push((line, WriteRequest::new(Actor::cli(), vec![mutation])));
                }
            }
            progress.set_position(records.reader().position().byte());
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            let lines: Vec<u64> = chunk.iter().map(|(line, _)| *line).collect();
            let requests = chunk.drain(..).map(|(_, request)| request).collect();
            for (line, result) in lines.into_iter().zip(store.write_each(requests).await) {
                match result {
                    Ok(applied) => match applied.first().and_then(|applied| applied.op) {
                        Some(crm_core::ChangeOp::Created) => created += 1,
                        Some(_) => updated += 1,
                        None => unchanged += 1,
                    },
                    Err(error) => rejected.push((line, error.message)),
                }
            }
            progress.set_message(format!("{created} created, {updated} updated, {} rejected", rejected.len()));
        }
        if done {
            break;
        }
    }
    progress.finish_and_clear();
    rejected.sort_by_key(|(line, _)| *line);
    for (line, reason) in rejected.iter().take(SHOWN_REJECTIONS) {
        println!("line {line}: rejected: {reason}");
    }
    if rejected.len() > SHOWN_REJECTIONS {
        println!("… and {} more rejected rows", rejected.len() - SHOWN_REJECTIONS);
    }
    println!("imported into tenant '{}': {created} created, {updated} updated, {unchanged} unchanged, {} rejected", info.name, rejected.len());
    Ok(())
}
