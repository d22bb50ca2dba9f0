//! The writer calls before-write hooks once per group of requests it
//! commits together, and still fails only the request at fault: a rejected
//! change fails its own request, a hook that fails as a whole is retried
//! request by request.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_core::plugin::{HookCall, HookFailure, PendingChange, WriteHooks};
use crm_core::{Actor, ChangeOp, Error, ErrorKind, Kernel, Mutation, StoreOptions, Value, WriteRequest};

/// Hooks on contacts: titles every record `hooked`, rejects `reject`, fails
/// as a whole on `boom`, and holds the writer on `gate` until released.
struct Recording {
    calls: Mutex<Vec<(usize, Option<String>)>>,
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl WriteHooks for Recording {
    fn covers(&self, object: &str, op: ChangeOp) -> bool {
        object == "contact" && op == ChangeOp::Created
    }

    fn before_write(&self, call: HookCall<'_>, changes: &mut [PendingChange<'_>]) -> Result<(), HookFailure> {
        self.calls.lock().unwrap().push((changes.len(), call.request_id.map(str::to_string)));
        for (index, change) in changes.iter_mut().enumerate() {
            match change.get("first_name") {
                Value::Text(name) if name == "gate" => {
                    self.entered.lock().unwrap().send(()).unwrap();
                    self.release.lock().unwrap().recv_timeout(Duration::from_secs(30)).unwrap();
                }
                Value::Text(name) if name == "reject" => {
                    return Err(HookFailure { error: Error::invalid("no rejects"), change: Some(index) });
                }
                Value::Text(name) if name == "boom" => {
                    return Err(Error::new(ErrorKind::PluginFailed, "the hook trapped").into());
                }
                _ => {}
            }
            change.set("title", Value::Text("hooked".into()));
        }
        Ok(())
    }
}

fn create(name: &str, request_id: &str) -> WriteRequest {
    let fields = [("first_name".to_string(), Value::Text(name.into()))].into_iter().collect();
    let mut request = WriteRequest::new(Actor::cli(), vec![Mutation::Create { object: "contact".into(), fields }]);
    request.request_id = Some(request_id.into());
    request
}

fn upsert(name: &str, email: &str, request_id: &str) -> WriteRequest {
    let fields = [("first_name".to_string(), Value::Text(name.into())), ("email".to_string(), Value::Text(email.into()))].into_iter().collect();
    let mut request = WriteRequest::new(Actor::cli(), vec![Mutation::Upsert { object: "contact".into(), key: "email".into(), fields }]);
    request.request_id = Some(request_id.into());
    request
}

/// Holds the writer in a hook call, queues `names` behind it as one
/// batch, then lets it go; returns each request's outcome and the calls.
fn batch_behind_a_gate(names: &[&str]) -> (Vec<crm_core::Result<Vec<crm_core::Applied>>>, Vec<(usize, Option<String>)>) {
    let requests = names.iter().enumerate().map(|(n, name)| create(name, &format!("r{n}"))).collect();
    requests_behind_a_gate(requests)
}

fn requests_behind_a_gate(requests: Vec<WriteRequest>) -> (Vec<crm_core::Result<Vec<crm_core::Applied>>>, Vec<(usize, Option<String>)>) {
    let dir = tempfile::tempdir().unwrap();
    let kernel = Kernel::open(dir.path(), StoreOptions::default()).unwrap();
    let (info, _) = kernel.create_tenant("t").unwrap();
    let store = kernel.tenant(&info.id).unwrap();
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let hooks = Arc::new(Recording { calls: Mutex::new(Vec::new()), entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) });
    store.set_hooks(Some(hooks.clone()));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gate = runtime.spawn({
        let store = store.clone();
        async move { store.write(create("gate", "gate")).await }
    });
    entered.recv_timeout(Duration::from_secs(30)).expect("the gate's hook runs");
    let queued = runtime.spawn({
        let store = store.clone();
        async move { store.write_each(requests).await }
    });
    // write_each queues every request before it first waits.
    std::thread::sleep(Duration::from_millis(300));
    release.send(()).unwrap();
    runtime.block_on(gate).unwrap().unwrap();
    let outcomes = runtime.block_on(queued).unwrap();
    let calls = hooks.calls.lock().unwrap().clone();
    (outcomes, calls[1..].to_vec())
}

#[test]
fn one_call_serves_a_batch_and_a_rejection_fails_only_its_request() {
    let mut names = vec!["ada"; 20];
    names[7] = "reject";
    let (outcomes, calls) = batch_behind_a_gate(&names);
    for (n, outcome) in outcomes.iter().enumerate() {
        if n == 7 {
            let error = outcome.as_ref().unwrap_err();
            assert_eq!((error.kind, error.message.as_str()), (ErrorKind::Validation, "no rejects"));
        } else {
            let applied = outcome.as_ref().unwrap();
            assert_eq!(applied[0].record.get("title"), &Value::Text("hooked".into()), "request {n} patched");
        }
    }
    // The whole batch in one call, refused; then the other 19 in one call.
    assert_eq!(calls, [(20, None), (19, None)]);
}

#[test]
fn a_hook_failing_as_a_whole_is_retried_request_by_request() {
    let mut names = vec!["ada"; 5];
    names[2] = "boom";
    let (outcomes, calls) = batch_behind_a_gate(&names);
    for (n, outcome) in outcomes.iter().enumerate() {
        match n {
            2 => assert_eq!(outcome.as_ref().unwrap_err().kind, ErrorKind::PluginFailed),
            _ => assert_eq!(outcome.as_ref().unwrap()[0].record.get("title"), &Value::Text("hooked".into())),
        }
    }
    // Grouped once, then one request per call, each with its request id;
    // the failing one is dropped and the transaction redone without it.
    assert_eq!(calls[0], (5, None));
    let singles: Vec<String> = calls[1..].iter().map(|(changes, id)| format!("{changes}:{}", id.clone().unwrap_or_default())).collect();
    assert_eq!(singles, ["1:r0", "1:r1", "1:r2", "1:r0", "1:r1", "1:r3", "1:r4"]);
}

#[test]
fn upserts_of_distinct_keys_share_a_call_and_upserts_meeting_one_record_do_not() {
    let distinct = vec![upsert("Ada", "ada@example.com", "r0"), upsert("Bob", "bob@example.com", "r1"), upsert("Cy", "cy@example.com", "r2")];
    let (outcomes, calls) = requests_behind_a_gate(distinct);
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(calls, [(3, None)]);

    // The third upsert finds the record the first one creates: the batch is
    // redone a request at a time (the update of the third is not hooked).
    let meeting = vec![upsert("Ada", "ada@example.com", "r0"), upsert("Bob", "bob@example.com", "r1"), upsert("Adele", "ada@example.com", "r2")];
    let (outcomes, calls) = requests_behind_a_gate(meeting);
    let applied: Vec<_> = outcomes.into_iter().map(|outcome| outcome.unwrap().remove(0)).collect();
    assert_eq!(applied[2].record.id, applied[0].record.id);
    assert_eq!(applied[2].record.get("first_name"), &Value::Text("Adele".into()));
    let singles: Vec<String> = calls.iter().map(|(changes, id)| format!("{changes}:{}", id.clone().unwrap_or_default())).collect();
    assert_eq!(singles, ["1:r0", "1:r1"]);
}
