//! `overlay-images/images.json`: the image records of containers/storage.
//!
//! 1. The file is a JSON array of [`ImageRecord`]s (Go's `storage.Image`) with every key Go
//!    1.43 knows; unknown keys are kept in `extra`.
//! 2. An image's *digests* (used for `name@digest` lookups and `RepoDigests`) are not stored:
//!    they are `digest` plus the digests of big-data items whose key starts with `manifest`,
//!    as Go's `recomputeDigests` derives them.
//! 3. Names follow Go's `updateNames`: a name belongs to one image at a time, and every name
//!    given to an image is prepended to its `names-history` (deduplicated).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::gotime::GoTime;
use crate::digest::{parse_digest, Digest};
use crate::error::{Error, Result};

/// Big-data key of the image's manifest (legacy single key).
pub const MANIFEST_KEY: &str = "manifest";

/// Big-data key of the manifest with digest `d` (`manifest-sha256:…`).
pub fn manifest_key(d: &Digest) -> String {
    format!("{MANIFEST_KEY}-{d}")
}

/// Big-data key of the signatures of the manifest with digest `d` (`signature-<hex>`).
pub fn signature_key(d: &Digest) -> String {
    format!("signature-{}", d.digest())
}

/// Whether a big-data key holds a manifest (Go: `bigDataNameIsManifest`).
pub fn is_manifest_key(key: &str) -> bool {
    key.starts_with(MANIFEST_KEY)
}

/// One element of `images.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageRecord {
    /// 64-hex image ID (the config digest hex for pulled images).
    pub id: String,
    /// The manifest digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Fully-qualified names (`localhost/x:1`, `docker.io/library/alpine:latest`, `n@sha256:…`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Every name the image ever had, newest first.
    #[serde(
        rename = "names-history",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names_history: Vec<String>,
    /// Top layer ID (empty for an image without layers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layer: String,
    /// Extra top layers made for ID-mapped use.
    #[serde(
        rename = "mapped-layers",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mapped_layers: Vec<String>,
    /// Opaque caller metadata (containers/image: `{"signatures-sizes":{…}}`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// Big-data keys in insertion order.
    #[serde(
        rename = "big-data-names",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub big_data_names: Vec<String>,
    /// Byte length of each big-data item.
    #[serde(
        rename = "big-data-sizes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub big_data_sizes: BTreeMap<String, i64>,
    /// Digest of each big-data item.
    #[serde(
        rename = "big-data-digests",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub big_data_digests: BTreeMap<String, String>,
    /// Creation time (the config's `created` for pulled images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<GoTime>,
    /// Arbitrary flags.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub flags: Map<String, Value>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ImageRecord {
    /// The image's digests: `digest` first, then manifest big-data digests, deduplicated.
    pub fn digests(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if !self.digest.is_empty() {
            out.push(self.digest.clone());
        }
        for (key, d) in &self.big_data_digests {
            if is_manifest_key(key) && !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }

    /// The manifest digest: `digest`, else the first manifest big-data digest.
    pub fn manifest_digest(&self) -> Option<Digest> {
        self.digests().first().and_then(|d| parse_digest(d).ok())
    }

    /// The top layer ID, if the image has layers.
    pub fn top_layer(&self) -> Option<&str> {
        (!self.layer.is_empty()).then_some(self.layer.as_str())
    }

    /// Sum of the big-data sizes.
    pub fn big_data_size(&self) -> i64 {
        self.big_data_sizes.values().sum()
    }

    /// Record that big-data item `key` now has `size` bytes and digest `digest`.
    pub fn record_big_data(&mut self, key: &str, size: u64, digest: &Digest) {
        self.big_data_sizes.insert(key.to_string(), size as i64);
        self.big_data_digests
            .insert(key.to_string(), digest.to_string());
        if !self.big_data_names.iter().any(|n| n == key) {
            self.big_data_names.push(key.to_string());
        }
        if self.digest.is_empty() && is_manifest_key(key) {
            self.digest = digest.to_string();
        }
    }

    /// Prepend `name` to the names history (deduplicated).
    pub fn add_name_to_history(&mut self, name: &str) {
        self.names_history.retain(|n| n != name);
        self.names_history.insert(0, name.to_string());
    }
}

/// Remove duplicates, keeping the first occurrence (Go's `dedupeNames`).
pub fn dedupe_names(names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

/// How [`set_names`] changes an image's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameOp {
    /// Append the given names.
    Add,
    /// Remove the given names.
    Remove,
    /// Replace all names.
    Set,
}

/// Apply a name change to the image at `index` of `images`, as Go's `updateNames` does: the
/// resulting names are taken away from every other image and prepended to this image's
/// history. Returns whether anything changed.
pub fn set_names(images: &mut [ImageRecord], index: usize, names: &[String], op: NameOp) -> bool {
    let before: Vec<ImageRecord> = images.to_vec();
    let old = images[index].names.clone();
    let new = match op {
        NameOp::Add => dedupe_names(&[old.as_slice(), names].concat()),
        NameOp::Remove => old.into_iter().filter(|n| !names.contains(n)).collect(),
        NameOp::Set => dedupe_names(names),
    };
    for (i, other) in images.iter_mut().enumerate() {
        if i != index {
            other.names.retain(|n| !new.contains(n));
        }
    }
    let img = &mut images[index];
    for n in &new {
        img.add_name_to_history(n);
    }
    img.names = new;
    images != before.as_slice()
}

/// Parse `images.json` content; empty content is an empty list. Malformed digests are an
/// error, as they are for Go (`recomputeDigests` validation).
pub fn parse(data: &[u8], what: &str) -> Result<Vec<ImageRecord>> {
    let images: Vec<ImageRecord> = super::json_files::parse_records(data, what)?;
    for img in &images {
        for d in img.digests() {
            parse_digest(&d).map_err(|e| Error::Malformed {
                what: format!("{what}: image {}", img.id),
                reason: e.to_string(),
            })?;
        }
    }
    Ok(images)
}

/// Serialise image records compactly, as Go does.
pub fn serialize(images: &[ImageRecord]) -> Vec<u8> {
    serde_json::to_vec(images).expect("image records serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "0c4adc37a5e2ce568211891da81868ea8ecc2575ff67637859b34753840af2a7";
    const MAN: &str = "c544b76c41d40e0cb68bdb1792c554077a9e398473aa94925a5de60bc6cd7563";

    fn reference() -> String {
        // The record skopeo 1.9 wrote in the reference notes (§3), with full digests.
        format!(
            r#"[{{"id":"{CFG}","digest":"sha256:{MAN}","names":["localhost/test:1"],"names-history":["localhost/test:1"],"layer":"da2c6e39702eaf24fe91e5089490506cede16f5395c9f8fd53d7117904d88f96","metadata":"{{\"signatures-sizes\":{{\"sha256:{MAN}\":[]}}}}","big-data-names":["sha256:{CFG}","manifest-sha256:{MAN}","manifest","signature-{MAN}"],"big-data-sizes":{{"manifest":555,"manifest-sha256:{MAN}":555,"sha256:{CFG}":425,"signature-{MAN}":0}},"big-data-digests":{{"manifest":"sha256:{MAN}","manifest-sha256:{MAN}":"sha256:{MAN}","sha256:{CFG}":"sha256:{CFG}","signature-{MAN}":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},"created":"2023-11-14T22:13:20Z"}}]"#
        )
    }

    #[test]
    fn parses_reference_and_writes_it_back_byte_for_byte() {
        let src = reference();
        let images = parse(src.as_bytes(), "images.json").unwrap();
        let img = &images[0];
        assert_eq!(img.id, CFG);
        assert_eq!(img.digests(), vec![format!("sha256:{MAN}")]);
        assert_eq!(img.big_data_size(), 555 + 555 + 425);
        assert_eq!(img.created.unwrap().unix(), 1_700_000_000);
        assert_eq!(String::from_utf8(serialize(&images)).unwrap(), src);
    }

    #[test]
    fn keeps_unknown_keys() {
        let src = r#"[{"id":"a","mapped-layers":["m"],"flags":{"x":1},"future-key":"v"}]"#;
        let images = parse(src.as_bytes(), "t").unwrap();
        assert_eq!(images[0].mapped_layers, ["m"]);
        let back: Value = serde_json::from_slice(&serialize(&images)).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(src).unwrap());
    }

    #[test]
    fn rejects_malformed_digest() {
        let src = r#"[{"id":"a","digest":"sha256:nothex"}]"#;
        assert!(parse(src.as_bytes(), "images.json").is_err());
    }

    #[test]
    fn names_move_between_images_and_history_is_prepended() {
        let mut images = vec![
            ImageRecord {
                id: "a".into(),
                names: vec!["localhost/x:1".into()],
                names_history: vec!["localhost/x:1".into()],
                ..Default::default()
            },
            ImageRecord {
                id: "b".into(),
                ..Default::default()
            },
        ];
        let changed = set_names(
            &mut images,
            1,
            &["localhost/x:1".into(), "quay.io/y:2".into()],
            NameOp::Add,
        );
        assert!(changed);
        assert!(images[0].names.is_empty());
        assert_eq!(images[0].names_history, ["localhost/x:1"]);
        assert_eq!(images[1].names, ["localhost/x:1", "quay.io/y:2"]);
        assert_eq!(images[1].names_history, ["quay.io/y:2", "localhost/x:1"]);
        // Adding again changes nothing.
        assert!(!set_names(
            &mut images,
            1,
            &["quay.io/y:2".into()],
            NameOp::Add
        ));
        assert!(set_names(
            &mut images,
            1,
            &["localhost/x:1".into()],
            NameOp::Remove
        ));
        assert_eq!(images[1].names, ["quay.io/y:2"]);
        assert_eq!(images[1].names_history, ["quay.io/y:2", "localhost/x:1"]);
    }

    #[test]
    fn big_data_bookkeeping() {
        let mut img = ImageRecord {
            id: CFG.into(),
            ..Default::default()
        };
        let d = crate::digest::sha256_of(b"{}");
        img.record_big_data(&manifest_key(&d), 2, &d);
        img.record_big_data(MANIFEST_KEY, 2, &d);
        img.record_big_data(MANIFEST_KEY, 2, &d);
        assert_eq!(img.big_data_names.len(), 2);
        assert_eq!(img.digest, d.to_string());
        assert_eq!(img.digests(), vec![d.to_string()]);
        assert_eq!(signature_key(&d), format!("signature-{}", d.digest()));
    }
}
