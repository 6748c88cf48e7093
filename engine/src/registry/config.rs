//! The host's registry configuration, by its old path: `registry::config::X` re-exports the
//! items of [`auth_file`](super::auth_file) (auth.json, credHelpers),
//! [`registries_conf`](super::registries_conf) (registries.conf v1/v2, mirrors, search,
//! blocked, insecure), [`certs_d`](super::certs_d) (certs.d) and
//! [`host_paths`](super::host_paths). New code uses the `registry::` re-exports.

pub use super::auth_file::find_credentials;
pub use super::certs_d::{certs_d_for, read_cert_dir};
pub use super::host_paths::HostPaths;
pub use super::registries_conf::{
    MirrorConf, PullFromMirror, RegistriesConf, RegistryConf, RegistryLocation,
};

/// The old name of [`RegistryLocation`] (it collided with [`crate::endpoint`]); kept only
/// until `registry/sink.rs` uses the new name.
pub use super::registries_conf::RegistryLocation as Endpoint;
