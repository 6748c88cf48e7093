//! ostree-encapsulated images (`ostree.final-diffid`: the ostree commit and object sets as
//! layers, as bootc base images are built) imported with `stowage copy … ostree:[REPO]IMGREF`,
//! with ostree-rs-ext itself as the oracle: its CLI (`tools/ostree-ext-cli`, ostree-ext 0.15
//! linked against Debian's libostree, built by `.ci/run`) makes the images (`container
//! encapsulate`) and imports the same ones (`container image pull`) into a second repository.
//!
//! 1. A tree with a 300 kB file owned by 1000:1000, a symlink, an empty file and `usr/etc` is
//!    committed with `ostree commit` and encapsulated twice: in one layer, and split into four
//!    object-set layers (`--contentmeta`). A third image adds two derived layers on top of the
//!    split one (`/etc` and `/var` content, a non-`/usr` toplevel that ostree-rs-ext drops, a
//!    replaced file, a whiteout and an opaque directory).
//! 2. For each image, in a bare and a bare-user repository: the image commit's
//!    `ContentChecksum` (root dirtree + dirmeta) is ostree-rs-ext's; the commit layer's blob
//!    ref is the image's own ostree commit and the object-set layers' blob refs are the very
//!    commits ostree-rs-ext writes; the derived layer commits have ostree-rs-ext's content;
//!    the merge commit's parent is the base commit; `ostree fsck` passes and no commit is
//!    left partial.
//! 3. Importing again reuses every layer; exporting to an OCI layout gives the original
//!    config (so the same diffIDs, each rebuilt layer verified against them).
//! 4. An image ostree-rs-ext imported (no stowage export data) is exported as one regenerated
//!    layer, saying so: the layer holds the merged tree (`usr/etc` as `etc`, owners, modes,
//!    symlinks, file contents as `ostree cat` prints them) and podman reads the image.
//! 5. Bad input: a commit layer whose content object does not match its name, and an image
//!    missing one of its object-set layers, fail naming the object; no image ref appears and
//!    the repository passes `ostree fsck`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use common::{
    cmd, content_checksum, init, layout_blob, layout_manifest, layout_manifest_digest, oracle,
    ostree, run, run_failing, sha256, stowage, tempdir,
};
use serde_json::Value;
use stowage_engine::oci_layout::OciDir;
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{LayerCompression, LayerSpec};
use stowage_fixtures::tools::{is_root, skip};

/// ostree-rs-ext's CLI, built by `.ci/run` (or `$STOWAGE_OSTREE_EXT_CLI`).
fn ostree_ext_cli(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("STOWAGE_OSTREE_EXT_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/ostree-ext-cli/release/ostree-ext-cli")
        });
    if path.is_file() {
        return Some(path);
    }
    skip(
        test,
        &format!(
            "{} is not built (.ci/run builds it: tools/ostree-ext-cli/README.md)",
            path.display()
        ),
    );
    None
}

fn refs(repo: &Path, prefix: &str) -> Vec<String> {
    let mut r: Vec<String> = ostree(repo, &["refs"])
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect();
    r.sort();
    r
}

fn rev(repo: &Path, r: &str) -> String {
    ostree(repo, &["rev-parse", r]).trim().to_string()
}

fn fsck(repo: &Path) {
    let out = ostree(repo, &["fsck"]);
    assert!(
        out.contains("no errors found"),
        "ostree fsck of {}: {out}",
        repo.display()
    );
}

fn no_partial_commits(repo: &Path) {
    let state = repo.join("state");
    if let Ok(rd) = std::fs::read_dir(&state) {
        let partial: Vec<_> = rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".commitpartial"))
            .collect();
        assert!(
            partial.is_empty(),
            "partial commits left in {}: {partial:?}",
            repo.display()
        );
    }
}

/// The lines of `ostree ls -R -C` (with checksums) that differ between two commits.
fn listing_diff(a: &Path, ra: &str, b: &Path, rb: &str) -> String {
    let la = ostree(a, &["ls", "-R", "-C", ra]);
    let lb = ostree(b, &["ls", "-R", "-C", rb]);
    let sa: std::collections::BTreeSet<&str> = la.lines().collect();
    let sb: std::collections::BTreeSet<&str> = lb.lines().collect();
    let mut out = String::new();
    for l in sa.difference(&sb) {
        out += &format!("stowage only:    {l}\n");
    }
    for l in sb.difference(&sa) {
        out += &format!("ostree-ext only: {l}\n");
    }
    out
}

/// The test policy's file contexts: regexes, exact paths (which win over the regexes after
/// them), file types, `<<none>>`.
const FILE_CONTEXTS: &str = "\
/.*\tsystem_u:object_r:default_t:s0
/usr/bin/hello\t--\tsystem_u:object_r:hello_exec_t:s0
/usr(/.*)?\tsystem_u:object_r:usr_t:s0
/usr/bin(/.*)?\tsystem_u:object_r:bin_t:s0
/usr/bin/hi\t-l\tsystem_u:object_r:link_t:s0
/usr/lib/foo/[a-z]+\t--\tsystem_u:object_r:foo_t:s0
/usr/lib/opt(/.*)?\tsystem_u:object_r:opt_t:s0
/usr/share/doc/.*\t<<none>>
/var(/.*)?\tsystem_u:object_r:var_t:s0
/usr/etc(/.*)?\tsystem_u:object_r:etc_t:s0
";

struct Images {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    /// The ostree commit that was encapsulated.
    commit: String,
}

/// The manifest digest and manifest of the image tagged `tag`.
fn manifest_of(layout: &Path, tag: &str) -> (String, Value) {
    (
        layout_manifest_digest(layout, tag),
        layout_manifest(layout, tag),
    )
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Step 1: the base commit and the three images `one:1`, `split:1`, `derived:1`.
/// The set-up of the tests below: the `tools` (as oracles: `SKIP:` when missing, a failure
/// under CI), the ostree-rs-ext CLI and the images it encapsulated ([`make_images`]).
fn encapsulated_images(test: &str, tools: &[&str]) -> Option<(PathBuf, Images)> {
    if !tools.iter().all(|t| oracle(t, test)) {
        return None;
    }
    let oe = ostree_ext_cli(test)?;
    let images = make_images(&oe);
    Some((oe, images))
}

fn make_images(oe: &Path) -> Images {
    let dir = tempdir();
    let tree = dir.path().join("tree");
    for d in [
        "usr/bin",
        "usr/lib/foo",
        "usr/etc",
        "usr/share/empty",
        "usr/share/doc",
        // ostree-rs-ext's export writes var/tmp itself, so with one in the commit the layer
        // holds it twice; ostree-rs-ext imports that, and so must stowage.
        "var/tmp",
    ] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::write(tree.join("usr/bin/hello"), "hello\n").unwrap();
    std::os::unix::fs::symlink("hello", tree.join("usr/bin/hi")).unwrap();
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("usr/lib/foo/big"), &big).unwrap();
    std::fs::write(tree.join("usr/lib/foo/empty"), "").unwrap();
    std::fs::write(tree.join("usr/share/doc/readme"), "docs\n").unwrap();
    std::fs::write(tree.join("usr/etc/x.conf"), "x=1\n").unwrap();
    // An SELinux policy (what labelling needs of it: config, file_contexts, a policy/
    // directory), so every import labels files as ostree-rs-ext does.
    let se = tree.join("usr/etc/selinux");
    std::fs::create_dir_all(se.join("targeted/contexts/files")).unwrap();
    std::fs::create_dir_all(se.join("targeted/policy")).unwrap();
    std::fs::write(
        se.join("config"),
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    std::fs::write(se.join("targeted/policy/policy.33"), "not a real policy\n").unwrap();
    std::fs::write(
        se.join("targeted/contexts/files/file_contexts"),
        FILE_CONTEXTS,
    )
    .unwrap();
    std::fs::write(
        se.join("targeted/contexts/files/file_contexts.subs_dist"),
        "/opt /usr/lib/opt\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tree.join("usr/bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    if is_root() {
        std::os::unix::fs::chown(tree.join("usr/lib/foo/big"), Some(1000), Some(1000)).unwrap();
    }
    let src = dir.path().join("src");
    init(&src, "archive");
    ostree(
        &src,
        &[
            "commit",
            "-b",
            "base",
            &format!("--tree=dir={}", tree.display()),
            "--timestamp=2024-01-01T00:00:00Z",
            "-s",
            "base",
        ],
    );
    let commit = rev(&src, "base");
    let layout = dir.path().join("oci");
    let encapsulate = |tag: &str, extra: &[String]| {
        let mut c = cmd(oe.to_str().unwrap(), ["container", "encapsulate"]);
        c.arg(format!("--repo={}", src.display()));
        c.args(extra);
        c.arg("base");
        c.arg(format!("oci:{}:{tag}", layout.display()));
        run(c);
    };
    encapsulate("one", &[]);
    // Four object sets: every content object mapped to one of them.
    let listing = ostree(&src, &["ls", "-R", "-C", "base"]);
    let mut mapping = serde_json::Map::new();
    for (i, line) in listing
        .lines()
        .filter(|l| l.starts_with('-') || l.starts_with('l'))
        .enumerate()
    {
        let checksum = line.split_whitespace().nth(4).unwrap();
        mapping.insert(checksum.into(), Value::from(["a", "b", "c", "d"][i % 4]));
    }
    let meta = serde_json::json!({
        "version": 1,
        "layers": {"a": "chunk a", "b": "chunk b", "c": "chunk c", "d": "chunk d"},
        "mapping": mapping,
    });
    let meta_path = dir.path().join("contentmeta.json");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    encapsulate("split", &[format!("--contentmeta={}", meta_path.display())]);
    // Two derived layers on the split image.
    let (split_digest, split) = manifest_of(&layout, "split");
    assert!(split["layers"].as_array().unwrap().len() >= 5, "{split}");
    let mut a = LayerSpec::new("derived a");
    a.file("etc/new.conf", "new\n");
    a.file("opt/app/run", "app\n");
    a.file("var/lib/state", "v\n");
    a.file("usr/bin/hello", "hello, derived\n").mode = 0o755;
    a.file("usr/share/doc/extra", "more\n");
    let mut b = LayerSpec::new("derived b");
    b.whiteout("usr/lib/foo/empty");
    b.opaque("usr/share/doc");
    b.file("usr/share/doc/only", "only\n");
    let image = ImageBuilder::from_layout(&layout, &split_digest)
        .unwrap()
        .layer(&a, LayerCompression::Gzip)
        .layer(&b, LayerCompression::Gzip)
        .build()
        .unwrap();
    image
        .write(&OciDir::open(&layout).unwrap(), Some("derived"))
        .unwrap();
    Images {
        _dir: dir,
        layout,
        commit,
    }
}

fn copy_to_ostree(layout: &Path, tag: &str, repo: &Path, name: &str) -> String {
    // Not --quiet: the last line says how many layers were reused. ostree-rs-ext 0.15 on
    // Debian's ostree 2022.7 (older than 2024.3) moves /var to usr/share/factory/var.
    let mut c = common::stowage_progress();
    c.args([
        "copy",
        "--ostree-var=factory",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("ostree:[{}]{name}", repo.display()),
    ]);
    let out = run(c);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn oe_pull(oe: &Path, repo: &Path, layout: &Path, tag: &str) -> String {
    run(cmd(
        oe.to_str().unwrap(),
        [
            "container",
            "image",
            "pull",
            repo.to_str().unwrap(),
            &format!("ostree-unverified-image:oci:{}:{tag}", layout.display()),
        ],
    ));
    let r = refs(repo, "ostree/container/image/");
    assert_eq!(r.len(), 1, "{r:?}");
    r[0].clone()
}

/// Steps 2 and 3.
#[test]
fn encapsulated_images_import_as_ostree_rs_ext_does() {
    let test = "encapsulated_images_import_as_ostree_rs_ext_does";
    let Some((oe, images)) = encapsulated_images(test, &["ostree"]) else {
        return;
    };
    let layout = &images.layout;
    for tag in ["one", "split", "derived"] {
        let (_, manifest) = manifest_of(layout, tag);
        let layers: Vec<String> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        for mode in ["bare", "bare-user"] {
            let what = format!("{tag} in {mode}");
            let work = tempdir();
            let ours = work.path().join("stowage");
            let theirs = work.path().join("ostree-ext");
            init(&ours, mode);
            init(&theirs, mode);
            let name = format!("localhost/enc-{tag}:1");
            copy_to_ostree(layout, tag, &ours, &name);
            let their_ref = oe_pull(&oe, &theirs, layout, tag);
            let our_ref =
                format!("ostree/container/image/docker_3A__2F__2F_localhost/enc-{tag}_3A_1");
            if content_checksum(&ours, &our_ref) != content_checksum(&theirs, &their_ref) {
                panic!(
                    "{what}: the merged root differs from ostree-rs-ext's:\n{}",
                    listing_diff(&ours, &our_ref, &theirs, &their_ref)
                );
            }
            // Layer commits: the commit layer is the image's own commit, object sets are the
            // commits ostree-rs-ext writes, derived layers have its content.
            let blob_refs = refs(&theirs, "ostree/container/blob/");
            assert_eq!(blob_refs, refs(&ours, "ostree/container/blob/"), "{what}");
            assert_eq!(blob_refs.len(), layers.len(), "{what}");
            let derived_from = if tag == "derived" {
                layers.len() - 2
            } else {
                layers.len()
            };
            for (i, digest) in layers.iter().enumerate() {
                let r = format!(
                    "ostree/container/blob/sha256_3A_{}",
                    digest.trim_start_matches("sha256:")
                );
                if i == 0 {
                    assert_eq!(rev(&ours, &r), images.commit, "{what}: commit layer");
                    assert_eq!(
                        rev(&theirs, &r),
                        images.commit,
                        "{what}: commit layer (ostree-ext)"
                    );
                } else if i < derived_from {
                    assert_eq!(rev(&ours, &r), rev(&theirs, &r), "{what}: object set {i}");
                } else {
                    assert_eq!(
                        content_checksum(&ours, &r),
                        content_checksum(&theirs, &r),
                        "{what}: derived layer {i}"
                    );
                }
            }
            let show = ostree(&ours, &["show", &our_ref]);
            assert!(
                show.contains(&format!("Parent:  {}", images.commit)),
                "{what}: merge commit's parent: {show}"
            );
            fsck(&ours);
            no_partial_commits(&ours);
            // Labelled from the image's policy (the same labels ostree-rs-ext gives, as the
            // checksums above show; here, that there are labels at all).
            let labels = ostree(&ours, &["ls", "-R", "-X", &our_ref]);
            for (path, label) in [
                ("/usr/bin/hello", "hello_exec_t"),
                ("/usr/bin/hi", "link_t"),
                ("/usr/lib/foo/big", "foo_t"),
                ("/usr/etc/x.conf", "etc_t"),
            ] {
                let line = labels
                    .lines()
                    .find(|l| l.ends_with(path) || l.contains(&format!("{path} ->")))
                    .unwrap_or_else(|| panic!("{what}: {path} not listed:\n{labels}"));
                assert!(
                    line.contains(label),
                    "{what}: {path} should be {label}: {line}"
                );
            }
            if tag == "derived" {
                // ostree-rs-ext's rules on top of the base: /etc → /usr/etc, /opt dropped,
                // the whiteout and the opaque directory applied.
                let ls = ostree(&ours, &["ls", "-R", &our_ref]);
                for present in [
                    "/usr/etc/new.conf",
                    "/usr/etc/x.conf",
                    "/usr/share/doc/only",
                ] {
                    assert!(ls.contains(present), "{what}: {present} missing:\n{ls}");
                }
                for absent in [
                    "/opt",
                    "/usr/lib/foo/empty",
                    "/usr/share/doc/readme",
                    "/usr/share/doc/extra",
                ] {
                    assert!(!ls.contains(absent), "{what}: {absent} present:\n{ls}");
                }
            }
            // Step 3: again, every layer reused; exported, the original config.
            let again = copy_to_ostree(layout, tag, &ours, &name);
            assert!(
                again.contains(&format!("reused {}", layers.len())),
                "{what}: second import: {again}"
            );
            if mode == "bare" {
                let out = work.path().join("out");
                let mut c = stowage();
                c.args([
                    "copy",
                    &format!("ostree:[{}]{name}", ours.display()),
                    &format!("oci:{}:x", out.display()),
                ]);
                run(c);
                let (_, exported) = manifest_of(&out, "x");
                assert_eq!(
                    exported["config"], manifest["config"],
                    "{what}: exported config"
                );
            }
        }
    }
}

/// Step 5.
#[test]
fn broken_encapsulated_images_are_refused_and_leave_the_repository_intact() {
    let test = "broken_encapsulated_images_are_refused_and_leave_the_repository_intact";
    let Some((_oe, images)) = encapsulated_images(test, &["ostree"]) else {
        return;
    };
    let layout = &images.layout;
    let layout_dir = OciDir::open(layout).unwrap();

    // A commit layer with one byte of a content object changed.
    let (_, one) = manifest_of(layout, "one");
    let tar = gunzip(&layout_blob(
        layout,
        one["layers"][0]["digest"].as_str().unwrap(),
    ));
    let mut archive = tar::Archive::new(&tar[..]);
    let mut out = tar::Builder::new(Vec::new());
    let mut changed = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        if changed.is_none() && path.ends_with(".file") && data.len() > 1000 {
            data[500] ^= 1;
            changed = Some(path.clone());
        }
        if header.entry_type().is_hard_link() || header.entry_type().is_symlink() {
            let target = e.link_name().unwrap().unwrap().into_owned();
            out.append_link(&mut header, &path, target).unwrap();
        } else {
            out.append_data(&mut header, &path, &data[..]).unwrap();
        }
    }
    let changed = changed.expect("a large content object in the commit layer");
    let bad_tar = out.into_inner().unwrap();
    let bad = ImageBuilder::new()
        .label("ostree.final-diffid", &sha256(&bad_tar))
        .tar_layer(bad_tar, LayerCompression::Gzip, History::new("tampered"))
        .build()
        .unwrap();
    bad.write(&layout_dir, Some("tampered")).unwrap();

    // The split image without its second object set.
    let (_, split) = manifest_of(layout, "split");
    let config: Value = serde_json::from_slice(&layout_blob(
        layout,
        split["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let mut short = ImageBuilder::new();
    let kept: Vec<usize> = (0..diff_ids.len()).filter(|&i| i != 2).collect();
    short = short.label(
        "ostree.final-diffid",
        diff_ids[*kept.last().unwrap()].as_str().unwrap(),
    );
    for &i in &kept {
        let tar = gunzip(&layout_blob(
            layout,
            split["layers"][i]["digest"].as_str().unwrap(),
        ));
        short = short.tar_layer(tar, LayerCompression::Gzip, History::new("layer"));
    }
    short
        .build()
        .unwrap()
        .write(&layout_dir, Some("short"))
        .unwrap();

    for (tag, expect) in [
        (
            "tampered",
            changed
                .rsplit('/')
                .next()
                .unwrap()
                .trim_end_matches(".file")
                .to_string(),
        ),
        ("short", "content object".to_string()),
    ] {
        let work = tempdir();
        let repo = work.path().join("repo");
        init(&repo, "bare");
        let mut c = stowage();
        c.args([
            "copy",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("ostree:[{}]localhost/bad:1", repo.display()),
        ]);
        let out = run_failing(c);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&expect),
            "{tag}: error should name {expect}: {err}"
        );
        assert!(
            refs(&repo, "ostree/container/image/").is_empty(),
            "{tag}: an image ref was written"
        );
        fsck(&repo);
    }
}

/// Step 4.
#[test]
fn images_ostree_rs_ext_imported_export_as_one_regenerated_layer() {
    let test = "images_ostree_rs_ext_imported_export_as_one_regenerated_layer";
    let Some((oe, images)) = encapsulated_images(test, &["ostree", "podman"]) else {
        return;
    };
    let work = tempdir();
    let repo = work.path().join("repo");
    init(&repo, "bare");
    let their_ref = oe_pull(&oe, &repo, &images.layout, "split");
    // ostree-rs-ext names the image by its oci: source, which an ostree: image name (a
    // docker reference) cannot spell: point a docker:// name at the same commit.
    let commit = rev(&repo, &their_ref);
    ostree(
        &repo,
        &[
            "refs",
            "--create=ostree/container/image/docker_3A__2F__2F_localhost/theirs_3A_1",
            &commit,
        ],
    );
    let out = work.path().join("out");
    let mut c = common::stowage_progress();
    c.args([
        "copy",
        &format!("ostree:[{}]localhost/theirs:1", repo.display()),
        &format!("oci:{}:x", out.display()),
    ]);
    let o = run(c);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("without stowage's export data") && err.contains("one new layer"),
        "the copy should say the layer was regenerated: {err}"
    );
    let (_, manifest) = manifest_of(&out, "x");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let tar = gunzip(&layout_blob(&out, layers[0]["digest"].as_str().unwrap()));
    // Every file of the merged commit, by container path, with owner, mode and content.
    let mut entries = std::collections::BTreeMap::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let path = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        entries.insert(path, (h.uid().unwrap(), h.mode().unwrap(), data, link));
    }
    for line in ostree(&repo, &["ls", "-R", &commit]).lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let path = f[4].trim_start_matches('/');
        if path.is_empty() {
            continue;
        }
        let cpath = match path.strip_prefix("usr/etc") {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("etc{rest}"),
            _ => path.to_string(),
        };
        let (uid, mode, data, link) = entries
            .get(&cpath)
            .unwrap_or_else(|| panic!("{cpath} missing from the regenerated layer"));
        assert_eq!(uid.to_string(), f[1], "{cpath}: owner");
        assert_eq!(format!("{:05o}", mode), &f[0][1..], "{cpath}: mode");
        match f[0].chars().next().unwrap() {
            '-' => {
                let mut c = cmd("ostree", ["cat", &commit, &format!("/{path}")]);
                c.arg(format!("--repo={}", repo.display()));
                assert_eq!(data, &run(c).stdout, "{cpath}: content");
            }
            'l' => assert_eq!(link.as_deref(), f.get(6).copied(), "{cpath}: target"),
            _ => {}
        }
    }
    // podman reads it from containers-storage.
    let store = stowage_fixtures::tools::PodmanStore::new();
    let mut c = stowage();
    c.args([
        "copy",
        &format!("ostree:[{}]localhost/theirs:1", repo.display()),
        &store.reference("localhost/theirs:1"),
    ]);
    run(c);
    let inspect: Value = serde_json::from_slice(
        &run(store.podman(["image", "inspect", "localhost/theirs:1"])).stdout,
    )
    .unwrap();
    assert_eq!(
        inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        1,
        "{inspect}"
    );
}
