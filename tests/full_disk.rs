//! Copies into a filesystem that fills up mid-layer (issue 10), checked with the real tools.
//!
//! 1. A tmpfs of [`SMALL_MIB`] MiB is mounted (root only; elsewhere each test prints a `SKIP:`
//!    line) and a store made on it: a containers-storage graph root, an OCI layout, or an
//!    ostree repository (`ostree init --mode=bare-user`). The small `basic` fixture is copied
//!    in first.
//! 2. A one-layer image of [`LARGE_MIB`] MiB of text (the fixtures' streamed builder) is copied
//!    in: the filesystem fills up while the layer is written. stowage exits non-zero with one
//!    line saying the filesystem is full, naming its mount point and the store, and telling
//!    to free space.
//! 3. The store is then still what it was: podman lists and inspects `basic` (and nothing of
//!    the large layer is recorded); skopeo and umoci read the layout and no blob of the large
//!    image is left; `ostree fsck` passes, no staging directory is left and `basic` is
//!    still there; stowage itself inspects `basic` in each.
//! 4. The tmpfs is remounted at [`BIG_MIB`] MiB (`mount -o remount,size=…`) and the same copy
//!    run again: it succeeds, and the image verifies with the oracle (podman's `RootFS.Layers`
//!    and a `skopeo copy --dest-decompress` out whose layer hashes to the diffID; skopeo
//!    reading the layout's blobs; `ostree fsck` and the layer commit's `big/data` size).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use serde_json::Value;
use stowage_fixtures::large::{write_large_text_image, LARGE_TAG};

/// The tmpfs the copy fills: room for `basic`, not for the large layer.
const SMALL_MIB: u64 = 6;
/// The uncompressed size of the large layer's one file (its gzip blob is about 76 % of it).
const LARGE_MIB: u64 = 12;
/// The tmpfs after the remount: room for everything.
const BIG_MIB: u64 = 64;

/// The large image, written once per test process beside the fixtures (outside the tmpfs):
/// (`oci:DIR:large`, layer digest, diffID).
fn large_image() -> (String, String, String) {
    static LARGE: OnceLock<(String, String, String)> = OnceLock::new();
    LARGE
        .get_or_init(|| {
            let layout = fixtures().dir.join("large-text");
            let image = write_large_text_image(&layout, LARGE_MIB)
                .unwrap_or_else(|e| panic!("writing the large image: {e:#}"));
            let layer = &image.layers[0];
            (
                format!("oci:{}:{LARGE_TAG}", layout.display()),
                layer.digest.to_string(),
                layer.diff_id.to_string(),
            )
        })
        .clone()
}

/// `stowage copy SRC DST`, which must fail because the filesystem is full: the error names
/// the mount point and the store and says to free space.
fn copy_fills_up(test: &str, src: &str, dst: &str, fs: &Tmpfs, store: &Path) {
    let out = run_failing(stowage().arg("copy").arg(src).arg(dst));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("{test}: no Error: line in\n{stderr}"));
    eprintln!("{test}: stowage reported: {line}");
    for needle in [
        "No space left on device".to_string(),
        format!("the filesystem mounted at {}", fs.mount.display()),
        format!("holding {}", store.display()),
        "is full: free space on it".to_string(),
        "layer 1".to_string(),
    ] {
        assert!(
            line.contains(&needle),
            "{test}: the error does not say {needle:?}:\n{stderr}"
        );
    }
}

fn sha256_file(path: &Path) -> String {
    sha256(&std::fs::read(path).unwrap_or_else(|e| panic!("reading {path:?}: {e}")))
}

/// `stowage inspect REF`'s digest, which must succeed.
fn stowage_digest(reference: &str) -> String {
    stowage_inspect(reference)["Digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no Digest in stowage inspect {reference}"))
        .to_string()
}

#[test]
fn containers_storage_fills_up_mid_layer_and_completes_after_space_is_freed() {
    let test = "containers_storage_fills_up_mid_layer_and_completes_after_space_is_freed";
    if !require(test, &["podman", "skopeo"]) {
        return;
    }
    let Some(fs) = Tmpfs::mount(test, SMALL_MIB) else {
        return;
    };
    let scratch = tempdir();
    let (large, _, diff_id) = large_image();
    let root = fs.mount.join("root");
    let runroot = scratch.path().join("runroot");
    let reference = |name: &str| {
        format!(
            "containers-storage:[overlay@{}+{}]{name}",
            root.display(),
            runroot.display()
        )
    };
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .arg("--storage-driver")
            .arg("overlay")
            .args(args);
        c
    };
    let podman_json = |args: &[&str]| -> Value {
        serde_json::from_slice(&run(podman(args)).stdout).expect("podman prints JSON")
    };
    let basic = fixture("basic");
    run(stowage()
        .arg("copy")
        .arg(basic.oci_ref())
        .arg(reference("localhost/basic:1")));
    let basic_digest = podman_json(&["image", "inspect", "localhost/basic:1"])[0]["Digest"].clone();

    copy_fills_up(test, &large, &reference("localhost/large:1"), &fs, &root);

    // The store is as it was: podman and stowage read it, only `basic` is there, and the
    // large layer is neither recorded nor left on disk.
    let images = podman_json(&["images", "--format", "json"]);
    let names: Vec<String> = images
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["Names"].as_array().cloned().unwrap_or_default())
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["localhost/basic:1"],
        "{test}: podman images after the failure"
    );
    assert_eq!(
        podman_json(&["image", "inspect", "localhost/basic:1"])[0]["Digest"],
        basic_digest
    );
    let layers = std::fs::read_to_string(root.join("overlay-layers/layers.json")).unwrap();
    let layer_id = diff_id.strip_prefix("sha256:").unwrap();
    assert!(
        !layers.contains(layer_id),
        "{test}: layers.json still records the large layer:\n{layers}"
    );
    assert!(
        !root.join("overlay").join(layer_id).exists(),
        "{test}: the large layer's directory was left behind"
    );
    assert_eq!(
        serde_json::Value::String(stowage_digest(&reference("localhost/basic:1"))),
        basic_digest
    );

    // After the remount the same copy completes, and podman reads every byte of the layer.
    fs.grow(BIG_MIB);
    run(stowage()
        .arg("copy")
        .arg(&large)
        .arg(reference("localhost/large:1")));
    let inspect = podman_json(&["image", "inspect", "localhost/large:1"]);
    assert_eq!(inspect[0]["RootFS"]["Layers"], serde_json::json!([diff_id]));
    let out = scratch.path().join("out");
    run(cmd("skopeo", ["copy", "-q", "--dest-decompress"])
        .arg(reference("localhost/large:1"))
        .arg(format!("dir:{}", out.display())));
    let hashes: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| sha256_file(&p))
        .collect();
    assert!(
        hashes.contains(&diff_id),
        "{test}: no layer read back by skopeo hashes to {diff_id}: {hashes:?}"
    );
    assert_eq!(
        podman_json(&["image", "inspect", "localhost/basic:1"])[0]["Digest"],
        basic_digest
    );
}

#[test]
fn oci_layout_fills_up_mid_layer_and_completes_after_space_is_freed() {
    let test = "oci_layout_fills_up_mid_layer_and_completes_after_space_is_freed";
    if !require(test, &["skopeo", "umoci"]) {
        return;
    }
    let Some(fs) = Tmpfs::mount(test, SMALL_MIB) else {
        return;
    };
    let scratch = tempdir();
    let (large, layer_digest, _) = large_image();
    let layout = fs.mount.join("oci");
    let basic = fixture("basic");
    let basic_ref = format!("oci:{}:basic", layout.display());
    run(stowage().arg("copy").arg(basic.oci_ref()).arg(&basic_ref));
    let blobs_before = blob_names(&layout);

    copy_fills_up(
        test,
        &large,
        &format!("oci:{}:large", layout.display()),
        &fs,
        &layout,
    );

    // Nothing new in the layout: the same blobs (no temporaries, no part of the large blob),
    // still read by umoci and skopeo, and by stowage.
    assert_eq!(
        blob_names(&layout),
        blobs_before,
        "{test}: the failed copy left files in blobs/sha256"
    );
    let tags = run_stdout(cmd("umoci", ["ls", "--layout"]).arg(&layout));
    assert_eq!(tags.split_whitespace().collect::<Vec<_>>(), ["basic"]);
    let basic_digest = skopeo_inspect(&basic_ref)["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(stowage_digest(&basic_ref), basic_digest);
    check_blobs(test, &layout);

    // After the remount the same copy completes; skopeo copies it out (reading and verifying
    // every blob) and the layer blob is the source's.
    fs.grow(BIG_MIB);
    let large_ref = format!("oci:{}:large", layout.display());
    run(stowage().arg("copy").arg(&large).arg(&large_ref));
    let inspect = skopeo_inspect(&large_ref);
    assert_eq!(inspect["Layers"], serde_json::json!([layer_digest]));
    run(cmd("skopeo", ["copy", "-q"])
        .arg(&large_ref)
        .arg(format!("dir:{}", scratch.path().join("out").display())));
    let tags = run_stdout(cmd("umoci", ["ls", "--layout"]).arg(&layout));
    let mut tags: Vec<&str> = tags.split_whitespace().collect();
    tags.sort();
    assert_eq!(tags, ["basic", "large"]);
    check_blobs(test, &layout);
}

/// The file names under `blobs/sha256`, sorted.
fn blob_names(layout: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every blob hashes to its name.
fn check_blobs(test: &str, layout: &Path) {
    for name in blob_names(layout) {
        let got = sha256_file(&layout.join("blobs/sha256").join(&name));
        assert_eq!(
            got,
            format!("sha256:{name}"),
            "{test}: blob {name} is corrupt"
        );
    }
}

#[test]
fn ostree_fills_up_mid_layer_and_completes_after_space_is_freed() {
    let test = "ostree_fills_up_mid_layer_and_completes_after_space_is_freed";
    if !require(test, &["ostree"]) {
        return;
    }
    let Some(fs) = Tmpfs::mount(test, SMALL_MIB) else {
        return;
    };
    let (large, layer_digest, _) = large_image();
    let repo = fs.mount.join("repo");
    run(cmd("ostree", ["init", "--mode=bare-user"]).arg(format!("--repo={}", repo.display())));
    let basic = fixture("basic");
    let basic_ref = format!("ostree:[{}]localhost/basic:1", repo.display());
    run(stowage().arg("copy").arg(basic.oci_ref()).arg(&basic_ref));
    let refs_before = ostree(&repo, &["refs"]);
    let basic_digest = stowage_digest(&basic_ref);

    copy_fills_up(
        test,
        &large,
        &format!("ostree:[{}]localhost/large:1", repo.display()),
        &fs,
        &repo,
    );

    // The repository passes fsck, has the refs it had, and no staging directory is left.
    ostree(&repo, &["fsck"]);
    assert_eq!(
        ostree(&repo, &["refs"]),
        refs_before,
        "{test}: refs changed"
    );
    let tmp: Vec<String> = std::fs::read_dir(repo.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "cache")
        .collect();
    assert!(tmp.is_empty(), "{test}: left in REPO/tmp: {tmp:?}");
    assert_eq!(stowage_digest(&basic_ref), basic_digest);

    // After the remount the same copy completes: fsck passes and the layer commit holds the
    // whole file.
    fs.grow(BIG_MIB);
    let large_ref = format!("ostree:[{}]localhost/large:1", repo.display());
    run(stowage().arg("copy").arg(&large).arg(&large_ref));
    ostree(&repo, &["fsck"]);
    let blob_ref = format!(
        "ostree/container/blob/sha256_3A_{}",
        layer_digest.strip_prefix("sha256:").unwrap()
    );
    let refs = ostree(&repo, &["refs"]);
    assert!(
        refs.lines().any(|r| r == blob_ref),
        "{test}: no layer ref {blob_ref} in\n{refs}"
    );
    let ls = ostree(&repo, &["ls", &blob_ref, "/big/data"]);
    let size: u64 = ls
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{test}: unexpected ostree ls line {ls:?}"));
    assert_eq!(
        size,
        LARGE_MIB << 20,
        "{test}: big/data in the layer commit"
    );
    assert_eq!(stowage_digest(&basic_ref), basic_digest);
}
