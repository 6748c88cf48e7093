//! `--log-level` and `-v` against a real docker-registry: the requests stowage makes, the
//! files and credentials it uses and what it does with each layer, on stderr, one line each;
//! nothing of it without the flags, and stdout untouched.

mod common;

use common::*;

/// The `stowage[LEVEL] …` lines of stderr.
fn log_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("stowage["))
        .map(str::to_string)
        .collect()
}

#[test]
fn log_level_shows_requests_credentials_and_layers() {
    if !registry_tools("log_level_shows_requests_credentials_and_layers") {
        return;
    }
    let (reg, tmp, name, img) = seeded_registry("log/app:v1");
    let authfile = tmp.path().join("auth.json");
    write_auth_json(&authfile, &[(&reg.addr, "alice:pw")]);
    let dest = format!("oci:{}:app", tmp.path().join("out").display());
    let copy = |extra: &[&str]| {
        let mut c = stowage_progress();
        c.args(extra).args([
            "copy",
            "--src-tls-verify=false",
            "--authfile",
            authfile.to_str().unwrap(),
            &format!("docker://{name}"),
            &dest,
        ]);
        run(c)
    };

    // debug: every request with its answer, the credentials' source, each layer.
    let out = copy(&["--log-level", "debug"]);
    let lines = log_lines(&out);
    let manifest_get = format!("GET http://{}/v2/log/app/manifests/v1 -> 200 OK", reg.addr);
    assert!(
        lines.iter().any(
            |l| l.starts_with("stowage[debug] registry::client: ") && l.contains(&manifest_get)
        ),
        "{lines:#?}"
    );
    for layer in &img.layers {
        let blob_get = format!("GET http://{}/v2/log/app/blobs/{layer} -> 200 OK", reg.addr);
        assert!(
            lines.iter().any(|l| l.contains(&blob_get)),
            "{blob_get}: {lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("stowage[debug] copy: ")
                && l.contains(layer.as_str())
                && l.contains("streaming")),
            "{layer}: {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stowage[info] registry::auth_file: ")
                && l.contains(&format!("credentials for {}", reg.addr))
                && l.contains(authfile.to_str().unwrap())),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stowage[info] copy: copying docker://")
                && l.contains(&format!("({} layer(s)", img.layers.len()))),
        "{lines:#?}"
    );
    assert!(out.stdout.is_empty(), "logging stays off stdout");

    // -v is info: the same copy again says what it uses, not every request; the layers are
    // there already (debug would say so).
    let out = copy(&["-v"]);
    let lines = log_lines(&out);
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|l| l.starts_with("stowage[info]")),
        "{lines:#?}"
    );
    let out = copy(&["-vv"]);
    let lines = log_lines(&out);
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("already in the destination, not fetched"))
            .count()
            == img.layers.len(),
        "{lines:#?}"
    );

    // Without either flag: no log lines at all.
    let out = copy(&[]);
    assert_eq!(log_lines(&out), Vec::<String>::new());
    // podman's level names; anything else is a usage error.
    let out = copy(&["--log-level", "warning"]);
    assert_eq!(log_lines(&out), Vec::<String>::new());
    let bad = output(stowage().args(["--log-level", "loud", "images"]));
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("\"loud\" is not a log level"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
