//! How a store and its images are named in transport syntax
//! (`containers-storage:[overlay@GRAPHROOT+RUNROOT]IMAGE`).
//!
//! 1. [`Store::spec`] is the `[overlay@GRAPHROOT+RUNROOT]` specifier of an open store, so a
//!    caller builds an [`ImageRef`](crate::transport::ImageRef) for it without formatting and
//!    re-parsing strings.
//! 2. [`Store::resolve`] finds the image a parsed [`StorageImage`] names (a name, an ID,
//!    `NAME@ID`, an ID prefix), with containers/image's rules.

use super::{ImageRecord, Store};
use crate::error::Result;
use crate::transport::{StorageImage, StoreSpec};

impl Store {
    /// This store's specifier: `[overlay@GRAPHROOT+RUNROOT]` (no run root for a store opened
    /// read-only without one).
    pub fn spec(&self) -> StoreSpec {
        StoreSpec::overlay(self.graph_root(), self.run_root().map(|p| p.to_path_buf()))
    }

    /// The image a transport name refers to (name, ID, `NAME@ID`, ID prefix).
    pub fn resolve(&self, image: &StorageImage) -> Result<ImageRecord> {
        match image {
            StorageImage::Named(r) => self.image(&r.to_string()),
            StorageImage::Id(id) => self.image(id),
            StorageImage::NamedWithId(_, id) => self.image(id),
            StorageImage::IdPrefix { prefix, .. } => self.image(prefix),
            StorageImage::NameOrIdPrefix { name, prefix } => self
                .image(prefix)
                .or_else(|_| self.image(&name.to_string())),
        }
    }
}
