//! `crm seed --tenant T --contacts N [--seed S]`: synthetic benchmark data
//! shaped like the peer benchmark's `seed.sh` (PostGraphile on PostgreSQL),
//! so both servers answer the same workloads over the same data.
//!
//! For N contacts it creates N/10 companies (at least one), N/2 deals and 2N
//! activities, with the peer's distributions:
//!
//! - company g: `Company g`, `companyg.example`, one of 10 industries by
//!   `g % 10`, 1..5000 employees;
//! - contact g: works at company `1 + (g-1) % C`, email
//!   `contact<g>@company<cid>.example`, a random first and last name out of
//!   20 each, one of 7 lifecycle stages uniformly, lead score 0..=100, phone,
//!   title by `g % 10`; the peer's `custom` JSON becomes `source` (by `g % 5`)
//!   and `tags` (`t<g%17>`, `t<g%23>`);
//! - deal g: a uniformly random contact and that contact's company, one of
//!   the 7 stages of the default pipeline uniformly, amount 0..100000 with
//!   cents, close date within ±90 days of today;
//! - activity g: a uniformly random contact, kind by `g % 5`, subject
//!   `Follow-up #g`, a fixed body, occurred in the last 365 days.
//!
//! Differences forced by the kernel: ids are ULIDs chosen by the writer and
//! `created_at` is the time of the write (kernel-owned), where the peer
//! spreads `created_at` over two years. Values come from a fixed-seed RNG, so
//! a given `--seed` and N always produce the same records.
//!
//! Writes go through the group-commit writer in requests of 1000 mutations,
//! several windows of requests in flight at once, so each transaction (one
//! fsync) carries many requests. Companies are written before the contacts
//! that reference them, contacts before deals and activities.
//!
//! The ids of the created contacts and companies, in seed order (line g is
//! contact g), go to `<data-dir>/seed-contact-ids.txt` and
//! `<data-dir>/seed-company-ids.txt` for load generators (`ID_FILE`,
//! `COMPANY_ID_FILE` of the peer's bench.sh).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_core::{Actor, Fields, Kernel, ListQuery, Mutation, PageRequest, RecordId, TenantStore, Value, WriteRequest};

/// Mutations per write request (the writer's maximum).
const CHUNK: usize = crm_core::writer::MAX_MUTATIONS;
/// Requests per `write_each` call.
const WINDOW: usize = 16;
/// `write_each` calls in flight at once: the writer's queue holds up to
/// `WINDOW * IN_FLIGHT * CHUNK` records, enough for large group commits
/// while the next window is generated.
const IN_FLIGHT: usize = 4;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

const INDUSTRIES: [&str; 10] =
    ["Software", "Retail", "Finance", "Healthcare", "Manufacturing", "Education", "Media", "Logistics", "Energy", "Hospitality"];
const TITLES: [&str; 10] =
    ["CEO", "CTO", "VP Sales", "Engineer", "Marketing Manager", "Buyer", "Analyst", "Director", "Consultant", "Founder"];
/// The peer's stage values are exactly the kernel's enum keys.
const STAGES: [&str; 7] =
    ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist"];
const FIRST_NAMES: [&str; 20] = [
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger", "Radia", "Donald", "Katherine",
    "John", "Hedy", "Tim", "Sophie", "Niklaus", "Anita", "Guido",
];
const LAST_NAMES: [&str; 20] = [
    "Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen", "Dijkstra", "Perlman",
    "Knuth", "Johnson", "McCarthy", "Lamarr", "Berners-Lee", "Wilson", "Wirth", "Borg", "van Rossum",
];
const SOURCES: [&str; 5] = ["web", "referral", "event", "ads", "import"];
/// Keys of the default sales pipeline's stages.
const DEAL_STAGES: [&str; 7] = [
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];
const ACTIVITY_KINDS: [&str; 5] = ["email", "call", "meeting", "note", "task"];

/// SplitMix64: tiny, fast and the same on every platform and release.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn text(value: impl Into<String>) -> Value {
    Value::Text(value.into())
}

/// Counts of what one run creates for `contacts` contacts.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    contacts: usize,
    companies: usize,
    deals: usize,
    activities: usize,
}

impl Plan {
    fn new(contacts: usize) -> Plan {
        Plan { contacts, companies: (contacts / 10).max(1), deals: contacts / 2, activities: contacts * 2 }
    }
    fn total(&self) -> usize {
        self.contacts + self.companies + self.deals + self.activities
    }
}

pub async fn run(kernel: &Kernel, tenant: &str, contacts: usize, seed: u64) -> Result<()> {
    if contacts == 0 {
        bail!("--contacts must be at least 1");
    }
    let info = kernel.system().find_tenant(tenant).map_err(|error| anyhow::anyhow!(error.message))?;
    let store = kernel.tenant(&info.id).map_err(|error| anyhow::anyhow!(error.message))?;
    let existing = store
        .list(&ListQuery::new("contact"), &PageRequest { first: Some(1), ..PageRequest::default() })
        .map_err(|error| anyhow::anyhow!(error.message))?;
    if !existing.records.is_empty() {
        bail!("tenant '{}' already has contacts; seed a new tenant or an empty data directory (emails would collide)", info.name);
    }
    let plan = Plan::new(contacts);
    println!(
        "[seed] tenant '{}': contacts={} companies={} deals={} activities={} (seed {seed})",
        info.name, plan.contacts, plan.companies, plan.deals, plan.activities
    );
    let started = Instant::now();
    let now = crm_core::clock::now_ms();
    let mut rng = Rng(seed);

    let company_ids = write_phase(&store, "companies", plan.companies, |g| {
        let fields = Fields::from([
            ("name".into(), text(format!("Company {g}"))),
            ("domain".into(), text(format!("company{g}.example"))),
            ("industry".into(), text(INDUSTRIES[g % 10])),
            ("employees".into(), Value::Int(1 + (rng.unit() * 5000.0).round() as i64)),
        ]);
        Mutation::Create { object: "company".into(), fields }
    })
    .await?;

    let contact_ids = write_phase(&store, "contacts", plan.contacts, |g| {
        let cid = 1 + (g - 1) % plan.companies;
        let first_name = rng.pick(&FIRST_NAMES);
        let last_name = rng.pick(&LAST_NAMES);
        let stage = rng.pick(&STAGES);
        let lead_score = rng.below(101) as i64;
        let fields = Fields::from([
            ("first_name".into(), text(first_name)),
            ("last_name".into(), text(last_name)),
            ("email".into(), text(format!("contact{g}@company{cid}.example"))),
            ("phone".into(), text(format!("+1-555-{:04}", g % 10000))),
            ("title".into(), text(TITLES[g % 10])),
            ("company_id".into(), Value::Id(company_ids[cid - 1])),
            ("lifecycle_stage".into(), text(stage)),
            ("lead_score".into(), Value::Int(lead_score)),
            ("source".into(), text(SOURCES[g % 5])),
            ("tags".into(), Value::List(vec![format!("t{}", g % 17), format!("t{}", g % 23)])),
        ]);
        Mutation::Create { object: "contact".into(), fields }
    })
    .await?;

    write_phase(&store, "deals", plan.deals, |g| {
        let contact = rng.below(plan.contacts); // 0-based: contact g = index g-1
        let company = contact % plan.companies;
        let stage = rng.pick(&DEAL_STAGES);
        let amount = (rng.unit() * 100_000.0 * 100.0).round() / 100.0;
        let days = rng.below(180) as i64 - 90;
        let close_date = crm_core::normalize::format_datetime(now + days * DAY_MS);
        let fields = Fields::from([
            ("name".into(), text(format!("Deal {g}"))),
            ("contact_id".into(), Value::Id(contact_ids[contact])),
            ("company_id".into(), Value::Id(company_ids[company])),
            ("stage".into(), text(stage)),
            ("amount".into(), Value::Float(amount)),
            ("close_date".into(), text(&close_date[..10])),
        ]);
        Mutation::Create { object: "deal".into(), fields }
    })
    .await?;

    write_phase(&store, "activities", plan.activities, |g| {
        let contact = rng.below(plan.contacts);
        let occurred_at = now - (rng.unit() * 365.0 * DAY_MS as f64) as i64;
        let fields = Fields::from([
            ("contact_id".into(), Value::Id(contact_ids[contact])),
            ("kind".into(), text(ACTIVITY_KINDS[g % 5])),
            ("subject".into(), text(format!("Follow-up #{g}"))),
            (
                "body".into(),
                text(format!(
                    "Discussed pricing, next steps and timeline. Customer asked for a proposal covering {} seats and an onboarding plan.",
                    1 + g % 50
                )),
            ),
            ("occurred_at".into(), Value::Int(occurred_at)),
        ]);
        Mutation::Create { object: "activity".into(), fields }
    })
    .await?;

    let elapsed = started.elapsed().as_secs_f64();
    let data_dir = kernel.data_dir();
    let contacts_file = data_dir.join("seed-contact-ids.txt");
    let companies_file = data_dir.join("seed-company-ids.txt");
    write_ids(&contacts_file, &contact_ids)?;
    write_ids(&companies_file, &company_ids)?;
    println!(
        "[seed] done: {} records in {elapsed:.1} s ({:.0} records/s, {:.0} contacts/s of wall time)",
        plan.total(),
        plan.total() as f64 / elapsed,
        plan.contacts as f64 / elapsed
    );
    println!("[seed] contact ids: {}", contacts_file.display());
    println!("[seed] company ids: {}", companies_file.display());
    Ok(())
}

/// Creates `count` records, the g-th (1-based) built by `make(g)`, and
/// returns their ids in g order. Generation runs here, in order, so the data
/// is deterministic; the writes of up to `IN_FLIGHT` windows overlap.
async fn write_phase(
    store: &Arc<TenantStore>,
    label: &str,
    count: usize,
    mut make: impl FnMut(usize) -> Mutation,
) -> Result<Vec<RecordId>> {
    let started = Instant::now();
    let windows = count.div_ceil(CHUNK * WINDOW);
    let mut ids: Vec<Vec<RecordId>> = vec![Vec::new(); windows];
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = 0usize;
    let mut rejected: Vec<String> = Vec::new();
    let mut rejected_count = 0usize;
    let mut last_report = Instant::now();
    let mut next = 1usize;

    let mut collect = |window: usize,
                       results: Vec<crm_core::Result<Vec<crm_core::Applied>>>,
                       ids: &mut Vec<Vec<RecordId>>,
                       done: &mut usize| {
        for result in results {
            match result {
                Ok(applied) => {
                    *done += applied.len();
                    ids[window].extend(applied.iter().map(|applied| applied.record.id));
                }
                Err(error) => {
                    rejected_count += 1;
                    if rejected.len() < 5 {
                        rejected.push(error.message);
                    }
                }
            }
        }
    };

    for window in 0..windows {
        let mut requests = Vec::with_capacity(WINDOW);
        while requests.len() < WINDOW && next <= count {
            let end = (next + CHUNK - 1).min(count);
            let mutations: Vec<Mutation> = (next..=end).map(&mut make).collect();
            next = end + 1;
            requests.push(WriteRequest::new(Actor::cli(), mutations));
        }
        let store = store.clone();
        tasks.spawn(async move { (window, store.write_each(requests).await) });
        while tasks.len() >= IN_FLIGHT {
            let (window, results) = tasks.join_next().await.context("seed task")?.context("seed task")?;
            collect(window, results, &mut ids, &mut done);
            report(label, done, count, started, &mut last_report, false);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        let (window, results) = joined.context("seed task")?;
        collect(window, results, &mut ids, &mut done);
        report(label, done, count, started, &mut last_report, false);
    }
    report(label, done, count, started, &mut last_report, true);
    if rejected_count > 0 {
        bail!("{rejected_count} write requests of {label} failed; first errors: {}", rejected.join(" | "));
    }
    let ids: Vec<RecordId> = ids.into_iter().flatten().collect();
    if ids.len() != count {
        bail!("created {} {label}, expected {count}", ids.len());
    }
    Ok(ids)
}

fn report(label: &str, done: usize, count: usize, started: Instant, last: &mut Instant, last_line: bool) {
    if !last_line && last.elapsed() < Duration::from_secs(2) {
        return;
    }
    *last = Instant::now();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let verb = if last_line { "created" } else { "…" };
    println!("[seed] {label}: {verb} {done}/{count} in {secs:.1} s ({:.0}/s)", done as f64 / secs);
    let _ = std::io::stdout().flush();
}

fn write_ids(path: &Path, ids: &[RecordId]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for id in ids {
        writeln!(out, "{id}")?;
    }
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_matches_the_peer_ratios() {
        assert_eq!(Plan::new(100_000), Plan { contacts: 100_000, companies: 10_000, deals: 50_000, activities: 200_000 });
        assert_eq!(Plan::new(5).companies, 1);
    }

    #[test]
    fn rng_is_deterministic_and_uniform_enough() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            let x = a.below(7);
            assert_eq!(x, b.below(7));
            counts[x] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
        let u = Rng(1).unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[tokio::test]
    async fn seeds_a_small_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = Kernel::open(dir.path(), crm_core::StoreOptions::default()).unwrap();
        let (info, _) = kernel.create_tenant("bench").unwrap();
        run(&kernel, "bench", 2_500, 42).await.unwrap();
        let store = kernel.tenant(&info.id).unwrap();
        let count = |object: &str| store.count(&ListQuery::new(object)).unwrap();
        assert_eq!((count("company"), count("contact"), count("deal"), count("activity")), (250, 2_500, 1_250, 5_000));
        let ids = std::fs::read_to_string(dir.path().join("seed-contact-ids.txt")).unwrap();
        let ids: Vec<&str> = ids.lines().collect();
        assert_eq!(ids.len(), 2_500);
        let first = store.get("contact", RecordId::parse(ids[0]).unwrap()).unwrap().unwrap();
        assert_eq!(first.get("email"), &Value::Text("contact1@company1.example".into()));
        // Seeding again would collide on emails: refused up front.
        assert!(run(&kernel, "bench", 10, 42).await.is_err());
    }
}
