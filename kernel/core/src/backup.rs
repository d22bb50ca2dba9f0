//! Consistent backups of a data directory while it serves writes, and their
//! restore.
//!
//! A backup copies every database of the kernel: `system.redb` and each
//! tenant's `tenants/<id>.redb`. Each database is read through **one** read
//! transaction, so each copied file is a snapshot of one committed state of
//! its source; redb readers never block the writer, so the group-commit
//! writers keep committing while the copy runs. The system database is
//! snapshotted first and names the tenants that are copied; a tenant created
//! afterwards is in neither. Files are consistent one by one, not with each
//! other (tenant files are independent by design).
//!
//! Tables are copied generically: every table the snapshot lists is opened
//! with each key/value layout the kernel uses until one fits, and copied
//! entry by entry into a fresh redb file. A table whose layout is unknown, or
//! any multimap table, fails the backup instead of being left out.
//!
//! A backup directory holds:
//!
//! ```text
//! backup.json          manifest: format, time, kernel version, per file
//!                      its tenant, counts, size and SHA-256
//! system.redb
//! tenants/<id>.redb
//! ```
//!
//! It is written under a temporary name next to `out` and renamed into place
//! when complete, so a directory named like a backup is always a whole one.
//! `restore` checks the manifest and every file's SHA-256 and each tenant's
//! audit chain before it puts anything into the data directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redb::{
    Database, Key, MultimapTableHandle, ReadTransaction, ReadableDatabase, ReadableTable,
    TableDefinition, TableError, TableHandle, Value as StoredValue, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::{RecordId, TenantId};
use crate::kernel::Kernel;
use crate::system::TenantInfo;

/// The version of the backup layout written by this release.
pub const BACKUP_FORMAT: u32 = 1;
/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "backup.json";
/// The system database's file name, in a data directory and in a backup.
pub const SYSTEM_FILE: &str = "system.redb";
/// Prefix of the tables holding the records of one object (`records:contact`).
const RECORDS_PREFIX: &str = "records:";
/// The audit table of a tenant file.
const AUDIT_TABLE: &str = "audit";
/// The tenants table of the system database (tenant id → JSON).
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");

/// What `backup.json` records about a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`BACKUP_FORMAT`] of the release that wrote it.
    pub format: u32,
    /// When the backup started, RFC 3339 in UTC.
    pub created_at: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The version of `crm-core` that wrote the backup.
    pub kernel_version: String,
    /// `system.redb` first, then one entry per tenant file.
    pub files: Vec<BackupFile>,
}

/// One database file of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Path inside the backup, `/`-separated: `system.redb` or `tenants/<id>.redb`.
    pub path: String,
    /// The tenant of a tenant file; `None` for the system database.
    pub tenant: Option<TenantId>,
    /// The tenant's name at backup time.
    pub tenant_name: Option<String>,
    /// Records of every object, deleted ones included (0 for the system database).
    pub records: u64,
    /// Audit entries (0 for the system database).
    pub audit_entries: u64,
    /// Every table copied, with its number of entries.
    pub tables: BTreeMap<String, u64>,
    /// Size of the written file in bytes.
    pub bytes: u64,
    /// SHA-256 of the written file, lowercase hex.
    pub sha256: String,
}

/// The outcome of a backup: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupReport {
    pub dir: PathBuf,
    pub manifest: BackupManifest,
}

/// Progress of a running backup, reported as it happens.
#[derive(Debug)]
pub enum BackupStep<'a> {
    /// The read transaction of a database has begun: what the file will hold
    /// is fixed from here on, and writes committed later are not in it.
    Snapshot {
        path: &'a str,
        tenant: Option<&'a TenantId>,
    },
    /// A file has been written and hashed.
    Written { file: &'a BackupFile },
}

/// A tenant brought back by [`restore`], with its verified audit chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoredTenant {
    pub tenant: TenantId,
    pub name: Option<String>,
    pub audit_entries_verified: u64,
}

/// The outcome of a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub data_dir: PathBuf,
    pub manifest: BackupManifest,
    pub tenants: Vec<RestoredTenant>,
    /// Where the databases that were in the data directory went (a forced
    /// restore moves them aside instead of deleting them).
    pub replaced: Option<PathBuf>,
}

fn io_error(context: impl std::fmt::Display, error: std::io::Error) -> Error {
    Error::internal(format!("{context}: {error}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A unique suffix for temporary names.
fn unique_suffix() -> String {
    RecordId::generate().to_string().to_lowercase()
}

impl Kernel {
    /// Writes a consistent copy of every database to `out`, a directory that
    /// must not exist yet or be empty (`VALIDATION` otherwise). Writers keep
    /// running meanwhile. Blocking: call it from a thread that may block.
    pub fn backup(&self, out: &Path) -> Result<BackupReport> {
        self.backup_with_progress(out, &mut |_| {})
    }

    /// [`Kernel::backup`], reporting each step to `progress` on the calling
    /// thread as it happens.
    pub fn backup_with_progress(
        &self,
        out: &Path,
        progress: &mut dyn FnMut(BackupStep<'_>),
    ) -> Result<BackupReport> {
        check_out_dir(out)?;
        let name = out.file_name().ok_or_else(|| {
            Error::invalid_field(
                "out",
                format!("{} does not name a directory", out.display()),
            )
        })?;
        let parent = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(|error| io_error(format!("cannot create {}", parent.display()), error))?;
        let staging = parent.join(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            unique_suffix()
        ));
        fs::create_dir_all(staging.join("tenants"))
            .map_err(|error| io_error(format!("cannot create {}", staging.display()), error))?;
        let written = self.write_backup(&staging, progress).and_then(|manifest| {
            // On Unix a rename replaces an empty directory and fails on a
            // non-empty one, so a directory filled meanwhile is never merged.
            fs::rename(&staging, out).map_err(|error| {
                io_error(
                    format!("cannot move the finished backup to {}", out.display()),
                    error,
                )
            })?;
            sync_dir(&parent)?;
            Ok(manifest)
        });
        match written {
            Ok(manifest) => Ok(BackupReport {
                dir: out.to_path_buf(),
                manifest,
            }),
            Err(error) => {
                let _ = fs::remove_dir_all(&staging);
                Err(error)
            }
        }
    }

    fn write_backup(
        &self,
        staging: &Path,
        progress: &mut dyn FnMut(BackupStep<'_>),
    ) -> Result<BackupManifest> {
        let created_at_ms = now_ms();
        let mut files = Vec::new();

        let snapshot = self.system().database().begin_read()?;
        progress(BackupStep::Snapshot {
            path: SYSTEM_FILE,
            tenant: None,
        });
        let tenants = tenants_in(&snapshot)?;
        let tables = copy_database(&snapshot, &staging.join(SYSTEM_FILE))?;
        drop(snapshot);
        let file = describe(staging, SYSTEM_FILE, None, tables)?;
        progress(BackupStep::Written { file: &file });
        files.push(file);

        for tenant in tenants {
            let store = self.tenant(&tenant.id)?;
            let path = format!("tenants/{}.redb", tenant.id);
            let snapshot = store.database().begin_read()?;
            progress(BackupStep::Snapshot {
                path: &path,
                tenant: Some(&tenant.id),
            });
            let tables = copy_database(&snapshot, &staging.join(&path))?;
            drop(snapshot);
            let file = describe(staging, &path, Some(&tenant), tables)?;
            progress(BackupStep::Written { file: &file });
            files.push(file);
        }
        sync_dir(&staging.join("tenants"))?;

        let manifest = BackupManifest {
            format: BACKUP_FORMAT,
            created_at: chrono::DateTime::from_timestamp_millis(created_at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            created_at_ms,
            kernel_version: env!("CARGO_PKG_VERSION").to_string(),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| Error::internal(error.to_string()))?;
        write_synced(&staging.join(MANIFEST_FILE), &json)?;
        sync_dir(staging)?;
        Ok(manifest)
    }
}

/// `out` must be new or an empty directory.
fn check_out_dir(out: &Path) -> Result<()> {
    if out.as_os_str().is_empty() {
        return Err(Error::invalid_field(
            "out",
            "is empty; name a new or empty directory",
        ));
    }
    match fs::symlink_metadata(out) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(format!("cannot inspect {}", out.display()), error)),
        Ok(metadata) if !metadata.is_dir() => Err(Error::invalid_field(
            "out",
            format!("{} exists and is not a directory", out.display()),
        )),
        Ok(_) => {
            let mut entries = fs::read_dir(out)
                .map_err(|error| io_error(format!("cannot list {}", out.display()), error))?;
            if entries.next().is_some() {
                Err(Error::invalid_field(
                    "out",
                    format!(
                        "{} exists and is not empty; a backup goes into a new or empty directory",
                        out.display()
                    ),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The tenants the system snapshot knows.
fn tenants_in(snapshot: &ReadTransaction) -> Result<Vec<TenantInfo>> {
    let table = match snapshot.open_table(TENANTS) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (_, bytes) = entry?;
        out.push(
            serde_json::from_slice(bytes.value())
                .map_err(|error| Error::internal(format!("corrupt tenant record: {error}")))?,
        );
    }
    Ok(out)
}

/// Copies the table `name` if it has the layout `K → V`; `None` if it has another.
type CopyTable = fn(&ReadTransaction, &WriteTransaction, &str) -> Result<Option<u64>>;

fn copy_as<K: Key + 'static, V: StoredValue + 'static>(
    source: &ReadTransaction,
    target: &WriteTransaction,
    name: &str,
) -> Result<Option<u64>> {
    let definition = TableDefinition::<K, V>::new(name);
    let from = match source.open_table(definition) {
        Ok(table) => table,
        Err(TableError::TableTypeMismatch { .. } | TableError::TypeDefinitionChanged { .. }) => {
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    let mut to = target.open_table(definition)?;
    let mut copied = 0;
    for entry in from.iter()? {
        let (key, value) = entry?;
        to.insert(key.value(), value.value())?;
        copied += 1;
    }
    Ok(Some(copied))
}

/// Every key → value layout the kernel's tables use. A table is copied with
/// the first layout it opens with; keys keep their order because the copy
/// uses the same key type as the source.
const LAYOUTS: &[CopyTable] = &[
    copy_as::<&'static [u8], ()>,
    copy_as::<&'static [u8], u128>,
    copy_as::<&'static [u8], &'static [u8]>,
    copy_as::<u64, &'static [u8]>,
    copy_as::<u128, &'static [u8]>,
    copy_as::<&'static str, &'static [u8]>,
    copy_as::<&'static str, &'static str>,
];

fn copy_table(source: &ReadTransaction, target: &WriteTransaction, name: &str) -> Result<u64> {
    for copy in LAYOUTS {
        if let Some(copied) = copy(source, target, name)? {
            return Ok(copied);
        }
    }
    let stored = match source.open_table(TableDefinition::<(), ()>::new(name)) {
        Err(TableError::TableTypeMismatch { key, value, .. }) => {
            format!("{} → {}", key.name(), value.name())
        }
        _ => "() → ()".to_string(),
    };
    Err(Error::internal(format!(
        "table '{name}' has a layout ({stored}) the backup cannot copy; nothing was written"
    )))
}

/// Copies every table of a snapshot into a new redb file at `target`.
fn copy_database(source: &ReadTransaction, target: &Path) -> Result<BTreeMap<String, u64>> {
    if let Some(multimap) = source.list_multimap_tables()?.next() {
        return Err(Error::internal(format!(
            "multimap table '{}' cannot be copied by the backup; nothing was written",
            multimap.name()
        )));
    }
    let database = Database::builder()
        .set_cache_size(16 * 1024 * 1024)
        .create(target)?;
    let txn = database.begin_write()?;
    let mut tables = BTreeMap::new();
    for handle in source.list_tables()? {
        let name = handle.name().to_string();
        let copied = copy_table(source, &txn, &name)?;
        tables.insert(name, copied);
    }
    txn.commit()?;
    drop(database);
    Ok(tables)
}

fn describe(
    staging: &Path,
    path: &str,
    tenant: Option<&TenantInfo>,
    tables: BTreeMap<String, u64>,
) -> Result<BackupFile> {
    let (sha256, bytes) = hash_file(&staging.join(path))?;
    let records = tables
        .iter()
        .filter(|(name, _)| name.starts_with(RECORDS_PREFIX))
        .map(|(_, count)| count)
        .sum();
    let audit_entries = if tenant.is_some() {
        tables.get(AUDIT_TABLE).copied().unwrap_or(0)
    } else {
        0
    };
    Ok(BackupFile {
        path: path.to_string(),
        tenant: tenant.map(|tenant| tenant.id.clone()),
        tenant_name: tenant.map(|tenant| tenant.name.clone()),
        records: if tenant.is_some() { records } else { 0 },
        audit_entries,
        tables,
        bytes,
        sha256,
    })
}

/// SHA-256 (hex) and size of a file.
fn hash_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path)
        .map_err(|error| io_error(format!("cannot read {}", path.display()), error))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|error| io_error(format!("cannot read {}", path.display()), error))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

fn write_synced(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = File::create(path)
        .map_err(|error| io_error(format!("cannot create {}", path.display()), error))?;
    file.write_all(contents)
        .map_err(|error| io_error(format!("cannot write {}", path.display()), error))?;
    file.sync_all()
        .map_err(|error| io_error(format!("cannot sync {}", path.display()), error))
}

/// Makes the entries of a directory durable (renames and new files).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|handle| handle.sync_all())
            .map_err(|error| io_error(format!("cannot sync {}", dir.display()), error))?;
    }
    let _ = dir;
    Ok(())
}

/// Reads and checks the manifest of a backup directory: a supported
/// format, `system.redb` exactly once, tenant files named after their
/// tenant, no path twice and none outside the backup. Hashes are checked by
/// [`restore`] while it copies.
pub fn read_manifest(backup: &Path) -> Result<BackupManifest> {
    let path = backup.join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(format!(
                "{} is not a backup: it has no {MANIFEST_FILE}",
                backup.display()
            )));
        }
        Err(error) => return Err(io_error(format!("cannot read {}", path.display()), error)),
    };
    let manifest: BackupManifest = serde_json::from_slice(&bytes).map_err(|error| {
        Error::invalid(format!(
            "{} is not a valid backup manifest: {error}",
            path.display()
        ))
    })?;
    if manifest.format != BACKUP_FORMAT {
        return Err(Error::invalid(format!(
            "backup format {} is not supported by this release (it reads format {BACKUP_FORMAT})",
            manifest.format
        )));
    }
    let mut seen = BTreeSet::new();
    let mut systems = 0;
    for file in &manifest.files {
        if !seen.insert(file.path.as_str()) {
            return Err(Error::invalid(format!(
                "{MANIFEST_FILE} lists {} twice",
                file.path
            )));
        }
        match &file.tenant {
            None if file.path == SYSTEM_FILE => systems += 1,
            Some(tenant) => {
                let tenant = TenantId::parse(tenant.as_str())?;
                if file.path != format!("tenants/{tenant}.redb") {
                    return Err(Error::invalid(format!(
                        "{MANIFEST_FILE}: file '{}' of tenant {tenant} must be tenants/{tenant}.redb",
                        file.path
                    )));
                }
            }
            None => {
                return Err(Error::invalid(format!(
                    "{MANIFEST_FILE}: file '{}' belongs to no tenant",
                    file.path
                )));
            }
        }
        if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "{MANIFEST_FILE}: '{}' has no valid SHA-256",
                file.path
            )));
        }
    }
    if systems != 1 {
        return Err(Error::invalid(format!(
            "{MANIFEST_FILE} must list {SYSTEM_FILE} exactly once"
        )));
    }
    Ok(manifest)
}

/// Whether a data directory holds databases.
fn holds_data(data_dir: &Path) -> Result<bool> {
    if data_dir.join(SYSTEM_FILE).exists() {
        return Ok(true);
    }
    let tenants = data_dir.join("tenants");
    match fs::read_dir(&tenants) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error(
            format!("cannot list {}", tenants.display()),
            error,
        )),
        Ok(entries) => Ok(entries.filter_map(|entry| entry.ok()).any(|entry| {
            entry
                .path()
                .extension()
                .is_some_and(|extension| extension == "redb")
        })),
    }
}

/// Copies a backup file into `to`, hashing what it reads; a size or hash
/// other than the manifest's refuses the backup.
fn copy_verified(backup: &Path, file: &BackupFile, to: &Path) -> Result<()> {
    let from = backup.join(&file.path);
    let mut source = match File::open(&from) {
        Ok(source) => source,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(format!(
                "the backup is incomplete: {} is missing",
                file.path
            )));
        }
        Err(error) => return Err(io_error(format!("cannot read {}", from.display()), error)),
    };
    let mut target = File::create(to)
        .map_err(|error| io_error(format!("cannot create {}", to.display()), error))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let read = source
            .read(&mut buffer)
            .map_err(|error| io_error(format!("cannot read {}", from.display()), error))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        target
            .write_all(&buffer[..read])
            .map_err(|error| io_error(format!("cannot write {}", to.display()), error))?;
        bytes += read as u64;
    }
    let sha256 = hex::encode(hasher.finalize());
    if bytes != file.bytes || !sha256.eq_ignore_ascii_case(&file.sha256) {
        return Err(Error::invalid(format!(
            "the backup is damaged: {} ({bytes} bytes, SHA-256 {sha256}) does not match {MANIFEST_FILE} ({} bytes, SHA-256 {})",
            file.path, file.bytes, file.sha256
        )));
    }
    target
        .sync_all()
        .map_err(|error| io_error(format!("cannot sync {}", to.display()), error))
}

/// Brings a backup back into `data_dir`.
///
/// Checks the manifest, refuses a data directory that already holds
/// databases (`CONFLICT`) unless `force`, copies every file into a
/// temporary directory inside `data_dir` while checking its size and
/// SHA-256 (`VALIDATION` when one differs), verifies each tenant's audit
/// chain and its length against the manifest, and only then renames the
/// files into place (`system.redb` last). A forced restore first moves the
/// databases it replaces into `data_dir/replaced-<time>/`; a server running
/// on the directory makes it fail with `UNAVAILABLE`. Nothing in `data_dir`
/// changes when any check fails.
pub fn restore(backup: &Path, data_dir: &Path, force: bool) -> Result<RestoreReport> {
    let manifest = read_manifest(backup)?;
    let occupied = holds_data(data_dir)?;
    if occupied && !force {
        return Err(Error::conflict(format!(
            "{} already holds databases; restore into a new directory, or force it to move them aside",
            data_dir.display()
        )));
    }
    if occupied && data_dir.join(SYSTEM_FILE).exists() {
        // A running server holds system.redb: opening it fails while it runs.
        drop(crate::store::open_database(
            &data_dir.join(SYSTEM_FILE),
            1024 * 1024,
        )?);
    }
    fs::create_dir_all(data_dir)
        .map_err(|error| io_error(format!("cannot create {}", data_dir.display()), error))?;
    let staging = data_dir.join(format!(".restore-{}", unique_suffix()));
    let result = stage_and_place(backup, data_dir, &staging, manifest, occupied);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn stage_and_place(
    backup: &Path,
    data_dir: &Path,
    staging: &Path,
    manifest: BackupManifest,
    occupied: bool,
) -> Result<RestoreReport> {
    fs::create_dir_all(staging.join("tenants"))
        .map_err(|error| io_error(format!("cannot create {}", staging.display()), error))?;
    for file in &manifest.files {
        copy_verified(backup, file, &staging.join(&file.path))?;
    }
    let mut tenants = Vec::new();
    for file in &manifest.files {
        let Some(tenant) = &file.tenant else { continue };
        let report = crate::audit_verify::verify_file(&staging.join(&file.path))?;
        if let Some(broken) = report.broken {
            return Err(Error::invalid(format!(
                "the audit chain of tenant {tenant} in the backup is broken at {broken}"
            )));
        }
        if report.verified != file.audit_entries {
            return Err(Error::invalid(format!(
                "tenant {tenant} holds {} audit entries, {MANIFEST_FILE} says {}",
                report.verified, file.audit_entries
            )));
        }
        tenants.push(RestoredTenant {
            tenant: tenant.clone(),
            name: file.tenant_name.clone(),
            audit_entries_verified: report.verified,
        });
    }

    let replaced = if occupied {
        Some(move_aside(data_dir)?)
    } else {
        None
    };
    let tenants_dir = data_dir.join("tenants");
    fs::create_dir_all(&tenants_dir)
        .map_err(|error| io_error(format!("cannot create {}", tenants_dir.display()), error))?;
    // Tenant files first: a directory without system.redb holds no tenants
    // yet, so an interrupted restore is never mistaken for a complete one.
    for file in manifest.files.iter().filter(|file| file.tenant.is_some()) {
        let to = data_dir.join(&file.path);
        fs::rename(staging.join(&file.path), &to)
            .map_err(|error| io_error(format!("cannot move {} into place", to.display()), error))?;
    }
    sync_dir(&tenants_dir)?;
    let system = data_dir.join(SYSTEM_FILE);
    fs::rename(staging.join(SYSTEM_FILE), &system).map_err(|error| {
        io_error(
            format!("cannot move {} into place", system.display()),
            error,
        )
    })?;
    sync_dir(data_dir)?;
    Ok(RestoreReport {
        data_dir: data_dir.to_path_buf(),
        manifest,
        tenants,
        replaced,
    })
}

/// Moves the databases of a data directory into `replaced-<time>/`.
fn move_aside(data_dir: &Path) -> Result<PathBuf> {
    let aside = data_dir.join(format!("replaced-{}", unique_suffix()));
    fs::create_dir(&aside)
        .map_err(|error| io_error(format!("cannot create {}", aside.display()), error))?;
    for name in [SYSTEM_FILE, "tenants"] {
        let from = data_dir.join(name);
        if from.exists() {
            fs::rename(&from, aside.join(name)).map_err(|error| {
                io_error(format!("cannot move {} aside", from.display()), error)
            })?;
        }
    }
    sync_dir(data_dir)?;
    Ok(aside)
}
