//! Opening a copy source or sink for a parsed transport name.
//!
//! This is the one place that knows every store: it maps an [`ImageRef`] to the store
//! module that implements it. Stores themselves never import each other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compression::Compression;
use crate::copy::{copy_image, CopyOptions, CopyReport, ImageSink, ImageSource};
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
/// (when given) what happens: `stowage copy SRC DST`.
pub fn copy_between(
    src: &ImageRef,
    dst: &ImageRef,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<CopyReport> {
    let source = open_source(src, options)?;
    let sink = open_sink(dst, options)?;
    match progress {
        Some(p) => copy_image(
            &Observed::source(source.as_ref(), p.clone()),
            &Observed::sink(sink.as_ref(), p.clone()),
            copy,
        ),
        None => copy_image(source.as_ref(), sink.as_ref(), copy),
    }
}

/// What [`delete`] removed.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// An ostree container-store image: its ref, the layer refs only it used, and the objects
    /// nothing references any more.
    Ostree(crate::ostree::container::DeleteReport),
    /// A containers-storage image (and the layers only it used).
    Storage(crate::cstorage::catalog::RemoveReport),
    /// A registry manifest (and with it every tag that pointed at it).
    Registry(crate::digest::Digest),
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
        ImageRef::Docker(reference) => Ok(Deleted::Registry(
            crate::registry::manage::delete_image(reference, &options.dest_registry)?,
        )),
        other => Err(Error::Unsupported {
            transport: other.to_string(),
            reason: format!(
                "deleting from the {} transport is not supported; stowage deletes from docker://, ostree: and containers-storage:",
                other.transport_name()
            ),
        }),
    }
}
