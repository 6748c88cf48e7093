//! Shared harness for the integration tests that check stowage against the real tools. Every
//! test file uses it as `mod common;`.
//!
//! 1. [`tools`](stowage_fixtures::tools) (re-exported): whether a reference tool (skopeo, podman,
//!    umoci, ...) can be used (on PATH → yes; missing with `CI=true` → the test fails; missing
//!    elsewhere → a visible `SKIP:` line), [`run`] / [`run_failing`] / [`output`] with the full
//!    command line and output in every panic, and the throw-away [`PodmanStore`].
//! 2. [`stowage`] / [`stowage_progress`] are the binary under test (with an explicit
//!    accept-anything `--policy`; [`stowage_without_policy`] for the policy tests) and
//!    [`skopeo`] the oracle, both without the caller's auth file or proxy settings.
//! 3. [`fixtures`] generates the fixture images (small and `many`) once per test process into
//!    `target/tmp/fixtures-<pid>`, removing the directories of processes that have ended.
//! 4. [`layout`] reads OCI layouts (index entries, blobs, diffIDs); [`images`] builds the
//!    images tests make on the fly with the one image builder of `stowage-fixtures`;
//!    [`registry`] runs docker-registry, a token server, a fault-injecting proxy and a blob
//!    server on 127.0.0.1, and seeds registries with skopeo; [`tmpfs`] mounts the small tmpfs
//!    the full-filesystem tests fill.

#![allow(dead_code, unused_imports)] // each test binary uses its own subset

pub mod images;
pub mod layout;
pub mod ostree_cli;
pub mod registry;
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use stowage_fixtures::tree::{describe_dir, render, RenderOptions};
use stowage_fixtures::{FixtureInfo, FixtureSet};

pub use images::*;
pub use layout::*;
pub use ostree_cli::*;
pub use registry::*;
pub use stowage_fixtures::tools::*;
pub use tmpfs::Tmpfs;

/// Environment variables that would send loopback traffic to an HTTP proxy.
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// `program` without the caller's `REGISTRY_AUTH_FILE` and proxy variables.
fn isolated(program: &str) -> Command {
    let mut c = Command::new(program);
    c.env_remove("REGISTRY_AUTH_FILE");
    for v in PROXY_VARS {
        c.env_remove(v);
    }
    c
}

/// The stowage binary under test with no policy flag: it reads policy.json from the usual
/// places (`~/.config/containers/policy.json`, `/etc/containers/policy.json`), or is given
/// `--policy`/`--insecure-policy` by the caller. Only the signature-policy tests use it.
pub fn stowage_without_policy() -> Command {
    isolated(env!("CARGO_BIN_EXE_stowage"))
}

/// A policy.json that accepts every image (Debian's containers-common default), written once
/// per test process under the target's tmp directory.
pub fn accept_anything_policy() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(tmp).unwrap();
        let path = tmp.join("policy-accept-anything.json");
        let staging = tmp.join(format!(
            "policy-accept-anything.json.{}",
            std::process::id()
        ));
        std::fs::write(
            &staging,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        std::fs::rename(&staging, &path).unwrap();
        path
    })
}

/// The stowage binary under test, with its progress and summary lines on stderr, and an
/// explicit accept-anything `--policy` so that no test depends on the host's policy.json.
pub fn stowage_progress() -> Command {
    let mut c = stowage_without_policy();
    c.arg("--policy").arg(accept_anything_policy());
    c
}

/// The stowage binary under test, `--quiet`.
pub fn stowage() -> Command {
    let mut c = stowage_progress();
    c.arg("--quiet");
    c
}

/// A `skopeo` command.
pub fn skopeo() -> Command {
    isolated("skopeo")
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", stowage_fixtures::sha256_hex(bytes))
}

/// The generated fixtures (once per test binary).
pub struct Fixtures {
    /// The output directory: `oci/`, `oci-single/`, `many/`.
    pub dir: PathBuf,
    /// Every generated image.
    pub infos: Vec<FixtureInfo>,
}

/// Generate the fixtures (once per test binary) into `target/tmp/fixtures-<pid>`.
///
/// A static is never dropped, so instead of a `TempDir` each process uses a directory named by
/// its pid and first removes those of processes that no longer run. Separate directories keep
/// test processes that run at once (nextest) from writing the same `index.json`.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(entries) = std::fs::read_dir(tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = name.strip_prefix("fixtures-") else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = tmp.join(format!("fixtures-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let infos = stowage_fixtures::generate(&dir, FixtureSet::All)
            .unwrap_or_else(|e| panic!("generating fixtures into {dir:?}: {e:#}"));
        Fixtures { dir, infos }
    })
}

/// The fixture named `name` (its tagged entry in the main layout, or `many`).
pub fn fixture(name: &str) -> &'static FixtureInfo {
    fixtures()
        .infos
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no fixture named {name}"))
}

/// The architecture name OCI uses for the machine running the tests (the engine's own idea of
/// the host platform, which is what stowage picks from an index).
pub fn host_arch() -> String {
    stowage_engine::manifest::PlatformSpec::host().architecture
}

/// The platform of a multi-arch fixture that the tools pick on this machine.
pub fn host_platform(info: &FixtureInfo) -> &stowage_fixtures::PlatformInfo {
    let arch = host_arch();
    info.platforms
        .iter()
        .find(|p| p.platform.split('/').nth(1) == Some(arch.as_str()))
        .unwrap_or_else(|| panic!("{} has no image for {arch}", info.name))
}

/// `skopeo inspect REF` as JSON.
pub fn skopeo_inspect(reference: &str) -> Value {
    let out = run(skopeo().args(["inspect", reference]));
    serde_json::from_slice(&out.stdout).expect("skopeo inspect prints JSON")
}

/// `stowage inspect [extra...] REF` stdout.
pub fn stowage_inspect_raw(extra: &[&str], reference: &str) -> Vec<u8> {
    let out = run(stowage().arg("inspect").args(extra).arg(reference));
    out.stdout
}

/// `stowage inspect REF` as JSON.
pub fn stowage_inspect(reference: &str) -> Value {
    let out = stowage_inspect_raw(&[], reference);
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "stowage inspect {reference} did not print JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

/// `stowage image --bootc-storage ROOT --bootc-runroot RUNROOT ARGS...` with `bootc` as
/// bootc's storage.
pub fn image_cmd(bootc: &PodmanStore, args: &[&str]) -> Command {
    let mut c = stowage();
    c.arg("image")
        .arg("--bootc-storage")
        .arg(&bootc.root)
        .arg("--bootc-runroot")
        .arg(&bootc.runroot)
        .args(args);
    c
}

/// Keys of `skopeo inspect` that `stowage inspect` must reproduce exactly (OCI layouts and
/// containers-storage alike).
pub const INSPECT_KEYS: [&str; 7] = [
    "Digest",
    "Created",
    "Architecture",
    "Os",
    "Layers",
    "Env",
    "Labels",
];

/// `podman image mount` of `name` in `store`, described as the fixture trees are (with `opts`),
/// then unmounted.
pub fn mounted_tree(store: &PodmanStore, name: &str, opts: RenderOptions) -> String {
    let out = run(store.podman(["image", "mount", name]));
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let tree = describe_dir(&path);
    run(store.podman(["image", "unmount", name]));
    render(
        &tree.unwrap_or_else(|e| panic!("describing the mount of {name}: {e:#}")),
        opts,
    )
}

/// The `podman image inspect` keys on which one image agrees in two stores (or as stowage
/// and podman show it from one): identity, names, layers, size and config.
pub const STORE_INSPECT_KEYS: [&str; 7] = [
    "Id",
    "Digest",
    "RepoTags",
    "RepoDigests",
    "RootFS",
    "Size",
    "Config",
];

/// `ours` (stowage's `image cmd list --format json` of `store`) and `podman images --format
/// json` of the same store agree on what matters to scripts: each row's ID, names, digest,
/// size and repo digests.
pub fn assert_image_lists_agree(ours: &Value, store: &PodmanStore) {
    let theirs = store.podman_json(["images", "--format", "json"]);
    let key = |v: &Value| {
        let mut rows: Vec<String> = v
            .as_array()
            .unwrap_or_else(|| panic!("not a JSON array: {v}"))
            .iter()
            .map(|i| {
                format!(
                    "{} {} {} {} {}",
                    i["Id"], i["Names"], i["Digest"], i["Size"], i["RepoDigests"]
                )
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        key(ours),
        key(&theirs),
        "stowage image cmd list vs podman images"
    );
}
