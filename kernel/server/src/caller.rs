//! Who a command-line import or export acts as: the operator (full access,
//! actor `cli`) or, with `--as-user EMAIL`, a user of the tenant with their
//! role, record scope and field rules, exactly as over the API.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use crm_core::identity::UserStatus;
use crm_core::metadata::Metadata;
use crm_core::{Access, Actor, Kernel, Mutation, TenantId, WriteRequest};

pub struct Caller {
    pub actor: Actor,
    pub access: Access,
}

impl Caller {
    pub fn resolve(kernel: &Kernel, tenant: &TenantId, as_user: Option<&str>) -> Result<Caller> {
        let Some(email) = as_user else {
            return Ok(Caller { actor: Actor::cli(), access: Access::system() });
        };
        let user = kernel
            .system()
            .user_by_email(tenant, email)
            .map_err(|error| anyhow!(error.message))?
            .ok_or_else(|| anyhow!("no user {email} in this tenant"))?;
        if user.status != UserStatus::Active {
            bail!("user {email} is {}", user.status.as_str());
        }
        let role = kernel.system().role(tenant, &user.role).map_err(|error| anyhow!(error.message))?;
        Ok(Caller { actor: user.actor(), access: Access::new(role, user.principal()) })
    }

    /// A write of one mutation as this caller, or why the role refuses it.
    pub fn request(&self, metadata: &Arc<Metadata>, mutation: Mutation) -> std::result::Result<WriteRequest, String> {
        let mut mutations = vec![mutation];
        self.access.authorize_write(metadata, &mut mutations).map_err(|error| format!("{}: {}", error.code(), error.message))?;
        let mut request = WriteRequest::new(self.actor.clone(), mutations);
        request.guard = self.access.write_guard(metadata.clone());
        Ok(request)
    }
}
