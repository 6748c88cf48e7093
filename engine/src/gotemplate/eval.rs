//! Running a parsed template on a value.

use super::parse::{Node, Operand, Parser, Pipeline, Step};
use super::value::{print_value, to_text, Data};
use super::TemplateError;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    src: String,
    nodes: Vec<Node>,
    /// Added to a field's offset in `src` for the column errors print (podman wraps the
    /// user's format in `{{range . }}`, so its columns are shifted).
    col_base: usize,
}

struct Scope<'a> {
    root: &'a Data,
    vars: Vec<(String, Data)>,
}

impl Template {
    /// Parse `src`; errors and executions are named `name` (`images`, `inspect`), and columns
    /// in errors are offsets in `src` plus `col_base`.
    pub fn parse(name: &str, src: &str, col_base: usize) -> Result<Template, TemplateError> {
        let nodes = Parser::new(src, name).parse()?;
        Ok(Template {
            name: name.to_string(),
            src: src.to_string(),
            nodes,
            col_base,
        })
    }

    /// Run the template with `dot` as `.` and `$`.
    pub fn execute(&self, dot: &Data) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut scope = Scope {
            root: dot,
            vars: vec![("$".into(), dot.clone())],
        };
        self.walk(&self.nodes, dot, &mut scope, &mut out)?;
        Ok(out)
    }

    fn walk(
        &self,
        nodes: &[Node],
        dot: &Data,
        scope: &mut Scope<'_>,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot, scope)?;
                    if p.decl.is_empty() {
                        print_value(&v, out);
                    }
                }
                Node::If(p, yes, no) => {
                    let depth = scope.vars.len();
                    let v = self.pipeline(p, dot, scope)?;
                    let r = if v.truth() {
                        self.walk(yes, dot, scope, out)
                    } else {
                        self.walk(no, dot, scope, out)
                    };
                    scope.vars.truncate(depth);
                    r?;
                }
                Node::With(p, yes, no) => {
                    let depth = scope.vars.len();
                    let v = self.pipeline(p, dot, scope)?;
                    let r = if v.truth() {
                        self.walk(yes, &v, scope, out)
                    } else {
                        self.walk(no, dot, scope, out)
                    };
                    scope.vars.truncate(depth);
                    r?;
                }
                Node::Range(p, body, empty) => {
                    let depth = scope.vars.len();
                    let decl = p.decl.clone();
                    let plain = Pipeline {
                        decl: Vec::new(),
                        cmds: p.cmds.clone(),
                    };
                    let v = self.pipeline(&plain, dot, scope)?;
                    let items: Vec<(Data, Data)> = match &v {
                        Data::List(l) => l
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (Data::Int(i as i64), x.clone()))
                            .collect(),
                        Data::Map(m) => m
                            .iter()
                            .map(|(k, x)| (Data::Str(k.clone()), x.clone()))
                            .collect(),
                        Data::Int(n) => (0..*n).map(|i| (Data::Int(i), Data::Int(i))).collect(),
                        Data::Nil | Data::Missing | Data::NilMap => Vec::new(),
                        other => {
                            return Err(TemplateError(format!(
                                "template: {}: range can't iterate over {}",
                                self.name,
                                to_text(other)
                            )))
                        }
                    };
                    if items.is_empty() {
                        self.walk(empty, dot, scope, out)?;
                    }
                    for (k, x) in items {
                        match decl.as_slice() {
                            [] => {}
                            [e] => scope.vars.push((e.clone(), x.clone())),
                            [i, e, ..] => {
                                scope.vars.push((i.clone(), k));
                                scope.vars.push((e.clone(), x.clone()));
                            }
                        }
                        self.walk(body, &x, scope, out)?;
                        scope.vars.truncate(depth);
                    }
                }
            }
        }
        Ok(())
    }

    fn pipeline(
        &self,
        p: &Pipeline,
        dot: &Data,
        scope: &mut Scope<'_>,
    ) -> Result<Data, TemplateError> {
        let mut piped: Option<Data> = None;
        for cmd in &p.cmds {
            piped = Some(self.command(cmd, dot, scope, piped)?);
        }
        let v = piped.unwrap_or(Data::Missing);
        for name in &p.decl {
            scope.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn command(
        &self,
        cmd: &[Operand],
        dot: &Data,
        scope: &mut Scope<'_>,
        piped: Option<Data>,
    ) -> Result<Data, TemplateError> {
        if let Some(Operand::Ident(f)) = cmd.first() {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.operand(a, dot, scope)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(f, args);
        }
        if cmd.len() > 1 || piped.is_some() {
            return Err(self.exec_err(None, "can't give argument to non-function"));
        }
        self.operand(&cmd[0], dot, scope)
    }

    fn operand(
        &self,
        op: &Operand,
        dot: &Data,
        scope: &mut Scope<'_>,
    ) -> Result<Data, TemplateError> {
        match op {
            Operand::Literal(d) => Ok(d.clone()),
            Operand::Field(steps) => self.fields(dot, steps),
            Operand::Var(name, steps) => {
                let base = if name == "$" {
                    scope.root.clone()
                } else {
                    scope
                        .vars
                        .iter()
                        .rev()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| {
                            TemplateError(format!(
                                "template: {}: undefined variable: {name}",
                                self.name
                            ))
                        })?
                };
                self.fields(&base, steps)
            }
            Operand::Sub(p, steps) => {
                let v = self.pipeline(p, dot, scope)?;
                self.fields(&v, steps)
            }
            Operand::Ident(f) => self.call(f, Vec::new()),
        }
    }

    fn exec_err(&self, at: Option<(usize, &str)>, msg: &str) -> TemplateError {
        match at {
            Some((pos, chain)) => {
                let before = &self.src[..pos.min(self.src.len())];
                let line = 1 + before.matches('\n').count();
                let col = match before.rfind('\n') {
                    Some(nl) => pos - nl - 1,
                    None => pos + self.col_base,
                };
                TemplateError(format!(
                    "template: {n}:{line}:{col}: executing \"{n}\" at <{chain}>: {msg}",
                    n = self.name
                ))
            }
            None => TemplateError(format!(
                "template: {n}: executing \"{n}\": {msg}",
                n = self.name
            )),
        }
    }

    fn fields(&self, base: &Data, steps: &[Step]) -> Result<Data, TemplateError> {
        let mut v = base.clone();
        for (i, (name, at)) in steps.iter().enumerate() {
            let chain: String = steps[..=i].iter().map(|(n, _)| format!(".{n}")).collect();
            v = match &v {
                Data::Struct(s) => match s.field(name) {
                    Some(x) => x.clone(),
                    None => {
                        return Err(self.exec_err(
                            Some((*at, &chain)),
                            &format!("can't evaluate field {name} in type {}", s.type_name),
                        ))
                    }
                },
                Data::Map(m) => m.get(name).cloned().unwrap_or(Data::Missing),
                Data::NilMap => Data::Missing,
                Data::Nil | Data::Missing => {
                    return Err(self.exec_err(
                        Some((*at, &chain)),
                        &format!("nil pointer evaluating {}.{name}", v.type_name()),
                    ))
                }
                other => {
                    return Err(self.exec_err(
                        Some((*at, &chain)),
                        &format!("can't evaluate field {name} in type {}", other.type_name()),
                    ))
                }
            };
        }
        Ok(v)
    }

    fn call(&self, f: &str, args: Vec<Data>) -> Result<Data, TemplateError> {
        let err = |m: String| {
            TemplateError(format!(
                "template: {}: executing \"{}\": error calling {f}: {m}",
                self.name, self.name
            ))
        };
        let arity = |n: usize| -> Result<(), TemplateError> {
            if args.len() != n {
                Err(TemplateError(format!(
                    "template: {}: wrong number of args for {f}: want {n} got {}",
                    self.name,
                    args.len()
                )))
            } else {
                Ok(())
            }
        };
        Ok(match f {
            "json" => {
                arity(1)?;
                Data::Str(serde_json::to_string(&args[0].to_json()).unwrap_or_default())
            }
            "index" => {
                let mut it = args.into_iter();
                let mut v = it.next().ok_or_else(|| err("missing argument".into()))?;
                for k in it {
                    v = match (&v, &k) {
                        (Data::Map(m), Data::Str(s)) => {
                            m.get(s).cloned().unwrap_or(Data::Str(String::new()))
                        }
                        (Data::List(l), Data::Int(i)) => l
                            .get(*i as usize)
                            .cloned()
                            .ok_or_else(|| err(format!("index out of range: {i}")))?,
                        (Data::NilMap, _) => Data::Str(String::new()),
                        (Data::Nil | Data::Missing, _) => Data::Missing,
                        (x, _) => {
                            return Err(err(format!("can't index item of type {}", x.type_name())))
                        }
                    };
                }
                v
            }
            "len" => {
                arity(1)?;
                Data::Int(match &args[0] {
                    Data::List(l) => l.len(),
                    Data::Map(m) => m.len(),
                    Data::NilMap => 0,
                    Data::Str(s) => s.len(),
                    x => return Err(err(format!("len of type {}", x.type_name()))),
                } as i64)
            }
            "join" => {
                arity(2)?;
                let sep = to_text(&args[1]);
                match &args[0] {
                    Data::List(l) => {
                        Data::Str(l.iter().map(to_text).collect::<Vec<_>>().join(&sep))
                    }
                    x => Data::Str(to_text(x)),
                }
            }
            "lower" => {
                arity(1)?;
                Data::Str(to_text(&args[0]).to_lowercase())
            }
            "upper" => {
                arity(1)?;
                Data::Str(to_text(&args[0]).to_uppercase())
            }
            "title" => {
                arity(1)?;
                let s = to_text(&args[0]);
                let mut out = String::new();
                let mut start = true;
                for c in s.chars() {
                    if start {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    start = c.is_whitespace();
                }
                Data::Str(out)
            }
            "print" => {
                let mut out = String::new();
                for (i, a) in args.iter().enumerate() {
                    let is_str = |d: &Data| matches!(d, Data::Str(_));
                    if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
                        out.push(' ');
                    }
                    print_value(a, &mut out);
                }
                Data::Str(out)
            }
            "println" => Data::Str(args.iter().map(to_text).collect::<Vec<_>>().join(" ") + "\n"),
            "printf" => {
                let mut it = args.into_iter();
                let fmt = match it.next() {
                    Some(Data::Str(s)) => s,
                    _ => return Err(err("the format must be a string".into())),
                };
                Data::Str(printf(&fmt, &it.collect::<Vec<_>>()))
            }
            "not" => {
                arity(1)?;
                Data::Bool(!args[0].truth())
            }
            "and" => args
                .iter()
                .find(|a| !a.truth())
                .or(args.last())
                .cloned()
                .unwrap_or(Data::Missing),
            "or" => args
                .iter()
                .find(|a| a.truth())
                .or(args.last())
                .cloned()
                .unwrap_or(Data::Missing),
            "eq" => {
                let Some((first, rest)) = args.split_first() else {
                    return Err(err("missing argument for comparison".into()));
                };
                Data::Bool(
                    rest.iter()
                        .any(|b| compare(first, b) == Some(std::cmp::Ordering::Equal)),
                )
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                arity(2)?;
                let o = compare(&args[0], &args[1])
                    .ok_or_else(|| err("incompatible types for comparison".into()))?;
                use std::cmp::Ordering::*;
                Data::Bool(match f {
                    "ne" => o != Equal,
                    "lt" => o == Less,
                    "le" => o != Greater,
                    "gt" => o == Greater,
                    _ => o != Less,
                })
            }
            _ => {
                return Err(TemplateError(format!(
                    "template: {}: function {f:?} not defined",
                    self.name
                )))
            }
        })
    }
}

fn compare(a: &Data, b: &Data) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Data::Int(x), Data::Int(y)) => Some(x.cmp(y)),
        (Data::Int(x), Data::Float(y)) => (*x as f64).partial_cmp(y),
        (Data::Float(x), Data::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Data::Float(x), Data::Float(y)) => x.partial_cmp(y),
        (Data::Str(x), Data::Str(y)) => Some(x.cmp(y)),
        (Data::Bool(x), Data::Bool(y)) => Some(x.cmp(y)),
        (Data::Nil | Data::Missing, Data::Nil | Data::Missing) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %q %t %x %f %%`, with `-`, `0`
/// and a width (`%-20s`, `%5d`), and `.N` precision for `%f` and `%s`.
fn printf(fmt: &str, args: &[Data]) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero) = (false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let mut s = match (verb, arg) {
            ('d', Data::Int(i)) => i.to_string(),
            ('x', Data::Int(i)) => format!("{i:x}"),
            ('x', Data::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('f', Data::Float(f)) => format!("{f:.*}", prec.unwrap_or(6)),
            ('f', Data::Int(i)) => format!("%!f(int64={i})"),
            ('q', Data::Str(s)) => serde_json::to_string(s).unwrap_or_default(),
            ('t', Data::Bool(b)) => b.to_string(),
            ('s' | 'v', a) => {
                let t = to_text(a);
                match (verb, prec) {
                    ('s', Some(p)) => t.chars().take(p).collect(),
                    _ => t,
                }
            }
            (v, a) => format!("%!{v}({}={})", a.type_name(), to_text(a)),
        };
        let w: usize = width.parse().unwrap_or(0);
        let n = s.chars().count();
        if n < w {
            let pad = w - n;
            if left {
                s.extend(std::iter::repeat_n(' ', pad));
            } else if zero && matches!(verb, 'd' | 'f' | 'x') {
                s = "0".repeat(pad) + &s;
            } else {
                s = " ".repeat(pad) + &s;
            }
        }
        out.push_str(&s);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        out.push_str(
            &args[next..]
                .iter()
                .map(|a| format!("{}={}", a.type_name(), to_text(a)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push(')');
    }
    out
}
