//! A repository on disk: init, open, the read side of objects, and refs.
//!
//! 1. [`Repo::init`] lays out a repository as `ostree init --mode=…` does (`config`,
//!    `objects/`, `refs/{heads,mirrors,remotes}/`, `state/`, `tmp/cache/`, `extensions/`);
//!    [`Repo::open`] checks the layout and reads the mode from `config`.
//! 2. Metadata objects are read whole (at most [`MAX_METADATA_SIZE`]) and parsed
//!    ([`Repo::read_commit`], [`Repo::read_dirtree`], [`Repo::read_dirmeta`]);
//!    [`Repo::read_verified`] also re-hashes and checks normal form.
//! 3. Content objects are opened as a [`Content`]: metadata plus a reader of the data, decoded
//!    per mode (bare: the file's own owner/mode/xattrs; bare-user: the `user.ostreemeta`
//!    xattr, symlinks as files holding the target and a NUL; archive: the `.filez` header,
//!    then raw deflate).
//! 4. Refs live under `refs/heads/` as files holding `<checksum>\n`; writes go through a
//!    [`super::txn::Transaction`].

use std::io::{BufReader, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, MetadataExt as _};

use super::config::{init_config, RepoMode};
use super::object::{mode, Checksum, Commit, DirMeta, DirTree, FileMeta, ObjectType, Xattrs};
use super::{fsutil, gvariant};
use crate::error::{Error, Result};

/// Largest metadata object read (ostree's `OSTREE_MAX_METADATA_SIZE`, 10 MiB).
pub const MAX_METADATA_SIZE: u64 = 10 * 1024 * 1024;

/// The xattr holding real metadata in bare-user repositories.
pub const OSTREEMETA_XATTR: &str = "user.ostreemeta";

/// An ostree repository.
#[derive(Debug)]
pub struct Repo {
    pub(super) dir: Dir,
    pub(super) path: PathBuf,
    mode: RepoMode,
    /// `objects/XX` opened once each, for [`Repo::has_object`]: one `statat` per lookup
    /// instead of cap-std's walk (open the parent, stat, close) of `objects/XX/rest`.
    object_dirs: Box<[std::sync::OnceLock<Dir>]>,
}

/// A content object opened for reading.
pub struct Content {
    /// Owner, mode, symlink target, xattrs.
    pub meta: FileMeta,
    /// Size of the data in bytes (0 for symlinks).
    pub size: u64,
    /// The data (empty for symlinks).
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("meta", &self.meta)
            .field("size", &self.size)
            .finish()
    }
}

/// `objects/XX/rest` (what [`Repo::object_path`] gives) as (`XX`, `rest`).
fn split_object_path(p: &str) -> (&str, &str) {
    p.strip_prefix("objects/")
        .and_then(|r| r.split_once('/'))
        .expect("object paths are objects/XX/rest")
}

fn not_found(what: String, hint: &str) -> Error {
    Error::NotFound {
        what,
        hint: hint.to_string(),
    }
}

impl Repo {
    /// Create a repository at `path` (the directory may exist, empty or not yet a repository)
    /// in `mode`, as `ostree init --mode=<mode>` does. An existing repository of the same mode
    /// is opened; of another mode it is an error.
    pub fn init(path: &Path, mode: RepoMode) -> Result<Repo> {
        std::fs::create_dir_all(path).map_err(|e| Error::io_path("creating", path, e))?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())
            .map_err(|e| Error::io_path("opening", path, e))?;
        if dir.exists("config") {
            let repo = Repo::open(path)?;
            if repo.mode != mode {
                return Err(Error::Conflict {
                    what: format!("ostree repository {}", path.display()),
                    reason: format!("already exists in mode {}, not {mode}", repo.mode),
                });
            }
            return Ok(repo);
        }
        for d in [
            "objects",
            "refs",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
            "state",
            "tmp",
            "tmp/cache",
            "extensions",
        ] {
            match dir.create_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io_path("creating", path.join(d), e)),
            }
        }
        fsutil::write_atomic(
            &dir,
            None,
            "config",
            init_config(mode).as_bytes(),
            0o644,
            &path.join("config"),
        )?;
        Repo::open(path)
    }

    /// Open the repository at `path`, reading its mode from `config`.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::StoreMissing {
                what: format!("ostree repository {}", path.display()),
                hint: "pass --ostree-repo (or --sysroot) to point at the repository".into(),
            },
            _ => Error::io_path("opening ostree repository", path, e),
        })?;
        for required in ["config", "objects", "refs"] {
            if !dir.exists(required) {
                return Err(Error::StoreMissing {
                    what: format!("{}/{required}", path.display()),
                    hint: format!("{} is not an ostree repository", path.display()),
                });
            }
        }
        let config_path = path.join("config");
        let text = dir
            .read_to_string("config")
            .map_err(|e| Error::io_path("reading", &config_path, e))?;
        let mode = RepoMode::from_config(&text, &config_path.display().to_string())?;
        Ok(Repo {
            dir,
            path: path.to_path_buf(),
            mode,
            object_dirs: (0..256).map(|_| std::sync::OnceLock::new()).collect(),
        })
    }

    /// The repository's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository's mode.
    pub fn mode(&self) -> RepoMode {
        self.mode
    }

    /// The relative path of an object in this repository.
    pub fn object_path(&self, checksum: &Checksum, ty: ObjectType) -> String {
        super::object::object_path(checksum, ty, self.mode == RepoMode::Archive)
    }

    fn describe(&self, checksum: &Checksum, ty: ObjectType) -> String {
        format!(
            "ostree object {}",
            self.path.join(self.object_path(checksum, ty)).display()
        )
    }

    /// Whether the object is stored.
    pub fn has_object(&self, checksum: &Checksum, ty: ObjectType) -> Result<bool> {
        let p = self.object_path(checksum, ty);
        let (sub, name) = split_object_path(&p);
        let Some(dir) = self.object_dir(sub)? else {
            return Ok(false);
        };
        // One component below an opened directory: nothing to resolve, so a plain `statat`
        // (not following a symlink: bare repositories store symlinks as such).
        match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io_path("checking", self.path.join(&p), e.into())),
        }
    }

    /// `objects/XX`, opened once and kept; `None` while it does not exist.
    fn object_dir(&self, sub: &str) -> Result<Option<&Dir>> {
        let slot = u8::from_str_radix(sub, 16)
            .ok()
            .filter(|_| sub.len() == 2)
            .map(|i| &self.object_dirs[usize::from(i)])
            .expect("object directories are two hex digits");
        if let Some(d) = slot.get() {
            return Ok(Some(d));
        }
        let rel = format!("objects/{sub}");
        match self.dir.open_dir(&rel) {
            // Another thread may have opened it meanwhile: either handle will do.
            Ok(d) => Ok(Some(slot.get_or_init(|| d))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path("opening", self.path.join(rel), e)),
        }
    }

    /// `objects/XX`, created if missing (as a transaction's commit creates it).
    pub(super) fn object_dir_created(&self, sub: &str) -> Result<&Dir> {
        if let Some(d) = self.object_dir(sub)? {
            return Ok(d);
        }
        let rel = format!("objects/{sub}");
        match self.dir.create_dir(&rel) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io_path("creating", self.path.join(&rel), e)),
        }
        self.object_dir(sub)?.ok_or_else(|| {
            Error::io_path(
                "opening",
                self.path.join(&rel),
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// The bytes of a metadata object, as stored (no verification).
    pub fn read_metadata_bytes(&self, checksum: &Checksum, ty: ObjectType) -> Result<Vec<u8>> {
        let p = self.object_path(checksum, ty);
        let missing = || {
            not_found(
                self.describe(checksum, ty),
                "the repository is incomplete; re-run the import or pull that wrote it",
            )
        };
        let (sub, name) = split_object_path(&p);
        // One component below the held `objects/XX` (metadata objects are regular files).
        let Some(dir) = self.object_dir(sub)? else {
            return Err(missing());
        };
        let file = dir.open(name).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing(),
            _ => Error::io_path("opening", self.path.join(&p), e),
        })?;
        let mut buf = Vec::new();
        file.take(MAX_METADATA_SIZE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io_path("reading", self.path.join(&p), e))?;
        if buf.len() as u64 > MAX_METADATA_SIZE {
            return Err(Error::Malformed {
                what: self.describe(checksum, ty),
                reason: format!(
                    "larger than the {MAX_METADATA_SIZE}-byte limit for metadata objects"
                ),
            });
        }
        Ok(buf)
    }

    /// The bytes of a metadata object after checking that they hash to `checksum` and are in
    /// GVariant normal form for the object's type.
    pub fn read_verified(&self, checksum: &Checksum, ty: ObjectType) -> Result<Vec<u8>> {
        let bytes = self.read_metadata_bytes(checksum, ty)?;
        let actual = Checksum::of(&bytes);
        if actual != *checksum {
            return Err(Error::Malformed {
                what: self.describe(checksum, ty),
                reason: format!("corrupt: content hashes to {actual}; delete the object and re-import the commit that needs it"),
            });
        }
        if let Some(t) = ty.variant_type() {
            if !gvariant::is_normal_form(&t, &bytes) {
                return Err(Error::Malformed {
                    what: self.describe(checksum, ty),
                    reason: format!("not a {t} GVariant in normal form"),
                });
            }
        }
        Ok(bytes)
    }

    /// Read and parse a commit.
    pub fn read_commit(&self, checksum: &Checksum) -> Result<Commit> {
        let b = self.read_metadata_bytes(checksum, ObjectType::Commit)?;
        Commit::parse(&b, &self.describe(checksum, ObjectType::Commit))
    }

    /// The detached metadata of `commit` (its `.commitmeta` object), if it has any.
    pub fn read_commit_detached_metadata(
        &self,
        commit: &Checksum,
    ) -> Result<Option<Vec<(String, gvariant::Value)>>> {
        if !self.has_object(commit, ObjectType::CommitMeta)? {
            return Ok(None);
        }
        let what = self.describe(commit, ObjectType::CommitMeta);
        let b = self.read_metadata_bytes(commit, ObjectType::CommitMeta)?;
        let ty = ObjectType::CommitMeta.variant_type().expect("a{sv}");
        let v = gvariant::parse(&ty, &b).map_err(|e| Error::Malformed {
            what: what.clone(),
            reason: format!("not an a{{sv}} GVariant: {e}"),
        })?;
        let entries = v.as_dict_sv().ok_or_else(|| Error::Malformed {
            what,
            reason: "not a{sv}".into(),
        })?;
        Ok(Some(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ))
    }

    /// Read and parse a dirtree.
    pub fn read_dirtree(&self, checksum: &Checksum) -> Result<DirTree> {
        let b = self.read_metadata_bytes(checksum, ObjectType::DirTree)?;
        DirTree::parse(&b, &self.describe(checksum, ObjectType::DirTree))
    }

    /// Read and parse a dirmeta.
    pub fn read_dirmeta(&self, checksum: &Checksum) -> Result<DirMeta> {
        let b = self.read_metadata_bytes(checksum, ObjectType::DirMeta)?;
        DirMeta::parse(&b, &self.describe(checksum, ObjectType::DirMeta))
    }

    /// Open a content object: its metadata and a reader of its data.
    pub fn open_content(&self, checksum: &Checksum) -> Result<Content> {
        let p = self.object_path(checksum, ObjectType::File);
        let what = self.describe(checksum, ObjectType::File);
        self.open_content_in(&self.dir, &self.path, &p, what)
    }

    /// [`Self::open_content`] of the object file `p` under `dir` (at `root` on disk): the
    /// repository, or a transaction's staging directory.
    pub(super) fn open_content_in(
        &self,
        dir: &Dir,
        root: &Path,
        p: &str,
        what: String,
    ) -> Result<Content> {
        let full = root.join(p);
        let io = |op: &str, e: std::io::Error| Error::io_path(op, &full, e);
        let st = dir.symlink_metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => not_found(
                what.clone(),
                "the repository is incomplete; re-run the import or pull that wrote it",
            ),
            _ => io("stat", e),
        })?;
        match self.mode {
            RepoMode::Bare => {
                if st.file_type().is_symlink() {
                    let target = dir.read_link_contents(p).map_err(|e| io("readlink", e))?;
                    let target =
                        target
                            .into_os_string()
                            .into_string()
                            .map_err(|_| Error::Malformed {
                                what: what.clone(),
                                reason: "symlink target is not UTF-8".into(),
                            })?;
                    let xattrs = fsutil::read_xattrs_path(&full)?;
                    let meta = FileMeta::symlink(st.uid(), st.gid(), target, xattrs);
                    return Ok(Content {
                        meta,
                        size: 0,
                        reader: Box::new(std::io::empty()),
                    });
                }
                let file = dir.open(p).map_err(|e| io("opening", e))?.into_std();
                let xattrs = fsutil::read_xattrs_fd(file.as_fd(), &full)?;
                let meta = FileMeta::regular(st.uid(), st.gid(), st.mode(), xattrs);
                meta.validate(&what)?;
                Ok(Content {
                    meta,
                    size: st.len(),
                    reader: Box::new(file),
                })
            }
            RepoMode::BareUser => {
                let mut file = dir.open(p).map_err(|e| io("opening", e))?.into_std();
                let raw = fsutil::get_xattr_fd(file.as_fd(), OSTREEMETA_XATTR, &full)?.ok_or_else(|| Error::Malformed {
                    what: what.clone(),
                    reason: format!("no {OSTREEMETA_XATTR} xattr; the object was not written in bare-user mode or the xattr was lost in a copy"),
                })?;
                let mut meta = FileMeta::from_ostreemeta(&raw, &what)?;
                if meta.is_symlink() {
                    let mut buf = Vec::new();
                    (&mut file)
                        .take(8192)
                        .read_to_end(&mut buf)
                        .map_err(|e| io("reading", e))?;
                    let target = match buf.split_last() {
                        Some((&0, t)) => t,
                        _ => &buf[..],
                    };
                    meta.symlink_target =
                        String::from_utf8(target.to_vec()).map_err(|_| Error::Malformed {
                            what: what.clone(),
                            reason: "symlink target is not UTF-8".into(),
                        })?;
                    meta.validate(&what)?;
                    return Ok(Content {
                        meta,
                        size: 0,
                        reader: Box::new(std::io::empty()),
                    });
                }
                meta.validate(&what)?;
                Ok(Content {
                    meta,
                    size: st.len(),
                    reader: Box::new(file),
                })
            }
            RepoMode::Archive => {
                let file = dir.open(p).map_err(|e| io("opening", e))?.into_std();
                let mut r = BufReader::new(file);
                let mut prefix = [0u8; 8];
                r.read_exact(&mut prefix)
                    .map_err(|e| io("reading header of", e))?;
                let len = u32::from_be_bytes(prefix[..4].try_into().expect("4 bytes")) as u64;
                if len > MAX_METADATA_SIZE {
                    return Err(Error::Malformed {
                        what,
                        reason: format!("header length {len} is implausible"),
                    });
                }
                let mut header = Vec::new();
                (&mut r)
                    .take(len)
                    .read_to_end(&mut header)
                    .map_err(|e| io("reading header of", e))?;
                if header.len() as u64 != len {
                    return Err(Error::Malformed {
                        what,
                        reason: "truncated header".into(),
                    });
                }
                let (size, meta) = FileMeta::parse_archive_header(&header, &what)?;
                if meta.is_symlink() {
                    return Ok(Content {
                        meta,
                        size: 0,
                        reader: Box::new(std::io::empty()),
                    });
                }
                let reader = flate2::read::DeflateDecoder::new(r);
                Ok(Content {
                    meta,
                    size,
                    reader: Box::new(reader),
                })
            }
        }
    }

    /// Whether `commit` is marked partial (`state/<checksum>.commitpartial`): some of the
    /// objects it references may be missing, and ostree's fsck does not count them as errors.
    pub fn is_commit_partial(&self, commit: &Checksum) -> Result<bool> {
        let rel = format!("state/{}.commitpartial", commit.to_hex());
        match self.dir.symlink_metadata(&rel) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io_path("reading", self.path.join(rel), e)),
        }
    }

    /// Mark `commit` partial or complete, as libostree's `mark_commit_partial` does (an empty
    /// `state/<checksum>.commitpartial` file; durable before this returns).
    pub fn set_commit_partial(&self, commit: &Checksum, partial: bool) -> Result<()> {
        let rel = format!("state/{}.commitpartial", commit.to_hex());
        let full = self.path.join(&rel);
        if partial {
            match self.dir.create_dir("state") {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io_path("creating", self.path.join("state"), e)),
            }
            let f = self
                .dir
                .create(&rel)
                .map_err(|e| Error::io_path("creating", &full, e))?;
            f.sync_all()
                .map_err(|e| Error::io_path("syncing", &full, e))?;
        } else {
            match self.dir.remove_file(&rel) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io_path("removing", &full, e)),
            }
        }
        let state = self
            .dir
            .open_dir("state")
            .map_err(|e| Error::io_path("opening", self.path.join("state"), e))?;
        super::fsutil::fsync_dir(&state, &self.path.join("state"))
    }

    /// The commit a ref under `refs/heads/` points to, if the ref exists.
    pub fn read_ref(&self, name: &str) -> Result<Option<Checksum>> {
        validate_ref(name)?;
        let p = Path::new("refs/heads").join(name);
        match self.dir.read_to_string(&p) {
            Ok(s) => Checksum::from_hex(s.trim())
                .map(Some)
                .map_err(|_| Error::Malformed {
                    what: format!("ref {name} ({})", self.path.join(&p).display()),
                    reason: format!("holds {:?}, not a checksum", s.trim()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path("reading", self.path.join(p), e)),
        }
    }

    /// A commit named by a ref or by its 64-hex checksum (which must be stored).
    pub fn resolve(&self, rev: &str) -> Result<Checksum> {
        if rev.len() == 64
            && rev
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            let c = Checksum::from_hex(rev)?;
            if self.has_object(&c, ObjectType::Commit)? {
                return Ok(c);
            }
            return Err(not_found(
                format!("commit {rev} in {}", self.path.display()),
                "check the checksum with `ostree log`",
            ));
        }
        self.read_ref(rev)?.ok_or_else(|| {
            not_found(
                format!("ref {rev} in {}", self.path.display()),
                "list the refs with `ostree refs`",
            )
        })
    }

    /// Local refs under `prefix` (e.g. `ostree/container/image`), with their commit checksums,
    /// sorted by name. A missing prefix gives an empty list.
    pub fn list_refs(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let base = Path::new("refs/heads").join(prefix);
        let dir = match self.dir.open_dir(&base) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io_path("opening", self.path.join(&base), e)),
        };
        walk_refs(&dir, prefix, &self.path.join(&base), &mut out)?;
        out.sort();
        Ok(out)
    }
}

/// Check a ref name as ostree does: `/`-separated components, each starting with a letter,
/// digit or `_` and then letters, digits, `_`, `-` and `.`.
pub fn validate_ref(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.split('/').all(|c| {
            let mut chars = c.chars();
            chars
                .next()
                .is_some_and(|f| f.is_ascii_alphanumeric() || f == '_')
                && chars.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidReference {
            input: name.to_string(),
            reason: "not a valid ostree ref (components of letters, digits, '_', '-', '.', separated by '/', none starting with '-' or '.')".into(),
        })
    }
}

fn walk_refs(dir: &Dir, name: &str, path: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in dir
        .entries()
        .map_err(|e| Error::io_path("listing", path, e))?
    {
        let entry = entry.map_err(|e| Error::io_path("listing", path, e))?;
        let file_name = entry.file_name();
        let Some(part) = file_name.to_str() else {
            continue;
        };
        let full = format!("{name}/{part}");
        let ft = entry
            .file_type()
            .map_err(|e| Error::io_path("stat", path.join(part), e))?;
        if ft.is_dir() {
            let sub = entry
                .open_dir()
                .map_err(|e| Error::io_path("opening", path.join(part), e))?;
            walk_refs(&sub, &full, &path.join(part), out)?;
        } else if ft.is_file() && !part.starts_with('.') {
            let checksum = dir
                .read_to_string(part)
                .map_err(|e| Error::io_path("reading", path.join(part), e))?;
            out.push((full, checksum.trim().to_string()));
        }
    }
    Ok(())
}

/// The [`DirMeta`] of a directory or the [`FileMeta`] of a file given its stat and xattrs,
/// with the permission bits ostree keeps.
pub(super) fn dirmeta_from(uid: u32, gid: u32, st_mode: u32, xattrs: Xattrs) -> DirMeta {
    DirMeta {
        uid,
        gid,
        mode: mode::S_IFDIR | (st_mode & 0o7777),
        xattrs,
    }
}
