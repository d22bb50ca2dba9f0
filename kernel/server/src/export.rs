//! `crm export --tenant T`: every record of every object as JSON lines.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use crm_core::normalize::format_datetime;
use crm_core::{Kernel, ListQuery, Value};
use serde_json::{Map, json};


/// Writes the records `as_user` may read (every record without it), each
/// with only the fields their role may read.
pub fn tenant(kernel: &Kernel, tenant: &str, out: Option<&Path>, as_user: Option<&str>) -> Result<()> {
    let info = kernel.system().find_tenant(tenant).map_err(|error| anyhow::anyhow!(error.message))?;
    let caller = crate::caller::Caller::resolve(kernel, &info.id, as_user)?;
    let store = kernel.tenant(&info.id).map_err(|error| anyhow::anyhow!(error.message))?;
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let reader = store.reader().map_err(|error| anyhow::anyhow!(error.message))?;
    let mut count = 0u64;
    let metadata = store.metadata();
    for object in &metadata.objects {
        // Objects the caller cannot read are left out.
        let Ok(scope) = caller.access.read_filter(&metadata, &object.name) else { continue };
        let mut query = ListQuery::new(object.name.clone());
        query.filter = scope;
        query.include_deleted = true;
        let mut records = reader.all(&query).map_err(|error| anyhow::anyhow!(error.message))?;
        records.sort_by_key(|record| record.id);
        for record in records {
            let mut fields = Map::new();
            for field in object.fields.iter().filter(|field| caller.access.can_read_field(&object.name, &field.name)) {
                let value = record.get(&field.name);
                let json = match (&field.ty, value) {
                    (crm_core::FieldType::DateTime, Value::Int(ms)) => json!(format_datetime(*ms)),
                    _ => value.to_json(),
                };
                if !json.is_null() {
                    fields.insert(field.name.clone(), json);
                }
            }
            let line = json!({
                "object": object.name,
                "id": record.id.to_string(),
                "version": record.version,
                "created_at": format_datetime(record.created_at),
                "updated_at": format_datetime(record.updated_at),
                "deleted_at": record.deleted_at.map(format_datetime),
                "fields": fields,
            });
            serde_json::to_writer(&mut sink, &line)?;
            sink.write_all(b"\n")?;
            count += 1;
        }
    }
    sink.flush()?;
    if out.is_some() {
        eprintln!("exported {count} records of tenant '{}'", info.name);
    }
    Ok(())
}
