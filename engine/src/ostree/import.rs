//! One container layer tar → one ostree layer commit, with ostree-rs-ext's rules for
//! derived layers (`tar/write.rs` `filter_tar` + `ostree commit --tree=tar=`).
//!
//! 1. Entries are read with [`layer_tar::read_entries`]: paths normalised, `..` and escapes
//!    refused, PAX and GNU long names resolved; the stream is read to its end (the pipeline
//!    verifies it).
//! 2. Paths are mapped: `etc/…` → `usr/etc/…` (hard-link targets too); `var/…` is kept, or
//!    moved to `usr/share/factory/var/…` with [`VarHandling::FactoryVar`] (what ostree-rs-ext
//!    does against an ostree older than 2024.3).
//! 3. Filtering: the toplevels `run`, `tmp`, `proc`, `sys`, `dev` keep their directory but
//!    drop their content; the number of entries dropped per toplevel is returned
//!    ([`LayerImport::filtered`]). Other toplevels are kept (an image without an ostree base
//!    has no `/usr`-only rule). A device node or fifo outside those toplevels cannot be
//!    stored in ostree and fails the import, naming the entry.
//! 4. Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are committed as the plain empty files they are
//!    in the tar; they take effect only when layers are merged ([`super::merge`]).
//! 5. An entry below a path this layer made a file or symlink is refused (a runtime unpacking
//!    the layer would follow the link, possibly out of the root).
//!    Regular files stream into content objects (owner, mode, xattrs from PAX
//!    `SCHILY.xattr.*`; reflinked or hard-linked from the source's file when the pipeline
//!    offers one, [`import_layer_sharing`]); symlinks become symlink objects; directories get a dirmeta of their
//!    own owner, mode and xattrs; missing parents get ostree's default (`0:0`, `0755`), as
//!    `--tar-autocreate-parents` makes them. A hard link is the same content object at a
//!    second path; its target must come earlier in the same layer.
//! 6. In the same pass the layer's tar-split is recorded, and it, with the bodies of the
//!    files step 3 dropped, goes into a second tree, [`LayerImport::export_data`]: what
//!    rebuilds the layer tar bit for bit ([`super::source`]). ostree-rs-ext regenerates
//!    layers on export and changes their digests; this keeps them.
//! 7. The caller commits both trees ([`Transaction::write_commit`]) and points the layer's
//!    blob ref at the layer commit.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use super::mtree::MutableTree;
use super::object::{mode, Checksum, DirMeta, FileMeta, Xattrs};
use super::txn::Transaction;
use crate::error::{Error, IoContext, Result};
use crate::fs_clone::FileSharing;
use crate::layer_tar::{self, EntryKind, EntryMeta};
use crate::tar_split::TarSplitWriter;

/// Toplevel directories whose content ostree-rs-ext drops (the directory itself stays).
pub const EXCLUDED_TOPLEVELS: [&str; 5] = ["run", "tmp", "proc", "sys", "dev"];

/// Where a layer's `/var` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VarHandling {
    /// Keep it as `var` (ostree-rs-ext with ostree 2024.3 or newer).
    #[default]
    Keep,
    /// Move it to `usr/share/factory/var` (ostree-rs-ext with an older ostree).
    FactoryVar,
}

/// Options of [`import_layer`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Where `/var` goes.
    pub var: VarHandling,
    /// Keep only `usr`, `etc` (as `usr/etc`), `var` and the excluded toplevels' directories,
    /// dropping every other toplevel with its content: what ostree-rs-ext does to the derived
    /// layers of an ostree-encapsulated image whose base root is not transient. Plain images
    /// (no ostree base) keep every toplevel.
    pub usr_only: bool,
}

/// The tar-split's name in an export-data tree.
pub const TAR_SPLIT_FILE: &str = "tar-split.gz";
/// Where the bodies of filtered files go in an export-data tree.
pub const FILTERED_DIR: &str = "filtered";

/// What [`import_layer`] built.
#[derive(Debug)]
pub struct LayerImport {
    /// The layer's tree, ready to commit.
    pub tree: MutableTree,
    /// The export data: [`TAR_SPLIT_FILE`] and, under [`FILTERED_DIR`], the bodies of the
    /// regular files that were filtered out of `tree`, by their tar path.
    pub export_data: MutableTree,
    /// Entries dropped per toplevel (`run`, `tmp`, …), as ostree-rs-ext reports them.
    pub filtered: BTreeMap<String, u64>,
    /// Entries stored.
    pub entries: u64,
}

/// The ostree path of a layer path (step 2 of the module doc), or `None` when it is filtered
/// out (step 3); `toplevel` is set to the toplevel it was filtered under.
pub(super) fn map_path(path: &Path, opts: &ImportOptions) -> Result<MappedPath> {
    let s = path.to_str().ok_or_else(|| Error::BadTarEntry {
        layer: String::new(),
        entry: path.display().to_string(),
        reason: "the name is not UTF-8, which ostree cannot store".into(),
    })?;
    if s.is_empty() {
        return Ok(MappedPath::Root);
    }
    let (top, rest) = match s.split_once('/') {
        Some((t, r)) => (t, Some(r)),
        None => (s, None),
    };
    if EXCLUDED_TOPLEVELS.contains(&top) {
        return Ok(match rest {
            None => MappedPath::Kept(top.to_string()),
            Some(_) => MappedPath::Filtered(top.to_string()),
        });
    }
    let mapped = match (top, opts.var) {
        ("etc", _) => format!(
            "usr/etc{}",
            rest.map(|r| format!("/{r}")).unwrap_or_default()
        ),
        ("var", VarHandling::FactoryVar) => format!(
            "usr/share/factory/var{}",
            rest.map(|r| format!("/{r}")).unwrap_or_default()
        ),
        ("usr" | "var", _) => s.to_string(),
        _ if opts.usr_only => return Ok(MappedPath::Filtered(top.to_string())),
        _ => s.to_string(),
    };
    Ok(MappedPath::Kept(mapped))
}

/// Where a tar path goes in the layer commit.
pub(super) enum MappedPath {
    /// The root directory.
    Root,
    /// This path of the tree.
    Kept(String),
    /// Dropped, under this toplevel.
    Filtered(String),
}

fn xattrs_of(meta: &EntryMeta) -> Xattrs {
    Xattrs::from_pairs(
        meta.xattrs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone())),
    )
}

fn id(v: u64, what: &str, entry: &EntryMeta, layer: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::BadTarEntry {
        layer: layer.to_string(),
        entry: entry.path.display().to_string(),
        reason: format!("{what} {v} does not fit ostree's 32 bits"),
    })
}

/// Read the layer tar `tar` into content objects of `txn` and a tree (module doc, steps 1–5).
/// `layer` names the layer in errors.
pub fn import_layer(
    txn: &mut Transaction<'_>,
    tar: &mut dyn std::io::Read,
    layer: &str,
    opts: &ImportOptions,
) -> Result<LayerImport> {
    import_layer_sharing(txn, tar, layer, opts, None)
}

/// [`import_layer`], with the regular files' content objects placed by reflink or hard link
/// from where `sharing` finds their bodies on disk ([`Transaction::write_content_sharing`]).
pub fn import_layer_sharing(
    txn: &mut Transaction<'_>,
    tar: &mut dyn std::io::Read,
    layer: &str,
    opts: &ImportOptions,
    sharing: Option<&FileSharing<'_>>,
) -> Result<LayerImport> {
    let default_meta = txn.default_dirmeta()?;
    let mut tree = MutableTree::new(default_meta);
    let mut export_data = MutableTree::new(default_meta);
    let mut filtered: BTreeMap<String, u64> = BTreeMap::new();
    let mut entries = 0u64;
    // Content checksums by ostree path, for hard links.
    let mut files: BTreeMap<String, Checksum> = BTreeMap::new();
    let mut split = new_split(txn)?;
    layer_tar::read_entries_recording(tar, layer, &mut split, |meta, body| {
        let bad = |reason: String| Error::BadTarEntry {
            layer: layer.to_string(),
            entry: meta.path.display().to_string(),
            reason,
        };
        let target = match map_path(&meta.path, opts).map_err(|e| match e {
            Error::BadTarEntry { entry, reason, .. } => Error::BadTarEntry {
                layer: layer.to_string(),
                entry,
                reason,
            },
            other => other,
        })? {
            MappedPath::Filtered(top) => {
                *filtered.entry(top).or_default() += 1;
                if meta.kind == EntryKind::Regular && meta.size > 0 {
                    let keep = format!("{FILTERED_DIR}/{}", meta.path.display());
                    let fm = FileMeta::regular(0, 0, 0o644, Xattrs::new());
                    txn.add_file(&mut export_data, &keep, &fm, meta.size, body)?;
                }
                return Ok(());
            }
            MappedPath::Root => None,
            MappedPath::Kept(p) => Some(p),
        };
        let uid = id(meta.uid, "uid", meta, layer)?;
        let gid = id(meta.gid, "gid", meta, layer)?;
        // An entry below something this layer made a file or symlink (`up -> /`, then
        // `up/x`): an unpacking runtime would follow the link out of the root. ostree never
        // follows it, but the layer means something else than a tree of its own: refuse it,
        // as containers-storage does.
        if let Some(p) = &target {
            let mut ancestor = Path::new(p).parent();
            while let Some(a) = ancestor.filter(|a| !a.as_os_str().is_empty()) {
                if files.contains_key(a.to_str().unwrap_or_default()) {
                    return Err(bad(format!(
                        "{} is a file or symlink earlier in this layer; nothing can be below it",
                        a.display()
                    )));
                }
                ancestor = a.parent();
            }
        }
        entries += 1;
        match &meta.kind {
            EntryKind::Directory => {
                let dm = DirMeta {
                    uid,
                    gid,
                    mode: mode::S_IFDIR | (meta.mode & 0o7777),
                    xattrs: xattrs_of(meta),
                };
                txn.add_dir(&mut tree, target.as_deref().unwrap_or(""), &dm)?;
            }
            kind => {
                let Some(path) = target else {
                    return Err(bad("the root of the layer must be a directory".into()));
                };
                let checksum =
                    match kind {
                        EntryKind::Regular
                        | EntryKind::Whiteout { .. }
                        | EntryKind::OpaqueWhiteout { .. } => {
                            let fm = FileMeta::regular(uid, gid, meta.mode, xattrs_of(meta));
                            let origin = sharing
                                .and_then(|s| s.open(&meta.raw_name, meta.size).map(|f| (s, f)));
                            txn.add_file_sharing(&mut tree, &path, &fm, meta.size, body, origin)?
                        }
                        EntryKind::Symlink { target } => {
                            let t = target.to_str().ok_or_else(|| {
                            bad("the symlink target is not UTF-8, which ostree cannot store".into())
                        })?;
                            let fm = FileMeta::symlink(uid, gid, t, xattrs_of(meta));
                            txn.add_symlink(&mut tree, &path, &fm)?
                        }
                        EntryKind::Hardlink { target } => {
                            let mapped = match map_path(target, opts)? {
                                MappedPath::Kept(p) => p,
                                _ => {
                                    return Err(bad(format!(
                                        "hard link to {} which is not stored in the layer",
                                        target.display()
                                    )))
                                }
                            };
                            let c = *files.get(&mapped).ok_or_else(|| {
                                bad(format!(
                                    "hard link to {}, which is not a file earlier in this layer",
                                    target.display()
                                ))
                            })?;
                            tree.insert_file(&path, c, default_meta)?;
                            c
                        }
                        EntryKind::CharDevice { .. }
                        | EntryKind::BlockDevice { .. }
                        | EntryKind::Fifo => return Err(bad(
                            "device nodes and fifos can only be under /dev, /run or /tmp in an \
                             ostree commit (their content is dropped there)"
                                .into(),
                        )),
                        EntryKind::Directory => unreachable!("handled above"),
                    };
                files.insert(path, checksum);
            }
        }
        Ok(())
    })?;
    store_split(txn, &mut export_data, split, layer)?;
    Ok(LayerImport {
        tree,
        export_data,
        filtered,
        entries,
    })
}

/// A tar-split recorder writing to an unnamed temporary file in the repository's `tmp/`.
pub(super) type SplitRecorder = TarSplitWriter<std::io::BufWriter<std::fs::File>>;

/// Start recording a layer's tar-split (see [`store_split`]).
pub(super) fn new_split(txn: &Transaction<'_>) -> Result<SplitRecorder> {
    let tmp = txn.repo().path().join("tmp");
    let split_file = tempfile::tempfile_in(&tmp).at("creating a temporary file in", &tmp)?;
    Ok(TarSplitWriter::new(std::io::BufWriter::new(split_file)).allow_duplicate_paths())
}

/// Finish a recorded tar-split and store it as [`TAR_SPLIT_FILE`] of `export_data`.
pub(super) fn store_split(
    txn: &mut Transaction<'_>,
    export_data: &mut MutableTree,
    split: SplitRecorder,
    layer: &str,
) -> Result<()> {
    let mut split_file = split
        .finish()?
        .into_inner()
        .map_err(|e| Error::from_io(format!("writing the tar-split of {layer}"), e.into_error()))?;
    let size = split_file
        .seek(SeekFrom::End(0))
        .ctx(|| format!("writing the tar-split of {layer}"))?;
    split_file
        .seek(SeekFrom::Start(0))
        .ctx(|| format!("reading the tar-split of {layer}"))?;
    let fm = FileMeta::regular(0, 0, 0o644, Xattrs::new());
    txn.add_file(export_data, TAR_SPLIT_FILE, &fm, size, split_file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(p: &str, var: VarHandling) -> Option<String> {
        let opts = ImportOptions {
            var,
            ..ImportOptions::default()
        };
        match map_path(Path::new(p), &opts).unwrap() {
            MappedPath::Kept(s) => Some(s),
            MappedPath::Root => Some(String::new()),
            MappedPath::Filtered(_) => None,
        }
    }

    #[test]
    fn paths_map_like_ostree_rs_ext() {
        let k = VarHandling::Keep;
        assert_eq!(mapped("etc", k).unwrap(), "usr/etc");
        assert_eq!(mapped("etc/passwd", k).unwrap(), "usr/etc/passwd");
        assert_eq!(mapped("etcx/a", k).unwrap(), "etcx/a");
        assert_eq!(mapped("var/lib/x", k).unwrap(), "var/lib/x");
        assert_eq!(
            mapped("var/lib/x", VarHandling::FactoryVar).unwrap(),
            "usr/share/factory/var/lib/x"
        );
        assert_eq!(mapped("tmp", k).unwrap(), "tmp");
        assert_eq!(mapped("tmp/x", k), None);
        assert_eq!(mapped("dev/null", k), None);
        assert_eq!(mapped("opt/app", k).unwrap(), "opt/app");
        assert_eq!(mapped("", k).unwrap(), "");
    }

    #[test]
    fn usr_only_drops_other_toplevels_with_their_directory() {
        let opts = ImportOptions {
            usr_only: true,
            ..ImportOptions::default()
        };
        let m = |p: &str| match map_path(Path::new(p), &opts).unwrap() {
            MappedPath::Kept(s) => Some(s),
            MappedPath::Root => Some(String::new()),
            MappedPath::Filtered(_) => None,
        };
        assert_eq!(m("usr/bin/sh").unwrap(), "usr/bin/sh");
        assert_eq!(m("etc/x").unwrap(), "usr/etc/x");
        assert_eq!(m("var/lib").unwrap(), "var/lib");
        assert_eq!(m("tmp").unwrap(), "tmp");
        assert_eq!(m("opt"), None);
        assert_eq!(m("opt/app/bin"), None);
        assert_eq!(m("").unwrap(), "");
    }
}
