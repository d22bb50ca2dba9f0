//! The trait a plugin implements.

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::http::{HttpRequest, HttpResponse};
use crate::manifest::{Manifest, TenantSchema};
use crate::record::{Change, Decision, Event};
use crate::value::Fields;

/// A CRM plugin. Only [`manifest`](Plugin::manifest) is required; every
/// hook has a default that does nothing harmful. Register the type with
/// [`register_plugin!`](crate::register_plugin), which needs `Default`.
///
/// The host calls a hook only if the manifest declares it (a hook, an
/// action, a route), and only with changes, events and records of the
/// objects and fields the plugin was granted.
pub trait Plugin {
    /// What the plugin declares and asks for. Called at install time and
    /// whenever the host needs it again: keep it cheap and deterministic.
    fn manifest(&self) -> Manifest;

    /// Objects and fields this plugin adds to the calling tenant's schema
    /// beyond its manifest (needs the `schema` capability). Asked when the
    /// plugin is enabled and after a call that ran `schema::changed()`.
    /// Default: nothing.
    fn tenant_schema(&self, ctx: &Ctx) -> Result<TenantSchema> {
        let _ = ctx;
        Ok(TenantSchema::default())
    }

    /// Judges a batch of changes inside the write transaction: exactly one
    /// decision per change, in order. An `Err` fails the hook (the write is
    /// refused if the hook is fail-closed). Default: accept all.
    fn before_write(&self, ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        let _ = ctx;
        Ok(changes.iter().map(|_| Decision::Accept).collect())
    }

    /// Reacts to committed changes, delivered at least once and in order per
    /// tenant. An `Err` makes the host deliver them again later. Default:
    /// nothing.
    fn after_commit(&self, ctx: &Ctx, events: &[Event]) -> Result<()> {
        let _ = (ctx, events);
        Ok(())
    }

    /// Runs a timer the plugin scheduled with `timers::schedule`. Default:
    /// nothing.
    fn on_timer(&self, ctx: &Ctx, key: &str, payload: &[u8]) -> Result<()> {
        let _ = (ctx, key, payload);
        Ok(())
    }

    /// Runs a declared action. Default: the error `unknown action '<name>'`.
    fn invoke(&self, ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        let _ = (ctx, input);
        Err(Error::unknown_action(action))
    }

    /// Answers a request to a declared route. Default: 404.
    fn http(&self, ctx: &Ctx, request: &HttpRequest) -> HttpResponse {
        let _ = (ctx, request);
        HttpResponse::not_found()
    }
}
