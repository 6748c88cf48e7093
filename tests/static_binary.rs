//! The release binary for x86_64-unknown-linux-musl is fully static and works with nothing
//! else on the system.
//!
//! 1. Build it with `cargo build --release --target x86_64-unknown-linux-musl -p stowage`
//!    into `target/static-musl` (its own target dir, so the normal build is not invalidated).
//! 2. Read its ELF program headers: no `PT_INTERP` (no dynamic loader), and no `DT_NEEDED`
//!    entry in `PT_DYNAMIC` (a static-pie has a dynamic section, but needs no library).
//! 3. Run `stowage --version` and `stowage inspect oci:/fixture:basic` inside an empty chroot
//!    holding only the binary and the fixture layout.
//!
//! Skipped with a `SKIP:` line (failed in CI) when the musl target, musl-gcc or root is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

const TARGET: &str = "x86_64-unknown-linux-musl";
const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const DT_NEEDED: u64 = 1;

fn musl_target_installed() -> bool {
    let out = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            dir.join("libstd.rlib").exists()
                || std::fs::read_dir(&dir).is_ok_and(|mut d| {
                    d.any(|e| {
                        e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
                    })
                })
        }
        _ => false,
    }
}

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
fn musl_release_binary_is_static_and_runs_in_an_empty_chroot() {
    let test = "musl_release_binary_is_static_and_runs_in_an_empty_chroot";
    if !musl_target_installed() {
        skip(
            test,
            "the x86_64-unknown-linux-musl target is not installed (rustup target add x86_64-unknown-linux-musl)",
        );
        return;
    }
    if !oracle("musl-gcc", test) {
        return;
    }
    if !is_root() {
        skip(test, "chroot needs root");
        return;
    }

    // 1. Build into a target dir of its own.
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("static-musl");
    run(Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "stowage",
            "--target",
            TARGET,
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let binary = target_dir.join(TARGET).join("release/stowage");

    // 2. Static by its ELF headers.
    check_static(&binary);

    // 3. Runs alone in an empty root.
    let chroot = tempdir();
    std::fs::copy(&binary, chroot.path().join("stowage")).unwrap();
    copy_tree(
        &fixtures().dir.join(stowage_fixtures::MAIN_LAYOUT),
        &chroot.path().join("fixture"),
    );
    let version = run(Command::new("chroot")
        .arg(chroot.path())
        .args(["/stowage", "--version"]));
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.starts_with("stowage ") && version.contains(env!("CARGO_PKG_VERSION")),
        "unexpected --version output: {version:?}"
    );
    let inspect = run(Command::new("chroot").arg(chroot.path()).args([
        "/stowage",
        "inspect",
        "oci:/fixture:basic",
    ]));
    let inspect: Value = serde_json::from_slice(&inspect.stdout).expect("inspect prints JSON");
    let basic = fixture("basic");
    assert_eq!(inspect["Digest"], basic.manifest_digest.to_string());
    let layers: Vec<String> = basic.layers.iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(inspect["Layers"], serde_json::json!(layers));
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
