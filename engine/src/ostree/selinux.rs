//! SELinux labels from a tree's own policy, as libostree's commit modifier computes them with
//! libselinux (3.4, the file-contexts backend), so imports label files as `ostree commit
//! --selinux-policy` and ostree-rs-ext do — without libselinux.
//!
//! 1. [`SePolicy::from_tree`] finds the policy the way `ostree_sepolicy_new_at` does:
//!    `usr/etc/selinux/config` (else `etc/selinux/config`) names `SELINUXTYPE`; the policy root
//!    `…/selinux/TYPE` must have a `policy/` directory; no config means no policy (nothing is
//!    labelled).
//! 2. The specifications are read from `contexts/files/file_contexts`, then
//!    `file_contexts.homedirs` and `file_contexts.local`, in that order; each line is
//!    `REGEX [TYPE] CONTEXT` (`TYPE`: `--` file, `-d` directory, `-l` symlink, `-b`, `-c`,
//!    `-p`, `-s`), `#` comments, `<<none>>` for "no label". As libselinux does, the
//!    specifications whose regex has no meta character (`.^$?*+|[({`, `\` escaping the next
//!    one) move to the end, keeping their order (a stable partition).
//! 3. [`SePolicy::label`] of a path: the substitutions of `file_contexts.subs` then
//!    `file_contexts.subs_dist` (a prefix `SRC` followed by `/` or the end becomes `DST`)
//!    apply first; then the specifications are tried from the last to the first, and the
//!    first whose type matches and whose regex matches the whole path (`^(?:REGEX)$`) gives
//!    the context. Paths are the commit's own (`/usr/etc/…` stays `/usr/etc/…`, as ostree
//!    2022.7 labels them).
//! 4. [`relabel_tree`] sets `security.selinux` (the context and a NUL) on every directory and
//!    file of a tree where the policy gives a label, keeping the other xattrs; content
//!    objects whose label changes are written anew (their checksum covers the xattrs), those
//!    already right keep theirs.
//!
//! Hand-written: the `selinux` crate binds libselinux (C, not static-friendly). The patterns
//! are compiled by `regex-lite` (the regex crate's small sibling: file_contexts patterns are
//! ASCII, and Unicode tables would cost the static binary about a megabyte).
//! Checked against `ostree commit --selinux-policy` in `tests/ostree_selinux.rs`.

use std::io::Read;

use regex_lite::Regex;

use super::mtree::MutableTree;
use super::object::{mode, Checksum, DirMeta, FileMeta, ObjectType, Xattrs};
use super::repo::Repo;
use super::txn::Transaction;
use crate::error::{Error, Result};

/// The xattr holding a file's label.
pub const XATTR: &[u8] = b"security.selinux";

/// One file_contexts line.
#[derive(Debug)]
struct Spec {
    regex: Regex,
    /// `S_IFMT` bits the file must have, or 0 for any.
    file_type: u32,
    /// `None`: `<<none>>`.
    context: Option<String>,
    has_meta: bool,
}

/// A policy's file labelling rules (module doc, steps 1–3).
#[derive(Debug)]
pub struct SePolicy {
    /// `SELINUXTYPE`.
    pub name: String,
    specs: Vec<Spec>,
    /// Substitutions, local first.
    subs: Vec<(String, String)>,
}

fn has_meta_chars(regex: &str) -> bool {
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' | '^' | '$' | '?' | '*' | '+' | '|' | '[' | '(' | '{' => return true,
            '\\' => {
                chars.next();
            }
            _ => {}
        }
    }
    false
}

fn file_type(flag: &str) -> Option<u32> {
    Some(match flag {
        "--" => mode::S_IFREG,
        "-d" => mode::S_IFDIR,
        "-l" => mode::S_IFLNK,
        "-b" => 0o060000,
        "-c" => 0o020000,
        "-p" => 0o010000,
        "-s" => 0o140000,
        _ => return None,
    })
}

impl SePolicy {
    /// Parse file_contexts texts (in order: base, homedirs, local) and substitution files
    /// (local first, then dist). `what` names the source in errors.
    pub fn parse(name: &str, contexts: &[(&str, String)], subs: &[String]) -> Result<SePolicy> {
        let mut specs = Vec::new();
        for (what, text) in contexts {
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let fields: Vec<&str> = line.split_whitespace().collect();
                let bad = |reason: String| Error::Malformed {
                    what: format!("{what} line {}", n + 1),
                    reason,
                };
                let (re, ty, ctx) = match fields.as_slice() {
                    [re, ctx] => (*re, 0, *ctx),
                    [re, ty, ctx] => (
                        *re,
                        file_type(ty).ok_or_else(|| bad(format!("unknown file type {ty}")))?,
                        *ctx,
                    ),
                    _ => return Err(bad(format!("{line:?} is not REGEX [TYPE] CONTEXT"))),
                };
                let regex = Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| bad(format!("the regex {re:?} does not compile: {e}")))?;
                specs.push(Spec {
                    regex,
                    file_type: ty,
                    context: (ctx != "<<none>>").then(|| ctx.to_string()),
                    has_meta: has_meta_chars(re),
                });
            }
        }
        // Exact paths last, each group in file order (libselinux's sort_specs).
        let (mut ordered, exact): (Vec<Spec>, Vec<Spec>) =
            specs.into_iter().partition(|s| s.has_meta);
        ordered.extend(exact);
        let mut pairs = Vec::new();
        for text in subs {
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let mut f = line.split_whitespace();
                if let (Some(src), Some(dst)) = (f.next(), f.next()) {
                    pairs.push((src.to_string(), dst.to_string()));
                }
            }
        }
        Ok(SePolicy {
            name: name.to_string(),
            specs: ordered,
            subs: pairs,
        })
    }

    /// The label of `path` (absolute, `/` for the root) for a file of type `mode`
    /// (`S_IFMT` bits); `None` when no specification gives one.
    pub fn label(&self, path: &str, file_mode: u32) -> Option<&str> {
        let mut key = path.to_string();
        for (src, dst) in &self.subs {
            if let Some(rest) = key.strip_prefix(src.as_str()) {
                if rest.is_empty() || rest.starts_with('/') || src.ends_with('/') {
                    key = format!("{dst}{rest}");
                    break;
                }
            }
        }
        let ty = file_mode & mode::S_IFMT;
        self.specs
            .iter()
            .rev()
            .find(|s| (s.file_type == 0 || s.file_type == ty) && s.regex.is_match(&key))
            .and_then(|s| s.context.as_deref())
    }

    /// The policy of the tree `tree` (module doc, step 1), reading files from `repo`.
    pub fn from_tree(repo: &Repo, tree: &MutableTree) -> Result<Option<SePolicy>> {
        for dir in ["usr/etc/selinux", "etc/selinux"] {
            let Some(config) = read_file(repo, tree, &format!("{dir}/config"))? else {
                continue;
            };
            let Some(name) = config.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("SELINUXTYPE=")
                    .map(|v| v.trim().to_string())
            }) else {
                return Ok(None);
            };
            let root = format!("{dir}/{name}");
            if find_dir(tree, &format!("{root}/policy")).is_none() {
                return Err(Error::Malformed {
                    what: format!("SELinux policy {name} of the image (/{root})"),
                    reason: "it has no policy/ directory, which ostree needs to label files".into(),
                });
            }
            let files = format!("{root}/contexts/files");
            let mut contexts = Vec::new();
            for suffix in ["", ".homedirs", ".local"] {
                let p = format!("{files}/file_contexts{suffix}");
                if let Some(text) = read_file(repo, tree, &p)? {
                    contexts.push((p, text));
                }
            }
            let mut subs = Vec::new();
            for suffix in [".subs", ".subs_dist"] {
                if let Some(text) =
                    read_file(repo, tree, &format!("{files}/file_contexts{suffix}"))?
                {
                    subs.push(text);
                }
            }
            let refs: Vec<(&str, String)> = contexts
                .iter()
                .map(|(p, t)| (p.as_str(), t.clone()))
                .collect();
            return SePolicy::parse(&name, &refs, &subs).map(Some);
        }
        Ok(None)
    }
}

fn find_dir<'t>(tree: &'t MutableTree, path: &str) -> Option<&'t MutableTree> {
    let mut t = tree;
    for c in path.split('/') {
        t = t.dirs().get(c)?;
    }
    Some(t)
}

fn read_file(repo: &Repo, tree: &MutableTree, path: &str) -> Result<Option<String>> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = if dir.is_empty() {
        Some(tree)
    } else {
        find_dir(tree, dir)
    };
    let Some(checksum) = parent.and_then(|p| p.files().get(name)) else {
        return Ok(None);
    };
    let mut content = repo.open_content(checksum)?;
    if !content.meta.is_regular() {
        return Ok(None);
    }
    let mut text = String::new();
    content
        .reader
        .by_ref()
        .take(64 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| Error::from_io(format!("reading /{path} of the image"), e))?;
    Ok(Some(text))
}

/// `xattrs` with `security.selinux` set to `label` (NUL-terminated, as libselinux stores it).
fn with_label(xattrs: &Xattrs, label: &str) -> Xattrs {
    let mut v = label.as_bytes().to_vec();
    v.push(0);
    Xattrs::from_pairs(
        xattrs
            .iter()
            .filter(|(k, _)| *k != XATTR)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .chain(std::iter::once((XATTR.to_vec(), v))),
    )
}

/// What [`relabel_tree`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelabelStats {
    /// Content objects written anew with their label.
    pub files_relabeled: u64,
    /// Directories whose dirmeta changed.
    pub dirs_relabeled: u64,
}

/// Label every entry of `tree` with `policy` (module doc, step 4); new objects go into `txn`.
pub fn relabel_tree(
    txn: &mut Transaction<'_>,
    tree: &mut MutableTree,
    policy: &SePolicy,
) -> Result<RelabelStats> {
    let mut stats = RelabelStats::default();
    relabel_dir(txn, tree, "", policy, &mut stats, 0)?;
    Ok(stats)
}

fn relabel_dir(
    txn: &mut Transaction<'_>,
    tree: &mut MutableTree,
    path: &str,
    policy: &SePolicy,
    stats: &mut RelabelStats,
    depth: usize,
) -> Result<()> {
    super::object::check_tree_depth(depth, || format!("tree at /{path}"))?;
    let meta_sum = tree.meta();
    let meta = txn.read_dirmeta(&meta_sum)?;
    let abs = format!("/{path}");
    if let Some(label) = policy.label(&abs, mode::S_IFDIR) {
        let labeled = DirMeta {
            xattrs: with_label(&meta.xattrs, label),
            ..meta.clone()
        };
        if labeled != meta {
            tree.set_meta(txn.write_dirmeta(&labeled)?);
            stats.dirs_relabeled += 1;
        }
    }
    let files: Vec<(String, Checksum)> =
        tree.files().iter().map(|(n, c)| (n.clone(), *c)).collect();
    for (name, checksum) in files {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}/{name}")
        };
        let content = txn.open_content(&checksum)?;
        let Some(label) = policy.label(&format!("/{child}"), content.meta.mode) else {
            continue;
        };
        let labeled = FileMeta {
            xattrs: with_label(&content.meta.xattrs, label),
            ..content.meta.clone()
        };
        if labeled == content.meta {
            continue;
        }
        let new = txn.write_content(&labeled, content.size, content.reader)?;
        debug_assert!(txn.has_object(&new, ObjectType::File)?);
        tree.insert_file(&name, new, meta_sum)?;
        stats.files_relabeled += 1;
    }
    let dirs: Vec<String> = tree.dirs().keys().cloned().collect();
    for name in dirs {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}/{name}")
        };
        let sub = tree.ensure_dir(&name, meta_sum)?;
        relabel_dir(txn, sub, &child, policy, stats, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(fc: &str, subs: &str) -> SePolicy {
        SePolicy::parse("t", &[("fc", fc.to_string())], &[subs.to_string()]).unwrap()
    }

    #[test]
    fn last_match_wins_and_exact_paths_win_over_regexes() {
        let p = policy(
            "/.*\tsystem_u:object_r:default_t:s0\n\
             /usr/bin/hello\t--\tsystem_u:object_r:hello_t:s0\n\
             /usr(/.*)?\tsystem_u:object_r:usr_t:s0\n\
             /usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0\n\
             /usr/lib/nolabel\t<<none>>\n",
            "",
        );
        assert_eq!(
            p.label("/", mode::S_IFDIR),
            Some("system_u:object_r:default_t:s0")
        );
        assert_eq!(
            p.label("/usr", mode::S_IFDIR),
            Some("system_u:object_r:usr_t:s0")
        );
        assert_eq!(
            p.label("/usr/bin/x", mode::S_IFREG),
            Some("system_u:object_r:bin_t:s0")
        );
        // The exact path moved behind the regexes, so it wins although it came first.
        assert_eq!(
            p.label("/usr/bin/hello", mode::S_IFREG),
            Some("system_u:object_r:hello_t:s0")
        );
        // …for regular files only.
        assert_eq!(
            p.label("/usr/bin/hello", mode::S_IFLNK),
            Some("system_u:object_r:bin_t:s0")
        );
        assert_eq!(p.label("/usr/lib/nolabel", mode::S_IFREG), None);
    }

    #[test]
    fn substitutions_apply_to_whole_components() {
        let p = policy(
            "/.*\tdefault_t\n/var/lib(/.*)?\tvarlib_t\n",
            "/opt/state /var/lib\n",
        );
        assert_eq!(p.label("/opt/state/x", mode::S_IFREG), Some("varlib_t"));
        assert_eq!(p.label("/opt/statex", mode::S_IFREG), Some("default_t"));
    }

    #[test]
    fn meta_characters_as_libselinux_counts_them() {
        assert!(has_meta_chars("/usr(/.*)?"));
        assert!(!has_meta_chars("/usr/bin/hello"));
        assert!(!has_meta_chars("/usr/lib/a\\.so"));
        assert!(has_meta_chars("/usr/lib/[ab]"));
    }
}
