//! One copy on disk between an ostree repository and containers-storage (issue 8):
//! `stowage image copy-to-storage` (ostree → containers-storage) and `stowage copy
//! containers-storage:… ostree:…` share file data with the other store.
//!
//! 1. On a filesystem with reflinks (a loop-mounted XFS image made by the test, `mkfs.xfs -m
//!    reflink=1`, and a btrfs one), both directions reflink every file: the summary line says so, the used
//!    blocks of the filesystem (`df`, after `sync -f`) grow by a fraction of the file data, and
//!    `filefrag -v` flags the destination's extents `shared`. `du` would count a reflinked
//!    file fully in both stores, so it cannot show the sharing; the filesystem's block count
//!    can.
//! 2. The copy is still exact: podman reads the image (digest and `RootFS.Layers`), `ostree
//!    fsck` passes, and exporting the image gives the original config and diffIDs.
//! 3. On tmpfs (no reflinks) files are copied — unless a bare repository's object and the
//!    layer file agree on owner, mode, xattrs and mtime (bare objects have mtime 0): an image
//!    whose files have mtime 0 is then hard-linked in both directions, one inode in both
//!    stores.
//!
//! Needs root (loop devices, mounts, chown) and mkfs.xfs / mkfs.btrfs, filefrag, ostree, podman; skipped (failing
//! under CI=true) otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;
use stowage_fixtures::builder::{History, ImageBuilder};
use stowage_fixtures::layer::{LayerCompression, LayerSpec, Mtime};

/// A filesystem mounted on a new temporary directory, unmounted (lazily, with what podman
/// mounted inside) when dropped, also on panic.
struct Mounted {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Mounted {
    /// A 1 GiB image made by `mkfs` (`mkfs.xfs -m reflink=1` or `mkfs.btrfs`: both have
    /// reflinks), loop-mounted; `None` (after a SKIP line) when that cannot be done here.
    fn loop_image(test: &str, mkfs: &str) -> Option<Mounted> {
        if !is_root() {
            skip(test, "loop-mounting a filesystem image needs root");
            return None;
        }
        if !require(test, &[mkfs, "filefrag"]) {
            return None;
        }
        let dir = tempdir();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run(cmd("truncate", ["-s", "1G"]).arg(&img));
        match mkfs {
            "mkfs.xfs" => run(cmd(mkfs, ["-q", "-m", "reflink=1"]).arg(&img)),
            _ => run(cmd(mkfs, ["-q"]).arg(&img)),
        };
        let out = cmd("mount", ["-o", "loop"]).arg(&img).arg(&mnt).output();
        match out {
            Ok(o) if o.status.success() => Some(Mounted { _dir: dir, mnt }),
            Ok(o) => {
                skip(
                    test,
                    &format!(
                        "cannot loop-mount the {mkfs} image: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                );
                None
            }
            Err(e) => {
                skip(test, &format!("cannot run mount: {e}"));
                None
            }
        }
    }

    /// A 512 MiB tmpfs (no reflinks, hard links work).
    fn tmpfs(test: &str) -> Option<Mounted> {
        if !is_root() {
            skip(test, "mounting a tmpfs needs root");
            return None;
        }
        let dir = tempdir();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let out = cmd("mount", ["-t", "tmpfs", "-o", "size=512m", "tmpfs"])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mounted { _dir: dir, mnt }),
            _ => {
                skip(test, "cannot mount a tmpfs");
                None
            }
        }
    }

    /// Blocks in use on the filesystem, in bytes, after its writes reached it.
    fn used(&self) -> u64 {
        run(cmd("sync", ["-f"]).arg(&self.mnt));
        let out = run_stdout(cmd("df", ["--output=used", "-B1"]).arg(&self.mnt));
        out.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("df printed {out:?}"))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // podman may have mounted ROOT/overlay of a store inside.
        if let Ok(entries) = std::fs::read_dir(&self.mnt) {
            for e in entries.flatten() {
                let overlay = e.path().join("root/overlay");
                if overlay.exists() {
                    let _ = Command::new("umount").arg("-l").arg(&overlay).output();
                }
            }
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
    }
}

/// A containers-storage store at `dir/root` (run root `dir/runroot`).
struct Store {
    root: PathBuf,
    runroot: PathBuf,
}

impl Store {
    fn at(dir: &Path) -> Store {
        Store {
            root: dir.join("root"),
            runroot: dir.join("runroot"),
        }
    }

    fn reference(&self, name: &str) -> String {
        format!(
            "containers-storage:[overlay@{}+{}]{name}",
            self.root.display(),
            self.runroot.display()
        )
    }

    fn podman_inspect(&self, name: &str) -> Value {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .args(["--storage-driver", "overlay", "image", "inspect", name]);
        let out = run(c);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
    }
}

/// An image of three layers with `mib` MiB of incompressible file data in all, a small text
/// file each and a hard link; every regular file gets `mtime`, the hard link's header the
/// fixtures' default mtime.
fn image(layout: &Path, mib: usize, mtime: Option<Mtime>) -> Built {
    let mut image = ImageBuilder::new()
        .created("2026-11-01T00:00:00Z")
        .platform("amd64", None);
    for i in 0..3u64 {
        let mut spec = LayerSpec::new("test");
        let f = spec.file(
            &format!("usr/lib/data{i}"),
            SplitMix64::new(i + 1).bytes(mib * 1024 * 1024 / 3),
        );
        if let Some(m) = &mtime {
            f.mtime = *m;
        }
        let f = spec.file(
            &format!("etc/small{i}"),
            format!("small {i}\n").into_bytes(),
        );
        if let Some(m) = &mtime {
            f.mtime = *m;
        }
        if i == 0 {
            // With `mtime` given, the link's header keeps the fixtures' mtime: containers-storage
            // applies it to the shared inode, which must then not be another store's.
            let link = spec.hardlink("usr/lib/data0-link", "usr/lib/data0");
            link.mtime = Mtime {
                secs: stowage_fixtures::layer::DEFAULT_MTIME,
                nanos: 0,
            };
        }
        image = image.layer_with_history(&spec, LayerCompression::GzipLevel(1), History::new("t"));
    }
    write_layout(layout, "t", image)
}

/// `(reflinked, hard-linked, copied)` files from the summary line's `files: …` part.
fn file_counts(stderr: &str) -> (u64, u64, u64) {
    let part = stderr
        .split("files: ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("no files: counts in {stderr:?}"));
    let count = |word: &str| -> u64 {
        part.split(", ")
            .find_map(|p| p.trim().strip_suffix(word)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {word} count in {stderr:?}"))
    };
    (count("reflinked"), count("hard-linked"), count("copied"))
}

/// `stowage image copy-to-storage --source ostree:[REPO]NAME --target TARGET` into `host`;
/// its stderr.
fn copy_to_storage(repo: &Path, name: &str, host: &Store, target: &str, scratch: &Path) -> String {
    let mut c = stowage_progress();
    c.arg("image")
        .arg("--bootc-storage")
        .arg(scratch.join("bootc/root"))
        .arg("--bootc-runroot")
        .arg(scratch.join("bootc/runroot"))
        .arg("--host-storage")
        .arg(&host.root)
        .arg("--host-runroot")
        .arg(&host.runroot)
        .arg("copy-to-storage")
        .arg("--source")
        .arg(format!("ostree:[{}]{name}", repo.display()))
        .arg("--target")
        .arg(target);
    String::from_utf8_lossy(&run(c).stderr).into_owned()
}

/// `stowage copy SRC DST` with its summary line; its stderr.
fn copy(src: &str, dst: &str) -> String {
    let mut c = stowage_progress();
    c.arg("copy").arg(src).arg(dst);
    String::from_utf8_lossy(&run(c).stderr).into_owned()
}

/// The image reads back exactly: podman's digest and layers, `ostree fsck`, and an export of
/// the stored image with the original config and diffIDs.
fn check_exact(host: &Store, name: &str, built: &Built, repos: &[&Path], scratch: &Path) {
    let img = host.podman_inspect(name);
    assert_eq!(img["Digest"], Value::String(built.manifest_digest.clone()));
    assert_eq!(img["RootFS"]["Layers"], serde_json::json!(built.diff_ids));
    for repo in repos {
        run(cmd("ostree", ["fsck"]).arg(format!("--repo={}", repo.display())));
    }
    let out = scratch.join(format!("export-{}", name.replace(['/', ':'], "-")));
    let msg = copy(&host.reference(name), &format!("oci:{}:x", out.display()));
    assert!(
        !msg.contains("files:"),
        "an OCI layout stores blobs, it places no files: {msg}"
    );
    assert_eq!(
        layout_manifest(&out, "x")["config"]["digest"],
        built.config_digest.as_str(),
        "the exported config"
    );
    assert_eq!(layout_diff_ids(&out, "x"), built.diff_ids);
}

/// A regular file of the store's layers whose name is `name`.
fn layer_file(store: &Store, name: &str) -> PathBuf {
    let overlay = store.root.join("overlay");
    for layer in std::fs::read_dir(&overlay).unwrap().flatten() {
        let p = layer.path().join("diff/usr/lib").join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("no layer of {} has usr/lib/{name}", store.root.display())
}

#[test]
fn copies_between_ostree_and_containers_storage_share_extents_on_xfs() {
    shares_extents(
        "copies_between_ostree_and_containers_storage_share_extents_on_xfs",
        "mkfs.xfs",
    );
}

#[test]
fn copies_between_ostree_and_containers_storage_share_extents_on_btrfs() {
    shares_extents(
        "copies_between_ostree_and_containers_storage_share_extents_on_btrfs",
        "mkfs.btrfs",
    );
}

/// Module doc, steps 1 and 2, on a filesystem `mkfs` makes.
fn shares_extents(test: &str, mkfs: &str) {
    if !require(test, &["ostree", "podman"]) {
        return;
    }
    let Some(fs) = Mounted::loop_image(test, mkfs) else {
        return;
    };
    let scratch = tempdir();
    let built = image(&scratch.path().join("oci"), 24, None);
    let data = 24 * 1024 * 1024u64;
    // bootc's repository is bare; the stores side by side on one filesystem.
    let repo = fs.mnt.join("repo");
    init(&repo, "bare");
    let name = "example.com/unified:1";
    copy(
        &built.reference,
        &format!("ostree:[{}]{name}", repo.display()),
    );

    // ostree → containers-storage.
    let host = Store::at(&fs.mnt.join("host"));
    let before = fs.used();
    let msg = copy_to_storage(&repo, name, &host, "localhost/unified:1", scratch.path());
    let grown = fs.used() - before;
    let (reflinked, hardlinked, copied) = file_counts(&msg);
    assert_eq!(
        (reflinked, hardlinked, copied),
        (6, 0, 0),
        "every regular file reflinked: {msg}"
    );
    eprintln!("{mkfs}: copy-to-storage of {data} bytes of file data: the filesystem grew by {grown} bytes");
    assert!(
        grown < data / 4,
        "the filesystem grew by {grown} bytes for {data} bytes of reflinked data: {msg}"
    );
    let frag = run_stdout(cmd("filefrag", ["-v"]).arg(layer_file(&host, "data1")));
    assert!(frag.contains("shared"), "no shared extent: {frag}");
    check_exact(
        &host,
        "localhost/unified:1",
        &built,
        &[&repo],
        scratch.path(),
    );

    // containers-storage → ostree, into a second repository (the first has every object).
    let repo2 = fs.mnt.join("repo2");
    init(&repo2, "bare-user");
    let before = fs.used();
    let msg = copy(
        &host.reference("localhost/unified:1"),
        &format!("ostree:[{}]{name}", repo2.display()),
    );
    let grown = fs.used() - before;
    eprintln!(
        "{mkfs}: containers-storage → ostree of {data} bytes: the filesystem grew by {grown} bytes"
    );
    assert_eq!(file_counts(&msg), (6, 0, 0), "{msg}");
    assert!(grown < data / 4, "grew by {grown} bytes: {msg}");
    run(cmd("ostree", ["fsck"]).arg(format!("--repo={}", repo2.display())));
    // And back out of the second repository, exactly.
    let host2 = Store::at(&fs.mnt.join("host2"));
    let msg = copy_to_storage(&repo2, name, &host2, "localhost/back:1", scratch.path());
    assert_eq!(file_counts(&msg).0, 6, "{msg}");
    check_exact(
        &host2,
        "localhost/back:1",
        &built,
        &[&repo2],
        scratch.path(),
    );
}

#[test]
fn without_reflinks_files_are_copied_or_hard_linked_when_metadata_agree() {
    let test = "without_reflinks_files_are_copied_or_hard_linked_when_metadata_agree";
    if !require(test, &["ostree", "podman"]) {
        return;
    }
    let Some(fs) = Mounted::tmpfs(test) else {
        return;
    };
    let scratch = tempdir();
    let repo = fs.mnt.join("repo");
    init(&repo, "bare");

    // Files with the fixtures' mtime: a bare object has mtime 0, so no hard link; copied.
    let built = image(&scratch.path().join("a"), 3, None);
    copy(
        &built.reference,
        &format!("ostree:[{}]example.com/a:1", repo.display()),
    );
    let host = Store::at(&fs.mnt.join("host"));
    let msg = copy_to_storage(
        &repo,
        "example.com/a:1",
        &host,
        "localhost/a:1",
        scratch.path(),
    );
    assert_eq!(file_counts(&msg), (0, 0, 6), "{msg}");
    check_exact(&host, "localhost/a:1", &built, &[&repo], scratch.path());

    // Files with mtime 0, root-owned, 0644, no xattrs: exactly what the bare objects have, so
    // the layer files are hard links to them.
    let zero = Mtime { secs: 0, nanos: 0 };
    let built = image(&scratch.path().join("b"), 3, Some(zero));
    copy(
        &built.reference,
        &format!("ostree:[{}]example.com/b:1", repo.display()),
    );
    let msg = copy_to_storage(
        &repo,
        "example.com/b:1",
        &host,
        "localhost/b:1",
        scratch.path(),
    );
    assert_eq!(file_counts(&msg), (0, 6, 0), "{msg}");
    let f = layer_file(&host, "data2");
    let nlink = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&f).unwrap());
    assert!(nlink >= 2, "{} has {nlink} link(s)", f.display());
    check_exact(&host, "localhost/b:1", &built, &[&repo], scratch.path());

    // The layer's hard-link entry has the fixtures' mtime, which containers-storage gives the
    // shared inode: the extractor gave `data0` a private copy first, so the ostree object
    // kept mtime 0 (the fsck above) and the layer file now has the link's mtime.
    let data0 = layer_file(&host, "data0");
    let meta = std::fs::metadata(&data0).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::mtime(&meta) as u64,
        stowage_fixtures::layer::DEFAULT_MTIME
    );

    // The reverse, into a new bare repository: hard links again, except `data0`, whose mtime
    // is no longer 0. (A bare-user repository's objects carry user.ostreemeta, so there every
    // file is reflinked or copied; tmpfs on this kernel may not hold user xattrs, so that case
    // is the XFS test's.)
    let repo2 = fs.mnt.join("repo2");
    init(&repo2, "bare");
    let msg = copy(
        &host.reference("localhost/b:1"),
        &format!("ostree:[{}]example.com/b:1", repo2.display()),
    );
    assert_eq!(file_counts(&msg), (0, 5, 1), "{msg}");
    run(cmd("ostree", ["fsck"]).arg(format!("--repo={}", repo2.display())));
}
