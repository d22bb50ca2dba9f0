//! The `crm` command: `serve`, `tenant`, `plugin`, `import`, `export`, `audit`,
//! `backup`, `restore`.
//!
//! Configuration comes from flags or the matching `CRM_*` environment
//! variables; every command takes `--data-dir` (default `./crm-data`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crm_core::{Kernel, StoreOptions};

mod admin;
mod caller;
mod audit;
#[cfg(unix)]
mod backup;
#[cfg(unix)]
pub mod control;
mod export;
mod import;
mod mail_sink;
mod outbound;
mod plugins;
pub mod scaffold;
mod tls;
mod seed;

#[derive(Parser)]
#[command(name = "crm", version, about = "An open-source CRM kernel with WebAssembly plugins")]
struct Cli {
    /// The data directory: system.redb and one file per tenant under tenants/.
    #[arg(long, global = true, env = "CRM_DATA_DIR", default_value = "./crm-data")]
    data_dir: PathBuf,
    /// Where compiled plugins are cached (default: <data-dir>/plugin-cache).
    /// Entries are content-addressed and signed, so servers may share one.
    #[arg(long, global = true, env = "CRM_PLUGIN_CACHE")]
    plugin_cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the GraphQL API. On first start, creates the `default` tenant and
    /// writes its admin API key to <data-dir>/admin-key.
    Serve {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Largest accepted request body in bytes.
        #[arg(long, env = "CRM_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
        max_body_bytes: usize,
        /// Most write requests group-committed in one transaction (1 = one commit per write).
        #[arg(long, env = "CRM_MAX_BATCH", default_value_t = 1024)]
        max_batch: usize,
        /// Let admins move the kernel's clock forward (`advanceClock`), for
        /// testing timers and SLAs. Never on a production server.
        #[arg(long, env = "CRM_DEV_CLOCK")]
        dev_clock: bool,
        /// Do not install and enable the bundled plugins on first start.
        #[arg(long)]
        no_bundled_plugins: bool,
        /// Query texts per tenant kept as plans that answer without the
        /// GraphQL engine's per-field work (0 = always use the engine).
        #[arg(long, env = "CRM_QUERY_PLANS", default_value_t = 256)]
        query_plans: usize,
        /// GraphQL operations per API key: RATE or RATE:BURST in requests
        /// per second (burst defaults to twice the rate); 0 = no limit.
        #[arg(long, env = "CRM_RATE_LIMIT_KEY", default_value = "200:400", value_parser = crm_api::RateLimit::parse)]
        rate_limit_key: crm_api::RateLimit,
        /// GraphQL operations per tenant, all its keys together: RATE or
        /// RATE:BURST; 0 = no limit.
        #[arg(long, env = "CRM_RATE_LIMIT_TENANT", default_value = "1000:2000", value_parser = crm_api::RateLimit::parse)]
        rate_limit_tenant: crm_api::RateLimit,
        /// Serve HTTPS and WSS with this PEM certificate chain (needs --tls-key).
        #[arg(long, env = "CRM_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, env = "CRM_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Deliver outbound email through this SMTP server:
        /// smtp://[user:pass@]host[:port][?tls=required] or smtps://…
        /// Without it, messages stay in the dev mailbox (`outboundMessages`).
        #[arg(long, env = "CRM_SMTP_URL")]
        smtp_url: Option<String>,
        /// The sender of outbound email.
        #[arg(long, env = "CRM_SMTP_FROM", default_value = "CRM <crm@localhost>")]
        smtp_from: String,
        /// SMTP connections used at once.
        #[arg(long, env = "CRM_SMTP_CONNECTIONS", default_value_t = 8)]
        smtp_connections: u32,
    },
    /// Manage plugins.
    Plugin {
        #[command(subcommand)]
        command: plugins::PluginCommand,
    },
    /// Check audit logs.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage a tenant's users.
    User {
        #[command(subcommand)]
        command: admin::UserCommand,
    },
    /// Manage a tenant's API keys.
    Key {
        #[command(subcommand)]
        command: admin::KeyCommand,
    },
    /// Show a tenant's roles.
    Role {
        #[command(subcommand)]
        command: admin::RoleCommand,
    },
    /// Import records from a file.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Write every record of a tenant as JSON lines (deleted records included,
    /// with `deleted_at` set).
    Export {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Export as this user (email): only what their role may read.
        #[arg(long)]
        as_user: Option<String>,
    },
    /// Write a consistent copy of every database to a new directory while
    /// the server keeps serving (through its control socket); without a
    /// running server, from the data directory directly.
    #[cfg(unix)]
    Backup {
        /// The backup directory: must not exist yet or be empty.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bring a backup back into the data directory, after checking every
    /// file's SHA-256 and each tenant's audit chain. Refused while a server
    /// runs on the data directory.
    #[cfg(unix)]
    Restore {
        /// A directory written by `crm backup`.
        backup: PathBuf,
        /// Restore into a data directory that holds databases; they are
        /// moved to <data-dir>/replaced-<id>/.
        #[arg(long)]
        force: bool,
    },
    /// Load synthetic benchmark data into an empty tenant: N contacts, N/10
    /// companies, N/2 deals, 2N activities (the peer benchmark's proportions).
    /// Writes the ids to <data-dir>/seed-contact-ids.txt and seed-company-ids.txt.
    Seed {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Number of contacts.
        #[arg(long)]
        contacts: usize,
        /// RNG seed: the same seed and N give the same records.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run a local SMTP server that keeps every message it receives as
    /// <dir>/<n>.eml, for trying outbound email without a real mail server
    /// (`crm serve --smtp-url smtp://127.0.0.1:2525`).
    MailSink {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: String,
        /// Where to write the messages.
        #[arg(long, default_value = "./crm-mail")]
        dir: PathBuf,
        /// Refuse recipients containing this text permanently (550).
        #[arg(long)]
        reject: Option<String>,
        /// Refuse recipients containing this text for now (451).
        #[arg(long)]
        defer: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its admin API key (shown once).
    Create {
        /// Lowercase letters, digits and '-'.
        name: String,
    },
    /// List tenants.
    List,
    /// Suspend a tenant: its keys and sessions are refused until resumed.
    Suspend { name: String },
    /// Resume a suspended tenant.
    Resume { name: String },
    /// Delete a tenant and its database file.
    Delete {
        name: String,
        /// Repeat the tenant's name.
        #[arg(long)]
        confirm: String,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Upsert contacts by email from a CSV file with a header row (columns are
    /// contact fields in snake_case or camelCase: first_name, email,
    /// lifecycleStage, …) or from the JSON lines `crm export` writes (other
    /// objects and deleted contacts are skipped).
    Contacts {
        file: PathBuf,
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
        /// Import as this user (email): their role's permissions apply to
        /// every row and they are the actor in the audit log.
        #[arg(long)]
        as_user: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRM_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the data directory with the plugin host wired in (compiled
/// plugins are cached under `<data-dir>/plugin-cache`). Only `serve`
/// delivers after-commit events and fires timers.
fn open_kernel(data_dir: &Path, options: StoreOptions) -> Result<Arc<Kernel>> {
    Ok(open_kernel_with_host(data_dir, options)?.0)
}

/// `--plugin-cache`, when given.
static PLUGIN_CACHE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn open_kernel_with_host(data_dir: &Path, options: StoreOptions) -> Result<(Arc<Kernel>, Arc<crm_plugin_host::PluginHost>)> {
    let kernel = Arc::new(Kernel::open(data_dir, options).map_err(|error| anyhow::anyhow!(error.message))?);
    let cache = PLUGIN_CACHE.get().cloned().unwrap_or_else(|| data_dir.join("plugin-cache"));
    let host = crm_plugin_host::PluginHost::new(&kernel, Some(&cache)).map_err(|error| anyhow::anyhow!(error.message))?;
    kernel.set_runtime(host.clone());
    Ok((kernel, host))
}

async fn run(cli: Cli) -> Result<()> {
    if let Some(cache) = &cli.plugin_cache {
        let _ = PLUGIN_CACHE.set(cache.clone());
    }
    match cli.command {
        Command::Serve {
            listen,
            max_body_bytes,
            max_batch,
            dev_clock,
            no_bundled_plugins,
            query_plans,
            rate_limit_key,
            rate_limit_tenant,
            tls_cert,
            tls_key,
            smtp_url,
            smtp_from,
            smtp_connections,
        } => {
            let options = StoreOptions { max_batch, ..StoreOptions::default() };
            if dev_clock {
                crm_core::clock::make_adjustable();
            }
            let limits = crm_api::Limits {
                max_body_bytes,
                rate_per_key: rate_limit_key,
                rate_per_tenant: rate_limit_tenant,
                query_plans,
                ..crm_api::Limits::default()
            };
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(tls::server_config(&cert, &key)?),
                _ => None,
            };
            let smtp = smtp_url
                .map(|url| outbound::Smtp::new(&outbound::SmtpConfig { url, from: smtp_from, connections: smtp_connections }))
                .transpose()?;
            serve(&cli.data_dir, &listen, limits, options, !no_bundled_plugins, tls, smtp).await
        }
        Command::Audit { command } => {
            let kernel = Kernel::open(&cli.data_dir, StoreOptions::default()).map_err(|error| anyhow::anyhow!(error.message))?;
            audit::run(&kernel, command)
        }
        Command::Plugin { command } => {
            let kernel = open_kernel(&cli.data_dir, StoreOptions::default())?;
            plugins::run(&kernel, command).await
        }
        Command::Tenant { command: TenantCommand::Create { name } } => {
            let kernel = open_kernel(&cli.data_dir, StoreOptions::default())?;
            let (info, key) = kernel.create_tenant(&name).map_err(|error| anyhow::anyhow!(error.message))?;
            println!("created tenant '{}' (id {})", info.name, info.id);
            println!("admin API key (shown once): {key}");
            Ok(())
        }
        Command::Tenant { command: TenantCommand::List } => {
            let kernel = open_kernel(&cli.data_dir, StoreOptions::default())?;
            let tenants = kernel.system().tenants().map_err(|error| anyhow::anyhow!(error.message))?;
            println!("{:<28} {:<30} {:<26} STATE", "ID", "NAME", "CREATED");
            for tenant in tenants {
                let state = if tenant.suspended_at.is_some() { "suspended" } else { "active" };
                println!("{:<28} {:<30} {:<26} {state}", tenant.id, tenant.name, crm_core::normalize::format_datetime(tenant.created_at));
            }
            Ok(())
        }
        Command::Tenant { command: TenantCommand::Suspend { name } } => {
            admin::tenant_state(&cli.data_dir, &name, admin::TenantChange::Suspend(true)).await
        }
        Command::Tenant { command: TenantCommand::Resume { name } } => {
            admin::tenant_state(&cli.data_dir, &name, admin::TenantChange::Suspend(false)).await
        }
        Command::Tenant { command: TenantCommand::Delete { name, confirm } } => {
            admin::tenant_state(&cli.data_dir, &name, admin::TenantChange::Delete { confirm: &confirm }).await
        }
        Command::User { command } => admin::user(&cli.data_dir, command).await,
        Command::Key { command } => admin::key(&cli.data_dir, command).await,
        Command::Role { command } => admin::role(&cli.data_dir, command).await,
        Command::Import { command: ImportCommand::Contacts { file, tenant, as_user } } => {
            let kernel = open_kernel(&cli.data_dir, StoreOptions::default())?;
            import::contacts(&kernel, &tenant, &file, as_user.as_deref()).await
        }
        Command::Export { tenant, out, as_user } => {
            let kernel = open_kernel(&cli.data_dir, StoreOptions::default())?;
            export::tenant(&kernel, &tenant, out.as_deref(), as_user.as_deref())
        }
        #[cfg(unix)]
        Command::Backup { out } => backup::backup(&cli.data_dir, &out).await,
        #[cfg(unix)]
        Command::Restore { backup, force } => backup::restore(&cli.data_dir, &backup, force).await,
        Command::MailSink { listen, dir, reject, defer } => mail_sink::run(&listen, mail_sink::SinkOptions { dir, reject, defer }).await,
        Command::Seed { tenant, contacts, seed } => {
            let kernel = open_kernel(&cli.data_dir, StoreOptions::default())?;
            seed::run(&kernel, &tenant, contacts, seed).await
        }
    }
}

async fn serve(
    data_dir: &Path,
    listen: &str,
    limits: crm_api::Limits,
    options: StoreOptions,
    bundled: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    smtp: Option<outbound::Smtp>,
) -> Result<()> {
    let shutdown = shutdown_signal();
    let (kernel, host) = open_kernel_with_host(data_dir, options)?;
    let started = std::time::Instant::now();
    let warmed = host.warm().map_err(|error| anyhow::anyhow!(error.message))?;
    tracing::info!(plugins = warmed, elapsed_ms = started.elapsed().as_millis() as u64, "plugins compiled or loaded from the cache");
    host.start_delivery().map_err(|error| anyhow::anyhow!(error.message))?;
    if let Some((info, key)) = kernel.ensure_default_tenant().map_err(|error| anyhow::anyhow!(error.message))? {
        let key_path = data_dir.join("admin-key");
        write_secret(&key_path, &key).with_context(|| format!("writing {}", key_path.display()))?;
        println!("created tenant '{}'; its admin API key is in {}", info.name, key_path.display());
        if bundled {
            plugins::install_bundled(&kernel, &info.id).await?;
        }
    }
    // Open every tenant that has plugins, so their workers deliver pending
    // events and fire due timers without waiting for a request.
    for tenant in kernel.system().tenants().map_err(|error| anyhow::anyhow!(error.message))? {
        let has_plugins = kernel.active_plugins(&tenant.id).map(|active| !active.is_empty()).unwrap_or(false);
        if has_plugins {
            kernel.tenant(&tenant.id).map_err(|error| anyhow::anyhow!(error.message))?;
        }
    }
    if let Some(smtp) = smtp {
        smtp.start(kernel.clone());
        tracing::info!("outbound email goes through SMTP");
    }
    #[cfg(unix)]
    let _control = control::ControlSocket::start(data_dir, kernel.clone())
        .inspect_err(|error| tracing::warn!(%error, "no control socket: `crm backup` cannot reach this server"));
    let app = crm_api::router(crm_api::AppState::new(kernel, limits));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("crm listening on {scheme}://{address}/graphql (data in {})", data_dir.display());
    tracing::info!(%address, tls = tls.is_some(), "serving");
    match tls {
        None => axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("server failed")?,
        Some(config) => {
            let handle = axum_server::Handle::new();
            let stopping = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener.into_std()?, axum_server::tls_rustls::RustlsConfig::from_config(config))?
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
                .context("server failed")?
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM. The handlers are registered when this is called, at
/// the start of `serve`: a signal that comes while the server is still
/// opening its data ends it cleanly once it is up (every database closed)
/// instead of killing it, which would leave the tenant files to be repaired
/// on the next start (about 10 s for a 7 GB tenant, measured). A handler
/// that cannot be registered leaves that signal's default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {},
                        _ = terminate.recv() => {},
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Writes a secret readable by the owner only.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}
