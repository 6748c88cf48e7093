//! `overlay-containers/containers.json`: the container records of containers/storage.
//!
//! stowage creates no containers, but it must read them before deleting images or layers:
//! an image used by a container (`image`) is kept, and a container's read-write layer
//! (`layer`, whose parent is the image's top layer) keeps the image's layers alive. The model
//! has every key Go 1.43 knows and keeps unknown ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::gotime::GoTime;
use super::layers::IdMap;
use crate::error::Result;

/// One element of `containers.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerRecord {
    /// 64-hex container ID.
    pub id: String,
    /// Container names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// ID of the image the container was created from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// ID of the container's read-write layer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub layer: String,
    /// Opaque caller metadata (podman: `{"image-name","image-id","name","created-at"}`).
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
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<GoTime>,
    /// UID mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uidmap: Vec<IdMap>,
    /// GID mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gidmap: Vec<IdMap>,
    /// Flags (`MountLabel`, `ProcessLabel`, `Volatile`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub flags: Map<String, Value>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContainerRecord {
    /// The first name, else the ID: how a container is named in messages.
    pub fn display_name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or(&self.id)
    }
}

/// Parse `containers.json` content; empty content is an empty list.
pub fn parse(data: &[u8], what: &str) -> Result<Vec<ContainerRecord>> {
    super::json_files::parse_records(data, what)
}

/// Serialise container records compactly, as Go does.
pub fn serialize(containers: &[ContainerRecord]) -> Vec<u8> {
    serde_json::to_vec(containers).expect("container records serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_podman_create_record_and_round_trips() {
        // Shape observed after `podman create --name c1` (reference notes §3.4).
        let src = r#"[{"id":"7c7bb60d60ac","names":["c1"],"image":"0c4adc37","layer":"9100f99fc501","metadata":"{\"image-name\":\"localhost/test:1\",\"image-id\":\"0c4a\",\"name\":\"c1\",\"created-at\":1795352596}","created":"2026-11-22T13:03:16.749886874Z","flags":{"MountLabel":"","ProcessLabel":""}}]"#;
        let cs = parse(src.as_bytes(), "containers.json").unwrap();
        assert_eq!(cs[0].display_name(), "c1");
        assert_eq!(cs[0].image, "0c4adc37");
        assert_eq!(cs[0].flags.len(), 2);
        assert_eq!(String::from_utf8(serialize(&cs)).unwrap(), src);
    }

    #[test]
    fn keeps_unknown_keys_and_handles_empty() {
        let src = r#"[{"id":"x","uidmap":[{"container_id":0,"host_id":1,"size":2}],"big-data-names":["k"],"big-data-sizes":{"k":1},"big-data-digests":{"k":"sha256:00"},"new":true}]"#;
        let cs = parse(src.as_bytes(), "t").unwrap();
        assert_eq!(cs[0].display_name(), "x");
        let back: Value = serde_json::from_slice(&serialize(&cs)).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(src).unwrap());
        assert!(parse(b"  ", "t").unwrap().is_empty());
    }
}
