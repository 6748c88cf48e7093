//! storage.conf: which store `containers-storage:NAME` means when no `[overlay@ROOT+RUNROOT]`
//! names one — the store podman on the same host, as the same user, uses.
//!
//! [`StorageConfig::resolve`] follows containers/storage 1.44 (podman 4.3's) and podman's own
//! run-directory fallback:
//! 1. **The system options.** Start from `/var/lib/containers/storage` and
//!    `/run/containers/storage`. If `CONTAINERS_STORAGE_CONF` is set, that file is read (it
//!    must exist). Otherwise the "override" file is `$XDG_CONFIG_HOME/containers/storage.conf`
//!    when `XDG_CONFIG_HOME` is set and that file exists, else `/etc/containers/storage.conf`;
//!    when the override exists it is read, else `/usr/share/containers/storage.conf` (when it
//!    exists). An unset `graphroot`/`runroot` keeps the default.
//! 2. **The configuration file** (what `podman info` reports as `store.configFile`):
//!    `CONTAINERS_STORAGE_CONF`; for root the file step 1 read (or
//!    `/usr/share/containers/storage.conf`); for other users
//!    `$XDG_CONFIG_HOME/containers/storage.conf`, else `~/.config/containers/storage.conf`.
//! 3. **Rootless defaults** (uid ≠ 0): graph root `rootless_storage_path` of the system options
//!    (`$UID`, `$HOME`, `$USER`, … expanded), else `$XDG_DATA_HOME/containers/storage`, else
//!    `~/.local/share/containers/storage`; run root `$XDG_RUNTIME_DIR/containers`, else
//!    podman's fallback: `/run/user/UID` when it is a directory the user owns with `rwx` for
//!    the owner, else `$TMPDIR/podman-run-UID` (`/tmp` without `TMPDIR`) when it is missing or
//!    owned by the user, else `~/rundir` — each with `/containers` appended. The driver is the
//!    system's when it is a rootless one (btrfs, overlay, vfs), else `vfs`; the system's
//!    additional image stores are not used.
//! 4. **The file of step 2**, when it exists, replaces everything: its `driver`,
//!    `graphroot`, `runroot`, `rootless_storage_path`, `[storage.options]
//!    additionalimagestores` and `mount_program` (or `[storage.options.overlay]
//!    mount_program`). For root a file without `runroot` or `graphroot` is an error (as in
//!    podman); for other users the missing ones come from step 3 (`rootless_storage_path` of
//!    this file first).
//! 5. `STORAGE_DRIVER` overrides the driver; `overlay2` means `overlay`. Paths are expanded
//!    (`$UID` is the user id, other `$VAR`/`${VAR}` from the environment), and resolved
//!    through symlinks when they exist.
//!
//! Command-line flags override the result ([`StorageConfig::with_overrides`]). Only the
//! overlay driver is implemented: [`StorageConfig::check_driver`] refuses any other with the
//! file to change. `mount_program` (fuse-overlayfs) is recorded but not needed: stowage never
//! mounts. Additional image stores are read only: images found there can be read and listed,
//! never written.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// containers/storage's default graph root for root.
pub const DEFAULT_GRAPH_ROOT: &str = "/var/lib/containers/storage";
/// containers/storage's default run root for root.
pub const DEFAULT_RUN_ROOT: &str = "/run/containers/storage";
/// The system configuration file that wins over [`USR_STORAGE_CONF`].
pub const ETC_STORAGE_CONF: &str = "/etc/containers/storage.conf";
/// The distribution's configuration file.
pub const USR_STORAGE_CONF: &str = "/usr/share/containers/storage.conf";

/// Drivers containers/storage accepts for rootless users from the system configuration.
const ROOTLESS_DRIVERS: [&str; 4] = ["btrfs", "overlay", "overlay2", "vfs"];

/// The process environment storage.conf resolution depends on. [`ConfigEnv::from_env`] gives
/// the real one; tests build their own.
#[derive(Debug, Clone)]
pub struct ConfigEnv {
    /// The user the store is for (`_CONTAINERS_ROOTLESS_UID`, else the effective uid).
    pub uid: u32,
    /// Environment variables (`HOME`, `XDG_*`, `CONTAINERS_STORAGE_CONF`, `STORAGE_DRIVER`,
    /// `TMPDIR` and whatever a `$VAR` in a path names).
    pub vars: Vec<(OsString, OsString)>,
    /// `/etc/containers/storage.conf`.
    pub etc_conf: PathBuf,
    /// `/usr/share/containers/storage.conf`.
    pub usr_conf: PathBuf,
    /// `/run/user` (podman's first run-directory choice lives below it).
    pub run_user: PathBuf,
}

impl ConfigEnv {
    /// The process's environment and the real configuration paths.
    pub fn from_env() -> ConfigEnv {
        let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        let uid = vars
            .iter()
            .find(|(k, _)| k == "_CONTAINERS_ROOTLESS_UID")
            .and_then(|(_, v)| v.to_str()?.parse().ok())
            .unwrap_or_else(|| rustix::process::geteuid().as_raw());
        ConfigEnv {
            uid,
            vars,
            etc_conf: PathBuf::from(ETC_STORAGE_CONF),
            usr_conf: PathBuf::from(USR_STORAGE_CONF),
            run_user: PathBuf::from("/run/user"),
        }
    }

    /// A variable as set, even when empty (Go's `os.LookupEnv`).
    fn lookup(&self, name: &str) -> Option<&OsString> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A variable that is set and not empty.
    fn non_empty(&self, name: &str) -> Option<PathBuf> {
        self.lookup(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }

    fn rootless(&self) -> bool {
        self.uid != 0
    }

    /// `$HOME`, else the user's entry in `/etc/passwd`.
    fn home(&self) -> Option<PathBuf> {
        self.non_empty("HOME").or_else(|| passwd_home(self.uid))
    }
}

/// The home directory of `uid` in `/etc/passwd`.
fn passwd_home(uid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse() == Ok(uid) && !f[5].is_empty()).then(|| PathBuf::from(f[5]))
    })
}

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A storage.conf file.
    File(PathBuf),
    /// The `STORAGE_DRIVER` environment variable.
    Env,
    /// containers/storage's default (no file sets it).
    Default,
    /// A command-line flag.
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(p) => write!(f, "storage.conf {}", p.display()),
            Origin::Env => f.write_str("STORAGE_DRIVER"),
            Origin::Default => f.write_str("containers/storage's default"),
            Origin::Flag => f.write_str("the command line"),
        }
    }
}

/// The default store, resolved as containers/storage resolves it for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The configuration file that applies (it need not exist), as `podman info` reports it.
    pub config_file: PathBuf,
    /// Whether the rootless rules applied (uid ≠ 0).
    pub rootless: bool,
    /// The graph root.
    pub graph_root: PathBuf,
    /// The run root.
    pub run_root: PathBuf,
    /// The driver, `None` when nothing names one (the store's own, else overlay).
    pub driver: Option<String>,
    /// Where [`driver`](Self::driver) came from.
    pub driver_origin: Origin,
    /// Read-only stores whose images are readable and listed, never written.
    pub additional_image_stores: Vec<PathBuf>,
    /// `mount_program` (fuse-overlayfs); recorded, not needed: stowage never mounts.
    pub mount_program: Option<PathBuf>,
    /// `rootless_storage_path`, expanded.
    pub rootless_storage_path: Option<PathBuf>,
}

/// `storage.conf` as TOML. Unknown keys are ignored, as containers/storage only warns.
#[derive(Debug, Default, Deserialize)]
struct ConfFile {
    #[serde(default)]
    storage: StorageTable,
}

#[derive(Debug, Default, Deserialize)]
struct StorageTable {
    driver: Option<String>,
    runroot: Option<String>,
    graphroot: Option<String>,
    rootless_storage_path: Option<String>,
    #[serde(default)]
    options: OptionsTable,
}

#[derive(Debug, Default, Deserialize)]
struct OptionsTable {
    #[serde(default)]
    additionalimagestores: Vec<String>,
    mount_program: Option<String>,
    #[serde(default)]
    overlay: OverlayTable,
}

#[derive(Debug, Default, Deserialize)]
struct OverlayTable {
    mount_program: Option<String>,
}

/// One file's settings, unexpanded (empty strings count as unset).
#[derive(Debug, Default, Clone)]
struct Settings {
    driver: Option<(String, Origin)>,
    run_root: Option<String>,
    graph_root: Option<String>,
    rootless_storage_path: Option<String>,
    additional_image_stores: Vec<String>,
    mount_program: Option<String>,
}

fn set(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

fn load(path: &Path) -> Result<Settings> {
    log::info!("reading storage.conf {}", path.display());
    let text = std::fs::read_to_string(path).at("reading storage.conf", path)?;
    let file: ConfFile = toml::from_str(&text).map_err(|e| Error::Config {
        what: format!("storage.conf {}", path.display()),
        reason: format!("{e}; see containers-storage.conf(5) for its [storage] table"),
    })?;
    let s = file.storage;
    Ok(Settings {
        driver: set(s.driver).map(|d| (d, Origin::File(path.to_path_buf()))),
        run_root: set(s.runroot),
        graph_root: set(s.graphroot),
        rootless_storage_path: set(s.rootless_storage_path),
        additional_image_stores: s
            .options
            .additionalimagestores
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect(),
        mount_program: set(s.options.mount_program).or(set(s.options.overlay.mount_program)),
    })
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

impl StorageConfig {
    /// The default store for this process's user and environment.
    pub fn from_env() -> Result<StorageConfig> {
        StorageConfig::resolve(&ConfigEnv::from_env())
    }

    /// The default store for `env` (see the module overview for the rules).
    pub fn resolve(env: &ConfigEnv) -> Result<StorageConfig> {
        let rootless = env.rootless();
        // Step 1: the system options and the file they came from.
        let storage_conf_env = env.lookup("CONTAINERS_STORAGE_CONF").map(PathBuf::from);
        let (system, system_file) = match &storage_conf_env {
            Some(p) => {
                if !p.exists() {
                    return Err(Error::NotFound {
                        what: format!(
                            "storage.conf {} (named by CONTAINERS_STORAGE_CONF)",
                            p.display()
                        ),
                        hint: "create the file or unset CONTAINERS_STORAGE_CONF".into(),
                    });
                }
                (load(p)?, p.clone())
            }
            None => {
                let mut override_file = env.etc_conf.clone();
                if let Some(x) = env.lookup("XDG_CONFIG_HOME") {
                    let home_conf = Path::new(x).join("containers/storage.conf");
                    if home_conf.exists() {
                        override_file = home_conf;
                    }
                }
                if exists(&override_file) {
                    (load(&override_file)?, override_file)
                } else if exists(&env.usr_conf) {
                    (load(&env.usr_conf)?, env.usr_conf.clone())
                } else {
                    (Settings::default(), env.usr_conf.clone())
                }
            }
        };
        // Step 2: the configuration file.
        let config_file = match (&storage_conf_env, rootless) {
            (Some(p), _) => p.clone(),
            (None, false) => system_file,
            (None, true) => match env.non_empty("XDG_CONFIG_HOME") {
                Some(x) => x.join("containers/storage.conf"),
                None => env
                    .home()
                    .ok_or_else(|| Error::NotFound {
                        what: format!("the home directory of uid {}", env.uid),
                        hint:
                            "set HOME (or XDG_CONFIG_HOME) so the user's storage.conf can be found"
                                .into(),
                    })?
                    .join(".config/containers/storage.conf"),
            },
        };
        // Step 3: rootless defaults from the system options.
        let (mut settings, mut defaults) = (system.clone(), None);
        if rootless {
            let graph = match &system.rootless_storage_path {
                Some(p) => expand(p, env),
                None => data_home(env)?.join("containers/storage"),
            };
            let run = runtime_dir(env)?.join("containers");
            let driver = system
                .driver
                .clone()
                .filter(|(d, _)| ROOTLESS_DRIVERS.contains(&d.as_str()))
                .unwrap_or_else(|| ("vfs".into(), Origin::Default));
            settings = Settings {
                driver: Some(driver),
                ..Settings::default()
            };
            defaults = Some((run, graph));
        }
        // Step 4: the configuration file replaces everything.
        if exists(&config_file) {
            settings = load(&config_file)?;
            if !rootless {
                for (key, v) in [
                    ("runroot", &settings.run_root),
                    ("graphroot", &settings.graph_root),
                ] {
                    if v.is_none() {
                        return Err(Error::Config {
                            what: format!("storage.conf {}", config_file.display()),
                            reason: format!(
                                "{key} must be set (containers/storage refuses a file without it as root); add {key} = \"{}\" to its [storage] table",
                                if key == "runroot" { DEFAULT_RUN_ROOT } else { DEFAULT_GRAPH_ROOT }
                            ),
                        });
                    }
                }
            }
        } else if !rootless {
            settings
                .run_root
                .get_or_insert_with(|| DEFAULT_RUN_ROOT.into());
            settings
                .graph_root
                .get_or_insert_with(|| DEFAULT_GRAPH_ROOT.into());
        }
        // Step 5: STORAGE_DRIVER, overlay2, expansion.
        if let Some(d) = env.lookup("STORAGE_DRIVER").filter(|d| !d.is_empty()) {
            settings.driver = Some((d.to_string_lossy().into_owned(), Origin::Env));
        }
        if let Some((d, _)) = &mut settings.driver {
            if d == "overlay2" {
                *d = "overlay".into();
            }
        }
        let rootless_storage_path = settings
            .rootless_storage_path
            .as_deref()
            .map(|p| expand(p, env));
        let (run_root, graph_root) = match defaults {
            Some((run, graph)) => (
                settings
                    .run_root
                    .as_deref()
                    .map(|p| expand(p, env))
                    .unwrap_or(run),
                settings
                    .graph_root
                    .as_deref()
                    .map(|p| expand(p, env))
                    .or(rootless_storage_path.clone())
                    .unwrap_or(graph),
            ),
            None => (
                expand(
                    settings.run_root.as_deref().unwrap_or(DEFAULT_RUN_ROOT),
                    env,
                ),
                expand(
                    settings.graph_root.as_deref().unwrap_or(DEFAULT_GRAPH_ROOT),
                    env,
                ),
            ),
        };
        let (driver, driver_origin) = match settings.driver {
            Some((d, o)) => (Some(d), o),
            None => (None, Origin::Default),
        };
        Ok(StorageConfig {
            config_file,
            rootless,
            graph_root,
            run_root,
            driver,
            driver_origin,
            additional_image_stores: settings
                .additional_image_stores
                .iter()
                .map(|p| expand(p, env))
                .collect(),
            mount_program: settings.mount_program.map(PathBuf::from),
            rootless_storage_path,
        })
    }

    /// This configuration with the command line's `--storage-root`/`--runroot` in place of
    /// the resolved paths.
    pub fn with_overrides(mut self, graph_root: Option<&Path>, run_root: Option<&Path>) -> Self {
        if let Some(g) = graph_root {
            self.graph_root = g.to_path_buf();
        }
        if let Some(r) = run_root {
            self.run_root = r.to_path_buf();
        }
        self
    }

    /// The driver to open the store with: `None` or `overlay`; any other driver is an error
    /// that names where it was set and how to change it.
    pub fn check_driver(&self) -> Result<Option<&str>> {
        match self.driver.as_deref() {
            None => Ok(None),
            Some(super::DRIVER) => Ok(Some(super::DRIVER)),
            Some(other) => {
                let fix = match &self.driver_origin {
                    Origin::Env => "unset STORAGE_DRIVER or set it to overlay".to_string(),
                    Origin::File(p) => format!("set driver = \"overlay\" in the [storage] table of {}", p.display()),
                    _ => format!(
                        "this is containers/storage's default for a user without a storage.conf: create {} with [storage] driver = \"overlay\"",
                        self.config_file.display()
                    ),
                };
                Err(Error::StoreUnsupported {
                    what: format!(
                        "the default containers-storage {} (driver {other:?}, from {})",
                        self.graph_root.display(),
                        self.driver_origin
                    ),
                    reason: format!(
                        "stowage implements only the overlay driver; {fix}, or name an overlay store: containers-storage:[overlay@ROOT+RUNROOT]NAME"
                    ),
                })
            }
        }
    }

    /// Open the default store for writing (created when missing).
    pub fn open(&self) -> Result<super::Store> {
        let driver = self.check_driver()?;
        super::Store::open(&self.graph_root, Some(&self.run_root), driver)
    }

    /// Open the default store for reading.
    pub fn open_read_only(&self) -> Result<super::Store> {
        let driver = self.check_driver()?;
        super::Store::open_read_only(&self.graph_root, driver)
    }

    /// Open each additional image store for reading (they are never written). A store that
    /// does not exist is an error naming the setting, as for podman.
    pub fn open_additional(&self) -> Result<Vec<super::Store>> {
        self.additional_image_stores
            .iter()
            .map(|p| {
                if !p.is_dir() {
                    return Err(Error::NotFound {
                        what: format!("additional image store {}", p.display()),
                        hint: format!(
                            "create it or remove it from additionalimagestores in {}",
                            self.config_file.display()
                        ),
                    });
                }
                super::Store::open_read_only(
                    p,
                    self.driver.as_deref().filter(|d| *d == super::DRIVER),
                )
            })
            .collect()
    }
}

impl StorageConfig {
    /// `podman images` of the default store: its images, then those of the additional image
    /// stores (in order), marked read-only — an image in both is listed from each, as podman
    /// lists it.
    pub fn list_images(&self, all: bool) -> Result<Vec<super::catalog::ImageSummary>> {
        let opts = super::catalog::ListOptions {
            all,
            ..Default::default()
        };
        Ok(self
            .list_rows(&opts)?
            .into_iter()
            .map(|r| r.summary)
            .collect())
    }

    /// `podman images [-a] [--filter …] [--sort …]` rows of the default store and its
    /// additional image stores ([`super::catalog::list_rows_in`]).
    pub fn list_rows(
        &self,
        opts: &super::catalog::ListOptions,
    ) -> Result<Vec<super::catalog::ImageRow>> {
        let default = self.open_read_only()?;
        let additional = self.open_additional()?;
        let stores: Vec<&super::Store> = std::iter::once(&default).chain(&additional).collect();
        super::catalog::list_rows_in(&stores, opts)
    }
}

/// `$XDG_DATA_HOME`, else `~/.local/share` (symlinks in the home resolved).
fn data_home(env: &ConfigEnv) -> Result<PathBuf> {
    if let Some(d) = env.non_empty("XDG_DATA_HOME") {
        return Ok(d);
    }
    let home = env.home().ok_or_else(|| Error::NotFound {
        what: format!("the home directory of uid {}", env.uid),
        hint: "set HOME or XDG_DATA_HOME".into(),
    })?;
    Ok(resolve_symlinks(&home).join(".local/share"))
}

/// podman's run directory for a rootless user (see the module overview, step 3).
fn runtime_dir(env: &ConfigEnv) -> Result<PathBuf> {
    if let Some(d) = env.non_empty("XDG_RUNTIME_DIR") {
        return Ok(resolve_symlinks(&d));
    }
    let owned = |p: &Path| {
        std::fs::metadata(p)
            .is_ok_and(|m| m.is_dir() && m.uid() == env.uid && m.mode() & 0o700 == 0o700)
    };
    let run_user = env.run_user.join(env.uid.to_string());
    if owned(&run_user) {
        return Ok(run_user);
    }
    let tmp = env
        .non_empty("TMPDIR")
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let per_user = tmp.join(format!("podman-run-{}", env.uid));
    if !exists(&per_user) || owned(&per_user) {
        return Ok(per_user);
    }
    let home = env.home().ok_or_else(|| Error::NotFound {
        what: format!("a run directory for uid {}", env.uid),
        hint: "set XDG_RUNTIME_DIR to a directory the user owns".into(),
    })?;
    Ok(resolve_symlinks(&home).join("rundir"))
}

/// The path with symlinks resolved when it exists, else lexically cleaned (Go's
/// `filepath.EvalSymlinks`, falling back to `filepath.Clean`).
fn resolve_symlinks(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| clean(p))
}

/// Go's `filepath.Clean` for the paths storage.conf holds.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !p.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// containers/storage's `expandEnvPath`: `$UID` is the user id; other `$VAR` and `${VAR}`
/// come from the environment (unset: empty); then symlinks are resolved when the path exists.
fn expand(path: &str, env: &ConfigEnv) -> PathBuf {
    let path = path.replace("$UID", &env.uid.to_string());
    let mut out = String::new();
    let mut rest = path.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(j) => (&braced[..j], &braced[j + 1..]),
                None => ("", ""),
            }
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if n == 0 {
                // A lone `$` stays as it is.
                out.push('$');
                rest = after;
                continue;
            }
            (&after[..n], &after[n..])
        };
        if let Some(v) = env.lookup(name) {
            out.push_str(&v.to_string_lossy());
        }
        rest = tail;
    }
    out.push_str(rest);
    resolve_symlinks(Path::new(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(root: &Path, uid: u32, vars: &[(&str, &str)]) -> ConfigEnv {
        ConfigEnv {
            uid,
            vars: vars.iter().map(|(k, v)| (k.into(), v.into())).collect(),
            etc_conf: root.join("etc/storage.conf"),
            usr_conf: root.join("usr/storage.conf"),
            run_user: root.join("run/user"),
        }
    }

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn root_defaults_and_precedence() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let c = StorageConfig::resolve(&env(r, 0, &[])).unwrap();
        assert_eq!(c.graph_root, PathBuf::from(DEFAULT_GRAPH_ROOT));
        assert_eq!(c.run_root, PathBuf::from(DEFAULT_RUN_ROOT));
        assert_eq!(c.config_file, r.join("usr/storage.conf"));
        assert_eq!(c.driver, None);

        write(
            &r.join("usr/storage.conf"),
            "[storage]\ndriver = \"overlay\"\nrunroot = \"/u/run\"\ngraphroot = \"/u/g\"\n",
        );
        let c = StorageConfig::resolve(&env(r, 0, &[])).unwrap();
        assert_eq!(
            (c.graph_root.as_path(), c.run_root.as_path()),
            (Path::new("/u/g"), Path::new("/u/run"))
        );
        assert_eq!(c.driver.as_deref(), Some("overlay"));

        // /etc wins over /usr/share and is not merged with it.
        write(&r.join("etc/storage.conf"), "[storage]\ndriver = \"vfs\"\nrunroot = \"/e/run\"\ngraphroot = \"/e/$UID/g\"\n[storage.options]\nadditionalimagestores = [\"/ro/${HOME}\"]\n");
        let c = StorageConfig::resolve(&env(r, 0, &[("HOME", "/root")])).unwrap();
        assert_eq!(c.config_file, r.join("etc/storage.conf"));
        assert_eq!(c.graph_root, PathBuf::from("/e/0/g"));
        assert_eq!(c.additional_image_stores, vec![PathBuf::from("/ro/root")]);
        let e = c.check_driver().unwrap_err().to_string();
        assert!(
            e.contains("\"vfs\"") && e.contains("driver = \"overlay\""),
            "{e}"
        );
        // STORAGE_DRIVER overrides it.
        let c = StorageConfig::resolve(&env(r, 0, &[("STORAGE_DRIVER", "overlay2")])).unwrap();
        assert_eq!(c.check_driver().unwrap(), Some("overlay"));

        // CONTAINERS_STORAGE_CONF wins; a file without runroot is refused as root.
        let own = r.join("own.conf");
        write(&own, "[storage]\ngraphroot = \"/o/g\"\n");
        let e = StorageConfig::resolve(&env(
            r,
            0,
            &[("CONTAINERS_STORAGE_CONF", own.to_str().unwrap())],
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("runroot must be set"), "{e}");
        let e = StorageConfig::resolve(&env(
            r,
            0,
            &[("CONTAINERS_STORAGE_CONF", "/nonexistent.conf")],
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent.conf") && e.contains("CONTAINERS_STORAGE_CONF"),
            "{e}"
        );
        write(&own, "[storage]\ngraphroot = [1]\n");
        let e = StorageConfig::resolve(&env(
            r,
            0,
            &[("CONTAINERS_STORAGE_CONF", own.to_str().unwrap())],
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("own.conf") && e.contains("malformed"), "{e}");
    }

    #[test]
    fn rootless_defaults() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let home = r.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let home = std::fs::canonicalize(home).unwrap();
        let h = home.to_str().unwrap();
        let tmp = r.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let vars = [("HOME", h), ("TMPDIR", tmp.to_str().unwrap())];
        let c = StorageConfig::resolve(&env(r, 4242, &vars)).unwrap();
        assert!(c.rootless);
        assert_eq!(c.config_file, home.join(".config/containers/storage.conf"));
        assert_eq!(c.graph_root, home.join(".local/share/containers/storage"));
        assert_eq!(c.run_root, tmp.join("podman-run-4242/containers"));
        assert_eq!(c.driver.as_deref(), Some("vfs"));
        assert!(c
            .check_driver()
            .unwrap_err()
            .to_string()
            .contains("storage.conf"));

        // XDG variables; the system's rootless_storage_path and driver; no additional stores.
        let xdg_run = r.join("xdgrun");
        std::fs::create_dir_all(&xdg_run).unwrap();
        write(&r.join("etc/storage.conf"), "[storage]\ndriver = \"overlay\"\nrunroot = \"/e/run\"\ngraphroot = \"/e/g\"\nrootless_storage_path = \"/big/$USER/$UID\"\n[storage.options]\nadditionalimagestores = [\"/ro\"]\n");
        let vars = [
            ("HOME", h),
            ("USER", "u"),
            ("XDG_RUNTIME_DIR", xdg_run.to_str().unwrap()),
            ("XDG_DATA_HOME", "/data"),
        ];
        let c = StorageConfig::resolve(&env(r, 4242, &vars)).unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/big/u/4242"));
        assert_eq!(
            c.run_root,
            std::fs::canonicalize(&xdg_run).unwrap().join("containers")
        );
        assert_eq!(c.driver.as_deref(), Some("overlay"));
        assert!(c.additional_image_stores.is_empty());

        // The user's file replaces the system's; missing roots come from the defaults (which
        // took the system's rootless_storage_path; USER is unset now).
        write(&home.join(".config/containers/storage.conf"), "[storage]\ndriver = \"overlay\"\n[storage.options.overlay]\nmount_program = \"/usr/bin/fuse-overlayfs\"\n");
        let vars = [("HOME", h), ("XDG_RUNTIME_DIR", xdg_run.to_str().unwrap())];
        let c = StorageConfig::resolve(&env(r, 4242, &vars)).unwrap();
        assert_eq!(c.graph_root, PathBuf::from("/big/4242"));
        assert_eq!(
            c.mount_program,
            Some(PathBuf::from("/usr/bin/fuse-overlayfs"))
        );
        let c = c.with_overrides(Some(Path::new("/flag")), None);
        assert_eq!(c.graph_root, PathBuf::from("/flag"));
    }

    #[test]
    fn expansion() {
        let e = env(Path::new("/x"), 7, &[("A", "a"), ("B_1", "b")]);
        assert_eq!(
            expand("/p/$A/${B_1}/$UID/$NOPE/x$", &e),
            PathBuf::from("/p/a/b/7/x$")
        );
        assert_eq!(expand("/p/./q/../r//", &e), PathBuf::from("/p/r"));
    }
}
