//! Template text → tree: actions between `{{` and `}}`, their tokens, and the control
//! structures they form.

use super::value::Data;
use super::TemplateError;

/// A piece of a template.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    /// `{{pipeline}}`: printed unless it declares variables.
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

/// `$a, $b := cmd | cmd`.
#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    pub decl: Vec<String>,
    pub cmds: Vec<Vec<Operand>>,
}

/// A field chain step: its name and where its `.` is in the template text.
pub(super) type Step = (String, usize);

#[derive(Debug, Clone)]
pub(super) enum Operand {
    /// `.A.B` (on dot); an empty path is `.` itself.
    Field(Vec<Step>),
    /// `$x.A.B`.
    Var(String, Vec<Step>),
    /// `(pipeline).A`.
    Sub(Box<Pipeline>, Vec<Step>),
    Literal(Data),
    /// A function name.
    Ident(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Field(Vec<Step>),
    Var(String, Vec<Step>),
    Str(String),
    Int(i64),
    Float(f64),
    Ident(String),
    LParen,
    /// `)` followed by field steps.
    RParen(Vec<Step>),
    Pipe,
    Comma,
    Declare,
}

pub(super) struct Parser<'a> {
    src: &'a str,
    name: &'a str,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str, name: &'a str) -> Self {
        Parser { src, name }
    }

    fn err(&self, at: usize, msg: impl std::fmt::Display) -> TemplateError {
        let line = 1 + self.src[..at.min(self.src.len())].matches('\n').count();
        TemplateError(format!("template: {}:{line}: {msg}", self.name))
    }

    /// The whole template.
    pub fn parse(&self) -> Result<Vec<Node>, TemplateError> {
        let actions = self.split()?;
        let mut pos = 0;
        let (nodes, end) = self.nodes(&actions, &mut pos)?;
        if let Some((kw, at)) = end {
            return Err(self.err(at, format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(nodes)
    }

    /// Text and action pieces, trimming applied: `(is_action, text, offset of the text)`.
    fn split(&self) -> Result<Vec<(bool, String, usize)>, TemplateError> {
        let s = self.src;
        let mut out: Vec<(bool, String, usize)> = Vec::new();
        let mut i = 0;
        let mut trim_next = false;
        while i < s.len() {
            let Some(open) = s[i..].find("{{").map(|o| o + i) else {
                let mut t = &s[i..];
                if trim_next {
                    t = t.trim_start();
                }
                out.push((false, t.to_string(), i));
                break;
            };
            let mut text = &s[i..open];
            if trim_next {
                text = text.trim_start();
            }
            let mut inner_start = open + 2;
            let trim_left = s[inner_start..].starts_with("- ")
                || s[inner_start..].starts_with("-\t")
                || s[inner_start..].starts_with("-\n");
            if trim_left {
                text = text.trim_end();
                inner_start += 2;
            }
            if !text.is_empty() {
                out.push((false, text.to_string(), i));
            }
            // Find the closing `}}` outside string literals.
            let mut j = inner_start;
            let bytes = s.as_bytes();
            let close = loop {
                if j >= s.len() {
                    return Err(self.err(open, "unclosed action"));
                }
                match bytes[j] {
                    b'"' => {
                        j += 1;
                        while j < s.len() && bytes[j] != b'"' {
                            if bytes[j] == b'\\' {
                                j += 1;
                            }
                            j += 1;
                        }
                        j += 1;
                    }
                    b'`' => {
                        j += 1;
                        while j < s.len() && bytes[j] != b'`' {
                            j += 1;
                        }
                        j += 1;
                    }
                    b'}' if s[j..].starts_with("}}") => break j,
                    _ => j += 1,
                }
            };
            let mut inner_end = close;
            trim_next = false;
            if inner_end >= inner_start + 2
                && s[..inner_end].ends_with('-')
                && s[..inner_end - 1].ends_with(|c: char| c.is_whitespace())
            {
                inner_end -= 2;
                trim_next = true;
            }
            let inner = &s[inner_start..inner_end.max(inner_start)];
            let trimmed = inner.trim();
            if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
                out.push((true, inner.to_string(), inner_start));
            }
            i = close + 2;
        }
        Ok(out)
    }

    /// Nodes up to an `end`/`else` (returned with its offset) or the end of input.
    #[allow(clippy::type_complexity)]
    fn nodes(
        &self,
        pieces: &[(bool, String, usize)],
        pos: &mut usize,
    ) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
        let mut nodes = Vec::new();
        while *pos < pieces.len() {
            let (is_action, text, at) = &pieces[*pos];
            *pos += 1;
            if !is_action {
                nodes.push(Node::Text(text.clone()));
                continue;
            }
            let t = text.trim();
            let (kw, rest) = match t.find(|c: char| c.is_whitespace()) {
                Some(n) => (&t[..n], &t[n..]),
                None => (t, ""),
            };
            let rest_at = at + text.find(kw).unwrap_or(0) + kw.len();
            match kw {
                "end" => return Ok((nodes, Some(("end".into(), *at)))),
                "else" => return Ok((nodes, Some((format!("else{rest}"), rest_at)))),
                "if" | "with" | "range" => {
                    let node = self.control(kw, rest, rest_at, pieces, pos)?;
                    nodes.push(node);
                }
                _ => nodes.push(Node::Action(self.pipeline_text(text, *at)?)),
            }
        }
        Ok((nodes, None))
    }

    fn control(
        &self,
        kw: &str,
        rest: &str,
        rest_at: usize,
        pieces: &[(bool, String, usize)],
        pos: &mut usize,
    ) -> Result<Node, TemplateError> {
        let pipe = self.pipeline_text(rest, rest_at)?;
        let (body, end) = self.nodes(pieces, pos)?;
        let mut other = Vec::new();
        match end {
            None => return Err(self.err(self.src.len(), format!("unexpected EOF in {kw}"))),
            Some((e, _)) if e == "end" => {}
            Some((e, at)) => {
                let after = e.trim_start_matches("else").trim();
                if kw == "if"
                    && after.starts_with("if")
                    && after[2..].starts_with(char::is_whitespace)
                {
                    // `else if …` chains: the rest of the chain shares this `end`.
                    other.push(self.control("if", &after[2..], at + 2, pieces, pos)?);
                } else if !after.is_empty() {
                    return Err(self.err(at, format!("unexpected {after:?} after else")));
                } else {
                    let (b, end2) = self.nodes(pieces, pos)?;
                    other = b;
                    match end2 {
                        Some((e, _)) if e == "end" => {}
                        Some((_, at)) => return Err(self.err(at, "expected end; found else")),
                        None => {
                            return Err(self.err(self.src.len(), format!("unexpected EOF in {kw}")))
                        }
                    }
                }
            }
        }
        Ok(match kw {
            "if" => Node::If(pipe, body, other),
            "with" => Node::With(pipe, body, other),
            _ => Node::Range(pipe, body, other),
        })
    }

    fn pipeline_text(&self, text: &str, at: usize) -> Result<Pipeline, TemplateError> {
        let toks = self.lex(text, at)?;
        let mut i = 0;
        let p = self.pipeline(&toks, &mut i, at)?;
        if i < toks.len() {
            return Err(self.err(at, format!("unexpected {:?} in command", toks[i].1)));
        }
        if p.cmds.is_empty() {
            return Err(self.err(at, "missing value for command"));
        }
        Ok(p)
    }

    fn lex(&self, text: &str, base: usize) -> Result<Vec<(usize, Tok)>, TemplateError> {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut out = Vec::new();
        let mut k = 0;
        let steps = |k: &mut usize| -> Vec<Step> {
            let mut st = Vec::new();
            while *k < chars.len() && chars[*k].1 == '.' {
                let at = base + chars[*k].0;
                let mut e = *k + 1;
                while e < chars.len() && is_ident_char(chars[e].1) {
                    e += 1;
                }
                if e == *k + 1 {
                    break;
                }
                let name: String = chars[*k + 1..e].iter().map(|c| c.1).collect();
                st.push((name, at));
                *k = e;
            }
            st
        };
        while k < chars.len() {
            let (off, c) = chars[k];
            let at = base + off;
            match c {
                c if c.is_whitespace() => k += 1,
                '|' => {
                    out.push((at, Tok::Pipe));
                    k += 1;
                }
                ',' => {
                    out.push((at, Tok::Comma));
                    k += 1;
                }
                '(' => {
                    out.push((at, Tok::LParen));
                    k += 1;
                }
                ')' => {
                    k += 1;
                    let st = steps(&mut k);
                    out.push((at, Tok::RParen(st)));
                }
                ':' if chars.get(k + 1).map(|c| c.1) == Some('=') => {
                    out.push((at, Tok::Declare));
                    k += 2;
                }
                '.' => {
                    let st = steps(&mut k);
                    if st.is_empty() {
                        k += 1;
                    }
                    out.push((at, Tok::Field(st)));
                }
                '$' => {
                    let mut e = k + 1;
                    while e < chars.len() && is_ident_char(chars[e].1) {
                        e += 1;
                    }
                    let name: String = chars[k..e].iter().map(|c| c.1).collect();
                    k = e;
                    let st = steps(&mut k);
                    out.push((at, Tok::Var(name, st)));
                }
                '"' => {
                    let mut s = String::new();
                    let mut e = k + 1;
                    loop {
                        let Some(&(_, ch)) = chars.get(e) else {
                            return Err(self.err(at, "unterminated quoted string"));
                        };
                        e += 1;
                        match ch {
                            '"' => break,
                            '\\' => {
                                let Some(&(_, esc)) = chars.get(e) else {
                                    return Err(self.err(at, "unterminated quoted string"));
                                };
                                e += 1;
                                s.push(match esc {
                                    'n' => '\n',
                                    't' => '\t',
                                    'r' => '\r',
                                    '0' => '\0',
                                    other => other,
                                });
                            }
                            ch => s.push(ch),
                        }
                    }
                    k = e;
                    out.push((at, Tok::Str(s)));
                }
                '`' => {
                    let mut e = k + 1;
                    while e < chars.len() && chars[e].1 != '`' {
                        e += 1;
                    }
                    if e >= chars.len() {
                        return Err(self.err(at, "unterminated raw quoted string"));
                    }
                    let s: String = chars[k + 1..e].iter().map(|c| c.1).collect();
                    k = e + 1;
                    out.push((at, Tok::Str(s)));
                }
                c if c.is_ascii_digit() || c == '-' || c == '+' => {
                    let mut e = k + 1;
                    while e < chars.len()
                        && (chars[e].1.is_ascii_alphanumeric()
                            || chars[e].1 == '.'
                            || chars[e].1 == '_')
                    {
                        e += 1;
                    }
                    let s: String = chars[k..e].iter().map(|c| c.1).collect();
                    k = e;
                    if let Ok(i) = s.parse::<i64>() {
                        out.push((at, Tok::Int(i)));
                    } else if let Ok(f) = s.parse::<f64>() {
                        out.push((at, Tok::Float(f)));
                    } else {
                        return Err(self.err(at, format!("bad number syntax: {s:?}")));
                    }
                }
                c if is_ident_char(c) => {
                    let mut e = k + 1;
                    while e < chars.len() && is_ident_char(chars[e].1) {
                        e += 1;
                    }
                    let s: String = chars[k..e].iter().map(|c| c.1).collect();
                    k = e;
                    out.push((at, Tok::Ident(s)));
                }
                c => return Err(self.err(at, format!("unexpected {c:?} in command"))),
            }
        }
        Ok(out)
    }

    fn pipeline(
        &self,
        toks: &[(usize, Tok)],
        i: &mut usize,
        at: usize,
    ) -> Result<Pipeline, TemplateError> {
        let mut decl = Vec::new();
        // `$a := …` or `$a, $b := …`
        let mut j = *i;
        let mut names = Vec::new();
        while let Some((_, Tok::Var(n, st))) = toks.get(j) {
            if !st.is_empty() {
                break;
            }
            names.push(n.clone());
            j += 1;
            match toks.get(j) {
                Some((_, Tok::Comma)) => j += 1,
                Some((_, Tok::Declare)) => {
                    decl = names.clone();
                    *i = j + 1;
                    break;
                }
                _ => break,
            }
        }
        let mut cmds = Vec::new();
        let mut cmd = Vec::new();
        while let Some((pos, t)) = toks.get(*i) {
            match t {
                Tok::Pipe => {
                    if cmd.is_empty() {
                        return Err(self.err(*pos, "missing command before |"));
                    }
                    cmds.push(std::mem::take(&mut cmd));
                    *i += 1;
                }
                Tok::RParen(_) => break,
                Tok::LParen => {
                    *i += 1;
                    let inner = self.pipeline(toks, i, *pos)?;
                    match toks.get(*i) {
                        Some((_, Tok::RParen(st))) => {
                            cmd.push(Operand::Sub(Box::new(inner), st.clone()));
                            *i += 1;
                        }
                        _ => return Err(self.err(*pos, "unclosed left paren")),
                    }
                }
                Tok::Field(st) => {
                    cmd.push(Operand::Field(st.clone()));
                    *i += 1;
                }
                Tok::Var(n, st) => {
                    cmd.push(Operand::Var(n.clone(), st.clone()));
                    *i += 1;
                }
                Tok::Str(s) => {
                    cmd.push(Operand::Literal(Data::Str(s.clone())));
                    *i += 1;
                }
                Tok::Int(n) => {
                    cmd.push(Operand::Literal(Data::Int(*n)));
                    *i += 1;
                }
                Tok::Float(f) => {
                    cmd.push(Operand::Literal(Data::Float(*f)));
                    *i += 1;
                }
                Tok::Ident(s) => {
                    cmd.push(match s.as_str() {
                        "true" => Operand::Literal(Data::Bool(true)),
                        "false" => Operand::Literal(Data::Bool(false)),
                        "nil" => Operand::Literal(Data::Nil),
                        _ => Operand::Ident(s.clone()),
                    });
                    *i += 1;
                }
                Tok::Comma | Tok::Declare => {
                    return Err(self.err(*pos, format!("unexpected {t:?} in operand")))
                }
            }
        }
        if !cmd.is_empty() {
            cmds.push(cmd);
        } else if !cmds.is_empty() {
            return Err(self.err(at, "missing command after |"));
        }
        Ok(Pipeline { decl, cmds })
    }
}
