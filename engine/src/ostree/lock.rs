//! Open-file-description locks, the kind libostree takes (checked with strace on ostree
//! 2022.7: `fcntl(F_OFD_SETLK)` on `.lock` and on `tmp/staging-…-lock`, not `flock`).
//!
//! 1. A writer takes the repository lock `.lock` *shared* for the whole transaction (ostree
//!    does the same; `prune` takes it exclusive), so stowage and ostree writers interlock.
//! 2. Each staging directory `tmp/staging-<boot id>-<random>` has a sibling
//!    `…-lock` file held *exclusive* while in use; a staging directory whose lock can be taken
//!    belongs to no live writer and may be removed.
//! 3. The lock is released when the [`OfdLock`] (its file) is dropped, and by the kernel when
//!    the process dies, so a killed writer never leaves a lock behind.

use std::fs::File;
use std::os::fd::AsRawFd;

use cap_std::fs::OpenOptionsExt as _;
use cap_std::fs::{Dir, OpenOptions};

use crate::error::{Error, Result};

/// A held OFD lock on a file.
#[derive(Debug)]
pub struct OfdLock {
    _file: File,
}

/// Whether to wait for a conflicting lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until the lock is granted.
    Block,
    /// Fail at once (`Ok(None)`) if it is held.
    NoWait,
}

impl OfdLock {
    /// Lock `name` in `dir` (created with mode `create_mode` if missing), shared or exclusive.
    /// With [`Wait::NoWait`], `Ok(None)` means someone else holds a conflicting lock.
    pub fn acquire(
        dir: &Dir,
        name: &str,
        create_mode: u32,
        exclusive: bool,
        wait: Wait,
        what: &str,
    ) -> Result<Option<OfdLock>> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).mode(create_mode);
        let file = dir
            .open_with(name, &opts)
            .map_err(|e| Error::io_path("opening lock file", what, e))?
            .into_std();
        // SAFETY: `flock` is plain data; zeroed is a valid value for every field.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = if exclusive {
            libc::F_WRLCK
        } else {
            libc::F_RDLCK
        } as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        let cmd = match wait {
            Wait::Block => libc::F_OFD_SETLKW,
            Wait::NoWait => libc::F_OFD_SETLK,
        };
        loop {
            // SAFETY: a valid fd and a pointer to a live, initialised `flock`.
            let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &fl as *const libc::flock) };
            if r == 0 {
                return Ok(Some(OfdLock { _file: file }));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::EACCES) if wait == Wait::NoWait => return Ok(None),
                _ => return Err(Error::io_path("locking", what, e)),
            }
        }
    }
}
