//! The default containers-storage — storage.conf and the rootless defaults — against podman:
//! `stowage info --format json`'s `store` paths must be `podman info --format json`'s, as
//! root and as an unprivileged user, with and without `CONTAINERS_STORAGE_CONF`, and an image
//! copied into the default store (no flags) must be listed by podman (same user, same
//! environment, no flags). Each command runs with a clean environment (`env -i`) so that the
//! caller's `XDG_*` variables do not leak in.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// The unprivileged user the rootless tests run as (created when absent).
const TEST_USER: &str = "stowage-conf";

/// Root, with `runuser` and `useradd` for the rootless cases, and podman as the oracle.
fn prerequisites(test: &str) -> bool {
    if !is_root() {
        skip(
            test,
            "needs root (to run commands as root and as another user)",
        );
        return false;
    }
    require(test, &["podman", "runuser", "useradd", "env"])
}

/// The test user's uid and gid, creating the user when it does not exist.
fn test_user() -> (u32, u32) {
    let id = |flag: &str| output(cmd("id", [flag, TEST_USER]));
    if !id("-u").status.success() {
        let out = output(cmd(
            "useradd",
            [
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ],
        ));
        // Another test may have created it meanwhile.
        assert!(
            out.status.success() || id("-u").status.success(),
            "useradd {TEST_USER}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let num = |flag: &str| {
        String::from_utf8(id(flag).stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (num("-u"), num("-g"))
}

/// A command run as `user` (root: `None`) with only `vars` (and `PATH`) in its environment.
fn clean(user: Option<&str>, vars: &[(&str, &Path)], program: &str, args: &[&str]) -> Command {
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "env", "-i"]);
            c
        }
        None => {
            let mut c = Command::new("env");
            c.arg("-i");
            c
        }
    };
    c.arg("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in vars {
        c.arg(format!("{k}={}", v.display()));
    }
    c.arg(program).args(args);
    // runuser runs in the caller's working directory; the user must be able to enter it.
    c.current_dir("/");
    c
}

fn stowage_bin() -> &'static str {
    env!("CARGO_BIN_EXE_stowage")
}

/// `{configFile, graphRoot, runRoot, graphDriverName}` of an `info --format json` output.
fn store_of(json: &str) -> (String, String, String, String) {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let s = &v["store"];
    let f = |k: &str| {
        s[k].as_str()
            .unwrap_or_else(|| panic!("no store.{k} in {s}"))
            .to_string()
    };
    (
        f("configFile"),
        f("graphRoot"),
        f("runRoot"),
        f("graphDriverName"),
    )
}

/// stowage's and podman's store for `user` with `vars`: they must agree.
fn compare_info(user: Option<&str>, vars: &[(&str, &Path)]) -> (String, String, String, String) {
    let ours = store_of(&run_stdout(clean(
        user,
        vars,
        stowage_bin(),
        &["info", "--format", "json"],
    )));
    let podman = store_of(&run_stdout(clean(
        user,
        vars,
        "podman",
        &["info", "--format", "json"],
    )));
    assert_eq!(
        ours, podman,
        "stowage info vs podman info for {user:?} with {vars:?}"
    );
    ours
}

/// A directory anyone may enter (tempdir() makes 0700 ones).
fn open_dir(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory owned by `uid`/`gid`, mode 0700.
fn user_dir(p: &Path, uid: u32, gid: u32) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
    p.to_path_buf()
}

/// A copy of the `basic` fixture layout that every user can read.
fn readable_fixture(dir: &Path) -> String {
    let dst = dir.join("oci");
    run(cmd(
        "cp",
        [
            "-r",
            fixtures().dir.join("oci").to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    ));
    run(cmd("chmod", ["-R", "a+rX", dst.to_str().unwrap()]));
    format!("oci:{}:basic", dst.display())
}

/// The `REPOSITORY:TAG` names `podman images` lists.
fn podman_names(user: Option<&str>, vars: &[(&str, &Path)]) -> Vec<String> {
    let out = run_stdout(clean(
        user,
        vars,
        "podman",
        &["images", "--format", "{{.Repository}}:{{.Tag}}"],
    ));
    out.lines().map(str::to_string).collect()
}

fn write_conf(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path.to_path_buf()
}

#[test]
fn root_default_store_is_podmans() {
    if !prerequisites("root_default_store_is_podmans") {
        return;
    }
    let t = tempdir();
    let home = t.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // No CONTAINERS_STORAGE_CONF: the host's files (or containers/storage's defaults).
    compare_info(None, &[("HOME", &home)]);

    // CONTAINERS_STORAGE_CONF with every key stowage reads.
    let ro = t.path().join("ro");
    let conf = write_conf(
        &t.path().join("storage.conf"),
        &format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/graph\"\nrunroot = \"{0}/run\"\n\
             [storage.options]\nadditionalimagestores = [\"{1}\"]\n\
             [storage.options.overlay]\nmount_program = \"/usr/bin/true\"\n",
            t.path().display(),
            ro.display()
        ),
    );
    let fixture = readable_fixture(t.path());
    // The additional store holds an image of its own, written by naming it explicitly.
    run(stowage().args([
        "copy",
        &fixture,
        &format!(
            "containers-storage:[overlay@{}+{}/ro-run]localhost/conf-ro:1",
            ro.display(),
            t.path().display()
        ),
    ]));
    let vars: [(&str, &Path); 2] = [("HOME", &home), ("CONTAINERS_STORAGE_CONF", &conf)];
    let (_, graph, run_root, driver) = compare_info(None, &vars);
    assert_eq!(graph, format!("{}/graph", t.path().display()));
    assert_eq!(run_root, format!("{}/run", t.path().display()));
    assert_eq!(driver, "overlay");
    let info: Value = serde_json::from_str(&run_stdout(clean(
        None,
        &vars,
        stowage_bin(),
        &["info", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(
        info["store"]["additionalImageStores"][0],
        ro.to_str().unwrap()
    );
    assert_eq!(info["store"]["mountProgram"], "/usr/bin/true");
    let podman_info: Value = serde_json::from_str(&run_stdout(clean(
        None,
        &vars,
        "podman",
        &["info", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(
        podman_info["store"]["graphOptions"]["overlay.imagestore"],
        ro.to_str().unwrap()
    );

    // A copy into the default store, no flags: podman (same environment) lists it, and the
    // image of the additional store too.
    run(clean(
        None,
        &vars,
        stowage_bin(),
        &[
            "-q",
            "copy",
            &fixture,
            "containers-storage:localhost/conf-root:1",
        ],
    ));
    let names = podman_names(None, &vars);
    assert!(
        names.contains(&"localhost/conf-root:1".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"localhost/conf-ro:1".to_string()),
        "{names:?}"
    );
    // `stowage images` lists both, the additional store's read-only, as `podman images`.
    let listed = |program: &str| -> Vec<(String, bool)> {
        let json = run_stdout(clean(None, &vars, program, &["images", "--format", "json"]));
        let v: Value = serde_json::from_str(&json).unwrap();
        let mut rows: Vec<(String, bool)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["Names"][0].as_str().unwrap().to_string(),
                    i["ReadOnly"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let ours = listed(stowage_bin());
    assert_eq!(
        ours,
        vec![
            ("localhost/conf-ro:1".to_string(), true),
            ("localhost/conf-root:1".to_string(), false),
        ]
    );
    assert_eq!(ours, listed("podman"));
    // The table, a template, a filter and a sort over both stores, as `podman images` has them.
    for args in [
        &["images", "--sort", "repository"][..],
        &["images", "--noheading", "--filter", "reference=conf-r*"][..],
        &[
            "images",
            "--sort",
            "repository",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ReadOnly}}",
        ][..],
        &[
            "images",
            "--format",
            "table {{.Repository}} {{.ReadOnly}}",
            "--sort",
            "tag",
        ][..],
    ] {
        let ours = run_stdout(clean(None, &vars, stowage_bin(), args));
        assert_eq!(
            ours,
            run_stdout(clean(None, &vars, "podman", args)),
            "{args:?}"
        );
    }
    // The additional store's image is readable by its plain name, as podman reads it.
    let out = t.path().join("out");
    run(clean(
        None,
        &vars,
        stowage_bin(),
        &[
            "-q",
            "copy",
            "containers-storage:localhost/conf-ro:1",
            &format!("oci:{}:x", out.display()),
        ],
    ));
    assert!(out.join("index.json").exists());
    // Flags still override the file.
    let other = t.path().join("other");
    let info = run_stdout(clean(
        None,
        &vars,
        stowage_bin(),
        &[
            "info",
            "--format",
            "json",
            "--storage-root",
            other.to_str().unwrap(),
        ],
    ));
    assert_eq!(store_of(&info).1, other.to_str().unwrap());

    // A driver stowage does not implement: a clear error naming the file, exit 1.
    let vfs = write_conf(
        &t.path().join("vfs.conf"),
        &format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/vfs\"\nrunroot = \"{0}/vfs-run\"\n",
            t.path().display()
        ),
    );
    let vars: [(&str, &Path); 2] = [("HOME", &home), ("CONTAINERS_STORAGE_CONF", &vfs)];
    let fail = run_failing(clean(
        None,
        &vars,
        stowage_bin(),
        &["-q", "copy", &fixture, "containers-storage:localhost/x:1"],
    ));
    assert_eq!(fail.status.code(), Some(1));
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(
        err.contains("\"vfs\"") && err.contains("driver = \"overlay\""),
        "{err}"
    );
    assert!(err.contains(vfs.to_str().unwrap()), "{err}");
    assert!(
        !t.path().join("vfs").exists(),
        "nothing is created for a refused driver"
    );
    compare_info(None, &vars);

    // As root, $XDG_CONFIG_HOME/containers/storage.conf wins over /etc and /usr/share when
    // it exists (containers/storage reads it for every user).
    let xdg = t.path().join("xdg");
    std::fs::create_dir_all(xdg.join("containers")).unwrap();
    write_conf(
        &xdg.join("containers/storage.conf"),
        &format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/xdg-graph\"\nrunroot = \"{0}/xdg-run\"\n",
            t.path().display()
        ),
    );
    let (conf, graph, _, _) = compare_info(None, &[("HOME", &home), ("XDG_CONFIG_HOME", &xdg)]);
    assert_eq!(conf, xdg.join("containers/storage.conf").to_str().unwrap());
    assert_eq!(graph, format!("{}/xdg-graph", t.path().display()));

    // As root a file must set runroot (podman refuses it too).
    let partial = write_conf(
        &t.path().join("partial.conf"),
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"/tmp/x\"\n",
    );
    let vars: [(&str, &Path); 2] = [("HOME", &home), ("CONTAINERS_STORAGE_CONF", &partial)];
    let ours = run_failing(clean(None, &vars, stowage_bin(), &["info"]));
    assert!(String::from_utf8_lossy(&ours.stderr).contains("runroot must be set"));
    let theirs = run_failing(clean(None, &vars, "podman", &["info"]));
    assert!(String::from_utf8_lossy(&theirs.stderr).contains("runroot must be set"));
}

/// Ends the pause processes rootless podman leaves behind (`RUNDIR/libpod/tmp/pause.pid`,
/// each run directory the test used), so that a run leaves no process of the test user.
struct PauseProcesses(Vec<PathBuf>);

impl Drop for PauseProcesses {
    fn drop(&mut self) {
        for dir in &self.0 {
            let pid_file = dir.join("libpod/tmp/pause.pid");
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = pid {
                let _ = output(cmd("kill", [pid.to_string()]));
                let _ = std::fs::remove_file(&pid_file);
            }
        }
    }
}

#[test]
fn rootless_default_store_is_podmans() {
    if !prerequisites("rootless_default_store_is_podmans") {
        return;
    }
    let (uid, gid) = test_user();
    let t = tempdir();
    open_dir(t.path());
    let _pause = PauseProcesses(vec![
        PathBuf::from(format!("/tmp/podman-run-{uid}")),
        t.path().join("xdg-run"),
    ]);
    let home = user_dir(&t.path().join("home"), uid, gid);
    let user = Some(TEST_USER);

    // No XDG variables, no storage.conf: ~/.local/share/containers/storage and podman's run
    // directory fallback; containers/storage's rootless default driver.
    let (conf, graph, _, _) = compare_info(user, &[("HOME", &home)]);
    assert_eq!(
        conf,
        format!("{}/.config/containers/storage.conf", home.display())
    );
    assert_eq!(
        graph,
        format!("{}/.local/share/containers/storage", home.display())
    );

    // XDG_RUNTIME_DIR, XDG_DATA_HOME and XDG_CONFIG_HOME.
    let xdg_run = user_dir(&t.path().join("xdg-run"), uid, gid);
    let xdg_data = user_dir(&t.path().join("xdg-data"), uid, gid);
    let xdg_config = user_dir(&t.path().join("xdg-config"), uid, gid);
    let xdg: [(&str, &Path); 4] = [
        ("HOME", &home),
        ("XDG_RUNTIME_DIR", &xdg_run),
        ("XDG_DATA_HOME", &xdg_data),
        ("XDG_CONFIG_HOME", &xdg_config),
    ];
    let (conf, graph, run_root, _) = compare_info(user, &xdg);
    assert_eq!(
        conf,
        format!("{}/containers/storage.conf", xdg_config.display())
    );
    assert_eq!(graph, format!("{}/containers/storage", xdg_data.display()));
    assert_eq!(run_root, format!("{}/containers", xdg_run.display()));

    // The user's own storage.conf: overlay and rootless_storage_path.
    let user_conf_dir = xdg_config.join("containers");
    std::fs::create_dir_all(&user_conf_dir).unwrap();
    let big = user_dir(&t.path().join("big"), uid, gid);
    write_conf(
        &user_conf_dir.join("storage.conf"),
        &format!(
            "[storage]\ndriver = \"overlay\"\nrootless_storage_path = \"{}/$UID\"\n",
            big.display()
        ),
    );
    let (_, graph, _, driver) = compare_info(user, &xdg);
    assert_eq!(graph, format!("{}/{uid}", big.display()));
    assert_eq!(driver, "overlay");

    // CONTAINERS_STORAGE_CONF, and a real copy into the default store that podman lists. A
    // fresh home: podman's database in a graph root it used before keeps that run's run root
    // and driver over any configuration.
    let home = user_dir(&t.path().join("home2"), uid, gid);
    let conf = write_conf(
        &t.path().join("storage.conf"),
        "[storage]\ndriver = \"overlay\"\n",
    );
    let fixture = readable_fixture(t.path());
    let vars: [(&str, &Path); 3] = [
        ("HOME", &home),
        ("XDG_RUNTIME_DIR", &xdg_run),
        ("CONTAINERS_STORAGE_CONF", &conf),
    ];
    let (_, graph, _, _) = compare_info(user, &vars);
    assert_eq!(
        graph,
        format!("{}/.local/share/containers/storage", home.display())
    );
    run(clean(
        user,
        &vars,
        stowage_bin(),
        &[
            "-q",
            "copy",
            &fixture,
            "containers-storage:localhost/rootless:1",
        ],
    ));
    let names = podman_names(user, &vars);
    assert_eq!(names, vec!["localhost/rootless:1".to_string()]);
    // The store belongs to the user, not to root.
    let meta = std::fs::metadata(Path::new(&graph).join("overlay-images/images.json")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid);

    // Without a storage.conf the rootless default driver is vfs: refused, with the fix.
    let fail = run_failing(clean(
        user,
        &[("HOME", &home)],
        stowage_bin(),
        &["-q", "copy", &fixture, "containers-storage:localhost/x:1"],
    ));
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(
        err.contains("\"vfs\"") && err.contains(".config/containers/storage.conf"),
        "{err}"
    );
}
