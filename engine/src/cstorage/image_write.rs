//! Writing an image, in the order containers/image uses.
//!
//! 1. [`Store::create_image`] checks the top layer is finished, writes the big-data files it
//!    is given ([`NewImage::big_data`]: config, `manifest-<digest>`, `manifest`, signatures),
//!    then adds the record with their sizes and digests, metadata and names in one save of
//!    `images.json` (for an existing ID with the same top layer: the big data, metadata and
//!    names of that record). A concurrent reader (`podman images`) never sees the image
//!    without its manifest — containers/image 5.23 creates the record first and adds each
//!    item after, and podman 4.3 listing in between reports the image as corrupted.
//! 2. [`Store::set_big_data`], [`Store::set_image_metadata`] and [`Store::add_names`] change an
//!    image afterwards; names given to an image are taken away from any other image.

use super::lookup::resolve_image;
use super::store::IMAGES_DIR;
use super::{bigdata, ids, images, GoTime, ImageRecord, NameOp, Store};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// What a new image is: see [`Store::create_image`].
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Image ID (the config digest hex; see [`ids::image_id`]).
    pub id: String,
    /// Top layer ID; `None` for an image without layers.
    pub top_layer: Option<String>,
    /// The manifest digest.
    pub digest: Option<Digest>,
    /// Creation time (the config's `created`); now if `None`.
    pub created: Option<GoTime>,
    /// Opaque metadata.
    pub metadata: Option<String>,
    /// Fully-qualified names to give the image (taken away from other images).
    pub names: Vec<String>,
    /// Big-data items (key, bytes), written before the record that lists them.
    pub big_data: Vec<(String, Vec<u8>)>,
}

fn check_big_data_key(image_id: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::Malformed {
            what: format!("big data of image {image_id}"),
            reason: "empty key".into(),
        });
    }
    Ok(())
}

impl Store {
    /// Create an image record (or, if an image with this ID exists with the same top layer,
    /// only add the names, as containers/image does).
    pub fn create_image(&self, new: &NewImage) -> Result<ImageRecord> {
        ids::check_id(&new.id, "image")?;
        validate_names(&new.names)?;
        let _lg = self.layers_lock.read()?;
        if let Some(top) = &new.top_layer {
            let all = self.load_layers()?;
            match all.iter().find(|l| &l.id == top) {
                Some(l) if !l.is_incomplete() => {}
                Some(_) => {
                    return Err(Error::Conflict {
                        what: format!("top layer {top} of image {}", new.id),
                        reason: "is not finished".into(),
                    })
                }
                None => {
                    return Err(Error::NotFound {
                        what: format!("top layer {top} of image {}", new.id),
                        hint: "write the layers before the image".into(),
                    })
                }
            }
        }
        for (key, _) in &new.big_data {
            check_big_data_key(&new.id, key)?;
        }
        let g = self.images_lock.write()?;
        let mut all = self.load_images()?;
        if !new.big_data.is_empty() {
            let dir = self.required_subdir(IMAGES_DIR)?;
            for (key, data) in &new.big_data {
                bigdata::write(&dir, &new.id, key, data).map_err(|e| {
                    Error::from_io(format!("writing big data {key:?} of image {}", new.id), e)
                })?;
            }
        }
        let index = match all.iter().position(|i| i.id == new.id) {
            Some(i) => {
                let existing = all[i].top_layer().map(str::to_string);
                if existing != new.top_layer {
                    return Err(Error::Conflict {
                        what: format!("image {}", new.id),
                        reason: format!(
                            "already exists with top layer {}, not {}; remove it first",
                            existing.as_deref().unwrap_or("(none)"),
                            new.top_layer.as_deref().unwrap_or("(none)")
                        ),
                    });
                }
                i
            }
            None => {
                all.push(ImageRecord {
                    id: new.id.clone(),
                    digest: new
                        .digest
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    layer: new.top_layer.clone().unwrap_or_default(),
                    metadata: new.metadata.clone().unwrap_or_default(),
                    created: Some(new.created.unwrap_or_else(GoTime::now)),
                    ..Default::default()
                });
                all.len() - 1
            }
        };
        for (key, data) in &new.big_data {
            all[index].record_big_data(key, data.len() as u64, &bigdata::digest_of(key, data));
        }
        if let Some(m) = &new.metadata {
            all[index].metadata = m.clone();
        }
        images::set_names(&mut all, index, &new.names, NameOp::Add);
        let out = all[index].clone();
        self.save_images(&all, &g)?;
        Ok(out)
    }

    /// Store big-data item `key` of image `image_id` and record its size and digest.
    pub fn set_big_data(&self, image_id: &str, key: &str, data: &[u8]) -> Result<()> {
        ids::check_id(image_id, "image")?;
        check_big_data_key(image_id, key)?;
        self.change_image(image_id, "create the image before its big data", |img| {
            let dir = self.required_subdir(IMAGES_DIR)?;
            bigdata::write(&dir, image_id, key, data).map_err(|e| {
                Error::from_io(format!("writing big data {key:?} of image {image_id}"), e)
            })?;
            img.record_big_data(key, data.len() as u64, &bigdata::digest_of(key, data));
            Ok(())
        })
    }

    /// Set image `image_id`'s opaque metadata string.
    pub fn set_image_metadata(&self, image_id: &str, metadata: &str) -> Result<()> {
        self.change_image(image_id, "", |img| {
            img.metadata = metadata.to_string();
            Ok(())
        })
    }

    /// Under the images write lock, apply `change` to the record of image `image_id` and save
    /// `images.json`; an unknown ID is [`Error::NotFound`] with `hint`. Nothing is saved when
    /// `change` fails.
    fn change_image(
        &self,
        image_id: &str,
        hint: &str,
        change: impl FnOnce(&mut ImageRecord) -> Result<()>,
    ) -> Result<()> {
        let g = self.images_lock.write()?;
        let mut all = self.load_images()?;
        let img = all
            .iter_mut()
            .find(|i| i.id == image_id)
            .ok_or_else(|| Error::NotFound {
                what: format!("image {image_id}"),
                hint: hint.to_string(),
            })?;
        change(img)?;
        self.save_images(&all, &g)
    }

    /// Change the names of the image `query` resolves to (see [`Store::image`]); added names
    /// are taken from other images. Returns the updated record.
    pub fn update_names(&self, query: &str, names: &[String], op: NameOp) -> Result<ImageRecord> {
        if op != NameOp::Remove {
            validate_names(names)?;
        }
        let g = self.images_lock.write()?;
        let mut all = self.load_images()?;
        let index = resolve_image(&all, query)?;
        if images::set_names(&mut all, index, names, op) {
            self.save_images(&all, &g)?;
        }
        Ok(all[index].clone())
    }

    /// Give the image `query` resolves to more names.
    pub fn add_names(&self, query: &str, names: &[String]) -> Result<ImageRecord> {
        self.update_names(query, names, NameOp::Add)
    }

    /// Take names away from the image `query` resolves to.
    pub fn remove_names(&self, query: &str, names: &[String]) -> Result<ImageRecord> {
        self.update_names(query, names, NameOp::Remove)
    }
}

/// Refuse empty names and names with spaces or control characters.
fn validate_names(names: &[String]) -> Result<()> {
    for n in names {
        if n.is_empty() || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::InvalidReference {
                input: n.clone(),
                reason: "image names must be non-empty and contain no spaces or control characters"
                    .into(),
            });
        }
    }
    Ok(())
}
