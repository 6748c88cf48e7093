//! `stowage sync`: a registry repository to a directory of OCI layouts and back, as
//! `skopeo sync --src docker --dest dir` (and `--src dir --dest docker`) does with its `dir:`
//! copies.
//!
//! 1. Registry → directory ([`registry_to_oci`]): SOURCE is `HOST/REPO` (every tag, from the
//!    tag list) or `HOST/REPO:TAG` / `HOST/REPO@DIGEST` (one image). The images go into one OCI
//!    layout per repository, `DEST/<last component of REPO>` (`--scoped`: `DEST/HOST/REPO`,
//!    a `:` in HOST written as `_`, since `oci:PATH:TAG` cannot name a path with `:`), each
//!    under its tag (`oci:DEST/REPO:TAG`).
//! 2. Directory → registry ([`oci_to_registry`]): every OCI layout below SOURCE (a directory
//!    with an `oci-layout` file; SOURCE itself may be one), and every tagged image in it, goes
//!    to `docker://DEST/<layout path below SOURCE>:TAG` (SOURCE itself: `DEST/<its name>`).
//! 3. Each image is one run of the copy pipeline ([`copy_between`]): for an index, the
//!    platform of the copy options, as skopeo sync without `--all`; layers already in the
//!    destination are not copied again. The first failure stops the sync with the image named;
//!    images copied before it stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::copy::{CopyOptions, CopyReport};
use crate::endpoint::{copy_between, EndpointOptions};
use crate::error::{Error, IoContext, Result};
use crate::oci_layout::OciDir;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::RegistrySource;
use crate::transport::ImageRef;

/// One image a sync copied.
#[derive(Debug, Clone)]
pub struct Synced {
    /// Where it came from.
    pub source: ImageRef,
    /// Where it went.
    pub destination: ImageRef,
    /// The copy.
    pub report: CopyReport,
}

fn copy_one(
    source: ImageRef,
    destination: ImageRef,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<Synced> {
    let report = copy_between(&source, &destination, options, copy, progress).map_err(|e| {
        Error::Conflict {
            what: format!("syncing {source} to {destination}"),
            reason: e.to_string(),
        }
    })?;
    Ok(Synced {
        source,
        destination,
        report,
    })
}

/// Registry → directory (step 1 of the module overview).
pub fn registry_to_oci(
    source: &Reference,
    dest_dir: &Path,
    scoped: bool,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<Vec<Synced>> {
    let repo_name = Reference::parse(&source.name())?;
    let layout = if scoped {
        // `oci:PATH:TAG` cannot name a path holding `:`: `host:5000` becomes `host_5000`.
        dest_dir
            .join(source.domain().replace(':', "_"))
            .join(source.path())
    } else {
        dest_dir.join(source.path().rsplit('/').next().unwrap_or(source.path()))
    };
    let images: Vec<(Reference, String)> = match (source.tag(), source.digest()) {
        (Some(t), None) => vec![(source.clone(), t.to_string())],
        (_, Some(d)) => vec![(source.clone(), d.digest().to_string())],
        (None, None) => {
            let tags = RegistrySource::open(&repo_name, &options.src_registry)?.tags()?;
            if tags.is_empty() {
                return Err(Error::NotFound {
                    what: format!("tags of {}", source.name()),
                    hint: "the repository has no tags to sync".into(),
                });
            }
            tags.into_iter()
                .map(|t| Ok((Reference::parse(&format!("{}:{t}", source.name()))?, t)))
                .collect::<Result<_>>()?
        }
    };
    std::fs::create_dir_all(&layout).at("creating the sync destination", &layout)?;
    images
        .into_iter()
        .map(|(r, tag)| {
            copy_one(
                ImageRef::Docker(r),
                ImageRef::Oci {
                    path: layout.clone(),
                    tag: Some(tag),
                },
                options,
                copy,
                progress,
            )
        })
        .collect()
}

/// The OCI layouts at or below `dir`, in path order.
fn layouts_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("oci-layout").is_file() {
            out.push(d);
            continue;
        }
        let mut children: Vec<PathBuf> = std::fs::read_dir(&d)
            .at("reading the sync source", &d)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        children.sort();
        stack.extend(children.into_iter().rev());
    }
    out.sort();
    Ok(out)
}

/// Directory → registry (step 2 of the module overview). `dest` is `HOST[/NAMESPACE]`.
pub fn oci_to_registry(
    source_dir: &Path,
    dest: &str,
    options: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<Vec<Synced>> {
    let dest = dest.trim_end_matches('/');
    let layouts = layouts_below(source_dir)?;
    if layouts.is_empty() {
        return Err(Error::NotFound {
            what: format!("OCI layouts in {}", source_dir.display()),
            hint: "point at an OCI layout or a directory holding some (directories with an oci-layout file)".into(),
        });
    }
    let mut done = Vec::new();
    for layout in layouts {
        let below = match layout.strip_prefix(source_dir) {
            Ok(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from(layout.file_name().unwrap_or_default()),
        };
        let tags = OciDir::open(&layout)?.tags()?;
        for tag in tags {
            let name = format!("{dest}/{}:{tag}", below.display());
            let reference = Reference::parse(&name).map_err(|e| Error::InvalidReference {
                input: name.clone(),
                reason: format!(
                    "{e}; the layout {} and its tag {tag:?} must make a valid image name below {dest}",
                    layout.display()
                ),
            })?;
            done.push(copy_one(
                ImageRef::Oci {
                    path: layout.clone(),
                    tag: Some(tag),
                },
                ImageRef::Docker(reference),
                options,
                copy,
                progress,
            )?);
        }
    }
    Ok(done)
}
