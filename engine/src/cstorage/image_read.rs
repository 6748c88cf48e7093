//! Reading an image's content: big data items, the manifest and the config, chosen by the
//! keys containers/image uses.
//!
//! 1. [`Store::big_data`] reads one item under the images read lock.
//! 2. The manifest is big data `manifest` (or `manifest-<digest>` for a digested reference),
//!    each candidate checked against the size limit and, when a digest was asked for, its
//!    digest.
//! 3. The config is big data keyed by the manifest's config digest, else `sha256:<image id>`.

use super::store::IMAGES_DIR;
use super::{bigdata, ids, images, ImageRecord, Store};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{RawConfig, RawManifest, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

impl Store {
    /// Big-data item `key` of image `image_id`, if stored.
    pub fn big_data(&self, image_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
        ids::check_id(image_id, "image")?;
        let _g = self.images_lock.read()?;
        let Some(dir) = self.subdir(IMAGES_DIR)? else {
            return Ok(None);
        };
        bigdata::read(&dir, image_id, key)
            .map_err(|e| Error::from_io(format!("reading big data {key:?} of image {image_id}"), e))
    }

    /// The manifest of `image` as containers/image reads it for a reference without a
    /// digest: big data `manifest` (the last manifest stored), falling back to
    /// `manifest-<image digest>` for stores that lack the legacy key.
    pub fn image_manifest_bytes(&self, image: &ImageRecord) -> Result<Vec<u8>> {
        let mut keys = vec![images::MANIFEST_KEY.to_string()];
        if let Some(d) = image.manifest_digest() {
            keys.push(images::manifest_key(&d));
        }
        self.first_manifest(image, &keys, None)
    }

    /// The manifest of `image` with digest `digest` (for `name@digest` references):
    /// big data `manifest-<digest>`, else `manifest` if that is the one with this digest.
    pub fn image_manifest_bytes_by_digest(
        &self,
        image: &ImageRecord,
        digest: &Digest,
    ) -> Result<Vec<u8>> {
        let keys = [
            images::manifest_key(digest),
            images::MANIFEST_KEY.to_string(),
        ];
        self.first_manifest(image, &keys, Some(digest))
    }

    fn first_manifest(
        &self,
        image: &ImageRecord,
        keys: &[String],
        digest: Option<&Digest>,
    ) -> Result<Vec<u8>> {
        for key in keys {
            if let Some(b) = self.big_data(&image.id, key)? {
                if b.len() as u64 > MAX_MANIFEST_SIZE {
                    return Err(Error::Malformed {
                        what: format!("manifest of image {}", image.id),
                        reason: format!(
                            "{} bytes, more than the {MAX_MANIFEST_SIZE} byte limit",
                            b.len()
                        ),
                    });
                }
                if digest.is_some_and(|d| bigdata::digest_of(key, &b) != *d) {
                    continue;
                }
                return Ok(b);
            }
        }
        Err(Error::NotFound {
            what: format!(
                "manifest{} of image {} (big data {})",
                digest.map(|d| format!(" {d}")).unwrap_or_default(),
                image.id,
                keys.join(", ")
            ),
            hint: "the image is incomplete or was stored without that manifest; pull it again"
                .into(),
        })
    }

    /// The parsed manifest of `image` (see [`Store::image_manifest_bytes`]).
    pub fn image_manifest(&self, image: &ImageRecord) -> Result<RawManifest> {
        let bytes = self.image_manifest_bytes(image)?;
        RawManifest::parse(bytes, None, &format!("manifest of image {}", image.id))
    }

    /// The config of `image`: big data keyed by the manifest's config digest, else by
    /// `sha256:<image id>`.
    pub fn image_config(&self, image: &ImageRecord) -> Result<RawConfig> {
        let what = format!("image {}", image.id);
        let mut keys = Vec::new();
        if let Ok(m) = self.image_manifest(image) {
            if let Some(im) = m.image() {
                keys.push(im.config().digest().to_string());
            }
        }
        if ids::is_full_id(&image.id) {
            let k = format!("sha256:{}", image.id);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for key in &keys {
            if let Some(b) = self.big_data(&image.id, key)? {
                if b.len() as u64 > MAX_CONFIG_SIZE {
                    return Err(Error::Malformed {
                        what: format!("config of {what}"),
                        reason: format!(
                            "{} bytes, more than the {MAX_CONFIG_SIZE} byte limit",
                            b.len()
                        ),
                    });
                }
                return RawConfig::parse(b, &what);
            }
        }
        Err(Error::NotFound {
            what: format!("config of {what} (big data {})", keys.join(", ")),
            hint: "the image is incomplete; pull it again".into(),
        })
    }
}
