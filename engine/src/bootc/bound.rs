//! Logically bound images: the images a deployment declares in
//! `ROOT/usr/lib/bootc/bound-images.d/`.
//!
//! 1. Every entry must be a symlink to a quadlet `.image` or `.container` file; the image is
//!    `[Image] Image=` or `[Container] Image=`.
//! 2. Symlinks resolve inside ROOT (absolute targets too; `openat2(RESOLVE_IN_ROOT)`), exactly
//!    as bootc resolves them, so a deployment cannot point stowage at host files.
//! 3. An `AuthFile=` in an `.image` file, a non-symlink entry, another extension or a systemd
//!    `%` specifier other than `%%` is an error naming the file, as in bootc.
//!
//! The INI reader is hand-written: quadlet files need only sections and `key=value` lines, and
//! a crate would add nothing but a dependency.

use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};

use super::BOUND_IMAGES_DIR;
use crate::error::{Error, IoContext, Result};

/// A logically bound image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundImage {
    /// The image reference from the quadlet file.
    pub image: String,
    /// The symlink in `bound-images.d` that declared it.
    pub declared_by: PathBuf,
}

/// The bound images of the deployment rooted at `root`, sorted by symlink name.
pub fn bound_images(root: &Path) -> Result<Vec<BoundImage>> {
    let dir_path = root.join(BOUND_IMAGES_DIR);
    let entries = match std::fs::read_dir(&dir_path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io_path("listing", &dir_path, e)),
    };
    let mut names: Vec<_> = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .at("listing", &dir_path)?;
    names.sort();
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at("opening", root)?;
    let mut out = Vec::new();
    for name in names {
        let path = dir_path.join(&name);
        let bad = |reason: String| Error::Malformed {
            what: format!("bound image {}", path.display()),
            reason,
        };
        let meta = std::fs::symlink_metadata(&path).at("stat", &path)?;
        if !meta.file_type().is_symlink() {
            return Err(bad("not a symlink; bound images are declared by symlinks to .image or .container files".into()));
        }
        let section = match Path::new(&name).extension().and_then(|e| e.to_str()) {
            Some("image") => "Image",
            Some("container") => "Container",
            _ => return Err(bad("the name must end in .image or .container".into())),
        };
        let rel = Path::new(BOUND_IMAGES_DIR).join(&name);
        let fd = openat2(
            &root_fd,
            &rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .at("opening (inside the root)", &path)?;
        let mut text = String::new();
        std::fs::File::from(fd)
            .read_to_string(&mut text)
            .at("reading", &path)?;
        let image = quadlet_image(&text, section).map_err(bad)?;
        out.push(BoundImage {
            image,
            declared_by: path,
        });
    }
    Ok(out)
}

/// The `Image=` of section `[section]`, with `%%` unescaped.
fn quadlet_image(text: &str, section: &str) -> std::result::Result<String, String> {
    let mut current = String::new();
    let mut image = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.trim().to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if current != section {
            continue;
        }
        match k.trim() {
            "Image" => image = Some(v.trim().to_string()),
            "AuthFile" if section == "Image" => {
                return Err("AuthFile= is not supported for bound images".into())
            }
            _ => {}
        }
    }
    let raw = image.ok_or_else(|| format!("no Image= in the [{section}] section"))?;
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                other => {
                    return Err(format!(
                        "systemd specifier %{} in Image= is not supported",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadlet_parsing() {
        assert_eq!(
            quadlet_image("[Image]\nImage=quay.io/x/y:1\n", "Image").unwrap(),
            "quay.io/x/y:1"
        );
        assert_eq!(
            quadlet_image(
                "[Unit]\nImage=no\n[Container]\n# c\nImage = a%%b\n",
                "Container"
            )
            .unwrap(),
            "a%b"
        );
        assert!(quadlet_image("[Image]\nImage=x\nAuthFile=/a\n", "Image")
            .unwrap_err()
            .contains("AuthFile"));
        assert!(quadlet_image("[Image]\nImage=x%n\n", "Image")
            .unwrap_err()
            .contains("%n"));
        assert!(quadlet_image("[Container]\n", "Container")
            .unwrap_err()
            .contains("no Image="));
    }

    #[test]
    fn bound_images_resolve_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let d = root.join(BOUND_IMAGES_DIR);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::create_dir_all(root.join("usr/share/containers/systemd")).unwrap();
        std::fs::write(
            root.join("usr/share/containers/systemd/a.image"),
            "[Image]\nImage=quay.io/a/b:1\n",
        )
        .unwrap();
        std::fs::write(
            root.join("usr/share/containers/systemd/c.container"),
            "[Container]\nImage=localhost/c\n",
        )
        .unwrap();
        // Absolute target: must resolve inside `root`, not on the host.
        std::os::unix::fs::symlink("/usr/share/containers/systemd/a.image", d.join("a.image"))
            .unwrap();
        std::os::unix::fs::symlink(
            "../../../share/containers/systemd/c.container",
            d.join("c.container"),
        )
        .unwrap();
        let got = bound_images(root).unwrap();
        assert_eq!(
            got.iter().map(|b| b.image.as_str()).collect::<Vec<_>>(),
            ["quay.io/a/b:1", "localhost/c"]
        );
        std::fs::write(d.join("plain.image"), "[Image]\nImage=x\n").unwrap();
        let err = bound_images(root).unwrap_err().to_string();
        assert!(
            err.contains("plain.image") && err.contains("not a symlink"),
            "{err}"
        );
    }
}
