//! Safe reading and extraction of layer tars.
//!
//! Every store that unpacks a layer (containers-storage `diff/` dirs, flattened root
//! filesystems, ostree checkouts later) goes through this module, so the rules for untrusted
//! tars live in one place. Parsing uses the `tar` crate (ustar, PAX incl. `SCHILY.xattr.*`, GNU
//! long names/links); the walk is [`crate::tar_split`]'s, so a tar-split can be recorded in the
//! same pass and the input is always read to EOF (a wrapping
//! [`VerifiedReader`](crate::digest::VerifiedReader) sees every byte and checks the digest).
//!
//! Extraction ([`extract_layer`]), per entry:
//! 1. Parse the header into an [`EntryMeta`]: the path is normalised ([`normalize_path`]:
//!    leading `/` and `./` dropped, `..` resolved lexically, anything escaping the root or
//!    containing NUL rejected); `.wh.*` names are classified as whiteouts.
//! 2. Reject duplicates when asked (containers-storage cannot store a tar that lists a path
//!    twice); otherwise the last entry wins.
//! 3. Create missing parent directories (0755). Parents are opened through `cap_std::fs::Dir`
//!    relative to the destination, which follows symlinks only while they stay inside it: an
//!    entry below a symlink pointing outside (`a -> /`, then `a/etc/passwd`) fails with
//!    [`Error::BadTarEntry`] instead of writing outside. The final component is always created
//!    with `*at` calls on the parent's fd and is never followed.
//! 4. Replace whatever is at the path (unless both are directories: then metadata is updated),
//!    create the node (regular file streamed with `O_EXCL`, directory, symlink as-is,
//!    hard link with `linkat` inside the destination, device with `mknodat`, fifo) and apply
//!    owner, then mode (chown clears setuid), then xattrs, then mtime (nanoseconds from PAX).
//! 5. Whiteouts per [`WhiteoutMode`].
//! 6. At the end, directory modes and mtimes are applied deepest first, so a 0555 directory does
//!    not block its children and creating children does not disturb the parents' mtimes.
//!
//! Opaque directories in [`WhiteoutMode::Apply`]: the opaque marker must hide what *earlier*
//! layers put in the directory but keep this layer's own entries in it, in whatever order the
//! tar lists them. The extractor remembers every path of the current layer; when the marker is
//! seen it removes each child of the directory that is neither one of those paths nor an
//! ancestor of one (descending into kept directories, so an older file inside a directory this
//! layer also lists is removed too). Entries listed after the marker are created afterwards and
//! need no protection. A plain whiteout `.wh.NAME` is handled the same way for `NAME` (removed
//! entirely unless this layer itself lists `NAME` or something under it), following the OCI
//! rule that a whiteout only hides content of lower layers. This is containers-storage's
//! `UnpackLayer` approach.
//!
//! Hard links must point at something already extracted in the destination: for per-layer
//! directories that is this layer; for [`WhiteoutMode::Apply`] onto a root filesystem it may
//! be a file from an earlier layer. The link shares its target's inode, whose metadata came
//! from the target's own entry; the link header's metadata is not applied again.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::tar_split::{self, Body, SplitEntry, TarSplitWriter};

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with content.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink {
        /// The link target exactly as in the tar (unchecked: symlinks may point anywhere; they
        /// are never followed during extraction).
        target: PathBuf,
    },
    /// A hard link to an earlier entry.
    Hardlink {
        /// The target, normalised like entry paths.
        target: PathBuf,
    },
    /// A character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// `dir/.wh.NAME`: deletes `dir/NAME` of lower layers.
    Whiteout {
        /// The path that is deleted, e.g. `etc/gone` for `etc/.wh.gone`.
        target: PathBuf,
    },
    /// `dir/.wh..wh..opq`: hides everything lower layers have in `dir`.
    OpaqueWhiteout {
        /// The opaque directory (empty path: the root).
        dir: PathBuf,
    },
}

/// A parsed tar entry header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Normalised relative path (empty for the root directory).
    pub path: PathBuf,
    /// The name as written in the tar (after PAX/GNU long-name resolution).
    pub raw_name: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits incl. setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner (PAX `uid` applied).
    pub uid: u64,
    /// Group (PAX `gid` applied).
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time (from PAX `mtime`, else 0).
    pub mtime_nsec: u32,
    /// Content size in bytes.
    pub size: u64,
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// How whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Kernel overlayfs format: `.wh.NAME` becomes a 0:0 character device `NAME`,
    /// `.wh..wh..opq` sets `opaque_xattr = "y"` on its directory.
    Overlay {
        /// `trusted.overlay.opaque` (root) or `user.overlay.opaque` (rootless).
        opaque_xattr: String,
    },
    /// Keep `.wh.*` entries as the plain files they are in the tar (fuse-overlayfs stores).
    Files,
    /// Flatten: delete the whiteouted path / empty the opaque directory of everything earlier
    /// layers put there (unpacking a root filesystem layer by layer into one directory).
    Apply,
}

impl WhiteoutMode {
    /// [`WhiteoutMode::Overlay`] with the opaque xattr the kernel honours for this user:
    /// `trusted.overlay.opaque` as root, `user.overlay.opaque` otherwise.
    pub fn overlay_for_current_user() -> Self {
        let opaque_xattr = if is_root() {
            "trusted.overlay.opaque"
        } else {
            "user.overlay.opaque"
        };
        WhiteoutMode::Overlay {
            opaque_xattr: opaque_xattr.into(),
        }
    }
}

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

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Normalise a tar entry name: strip leading `/` and `./`, collapse `.` and empty components,
/// resolve `..` lexically, and reject anything that escapes the root or contains NUL. The root
/// itself (`./`, `/`, empty) gives an empty path.
pub fn normalize_path(raw: &[u8]) -> Result<PathBuf> {
    normalize(raw).map_err(|reason| Error::BadTarEntry {
        layer: "(unknown)".into(),
        entry: String::from_utf8_lossy(raw).into_owned(),
        reason,
    })
}

fn normalize(raw: &[u8]) -> std::result::Result<PathBuf, String> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("the path escapes the layer root through '..'".into());
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(PathBuf::from(OsString::from_vec(parts.join(&b'/'))))
}

/// Node type of an entry, whiteout or not (what [`WhiteoutMode::Files`] extracts).
#[derive(Debug, Clone)]
enum Node {
    Regular,
    Directory,
    Symlink(PathBuf),
    Hardlink(PathBuf),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

fn bad(layer: &str, raw_name: &[u8], reason: impl Into<String>) -> Error {
    Error::BadTarEntry {
        layer: layer.to_owned(),
        entry: String::from_utf8_lossy(raw_name).into_owned(),
        reason: reason.into(),
    }
}

/// Parse PAX `mtime` (`[-]SECONDS[.FRACTION]`) into seconds and nanoseconds.
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(if !neg {
        (secs, nsec)
    } else if nsec == 0 {
        (-secs, 0)
    } else {
        (-secs - 1, 1_000_000_000 - nsec)
    })
}

/// Parse an entry's header; `None` for PAX global headers (nothing to extract).
fn parse_entry<R: Read>(
    entry: &mut SplitEntry<'_, R>,
    body: Body,
    layer: &str,
) -> Result<Option<(EntryMeta, Node)>> {
    if body == Body::GlobalHeader {
        return Ok(None);
    }
    let raw_name = entry.path_bytes().into_owned();
    let err = |reason: String| bad(layer, &raw_name, reason);
    let path = normalize(&raw_name).map_err(err)?;
    let header = entry.header();
    // A numeric field left blank (NULs/spaces) reads as 0, as Go's archive/tar does; anything
    // else that does not parse is an error.
    let numeric = |what: &str, range: std::ops::Range<usize>, v: io::Result<u64>| match v {
        Ok(v) => Ok(v),
        Err(_)
            if header.as_bytes()[range]
                .iter()
                .all(|&b| b == 0 || b == b' ') =>
        {
            Ok(0)
        }
        Err(e) => Err(bad(layer, &raw_name, format!("bad {what}: {e}"))),
    };
    let device = |h: &tar::Header| -> Result<(u32, u32)> {
        let major = numeric(
            "device major",
            329..337,
            h.device_major().map(|v| v.unwrap_or(0).into()),
        )?;
        let minor = numeric(
            "device minor",
            337..345,
            h.device_minor().map(|v| v.unwrap_or(0).into()),
        )?;
        // Both fields are 8 octal digits, so they fit in u32.
        Ok((major as u32, minor as u32))
    };
    use tar::EntryType as T;
    let node = match header.entry_type() {
        T::Regular if tar_split::is_legacy_dir(header, &raw_name) => Node::Directory,
        T::Regular | T::Continuous => Node::Regular,
        T::Directory => Node::Directory,
        T::Symlink => {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            if target.is_empty() {
                return Err(err("symlink without a target".into()));
            }
            if target.contains(&0) {
                return Err(err("symlink target contains a NUL byte".into()));
            }
            Node::Symlink(PathBuf::from(OsString::from_vec(target)))
        }
        T::Link => {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            let target = normalize(&target).map_err(|r| {
                err(format!(
                    "hard link target {:?}: {r}",
                    String::from_utf8_lossy(&target)
                ))
            })?;
            if target.as_os_str().is_empty() {
                return Err(err("hard link to the layer root".into()));
            }
            Node::Hardlink(target)
        }
        T::Char => {
            let (ma, mi) = device(header)?;
            Node::Char(ma, mi)
        }
        T::Block => {
            let (ma, mi) = device(header)?;
            Node::Block(ma, mi)
        }
        T::Fifo => Node::Fifo,
        other => {
            return Err(err(format!(
                "unsupported tar entry type {:?} ({other:?})",
                char::from(header.as_bytes()[156])
            )))
        }
    };
    let mode = numeric("mode", 100..108, header.mode().map(u64::from))? as u32 & 0o7777;
    let uid = numeric("uid", 108..116, header.uid())?;
    let gid = numeric("gid", 116..124, header.gid())?;
    let header_mtime = numeric("mtime", 136..148, header.mtime())?;
    let mut mtime = (
        i64::try_from(header_mtime)
            .map_err(|_| err(format!("mtime {header_mtime} out of range")))?,
        0u32,
    );
    let size = entry.size();
    let header_err = |what: &str, e: io::Error| bad(layer, &raw_name, format!("bad {what}: {e}"));
    let mut xattrs = Vec::new();
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|e| header_err("PAX header", e))?
    {
        for ext in pax {
            let ext = ext.map_err(|e| header_err("PAX record", e))?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes()).ok_or_else(|| {
                    err(format!(
                        "bad PAX mtime {:?}",
                        String::from_utf8_lossy(ext.value_bytes())
                    ))
                })?;
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let name =
                    std::str::from_utf8(name).map_err(|_| err("xattr name is not UTF-8".into()))?;
                if name.is_empty() || name.contains('\0') {
                    return Err(err(format!("bad xattr name {name:?}")));
                }
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    let base = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    let kind = if let Some(rest) = base.strip_prefix(b".wh.") {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if rest == b".wh..opq" {
            EntryKind::OpaqueWhiteout { dir }
        } else {
            if matches!(rest, b"" | b"." | b"..") {
                return Err(err("whiteout of an invalid name".into()));
            }
            EntryKind::Whiteout {
                target: dir.join(OsStr::from_bytes(rest)),
            }
        }
    } else {
        match &node {
            Node::Regular => EntryKind::Regular,
            Node::Directory => EntryKind::Directory,
            Node::Symlink(t) => EntryKind::Symlink { target: t.clone() },
            Node::Hardlink(t) => EntryKind::Hardlink { target: t.clone() },
            Node::Char(major, minor) => EntryKind::CharDevice {
                major: *major,
                minor: *minor,
            },
            Node::Block(major, minor) => EntryKind::BlockDevice {
                major: *major,
                minor: *minor,
            },
            Node::Fifo => EntryKind::Fifo,
        }
    };
    if path.as_os_str().is_empty() && !matches!(node, Node::Directory) {
        return Err(err("the layer root must be a directory".into()));
    }
    Ok(Some((
        EntryMeta {
            path,
            raw_name,
            kind,
            mode,
            uid,
            gid,
            mtime: mtime.0,
            mtime_nsec: mtime.1,
            size,
            xattrs,
        },
        node,
    )))
}

/// Walk the entries of a layer tar without extracting: `f` gets each entry's metadata and its
/// content (which it may read partly or not at all). PAX global headers are skipped. Entries
/// are validated as for extraction (paths normalised, escapes rejected). Reads the stream to
/// EOF.
pub fn read_entries<R: Read>(
    tar_stream: R,
    layer: &str,
    mut f: impl FnMut(&EntryMeta, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let no_split: Option<&mut TarSplitWriter<io::Sink>> = None;
    tar_split::split_entries(
        tar_stream,
        layer,
        no_split,
        |entry, body| match parse_entry(entry, body, layer)? {
            Some((meta, _)) => f(&meta, entry),
            None => Ok(()),
        },
    )?;
    Ok(())
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
    let mut x = Extractor {
        dest,
        opts,
        layer,
        root: is_root(),
        stats: ExtractStats::default(),
        seen: BTreeSet::new(),
        deferred: BTreeMap::new(),
        buf: vec![0u8; 128 * 1024],
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
struct DirMeta {
    mode: u32,
    mtime: (i64, u32),
}

struct Extractor<'a> {
    dest: &'a Dir,
    opts: &'a ExtractOptions,
    layer: &'a str,
    root: bool,
    stats: ExtractStats,
    /// Every path this layer lists so far (duplicates, and what Apply-mode whiteouts keep).
    seen: BTreeSet<PathBuf>,
    /// Directories of this layer whose mode and mtime are set at the end.
    deferred: BTreeMap<PathBuf, DirMeta>,
    buf: Vec<u8>,
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
    fn bad(&self, meta: &EntryMeta, reason: impl Into<String>) -> Error {
        bad(self.layer, &meta.raw_name, reason)
    }

    fn io(&self, meta: &EntryMeta, op: &str, e: impl Into<io::Error>) -> Error {
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
    fn open_dirs(&self, meta: &EntryMeta, dir: &Path) -> Result<Dir> {
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
    fn parent_of<'p>(&self, meta: &EntryMeta, path: &'p Path) -> Result<(Dir, &'p OsStr)> {
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
    fn remove_existing(
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

    fn owner(&self, meta: &EntryMeta) -> Result<(Option<Uid>, Option<Gid>)> {
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
        if !self.seen.insert(meta.path.clone()) && self.opts.reject_duplicates {
            return Err(self.bad(
                meta,
                "duplicate path in layer; containers-storage cannot store it (rebuild the \
                 image without listing a path twice)",
            ));
        }
        match (&meta.kind, &self.opts.whiteouts) {
            (EntryKind::Whiteout { target }, WhiteoutMode::Overlay { .. }) => {
                if meta.size > 0 {
                    return Err(self.bad(meta, "whiteout entry with content"));
                }
                self.overlay_whiteout(meta, target)
            }
            (EntryKind::OpaqueWhiteout { dir }, WhiteoutMode::Overlay { opaque_xattr }) => {
                let (_parent, _) = self.parent_of(meta, &meta.path)?;
                let fd = self.open_dir_fd(meta, dir)?;
                rustix::fs::fsetxattr(&fd, opaque_xattr.as_str(), b"y", XattrFlags::empty())
                    .map_err(|e| {
                        self.io(
                            meta,
                            &format!(
                                "setting {opaque_xattr} on {:?} (trusted.* needs root; rootless \
                             stores use user.overlay.opaque or WhiteoutMode::Files)",
                                dir.display()
                            ),
                            e,
                        )
                    })
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

    /// A real (non-`O_PATH`) fd for directory `dir`, which must exist and not be a symlink.
    fn open_dir_fd(&self, meta: &EntryMeta, dir: &Path) -> Result<OwnedFd> {
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

    fn overlay_whiteout(&mut self, meta: &EntryMeta, target: &Path) -> Result<()> {
        let (parent, name) = self.parent_of(meta, target)?;
        self.remove_existing(meta, &parent, name, target)?;
        rustix::fs::mknodat(
            &parent,
            name,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| {
            self.io(
                meta,
                &format!(
                    "creating whiteout device {} (needs CAP_MKNOD or Linux >= 5.8; a \
                         fuse-overlayfs store keeps .wh. files instead)",
                    target.display()
                ),
                e,
            )
        })?;
        if self.opts.chown {
            let (u, g) = self.owner(meta)?;
            rustix::fs::chownat(&parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io(meta, "chown whiteout", e))?;
        }
        Ok(())
    }

    /// Whether this layer lists `path` or something below it.
    fn listed(&self, path: &Path) -> bool {
        self.seen.contains(path)
            || self
                .seen
                .range::<Path, _>((Bound::Excluded(path), Bound::Unbounded))
                .next()
                .is_some_and(|p| p.starts_with(path))
    }

    /// Apply mode: remove `path` as far as earlier layers put it there.
    fn prune(&mut self, meta: &EntryMeta, path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return self.prune_children(meta, path);
        }
        let st = match self.dest.symlink_metadata(path) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // An ancestor is not a directory (or is a symlink leading out): nothing to remove.
            Err(_) => return Ok(()),
        };
        if !self.listed(path) {
            let parent = self.open_dirs(meta, path.parent().unwrap_or(Path::new("")))?;
            let name = path.file_name().unwrap_or_default();
            return self.remove_existing(meta, &parent, name, path);
        }
        if st.is_dir() {
            self.prune_children(meta, path)?;
        }
        Ok(())
    }

    /// Apply mode: prune every child of directory `dir` (not following a symlink at `dir`).
    fn prune_children(&mut self, meta: &EntryMeta, dir: &Path) -> Result<()> {
        let d = if dir.as_os_str().is_empty() {
            self.dest
                .try_clone()
                .map_err(|e| self.io(meta, "reopening the destination", e))?
        } else {
            match self.dest.symlink_metadata(dir) {
                Ok(st) if st.is_dir() => {}
                _ => return Ok(()),
            }
            self.dest
                .open_dir(dir)
                .map_err(|e| self.io(meta, &format!("opening {}", dir.display()), e))?
        };
        let mut names = Vec::new();
        for e in d
            .entries()
            .map_err(|e| self.io(meta, &format!("listing {}", dir.display()), e))?
        {
            let e = e.map_err(|e| self.io(meta, &format!("listing {}", dir.display()), e))?;
            names.push(e.file_name());
        }
        drop(d);
        for name in names {
            self.prune(meta, &dir.join(name))?;
        }
        Ok(())
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
            Node::Regular => {
                self.remove_existing(meta, &parent, name, path)?;
                self.regular(meta, &parent, name, body)
            }
            Node::Symlink(target) => {
                self.remove_existing(meta, &parent, name, path)?;
                rustix::fs::symlinkat(target.as_os_str(), &parent, name)
                    .map_err(|e| self.io(meta, "creating symlink", e))?;
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
                self.remove_existing(meta, &parent, name, path)?;
                rustix::fs::linkat(&tparent, tname, &parent, name, AtFlags::empty()).map_err(
                    |e| match e {
                        Errno::NOENT => missing(self),
                        e => self.io(meta, &format!("linking to {}", target.display()), e),
                    },
                )?;
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
                self.remove_existing(meta, &parent, name, path)?;
                rustix::fs::mknodat(
                    &parent,
                    name,
                    ft,
                    Mode::from_raw_mode(meta.mode),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| self.io(meta, "creating device node (needs root)", e))?;
                self.finish_node(meta, &parent, name, true)
            }
            Node::Fifo => {
                self.remove_existing(meta, &parent, name, path)?;
                rustix::fs::mknodat(
                    &parent,
                    name,
                    FileType::Fifo,
                    Mode::from_raw_mode(meta.mode),
                    0,
                )
                .map_err(|e| self.io(meta, "creating fifo", e))?;
                self.finish_node(meta, &parent, name, true)
            }
        }
    }

    fn regular(
        &mut self,
        meta: &EntryMeta,
        parent: &Dir,
        name: &OsStr,
        body: &mut dyn Read,
    ) -> Result<()> {
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io(meta, "creating file", e))?;
        let mut file = std::fs::File::from(fd);
        let mut written = 0u64;
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
            file.write_all(&self.buf[..n])
                .map_err(|e| self.io(meta, "writing file", e))?;
            written += n as u64;
        }
        if written != meta.size {
            return Err(self.bad(
                meta,
                format!(
                    "the tar stream ends after {written} of {} content bytes",
                    meta.size
                ),
            ));
        }
        if self.opts.chown {
            let (u, g) = self.owner(meta)?;
            rustix::fs::fchown(&file, u, g).map_err(|e| self.io(meta, "chown", e))?;
        }
        // After chown, which clears setuid/setgid.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| self.io(meta, "chmod", e))?;
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
            match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) => {
                    self.remove_existing(meta, &parent, name, path)?;
                    self.mkdir(meta, &parent, name)?;
                }
                Err(Errno::NOENT) => self.mkdir(meta, &parent, name)?,
                Err(e) => return Err(self.io(meta, "stat", e)),
            }
            rustix::fs::openat(&parent, name, dir_flags(), Mode::empty())
                .map_err(|e| self.io(meta, "opening directory", e))?
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
        for (path, m) in self.deferred.iter().rev() {
            let fd = if path.as_os_str().is_empty() {
                rustix::fs::openat(self.dest, ".", dir_flags(), Mode::empty())
                    .map_err(|e| io(path, "opening", e.into()))?
            } else {
                let parent = open_rel_dir(self.dest, path.parent().unwrap_or(Path::new("")))
                    .map_err(|e| io(path, "opening the parent of", e))?;
                let name = path.file_name().unwrap_or_default();
                match rustix::fs::openat(&parent, name, dir_flags(), Mode::empty()) {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use cap_std::ambient_authority;
    use tar::EntryType;

    use super::*;
    use crate::digest::{sha256_of, VerifiedReader};
    use crate::tar_split::test_tar::{header, TarBuf};
    use crate::tar_split::{Assembler, TarSplitWriter};

    struct Dest {
        tmp: tempfile::TempDir,
        dir: Dir,
    }

    impl Dest {
        fn new() -> Dest {
            let tmp = tempfile::tempdir().unwrap();
            fs::create_dir(tmp.path().join("dest")).unwrap();
            fs::create_dir(tmp.path().join("outside")).unwrap();
            let dir = Dir::open_ambient_dir(tmp.path().join("dest"), ambient_authority()).unwrap();
            Dest { tmp, dir }
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.tmp.path().join("dest").join(rel)
        }
        fn outside(&self) -> PathBuf {
            self.tmp.path().join("outside")
        }
        fn lmeta(&self, rel: &str) -> fs::Metadata {
            fs::symlink_metadata(self.path(rel)).unwrap()
        }
        fn exists(&self, rel: &str) -> bool {
            fs::symlink_metadata(self.path(rel)).is_ok()
        }
    }

    /// An xattr of `path` (not following a symlink), `Err` when absent.
    fn xattr(path: &Path, name: &str) -> std::result::Result<Vec<u8>, Errno> {
        let mut buf = [0u8; 4096];
        let n = rustix::fs::lgetxattr(path, name, &mut buf[..])?;
        Ok(buf[..n].to_vec())
    }

    fn opts(whiteouts: WhiteoutMode) -> ExtractOptions {
        ExtractOptions::for_current_user(whiteouts)
    }

    fn extract(tar: &[u8], d: &Dest, o: &ExtractOptions) -> Result<ExtractStats> {
        extract_layer::<_, Vec<u8>>(tar, &d.dir, o, "test-layer", None)
    }

    fn skip_unless_root(test: &str) -> bool {
        if is_root() {
            return false;
        }
        println!("skipping {test}: needs root (euid 0)");
        true
    }

    fn bad_reason(err: Error) -> (String, String) {
        match err {
            Error::BadTarEntry { entry, reason, .. } => (entry, reason),
            other => panic!("expected BadTarEntry, got {other}"),
        }
    }

    fn owned(mut h: tar::Header, uid: u64, gid: u64) -> tar::Header {
        h.set_uid(uid);
        h.set_gid(gid);
        h
    }

    #[test]
    fn normalize_rules() {
        let n = |s: &[u8]| normalize_path(s).map(|p| p.into_os_string().into_vec());
        assert_eq!(n(b"./a/b").unwrap(), b"a/b");
        assert_eq!(n(b"/abs/x").unwrap(), b"abs/x");
        assert_eq!(n(b"a//./b/../c/").unwrap(), b"a/c");
        assert_eq!(n(b"./").unwrap(), b"");
        assert_eq!(n(b"").unwrap(), b"");
        assert_eq!(n(b"caf\xe9").unwrap(), b"caf\xe9");
        assert!(n(b"../x").is_err());
        assert!(n(b"a/../../x").is_err());
        assert!(n(b"/../x").is_err());
        let err = n(b"a\0b").unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
    }

    #[test]
    fn pax_time_parsing() {
        assert_eq!(
            parse_pax_time(b"1700000000.123456789"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(parse_pax_time(b"5.5"), Some((5, 500_000_000)));
        assert_eq!(parse_pax_time(b"42"), Some((42, 0)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"x"), None);
        assert_eq!(parse_pax_time(b"1.x"), None);
    }

    #[test]
    fn extracts_each_entry_kind() {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.raw(header(b"./", EntryType::Directory, 0, 0o751), b"");
        t.dir("etc/");
        t.pax(&[
            ("mtime", b"1600000000.25"),
            ("SCHILY.xattr.user.note", b"hi\0there"),
        ]);
        t.entry(
            b"etc/hosts",
            EntryType::Regular,
            b"127.0.0.1 localhost\n",
            0o640,
        );
        t.file("etc/empty", b"");
        t.link("etc/rel", EntryType::Symlink, "hosts");
        t.link("etc/abs", EntryType::Symlink, "/etc/passwd");
        t.link("etc/dangling", EntryType::Symlink, "../nowhere");
        // A hard link header carries the file's metadata, as tar writers do (it is applied
        // to the shared inode, as containers/storage does).
        t.pax(&[("mtime", b"1600000000.25")]);
        let mut hard = header(b"etc/hard", EntryType::Link, 0, 0o640);
        hard.set_link_name("./etc/hosts").unwrap();
        t.raw(hard, b"");
        t.entry(b"fifo", EntryType::Fifo, b"", 0o620);
        let mut dev = header(b"dev/null", EntryType::Char, 0, 0o666);
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        t.raw(dev, b"");
        let mut blk = header(b"dev/loop0", EntryType::Block, 0, 0o660);
        blk.set_device_major(7).unwrap();
        blk.set_device_minor(0).unwrap();
        t.raw(blk, b"");
        t.file("a/b/c/deep", b"deep");
        let tar = t.finish(Some(10240));
        let stats = extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap();

        assert_eq!(
            fs::read(d.path("etc/hosts")).unwrap(),
            b"127.0.0.1 localhost\n"
        );
        let m = d.lmeta("etc/hosts");
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 250_000_000));
        let note = xattr(&d.path("etc/hosts"), "user.note").unwrap();
        assert_eq!(note, b"hi\0there");
        assert_eq!(d.lmeta("etc/empty").len(), 0);
        assert_eq!(
            fs::read_link(d.path("etc/rel")).unwrap(),
            Path::new("hosts")
        );
        assert_eq!(
            fs::read_link(d.path("etc/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs::read_link(d.path("etc/dangling")).unwrap(),
            Path::new("../nowhere")
        );
        assert_eq!(d.lmeta("etc/hard").ino(), m.ino());
        assert!(d.lmeta("fifo").file_type().is_fifo());
        assert_eq!(d.lmeta("fifo").mode() & 0o7777, 0o620);
        assert_eq!(fs::read(d.path("a/b/c/deep")).unwrap(), b"deep");
        assert_eq!(
            d.lmeta("a/b").mode() & 0o7777,
            0o755,
            "implicit parents are 0755"
        );
        assert_eq!(
            d.lmeta("").mode() & 0o7777,
            0o751,
            "the root entry applies to dest"
        );
        assert_eq!(d.lmeta("etc").mtime(), 1_700_000_000);
        assert_eq!(stats.files, 3);
        assert_eq!(stats.file_bytes, 24);
        assert_eq!(stats.entries, 12);
        if is_root() {
            let null = d.lmeta("dev/null");
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
            assert!(d.lmeta("dev/loop0").file_type().is_block_device());
            assert_eq!(stats.skipped_devices, 0);
        } else {
            println!("device nodes not checked: needs root");
            assert_eq!(stats.skipped_devices, 2);
        }
    }

    #[test]
    fn devices_off_are_skipped_and_counted() {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.entry(b"dev/null", EntryType::Char, b"", 0o666);
        t.file("f", b"x");
        let mut o = opts(WhiteoutMode::Files);
        o.devices = false;
        let stats = extract(&t.finish(None), &d, &o).unwrap();
        assert_eq!(stats.skipped_devices, 1);
        assert!(!d.exists("dev/null"));
        assert!(d.exists("f"));
    }

    #[test]
    fn setuid_survives_chown() {
        if skip_unless_root("setuid_survives_chown") {
            return;
        }
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.raw(
            owned(header(b"bin/su", EntryType::Regular, 4, 0o4755), 1000, 1001),
            b"su!\n",
        );
        t.raw(
            owned(header(b"bin/sg", EntryType::Regular, 4, 0o2755), 0, 50),
            b"sg!\n",
        );
        t.raw(
            owned(header(b"tmp/", EntryType::Directory, 0, 0o1777), 0, 0),
            b"",
        );
        t.raw(
            owned(
                header(b"home/u/", EntryType::Directory, 0, 0o700),
                1000,
                1000,
            ),
            b"",
        );
        let mut l = owned(
            header(b"home/u/link", EntryType::Symlink, 0, 0o777),
            1000,
            1000,
        );
        l.set_link_name("../../tmp").unwrap();
        t.raw(l, b"");
        t.raw(
            owned(header(b".wh.x", EntryType::Regular, 0, 0o644), 4242, 4242),
            b"",
        );
        let stats = extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
        let su = d.lmeta("bin/su");
        assert_eq!(
            (su.mode() & 0o7777, su.uid(), su.gid()),
            (0o4755, 1000, 1001)
        );
        let sg = d.lmeta("bin/sg");
        assert_eq!((sg.mode() & 0o7777, sg.gid()), (0o2755, 50));
        assert_eq!(d.lmeta("tmp").mode() & 0o7777, 0o1777);
        let u = d.lmeta("home/u");
        assert_eq!((u.mode() & 0o7777, u.uid()), (0o700, 1000));
        assert_eq!(d.lmeta("home/u/link").uid(), 1000, "symlinks are lchowned");
        assert_eq!(
            stats.uids,
            BTreeSet::from([0, 1000]),
            ".wh. entries are not counted"
        );
        assert_eq!(stats.gids, BTreeSet::from([0, 50, 1000, 1001]));
    }

    #[test]
    fn symlink_xattrs_via_proc_or_skipped() {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.pax(&[
            ("SCHILY.xattr.trusted.t", b"on a symlink"),
            ("SCHILY.xattr.user.u", b"not allowed on symlinks"),
        ]);
        t.link("l", EntryType::Symlink, "/nowhere");
        let mut o = opts(WhiteoutMode::Files);
        let stats = extract(&t.finish(None), &d, &o).unwrap();
        assert!(xattr(&d.path("l"), "user.u").is_err());
        if is_root() {
            assert_eq!(xattr(&d.path("l"), "trusted.t").unwrap(), b"on a symlink");
            assert_eq!(stats.skipped_xattrs, 1);
        } else {
            println!("trusted.* xattr on a symlink not checked: needs root");
            assert_eq!(stats.skipped_xattrs, 2);
        }
        // xattrs off: nothing set, everything counted.
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.pax(&[("SCHILY.xattr.user.a", b"1")]);
        t.file("f", b"");
        o.xattrs = false;
        let stats = extract(&t.finish(None), &d, &o).unwrap();
        assert!(xattr(&d.path("f"), "user.a").is_err());
        assert_eq!(stats.skipped_xattrs, 1);
    }

    #[test]
    fn read_only_dirs_get_their_children_and_mtimes() {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.entry(b"ro/", EntryType::Directory, b"", 0o555);
        t.entry(b"ro/sub/", EntryType::Directory, b"", 0o500);
        t.file("ro/f", b"in a read-only dir");
        t.file("ro/sub/g", b"deeper");
        let stats = extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
        assert_eq!(stats.files, 2);
        assert_eq!(fs::read(d.path("ro/sub/g")).unwrap(), b"deeper");
        assert_eq!(d.lmeta("ro").mode() & 0o7777, 0o555);
        assert_eq!(d.lmeta("ro/sub").mode() & 0o7777, 0o500);
        assert_eq!(
            d.lmeta("ro").mtime(),
            1_700_000_000,
            "children did not bump the mtime"
        );
        assert_eq!(d.lmeta("ro/sub").mtime(), 1_700_000_000);
        // Let the temp dir be removed.
        fs::set_permissions(d.path("ro"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(d.path("ro/sub"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn whiteout_layer() -> Vec<u8> {
        let mut t = TarBuf::new();
        t.dir("etc/");
        t.raw(
            owned(
                header(b"etc/.wh.gone.txt", EntryType::Regular, 0, 0o644),
                7,
                8,
            ),
            b"",
        );
        t.dir("opq/");
        t.file("opq/.wh..wh..opq", b"");
        t.file("opq/b", b"b\n");
        t.file("new/.wh..wh..opq", b"");
        t.finish(Some(10240))
    }

    #[test]
    fn overlay_whiteouts() {
        if skip_unless_root("overlay_whiteouts (trusted.* xattrs, chown)") {
            return;
        }
        let d = Dest::new();
        let o = opts(WhiteoutMode::overlay_for_current_user());
        assert_eq!(
            o.whiteouts,
            WhiteoutMode::Overlay {
                opaque_xattr: "trusted.overlay.opaque".into()
            }
        );
        let stats = extract(&whiteout_layer(), &d, &o).unwrap();
        let gone = d.lmeta("etc/gone.txt");
        assert!(gone.file_type().is_char_device());
        assert_eq!((gone.rdev(), gone.mode() & 0o7777), (0, 0));
        assert_eq!((gone.uid(), gone.gid()), (7, 8));
        assert!(!d.exists("etc/.wh.gone.txt"));
        assert!(!d.exists("opq/.wh..wh..opq"));
        for dir in ["opq", "new"] {
            let v = xattr(&d.path(dir), "trusted.overlay.opaque").unwrap();
            assert_eq!(v, b"y", "{dir}");
        }
        assert_eq!(fs::read(d.path("opq/b")).unwrap(), b"b\n");
        assert_eq!(stats.uids, BTreeSet::from([0]));
    }

    #[test]
    fn overlay_mode_skips_smuggled_overlay_xattrs() {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.pax(&[
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.user.ok", b"1"),
        ]);
        t.file("f", b"x");
        let o = opts(WhiteoutMode::overlay_for_current_user());
        let stats = extract(&t.finish(None), &d, &o).unwrap();
        assert_eq!(stats.skipped_xattrs, 1);
        assert!(xattr(&d.path("f"), "trusted.overlay.redirect").is_err());
        assert_eq!(xattr(&d.path("f"), "user.ok").unwrap(), b"1");
    }

    #[test]
    fn files_whiteouts_stay_plain_files() {
        let d = Dest::new();
        extract(&whiteout_layer(), &d, &opts(WhiteoutMode::Files)).unwrap();
        for f in ["etc/.wh.gone.txt", "opq/.wh..wh..opq", "new/.wh..wh..opq"] {
            let m = d.lmeta(f);
            assert!(m.is_file() && m.len() == 0, "{f}");
        }
        assert!(!d.exists("etc/gone.txt"));
        assert!(xattr(&d.path("opq"), "trusted.overlay.opaque").is_err());
    }

    #[test]
    fn apply_whiteouts_flatten_and_keep_this_layers_entries() {
        let d = Dest::new();
        let mut o = opts(WhiteoutMode::Apply);
        o.reject_duplicates = false;
        let mut l1 = TarBuf::new();
        for f in [
            "etc/gone",
            "etc/keep",
            "opq/old",
            "opq/sub/older",
            "opq/sub2/x",
            "w/lower",
        ] {
            l1.file(f, f.as_bytes());
        }
        l1.link("opq/link", EntryType::Symlink, "/etc");
        extract(&l1.finish(None), &d, &o).unwrap();

        let mut l2 = TarBuf::new();
        l2.file("opq/new", b"listed before the marker");
        l2.dir("opq/sub/");
        l2.file("opq/.wh..wh..opq", b"");
        l2.file("opq/late", b"listed after the marker");
        l2.file("etc/.wh.gone", b"");
        l2.file("etc/.wh.never-existed", b"");
        l2.dir("w/");
        l2.file("w/mine", b"mine");
        l2.file(".wh.w", b"");
        extract(&l2.finish(None), &d, &o).unwrap();

        assert!(!d.exists("etc/gone"));
        assert!(d.exists("etc/keep"));
        assert!(!d.exists("etc/.wh.gone"));
        assert!(!d.exists("opq/.wh..wh..opq"));
        assert!(!d.exists("opq/old"));
        assert!(!d.exists("opq/link"));
        assert!(d.lmeta("opq/sub").is_dir());
        assert!(
            !d.exists("opq/sub/older"),
            "older content inside a re-listed dir is hidden"
        );
        assert!(!d.exists("opq/sub2"));
        assert_eq!(
            fs::read(d.path("opq/new")).unwrap(),
            b"listed before the marker"
        );
        assert_eq!(
            fs::read(d.path("opq/late")).unwrap(),
            b"listed after the marker"
        );
        assert_eq!(fs::read(d.path("w/mine")).unwrap(), b"mine");
        assert!(!d.exists("w/lower"), "the whiteout hides the lower w/ only");
        assert!(
            fs::metadata("/etc").is_ok(),
            "symlink targets are never followed"
        );
    }

    #[test]
    fn escapes_are_rejected() {
        for (name, what) in [(&b"../x"[..], "dotdot"), (b"a/../../x", "nested dotdot")] {
            let d = Dest::new();
            let mut t = TarBuf::new();
            t.entry(name, EntryType::Regular, b"evil", 0o644);
            let (entry, reason) =
                bad_reason(extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap_err());
            assert_eq!(entry.as_bytes(), name, "{what}");
            assert!(reason.contains("escapes"), "{what}: {reason}");
            assert!(!d.tmp.path().join("x").exists());
        }
        // Absolute names are made relative.
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.file("/abs/file", b"inside");
        extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
        assert_eq!(fs::read(d.path("abs/file")).unwrap(), b"inside");
    }

    #[test]
    fn symlink_parent_escape_writes_nothing_outside() {
        for target in ["ABSOLUTE", "../outside", "../../../../../../.."] {
            let d = Dest::new();
            let outside = d.outside();
            let target = if target == "ABSOLUTE" {
                outside.to_str().unwrap().to_owned()
            } else {
                target.to_owned()
            };
            let mut t = TarBuf::new();
            t.link("a", EntryType::Symlink, &target);
            let inner = if target.ends_with("..") {
                format!(
                    "a/{}",
                    outside.strip_prefix("/").unwrap().join("passwd").display()
                )
            } else {
                "a/passwd".to_owned()
            };
            t.file(&inner, b"pwned");
            let err = extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap_err();
            let (entry, reason) = bad_reason(err);
            assert_eq!(entry, inner);
            assert!(reason.contains("parent"), "{reason}");
            assert!(
                !outside.join("passwd").exists(),
                "wrote outside via {target}"
            );
        }
        // A symlink that stays inside is followed (containers-storage does the same).
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.dir("real/");
        t.link("alias", EntryType::Symlink, "real");
        t.file("alias/f", b"via symlink");
        extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
        assert_eq!(fs::read(d.path("real/f")).unwrap(), b"via symlink");
    }

    #[test]
    fn hardlink_header_metadata_applies_to_the_inode_like_containers_storage() {
        use std::os::unix::fs::PermissionsExt;
        let mut t = TarBuf::new();
        t.entry(b"su", EntryType::Regular, b"binary", 0o4755);
        let mut h = tar::Header::new_ustar();
        h.set_path("su-link").unwrap();
        h.set_entry_type(EntryType::Link);
        h.set_link_name("su").unwrap();
        h.set_mode(0o644);
        h.set_size(0);
        h.set_mtime(1_000_000);
        t.raw(h, b"");
        let d = Dest::new();
        extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
        // podman (containers/storage) stores 0644 here: the link header wins.
        assert_eq!(d.lmeta("su").permissions().mode() & 0o7777, 0o644);
        assert_eq!(d.lmeta("su-link").permissions().mode() & 0o7777, 0o644);
        assert_eq!(
            std::os::unix::fs::MetadataExt::mtime(&d.lmeta("su")),
            1_000_000
        );
    }

    #[test]
    fn hardlink_escapes_and_missing_targets_are_rejected() {
        for (target, needle) in [
            ("../../etc/passwd", "escapes"),
            ("nope", "does not exist"),
            ("dir", "is a directory"),
            ("h", "itself"),
        ] {
            let d = Dest::new();
            let mut t = TarBuf::new();
            t.dir("dir/");
            t.link("h", EntryType::Link, target);
            let (entry, reason) =
                bad_reason(extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap_err());
            assert_eq!(entry, "h");
            assert!(reason.contains(needle), "{target}: {reason}");
        }
        // A link whose target's parent is a symlink leading out is refused too.
        let d = Dest::new();
        fs::write(d.outside().join("secret"), b"s").unwrap();
        let mut t = TarBuf::new();
        t.link("out", EntryType::Symlink, d.outside().to_str().unwrap());
        t.link("h", EntryType::Link, "out/secret");
        assert!(extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).is_err());
        assert!(!d.exists("h"));
    }

    #[test]
    fn duplicates_rejected_or_last_wins() {
        let tar = {
            let mut t = TarBuf::new();
            t.file("a/f", b"first");
            t.file("./a/f", b"second");
            t.finish(None)
        };
        let d = Dest::new();
        let (entry, reason) =
            bad_reason(extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap_err());
        assert_eq!(entry, "./a/f");
        assert!(reason.contains("duplicate path in layer; containers-storage cannot store it"));

        let d = Dest::new();
        let mut o = opts(WhiteoutMode::Files);
        o.reject_duplicates = false;
        extract(&tar, &d, &o).unwrap();
        assert_eq!(fs::read(d.path("a/f")).unwrap(), b"second");

        // Last wins across kinds: a directory replaced by a file and vice versa.
        let mut t = TarBuf::new();
        t.entry(b"x/", EntryType::Directory, b"", 0o555);
        t.file("x/child", b"c");
        t.file("x", b"now a file");
        t.file("y", b"file");
        t.dir("y/");
        let d = Dest::new();
        extract(&t.finish(None), &d, &o).unwrap();
        assert_eq!(fs::read(d.path("x")).unwrap(), b"now a file");
        assert!(d.lmeta("y").is_dir());
    }

    #[test]
    fn stream_is_consumed_to_eof_and_verified() {
        let mut t = TarBuf::new();
        t.file("f", b"content");
        let mut tar = t.finish(Some(10240));
        tar.extend_from_slice(&[0u8; 4096]);
        let digest = sha256_of(&tar);
        let d = Dest::new();
        let mut v = VerifiedReader::new(tar.as_slice(), &digest, Some(tar.len() as u64), "layer 1")
            .unwrap();
        extract_layer::<_, Vec<u8>>(&mut v, &d.dir, &opts(WhiteoutMode::Files), "layer 1", None)
            .unwrap();
        assert!(v.is_verified(), "the trailing padding was read");
        assert_eq!(v.count(), tar.len() as u64);

        // A corrupt stream fails with the digest error, even though the tar itself parses.
        let wrong = sha256_of(b"something else");
        let d = Dest::new();
        let v = VerifiedReader::new(tar.as_slice(), &wrong, None, "layer 1").unwrap();
        let err =
            extract_layer::<_, Vec<u8>>(v, &d.dir, &opts(WhiteoutMode::Files), "layer 1", None)
                .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

        // read_entries also reads to the end.
        let mut v = VerifiedReader::new(tar.as_slice(), &digest, None, "layer 1").unwrap();
        read_entries(&mut v, "layer 1", |_, _| Ok(())).unwrap();
        assert!(v.is_verified());
    }

    #[test]
    fn read_entries_reports_metadata_and_content() {
        let mut t = TarBuf::new();
        t.dir("etc/");
        t.pax(&[("SCHILY.xattr.user.a", b"1")]);
        t.raw(
            owned(header(b"etc/x", EntryType::Regular, 3, 0o4711), 5, 6),
            b"xyz",
        );
        t.file("etc/.wh.gone", b"");
        t.file("opq/.wh..wh..opq", b"");
        t.link("etc/l", EntryType::Link, "etc/x");
        t.link("etc/s", EntryType::Symlink, "../../anywhere");
        let mut seen = Vec::new();
        let mut contents = HashMap::new();
        read_entries(t.finish(Some(10240)).as_slice(), "layer", |meta, body| {
            let mut data = Vec::new();
            body.read_to_end(&mut data).unwrap();
            contents.insert(meta.path.clone(), data);
            seen.push(meta.clone());
            Ok(())
        })
        .unwrap();
        let kinds: Vec<_> = seen
            .iter()
            .map(|m| (m.path.to_str().unwrap().to_owned(), m.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("etc".into(), EntryKind::Directory),
                ("etc/x".into(), EntryKind::Regular),
                (
                    "etc/.wh.gone".into(),
                    EntryKind::Whiteout {
                        target: "etc/gone".into()
                    }
                ),
                (
                    "opq/.wh..wh..opq".into(),
                    EntryKind::OpaqueWhiteout { dir: "opq".into() }
                ),
                (
                    "etc/l".into(),
                    EntryKind::Hardlink {
                        target: "etc/x".into()
                    }
                ),
                (
                    "etc/s".into(),
                    EntryKind::Symlink {
                        target: "../../anywhere".into()
                    }
                ),
            ]
        );
        let x = &seen[1];
        assert_eq!(
            (x.mode, x.uid, x.gid, x.size, x.raw_name.as_slice()),
            (0o4711, 5, 6, 3, &b"etc/x"[..])
        );
        assert_eq!(x.xattrs, vec![("user.a".to_owned(), b"1".to_vec())]);
        assert_eq!(contents[Path::new("etc/x")], b"xyz");
    }

    #[test]
    fn bad_entries_are_named() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                {
                    // A ustar name field ends at its first NUL; a PAX path can carry one.
                    let mut t = TarBuf::new();
                    t.pax(&[("path", b"a\0b")]);
                    t.file("placeholder", b"");
                    t.finish(None)
                },
                "NUL",
            ),
            (
                {
                    let mut t = TarBuf::new();
                    t.entry(b"v", EntryType::new(b'V'), b"", 0o644);
                    t.finish(None)
                },
                "unsupported tar entry type",
            ),
            (
                {
                    let mut t = TarBuf::new();
                    t.file("d/.wh..", b"");
                    t.finish(None)
                },
                "whiteout of an invalid name",
            ),
            (
                {
                    let mut t = TarBuf::new();
                    t.entry(b"s", EntryType::Symlink, b"", 0o777);
                    t.finish(None)
                },
                "symlink without a target",
            ),
            (
                {
                    let mut t = TarBuf::new();
                    t.entry(b"./", EntryType::Regular, b"", 0o644);
                    t.finish(None)
                },
                "root must be a directory",
            ),
        ];
        for (tar, needle) in cases {
            let d = Dest::new();
            let (_, reason) =
                bad_reason(extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap_err());
            assert!(reason.contains(needle), "{needle}: {reason}");
        }
    }

    /// Extraction and tar-split in one pass: the diff dir plus the tar-split rebuild the
    /// original tar bit for bit (what containers-storage's `Diff` does).
    #[test]
    fn extraction_with_tar_split_reassembles_bit_identical() {
        let mut t = TarBuf::new();
        t.dir("./usr/");
        t.pax(&[
            ("path", format!("usr/{}", "long".repeat(40)).as_bytes()),
            ("SCHILY.xattr.user.x", b"v"),
        ]);
        t.file("placeholder", b"pax-named content\n");
        t.file("usr/bin", &vec![b'z'; 100_000]);
        t.link("usr/hard", EntryType::Link, "usr/bin");
        t.file("usr/.wh.old", b"");
        t.file("usr/empty", b"");
        let mut tar = t.finish(Some(10240));
        tar.extend_from_slice(b"garbage after the archive");

        let d = Dest::new();
        let mut w = TarSplitWriter::new(Vec::new());
        // Overlay whiteouts (a device node) need root or Linux >= 5.8; plain files work anywhere.
        let o = opts(if is_root() {
            WhiteoutMode::overlay_for_current_user()
        } else {
            WhiteoutMode::Files
        });
        let stats = extract_layer(tar.as_slice(), &d.dir, &o, "layer", Some(&mut w)).unwrap();
        assert_eq!(stats.files, 3);
        let ts = w.finish().unwrap();

        let dir = d.dir.try_clone().unwrap();
        let mut asm = Assembler::new(ts.as_slice(), move |name: &[u8], _| {
            let path = normalize_path(name)?;
            let f = dir
                .open(&path)
                .map_err(|e| Error::io_path("open", &path, e))?;
            Ok(Box::new(f) as Box<dyn Read + Send>)
        });
        let mut rebuilt = Vec::new();
        io::copy(&mut asm, &mut rebuilt).unwrap();
        assert!(rebuilt == tar, "reassembled tar differs");
    }
}
