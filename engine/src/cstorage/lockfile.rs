//! containers/storage lock files: fcntl record locks plus a last-writer token.
//!
//! Every JSON store of containers/storage (`layers.json`, `images.json`, `containers.json`) has a
//! `.lock` file beside it. Go takes a whole-file fcntl record lock on it (`F_RDLCK` to read,
//! `F_WRLCK` to write) and, after every change, writes a fresh 64-byte "last-writer" token into
//! it so that long-running processes notice the change and reload.
//!
//! 1. A lock file is opened `O_RDWR|O_CREAT|O_CLOEXEC`, mode 0644 (its directory is created
//!    0700 if missing), when the process first needs the kernel lock, and closed when the
//!    last user in the process lets go.
//! 2. The kernel lock is an open-file-description lock (`F_OFD_SETLKW`): it conflicts with the
//!    POSIX record locks Go takes, and belongs to the file description rather than the process,
//!    so closing some other descriptor of the file never drops it. On kernels without OFD
//!    locks (before Linux 3.15) the classic `F_SETLKW` is used. `flock(2)` would be wrong: it
//!    does not interact with fcntl locks at all. The lock call itself is
//!    [`crate::fs_lock::lock`], shared with the ostree store.
//! 3. Inside the process, all [`LockFile`]s for one path share one state (a registry keyed by
//!    path): readers share, a writer is exclusive, and threads wait on a condition variable.
//!    The kernel lock is taken when the first guard appears and dropped when the last goes.
//! 4. A write guard can *pin* an item (a layer being extracted): while any pin exists the
//!    kernel write lock stays held after the guard is gone, so other processes (podman, which
//!    deletes incomplete layers whenever it opens a store) wait until the item is finished —
//!    exactly as Go holds the layer-store lock for the whole of `PutLayer`. Threads of this
//!    process keep taking guards meanwhile, so several layers can be extracted at once.
//! 5. [`WriteGuard::touch`] writes the token: LE u64 Unix nanoseconds, LE u64 per-process
//!    counter, LE u32 pid, 44 random bytes, with `pwrite` at offset 0.
//!
//! Lock order across files, as in Go: `layers.lock`, then `images.lock`, then
//! `containers.lock`; a thread holding a read guard must not ask for a write guard on the
//! same file (it would wait for itself).

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

use rand::RngCore;

use crate::error::{Error, IoContext, Result};
use crate::fs_lock::{self, LockKind, Wait};

/// Length of the last-writer token.
pub const TOKEN_LEN: usize = 64;

static TOKEN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh last-writer token (§4 of the containers-storage notes).
pub fn new_token() -> [u8; TOKEN_LEN] {
    let mut t = [0u8; TOKEN_LEN];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let counter = TOKEN_COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    t[0..8].copy_from_slice(&nanos.to_le_bytes());
    t[8..16].copy_from_slice(&counter.to_le_bytes());
    t[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    rand::rng().fill_bytes(&mut t[20..]);
    t
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KernelMode {
    None,
    Read,
    Write,
}

#[derive(Debug)]
struct State {
    fd: Option<OwnedFd>,
    mode: KernelMode,
    readers: usize,
    writer: bool,
    pins: HashSet<String>,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    state: Mutex<State>,
    cond: Condvar,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<Shared>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// One containers/storage lock file, shared by every user of the same path in this process.
#[derive(Debug, Clone)]
pub struct LockFile {
    shared: Arc<Shared>,
    read_only: bool,
}

impl LockFile {
    /// The lock file at `path` (not opened until a guard is taken). `read_only` lock files
    /// are opened `O_RDONLY` and never created; a missing one means no lock is taken.
    pub fn new(path: &Path, read_only: bool) -> LockFile {
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut reg = registry().lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|_, w| w.strong_count() > 0);
        let shared = match reg.get(&key).and_then(Weak::upgrade) {
            Some(s) => s,
            None => {
                let s = Arc::new(Shared {
                    path: key.clone(),
                    state: Mutex::new(State {
                        fd: None,
                        mode: KernelMode::None,
                        readers: 0,
                        writer: false,
                        pins: HashSet::new(),
                    }),
                    cond: Condvar::new(),
                });
                reg.insert(key, Arc::downgrade(&s));
                s
            }
        };
        LockFile { shared, read_only }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a shared lock: waits for writers in this process and in others.
    pub fn read(&self) -> Result<ReadGuard<'_>> {
        let mut st = self.state();
        while st.writer {
            st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.mode == KernelMode::None {
            self.kernel_lock(&mut st, KernelMode::Read)?;
        }
        st.readers += 1;
        Ok(ReadGuard { lock: self })
    }

    /// Take an exclusive lock: waits for every other guard in this process and for other
    /// processes' locks.
    pub fn write(&self) -> Result<WriteGuard<'_>> {
        if self.read_only {
            return Err(Error::Unsupported {
                transport: format!("lock file {}", self.path().display()),
                reason: "the store was opened read-only; open it for writing to change it".into(),
            });
        }
        let mut st = self.state();
        while st.writer || st.readers > 0 {
            st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.mode != KernelMode::Write {
            self.kernel_lock(&mut st, KernelMode::Write)?;
        }
        st.writer = true;
        Ok(WriteGuard { lock: self })
    }

    /// Whether `item` is pinned (being written by a thread of this process).
    pub fn is_pinned(&self, item: &str) -> bool {
        self.state().pins.contains(item)
    }

    /// Drop the pin on `item`; releases the kernel lock if nothing else holds it.
    pub fn unpin(&self, item: &str) {
        let mut st = self.state();
        st.pins.remove(item);
        self.release_if_idle(&mut st);
    }

    fn kernel_lock(&self, st: &mut State, mode: KernelMode) -> Result<()> {
        let path = &self.shared.path;
        let fd: OwnedFd = match st.fd.take() {
            Some(fd) => fd,
            None => {
                let mut opts = OpenOptions::new();
                opts.read(true).custom_flags(libc::O_CLOEXEC).mode(0o644);
                if !self.read_only {
                    opts.write(true).create(true);
                    if let Some(parent) = path.parent() {
                        std::fs::DirBuilder::new()
                            .recursive(true)
                            .mode(0o700)
                            .create(parent)
                            .at("creating lock directory", parent)?;
                    }
                }
                match opts.open(path) {
                    Ok(f) => f.into(),
                    Err(e) if self.read_only && e.kind() == std::io::ErrorKind::NotFound => {
                        // Nobody ever locked this store: there is nothing to wait for.
                        st.mode = mode;
                        return Ok(());
                    }
                    Err(e) => return Err(Error::io_path("opening lock file", path, e)),
                }
            }
        };
        let kind = match mode {
            KernelMode::Write => LockKind::Exclusive,
            _ => LockKind::Shared,
        };
        fs_lock::lock(fd.as_fd(), kind, Wait::Block).at("locking", path)?;
        st.fd = Some(fd);
        st.mode = mode;
        Ok(())
    }

    fn release_if_idle(&self, st: &mut State) {
        if st.readers == 0 && !st.writer && st.pins.is_empty() {
            // Closing the descriptor releases the lock (OFD and POSIX alike).
            st.fd = None;
            st.mode = KernelMode::None;
        }
        self.shared.cond.notify_all();
    }
}

/// A shared lock; released on drop.
#[derive(Debug)]
pub struct ReadGuard<'a> {
    lock: &'a LockFile,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.lock.state();
        st.readers -= 1;
        self.lock.release_if_idle(&mut st);
    }
}

/// An exclusive lock; released on drop (the kernel lock stays while pins exist).
#[derive(Debug)]
pub struct WriteGuard<'a> {
    lock: &'a LockFile,
}

impl WriteGuard<'_> {
    /// Write a fresh last-writer token, telling other processes the data changed.
    pub fn touch(&self) -> Result<()> {
        let st = self.lock.state();
        let Some(fd) = st.fd.as_ref() else {
            return Ok(());
        };
        let token = new_token();
        let n = rustix::io::pwrite(fd, &token, 0).map_err(|e| {
            Error::io_path("writing last-writer token to", self.lock.path(), e.into())
        })?;
        if n != TOKEN_LEN {
            return Err(Error::io_path(
                "writing last-writer token to",
                self.lock.path(),
                std::io::Error::from(std::io::ErrorKind::WriteZero),
            ));
        }
        Ok(())
    }

    /// Keep the kernel write lock after this guard is dropped, until [`LockFile::unpin`] of
    /// `item`. Used while a layer is incomplete.
    pub fn pin(&self, item: &str) {
        self.lock.state().pins.insert(item.to_string());
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.lock.state();
        st.writer = false;
        self.lock.release_if_idle(&mut st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs_lock::Held;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn token_shape() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(
            u32::from_le_bytes(a[16..20].try_into().unwrap()),
            std::process::id()
        );
        let ca = u64::from_le_bytes(a[8..16].try_into().unwrap());
        let cb = u64::from_le_bytes(b[8..16].try_into().unwrap());
        assert!(cb > ca);
    }

    #[test]
    fn touch_writes_a_new_token_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/layers.lock");
        let lock = LockFile::new(&path, false);
        {
            let g = lock.write().unwrap();
            g.touch().unwrap();
        }
        let first = std::fs::read(&path).unwrap();
        assert_eq!(first.len(), 64);
        {
            let g = lock.write().unwrap();
            g.touch().unwrap();
        }
        let second = std::fs::read(&path).unwrap();
        assert_eq!(second.len(), 64);
        assert_ne!(first, second);
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        let pmeta = std::fs::metadata(path.parent().unwrap()).unwrap();
        assert_eq!(pmeta.permissions().mode() & 0o777, 0o700);
    }

    /// Conflict with a POSIX lock held by another process (what Go takes).
    #[test]
    fn conflicts_with_posix_locks_of_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.lock");
        let lock = LockFile::new(&path, false);
        let g = lock.write().unwrap();
        // F_GETLK from this process does not see OFD locks of our own description as ours:
        // ask with a fresh descriptor and a POSIX query.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // What a POSIX F_GETLK query for a whole-file write lock reports.
        let probe = || fs_lock::probe(f.as_fd(), LockKind::Exclusive).unwrap();
        assert_eq!(probe(), Held::Exclusive, "lock is visible to POSIX F_GETLK");
        drop(g);
        assert_eq!(probe(), Held::Free, "released on drop");
    }

    #[test]
    fn pins_keep_the_kernel_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.lock");
        let lock = LockFile::new(&path, false);
        let query = || {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            fs_lock::probe(f.as_fd(), LockKind::Shared).unwrap()
        };
        {
            let g = lock.write().unwrap();
            g.pin("layer-a");
        }
        assert_eq!(query(), Held::Exclusive);
        assert!(lock.is_pinned("layer-a"));
        // Readers of this process still get in while the pin holds the kernel lock.
        drop(lock.read().unwrap());
        lock.unpin("layer-a");
        assert_eq!(query(), Held::Free);
    }

    #[test]
    fn writers_exclude_each_other_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                let inside = inside.clone();
                let max = max.clone();
                std::thread::spawn(move || {
                    // Separate LockFile values share state through the registry.
                    let lock = LockFile::new(&path, false);
                    for _ in 0..50 {
                        let g = lock.write().unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(g);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn read_only_lock_on_missing_file_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/layers.lock");
        let lock = LockFile::new(&path, true);
        drop(lock.read().unwrap());
        assert!(!path.exists());
        assert!(lock.write().is_err());
    }
}
