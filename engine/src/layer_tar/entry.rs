//! Parsing layer tar entries into [`EntryMeta`].
//!
//! 1. [`crate::tar_split`] walks the tar (the `tar` crate's ustar, PAX and GNU long-name
//!    handling) and hands over each entry; PAX global headers are skipped.
//! 2. The name is normalised ([`normalize_path`]); numeric fields left blank read as 0, as Go's
//!    archive/tar does; device numbers, the entry type and link targets are checked.
//! 3. PAX `mtime` gives nanoseconds and `SCHILY.xattr.*` records give xattrs.
//! 4. `.wh.NAME` and `.wh..wh..opq` names become [`EntryKind::Whiteout`] and
//!    [`EntryKind::OpaqueWhiteout`]; the node type the tar gives is kept alongside for
//!    extraction.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tar_split::{self, Body, SplitEntry, TarSplitWriter};

/// What a tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with content.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink {
        /// The link target exactly as in the tar (unchecked: symlinks may point anywhere; they
        /// are never followed during extraction).
        target: PathBuf,
    },
    /// A hard link to an earlier entry.
    Hardlink {
        /// The target, normalised like entry paths.
        target: PathBuf,
    },
    /// A character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// `dir/.wh.NAME`: deletes `dir/NAME` of lower layers.
    Whiteout {
        /// The path that is deleted, e.g. `etc/gone` for `etc/.wh.gone`.
        target: PathBuf,
    },
    /// `dir/.wh..wh..opq`: hides everything lower layers have in `dir`.
    OpaqueWhiteout {
        /// The opaque directory (empty path: the root).
        dir: PathBuf,
    },
}

/// A parsed tar entry header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Normalised relative path (empty for the root directory).
    pub path: PathBuf,
    /// The name as written in the tar (after PAX/GNU long-name resolution).
    pub raw_name: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits incl. setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner (PAX `uid` applied).
    pub uid: u64,
    /// Group (PAX `gid` applied).
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time (from PAX `mtime`, else 0).
    pub mtime_nsec: u32,
    /// Content size in bytes.
    pub size: u64,
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Normalise a tar entry name: strip leading `/` and `./`, collapse `.` and empty components,
/// resolve `..` lexically, and reject anything that escapes the root or contains NUL. The root
/// itself (`./`, `/`, empty) gives an empty path.
pub fn normalize_path(raw: &[u8]) -> Result<PathBuf> {
    normalize(raw).map_err(|reason| Error::BadTarEntry {
        layer: "(unknown)".into(),
        entry: String::from_utf8_lossy(raw).into_owned(),
        reason,
    })
}

fn normalize(raw: &[u8]) -> std::result::Result<PathBuf, String> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("the path escapes the layer root through '..'".into());
                }
            }
            _ => parts.push(part),
        }
    }
    Ok(PathBuf::from(OsString::from_vec(parts.join(&b'/'))))
}

/// Node type of an entry, whiteout or not (what [`WhiteoutMode::Files`] extracts).
#[derive(Debug, Clone)]
pub(super) enum Node {
    Regular,
    Directory,
    Symlink(PathBuf),
    Hardlink(PathBuf),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

pub(super) fn bad(layer: &str, raw_name: &[u8], reason: impl Into<String>) -> Error {
    Error::BadTarEntry {
        layer: layer.to_owned(),
        entry: String::from_utf8_lossy(raw_name).into_owned(),
        reason: reason.into(),
    }
}

/// Parse PAX `mtime` (`[-]SECONDS[.FRACTION]`) into seconds and nanoseconds.
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut nsec: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nsec += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some(if !neg {
        (secs, nsec)
    } else if nsec == 0 {
        (-secs, 0)
    } else {
        (-secs - 1, 1_000_000_000 - nsec)
    })
}

/// Parse an entry's header; `None` for PAX global headers (nothing to extract).
pub(super) fn parse_entry<R: Read>(
    entry: &mut SplitEntry<'_, R>,
    body: Body,
    layer: &str,
) -> Result<Option<(EntryMeta, Node)>> {
    if body == Body::GlobalHeader {
        return Ok(None);
    }
    let raw_name = entry.path_bytes().into_owned();
    let err = |reason: String| bad(layer, &raw_name, reason);
    let path = normalize(&raw_name).map_err(err)?;
    let header = entry.header();
    // A numeric field left blank (NULs/spaces) reads as 0, as Go's archive/tar does; anything
    // else that does not parse is an error.
    let numeric = |what: &str, range: std::ops::Range<usize>, v: io::Result<u64>| match v {
        Ok(v) => Ok(v),
        Err(_)
            if header.as_bytes()[range]
                .iter()
                .all(|&b| b == 0 || b == b' ') =>
        {
            Ok(0)
        }
        Err(e) => Err(bad(layer, &raw_name, format!("bad {what}: {e}"))),
    };
    let device = |h: &tar::Header| -> Result<(u32, u32)> {
        let major = numeric(
            "device major",
            329..337,
            h.device_major().map(|v| v.unwrap_or(0).into()),
        )?;
        let minor = numeric(
            "device minor",
            337..345,
            h.device_minor().map(|v| v.unwrap_or(0).into()),
        )?;
        // Both fields are 8 octal digits, so they fit in u32.
        Ok((major as u32, minor as u32))
    };
    use tar::EntryType as T;
    let node = match header.entry_type() {
        T::Regular if tar_split::is_legacy_dir(header, &raw_name) => Node::Directory,
        T::Regular | T::Continuous => Node::Regular,
        T::Directory => Node::Directory,
        T::Symlink => {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            if target.is_empty() {
                return Err(err("symlink without a target".into()));
            }
            if target.contains(&0) {
                return Err(err("symlink target contains a NUL byte".into()));
            }
            Node::Symlink(PathBuf::from(OsString::from_vec(target)))
        }
        T::Link => {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            let target = normalize(&target).map_err(|r| {
                err(format!(
                    "hard link target {:?}: {r}",
                    String::from_utf8_lossy(&target)
                ))
            })?;
            if target.as_os_str().is_empty() {
                return Err(err("hard link to the layer root".into()));
            }
            Node::Hardlink(target)
        }
        T::Char => {
            let (ma, mi) = device(header)?;
            Node::Char(ma, mi)
        }
        T::Block => {
            let (ma, mi) = device(header)?;
            Node::Block(ma, mi)
        }
        T::Fifo => Node::Fifo,
        other => {
            return Err(err(format!(
                "unsupported tar entry type {:?} ({other:?})",
                char::from(header.as_bytes()[156])
            )))
        }
    };
    let mode = numeric("mode", 100..108, header.mode().map(u64::from))? as u32 & 0o7777;
    let uid = numeric("uid", 108..116, header.uid())?;
    let gid = numeric("gid", 116..124, header.gid())?;
    let header_mtime = numeric("mtime", 136..148, header.mtime())?;
    let mut mtime = (
        i64::try_from(header_mtime)
            .map_err(|_| err(format!("mtime {header_mtime} out of range")))?,
        0u32,
    );
    let size = entry.size();
    let header_err = |what: &str, e: io::Error| bad(layer, &raw_name, format!("bad {what}: {e}"));
    let mut xattrs = Vec::new();
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|e| header_err("PAX header", e))?
    {
        for ext in pax {
            let ext = ext.map_err(|e| header_err("PAX record", e))?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                mtime = parse_pax_time(ext.value_bytes()).ok_or_else(|| {
                    err(format!(
                        "bad PAX mtime {:?}",
                        String::from_utf8_lossy(ext.value_bytes())
                    ))
                })?;
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                let name =
                    std::str::from_utf8(name).map_err(|_| err("xattr name is not UTF-8".into()))?;
                if name.is_empty() || name.contains('\0') {
                    return Err(err(format!("bad xattr name {name:?}")));
                }
                xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    let base = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    let kind = if let Some(rest) = base.strip_prefix(b".wh.") {
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if rest == b".wh..opq" {
            EntryKind::OpaqueWhiteout { dir }
        } else {
            if matches!(rest, b"" | b"." | b"..") {
                return Err(err("whiteout of an invalid name".into()));
            }
            EntryKind::Whiteout {
                target: dir.join(OsStr::from_bytes(rest)),
            }
        }
    } else {
        match &node {
            Node::Regular => EntryKind::Regular,
            Node::Directory => EntryKind::Directory,
            Node::Symlink(t) => EntryKind::Symlink { target: t.clone() },
            Node::Hardlink(t) => EntryKind::Hardlink { target: t.clone() },
            Node::Char(major, minor) => EntryKind::CharDevice {
                major: *major,
                minor: *minor,
            },
            Node::Block(major, minor) => EntryKind::BlockDevice {
                major: *major,
                minor: *minor,
            },
            Node::Fifo => EntryKind::Fifo,
        }
    };
    if path.as_os_str().is_empty() && !matches!(node, Node::Directory) {
        return Err(err("the layer root must be a directory".into()));
    }
    Ok(Some((
        EntryMeta {
            path,
            raw_name,
            kind,
            mode,
            uid,
            gid,
            mtime: mtime.0,
            mtime_nsec: mtime.1,
            size,
            xattrs,
        },
        node,
    )))
}

/// Walk the entries of a layer tar without extracting: `f` gets each entry's metadata and its
/// content (which it may read partly or not at all). PAX global headers are skipped. Entries
/// are validated as for extraction (paths normalised, escapes rejected). Reads the stream to
/// EOF.
pub fn read_entries<R: Read>(
    tar_stream: R,
    layer: &str,
    f: impl FnMut(&EntryMeta, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    walk(tar_stream, layer, None::<&mut TarSplitWriter<io::Sink>>, f)
}

/// [`read_entries`], recording the tar's tar-split in `split` in the same pass (so the exact
/// tar can be rebuilt later from the split and the file bodies).
pub fn read_entries_recording<R: Read, W: Write>(
    tar_stream: R,
    layer: &str,
    split: &mut TarSplitWriter<W>,
    f: impl FnMut(&EntryMeta, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    walk(tar_stream, layer, Some(split), f)
}

fn walk<R: Read, W: Write>(
    tar_stream: R,
    layer: &str,
    split: Option<&mut TarSplitWriter<W>>,
    mut f: impl FnMut(&EntryMeta, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    tar_split::split_entries(tar_stream, layer, split, |entry, body| {
        match parse_entry(entry, body, layer)? {
            Some((meta, _)) => f(&meta, entry),
            None => Ok(()),
        }
    })?;
    Ok(())
}
