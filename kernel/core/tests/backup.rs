//! Backups and restores of a data directory: round trip, a backup taken
//! while writers run, coverage of every table, and the refusals (an
//! occupied output directory, a damaged backup, an occupied data directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crm_core::backup::{self, MANIFEST_FILE};
use crm_core::{
    Actor, BackupStep, ChangeOp, ErrorKind, Fields, Kernel, ListQuery, Mutation, Record, RecordId,
    StoreOptions, TenantId, TenantStore, Value, WriteRequest,
};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition, TableHandle};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn open(dir: &Path) -> Kernel {
    Kernel::open(dir, StoreOptions::default()).expect("open kernel")
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Fields {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
}

fn text(value: &str) -> Value {
    Value::Text(value.to_string())
}

fn request(mutations: Vec<Mutation>) -> WriteRequest {
    WriteRequest::new(Actor::cli(), mutations)
}

fn create_contact(name: &str) -> Mutation {
    Mutation::Create {
        object: "contact".into(),
        fields: fields([
            ("first_name", text(name)),
            ("email", text(&format!("{name}@backup.example"))),
        ]),
    }
}

fn update(object: &str, id: RecordId, changes: Fields) -> Mutation {
    Mutation::Update {
        object: object.into(),
        id,
        fields: changes,
        expected_version: None,
    }
}

/// Applies one mutation and returns the record after it.
async fn write(store: &TenantStore, mutation: Mutation) -> Record {
    let mut applied = store.write(request(vec![mutation])).await.expect("write");
    applied.remove(0).record
}

/// Every record of an object, deleted ones included, in id order.
fn all(store: &TenantStore, object: &str) -> Vec<Record> {
    let mut query = ListQuery::new(object);
    query.include_deleted = true;
    let mut records = store
        .reader()
        .expect("reader")
        .all(&query)
        .expect("all records");
    records.sort_by_key(|record| record.id);
    records
}

/// Records of every object of a tenant, deleted ones included.
fn record_count(store: &TenantStore) -> u64 {
    store
        .metadata()
        .objects
        .iter()
        .map(|object| all(store, &object.name).len() as u64)
        .sum()
}

fn tenant_file(dir: &Path, tenant: &TenantId) -> PathBuf {
    dir.join("tenants").join(format!("{tenant}.redb"))
}

/// Every table of a closed redb file with its number of entries.
fn tables_of(path: &Path) -> BTreeMap<String, u64> {
    let db = redb::ReadOnlyDatabase::open(path).expect("open a closed database file");
    let txn = db.begin_read().expect("read transaction");
    assert_eq!(
        txn.list_multimap_tables()
            .expect("list multimap tables")
            .count(),
        0,
        "{} has multimap tables",
        path.display()
    );
    txn.list_tables()
        .expect("list tables")
        .map(|handle| {
            let len = txn
                .open_untyped_table(handle.clone())
                .expect("open table")
                .len()
                .expect("table length");
            (handle.name().to_string(), len)
        })
        .collect()
}

/// Names in a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list directory")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Checks every record of `object` against its audit history: replaying the
/// field diffs of its entries gives its stored fields, the last entry
/// gives its deleted state, one entry per version; and every audit entry
/// belongs to a stored record.
fn assert_consistent_with_audit(store: &TenantStore, object: &str) -> usize {
    let reader = store.reader().expect("reader");
    let records = all(store, object);
    for record in &records {
        let history = reader.history(object, record.id).expect("history");
        assert_eq!(
            history.len() as u64,
            record.version,
            "{object} {} has {} audit entries at version {}",
            record.id,
            history.len(),
            record.version
        );
        let mut replayed: BTreeMap<String, Value> = BTreeMap::new();
        let mut deleted = false;
        for entry in &history {
            match entry.op {
                ChangeOp::Created | ChangeOp::Updated => {
                    for change in &entry.diff {
                        if change.after.is_null() {
                            replayed.remove(&change.field);
                        } else {
                            replayed.insert(change.field.clone(), change.after.clone());
                        }
                    }
                }
                ChangeOp::Deleted => deleted = true,
                ChangeOp::Restored => deleted = false,
            }
        }
        let stored: BTreeMap<String, Value> = record
            .fields
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        assert_eq!(
            stored, replayed,
            "{object} {} differs from what its audit log records",
            record.id
        );
        assert_eq!(
            record.is_deleted(),
            deleted,
            "{object} {}: deleted state differs from its last audit entry",
            record.id
        );
    }
    let ids: std::collections::HashSet<RecordId> = records.iter().map(|record| record.id).collect();
    for entry in reader.audit_entries(0, usize::MAX).expect("audit entries") {
        if entry.object == object {
            assert!(
                ids.contains(&entry.record_id),
                "audit entry {} names {object} {} which is not stored",
                entry.seq,
                entry.record_id
            );
        }
    }
    records.len()
}

#[test]
fn round_trip_of_two_tenants_with_records_and_audit() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("temp dir");
    let kernel = open(data.path());
    let (acme, acme_key) = kernel.create_tenant("acme").expect("create acme");
    let (globex, globex_key) = kernel.create_tenant("globex").expect("create globex");
    for (tenant, count) in [(&acme.id, 12), (&globex.id, 7)] {
        let store = kernel.tenant(tenant).expect("open tenant");
        runtime.block_on(async {
            let company = write(
                &store,
                Mutation::Create {
                    object: "company".into(),
                    fields: fields([("name", text("Initech"))]),
                },
            )
            .await;
            for n in 0..count {
                let contact =
                    write(&store, create_contact(&format!("{}-{n}", tenant.as_str()))).await;
                write(
                    &store,
                    update(
                        "contact",
                        contact.id,
                        fields([
                            ("company_id", Value::Id(company.id)),
                            ("title", text("Engineer")),
                        ]),
                    ),
                )
                .await;
                if n % 3 == 0 {
                    write(
                        &store,
                        Mutation::Delete {
                            object: "contact".into(),
                            id: contact.id,
                            expected_version: None,
                        },
                    )
                    .await;
                }
            }
        });
    }
    let out = tempfile::tempdir()
        .expect("temp dir")
        .path()
        .join("nightly");
    let report = kernel.backup(&out).expect("backup");

    assert_eq!(report.dir, out);
    assert_eq!(
        entries(&out),
        vec![
            MANIFEST_FILE.to_string(),
            "system.redb".into(),
            "tenants".into()
        ]
    );
    let manifest = backup::read_manifest(&out).expect("manifest reads back");
    assert_eq!(manifest, report.manifest);
    assert_eq!(manifest.format, backup::BACKUP_FORMAT);
    assert_eq!(manifest.kernel_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest.files.len(), 3);
    assert_eq!(manifest.files[0].path, "system.redb");
    for (tenant, name, contacts) in [(&acme.id, "acme", 12u64), (&globex.id, "globex", 7)] {
        let file = manifest
            .files
            .iter()
            .find(|file| file.tenant.as_ref() == Some(tenant))
            .expect("tenant in manifest");
        assert_eq!(file.path, format!("tenants/{tenant}.redb"));
        assert_eq!(file.tenant_name.as_deref(), Some(name));
        let store = kernel.tenant(tenant).expect("tenant");
        assert_eq!(
            file.records,
            record_count(&store),
            "records of every object, the default pipeline's included"
        );
        let audit = store
            .reader()
            .expect("reader")
            .audit_entries(0, usize::MAX)
            .expect("audit");
        assert_eq!(file.audit_entries, audit.len() as u64);
        assert_eq!(file.tables.get("records:contact"), Some(&contacts));
        assert_eq!(file.tables.get("records:company"), Some(&1));
        let bytes = std::fs::read(out.join(&file.path)).expect("read backup file");
        assert_eq!(file.bytes, bytes.len() as u64);
        assert_eq!(file.sha256, sha256_hex(&bytes));
    }

    let restored_dir = tempfile::tempdir().expect("temp dir");
    let restored = backup::restore(&out, restored_dir.path(), false).expect("restore");
    assert_eq!(restored.tenants.len(), 2);
    assert!(restored.replaced.is_none());
    let copy = open(restored_dir.path());
    for (tenant, key) in [(&acme.id, &acme_key), (&globex.id, &globex_key)] {
        let original = kernel.tenant(tenant).expect("original tenant");
        let store = copy.tenant(tenant).expect("restored tenant");
        for object in ["company", "contact"] {
            assert_eq!(
                all(&store, object),
                all(&original, object),
                "{object} records of {tenant} differ after restore"
            );
        }
        let audit = |store: &TenantStore| {
            store
                .reader()
                .expect("reader")
                .audit_entries(0, usize::MAX)
                .expect("audit")
        };
        assert_eq!(audit(&store), audit(&original));
        let verified = copy.verify_audit(tenant).expect("verify");
        assert!(verified.is_intact(), "{verified:?}");
        assert_eq!(verified.verified, audit(&original).len() as u64);
        assert_consistent_with_audit(&store, "contact");
        // The system database came back too: the tenant's API key works.
        let (info, authenticated) = copy
            .authenticate(key)
            .expect("the admin key authenticates after restore");
        assert_eq!(&info.tenant, tenant);
        assert_eq!(authenticated.id(), tenant);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_backup_during_concurrent_writes_is_one_consistent_snapshot() {
    const WRITERS: usize = 6;
    let runtime = runtime();
    let data = tempfile::tempdir().expect("temp dir");
    let kernel = Arc::new(open(data.path()));
    let (tenant, _) = kernel.create_tenant("busy").expect("create tenant");
    let store = kernel.tenant(&tenant.id).expect("open tenant");

    // id → the highest version a writer saw acknowledged.
    let acked: Arc<Mutex<BTreeMap<RecordId, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let (count_tx, count_rx) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, acked, count_tx, stop) =
                (store.clone(), acked.clone(), count_tx.clone(), stop.clone());
            runtime.spawn(async move {
                let ack = |record: &Record| {
                    let mut acked = acked.lock().expect("acked");
                    let version = acked.entry(record.id).or_insert(0);
                    *version = (*version).max(record.version);
                    drop(acked);
                    count_tx.send_modify(|count| *count += 1);
                };
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let created = write(&store, create_contact(&format!("w{w}-{n}"))).await;
                    ack(&created);
                    let updated = write(
                        &store,
                        update(
                            "contact",
                            created.id,
                            fields([("title", text(&format!("step {n}")))]),
                        ),
                    )
                    .await;
                    ack(&updated);
                    if n % 4 == 0 {
                        let deleted = write(
                            &store,
                            Mutation::Delete {
                                object: "contact".into(),
                                id: created.id,
                                expected_version: None,
                            },
                        )
                        .await;
                        ack(&deleted);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let wait_for = |target: usize| {
        let mut receiver = count_rx.clone();
        runtime
            .block_on(async move {
                receiver
                    .wait_for(|count| *count >= target)
                    .await
                    .map(|_| ())
            })
            .expect("writers stopped early");
    };
    wait_for(300);

    // Everything acknowledged up to here must be in the backup.
    let before = acked.lock().expect("acked").clone();
    let out = tempfile::tempdir()
        .expect("temp dir")
        .path()
        .join("busy-backup");
    let mut committed_during_snapshot = None;
    let report = kernel
        .backup_with_progress(&out, &mut |step| {
            if let BackupStep::Snapshot {
                tenant: Some(id), ..
            } = step
            {
                assert_eq!(id, &tenant.id);
                // The snapshot is taken: this write commits while the backup
                // holds its read transaction, and is not part of it.
                let record = runtime.block_on(write(&store, create_contact("after-the-snapshot")));
                committed_during_snapshot = Some(record.id);
            }
        })
        .expect("backup while writing");
    let committed_during_snapshot =
        committed_during_snapshot.expect("the tenant's snapshot was reported");
    // The writers go on after the backup.
    let at_end = *count_rx.borrow();
    wait_for(at_end + 200);
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        runtime.block_on(writer).expect("writer panicked");
    }

    let file = report
        .manifest
        .files
        .iter()
        .find(|file| file.tenant.as_ref() == Some(&tenant.id))
        .expect("tenant file");
    let restored_dir = tempfile::tempdir().expect("temp dir");
    backup::restore(&out, restored_dir.path(), false).expect("restore");
    let copy = open(restored_dir.path());
    let verified = copy.verify_audit(&tenant.id).expect("verify");
    assert!(verified.is_intact(), "{verified:?}");
    assert_eq!(verified.verified, file.audit_entries);
    let restored = copy.tenant(&tenant.id).expect("restored tenant");
    for (id, version) in &before {
        let record = restored
            .get("contact", *id)
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged contact {id} is missing"));
        assert!(
            record.version >= *version,
            "contact {id} is at version {}, version {version} was acknowledged",
            record.version
        );
    }
    assert_eq!(
        restored
            .get("contact", committed_during_snapshot)
            .expect("get"),
        None,
        "a write after the snapshot is in the backup"
    );
    assert!(
        store
            .get("contact", committed_during_snapshot)
            .expect("get")
            .is_some()
    );
    let contacts = assert_consistent_with_audit(&restored, "contact");
    assert_eq!(Some(&(contacts as u64)), file.tables.get("records:contact"));
    assert_eq!(record_count(&restored), file.records);
    assert!(contacts >= before.len());
    assert!(
        all(&store, "contact").len() > contacts,
        "the writers kept writing after the backup"
    );
}

/// Adds a table behind the kernel's back, as a later release might.
fn add_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &Path,
    name: &str,
    rows: Vec<(K::SelfType<'_>, V::SelfType<'_>)>,
) {
    let db = redb::Database::open(path).expect("open the database file");
    let txn = db.begin_write().expect("write transaction");
    {
        let mut table = txn
            .open_table(TableDefinition::<K, V>::new(name))
            .expect("create table");
        for (key, value) in rows {
            table.insert(key, value).expect("insert");
        }
    }
    txn.commit().expect("commit");
}

#[test]
fn every_table_of_every_database_is_in_the_backup() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("temp dir");
    let kernel = open(data.path());
    let (tenant, _) = kernel.create_tenant("tables").expect("create tenant");
    {
        let store = kernel.tenant(&tenant.id).expect("open tenant");
        runtime.block_on(async {
            let company = write(
                &store,
                Mutation::Create {
                    object: "company".into(),
                    fields: fields([("name", text("Hooli"))]),
                },
            )
            .await;
            let contact = write(&store, create_contact("ada")).await;
            write(
                &store,
                update(
                    "contact",
                    contact.id,
                    fields([("company_id", Value::Id(company.id))]),
                ),
            )
            .await;
        });
    }
    drop(kernel);
    // Tables no code of this release writes: the backup must copy them too.
    add_table::<&[u8], &[u8]>(
        &tenant_file(data.path(), &tenant.id),
        "added_later",
        vec![(b"a", b"1"), (b"b", b"2"), (b"c", b"3")],
    );
    add_table::<&str, &str>(
        &data.path().join("system.redb"),
        "added_later_too",
        vec![("k", "v"), ("l", "w")],
    );

    let kernel = open(data.path());
    let parent = tempfile::tempdir().expect("temp dir");
    let out = parent.path().join("full");
    let report = kernel.backup(&out).expect("backup");
    drop(kernel);
    assert_eq!(report.manifest.files.len(), 2);
    for file in &report.manifest.files {
        let source = match &file.tenant {
            Some(tenant) => tenant_file(data.path(), tenant),
            None => data.path().join("system.redb"),
        };
        let source_tables = tables_of(&source);
        assert!(
            source_tables.len() > 5,
            "{} lists only {source_tables:?}",
            source.display()
        );
        assert_eq!(
            tables_of(&out.join(&file.path)),
            source_tables,
            "tables of {} differ in the backup",
            file.path
        );
        assert_eq!(
            file.tables, source_tables,
            "the manifest of {} lists other tables",
            file.path
        );
    }
    assert_eq!(report.manifest.files[1].tables.get("added_later"), Some(&3));
    assert_eq!(
        report.manifest.files[0].tables.get("added_later_too"),
        Some(&2)
    );

    // A table whose layout the backup cannot copy fails it, leaving nothing.
    add_table::<u32, u32>(
        &tenant_file(data.path(), &tenant.id),
        "unknown_layout",
        vec![(1, 2)],
    );
    let kernel = open(data.path());
    let refused = parent.path().join("refused");
    let error = kernel
        .backup(&refused)
        .expect_err("a table the backup cannot copy");
    assert!(
        error.message.contains("'unknown_layout'"),
        "{}",
        error.message
    );
    assert!(!refused.exists());
    assert_eq!(
        entries(parent.path()),
        vec!["full".to_string()],
        "a partial backup was left behind"
    );
}

#[test]
fn a_backup_refuses_an_output_directory_that_is_not_empty() {
    let data = tempfile::tempdir().expect("temp dir");
    let kernel = open(data.path());
    kernel.create_tenant("refusals").expect("create tenant");
    let parent = tempfile::tempdir().expect("temp dir");

    let occupied = parent.path().join("occupied");
    std::fs::create_dir(&occupied).expect("create dir");
    std::fs::write(occupied.join("keep.txt"), b"mine").expect("write file");
    let error = kernel.backup(&occupied).expect_err("a non-empty directory");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert_eq!(error.field.as_deref(), Some("out"));
    assert!(error.message.contains("not empty"), "{}", error.message);
    assert_eq!(entries(&occupied), vec!["keep.txt".to_string()]);
    assert_eq!(
        std::fs::read(occupied.join("keep.txt")).expect("read file"),
        b"mine"
    );

    let file = parent.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write file");
    let error = kernel.backup(&file).expect_err("a file");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(
        error.message.contains("not a directory"),
        "{}",
        error.message
    );
    assert_eq!(
        entries(parent.path()),
        vec!["a-file".to_string(), "occupied".into()],
        "nothing else was written"
    );

    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).expect("create dir");
    kernel.backup(&empty).expect("an empty directory is fine");
    assert!(empty.join(MANIFEST_FILE).exists());
}

#[test]
fn restore_refuses_a_damaged_backup_and_an_occupied_data_directory() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("temp dir");
    let kernel = open(data.path());
    let (tenant, _) = kernel.create_tenant("damaged").expect("create tenant");
    let store = kernel.tenant(&tenant.id).expect("open tenant");
    runtime.block_on(async {
        for n in 0..20 {
            write(&store, create_contact(&format!("c{n}"))).await;
        }
    });
    let parent = tempfile::tempdir().expect("temp dir");
    let out = parent.path().join("backup");
    kernel.backup(&out).expect("backup");

    // One byte of the tenant file changed.
    let damaged = out.join("tenants").join(format!("{}.redb", tenant.id));
    let original = std::fs::read(&damaged).expect("read backup file");
    let mut bytes = original.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, &bytes).expect("damage the file");
    let target = tempfile::tempdir().expect("temp dir");
    let error = backup::restore(&out, target.path(), false).expect_err("a damaged file");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(
        error
            .message
            .contains(&format!("tenants/{}.redb", tenant.id)),
        "{}",
        error.message
    );
    assert!(error.message.contains("SHA-256"), "{}", error.message);
    assert_eq!(
        entries(target.path()),
        Vec::<String>::new(),
        "a refused restore left files behind"
    );

    // A missing file.
    std::fs::remove_file(&damaged).expect("remove file");
    let error = backup::restore(&out, target.path(), false).expect_err("a missing file");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(error.message.contains("missing"), "{}", error.message);
    assert_eq!(entries(target.path()), Vec::<String>::new());

    // Repaired, it restores; a second restore into the same directory is refused.
    std::fs::write(&damaged, &original).expect("repair the file");
    backup::restore(&out, target.path(), false).expect("restore");
    let error =
        backup::restore(&out, target.path(), false).expect_err("an occupied data directory");
    assert_eq!(error.kind, ErrorKind::Conflict);

    // Forced while a kernel holds the directory: refused as unavailable.
    let holder = open(target.path());
    let error = backup::restore(&out, target.path(), true).expect_err("a data directory in use");
    assert_eq!(error.kind, ErrorKind::Unavailable, "{}", error.message);
    drop(holder);

    // Forced when free: the previous databases are moved aside, not lost.
    let report = backup::restore(&out, target.path(), true).expect("forced restore");
    let replaced = report
        .replaced
        .expect("the previous databases were moved aside");
    assert!(replaced.join("system.redb").exists());
    assert!(tenant_file(&replaced, &tenant.id).exists());
    let copy = open(target.path());
    assert!(copy.verify_audit(&tenant.id).expect("verify").is_intact());
    assert_eq!(
        all(&copy.tenant(&tenant.id).expect("tenant"), "contact"),
        all(&store, "contact")
    );

    // Not a backup at all.
    let error = backup::restore(
        parent.path(),
        tempfile::tempdir().expect("temp dir").path(),
        false,
    )
    .expect_err("no manifest");
    assert_eq!(error.kind, ErrorKind::Validation);
    assert!(error.message.contains(MANIFEST_FILE), "{}", error.message);
}

#[test]
fn restore_refuses_a_manifest_that_names_files_outside_the_backup_layout() {
    let data = tempfile::tempdir().expect("temp dir");
    let kernel = open(data.path());
    kernel.create_tenant("layout").expect("create tenant");
    let parent = tempfile::tempdir().expect("temp dir");
    let out = parent.path().join("backup");
    kernel.backup(&out).expect("backup");
    let manifest_path = out.join(MANIFEST_FILE);
    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("read manifest"))
            .expect("manifest is JSON");

    let refused = |change: &dyn Fn(&mut serde_json::Value), expect: &str| {
        let mut manifest = original.clone();
        change(&mut manifest);
        std::fs::write(
            &manifest_path,
            serde_json::to_vec(&manifest).expect("encode"),
        )
        .expect("write manifest");
        let target = tempfile::tempdir().expect("temp dir");
        let error = backup::restore(&out, target.path(), false).expect_err("a bad manifest");
        assert_eq!(error.kind, ErrorKind::Validation, "{}", error.message);
        assert!(
            error.message.contains(expect),
            "{expect:?} not in {}",
            error.message
        );
        assert_eq!(entries(target.path()), Vec::<String>::new());
    };
    refused(
        &|manifest| manifest["files"][1]["path"] = "../elsewhere.redb".into(),
        "must be tenants/",
    );
    refused(
        &|manifest| manifest["files"][1]["tenant"] = "../../etc".into(),
        "not a valid tenant id",
    );
    refused(
        &|manifest| manifest["files"][0]["path"] = "other.redb".into(),
        "belongs to no tenant",
    );
    refused(&|manifest| manifest["format"] = 99.into(), "format 99");
    refused(
        &|manifest| {
            let files = manifest["files"].as_array_mut().expect("files");
            files.remove(0);
        },
        "system.redb exactly once",
    );
    refused(
        &|manifest| manifest["files"][1]["sha256"] = "00".into(),
        "no valid SHA-256",
    );
}
