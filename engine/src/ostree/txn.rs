//! Write transactions: staged objects, renamed into place, then refs.
//!
//! The same protocol as libostree 2022.7 (checked with strace), so the two interlock:
//! 1. [`Repo::begin`] takes the repository lock `.lock` shared (OFD lock), removes staging
//!    directories left by writers that died (those whose `-lock` can be taken), and creates
//!    `tmp/staging-<boot id>-<random>`, taking its `-lock` exclusive *before* creating the
//!    directory, so no concurrent cleaner can take it for stale.
//! 2. Each object is written to a temporary file in the staging directory while it is hashed
//!    (content streams through: nothing is buffered whole) and given its per-mode metadata;
//!    it keeps its temporary name until the commit (libostree writes `staging/XX/<rest>.<ext>`
//!    and renames twice; one rename per object is ~10% of a disk import's time, and a
//!    libostree that resumes a dead writer's staging directory moves only what is in its
//!    `XX/` subdirectories). An object already in the repository or already staged is not
//!    written again.
//! 3. [`Transaction::commit`] runs `syncfs`, renames every staged object to `objects/XX/`,
//!    runs `syncfs` again (the renames durable; libostree fsyncs each `objects/XX` instead,
//!    one journal commit and device flush per directory, up to 257 of them), and only then
//!    moves the refs (each written atomically and fsynced). A writer killed at any point
//!    leaves only complete objects in `objects/` and refs pointing at complete commits.
//! 4. Dropping a transaction without committing removes its staging directory.
//!
//! One deviation, for repositories on tmpfs or ramfs (an initramfs, `/run`, benches): nothing
//! there outlives a crash, so there is nothing for step 3's `syncfs` to make durable, and file,
//! dirtree and dirmeta objects are renamed into `objects/XX/` as soon as each is complete (one
//! rename per object instead of two, and none left for the commit). Commit objects still wait
//! for step 3, after their partial markers. A killed writer leaves complete, unreferenced
//! objects, as a crashed libostree writer does (`tests/ostree_repo.rs`
//! `killed_writer_on_tmpfs_leaves_a_valid_repo`).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};

use super::config::RepoMode;
use super::fsutil::{self, random_suffix};
use super::gvariant::Value;
use super::lock::{OfdLock, Wait};
use super::object::{Checksum, Commit, ContentHasher, DirMeta, DirTree, FileMeta, ObjectType};
use super::repo::{Repo, OSTREEMETA_XATTR};
use crate::error::{Error, IoContext, Result};

/// Compression level of archive `.filez` objects (raw deflate, as ostree 2022.7 writes).
pub const ARCHIVE_DEFLATE_LEVEL: u32 = 6;

/// What a transaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Objects written.
    pub written: u64,
    /// Objects that were already present (or staged) and were not written again.
    pub reused: u64,
    /// Content bytes written (uncompressed).
    pub content_bytes: u64,
}

/// An open write transaction on a [`Repo`].
pub struct Transaction<'r> {
    repo: &'r Repo,
    tmp: Dir,
    staging: Dir,
    staging_name: String,
    /// The complete objects of this transaction, by the name of their temporary file in the
    /// staging directory.
    staged: HashMap<(Checksum, ObjectType), String>,
    /// The same by `objects/` subdirectory: `(temporary name, object name)` for each, so that
    /// [`Transaction::commit`] renames each once, straight to `objects/XX/`.
    staged_dirs: BTreeMap<String, Vec<(String, String)>>,
    /// The repository is on a filesystem that keeps nothing across a crash or power loss
    /// (tmpfs, ramfs): there is nothing to make durable, so file, dirtree and dirmeta objects
    /// are renamed into `objects/XX/` as soon as each is complete instead of at commit
    /// ([`place_directly`]). Commit objects still wait for the commit (their partial markers
    /// go first).
    direct: bool,
    /// The copy buffer of content objects (files are written in large chunks).
    buf: Vec<u8>,
    refs: Vec<(String, Option<Checksum>)>,
    partial: Vec<Checksum>,
    stats: TxnStats,
    default_dirmeta: Option<Checksum>,
    finished: bool,
    _staging_lock: OfdLock,
    _repo_lock: OfdLock,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("repo", &self.repo.path)
            .field("staging", &self.staging_name)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Whether objects may be renamed into place as soon as they are complete: the repository's
/// filesystem is tmpfs or ramfs, which lose everything on a crash anyway. A process killed
/// mid-write still leaves only complete objects in `objects/` (each is renamed after its last
/// byte), as libostree's leftovers after a crash are: unreferenced objects for prune.
fn place_directly(staging: &Dir) -> bool {
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    const RAMFS_MAGIC: u32 = 0x8584_58f6;
    rustix::fs::fstatfs(staging)
        .map(|st| matches!(st.f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC))
        .unwrap_or(false)
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into())
}

impl Repo {
    /// Start a write transaction (see the module docs for the protocol).
    pub fn begin(&self) -> Result<Transaction<'_>> {
        let repo_lock = OfdLock::acquire(
            &self.dir,
            ".lock",
            0o660,
            false,
            Wait::Block,
            &self.path.join(".lock").display().to_string(),
        )?
        .expect("blocking lock");
        let tmp_path = self.path.join("tmp");
        match self.dir.create_dir("tmp") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io_path("creating", &tmp_path, e)),
        }
        let tmp = self
            .dir
            .open_dir("tmp")
            .map_err(|e| Error::io_path("opening", &tmp_path, e))?;
        clean_stale_staging(&tmp, &tmp_path)?;
        let prefix = format!("staging-{}-", boot_id());
        // The lock first, then the directory: a writer cleaning stale staging directories
        // (another transaction of this process, or another process) skips a directory whose
        // lock is held, so it can never remove one between its creation and its locking.
        let (staging_name, staging_lock) = loop {
            let name = format!("{prefix}{}", random_suffix(6));
            let lock_name = format!("{name}-lock");
            let lock = OfdLock::acquire(
                &tmp,
                &lock_name,
                0o600,
                true,
                Wait::NoWait,
                &tmp_path.join(&lock_name).display().to_string(),
            )?;
            let Some(lock) = lock else { continue };
            match tmp.create_dir(&name) {
                Ok(()) => break (name, lock),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io_path("creating", tmp_path.join(&name), e)),
            }
        };
        let staging = tmp
            .open_dir(&staging_name)
            .map_err(|e| Error::io_path("opening", tmp_path.join(&staging_name), e))?;
        let direct = place_directly(&staging);
        Ok(Transaction {
            repo: self,
            tmp,
            staging,
            staging_name,
            direct,
            staged: HashMap::new(),
            staged_dirs: BTreeMap::new(),
            buf: Vec::new(),
            refs: Vec::new(),
            partial: Vec::new(),
            stats: TxnStats::default(),
            default_dirmeta: None,
            finished: false,
            _staging_lock: staging_lock,
            _repo_lock: repo_lock,
        })
    }
}

/// Remove `tmp/staging-*` directories whose lock nobody holds (their writer died).
fn clean_stale_staging(tmp: &Dir, tmp_path: &Path) -> Result<()> {
    let entries = tmp
        .entries()
        .map_err(|e| Error::io_path("listing", tmp_path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io_path("listing", tmp_path, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("staging-") || name.ends_with("-lock") {
            continue;
        }
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let lock_name = format!("{name}-lock");
        let lock_path = tmp_path.join(&lock_name);
        let Some(lock) = OfdLock::acquire(
            tmp,
            &lock_name,
            0o600,
            true,
            Wait::NoWait,
            &lock_path.display().to_string(),
        )?
        else {
            continue;
        };
        // Another writer cleaning at the same time may have removed it first (its lock file
        // too, which taking the lock then created again).
        match tmp.remove_dir_all(name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io_path(
                    "removing stale staging directory",
                    tmp_path.join(name),
                    e,
                ))
            }
        }
        let _ = tmp.remove_file(&lock_name);
        drop(lock);
    }
    Ok(())
}

/// Copy `src` to `out` in chunks of [`COPY_CHUNK`] bytes (`std::io::copy` writes 8 KiB at a
/// time: four times the `write` calls for a typical file); returns the bytes copied.
fn copy_in_chunks(
    src: &mut impl Read,
    out: &mut impl Write,
    buf: &mut Vec<u8>,
) -> std::io::Result<u64> {
    buf.resize(COPY_CHUNK, 0);
    let mut total = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        out.write_all(&buf[..filled])?;
        total += filled as u64;
        if filled < buf.len() {
            return Ok(total);
        }
    }
}

/// The write size of [`copy_in_chunks`].
const COPY_CHUNK: usize = 256 * 1024;

/// Reads a stream through a content hasher, counting bytes.
struct Hashing<'a, R> {
    inner: R,
    hasher: &'a mut ContentHasher,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<'r> Transaction<'r> {
    /// The repository.
    pub fn repo(&self) -> &'r Repo {
        self.repo
    }

    /// What was written so far.
    pub fn stats(&self) -> TxnStats {
        self.stats
    }

    fn staging_path(&self) -> PathBuf {
        self.repo.path.join("tmp").join(&self.staging_name)
    }

    /// Whether the object is in the repository or staged in this transaction.
    pub fn has_object(&self, checksum: &Checksum, ty: ObjectType) -> Result<bool> {
        Ok(self.staged.contains_key(&(*checksum, ty)) || self.repo.has_object(checksum, ty)?)
    }

    /// A new temporary file in the staging directory, created with `mode` (less the umask).
    fn new_temp(&self, mode: u32) -> Result<(String, std::fs::File)> {
        let mut opts = OpenOptions::new();
        opts.write(true).read(true).create_new(true).mode(mode);
        loop {
            let name = format!(".tmp-{}", random_suffix(10));
            match self.staging.open_with(&name, &opts) {
                Ok(f) => return Ok((name, f.into_std())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(Error::io_path(
                        "creating",
                        self.staging_path().join(&name),
                        e,
                    ))
                }
            }
        }
    }

    /// Record a finished temp file (or symlink) in the staging directory as the object
    /// `checksum`; the commit renames it into `objects/XX/` (on tmpfs, [`place_directly`],
    /// it goes there at once).
    fn stage(&mut self, temp: &str, checksum: Checksum, ty: ObjectType) -> Result<()> {
        let rel = self.repo.object_path(&checksum, ty);
        let rel = rel
            .strip_prefix("objects/")
            .expect("object paths start with objects/");
        let (sub, name) = rel.split_once('/').expect("XX/rest");
        if self.direct
            && matches!(
                ty,
                ObjectType::File | ObjectType::DirTree | ObjectType::DirMeta
            )
        {
            let objects = self.repo.object_dir_created(sub)?;
            self.staging.rename(temp, objects, name).map_err(|e| {
                Error::io_path("renaming into", self.repo.path.join("objects").join(rel), e)
            })?;
            // Not recorded as staged: it is in `objects/` now, where `has_object`,
            // `open_content` and `read_dirmeta` find it (they look in staging for staged ones).
            self.stats.written += 1;
            return Ok(());
        }
        // Left under its temporary name: the commit renames it once, into `objects/XX/`
        // (module docs, step 2: why not into `staging/XX/`).
        self.staged_dirs
            .entry(sub.to_string())
            .or_default()
            .push((temp.to_string(), name.to_string()));
        self.staged.insert((checksum, ty), temp.to_string());
        self.stats.written += 1;
        Ok(())
    }

    /// Write a metadata object from its serialized bytes; returns its checksum. Detached
    /// commit metadata is not content-addressed: use [`Self::write_commit_detached_metadata`].
    pub fn write_metadata(&mut self, ty: ObjectType, bytes: &[u8]) -> Result<Checksum> {
        if matches!(ty, ObjectType::File | ObjectType::CommitMeta) {
            return Err(Error::Unsupported {
                transport: "ostree".into(),
                reason: format!("write_metadata cannot write a {} object; use write_content or write_commit_detached_metadata", ty.ext(false)),
            });
        }
        let checksum = Checksum::of(bytes);
        if self.has_object(&checksum, ty)? {
            self.stats.reused += 1;
            return Ok(checksum);
        }
        self.stage_bytes(bytes, checksum, ty)?;
        Ok(checksum)
    }

    /// Set (replace) the detached metadata `a{sv}` of `commit`: the `.commitmeta` object named
    /// by the commit's checksum, moved into place when the transaction commits.
    pub fn write_commit_detached_metadata(
        &mut self,
        commit: &Checksum,
        metadata: &[(String, Value)],
    ) -> Result<()> {
        let bytes = Value::dict_sv(metadata.iter().cloned()).to_bytes();
        self.stage_bytes(&bytes, *commit, ObjectType::CommitMeta)
    }

    /// Write a metadata object's bytes to a staged file (mode 0644) named `checksum`.
    fn stage_bytes(&mut self, bytes: &[u8], checksum: Checksum, ty: ObjectType) -> Result<()> {
        let (temp, mut f) = self.new_temp(0o644)?;
        let path = self.staging_path().join(&temp);
        let r = (|| {
            f.write_all(bytes).at("writing", &path)?;
            if fsutil::created_with_mode(0o644) {
                return Ok(());
            }
            rustix::fs::fchmod(f.as_fd(), rustix::fs::Mode::from_raw_mode(0o644)).at("chmod", &path)
        })();
        drop(f);
        if let Err(e) = r {
            let _ = self.staging.remove_file(&temp);
            return Err(e);
        }
        self.stage(&temp, checksum, ty)
    }

    /// The checksum of the default dirmeta (`0:0`, `0755`, what missing parents get),
    /// written once per transaction.
    pub fn default_dirmeta(&mut self) -> Result<Checksum> {
        if let Some(c) = self.default_dirmeta {
            return Ok(c);
        }
        let c = self.write_dirmeta(&DirMeta::default_dir())?;
        self.default_dirmeta = Some(c);
        Ok(c)
    }

    /// Write a dirmeta object.
    pub fn write_dirmeta(&mut self, meta: &DirMeta) -> Result<Checksum> {
        self.write_metadata(ObjectType::DirMeta, &meta.to_bytes())
    }

    /// Write a dirtree object.
    pub fn write_dirtree(&mut self, tree: &DirTree) -> Result<Checksum> {
        self.write_metadata(ObjectType::DirTree, &tree.to_bytes())
    }

    /// Write a commit object.
    pub fn write_commit_object(&mut self, commit: &Commit) -> Result<Checksum> {
        self.write_metadata(ObjectType::Commit, &commit.to_bytes())
    }

    /// Write a content object: `meta` plus exactly `size` bytes streamed from `data` (nothing
    /// for a symlink). The data is hashed as it is written; returns the checksum.
    pub fn write_content(
        &mut self,
        meta: &FileMeta,
        size: u64,
        data: impl Read,
    ) -> Result<Checksum> {
        meta.validate("content object")?;
        if meta.is_symlink() {
            return self.write_symlink(meta);
        }
        let mut hasher = ContentHasher::new(meta);
        let (temp, mut file) = self.new_temp(self.object_file_mode(meta))?;
        let path = self.staging_path().join(&temp);
        let result = self.write_regular(&mut file, meta, size, data, &mut hasher, &path);
        let checksum = match result {
            Ok(()) => hasher.finish(),
            Err(e) => {
                drop(file);
                let _ = self.staging.remove_file(&temp);
                return Err(e);
            }
        };
        if self.has_object(&checksum, ObjectType::File)? {
            drop(file);
            let _ = self.staging.remove_file(&temp);
            self.stats.reused += 1;
            return Ok(checksum);
        }
        if let Err(e) = self.finish_regular(&file, meta, &path) {
            drop(file);
            let _ = self.staging.remove_file(&temp);
            return Err(e);
        }
        drop(file);
        self.stats.content_bytes += size;
        self.stage(&temp, checksum, ObjectType::File)?;
        Ok(checksum)
    }

    /// [`write_content`](Self::write_content) with `origin`, a file holding the same `size`
    /// bytes the stream gives (the file the source read them from, [`crate::fs_clone`]):
    /// in a bare or bare-user repository the object is a reflink of it (then given the
    /// mode's metadata, as any object), or in a bare repository a hard link to it when its
    /// owner, mode, xattrs and mtime (0) are already the object's. The stream is read whole
    /// and hashed either way; only the write is saved. Archive objects are compressed, and
    /// written as ever.
    pub fn write_content_sharing(
        &mut self,
        meta: &FileMeta,
        size: u64,
        mut data: impl Read,
        origin: Option<(&crate::fs_clone::FileSharing<'_>, std::fs::File)>,
    ) -> Result<Checksum> {
        use crate::fs_clone::{Method, Wanted};
        let counted = origin
            .as_ref()
            .map(|(s, _)| s.cascade.clone())
            .filter(|_| !meta.is_symlink() && size > 0);
        let Some((sharing, origin)) =
            origin.filter(|_| counted.is_some() && self.repo.mode() != RepoMode::Archive)
        else {
            let before = self.stats.content_bytes;
            let c = self.write_content(meta, size, data)?;
            if let Some(cascade) = counted.filter(|_| self.stats.content_bytes > before) {
                cascade.record(Method::Copy, size);
            }
            return Ok(c);
        };
        meta.validate("content object")?;
        let cascade = &sharing.cascade;
        // The stream's checksum, read to the end without writing.
        let hash_stream = |data: &mut dyn Read| -> Result<Checksum> {
            let mut hasher = ContentHasher::new(meta);
            let mut src = Hashing {
                inner: data.take(size + 1),
                hasher: &mut hasher,
            };
            let n = std::io::copy(&mut src, &mut std::io::sink())
                .map_err(|e| Error::from_io("reading a file of the layer", e))?;
            if n != size {
                return Err(Error::Malformed {
                    what: format!("content object for a {size}-byte file"),
                    reason: format!("the stream gave {n} bytes"),
                });
            }
            Ok(hasher.finish())
        };
        if cascade.may_reflink() {
            let (temp, file) = self.new_temp(self.object_file_mode(meta))?;
            let path = self.staging_path().join(&temp);
            let cloned = cascade
                .try_reflink(&origin, &file)
                .map_err(|e| Error::io_path("cloning (FICLONE) into", &path, e));
            match cloned {
                Ok(true) => {
                    let result = hash_stream(&mut data).and_then(|checksum| {
                        if self.has_object(&checksum, ObjectType::File)? {
                            return Ok((checksum, false));
                        }
                        self.finish_regular(&file, meta, &path)?;
                        Ok((checksum, true))
                    });
                    drop(file);
                    return match result {
                        Ok((checksum, true)) => {
                            self.stats.content_bytes += size;
                            self.stage(&temp, checksum, ObjectType::File)?;
                            cascade.record(Method::Reflink, size);
                            Ok(checksum)
                        }
                        Ok((checksum, false)) => {
                            let _ = self.staging.remove_file(&temp);
                            self.stats.reused += 1;
                            Ok(checksum)
                        }
                        Err(e) => {
                            let _ = self.staging.remove_file(&temp);
                            Err(e)
                        }
                    };
                }
                Ok(false) => {
                    drop(file);
                    let _ = self.staging.remove_file(&temp);
                }
                Err(e) => {
                    drop(file);
                    let _ = self.staging.remove_file(&temp);
                    return Err(e);
                }
            }
        }
        let xattrs: Vec<(Vec<u8>, Vec<u8>)> = meta
            .xattrs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let agrees = self.repo.mode() == RepoMode::Bare
            && cascade.may_hardlink()
            && Wanted {
                uid: meta.uid,
                gid: meta.gid,
                mode: meta.mode,
                mtime: (0, 0),
                xattrs: &xattrs,
            }
            .agrees(&origin);
        if !agrees {
            let before = self.stats.content_bytes;
            let c = self.write_content(meta, size, data)?;
            if self.stats.content_bytes > before {
                cascade.record(Method::Copy, size);
            }
            return Ok(c);
        }
        let checksum = hash_stream(&mut data)?;
        if self.has_object(&checksum, ObjectType::File)? {
            self.stats.reused += 1;
            return Ok(checksum);
        }
        let temp = format!(".tmp-{}", random_suffix(10));
        let linked = cascade
            .try_hardlink_fd(origin.as_fd(), &self.staging, temp.as_ref())
            .map_err(|e| Error::io_path("hard-linking", self.staging_path().join(&temp), e))?;
        if linked {
            self.stats.content_bytes += size;
            self.stage(&temp, checksum, ObjectType::File)?;
            cascade.record(Method::Hardlink, size);
            return Ok(checksum);
        }
        // Hard links do not work here after all; the stream is spent, so the object's bytes
        // come from the origin (the same file), checked against the stream's checksum.
        let mut from = origin;
        from.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| Error::from_io("rewinding a file of the layer", e))?;
        let written = self.write_content(meta, size, from)?;
        if written != checksum {
            return Err(Error::Malformed {
                what: format!("content object {checksum}"),
                reason: format!("its origin file hashes to {written}: it changed while copied"),
            });
        }
        cascade.record(Method::Copy, size);
        Ok(checksum)
    }

    fn write_regular(
        &mut self,
        file: &mut std::fs::File,
        meta: &FileMeta,
        size: u64,
        data: impl Read,
        hasher: &mut ContentHasher,
        path: &Path,
    ) -> Result<()> {
        let mut src = Hashing {
            inner: data.take(size + 1),
            hasher,
        };
        let copied = if self.repo.mode() == RepoMode::Archive {
            let mut w = std::io::BufWriter::with_capacity(128 * 1024, &mut *file);
            w.write_all(&meta.archive_header(size))
                .map_err(|e| Error::io_path("writing", path, e))?;
            let mut enc = flate2::write::DeflateEncoder::new(
                w,
                flate2::Compression::new(ARCHIVE_DEFLATE_LEVEL),
            );
            let n = std::io::copy(&mut src, &mut enc)
                .map_err(|e| Error::from_io(format!("writing {}", path.display()), e))?;
            enc.finish()
                .and_then(|mut w| w.flush())
                .map_err(|e| Error::io_path("writing", path, e))?;
            n
        } else {
            copy_in_chunks(&mut src, file, &mut self.buf)
                .map_err(|e| Error::from_io(format!("writing {}", path.display()), e))?
        };
        if copied != size {
            return Err(Error::Malformed {
                what: format!("content object for a {size}-byte file"),
                reason: format!(
                    "the stream {} ({} bytes); the source is truncated or its size is wrong",
                    if copied < size {
                        "ended early"
                    } else {
                        "is longer"
                    },
                    copied
                ),
            });
        }
        Ok(())
    }

    /// The mode a content object's file gets in this repository's mode (bare: set after the
    /// owner, since `fchown` clears set-id bits).
    fn object_file_mode(&self, meta: &FileMeta) -> u32 {
        match self.repo.mode() {
            RepoMode::Bare => 0o600,
            // ostree: (mode & (S_IFREG | 0775)) | S_IRUSR
            RepoMode::BareUser => (meta.mode & 0o775) | 0o400,
            RepoMode::Archive => 0o644,
        }
    }

    fn finish_regular(&self, file: &std::fs::File, meta: &FileMeta, path: &Path) -> Result<()> {
        let fd = file.as_fd();
        let chmod = |m: u32| {
            rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(m))
                .map_err(|e| Error::io_path("chmod", path, e.into()))
        };
        match self.repo.mode() {
            RepoMode::Bare => {
                rustix::fs::fchown(
                    fd,
                    Some(rustix::fs::Uid::from_raw(meta.uid)),
                    Some(rustix::fs::Gid::from_raw(meta.gid)),
                )
                .map_err(|e| bare_owner_error(e, meta, path))?;
                chmod(meta.mode & 0o7777)?;
                fsutil::set_xattrs_fd(fd, &meta.xattrs, path)?;
                fsutil::zero_mtime(fd, path)
            }
            RepoMode::BareUser => {
                rustix::fs::fsetxattr(
                    fd,
                    OSTREEMETA_XATTR,
                    &meta.ostreemeta(),
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| {
                    Error::io_path(&format!("setting {OSTREEMETA_XATTR} on"), path, e.into())
                })?;
                let m = self.object_file_mode(meta);
                if !fsutil::created_with_mode(m) {
                    chmod(m)?;
                }
                fsutil::zero_mtime(fd, path)
            }
            RepoMode::Archive => {
                if fsutil::created_with_mode(0o644) {
                    Ok(())
                } else {
                    chmod(0o644)
                }
            }
        }
    }

    fn write_symlink(&mut self, meta: &FileMeta) -> Result<Checksum> {
        let checksum = ContentHasher::new(meta).finish();
        if self.has_object(&checksum, ObjectType::File)? {
            self.stats.reused += 1;
            return Ok(checksum);
        }
        let temp = format!(".tmp-{}", random_suffix(10));
        let path = self.staging_path().join(&temp);
        let result = (|| match self.repo.mode() {
            RepoMode::Bare => {
                // symlinkat itself: cap-std refuses absolute targets (`/usr/bin/busybox`),
                // which a symlink object may have; the link is never followed here.
                rustix::fs::symlinkat(meta.symlink_target.as_str(), &self.staging, temp.as_str())
                    .map_err(|e| Error::io_path("creating symlink", &path, e.into()))?;
                rustix::fs::chownat(
                    &self.staging,
                    temp.as_str(),
                    Some(rustix::fs::Uid::from_raw(meta.uid)),
                    Some(rustix::fs::Gid::from_raw(meta.gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| bare_owner_error(e, meta, &path))?;
                fsutil::set_xattrs_path(&path, &meta.xattrs)
            }
            RepoMode::BareUser | RepoMode::Archive => {
                let mut opts = OpenOptions::new();
                opts.write(true).create_new(true).mode(0o644);
                let mut f = self
                    .staging
                    .open_with(&temp, &opts)
                    .map_err(|e| Error::io_path("creating", &path, e))?
                    .into_std();
                if !fsutil::created_with_mode(0o644) {
                    rustix::fs::fchmod(f.as_fd(), rustix::fs::Mode::from_raw_mode(0o644))
                        .map_err(|e| Error::io_path("chmod", &path, e.into()))?;
                }
                if self.repo.mode() == RepoMode::Archive {
                    f.write_all(&meta.archive_header(0))
                        .map_err(|e| Error::io_path("writing", &path, e))?;
                    Ok(())
                } else {
                    // bare-user keeps a symlink as a regular file holding the target and a NUL.
                    let mut body = meta.symlink_target.as_bytes().to_vec();
                    body.push(0);
                    f.write_all(&body)
                        .map_err(|e| Error::io_path("writing", &path, e))?;
                    let fd = f.as_fd();
                    rustix::fs::fsetxattr(
                        fd,
                        OSTREEMETA_XATTR,
                        &meta.ostreemeta(),
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(|e| {
                        Error::io_path(&format!("setting {OSTREEMETA_XATTR} on"), &path, e.into())
                    })?;
                    fsutil::zero_mtime(fd, &path)
                }
            }
        })();
        if let Err(e) = result {
            let _ = self.staging.remove_file(&temp);
            return Err(e);
        }
        self.stage(&temp, checksum, ObjectType::File)?;
        Ok(checksum)
    }

    /// Open a content object written in this transaction or already in the repository.
    pub fn open_content(&self, checksum: &Checksum) -> Result<super::repo::Content> {
        if let Some(temp) = self.staged.get(&(*checksum, ObjectType::File)) {
            let what = format!(
                "staged ostree object {checksum} ({})",
                self.staging_path().join(temp).display()
            );
            return self
                .repo
                .open_content_in(&self.staging, &self.staging_path(), temp, what);
        }
        self.repo.open_content(checksum)
    }

    /// Read a dirmeta written in this transaction or already in the repository.
    pub fn read_dirmeta(&self, checksum: &Checksum) -> Result<DirMeta> {
        if let Some(temp) = self.staged.get(&(*checksum, ObjectType::DirMeta)) {
            let full = self.staging_path().join(temp);
            let mut buf = Vec::new();
            self.staging
                .open(temp)
                .and_then(|f| f.into_std().take(1024 * 1024).read_to_end(&mut buf))
                .map_err(|e| Error::io_path("reading", &full, e))?;
            return DirMeta::parse(&buf, &full.display().to_string());
        }
        self.repo.read_dirmeta(checksum)
    }

    /// Point `name` (under `refs/heads/`) at `commit` when the transaction commits, or delete
    /// it with `None`. The commit must exist by then.
    pub fn set_ref(&mut self, name: &str, commit: Option<Checksum>) -> Result<()> {
        super::repo::validate_ref(name)?;
        self.refs.push((name.to_string(), commit));
        Ok(())
    }

    /// Mark `commit` partial (`state/<checksum>.commitpartial`, as libostree does for a
    /// commit whose objects are not all present yet) when the transaction commits: the marker
    /// is written before any object is moved into place, so the commit is never visible
    /// without it. [`Repo::set_commit_partial`] removes it once the objects are complete.
    pub fn mark_partial(&mut self, commit: Checksum) {
        self.partial.push(commit);
    }

    /// Make every staged object durable and visible, then move the refs.
    pub fn commit(mut self) -> Result<TxnStats> {
        log::debug!(
            "ostree {}: committing {} object(s) ({} reused), {} ref(s)",
            self.repo.path.display(),
            self.stats.written,
            self.stats.reused,
            self.refs.len()
        );
        for c in std::mem::take(&mut self.partial) {
            self.repo.set_commit_partial(&c, true)?;
        }
        let staging_path = self.staging_path();
        rustix::fs::syncfs(fsutil::dir_fd(&self.staging, &staging_path)?)
            .map_err(|e| Error::io_path("syncfs", &staging_path, e.into()))?;
        let objects_path = self.repo.path.join("objects");
        let objects = self
            .repo
            .dir
            .open_dir("objects")
            .map_err(|e| Error::io_path("opening", &objects_path, e))?;
        for (sub, names) in &self.staged_dirs {
            match objects.create_dir(sub) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io_path("creating", objects_path.join(sub), e)),
            }
            let to = objects
                .open_dir(sub)
                .map_err(|e| Error::io_path("opening", objects_path.join(sub), e))?;
            for (temp, name) in names {
                self.staging.rename(temp, &to, name).map_err(|e| {
                    Error::io_path("renaming into", objects_path.join(sub).join(name), e)
                })?;
            }
        }
        // The renames durable before any ref names them: one syncfs (one journal commit)
        // instead of an fsync per objects/XX, each of which flushes the device again.
        rustix::fs::syncfs(fsutil::dir_fd(&objects, &objects_path)?)
            .map_err(|e| Error::io_path("syncfs", &objects_path, e.into()))?;
        let refs = std::mem::take(&mut self.refs);
        for (name, target) in refs {
            self.apply_ref(&name, target)?;
        }
        self.finished = true;
        self.remove_staging();
        Ok(self.stats)
    }

    fn apply_ref(&self, name: &str, target: Option<Checksum>) -> Result<()> {
        let rel = format!("refs/heads/{name}");
        let full = self.repo.path.join(&rel);
        match target {
            None => match self.repo.dir.remove_file(&rel) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io_path("removing ref", full, e)),
            },
            Some(c) => {
                if !self.repo.has_object(&c, ObjectType::Commit)? {
                    return Err(Error::NotFound {
                        what: format!("commit {c} for ref {name}"),
                        hint: "write the commit in this transaction before pointing a ref at it"
                            .into(),
                    });
                }
                if let Some((parent, _)) = rel.rsplit_once('/') {
                    self.repo
                        .dir
                        .create_dir_all(parent)
                        .map_err(|e| Error::io_path("creating", self.repo.path.join(parent), e))?;
                }
                fsutil::write_atomic(
                    &self.repo.dir,
                    Some(&self.staging),
                    &rel,
                    format!("{c}\n").as_bytes(),
                    0o644,
                    &full,
                )
            }
        }
    }

    fn remove_staging(&self) {
        let _ = self.tmp.remove_dir_all(&self.staging_name);
        let _ = self.tmp.remove_file(format!("{}-lock", self.staging_name));
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.remove_staging();
        }
    }
}

fn bare_owner_error(e: rustix::io::Errno, meta: &FileMeta, path: &Path) -> Error {
    if e == rustix::io::Errno::PERM {
        Error::Unsupported {
            transport: "ostree".into(),
            reason: format!(
                "storing {} owned by {}:{} in a bare repository needs root (chown was refused); run as root or use a bare-user repository",
                path.display(),
                meta.uid,
                meta.gid
            ),
        }
    } else {
        Error::io_path("chown", path, e.into())
    }
}
