//! Test plugin: a before-write hook on contacts that patches the record.
//! It scores leads (30 for a VP title, 20 for a referral) into the
//! standard `lead_score` field and into `plugin_score`, a field extension
//! it declares, and tidies `first_name` (trimmed, first letter upper case).

use crm_plugin_sdk::prelude::*;

#[derive(Default)]
pub struct Patcher;

impl Plugin for Patcher {
    fn manifest(&self) -> Manifest {
        Manifest::new("patcher", "0.1.0")
            .description("Scores contacts and tidies their first name")
            // `contact.lead_score` is a standard field already, so the
            // extension has a name of its own.
            .extend("contact", FieldDecl::integer("plugin_score").indexed().description("The patcher's lead score"))
            .before_write("contact", [Op::Create, Op::Update])
            .access(
                ObjectAccess::new("contact")
                    .fields(["first_name", "title", "source", "lead_score", "plugin_score"])
                    .read()
                    .create()
                    .update(),
            )
    }

    fn before_write(&self, _ctx: &Ctx, changes: &[Change]) -> Result<Vec<Decision>> {
        Ok(changes.iter().map(|change| patch(change.after())).collect())
    }
}

pub fn score(after: &Fields) -> i64 {
    let mut score = 0;
    if after.text("title").is_some_and(|title| title.to_lowercase().contains("vp")) {
        score += 30;
    }
    if after.text("source").is_some_and(|source| source.trim().eq_ignore_ascii_case("referral")) {
        score += 20;
    }
    score
}

pub fn tidy_name(name: &str) -> String {
    let name = name.trim();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn patch(after: &Fields) -> Decision {
    let score = score(after);
    let mut patch = Fields::new();
    for field in ["lead_score", "plugin_score"] {
        if after.int(field) != Some(score) {
            patch.set(field, score);
        }
    }
    if let Some(name) = after.text("first_name") {
        let tidy = tidy_name(name);
        if tidy != name {
            patch.set("first_name", tidy);
        }
    }
    Decision::patch(patch)
}

register_plugin!(Patcher);

#[cfg(test)]
mod tests {
    use super::*;
    use crm_plugin_sdk::testing::TestHost;

    #[test]
    fn manifest_is_valid() {
        Patcher.manifest().validate().unwrap();
    }

    #[test]
    fn scores_titles_and_referrals() {
        let check = |title: &str, source: &str, expected: i64| {
            let fields = Fields::new().with("title", title).with("source", source);
            assert_eq!(score(&fields), expected, "{title} / {source}");
        };
        check("VP Sales", "web", 30);
        check("svp of marketing", "Referral", 50);
        check("Engineer", "referral", 20);
        check("Engineer", "referrals", 0);
        assert_eq!(score(&Fields::new()), 0);
    }

    #[test]
    fn tidies_first_names() {
        assert_eq!(tidy_name("  ada "), "Ada");
        assert_eq!(tidy_name("élodie"), "Élodie");
        assert_eq!(tidy_name("Grace"), "Grace");
        assert_eq!(tidy_name(" "), "");
    }

    #[test]
    fn writes_store_the_patch() {
        let host = TestHost::new();
        let stored = host
            .write(&Patcher, Change::create("contact", [("first_name", " ada"), ("title", "VP Eng"), ("source", "referral")]))
            .unwrap();
        assert_eq!(stored.text("first_name"), Some("Ada"));
        assert_eq!(stored.int("lead_score"), Some(50));
        assert_eq!(stored.int("plugin_score"), Some(50));
    }

    #[test]
    fn an_update_that_changes_nothing_is_accepted() {
        let host = TestHost::new();
        let after = Fields::new().with("first_name", "Ada").with("lead_score", 0).with("plugin_score", 0);
        let decisions = host.before_write(&Patcher, vec![Change::update("contact", "01ID", after.clone(), after)]).unwrap();
        assert_eq!(decisions, [Decision::accept()]);
    }
}
