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
use crate::cstorage::{StorageSink, StorageSource, Store};
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
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointOptions {
    /// Layer compression for destinations that store compressed blobs (`None`: keep what the
    /// source has; gzip when the source only has uncompressed diffs).
    pub dest_compression: Option<Compression>,
    /// Graph root used for `containers-storage:NAME` without an explicit `[driver@root+runroot]`.
    pub storage_root: PathBuf,
    /// Run root used likewise.
    pub storage_runroot: PathBuf,
    /// Registry settings for a `docker://` source.
    pub src_registry: RegistryOptions,
    /// Registry settings for a `docker://` destination.
    pub dest_registry: RegistryOptions,
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

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            dest_compression: None,
            storage_root: PathBuf::from("/var/lib/containers/storage"),
            storage_runroot: PathBuf::from("/run/containers/storage"),
            src_registry: RegistryOptions::default(),
            dest_registry: RegistryOptions::default(),
            policy: PolicySetting::default(),
            sign_by_sigstore: None,
            sign_identity: None,
            remove_signatures: false,
        }
    }
}

/// The store a `containers-storage:` name refers to: its own `[driver@root+runroot]`, or the
/// default from the options.
fn storage(spec: &Option<StoreSpec>, options: &EndpointOptions, write: bool) -> Result<Store> {
    let (root, runroot, driver) = match spec {
        Some(s) => (
            s.graph_root.clone(),
            s.run_root
                .clone()
                .unwrap_or_else(|| options.storage_runroot.clone()),
            s.driver.clone(),
        ),
        None => (
            options.storage_root.clone(),
            options.storage_runroot.clone(),
            None,
        ),
    };
    if write {
        Store::open(&root, Some(&runroot), driver.as_deref())
    } else {
        Store::open_read_only(&root, driver.as_deref())
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
            ImportOptions::default(),
        )?)),
        ImageRef::Ostree { image: None, .. } => Err(Error::InvalidTransport {
            input: r.to_string(),
            reason: "name the image to read from the repository: ostree:[REPO]IMAGE (stowage image list --type host lists them)".into(),
        }),
    }
}

/// Open `r` for writing.
pub fn open_sink(r: &ImageRef, options: &EndpointOptions) -> Result<Box<dyn ImageSink>> {
    match r {
        ImageRef::Docker(reference) => Ok(Box::new(RegistrySink::open(
            reference,
            &options.dest_registry,
            options.dest_compression,
        )?)),
        ImageRef::Oci { path, tag } => Ok(Box::new(OciSink::create(
            path,
            tag.as_deref(),
            options.dest_compression,
        )?)),
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
            Ok(Box::new(StorageSink::new(
                storage(store, options, true)?,
                name,
            )))
        }
        ImageRef::Ostree { repo, image } => Ok(Box::new(OstreeSink::open(
            repo.as_deref()
                .unwrap_or(Path::new(crate::transport::DEFAULT_OSTREE_REPO)),
            image.clone(),
            ImportOptions::default(),
        )?)),
    }
}

/// Open `src` and `dst` and copy one image from the one to the other, telling `progress`
/// (when given) what happens: `stowage copy SRC DST`. The signature policy is enforced first
/// (see the module docs); a refused image leaves `dst` as it was.
pub fn copy_between(
    src: &ImageRef,
    dst: &ImageRef,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<CopyReport> {
    let start = std::time::Instant::now();
    let policy = options.policy.load()?;
    let source = open_source(src, options)?;
    let plan = checked_plan(src, source.as_ref(), policy.as_deref(), options, copy)?;
    if options.sign_by_sigstore.is_some() && !matches!(dst, ImageRef::Docker(_)) {
        return Err(Error::Unsupported {
            transport: dst.to_string(),
            reason: "this destination cannot store sigstore signatures; sign images pushed to a registry (docker://) instead".into(),
        });
    }
    let sink = open_sink(dst, options)?;
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
    let report = match progress {
        Some(p) => copy_planned(
            &Observed::source(source.as_ref(), p.clone()),
            &Observed::sink(sink.as_ref(), p.clone()),
            &plan,
            copy,
            start,
        )?,
        None => copy_planned(source.as_ref(), sink.as_ref(), &plan, copy, start)?,
    };
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
    let scopes = ImageScopes::of(src, &options.storage_root);
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
    /// An ostree container-store image: its ref, the layer refs only it used, and the objects
    /// nothing references any more.
    Ostree(crate::ostree::container::DeleteReport),
    /// A containers-storage image (and the layers only it used).
    Storage(crate::cstorage::catalog::RemoveReport),
}

/// `stowage delete IMAGE` (skopeo delete): remove `r` from its store.
pub fn delete(r: &ImageRef, options: &EndpointOptions) -> Result<Deleted> {
    match r {
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
                "deleting from the {} transport is not supported; stowage deletes from ostree: and containers-storage:",
                other.transport_name()
            ),
        }),
    }
}
