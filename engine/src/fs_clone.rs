//! Sharing file data between stores on one filesystem: reflink, hard link, or copy.
//!
//! Used by every writer that can place a file whose bytes already exist on disk in another
//! store: the containers-storage clone ([`crate::cstorage::clone`]), the layer extractor
//! ([`crate::layer_tar`], for containers-storage) and the ostree content-object writer. The
//! stores never import each other; what crosses between them is this module's
//! [`FileOrigin`], carried by the copy pipeline beside a layer's tar stream
//! ([`crate::copy::LayerStream::DiffFiles`]).
//!
//! 1. A source that rebuilds a layer tar from files on disk (the ostree container store from
//!    its bare / bare-user content objects, containers-storage from its `diff/` trees) attaches
//!    a [`FileOrigin`]: for a regular-file tar entry it opens the very file whose bytes it
//!    streams as that entry's body. The tar still flows whole, so every digest (diffID, ostree
//!    content checksums) is computed and verified as before; the origin only saves writes. The
//!    bytes of the clone are the bytes that were verified because they come from the same,
//!    immutable file (store objects and layer files are never changed in place).
//! 2. A writer places each such file with a [`Cascade`], shared by all layers of one copy:
//!    a reflink (`FICLONE`: shared extents, copy-on-write; any metadata, since the clone is a
//!    new inode), else — only where the caller says owner, mode, xattrs and mtime already
//!    agree with what the destination's format pins ([`Wanted::agrees`]), and the origin
//!    allows it ([`FileSharing::hard_links`]) — a hard link to the origin's inode, else a copy
//!    in the kernel (`copy_file_range`), else the bytes written as usual.
//! 3. The first method that fails as unsupported (no reflinks on this filesystem, the stores
//!    on two filesystems, hard links refused) is not tried again for the rest of the copy.
//! 4. Each placed file is counted ([`FileStats`]: files and bytes per method); the pipeline
//!    puts the counts in [`crate::copy::CopyReport::files`] and the CLI prints them.
//!
//! A hard link makes one inode belong to two stores: it is only right when neither store ever
//! changes it and both agree on every piece of metadata. ostree bare objects have mtime 0 and
//! the image's owners; bare-user objects carry `user.ostreemeta` and the repository owner, so a
//! hard link between bare-user and containers-storage never agrees; archive objects are
//! compressed and have no origin at all.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags};
use rustix::io::Errno;

/// Files placed per method, with their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStats {
    /// Files cloned by reflink (their extents shared with the origin).
    pub reflinked: u64,
    /// Bytes of the reflinked files.
    pub reflinked_bytes: u64,
    /// Files hard-linked to the origin's inode.
    pub hardlinked: u64,
    /// Bytes of the hard-linked files.
    pub hardlinked_bytes: u64,
    /// Files whose bytes were written.
    pub copied: u64,
    /// Bytes written for them.
    pub copied_bytes: u64,
}

impl FileStats {
    /// Add `other`'s counts.
    pub fn add(&mut self, other: &FileStats) {
        self.reflinked += other.reflinked;
        self.reflinked_bytes += other.reflinked_bytes;
        self.hardlinked += other.hardlinked;
        self.hardlinked_bytes += other.hardlinked_bytes;
        self.copied += other.copied;
        self.copied_bytes += other.copied_bytes;
    }

    /// `files: 3 reflinked, 0 hard-linked, 1 copied; bytes: 1048576 reflinked, 0 hard-linked,
    /// 12 copied` (the CLI's line for every command that shares file data).
    pub fn summary(&self) -> String {
        format!(
            "files: {} reflinked, {} hard-linked, {} copied; bytes: {} reflinked, {} hard-linked, {} copied",
            self.reflinked,
            self.hardlinked,
            self.copied,
            self.reflinked_bytes,
            self.hardlinked_bytes,
            self.copied_bytes
        )
    }
}

/// How a file was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Reflinked.
    Reflink,
    /// Hard-linked.
    Hardlink,
    /// Bytes written.
    Copy,
}

/// The reflink → hard link → copy cascade of one copy, shared by every thread writing its
/// layers: remembers which methods turned out unsupported and counts what each placed.
#[derive(Debug, Default)]
pub struct Cascade {
    no_reflink: AtomicBool,
    no_hardlink: AtomicBool,
    no_copy_range: AtomicBool,
    used: AtomicBool,
    counts: [AtomicU64; 6],
}

/// Errors that mean "this method does not work here", not "this file failed".
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP
            | Errno::XDEV
            | Errno::INVAL
            | Errno::NOTTY
            | Errno::PERM
            | Errno::NOSYS
            | Errno::BADF
            | Errno::ACCESS
    )
}

impl Cascade {
    /// A cascade that will try every method.
    pub fn new() -> Self {
        Cascade::default()
    }

    /// Whether reflinks may still work (none has failed as unsupported yet).
    pub fn may_reflink(&self) -> bool {
        !self.no_reflink.load(Ordering::Relaxed)
    }

    /// Whether hard links may still work.
    pub fn may_hardlink(&self) -> bool {
        !self.no_hardlink.load(Ordering::Relaxed)
    }

    /// Give the empty file `dst` the content of `src` by `FICLONE`. `Ok(false)` when reflinks
    /// do not work here (remembered: not tried again) or already failed before.
    pub fn try_reflink(&self, src: impl AsFd, dst: impl AsFd) -> std::io::Result<bool> {
        if !self.may_reflink() {
            return Ok(false);
        }
        match rfs::ioctl_ficlone(&dst, &src) {
            Ok(()) => Ok(true),
            Err(e) if unsupported(e) => {
                self.no_reflink.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Copy the `size` bytes of `src` into the empty file `dst` in the kernel
    /// (`copy_file_range`: no pass through this process's memory; on NFS, CIFS and the like
    /// a server-side copy). `Ok(false)` when that does not work here (remembered: not tried
    /// again) or already failed before; `dst` is then empty again, for the caller to write.
    pub fn try_copy_range(
        &self,
        src: impl AsFd,
        dst: impl AsFd,
        size: u64,
    ) -> std::io::Result<bool> {
        if self.no_copy_range.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let (mut from, mut to, mut done) = (0u64, 0u64, 0u64);
        while done < size {
            let want = usize::try_from(size - done)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            match rfs::copy_file_range(&src, Some(&mut from), &dst, Some(&mut to), want) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the origin file ended after {done} of {size} bytes"),
                    ))
                }
                Ok(n) => done += n as u64,
                Err(Errno::INTR) => {}
                Err(e) if unsupported(e) => {
                    self.no_copy_range.store(true, Ordering::Relaxed);
                    rfs::ftruncate(&dst, 0)?;
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Hard-link `src_name` in `src_dir` as `dst_name` in `dst_dir`. `Ok(false)` when hard
    /// links do not work here (remembered) or already failed before; `EMLINK` (too many links
    /// to this inode) is `Ok(false)` for this file only.
    pub fn try_hardlink_at(
        &self,
        src_dir: impl AsFd,
        src_name: &std::ffi::OsStr,
        dst_dir: impl AsFd,
        dst_name: &std::ffi::OsStr,
    ) -> std::io::Result<bool> {
        if !self.may_hardlink() {
            return Ok(false);
        }
        match rfs::linkat(&src_dir, src_name, &dst_dir, dst_name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::MLINK) => Ok(false),
            Err(e) if unsupported(e) => {
                self.no_hardlink.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Hard-link the open file `src` as `dst_name` in `dst_dir`: through `AT_EMPTY_PATH`
    /// (needs `CAP_DAC_READ_SEARCH`), else through `/proc/self/fd`. `Ok(false)` as for
    /// [`try_hardlink_at`](Self::try_hardlink_at).
    pub fn try_hardlink_fd(
        &self,
        src: BorrowedFd<'_>,
        dst_dir: impl AsFd,
        dst_name: &std::ffi::OsStr,
    ) -> std::io::Result<bool> {
        if !self.may_hardlink() {
            return Ok(false);
        }
        let first = rfs::linkat(src, "", &dst_dir, dst_name, AtFlags::EMPTY_PATH);
        let result = match first {
            Err(Errno::NOENT | Errno::PERM | Errno::ACCESS | Errno::INVAL) => {
                let proc = format!("/proc/self/fd/{}", src.as_raw_fd());
                match rfs::linkat(
                    rfs::CWD,
                    proc.as_str(),
                    &dst_dir,
                    dst_name,
                    AtFlags::SYMLINK_FOLLOW,
                ) {
                    // No /proc (an initramfs before it is mounted): no hard links here.
                    Err(Errno::NOENT) => Err(Errno::NOSYS),
                    other => other,
                }
            }
            other => other,
        };
        match result {
            Ok(()) => Ok(true),
            Err(Errno::MLINK) => Ok(false),
            Err(e) if unsupported(e) => {
                self.no_hardlink.store(true, Ordering::Relaxed);
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Count a file of `bytes` placed by `method`.
    pub fn record(&self, method: Method, bytes: u64) {
        let (n, b) = match method {
            Method::Reflink => (0, 1),
            Method::Hardlink => (2, 3),
            Method::Copy => (4, 5),
        };
        self.counts[n].fetch_add(1, Ordering::Relaxed);
        self.counts[b].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Mark that some layer of the copy offered file origins (so the report has file counts).
    pub fn mark_used(&self) {
        self.used.store(true, Ordering::Relaxed);
    }

    /// The counts so far, or `None` when no layer offered file origins.
    pub fn stats(&self) -> Option<FileStats> {
        if !self.used.load(Ordering::Relaxed) {
            return None;
        }
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        Some(FileStats {
            reflinked: c(0),
            reflinked_bytes: c(1),
            hardlinked: c(2),
            hardlinked_bytes: c(3),
            copied: c(4),
            copied_bytes: c(5),
        })
    }
}

/// Where the bodies of a layer's regular files already are on disk (module doc, step 1).
pub trait FileOrigin: Send + Sync {
    /// The file holding exactly the `size` body bytes of the regular-file tar entry `name`
    /// (the name as the tar records it), opened read-only; `None` when there is none. It
    /// must be the file the layer stream reads that body from.
    fn open(&self, name: &[u8], size: u64) -> Option<File>;
}

/// A layer's [`FileOrigin`] with the copy's [`Cascade`]: what a writer is handed
/// ([`crate::copy::LayerInput::take_sharing`]).
pub struct FileSharing<'a> {
    /// Where the files are.
    pub origin: Box<dyn FileOrigin + 'a>,
    /// How they are placed, and the counts.
    pub cascade: Arc<Cascade>,
    /// Whether a file may be hard-linked to its origin (when the metadata agrees). Off for
    /// origins in the destination store itself (a partial pull's reused files): layers of
    /// one containers-storage store do not share inodes unless asked (podman's
    /// `use_hard_links`), so those are reflinked or copied.
    pub hard_links: bool,
}

impl FileSharing<'_> {
    /// The origin of entry `name` of `size` bytes when it is worth sharing (not empty) and
    /// really holds `size` bytes.
    pub fn open(&self, name: &[u8], size: u64) -> Option<File> {
        if size == 0 {
            return None;
        }
        let f = self.origin.open(name, size)?;
        let st = rfs::fstat(&f).ok()?;
        (rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::RegularFile
            && st.st_size as u64 == size)
            .then_some(f)
    }
}

/// Metadata a destination pins on a file: a hard link to an origin is right only when the
/// origin already has exactly this.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Every extended attribute, and nothing else (name, value).
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl Wanted<'_> {
    /// Whether `file` has exactly this owner, mode, mtime and set of xattrs.
    pub fn agrees(&self, file: impl AsFd) -> bool {
        let Ok(st) = rfs::fstat(&file) else {
            return false;
        };
        if st.st_uid != self.uid
            || st.st_gid != self.gid
            || st.st_mode & 0o7777 != self.mode & 0o7777
            || st.st_mtime != self.mtime.0
            || st.st_mtime_nsec as u32 != self.mtime.1
        {
            return false;
        }
        let Ok(mut have) = list_xattrs(&file) else {
            return false;
        };
        let mut want: Vec<(Vec<u8>, Vec<u8>)> = self.xattrs.to_vec();
        have.sort();
        want.sort();
        have == want
    }
}

/// Every extended attribute of `fd` (name, value); none where the filesystem has none.
pub fn list_xattrs(fd: impl AsFd) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = match rfs::flistxattr(&fd, &mut names[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(Errno::RANGE) => {
            let need = rfs::flistxattr_query(&fd)?;
            names.resize(need, 0);
            rfs::flistxattr(&fd, &mut names[..])?
        }
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let cname = CString::new(name).expect("xattr names have no NUL");
        out.push((name.to_vec(), get_xattr(&fd, &cname)?));
    }
    Ok(out)
}

fn get_xattr(fd: impl AsFd, name: &CStr) -> std::io::Result<Vec<u8>> {
    let len = rfs::fgetxattr_query(&fd, name)?;
    let mut value = vec![0u8; len];
    let got = rfs::fgetxattr(&fd, name, &mut value[..])?;
    value.truncate(got);
    Ok(value)
}

/// Copy every extended attribute of `src` to `dst`.
pub fn copy_xattrs(src: impl AsFd, dst: impl AsFd) -> std::io::Result<()> {
    for (name, value) in list_xattrs(&src)? {
        let cname = CString::new(name).expect("xattr names have no NUL");
        rfs::fsetxattr(&dst, &cname, &value, rfs::XattrFlags::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_cascade_falls_back_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = File::create(tmp.path().join("a")).unwrap();
        a.write_all(b"hello").unwrap();
        let a = File::open(tmp.path().join("a")).unwrap();
        let b = File::create(tmp.path().join("b")).unwrap();
        let c = Cascade::new();
        assert_eq!(c.stats(), None, "no origin offered: no counts");
        // Whatever the filesystem: either the reflink works or it is off afterwards.
        let done = c.try_reflink(&a, &b).unwrap();
        assert!(done || !c.may_reflink());
        if !done {
            assert!(!c.try_reflink(&a, &b).unwrap(), "not tried again");
        }
        let dir = File::open(tmp.path()).unwrap();
        if c.try_hardlink_fd(a.as_fd(), &dir, "l".as_ref()).unwrap() {
            assert_eq!(std::fs::read(tmp.path().join("l")).unwrap(), b"hello");
        }
        c.mark_used();
        c.record(Method::Copy, 5);
        c.record(Method::Reflink, 7);
        let s = c.stats().unwrap();
        assert_eq!((s.copied, s.copied_bytes, s.reflinked_bytes), (1, 5, 7));
        assert!(
            s.summary()
                .ends_with("1 copied; bytes: 7 reflinked, 0 hard-linked, 5 copied"),
            "{}",
            s.summary()
        );
    }

    #[test]
    fn copy_range_copies_in_the_kernel_or_leaves_the_file_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(tmp.path().join("a"), &data).unwrap();
        let a = File::open(tmp.path().join("a")).unwrap();
        let b = File::create(tmp.path().join("b")).unwrap();
        let c = Cascade::new();
        if c.try_copy_range(&a, &b, data.len() as u64).unwrap() {
            assert_eq!(std::fs::read(tmp.path().join("b")).unwrap(), data);
        } else {
            assert_eq!(std::fs::metadata(tmp.path().join("b")).unwrap().len(), 0);
            assert!(!c.try_copy_range(&a, &b, 1).unwrap(), "not tried again");
        }
        // An origin shorter than the size asked for is an error, not a short file.
        let d = File::create(tmp.path().join("d")).unwrap();
        let c = Cascade::new();
        if let Err(e) = c.try_copy_range(&a, &d, data.len() as u64 + 10) {
            assert!(e.to_string().contains("ended after"), "{e}");
        }
    }

    #[test]
    fn wanted_metadata_must_agree_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = File::open(&p).unwrap();
        let st = rfs::fstat(&f).unwrap();
        let mut w = Wanted {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
            xattrs: &[],
        };
        assert!(w.agrees(&f));
        w.mtime = (0, 0);
        assert!(!w.agrees(&f), "another mtime");
    }
}
