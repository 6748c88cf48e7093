//! `stowage login`, `logout`, `list-tags` and `delete docker://` against real docker-registry
//! servers (htpasswd and token auth), with skopeo (and podman, where it reads the same file)
//! reading the results.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// `stowage login` with the password on stdin; returns the output.
fn login(args: &[&str], password: &str, envs: &[(&str, &Path)]) -> std::process::Output {
    let mut c = stowage_progress();
    c.arg("login").args(args).arg("--password-stdin");
    c.env_remove("XDG_RUNTIME_DIR");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `stowage login --tls-verify=false --authfile AUTHFILE -u USER ADDR` with `password` on
/// stdin (and no `XDG_RUNTIME_DIR`); returns the output.
fn login_as(authfile: &Path, user: &str, password: &str, addr: &str) -> std::process::Output {
    login(
        &[
            "--tls-verify=false",
            "--authfile",
            authfile.to_str().unwrap(),
            "-u",
            user,
            addr,
        ],
        password,
        &[],
    )
}

/// Asserts that the command succeeded, showing its stderr when not.
fn assert_succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// skopeo inspect of `image` with only `authfile` for credentials: whether it succeeded.
fn skopeo_reads_with(authfile: &Path, image: &str) -> bool {
    let mut c = skopeo();
    c.args(["inspect", "--tls-verify=false", "--authfile"])
        .arg(authfile)
        .arg(format!("docker://{image}"));
    output(c).status.success()
}

fn auth_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn login_logout_htpasswd() {
    if !registry_tools("login_logout_htpasswd") {
        return;
    }
    let reg = Registry::start(Auth::htpasswd("alice", "s3cret"), None);
    let t = tempdir();
    seed_registry(&reg, t.path(), "app", Some("alice:s3cret"));
    let image = format!("{}/app", reg.addr);
    let authfile = t.path().join("auth.json");
    // Another registry's entry that must survive.
    write_auth_json(&authfile, &[("other.example:5000", "bob:pw")]);

    // A wrong password: refused, nothing written.
    let bad = login_as(&authfile, "alice", "wrong", &reg.addr);
    assert_eq!(bad.status.code(), Some(5));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains(&reg.addr) && err.contains("refused"), "{err}");
    assert!(auth_json(&authfile)["auths"].get(&reg.addr).is_none());
    assert!(!skopeo_reads_with(&authfile, &image));

    // The right one: skopeo reads the image with the file stowage wrote.
    let ok = login_as(&authfile, "alice", "s3cret", &reg.addr);
    assert_succeeded(&ok);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "Login Succeeded!\n");
    assert!(skopeo_reads_with(&authfile, &image));
    let doc = auth_json(&authfile);
    assert!(doc["auths"].get("other.example:5000").is_some(), "{doc}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // --get-login, by stowage and by podman reading the same file.
    let user = run_stdout(stowage().args([
        "login",
        "--get-login",
        "--authfile",
        authfile.to_str().unwrap(),
        &reg.addr,
    ]));
    assert_eq!(user, "alice\n");
    if which("podman").is_some() {
        let user = run_stdout(cmd(
            "podman",
            [
                "login",
                "--get-login",
                "--authfile",
                authfile.to_str().unwrap(),
                &reg.addr,
            ],
        ));
        assert_eq!(user.trim(), "alice");
    }

    // The default file: ${XDG_RUNTIME_DIR}/containers/auth.json, as skopeo reads it.
    let run_dir = t.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let ok = login(
        &["--tls-verify=false", "-u", "alice", &reg.addr],
        "s3cret",
        &[("XDG_RUNTIME_DIR", &run_dir)],
    );
    assert_succeeded(&ok);
    let default_file = run_dir.join("containers/auth.json");
    assert!(skopeo_reads_with(&default_file, &image));
    let mut c = skopeo();
    c.env("XDG_RUNTIME_DIR", &run_dir)
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{image}"));
    run(c);

    // logout: skopeo can no longer read; a second logout is an error naming the registry.
    run(stowage().args([
        "logout",
        "--authfile",
        authfile.to_str().unwrap(),
        &reg.addr,
    ]));
    assert!(!skopeo_reads_with(&authfile, &image));
    assert!(auth_json(&authfile)["auths"]
        .get("other.example:5000")
        .is_some());
    let again = run_failing(stowage().args([
        "logout",
        "--authfile",
        authfile.to_str().unwrap(),
        &reg.addr,
    ]));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("not logged into") && err.contains(&reg.addr),
        "{err}"
    );
    let none = run_failing(stowage().args([
        "login",
        "--get-login",
        "--authfile",
        authfile.to_str().unwrap(),
        &reg.addr,
    ]));
    assert!(String::from_utf8_lossy(&none.stderr).contains("not logged into"));
    // logout --all empties auths.
    run(stowage().args(["logout", "--all", "--authfile", authfile.to_str().unwrap()]));
    assert_eq!(auth_json(&authfile)["auths"], serde_json::json!({}));
}

#[test]
fn login_with_token_auth() {
    if !registry_tools("login_with_token_auth") {
        return;
    }
    let ts = TokenServer::start("carol", "pw1");
    let reg = Registry::start(ts.auth(), None);
    let t = tempdir();
    seed_registry(&reg, t.path(), "tok", Some("carol:pw1"));
    let authfile = t.path().join("auth.json");
    let bad = login_as(&authfile, "carol", "nope", &reg.addr);
    assert_eq!(bad.status.code(), Some(5));
    assert!(!authfile.exists());
    let ok = login_as(&authfile, "carol", "pw1", &reg.addr);
    assert_succeeded(&ok);
    assert!(skopeo_reads_with(&authfile, &format!("{}/tok", reg.addr)));
    // delete with the stored credentials: a token for the repository's `*` actions.
    run(stowage().args([
        "delete",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        &format!("docker://{}/tok", reg.addr),
    ]));
    assert!(!skopeo_reads_with(&authfile, &format!("{}/tok", reg.addr)));
}

#[test]
fn list_tags_and_delete_as_skopeo() {
    if !registry_tools("list_tags_and_delete_as_skopeo") {
        return;
    }
    let reg = Registry::start(Auth::htpasswd("dave", "pw"), None);
    let t = tempdir();
    let src = t.path().join("src");
    two_layer_image(&src, "v1");
    let repo = format!("{}/many", reg.addr);
    for tag in ["v1", "v2", "v3", "latest", "rc-1"] {
        let mut c = skopeo();
        c.args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--dest-creds",
            "dave:pw",
        ])
        .arg(format!("oci:{}:v1", src.display()))
        .arg(format!("docker://{repo}:{tag}"));
        run(c);
    }
    let skopeo_tags = || -> Value {
        let mut c = skopeo();
        c.args(["list-tags", "--tls-verify=false", "--creds", "dave:pw"])
            .arg(format!("docker://{repo}"));
        serde_json::from_str(&run_stdout(c)).unwrap()
    };
    let ours = |extra: &[&str]| -> Value {
        let mut c = stowage();
        c.args(["list-tags", "--tls-verify=false", "--creds", "dave:pw"])
            .args(extra)
            .arg(format!("docker://{repo}"));
        serde_json::from_str(&run_stdout(c)).unwrap()
    };
    let expected = skopeo_tags();
    assert_eq!(expected["Tags"].as_array().unwrap().len(), 5);
    assert_eq!(ours(&[]), expected);
    // Two tags per page: the registry's Link headers lead through three pages.
    assert_eq!(ours(&["--page-size", "2"]), expected);

    // Bad input: a tag, another transport, no credentials.
    let e = run_failing(stowage().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}:v1"),
    ]));
    assert!(String::from_utf8_lossy(&e.stderr).contains("without a tag"));
    let e = run_failing(stowage().args(["list-tags", "oci:/tmp/x"]));
    assert!(String::from_utf8_lossy(&e.stderr).contains("docker://"));
    let e = run_failing(stowage().args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}"),
    ]));
    assert!(String::from_utf8_lossy(&e.stderr).contains(&reg.addr));

    // delete by tag removes the manifest, and so every tag pointing at it (as skopeo delete).
    let digest = skopeo_inspect_registry(&format!("{repo}:v1"), Some("dave:pw"))["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    run(stowage().args([
        "delete",
        "--tls-verify=false",
        "--creds",
        "dave:pw",
        &format!("docker://{repo}:v2"),
    ]));
    let mut c = skopeo();
    c.args(["inspect", "--tls-verify=false", "--creds", "dave:pw"])
        .arg(format!("docker://{repo}@{digest}"));
    let gone = run_failing(c);
    assert!(!gone.status.success());
    assert_eq!(skopeo_tags()["Tags"], serde_json::json!([]));
    // Deleting it again: not found, named.
    let e = run_failing(stowage().args([
        "delete",
        "--tls-verify=false",
        "--creds",
        "dave:pw",
        &format!("docker://{repo}@{digest}"),
    ]));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains(&digest) && err.contains("not found"), "{err}");
}

/// docker-registry without `storage.delete.enabled` answers 405: a clear error.
#[test]
fn delete_refused_by_registry_config() {
    if !registry_tools("delete_refused_by_registry_config") {
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let t = tempdir();
    seed_registry(&reg, t.path(), "keep", None);
    // The same storage, served by a second registry whose config does not enable deletes.
    let port = free_port();
    let config = t.path().join("nodelete.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            reg.storage().display()
        ),
    )
    .unwrap();
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    while std::net::TcpStream::connect(&addr).is_err() {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("docker-registry exited with {s}");
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let e = output(stowage().args([
        "delete",
        "--tls-verify=false",
        &format!("docker://{addr}/keep"),
    ]));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(e.status.code(), Some(5));
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(err.contains("does not allow deleting"), "{err}");
    skopeo_inspect_registry(&format!("{}/keep", reg.addr), None);
}

/// The manifest digest skopeo reports for a registry image (plain http, no credentials).
fn registry_digest(image: &str) -> String {
    skopeo_inspect_registry(image, None)["Digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The manifest digest skopeo reports for `oci:LAYOUT:TAG`.
fn layout_digest(layout: &Path, tag: &str) -> String {
    let mut c = skopeo();
    c.args(["inspect", &format!("oci:{}:{tag}", layout.display())]);
    let v: Value = serde_json::from_str(&run_stdout(c)).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

#[test]
fn sync_registry_to_layouts_and_back() {
    if !registry_tools("sync_registry_to_layouts_and_back") {
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let t = tempdir();
    // Two different images under three tags of one repository.
    let a = t.path().join("a");
    let b = t.path().join("b");
    two_layer_image(&a, "v1");
    one_file_image(&b, "v2", "etc/release", "two\n");
    let repo = format!("{}/ns/app", reg.addr);
    skopeo_push(&a, "v1", &format!("{repo}:v1"), None, &[]);
    skopeo_push(&a, "v1", &format!("{repo}:stable"), None, &[]);
    skopeo_push(&b, "v2", &format!("{repo}:v2"), None, &[]);

    // Registry → directory: one layout, every tag, the registry's manifests exactly.
    let dir = t.path().join("mirror");
    run(stowage().args([
        "sync",
        "--src",
        "docker",
        "--dest",
        "oci",
        "--src-tls-verify=false",
        &repo,
        dir.to_str().unwrap(),
    ]));
    let layout = dir.join("app");
    for tag in ["v1", "stable", "v2"] {
        assert_eq!(
            layout_digest(&layout, tag),
            registry_digest(&format!("{repo}:{tag}")),
            "{tag}"
        );
    }
    // --scoped: DEST/HOST/REPO; one tag only.
    let scoped = t.path().join("scoped");
    run(stowage().args([
        "sync",
        "--src",
        "docker",
        "--dest",
        "oci",
        "--scoped",
        "--src-tls-verify=false",
        &format!("{repo}:v2"),
        scoped.to_str().unwrap(),
    ]));
    let scoped_layout = scoped.join(reg.addr.replace(':', "_")).join("ns/app");
    assert_eq!(
        layout_digest(&scoped_layout, "v2"),
        registry_digest(&format!("{repo}:v2"))
    );

    // Directory → registry: DEST/<layout dir>:TAG, same digests, same tag list.
    run(stowage().args([
        "sync",
        "--src",
        "oci",
        "--dest",
        "docker",
        "--dest-tls-verify=false",
        dir.to_str().unwrap(),
        &format!("{}/copy", reg.addr),
    ]));
    for tag in ["v1", "stable", "v2"] {
        assert_eq!(
            registry_digest(&format!("{}/copy/app:{tag}", reg.addr)),
            registry_digest(&format!("{repo}:{tag}")),
            "{tag}"
        );
    }
    let mut c = skopeo();
    c.args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/copy/app", reg.addr));
    let listed: Value = serde_json::from_str(&run_stdout(c)).unwrap();
    let mut tags: Vec<&str> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["stable", "v1", "v2"]);

    // A directory without layouts: an error naming it.
    let empty = t.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = run_failing(stowage().args([
        "sync",
        "--src",
        "oci",
        "--dest",
        "docker",
        "--dest-tls-verify=false",
        empty.to_str().unwrap(),
        &reg.addr,
    ]));
    assert!(String::from_utf8_lossy(&e.stderr).contains("OCI layouts in"));
}
