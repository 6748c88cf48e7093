//! The image list `bootc image list` shows: `host` images (ostree-rs-ext images in the
//! ostree repository), `unified` ones (names in bootc's containers-storage) and `logical` ones
//! (bound images of the deployment root).

use std::path::Path;

use serde::Serialize;

use super::bound::bound_images;
use crate::cstorage::Store;
use crate::error::Result;
use crate::ostree::{container, Repo};

/// The kind of an image in [`list_images`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ImageType {
    /// Pulled into the ostree repository (the host's OS images).
    Host,
    /// In bootc's containers-storage.
    Unified,
    /// A logically bound image declared by the deployment.
    Logical,
}

impl ImageType {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::Host => "host",
            ImageType::Unified => "unified",
            ImageType::Logical => "logical",
        }
    }
}

/// One row of `image list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageOutput {
    /// Which kind.
    pub image_type: ImageType,
    /// The image reference.
    pub image: String,
}

/// Where [`list_images`] looks.
#[derive(Debug, Clone)]
pub struct ListSources<'a> {
    /// The ostree repository (host images); `None` to skip.
    pub ostree_repo: Option<&'a Path>,
    /// bootc's containers-storage (unified images); `None` to skip.
    pub storage_root: Option<&'a Path>,
    /// The deployment root (logical images); `None` to skip.
    pub root: Option<&'a Path>,
}

/// The images of the requested kinds. Missing stores contribute nothing (a system with no
/// bound images, or no bootc storage yet, is normal); unreadable ones are errors.
pub fn list_images(sources: &ListSources<'_>) -> Result<Vec<ImageOutput>> {
    let mut out = Vec::new();
    if let Some(repo) = sources.ostree_repo {
        if repo.exists() {
            let repo = Repo::open(repo)?;
            out.extend(
                container::list_images(&repo)?
                    .into_iter()
                    .map(|image| ImageOutput {
                        image_type: ImageType::Host,
                        image,
                    }),
            );
        }
    }
    if let Some(root) = sources.storage_root {
        let store = Store::open_read_only(root, None)?;
        let mut names: Vec<String> = store.images()?.into_iter().flat_map(|i| i.names).collect();
        names.sort();
        out.extend(names.into_iter().map(|image| ImageOutput {
            image_type: ImageType::Unified,
            image,
        }));
    }
    if let Some(root) = sources.root {
        out.extend(bound_images(root)?.into_iter().map(|b| ImageOutput {
            image_type: ImageType::Logical,
            image: b.image,
        }));
    }
    Ok(out)
}
