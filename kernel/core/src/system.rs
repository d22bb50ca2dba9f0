//! The system database (`system.redb`): tenants and API keys.
//!
//! API keys look like `crm_<prefix>_<secret>`. The prefix identifies the key
//! and is stored in clear; only a SHA-256 of the whole key is kept, which is
//! sufficient for 160-bit random secrets (no password stretching needed).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::plugin::{Enablement, InstalledPlugin};
use crate::ids::{TenantId, truncate};
use crate::store::open_database;

pub(crate) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
pub(crate) const TENANT_NAMES: TableDefinition<&str, &str> = TableDefinition::new("tenant_names");
pub(crate) const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
/// `id@version` → installed plugin (JSON).
const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugins");
/// hash → component bytes.
const PLUGIN_BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_blobs");
/// `tenant/plugin` → enablement (JSON).
pub(crate) const ENABLEMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_enablements");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
    /// A suspended tenant's credentials stop working until it is resumed.
    #[serde(default)]
    pub suspended_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub prefix: String,
    pub tenant: TenantId,
    pub name: String,
    pub role: String,
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The user the key acts for (their `own` and `team` scope); none for
    /// a key that owns nothing.
    #[serde(default)]
    pub user: Option<crate::ids::RecordId>,
    /// Updated at most once a minute.
    #[serde(default)]
    pub last_used_at: Option<i64>,
}

pub struct SystemStore {
    pub(crate) db: Database,
    /// Moves on each time a write transaction of this database ends: what
    /// was read from it under an earlier value may be out of date.
    generation: AtomicU64,
}

/// A write transaction of the system database. However it ends (committed,
/// dropped on an error), the store's generation moves on after it, so a
/// caller that noted the generation before reading sees the change; only
/// the record of a key's last use (`write_last_use`) leaves it as it is.
pub(crate) struct SystemWrite<'a> {
    txn: Option<WriteTransaction>,
    /// None for a write that changes nothing an identity is made of.
    generation: Option<&'a AtomicU64>,
}

impl SystemWrite<'_> {
    pub(crate) fn commit(mut self) -> Result<()> {
        if let Some(txn) = self.txn.take() {
            txn.commit()?;
        }
        Ok(())
    }
}

impl std::ops::Deref for SystemWrite<'_> {
    type Target = WriteTransaction;

    fn deref(&self) -> &WriteTransaction {
        // Only `commit`, which consumes the guard, takes the transaction.
        self.txn.as_ref().expect("a system write is not used after its commit")
    }
}

impl Drop for SystemWrite<'_> {
    fn drop(&mut self) {
        // After the transaction itself is gone (committed or aborted).
        drop(self.txn.take());
        if let Some(generation) = self.generation {
            generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Tenant names: what admins type on the command line.
pub fn check_tenant_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "tenant name '{}' must be 1-63 characters of a-z, 0-9 and '-', not starting with '-'",
            truncate(name, 70)
        )))
    }
}

impl SystemStore {
    pub fn open(path: &Path) -> Result<SystemStore> {
        let db = open_database(path, 16 * 1024 * 1024)?;
        let txn = db.begin_write()?;
        txn.open_table(TENANTS)?;
        txn.open_table(TENANT_NAMES)?;
        txn.open_table(API_KEYS)?;
        txn.open_table(PLUGINS)?;
        txn.open_table(PLUGIN_BLOBS)?;
        txn.open_table(ENABLEMENTS)?;
        crate::identity::create_tables(&txn)?;
        txn.commit()?;
        Ok(SystemStore { db, generation: AtomicU64::new(0) })
    }

    /// Starts a write; see [`SystemWrite`].
    pub(crate) fn write(&self) -> Result<SystemWrite<'_>> {
        Ok(SystemWrite { txn: Some(self.db.begin_write()?), generation: Some(&self.generation) })
    }

    /// A write that leaves the generation as it is, for what no identity is
    /// made of: when an API key was last used, which would otherwise set
    /// every kept identity aside once a minute per key in use.
    pub(crate) fn write_last_use(&self) -> Result<SystemWrite<'_>> {
        Ok(SystemWrite { txn: Some(self.db.begin_write()?), generation: None })
    }

    /// The current generation: read it before reading records whose
    /// derived form is kept, and keep that form only while it is unchanged.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The system database, for whole-file work such as backups.
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    pub fn create_tenant(&self, name: &str) -> Result<TenantInfo> {
        check_tenant_name(name)?;
        let info = TenantInfo { id: TenantId::generate(), name: name.to_string(), created_at: now_ms(), suspended_at: None };
        let txn = self.write()?;
        {
            let mut names = txn.open_table(TENANT_NAMES)?;
            if names.get(name)?.is_some() {
                return Err(Error::conflict(format!("a tenant named '{name}' already exists")));
            }
            names.insert(name, info.id.as_str())?;
            let bytes = serde_json::to_vec(&info).map_err(|e| Error::internal(e.to_string()))?;
            txn.open_table(TENANTS)?.insert(info.id.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(info)
    }

    pub fn tenants(&self) -> Result<Vec<TenantInfo>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TENANTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, bytes) = entry?;
            out.push(serde_json::from_slice(bytes.value()).map_err(|e| Error::internal(e.to_string()))?);
        }
        Ok(out)
    }

    pub fn tenant(&self, id: &TenantId) -> Result<Option<TenantInfo>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TENANTS)?;
        match table.get(id.as_str())? {
            Some(bytes) => Ok(Some(serde_json::from_slice(bytes.value()).map_err(|e| Error::internal(e.to_string()))?)),
            None => Ok(None),
        }
    }

    /// Finds a tenant by name or by id.
    pub fn find_tenant(&self, name_or_id: &str) -> Result<TenantInfo> {
        let txn = self.db.begin_read()?;
        let names = txn.open_table(TENANT_NAMES)?;
        let id = match names.get(name_or_id)? {
            Some(id) => TenantId::parse(id.value())?,
            None => TenantId::parse(name_or_id).map_err(|_| Error::not_found(format!("no tenant '{}'", truncate(name_or_id, 70))))?,
        };
        drop(names);
        drop(txn);
        self.tenant(&id)?.ok_or_else(|| Error::not_found(format!("no tenant '{}'", truncate(name_or_id, 70))))
    }

    /// Creates an API key and returns the full key text: shown once, never stored.
    pub fn create_api_key(&self, tenant: &TenantId, name: &str, role: &str) -> Result<(ApiKeyInfo, String)> {
        self.create_api_key_with(tenant, name, role, None, None)
    }

    /// A key with an expiry time and the user it acts for. The key text is
    /// returned once; only its hash is kept.
    pub fn create_api_key_with(
        &self,
        tenant: &TenantId,
        name: &str,
        role: &str,
        expires_at: Option<i64>,
        user: Option<crate::ids::RecordId>,
    ) -> Result<(ApiKeyInfo, String)> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(Error::invalid_field("name", "must be 1-100 characters"));
        }
        self.role(tenant, role)?;
        if let Some(user) = user {
            self.user(tenant, user)?;
        }
        if expires_at.is_some_and(|at| at <= now_ms()) {
            return Err(Error::invalid_field("expiresAt", "must be in the future"));
        }
        let prefix = random_token(12);
        let key = format!("crm_{prefix}_{}", random_token(32));
        let info = ApiKeyInfo {
            prefix: prefix.clone(),
            tenant: tenant.clone(),
            name: name.to_string(),
            role: role.to_string(),
            hash: hash_key(&key),
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
            user,
            last_used_at: None,
        };
        let txn = self.write()?;
        {
            let bytes = serde_json::to_vec(&info).map_err(|e| Error::internal(e.to_string()))?;
            txn.open_table(API_KEYS)?.insert(prefix.as_str(), bytes.as_slice())?;
        }
        txn.commit()?;
        Ok((info, key))
    }

    /// The key's record if the key is genuine, unexpired and not revoked.
    /// Every failure reads the same to the caller.
    pub fn authenticate(&self, key: &str) -> Result<ApiKeyInfo> {
        let denied = || Error::unauthenticated("invalid or expired API key");
        let prefix = key
            .strip_prefix("crm_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(prefix, _)| prefix)
            .filter(|prefix| prefix.len() == 12)
            .ok_or_else(denied)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(API_KEYS)?;
        let bytes = table.get(prefix)?.ok_or_else(denied)?;
        let info: ApiKeyInfo = serde_json::from_slice(bytes.value()).map_err(|e| Error::internal(e.to_string()))?;
        let genuine = constant_time_eq(info.hash.as_bytes(), hash_key(key).as_bytes());
        let now = now_ms();
        if !genuine || info.revoked_at.is_some() || info.expires_at.is_some_and(|at| at <= now) {
            return Err(denied());
        }
        Ok(info)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::internal(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::internal(format!("corrupt system record: {e}")))
}

fn enablement_key(tenant: &TenantId, plugin: &str) -> String {
    format!("{tenant}/{plugin}")
}

/// Plugins: installed versions (content-addressed) and their enablement per
/// tenant.
impl SystemStore {
    /// Stores a plugin version. Installing the same bytes again is a no-op;
    /// different bytes under an existing `id@version` are a conflict.
    pub fn install_plugin(&self, plugin: &InstalledPlugin, wasm: &[u8]) -> Result<bool> {
        let key = format!("{}@{}", plugin.id, plugin.version);
        let txn = self.write()?;
        {
            let mut plugins = txn.open_table(PLUGINS)?;
            if let Some(existing) = plugins.get(key.as_str())? {
                let existing: InstalledPlugin = from_json(existing.value())?;
                if existing.hash == plugin.hash {
                    return Ok(false);
                }
                return Err(Error::conflict(format!(
                    "{key} is already installed with different contents (hash {}); bump the version",
                    &existing.hash[..12]
                )));
            }
            plugins.insert(key.as_str(), to_json(plugin)?.as_slice())?;
            txn.open_table(PLUGIN_BLOBS)?.insert(plugin.hash.as_str(), wasm)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Every installed version, ordered by id then version text.
    pub fn plugins(&self) -> Result<Vec<InstalledPlugin>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLUGINS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            out.push(from_json(entry?.1.value())?);
        }
        Ok(out)
    }

    pub fn plugin(&self, id: &str, version: &str) -> Result<Option<InstalledPlugin>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLUGINS)?;
        let key = format!("{id}@{version}");
        table.get(key.as_str())?.map(|bytes| from_json(bytes.value())).transpose()
    }

    /// The newest installed version of a plugin (by semantic version).
    pub fn latest_plugin(&self, id: &str) -> Result<Option<InstalledPlugin>> {
        let mut versions: Vec<InstalledPlugin> = self.plugins()?.into_iter().filter(|plugin| plugin.id == id).collect();
        versions.sort_by_key(|plugin| semver_key(&plugin.version));
        Ok(versions.pop())
    }

    pub fn plugin_blob(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PLUGIN_BLOBS)?;
        Ok(table.get(hash)?.map(|bytes| bytes.value().to_vec()))
    }

    /// Removes an installed version; refused while any tenant uses it.
    pub fn uninstall_plugin(&self, id: &str, version: &str) -> Result<()> {
        let key = format!("{id}@{version}");
        let txn = self.write()?;
        {
            let enablements = txn.open_table(ENABLEMENTS)?;
            for entry in enablements.iter()? {
                let (tenant_key, bytes) = entry?;
                let enablement: Enablement = from_json(bytes.value())?;
                if enablement.plugin == id && enablement.version == version && enablement.is_enabled() {
                    let tenant = tenant_key.value().split('/').next().unwrap_or_default().to_string();
                    return Err(Error::conflict(format!("{key} is enabled for tenant {tenant}; disable it first")));
                }
            }
            drop(enablements);
            let mut plugins = txn.open_table(PLUGINS)?;
            let removed: InstalledPlugin = match plugins.remove(key.as_str())? {
                Some(removed) => from_json(removed.value())?,
                None => return Err(Error::not_found(format!("{key} is not installed"))),
            };
            let still_used = plugins.iter()?.filter_map(|entry| entry.ok()).any(|(_, bytes)| {
                from_json::<InstalledPlugin>(bytes.value()).is_ok_and(|other| other.hash == removed.hash)
            });
            if !still_used {
                txn.open_table(PLUGIN_BLOBS)?.remove(removed.hash.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn set_enablement(&self, tenant: &TenantId, enablement: &Enablement) -> Result<()> {
        let txn = self.write()?;
        {
            let key = enablement_key(tenant, &enablement.plugin);
            txn.open_table(ENABLEMENTS)?.insert(key.as_str(), to_json(enablement)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn remove_enablement(&self, tenant: &TenantId, plugin: &str) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(ENABLEMENTS)?.remove(enablement_key(tenant, plugin).as_str())?;
        txn.commit()?;
        Ok(())
    }

    pub fn enablement(&self, tenant: &TenantId, plugin: &str) -> Result<Option<Enablement>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENABLEMENTS)?;
        let key = enablement_key(tenant, plugin);
        table.get(key.as_str())?.map(|bytes| from_json(bytes.value())).transpose()
    }

    /// The plugins of a tenant (enabled or not), ordered by plugin id.
    pub fn enablements(&self, tenant: &TenantId) -> Result<Vec<Enablement>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENABLEMENTS)?;
        let start = format!("{tenant}/");
        let end = format!("{tenant}0");
        let mut out = Vec::new();
        for entry in table.range(start.as_str()..end.as_str())? {
            out.push(from_json(entry?.1.value())?);
        }
        Ok(out)
    }
}

/// Orders `x.y.z[-pre]` versions numerically; pre-releases sort before
/// their release.
pub fn semver_key(version: &str) -> (u64, u64, u64, bool, String) {
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version.split('+').next().unwrap_or(version), None),
    };
    let mut parts = core.split('.').map(|part| part.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        pre.is_none(),
        pre.unwrap_or_default().to_string(),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
