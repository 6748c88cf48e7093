//! `image cmd pull`: pulling images into bootc's containers-storage, several at once.
//!
//! 1. Each image given is turned into its candidates ([`candidates`]): a name with a
//!    transport is used as written; a short name (`fedora`) gives one registry reference per
//!    `unqualified-search-registries` entry of registries.conf, in order, as podman resolves
//!    it; any other name is a `docker://` reference.
//! 2. Each candidate gets its destination in bootc's store: a registry image keeps its
//!    reference as its name; an OCI layout or archive is named after its directory and tag
//!    under `localhost/`, as podman names such images.
//! 3. [`pull_images`] pulls every image on its own thread; an image's candidates are tried in
//!    order until one succeeds, and each image reports its own outcome ([`Pulled`] or
//!    [`PullFailure`] with every attempt's error), so one bad name does not hide the others.

use std::sync::Arc;

use crate::copy::{CopyOptions, CopyReport};
use crate::cstorage::catalog::local_name;
use crate::cstorage::Store;
use crate::endpoint::{copy_between, EndpointOptions};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::RegistriesConf;
use crate::transport::{has_transport, DefaultTransport, ImageRef, StorageImage};

use super::System;

/// One way to get an image: where from, and its name in bootc's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The source.
    pub source: ImageRef,
    /// The destination in bootc's store.
    pub destination: ImageRef,
}

/// An image pulled.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The name as given.
    pub image: String,
    /// The candidate that succeeded.
    pub candidate: Candidate,
    /// What the copy did.
    pub report: CopyReport,
}

/// An image that could not be pulled, with the error of each candidate tried.
#[derive(Debug, thiserror::Error)]
#[error("pulling {image}: {}", attempts.iter().map(|(c, e)| format!("{}: {e}", c.source)).collect::<Vec<_>>().join("; "))]
pub struct PullFailure {
    /// The name as given.
    pub image: String,
    /// Each candidate tried and why it failed.
    pub attempts: Vec<(Candidate, Error)>,
}

/// The candidates for `image`, in the order they are tried (step 1–2 of the module doc).
pub fn candidates(
    system: &System,
    image: &str,
    registries: &RegistriesConf,
) -> Result<Vec<Candidate>> {
    let sources: Vec<ImageRef> = if !has_transport(image) && Reference::is_short_name(image) {
        registries
            .resolve_short_name(image)?
            .into_iter()
            .map(ImageRef::Docker)
            .collect()
    } else {
        vec![ImageRef::parse_with_default(
            image,
            &DefaultTransport::Docker,
        )?]
    };
    sources
        .into_iter()
        .map(|source| {
            let name = match &source {
                ImageRef::Docker(r) => r.clone(),
                ImageRef::Oci { path, tag } | ImageRef::OciArchive { path, tag } => {
                    let dir = path
                        .file_name()
                        .map(|f| f.to_string_lossy().to_lowercase())
                        .unwrap_or_else(|| "image".into());
                    local_name(&format!("{dir}:{}", tag.as_deref().unwrap_or("latest")))?
                }
                other => {
                    return Err(Error::Unsupported {
                        transport: other.to_string(),
                        reason: "only registry images and OCI layouts or archives can be pulled into bootc's storage".into(),
                    })
                }
            };
            let destination =
                ImageRef::containers_storage(system.storage_spec(), StorageImage::Named(name));
            Ok(Candidate {
                source,
                destination,
            })
        })
        .collect()
}

/// The logically bound images of the deployment root (`system.root`) and which of them bootc's
/// store lacks: `(distinct images declared, missing)`, for `image cmd pull --bound` (a store that does not
/// exist yet lacks them all).
pub fn missing_bound_images(system: &System) -> Result<(usize, Vec<String>)> {
    let bound = super::bound::bound_images(&system.root)?;
    let store = match Store::open_read_only(&system.storage_root(), None) {
        Ok(s) => Some(s),
        Err(Error::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut names: Vec<String> = Vec::new();
    for b in bound {
        if !names.contains(&b.image) {
            names.push(b.image);
        }
    }
    let mut missing = Vec::new();
    for name in &names {
        let present = match &store {
            Some(s) => crate::cstorage::catalog::image_exists(s, name)?,
            None => false,
        };
        if !present {
            missing.push(name.clone());
        }
    }
    Ok((names.len(), missing))
}

/// Pull every image of `images` into bootc's store at once (step 3 of the module doc).
/// Resolving a name fails the whole call before anything is pulled; a failed pull is
/// reported in that image's entry.
pub fn pull_images(
    system: &System,
    images: &[String],
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<Vec<std::result::Result<Pulled, PullFailure>>> {
    let registries = options.src_registry.registries()?;
    let jobs: Vec<(String, Vec<Candidate>)> = images
        .iter()
        .map(|i| Ok((i.clone(), candidates(system, i, &registries)?)))
        .collect::<Result<_>>()?;
    Ok(std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(image, candidates)| {
                s.spawn(move || {
                    let mut attempts = Vec::new();
                    for candidate in candidates {
                        match copy_between(
                            &candidate.source,
                            &candidate.destination,
                            options,
                            copy,
                            progress,
                        ) {
                            Ok(report) => {
                                return Ok(Pulled {
                                    image,
                                    candidate,
                                    report,
                                })
                            }
                            Err(e) => attempts.push((candidate, e)),
                        }
                    }
                    Err(PullFailure { image, attempts })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("pull thread panicked"))
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_name_their_destination_in_bootc_storage() {
        let system = System {
            storage_root: Some("/s".into()),
            storage_runroot: "/r".into(),
            ..Default::default()
        };
        let conf = RegistriesConf::default();
        let c = candidates(&system, "quay.io/a/b", &conf).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].source.to_string(), "docker://quay.io/a/b:latest");
        assert_eq!(
            c[0].destination.to_string(),
            "containers-storage:[overlay@/s+/r]quay.io/a/b:latest"
        );
        let c = candidates(&system, "oci:/x/My-Dir:v1", &conf).unwrap();
        assert_eq!(
            c[0].destination.to_string(),
            "containers-storage:[overlay@/s+/r]localhost/my-dir:v1"
        );
        let err = candidates(&system, "containers-storage:foo", &conf).unwrap_err();
        assert!(err.to_string().contains("only registry images"), "{err}");
    }
}
