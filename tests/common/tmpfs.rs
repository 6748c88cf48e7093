//! A small tmpfs for the tests that fill a filesystem (`full_disk.rs`, `bootc_e2e.rs`).

use std::path::PathBuf;
use std::process::Command;

use stowage_fixtures::tools::{is_root, run, skip, tempdir};

/// A tmpfs mounted on a temporary directory; unmounted (lazily, with whatever podman mounted
/// inside it) when dropped.
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    /// Where it is mounted.
    pub mount: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `mib` MiB, or print a `SKIP:` line and return `None` when not root
    /// (mounting needs it).
    pub fn mount(test: &str, mib: u64) -> Option<Tmpfs> {
        if !is_root() {
            skip(test, "mounting a tmpfs needs root");
            return None;
        }
        let dir = tempdir();
        let mount = dir.path().join("fs");
        std::fs::create_dir(&mount).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mount));
        Some(Tmpfs { _dir: dir, mount })
    }

    /// `mount -o remount,size=MIBm`: the space freed for a second run.
    pub fn grow(&self, mib: u64) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.mount));
    }

    /// Fill the filesystem up with one file (`FILE` under the mount) until a write fails
    /// with `ENOSPC`; returns its path (remove it to free the space again).
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.mount.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // A partly written last block: write byte by byte until nothing fits.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // podman may have mounted ROOT/overlay inside it.
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.mount)
            .output();
    }
}
