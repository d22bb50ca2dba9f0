//! The kernel: a data directory with the system database and lazily opened
//! tenant stores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::credential_cache::CredentialCache;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::TenantId;
use crate::json_schema;
use crate::metadata::Metadata;
use crate::plugin::{ActivePlugin, EnableOptions, Enablement, InstalledPlugin, PluginRuntime, PluginStatus, tenant_metadata};
use crate::store::{StoreOptions, TenantStore};
use crate::system::{ApiKeyInfo, SystemStore, TenantInfo};

pub const DEFAULT_TENANT: &str = "default";

pub struct Kernel {
    data_dir: PathBuf,
    system: SystemStore,
    tenants: Mutex<HashMap<TenantId, Arc<TenantStore>>>,
    options: StoreOptions,
    runtime: OnceLock<Arc<dyn PluginRuntime>>,
    /// Serializes plugin administration so metadata switches do not race.
    admin: tokio::sync::Mutex<()>,
    credentials: CredentialCache,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Kernel {
    /// Opens a data directory, creating it if needed. Fails with a clear
    /// message when another process holds it.
    pub fn open(data_dir: &Path, options: StoreOptions) -> Result<Kernel> {
        std::fs::create_dir_all(data_dir.join("tenants")).map_err(|error| {
            Error::internal(format!("cannot create data directory {}: {error}", data_dir.display()))
        })?;
        let system = SystemStore::open(&data_dir.join("system.redb"))?;
        Ok(Kernel {
            data_dir: data_dir.to_path_buf(),
            system,
            tenants: Mutex::new(HashMap::new()),
            options,
            runtime: OnceLock::new(),
            admin: tokio::sync::Mutex::new(()),
            credentials: CredentialCache::default(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn system(&self) -> &SystemStore {
        &self.system
    }

    /// Wires in the plugin runtime (once, before tenants are opened).
    pub fn set_runtime(&self, runtime: Arc<dyn PluginRuntime>) {
        let _ = self.runtime.set(runtime);
    }

    pub fn runtime(&self) -> Result<&Arc<dyn PluginRuntime>> {
        self.runtime.get().ok_or_else(|| Error::new(ErrorKind::Unavailable, "plugins are not available in this process"))
    }

    pub fn standard_metadata() -> Arc<Metadata> {
        static STANDARD: OnceLock<Arc<Metadata>> = OnceLock::new();
        STANDARD.get_or_init(Metadata::standard).clone()
    }

    /// The plugins enabled for a tenant, with their manifests.
    pub fn active_plugins(&self, tenant: &TenantId) -> Result<Vec<ActivePlugin>> {
        let mut out = Vec::new();
        for enablement in self.system.enablements(tenant)? {
            if !enablement.is_enabled() {
                continue;
            }
            let Some(installed) = self.system.plugin(&enablement.plugin, &enablement.version)? else {
                tracing::error!(tenant = %tenant, plugin = %enablement.plugin, "enabled plugin version is not installed");
                continue;
            };
            out.push(ActivePlugin { enablement, manifest: installed.manifest });
        }
        Ok(out)
    }

    /// The metadata of a tenant: standard objects plus what its enabled
    /// plugins declare.
    pub fn metadata(&self, tenant: &TenantId) -> Result<Arc<Metadata>> {
        let active = self.active_plugins(tenant)?;
        metadata_of(&active)
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
        let active = self.active_plugins(id)?;
        let store = TenantStore::open(&path, id.clone(), metadata_of(&active)?, &self.options)?;
        // Hooks are in place before anyone can reach the store.
        if let Some(runtime) = self.runtime.get() {
            store.set_hooks(runtime.write_hooks(id, &active));
        }
        open.insert(id.clone(), store.clone());
        drop(open);
        if let Some(runtime) = self.runtime.get() {
            runtime.tenant_changed(id, &active);
        }
        Ok(store)
    }

    /// Verifies a tenant's audit chain: from a snapshot when its store is
    /// open, otherwise from its file opened read-only (no writer starts, so
    /// this works even when the newest entry is the damaged one).
    pub fn verify_audit(&self, id: &TenantId) -> Result<crate::audit_verify::AuditReport> {
        if self.system.tenant(id)?.is_none() {
            return Err(Error::not_found(format!("no tenant '{id}'")));
        }
        let open = self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(id).cloned();
        match open {
            Some(store) => store.reader()?.verify_audit(),
            None => crate::audit_verify::verify_file(&self.data_dir.join("tenants").join(format!("{id}.redb"))),
        }
    }

    /// Suspends (or resumes) a tenant. The `default` tenant, which holds
    /// the instance's operators, cannot be suspended.
    pub fn suspend_tenant(&self, id: &TenantId, suspended: bool) -> Result<TenantInfo> {
        let info = self.system.tenant(id)?.ok_or_else(|| Error::not_found(format!("no tenant '{id}'")))?;
        if suspended && info.name == DEFAULT_TENANT {
            return Err(Error::invalid("the default tenant holds the instance's operators and cannot be suspended"));
        }
        self.system.set_suspended(id, suspended)
    }

    /// Deletes a tenant: its credentials, users and settings in the system
    /// database, then its file. `confirm` must repeat the tenant's name.
    /// Requests already running finish on the open store; nothing new
    /// reaches it.
    pub fn delete_tenant(&self, id: &TenantId, confirm: &str) -> Result<TenantInfo> {
        let info = self.system.tenant(id)?.ok_or_else(|| Error::not_found(format!("no tenant '{id}'")))?;
        if info.name == DEFAULT_TENANT {
            return Err(Error::invalid("the default tenant holds the instance's operators and cannot be deleted"));
        }
        if confirm != info.name {
            return Err(Error::invalid_field("confirm", format!("must repeat the tenant's name '{}'", info.name)));
        }
        let info = self.system.remove_tenant(id)?;
        self.tenants.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(id);
        let path = self.data_dir.join("tenants").join(format!("{id}.redb"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::internal(format!("could not remove {}: {error}", path.display()))),
        }
        Ok(info)
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

    /// Resolves a bearer token (API key or session) to who is calling, what
    /// their role allows, and their tenant's store. A suspended tenant's
    /// credentials are refused. A token resolved before is answered from
    /// memory while nothing in the system database changed and the
    /// credential has not expired (`credential_cache`).
    pub fn identify(&self, token: &str) -> Result<(crate::identity::Identity, crate::access::Access, Arc<TenantStore>)> {
        let key = CredentialCache::key(token);
        // Noted before reading: a write landing meanwhile leaves the entry
        // made from these reads unused.
        let generation = self.system.generation();
        // The clock sessions are checked against (a dev clock may run ahead);
        // never later than the one keys are checked against.
        let (identity, access) = match self.credentials.get(&key, generation, crate::clock::now_ms()) {
            Some(known) => {
                if let crate::identity::Credential::ApiKey { prefix } = &known.0.credential {
                    self.system.touch_api_key(prefix);
                }
                known
            }
            None => {
                let identity = self.system.identify(token)?;
                let tenant = self.system.tenant(&identity.tenant)?.ok_or_else(|| Error::unauthenticated("unknown tenant"))?;
                if tenant.suspended_at.is_some() {
                    return Err(Error::new(crate::error::ErrorKind::Forbidden, format!("tenant '{}' is suspended", tenant.name)));
                }
                let role = self.system.role(&identity.tenant, &identity.role)?;
                let access = crate::access::Access::new(role, identity.principal.clone());
                self.credentials.put(key, generation, &identity, &access);
                (identity, access)
            }
        };
        let store = self.tenant(&identity.tenant)?;
        Ok((identity, access, store))
    }

    /// Installs a plugin component: checks it, stores it under its hash.
    /// Returns the plugin and whether it was new.
    pub fn install_plugin(&self, wasm: &[u8]) -> Result<(InstalledPlugin, bool)> {
        let manifest = self.runtime()?.inspect(wasm)?;
        manifest.validate(&Kernel::standard_metadata())?;
        let hash = crate::plugin::content_hash(wasm);
        let installed = InstalledPlugin {
            id: manifest.id.clone(),
            version: manifest.version.clone(),
            hash,
            size: wasm.len() as u64,
            installed_at: now_ms(),
            manifest,
        };
        let new = self.system.install_plugin(&installed, wasm)?;
        Ok((installed, new))
    }

    /// Enables (or upgrades, or reconfigures) a plugin for a tenant. The
    /// tenant's metadata switches in the same step; if that fails nothing
    /// changes.
    pub async fn enable_plugin(&self, tenant: &TenantId, plugin: &str, options: EnableOptions) -> Result<Enablement> {
        let _guard = self.admin.lock().await;
        let installed = match &options.version {
            Some(version) => self.system.plugin(plugin, version)?,
            None => self.system.latest_plugin(plugin)?,
        }
        .ok_or_else(|| {
            Error::not_found(format!("plugin {plugin}{} is not installed", options.version.as_ref().map(|v| format!("@{v}")).unwrap_or_default()))
        })?;
        let manifest = &installed.manifest;
        let schema: serde_json::Value = serde_json::from_str(&manifest.config_schema)
            .map_err(|error| Error::invalid(format!("config schema is not JSON: {error}")))?;
        let config: serde_json::Value = serde_json::from_str(options.config.as_deref().unwrap_or("{}"))
            .map_err(|error| Error::invalid_field("config", format!("is not JSON: {error}")))?;
        json_schema::validate(&schema, &config)?;
        let config = json_schema::with_defaults(&schema, &config);
        let grants = options.grants.clone().unwrap_or_else(|| manifest.capabilities.clone());
        grants.check_within(&manifest.capabilities)?;
        let previous = self.system.enablement(tenant, plugin)?;
        let mut history = previous.as_ref().map(|p| p.previous.clone()).unwrap_or_default();
        if let Some(previous) = &previous
            && previous.version != installed.version
        {
            history.push(previous.version.clone());
        }
        let enablement = Enablement {
            plugin: plugin.to_string(),
            version: installed.version.clone(),
            hash: installed.hash.clone(),
            config: config.to_string(),
            grants,
            limits: options.limits,
            status: PluginStatus::Enabled,
            changed_at: now_ms(),
            previous: history,
            extension: Default::default(),
        };
        let enablement = self.with_extension(tenant, enablement, manifest)?;
        self.switch(tenant, plugin, Some(enablement.clone()), previous).await?;
        Ok(enablement)
    }

    /// Fills in what a plugin with the `schema` grant adds to the tenant.
    fn with_extension(&self, tenant: &TenantId, mut enablement: Enablement, manifest: &crate::plugin::PluginManifest) -> Result<Enablement> {
        if !enablement.grants.schema || !enablement.is_enabled() {
            return Ok(enablement);
        }
        let active = ActivePlugin { enablement: enablement.clone(), manifest: manifest.clone() };
        let extension = self.runtime()?.tenant_schema(tenant, &active)?;
        extension.validate(&enablement.plugin)?;
        enablement.extension = extension;
        Ok(enablement)
    }

    /// Asks a plugin again what it adds to the tenant's schema (after it
    /// reported a change) and switches the tenant's metadata; if the new
    /// metadata is refused (for example a unique field over duplicate
    /// values) nothing changes and the error says why.
    pub async fn refresh_plugin_schema(&self, tenant: &TenantId, plugin: &str) -> Result<()> {
        let _guard = self.admin.lock().await;
        let previous = self
            .system
            .enablement(tenant, plugin)?
            .ok_or_else(|| Error::not_found(format!("plugin {plugin} is not enabled for this tenant")))?;
        let installed = self
            .system
            .plugin(plugin, &previous.version)?
            .ok_or_else(|| Error::internal(format!("plugin {plugin}@{} is not installed", previous.version)))?;
        let next = self.with_extension(tenant, previous.clone(), &installed.manifest)?;
        if next.extension == previous.extension {
            return Ok(());
        }
        self.switch(tenant, plugin, Some(next), Some(previous)).await
    }

    /// Disables a plugin for a tenant; its data stays.
    pub async fn disable_plugin(&self, tenant: &TenantId, plugin: &str, status: PluginStatus) -> Result<Enablement> {
        let _guard = self.admin.lock().await;
        let previous = self
            .system
            .enablement(tenant, plugin)?
            .ok_or_else(|| Error::not_found(format!("plugin {plugin} is not enabled for this tenant")))?;
        let mut next = previous.clone();
        let enabling = status == PluginStatus::Enabled && !previous.is_enabled();
        next.status = status;
        next.changed_at = now_ms();
        if enabling {
            let installed = self.system.plugin(plugin, &next.version)?;
            if let Some(installed) = installed {
                next = self.with_extension(tenant, next, &installed.manifest)?;
            }
        }
        self.switch(tenant, plugin, Some(next.clone()), Some(previous)).await?;
        Ok(next)
    }

    /// Writes an enablement and moves the open store to the resulting
    /// metadata and hooks; restores the previous enablement on failure.
    async fn switch(&self, tenant: &TenantId, plugin: &str, next: Option<Enablement>, previous: Option<Enablement>) -> Result<()> {
        let store = self.tenant(tenant)?;
        if let Some(next) = &next {
            let was_enabled = previous.as_ref().is_some_and(Enablement::is_enabled);
            if next.is_enabled() && !was_enabled {
                // Delivery to after-commit hooks starts with the changes
                // committed from now on (an upgrade keeps its place).
                let last = store.reader()?.last_change()?;
                let cursor = crate::plugin_state::Effect::Cursor { plugin: plugin.to_string(), seq: last };
                store.write(crate::writer::WriteRequest::effects(crate::audit::Actor::system(), vec![cursor])).await?;
            }
            self.system.set_enablement(tenant, next)?;
        }
        let result = async {
            let active = self.active_plugins(tenant)?;
            let metadata = metadata_of(&active)?;
            store.set_metadata(metadata).await?;
            Ok::<_, Error>(active)
        }
        .await;
        match result {
            Ok(active) => {
                if let Some(runtime) = self.runtime.get() {
                    store.set_hooks(runtime.write_hooks(tenant, &active));
                    runtime.tenant_changed(tenant, &active);
                }
                Ok(())
            }
            Err(error) => {
                match previous {
                    Some(previous) => self.system.set_enablement(tenant, &previous)?,
                    None => self.system.remove_enablement(tenant, plugin)?,
                }
                Err(error)
            }
        }
    }
}

fn metadata_of(active: &[ActivePlugin]) -> Result<Arc<Metadata>> {
    if active.is_empty() {
        return Ok(Kernel::standard_metadata());
    }
    let manifests: Vec<_> = active.iter().map(|plugin| (&plugin.manifest, &plugin.enablement.extension)).collect();
    Ok(Arc::new(tenant_metadata(&Kernel::standard_metadata(), &manifests)?))
}
