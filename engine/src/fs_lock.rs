//! Whole-file record locks with `fcntl`, the kind containers/storage (Go's POSIX locks) and
//! libostree (`F_OFD_SETLK`) take, so stowage interlocks with both.
//!
//! 1. [`lock`] takes a whole-file lock, shared ([`LockKind::Shared`], `F_RDLCK`) or exclusive
//!    ([`LockKind::Exclusive`], `F_WRLCK`), waiting for it or not ([`Wait`]). It is an
//!    open-file-description lock: it conflicts with POSIX record locks of other processes and
//!    with other descriptions' OFD locks, and it belongs to the file description, so closing
//!    some other descriptor of the same file never drops it. On kernels without OFD locks
//!    (before Linux 3.15) the classic `F_SETLK`/`F_SETLKW` is used. `flock(2)` would be wrong:
//!    it does not interact with fcntl locks at all.
//! 2. [`probe`] asks, as a POSIX `F_GETLK` query from a separate descriptor does, which lock
//!    another holder has (tests and diagnostics).
//! 3. The lock goes when the description is closed, and with the process.
//!
//! This is the engine's only `unsafe` code: `rustix::fs::fcntl_lock` issues `F_SETLK(W)`, not
//! the OFD commands, and `libc::fcntl` with a `struct flock` is the one way to reach them.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Shared or exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `F_RDLCK`: readers share it.
    Shared,
    /// `F_WRLCK`: one holder.
    Exclusive,
}

/// Whether to wait for a conflicting lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until the lock is granted.
    Block,
    /// Fail at once if it is held ([`lock`] then returns `Ok(false)`).
    NoWait,
}

/// What [`probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nobody holds a conflicting lock.
    Free,
    /// Someone holds a shared lock.
    Shared,
    /// Someone holds an exclusive lock.
    Exclusive,
}

fn whole_file(l_type: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is plain old data; all-zero is a valid value, and the fields that matter
    // are set below (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    fl.l_pid = 0;
    fl
}

/// Lock the whole file `fd` (see the module doc). `Ok(false)` only with [`Wait::NoWait`] when
/// someone else holds a conflicting lock.
pub fn lock(fd: BorrowedFd<'_>, kind: LockKind, wait: Wait) -> io::Result<bool> {
    let fl = whole_file(match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    });
    let (mut cmd, fallback) = match wait {
        Wait::Block => (libc::F_OFD_SETLKW, libc::F_SETLKW),
        Wait::NoWait => (libc::F_OFD_SETLK, libc::F_SETLK),
    };
    loop {
        // SAFETY: `fd` is a valid open descriptor for the call's duration and `fl` a live,
        // initialised flock that fcntl only reads for these commands.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &fl as *const libc::flock) };
        if r == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINVAL) if cmd != fallback => cmd = fallback,
            Some(libc::EAGAIN) | Some(libc::EACCES) if wait == Wait::NoWait => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Which conflicting lock another holder has on `fd`'s file, as a POSIX `F_GETLK` query for
/// `kind` sees it.
pub fn probe(fd: BorrowedFd<'_>, kind: LockKind) -> io::Result<Held> {
    let mut fl = whole_file(match kind {
        LockKind::Shared => libc::F_RDLCK,
        LockKind::Exclusive => libc::F_WRLCK,
    });
    // SAFETY: valid descriptor; `fl` is a live flock that F_GETLK fills in.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLK, &mut fl as *mut libc::flock) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match fl.l_type as libc::c_int {
        libc::F_UNLCK => Held::Free,
        libc::F_RDLCK => Held::Shared,
        _ => Held::Exclusive,
    })
}
