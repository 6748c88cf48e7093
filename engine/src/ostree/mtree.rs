//! Building trees and commits.
//!
//! 1. A [`MutableTree`] is an in-memory directory: its dirmeta checksum, files (name →
//!    content checksum) and subdirectories, kept sorted by name (byte order, as ostree sorts).
//! 2. It is filled either from a directory on disk ([`Transaction::write_dir_to_mtree`], what
//!    `ostree commit --tree=dir=` does) or one entry at a time ([`Transaction::add_file`],
//!    [`Transaction::add_symlink`], [`Transaction::add_dir`]), with file data streamed from a
//!    reader — the shape a layer-tar importer needs. Missing parents are created with the
//!    tree's default dirmeta.
//! 3. [`Transaction::write_mtree`] writes the dirtree/dirmeta objects bottom-up and returns
//!    the root's checksums; [`Transaction::write_commit`] writes the commit over them.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use cap_std::fs::{Dir, MetadataExt as _};

use super::fsutil;
use super::gvariant::Value;
use super::object::{validate_name, Checksum, Commit, DirMeta, DirTree, FileMeta, Xattrs};
use super::repo::dirmeta_from;
use super::txn::Transaction;
use crate::error::{Error, Result};

/// An in-memory directory of a tree being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutableTree {
    meta: Checksum,
    files: BTreeMap<String, Checksum>,
    dirs: BTreeMap<String, MutableTree>,
}

/// Split a relative path into validated components (`.` and empty ones dropped; `..` refused).
pub fn path_components(path: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            return Err(Error::Malformed {
                what: format!("tree path {path:?}"),
                reason: "contains '..'; paths must stay inside the tree".into(),
            });
        }
        // Split on '/' and past the checks above, a component can only still be invalid by
        // holding a NUL; the message is built only then (this runs for every layer entry).
        if c.contains('\0') {
            validate_name(c, &format!("tree path {path:?}"))?;
        }
        out.push(c);
    }
    Ok(out)
}

impl MutableTree {
    /// An empty directory with dirmeta `meta`.
    pub fn new(meta: Checksum) -> MutableTree {
        MutableTree {
            meta,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
        }
    }

    /// This directory's dirmeta checksum.
    pub fn meta(&self) -> Checksum {
        self.meta
    }

    /// Replace this directory's dirmeta.
    pub fn set_meta(&mut self, meta: Checksum) {
        self.meta = meta;
    }

    /// Files and symlinks, sorted by name.
    pub fn files(&self) -> &BTreeMap<String, Checksum> {
        &self.files
    }

    /// Subdirectories, sorted by name.
    pub fn dirs(&self) -> &BTreeMap<String, MutableTree> {
        &self.dirs
    }

    /// The directory at `path` (creating it and missing parents with dirmeta `parent_meta`;
    /// a file in the way is replaced).
    pub fn ensure_dir(&mut self, path: &str, parent_meta: Checksum) -> Result<&mut MutableTree> {
        Ok(self.ensure_components(&path_components(path)?, parent_meta))
    }

    /// [`ensure_dir`](Self::ensure_dir) of already validated components.
    fn ensure_components(&mut self, comps: &[&str], parent_meta: Checksum) -> &mut MutableTree {
        let mut cur = self;
        for c in comps {
            cur = cur.subdir(c, parent_meta);
        }
        cur
    }

    /// The subdirectory `name` (a valid file name), created with dirmeta `meta` if missing; a
    /// file of that name is replaced. Allocates the name only when it creates the directory.
    pub fn subdir(&mut self, name: &str, meta: Checksum) -> &mut MutableTree {
        self.files.remove(name);
        if !self.dirs.contains_key(name) {
            self.dirs.insert(name.to_string(), MutableTree::new(meta));
        }
        self.dirs.get_mut(name).expect("just ensured")
    }

    /// Put the file `name` (a valid file name) in this directory, replacing whatever was there.
    pub fn put_file(&mut self, name: &str, checksum: Checksum) {
        self.dirs.remove(name);
        match self.files.get_mut(name) {
            Some(c) => *c = checksum,
            None => {
                self.files.insert(name.to_string(), checksum);
            }
        }
    }

    /// Remove the file or directory `name` of this directory; whether something was there.
    pub fn remove_entry(&mut self, name: &str) -> bool {
        self.files.remove(name).is_some() | self.dirs.remove(name).is_some()
    }

    /// Remove everything in this directory (an opaque whiteout).
    pub fn clear(&mut self) {
        self.files.clear();
        self.dirs.clear();
    }

    /// Put a file at `path` (parents created with `parent_meta`; whatever was there is
    /// replaced).
    pub fn insert_file(
        &mut self,
        path: &str,
        checksum: Checksum,
        parent_meta: Checksum,
    ) -> Result<()> {
        let comps = path_components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(Error::Malformed {
                what: format!("tree path {path:?}"),
                reason: "names no file".into(),
            });
        };
        self.ensure_components(parents, parent_meta)
            .put_file(name, checksum);
        Ok(())
    }

    /// Remove the file or directory at `path`; whether something was there.
    pub fn remove(&mut self, path: &str) -> Result<bool> {
        let comps = path_components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(false);
        };
        let mut cur = self;
        for p in parents {
            match cur.dirs.get_mut(*p) {
                Some(d) => cur = d,
                None => return Ok(false),
            }
        }
        Ok(cur.remove_entry(name))
    }
}

/// What to record when committing a directory from disk (the `ostree commit` options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitFilter {
    /// Record this owner instead of the files' (`--owner-uid`).
    pub owner_uid: Option<u32>,
    /// Record this group instead of the files' (`--owner-gid`).
    pub owner_gid: Option<u32>,
    /// Leave xattrs out (`--no-xattrs`).
    pub no_xattrs: bool,
}

/// The fields of a commit besides its root (see [`Commit`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitSpec {
    /// Parent commit.
    pub parent: Option<Checksum>,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Seconds since the epoch.
    pub timestamp: u64,
    /// `a{sv}` metadata, in the order to store it.
    pub metadata: Vec<(String, Value)>,
}

impl Transaction<'_> {
    /// Write a file's content from a stream and put it at `path` in `tree`.
    pub fn add_file(
        &mut self,
        tree: &mut MutableTree,
        path: &str,
        meta: &FileMeta,
        size: u64,
        data: impl Read,
    ) -> Result<Checksum> {
        self.add_file_sharing(tree, path, meta, size, data, None)
    }

    /// [`add_file`](Self::add_file), placing the object by reflink or hard link from
    /// `origin` (a file holding the same bytes, [`crate::fs_clone`]) where it can
    /// ([`Transaction::write_content_sharing`]).
    pub fn add_file_sharing(
        &mut self,
        tree: &mut MutableTree,
        path: &str,
        meta: &FileMeta,
        size: u64,
        data: impl Read,
        origin: Option<(&crate::fs_clone::FileSharing<'_>, std::fs::File)>,
    ) -> Result<Checksum> {
        path_components(path)?;
        let c = self.write_content_sharing(meta, size, data, origin)?;
        let parent = self.default_dirmeta()?;
        tree.insert_file(path, c, parent)?;
        Ok(c)
    }

    /// Write a symlink and put it at `path` in `tree`.
    pub fn add_symlink(
        &mut self,
        tree: &mut MutableTree,
        path: &str,
        meta: &FileMeta,
    ) -> Result<Checksum> {
        self.add_file(tree, path, meta, 0, std::io::empty())
    }

    /// Create (or update the metadata of) the directory at `path` in `tree`; `""` is the root.
    pub fn add_dir(
        &mut self,
        tree: &mut MutableTree,
        path: &str,
        meta: &DirMeta,
    ) -> Result<Checksum> {
        let c = self.write_dirmeta(meta)?;
        let parent = self.default_dirmeta()?;
        tree.ensure_dir(path, parent)?.set_meta(c);
        Ok(c)
    }

    /// Write `tree`'s dirtree objects bottom-up; returns (root dirtree, root dirmeta).
    pub fn write_mtree(&mut self, tree: &MutableTree) -> Result<(Checksum, Checksum)> {
        let mut dt = DirTree {
            files: tree.files.iter().map(|(n, c)| (n.clone(), *c)).collect(),
            dirs: Vec::new(),
        };
        for (name, sub) in &tree.dirs {
            let (t, m) = self.write_mtree(sub)?;
            dt.dirs.push((name.clone(), t, m));
        }
        Ok((self.write_dirtree(&dt)?, tree.meta))
    }

    /// Write a commit of `tree`; returns its checksum.
    pub fn write_commit(&mut self, tree: &MutableTree, spec: &CommitSpec) -> Result<Checksum> {
        let (root_tree, root_meta) = self.write_mtree(tree)?;
        if let Some(p) = spec.parent {
            if !self.has_object(&p, super::object::ObjectType::Commit)? {
                return Err(Error::NotFound {
                    what: format!("parent commit {p} in {}", self.repo().path().display()),
                    hint: "import the parent first, or commit without a parent".into(),
                });
            }
        }
        self.write_commit_object(&Commit {
            metadata: spec.metadata.clone(),
            parent: spec.parent,
            related: Vec::new(),
            subject: spec.subject.clone(),
            body: spec.body.clone(),
            timestamp: spec.timestamp,
            root_tree,
            root_meta,
        })
    }

    /// Fill a tree from the directory `path` on disk, as `ostree commit --tree=dir=` does: the
    /// root's own owner/mode/xattrs become the tree's dirmeta; regular files, symlinks and
    /// directories are taken; anything else is an error naming it.
    pub fn write_dir_to_mtree(
        &mut self,
        path: &Path,
        filter: &CommitFilter,
    ) -> Result<MutableTree> {
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())
            .map_err(|e| Error::io_path("opening", path, e))?;
        let meta = self.dirmeta_of(&dir, path, filter)?;
        let c = self.write_dirmeta(&meta)?;
        let mut tree = MutableTree::new(c);
        self.fill_from_dir(&dir, path, &mut tree, filter)?;
        Ok(tree)
    }

    fn dirmeta_of(&mut self, dir: &Dir, path: &Path, filter: &CommitFilter) -> Result<DirMeta> {
        let st = dir
            .dir_metadata()
            .map_err(|e| Error::io_path("stat", path, e))?;
        let xattrs = if filter.no_xattrs {
            Xattrs::new()
        } else {
            fsutil::read_xattrs_fd(fsutil::dir_fd(dir, path)?.as_fd(), path)?
        };
        Ok(dirmeta_from(
            filter.owner_uid.unwrap_or(st.uid()),
            filter.owner_gid.unwrap_or(st.gid()),
            st.mode(),
            xattrs,
        ))
    }

    fn fill_from_dir(
        &mut self,
        dir: &Dir,
        path: &Path,
        tree: &mut MutableTree,
        filter: &CommitFilter,
    ) -> Result<()> {
        for entry in dir
            .entries()
            .map_err(|e| Error::io_path("listing", path, e))?
        {
            let entry = entry.map_err(|e| Error::io_path("listing", path, e))?;
            let os_name = entry.file_name();
            let child = path.join(&os_name);
            let name = os_name.into_string().map_err(|_| Error::Unsupported {
                transport: "ostree".into(),
                reason: format!(
                    "{}: file name is not UTF-8; ostree stores only UTF-8 names",
                    child.display()
                ),
            })?;
            validate_name(&name, &child.display().to_string())?;
            let st = entry
                .metadata()
                .map_err(|e| Error::io_path("stat", &child, e))?;
            let uid = filter.owner_uid.unwrap_or(st.uid());
            let gid = filter.owner_gid.unwrap_or(st.gid());
            let ft = st.file_type();
            if ft.is_dir() {
                let sub = dir
                    .open_dir(&name)
                    .map_err(|e| Error::io_path("opening", &child, e))?;
                let meta = self.dirmeta_of(&sub, &child, filter)?;
                let c = self.write_dirmeta(&meta)?;
                let mut subtree = MutableTree::new(c);
                self.fill_from_dir(&sub, &child, &mut subtree, filter)?;
                tree.files.remove(&name);
                tree.dirs.insert(name, subtree);
            } else if ft.is_symlink() {
                let target = dir
                    .read_link_contents(&name)
                    .map_err(|e| Error::io_path("readlink", &child, e))?;
                let target =
                    target
                        .into_os_string()
                        .into_string()
                        .map_err(|_| Error::Unsupported {
                            transport: "ostree".into(),
                            reason: format!(
                                "{}: symlink target is not UTF-8; ostree stores only UTF-8 targets",
                                child.display()
                            ),
                        })?;
                let xattrs = if filter.no_xattrs {
                    Xattrs::new()
                } else {
                    fsutil::read_xattrs_path(&child)?
                };
                let c = self.write_content(
                    &FileMeta::symlink(uid, gid, target, xattrs),
                    0,
                    std::io::empty(),
                )?;
                tree.dirs.remove(&name);
                tree.files.insert(name, c);
            } else if ft.is_file() {
                let file = dir
                    .open(&name)
                    .map_err(|e| Error::io_path("opening", &child, e))?
                    .into_std();
                let xattrs = if filter.no_xattrs {
                    Xattrs::new()
                } else {
                    fsutil::read_xattrs_fd(file.as_fd(), &child)?
                };
                let meta = FileMeta::regular(uid, gid, st.mode(), xattrs);
                let c = self.write_content(&meta, st.len(), file)?;
                tree.dirs.remove(&name);
                tree.files.insert(name, c);
            } else {
                return Err(Error::Unsupported {
                    transport: "ostree".into(),
                    reason: format!(
                        "{}: not a regular file, symlink or directory; ostree cannot commit devices, fifos or sockets",
                        child.display()
                    ),
                });
            }
        }
        Ok(())
    }
}

impl super::repo::Repo {
    /// Load a committed tree back into a [`MutableTree`] (for layering changes on top of an
    /// existing commit without checking it out).
    pub fn read_mtree(&self, root_tree: &Checksum, root_meta: &Checksum) -> Result<MutableTree> {
        self.read_mtree_at(root_tree, root_meta, 0)
    }

    fn read_mtree_at(&self, tree: &Checksum, meta: &Checksum, depth: usize) -> Result<MutableTree> {
        super::object::check_tree_depth(depth, || {
            format!("dirtree {tree} in {}", self.path().display())
        })?;
        let dt = self.read_dirtree(tree)?;
        let mut out = MutableTree::new(*meta);
        out.files = dt.files.into_iter().collect();
        for (name, t, m) in dt.dirs {
            let sub = self.read_mtree_at(&t, &m, depth + 1)?;
            out.dirs.insert(name, sub);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::checkout::CheckoutMode;
    use super::super::config::RepoMode;
    use super::super::object::ObjectType;
    use super::super::repo::Repo;
    use super::*;

    fn file(perms: u32) -> FileMeta {
        FileMeta::regular(0, 0, perms, Xattrs::new())
    }

    #[test]
    fn mutable_tree_paths() {
        let m = Checksum::of(b"m");
        let c = Checksum::of(b"c");
        let mut t = MutableTree::new(m);
        t.insert_file("./a/b/c", c, m).unwrap();
        t.insert_file("a//d", c, m).unwrap();
        assert_eq!(
            t.dirs()["a"].dirs()["b"].files().keys().collect::<Vec<_>>(),
            ["c"]
        );
        assert!(t.insert_file("a/../x", c, m).is_err());
        assert!(t.insert_file("", c, m).is_err());
        // A file replaces a directory and the other way round, as later tar entries do.
        t.insert_file("a/b", c, m).unwrap();
        assert!(t.dirs()["a"].dirs().is_empty());
        t.ensure_dir("a/b", m).unwrap();
        assert!(t.dirs()["a"].files().get("b").is_none());
        assert!(t.remove("a/d").unwrap());
        assert!(!t.remove("a/d").unwrap());
        assert!(!t.remove("nope/x").unwrap());
        // A NUL is the one thing a '/'-split component can still hold wrong: refused, named.
        let e = t.insert_file("a/b\0c", c, m).unwrap_err().to_string();
        assert!(e.contains("tree path"), "{e}");
        // The node-level operations the merge uses keep the same replace rules.
        let a = t.subdir("a", m);
        a.put_file("b", c);
        assert!(a.dirs().get("b").is_none() && a.files()["b"] == c);
        a.subdir("b", m);
        assert!(a.files().get("b").is_none() && a.dirs().contains_key("b"));
        assert!(a.remove_entry("b") && !a.remove_entry("b"));
        a.clear();
        assert!(t.dirs()["a"].files().is_empty() && t.dirs()["a"].dirs().is_empty());
    }

    #[test]
    fn bare_symlink_objects_may_point_anywhere() {
        if !rustix::process::geteuid().is_root() {
            return; // bare objects are chowned
        }
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::init(tmp.path(), RepoMode::Bare).unwrap();
        let mut tx = repo.begin().unwrap();
        let root = tx.default_dirmeta().unwrap();
        let mut tree = MutableTree::new(root);
        let meta = FileMeta::symlink(0, 0, "/usr/bin/busybox", Xattrs::new());
        let c = tx.add_symlink(&mut tree, "bin/sh", &meta).unwrap();
        let commit = tx.write_commit(&tree, &CommitSpec::default()).unwrap();
        tx.commit().unwrap();
        let content = repo.open_content(&c).unwrap();
        assert_eq!(content.meta.symlink_target, "/usr/bin/busybox");
        let out = tmp.path().join("out");
        repo.checkout(&commit, &out, CheckoutMode::User).unwrap();
        assert_eq!(
            std::fs::read_link(out.join("bin/sh")).unwrap(),
            Path::new("/usr/bin/busybox")
        );
    }

    #[test]
    fn streamed_entries_commit_read_back_and_check_out() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [RepoMode::Archive, RepoMode::BareUser] {
            let rp = tmp.path().join(mode.name());
            let repo = Repo::init(&rp, mode).unwrap();
            let mut tx = repo.begin().unwrap();
            let root = tx.default_dirmeta().unwrap();
            let mut tree = MutableTree::new(root);
            let big = vec![b'z'; 300_000];
            tx.add_file(
                &mut tree,
                "usr/bin/big",
                &file(0o755),
                big.len() as u64,
                &big[..],
            )
            .unwrap();
            tx.add_file(&mut tree, "usr/empty", &file(0o644), 0, std::io::empty())
                .unwrap();
            tx.add_symlink(
                &mut tree,
                "bin",
                &FileMeta::symlink(0, 0, "usr/bin", Xattrs::new()),
            )
            .unwrap();
            let dm = DirMeta {
                mode: super::super::object::mode::S_IFDIR | 0o700,
                ..DirMeta::default_dir()
            };
            tx.add_dir(&mut tree, "root", &dm).unwrap();
            // A stream shorter or longer than its size is refused and leaves nothing staged.
            let before = tx.stats();
            assert!(tx
                .add_file(&mut tree, "short", &file(0o644), 10, &b"abc"[..])
                .is_err());
            assert!(tx
                .add_file(&mut tree, "long", &file(0o644), 1, &b"abc"[..])
                .is_err());
            assert_eq!(tx.stats(), before);
            let spec = CommitSpec {
                subject: "s".into(),
                timestamp: 7,
                metadata: vec![
                    ("k".into(), Value::str("v")),
                    ("n".into(), Value::UInt64(3)),
                ],
                ..Default::default()
            };
            let c = tx.write_commit(&tree, &spec).unwrap();
            tx.set_ref("a/b", Some(c)).unwrap();
            tx.commit().unwrap();

            assert_eq!(repo.read_ref("a/b").unwrap(), Some(c));
            assert_eq!(repo.resolve("a/b").unwrap(), c);
            assert_eq!(repo.resolve(&c.to_hex()).unwrap(), c);
            let e = repo.resolve("a/missing").unwrap_err().to_string();
            assert!(
                e.contains("ref a/missing") && e.contains("not found"),
                "{e}"
            );
            assert!(repo.resolve(&Checksum::of(b"none").to_hex()).is_err());
            let commit = repo.read_commit(&c).unwrap();
            assert_eq!(
                (commit.meta_str("k"), commit.meta("n")),
                (Some("v"), Some(&Value::UInt64(3)))
            );
            assert_eq!(
                repo.read_mtree(&commit.root_tree, &commit.root_meta)
                    .unwrap(),
                tree
            );
            let report = repo.fsck_commit(&c).unwrap();
            assert_eq!(report.content_objects, 3);
            let mut seen = Vec::new();
            repo.walk(&c, &mut |e| {
                seen.push(match e {
                    super::super::checkout::WalkEntry::Dir { path, .. } => format!("{path}/"),
                    super::super::checkout::WalkEntry::File { path, .. } => path.clone(),
                });
                Ok(())
            })
            .unwrap();
            assert_eq!(
                seen,
                [
                    "/",
                    "bin",
                    "root/",
                    "usr/",
                    "usr/empty",
                    "usr/bin/",
                    "usr/bin/big"
                ]
            );
            let out = tmp.path().join(format!("co-{}", mode.name()));
            repo.checkout(&c, &out, CheckoutMode::User).unwrap();
            assert_eq!(std::fs::read(out.join("bin/big")).unwrap(), big);
            assert_eq!(
                std::fs::read_link(out.join("bin")).unwrap(),
                Path::new("usr/bin")
            );
            use std::os::unix::fs::PermissionsExt;
            let perms =
                |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
            assert_eq!(
                (perms("usr/bin/big"), perms("usr/empty"), perms("root")),
                (0o755, 0o644, 0o700)
            );
            assert!(
                repo.checkout(&c, &out, CheckoutMode::User).is_err(),
                "existing destination"
            );
            let content = repo
                .open_content(&tree.dirs()["usr"].files()["empty"])
                .unwrap();
            assert_eq!((content.size, content.meta.mode), (0, 0o100644));
            assert!(repo.has_object(&c, ObjectType::Commit).unwrap());
        }
    }

    /// Objects written in a transaction read back before it commits, whether they wait in
    /// staging (a disk) or went straight to `objects/` (tmpfs; what SELinux relabelling of a
    /// derived layer does).
    #[test]
    fn objects_read_back_within_their_transaction() {
        let disk = tempfile::tempdir().unwrap();
        let shm = tempfile::tempdir_in("/dev/shm").ok();
        for dir in std::iter::once(&disk).chain(shm.as_ref()) {
            let repo = Repo::init(&dir.path().join("r"), RepoMode::BareUser).unwrap();
            let mut tx = repo.begin().unwrap();
            let c = tx.write_content(&file(0o640), 5, &b"hello"[..]).unwrap();
            let m = tx.write_dirmeta(&DirMeta::default_dir()).unwrap();
            let mut content = tx.open_content(&c).unwrap();
            let mut body = Vec::new();
            content.reader.read_to_end(&mut body).unwrap();
            assert_eq!(
                (body.as_slice(), content.meta.mode),
                (&b"hello"[..], 0o100640)
            );
            assert_eq!(tx.read_dirmeta(&m).unwrap(), DirMeta::default_dir());
            assert!(tx.has_object(&c, ObjectType::File).unwrap());
            tx.commit().unwrap();
            assert!(repo.has_object(&c, ObjectType::File).unwrap());
        }
    }

    #[test]
    fn parallel_transactions_share_a_repo() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::init(tmp.path(), RepoMode::BareUser).unwrap();
        let commits: Vec<Checksum> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let repo = &repo;
                    s.spawn(move || {
                        let mut tx = repo.begin().unwrap();
                        let root = tx.default_dirmeta().unwrap();
                        let mut tree = MutableTree::new(root);
                        for i in 0..50 {
                            // Half the files are the same in every thread: concurrent dedupe.
                            let data = if i % 2 == 0 {
                                format!("shared {i}")
                            } else {
                                format!("thread {t} file {i}")
                            };
                            tx.add_file(
                                &mut tree,
                                &format!("d/{i}"),
                                &file(0o644),
                                data.len() as u64,
                                data.as_bytes(),
                            )
                            .unwrap();
                        }
                        let c = tx
                            .write_commit(
                                &tree,
                                &CommitSpec {
                                    timestamp: t,
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        tx.set_ref(&format!("t{t}"), Some(c)).unwrap();
                        tx.commit().unwrap();
                        c
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (t, c) in commits.iter().enumerate() {
            assert_eq!(repo.read_ref(&format!("t{t}")).unwrap(), Some(*c));
            assert_eq!(repo.fsck_commit(c).unwrap().content_objects, 50);
        }
    }

    #[test]
    fn dropped_and_dead_transactions_leave_no_staging() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::init(tmp.path(), RepoMode::Archive).unwrap();
        let staging = || {
            std::fs::read_dir(tmp.path().join("tmp"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("staging-")
                })
                .count()
        };
        let mut tx = repo.begin().unwrap();
        tx.write_content(&file(0o644), 3, &b"abc"[..]).unwrap();
        assert_eq!(staging(), 2, "the staging dir and its lock");
        drop(tx);
        assert_eq!(staging(), 0);
        assert!(std::fs::read_dir(tmp.path().join("objects"))
            .unwrap()
            .next()
            .is_none());
        // A staging dir nobody holds (its writer died) is removed by the next transaction.
        std::fs::create_dir_all(tmp.path().join("tmp/staging-dead-xxxxxx/ab")).unwrap();
        std::fs::write(tmp.path().join("tmp/staging-dead-xxxxxx/ab/partial"), "p").unwrap();
        let tx = repo.begin().unwrap();
        assert_eq!(staging(), 2);
        tx.commit().unwrap();
        assert_eq!(staging(), 0);
    }
}
