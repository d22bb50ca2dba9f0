//! Text to syntax tree: a hand-written lexer and a precedence-climbing
//! parser. Positions are character offsets into the formula (0-based here,
//! shown 1-based in messages).

use super::{BinaryOp, Expr, FormulaError, Function, Node};

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
    Ident(String),
    Symbol(&'static str),
    End,
}

struct Lexed {
    token: Token,
    at: usize,
}

const SYMBOLS: [&str; 16] = ["<=", ">=", "!=", "<>", "==", "+", "-", "*", "/", "(", ")", ",", "=", "<", ">", "&"];

fn lex(source: &str) -> Result<Vec<Lexed>, FormulaError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if c.is_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        if c.is_ascii_digit() || (c == '.' && chars.get(at + 1).is_some_and(char::is_ascii_digit)) {
            while at < chars.len() && (chars[at].is_ascii_digit() || chars[at] == '.') {
                at += 1;
            }
            let text: String = chars[start..at].iter().collect();
            let number = text.parse::<f64>().map_err(|_| FormulaError::new(start, format!("'{text}' is not a number")))?;
            tokens.push(Lexed { token: Token::Number(number), at: start });
            continue;
        }
        if c == '"' || c == '\'' {
            at += 1;
            let mut text = String::new();
            loop {
                match chars.get(at) {
                    None => return Err(FormulaError::new(start, "text is not closed with its quote")),
                    Some('\\') => {
                        match chars.get(at + 1) {
                            Some(escaped @ ('\\' | '"' | '\'')) => text.push(*escaped),
                            Some('n') => text.push('\n'),
                            _ => return Err(FormulaError::new(at, "unknown escape; use \\\\, \\\", \\' or \\n")),
                        }
                        at += 2;
                    }
                    Some(quote) if *quote == c => {
                        at += 1;
                        break;
                    }
                    Some(other) => {
                        text.push(*other);
                        at += 1;
                    }
                }
            }
            tokens.push(Lexed { token: Token::Text(text), at: start });
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '_') {
                at += 1;
            }
            tokens.push(Lexed { token: Token::Ident(chars[start..at].iter().collect()), at: start });
            continue;
        }
        let rest: String = chars[at..chars.len().min(at + 2)].iter().collect();
        match SYMBOLS.iter().find(|symbol| rest.starts_with(**symbol)) {
            Some(symbol) => {
                tokens.push(Lexed { token: Token::Symbol(symbol), at: start });
                at += symbol.chars().count();
            }
            None => return Err(FormulaError::new(start, format!("unexpected character '{c}'"))),
        }
    }
    tokens.push(Lexed { token: Token::End, at: chars.len() });
    Ok(tokens)
}

/// Deepest nesting accepted, so that a hostile formula cannot exhaust the
/// stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<Lexed>,
    next: usize,
    depth: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Number(number) => format!("the number {number}"),
        Token::Text(_) => "a text".into(),
        Token::Ident(name) => format!("'{name}'"),
        Token::Symbol(symbol) => format!("'{symbol}'"),
        Token::End => "the end of the formula".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.next].token
    }

    fn at(&self) -> usize {
        self.tokens[self.next].at
    }

    fn bump(&mut self) -> Lexed {
        let lexed = Lexed { token: self.tokens[self.next].token.clone(), at: self.tokens[self.next].at };
        if self.next + 1 < self.tokens.len() {
            self.next += 1;
        }
        lexed
    }

    fn is_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek(), Token::Symbol(found) if *found == symbol)
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Token::Ident(name) if name.eq_ignore_ascii_case(keyword))
    }

    fn expect(&mut self, symbol: &str) -> Result<(), FormulaError> {
        if self.is_symbol(symbol) {
            self.bump();
            Ok(())
        } else {
            Err(FormulaError::new(self.at(), format!("expected '{symbol}', found {}", describe(self.peek()))))
        }
    }

    fn nested<T>(&mut self, parse: impl FnOnce(&mut Parser) -> Result<T, FormulaError>) -> Result<T, FormulaError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FormulaError::new(self.at(), format!("nested more than {MAX_DEPTH} levels deep")));
        }
        let result = parse(self);
        self.depth -= 1;
        result
    }

    fn expression(&mut self) -> Result<Node, FormulaError> {
        self.nested(Parser::or)
    }

    fn or(&mut self) -> Result<Node, FormulaError> {
        let mut left = self.and()?;
        while self.is_keyword("or") {
            let at = self.bump().at;
            let right = self.and()?;
            left = Node::binary(at, BinaryOp::Or, left, right);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, FormulaError> {
        let mut left = self.not()?;
        while self.is_keyword("and") {
            let at = self.bump().at;
            let right = self.not()?;
            left = Node::binary(at, BinaryOp::And, left, right);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Node, FormulaError> {
        if self.is_keyword("not") {
            let at = self.bump().at;
            let operand = self.nested(Parser::not)?;
            return Ok(Node { at, expr: Expr::Not(Box::new(operand)) });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, FormulaError> {
        let left = self.concat()?;
        let op = match self.peek() {
            Token::Symbol("=" | "==") => BinaryOp::Eq,
            Token::Symbol("!=" | "<>") => BinaryOp::Ne,
            Token::Symbol("<") => BinaryOp::Lt,
            Token::Symbol("<=") => BinaryOp::Le,
            Token::Symbol(">") => BinaryOp::Gt,
            Token::Symbol(">=") => BinaryOp::Ge,
            _ => return Ok(left),
        };
        let at = self.bump().at;
        let right = self.concat()?;
        if matches!(self.peek(), Token::Symbol("=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=")) {
            return Err(FormulaError::new(self.at(), "comparisons do not chain; combine them with 'and'"));
        }
        Ok(Node::binary(at, op, left, right))
    }

    fn concat(&mut self) -> Result<Node, FormulaError> {
        let mut left = self.sum()?;
        while self.is_symbol("&") {
            let at = self.bump().at;
            let right = self.sum()?;
            left = Node::binary(at, BinaryOp::Concat, left, right);
        }
        Ok(left)
    }

    fn sum(&mut self) -> Result<Node, FormulaError> {
        let mut left = self.product()?;
        loop {
            let op = match self.peek() {
                Token::Symbol("+") => BinaryOp::Add,
                Token::Symbol("-") => BinaryOp::Sub,
                _ => return Ok(left),
            };
            let at = self.bump().at;
            let right = self.product()?;
            left = Node::binary(at, op, left, right);
        }
    }

    fn product(&mut self) -> Result<Node, FormulaError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Token::Symbol("*") => BinaryOp::Mul,
                Token::Symbol("/") => BinaryOp::Div,
                _ => return Ok(left),
            };
            let at = self.bump().at;
            let right = self.unary()?;
            left = Node::binary(at, op, left, right);
        }
    }

    fn unary(&mut self) -> Result<Node, FormulaError> {
        if self.is_symbol("-") {
            let at = self.bump().at;
            let operand = self.nested(Parser::unary)?;
            return Ok(Node { at, expr: Expr::Negate(Box::new(operand)) });
        }
        if self.is_symbol("+") {
            self.bump();
            return self.nested(Parser::unary);
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, FormulaError> {
        let Lexed { token, at } = self.bump();
        let expr = match token {
            Token::Number(number) => Expr::Number(number),
            Token::Text(text) => Expr::Text(text),
            Token::Symbol("(") => {
                let inner = self.expression()?;
                self.expect(")")?;
                return Ok(inner);
            }
            Token::Ident(name) if self.is_symbol("(") => {
                let function = Function::parse(&name).ok_or_else(|| {
                    FormulaError::new(at, format!("unknown function '{name}'; known: {}", Function::NAMES.join(", ")))
                })?;
                self.bump();
                let mut args = Vec::new();
                if !self.is_symbol(")") {
                    loop {
                        args.push(self.expression()?);
                        if self.is_symbol(",") {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                }
                self.expect(")")?;
                Expr::Call(function, args)
            }
            Token::Ident(name) => match name.to_ascii_lowercase().as_str() {
                "true" => Expr::Bool(true),
                "false" => Expr::Bool(false),
                "null" => Expr::Null,
                "and" | "or" | "not" => {
                    return Err(FormulaError::new(at, format!("expected a value, found '{name}'")));
                }
                _ => Expr::Field(name),
            },
            other => return Err(FormulaError::new(at, format!("expected a value, found {}", describe(&other)))),
        };
        Ok(Node { at, expr })
    }
}

/// Parses a whole formula.
pub fn parse(source: &str) -> Result<Node, FormulaError> {
    let tokens = lex(source)?;
    let mut parser = Parser { tokens, next: 0, depth: 0 };
    if matches!(parser.peek(), Token::End) {
        return Err(FormulaError::new(0, "the formula is empty"));
    }
    let node = parser.expression()?;
    if !matches!(parser.peek(), Token::End) {
        return Err(FormulaError::new(
            parser.at(),
            format!("expected an operator or the end of the formula, found {}", describe(parser.peek())),
        ));
    }
    Ok(node)
}
