//! What a resolver knows about the request it serves.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crm_core::identity::Credential;
use crm_core::{Access, Actor, Kernel, ListQuery, Page, PageRequest, Record, RecordId, Result, TenantStore};

use crate::batch::Batcher;

/// One reverse relation selection (`company.contacts(filter…)`): every parent
/// with the same arguments is loaded in one batch.
pub struct RelationSpec {
    /// The arguments as text: equality of specs.
    pub key: String,
    pub query: ListQuery,
    pub field: String,
    pub page: PageRequest,
}

impl PartialEq for RelationSpec {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for RelationSpec {}
impl Hash for RelationSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}

pub type RecordKey = (Arc<str>, RecordId);
pub type RelationKey = (Arc<RelationSpec>, RecordId);

/// Who is calling: their tenant's store, identity, credential and what
/// their role allows.
#[derive(Clone)]
pub struct Caller {
    pub kernel: Arc<Kernel>,
    pub store: Arc<TenantStore>,
    pub actor: Actor,
    pub access: Arc<Access>,
    pub credential: Credential,
}

/// Request data: the caller's tenant, identity and batchers.
pub struct RequestCtx {
    pub kernel: Arc<Kernel>,
    pub store: Arc<TenantStore>,
    pub actor: Actor,
    pub access: Arc<Access>,
    pub credential: Credential,
    pub request_id: String,
    records: Batcher<RecordKey, Record>,
    relations: Batcher<RelationKey, (Page, u64)>,
}

impl RequestCtx {
    pub fn new(caller: Caller, request_id: String) -> Self {
        let Caller { kernel, store, actor, access, credential } = caller;
        RequestCtx {
            kernel,
            store,
            actor,
            access,
            credential,
            request_id,
            records: Batcher::default(),
            relations: Batcher::default(),
        }
    }

    /// Admin operations (users, roles, keys, plugins, clock) need a role
    /// with `admin`.
    pub fn require_admin(&self) -> Result<()> {
        self.access.require_admin()
    }

    /// A record by id, batched with every other record load of this tick.
    pub async fn record(&self, object: Arc<str>, id: RecordId) -> Result<Option<Record>> {
        let store = self.store.clone();
        self.records
            .load((object, id), move |keys| {
                let reader = store.reader()?;
                let mut by_object: HashMap<Arc<str>, Vec<RecordId>> = HashMap::new();
                for (object, id) in keys {
                    by_object.entry(object).or_default().push(id);
                }
                let mut out = HashMap::new();
                for (object, ids) in by_object {
                    for (id, record) in reader.get_many(&object, &ids)? {
                        out.insert((object.clone(), id), record);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// The children of `parent` under a relation spec, batched per spec.
    pub async fn related(&self, spec: Arc<RelationSpec>, parent: RecordId) -> Result<(Page, u64)> {
        let store = self.store.clone();
        let loaded = self
            .relations
            .load((spec, parent), move |keys| {
                let reader = store.reader()?;
                let mut by_spec: HashMap<Arc<RelationSpec>, Vec<RecordId>> = HashMap::new();
                for (spec, parent) in keys {
                    let parents = by_spec.entry(spec).or_default();
                    if !parents.contains(&parent) {
                        parents.push(parent);
                    }
                }
                let mut out = HashMap::new();
                for (spec, parents) in by_spec {
                    for (parent, result) in reader.related(&spec.query, &spec.field, &parents, &spec.page)? {
                        out.insert((spec.clone(), parent), result);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(loaded.unwrap_or_default())
    }
}
