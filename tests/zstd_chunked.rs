//! zstd:chunked against the real tools: stowage pushes an image with `--dest-compress-format
//! zstd:chunked` to a local docker-registry; podman 4.3 pulls it with partial pulls enabled
//! (it reads stowage's TOC and fetches the files by range) and without; skopeo sees the
//! TOC annotations; stowage reads the layer back as plain zstd.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{LayerCompression, LayerSpec, SplitMix64};
use stowage_fixtures::tree::describe_dir;

const CHECKSUM: &str = "io.containers.zstd-chunked.manifest-checksum";
const POSITION: &str = "io.containers.zstd-chunked.manifest-position";

/// One layer with what a TOC must describe: a directory, small, empty and multi-chunk files,
/// a symlink, a hard link, a file owned by another user with an xattr.
fn chunked_test_image(layout: &Path) -> Built {
    let mut spec = LayerSpec::new("test");
    spec.dir("etc");
    spec.file("etc/hello", b"hello\n".to_vec());
    spec.file("etc/empty", Vec::new());
    spec.file("usr/lib/big", SplitMix64::new(5).bytes(400_000));
    spec.file("usr/lib/text", b"line of text\n".repeat(20_000));
    spec.symlink("usr/lib/link", "big");
    spec.hardlink("usr/lib/hard", "usr/lib/text");
    let owned = spec.file("srv/owned", b"owned\n".to_vec());
    owned.uid = 1000;
    owned.gid = 1000;
    owned.mode = 0o640;
    owned.xattrs.push(("user.test".into(), b"value".to_vec()));
    let image = ImageBuilder::new()
        .created("2026-11-01T00:00:00Z")
        .layer_with_history(&spec, LayerCompression::GzipLevel(1), History::new("test"));
    write_layout(layout, "1", image)
}

/// A storage.conf for `store` with podman's partial pulls on or off.
fn storage_conf(store: &PodmanStore, partial: bool) -> std::path::PathBuf {
    let path = store.dir().join("storage.conf");
    std::fs::write(
        &path,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n\
             [storage.options]\npull_options = {{enable_partial_images = \"{partial}\", use_hard_links = \"false\"}}\n",
            store.root.display(),
            store.runroot.display()
        ),
    )
    .unwrap();
    path
}

/// `podman pull` of `image` into `store` (with `partial` pulls or not); returns its debug log.
fn podman_pull(store: &PodmanStore, image: &str, partial: bool) -> String {
    let conf = storage_conf(store, partial);
    let mut c = store.podman(["--log-level=debug", "pull", "--tls-verify=false", image]);
    c.env("CONTAINERS_STORAGE_CONF", &conf);
    let out = run(c);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The diff tree of the top layer of `image` in `store`.
fn top_layer_tree(store: &PodmanStore, image: &str) -> Vec<stowage_fixtures::tree::TreeEntry> {
    let inspect = store.image_inspect(image);
    let upper = inspect["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
    describe_dir(Path::new(upper)).unwrap()
}

#[test]
fn push_zstd_chunked_podman_pulls_it_partially_and_whole() {
    if !registry_tools("push_zstd_chunked_podman_pulls_it_partially_and_whole")
        || !require(
            "push_zstd_chunked_podman_pulls_it_partially_and_whole",
            &["podman"],
        )
    {
        return;
    }
    let tmp = tempdir();
    let layout = tmp.path().join("src");
    let built = chunked_test_image(&layout);
    let reg = Registry::start(Auth::None, None);
    let image = format!("{}/chunked:1", reg.addr);
    run(stowage().args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "zstd:chunked",
        &built.reference,
        &format!("docker://{image}"),
    ]));

    // skopeo sees a zstd layer with both annotations; the footer agrees with them.
    let raw: Value = serde_json::from_str(&run_stdout(skopeo().args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ])))
    .unwrap();
    let layer = &raw["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let position = layer["annotations"][POSITION].as_str().unwrap();
    let checksum = layer["annotations"][CHECKSUM].as_str().unwrap();
    let blob = std::fs::read(reg.blob_path(layer["digest"].as_str().unwrap())).unwrap();
    assert_eq!(&blob[blob.len() - 8..], b"GnUlInUx");
    let fields: Vec<usize> = position.split(':').map(|f| f.parse().unwrap()).collect();
    let (off, len) = (fields[0], fields[1]);
    assert_eq!(sha256(&blob[off..off + len]), checksum);
    assert_eq!(fields[3], 1);
    // The whole blob is plain zstd: its content is the original tar.
    let tar = zstd::stream::decode_all(&blob[..]).unwrap();
    assert_eq!(sha256(&tar), built.diff_ids[0]);

    // podman with partial pulls: it takes stowage's TOC and fetches the files by range.
    let partial = PodmanStore::new();
    let log = podman_pull(&partial, &image, true);
    assert!(
        log.contains("Retrieved partial blob"),
        "podman did not pull partially:\n{log}"
    );
    // podman without: it decompresses the stream.
    let whole = PodmanStore::new();
    let log = podman_pull(&whole, &image, false);
    assert!(!log.contains("Retrieved partial blob"), "{log}");
    let whole_inspect = whole.image_inspect(&image);
    assert_eq!(whole_inspect["RootFS"]["Layers"][0], built.diff_ids[0]);
    assert_eq!(
        partial.image_inspect(&image)["RootFS"]["Layers"][0],
        built.diff_ids[0]
    );
    let tree = top_layer_tree(&whole, &image);
    // podman 4.3's partial pull sets neither times nor owners on the files it creates (the
    // same with a layer `podman push --compression-format zstd:chunked` wrote: checked by hand,
    // docs/formats.md); everything else must match.
    let without_times_and_owners = |t: &[stowage_fixtures::tree::TreeEntry]| {
        t.iter()
            .cloned()
            .map(|mut e| {
                e.mtime = None;
                e.uid = 0;
                e.gid = 0;
                e
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_times_and_owners(&top_layer_tree(&partial, &image)),
        without_times_and_owners(&tree)
    );
    // And the same tree as podman gets from the original gzip image.
    let reference = PodmanStore::new();
    reference.skopeo_copy(&[], &built.reference, "localhost/ref:1");
    assert_eq!(top_layer_tree(&reference, "localhost/ref:1"), tree);

    // stowage pulls it back as zstd: same diffID, and into an OCI layout as gzip.
    let back = tmp.path().join("back");
    run(stowage().args([
        "copy",
        "--src-tls-verify=false",
        "--dest-compress-format",
        "gzip",
        &format!("docker://{image}"),
        &oci_ref(&back, "1"),
    ]));
    assert_eq!(layout_diff_ids(&back, "1"), built.diff_ids);
}

#[test]
fn zstd_chunked_manifests_are_reproducible() {
    // The same image converted twice gives the same blob and manifest bytes (the
    // annotations are written with sorted keys, as Go does).
    let tmp = tempdir();
    let built = chunked_test_image(&tmp.path().join("src"));
    let mut digests = Vec::new();
    for i in 0..2 {
        let dst = tmp.path().join(format!("dst{i}"));
        run(stowage().args([
            "copy",
            "--dest-compress-format",
            "zstd:chunked",
            &built.reference,
            &oci_ref(&dst, "1"),
        ]));
        digests.push(layout_manifest_digest(&dst, "1"));
        let m: Value = serde_json::from_slice(&layout_blob(&dst, &digests[i])).unwrap();
        let keys: Vec<&String> = m["layers"][0]["annotations"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            keys,
            [
                CHECKSUM,
                POSITION,
                "io.github.stowage.zstd-chunked.tarsplit-checksum",
                "io.github.stowage.zstd-chunked.tarsplit-position"
            ]
        );
    }
    assert_eq!(digests[0], digests[1]);
}

/// An image of `files` files of 16 KiB (content seeded by file number and `changed`: the
/// files numbered in `changed` get other content), tagged `tag` in `layout`.
fn files_image(layout: &Path, tag: &str, files: u64, changed: &[u64]) -> Built {
    let mut spec = LayerSpec::new("test");
    spec.dir("data");
    for i in 0..files {
        let seed = if changed.contains(&i) { 1_000 + i } else { i };
        spec.file(
            &format!("data/f{i:03}"),
            SplitMix64::new(seed).bytes(16 << 10),
        );
    }
    let image = ImageBuilder::new()
        .created("2026-11-01T00:00:00Z")
        .layer_with_history(&spec, LayerCompression::GzipLevel(1), History::new("test"));
    write_layout(layout, tag, image)
}

/// `stowage copy` from the registry into `store`; returns its stderr (the notes).
fn stowage_pull(image: &str, store: &PodmanStore, name: &str, extra: &[&str]) -> String {
    let out = run(stowage()
        .args(["copy", "--src-tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{image}"))
        .arg(store.reference(name)));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The numbers of the partial-pull note: (files reused, files, bytes fetched, blob size).
fn partial_note(notes: &str) -> Option<(u64, u64, u64, u64)> {
    let line = notes
        .lines()
        .find(|l| l.contains("zstd:chunked partial pull:"))?;
    let nums: Vec<u64> = line
        .split_once("partial pull:")?
        .1
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    Some((nums[0], nums[1], nums[3], nums[4]))
}

/// The uncompressed digest of the one layer of the image `oci:DIR:TAG` skopeo exported.
fn exported_layer_diff_id(dir: &Path, tag: &str) -> String {
    let m: Value =
        serde_json::from_slice(&layout_blob(dir, &layout_manifest_digest(dir, tag))).unwrap();
    let blob = layout_blob(dir, m["layers"][0]["digest"].as_str().unwrap());
    let mut tar = Vec::new();
    let (_, mut r) = stowage_engine::compression::decoder(&blob[..], "layer").unwrap();
    std::io::Read::read_to_end(&mut r, &mut tar).unwrap();
    sha256(&tar)
}

#[test]
fn partial_pull_into_containers_storage_fetches_only_the_changed_files() {
    let test = "partial_pull_into_containers_storage_fetches_only_the_changed_files";
    if !registry_tools(test) || !require(test, &["podman"]) {
        return;
    }
    let tmp = tempdir();
    let layout = tmp.path().join("src");
    let v1 = files_image(&layout, "1", 40, &[]);
    let v2 = files_image(&layout, "2", 40, &[7, 23]);
    let reg = Registry::start(Auth::None, None);
    for tag in ["1", "2"] {
        run(stowage().args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-compress-format",
            "zstd:chunked",
            &oci_ref(&layout, tag),
            &format!("docker://{}/files:{tag}", reg.addr),
        ]));
    }
    let store = PodmanStore::new();
    // v1: nothing to reuse; the TOC is kept with the layer.
    let notes = stowage_pull(
        &format!("{}/files:1", reg.addr),
        &store,
        "localhost/files:1",
        &[],
    );
    let (reused, files, _, _) = partial_note(&notes).unwrap_or_else(|| panic!("{notes}"));
    assert_eq!((reused, files), (0, 40), "{notes}");
    // v2: the 38 unchanged files come from v1's layer; a small part of the blob is fetched,
    // in few requests (one for the TOC, one multi-range for the rest).
    let notes = stowage_pull(
        &format!("{}/files:2", reg.addr),
        &store,
        "localhost/files:2",
        &[],
    );
    let (reused, files, fetched, blob) = partial_note(&notes).unwrap_or_else(|| panic!("{notes}"));
    assert_eq!((reused, files), (38, 40), "{notes}");
    assert!(
        fetched * 8 < blob,
        "fetched {fetched} of {blob} bytes:\n{notes}"
    );
    let ranged = notes
        .lines()
        .find(|l| l.contains("ranged reads from"))
        .unwrap_or_else(|| panic!("{notes}"));
    let nums: Vec<u64> = ranged
        .rsplit_once(':')
        .unwrap()
        .1
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(nums[0] * 8 < blob && nums[1] <= 3, "{ranged}");

    // podman reads both images: the right diffIDs, the same tree as podman gets from the
    // original gzip image, and skopeo exports the partially pulled layer bit for bit.
    assert_eq!(
        store.image_inspect("localhost/files:2")["RootFS"]["Layers"][0],
        v2.diff_ids[0]
    );
    assert_eq!(
        store.image_inspect("localhost/files:1")["RootFS"]["Layers"][0],
        v1.diff_ids[0]
    );
    let reference = PodmanStore::new();
    reference.skopeo_copy(&[], &oci_ref(&layout, "2"), "localhost/ref:2");
    assert_eq!(
        top_layer_tree(&store, "localhost/files:2"),
        top_layer_tree(&reference, "localhost/ref:2")
    );
    let exported = tmp.path().join("exported");
    run(skopeo().args([
        "copy",
        "-q",
        &store.reference("localhost/files:2"),
        &oci_ref(&exported, "2"),
    ]));
    assert_eq!(exported_layer_diff_id(&exported, "2"), v2.diff_ids[0]);

    // --no-partial-pull pulls the whole blob.
    let whole = PodmanStore::new();
    stowage_pull(
        &format!("{}/files:1", reg.addr),
        &whole,
        "localhost/files:1",
        &[],
    );
    let notes = stowage_pull(
        &format!("{}/files:2", reg.addr),
        &whole,
        "localhost/files:2",
        &["--no-partial-pull"],
    );
    assert!(partial_note(&notes).is_none(), "{notes}");
    assert_eq!(
        whole.image_inspect("localhost/files:2")["RootFS"]["Layers"][0],
        v2.diff_ids[0]
    );
}
