//! The repository `config` keyfile and the repository modes.
//!
//! 1. `ostree init --mode=M` writes exactly `[core]\nrepo_version=1\nmode=M\n`, except that
//!    `--mode=archive` is written as `mode=archive-z2` (ostree 2022.7); [`init_config`] writes
//!    the same bytes.
//! 2. [`RepoMode::from_config`] reads `core.mode` from a GLib keyfile (groups, `key=value`,
//!    `#` comments); a missing mode means `bare`, as in ostree; an unknown mode is an error
//!    naming it.

use std::fmt;

use crate::error::{Error, Result};

/// How a repository stores content objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoMode {
    /// Files with their real owner, mode and xattrs (needs root to write other owners).
    Bare,
    /// Files owned by the writer; the real uid/gid/mode/xattrs in the `user.ostreemeta` xattr.
    BareUser,
    /// Compressed `.filez` objects with the metadata in a header; for serving over HTTP.
    Archive,
}

impl RepoMode {
    /// The name `ostree init --mode=` takes.
    pub fn name(self) -> &'static str {
        match self {
            RepoMode::Bare => "bare",
            RepoMode::BareUser => "bare-user",
            RepoMode::Archive => "archive",
        }
    }

    /// The value `ostree init` writes to `core.mode`.
    pub fn config_value(self) -> &'static str {
        match self {
            RepoMode::Bare => "bare",
            RepoMode::BareUser => "bare-user",
            RepoMode::Archive => "archive-z2",
        }
    }

    /// Parse a mode name as `ostree init --mode` and `core.mode` accept it.
    pub fn parse(s: &str, what: &str) -> Result<RepoMode> {
        match s {
            "bare" => Ok(RepoMode::Bare),
            "bare-user" => Ok(RepoMode::BareUser),
            "archive" | "archive-z2" => Ok(RepoMode::Archive),
            "bare-user-only" | "bare-split-xattrs" => Err(Error::StoreUnsupported {
                what: "ostree".into(),
                reason: format!("{what}: repository mode {s:?} is not supported by stowage yet; use bare, bare-user or archive"),
            }),
            other => Err(Error::Malformed {
                what: what.to_string(),
                reason: format!("unknown repository mode {other:?}; ostree knows bare, bare-user, bare-user-only, bare-split-xattrs and archive (archive-z2)"),
            }),
        }
    }

    /// The mode recorded in a `config` keyfile's text.
    pub fn from_config(text: &str, what: &str) -> Result<RepoMode> {
        let mut group = "";
        let mut mode = None;
        let mut version = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(g) = line.strip_prefix('[') {
                group = g.strip_suffix(']').ok_or_else(|| Error::Malformed {
                    what: what.to_string(),
                    reason: format!("line {}: group header {line:?} lacks ']'", i + 1),
                })?;
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::Malformed {
                    what: what.to_string(),
                    reason: format!("line {}: {line:?} is neither a group nor key=value", i + 1),
                });
            };
            if group == "core" {
                match k.trim() {
                    "mode" => mode = Some(v.trim().to_string()),
                    "repo_version" => version = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        match version.as_deref() {
            Some("1") => {}
            Some(v) => {
                return Err(Error::Unsupported {
                    transport: "ostree".into(),
                    reason: format!("{what}: core.repo_version={v}, only version 1 exists"),
                })
            }
            None => {
                return Err(Error::Malformed {
                    what: what.to_string(),
                    reason: "no core.repo_version; this is not an ostree repository config".into(),
                })
            }
        }
        RepoMode::parse(mode.as_deref().unwrap_or("bare"), what)
    }
}

impl fmt::Display for RepoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `config` file `ostree init --mode=<mode>` writes.
pub fn init_config(mode: RepoMode) -> String {
    format!("[core]\nrepo_version=1\nmode={}\n", mode.config_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ostree_writes() {
        for m in [RepoMode::Bare, RepoMode::BareUser, RepoMode::Archive] {
            assert_eq!(RepoMode::from_config(&init_config(m), "c").unwrap(), m);
        }
        let e =
            RepoMode::from_config("[core]\nrepo_version=1\nmode=weird\n", "R/config").unwrap_err();
        assert!(e.to_string().contains("\"weird\""), "{e}");
        assert!(RepoMode::from_config("[core]\nmode=bare\n", "c").is_err());
        assert_eq!(
            RepoMode::from_config(
                "# c\n[core]\nrepo_version = 1\n[remote \"x\"]\nmode=archive\n",
                "c"
            )
            .unwrap(),
            RepoMode::Bare
        );
    }
}
