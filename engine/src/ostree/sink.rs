//! An ostree repository as a copy destination: `ostree:[REPO]IMGREF`, imported the way
//! ostree-rs-ext's `ostree container image pull` stores a plain (non-encapsulated) image.
//!
//! 1. Every layer is "derived": the pipeline hands it over decoded and diffID-verified
//!    ([`LayerInput::decode`]); [`import::import_layer`] turns it into content objects and a
//!    tree in a transaction of its own, committed (timestamp 0, metadata
//!    `ostree.importer.version`) and pointed at by `ostree/container/blob/<escaped compressed
//!    digest>` once the stream has been verified. Layers import in parallel, one transaction
//!    each; a layer whose blob ref already names a commit in the repository is reused.
//! 2. At commit, the layer commits are merged ([`merge::merge_layers`]: whiteouts applied,
//!    zero-sized `usr/etc/hostname` and `resolv.conf` dropped) and committed with the metadata
//!    keys `ostree.container.image-config`, `ostree.importer.version`, `ostree.manifest` (both
//!    documents as canonical JSON) and `ostree.manifest-digest`, with the config's `created`
//!    time as timestamp, no parent and empty subject and body. Then
//!    `ostree/container/image/<escaped IMGREF>` moves to it — the last write.
//! 3. IMGREF is `docker://` + the destination's image reference, or, for `ostree:[REPO]` with
//!    no image, the source's own name, as ostree-rs-ext records the image it pulled.
//!
//! 4. For a bit-exact export ([`super::source`]) each layer also gets an export-data commit
//!    (its tar-split and the bodies of filtered files) under `stowage/layer-data/<escaped
//!    digest>`, and the merge commit keeps the manifest and config bytes as served
//!    (`stowage.manifest`, `stowage.image-config`, `ay`).
//!
//! A copy killed at any point leaves only complete objects and refs to complete commits
//! ([`super::txn`]): blob refs of the layers that finished, no image ref; running it again
//! reuses those layers. Not yet: ostree-encapsulated images (`ostree.final-diffid`) and
//! SELinux relabeling from the merged tree's policy.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::gvariant::Value;
use super::import::{self, ImportOptions};
use super::merge;
use super::mtree::CommitSpec;
use super::object::{Checksum, ObjectType};
use super::repo::Repo;
use super::{canon_json, container, refescape};
use crate::copy::{
    CommitResult, FinalImage, ImagePlan, ImageSink, ImageWriter, LayerInput, StoredLayer,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::transport::ImageRef;

/// The value of `ostree.importer.version` stowage writes.
pub const IMPORTER_VERSION: &str = concat!("stowage ", env!("CARGO_PKG_VERSION"));

/// The ref of a layer blob: `ostree/container/blob/<escaped digest>`.
pub fn blob_ref(digest: &Digest) -> Result<String> {
    refescape::prefix_escape(container::LAYER_PREFIX, digest.as_ref())
}

/// Ref prefix of stowage's per-layer export data (tar-split and filtered file bodies), which
/// rebuilds a layer bit for bit. ostree and ostree-rs-ext ignore refs outside their prefixes.
pub const LAYER_DATA_PREFIX: &str = "stowage/layer-data";

/// The ref of a layer's export data: `stowage/layer-data/<escaped digest>`.
pub fn layer_data_ref(digest: &Digest) -> Result<String> {
    refescape::prefix_escape(LAYER_DATA_PREFIX, digest.as_ref())
}

/// Merge-commit metadata key holding the manifest exactly as the source served it (the
/// ostree-rs-ext keys hold canonical JSON, whose digest differs).
pub const META_MANIFEST_BYTES: &str = "stowage.manifest";
/// Merge-commit metadata key holding the config exactly as the source served it.
pub const META_CONFIG_BYTES: &str = "stowage.image-config";

/// The ref of an image: `ostree/container/image/<escaped imgref>`.
pub fn image_ref(imgref: &str) -> Result<String> {
    refescape::prefix_escape(container::IMAGE_PREFIX, imgref)
}

/// An ostree repository as a copy destination.
pub struct OstreeSink {
    repo: Repo,
    image: Option<Reference>,
    options: ImportOptions,
}

impl OstreeSink {
    /// Import into the repository at `path` (which must exist), as `image` (`None`: under the
    /// source's name).
    pub fn open(path: &Path, image: Option<Reference>, options: ImportOptions) -> Result<Self> {
        let repo = Repo::open(path).map_err(|e| match e {
            Error::NotFound { what, .. } => Error::NotFound {
                what,
                hint: format!(
                    "create the repository first, e.g. `ostree init --repo={} --mode=bare-user`",
                    path.display()
                ),
            },
            other => other,
        })?;
        Ok(OstreeSink {
            repo,
            image,
            options,
        })
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }
}

impl ImageSink for OstreeSink {
    fn name(&self) -> String {
        ImageRef::Ostree {
            repo: Some(PathBuf::from(self.repo.path())),
            image: self.image.clone(),
        }
        .to_string()
    }

    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>> {
        let imgref = match &self.image {
            Some(r) => format!("docker://{r}"),
            None => plan.source_name.clone(),
        };
        // Fail before any layer is fetched if the name cannot be a ref.
        let image_ref = image_ref(&imgref).map_err(|e| Error::InvalidTransport {
            input: imgref.clone(),
            reason: format!("cannot be recorded as an ostree ref: {e}"),
        })?;
        let blob_refs = plan
            .layers
            .iter()
            .map(|l| blob_ref(l.descriptor.digest()))
            .collect::<Result<Vec<_>>>()?;
        let data_refs = plan
            .layers
            .iter()
            .map(|l| layer_data_ref(l.descriptor.digest()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(OstreeWriter {
            sink: self,
            plan: plan.clone(),
            image_ref,
            blob_refs,
            data_refs,
            commits: Mutex::new(vec![None; plan.layers.len()]),
            written: Default::default(),
        }))
    }
}

struct OstreeWriter<'s> {
    sink: &'s OstreeSink,
    plan: ImagePlan,
    image_ref: String,
    blob_refs: Vec<String>,
    data_refs: Vec<String>,
    commits: Mutex<Vec<Option<Checksum>>>,
    /// Layers this writer imported and committed (kept if the copy stops).
    written: std::sync::atomic::AtomicUsize,
}

impl ImageWriter for OstreeWriter<'_> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        let repo = &self.sink.repo;
        let Some(commit) = repo.read_ref(&self.blob_refs[index])? else {
            return Ok(None);
        };
        // A layer imported by another tool has no export data: import it again, so the image
        // can be exported bit for bit.
        let Some(data) = repo.read_ref(&self.data_refs[index])? else {
            return Ok(None);
        };
        for c in [&commit, &data] {
            if !repo.has_object(c, ObjectType::Commit)? {
                return Ok(None);
            }
        }
        self.commits.lock().unwrap()[index] = Some(commit);
        Ok(Some(StoredLayer {
            descriptor: self.plan.layers[index].descriptor.clone(),
        }))
    }

    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        let index = input.index;
        let tar_layer = input.label.for_tar_errors();
        let repo = &self.sink.repo;
        let mut txn = repo.begin()?;
        let decoded = input
            .decode(|tar| import::import_layer(&mut txn, tar, &tar_layer, &self.sink.options))?;
        let spec = CommitSpec {
            metadata: vec![(
                "ostree.importer.version".to_string(),
                Value::str(IMPORTER_VERSION),
            )],
            ..CommitSpec::default()
        };
        let commit = txn.write_commit(&decoded.value.tree, &spec)?;
        let data_spec = CommitSpec {
            metadata: vec![
                (
                    "stowage.diff-id".to_string(),
                    Value::str(self.plan.layers[index].diff_id.to_string()),
                ),
                (
                    "stowage.layer-commit".to_string(),
                    Value::str(commit.to_hex()),
                ),
            ],
            ..CommitSpec::default()
        };
        let data = txn.write_commit(&decoded.value.export_data, &data_spec)?;
        txn.set_ref(&self.blob_refs[index], Some(commit))?;
        txn.set_ref(&self.data_refs[index], Some(data))?;
        txn.commit()?;
        self.commits.lock().unwrap()[index] = Some(commit);
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(StoredLayer {
            descriptor: self.plan.layers[index].descriptor.clone(),
        })
    }

    fn layers_kept(&self) -> usize {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult> {
        let repo = &self.sink.repo;
        let layers: Vec<Checksum> = self
            .commits
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|c| c.expect("every layer stored before commit"))
            .collect();
        let name = &self.plan.source_name;
        let manifest =
            canon_json::canonicalize(&image.manifest.bytes, &format!("manifest of {name}"))?;
        let config = canon_json::canonicalize(&image.config.bytes, &format!("config of {name}"))?;
        let timestamp = image
            .config
            .parsed
            .created()
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp().max(0) as u64)
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            });
        let mut txn = repo.begin()?;
        let mut tree = merge::merge_layers(repo, &mut txn, &layers)?;
        merge::cleanup_root(repo, &mut tree)?;
        let spec = CommitSpec {
            metadata: vec![
                (
                    "ostree.container.image-config".to_string(),
                    Value::str(config),
                ),
                (
                    "ostree.importer.version".to_string(),
                    Value::str(IMPORTER_VERSION),
                ),
                ("ostree.manifest".to_string(), Value::str(manifest)),
                (
                    "ostree.manifest-digest".to_string(),
                    Value::str(image.manifest.digest.to_string()),
                ),
                (
                    META_CONFIG_BYTES.to_string(),
                    Value::Bytes(image.config.bytes.clone()),
                ),
                (
                    META_MANIFEST_BYTES.to_string(),
                    Value::Bytes(image.manifest.bytes.clone()),
                ),
            ],
            timestamp,
            ..CommitSpec::default()
        };
        let commit = txn.write_commit(&tree, &spec)?;
        txn.set_ref(&self.image_ref, Some(commit))?;
        txn.commit()?;
        Ok(CommitResult {
            image_id: Some(commit.to_hex()),
        })
    }
}
