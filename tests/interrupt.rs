//! Interrupted and failed copies (issue 10), checked with the real tools.
//!
//! 1. SIGINT / SIGTERM while a layer trickles in from a registry (the fault proxy slows it):
//!    stowage exits 130 / 143 with one line saying it was interrupted and what was kept, and
//!    leaves no temporary file; the destination is still read by skopeo and umoci (OCI), by
//!    podman (containers-storage; an image committed before is still there) and passes
//!    `ostree fsck` with no staging directory left (ostree).
//! 2. SIGKILL mid-copy leaves a temporary blob; the next copy into the layout removes it and
//!    succeeds.
//! 3. A blob corrupted on its first download is fetched again and the pull verifies; one
//!    corrupted on every download fails naming the blob, the registry and both digests,
//!    with the destination unchanged.
//! 4. A copy whose source tag does not exist leaves no new destination behind.
//! 5. `image cmd pull` into bootc's store stops on SIGINT the same way (exit 130, one line).
//!
//! Every wait is on observable state (the proxy has seen the slow layer's request, a
//! temporary file exists), never on a fixed sleep.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Slow the second layer down to ~1 KiB per 100 ms (about 10 s for the whole layer).
fn slow_second_layer(proxy: &FaultProxy, img: &Built) {
    proxy.add(
        &img.layers[1],
        Fault::Trickle {
            chunk: 1024,
            delay_ms: 100,
        },
        1,
    );
}

/// `BASE copy --src-tls-verify=false [EXTRA...] docker://PROXY/f/app:v1 DEST`.
fn copy_from_proxy(mut base: Command, proxy: &FaultProxy, extra: &[&str], dest: &str) -> Command {
    base.args(["copy", "--src-tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{}/f/app:v1", proxy.addr()))
        .arg(dest);
    base
}

/// `stowage copy --jobs=1 docker://PROXY/f/app:v1 DEST`, spawned with stderr captured.
fn spawn_copy(proxy: &FaultProxy, dest: &str) -> Child {
    copy_from_proxy(stowage(), proxy, &["--jobs=1"], dest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait (polling, bounded by a generous safety limit that only turns a hang into a failure)
/// until `cond` holds.
fn wait_until(what: &str, child: &mut Child, mut cond: impl FnMut() -> bool) {
    let limit = Instant::now() + Duration::from_secs(120);
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("stowage ended ({status}) before {what}");
        }
        assert!(Instant::now() < limit, "never saw {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the proxy has started sending the slow second layer.
fn wait_for_second_layer(proxy: &FaultProxy, img: &Built, child: &mut Child) {
    wait_until("the request for the second layer", child, || {
        !proxy.requests(&img.layers[1]).is_empty()
    });
}

/// Start copying `f/app:v1` (second layer slowed down) into tag `t` of the layout `dest`, and
/// wait until the slow layer is being written to a temporary file there.
fn copy_stuck_on_a_temporary(proxy: &FaultProxy, img: &Built, dest: &Path) -> Child {
    slow_second_layer(proxy, img);
    let mut child = spawn_copy(proxy, &oci_ref(dest, "t"));
    wait_for_second_layer(proxy, img, &mut child);
    wait_until("a temporary blob", &mut child, || {
        !temporaries(dest).is_empty()
    });
    child
}

/// No layer of the containers-storage store at `root` is flagged incomplete (a store without
/// `layers.json` has none).
fn assert_no_incomplete_layer(root: &Path) {
    let Ok(bytes) = std::fs::read(root.join("overlay-layers/layers.json")) else {
        return;
    };
    let layers: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for l in layers.as_array().unwrap() {
        assert!(
            l.pointer("/flags/incomplete").is_none(),
            "incomplete layer left: {l}"
        );
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

/// Wait for the child; returns its exit code and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Files named `.tmp-*` directly in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(".tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// The stderr of an interrupted copy is exactly one line, saying so.
fn assert_one_interrupted_line(err: &str, signal_name: &str) -> String {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(
        lines[0].contains(&format!("interrupted ({signal_name})")),
        "{err}"
    );
    lines[0].to_string()
}

/// skopeo inspects each of `tags` in the layout at `dest`, and umoci lists exactly them.
fn oci_readable(dest: &Path, tags: &[&str]) {
    for t in tags {
        run(skopeo().arg("inspect").arg(oci_ref(dest, t)));
    }
    if oracle("umoci", "interrupt: umoci ls") {
        let out = run(cmd("umoci", ["ls", "--layout"]).arg(dest));
        let mut listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        listed.sort();
        assert_eq!(listed, tags);
    }
}

#[test]
fn sigint_during_a_copy_into_an_oci_layout() {
    let test = "sigint_during_a_copy_into_an_oci_layout";
    if !registry_tools(test) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    let dest = layout_with_other_image(tmp.path());
    let index_before = std::fs::read(dest.join("index.json")).unwrap();
    let blobs_before = layout_blobs(&dest);
    let child = copy_stuck_on_a_temporary(&proxy, &img, &dest);
    signal(&child, rustix::process::Signal::INT);
    let (code, err) = finish(child);
    assert_eq!(code, Some(130), "{err}");
    let line = assert_one_interrupted_line(&err, "SIGINT");
    eprintln!("{line}");
    assert!(line.contains("nothing of the image was kept"), "{line}");
    assert_eq!(temporaries(&dest), Vec::<String>::new(), "temporaries left");
    assert_eq!(
        std::fs::read(dest.join("index.json")).unwrap(),
        index_before
    );
    assert_eq!(layout_blobs(&dest), blobs_before);
    oci_readable(&dest, &["o"]);
}

#[test]
fn sigterm_during_a_copy_into_containers_storage() {
    let test = "sigterm_during_a_copy_into_containers_storage";
    if !registry_tools(test) || !require(test, &["podman"]) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    let store = PodmanStore::new();
    // An image committed before the interrupted copy.
    let other = tmp.path().join("other");
    one_file_image(&other, "o", "x", b"x");
    run(stowage()
        .arg("copy")
        .arg(oci_ref(&other, "o"))
        .arg(store.reference("localhost/before:1")));
    slow_second_layer(&proxy, &img);
    let mut child = spawn_copy(&proxy, &store.reference("localhost/app:v1"));
    wait_for_second_layer(&proxy, &img, &mut child);
    signal(&child, rustix::process::Signal::TERM);
    let (code, err) = finish(child);
    assert_eq!(code, Some(143), "{err}");
    let line = assert_one_interrupted_line(&err, "SIGTERM");
    assert!(
        line.contains("1 of 2 layer(s) committed before the stop are kept"),
        "{line}"
    );
    // No incomplete layer is left, and podman reads the store.
    assert!(store.root.join("overlay-layers/layers.json").exists());
    assert_no_incomplete_layer(&store.root);
    run(store.podman(["images"]));
    run(store.podman(["image", "exists", "localhost/before:1"]));
    let out = output(store.podman(["image", "exists", "localhost/app:v1"]));
    assert_eq!(
        out.status.code(),
        Some(1),
        "the interrupted image is absent"
    );
    // The kept layer is reused by the next copy, which completes.
    let out = run(copy_from_proxy(
        stowage_progress(),
        &proxy,
        &[],
        &store.reference("localhost/app:v1"),
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reused 1"), "{err}");
    run(store.podman(["image", "exists", "localhost/app:v1"]));
}

#[test]
fn sigint_during_a_copy_into_ostree() {
    let test = "sigint_during_a_copy_into_ostree";
    if !registry_tools(test) || !require(test, &["ostree"]) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    let repo = tmp.path().join("repo");
    run(cmd("ostree", ["init", "--mode=bare-user"]).arg(format!("--repo={}", repo.display())));
    slow_second_layer(&proxy, &img);
    let mut child = spawn_copy(
        &proxy,
        &format!("ostree:[{}]localhost/app:v1", repo.display()),
    );
    wait_for_second_layer(&proxy, &img, &mut child);
    signal(&child, rustix::process::Signal::INT);
    let (code, err) = finish(child);
    assert_eq!(code, Some(130), "{err}");
    let line = assert_one_interrupted_line(&err, "SIGINT");
    assert!(
        line.contains("1 of 2 layer(s) committed before the stop are kept"),
        "{line}"
    );
    let staging: Vec<String> = std::fs::read_dir(repo.join("tmp"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("staging-"))
        .collect();
    assert_eq!(staging, Vec::<String>::new(), "staging directories left");
    run(cmd("ostree", ["fsck"]).arg(format!("--repo={}", repo.display())));
    let refs = run_stdout(cmd("ostree", ["refs"]).arg(format!("--repo={}", repo.display())));
    assert!(
        refs.lines()
            .any(|r| r.starts_with("ostree/container/blob/")),
        "the finished layer's ref is kept: {refs}"
    );
    assert!(
        !refs
            .lines()
            .any(|r| r.starts_with("ostree/container/image/")),
        "no image ref: {refs}"
    );
}

#[test]
fn sigkill_leaves_a_temporary_that_the_next_copy_removes() {
    let test = "sigkill_leaves_a_temporary_that_the_next_copy_removes";
    if !registry_tools(test) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    let dest = layout_with_other_image(tmp.path());
    let child = copy_stuck_on_a_temporary(&proxy, &img, &dest);
    signal(&child, rustix::process::Signal::KILL);
    let (code, _) = finish(child);
    assert_eq!(code, None, "killed by the signal");
    let left = temporaries(&dest);
    assert!(!left.is_empty(), "SIGKILL leaves the temporaries");
    run(copy_from_proxy(
        stowage(),
        &proxy,
        &[],
        &oci_ref(&dest, "t"),
    ));
    assert_eq!(
        temporaries(&dest),
        Vec::<String>::new(),
        "stale temporaries removed"
    );
    let inspect = skopeo_inspect(&oci_ref(&dest, "t"));
    assert_eq!(inspect["Layers"], serde_json::json!(img.layers));
    assert_blobs_intact(&dest);
    oci_readable(&dest, &["o", "t"]);
}

#[test]
fn a_live_writers_temporaries_are_not_removed() {
    // A second writer opening the layout while the first is mid-copy must not take the first
    // one's temporary file for stale: the first copy still completes.
    let test = "a_live_writers_temporaries_are_not_removed";
    if !registry_tools(test) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    let dest = layout_with_other_image(tmp.path());
    let child = copy_stuck_on_a_temporary(&proxy, &img, &dest);
    let live = temporaries(&dest);
    let other = tmp.path().join("other2");
    one_file_image(&other, "p", "y", b"y");
    run(stowage()
        .arg("copy")
        .arg(oci_ref(&other, "p"))
        .arg(oci_ref(&dest, "p")));
    for t in &live {
        assert!(
            dest.join(t).exists(),
            "{t}: a live writer's temporary was removed"
        );
    }
    let (code, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(temporaries(&dest), Vec::<String>::new());
    run(skopeo().arg("inspect").arg(oci_ref(&dest, "t")));
    run(skopeo().arg("inspect").arg(oci_ref(&dest, "p")));
}

#[test]
fn a_blob_corrupted_once_is_fetched_again() {
    let test = "a_blob_corrupted_once_is_fetched_again";
    if !registry_tools(test) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    proxy.add(&img.layers[1], Fault::Corrupt(1000), 1);
    let dest = tmp.path().join("dest");
    run(copy_from_proxy(
        stowage(),
        &proxy,
        &[],
        &oci_ref(&dest, "t"),
    ));
    assert_eq!(proxy.requests(&img.layers[1]).len(), 2, "fetched twice");
    assert_blobs_intact(&dest);
    assert_eq!(layout_diff_ids(&dest, "t"), img.diff_ids);
    assert_eq!(
        skopeo_inspect(&oci_ref(&dest, "t"))["Layers"],
        serde_json::json!(img.layers)
    );

    // Into containers-storage: the layer whose first stream was corrupt is extracted again,
    // and podman sees the image with the right layers.
    if oracle("podman", test) {
        let store = PodmanStore::new();
        proxy.add(&img.layers[0], Fault::Corrupt(5000), 1);
        run(copy_from_proxy(
            stowage(),
            &proxy,
            &["--jobs=2"],
            &store.reference("localhost/app:v1"),
        ));
        let inspect = store.image_inspect("localhost/app:v1");
        assert_eq!(inspect["RootFS"]["Layers"], serde_json::json!(img.diff_ids));
        run(skopeo()
            .arg("inspect")
            .arg(store.reference("localhost/app:v1")));
        let copied = tmp.path().join("copied");
        run(skopeo()
            .args(["copy", "-q"])
            .arg(store.reference("localhost/app:v1"))
            .arg(oci_ref(&copied, "c")));
        assert_eq!(layout_diff_ids(&copied, "c"), img.diff_ids);
    }
}

#[test]
fn a_blob_corrupted_every_time_fails_naming_it() {
    let test = "a_blob_corrupted_every_time_fails_naming_it";
    if !registry_tools(test) {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry();
    proxy.add(&img.layers[1], Fault::Corrupt(1000), 100);
    let dest = layout_with_other_image(tmp.path());
    let before = snapshot(&dest);
    let out = run_failing(copy_from_proxy(
        stowage(),
        &proxy,
        &[],
        &oci_ref(&dest, "t"),
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&img.layers[1])
            && err.contains("digest mismatch")
            && err.contains(&format!("fetched twice from registry {}", proxy.addr())),
        "{err}"
    );
    assert_eq!(
        proxy.requests(&img.layers[1]).len(),
        2,
        "fetched twice, no more"
    );
    assert_eq!(snapshot(&dest), before, "the destination is unchanged");
}

#[test]
fn a_missing_tag_leaves_no_new_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    one_file_image(&src, "a", "x", b"x");
    let new = tmp.path().join("new/dir");
    let out = run_failing(
        stowage()
            .arg("copy")
            .arg(oci_ref(&src, "nope"))
            .arg(oci_ref(&new, "x")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nope\"") && err.contains("not found"),
        "{err}"
    );
    assert!(
        !tmp.path().join("new").exists(),
        "the new destination was left"
    );
    let root = tmp.path().join("store/root");
    let runroot = tmp.path().join("store/run");
    run_failing(
        stowage()
            .arg("copy")
            .arg(oci_ref(&src, "nope"))
            .arg(format!(
                "containers-storage:[overlay@{}+{}]localhost/x:1",
                root.display(),
                runroot.display()
            )),
    );
    assert!(!tmp.path().join("store").exists(), "the new store was left");
    // A destination that existed stays.
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    run_failing(
        stowage()
            .arg("copy")
            .arg(oci_ref(&src, "nope"))
            .arg(oci_ref(&existing, "x")),
    );
    assert!(existing.exists());
}

#[test]
fn a_copy_that_fails_after_creating_the_layout_removes_it() {
    // The source resolves, but a layer is missing: the new layout is removed again.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let img = two_layer_image(&src, "a");
    std::fs::remove_file(blob_path(&src, &img.layers[1])).unwrap();
    let new = tmp.path().join("new");
    let out = run_failing(
        stowage()
            .arg("copy")
            .arg(oci_ref(&src, "a"))
            .arg(oci_ref(&new, "x")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&img.layers[1]), "{err}");
    assert!(!new.exists(), "the new destination was left");
}

/// `stowage image cmd pull` (bootc's store) stops on SIGINT like `copy`: exit 130, one line,
/// no incomplete layer, podman reads the store.
#[test]
fn sigint_during_image_cmd_pull() {
    let test = "sigint_during_image_cmd_pull";
    if !registry_tools(test) || !require(test, &["podman"]) {
        return;
    }
    let (_reg, proxy, _tmp, img) = faulty_registry();
    let store = PodmanStore::new();
    slow_second_layer(&proxy, &img);
    let mut child = stowage()
        .arg("image")
        .arg("--storage-root")
        .arg(&store.root)
        .arg("--runroot")
        .arg(&store.runroot)
        .args(["cmd", "pull", "--tls-verify=false"])
        .arg(format!("{}/f/app:v1", proxy.addr()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_second_layer(&proxy, &img, &mut child);
    signal(&child, rustix::process::Signal::INT);
    let (code, err) = finish(child);
    assert_eq!(code, Some(130), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("interrupted (SIGINT)"))
        .collect();
    assert_eq!(lines.len(), 1, "one interrupted line: {err}");
    assert_no_incomplete_layer(&store.root);
    if store.root.exists() {
        run(store.podman(["images"]));
    }
}
