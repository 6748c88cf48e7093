//! Big data: the named blobs containers/storage keeps beside an image (manifests, config,
//! signatures) in `overlay-images/<image-id>/`.
//!
//! 1. File names (Go's `makeBigDataBaseName`): a key made only of `[.0-9a-z]` is used as is
//!    (`manifest`); any other key becomes `"=" + base64(key)` with the standard alphabet and
//!    padding (`sha256:…` → `=c2hhMjU2Oj…`).
//! 2. Items are written atomically, mode 0600, in a 0700 directory.
//! 3. The digest recorded for an item is the manifest digest for keys starting with
//!    `manifest` and the sha256 of the bytes otherwise; for schema2/OCI manifests (the only
//!    ones stowage stores) both are the sha256 of the bytes.

use std::io::ErrorKind;

use base64::Engine as _;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt};

use super::files::{atomic_write, read_optional};
use crate::digest::{sha256_of, Digest};

/// The file name containers/storage uses for big-data item `key`.
pub fn file_name(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| matches!(b, b'.' | b'0'..=b'9' | b'a'..=b'z'))
    {
        key.to_string()
    } else {
        format!("={}", base64::engine::general_purpose::STANDARD.encode(key))
    }
}

/// The key stored under file name `name`, if it is a big-data file name.
pub fn key_of_file_name(name: &str) -> Option<String> {
    match name.strip_prefix('=') {
        Some(enc) => base64::engine::general_purpose::STANDARD
            .decode(enc)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(name.to_string()),
    }
}

/// The digest recorded for item `key` with content `data`.
pub fn digest_of(_key: &str, data: &[u8]) -> Digest {
    // Manifest keys get the manifest digest, which for schema2/OCI is the sha256 of the
    // bytes (schema1's signature stripping does not apply: schema1 is refused elsewhere).
    sha256_of(data)
}

/// Write item `key` of the owner `owner_id` below `parent` (`overlay-images`), creating the
/// owner's directory (0700) if needed.
pub fn write(parent: &Dir, owner_id: &str, key: &str, data: &[u8]) -> std::io::Result<()> {
    let mut b = DirBuilder::new();
    b.mode(0o700);
    match parent.create_dir_with(owner_id, &b) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let dir = parent.open_dir(owner_id)?;
    atomic_write(&dir, &file_name(key), data, 0o600)
}

/// Read item `key` of `owner_id` below `parent`; `None` if it does not exist.
pub fn read(parent: &Dir, owner_id: &str, key: &str) -> std::io::Result<Option<Vec<u8>>> {
    let dir = match parent.open_dir(owner_id) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    read_optional(&dir, &file_name(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cap_std::ambient_authority;
    use cap_std::fs::MetadataExt;

    const MAN: &str = "sha256:c544b76c41d40e0cb68bdb1792c554077a9e398473aa94925a5de60bc6cd7563";

    #[test]
    fn names_match_reference_examples() {
        assert_eq!(file_name("manifest"), "manifest");
        // Observed with podman on this machine (probe store).
        assert_eq!(
            file_name("manifest-sha256:863e70090b47ca0677df56620c681653f09945e5bb004212c7536217859d8ed7"),
            "=bWFuaWZlc3Qtc2hhMjU2Ojg2M2U3MDA5MGI0N2NhMDY3N2RmNTY2MjBjNjgxNjUzZjA5OTQ1ZTViYjAwNDIxMmM3NTM2MjE3ODU5ZDhlZDc="
        );
        assert_eq!(
            file_name("sha256:4f76f2c2f1cbaa5e86357d62d8ac42985d89b825aaf72b252ee28403badb2b78"),
            "=c2hhMjU2OjRmNzZmMmMyZjFjYmFhNWU4NjM1N2Q2MmQ4YWM0Mjk4NWQ4OWI4MjVhYWY3MmIyNTJlZTI4NDAzYmFkYjJiNzg="
        );
        // Reference notes §3.2: prefixes of the names of the example image.
        let m = file_name(&format!("manifest-{MAN}"));
        assert!(m.starts_with("=bWFuaWZlc3Qtc2hhMjU2OmM1NDRi"), "{m}");
        // (The notes abbreviate the tail as `…Nzc1NjM=`; base64 of the full key ends
        // `ZDc1NjM=`, consistent with the full names podman wrote in the probe store above.)
        assert!(m.ends_with("ZDc1NjM="), "{m}");
        let s = file_name(&format!("signature-{}", &MAN[7..]));
        assert!(s.starts_with("=c2lnbmF0dXJlLWM1NDRi"), "{s}");
        // Upper case, '-' and ':' force encoding; '.' does not.
        assert_eq!(file_name("a.b9"), "a.b9");
        assert!(file_name("Manifest").starts_with('='));
        assert!(file_name("../x").starts_with('='));
        for key in ["manifest", "sha256:abc", "signature-00", "x/y"] {
            assert_eq!(key_of_file_name(&file_name(key)).unwrap(), key);
        }
    }

    #[test]
    fn write_and_read_with_modes() {
        let t = tempfile::tempdir().unwrap();
        let dir = Dir::open_ambient_dir(t.path(), ambient_authority()).unwrap();
        write(&dir, "abc", "sha256:x", b"{}").unwrap();
        write(&dir, "abc", "sha256:x", b"{ }").unwrap();
        assert_eq!(read(&dir, "abc", "sha256:x").unwrap().unwrap(), b"{ }");
        assert_eq!(read(&dir, "abc", "nope").unwrap(), None);
        assert_eq!(read(&dir, "nodir", "manifest").unwrap(), None);
        assert_eq!(dir.metadata("abc").unwrap().mode() & 0o777, 0o700);
        let sub = dir.open_dir("abc").unwrap();
        assert_eq!(
            sub.metadata(file_name("sha256:x")).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(digest_of("manifest", b"hello"), sha256_of(b"hello"));
    }
}
