//! The kernel: a data directory with the system database and lazily opened
//! tenant stores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::metadata::Metadata;
use crate::store::{StoreOptions, TenantStore};
use crate::system::{ApiKeyInfo, SystemStore, TenantInfo};

pub const DEFAULT_TENANT: &str = "default";

pub struct Kernel {
    data_dir: PathBuf,
    system: SystemStore,
    tenants: Mutex<HashMap<TenantId, Arc<TenantStore>>>,
    options: StoreOptions,
}

impl Kernel {
    /// Opens a data directory, creating it if needed. Fails with a clear
    /// message when another process holds it.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<Kernel> {
        std::fs::create_dir_all(data_dir.join("tenants")).map_err(|error| {
            Error::internal(format!("cannot create data directory {}: {error}", data_dir.display()))
        })?;
        let system = SystemStore::open(&data_dir.join("system.redb"))?;
        Ok(Kernel { data_dir: data_dir.to_path_buf(), system, tenants: Mutex::new(HashMap::new()), options })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn system(&self) -> &SystemStore {
        &self.system
    }

    /// The metadata of a tenant. Today every tenant has the standard
    /// objects; plugins and custom fields extend it per tenant.
    pub fn metadata(&self, _tenant: &TenantId) -> Arc<Metadata> {
        static STANDARD: std::sync::OnceLock<Arc<Metadata>> = std::sync::OnceLock::new();
        STANDARD.get_or_init(Metadata::standard).clone()
    }

    /// The store of a tenant, opened on first use.
    pub fn tenant(&self, id: &TenantId) -> Result<Arc<TenantStore>> {
        let mut open = self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(store) = open.get(id) {
            return Ok(store.clone());
        }
        if self.system.tenant(id)?.is_none() {
            return Err(Error::not_found(format!("no tenant '{id}'")));
        }
        let path = self.data_dir.join("tenants").join(format!("{id}.redb"));
        let store = TenantStore::open(&path, id.clone(), self.metadata(id), &self.options)?;
        open.insert(id.clone(), store.clone());
        Ok(store)
    }

    /// The tenant stores currently open.
    pub fn open_tenants(&self) -> Vec<Arc<TenantStore>> {
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values().cloned().collect()
    }

    /// Creates a tenant with its database file and an admin API key.
    pub fn create_tenant(&self, name: &str) -> Result<(TenantInfo, String)> {
        let info = self.system.create_tenant(name)?;
        self.tenant(&info.id)?;
        let (_, key) = self.system.create_api_key(&info.id, "admin", "admin")?;
        Ok((info, key))
    }

    /// Creates the `default` tenant on first start; returns its admin key
    /// when it was just created.
    pub fn ensure_default_tenant(&self) -> Result<Option<(TenantInfo, String)>> {
        match self.system.find_tenant(DEFAULT_TENANT) {
            Ok(_) => Ok(None),
            Err(error) if error.kind == crate::error::ErrorKind::NotFound => Ok(Some(self.create_tenant(DEFAULT_TENANT)?)),
            Err(error) => Err(error),
        }
    }

    /// Resolves a bearer key to its record and its tenant's store.
    pub fn authenticate(&self, key: &str) -> Result<(ApiKeyInfo, Arc<TenantStore>)> {
        let info = self.system.authenticate(key)?;
        let store = self.tenant(&info.tenant)?;
        Ok((info, store))
    }
}
