//! The signature policy (policy.json, issue 11) against the real tools.
//!
//! 1. Scope selection and `insecureAcceptAnything` / `reject`: for a set of policies and
//!    images (oci: layouts, registry images), stowage accepts exactly what skopeo accepts, and a
//!    refused copy leaves the destination as it was (an OCI layout is not even created, a
//!    containers-storage store podman reads is unchanged), with a message naming the scope.
//! 2. `sigstoreSigned`: Debian's skopeo 1.9 has sigstore disabled ("Debian-local change:
//!    sigstore disabled", checked below, so it cannot be the oracle), so the oracle is openssl:
//!    keys are made with `openssl genpkey` at test time, payloads signed with `openssl dgst
//!    -sign`, and the `sha256-<hex>.sig` attachment is pushed to the local docker-registry
//!    by skopeo from an OCI layout; stowage must accept it with the right key and identity and
//!    refuse it otherwise. In the other direction, signatures stowage pushes
//!    (`--sign-by-sigstore-private-key`) are read back with skopeo and verified with
//!    `openssl dgst -verify` against the public key stowage wrote.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::STANDARD;

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// `stowage --policy POLICY --registries.d RD copy --src-tls-verify=false SRC DST`.
fn stowage_copy(policy: &Path, rd: Option<&Path>, src: &str, dst: &str) -> Command {
    let mut c = stowage_without_policy();
    c.arg("--quiet").arg("--policy").arg(policy).arg("copy");
    if let Some(rd) = rd {
        c.arg("--registries.d").arg(rd);
    }
    c.args([
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        src,
        dst,
    ]);
    c
}

fn skopeo_copy(policy: &Path, src: &str, dst: &str) -> Command {
    let mut c = skopeo();
    c.arg("--policy").arg(policy).args([
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        src,
        dst,
    ]);
    c
}

/// Every file under `dir` with its bytes (empty for a missing directory).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if e.file_type().unwrap().is_file() {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn scopes_accept_and_reject_exactly_as_skopeo_does() {
    let test = "scopes_accept_and_reject_exactly_as_skopeo_does";
    if !registry_tools(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(Auth::None, None);
    let img = seed_registry(&reg, tmp.path(), "ns/app", None);
    let basic = fixture("basic");
    let layout = basic.layout.canonicalize().unwrap();
    let sources = [
        format!("docker://{}/ns/app", reg.addr),
        basic.oci_ref(),
        format!("oci:{}:v1", tmp.path().join("src").display()),
    ];
    let reject = json!([{"type": "reject"}]);
    let accept = json!([{"type": "insecureAcceptAnything"}]);
    let policies = [
        json!({"default": accept}),
        json!({"default": reject}),
        json!({"default": reject, "transports": {"docker": {"": accept}}}),
        json!({"default": reject, "transports": {"docker": {(format!("{}/ns", reg.addr)): accept}}}),
        json!({"default": accept, "transports": {"docker": {(format!("{}/ns/app:latest", reg.addr)): reject, (format!("{}/ns", reg.addr)): accept}}}),
        json!({"default": accept, "transports": {"docker": {"127.0.0.1": reject}}}),
        json!({"default": accept, "transports": {"docker": {(reg.addr.clone()): reject}}}),
        json!({"default": reject, "transports": {"oci": {(layout.display().to_string()): accept}}}),
        json!({"default": accept, "transports": {"oci": {(layout.parent().unwrap().display().to_string()): reject}}}),
        json!({"default": accept, "transports": {"oci": {"": reject}, "docker": {"": accept}}}),
    ];
    for (i, policy) in policies.iter().enumerate() {
        let path = write(
            &tmp.path().join(format!("policy-{i}.json")),
            &policy.to_string(),
        );
        for (j, src) in sources.iter().enumerate() {
            let ours_dir = tmp.path().join(format!("ours-{i}-{j}"));
            let theirs_dir = tmp.path().join(format!("theirs-{i}-{j}"));
            let ours = stowage_copy(&path, None, src, &format!("oci:{}:t", ours_dir.display()))
                .output()
                .unwrap();
            let theirs = skopeo_copy(&path, src, &format!("oci:{}:t", theirs_dir.display()))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&ours.stderr);
            assert_eq!(
                ours.status.success(),
                theirs.status.success(),
                "policy {policy} for {src}: stowage {stderr}, skopeo {}",
                String::from_utf8_lossy(&theirs.stderr)
            );
            if ours.status.success() {
                assert_eq!(
                    layout_manifest_digest(&ours_dir, "t"),
                    layout_manifest_digest(&theirs_dir, "t")
                );
            } else {
                assert!(
                    stderr.contains("rejected by policy")
                        && stderr.contains("scope ")
                        && stderr.contains(&path.display().to_string()),
                    "the refusal must name the policy and its scope: {stderr}"
                );
                assert!(!ours_dir.exists(), "a refused copy created {ours_dir:?}");
            }
        }
    }
    let _ = img;
}

#[test]
fn a_refused_image_leaves_containers_storage_unchanged() {
    let test = "a_refused_image_leaves_containers_storage_unchanged";
    if !require(test, &["podman"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = PodmanStore::new();
    let dst = |name: &str| {
        format!(
            "containers-storage:[overlay@{}+{}]{name}",
            store.root.display(),
            store.runroot.display()
        )
    };
    run(stowage().args([
        "copy",
        &fixture("basic").oci_ref(),
        &dst("localhost/kept:1"),
    ]));
    let before = snapshot(&store.root);
    let policy = write(
        &tmp.path().join("p.json"),
        &json!({"default": [{"type": "insecureAcceptAnything"}],
                "transports": {"oci": {"": [{"type": "reject"}]}}})
        .to_string(),
    );
    let out = run_failing(stowage_copy(
        &policy,
        None,
        &fixture("links").oci_ref(),
        &dst("localhost/refused:1"),
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scope transports.oci.\"\""), "{stderr}");
    assert_eq!(
        snapshot(&store.root),
        before,
        "the store changed after a refused copy"
    );
    let images = run_stdout(store.podman(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(images.trim(), "localhost/kept:1");
}

#[test]
fn without_a_policy_file_copies_are_refused_unless_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none.json");
    let dst = tmp.path().join("out");
    let src = fixture("basic").oci_ref();
    let out = run_failing(stowage_copy(
        &missing,
        None,
        &src,
        &format!("oci:{}:t", dst.display()),
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(!dst.exists());
    if oracle(
        "skopeo",
        "without_a_policy_file_copies_are_refused_unless_insecure",
    ) {
        run_failing(skopeo_copy(
            &missing,
            &src,
            &format!("oci:{}:t", tmp.path().join("sk").display()),
        ));
    }
    let bad = write(
        &tmp.path().join("bad.json"),
        r#"{"default":[{"type":"signedBy","keyPath":"/k"}]}"#,
    );
    let out = run_failing(stowage_copy(
        &bad,
        None,
        &src,
        &format!("oci:{}:t", dst.display()),
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid policy") && stderr.contains("keyType"),
        "{stderr}"
    );
    run(stowage_without_policy()
        .args(["--quiet", "--insecure-policy", "copy", &src])
        .arg(format!("oci:{}:t", dst.display())));
    assert!(dst.join("index.json").exists());
}

/// An openssl P-256 key pair in `dir`: (private PKCS#8 PEM, public SPKI PEM).
fn openssl_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    run(cmd(
        "openssl",
        [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ],
    )
    .arg(&key));
    run(cmd("openssl", ["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public));
    (key, public)
}

/// Sign `payload` with openssl; the base64 DER signature.
fn openssl_sign(dir: &Path, key: &Path, payload: &[u8]) -> String {
    let p = dir.join("payload.bin");
    let s = dir.join("payload.sig");
    std::fs::write(&p, payload).unwrap();
    run(cmd("openssl", ["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg("-out")
        .arg(&s)
        .arg(&p));
    B64.encode(std::fs::read(&s).unwrap())
}

fn cosign_payload(digest: &str, reference: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .unwrap()
}

/// Push an attachment manifest with `signatures` (payload, base64 signature) as
/// `REPO:sha256-<hex>.sig`, through skopeo from an OCI layout written here.
fn push_signatures(dir: &Path, repo: &str, digest: &str, signatures: &[(Vec<u8>, String)]) {
    let layout = dir.join(format!("sig-{}", &digest[7..19]));
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let blob = |bytes: &[u8]| -> String {
        let d = sha256(bytes);
        std::fs::write(layout.join("blobs/sha256").join(&d[7..]), bytes).unwrap();
        d
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (payload, sig) in signatures {
        let d = blob(payload);
        diff_ids.push(d.clone());
        layers.push(json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": d, "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": sig}
        }));
    }
    let config = serde_json::to_vec(&json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let cd = blob(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": layers
    }))
    .unwrap();
    let md = blob(&manifest);
    std::fs::write(
        layout.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "sig"}}]}).to_string(),
    )
    .unwrap();
    let tag = format!("sha256-{}.sig", &digest[7..]);
    run(skopeo()
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--preserve-digests",
        ])
        .arg(format!("oci:{}:sig", layout.display()))
        .arg(format!("docker://{repo}:{tag}")));
}

/// skopeo copies the signature attachment `image` (digests preserved) into tag `tag` of the
/// layout `layout`; returns its manifest.
fn signature_manifest(image: &str, layout: &Path, tag: &str) -> Value {
    run(skopeo()
        .args([
            "--insecure-policy",
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--preserve-digests",
            image,
        ])
        .arg(oci_ref(layout, tag)));
    serde_json::from_slice(&layout_blob(layout, &layout_manifest_digest(layout, tag))).unwrap()
}

fn manifest_digest_of(image: &str) -> String {
    let raw = run(skopeo().args(["inspect", "--raw", "--tls-verify=false", image])).stdout;
    sha256(&raw)
}

#[test]
fn sigstore_signatures_made_with_openssl_are_verified() {
    let test = "sigstore_signatures_made_with_openssl_are_verified";
    if !registry_tools(test) || !oracle("openssl", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let reg = Registry::start(Auth::None, None);
    for (fx, repo) in [("basic", "app"), ("links", "other"), ("links", "unsigned")] {
        let dest = format!("{}/signed/{repo}:1", reg.addr);
        skopeo_push(&fixture(fx).layout, fx, &dest, None, &[]);
    }
    let app = format!("{}/signed/app", reg.addr);
    let digest = manifest_digest_of(&format!("docker://{app}:1"));
    let (key, public) = openssl_keys(t, "good");
    let (wrong_key, _) = openssl_keys(t, "wrong");
    let rd = t.join("registries.d");
    std::fs::create_dir(&rd).unwrap();
    write(
        &rd.join("sigstore.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    );

    // app:1 carries a cosign-style signature (identity without tag) by the right key, and
    // one by another key; other:1 a signature by the right key for app's digest.
    let good = cosign_payload(&digest, &app);
    let good_sig = openssl_sign(t, &key, &good);
    let by_wrong = openssl_sign(t, &wrong_key, &good);
    push_signatures(
        t,
        &app,
        &digest,
        &[(good.clone(), by_wrong), (good.clone(), good_sig.clone())],
    );
    let other = format!("{}/signed/other", reg.addr);
    let other_digest = manifest_digest_of(&format!("docker://{other}:1"));
    push_signatures(
        t,
        &other,
        &other_digest,
        &[(good.clone(), good_sig.clone())],
    );

    let policy = |identity: Value| {
        let p = json!({"default": [{"type": "reject"}], "transports": {"docker": {
            (format!("{}/signed", reg.addr)): [{"type": "sigstoreSigned", "keyPath": public, "signedIdentity": identity}]
        }}});
        write(
            &t.join(format!("policy-{}.json", sha256(p.to_string().as_bytes()))),
            &p.to_string(),
        )
    };
    let repo = policy(json!({"type": "matchRepository"}));
    let exact = policy(json!({"type": "matchRepoDigestOrExact"}));
    let remote = |name: &str| format!("docker://{}/signed/{name}", reg.addr);
    let out = |name: &str| format!("oci:{}:t", t.join(name).display());

    // Accepted: the right key, the repository matches; the copy is the image skopeo pulls.
    run(stowage_copy(&repo, Some(&rd), &remote("app:1"), &out("ok")));
    assert_eq!(layout_manifest_digest(&t.join("ok"), "t"), digest);
    // By digest as well.
    let by_digest = format!("{}@{digest}", remote("app"));
    run(stowage_copy(
        &repo,
        Some(&rd),
        &by_digest,
        &out("by-digest"),
    ));
    let fails = |policy: &Path, src: &str, dir: &str, needle: &str| {
        let o = run_failing(stowage_copy(policy, Some(&rd), src, &out(dir)));
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            e.contains(needle) && e.contains("rejected by policy"),
            "{src}: expected {needle:?} in {e}"
        );
        assert!(!t.join(dir).exists(), "{dir} was created by a refused copy");
    };
    // A tagged pull with matchRepoDigestOrExact needs the tag in the signature: refused.
    fails(&exact, &remote("app:1"), "tagged", "is not accepted");
    // No signature at all.
    fails(
        &repo,
        &remote("unsigned:1"),
        "unsigned",
        "no signature exists",
    );
    // A signature that verifies but names another manifest.
    fails(
        &repo,
        &remote("other:1"),
        "other",
        "does not match the manifest",
    );
    // Without use-sigstore-attachments the signatures are not even looked for.
    let o = run_failing(stowage_copy(&repo, None, &remote("app:1"), &out("no-rd")));
    assert!(String::from_utf8_lossy(&o.stderr).contains("use-sigstore-attachments"));
    // Another trusted key only: every signature fails verification.
    let (_, other_public) = openssl_keys(t, "third");
    let p = json!({"default": [{"type": "sigstoreSigned", "keyPath": other_public, "signedIdentity": {"type": "matchRepository"}}]});
    let third = write(&t.join("third.json"), &p.to_string());
    fails(&third, &remote("app:1"), "third", "verification failed");
    // A tampered payload (its digest still matches its blob, but not its signature).
    let tampered = cosign_payload(&digest, &format!("{app}:1"));
    push_signatures(t, &app, &digest, &[(tampered, good_sig)]);
    fails(&repo, &remote("app:1"), "tampered", "verification failed");

    // Debian's skopeo cannot be the oracle here: it refuses every sigstoreSigned policy.
    let o = skopeo()
        .arg("--policy")
        .arg(&repo)
        .arg("--registries.d")
        .arg(&rd)
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            &remote("app:1"),
            &out("skopeo"),
        ])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("sigstore disabled") || o.status.success(),
        "skopeo: {e}"
    );
}

#[test]
fn stowage_signatures_verify_with_openssl_and_round_trip() {
    let test = "stowage_signatures_verify_with_openssl_and_round_trip";
    if !registry_tools(test) || !oracle("openssl", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let reg = Registry::start(Auth::None, None);
    let pass = write(&t.join("pass"), "correct horse\n");
    run(stowage()
        .arg("generate-sigstore-key")
        .arg("--output-prefix")
        .arg(t.join("k"))
        .arg("--passphrase-file")
        .arg(&pass));
    let rd = t.join("registries.d");
    std::fs::create_dir(&rd).unwrap();
    write(
        &rd.join("sigstore.yaml"),
        &format!(
            "docker:\n  \"{}/app\":\n    use-sigstore-attachments: true\n",
            reg.addr
        ),
    );
    let dest = format!("docker://{}/app/signed:1", reg.addr);
    let accept = accept_anything_policy();

    // Signing needs a destination that can keep the signature: refused before any copy.
    let o = run_failing(
        stowage_without_policy()
            .args([
                "--quiet",
                "--insecure-policy",
                "copy",
                "--sign-by-sigstore-private-key",
            ])
            .arg(t.join("k.key"))
            .arg("--sign-passphrase-file")
            .arg(&pass)
            .arg(fixture("basic").oci_ref())
            .arg(format!("oci:{}:t", t.join("never").display())),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot store sigstore signatures"));
    assert!(!t.join("never").exists());

    let sign = |wrong_pass: bool| {
        let mut c = stowage_without_policy();
        c.arg("--quiet")
            .arg("--policy")
            .arg(accept)
            .args(["copy", "--dest-tls-verify=false", "--registries.d"])
            .arg(&rd)
            .arg("--sign-by-sigstore-private-key")
            .arg(t.join("k.key"))
            .arg("--sign-passphrase-file");
        if wrong_pass {
            c.arg(write(&t.join("wrong"), "nope\n"));
        } else {
            c.arg(&pass);
        }
        c.arg(fixture("basic").oci_ref()).arg(&dest);
        c
    };
    let o = run_failing(sign(true));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong passphrase"));
    run(sign(false));
    let digest = manifest_digest_of(&dest);
    // skopeo reads the attachment manifest stowage pushed; openssl verifies each signature.
    let sig_image = format!(
        "docker://{}/app/signed:sha256-{}.sig",
        reg.addr,
        &digest[7..]
    );
    let layout = t.join("sigs");
    let manifest = signature_manifest(&sig_image, &layout, "s");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let l = &layers[0];
    assert_eq!(
        l["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = layout_blob(&layout, l["digest"].as_str().unwrap());
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert_eq!(
        claims["critical"]["identity"]["docker-reference"],
        format!("{}/app/signed:1", reg.addr)
    );
    assert_eq!(
        claims["critical"]["type"],
        "cosign container image signature"
    );
    let sig = B64
        .decode(
            l["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    std::fs::write(t.join("p.bin"), &payload).unwrap();
    std::fs::write(t.join("p.sig"), &sig).unwrap();
    let verified = run_stdout(
        cmd("openssl", ["dgst", "-sha256", "-verify"])
            .arg(t.join("k.pub"))
            .arg("-signature")
            .arg(t.join("p.sig"))
            .arg(t.join("p.bin")),
    );
    assert!(verified.contains("Verified OK"), "{verified}");

    // Signing again adds nothing twice but keeps the first: two signatures now.
    run(sign(false));
    let manifest = signature_manifest(&sig_image, &layout, "s2");
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "ECDSA signatures differ each time: both are kept"
    );

    // A registry-to-registry copy carries the signatures (the attachment manifest is read
    // back by skopeo); pulling the copy needs a policy that trusts the signed repository.
    let copy_to = |name: &str, extra: &[&str]| {
        let mut c = stowage_without_policy();
        c.arg("--quiet")
            .arg("--policy")
            .arg(accept)
            .args([
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--registries.d",
            ])
            .arg(&rd)
            .args(extra)
            .arg(&dest)
            .arg(format!("docker://{}/{name}", reg.addr));
        c
    };
    run(copy_to("app/copy:1", &[]));
    let carried = format!("docker://{}/app/copy:sha256-{}.sig", reg.addr, &digest[7..]);
    let manifest = signature_manifest(&carried, &layout, "c");
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "both signatures carried"
    );
    let trusted = write(
        &t.join("trusted.json"),
        &json!({"default": [{"type": "sigstoreSigned", "keyPath": t.join("k.pub"),
                "signedIdentity": {"type": "exactRepository", "dockerRepository": format!("{}/app/signed", reg.addr)}}]}).to_string(),
    );
    run(stowage_copy(
        &trusted,
        Some(&rd),
        &format!("docker://{}/app/copy:1", reg.addr),
        &format!("oci:{}:t", t.join("from-copy").display()),
    ));
    // --remove-signatures leaves them behind: the copy is then refused by that policy.
    run(copy_to("app/bare:1", &["--remove-signatures"]));
    let o = run_failing(stowage_copy(
        &trusted,
        Some(&rd),
        &format!("docker://{}/app/bare:1", reg.addr),
        &format!("oci:{}:t", t.join("from-bare").display()),
    ));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no signature exists"));
    // A destination registry without use-sigstore-attachments: refused before anything is pushed.
    let o = run_failing(copy_to("elsewhere/x:1", &[]));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("--remove-signatures") && e.contains("use-sigstore-attachments"),
        "{e}"
    );
    let tags = skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}/elsewhere/x", reg.addr))
        .output()
        .unwrap();
    assert!(
        !tags.status.success() || !String::from_utf8_lossy(&tags.stdout).contains("\"1\""),
        "the refused copy pushed a tag"
    );

    // And stowage pulls what it signed under the exact-identity default.
    let policy = write(
        &t.join("verify.json"),
        &json!({"default": [{"type": "sigstoreSigned", "keyPath": t.join("k.pub")}]}).to_string(),
    );
    run(stowage_copy(
        &policy,
        Some(&rd),
        &dest,
        &format!("oci:{}:t", t.join("pulled").display()),
    ));
    assert_eq!(layout_manifest_digest(&t.join("pulled"), "t"), digest);
}

#[test]
fn bootc_image_commands_enforce_the_policy() {
    let test = "bootc_image_commands_enforce_the_policy";
    if !require(test, &["podman"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bootc = PodmanStore::new();
    let host = PodmanStore::new();
    let reject_oci = write(
        &tmp.path().join("reject-oci.json"),
        &json!({"default": [{"type": "insecureAcceptAnything"}], "transports": {"oci": {"": [{"type": "reject"}]}}}).to_string(),
    );
    let image = |policy: &Path, store: &PodmanStore, args: &[&str]| {
        let mut c = stowage_without_policy();
        c.arg("--quiet")
            .arg("--policy")
            .arg(policy)
            .arg("image")
            .arg("--bootc-storage")
            .arg(&bootc.root)
            .arg("--bootc-runroot")
            .arg(&bootc.runroot)
            .arg("--host-storage")
            .arg(&store.root)
            .arg("--host-runroot")
            .arg(&store.runroot)
            .args(args);
        c
    };
    let o = run_failing(image(
        &reject_oci,
        &host,
        &["cmd", "pull", &fixture("basic").oci_ref()],
    ));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("transports.oci"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        run_stdout(bootc.podman(["images", "-q"])).trim(),
        "",
        "a refused pull left an image"
    );
    // pull-from-default-storage: the host's image is checked under its containers-storage scope.
    run(stowage()
        .arg("copy")
        .arg(fixture("basic").oci_ref())
        .arg(format!(
            "containers-storage:[overlay@{}+{}]localhost/host:1",
            host.root.display(),
            host.runroot.display()
        )));
    let reject_host = write(
        &tmp.path().join("reject-host.json"),
        &json!({"default": [{"type": "insecureAcceptAnything"}], "transports": {"containers-storage": {
            (format!("[overlay@{}]localhost/host", host.root.display())): [{"type": "reject"}]}}}).to_string(),
    );
    let o = run_failing(image(
        &reject_host,
        &host,
        &["pull-from-default-storage", "localhost/host:1"],
    ));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("rejected by policy") && e.contains("localhost/host"),
        "{e}"
    );
    assert_eq!(run_stdout(bootc.podman(["images", "-q"])).trim(), "");
    run(image(
        accept_anything_policy(),
        &host,
        &["pull-from-default-storage", "localhost/host:1"],
    ));
    assert_ne!(run_stdout(bootc.podman(["images", "-q"])).trim(), "");
}
