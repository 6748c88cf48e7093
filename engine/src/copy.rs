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
//! 6. A layer whose bytes fail verification (digest or size) is fetched again from the start,
//!    once, when the source says a second read may differ ([`ImageSource::refetch_origin`]: a
//!    registry); the second failure names the blob, where it came from and both digests.
//! 7. When a layer the writer built on was removed by another process before the image
//!    referenced it ([`Error::LayerRemoved`]: `podman rmi` of the image it came from), the
//!    writer is dropped and the image begun again (three attempts in all).
//! 8. [`CopyOptions::cancel`] stops the copy between layers and, through a
//!    [`CancelReader`] on every layer stream, at the next chunk; the copy then ends with
//!    [`Error::Cancelled`] saying what the destination keeps (see [`crate::cancel`]).
//! 9. A source that rebuilds a layer from files on disk says where each file's body is
//!    ([`LayerStream::DiffFiles`]); the pipeline hands that origin, with one
//!    [`Cascade`] per copy, to the writer ([`LayerInput::take_sharing`]), which may reflink or
//!    hard-link the files instead of writing them ([`crate::fs_clone`]); the counts end up in
//!    [`CopyReport::files`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_spec::image::{Descriptor, ImageManifest, MediaType};

use crate::convert::ManifestFormat;

use std::io::{Read, Write};

use crate::cancel::{Cancel, CancelReader};
use crate::compression::zstd_chunked::{self, BlobRanges, LocalFiles};
use crate::compression::{decoder, BoxRead, Compression, Encoder};
use crate::digest::{Digest, VerifiedReader};
use crate::error::{Error, IoContext, Result};
use crate::fs_clone::{Cascade, FileOrigin, FileSharing, FileStats};
use crate::manifest::{
    select_platform, Parsed, PlatformSpec, RawConfig, RawManifest, MAX_CONFIG_SIZE,
};
use crate::policy::SigstoreSignature;
use crate::read_ahead::read_ahead;

/// A layer as a source provides it.
pub enum LayerStream<'a> {
    /// The blob exactly as the manifest's descriptor names it (compressed or not).
    Blob(BoxRead<'a>),
    /// The uncompressed tar whose sha256 is the layer's diffID (containers-storage keeps
    /// layers this way; the original compressed blob is gone).
    Diff(BoxRead<'a>),
    /// The uncompressed diff, rebuilt from files on disk, with where each regular file's
    /// body is ([`FileOrigin`]): a writer on the same filesystem may reflink or hard-link
    /// those files instead of writing the bytes ([`crate::fs_clone`]). The stream is verified
    /// as a [`Diff`](Self::Diff).
    DiffFiles(BoxRead<'a>, Box<dyn FileOrigin + 'a>),
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
    /// Where the bytes come from when reading them again may give other bytes (a registry:
    /// `registry HOST`); the pipeline then fetches a layer that fails verification once more.
    /// `None` (the default) for local stores, whose bytes a second read would not change.
    fn refetch_origin(&self) -> Option<String> {
        None
    }
    /// What a user should know about this copy from the source's side (e.g. layers that had
    /// to be regenerated, with new digests); the CLI prints each on stderr.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// The sigstore signatures stored for manifest `manifest_digest` (untrusted; the
    /// signature policy verifies them). Sources that keep none return an empty list.
    fn sigstore_signatures(&self, manifest_digest: &Digest) -> Result<Vec<SigstoreSignature>> {
        let _ = manifest_digest;
        Ok(Vec::new())
    }
    /// Ranged reads of the blob `descriptor` names, when the source can serve them (a
    /// registry): what a partial pull of a zstd:chunked layer uses. `None` (the default):
    /// only whole blobs.
    fn blob_ranges(&self, descriptor: &Descriptor) -> Option<Box<dyn BlobRanges + '_>> {
        let _ = descriptor;
        None
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
    /// When set, a digest or size mismatch of this input is followed by a second
    /// [`ImageWriter::put_layer`] of the same layer with freshly fetched bytes: the writer may
    /// keep what it set up for the layer (it must discard the content it wrote).
    pub will_retry_on_corruption: bool,
    /// At most this many chunks of the layer compress at once in
    /// [`recompress`](Self::recompress) (0: [`crate::compression::default_threads`]); from
    /// [`CopyOptions::compress_threads`]. The output does not depend on it.
    pub compress_threads: usize,
    /// The level [`recompress`](Self::recompress) compresses at (`None`: the default of the
    /// format); from [`CopyOptions::compress_level`].
    pub compress_level: Option<i32>,
    /// Set when this is a partial pull of a zstd:chunked blob: the stream is the layer's
    /// uncompressed tar ([`LayerForm::Diff`], verified against the diffID) put together from
    /// the destination's files and the ranges fetched; the writer records the blob's digest
    /// and keeps the TOC.
    pub partial: Option<PartialLayer>,
    diff_id: Digest,
    reader: VerifiedReader<BoxRead<'a>>,
    sharing: Option<FileSharing<'a>>,
}

/// What a partial pull of a zstd:chunked layer used ([`LayerInput::partial`]).
#[derive(Debug, Clone)]
pub struct PartialLayer {
    /// The blob's descriptor (the stream is its uncompressed tar).
    pub blob: Descriptor,
    /// The TOC's JSON as stored in the blob (containers-storage keeps it as the layer's
    /// `zstd-chunked-manifest` big data, for the next partial pull).
    pub toc_json: Vec<u8>,
    /// Bytes of the compressed TOC fetched.
    pub toc_bytes: u64,
    /// The plan: files reused, bytes to fetch.
    pub plan: zstd_chunked::PartialPlan,
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
            will_retry_on_corruption: false,
            compress_threads: 0,
            compress_level: None,
            partial: None,
            diff_id,
            reader,
            sharing: None,
        }
    }

    /// Attach where the layer's regular files already are on disk, placed through `cascade`
    /// ([`LayerStream::DiffFiles`]; the pipeline does this).
    pub fn with_origin(self, origin: Box<dyn FileOrigin + 'a>, cascade: Arc<Cascade>) -> Self {
        self.with_sharing(origin, cascade, true)
    }

    /// [`with_origin`](Self::with_origin) for files in the destination itself (a partial
    /// pull's reused files): reflinked or copied, never hard-linked
    /// ([`FileSharing::hard_links`]).
    pub fn with_local_origin(
        self,
        origin: Box<dyn FileOrigin + 'a>,
        cascade: Arc<Cascade>,
    ) -> Self {
        self.with_sharing(origin, cascade, false)
    }

    fn with_sharing(
        mut self,
        origin: Box<dyn FileOrigin + 'a>,
        cascade: Arc<Cascade>,
        hard_links: bool,
    ) -> Self {
        self.sharing = Some(FileSharing {
            origin,
            cascade,
            hard_links,
        });
        self
    }

    /// Take the layer's file origin, if the source gave one: a writer that extracts regular
    /// files asks it for each file's origin and reflinks or hard-links instead of writing the
    /// bytes (which still flow through [`decode`](Self::decode) and are verified as ever).
    /// Taking it is what makes the copy's report count files ([`CopyReport::files`]).
    pub fn take_sharing(&mut self) -> Option<FileSharing<'a>> {
        let sharing = self.sharing.take();
        if let Some(s) = &sharing {
            s.cascade.mark_used();
        }
        sharing
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
        let (form, diff_id) = (self.form, &self.diff_id);
        let outer = &mut self.reader;
        // The producer thread reads, hashes and decodes; `consume` (tar parsing, file writes)
        // runs here, on the layer's own thread (crate::read_ahead).
        let result = read_ahead(
            &label,
            |feed| match form {
                LayerForm::Diff => {
                    feed.send_all(&mut *outer, &label)?;
                    Ok((Compression::Uncompressed, None))
                }
                LayerForm::Blob => {
                    let (compression, decoded) = decoder(&mut *outer, &label)?;
                    let what = format!("uncompressed {label}");
                    let mut verified = VerifiedReader::new(decoded, diff_id, None, &what)?;
                    feed.send_all(&mut verified, &what)?;
                    let diff_size = verified.count();
                    drop(verified);
                    outer.drain()?;
                    Ok((compression, Some(diff_size)))
                }
            },
            consume,
        )
        .map(|(value, (compression, diff_size))| (value, compression, diff_size));
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
    /// decoded; the decoded value holds the annotations the stored layer's descriptor must
    /// carry (zstd:chunked's TOC position and checksum; none for the others). gzip and zstd
    /// compress on [`compress_threads`](Self::compress_threads) threads
    /// ([`crate::compression::parallel`]); zstd:chunked on one
    /// ([`crate::compression::zstd_chunked`]).
    pub fn recompress<W: Write>(
        self,
        out: W,
        target: Compression,
    ) -> Result<(W, Decoded<HashMap<String, String>>)> {
        let label = self.label.to_string();
        if target == Compression::ZstdChunked {
            let level = crate::compression::check_level(
                self.compress_level,
                crate::compression::parallel::ZSTD_LEVELS,
                "zstd",
            )?
            .unwrap_or(crate::compression::parallel::ZSTD_LEVEL);
            let mut slot = Some(out);
            let mut written = None;
            let decoded = self.decode(|tar| {
                let out = slot.take().expect("decode calls its consumer once");
                let (out, w) = crate::compression::zstd_chunked::encode(tar, out, level, &label)?;
                written = Some((out, w.annotations));
                Ok(())
            })?;
            let (out, annotations) = written.expect("the consumer ran");
            return Ok((
                out,
                Decoded {
                    value: annotations,
                    compression: decoded.compression,
                    diff_size: decoded.diff_size,
                    stream_size: decoded.stream_size,
                },
            ));
        }
        let mut enc =
            Encoder::with_options(out, target, self.compress_threads, self.compress_level)?;
        let decoded = self.decode(|tar| {
            enc.write_from(tar).ctx(|| format!("compressing {label}"))?;
            Ok(HashMap::new())
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
    /// The image is one child of an index being copied whole ([`crate::copy_index`]): the
    /// writer stores it without the destination's tag or name (an OCI layout: blobs only; a
    /// registry: the manifest by digest); [`ImageSink::commit_index`] tags the index last.
    pub index_child: bool,
}

/// Where images go.
pub trait ImageSink: Send + Sync {
    /// The destination in transport syntax, for messages.
    fn name(&self) -> String;
    /// The directory or file the sink writes into (an OCI layout, a graph root, an ostree
    /// repository, an archive), when it is local: named by [`Error::NoSpace`] when the
    /// filesystem fills up.
    fn location(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// Start writing one image.
    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>>;
    /// Whether this destination can hold a whole index (`--multi-arch all|index-only`): `Ok`,
    /// or the error saying why not and what to do. Asked before anything is written. The
    /// default: it cannot.
    fn index_support(&self) -> Result<()> {
        Err(Error::Unsupported {
            transport: self.name(),
            reason: "this destination stores one image, not an index; copy one platform (--multi-arch system, the default, with --override-arch/--override-os/--override-variant to choose) or copy the index into oci: or docker://".into(),
        })
    }
    /// Store `index` (whose children were committed with [`FinalImage::index_child`] or are
    /// already present) under the destination's tag or name: the last step of a multi-image
    /// copy. Only called when [`index_support`](Self::index_support) said `Ok`.
    fn commit_index(&self, index: &RawManifest) -> Result<()> {
        let _ = index;
        self.index_support()
    }
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
    /// Layer `index` will not be stored: it failed before or in [`put_layer`](Self::put_layer)
    /// (opening the source, a second corrupt fetch, cancellation). Writers that make layers
    /// wait for the one below them (containers-storage) release the waiters here.
    fn layer_failed(&self, _index: usize, _error: &Error) {}
    /// Whether layers may be stored in any order: no [`put_layer`](Self::put_layer) waits for
    /// another layer. The pipeline then starts the largest layers first (longest first, so the
    /// last layer to finish is a small one); otherwise (the default, for writers that make a
    /// layer wait for the one below it, as containers-storage does) bottom first.
    fn layers_in_any_order(&self) -> bool {
        false
    }
    /// How many layers this writer has stored durably so far, kept even if the copy stops
    /// now (containers-storage and ostree commit layer by layer; an OCI layout publishes
    /// nothing before the commit). Used in the message of an interrupted copy.
    fn layers_kept(&self) -> usize {
        0
    }
    /// The destination's files by content, when the writer extracts layers and can take a
    /// zstd:chunked layer's files from what it holds (containers-storage): the pipeline then
    /// pulls such layers partially ([`LayerInput::partial`]). `None` (the default): whole
    /// blobs.
    fn local_files(&self) -> Option<&dyn LocalFiles> {
        None
    }
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
    /// Chunks of one layer compressed at once when a sink recompresses (0, the default: the
    /// machine's available parallelism). The compressed bytes do not depend on it.
    pub compress_threads: usize,
    /// The level of recompressed layers (`None`: gzip
    /// [`GZIP_LEVEL`](crate::compression::parallel::GZIP_LEVEL), zstd
    /// [`ZSTD_LEVEL`](crate::compression::parallel::ZSTD_LEVEL)).
    pub compress_level: Option<i32>,
    /// Platform to choose from an index.
    pub platform: PlatformSpec,
    /// Set it to stop the copy (see [`crate::cancel`]).
    pub cancel: Cancel,
    /// What to copy of an index (`--multi-arch`; [`crate::copy_index`]).
    pub multi_arch: MultiArch,
    /// Fail instead of storing any manifest or index whose digest differs from the source's
    /// (`--preserve-digests`): a recompression or a format conversion is then an error.
    pub preserve_digests: bool,
    /// Store manifests (and indexes) in this family (`--format oci|v2s2`); `None`: the
    /// source's, or OCI where a Docker manifest must change anyway.
    pub manifest_format: Option<ManifestFormat>,
    /// Pull zstd:chunked layers partially when the destination can take files it already
    /// holds (containers-storage) and the source serves ranges (a registry): only the
    /// missing files are fetched. On by default; `false` (`--no-partial-pull`) always pulls
    /// whole blobs.
    pub partial_pulls: bool,
}

/// What a copy of an index copies (skopeo's `--multi-arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    /// Only the image for [`CopyOptions::platform`] (the default).
    #[default]
    System,
    /// Every image of the index and the index itself (`--all`).
    All,
    /// Only the index; its images must already be in the destination (or the destination
    /// accept an index whose images are missing, as an OCI layout does).
    IndexOnly,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            jobs: 3,
            compress_threads: 0,
            compress_level: None,
            platform: PlatformSpec::host(),
            cancel: Cancel::new(),
            multi_arch: MultiArch::System,
            preserve_digests: false,
            manifest_format: None,
            partial_pulls: true,
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
    /// What the source says a user should know ([`ImageSource::notes`]).
    pub notes: Vec<String>,
    /// Images (manifests) written: 1 for a single image, the children copied for an index.
    pub images: usize,
    /// How regular files were placed when the source offered their origins on disk
    /// ([`LayerStream::DiffFiles`]): reflinked, hard-linked or copied. `None` when no layer
    /// streamed came with origins.
    pub files: Option<FileStats>,
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
            let child = child_manifest(
                source,
                desc,
                &format!("manifest for {} of {name}", platform.describe()),
            )?;
            (child, Some(top))
        }
    };
    if let Some(check) = check {
        check(&manifest)?;
    }
    plan_manifest(source, manifest, index)
}

/// The image manifest `desc` of an index of `source`, checked against the entry's digest
/// (`what` names it in that error); an entry naming another index is an error.
pub fn child_manifest(
    source: &dyn ImageSource,
    desc: &Descriptor,
    what: &str,
) -> Result<RawManifest> {
    let name = source.name();
    let child = source.child_manifest(desc)?;
    if &child.digest != desc.digest() {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: desc.digest().clone(),
            actual: child.digest,
        });
    }
    if child.image().is_none() {
        return Err(Error::Malformed {
            what: format!("manifest {} of {name}", desc.digest()),
            reason: "an index entry points at another index; nested indexes are not supported"
                .into(),
        });
    }
    Ok(child)
}

/// Step 2 for an image manifest of `source` (chosen from `index`, if any): read and check its
/// config and pair the layers with their diffIDs.
pub fn plan_manifest(
    source: &dyn ImageSource,
    manifest: RawManifest,
    index: Option<RawManifest>,
) -> Result<ImagePlan> {
    let name = source.name();
    if manifest.image().is_none() {
        return Err(Error::Malformed {
            what: format!("manifest {} of {name}", manifest.digest),
            reason: "an index, where an image manifest was expected".into(),
        });
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
    options
        .cancel
        .check(|| format!("copying {}", source.name()))?;
    let plan = plan_image_checked(source, &options.platform, check)?;
    copy_planned(source, &plan, sink, options, start)
}

/// Steps 3–6 of the pipeline for a `plan` made by [`plan_image`] from `source`: lets a caller
/// resolve the source before it opens (and so creates) the destination. `start` is when the
/// copy began, for [`CopyReport::elapsed`].
pub fn copy_planned(
    source: &dyn ImageSource,
    plan: &ImagePlan,
    sink: &dyn ImageSink,
    options: &CopyOptions,
    start: Instant,
) -> Result<CopyReport> {
    log::info!(
        "copying {} ({} layer(s), manifest {}) to {}",
        source.name(),
        plan.layers.len(),
        plan.manifest.digest,
        sink.name()
    );
    copy_one(source, plan, sink, options, start, false).map(|(report, _)| report)
}

/// [`copy_planned`], for an image of its own or (`index_child`) one child of an index being
/// copied whole ([`FinalImage::index_child`]); also returns the manifest as stored.
pub(crate) fn copy_one(
    source: &dyn ImageSource,
    plan: &ImagePlan,
    sink: &dyn ImageSink,
    options: &CopyOptions,
    start: Instant,
    index_child: bool,
) -> Result<(CopyReport, RawManifest)> {
    let mut attempt = 1;
    loop {
        match write_image(source, plan, sink, options, start, index_child) {
            // Another process removed a layer this copy was building on (podman rmi of the
            // image it came from): begin again, the layer is then found missing and written.
            Err(Error::LayerRemoved { .. })
                if attempt < LAYER_REMOVED_ATTEMPTS && !options.cancel.is_cancelled() =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// How often [`copy_one`] begins an image when layers it builds on keep being removed.
const LAYER_REMOVED_ATTEMPTS: usize = 3;

/// One attempt of [`copy_one`]: begin the writer, store the layers, commit.
fn write_image(
    source: &dyn ImageSource,
    plan: &ImagePlan,
    sink: &dyn ImageSink,
    options: &CopyOptions,
    start: Instant,
    index_child: bool,
) -> Result<(CopyReport, RawManifest)> {
    let cancel = &options.cancel;
    let what = || format!("copying {} to {}", plan.source_name, sink.name());
    cancel.check(what)?;
    check_preserved(&plan.manifest, options, &plan.source_name)?;
    let n = plan.layers.len();
    let full = |e: Error, kept: usize| match sink.location() {
        Some(path) => e.no_space(&path, || no_space_kept(kept, n)),
        None => e,
    };
    let writer = sink.begin(plan).map_err(|e| full(e, 0))?;
    let cascade = Arc::new(Cascade::new());
    let notes = Mutex::new(Vec::new());
    let result = copy_layers(source, plan, writer.as_ref(), options, &cascade, &notes);
    let stored = match result {
        Ok(stored) => stored,
        Err(e) => {
            return Err(match cancel.reason() {
                Some(reason) => Error::Cancelled {
                    what: what(),
                    reason,
                    kept: kept_message(writer.layers_kept(), plan.layers.len()),
                },
                None => full(e, writer.layers_kept()),
            })
        }
    };
    let (layers_copied, layer_bytes) = stored.1;
    let stored = stored.0;
    if let Some(reason) = cancel.reason() {
        return Err(Error::Cancelled {
            what: what(),
            reason,
            kept: kept_message(writer.layers_kept(), plan.layers.len()),
        });
    }
    let manifest = final_manifest(plan, &stored, options)?;
    let final_image = FinalImage {
        manifest,
        index: plan.index.clone(),
        config_descriptor: plan.config_descriptor.clone(),
        config: plan.config.clone(),
        index_child,
    };
    let manifest_digest = final_image.manifest.digest.clone();
    let kept = writer.layers_kept();
    let commit = writer.commit(&final_image).map_err(|e| full(e, kept))?;
    let report = CopyReport {
        manifest_digest,
        source_manifest_digest: plan.manifest.digest.clone(),
        image_id: commit.image_id,
        layers_copied,
        layers_reused: n - layers_copied,
        layer_bytes,
        elapsed: start.elapsed(),
        images: 1,
        // The source's notes last: they may count what the layers fetched.
        notes: {
            let mut all = notes.into_inner().unwrap();
            all.extend(source.notes());
            all
        },
        files: cascade.stats(),
    };
    Ok((report, final_image.manifest))
}

/// What an interrupted copy leaves in the destination, for [`Error::Cancelled`].
fn kept_message(kept: usize, total: usize) -> String {
    match kept {
        0 => "nothing of the image was kept in the destination".into(),
        k => format!(
            "{k} of {total} layer(s) committed before the stop are kept in the destination (the next copy reuses them); the image itself was not written"
        ),
    }
}

/// What a copy that filled the filesystem leaves in the destination, for [`Error::NoSpace`].
fn no_space_kept(kept: usize, total: usize) -> String {
    match kept {
        0 => "what the copy had begun was removed".into(),
        k => format!(
            "{k} of {total} layer(s) written before are kept (the next copy reuses them); the rest was removed and the image itself was not written"
        ),
    }
}

/// `r`, failing its next read once `cancel` is set.
fn guarded<'a>(r: BoxRead<'a>, cancel: &Cancel, label: &LayerLabel) -> BoxRead<'a> {
    Box::new(CancelReader::new(r, cancel.clone(), label.to_string()))
}

/// The partial pull of a zstd:chunked layer, when it can run: the reassembled tar, what it
/// uses, and the destination files it reads (for the writer to reflink or copy in the kernel
/// instead of writing their bytes). `None` when the layer is not zstd:chunked, the writer cannot take local files
/// or the source cannot serve ranges (silently), or when its TOC cannot be used (with a note
/// saying why the whole blob is pulled instead).
fn partial_input<'a>(
    source: &'a dyn ImageSource,
    writer: &'a dyn ImageWriter,
    layer: &LayerPlan,
    label: &LayerLabel,
    notes: &Mutex<Vec<String>>,
) -> Option<(BoxRead<'a>, PartialLayer, zstd_chunked::LocalOrigin)> {
    let annotations = layer.descriptor.annotations().as_ref();
    if !zstd_chunked::is_chunked(annotations) {
        return None;
    }
    let local = writer.local_files()?;
    let ranges = source.blob_ranges(&layer.descriptor)?;
    let note = |reason: String| {
        notes.lock().unwrap().push(format!(
            "{label}: zstd:chunked partial pull not possible ({reason}); pulled the whole blob"
        ));
        None
    };
    let found = match zstd_chunked::read_toc(
        ranges.as_ref(),
        annotations.expect("checked"),
        layer.descriptor.size(),
    ) {
        Ok(f) => f,
        Err(reason) => return note(reason),
    };
    let plan = match zstd_chunked::plan(&found, local) {
        Ok(p) => p,
        Err(reason) => return note(reason),
    };
    let stream = match ranges.read_ranges(plan.ranges()) {
        Ok(s) => s,
        Err(e) => return note(e.to_string()),
    };
    notes.lock().unwrap().push(format!(
        "{label}: zstd:chunked partial pull: {} of {} files ({} bytes) taken from the destination, fetching {} of {} bytes in {} ranges",
        plan.reused_files,
        plan.files,
        plan.reused_bytes,
        plan.remote_bytes + found.compressed_len,
        layer.descriptor.size(),
        plan.remote_ranges
    ));
    let origin = zstd_chunked::LocalOrigin::new();
    let tar = zstd_chunked::reassemble(plan.clone(), stream, local, Some(origin.clone()));
    Some((
        tar,
        PartialLayer {
            blob: layer.descriptor.clone(),
            toc_json: found.json,
            toc_bytes: found.compressed_len,
            plan,
        },
        origin,
    ))
}

/// The input of a layer that arrives as its uncompressed diff (`r`), verified against the
/// diffID; `what` names the stream in errors.
fn diff_input<'a>(
    r: BoxRead<'a>,
    layer: &LayerPlan,
    label: &LayerLabel,
    what: String,
) -> Result<LayerInput<'a>> {
    let reader = VerifiedReader::new(r, &layer.diff_id, None, what)?;
    Ok(LayerInput::new(
        label.clone(),
        LayerForm::Diff,
        Compression::Uncompressed,
        layer.diff_id.clone(),
        reader,
    ))
}

/// A layer's bytes failed verification: the errors a second fetch may cure.
fn is_corruption(e: &Error) -> bool {
    matches!(e, Error::DigestMismatch { .. } | Error::SizeMismatch { .. })
}

/// Step 4: every layer the writer lacks, `options.jobs` at once. Returns the stored layers,
/// how many were streamed and their bytes.
#[allow(clippy::type_complexity)]
fn copy_layers(
    source: &dyn ImageSource,
    plan: &ImagePlan,
    writer: &dyn ImageWriter,
    options: &CopyOptions,
    cascade: &Arc<Cascade>,
    notes: &Mutex<Vec<String>>,
) -> Result<(Vec<StoredLayer>, (usize, u64))> {
    let cancel = &options.cancel;
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
    let refetch = source.refetch_origin();

    // `first`: the first attempt at the layer, which may pull it partially; a second one
    // (after a corrupt stream) pulls the whole blob.
    let open_input =
        |i: usize, label: &LayerLabel, retry: bool, first: bool| -> Result<LayerInput<'_>> {
            let layer = &plan.layers[i];
            let guard = |r| guarded(r, cancel, label);
            let partial = if options.partial_pulls && first {
                partial_input(source, writer, layer, label, notes)
            } else {
                None
            };
            let mut input = if let Some((stream, partial, origin)) = partial {
                let mut input = diff_input(
                    guard(stream),
                    layer,
                    label,
                    format!("uncompressed {label} (partial pull)"),
                )?
                .with_local_origin(Box::new(origin), cascade.clone());
                input.partial = Some(partial);
                input
            } else {
                match source.open_layer(i, &layer.descriptor, &layer.diff_id)? {
                    LayerStream::Blob(r) => {
                        let reader = VerifiedReader::new(
                            guard(r),
                            layer.descriptor.digest(),
                            Some(layer.descriptor.size()),
                            label.to_string(),
                        )?;
                        let compression =
                            Compression::from_media_type(layer.descriptor.media_type().as_ref())?;
                        LayerInput::new(
                            label.clone(),
                            LayerForm::Blob,
                            compression,
                            layer.diff_id.clone(),
                            reader,
                        )
                    }
                    LayerStream::Diff(r) => {
                        diff_input(guard(r), layer, label, format!("uncompressed {label}"))?
                    }
                    LayerStream::DiffFiles(r, origin) => {
                        diff_input(guard(r), layer, label, format!("uncompressed {label}"))?
                            .with_origin(origin, cascade.clone())
                    }
                }
            };
            input.will_retry_on_corruption = retry;
            input.compress_threads = options.compress_threads;
            input.compress_level = options.compress_level;
            Ok(input)
        };

    let work = |i: usize| -> Result<()> {
        let layer = &plan.layers[i];
        cancel.check(|| format!("copying layers of {}", plan.source_name))?;
        if let Some(existing) = writer.existing_layer(i)? {
            log::debug!(
                "layer {i} ({}): already in the destination, not fetched",
                layer.descriptor.digest()
            );
            *stored[i].lock().unwrap() = Some(existing);
            return Ok(());
        }
        let label = LayerLabel {
            index: i,
            digest: layer.descriptor.digest().clone(),
            image: plan.source_name.clone(),
        };
        let input = open_input(i, &label, refetch.is_some(), true)?;
        let fetched = input.partial.as_ref().map_or(layer.descriptor.size(), |p| {
            p.plan.remote_bytes + p.toc_bytes
        });
        log::debug!(
            "layer {i} ({}): streaming {fetched} bytes as {:?}{}",
            layer.descriptor.digest(),
            input.form,
            if input.partial.is_some() {
                " (zstd:chunked partial pull)"
            } else {
                ""
            }
        );
        let first = writer.put_layer(input);
        let result = match (first, &refetch) {
            (Err(e), Some(origin)) if is_corruption(&e) && !cancel.is_cancelled() => {
                log::warn!("layer {i}: {e}; fetching it again from {origin}");
                match writer.put_layer(open_input(i, &label, false, false)?) {
                    Err(Error::DigestMismatch {
                        what,
                        expected,
                        actual,
                    }) => Err(Error::DigestMismatch {
                        what: format!("{what}, fetched twice from {origin}"),
                        expected,
                        actual,
                    }),
                    Err(Error::SizeMismatch {
                        what,
                        digest,
                        expected,
                        actual,
                    }) => Err(Error::SizeMismatch {
                        what: format!("{what}, fetched twice from {origin}"),
                        digest,
                        expected,
                        actual,
                    }),
                    other => other,
                }
            }
            (first, _) => first,
        };
        let result = result?;
        *stored[i].lock().unwrap() = Some(result);
        copied.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(fetched, Ordering::Relaxed);
        Ok(())
    };

    // Which layer each claim takes: the largest first where the writer allows any order
    // (compressed size as the measure of work; ties bottom first).
    let mut order: Vec<usize> = (0..n).collect();
    if writer.layers_in_any_order() {
        order.sort_by_key(|&i| std::cmp::Reverse(plan.layers[i].descriptor.size()));
    }
    let jobs = options.jobs.clamp(1, n.max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return;
                };
                if let Err(e) = work(i) {
                    failed.store(true, Ordering::Relaxed);
                    writer.layer_failed(i, &e);
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
    Ok((
        stored,
        (
            copied.load(Ordering::Relaxed),
            bytes.load(Ordering::Relaxed),
        ),
    ))
}

/// With `--preserve-digests`, a `--format` other than `manifest`'s family is an error, found
/// before anything is written (`source_name` names the image).
pub(crate) fn check_preserved(
    manifest: &RawManifest,
    options: &CopyOptions,
    source_name: &str,
) -> Result<()> {
    match options.manifest_format {
        Some(f) if options.preserve_digests && f != ManifestFormat::of(manifest) => {
            Err(Error::Conflict {
                what: format!("{} {} of {source_name}", if manifest.image().is_some() { "manifest" } else { "index" }, manifest.digest),
                reason: format!(
                    "--preserve-digests: it is {}, and converting it to {} changes its digest; leave out --format or --preserve-digests",
                    ManifestFormat::of(manifest).name(),
                    f.name()
                ),
            })
        }
        _ => Ok(()),
    }
}

/// The manifest to store: the source's bytes when every layer kept its descriptor and no
/// other format was asked for; otherwise the manifest written again with the stored layer
/// descriptors, in [`CopyOptions::manifest_format`] (or, for a Docker manifest whose layers
/// changed, as OCI, as skopeo does). With [`CopyOptions::preserve_digests`] any change is an
/// error naming its cause.
pub(crate) fn final_manifest(
    plan: &ImagePlan,
    stored: &[StoredLayer],
    options: &CopyOptions,
) -> Result<RawManifest> {
    let layers_changed = !plan.layers.iter().zip(stored).all(|(p, s)| {
        p.descriptor.digest() == s.descriptor.digest() && p.descriptor.size() == s.descriptor.size()
    });
    let source_format = ManifestFormat::of(&plan.manifest);
    let format = match options.manifest_format {
        Some(f) => f,
        None if layers_changed => ManifestFormat::Oci,
        None => source_format,
    };
    if !layers_changed && format == source_format {
        return Ok(plan.manifest.clone());
    }
    if options.preserve_digests {
        return Err(Error::Conflict {
            what: format!("manifest {} of {}", plan.manifest.digest, plan.source_name),
            reason: if layers_changed {
                "--preserve-digests: the destination stores its layers in another form (recompressed, or compressed from uncompressed diffs), which changes the manifest digest; leave out --dest-compress-format or --preserve-digests".into()
            } else {
                format!(
                    "--preserve-digests: converting it to {} changes its digest; leave out --format or --preserve-digests",
                    format.name()
                )
            },
        });
    }
    let m: &ImageManifest = plan.manifest.image().expect("plan holds an image manifest");
    let layers: Vec<Descriptor> = stored.iter().map(|s| s.descriptor.clone()).collect();
    crate::convert::image_manifest(m, &layers, format, &plan.source_name)
}

/// The descriptor of a layer a sink recompressed: `compression`'s media type, the blob's size
/// and digest, and the annotations [`LayerInput::recompress`] returned (none: no
/// annotations field).
pub fn recompressed_descriptor(
    compression: Compression,
    size: u64,
    digest: Digest,
    annotations: HashMap<String, String>,
) -> Descriptor {
    let mut d = Descriptor::new(layer_media_type(compression), size, digest);
    if !annotations.is_empty() {
        d.set_annotations(Some(annotations));
    }
    d
}

/// The OCI media type for a layer stored with `compression`, keeping the source's family.
pub fn layer_media_type(compression: Compression) -> MediaType {
    match compression {
        Compression::Gzip => MediaType::ImageLayerGzip,
        Compression::Zstd | Compression::ZstdChunked => MediaType::ImageLayerZstd,
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
    fn a_cancelled_copy_stops_and_leaves_the_destination_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        image(&tmp.path().join("src"), 3);
        let src = OciSource::open(&tmp.path().join("src"), Some("t")).unwrap();
        let dst_path = tmp.path().join("dst");
        let dst = OciSink::create(&dst_path, Some("x"), None).unwrap();
        let before = listing(&dst_path);
        let opts = CopyOptions::default();
        opts.cancel.cancel();
        let err = copy_image(&src, &dst, &opts).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Cancelled {
                    reason: crate::cancel::CancelReason::Requested,
                    ..
                }
            ),
            "{err}"
        );
        // Cancelled mid-stream: the plan is made, the first read of a layer fails.
        let opts = CopyOptions::default();
        let plan = plan_image(&src, &opts.platform).unwrap();
        struct CancelOnRead<'a>(&'a OciSource, Cancel);
        impl ImageSource for CancelOnRead<'_> {
            fn name(&self) -> String {
                self.0.name()
            }
            fn manifest(&self) -> Result<RawManifest> {
                self.0.manifest()
            }
            fn child_manifest(&self, d: &Descriptor) -> Result<RawManifest> {
                self.0.child_manifest(d)
            }
            fn open_blob(&self, d: &Descriptor) -> Result<BoxRead<'_>> {
                self.0.open_blob(d)
            }
            fn open_layer(&self, i: usize, d: &Descriptor, id: &Digest) -> Result<LayerStream<'_>> {
                let s = self.0.open_layer(i, d, id);
                self.1.cancel();
                s
            }
        }
        let src2 = CancelOnRead(&src, opts.cancel.clone());
        let err = copy_planned(&src2, &plan, &dst, &opts, Instant::now()).unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(
            err.to_string().contains("nothing of the image was kept"),
            "{err}"
        );
        assert_eq!(listing(&dst_path), before, "no temporary or blob left");
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
