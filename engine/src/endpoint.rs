//! Opening a copy source or sink for a parsed transport name.
//!
//! This is the one place that knows every store: it maps an [`ImageRef`] to the store
//! module that implements it. Stores themselves never import each other.
//!
//! [`copy_between`], the entry point of every copy and pull, runs in this order:
//! 1. the signature policy is loaded ([`EndpointOptions::policy`]; a missing or invalid
//!    policy.json fails here) and the source is opened;
//! 2. the manifest is chosen and the policy checked against it (and the source's
//!    signatures), before the config, any layer or the destination is touched;
//! 3. the destination is opened; for a registry destination the source's sigstore signatures
//!    are read (unless `--remove-signatures`) and, like a signing key, need a destination
//!    that keeps signatures (checked now, before any layer moves);
//! 4. the image is copied, then the carried signatures and the new one
//!    (`--sign-by-sigstore-private-key`) are attached to the stored manifest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compression::Compression;
use crate::copy::{
    copy_planned, plan_image_checked, CopyOptions, CopyReport, ImagePlan, ImageSink, ImageSource,
};
use crate::copy_index::{copy_index, plan_source, SourcePlan};
use crate::cstorage::{StorageConfig, StorageSink, StorageSource, Store};
use crate::error::{Error, Result};
use crate::manifest::RawManifest;
use crate::oci_archive::{OciArchiveSink, OciArchiveSource};
use crate::oci_layout::{OciSink, OciSource};
use crate::ostree::import::ImportOptions;
use crate::ostree::{OstreeSink, OstreeSource};
use crate::policy::{ImageScopes, Policy, PolicySetting, PrivateKey};
use crate::progress::{Observed, Progress};
use crate::reference::Reference;
use crate::registry::{RegistryOptions, RegistrySink, RegistrySource};
use crate::transport::{ImageRef, StorageImage, StoreSpec};

/// Settings that apply to every endpoint.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// Layer compression for destinations that store compressed blobs (`None`: keep what the
    /// source has; gzip when the source only has uncompressed diffs).
    pub dest_compression: Option<Compression>,
    /// Graph root used for `containers-storage:NAME` without an explicit
    /// `[driver@root+runroot]` (`--storage-root`); `None`: storage.conf's, as podman
    /// ([`StorageConfig`]).
    pub storage_root: Option<PathBuf>,
    /// Run root used likewise (`--runroot`); `None`: storage.conf's.
    pub storage_runroot: Option<PathBuf>,
    /// Registry settings for a `docker://` source.
    pub src_registry: RegistryOptions,
    /// Registry settings for a `docker://` destination.
    pub dest_registry: RegistryOptions,
    /// How an `ostree:` destination imports layers.
    pub ostree_import: ImportOptions,
    /// Further names for the copied image in the destination (`--additional-tag`): tags in
    /// an OCI layout's `index.json` or a registry repository, names in containers-storage
    /// (short names completed as the destination's are).
    pub additional_tags: Vec<String>,
    /// The signature policy every copy is checked against (default: policy.json from the
    /// usual places; missing is an error).
    pub policy: PolicySetting,
    /// Sign the copied image with this sigstore key (`--sign-by-sigstore-private-key`).
    pub sign_by_sigstore: Option<Arc<PrivateKey>>,
    /// The identity the signature names (`--sign-identity`); default: the destination's
    /// docker reference.
    pub sign_identity: Option<Reference>,
    /// Do not carry the source's sigstore signatures to a registry destination
    /// (`--remove-signatures`).
    pub remove_signatures: bool,
}

impl EndpointOptions {
    /// The default containers-storage: storage.conf and the rootless defaults as podman
    /// resolves them for this user ([`StorageConfig::from_env`]), with `--storage-root` and
    /// `--runroot` applied.
    pub fn default_store(&self) -> Result<StorageConfig> {
        Ok(StorageConfig::from_env()?.with_overrides(
            self.storage_root.as_deref(),
            self.storage_runroot.as_deref(),
        ))
    }
}

/// The store a `containers-storage:` name refers to: its own `[driver@root+runroot]`, or the
/// default store.
fn storage(spec: &Option<StoreSpec>, options: &EndpointOptions, write: bool) -> Result<Store> {
    match spec {
        Some(s) if !write => Store::open_read_only(&s.graph_root, s.driver.as_deref()),
        Some(s) => {
            let runroot = match &s.run_root {
                Some(r) => r.clone(),
                None => options.default_store()?.run_root,
            };
            Store::open(&s.graph_root, Some(&runroot), s.driver.as_deref())
        }
        None if write => options.default_store()?.open(),
        None => options.default_store()?.open_read_only(),
    }
}

/// Open `image` in the default store for reading; when it is not there, in the additional
/// image stores of storage.conf (read only), in order, as containers/storage looks them up.
fn default_storage_source(
    image: &StorageImage,
    options: &EndpointOptions,
) -> Result<StorageSource> {
    let config = options.default_store()?;
    let first = StorageSource::open(config.open_read_only()?, image);
    match first {
        Err(Error::NotFound { .. }) if !config.additional_image_stores.is_empty() => {
            for store in config.open_additional()? {
                if let Ok(source) = StorageSource::open(store, image) {
                    return Ok(source);
                }
            }
            first
        }
        other => other,
    }
}

/// Open `r` for reading.
pub fn open_source(r: &ImageRef, options: &EndpointOptions) -> Result<Box<dyn ImageSource>> {
    match r {
        ImageRef::Docker(reference) => Ok(Box::new(RegistrySource::open(
            reference,
            &options.src_registry,
        )?)),
        ImageRef::Oci { path, tag } => Ok(Box::new(OciSource::open(path, tag.as_deref())?)),
        ImageRef::OciArchive { path, tag } => {
            Ok(Box::new(OciArchiveSource::open(path, tag.as_deref())?))
        }
        ImageRef::ContainersStorage { store: None, image } => {
            Ok(Box::new(default_storage_source(image, options)?))
        }
        ImageRef::ContainersStorage { store, image } => Ok(Box::new(StorageSource::open(
            storage(store, options, false)?,
            image,
        )?)),
        ImageRef::Ostree {
            repo,
            image: Some(image),
        } => Ok(Box::new(OstreeSource::open(
            repo.as_deref()
                .unwrap_or(Path::new(crate::transport::DEFAULT_OSTREE_REPO)),
            image,
        )?)),
        ImageRef::Ostree { image: None, .. } => Err(Error::InvalidTransport {
            input: r.to_string(),
            reason: "name the image to read from the repository: ostree:[REPO]IMAGE (stowage image list --type host lists them)".into(),
        }),
    }
}

/// A tag as a registry or OCI layout allows it (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`), or the
/// error naming it.
fn check_tag(tag: &str, destination: &ImageRef) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTransport {
            input: tag.to_string(),
            reason: format!(
                "--additional-tag for {destination} must be a tag (letters, digits, '_', '.', '-'; at most 128, not starting with '.' or '-')"
            ),
        })
    }
}

/// Open `r` for writing.
pub fn open_sink(r: &ImageRef, options: &EndpointOptions) -> Result<Box<dyn ImageSink>> {
    let extra = &options.additional_tags;
    let tags = || -> Result<Vec<String>> {
        for t in extra {
            check_tag(t, r)?;
        }
        Ok(extra.clone())
    };
    match r {
        ImageRef::Docker(reference) => Ok(Box::new(
            RegistrySink::open(reference, &options.dest_registry, options.dest_compression)?
                .with_additional_tags(tags()?),
        )),
        ImageRef::Oci { path, tag } => {
            let tags = tags()?;
            Ok(Box::new(
                OciSink::create(path, tag.as_deref(), options.dest_compression)?
                    .with_additional_tags(tags),
            ))
        }
        _ if !extra.is_empty() && !matches!(r, ImageRef::ContainersStorage { .. }) => {
            Err(Error::Unsupported {
                transport: r.to_string(),
                reason: format!(
                    "--additional-tag is not supported for the {} transport; it adds tags in oci:, docker:// and containers-storage: destinations",
                    r.transport_name()
                ),
            })
        }
        ImageRef::OciArchive { path, tag } => Ok(Box::new(OciArchiveSink::create(
            path,
            tag.as_deref(),
            options.dest_compression,
        )?)),
        ImageRef::ContainersStorage { store, image } => {
            let name = match image {
                StorageImage::Named(n) | StorageImage::NamedWithId(n, _) => Some(n.to_string()),
                StorageImage::NameOrIdPrefix { name, .. } => Some(name.to_string()),
                StorageImage::IdPrefix { name, .. } => name.as_ref().map(|n| n.to_string()),
                StorageImage::Id(_) => None,
            };
            let names = extra
                .iter()
                .map(|t| {
                    crate::reference::Reference::parse_with_default_tag(t)
                        .map(|n| n.to_string())
                        .map_err(|e| Error::InvalidTransport {
                            input: t.clone(),
                            reason: format!("--additional-tag for {r}: {e}"),
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(
                StorageSink::new(storage(store, options, true)?, name)
                    .with_additional_names(names),
            ))
        }
        ImageRef::Ostree { repo, image } => Ok(Box::new(OstreeSink::open(
            repo.as_deref()
                .unwrap_or(Path::new(crate::transport::DEFAULT_OSTREE_REPO)),
            image.clone(),
            options.ostree_import.clone(),
        )?)),
    }
}

/// The directory a copy into `r` would create: the topmost missing ancestor of an OCI
/// layout or a containers-storage graph root (and run root), or nothing when the destination
/// exists already (an ostree repository must exist; an OCI archive is only written at commit).
fn would_create(r: &ImageRef, options: &EndpointOptions) -> Vec<PathBuf> {
    let topmost_missing = |p: &Path| -> Option<PathBuf> {
        let p = std::path::absolute(p).ok()?;
        let mut created = None;
        for a in p.ancestors() {
            if std::fs::symlink_metadata(a).is_ok() {
                break;
            }
            created = Some(a.to_path_buf());
        }
        created
    };
    match r {
        ImageRef::Oci { path, .. } => topmost_missing(path).into_iter().collect(),
        ImageRef::ContainersStorage { store, .. } => {
            let Ok(default) = options.default_store() else {
                return Vec::new();
            };
            let (root, runroot) = match store {
                Some(s) => (
                    s.graph_root.clone(),
                    s.run_root.clone().unwrap_or(default.run_root),
                ),
                None => (default.graph_root, default.run_root),
            };
            [root, runroot]
                .iter()
                .filter_map(|p| topmost_missing(p))
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Open `src` and `dst` and copy one image — or, with [`CopyOptions::multi_arch`], a whole
/// index ([`crate::copy_index`]) — from the one to the other, telling `progress` (when given)
/// what happens: `stowage copy SRC DST`.
///
/// 1. The signature policy is loaded and the source opened; its manifest(s) and config(s)
///    are resolved and the policy checked ([`check_policy`]) first, so a missing image or
///    tag, or one the policy refuses, fails before the destination is touched.
/// 2. The destination is opened (an OCI layout or a containers-storage store is created
///    when missing) and the layers copied ([`copy_planned`]); `copy.cancel` also stops the
///    registry clients of both sides.
/// 3. For a registry destination the source's sigstore signatures go along (unless
///    `--remove-signatures`), and `--sign-by-sigstore-private-key` adds one; both need a
///    destination that keeps signatures, checked before any layer moves.
/// 4. When the copy fails or is cancelled and the destination did not exist before, what the
///    copy created is removed again: a failed copy leaves no new, empty destination behind.
pub fn copy_between(
    src: &ImageRef,
    dst: &ImageRef,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<CopyReport> {
    let start = std::time::Instant::now();
    let mut options = options.clone();
    options.src_registry.cancel = copy.cancel.clone();
    options.dest_registry.cancel = copy.cancel.clone();
    let options = &options;
    let policy = options.policy.load()?;
    let source = open_source(src, options)?;
    let observed;
    let source: &dyn ImageSource = match progress {
        Some(p) => {
            observed = Observed::source(source.as_ref(), p.clone());
            &observed
        }
        None => source.as_ref(),
    };
    copy.cancel.check(|| format!("copying {src} to {dst}"))?;
    let plan = plan_source(source, copy)?;
    check_policy(src, source, policy.as_deref(), options, &plan)?;
    if options.sign_by_sigstore.is_some() {
        if !matches!(dst, ImageRef::Docker(_)) {
            return Err(Error::Unsupported {
                transport: dst.to_string(),
                reason: "this destination cannot store sigstore signatures; sign images pushed to a registry (docker://) instead".into(),
            });
        }
        if matches!(plan, SourcePlan::Index(_)) {
            return Err(Error::Unsupported {
                transport: dst.to_string(),
                reason:
                    "signing a whole index (--all) is not supported yet; copy and sign one platform"
                        .into(),
            });
        }
    }
    let created = would_create(dst, options);
    let result = open_sink(dst, options).and_then(|sink| {
        let observed_sink;
        let sink: &dyn ImageSink = match progress {
            Some(p) => {
                observed_sink = Observed::sink(sink.as_ref(), p.clone());
                &observed_sink
            }
            None => sink.as_ref(),
        };
        match &plan {
            SourcePlan::Image(plan) => {
                copy_signed(src, dst, source, plan, sink, options, copy, start)
            }
            SourcePlan::Index(plan) => copy_index(source, plan, sink, copy, start),
        }
    });
    match result {
        Err(mut e) if !created.is_empty() => {
            for dir in &created {
                let _ = std::fs::remove_dir_all(dir);
            }
            if let Error::Cancelled { kept, .. } = &mut e {
                *kept = format!(
                    "the destination did not exist before and was removed ({})",
                    created
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Err(e)
        }
        other => other,
    }
}

/// The default graph root, for the policy's `containers-storage` scopes.
fn default_graph_root(options: &EndpointOptions) -> PathBuf {
    options
        .default_store()
        .map(|c| c.graph_root)
        .unwrap_or_else(|_| PathBuf::from("/var/lib/containers/storage"))
}

/// Check what `plan` will store against `policy` (`None`: `--insecure-policy`): the chosen
/// manifest of a single-image copy, the index itself for a whole-index copy (what
/// containers/image evaluates for `--all`).
pub fn check_policy(
    src: &ImageRef,
    source: &dyn ImageSource,
    policy: Option<&Policy>,
    options: &EndpointOptions,
    plan: &SourcePlan,
) -> Result<()> {
    let Some(policy) = policy else {
        return Ok(());
    };
    let scopes = ImageScopes::of(src, &default_graph_root(options));
    let manifest = match plan {
        SourcePlan::Image(p) => &p.manifest,
        SourcePlan::Index(p) => &p.index,
    };
    policy.check(&scopes, manifest, &mut || {
        source.sigstore_signatures(&manifest.digest)
    })
}

/// One image into `sink`, carrying the source's sigstore signatures to a registry and adding
/// `--sign-by-sigstore-private-key`'s (steps 3 of [`copy_between`]).
#[allow(clippy::too_many_arguments)]
fn copy_signed(
    src: &ImageRef,
    dst: &ImageRef,
    source: &dyn ImageSource,
    plan: &ImagePlan,
    sink: &dyn ImageSink,
    options: &EndpointOptions,
    copy: &CopyOptions,
    start: std::time::Instant,
) -> Result<CopyReport> {
    let _ = src;
    // The source's signatures go along to a registry, as skopeo copies them; other
    // destinations cannot keep them and they are left behind.
    let carried = match dst {
        ImageRef::Docker(_) if !options.remove_signatures => {
            source.sigstore_signatures(&plan.manifest.digest)?
        }
        _ => Vec::new(),
    };
    if !carried.is_empty() {
        let keep_hint = |e: Error| Error::Unsupported {
            transport: dst.to_string(),
            reason: format!(
                "the source has {} sigstore signature(s) to copy: {e}; or pass --remove-signatures",
                carried.len()
            ),
        };
        sink.can_store_sigstore_signatures().map_err(keep_hint)?;
        if options.dest_compression.is_some() {
            return Err(keep_hint(Error::Unsupported {
                transport: dst.to_string(),
                reason: "recompressing layers changes the manifest and would invalidate them"
                    .into(),
            }));
        }
    }
    let identity =
        match &options.sign_by_sigstore {
            Some(_) => {
                sink.can_store_sigstore_signatures()?;
                Some(match (&options.sign_identity, sink.docker_reference()) {
                    (Some(i), _) => i.to_string(),
                    (None, Some(r)) => r.to_string(),
                    (None, None) => return Err(Error::Unsupported {
                        transport: dst.to_string(),
                        reason:
                            "cannot determine the docker reference to sign; pass --sign-identity"
                                .into(),
                    }),
                })
            }
            None => None,
        };
    let report = copy_planned(source, plan, sink, copy, start)?;
    let mut signatures = Vec::new();
    if !carried.is_empty() {
        if report.manifest_digest != plan.manifest.digest {
            return Err(Error::Conflict {
                what: dst.to_string(),
                reason: format!(
                    "the manifest changed in the copy ({} → {}), which invalidates the source's signatures; pass --remove-signatures",
                    plan.manifest.digest, report.manifest_digest
                ),
            });
        }
        signatures = carried;
    }
    if let (Some(key), Some(identity)) = (&options.sign_by_sigstore, identity) {
        signatures.push(key.sign_manifest(&report.manifest_digest, &identity)?);
    }
    if !signatures.is_empty() {
        sink.put_sigstore_signatures(&report.manifest_digest, &signatures)?;
    }
    Ok(report)
}

/// Plan the copy of `src` (opened as `source`), checking the chosen manifest against
/// `policy` (`None`: `--insecure-policy`) before the config is read.
pub fn checked_plan(
    src: &ImageRef,
    source: &dyn ImageSource,
    policy: Option<&Policy>,
    options: &EndpointOptions,
    copy: &CopyOptions,
) -> Result<ImagePlan> {
    let scopes = ImageScopes::of(src, &default_graph_root(options));
    let check = |m: &RawManifest| -> Result<()> {
        match policy {
            None => Ok(()),
            Some(p) => p.check(&scopes, m, &mut || source.sigstore_signatures(&m.digest)),
        }
    };
    plan_image_checked(source, &copy.platform, Some(&check))
}

/// What [`delete`] removed.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// A registry manifest (and with it every tag that pointed at it).
    Registry(crate::digest::Digest),
    /// An ostree container-store image: its ref, the layer refs only it used, and the objects
    /// nothing references any more.
    Ostree(crate::ostree::container::DeleteReport),
    /// A containers-storage image (and the layers only it used).
    Storage(crate::cstorage::catalog::RemoveReport),
}

/// `stowage delete IMAGE` (skopeo delete): remove `r` from its store.
pub fn delete(r: &ImageRef, options: &EndpointOptions) -> Result<Deleted> {
    match r {
        ImageRef::Docker(reference) => Ok(Deleted::Registry(
            crate::registry::manage::delete_image(reference, &options.dest_registry)?,
        )),
        ImageRef::Ostree {
            repo,
            image: Some(image),
        } => {
            let path = repo
                .as_deref()
                .unwrap_or(Path::new(crate::transport::DEFAULT_OSTREE_REPO));
            let repo = crate::ostree::Repo::open(path)?;
            Ok(Deleted::Ostree(crate::ostree::container::delete_image(
                &repo, image,
            )?))
        }
        ImageRef::ContainersStorage { store, image } => {
            let store = storage(store, options, true)?;
            let record = store.resolve(image)?;
            Ok(Deleted::Storage(crate::cstorage::catalog::remove_image(
                &store, &record.id, true,
            )?))
        }
        other => Err(Error::Unsupported {
            transport: other.to_string(),
            reason: format!(
                "deleting from the {} transport is not supported; stowage deletes from docker://, ostree: and containers-storage:",
                other.transport_name()
            ),
        }),
    }
}
