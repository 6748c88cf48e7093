//! Shared harness for the integration tests that check stowage against the real tools.
//!
//! 1. [`oracle`] decides whether a reference tool (skopeo, podman, umoci, ...) can be used: on
//!    PATH → yes; missing with `CI=true` → the test fails (CI must install it, see `.ci/run`);
//!    missing elsewhere → a visible `SKIP:` line on stderr and the check is left out.
//! 2. [`run`] / [`run_failing`] run a command and panic with its full command line, status,
//!    stdout and stderr when it does not end as expected; [`stowage`] is the binary under test.
//! 3. [`fixtures`] generates the fixture images (small and `many`) once per test process into
//!    `target/tmp/fixtures-<pid>`, removing the directories of processes that have ended.
//! 4. [`PodmanStore`] is a throw-away containers-storage root/runroot, unmounted and removed on
//!    drop; never the system store.

#![allow(dead_code)] // each test binary uses its own subset

use std::borrow::BorrowMut;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use stowage_fixtures::{FixtureInfo, FixtureSet};
use tempfile::TempDir;

/// Whether this run is CI (`CI=true`), where every oracle tool must be present.
pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn on_path(tool: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    })
}

/// Print a visible skip notice for `test` (never in CI: there it panics instead).
pub fn skip(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test}: {reason}; this is required in CI; run .ci/run");
    }
    eprintln!("SKIP: {test}: {reason}");
}

/// True if `tool` is on PATH. If it is missing: in CI this panics; elsewhere it prints
/// `SKIP: <test>: <tool> not installed` and returns false.
pub fn oracle(tool: &str, test: &str) -> bool {
    if on_path(tool) {
        return true;
    }
    if in_ci() {
        panic!("{test}: {tool} is required in CI; run .ci/run");
    }
    eprintln!("SKIP: {test}: {tool} not installed");
    false
}

/// Whether the tests run as root (device nodes, chroot, podman's overlay store need it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A fresh temporary directory under the system temp dir.
pub fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("stowage-test-")
        .tempdir()
        .expect("creating a temporary directory")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn report(cmd: &Command, out: &Output) -> String {
    format!(
        "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd`, panic with its output unless it succeeds; returns the output.
pub fn run(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)));
    if !out.status.success() {
        panic!("command failed: {}", report(cmd, &out));
    }
    out
}

/// Run `cmd`, panic unless it fails (non-zero exit); returns the output.
pub fn run_failing(mut cmd: impl BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(cmd)));
    if out.status.success() {
        panic!("command was expected to fail: {}", report(cmd, &out));
    }
    out
}

/// Build a command from a program and arguments.
pub fn cmd<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// The stowage binary under test, quiet.
pub fn stowage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stowage"));
    c.arg("--quiet");
    c
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

/// `oci:DIR:TAG`.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Where a blob lives in a layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("not a digest: {digest}"));
    layout.join("blobs").join(alg).join(hex)
}

/// The `index.json` entry tagged `tag` in a layout.
pub fn index_entry(layout: &Path, tag: &str) -> Value {
    let index: Value = serde_json::from_slice(
        &std::fs::read(layout.join("index.json"))
            .unwrap_or_else(|e| panic!("reading {layout:?}/index.json: {e}")),
    )
    .unwrap_or_else(|e| panic!("parsing {layout:?}/index.json: {e}"));
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("no entry tagged {tag} in {layout:?}/index.json: {index}"))
}

/// `skopeo inspect REF` as JSON.
pub fn skopeo_inspect(reference: &str) -> Value {
    let out = run(cmd("skopeo", ["inspect", reference]));
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

/// Recursive `(path, sha256)` listing of a directory.
pub fn snapshot(dir: &Path) -> Vec<(String, String)> {
    stowage_fixtures::snapshot(dir).unwrap_or_else(|e| panic!("listing {dir:?}: {e:#}"))
}

/// Copy a directory tree (regular files and directories only, as OCI layouts are).
pub fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to)
                .unwrap_or_else(|e| panic!("copying {:?}: {e}", entry.path()));
        }
    }
}

/// A throw-away containers-storage (overlay) root and runroot.
pub struct PodmanStore {
    dir: TempDir,
    /// Graph root.
    pub root: PathBuf,
    /// Run root.
    pub runroot: PathBuf,
}

impl PodmanStore {
    /// A new empty store in a temporary directory.
    pub fn new() -> PodmanStore {
        let dir = tempdir();
        let root = dir.path().join("root");
        let runroot = dir.path().join("runroot");
        PodmanStore { dir, root, runroot }
    }

    /// `containers-storage:[overlay@ROOT+RUNROOT]NAME`.
    pub fn reference(&self, name: &str) -> String {
        format!(
            "containers-storage:[overlay@{}+{}]{name}",
            self.root.display(),
            self.runroot.display()
        )
    }

    /// `podman --root ROOT --runroot RUNROOT ARGS...`.
    pub fn podman<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--storage-driver")
            .arg("overlay")
            .args(args);
        c
    }

    /// `podman image inspect NAME` (the first object).
    pub fn image_inspect(&self, name: &str) -> Value {
        let out = run(&mut self.podman(["image", "inspect", name]));
        let v: Value = serde_json::from_slice(&out.stdout).expect("podman prints JSON");
        v[0].clone()
    }
}

impl Drop for PodmanStore {
    fn drop(&mut self) {
        let overlay = self.root.join("overlay");
        if overlay.exists() {
            let _ = Command::new("umount").arg("-l").arg(&overlay).output();
        }
        let _ = &self.dir; // removed by TempDir's drop after the unmount
    }
}
