//! Containerfile (Dockerfile) syntax: lines into instructions, and the word processing that
//! buildah and BuildKit apply to their arguments.
//!
//! 1. [`parse`] reads the parser directives at the top (`# escape=\` or `` # escape=` ``;
//!    `# syntax=` is ignored), then joins continuation lines (a line ending in the escape
//!    character; comment lines and empty lines inside a continuation are skipped), drops
//!    comments, and splits each logical line into its instruction keyword (case-insensitive),
//!    its `--flag=value` options (for FROM, COPY, ADD) and its argument text, numbered by the
//!    line it starts on. Heredocs (`<<EOF`) are refused.
//! 2. [`Instruction::json_args`] gives the JSON (exec) form of an argument, `["a", "b"]`,
//!    when the text parses as a JSON array of strings; otherwise the text is the shell form.
//! 3. [`Words::split`] turns shell-form text into words the way the Dockerfile lexer does:
//!    whitespace separates words, single quotes are literal, double quotes group and allow
//!    the escape character before `"`, `$` and itself, and `$VAR`, `${VAR}`,
//!    `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}` and `${VAR+alt}` are substituted
//!    from the variables in scope (ARG and ENV); an unset variable is empty. [`Words::one`]
//!    substitutes without splitting (WORKDIR, USER, STOPSIGNAL).
//! 4. [`stages`] groups the instructions into build stages, one per FROM, with the ARGs
//!    declared before the first FROM as the global arguments.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// One instruction of a Containerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line it starts on (1-based).
    pub line: usize,
    /// The keyword, upper-cased (`COPY`).
    pub keyword: String,
    /// `--name=value` options before the arguments (FROM, COPY, ADD), in order.
    pub flags: Vec<(String, String)>,
    /// The argument text after the keyword and flags, continuations joined.
    pub args: String,
    /// The instruction as written (continuations joined), for the image history.
    pub original: String,
}

impl Instruction {
    /// The exec (JSON) form of the arguments, if they are a JSON array of strings.
    pub fn json_args(&self) -> Option<Vec<String>> {
        let t = self.args.trim();
        if !t.starts_with('[') {
            return None;
        }
        serde_json::from_str::<Vec<String>>(t).ok()
    }

    /// The value of flag `name` (`--from=x` → `from`), the last one when repeated.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An error about this instruction, naming the file and line.
    pub fn error(&self, file: &str, reason: impl Into<String>) -> Error {
        Error::InvalidArgument {
            what: format!("{file}:{}: {}", self.line, self.keyword),
            reason: reason.into(),
        }
    }
}

/// The parsed file: its escape character and its instructions.
#[derive(Debug, Clone)]
pub struct Containerfile {
    /// `\` unless a `# escape=` directive says `` ` ``.
    pub escape: char,
    /// The instructions in order.
    pub instructions: Vec<Instruction>,
}

/// Instructions that take `--flag` options before their arguments.
const FLAGGED: [&str; 3] = ["FROM", "COPY", "ADD"];

/// Parse Containerfile `text`; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Containerfile> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(rest) = l.strip_prefix('#') else {
            break;
        };
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "escape" => {
                escape = match v.trim() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(Error::InvalidArgument {
                            what: format!("{file}:{}: escape directive", i + 1),
                            reason: format!("invalid escape character {other:?}; use \\ or `"),
                        })
                    }
                }
            }
            "syntax" | "check" => {}
            _ => break,
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let t = first.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut logical = String::new();
        let mut cur = first.to_string();
        loop {
            let trimmed = cur.trim_end();
            if let Some(body) = trimmed.strip_suffix(escape) {
                logical.push_str(body);
                // The next line that is not a comment or empty continues it.
                let mut next = None;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let lt = l.trim_start();
                    if lt.starts_with('#') || lt.is_empty() {
                        continue;
                    }
                    next = Some(l.to_string());
                    break;
                }
                match next {
                    Some(n) => cur = n,
                    None => break,
                }
            } else {
                logical.push_str(&cur);
                break;
            }
        }
        let logical = logical.trim().to_string();
        let (kw, rest) = match logical.find(char::is_whitespace) {
            Some(p) => (&logical[..p], logical[p..].trim_start()),
            None => (logical.as_str(), ""),
        };
        let keyword = kw.to_ascii_uppercase();
        if !keyword.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(Error::InvalidArgument {
                what: format!("{file}:{}", start + 1),
                reason: format!("{kw:?} is not an instruction (a missing {escape} at the end of the line before?)"),
            });
        }
        let mut rest = rest.to_string();
        let mut flags = Vec::new();
        if FLAGGED.contains(&keyword.as_str()) {
            loop {
                let r = rest.trim_start();
                let Some(f) = r.strip_prefix("--") else { break };
                let end = f.find(char::is_whitespace).unwrap_or(f.len());
                let (name, value) = match f[..end].split_once('=') {
                    Some((n, v)) => (n.to_string(), v.to_string()),
                    None => (f[..end].to_string(), "true".to_string()),
                };
                flags.push((name, value));
                rest = f[end..].trim_start().to_string();
            }
        }
        if rest.contains("<<") && matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            let heredoc = rest
                .split_whitespace()
                .any(|w| w.starts_with("<<") && w.len() > 2);
            if heredoc {
                return Err(Error::InvalidArgument {
                    what: format!("{file}:{}: {keyword}", start + 1),
                    reason: "heredocs (<<EOF) are not supported; put the content in a file of the build context and COPY it".into(),
                });
            }
        }
        instructions.push(Instruction {
            line: start + 1,
            keyword,
            flags,
            args: rest,
            original: format!("{kw} {}", logical[kw.len()..].trim_start())
                .trim_end()
                .to_string(),
        });
    }
    if instructions.is_empty() {
        return Err(Error::InvalidArgument {
            what: file.to_string(),
            reason: "the Containerfile has no instructions; it must start with FROM".into(),
        });
    }
    Ok(Containerfile {
        escape,
        instructions,
    })
}

/// One build stage: its FROM and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The FROM instruction.
    pub from: Instruction,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The base image as written (before ARG substitution), `scratch` for none.
    pub base: String,
    /// The instructions after FROM.
    pub body: Vec<Instruction>,
}

/// The file's stages, and the ARG instructions before the first FROM (the global args).
pub fn stages(cf: &Containerfile, file: &str) -> Result<(Vec<Instruction>, Vec<Stage>)> {
    let mut global = Vec::new();
    let mut out: Vec<Stage> = Vec::new();
    for ins in &cf.instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            let (base, name) = match words.as_slice() {
                [b] => (b.to_string(), None),
                [b, as_, n] if as_.eq_ignore_ascii_case("as") => {
                    (b.to_string(), Some(n.to_ascii_lowercase()))
                }
                _ => {
                    return Err(ins.error(
                        file,
                        format!("expected `FROM IMAGE [AS NAME]`, got {:?}", ins.args),
                    ))
                }
            };
            out.push(Stage {
                from: ins.clone(),
                name,
                base,
                body: Vec::new(),
            });
        } else if let Some(stage) = out.last_mut() {
            stage.body.push(ins.clone());
        } else if ins.keyword == "ARG" {
            global.push(ins.clone());
        } else {
            return Err(ins.error(
                file,
                "only ARG may come before the first FROM; start the file with FROM IMAGE (or FROM scratch)",
            ));
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArgument {
            what: file.to_string(),
            reason: "no FROM instruction; the file must start with FROM IMAGE (or FROM scratch)"
                .into(),
        });
    }
    Ok((global, out))
}

/// Word splitting and variable substitution over a set of variables.
pub struct Words<'a> {
    /// The escape character of the file.
    pub escape: char,
    /// The variables in scope.
    pub vars: &'a BTreeMap<String, String>,
}

impl Words<'_> {
    /// Split shell-form `text` into words, removing quotes and substituting variables.
    pub fn split(&self, text: &str) -> std::result::Result<Vec<String>, String> {
        self.process(text, true)
    }

    /// Substitute variables in `text` and remove quotes, without splitting at whitespace.
    pub fn one(&self, text: &str) -> std::result::Result<String, String> {
        Ok(self.process(text, false)?.join(""))
    }

    fn process(&self, text: &str, split: bool) -> std::result::Result<Vec<String>, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if split && c.is_whitespace() {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                i += 1;
                continue;
            }
            in_word = true;
            if c == self.escape {
                if let Some(&n) = chars.get(i + 1) {
                    cur.push(n);
                    i += 2;
                } else {
                    cur.push(c);
                    i += 1;
                }
            } else if c == '\'' {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .ok_or("unterminated single quote")?;
                cur.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            } else if c == '"' {
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err("unterminated double quote".into());
                    };
                    if d == '"' {
                        i += 1;
                        break;
                    }
                    if d == self.escape
                        && matches!(chars.get(i + 1), Some(&n) if n == '"' || n == '$' || n == self.escape)
                    {
                        cur.push(chars[i + 1]);
                        i += 2;
                    } else if d == '$' {
                        i = self.dollar(&chars, i, &mut cur)?;
                    } else {
                        cur.push(d);
                        i += 1;
                    }
                }
            } else if c == '$' {
                i = self.dollar(&chars, i, &mut cur)?;
            } else {
                cur.push(c);
                i += 1;
            }
        }
        if in_word || !split {
            words.push(cur);
        }
        Ok(words)
    }

    /// Expand the `$…` at `chars[i]` into `out`; returns the index after it.
    fn dollar(
        &self,
        chars: &[char],
        i: usize,
        out: &mut String,
    ) -> std::result::Result<usize, String> {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        match chars.get(i + 1) {
            Some('{') => {
                let close = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("unterminated ${ (missing })")?;
                let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                let name_len = inner.chars().take_while(|&c| is_name(c)).count();
                let name = &inner[..name_len];
                if name.is_empty() {
                    return Err(format!("bad substitution ${{{inner}}}"));
                }
                let op = &inner[name_len..];
                let value = self.vars.get(name);
                let expanded = |w: &str| -> std::result::Result<String, String> { self.one(w) };
                let text = match op {
                    "" => value.cloned().unwrap_or_default(),
                    _ if op.starts_with(":-") => match value {
                        Some(v) if !v.is_empty() => v.clone(),
                        _ => expanded(&op[2..])?,
                    },
                    _ if op.starts_with('-') => match value {
                        Some(v) => v.clone(),
                        None => expanded(&op[1..])?,
                    },
                    _ if op.starts_with(":+") => match value {
                        Some(v) if !v.is_empty() => expanded(&op[2..])?,
                        _ => String::new(),
                    },
                    _ if op.starts_with('+') => match value {
                        Some(_) => expanded(&op[1..])?,
                        None => String::new(),
                    },
                    _ => {
                        return Err(format!(
                            "unsupported substitution ${{{inner}}} (supported: ${{V}}, ${{V:-default}}, ${{V-default}}, ${{V:+alt}}, ${{V+alt}})"
                        ))
                    }
                };
                out.push_str(&text);
                Ok(i + 3 + close)
            }
            Some(&c) if is_name(c) && !c.is_ascii_digit() => {
                let len = chars[i + 1..].iter().take_while(|&&c| is_name(c)).count();
                let name: String = chars[i + 1..i + 1 + len].iter().collect();
                out.push_str(self.vars.get(&name).map(String::as_str).unwrap_or(""));
                Ok(i + 1 + len)
            }
            _ => {
                out.push('$');
                Ok(i + 1)
            }
        }
    }
}

/// Split `KEY=VALUE` words (ENV, LABEL, ARG); the legacy `ENV KEY VALUE…` form (no `=` in
/// the first word) gives one pair with the rest of the text as the value.
pub fn key_values(
    words: &Words<'_>,
    text: &str,
    legacy: bool,
) -> std::result::Result<Vec<(String, String)>, String> {
    let t = text.trim();
    let first = t.split_whitespace().next().unwrap_or("");
    let lexed_first = words.split(t).ok().and_then(|w| w.into_iter().next());
    if legacy && lexed_first.is_some_and(|w| !w.contains('=')) {
        let key = words.one(first)?;
        let rest = t[first.len()..].trim_start();
        if rest.is_empty() {
            return Err(format!("{key} has no value; write KEY=VALUE"));
        }
        return Ok(vec![(key, words.one(rest)?)]);
    }
    words
        .split(t)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn continuations_comments_flags_and_escape() {
        let cf = parse(
            "# escape=`\nFROM scratch AS a\n# comment\nCOPY --chown=1:2 --from=x `\n  # inside\n  a b `\n  /c/\nrun echo \\\n",
            "Containerfile",
        )
        .unwrap();
        assert_eq!(cf.escape, '`');
        let c = &cf.instructions[1];
        assert_eq!(c.keyword, "COPY");
        assert_eq!(c.line, 4);
        assert_eq!(c.flag("chown"), Some("1:2"));
        assert_eq!(c.flag("from"), Some("x"));
        assert_eq!(
            c.args.split_whitespace().collect::<Vec<_>>(),
            ["a", "b", "/c/"]
        );
        assert_eq!(cf.instructions[2].keyword, "RUN");
        assert_eq!(cf.instructions[2].args, "echo \\");
    }

    #[test]
    fn json_and_shell_forms() {
        let cf = parse("FROM x\nCMD [\"a\", \"b c\"]\nCMD [not json\n", "f").unwrap();
        assert_eq!(
            cf.instructions[1].json_args(),
            Some(vec!["a".to_string(), "b c".to_string()])
        );
        assert_eq!(cf.instructions[2].json_args(), None);
    }

    #[test]
    fn substitution_and_quotes() {
        let v = vars(&[("A", "1"), ("E", "")]);
        let w = Words {
            escape: '\\',
            vars: &v,
        };
        assert_eq!(
            w.split(r#"$A ${A} ${B:-d} ${E:-x} ${E-y} ${A:+p} '$A' "q $A" \$A a\ b"#)
                .unwrap(),
            ["1", "1", "d", "x", "", "p", "$A", "q 1", "$A", "a b"]
        );
        assert_eq!(
            key_values(&w, r#"K=$A "L 2"="two words" M="#, false).unwrap(),
            [
                ("K".to_string(), "1".to_string()),
                ("L 2".to_string(), "two words".to_string()),
                ("M".to_string(), String::new())
            ]
        );
        assert_eq!(
            key_values(&w, "K one two", true).unwrap(),
            [("K".to_string(), "one two".to_string())]
        );
        assert!(w.split("'open").is_err());
    }

    #[test]
    fn stages_and_errors() {
        let cf = parse("ARG V=1\nFROM a AS One\nCOPY x y\nFROM scratch\n", "f").unwrap();
        let (global, st) = stages(&cf, "f").unwrap();
        assert_eq!(global.len(), 1);
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].name.as_deref(), Some("one"));
        assert_eq!(st[1].base, "scratch");
        let cf = parse("COPY a b\n", "Containerfile").unwrap();
        let e = stages(&cf, "Containerfile").unwrap_err().to_string();
        assert!(
            e.contains("Containerfile:1: COPY") && e.contains("FROM"),
            "{e}"
        );
        let e = parse("FROM x\nRUN <<EOF\nhi\nEOF\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heredocs"), "{e}");
    }
}
