//! A custom field's definition: what an admin asked for (stored as JSON in
//! the plugin's kv), how the inputs of `define-field` and `change-field`
//! build it, the checks it must pass, and the kernel fields it becomes.

use crm_plugin_sdk::FieldExtension;
use crm_plugin_sdk::prelude::*;
use crm_plugin_sdk::serde::{Deserialize, Serialize};

use crate::formula::{self, FormulaType, Kind};
use crate::names;
use crate::options::{self, SelectOption};
use crate::rules;
use crate::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", rename_all = "snake_case")]
pub enum FieldType {
    Text,
    LongText,
    Integer,
    Decimal,
    /// An amount (`<name>`, a float) and its ISO 4217 code (`<name>_currency`).
    Currency,
    Date,
    Datetime,
    Boolean,
    SingleSelect,
    MultiSelect,
    Email,
    Url,
    Phone,
    /// A reference to a record of `target`.
    Relation,
    /// Computed from the record's other fields on every write
    /// (`formula`, `formula_type`).
    Formula,
}

impl FieldType {
    pub const ALL: [FieldType; 15] = [
        FieldType::Text,
        FieldType::LongText,
        FieldType::Integer,
        FieldType::Decimal,
        FieldType::Currency,
        FieldType::Date,
        FieldType::Datetime,
        FieldType::Boolean,
        FieldType::SingleSelect,
        FieldType::MultiSelect,
        FieldType::Email,
        FieldType::Url,
        FieldType::Phone,
        FieldType::Relation,
        FieldType::Formula,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::LongText => "long_text",
            FieldType::Integer => "integer",
            FieldType::Decimal => "decimal",
            FieldType::Currency => "currency",
            FieldType::Date => "date",
            FieldType::Datetime => "datetime",
            FieldType::Boolean => "boolean",
            FieldType::SingleSelect => "single_select",
            FieldType::MultiSelect => "multi_select",
            FieldType::Email => "email",
            FieldType::Url => "url",
            FieldType::Phone => "phone",
            FieldType::Relation => "relation",
            FieldType::Formula => "formula",
        }
    }

    pub fn parse(text: &str) -> Option<FieldType> {
        let text = text.trim().to_ascii_lowercase();
        FieldType::ALL.into_iter().find(|ty| ty.as_str() == text)
    }

    /// Text-valued: length and regex rules apply.
    pub fn is_textual(self) -> bool {
        matches!(self, FieldType::Text | FieldType::LongText | FieldType::Email | FieldType::Url | FieldType::Phone)
    }

    /// Number-valued: min and max apply.
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Integer | FieldType::Decimal | FieldType::Currency)
    }

    pub fn is_select(self) -> bool {
        matches!(self, FieldType::SingleSelect | FieldType::MultiSelect)
    }

    /// Whether a kernel unique index makes sense (and works) for the type.
    fn can_be_unique(self) -> bool {
        !matches!(
            self,
            FieldType::Boolean | FieldType::MultiSelect | FieldType::LongText | FieldType::Currency | FieldType::Formula
        )
    }
}

/// One custom field of one object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde")]
pub struct Definition {
    pub object: String,
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    /// As the admin wrote it; parsed per type when applied (see
    /// [`rules::default_value`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SelectOption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The currency code set when an amount comes without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// A formula field's expression (see [`crate::formula`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// What a formula field's expression gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula_type: Option<FormulaType>,
    /// The type the field had before its last type change, while stored
    /// values are still being converted (see [`crate::convert`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converting_from: Option<FieldType>,
    /// Hidden from the schema; stored values stay.
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub updated_at: i64,
}

const MAX_LABEL_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 1000;
const MAX_REGEX_LEN: usize = 1000;
const MAX_FORMULA_CHARS: usize = 2000;
const CURRENCY_SUFFIX: &str = "_currency";
const RELATION_SUFFIX: &str = "_id";

/// The name of a currency field's code field.
pub fn currency_field(name: &str) -> String {
    format!("{name}{CURRENCY_SUFFIX}")
}

/// An ISO 4217 code as the kernel stores it: three capital letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_uppercase())
}

/// A whole number without a trailing `.0`, other numbers as they are.
pub fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

impl Definition {
    pub fn new(object: &str, name: &str, field_type: FieldType, now: i64) -> Definition {
        Definition {
            object: object.to_owned(),
            name: name.to_owned(),
            field_type,
            label: String::new(),
            description: String::new(),
            required: false,
            unique: false,
            default: None,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            regex: None,
            options: Vec::new(),
            target: None,
            currency: None,
            formula: None,
            formula_type: None,
            converting_from: None,
            archived: false,
            created_at: now,
            updated_at: now,
        }
    }

    /// The names this definition takes on its object: its kernel fields,
    /// and for a relation the name of the record in GraphQL
    /// (`partner_id` is also `partner { … }`).
    pub fn taken_names(&self) -> Vec<String> {
        match self.field_type {
            FieldType::Currency => vec![self.name.clone(), currency_field(&self.name)],
            FieldType::Relation => {
                vec![self.name.clone(), self.name.strip_suffix(RELATION_SUFFIX).unwrap_or(&self.name).to_owned()]
            }
            _ => vec![self.name.clone()],
        }
    }

    pub fn option_keys(&self) -> impl Iterator<Item = &str> {
        self.options.iter().map(|option| option.key.as_str())
    }

    /// Drops the rules that do not apply to the (changed) type.
    pub fn keep_applicable_rules(&mut self) {
        let ty = self.field_type;
        if !ty.is_numeric() {
            (self.min, self.max) = (None, None);
        }
        if !ty.is_textual() {
            (self.min_length, self.max_length, self.regex) = (None, None, None);
        }
        if !ty.is_select() {
            self.options.clear();
        }
        if ty != FieldType::Relation {
            self.target = None;
        }
        if ty != FieldType::Currency {
            self.currency = None;
        }
        if ty != FieldType::Formula {
            (self.formula, self.formula_type) = (None, None);
        } else {
            (self.required, self.default) = (false, None);
        }
        if !ty.can_be_unique() {
            self.unique = false;
        }
        if self.default.as_deref().is_some_and(|default| rules::default_value(self, default, 0).is_err()) {
            self.default = None;
        }
    }

    /// Sets what `input` gives (the inputs of `define-field` and
    /// `change-field` other than `object`, `name` and `type`). An absent
    /// input keeps its value; a `null` clears it.
    pub fn apply(&mut self, input: &Fields) -> Result<()> {
        for (name, value) in input {
            let text = || value.as_text().map(str::trim).filter(|text| !text.is_empty()).map(String::from);
            match name {
                "object" | "name" | "type" => {}
                "label" => self.label = text().unwrap_or_default(),
                "description" => self.description = text().unwrap_or_default(),
                "required" => self.required = value.as_bool().unwrap_or(false),
                "unique" => self.unique = value.as_bool().unwrap_or(false),
                "default" => self.default = text(),
                "min" => self.min = number_input("min", value)?,
                "max" => self.max = number_input("max", value)?,
                "min_length" => self.min_length = length_input("min_length", value)?,
                "max_length" => self.max_length = length_input("max_length", value)?,
                "regex" => self.regex = text(),
                "options" => {
                    self.options = match text() {
                        Some(text) => options::parse(&text).map_err(Error::msg)?,
                        None => Vec::new(),
                    }
                }
                "target" => self.target = text(),
                "currency" => self.currency = text().map(|code| code.to_ascii_uppercase()),
                "formula" => self.formula = text(),
                "formula_type" => {
                    self.formula_type = match text() {
                        None => None,
                        Some(text) => Some(FormulaType::parse(&text).ok_or_else(|| {
                            let types: Vec<&str> = FormulaType::ALL.iter().map(|ty| ty.as_str()).collect();
                            Error::msg(format!("formula_type: '{text}' is not one of {}", types.join(", ")))
                        })?),
                    }
                }
                other => return Err(Error::msg(format!("{other}: is not an input of this action"))),
            }
        }
        Ok(())
    }

    /// Every check a definition must pass on its own; an error names the
    /// input and the rule. Whether the name is free on the object is the
    /// caller's check.
    pub fn check(&self) -> Result<()> {
        let ty = self.field_type;
        if !names::is_object(&self.object)? {
            return Err(Error::msg(format!(
                "object: '{}' is not an object of this tenant (custom fields go on {} and on objects enabled plugins declare)",
                self.object,
                names::OBJECTS.join(", "),
            )));
        }
        let longest = if ty == FieldType::Currency { names::MAX_NAME_LEN - CURRENCY_SUFFIX.len() } else { names::MAX_NAME_LEN };
        if !names::is_name(&self.name) || self.name.len() > longest {
            return Err(Error::msg(format!(
                "name: '{}' must start with a-z and use only a-z, 0-9 and '_' (at most {longest} characters)",
                self.name
            )));
        }
        if ty == FieldType::Relation
            && !self.name.strip_suffix(RELATION_SUFFIX).is_some_and(|stem| names::is_name(stem) && !stem.ends_with('_'))
        {
            return Err(Error::msg(format!(
                "name: a relation's name ends with _id, such as partner_id (GraphQL then offers partnerId and partner), not '{}'",
                self.name
            )));
        }
        if self.label.chars().count() > MAX_LABEL_CHARS {
            return Err(Error::msg(format!("label: at most {MAX_LABEL_CHARS} characters")));
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(Error::msg(format!("description: at most {MAX_DESCRIPTION_CHARS} characters")));
        }
        let only = |rule: &str, applies: bool, types: &str| -> Result<()> {
            if applies { Ok(()) } else { Err(Error::msg(format!("{rule}: applies only to {types} fields, not {}", ty.as_str()))) }
        };
        let numeric = "integer, decimal and currency";
        let textual = "text, long_text, email, url and phone";
        if self.min.is_some() {
            only("min", ty.is_numeric(), numeric)?;
        }
        if self.max.is_some() {
            only("max", ty.is_numeric(), numeric)?;
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(Error::msg(format!("min: {} is greater than max {}", number(min), number(max))));
        }
        if self.min_length.is_some() {
            only("min_length", ty.is_textual(), textual)?;
        }
        if self.max_length.is_some() {
            only("max_length", ty.is_textual(), textual)?;
        }
        if let (Some(min), Some(max)) = (self.min_length, self.max_length)
            && min > max
        {
            return Err(Error::msg(format!("min_length: {min} is greater than max_length {max}")));
        }
        if let Some(regex) = &self.regex {
            only("regex", ty.is_textual(), textual)?;
            if regex.len() > MAX_REGEX_LEN {
                return Err(Error::msg(format!("regex: at most {MAX_REGEX_LEN} characters")));
            }
            regex_lite::Regex::new(regex).map_err(|error| Error::msg(format!("regex: '{regex}' is invalid: {error}")))?;
        }
        if ty.is_select() && self.options.is_empty() {
            return Err(Error::msg("options: a select field needs at least one option"));
        }
        if !self.options.is_empty() {
            only("options", ty.is_select(), "single_select and multi_select")?;
        }
        match (&self.target, ty) {
            (None, FieldType::Relation) => return Err(Error::msg("target: a relation needs the object it points to")),
            (Some(target), FieldType::Relation) if !names::is_object(target)? => {
                return Err(Error::msg(format!("target: '{target}' is not an object of this tenant")));
            }
            (Some(_), ty) if ty != FieldType::Relation => only("target", false, "relation")?,
            _ => {}
        }
        if let Some(code) = &self.currency {
            only("currency", ty == FieldType::Currency, "currency")?;
            if !is_currency_code(code) {
                return Err(Error::msg(format!("currency: '{code}' is not an ISO 4217 code (three letters such as EUR)")));
            }
        }
        self.check_formula()?;
        if self.unique && !ty.can_be_unique() {
            return Err(Error::msg(format!("unique: a {} field cannot be unique", ty.as_str())));
        }
        if let Some(default) = &self.default {
            if self.unique {
                return Err(Error::msg("default: a unique field cannot have a default (every record would get the same value)"));
            }
            let value = rules::default_value(self, default, 0).map_err(|error| Error::msg(format!("default: {error}")))?;
            rules::Rules::new(self.clone())?
                .check(&value)
                .map_err(|violation| Error::msg(format!("default: '{default}' breaks {}", violation.message)))?;
        }
        Ok(())
    }

    /// The formula options on their own: present exactly on a formula
    /// field, and the expression free of syntax errors. Whether its fields
    /// exist and its types fit is checked against the other definitions
    /// ([`crate::formulas::check_object`]).
    fn check_formula(&self) -> Result<()> {
        if self.field_type != FieldType::Formula {
            if self.formula.is_some() {
                return Err(Error::msg(format!("formula: applies only to formula fields, not {}", self.field_type.as_str())));
            }
            if self.formula_type.is_some() {
                return Err(Error::msg(format!(
                    "formula_type: applies only to formula fields, not {}",
                    self.field_type.as_str()
                )));
            }
            return Ok(());
        }
        let Some(source) = &self.formula else {
            return Err(Error::msg(format!("formula: {} is a formula field and needs a formula", self.name)));
        };
        if self.formula_type.is_none() {
            return Err(Error::msg(format!(
                "formula_type: {} needs the type its formula gives: number, text, boolean or date",
                self.name
            )));
        }
        if source.chars().count() > MAX_FORMULA_CHARS {
            return Err(Error::msg(format!("formula: at most {MAX_FORMULA_CHARS} characters")));
        }
        if self.required {
            return Err(Error::msg("required: a formula field is computed, it cannot be required"));
        }
        if self.default.is_some() {
            return Err(Error::msg("default: a formula field is computed, it cannot have a default"));
        }
        formula::parse(source).map_err(|error| Error::msg(format!("formula: {}.{} {error}", self.object, self.name)))?;
        Ok(())
    }

    /// The kind of value a formula reading this field sees, or why it
    /// cannot read it.
    pub fn kind(&self) -> std::result::Result<Kind, String> {
        Ok(match self.field_type {
            FieldType::Text
            | FieldType::LongText
            | FieldType::Email
            | FieldType::Url
            | FieldType::Phone
            | FieldType::SingleSelect
            | FieldType::Relation => Kind::Text,
            FieldType::Integer | FieldType::Decimal | FieldType::Currency => Kind::Number,
            FieldType::Date => Kind::Date,
            FieldType::Datetime => Kind::Datetime,
            FieldType::Boolean => Kind::Boolean,
            FieldType::MultiSelect => return Err(format!("{} is a multi_select field, which formulas cannot read", self.name)),
            FieldType::Formula => self.formula_type.map_or(Kind::Null, FormulaType::kind),
        })
    }

    /// The kernel fields: what `tenant_schema` returns for an active field.
    pub fn extensions(&self) -> Vec<FieldExtension> {
        let mut description = self.label.clone();
        if !self.description.is_empty() {
            if !description.is_empty() {
                description.push_str(": ");
            }
            description.push_str(&self.description);
        }
        let name = self.name.as_str();
        let field = match self.field_type {
            FieldType::Text => FieldDecl::text(name),
            FieldType::LongText => FieldDecl::long_text(name),
            FieldType::Integer => FieldDecl::integer(name),
            FieldType::Decimal | FieldType::Currency => FieldDecl::float(name),
            FieldType::Date => FieldDecl::date(name).indexed(),
            FieldType::Datetime => FieldDecl::datetime(name).indexed(),
            FieldType::Boolean => FieldDecl::boolean(name),
            FieldType::SingleSelect => FieldDecl::enumeration(name, self.option_keys()).indexed(),
            FieldType::MultiSelect => FieldDecl::tags(name),
            FieldType::Email => FieldDecl::email(name),
            FieldType::Url => FieldDecl::url(name),
            FieldType::Phone => FieldDecl::phone(name),
            FieldType::Relation => FieldDecl::reference(name, self.target.clone().unwrap_or_default()).indexed(),
            FieldType::Formula => match self.formula_type.unwrap_or(FormulaType::Text) {
                FormulaType::Number => FieldDecl::float(name),
                FormulaType::Text => FieldDecl::text(name),
                FormulaType::Boolean => FieldDecl::boolean(name),
                FormulaType::Date => FieldDecl::date(name),
            },
        };
        if let Some(source) = &self.formula {
            if !description.is_empty() {
                description.push(' ');
            }
            description.push_str(&format!("(computed: {source})"));
        }
        // `required` stays the plugin's rule, not the kernel's: the kernel
        // would check it before this plugin patches in a default, and
        // would make the field non-null in GraphQL output although records
        // written before the field was defined have no value.
        let mut field = field.description(description.clone());
        if self.unique {
            field = field.unique().indexed();
        }
        let mut out = vec![FieldExtension { object: self.object.clone(), field }];
        if self.field_type == FieldType::Currency {
            let code = FieldDecl::text(currency_field(name)).description(format!("ISO 4217 currency code of {name}"));
            out.push(FieldExtension { object: self.object.clone(), field: code });
        }
        out
    }

    pub fn to_json(&self) -> String {
        crm_plugin_sdk::serde_json::to_string(self).unwrap_or_default()
    }
}

fn number_input(rule: &str, value: &Value) -> Result<Option<f64>> {
    match value {
        Value::Null => Ok(None),
        value => match value.as_float() {
            Some(number) if number.is_finite() => Ok(Some(number)),
            _ => Err(Error::msg(format!("{rule}: '{value}' is not a number"))),
        },
    }
}

fn length_input(rule: &str, value: &Value) -> Result<Option<u32>> {
    match value {
        Value::Null => Ok(None),
        Value::Int(length) => {
            u32::try_from(*length).map(Some).map_err(|_| Error::msg(format!("{rule}: {length} is not a length (0 or more)")))
        }
        other => Err(Error::msg(format!("{rule}: '{other}' is not a whole number"))),
    }
}

/// Whether `text` is `YYYY-MM-DD`, used by rules and tests alike.
pub fn is_date(text: &str) -> bool {
    time::parse_date(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_plugin_sdk::FieldKind;

    fn field(ty: FieldType) -> Definition {
        let name = if ty == FieldType::Relation { "x_id" } else { "x" };
        Definition::new("contact", name, ty, 0)
    }

    fn check(mut definition: Definition, input: Fields) -> std::result::Result<Definition, String> {
        definition.apply(&input).map_err(|error| error.to_string())?;
        definition.check().map_err(|error| error.to_string())?;
        Ok(definition)
    }

    fn refused(definition: Definition, input: Fields, expected: &str) {
        let error = check(definition, input).unwrap_err();
        assert!(error.contains(expected), "expected '{expected}' in: {error}");
    }

    #[test]
    fn types_round_trip_their_names() {
        for ty in FieldType::ALL {
            assert_eq!(FieldType::parse(ty.as_str()), Some(ty));
        }
        assert_eq!(FieldType::parse("LONG_TEXT"), Some(FieldType::LongText));
        assert_eq!(FieldType::parse("number"), None);
    }

    #[test]
    fn formula_options_belong_to_formula_fields() {
        let formula = |input: Fields| check(field(FieldType::Formula), input);
        let total = formula(Fields::new().with("formula", "a * 2").with("formula_type", "NUMBER")).unwrap();
        assert_eq!((total.formula.as_deref(), total.formula_type), (Some("a * 2"), Some(FormulaType::Number)));
        assert_eq!(total.extensions()[0].field.kind, crm_plugin_sdk::FieldKind::Float);
        assert!(total.extensions()[0].field.description.contains("(computed: a * 2)"));
        refused(
            field(FieldType::Formula),
            Fields::new().with("formula_type", "number"),
            "formula: x is a formula field and needs a formula",
        );
        refused(field(FieldType::Formula), Fields::new().with("formula", "1"), "formula_type: x needs the type");
        refused(
            field(FieldType::Formula),
            Fields::new().with("formula", "1").with("formula_type", "money"),
            "formula_type: 'money' is not one of",
        );
        refused(
            field(FieldType::Formula),
            Fields::new().with("formula", "(a + 1").with("formula_type", "number"),
            "formula: contact.x at position 7: expected ')', found the end of the formula",
        );
        refused(
            field(FieldType::Formula),
            Fields::new().with("formula", "1").with("formula_type", "number").with("default", "2"),
            "default: a formula field is computed",
        );
        refused(
            field(FieldType::Formula),
            Fields::new().with("formula", "1").with("formula_type", "number").with("unique", true),
            "unique: a formula field cannot be unique",
        );
        refused(field(FieldType::Text), Fields::new().with("formula", "1"), "formula: applies only to formula fields");
    }

    #[test]
    fn rules_must_fit_the_type() {
        refused(
            field(FieldType::Text),
            Fields::new().with("min", 3.0),
            "min: applies only to integer, decimal and currency fields",
        );
        refused(field(FieldType::Integer), Fields::new().with("regex", "^a"), "regex: applies only to text");
        refused(field(FieldType::Integer), Fields::new().with("max_length", 3), "max_length: applies only");
        refused(field(FieldType::Text), Fields::new().with("options", "a,b"), "options: applies only");
        refused(field(FieldType::Text), Fields::new().with("target", "company"), "target: applies only to relation");
        refused(field(FieldType::Text), Fields::new().with("currency", "EUR"), "currency: applies only");
        refused(field(FieldType::Boolean), Fields::new().with("unique", true), "unique: a boolean field cannot be unique");
        refused(field(FieldType::Integer), Fields::new().with("min", 5.0).with("max", 1.0), "min: 5 is greater than max 1");
        refused(field(FieldType::Text), Fields::new().with("min_length", 5).with("max_length", 1), "min_length: 5 is greater");
        refused(field(FieldType::Text), Fields::new().with("min_length", -1), "min_length: -1 is not a length");
        refused(field(FieldType::Text), Fields::new().with("regex", "(unclosed"), "regex: '(unclosed' is invalid");
        refused(field(FieldType::SingleSelect), Fields::new(), "options: a select field needs at least one option");
        refused(field(FieldType::Relation), Fields::new(), "target: a relation needs");
        refused(field(FieldType::Relation), Fields::new().with("target", "outbound_message"), "target: 'outbound_message' is not an object");
        refused(field(FieldType::Currency), Fields::new().with("currency", "EURO"), "currency: 'EURO' is not an ISO 4217 code");
        refused(field(FieldType::Text), Fields::new().with("colour", "red"), "colour: is not an input");
        check(field(FieldType::Currency), Fields::new().with("currency", "eur").with("min", 0.0)).unwrap();
    }

    #[test]
    fn names_and_objects_are_checked() {
        refused(
            Definition::new("custom_event", "x", FieldType::Text, 0),
            Fields::new(),
            "object: 'custom_event' is not an object of this tenant",
        );
        refused(Definition::new("contact", "Shoe", FieldType::Text, 0), Fields::new(), "name: 'Shoe' must start with a-z");
        let long = "a".repeat(60);
        check(Definition::new("contact", &long, FieldType::Text, 0), Fields::new()).unwrap();
        refused(Definition::new("contact", &long, FieldType::Currency, 0), Fields::new(), "at most 54 characters");
        let partner = Fields::new().with("target", "company");
        refused(
            Definition::new("contact", "partner", FieldType::Relation, 0),
            partner.clone(),
            "name: a relation's name ends with _id",
        );
        refused(Definition::new("contact", "partner__id", FieldType::Relation, 0), partner.clone(), "ends with _id");
        let relation = check(Definition::new("contact", "partner_id", FieldType::Relation, 0), partner).unwrap();
        assert_eq!(relation.taken_names(), ["partner_id", "partner"]);
    }

    #[test]
    fn defaults_are_parsed_per_type_and_meet_the_rules() {
        for (ty, input, default) in [
            (FieldType::Integer, Fields::new(), "42"),
            (FieldType::Decimal, Fields::new(), "4.5"),
            (FieldType::Currency, Fields::new(), "100"),
            (FieldType::Boolean, Fields::new(), "yes"),
            (FieldType::Date, Fields::new(), "2026-01-31"),
            (FieldType::Date, Fields::new(), "today"),
            (FieldType::Datetime, Fields::new(), "2026-01-31T09:30:00Z"),
            (FieldType::Datetime, Fields::new(), "now"),
            (FieldType::SingleSelect, Fields::new().with("options", "a,b"), "b"),
            (FieldType::MultiSelect, Fields::new().with("options", "a,b,c"), "a, c"),
            (FieldType::Email, Fields::new(), "Info@Example.com"),
            (FieldType::Url, Fields::new(), "https://example.com"),
            (FieldType::Relation, Fields::new().with("target", "company"), "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ] {
            check(field(ty), input.with("default", default)).unwrap_or_else(|error| panic!("{ty:?} {default}: {error}"));
        }
        for (ty, input, default, expected) in [
            (FieldType::Integer, Fields::new(), "4.5", "default: '4.5' is not an integer"),
            (FieldType::Integer, Fields::new().with("min", 10.0), "5", "default: '5' breaks min: must be at least 10"),
            (FieldType::Text, Fields::new().with("regex", "^[A-Z]+$"), "abc", "default: 'abc' breaks regex"),
            (FieldType::Boolean, Fields::new(), "maybe", "is not a boolean"),
            (FieldType::Date, Fields::new(), "2026-02-30", "is not a date"),
            (FieldType::Datetime, Fields::new(), "tomorrow", "is not an RFC 3339 date-time"),
            (FieldType::SingleSelect, Fields::new().with("options", "a,b"), "c", "breaks options: 'c' is not one of a, b"),
            (FieldType::Email, Fields::new(), "nope", "is not an email address"),
            (FieldType::Url, Fields::new(), "example.com", "is not an http(s) URL"),
            (FieldType::Relation, Fields::new().with("target", "company"), "42", "is not a record id"),
            (FieldType::Text, Fields::new().with("unique", true), "x", "a unique field cannot have a default"),
        ] {
            refused(field(ty), input.with("default", default), expected);
        }
    }

    #[test]
    fn a_changed_type_keeps_only_the_rules_that_apply() {
        let mut tier = check(field(FieldType::SingleSelect), Fields::new().with("options", "a,b").with("default", "a")).unwrap();
        tier.field_type = FieldType::Text;
        tier.keep_applicable_rules();
        assert!(tier.options.is_empty());
        assert_eq!(tier.default.as_deref(), Some("a"), "'a' is still a valid text");
        tier.check().unwrap();
        let mut email = check(field(FieldType::Email), Fields::new().with("unique", true).with("max_length", 50)).unwrap();
        email.field_type = FieldType::LongText;
        email.keep_applicable_rules();
        assert_eq!((email.unique, email.max_length), (false, Some(50)), "a long text cannot be unique");
        email.check().unwrap();
    }

    #[test]
    fn kernel_fields_follow_the_mapping() {
        let kinds = |definition: &Definition| -> Vec<(String, FieldKind, bool, bool)> {
            definition
                .extensions()
                .into_iter()
                .map(|ext| (ext.field.name, ext.field.kind, ext.field.unique, ext.field.indexed))
                .collect()
        };
        let mut budget = field(FieldType::Currency);
        budget.name = "budget".into();
        assert_eq!(
            kinds(&budget),
            [("budget".into(), FieldKind::Float, false, false), ("budget_currency".into(), FieldKind::Text, false, false)]
        );
        let tier =
            check(field(FieldType::SingleSelect), Fields::new().with("options", "gold,silver").with("label", "Tier")).unwrap();
        let extension = &tier.extensions()[0];
        assert_eq!((extension.field.kind, extension.field.indexed), (FieldKind::Enumeration, true));
        assert_eq!(extension.field.options, ["gold", "silver"]);
        assert_eq!(extension.field.description, "Tier");
        let code = check(field(FieldType::Text), Fields::new().with("unique", true).with("required", true)).unwrap();
        assert_eq!(kinds(&code), [("x".into(), FieldKind::Text, true, true)]);
        assert!(!code.extensions()[0].field.required, "required is enforced by the plugin");
        let owner = check(field(FieldType::Relation), Fields::new().with("target", "company")).unwrap();
        assert_eq!(owner.extensions()[0].field.target.as_deref(), Some("company"));
        assert_eq!(kinds(&field(FieldType::MultiSelect))[0].1, FieldKind::Tags);
        assert_eq!(kinds(&field(FieldType::Decimal))[0].1, FieldKind::Float);
        assert_eq!(kinds(&field(FieldType::Datetime))[0], ("x".into(), FieldKind::Datetime, false, true));
    }

    #[test]
    fn json_keeps_what_matters_and_reads_back() {
        let definition = check(field(FieldType::Integer), Fields::new().with("min", 30.0).with("max", 50.0)).unwrap();
        let json = definition.to_json();
        assert!(json.contains(r#""type":"integer""#) && json.contains(r#""min":30.0"#) && !json.contains("regex"), "{json}");
        let back: Definition = crm_plugin_sdk::serde_json::from_str(&json).unwrap();
        assert_eq!(back, definition);
    }
}
