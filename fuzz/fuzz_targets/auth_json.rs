//! auth.json and Docker's legacy `.dockercfg` (`find_credentials`), read from a file as
//! containers-auth.json(5) says.
//!
//! Input: one byte choosing the form (`--authfile` JSON, or `.dockercfg` under HOME) and the
//! looked-up repository, then the file. Credential helpers are never run (no `PATH`: a
//! `credHelpers` entry for the registry is a "not found" error).
//! Properties: a lookup answers the same twice; an identity token, when found, is never
//! empty.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stowage_engine::registry::{find_credentials, HostPaths};

const REPOS: [(&str, &str); 4] = [
    ("docker.io", "library/busybox"),
    ("quay.io", "a/b"),
    ("localhost:5000", "x"),
    ("registry.example", "ns/app/sub"),
];

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("temporary directory").keep();
        std::fs::create_dir_all(d.join("home")).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, file)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let legacy = sel & 1 == 1;
    let (registry, repo) = REPOS[usize::from(sel >> 1) % REPOS.len()];
    let paths = HostPaths {
        home: Some(dir.join("home")),
        xdg_runtime_dir: Some(dir.join("missing-run")),
        xdg_config_home: Some(dir.join("missing-config")),
        registry_auth_file: None,
        uid: 0,
        etc_containers: dir.join("missing-etc"),
        etc_docker: dir.join("missing-etc-docker"),
        search_path: None,
    };
    let (path, authfile) = if legacy {
        (dir.join("home/.dockercfg"), None)
    } else {
        let p = dir.join("auth.json");
        (p.clone(), Some(p))
    };
    std::fs::write(&path, file).expect("write the auth file");
    let first = find_credentials(&paths, authfile.as_deref(), registry, repo);
    let second = find_credentials(&paths, authfile.as_deref(), registry, repo);
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "two lookups differ"),
        (Err(_), Err(_)) => {}
        _ => panic!("two lookups differ: {first:?} / {second:?}"),
    }
    if let Ok(Some(c)) = &first {
        if let Some(t) = &c.identity_token {
            assert!(!t.is_empty(), "an empty identity token was returned");
        }
    }
    let _ = std::fs::remove_file(&path);
});
