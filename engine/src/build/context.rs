//! COPY and ADD: the build context's files into the new layer, as buildah copies them.
//!
//! 1. [`Ignore`] reads `.containerignore` (else `.dockerignore`) at the context's top:
//!    one pattern per line, `#` comments, `!` exceptions, the last matching line deciding;
//!    `*`, `?`, `[…]` within a path component and `**` across components. An ignored path is
//!    not copied (and neither is what is under an ignored directory).
//! 2. [`sources`] expands each source of an instruction inside the context: a pattern with
//!    `*`, `?` or `[` matches the context's entries component by component; a path that
//!    leaves the context (`../x`) or matches nothing is an error naming it.
//! 3. [`copy_source`] puts one source into the tree: a directory's contents (not the directory
//!    itself) go under the destination; a file goes to the destination, or under it when the
//!    destination names a directory (it ends in `/`, several sources were given, or it is a
//!    directory in the image). Modes come from the files (or `--chmod`), owners are 0:0 (or
//!    `--chown`), mtimes from the files (or `--timestamp`). A symlink inside a copied
//!    directory is copied as a link; a symlink named as a source is followed.
//! 4. [`unpack_archive`] (ADD of a local tar, plain or compressed with gzip or zstd, found by
//!    its first bytes) puts the archive's entries under the destination with their own
//!    modes, owners and mtimes; file bodies are written to the build's scratch directory,
//!    never held in memory. Entries that would leave the destination (`..`) are refused.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::tree::{clean, BaseTree, Content, LayerTree, Node};
use crate::error::{Error, IoContext, Result};

/// `.containerignore` / `.dockerignore` rules.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    /// The rules of `context`'s ignore file (none when it has none), or of `file` if given.
    pub fn load(context: &Path, file: Option<&Path>) -> Result<Ignore> {
        let path = match file {
            Some(f) => Some(f.to_path_buf()),
            None => [".containerignore", ".dockerignore"]
                .iter()
                .map(|n| context.join(n))
                .find(|p| p.is_file()),
        };
        let Some(path) = path else {
            return Ok(Ignore::default());
        };
        let text = std::fs::read_to_string(&path).at("reading", &path)?;
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (negate, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let comps: Vec<String> = clean(Path::new(pat))
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if !comps.is_empty() {
                rules.push((negate, comps));
            }
        }
        Ok(Ignore { rules })
    }

    /// Whether `rel` (relative to the context) is ignored: itself or a parent directory.
    pub fn ignored(&self, rel: &Path) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let comps: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (1..=comps.len()).any(|n| self.decide(&comps[..n]))
    }

    fn decide(&self, comps: &[String]) -> bool {
        let mut ignored = false;
        for (negate, pat) in &self.rules {
            if match_path(pat, comps) {
                ignored = !negate;
            }
        }
        ignored
    }
}

/// Whether `pat` (components, `**` for any number of them) matches all of `path`.
fn match_path(pat: &[String], path: &[String]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|k| match_path(&pat[1..], &path[k..])),
        Some(p) => {
            !path.is_empty() && match_component(p, &path[0]) && match_path(&pat[1..], &path[1..])
        }
    }
}

/// Shell pattern matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\x`.
pub fn match_component(pat: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|e| e + 1) else {
                    return !n.is_empty() && n[0] == '[' && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let mut set = &p[1..end];
                let negate = matches!(set.first(), Some('!') | Some('^'));
                if negate {
                    set = &set[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => !n.is_empty() && n[0] == p[1] && go(&p[2..], &n[1..]),
            Some(&c) => !n.is_empty() && n[0] == c && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The context paths source `src` names (step 2): `(relative path, host path)` pairs.
pub fn sources(
    context: &Path,
    src: &str,
    ignore: &Ignore,
) -> std::result::Result<Vec<(PathBuf, PathBuf)>, String> {
    let raw = Path::new(src);
    let mut depth: i32 = 0;
    for c in raw.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!(
                "{src:?} is outside the build context {}; sources must be inside it",
                context.display()
            ));
        }
    }
    let rel = clean(raw);
    if !has_magic(src) {
        let host = context.join(&rel);
        if std::fs::symlink_metadata(&host).is_err() {
            return Err(format!(
                "{src:?} does not exist in the build context {}",
                context.display()
            ));
        }
        return Ok(vec![(rel, host)]);
    }
    let mut found = vec![PathBuf::new()];
    for comp in rel.components() {
        let c = comp.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for dir in &found {
            if has_magic(&c) {
                let Ok(rd) = std::fs::read_dir(context.join(dir)) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| match_component(&c, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            } else if std::fs::symlink_metadata(context.join(dir).join(&c)).is_ok() {
                next.push(dir.join(&c));
            }
        }
        found = next;
    }
    let found: Vec<(PathBuf, PathBuf)> = found
        .into_iter()
        .filter(|r| !ignore.ignored(r))
        .map(|r| {
            let h = context.join(&r);
            (r, h)
        })
        .collect();
    if found.is_empty() {
        return Err(format!(
            "no file of the build context {} matches {src:?}",
            context.display()
        ));
    }
    Ok(found)
}

/// How entries copied by one instruction get their metadata.
#[derive(Debug, Clone)]
pub struct CopyMeta {
    /// `--chown`: the owner of everything copied (and of the directories created for it).
    pub chown: Option<(u32, u32)>,
    /// `--chmod`: the mode of everything copied.
    pub chmod: Option<u32>,
    /// `--timestamp`: every mtime.
    pub timestamp: Option<i64>,
    /// The build's time, for directories it creates.
    pub now: i64,
}

impl CopyMeta {
    fn owner(&self) -> (u32, u32) {
        self.chown.unwrap_or((0, 0))
    }

    fn node(&self, content: Content, m: &std::fs::Metadata) -> Node {
        let (uid, gid) = self.chown.unwrap_or((0, 0));
        Node {
            content,
            mode: self.chmod.unwrap_or(m.mode() & 0o7777),
            uid,
            gid,
            mtime: self.timestamp.unwrap_or(m.mtime()),
        }
    }

    fn created_mtime(&self) -> i64 {
        self.timestamp.unwrap_or(self.now)
    }
}

/// Step 3: source `host` (context path `rel`) into the tree at `dest` (resolved, relative to
/// `/`); `into_dir`: the destination names a directory.
#[allow(clippy::too_many_arguments)]
pub fn copy_source(
    tree: &mut LayerTree,
    base: &BaseTree,
    rel: &Path,
    host: &Path,
    dest: &Path,
    into_dir: bool,
    meta: &CopyMeta,
    ignore: &Ignore,
) -> Result<()> {
    let m = std::fs::metadata(host).at("reading", host)?;
    if m.is_dir() {
        let dest = tree.resolve(base, dest, true);
        if !dest.as_os_str().is_empty() && !tree.is_dir(base, &dest) {
            let dir = meta.node(Content::Dir, &m);
            let dir = Node {
                mode: if meta.chmod.is_some() {
                    dir.mode
                } else {
                    m.mode() & 0o7777
                },
                ..dir
            };
            tree.insert(base, dest.clone(), dir, meta.owner(), meta.created_mtime());
        }
        copy_dir(tree, base, rel, host, &dest, meta, ignore)
    } else {
        let target = if into_dir {
            let d = tree.resolve(base, dest, true);
            d.join(
                rel.file_name()
                    .unwrap_or(host.file_name().unwrap_or_default()),
            )
        } else {
            tree.resolve(base, dest, false)
        };
        let target = if tree.is_dir(base, &target) {
            target.join(host.file_name().unwrap_or_default())
        } else {
            target
        };
        if target.as_os_str().is_empty() {
            return Err(Error::InvalidArgument {
                what: format!("COPY {}", rel.display()),
                reason: "a file cannot replace the root directory".into(),
            });
        }
        let node = meta.node(Content::File(host.to_path_buf(), m.len()), &m);
        tree.insert(base, target, node, meta.owner(), meta.created_mtime());
        Ok(())
    }
}

fn copy_dir(
    tree: &mut LayerTree,
    base: &BaseTree,
    rel: &Path,
    host: &Path,
    dest: &Path,
    meta: &CopyMeta,
    ignore: &Ignore,
) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(host)
        .at("reading directory", host)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .at("reading directory", host)?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        if ignore.ignored(&r) {
            continue;
        }
        let h = host.join(&name);
        let d = dest.join(&name);
        let m = std::fs::symlink_metadata(&h).at("reading", &h)?;
        let ft = m.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&h).at("reading link", &h)?;
            let node = meta.node(Content::Symlink(target), &m);
            let node = Node {
                mode: 0o777,
                ..node
            };
            tree.insert(base, d, node, meta.owner(), meta.created_mtime());
        } else if ft.is_dir() {
            let node = meta.node(Content::Dir, &m);
            tree.insert(base, d.clone(), node, meta.owner(), meta.created_mtime());
            copy_dir(tree, base, &r, &h, &d, meta, ignore)?;
        } else if ft.is_file() {
            let node = meta.node(Content::File(h.clone(), m.len()), &m);
            tree.insert(base, d, node, meta.owner(), meta.created_mtime());
        } else {
            return Err(Error::InvalidArgument {
                what: format!("COPY {}", r.display()),
                reason: "sockets, fifos and device files cannot be copied from the build context; remove it or list it in .containerignore".into(),
            });
        }
    }
    Ok(())
}

/// The compression of a local archive ADD unpacks, from its first bytes; `None` if the file
/// is not a tar archive (then ADD copies it as a file, as buildah does).
pub fn archive_kind(host: &Path) -> Result<Option<crate::compression::Compression>> {
    use crate::compression::Compression;
    let mut f = std::fs::File::open(host).at("opening", host)?;
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).at("reading", host)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Compression::Uncompressed)
    } else {
        None
    })
}

/// Step 4: the archive at `host` unpacked under `dest` (resolved); bodies go to `scratch`.
pub fn unpack_archive(
    tree: &mut LayerTree,
    base: &BaseTree,
    host: &Path,
    dest: &Path,
    meta: &CopyMeta,
    scratch: &Path,
) -> Result<()> {
    let what = host.display().to_string();
    let f = std::fs::File::open(host).at("opening", host)?;
    let (_, decoded) = crate::compression::decoder(std::io::BufReader::new(f), &what)?;
    let mut ar = tar::Archive::new(decoded);
    let dest = tree.resolve(base, dest, true);
    let mut hardlinks: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    for entry in ar.entries().ctx(|| format!("reading the archive {what}"))? {
        let mut e = entry.ctx(|| format!("reading the archive {what}"))?;
        let raw = e.path_bytes().into_owned();
        let name = crate::layer_tar::normalize_path(&raw).map_err(|_| Error::BadTarEntry {
            layer: what.clone(),
            entry: String::from_utf8_lossy(&raw).into_owned(),
            reason: "the path leaves the archive's root".into(),
        })?;
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = meta
            .chown
            .unwrap_or((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32));
        let mtime = meta.timestamp.unwrap_or(h.mtime().unwrap_or(0) as i64);
        let kind = h.entry_type();
        let target = dest.join(&name);
        if name.as_os_str().is_empty() {
            continue; // "./" itself: the destination directory
        }
        let content = match kind {
            tar::EntryType::Directory => Content::Dir,
            tar::EntryType::Symlink => Content::Symlink(
                e.link_name()
                    .ctx(|| format!("reading the archive {what}"))?
                    .unwrap_or_default()
                    .into_owned(),
            ),
            tar::EntryType::Link => {
                let to = e
                    .link_name()
                    .ctx(|| format!("reading the archive {what}"))?
                    .unwrap_or_default();
                let to = crate::layer_tar::normalize_path(to.as_os_str().as_encoded_bytes())?;
                let body = hardlinks.get(&to).cloned().ok_or_else(|| Error::BadTarEntry {
                    layer: what.clone(),
                    entry: name.display().to_string(),
                    reason: format!("hard link to {} which is not earlier in the archive", to.display()),
                })?;
                let size = std::fs::metadata(&body).at("reading", &body)?.len();
                Content::File(body, size)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let body = scratch.join(format!("add-{}", tree.entries.len() + hardlinks.len()));
                let mut out = std::fs::File::create(&body).at("creating", &body)?;
                let size = std::io::copy(&mut e, &mut out).ctx(|| format!("unpacking {} from {what}", name.display()))?;
                hardlinks.insert(name.clone(), body.clone());
                Content::File(body, size)
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            other => {
                return Err(Error::BadTarEntry {
                    layer: what.clone(),
                    entry: name.display().to_string(),
                    reason: format!("entries of type {other:?} (devices, fifos) cannot be added by a build without a container runtime"),
                })
            }
        };
        let mode = if matches!(content, Content::Symlink(_)) {
            0o777
        } else {
            meta.chmod.unwrap_or(mode)
        };
        tree.insert(
            base,
            target,
            Node {
                content,
                mode,
                uid,
                gid,
                mtime,
            },
            meta.chown.unwrap_or((0, 0)),
            meta.timestamp.unwrap_or(meta.now),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(match_component("*.txt", "a.txt"));
        assert!(!match_component("*.txt", "a.tx"));
        assert!(match_component("f[0-9]?", "f1x"));
        assert!(match_component("[!a]b", "cb"));
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(match_path(&s(&["**", "*.o"]), &s(&["a", "b", "c.o"])));
        assert!(match_path(&s(&["**", "*.o"]), &s(&["c.o"])));
        assert!(!match_path(&s(&["a", "*.o"]), &s(&["a", "b", "c.o"])));
    }

    #[test]
    fn ignore_file_with_exceptions() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join(".containerignore"),
            "# c\n*.log\n!keep.log\nbuild\n",
        )
        .unwrap();
        let ig = Ignore::load(tmp.path(), None).unwrap();
        assert!(ig.ignored(Path::new("a.log")));
        assert!(!ig.ignored(Path::new("keep.log")));
        assert!(ig.ignored(Path::new("build/x/y")));
        assert!(
            !ig.ignored(Path::new("src/a.log")),
            "patterns are anchored at the top"
        );
    }

    #[test]
    fn sources_stay_in_the_context() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a1"), "").unwrap();
        std::fs::write(tmp.path().join("a2"), "").unwrap();
        std::fs::write(tmp.path().join("b"), "").unwrap();
        let ig = Ignore::default();
        let got: Vec<PathBuf> = sources(tmp.path(), "a*", &ig)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(got, [PathBuf::from("a1"), PathBuf::from("a2")]);
        assert!(sources(tmp.path(), "../x", &ig)
            .unwrap_err()
            .contains("outside the build context"));
        assert!(sources(tmp.path(), "nope", &ig)
            .unwrap_err()
            .contains("does not exist"));
        assert!(sources(tmp.path(), "z*", &ig)
            .unwrap_err()
            .contains("matches"));
    }
}
