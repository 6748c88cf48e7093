//! Multi-arch copies (`--all`, `--multi-arch`, `--override-*`), `--format`,
//! `--preserve-digests` and `--additional-tag`, against skopeo, podman and a real
//! docker-registry: what stowage writes must be what skopeo writes (the same index and
//! manifest digests, the same blobs), and skopeo and podman must read it.

mod common;

use std::path::Path;

use common::*;

/// The `multiarch` fixture: an OCI index over linux/amd64, linux/arm64/v8, linux/arm/v7.
fn multiarch() -> &'static stowage_fixtures::FixtureInfo {
    fixture("multiarch")
}

/// `--override-arch A [--override-variant V]` for a fixture platform `linux/A[/V]`.
fn override_args(platform: &str) -> Vec<String> {
    let mut parts = platform.split('/').skip(1);
    let mut args = vec![
        "--override-arch".to_string(),
        parts.next().unwrap().to_string(),
    ];
    if let Some(v) = parts.next() {
        args.push("--override-variant".into());
        args.push(v.into());
    }
    args
}

/// Every blob of layout `a` is in `b` with the same bytes, and the other way round.
fn assert_same_blobs(a: &Path, b: &Path) {
    assert_eq!(
        layout_blobs(a),
        layout_blobs(b),
        "blob sets of {a:?} and {b:?}"
    );
    for d in layout_blobs(a) {
        assert_eq!(layout_blob(a, &d), layout_blob(b, &d), "blob {d}");
    }
}

/// `skopeo inspect --raw REFERENCE` (with `--tls-verify=false` for a `docker://` one): the
/// manifest or index bytes as stored.
fn skopeo_raw(reference: &str) -> Vec<u8> {
    let mut c = skopeo();
    c.args(["inspect", "--raw"]);
    if reference.starts_with("docker://") {
        c.arg("--tls-verify=false");
    }
    run(c.arg(reference)).stdout
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn all_into_an_oci_layout_is_what_skopeo_writes() {
    if !require("all_into_an_oci_layout_is_what_skopeo_writes", &["skopeo"]) {
        return;
    }
    let info = multiarch();
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    let digestfile = tmp.path().join("digest");
    run(stowage()
        .args(["copy", "--all", "--digestfile"])
        .arg(&digestfile)
        .arg(info.oci_ref())
        .arg(oci_ref(&ours, "t")));
    run(skopeo()
        .args(["copy", "-q", "--all"])
        .arg(info.oci_ref())
        .arg(oci_ref(&theirs, "t")));
    let index = info.manifest_digest.to_string();
    assert_eq!(
        layout_manifest_digest(&ours, "t"),
        index,
        "the index is kept"
    );
    assert_eq!(layout_manifest_digest(&theirs, "t"), index);
    assert_eq!(std::fs::read_to_string(&digestfile).unwrap(), index);
    assert_same_blobs(&ours, &theirs);
    let raw = skopeo_raw(&oci_ref(&ours, "t"));
    assert_eq!(sha256(&raw), index, "skopeo inspect --raw");
    // Every image of the index comes out of our layout with skopeo --override-*.
    for p in &info.platforms {
        let out = tmp
            .path()
            .join(format!("out-{}", p.platform.replace('/', "-")));
        run(skopeo()
            .arg("--override-os")
            .arg("linux")
            .args(override_args(&p.platform))
            .args(["copy", "-q"])
            .arg(oci_ref(&ours, "t"))
            .arg(oci_ref(&out, "t")));
        assert_eq!(
            layout_manifest_digest(&out, "t"),
            p.manifest_digest.to_string(),
            "{}",
            p.platform
        );
    }
}

#[test]
fn override_arch_picks_that_image() {
    if !require("override_arch_picks_that_image", &["skopeo"]) {
        return;
    }
    let info = multiarch();
    let tmp = tempfile::tempdir().unwrap();
    for p in &info.platforms {
        let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
        let tag = p.platform.replace('/', "-");
        run(stowage()
            .arg("copy")
            .args(override_args(&p.platform))
            .arg(info.oci_ref())
            .arg(oci_ref(&ours, &tag)));
        run(skopeo()
            .args(override_args(&p.platform))
            .args(["copy", "-q"])
            .arg(info.oci_ref())
            .arg(oci_ref(&theirs, &tag)));
        let digest = p.manifest_digest.to_string();
        assert_eq!(
            layout_manifest_digest(&ours, &tag),
            digest,
            "{}",
            p.platform
        );
        assert_eq!(
            layout_manifest_digest(&theirs, &tag),
            digest,
            "{}",
            p.platform
        );
    }
    assert_same_blobs(&tmp.path().join("ours"), &tmp.path().join("theirs"));
}

#[test]
fn all_into_a_registry_keeps_the_index_and_every_image() {
    let test = "all_into_a_registry_keeps_the_index_and_every_image";
    if !registry_tools(test) {
        return;
    }
    let info = multiarch();
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    let ours = format!("{}/multi:1", reg.addr);
    let theirs = format!("{}/skopeo-multi:1", reg.addr);
    run(stowage()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(info.oci_ref())
        .arg(format!("docker://{ours}")));
    run(skopeo()
        .args(["copy", "-q", "--all", "--dest-tls-verify=false"])
        .arg(info.oci_ref())
        .arg(format!("docker://{theirs}")));
    let raw = |image: &str| skopeo_raw(&format!("docker://{image}"));
    let index = info.manifest_digest.to_string();
    assert_eq!(sha256(&raw(&ours)), index);
    assert_eq!(raw(&ours), raw(&theirs));
    for p in &info.platforms {
        let out = tmp.path().join(p.platform.replace('/', "-"));
        run(skopeo()
            .arg("--override-os")
            .arg("linux")
            .args(override_args(&p.platform))
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{ours}"))
            .arg(oci_ref(&out, "t")));
        assert_eq!(
            layout_manifest_digest(&out, "t"),
            p.manifest_digest.to_string(),
            "{}",
            p.platform
        );
    }
    // Back out of the registry with --all: the same layout skopeo writes from the fixture.
    let (back, reference) = (tmp.path().join("back"), tmp.path().join("reference"));
    run(stowage()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{ours}"))
        .arg(oci_ref(&back, "t")));
    run(skopeo()
        .args(["copy", "-q", "--all"])
        .arg(info.oci_ref())
        .arg(oci_ref(&reference, "t")));
    assert_eq!(layout_manifest_digest(&back, "t"), index);
    assert_same_blobs(&back, &reference);
}

#[test]
fn blobs_shared_by_images_of_an_index_are_copied_once() {
    if !require(
        "blobs_shared_by_images_of_an_index_are_copied_once",
        &["skopeo"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (index, shared) = shared_base_index(&src, "s");
    let ours = tmp.path().join("ours");
    let out = run(stowage_progress()
        .args(["copy", "--all"])
        .arg(oci_ref(&src, "s"))
        .arg(oci_ref(&ours, "t")));
    let log = stderr(&out);
    let copies = log
        .lines()
        .filter(|l| l.starts_with("Copying blob") && l.contains(&shared[7..19]))
        .filter(|l| l.ends_with(')'))
        .count();
    assert_eq!(
        copies, 1,
        "the shared layer {shared} was copied {copies} times:\n{log}"
    );
    let theirs = tmp.path().join("theirs");
    run(skopeo()
        .args(["copy", "-q", "--all"])
        .arg(oci_ref(&src, "s"))
        .arg(oci_ref(&theirs, "t")));
    assert_eq!(layout_manifest_digest(&ours, "t"), index);
    assert_same_blobs(&ours, &theirs);
}

#[test]
fn format_v2s2_is_what_skopeo_writes_and_podman_reads() {
    let test = "format_v2s2_is_what_skopeo_writes_and_podman_reads";
    if !registry_tools(test) || !require(test, &["podman"]) {
        return;
    }
    let info = multiarch();
    let tmp = tempfile::tempdir().unwrap();
    // Into OCI layouts: the same Docker manifest list and manifests, byte for byte.
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    run(stowage()
        .args(["copy", "--all", "--format", "v2s2"])
        .arg(info.oci_ref())
        .arg(oci_ref(&ours, "t")));
    run(skopeo()
        .args(["copy", "-q", "--all", "--format", "v2s2"])
        .arg(info.oci_ref())
        .arg(oci_ref(&theirs, "t")));
    let list = layout_manifest_digest(&theirs, "t");
    assert_ne!(list, info.manifest_digest.to_string(), "skopeo converted");
    assert_eq!(layout_manifest_digest(&ours, "t"), list);
    assert_eq!(
        index_entry(&ours, "t")["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_same_blobs(&ours, &theirs);
    // Into a registry: skopeo sees a Docker list, podman pulls the host's image from it, and
    // converting back with --format oci gives the original OCI index again.
    let reg = Registry::start(Auth::None, None);
    let v2 = format!("{}/v2s2:1", reg.addr);
    run(stowage()
        .args([
            "copy",
            "--all",
            "--format",
            "v2s2",
            "--dest-tls-verify=false",
        ])
        .arg(info.oci_ref())
        .arg(format!("docker://{v2}")));
    let raw = skopeo_raw(&format!("docker://{v2}"));
    assert_eq!(sha256(&raw), list);
    let store = PodmanStore::new();
    run(store
        .podman(["pull", "-q", "--tls-verify=false"])
        .arg(format!("docker://{v2}")));
    let inspected = store.podman_json(["image", "inspect", &v2]);
    let host = host_platform(info);
    assert_eq!(
        inspected[0]["Id"].as_str().unwrap(),
        host.config_digest
            .to_string()
            .strip_prefix("sha256:")
            .unwrap(),
        "podman pulled the host's image"
    );
    let back = format!("{}/back:1", reg.addr);
    run(stowage()
        .args([
            "copy",
            "--all",
            "--format",
            "oci",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg(format!("docker://{v2}"))
        .arg(format!("docker://{back}")));
    let raw = skopeo_raw(&format!("docker://{back}"));
    assert_eq!(sha256(&raw), info.manifest_digest.to_string());
}

#[test]
fn preserve_digests_refuses_what_would_change_a_digest() {
    if !require(
        "preserve_digests_refuses_what_would_change_a_digest",
        &["skopeo"],
    ) {
        return;
    }
    let info = multiarch();
    let tmp = tempfile::tempdir().unwrap();
    for extra in [
        &["--all", "--format", "v2s2"][..],
        &["--format", "v2s2"][..],
        &["--all", "--dest-compress-format", "zstd"][..],
    ] {
        let dest = tmp.path().join("refused");
        let out = run_failing(
            stowage()
                .args(["copy", "--preserve-digests"])
                .args(extra)
                .arg(info.oci_ref())
                .arg(oci_ref(&dest, "t")),
        );
        let err = stderr(&out);
        assert!(err.contains("--preserve-digests"), "{extra:?}: {err}");
        assert!(!dest.exists(), "{extra:?}: a refused copy left {dest:?}");
    }
    // skopeo 1.9 refuses the index conversion too (for the others it silently keeps the
    // source's form; stowage refuses rather than ignore a flag: docs/cli.md).
    run_failing(
        skopeo()
            .args([
                "copy",
                "-q",
                "--preserve-digests",
                "--all",
                "--format",
                "v2s2",
            ])
            .arg(info.oci_ref())
            .arg(oci_ref(&tmp.path().join("skopeo-refused"), "t")),
    );
    // Nothing to change: the copy goes through with the digests kept.
    let ok = tmp.path().join("ok");
    run(stowage()
        .args(["copy", "--all", "--preserve-digests"])
        .arg(info.oci_ref())
        .arg(oci_ref(&ok, "t")));
    assert_eq!(
        layout_manifest_digest(&ok, "t"),
        info.manifest_digest.to_string()
    );
}

#[test]
fn an_index_into_containers_storage_is_a_clear_error() {
    if !require(
        "an_index_into_containers_storage_is_a_clear_error",
        &["podman"],
    ) {
        return;
    }
    let info = multiarch();
    let store = PodmanStore::new();
    for flags in [
        &["--all"][..],
        &["--multi-arch", "all"],
        &["--multi-arch", "index-only"],
    ] {
        let out = run_failing(
            stowage()
                .arg("copy")
                .args(flags)
                .arg(info.oci_ref())
                .arg(store.reference("localhost/multi:1")),
        );
        let err = stderr(&out);
        assert!(
            err.contains("containers-storage stores one platform's image")
                && err.contains("--override-arch"),
            "{flags:?}: {err}"
        );
        assert!(
            !store.dir().join("root").exists(),
            "{flags:?}: the store was created"
        );
    }
    // The default (system) copies the host's image, which podman reads.
    run(stowage()
        .arg("copy")
        .arg(info.oci_ref())
        .arg(store.reference("localhost/multi:1")));
    let images = store.podman_json(["images", "--format", "json"]);
    assert_eq!(
        images[0]["Id"].as_str().unwrap(),
        host_platform(info)
            .config_digest
            .to_string()
            .strip_prefix("sha256:")
            .unwrap()
    );
}

#[test]
fn index_only_copies_just_the_index() {
    let test = "index_only_copies_just_the_index";
    if !registry_tools(test) {
        return;
    }
    let info = multiarch();
    let tmp = tempfile::tempdir().unwrap();
    // Into an OCI layout: only the index blob, as skopeo writes it.
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    run(stowage()
        .args(["copy", "--multi-arch", "index-only"])
        .arg(info.oci_ref())
        .arg(oci_ref(&ours, "t")));
    run(skopeo()
        .args(["copy", "-q", "--multi-arch", "index-only"])
        .arg(info.oci_ref())
        .arg(oci_ref(&theirs, "t")));
    assert_eq!(layout_blobs(&ours), vec![info.manifest_digest.to_string()]);
    assert_same_blobs(&ours, &theirs);
    assert_eq!(
        std::fs::read(ours.join("index.json")).unwrap(),
        std::fs::read(theirs.join("index.json")).unwrap()
    );
    // Into a registry that lacks the images: the registry refuses, and the error says why.
    let reg = Registry::start(Auth::None, None);
    let out = run_failing(
        stowage()
            .args([
                "copy",
                "--multi-arch",
                "index-only",
                "--dest-tls-verify=false",
            ])
            .arg(info.oci_ref())
            .arg(format!("docker://{}/sparse:1", reg.addr)),
    );
    assert!(
        stderr(&out).contains("--multi-arch all"),
        "{}",
        stderr(&out)
    );
    // Once the images are there, the index alone can be tagged again.
    run(stowage()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(info.oci_ref())
        .arg(format!("docker://{}/full:1", reg.addr)));
    run(stowage()
        .args([
            "copy",
            "--multi-arch",
            "index-only",
            "--dest-tls-verify=false",
        ])
        .arg(info.oci_ref())
        .arg(format!("docker://{}/full:2", reg.addr)));
    let raw = skopeo_raw(&format!("docker://{}/full:2", reg.addr));
    assert_eq!(sha256(&raw), info.manifest_digest.to_string());
}

#[test]
fn additional_tags_name_the_copy_in_every_destination() {
    let test = "additional_tags_name_the_copy_in_every_destination";
    if !registry_tools(test) || !require(test, &["podman"]) {
        return;
    }
    let info = multiarch();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("tagged");
    run(stowage()
        .args([
            "copy",
            "--all",
            "--additional-tag",
            "extra",
            "--additional-tag",
            "more",
        ])
        .arg(info.oci_ref())
        .arg(oci_ref(&layout, "t")));
    for tag in ["t", "extra", "more"] {
        let raw = skopeo_raw(&oci_ref(&layout, tag));
        assert_eq!(sha256(&raw), info.manifest_digest.to_string(), "tag {tag}");
    }
    let reg = Registry::start(Auth::None, None);
    run(stowage()
        .args([
            "copy",
            "--all",
            "--additional-tag",
            "extra",
            "--dest-tls-verify=false",
        ])
        .arg(info.oci_ref())
        .arg(format!("docker://{}/tagged:1", reg.addr)));
    let raw = skopeo_raw(&format!("docker://{}/tagged:extra", reg.addr));
    assert_eq!(sha256(&raw), info.manifest_digest.to_string());
    let store = PodmanStore::new();
    run(stowage()
        .args(["copy", "--additional-tag", "localhost/other:2"])
        .arg(info.oci_ref())
        .arg(store.reference("localhost/multi:1")));
    let images = store.podman_json(["images", "--format", "json"]);
    let mut names: Vec<String> = images[0]["Names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["localhost/multi:1", "localhost/other:2"]);
    // Not a tag: a clear error before anything is written.
    let bad = tmp.path().join("bad");
    let out = run_failing(
        stowage()
            .args(["copy", "--additional-tag", "no/slashes"])
            .arg(info.oci_ref())
            .arg(oci_ref(&bad, "t")),
    );
    assert!(
        stderr(&out).contains("--additional-tag"),
        "{}",
        stderr(&out)
    );
}
