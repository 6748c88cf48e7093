//! Small file-system helpers for the ostree store: xattrs, atomic replace, fsync, names.
//!
//! 1. xattrs are listed and read through an fd ([`read_xattrs_fd`]) or, for symlinks, by path
//!    without following ([`read_xattrs_path`]), at most [`MAX_XATTR_SIZE`] per value.
//! 2. [`write_atomic`] replaces a file another process reads: temp file, fsync, rename, fsync
//!    the directory.

use std::io::Write as _;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _};
use rand::Rng as _;

use super::object::Xattrs;
use crate::error::{Error, Result};

/// Largest xattr value read (ostree-rs-ext's limit, 1 MiB; the kernel allows 64 KiB).
pub const MAX_XATTR_SIZE: usize = 1024 * 1024;

/// The process's umask, read once from `/proc/self/status` (Linux 4.7+; `umask(2)` can only
/// read it by changing it, which races with other threads creating files). `None` when
/// `/proc` is not mounted (an initramfs, a chroot): then every mode is set explicitly.
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Whether a file created (`open(O_CREAT)`) with `mode` has exactly that mode, so that a
/// following `fchmod` to the same mode can be left out. Set-id and sticky bits are never
/// assumed: they are always set explicitly.
pub fn created_with_mode(mode: u32) -> bool {
    mode & 0o7000 == 0 && umask().is_some_and(|m| mode & m == 0)
}

/// A random alphanumeric suffix for temporary names.
pub fn random_suffix(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn split_names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|n| !n.is_empty())
}

fn unsupported(e: &rustix::io::Errno) -> bool {
    *e == rustix::io::Errno::NOTSUP || *e == rustix::io::Errno::OPNOTSUPP
}

/// All xattrs of an open file or directory.
pub fn read_xattrs_fd(fd: BorrowedFd<'_>, path: &Path) -> Result<Xattrs> {
    let io = |op: &str, e: rustix::io::Errno| Error::io_path(op, path, e.into());
    let mut list = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::flistxattr(fd, &mut list[..]) {
            Ok(n) => break n,
            Err(e) if e == rustix::io::Errno::RANGE && list.len() < MAX_XATTR_SIZE => {
                list.resize(list.len() * 4, 0)
            }
            Err(e) if unsupported(&e) => return Ok(Xattrs::new()),
            Err(e) => return Err(io("listing xattrs of", e)),
        }
    };
    let mut out = Xattrs::new();
    for name in split_names(&list[..n]) {
        let name_str = std::str::from_utf8(name).map_err(|_| Error::Malformed {
            what: format!("xattr names of {}", path.display()),
            reason: "a name is not UTF-8".into(),
        })?;
        if let Some(v) = get_xattr_fd(fd, name_str, path)? {
            out.insert(name.to_vec(), v);
        }
    }
    Ok(out)
}

/// One xattr of an open file, or `None` if it is not set.
pub fn get_xattr_fd(fd: BorrowedFd<'_>, name: &str, path: &Path) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(e) if e == rustix::io::Errno::RANGE && buf.len() < MAX_XATTR_SIZE => {
                buf.resize(buf.len() * 8, 0)
            }
            Err(e) if e == rustix::io::Errno::NODATA || unsupported(&e) => return Ok(None),
            Err(e) => {
                return Err(Error::io_path(
                    &format!("reading xattr {name} of"),
                    path,
                    e.into(),
                ))
            }
        }
    }
}

/// All xattrs of `path` itself (not following a symlink).
pub fn read_xattrs_path(path: &Path) -> Result<Xattrs> {
    let io = |op: &str, e: rustix::io::Errno| Error::io_path(op, path, e.into());
    let mut list = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(path, &mut list[..]) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Xattrs::new()),
        Err(e) => return Err(io("listing xattrs of", e)),
    };
    let mut out = Xattrs::new();
    for name in split_names(&list[..n]) {
        let mut buf = vec![0u8; 64 * 1024];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                out.insert(name.to_vec(), buf);
            }
            Err(e) if e == rustix::io::Errno::NODATA => {}
            Err(e) => return Err(io("reading xattrs of", e)),
        }
    }
    Ok(out)
}

/// Set every xattr in `xattrs` on an open file.
pub fn set_xattrs_fd(fd: BorrowedFd<'_>, xattrs: &Xattrs, path: &Path) -> Result<()> {
    set_each(xattrs, path, |k, v| {
        rustix::fs::fsetxattr(fd, k, v, rustix::fs::XattrFlags::empty())
    })
}

/// Set every xattr in `xattrs` on `path` itself (not following a symlink).
pub fn set_xattrs_path(path: &Path, xattrs: &Xattrs) -> Result<()> {
    set_each(xattrs, path, |k, v| {
        rustix::fs::lsetxattr(path, k, v, rustix::fs::XattrFlags::empty())
    })
}

/// Call `set` for each xattr, naming the xattr and `path` in an error.
fn set_each(
    xattrs: &Xattrs,
    path: &Path,
    set: impl Fn(&[u8], &[u8]) -> rustix::io::Result<()>,
) -> Result<()> {
    for (k, v) in xattrs.iter() {
        set(k, v).map_err(|e| {
            Error::io_path(
                &format!("setting xattr {} on", String::from_utf8_lossy(k)),
                path,
                e.into(),
            )
        })?;
    }
    Ok(())
}

/// Set the modification time of an open file to the epoch (leaving atime), as ostree does
/// for content objects in bare modes.
pub fn zero_mtime(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
    };
    rustix::fs::futimens(fd, &ts).map_err(|e| Error::io_path("setting mtime of", path, e.into()))
}

/// A readable fd of a directory (cap-std's `Dir` may hold an `O_PATH` fd, which `fsync`,
/// `fchmod` and the xattr calls refuse).
pub fn dir_fd(dir: &Dir, path: &Path) -> Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io_path("opening", path, e.into()))
}

/// fsync a directory.
pub fn fsync_dir(dir: &Dir, path: &Path) -> Result<()> {
    let fd = dir_fd(dir, path)?;
    rustix::fs::fsync(&fd).map_err(|e| Error::io_path("fsync", path, e.into()))
}

/// Replace `name` in `dir` with `data` atomically: a temp file in `tmp_dir` (same file
/// system; `None` means `dir` itself), fsync, rename, fsync the target directory. Keeping the
/// temp file out of `refs/` matters: a writer killed mid-way must not leave a file there that
/// `ostree refs` would take for a ref.
pub fn write_atomic(
    dir: &Dir,
    tmp_dir: Option<&Dir>,
    name: &str,
    data: &[u8],
    mode: u32,
    full: &Path,
) -> Result<()> {
    let tdir = tmp_dir.unwrap_or(dir);
    let tmp = format!(
        ".{}.tmp-{}",
        name.rsplit('/').next().unwrap_or(name),
        random_suffix(8)
    );
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true).mode(mode);
    let result = (|| {
        let mut f = tdir
            .open_with(&tmp, &opts)
            .map_err(|e| Error::io_path("creating a temporary file for", full, e))?;
        f.write_all(data)
            .map_err(|e| Error::io_path("writing", full, e))?;
        f.sync_all().map_err(|e| Error::io_path("fsync", full, e))?;
        drop(f);
        tdir.rename(&tmp, dir, name)
            .map_err(|e| Error::io_path("renaming into place", full, e))
    })();
    if result.is_err() {
        let _ = tdir.remove_file(&tmp);
    }
    result?;
    let parent = match name.rsplit_once('/') {
        Some((p, _)) => dir
            .open_dir(p)
            .map_err(|e| Error::io_path("opening", full, e))?,
        None => dir
            .try_clone()
            .map_err(|e| Error::io_path("opening", full, e))?,
    };
    fsync_dir(&parent, full)
}
