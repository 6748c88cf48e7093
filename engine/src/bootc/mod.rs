//! bootc's conventions and its `image` commands, done by the engine.
//!
//! 1. [`System`] says where a bootc system's stores are: bootc's own containers-storage
//!    (`SYSROOT/ostree/bootc/storage`), the ostree repository (`SYSROOT/ostree/repo`), the
//!    host's default containers-storage (storage.conf's, as podman resolves it:
//!    [`StorageConfig`]; `/var/lib/containers/storage` for root by default) and the deployment root
//!    whose bound images count. Every path can be overridden.
//! 2. [`bound`]: logically bound images declared in `ROOT/usr/lib/bootc/bound-images.d/`.
//! 3. [`list`]: the rows of `bootc image list` (host, unified, logical).
//! 4. [`pull`]: `image cmd pull`: each image's candidates (a short name gives one per
//!    unqualified-search registry, as podman resolves it) and its name in bootc's store, all
//!    images pulled at once.
//! 5. [`booted`]: the booted deployment (`ostree=` on the kernel command line) and the image
//!    its `.origin` names, the default source of `image copy-to-storage`.
//! 6. [`transfer`]: `image copy-to-storage`, `image pull-from-default-storage` (a zero-copy
//!    clone between stores, falling back to the pipeline when the stores' whiteout forms
//!    differ) and `image cmd push`.
//! 7. [`build`]: `image cmd build`, a Containerfile built into bootc's store without a
//!    container runtime ([`crate::build`]), its base images pulled by the rules of step 4.
//!
//! Registry credentials: bootc reads `/etc/ostree/auth.json` ([`AUTHFILE`]) instead of the
//! user's; [`registry_options`] applies that default.

pub mod booted;
pub mod bound;
pub mod build;
pub mod list;
pub mod pull;
pub mod transfer;

use std::path::PathBuf;

use crate::cstorage::{StorageConfig, Store};
use crate::endpoint::EndpointOptions;
use crate::error::Result;
use crate::registry::RegistryOptions;
use crate::transport::StoreSpec;

pub use bound::{bound_images, BoundImage};
pub use list::{list_images, ImageOutput, ImageType, ListSources};

/// Where bound-image symlinks live, relative to the deployment root.
pub const BOUND_IMAGES_DIR: &str = "usr/lib/bootc/bound-images.d";
/// bootc's containers-storage, relative to the sysroot.
pub const STORAGE_SUBDIR: &str = "ostree/bootc/storage";
/// The ostree repository, relative to the sysroot.
pub const OSTREE_REPO_SUBDIR: &str = "ostree/repo";
/// bootc's run root for its store.
pub const BOOTC_RUNROOT: &str = "/run/bootc/storage";
/// bootc's registry credentials, used instead of the user's.
pub const AUTHFILE: &str = "/etc/ostree/auth.json";

/// The stores of a bootc system. [`Default`] gives bootc's own paths.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct System {
    /// The physical root (`/sysroot`).
    pub sysroot: PathBuf,
    /// bootc's containers-storage graph root; `None`: `SYSROOT/ostree/bootc/storage`.
    pub storage_root: Option<PathBuf>,
    /// bootc's containers-storage run root.
    pub storage_runroot: PathBuf,
    /// The host's default containers-storage graph root; `None`: storage.conf's
    /// ([`StorageConfig`]).
    pub host_storage_root: Option<PathBuf>,
    /// The host's default containers-storage run root; `None`: storage.conf's.
    pub host_storage_runroot: Option<PathBuf>,
    /// The ostree repository; `None`: `SYSROOT/ostree/repo`.
    pub ostree_repo: Option<PathBuf>,
    /// The deployment root whose bound images count.
    pub root: PathBuf,
    /// The kernel command line to find the booted deployment in (`/proc/cmdline`).
    pub kernel_cmdline: PathBuf,
    /// The signature policy for every copy and pull into or out of these stores.
    pub policy: crate::policy::PolicySetting,
}

impl Default for System {
    fn default() -> Self {
        System {
            sysroot: PathBuf::from("/sysroot"),
            storage_root: None,
            storage_runroot: PathBuf::from(BOOTC_RUNROOT),
            host_storage_root: None,
            host_storage_runroot: None,
            ostree_repo: None,
            root: PathBuf::from("/"),
            kernel_cmdline: PathBuf::from("/proc/cmdline"),
            policy: crate::policy::PolicySetting::default(),
        }
    }
}

impl System {
    /// bootc's containers-storage graph root.
    pub fn storage_root(&self) -> PathBuf {
        self.storage_root
            .clone()
            .unwrap_or_else(|| self.sysroot.join(STORAGE_SUBDIR))
    }

    /// The ostree repository.
    pub fn ostree_repo(&self) -> PathBuf {
        self.ostree_repo
            .clone()
            .unwrap_or_else(|| self.sysroot.join(OSTREE_REPO_SUBDIR))
    }

    /// bootc's store as a transport specifier (`[overlay@ROOT+RUNROOT]`).
    pub fn storage_spec(&self) -> StoreSpec {
        StoreSpec::overlay(self.storage_root(), Some(self.storage_runroot.clone()))
    }

    /// The host's default store: storage.conf's (as podman resolves it for this user), with
    /// the `--host-storage`/`--host-runroot` overrides.
    pub fn host_store(&self) -> Result<StorageConfig> {
        Ok(StorageConfig::from_env()?.with_overrides(
            self.host_storage_root.as_deref(),
            self.host_storage_runroot.as_deref(),
        ))
    }

    /// The host's default store as a transport specifier (its driver must be overlay).
    pub fn host_storage_spec(&self) -> Result<StoreSpec> {
        let c = self.host_store()?;
        c.check_driver()?;
        Ok(StoreSpec::overlay(c.graph_root, Some(c.run_root)))
    }

    /// bootc's store, opened for writing (created when missing, as podman would).
    pub fn open_storage(&self) -> Result<Store> {
        Store::open(&self.storage_root(), Some(&self.storage_runroot), None)
    }

    /// bootc's store, opened for reading. A store that does not exist is an error (saying
    /// where it was looked for and which flags point elsewhere), not an empty store.
    pub fn read_storage(&self) -> Result<Store> {
        Store::open_existing(
            &self.storage_root(),
            None,
            "point --storage-root (--bootc-storage) at bootc's store, or --sysroot at the bootc system",
        )
    }

    /// The host's default store, opened for reading.
    pub fn read_host_storage(&self) -> Result<Store> {
        self.host_store()?.open_read_only()
    }

    /// Endpoint options whose default containers-storage (`containers-storage:NAME` without a
    /// store specifier) is the host's, as for podman on that host.
    pub fn endpoints(&self) -> EndpointOptions {
        EndpointOptions {
            storage_root: self.host_storage_root.clone(),
            storage_runroot: self.host_storage_runroot.clone(),
            policy: self.policy.clone(),
            ..Default::default()
        }
    }

    /// The booted deployment and its image; `None` when the kernel command line names no
    /// ostree deployment (or cannot be read: not a booted system).
    pub fn booted_image(&self) -> Result<Option<booted::BootedImage>> {
        let Ok(cmdline) = std::fs::read_to_string(&self.kernel_cmdline) else {
            return Ok(None);
        };
        booted::booted_image(&self.sysroot, &cmdline)
    }

    /// Whether this is a bootc system: its ostree repository exists (`--ostree-repo`, else
    /// `SYSROOT/ostree/repo`). Host images need one.
    pub fn is_bootc_system(&self) -> bool {
        self.ostree_repo().is_dir()
    }

    /// `bootc image list`: the images of the requested kinds.
    pub fn list_images(&self, kinds: &[ImageType]) -> Result<Vec<ImageOutput>> {
        let repo = self.ostree_repo();
        let storage = self.storage_root();
        let sources = ListSources {
            bootc_storage: Some(storage.as_path()),
            ostree_repo: kinds.contains(&ImageType::Host).then_some(repo.as_path()),
            storage_root: kinds
                .contains(&ImageType::Unified)
                .then_some(storage.as_path()),
            root: kinds
                .contains(&ImageType::Logical)
                .then_some(self.root.as_path()),
        };
        list_images(&sources)
    }
}

/// Registry options as bootc uses them: its own [`AUTHFILE`] when none is named and it
/// exists.
pub fn registry_options(mut options: RegistryOptions) -> RegistryOptions {
    if options.authfile.is_none() {
        let bootc_auth = std::path::Path::new(AUTHFILE);
        if bootc_auth.exists() {
            options.authfile = Some(bootc_auth.to_path_buf());
        }
    }
    options
}
