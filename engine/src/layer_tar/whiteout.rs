//! Whiteouts: how `.wh.NAME` and `.wh..wh..opq` entries are written ([`WhiteoutMode`]).
//!
//! 1. [`WhiteoutMode::Overlay`]: `.wh.NAME` becomes a 0:0 character device `NAME` (replacing
//!    what is there), and an opaque marker sets the opaque xattr on its directory.
//! 2. [`WhiteoutMode::Files`]: the entries stay plain files (handled as ordinary nodes).
//! 3. [`WhiteoutMode::Apply`]: flattening onto a root filesystem removes what earlier layers
//!    put at the path (or, for an opaque marker, in the directory), keeping every path this
//!    layer lists itself.

use std::io;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, XattrFlags};

use super::entry::EntryMeta;
use super::extract::{is_root, Extractor};
use crate::error::Result;

/// How whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Kernel overlayfs format: `.wh.NAME` becomes a 0:0 character device `NAME`,
    /// `.wh..wh..opq` sets `opaque_xattr = "y"` on its directory.
    Overlay {
        /// `trusted.overlay.opaque` (root) or `user.overlay.opaque` (rootless).
        opaque_xattr: String,
    },
    /// Keep `.wh.*` entries as the plain files they are in the tar (fuse-overlayfs stores).
    Files,
    /// Flatten: delete the whiteouted path / empty the opaque directory of everything earlier
    /// layers put there (unpacking a root filesystem layer by layer into one directory).
    Apply,
}

impl WhiteoutMode {
    /// [`WhiteoutMode::Overlay`] with the opaque xattr the kernel honours for this user:
    /// `trusted.overlay.opaque` as root, `user.overlay.opaque` otherwise.
    pub fn overlay_for_current_user() -> Self {
        let opaque_xattr = if is_root() {
            "trusted.overlay.opaque"
        } else {
            "user.overlay.opaque"
        };
        WhiteoutMode::Overlay {
            opaque_xattr: opaque_xattr.into(),
        }
    }
}

impl Extractor<'_> {
    /// Overlay mode: mark directory `dir` opaque by setting `opaque_xattr` to `y` on it.
    pub(super) fn overlay_opaque(
        &mut self,
        meta: &EntryMeta,
        dir: &Path,
        opaque_xattr: &str,
    ) -> Result<()> {
        let (_parent, _) = self.parent_of(meta, &meta.path)?;
        let fd = self.open_dir_fd(meta, dir)?;
        rustix::fs::fsetxattr(&fd, opaque_xattr, b"y", XattrFlags::empty()).map_err(|e| {
            self.io(
                meta,
                &format!(
                    "setting {opaque_xattr} on {:?} (trusted.* needs root; rootless \
                     stores use user.overlay.opaque or WhiteoutMode::Files)",
                    dir.display()
                ),
                e,
            )
        })
    }

    /// Overlay mode: replace `target` with a 0:0 character device.
    pub(super) fn overlay_whiteout(&mut self, meta: &EntryMeta, target: &Path) -> Result<()> {
        let (parent, name) = self.parent_of(meta, target)?;
        self.remove_existing(meta, &parent, name, target)?;
        rustix::fs::mknodat(
            &parent,
            name,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| {
            self.io(
                meta,
                &format!(
                    "creating whiteout device {} (needs CAP_MKNOD or Linux >= 5.8; a \
                         fuse-overlayfs store keeps .wh. files instead)",
                    target.display()
                ),
                e,
            )
        })?;
        if self.opts.chown {
            let (u, g) = self.owner(meta)?;
            rustix::fs::chownat(&parent, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.io(meta, "chown whiteout", e))?;
        }
        Ok(())
    }

    /// Whether this layer lists `path` or something below it.
    fn listed(&self, path: &Path) -> bool {
        self.seen.contains(path) || self.seen.first_below(path).is_some()
    }

    /// Apply mode: remove `path` as far as earlier layers put it there.
    pub(super) fn prune(&mut self, meta: &EntryMeta, path: &Path) -> Result<()> {
        if path.as_os_str().is_empty() {
            return self.prune_children(meta, path);
        }
        let st = match self.dest.symlink_metadata(path) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // An ancestor is not a directory (or is a symlink leading out): nothing to remove.
            Err(_) => return Ok(()),
        };
        if !self.listed(path) {
            let parent = self.open_dirs(meta, path.parent().unwrap_or(Path::new("")))?;
            let name = path.file_name().unwrap_or_default();
            return self.remove_existing(meta, &parent, name, path);
        }
        if st.is_dir() {
            self.prune_children(meta, path)?;
        }
        Ok(())
    }

    /// Apply mode: prune every child of directory `dir` (not following a symlink at `dir`).
    pub(super) fn prune_children(&mut self, meta: &EntryMeta, dir: &Path) -> Result<()> {
        let d = if dir.as_os_str().is_empty() {
            self.dest
                .try_clone()
                .map_err(|e| self.io(meta, "reopening the destination", e))?
        } else {
            match self.dest.symlink_metadata(dir) {
                Ok(st) if st.is_dir() => {}
                _ => return Ok(()),
            }
            self.dest
                .open_dir(dir)
                .map_err(|e| self.io(meta, &format!("opening {}", dir.display()), e))?
        };
        let mut names = Vec::new();
        for e in d
            .entries()
            .map_err(|e| self.io(meta, &format!("listing {}", dir.display()), e))?
        {
            let e = e.map_err(|e| self.io(meta, &format!("listing {}", dir.display()), e))?;
            names.push(e.file_name());
        }
        drop(d);
        for name in names {
            self.prune(meta, &dir.join(name))?;
        }
        Ok(())
    }
}
