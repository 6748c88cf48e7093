//! Signature policy (containers-policy.json(5)): which images may be copied or pulled.
//!
//! 1. [`PolicySetting`] says where the policy comes from: the default lookup
//!    (`$HOME/.config/containers/policy.json`, else `/etc/containers/policy.json`; neither is an
//!    error, as in skopeo), an explicit file (`--policy`), or none at all
//!    (`--insecure-policy`). [`config`] parses the file strictly.
//! 2. [`scope`] turns an image name into the scopes containers/image would look up for its
//!    transport; [`Policy::requirements_for`] picks the first one the policy has.
//! 3. [`eval`] runs that scope's requirements: `insecureAcceptAnything`, `reject`,
//!    `sigstoreSigned` (with [`sigstore`] verification and [`identity`] matching), and refuses
//!    `signedBy` with a clear message (no OpenPGP verifier is built in).
//! 4. The copy pipeline ([`crate::endpoint::copy_between`]) runs the check on the chosen
//!    single-platform manifest before it reads the config or any layer, so a refused image
//!    leaves the destination exactly as it was.

pub mod config;
pub mod eval;
pub mod identity;
pub mod scope;
pub mod sigstore;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{KeySource, Policy, PolicyPaths, Requirement, SignedIdentity};
pub use scope::ImageScopes;
pub use sigstore::{PrivateKey, PublicKey, SigstoreSignature};

use crate::error::Result;

/// The system-wide policy file.
pub const SYSTEM_POLICY_PATH: &str = "/etc/containers/policy.json";

/// Where the signature policy of a copy comes from.
#[derive(Debug, Clone)]
pub enum PolicySetting {
    /// The default lookup (the user's file, else the system's); missing is an error.
    Default(PolicyPaths),
    /// This file (`--policy FILE`).
    File(PathBuf),
    /// A policy already parsed.
    Loaded(Arc<Policy>),
    /// No checks at all (`--insecure-policy`).
    InsecureAcceptAnything,
}

impl Default for PolicySetting {
    fn default() -> Self {
        PolicySetting::Default(PolicyPaths::from_env())
    }
}

impl PolicySetting {
    /// The policy to enforce (`None` for [`PolicySetting::InsecureAcceptAnything`]): read
    /// now, so a missing or invalid file fails before anything is opened for writing.
    pub fn load(&self) -> Result<Option<Arc<Policy>>> {
        match self {
            PolicySetting::Default(paths) => Ok(Some(Arc::new(Policy::load(&paths.find()?)?))),
            PolicySetting::File(path) => Ok(Some(Arc::new(Policy::load(path)?))),
            PolicySetting::Loaded(p) => Ok(Some(p.clone())),
            PolicySetting::InsecureAcceptAnything => Ok(None),
        }
    }
}
