//! The formula language on its own: parsing, type checking and evaluation
//! against a fixed set of fields.

use super::*;

/// The fields the tests' formulas may read, with a value each.
fn fields() -> Vec<(&'static str, Kind, Scalar)> {
    vec![
        ("amount", Kind::Number, Scalar::Number(1200.0)),
        ("quantity", Kind::Number, Scalar::Number(3.0)),
        ("zero", Kind::Number, Scalar::Number(0.0)),
        ("missing", Kind::Number, Scalar::Null),
        ("name", Kind::Text, Scalar::Text("Printers".into())),
        ("no_name", Kind::Text, Scalar::Null),
        ("won", Kind::Boolean, Scalar::Bool(true)),
        ("unknown_flag", Kind::Boolean, Scalar::Null),
        ("signed_on", Kind::Date, Scalar::Date(time_days("2026-01-01"))),
        ("closed_on", Kind::Date, Scalar::Date(time_days("2026-03-01"))),
        ("no_date", Kind::Date, Scalar::Null),
        ("met_at", Kind::Datetime, Scalar::Datetime(1_767_225_600_000 + 23 * 3_600_000)),
    ]
}

fn time_days(text: &str) -> i64 {
    let (year, month, day) = crate::time::parse_date(text).unwrap();
    crate::time::days_from_civil(year, month, day)
}

fn kind_of(name: &str) -> Result<Kind, String> {
    fields()
        .into_iter()
        .find(|(field, _, _)| *field == name)
        .map(|(_, kind, _)| kind)
        .ok_or_else(|| format!("unknown field '{name}'"))
}

/// Parses, checks and evaluates `source`: its kind and value.
fn run(source: &str) -> (Kind, Scalar) {
    let tree = parse(source).unwrap_or_else(|error| panic!("{source}: {error}"));
    let kind = check(&tree, &kind_of).unwrap_or_else(|error| panic!("{source}: {error}"));
    let read = |name: &str| fields().into_iter().find(|(field, _, _)| *field == name).map(|(_, _, value)| value).unwrap();
    (kind, evaluate(&tree, &read))
}

fn value(source: &str) -> Scalar {
    run(source).1
}

/// The error `source` fails with, parse or check.
fn error(source: &str) -> String {
    match parse(source) {
        Err(error) => error.to_string(),
        Ok(tree) => check(&tree, &kind_of).map(|kind| format!("no error, a {kind}")).unwrap_or_else(|error| error.to_string()),
    }
}

#[test]
fn arithmetic_follows_precedence_and_parentheses() {
    assert_eq!(value("1 + 2 * 3"), Scalar::Number(7.0));
    assert_eq!(value("(1 + 2) * 3"), Scalar::Number(9.0));
    assert_eq!(value("10 - 4 - 3"), Scalar::Number(3.0), "left associative");
    assert_eq!(value("12 / 4 / 3"), Scalar::Number(1.0));
    assert_eq!(value("-quantity * 2"), Scalar::Number(-6.0));
    assert_eq!(value("0.1 + 0.2"), Scalar::Number(0.30000000000000004));
    assert_eq!(value("round(0.1 + 0.2, 2)"), Scalar::Number(0.3));
    assert_eq!(value("round(amount / 7)"), Scalar::Number(171.0));
    assert_eq!(value(".5 + 1"), Scalar::Number(1.5));
    assert_eq!(value("abs(0 - quantity)"), Scalar::Number(3.0));
    assert_eq!(run("amount / quantity").0, Kind::Number);
}

#[test]
fn comparisons_and_logic_give_booleans() {
    assert_eq!(value("amount > 1000 and won"), Scalar::Bool(true));
    assert_eq!(value("amount >= 1200"), Scalar::Bool(true));
    assert_eq!(value("amount != 1200 or not won"), Scalar::Bool(false));
    assert_eq!(value("name = 'Printers'"), Scalar::Bool(true));
    assert_eq!(value("name <> \"Printers\""), Scalar::Bool(false));
    assert_eq!(value("signed_on < closed_on"), Scalar::Bool(true));
    assert_eq!(value("NOT won OR quantity == 3"), Scalar::Bool(true), "keywords ignore case");
    assert_eq!(value("1 + 1 = 2 and 2 * 2 = 4"), Scalar::Bool(true), "comparisons bind tighter than and");
}

#[test]
fn text_joins_with_ampersand_and_concat() {
    assert_eq!(value("name & ' x' & quantity"), Scalar::Text("Printers x3".into()));
    assert_eq!(
        value("concat(name, ': ', amount / 8, ' ', won, ' ', signed_on)"),
        Scalar::Text("Printers: 150 true 2026-01-01".into())
    );
    assert_eq!(value("'it\\'s ' & \"\\\"quoted\\\"\""), Scalar::Text("it's \"quoted\"".into()));
    assert_eq!(value("len(name)"), Scalar::Number(8.0));
    assert_eq!(value("met_at & ''"), Scalar::Text("2026-01-01T23:00:00.000Z".into()));
    assert_eq!(run("1 & 2").0, Kind::Text);
}

#[test]
fn if_picks_a_branch() {
    assert_eq!(value("if(amount > 1000, 'large', 'small')"), Scalar::Text("large".into()));
    assert_eq!(value("if(amount > 5000, 'large', 'small')"), Scalar::Text("small".into()));
    assert_eq!(value("if(unknown_flag, 1, 2)"), Scalar::Number(2.0), "a null condition takes the else branch");
    assert_eq!(value("if(won, null, 2)"), Scalar::Null);
    assert_eq!(run("if(won, null, 2)").0, Kind::Number);
}

#[test]
fn dates_count_days() {
    assert_eq!(value("days_between(signed_on, closed_on)"), Scalar::Number(59.0));
    assert_eq!(value("days_between(closed_on, signed_on)"), Scalar::Number(-59.0));
    assert_eq!(value("days_between(signed_on, met_at)"), Scalar::Number(0.0), "a date-time counts by its UTC date");
    assert_eq!(value("add_days(signed_on, 31)"), Scalar::Date(time_days("2026-02-01")));
    assert_eq!(run("add_days(met_at, 1)").0, Kind::Datetime);
    assert_eq!(Scalar::Date(time_days("2026-02-01")).into_value(FormulaType::Date), crm_plugin_sdk::Value::from("2026-02-01"));
}

#[test]
fn null_propagates_as_documented() {
    assert_eq!(value("missing + 1"), Scalar::Null);
    assert_eq!(value("missing > 1"), Scalar::Null);
    assert_eq!(value("not unknown_flag"), Scalar::Null);
    assert_eq!(value("unknown_flag and false"), Scalar::Bool(false));
    assert_eq!(value("unknown_flag or true"), Scalar::Bool(true));
    assert_eq!(value("unknown_flag and true"), Scalar::Null);
    assert_eq!(value("no_name & '!'"), Scalar::Text("!".into()), "& reads null as empty text");
    assert_eq!(value("days_between(no_date, closed_on)"), Scalar::Null);
    assert_eq!(value("coalesce(missing, quantity, 7)"), Scalar::Number(3.0));
    assert_eq!(value("is_null(missing) and not is_null(quantity)"), Scalar::Bool(true));
    assert_eq!(value("len(no_name)"), Scalar::Null);
}

#[test]
fn division_by_zero_is_null() {
    assert_eq!(value("amount / zero"), Scalar::Null);
    assert_eq!(value("amount / (quantity - 3)"), Scalar::Null);
    assert_eq!(value("coalesce(amount / zero, 0)"), Scalar::Number(0.0));
    assert_eq!(Scalar::Number(f64::INFINITY).into_value(FormulaType::Number), crm_plugin_sdk::Value::Null);
}

#[test]
fn syntax_errors_name_the_position() {
    for (source, expected) in [
        ("", "at position 1: the formula is empty"),
        ("amount +", "at position 9: expected a value, found the end of the formula"),
        ("(amount + 1", "at position 12: expected ')', found the end of the formula"),
        ("amount 2", "at position 8: expected an operator or the end of the formula, found the number 2"),
        ("amount # 2", "at position 8: unexpected character '#'"),
        ("'open", "at position 1: text is not closed with its quote"),
        ("sqrt(4)", "at position 1: unknown function 'sqrt'"),
        ("1 < 2 < 3", "at position 7: comparisons do not chain"),
        ("1.2.3", "at position 1: '1.2.3' is not a number"),
        ("if(won, 1, )", "at position 12: expected a value, found ')'"),
        ("and", "at position 1: expected a value, found 'and'"),
    ] {
        let found = error(source);
        assert!(found.starts_with(expected), "{source:?}: expected '{expected}', got '{found}'");
    }
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(error(&deep).contains("nested more than 64 levels deep"));
}

#[test]
fn type_errors_name_the_position() {
    for (source, expected) in [
        ("name * 2", "at position 1: '*' needs a number, not a text"),
        ("amount + won", "at position 10: '+' needs a number, not a boolean"),
        ("amount and won", "at position 1: 'and' needs a boolean, not a number"),
        ("not name", "at position 5: 'not' needs a boolean, not a text"),
        ("name = 1", "at position 6: cannot compare a text with a number"),
        ("won < true", "at position 1: '<' needs a number or a text or a date or a datetime, not a boolean"),
        ("signed_on = met_at", "at position 11: cannot compare a date with a datetime"),
        ("if(amount, 1, 2)", "at position 4: the condition of if() needs a boolean, not a number"),
        ("if(won, 1, 'x')", "at position 12: if() gives a number here and a text there"),
        ("if(won, 1)", "at position 1: if() takes 3 arguments, got 2"),
        ("days_between(amount, closed_on)", "at position 14: days_between() needs a date or a datetime, not a number"),
        ("round(1, 2, 3)", "at position 1: round() takes 1 or 2 arguments, got 3"),
        ("concat()", "at position 1: concat() takes at least 1 arguments, got 0"),
        ("price * 2", "at position 1: unknown field 'price'"),
        ("Amount * 2", "at position 1: unknown field 'Amount'"),
    ] {
        assert_eq!(error(source), expected, "{source}");
    }
}

#[test]
fn compile_checks_the_declared_type() {
    let compiled = compile("amount > 1000", FormulaType::Boolean, kind_of).unwrap();
    assert_eq!(compiled.fields(), ["amount"]);
    let refused = compile("amount * 2", FormulaType::Text, kind_of).unwrap_err();
    assert_eq!(refused.to_string(), "at position 1: the formula gives a number, but formula_type is text");
    assert!(compile("null", FormulaType::Date, kind_of).is_ok());
}
