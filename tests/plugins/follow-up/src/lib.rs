//! Test plugin: after a contact is created, adds a follow-up task to its
//! timeline and schedules a reminder (`remind:<contact id>`, config
//! `delay_ms`, default one minute) that adds a note when it fires. Also
//! declares an object of its own (`follow_up_rule`) and an action
//! (`schedule`). Config `hold_ms` keeps each delivery busy that long before
//! it does anything, so tests can kill the server mid-delivery.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::Deserialize;
use crm_plugin_sdk::serde_json::json;

const DEFAULT_DELAY_MS: i64 = 60_000;

#[derive(Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", default)]
struct Config {
    delay_ms: i64,
    hold_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { delay_ms: DEFAULT_DELAY_MS, hold_ms: 0 }
    }
}

#[derive(Default)]
pub struct FollowUp;

impl Plugin for FollowUp {
    fn manifest(&self) -> Manifest {
        Manifest::new("follow-up", "0.1.0")
            .description("Adds a follow-up task for every new contact and a reminder later")
            .object(
                ObjectDecl::new("follow_up_rule")
                    .description("When to follow up")
                    .field(FieldDecl::text("name").required())
                    .field(FieldDecl::integer("delay_ms")),
            )
            // Fail-closed: a delivery that fails is retried, then kept as a
            // dead letter, never skipped.
            .hook(HookDecl::after_commit("contact", [Op::Create]).fail_closed())
            .action(
                ActionDecl::new("schedule")
                    .description("Schedules a reminder for a contact")
                    .input(FieldDecl::reference("contact_id", "contact").required())
                    .input(FieldDecl::integer("delay_ms"))
                    .output(FieldDecl::text("timer_key")),
            )
            .access(ObjectAccess::new("contact").fields(["first_name"]).read())
            .access(ObjectAccess::new("activity").fields(["kind", "subject", "contact_id"]).read().create())
            .access(ObjectAccess::new("follow_up_rule").all())
            .timers()
            .config_schema(json!({
                "type": "object",
                "properties": {
                    "delay_ms": {"type": "integer", "minimum": 0, "default": DEFAULT_DELAY_MS},
                    "hold_ms": {"type": "integer", "minimum": 0, "default": 0}
                },
                "additionalProperties": false
            }))
    }

    fn after_commit(&self, ctx: &Ctx, events: &[Event]) -> Result<()> {
        let config: Config = ctx.config()?;
        if config.hold_ms > 0 {
            // Busy on purpose (no host calls): the wall clock of the sandbox.
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_millis(config.hold_ms) {
                std::hint::spin_loop();
            }
        }
        for event in events.iter().filter(|event| event.is("contact", Op::Create)) {
            // The timer first: scheduling replaces, so a redelivered event
            // does not leave two reminders.
            let key = schedule(&event.id, config.delay_ms)?;
            let name = event.fields.text("first_name").unwrap_or("the new contact");
            let task = records::create(
                "activity",
                [
                    ("kind", Value::from("task")),
                    ("subject", Value::from(format!("Follow up with {name}"))),
                    ("contact_id", Value::Id(event.id.clone())),
                ],
            )?;
            info!("created task {} for contact {} and timer {key}", task.id, event.id);
        }
        Ok(())
    }

    fn on_timer(&self, _ctx: &Ctx, key: &str, _payload: &[u8]) -> Result<()> {
        let Some(contact_id) = key.strip_prefix("remind:") else {
            warn!("ignoring unknown timer {key}");
            return Ok(());
        };
        let note = records::create(
            "activity",
            [
                ("kind", Value::from("note")),
                ("subject", Value::from(format!("Reminder for {contact_id}"))),
                ("contact_id", Value::Id(contact_id.to_owned())),
            ],
        )?;
        info!("created reminder note {} for contact {contact_id}", note.id);
        Ok(())
    }

    fn invoke(&self, ctx: &Ctx, action: &str, input: &Fields) -> Result<Fields> {
        match action {
            "schedule" => {
                let contact_id = input.id("contact_id").ok_or("contact_id is required")?;
                let delay_ms = match input.int("delay_ms") {
                    Some(delay_ms) => delay_ms,
                    None => ctx.config::<Config>()?.delay_ms,
                };
                if delay_ms < 0 {
                    return Err("delay_ms must not be negative".into());
                }
                Ok(Fields::new().with("timer_key", schedule(contact_id, delay_ms)?))
            }
            other => Err(Error::unknown_action(other)),
        }
    }
}

fn schedule(contact_id: &str, delay_ms: i64) -> Result<String> {
    let key = format!("remind:{contact_id}");
    timers::schedule_in(&key, delay_ms, contact_id.as_bytes())?;
    Ok(key)
}

register_plugin!(FollowUp);

#[cfg(test)]
mod tests {
    use super::*;
    use crm_plugin_sdk::testing::{DEFAULT_NOW, TestHost};

    #[test]
    fn manifest_is_valid() {
        FollowUp.manifest().validate().unwrap();
    }

    #[test]
    fn a_new_contact_gets_a_task_then_a_reminder() {
        let host = TestHost::new();
        let ada = host.insert("contact", [("first_name", "Ada"), ("email", "ada@math.org")]);
        host.after_commit(&FollowUp, host.take_events()).unwrap();

        let tasks = host.records("activity");
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].text("kind"), Some("task"));
        assert_eq!(tasks[0].text("subject"), Some("Follow up with Ada"));
        assert_eq!(tasks[0].id("contact_id"), Some(ada.id.as_str()));
        assert!(host.logged(&format!("for contact {}", ada.id)));

        let timers = host.timers();
        assert_eq!(timers.len(), 1);
        assert_eq!(timers[0].key, format!("remind:{}", ada.id));
        assert_eq!(timers[0].at, DEFAULT_NOW + 60_000);

        // The task's own event is not for this hook.
        host.after_commit(&FollowUp, host.take_events()).unwrap();
        assert_eq!(host.records("activity").len(), 1);

        host.advance(59_999);
        assert_eq!(host.fire_due_timers(&FollowUp).unwrap(), 0);
        host.advance(1);
        assert_eq!(host.fire_due_timers(&FollowUp).unwrap(), 1);
        let notes: Vec<Record> =
            host.records("activity").into_iter().filter(|record| record.text("kind") == Some("note")).collect();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].text("subject"), Some(format!("Reminder for {}", ada.id).as_str()));
    }

    #[test]
    fn the_delay_comes_from_the_config() {
        let host = TestHost::new();
        host.set_config(json!({"delay_ms": 5}));
        host.insert("contact", [("first_name", "Grace")]);
        host.after_commit(&FollowUp, host.take_events()).unwrap();
        assert_eq!(host.timers()[0].at, DEFAULT_NOW + 5);
    }

    #[test]
    fn the_schedule_action_returns_the_timer_key() {
        let host = TestHost::new();
        let output =
            host.invoke(&FollowUp, "schedule", [("contact_id", Value::Id("01C".into())), ("delay_ms", Value::Int(10))]).unwrap();
        assert_eq!(output.text("timer_key"), Some("remind:01C"));
        assert_eq!(host.timers()[0].at, DEFAULT_NOW + 10);
        assert!(host.invoke(&FollowUp, "schedule", Fields::new()).is_err());
    }

    #[test]
    fn unknown_timers_are_ignored() {
        let host = TestHost::new();
        host.on_timer(&FollowUp, "other", b"").unwrap();
        assert!(host.records("activity").is_empty());
        assert!(host.logged("ignoring unknown timer other"));
    }
}
