//! Writing a layer (what containers/image's `PutLayer` does, split so other modules fill in the
//! content).
//!
//! 1. [`Store::begin_layer`] saves the record with `flags.incomplete` FIRST, then creates
//!    `overlay/<id>/` (`diff/` with the parent's mode or 0555, `link`, `lower`, `work/`,
//!    `merged/`, `empty/` for a base layer) and the `l/<LINK>` symlink. The kernel write lock
//!    on `layers.lock` stays held (pinned) until the layer is finished or aborted, because
//!    every podman process deletes incomplete layers it can lock.
//! 2. The caller extracts the tar into [`LayerHandle::diff_dir`] and writes the tar-split to
//!    [`LayerHandle::create_tar_split`].
//! 3. [`Store::finish_layer`] records digests, sizes, compression and uid/gid sets and clears
//!    the flag; [`Store::abort_layer`] (or dropping the handle) removes everything.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, MetadataExt, OpenOptions, OpenOptionsExt};
use cap_std::fs::{Permissions, PermissionsExt};

use super::layer_read::tar_split_name;
use super::store::{DRIVER, LAYERS_DIR, LINK_DIR};
use super::{ids, layers, GoTime, LayerDigests, LayerRecord, Store};
use crate::error::{Error, ExistingLayer, IoContext, Result};

/// Most lower layers the overlay driver allows below a layer (`maxDepth`).
pub const MAX_LOWER_DEPTH: usize = 128;

/// What a new layer is: see [`Store::begin_layer`].
#[derive(Debug, Clone, Default)]
pub struct NewLayer {
    /// Layer ID (64 hex; see [`ids::layer_id`]).
    pub id: String,
    /// Parent layer ID.
    pub parent: Option<String>,
    /// Unique names (usually none for image layers).
    pub names: Vec<String>,
}

impl Store {
    /// Start a layer: record it as incomplete, create its overlay directories, and return a
    /// handle whose diff directory and tar-split the caller fills. See the module docs.
    ///
    /// The parent must exist; it may still be incomplete if this process is writing it (then
    /// it must be finished before this layer). An existing complete layer with the same ID is
    /// a conflict: check with [`Store::layer`] first and reuse it.
    pub fn begin_layer(&self, new: &NewLayer) -> Result<LayerHandle<'_>> {
        ids::check_id(&new.id, "layer")?;
        if let Some(p) = &new.parent {
            ids::check_id(p, "parent layer")?;
        }
        let overlay = self.overlay()?;
        let g = self.layers_lock.write()?;
        let mut all = self.load_layers()?;
        if let Some(existing) = all.iter().find(|l| l.id == new.id) {
            return Err(Error::LayerExists {
                id: new.id.clone(),
                state: if self.layers_lock.is_pinned(&new.id) {
                    ExistingLayer::BeingWritten
                } else if existing.is_incomplete() {
                    ExistingLayer::Incomplete
                } else {
                    ExistingLayer::Complete
                },
            });
        }
        if let Some(p) = &new.parent {
            let parent = all
                .iter()
                .find(|l| &l.id == p)
                .ok_or_else(|| Error::NotFound {
                    what: format!("parent layer {p} of layer {}", new.id),
                    hint: "write the layers bottom first".into(),
                })?;
            if parent.is_incomplete() && !self.layers_lock.is_pinned(p) {
                return Err(Error::Conflict {
                    what: format!("parent layer {p} of layer {}", new.id),
                    reason: "is incomplete and nobody is writing it".into(),
                });
            }
        }
        for name in &new.names {
            if all.iter().any(|l| l.names.contains(name)) {
                return Err(Error::Conflict {
                    what: format!("layer name {name:?}"),
                    reason: "is already used by another layer".into(),
                });
            }
        }
        if overlay.exists(&new.id) {
            // Content without a record: an orphan of a writer that died before saving the
            // record or after removing it. Nobody references it; start afresh.
            self.remove_layer_files(&new.id)?;
        }
        let mut rec = LayerRecord {
            id: new.id.clone(),
            names: new.names.clone(),
            parent: new.parent.clone().unwrap_or_default(),
            created: Some(GoTime::now()),
            ..Default::default()
        };
        rec.flags.insert(
            layers::INCOMPLETE_FLAG.into(),
            serde_json::Value::Bool(true),
        );
        all.push(rec);
        // The record goes to disk before any directory exists, so an interruption leaves
        // something every reader recognises and cleans up.
        self.save_layers(&all, &g)?;
        g.pin(&new.id);
        let mut handle = LayerHandle {
            store: self,
            id: new.id.clone(),
            diff: None,
            done: false,
        };
        match self.create_layer_dirs(&overlay, &new.id, new.parent.as_deref()) {
            Ok(diff) => {
                handle.diff = Some(diff);
                drop(g);
                Ok(handle)
            }
            Err(e) => {
                drop(g);
                // Dropping the handle removes the record and whatever was created.
                drop(handle);
                Err(e)
            }
        }
    }

    fn create_layer_dirs(&self, overlay: &Dir, id: &str, parent: Option<&str>) -> Result<Dir> {
        let layer_path = self.layer_path(id);
        let io = |op: &'static str, what: String| {
            move |e: std::io::Error| Error::from_io(format!("{op} {what}"), e)
        };
        let (lower, parent_meta) = match parent {
            Some(p) => {
                let link = overlay
                    .read_to_string(Path::new(p).join("link"))
                    .map_err(io(
                        "reading",
                        self.layer_path(p).join("link").display().to_string(),
                    ))?;
                let link = link.trim().to_string();
                let mut lowers = vec![format!("l/{link}")];
                match overlay.read_to_string(Path::new(p).join("lower")) {
                    Ok(s) => lowers.extend(
                        s.trim()
                            .split(':')
                            .filter(|x| !x.is_empty())
                            .map(String::from),
                    ),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(io(
                            "reading",
                            self.layer_path(p).join("lower").display().to_string(),
                        )(e))
                    }
                }
                if lowers.len() > MAX_LOWER_DEPTH {
                    return Err(Error::Unsupported {
                        transport: format!("layer {id}"),
                        reason: format!(
                            "the overlay driver allows at most {MAX_LOWER_DEPTH} layers below a layer; squash the image"
                        ),
                    });
                }
                let meta = overlay.metadata(Path::new(p).join("diff")).map_err(io(
                    "reading",
                    self.layer_path(p).join("diff").display().to_string(),
                ))?;
                (Some(lowers.join(":")), Some(meta))
            }
            None => (None, None),
        };
        let what = |sub: &str| layer_path.join(sub).display().to_string();
        let mut b = DirBuilder::new();
        b.mode(0o700);
        overlay
            .create_dir_with(id, &b)
            .map_err(io("creating", what("")))?;
        let dir = overlay.open_dir(id).map_err(io("opening", what("")))?;
        dir.create_dir_with("diff", &b)
            .map_err(io("creating", what("diff")))?;
        let diff_mode = parent_meta
            .as_ref()
            .map(|m| m.mode() & 0o7777)
            .unwrap_or(0o555);
        dir.set_permissions("diff", Permissions::from_mode(diff_mode))
            .map_err(io("setting mode of", what("diff")))?;
        if let Some(m) = &parent_meta {
            let uid = Some(rustix::fs::Uid::from_raw(m.uid()));
            let gid = Some(rustix::fs::Gid::from_raw(m.gid()));
            match rustix::fs::chownat(
                &dir,
                "diff",
                uid,
                gid,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(rustix::io::Errno::PERM) => {}
                Err(e) => return Err(io("changing owner of", what("diff"))(e.into())),
            }
        }
        let link = loop {
            let candidate = ids::new_link_id();
            match overlay.symlink_contents(
                format!("../{id}/diff"),
                Path::new(LINK_DIR).join(&candidate),
            ) {
                Ok(()) => break candidate,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io(
                        "creating link in",
                        self.graph_root
                            .join(DRIVER)
                            .join(LINK_DIR)
                            .display()
                            .to_string(),
                    )(e))
                }
            }
        };
        write_new_file(&dir, "link", link.as_bytes(), 0o644)
            .map_err(io("writing", what("link")))?;
        if let Some(lower) = &lower {
            write_new_file(&dir, "lower", lower.as_bytes(), 0o644)
                .map_err(io("writing", what("lower")))?;
        }
        dir.create_dir_with("work", &b)
            .map_err(io("creating", what("work")))?;
        dir.create_dir_with("merged", &b)
            .map_err(io("creating", what("merged")))?;
        if parent.is_none() {
            dir.create_dir_with("empty", &b)
                .map_err(io("creating", what("empty")))?;
        }
        dir.open_dir("diff").map_err(io("opening", what("diff")))
    }

    /// Finish a layer begun with [`Store::begin_layer`]: record what its content is and clear
    /// the incomplete flag. The tar-split must have been written and the parent finished.
    /// If finishing fails, the layer is removed (as if aborted) and the error returned.
    pub fn finish_layer(
        &self,
        mut handle: LayerHandle<'_>,
        digests: &LayerDigests,
    ) -> Result<LayerRecord> {
        let id = handle.id.clone();
        if self.open_tar_split(&id)?.is_none() {
            return Err(Error::NotFound {
                what: format!("tar-split of layer {id} ({})", self.tar_split_path(&id).display()),
                hint: "write it before finishing the layer; without it the layer cannot be exported bit for bit".into(),
            });
        }
        let g = self.layers_lock.write()?;
        let mut all = self.load_layers()?;
        if let Some(p) = all.iter().find(|l| l.id == id).map(|l| l.parent.clone()) {
            if let Some(parent) = all.iter().find(|l| l.id == p) {
                if parent.is_incomplete() {
                    return Err(Error::Conflict {
                        what: format!("layer {id}"),
                        reason: format!(
                            "its parent {p} is not finished yet; finish layers bottom first"
                        ),
                    });
                }
            } else if !p.is_empty() {
                return Err(Error::NotFound {
                    what: format!("parent layer {p} of layer {id}"),
                    hint: "it was removed while this layer was written".into(),
                });
            }
        }
        let rec = all
            .iter_mut()
            .find(|l| l.id == id)
            .ok_or_else(|| Error::NotFound {
                what: format!("record of layer {id}"),
                hint: "it was removed while the layer was written".into(),
            })?;
        digests.apply_to(rec);
        rec.flags.remove(layers::INCOMPLETE_FLAG);
        let out = rec.clone();
        self.save_layers(&all, &g)?;
        handle.done = true;
        drop(g);
        self.layers_lock.unpin(&id);
        Ok(out)
    }

    /// Abandon a layer begun with [`Store::begin_layer`], removing its record and files.
    pub fn abort_layer(&self, mut handle: LayerHandle<'_>) -> Result<()> {
        handle.done = true;
        let r = self.abort_layer_id(&handle.id);
        self.layers_lock.unpin(&handle.id);
        r
    }

    pub(super) fn abort_layer_id(&self, id: &str) -> Result<()> {
        let g = self.layers_lock.write()?;
        let mut all = self.load_layers()?;
        self.remove_layer_files(id)?;
        let before = all.len();
        all.retain(|l| l.id != id);
        if all.len() != before {
            self.save_layers(&all, &g)?;
        }
        Ok(())
    }
}

/// A layer being written; see [`Store::begin_layer`]. Dropping it without
/// [`Store::finish_layer`] removes the layer.
#[derive(Debug)]
pub struct LayerHandle<'s> {
    store: &'s Store,
    id: String,
    diff: Option<Dir>,
    done: bool,
}

impl LayerHandle<'_> {
    /// The layer ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The layer's empty `diff/` directory, to extract the layer into.
    pub fn diff_dir(&self) -> &Dir {
        self.diff
            .as_ref()
            .expect("diff dir exists once begin_layer returned")
    }

    /// Remove everything extracted into `diff/` so far (the directory itself stays), for a
    /// second extraction of the layer after its first stream turned out corrupt.
    pub fn empty_diff(&self) -> Result<()> {
        let diff = self.diff_dir();
        let path = self.store.layer_path(&self.id).join("diff");
        for entry in diff.entries().at("listing", &path)? {
            let entry = entry.at("listing", &path)?;
            let name = entry.file_name();
            let is_dir = entry.file_type().at("listing", &path)?.is_dir();
            if is_dir {
                super::files::remove_tree(diff, &name)
            } else {
                diff.remove_file(&name)
            }
            .at("removing", path.join(&name))?;
        }
        Ok(())
    }

    /// Where the tar-split must be written (`overlay-layers/<id>.tar-split.gz`).
    pub fn tar_split_path(&self) -> PathBuf {
        self.store.tar_split_path(&self.id)
    }

    /// Create (truncate) the tar-split file, mode 0600.
    pub fn create_tar_split(&self) -> Result<cap_std::fs::File> {
        let dir = self.store.required_subdir(LAYERS_DIR)?;
        let mut o = OpenOptions::new();
        o.write(true).create(true).truncate(true).mode(0o600);
        dir.open_with(tar_split_name(&self.id), &o)
            .at("creating", self.tar_split_path())
    }

    /// Whether whiteouts must be stored as `.wh.*` files (fuse-overlayfs stores) rather than
    /// 0/0 character devices.
    pub fn mount_program(&self) -> bool {
        self.store.mount_program()
    }
}

impl Drop for LayerHandle<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Best effort; whatever stays is incomplete and is cleaned up on the next open.
            let _ = self.store.abort_layer_id(&self.id);
            self.store.layers_lock.unpin(&self.id);
        }
    }
}

fn write_new_file(dir: &Dir, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = OpenOptions::new();
    o.write(true).create_new(true).mode(mode);
    let mut f = dir.open_with(name, &o)?;
    f.write_all(data)
}
