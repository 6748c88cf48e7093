//! The ostree-rs-ext container image store inside an ostree repository.

use std::collections::HashSet;

use super::prune::PruneStats;
use super::sink::{blob_ref, image_ref, layer_data_ref, LAYER_DATA_PREFIX};
use super::{refescape, Repo};
use crate::digest::parse_digest;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// Ref prefix of pulled images (the merge commits).
pub const IMAGE_PREFIX: &str = "ostree/container/image";
/// Ref prefix of layer blobs.
pub const LAYER_PREFIX: &str = "ostree/container/blob";
/// Ref prefix of base images other tools keep as GC roots.
pub const BASE_IMAGE_PREFIX: &str = "ostree/container/baseimage";

/// The images ostree-rs-ext has pulled into `repo`, as transport strings
/// (`docker://quay.io/x/y:tag`, `oci:/path`, ...).
pub fn list_images(repo: &Repo) -> Result<Vec<String>> {
    repo.list_refs(IMAGE_PREFIX)?
        .into_iter()
        .map(|(name, _)| refescape::unprefix_unescape(IMAGE_PREFIX, &name))
        .collect()
}

/// What [`image_summaries`] knows of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSummary {
    /// The image as a transport string (`docker://quay.io/x/y:tag`).
    pub name: String,
    /// The manifest digest (`ostree.manifest-digest`).
    pub digest: Option<String>,
    /// The manifest's layer and config sizes (compressed, as in the registry).
    pub size: Option<u64>,
    /// The config's `created`.
    pub created: Option<String>,
}

/// [`list_images`] with each image's digest, size and creation time, from the metadata
/// ostree-rs-ext records on the image's merge commit (`ostree.manifest-digest`,
/// `ostree.manifest`, `ostree.container.image-config`); what is missing stays `None`.
pub fn image_summaries(repo: &Repo) -> Result<Vec<ImageSummary>> {
    let mut out = Vec::new();
    for (r, hex) in repo.list_refs(IMAGE_PREFIX)? {
        let name = refescape::unprefix_unescape(IMAGE_PREFIX, &r)?;
        let c = repo.read_commit(&super::Checksum::from_hex(&hex)?)?;
        let json = |key: &str| -> Option<serde_json::Value> {
            c.meta_str(key).and_then(|s| serde_json::from_str(s).ok())
        };
        let manifest = json("ostree.manifest");
        let size = manifest.as_ref().map(|m| {
            m["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&m["config"]))
                .filter_map(|d| d["size"].as_u64())
                .sum()
        });
        let created = json("ostree.container.image-config")
            .and_then(|c| c["created"].as_str().map(str::to_string));
        out.push(ImageSummary {
            name,
            digest: c.meta_str("ostree.manifest-digest").map(str::to_string),
            size,
            created,
        });
    }
    Ok(out)
}

/// What [`delete_image`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// Layer refs (blob and export data) no remaining image needed, removed.
    pub layer_refs_removed: Vec<String>,
    /// What pruning the objects did.
    pub pruned: PruneStats,
}

/// `ostree container image remove` + `prune-layers` + `ostree prune --refs-only`: remove the
/// image `image`'s ref, then the layer refs no other image uses ([`gc_layers`]), then every
/// object nothing references any more ([`Repo::prune`]).
pub fn delete_image(repo: &Repo, image: &Reference) -> Result<DeleteReport> {
    let imgref = format!("docker://{image}");
    let r = image_ref(&imgref)?;
    if repo.read_ref(&r)?.is_none() {
        return Err(Error::NotFound {
            what: format!("image {imgref} in {}", repo.path().display()),
            hint: format!(
                "list the repository's images with `stowage image --ostree-repo {} list --type host`",
                repo.path().display()
            ),
        });
    }
    let mut txn = repo.begin()?;
    txn.set_ref(&r, None)?;
    txn.commit()?;
    let layer_refs_removed = gc_layers(repo)?;
    let pruned = repo.prune()?;
    Ok(DeleteReport {
        layer_refs_removed,
        pruned,
    })
}

/// Remove the layer refs (`ostree/container/blob/…` and stowage's `stowage/layer-data/…`)
/// whose layer no image (nor `ostree/container/baseimage/…` root) lists in its manifest, as
/// ostree-rs-ext's `gc_image_layers` does. Returns the refs removed.
pub fn gc_layers(repo: &Repo) -> Result<Vec<String>> {
    let mut wanted: HashSet<String> = HashSet::new();
    for prefix in [IMAGE_PREFIX, BASE_IMAGE_PREFIX] {
        for (name, hex) in repo.list_refs(prefix)? {
            let commit = super::Checksum::from_hex(&hex)?;
            let c = repo.read_commit(&commit)?;
            let Some(manifest) = c.meta_str("ostree.manifest") else {
                continue;
            };
            let m: serde_json::Value = serde_json::from_str(manifest).map_err(|e| Error::Json {
                what: format!("ostree.manifest of {name}"),
                source: e,
            })?;
            for l in m["layers"].as_array().into_iter().flatten() {
                if let Some(d) = l["digest"].as_str() {
                    let d = parse_digest(d)?;
                    wanted.insert(blob_ref(&d)?);
                    wanted.insert(layer_data_ref(&d)?);
                }
            }
        }
    }
    let mut removed = Vec::new();
    let mut txn = repo.begin()?;
    for prefix in [LAYER_PREFIX, LAYER_DATA_PREFIX] {
        for (name, _) in repo.list_refs(prefix)? {
            if !wanted.contains(&name) {
                txn.set_ref(&name, None)?;
                removed.push(name);
            }
        }
    }
    txn.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_escaped_image_refs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("objects")).unwrap();
        std::fs::write(root.join("config"), "[core]\nrepo_version=1\nmode=bare\n").unwrap();
        let r = refescape::prefix_escape(IMAGE_PREFIX, "docker://quay.io/fedora/fedora-bootc:42")
            .unwrap();
        let p = root.join("refs/heads").join(&r);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "a".repeat(64) + "\n").unwrap();
        let repo = Repo::open(root).unwrap();
        assert_eq!(
            list_images(&repo).unwrap(),
            vec!["docker://quay.io/fedora/fedora-bootc:42"]
        );
    }
}
