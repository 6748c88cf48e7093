//! Layers for an image another tool imported (ostree-rs-ext: no stowage export data): the
//! image's merged tree as one new layer, so the image can still be copied out (to
//! containers-storage for podman, to an OCI layout, to a registry) — with new digests.
//!
//! 1. [`regenerate`] reads the merge commit's `ostree.container.image-config` (the config as
//!    ostree-rs-ext stored it), writes the layer tar once into a hasher to learn its diffID
//!    and size, and builds a new config (the original with `rootfs.diff_ids` = that one
//!    diffID and one history entry saying where the layer came from) and a new OCI manifest
//!    naming the uncompressed layer.
//! 2. [`write_layer`] writes the tar: every directory, file and symlink of the tree, in
//!    dirtree order (sorted), directories before their content, with the owners, modes and
//!    xattrs (PAX `SCHILY.xattr.*`) the objects record and mtime 0 (what ostree deploys);
//!    `usr/etc` becomes `etc` again (ostree-rs-ext's mapping, undone). A content object at
//!    several paths is written at each (no hard links: the tree does not say they were one).
//!    The tar is the same bytes every time, so the second pass (the stream the pipeline
//!    copies, verified against the diffID from the first) matches.
//!
//! The original layers cannot be rebuilt: ostree-rs-ext keeps neither their tar-split nor
//! what it filtered out. `stowage copy` says so on stderr ([`crate::copy::ImageSource::notes`]).

use std::io::{Read, Write};

use serde_json::Value as Json;
use sha2::{Digest as _, Sha256};

use super::checkout::WalkEntry;
use super::object::{mode, Checksum, Xattrs};
use super::repo::Repo;
use crate::digest::Digest;
use crate::error::{Error, Result};

/// What [`regenerate`] made.
#[derive(Debug, Clone)]
pub struct Regenerated {
    /// The new OCI manifest.
    pub manifest: Vec<u8>,
    /// The new config.
    pub config: Vec<u8>,
    /// The layer's diffID (the digest of the uncompressed tar, which the manifest names).
    pub diff_id: Digest,
    /// The layer's size in bytes.
    pub size: u64,
}

struct Hashing {
    hasher: Sha256,
    len: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Step 1 of the module doc, for the merge commit `commit` of the image `name`.
pub fn regenerate(repo: &Repo, commit: &Checksum, name: &str) -> Result<Regenerated> {
    let c = repo.read_commit(commit)?;
    let config_text =
        c.meta_str("ostree.container.image-config")
            .ok_or_else(|| Error::Malformed {
                what: format!("commit {commit} of {name}"),
                reason:
                    "no ostree.container.image-config: this is not an ostree-rs-ext image commit"
                        .into(),
            })?;
    let mut config: Json = serde_json::from_str(config_text).map_err(|e| Error::Json {
        what: format!("ostree.container.image-config of commit {commit}"),
        source: e,
    })?;
    let mut hashing = Hashing {
        hasher: Sha256::new(),
        len: 0,
    };
    write_layer(repo, commit, &mut hashing)?;
    let diff_id: Digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize()))
        .parse()
        .expect("a sha256 digest");
    let obj = config.as_object_mut().ok_or_else(|| Error::Malformed {
        what: format!("ostree.container.image-config of commit {commit}"),
        reason: "not a JSON object".into(),
    })?;
    obj.insert(
        "rootfs".into(),
        serde_json::json!({"type": "layers", "diff_ids": [diff_id.to_string()]}),
    );
    let mut history = serde_json::json!({
        "created_by": format!(
            "stowage: the merged tree of ostree commit {commit}, regenerated (the image was \
             imported without stowage's export data)"
        ),
    });
    if let Some(created) = obj.get("created").cloned() {
        history["created"] = created;
    }
    obj.insert("history".into(), Json::Array(vec![history]));
    let config = serde_json::to_vec(&config).expect("JSON serializes");
    let config_digest = crate::digest::sha256_of(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": diff_id.to_string(),
            "size": hashing.len,
        }],
    });
    Ok(Regenerated {
        manifest: serde_json::to_vec(&manifest).expect("JSON serializes"),
        config,
        diff_id,
        size: hashing.len,
    })
}

/// The container path of an ostree path (`usr/etc` → `etc`).
fn container_path(path: &str) -> String {
    match path.strip_prefix("usr/etc") {
        Some("") => "etc".to_string(),
        Some(rest) if rest.starts_with('/') => format!("etc{rest}"),
        _ => path.to_string(),
    }
}

fn pax_xattrs(xattrs: &Xattrs) -> Vec<(String, Vec<u8>)> {
    xattrs
        .iter()
        .map(|(k, v)| {
            (
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                v.to_vec(),
            )
        })
        .collect()
}

/// Step 2 of the module doc: the tar of `commit`'s tree into `out`.
pub fn write_layer(repo: &Repo, commit: &Checksum, out: &mut dyn Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    let io = |what: &str, e: std::io::Error| {
        Error::from_io(format!("writing the regenerated layer: {what}"), e)
    };
    // `usr/etc` is written as `etc`: it sorts after `usr` in the tree but moves to the root;
    // collect the entries first (paths and checksums only, not data) so the tar lists
    // parents before children.
    let mut entries: Vec<(String, WalkEntry)> = Vec::new();
    repo.walk(commit, &mut |e| {
        let path = match e {
            WalkEntry::Dir { path, .. } | WalkEntry::File { path, .. } => path,
        };
        entries.push((container_path(path), e.clone()));
        Ok(())
    })?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, e) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        match e {
            WalkEntry::Dir { meta, .. } => {
                if path.is_empty() {
                    continue;
                }
                let x = pax_xattrs(&meta.xattrs);
                if !x.is_empty() {
                    builder
                        .append_pax_extensions(x.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                        .map_err(|e| io(&path, e))?;
                }
                header.set_entry_type(tar::EntryType::Directory);
                header.set_uid(meta.uid.into());
                header.set_gid(meta.gid.into());
                header.set_mode(meta.mode & 0o7777);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(|e| io(&path, e))?;
            }
            WalkEntry::File { checksum, .. } => {
                let content = repo.open_content(&checksum)?;
                let m = &content.meta;
                let x = pax_xattrs(&m.xattrs);
                if !x.is_empty() {
                    builder
                        .append_pax_extensions(x.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                        .map_err(|e| io(&path, e))?;
                }
                header.set_uid(m.uid.into());
                header.set_gid(m.gid.into());
                header.set_mode(m.mode & 0o7777);
                if m.mode & mode::S_IFMT == mode::S_IFLNK {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &path, &m.symlink_target)
                        .map_err(|e| io(&path, e))?;
                } else {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(content.size);
                    let reader: Box<dyn Read + Send> = content.reader;
                    builder
                        .append_data(&mut header, &path, reader)
                        .map_err(|e| io(&path, e))?;
                }
            }
        }
    }
    builder
        .finish()
        .map_err(|e| io("the end of the archive", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::container_path;

    #[test]
    fn usr_etc_goes_back_to_etc() {
        assert_eq!(container_path("usr/etc"), "etc");
        assert_eq!(container_path("usr/etc/passwd"), "etc/passwd");
        assert_eq!(container_path("usr/etcx"), "usr/etcx");
        assert_eq!(container_path("usr/bin/sh"), "usr/bin/sh");
    }
}
