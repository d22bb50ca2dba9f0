//! The type checker: every operator and function gets operands of the
//! kinds it takes, every field reference names a field `kind_of` knows.
//! A formula that passes cannot fail when evaluated; at worst it gives null.

use super::{BinaryOp, Expr, FormulaError, Function, Kind, Node};

/// The kind of `node`'s value, or the first error found.
pub fn check(node: &Node, kind_of: &dyn Fn(&str) -> Result<Kind, String>) -> Result<Kind, FormulaError> {
    let err = |message: String| FormulaError::new(node.at, message);
    match &node.expr {
        Expr::Number(_) => Ok(Kind::Number),
        Expr::Text(_) => Ok(Kind::Text),
        Expr::Bool(_) => Ok(Kind::Boolean),
        Expr::Null => Ok(Kind::Null),
        Expr::Field(name) => kind_of(name).map_err(err),
        Expr::Negate(inner) => {
            expect(inner, check(inner, kind_of)?, &[Kind::Number], "'-'")?;
            Ok(Kind::Number)
        }
        Expr::Not(inner) => {
            expect(inner, check(inner, kind_of)?, &[Kind::Boolean], "'not'")?;
            Ok(Kind::Boolean)
        }
        Expr::Binary(op, left, right) => {
            let (left_kind, right_kind) = (check(left, kind_of)?, check(right, kind_of)?);
            let what = format!("'{}'", op.symbol());
            match op {
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                    expect(left, left_kind, &[Kind::Number], &what)?;
                    expect(right, right_kind, &[Kind::Number], &what)?;
                    Ok(Kind::Number)
                }
                BinaryOp::And | BinaryOp::Or => {
                    expect(left, left_kind, &[Kind::Boolean], &what)?;
                    expect(right, right_kind, &[Kind::Boolean], &what)?;
                    Ok(Kind::Boolean)
                }
                BinaryOp::Concat => Ok(Kind::Text),
                BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                    let ordered = !matches!(op, BinaryOp::Eq | BinaryOp::Ne);
                    if ordered {
                        let orderable = [Kind::Number, Kind::Text, Kind::Date, Kind::Datetime];
                        expect(left, left_kind, &orderable, &what)?;
                        expect(right, right_kind, &orderable, &what)?;
                    }
                    if left_kind != right_kind && left_kind != Kind::Null && right_kind != Kind::Null {
                        return Err(err(format!("cannot compare a {left_kind} with a {right_kind}")));
                    }
                    Ok(Kind::Boolean)
                }
            }
        }
        Expr::Call(function, args) => call(node, *function, args, kind_of),
    }
}

/// `kind` must be one of `allowed` (or null).
fn expect(node: &Node, kind: Kind, allowed: &[Kind], what: &str) -> Result<(), FormulaError> {
    if kind == Kind::Null || allowed.contains(&kind) {
        return Ok(());
    }
    let names: Vec<&str> = allowed.iter().map(|kind| kind.as_str()).collect();
    Err(FormulaError::new(node.at, format!("{what} needs a {}, not a {kind}", names.join(" or a "))))
}

/// One kind for several values (branches of `if`, arguments of
/// `coalesce`); null fits any.
fn unify(nodes: &[&Node], kinds: &[Kind], what: &str) -> Result<Kind, FormulaError> {
    let mut found = Kind::Null;
    for (node, kind) in nodes.iter().zip(kinds) {
        if *kind == Kind::Null {
            continue;
        }
        if found == Kind::Null {
            found = *kind;
        } else if found != *kind {
            return Err(FormulaError::new(node.at, format!("{what} gives a {found} here and a {kind} there")));
        }
    }
    Ok(found)
}

fn call(
    node: &Node,
    function: Function,
    args: &[Node],
    kind_of: &dyn Fn(&str) -> Result<Kind, String>,
) -> Result<Kind, FormulaError> {
    let name = function.name();
    let arity = |min: usize, max: usize| -> Result<(), FormulaError> {
        if (min..=max).contains(&args.len()) {
            return Ok(());
        }
        let wanted = match (min, max) {
            (min, max) if min == max => format!("{min}"),
            (min, usize::MAX) => format!("at least {min}"),
            (min, max) => format!("{min} or {max}"),
        };
        Err(FormulaError::new(node.at, format!("{name}() takes {wanted} arguments, got {}", args.len())))
    };
    let what = format!("{name}()");
    match function {
        Function::If => arity(3, 3)?,
        Function::Concat | Function::Coalesce => arity(1, usize::MAX)?,
        Function::DaysBetween | Function::AddDays => arity(2, 2)?,
        Function::Round => arity(1, 2)?,
        Function::IsNull | Function::Abs | Function::Len => arity(1, 1)?,
    }
    let kinds = args.iter().map(|arg| check(arg, kind_of)).collect::<Result<Vec<_>, _>>()?;
    match function {
        Function::If => {
            expect(&args[0], kinds[0], &[Kind::Boolean], "the condition of if()")?;
            unify(&[&args[1], &args[2]], &kinds[1..], &what)
        }
        Function::Concat => Ok(Kind::Text),
        Function::Coalesce => unify(&args.iter().collect::<Vec<_>>(), &kinds, &what),
        Function::IsNull => Ok(Kind::Boolean),
        Function::DaysBetween => {
            for (arg, kind) in args.iter().zip(&kinds) {
                expect(arg, *kind, &[Kind::Date, Kind::Datetime], &what)?;
            }
            Ok(Kind::Number)
        }
        Function::AddDays => {
            expect(&args[0], kinds[0], &[Kind::Date, Kind::Datetime], &what)?;
            expect(&args[1], kinds[1], &[Kind::Number], &what)?;
            Ok(if kinds[0] == Kind::Null { Kind::Date } else { kinds[0] })
        }
        Function::Round | Function::Abs => {
            for (arg, kind) in args.iter().zip(&kinds) {
                expect(arg, *kind, &[Kind::Number], &what)?;
            }
            Ok(Kind::Number)
        }
        Function::Len => {
            expect(&args[0], kinds[0], &[Kind::Text], &what)?;
            Ok(Kind::Number)
        }
    }
}
