//! `image cmd build`: a Containerfile built into bootc's containers-storage.
//!
//! 1. The base images of the Containerfile's FROM lines are looked up in bootc's store by
//!    name or ID, as podman resolves them there.
//! 2. One that is missing is pulled into bootc's store first, by the rules of `image cmd pull`
//!    ([`super::pull`]: short names through registries.conf, bootc's auth file); [`PullPolicy`]
//!    says when (podman's `--pull` values).
//! 3. The build itself is [`crate::build::build`].

use std::sync::Arc;

use crate::build::{BaseImages, BuildOptions, BuildReport};
use crate::copy::CopyOptions;
use crate::cstorage::{ImageRecord, Store};
use crate::endpoint::EndpointOptions;
use crate::error::{Error, Result};
use crate::progress::Progress;

use super::{pull, System};

/// When a base image is pulled (podman build's `--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Only when the store does not have it (podman's default).
    #[default]
    Missing,
    /// Always, even when the store has it.
    Always,
    /// Never: a missing base image is an error.
    Never,
}

struct Bases<'a> {
    system: &'a System,
    policy: PullPolicy,
    endpoints: &'a EndpointOptions,
    copy: &'a CopyOptions,
    progress: Option<&'a Arc<dyn Progress>>,
}

impl BaseImages for Bases<'_> {
    fn base(&self, store: &Store, name: &str) -> Result<ImageRecord> {
        if self.policy != PullPolicy::Always {
            match store.image(name) {
                Ok(r) => return Ok(r),
                Err(Error::NotFound { .. }) if self.policy == PullPolicy::Missing => {}
                Err(Error::NotFound { what, .. }) => {
                    return Err(Error::NotFound {
                        what,
                        hint: format!("the base image {name} is not in bootc's storage and --pull=never forbids pulling it; pull it first with `stowage image cmd pull {name}`"),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        let results = pull::pull_images(
            self.system,
            &[name.to_string()],
            self.endpoints,
            self.copy,
            self.progress,
        )?;
        match results.into_iter().next() {
            Some(Ok(p)) => {
                let id = p.report.image_id.ok_or_else(|| Error::NotFound {
                    what: format!("the image ID of {name} after pulling it"),
                    hint: String::new(),
                })?;
                store.image(&id)
            }
            Some(Err(e)) => Err(Error::NotFound {
                what: format!("base image {name}"),
                hint: e.to_string(),
            }),
            None => Err(Error::NotFound {
                what: format!("base image {name}"),
                hint: String::new(),
            }),
        }
    }
}

/// Build `options` into bootc's store; `step` is told each instruction.
pub fn build(
    system: &System,
    options: &BuildOptions,
    policy: PullPolicy,
    endpoints: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
    step: &mut dyn FnMut(&str),
) -> Result<BuildReport> {
    let store = system.open_storage()?;
    let bases = Bases {
        system,
        policy,
        endpoints,
        copy,
        progress,
    };
    crate::build::build(store, options, &bases, copy, step)
}
