//! Evaluation of a checked formula over one record's values. Never fails:
//! what cannot be computed (a null operand, division by zero, a number out
//! of range) is null.

use crm_plugin_sdk::Value;

use super::{BinaryOp, Expr, FormulaType, Function, Kind, Node};
use crate::definition::number;
use crate::time;

const MS_PER_DAY: i64 = 86_400_000;
/// Longest text a formula gives (the kernel's limit for a text field);
/// a longer result is null.
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// A value inside a formula.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Number(f64),
    Text(String),
    Bool(bool),
    /// Days since 1970-01-01.
    Date(i64),
    /// Epoch milliseconds.
    Datetime(i64),
}

impl Scalar {
    /// A stored value read as `kind`; a value of another shape is null.
    pub fn from_value(value: &Value, kind: Kind) -> Scalar {
        match (kind, value) {
            (Kind::Number, Value::Int(int)) => Scalar::Number(*int as f64),
            (Kind::Number, Value::Float(float)) => Scalar::Number(*float),
            (Kind::Text, Value::Text(text) | Value::Id(text)) => Scalar::Text(text.clone()),
            (Kind::Boolean, Value::Bool(flag)) => Scalar::Bool(*flag),
            (Kind::Date, Value::Text(text)) => match time::parse_date(text) {
                Some((year, month, day)) => Scalar::Date(time::days_from_civil(year, month, day)),
                None => Scalar::Null,
            },
            (Kind::Datetime, Value::Int(ms)) => Scalar::Datetime(*ms),
            _ => Scalar::Null,
        }
    }

    /// The value stored for a formula of type `ty`: a float, a text, a
    /// boolean or a `YYYY-MM-DD` date.
    pub fn into_value(self, ty: FormulaType) -> Value {
        match (ty, self) {
            (FormulaType::Number, Scalar::Number(number)) if number.is_finite() => Value::Float(number),
            (FormulaType::Text, Scalar::Text(text)) if text.len() <= MAX_TEXT_BYTES => Value::Text(text),
            (FormulaType::Boolean, Scalar::Bool(flag)) => Value::Bool(flag),
            (FormulaType::Date, Scalar::Date(days)) => Value::Text(time::format_date(days * MS_PER_DAY)),
            _ => Value::Null,
        }
    }

    fn as_text(&self) -> String {
        match self {
            Scalar::Null => String::new(),
            Scalar::Number(value) => number(*value),
            Scalar::Text(text) => text.clone(),
            Scalar::Bool(flag) => flag.to_string(),
            Scalar::Date(days) => time::format_date(days * MS_PER_DAY),
            Scalar::Datetime(ms) => time::format_datetime(*ms),
        }
    }

    fn truth(&self) -> Option<bool> {
        match self {
            Scalar::Bool(flag) => Some(*flag),
            _ => None,
        }
    }
}

fn number_or_null(value: f64) -> Scalar {
    if value.is_finite() { Scalar::Number(value) } else { Scalar::Null }
}

/// Evaluates `node`; `field` gives the value of a referenced field.
pub fn evaluate(node: &Node, field: &dyn Fn(&str) -> Scalar) -> Scalar {
    match &node.expr {
        Expr::Number(value) => Scalar::Number(*value),
        Expr::Text(text) => Scalar::Text(text.clone()),
        Expr::Bool(flag) => Scalar::Bool(*flag),
        Expr::Null => Scalar::Null,
        Expr::Field(name) => field(name),
        Expr::Negate(inner) => match evaluate(inner, field) {
            Scalar::Number(value) => Scalar::Number(-value),
            _ => Scalar::Null,
        },
        Expr::Not(inner) => match evaluate(inner, field) {
            Scalar::Bool(flag) => Scalar::Bool(!flag),
            _ => Scalar::Null,
        },
        Expr::Binary(BinaryOp::And, left, right) => match (evaluate(left, field).truth(), evaluate(right, field).truth()) {
            (Some(false), _) | (_, Some(false)) => Scalar::Bool(false),
            (Some(true), Some(true)) => Scalar::Bool(true),
            _ => Scalar::Null,
        },
        Expr::Binary(BinaryOp::Or, left, right) => match (evaluate(left, field).truth(), evaluate(right, field).truth()) {
            (Some(true), _) | (_, Some(true)) => Scalar::Bool(true),
            (Some(false), Some(false)) => Scalar::Bool(false),
            _ => Scalar::Null,
        },
        Expr::Binary(BinaryOp::Concat, left, right) => {
            let mut text = evaluate(left, field).as_text();
            text.push_str(&evaluate(right, field).as_text());
            Scalar::Text(text)
        }
        Expr::Binary(op, left, right) => binary(*op, evaluate(left, field), evaluate(right, field)),
        Expr::Call(function, args) => call(*function, args, field),
    }
}

fn binary(op: BinaryOp, left: Scalar, right: Scalar) -> Scalar {
    use std::cmp::Ordering;
    if left == Scalar::Null || right == Scalar::Null {
        return Scalar::Null;
    }
    if let (Scalar::Number(a), Scalar::Number(b)) = (&left, &right) {
        let (a, b) = (*a, *b);
        match op {
            BinaryOp::Add => return number_or_null(a + b),
            BinaryOp::Sub => return number_or_null(a - b),
            BinaryOp::Mul => return number_or_null(a * b),
            BinaryOp::Div if b == 0.0 => return Scalar::Null,
            BinaryOp::Div => return number_or_null(a / b),
            _ => {}
        }
    }
    let ordering = match (&left, &right) {
        (Scalar::Number(a), Scalar::Number(b)) => a.partial_cmp(b),
        (Scalar::Text(a), Scalar::Text(b)) => Some(a.cmp(b)),
        (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Scalar::Date(a), Scalar::Date(b)) | (Scalar::Datetime(a), Scalar::Datetime(b)) => Some(a.cmp(b)),
        _ => None,
    };
    let Some(ordering) = ordering else { return Scalar::Null };
    Scalar::Bool(match op {
        BinaryOp::Eq => ordering == Ordering::Equal,
        BinaryOp::Ne => ordering != Ordering::Equal,
        BinaryOp::Lt => ordering == Ordering::Less,
        BinaryOp::Le => ordering != Ordering::Greater,
        BinaryOp::Gt => ordering == Ordering::Greater,
        BinaryOp::Ge => ordering != Ordering::Less,
        _ => return Scalar::Null,
    })
}

/// The UTC day of a date or date-time.
fn day_of(value: &Scalar) -> Option<i64> {
    match value {
        Scalar::Date(days) => Some(*days),
        Scalar::Datetime(ms) => Some(ms.div_euclid(MS_PER_DAY)),
        _ => None,
    }
}

fn call(function: Function, args: &[Node], field: &dyn Fn(&str) -> Scalar) -> Scalar {
    let arg = |index: usize| evaluate(&args[index], field);
    match function {
        Function::If => match arg(0).truth() {
            Some(true) => arg(1),
            _ => arg(2),
        },
        Function::Concat => Scalar::Text(args.iter().map(|node| evaluate(node, field).as_text()).collect()),
        Function::Coalesce => {
            args.iter().map(|node| evaluate(node, field)).find(|value| *value != Scalar::Null).unwrap_or(Scalar::Null)
        }
        Function::IsNull => Scalar::Bool(arg(0) == Scalar::Null),
        Function::DaysBetween => match (day_of(&arg(0)), day_of(&arg(1))) {
            (Some(from), Some(to)) => Scalar::Number((to - from) as f64),
            _ => Scalar::Null,
        },
        Function::AddDays => match (arg(0), arg(1)) {
            (Scalar::Date(days), Scalar::Number(count)) if count.abs() < 1e7 => Scalar::Date(days + count.trunc() as i64),
            (Scalar::Datetime(ms), Scalar::Number(count)) if count.abs() < 1e7 => {
                Scalar::Datetime(ms + (count * MS_PER_DAY as f64).round() as i64)
            }
            _ => Scalar::Null,
        },
        Function::Round => {
            let digits = if args.len() == 2 {
                match arg(1) {
                    Scalar::Number(digits) if (-15.0..=15.0).contains(&digits) => digits.trunc() as i32,
                    _ => return Scalar::Null,
                }
            } else {
                0
            };
            match arg(0) {
                Scalar::Number(value) => {
                    let scale = 10f64.powi(digits);
                    number_or_null((value * scale).round() / scale)
                }
                _ => Scalar::Null,
            }
        }
        Function::Abs => match arg(0) {
            Scalar::Number(value) => Scalar::Number(value.abs()),
            _ => Scalar::Null,
        },
        Function::Len => match arg(0) {
            Scalar::Text(text) => Scalar::Number(text.chars().count() as f64),
            _ => Scalar::Null,
        },
    }
}
