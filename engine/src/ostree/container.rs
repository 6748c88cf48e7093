//! The ostree-rs-ext container image store inside an ostree repository.

use super::{refescape, Repo};
use crate::error::Result;

/// Ref prefix of pulled images (the merge commits).
pub const IMAGE_PREFIX: &str = "ostree/container/image";
/// Ref prefix of layer blobs.
pub const LAYER_PREFIX: &str = "ostree/container/blob";

/// The images ostree-rs-ext has pulled into `repo`, as transport strings
/// (`docker://quay.io/x/y:tag`, `oci:/path`, ...).
pub fn list_images(repo: &Repo) -> Result<Vec<String>> {
    repo.list_refs(IMAGE_PREFIX)?
        .into_iter()
        .map(|(name, _)| refescape::unprefix_unescape(IMAGE_PREFIX, &name))
        .collect()
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
