//! Parallel export compression checked against the real readers: gzip, zstd, skopeo, podman
//! and umoci.
//!
//! 1. An image with a multi-MiB compressible layer (many gzip chunks, several zstd frames), a
//!    layer smaller than one chunk and a layer of incompressible bytes goes into a
//!    containers-storage store with skopeo (which keeps only uncompressed diffs).
//! 2. stowage exports it to OCI layouts with gzip (the default) and with
//!    `--dest-compress-format zstd`, each with the default thread count, with
//!    `--compress-threads 1` and with `--compress-threads 7`: the three layouts of a format hold
//!    the same manifest digest (the same bytes whatever the thread count).
//! 3. Every layer blob passes `gzip -t` / `zstd -t`; a gzip blob is exactly one member (its
//!    trailer's CRC-32 and ISIZE are the uncompressed tar's), and each zstd blob has several
//!    frames when its layer is larger than one frame.
//! 4. skopeo copies each export into a fresh containers-storage store (decompressing with Go's
//!    gzip and klauspost's zstd), where podman shows the source's diffIDs, and umoci unpacks
//!    the gzip export to the files of the source image (umoci 0.4 reads no zstd).
//!
//! Needs skopeo, podman, umoci, gzip and zstd (skipped with a message unless `CI=true`).

mod common;

use std::io::Read;
use std::path::Path;

use common::*;
use serde_json::Value;
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{LayerCompression, LayerSpec};

/// Text that deflate compresses well but not trivially: numbered lines.
fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 80);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(
            format!(
                "{i:08} /usr/lib/x86_64-linux-gnu/lib{}.so.{}\n",
                i % 313,
                i % 7
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

fn source_image(dir: &Path) -> Built {
    let mut big = LayerSpec::new("big");
    big.file("usr/share/big.txt", text(5 << 20 | 12345));
    big.file("usr/share/more.txt", text(700_000));
    let mut small = LayerSpec::new("small");
    small.file("etc/hostname", b"stowage\n".to_vec());
    let mut random = LayerSpec::new("random");
    random.file("usr/lib/random.bin", SplitMix64::new(7).bytes(600_000));
    let image = ImageBuilder::new()
        .created("2026-12-01T00:00:00Z")
        .layer_with_history(&big, LayerCompression::GzipLevel(1), History::new("big"))
        .layer_with_history(
            &small,
            LayerCompression::GzipLevel(1),
            History::new("small"),
        )
        .layer_with_history(
            &random,
            LayerCompression::GzipLevel(1),
            History::new("random"),
        );
    write_layout(dir, "src", image)
}

fn manifest(layout: &Path, tag: &str) -> Value {
    let entry = index_entry(layout, tag);
    serde_json::from_slice(&layout_blob(layout, entry["digest"].as_str().unwrap())).unwrap()
}

/// The layer blobs of `layout:tag` with their media types.
fn layers(layout: &Path, tag: &str) -> Vec<(String, String)> {
    manifest(layout, tag)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["mediaType"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// gzip's own check, and the blob is one member whose trailer matches the tar.
fn check_gzip_blob(path: &Path, what: &str) {
    run(cmd("gzip", ["-t"]).arg(path));
    let blob = std::fs::read(path).unwrap();
    let mut d = flate2::read::GzDecoder::new(blob.as_slice());
    let mut tar = Vec::new();
    d.read_to_end(&mut tar)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut rest = Vec::new();
    d.into_inner().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{what}: bytes after the first gzip member");
    let n = blob.len();
    let crc = u32::from_le_bytes(blob[n - 8..n - 4].try_into().unwrap());
    let isize = u32::from_le_bytes(blob[n - 4..].try_into().unwrap());
    let mut h = flate2::Crc::new();
    h.update(&tar);
    assert_eq!(crc, h.sum(), "{what}: CRC-32 in the trailer");
    assert_eq!(isize, tar.len() as u32, "{what}: ISIZE in the trailer");
}

/// zstd's own check; returns the number of frames (`zstd -l` counts them).
fn check_zstd_blob(path: &Path) -> u64 {
    run(cmd("zstd", ["-q", "-t"]).arg(path));
    let list = run_stdout(cmd("zstd", ["-l"]).arg(path));
    // "Frames  Skips  Compressed  Uncompressed  Ratio  Check  Filename" then one row.
    let row = list
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("zstd -l printed {list}"));
    row.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("zstd -l printed {list}"))
}

/// The regular files under `dir` with their contents, relative paths sorted.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn umoci_files(layout: &Path, tag: &str, scratch: &Path) -> Vec<(String, Vec<u8>)> {
    let rootfs = scratch.join(format!(
        "rootfs-{}-{tag}",
        layout.file_name().unwrap().to_string_lossy()
    ));
    run(cmd("umoci", ["raw", "unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(&rootfs));
    files(&rootfs)
}

#[test]
fn parallel_exports_are_deterministic_and_read_by_the_real_tools() {
    let test = "parallel_exports_are_deterministic_and_read_by_the_real_tools";
    if !require(test, &["skopeo", "podman", "umoci", "gzip", "zstd"]) {
        return;
    }
    let scratch = tempdir();
    let src_layout = scratch.path().join("src");
    let built = source_image(&src_layout);
    let store = PodmanStore::new();
    store.skopeo_copy(&[], &built.reference, "localhost/par:1");
    let expected_files = umoci_files(&src_layout, "src", scratch.path());

    for (format, extra) in [("gzip", None), ("zstd", Some("zstd"))] {
        let out = scratch.path().join(format!("out-{format}"));
        let mut digests = Vec::new();
        for (tag, threads) in [("default", None), ("one", Some("1")), ("seven", Some("7"))] {
            let mut c = stowage();
            c.args(["copy", "-q"]);
            if let Some(f) = extra {
                c.args(["--dest-compress-format", f]);
            }
            if let Some(t) = threads {
                c.args(["--compress-threads", t]);
            }
            run(c
                .arg(store.reference("localhost/par:1"))
                .arg(oci_ref(&out, tag)));
            digests.push(layout_manifest_digest(&out, tag));
        }
        assert!(
            digests.iter().all(|d| d == &digests[0]),
            "{format}: the manifest depends on --compress-threads: {digests:?}"
        );
        assert_eq!(
            layout_diff_ids(&out, "default"),
            built.diff_ids,
            "{format}: diffIDs of the export"
        );

        let layers = layers(&out, "default");
        assert_eq!(layers.len(), 3);
        for (i, (digest, media_type)) in layers.iter().enumerate() {
            let path = blob_path(&out, digest);
            let what = format!("{format} layer {i} ({digest})");
            match format {
                "gzip" => {
                    assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
                    check_gzip_blob(&path, &what);
                }
                _ => {
                    assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
                    let frames = check_zstd_blob(&path);
                    // Layer 0 holds ~6 MiB: 2 MiB frames.
                    let want = if i == 0 { 3.. } else { 1.. };
                    assert!(want.contains(&frames), "{what}: {frames} frames");
                    if i > 0 {
                        assert_eq!(frames, 1, "{what}: a layer under one frame is one frame");
                    }
                }
            }
        }

        // skopeo reads the export into a store; podman sees the source's layers.
        let back = PodmanStore::new();
        back.skopeo_copy(&[], &oci_ref(&out, "default"), "localhost/back:1");
        let inspect = back.image_inspect("localhost/back:1");
        let rootfs: Vec<String> = inspect["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(rootfs, built.diff_ids, "{format}: podman's RootFS.Layers");

        // umoci (gzip only: umoci 0.4 has no zstd) decompresses with Go's reader and finds
        // the same files.
        assert!(
            format == "zstd" || umoci_files(&out, "default", scratch.path()) == expected_files,
            "{format}: umoci unpacks other files than the source's"
        );
    }
}
