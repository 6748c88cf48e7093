//! The read side of trees: walking, checking out, and verifying commits.
//!
//! 1. [`Repo::walk`] visits every entry of a commit's tree depth-first in dirtree order
//!    (files, then directories, each sorted by name).
//! 2. [`Repo::checkout`] writes a commit's tree into a new directory: directories first with
//!    a private mode, file contents copied from the objects (no hard links into the repository),
//!    and each directory's real mode, owner and xattrs applied after its children. In
//!    [`CheckoutMode::User`] (as `ostree checkout -U`) owners and xattrs are not applied and
//!    files lose their setuid/setgid bits (directories keep theirs).
//! 3. [`Repo::fsck_commit`] re-hashes every object a commit reaches — metadata objects must
//!    hash to their names and be in normal form, content must hash (header + data) to its
//!    name — and reports how many were checked.

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};

use super::fsutil;
use super::object::{content_checksum, Checksum, Commit, DirMeta, ObjectType};
use super::repo::Repo;
use crate::error::{Error, Result};

/// One entry met by [`Repo::walk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkEntry {
    /// A directory (the root is `""`).
    Dir {
        /// Path relative to the root.
        path: String,
        /// Its dirmeta.
        meta: DirMeta,
    },
    /// A file or symlink.
    File {
        /// Path relative to the root.
        path: String,
        /// Its content checksum.
        checksum: Checksum,
    },
}

/// How [`Repo::checkout`] applies ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutMode {
    /// Owners, modes and xattrs as stored (needs root for other owners).
    Bare,
    /// As the current user: no chown, no xattrs, setuid/setgid dropped from files (not from
    /// directories), as `ostree checkout -U` does.
    User,
}

/// What [`Repo::fsck_commit`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Metadata objects (commit, dirtree, dirmeta) verified.
    pub metadata_objects: u64,
    /// Content objects verified.
    pub content_objects: u64,
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

impl Repo {
    /// Visit every directory and file of `commit`'s tree.
    pub fn walk(
        &self,
        commit: &Checksum,
        visit: &mut dyn FnMut(&WalkEntry) -> Result<()>,
    ) -> Result<()> {
        let c = self.read_commit(commit)?;
        self.walk_tree("", &c.root_tree, &c.root_meta, visit, 0)
    }

    fn walk_tree(
        &self,
        path: &str,
        tree: &Checksum,
        meta: &Checksum,
        visit: &mut dyn FnMut(&WalkEntry) -> Result<()>,
        depth: usize,
    ) -> Result<()> {
        super::object::check_tree_depth(depth, || {
            format!("tree at {path:?} in {}", self.path.display())
        })?;
        visit(&WalkEntry::Dir {
            path: path.to_string(),
            meta: self.read_dirmeta(meta)?,
        })?;
        let dt = self.read_dirtree(tree)?;
        for (name, checksum) in &dt.files {
            visit(&WalkEntry::File {
                path: join(path, name),
                checksum: *checksum,
            })?;
        }
        for (name, t, m) in &dt.dirs {
            self.walk_tree(&join(path, name), t, m, visit, depth + 1)?;
        }
        Ok(())
    }

    /// Check out `commit` into `dest`, which must not exist yet (its parent must).
    pub fn checkout(&self, commit: &Checksum, dest: &Path, mode: CheckoutMode) -> Result<()> {
        let c = self.read_commit(commit)?;
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest.file_name().ok_or_else(|| Error::Malformed {
            what: format!("checkout destination {}", dest.display()),
            reason: "has no final component".into(),
        })?;
        let pdir = Dir::open_ambient_dir(parent, cap_std::ambient_authority())
            .map_err(|e| Error::io_path("opening", parent, e))?;
        pdir.create_dir(name).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Conflict {
                what: format!("checkout destination {}", dest.display()),
                reason: "already exists; choose a new directory".into(),
            },
            _ => Error::io_path("creating", dest, e),
        })?;
        let root = pdir
            .open_dir(name)
            .map_err(|e| Error::io_path("opening", dest, e))?;
        self.checkout_dir(&root, dest, &c.root_tree, &c.root_meta, mode, 0)
    }

    fn checkout_dir(
        &self,
        dir: &Dir,
        path: &Path,
        tree: &Checksum,
        meta: &Checksum,
        mode: CheckoutMode,
        depth: usize,
    ) -> Result<()> {
        super::object::check_tree_depth(depth, || {
            format!("tree at {} in {}", path.display(), self.path.display())
        })?;
        let dm = self.read_dirmeta(meta)?;
        let dt = self.read_dirtree(tree)?;
        let dfd = fsutil::dir_fd(dir, path)?;
        rustix::fs::fchmod(&dfd, rustix::fs::Mode::from_raw_mode(0o700))
            .map_err(|e| Error::io_path("chmod", path, e.into()))?;
        for (name, checksum) in &dt.files {
            self.checkout_file(dir, name, &path.join(name), checksum, mode)?;
        }
        for (name, t, m) in &dt.dirs {
            let child = path.join(name);
            dir.create_dir(name)
                .map_err(|e| Error::io_path("creating", &child, e))?;
            let sub = dir
                .open_dir(name)
                .map_err(|e| Error::io_path("opening", &child, e))?;
            self.checkout_dir(&sub, &child, t, m, mode, depth + 1)?;
        }
        // ostree -U keeps a directory's setgid (and other) bits.
        apply_meta(
            dfd.as_fd(),
            mode,
            (dm.uid, dm.gid),
            &dm.xattrs,
            dm.mode & 0o7777,
            dm.mode & 0o7777,
            path,
        )
    }

    fn checkout_file(
        &self,
        dir: &Dir,
        name: &str,
        path: &Path,
        checksum: &Checksum,
        mode: CheckoutMode,
    ) -> Result<()> {
        let content = self.open_content(checksum)?;
        let meta = &content.meta;
        if meta.is_symlink() {
            // symlinkat itself: cap-std refuses absolute targets, which checkouts have.
            rustix::fs::symlinkat(meta.symlink_target.as_str(), dir, name)
                .map_err(|e| Error::io_path("creating symlink", path, e.into()))?;
            if mode == CheckoutMode::Bare {
                rustix::fs::chownat(
                    dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(meta.uid)),
                    Some(rustix::fs::Gid::from_raw(meta.gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| chown_error(e, path))?;
                fsutil::set_xattrs_path(path, &meta.xattrs)?;
            }
            return Ok(());
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o600);
        let mut f = dir
            .open_with(name, &opts)
            .map_err(|e| Error::io_path("creating", path, e))?
            .into_std();
        let mut reader = content.reader.take(content.size + 1);
        let n =
            std::io::copy(&mut reader, &mut f).map_err(|e| Error::io_path("writing", path, e))?;
        if n != content.size {
            return Err(Error::Malformed {
                what: format!("ostree object {checksum} in {}", self.path.display()),
                reason: format!(
                    "holds {n} bytes of data, its header says {}; run fsck",
                    content.size
                ),
            });
        }
        // ostree -U drops setuid and setgid from files.
        apply_meta(
            f.as_fd(),
            mode,
            (meta.uid, meta.gid),
            &meta.xattrs,
            meta.mode & 0o7777,
            meta.mode & 0o1777,
            path,
        )
    }

    /// Re-hash every object `commit` reaches (not its parents); the first bad one is an error
    /// naming it.
    pub fn fsck_commit(&self, commit: &Checksum) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let bytes = self.read_verified(commit, ObjectType::Commit)?;
        let c = Commit::parse(&bytes, &format!("commit {commit}"))?;
        report.metadata_objects += 1;
        let mut seen = HashSet::new();
        self.fsck_tree(
            &c.root_tree,
            &c.root_meta,
            &mut seen,
            &mut report,
            &mut PathBuf::new(),
            0,
        )?;
        Ok(report)
    }

    fn fsck_tree(
        &self,
        tree: &Checksum,
        meta: &Checksum,
        seen: &mut HashSet<(Checksum, ObjectType)>,
        report: &mut FsckReport,
        path: &mut PathBuf,
        depth: usize,
    ) -> Result<()> {
        super::object::check_tree_depth(depth, || {
            format!("tree at {} in {}", path.display(), self.path.display())
        })?;
        if seen.insert((*meta, ObjectType::DirMeta)) {
            self.read_verified(meta, ObjectType::DirMeta)?;
            report.metadata_objects += 1;
        }
        if !seen.insert((*tree, ObjectType::DirTree)) {
            return Ok(());
        }
        let bytes = self.read_verified(tree, ObjectType::DirTree)?;
        report.metadata_objects += 1;
        let dt = super::object::DirTree::parse(&bytes, &format!("dirtree {tree}"))?;
        for (name, c) in &dt.files {
            if seen.insert((*c, ObjectType::File)) {
                self.verify_content(c, &path.join(name))?;
                report.content_objects += 1;
            }
        }
        for (name, t, m) in &dt.dirs {
            path.push(name);
            self.fsck_tree(t, m, seen, report, path, depth + 1)?;
            path.pop();
        }
        Ok(())
    }

    /// Re-hash one content object; `path` is where the tree has it (for the message).
    pub fn verify_content(&self, checksum: &Checksum, path: &Path) -> Result<()> {
        let content = self.open_content(checksum)?;
        let mut counted = Counting {
            inner: content.reader,
            n: 0,
        };
        let actual = content_checksum(&content.meta, &mut counted).map_err(|e| {
            Error::io_path(
                "reading",
                self.path.join(self.object_path(checksum, ObjectType::File)),
                e,
            )
        })?;
        let what = format!(
            "ostree object {} (/{} in the tree)",
            self.path
                .join(self.object_path(checksum, ObjectType::File))
                .display(),
            path.display()
        );
        if counted.n != content.size {
            return Err(Error::Malformed {
                what,
                reason: format!(
                    "holds {} bytes of data, its header says {}",
                    counted.n, content.size
                ),
            });
        }
        if actual != *checksum {
            return Err(Error::Malformed {
                what,
                reason: format!("corrupt: content hashes to {actual}; delete the object and re-import the commit"),
            });
        }
        Ok(())
    }
}

struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn chown_error(e: rustix::io::Errno, path: &Path) -> Error {
    if e == rustix::io::Errno::PERM {
        Error::Unsupported {
            transport: "ostree".into(),
            reason: format!(
                "checking out {} with its stored owner needs root (chown was refused); check out in user mode (as `ostree checkout -U`) instead",
                path.display()
            ),
        }
    } else {
        Error::io_path("chown", path, e.into())
    }
}

/// Give a checked-out node its owner and xattrs (bare mode only) and then its permission bits:
/// `bare_perms` in bare mode, `user_perms` in user mode (`ostree checkout -U`).
fn apply_meta(
    fd: std::os::fd::BorrowedFd<'_>,
    mode: CheckoutMode,
    (uid, gid): (u32, u32),
    xattrs: &super::object::Xattrs,
    bare_perms: u32,
    user_perms: u32,
    path: &Path,
) -> Result<()> {
    let perms = match mode {
        CheckoutMode::Bare => {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| chown_error(e, path))?;
            fsutil::set_xattrs_fd(fd, xattrs, path)?;
            bare_perms
        }
        CheckoutMode::User => user_perms,
    };
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(perms))
        .map_err(|e| Error::io_path("chmod", path, e.into()))
}
