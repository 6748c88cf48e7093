//! Copying a whole multi-arch index (`--all`, `--multi-arch all|index-only`), as skopeo does.
//!
//! 1. [`plan_index`] reads the source's top-level document. When it is an index and every
//!    image is to be copied, each entry's manifest is fetched (checked against the entry's
//!    digest) and planned like a single image (config read and verified); nested indexes are
//!    refused. Nothing is written yet, so a missing or corrupt child fails before the
//!    destination is touched.
//! 2. The destination is asked whether it can hold an index at all
//!    ([`ImageSink::index_support`]): containers-storage (one platform per image, as podman)
//!    and ostree cannot, and say what to do instead. A format conversion with `index-only`
//!    (whose images are not copied) is refused here too.
//! 3. Each child is copied through the ordinary pipeline in index order, committed untagged
//!    ([`FinalImage::index_child`](crate::copy::FinalImage::index_child): an OCI layout gets its
//!    blobs, a registry the manifest by digest). A blob shared between children is copied once:
//!    the later child finds it in the destination and reuses it.
//! 4. The index is written again only when a child's manifest changed (recompression, `--format`)
//!    or its family must change (Docker manifest list ↔ OCI index); otherwise its bytes are the
//!    source's, so the index digest is the same. With `--preserve-digests`, any change is an
//!    error before the child that would change is committed.
//! 5. The index is committed last, under the destination's tag ([`ImageSink::commit_index`]);
//!    until then no tag points at anything new.

use std::time::Instant;

use oci_spec::image::Descriptor;

use crate::convert::{ChildUpdate, ManifestFormat};
use crate::copy::{
    child_manifest, copy_one, plan_manifest, CopyOptions, CopyReport, ImagePlan, ImageSink,
    ImageSource, MultiArch,
};
use crate::error::{Error, Result};
use crate::manifest::{Parsed, RawManifest};

/// One image of an index to copy.
#[derive(Debug, Clone)]
pub struct ChildPlan {
    /// Position in the index's `manifests`.
    pub position: usize,
    /// The index entry.
    pub descriptor: Descriptor,
    /// The image, planned (`None` for `index-only`, whose images are not copied).
    pub plan: Option<ImagePlan>,
}

/// A whole index, planned by [`plan_index`].
#[derive(Debug, Clone)]
pub struct IndexPlan {
    /// The source's name, for messages.
    pub source_name: String,
    /// The index as the source has it.
    pub index: RawManifest,
    /// Its images, in index order.
    pub children: Vec<ChildPlan>,
    /// Whether the images are copied (`all`) or only the index (`index-only`).
    pub mode: MultiArch,
}

/// What [`plan_index`] found at the source.
#[derive(Debug, Clone)]
pub enum SourcePlan {
    /// One image (the source is not an index, or `--multi-arch system` chose one).
    Image(Box<ImagePlan>),
    /// A whole index.
    Index(Box<IndexPlan>),
}

/// Step 1: plan what `options.multi_arch` says to copy from `source`. A single-image source
/// is planned as one image whatever the mode (skopeo copies it as it is).
pub fn plan_source(source: &dyn ImageSource, options: &CopyOptions) -> Result<SourcePlan> {
    if options.multi_arch == MultiArch::System {
        return Ok(SourcePlan::Image(Box::new(crate::copy::plan_image(
            source,
            &options.platform,
        )?)));
    }
    let top = source.manifest()?;
    if !matches!(top.parsed, Parsed::Index(_)) {
        return Ok(SourcePlan::Image(Box::new(plan_manifest(
            source, top, None,
        )?)));
    }
    Ok(SourcePlan::Index(Box::new(plan_index(
        source,
        top,
        options.multi_arch,
    )?)))
}

/// Plan copying the index `top` of `source` in `mode` (`All` or `IndexOnly`).
pub fn plan_index(
    source: &dyn ImageSource,
    top: RawManifest,
    mode: MultiArch,
) -> Result<IndexPlan> {
    let name = source.name();
    let Parsed::Index(idx) = &top.parsed else {
        return Err(Error::Malformed {
            what: name,
            reason: "not an index".into(),
        });
    };
    let mut children = Vec::new();
    for (position, descriptor) in idx.manifests().iter().enumerate() {
        let plan = match mode {
            MultiArch::IndexOnly => None,
            _ => {
                let what = format!(
                    "image {} ({}) of the index of {name}",
                    position + 1,
                    descriptor.digest()
                );
                let manifest = child_manifest(source, descriptor, &what)?;
                Some(plan_manifest(source, manifest, Some(top.clone()))?)
            }
        };
        children.push(ChildPlan {
            position,
            descriptor: descriptor.clone(),
            plan,
        });
    }
    Ok(IndexPlan {
        source_name: name,
        index: top,
        children,
        mode,
    })
}

/// Steps 2–5: copy `plan` (from `source`) into `sink`; the report's `manifest_digest` is the
/// index's digest in the destination. `start` is when the copy began.
pub fn copy_index(
    source: &dyn ImageSource,
    plan: &IndexPlan,
    sink: &dyn ImageSink,
    options: &CopyOptions,
    start: Instant,
) -> Result<CopyReport> {
    sink.index_support()?;
    crate::copy::check_preserved(&plan.index, options, &plan.source_name)?;
    let source_format = ManifestFormat::of(&plan.index);
    if plan.mode == MultiArch::IndexOnly {
        if let Some(f) = options.manifest_format.filter(|f| *f != source_format) {
            return Err(Error::Conflict {
                what: format!("index {} of {}", plan.index.digest, plan.source_name),
                reason: format!(
                    "--multi-arch index-only copies the index without its images, so they cannot be converted to {}; use --multi-arch all (or --all) to convert them",
                    f.name()
                ),
            });
        }
    }
    let mut report = CopyReport {
        manifest_digest: plan.index.digest.clone(),
        source_manifest_digest: plan.index.digest.clone(),
        image_id: None,
        layers_copied: 0,
        layers_reused: 0,
        layer_bytes: 0,
        elapsed: Default::default(),
        images: 0,
        notes: source.notes(),
        files: None,
    };
    let mut updates = Vec::new();
    for child in &plan.children {
        let Some(child_plan) = &child.plan else {
            continue;
        };
        options
            .cancel
            .check(|| format!("copying {} to {}", plan.source_name, sink.name()))?;
        let (r, manifest) = copy_one(source, child_plan, sink, options, start, true)?;
        report.layers_copied += r.layers_copied;
        report.layers_reused += r.layers_reused;
        if let Some(f) = r.files {
            report.files.get_or_insert_with(Default::default).add(&f);
        }
        report.layer_bytes += r.layer_bytes;
        report.images += 1;
        updates.push(ChildUpdate {
            position: child.position,
            manifest,
        });
    }
    // The index's family: the one asked for, else the children's when they changed family
    // (a Docker manifest whose layers had to change is stored as OCI), else the source's.
    let format = options.manifest_format.unwrap_or_else(|| {
        updates
            .iter()
            .map(|u| ManifestFormat::of(&u.manifest))
            .find(|f| *f != source_format)
            .unwrap_or(source_format)
    });
    let index = crate::convert::index(&plan.index, &updates, format, &plan.source_name)?;
    if index.digest != plan.index.digest && options.preserve_digests {
        return Err(Error::Conflict {
            what: format!("index {} of {}", plan.index.digest, plan.source_name),
            reason: format!(
                "--preserve-digests: storing it as {} changes its digest; leave out --format or --preserve-digests",
                format.name()
            ),
        });
    }
    options
        .cancel
        .check(|| format!("copying {} to {}", plan.source_name, sink.name()))?;
    sink.commit_index(&index)?;
    report.manifest_digest = index.digest;
    report.elapsed = start.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci_layout::{OciDir, OciSink, OciSource};

    /// The generated small fixtures in `dir`; returns the `multiarch` fixture's layout path
    /// and the layer digest of its last image.
    fn multiarch(dir: &std::path::Path) -> (std::path::PathBuf, String) {
        let infos = stowage_fixtures::generate(dir, stowage_fixtures::FixtureSet::Small).unwrap();
        let info = infos.iter().find(|i| i.name == "multiarch").unwrap();
        let last = info.platforms.last().unwrap().layers[0].digest.to_string();
        (info.layout.clone(), last)
    }

    fn all() -> CopyOptions {
        CopyOptions {
            multi_arch: MultiArch::All,
            ..CopyOptions::default()
        }
    }

    #[test]
    fn a_failing_child_leaves_no_tag() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, layer) = multiarch(&tmp.path().join("fx"));
        let p = layout
            .join("blobs/sha256")
            .join(layer.strip_prefix("sha256:").unwrap());
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
        let src = OciSource::open(&layout, Some("multiarch")).unwrap();
        let SourcePlan::Index(plan) = plan_source(&src, &all()).unwrap() else {
            panic!("an index");
        };
        let dst = OciSink::create(&tmp.path().join("dst"), Some("t"), None).unwrap();
        let err = copy_index(&src, &plan, &dst, &all(), Instant::now()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        let out = OciDir::open(&tmp.path().join("dst")).unwrap();
        assert!(out.tags().unwrap().is_empty(), "the index was tagged");
    }

    #[test]
    fn an_unchanged_index_keeps_its_bytes_and_a_converted_one_its_platforms() {
        let tmp = tempfile::tempdir().unwrap();
        let (layout, _) = multiarch(&tmp.path().join("fx"));
        let src = OciSource::open(&layout, Some("multiarch")).unwrap();
        let SourcePlan::Index(plan) = plan_source(&src, &all()).unwrap() else {
            panic!("an index");
        };
        let dst = OciSink::create(&tmp.path().join("dst"), Some("t"), None).unwrap();
        let r = copy_index(&src, &plan, &dst, &all(), Instant::now()).unwrap();
        assert_eq!(
            (r.images, r.manifest_digest.clone()),
            (3, plan.index.digest.clone())
        );
        let mut v2 = all();
        v2.manifest_format = Some(ManifestFormat::DockerV2S2);
        let dst = OciSink::create(&tmp.path().join("v2"), Some("t"), None).unwrap();
        let r = copy_index(&src, &plan, &dst, &v2, Instant::now()).unwrap();
        let out = OciSource::open(&tmp.path().join("v2"), Some("t")).unwrap();
        let list = out.manifest().unwrap();
        assert_eq!(list.digest, r.manifest_digest);
        assert_eq!(list.media_type, crate::manifest::DOCKER_LIST);
        let Parsed::Index(idx) = &list.parsed else {
            panic!("a list")
        };
        let archs: Vec<String> = idx
            .manifests()
            .iter()
            .map(|d| d.platform().as_ref().unwrap().architecture().to_string())
            .collect();
        assert_eq!(archs, ["amd64", "arm64", "arm"]);
        for d in idx.manifests() {
            let child = out.child_manifest(d).unwrap();
            assert_eq!(child.media_type, crate::manifest::DOCKER_MANIFEST);
        }
    }
}
