//! Manifests, indexes and image configs (`RawManifest::parse`, `RawConfig::parse`,
//! `select_platform`).
//!
//! Input: one byte choosing the declared media type (or none), then the document.
//! Properties: a parsed manifest keeps its bytes exactly and its digest is theirs; what
//! parsed once parses again from the same bytes to the same media type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stowage_engine::digest::sha256_of;
use stowage_engine::manifest::{self, Parsed, PlatformSpec, RawConfig, RawManifest};

const DECLARED: [Option<&str>; 8] = [
    None,
    Some(manifest::OCI_MANIFEST),
    Some(manifest::OCI_INDEX),
    Some(manifest::DOCKER_MANIFEST),
    Some(manifest::DOCKER_LIST),
    Some("application/json"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some(manifest::DOCKER_SCHEMA1[1]),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, doc)) = data.split_first() else {
        return;
    };
    let declared = DECLARED[usize::from(sel) % DECLARED.len()];
    if let Ok(m) = RawManifest::parse(doc.to_vec(), declared, "fuzz") {
        assert_eq!(m.bytes, doc, "the manifest bytes are kept as given");
        assert_eq!(m.digest, sha256_of(doc));
        let again = RawManifest::parse(doc.to_vec(), declared, "fuzz").expect("parses twice");
        assert_eq!(again.media_type, m.media_type);
        let _ = m.is_docker();
        match &m.parsed {
            Parsed::Index(index) => {
                let mut spec = PlatformSpec::host();
                let _ = manifest::select_platform(index, &spec, "fuzz");
                spec.variant = Some("v8".into());
                let _ = manifest::select_platform(index, &spec, "fuzz");
                let _ = spec.describe();
            }
            Parsed::Image(image) => {
                let _ = image.config().digest().to_string();
                assert!(m.image().is_some());
            }
        }
    }
    if let Ok(c) = RawConfig::parse(doc.to_vec(), "fuzz") {
        let _ = c.diff_ids();
    }
});
