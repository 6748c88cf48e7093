//! `image cmd list` / `image cmd inspect` / `inspect` formats, filters and sorting against
//! podman and skopeo on the same store: the same rows in the same order, the same template
//! output, the same exit codes.

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{LayerCompression, LayerSpec};

/// A one-layer image created at `created` with the labels `labels`, in the layout `dir`.
fn image(dir: &Path, tag: &str, created: &str, file: &str, labels: &[(&str, &str)]) -> Built {
    let mut spec = LayerSpec::new(tag);
    spec.file(file, format!("{tag}\n").into_bytes());
    let mut b = ImageBuilder::new()
        .created(created)
        .platform("amd64", None)
        .runtime_config(json!({"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]}));
    for (k, v) in labels {
        b = b.label(k, v);
    }
    let b = b.layer_with_history(
        &spec,
        LayerCompression::GzipLevel(1),
        History::new(tag).at(created),
    );
    write_layout(dir, tag, b)
}

/// A store with five images of different ages, sizes, labels and names, several names on
/// one of them, stored by skopeo and tagged by podman.
fn populated_store(test: &str) -> Option<(PodmanStore, tempfile::TempDir)> {
    if !is_root() {
        skip(test, "writing containers-storage needs root here");
        return None;
    }
    if !require(test, &["podman", "skopeo"]) {
        return None;
    }
    let store = PodmanStore::new();
    let dir = tempdir();
    let layout = dir.path().join("oci");
    let images = [
        (
            "alpha",
            "2024-03-01T10:00:00Z",
            "a",
            vec![("tier", "web"), ("team", "x")],
        ),
        ("beta", "2025-06-01T10:00:00Z", "bb/b", vec![("tier", "db")]),
        ("gamma", "2023-01-01T10:00:00Z", "ccc/cc/c", vec![]),
        ("delta", "2025-06-01T10:00:00Z", "d", vec![("tier", "web")]),
        ("eps", "2022-12-31T23:59:59.5Z", "e/e", vec![("team", "y")]),
    ];
    for (tag, created, file, labels) in &images {
        let b = image(&layout, tag, created, file, labels);
        store.skopeo_copy(&[], &b.reference, &format!("localhost/{tag}:1"));
    }
    run(store.podman([
        "tag",
        "localhost/alpha:1",
        "quay.io/example/alpha:latest",
        "example.com/team/web:2",
    ]));
    run(store.podman(["tag", "localhost/beta:1", "localhost/beta:2"]));
    Some((store, dir))
}

/// `stowage image … ARGS` on `store` as bootc's storage, without the harness's `--quiet`
/// (`-q` is the IDs-only listing here, as for podman).
fn loud_image_cmd(store: &PodmanStore, args: &[&str]) -> std::process::Command {
    let mut c = stowage_progress();
    c.arg("image")
        .arg("--storage-root")
        .arg(&store.root)
        .arg("--runroot")
        .arg(&store.runroot)
        .args(args);
    c
}

/// stdout and the exit code.
fn outcome(mut c: std::process::Command) -> (String, i32) {
    c.env("TZ", "UTC");
    let out = output(&mut c);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn list_filters_sorts_and_formats_like_podman_images() {
    let test = "list_filters_sorts_and_formats_like_podman_images";
    let Some((store, dir)) = populated_store(test) else {
        return;
    };
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--digests"],
        vec!["--no-trunc"],
        vec!["--noheading"],
        vec!["-q"],
        vec!["-q", "--filter", "label=tier=web"],
        vec!["--sort", "id"],
        vec!["--sort", "repository"],
        vec!["--sort", "size"],
        vec!["--sort", "tag"],
        vec!["--sort", "created"],
        vec!["--format", "{{.ID}}"],
        vec!["--format", "{{.Repository}}:{{.Tag}}"],
        vec!["--format", "{{.ID}}\\t{{.Repository}}"],
        vec!["--format", "{{.Digest}} {{.Size}} {{.VirtualSize}} {{.CreatedAt}} {{.Created}}"],
        vec!["--format", "{{.Names}} {{.Labels}} {{.History}} {{.Dangling}} {{.RepoTags}} {{.RepoDigests}}"],
        vec!["--format", "table {{.ID}}\\t{{.Repository}}"],
        vec!["--format", "table {{.Repository}} {{.Tag}} {{.Digest}} {{.ParentId}} {{.SharedSize}} {{.ReadOnly}} {{.Containers}}"],
        vec!["--format", "{{range .Names}}<{{.}}>{{end}} {{if .Labels}}labelled{{else}}bare{{end}}"],
        vec!["--format", "{{index .Labels \"tier\"}}|{{.Labels.team}}|{{json .Labels}}|{{printf \"%-8s|%d\" .Tag .VirtualSize}}"],
        vec!["--filter", "reference=alpha"],
        vec!["--filter", "reference=localhost/b*"],
        vec!["--filter", "reference=*/web:2"],
        vec!["--filter", "reference=web"],
        vec!["--filter", "reference=beta:2", "--filter", "reference=gamma"],
        vec!["--filter", "label=tier"],
        vec!["--filter", "label=tier=web", "--filter", "label=team=y"],
        vec!["--filter", "label=tier=web", "--filter", "reference=delta"],
        vec!["--filter", "dangling=false", "--sort", "size"],
        vec!["--filter", "dangling=true"],
        vec!["--filter", "before=localhost/alpha:1"],
        vec!["--filter", "since=localhost/alpha:1", "--sort", "tag"],
        vec!["--format", "{{.Foo}}"],
        vec!["--filter", "nosuch=1"],
        vec!["--filter", "before=localhost/nosuch:1"],
        vec!["--filter", "dangling=maybe"],
    ];
    // `stowage images` on the same store (as the default one, with a storage.conf of no
    // additional stores) takes the same flags and prints the same.
    let conf = dir.path().join("storage.conf");
    std::fs::write(&conf, "[storage]\ndriver = \"overlay\"\nrunroot = \"/run/containers/storage\"\ngraphroot = \"/var/lib/containers/storage\"\n").unwrap();
    for args in &cases {
        let mut ours = loud_image_cmd(&store, &["cmd", "list"]);
        ours.args(args);
        let mut theirs = store.podman(["images"]);
        theirs.args(args);
        let theirs = outcome(theirs);
        assert_eq!(
            outcome(ours),
            theirs,
            "stowage image cmd list {args:?} (left) vs podman images"
        );
        let mut images = stowage_progress();
        images
            .arg("images")
            .arg("--storage-root")
            .arg(&store.root)
            .arg("--runroot")
            .arg(&store.runroot)
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", &conf);
        assert_eq!(
            outcome(images),
            theirs,
            "stowage images {args:?} (left) vs podman images"
        );
    }
    // JSON: the same images in the same order under --filter/--sort.
    for args in [
        vec!["--sort", "size"],
        vec!["--filter", "label=tier=web", "--sort", "repository"],
    ] {
        let mut ours = image_cmd(&store, &["cmd", "list", "--format", "json"]);
        ours.args(&args);
        let mut theirs = store.podman(["images", "--format", "json"]);
        theirs.args(&args);
        let ids = |c| -> Vec<serde_json::Value> {
            let v: serde_json::Value = serde_json::from_str(&outcome(c).0).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|i| json!([i["Id"], i["Names"]]))
                .collect()
        };
        assert_eq!(ids(ours), ids(theirs), "{args:?}");
    }
}

#[test]
fn inspect_formats_like_podman_image_inspect() {
    let test = "inspect_formats_like_podman_image_inspect";
    let Some((store, _dir)) = populated_store(test) else {
        return;
    };
    let formats = [
        "{{.Id}}",
        "{{ .Id }} {{.ID}}",
        "{{.Digest}}",
        "{{.RepoTags}}",
        "{{.Config.Labels}}",
        "{{index .Config.Labels \"tier\"}}|{{index .Config.Labels \"nope\"}}|{{.Config.Labels.nope}}",
        "{{json .Config}}",
        "{{.Architecture}}/{{.Os}} {{.Size}} {{.VirtualSize}}",
        "{{.Created}} {{.History}}",
        "{{.Config}}",
        "{{.RootFS.Layers}} {{.GraphDriver.Name}} {{.Annotations}} {{.HealthCheck}}",
        "{{range .RepoDigests}}{{.}};{{end}} {{len .RepoTags}}",
        "{{.Foo}}",
        "{{.Config.Foo}}",
    ];
    for f in formats {
        let ours = image_cmd(
            &store,
            &[
                "cmd",
                "inspect",
                "--format",
                f,
                "localhost/alpha:1",
                "localhost/gamma:1",
            ],
        );
        let theirs = store.podman([
            "image",
            "inspect",
            "--format",
            f,
            "localhost/alpha:1",
            "localhost/gamma:1",
        ]);
        assert_eq!(
            outcome(ours),
            outcome(theirs),
            "image cmd inspect --format {f:?} (left) vs podman"
        );
    }
}

#[test]
fn inspect_formats_like_skopeo_inspect() {
    let test = "inspect_formats_like_skopeo_inspect";
    if !require(test, &["skopeo"]) {
        return;
    }
    let dir = tempdir();
    let b = image(
        &dir.path().join("oci"),
        "alpha",
        "2024-03-01T10:00:00Z",
        "a",
        &[("tier", "web")],
    );
    for f in [
        "{{.Digest}}",
        "{{.Name}}|{{.RepoTags}}",
        "{{.Labels}}",
        "{{index .Labels \"tier\"}}",
        "{{.Created}} {{.Architecture}} {{.Os}} {{.DockerVersion}}",
        "{{.Layers}} {{.Env}}",
        "{{range .Layers}}{{.}}\n{{end}}",
        "{{.Foo}}",
    ] {
        let mut ours = stowage();
        ours.args(["inspect", "--format", f, &b.reference]);
        let mut theirs = skopeo();
        theirs.args(["inspect", "--format", f, &b.reference]);
        assert_eq!(
            outcome(ours),
            outcome(theirs),
            "inspect --format {f:?} (left) vs skopeo"
        );
    }
    // `{{json .}}` is the whole output, as skopeo prints it.
    let mut ours = stowage();
    ours.args(["inspect", "--format", "{{json .}}", &b.reference]);
    let v: serde_json::Value = serde_json::from_str(&outcome(ours).0).unwrap();
    let s = skopeo_inspect(&b.reference);
    for k in INSPECT_KEYS {
        assert_eq!(v[k], s[k], "{k}");
    }
}

#[test]
fn missing_stores_are_errors_not_empty_lists() {
    let dir = tempdir();
    let missing = PodmanStore::new();
    for args in [
        vec!["cmd", "list"],
        vec!["cmd", "list", "--format", "json"],
        vec!["cmd", "inspect", "localhost/x"],
        vec!["cmd", "exists", "localhost/x"],
    ] {
        let out = output(image_cmd(&missing, &args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            err.contains(&missing.root.display().to_string()) && err.contains("--storage-root"),
            "{args:?}: {err}"
        );
        assert!(!missing.root.exists(), "{args:?} created the store");
    }
    let name = format!(
        "containers-storage:[overlay@{}+{}]localhost/x",
        dir.path().join("nope").display(),
        dir.path().join("run").display()
    );
    let out = run_failing(stowage().args(["inspect", &name]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope") && err.contains("not found"), "{err}");
    assert!(!dir.path().join("nope").exists());
}

/// `--filter intermediate=`, `readonly=` and `until=` (and `id=`, `digest=`) over a default
/// store with an intermediate image (an untagged base a built image sits on) and a read-only
/// additional image store, through `stowage images` and `image cmd list`: the same rows and
/// exit codes as `podman images` with the same storage.conf.
#[test]
fn intermediate_readonly_and_until_filters_like_podman() {
    let test = "intermediate_readonly_and_until_filters_like_podman";
    if !is_root() {
        skip(test, "writing containers-storage needs root here");
        return;
    }
    if !require(test, &["podman", "skopeo"]) {
        return;
    }
    let main = PodmanStore::new();
    let extra = PodmanStore::new();
    let dir = tempdir();
    let layout = dir.path().join("oci");
    main.skopeo_copy(&[], &fixture("basic").oci_ref(), "localhost/base:1");
    main.skopeo_copy(&[], &fixture("links").oci_ref(), "localhost/links:1");
    for (tag, created) in [
        ("old", "2022-06-01T00:00:00Z"),
        ("new", "2025-06-01T10:00:00Z"),
    ] {
        let b = image(&layout, tag, created, tag, &[]);
        main.skopeo_copy(&[], &b.reference, &format!("localhost/{tag}:1"));
    }
    let b = image(&layout, "ro", "2023-05-05T05:05:05Z", "r/o", &[]);
    extra.skopeo_copy(&[], &b.reference, "localhost/ro:1");
    // A child of base (one more layer), then base untagged: base is intermediate.
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hi"), "hi\n").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM localhost/base:1\nCOPY hi /hi\n",
    )
    .unwrap();
    let child = String::from_utf8(
        run(image_cmd(
            &main,
            &["cmd", "build", "-t", "child:1", "--timestamp", "1700000000"],
        )
        .arg(&ctx))
        .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    run(main.podman(["untag", "localhost/base:1"]));

    let conf = dir.path().join("storage.conf");
    std::fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n[storage.options]\nadditionalimagestores = [\"{}\"]\n",
            main.root.display(),
            main.runroot.display(),
            extra.root.display()
        ),
    )
    .unwrap();
    let links_digest = fixture("links").manifest_digest.to_string();
    let id_full = format!("id={child}");
    let id_prefix = format!("id={}", &child[..12]);
    let digest = format!("digest={links_digest}");
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["-a"],
        vec!["-a", "--filter", "intermediate=true"],
        vec!["-a", "--filter", "intermediate=false"],
        vec!["--filter", "intermediate=false"],
        vec!["--filter", "intermediate=true"],
        vec!["--filter", "intermediate=maybe"],
        vec!["-a", "--filter", "readonly=true"],
        vec!["--filter", "readonly=false"],
        vec!["--filter", "readonly=maybe"],
        vec![
            "-a",
            "--filter",
            "readonly=false",
            "--filter",
            "dangling=false",
        ],
        vec!["--filter", "until=2024-01-01"],
        vec!["--filter", "until=2024-01-02T03:04:05Z"],
        vec!["--filter", "until=2024-01-02T03:04:06Z"],
        vec!["--filter", "until=2024-01-02T04:04:06+01:00"],
        vec!["--filter", "until=1704164645"],
        vec!["--filter", "until=1704164646"],
        vec!["--filter", "until=2023-05-05T05:05:06"],
        vec!["-a", "--filter", "until=10h"],
        vec!["--filter", "until=87600h"],
        vec!["--filter", "until=soon"],
        vec!["--filter", "until=2025-01-01", "--filter", "readonly=false"],
        vec!["-a", "--filter", &id_full],
        vec!["-a", "--filter", &id_prefix],
        vec![
            "-a",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ReadOnly}} {{.Dangling}}",
        ],
    ];
    // digest= is stowage's own (podman 4.3 says `unsupported image filter "digest"`).
    let mut ours = stowage_progress();
    ours.args([
        "images",
        "--filter",
        &digest,
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])
    .env("CONTAINERS_STORAGE_CONF", &conf);
    assert_eq!(outcome(ours), ("localhost/links:1\n".to_string(), 0));
    for args in &cases {
        let mut theirs = cmd("podman", ["images"]);
        theirs.args(args).env("CONTAINERS_STORAGE_CONF", &conf);
        let theirs = outcome(theirs);
        let mut ours = stowage_progress();
        ours.arg("images")
            .args(args)
            .env("CONTAINERS_STORAGE_CONF", &conf);
        assert_eq!(
            outcome(ours),
            theirs,
            "stowage images {args:?} (left) vs podman"
        );
        // The default store alone: image cmd list vs podman with only --root.
        let mut ours = loud_image_cmd(&main, &["cmd", "list"]);
        ours.args(args);
        let mut theirs = main.podman(["images"]);
        theirs.args(args);
        assert_eq!(
            outcome(ours),
            outcome(theirs),
            "image cmd list {args:?} (left) vs podman"
        );
    }
}
