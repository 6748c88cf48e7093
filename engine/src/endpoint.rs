//! Opening a copy source or sink for a parsed transport name.
//!
//! This is the one place that knows every store: it maps an [`ImageRef`] to the store
//! module that implements it. Stores themselves never import each other.

use std::path::PathBuf;

use crate::compression::Compression;
use crate::copy::{ImageSink, ImageSource};
use crate::error::{Error, Result};
use crate::oci_layout::{OciSink, OciSource};
use crate::registry::{RegistryOptions, RegistrySource};
use crate::transport::ImageRef;

/// Settings that apply to every endpoint.
#[derive(Debug, Clone)]
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
}

impl Default for EndpointOptions {
    fn default() -> Self {
        EndpointOptions {
            dest_compression: None,
            storage_root: PathBuf::from("/var/lib/containers/storage"),
            storage_runroot: PathBuf::from("/run/containers/storage"),
            src_registry: RegistryOptions::default(),
            dest_registry: RegistryOptions::default(),
        }
    }
}

fn not_yet(r: &ImageRef, direction: &str) -> Error {
    Error::Unsupported {
        transport: r.to_string(),
        reason: format!(
            "the {} transport cannot be used as a {direction} yet",
            r.transport_name()
        ),
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
        _ => Err(not_yet(r, "source")),
    }
}

/// Open `r` for writing.
pub fn open_sink(r: &ImageRef, options: &EndpointOptions) -> Result<Box<dyn ImageSink>> {
    match r {
        ImageRef::Oci { path, tag } => Ok(Box::new(OciSink::create(
            path,
            tag.as_deref(),
            options.dest_compression,
        )?)),
        _ => Err(not_yet(r, "destination")),
    }
}
