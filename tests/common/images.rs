//! Images the tests make on the fly, all through the one image builder of `stowage-fixtures`
//! ([`ImageBuilder`]), written into OCI layouts.
//!
//! 1. [`write_layout`] builds an image and writes it into a (new or existing) layout under a
//!    tag; the returned [`Built`] holds its digests as the tools print them.
//! 2. [`two_layer_image`], [`one_file_image`] and [`two_platform_index`] are the images the
//!    registry tests push: layers of pseudo-random bytes ([`SplitMix64`]), so they do not
//!    compress away and faults can be injected at offsets inside them, compressed with gzip
//!    level 1 to stay cheap at several MiB; [`layout_with_other_image`] is the destination
//!    layout that already holds an unrelated image.

use std::path::{Path, PathBuf};

use serde_json::json;
use stowage_engine::oci_layout::OciDir;
use stowage_fixtures::builder::{write_index, History, Image, ImageBuilder};
pub use stowage_fixtures::layer::SplitMix64;
use stowage_fixtures::layer::{LayerCompression, LayerSpec};

use crate::common::layout::oci_ref;

/// An image a test wrote: its digests as strings, as skopeo and podman print them.
#[derive(Debug, Clone)]
pub struct Built {
    /// `oci:DIR:TAG` of the image (of the index, for an image inside one).
    pub reference: String,
    /// Manifest digest.
    pub manifest_digest: String,
    /// Config digest.
    pub config_digest: String,
    /// Layer blob digests.
    pub layers: Vec<String>,
    /// Layer diffIDs.
    pub diff_ids: Vec<String>,
}

impl Built {
    /// The digests of `image`, written under `reference`.
    pub fn of(image: &Image, reference: String) -> Built {
        Built {
            reference,
            manifest_digest: image.manifest_digest.to_string(),
            config_digest: image.config_digest.to_string(),
            layers: image.layers.iter().map(|l| l.digest.to_string()).collect(),
            diff_ids: image.layers.iter().map(|l| l.diff_id.to_string()).collect(),
        }
    }
}

fn open_layout(dir: &Path) -> OciDir {
    OciDir::create(dir).unwrap_or_else(|e| panic!("creating OCI layout {dir:?}: {e}"))
}

/// Build `image` and write it into the layout at `dir` (created if missing), tagged `tag`.
pub fn write_layout(dir: &Path, tag: &str, image: ImageBuilder) -> Built {
    let image = image
        .build()
        .unwrap_or_else(|e| panic!("building an image for {dir:?}: {e:#}"));
    image
        .write(&open_layout(dir), Some(tag))
        .unwrap_or_else(|e| panic!("{e:#}"));
    Built::of(&image, oci_ref(dir, tag))
}

/// The config the registry tests' images share: one `Env`, one label, a fixed time.
fn registry_image(arch: &str, variant: Option<&str>) -> ImageBuilder {
    ImageBuilder::new()
        .created("2026-11-01T00:00:00Z")
        .platform(arch, variant)
        .runtime_config(json!({"Env": ["PATH=/usr/bin:/bin"], "Labels": {"test": "stowage"}}))
}

/// A layer holding `files` (parent directories added), gzip level 1.
fn files_layer(image: ImageBuilder, files: &[(&str, Vec<u8>)]) -> ImageBuilder {
    let mut spec = LayerSpec::new("test");
    for (path, data) in files {
        spec.file(path, data.clone());
    }
    image.layer_with_history(&spec, LayerCompression::GzipLevel(1), History::new("test"))
}

/// A one-layer linux/amd64 image holding the file `path` in a new layout at `layout`.
pub fn one_file_image(layout: &Path, tag: &str, path: &str, data: impl Into<Vec<u8>>) -> Built {
    let image = files_layer(registry_image("amd64", None), &[(path, data.into())]);
    write_layout(layout, tag, image)
}

/// `DIR/dest`: a layout holding a one-file image tagged `o` (copied there by stowage from
/// `DIR/other`) that shares no blob with the registry test images.
pub fn layout_with_other_image(dir: &Path) -> PathBuf {
    let other = dir.join("other");
    one_file_image(&other, "o", "x", b"x");
    let dest = dir.join("dest");
    crate::common::run(
        crate::common::stowage()
            .arg("copy")
            .arg(crate::common::oci_ref(&other, "o"))
            .arg(crate::common::oci_ref(&dest, "o")),
    );
    dest
}

/// The typical registry test image: two layers, about 300 KiB of incompressible data.
pub fn two_layer_image(layout: &Path, tag: &str) -> Built {
    let image = files_layer(
        registry_image("amd64", None),
        &[
            ("etc/hello", b"hello\n".to_vec()),
            ("usr/lib/big", SplitMix64::new(1).bytes(200_000)),
        ],
    );
    let image = files_layer(
        image,
        &[("usr/lib/more", SplitMix64::new(2).bytes(100_000))],
    );
    write_layout(layout, tag, image)
}

/// A multi-platform image (linux/amd64 and linux/arm64/v8, each one layer with a file `arch`)
/// in a new layout, tagged `tag`; returns the index digest and the two images.
pub fn two_platform_index(layout: &Path, tag: &str) -> (String, Built, Built) {
    let build = |arch: &str, variant: Option<&str>| {
        files_layer(
            registry_image(arch, variant),
            &[("arch", format!("{arch}\n").into_bytes())],
        )
        .build()
        .unwrap_or_else(|e| panic!("building the {arch} image: {e:#}"))
    };
    let images = [build("amd64", None), build("arm64", Some("v8"))];
    let digest = write_index(&open_layout(layout), &images, Some(tag))
        .unwrap_or_else(|e| panic!("writing the index to {layout:?}: {e:#}"));
    let [amd, arm] = images.map(|i| Built::of(&i, oci_ref(layout, tag)));
    (digest.to_string(), amd, arm)
}

/// A two-platform index (linux/amd64, linux/arm64/v8) whose images share their bottom layer
/// (the same blob) and each have one layer of their own, in a new layout tagged `tag`; returns
/// the index digest and the shared layer's digest.
pub fn shared_base_index(layout: &Path, tag: &str) -> (String, String) {
    let build = |arch: &str, variant: Option<&str>| {
        let base = files_layer(
            registry_image(arch, variant),
            &[("usr/lib/base", SplitMix64::new(7).bytes(50_000))],
        );
        files_layer(base, &[("arch", format!("{arch}\n").into_bytes())])
            .build()
            .unwrap_or_else(|e| panic!("building the {arch} image: {e:#}"))
    };
    let images = [build("amd64", None), build("arm64", Some("v8"))];
    let shared = images[0].layers[0].digest.to_string();
    assert_eq!(
        images[1].layers[0].digest.to_string(),
        shared,
        "the base layers are the same blob"
    );
    let digest = write_index(&open_layout(layout), &images, Some(tag))
        .unwrap_or_else(|e| panic!("writing the index to {layout:?}: {e:#}"));
    (digest.to_string(), shared)
}
