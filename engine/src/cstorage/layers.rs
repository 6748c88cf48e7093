//! `overlay-layers/layers.json`: the layer records of containers/storage.
//!
//! 1. The file is a JSON array of [`LayerRecord`]s (Go's `storage.Layer`); every key Go 1.43
//!    knows is a field here, and keys it does not know are kept in `extra` so a rewrite never
//!    drops what a newer podman wrote.
//! 2. Empty keys are omitted as Go's `omitempty` does; `created` is written like Go's
//!    `time.Time`.
//! 3. A missing or empty file is an empty store; [`parse`] and [`serialize`] do the rest, the
//!    store does locking and atomic replacement.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::gotime::GoTime;
use crate::compression::Compression;
use crate::digest::{parse_digest, Digest};
use crate::error::Result;

/// The flag containers/storage sets on a layer while it is being created.
pub const INCOMPLETE_FLAG: &str = "incomplete";

/// One ID mapping range (`idtools.IDMap`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// First ID inside the container.
    pub container_id: i64,
    /// First ID on the host.
    pub host_id: i64,
    /// Length of the range.
    pub size: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One element of `layers.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LayerRecord {
    /// 64-hex layer ID.
    pub id: String,
    /// Unique names (container layers are named `<container>-layer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Parent layer ID (empty for a base layer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    /// Opaque caller metadata.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// SELinux mount label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mountlabel: String,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<GoTime>,
    /// Digest of the blob the layer was applied from (e.g. the gzip blob).
    #[serde(
        rename = "compressed-diff-digest",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub compressed_diff_digest: String,
    /// Length of that blob.
    #[serde(rename = "compressed-size", default, skip_serializing_if = "is_zero")]
    pub compressed_size: i64,
    /// The diffID: sha256 of the uncompressed tar.
    #[serde(
        rename = "diff-digest",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub diff_digest: String,
    /// Length of the uncompressed tar.
    #[serde(rename = "diff-size", default, skip_serializing_if = "is_zero")]
    pub diff_size: i64,
    /// `archive.Compression` of the applied blob (0 none, 2 gzip, 4 zstd, ...).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compression: i64,
    /// Sorted distinct uids in the tar (whiteouts excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uidset: Vec<u32>,
    /// Sorted distinct gids in the tar (whiteouts excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gidset: Vec<u32>,
    /// Flags, e.g. `{"incomplete": true}` during creation.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub flags: Map<String, Value>,
    /// UID mappings of an ID-mapped layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uidmap: Vec<IdMap>,
    /// GID mappings of an ID-mapped layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gidmap: Vec<IdMap>,
    /// Names of the layer's big-data items (zstd:chunked only).
    #[serde(
        rename = "big-data-names",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub big_data_names: Vec<String>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LayerRecord {
    /// Whether the layer is still being created (or was abandoned while it was).
    pub fn is_incomplete(&self) -> bool {
        self.flags.get(INCOMPLETE_FLAG).and_then(Value::as_bool) == Some(true)
    }

    /// The parent layer ID, if any.
    pub fn parent(&self) -> Option<&str> {
        (!self.parent.is_empty()).then_some(self.parent.as_str())
    }

    /// The diffID, when recorded and well formed.
    pub fn diff_digest(&self) -> Option<Digest> {
        parse_digest(&self.diff_digest).ok()
    }

    /// The compressed blob digest, when recorded and well formed.
    pub fn compressed_digest(&self) -> Option<Digest> {
        parse_digest(&self.compressed_diff_digest).ok()
    }

    /// The compression of the blob the layer came from.
    pub fn compression(&self) -> Option<Compression> {
        Some(match self.compression {
            0 => Compression::Uncompressed,
            1 => Compression::Bzip2,
            2 => Compression::Gzip,
            3 => Compression::Xz,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
}

/// What a finished layer's content is: recorded by [`Store::finish_layer`](super::Store::finish_layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// Digest of the blob as received (`compressed-diff-digest`), if it came from a blob.
    pub compressed_digest: Option<Digest>,
    /// Length of that blob.
    pub compressed_size: Option<u64>,
    /// The diffID (sha256 of the uncompressed tar).
    pub diff_digest: Digest,
    /// Length of the uncompressed tar.
    pub diff_size: u64,
    /// Compression of the blob as received.
    pub compression: Compression,
    /// Distinct uids of the tar's entries (whiteouts excluded); sorted when stored.
    pub uid_set: BTreeSet<u32>,
    /// Distinct gids of the tar's entries (whiteouts excluded); sorted when stored.
    pub gid_set: BTreeSet<u32>,
}

impl LayerDigests {
    /// Copy these values into `rec`.
    pub fn apply_to(&self, rec: &mut LayerRecord) {
        rec.compressed_diff_digest = self
            .compressed_digest
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default();
        rec.compressed_size = self.compressed_size.unwrap_or(0) as i64;
        rec.diff_digest = self.diff_digest.to_string();
        rec.diff_size = self.diff_size as i64;
        rec.compression = match self.compression {
            // containers/storage has no number for zstd:chunked: its blobs are zstd.
            Compression::ZstdChunked => Compression::Zstd as i64,
            c => c as i64,
        };
        rec.uidset = self.uid_set.iter().copied().collect();
        rec.gidset = self.gid_set.iter().copied().collect();
    }
}

/// Parse `layers.json` content; empty content is an empty list.
pub fn parse(data: &[u8], what: &str) -> Result<Vec<LayerRecord>> {
    super::json_files::parse_records(data, what)
}

/// Serialise layer records compactly, as Go does.
pub fn serialize(layers: &[LayerRecord]) -> Vec<u8> {
    serde_json::to_vec(layers).expect("layer records serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file skopeo 1.9 wrote in the reference notes (§2).
    const REFERENCE: &str = r#"[{"id":"d64fbeb2048b6f54af25e1dba71b2edcd69b8d814b7bcd5cdf967f93e64ffeb0","created":"2026-11-22T13:02:13.114594109Z","compressed-diff-digest":"sha256:3124aa2a960e7c99e46397d5b2143a7cca5b771f07553f8664932171262b7006","compressed-size":226,"diff-digest":"sha256:d64fbeb2048b6f54af25e1dba71b2edcd69b8d814b7bcd5cdf967f93e64ffeb0","diff-size":10240,"compression":2,"uidset":[0],"gidset":[0]},{"id":"da2c6e39702eaf24fe91e5089490506cede16f5395c9f8fd53d7117904d88f96","parent":"d64fbeb2048b6f54af25e1dba71b2edcd69b8d814b7bcd5cdf967f93e64ffeb0","created":"2026-11-22T13:02:13.168286445Z","compressed-diff-digest":"sha256:4faf9ec85517a110a638b26f7ad27f4e82fefacd42d983e1cf1491012a747377","compressed-size":176,"diff-digest":"sha256:cb7a44641236ad24096126ddec4653084f22ceb5d5f471600989551cb36df8a9","diff-size":10240,"compression":2,"uidset":[0],"gidset":[0]}]"#;

    #[test]
    fn parses_reference_and_writes_it_back_byte_for_byte() {
        let layers = parse(REFERENCE.as_bytes(), "layers.json").unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1].parent(), Some(layers[0].id.as_str()));
        assert_eq!(layers[0].compression(), Some(Compression::Gzip));
        assert_eq!(layers[1].diff_size, 10240);
        assert!(!layers[0].is_incomplete());
        assert_eq!(
            layers[1].diff_digest().unwrap().digest(),
            "cb7a44641236ad24096126ddec4653084f22ceb5d5f471600989551cb36df8a9"
        );
        assert_eq!(String::from_utf8(serialize(&layers)).unwrap(), REFERENCE);
    }

    #[test]
    fn keeps_unknown_keys_and_all_known_ones() {
        let src = r#"[{"id":"a","names":["c1-layer"],"parent":"b","metadata":"m","mountlabel":"l","created":"2020-01-01T00:00:00Z","flags":{"incomplete":true},"uidmap":[{"container_id":0,"host_id":100000,"size":65536}],"gidmap":[{"container_id":0,"host_id":100000,"size":65536}],"big-data-names":["x"],"tarsplit-size":42,"future":{"k":[1]}}]"#;
        let layers = parse(src.as_bytes(), "t").unwrap();
        let l = &layers[0];
        assert!(l.is_incomplete());
        assert_eq!(l.names, ["c1-layer"]);
        assert_eq!(l.uidmap[0].host_id, 100000);
        assert_eq!(l.extra["tarsplit-size"], 42);
        let back: Value = serde_json::from_slice(&serialize(&layers)).unwrap();
        let orig: Value = serde_json::from_str(src).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn empty_and_malformed() {
        assert!(parse(b"", "t").unwrap().is_empty());
        assert!(parse(b"[]", "t").unwrap().is_empty());
        let e = parse(b"{", "layers.json").unwrap_err().to_string();
        assert!(e.contains("layers.json"), "{e}");
    }

    #[test]
    fn digests_are_applied_sorted() {
        let mut rec = LayerRecord {
            id: "x".into(),
            ..Default::default()
        };
        let d = crate::digest::sha256_of(b"t");
        LayerDigests {
            compressed_digest: None,
            compressed_size: None,
            diff_digest: d.clone(),
            diff_size: 1024,
            compression: Compression::Uncompressed,
            uid_set: [5, 0, 3].into_iter().collect(),
            gid_set: [0].into_iter().collect(),
        }
        .apply_to(&mut rec);
        assert_eq!(rec.uidset, [0, 3, 5]);
        let json = String::from_utf8(serialize(&[rec])).unwrap();
        assert!(!json.contains("compressed"), "{json}");
        assert!(json.contains(&format!("\"diff-digest\":\"{d}\"")), "{json}");
    }
}
