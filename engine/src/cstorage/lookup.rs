//! Finding records: listing layers, images and containers, and resolving what a user names.
//!
//! 1. Every call takes the read lock of the file it reads and parses it anew (no cache).
//! 2. Layers are found by ID or name, by diffID or by compressed digest; incomplete layers
//!    are never returned.
//! 3. An image query resolves, in this order, as an exact ID, an exact name, `name:latest`,
//!    `repository@digest`, the names podman finds for a short name (normalised, then
//!    `localhost/NAME`, then one image ending in `/NAME`), and a unique ID prefix.

use std::path::Path;

use super::{ContainerRecord, ImageRecord, LayerRecord, Store};
use crate::digest::{parse_digest, Digest};
use crate::error::{Error, Result};

impl Store {
    /// All complete layers (incomplete ones are being written, or abandoned).
    pub fn layers(&self) -> Result<Vec<LayerRecord>> {
        let _g = self.layers_lock.read()?;
        Ok(self
            .load_layers()?
            .into_iter()
            .filter(|l| !l.is_incomplete())
            .collect())
    }

    /// All images.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let _g = self.images_lock.read()?;
        self.load_images()
    }

    /// All containers (empty if podman never created the containers store).
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.read_containers_locked()
    }

    /// The complete layer with ID or name `id`.
    pub fn layer(&self, id: &str) -> Result<LayerRecord> {
        self.layers()?
            .into_iter()
            .find(|l| l.id == id || l.names.iter().any(|n| n == id))
            .ok_or_else(|| Error::NotFound {
                what: format!("layer {id} in {}", self.graph_root.display()),
                hint: String::new(),
            })
    }

    /// Complete layers whose diffID is `d` (for reuse when pulling).
    pub fn layers_by_diff_digest(&self, d: &Digest) -> Result<Vec<LayerRecord>> {
        let s = d.to_string();
        Ok(self
            .layers()?
            .into_iter()
            .filter(|l| l.diff_digest == s)
            .collect())
    }

    /// Complete layers applied from a blob with digest `d` (for reuse when pulling).
    pub fn layers_by_compressed_digest(&self, d: &Digest) -> Result<Vec<LayerRecord>> {
        let s = d.to_string();
        Ok(self
            .layers()?
            .into_iter()
            .filter(|l| l.compressed_diff_digest == s)
            .collect())
    }

    /// The chain of layers ending at `top`, bottom first.
    pub fn layer_chain(&self, top: &str) -> Result<Vec<LayerRecord>> {
        let all = self.layers()?;
        chain(&all, top, &self.graph_root)
    }

    /// An image by ID, unique ID prefix (`sha256:` optional), name, `name:latest` for a name
    /// without tag, or `repository@digest`.
    pub fn image(&self, query: &str) -> Result<ImageRecord> {
        let all = self.images()?;
        let i = resolve_image(&all, query)?;
        Ok(all[i].clone())
    }

    /// Images with manifest digest `d` among their digests.
    pub fn images_by_digest(&self, d: &Digest) -> Result<Vec<ImageRecord>> {
        let s = d.to_string();
        Ok(self
            .images()?
            .into_iter()
            .filter(|i| i.digests().contains(&s))
            .collect())
    }

    /// The layers of `image`, bottom first.
    pub fn image_layers(&self, image: &ImageRecord) -> Result<Vec<LayerRecord>> {
        match image.top_layer() {
            Some(top) => self.layer_chain(top),
            None => Ok(Vec::new()),
        }
    }
}

/// The chain ending at `top`, bottom first.
fn chain(all: &[LayerRecord], top: &str, root: &Path) -> Result<Vec<LayerRecord>> {
    let mut out = Vec::new();
    let mut cur = Some(top.to_string());
    while let Some(id) = cur {
        let l = all
            .iter()
            .find(|l| l.id == id)
            .ok_or_else(|| Error::NotFound {
                what: format!("layer {id} in {}", root.display()),
                hint: "the store is damaged (an image or layer refers to a missing layer)".into(),
            })?;
        if out.len() > all.len() {
            return Err(Error::Malformed {
                what: format!("layers of {}", root.display()),
                reason: "the parent chain has a cycle".into(),
            });
        }
        out.push(l.clone());
        cur = l.parent().map(str::to_string);
    }
    out.reverse();
    Ok(out)
}

/// Split a stored image name `repository[:tag][@digest]` into (repository, tag, digest) as
/// written: no normalisation, no validation (unlike [`crate::reference`], whose
/// `split_domain_path` splits a name into registry domain and path).
pub(crate) fn split_repo_tag_digest(name: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

/// Index of the image `query` names in `images`.
pub(super) fn resolve_image(images: &[ImageRecord], query: &str) -> Result<usize> {
    if let Some(i) = images.iter().position(|i| i.id == query) {
        return Ok(i);
    }
    if let Some(i) = images
        .iter()
        .position(|i| i.names.iter().any(|n| n == query))
    {
        return Ok(i);
    }
    let (repo, tag, digest) = split_repo_tag_digest(query);
    if tag.is_none() && digest.is_none() {
        let latest = format!("{query}:latest");
        if let Some(i) = images.iter().position(|i| i.names.contains(&latest)) {
            return Ok(i);
        }
    }
    if let Some(d) = digest {
        if parse_digest(d).is_ok() {
            if let Some(i) = images.iter().position(|i| {
                i.digests().iter().any(|x| x == d)
                    && i.names.iter().any(|n| split_repo_tag_digest(n).0 == repo)
            }) {
                return Ok(i);
            }
        }
    }
    if let Some(i) = resolve_short_name(images, query)? {
        return Ok(i);
    }
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let matches: Vec<usize> = images
            .iter()
            .enumerate()
            .filter(|(_, i)| i.id.starts_with(hex))
            .map(|(n, _)| n)
            .collect();
        match matches.len() {
            1 => return Ok(matches[0]),
            0 => {}
            _ => {
                return Err(Error::Conflict {
                    what: format!("image ID prefix {hex}"),
                    reason: format!("matches {} images; give more digits", matches.len()),
                })
            }
        }
    }
    Err(Error::NotFound {
        what: format!("image {query}"),
        hint: "it is not in this store (list images to see what is)".into(),
    })
}

/// Whether the image name `name` is what `query` asks for, by the rules of
/// [`resolve_short_name`] (exact, `:latest` implied, normalised, `localhost/`, `/NAME` suffix).
pub(crate) fn name_matches(name: &str, query: &str) -> bool {
    use crate::reference::Reference;
    if name == query || *name == format!("{query}:latest") {
        return true;
    }
    let Ok(full) = Reference::parse_with_default_tag(query) else {
        return false;
    };
    if name == full.to_string() {
        return true;
    }
    if !Reference::is_short_name(query) {
        return false;
    }
    let tagged = if full.tag().is_some() && !query.contains(':') && full.digest().is_none() {
        format!("{query}:latest")
    } else {
        query.to_string()
    };
    name == format!("localhost/{tagged}") || name.ends_with(&format!("/{tagged}"))
}

/// Names as podman resolves them locally: the normalised reference (`busybox` →
/// `docker.io/library/busybox:latest`), then for a short name `localhost/NAME`, then the one
/// image whose name ends in `/NAME` (`test:1` finds `quay.io/x/test:1`).
fn resolve_short_name(images: &[ImageRecord], query: &str) -> Result<Option<usize>> {
    use crate::reference::Reference;
    let Ok(full) = Reference::parse_with_default_tag(query) else {
        return Ok(None);
    };
    let find = |name: &str| {
        images
            .iter()
            .position(|i| i.names.iter().any(|n| n == name))
    };
    if let Some(i) = find(&full.to_string()) {
        return Ok(Some(i));
    }
    if !Reference::is_short_name(query) {
        return Ok(None);
    }
    let tagged = if full.tag().is_some() && !query.contains(':') && full.digest().is_none() {
        format!("{query}:latest")
    } else {
        query.to_string()
    };
    if let Some(i) = find(&format!("localhost/{tagged}")) {
        return Ok(Some(i));
    }
    let suffix = format!("/{tagged}");
    let matches: Vec<usize> = images
        .iter()
        .enumerate()
        .filter(|(_, i)| i.names.iter().any(|n| n.ends_with(&suffix)))
        .map(|(n, _)| n)
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(Error::Conflict {
            what: format!("short name {query:?}"),
            reason: format!(
                "matches {} images ({}); use the full name",
                many.len(),
                many.iter()
                    .flat_map(|&i| images[i]
                        .names
                        .iter()
                        .filter(|n| n.ends_with(&suffix))
                        .cloned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
