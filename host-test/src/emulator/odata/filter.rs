//! `$filter` parsing: a lexer and a recursive-descent parser for the subset
//! Dataverse supports. Precedence, lowest first: `or`, `and`, `not`, then
//! comparisons and function calls; parentheses group. Errors carry the
//! character position, in the wording of the OData library Dataverse uses.

use super::ODataError;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Lower-case hyphenated.
    Guid(String),
    /// As written (`2024-01-01` or `2024-01-01T00:00:00Z`).
    DateTime(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFn {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A property, or a path through single-valued navigation properties
    /// (`primarycontactid/fullname`).
    Property(Vec<String>),
    Literal(Literal),
}

/// A named parameter of a `Microsoft.Dynamics.CRM.*` query function.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Literal(Literal),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        op: CmpOp,
        left: Operand,
        right: Operand,
    },
    StringFn {
        func: StringFn,
        property: Operand,
        value: Operand,
    },
    /// `Microsoft.Dynamics.CRM.<name>(Param=value,…)`, name without namespace.
    Query {
        name: String,
        params: Vec<(String, Param)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Lit(Literal),
    /// A double-quoted string (only inside `[...]` lists).
    DqString(String),
    Alias(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Equals,
    Slash,
}

struct Lexer<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
}

fn is_guid_at(chars: &[char], at: usize) -> bool {
    if at + 36 > chars.len() {
        return false;
    }
    let ok = chars[at..at + 36].iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == '-',
        _ => c.is_ascii_hexdigit(),
    });
    ok && chars
        .get(at + 36)
        .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != '_')
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            text,
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn syntax(&self, at: usize) -> ODataError {
        ODataError::bad_request(format!("Syntax error at position {at} in '{}'.", self.text))
    }

    fn tokens(mut self) -> Result<Vec<(usize, Tok)>, ODataError> {
        let mut out = Vec::new();
        while let Some(tok) = self.next_token()? {
            out.push(tok);
        }
        Ok(out)
    }

    fn next_token(&mut self) -> Result<Option<(usize, Tok)>, ODataError> {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&c) = self.chars.get(self.pos) else {
            return Ok(None);
        };
        let single = |t| Some((start, t));
        let tok = match c {
            '(' => single(Tok::LParen),
            ')' => single(Tok::RParen),
            '[' => single(Tok::LBracket),
            ']' => single(Tok::RBracket),
            ',' => single(Tok::Comma),
            '=' => single(Tok::Equals),
            '/' => single(Tok::Slash),
            _ => None,
        };
        if tok.is_some() {
            self.pos += 1;
            return Ok(tok);
        }
        if c == '\'' {
            return self.string(start).map(Some);
        }
        if c == '"' {
            let mut s = String::new();
            self.pos += 1;
            loop {
                match self.chars.get(self.pos) {
                    None => {
                        return Err(ODataError::bad_request(format!(
                            "There is an unterminated literal at position {} in '{}'.",
                            self.chars.len(),
                            self.text
                        )));
                    }
                    Some('\\') if self.chars.get(self.pos + 1).is_some() => {
                        s.push(self.chars[self.pos + 1]);
                        self.pos += 2;
                    }
                    Some('"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        self.pos += 1;
                    }
                }
            }
            return Ok(Some((start, Tok::DqString(s))));
        }
        if is_guid_at(&self.chars, self.pos) {
            let g: String = self.chars[self.pos..self.pos + 36].iter().collect();
            self.pos += 36;
            return Ok(Some((
                start,
                Tok::Lit(Literal::Guid(g.to_ascii_lowercase())),
            )));
        }
        if c == '@' {
            self.pos += 1;
            let name = self.word();
            if name.is_empty() {
                return Err(self.syntax(start));
            }
            return Ok(Some((start, Tok::Alias(name))));
        }
        if c.is_ascii_digit()
            || (c == '-'
                && self
                    .chars
                    .get(self.pos + 1)
                    .is_some_and(|d| d.is_ascii_digit()))
        {
            return self.number_or_date(start).map(Some);
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let w = self.word();
            return Ok(Some((start, Tok::Ident(w))));
        }
        Err(ODataError::bad_request(format!(
            "Syntax error: character '{c}' is not valid at position {start} in '{}'.",
            self.text
        )))
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(&ch) = self.chars.get(self.pos) {
            if ch.is_alphanumeric() || ch == '_' || ch == '.' || ch == '$' {
                w.push(ch);
                self.pos += 1;
            } else {
                break;
            }
        }
        w
    }

    fn string(&mut self, start: usize) -> Result<(usize, Tok), ODataError> {
        let mut s = String::new();
        self.pos += 1;
        loop {
            match self.chars.get(self.pos) {
                None => {
                    return Err(ODataError::bad_request(format!(
                        "There is an unterminated literal at position {} in '{}'.",
                        self.chars.len(),
                        self.text
                    )));
                }
                Some('\'') if self.chars.get(self.pos + 1) == Some(&'\'') => {
                    s.push('\'');
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok((start, Tok::Lit(Literal::String(s))));
                }
                Some(&ch) => {
                    s.push(ch);
                    self.pos += 1;
                }
            }
        }
    }

    fn number_or_date(&mut self, start: usize) -> Result<(usize, Tok), ODataError> {
        let mut w = String::new();
        while let Some(&ch) = self.chars.get(self.pos) {
            let date_char = matches!(ch, ':' | 'T' | 'Z' | '+') && w.len() >= 10;
            if ch.is_ascii_digit() || matches!(ch, '.' | '-' | 'e' | 'E') || date_char {
                w.push(ch);
                self.pos += 1;
            } else {
                break;
            }
        }
        let b = w.as_bytes();
        if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
            if crate::emulator::dates::parse_datetime(&w).is_none() {
                return Err(self.syntax(start));
            }
            return Ok((start, Tok::Lit(Literal::DateTime(w))));
        }
        if let Ok(i) = w.parse::<i64>() {
            return Ok((start, Tok::Lit(Literal::Int(i))));
        }
        match w.parse::<f64>() {
            Ok(f) => Ok((start, Tok::Lit(Literal::Float(f)))),
            Err(_) => Err(self.syntax(start)),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<(usize, Tok)>,
    i: usize,
    aliases: &'a HashMap<String, String>,
}

/// Parses a `$filter` value. `aliases` holds `@p1=…` parameter values from
/// the query string.
pub fn parse_filter(text: &str, aliases: &HashMap<String, String>) -> Result<Expr, ODataError> {
    let toks = Lexer::new(text).tokens()?;
    let mut p = Parser {
        text,
        toks,
        i: 0,
        aliases,
    };
    if p.toks.is_empty() {
        return Err(ODataError::bad_request(
            "The $filter expression is empty.".to_string(),
        ));
    }
    let e = p.or()?;
    if p.i < p.toks.len() {
        return Err(p.error_here());
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks
            .get(self.i)
            .map(|(p, _)| *p)
            .unwrap_or(self.text.chars().count())
    }

    fn error_here(&self) -> ODataError {
        ODataError::bad_request(format!(
            "Syntax error at position {} in '{}'.",
            self.pos(),
            self.text
        ))
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == kw)
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ODataError> {
        if self.peek() == Some(&tok) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error_here())
        }
    }

    fn or(&mut self) -> Result<Expr, ODataError> {
        self.chain("or", Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<Expr, ODataError> {
        self.chain("and", Self::unary, Expr::And)
    }

    /// `next (keyword next)*`, joined from the left: `and` binds tighter
    /// than `or` because `or` chains `and`s.
    fn chain(
        &mut self,
        keyword: &str,
        next: fn(&mut Self) -> Result<Expr, ODataError>,
        join: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<Expr, ODataError> {
        let mut left = next(self)?;
        while self.keyword(keyword) {
            self.i += 1;
            let right = next(self)?;
            left = join(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ODataError> {
        if self.keyword("not") {
            self.i += 1;
            let inner = self.unary()?;
            if matches!(inner, Expr::Query { .. }) {
                return Err(ODataError::bad_request(
                    "Not operator along with the Custom Named Condition operators is not allowed"
                        .to_string(),
                ));
            }
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ODataError> {
        if self.peek() == Some(&Tok::LParen) {
            self.i += 1;
            let e = self.or()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        if let Some(Tok::Ident(name)) = self.peek().cloned()
            && self.toks.get(self.i + 1).map(|(_, t)| t) == Some(&Tok::LParen)
        {
            let at = self.pos();
            self.i += 2;
            let func = match name.as_str() {
                "contains" => Some(StringFn::Contains),
                "startswith" => Some(StringFn::StartsWith),
                "endswith" => Some(StringFn::EndsWith),
                _ => None,
            };
            if let Some(func) = func {
                let property = self.operand()?;
                self.expect(Tok::Comma)?;
                let value = self.operand()?;
                self.expect(Tok::RParen)?;
                let e = Expr::StringFn {
                    func,
                    property,
                    value,
                };
                // `contains(name,'x') eq true` is the long form.
                if let Some(Tok::Ident(op)) = self.peek()
                    && (op == "eq" || op == "ne")
                {
                    let negate = op == "ne";
                    self.i += 1;
                    let b = match self.operand()? {
                        Operand::Literal(Literal::Bool(b)) => b,
                        _ => return Err(self.error_here()),
                    };
                    return Ok(if b != negate {
                        e
                    } else {
                        Expr::Not(Box::new(e))
                    });
                }
                return Ok(e);
            }
            if let Some(short) = name.strip_prefix("Microsoft.Dynamics.CRM.") {
                let params = self.named_params()?;
                return Ok(Expr::Query {
                    name: short.to_string(),
                    params,
                });
            }
            return Err(ODataError::bad_request(format!(
                "An unknown function with name '{name}' was found at position {at} in '{}'.",
                self.text
            )));
        }
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Tok::Ident(w)) => match w.as_str() {
                "eq" => CmpOp::Eq,
                "ne" => CmpOp::Ne,
                "gt" => CmpOp::Gt,
                "ge" => CmpOp::Ge,
                "lt" => CmpOp::Lt,
                "le" => CmpOp::Le,
                _ => return Err(self.error_here()),
            },
            _ => return Err(self.error_here()),
        };
        self.i += 1;
        let right = self.operand()?;
        Ok(Expr::Compare { op, left, right })
    }

    fn named_params(&mut self) -> Result<Vec<(String, Param)>, ODataError> {
        let mut params = Vec::new();
        if self.peek() == Some(&Tok::RParen) {
            self.i += 1;
            return Ok(params);
        }
        loop {
            let name = match self.peek() {
                Some(Tok::Ident(n)) => n.clone(),
                _ => return Err(self.error_here()),
            };
            self.i += 1;
            self.expect(Tok::Equals)?;
            let value = if self.peek() == Some(&Tok::LBracket) {
                self.i += 1;
                let mut items = Vec::new();
                while self.peek() != Some(&Tok::RBracket) {
                    match self.peek().cloned() {
                        Some(Tok::DqString(s)) | Some(Tok::Lit(Literal::String(s))) => {
                            items.push(s)
                        }
                        Some(Tok::Lit(Literal::Int(n))) => items.push(n.to_string()),
                        Some(Tok::Lit(Literal::Guid(g))) => items.push(g),
                        _ => return Err(self.error_here()),
                    }
                    self.i += 1;
                    if self.peek() == Some(&Tok::Comma) {
                        self.i += 1;
                    }
                }
                self.i += 1;
                Param::List(items)
            } else {
                match self.operand()? {
                    Operand::Literal(l) => Param::Literal(l),
                    Operand::Property(_) => return Err(self.error_here()),
                }
            };
            params.push((name, value));
            match self.peek() {
                Some(Tok::Comma) => self.i += 1,
                Some(Tok::RParen) => {
                    self.i += 1;
                    return Ok(params);
                }
                _ => return Err(self.error_here()),
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, ODataError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_here());
        };
        self.i += 1;
        Ok(match tok {
            Tok::Lit(l) => Operand::Literal(l),
            Tok::Alias(name) => {
                let raw = self.aliases.get(&name).ok_or_else(|| {
                    ODataError::bad_request(format!(
                        "The parameter alias '@{name}' is not defined in the query."
                    ))
                })?;
                // An alias value is one literal (or a list, for query
                // functions); a property name in an alias is a string.
                let toks = Lexer::new(raw).tokens()?;
                match toks.as_slice() {
                    [(_, Tok::Lit(l))] => Operand::Literal(l.clone()),
                    [(_, Tok::Ident(w))] => {
                        Operand::Literal(keyword_literal(w).unwrap_or(Literal::String(w.clone())))
                    }
                    _ => {
                        return Err(ODataError::bad_request(format!(
                            "The value of parameter alias '@{name}' is not a literal."
                        )));
                    }
                }
            }
            Tok::Ident(w) => {
                if let Some(l) = keyword_literal(&w) {
                    return Ok(Operand::Literal(l));
                }
                // An enum literal, `Microsoft.Dynamics.CRM.OwnershipTypes'UserOwned'`
                // (metadata filters): compared as its member name.
                if w.starts_with("Microsoft.Dynamics.CRM.")
                    && let Some(Tok::Lit(Literal::String(member))) = self.peek().cloned()
                {
                    self.i += 1;
                    return Ok(Operand::Literal(Literal::String(member)));
                }
                let mut path = vec![w];
                while self.peek() == Some(&Tok::Slash) {
                    self.i += 1;
                    match self.peek().cloned() {
                        Some(Tok::Ident(next)) => {
                            self.i += 1;
                            path.push(next);
                        }
                        _ => return Err(self.error_here()),
                    }
                }
                Operand::Property(path)
            }
            _ => {
                self.i -= 1;
                return Err(self.error_here());
            }
        })
    }
}

fn keyword_literal(w: &str) -> Option<Literal> {
    match w {
        "null" => Some(Literal::Null),
        "true" => Some(Literal::Bool(true)),
        "false" => Some(Literal::Bool(false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Expr {
        parse_filter(s, &HashMap::new()).unwrap_or_else(|e| panic!("{s}: {}", e.message))
    }

    fn prop(p: &str) -> Operand {
        Operand::Property(p.split('/').map(str::to_string).collect())
    }

    fn cmp(p: &str, op: CmpOp, l: Literal) -> Expr {
        Expr::Compare {
            op,
            left: prop(p),
            right: Operand::Literal(l),
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let e = parse("a eq 1 or b eq 2 and c eq 3");
        assert_eq!(
            e,
            Expr::Or(
                Box::new(cmp("a", CmpOp::Eq, Literal::Int(1))),
                Box::new(Expr::And(
                    Box::new(cmp("b", CmpOp::Eq, Literal::Int(2))),
                    Box::new(cmp("c", CmpOp::Eq, Literal::Int(3)))
                ))
            )
        );
    }

    #[test]
    fn parentheses_and_not_override_precedence() {
        let e = parse("(a eq 1 or b eq 2) and not c eq 3");
        assert_eq!(
            e,
            Expr::And(
                Box::new(Expr::Or(
                    Box::new(cmp("a", CmpOp::Eq, Literal::Int(1))),
                    Box::new(cmp("b", CmpOp::Eq, Literal::Int(2)))
                )),
                Box::new(Expr::Not(Box::new(cmp("c", CmpOp::Eq, Literal::Int(3)))))
            )
        );
        // `not` binds tighter than `and`
        let e = parse("not a eq 1 and b eq 2");
        assert!(matches!(e, Expr::And(l, _) if matches!(*l, Expr::Not(_))));
    }

    #[test]
    fn literals_of_every_type() {
        assert_eq!(parse("x eq null"), cmp("x", CmpOp::Eq, Literal::Null));
        assert_eq!(parse("x ne true"), cmp("x", CmpOp::Ne, Literal::Bool(true)));
        assert_eq!(parse("x gt -12"), cmp("x", CmpOp::Gt, Literal::Int(-12)));
        assert_eq!(parse("x ge 1.5"), cmp("x", CmpOp::Ge, Literal::Float(1.5)));
        assert_eq!(
            parse("lastname eq 'O''Brien'"),
            cmp("lastname", CmpOp::Eq, Literal::String("O'Brien".into()))
        );
        assert_eq!(
            parse("x eq A0000000-0000-4000-8000-000000000001"),
            cmp(
                "x",
                CmpOp::Eq,
                Literal::Guid("a0000000-0000-4000-8000-000000000001".into())
            )
        );
        assert_eq!(
            parse("createdon lt 2024-01-02T03:04:05Z"),
            cmp(
                "createdon",
                CmpOp::Lt,
                Literal::DateTime("2024-01-02T03:04:05Z".into())
            )
        );
        assert_eq!(
            parse("createdon le 2024-01-02"),
            cmp(
                "createdon",
                CmpOp::Le,
                Literal::DateTime("2024-01-02".into())
            )
        );
        assert_eq!(
            parse("primarycontactid/fullname eq 'x'"),
            cmp(
                "primarycontactid/fullname",
                CmpOp::Eq,
                Literal::String("x".into())
            )
        );
    }

    #[test]
    fn functions() {
        assert_eq!(
            parse("contains(name,'sam')"),
            Expr::StringFn {
                func: StringFn::Contains,
                property: prop("name"),
                value: Operand::Literal(Literal::String("sam".into()))
            }
        );
        assert!(matches!(
            parse("startswith(name,'a') eq false"),
            Expr::Not(_)
        ));
        let e = parse(
            "Microsoft.Dynamics.CRM.In(PropertyName='lastname',PropertyValues=[\"O'Brien\",\"Ruiz\"])",
        );
        assert_eq!(
            e,
            Expr::Query {
                name: "In".into(),
                params: vec![
                    (
                        "PropertyName".into(),
                        Param::Literal(Literal::String("lastname".into()))
                    ),
                    (
                        "PropertyValues".into(),
                        Param::List(vec!["O'Brien".into(), "Ruiz".into()])
                    ),
                ]
            }
        );
        let mut aliases = HashMap::new();
        aliases.insert("p1".to_string(), "'modifiedon'".to_string());
        aliases.insert("p2".to_string(), "12".to_string());
        let e = parse_filter(
            "Microsoft.Dynamics.CRM.LastXHours(PropertyName=@p1,PropertyValue=@p2)",
            &aliases,
        )
        .unwrap();
        assert!(matches!(e, Expr::Query { ref name, .. } if name == "LastXHours"));
    }

    #[test]
    fn errors_carry_positions() {
        let e = parse_filter("lastname eq 'O'Bryan'", &HashMap::new()).unwrap_err();
        assert_eq!(
            e.message,
            "There is an unterminated literal at position 21 in 'lastname eq 'O'Bryan''."
        );
        let e = parse_filter("name eq 'a' xx", &HashMap::new()).unwrap_err();
        assert_eq!(
            e.message,
            "Syntax error at position 12 in 'name eq 'a' xx'."
        );
        let e = parse_filter("name eq", &HashMap::new()).unwrap_err();
        assert_eq!(e.message, "Syntax error at position 7 in 'name eq'.");
        let e = parse_filter("(name eq 'a'", &HashMap::new()).unwrap_err();
        assert!(e.message.contains("position 12"), "{}", e.message);
        let e = parse_filter("name # 'a'", &HashMap::new()).unwrap_err();
        assert!(
            e.message.contains("'#' is not valid at position 5"),
            "{}",
            e.message
        );
        let e = parse_filter(
            "not Microsoft.Dynamics.CRM.Today(PropertyName='createdon')",
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(e.message.starts_with("Not operator"));
        assert_eq!(e.status, 400);
        assert_eq!(e.code, "0x80060888");
    }
}
