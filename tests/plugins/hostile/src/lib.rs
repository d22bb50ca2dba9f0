//! Test plugin that misbehaves on request, to test the host's limits and
//! checks. The misbehaviour is the action's name for `invoke`, and config
//! `{"mode": "..."}` for its before-write hook on contact creates:
//!
//! - `ok` (the default mode): behaves.
//! - `loop`: never returns.
//! - `memory-bomb`: allocates until allocation fails.
//! - `panic`: panics.
//! - `big-output`: returns 64 MiB (action input `bytes` to change it) as a
//!   text output field, or as a patch of `first_name` in the hook.
//! - `flood`: calls the host in an unbounded loop (action input `via`:
//!   `clock`, the default, or `kv`; `max_calls` bounds it, 0 = never stop).
//! - `read-ungranted`: it is granted only `first_name` and `last_name` of
//!   contacts; reads a contact (action input `record_id`) and says whether `email`
//!   came back (outputs `email_present`, `fields`, `error`). The hook
//!   rejects the write (field `email`) if the change shows it an email.
//! - `write-ungranted`: creates a `deal`, which it has no grant on
//!   (outputs `deal_id` or `error`).
//! - `cross-tenant`: gets record `record_id` of `object` (default `contact`),
//!   presumably another tenant's, and returns what the host said (`found`,
//!   `fields`, `error`).
//! - `bad-decisions`: the hook returns one decision more than it got
//!   changes.
//! - `remember`: looks for traces of an earlier call (`mark`, an
//!   initialised static, 24301 as built, and whether a 6 MiB zeroed static
//!   is still zero where the plugin writes), then leaves such traces. The
//!   action outputs what it found (`mark`, `scratch_clean`); the hook rejects
//!   the write if it found any.
//!
//! (Action fields cannot be named `id`: that is a system field name, which
//! the kernel refuses in a manifest.) Outputs carry a host error as `error` (`"<code>: <message>"`) rather
//! than failing, so a test sees what the host answered.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

pub const MODES: [&str; 11] = [
    "ok",
    "loop",
    "memory-bomb",
    "panic",
    "big-output",
    "flood",
    "read-ungranted",
    "write-ungranted",
    "cross-tenant",
    "bad-decisions",
    "remember",
];

const BIG: i64 = 64 * 1024 * 1024;

#[derive(Default)]
pub struct Hostile;

impl Plugin for Hostile {
    fn manifest(&self) -> Manifest {
        let error = || FieldDecl::text("error").description("The host's error, if it returned one");
        Manifest::new("hostile", "0.1.0")
            .description("Misbehaves on request (tests only)")
            .before_write("contact", [Op::Create])
            .access(ObjectAccess::new("contact").fields(["first_name", "last_name"]).read())
            .kv()
            .action(ActionDecl::new("ok").output(FieldDecl::boolean("ok")))
            .action(ActionDecl::new("loop"))
            .action(ActionDecl::new("memory-bomb"))
            .action(ActionDecl::new("panic"))
            .action(ActionDecl::new("big-output").input(FieldDecl::integer("bytes")).output(FieldDecl::long_text("data")))
            .action(
                ActionDecl::new("flood")
                    .input(FieldDecl::enumeration("via", ["clock", "kv"]))
                    .input(FieldDecl::integer("max_calls"))
                    .output(FieldDecl::integer("calls"))
                    .output(error()),
            )
            .action(
                ActionDecl::new("read-ungranted")
                    .input(FieldDecl::text("record_id"))
                    .output(FieldDecl::boolean("email_present"))
                    .output(FieldDecl::tags("fields"))
                    .output(error()),
            )
            .action(ActionDecl::new("remember").output(FieldDecl::integer("mark")).output(FieldDecl::boolean("scratch_clean")))
            .action(ActionDecl::new("write-ungranted").output(FieldDecl::text("deal_id")).output(error()))
            .action(
                ActionDecl::new("cross-tenant")
                    .input(FieldDecl::text("record_id").required())
                    .input(FieldDecl::text("object"))
                    .output(FieldDecl::boolean("found"))
                    .output(FieldDecl::tags("fields"))
                    .output(error()),
            )
            .config_schema(json!({
                "type": "object",
                "properties": {"mode": {"type": "string", "enum": MODES}},
                "additionalProperties": false
            }))
    }

    fn before_write(&self, ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        let mode = ctx.config_json()["mode"].as_str().unwrap_or("ok").to_owned();
        let accept_all = || changes.iter().map(|_| Decision::accept()).collect::<Vec<_>>();
        match mode.as_str() {
            "loop" => spin(),
            "memory-bomb" => memory_bomb(),
            "panic" => panic!("hostile plugin panics on purpose"),
            "big-output" => Ok(changes.iter().map(|_| Decision::patch([("first_name", big_text(BIG))])).collect()),
            "flood" => {
                flood("clock", 0);
                Ok(accept_all())
            }
            "read-ungranted" => Ok(changes
                .iter()
                .map(|change| match change.after().contains("email") {
                    true => Decision::reject_field("email", "hostile plugin saw the email"),
                    false => Decision::accept(),
                })
                .collect()),
            "write-ungranted" => match records::create("deal", [("name", "stolen")]) {
                Ok(deal) => {
                    Ok(changes.iter().map(|_| Decision::reject(format!("hostile plugin created deal {}", deal.id))).collect())
                }
                Err(error) => Err(error),
            },
            "remember" => {
                let (mark, clean) = remember();
                if mark != 24301 || !clean {
                    return Ok(changes.iter().map(|_| Decision::reject(format!("found traces of an earlier call: mark {mark}, scratch clean {clean}"))).collect());
                }
                Ok(accept_all())
            }
            "bad-decisions" => {
                let mut decisions = accept_all();
                decisions.push(Decision::accept());
                Ok(decisions)
            }
            _ => Ok(accept_all()),
        }
    }

    fn invoke(&self, _ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        match action {
            "ok" => Ok(Fields::new().with("ok", true)),
            "loop" => spin(),
            "memory-bomb" => memory_bomb(),
            "panic" => panic!("hostile plugin panics on purpose"),
            "big-output" => Ok(Fields::new().with("data", big_text(input.int("bytes").unwrap_or(BIG)))),
            "flood" => {
                let (calls, error) = flood(input.text("via").unwrap_or("clock"), input.int("max_calls").unwrap_or(0));
                Ok(Fields::new().with("calls", calls).with("error", error))
            }
            "read-ungranted" => {
                let id = match input.text("record_id") {
                    Some(id) => Some(id.to_owned()),
                    None => records::query("contact", "{}", &[], 1, None)
                        .map(|page| page.records.into_iter().next().map(|record| record.id))
                        .unwrap_or(None),
                };
                let result = match id {
                    Some(id) => records::get("contact", &id),
                    None => Ok(None),
                };
                Ok(match result {
                    Ok(record) => {
                        let fields =
                            record.map(|record| record.names().map(String::from).collect::<Vec<_>>()).unwrap_or_default();
                        Fields::new().with("email_present", fields.iter().any(|name| name == "email")).with("fields", fields)
                    }
                    Err(error) => Fields::new().with("email_present", false).with("error", error.to_string()),
                })
            }
            "write-ungranted" => Ok(match records::create("deal", [("name", "stolen")]) {
                Ok(deal) => Fields::new().with("deal_id", deal.id),
                Err(error) => Fields::new().with("error", error.to_string()),
            }),
            "cross-tenant" => {
                let id = input.text("record_id").ok_or("record_id is required")?;
                let object = input.text("object").unwrap_or("contact");
                Ok(match records::get(object, id) {
                    Ok(Some(record)) => {
                        Fields::new().with("found", true).with("fields", record.names().map(String::from).collect::<Vec<_>>())
                    }
                    Ok(None) => Fields::new().with("found", false),
                    Err(error) => Fields::new().with("found", false).with("error", error.to_string()),
                })
            }
            "remember" => {
                let (mark, scratch_clean) = remember();
                Ok(Fields::new().with("mark", mark).with("scratch_clean", scratch_clean))
            }
            other => Err(Error::unknown_action(other)),
        }
    }
}

/// Initialised data: part of the memory image.
static MARK: AtomicI64 = AtomicI64::new(24301);
const SCRATCH_BYTES: usize = 6 << 20;
/// Zeroed data reaching from the low megabytes of linear memory to well
/// above them, so both ways the host resets a slot are seen.
static SCRATCH: Mutex<[u8; SCRATCH_BYTES]> = Mutex::new([0; SCRATCH_BYTES]);

/// What an earlier call left, if anything, then leaves its own traces.
fn remember() -> (i64, bool) {
    let mark = MARK.swap(-1, Ordering::Relaxed);
    let mut scratch = SCRATCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let offsets = [0, 1 << 20, 3 << 20, SCRATCH_BYTES - 1];
    let clean = offsets.iter().all(|&offset| scratch[offset] == 0);
    for offset in offsets {
        scratch[offset] = 0xFF;
    }
    (mark, clean)
}

fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn memory_bomb() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Written to, so the pages are really used.
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(std::hint::black_box(chunk));
    }
}

fn big_text(bytes: i64) -> String {
    "x".repeat(usize::try_from(bytes).unwrap_or(0))
}

/// Calls the host until `max_calls` (0: forever) or until it returns an
/// error; returns the calls made and the error.
fn flood(via: &str, max_calls: i64) -> (i64, Option<String>) {
    let mut calls: i64 = 0;
    loop {
        if max_calls > 0 && calls >= max_calls {
            return (calls, None);
        }
        calls += 1;
        match via {
            "kv" => {
                if let Err(error) = kv::get("flood") {
                    return (calls, Some(error.to_string()));
                }
            }
            _ => {
                std::hint::black_box(clock::now());
            }
        }
    }
}

register_plugin!(Hostile);

#[cfg(test)]
mod tests {
    //! Only the modes that end on a native target run here; the others are
    //! for the real host's limits.

    use super::*;
    use crm_plugin_sdk::testing::TestHost;

    #[test]
    fn manifest_is_valid() {
        Hostile.manifest().validate().unwrap();
    }

    #[test]
    fn ok_behaves() {
        let host = TestHost::new();
        assert_eq!(host.invoke(&Hostile, "ok", Fields::new()).unwrap().bool("ok"), Some(true));
        assert_eq!(host.before_write(&Hostile, vec![Change::create("contact", Fields::new())]).unwrap(), [Decision::accept()]);
    }

    #[test]
    fn ungranted_fields_stay_hidden() {
        let host = TestHost::new();
        let contact = host.insert("contact", [("first_name", "Ada"), ("email", "ada@math.org")]);
        let output = host.invoke(&Hostile, "read-ungranted", [("record_id", contact.id.as_str())]).unwrap();
        assert_eq!(output.bool("email_present"), Some(false));
        assert_eq!(output.texts("fields"), Some(&["first_name".to_owned()][..]));
        let output = host.invoke(&Hostile, "read-ungranted", Fields::new()).unwrap();
        assert_eq!(output.bool("email_present"), Some(false));

        host.set_config(json!({"mode": "read-ungranted"}));
        let decisions = host.before_write(&Hostile, vec![Change::create("contact", [("email", "a@b.c")])]).unwrap();
        assert_eq!(decisions, [Decision::accept()]);
    }

    #[test]
    fn ungranted_writes_are_violations() {
        let host = TestHost::new();
        let error = host.invoke(&Hostile, "write-ungranted", Fields::new()).unwrap_err();
        assert!(error.is(ErrorCode::Forbidden), "{error}");
        host.set_config(json!({"mode": "write-ungranted"}));
        assert!(
            host.before_write(&Hostile, vec![Change::create("contact", Fields::new())]).unwrap_err().is(ErrorCode::Forbidden)
        );
        assert!(host.records("deal").is_empty());
    }

    #[test]
    fn cross_tenant_reports_what_the_host_said() {
        let host = TestHost::new();
        let output = host.invoke(&Hostile, "cross-tenant", [("record_id", "01OTHERTENANT")]).unwrap();
        assert_eq!(output.bool("found"), Some(false));
        let output = host.invoke(&Hostile, "cross-tenant", [("record_id", "x"), ("object", "deal")]).unwrap_err();
        assert!(output.is(ErrorCode::Forbidden));
    }

    #[test]
    fn bad_decisions_are_caught() {
        let host = TestHost::new();
        host.set_config(json!({"mode": "bad-decisions"}));
        let error = host.before_write(&Hostile, vec![Change::create("contact", Fields::new())]).unwrap_err();
        assert!(error.message().contains("2 decisions for 1 changes"), "{error}");
    }

    #[test]
    fn bounded_flood_and_small_big_output() {
        let host = TestHost::new();
        let output = host.invoke(&Hostile, "flood", [("via", Value::from("kv")), ("max_calls", Value::Int(50))]).unwrap();
        assert_eq!(output.int("calls"), Some(50));
        let output = host.invoke(&Hostile, "big-output", [("bytes", 1024)]).unwrap();
        assert_eq!(output.text("data").map(str::len), Some(1024));
    }

    #[test]
    #[should_panic(expected = "hostile plugin panics on purpose")]
    fn panic_panics() {
        let host = TestHost::new();
        let _ = host.invoke(&Hostile, "panic", Fields::new());
    }
}
