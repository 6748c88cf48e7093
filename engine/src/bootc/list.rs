//! The image list `bootc image list` shows: `host` images (ostree-rs-ext images in the
//! ostree repository), `unified` ones (names in bootc's containers-storage) and `logical` ones
//! (bound images of the deployment root).
//!
//! 1. Host images come from the ostree repository's image refs, with the digest, size and
//!    creation time ostree-rs-ext records on each merge commit.
//! 2. Unified images are the names in bootc's containers-storage, with the same facts from
//!    the store.
//! 3. Logical images are the bound-image declarations of the deployment root; each is
//!    looked up in bootc's store (`present`), and when it is there its facts come along.

use std::path::Path;

use serde::Serialize;

use super::bound::bound_images;
use crate::cstorage::catalog::{self, ImageSummary};
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

/// One row of `image list`: bootc's two keys first, then what stowage adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageOutput {
    /// Which kind.
    pub image_type: ImageType,
    /// The image reference.
    pub image: String,
    /// The manifest digest, when known (a logical image not yet pulled has none).
    pub digest: Option<String>,
    /// Bytes: the store's size for unified and logical images, the manifest's blob sizes for
    /// host images.
    pub size: Option<u64>,
    /// The config's creation time (RFC 3339).
    pub created: Option<String>,
    /// Logical images only: whether bootc's store has the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

impl ImageOutput {
    fn bare(image_type: ImageType, image: String) -> ImageOutput {
        ImageOutput {
            image_type,
            image,
            digest: None,
            size: None,
            created: None,
            present: None,
        }
    }
}

/// Where [`list_images`] looks.
#[derive(Debug, Clone)]
pub struct ListSources<'a> {
    /// bootc's containers-storage, where logical images are looked up; `None` to skip.
    pub bootc_storage: Option<&'a Path>,
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
                container::image_summaries(&repo)?
                    .into_iter()
                    .map(|i| ImageOutput {
                        digest: i.digest,
                        size: i.size,
                        created: i.created,
                        ..ImageOutput::bare(ImageType::Host, i.name)
                    }),
            );
        }
    }
    let facts = |root: &Path| -> Result<Option<(Store, Vec<ImageSummary>)>> {
        if !root.exists() {
            return Ok(None);
        }
        let store = Store::open_read_only(root, None)?;
        let all = catalog::list_images(&store, true)?;
        Ok(Some((store, all)))
    };
    let with_facts = |mut o: ImageOutput, s: &ImageSummary| {
        o.digest = (!s.digest.is_empty()).then(|| s.digest.clone());
        o.size = u64::try_from(s.size).ok();
        o.created = Some(s.created_at.clone());
        o
    };
    if let Some(root) = sources.storage_root {
        if let Some((_, images)) = facts(root)? {
            let mut rows: Vec<ImageOutput> = Vec::new();
            for s in &images {
                for n in &s.names {
                    if !rows.iter().any(|r| &r.image == n) {
                        rows.push(with_facts(
                            ImageOutput::bare(ImageType::Unified, n.clone()),
                            s,
                        ));
                    }
                }
            }
            rows.sort_by(|a, b| a.image.cmp(&b.image));
            out.extend(rows);
        }
    }
    if let Some(root) = sources.root {
        let store = match sources.bootc_storage {
            Some(s) => facts(s)?,
            None => None,
        };
        for b in bound_images(root)? {
            let mut o = ImageOutput::bare(ImageType::Logical, b.image);
            if let Some((store, images)) = &store {
                let found = store.image(&o.image).ok();
                o.present = Some(found.is_some());
                if let Some(s) = found.and_then(|rec| images.iter().find(|s| s.id == rec.id)) {
                    o = with_facts(o, s);
                }
            } else if sources.bootc_storage.is_some() {
                o.present = Some(false);
            }
            out.push(o);
        }
    }
    Ok(out)
}
