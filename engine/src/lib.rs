//! # stowage-engine
//!
//! The library behind the `stowage` CLI: container images moved between registries, OCI image
//! layouts, containers-storage and ostree repositories, in process and without helper binaries.
//!
//! Layers of the crate, bottom up (see `docs/architecture.md`):
//! 1. shared ground: [`error`], [`cancel`] (stopping a copy), [`fs_lock`] (fcntl record locks), [`fs_clone`] (reflink / hard link / copy of file data between stores), [`digest`] (digests and verified readers), [`compression`],
//!    [`reference`](mod@reference) and [`transport`] (names), [`manifest`] (OCI/Docker
//!    documents), [`convert`] (OCI ↔ Docker schema2), [`layer_tar`] (safe layer-tar walking and extraction), [`tar_split`];
//! 2. one module per store or transport, each knowing only its own format: [`oci_layout`],
//!    [`oci_archive`] (an OCI layout in a tar); [`policy`] (policy.json, sigstore signatures)
//!    sits beside them, used by the registry and the endpoint;
//! 3. the [`copy`] pipeline that joins any source to any sink, [`copy_index`] (a whole
//!    multi-arch index through it), [`endpoint`] that opens a source or sink for a parsed
//!    transport name, and [`sync`] (a registry repository to OCI layouts and back);
//! 4. [`inspect`]: skopeo-inspect-shaped summaries; [`bootc`]: bootc's stores and its `image`
//!    commands (list, copy-to-storage, pull-from-default-storage, cmd pull/push).
//!
//! # Example
//!
//! Copy an image from a registry into podman's store, as `stowage copy` does:
//!
//! ```no_run
//! use stowage_engine::{copy_between, CopyOptions, EndpointOptions, ImageRef};
//!
//! # fn main() -> stowage_engine::Result<()> {
//! let src = ImageRef::parse("docker://quay.io/fedora/fedora-bootc:42")?;
//! let dst = ImageRef::parse(
//!     "containers-storage:[overlay@/var/lib/containers/storage+/run/containers/storage]quay.io/fedora/fedora-bootc:42",
//! )?;
//! let report = copy_between(&src, &dst, &EndpointOptions::default(), &CopyOptions::default(), None)?;
//! println!("{} layers copied, manifest {}", report.layers_copied, report.manifest_digest);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
// `unsafe` only in `fs_lock` (fcntl OFD locks), which allows it locally.
#![deny(unsafe_code)]

pub mod bootc;
pub mod build;
pub mod cancel;
pub mod compression;
pub mod convert;
pub mod copy;
pub mod copy_index;
pub mod cstorage;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod fs_clone;
pub mod fs_lock;
pub mod gotemplate;
pub mod inspect;
pub mod layer_tar;
pub mod manifest;
pub mod oci_archive;
pub mod oci_layout;
pub mod ostree;
pub mod policy;
pub mod progress;
pub mod read_ahead;
pub mod reference;
pub mod registry;
pub mod sync;
pub mod tar_split;
pub mod transport;

pub use copy::{copy_image, plan_image, CopyOptions, CopyReport, ImageSink, ImageSource};
pub use cstorage::Store;
pub use digest::Digest;
pub use endpoint::{copy_between, open_sink, open_source, EndpointOptions};
pub use error::{Error, Result};
pub use reference::Reference;
pub use registry::RegistryOptions;
pub use transport::ImageRef;
