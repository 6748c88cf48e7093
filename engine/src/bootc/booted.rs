//! The booted deployment and the image it was deployed from, as bootc finds them.
//!
//! 1. The kernel command line (`/proc/cmdline`) has `ostree=/ostree/boot.N/OS/BOOTCSUM/SERIAL`,
//!    a path in the physical root (the sysroot) that resolves, through the boot symlinks, to
//!    `ostree/deploy/STATEROOT/deploy/CHECKSUM.SERIAL`. Every symlink is resolved inside the
//!    sysroot; a link that leaves it is an error.
//! 2. Beside the deployment, `CHECKSUM.SERIAL.origin` is a keyfile whose
//!    `[origin] container-image-reference` names the image, in ostree-rs-ext's
//!    `OstreeImageReference` syntax: `ostree-unverified-registry:NAME`,
//!    `ostree-remote-registry:REMOTE:NAME`, `ostree-image-signed:docker://NAME`,
//!    `ostree-unverified-image:docker://NAME` or `ostree-remote-image:REMOTE:docker://NAME`.
//! 3. The image's merge commit lives in the ostree repository under the target reference
//!    (`docker://NAME`), which is what [`booted_image`] returns.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;

/// The booted deployment: where it is and the image it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootedImage {
    /// The deployment directory (`SYSROOT/ostree/deploy/STATEROOT/deploy/CHECKSUM.SERIAL`).
    pub deployment: PathBuf,
    /// Its `.origin` file.
    pub origin: PathBuf,
    /// `container-image-reference` as written.
    pub origin_reference: String,
    /// The image as a registry reference (the name of its commit in the repository).
    pub image: Reference,
}

/// The `ostree=` argument of a kernel command line.
pub fn ostree_karg(cmdline: &str) -> Option<&str> {
    cmdline
        .split_ascii_whitespace()
        .find_map(|a| a.strip_prefix("ostree="))
}

/// Resolve `path` (absolute, meaning inside `root`) to a path inside `root`, following
/// symlinks with `root` as `/` (at most 40, as the kernel allows).
fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    let mut pending: Vec<PathBuf> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c.as_os_str() == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&c);
        let full = root.join(&candidate);
        let meta = std::fs::symlink_metadata(&full).at("reading", &full)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Err(Error::Malformed {
                    what: format!("boot path {}", path.display()),
                    reason: "more than 40 symlinks".into(),
                });
            }
            let target = std::fs::read_link(&full).at("reading the link", &full)?;
            if target.is_absolute() {
                out = PathBuf::new();
            }
            for part in target.components().rev() {
                match part {
                    Component::Normal(n) => pending.push(PathBuf::from(n)),
                    Component::ParentDir => pending.push(PathBuf::from("..")),
                    _ => {}
                }
            }
        } else {
            out = candidate;
        }
    }
    Ok(root.join(out))
}

/// The registry reference an `OstreeImageReference` targets (module doc, step 2).
pub fn origin_image(reference: &str) -> Result<Reference> {
    let bad = |reason: &str| Error::InvalidReference {
        input: reference.to_string(),
        reason: reason.to_string(),
    };
    let (kind, rest) = reference.split_once(':').ok_or_else(|| {
        bad("expected ostree-unverified-registry:NAME or another ostree-rs-ext form")
    })?;
    let name = match kind {
        "ostree-unverified-registry" => rest,
        "ostree-remote-registry" => rest.split_once(':').map(|(_, n)| n).ok_or_else(|| bad("expected ostree-remote-registry:REMOTE:NAME"))?,
        "ostree-unverified-image" | "ostree-image-signed" => rest,
        "ostree-remote-image" => rest.split_once(':').map(|(_, n)| n).ok_or_else(|| bad("expected ostree-remote-image:REMOTE:TRANSPORT:NAME"))?,
        _ => return Err(bad("unknown kind; expected ostree-unverified-registry:, ostree-remote-registry:, ostree-unverified-image:, ostree-image-signed: or ostree-remote-image:")),
    };
    let name = match kind {
        "ostree-unverified-registry" | "ostree-remote-registry" => name,
        _ => name.strip_prefix("docker://").ok_or_else(|| {
            bad("only registry images (docker://) can be read back from the ostree repository by stowage")
        })?,
    };
    Reference::parse_with_default_tag(name)
}

/// The booted deployment under `sysroot` for the kernel command line `cmdline` (steps 1–2).
/// `None` when the command line has no `ostree=` (not a booted ostree/bootc system).
pub fn booted_image(sysroot: &Path, cmdline: &str) -> Result<Option<BootedImage>> {
    let Some(karg) = ostree_karg(cmdline) else {
        return Ok(None);
    };
    let deployment = resolve_in_root(sysroot, Path::new(karg))?;
    let name = deployment
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Malformed {
            what: format!("deployment {}", deployment.display()),
            reason: "the path has no name".into(),
        })?;
    let origin = deployment.with_file_name(format!("{name}.origin"));
    let text = std::fs::read_to_string(&origin).at("reading", &origin)?;
    let mut section = "";
    let mut origin_reference = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s;
        } else if section == "origin" {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "container-image-reference" {
                    origin_reference = Some(v.trim().to_string());
                }
            }
        }
    }
    let origin_reference = origin_reference.ok_or_else(|| Error::NotFound {
        what: format!("container-image-reference in {}", origin.display()),
        hint:
            "the booted deployment was not deployed from a container image; name one with --source"
                .into(),
    })?;
    let image = origin_image(&origin_reference)?;
    Ok(Some(BootedImage {
        deployment,
        origin,
        origin_reference,
        image,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_booted_image_inside_the_sysroot() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dep = root.join("ostree/deploy/os/deploy");
        std::fs::create_dir_all(dep.join("abc.0")).unwrap();
        std::fs::write(
            dep.join("abc.0.origin"),
            "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/x/y:1\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("ostree/boot.1/os/bcs")).unwrap();
        std::os::unix::fs::symlink(
            "../../../deploy/os/deploy/abc.0",
            root.join("ostree/boot.1/os/bcs/0"),
        )
        .unwrap();
        std::os::unix::fs::symlink("boot.1", root.join("ostree/boot.0")).unwrap();
        let b = booted_image(
            root,
            "BOOT_IMAGE=/vmlinuz ostree=/ostree/boot.0/os/bcs/0 rw",
        )
        .unwrap()
        .unwrap();
        assert_eq!(b.image.to_string(), "quay.io/x/y:1");
        assert_eq!(b.deployment, root.join("ostree/deploy/os/deploy/abc.0"));
        assert_eq!(booted_image(root, "quiet").unwrap(), None);
        // A link out of the sysroot stays inside it (and then is not there).
        std::os::unix::fs::symlink("/etc", root.join("ostree/boot.1/os/bcs/1")).unwrap();
        assert!(booted_image(root, "ostree=/ostree/boot.1/os/bcs/1").is_err());
    }

    #[test]
    fn origin_references() {
        for (r, want) in [
            ("ostree-unverified-registry:quay.io/a/b:1", "quay.io/a/b:1"),
            (
                "ostree-remote-registry:fedora:quay.io/a/b",
                "quay.io/a/b:latest",
            ),
            (
                "ostree-image-signed:docker://quay.io/a/b:2",
                "quay.io/a/b:2",
            ),
            (
                "ostree-remote-image:r:docker://quay.io/a/b:3",
                "quay.io/a/b:3",
            ),
        ] {
            assert_eq!(origin_image(r).unwrap().to_string(), want, "{r}");
        }
        assert!(origin_image("ostree-unverified-image:oci:/x").is_err());
        assert!(origin_image("nope").is_err());
    }
}
