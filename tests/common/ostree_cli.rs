//! Debian's `ostree` CLI, the oracle of the ostree tests.

use std::path::Path;

use stowage_fixtures::tools::{cmd, run, run_stdout};

/// `ostree ARGS --repo=REPO`, its stdout (panics when it fails).
pub fn ostree(repo: &Path, args: &[&str]) -> String {
    let mut c = cmd("ostree", args);
    c.arg(format!("--repo={}", repo.display()));
    run_stdout(c)
}

/// `ostree init --repo=REPO --mode=MODE`.
pub fn init(repo: &Path, mode: &str) {
    run(cmd(
        "ostree",
        [
            "init",
            &format!("--repo={}", repo.display()),
            &format!("--mode={mode}"),
        ],
    ));
}

/// `ostree show`'s `ContentChecksum` of `rev`: the checksum of its root dirtree and dirmeta.
pub fn content_checksum(repo: &Path, rev: &str) -> String {
    ostree(repo, &["show", rev])
        .lines()
        .find_map(|l| l.strip_prefix("ContentChecksum:"))
        .unwrap_or_else(|| panic!("no ContentChecksum for {rev}"))
        .trim()
        .to_string()
}
