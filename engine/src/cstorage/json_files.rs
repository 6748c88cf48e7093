//! Reading and replacing the store's JSON files: `overlay-layers/layers.json`,
//! `overlay-images/images.json` and `overlay-containers/containers.json`.
//!
//! 1. Loading reads the whole file (an absent file or directory is an empty list) and parses
//!    it with the record module's parser ([`layers`](super::layers),
//!    [`images`](super::images), [`containers`](super::containers)); all three read the JSON
//!    array with [`parse_records`] (empty or blank content is an empty list, as in Go), the
//!    images parser then checks the digests; errors name the file.
//! 2. Saving serialises the records, replaces the file atomically (temp file, fsync, rename)
//!    and writes a fresh last-writer token into the lock file whose write guard the caller
//!    holds, so other processes see the change.
//!
//! The caller holds the lock: these helpers take none themselves, except
//! [`Store::read_containers_locked`].

use super::lockfile::WriteGuard;
use super::store::{CONTAINERS_DIR, IMAGES_DIR, LAYERS_DIR};
use super::{containers, files, images, layers, ContainerRecord, ImageRecord, LayerRecord, Store};
use crate::error::{Error, IoContext, Result};

/// Parse the content of one of the store's JSON files, a JSON array of records; empty or
/// blank content is an empty list (Go treats an empty file so). `what` names the file in the
/// error.
pub(super) fn parse_records<T: serde::de::DeserializeOwned>(
    data: &[u8],
    what: &str,
) -> Result<Vec<T>> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    serde_json::from_slice(data).map_err(|e| Error::Json {
        what: what.to_string(),
        source: e,
    })
}

impl Store {
    pub(super) fn read_json_file(&self, dir: &str, file: &str) -> Result<Vec<u8>> {
        let Some(d) = self.subdir(dir)? else {
            return Ok(Vec::new());
        };
        Ok(files::read_optional(&d, file)
            .at("reading", self.graph_root.join(dir).join(file))?
            .unwrap_or_default())
    }

    /// Read and parse one of the store's JSON files (an absent file is an empty list); errors
    /// name the file's path.
    pub(super) fn load_json<T>(
        &self,
        dir: &str,
        file: &str,
        parse: fn(&[u8], &str) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let data = self.read_json_file(dir, file)?;
        parse(
            &data,
            &self.graph_root.join(dir).join(file).display().to_string(),
        )
    }

    pub(super) fn write_json_file(
        &self,
        dir: &str,
        file: &str,
        data: &[u8],
        guard: &WriteGuard<'_>,
    ) -> Result<()> {
        let d = self.required_subdir(dir)?;
        files::atomic_write(&d, file, data, 0o600)
            .at("writing", self.graph_root.join(dir).join(file))?;
        guard.touch()
    }

    pub(super) fn load_layers(&self) -> Result<Vec<LayerRecord>> {
        self.load_json(LAYERS_DIR, "layers.json", layers::parse)
    }

    pub(super) fn save_layers(&self, l: &[LayerRecord], guard: &WriteGuard<'_>) -> Result<()> {
        self.write_json_file(LAYERS_DIR, "layers.json", &layers::serialize(l), guard)
    }

    pub(super) fn load_images(&self) -> Result<Vec<ImageRecord>> {
        self.load_json(IMAGES_DIR, "images.json", images::parse)
    }

    pub(super) fn save_images(&self, i: &[ImageRecord], guard: &WriteGuard<'_>) -> Result<()> {
        self.write_json_file(IMAGES_DIR, "images.json", &images::serialize(i), guard)
    }

    pub(super) fn load_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.load_json(CONTAINERS_DIR, "containers.json", containers::parse)
    }

    pub(super) fn read_containers_locked(&self) -> Result<Vec<ContainerRecord>> {
        if self.subdir(CONTAINERS_DIR)?.is_none() {
            return Ok(Vec::new());
        }
        let _g = self.containers_lock.read()?;
        self.load_containers()
    }
}
