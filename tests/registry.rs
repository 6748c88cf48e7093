//! Integration tests of the native registry client against a real docker-registry, with
//! skopeo as the oracle: what stowage pulls must be what skopeo pulls (same manifest digest,
//! diffIDs and blobs).
//!
//! stowage runs with its progress lines on stderr ([`stowage_progress`]), so every pull and push
//! here also goes through the progress reporting.

mod common;

use common::*;
use std::process::Command;

const USER: &str = "tester";
const PASS: &str = "s3cret:pass";

/// stowage and skopeo pull the same image into OCI layouts; the results must be identical.
fn assert_same_pull(src: &str, stowage_args: &[&str], skopeo_args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    let digestfile = tmp.path().join("digest");
    run_stdout(
        stowage_progress()
            .args(["copy", "--src-tls-verify=false", "--digestfile"])
            .arg(&digestfile)
            .args(stowage_args)
            .arg(src)
            .arg(format!("oci:{}:t", ours.display())),
    );
    run_stdout(
        skopeo()
            .args(["copy", "-q", "--src-tls-verify=false"])
            .args(skopeo_args)
            .arg(src)
            .arg(format!("oci:{}:t", theirs.display())),
    );
    let digest = layout_manifest_digest(&theirs, "t");
    assert_eq!(layout_manifest_digest(&ours, "t"), digest);
    assert_eq!(
        std::fs::read_to_string(&digestfile).unwrap(),
        digest,
        "--digestfile"
    );
    assert_eq!(layout_diff_ids(&ours, "t"), layout_diff_ids(&theirs, "t"));
    assert_eq!(layout_blobs(&ours), layout_blobs(&theirs));
    for b in layout_blobs(&theirs) {
        assert_eq!(layout_blob(&ours, &b), layout_blob(&theirs, &b), "blob {b}");
    }
}

/// `inspect --tls-verify=false [EXTRA...] docker://IMAGE` by stowage and by skopeo, as JSON.
fn inspect_both(extra: &[&str], image: &str) -> (serde_json::Value, serde_json::Value) {
    let json = |mut c: Command| -> serde_json::Value {
        c.args(["inspect", "--tls-verify=false"])
            .args(extra)
            .arg(format!("docker://{image}"));
        serde_json::from_str(&run_stdout(c)).unwrap()
    };
    (json(stowage_progress()), json(skopeo()))
}

/// `stowage inspect --raw --tls-verify=false docker://IMAGE` (whatever its exit status).
fn raw_manifest(image: &str) -> std::process::Output {
    output(
        stowage_progress()
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{image}")),
    )
}

#[test]
fn pull_anonymous_plain_http_matches_skopeo() {
    if !registry_tools("pull_anonymous_plain_http_matches_skopeo") {
        return;
    }
    let (reg, _tmp, name, img) = seeded_registry("test/app:v1");
    assert_same_pull(&format!("docker://{name}"), &[], &[]);

    // inspect: digest, tags, layers as skopeo reports them.
    let (ours, theirs) = inspect_both(&[], &name);
    for key in [
        "Name",
        "Digest",
        "RepoTags",
        "Layers",
        "Architecture",
        "Os",
        "Env",
        "Labels",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    assert_eq!(ours["Digest"], img.manifest_digest.as_str());
    // --raw gives the manifest bytes unchanged.
    let raw = raw_manifest(&name);
    assert!(raw.status.success());
    assert_eq!(sha256(&raw.stdout), img.manifest_digest);

    // By digest.
    assert_same_pull(
        &format!("docker://{}/test/app@{}", reg.addr, img.manifest_digest),
        &[],
        &[],
    );
}

#[test]
fn pull_requires_tls_verify_false_for_plain_http() {
    if !registry_tools("pull_requires_tls_verify_false_for_plain_http") {
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let out = run_failing(stowage_progress().args([
        "copy",
        "--retry-times=0",
        &format!("docker://{}/x/y:z", reg.addr),
        &format!("oci:{}:t", dest.display()),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pinging container registry") && err.contains("--tls-verify=false"),
        "{err}"
    );
    assert!(!dest.join("index.json").exists() || layout_blobs(&dest).is_empty());
}

#[test]
fn pull_basic_auth() {
    if !registry_tools("pull_basic_auth") {
        return;
    }
    let reg = Registry::start(Auth::htpasswd(USER, PASS), None);
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("{}/private/app:v1", reg.addr);
    let creds = format!("{USER}:{PASS}");
    seed_registry(&reg, tmp.path(), "private/app:v1", Some(&creds));

    let dest = tmp.path().join("out");
    for bad in [None, Some(format!("{USER}:wrong"))] {
        let mut c = stowage_progress();
        c.args(["copy", "--src-tls-verify=false"]);
        if let Some(b) = &bad {
            c.args(["--src-creds", b]);
        }
        let out = run_failing(
            c.arg(format!("docker://{name}"))
                .arg(format!("oci:{}:t", dest.display())),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unauthorized") && err.contains("--creds"),
            "{err}"
        );
        assert!(
            layout_blobs(&dest).is_empty(),
            "nothing written after an error"
        );
    }
    assert_same_pull(
        &format!("docker://{name}"),
        &["--src-creds", &creds],
        &["--src-creds", &creds],
    );
    let out = run_stdout(stowage_progress().args([
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{name}"),
    ]));
    assert!(out.contains("\"v1\""), "{out}");
}

#[test]
fn pull_multi_platform_index() {
    if !registry_tools("pull_multi_platform_index") {
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    let (index_digest, amd, arm) = two_platform_index(&tmp.path().join("src"), "multi");
    let name = format!("{}/multi/app:1", reg.addr);
    skopeo_push(&tmp.path().join("src"), "multi", &name, None, &["--all"]);
    let src = format!("docker://{name}");
    for (arch, img) in [("amd64", &amd), ("arm64", &arm)] {
        assert_same_pull(
            &src,
            &["--override-arch", arch, "--override-os", "linux"],
            &["--override-arch", arch, "--override-os", "linux"],
        );
        let out = run_stdout(stowage_progress().args([
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            arch,
            &src,
        ]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Architecture"], arch);
        assert_eq!(
            v["Digest"],
            index_digest.as_str(),
            "inspect names the index digest"
        );
        assert_eq!(v["Layers"][0], img.layers[0].as_str());
    }
    let out = run_failing(stowage_progress().args([
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "s390x",
        &src,
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("linux/arm64/v8") && err.contains("s390x"),
        "{err}"
    );
}

#[test]
fn pull_docker_schema2_and_missing() {
    if !registry_tools("pull_docker_schema2_and_missing") {
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    two_layer_image(&tmp.path().join("src"), "v1");
    let name = format!("{}/docker/app:v2s2", reg.addr);
    skopeo_push(
        &tmp.path().join("src"),
        "v1",
        &name,
        None,
        &["--format", "v2s2"],
    );
    let (ours, theirs) = inspect_both(&[], &name);
    assert_eq!(ours["Digest"], theirs["Digest"]);
    assert_eq!(ours["Layers"], theirs["Layers"]);
    let raw = raw_manifest(&name);
    let m: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    // A pull of the schema2 image keeps its layers and diffIDs.
    let dest = tmp.path().join("out");
    run_stdout(stowage_progress().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:t", dest.display()),
    ]));
    let src_ids = layout_diff_ids(&tmp.path().join("src"), "v1");
    assert_eq!(layout_diff_ids(&dest, "t"), src_ids);

    // A Docker manifest list: the platform is chosen from it like from an OCI index.
    let (_, _, arm) = two_platform_index(&tmp.path().join("multi"), "m");
    let list = format!("{}/docker/list:1", reg.addr);
    skopeo_push(
        &tmp.path().join("multi"),
        "m",
        &list,
        None,
        &["--all", "--format", "v2s2"],
    );
    let raw = raw_manifest(&list);
    let top: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        top["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let (ours, theirs) = inspect_both(&["--override-arch=arm64"], &list);
    assert_eq!(ours["Digest"], theirs["Digest"]);
    assert_eq!(ours["Layers"], theirs["Layers"]);
    assert_eq!(ours["Layers"][0], arm.layers[0].as_str());
    assert_eq!(ours["Architecture"], "arm64");

    // Missing tag and missing repository: a clear error naming the image.
    for missing in [
        format!("{}/docker/app:nope", reg.addr),
        format!("{}/no/such:v1", reg.addr),
    ] {
        let out = run_failing(stowage_progress().args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{missing}"),
        ]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("manifest unknown") || err.contains("name unknown"),
            "{err}"
        );
        assert!(err.contains("reading manifest"), "{err}");
    }
}

/// A stowage command with a private HOME and XDG_RUNTIME_DIR under `root`, so that auth.json
/// and certs.d lookups see only the test's files.
fn stowage_home(root: &std::path::Path) -> std::process::Command {
    let mut c = stowage_progress();
    c.env("HOME", root.join("home"))
        .env("XDG_RUNTIME_DIR", root.join("run"))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("CONTAINERS_REGISTRIES_CONF");
    c
}

#[test]
fn pull_credentials_from_auth_files() {
    if !registry_tools("pull_credentials_from_auth_files") {
        return;
    }
    let reg = Registry::start(Auth::htpasswd(USER, PASS), None);
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("{}/private/app:v1", reg.addr);
    seed_registry(
        &reg,
        tmp.path(),
        "private/app:v1",
        Some(&format!("{USER}:{PASS}")),
    );
    let good = format!("{USER}:{PASS}");
    let bad = format!("{USER}:wrong");
    let pull = |cmd: &mut std::process::Command, n: u32| {
        let dest = tmp.path().join(format!("out{n}"));
        output(
            cmd.args(["--src-tls-verify=false", "--retry-times=0"])
                .arg(format!("docker://{name}"))
                .arg(format!("oci:{}:t", dest.display())),
        )
    };
    let home = tmp.path().join("h");
    // ~/.docker/config.json alone.
    write_auth_json(
        &home.join("home/.docker/config.json"),
        &[(&reg.addr, &good)],
    );
    assert!(pull(stowage_home(&home).arg("copy"), 1).status.success());
    // ~/.config/containers/auth.json comes before it: a wrong entry there wins.
    write_auth_json(
        &home.join("home/.config/containers/auth.json"),
        &[(&reg.addr, &bad)],
    );
    let out = pull(stowage_home(&home).arg("copy"), 2);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    // $XDG_RUNTIME_DIR/containers/auth.json comes first; its most specific key wins.
    write_auth_json(
        &home.join("run/containers/auth.json"),
        &[(&reg.addr, &bad), (&format!("{}/private", reg.addr), &good)],
    );
    let out = pull(stowage_home(&home).arg("copy"), 3);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --authfile and REGISTRY_AUTH_FILE replace the lookup.
    let only = tmp.path().join("only.json");
    write_auth_json(&only, &[(&reg.addr, &bad)]);
    let out = pull(
        stowage_home(&home).arg("copy").arg("--authfile").arg(&only),
        4,
    );
    assert!(!out.status.success());
    let out = pull(
        stowage_home(&home)
            .arg("copy")
            .env("REGISTRY_AUTH_FILE", &only),
        5,
    );
    assert!(!out.status.success());
    write_auth_json(&only, &[(&reg.addr, &good)]);
    let empty_home = tmp.path().join("empty");
    let out = pull(
        stowage_home(&empty_home)
            .arg("copy")
            .env("REGISTRY_AUTH_FILE", &only),
        6,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --src-creds wins over every file.
    let out = pull(
        stowage_home(&home)
            .args(["copy", "--src-creds", &good])
            .arg("--authfile")
            .arg(tmp.path().join("none.json")),
        7,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pull_through_registries_conf_mirrors() {
    if !registry_tools("pull_through_registries_conf_mirrors") {
        return;
    }
    let mirror = Registry::start(Auth::None, None);
    let primary = Registry::start(Auth::None, None);
    let dead = free_port();
    let tmp = tempfile::tempdir().unwrap();
    let img = seed_registry(&mirror, tmp.path(), "mirrored/img:v1", None);
    let conf = tmp.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
[[registry]]
prefix = "stowage.test/app"
location = "{primary}/app"
insecure = true

[[registry.mirror]]
location = "127.0.0.1:{dead}/app"
insecure = true

[[registry.mirror]]
location = "{mirror}/mirrored"
insecure = true

[[registry]]
prefix = "stowage.test/blocked"
location = "stowage.test/blocked"
blocked = true
"#,
            primary = primary.addr,
            mirror = mirror.addr
        ),
    )
    .unwrap();
    // The dead mirror is skipped, the second serves the image; registries.conf's insecure
    // allows plain http without --src-tls-verify.
    let ours = tmp.path().join("ours");
    run_stdout(
        stowage_home(tmp.path())
            .args(["copy", "--retry-times=0", "--registries-conf"])
            .arg(&conf)
            .arg("docker://stowage.test/app/img:v1")
            .arg(format!("oci:{}:t", ours.display())),
    );
    assert_eq!(layout_manifest_digest(&ours, "t"), img.manifest_digest);
    let theirs = tmp.path().join("theirs");
    run_stdout(
        skopeo()
            .arg("--registries-conf")
            .arg(&conf)
            .args(["copy", "-q", "docker://stowage.test/app/img:v1"])
            .arg(format!("oci:{}:t", theirs.display())),
    );
    assert_eq!(layout_manifest_digest(&theirs, "t"), img.manifest_digest);
    assert_eq!(layout_blobs(&ours), layout_blobs(&theirs));

    // An image no location has: the error lists every attempt.
    let out = run_failing(
        stowage_home(tmp.path())
            .args(["inspect", "--retry-times=0", "--registries-conf"])
            .arg(&conf)
            .arg("docker://stowage.test/app/missing:v1"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{dead}/app/missing"))
            && err.contains(&format!("{}/mirrored/missing", mirror.addr))
            && err.contains(&format!("{}/app/missing", primary.addr))
            && err.contains("manifest unknown"),
        "{err}"
    );

    // Blocked.
    let out = run_failing(
        stowage_home(tmp.path())
            .args(["inspect", "--registries-conf"])
            .arg(&conf)
            .arg("docker://stowage.test/blocked/x:v1"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocked"));
}

#[test]
fn pull_over_tls_with_test_ca() {
    if !registry_tools("pull_over_tls_with_test_ca") {
        return;
    }
    let ca = test_ca();
    let reg = Registry::start(Auth::None, Some(ca.server.clone()));
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &ca.ca_pem).unwrap();
    let img = two_layer_image(&tmp.path().join("src"), "v1");
    let name = format!("{}/tls/app:v1", reg.addr);
    run_stdout(
        skopeo()
            .args(["copy", "-q", "--dest-cert-dir"])
            .arg(&certs)
            .arg(format!("oci:{}:v1", tmp.path().join("src").display()))
            .arg(format!("docker://{name}")),
    );
    let src = format!("docker://{name}");
    // Unknown CA: refused, with a hint.
    let out = run_failing(stowage_home(tmp.path()).args(["inspect", "--retry-times=0", &src]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UnknownIssuer") && err.contains("--cert-dir"),
        "{err}"
    );
    // --cert-dir.
    let out = run_stdout(
        stowage_home(tmp.path())
            .args(["inspect", "--cert-dir"])
            .arg(&certs)
            .arg(&src),
    );
    assert!(out.contains(&img.manifest_digest));
    // certs.d for HOST:PORT (the user's ~/.config/containers/certs.d).
    let certs_d = tmp
        .path()
        .join("home/.config/containers/certs.d")
        .join(&reg.addr);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::write(certs_d.join("ca.crt"), &ca.ca_pem).unwrap();
    let ours = tmp.path().join("ours");
    run_stdout(
        stowage_home(tmp.path())
            .args(["copy", &src])
            .arg(format!("oci:{}:t", ours.display())),
    );
    assert_eq!(layout_manifest_digest(&ours, "t"), img.manifest_digest);
    // --tls-verify=false: any certificate.
    let out = run_stdout(stowage_progress().args(["inspect", "--tls-verify=false", &src]));
    assert!(out.contains(&img.manifest_digest));
    // Compared with skopeo.
    let theirs = tmp.path().join("theirs");
    run_stdout(
        skopeo()
            .args(["copy", "-q", "--src-cert-dir"])
            .arg(&certs)
            .arg(&src)
            .arg(format!("oci:{}:t", theirs.display())),
    );
    assert_eq!(layout_blobs(&ours), layout_blobs(&theirs));
    assert_eq!(layout_manifest_digest(&theirs, "t"), img.manifest_digest);
}

/// A token-auth registry with its token server; the image `tok/app:v1` pushed with skopeo.
fn token_registry(tmp: &std::path::Path) -> (TokenServer, Registry, Built) {
    let tokens = TokenServer::start(USER, PASS);
    let reg = Registry::start(tokens.auth(), None);
    let img = seed_registry(&reg, tmp, "tok/app:v1", Some(&format!("{USER}:{PASS}")));
    (tokens, reg, img)
}

#[test]
fn pull_bearer_token_auth_matches_skopeo() {
    if !registry_tools("pull_bearer_token_auth_matches_skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (tokens, reg, img) = token_registry(tmp.path());
    let creds = format!("{USER}:{PASS}");
    let src = format!("docker://{}/tok/app:v1", reg.addr);
    assert_same_pull(&src, &["--src-creds", &creds], &["--src-creds", &creds]);
    // Anonymous: the token server refuses, and the error says so.
    let out = run_failing(stowage_home(tmp.path()).args([
        "inspect",
        "--tls-verify=false",
        "--retry-times=0",
        &src,
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unauthorized") && err.contains("anonymous"),
        "{err}"
    );
    // A token that expired before it was used is replaced.
    let before = tokens.state.lock().unwrap().issued;
    tokens.state.lock().unwrap().expired_first = 1;
    let dest = tmp.path().join("expired");
    run_stdout(stowage_home(tmp.path()).args([
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &src,
        &format!("oci:{}:t", dest.display()),
    ]));
    assert_eq!(layout_manifest_digest(&dest, "t"), img.manifest_digest);
    assert!(tokens.state.lock().unwrap().issued >= before + 2);
}

/// Pull `repo:tag` through `proxy` into a fresh layout; returns the output and the layout.
fn pull_via(
    proxy: &FaultProxy,
    image: &str,
    tmp: &std::path::Path,
    dest_name: &str,
    extra: &[&str],
) -> (std::process::Output, std::path::PathBuf) {
    let dest = tmp.join(dest_name);
    let t = std::time::Instant::now();
    let out = output(
        stowage_home(tmp)
            .args([
                "copy",
                "--src-tls-verify=false",
                "--retry-delay=0.05",
                "--jobs=1",
            ])
            .args(extra)
            .arg(format!("docker://{}/{image}", proxy.addr()))
            .arg(format!("oci:{}:t", dest.display())),
    );
    eprintln!("pull_via {image} {extra:?}: {:?}", t.elapsed());
    (out, dest)
}

fn assert_pulled(out: &std::process::Output, dest: &std::path::Path, img: &Built) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(layout_manifest_digest(dest, "t"), img.manifest_digest);
    for l in &img.layers {
        assert_eq!(&sha256(&layout_blob(dest, l)), l);
    }
}

#[test]
fn faults_truncated_bodies_resume_with_range() {
    if !registry_tools("faults_truncated_bodies_resume_with_range") {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry(); // _reg: alive while the proxy forwards
    let layer = img.layers[0].clone();
    // Cut twice at different places: each retry resumes where the last one stopped.
    proxy.add(&layer, Fault::Truncate(30_000), 1);
    proxy.add(&layer, Fault::Truncate(40_000), 1);
    let (out, dest) = pull_via(&proxy, "f/app:v1", tmp.path(), "a", &[]);
    assert_pulled(&out, &dest, &img);
    let reqs = proxy.requests(&layer);
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[0].head.header("range"), None);
    assert_eq!(reqs[1].head.header("range"), Some("bytes=30000-"));
    assert_eq!(reqs[2].head.header("range"), Some("bytes=70000-"));

    // A server that ignores Range: the retry reads from the start and skips what was sent.
    let layer = img.layers[1].clone();
    let earlier = proxy.requests(&layer).len();
    proxy.add(&layer, Fault::Truncate(20_000), 1);
    proxy.add(&layer, Fault::IgnoreRange, 1);
    let (out, dest) = pull_via(&proxy, "f/app:v1", tmp.path(), "b", &[]);
    assert_pulled(&out, &dest, &img);
    let reqs = proxy.requests(&layer);
    assert_eq!(reqs.len(), earlier + 2, "{reqs:?}");
    assert_eq!(reqs[earlier + 1].head.header("range"), Some("bytes=20000-"));
    assert!(matches!(reqs[earlier + 1].fault, Some(Fault::IgnoreRange)));
}

#[test]
fn faults_server_errors_are_retried() {
    if !registry_tools("faults_server_errors_are_retried") {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry(); // _reg: alive while the proxy forwards
    proxy.add("/v2/", Fault::Status(503), 1);
    proxy.add("/manifests/", Fault::Status(500), 1);
    proxy.add(&img.layers[0], Fault::Status(503), 2);
    proxy.add(&img.layers[1], Fault::Status(502), 1);
    let (out, dest) = pull_via(&proxy, "f/app:v1", tmp.path(), "a", &[]);
    assert_pulled(&out, &dest, &img);
    assert_eq!(proxy.requests(&img.layers[0]).len(), 3);

    // More failures than retries: a clear error naming the layer, and nothing committed.
    proxy.add(&img.layers[1], Fault::Status(503), 10);
    let dest = layout_with_other_image(tmp.path());
    let before = std::fs::read(dest.join("index.json")).unwrap();
    let out = run_failing(
        stowage_home(tmp.path())
            .args([
                "copy",
                "--src-tls-verify=false",
                "--retry-delay=0.01",
                "--retry-times=2",
            ])
            .arg(format!("docker://{}/f/app:v1", proxy.addr()))
            .arg(format!("oci:{}:other", dest.display())),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&img.layers[1]) && err.contains("503"), "{err}");
    assert_eq!(std::fs::read(dest.join("index.json")).unwrap(), before);
}

#[test]
fn faults_corrupted_blob_is_an_error_and_not_stored() {
    if !registry_tools("faults_corrupted_blob_is_an_error_and_not_stored") {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry(); // _reg: alive while the proxy forwards
                                                     // The destination already holds another image; it must be unchanged afterwards.
    let dest = layout_with_other_image(tmp.path());
    let index_before = std::fs::read(dest.join("index.json")).unwrap();
    let blobs_before = layout_blobs(&dest);
    // The second layer is corrupted on every download (once is fetched again and
    // succeeds: tests/interrupt.rs), after the first was copied.
    proxy.add(&img.layers[1], Fault::Corrupt(1000), 100);
    let out = run_failing(
        stowage_home(tmp.path())
            .args(["copy", "--src-tls-verify=false", "--jobs=1"])
            .arg(format!("docker://{}/f/app:v1", proxy.addr()))
            .arg(format!("oci:{}:t", dest.display())),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("digest mismatch") && err.contains(&img.layers[1]),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dest.join("index.json")).unwrap(),
        index_before
    );
    assert_eq!(
        layout_blobs(&dest),
        blobs_before,
        "no blob of the failed copy was kept"
    );
    assert_blobs_intact(&dest);
    assert!(!layout_blobs(&dest).contains(&img.layers[1]));
}

#[test]
fn faults_stalls_time_out_and_trickles_complete() {
    if !registry_tools("faults_stalls_time_out_and_trickles_complete") {
        return;
    }
    let (_reg, proxy, tmp, img) = faulty_registry(); // _reg: alive while the proxy forwards
                                                     // One stall mid-body: the idle timeout ends it, the retry resumes.
    proxy.add(&img.layers[0], Fault::Stall(10_000), 1);
    proxy.add(
        &img.layers[1],
        Fault::Trickle {
            chunk: 8192,
            delay_ms: 1,
        },
        1,
    );
    let (out, dest) = pull_via(&proxy, "f/app:v1", tmp.path(), "a", &["--idle-timeout=1"]);
    assert_pulled(&out, &dest, &img);
    let reqs = proxy.requests(&img.layers[0]);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].head.header("range"), Some("bytes=10000-"));

    // A connection that always stalls: an error after the retries, never a hang.
    proxy.add(&img.layers[1], Fault::Stall(0), 100);
    let start = std::time::Instant::now();
    let (out, dest) = pull_via(
        &proxy,
        "f/app:v1",
        tmp.path(),
        "b",
        &["--idle-timeout=1", "--retry-times=2"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stalled") && err.contains(&img.layers[1]),
        "{err}"
    );
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "ended in {:?}",
        start.elapsed()
    );
    assert!(
        !dest.join("index.json").exists()
            || !std::fs::read_to_string(dest.join("index.json"))
                .unwrap()
                .contains(&img.manifest_digest)
    );
    // A stalled manifest request is bounded too.
    proxy.add("/manifests/", Fault::Stall(0), 100);
    let (out, _) = pull_via(
        &proxy,
        "f/app:v1",
        tmp.path(),
        "c",
        &["--idle-timeout=1", "--retry-times=1"],
    );
    assert!(!out.status.success());
}

#[test]
fn faults_redirects_do_not_leak_credentials() {
    if !registry_tools("faults_redirects_do_not_leak_credentials") {
        return;
    }
    let reg = Registry::start(Auth::htpasswd(USER, PASS), None);
    let proxy = FaultProxy::start(&reg.addr);
    let blobs = BlobServer::start(reg.storage());
    let tmp = tempfile::tempdir().unwrap();
    let creds = format!("{USER}:{PASS}");
    let img = seed_registry(&reg, tmp.path(), "f/app:v1", Some(&creds));
    proxy.add("/blobs/", Fault::Redirect(blobs.addr().to_string()), 100);
    let (out, dest) = pull_via(
        &proxy,
        "f/app:v1",
        tmp.path(),
        "a",
        &["--src-creds", &creds],
    );
    assert_pulled(&out, &dest, &img);
    assert_eq!(
        *blobs.served.lock().unwrap(),
        3,
        "config and two layers came from the blob server"
    );
    assert!(
        blobs.authorizations.lock().unwrap().is_empty(),
        "{:?}",
        blobs.authorizations.lock().unwrap()
    );
    // The registry itself did get the credentials.
    assert!(proxy.requests("/manifests/").iter().any(|s| s
        .head
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic "))));
}

#[test]
fn faults_token_rejected_mid_pull_is_refreshed() {
    if !registry_tools("faults_token_rejected_mid_pull_is_refreshed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (tokens, reg, img) = token_registry(tmp.path());
    let proxy = FaultProxy::start(&reg.addr);
    let challenge = format!(
        r#"Bearer realm="{}",service="{}",scope="repository:tok/app:pull",error="invalid_token""#,
        tokens.realm(),
        tokens.service
    );
    proxy.add(&img.layers[1], Fault::Unauthorized(challenge), 1);
    let before = tokens.state.lock().unwrap().issued;
    let creds = format!("{USER}:{PASS}");
    let (out, dest) = pull_via(
        &proxy,
        "tok/app:v1",
        tmp.path(),
        "a",
        &["--src-creds", &creds],
    );
    assert_pulled(&out, &dest, &img);
    assert_eq!(
        tokens.state.lock().unwrap().issued,
        before + 2,
        "one token, then one refresh"
    );
    let reqs = proxy.requests(&img.layers[1]);
    assert_eq!(reqs.len(), 2);
    assert_ne!(
        reqs[0].head.header("authorization"),
        reqs[1].head.header("authorization")
    );
}

#[test]
fn push_from_oci_layout_matches_skopeo() {
    if !registry_tools("push_from_oci_layout_matches_skopeo") {
        return;
    }
    let reg = Registry::start(Auth::htpasswd(USER, PASS), None);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let img = two_layer_image(&src, "v1");
    let creds = format!("{USER}:{PASS}");
    let name = format!("{}/push/app:v1", reg.addr);
    // Without credentials: refused, nothing pushed under the tag.
    let out = run_failing(stowage_home(tmp.path()).args([
        "copy",
        "--dest-tls-verify=false",
        "--retry-times=0",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{name}"),
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    run_stdout(stowage_home(tmp.path()).args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{name}"),
    ]));
    let ours = skopeo_inspect_registry(&name, Some(&creds));
    assert_eq!(ours["Digest"], img.manifest_digest.as_str());
    // skopeo pushes the same image to another tag: the registry holds identical manifests.
    skopeo_push(
        &src,
        "v1",
        &format!("{}/push/app:sk", reg.addr),
        Some(&creds),
        &[],
    );
    let theirs = skopeo_inspect_registry(&format!("{}/push/app:sk", reg.addr), Some(&creds));
    assert_eq!(ours["Digest"], theirs["Digest"]);
    assert_eq!(ours["Layers"], theirs["Layers"]);
    // What comes back is what went in.
    let back = skopeo_pull(&name, Some(&creds), tmp.path(), "back");
    assert_eq!(layout_manifest_digest(&back, "t"), img.manifest_digest);
    assert_eq!(layout_blobs(&back), layout_blobs(&src));
}

#[test]
fn push_reuses_existing_blobs_and_mounts_across_repositories() {
    if !registry_tools("push_reuses_existing_blobs_and_mounts_across_repositories") {
        return;
    }
    let (reg, proxy, tmp) = proxied_registry(Auth::None);
    let src = tmp.path().join("src");
    let img = two_layer_image(&src, "v1");
    let push = |from: &str, to: &str| {
        run_stdout(stowage_home(tmp.path()).args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            &format!("docker://{}/{to}", proxy.addr()),
        ]));
    };
    let uploads = |repo: &str| {
        proxy
            .requests(&format!("/v2/{repo}/blobs/uploads/"))
            .into_iter()
            .filter(|s| s.head.method == "POST")
            .collect::<Vec<_>>()
    };
    push(&format!("oci:{}:v1", src.display()), "a/app:v1");
    assert_eq!(uploads("a/app").len(), 3, "two layers and the config");
    // Again: everything is there, only HEADs and the manifest.
    push(&format!("oci:{}:v1", src.display()), "a/app:v2");
    assert_eq!(
        uploads("a/app").len(),
        3,
        "nothing uploaded the second time"
    );
    // Registry to registry, another repository: layers are mounted, not uploaded.
    push(&format!("docker://{}/a/app:v1", proxy.addr()), "b/app:v1");
    let b = uploads("b/app");
    let mounts = b
        .iter()
        .filter(|s| s.head.target.contains("mount="))
        .count();
    assert_eq!(mounts, 2, "{b:?}");
    assert!(proxy
        .requests("/v2/b/app/blobs/uploads/")
        .iter()
        .all(|s| s.head.method != "PATCH"));
    assert!(
        proxy
            .requests("/v2/a/app/blobs/")
            .iter()
            .filter(|s| s.head.method == "GET")
            .count()
            <= 1,
        "layers were not read from a"
    );
    assert_eq!(
        skopeo_inspect_registry(&format!("{}/b/app:v1", reg.addr), None)["Digest"],
        img.manifest_digest.as_str()
    );
}

#[test]
fn push_chunked_and_recompressed() {
    if !registry_tools("push_chunked_and_recompressed") {
        return;
    }
    let (reg, proxy, tmp) = proxied_registry(Auth::None);
    let src = tmp.path().join("src");
    // One layer larger than the 8 MiB upload chunk.
    let img = one_file_image(&src, "big", "big", SplitMix64::new(7).bytes(9 << 20));
    let source_ids = layout_diff_ids(&src, "big");
    for (tag, extra) in [
        ("gz", vec![]),
        ("zst", vec!["--dest-compress-format", "zstd"]),
    ] {
        run_stdout(
            stowage_home(tmp.path())
                .args(["copy", "--dest-tls-verify=false"])
                .args(&extra)
                .arg(format!("oci:{}:big", src.display()))
                .arg(format!("docker://{}/big/app:{tag}", proxy.addr())),
        );
        let back = skopeo_pull(
            &format!("{}/big/app:{tag}", reg.addr),
            None,
            tmp.path(),
            tag,
        );
        assert_eq!(layout_diff_ids(&back, "t"), source_ids, "{tag}");
        let m: serde_json::Value =
            serde_json::from_slice(&layout_blob(&back, &layout_manifest_digest(&back, "t")))
                .unwrap();
        let media_type = m["layers"][0]["mediaType"].as_str().unwrap().to_string();
        if tag == "gz" {
            assert_eq!(layout_manifest_digest(&back, "t"), img.manifest_digest);
        } else {
            assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
            assert_ne!(layout_manifest_digest(&back, "t"), img.manifest_digest);
        }
    }
    let patches = proxy
        .requests("/v2/big/app/blobs/uploads/")
        .into_iter()
        .filter(|s| s.head.method == "PATCH")
        .collect::<Vec<_>>();
    assert_eq!(
        patches.len(),
        2,
        "one 8 MiB chunk per upload, the rest with the PUT"
    );
    assert!(patches
        .iter()
        .all(|p| p.head.header("content-range") == Some(&format!("0-{}", (8 << 20) - 1))));
}

#[test]
fn push_with_token_auth_and_registries_conf() {
    if !registry_tools("push_with_token_auth_and_registries_conf") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_tokens, reg, img) = token_registry(tmp.path());
    let creds = format!("{USER}:{PASS}");
    // Registry to registry inside a token registry: the mount needs pull access to the
    // source repository in the same token.
    run_stdout(stowage_home(tmp.path()).args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        &creds,
        "--dest-creds",
        &creds,
        &format!("docker://{}/tok/app:v1", reg.addr),
        &format!("docker://{}/tok/copy:v1", reg.addr),
    ]));
    assert_eq!(
        skopeo_inspect_registry(&format!("{}/tok/copy:v1", reg.addr), Some(&creds))["Digest"],
        img.manifest_digest.as_str()
    );
    // registries.conf: pushes go to the location (never a mirror); blocked is refused.
    let conf = tmp.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"stowage.test/p\"\nlocation = \"{}/relocated\"\ninsecure = true\n[[registry.mirror]]\nlocation = \"127.0.0.1:1/never\"\n\n[[registry]]\nprefix = \"stowage.test/blocked\"\nlocation = \"stowage.test/blocked\"\nblocked = true\n",
            reg.addr
        ),
    )
    .unwrap();
    run_stdout(
        stowage_home(tmp.path())
            .args(["copy", "--dest-creds", &creds, "--registries-conf"])
            .arg(&conf)
            .arg(format!("oci:{}:v1", tmp.path().join("src").display()))
            .arg("docker://stowage.test/p/app:v1"),
    );
    assert_eq!(
        skopeo_inspect_registry(&format!("{}/relocated/app:v1", reg.addr), Some(&creds))["Digest"],
        img.manifest_digest.as_str()
    );
    let out = run_failing(
        stowage_home(tmp.path())
            .args(["copy", "--registries-conf"])
            .arg(&conf)
            .arg(format!("oci:{}:v1", tmp.path().join("src").display()))
            .arg("docker://stowage.test/blocked/app:v1"),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocked"));
}

#[test]
fn push_from_containers_storage_compresses_on_the_fly() {
    if !registry_tools("push_from_containers_storage_compresses_on_the_fly") {
        return;
    }
    if !is_root() {
        // Writing a containers-storage store (ownership, whiteout devices) needs root.
        skip(
            "push_from_containers_storage_compresses_on_the_fly",
            "needs root",
        );
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    two_layer_image(&src, "v1");
    let source_ids = layout_diff_ids(&src, "v1");
    let store = format!(
        "containers-storage:[overlay@{}+{}]",
        tmp.path().join("root").display(),
        tmp.path().join("runroot").display()
    );
    run_stdout(stowage_progress().args([
        "copy",
        &format!("oci:{}:v1", src.display()),
        &format!("{store}cs/app:v1"),
    ]));
    for (tag, extra, media_type) in [
        ("gz", vec![], "application/vnd.oci.image.layer.v1.tar+gzip"),
        (
            "zst",
            vec!["--dest-compress-format", "zstd"],
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ] {
        run_stdout(
            stowage_progress()
                .args(["copy", "--dest-tls-verify=false"])
                .args(&extra)
                .arg(format!("{store}cs/app:v1"))
                .arg(format!("docker://{}/cs/app:{tag}", reg.addr)),
        );
        let back = skopeo_pull(&format!("{}/cs/app:{tag}", reg.addr), None, tmp.path(), tag);
        assert_eq!(layout_diff_ids(&back, "t"), source_ids, "{tag}");
        let m: serde_json::Value =
            serde_json::from_slice(&layout_blob(&back, &layout_manifest_digest(&back, "t")))
                .unwrap();
        for l in m["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], media_type);
        }
    }
}

#[test]
fn push_retries_server_errors() {
    if !registry_tools("push_retries_server_errors") {
        return;
    }
    let (reg, proxy, tmp) = proxied_registry(Auth::None);
    let src = tmp.path().join("src");
    let img = two_layer_image(&src, "v1");
    proxy.add("/blobs/uploads/", Fault::Status(503), 2);
    proxy.add("/manifests/v1", Fault::Status(500), 1);
    run_stdout(stowage_home(tmp.path()).args([
        "copy",
        "--dest-tls-verify=false",
        "--retry-delay=0.01",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{}/r/app:v1", proxy.addr()),
    ]));
    assert_eq!(
        skopeo_inspect_registry(&format!("{}/r/app:v1", reg.addr), None)["Digest"],
        img.manifest_digest.as_str()
    );
    // Failing for good: an error, and the tag does not exist.
    proxy.add("/blobs/uploads/", Fault::Status(503), 100);
    let other = tmp.path().join("other");
    one_file_image(&other, "o", "y", SplitMix64::new(9).bytes(1000));
    let out = run_failing(stowage_home(tmp.path()).args([
        "copy",
        "--dest-tls-verify=false",
        "--retry-delay=0.01",
        "--retry-times=1",
        &format!("oci:{}:o", other.display()),
        &format!("docker://{}/r/other:v1", proxy.addr()),
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("503"));
    // Nothing was tagged.
    run_failing(skopeo().args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{}/r/other:v1", reg.addr),
    ]));
}

#[test]
fn progress_json_lines_and_plain_lines() {
    if !registry_tools("progress_json_lines_and_plain_lines") {
        return;
    }
    let (_reg, tmp, name, img) = seeded_registry("prog/app:v1");
    let dest = tmp.path().join("out");
    let pull = |extra: &[&str]| {
        output(
            stowage_progress()
                .args(["copy", "--src-tls-verify=false"])
                .args(extra)
                .arg(format!("docker://{name}"))
                .arg(format!("oci:{}:t", dest.display())),
        )
    };
    // JSON Lines on fd 1 (stdout), plain lines on stderr (not a terminal here).
    let out = pull(&["--progress-fd", "1"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"type": "Start", "version": "0.1.0"})
    );
    let last_bytes = lines
        .iter()
        .rev()
        .find(|v| v["type"] == "ProgressBytes")
        .unwrap();
    assert_eq!(last_bytes["id"], format!("docker://{name}"));
    assert_eq!(last_bytes["steps"], 2);
    assert_eq!(last_bytes["stepsTotal"], 2);
    assert_eq!(last_bytes["bytes"], last_bytes["bytesTotal"]);
    let ids: Vec<&str> = last_bytes["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for l in &img.layers {
        assert!(ids.contains(&l.as_str()), "{ids:?}");
    }
    assert_eq!(lines.last().unwrap()["type"], "ProgressSteps");
    let err = String::from_utf8(out.stderr).unwrap();
    for l in &img.layers {
        assert!(
            err.contains(&format!("Copying blob {} done", &l[..19])),
            "{err}"
        );
    }
    assert!(
        err.contains("Writing manifest to image destination"),
        "{err}"
    );
    // Again: layers are reported as already there; -q silences stderr but not the fd.
    let out = pull(&["-q", "--progress-fd", "1"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Copying"));
    let last: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .rfind(|l| l.contains("ProgressBytes"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(last["stepsCached"], 2);
    let out = pull(&[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped: already exists"));
    // A descriptor that is not open is a clear error.
    let out = pull(&["--progress-fd", "97"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--progress-fd 97"));
}

#[test]
fn auth_challenge_learned_from_a_later_401() {
    if !registry_tools("auth_challenge_learned_from_a_later_401") {
        return;
    }
    let (reg, proxy, tmp) = proxied_registry(Auth::htpasswd(USER, PASS));
    let creds = format!("{USER}:{PASS}");
    let img = seed_registry(&reg, tmp.path(), "f/app:v1", Some(&creds));
    // The ping is answered 200 without a challenge (anonymous pings allowed); the manifest
    // request then gets the registry's Basic challenge, and the client adopts it.
    proxy.add("=/v2/", Fault::Status(200), 1);
    let (out, dest) = pull_via(
        &proxy,
        "f/app:v1",
        tmp.path(),
        "a",
        &["--src-creds", &creds],
    );
    assert_pulled(&out, &dest, &img);
    let manifests = proxy.requests("/manifests/");
    assert_eq!(manifests[0].head.header("authorization"), None);
    assert!(manifests[1]
        .head
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
}

#[test]
fn pull_with_identity_token_from_auth_file() {
    if !registry_tools("pull_with_identity_token_from_auth_file") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (tokens, reg, img) = token_registry(tmp.path());
    let authfile = tmp.path().join("auth.json");
    let write = |token: &str| {
        std::fs::write(
            &authfile,
            serde_json::to_vec(
                &serde_json::json!({"auths": {reg.addr.clone(): {"identitytoken": token}}}),
            )
            .unwrap(),
        )
        .unwrap()
    };
    write(REFRESH_TOKEN);
    let dest = tmp.path().join("out");
    run_stdout(
        stowage_home(tmp.path())
            .args(["copy", "--src-tls-verify=false", "--authfile"])
            .arg(&authfile)
            .arg(format!("docker://{}/tok/app:v1", reg.addr))
            .arg(format!("oci:{}:t", dest.display())),
    );
    assert_eq!(layout_manifest_digest(&dest, "t"), img.manifest_digest);
    assert!(tokens.state.lock().unwrap().oauth_posts >= 1);
    write("revoked");
    let out = run_failing(
        stowage_home(tmp.path())
            .args([
                "inspect",
                "--tls-verify=false",
                "--retry-times=0",
                "--authfile",
            ])
            .arg(&authfile)
            .arg(format!("docker://{}/tok/app:v1", reg.addr)),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity token"), "{err}");
}

/// `stowage image cmd pull` fetches several registry images into bootc's storage at once, as
/// podman would name them; podman reads them; `image cmd push` sends one back unchanged.
#[test]
fn image_cmd_pull_and_push_with_bootc_storage() {
    let test = "image_cmd_pull_and_push_with_bootc_storage";
    if !registry_tools(test) {
        return;
    }
    if !is_root() {
        skip(test, "writing containers-storage needs root here");
        return;
    }
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    let a = two_layer_image(&tmp.path().join("a"), "v1");
    let b = one_file_image(&tmp.path().join("b"), "v2", "b/one", b"one");
    let name_a = format!("{}/bootc/a:v1", reg.addr);
    let name_b = format!("{}/bootc/b:v2", reg.addr);
    skopeo_push(&tmp.path().join("a"), "v1", &name_a, None, &[]);
    skopeo_push(&tmp.path().join("b"), "v2", &name_b, None, &[]);

    // bootc's storage; podman reads it, and dropping it unmounts what podman mounted.
    let store = PodmanStore::new();
    let (root, runroot) = (&store.root, &store.runroot);
    let image = |args: &[&str]| {
        let mut c = stowage_progress();
        c.arg("image")
            .arg("--storage-root")
            .arg(root)
            .arg("--runroot")
            .arg(runroot)
            .args(args);
        c
    };
    run_stdout(&mut image(&[
        "cmd",
        "pull",
        "--tls-verify=false",
        &name_a,
        &name_b,
    ]));
    let have_podman = oracle("podman", test);
    for (name, img) in [(&name_a, &a), (&name_b, &b)] {
        let out = run_stdout(&mut image(&["cmd", "inspect", name]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v[0]["Digest"], img.manifest_digest.as_str(), "{name}");
        if have_podman {
            let out = run_stdout(store.podman(["image", "inspect", name]));
            let p: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                p[0]["Digest"],
                img.manifest_digest.as_str(),
                "podman: {name}"
            );
            assert_eq!(
                p[0]["RootFS"]["Layers"], v[0]["RootFS"]["Layers"],
                "podman: {name}"
            );
        }
    }
    // Push a back under a new name: the registry gets the same layers (diffIDs) and config.
    let pushed = format!("{}/bootc/pushed:1", reg.addr);
    run_stdout(&mut image(&[
        "cmd",
        "push",
        "--tls-verify=false",
        &name_a,
        &pushed,
    ]));
    let out = tmp.path().join("out");
    run_stdout(
        skopeo()
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{pushed}"))
            .arg(format!("oci:{}:t", out.display())),
    );
    assert_eq!(
        layout_diff_ids(&out, "t"),
        layout_diff_ids(&tmp.path().join("a"), "v1")
    );
    // A short name resolves through registries.conf's unqualified-search-registries, trying
    // each in order (the first one here has no such image), like podman.
    let other = Registry::start(Auth::None, None);
    let conf = tmp.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "unqualified-search-registries = [\"{}\", \"{}\"]\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            other.addr, reg.addr, other.addr, reg.addr
        ),
    )
    .unwrap();
    let mut c = image(&["cmd", "pull", "--registries-conf"]);
    c.arg(&conf).arg("bootc/b:v2");
    run_stdout(&mut c);
    run_stdout(&mut image(&["cmd", "exists", &name_b]));
    // `pull --bound`: the deployment's logically bound images that bootc's store lacks
    // (a is there; c is not), pulled; the ones present are left alone.
    let c_img = one_file_image(&tmp.path().join("c"), "v3", "c/one", b"c");
    let name_c = format!("{}/bootc/c:v3", reg.addr);
    skopeo_push(&tmp.path().join("c"), "v3", &name_c, None, &[]);
    let deploy = tmp.path().join("deploy");
    let quadlets = deploy.join("usr/share/containers/systemd");
    std::fs::create_dir_all(deploy.join("usr/lib/bootc/bound-images.d")).unwrap();
    std::fs::create_dir_all(&quadlets).unwrap();
    for (file, image_name) in [("a.image", &name_a), ("c.container", &name_c)] {
        let section = if file.ends_with(".image") {
            "Image"
        } else {
            "Container"
        };
        std::fs::write(
            quadlets.join(file),
            format!("[{section}]\nImage={image_name}\n"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            format!("/usr/share/containers/systemd/{file}"),
            deploy.join("usr/lib/bootc/bound-images.d").join(file),
        )
        .unwrap();
    }
    let mut c = image(&["--root"]);
    c.arg(&deploy)
        .args(["cmd", "pull", "--bound", "--tls-verify=false"]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 logically bound image(s)") && err.contains("1 present, 1 to pull"),
        "{err}"
    );
    let out = run_stdout(&mut image(&["cmd", "inspect", &name_c]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Digest"], c_img.manifest_digest.as_str());
    // Again: nothing left to pull.
    let mut c = image(&["--root"]);
    c.arg(&deploy)
        .args(["cmd", "pull", "--bound", "--tls-verify=false"]);
    let err = String::from_utf8_lossy(&run(c).stderr).into_owned();
    assert!(err.contains("2 present, 0 to pull"), "{err}");
    // A missing image fails that pull only, naming it, and exits 3 (image not found).
    let missing = format!("{}/bootc/missing:1", reg.addr);
    let o = output(&mut image(&[
        "cmd",
        "pull",
        "--tls-verify=false",
        &name_b,
        &missing,
    ]));
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
