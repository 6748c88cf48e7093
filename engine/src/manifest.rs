//! Manifests, indexes and configs: OCI and Docker schema2, parsed into `oci_spec` types.
//!
//! The raw bytes are always kept beside the parsed value: a manifest's digest is the digest of
//! its bytes, so stowage never re-serialises a manifest it did not create. Docker schema2
//! manifests and manifest lists have the same JSON shape as their OCI counterparts, so they parse
//! into the same types and keep their Docker media types; schema1 is refused with a clear error.

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os};

use crate::digest::{sha256_of, Digest};
use crate::error::{Error, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker schema1 media types (refused).
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Largest manifest or index accepted (containers/image uses the same 4 MiB cap).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Largest image config accepted.
pub const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// A manifest or index as read: its bytes, media type and digest, and the parsed value.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The bytes exactly as stored or served.
    pub bytes: Vec<u8>,
    /// The media type (declared, or inferred from the JSON).
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The parsed content.
    pub parsed: Parsed,
}

/// The two kinds of top-level document.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// A single-platform image manifest (OCI or Docker schema2).
    Image(Box<ImageManifest>),
    /// A multi-platform index (OCI index or Docker manifest list).
    Index(Box<ImageIndex>),
}

impl RawManifest {
    /// Parse `bytes`. `declared` is the media type from a descriptor or HTTP header, if any;
    /// `what` names the document in errors.
    pub fn parse(bytes: Vec<u8>, declared: Option<&str>, what: &str) -> Result<Self> {
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::Malformed {
                what: what.to_string(),
                reason: format!(
                    "manifest is {} bytes, more than the {MAX_MANIFEST_SIZE} byte limit",
                    bytes.len()
                ),
            });
        }
        let malformed = |reason: String| Error::Malformed {
            what: what.to_string(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| malformed(format!("not JSON: {e}")))?;
        let obj = json
            .as_object()
            .ok_or_else(|| malformed("not a JSON object".into()))?;
        let embedded = obj.get("mediaType").and_then(|v| v.as_str());
        let schema_version = obj.get("schemaVersion").and_then(|v| v.as_u64());
        let declared = declared
            .map(|d| d.split(';').next().unwrap_or("").trim())
            .filter(|d| !d.is_empty());
        let media_type = match (declared, embedded) {
            (Some(d), _) if d != "application/json" && d != "text/plain" => d.to_string(),
            (_, Some(e)) => e.to_string(),
            _ if schema_version == Some(1) => DOCKER_SCHEMA1[0].to_string(),
            _ if obj.contains_key("manifests") => OCI_INDEX.to_string(),
            _ if obj.contains_key("layers") || obj.contains_key("config") => {
                OCI_MANIFEST.to_string()
            }
            _ => {
                return Err(malformed(
                    "neither a manifest nor an index (no mediaType, layers or manifests)".into(),
                ))
            }
        };
        if DOCKER_SCHEMA1.contains(&media_type.as_str()) || schema_version == Some(1) {
            return Err(Error::Unsupported {
                transport: what.to_string(),
                reason: "Docker schema1 manifests are not supported; push the image again with a current tool (schema2 or OCI)".into(),
            });
        }
        if schema_version != Some(2) {
            return Err(malformed(format!(
                "schemaVersion is {schema_version:?}, expected 2"
            )));
        }
        let parsed = match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => Parsed::Image(Box::new(
                serde_json::from_value(json)
                    .map_err(|e| malformed(format!("invalid image manifest: {e}")))?,
            )),
            OCI_INDEX | DOCKER_LIST => Parsed::Index(Box::new(
                serde_json::from_value(json)
                    .map_err(|e| malformed(format!("invalid image index: {e}")))?,
            )),
            other => {
                return Err(Error::UnsupportedMediaType {
                    what: what.to_string(),
                    media_type: other.to_string(),
                })
            }
        };
        if let Parsed::Image(m) = &parsed {
            for layer in m.layers() {
                crate::compression::Compression::from_media_type(layer.media_type().as_ref())
                    .map_err(|_| Error::UnsupportedMediaType {
                        what: format!("{what}: layer {}", layer.digest()),
                        media_type: layer.media_type().to_string(),
                    })?;
            }
        }
        let digest = sha256_of(&bytes);
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
            parsed,
        })
    }

    /// The image manifest, or an error if this is an index.
    pub fn image(&self) -> Option<&ImageManifest> {
        match &self.parsed {
            Parsed::Image(m) => Some(m),
            Parsed::Index(_) => None,
        }
    }

    /// Whether this is a Docker (not OCI) document.
    pub fn is_docker(&self) -> bool {
        self.media_type == DOCKER_MANIFEST || self.media_type == DOCKER_LIST
    }
}

/// A config blob as read: bytes and parsed value.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// The bytes exactly as stored.
    pub bytes: Vec<u8>,
    /// The parsed config (Docker configs parse too; extra keys are ignored).
    pub parsed: ImageConfiguration,
}

impl RawConfig {
    /// Parse config bytes.
    pub fn parse(bytes: Vec<u8>, what: &str) -> Result<Self> {
        let parsed = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            what: format!("config of {what}"),
            source: e,
        })?;
        Ok(RawConfig { bytes, parsed })
    }

    /// The layer diffIDs (`rootfs.diff_ids`).
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.parsed
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| crate::digest::parse_digest(d))
            .collect()
    }
}

/// A target platform: OS, architecture and optional variant, in Go's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`, ...
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8`, `v7`, ... (optional)
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// The platform this binary runs on.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        let variant = match architecture {
            "arm64" => Some("v8".to_string()),
            _ => None,
        };
        PlatformSpec {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant,
        }
    }

    /// `os/arch[/variant]`.
    pub fn describe(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }

    fn matches(&self, d: &Descriptor, strict_variant: bool) -> bool {
        let Some(p) = d.platform() else { return false };
        let os_ok = match p.os() {
            Os::Other(s) => *s == self.os,
            os => os.to_string() == self.os,
        };
        let arch_ok = match p.architecture() {
            Arch::Other(s) => *s == self.architecture,
            a => a.to_string() == self.architecture,
        };
        let variant_ok = match (&self.variant, p.variant()) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => !strict_variant,
            (None, _) => true,
        };
        os_ok && arch_ok && variant_ok
    }
}

/// Choose the manifest for `platform` in `index`, as containers/image does: an exact variant
/// match first, then an entry with no variant.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    platform: &PlatformSpec,
    what: &str,
) -> Result<&'a Descriptor> {
    let candidates = || {
        index.manifests().iter().filter(|d| {
            let mt = d.media_type().to_string();
            mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
        })
    };
    candidates()
        .find(|d| platform.matches(d, true))
        .or_else(|| candidates().find(|d| platform.matches(d, false)))
        .ok_or_else(|| {
            let available: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| {
                    let mut s = format!("{}/{}", p.os(), p.architecture());
                    if let Some(v) = p.variant() {
                        s.push('/');
                        s.push_str(v);
                    }
                    s
                })
                .collect();
            Error::NotFound {
                what: format!("{what}: no image for platform {}", platform.describe()),
                hint: format!(
                    "the index has [{}]; choose one with --override-os/--override-arch/--override-variant",
                    available.join(", ")
                ),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
      "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
      "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":3,"digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}]}"#;

    #[test]
    fn docker_schema2_parses_into_oci_types() {
        let m = RawManifest::parse(MANIFEST.as_bytes().to_vec(), None, "t").unwrap();
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        assert!(m.is_docker());
        assert_eq!(m.image().unwrap().layers().len(), 1);
        assert_eq!(m.digest, sha256_of(MANIFEST.as_bytes()));
    }

    #[test]
    fn schema1_refused_clearly() {
        let err = RawManifest::parse(
            br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec(),
            None,
            "img",
        )
        .unwrap_err();
        assert!(err.to_string().contains("schema1"), "{err}");
    }

    #[test]
    fn malformed_and_unknown() {
        assert!(matches!(
            RawManifest::parse(b"{".to_vec(), None, "t"),
            Err(Error::Malformed { .. })
        ));
        let bad_layer = MANIFEST.replace("rootfs.diff.tar.gzip", "rootfs.diff.tar.lzma");
        let err = RawManifest::parse(bad_layer.into_bytes(), None, "img").unwrap_err();
        assert!(err.to_string().contains("lzma"), "{err}");
    }

    #[test]
    fn platform_selection() {
        let idx: ImageIndex = serde_json::from_str(r#"{"schemaVersion":2,"manifests":[
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"os":"linux","architecture":"arm","variant":"v7"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","platform":{"os":"linux","architecture":"arm64"}},
          {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","platform":{"os":"linux","architecture":"amd64"}}]}"#).unwrap();
        let p = PlatformSpec {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert!(select_platform(&idx, &p, "t")
            .unwrap()
            .digest()
            .to_string()
            .contains("2222"));
        let p = PlatformSpec {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        };
        let err = select_platform(&idx, &p, "t").unwrap_err().to_string();
        assert!(
            err.contains("linux/arm/v7") && err.contains("s390x"),
            "{err}"
        );
    }
}
