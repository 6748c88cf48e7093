//! The shipped binary, built once for every test that needs it: `stowage` for
//! x86_64-unknown-linux-musl with the `dist` profile (fat LTO, stripped; see `Cargo.toml`).
//!
//! 1. [`dist_binary`] checks what the build needs (the musl target of rustup, `musl-gcc` for
//!    ring's C and assembly); when something is missing it prints `SKIP:` (a failure in CI)
//!    and returns `None`.
//! 2. Otherwise it runs `cargo build --profile dist --target x86_64-unknown-linux-musl -p
//!    stowage --locked` into `target/static-musl`, a target dir of its own, so the normal
//!    debug build is not invalidated. The `dist` build takes minutes (one codegen unit, fat
//!    LTO): it is built once per test process, and cargo finds it fresh in the next test
//!    binary (`tests/static_binary.rs`, `tests/initramfs.rs`).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::{oracle, run, skip};

/// The musl target triple.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// The cargo profile of the shipped binary.
pub const PROFILE: &str = "dist";

/// Whether rustup's standard library for [`TARGET`] is installed.
pub fn musl_target_installed() -> bool {
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

/// The target dir of the static build: `target/static-musl`.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is target/tmp")
        .join("static-musl")
}

/// The static `dist` binary, built on first use; `None` (after a `SKIP:` line) when the musl
/// target or `musl-gcc` is missing outside CI.
pub fn dist_binary(test: &str) -> Option<PathBuf> {
    if !musl_target_installed() {
        skip(
            test,
            "the x86_64-unknown-linux-musl target is not installed (rustup target add x86_64-unknown-linux-musl)",
        );
        return None;
    }
    if !oracle("musl-gcc", test) {
        return None;
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    Some(
        BUILT
            .get_or_init(|| {
                let dir = target_dir();
                run(Command::new(env!("CARGO"))
                    .args([
                        "build",
                        "--profile",
                        PROFILE,
                        "--locked",
                        "-p",
                        "stowage",
                        "--target",
                        TARGET,
                    ])
                    .env("CARGO_TARGET_DIR", &dir)
                    .current_dir(env!("CARGO_MANIFEST_DIR")));
                dir.join(TARGET).join(PROFILE).join("stowage")
            })
            .clone(),
    )
}
