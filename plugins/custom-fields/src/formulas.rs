//! The formula fields of one object together: every formula checked
//! against the object's fields, references between formulas free of
//! cycles, and an order in which each formula is computed after those it
//! reads.

use std::collections::BTreeMap;

use crm_plugin_sdk::prelude::*;

use crate::definition::{Definition, FieldType, currency_field};
use crate::formula::{self, FormulaType, Kind, Node, Scalar};
use crate::names;

/// One compiled formula field.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub name: String,
    pub formula_type: FormulaType,
    pub tree: Node,
}

/// The formula fields of an object, in evaluation order, and the kinds of
/// the fields they read.
#[derive(Debug, Clone, Default)]
pub struct Formulas {
    pub ordered: Vec<Compiled>,
    kinds: BTreeMap<String, Kind>,
}

/// What a formula on `object` sees when it reads `name`, given the
/// object's definitions (archived ones included).
fn kind_of(object: &str, definitions: &[Definition], name: &str) -> std::result::Result<Kind, String> {
    if let Some(definition) = definitions.iter().find(|definition| definition.name == name) {
        if definition.archived {
            return Err(format!("{name} is an archived custom field"));
        }
        return definition.kind();
    }
    if definitions.iter().any(|definition| {
        !definition.archived && definition.field_type == FieldType::Currency && currency_field(&definition.name) == name
    }) {
        return Ok(Kind::Text);
    }
    names::standard_kind(object, name)
        .unwrap_or_else(|| Err(format!("unknown field '{name}': {object} has no such standard or custom field")))
}

/// Checks every active formula field of `object` against `definitions`
/// (all of the object's definitions as they would be stored): the first
/// problem names the formula field, e.g. `formula: contact.total at
/// position 5: unknown field 'prise'`.
pub fn check_object(object: &str, definitions: &[Definition]) -> Result<Formulas> {
    let mut compiled = Vec::new();
    for definition in definitions.iter().filter(|definition| !definition.archived && definition.field_type == FieldType::Formula)
    {
        let (Some(source), Some(formula_type)) = (&definition.formula, definition.formula_type) else {
            return Err(Error::msg(format!("formula: {object}.{} has no formula", definition.name)));
        };
        let tree = formula::compile(source, formula_type, |name| kind_of(object, definitions, name))
            .map_err(|error| Error::msg(format!("formula: {object}.{} {error}", definition.name)))?;
        compiled.push(Compiled { name: definition.name.clone(), formula_type, tree });
    }
    let ordered = order(object, compiled)?;
    let mut kinds = BTreeMap::new();
    for formula in &ordered {
        for name in formula.tree.fields() {
            if let Ok(kind) = kind_of(object, definitions, &name) {
                kinds.insert(name, kind);
            }
        }
    }
    Ok(Formulas { ordered, kinds })
}

/// Orders formulas so that each comes after the formulas it reads;
/// refuses a formula that reads itself or a cycle of formulas.
fn order(object: &str, compiled: Vec<Compiled>) -> Result<Vec<Compiled>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Visiting,
        Done,
    }
    let index: BTreeMap<&str, usize> = compiled.iter().enumerate().map(|(at, formula)| (formula.name.as_str(), at)).collect();
    let reads: Vec<Vec<usize>> = compiled
        .iter()
        .map(|formula| formula.tree.fields().iter().filter_map(|name| index.get(name.as_str()).copied()).collect())
        .collect();
    let mut state = vec![State::New; compiled.len()];
    let mut out = Vec::with_capacity(compiled.len());
    fn visit(
        at: usize,
        reads: &[Vec<usize>],
        state: &mut [State],
        path: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> std::result::Result<(), Vec<usize>> {
        match state[at] {
            State::Done => return Ok(()),
            State::Visiting => {
                let start = path.iter().position(|&on_path| on_path == at).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(at);
                return Err(cycle);
            }
            State::New => {}
        }
        state[at] = State::Visiting;
        path.push(at);
        for &next in &reads[at] {
            visit(next, reads, state, path, out)?;
        }
        path.pop();
        state[at] = State::Done;
        out.push(at);
        Ok(())
    }
    let mut order = Vec::with_capacity(compiled.len());
    for at in 0..compiled.len() {
        if let Err(cycle) = visit(at, &reads, &mut state, &mut Vec::new(), &mut order) {
            let first = &compiled[cycle[0]].name;
            if cycle.len() == 2 {
                return Err(Error::msg(format!("formula: {object}.{first} refers to itself")));
            }
            let path: Vec<&str> = cycle.iter().map(|&at| compiled[at].name.as_str()).collect();
            return Err(Error::msg(format!("formula: {object}.{first} is part of a cycle: {}", path.join(" -> "))));
        }
    }
    let mut slots: Vec<Option<Compiled>> = compiled.into_iter().map(Some).collect();
    out.extend(order.into_iter().filter_map(|at| slots[at].take()));
    Ok(out)
}

impl Formulas {
    pub fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }

    /// Computes every formula over `record` (the record as it will be
    /// written), each formula seeing the ones computed before it: the
    /// stored value of each formula field.
    pub fn compute(&self, record: &Fields) -> Vec<(String, Value)> {
        let mut computed: BTreeMap<&str, Scalar> = BTreeMap::new();
        let mut out = Vec::with_capacity(self.ordered.len());
        for formula in &self.ordered {
            let value = {
                let read = |name: &str| -> Scalar {
                    if let Some(value) = computed.get(name) {
                        return value.clone();
                    }
                    match (record.get(name), self.kinds.get(name)) {
                        (Some(value), Some(kind)) => Scalar::from_value(value, *kind),
                        _ => Scalar::Null,
                    }
                };
                formula::evaluate(&formula.tree, &read)
            };
            let stored = value.clone().into_value(formula.formula_type);
            // What later formulas read is what is stored.
            let seen = if stored.is_null() { Scalar::Null } else { value };
            computed.insert(formula.name.as_str(), seen);
            out.push((formula.name.clone(), stored));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(name: &str, ty: FieldType, input: Fields) -> Definition {
        let mut definition = Definition::new("deal", name, ty, 0);
        definition.apply(&input).unwrap();
        definition.check().unwrap();
        definition
    }

    fn formula(name: &str, source: &str, ty: &str) -> Definition {
        definition(name, FieldType::Formula, Fields::new().with("formula", source).with("formula_type", ty))
    }

    fn refusal(definitions: &[Definition]) -> String {
        check_object("deal", definitions).unwrap_err().to_string()
    }

    #[test]
    fn formulas_read_standard_and_custom_fields_in_dependency_order() {
        let definitions = [
            formula("with_tax", "net + tax", "number"),
            formula("net", "amount * quantity", "number"),
            definition("quantity", FieldType::Integer, Fields::new()),
            formula("tax", "net * 0.2", "number"),
            formula("label", "name & ': ' & with_tax & ' ' & fee_currency", "text"),
            definition("fee", FieldType::Currency, Fields::new()),
        ];
        let formulas = check_object("deal", &definitions).unwrap();
        let order: Vec<&str> = formulas.ordered.iter().map(|formula| formula.name.as_str()).collect();
        assert_eq!(order, ["net", "tax", "with_tax", "label"]);
        let record = Fields::new()
            .with("name", "Printers")
            .with("amount", Value::Float(100.0))
            .with("quantity", 3)
            .with("fee_currency", "EUR");
        let values: BTreeMap<String, Value> = formulas.compute(&record).into_iter().collect();
        assert_eq!(values["net"], Value::Float(300.0));
        assert_eq!(values["tax"], Value::Float(60.0));
        assert_eq!(values["with_tax"], Value::Float(360.0));
        assert_eq!(values["label"], Value::from("Printers: 360 EUR"));
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_naming_the_formula() {
        assert_eq!(
            refusal(&[formula("total", "amount * prise", "number")]),
            "formula: deal.total at position 10: unknown field 'prise': deal has no such standard or custom field"
        );
        assert_eq!(
            refusal(&[formula("total", "name * 2", "number")]),
            "formula: deal.total at position 1: '*' needs a number, not a text"
        );
        assert_eq!(
            refusal(&[formula("total", "amount > 3", "number")]),
            "formula: deal.total at position 1: the formula gives a boolean, but formula_type is number"
        );
        assert!(refusal(&[formula("age", "created_at", "number")]).contains("created_at is a system field"));
        let mut archived = definition("quantity", FieldType::Integer, Fields::new());
        archived.archived = true;
        assert!(refusal(&[archived, formula("net", "quantity * 2", "number")]).contains("quantity is an archived custom field"));
        let tags = definition("labels", FieldType::MultiSelect, Fields::new().with("options", "a,b"));
        assert!(refusal(&[tags, formula("n", "labels", "text")]).contains("labels is a multi_select field"));
    }

    #[test]
    fn self_references_and_cycles_are_refused() {
        assert_eq!(refusal(&[formula("total", "total + 1", "number")]), "formula: deal.total refers to itself");
        assert_eq!(
            refusal(&[formula("a", "b + 1", "number"), formula("b", "c + 1", "number"), formula("c", "a + 1", "number")]),
            "formula: deal.a is part of a cycle: a -> b -> c -> a"
        );
    }
}
