//! Where the host's container configuration lives: the environment variables and directories
//! containers/image consults, gathered once so tests can point them at temporary directories.
//!
//! [`auth_file`](super::auth_file), [`registries_conf`](super::registries_conf) and
//! [`certs_d`](super::certs_d) each add the lookups of their own files to [`HostPaths`].

use std::path::PathBuf;

/// Where the host's configuration lives. [`HostPaths::from_env`] gives the real locations;
/// tests point them at temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// The user id (for `/run/containers/UID/auth.json`).
    pub uid: u32,
    /// `/etc/containers` (registries.conf, registries.conf.d, certs.d).
    pub etc_containers: PathBuf,
    /// `/etc/docker` (certs.d).
    pub etc_docker: PathBuf,
    /// `$PATH`, where credential helpers are looked for.
    pub search_path: Option<std::ffi::OsString>,
}

impl HostPaths {
    /// The locations from the process environment.
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        HostPaths {
            home: var("HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            uid: rustix::process::getuid().as_raw(),
            etc_containers: PathBuf::from("/etc/containers"),
            etc_docker: PathBuf::from("/etc/docker"),
            search_path: std::env::var_os("PATH"),
        }
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config`.
    pub(super) fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }
}

/// Host paths below a temporary root, shared by the tests of the configuration files.
#[cfg(test)]
pub(super) mod test_support {
    use std::path::Path;

    use super::HostPaths;

    /// `root/home`, `root/run`, `root/etc/{containers,docker}` and `root/bin` on `PATH`.
    pub(in crate::registry) fn paths(root: &Path) -> HostPaths {
        HostPaths {
            home: Some(root.join("home")),
            xdg_runtime_dir: Some(root.join("run")),
            xdg_config_home: None,
            registry_auth_file: None,
            uid: 1000,
            etc_containers: root.join("etc/containers"),
            etc_docker: root.join("etc/docker"),
            search_path: Some(root.join("bin").into_os_string()),
        }
    }

    /// Write `text` to `path`, creating its parent directories.
    pub(in crate::registry) fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}
