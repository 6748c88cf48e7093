//! `stowage image cmd build` against `podman build`: the same Containerfile and context built by
//! both (podman with `--layers=false`, both with the same `--timestamp`) must give the same
//! config fields, the same history (the content hashes of COPY/ADD aside) and the same entries
//! in the new layer (path, type, mode, owner, mtime, size, link target, content); podman must
//! read, mount (and, where this machine can run containers, run) what stowage built; RUN is
//! refused with a message that says why.
//!
//! Needs root (podman's overlay stores), podman and skopeo; skipped with a `SKIP:` line
//! otherwise (a failure under `CI=true`).

mod common;

use std::io::Read;
use std::path::Path;

use common::*;
use serde_json::Value;
use stowage_fixtures::tree::RenderOptions;

const TIMESTAMP: &str = "1700000000";

fn usable(test: &str) -> bool {
    if !is_root() {
        skip(test, "podman's overlay stores need root here");
        return false;
    }
    require(test, &["podman", "skopeo"])
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A gzip tar archive at `path` with a directory, two files (one with owner 42:43) and a symlink.
fn write_archive(path: &Path) {
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_size(0);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "pkg/", std::io::empty()).unwrap();
    for (name, body, uid, mode) in [
        ("pkg/readme", "from the archive\n", 0u64, 0o644u32),
        ("pkg/owned", "owned by 42\n", 42, 0o600),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid + 1);
        h.set_mtime(1_600_000_000);
        h.set_size(body.len() as u64);
        b.append_data(&mut h, name, body.as_bytes()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(1_600_000_000);
    b.append_link(&mut h, "pkg/link", "readme").unwrap();
    b.into_inner().unwrap().finish().unwrap();
}

/// The base both builds start from: `bin -> usr/bin`, `/etc/passwd` with user `app`, made
/// by podman from scratch.
fn base_context(dir: &Path) {
    write(&dir.join("root/usr/bin/true-ish"), "#!/bin/sh\n");
    std::os::unix::fs::symlink("usr/bin", dir.join("root/bin")).unwrap();
    write(
        &dir.join("root/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1235:app:/home/app:/bin/sh\n",
    );
    write(
        &dir.join("root/etc/group"),
        "root:x:0:\napp:x:1235:\nstaff:x:50:\n",
    );
    write(
        &dir.join("Containerfile"),
        "FROM scratch\nCOPY root/ /\nENV BASE=1 PATH=/usr/bin:/bin\nLABEL base=yes\nCMD [\"/bin/base\"]\n",
    );
}

/// The build context of the main test.
fn app_context(dir: &Path) {
    write(&dir.join("app/main.conf"), "main\n");
    write(&dir.join("app/sub/deep.txt"), "deep\n");
    set_mode(&dir.join("app/sub/deep.txt"), 0o640);
    std::os::unix::fs::symlink("main.conf", dir.join("app/link.conf")).unwrap();
    write(&dir.join("app/debug.log"), "ignored\n");
    write(&dir.join("tool"), "#!/bin/sh\necho tool\n");
    set_mode(&dir.join("tool"), 0o755);
    write(&dir.join("notes-a.txt"), "a\n");
    write(&dir.join("notes-b.txt"), "b\n");
    write(&dir.join(".containerignore"), "app/*.log\n");
    write_archive(&dir.join("pkg.tar.gz"));
    write(
        &dir.join("Containerfile"),
        r#"# escape=\
ARG BASE=localhost/base
FROM ${BASE}:latest AS final
ARG VERSION=0.1
ARG CHANNEL
ENV APP_VERSION=$VERSION \
    GREETING="hello world" CH=${CHANNEL:-stable}
LABEL org.example.version=$VERSION "with space"="a b"
WORKDIR /srv/app
COPY app ./
COPY --chown=app:app tool /bin/
COPY --chmod=0600 notes-*.txt /notes/
ADD pkg.tar.gz /opt/
USER app
WORKDIR data
EXPOSE 8080 53/udp
VOLUME ["/var/cache/app", "/srv/app/data"]
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/tool"]
CMD serve \
    --port 8080
"#,
    );
}

/// Each entry of the last layer of `name` in `store` (exported with skopeo): path, type,
/// mode, owner, mtime, size, link target and content hash, one line each.
fn last_layer_entries(store: &PodmanStore, name: &str) -> Vec<String> {
    let tmp = tempdir();
    let layout = tmp.path().join("oci");
    run(skopeo()
        .args(["copy", "-q"])
        .arg(store.reference(name))
        .arg(format!("oci:{}:x", layout.display())));
    let manifest_digest = layout_manifest_digest(&layout, "x");
    let manifest: Value = serde_json::from_slice(&layout_blob(&layout, &manifest_digest)).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let last = layers.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = layout_blob(&layout, &last);
    let tar_bytes = if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        blob
    };
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let h = e.header().clone();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        out.push(format!(
            "{} {:?} {:o} {}:{} mtime={} size={} link={link} {}",
            path.trim_end_matches('/'),
            h.entry_type(),
            h.mode().unwrap() & 0o7777,
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            h.size().unwrap(),
            if body.is_empty() {
                String::new()
            } else {
                sha256(&body)
            },
        ));
    }
    out.sort();
    out
}

/// History entries with the content summary of COPY/ADD (`file:HEX`, `dir:HEX`, `multi:HEX`,
/// a digest of each tool's own) cut to its kind.
fn history(inspect: &Value) -> Vec<Value> {
    inspect["History"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let mut h = h.clone();
            if let Some(c) = h["created_by"].as_str() {
                let cut: Vec<String> = c
                    .split(' ')
                    .map(|w| match w.split_once(':') {
                        Some((k @ ("file" | "dir" | "multi"), hex)) if hex.len() == 64 => {
                            k.to_string()
                        }
                        _ => w.to_string(),
                    })
                    .collect();
                h["created_by"] = Value::String(cut.join(" "));
            }
            h.as_object_mut().unwrap().remove("comment");
            h
        })
        .collect()
}

fn stowage_build(store: &PodmanStore, args: &[&str], context: &Path) -> std::process::Output {
    let mut c = image_cmd(store, &["cmd", "build"]);
    c.args(args).arg(context);
    output(c)
}

fn podman_build(store: &PodmanStore, args: &[&str], context: &Path) {
    run(store
        .podman(["build", "-q", "--layers=false"])
        .args(args)
        .arg(context));
}

#[test]
fn build_matches_podman_build() {
    let test = "build_matches_podman_build";
    if !usable(test) {
        return;
    }
    let work = tempdir();
    let base_dir = work.path().join("base");
    base_context(&base_dir);
    let ctx = work.path().join("ctx");
    app_context(&ctx);

    // The base, built by podman into its store and copied into stowage's by skopeo.
    let theirs = PodmanStore::new();
    let ours = PodmanStore::new();
    podman_build(
        &theirs,
        &["--timestamp", TIMESTAMP, "-t", "localhost/base"],
        &base_dir,
    );
    run(skopeo()
        .args(["copy", "-q"])
        .arg(theirs.reference("localhost/base:latest"))
        .arg(ours.reference("localhost/base:latest")));

    let args = [
        "--timestamp",
        TIMESTAMP,
        "-t",
        "app:1",
        "--tag",
        "localhost/app:latest",
        "--build-arg",
        "VERSION=2.5",
        "--label",
        "extra=from-cli",
    ];
    let out = stowage_build(&ours, &args, &ctx);
    assert!(
        out.status.success(),
        "stowage build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    podman_build(&theirs, &args, &ctx);

    let a = ours.image_inspect("localhost/app:1");
    let b = theirs.image_inspect("localhost/app:1");
    assert_eq!(
        a["Id"],
        Value::String(id.clone()),
        "stowage prints the image ID"
    );
    assert_eq!(
        ours.image_inspect("localhost/app:latest")["Id"],
        a["Id"],
        "both -t names"
    );
    for k in [
        "Env",
        "WorkingDir",
        "User",
        "Entrypoint",
        "Cmd",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        assert_eq!(a["Config"][k], b["Config"][k], "Config.{k}");
    }
    // buildah stamps its version; the base (built by podman) hands it down to stowage's too.
    let labels = |v: &Value| {
        let mut l = v["Config"]["Labels"].clone();
        l.as_object_mut().unwrap().remove("io.buildah.version");
        l
    };
    assert_eq!(labels(&a), labels(&b), "Config.Labels");
    for k in ["Created", "Architecture", "Os"] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert_eq!(history(&a), history(&b), "History");
    let (la, lb) = (
        a["RootFS"]["Layers"].as_array().unwrap(),
        b["RootFS"]["Layers"].as_array().unwrap(),
    );
    assert_eq!(la.len(), lb.len(), "one new layer on the base's");
    assert_eq!(la[..la.len() - 1], lb[..lb.len() - 1], "the base's layers");
    assert_eq!(
        last_layer_entries(&ours, "localhost/app:1"),
        last_layer_entries(&theirs, "localhost/app:1"),
        "the new layer's entries"
    );
    assert_eq!(
        mounted_tree(&ours, "localhost/app:1", RenderOptions::default()),
        mounted_tree(&theirs, "localhost/app:1", RenderOptions::default()),
        "podman image mount of both images"
    );

    // The same build again gives the same image (deterministic layer and config).
    let again = stowage_build(&ours, &args, &ctx);
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout).unwrap().trim(), id);
}

#[test]
fn scratch_image_runs_under_podman() {
    let test = "scratch_image_runs_under_podman";
    if !usable(test) {
        return;
    }
    let Some(busybox) = which("busybox") else {
        skip(test, "busybox not installed (busybox-static)");
        return;
    };
    let work = tempdir();
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(&busybox, ctx.join("busybox")).unwrap();
    write(&ctx.join("hello.txt"), "hello from stowage\n");
    write(
        &ctx.join("Containerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY hello.txt /data/\nENV WHO=stowage\nWORKDIR /data\nENTRYPOINT [\"/bin/busybox\"]\nCMD [\"sh\", \"-c\", \"cat hello.txt; echo $WHO; pwd\"]\n",
    );
    let ours = PodmanStore::new();
    let theirs = PodmanStore::new();
    let out = stowage_build(&ours, &["-t", "hello", "--timestamp", TIMESTAMP], &ctx);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    podman_build(&theirs, &["-t", "hello", "--timestamp", TIMESTAMP], &ctx);
    assert_eq!(
        last_layer_entries(&ours, "localhost/hello:latest"),
        last_layer_entries(&theirs, "localhost/hello:latest"),
    );
    let a = ours.image_inspect("localhost/hello");
    let b = theirs.image_inspect("localhost/hello");
    assert_eq!(a["Config"]["Env"], b["Config"]["Env"]);
    assert_eq!(history(&a), history(&b));

    // Run it, where this machine can run containers (crun needs cgroups it can use).
    let run_out = output(ours.podman(["run", "--rm", "--net=none", "localhost/hello"]));
    if run_out.status.success() {
        assert_eq!(
            String::from_utf8_lossy(&run_out.stdout),
            "hello from stowage\nstowage\n/data\n"
        );
    } else {
        let err = String::from_utf8_lossy(&run_out.stderr);
        assert!(
            err.contains("OCI runtime") || err.contains("crun") || err.contains("runc"),
            "podman run failed for another reason than the runtime: {err}"
        );
        eprintln!(
            "NOTE: {test}: podman cannot run containers on this machine ({}); the image was compared through its layer and mount instead",
            err.trim()
        );
    }
}

#[test]
fn run_is_refused_and_nothing_is_stored() {
    let test = "run_is_refused_and_nothing_is_stored";
    if !usable(test) {
        return;
    }
    let work = tempdir();
    let ctx = work.path().join("ctx");
    write(&ctx.join("f"), "x\n");
    write(
        &ctx.join("Containerfile"),
        "FROM scratch\nCOPY f /f\nRUN echo hi > /g\n",
    );
    let store = PodmanStore::new();
    let out = stowage_build(&store, &["-t", "refused"], &ctx);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Containerfile:3: RUN") && err.contains("RUN needs a container runtime"),
        "{err}"
    );
    let images = store.podman_json(["images", "--format", "json"]);
    assert_eq!(
        images,
        serde_json::json!([]),
        "no image after a refused build"
    );

    // A missing source names it and the context.
    write(&ctx.join("Containerfile"), "FROM scratch\nCOPY nope /x\n");
    let out = stowage_build(&store, &[], &ctx);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Containerfile:2: COPY")
            && err.contains("\"nope\" does not exist in the build context"),
        "{err}"
    );
    // --pull=never with a missing base says how to get it.
    write(&ctx.join("Containerfile"), "FROM localhost/absent\n");
    let out = stowage_build(&store, &["--pull=never"], &ctx);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("image cmd pull localhost/absent"), "{err}");
}
