//! File operations the store shares: atomic replacement and removal of layer trees.
//!
//! 1. [`atomic_write`] does what Go's `ioutils.AtomicWriteFile` does: write `.tmp-<name>XXXX`
//!    in the same directory (mode 0600 unless told otherwise), fsync it, rename it over the
//!    target. Readers see the old or the new file, never a torn one.
//! 2. [`remove_tree`] deletes a directory tree below a [`Dir`]; layer trees contain read-only
//!    directories (`diff/` is 0555), which a non-root user cannot empty, so on
//!    `PermissionDenied` it makes the directories writable and tries again.
//!
//! Everything goes through `cap_std::fs::Dir`, so no path can leave the store.

use std::io::{ErrorKind, Write};
use std::path::Path;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, Permissions, PermissionsExt};
use rand::distr::{Alphanumeric, SampleString};

/// Replace `name` in `dir` with `data` atomically; the new file gets `mode`.
pub fn atomic_write(dir: &Dir, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = loop {
        let candidate = format!(
            ".tmp-{name}{}",
            Alphanumeric.sample_string(&mut rand::rng(), 10)
        );
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(mode);
        match dir.open_with(&candidate, &opts) {
            Ok(f) => break (candidate, f),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let (tmp_name, mut file) = tmp;
    let result = (|| {
        file.write_all(data)?;
        file.sync_all()?;
        // The umask may have narrowed the mode; set it exactly.
        file.set_permissions(Permissions::from_mode(mode))?;
        drop(file);
        dir.rename(&tmp_name, dir, name)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp_name);
    }
    result
}

/// Read `name` from `dir`; a missing file is `None`.
pub fn read_optional(dir: &Dir, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    match dir.read(name) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove the file `name` from `dir`, ignoring a missing one.
pub fn remove_file_if_exists(dir: &Dir, name: impl AsRef<Path>) -> std::io::Result<()> {
    match dir.remove_file(name) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Remove the tree `name` below `dir`, ignoring a missing one, and making read-only
/// directories writable when that is what stops the removal.
pub fn remove_tree(dir: &Dir, name: impl AsRef<Path>) -> std::io::Result<()> {
    let name = name.as_ref();
    match dir.remove_dir_all(name) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            make_writable(dir, name)?;
            dir.remove_dir_all(name)
        }
        Err(e) => Err(e),
    }
}

fn make_writable(dir: &Dir, path: &Path) -> std::io::Result<()> {
    let meta = dir.symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    dir.set_permissions(path, Permissions::from_mode(0o700))?;
    for entry in dir.read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(dir, &path.join(entry.file_name()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;
    use cap_std::fs::MetadataExt;

    #[test]
    fn atomic_write_replaces_with_mode_and_leaves_no_temp() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        atomic_write(&dir, "images.json", b"[]", 0o600).unwrap();
        atomic_write(&dir, "images.json", b"[{}]", 0o600).unwrap();
        assert_eq!(dir.read("images.json").unwrap(), b"[{}]");
        assert_eq!(dir.metadata("images.json").unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = dir
            .entries()
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["images.json".to_string()]);
        assert_eq!(read_optional(&dir, "missing").unwrap(), None);
    }

    #[test]
    fn remove_tree_handles_read_only_dirs_and_missing() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        dir.create_dir_all("l1/diff/sub").unwrap();
        dir.write("l1/diff/sub/f", b"x").unwrap();
        dir.set_permissions("l1/diff/sub", Permissions::from_mode(0o555))
            .unwrap();
        dir.set_permissions("l1/diff", Permissions::from_mode(0o555))
            .unwrap();
        remove_tree(&dir, "l1").unwrap();
        assert!(!dir.exists("l1"));
        remove_tree(&dir, "l1").unwrap();
    }
}
