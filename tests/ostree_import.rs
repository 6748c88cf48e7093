//! `stowage copy … ostree:[REPO]IMGREF`: images imported into an ostree repository as
//! ostree-rs-ext's container store holds them, checked with Debian's `ostree` CLI (2022.7).
//!
//! 1. Every single-platform fixture (plus the multi-arch one and a Docker schema 2 image) is
//!    imported into a fresh bare-user repository, and a second time into an archive one:
//!    `ostree fsck` passes; `ostree refs` lists one `ostree/container/blob/sha256_3A_<hex>`
//!    ref per layer and the image ref `ostree/container/image/docker_3A__2F__2F_localhost/…`;
//!    `ostree show --print-metadata-key` gives the manifest digest, the manifest and config
//!    (canonical JSON) and the importer version; `ostree ls -R` of the image commit equals
//!    the fixture's flattened tree after ostree-rs-ext's mapping (`etc` → `usr/etc`, content of
//!    `dev`, `proc`, `run`, `sys`, `tmp` dropped, hard links as the same file), with owners
//!    and modes; the files of `ostree checkout -U` have the fixture's contents; and
//!    `stowage image list --type host` shows the image.
//! 2. Importing again reuses every layer (its blob ref), and a second image sharing layers
//!    reuses them too.
//! 3. `ostree:[REPO]` with no image records the source's name, as ostree-rs-ext does.
//! 4. Bad input: a missing repository and a corrupt layer fail with clear errors, leave no
//!    refs behind, and the repository still passes `ostree fsck`.
//! 5. Export: each imported image copied back out to containers-storage is the original for
//!    podman (same `Digest`, image ID and `RootFS.Layers`: every rebuilt layer tar hashed to
//!    its diffID, which the pipeline checks before anything is committed), and to an OCI
//!    layout it has the original config (compressing the layers anew gives new blob digests,
//!    as from containers-storage).
//! 6. Two imports at once of images sharing a 4 MiB base layer: both succeed, `ostree fsck`
//!    passes, the base has one layer ref, both image refs are there with their trees and
//!    manifest digests, no staging directory is left, and both export again.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{fixture, init, oracle, ostree, run, run_failing, stowage, stowage_progress, tempdir};
use serde_json::Value;
use stowage_fixtures::tree::{describe_dir, TreeEntry, TreeKind};
use stowage_fixtures::FixtureInfo;

const IMPORT_FIXTURES: [&str; 9] = [
    "basic",
    "whiteouts",
    "links",
    "names",
    "devices",
    "basic-zstd",
    "zstd-multiframe",
    "multiarch",
    "docker-schema2",
];

fn image_ref(name: &str) -> String {
    format!("ostree/container/image/docker_3A__2F__2F_localhost/{name}_3A_1")
}

/// One line of `ostree ls -R`: (path, "type+mode uid gid size [-> target]").
fn ls_tree(repo: &Path, r: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in ostree(repo, &["ls", "-R", r]).lines() {
        let mut f = line.split_whitespace();
        let (Some(mode), Some(uid), Some(gid), Some(size)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            panic!("unexpected ostree ls line {line:?}");
        };
        let rest: Vec<&str> = f.collect();
        let rest = rest.join(" ");
        let (path, target) = match rest.split_once(" -> ") {
            Some((p, t)) => (p.to_string(), Some(t.to_string())),
            None => (rest, None),
        };
        let path = path.trim_start_matches('/').to_string();
        let size = if mode.starts_with('-') { size } else { "0" };
        let mut desc = format!("{mode} {uid}:{gid} {size}");
        if let Some(t) = target {
            desc.push_str(&format!(" -> {t}"));
        }
        out.insert(path, desc);
    }
    out
}

/// The fixture's flattened tree as ostree-rs-ext stores it (module doc, step 1), in the
/// `ostree ls -R` form of [`ls_tree`].
fn expected_tree(info: &FixtureInfo) -> BTreeMap<String, String> {
    let map = |p: &str| -> Option<String> {
        let (top, rest) = p.split_once('/').map_or((p, None), |(t, r)| (t, Some(r)));
        if ["dev", "proc", "run", "sys", "tmp"].contains(&top) && rest.is_some() {
            return None;
        }
        Some(match (top, rest) {
            ("etc", None) => "usr/etc".into(),
            ("etc", Some(r)) => format!("usr/etc/{r}"),
            _ => p.to_string(),
        })
    };
    let by_path: BTreeMap<&str, &TreeEntry> =
        info.tree.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = BTreeMap::new();
    out.insert(String::new(), "d00755 0:0 0".to_string());
    for e in &info.tree {
        let Some(path) = map(&e.path) else { continue };
        let (kind, size, target) = match &e.kind {
            TreeKind::Dir => ('d', 0, None),
            TreeKind::File { size, .. } => ('-', *size, None),
            TreeKind::Hardlink { to } => match &by_path[to.as_str()].kind {
                TreeKind::File { size, .. } => ('-', *size, None),
                other => panic!("hard link to {other:?}"),
            },
            TreeKind::Symlink { target } => ('l', 0, Some(target.clone())),
            other => panic!("{}: {other:?} outside the dropped toplevels", e.path),
        };
        let (mode, uid, gid) = match &e.kind {
            TreeKind::Hardlink { to } => {
                let t = by_path[to.as_str()];
                (t.mode, t.uid, t.gid)
            }
            TreeKind::Symlink { .. } => (0o777, e.uid, e.gid),
            _ => (e.mode, e.uid, e.gid),
        };
        let mut desc = format!("{kind}{mode:05o} {uid}:{gid} {size}");
        if let Some(t) = target {
            desc.push_str(&format!(" -> {t}"));
        }
        // Parents the tar did not list are made by ostree as 0:0 0755.
        let mut parent = Path::new(&path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            out.entry(p.to_str().unwrap().to_string())
                .or_insert_with(|| "d00755 0:0 0".to_string());
            parent = p.parent();
        }
        out.insert(path, desc);
    }
    // Runtime files ostree-rs-ext drops when they are empty.
    for f in ["usr/etc/hostname", "usr/etc/resolv.conf"] {
        if out
            .get(f)
            .is_some_and(|d| d.starts_with('-') && d.ends_with(" 0"))
        {
            out.remove(f);
        }
    }
    out
}

/// sha256 of every regular file of a checkout (hard links resolved to their content).
fn checkout_contents(dir: &Path) -> BTreeMap<String, String> {
    let entries = describe_dir(dir).unwrap();
    let by_path: BTreeMap<String, TreeEntry> = entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect();
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            TreeKind::File { sha256, .. } => Some((e.path.clone(), sha256.clone())),
            TreeKind::Hardlink { to } => match &by_path[to].kind {
                TreeKind::File { sha256, .. } => Some((e.path.clone(), sha256.clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn expected_contents(info: &FixtureInfo) -> BTreeMap<String, String> {
    let expected = expected_tree(info);
    let by_path: BTreeMap<&str, &TreeEntry> =
        info.tree.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = BTreeMap::new();
    for e in &info.tree {
        let sha = match &e.kind {
            TreeKind::File { sha256, .. } => sha256,
            TreeKind::Hardlink { to } => match &by_path[to.as_str()].kind {
                TreeKind::File { sha256, .. } => sha256,
                _ => continue,
            },
            _ => continue,
        };
        let path = match e.path.split_once('/') {
            Some(("etc", r)) => format!("usr/etc/{r}"),
            _ => e.path.clone(),
        };
        if expected.contains_key(&path) {
            out.insert(path, sha.clone());
        }
    }
    out
}

fn show_key(repo: &Path, r: &str, key: &str) -> String {
    let out = ostree(repo, &["show", &format!("--print-metadata-key={key}"), r]);
    // GVariant text: 'value' with \' and \\ escapes (and \n etc. for control characters).
    let t = out.trim();
    let inner = t
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{key}: not a quoted string: {t}"));
    let mut s = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some(o) => s.push(o),
                None => {}
            }
        } else {
            s.push(c);
        }
    }
    s
}

/// Sorted-key JSON without whitespace, for comparing what ostree printed with the fixture.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<_, _> = m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn check_import(info: &FixtureInfo, repo: &Path, mode: &str) {
    let name = &info.name;
    let r = image_ref(name);
    let fsck = ostree(repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{name} ({mode}): {fsck}");
    let refs = ostree(repo, &["refs"]);
    assert!(
        refs.lines().any(|l| l == r),
        "{name}: {r} missing in\n{refs}"
    );
    let layers = match info.platforms.first() {
        Some(_) => common::host_platform(info).layers.clone(),
        None => info.layers.clone(),
    };
    for l in &layers {
        let blob = format!("ostree/container/blob/sha256_3A_{}", l.digest.digest());
        assert!(
            refs.lines().any(|x| x == blob),
            "{name}: {blob} missing in\n{refs}"
        );
    }
    // Metadata keys.
    let manifest_digest = show_key(repo, &r, "ostree.manifest-digest");
    let manifest: Value = serde_json::from_str(&show_key(repo, &r, "ostree.manifest")).unwrap();
    let config: Value =
        serde_json::from_str(&show_key(repo, &r, "ostree.container.image-config")).unwrap();
    assert!(
        show_key(repo, &r, "ostree.importer.version").starts_with("stowage "),
        "{name}"
    );
    let inspect: Value =
        serde_json::from_slice(&run(stowage().args(["inspect", "--raw", &info.oci_ref()])).stdout)
            .unwrap();
    let expected_manifest = match info.platforms.first() {
        Some(_) => {
            let p = common::host_platform(info);
            assert_eq!(manifest_digest, p.manifest_digest.to_string(), "{name}");
            None
        }
        None => {
            assert_eq!(manifest_digest, info.manifest_digest.to_string(), "{name}");
            Some(inspect)
        }
    };
    if let Some(m) = expected_manifest {
        assert_eq!(
            canonical(&manifest),
            canonical(&m),
            "{name}: ostree.manifest"
        );
    }
    let config_raw: Value = serde_json::from_slice(
        &run(stowage().args(["inspect", "--config", &info.oci_ref()])).stdout,
    )
    .unwrap();
    assert_eq!(canonical(&config), canonical(&config_raw), "{name}: config");
    // The tree as ostree stores it.
    let got = ls_tree(repo, &r);
    let want = expected_tree(info);
    if got != want {
        let diff: Vec<String> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .map(|(k, v)| format!("want {k:?} {v}, got {:?}", got.get(k)))
            .chain(
                got.iter()
                    .filter(|(k, _)| !want.contains_key(*k))
                    .map(|(k, v)| format!("unexpected {k:?} {v}")),
            )
            .collect();
        panic!(
            "{name} ({mode}): ostree ls -R differs:\n{}",
            diff.join("\n")
        );
    }
    // The content, through ostree's own checkout.
    let tmp = tempdir();
    let co = tmp.path().join("co");
    ostree(repo, &["checkout", "-U", &r, co.to_str().unwrap()]);
    assert_eq!(
        checkout_contents(&co),
        expected_contents(info),
        "{name} ({mode}): checked-out contents"
    );
}

#[test]
fn imports_fixtures_as_ostree_rs_ext_stores_them() {
    if !oracle("ostree", "imports_fixtures_as_ostree_rs_ext_stores_them") {
        return;
    }
    for mode in ["bare-user", "archive"] {
        let tmp = tempdir();
        let repo = tmp.path().join("repo");
        init(&repo, mode);
        for name in IMPORT_FIXTURES {
            let info = fixture(name);
            let dst = format!("ostree:[{}]localhost/{name}:1", repo.display());
            run(stowage().args(["copy", &info.oci_ref(), &dst]));
            check_import(info, &repo, mode);
        }
        // stowage lists what it imported as bootc's host images.
        let listed: Value = serde_json::from_slice(
            &run(stowage().args([
                "image",
                "--ostree-repo",
                repo.to_str().unwrap(),
                "list",
                "--type",
                "host",
                "--format",
                "json",
            ]))
            .stdout,
        )
        .unwrap();
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["image"].as_str().unwrap())
            .collect();
        for name in IMPORT_FIXTURES {
            let want = format!("docker://localhost/{name}:1");
            assert!(names.contains(&want.as_str()), "{want} not in {names:?}");
        }
    }
}

#[test]
fn layers_are_reused_and_unnamed_destinations_record_the_source() {
    if !oracle(
        "ostree",
        "layers_are_reused_and_unnamed_destinations_record_the_source",
    ) {
        return;
    }
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    let basic = fixture("basic");
    let dst = format!("ostree:[{}]localhost/basic:1", repo.display());
    run(stowage().args(["copy", &basic.oci_ref(), &dst]));
    let again = run(stowage_progress().args(["copy", &basic.oci_ref(), &dst]));
    let msg = String::from_utf8_lossy(&again.stderr);
    assert!(
        msg.contains(&format!("reused {}", basic.layers.len())),
        "second import should reuse every layer: {msg}"
    );
    // No image in the destination: the source's name is the image's name.
    let unnamed = format!("ostree:[{}]", repo.display());
    run(stowage().args(["copy", &basic.oci_ref(), &unnamed]));
    let refs = ostree(&repo, &["refs"]);
    let escaped = stowage_engine::ostree::refescape::prefix_escape(
        "ostree/container/image",
        &basic.oci_ref(),
    )
    .unwrap();
    assert!(
        refs.lines().any(|l| l == escaped),
        "{escaped} not in\n{refs}"
    );
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
}

#[test]
fn bad_input_leaves_the_repository_intact() {
    if !oracle("ostree", "bad_input_leaves_the_repository_intact") {
        return;
    }
    let tmp = tempdir();
    let basic = fixture("basic");
    // A repository that does not exist.
    let missing = tmp.path().join("nope");
    let out = run_failing(stowage().args([
        "copy",
        &basic.oci_ref(),
        &format!("ostree:[{}]localhost/x:1", missing.display()),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("ostree init"),
        "{err}"
    );
    assert!(!missing.exists());
    // A layer whose bytes were changed: the digest check fails, no ref is written.
    let layout = tmp.path().join("layout");
    common::copy_tree(&basic.layout, &layout);
    let last = basic.layers.last().unwrap();
    let blob = layout.join("blobs/sha256").join(last.digest.digest());
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&blob, bytes).unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    let out = run_failing(stowage().args([
        "copy",
        &format!("oci:{}:basic", layout.display()),
        &format!("ostree:[{}]localhost/basic:1", repo.display()),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&last.digest.to_string()), "{err}");
    let refs = ostree(&repo, &["refs"]);
    assert!(
        !refs.contains("ostree/container/image")
            && !refs.contains(&format!("sha256_3A_{}", last.digest.digest())),
        "refs after a failed import:\n{refs}"
    );
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    let tmp_entries: Vec<_> = std::fs::read_dir(repo.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("staging-"))
        .collect();
    assert!(
        tmp_entries
            .iter()
            .all(|n| n.to_string_lossy().ends_with("-lock")),
        "staging left behind: {tmp_entries:?}"
    );
}

#[test]
fn exports_the_original_image() {
    if !oracle("ostree", "exports_the_original_image")
        || !oracle("podman", "exports_the_original_image")
    {
        return;
    }
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    let store = common::PodmanStore::new();
    for name in [
        "basic",
        "whiteouts",
        "links",
        "names",
        "devices",
        "docker-schema2",
    ] {
        let info = fixture(name);
        let src = format!("ostree:[{}]localhost/{name}:1", repo.display());
        run(stowage().args(["copy", &info.oci_ref(), &src]));
        // To containers-storage: podman sees the original image.
        let dst = store.reference(&format!("localhost/{name}:1"));
        run(stowage().args(["copy", &src, &dst]));
        let inspect = store.image_inspect(&format!("localhost/{name}:1"));
        assert_eq!(
            inspect["Digest"],
            info.manifest_digest.to_string(),
            "{name}"
        );
        assert_eq!(inspect["Id"], info.config_digest.digest(), "{name}");
        let layers: Vec<String> = info.diff_ids().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            inspect["RootFS"]["Layers"],
            serde_json::json!(layers),
            "{name}"
        );
        // To an OCI layout: the same config (so the same diffIDs), verified layer by layer.
        let out = tmp.path().join(format!("oci-{name}"));
        run(stowage().args(["copy", &src, &format!("oci:{}:{name}", out.display())]));
        let mut config = run(stowage().args([
            "inspect",
            "--config",
            &format!("oci:{}:{name}", out.display()),
        ]))
        .stdout;
        assert_eq!(
            config.pop(),
            Some(b'\n'),
            "{name}: inspect --config ends with a newline"
        );
        assert_eq!(
            format!("sha256:{}", stowage_fixtures::sha256_hex(&config)),
            info.config_digest.to_string(),
            "{name}: config"
        );
    }
}

#[test]
fn copy_to_storage_exports_the_booted_image() {
    if !oracle("ostree", "copy_to_storage_exports_the_booted_image")
        || !oracle("podman", "copy_to_storage_exports_the_booted_image")
    {
        return;
    }
    let tmp = tempdir();
    let sysroot = tmp.path().join("sysroot");
    let repo = sysroot.join("ostree/repo");
    std::fs::create_dir_all(&repo).unwrap();
    init(&repo, "bare-user");
    let info = fixture("basic");
    run(stowage().args([
        "copy",
        &info.oci_ref(),
        &format!("ostree:[{}]quay.io/example/os:1", repo.display()),
    ]));
    // A booted deployment as ostree lays it out, deployed from that image.
    let deploy = sysroot.join("ostree/deploy/example/deploy");
    std::fs::create_dir_all(deploy.join("0123abcd.0")).unwrap();
    std::fs::write(
        deploy.join("0123abcd.0.origin"),
        "[origin]\ncontainer-image-reference=ostree-unverified-registry:quay.io/example/os:1\n",
    )
    .unwrap();
    let boot = sysroot.join("ostree/boot.1/example/bootcsum");
    std::fs::create_dir_all(&boot).unwrap();
    std::os::unix::fs::symlink("../../../deploy/example/deploy/0123abcd.0", boot.join("0"))
        .unwrap();
    let cmdline = tmp.path().join("cmdline");
    std::fs::write(
        &cmdline,
        "BOOT_IMAGE=(hd0,gpt3)/boot/vmlinuz rw ostree=/ostree/boot.1/example/bootcsum/0 quiet\n",
    )
    .unwrap();
    let store = common::PodmanStore::new();
    let image_args = |cmdline: &Path| {
        vec![
            "image".to_string(),
            "--sysroot".into(),
            sysroot.display().to_string(),
            "--kernel-cmdline".into(),
            cmdline.display().to_string(),
            "--host-storage".into(),
            store.root.display().to_string(),
            "--host-runroot".into(),
            store.runroot.display().to_string(),
            "copy-to-storage".into(),
        ]
    };
    run(stowage().args(image_args(&cmdline)));
    let inspect = store.image_inspect("localhost/bootc");
    assert_eq!(inspect["Digest"], info.manifest_digest.to_string());
    let layers: Vec<String> = info.diff_ids().iter().map(|d| d.to_string()).collect();
    assert_eq!(inspect["RootFS"]["Layers"], serde_json::json!(layers));
    // Not booted from ostree: a clear error that says to name the source.
    let plain = tmp.path().join("plain-cmdline");
    std::fs::write(&plain, "BOOT_IMAGE=/vmlinuz root=/dev/vda1 quiet\n").unwrap();
    let out = run_failing(stowage().args(image_args(&plain)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("booted deployment") && err.contains("--source"),
        "{err}"
    );
}

#[test]
fn delete_removes_refs_layers_and_objects_nothing_else_uses() {
    if !oracle(
        "ostree",
        "delete_removes_refs_layers_and_objects_nothing_else_uses",
    ) {
        return;
    }
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    let basic = fixture("basic");
    let links = fixture("links");
    let at = |name: &str| format!("ostree:[{}]{name}", repo.display());
    run(stowage().args(["copy", &basic.oci_ref(), &at("localhost/a:1")]));
    run(stowage().args(["copy", &basic.oci_ref(), &at("localhost/b:1")]));
    run(stowage().args(["copy", &links.oci_ref(), &at("localhost/links:1")]));
    let count_objects = || {
        walkdir(&repo.join("objects"))
            .into_iter()
            .filter(|p| p.is_file())
            .count()
    };
    let before = count_objects();
    // a and b share their layers: deleting a keeps them.
    run(stowage().args(["delete", &at("localhost/a:1")]));
    let refs = ostree(&repo, &["refs"]);
    assert!(!refs.contains("localhost/a_3A_1"), "{refs}");
    for l in &basic.layers {
        assert!(
            refs.contains(&format!("sha256_3A_{}", l.digest.digest())),
            "{refs}"
        );
    }
    // Deleting b too removes basic's layers and their objects, and leaves links intact.
    run(stowage().args(["delete", &at("localhost/b:1")]));
    let refs = ostree(&repo, &["refs"]);
    for l in &basic.layers {
        assert!(
            !refs.contains(&format!("sha256_3A_{}", l.digest.digest())),
            "{refs}"
        );
    }
    assert!(refs.contains("localhost/links_3A_1"), "{refs}");
    assert!(count_objects() < before, "nothing was pruned");
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{fsck}");
    // ostree's own prune finds nothing more to remove.
    let pruned = ostree(&repo, &["prune", "--refs-only"]);
    assert!(
        pruned.contains("Total objects: ") && pruned.contains("No unreachable objects"),
        "{pruned}"
    );
    // links still exports.
    let out = tmp.path().join("out");
    run(stowage().args([
        "copy",
        &at("localhost/links:1"),
        &format!("oci:{}:l", out.display()),
    ]));
    // A name that is not there: an error naming it.
    let out = run_failing(stowage().args(["delete", &at("localhost/a:1")]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("docker://localhost/a:1") && err.contains("not found"),
        "{err}"
    );
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn an_import_killed_at_any_point_leaves_a_repository_that_fscks_and_completes() {
    let test = "an_import_killed_at_any_point_leaves_a_repository_that_fscks_and_completes";
    if !oracle("ostree", test) {
        return;
    }
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    // Two layers: 2,000 small files, then one of 8 MiB.
    let info = fixture("many");
    let dst = format!("ostree:[{}]localhost/many:1", repo.display());
    for delay_ms in [15u64, 40, 80, 150, 250, 400, 650] {
        let mut child = stowage()
            .args(["copy", &info.oci_ref(), &dst])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let fsck = ostree(&repo, &["fsck"]);
        assert!(
            fsck.contains("no errors found"),
            "after a kill at {delay_ms} ms: {fsck}"
        );
        // Any ref that exists points at a complete commit (fsck read them all); the image ref
        // appears only with every layer's.
        let refs = ostree(&repo, &["refs"]);
        if refs.contains("localhost/many_3A_1") {
            for l in &info.layers {
                assert!(
                    refs.contains(&format!("sha256_3A_{}", l.digest.digest())),
                    "{refs}"
                );
            }
        }
    }
    // The same copy completes, and the result is the image.
    run(stowage().args(["copy", &info.oci_ref(), &dst]));
    check_import(info, &repo, "bare-user");
    let staging: Vec<String> = std::fs::read_dir(repo.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("staging-") && !n.ends_with("-lock"))
        .collect();
    assert!(staging.is_empty(), "stale staging left behind: {staging:?}");
}

/// A one-layer image of `entries` exactly as given (no parent directories added).
fn raw_layer(dir: &Path, entries: Vec<stowage_fixtures::layer::Entry>) -> String {
    use stowage_fixtures::builder::{History, ImageBuilder};
    use stowage_fixtures::layer::{LayerCompression, LayerSpec};
    let spec = LayerSpec {
        entries,
        created_by: "bad layer".into(),
    };
    common::write_layout(
        dir,
        "bad",
        ImageBuilder::new().tar_layer(
            spec.to_tar().unwrap(),
            LayerCompression::Gzip,
            History::new("bad layer"),
        ),
    )
    .reference
}

#[test]
fn hostile_layers_are_refused_and_leave_the_repository_as_it_was() {
    let test = "hostile_layers_are_refused_and_leave_the_repository_as_it_was";
    if !oracle("ostree", test) {
        return;
    }
    use stowage_fixtures::layer::{Entry, Kind};
    let file = |p: &str, c: &str| Entry::new(p, Kind::File(c.as_bytes().to_vec()));
    let tmp = tempdir();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cases: Vec<(&str, Vec<Entry>, Vec<&str>)> = vec![
        (
            "dotdot",
            vec![file("ok", "fine\n"), file("../x", "escaped\n")],
            vec!["../x"],
        ),
        (
            "deep-dotdot",
            vec![file("../../../../x", "escaped\n")],
            vec!["../../../../x"],
        ),
        (
            "below-a-symlink",
            vec![
                Entry::new("up", Kind::Symlink("../../../..".into())),
                file("up/x", "through a symlink\n"),
            ],
            vec!["up/x", "symlink"],
        ),
        (
            "below-an-absolute-symlink",
            vec![
                Entry::new("abs", Kind::Symlink(outside.display().to_string())),
                file("abs/x", "through an absolute symlink\n"),
            ],
            vec!["abs/x"],
        ),
        (
            "hardlink-out",
            vec![Entry::new("l", Kind::Hardlink("../../etc/passwd".into()))],
            vec!["l"],
        ),
        (
            "hardlink-to-nothing",
            vec![Entry::new("l", Kind::Hardlink("missing".into()))],
            vec!["l", "hard link"],
        ),
        (
            "device-outside-dev",
            vec![Entry::new(
                "opt/null",
                Kind::CharDevice { major: 1, minor: 3 },
            )],
            vec!["opt/null", "device"],
        ),
        (
            "duplicate",
            vec![file("dup", "1\n"), file("dup", "2\n")],
            vec!["dup"],
        ),
    ];
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    // A good image first: it must survive every refused one.
    let basic = fixture("basic");
    let good = format!("ostree:[{}]localhost/basic:1", repo.display());
    run(stowage().args(["copy", &basic.oci_ref(), &good]));
    let refs_before = ostree(&repo, &["refs"]);
    for (name, entries, want) in cases {
        let layout = tmp.path().join(name);
        let src = raw_layer(&layout, entries);
        let out = run_failing(stowage().args([
            "copy",
            &src,
            &format!("ostree:[{}]localhost/{name}:1", repo.display()),
        ]));
        let err = String::from_utf8_lossy(&out.stderr);
        for w in want {
            assert!(err.contains(w), "{name}: {w:?} not in {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(
            ostree(&repo, &["refs"]),
            refs_before,
            "{name}: refs changed"
        );
        let fsck = ostree(&repo, &["fsck"]);
        assert!(fsck.contains("no errors found"), "{name}: {fsck}");
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "{name}: something was written outside"
        );
    }
    check_import(basic, &repo, "bare-user");
}

/// An image of a shared base layer (`usr/lib/big`, 4 MiB of pseudo-random bytes, so both
/// imports are still writing it when the other starts) and a layer of its own holding
/// `etc/NAME.conf`, in a new layout `DIR/NAME` tagged `NAME`.
fn shared_base_image(dir: &Path, name: &str) -> common::Built {
    use stowage_fixtures::builder::{History, ImageBuilder};
    use stowage_fixtures::layer::{LayerCompression, LayerSpec};
    let mut base = LayerSpec::new("COPY big /usr/lib/big");
    base.file("usr/lib/big", common::SplitMix64::new(7).bytes(4 << 20));
    base.file("etc/os-release", "ID=shared\n");
    let mut own = LayerSpec::new(&format!("COPY {name}.conf /etc"));
    own.file(&format!("etc/{name}.conf"), format!("{name}=1\n"));
    let image = ImageBuilder::new()
        .platform(&common::host_arch(), None)
        .created("2026-11-01T00:00:00Z")
        .layer_with_history(&base, LayerCompression::GzipLevel(1), History::new("base"))
        .layer_with_history(&own, LayerCompression::GzipLevel(1), History::new(name));
    common::write_layout(&dir.join(name), name, image)
}

#[test]
fn simultaneous_imports_sharing_layers() {
    let test = "simultaneous_imports_sharing_layers";
    if !oracle("ostree", test) {
        return;
    }
    let tmp = tempdir();
    let repo = tmp.path().join("repo");
    init(&repo, "bare-user");
    let images: Vec<common::Built> = ["a", "b"]
        .iter()
        .map(|n| shared_base_image(tmp.path(), n))
        .collect();
    assert_eq!(
        images[0].layers[0], images[1].layers[0],
        "the base layer is shared"
    );
    let children: Vec<_> = images
        .iter()
        .zip(["a", "b"])
        .map(|(img, n)| {
            stowage()
                .arg("copy")
                .arg(&img.reference)
                .arg(format!("ostree:[{}]localhost/{n}:1", repo.display()))
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, n) in children.into_iter().zip(["a", "b"]) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{test}: the import of {n} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fsck = ostree(&repo, &["fsck"]);
    assert!(fsck.contains("no errors found"), "{test}: {fsck}");
    let tmp_left: Vec<_> = std::fs::read_dir(repo.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "cache")
        .collect();
    assert!(
        tmp_left.is_empty(),
        "{test}: left in REPO/tmp: {tmp_left:?}"
    );
    let refs = ostree(&repo, &["refs"]);
    let blob_refs: Vec<&str> = refs
        .lines()
        .filter(|r| r.starts_with("ostree/container/blob/"))
        .collect();
    assert_eq!(
        blob_refs.len(),
        3,
        "{test}: one ref per distinct layer:\n{refs}"
    );
    for (img, n) in images.iter().zip(["a", "b"]) {
        assert!(
            refs.lines().any(|r| r == image_ref(n)),
            "{test}: no image ref for {n} in\n{refs}"
        );
        let tree = ls_tree(&repo, &image_ref(n));
        for path in [
            "usr/lib/big",
            "usr/etc/os-release",
            &format!("usr/etc/{n}.conf"),
        ] {
            assert!(
                tree.contains_key(path),
                "{test}: {path} missing from {n}: {tree:?}"
            );
        }
        assert_eq!(
            show_key(&repo, &image_ref(n), "ostree.manifest-digest"),
            img.manifest_digest,
            "{test}: manifest digest of {n}"
        );
        // Exported back out, every layer is rebuilt from the repository and verified.
        let out = tmp.path().join(format!("out-{n}"));
        run(stowage()
            .arg("copy")
            .arg(format!("ostree:[{}]localhost/{n}:1", repo.display()))
            .arg(format!("oci:{}:x", out.display())));
    }
}
