//! containers-storage as a copy destination.
//!
//! Writing an image (what containers/image's storage destination does, streamed):
//! 1. Layer IDs come from the config's diffIDs ([`ids::layer_ids`]); a layer whose ID is
//!    already in the store is reused and not fetched (also when another writer stores it
//!    between that check and the start of this copy's write).
//! 2. Each missing layer is begun in order (its record saved with `flags.incomplete` before
//!    anything else; the parent must exist first), then extracted while its tar-split is written
//!    in the same pass — several layers at once — and finished in order (a child is finished
//!    only after its parent). The pipeline's [`LayerInput::decode`] hands the extractor the
//!    uncompressed tar, verified against the diffID. When the source rebuilt the tar from
//!    files on disk (an ostree repository, another store), the extractor reflinks or
//!    hard-links those files instead of writing their bytes ([`crate::fs_clone`]).
//! 3. The image record is created with the config digest as ID (and as digest the index's
//!    when the image was chosen from one, else the manifest's), then its big data (config, the
//!    index as `manifest-<index digest>` when there was one, `manifest-<digest>`, `manifest`,
//!    an empty signature), its metadata and its name — the order containers/image uses.
//! 4. A layer whose stream fails verification while the pipeline will fetch it again
//!    ([`LayerInput::will_retry_on_corruption`]) stays begun with its `diff/` emptied, so the
//!    layers above, possibly extracting already, keep their parent and `lower` links; the
//!    second stream is extracted into it. A layer that fails otherwise (or is reported by
//!    `layer_failed`) is aborted, and the layers waiting on it fail naming it.
//!
//! 5. A layer found in the store (or written) that another process removes before anything
//!    of this copy references it (`podman rmi` of the image it belonged to, between the check
//!    and the `begin_layer` of the layer above or the image record) fails the write with
//!    [`Error::LayerRemoved`]; the pipeline then starts the image over and writes it anew.
//!
//! While a layer is incomplete the store's `layers.lock` stays write-locked (as in
//! containers/storage's own `PutLayer`), because any podman process would otherwise delete the
//! half-written layer.

use std::io;
use std::sync::{Condvar, Mutex};

use super::chunked::ContentIndex;
use super::{ids, LayerDigests, LayerHandle, NewImage, NewLayer, Store};
use crate::compression::zstd_chunked::LocalFiles;
use crate::compression::Compression;
use crate::copy::{
    CommitResult, FinalImage, ImagePlan, ImageSink, ImageWriter, LayerForm, LayerInput, LayerLabel,
    StoredLayer,
};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer_tar::{extract_layer_sharing, ExtractOptions, WhiteoutMode};
use crate::tar_split::TarSplitWriter;

/// A containers-storage store as a copy destination, writing one image name.
pub struct StorageSink {
    store: Store,
    name: Option<String>,
    additional_names: Vec<String>,
}

impl StorageSink {
    /// Write into `store`, naming the image `name` (fully qualified, e.g.
    /// `docker.io/library/busybox:latest`), or leaving it unnamed.
    pub fn new(store: Store, name: Option<String>) -> Self {
        StorageSink {
            store,
            name,
            additional_names: Vec::new(),
        }
    }

    /// Give the image these names as well (`--additional-tag`; fully qualified).
    pub fn with_additional_names(mut self, names: Vec<String>) -> Self {
        self.additional_names = names;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, given back.
    pub fn into_store(self) -> Store {
        self.store
    }
}

impl ImageSink for StorageSink {
    fn location(&self) -> Option<std::path::PathBuf> {
        Some(self.store.graph_root().to_path_buf())
    }
    fn name(&self) -> String {
        format!(
            "containers-storage:{}{}",
            self.store.spec(),
            self.name.as_deref().unwrap_or("")
        )
    }

    fn index_support(&self) -> Result<()> {
        Err(Error::Unsupported {
            transport: self.name(),
            reason: "containers-storage stores one platform's image, as podman does, not a whole index; leave out --all/--multi-arch (the host's platform is copied) and choose another with --override-arch/--override-os/--override-variant, or copy the index into oci:DIR or docker://".into(),
        })
    }

    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>> {
        let diff_ids: Vec<Digest> = plan.layers.iter().map(|l| l.diff_id.clone()).collect();
        let layer_ids = ids::layer_ids(&diff_ids);
        let whiteouts = if self.store.mount_program() {
            WhiteoutMode::Files
        } else {
            WhiteoutMode::overlay_for_current_user()
        };
        let extract = ExtractOptions::for_current_user(whiteouts);
        let states = layer_ids.iter().map(|_| LayerState::Pending).collect();
        Ok(Box::new(StorageWriter {
            sink: self,
            plan: plan.clone(),
            layer_ids,
            extract,
            states: Mutex::new(states),
            causes: Mutex::new(vec![None; plan.layers.len()]),
            changed: Condvar::new(),
            retained: Mutex::new(plan.layers.iter().map(|_| None).collect()),
            finished: Default::default(),
            content: std::sync::OnceLock::new(),
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerState {
    Pending,
    Begun,
    Done,
    Failed,
}

struct StorageWriter<'s> {
    sink: &'s StorageSink,
    plan: ImagePlan,
    layer_ids: Vec<String>,
    extract: ExtractOptions,
    states: Mutex<Vec<LayerState>>,
    /// Why each failed layer failed, so the layers above it can say.
    causes: Mutex<Vec<Option<String>>>,
    changed: Condvar,
    /// Layers whose first stream was corrupt, kept begun (diff emptied) for the pipeline's
    /// second fetch, so the layers above, which may already be extracting on top of them,
    /// keep a valid parent.
    retained: Mutex<Vec<Option<LayerHandle<'s>>>>,
    /// Layers this writer finished (kept if the copy stops).
    finished: std::sync::atomic::AtomicUsize,
    /// The store's files by content, built when a zstd:chunked layer first asks
    /// ([`super::chunked`]); `None` inside when it could not be built.
    content: std::sync::OnceLock<Option<ContentIndex<'s>>>,
}

impl StorageWriter<'_> {
    fn set_state(&self, i: usize, s: LayerState) {
        self.states.lock().unwrap()[i] = s;
        self.changed.notify_all();
    }

    /// Mark layer `i` failed because of `e`.
    fn fail(&self, i: usize, e: &Error) {
        self.causes.lock().unwrap()[i] = Some(e.to_string());
        self.set_state(i, LayerState::Failed);
    }

    /// Wait until layer `i` is at least `at_least` (Begun < Done); error (naming the cause) if
    /// it failed.
    fn wait_for(&self, i: usize, at_least: LayerState) -> Result<()> {
        let mut states = self.states.lock().unwrap();
        loop {
            match (states[i], at_least) {
                (LayerState::Failed, _) => {
                    let cause = self.causes.lock().unwrap()[i].clone().unwrap_or_default();
                    let above = LayerLabel {
                        index: i + 1,
                        digest: self.plan.layers[i + 1].descriptor.digest().clone(),
                        image: self.plan.source_name.clone(),
                    };
                    return Err(Error::Conflict {
                        what: above.to_string(),
                        reason: format!(
                            "not stored because layer {} below it failed: {cause}",
                            i + 1
                        ),
                    });
                }
                (LayerState::Done, _) | (LayerState::Begun, LayerState::Begun) => return Ok(()),
                _ => states = self.changed.wait(states).unwrap(),
            }
        }
    }

    fn store(&self) -> &Store {
        &self.sink.store
    }

    /// `e`, a failure to write on top of layer `below + 1`'s parent (`begin_layer` of layer
    /// `below`, or the image record on the top layer when `below` is the layer count), as
    /// [`Error::LayerRemoved`] when that layer, done (reused or written), is no longer in
    /// the store: another process removed it (`podman rmi` of the image it came from) in
    /// the window before anything of this copy referenced it.
    fn removed_below(&self, below: usize, e: Error) -> Error {
        let parent = below - 1;
        let id = &self.layer_ids[parent];
        if !matches!(e, Error::NotFound { .. })
            || self.states.lock().unwrap()[parent] != LayerState::Done
            || !matches!(self.store().layer(id), Err(Error::NotFound { .. }))
        {
            return e;
        }
        Error::LayerRemoved {
            id: id.clone(),
            what: LayerLabel {
                index: parent,
                digest: self.plan.layers[parent].descriptor.digest().clone(),
                image: self.plan.source_name.clone(),
            }
            .to_string(),
        }
    }

    fn write_layer(
        &self,
        mut input: LayerInput<'_>,
        handle: &LayerHandle<'_>,
    ) -> Result<LayerDigests> {
        let plan = &self.plan.layers[input.index];
        let what = input.label.to_string();
        let tar_layer = input.label.for_tar_errors();
        let form = input.form;
        let partial = input.partial.is_some();
        let tar_split = handle.create_tar_split()?;
        let mut ts = TarSplitWriter::new(io::BufWriter::new(tar_split));
        let writable = WritableRoot::new(handle.diff_dir(), &what)?;
        let sharing = input.take_sharing();
        let decoded = input.decode(|tar| {
            extract_layer_sharing(
                tar,
                handle.diff_dir(),
                &self.extract,
                &tar_layer,
                Some(&mut ts),
                sharing.as_ref(),
            )
        })?;
        writable.restore(handle.diff_dir(), &what)?;
        let out = ts.finish()?;
        let file = out.into_inner().map_err(|e| {
            Error::from_io(format!("writing the tar-split of {what}"), e.into_error())
        })?;
        file.sync_all()
            .ctx(|| format!("syncing the tar-split of {what}"))?;
        // A partial pull streamed the tar, but the layer came from the zstd:chunked blob.
        let (compressed_digest, compressed_size, compression) = match (form, partial) {
            (_, true) => (
                plan.descriptor.digest().clone(),
                plan.descriptor.size(),
                Compression::Zstd,
            ),
            (LayerForm::Blob, false) => (
                plan.descriptor.digest().clone(),
                plan.descriptor.size(),
                decoded.compression,
            ),
            (LayerForm::Diff, false) => {
                (plan.diff_id.clone(), decoded.diff_size, decoded.compression)
            }
        };
        Ok(LayerDigests {
            compressed_digest: Some(compressed_digest),
            compressed_size: Some(compressed_size),
            diff_digest: plan.diff_id.clone(),
            diff_size: decoded.diff_size,
            compression,
            uid_set: decoded.value.uids,
            gid_set: decoded.value.gids,
        })
    }
}

/// The diff directory made writable for extraction when not running as root.
///
/// containers/storage creates `diff/` read-only (0555, or the parent's mode); root writes into
/// it anyway, an unprivileged user cannot. So the owner's write bit is added while extracting,
/// and the mode is put back afterwards unless the layer's own `./` entry set one.
struct WritableRoot {
    saved: Option<(u32, u32)>,
}

impl WritableRoot {
    fn new(dir: &cap_std::fs::Dir, what: &str) -> Result<Self> {
        use rustix::fs::{chmodat, statat, AtFlags, Mode};
        if rustix::process::geteuid().is_root() {
            return Ok(WritableRoot { saved: None });
        }
        let st = statat(dir, ".", AtFlags::empty()).map_err(|e| {
            Error::from_io(format!("stat of the diff directory of {what}"), e.into())
        })?;
        let original = st.st_mode & 0o7777;
        let temporary = original | 0o700;
        if temporary == original {
            return Ok(WritableRoot { saved: None });
        }
        chmodat(dir, ".", Mode::from_raw_mode(temporary), AtFlags::empty()).map_err(|e| {
            Error::from_io(
                format!("making the diff directory of {what} writable"),
                e.into(),
            )
        })?;
        Ok(WritableRoot {
            saved: Some((original, temporary)),
        })
    }

    fn restore(&self, dir: &cap_std::fs::Dir, what: &str) -> Result<()> {
        use rustix::fs::{chmodat, statat, AtFlags, Mode};
        let Some((original, temporary)) = self.saved else {
            return Ok(());
        };
        let st = statat(dir, ".", AtFlags::empty()).map_err(|e| {
            Error::from_io(format!("stat of the diff directory of {what}"), e.into())
        })?;
        if st.st_mode & 0o7777 == temporary {
            chmodat(dir, ".", Mode::from_raw_mode(original), AtFlags::empty()).map_err(|e| {
                Error::from_io(
                    format!("restoring the mode of the diff directory of {what}"),
                    e.into(),
                )
            })?;
        }
        Ok(())
    }
}

impl<'s> ImageWriter for StorageWriter<'s> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        let id = &self.layer_ids[index];
        match self.store().layer(id) {
            Ok(_) => {
                self.set_state(index, LayerState::Done);
                Ok(Some(StoredLayer {
                    descriptor: self.plan.layers[index].descriptor.clone(),
                }))
            }
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        let i = input.index;
        let will_retry = input.will_retry_on_corruption;
        let store: &'s Store = &self.sink.store;
        let kept_for_retry = std::cell::Cell::new(false);
        let result = (|| {
            let retained = self.retained.lock().unwrap()[i].take();
            let handle = match retained {
                Some(h) => h,
                None => {
                    if i > 0 {
                        self.wait_for(i - 1, LayerState::Begun)?;
                    }
                    let new = NewLayer {
                        id: self.layer_ids[i].clone(),
                        parent: i.checked_sub(1).map(|p| self.layer_ids[p].clone()),
                        names: vec![],
                    };
                    match store.begin_layer(&new) {
                        Ok(h) => h,
                        // Another writer stored the layer after `existing_layer` found it
                        // missing (a concurrent copy of an image sharing it): reuse it, as
                        // containers/image does.
                        Err(Error::LayerExists { .. }) if store.layer(&new.id).is_ok() => {
                            return Ok(());
                        }
                        Err(e) => {
                            // The parent may have failed and been removed just after this
                            // layer saw it begun ("parent layer not found"): then the parent's
                            // failure is the cause.
                            if i > 0 {
                                self.wait_for(i - 1, LayerState::Done)?;
                                return Err(self.removed_below(i, e));
                            }
                            return Err(e);
                        }
                    }
                }
            };
            self.set_state(i, LayerState::Begun);
            // The TOC of a zstd:chunked layer is kept for later partial pulls: the partial
            // pull's, or, for a whole blob, read from its end as it streams.
            let toc = input.partial.as_ref().map(|p| p.toc_json.clone());
            // Dropping the handle on error aborts the layer (record, directories, link).
            let digests = match self.write_layer(input, &handle) {
                Ok(d) => d,
                Err(e)
                    if will_retry
                        && matches!(
                            e,
                            Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
                        ) =>
                {
                    handle.empty_diff()?;
                    self.retained.lock().unwrap()[i] = Some(handle);
                    kept_for_retry.set(true);
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            if i > 0 {
                self.wait_for(i - 1, LayerState::Done)?;
            }
            let id = handle.id().to_string();
            store.finish_layer(handle, &digests)?;
            if let Some(toc) = toc {
                store.set_layer_toc(&id, &toc)?;
            }
            self.finished
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.set_state(i, LayerState::Done);
                Ok(StoredLayer {
                    descriptor: self.plan.layers[i].descriptor.clone(),
                })
            }
            // Still begun: the pipeline offers the layer again.
            Err(e) if kept_for_retry.get() => Err(e),
            Err(e) => {
                self.fail(i, &e);
                Err(e)
            }
        }
    }

    fn layer_failed(&self, index: usize, error: &Error) {
        // A layer kept for a second fetch that will not come is removed now.
        drop(self.retained.lock().unwrap()[index].take());
        if self.states.lock().unwrap()[index] != LayerState::Done {
            self.fail(index, error);
        }
    }

    fn layers_kept(&self) -> usize {
        self.finished.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn local_files(&self) -> Option<&dyn LocalFiles> {
        self.content
            .get_or_init(|| ContentIndex::build(&self.sink.store).ok())
            .as_ref()
            .map(|c| c as &dyn LocalFiles)
    }

    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult> {
        let store = self.store();
        let id = ids::image_id(image.config_descriptor.digest());
        let created = image
            .config
            .parsed
            .created()
            .as_deref()
            .and_then(super::GoTime::parse);
        let manifest_digest = image.manifest.digest.clone();
        // containers/image stores the index an image was chosen from before the image's own
        // manifest and lets containers/storage take the image digest from the first manifest
        // big data: an image pulled through an index is recorded under the index digest.
        let image_digest = match &image.index {
            Some(index) => index.digest.clone(),
            None => manifest_digest.clone(),
        };
        // Everything of the image in one record write, its files first (image_write step 1),
        // the items in containers/image's order: the config, the index the image was chosen
        // from, the manifest by digest, `manifest`, the (empty) signatures.
        let mut big_data = vec![(
            image.config_descriptor.digest().to_string(),
            image.config.bytes.clone(),
        )];
        if let Some(index) = &image.index {
            big_data.push((format!("manifest-{}", index.digest), index.bytes.clone()));
        }
        big_data.push((
            format!("manifest-{manifest_digest}"),
            image.manifest.bytes.clone(),
        ));
        big_data.push(("manifest".to_string(), image.manifest.bytes.clone()));
        big_data.push((
            format!("signature-{}", manifest_digest.digest()),
            Vec::new(),
        ));
        let metadata =
            serde_json::json!({ "signatures-sizes": { manifest_digest.to_string(): [] } });
        store
            .create_image(&NewImage {
                id: id.clone(),
                top_layer: self.layer_ids.last().cloned(),
                digest: Some(image_digest),
                created,
                metadata: Some(metadata.to_string()),
                names: vec![],
                big_data,
            })
            .map_err(|e| match self.layer_ids.len() {
                0 => e,
                n => self.removed_below(n, e),
            })?;
        let names: Vec<String> = self
            .sink
            .name
            .iter()
            .chain(&self.sink.additional_names)
            .cloned()
            .collect();
        if !names.is_empty() {
            store.add_names(&id, &names)?;
        }
        Ok(CommitResult { image_id: Some(id) })
    }
}
