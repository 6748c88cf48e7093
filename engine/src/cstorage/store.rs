//! Opening a store: where its parts live below the graph root, which driver it uses, and its
//! three lock files.
//!
//! 1. [`Store::open`] makes the graph root absolute, refuses any driver but overlay (asked for,
//!    or found on disk as `<driver>-layers/` or `<driver>/`), creates `overlay/l/`,
//!    `overlay-layers/` and `overlay-images/` (and the run root), and deletes incomplete
//!    layers an interrupted writer left behind.
//! 2. [`Store::open_read_only`] only opens: a missing root is an empty store, and nothing,
//!    not even a lock file, is written.
//! 3. Both set up the lock files `layers.lock`, `images.lock` and `containers.lock`
//!    ([`lockfile`](super::lockfile)), taken in that order by the other files of this module.

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt};

use super::lockfile::{LockFile, ReadGuard};
use crate::error::{Error, IoContext, Result};

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

/// Layer records and tar-splits: `overlay-layers/`.
pub(super) const LAYERS_DIR: &str = "overlay-layers";
/// Image records and big data: `overlay-images/`.
pub(super) const IMAGES_DIR: &str = "overlay-images";
/// Container records (podman's; read only here): `overlay-containers/`.
pub(super) const CONTAINERS_DIR: &str = "overlay-containers";
/// Short link names of layers, below `overlay/`: `l/`.
pub(super) const LINK_DIR: &str = "l";

/// A containers-storage store with the overlay driver.
#[derive(Debug)]
pub struct Store {
    /// Absolute graph root.
    pub(super) graph_root: PathBuf,
    /// Absolute run root, if given.
    pub(super) run_root: Option<PathBuf>,
    /// Opened with [`Store::open_read_only`].
    pub(super) read_only: bool,
    /// `None` when a read-only store's graph root does not exist: an empty store.
    pub(super) root: Option<Dir>,
    /// `overlay-layers/layers.lock`.
    pub(super) layers_lock: LockFile,
    /// `overlay-images/images.lock`.
    pub(super) images_lock: LockFile,
    /// `overlay-containers/containers.lock`.
    pub(super) containers_lock: LockFile,
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
        Error::StoreUnsupported {
        what: format!("containers-storage driver {d:?} at {}", graph_root.display()),
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

/// An error naming `path` when something other than a directory is there (creating the
/// directory would otherwise fail with a bare "File exists").
fn not_a_directory(path: &Path, what: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(Error::Conflict {
            what: format!("{what} {}", path.display()),
            reason:
                "is not a directory (a file is there); point at a directory, or remove the file"
                    .into(),
        }),
        _ => Ok(()),
    }
}

impl Store {
    /// Open (creating if needed) the store at `graph_root` for reading and writing.
    /// `driver` is the storage driver asked for (`None`: the one already used at the root,
    /// else overlay); anything but overlay is refused. Incomplete layers left by an
    /// interrupted writer are deleted, as containers/storage does.
    pub fn open(graph_root: &Path, run_root: Option<&Path>, driver: Option<&str>) -> Result<Store> {
        let graph_root = std::path::absolute(graph_root).at("resolving", graph_root)?;
        log::debug!(
            "opening containers-storage {} (run root {:?})",
            graph_root.display(),
            run_root
        );
        if let Some(d) = driver {
            check_driver(&graph_root, None, Some(d))?;
        }
        not_a_directory(&graph_root, "storage root")?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&graph_root)
            .at("creating storage root", &graph_root)?;
        let root = Dir::open_ambient_dir(&graph_root, ambient_authority())
            .at("opening storage root", &graph_root)?;
        check_driver(&graph_root, Some(&root), driver)?;
        mkdir(&root, DRIVER, 0o700)?;
        let overlay = root.open_dir(DRIVER).ctx(|| "opening overlay/".into())?;
        mkdir(&overlay, LINK_DIR, 0o755)?;
        mkdir(&root, LAYERS_DIR, 0o700)?;
        mkdir(&root, IMAGES_DIR, 0o700)?;
        let run_root = match run_root {
            Some(rr) => {
                let rr = std::path::absolute(rr).at("resolving", rr)?;
                not_a_directory(&rr, "run root")?;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&rr)
                    .at("creating run root", &rr)?;
                Some(rr)
            }
            None => None,
        };
        let store = Store::with_root(graph_root, run_root, Some(root), false);
        store.remove_incomplete_layers()?;
        Ok(store)
    }

    /// [`Store::open_read_only`] for a command that reads a store it expects to be there: a
    /// missing graph root is an error naming it, with `hint` (the flag that points
    /// elsewhere), instead of an empty store.
    pub fn open_existing(graph_root: &Path, driver: Option<&str>, hint: &str) -> Result<Store> {
        // Only a root that is not there is "not found": one that cannot be looked at (a
        // parent the user may not search) is that error, naming the path.
        match std::fs::metadata(graph_root) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::StoreMissing {
                    what: format!("containers-storage at {}", graph_root.display()),
                    hint: format!("no store has been created there; {hint}"),
                })
            }
            Err(e) => return Err(Error::io_path("opening storage root", graph_root, e)),
        }
        Store::open_read_only(graph_root, driver)
    }

    /// Open the store at `graph_root` for reading only: nothing is created, no lock file is
    /// written, and a missing root is an empty store.
    pub fn open_read_only(graph_root: &Path, driver: Option<&str>) -> Result<Store> {
        let graph_root = std::path::absolute(graph_root).at("resolving", graph_root)?;
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

    pub(super) fn subdir(&self, name: &str) -> Result<Option<Dir>> {
        let Some(root) = &self.root else {
            return Ok(None);
        };
        match root.open_dir(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io_path("opening", self.graph_root.join(name), e)),
        }
    }

    pub(super) fn required_subdir(&self, name: &str) -> Result<Dir> {
        self.subdir(name)?.ok_or_else(|| Error::NotFound {
            what: format!("directory {}", self.graph_root.join(name).display()),
            hint: "the store is incomplete; open it for writing to create it".into(),
        })
    }

    pub(super) fn overlay(&self) -> Result<Dir> {
        self.required_subdir(DRIVER)
    }

    /// Hold the layers read lock, e.g. while exporting layer content, so no writer removes
    /// layers meanwhile. Do not ask for a write operation while holding it.
    pub fn lock_layers_shared(&self) -> Result<ReadGuard<'_>> {
        self.layers_lock.read()
    }
}
