//! `crm plugin …`: install, enable, disable, list, uninstall and scaffold
//! plugins, and the bundled plugins installed on first start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use crm_core::plugin::{Capabilities, EnableOptions, Limits, PluginStatus};
use crm_core::{Kernel, TenantId};

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Install a plugin component (.wasm); versions live side by side.
    Install { file: PathBuf },
    /// Enable an installed plugin for a tenant (also upgrades, rolls back
    /// with --version, or changes config and grants).
    Enable {
        /// Plugin id.
        name: String,
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Version to enable (default: the newest installed).
        #[arg(long)]
        version: Option<String>,
        /// Configuration as JSON, validated against the plugin's schema.
        #[arg(long)]
        config: Option<String>,
        /// Grants as JSON (`{"records":[{"object":"contact","fields":[],"read":true,…}],"timers":true,…}`);
        /// default: everything the plugin requests.
        #[arg(long)]
        grants: Option<String>,
        /// Per-tenant limits as JSON (`{"fuel":…,"timeout_ms":…,"memory_bytes":…}`).
        #[arg(long)]
        limits: Option<String>,
    },
    /// Disable a plugin for a tenant; its data stays.
    Disable {
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// List installed plugins, or a tenant's plugins with --tenant.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove an installed version (refused while a tenant has it enabled).
    Uninstall {
        /// `id@version`
        plugin: String,
    },
    /// Create a new plugin crate from the template, ready to build and install.
    New {
        /// Plugin id: lowercase letters, digits and '-'.
        name: String,
        /// Parent directory (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Path of the crm-plugin-sdk crate (default: the SDK of this source tree).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

fn core(error: crm_core::Error) -> anyhow::Error {
    anyhow!(error.message)
}

fn tenant_id(kernel: &Kernel, name: &str) -> Result<TenantId> {
    Ok(kernel.system().find_tenant(name).map_err(core)?.id)
}

pub async fn run(kernel: &Arc<Kernel>, command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::Install { file } => {
            let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (plugin, new) = kernel.install_plugin(&wasm).map_err(core)?;
            let verb = if new { "installed" } else { "already installed:" };
            println!("{verb} {}@{} (sha256 {})", plugin.id, plugin.version, &plugin.hash[..16]);
            Ok(())
        }
        PluginCommand::Enable { name, tenant, version, config, grants, limits } => {
            let tenant = tenant_id(kernel, &tenant)?;
            let grants: Option<Capabilities> =
                grants.map(|text| serde_json::from_str(&text)).transpose().context("--grants is not valid grants JSON")?;
            let limits: Limits = match limits {
                Some(text) => serde_json::from_str(&text).context("--limits is not valid limits JSON")?,
                None => Limits::default(),
            };
            let enabled = kernel.enable_plugin(&tenant, &name, EnableOptions { version, config, grants, limits }).await.map_err(core)?;
            println!("enabled {}@{} for tenant {tenant}", enabled.plugin, enabled.version);
            Ok(())
        }
        PluginCommand::Disable { name, tenant } => {
            let tenant = tenant_id(kernel, &tenant)?;
            kernel.disable_plugin(&tenant, &name, PluginStatus::Disabled).await.map_err(core)?;
            println!("disabled {name} for tenant {tenant}");
            Ok(())
        }
        PluginCommand::List { tenant: None } => {
            println!("{:<24} {:<12} {:<18} {:>10}  DESCRIPTION", "ID", "VERSION", "SHA256", "BYTES");
            for plugin in kernel.system().plugins().map_err(core)? {
                println!(
                    "{:<24} {:<12} {:<18} {:>10}  {}",
                    plugin.id,
                    plugin.version,
                    &plugin.hash[..16],
                    plugin.size,
                    plugin.manifest.description
                );
            }
            Ok(())
        }
        PluginCommand::List { tenant: Some(tenant) } => {
            let tenant = tenant_id(kernel, &tenant)?;
            println!("{:<24} {:<12} {:<10} CHANGED", "ID", "VERSION", "STATUS");
            for enablement in kernel.system().enablements(&tenant).map_err(core)? {
                let status = match &enablement.status {
                    PluginStatus::Enabled => "enabled".to_string(),
                    PluginStatus::Disabled => "disabled".to_string(),
                    PluginStatus::Suspended { reason } => format!("suspended ({reason})"),
                };
                println!(
                    "{:<24} {:<12} {:<10} {}",
                    enablement.plugin,
                    enablement.version,
                    status,
                    crm_core::normalize::format_datetime(enablement.changed_at)
                );
            }
            Ok(())
        }
        PluginCommand::Uninstall { plugin } => {
            let (id, version) = plugin.split_once('@').ok_or_else(|| anyhow!("name the version to remove: <id>@<version>"))?;
            kernel.system().uninstall_plugin(id, version).map_err(core)?;
            println!("uninstalled {id}@{version}");
            Ok(())
        }
        PluginCommand::New { name, dir, sdk } => {
            let sdk = match sdk {
                Some(path) => path,
                None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"),
            };
            let sdk = sdk.canonicalize().with_context(|| format!("the SDK is not at {}; pass --sdk", sdk.display()))?;
            let created = crate::scaffold::scaffold(&name, &dir, &sdk)?;
            println!("created {}", created.display());
            println!("build it:    cd {} && cargo build --target wasm32-wasip2 --profile plugin", created.display());
            println!("install it:  crm plugin install target/wasm32-wasip2/plugin/{}.wasm", name.replace('-', "_"));
            println!("enable it:   crm plugin enable {name} --tenant default");
            Ok(())
        }
    }
}

/// Installs the bundled plugins and enables each for `tenant` unless the
/// tenant already has it (enabled or deliberately disabled).
pub async fn install_bundled(kernel: &Arc<Kernel>, tenant: &TenantId) -> Result<()> {
    for bundled in crm_plugin_artifacts::BUNDLED {
        let (plugin, _) = kernel.install_plugin(bundled.wasm).map_err(core).with_context(|| format!("installing bundled plugin {}", bundled.name))?;
        if kernel.system().enablement(tenant, &plugin.id).map_err(core)?.is_none() {
            kernel
                .enable_plugin(tenant, &plugin.id, EnableOptions { version: Some(plugin.version.clone()), ..EnableOptions::default() })
                .await
                .map_err(core)
                .with_context(|| format!("enabling bundled plugin {}", plugin.id))?;
            tracing::info!(plugin = %plugin.id, version = %plugin.version, "enabled bundled plugin");
        }
    }
    Ok(())
}
