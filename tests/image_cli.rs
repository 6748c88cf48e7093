//! `stowage image …` against the real podman, skopeo and ostree: what stowage does to bootc's
//! storage must be what podman sees, and the other way round.

mod common;

use common::*;
use serde_json::Value;
use stowage_fixtures::tree::{render, RenderOptions};

/// Whether this test can write containers-storage stores (root: chown, whiteout devices);
/// otherwise a `SKIP:` line (a failure under CI).
fn can_write_stores(test: &str) -> bool {
    if !is_root() {
        skip(
            test,
            "writing containers-storage needs root here (chown, whiteout devices)",
        );
        return false;
    }
    true
}

/// Add `--host-storage ROOT --host-runroot RUNROOT` naming `host` to an image command.
fn with_host_storage(c: &mut std::process::Command, host: &PodmanStore) {
    c.arg("--host-storage")
        .arg(&host.root)
        .arg("--host-runroot")
        .arg(&host.runroot);
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn fixture_ref(name: &str) -> String {
    fixture(name).oci_ref()
}

/// podman's and stowage's `images --format json` agree on what matters to scripts.
fn assert_lists_agree(bootc: &PodmanStore) {
    let ours = json(&run(image_cmd(bootc, &["cmd", "list", "--format", "json"])));
    assert_image_lists_agree(&ours, bootc);
}

#[test]
fn pull_list_inspect_tag_rm_like_podman() {
    let test = "pull_list_inspect_tag_rm_like_podman";
    if !can_write_stores(test) {
        return;
    }
    let bootc = PodmanStore::new();
    run(image_cmd(
        &bootc,
        &[
            "cmd",
            "pull",
            &fixture_ref("basic"),
            &fixture_ref("whiteouts"),
            &fixture_ref("names"),
        ],
    ));
    if !oracle("podman", test) {
        return;
    }
    assert_lists_agree(&bootc);
    for (name, fx) in [
        ("localhost/oci:basic", "basic"),
        ("localhost/oci:whiteouts", "whiteouts"),
    ] {
        let ours = json(&run(image_cmd(&bootc, &["cmd", "inspect", name])))[0].clone();
        let theirs = bootc.image_inspect(name);
        for k in [
            "Id",
            "Digest",
            "RepoTags",
            "RepoDigests",
            "Created",
            "Config",
            "Architecture",
            "Os",
            "Size",
            "RootFS",
            "Labels",
            "History",
        ] {
            assert_eq!(ours[k], theirs[k], "{name}: inspect key {k}");
        }
        let info = fixture(fx);
        assert_eq!(
            theirs["Id"],
            Value::String(info.config_digest.digest().to_string())
        );
        let diff_ids: Vec<String> = info.diff_ids().iter().map(|d| d.to_string()).collect();
        assert_eq!(theirs["RootFS"]["Layers"], serde_json::json!(diff_ids));
    }

    // exists: 0 / 1, like podman.
    assert_eq!(
        image_cmd(&bootc, &["cmd", "exists", "localhost/oci:basic"])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    assert_eq!(
        image_cmd(&bootc, &["cmd", "exists", "oci:basic"])
            .status()
            .unwrap()
            .code(),
        Some(0),
        "short name"
    );
    assert_eq!(
        image_cmd(&bootc, &["cmd", "exists", "nope"])
            .status()
            .unwrap()
            .code(),
        Some(1)
    );
    assert_eq!(
        bootc
            .podman(["image", "exists", "nope"])
            .status()
            .unwrap()
            .code(),
        Some(1)
    );

    // tag: podman sees the new name (short names go to localhost/, as podman tag does).
    run(image_cmd(
        &bootc,
        &[
            "cmd",
            "tag",
            "localhost/oci:basic",
            "extra:2",
            "quay.io/x/y:3",
        ],
    ));
    let names = bootc.image_inspect("localhost/oci:basic")["RepoTags"].clone();
    for n in ["localhost/oci:basic", "localhost/extra:2", "quay.io/x/y:3"] {
        assert!(
            names.as_array().unwrap().iter().any(|v| v == n),
            "{n} missing from {names}"
        );
    }
    assert_lists_agree(&bootc);
    // rm of one name only untags; podman agrees.
    let out = run(image_cmd(&bootc, &["cmd", "rm", "extra:2"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: localhost/extra:2"));
    run(image_cmd(
        &bootc,
        &["cmd", "untag", "localhost/oci:basic", "quay.io/x/y:3"],
    ));
    assert_eq!(
        bootc.image_inspect("localhost/oci:basic")["RepoTags"],
        serde_json::json!(["localhost/oci:basic"])
    );
    // rm of a missing image fails like podman (exit 1) and names it.
    let out = run_failing(image_cmd(&bootc, &["cmd", "rm", "nope"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    // rm everything: podman then sees an empty store with no layers left.
    run(image_cmd(
        &bootc,
        &[
            "cmd",
            "rm",
            "localhost/oci:basic",
            "localhost/oci:whiteouts",
            "localhost/oci:names",
        ],
    ));
    assert_eq!(
        json(&run(bootc.podman(["images", "--format", "json"]))),
        serde_json::json!([])
    );
    let layers = std::fs::read_to_string(bootc.root.join("overlay-layers/layers.json")).unwrap();
    assert_eq!(layers.trim(), "[]");
    assert_eq!(
        std::fs::read_dir(bootc.root.join("overlay/l"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn prune_removes_dangling_images_podman_made() {
    let test = "prune_removes_dangling_images_podman_made";
    if !can_write_stores(test) {
        return;
    }
    if !oracle("skopeo", test) || !oracle("podman", test) {
        return;
    }
    let bootc = PodmanStore::new();
    run(cmd("skopeo", ["copy", "-q"])
        .arg(fixture_ref("basic"))
        .arg(bootc.reference("localhost/a:1")));
    run(cmd("skopeo", ["copy", "-q"])
        .arg(fixture_ref("links"))
        .arg(bootc.reference("localhost/b:1")));
    run(bootc.podman(["untag", "localhost/a:1"]));
    let out = run(image_cmd(&bootc, &["cmd", "prune"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        fixture("basic").config_digest.digest()
    );
    let left = json(&run(bootc.podman(["images", "--format", "json"])));
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["Names"], serde_json::json!(["localhost/b:1"]));
}

#[test]
fn pull_from_default_storage_keeps_ids_and_tree() {
    let test = "pull_from_default_storage_keeps_ids_and_tree";
    if !can_write_stores(test) {
        return;
    }
    if !oracle("skopeo", test) || !oracle("podman", test) {
        return;
    }
    let host = PodmanStore::new();
    let bootc = PodmanStore::new();
    for (fx, name) in [
        ("links", "quay.io/ex/links:1"),
        ("whiteouts", "quay.io/ex/whiteouts:1"),
    ] {
        run(cmd("skopeo", ["copy", "-q"])
            .arg(fixture_ref(fx))
            .arg(host.reference(name)));
        let mut c = image_cmd(&bootc, &["pull-from-default-storage", name]);
        with_host_storage(&mut c, &host);
        run(c);
        let a = host.image_inspect(name);
        let b = bootc.image_inspect(name);
        for k in STORE_INSPECT_KEYS {
            assert_eq!(
                a[k], b[k],
                "{name}: {k} differs between the host store and bootc's"
            );
        }
        // The flattened tree podman mounts is the fixture's.
        let opts = RenderOptions {
            owners: true,
            mtimes: false,
            ..RenderOptions::default()
        };
        let have = mounted_tree(&bootc, name, opts);
        let want = render(&fixture(fx).tree, opts);
        assert_eq!(have, want, "{name}: podman image mount of bootc's copy");
        // And it exports bit for bit.
        let out = tempdir();
        run(stowage()
            .arg("copy")
            .arg(bootc.reference(name))
            .arg(oci_ref(out.path(), "x")));
        let config: Value = serde_json::from_slice(&stowage_inspect_raw(
            &["--config"],
            &oci_ref(out.path(), "x"),
        ))
        .unwrap();
        let want: Vec<String> = fixture(fx)
            .diff_ids()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(want));
    }
    // A second pull of the same image reuses everything and keeps working.
    let mut c = image_cmd(&bootc, &["pull-from-default-storage", "quay.io/ex/links:1"]);
    with_host_storage(&mut c, &host);
    run(c);
    assert_lists_agree(&bootc);
}

#[test]
fn copy_to_storage_defaults_to_localhost_bootc() {
    let test = "copy_to_storage_defaults_to_localhost_bootc";
    if !can_write_stores(test) {
        return;
    }
    if !oracle("podman", test) {
        return;
    }
    let host = PodmanStore::new();
    let bootc = PodmanStore::new();
    let mut c = image_cmd(
        &bootc,
        &["copy-to-storage", "--source", &fixture_ref("basic")],
    );
    with_host_storage(&mut c, &host);
    run(c);
    let img = host.image_inspect("localhost/bootc");
    assert_eq!(
        img["RepoTags"],
        serde_json::json!(["localhost/bootc:latest"])
    );
    assert_eq!(
        img["Digest"],
        Value::String(fixture("basic").manifest_digest.to_string())
    );
    // Without --source the booted deployment's image is the source; a kernel command line
    // without ostree= (not booted from ostree): a clear error saying to name --source.
    let mut c = image_cmd(&bootc, &["copy-to-storage"]);
    c.args(["--kernel-cmdline", "/dev/null"]);
    let out = run_failing(c);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source"));
}

#[test]
fn image_list_shows_host_unified_and_logical() {
    let test = "image_list_shows_host_unified_and_logical";
    if !can_write_stores(test) {
        return;
    }
    let bootc = PodmanStore::new();
    run(image_cmd(&bootc, &["cmd", "pull", &fixture_ref("basic")]));
    let tmp = tempdir();
    // An ostree repo with an image ref as ostree-rs-ext names it, made by the real ostree.
    let repo = tmp.path().join("repo");
    let have_ostree = oracle("ostree", test);
    if have_ostree {
        run(cmd("ostree", ["init", "--mode=bare-user"]).arg(format!("--repo={}", repo.display())));
        let tree = tmp.path().join("tree/usr");
        std::fs::create_dir_all(&tree).unwrap();
        std::fs::write(tree.join("f"), "x").unwrap();
        run(cmd(
            "ostree",
            [
                "commit",
                "-b",
                "ostree/container/image/docker_3A__2F__2F_quay_2E_io/fedora/fedora-bootc_3A_42",
            ],
        )
        .arg(format!("--repo={}", repo.display()))
        .arg(tmp.path().join("tree")));
    }
    // A deployment root with one bound image.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("usr/lib/bootc/bound-images.d")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/containers/systemd")).unwrap();
    std::fs::write(
        root.join("usr/share/containers/systemd/db.image"),
        "[Image]\nImage=quay.io/ex/db:1\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/usr/share/containers/systemd/db.image",
        root.join("usr/lib/bootc/bound-images.d/db.image"),
    )
    .unwrap();

    // A second bound image that bootc's store has.
    std::fs::write(
        root.join("usr/share/containers/systemd/basic.container"),
        "[Container]\nImage=localhost/oci:basic\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/usr/share/containers/systemd/basic.container",
        root.join("usr/lib/bootc/bound-images.d/basic.container"),
    )
    .unwrap();

    let mut c = image_cmd(&bootc, &["list", "--format", "json"]);
    c.arg("--ostree-repo").arg(&repo).arg("--root").arg(&root);
    let all = json(&run(c));
    let rows = all.as_array().unwrap();
    let kinds: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["image_type"].as_str().unwrap().to_string(),
                r["image"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = vec![];
    if have_ostree {
        want.push((
            "host".to_string(),
            "docker://quay.io/fedora/fedora-bootc:42".to_string(),
        ));
    }
    want.push(("unified".into(), "localhost/oci:basic".into()));
    want.push(("logical".into(), "localhost/oci:basic".into()));
    want.push(("logical".into(), "quay.io/ex/db:1".into()));
    want.sort();
    let mut got = kinds.clone();
    got.sort();
    assert_eq!(got, want, "image list rows (bootc's keys)");
    // bootc's keys come first; the store's facts are podman's.
    let first_keys: Vec<&String> = rows[0].as_object().unwrap().keys().take(2).collect();
    assert_eq!(first_keys, ["image_type", "image"]);
    if oracle("podman", test) {
        let theirs = bootc.podman_json(["images", "--format", "json"]);
        let basic = &theirs[0];
        for r in rows.iter().filter(|r| r["image"] == "localhost/oci:basic") {
            assert_eq!(r["digest"], basic["Digest"], "{r}");
            assert_eq!(r["size"], basic["Size"], "{r}");
            assert_eq!(r["created"], basic["CreatedAt"], "{r}");
        }
    }
    let present: Vec<(String, Value)> = rows
        .iter()
        .filter(|r| r["image_type"] == "logical")
        .map(|r| {
            (
                r["image"].as_str().unwrap().to_string(),
                r["present"].clone(),
            )
        })
        .collect();
    assert!(
        present.contains(&("localhost/oci:basic".into(), Value::Bool(true))),
        "{present:?}"
    );
    assert!(
        present.contains(&("quay.io/ex/db:1".into(), Value::Bool(false))),
        "{present:?}"
    );
    assert!(rows
        .iter()
        .filter(|r| r["image_type"] != "logical")
        .all(|r| r.get("present").is_none()));

    let mut c = image_cmd(&bootc, &["list", "--type", "logical"]);
    c.arg("--ostree-repo").arg(&repo).arg("--root").arg(&root);
    let table = String::from_utf8(run(c).stdout).unwrap();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["REPOSITORY", "TYPE", "DIGEST", "SIZE", "CREATED", "PRESENT"]
    );
    assert!(
        lines.contains(&vec!["quay.io/ex/db:1", "logical", "-", "-", "-", "no"]),
        "{table}"
    );
    let basic = lines
        .iter()
        .find(|l| l[0] == "localhost/oci:basic")
        .unwrap();
    assert_eq!(
        (basic[1], *basic.last().unwrap()),
        ("logical", "yes"),
        "{table}"
    );
    assert!(basic[2].starts_with("sha256:"), "{table}");

    // Without a bootc system (no ostree repository): host images are an error, `all` lists
    // the others and says why host images are missing.
    let nowhere = tmp.path().join("no-repo");
    let mut c = image_cmd(&bootc, &["list", "--type", "host"]);
    c.arg("--ostree-repo")
        .arg(&nowhere)
        .arg("--root")
        .arg(&root);
    let out = run_failing(c);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bootc system") && err.contains(&nowhere.display().to_string()),
        "{err}"
    );
    let mut c = image_cmd(&bootc, &["list", "--format", "json"]);
    c.arg("--ostree-repo")
        .arg(&nowhere)
        .arg("--root")
        .arg(&root);
    let out = run(c);
    assert!(String::from_utf8_lossy(&out.stderr).contains("host images need"));
    assert!(json(&out)
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["image_type"] != "host"));
}

#[test]
fn pull_from_default_storage_shares_file_data_when_it_can() {
    let test = "pull_from_default_storage_shares_file_data_when_it_can";
    if !can_write_stores(test) {
        return;
    }
    // Both stores on one filesystem and not bind-mounted by podman (stowage wrote the host
    // store), so file data can be shared: reflinks where the filesystem has them, else hard links.
    let host = PodmanStore::new();
    let bootc = PodmanStore::new();
    run(stowage()
        .arg("copy")
        .arg(fixture_ref("many"))
        .arg(host.reference("quay.io/ex/many:1")));
    // Not quiet: the summary line on stderr says how the file data was shared.
    let mut c = stowage_progress();
    c.args(["image", "--storage-root"])
        .arg(&bootc.root)
        .arg("--runroot")
        .arg(&bootc.runroot);
    with_host_storage(&mut c, &host);
    c.args(["pull-from-default-storage", "quay.io/ex/many:1"]);
    let out = run(c);
    let msg = String::from_utf8_lossy(&out.stderr);
    // The file counts, before the byte counts.
    let msg = msg.split("; bytes:").next().unwrap_or_default();
    let shared = |word: &str| -> u64 {
        msg.split(", ")
            .chain(msg.split("; files: "))
            .find_map(|p| {
                p.trim()
                    .strip_suffix(word)?
                    .trim()
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    assert!(
        shared("reflinked") + shared("hard-linked") > 0,
        "no file data was shared: {msg}"
    );
    assert_eq!(shared("copied"), 0, "{msg}");
    if oracle("podman", test) {
        let a = stowage_inspect_raw(&["--config"], &host.reference("quay.io/ex/many:1"));
        let b = bootc.image_inspect("quay.io/ex/many:1");
        let config: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(b["RootFS"]["Layers"], config["rootfs"]["diff_ids"]);
        let opts = RenderOptions {
            mtimes: false,
            ..RenderOptions::default()
        };
        let have = mounted_tree(&bootc, "quay.io/ex/many:1", opts);
        assert_eq!(have, render(&fixture("many").tree, opts));
    }
}

/// The README's promise: the main job needs no root. An unprivileged user copies a fixture into
/// a containers-storage store of its own, lists it and exports it bit for bit.
#[test]
fn unprivileged_user_can_write_and_read_a_store() {
    let test = "unprivileged_user_can_write_and_read_a_store";
    if !is_root() {
        // Already unprivileged: run as we are.
        skip(test, "runs as root only, to drop to nobody with setpriv");
        return;
    }
    if !oracle("setpriv", test) {
        return;
    }
    let tmp = tempdir();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    copy_tree(&fixture("basic").layout, &work.join("oci"));
    let bin = work.join("stowage");
    std::fs::copy(env!("CARGO_BIN_EXE_stowage"), &bin).unwrap();
    run(cmd("chown", ["-R", "65534:65534"]).arg(&work));
    run(cmd("chmod", ["755"]).arg(tmp.path()));
    let as_nobody = |args: &[String]| {
        let mut c = cmd(
            "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups"],
        );
        // The accept-anything policy is readable by anyone (0644 in the target's tmp).
        c.arg(&bin)
            .arg("--quiet")
            .arg("--policy")
            .arg(accept_anything_policy())
            .args(args);
        c
    };
    let store = format!(
        "[overlay@{}+{}]",
        work.join("root").display(),
        work.join("run").display()
    );
    let s = |x: &str| x.to_string();
    run(as_nobody(&[
        s("copy"),
        format!("oci:{}:basic", work.join("oci").display()),
        format!("containers-storage:{store}localhost/basic:1"),
    ]));
    let out = run(as_nobody(&[
        s("image"),
        s("--storage-root"),
        work.join("root").display().to_string(),
        s("--runroot"),
        work.join("run").display().to_string(),
        s("cmd"),
        s("list"),
        s("--format"),
        s("json"),
    ]));
    let list = json(&out);
    assert_eq!(list[0]["Names"], serde_json::json!(["localhost/basic:1"]));
    run(as_nobody(&[
        s("copy"),
        format!("containers-storage:{store}localhost/basic:1"),
        format!("oci:{}:x", work.join("out").display()),
    ]));
    let config: Value = serde_json::from_slice(&stowage_inspect_raw(
        &["--config"],
        &oci_ref(&work.join("out"), "x"),
    ))
    .unwrap();
    let want: Vec<String> = fixture("basic")
        .diff_ids()
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(want));
}

/// `stowage copy containers-storage:… containers-storage:…` (the pipeline, re-extracting from
/// the tar-split export) keeps the image ID, digest and diffIDs, and the tree podman mounts.
#[test]
fn copy_between_two_stores() {
    let test = "copy_between_two_stores";
    if !can_write_stores(test) {
        return;
    }
    let a = PodmanStore::new();
    let b = PodmanStore::new();
    run(stowage()
        .arg("copy")
        .arg(fixture_ref("whiteouts"))
        .arg(a.reference("localhost/w:1")));
    run(stowage()
        .arg("copy")
        .arg(a.reference("localhost/w:1"))
        .arg(b.reference("quay.io/x/w:2")));
    if !oracle("podman", test) {
        return;
    }
    let ia = a.image_inspect("localhost/w:1");
    let ib = b.image_inspect("quay.io/x/w:2");
    for k in ["Id", "Digest", "RootFS", "Config", "Size"] {
        assert_eq!(ia[k], ib[k], "{k}");
    }
    let opts = RenderOptions::default();
    let have = mounted_tree(&b, "quay.io/x/w:2", opts);
    assert_eq!(have, render(&fixture("whiteouts").tree, opts));
}

#[test]
fn scripting_like_podman() {
    let test = "scripting_like_podman";
    if !can_write_stores(test) || !oracle("podman", test) {
        return;
    }
    let bootc = PodmanStore::new();
    // `image cmd pull` prints the image ID on stdout, as `podman pull` does.
    let mut ids = Vec::new();
    for name in ["basic", "links"] {
        let out = run(image_cmd(&bootc, &["cmd", "pull", &fixture_ref(name)]));
        let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert_eq!(
            id,
            fixture(name).config_digest.digest(),
            "{name}: pull printed {id:?}"
        );
        ids.push(id);
    }
    // `list -q` and `list -q --no-trunc` print what `podman images -q [--no-trunc]` prints.
    for extra in [&[][..], &["--no-trunc"][..]] {
        let mut args = vec!["cmd", "list"];
        args.extend_from_slice(extra);
        let ours = String::from_utf8(run(image_cmd(&bootc, &args)).stdout).unwrap();
        let mut pargs = vec!["images", "-q"];
        pargs.extend_from_slice(extra);
        let theirs = String::from_utf8(run(bootc.podman(&pargs)).stdout).unwrap();
        assert_eq!(ours, theirs, "list -q {extra:?}");
        assert_eq!(ours.lines().count(), 2, "{ours}");
    }
    // --noheading leaves out the header line of the table.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"));
    c.arg("image")
        .arg("--bootc-storage")
        .arg(&bootc.root)
        .arg("--bootc-runroot")
        .arg(&bootc.runroot)
        .args(["cmd", "list", "--noheading"]);
    let table = String::from_utf8(run(c).stdout).unwrap();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(!table.contains("REPOSITORY"), "{table}");
    // exists: absent is 1, an invalid name is an error (125), as podman.
    for (name, code) in [("localhost/nothere:1", 1), ("Not:Valid::Name", 125)] {
        let ours = image_cmd(&bootc, &["cmd", "exists", name])
            .output()
            .unwrap();
        let theirs = bootc.podman(["image", "exists", name]).output().unwrap();
        assert_eq!(ours.status.code(), Some(code), "stowage exists {name}");
        assert_eq!(theirs.status.code(), Some(code), "podman exists {name}");
    }
    // inspect A nope B: A and B printed, nope named, exit 125 — as podman.
    let ours = image_cmd(&bootc, &["cmd", "inspect", &ids[0], "nope", &ids[1]])
        .output()
        .unwrap();
    let theirs = bootc
        .podman(["image", "inspect", &ids[0], "nope", &ids[1]])
        .output()
        .unwrap();
    assert_eq!(ours.status.code(), theirs.status.code());
    assert_eq!(ours.status.code(), Some(125));
    let printed = json(&ours);
    assert_eq!(printed.as_array().unwrap().len(), 2, "{printed}");
    assert_eq!(printed[0]["Id"], ids[0].as_str());
    assert_eq!(printed[1]["Id"], ids[1].as_str());
    assert!(String::from_utf8_lossy(&ours.stderr).contains("nope"));
}

#[test]
fn misleading_errors_name_the_thing_and_the_fix() {
    let tmp = tempdir();
    let stderr_of = |args: &[&str]| -> String {
        String::from_utf8_lossy(&run_failing(stowage().args(args)).stderr).into_owned()
    };
    // A misspelt transport is not read as a docker reference.
    let err = stderr_of(&["inspect", "containers-storge:foo"]);
    assert!(
        err.contains("did you mean containers-storage:foo?"),
        "{err}"
    );
    assert!(!err.contains("did you mean docker://"), "{err}");
    // A store root that is a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a store").unwrap();
    let dst = format!(
        "containers-storage:[overlay@{}+{}]localhost/x:1",
        file.display(),
        tmp.path().join("run").display()
    );
    let err = stderr_of(&["copy", &fixture_ref("basic"), &dst]);
    assert!(
        err.contains(&file.display().to_string()) && err.contains("is not a directory"),
        "{err}"
    );
    assert!(!err.contains("File exists"), "{err}");
    // An index.json that is empty, or a JSON array.
    for (name, content, want) in [("empty", "", "is empty"), ("array", "[]", "JSON array")] {
        let layout = tmp.path().join(name);
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        std::fs::write(layout.join("index.json"), content).unwrap();
        let err = stderr_of(&["inspect", &format!("oci:{}", layout.display())]);
        assert!(
            err.contains("index.json") && err.contains(want),
            "{name}: {err}"
        );
        assert!(!err.contains("invalid length"), "{name}: {err}");
    }
}

#[test]
fn prune_all_removes_what_podman_prune_all_removes() {
    let test = "prune_all_removes_what_podman_prune_all_removes";
    if !can_write_stores(test) || !oracle("podman", test) {
        return;
    }
    let ours = PodmanStore::new();
    let theirs = PodmanStore::new();
    for name in ["basic", "links", "whiteouts"] {
        for store in [&ours, &theirs] {
            run(image_cmd(store, &["cmd", "pull", &fixture_ref(name)]));
        }
    }
    // Without -a nothing is dangling: nothing goes.
    let out = run(image_cmd(&ours, &["cmd", "prune", "-f"]));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let sorted = |out: std::process::Output| {
        let mut v: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let removed = sorted(run(image_cmd(&ours, &["cmd", "prune", "-a", "-f"])));
    let podman_removed = sorted(run(theirs.podman(["image", "prune", "-a", "-f"])));
    assert_eq!(removed.len(), 3, "{removed:?}");
    assert_eq!(removed, podman_removed);
    let left = run(ours.podman(["images", "-q"]));
    assert!(
        left.stdout.is_empty(),
        "podman still lists {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// `image cmd rm [-f]` of an image a container uses (made with `podman create`): refused with
/// podman's exit code 2, naming the container and what to run, since stowage has no container
/// runtime and does not remove containers; the image and the container stay; an unknown image
/// exits 1, as `podman rmi`.
#[test]
fn rm_of_an_image_in_use_says_what_it_would_take() {
    let test = "rm_of_an_image_in_use_says_what_it_would_take";
    if !oracle("podman", test) || !can_write_stores(test) {
        return;
    }
    let bootc = PodmanStore::new();
    run(image_cmd(&bootc, &["cmd", "pull", &fixture_ref("basic")]));
    let name = "localhost/oci:basic";
    let created = run(bootc.podman(["create", "--name", "busy", name, "true"]));
    let container = String::from_utf8_lossy(&created.stdout).trim().to_string();
    for args in [vec!["cmd", "rm", name], vec!["cmd", "rm", "-f", name]] {
        let out = output(&mut image_cmd(&bootc, &args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("container busy")
                && err.contains(&container)
                && err.contains("podman rm -f busy"),
            "{args:?}: {err}"
        );
    }
    run(image_cmd(&bootc, &["cmd", "exists", name]));
    let ps = run(bootc.podman(["ps", "-a", "--format", "{{.Names}}"]));
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "busy");
    // podman agrees that it is in use (its own code without -f is 2 too).
    let theirs = output(&mut bootc.podman(["rmi", name]));
    assert_eq!(theirs.status.code(), Some(2));
    let out = output(&mut image_cmd(&bootc, &["cmd", "rm", "localhost/nope:1"]));
    assert_eq!(out.status.code(), Some(1));
}
