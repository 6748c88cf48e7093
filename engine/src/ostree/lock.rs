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
use std::os::fd::AsFd;

use cap_std::fs::OpenOptionsExt as _;
use cap_std::fs::{Dir, OpenOptions};

use crate::error::{Error, IoContext, Result};
use crate::fs_lock::{self, LockKind};

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
        let kind = if exclusive {
            LockKind::Exclusive
        } else {
            LockKind::Shared
        };
        let wait = match wait {
            Wait::Block => fs_lock::Wait::Block,
            Wait::NoWait => fs_lock::Wait::NoWait,
        };
        if fs_lock::lock(file.as_fd(), kind, wait).at("locking", what)? {
            Ok(Some(OfdLock { _file: file }))
        } else {
            Ok(None)
        }
    }
}
