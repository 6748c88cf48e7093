//! The shipped binary (x86_64-unknown-linux-musl, `dist` profile) is fully static, at most
//! 8 MB, and works with nothing else on the system: no `/etc`, no `/tmp`, no `/dev`, no
//! `/proc`, a read-only root with `/run` as the only writable directory.
//!
//! 1. Build it once with `cargo build --profile dist --target x86_64-unknown-linux-musl -p
//!    stowage` into `target/static-musl` (`musl::dist_binary`).
//! 2. Read its ELF program headers: no `PT_INTERP` (no dynamic loader), and no `DT_NEEDED`
//!    entry in `PT_DYNAMIC` (a static-pie has a dynamic section, but needs no library); its
//!    size is at most [`MAX_BYTES`].
//! 3. Make a root holding only the binary, the `basic` fixture layout, a containers-storage
//!    store with `basic` in it (written by the same binary on the host) and an empty `/run`.
//!    Run each command in a mount namespace of its own (`unshare --mount`) in which that root
//!    is bind-mounted read-only, a host directory is bind-mounted writable on its `/run`, and
//!    the command is `chroot`ed into it: `--version`, `--help`, `inspect` (plain, `--raw`,
//!    `--config`), `image cmd list|inspect|exists`, `image list`, and two writes to `/run`
//!    (`copy` to an OCI layout and to a containers-storage store).
//! 4. Check the outputs against the fixture's digests and against podman reading the same
//!    stores on the host.
//!
//! Skipped with a `SKIP:` line (failed in CI) when the musl target, musl-gcc, root, unshare
//! or podman is missing.

mod common;
mod musl;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const DT_NEEDED: u64 = 1;

/// The size budget of the stripped static binary (issue 12): 8 MB.
const MAX_BYTES: u64 = 8_000_000;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// `(p_type, p_offset, p_filesz)` of every program header of a little-endian ELF64 file.
fn program_headers(elf: &[u8]) -> Vec<(u32, u64, u64)> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(elf[5], 1, "not little-endian");
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    (0..phnum)
        .map(|i| {
            let h = phoff + i * phentsize;
            (u32_at(elf, h), u64_at(elf, h + 8), u64_at(elf, h + 32))
        })
        .collect()
}

fn check_static(binary: &Path) {
    let elf = std::fs::read(binary).unwrap();
    let headers = program_headers(&elf);
    assert!(!headers.is_empty(), "{binary:?} has no program headers");
    assert!(
        !headers.iter().any(|h| h.0 == PT_INTERP),
        "{binary:?} has a PT_INTERP program header: it is dynamically linked"
    );
    for &(_, offset, size) in headers.iter().filter(|h| h.0 == PT_DYNAMIC) {
        let dynamic = &elf[offset as usize..(offset + size) as usize];
        for entry in dynamic.chunks_exact(16) {
            let tag = u64_at(entry, 0);
            assert_ne!(
                tag, DT_NEEDED,
                "{binary:?} needs a shared library (DT_NEEDED)"
            );
            if tag == 0 {
                break;
            }
        }
    }
    if let Ok(out) = Command::new("file").arg(binary).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("statically linked") || text.contains("static-pie linked"),
            "file(1) does not call {binary:?} static: {text}"
        );
    }
}

#[test]
fn dist_binary_is_static_and_at_most_8_mb() {
    let test = "dist_binary_is_static_and_at_most_8_mb";
    let Some(binary) = musl::dist_binary(test) else {
        return;
    };
    check_static(&binary);
    let size = std::fs::metadata(&binary).unwrap().len();
    eprintln!(
        "{test}: {} is {size} bytes ({:.2} MB; budget {MAX_BYTES})",
        binary.display(),
        size as f64 / 1e6
    );
    let symbols = Command::new("readelf")
        .args(["--syms", "--wide"])
        .arg(&binary)
        .output();
    if let Ok(out) = symbols {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(".symtab"),
            "{binary:?} still has a symbol table: the dist profile must strip it"
        );
    }
    assert!(
        size <= MAX_BYTES,
        "{binary:?} is {size} bytes, over the {MAX_BYTES}-byte budget of issue 12; \
         see docs/performance.md section 8 for what each dependency costs (cargo bloat --crates)"
    );
}

/// A root directory for [`in_read_only_root`]: the binary, the fixture, a store, `/run`.
struct EmptyRoot {
    /// The root (read-only inside the namespace).
    root: tempfile::TempDir,
    /// The directory mounted writable on `ROOT/run`.
    run: tempfile::TempDir,
}

/// Run `/stowage ARGS` chrooted into `root`, bind-mounted read-only, with `root.run` mounted
/// writable on its `/run`, in a mount namespace of its own; nothing else is visible.
fn in_read_only_root(root: &EmptyRoot, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "--fork",
        "--",
        "sh",
        "-ec",
    ])
    .arg(
        r#"root=$1 run=$2; shift 2
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount --bind "$run" "$root/run"
exec chroot "$root" /stowage "$@""#,
    )
    .arg("sh")
    .arg(root.root.path())
    .arg(root.run.path())
    .args(args)
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    c
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn json(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} did not print JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `podman --root ROOT --runroot RUNROOT image inspect NAME`, then unmount what podman mounted.
fn podman_inspect(root: &Path, name: &str) -> Value {
    let runroot = tempdir();
    let out = run(Command::new("podman")
        .arg("--root")
        .arg(root)
        .arg("--runroot")
        .arg(runroot.path())
        .args(["--storage-driver", "overlay", "image", "inspect", name]));
    let _ = Command::new("umount")
        .arg("-l")
        .arg(root.join("overlay"))
        .output();
    let v: Value = serde_json::from_slice(&out.stdout).expect("podman prints JSON");
    v[0].clone()
}

#[test]
fn dist_binary_runs_every_read_command_in_an_empty_read_only_root() {
    let test = "dist_binary_runs_every_read_command_in_an_empty_read_only_root";
    if !is_root() {
        skip(test, "chroot and mount namespaces need root");
        return;
    }
    if !oracle("unshare", test) || !oracle("podman", test) {
        return;
    }
    let Some(binary) = musl::dist_binary(test) else {
        return;
    };
    let basic = fixture("basic");
    let config_id = basic.config_digest.to_string();
    let config_id = config_id.trim_start_matches("sha256:");
    let layers: Vec<String> = basic.layers.iter().map(|l| l.digest.to_string()).collect();

    // 3. The root: binary, fixture, a store written on the host, an empty /run.
    let root = EmptyRoot {
        root: tempdir(),
        run: tempdir(),
    };
    let r = root.root.path();
    std::fs::copy(&binary, r.join("stowage")).unwrap();
    copy_tree(
        &fixtures().dir.join(stowage_fixtures::MAIN_LAYOUT),
        &r.join("fixture"),
    );
    std::fs::create_dir(r.join("run")).unwrap();
    let host_runroot = tempdir();
    run(Command::new(&binary).args([
        "--quiet",
        "--insecure-policy",
        "copy",
        &format!("oci:{}:basic", r.join("fixture").display()),
        &format!(
            "containers-storage:[overlay@{}+{}]localhost/basic:chroot",
            r.join("store").display(),
            host_runroot.path().display()
        ),
    ]));
    let store = ["--storage-root", "/store", "--runroot", "/run/stowage"];
    let with_store = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["image".into()];
        v.extend(store.iter().map(|s| s.to_string()));
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let go = |args: Vec<String>| -> Output {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(in_read_only_root(&root, &args))
    };

    // --version, --help: what a script probes first.
    let version = go(vec!["--version".into()]);
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.starts_with("stowage ") && version.contains(env!("CARGO_PKG_VERSION")),
        "unexpected --version output: {version:?}"
    );
    for help in [
        vec!["--help"],
        vec!["image", "--help"],
        vec!["copy", "--help"],
    ] {
        let out = go(help.iter().map(|s| s.to_string()).collect());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{help:?} printed no usage: {text}");
    }

    // inspect: the fixture's manifest digest, layers, raw manifest and config bytes.
    let inspect = json(
        &go(vec!["inspect".into(), "oci:/fixture:basic".into()]),
        "inspect",
    );
    assert_eq!(inspect["Digest"], basic.manifest_digest.to_string());
    assert_eq!(inspect["Layers"], serde_json::json!(layers));
    let raw = go(vec![
        "inspect".into(),
        "--raw".into(),
        "oci:/fixture:basic".into(),
    ]);
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw.stdout)),
        basic.manifest_digest.to_string(),
        "inspect --raw is not the manifest"
    );
    let config = go(vec![
        "inspect".into(),
        "--config".into(),
        "oci:/fixture:basic".into(),
    ]);
    // As skopeo, the config bytes and a newline.
    let config = config.stdout.strip_suffix(b"\n").unwrap_or(&config.stdout);
    assert_eq!(
        sha256_hex(config),
        config_id,
        "inspect --config is not the config"
    );

    // image cmd list / inspect / exists on the read-only store, as podman sees it.
    let podman = podman_inspect(&r.join("store"), "localhost/basic:chroot");
    assert_eq!(podman["Id"], config_id);
    let list = json(
        &go(with_store(&["cmd", "list", "--format", "json"])),
        "image cmd list",
    );
    let listed = list
        .as_array()
        .expect("image cmd list --format json prints an array");
    assert_eq!(listed.len(), 1, "one image in the store: {list}");
    assert_eq!(listed[0]["Id"], podman["Id"], "image cmd list: {list}");
    let table = go(with_store(&["cmd", "list"]));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("localhost/basic") && table.contains("chroot"),
        "image cmd list table lacks localhost/basic:chroot: {table}"
    );
    let ours = json(
        &go(with_store(&["cmd", "inspect", "localhost/basic:chroot"])),
        "image cmd inspect",
    );
    assert_eq!(ours[0]["Id"], podman["Id"]);
    assert_eq!(ours[0]["Digest"], podman["Digest"]);
    assert_eq!(ours[0]["RootFS"], podman["RootFS"]);
    go(with_store(&["cmd", "exists", "localhost/basic:chroot"]));
    let missing = run_failing(in_read_only_root(
        &root,
        &[
            "image",
            "--storage-root",
            "/store",
            "--runroot",
            "/run/stowage",
            "cmd",
            "exists",
            "localhost/absent",
        ],
    ));
    assert_eq!(
        missing.status.code(),
        Some(1),
        "exists on a missing image exits 1"
    );

    // image list: bootc's store (unified) and the bound images of / (none here).
    let unified = json(
        &go(with_store(&[
            "list", "--type", "unified", "--format", "json",
        ])),
        "image list --type unified",
    );
    // bootc's keys first, then the store's facts.
    let rows = unified.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{unified}");
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().take(2).collect();
    assert_eq!(keys, ["image_type", "image"], "{unified}");
    assert_eq!(rows[0]["image_type"], "unified", "{unified}");
    assert_eq!(rows[0]["image"], "localhost/basic:chroot", "{unified}");
    assert!(
        rows[0]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{unified}"
    );
    let logical = json(
        &go(with_store(&[
            "list", "--type", "logical", "--format", "json",
        ])),
        "image list --type logical",
    );
    assert_eq!(logical, serde_json::json!([]));
    let all = go(with_store(&["list"]));
    let all = String::from_utf8_lossy(&all.stdout);
    assert!(
        all.starts_with("REPOSITORY") && all.contains("localhost/basic:chroot"),
        "image list (all types, no /sysroot) lacks localhost/basic:chroot: {all}"
    );

    // With no /etc there is no policy.json: a copy is refused (as skopeo refuses), naming the
    // places looked at and the flag; nothing is written.
    let no_policy = run_failing(in_read_only_root(
        &root,
        &[
            "--quiet",
            "copy",
            "oci:/fixture:basic",
            "oci:/run/refused:basic",
        ],
    ));
    let stderr = String::from_utf8_lossy(&no_policy.stderr);
    assert!(
        stderr.contains("/etc/containers/policy.json")
            && stderr.contains("no policy.json file found")
            && stderr.contains("--insecure-policy"),
        "a copy without a policy should be refused with the lookup and the flag: {stderr}"
    );
    assert!(
        !root.run.path().join("refused").exists(),
        "a copy refused for lack of a policy created its destination"
    );

    // The root really is read-only: a write outside /run fails, naming the path.
    let refused = run_failing(in_read_only_root(
        &root,
        &[
            "--quiet",
            "--insecure-policy",
            "copy",
            "oci:/fixture:basic",
            "oci:/out:basic",
        ],
    ));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("/out"),
        "the refused copy does not name /out: {stderr}"
    );

    // Writes go to /run only: an OCI layout and a containers-storage store.
    go(vec![
        "--quiet".into(),
        "--insecure-policy".into(),
        "copy".into(),
        "oci:/fixture:basic".into(),
        "oci:/run/out:basic".into(),
    ]);
    let out_layout = format!("oci:{}:basic", root.run.path().join("out").display());
    let copied = json(
        &run(Command::new(&binary).args(["inspect", &out_layout])),
        "inspect of the copied layout",
    );
    assert_eq!(copied["Digest"], basic.manifest_digest.to_string());
    if oracle("skopeo", test) {
        let skopeo = skopeo_inspect(&out_layout);
        assert_eq!(skopeo["Digest"], basic.manifest_digest.to_string());
    }
    go(vec![
        "--quiet".into(),
        "--insecure-policy".into(),
        "copy".into(),
        "oci:/fixture:basic".into(),
        "containers-storage:[overlay@/run/store+/run/stowage]localhost/basic:run".into(),
    ]);
    let podman = podman_inspect(&root.run.path().join("store"), "localhost/basic:run");
    assert_eq!(podman["Id"], config_id);
}

#[test]
fn elf_reader_finds_the_interpreter_of_a_dynamic_binary() {
    // The checker itself must be able to see dynamic linking, or the test above proves nothing.
    let sh = std::fs::read("/bin/sh").unwrap();
    let headers = program_headers(&sh);
    assert!(
        headers.iter().any(|h| h.0 == PT_INTERP),
        "/bin/sh should have PT_INTERP"
    );
}
