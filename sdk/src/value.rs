//! Field values and ordered sets of named fields.

use std::fmt;

/// A field value, as the host stores it.
///
/// Date-times are epoch milliseconds (`Int`), dates are `YYYY-MM-DD` text,
/// enumerations are their key as text, record ids are ULID text (`Id`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Id(String),
    Texts(Vec<String>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text of a `Text` or an `Id`.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) | Value::Id(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(int) => Some(*int),
            _ => None,
        }
    }

    /// A `Float`, or an `Int` widened to a float.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(float) => Some(*float),
            Value::Int(int) => Some(*int as f64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(bool) => Some(*bool),
            _ => None,
        }
    }

    /// The id of an `Id`, or of a `Text` holding one.
    pub fn as_id(&self) -> Option<&str> {
        self.as_text()
    }

    pub fn as_texts(&self) -> Option<&[String]> {
        match self {
            Value::Texts(texts) => Some(texts),
            _ => None,
        }
    }

    /// The value as JSON: `null`, a boolean, a number, a string or an array
    /// of strings. A non-finite float becomes `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match self {
            Value::Null => Json::Null,
            Value::Bool(bool) => Json::Bool(*bool),
            Value::Int(int) => Json::from(*int),
            Value::Float(float) => serde_json::Number::from_f64(*float).map_or(Json::Null, Json::Number),
            Value::Text(text) | Value::Id(text) => Json::String(text.clone()),
            Value::Texts(texts) => Json::Array(texts.iter().cloned().map(Json::String).collect()),
        }
    }

    /// The value closest to `json`: integers become `Int`, other numbers
    /// `Float`, arrays of strings `Texts`; objects and mixed arrays are kept
    /// as their JSON text.
    pub fn from_json(json: &serde_json::Value) -> Value {
        use serde_json::Value as Json;
        match json {
            Json::Null => Value::Null,
            Json::Bool(bool) => Value::Bool(*bool),
            Json::Number(number) => match number.as_i64() {
                Some(int) => Value::Int(int),
                None => Value::Float(number.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(text) => Value::Text(text.clone()),
            Json::Array(items) => match items.iter().map(|item| item.as_str().map(String::from)).collect() {
                Some(texts) => Value::Texts(texts),
                None => Value::Text(json.to_string()),
            },
            Json::Object(_) => Value::Text(json.to_string()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(bool) => write!(f, "{bool}"),
            Value::Int(int) => write!(f, "{int}"),
            Value::Float(float) => write!(f, "{float}"),
            Value::Text(text) | Value::Id(text) => f.write_str(text),
            Value::Texts(texts) => f.write_str(&texts.join(", ")),
        }
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}
impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}
impl From<i32> for Value {
    fn from(value: i32) -> Self {
        Value::Int(value.into())
    }
}
impl From<u32> for Value {
    fn from(value: u32) -> Self {
        Value::Int(value.into())
    }
}
impl From<f64> for Value {
    fn from(value: f64) -> Self {
        Value::Float(value)
    }
}
impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_owned())
    }
}
impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}
impl From<&String> for Value {
    fn from(value: &String) -> Self {
        Value::Text(value.clone())
    }
}
impl From<Vec<String>> for Value {
    fn from(value: Vec<String>) -> Self {
        Value::Texts(value)
    }
}
impl From<Vec<&str>> for Value {
    fn from(value: Vec<&str>) -> Self {
        Value::Texts(value.into_iter().map(String::from).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// Named field values in order; a name appears at most once.
///
/// The typed getters (`text`, `int`, …) return `None` for a field that is
/// absent, `null`, or of another type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(field, _)| field == name).map(|(_, value)| value)
    }

    /// Whether the field is present, even as `null`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_text)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_int)
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(Value::as_float)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }

    pub fn id(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_id)
    }

    pub fn texts(&self, name: &str) -> Option<&[String]> {
        self.get(name).and_then(Value::as_texts)
    }

    /// Sets a field, replacing its value if present; returns the old value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(field, _)| *field == name) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push((name, value));
                None
            }
        }
    }

    /// `self` with a field set.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Fields {
        self.set(name, value);
        self
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let index = self.0.iter().position(|(field, _)| field == name)?;
        Some(self.0.remove(index).1)
    }

    /// Sets every field of `patch` here (a `null` is kept as `null`).
    pub fn merge(&mut self, patch: &Fields) {
        for (name, value) in patch {
            self.set(name, value.clone());
        }
    }

    /// Keeps the fields for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Value) -> bool) {
        self.0.retain(|(name, value)| keep(name, value));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.iter().map(|(name, value)| (name.to_owned(), value.to_json())).collect())
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Fields::new();
        fields.extend(iter);
        fields
    }
}

impl<K: Into<String>, V: Into<Value>> Extend<(K, V)> for Fields {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.set(name, value);
        }
    }
}

impl<K: Into<String>, V: Into<Value>, const N: usize> From<[(K, V); N]> for Fields {
    fn from(fields: [(K, V); N]) -> Self {
        fields.into_iter().collect()
    }
}

impl<K: Into<String>, V: Into<Value>> From<Vec<(K, V)>> for Fields {
    fn from(fields: Vec<(K, V)>) -> Self {
        fields.into_iter().collect()
    }
}

impl IntoIterator for Fields {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, Value)>, fn(&'a (String, Value)) -> (&'a str, &'a Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_are_typed_and_lenient_only_between_text_and_id() {
        let fields = Fields::from([
            ("title", Value::from("VP Sales")),
            ("company_id", Value::Id("01J".into())),
            ("employees", Value::Int(600)),
            ("revenue", Value::Float(1.5)),
            ("active", Value::Bool(true)),
            ("tags", Value::from(vec!["a", "b"])),
            ("phone", Value::Null),
        ]);
        assert_eq!(fields.text("title"), Some("VP Sales"));
        assert_eq!(fields.text("company_id"), Some("01J"));
        assert_eq!(fields.id("company_id"), Some("01J"));
        assert_eq!(fields.int("employees"), Some(600));
        assert_eq!(fields.int("title"), None);
        assert_eq!(fields.float("employees"), Some(600.0));
        assert_eq!(fields.float("revenue"), Some(1.5));
        assert_eq!(fields.bool("active"), Some(true));
        assert_eq!(fields.texts("tags"), Some(&["a".to_owned(), "b".to_owned()][..]));
        assert_eq!(fields.text("phone"), None);
        assert!(fields.contains("phone"));
        assert!(!fields.contains("email"));
    }

    #[test]
    fn set_replaces_in_place_and_keeps_order() {
        let mut fields = Fields::new().with("a", 1).with("b", 2);
        assert_eq!(fields.set("a", 3), Some(Value::Int(1)));
        fields.merge(&Fields::from([("c", 4), ("b", 5)]));
        let names: Vec<&str> = fields.names().collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(fields.int("b"), Some(5));
        assert_eq!(fields.remove("a"), Some(Value::Int(3)));
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn json_round_trip_of_plain_values() {
        let fields = Fields::from([
            ("n", Value::Int(3)),
            ("f", Value::Float(0.5)),
            ("t", Value::from("x")),
            ("l", Value::from(vec!["p"])),
            ("z", Value::Null),
        ]);
        let json = fields.to_json();
        assert_eq!(json, serde_json::json!({"n": 3, "f": 0.5, "t": "x", "l": ["p"], "z": null}));
        for (name, value) in &fields {
            assert_eq!(&Value::from_json(&json[name]), value);
        }
        assert_eq!(Value::from_json(&serde_json::json!({"a": 1})), Value::Text("{\"a\":1}".into()));
    }
}
