//! # stowage-engine
//!
//! The library behind the `stowage` CLI: container images moved between registries, OCI image
//! layouts, containers-storage and ostree repositories, in process and without helper binaries.
//!
//! Layers of the crate, bottom up (see `docs/architecture.md`):
//! 1. shared ground: [`error`], [`digest`] (digests and verified readers), [`compression`],
//!    [`reference`](mod@reference) and [`transport`] (names), [`manifest`] (OCI/Docker
//!    documents), [`layer_tar`] (safe layer-tar walking and extraction), [`tar_split`];
//! 2. one module per store or transport, each knowing only its own format: [`oci_layout`],
//!    [`oci_archive`] (an OCI layout in a tar);
//! 3. the [`copy`] pipeline that joins any source to any sink, and [`endpoint`] that opens
//!    a source or sink for a parsed transport name;
//! 4. [`inspect`]: skopeo-inspect-shaped summaries; [`bootc`]: bootc's store locations, bound
//!    images and image list.

#![warn(missing_docs)]

pub mod bootc;
pub mod compression;
pub mod copy;
pub mod cstorage;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod inspect;
pub mod layer_tar;
pub mod manifest;
pub mod oci_archive;
pub mod oci_layout;
pub mod ostree;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod tar_split;
pub mod transport;

pub use error::{Error, Result};
