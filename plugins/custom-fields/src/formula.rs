//! Formula fields: an expression over a record's fields, computed on every
//! create and update.
//!
//! The language:
//!
//! - literals: numbers (`3`, `2.5`), text in single or double quotes
//!   (`"VIP"`, with `\"`, `\'`, `\\` and `\n` escapes), `true`, `false`,
//!   `null`;
//! - field references by stored name (`shoe_size`, `annual_revenue`);
//! - arithmetic `+ - * /` over numbers, with the usual precedence and
//!   parentheses; comparisons `= != < <= > >=` (also `==` and `<>`) between
//!   two values of one type; `and`, `or`, `not` over booleans; `&` joins
//!   any values as text;
//! - functions: `if(cond, then, else)`, `concat(a, …)`,
//!   `days_between(from, to)`, `add_days(date, n)`, `coalesce(a, …)`,
//!   `is_null(x)`, `round(x)`, `round(x, digits)`, `abs(x)`, `len(text)`.
//!
//! Null: arithmetic, comparisons, `days_between`, `add_days`, `round`,
//! `abs` and `len` with a null operand give null; division by zero gives
//! null; `not null` is null; `and`/`or` follow three-valued logic (`false
//! and null` is false, `true or null` is true, otherwise null); `if` takes
//! the else branch when its condition is null; `&` and `concat` read null as
//! empty text. `coalesce` gives its first non-null argument.
//!
//! Precedence, loosest first: `or`, `and`, `not`, comparisons, `&`,
//! `+ -`, `* /`, unary `-`.

mod check;
mod eval;
mod parse;

use std::fmt;

use crm_plugin_sdk::serde::{Deserialize, Serialize};

pub use check::check;
pub use eval::{Scalar, evaluate};
pub use parse::parse;

/// The type of a formula's value, as the admin declares it
/// (`formula_type`) and as the kernel stores it: a float, a text, a
/// boolean or a `YYYY-MM-DD` date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(crate = "crm_plugin_sdk::serde", rename_all = "snake_case")]
pub enum FormulaType {
    Number,
    Text,
    Boolean,
    Date,
}

impl FormulaType {
    pub const ALL: [FormulaType; 4] = [FormulaType::Number, FormulaType::Text, FormulaType::Boolean, FormulaType::Date];

    pub fn as_str(self) -> &'static str {
        match self {
            FormulaType::Number => "number",
            FormulaType::Text => "text",
            FormulaType::Boolean => "boolean",
            FormulaType::Date => "date",
        }
    }

    pub fn parse(text: &str) -> Option<FormulaType> {
        let text = text.trim().to_ascii_lowercase();
        FormulaType::ALL.into_iter().find(|ty| ty.as_str() == text)
    }

    /// The kind of value an expression must have to be stored as this type.
    pub fn kind(self) -> Kind {
        match self {
            FormulaType::Number => Kind::Number,
            FormulaType::Text => Kind::Text,
            FormulaType::Boolean => Kind::Boolean,
            FormulaType::Date => Kind::Date,
        }
    }
}

/// The type of a value inside a formula. `Null` is the type of the literal
/// `null`, which fits anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Text,
    Boolean,
    Date,
    Datetime,
    Null,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Text => "text",
            Kind::Boolean => "boolean",
            Kind::Date => "date",
            Kind::Datetime => "datetime",
            Kind::Null => "null",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syntax or type error at a character position of the formula.
#[derive(Debug, Clone, PartialEq)]
pub struct FormulaError {
    /// 0-based character offset.
    pub at: usize,
    pub message: String,
}

impl FormulaError {
    pub fn new(at: usize, message: impl Into<String>) -> FormulaError {
        FormulaError { at, message: message.into() }
    }
}

impl fmt::Display for FormulaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.at + 1, self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Concat,
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
            BinaryOp::Concat => "&",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    If,
    Concat,
    DaysBetween,
    AddDays,
    Coalesce,
    IsNull,
    Round,
    Abs,
    Len,
}

impl Function {
    pub const NAMES: [&'static str; 9] =
        ["if", "concat", "days_between", "add_days", "coalesce", "is_null", "round", "abs", "len"];

    fn parse(name: &str) -> Option<Function> {
        Some(match name.to_ascii_lowercase().as_str() {
            "if" => Function::If,
            "concat" => Function::Concat,
            "days_between" => Function::DaysBetween,
            "add_days" => Function::AddDays,
            "coalesce" => Function::Coalesce,
            "is_null" => Function::IsNull,
            "round" => Function::Round,
            "abs" => Function::Abs,
            "len" => Function::Len,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Function::If => "if",
            Function::Concat => "concat",
            Function::DaysBetween => "days_between",
            Function::AddDays => "add_days",
            Function::Coalesce => "coalesce",
            Function::IsNull => "is_null",
            Function::Round => "round",
            Function::Abs => "abs",
            Function::Len => "len",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Text(String),
    Bool(bool),
    Null,
    Field(String),
    Negate(Box<Node>),
    Not(Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    Call(Function, Vec<Node>),
}

/// An expression and where it starts in the formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: usize,
    pub expr: Expr,
}

impl Node {
    fn binary(at: usize, op: BinaryOp, left: Node, right: Node) -> Node {
        Node { at, expr: Expr::Binary(op, Box::new(left), Box::new(right)) }
    }

    /// The fields the expression reads, each once, in order of appearance.
    pub fn fields(&self) -> Vec<String> {
        fn walk(node: &Node, out: &mut Vec<String>) {
            match &node.expr {
                Expr::Field(name) => {
                    if !out.contains(name) {
                        out.push(name.clone());
                    }
                }
                Expr::Negate(inner) | Expr::Not(inner) => walk(inner, out),
                Expr::Binary(_, left, right) => {
                    walk(left, out);
                    walk(right, out);
                }
                Expr::Call(_, args) => args.iter().for_each(|arg| walk(arg, out)),
                Expr::Number(_) | Expr::Text(_) | Expr::Bool(_) | Expr::Null => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

/// Parses `source` and checks it against the fields `kind_of` knows:
/// the syntax tree, ready to evaluate, or the first error.
pub fn compile(
    source: &str,
    declared: FormulaType,
    kind_of: impl Fn(&str) -> Result<Kind, String>,
) -> Result<Node, FormulaError> {
    let tree = parse(source)?;
    let kind = check(&tree, &kind_of)?;
    if kind != declared.kind() && kind != Kind::Null {
        return Err(FormulaError::new(0, format!("the formula gives a {kind}, but formula_type is {}", declared.as_str())));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests;
