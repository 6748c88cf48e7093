//! The copy pipeline: one path from any source to any sink.
//!
//! 1. The source yields the top-level manifest. If it is an index, the pipeline picks the
//!    manifest for the requested platform (or the host's) and asks the source for it.
//! 2. The config blob is read through a [`VerifiedReader`] (size-capped) and parsed; its
//!    `rootfs.diff_ids` must match the manifest's layer count.
//! 3. The sink [`begins`](ImageSink::begin) an image from that plan. For each layer the writer
//!    says whether it already has it; missing layers are streamed from the source, through a
//!    verified reader, into the writer — several layers at once, bounded by
//!    [`CopyOptions::jobs`]. Nothing is buffered whole.
//! 4. When a sink stored a layer in another form (a containers-storage source gives
//!    uncompressed diffs; an OCI sink compresses them), the manifest is rewritten with the new
//!    layer descriptors, so its digest changes exactly as skopeo's does.
//! 5. The writer commits: manifest, config and names become visible only now. A writer
//!    dropped without commit leaves its store as it was (or with only state that the store's
//!    own readers ignore and clean up, such as incomplete containers-storage layers).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};

use std::io::{Read, Write};

use crate::compression::{decoder, BoxRead, Compression, Encoder};
use crate::digest::{Digest, VerifiedReader};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{
    select_platform, Parsed, PlatformSpec, RawConfig, RawManifest, MAX_CONFIG_SIZE,
};
use crate::policy::SigstoreSignature;

/// A layer as a source provides it.
pub enum LayerStream<'a> {
    /// The blob exactly as the manifest's descriptor names it (compressed or not).
    Blob(BoxRead<'a>),
    /// The uncompressed tar whose sha256 is the layer's diffID (containers-storage keeps
    /// layers this way; the original compressed blob is gone).
    Diff(BoxRead<'a>),
}

/// Where images come from.
pub trait ImageSource: Send + Sync {
    /// The image's name in transport syntax, for messages.
    fn name(&self) -> String;
    /// The top-level manifest or index.
    fn manifest(&self) -> Result<RawManifest>;
    /// A manifest named by a descriptor of an index returned by [`manifest`](Self::manifest).
    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest>;
    /// A non-layer blob (the config), unverified; the pipeline verifies it.
    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>>;
    /// Layer `index` of the image, unverified; the pipeline verifies it against the
    /// descriptor (for [`LayerStream::Blob`]) or the diffID (for [`LayerStream::Diff`]).
    fn open_layer(
        &self,
        index: usize,
        descriptor: &Descriptor,
        diff_id: &Digest,
    ) -> Result<LayerStream<'_>>;
    /// The sigstore signatures stored for manifest `manifest_digest` (untrusted; the
    /// signature policy verifies them). Sources that keep none return an empty list.
    fn sigstore_signatures(&self, manifest_digest: &Digest) -> Result<Vec<SigstoreSignature>> {
        let _ = manifest_digest;
        Ok(Vec::new())
    }
}

/// A check of the chosen single-platform manifest, run before the config or any layer is
/// read and before the sink is touched (the signature policy).
pub type ManifestCheck<'a> = dyn Fn(&RawManifest) -> Result<()> + 'a;

/// What the sink is given to start an image.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// The source's name, for messages.
    pub source_name: String,
    /// The single-platform manifest being copied.
    pub manifest: RawManifest,
    /// The index or manifest list it was chosen from, if any.
    pub index: Option<RawManifest>,
    /// The config descriptor (from the manifest).
    pub config_descriptor: Descriptor,
    /// The config.
    pub config: RawConfig,
    /// The layers, bottom first.
    pub layers: Vec<LayerPlan>,
}

/// One layer of a plan.
#[derive(Debug, Clone)]
pub struct LayerPlan {
    /// The descriptor in the source manifest.
    pub descriptor: Descriptor,
    /// The diffID from the config.
    pub diff_id: Digest,
}

/// A layer's name in messages: `layer 2 (sha256:…) of oci:/src:tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerLabel {
    /// Position in the manifest, bottom first (0-based; displayed 1-based).
    pub index: usize,
    /// The digest the manifest names it by.
    pub digest: Digest,
    /// The image, in transport syntax.
    pub image: String,
}

impl LayerLabel {
    /// The label without its leading word, for the tar walkers, whose entry errors already
    /// say "layer …: tar entry …": `2 (sha256:…) of IMAGE`.
    pub fn for_tar_errors(&self) -> String {
        format!("{} ({}) of {}", self.index + 1, self.digest, self.image)
    }
}

impl std::fmt::Display for LayerLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "layer {}", self.for_tar_errors())
    }
}

/// A layer handed to a writer: the pipeline's verified stream and what it is.
///
/// A writer consumes it in exactly one of three ways, and the pipeline's checks come with
/// each: [`copy_to`](Self::copy_to) (store the stream as it arrives),
/// [`decode`](Self::decode) (read the uncompressed tar, verified against the diffID), or
/// [`recompress`](Self::recompress) (store it in another compression, the decoded tar still
/// verified against the diffID). Each reads the stream to its end, so when it returns `Ok`
/// the blob's digest and size and (for `decode`/`recompress`) the diffID have been checked.
pub struct LayerInput<'a> {
    /// The layer's position, bottom first.
    pub index: usize,
    /// Whether the stream is the blob as described or the uncompressed diff.
    pub form: LayerForm,
    /// The compression of the stream as it arrives, from the descriptor's media type
    /// ([`Compression::Uncompressed`] for a [`LayerForm::Diff`]).
    pub compression: Compression,
    /// The layer's name, for messages.
    pub label: LayerLabel,
    diff_id: Digest,
    reader: VerifiedReader<BoxRead<'a>>,
}

/// What [`LayerInput::decode`] read.
#[derive(Debug)]
pub struct Decoded<T> {
    /// What the consumer returned.
    pub value: T,
    /// The compression found in the stream (sniffed from its first bytes).
    pub compression: Compression,
    /// Bytes of the uncompressed tar (the diff size).
    pub diff_size: u64,
    /// Bytes of the stream as it arrived.
    pub stream_size: u64,
}

impl<'a> LayerInput<'a> {
    /// A layer input over `reader`, which must already verify the stream (the blob against
    /// its descriptor for [`LayerForm::Blob`], the diffID for [`LayerForm::Diff`]). The copy
    /// pipeline builds these; other callers (tests, tools) may too.
    pub fn new(
        label: LayerLabel,
        form: LayerForm,
        compression: Compression,
        diff_id: Digest,
        reader: VerifiedReader<BoxRead<'a>>,
    ) -> Self {
        LayerInput {
            index: label.index,
            form,
            compression,
            label,
            diff_id,
            reader,
        }
    }

    /// The diffID the uncompressed tar must hash to.
    pub fn diff_id(&self) -> &Digest {
        &self.diff_id
    }

    /// Copy the stream as it arrives (the blob, or the diff) to `out`; returns its size.
    /// Fails, before returning, if the bytes do not match their digest or size.
    pub fn copy_to(mut self, out: &mut impl Write) -> Result<u64> {
        let label = &self.label;
        std::io::copy(&mut self.reader, out).ctx(|| format!("copying {label}"))
    }

    /// Decode the stream and hand the uncompressed tar to `consume`. The tar is verified
    /// against the diffID and the blob against its digest and size: after `consume` returns,
    /// both streams are read to their ends, so `Ok` means every check passed. When `consume`
    /// fails and the blob turns out corrupt or truncated, the digest or size error is returned
    /// instead (a corrupt blob usually breaks decompression or the tar first, with a message
    /// about the symptom).
    pub fn decode<T>(
        mut self,
        consume: impl FnOnce(&mut dyn Read) -> Result<T>,
    ) -> Result<Decoded<T>> {
        let label = self.label.to_string();
        let outer = &mut self.reader;
        let result = match self.form {
            LayerForm::Diff => consume(outer)
                .and_then(|v| outer.drain().map(|_| (v, Compression::Uncompressed, None))),
            LayerForm::Blob => (|| {
                let (compression, decoded) = decoder(&mut *outer, &label)?;
                let mut verified = VerifiedReader::new(
                    decoded,
                    &self.diff_id,
                    None,
                    format!("uncompressed {label}"),
                )?;
                let value = consume(&mut verified)?;
                verified.drain()?;
                let diff_size = verified.count();
                drop(verified);
                Ok((value, compression, Some(diff_size)))
            })()
            .and_then(|v| outer.drain().map(|_| v)),
        };
        match result {
            Ok((value, compression, diff_size)) => Ok(Decoded {
                value,
                compression,
                diff_size: diff_size.unwrap_or_else(|| outer.count()),
                stream_size: outer.count(),
            }),
            Err(e) => Err(match outer.drain() {
                Err(d @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. })) => d,
                _ => e,
            }),
        }
    }

    /// Store the layer compressed with `target`: decode it (verified as in
    /// [`decode`](Self::decode)) and encode it into `out`, which is returned with what was
    /// decoded.
    pub fn recompress<W: Write>(self, out: W, target: Compression) -> Result<(W, Decoded<()>)> {
        let label = self.label.to_string();
        let mut enc = Encoder::new(out, target)?;
        let decoded = self.decode(|tar| {
            std::io::copy(tar, &mut enc).ctx(|| format!("compressing {label}"))?;
            Ok(())
        })?;
        let out = enc.finish().ctx(|| format!("compressing {label}"))?;
        Ok((out, decoded))
    }
}

/// The compression a sink that stores compressed blobs (an OCI layout, a registry) must give
/// a layer arriving in `form` and `compression` when `requested` was asked for: `None` to
/// store the stream as it is. An uncompressed diff is always compressed (gzip unless another
/// was requested), as skopeo does.
pub fn target_compression(
    form: LayerForm,
    compression: Compression,
    requested: Option<Compression>,
) -> Option<Compression> {
    match (form, requested) {
        (LayerForm::Diff, c) => Some(c.unwrap_or(Compression::Gzip)),
        (LayerForm::Blob, Some(c)) if c != compression => Some(c),
        _ => None,
    }
}

/// The form of a [`LayerInput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerForm {
    /// The blob as the source manifest describes it.
    Blob,
    /// The uncompressed tar (digest = diffID).
    Diff,
}

/// A layer as the sink stored it.
#[derive(Debug, Clone)]
pub struct StoredLayer {
    /// The descriptor for the destination manifest: the source's when stored as is,
    /// a new one when the sink recompressed.
    pub descriptor: Descriptor,
}

/// What a writer commits.
#[derive(Debug, Clone)]
pub struct FinalImage {
    /// The manifest as it should be stored (rewritten if layers changed form).
    pub manifest: RawManifest,
    /// The index it came from, if any (containers-storage keeps it as big data).
    pub index: Option<RawManifest>,
    /// The config descriptor.
    pub config_descriptor: Descriptor,
    /// The config.
    pub config: RawConfig,
}

/// Where images go.
pub trait ImageSink: Send + Sync {
    /// The destination in transport syntax, for messages.
    fn name(&self) -> String;
    /// Start writing one image.
    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>>;
    /// Store sigstore signatures for the committed manifest `manifest_digest`. Destinations
    /// that cannot keep them refuse.
    fn put_sigstore_signatures(
        &self,
        manifest_digest: &Digest,
        signatures: &[SigstoreSignature],
    ) -> Result<()> {
        let _ = (manifest_digest, signatures);
        self.can_store_sigstore_signatures()
    }
    /// `Ok` when [`put_sigstore_signatures`](Self::put_sigstore_signatures) can work here
    /// (asked before copying, so a copy that is to be signed fails before it starts).
    fn can_store_sigstore_signatures(&self) -> Result<()> {
        Err(Error::Unsupported {
            transport: self.name(),
            reason: "this destination cannot store sigstore signatures; sign images pushed to a registry (docker://) instead".into(),
        })
    }
    /// The docker reference a signature made for this destination names by default (skopeo's
    /// `--sign-identity` default); `None` when the destination has none.
    fn docker_reference(&self) -> Option<crate::reference::Reference> {
        None
    }
}

/// One image being written. Methods take `&self` so layers can be written from several
/// threads at once.
pub trait ImageWriter: Send + Sync {
    /// If layer `index` is already stored, how (the pipeline then does not fetch it).
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>>;
    /// Store a layer the writer does not have, consuming `input` through one of its methods
    /// (which verify it). Called from several threads at once, in any order.
    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer>;
    /// Make the image visible.
    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult>;
}

/// What a commit produced.
#[derive(Debug, Clone, Default)]
pub struct CommitResult {
    /// The image ID in the destination, when it has one (containers-storage).
    pub image_id: Option<String>,
}

/// Options for [`copy_image`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Layers transferred at once.
    pub jobs: usize,
    /// Platform to choose from an index.
    pub platform: PlatformSpec,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            jobs: 3,
            platform: PlatformSpec::host(),
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Digest of the manifest as stored in the destination.
    pub manifest_digest: Digest,
    /// Digest of the source's manifest.
    pub source_manifest_digest: Digest,
    /// The destination's image ID, when it has one.
    pub image_id: Option<String>,
    /// Layers streamed.
    pub layers_copied: usize,
    /// Layers the destination already had.
    pub layers_reused: usize,
    /// Bytes read from the source for layers.
    pub layer_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Read the manifest chain and config of `source` for `platform`: steps 1–2 of the pipeline.
pub fn plan_image(source: &dyn ImageSource, platform: &PlatformSpec) -> Result<ImagePlan> {
    plan_image_checked(source, platform, None)
}

/// [`plan_image`], running `check` on the chosen single-platform manifest before the config
/// is read.
pub fn plan_image_checked(
    source: &dyn ImageSource,
    platform: &PlatformSpec,
    check: Option<&ManifestCheck<'_>>,
) -> Result<ImagePlan> {
    let name = source.name();
    let top = source.manifest()?;
    let (manifest, index) = match &top.parsed {
        Parsed::Image(_) => (top, None),
        Parsed::Index(idx) => {
            let desc = select_platform(idx, platform, &name)?;
            let child = source.child_manifest(desc)?;
            if &child.digest != desc.digest() {
                return Err(Error::DigestMismatch {
                    what: format!("manifest for {} of {name}", platform.describe()),
                    expected: desc.digest().clone(),
                    actual: child.digest,
                });
            }
            if child.image().is_none() {
                return Err(Error::Malformed {
                    what: format!("manifest {} of {name}", desc.digest()),
                    reason:
                        "an index entry points at another index; nested indexes are not supported"
                            .into(),
                });
            }
            (child, Some(top))
        }
    };
    if let Some(check) = check {
        check(&manifest)?;
    }
    let m = manifest.image().expect("checked above");
    let config_descriptor = m.config().clone();
    if config_descriptor.size() > MAX_CONFIG_SIZE {
        return Err(Error::Malformed {
            what: format!("config of {name}"),
            reason: format!(
                "{} bytes, more than the {MAX_CONFIG_SIZE} byte limit",
                config_descriptor.size()
            ),
        });
    }
    let what = format!("config of {name}");
    let mut reader = VerifiedReader::new(
        source.open_blob(&config_descriptor)?,
        config_descriptor.digest(),
        Some(config_descriptor.size()),
        what.clone(),
    )?;
    let mut bytes = Vec::with_capacity(config_descriptor.size() as usize);
    std::io::Read::read_to_end(&mut reader, &mut bytes).ctx(|| format!("reading {what}"))?;
    let config = RawConfig::parse(bytes, &name)?;
    let diff_ids = config.diff_ids()?;
    if diff_ids.len() != m.layers().len() {
        return Err(Error::Malformed {
            what: format!("image {name}"),
            reason: format!(
                "the manifest lists {} layers but the config has {} diff_ids",
                m.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let layers = m
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(descriptor, diff_id)| LayerPlan {
            descriptor: descriptor.clone(),
            diff_id,
        })
        .collect();
    Ok(ImagePlan {
        source_name: name,
        manifest,
        index,
        config_descriptor,
        config,
        layers,
    })
}

/// Copy one image from `source` to `sink`, with no signature policy: the raw pipeline.
/// [`crate::endpoint::copy_between`] is the entry point that enforces the policy.
pub fn copy_image(
    source: &dyn ImageSource,
    sink: &dyn ImageSink,
    options: &CopyOptions,
) -> Result<CopyReport> {
    copy_image_checked(source, sink, options, None)
}

/// [`copy_image`], with `check` run on the chosen manifest before anything else is read or
/// written (an `Err` from it leaves the destination untouched).
pub fn copy_image_checked(
    source: &dyn ImageSource,
    sink: &dyn ImageSink,
    options: &CopyOptions,
    check: Option<&ManifestCheck<'_>>,
) -> Result<CopyReport> {
    let start = Instant::now();
    let plan = plan_image_checked(source, &options.platform, check)?;
    copy_planned(source, sink, &plan, options, start)
}

/// Steps 3–6 of the pipeline for a `plan` made from `source` ([`plan_image_checked`]);
/// `start` is when the copy began, for the report.
pub fn copy_planned(
    source: &dyn ImageSource,
    sink: &dyn ImageSink,
    plan: &ImagePlan,
    options: &CopyOptions,
    start: Instant,
) -> Result<CopyReport> {
    let writer = sink.begin(plan)?;
    let stored: Vec<Mutex<Option<StoredLayer>>> =
        plan.layers.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    // The error of the lowest failing layer: a layer that fails because one below it failed
    // (containers-storage stores layers in order) must not hide the cause.
    let first_error: Mutex<Option<(usize, Error)>> = Mutex::new(None);
    let copied = AtomicUsize::new(0);
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let n = plan.layers.len();

    let work = |i: usize| -> Result<()> {
        let layer = &plan.layers[i];
        if let Some(existing) = writer.existing_layer(i)? {
            *stored[i].lock().unwrap() = Some(existing);
            return Ok(());
        }
        let label = LayerLabel {
            index: i,
            digest: layer.descriptor.digest().clone(),
            image: plan.source_name.clone(),
        };
        let input = match source.open_layer(i, &layer.descriptor, &layer.diff_id)? {
            LayerStream::Blob(r) => {
                let reader = VerifiedReader::new(
                    r,
                    layer.descriptor.digest(),
                    Some(layer.descriptor.size()),
                    label.to_string(),
                )?;
                let compression =
                    Compression::from_media_type(layer.descriptor.media_type().as_ref())?;
                LayerInput::new(
                    label,
                    LayerForm::Blob,
                    compression,
                    layer.diff_id.clone(),
                    reader,
                )
            }
            LayerStream::Diff(r) => {
                let reader =
                    VerifiedReader::new(r, &layer.diff_id, None, format!("uncompressed {label}"))?;
                LayerInput::new(
                    label,
                    LayerForm::Diff,
                    Compression::Uncompressed,
                    layer.diff_id.clone(),
                    reader,
                )
            }
        };
        let result = writer.put_layer(input)?;
        *stored[i].lock().unwrap() = Some(result);
        copied.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(layer.descriptor.size(), Ordering::Relaxed);
        Ok(())
    };

    let jobs = options.jobs.clamp(1, n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                if let Err(e) = work(i) {
                    failed.store(true, Ordering::Relaxed);
                    let mut slot = first_error.lock().unwrap();
                    if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                        *slot = Some((i, e));
                    }
                    return;
                }
            });
        }
    });
    if let Some((_, e)) = first_error.into_inner().unwrap() {
        return Err(e);
    }

    let stored: Vec<StoredLayer> = stored
        .into_iter()
        .map(|m| m.into_inner().unwrap().expect("every layer stored"))
        .collect();
    let manifest = rewrite_manifest(plan, &stored)?;
    let final_image = FinalImage {
        manifest,
        index: plan.index.clone(),
        config_descriptor: plan.config_descriptor.clone(),
        config: plan.config.clone(),
    };
    let manifest_digest = final_image.manifest.digest.clone();
    let commit = writer.commit(&final_image)?;
    let layers_copied = copied.load(Ordering::Relaxed);
    Ok(CopyReport {
        manifest_digest,
        source_manifest_digest: plan.manifest.digest.clone(),
        image_id: commit.image_id,
        layers_copied,
        layers_reused: n - layers_copied,
        layer_bytes: bytes.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// The manifest to store: the source's bytes when every layer kept its descriptor, otherwise
/// an OCI manifest with the new layer descriptors (Docker media types carried over as their
/// OCI equivalents, as skopeo does when it must change a layer).
fn rewrite_manifest(plan: &ImagePlan, stored: &[StoredLayer]) -> Result<RawManifest> {
    let unchanged = plan.layers.iter().zip(stored).all(|(p, s)| {
        p.descriptor.digest() == s.descriptor.digest() && p.descriptor.size() == s.descriptor.size()
    });
    if unchanged {
        return Ok(plan.manifest.clone());
    }
    let m: &ImageManifest = plan.manifest.image().expect("plan holds an image manifest");
    let mut new = m.clone();
    new.set_layers(stored.iter().map(|s| s.descriptor.clone()).collect());
    let mut config = m.config().clone();
    if plan.manifest.is_docker() {
        config.set_media_type(MediaType::ImageConfig);
        new.set_media_type(Some(MediaType::ImageManifest));
    }
    new.set_config(config);
    let bytes = serde_json::to_vec(&new).map_err(|e| Error::Json {
        what: format!("rewritten manifest of {}", plan.source_name),
        source: e,
    })?;
    RawManifest::parse(
        bytes,
        Some(crate::manifest::OCI_MANIFEST),
        &plan.source_name,
    )
}

/// The OCI media type for a layer stored with `compression`, keeping the source's family.
pub fn layer_media_type(compression: Compression) -> MediaType {
    match compression {
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd => MediaType::ImageLayerZstd,
        _ => MediaType::ImageLayer,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use oci_spec::image::{Descriptor, MediaType};

    use super::*;
    use crate::digest::sha256_of;
    use crate::oci_layout::{OciDir, OciSink, OciSource};

    /// A tar with one file, gzip-compressed; returns (blob, diffID).
    fn layer(name: &str, content: &[u8]) -> (Vec<u8>, Digest) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, content).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = crate::compression::Encoder::new(Vec::new(), Compression::Gzip).unwrap();
        gz.write_all(&tar).unwrap();
        (gz.finish().unwrap(), sha256_of(&tar))
    }

    /// An OCI layout holding one image with `n` layers, tagged `t`.
    fn image(dir: &std::path::Path, n: usize) -> (OciDir, Vec<Descriptor>) {
        let oci = OciDir::create(dir).unwrap();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..n {
            let (blob, diff_id) = layer(&format!("f{i}"), format!("content {i}").as_bytes());
            let (d, size) = oci.write_blob(&blob).unwrap();
            layers.push(Descriptor::new(MediaType::ImageLayerGzip, size, d));
            diff_ids.push(diff_id.to_string());
        }
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let (cd, cs) = oci
            .write_blob(&serde_json::to_vec(&config).unwrap())
            .unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {"mediaType": crate::manifest::OCI_CONFIG, "digest": cd.to_string(), "size": cs},
            "layers": layers,
        });
        let (md, ms) = oci
            .write_blob(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        oci.add_manifest(Descriptor::new(MediaType::ImageManifest, ms, md), Some("t"))
            .unwrap();
        (oci, layers)
    }

    fn listing(dir: &std::path::Path) -> HashMap<String, Vec<u8>> {
        let mut out = HashMap::new();
        for e in walk(dir) {
            out.insert(
                e.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&e).unwrap(),
            );
        }
        out
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn copies_then_reuses_every_layer() {
        let tmp = tempfile::tempdir().unwrap();
        image(&tmp.path().join("src"), 4);
        let src = OciSource::open(&tmp.path().join("src"), Some("t")).unwrap();
        let dst = OciSink::create(&tmp.path().join("dst"), Some("x"), None).unwrap();
        let opts = CopyOptions {
            jobs: 3,
            ..Default::default()
        };
        let r = copy_image(&src, &dst, &opts).unwrap();
        assert_eq!((r.layers_copied, r.layers_reused), (4, 0));
        assert_eq!(
            r.manifest_digest, r.source_manifest_digest,
            "blobs kept as they are: same manifest"
        );
        let r = copy_image(&src, &dst, &opts).unwrap();
        assert_eq!((r.layers_copied, r.layers_reused), (0, 4));
    }

    #[test]
    fn a_corrupt_layer_fails_the_copy_and_leaves_the_destination_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, layers) = image(&tmp.path().join("src"), 5);
        // Flip a byte of layer 3.
        let p = tmp
            .path()
            .join("src/blobs/sha256")
            .join(layers[2].digest().digest());
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
        let dst_path = tmp.path().join("dst");
        let dst = OciSink::create(&dst_path, Some("x"), None).unwrap();
        let before = listing(&dst_path);
        let src = OciSource::open(&tmp.path().join("src"), Some("t")).unwrap();
        let err = copy_image(
            &src,
            &dst,
            &CopyOptions {
                jobs: 2,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&layers[2].digest().to_string()) && msg.contains("layer 3"),
            "{msg}"
        );
        assert_eq!(
            listing(&dst_path),
            before,
            "the destination changed after a failed copy"
        );
    }

    #[test]
    fn config_and_manifest_must_agree_on_layer_count() {
        let tmp = tempfile::tempdir().unwrap();
        let oci = OciDir::create(tmp.path()).unwrap();
        let (blob, _) = layer("f", b"x");
        let (ld, ls) = oci.write_blob(&blob).unwrap();
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
        let (cd, cs) = oci
            .write_blob(&serde_json::to_vec(&config).unwrap())
            .unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {"mediaType": crate::manifest::OCI_CONFIG, "digest": cd.to_string(), "size": cs},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld.to_string(), "size": ls}],
        });
        let (md, ms) = oci
            .write_blob(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        oci.add_manifest(Descriptor::new(MediaType::ImageManifest, ms, md), None)
            .unwrap();
        let src = OciSource::open(tmp.path(), None).unwrap();
        let err = plan_image(&src, &PlatformSpec::host())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 layers but the config has 0 diff_ids"),
            "{err}"
        );
    }

    #[test]
    fn recompression_rewrites_the_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        image(&tmp.path().join("src"), 2);
        let src = OciSource::open(&tmp.path().join("src"), Some("t")).unwrap();
        let dst =
            OciSink::create(&tmp.path().join("dst"), Some("z"), Some(Compression::Zstd)).unwrap();
        let r = copy_image(&src, &dst, &CopyOptions::default()).unwrap();
        assert_ne!(r.manifest_digest, r.source_manifest_digest);
        let out = OciSource::open(&tmp.path().join("dst"), Some("z")).unwrap();
        let plan = plan_image(&out, &PlatformSpec::host()).unwrap();
        let orig = plan_image(&src, &PlatformSpec::host()).unwrap();
        for (a, b) in plan.layers.iter().zip(&orig.layers) {
            assert_eq!(a.descriptor.media_type(), &MediaType::ImageLayerZstd);
            assert_eq!(a.diff_id, b.diff_id, "diffIDs survive recompression");
        }
        // Copying it back uncompressed-diff-wise round-trips through the verified path.
        let back =
            OciSink::create(&tmp.path().join("back"), Some("g"), Some(Compression::Gzip)).unwrap();
        copy_image(&out, &back, &CopyOptions::default()).unwrap();
    }
}
