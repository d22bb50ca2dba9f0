//! Request-scoped batching of record loads so a page of N records with their
//! relations costs a bounded number of store reads (no N+1).
//!
//! GraphQL resolves sibling fields and list items concurrently within one
//! task. The first load of a tick yields once; by the time it runs again
//! every sibling has queued its key, and the leader loads the whole batch in
//! one read snapshot. No timers are involved.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

type BatchResult<K, V> = Result<Arc<HashMap<K, V>>, crm_core::Error>;

struct Pending<K, V> {
    keys: Vec<K>,
    result: Shared<BoxFuture<'static, BatchResult<K, V>>>,
    sender: Option<oneshot::Sender<BatchResult<K, V>>>,
}

pub struct Batcher<K, V> {
    pending: Mutex<Option<Pending<K, V>>>,
}

impl<K, V> Default for Batcher<K, V> {
    fn default() -> Self {
        Batcher { pending: Mutex::new(None) }
    }
}

impl<K, V> Batcher<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Loads `key`, batched with every other key requested in the same tick;
    /// `load` receives all of them at once.
    pub async fn load<F>(&self, key: K, load: F) -> Result<Option<V>, crm_core::Error>
    where
        F: FnOnce(Vec<K>) -> Result<HashMap<K, V>, crm_core::Error>,
    {
        let (result, leader) = {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match pending.as_mut() {
                Some(batch) => {
                    batch.keys.push(key.clone());
                    (batch.result.clone(), false)
                }
                None => {
                    let (sender, receiver) = oneshot::channel::<BatchResult<K, V>>();
                    let result = async move {
                        receiver.await.unwrap_or_else(|_| Err(crm_core::Error::internal("batch dropped")))
                    }
                    .boxed()
                    .shared();
                    *pending = Some(Pending { keys: vec![key.clone()], result: result.clone(), sender: Some(sender) });
                    (result, true)
                }
            }
        };
        if leader {
            tokio::task::yield_now().await;
            let batch = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
            if let Some(mut batch) = batch {
                let loaded = load(batch.keys).map(Arc::new);
                if let Some(sender) = batch.sender.take() {
                    let _ = sender.send(loaded);
                }
            }
        }
        let map = result.await?;
        Ok(map.get(&key).cloned())
    }
}
