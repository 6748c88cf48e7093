//! Writing layer entries below a destination directory (see the parent module for the rules).
//!
//! 1. [`extract_layer`] walks the entries ([`super::entry`]) and hands each to the extractor,
//!    recording a tar-split on the way when asked.
//! 2. Per entry: duplicates are refused or replaced, parents are opened (created 0755) through
//!    `cap_std::fs::Dir` so nothing escapes the destination, whiteouts go to
//!    [`super::whiteout`], and every other node is created with `*at` calls on the parent's fd
//!    (files with `O_EXCL`, hard links with `linkat` inside the destination), then owner,
//!    mode, xattrs and mtime.
//! 3. Directory modes and mtimes are deferred and applied deepest first at the end.
//!
//! System calls per entry (docs/performance.md, section 12; `benches/syscalls.sh`): the last
//! parent directory stays open for the next entry and is dropped on any removal; nodes are
//! created first and what is in the way removed only on `EEXIST`; files get their final mode
//! at creation when the umask leaves it alone (no `fchmod`) and no `fchown` when the tar's
//! owner is the one a new file gets anyway. A regular file is `openat`, `write`, `utimensat`,
//! `close`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::entry::{bad, parse_entry, EntryKind, EntryMeta, Node};
use super::whiteout::WhiteoutMode;
use crate::error::{Error, Result};
use crate::fs_clone::{Cascade, FileSharing, Method, Wanted};
use crate::tar_split::{self, TarSplitWriter};

/// Options for [`extract_layer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// How whiteouts are written.
    pub whiteouts: WhiteoutMode,
    /// Set owners from the tar headers (needs root).
    pub chown: bool,
    /// Set extended attributes from the tar. Attributes the filesystem does not support, and
    /// (when not root) attributes the user may not set (`trusted.*`, `security.*`), are
    /// skipped and counted in [`ExtractStats::skipped_xattrs`].
    pub xattrs: bool,
    /// Create device nodes; when false they are skipped and counted in
    /// [`ExtractStats::skipped_devices`].
    pub devices: bool,
    /// containers-storage semantics: a path listed twice is an error. When false the last
    /// entry wins.
    pub reject_duplicates: bool,
}

impl ExtractOptions {
    /// Defaults for the current user: owners and device nodes only as root (euid 0), xattrs
    /// always (as non-root only `user.*` ones can succeed), duplicates rejected.
    pub fn for_current_user(whiteouts: WhiteoutMode) -> Self {
        let root = is_root();
        ExtractOptions {
            whiteouts,
            chown: root,
            xattrs: true,
            devices: root,
            reject_duplicates: true,
        }
    }
}

/// What an extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Tar entries (PAX global headers not counted).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of regular-file content written.
    pub file_bytes: u64,
    /// Owners named in the headers, except of entries whose basename starts with `.wh.`
    /// (containers-storage's `uidset`).
    pub uids: BTreeSet<u32>,
    /// Groups, likewise (`gidset`).
    pub gids: BTreeSet<u32>,
    /// Device nodes not created because [`ExtractOptions::devices`] is off.
    pub skipped_devices: u64,
    /// Extended attributes not set (unsupported by the filesystem, not permitted for this
    /// user, xattrs disabled, or overlay attributes that would change the overlay's meaning).
    pub skipped_xattrs: u64,
}

/// Whether this process runs as root (euid 0).
pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Extract a layer tar into `dest` (see the module docs for the rules), recording its
/// tar-split into `tar_split` when given (then duplicates are always refused, by the
/// tar-split writer). Reads the stream to EOF. `layer` names the layer in errors.
pub fn extract_layer<R: Read, W: Write>(
    tar_stream: R,
    dest: &Dir,
    opts: &ExtractOptions,
    layer: &str,
    tar_split: Option<&mut TarSplitWriter<W>>,
) -> Result<ExtractStats> {
    extract_layer_sharing(tar_stream, dest, opts, layer, tar_split, None)
}

/// [`extract_layer`], placing regular files whose bodies `sharing` finds on disk by reflink
/// or hard link, else by `copy_file_range`, instead of writing them ([`crate::fs_clone`]); the
/// bodies are still read from the stream (so it is verified whole) but not written. A hard
/// link is made only as root with owners and xattrs applied, when the origin allows it and its
/// owner, mode, mtime and xattrs are exactly the entry's; a later hard-link entry of the layer
/// whose metadata would change such a shared inode gets a private copy first, so the origin
/// is never modified.
pub fn extract_layer_sharing<R: Read, W: Write>(
    tar_stream: R,
    dest: &Dir,
    opts: &ExtractOptions,
    layer: &str,
    tar_split: Option<&mut TarSplitWriter<W>>,
    sharing: Option<&FileSharing<'_>>,
) -> Result<ExtractStats> {
    let mut x = Extractor {
        dest,
        opts,
        layer,
        sharing,
        foreign: BTreeSet::new(),
        keep_own: opts.reject_duplicates || tar_split.is_some(),
        root: is_root(),
        stats: ExtractStats::default(),
        seen: SeenPaths::default(),
        deferred: BTreeMap::new(),
        buf: vec![0u8; 128 * 1024],
        parent: RefCell::new(None),
        umask: current_umask(),
        ids: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
    };
    tar_split::split_entries(
        tar_stream,
        layer,
        tar_split,
        |entry, body| match parse_entry(entry, body, layer)? {
            Some((meta, node)) => x.entry(&meta, node, entry),
            None => Ok(()),
        },
    )?;
    x.finish()
}

/// Directory metadata applied at the end.
pub(super) struct DirMeta {
    mode: u32,
    mtime: (i64, u32),
}

/// The normalised paths a layer lists, in byte order.
#[derive(Default)]
pub(super) struct SeenPaths(BTreeSet<Vec<u8>>);

impl SeenPaths {
    /// Record `path`; whether it was new.
    pub(super) fn insert(&mut self, path: &Path) -> bool {
        self.0.insert(path.as_os_str().as_bytes().to_vec())
    }

    /// Whether `path` itself is listed.
    pub(super) fn contains(&self, path: &Path) -> bool {
        self.0.contains(path.as_os_str().as_bytes())
    }

    /// The first listed path strictly below `path` (the root: any listed path). In byte order
    /// everything below `a/b` sits together from `a/b/` on (`a/b.x` sorts before it).
    pub(super) fn first_below(&self, path: &Path) -> Option<&[u8]> {
        let b = path.as_os_str().as_bytes();
        if b.is_empty() {
            return self.0.iter().find(|p| !p.is_empty()).map(Vec::as_slice);
        }
        let mut prefix = Vec::with_capacity(b.len() + 1);
        prefix.extend_from_slice(b);
        prefix.push(b'/');
        self.0
            .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
            .next()
            .filter(|p| p.starts_with(&prefix))
            .map(Vec::as_slice)
    }
}

pub(super) struct Extractor<'a> {
    pub(super) dest: &'a Dir,
    pub(super) opts: &'a ExtractOptions,
    pub(super) layer: &'a str,
    /// Where regular files' bodies are on disk, and how to place them.
    pub(super) sharing: Option<&'a FileSharing<'a>>,
    /// Files of this layer hard-linked to an origin's inode (never to be modified).
    pub(super) foreign: BTreeSet<PathBuf>,
    /// Refuse entries that delete earlier entries of the same layer (containers-storage
    /// semantics, and whenever a tar-split is recorded: the layer could not be rebuilt from
    /// the extracted tree).
    pub(super) keep_own: bool,
    pub(super) root: bool,
    pub(super) stats: ExtractStats,
    /// Every path this layer lists so far (duplicates, and what Apply-mode whiteouts keep), as
    /// bytes: the paths are normalised (one `/` between components, none at the ends), so
    /// equal paths are equal bytes, and byte order costs far less than `Path`'s component
    /// order on every entry ([`SeenPaths`]).
    pub(super) seen: SeenPaths,
    /// Directories of this layer whose mode and mtime are set at the end.
    pub(super) deferred: BTreeMap<PathBuf, DirMeta>,
    pub(super) buf: Vec<u8>,
    /// The directory the last entry's parent resolved to, kept open for the next entry (a
    /// layer tar lists a directory's entries together). Dropped whenever anything is removed,
    /// since only a removal can make the path resolve to another directory.
    parent: RefCell<Option<CachedDir>>,
    /// The process's umask, read once per layer (`None` when /proc is missing): a file whose
    /// mode survives it needs no `fchmod`.
    umask: Option<u32>,
    /// The effective uid and gid new files get: a file the tar gives that owner needs no
    /// `fchown` (unless its directory is setgid).
    ids: (u32, u32),
}

/// An open parent directory (see [`Extractor::parent`]).
pub(super) struct CachedDir {
    path: PathBuf,
    dir: Rc<Dir>,
    /// The directory's group is the effective gid, so a new file in it gets that gid whether
    /// it comes from the process or from the directory (setgid, or a `grpid` mount). `None`:
    /// not looked at yet.
    plain_gid: Option<bool>,
}

/// The umask from `/proc/self/status` (Linux 4.7+), without changing it as `umask(2)` would.
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Where extended attributes are set.
enum XattrTarget<'a> {
    /// An open regular file or directory.
    Fd(BorrowedFd<'a>),
    /// `/proc/self/fd/<parent>/<name>` for nodes that cannot be opened (symlinks, devices).
    Path(&'a OsStr),
}

fn timestamps((secs, nsec): (i64, u32)) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Open directory `path` below `dest`; the empty path is `dest` itself.
fn open_rel_dir(dest: &Dir, path: &Path) -> io::Result<Dir> {
    if path.as_os_str().is_empty() {
        dest.try_clone()
    } else {
        dest.open_dir(path)
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

impl Extractor<'_> {
    pub(super) fn bad(&self, meta: &EntryMeta, reason: impl Into<String>) -> Error {
        bad(self.layer, &meta.raw_name, reason)
    }

    pub(super) fn io(&self, meta: &EntryMeta, op: &str, e: impl Into<io::Error>) -> Error {
        Error::Io {
            context: format!(
                "layer {}: tar entry {:?}: {op}",
                self.layer,
                String::from_utf8_lossy(&meta.raw_name)
            ),
            source: e.into(),
        }
    }

    /// Errors opening a parent are the tar's fault when they come from its layout (an escape
    /// through a symlink, a file where a directory should be, a loop).
    fn parent_err(&self, meta: &EntryMeta, dir: &Path, e: io::Error) -> Error {
        use io::ErrorKind as K;
        let raw = e.raw_os_error();
        let layout = matches!(
            e.kind(),
            K::PermissionDenied | K::InvalidInput | K::AlreadyExists
        ) || [Errno::NOTDIR, Errno::LOOP, Errno::EXIST, Errno::XDEV]
            .iter()
            .any(|n| Some(n.raw_os_error()) == raw)
            || e.to_string().contains("outside of the filesystem");
        if layout {
            self.bad(
                meta,
                format!(
                    "cannot use {:?} as its parent directory: {e} (a symlink pointing outside \
                     the layer, or a non-directory, is in the way)",
                    dir.display()
                ),
            )
        } else {
            self.io(
                meta,
                &format!("opening parent directory {}", dir.display()),
                e,
            )
        }
    }

    /// Open directory `dir` (relative to dest), creating missing components with mode 0755.
    /// The last directory opened stays open for the next call ([`Extractor::parent`]).
    pub(super) fn open_dirs(&self, meta: &EntryMeta, dir: &Path) -> Result<Rc<Dir>> {
        if let Some(c) = self.parent.borrow().as_ref() {
            if c.path == dir {
                return Ok(c.dir.clone());
            }
        }
        let d = Rc::new(self.open_dirs_uncached(meta, dir)?);
        *self.parent.borrow_mut() = Some(CachedDir {
            path: dir.to_path_buf(),
            dir: d.clone(),
            plain_gid: None,
        });
        Ok(d)
    }

    /// Forget the open parent directory (something was removed).
    pub(super) fn forget_parent(&self) {
        *self.parent.borrow_mut() = None;
    }

    /// Whether new files in the cached parent `dir` surely get the effective gid (the
    /// directory's group is that gid); one `fstat` per directory, remembered with it.
    fn plain_gid(&self, dir: &Dir) -> bool {
        let mut cache = self.parent.borrow_mut();
        let Some(c) = cache.as_mut().filter(|c| std::ptr::eq(&*c.dir, dir)) else {
            return false;
        };
        *c.plain_gid
            .get_or_insert_with(|| rustix::fs::fstat(dir).is_ok_and(|st| st.st_gid == self.ids.1))
    }

    fn open_dirs_uncached(&self, meta: &EntryMeta, dir: &Path) -> Result<Dir> {
        if dir.as_os_str().is_empty() {
            return self
                .dest
                .try_clone()
                .map_err(|e| self.io(meta, "reopening the destination", e));
        }
        match self.dest.open_dir(dir) {
            Ok(d) => return Ok(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.parent_err(meta, dir, e)),
        }
        let mut prefix = PathBuf::new();
        for comp in dir.components() {
            let parent = if prefix.as_os_str().is_empty() {
                self.dest
                    .try_clone()
                    .map_err(|e| self.io(meta, "reopening the destination", e))?
            } else {
                self.dest
                    .open_dir(&prefix)
                    .map_err(|e| self.parent_err(meta, &prefix, e))?
            };
            prefix.push(comp);
            match rustix::fs::statat(&parent, comp.as_os_str(), AtFlags::empty()) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(self.parent_err(meta, &prefix, e.into())),
            }
            match rustix::fs::mkdirat(&parent, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(e) => return Err(self.parent_err(meta, &prefix, e.into())),
            }
            // Exactly 0755 whatever the umask.
            let fd = rustix::fs::openat(&parent, comp.as_os_str(), dir_flags(), Mode::empty())
                .map_err(|e| self.parent_err(meta, &prefix, e.into()))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                .map_err(|e| self.io(meta, &format!("chmod {}", prefix.display()), e))?;
        }
        self.dest
            .open_dir(dir)
            .map_err(|e| self.parent_err(meta, dir, e))
    }

    /// The parent directory of non-root `path` (created if missing) and the final component.
    pub(super) fn parent_of<'p>(
        &self,
        meta: &EntryMeta,
        path: &'p Path,
    ) -> Result<(Rc<Dir>, &'p OsStr)> {
        let name = path
            .file_name()
            .ok_or_else(|| self.bad(meta, "the entry has no file name"))?;
        let parent = self.open_dirs(meta, path.parent().unwrap_or(Path::new("")))?;
        Ok((parent, name))
    }

    /// Forget deferred directory metadata at or below `path` (it was removed or replaced).
    fn forget_under(&mut self, path: &Path) {
        let doomed: Vec<PathBuf> = self
            .deferred
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in doomed {
            self.deferred.remove(&p);
        }
    }

    /// Remove whatever is at `parent/name` (a directory recursively); nothing if absent.
    pub(super) fn remove_existing(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        path: &Path,
    ) -> Result<()> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.io(meta, &format!("stat {}", path.display()), e)),
            Ok(st) => {
                self.forget_parent();
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    parent
                        .remove_dir_all(name)
                        .map_err(|e| self.io(meta, &format!("removing {}", path.display()), e))?;
                    self.forget_under(path);
                } else {
                    rustix::fs::unlinkat(parent, name, AtFlags::empty())
                        .map_err(|e| self.io(meta, &format!("removing {}", path.display()), e))?;
                }
                Ok(())
            }
        }
    }

    fn uid_gid(&self, meta: &EntryMeta) -> Result<(u32, u32)> {
        let uid = u32::try_from(meta.uid)
            .map_err(|_| self.bad(meta, format!("uid {} out of range", meta.uid)))?;
        let gid = u32::try_from(meta.gid)
            .map_err(|_| self.bad(meta, format!("gid {} out of range", meta.gid)))?;
        Ok((uid, gid))
    }

    pub(super) fn owner(&self, meta: &EntryMeta) -> Result<(Option<Uid>, Option<Gid>)> {
        let (uid, gid) = self.uid_gid(meta)?;
        Ok((Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))))
    }

    fn set_xattrs(&mut self, meta: &EntryMeta, target: XattrTarget<'_>) -> Result<()> {
        for (name, value) in &meta.xattrs {
            let overlay_attr =
                name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.");
            if !self.opts.xattrs
                || (overlay_attr && matches!(self.opts.whiteouts, WhiteoutMode::Overlay { .. }))
            {
                self.stats.skipped_xattrs += 1;
                continue;
            }
            let r = match target {
                XattrTarget::Fd(fd) => {
                    rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty())
                }
                XattrTarget::Path(p) => {
                    rustix::fs::lsetxattr(p, name.as_str(), value, XattrFlags::empty())
                }
            };
            match r {
                Ok(()) => {}
                // Not supported here; not permitted for this user or on this node type
                // (user.* only exist on regular files and directories); /proc missing.
                Err(Errno::NOTSUP) => self.stats.skipped_xattrs += 1,
                Err(Errno::PERM | Errno::ACCESS)
                    if !self.root || matches!(target, XattrTarget::Path(_)) =>
                {
                    self.stats.skipped_xattrs += 1
                }
                Err(Errno::NOENT) if matches!(target, XattrTarget::Path(_)) => {
                    self.stats.skipped_xattrs += 1
                }
                Err(e) => return Err(self.io(meta, &format!("setting xattr {name}"), e)),
            }
        }
        Ok(())
    }

    fn proc_path(parent: &Dir, name: &OsStr) -> OsString {
        let mut p = OsString::from(format!("/proc/self/fd/{}/", parent.as_raw_fd()));
        p.push(name);
        p
    }

    /// Owner, mode, xattrs and mtime of a node created at `parent/name` that cannot be opened
    /// (symlink, device, fifo).
    fn finish_node(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        chmod: bool,
    ) -> Result<()> {
        if self.opts.chown {
            let (u, g) = self.owner(meta)?;
            rustix::fs::chownat(parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io(meta, "chown", e))?;
        }
        if chmod {
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.io(meta, "chmod", e))?;
        }
        if !meta.xattrs.is_empty() {
            let p = Self::proc_path(parent, name);
            self.set_xattrs(meta, XattrTarget::Path(&p))?;
        }
        rustix::fs::utimensat(
            parent,
            name,
            &timestamps((meta.mtime, meta.mtime_nsec)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io(meta, "setting mtime", e))
    }

    fn entry(&mut self, meta: &EntryMeta, node: Node, body: &mut dyn Read) -> Result<()> {
        self.stats.entries += 1;
        let whiteout_name = meta
            .path
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b".wh."));
        if !whiteout_name {
            let (uid, gid) = self.uid_gid(meta)?;
            self.stats.uids.insert(uid);
            self.stats.gids.insert(gid);
        }
        if !self.seen.insert(&meta.path) && self.opts.reject_duplicates {
            return Err(self.bad(
                meta,
                "duplicate path in layer; containers-storage cannot store it (rebuild the \
                 image without listing a path twice)",
            ));
        }
        if self.keep_own && !matches!(node, Node::Directory) {
            if let Some(below) = self.listed_below(&meta.path) {
                return Err(self.bad(
                    meta,
                    format!(
                        "it replaces the directory holding {:?}, listed earlier in the same \
                         layer, so that entry would be lost and the layer could not be \
                         rebuilt from storage (rebuild the image without it)",
                        String::from_utf8_lossy(below)
                    ),
                ));
            }
        }
        match (&meta.kind, &self.opts.whiteouts) {
            (EntryKind::Whiteout { target }, WhiteoutMode::Overlay { .. }) => {
                if meta.size > 0 {
                    return Err(self.bad(meta, "whiteout entry with content"));
                }
                if self.keep_own
                    && (self.seen.contains(target) || self.listed_below(target).is_some())
                {
                    return Err(self.bad(
                        meta,
                        format!(
                            "a whiteout for {:?}, which the same layer lists (a whiteout only \
                             hides lower layers); the layer could not be rebuilt from storage \
                             (rebuild the image without it)",
                            target.display()
                        ),
                    ));
                }
                self.overlay_whiteout(meta, target)
            }
            (EntryKind::OpaqueWhiteout { dir }, WhiteoutMode::Overlay { opaque_xattr }) => {
                self.overlay_opaque(meta, dir, opaque_xattr)
            }
            (EntryKind::Whiteout { target }, WhiteoutMode::Apply) => {
                self.parent_of(meta, &meta.path)?;
                self.prune(meta, target)
            }
            (EntryKind::OpaqueWhiteout { dir }, WhiteoutMode::Apply) => {
                self.parent_of(meta, &meta.path)?;
                self.prune_children(meta, dir)
            }
            // Files mode, and every non-whiteout entry: extract the node as it is.
            _ => self.node(meta, node, body),
        }
    }

    /// The first path this layer lists strictly below `path`, if any.
    fn listed_below(&self, path: &Path) -> Option<&[u8]> {
        self.seen.first_below(path)
    }

    /// A real (non-`O_PATH`) fd for directory `dir`, which must exist and not be a symlink.
    pub(super) fn open_dir_fd(&self, meta: &EntryMeta, dir: &Path) -> Result<OwnedFd> {
        if dir.as_os_str().is_empty() {
            return rustix::fs::openat(self.dest, ".", dir_flags(), Mode::empty())
                .map_err(|e| self.io(meta, "opening the layer root", e));
        }
        let (parent, name) = self.parent_of(meta, dir)?;
        rustix::fs::openat(&parent, name, dir_flags(), Mode::empty()).map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => {
                self.bad(meta, format!("{:?} is not a directory", dir.display()))
            }
            e => self.io(meta, &format!("opening {}", dir.display()), e),
        })
    }

    /// Create the node of a (non-whiteout, or Files-mode whiteout) entry.
    fn node(&mut self, meta: &EntryMeta, node: Node, body: &mut dyn Read) -> Result<()> {
        let path = &meta.path;
        if let Node::Directory = node {
            return self.directory(meta);
        }
        let (parent, name) = self.parent_of(meta, path)?;
        match node {
            Node::Directory => self.directory(meta),
            Node::Regular => self.regular(meta, &parent, name, body),
            Node::Symlink(target) => {
                self.create_replacing(meta, &parent, name, "creating symlink", |p, n| {
                    rustix::fs::symlinkat(target.as_os_str(), p, n)
                })?;
                self.finish_node(meta, &parent, name, false)
            }
            Node::Hardlink(target) => {
                if &target == path {
                    return Err(self.bad(meta, "hard link to itself"));
                }
                let missing = |this: &Self| {
                    this.bad(
                        meta,
                        format!(
                            "hard link target {:?} does not exist in the layer (it must be \
                             listed before the link)",
                            target.display()
                        ),
                    )
                };
                let tparent =
                    match open_rel_dir(self.dest, target.parent().unwrap_or(Path::new(""))) {
                        Ok(d) => d,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(self)),
                        Err(e) => return Err(self.parent_err(meta, &target, e)),
                    };
                let tname = target.file_name().unwrap_or_default();
                let target_is_symlink =
                    match rustix::fs::statat(&tparent, tname, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                            return Err(self.bad(
                                meta,
                                format!("hard link target {:?} is a directory", target.display()),
                            ))
                        }
                        Ok(st) => FileType::from_raw_mode(st.st_mode) == FileType::Symlink,
                        Err(Errno::NOENT) => return Err(missing(self)),
                        Err(e) => return Err(self.io(meta, "stat hard link target", e)),
                    };
                // The target is another store's inode: the link header's metadata must not
                // change it. Equal metadata: nothing to apply; else the target gets a private
                // copy first.
                let mut skip_metadata = false;
                if self.foreign.contains(&target) {
                    let f = rustix::fs::openat(
                        &tparent,
                        tname,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io(meta, "opening hard link target", e))?;
                    if self.wanted_agrees(meta, &f)? {
                        skip_metadata = true;
                    } else {
                        self.private_copy(meta, &tparent, tname, f)?;
                        self.foreign.remove(&target);
                    }
                }
                self.remove_existing(meta, &parent, name, path)?;
                rustix::fs::linkat(&tparent, tname, &parent, name, AtFlags::empty()).map_err(
                    |e| match e {
                        Errno::NOENT => missing(self),
                        e => self.io(meta, &format!("linking to {}", target.display()), e),
                    },
                )?;
                if skip_metadata {
                    self.foreign.insert(path.clone());
                    return Ok(());
                }
                // containers/storage (and Docker) apply the link header's owner, mode, xattrs
                // and mtime to the shared inode; do the same so stores match podman's. A link to
                // a symlink is never chmodded (that would follow it).
                self.finish_node(meta, &parent, name, !target_is_symlink)
            }
            Node::Char(major, minor) | Node::Block(major, minor) => {
                if !self.opts.devices {
                    self.stats.skipped_devices += 1;
                    return Ok(());
                }
                let ft = if matches!(node, Node::Char(..)) {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                self.create_replacing(
                    meta,
                    &parent,
                    name,
                    "creating device node (needs root)",
                    |p, n| {
                        rustix::fs::mknodat(
                            p,
                            n,
                            ft,
                            Mode::from_raw_mode(meta.mode),
                            rustix::fs::makedev(major, minor),
                        )
                    },
                )?;
                self.finish_node(meta, &parent, name, true)
            }
            Node::Fifo => {
                self.create_replacing(meta, &parent, name, "creating fifo", |p, n| {
                    rustix::fs::mknodat(p, n, FileType::Fifo, Mode::from_raw_mode(meta.mode), 0)
                })?;
                self.finish_node(meta, &parent, name, true)
            }
        }
    }

    /// Whether `file` already has exactly the owner, mode, mtime and xattrs the entry gives
    /// (only meaningful as root with owners and xattrs applied, no overlay attributes).
    fn wanted_agrees(&self, meta: &EntryMeta, file: impl AsFd) -> Result<bool> {
        if !(self.opts.chown && self.opts.xattrs)
            || meta
                .xattrs
                .iter()
                .any(|(k, _)| k.starts_with("trusted.overlay.") || k.starts_with("user.overlay."))
        {
            return Ok(false);
        }
        let (uid, gid) = self.uid_gid(meta)?;
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = meta
            .xattrs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect();
        Ok(Wanted {
            uid,
            gid,
            mode: meta.mode,
            mtime: (meta.mtime, meta.mtime_nsec),
            xattrs: &xattrs,
        }
        .agrees(file))
    }

    /// Replace `parent/name` (hard-linked to another store's inode) by a copy of its own with
    /// the same bytes, owner, mode, xattrs and mtime.
    fn private_copy(
        &self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        shared: OwnedFd,
    ) -> Result<()> {
        let mut tmp = OsString::from(".stowage-private-");
        tmp.push(name);
        let fd = rustix::fs::openat(
            parent,
            tmp.as_os_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io(meta, "creating a private copy of the hard link target", e))?;
        let st = rustix::fs::fstat(&shared).map_err(|e| self.io(meta, "stat", e))?;
        let mut from = std::fs::File::from(shared);
        let mut to = std::fs::File::from(fd);
        let io = |e| self.io(meta, "copying the hard link target", e);
        std::io::copy(&mut from, &mut to).map_err(io)?;
        crate::fs_clone::copy_xattrs(&from, &to).map_err(io)?;
        if self.opts.chown {
            rustix::fs::fchown(
                &to,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            )
            .map_err(|e| self.io(meta, "chown", e))?;
        }
        rustix::fs::fchmod(&to, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(|e| self.io(meta, "chmod", e))?;
        rustix::fs::futimens(
            &to,
            &timestamps((st.st_mtime as i64, st.st_mtime_nsec as u32)),
        )
        .map_err(|e| self.io(meta, "setting mtime", e))?;
        rustix::fs::renameat(parent, tmp.as_os_str(), parent, name)
            .map_err(|e| self.io(meta, "replacing the hard link target", e))
    }

    /// Read the rest of an entry's body without writing it; its length must be the entry's.
    fn drain(&mut self, meta: &EntryMeta, body: &mut dyn Read) -> Result<()> {
        self.stream_body(meta, body, "reading", |_| Ok(()))
            .map(|_| ())
    }

    /// Read an entry's body to its end in chunks of the extractor's buffer, handing each to
    /// `out` (whose failure is an `op` error on the entry); returns the bytes read, which
    /// must be the entry's size.
    fn stream_body(
        &mut self,
        meta: &EntryMeta,
        body: &mut dyn Read,
        op: &str,
        mut out: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::from_io(
                        format!("layer {}: reading the tar stream", self.layer),
                        e,
                    ))
                }
            };
            out(&self.buf[..n]).map_err(|e| self.io(meta, op, e))?;
            total += n as u64;
        }
        if total != meta.size {
            return Err(self.bad(
                meta,
                format!(
                    "the tar stream ends after {total} of {} content bytes",
                    meta.size
                ),
            ));
        }
        Ok(total)
    }

    /// Create the regular file `parent/name` with `mode` (replacing what is in the way).
    fn create_file(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        mode: u32,
    ) -> Result<OwnedFd> {
        self.create_replacing(meta, parent, name, "creating file", |p, n| {
            rustix::fs::openat(
                p,
                n,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(mode),
            )
        })
    }

    /// Create a node at `parent/name` with `create`; when something is already there
    /// (`EEXIST`), remove it and create again. Trying first saves the probe in a new layer,
    /// where nothing is ever in the way.
    fn create_replacing<T>(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        op: &str,
        mut create: impl FnMut(&Dir, &OsStr) -> rustix::io::Result<T>,
    ) -> Result<T> {
        match create(parent, name) {
            Err(Errno::EXIST) => {
                self.remove_existing(meta, parent, name, &meta.path)?;
                create(parent, name).map_err(|e| self.io(meta, op, e))
            }
            r => r.map_err(|e| self.io(meta, op, e)),
        }
    }

    fn regular(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        body: &mut dyn Read,
    ) -> Result<()> {
        // Created with its final mode when the umask leaves that mode alone and there are no
        // setuid/setgid/sticky bits (which chown would clear): then no fchmod is needed.
        let exact = meta.mode & 0o7000 == 0 && self.umask.is_some_and(|m| meta.mode & m == 0);
        let create_mode = if exact { meta.mode & 0o777 } else { 0o600 };
        let sharing = self.sharing;
        let origin = sharing.and_then(|s| s.open(&meta.raw_name, meta.size));
        let mut created = None;
        if let (Some(s), Some(src)) = (sharing, &origin) {
            let cascade = &s.cascade;
            if cascade.may_reflink() {
                let fd = self.create_file(meta, parent, name, create_mode)?;
                if cascade
                    .try_reflink(src, &fd)
                    .map_err(|e| self.io(meta, "cloning (FICLONE) file", e))?
                {
                    return self.placed_from_origin(
                        meta,
                        parent,
                        fd,
                        body,
                        cascade,
                        Method::Reflink,
                        exact,
                    );
                }
                created = Some(fd);
            }
            // A hard link shares the inode itself: only when it already has exactly the
            // entry's metadata, and only once reflinks turned out unavailable.
            if s.hard_links && cascade.may_hardlink() && self.wanted_agrees(meta, src)? {
                if created.take().is_some() {
                    rustix::fs::unlinkat(parent, name, AtFlags::empty())
                        .map_err(|e| self.io(meta, "removing", e))?;
                } else {
                    // Nothing was created yet: clear the way as create_file would.
                    self.remove_existing(meta, parent, name, &meta.path)?;
                }
                if cascade
                    .try_hardlink_fd(src.as_fd(), parent, name)
                    .map_err(|e| self.io(meta, "hard-linking file", e))?
                {
                    self.drain(meta, body)?;
                    cascade.record(Method::Hardlink, meta.size);
                    self.foreign.insert(meta.path.clone());
                    self.stats.files += 1;
                    self.stats.file_bytes += meta.size;
                    return Ok(());
                }
            }
        }
        let fd = match created {
            Some(fd) => fd,
            None => self.create_file(meta, parent, name, create_mode)?,
        };
        // No reflink, no hard link: the kernel copies the origin's bytes (the stream's are
        // read and checked all the same).
        if let (Some(s), Some(src)) = (sharing, &origin) {
            if s.cascade
                .try_copy_range(src, &fd, meta.size)
                .map_err(|e| self.io(meta, "copying (copy_file_range) file", e))?
            {
                return self.placed_from_origin(
                    meta,
                    parent,
                    fd,
                    body,
                    &s.cascade,
                    Method::Copy,
                    exact,
                );
            }
        }
        let mut file = std::fs::File::from(fd);
        let written = self.stream_body(meta, body, "writing file", |b| file.write_all(b))?;
        if let Some(s) = sharing.filter(|_| meta.size > 0) {
            s.cascade.record(Method::Copy, written);
        }
        self.finish_regular(meta, parent, file, written, exact)
    }

    /// Owner, mode, xattrs and mtime of a regular file this layer wrote (or reflinked).
    /// A file whose bytes the kernel placed from its origin (`method`: reflink or
    /// `copy_file_range`): the entry's body is still read to its end (the stream is verified
    /// whole), the method counted, and the file finished as any regular file.
    #[allow(clippy::too_many_arguments)]
    fn placed_from_origin(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        fd: OwnedFd,
        body: &mut dyn Read,
        cascade: &Cascade,
        method: Method,
        exact: bool,
    ) -> Result<()> {
        self.drain(meta, body)?;
        cascade.record(method, meta.size);
        self.finish_regular(meta, parent, std::fs::File::from(fd), meta.size, exact)
    }

    fn finish_regular(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        file: std::fs::File,
        written: u64,
        exact: bool,
    ) -> Result<()> {
        // A new file already belongs to the effective uid, and to the effective gid when its
        // directory's group is that gid.
        if self.opts.chown && !(self.uid_gid(meta)? == self.ids && self.plain_gid(parent)) {
            let (u, g) = self.owner(meta)?;
            rustix::fs::fchown(&file, u, g).map_err(|e| self.io(meta, "chown", e))?;
        }
        // After chown, which clears setuid/setgid.
        if !exact {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                .map_err(|e| self.io(meta, "chmod", e))?;
        }
        self.set_xattrs(meta, XattrTarget::Fd(file.as_fd()))?;
        rustix::fs::futimens(&file, &timestamps((meta.mtime, meta.mtime_nsec)))
            .map_err(|e| self.io(meta, "setting mtime", e))?;
        self.stats.files += 1;
        self.stats.file_bytes += written;
        Ok(())
    }

    fn directory(&mut self, meta: &EntryMeta) -> Result<()> {
        let path = &meta.path;
        let fd = if path.as_os_str().is_empty() {
            self.open_dir_fd(meta, path)?
        } else {
            let (parent, name) = self.parent_of(meta, path)?;
            // mkdir first: in a new layer the directory is almost never there yet.
            let created = match rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(0o700)) {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(self.io(meta, "creating directory", e)),
            };
            // A directory just made, with no xattrs to set, needs no fd: owner by name (never
            // followed), and none at all when it already has the tar's owner.
            if created && meta.xattrs.is_empty() {
                if self.opts.chown && !(self.uid_gid(meta)? == self.ids && self.plain_gid(&parent))
                {
                    let (u, g) = self.owner(meta)?;
                    rustix::fs::chownat(&*parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| self.io(meta, "chown", e))?;
                }
                self.deferred.insert(
                    path.clone(),
                    DirMeta {
                        mode: meta.mode,
                        mtime: (meta.mtime, meta.mtime_nsec),
                    },
                );
                return Ok(());
            }
            match rustix::fs::openat(&*parent, name, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                // Something other than a directory (a symlink, a file) is in the way.
                Err(Errno::LOOP | Errno::NOTDIR) if !created => {
                    self.remove_existing(meta, &parent, name, path)?;
                    self.mkdir(meta, &parent, name)?;
                    rustix::fs::openat(&*parent, name, dir_flags(), Mode::empty())
                        .map_err(|e| self.io(meta, "opening directory", e))?
                }
                Err(e) => return Err(self.io(meta, "opening directory", e)),
            }
        };
        if self.opts.chown {
            let (u, g) = self.owner(meta)?;
            rustix::fs::fchown(&fd, u, g).map_err(|e| self.io(meta, "chown", e))?;
        }
        self.set_xattrs(meta, XattrTarget::Fd(fd.as_fd()))?;
        self.deferred.insert(
            path.clone(),
            DirMeta {
                mode: meta.mode,
                mtime: (meta.mtime, meta.mtime_nsec),
            },
        );
        Ok(())
    }

    fn mkdir(&self, meta: &EntryMeta, parent: &Dir, name: &OsStr) -> Result<()> {
        // Owner-writable until the deferred chmod at the end.
        rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.io(meta, "creating directory", e))
    }

    /// Apply directory modes and mtimes, deepest first.
    fn finish(self) -> Result<ExtractStats> {
        let io = |path: &Path, op: &str, e: io::Error| Error::Io {
            context: format!("layer {}: {op} directory {:?}", self.layer, path.display()),
            source: e,
        };
        // Siblings come one after the other (deepest first): their parent stays open.
        let mut parent: Option<(&Path, Dir)> = None;
        for (path, m) in self.deferred.iter().rev() {
            let fd = if path.as_os_str().is_empty() {
                rustix::fs::openat(self.dest, ".", dir_flags(), Mode::empty())
                    .map_err(|e| io(path, "opening", e.into()))?
            } else {
                let parent_path = path.parent().unwrap_or(Path::new(""));
                if parent.as_ref().is_none_or(|(p, _)| *p != parent_path) {
                    let d = open_rel_dir(self.dest, parent_path)
                        .map_err(|e| io(path, "opening the parent of", e))?;
                    parent = Some((parent_path, d));
                }
                let (_, parent_dir) = parent.as_ref().expect("just opened");
                let name = path.file_name().unwrap_or_default();
                match rustix::fs::openat(parent_dir, name, dir_flags(), Mode::empty()) {
                    Ok(fd) => fd,
                    // Replaced by a later entry of a kind that is not a directory.
                    Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => continue,
                    Err(e) => return Err(io(path, "opening", e.into())),
                }
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(m.mode))
                .map_err(|e| io(path, "chmod", e.into()))?;
            rustix::fs::futimens(&fd, &timestamps(m.mtime))
                .map_err(|e| io(path, "setting mtime of", e.into()))?;
        }
        Ok(self.stats)
    }
}
