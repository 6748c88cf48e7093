//! Copying images between two containers-storage stores without re-extracting them
//! (`stowage image pull-from-default-storage`).
//!
//! What podman does for this (`podman image push … containers-storage:[…]`) is export every
//! layer as a tar and extract it again. Both ends are the same format, so stowage copies the
//! layer directories themselves, keeping layer IDs, digests and image IDs:
//! 1. For each layer of the image, bottom first, that the destination lacks: begin the layer
//!    (recorded incomplete), clone the source's `diff/` tree into it, copy its tar-split, and
//!    finish it with the source record's digests, sizes, compression and uid/gid sets.
//! 2. Regular files are cloned with the cheapest method the filesystems allow, through the
//!    shared [`crate::fs_clone::Cascade`]: a reflink (`FICLONE`: shared extents,
//!    copy-on-write), else a hard link to the source inode (layers are immutable and both
//!    stores want the same metadata), else a byte copy. The first method that fails as
//!    unsupported is not tried again. Hard links inside a layer stay hard links.
//! 3. Directories, symlinks, device nodes (overlay whiteouts) and fifos are recreated with the
//!    same mode, owner, xattrs (`trusted.overlay.opaque` included) and timestamps; directory
//!    metadata is applied after their content.
//! 4. The image record gets the same ID, top layer, digest and creation time, every big-data
//!    item of the source, its metadata and the requested names.
//!
//! Both stores must store whiteouts the same way (`.has-mount-program`); otherwise
//! [`clone_image`] says so ([`CloneOutcome::WhiteoutFormsDiffer`]) and the caller falls back
//! to the copy pipeline, which re-extracts.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timestamps};

use super::{ImageRecord, LayerDigests, NewImage, NewLayer, Store};
use crate::compression::Compression;
use crate::digest::parse_digest;
use crate::error::{Error, Result};
use crate::fs_clone::{Cascade, FileStats, Method};

/// How file contents were cloned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CloneStats {
    /// Layers copied.
    pub layers_copied: usize,
    /// Layers the destination already had.
    pub layers_reused: usize,
    /// How the regular files were placed (reflinked, hard-linked, copied).
    pub files: FileStats,
}

/// What [`clone_image`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneOutcome {
    /// The image was cloned; how its files were.
    Cloned(CloneStats),
    /// Nothing was done: one store keeps overlay whiteouts as character devices and the other
    /// as `.wh.` files (`.has-mount-program`), so layer trees cannot be shared. Copy the image
    /// with the pipeline, which re-extracts each layer in the destination's form.
    WhiteoutFormsDiffer,
}

/// Copy `image` from `src` into `dst`, naming it `names` (the source's names when empty).
pub fn clone_image(
    src: &Store,
    dst: &Store,
    image: &ImageRecord,
    names: &[String],
) -> Result<CloneOutcome> {
    if src.mount_program() != dst.mount_program() {
        return Ok(CloneOutcome::WhiteoutFormsDiffer);
    }
    let mut stats = CloneStats::default();
    let method = Cascade::new();
    method.mark_used();
    let layers = src.image_layers(image)?;
    let mut parent: Option<String> = None;
    for layer in &layers {
        if dst.layer(&layer.id).is_ok() {
            stats.layers_reused += 1;
            parent = Some(layer.id.clone());
            continue;
        }
        let what = format!("layer {} of image {}", layer.id, image.id);
        let handle = dst.begin_layer(&NewLayer {
            id: layer.id.clone(),
            parent: parent.clone(),
            names: vec![],
        })?;
        let src_diff = open_dir_fd(&src.layer_path(&layer.id).join("diff"), &what)?;
        let dst_diff = open_dir_fd(&dst.layer_path(&layer.id).join("diff"), &what)?;
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        clone_dir_metadata(&src_diff, &dst_diff, &what)?;
        clone_tree(
            &src_diff,
            &dst_diff,
            Path::new(""),
            &method,
            &mut links,
            &mut stats,
            &what,
        )?;
        let ts = src
            .open_tar_split(&layer.id)?
            .ok_or_else(|| Error::NotFound {
                what: format!("tar-split of {what} in {}", src.graph_root().display()),
                hint: "the source layer cannot be exported bit for bit; pull the image again"
                    .into(),
            })?;
        let mut out = handle.create_tar_split()?;
        std::io::copy(&mut ts.into_std(), &mut out)
            .map_err(|e| Error::from_io(format!("copying the tar-split of {what}"), e))?;
        out.sync_all()
            .map_err(|e| Error::from_io(format!("syncing the tar-split of {what}"), e))?;
        let digests = LayerDigests {
            compressed_digest: layer.compressed_digest(),
            compressed_size: (layer.compressed_size > 0 || layer.compressed_digest().is_some())
                .then_some(layer.compressed_size as u64),
            diff_digest: layer.diff_digest().ok_or_else(|| Error::Malformed {
                what: what.clone(),
                reason: "the source layer has no diff-digest".into(),
            })?,
            diff_size: layer.diff_size as u64,
            compression: layer.compression().unwrap_or(Compression::Uncompressed),
            uid_set: layer.uidset.iter().copied().collect(),
            gid_set: layer.gidset.iter().copied().collect(),
        };
        dst.finish_layer(handle, &digests)?;
        stats.layers_copied += 1;
        parent = Some(layer.id.clone());
    }
    let mut big_data = Vec::new();
    for key in &image.big_data_names {
        if let Some(data) = src.big_data(&image.id, key)? {
            big_data.push((key.clone(), data));
        }
    }
    let names = if names.is_empty() {
        image.names.clone()
    } else {
        names.to_vec()
    };
    // One record write with its files in place first (see image_write).
    dst.create_image(&NewImage {
        id: image.id.clone(),
        top_layer: layers.last().map(|l| l.id.clone()),
        digest: if image.digest.is_empty() {
            None
        } else {
            Some(parse_digest(&image.digest)?)
        },
        created: image.created,
        metadata: (!image.metadata.is_empty()).then(|| image.metadata.clone()),
        names: vec![],
        big_data,
    })?;
    if !names.is_empty() {
        dst.add_names(&image.id, &names)?;
    }
    stats.files = method.stats().unwrap_or_default();
    Ok(CloneOutcome::Cloned(stats))
}

fn io_err(what: &str, path: &Path, op: &str, e: impl Into<std::io::Error>) -> Error {
    Error::Io {
        context: format!("{op} {} in {what}", path.display()),
        source: e.into(),
    }
}

fn open_dir_fd(path: &Path, what: &str) -> Result<OwnedFd> {
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(what, path, "opening", e))
}

fn open_at_dir(dir: &OwnedFd, name: &OsStr, what: &str, rel: &Path) -> Result<OwnedFd> {
    rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(what, rel, "opening", e))
}

/// Owner, mode, xattrs and times of the directory `src` applied to `dst`.
fn clone_dir_metadata(src: &OwnedFd, dst: &OwnedFd, what: &str) -> Result<()> {
    let st = rfs::fstat(src).map_err(|e| io_err(what, Path::new("."), "stat", e))?;
    copy_xattrs(src, dst, what, Path::new("."))?;
    apply_owner_mode_times(dst, &st, what, Path::new("."))
}

fn apply_owner_mode_times(fd: impl AsFd, st: &rfs::Stat, what: &str, rel: &Path) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        rfs::fchown(
            &fd,
            Some(rfs::Uid::from_raw(st.st_uid)),
            Some(rfs::Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| io_err(what, rel, "chown", e))?;
    }
    rfs::fchmod(&fd, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(|e| io_err(what, rel, "chmod", e))?;
    rfs::futimens(&fd, &timestamps(st)).map_err(|e| io_err(what, rel, "setting times of", e))
}

/// Owner (as root), mode (when given; never for symlinks) and times of `st` applied to the
/// entry `name` in `dir`, without following it.
fn apply_owner_times_at(
    dir: &OwnedFd,
    name: &OsStr,
    st: &rfs::Stat,
    mode: Option<Mode>,
    what: &str,
    path: &Path,
) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        rfs::chownat(
            dir,
            name,
            Some(rfs::Uid::from_raw(st.st_uid)),
            Some(rfs::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(what, path, "chown", e))?;
    }
    if let Some(mode) = mode {
        rfs::chmodat(dir, name, mode, AtFlags::empty())
            .map_err(|e| io_err(what, path, "chmod", e))?;
    }
    rfs::utimensat(dir, name, &timestamps(st), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| io_err(what, path, "setting times of", e))
}

fn timestamps(st: &rfs::Stat) -> Timestamps {
    Timestamps {
        last_access: rfs::Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn copy_xattrs(src: impl AsFd, dst: impl AsFd, what: &str, rel: &Path) -> Result<()> {
    crate::fs_clone::copy_xattrs(src, dst).map_err(|e| io_err(what, rel, "copying xattrs of", e))
}

#[allow(clippy::too_many_arguments)]
fn clone_tree(
    src: &OwnedFd,
    dst: &OwnedFd,
    rel: &Path,
    method: &Cascade,
    links: &mut HashMap<(u64, u64), PathBuf>,
    stats: &mut CloneStats,
    what: &str,
) -> Result<()> {
    let mut dir = rfs::Dir::read_from(src).map_err(|e| io_err(what, rel, "listing", e))?;
    let mut names = Vec::new();
    for entry in dir.by_ref() {
        let entry = entry.map_err(|e| io_err(what, rel, "listing", e))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(name).to_os_string());
    }
    names.sort();
    for name in names {
        let path = rel.join(&name);
        let st = rfs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(what, &path, "stat", e))?;
        let mode = Mode::from_raw_mode(st.st_mode & 0o7777);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                rfs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))
                    .map_err(|e| io_err(what, &path, "creating", e))?;
                let s = open_at_dir(src, &name, what, &path)?;
                let d = open_at_dir(dst, &name, what, &path)?;
                clone_tree(&s, &d, &path, method, links, stats, what)?;
                copy_xattrs(&s, &d, what, &path)?;
                apply_owner_mode_times(&d, &st, what, &path)?;
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = links.get(&key) {
                        rfs::linkat(
                            dst,
                            first_rel(first, rel, &name).as_path(),
                            dst,
                            &name,
                            AtFlags::empty(),
                        )
                        .map_err(|e| io_err(what, &path, "hard-linking", e))?;
                        continue;
                    }
                }
                clone_file(src, dst, &name, &st, method, stats, what, &path)?;
                if st.st_nlink > 1 {
                    links.insert(key, path.clone());
                }
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(src, &name, Vec::new())
                    .map_err(|e| io_err(what, &path, "reading link", e))?;
                rfs::symlinkat(target.as_c_str(), dst, &name)
                    .map_err(|e| io_err(what, &path, "creating symlink", e))?;
                apply_owner_times_at(dst, &name, &st, None, what, &path)?;
            }
            ft @ (FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo
            | FileType::Socket) => {
                rfs::mknodat(dst, &name, ft, mode, st.st_rdev)
                    .map_err(|e| io_err(what, &path, "creating node", e))?;
                apply_owner_times_at(dst, &name, &st, Some(mode), what, &path)?;
            }
            FileType::Unknown => {
                return Err(Error::Malformed {
                    what: what.to_string(),
                    reason: format!("{} has an unknown file type", path.display()),
                })
            }
        }
    }
    Ok(())
}

/// The path of an earlier hard-link target relative to the directory fd at `rel`: targets are
/// recorded relative to the layer root, so climb up from `rel` first.
fn first_rel(first: &Path, rel: &Path, _name: &OsStr) -> PathBuf {
    let mut up = PathBuf::new();
    for _ in rel.components() {
        up.push("..");
    }
    up.join(first)
}

#[allow(clippy::too_many_arguments)]
fn clone_file(
    src: &OwnedFd,
    dst: &OwnedFd,
    name: &OsStr,
    st: &rfs::Stat,
    method: &Cascade,
    _stats: &mut CloneStats,
    what: &str,
    path: &Path,
) -> Result<()> {
    let size = st.st_size as u64;
    let s = rfs::openat(
        src,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(what, path, "opening", e))?;
    // Both stores want the same metadata for a layer file: a hard link always agrees.
    let hardlink = || {
        method
            .try_hardlink_at(src, name, dst, name)
            .map_err(|e| io_err(what, path, "hard-linking", e))
    };
    let create = || {
        rfs::openat(
            dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_err(what, path, "creating", e))
    };
    if !method.may_reflink() && hardlink()? {
        method.record(Method::Hardlink, size);
        return Ok(());
    }
    let mut d = create()?;
    let mut placed = false;
    if method.may_reflink() {
        if method
            .try_reflink(&s, &d)
            .map_err(|e| io_err(what, path, "cloning", e))?
        {
            method.record(Method::Reflink, size);
            placed = true;
        } else {
            // No reflinks here (found just now): hard links are next, for this file too.
            drop(d);
            rfs::unlinkat(dst, name, AtFlags::empty())
                .map_err(|e| io_err(what, path, "removing", e))?;
            if hardlink()? {
                method.record(Method::Hardlink, size);
                return Ok(());
            }
            d = create()?;
        }
    }
    if !placed {
        let mut from = std::fs::File::from(
            s.try_clone()
                .map_err(|e| io_err(what, path, "opening", e))?,
        );
        let mut to = std::fs::File::from(
            d.try_clone()
                .map_err(|e| io_err(what, path, "opening", e))?,
        );
        let n = std::io::copy(&mut from, &mut to).map_err(|e| io_err(what, path, "copying", e))?;
        method.record(Method::Copy, n);
    }
    copy_xattrs(&s, &d, what, path)?;
    apply_owner_mode_times(&d, st, what, path)
}
