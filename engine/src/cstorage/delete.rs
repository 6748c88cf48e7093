//! Removing: an image with the layers only it uses, a layer's files, and the incomplete layers
//! an interrupted writer left behind.
//!
//! 1. [`Store::delete_image`] takes the layers and images write locks, resolves the image and
//!    refuses if a container uses it.
//! 2. It picks the layers to remove (top down, stopping at one another image, a container or
//!    another child layer uses) and refuses if one of them is mounted (the run root's
//!    `mountpoints.json`).
//! 3. It removes the image's big data and record, then the layers' files and records.
//!
//! [`Store::remove_incomplete_layers`] runs when a store is opened for writing.

use std::io::ErrorKind;
use std::path::Path;

use super::layer_read::tar_split_name;
use super::lockfile::LockFile;
use super::lookup::resolve_image;
use super::store::{IMAGES_DIR, LAYERS_DIR, LINK_DIR};
use super::{files, ids, ContainerRecord, ImageRecord, LayerRecord, Store};
use crate::error::{Error, IoContext, Result};

/// What [`Store::delete_image`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    /// The image ID.
    pub id: String,
    /// The names the image had.
    pub names: Vec<String>,
    /// The layers removed with it, top first.
    pub layers: Vec<String>,
}

impl Store {
    pub(super) fn remove_incomplete_layers(&self) -> Result<()> {
        let g = self.layers_lock.write()?;
        let mut all = self.load_layers()?;
        let before = all.len();
        let mut keep = Vec::with_capacity(all.len());
        for l in all.drain(..) {
            if l.is_incomplete() && !self.layers_lock.is_pinned(&l.id) {
                self.remove_layer_files(&l.id)?;
            } else {
                keep.push(l);
            }
        }
        if keep.len() != before {
            self.save_layers(&keep, &g)?;
        }
        Ok(())
    }

    /// Remove a layer's content, link, tar-split and big data (not its record).
    pub(super) fn remove_layer_files(&self, id: &str) -> Result<()> {
        ids::check_id(id, "layer")?;
        let overlay = self.overlay()?;
        if let Ok(link) = overlay.read_to_string(Path::new(id).join("link")) {
            let link = link.trim();
            if ids::is_link_id(link) {
                files::remove_file_if_exists(&overlay, Path::new(LINK_DIR).join(link))
                    .ctx(|| format!("removing overlay/l/{link}"))?;
            }
        }
        files::remove_tree(&overlay, id).at("removing", self.layer_path(id))?;
        if let Some(ld) = self.subdir(LAYERS_DIR)? {
            files::remove_file_if_exists(&ld, tar_split_name(id))
                .at("removing", self.tar_split_path(id))?;
            files::remove_tree(&ld, id).map_err(|e| {
                Error::io_path("removing", self.graph_root.join(LAYERS_DIR).join(id), e)
            })?;
        }
        Ok(())
    }

    /// Delete the image `query` resolves to and every layer of it that no other image,
    /// container or layer uses (containers/storage `DeleteImage`). Refused while a container
    /// uses the image or one of the layers to remove is mounted.
    pub fn delete_image(&self, query: &str) -> Result<DeletedImage> {
        let lg = self.layers_lock.write()?;
        let ig = self.images_lock.write()?;
        let mut all_images = self.load_images()?;
        let index = resolve_image(&all_images, query)?;
        let image = all_images[index].clone();
        let containers = self.read_containers_locked()?;
        let users: Vec<_> = containers.iter().filter(|c| c.image == image.id).collect();
        if !users.is_empty() {
            return Err(Error::ImageInUse {
                image: image.id.clone(),
                containers: users
                    .iter()
                    .map(|c| format!("container {} ({})", c.display_name(), c.id))
                    .collect(),
                names: users.iter().map(|c| c.display_name().to_string()).collect(),
            });
        }
        let mut all_layers = self.load_layers()?;
        let to_remove = layers_to_remove(&image, &all_images, &all_layers, &containers);
        let mounted = self.mounted_layers()?;
        if let Some(m) = to_remove.iter().find(|l| mounted.contains(*l)) {
            return Err(Error::Conflict {
                what: format!("layer {m} of image {}", image.id),
                reason: "is mounted; unmount it (podman image unmount) first".into(),
            });
        }
        all_images.remove(index);
        let idir = self.required_subdir(IMAGES_DIR)?;
        ids::check_id(&image.id, "image")?;
        files::remove_tree(&idir, &image.id).map_err(|e| {
            Error::io_path(
                "removing",
                self.graph_root.join(IMAGES_DIR).join(&image.id),
                e,
            )
        })?;
        self.save_images(&all_images, &ig)?;
        drop(ig);
        for id in &to_remove {
            self.remove_layer_files(id)?;
        }
        all_layers.retain(|l| !to_remove.contains(&l.id));
        if !to_remove.is_empty() {
            self.save_layers(&all_layers, &lg)?;
        }
        Ok(DeletedImage {
            id: image.id,
            names: image.names,
            layers: to_remove,
        })
    }

    /// Layers with a mount count above zero, from the run root's `mountpoints.json`.
    fn mounted_layers(&self) -> Result<Vec<String>> {
        let Some(rr) = &self.run_root else {
            return Ok(Vec::new());
        };
        let dir = rr.join(LAYERS_DIR);
        let lock = LockFile::new(&dir.join("mountpoints.lock"), true);
        let _g = lock.read()?;
        let data = match std::fs::read(dir.join("mountpoints.json")) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io_path("reading", dir.join("mountpoints.json"), e)),
        };
        #[derive(serde::Deserialize)]
        struct MountPoint {
            id: String,
            #[serde(default)]
            count: i64,
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let mps: Vec<MountPoint> = serde_json::from_slice(&data).map_err(|e| Error::Json {
            what: dir.join("mountpoints.json").display().to_string(),
            source: e,
        })?;
        Ok(mps
            .into_iter()
            .filter(|m| m.count > 0)
            .map(|m| m.id)
            .collect())
    }
}

/// Layers to delete with `image`, top first (containers/storage `DeleteImage`).
fn layers_to_remove(
    image: &ImageRecord,
    images: &[ImageRecord],
    layers: &[LayerRecord],
    containers: &[ContainerRecord],
) -> Vec<String> {
    use std::collections::{HashMap, HashSet};
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for l in layers {
        children
            .entry(l.parent.as_str())
            .or_default()
            .push(l.id.as_str());
    }
    let other_tops: HashSet<&str> = images
        .iter()
        .filter(|i| i.id != image.id)
        .flat_map(|i| {
            std::iter::once(i.layer.as_str()).chain(i.mapped_layers.iter().map(String::as_str))
        })
        .collect();
    let container_layers: HashSet<&str> = containers
        .iter()
        .flat_map(|c| [c.id.as_str(), c.layer.as_str()])
        .collect();
    let mut out: Vec<String> = image.mapped_layers.clone();
    let mut removing: HashSet<String> = out.iter().cloned().collect();
    let mut cur = image.layer.clone();
    while !cur.is_empty() {
        if container_layers.contains(cur.as_str()) || other_tops.contains(cur.as_str()) {
            break;
        }
        let mut check = vec![cur.clone()];
        if cur == image.layer {
            check.extend(image.mapped_layers.iter().cloned());
        }
        let has_other_children = check.iter().any(|l| {
            children
                .get(l.as_str())
                .is_some_and(|cs| cs.iter().any(|c| !removing.contains(*c)))
        });
        if has_other_children {
            break;
        }
        let parent = layers
            .iter()
            .find(|l| l.id == cur)
            .map(|l| l.parent.clone())
            .unwrap_or_default();
        out.push(cur.clone());
        removing.insert(cur);
        cur = parent;
    }
    out
}
