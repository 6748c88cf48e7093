//! stowage's containers-storage transport checked against podman 4.3 and skopeo 1.9 working on
//! the same overlay stores (every store is a throw-away [`PodmanStore`]).
//!
//! 1. stowage writes each fixture into a fresh store: `podman images` / `podman image inspect`
//!    show the right ID, digest, diffIDs and the same size as for the image skopeo writes into a
//!    second store; the two stores' `layers.json` / `images.json` records agree field by field
//!    (except creation times and link IDs); `podman image mount` shows exactly the fixture's
//!    flattened tree (root only); `skopeo copy` and `stowage copy` out of the stores give layers
//!    whose uncompressed digests are the diffIDs (so both tar-splits reproduce the layers); and
//!    `podman rmi` leaves an empty store.
//! 2. Images skopeo wrote are listed and inspected by the engine (and `stowage image cmd`)
//!    exactly as podman shows them, `stowage inspect` agrees with `skopeo inspect`, and stowage
//!    exports them with the original diffIDs.
//! 3. Mixed stores: stowage and skopeo add images sharing base layers; removing one with
//!    `podman rmi`, the engine's `catalog::remove_image` or `stowage image cmd rm` keeps the other
//!    whole.
//! 4. Concurrency: two stowage copies of images sharing layers into one store, one of them
//!    checked for existing layers before the other wrote them (the source layer is a FIFO the
//!    test holds), while `podman images` runs in a loop; nothing fails, every listing parses.
//!    And two copies of images built on `basic` while podman removes the image the shared
//!    layers came from (after one copy found them and before it wrote on them) and, in a
//!    loop with `podman images`, three images the copies do not use: both copies succeed
//!    (the one whose layers vanished begins again), and both images are whole for
//!    `podman image inspect`, `podman image mount`, `skopeo copy` and `podman save`.
//! 5. Faults: a layer with a duplicate path, escaping entries, a digest mismatch and a truncated
//!    blob fail with a message naming the culprit and leave the store as it was; a stowage
//!    killed with SIGKILL mid-layer leaves only incomplete layers, which the next stowage or
//!    skopeo write removes. Nothing outside the graph root is touched.
//!
//! Needs podman and skopeo (skipped with a message unless `CI=true`); image mounts and the
//! device-node fixture need root.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use stowage_engine::cstorage::{catalog, Store};
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{Entry, Kind, LayerCompression, LayerSpec};
use stowage_fixtures::tree::{flatten, render, RenderOptions, TreeEntry};
use stowage_fixtures::FixtureInfo;

// ----- expectations ----------------------------------------------------------------------------

/// What an image in a store must look like.
#[derive(Debug, Clone)]
struct Expected {
    /// Image ID: the config digest's hex.
    id: String,
    /// podman's `Digest`: the manifest's, or the index's for an image chosen from an index.
    digest: String,
    /// The config digest.
    config: String,
    /// The layers' diffIDs.
    diff_ids: Vec<String>,
    /// The flattened tree.
    tree: Vec<TreeEntry>,
}

fn hex_of(digest: &str) -> String {
    digest.trim_start_matches("sha256:").to_string()
}

fn expected(info: &FixtureInfo) -> Expected {
    let (config, layers, tree) = if info.platforms.is_empty() {
        (&info.config_digest, &info.layers, &info.tree)
    } else {
        let p = host_platform(info);
        (&p.config_digest, &p.layers, &p.tree)
    };
    Expected {
        id: hex_of(config.as_ref()),
        digest: info.manifest_digest.to_string(),
        config: config.to_string(),
        diff_ids: layers.iter().map(|l| l.diff_id.to_string()).collect(),
        tree: tree.clone(),
    }
}

// ----- layouts the tests build -----------------------------------------------------------------

/// A `dir:` layout of a single-manifest fixture, for skopeo 1.9, which does not read
/// Docker-typed `index.json` entries of an OCI layout.
fn dir_layout(info: &FixtureInfo, dest: &Path) -> String {
    std::fs::create_dir_all(dest).unwrap();
    let manifest = std::fs::read(blob_path(&info.layout, info.manifest_digest.as_ref())).unwrap();
    let parsed: Value = serde_json::from_slice(&manifest).unwrap();
    std::fs::write(dest.join("manifest.json"), &manifest).unwrap();
    let mut digests = vec![parsed["config"]["digest"].as_str().unwrap().to_string()];
    for l in parsed["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in digests {
        std::fs::copy(blob_path(&info.layout, &d), dest.join(hex_of(&d))).unwrap();
    }
    std::fs::write(dest.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    format!("dir:{}", dest.display())
}

/// The reference skopeo copies `info` from.
fn skopeo_source(info: &FixtureInfo, scratch: &Path) -> String {
    if info.manifest_media_type == stowage_engine::manifest::DOCKER_MANIFEST {
        dir_layout(info, &scratch.join(format!("{}-dir", info.name)))
    } else {
        info.oci_ref()
    }
}

/// What the image `built` must look like in a store, with the flattened `tree`.
fn expected_of(built: &Built, tree: Vec<TreeEntry>) -> Expected {
    Expected {
        id: hex_of(&built.config_digest),
        digest: built.manifest_digest.clone(),
        config: built.config_digest.clone(),
        diff_ids: built.diff_ids.clone(),
        tree,
    }
}

/// Write an OCI layout at `dir` holding one image tagged `tag`: the layers of `base` (a
/// single-manifest fixture) if given, then `tars` gzip-compressed. The config is the base's (or
/// a minimal one for the host's architecture) with the new diffIDs and history entries, and the
/// label `org.stowage.test=<label>`.
fn build_layout(
    dir: &Path,
    tag: &str,
    base: Option<&FixtureInfo>,
    tars: &[Vec<u8>],
    label: &str,
) -> Built {
    let mut image = match base {
        Some(info) => ImageBuilder::from_layout(&info.layout, info.manifest_digest.as_ref())
            .unwrap_or_else(|e| panic!("reading fixture {}: {e:#}", info.name)),
        None => ImageBuilder::new().platform(&host_arch(), None),
    };
    for tar in tars {
        image = image.tar_layer(tar.clone(), LayerCompression::Gzip, History::new(label));
    }
    write_layout(dir, tag, image.label("org.stowage.test", label))
}

/// The layer a derived image adds on top of a fixture: a new file and symlink next to
/// `existing`, which it whites out. (The whiteout must hide something: in a directory no lower
/// layer has, overlayfs lists a whiteout that `lstat` then cannot find, also for skopeo's.)
fn extra_layer(existing: &str) -> LayerSpec {
    let dir = existing.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mut l = LayerSpec::new("RUN derive");
    l.file(&format!("{dir}/derived.conf"), "derived=1\n").mode = 0o600;
    l.whiteout(existing);
    l.symlink(&format!("{dir}/derived-link"), "derived.conf");
    l
}

/// Fixture `name` (`basic` or `many`) plus [`extra_layer`] (whiting out `existing`), written
/// at `SCRATCH/derived` under the tag `derived`, and its expected tree.
fn derived(name: &str, existing: &str, scratch: &Path) -> (Built, Expected) {
    let base = fixture(name);
    let mut specs = match name {
        "basic" => stowage_fixtures::images::basic(),
        "many" => stowage_fixtures::images::many(),
        other => panic!("no layer specs known for fixture {other}"),
    };
    let extra = extra_layer(existing);
    let built = build_layout(
        &scratch.join("derived"),
        "derived",
        Some(base),
        &[extra.to_tar().unwrap()],
        &format!("derived from {}", base.name),
    );
    specs.push(extra);
    let exp = expected_of(&built, flatten(&specs).unwrap());
    (built, exp)
}

// ----- store helpers ---------------------------------------------------------------------------

fn json_file(path: &Path) -> Vec<Value> {
    match std::fs::read(path) {
        Ok(data) if data.iter().all(u8::is_ascii_whitespace) => Vec::new(),
        Ok(data) => serde_json::from_slice(&data)
            .unwrap_or_else(|e| panic!("{} is not a JSON array: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

fn layer_records(store: &PodmanStore) -> Vec<Value> {
    json_file(&store.root.join("overlay-layers/layers.json"))
}

fn image_records(store: &PodmanStore) -> Vec<Value> {
    json_file(&store.root.join("overlay-images/images.json"))
}

fn is_incomplete(layer: &Value) -> bool {
    layer["flags"]["incomplete"] == json!(true)
}

/// The engine's view of the store (read-write, as the CLI opens it).
fn engine_store(store: &PodmanStore) -> Store {
    Store::open(&store.root, Some(&store.runroot), Some("overlay"))
        .unwrap_or_else(|e| panic!("opening {} with the engine: {e}", store.root.display()))
}

/// The row of `podman images` holding `name`.
fn podman_row(store: &PodmanStore, name: &str) -> Value {
    let list = store.podman_json(["images", "--format", "json"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["Names"]
                .as_array()
                .is_some_and(|n| n.contains(&json!(name)))
        })
        .cloned()
        .unwrap_or_else(|| panic!("podman images does not list {name}: {list:#}"))
}

/// Every view of the image `name` is `exp`: podman's listing and inspect
/// ([`check_podman_view`]), the mounted tree ([`check_tree`], as root) and the layout `by`
/// exports ([`check_export`]).
fn check_image(test: &str, store: &PodmanStore, name: &str, exp: &Expected, by: Exporter) {
    check_podman_view(store, name, exp);
    check_tree(test, store, name, exp);
    check_export(store, name, exp, by);
}

/// `podman images` and `podman image inspect` show `exp` for `name`; returns the size.
fn check_podman_view(store: &PodmanStore, name: &str, exp: &Expected) -> i64 {
    let row = podman_row(store, name);
    assert_eq!(row["Id"], json!(exp.id), "{name}: podman images Id");
    assert_eq!(
        row["Digest"],
        json!(exp.digest),
        "{name}: podman images Digest"
    );
    let inspect = store.image_inspect(name);
    assert_eq!(inspect["Id"], json!(exp.id), "{name}: inspect Id");
    assert_eq!(
        inspect["Digest"],
        json!(exp.digest),
        "{name}: inspect Digest"
    );
    assert_eq!(
        inspect["RootFS"]["Layers"],
        json!(exp.diff_ids),
        "{name}: inspect RootFS.Layers"
    );
    assert_eq!(inspect["Size"], row["Size"], "{name}: inspect Size");
    row["Size"]
        .as_i64()
        .unwrap_or_else(|| panic!("{name}: no Size in {row}"))
}

/// As root, the mounted image `name` is exactly `exp.tree`.
fn check_tree(test: &str, store: &PodmanStore, name: &str, exp: &Expected) {
    if !is_root() {
        skip(test, "podman image mount needs root");
        return;
    }
    assert_eq!(
        mounted_tree(store, name, RenderOptions::default()),
        render(&exp.tree, RenderOptions::default()),
        "{test}: podman image mount of {name} (left) differs from the expected tree"
    );
}

/// Config digest and the uncompressed digests of the layers of `layout:tag`.
fn layout_contents(layout: &Path, tag: &str) -> (String, Vec<String>) {
    manifest_contents(layout, index_entry(layout, tag)["digest"].as_str().unwrap())
}

/// [`layout_contents`] of the one image of a layout whatever its tag (`podman save` output).
fn layout_contents_untagged(layout: &Path) -> (String, Vec<String>) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(
        manifests.len(),
        1,
        "{layout:?}: one image expected in {index}"
    );
    manifest_contents(layout, manifests[0]["digest"].as_str().unwrap())
}

/// Config digest and the uncompressed digests of the layers of manifest `digest` of `layout`.
fn manifest_contents(layout: &Path, digest: &str) -> (String, Vec<String>) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).unwrap()).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let diff_ids = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap();
            let file = std::fs::File::open(blob_path(layout, digest)).unwrap();
            let (_, mut decoded) = stowage_engine::compression::decoder(file, digest).unwrap();
            let mut hasher = Sha256::new();
            std::io::copy(&mut decoded, &mut hasher)
                .unwrap_or_else(|e| panic!("decompressing {digest}: {e}"));
            format!("sha256:{}", hex::encode(hasher.finalize()))
        })
        .collect();
    (config, diff_ids)
}

enum Exporter {
    Stowage,
    Skopeo,
}

/// Copy `name` out of `store` into a new OCI layout; the layers' uncompressed digests must be
/// `exp.diff_ids` and the config unchanged.
fn check_export(store: &PodmanStore, name: &str, exp: &Expected, by: Exporter) {
    let tmp = tempdir();
    let out = tmp.path().join("out");
    let (label, mut c) = match by {
        Exporter::Stowage => {
            let mut c = stowage();
            c.arg("copy");
            ("stowage", c)
        }
        Exporter::Skopeo => ("skopeo", cmd("skopeo", ["copy", "-q"])),
    };
    run(c.arg(store.reference(name)).arg(oci_ref(&out, "t")));
    let (config, diff_ids) = layout_contents(&out, "t");
    assert_eq!(config, exp.config, "{label} export of {name}: config");
    assert_eq!(
        diff_ids, exp.diff_ids,
        "{label} export of {name}: uncompressed layer digests"
    );
}

/// Layers, images and `overlay/l` are all empty, as podman sees too.
fn assert_store_empty(store: &PodmanStore, what: &str) {
    assert_eq!(
        store.podman_json(["images", "--all", "--format", "json"]),
        json!([]),
        "{what}: podman still lists images"
    );
    assert_eq!(layer_records(store), Vec::<Value>::new(), "{what}: layers");
    assert_eq!(image_records(store), Vec::<Value>::new(), "{what}: images");
    let links: Vec<_> = std::fs::read_dir(store.root.join("overlay/l"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(links.is_empty(), "{what}: overlay/l still has {links:?}");
}

/// The store is consistent: no incomplete layer record; every layer record has its directory,
/// link and tar-split; every layer directory has a record; every `l/` link leads to a layer.
fn assert_store_consistent(store: &PodmanStore, what: &str) {
    let layers = layer_records(store);
    let ids: Vec<String> = layers
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    for l in &layers {
        assert!(!is_incomplete(l), "{what}: incomplete layer left: {l}");
        let id = l["id"].as_str().unwrap();
        let dir = store.root.join("overlay").join(id);
        assert!(dir.join("diff").is_dir(), "{what}: layer {id} has no diff/");
        let link = std::fs::read_to_string(dir.join("link")).unwrap();
        assert!(
            store.root.join("overlay/l").join(link.trim()).exists(),
            "{what}: l/{link} of layer {id} is missing"
        );
        assert!(
            store
                .root
                .join("overlay-layers")
                .join(format!("{id}.tar-split.gz"))
                .is_file(),
            "{what}: layer {id} has no tar-split"
        );
    }
    for entry in std::fs::read_dir(store.root.join("overlay")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() && name != "l" {
            assert!(
                ids.contains(&name),
                "{what}: overlay/{name} has no layer record"
            );
        }
    }
    for entry in std::fs::read_dir(store.root.join("overlay/l")).unwrap() {
        let entry = entry.unwrap();
        let target = std::fs::read_link(entry.path()).unwrap();
        let id = target
            .to_str()
            .and_then(|t| t.strip_prefix("../"))
            .and_then(|t| t.strip_suffix("/diff"))
            .unwrap_or_else(|| panic!("{what}: odd link {:?} -> {target:?}", entry.path()));
        assert!(
            ids.iter().any(|i| i == id),
            "{what}: l/{:?} points at a layer without record",
            entry.file_name()
        );
    }
    if let Ok(ts) = std::fs::read_dir(store.root.join("overlay-layers")) {
        for entry in ts {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".tar-split.gz") {
                assert!(
                    ids.iter().any(|i| i == id),
                    "{what}: tar-split of a layer without record: {name}"
                );
            }
        }
    }
}

/// Everything in the store's temporary directory except the graph root and run root.
fn outside_root(store: &PodmanStore) -> Vec<(String, String)> {
    let parent = store.root.parent().unwrap();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(parent).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path == store.root || path == store.runroot {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            out.push((format!("{name}/"), String::new()));
            for (p, h) in snapshot(&path) {
                out.push((format!("{name}/{p}"), h));
            }
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((name, stowage_fixtures::sha256_hex(&bytes)));
        }
    }
    out.sort();
    out
}

/// Put files next to the graph root that a layer escaping the root would overwrite or join.
fn plant_canaries(store: &PodmanStore) {
    let parent = store.root.parent().unwrap();
    std::fs::create_dir_all(parent.join("canary")).unwrap();
    std::fs::write(parent.join("canary/file"), "canary\n").unwrap();
    std::fs::write(parent.join("x"), "not to be replaced\n").unwrap();
}

fn stowage_copy(src: &str, store: &PodmanStore, name: &str) {
    run(stowage().arg("copy").arg(src).arg(store.reference(name)));
}

fn have_tools(test: &str) -> bool {
    require(test, &["podman", "skopeo"])
}

/// With podman and skopeo installed ([`have_tools`]): an empty store and a scratch directory.
fn fresh_store(test: &str) -> Option<(PodmanStore, tempfile::TempDir)> {
    have_tools(test).then(|| (PodmanStore::new(), tempdir()))
}

// ----- 1. stowage writes, podman and skopeo read -----------------------------------------------

const LAYER_FIELDS: [&str; 11] = [
    "id",
    "names",
    "parent",
    "compressed-diff-digest",
    "compressed-size",
    "diff-digest",
    "diff-size",
    "compression",
    "uidset",
    "gidset",
    "flags",
];

const IMAGE_FIELDS: [&str; 10] = [
    "id",
    "digest",
    "names",
    "names-history",
    "layer",
    "metadata",
    "big-data-names",
    "big-data-sizes",
    "big-data-digests",
    "flags",
];

fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for k in keys {
        out.insert(k.to_string(), v.get(*k).cloned().unwrap_or(Value::Null));
    }
    Value::Object(out)
}

/// stowage's records in `ours` equal skopeo's in `theirs` for the fields both must agree on.
fn compare_records(ours: &PodmanStore, theirs: &PodmanStore, what: &str) {
    let layers = |s: &PodmanStore| -> BTreeMap<String, Value> {
        layer_records(s)
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap().to_string(),
                    pick(l, &LAYER_FIELDS),
                )
            })
            .collect()
    };
    let (ol, tl) = (layers(ours), layers(theirs));
    assert_eq!(
        ol.keys().collect::<Vec<_>>(),
        tl.keys().collect::<Vec<_>>(),
        "{what}: layer IDs (stowage left, skopeo right)"
    );
    for (id, l) in &ol {
        assert_eq!(
            l, &tl[id],
            "{what}: layer {id} (stowage left, skopeo right)"
        );
    }
    let images = |s: &PodmanStore| -> Vec<Value> {
        image_records(s)
            .iter()
            .map(|i| pick(i, &IMAGE_FIELDS))
            .collect()
    };
    assert_eq!(
        images(ours),
        images(theirs),
        "{what}: image records (stowage left, skopeo right)"
    );
}

fn stowage_writes(name: &str) {
    let test = format!("stowage_writes_{name}");
    if !have_tools(&test) {
        return;
    }
    let info = fixture(name);
    if info.needs_root && !is_root() {
        skip(&test, "device nodes need root");
        return;
    }
    let exp = expected(info);
    let image = format!("localhost/{name}:1");
    let scratch = tempdir();

    let ours = PodmanStore::new();
    stowage_copy(&info.oci_ref(), &ours, &image);
    let theirs = PodmanStore::new();
    theirs.skopeo_copy(&[], &skopeo_source(info, scratch.path()), &image);

    // Records as skopeo writes them; what podman shows, with the same size.
    compare_records(&ours, &theirs, &test);
    let size = check_podman_view(&ours, &image, &exp);
    let skopeo_size = check_podman_view(&theirs, &image, &exp);
    assert_eq!(size, skopeo_size, "{test}: Size (stowage vs skopeo store)");

    // The mounted tree.
    check_tree(&test, &ours, &image, &exp);

    // Both tar-splits reproduce the layers, through both tools.
    check_export(&ours, &image, &exp, Exporter::Skopeo);
    check_export(&ours, &image, &exp, Exporter::Stowage);
    check_export(&theirs, &image, &exp, Exporter::Stowage);

    // podman removes it completely.
    run(ours.podman(["rmi", &image]));
    assert_store_empty(&ours, &test);
}

#[test]
fn stowage_writes_basic() {
    stowage_writes("basic");
}

#[test]
fn stowage_writes_whiteouts() {
    stowage_writes("whiteouts");
}

#[test]
fn stowage_writes_links() {
    stowage_writes("links");
}

#[test]
fn stowage_writes_names() {
    stowage_writes("names");
}

#[test]
fn stowage_writes_many() {
    stowage_writes("many");
}

#[test]
fn stowage_writes_devices() {
    stowage_writes("devices");
}

#[test]
fn stowage_writes_basic_zstd() {
    stowage_writes("basic-zstd");
}

#[test]
fn stowage_writes_basic_uncompressed() {
    stowage_writes("basic-uncompressed");
}

#[test]
fn stowage_writes_zstd_multiframe() {
    stowage_writes("zstd-multiframe");
}

#[test]
fn stowage_writes_docker_schema2() {
    stowage_writes("docker-schema2");
}

#[test]
fn stowage_writes_multiarch() {
    stowage_writes("multiarch");
}

// ----- 2. skopeo writes, stowage reads ---------------------------------------------------------

fn sorted_rows(v: Value) -> Vec<Value> {
    let mut rows = v.as_array().expect("array").clone();
    rows.sort_by_key(|r| r.to_string());
    rows
}

#[test]
fn images_written_by_skopeo_are_read_by_stowage() {
    let test = "images_written_by_skopeo_are_read_by_stowage";
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let names = [
        "basic",
        "whiteouts",
        "links",
        "names",
        "multiarch",
        "docker-schema2",
        "basic-zstd",
    ];
    for name in names {
        store.skopeo_copy(
            &[],
            &skopeo_source(fixture(name), scratch.path()),
            &format!("localhost/{name}:1"),
        );
    }

    // The engine lists and inspects the store exactly as podman does.
    let engine = Store::open_read_only(&store.root, Some("overlay")).unwrap();
    for all in [false, true] {
        let ours = serde_json::to_value(catalog::list_images(&engine, all).unwrap()).unwrap();
        let mut args = vec!["images", "--format", "json"];
        if all {
            args.push("--all");
        }
        let theirs = store.podman_json(&args);
        assert_eq!(
            sorted_rows(ours),
            sorted_rows(theirs),
            "{test}: engine list (left) vs podman {args:?}"
        );
    }
    // And so does the CLI.
    let out = run(image_cmd(&store, &["cmd", "list", "--format", "json"]));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        sorted_rows(cli),
        sorted_rows(store.podman_json(["images", "--format", "json"])),
        "{test}: stowage image cmd list (left) vs podman images"
    );
    for name in names {
        let image = format!("localhost/{name}:1");
        let ours = serde_json::to_value(catalog::inspect_image(&engine, &image).unwrap()).unwrap();
        assert_eq!(
            ours,
            store.image_inspect(&image),
            "{test}: engine inspect (left) vs podman image inspect {image}"
        );
        let out = run(image_cmd(&store, &["cmd", "inspect", &image]));
        let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            cli[0], ours,
            "{test}: stowage image cmd inspect {image} (left) vs the engine"
        );

        // stowage inspect agrees with skopeo inspect, and stowage exports the diffIDs.
        let reference = store.reference(&image);
        let a = stowage_inspect(&reference);
        let b = skopeo_inspect(&reference);
        for key in INSPECT_KEYS {
            assert_eq!(a[key], b[key], "{test}: inspect {key} of {image}");
        }
        let exp = expected(fixture(name));
        check_podman_view(&store, &image, &exp);
        check_export(&store, &image, &exp, Exporter::Stowage);
    }
}

// ----- 3. mixed stores -------------------------------------------------------------------------

/// A layer directory count of the store (layers with records).
fn layer_count(store: &PodmanStore) -> usize {
    layer_records(store).len()
}

#[test]
fn stowage_base_skopeo_derived_then_removed_either_way() {
    let test = "stowage_base_skopeo_derived_then_removed_either_way";
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let basic = fixture("basic");
    let basic_exp = expected(basic);
    let zstd_exp = expected(fixture("basic-zstd"));
    let (derived_img, derived_exp) = derived("basic", "etc/motd", scratch.path());

    stowage_copy(&basic.oci_ref(), &store, "localhost/basic:1");
    store.skopeo_copy(&[], &derived_img.reference, "localhost/derived:1");
    // basic-zstd has the same layers as basic (same diffIDs), another config.
    store.skopeo_copy(&[], &fixture("basic-zstd").oci_ref(), "localhost/zstd:1");
    assert_eq!(
        layer_count(&store),
        3,
        "{test}: skopeo reused stowage's layers"
    );
    check_podman_view(&store, "localhost/derived:1", &derived_exp);
    check_tree(test, &store, "localhost/derived:1", &derived_exp);

    // podman removes the derived image: basic and its twin keep their layers.
    run(store.podman(["rmi", "localhost/derived:1"]));
    assert_eq!(layer_count(&store), 2);
    assert_store_consistent(&store, test);
    check_image(
        test,
        &store,
        "localhost/basic:1",
        &basic_exp,
        Exporter::Stowage,
    );

    // The engine removes basic: its twin (same top layer) keeps every layer.
    let report = catalog::remove_image(&engine_store(&store), "localhost/basic:1", false).unwrap();
    assert_eq!(report.deleted, vec![basic_exp.id.clone()]);
    assert_eq!(layer_count(&store), 2);
    assert_store_consistent(&store, test);
    check_image(
        test,
        &store,
        "localhost/zstd:1",
        &zstd_exp,
        Exporter::Skopeo,
    );

    catalog::remove_image(&engine_store(&store), "localhost/zstd:1", false).unwrap();
    assert_store_empty(&store, test);
}

#[test]
fn skopeo_base_stowage_derived_then_removed_either_way() {
    let test = "skopeo_base_stowage_derived_then_removed_either_way";
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let basic = fixture("basic");
    let basic_exp = expected(basic);
    let (derived_img, derived_exp) = derived("basic", "etc/motd", scratch.path());

    store.skopeo_copy(&[], &basic.oci_ref(), "localhost/basic:1");
    stowage_copy(&derived_img.reference, &store, "localhost/derived:1");
    assert_eq!(
        layer_count(&store),
        3,
        "{test}: stowage reused skopeo's layers"
    );
    check_podman_view(&store, "localhost/derived:1", &derived_exp);

    // `stowage image cmd rm` removes the base image: the derived one keeps all three layers.
    run(image_cmd(&store, &["cmd", "rm", "localhost/basic:1"]));
    assert!(image_records(&store)
        .iter()
        .all(|i| i["id"] != json!(basic_exp.id)));
    assert_eq!(layer_count(&store), 3);
    assert_store_consistent(&store, test);
    check_image(
        test,
        &store,
        "localhost/derived:1",
        &derived_exp,
        Exporter::Skopeo,
    );

    // skopeo adds the base again (reusing the layers), podman removes the derived image.
    store.skopeo_copy(&[], &basic.oci_ref(), "localhost/basic:1");
    run(store.podman(["rmi", "localhost/derived:1"]));
    assert_eq!(layer_count(&store), 2);
    assert_store_consistent(&store, test);
    check_image(
        test,
        &store,
        "localhost/basic:1",
        &basic_exp,
        Exporter::Stowage,
    );

    run(store.podman(["rmi", "localhost/basic:1"]));
    assert_store_empty(&store, test);
}

// ----- 4. concurrency --------------------------------------------------------------------------

/// `podman images --format json` in a loop until stopped; every output must parse. Dropping
/// it stops the loop too (so a failing test does not leave podman writing into a store that
/// is being removed).
struct Lister {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<usize>>,
}

/// `podman images --format json`: its output, or `None` when it failed only because podman
/// itself raced with a `podman rmi` of one of `removed` (podman lists, then reads each image
/// and its layers, which another podman may have removed in between).
fn podman_listing(list: &mut std::process::Command, removed: &[String]) -> Option<Output> {
    let out = output(&mut *list);
    if out.status.success() {
        return Some(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // podman 4.3 reads each listed image (and its parent's layers) after listing them, so an
    // image another podman removes in between fails the listing: `image not known`, `layer
    // not known`, naming the removed image. Anything naming another image is a finding.
    if (stderr.contains("image not known") || stderr.contains("layer not known"))
        && removed.iter().any(|id| stderr.contains(id.as_str()))
    {
        return None;
    }
    // Not that race: fail with what podman said (running it again could hit the race and
    // report that instead, as this once did).
    panic!(
        "`podman images --format json` failed ({}): {stderr}",
        out.status
    );
}

impl Lister {
    fn start(store: &PodmanStore) -> Lister {
        Lister::start_while_removing(store, Vec::new())
    }

    /// [`start`](Self::start), tolerating podman's own race with `podman rmi` of the images
    /// `removed` (their IDs) that another thread runs.
    fn start_while_removing(store: &PodmanStore, removed: Vec<String>) -> Lister {
        let stop = Arc::new(AtomicBool::new(false));
        let mut list = store.podman(["images", "--format", "json"]);
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0;
            loop {
                let Some(out) = podman_listing(&mut list, &removed) else {
                    continue;
                };
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "torn podman images output ({e}): {}",
                        String::from_utf8_lossy(&out.stdout)
                    )
                });
                assert!(v.is_array(), "podman images printed {v}");
                n += 1;
                if flag.load(Ordering::SeqCst) {
                    return n;
                }
            }
        });
        Lister {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop the loop; the number of listings, or the loop's panic.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let handle = self.handle.take().expect("not finished yet");
        match handle.join() {
            Ok(n) => n,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

impl Drop for Lister {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Replace blob `digest` of `layout` by a FIFO; returns its path and the blob's bytes.
fn blob_to_fifo(layout: &Path, digest: &str) -> (PathBuf, Vec<u8>) {
    let path = blob_path(layout, digest);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    run(cmd("mkfifo", [&path]));
    (path, bytes)
}

/// Wait (bounded, for liveness only) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The wait channels (`/proc/PID/task/TID/wchan`) of the threads of `pid`.
fn wait_channels(pid: &str) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("wchan")).ok())
        .map(|w| w.trim().to_string())
        .collect()
}

/// Whether the kernel names wait channels: a thread of this process blocked on a channel
/// (its state in `stat` is `S`, which is always shown) must show a name other than `0`. (The
/// harness's own threads are no witness: a lone test runs on the main thread.)
fn wait_channels_visible() -> bool {
    // What the forced-order tests look for: a thread blocked opening a FIFO shows
    // `wait_for_partner` as its wait channel. Check exactly that, on a thread of our own.
    let dir = tempdir();
    let fifo = dir.path().join("probe");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        tid_tx
            .send(rustix::thread::gettid().as_raw_nonzero().get())
            .unwrap();
        let _ = std::fs::File::open(&reader_path);
    });
    let task = format!("/proc/self/task/{}", tid_rx.recv().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut visible = false;
    while std::time::Instant::now() < deadline {
        let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
        if wchan.trim() == "wait_for_partner" {
            visible = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Release the reader whether or not it was seen blocking.
    let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    reader.join().unwrap();
    visible
}

/// Whether a thread of process `pid` is blocked opening a FIFO that has no writer yet.
fn blocked_in_fifo_open(pid: u32) -> bool {
    wait_channels(&pid.to_string())
        .iter()
        .any(|w| w == "wait_for_partner")
}

/// Panic with its stderr if `child` has ended.
fn assert_running(child: &mut Child, what: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        panic!("{what} ended early ({status}):\n{stderr}");
    }
}

/// Open `fifo` for writing once `child` has opened it for reading, never blocking: a
/// non-blocking open fails (ENXIO) until there is a reader, and the descriptor is then switched
/// to blocking writes. (A second, blocking open could wait forever if the reader has already
/// closed the FIFO again, e.g. because it reused a layer instead of reading it.)
fn open_fifo_writer(fifo: &Path, child: &mut Child, what: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let mut writer = None;
    wait_until(&format!("{what} opens {}", fifo.display()), || {
        assert_running(child, what);
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(f) => {
                writer = Some(f);
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => false,
            Err(e) => panic!("opening {}: {e}", fifo.display()),
        }
    });
    let w = writer.expect("opened");
    // SAFETY: F_GETFL/F_SETFL on a descriptor this function owns; no memory is passed.
    let ok = unsafe {
        let flags = libc::fcntl(w.as_raw_fd(), libc::F_GETFL);
        flags >= 0 && libc::fcntl(w.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    assert!(ok, "making the writer of {} blocking", fifo.display());
    w
}

#[test]
fn concurrent_copies_sharing_layers_while_podman_lists() {
    let test = "concurrent_copies_sharing_layers_while_podman_lists";
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let many = fixture("many");
    let many_exp = expected(many);
    let (derived_img, derived_exp) = derived("many", "srv/d00/s0/f0.bin", scratch.path());
    let layout = scratch.path().join("derived");
    let (fifo, bytes) = blob_to_fifo(&layout, &derived_img.layers[0]);
    // An empty store podman has initialised, so the listing loop starts at once.
    store.podman_json(["images", "--format", "json"]);
    let lister = Lister::start(&store);

    // B: the derived image. It checks which layers the store has (none), then blocks opening
    // its first layer, the FIFO, while its other layers wait for that one.
    let mut b = stowage()
        .arg("copy")
        .arg(&derived_img.reference)
        .arg(store.reference("localhost/derived:1"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = b.id();
    let ordered = wait_channels_visible();
    if ordered {
        wait_until("the derived copy blocks on its first layer", || {
            assert_running(&mut b, "the derived copy");
            blocked_in_fifo_open(pid)
        });
    } else {
        eprintln!("{test}: the kernel hides wait channels; the copies' order is not forced");
    }

    // A: `many` is copied completely meanwhile (the listing loop runs throughout), writing
    // the layers B found missing.
    stowage_copy(&many.oci_ref(), &store, "localhost/many:1");

    // B goes on: it must reuse what A wrote instead of failing on it.
    let mut w = open_fifo_writer(&fifo, &mut b, "the derived copy");
    // B may reuse the layer without reading it, or fail; then writing ends with EPIPE, and
    // B's exit status tells which.
    let _ = w.write_all(&bytes);
    drop(w);
    let mut stderr = String::new();
    b.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = b.wait().unwrap();
    assert!(
        status.success(),
        "{test}: the derived copy failed (its layer check ran before the other copy wrote the \
         shared layers: {ordered}):\n{stderr}"
    );
    let listings = lister.finish();
    assert!(listings >= 1);

    assert_store_consistent(&store, test);
    assert_eq!(
        layer_count(&store),
        3,
        "{test}: the shared layers are stored once"
    );
    check_podman_view(&store, "localhost/many:1", &many_exp);
    check_podman_view(&store, "localhost/derived:1", &derived_exp);
    check_tree(test, &store, "localhost/derived:1", &derived_exp);
    check_export(&store, "localhost/many:1", &many_exp, Exporter::Stowage);
    check_export(
        &store,
        "localhost/derived:1",
        &derived_exp,
        Exporter::Stowage,
    );
}

/// The layer IDs of `exp`'s image (chain IDs of its diffIDs, as the store names them).
fn layer_ids_of(exp: &Expected) -> Vec<String> {
    let digests: Vec<stowage_engine::digest::Digest> =
        exp.diff_ids.iter().map(|d| d.parse().unwrap()).collect();
    stowage_engine::cstorage::ids::layer_ids(&digests)
}

/// The names of the images podman lists, sorted.
fn podman_names(store: &PodmanStore) -> Vec<String> {
    let mut names: Vec<String> = store
        .podman_json(["images", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["Names"].as_array().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn concurrent_copies_sharing_layers_while_podman_removes_images() {
    let test = "concurrent_copies_sharing_layers_while_podman_removes_images";
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    if !wait_channels_visible() {
        skip(
            test,
            "the kernel hides wait channels, so the copy's order cannot be forced",
        );
        return;
    }
    let basic = fixture("basic");
    // The third image, whose layers are the base both copies build on, and images the copies
    // do not use (one written by skopeo): podman removes them all while the copies run.
    stowage_copy(&basic.oci_ref(), &store, "localhost/base:1");
    let unused = ["links", "whiteouts", "names"];
    for name in &unused[..2] {
        stowage_copy(
            &fixture(name).oci_ref(),
            &store,
            &format!("localhost/{name}:1"),
        );
    }
    store.skopeo_copy(&[], &fixture("names").oci_ref(), "localhost/names:1");
    let (a_img, a_exp) = derived("basic", "etc/motd", &scratch.path().join("a"));
    let (b_img, b_exp) = derived("basic", "etc/hostname", &scratch.path().join("b"));
    let base_ids = layer_ids_of(&expected(basic));
    assert_eq!(
        layer_ids_of(&b_exp)[..2],
        base_ids[..],
        "the copies share basic's layers"
    );

    // B's own layer is a FIFO (reached through a second link to it, so the blob file can be
    // put back at its path while B waits on the FIFO).
    let b_layout = scratch.path().join("b/derived");
    let (fifo, bytes) = blob_to_fifo(&b_layout, &b_img.layers[2]);
    let fifo_link = scratch.path().join("b-fifo");
    std::fs::hard_link(&fifo, &fifo_link).unwrap();
    let removed: Vec<String> = ["basic", "links", "whiteouts", "names"]
        .iter()
        .map(|n| expected(fixture(n)).id)
        .collect();
    let lister = Lister::start_while_removing(&store, removed.clone());

    // B, one layer at a time: finds basic's two layers in the store, then blocks opening its
    // own layer, before anything of it references them.
    let mut b = stowage()
        .args(["copy", "--jobs=1"])
        .arg(&b_img.reference)
        .arg(store.reference("localhost/b:1"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = b.id();
    wait_until("copy B blocks on its own layer", || {
        assert_running(&mut b, "copy B");
        blocked_in_fifo_open(pid)
    });

    // podman removes the third image and with it the layers B found.
    run(store.podman(["rmi", "localhost/base:1"]));
    assert!(
        !store.root.join("overlay").join(&base_ids[0]).exists(),
        "{test}: podman rmi kept the base layers"
    );

    // The blob file goes back (B's pending open is of the FIFO and unaffected), A starts,
    // podman removes the other images in a loop, and B goes on.
    let tmp_blob = b_layout.join("blob.tmp");
    std::fs::write(&tmp_blob, &bytes).unwrap();
    std::fs::rename(&tmp_blob, &fifo).unwrap();
    let a = stowage()
        .arg("copy")
        .arg(&a_img.reference)
        .arg(store.reference("localhost/a:1"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let remover = {
        let names: Vec<String> = unused.iter().map(|n| format!("localhost/{n}:1")).collect();
        let mut rmis: Vec<_> = names
            .iter()
            .map(|n| store.podman(["rmi", n.as_str()]))
            .collect();
        let mut list = store.podman(["images", "--format", "json"]);
        std::thread::spawn(move || {
            for rmi in &mut rmis {
                run(rmi);
                podman_listing(&mut list, &removed);
            }
        })
    };
    let mut w = open_fifo_writer(&fifo_link, &mut b, "copy B");
    // B reads its layer now, or (having found the layers below it gone) drops the stream and
    // begins again, reading the blob file; writing then ends with EPIPE.
    let _ = w.write_all(&bytes);
    drop(w);
    for (child, what) in [(b, "B"), (a, "A")] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{test}: copy {what} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    remover.join().expect("the podman rmi loop");
    assert!(lister.finish() >= 1);

    assert_store_consistent(&store, test);
    assert_eq!(podman_names(&store), ["localhost/a:1", "localhost/b:1"]);
    assert_eq!(
        layer_count(&store),
        4,
        "{test}: the shared layers are stored once"
    );
    for (name, exp) in [("localhost/a:1", &a_exp), ("localhost/b:1", &b_exp)] {
        check_image(test, &store, name, exp, Exporter::Skopeo);
        let saved = scratch.path().join(format!("saved-{}", &name[10..11]));
        run(store
            .podman(["save", "--format", "oci-dir", "-o"])
            .arg(&saved)
            .arg(name));
        let (config, diff_ids) = layout_contents_untagged(&saved);
        assert_eq!(config, exp.config, "{test}: podman save of {name}: config");
        assert_eq!(
            diff_ids, exp.diff_ids,
            "{test}: podman save of {name}: layers"
        );
    }
}

#[test]
fn simultaneous_copies_sharing_layers() {
    let test = "simultaneous_copies_sharing_layers";
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let basic = fixture("basic");
    let (derived_img, derived_exp) = derived("basic", "etc/motd", scratch.path());
    let sources = [
        (basic.oci_ref(), "localhost/basic:1", expected(basic)),
        (
            derived_img.reference.clone(),
            "localhost/derived:1",
            derived_exp,
        ),
        (
            fixture("basic-zstd").oci_ref(),
            "localhost/zstd:1",
            expected(fixture("basic-zstd")),
        ),
    ];
    let children: Vec<_> = sources
        .iter()
        .map(|(src, name, _)| {
            stowage()
                .arg("copy")
                .arg(src)
                .arg(store.reference(name))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, (src, _, _)) in children.into_iter().zip(&sources) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{test}: copy of {src} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_store_consistent(&store, test);
    assert_eq!(layer_count(&store), 3);
    for (_, name, exp) in &sources {
        check_podman_view(&store, name, exp);
        check_export(&store, name, exp, Exporter::Stowage);
    }
}

// ----- 5. faults -------------------------------------------------------------------------------

/// A store holding `links` (written by stowage); `build` writes a bad source layout into the
/// scratch directory (first argument; the second is the directory holding the graph root) and
/// returns its reference and what stderr must mention. The copy must fail
/// and leave the store as it was (apart from complete layers below the bad one), readable by
/// podman and stowage, with nothing outside the graph root touched.
fn rejected(test: &str, build: impl FnOnce(&Path, &Path) -> (String, Vec<String>)) {
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let links = fixture("links");
    let links_exp = expected(links);
    stowage_copy(&links.oci_ref(), &store, "localhost/links:1");
    store.podman_json(["images", "--format", "json"]);
    plant_canaries(&store);
    let outside = outside_root(&store);
    let images_before = image_records(&store);

    let (src, mentions) = build(scratch.path(), store.root.parent().unwrap());
    let out = run_failing(
        stowage()
            .arg("copy")
            .arg(&src)
            .arg(store.reference("localhost/bad:1")),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{test}: stowage reported: {}", stderr.trim());
    for m in &mentions {
        assert!(
            stderr.contains(m.as_str()),
            "{test}: the error does not mention {m:?}:\n{stderr}"
        );
    }

    assert_eq!(
        image_records(&store),
        images_before,
        "{test}: images changed"
    );
    assert_store_consistent(&store, test);
    let rows = store.podman_json(["images", "--format", "json"]);
    assert_eq!(
        rows.as_array().unwrap().len(),
        1,
        "{test}: podman lists {rows:#}"
    );
    check_podman_view(&store, "localhost/links:1", &links_exp);
    check_export(&store, "localhost/links:1", &links_exp, Exporter::Stowage);
    assert_eq!(
        outside_root(&store),
        outside,
        "{test}: files outside the graph root changed"
    );
}

/// A one-layer image made of `entries`, written as they are (no parent directories added).
fn raw_layer_image(dir: &Path, entries: Vec<Entry>) -> Built {
    let spec = LayerSpec {
        entries,
        created_by: "bad layer".into(),
    };
    build_layout(dir, "bad", None, &[spec.to_tar().unwrap()], "bad layer")
}

fn file(path: &str, content: &str) -> Entry {
    Entry::new(path, Kind::File(content.as_bytes().to_vec()))
}

#[test]
fn duplicate_path_is_rejected() {
    rejected("duplicate_path_is_rejected", |dir, _| {
        let img = raw_layer_image(
            dir,
            vec![
                Entry::new("dup", Kind::Dir),
                file("dup/a", "first\n"),
                file("dup/b", "b\n"),
                file("dup/a", "second\n"),
            ],
        );
        (img.reference, vec!["dup/a".into(), "duplicate".into()])
    });
}

#[test]
fn entry_escaping_with_dotdot_is_rejected() {
    rejected("entry_escaping_with_dotdot_is_rejected", |dir, _| {
        let img = raw_layer_image(dir, vec![file("ok", "fine\n"), file("../x", "escaped\n")]);
        (img.reference, vec!["../x".into()])
    });
}

#[test]
fn entry_escaping_to_the_store_parent_is_rejected() {
    rejected(
        "entry_escaping_to_the_store_parent_is_rejected",
        |dir, _| {
            // From overlay/<id>/diff, four levels up is the directory holding the graph root.
            let img = raw_layer_image(dir, vec![file("../../../../x", "escaped\n")]);
            (img.reference, vec!["../../../../x".into()])
        },
    );
}

#[test]
fn entry_below_a_symlink_leading_out_is_rejected() {
    rejected("entry_below_a_symlink_leading_out_is_rejected", |dir, _| {
        let img = raw_layer_image(
            dir,
            vec![
                Entry::new("up", Kind::Symlink("../../../..".into())),
                file("up/x", "escaped through a symlink\n"),
            ],
        );
        (img.reference, vec!["up/x".into()])
    });
}

#[test]
fn entry_below_an_absolute_symlink_is_rejected() {
    rejected(
        "entry_below_an_absolute_symlink_is_rejected",
        |dir, store_parent| {
            let img = raw_layer_image(
                dir,
                vec![
                    Entry::new("abs", Kind::Symlink(store_parent.display().to_string())),
                    file("abs/x", "escaped through an absolute symlink\n"),
                ],
            );
            (img.reference, vec!["abs/x".into()])
        },
    );
}

/// A copy of `basic`'s layout with `mutate` applied to the blob of layer `index`.
fn damaged_basic(dir: &Path, index: usize, mutate: impl FnOnce(&mut Vec<u8>)) -> (String, String) {
    let info = fixture("basic");
    let layout = dir.join("basic");
    copy_tree(&info.layout, &layout);
    let digest = info.layers[index].digest.to_string();
    let path = blob_path(&layout, &digest);
    let mut bytes = std::fs::read(&path).unwrap();
    mutate(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    (oci_ref(&layout, "basic"), digest)
}

#[test]
fn digest_mismatch_is_rejected() {
    rejected("digest_mismatch_is_rejected", |dir, _| {
        let (src, digest) = damaged_basic(dir, 1, |b| {
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
        });
        (src, vec![digest, "digest mismatch".into()])
    });
}

#[test]
fn truncated_blob_is_rejected() {
    rejected("truncated_blob_is_rejected", |dir, _| {
        let (src, digest) = damaged_basic(dir, 0, |b| b.truncate(b.len() / 2));
        (src, vec![digest, "truncated".into()])
    });
}

enum NextWriter {
    Stowage,
    Skopeo,
}

/// SIGKILL stowage while it extracts the first layer of `many` (fed through a FIFO, half of it
/// given), then check the store, and that the next write by `next` removes what was left.
fn killed_mid_layer(test: &str, next: NextWriter) {
    let Some((store, scratch)) = fresh_store(test) else {
        return;
    };
    let many = fixture("many");
    let layout = scratch.path().join("many");
    copy_tree(&many.layout, &layout);
    let (fifo, bytes) = blob_to_fifo(&layout, many.layers[0].digest.as_ref());
    plant_canaries(&store);
    let outside = outside_root(&store);

    let mut child = stowage()
        .arg("copy")
        .arg(oci_ref(&layout, "many"))
        .arg(store.reference("localhost/many:1"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut w = open_fifo_writer(&fifo, &mut child, "the copy of many");
    w.write_all(&bytes[..bytes.len() / 2]).unwrap();
    let first = stowage_engine::cstorage::ids::layer_id(None, &many.layers[0].diff_id);
    let diff = store.root.join("overlay").join(&first).join("diff");
    wait_until("the first layer is being extracted", || {
        assert_running(&mut child, "the copy of many");
        layer_records(&store)
            .iter()
            .any(|l| l["id"] == json!(first) && is_incomplete(l))
            && std::fs::read_dir(&diff).is_ok_and(|mut d| d.next().is_some())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(w);

    // Only incomplete layers, no image; podman and stowage read the store.
    let left = layer_records(&store);
    assert!(
        !left.is_empty() && left.iter().all(is_incomplete),
        "{test}: {left:#?}"
    );
    assert!(image_records(&store).is_empty());
    assert_eq!(store.podman_json(["images", "--format", "json"]), json!([]));
    let engine = Store::open_read_only(&store.root, Some("overlay")).unwrap();
    assert!(catalog::list_images(&engine, true).unwrap().is_empty());
    assert!(engine.layers().unwrap().is_empty());

    // The next write cleans up.
    let basic = fixture("basic");
    let basic_exp = expected(basic);
    match next {
        NextWriter::Stowage => stowage_copy(&basic.oci_ref(), &store, "localhost/basic:1"),
        NextWriter::Skopeo => store.skopeo_copy(&[], &basic.oci_ref(), "localhost/basic:1"),
    }
    assert_store_consistent(&store, test);
    assert_eq!(
        layer_count(&store),
        2,
        "{test}: {:#?}",
        layer_records(&store)
    );
    check_podman_view(&store, "localhost/basic:1", &basic_exp);
    check_export(&store, "localhost/basic:1", &basic_exp, Exporter::Stowage);

    // And the interrupted image can be written now.
    let many_exp = expected(many);
    stowage_copy(&many.oci_ref(), &store, "localhost/many:1");
    assert_store_consistent(&store, test);
    check_image(
        test,
        &store,
        "localhost/many:1",
        &many_exp,
        Exporter::Stowage,
    );
    assert_eq!(
        outside_root(&store),
        outside,
        "{test}: files outside the graph root changed"
    );
}

#[test]
fn killed_copy_is_cleaned_up_by_the_next_stowage_write() {
    killed_mid_layer(
        "killed_copy_is_cleaned_up_by_the_next_stowage_write",
        NextWriter::Stowage,
    );
}

#[test]
fn killed_copy_is_cleaned_up_by_the_next_skopeo_write() {
    killed_mid_layer(
        "killed_copy_is_cleaned_up_by_the_next_skopeo_write",
        NextWriter::Skopeo,
    );
}

/// Layers as real tools write them (issue 10): a tar that ends right after the last file's
/// data (what Debian's `umoci insert` writes), with only its padding, with one end block, or
/// with bytes after the end blocks. skopeo stores each into a podman store; stowage must too,
/// with the same diffID, and export it byte for byte (the pipeline checks the diffID of the
/// rebuilt tar). A tar cut inside a file's data stays an error.
#[test]
fn layers_ending_early_or_with_trailing_bytes_are_stored_as_podman_stores_them() {
    let test = "layers_ending_early_or_with_trailing_bytes_are_stored_as_podman_stores_them";
    let Some((store, dir)) = fresh_store(test) else {
        return;
    };
    use stowage_fixtures::builder::{History, ImageBuilder};
    use stowage_fixtures::layer::LayerCompression;
    // The last file has 700 bytes: 324 bytes of padding after it.
    let mut spec = LayerSpec::new("quirks");
    spec.file("etc/a", b"first\n".to_vec());
    spec.file("z", vec![b'z'; 700]);
    let full = spec.to_tar().unwrap();
    assert!(
        full.ends_with(&[0u8; 1024]),
        "tar::Builder ends with two zero blocks"
    );
    let data_end = full.len() - 1024 - 324;
    let mut garbage = full.clone();
    garbage.extend_from_slice(b"trailing bytes after the end of the archive\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no-padding-no-end-blocks", full[..data_end].to_vec()),
        ("padding-no-end-blocks", full[..full.len() - 1024].to_vec()),
        ("one-end-block", full[..full.len() - 512].to_vec()),
        ("trailing-garbage", garbage),
    ];
    for (name, tar) in cases {
        let diff_id = format!("sha256:{}", stowage_fixtures::sha256_hex(&tar));
        let layout = dir.path().join(name);
        let built = write_layout(
            &layout,
            name,
            ImageBuilder::new().tar_layer(tar, LayerCompression::Gzip, History::new(name)),
        );
        // skopeo (containers/storage) stores it: the oracle.
        let theirs = PodmanStore::new();
        run(skopeo().args([
            "copy",
            &built.reference,
            &theirs.reference(&format!("localhost/{name}:1")),
        ]));
        let podman_view = theirs.image_inspect(&format!("localhost/{name}:1"));
        assert_eq!(
            podman_view["RootFS"]["Layers"][0],
            diff_id.as_str(),
            "{name}: skopeo"
        );
        // stowage stores it the same way.
        let dst = store.reference(&format!("localhost/{name}:1"));
        run(stowage().args(["copy", &built.reference, &dst]));
        let ours = store.image_inspect(&format!("localhost/{name}:1"));
        assert_eq!(
            ours["RootFS"]["Layers"][0],
            diff_id.as_str(),
            "{name}: stowage"
        );
        assert_eq!(ours["Id"], podman_view["Id"], "{name}");
        // And gives it back byte for byte: an uncompressed export must hash to the diffID.
        let out = dir.path().join(format!("{name}-out"));
        run(stowage().args(["copy", &dst, &format!("oci:{}:x", out.display())]));
        assert_eq!(
            layout_diff_ids(&out, "x"),
            vec![diff_id.clone()],
            "{name}: exported diffID"
        );
    }
    // Cut inside the last file's data: refused, naming the entry.
    let layout = dir.path().join("cut");
    let built = write_layout(
        &layout,
        "cut",
        ImageBuilder::new().tar_layer(
            full[..data_end - 100].to_vec(),
            LayerCompression::Gzip,
            History::new("cut"),
        ),
    );
    let out = run_failing(stowage().args([
        "copy",
        &built.reference,
        &store.reference("localhost/cut:1"),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"z\"") || err.contains("z"), "{err}");
}
