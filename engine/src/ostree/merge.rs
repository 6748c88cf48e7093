//! Merging layer commits into an image's root tree, as ostree-rs-ext's merge commit does
//! (a union checkout of each layer with whiteouts processed, then a commit of the result) —
//! done on trees, without checking anything out.
//!
//! 1. Start from an empty tree; apply each layer commit, bottom first.
//! 2. Per directory of a layer: its dirmeta replaces the merged one. If the directory holds
//!    `.wh..wh..opq`, everything the lower layers put in it goes. Each `.wh.NAME` removes
//!    `NAME` (file or whole directory) of the lower layers. Both are handled before the
//!    layer's own entries, so a layer that whites out a name and adds it again keeps its own.
//! 3. Files and symlinks replace whatever was at their path (a directory too); directories
//!    replace a file and merge with a directory. Whiteout files themselves are not kept.
//! 4. [`cleanup_root`] drops zero-sized `usr/etc/hostname` and `usr/etc/resolv.conf`
//!    (runtime-injected by builders), as ostree-rs-ext does before committing.

use super::mtree::MutableTree;
use super::object::{validate_name, Checksum};
use super::repo::Repo;
use super::txn::Transaction;
use crate::error::Result;

/// The whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// A layer to merge: a commit in the repository, or the tree of a commit this process just
/// wrote (the same tree, so nothing needs reading back).
#[derive(Clone, Copy)]
pub enum Layer<'t> {
    /// A layer commit, read from the repository.
    Stored(Checksum),
    /// The tree a layer commit was written from.
    InMemory(&'t MutableTree),
}

/// Merge the trees of `layers` (commit checksums, bottom first) into one tree (steps 1–3).
pub fn merge_layers(
    repo: &Repo,
    txn: &mut Transaction<'_>,
    layers: &[Checksum],
) -> Result<MutableTree> {
    let layers: Vec<Layer<'_>> = layers.iter().map(|c| Layer::Stored(*c)).collect();
    merge_trees(repo, txn, &layers)
}

/// [`merge_layers`] of layers some of which are still in memory.
pub fn merge_trees(
    repo: &Repo,
    txn: &mut Transaction<'_>,
    layers: &[Layer<'_>],
) -> Result<MutableTree> {
    let default_meta = txn.default_dirmeta()?;
    let mut merged = MutableTree::new(default_meta);
    for layer in layers {
        apply_layer(repo, &mut merged, *layer, default_meta)?;
    }
    Ok(merged)
}

/// Merge the trees of `layers` (bottom first) onto `base`, as [`merge_layers`] does onto an
/// empty tree: the derived layers of an ostree-encapsulated image go onto its commit's tree
/// (whose own `.wh.` files, if any, are kept: ostree-rs-ext checks the base out without
/// processing whiteouts).
pub fn merge_onto(
    repo: &Repo,
    txn: &mut Transaction<'_>,
    base: MutableTree,
    layers: &[Checksum],
) -> Result<MutableTree> {
    let default_meta = txn.default_dirmeta()?;
    let mut merged = base;
    for commit in layers {
        apply_layer(repo, &mut merged, Layer::Stored(*commit), default_meta)?;
    }
    Ok(merged)
}

/// Apply one layer's root onto `merged` (steps 2 and 3).
fn apply_layer(
    repo: &Repo,
    merged: &mut MutableTree,
    layer: Layer<'_>,
    default_meta: Checksum,
) -> Result<()> {
    match layer {
        Layer::Stored(commit) => {
            let c = repo.read_commit(&commit)?;
            apply_dir(
                repo,
                merged,
                "",
                &c.root_tree,
                &c.root_meta,
                default_meta,
                0,
            )
        }
        Layer::InMemory(tree) => apply_tree(merged, "", tree, default_meta, 0),
    }
}

/// One directory's whiteouts (step 2): an opaque marker empties `dir`, each `.wh.NAME`
/// removes `NAME`; `names` are the layer directory's file names.
fn apply_whiteouts<'n>(
    dir: &mut MutableTree,
    path: &str,
    names: impl Iterator<Item = &'n str> + Clone,
) -> Result<()> {
    if names.clone().any(|n| n == OPAQUE_MARKER) {
        dir.clear();
    }
    for name in names {
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            if name != OPAQUE_MARKER && !target.is_empty() {
                // `.wh..` / `.wh...` name no entry of this directory (the layer's own names
                // are valid file names).
                validate_name(
                    target,
                    &format!("whiteout {name:?} in layer tree at {path:?}"),
                )?;
                dir.remove_entry(target);
            }
        }
    }
    Ok(())
}

/// [`apply_dir`] of a layer tree in memory.
fn apply_tree(
    dir: &mut MutableTree,
    path: &str,
    layer: &MutableTree,
    default_meta: Checksum,
    depth: usize,
) -> Result<()> {
    super::object::check_tree_depth(depth, || format!("layer tree at {path:?}"))?;
    dir.set_meta(layer.meta());
    apply_whiteouts(dir, path, layer.files().keys().map(String::as_str))?;
    for (name, checksum) in layer.files() {
        if !name.starts_with(WHITEOUT_PREFIX) {
            dir.put_file(name, *checksum);
        }
    }
    for (name, sub) in layer.dirs() {
        apply_tree(
            dir.subdir(name, default_meta),
            &join(path, name),
            sub,
            default_meta,
            depth + 1,
        )?;
    }
    Ok(())
}

/// Apply a layer's directory (`tree`, `meta`) onto the merged directory `dir` (at `path`,
/// kept only for messages), steps 2 and 3, recursing into its subdirectories. Works on the
/// tree nodes themselves: no path is split or walked again per entry.
fn apply_dir(
    repo: &Repo,
    dir: &mut MutableTree,
    path: &str,
    tree: &Checksum,
    meta: &Checksum,
    default_meta: Checksum,
    depth: usize,
) -> Result<()> {
    super::object::check_tree_depth(depth, || format!("layer tree at {path:?}"))?;
    let dt = repo.read_dirtree(tree)?;
    dir.set_meta(*meta);
    apply_whiteouts(dir, path, dt.files.iter().map(|(n, _)| n.as_str()))?;
    for (name, checksum) in &dt.files {
        if name.starts_with(WHITEOUT_PREFIX) {
            continue;
        }
        dir.put_file(name, *checksum);
    }
    for (name, t, m) in &dt.dirs {
        apply_dir(
            repo,
            dir.subdir(name, default_meta),
            &join(path, name),
            t,
            m,
            default_meta,
            depth + 1,
        )?;
    }
    Ok(())
}

/// Drop zero-sized `usr/etc/hostname` and `usr/etc/resolv.conf` (step 4).
pub fn cleanup_root(repo: &Repo, tree: &mut MutableTree) -> Result<()> {
    for name in ["hostname", "resolv.conf"] {
        let checksum = tree
            .dirs()
            .get("usr")
            .and_then(|u| u.dirs().get("etc"))
            .and_then(|e| e.files().get(name))
            .copied();
        if let Some(c) = checksum {
            let content = repo.open_content(&c)?;
            if content.meta.is_regular() && content.size == 0 {
                tree.remove(&format!("usr/etc/{name}"))?;
            }
        }
    }
    Ok(())
}
