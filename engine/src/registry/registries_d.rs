//! registries.d (containers-registries.d(5)): per-registry signature storage settings.
//!
//! 1. The directory is `--registries.d DIR`, else `$HOME/.config/containers/registries.d` when
//!    it exists, else `/etc/containers/registries.d`; a missing directory means no settings.
//! 2. Every `*.yaml` file in it is read (in name order) and merged: `default-docker` may be
//!    defined in one file only, and each `docker:` namespace key likewise.
//! 3. For an image, the `docker:` entry for its most specific scope that sets a value wins
//!    (identity, then repository, parent namespaces, host, `*.domain` wildcards), then
//!    `default-docker`. stowage uses `use-sigstore-attachments` (read and write sigstore
//!    signatures as `sha256-<hex>.sig` tags) and reports `lookaside` URLs (GPG simple-signing
//!    signature storage) to explain why signedBy cannot be checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::HostPaths;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// One `default-docker` or `docker:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceConf {
    /// `lookaside` (or the deprecated `sigstore`): where simple-signing signatures are read.
    pub lookaside: Option<String>,
    /// `lookaside-staging` (or `sigstore-staging`): where they are written.
    pub lookaside_staging: Option<String>,
    /// `use-sigstore-attachments`.
    pub use_sigstore_attachments: Option<bool>,
}

/// The merged registries.d configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesD {
    /// `default-docker`.
    pub default_docker: Option<NamespaceConf>,
    /// `docker:` entries by scope.
    pub docker: BTreeMap<String, NamespaceConf>,
}

impl RegistriesD {
    /// The directory containers/image would read (see the module docs).
    pub fn dir(explicit: Option<&Path>, host: &HostPaths) -> PathBuf {
        if let Some(d) = explicit {
            return d.to_path_buf();
        }
        if let Some(home) = &host.home {
            let user = home.join(".config/containers/registries.d");
            if user.exists() {
                return user;
            }
        }
        host.etc_containers.join("registries.d")
    }

    /// Read and merge every `*.yaml` file of `dir` (none, or no directory: empty settings).
    pub fn load(dir: &Path) -> Result<RegistriesD> {
        let mut out = RegistriesD::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(out);
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let mut default_from: Option<PathBuf> = None;
        let mut ns_from: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| Error::io_path("reading", &file, e))?;
            let bad = |reason: String| Error::Config {
                what: format!("registries.d file {}", file.display()),
                reason,
            };
            let doc = block_yaml::parse(&text).map_err(&bad)?;
            if doc.is_null() {
                continue;
            }
            let top = doc
                .as_map()
                .ok_or_else(|| bad("expected a mapping".into()))?;
            for (k, v) in top {
                match Some(k.as_str()) {
                    Some("default-docker") => {
                        if let Some(prev) = &default_from {
                            return Err(bad(format!(
                                "\"default-docker\" is also defined in {}",
                                prev.display()
                            )));
                        }
                        default_from = Some(file.clone());
                        out.default_docker = Some(namespace(v).map_err(&bad)?);
                    }
                    Some("docker") => {
                        if v.is_null() {
                            continue;
                        }
                        let map = v
                            .as_map()
                            .ok_or_else(|| bad("\"docker\" must be a mapping".into()))?;
                        for (name, conf) in map {
                            let name = name.clone();
                            if let Some(prev) = ns_from.get(&name) {
                                return Err(bad(format!(
                                    "docker namespace {name:?} is also defined in {}",
                                    prev.display()
                                )));
                            }
                            ns_from.insert(name.clone(), file.clone());
                            out.docker.insert(name, namespace(conf).map_err(&bad)?);
                        }
                    }
                    Some(other) => {
                        return Err(bad(format!(
                            "unknown key {other:?} (expected default-docker, docker)"
                        )))
                    }
                    None => return Err(bad("keys must be strings".into())),
                }
            }
        }
        Ok(out)
    }

    /// The first value `get` finds for `reference`: its `docker:` scopes, then `default-docker`.
    fn lookup<T>(
        &self,
        reference: &Reference,
        get: impl Fn(&NamespaceConf) -> Option<T>,
    ) -> Option<T> {
        crate::policy::scope::docker_scopes(reference)
            .iter()
            .filter_map(|s| self.docker.get(s))
            .chain(self.default_docker.iter())
            .find_map(get)
    }

    /// Whether sigstore signatures of `reference` are read from and written to its registry.
    pub fn use_sigstore_attachments(&self, reference: &Reference) -> bool {
        self.lookup(reference, |n| n.use_sigstore_attachments)
            .unwrap_or(false)
    }

    /// The lookaside (simple-signing) URL configured for `reference`, if any.
    pub fn lookaside(&self, reference: &Reference) -> Option<String> {
        self.lookup(reference, |n| n.lookaside.clone())
    }
}

fn namespace(v: &block_yaml::Node) -> std::result::Result<NamespaceConf, String> {
    let mut out = NamespaceConf::default();
    if v.is_null() {
        return Ok(out);
    }
    let map = v.as_map().ok_or("a namespace entry must be a mapping")?;
    for (k, val) in map {
        let key = k.as_str();
        let string = || {
            val.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{key:?} must be a string"))
        };
        match key {
            "lookaside" | "sigstore" => {
                if out.lookaside.is_none() || key == "lookaside" {
                    out.lookaside = Some(string()?);
                }
            }
            "lookaside-staging" | "sigstore-staging" => {
                if out.lookaside_staging.is_none() || key == "lookaside-staging" {
                    out.lookaside_staging = Some(string()?);
                }
            }
            "use-sigstore-attachments" => {
                out.use_sigstore_attachments =
                    Some(val.as_bool().ok_or("\"use-sigstore-attachments\" must be true or false")?)
            }
            other => {
                return Err(format!(
                    "unknown key {other:?} (expected lookaside, lookaside-staging, sigstore, sigstore-staging, use-sigstore-attachments)"
                ))
            }
        }
    }
    Ok(out)
}

/// The YAML registries.d files use: block mappings (nested by indentation) of plain or
/// quoted scalars, with comments. A YAML library would add a few hundred KB to the static
/// binary for files that never use more; anything else (flow collections, sequences,
/// anchors, block scalars, several documents) is refused with a message naming the line.
mod block_yaml {
    /// A parsed value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Node {
        /// `~`, `null` or nothing.
        Null,
        /// A scalar, unquoted.
        Scalar(String),
        /// A quoted scalar (never a boolean or null).
        Quoted(String),
        /// A block mapping, in file order.
        Map(Vec<(String, Node)>),
    }

    impl Node {
        pub fn is_null(&self) -> bool {
            matches!(self, Node::Null)
        }
        pub fn as_map(&self) -> Option<&[(String, Node)]> {
            match self {
                Node::Map(m) => Some(m),
                _ => None,
            }
        }
        pub fn as_str(&self) -> Option<&str> {
            match self {
                Node::Scalar(s) | Node::Quoted(s) => Some(s),
                _ => None,
            }
        }
        pub fn as_bool(&self) -> Option<bool> {
            match self {
                Node::Scalar(s) => match s.as_str() {
                    "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
                        Some(true)
                    }
                    "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                        Some(false)
                    }
                    _ => None,
                },
                _ => None,
            }
        }
    }

    struct Line<'a> {
        number: usize,
        indent: usize,
        text: &'a str,
    }

    /// `text` without a trailing comment (a `#` at the start or after a blank, outside quotes).
    fn strip_comment(text: &str) -> &str {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (i, c) in text.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '#' && (prev == ' ' || prev == '\t') => return &text[..i],
                None => {}
            }
            prev = c;
        }
        text
    }

    fn scalar(raw: &str, line: usize) -> Result<Node, String> {
        let raw = raw.trim();
        if raw.is_empty() || raw == "~" || raw == "null" || raw == "Null" || raw == "NULL" {
            return Ok(Node::Null);
        }
        if let Some(inner) = raw.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| format!("line {line}: unterminated double-quoted string"))?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(e @ ('"' | '\\' | '/')) => out.push(e),
                    other => {
                        return Err(format!(
                            "line {line}: unsupported escape \\{}",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                }
            }
            return Ok(Node::Quoted(out));
        }
        if let Some(inner) = raw.strip_prefix('\'') {
            let inner = inner
                .strip_suffix('\'')
                .ok_or_else(|| format!("line {line}: unterminated single-quoted string"))?;
            return Ok(Node::Quoted(inner.replace("''", "'")));
        }
        if raw.starts_with(['{', '[', '&', '*', '|', '>', '!', '%', '@', '`']) {
            return Err(format!(
                "line {line}: unsupported YAML construct {raw:?} (registries.d files are read as block mappings of scalars)"
            ));
        }
        Ok(Node::Scalar(raw.to_string()))
    }

    /// Split `key: value` at the first `:` followed by a blank or the end (outside quotes).
    fn split_key(text: &str, line: usize) -> Result<(String, &str), String> {
        let bytes = text.as_bytes();
        let key_end = if text.starts_with(['"', '\'']) {
            let q = bytes[0];
            let close = text[1..]
                .find(q as char)
                .ok_or_else(|| format!("line {line}: unterminated quoted key"))?;
            close + 2
        } else {
            0
        };
        let colon = text[key_end..]
            .char_indices()
            .find(|&(i, c)| {
                c == ':'
                    && text[key_end + i + 1..]
                        .chars()
                        .next()
                        .is_none_or(|n| n == ' ' || n == '\t')
            })
            .map(|(i, _)| key_end + i)
            .ok_or_else(|| format!("line {line}: expected \"key: value\", found {text:?}"))?;
        let key = match scalar(&text[..colon], line)? {
            Node::Scalar(k) | Node::Quoted(k) => k,
            _ => return Err(format!("line {line}: empty key")),
        };
        Ok((key, &text[colon + 1..]))
    }

    fn mapping(lines: &[Line<'_>], pos: &mut usize, indent: usize) -> Result<Node, String> {
        let mut out: Vec<(String, Node)> = Vec::new();
        while let Some(l) = lines.get(*pos) {
            if l.indent < indent {
                break;
            }
            if l.indent > indent {
                return Err(format!("line {}: unexpected indentation", l.number));
            }
            if l.text.starts_with("- ") || l.text == "-" {
                return Err(format!(
                    "line {}: sequences are not supported in registries.d",
                    l.number
                ));
            }
            let (key, rest) = split_key(l.text, l.number)?;
            if out.iter().any(|(k, _)| *k == key) {
                return Err(format!("line {}: duplicate key {key:?}", l.number));
            }
            *pos += 1;
            let value = if rest.trim().is_empty() {
                match lines.get(*pos) {
                    Some(next) if next.indent > indent => mapping(lines, pos, next.indent)?,
                    _ => Node::Null,
                }
            } else {
                scalar(rest, l.number)?
            };
            out.push((key, value));
        }
        Ok(Node::Map(out))
    }

    /// Parse one document.
    pub fn parse(text: &str) -> Result<Node, String> {
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            if raw.contains('\t') && raw.trim_start_matches(' ').starts_with('\t') {
                return Err(format!("line {number}: tabs cannot indent YAML"));
            }
            let body = strip_comment(raw).trim_end();
            let trimmed = body.trim_start();
            if trimmed.is_empty() {
                continue;
            }
            if trimmed == "---" && lines.is_empty() {
                continue;
            }
            if trimmed == "---" || trimmed == "..." {
                return Err(format!(
                    "line {number}: several YAML documents in one file are not supported"
                ));
            }
            lines.push(Line {
                number,
                indent: body.len() - trimmed.len(),
                text: trimmed,
            });
        }
        let Some(first) = lines.first() else {
            return Ok(Node::Null);
        };
        let mut pos = 0;
        let node = mapping(&lines, &mut pos, first.indent)?;
        match lines.get(pos) {
            Some(l) => Err(format!("line {}: unexpected indentation", l.number)),
            None => Ok(node),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_scope_wins_then_default() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("a.yaml"),
            "default-docker:\n  use-sigstore-attachments: true\n  lookaside: file:///var/lib/sigs\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("b.yaml"),
            "docker:\n  127.0.0.1:5000/off:\n    use-sigstore-attachments: false\n  127.0.0.1:5000/off/on:\n    lookaside: https://sigs.example.com\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("ignored.conf"), "not: [yaml").unwrap();
        let d = RegistriesD::load(tmp.path()).unwrap();
        let r = |s: &str| Reference::parse(s).unwrap();
        assert!(d.use_sigstore_attachments(&r("quay.io/x:1")));
        assert!(!d.use_sigstore_attachments(&r("127.0.0.1:5000/off/x:1")));
        assert!(
            !d.use_sigstore_attachments(&r("127.0.0.1:5000/off/on:1")),
            "an entry without the key defers to the next scope"
        );
        assert_eq!(
            d.lookaside(&r("127.0.0.1:5000/off/on:1")).as_deref(),
            Some("https://sigs.example.com")
        );
        std::fs::write(
            tmp.path().join("c.yaml"),
            "default-docker:\n  lookaside: x\n",
        )
        .unwrap();
        let err = RegistriesD::load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("c.yaml") && err.contains("also defined in"),
            "{err}"
        );
        assert_eq!(
            RegistriesD::load(&tmp.path().join("none")).unwrap(),
            RegistriesD::default()
        );
    }

    #[test]
    fn block_yaml_subset() {
        use super::block_yaml::{parse, Node};
        let doc = parse(
            "# Fedora's default.yaml\n---\ndocker:\n  # comment\n  \"127.0.0.1:5000/x\":\n    use-sigstore-attachments: yes # trailing\n    lookaside: 'https://a/#b'\n  quay.io:\n    sigstore: file:///var/lib/containers/sigstore\ndefault-docker:\n",
        )
        .unwrap();
        let top = doc.as_map().unwrap();
        assert_eq!(top[1], ("default-docker".to_string(), Node::Null));
        let docker = top[0].1.as_map().unwrap();
        assert_eq!(docker[0].0, "127.0.0.1:5000/x");
        let x = docker[0].1.as_map().unwrap();
        assert_eq!(x[0].1.as_bool(), Some(true));
        assert_eq!(x[1].1.as_str(), Some("https://a/#b"));
        assert_eq!(
            docker[1].1.as_map().unwrap()[0].1.as_str(),
            Some("file:///var/lib/containers/sigstore")
        );
        assert!(parse("").unwrap().is_null());
        for (bad, needle) in [
            ("docker: {a: 1}\n", "unsupported YAML construct"),
            ("docker:\n  - a\n", "sequences"),
            ("a: 1\na: 2\n", "duplicate key"),
            ("a: 1\n---\nb: 2\n", "several YAML documents"),
            ("a:\n    b: 1\n  c: 2\n", "indentation"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }
}
