//! Reading OCI layouts the way the tests check them: references, index entries, blobs, the
//! blob set (and that every blob is intact) and the diffIDs of a tagged image; listing and
//! copying layout trees.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `oci:DIR:TAG`.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Where a blob lives in a layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("not a digest: {digest}"));
    layout.join("blobs").join(alg).join(hex)
}

/// The `index.json` entry tagged `tag` in a layout.
pub fn index_entry(layout: &Path, tag: &str) -> Value {
    let index: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json"))
            .unwrap_or_else(|e| panic!("reading {layout:?}/index.json: {e}")),
    )
    .unwrap_or_else(|e| panic!("parsing {layout:?}/index.json: {e}"));
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("no entry tagged {tag} in {layout:?}/index.json: {index}"))
}

/// The manifest digest of the entry tagged `tag` of an OCI layout.
pub fn layout_manifest_digest(layout: &Path, tag: &str) -> String {
    index_entry(layout, tag)["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("the entry tagged {tag} in {layout:?} has no digest"))
        .to_string()
}

/// The manifest of the image tagged `tag` in a layout, parsed.
pub fn layout_manifest(layout: &Path, tag: &str) -> Value {
    let digest = layout_manifest_digest(layout, tag);
    serde_json::from_slice(&layout_blob(layout, &digest))
        .unwrap_or_else(|e| panic!("parsing manifest {digest} of {layout:?}: {e}"))
}

/// Read a blob of a layout.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = blob_path(layout, digest);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading blob {path:?}: {e}"))
}

/// The blob digests in a layout, sorted (none if it has no `blobs/sha256`).
pub fn layout_blobs(layout: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .map(|rd| {
            rd.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts that every blob stored in the layout hashes to its name.
pub fn assert_blobs_intact(layout: &Path) {
    for b in layout_blobs(layout) {
        assert_eq!(
            crate::common::sha256(&layout_blob(layout, &b)),
            b,
            "every stored blob is intact"
        );
    }
}

/// The diffIDs in the config of the image tagged `tag` in a layout.
pub fn layout_diff_ids(layout: &Path, tag: &str) -> Vec<String> {
    let m = layout_manifest(layout, tag);
    let config: Value = serde_json::from_slice(&layout_blob(
        layout,
        m["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Recursive `(path, sha256)` listing of a directory.
pub fn snapshot(dir: &Path) -> Vec<(String, String)> {
    stowage_fixtures::snapshot(dir).unwrap_or_else(|e| panic!("listing {dir:?}: {e:#}"))
}

/// Copy a directory tree (regular files and directories only, as OCI layouts are).
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to)
                .unwrap_or_else(|e| panic!("copying {:?}: {e}", entry.path()));
        }
    }
}
