//! Reading a layer's files: its `diff/` directory, its lower layers and its tar-split.
//!
//! 1. [`Store::layer_diff_dir`] opens `overlay/<id>/diff` (the content to export).
//! 2. [`Store::layer_lowers`] reads `overlay/<id>/lower` and resolves each `l/<LINK>` through
//!    the `overlay/l/` symlink, or, when one is missing, through the layers' `link` files.
//! 3. [`Store::open_tar_split`] opens `overlay-layers/<id>.tar-split.gz`, which rebuilds the
//!    layer tar bit for bit.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use cap_std::fs::Dir;

use super::store::{DRIVER, LAYERS_DIR, LINK_DIR};
use super::{ids, Store};
use crate::error::{Error, IoContext, Result};

impl Store {
    /// The `diff/` directory of layer `id`.
    pub fn layer_diff_dir(&self, id: &str) -> Result<Dir> {
        ids::check_id(id, "layer")?;
        let overlay = self.overlay()?;
        overlay.open_dir(Path::new(id).join("diff")).map_err(|e| {
            Error::io_path(
                "opening layer directory",
                self.layer_path(id).join("diff"),
                e,
            )
        })
    }

    /// The lower layers of layer `id`, nearest first, as the overlay driver finds them: the
    /// `lower` file's `l/<LINK>` entries resolved through the `l/` symlinks, falling back to
    /// the layers' `link` files when a symlink is missing.
    pub fn layer_lowers(&self, id: &str) -> Result<Vec<String>> {
        ids::check_id(id, "layer")?;
        let overlay = self.overlay()?;
        let lower = match overlay.read_to_string(Path::new(id).join("lower")) {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::io_path(
                    "reading",
                    self.layer_path(id).join("lower"),
                    e,
                ))
            }
        };
        let mut by_link: Option<std::collections::HashMap<String, String>> = None;
        let mut out = Vec::new();
        for entry in lower.trim().split(':').filter(|s| !s.is_empty()) {
            let link = entry.strip_prefix("l/").unwrap_or(entry);
            if !ids::is_link_id(link) {
                return Err(Error::Malformed {
                    what: format!("{}", self.layer_path(id).join("lower").display()),
                    reason: format!("entry {entry:?} is not l/<link>"),
                });
            }
            let resolved = overlay
                .read_link_contents(Path::new(LINK_DIR).join(link))
                .ok()
                .and_then(|t| layer_of_link_target(&t));
            let layer = match resolved {
                Some(l) => l,
                None => {
                    let map = match &mut by_link {
                        Some(m) => m,
                        None => by_link.insert(self.scan_links(&overlay)?),
                    };
                    map.get(link).cloned().ok_or_else(|| Error::NotFound {
                        what: format!("lower layer l/{link} of layer {id}"),
                        hint: "no layer has that link name; the store is damaged".into(),
                    })?
                }
            };
            out.push(layer);
        }
        Ok(out)
    }

    /// Map link name → layer ID from every `overlay/<id>/link` file.
    fn scan_links(&self, overlay: &Dir) -> Result<std::collections::HashMap<String, String>> {
        let mut map = std::collections::HashMap::new();
        for entry in overlay
            .entries()
            .ctx(|| format!("listing {}", self.graph_root.join(DRIVER).display()))?
        {
            let entry = entry.ctx(|| "listing overlay/".into())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !ids::is_full_id(&name) {
                continue;
            }
            if let Ok(link) = overlay.read_to_string(Path::new(&name).join("link")) {
                map.insert(link.trim().to_string(), name);
            }
        }
        Ok(map)
    }

    /// The tar-split file of layer `id`, if it has one.
    pub fn open_tar_split(&self, id: &str) -> Result<Option<cap_std::fs::File>> {
        ids::check_id(id, "layer")?;
        let Some(dir) = self.subdir(LAYERS_DIR)? else {
            return Ok(None);
        };
        match dir.open(tar_split_name(id)) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path("opening", self.tar_split_path(id), e)),
        }
    }

    /// Where layer `id`'s tar-split is kept.
    pub fn tar_split_path(&self, id: &str) -> PathBuf {
        self.graph_root.join(LAYERS_DIR).join(tar_split_name(id))
    }
}

/// The tar-split file name of layer `id` inside `overlay-layers/`.
pub(super) fn tar_split_name(id: &str) -> String {
    format!("{id}.tar-split.gz")
}

/// `../<id>/diff` → `<id>`.
fn layer_of_link_target(target: &Path) -> Option<String> {
    let s = target.to_str()?;
    let id = s.strip_prefix("../")?.strip_suffix("/diff")?;
    ids::is_full_id(id).then(|| id.to_string())
}
