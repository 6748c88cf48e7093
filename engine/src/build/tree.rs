//! The file tree of a build: what the base image has, what the new layer adds, and the layer
//! tar written from it.
//!
//! 1. [`BaseTree`] looks paths up in the base image's merged root the way overlay shows it:
//!    the layers' `diff/` directories top first, a whiteout (a 0:0 character device, or a
//!    `.wh.NAME` file) hiding what lies below.
//! 2. [`LayerTree`] holds the new layer's entries by path. [`LayerTree::resolve`] follows
//!    symlinks of the image (the new entries first, then the base) so that `COPY x /bin/x`
//!    in an image whose `/bin` links to `usr/bin` writes `usr/bin/x`, as buildah does inside
//!    the container's root; [`LayerTree::insert`] adds the parent directories an entry needs
//!    (with the base's metadata when the base has them, else 0755 and the instruction's
//!    owner).
//! 3. [`LayerTree::write_tar`] writes the entries in path order (parents first, siblings by
//!    name) with numeric owners, no user or group names, the entries' modes and mtimes; file
//!    bodies are streamed from their files and checked against the size they had when the
//!    instruction ran.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// What an entry of the new layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A directory.
    Dir,
    /// A regular file whose body is the host file at this path, of this size.
    File(PathBuf, u64),
    /// A symbolic link to this target.
    Symlink(PathBuf),
}

/// One entry of the new layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What it is.
    pub content: Content,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// The base image's root, for lookups (bottom layer last in `dirs`).
#[derive(Debug, Clone, Default)]
pub struct BaseTree {
    /// The layers' `diff/` directories, top first.
    pub dirs: Vec<PathBuf>,
}

impl BaseTree {
    /// The metadata of `rel` (no leading `/`, symlinks not followed) in the merged root, and
    /// the host path holding it.
    pub fn lookup(&self, rel: &Path) -> Option<(Metadata, PathBuf)> {
        if rel.as_os_str().is_empty() {
            return None;
        }
        let name = rel.file_name()?.to_string_lossy().into_owned();
        for dir in &self.dirs {
            let p = dir.join(rel);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    return None;
                }
                return Some((m, p));
            }
            let wh = dir
                .join(rel.parent().unwrap_or(Path::new("")))
                .join(format!(".wh.{name}"));
            if std::fs::symlink_metadata(wh).is_ok() {
                return None;
            }
        }
        None
    }
}

/// The entries of the new layer, by path relative to the root.
#[derive(Debug, Default)]
pub struct LayerTree {
    /// The entries.
    pub entries: BTreeMap<PathBuf, Node>,
}

/// `path` (absolute or relative to `/`) as clean components: `.` dropped, `..` applied (never
/// above the root).
pub fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

impl LayerTree {
    /// Whether `rel` is a directory in the image being built (new entries, then the base),
    /// following symlinks.
    pub fn is_dir(&self, base: &BaseTree, rel: &Path) -> bool {
        let r = self.resolve(base, rel, true);
        match self.entries.get(&r) {
            Some(n) => n.content == Content::Dir,
            None => r.as_os_str().is_empty() || base.lookup(&r).is_some_and(|(m, _)| m.is_dir()),
        }
    }

    /// Whether `rel` exists in the image being built.
    pub fn exists(&self, base: &BaseTree, rel: &Path) -> bool {
        let r = self.resolve(base, rel, true);
        self.entries.contains_key(&r) || base.lookup(&r).is_some()
    }

    fn link_at(&self, base: &BaseTree, p: &Path) -> Option<PathBuf> {
        match self.entries.get(p) {
            Some(Node {
                content: Content::Symlink(t),
                ..
            }) => Some(t.clone()),
            Some(_) => None,
            None => {
                let (m, host) = base.lookup(p)?;
                if m.file_type().is_symlink() {
                    std::fs::read_link(host).ok()
                } else {
                    None
                }
            }
        }
    }

    /// `rel` with the image's symlinks followed in its parent components (and in the last one
    /// too when `follow_last`), confined to the root.
    pub fn resolve(&self, base: &BaseTree, rel: &Path, follow_last: bool) -> PathBuf {
        use std::ffi::OsString;
        let mut todo: Vec<OsString> = clean(rel)
            .components()
            .rev()
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let mut out = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            let candidate = out.join(&c);
            if (!todo.is_empty() || follow_last) && hops < 40 {
                if let Some(target) = self.link_at(base, &candidate) {
                    hops += 1;
                    if target.is_absolute() {
                        out = PathBuf::new();
                    }
                    for tc in target.components().rev() {
                        match tc {
                            Component::Normal(n) => todo.push(n.to_owned()),
                            Component::ParentDir => todo.push("..".into()),
                            _ => {}
                        }
                    }
                    continue;
                }
            }
            out = candidate;
        }
        out
    }

    /// Add `node` at `rel` (already resolved), with its missing parent directories: the
    /// base's metadata where the base has them (a copied-up directory), else `mode` 0755
    /// owned by `owner`, modified at `mtime`.
    pub fn insert(
        &mut self,
        base: &BaseTree,
        rel: PathBuf,
        node: Node,
        owner: (u32, u32),
        mtime: i64,
    ) {
        let mut parent = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            parent.push(c);
            if let Some(n) = self.entries.get(&parent) {
                if n.content == Content::Dir {
                    continue;
                }
            }
            let dir = match base.lookup(&parent) {
                Some((m, _)) if m.is_dir() => Node {
                    content: Content::Dir,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    mtime,
                },
                _ => Node {
                    content: Content::Dir,
                    mode: 0o755,
                    uid: owner.0,
                    gid: owner.1,
                    mtime,
                },
            };
            self.entries.insert(parent.clone(), dir);
        }
        if node.content != Content::Dir {
            // A file replacing a directory of this layer drops what was under it.
            let below: Vec<PathBuf> = self
                .entries
                .range(rel.clone()..)
                .map(|(k, _)| k.clone())
                .take_while(|k| k.starts_with(&rel))
                .filter(|k| k != &rel)
                .collect();
            for k in below {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(rel, node);
    }

    /// Write the layer tar to `out` (step 3 of the module doc).
    pub fn write_tar<W: Write>(&self, out: W) -> Result<W> {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        b.follow_symlinks(false);
        for (path, node) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(node.mode);
            h.set_uid(node.uid as u64);
            h.set_gid(node.gid as u64);
            h.set_mtime(node.mtime.max(0) as u64);
            let what = || format!("writing {} into the new layer", path.display());
            match &node.content {
                Content::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    let mut name = path.as_os_str().to_owned();
                    name.push("/");
                    b.append_data(&mut h, Path::new(&name), std::io::empty())
                        .ctx(what)?;
                }
                Content::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, target).ctx(what)?;
                }
                Content::File(src, size) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(*size);
                    let f = std::fs::File::open(src).at("opening", src)?;
                    let mut body = SizeChecked {
                        inner: f.take(*size),
                        left: *size,
                        path: src.clone(),
                    };
                    b.append_data(&mut h, path, &mut body).ctx(what)?;
                    if body.left != 0 {
                        return Err(Error::Conflict {
                            what: format!("{}", src.display()),
                            reason: "the file shrank while the build read it; run the build again when it no longer changes".into(),
                        });
                    }
                }
            }
        }
        b.into_inner().ctx(|| "finishing the new layer".to_string())
    }
}

/// A file body that must have the size the build recorded.
struct SizeChecked<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for SizeChecked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left -= n as u64;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::other(format!(
                "{} shrank while the build read it ({} bytes short)",
                self.path.display(),
                self.left
            )));
        }
        Ok(n)
    }
}

/// Numeric owner of `spec` (`USER`, `--chown`): `uid[:gid]` or names looked up in the image's
/// `/etc/passwd` and `/etc/group` (new entries first, then the base). A user without a group
/// gets the primary group of its passwd entry, else the group of the same number.
pub fn resolve_owner(
    spec: &str,
    tree: &LayerTree,
    base: &BaseTree,
) -> std::result::Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |path: &str| -> Option<String> {
        let rel = tree.resolve(base, Path::new(path), true);
        let host = match tree.entries.get(&rel) {
            Some(Node {
                content: Content::File(p, _),
                ..
            }) => p.clone(),
            Some(_) => return None,
            None => base.lookup(&rel)?.1,
        };
        std::fs::read_to_string(host).ok()
    };
    let passwd = read("etc/passwd");
    let find = |file: &Option<String>, key: &str, by_id: bool| -> Option<Vec<String>> {
        file.as_deref()?.lines().find_map(|l| {
            let f: Vec<String> = l.split(':').map(str::to_string).collect();
            let hit = if by_id {
                f.get(2).map(String::as_str) == Some(key)
            } else {
                f.first().map(String::as_str) == Some(key)
            };
            (hit && f.len() >= 4).then_some(f)
        })
    };
    let uid: u32 = match user.parse() {
        Ok(n) => n,
        Err(_) => find(&passwd, user, false)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                format!("user {user:?} is not in the image's /etc/passwd; use a numeric UID")
            })?,
    };
    let gid = match group {
        None => find(&passwd, &uid.to_string(), true)
            .and_then(|f| f[3].parse().ok())
            .unwrap_or(uid),
        Some(g) => match g.parse() {
            Ok(n) => n,
            Err(_) => {
                let groups = read("etc/group");
                find(&groups, g, false)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        format!("group {g:?} is not in the image's /etc/group; use a numeric GID")
                    })?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(content: Content) -> Node {
        Node {
            content,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    #[test]
    fn resolves_symlinks_of_the_image_and_adds_parents() {
        let mut t = LayerTree::default();
        let base = BaseTree::default();
        t.insert(&base, "usr/bin".into(), node(Content::Dir), (0, 0), 0);
        t.insert(
            &base,
            "bin".into(),
            node(Content::Symlink("usr/bin".into())),
            (0, 0),
            0,
        );
        assert_eq!(
            t.resolve(&base, Path::new("/bin/sh"), false),
            PathBuf::from("usr/bin/sh")
        );
        assert_eq!(
            t.resolve(&base, Path::new("bin"), false),
            PathBuf::from("bin")
        );
        assert_eq!(
            t.resolve(&base, Path::new("bin/../../x"), false),
            PathBuf::from("x")
        );
        t.insert(
            &base,
            "a/b/c".into(),
            node(Content::File("/dev/null".into(), 0)),
            (5, 6),
            9,
        );
        let a = &t.entries[Path::new("a")];
        assert_eq!((a.mode, a.uid, a.gid, a.mtime), (0o755, 5, 6, 9));
        let tar = t.write_tar(Vec::new()).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a/", "a/b/", "a/b/c", "bin", "usr/", "usr/bin/"]);
    }

    #[test]
    fn owners_by_number_and_name() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nu:x:1000:100::/home/u:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nwheel:x:10:\n").unwrap();
        let base = BaseTree {
            dirs: vec![tmp.path().to_path_buf()],
        };
        let t = LayerTree::default();
        assert_eq!(resolve_owner("7", &t, &base), Ok((7, 7)));
        assert_eq!(resolve_owner("u", &t, &base), Ok((1000, 100)));
        assert_eq!(resolve_owner("1000", &t, &base), Ok((1000, 100)));
        assert_eq!(resolve_owner("u:wheel", &t, &base), Ok((1000, 10)));
        assert!(resolve_owner("nobody", &t, &base)
            .unwrap_err()
            .contains("/etc/passwd"));
    }
}
