//! Moving images between a bootc system's stores: `image copy-to-storage`,
//! `image pull-from-default-storage` and `image cmd push`.
//!
//! 1. [`copy_to_storage`]: an image into the host's default containers-storage, named
//!    `localhost/bootc` unless told otherwise; by default the booted deployment's image,
//!    exported from the ostree repository ([`super::booted`]).
//! 2. [`pull_from_default_storage`]: an image of the host's store into bootc's, keeping its ID,
//!    digests and names. Layer trees are cloned ([`clone::clone_image`]: reflink, else hard
//!    link, else copy); when the two stores keep whiteouts in different forms the image goes
//!    through the copy pipeline instead, which re-extracts it. [`Method`] says which ran.
//!    The signature policy is checked first, for the image as named in the host's store.
//! 3. [`push`]: an image of bootc's store to a destination, by default the registry its first
//!    name points at.

use std::sync::Arc;

use crate::copy::{copy_image, CopyOptions, CopyReport};
use crate::cstorage::clone::{self, CloneOutcome, CloneStats};
use crate::cstorage::{catalog, ImageRecord, StorageSink, StorageSource};
use crate::endpoint::{copy_between, EndpointOptions};
use crate::error::{Error, Result};
use crate::progress::{Observed, Progress};
use crate::reference::Reference;
use crate::transport::{DefaultTransport, ImageRef, StorageImage};

use super::System;

/// The default target of [`copy_to_storage`].
pub const DEFAULT_TARGET: &str = "localhost/bootc";

/// One image copied between two names.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Where it came from.
    pub source: ImageRef,
    /// Where it went.
    pub destination: ImageRef,
    /// What the copy did.
    pub report: CopyReport,
}

/// `image copy-to-storage`: copy `source` into the host's default store as `target` (a name,
/// read in that store, or any transport name).
pub fn copy_to_storage(
    system: &System,
    source: Option<&str>,
    target: &str,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<Transfer> {
    let source = match source {
        Some(s) => ImageRef::parse(s)?,
        None => {
            let booted = system.booted_image()?.ok_or_else(|| Error::NotFound {
                what: format!(
                    "a booted deployment (no ostree= on the kernel command line {})",
                    system.kernel_cmdline.display()
                ),
                hint: "this is not a booted bootc system; name the image to copy with --source (e.g. --source docker://quay.io/org/image:tag or --source ostree:[REPO]IMAGE)".into(),
            })?;
            ImageRef::Ostree {
                repo: Some(system.ostree_repo()),
                image: Some(booted.image),
            }
        }
    };
    let destination = ImageRef::parse_with_default(
        target,
        &DefaultTransport::ContainersStorage(Some(system.host_storage_spec()?)),
    )?;
    let report = copy_between(&source, &destination, options, copy, progress)?;
    Ok(Transfer {
        source,
        destination,
        report,
    })
}

/// How [`pull_from_default_storage`] moved the image.
#[derive(Debug, Clone)]
pub enum Method {
    /// Layer trees cloned between the stores.
    Cloned(CloneStats),
    /// The stores keep whiteouts differently: re-extracted through the copy pipeline.
    Reextracted(CopyReport),
}

/// What [`pull_from_default_storage`] did.
#[derive(Debug, Clone)]
pub struct DefaultStoragePull {
    /// The image, as found in the host's store.
    pub image: ImageRecord,
    /// How it was moved.
    pub method: Method,
}

/// `image pull-from-default-storage IMAGE`: copy `image` (a name or ID in the host's default
/// store) into bootc's store with the same ID, digests and names.
pub fn pull_from_default_storage(
    system: &System,
    image: &str,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<DefaultStoragePull> {
    let host = system.read_host_storage()?;
    let record = host.image(image)?;
    // The signature policy, for the image as the host's store names it, before bootc's
    // store is opened.
    let policy = system.policy.load()?;
    {
        let name = ImageRef::containers_storage(
            host.spec(),
            match record.names.first().and_then(|n| Reference::parse(n).ok()) {
                Some(n) => StorageImage::NamedWithId(n, record.id.clone()),
                None => StorageImage::Id(record.id.clone()),
            },
        );
        let source = StorageSource::open(
            system.read_host_storage()?,
            &StorageImage::Id(record.id.clone()),
        )?;
        crate::endpoint::checked_plan(
            &name,
            &source,
            policy.as_deref(),
            &system.endpoints(),
            copy,
        )?;
    }
    let dst = system.open_storage()?;
    let method = match clone::clone_image(&host, &dst, &record, &[])? {
        CloneOutcome::Cloned(stats) => Method::Cloned(stats),
        CloneOutcome::WhiteoutFormsDiffer => {
            let source = StorageSource::open(host, &StorageImage::Id(record.id.clone()))?;
            let sink = StorageSink::new(dst, record.names.first().cloned());
            let report = match progress {
                Some(p) => copy_image(
                    &Observed::source(&source, p.clone()),
                    &Observed::sink(&sink, p.clone()),
                    copy,
                )?,
                None => copy_image(&source, &sink, copy)?,
            };
            for name in record.names.iter().skip(1) {
                catalog::tag(sink.store(), &record.id, std::slice::from_ref(name))?;
            }
            Method::Reextracted(report)
        }
    };
    Ok(DefaultStoragePull {
        image: record,
        method,
    })
}

/// `image cmd push IMAGE [DESTINATION]`: copy `image` of bootc's store to `destination` (a
/// registry reference, or any transport name), by default `docker://` + its first name.
pub fn push(
    system: &System,
    image: &str,
    destination: Option<&str>,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<Transfer> {
    let record = system.read_storage()?.image(image)?;
    let source =
        ImageRef::containers_storage(system.storage_spec(), StorageImage::Id(record.id.clone()));
    let destination = match destination {
        Some(d) => ImageRef::parse_with_default(d, &DefaultTransport::Docker)?,
        None => {
            let name = record.names.first().ok_or_else(|| Error::NotFound {
                what: format!("a name for image {} to push it under", &record.id[..12]),
                hint: "give a destination, e.g. `stowage image cmd push IMAGE docker://registry/repo:tag`".into(),
            })?;
            ImageRef::Docker(Reference::parse_with_default_tag(name)?)
        }
    };
    let report = copy_between(&source, &destination, options, copy, progress)?;
    Ok(Transfer {
        source,
        destination,
        report,
    })
}
