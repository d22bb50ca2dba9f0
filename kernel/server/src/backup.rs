//! `crm backup --out DIR` and `crm restore BACKUP`.
//!
//! A backup asks the server running on the data directory over its control
//! socket, so the server's writers keep going while it copies; with no
//! server running, the command opens the data directory itself. A restore
//! never runs under a server.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use crm_core::{BackupReport, BackupStep, Kernel, RestoreReport, StoreOptions};

use crate::control;

fn core_error(error: crm_core::Error) -> anyhow::Error {
    anyhow!("{} ({})", error.message, error.code())
}

/// Writes a backup of `data_dir` to `out`.
pub async fn backup(data_dir: &Path, out: &Path) -> Result<()> {
    let out =
        std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let request = serde_json::json!({ "cmd": "backup", "out": out });
    let answer = control::request(data_dir, &request)
        .await
        .with_context(|| {
            format!(
                "cannot talk to the server on {}",
                control::socket_path(data_dir).display()
            )
        })?;
    if let Some(answer) = answer {
        if answer["ok"] != true {
            let code = answer["error"]["code"].as_str().unwrap_or("INTERNAL");
            let message = answer["error"]["message"].as_str().unwrap_or("no message");
            bail!("the server refused the backup: {message} ({code})");
        }
        let report: BackupReport = serde_json::from_value(answer["backup"].clone())
            .context("the server answered with an unreadable report")?;
        print_backup(&report, "by the running server");
        return Ok(());
    }
    if !data_dir.join(crm_core::backup::SYSTEM_FILE).exists() {
        bail!(
            "{} holds no databases (no {})",
            data_dir.display(),
            crm_core::backup::SYSTEM_FILE
        );
    }
    let kernel = Kernel::open(data_dir, StoreOptions::default()).map_err(core_error)?;
    let report = tokio::task::spawn_blocking(move || {
        kernel.backup_with_progress(&out, &mut |step| {
            if let BackupStep::Written { file } = step {
                eprintln!("copied {} ({} bytes)", file.path, file.bytes);
            }
        })
    })
    .await
    .context("the backup task failed")?
    .map_err(core_error)?;
    print_backup(&report, "directly (no server was running)");
    Ok(())
}

fn print_backup(report: &BackupReport, how: &str) {
    println!("backup written to {} {how}", report.dir.display());
    for file in &report.manifest.files {
        match (&file.tenant, &file.tenant_name) {
            (Some(_), name) => println!(
                "  {:<40} {:<20} {:>9} records {:>9} audit entries {:>12} bytes  sha256 {}",
                file.path,
                name.as_deref().unwrap_or("-"),
                file.records,
                file.audit_entries,
                file.bytes,
                file.sha256
            ),
            (None, _) => println!(
                "  {:<40} {:<20} {:>9} tables  {:>23} {:>12} bytes  sha256 {}",
                file.path,
                "(system)",
                file.tables.len(),
                "",
                file.bytes,
                file.sha256
            ),
        }
    }
}

/// Restores the backup in `backup` into `data_dir`.
pub async fn restore(data_dir: &Path, backup: &Path, force: bool) -> Result<()> {
    if control::server_running(data_dir).await {
        bail!(
            "a server is running on {}; stop it before restoring into its data directory (UNAVAILABLE)",
            data_dir.display()
        );
    }
    let (backup_dir, target): (PathBuf, PathBuf) = (backup.to_path_buf(), data_dir.to_path_buf());
    let report =
        tokio::task::spawn_blocking(move || crm_core::backup::restore(&backup_dir, &target, force))
            .await
            .context("the restore task failed")?
            .map_err(core_error)?;
    print_restore(&report, backup);
    Ok(())
}

fn print_restore(report: &RestoreReport, backup: &Path) {
    println!(
        "restored {} files from {} (taken {}) into {}",
        report.manifest.files.len(),
        backup.display(),
        report.manifest.created_at,
        report.data_dir.display()
    );
    for tenant in &report.tenants {
        println!(
            "  tenant '{}' ({}): audit chain intact, {} entries verified",
            tenant.name.as_deref().unwrap_or("-"),
            tenant.tenant,
            tenant.audit_entries_verified
        );
    }
    if let Some(replaced) = &report.replaced {
        println!(
            "the databases that were there are now in {}",
            replaced.display()
        );
    }
}
