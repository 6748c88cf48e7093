//! ostree-encapsulated images: container images whose lower layers carry an ostree commit
//! itself, as ostree-rs-ext's `container encapsulate` and rpm-ostree/bootc base-image builds
//! write them, imported as ostree-rs-ext's `container image pull` does.
//!
//! 1. [`layer_roles`]: the config label `ostree.final-diffid` names the diffID of the last
//!    ostree layer. Layer 0 is the commit layer ([`LayerRole::Commit`]); the layers after it
//!    up to and including the labelled one are object sets ([`LayerRole::ObjectSet`]); any
//!    later layer is derived ([`LayerRole::Derived`], imported like a plain image's layer by
//!    [`super::import`]). Without the label every layer is derived.
//! 2. [`import_object_layer`] reads one ostree layer's tar. Only entries under
//!    `sysroot/ostree/repo/objects/` matter (the `/usr` checkout beside them is hard links to
//!    those entries): `.commit` (first, in a commit layer only), `.commitmeta`, `.dirtree`,
//!    `.dirmeta`, and content objects `.file`, each preceded by its xattrs — format 1's
//!    `.file-xattrs-link` (a hard link to a `.file-xattrs` object, or the xattrs themselves)
//!    or format 0's `.file.xattrs` link into `xattrs/`. Every object is checked against the
//!    checksum its name claims: metadata objects by their bytes (which must be in normal
//!    form), content objects by the header (owner, mode from the tar header; xattrs) and
//!    data as libostree computes it. Objects already in the repository are not written again.
//! 3. A commit layer yields the image's own ostree commit, marked partial until the image is
//!    complete (its objects can be spread over the object-set layers, imported in parallel).
//!    An object-set layer yields [`object_set_tree`]: a flat tree whose file names are the
//!    content checksums it carried, committed with timestamp 0 and no metadata, as
//!    ostree-rs-ext records it.
//! 4. In the same pass each layer's tar-split is recorded and, in an export-data tree, the
//!    bodies of the entries that are not objects (the xattrs objects, the repository
//!    `config`): with the objects themselves, they rebuild the layer bit for bit
//!    ([`body_source`]).
//! 5. [`check_complete`] walks the image's commit once every layer is in, so an image whose
//!    layers did not carry all of its objects is refused, naming the first missing one;
//!    [`root_is_transient`] reads the commit's `prepare-root.conf` (a transient or composefs
//!    root keeps the derived layers' toplevels besides `/usr`).
//!
//! Hand-written because no crate reads this format without libostree (ostree-rs-ext links
//! it); the rules are ostree-rs-ext 0.15's, checked against its CLI in
//! `tests/ostree_encapsulated.rs`.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;

use super::gvariant::{self, Value};
use super::import::{new_split, store_split, FILTERED_DIR};
use super::mtree::MutableTree;
use super::object::{Checksum, Commit, DirMeta, DirTree, FileMeta, ObjectType, Xattrs};
use super::repo::Repo;
use super::txn::Transaction;
use crate::copy::ImagePlan;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer_tar::{self, EntryKind, EntryMeta};

/// The config label naming the diffID of an encapsulated image's last ostree layer.
pub const DIFFID_LABEL: &str = "ostree.final-diffid";

/// Where the repository lives in an ostree layer's tar.
pub const REPO_PREFIX: &str = "sysroot/ostree/repo/";

/// The largest metadata object read (libostree's `OSTREE_MAX_METADATA_SIZE`).
const MAX_METADATA_SIZE: u64 = 10 * 1024 * 1024;
/// The largest xattrs object read (ostree-rs-ext's limit).
const MAX_XATTRS_SIZE: u64 = 1024 * 1024;

/// Export-data metadata key recording which kind of layer a layer was (absent: derived).
pub const META_LAYER_KIND: &str = "stowage.layer-kind";

/// What a layer of an image is to the importer (module doc, step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerRole {
    /// The ostree commit layer (layer 0 of an encapsulated image).
    Commit,
    /// An object-set ("chunk") layer: content objects only.
    ObjectSet,
    /// An ordinary layer tar on top.
    Derived,
}

impl LayerRole {
    /// The value of [`META_LAYER_KIND`] for this role (`None`: derived).
    pub fn kind_name(self) -> Option<&'static str> {
        match self {
            LayerRole::Commit => Some("ostree-commit"),
            LayerRole::ObjectSet => Some("ostree-object-set"),
            LayerRole::Derived => None,
        }
    }

    /// The role recorded as `name` by [`Self::kind_name`].
    pub fn from_kind_name(name: Option<&str>) -> Option<LayerRole> {
        match name {
            None => Some(LayerRole::Derived),
            Some("ostree-commit") => Some(LayerRole::Commit),
            Some("ostree-object-set") => Some(LayerRole::ObjectSet),
            Some(_) => None,
        }
    }
}

/// The role of each layer of `plan` (module doc, step 1).
pub fn layer_roles(plan: &ImagePlan) -> Result<Vec<LayerRole>> {
    let label = plan
        .config
        .parsed
        .config()
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(DIFFID_LABEL));
    let Some(label) = label else {
        return Ok(vec![LayerRole::Derived; plan.layers.len()]);
    };
    let bad = |reason: String| Error::Malformed {
        what: format!("label {DIFFID_LABEL} of {}", plan.source_name),
        reason,
    };
    let target: Digest = label
        .parse()
        .map_err(|e| bad(format!("{label:?} is not a digest: {e}")))?;
    let matches: Vec<usize> = plan
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.diff_id == target)
        .map(|(i, _)| i)
        .collect();
    let last = match matches.as_slice() {
        [i] => *i,
        [] => {
            return Err(bad(format!(
                "no layer has diffID {target}; the image is not a valid ostree-encapsulated image"
            )))
        }
        _ => {
            return Err(bad(format!(
                "layers {} all have diffID {target}",
                matches
                    .iter()
                    .map(|i| (i + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    Ok((0..plan.layers.len())
        .map(|i| match i {
            0 => LayerRole::Commit,
            i if i <= last => LayerRole::ObjectSet,
            _ => LayerRole::Derived,
        })
        .collect())
}

/// What [`import_object_layer`] read.
#[derive(Debug)]
pub struct ObjectLayerImport {
    /// The commit a commit layer carries (`None` for an object set).
    pub commit: Option<Checksum>,
    /// The content objects the layer carried (written now or already present).
    pub objects: BTreeSet<Checksum>,
    /// The layer's tar-split and the bodies of its non-object entries (module doc, step 4).
    pub export_data: MutableTree,
    /// Objects of every kind read.
    pub entries: u64,
}

/// One object entry's path, parsed: `objects/XX/<62 hex>.<ext>`.
struct ObjectPath {
    checksum: Checksum,
    ext: String,
}

fn parse_object_path(rest: &str) -> std::result::Result<ObjectPath, String> {
    let (dir, name) = rest
        .split_once('/')
        .ok_or_else(|| "not of the form objects/XX/CHECKSUM.TYPE".to_string())?;
    if dir.len() != 2 || name.len() < 64 || name.as_bytes()[62] != b'.' {
        return Err("not of the form objects/XX/CHECKSUM.TYPE".into());
    }
    let hex = format!("{dir}{}", &name[..62]);
    let checksum = Checksum::from_hex(&hex).map_err(|e| e.to_string())?;
    Ok(ObjectPath {
        checksum,
        ext: name[63..].to_string(),
    })
}

/// The xattrs checksum a `.file-xattrs-link` / `.file.xattrs` hard link points at.
fn xattrs_link_target(target: &std::path::Path) -> std::result::Result<Checksum, String> {
    let t = target
        .to_str()
        .ok_or_else(|| "the link target is not UTF-8".to_string())?;
    if let Some(rest) = t
        .strip_prefix(REPO_PREFIX)
        .and_then(|r| r.strip_prefix("objects/"))
    {
        let p = parse_object_path(rest)?;
        if p.ext != "file-xattrs" {
            return Err(format!("{t} is not a .file-xattrs object"));
        }
        return Ok(p.checksum);
    }
    // Format 0: a link into `xattrs/`, named by the xattrs' checksum.
    let name = t.rsplit('/').next().unwrap_or(t);
    Checksum::from_hex(name).map_err(|e| e.to_string())
}

fn read_limited(body: &mut dyn Read, size: u64, limit: u64, what: &str) -> Result<Vec<u8>> {
    if size > limit {
        return Err(Error::Malformed {
            what: what.to_string(),
            reason: format!("{size} bytes, more than the {limit} an ostree object may have"),
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    body.take(size)
        .read_to_end(&mut buf)
        .map_err(|e| Error::from_io(format!("reading {what}"), e))?;
    Ok(buf)
}

/// Import one ostree layer (module doc, steps 2–4); `role` is [`LayerRole::Commit`] or
/// [`LayerRole::ObjectSet`]; `layer` names it in errors.
pub fn import_object_layer(
    txn: &mut Transaction<'_>,
    tar: &mut dyn Read,
    layer: &str,
    role: LayerRole,
) -> Result<ObjectLayerImport> {
    assert!(
        role != LayerRole::Derived,
        "derived layers go through import::import_layer"
    );
    let default_meta = txn.default_dirmeta()?;
    let mut export_data = MutableTree::new(default_meta);
    let mut split = new_split(txn, true)?;
    let mut commit: Option<Checksum> = None;
    let mut objects = BTreeSet::new();
    let mut xattrs_cache: HashMap<Checksum, Xattrs> = HashMap::new();
    // The xattrs announced for the next content object: (file checksum, xattrs checksum).
    let mut pending: Option<(Checksum, Checksum)> = None;
    let mut seen_object = false;
    let mut entries = 0u64;
    let plain = FileMeta::regular(0, 0, 0o644, Xattrs::new());
    layer_tar::read_entries_recording(tar, layer, &mut split, |meta: &EntryMeta, body| {
        let path = meta.path.to_str().unwrap_or_default().to_string();
        let bad = |reason: String| Error::BadTarEntry {
            layer: layer.to_string(),
            entry: meta.path.display().to_string(),
            reason,
        };
        // Keep a body the objects cannot give back (module doc, step 4).
        let keep = |txn: &mut Transaction<'_>, export: &mut MutableTree, bytes: &[u8]| {
            txn.add_file(
                export,
                &format!("{FILTERED_DIR}/{path}"),
                &plain,
                bytes.len() as u64,
                bytes,
            )
            .map(|_| ())
        };
        let is_regular = matches!(meta.kind, EntryKind::Regular);
        let Some(rest) = path.strip_prefix(REPO_PREFIX) else {
            // The checkout beside the objects: hard links, directories, empty files. A body
            // elsewhere is kept for the export, nothing more.
            if is_regular && meta.size > 0 {
                let bytes = read_limited(body, meta.size, MAX_METADATA_SIZE, &path)
                    .map_err(|_| bad("a file outside the repository with content; an ostree layer carries content only as objects".into()))?;
                keep(txn, &mut export_data, &bytes)?;
            }
            return Ok(());
        };
        if matches!(meta.kind, EntryKind::Directory) {
            return Ok(());
        }
        if let Some(name) = rest.strip_prefix("xattrs/") {
            // Format 0's xattrs, named by their checksum.
            let bytes = read_limited(body, meta.size, MAX_XATTRS_SIZE, &path)?;
            let c = Checksum::from_hex(name).map_err(|e| bad(e.to_string()))?;
            if Checksum::of(&bytes) != c {
                return Err(bad(format!("the xattrs hash to {}", Checksum::of(&bytes))));
            }
            xattrs_cache.insert(c, Xattrs::parse(&bytes, &path)?);
            return keep(txn, &mut export_data, &bytes);
        }
        let Some(obj) = rest.strip_prefix("objects/") else {
            // `config`, `refs/`, `state/`…: not objects; ostree-rs-ext ignores them.
            if is_regular && meta.size > 0 {
                let bytes = read_limited(body, meta.size, MAX_METADATA_SIZE, &path)?;
                keep(txn, &mut export_data, &bytes)?;
            }
            return Ok(());
        };
        let obj = parse_object_path(obj).map_err(bad)?;
        entries += 1;
        let first = !seen_object;
        seen_object = true;
        match obj.ext.as_str() {
            "commit" => {
                if role != LayerRole::Commit {
                    return Err(bad("a commit object in an object-set layer".into()));
                }
                if !first {
                    return Err(bad(
                        "the commit object must be the layer's first object, and there can be only one"
                            .into(),
                    ));
                }
                let bytes = read_limited(body, meta.size, MAX_METADATA_SIZE, &path)?;
                write_metadata_checked(txn, ObjectType::Commit, &obj.checksum, &bytes, &path)?;
                txn.mark_partial(obj.checksum);
                commit = Some(obj.checksum);
            }
            "commitmeta" => {
                if commit != Some(obj.checksum) {
                    return Err(bad(
                        "detached metadata of a commit this layer does not carry".into(),
                    ));
                }
                let bytes = read_limited(body, meta.size, MAX_METADATA_SIZE, &path)?;
                let ty = ObjectType::CommitMeta.variant_type().expect("a{sv}");
                let v =
                    gvariant::parse(&ty, &bytes).map_err(|e| bad(format!("not a{{sv}}: {e}")))?;
                let entries: Vec<(String, Value)> = v
                    .as_dict_sv()
                    .ok_or_else(|| bad("not a{sv}".into()))?
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                txn.write_commit_detached_metadata(&obj.checksum, &entries)?;
                keep(txn, &mut export_data, &bytes)?;
            }
            ext @ ("dirtree" | "dirmeta") => {
                if role != LayerRole::Commit {
                    return Err(bad(format!("a {ext} object in an object-set layer")));
                }
                if commit.is_none() {
                    return Err(bad("a metadata object before the commit object".into()));
                }
                let ty = if ext == "dirtree" {
                    ObjectType::DirTree
                } else {
                    ObjectType::DirMeta
                };
                let bytes = read_limited(body, meta.size, MAX_METADATA_SIZE, &path)?;
                write_metadata_checked(txn, ty, &obj.checksum, &bytes, &path)?;
            }
            "file-xattrs" => {
                let bytes = read_limited(body, meta.size, MAX_XATTRS_SIZE, &path)?;
                if Checksum::of(&bytes) != obj.checksum {
                    return Err(bad(format!("the xattrs hash to {}", Checksum::of(&bytes))));
                }
                xattrs_cache.insert(obj.checksum, Xattrs::parse(&bytes, &path)?);
                keep(txn, &mut export_data, &bytes)?;
            }
            ext @ ("file-xattrs-link" | "file.xattrs") => {
                if let Some((prev, _)) = pending {
                    return Err(bad(format!(
                        "xattrs for content object {prev} were announced but the object never came"
                    )));
                }
                let xattrs = match (&meta.kind, ext) {
                    (EntryKind::Hardlink { target }, _) => {
                        xattrs_link_target(target).map_err(bad)?
                    }
                    (EntryKind::Regular, "file-xattrs-link") => {
                        let bytes = read_limited(body, meta.size, MAX_XATTRS_SIZE, &path)?;
                        let c = Checksum::of(&bytes);
                        xattrs_cache.insert(c, Xattrs::parse(&bytes, &path)?);
                        keep(txn, &mut export_data, &bytes)?;
                        c
                    }
                    _ => return Err(bad("an xattrs reference must be a hard link".into())),
                };
                pending = Some((obj.checksum, xattrs));
            }
            "file" => {
                let (announced, xattrs_sum) = pending.take().ok_or_else(|| {
                    bad("a content object without the xattrs reference before it".into())
                })?;
                if announced != obj.checksum {
                    return Err(bad(format!(
                        "the xattrs before it were announced for content object {announced}"
                    )));
                }
                let xattrs = xattrs_cache.get(&xattrs_sum).cloned().ok_or_else(|| {
                    bad(format!(
                        "its xattrs {xattrs_sum} are not in the layer before it"
                    ))
                })?;
                if role == LayerRole::ObjectSet && !objects.insert(obj.checksum) {
                    return Err(bad("the content object appears twice in the layer".into()));
                }
                objects.insert(obj.checksum);
                if txn.has_object(&obj.checksum, ObjectType::File)? {
                    return Ok(());
                }
                let uid = u32::try_from(meta.uid).map_err(|_| bad("uid beyond 32 bits".into()))?;
                let gid = u32::try_from(meta.gid).map_err(|_| bad("gid beyond 32 bits".into()))?;
                let (fm, size) = match &meta.kind {
                    EntryKind::Regular => {
                        (FileMeta::regular(uid, gid, meta.mode, xattrs), meta.size)
                    }
                    EntryKind::Symlink { target } => {
                        let t = target
                            .to_str()
                            .ok_or_else(|| bad("the symlink target is not UTF-8".into()))?;
                        (FileMeta::symlink(uid, gid, t, xattrs), 0)
                    }
                    _ => {
                        return Err(bad(
                            "a content object must be a regular file or a symlink".into()
                        ))
                    }
                };
                let got = txn.write_content(&fm, size, body)?;
                if got != obj.checksum {
                    return Err(bad(format!(
                        "its owner, mode, xattrs and data hash to {got}: the layer is corrupt"
                    )));
                }
            }
            other => return Err(bad(format!("unknown object type .{other}"))),
        }
        Ok(())
    })?;
    if let Some((prev, _)) = pending {
        return Err(Error::Malformed {
            what: layer.to_string(),
            reason: format!("xattrs for content object {prev} were announced but the layer ended"),
        });
    }
    if role == LayerRole::Commit && commit.is_none() {
        return Err(Error::Malformed {
            what: layer.to_string(),
            reason: format!(
                "no commit object under {REPO_PREFIX}objects/: this is not an ostree commit layer"
            ),
        });
    }
    store_split(txn, &mut export_data, split, layer)?;
    Ok(ObjectLayerImport {
        commit,
        objects,
        export_data,
        entries,
    })
}

/// Write metadata object bytes that must hash to `expected` (and parse as their type).
fn write_metadata_checked(
    txn: &mut Transaction<'_>,
    ty: ObjectType,
    expected: &Checksum,
    bytes: &[u8],
    what: &str,
) -> Result<()> {
    match ty {
        ObjectType::Commit => drop(Commit::parse(bytes, what)?),
        ObjectType::DirTree => drop(DirTree::parse(bytes, what)?),
        ObjectType::DirMeta => drop(DirMeta::parse(bytes, what)?),
        _ => unreachable!("only metadata objects"),
    }
    let actual = Checksum::of(bytes);
    if &actual != expected {
        return Err(Error::Malformed {
            what: what.to_string(),
            reason: format!("its bytes hash to {actual}: corrupt, or not in GVariant normal form"),
        });
    }
    txn.write_metadata(ty, bytes)?;
    Ok(())
}

/// The tree ostree-rs-ext commits for an object-set layer: one file per content object,
/// named by its checksum, in a root with the default dirmeta.
pub fn object_set_tree(
    objects: &BTreeSet<Checksum>,
    default_meta: Checksum,
) -> Result<MutableTree> {
    let mut tree = MutableTree::new(default_meta);
    for c in objects {
        tree.insert_file(&c.to_hex(), *c, default_meta)?;
    }
    Ok(tree)
}

/// Check that every object `commit` references is in the repository (module doc, step 5).
pub fn check_complete(repo: &Repo, commit: &Checksum, image: &str) -> Result<()> {
    let c = repo.read_commit(commit)?;
    let mut stack = vec![(String::new(), c.root_tree, c.root_meta, 0usize)];
    let mut seen_trees = BTreeSet::new();
    let missing = |what: String| Error::NotFound {
        what: format!("{what}, part of ostree commit {commit} of {image}"),
        hint: "the image's ostree layers do not carry all of its objects; the image is \
               incomplete or corrupt — rebuild or re-push it"
            .into(),
    };
    while let Some((path, tree, meta, depth)) = stack.pop() {
        super::object::check_tree_depth(depth, || format!("commit {commit} at {path:?}"))?;
        if !repo.has_object(&meta, ObjectType::DirMeta)? {
            return Err(missing(format!("dirmeta {meta} of /{path}")));
        }
        if !seen_trees.insert(tree) {
            continue;
        }
        if !repo.has_object(&tree, ObjectType::DirTree)? {
            return Err(missing(format!("dirtree {tree} of /{path}")));
        }
        let dt = repo.read_dirtree(&tree)?;
        for (name, c) in &dt.files {
            if !repo.has_object(c, ObjectType::File)? {
                return Err(missing(format!("content object {c} of /{path}{name}")));
            }
        }
        for (name, t, m) in dt.dirs {
            stack.push((format!("{path}{name}/"), t, m, depth + 1));
        }
    }
    Ok(())
}

/// Whether the commit's root is transient: its `usr/lib/ostree/prepare-root.conf` (or
/// `etc/ostree/prepare-root.conf`, the first found) sets `root.transient` or enables
/// composefs (`yes`, `true`, `1`, `maybe`, `signed`), as ostree-rs-ext reads it.
pub fn root_is_transient(repo: &Repo, commit: &Checksum) -> Result<bool> {
    let c = repo.read_commit(commit)?;
    for path in [
        "etc/ostree/prepare-root.conf",
        "usr/lib/ostree/prepare-root.conf",
    ] {
        let Some(file) = lookup_file(repo, &c.root_tree, path)? else {
            continue;
        };
        let mut content = repo.open_content(&file)?;
        if !content.meta.is_regular() {
            continue;
        }
        let mut text = String::new();
        content
            .reader
            .by_ref()
            .take(1024 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| Error::from_io(format!("reading {path} of commit {commit}"), e))?;
        return Ok(prepare_root_is_transient(&text));
    }
    Ok(false)
}

/// `prepare-root.conf` keyfile text → whether the root is transient (see
/// [`root_is_transient`]). Unknown values count as "no", as ostree-rs-ext logs and ignores them.
pub fn prepare_root_is_transient(text: &str) -> bool {
    let mut group = "";
    let mut transient = false;
    let mut composefs = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(g) = line.strip_prefix('[').and_then(|g| g.strip_suffix(']')) {
            group = g;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match (group, k.trim(), v.trim()) {
            ("root", "transient", v) => transient = matches!(v, "true" | "1" | "yes"),
            ("composefs", "enabled", v) => {
                composefs = matches!(v, "yes" | "true" | "1" | "maybe" | "signed")
            }
            _ => {}
        }
    }
    transient || composefs
}

fn lookup_file(repo: &Repo, root: &Checksum, path: &str) -> Result<Option<Checksum>> {
    let mut tree = *root;
    let comps: Vec<&str> = path.split('/').collect();
    let (name, dirs) = comps.split_last().expect("non-empty path");
    for d in dirs {
        let dt = repo.read_dirtree(&tree)?;
        match dt.dirs.iter().find(|(n, _, _)| n == d) {
            Some((_, t, _)) => tree = *t,
            None => return Ok(None),
        }
    }
    let dt = repo.read_dirtree(&tree)?;
    Ok(dt.files.iter().find(|(n, _)| n == name).map(|(_, c)| *c))
}

/// A reader for the body of the entry at `path` of an ostree layer's tar, from the
/// repository's objects (module doc, step 4); `None` when the path is no object (its body
/// is then in the export data).
pub fn body_source(repo: &Repo, path: &str) -> Result<Option<Box<dyn Read + Send>>> {
    let Some(obj) = path
        .strip_prefix(REPO_PREFIX)
        .and_then(|r| r.strip_prefix("objects/"))
        .and_then(|o| parse_object_path(o).ok())
    else {
        return Ok(None);
    };
    let ty = match obj.ext.as_str() {
        "file" => return Ok(Some(Box::new(repo.open_content(&obj.checksum)?.reader))),
        "commit" => ObjectType::Commit,
        "dirtree" => ObjectType::DirTree,
        "dirmeta" => ObjectType::DirMeta,
        _ => return Ok(None),
    };
    let bytes = repo.read_metadata_bytes(&obj.checksum, ty)?;
    Ok(Some(Box::new(std::io::Cursor::new(bytes))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_paths_parse_like_ostree_rs_ext() {
        let hex = "b8627e3ef0f255a322d2bd9610cfaaacc8f122b7f8d17c0e7e3caafa160f9fc7";
        let p = parse_object_path(&format!("b8/{}.file-xattrs-link", &hex[2..])).unwrap();
        assert_eq!(p.checksum.to_hex(), hex);
        assert_eq!(p.ext, "file-xattrs-link");
        let p = parse_object_path(&format!("b8/{}.file.xattrs", &hex[2..])).unwrap();
        assert_eq!(p.ext, "file.xattrs");
        assert!(parse_object_path("b8/short.file").is_err());
        assert!(parse_object_path(&format!("b/{}.file", &hex[1..])).is_err());
        assert!(parse_object_path(&format!("zz/{}.file", &hex[2..])).is_err());
        let t = format!("{REPO_PREFIX}objects/b8/{}.file-xattrs", &hex[2..]);
        assert_eq!(
            xattrs_link_target(std::path::Path::new(&t))
                .unwrap()
                .to_hex(),
            hex
        );
    }

    #[test]
    fn prepare_root_conf_values() {
        assert!(!prepare_root_is_transient(""));
        assert!(prepare_root_is_transient("[root]\ntransient = true\n"));
        assert!(!prepare_root_is_transient("[root]\ntransient=false\n"));
        assert!(prepare_root_is_transient("[composefs]\nenabled = maybe\n"));
        assert!(prepare_root_is_transient("[composefs]\nenabled=signed"));
        assert!(!prepare_root_is_transient("[composefs]\nenabled = no\n"));
        assert!(!prepare_root_is_transient("[other]\ntransient = true\n"));
    }
}
