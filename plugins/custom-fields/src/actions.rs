//! The admin's actions (GraphQL mutations `customFieldsDefineField`, …):
//! define, change, archive, restore and list custom fields.
//!
//! Every change of a definition is written to kv and announced with
//! `schema::changed()`; the kernel then asks `tenant_schema` again and
//! switches the tenant's metadata once the action returns. The kernel
//! refuses a schema it cannot apply (a field name another plugin took, a
//! unique index over duplicate values), but by then the definition is
//! stored, so the action checks what it can beforehand.

use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde_json::{self, json};

use crate::convert;
use crate::definition::{Definition, FieldType};
use crate::formula::FormulaType;
use crate::formulas;
use crate::jobs;
use crate::names;
use crate::rules::Rules;
use crate::store;

/// How many pages of 500 records the duplicate check reads before it
/// leaves the rest to the kernel's index build.
const MAX_SCAN_PAGES: usize = 20;
/// How many pages of 500 records a type change may read to check that
/// every stored value converts.
const MAX_SURVEY_PAGES: usize = 40;

fn definition_inputs(action: ActionDecl, type_required: bool) -> ActionDecl {
    let types = FieldType::ALL.map(FieldType::as_str);
    let mut field_type = FieldDecl::enumeration("type", types).description("The field's type");
    if type_required {
        field_type = field_type.required();
    } else {
        field_type = field_type.description(
            "A new type; stored values are converted, and the change is refused when any of them does not convert losslessly",
        );
    }
    object_and_name(action)
        .input(field_type)
        .input(FieldDecl::text("label").description("Display name"))
        .input(FieldDecl::text("description"))
        .input(FieldDecl::boolean("required").description("A value is needed on create and cannot be cleared"))
        .input(FieldDecl::boolean("unique").description("No two records may hold the same value (a kernel unique index)"))
        .input(FieldDecl::text("default").description(
            "Set on create when no value is given; text parsed per type: 'now' for datetime, 'today' for date, comma-separated keys for multi_select",
        ))
        .input(FieldDecl::float("min").description("Smallest number allowed (integer, decimal, currency)"))
        .input(FieldDecl::float("max").description("Largest number allowed (integer, decimal, currency)"))
        .input(FieldDecl::integer("min_length").description("Fewest characters (text types)"))
        .input(FieldDecl::integer("max_length").description("Most characters (text types)"))
        .input(FieldDecl::text("regex").description("A pattern the whole value must match, e.g. ^[A-Z]{3}$ (text types)"))
        .input(FieldDecl::long_text("options").description(
            "Select options in order: 'key:Label:#colour, key:Label, key' or a JSON array of such strings or of {key, label, color} objects",
        ))
        .input(FieldDecl::text("target").description("The object a relation points to"))
        .input(FieldDecl::text("currency").description("ISO 4217 code set when an amount comes without one (currency fields)"))
        .input(FieldDecl::long_text("formula").description(
            "The expression a formula field computes from the record's fields, e.g. if(amount > 1000, 'large', 'small')",
        ))
        .input(
            FieldDecl::enumeration("formula_type", FormulaType::ALL.map(FormulaType::as_str))
                .description("What a formula field's expression gives"),
        )
        .output(field_output())
}

fn object_and_name(action: ActionDecl) -> ActionDecl {
    action
        .input(FieldDecl::text("object").required().description(format!("{}, or an object an enabled plugin declares", names::OBJECTS.join(", "))))
        .input(FieldDecl::text("name").required().description("Stored field name: a-z, 0-9 and '_', starting with a letter"))
}

fn field_output() -> FieldDecl {
    FieldDecl::long_text("field").description("The definition as JSON")
}

/// The actions the manifest declares.
pub fn decls() -> Vec<ActionDecl> {
    vec![
        definition_inputs(
            ActionDecl::new("define-field").description("Defines a custom field on an object of this tenant"),
            true,
        ),
        definition_inputs(
            ActionDecl::new("change-field")
                .description("Changes a custom field; absent inputs keep their value, null clears one"),
            false,
        ),
        object_and_name(ActionDecl::new("archive-field"))
            .description("Hides a custom field from the schema; stored values stay")
            .output(field_output()),
        object_and_name(ActionDecl::new("restore-field"))
            .description("Brings an archived custom field back")
            .output(field_output()),
        ActionDecl::new("list-fields")
            .description("Every custom field of this tenant, archived ones included, as a JSON array")
            .input(FieldDecl::text("object").description("Only the fields of this object"))
            .output(FieldDecl::long_text("fields").description("The definitions as a JSON array")),
    ]
}

pub fn invoke(action: &str, input: &Fields) -> Result<Fields> {
    match action {
        "define-field" => define(input),
        "change-field" => change(input),
        "archive-field" => set_archived(input, true),
        "restore-field" => set_archived(input, false),
        "list-fields" => list(input),
        other => Err(Error::unknown_action(other)),
    }
}

fn required_text<'a>(input: &'a Fields, name: &str) -> Result<&'a str> {
    input.text(name).map(str::trim).filter(|text| !text.is_empty()).ok_or_else(|| Error::msg(format!("{name}: is required")))
}

fn field_type(text: &str) -> Result<FieldType> {
    FieldType::parse(text).ok_or_else(|| {
        let types: Vec<&str> = FieldType::ALL.iter().map(|ty| ty.as_str()).collect();
        Error::msg(format!("type: '{text}' is not one of {}", types.join(", ")))
    })
}

fn output(definition: &Definition) -> Fields {
    Fields::new().with("field", definition.to_json())
}

/// Stores a changed definition and tells the kernel.
fn save(mut definition: Definition) -> Result<Fields> {
    definition.updated_at = clock::now();
    store::put(&definition)?;
    schema::changed()?;
    Ok(output(&definition))
}

fn define(input: &Fields) -> Result<Fields> {
    let object = required_text(input, "object")?;
    let name = required_text(input, "name")?;
    let field_type = field_type(required_text(input, "type")?)?;
    let mut definition = Definition::new(object, name, field_type, clock::now());
    definition.apply(input)?;
    definition.check()?;
    let existing = store::of_object(object)?;
    if let Some(same) = existing.iter().find(|other| other.name == name) {
        let hint =
            if same.archived { "; it is archived: restore it with restore-field" } else { "; change it with change-field" };
        return Err(Error::msg(format!("name: {object}.{name} is already a custom field{hint}")));
    }
    check_name_free(&definition, &existing)?;
    check_formulas(&definition, &existing)?;
    if store::count()? >= store::MAX_FIELDS {
        return Err(Error::msg(format!("a tenant may have at most {} custom fields (archived ones count)", store::MAX_FIELDS)));
    }
    check_against_records(&definition, None)?;
    let formula = definition.field_type == FieldType::Formula;
    let (object, name) = (definition.object.clone(), definition.name.clone());
    let output = save(definition)?;
    if formula {
        jobs::schedule_computation(&object, &name)?;
    }
    Ok(output)
}

/// The object's formulas, with `definition` in place of its stored
/// version, must type-check and be free of cycles.
fn check_formulas(definition: &Definition, existing: &[Definition]) -> Result<()> {
    // First, so that a cycle is reported from the field being changed.
    let mut all = vec![definition.clone()];
    all.extend(existing.iter().filter(|other| other.name != definition.name).cloned());
    formulas::check_object(&definition.object, &all).map(|_| ())
}

fn change(input: &Fields) -> Result<Fields> {
    let object = required_text(input, "object")?;
    let name = required_text(input, "name")?;
    let previous = store::get(object, name)?
        .ok_or_else(|| Error::msg(format!("name: {object}.{name} is not a custom field; define it with define-field")))?;
    if previous.archived {
        return Err(Error::msg(format!("name: {object}.{name} is archived; restore it with restore-field first")));
    }
    let mut next = previous.clone();
    let mut retyped = false;
    if let Some(text) = input.text("type") {
        let to = field_type(text)?;
        if to != previous.field_type {
            let (from_name, to_name) = (previous.field_type.as_str().to_ascii_uppercase(), to.as_str().to_ascii_uppercase());
            convert::plan(previous.field_type, to).map_err(|reason| {
                Error::msg(format!("type: cannot change {object}.{name} from {from_name} to {to_name}: {reason}"))
            })?;
            if let Some(from) = previous.converting_from {
                return Err(Error::msg(format!(
                    "type: the values of {object}.{name} are still being converted from {}; try again shortly",
                    from.as_str().to_ascii_uppercase()
                )));
            }
            next.field_type = to;
            next.keep_applicable_rules();
            retyped = true;
        }
    }
    next.apply(input)?;
    next.check()?;
    if next == previous {
        return Ok(output(&next));
    }
    check_formulas(&next, &store::of_object(object)?)?;
    let mut convert_values = false;
    if retyped {
        let survey = survey(&previous, &next)?;
        if let Some(refusal) = survey.refusal(&previous, &next) {
            return Err(Error::msg(refusal));
        }
        if survey.to_convert > 0 {
            next.converting_from = Some(previous.field_type);
            convert_values = true;
        }
    }
    check_against_records(&next, Some(&previous))?;
    let recompute =
        next.field_type == FieldType::Formula && (next.formula != previous.formula || next.formula_type != previous.formula_type);
    let output = save(next)?;
    if convert_values {
        jobs::schedule_conversion(object, name)?;
    }
    if recompute {
        jobs::schedule_computation(object, name)?;
    }
    Ok(output)
}

/// Reads every stored value of `previous`'s field and counts what
/// converting it to `next`'s type would do.
fn survey(previous: &Definition, next: &Definition) -> Result<convert::Survey> {
    let (object, name) = (previous.object.as_str(), previous.name.as_str());
    let rules = Rules::new(next.clone())?;
    let filter = json!({ name: { "isNull": false } }).to_string();
    let mut survey = convert::Survey::default();
    let mut after: Option<String> = None;
    for _ in 0..MAX_SURVEY_PAGES {
        let page = match records::query(object, &filter, &[], 500, after.as_deref()) {
            Ok(page) => page,
            Err(error) if unknown_field(&error) => return Ok(survey),
            Err(error) => return Err(error),
        };
        for record in &page.records {
            if let Some(value) = record.get(name) {
                survey.add(previous.field_type, &rules, value);
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(survey),
        }
    }
    Err(Error::msg(format!(
        "type: {object}.{name} has values in more than {} records, more than one change can check; \
         define a new field and copy the values instead",
        MAX_SURVEY_PAGES * 500
    )))
}

fn set_archived(input: &Fields, archived: bool) -> Result<Fields> {
    let object = required_text(input, "object")?;
    let name = required_text(input, "name")?;
    let mut definition =
        store::get(object, name)?.ok_or_else(|| Error::msg(format!("name: {object}.{name} is not a custom field")))?;
    if definition.archived == archived {
        return Ok(output(&definition));
    }
    if !archived {
        // Another plugin may have taken the name meanwhile, and the stored
        // values may have gained duplicates while no index watched them.
        let existing = store::of_object(object)?;
        check_name_free(&definition, &existing)?;
        check_against_records(&definition, None)?;
    }
    definition.archived = archived;
    // A formula may not lose a field it reads.
    check_formulas(&definition, &store::of_object(object)?)?;
    save(definition)
}

fn list(input: &Fields) -> Result<Fields> {
    let definitions = match input.text("object").map(str::trim).filter(|object| !object.is_empty()) {
        Some(object) => store::of_object(object)?,
        None => store::all()?,
    };
    Ok(Fields::new().with("fields", serde_json::to_string(&definitions)?))
}

/// The names `definition` takes must be free on its object: not the
/// kernel's nor the GraphQL schema's, not another custom field's (a
/// currency field takes two names, a relation two), not another plugin's.
fn check_name_free(definition: &Definition, existing: &[Definition]) -> Result<()> {
    let object = definition.object.as_str();
    for name in definition.taken_names() {
        if let Some(what) = names::reserved(object, &name) {
            return Err(Error::msg(format!("name: {object}.{name} is {what}")));
        }
        if let Some(other) = existing.iter().find(|other| other.name != definition.name && other.taken_names().contains(&name)) {
            return Err(Error::msg(format!("name: {object}.{name} is taken by the custom field {}", other.name)));
        }
        if name_in_use(object, &name)? {
            return Err(Error::msg(format!("name: {object} already has a field '{name}' (from another plugin)")));
        }
        // A reference `<name>_id` of the object is also read as `<name>` in
        // GraphQL; a field of that name would hide it.
        if !names::OBJECTS.contains(&object) && name_in_use(object, &format!("{name}_id"))? {
            return Err(Error::msg(format!("name: {object}.{name} may be the GraphQL name of the relation {name}_id")));
        }
    }
    Ok(())
}

/// Whether the real host's filter parser knows `object.name`, i.e. the
/// tenant's metadata has that field. The SDK's test host has no metadata
/// (every filter parses there), so natively this says no and the table of
/// standard fields is the only check.
fn name_in_use(object: &str, name: &str) -> Result<bool> {
    if !cfg!(target_arch = "wasm32") {
        return Ok(false);
    }
    match records::count(object, &json!({ name: { "isNull": true } }).to_string()) {
        Ok(_) => Ok(true),
        Err(error) if unknown_field(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The host's answer to a filter on a field the object does not have (an
/// archived or not yet applied custom field): nothing stored to check.
fn unknown_field(error: &Error) -> bool {
    error.is(ErrorCode::Invalid) && error.message().contains("has no field")
}

/// Checks a new or changed definition against stored records: a relation
/// default must exist, a field made unique must not hold duplicates, and a
/// select option still in use cannot be removed.
fn check_against_records(definition: &Definition, previous: Option<&Definition>) -> Result<()> {
    let object = definition.object.as_str();
    let name = definition.name.as_str();
    if definition.field_type == FieldType::Relation
        && let (Some(id), Some(target)) = (&definition.default, &definition.target)
        && previous.is_none_or(|previous| previous.default != definition.default)
        && records::get(target, id)?.is_none_or(|record| record.deleted)
    {
        return Err(Error::msg(format!("default: there is no {target} with id {id}")));
    }
    if definition.unique && !previous.is_some_and(|previous| previous.unique) {
        check_no_duplicates(definition)?;
    }
    if let Some(previous) = previous
        && previous.field_type == FieldType::SingleSelect
        && definition.field_type == FieldType::SingleSelect
    {
        let removed: Vec<&str> =
            previous.option_keys().filter(|key| !definition.option_keys().any(|kept| kept == *key)).collect();
        if !removed.is_empty() {
            match records::count(object, &json!({ name: { "in": removed } }).to_string()) {
                Ok(0) => {}
                Ok(count) => {
                    return Err(Error::msg(format!(
                        "options: cannot remove {}: {count} records still hold it; change them first",
                        removed.join(", ")
                    )));
                }
                Err(error) if unknown_field(&error) => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}

fn check_no_duplicates(definition: &Definition) -> Result<()> {
    let (object, name) = (definition.object.as_str(), definition.name.as_str());
    let filter = json!({ name: { "isNull": false } }).to_string();
    let mut after: Option<String> = None;
    let mut previous: Option<Value> = None;
    for _ in 0..MAX_SCAN_PAGES {
        let page = match records::query(object, &filter, &[name], 500, after.as_deref()) {
            Ok(page) => page,
            Err(error) if unknown_field(&error) => return Ok(()),
            Err(error) => return Err(error),
        };
        for record in &page.records {
            let value = record.get(name).cloned();
            if value.is_some() && value == previous {
                return Err(Error::msg(format!(
                    "unique: {object}.{name} holds '{}' more than once; make the values distinct first",
                    value.unwrap_or_default()
                )));
            }
            previous = value;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
    // Past this many records the kernel's index build has the last word.
    Ok(())
}
