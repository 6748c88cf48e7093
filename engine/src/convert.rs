//! Manifest format conversion: OCI ↔ Docker schema2, for manifests and indexes, as
//! `skopeo copy --format oci|v2s2` does it.
//!
//! 1. [`ManifestFormat::of`] names the family of a manifest or index as read (OCI, or Docker
//!    schema2 / manifest list).
//! 2. [`image_manifest`] writes a single-image manifest in the requested family from a config
//!    descriptor and the layer descriptors: the config blob stays the same (only its media type
//!    changes), layer media types map one to one (`tar+gzip` ↔ `diff.tar.gzip`, `tar` ↔
//!    `diff.tar`, non-distributable ↔ foreign), and the JSON has the field order of
//!    containers/image's Go structs, so the bytes — and the digests — are the ones skopeo
//!    writes. Docker schema2 has no zstd layers and no annotations: a zstd layer is an error
//!    naming the fix, annotations are dropped (as skopeo drops them).
//! 3. [`index`] writes an index over new child descriptors: in the source's family it patches
//!    the changed entries in place (everything else kept); in the other family it writes each
//!    entry's media type, size, digest and platform (Docker lists have no annotations).

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::manifest::{
    RawManifest, DOCKER_CONFIG, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};

/// Docker schema2 gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema2 uncompressed layer (a media type containers/image accepts).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker schema2 foreign (non-distributable) gzip layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_LAYER_FOREIGN: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// A manifest family (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// OCI image manifest / OCI image index.
    Oci,
    /// Docker schema2 manifest / Docker manifest list (`v2s2`).
    DockerV2S2,
}

impl ManifestFormat {
    /// The family of `m` (a manifest or an index).
    pub fn of(m: &RawManifest) -> Self {
        if m.is_docker() {
            ManifestFormat::DockerV2S2
        } else {
            ManifestFormat::Oci
        }
    }

    /// skopeo's name for it: `oci`, `v2s2`.
    pub fn name(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "oci",
            ManifestFormat::DockerV2S2 => "v2s2",
        }
    }

    /// The single-image manifest media type of the family.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => OCI_MANIFEST,
            ManifestFormat::DockerV2S2 => DOCKER_MANIFEST,
        }
    }

    /// The index media type of the family.
    pub fn index_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => OCI_INDEX,
            ManifestFormat::DockerV2S2 => DOCKER_LIST,
        }
    }
}

/// The media type of a layer in `format`, for a layer described as `media_type`; `what` names
/// the layer in errors.
fn layer_type(media_type: &str, format: ManifestFormat, what: &str) -> Result<&'static str> {
    let base = media_type.split(';').next().unwrap_or("").trim();
    let mapped = match (base, format) {
        (OCI_LAYER_GZIP | DOCKER_LAYER_GZIP, ManifestFormat::Oci) => OCI_LAYER_GZIP,
        (OCI_LAYER_GZIP | DOCKER_LAYER_GZIP, ManifestFormat::DockerV2S2) => DOCKER_LAYER_GZIP,
        (OCI_LAYER_TAR | DOCKER_LAYER_TAR, ManifestFormat::Oci) => OCI_LAYER_TAR,
        (OCI_LAYER_TAR | DOCKER_LAYER_TAR, ManifestFormat::DockerV2S2) => DOCKER_LAYER_TAR,
        (OCI_LAYER_FOREIGN | DOCKER_LAYER_FOREIGN, ManifestFormat::Oci) => OCI_LAYER_FOREIGN,
        (OCI_LAYER_FOREIGN | DOCKER_LAYER_FOREIGN, ManifestFormat::DockerV2S2) => {
            DOCKER_LAYER_FOREIGN
        }
        (OCI_LAYER_ZSTD, ManifestFormat::Oci) => OCI_LAYER_ZSTD,
        (OCI_LAYER_ZSTD, ManifestFormat::DockerV2S2) => {
            return Err(Error::Conflict {
                what: what.to_string(),
                reason: "it is zstd-compressed, and Docker schema2 manifests have no zstd layers; use --format oci, or --dest-compress-format gzip".into(),
            })
        }
        _ => {
            return Err(Error::UnsupportedMediaType {
                what: format!("{what} (converting to {})", format.name()),
                media_type: media_type.to_string(),
            })
        }
    };
    Ok(mapped)
}

/// A descriptor as JSON in `format`'s field order (Go's structs: OCI `mediaType, digest, size,
/// urls, annotations, platform`; Docker `mediaType, size, digest, urls, platform`).
/// Annotations as JSON with their keys sorted, as Go writes a map: the same manifest bytes on
/// every run (the parsed form holds them in a `HashMap`).
fn sorted(a: &std::collections::HashMap<String, String>) -> Value {
    json!(a.iter().collect::<std::collections::BTreeMap<_, _>>())
}

fn descriptor_json(d: &Descriptor, media_type: &str, format: ManifestFormat) -> Value {
    let mut o = Map::new();
    o.insert("mediaType".into(), json!(media_type));
    match format {
        ManifestFormat::Oci => {
            o.insert("digest".into(), json!(d.digest().to_string()));
            o.insert("size".into(), json!(d.size()));
        }
        ManifestFormat::DockerV2S2 => {
            o.insert("size".into(), json!(d.size()));
            o.insert("digest".into(), json!(d.digest().to_string()));
        }
    }
    if let Some(urls) = d.urls().as_ref().filter(|u| !u.is_empty()) {
        o.insert("urls".into(), json!(urls));
    }
    if format == ManifestFormat::Oci {
        if let Some(a) = d.annotations().as_ref().filter(|a| !a.is_empty()) {
            o.insert("annotations".into(), sorted(a));
        }
    }
    if let Some(p) = d.platform() {
        let mut po = Map::new();
        po.insert("architecture".into(), json!(p.architecture().to_string()));
        po.insert("os".into(), json!(p.os().to_string()));
        if let Some(v) = p.os_version() {
            po.insert("os.version".into(), json!(v));
        }
        if let Some(f) = p.os_features().as_ref().filter(|f| !f.is_empty()) {
            po.insert("os.features".into(), json!(f));
        }
        if let Some(v) = p.variant() {
            po.insert("variant".into(), json!(v));
        }
        o.insert("platform".into(), Value::Object(po));
    }
    Value::Object(o)
}

/// A single-image manifest in `format` for `source` (whose OCI-only fields — annotations,
/// `artifactType`, `subject` — are kept when both are OCI) with `layers` as its layers.
pub fn image_manifest(
    source: &ImageManifest,
    layers: &[Descriptor],
    format: ManifestFormat,
    what: &str,
) -> Result<RawManifest> {
    let config = source.config();
    let config_type = match format {
        ManifestFormat::Oci => OCI_CONFIG,
        ManifestFormat::DockerV2S2 => DOCKER_CONFIG,
    };
    let mut o = Map::new();
    o.insert("schemaVersion".into(), json!(2));
    o.insert("mediaType".into(), json!(format.manifest_media_type()));
    let source_is_oci = source
        .media_type()
        .as_ref()
        .is_none_or(|m| m.to_string() == OCI_MANIFEST);
    if format == ManifestFormat::Oci && source_is_oci {
        if let Some(a) = source.artifact_type() {
            o.insert("artifactType".into(), json!(a.to_string()));
        }
    }
    o.insert(
        "config".into(),
        descriptor_json(config, config_type, format),
    );
    let mut out_layers = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let label = format!("layer {} ({}) of {what}", i + 1, l.digest());
        let mt = layer_type(l.media_type().as_ref(), format, &label)?;
        out_layers.push(descriptor_json(l, mt, format));
    }
    o.insert("layers".into(), Value::Array(out_layers));
    if format == ManifestFormat::Oci && source_is_oci {
        if let Some(s) = source.subject() {
            o.insert(
                "subject".into(),
                descriptor_json(s, s.media_type().as_ref(), format),
            );
        }
        if let Some(a) = source.annotations().as_ref().filter(|a| !a.is_empty()) {
            o.insert("annotations".into(), sorted(a));
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(o)).expect("JSON values serialise");
    RawManifest::parse(bytes, Some(format.manifest_media_type()), what)
}

/// One child of an index as copied: where it was in the source index and what it is now.
#[derive(Debug, Clone)]
pub struct ChildUpdate {
    /// Position in the source index's `manifests`.
    pub position: usize,
    /// The manifest as stored in the destination.
    pub manifest: RawManifest,
}

/// The index to store for `source` after its children became `children` (only the entries
/// listed change), in `format`. Returns the source bytes when nothing changed.
pub fn index(
    source: &RawManifest,
    children: &[ChildUpdate],
    format: ManifestFormat,
    what: &str,
) -> Result<RawManifest> {
    let idx: &ImageIndex = match &source.parsed {
        crate::manifest::Parsed::Index(i) => i,
        crate::manifest::Parsed::Image(_) => {
            return Err(Error::Malformed {
                what: what.to_string(),
                reason: "not an index".into(),
            })
        }
    };
    let entry_changed = |c: &ChildUpdate| {
        let d = &idx.manifests()[c.position];
        d.digest() != &c.manifest.digest
            || d.size() != c.manifest.bytes.len() as u64
            || d.media_type().to_string() != c.manifest.media_type
    };
    let same_family = ManifestFormat::of(source) == format;
    if same_family && !children.iter().any(entry_changed) {
        return Ok(source.clone());
    }
    let new_child = |pos: usize| children.iter().find(|c| c.position == pos);
    let bytes = if same_family {
        // Patch the changed entries of the source JSON; every other key stays as it was.
        let mut value: Value = serde_json::from_slice(&source.bytes).map_err(|e| Error::Json {
            what: what.to_string(),
            source: e,
        })?;
        let entries = value
            .get_mut("manifests")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| Error::Malformed {
                what: what.to_string(),
                reason: "manifests is not an array".into(),
            })?;
        for (pos, entry) in entries.iter_mut().enumerate() {
            let (Some(c), Some(obj)) = (new_child(pos), entry.as_object_mut()) else {
                continue;
            };
            obj.insert("mediaType".into(), json!(c.manifest.media_type));
            obj.insert("digest".into(), json!(c.manifest.digest.to_string()));
            obj.insert("size".into(), json!(c.manifest.bytes.len()));
        }
        serde_json::to_vec(&value).expect("JSON values serialise")
    } else {
        let mut o = Map::new();
        o.insert("schemaVersion".into(), json!(2));
        o.insert("mediaType".into(), json!(format.index_media_type()));
        let mut entries = Vec::new();
        for (pos, d) in idx.manifests().iter().enumerate() {
            let (mt, digest, size) = match new_child(pos) {
                Some(c) => (
                    c.manifest.media_type.clone(),
                    c.manifest.digest.clone(),
                    c.manifest.bytes.len() as u64,
                ),
                None => (d.media_type().to_string(), d.digest().clone(), d.size()),
            };
            let mut nd = d.clone();
            nd.set_digest(digest);
            nd.set_size(size);
            entries.push(descriptor_json(&nd, &mt, format));
        }
        o.insert("manifests".into(), Value::Array(entries));
        if format == ManifestFormat::Oci {
            if let Some(a) = idx.annotations().as_ref().filter(|a| !a.is_empty()) {
                o.insert("annotations".into(), sorted(a));
            }
        }
        serde_json::to_vec(&Value::Object(o)).expect("JSON values serialise")
    };
    RawManifest::parse(bytes, Some(format.index_media_type()), what)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCI: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:b633e3739a76050e61ec334a5e17e5327695c8d4ef9193ff97ec2d7e3f4c9f28","size":577},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:e5d06cc4b690d38f52d53b5bff4fecd551f1bcb8a95ece012f074c87523bb519","size":119}]}"#;
    // What skopeo 1.9 `copy --format v2s2` writes for OCI above.
    const DOCKER: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":577,"digest":"sha256:b633e3739a76050e61ec334a5e17e5327695c8d4ef9193ff97ec2d7e3f4c9f28"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":119,"digest":"sha256:e5d06cc4b690d38f52d53b5bff4fecd551f1bcb8a95ece012f074c87523bb519"}]}"#;

    #[test]
    fn oci_and_docker_round_trip_byte_for_byte() {
        let oci = RawManifest::parse(OCI.as_bytes().to_vec(), None, "t").unwrap();
        let m = oci.image().unwrap();
        let d = image_manifest(m, m.layers(), ManifestFormat::DockerV2S2, "t").unwrap();
        assert_eq!(String::from_utf8(d.bytes.clone()).unwrap(), DOCKER);
        let dm = d.image().unwrap();
        let back = image_manifest(dm, dm.layers(), ManifestFormat::Oci, "t").unwrap();
        assert_eq!(String::from_utf8(back.bytes).unwrap(), OCI);
    }

    #[test]
    fn zstd_layers_cannot_become_docker() {
        let z = OCI.replace("tar+gzip", "tar+zstd");
        let m = RawManifest::parse(z.into_bytes(), None, "img").unwrap();
        let im = m.image().unwrap();
        let err = image_manifest(im, im.layers(), ManifestFormat::DockerV2S2, "img")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zstd") && err.contains("--format oci"),
            "{err}"
        );
    }
}
