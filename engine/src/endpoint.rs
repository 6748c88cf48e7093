//! Opening a copy source or sink for a parsed transport name.
//!
//! This is the one place that knows every store: it maps an [`ImageRef`] to the store
//! module that implements it. Stores themselves never import each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compression::Compression;
use crate::copy::{copy_planned, CopyOptions, CopyReport, ImageSink, ImageSource};
use crate::copy_index::{copy_index, plan_source, SourcePlan};
use crate::cstorage::{StorageConfig, StorageSink, StorageSource, Store};
use crate::error::{Error, Result};
use crate::oci_archive::{OciArchiveSink, OciArchiveSource};
use crate::oci_layout::{OciSink, OciSource};
use crate::ostree::import::ImportOptions;
use crate::ostree::{OstreeSink, OstreeSource};
use crate::progress::{Observed, Progress};
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
/// 1. The source is opened and its manifest(s) and config(s) resolved first, so a missing
///    image or tag fails before the destination is touched.
/// 2. The destination is opened (an OCI layout or a containers-storage store is created
///    when missing) and the layers copied ([`copy_planned`]); `copy.cancel` also stops the
///    registry clients of both sides.
/// 3. When the copy fails or is cancelled and the destination did not exist before, what the
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
    let created = would_create(dst, options);
    let run = |sink: &dyn ImageSink| match &plan {
        SourcePlan::Image(plan) => copy_planned(source, plan, sink, copy, start),
        SourcePlan::Index(plan) => copy_index(source, plan, sink, copy, start),
    };
    let result = open_sink(dst, options).and_then(|sink| match progress {
        Some(p) => run(&Observed::sink(sink.as_ref(), p.clone())),
        None => run(sink.as_ref()),
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
