//! `fuzz/` is a workspace of its own whose `Cargo.lock` also pins the engine's dependencies,
//! and `.ci/run` builds it with `--locked` after the whole test suite. A dependency added to
//! the engine without `(cd fuzz && cargo update --workspace --offline)` used to fail CI only
//! at that last step; this finds it with the tests, in a second, without building anything.

use std::process::Command;

#[test]
fn fuzz_lock_file_is_in_step_with_the_engine() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(manifest)
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "fuzz/Cargo.lock is out of step with the engine's dependencies; run \
         `(cd fuzz && cargo update --workspace --offline)` and commit it:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
