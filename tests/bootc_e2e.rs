//! The whole `stowage image` surface on one bootc system built in a temp dir (issue 9): every
//! command in both output formats, the stores read back by podman and ostree afterwards, then
//! each error class once with its exit code and message.
//!
//! 1. The sysroot ([`System::build`]): `SYSROOT/ostree/repo` made by `ostree init --mode=bare`
//!    with an image imported as ostree-rs-ext names it (`docker://quay.io/ex/os:1`); a booted
//!    deployment as ostree lays it out (`ostree/boot.1 -> boot.1.1`,
//!    `boot.1.1/os/BOOTCSUM/0 -> ../../../deploy/os/deploy/CSUM.0`, `CSUM.0.origin` with
//!    `container-image-reference=ostree-unverified-registry:quay.io/ex/os:1`), found through a
//!    kernel command line with `ostree=/ostree/boot.1/os/BOOTCSUM/0` (`--kernel-cmdline`, which
//!    stands in for `/proc/cmdline`); bootc's containers-storage at its default place
//!    `SYSROOT/ostree/bootc/storage`, written by skopeo; a deployment root whose
//!    `usr/lib/bootc/bound-images.d` has an absolute and a relative symlink (an `.image` and a
//!    `.container`); the host's store (`--host-storage`), written by skopeo; a docker-registry
//!    on 127.0.0.1 that skopeo seeds.
//! 2. [`bootc_system_end_to_end`]: image list (every type, table and JSON), copy-to-storage with
//!    its defaults, pull-from-default-storage, cmd pull (registry) and pull --bound, list,
//!    inspect, exists, tag, untag, push, build, rm, prune; podman reads both containers-storage
//!    stores, `ostree fsck` and `ostree refs` the repository.
//! 3. Then every error class once: image not found, invalid input (a bad bound image, a bad
//!    template, a bad name), a corrupted layer, storage not initialised, permission denied, a
//!    full filesystem, a broken storage.conf, a registry that does not answer and one that
//!    refuses the credentials; plus clap's usage error. The codes are docs/cli.md's: 1 for an
//!    error, 125 for `image cmd list/inspect/exists` errors (podman's), 2 for usage.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// The image ostree-rs-ext imported into the repository and the deployment was booted from.
const OS_IMAGE: &str = "quay.io/ex/os:1";
/// The image skopeo put into bootc's store (a bound image too).
const APP_IMAGE: &str = "quay.io/ex/app:1";
/// The image skopeo put into the host's store.
const HOST_IMAGE: &str = "quay.io/ex/host:1";

/// A bootc system in a temp dir (module doc, step 1).
struct System {
    tmp: tempfile::TempDir,
    sysroot: PathBuf,
    /// The deployment root whose bound images count.
    root: PathBuf,
    cmdline: PathBuf,
    /// bootc's store at `SYSROOT/ostree/bootc/storage`.
    bootc: PodmanStore,
    host: PodmanStore,
    registry: Registry,
}

impl System {
    fn build() -> System {
        let tmp = tempdir();
        let sysroot = tmp.path().join("sysroot");
        let repo = sysroot.join("ostree/repo");
        std::fs::create_dir_all(sysroot.join("ostree")).unwrap();
        init(&repo, "bare");
        run(stowage()
            .arg("copy")
            .arg(fixture("basic").oci_ref())
            .arg(format!("ostree:[{}]{OS_IMAGE}", repo.display())));
        // The booted deployment, through ostree's boot symlinks.
        let ostree = sysroot.join("ostree");
        let deploy = ostree.join("deploy/os/deploy");
        std::fs::create_dir_all(deploy.join("0123abcd.0")).unwrap();
        std::fs::write(
            deploy.join("0123abcd.0.origin"),
            format!("[origin]\ncontainer-image-reference=ostree-unverified-registry:{OS_IMAGE}\n"),
        )
        .unwrap();
        std::fs::create_dir_all(ostree.join("boot.1.1/os/bootcsum")).unwrap();
        std::os::unix::fs::symlink("boot.1.1", ostree.join("boot.1")).unwrap();
        std::os::unix::fs::symlink(
            "../../../deploy/os/deploy/0123abcd.0",
            ostree.join("boot.1.1/os/bootcsum/0"),
        )
        .unwrap();
        let cmdline = tmp.path().join("cmdline");
        std::fs::write(
            &cmdline,
            "BOOT_IMAGE=(hd0,gpt2)/ostree/os-bootcsum/vmlinuz root=UUID=1 rw ostree=/ostree/boot.1/os/bootcsum/0\n",
        )
        .unwrap();

        let bootc = PodmanStore::at(sysroot.join("ostree/bootc/storage"));
        bootc.skopeo_copy(&[], &fixture("whiteouts").oci_ref(), APP_IMAGE);
        let host = PodmanStore::new();
        host.skopeo_copy(&[], &fixture("links").oci_ref(), HOST_IMAGE);

        let registry = Registry::start(Auth::None, None);
        for (fx, name) in [("names", "ex/db:1"), ("basic", "ex/base:1")] {
            let info = fixture(fx);
            let tag = info.tag.as_deref().unwrap();
            let dest = format!("{}/{name}", registry.addr);
            skopeo_push(&info.layout, tag, &dest, None, &[]);
        }

        // The deployment root: two good bound images (one present in bootc's store).
        let root = tmp.path().join("root");
        let quadlets = root.join("usr/share/containers/systemd");
        let bound = root.join("usr/lib/bootc/bound-images.d");
        std::fs::create_dir_all(&quadlets).unwrap();
        std::fs::create_dir_all(&bound).unwrap();
        std::fs::write(
            quadlets.join("app.image"),
            format!("[Image]\nImage={APP_IMAGE}\n"),
        )
        .unwrap();
        std::fs::write(
            quadlets.join("db.container"),
            format!(
                "[Unit]\nDescription=db\n[Container]\nImage={}/ex/db:1\nExec=/bin/db\n",
                registry.addr
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/usr/share/containers/systemd/app.image",
            bound.join("10-app.image"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../../share/containers/systemd/db.container",
            bound.join("20-db.container"),
        )
        .unwrap();
        System {
            tmp,
            sysroot,
            root,
            cmdline,
            bootc,
            host,
            registry,
        }
    }

    /// `stowage image` with this system's paths (bootc's store and the repository from the
    /// sysroot, as on a real system) and `args`.
    fn image(&self, args: &[&str]) -> Command {
        let mut c = stowage_progress();
        c.arg("image")
            .arg("--sysroot")
            .arg(&self.sysroot)
            .arg("--runroot")
            .arg(&self.bootc.runroot)
            .arg("--host-storage")
            .arg(&self.host.root)
            .arg("--host-runroot")
            .arg(&self.host.runroot)
            .arg("--kernel-cmdline")
            .arg(&self.cmdline)
            .arg("--root")
            .arg(&self.root)
            .args(args);
        c
    }

    fn db_image(&self) -> String {
        format!("{}/ex/db:1", self.registry.addr)
    }

    fn base_image(&self) -> String {
        format!("{}/ex/base:1", self.registry.addr)
    }
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `image list` rows as (type, image, present) from its JSON.
fn json_rows(v: &Value) -> Vec<(String, String, Option<bool>)> {
    let mut rows: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["image_type"].as_str().unwrap().to_string(),
                r["image"].as_str().unwrap().to_string(),
                r.get("present").and_then(Value::as_bool),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// `image list` rows as (type, image, present) from its table.
fn table_rows(text: &str) -> Vec<(String, String, Option<bool>)> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .collect();
    let header: Vec<&str> = header.iter().map(|h| h.trim()).collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TYPE", "DIGEST", "SIZE", "CREATED", "PRESENT"],
        "{text}"
    );
    let mut rows: Vec<_> = lines
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let present = match *cols.last().unwrap() {
                "yes" => Some(true),
                "no" => Some(false),
                _ => None,
            };
            (cols[1].to_string(), cols[0].to_string(), present)
        })
        .collect();
    rows.sort();
    rows
}

/// The exit code and stderr of a command that must fail.
fn failure(mut c: Command) -> (i32, String) {
    let out = output(&mut c);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {c:?}\n{err}");
    (out.status.code().unwrap_or(-1), err)
}

/// `err` is one `Error: ` line that contains every one of `needles`.
fn assert_error(what: &str, err: &str, needles: &[&str]) {
    let line = err
        .lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("{what}: no Error: line in {err}"));
    for n in needles {
        assert!(line.contains(n), "{what}: {n:?} missing from {line}");
    }
}

#[test]
fn bootc_system_end_to_end() {
    let test = "bootc_system_end_to_end";
    if !is_root() {
        skip(
            test,
            "writing containers-storage needs root here (chown, whiteout devices)",
        );
        return;
    }
    if !require(test, &["podman", "skopeo", "ostree", "docker-registry"]) {
        return;
    }
    let sys = System::build();
    let basic = fixture("basic");
    let repo = sys.sysroot.join("ostree/repo");

    // image list: every type, both formats; table and JSON agree.
    let host_row = ("host".to_string(), format!("docker://{OS_IMAGE}"), None);
    let logical = |db_present: bool| {
        vec![
            ("logical".to_string(), sys.db_image(), Some(db_present)),
            ("logical".to_string(), APP_IMAGE.to_string(), Some(true)),
        ]
    };
    // `unified`: the names in bootc's store.
    let check_list = |db_present: bool, unified: &[String]| {
        let unified: Vec<_> = unified
            .iter()
            .map(|n| ("unified".to_string(), n.clone(), None))
            .collect();
        for (kind, mut want) in [
            ("host", vec![host_row.clone()]),
            ("unified", unified.clone()),
            ("logical", logical(db_present)),
            ("all", {
                let mut all = vec![host_row.clone()];
                all.extend(unified.clone());
                all.extend(logical(db_present));
                all
            }),
        ] {
            want.sort();
            let j = json(&run(
                sys.image(&["list", "--type", kind, "--format", "json"])
            ));
            assert_eq!(json_rows(&j), want, "list --type {kind} --format json: {j}");
            let t = stdout(&run(sys.image(&["list", "--type", kind])));
            assert_eq!(table_rows(&t), want, "list --type {kind}:\n{t}");
            if kind == "host" {
                assert_eq!(j[0]["digest"], basic.manifest_digest.to_string(), "{j}");
            }
        }
    };
    check_list(false, &[APP_IMAGE.to_string()]);

    // copy-to-storage with its defaults: the booted deployment's image, from the repository,
    // into the host's store as localhost/bootc.
    run(sys.image(&["copy-to-storage"]));
    let booted = sys.host.image_inspect("localhost/bootc");
    assert_eq!(
        booted["RepoTags"],
        serde_json::json!(["localhost/bootc:latest"])
    );
    assert_eq!(booted["Digest"], basic.manifest_digest.to_string());
    assert_eq!(booted["Id"], basic.config_digest.digest().to_string());
    let diff_ids: Vec<String> = basic.diff_ids().iter().map(|d| d.to_string()).collect();
    assert_eq!(booted["RootFS"]["Layers"], serde_json::json!(diff_ids));

    // pull-from-default-storage: the host's image into bootc's store, same ID and layers.
    run(sys.image(&["pull-from-default-storage", HOST_IMAGE]));
    let a = sys.host.image_inspect(HOST_IMAGE);
    let b = sys.bootc.image_inspect(HOST_IMAGE);
    for k in ["Id", "Digest", "RootFS", "Config"] {
        assert_eq!(a[k], b[k], "pull-from-default-storage: {k}");
    }

    // cmd pull from the registry; then --bound pulls the bound image bootc's store lacks.
    let base = sys.base_image();
    let out = run(sys.image(&["cmd", "pull", "--tls-verify=false", &base]));
    assert_eq!(
        stdout(&out).trim(),
        basic.config_digest.digest().to_string()
    );
    let out = run(sys.image(&["cmd", "pull", "--bound", "--tls-verify=false"]));
    assert_eq!(
        stdout(&out).trim(),
        fixture("names").config_digest.digest().to_string()
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 logically bound image(s)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_list(
        true,
        &[
            APP_IMAGE.to_string(),
            HOST_IMAGE.to_string(),
            base.clone(),
            sys.db_image(),
        ],
    );

    // cmd list: JSON as podman's, the table and a template as podman prints them.
    let ours = json(&run(sys.image(&["cmd", "list", "--format", "json"])));
    assert_eq!(ours.as_array().unwrap().len(), 4, "{ours}");
    assert_image_lists_agree(&ours, &sys.bootc);
    for extra in [
        &["--sort", "repository"][..],
        &[
            "--sort",
            "repository",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ][..],
        &["--sort", "repository", "--digests", "--noheading"][..],
    ] {
        let mut args = vec!["cmd", "list"];
        args.extend_from_slice(extra);
        let theirs = stdout(&run(sys.bootc.podman(["images"].iter().chain(extra))));
        assert_eq!(stdout(&run(sys.image(&args))), theirs, "cmd list {extra:?}");
    }

    // cmd inspect: JSON and a template, as podman.
    let ours = json(&run(sys.image(&["cmd", "inspect", APP_IMAGE, HOST_IMAGE])));
    let theirs = sys
        .bootc
        .podman_json(["image", "inspect", APP_IMAGE, HOST_IMAGE]);
    for i in 0..2 {
        for k in STORE_INSPECT_KEYS {
            assert_eq!(ours[i][k], theirs[i][k], "cmd inspect: image {i} key {k}");
        }
    }
    let f = "{{.Id}} {{.Digest}} {{index .RepoTags 0}}";
    assert_eq!(
        stdout(&run(sys.image(&["cmd", "inspect", "--format", f, &base]))),
        stdout(&run(sys
            .bootc
            .podman(["image", "inspect", "--format", f, &base]))),
    );

    // cmd exists.
    run(sys.image(&["cmd", "exists", APP_IMAGE]));
    let out = output(&mut sys.image(&["cmd", "exists", "quay.io/ex/nope:1"]));
    assert_eq!(out.status.code(), Some(1));

    // cmd tag / untag: podman sees the names.
    run(sys.image(&["cmd", "tag", APP_IMAGE, "app:2"]));
    assert_eq!(
        sys.bootc.image_inspect(APP_IMAGE)["RepoTags"],
        serde_json::json!([APP_IMAGE, "localhost/app:2"])
    );
    run(sys.image(&["cmd", "untag", APP_IMAGE, "app:2"]));
    assert_eq!(
        sys.bootc.image_inspect(APP_IMAGE)["RepoTags"],
        serde_json::json!([APP_IMAGE])
    );

    // cmd push to the registry: skopeo reads the same layers back.
    let pushed = format!("{}/ex/app:1", sys.registry.addr);
    run(sys.image(&[
        "cmd",
        "push",
        "--tls-verify=false",
        APP_IMAGE,
        &format!("docker://{pushed}"),
    ]));
    let config: Value = serde_json::from_str(&run_stdout(skopeo().args([
        "inspect",
        "--config",
        "--tls-verify=false",
        &format!("docker://{pushed}"),
    ])))
    .unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        sys.bootc.image_inspect(APP_IMAGE)["RootFS"]["Layers"]
    );

    // cmd build FROM the pulled base: one new layer, podman reads the image.
    let ctx = sys.tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello"), "hello\n").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        format!("FROM {base}\nCOPY hello /hello\nLABEL e2e=yes\n"),
    )
    .unwrap();
    let out = run(sys.image(&[
        "cmd",
        "build",
        "-t",
        "built:1",
        "--timestamp",
        "0",
        ctx.to_str().unwrap(),
    ]));
    let built_id = stdout(&out).trim().to_string();
    let built = sys.bootc.image_inspect("localhost/built:1");
    assert_eq!(built["Id"], built_id.as_str());
    assert_eq!(built["Labels"]["e2e"], "yes");
    assert_eq!(
        built["RootFS"]["Layers"].as_array().unwrap().len(),
        basic.layers.len() + 1
    );

    // cmd rm: the built image goes (podman agrees); prune: the host image, untagged, goes.
    let out = run(sys.image(&["cmd", "rm", "localhost/built:1"]));
    assert!(
        stdout(&out).contains(&format!("Deleted: {built_id}")),
        "{}",
        stdout(&out)
    );
    let out = output(&mut sys.bootc.podman(["image", "exists", "localhost/built:1"]));
    assert_eq!(out.status.code(), Some(1));
    run(sys.image(&["cmd", "untag", HOST_IMAGE]));
    let out = run(sys.image(&["cmd", "prune"]));
    assert_eq!(stdout(&out).trim(), a["Id"].as_str().unwrap());

    // podman reads both stores, ostree the repository.
    let ours = json(&run(sys.image(&["cmd", "list", "--format", "json"])));
    assert_image_lists_agree(&ours, &sys.bootc);
    let names: Vec<Value> = sys
        .bootc
        .podman_json(["images", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Names"][0].clone())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    let host_names =
        run_stdout(
            sys.host
                .podman(["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        );
    let mut host_names: Vec<&str> = host_names.lines().collect();
    host_names.sort();
    assert_eq!(host_names, ["localhost/bootc:latest", HOST_IMAGE]);
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    let refs = ostree(&repo, &["refs"]);
    assert!(
        refs.lines()
            .any(|r| r == "ostree/container/image/docker_3A__2F__2F_quay_2E_io/ex/os_3A_1"),
        "{refs}"
    );

    error_classes(&sys);
}

/// Exit codes of the three error classes (docs/cli.md, "Exit codes").
const EXIT_IMAGE: i32 = 3;
const EXIT_STORAGE: i32 = 4;
const EXIT_REGISTRY: i32 = 5;

/// Step 3 of the module doc: every error class once.
fn error_classes(sys: &System) {
    let test = "bootc_system_end_to_end";

    // Image not found.
    let (code, err) = failure(sys.image(&["pull-from-default-storage", "quay.io/ex/nope:1"]));
    assert_eq!(code, EXIT_IMAGE, "{err}");
    assert_error("not found", &err, &["image quay.io/ex/nope:1: not found"]);

    // Invalid input: bound images bootc refuses, a template with an unknown field, a name
    // that is no reference.
    let bound = sys.root.join("usr/lib/bootc/bound-images.d");
    let quadlets = sys.root.join("usr/share/containers/systemd");
    std::fs::write(
        quadlets.join("auth.image"),
        "[Image]\nImage=quay.io/ex/a:1\nAuthFile=/x\n",
    )
    .unwrap();
    for (entry, needle) in [
        ("30-file.image", "not a symlink"),
        ("40-auth.image", "AuthFile"),
    ] {
        let path = bound.join(entry);
        if entry.contains("file") {
            std::fs::write(&path, "[Image]\nImage=quay.io/ex/f:1\n").unwrap();
        } else {
            std::os::unix::fs::symlink("/usr/share/containers/systemd/auth.image", &path).unwrap();
        }
        let (code, err) = failure(sys.image(&["list", "--type", "logical"]));
        assert_eq!(code, EXIT_IMAGE, "{err}");
        assert_error(entry, &err, &[&path.display().to_string(), needle]);
        std::fs::remove_file(&path).unwrap();
    }
    let (code, err) = failure(sys.image(&["cmd", "list", "--format", "{{.Nope}}"]));
    assert_eq!(code, 125, "{err}");
    assert_error("template", &err, &["can't evaluate field Nope"]);
    let (code, err) = failure(sys.image(&["cmd", "pull", "Not:Valid::Name"]));
    assert_eq!(code, EXIT_IMAGE, "{err}");
    assert_error(
        "bad name",
        &err,
        &["invalid image name \"Not:Valid::Name\""],
    );

    // A corrupted layer: refused, and bootc's store stays as podman reads it.
    // (an image of its own: bootc's store has every fixture's layers by now)
    let corrupt = sys.tmp.path().join("corrupt");
    let img = one_file_image(&corrupt, "c", "data", vec![7u8; 64 * 1024]);
    let layer = blob_path(&corrupt, &img.layers[0]);
    let mut bytes = std::fs::read(&layer).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let before = sys.bootc.podman_json(["images", "--format", "json"]);
    let src = img.reference.clone();
    let (code, err) = failure(sys.image(&["cmd", "pull", &src, "--retry-times", "0"]));
    assert_eq!(code, EXIT_IMAGE, "{err}");
    assert_error("corrupted", &err, &[&img.layers[0], "digest mismatch"]);
    assert_eq!(
        sys.bootc.podman_json(["images", "--format", "json"]),
        before
    );

    // Storage not initialised: read commands say where they looked and create nothing.
    let nothing = sys.tmp.path().join("no-store");
    let mut c = sys.image(&["cmd", "list"]);
    c.arg("--storage-root").arg(&nothing);
    let (code, err) = failure(c);
    assert_eq!(code, 125, "{err}");
    assert_error(
        "no store",
        &err,
        &[
            &format!("containers-storage at {}: not found", nothing.display()),
            "--storage-root",
        ],
    );
    assert!(!nothing.exists());

    // Permission denied: another user may not look into root's 0700 sysroot.
    if oracle("setpriv", test) {
        let bin_dir = tempdir();
        let bin = bin_dir.path().join("stowage");
        std::fs::copy(env!("CARGO_BIN_EXE_stowage"), &bin).unwrap();
        run(cmd("chmod", ["755"]).arg(bin_dir.path()));
        let mut c = cmd(
            "setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups"],
        );
        c.arg(&bin)
            .arg("image")
            .arg("--sysroot")
            .arg(&sys.sysroot)
            .args(["cmd", "list"]);
        let (code, err) = failure(c);
        assert_eq!(code, 125, "{err}");
        assert_error(
            "permission",
            &err,
            &[
                &sys.sysroot
                    .join("ostree/bootc/storage")
                    .display()
                    .to_string(),
                "Permission denied",
            ],
        );
    }

    // A full filesystem: the error names the mount and the fix; the store stays readable and
    // the same pull completes once there is room.
    if let Some(fs) = Tmpfs::mount(test, 4) {
        let small = PodmanStore::at(fs.mount.join("store"));
        let pull = |fx: &str| {
            let mut c = sys.image(&["cmd", "pull", &fixture(fx).oci_ref()]);
            c.arg("--storage-root")
                .arg(&small.root)
                .arg("--runroot")
                .arg(&small.runroot);
            c
        };
        run(pull("basic"));
        let filler = fs.fill();
        let (code, err) = failure(pull("links"));
        assert_eq!(code, EXIT_STORAGE, "{err}");
        assert_error(
            "full",
            &err,
            &[
                "No space left on device",
                &format!("the filesystem mounted at {}", fs.mount.display()),
                "is full: free space on it",
            ],
        );
        // (podman writes its own database on every run: it reads the store once there is room)
        std::fs::remove_file(filler).unwrap();
        let names = run_stdout(small.podman(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
        assert_eq!(names.trim(), "localhost/oci:basic");
        run(pull("links"));
        let names = run_stdout(small.podman(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
        assert_eq!(names.lines().count(), 2, "{names}");
    }

    // Configuration: a storage.conf that does not parse, for the host's default store.
    let conf = sys.tmp.path().join("storage.conf");
    std::fs::write(&conf, "[storage\ndriver = \"overlay\"\n").unwrap();
    let mut c = stowage_progress();
    c.arg("image")
        .arg("--sysroot")
        .arg(&sys.sysroot)
        .arg("--kernel-cmdline")
        .arg(&sys.cmdline)
        .arg("copy-to-storage")
        .env("CONTAINERS_STORAGE_CONF", &conf);
    let (code, err) = failure(c);
    assert_eq!(code, EXIT_STORAGE, "{err}");
    assert_error(
        "storage.conf",
        &err,
        &[&format!("storage.conf {}: malformed", conf.display())],
    );

    // Registry network: nothing listens.
    let dead = format!("127.0.0.1:{}/ex/x:1", free_port());
    let (code, err) = failure(sys.image(&[
        "cmd",
        "pull",
        "--tls-verify=false",
        "--retry-times",
        "0",
        &dead,
    ]));
    assert_eq!(code, EXIT_REGISTRY, "{err}");
    assert_error("network", &err, &[&dead, "Connection refused"]);

    // Registry auth: a registry that wants credentials, without and with wrong ones.
    let locked = Registry::start(Auth::htpasswd("bootc", "s3cret"), None);
    let dest = format!("docker://{}/ex/app:1", locked.addr);
    for creds in [None, Some("bootc:wrong")] {
        let mut args = vec!["cmd", "push", "--tls-verify=false"];
        if let Some(c) = creds {
            args.extend(["--creds", c]);
        }
        args.extend([APP_IMAGE, dest.as_str()]);
        let (code, err) = failure(sys.image(&args));
        assert_eq!(code, EXIT_REGISTRY, "{err}");
        assert_error("auth", &err, &[&locked.addr, "unauthorized"]);
    }
    run(sys.image(&[
        "cmd",
        "push",
        "--tls-verify=false",
        "--creds",
        "bootc:s3cret",
        APP_IMAGE,
        &dest,
    ]));

    // Usage: clap's error and code 2.
    let (code, err) = failure(sys.image(&["list", "--type", "everything"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid value 'everything'"), "{err}");
}
