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
//! 5. An ostree-encapsulated image ([`encapsulated`]: config label `ostree.final-diffid`)
//!    imports differently: layer 0 carries the image's own ostree commit, whose objects go in
//!    as they are (checked against their names) and whose checksum the blob ref names (marked
//!    partial until the image is complete); the object-set layers become ostree-rs-ext's flat
//!    object-set commits; derived layers wait for the commit layer (its `prepare-root.conf`
//!    decides whether toplevels besides `/usr` are kept) and import as in step 1. The merge
//!    starts from the base commit's tree, applies the derived layers, and has the base as its
//!    parent. The merged root equals ostree-rs-ext's (`tests/ostree_encapsulated.rs`).
//!
//! A copy killed at any point leaves only complete objects and refs to complete commits
//! ([`super::txn`]): blob refs of the layers that finished, no image ref; running it again
//! reuses those layers.
//!
//! 6. SELinux ([`selinux`]): when the merged tree carries a policy (`usr/etc/selinux/config`),
//!    every file and directory of the merge commit is labelled from it, as ostree-rs-ext
//!    relabels the merged root; the derived layers of an encapsulated image are labelled
//!    with the base's policy, as its `ostree commit --selinux-policy` does. Without a policy
//!    nothing is labelled.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::encapsulated::{self, LayerRole, META_LAYER_KIND};
use super::gvariant::Value;
use super::import::{self, ImportOptions};
use super::merge;
use super::mtree::CommitSpec;
use super::object::{Checksum, ObjectType};
use super::repo::Repo;
use super::selinux::{self, SePolicy};
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
            Error::StoreMissing { what, .. } => Error::StoreMissing {
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
    fn location(&self) -> Option<PathBuf> {
        Some(self.repo.path().to_path_buf())
    }
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
        let roles = encapsulated::layer_roles(plan)?;
        Ok(Box::new(OstreeWriter {
            sink: self,
            plan: plan.clone(),
            image_ref,
            blob_refs,
            data_refs,
            commits: Mutex::new(vec![None; plan.layers.len()]),
            trees: Mutex::new(vec![None; plan.layers.len()]),
            encapsulated: roles.first() == Some(&LayerRole::Commit),
            ostree_pending: Mutex::new(roles.iter().filter(|r| **r != LayerRole::Derived).count()),
            roles,
            base: Mutex::new(BaseState::Pending),
            base_changed: Condvar::new(),
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
    /// The trees of the plain layers this copy wrote, as committed: the merge takes them from
    /// here instead of reading every dirtree back ([`merge::Layer::InMemory`]).
    trees: Mutex<Vec<Option<super::mtree::MutableTree>>>,
    /// What each layer is ([`encapsulated::layer_roles`]).
    roles: Vec<LayerRole>,
    /// Whether layer 0 is an ostree commit layer.
    encapsulated: bool,
    /// The commit layer's outcome, which derived layers of an encapsulated image wait for
    /// (whether the base root is transient decides which toplevels they keep).
    base: Mutex<BaseState>,
    base_changed: Condvar,
    /// ostree layers (commit and object sets) not stored yet: the base is ready when none is
    /// left (its files, `prepare-root.conf` and the SELinux policy, can be in any of them).
    ostree_pending: Mutex<usize>,
    /// Layers this writer imported and committed (kept if the copy stops).
    written: std::sync::atomic::AtomicUsize,
}

/// Where the commit layer of an encapsulated image is.
#[derive(Debug, Clone)]
enum BaseState {
    Pending,
    Ready {
        transient: bool,
        policy: Option<std::sync::Arc<SePolicy>>,
    },
    Failed(String),
}

/// Export-data metadata key set on derived layers imported with [`ImportOptions::usr_only`].
pub const META_USR_ONLY: &str = "stowage.usr-only";
/// Export-data metadata key set on derived layers imported with
/// [`import::VarHandling::FactoryVar`].
pub const META_FACTORY_VAR: &str = "stowage.factory-var";

/// The export-data metadata recording how a derived layer was mapped (absent keys: the
/// defaults), which the export needs to find each file again.
fn mapping_meta(options: &ImportOptions) -> Vec<(String, Value)> {
    let mut meta = Vec::new();
    if options.usr_only {
        meta.push((META_USR_ONLY.to_string(), Value::str("true")));
    }
    if options.var == import::VarHandling::FactoryVar {
        meta.push((META_FACTORY_VAR.to_string(), Value::str("true")));
    }
    meta
}

/// The mapping options recorded by [`mapping_meta`] in the export-data commit `data`.
pub fn recorded_mapping(data: &super::object::Commit) -> ImportOptions {
    ImportOptions {
        usr_only: data.meta(META_USR_ONLY).is_some(),
        var: if data.meta(META_FACTORY_VAR).is_some() {
            import::VarHandling::FactoryVar
        } else {
            import::VarHandling::Keep
        },
        ..ImportOptions::default()
    }
}

impl OstreeWriter<'_> {
    /// Import one layer (see [`ImageWriter::put_layer`]): a transaction per layer, committed
    /// with its layer ref.
    fn import_layer(&self, mut input: LayerInput<'_>) -> Result<StoredLayer> {
        let index = input.index;
        let role = self.roles[index];
        let tar_layer = input.label.for_tar_errors();
        let repo = &self.sink.repo;
        let mut kind_meta = Vec::new();
        if let Some(kind) = role.kind_name() {
            kind_meta.push((META_LAYER_KIND.to_string(), Value::str(kind)));
        }
        match role {
            LayerRole::Commit | LayerRole::ObjectSet => {
                let mut txn = repo.begin()?;
                let decoded = input.decode(|tar| {
                    encapsulated::import_object_layer(&mut txn, tar, &tar_layer, role)
                })?;
                let imported = decoded.value;
                if let Some(commit) = imported.commit {
                    self.finish_layer(
                        txn,
                        index,
                        LayerCommit::Existing(commit),
                        &imported.export_data,
                        kind_meta,
                    )?;
                } else {
                    let default_meta = txn.default_dirmeta()?;
                    let tree = encapsulated::object_set_tree(&imported.objects, default_meta)?;
                    self.finish_layer(
                        txn,
                        index,
                        LayerCommit::Write(&tree, CommitSpec::default()),
                        &imported.export_data,
                        kind_meta,
                    )?;
                }
                self.ostree_layer_done()?;
            }
            LayerRole::Derived => {
                let options = self.derived_options(index)?;
                kind_meta.extend(mapping_meta(&options));
                let mut txn = repo.begin()?;
                let sharing = input.take_sharing();
                let mut decoded = input.decode(|tar| {
                    import::import_layer_sharing(
                        &mut txn,
                        tar,
                        &tar_layer,
                        &options,
                        sharing.as_ref(),
                    )
                })?;
                // Labelled with the base's policy, as ostree-rs-ext commits derived layers
                // (`ostree commit --selinux-policy`).
                if let Some(policy) = self.base_policy() {
                    selinux::relabel_tree(&mut txn, &mut decoded.value.tree, &policy)?;
                }
                let spec = CommitSpec {
                    metadata: vec![(
                        "ostree.importer.version".to_string(),
                        Value::str(IMPORTER_VERSION),
                    )],
                    ..CommitSpec::default()
                };
                self.finish_layer(
                    txn,
                    index,
                    LayerCommit::Write(&decoded.value.tree, spec),
                    &decoded.value.export_data,
                    kind_meta,
                )?;
                if !self.encapsulated {
                    self.trees.lock().unwrap()[index] = Some(decoded.value.tree);
                }
            }
        }
        Ok(StoredLayer {
            descriptor: self.plan.layers[index].descriptor.clone(),
        })
    }

    fn set_base(&self, state: BaseState) {
        *self.base.lock().unwrap() = state;
        self.base_changed.notify_all();
    }

    /// One more ostree layer is stored; after the last, the base commit is complete and what
    /// the derived layers need from it is read.
    fn ostree_layer_done(&self) -> Result<()> {
        let left = {
            let mut n = self.ostree_pending.lock().unwrap();
            *n -= 1;
            *n
        };
        if left > 0 {
            return Ok(());
        }
        let base = self.commits.lock().unwrap()[0].expect("the commit layer is stored");
        let repo = &self.sink.repo;
        let ready = (|| -> Result<BaseState> {
            encapsulated::check_complete(repo, &base, &self.plan.source_name)?;
            let c = repo.read_commit(&base)?;
            let tree = repo.read_mtree(&c.root_tree, &c.root_meta)?;
            Ok(BaseState::Ready {
                transient: encapsulated::root_is_transient(repo, &base)?,
                policy: SePolicy::from_tree(repo, &tree)?.map(std::sync::Arc::new),
            })
        })();
        match ready {
            Ok(state) => {
                self.set_base(state);
                Ok(())
            }
            Err(e) => {
                self.set_base(BaseState::Failed(e.to_string()));
                Err(e)
            }
        }
    }

    /// The base's SELinux policy, for derived layers of an encapsulated image (waiting for
    /// the base like [`Self::derived_options`]).
    fn base_policy(&self) -> Option<std::sync::Arc<SePolicy>> {
        match &*self.base.lock().unwrap() {
            BaseState::Ready { policy, .. } => policy.clone(),
            _ => None,
        }
    }

    /// The import options of derived layer `index`: those of the sink, and for an
    /// encapsulated image, once its commit layer is in, `usr_only` unless its root is
    /// transient.
    fn derived_options(&self, index: usize) -> Result<ImportOptions> {
        let mut options = self.sink.options.clone();
        if !self.encapsulated {
            return Ok(options);
        }
        let mut state = self.base.lock().unwrap();
        loop {
            match &*state {
                BaseState::Pending => state = self.base_changed.wait(state).unwrap(),
                BaseState::Ready { transient, .. } => {
                    options.usr_only = !transient;
                    return Ok(options);
                }
                BaseState::Failed(cause) => {
                    return Err(Error::Conflict {
                        what: crate::copy::LayerLabel {
                            index,
                            digest: self.plan.layers[index].descriptor.digest().clone(),
                            image: self.plan.source_name.clone(),
                        }
                        .to_string(),
                        reason: format!(
                            "not imported because the image's ostree commit layer failed: {cause}"
                        ),
                    })
                }
            }
        }
    }

    /// Write `tree` as the layer commit of `index` and `export_data` as its export-data
    /// commit, point both refs at them and commit `txn`; returns the layer commit.
    fn finish_layer(
        &self,
        mut txn: super::txn::Transaction<'_>,
        index: usize,
        layer_commit: LayerCommit<'_>,
        export_data: &super::mtree::MutableTree,
        extra_meta: Vec<(String, Value)>,
    ) -> Result<Checksum> {
        let started = std::time::Instant::now();
        let commit = match layer_commit {
            LayerCommit::Write(tree, spec) => txn.write_commit(tree, &spec)?,
            LayerCommit::Existing(c) => c,
        };
        let mut metadata = vec![
            (
                "stowage.diff-id".to_string(),
                Value::str(self.plan.layers[index].diff_id.to_string()),
            ),
            (
                "stowage.layer-commit".to_string(),
                Value::str(commit.to_hex()),
            ),
        ];
        metadata.extend(extra_meta);
        let data_spec = CommitSpec {
            metadata,
            ..CommitSpec::default()
        };
        let data = txn.write_commit(export_data, &data_spec)?;
        txn.set_ref(&self.blob_refs[index], Some(commit))?;
        txn.set_ref(&self.data_refs[index], Some(data))?;
        let trees = started.elapsed();
        txn.commit()?;
        log::debug!(
            "layer {index}: commit {commit}: trees written in {:.1} ms, transaction committed in {:.1} ms",
            trees.as_secs_f64() * 1e3,
            (started.elapsed() - trees).as_secs_f64() * 1e3
        );
        self.commits.lock().unwrap()[index] = Some(commit);
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(commit)
    }
}

/// The layer commit [`OstreeWriter::finish_layer`] records.
enum LayerCommit<'t> {
    /// Write this tree as a commit.
    Write(&'t super::mtree::MutableTree, CommitSpec),
    /// A commit the layer carried (an encapsulated image's own commit).
    Existing(Checksum),
}

impl ImageWriter for OstreeWriter<'_> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        let repo = &self.sink.repo;
        let role = self.roles[index];
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
        let data_commit = repo.read_commit(&data)?;
        if LayerRole::from_kind_name(data_commit.meta_str(META_LAYER_KIND)) != Some(role) {
            return Ok(None);
        }
        match role {
            LayerRole::Commit | LayerRole::ObjectSet => {
                self.commits.lock().unwrap()[index] = Some(commit);
                self.ostree_layer_done()?;
            }
            LayerRole::Derived => {
                // Imported with other path rules (another --ostree-var, or a base whose root
                // differs): import it again with these.
                let wanted = self.derived_options(index)?;
                let recorded = recorded_mapping(&data_commit);
                if (wanted.usr_only, wanted.var) != (recorded.usr_only, recorded.var) {
                    return Ok(None);
                }
            }
        }
        self.commits.lock().unwrap()[index] = Some(commit);
        Ok(Some(StoredLayer {
            descriptor: self.plan.layers[index].descriptor.clone(),
        }))
    }

    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        let label = input.label.clone();
        self.import_layer(input).map_err(|e| match e {
            // Writing the repository failed (a full filesystem, a permission): say which
            // layer, unless the tar walker already did.
            Error::Io { context, source } if !context.starts_with("layer ") => Error::Io {
                context: format!("importing {label}: {context}"),
                source,
            },
            other => other,
        })
    }

    fn layer_failed(&self, index: usize, error: &Error) {
        if self.roles[index] != LayerRole::Derived {
            self.set_base(BaseState::Failed(error.to_string()));
        }
    }

    fn layers_kept(&self) -> usize {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A plain image's layers are independent commits; an encapsulated image's derived layers
    /// wait for its commit layer (layer 0), so those go bottom first.
    fn layers_in_any_order(&self) -> bool {
        !self.encapsulated
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
        let started = std::time::Instant::now();
        let mut txn = repo.begin()?;
        let (parent, mut tree) = if self.encapsulated {
            // The image's own commit, complete now that every layer is in, is the base; the
            // derived layers go on top of it, and it becomes the merge commit's parent.
            let base = layers[0];
            encapsulated::check_complete(repo, &base, name)?;
            repo.set_commit_partial(&base, false)?;
            let c = repo.read_commit(&base)?;
            let derived: Vec<Checksum> = layers
                .iter()
                .zip(&self.roles)
                .filter(|(_, r)| **r == LayerRole::Derived)
                .map(|(c, _)| *c)
                .collect();
            let base_tree = repo.read_mtree(&c.root_tree, &c.root_meta)?;
            (
                Some(base),
                merge::merge_onto(repo, &mut txn, base_tree, &derived)?,
            )
        } else {
            let trees = self.trees.into_inner().unwrap();
            let merge_input: Vec<merge::Layer<'_>> = layers
                .iter()
                .zip(&trees)
                .map(|(c, t)| {
                    t.as_ref()
                        .map_or(merge::Layer::Stored(*c), merge::Layer::InMemory)
                })
                .collect();
            (None, merge::merge_trees(repo, &mut txn, &merge_input)?)
        };
        let merged = started.elapsed();
        merge::cleanup_root(repo, &mut tree)?;
        // Every file labelled from the merged tree's own policy, as ostree-rs-ext relabels
        // the merge commit (nothing without a policy).
        if let Some(policy) = SePolicy::from_tree(repo, &tree)? {
            selinux::relabel_tree(&mut txn, &mut tree, &policy)?;
        }
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
            parent,
            ..CommitSpec::default()
        };
        let commit = txn.write_commit(&tree, &spec)?;
        txn.set_ref(&self.image_ref, Some(commit))?;
        txn.commit()?;
        log::debug!(
            "image commit {commit}: {} layer(s) merged in {:.1} ms, committed in {:.1} ms more",
            layers.len(),
            merged.as_secs_f64() * 1e3,
            (started.elapsed() - merged).as_secs_f64() * 1e3
        );
        Ok(CommitResult {
            image_id: Some(commit.to_hex()),
        })
    }
}
