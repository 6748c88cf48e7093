//! containers-storage with the overlay driver: the store podman, buildah, skopeo and CRI-O
//! share (`/var/lib/containers/storage`), read and written the way containers/storage 1.43
//! does, so that podman sees what stowage wrote and the other way round.
//!
//! Layout below the graph root `R`:
//! `overlay/<layer>/{diff,link,lower,work,merged,empty}` and `overlay/l/<LINK>` symlinks for
//! layer content, `overlay-layers/layers.json` + `<layer>.tar-split.gz` for layer records,
//! `overlay-images/images.json` + `overlay-images/<image>/` big data for images, and
//! `overlay-containers/containers.json` (read only here).
//!
//! Reading: every call takes the read lock of the JSON file it reads ([`lockfile`]), parses the
//! file anew (so there is no cache to go stale), and releases the lock.
//!
//! Writing a layer (what containers/image's `PutLayer` does, split so other modules fill in the
//! content):
//! 1. [`Store::begin_layer`] saves the record with `flags.incomplete` FIRST, then creates
//!    `overlay/<id>/` (`diff/` with the parent's mode or 0555, `link`, `lower`, `work/`,
//!    `merged/`, `empty/` for a base layer) and the `l/<LINK>` symlink. The kernel write lock on
//!    `layers.lock` stays held (pinned) until the layer is finished or aborted, because every
//!    podman process deletes incomplete layers it can lock.
//! 2. The caller extracts the tar into [`LayerHandle::diff_dir`] and writes the tar-split to
//!    [`LayerHandle::create_tar_split`].
//! 3. [`Store::finish_layer`] records digests, sizes, compression and uid/gid sets and clears
//!    the flag; [`Store::abort_layer`] (or dropping the handle) removes everything.
//!
//! Writing an image: [`Store::create_image`] (reuses an existing ID, only adding names), then
//! [`Store::set_big_data`] for the config, `manifest-<digest>`, `manifest` and signatures, then
//! [`Store::set_image_metadata`] and [`Store::add_names`] — the order containers/image uses.
//!
//! Every change is an atomic replace of the JSON file followed by a fresh last-writer token in
//! its lock file. Lock order is `layers.lock`, `images.lock`, `containers.lock`.

pub mod bigdata;
pub mod catalog;
pub mod clone;
pub mod containers;
mod files;
pub mod gotime;
pub mod ids;
pub mod images;
pub mod layers;
pub mod lockfile;
mod naming;
mod sink;
mod source;

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, MetadataExt, OpenOptions, OpenOptionsExt};
use cap_std::fs::{Permissions, PermissionsExt};

pub use containers::ContainerRecord;
pub use gotime::GoTime;
pub use images::{ImageRecord, NameOp};
pub use layers::{LayerDigests, LayerRecord};
use lockfile::{LockFile, ReadGuard, WriteGuard};
pub use sink::StorageSink;
pub use source::StorageSource;

use crate::digest::{parse_digest, Digest};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{RawConfig, RawManifest, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE};

/// The only graph driver stowage implements.
pub const DRIVER: &str = "overlay";

/// Drivers containers/storage knows, to name them when refusing a store that uses one.
const OTHER_DRIVERS: [&str; 6] = [
    "vfs",
    "btrfs",
    "zfs",
    "devicemapper",
    "aufs",
    "windowsfilter",
];

/// Most lower layers the overlay driver allows below a layer (`maxDepth`).
pub const MAX_LOWER_DEPTH: usize = 128;

const LAYERS_DIR: &str = "overlay-layers";
const IMAGES_DIR: &str = "overlay-images";
const CONTAINERS_DIR: &str = "overlay-containers";
const LINK_DIR: &str = "l";

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
}

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

/// A containers-storage store with the overlay driver.
#[derive(Debug)]
pub struct Store {
    graph_root: PathBuf,
    run_root: Option<PathBuf>,
    read_only: bool,
    /// `None` when a read-only store's graph root does not exist: an empty store.
    root: Option<Dir>,
    layers_lock: LockFile,
    images_lock: LockFile,
    containers_lock: LockFile,
}

fn mkdir(parent: &Dir, name: &str, mode: u32) -> Result<()> {
    let mut b = DirBuilder::new();
    b.mode(mode);
    match parent.create_dir_with(name, &b) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::from_io(format!("creating directory {name}"), e)),
    }
}

fn check_driver(graph_root: &Path, root: Option<&Dir>, driver: Option<&str>) -> Result<()> {
    let refuse = |d: &str| {
        Error::Unsupported {
        transport: format!("containers-storage driver {d:?} at {}", graph_root.display()),
        reason: "only the overlay driver is supported; use an overlay store (storage driver \"overlay\") or copy the image with skopeo".into(),
    }
    };
    match driver {
        Some(DRIVER) => Ok(()),
        Some(other) => Err(refuse(other)),
        None => {
            let Some(root) = root else { return Ok(()) };
            if root.exists(DRIVER) || root.exists(LAYERS_DIR) {
                return Ok(());
            }
            match OTHER_DRIVERS
                .iter()
                .find(|d| root.exists(format!("{d}-layers")) || root.exists(d))
            {
                Some(d) => Err(refuse(d)),
                None => Ok(()),
            }
        }
    }
}

impl Store {
    /// Open (creating if needed) the store at `graph_root` for reading and writing.
    /// `driver` is the storage driver asked for (`None`: the one already used at the root,
    /// else overlay); anything but overlay is refused. Incomplete layers left by an
    /// interrupted writer are deleted, as containers/storage does.
    pub fn open(graph_root: &Path, run_root: Option<&Path>, driver: Option<&str>) -> Result<Store> {
        let graph_root = std::path::absolute(graph_root)
            .map_err(|e| Error::io_path("resolving", graph_root, e))?;
        if let Some(d) = driver {
            check_driver(&graph_root, None, Some(d))?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&graph_root)
            .map_err(|e| Error::io_path("creating storage root", &graph_root, e))?;
        let root = Dir::open_ambient_dir(&graph_root, ambient_authority())
            .map_err(|e| Error::io_path("opening storage root", &graph_root, e))?;
        check_driver(&graph_root, Some(&root), driver)?;
        mkdir(&root, DRIVER, 0o700)?;
        let overlay = root.open_dir(DRIVER).ctx(|| "opening overlay/".into())?;
        mkdir(&overlay, LINK_DIR, 0o755)?;
        mkdir(&root, LAYERS_DIR, 0o700)?;
        mkdir(&root, IMAGES_DIR, 0o700)?;
        let run_root = match run_root {
            Some(rr) => {
                let rr = std::path::absolute(rr).map_err(|e| Error::io_path("resolving", rr, e))?;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&rr)
                    .map_err(|e| Error::io_path("creating run root", &rr, e))?;
                Some(rr)
            }
            None => None,
        };
        let store = Store::with_root(graph_root, run_root, Some(root), false);
        store.remove_incomplete_layers()?;
        Ok(store)
    }

    /// Open the store at `graph_root` for reading only: nothing is created, no lock file is
    /// written, and a missing root is an empty store.
    pub fn open_read_only(graph_root: &Path, driver: Option<&str>) -> Result<Store> {
        let graph_root = std::path::absolute(graph_root)
            .map_err(|e| Error::io_path("resolving", graph_root, e))?;
        let root = match Dir::open_ambient_dir(&graph_root, ambient_authority()) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io_path("opening storage root", &graph_root, e)),
        };
        check_driver(&graph_root, root.as_ref(), driver)?;
        Ok(Store::with_root(graph_root, None, root, true))
    }

    fn with_root(
        graph_root: PathBuf,
        run_root: Option<PathBuf>,
        root: Option<Dir>,
        read_only: bool,
    ) -> Store {
        let lock =
            |dir: &str, name: &str| LockFile::new(&graph_root.join(dir).join(name), read_only);
        Store {
            layers_lock: lock(LAYERS_DIR, "layers.lock"),
            images_lock: lock(IMAGES_DIR, "images.lock"),
            containers_lock: lock(CONTAINERS_DIR, "containers.lock"),
            graph_root,
            run_root,
            read_only,
            root,
        }
    }

    /// The graph root (absolute).
    pub fn graph_root(&self) -> &Path {
        &self.graph_root
    }

    /// The run root, if one was given.
    pub fn run_root(&self) -> Option<&Path> {
        self.run_root.as_deref()
    }

    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the store uses a mount program (fuse-overlayfs): then whiteouts are stored as
    /// `.wh.*` files; otherwise as 0/0 character devices and `trusted.overlay.opaque` xattrs.
    pub fn mount_program(&self) -> bool {
        self.root
            .as_ref()
            .and_then(|r| r.read_to_string("overlay/.has-mount-program").ok())
            .is_some_and(|s| s.trim() == "true")
    }

    /// The directory of layer `id`'s overlay data (`R/overlay/<id>`), for display.
    pub fn layer_path(&self, id: &str) -> PathBuf {
        self.graph_root.join(DRIVER).join(id)
    }

    // ----- directories and JSON files ------------------------------------------------------

    fn subdir(&self, name: &str) -> Result<Option<Dir>> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        match root.open_dir(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path("opening", self.graph_root.join(name), e)),
        }
    }

    fn required_subdir(&self, name: &str) -> Result<Dir> {
        self.subdir(name)?.ok_or_else(|| Error::NotFound {
            what: format!("directory {}", self.graph_root.join(name).display()),
            hint: "the store is incomplete; open it for writing to create it".into(),
        })
    }

    fn overlay(&self) -> Result<Dir> {
        self.required_subdir(DRIVER)
    }

    fn read_json_file(&self, dir: &str, file: &str) -> Result<Vec<u8>> {
        let Some(d) = self.subdir(dir)? else {
            return Ok(Vec::new());
        };
        Ok(files::read_optional(&d, file)
            .map_err(|e| Error::io_path("reading", self.graph_root.join(dir).join(file), e))?
            .unwrap_or_default())
    }

    /// Read and parse one of the store's JSON files (an absent file is an empty list); errors
    /// name the file's path.
    fn load_json<T>(
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

    fn write_json_file(
        &self,
        dir: &str,
        file: &str,
        data: &[u8],
        guard: &WriteGuard<'_>,
    ) -> Result<()> {
        let d = self.required_subdir(dir)?;
        files::atomic_write(&d, file, data, 0o600)
            .map_err(|e| Error::io_path("writing", self.graph_root.join(dir).join(file), e))?;
        guard.touch()
    }

    fn load_layers(&self) -> Result<Vec<LayerRecord>> {
        self.load_json(LAYERS_DIR, "layers.json", layers::parse)
    }

    fn save_layers(&self, l: &[LayerRecord], guard: &WriteGuard<'_>) -> Result<()> {
        self.write_json_file(LAYERS_DIR, "layers.json", &layers::serialize(l), guard)
    }

    fn load_images(&self) -> Result<Vec<ImageRecord>> {
        self.load_json(IMAGES_DIR, "images.json", images::parse)
    }

    fn save_images(&self, i: &[ImageRecord], guard: &WriteGuard<'_>) -> Result<()> {
        self.write_json_file(IMAGES_DIR, "images.json", &images::serialize(i), guard)
    }

    fn load_containers(&self) -> Result<Vec<ContainerRecord>> {
        self.load_json(CONTAINERS_DIR, "containers.json", containers::parse)
    }

    fn read_containers_locked(&self) -> Result<Vec<ContainerRecord>> {
        if self.subdir(CONTAINERS_DIR)?.is_none() {
            return Ok(Vec::new());
        }
        let _g = self.containers_lock.read()?;
        self.load_containers()
    }

    // ----- reading ---------------------------------------------------------------------------

    /// Hold the layers read lock, e.g. while exporting layer content, so no writer removes
    /// layers meanwhile. Do not ask for a write operation while holding it.
    pub fn lock_layers_shared(&self) -> Result<ReadGuard<'_>> {
        self.layers_lock.read()
    }

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

    /// The layers of `image`, bottom first.
    pub fn image_layers(&self, image: &ImageRecord) -> Result<Vec<LayerRecord>> {
        match image.top_layer() {
            Some(top) => self.layer_chain(top),
            None => Ok(Vec::new()),
        }
    }

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

    // ----- writing layers --------------------------------------------------------------------

    fn remove_incomplete_layers(&self) -> Result<()> {
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
    fn remove_layer_files(&self, id: &str) -> Result<()> {
        ids::check_id(id, "layer")?;
        let overlay = self.overlay()?;
        if let Ok(link) = overlay.read_to_string(Path::new(id).join("link")) {
            let link = link.trim();
            if ids::is_link_id(link) {
                files::remove_file_if_exists(&overlay, Path::new(LINK_DIR).join(link))
                    .ctx(|| format!("removing overlay/l/{link}"))?;
            }
        }
        files::remove_tree(&overlay, id)
            .map_err(|e| Error::io_path("removing", self.layer_path(id), e))?;
        if let Some(ld) = self.subdir(LAYERS_DIR)? {
            files::remove_file_if_exists(&ld, tar_split_name(id))
                .map_err(|e| Error::io_path("removing", self.tar_split_path(id), e))?;
            files::remove_tree(&ld, id).map_err(|e| {
                Error::io_path("removing", self.graph_root.join(LAYERS_DIR).join(id), e)
            })?;
        }
        Ok(())
    }

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
            return Err(Error::Conflict {
                what: format!("layer {}", new.id),
                reason: if self.layers_lock.is_pinned(&new.id) {
                    "is being written by another thread of this process".into()
                } else if existing.is_incomplete() {
                    "is left incomplete by an interrupted writer; open the store again to clean it up".into()
                } else {
                    "already exists; reuse it instead of writing it again".into()
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

    fn abort_layer_id(&self, id: &str) -> Result<()> {
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

    // ----- writing images --------------------------------------------------------------------

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
        let g = self.images_lock.write()?;
        let mut all = self.load_images()?;
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
        images::set_names(&mut all, index, &new.names, NameOp::Add);
        let out = all[index].clone();
        self.save_images(&all, &g)?;
        Ok(out)
    }

    /// Store big-data item `key` of image `image_id` and record its size and digest.
    pub fn set_big_data(&self, image_id: &str, key: &str, data: &[u8]) -> Result<()> {
        ids::check_id(image_id, "image")?;
        if key.is_empty() {
            return Err(Error::Malformed {
                what: format!("big data of image {image_id}"),
                reason: "empty key".into(),
            });
        }
        let g = self.images_lock.write()?;
        let mut all = self.load_images()?;
        let img = all
            .iter_mut()
            .find(|i| i.id == image_id)
            .ok_or_else(|| Error::NotFound {
                what: format!("image {image_id}"),
                hint: "create the image before its big data".into(),
            })?;
        let dir = self.required_subdir(IMAGES_DIR)?;
        bigdata::write(&dir, image_id, key, data).map_err(|e| {
            Error::from_io(format!("writing big data {key:?} of image {image_id}"), e)
        })?;
        img.record_big_data(key, data.len() as u64, &bigdata::digest_of(key, data));
        self.save_images(&all, &g)
    }

    /// Set image `image_id`'s opaque metadata string.
    pub fn set_image_metadata(&self, image_id: &str, metadata: &str) -> Result<()> {
        let g = self.images_lock.write()?;
        let mut all = self.load_images()?;
        let img = all
            .iter_mut()
            .find(|i| i.id == image_id)
            .ok_or_else(|| Error::NotFound {
                what: format!("image {image_id}"),
                hint: String::new(),
            })?;
        img.metadata = metadata.to_string();
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
        if let Some(c) = containers.iter().find(|c| c.image == image.id) {
            return Err(Error::Conflict {
                what: format!("image {}", image.id),
                reason: format!(
                    "is in use by container {} ({}); remove the container first (podman rm {})",
                    c.display_name(),
                    c.id,
                    c.display_name()
                ),
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
        let mps: Vec<MountPoint> = serde_json::from_slice(&data).map_err(|e| Error::Malformed {
            what: dir.join("mountpoints.json").display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(mps
            .into_iter()
            .filter(|m| m.count > 0)
            .map(|m| m.id)
            .collect())
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
            .map_err(|e| Error::io_path("creating", self.tar_split_path(), e))
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

fn tar_split_name(id: &str) -> String {
    format!("{id}.tar-split.gz")
}

fn write_new_file(dir: &Dir, name: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = OpenOptions::new();
    o.write(true).create_new(true).mode(mode);
    let mut f = dir.open_with(name, &o)?;
    f.write_all(data)
}

/// `../<id>/diff` → `<id>`.
fn layer_of_link_target(target: &Path) -> Option<String> {
    let s = target.to_str()?;
    let id = s.strip_prefix("../")?.strip_suffix("/diff")?;
    ids::is_full_id(id).then(|| id.to_string())
}

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

/// Split `name[:tag][@digest]` into (repository, tag, digest).
pub(crate) fn split_name(name: &str) -> (&str, Option<&str>, Option<&str>) {
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
fn resolve_image(images: &[ImageRecord], query: &str) -> Result<usize> {
    if let Some(i) = images.iter().position(|i| i.id == query) {
        return Ok(i);
    }
    if let Some(i) = images
        .iter()
        .position(|i| i.names.iter().any(|n| n == query))
    {
        return Ok(i);
    }
    let (repo, tag, digest) = split_name(query);
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
                    && i.names.iter().any(|n| split_name(n).0 == repo)
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

#[cfg(test)]
mod tests;
