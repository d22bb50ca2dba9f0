//! `crm audit verify --tenant T`: checks a tenant's hash-chained audit log.

use anyhow::{Result, bail};
use clap::Subcommand;
use crm_core::Kernel;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain of a tenant: every entry's hash recomputed,
    /// every prev_hash equal to the previous entry's hash, sequence numbers
    /// contiguous from 1. Prints the number of entries verified; exits
    /// non-zero naming the first broken entry otherwise.
    Verify {
        /// Tenant name or id.
        #[arg(long)]
        tenant: String,
    },
}

pub fn run(kernel: &Kernel, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { tenant } => verify(kernel, &tenant),
    }
}

fn verify(kernel: &Kernel, tenant: &str) -> Result<()> {
    let info = kernel.system().find_tenant(tenant).map_err(|error| anyhow::anyhow!(error.message))?;
    let report = kernel.verify_audit(&info.id).map_err(|error| anyhow::anyhow!(error.message))?;
    match report.broken {
        None => {
            println!("audit chain of tenant '{}' is intact: {} entries verified", info.name, report.verified);
            Ok(())
        }
        Some(broken) => bail!(
            "audit chain of tenant '{}' is broken at entry {}: {} ({} entries before it verified)",
            info.name,
            broken.seq,
            broken.problem,
            report.verified
        ),
    }
}
