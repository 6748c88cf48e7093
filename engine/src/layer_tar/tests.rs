//! Extraction tests on temporary directories, checked with the real filesystem.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use rustix::io::Errno;
use tar::EntryType;

use super::entry::parse_pax_time;
use super::extract::is_root;
use super::*;
use crate::digest::{sha256_of, VerifiedReader};
use crate::error::{Error, IoContext, Result};
use crate::tar_split::test_tar::{header, TarBuf};
use crate::tar_split::{Assembler, TarSplitWriter};

struct Dest {
    tmp: tempfile::TempDir,
    dir: Dir,
}

impl Dest {
    fn new() -> Dest {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("dest")).unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        let dir = Dir::open_ambient_dir(tmp.path().join("dest"), ambient_authority()).unwrap();
        Dest { tmp, dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join("dest").join(rel)
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    fn lmeta(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.path(rel)).unwrap()
    }
    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.path(rel)).is_ok()
    }
}

/// An xattr of `path` (not following a symlink), `Err` when absent.
fn xattr(path: &Path, name: &str) -> std::result::Result<Vec<u8>, Errno> {
    let mut buf = [0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..])?;
    Ok(buf[..n].to_vec())
}

fn opts(whiteouts: WhiteoutMode) -> ExtractOptions {
    ExtractOptions::for_current_user(whiteouts)
}

fn extract(tar: &[u8], d: &Dest, o: &ExtractOptions) -> Result<ExtractStats> {
    extract_layer::<_, Vec<u8>>(tar, &d.dir, o, "test-layer", None)
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    println!("skipping {test}: needs root (euid 0)");
    true
}

fn bad_reason(err: Error) -> (String, String) {
    match err {
        Error::BadTarEntry { entry, reason, .. } => (entry, reason),
        other => panic!("expected BadTarEntry, got {other}"),
    }
}

fn owned(mut h: tar::Header, uid: u64, gid: u64) -> tar::Header {
    h.set_uid(uid);
    h.set_gid(gid);
    h
}

#[test]
fn normalize_rules() {
    let n = |s: &[u8]| normalize_path(s).map(|p| p.into_os_string().into_vec());
    assert_eq!(n(b"./a/b").unwrap(), b"a/b");
    assert_eq!(n(b"/abs/x").unwrap(), b"abs/x");
    assert_eq!(n(b"a//./b/../c/").unwrap(), b"a/c");
    assert_eq!(n(b"./").unwrap(), b"");
    assert_eq!(n(b"").unwrap(), b"");
    assert_eq!(n(b"caf\xe9").unwrap(), b"caf\xe9");
    assert!(n(b"../x").is_err());
    assert!(n(b"a/../../x").is_err());
    assert!(n(b"/../x").is_err());
    let err = n(b"a\0b").unwrap_err().to_string();
    assert!(err.contains("NUL"), "{err}");
}

#[test]
fn pax_time_parsing() {
    assert_eq!(
        parse_pax_time(b"1700000000.123456789"),
        Some((1_700_000_000, 123_456_789))
    );
    assert_eq!(parse_pax_time(b"5.5"), Some((5, 500_000_000)));
    assert_eq!(parse_pax_time(b"42"), Some((42, 0)));
    assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
    assert_eq!(parse_pax_time(b"1.1234567891"), Some((1, 123_456_789)));
    assert_eq!(parse_pax_time(b"x"), None);
    assert_eq!(parse_pax_time(b"1.x"), None);
}

#[test]
fn extracts_each_entry_kind() {
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.raw(header(b"./", EntryType::Directory, 0, 0o751), b"");
    t.dir("etc/");
    t.pax(&[
        ("mtime", b"1600000000.25"),
        ("SCHILY.xattr.user.note", b"hi\0there"),
    ]);
    t.entry(
        b"etc/hosts",
        EntryType::Regular,
        b"127.0.0.1 localhost\n",
        0o640,
    );
    t.file("etc/empty", b"");
    t.link("etc/rel", EntryType::Symlink, "hosts");
    t.link("etc/abs", EntryType::Symlink, "/etc/passwd");
    t.link("etc/dangling", EntryType::Symlink, "../nowhere");
    // A hard link header carries the file's metadata, as tar writers do (it is applied
    // to the shared inode, as containers/storage does).
    t.pax(&[("mtime", b"1600000000.25")]);
    let mut hard = header(b"etc/hard", EntryType::Link, 0, 0o640);
    hard.set_link_name("./etc/hosts").unwrap();
    t.raw(hard, b"");
    t.entry(b"fifo", EntryType::Fifo, b"", 0o620);
    let mut dev = header(b"dev/null", EntryType::Char, 0, 0o666);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    t.raw(dev, b"");
    let mut blk = header(b"dev/loop0", EntryType::Block, 0, 0o660);
    blk.set_device_major(7).unwrap();
    blk.set_device_minor(0).unwrap();
    t.raw(blk, b"");
    t.file("a/b/c/deep", b"deep");
    let tar = t.finish(Some(10240));
    let stats = extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap();

    assert_eq!(
        fs::read(d.path("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    let m = d.lmeta("etc/hosts");
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 250_000_000));
    let note = xattr(&d.path("etc/hosts"), "user.note").unwrap();
    assert_eq!(note, b"hi\0there");
    assert_eq!(d.lmeta("etc/empty").len(), 0);
    assert_eq!(
        fs::read_link(d.path("etc/rel")).unwrap(),
        Path::new("hosts")
    );
    assert_eq!(
        fs::read_link(d.path("etc/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(d.path("etc/dangling")).unwrap(),
        Path::new("../nowhere")
    );
    assert_eq!(d.lmeta("etc/hard").ino(), m.ino());
    assert!(d.lmeta("fifo").file_type().is_fifo());
    assert_eq!(d.lmeta("fifo").mode() & 0o7777, 0o620);
    assert_eq!(fs::read(d.path("a/b/c/deep")).unwrap(), b"deep");
    assert_eq!(
        d.lmeta("a/b").mode() & 0o7777,
        0o755,
        "implicit parents are 0755"
    );
    assert_eq!(
        d.lmeta("").mode() & 0o7777,
        0o751,
        "the root entry applies to dest"
    );
    assert_eq!(d.lmeta("etc").mtime(), 1_700_000_000);
    assert_eq!(stats.files, 3);
    assert_eq!(stats.file_bytes, 24);
    assert_eq!(stats.entries, 12);
    if is_root() {
        let null = d.lmeta("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert!(d.lmeta("dev/loop0").file_type().is_block_device());
        assert_eq!(stats.skipped_devices, 0);
    } else {
        println!("device nodes not checked: needs root");
        assert_eq!(stats.skipped_devices, 2);
    }
}

#[test]
fn devices_off_are_skipped_and_counted() {
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.entry(b"dev/null", EntryType::Char, b"", 0o666);
    t.file("f", b"x");
    let mut o = opts(WhiteoutMode::Files);
    o.devices = false;
    let stats = extract(&t.finish(None), &d, &o).unwrap();
    assert_eq!(stats.skipped_devices, 1);
    assert!(!d.exists("dev/null"));
    assert!(d.exists("f"));
}

#[test]
fn setuid_survives_chown() {
    if skip_unless_root("setuid_survives_chown") {
        return;
    }
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.raw(
        owned(header(b"bin/su", EntryType::Regular, 4, 0o4755), 1000, 1001),
        b"su!\n",
    );
    t.raw(
        owned(header(b"bin/sg", EntryType::Regular, 4, 0o2755), 0, 50),
        b"sg!\n",
    );
    t.raw(
        owned(header(b"tmp/", EntryType::Directory, 0, 0o1777), 0, 0),
        b"",
    );
    t.raw(
        owned(
            header(b"home/u/", EntryType::Directory, 0, 0o700),
            1000,
            1000,
        ),
        b"",
    );
    let mut l = owned(
        header(b"home/u/link", EntryType::Symlink, 0, 0o777),
        1000,
        1000,
    );
    l.set_link_name("../../tmp").unwrap();
    t.raw(l, b"");
    t.raw(
        owned(header(b".wh.x", EntryType::Regular, 0, 0o644), 4242, 4242),
        b"",
    );
    let stats = extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
    let su = d.lmeta("bin/su");
    assert_eq!(
        (su.mode() & 0o7777, su.uid(), su.gid()),
        (0o4755, 1000, 1001)
    );
    let sg = d.lmeta("bin/sg");
    assert_eq!((sg.mode() & 0o7777, sg.gid()), (0o2755, 50));
    assert_eq!(d.lmeta("tmp").mode() & 0o7777, 0o1777);
    let u = d.lmeta("home/u");
    assert_eq!((u.mode() & 0o7777, u.uid()), (0o700, 1000));
    assert_eq!(d.lmeta("home/u/link").uid(), 1000, "symlinks are lchowned");
    assert_eq!(
        stats.uids,
        BTreeSet::from([0, 1000]),
        ".wh. entries are not counted"
    );
    assert_eq!(stats.gids, BTreeSet::from([0, 50, 1000, 1001]));
}

#[test]
fn symlink_xattrs_via_proc_or_skipped() {
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.pax(&[
        ("SCHILY.xattr.trusted.t", b"on a symlink"),
        ("SCHILY.xattr.user.u", b"not allowed on symlinks"),
    ]);
    t.link("l", EntryType::Symlink, "/nowhere");
    let mut o = opts(WhiteoutMode::Files);
    let stats = extract(&t.finish(None), &d, &o).unwrap();
    assert!(xattr(&d.path("l"), "user.u").is_err());
    if is_root() {
        assert_eq!(xattr(&d.path("l"), "trusted.t").unwrap(), b"on a symlink");
        assert_eq!(stats.skipped_xattrs, 1);
    } else {
        println!("trusted.* xattr on a symlink not checked: needs root");
        assert_eq!(stats.skipped_xattrs, 2);
    }
    // xattrs off: nothing set, everything counted.
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.pax(&[("SCHILY.xattr.user.a", b"1")]);
    t.file("f", b"");
    o.xattrs = false;
    let stats = extract(&t.finish(None), &d, &o).unwrap();
    assert!(xattr(&d.path("f"), "user.a").is_err());
    assert_eq!(stats.skipped_xattrs, 1);
}

#[test]
fn read_only_dirs_get_their_children_and_mtimes() {
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.entry(b"ro/", EntryType::Directory, b"", 0o555);
    t.entry(b"ro/sub/", EntryType::Directory, b"", 0o500);
    t.file("ro/f", b"in a read-only dir");
    t.file("ro/sub/g", b"deeper");
    let stats = extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(fs::read(d.path("ro/sub/g")).unwrap(), b"deeper");
    assert_eq!(d.lmeta("ro").mode() & 0o7777, 0o555);
    assert_eq!(d.lmeta("ro/sub").mode() & 0o7777, 0o500);
    assert_eq!(
        d.lmeta("ro").mtime(),
        1_700_000_000,
        "children did not bump the mtime"
    );
    assert_eq!(d.lmeta("ro/sub").mtime(), 1_700_000_000);
    // Let the temp dir be removed.
    fs::set_permissions(d.path("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(d.path("ro/sub"), fs::Permissions::from_mode(0o755)).unwrap();
}

fn whiteout_layer() -> Vec<u8> {
    let mut t = TarBuf::new();
    t.dir("etc/");
    t.raw(
        owned(
            header(b"etc/.wh.gone.txt", EntryType::Regular, 0, 0o644),
            7,
            8,
        ),
        b"",
    );
    t.dir("opq/");
    t.file("opq/.wh..wh..opq", b"");
    t.file("opq/b", b"b\n");
    t.file("new/.wh..wh..opq", b"");
    t.finish(Some(10240))
}

#[test]
fn overlay_whiteouts() {
    if skip_unless_root("overlay_whiteouts (trusted.* xattrs, chown)") {
        return;
    }
    let d = Dest::new();
    let o = opts(WhiteoutMode::overlay_for_current_user());
    assert_eq!(
        o.whiteouts,
        WhiteoutMode::Overlay {
            opaque_xattr: "trusted.overlay.opaque".into()
        }
    );
    let stats = extract(&whiteout_layer(), &d, &o).unwrap();
    let gone = d.lmeta("etc/gone.txt");
    assert!(gone.file_type().is_char_device());
    assert_eq!((gone.rdev(), gone.mode() & 0o7777), (0, 0));
    assert_eq!((gone.uid(), gone.gid()), (7, 8));
    assert!(!d.exists("etc/.wh.gone.txt"));
    assert!(!d.exists("opq/.wh..wh..opq"));
    for dir in ["opq", "new"] {
        let v = xattr(&d.path(dir), "trusted.overlay.opaque").unwrap();
        assert_eq!(v, b"y", "{dir}");
    }
    assert_eq!(fs::read(d.path("opq/b")).unwrap(), b"b\n");
    assert_eq!(stats.uids, BTreeSet::from([0]));
}

#[test]
fn overlay_mode_skips_smuggled_overlay_xattrs() {
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.pax(&[
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.user.ok", b"1"),
    ]);
    t.file("f", b"x");
    let o = opts(WhiteoutMode::overlay_for_current_user());
    let stats = extract(&t.finish(None), &d, &o).unwrap();
    assert_eq!(stats.skipped_xattrs, 1);
    assert!(xattr(&d.path("f"), "trusted.overlay.redirect").is_err());
    assert_eq!(xattr(&d.path("f"), "user.ok").unwrap(), b"1");
}

#[test]
fn files_whiteouts_stay_plain_files() {
    let d = Dest::new();
    extract(&whiteout_layer(), &d, &opts(WhiteoutMode::Files)).unwrap();
    for f in ["etc/.wh.gone.txt", "opq/.wh..wh..opq", "new/.wh..wh..opq"] {
        let m = d.lmeta(f);
        assert!(m.is_file() && m.len() == 0, "{f}");
    }
    assert!(!d.exists("etc/gone.txt"));
    assert!(xattr(&d.path("opq"), "trusted.overlay.opaque").is_err());
}

#[test]
fn apply_whiteouts_flatten_and_keep_this_layers_entries() {
    let d = Dest::new();
    let mut o = opts(WhiteoutMode::Apply);
    o.reject_duplicates = false;
    let mut l1 = TarBuf::new();
    for f in [
        "etc/gone",
        "etc/keep",
        "opq/old",
        "opq/sub/older",
        "opq/sub2/x",
        "w/lower",
    ] {
        l1.file(f, f.as_bytes());
    }
    l1.link("opq/link", EntryType::Symlink, "/etc");
    extract(&l1.finish(None), &d, &o).unwrap();

    let mut l2 = TarBuf::new();
    l2.file("opq/new", b"listed before the marker");
    l2.dir("opq/sub/");
    l2.file("opq/.wh..wh..opq", b"");
    l2.file("opq/late", b"listed after the marker");
    l2.file("etc/.wh.gone", b"");
    l2.file("etc/.wh.never-existed", b"");
    l2.dir("w/");
    l2.file("w/mine", b"mine");
    l2.file(".wh.w", b"");
    extract(&l2.finish(None), &d, &o).unwrap();

    assert!(!d.exists("etc/gone"));
    assert!(d.exists("etc/keep"));
    assert!(!d.exists("etc/.wh.gone"));
    assert!(!d.exists("opq/.wh..wh..opq"));
    assert!(!d.exists("opq/old"));
    assert!(!d.exists("opq/link"));
    assert!(d.lmeta("opq/sub").is_dir());
    assert!(
        !d.exists("opq/sub/older"),
        "older content inside a re-listed dir is hidden"
    );
    assert!(!d.exists("opq/sub2"));
    assert_eq!(
        fs::read(d.path("opq/new")).unwrap(),
        b"listed before the marker"
    );
    assert_eq!(
        fs::read(d.path("opq/late")).unwrap(),
        b"listed after the marker"
    );
    assert_eq!(fs::read(d.path("w/mine")).unwrap(), b"mine");
    assert!(!d.exists("w/lower"), "the whiteout hides the lower w/ only");
    assert!(
        fs::metadata("/etc").is_ok(),
        "symlink targets are never followed"
    );
}

#[test]
fn escapes_are_rejected() {
    for (name, what) in [(&b"../x"[..], "dotdot"), (b"a/../../x", "nested dotdot")] {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.entry(name, EntryType::Regular, b"evil", 0o644);
        let (entry, reason) =
            bad_reason(extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap_err());
        assert_eq!(entry.as_bytes(), name, "{what}");
        assert!(reason.contains("escapes"), "{what}: {reason}");
        assert!(!d.tmp.path().join("x").exists());
    }
    // Absolute names are made relative.
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.file("/abs/file", b"inside");
    extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
    assert_eq!(fs::read(d.path("abs/file")).unwrap(), b"inside");
}

#[test]
fn symlink_parent_escape_writes_nothing_outside() {
    for target in ["ABSOLUTE", "../outside", "../../../../../../.."] {
        let d = Dest::new();
        let outside = d.outside();
        let target = if target == "ABSOLUTE" {
            outside.to_str().unwrap().to_owned()
        } else {
            target.to_owned()
        };
        let mut t = TarBuf::new();
        t.link("a", EntryType::Symlink, &target);
        let inner = if target.ends_with("..") {
            format!(
                "a/{}",
                outside.strip_prefix("/").unwrap().join("passwd").display()
            )
        } else {
            "a/passwd".to_owned()
        };
        t.file(&inner, b"pwned");
        let err = extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap_err();
        let (entry, reason) = bad_reason(err);
        assert_eq!(entry, inner);
        assert!(reason.contains("parent"), "{reason}");
        assert!(
            !outside.join("passwd").exists(),
            "wrote outside via {target}"
        );
    }
    // A symlink that stays inside is followed (containers-storage does the same).
    let d = Dest::new();
    let mut t = TarBuf::new();
    t.dir("real/");
    t.link("alias", EntryType::Symlink, "real");
    t.file("alias/f", b"via symlink");
    extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
    assert_eq!(fs::read(d.path("real/f")).unwrap(), b"via symlink");
}

#[test]
fn hardlink_header_metadata_applies_to_the_inode_like_containers_storage() {
    use std::os::unix::fs::PermissionsExt;
    let mut t = TarBuf::new();
    t.entry(b"su", EntryType::Regular, b"binary", 0o4755);
    let mut h = tar::Header::new_ustar();
    h.set_path("su-link").unwrap();
    h.set_entry_type(EntryType::Link);
    h.set_link_name("su").unwrap();
    h.set_mode(0o644);
    h.set_size(0);
    h.set_mtime(1_000_000);
    t.raw(h, b"");
    let d = Dest::new();
    extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap();
    // podman (containers/storage) stores 0644 here: the link header wins.
    assert_eq!(d.lmeta("su").permissions().mode() & 0o7777, 0o644);
    assert_eq!(d.lmeta("su-link").permissions().mode() & 0o7777, 0o644);
    assert_eq!(
        std::os::unix::fs::MetadataExt::mtime(&d.lmeta("su")),
        1_000_000
    );
}

#[test]
fn hardlink_escapes_and_missing_targets_are_rejected() {
    for (target, needle) in [
        ("../../etc/passwd", "escapes"),
        ("nope", "does not exist"),
        ("dir", "is a directory"),
        ("h", "itself"),
    ] {
        let d = Dest::new();
        let mut t = TarBuf::new();
        t.dir("dir/");
        t.link("h", EntryType::Link, target);
        let (entry, reason) =
            bad_reason(extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).unwrap_err());
        assert_eq!(entry, "h");
        assert!(reason.contains(needle), "{target}: {reason}");
    }
    // A link whose target's parent is a symlink leading out is refused too.
    let d = Dest::new();
    fs::write(d.outside().join("secret"), b"s").unwrap();
    let mut t = TarBuf::new();
    t.link("out", EntryType::Symlink, d.outside().to_str().unwrap());
    t.link("h", EntryType::Link, "out/secret");
    assert!(extract(&t.finish(None), &d, &opts(WhiteoutMode::Files)).is_err());
    assert!(!d.exists("h"));
}

#[test]
fn duplicates_rejected_or_last_wins() {
    let tar = {
        let mut t = TarBuf::new();
        t.file("a/f", b"first");
        t.file("./a/f", b"second");
        t.finish(None)
    };
    let d = Dest::new();
    let (entry, reason) = bad_reason(extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap_err());
    assert_eq!(entry, "./a/f");
    assert!(reason.contains("duplicate path in layer; containers-storage cannot store it"));

    let d = Dest::new();
    let mut o = opts(WhiteoutMode::Files);
    o.reject_duplicates = false;
    extract(&tar, &d, &o).unwrap();
    assert_eq!(fs::read(d.path("a/f")).unwrap(), b"second");

    // Last wins across kinds: a directory replaced by a file and vice versa.
    let mut t = TarBuf::new();
    t.entry(b"x/", EntryType::Directory, b"", 0o555);
    t.file("x/child", b"c");
    t.file("x", b"now a file");
    t.file("y", b"file");
    t.dir("y/");
    let d = Dest::new();
    extract(&t.finish(None), &d, &o).unwrap();
    assert_eq!(fs::read(d.path("x")).unwrap(), b"now a file");
    assert!(d.lmeta("y").is_dir());
}

#[test]
fn stream_is_consumed_to_eof_and_verified() {
    let mut t = TarBuf::new();
    t.file("f", b"content");
    let mut tar = t.finish(Some(10240));
    tar.extend_from_slice(&[0u8; 4096]);
    let digest = sha256_of(&tar);
    let d = Dest::new();
    let mut v =
        VerifiedReader::new(tar.as_slice(), &digest, Some(tar.len() as u64), "layer 1").unwrap();
    extract_layer::<_, Vec<u8>>(&mut v, &d.dir, &opts(WhiteoutMode::Files), "layer 1", None)
        .unwrap();
    assert!(v.is_verified(), "the trailing padding was read");
    assert_eq!(v.count(), tar.len() as u64);

    // A corrupt stream fails with the digest error, even though the tar itself parses.
    let wrong = sha256_of(b"something else");
    let d = Dest::new();
    let v = VerifiedReader::new(tar.as_slice(), &wrong, None, "layer 1").unwrap();
    let err = extract_layer::<_, Vec<u8>>(v, &d.dir, &opts(WhiteoutMode::Files), "layer 1", None)
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");

    // read_entries also reads to the end.
    let mut v = VerifiedReader::new(tar.as_slice(), &digest, None, "layer 1").unwrap();
    read_entries(&mut v, "layer 1", |_, _| Ok(())).unwrap();
    assert!(v.is_verified());
}

#[test]
fn read_entries_reports_metadata_and_content() {
    let mut t = TarBuf::new();
    t.dir("etc/");
    t.pax(&[("SCHILY.xattr.user.a", b"1")]);
    t.raw(
        owned(header(b"etc/x", EntryType::Regular, 3, 0o4711), 5, 6),
        b"xyz",
    );
    t.file("etc/.wh.gone", b"");
    t.file("opq/.wh..wh..opq", b"");
    t.link("etc/l", EntryType::Link, "etc/x");
    t.link("etc/s", EntryType::Symlink, "../../anywhere");
    let mut seen = Vec::new();
    let mut contents = HashMap::new();
    read_entries(t.finish(Some(10240)).as_slice(), "layer", |meta, body| {
        let mut data = Vec::new();
        body.read_to_end(&mut data).unwrap();
        contents.insert(meta.path.clone(), data);
        seen.push(meta.clone());
        Ok(())
    })
    .unwrap();
    let kinds: Vec<_> = seen
        .iter()
        .map(|m| (m.path.to_str().unwrap().to_owned(), m.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("etc".into(), EntryKind::Directory),
            ("etc/x".into(), EntryKind::Regular),
            (
                "etc/.wh.gone".into(),
                EntryKind::Whiteout {
                    target: "etc/gone".into()
                }
            ),
            (
                "opq/.wh..wh..opq".into(),
                EntryKind::OpaqueWhiteout { dir: "opq".into() }
            ),
            (
                "etc/l".into(),
                EntryKind::Hardlink {
                    target: "etc/x".into()
                }
            ),
            (
                "etc/s".into(),
                EntryKind::Symlink {
                    target: "../../anywhere".into()
                }
            ),
        ]
    );
    let x = &seen[1];
    assert_eq!(
        (x.mode, x.uid, x.gid, x.size, x.raw_name.as_slice()),
        (0o4711, 5, 6, 3, &b"etc/x"[..])
    );
    assert_eq!(x.xattrs, vec![("user.a".to_owned(), b"1".to_vec())]);
    assert_eq!(contents[Path::new("etc/x")], b"xyz");
}

#[test]
fn bad_entries_are_named() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            {
                // A ustar name field ends at its first NUL; a PAX path can carry one.
                let mut t = TarBuf::new();
                t.pax(&[("path", b"a\0b")]);
                t.file("placeholder", b"");
                t.finish(None)
            },
            "NUL",
        ),
        (
            {
                let mut t = TarBuf::new();
                t.entry(b"v", EntryType::new(b'V'), b"", 0o644);
                t.finish(None)
            },
            "unsupported tar entry type",
        ),
        (
            {
                let mut t = TarBuf::new();
                t.file("d/.wh..", b"");
                t.finish(None)
            },
            "whiteout of an invalid name",
        ),
        (
            {
                let mut t = TarBuf::new();
                t.entry(b"s", EntryType::Symlink, b"", 0o777);
                t.finish(None)
            },
            "symlink without a target",
        ),
        (
            {
                let mut t = TarBuf::new();
                t.entry(b"./", EntryType::Regular, b"", 0o644);
                t.finish(None)
            },
            "root must be a directory",
        ),
    ];
    for (tar, needle) in cases {
        let d = Dest::new();
        let (_, reason) = bad_reason(extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap_err());
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
}

/// Extraction and tar-split in one pass: the diff dir plus the tar-split rebuild the
/// original tar bit for bit (what containers-storage's `Diff` does).
#[test]
fn extraction_with_tar_split_reassembles_bit_identical() {
    let mut t = TarBuf::new();
    t.dir("./usr/");
    t.pax(&[
        ("path", format!("usr/{}", "long".repeat(40)).as_bytes()),
        ("SCHILY.xattr.user.x", b"v"),
    ]);
    t.file("placeholder", b"pax-named content\n");
    t.file("usr/bin", &vec![b'z'; 100_000]);
    t.link("usr/hard", EntryType::Link, "usr/bin");
    t.file("usr/.wh.old", b"");
    t.file("usr/empty", b"");
    let mut tar = t.finish(Some(10240));
    tar.extend_from_slice(b"garbage after the archive");

    let d = Dest::new();
    let mut w = TarSplitWriter::new(Vec::new());
    // Overlay whiteouts (a device node) need root or Linux >= 5.8; plain files work anywhere.
    let o = opts(if is_root() {
        WhiteoutMode::overlay_for_current_user()
    } else {
        WhiteoutMode::Files
    });
    let stats = extract_layer(tar.as_slice(), &d.dir, &o, "layer", Some(&mut w)).unwrap();
    assert_eq!(stats.files, 3);
    let ts = w.finish().unwrap();

    let dir = d.dir.try_clone().unwrap();
    let mut asm = Assembler::new(ts.as_slice(), move |name: &[u8], _| {
        let path = normalize_path(name)?;
        let f = dir.open(&path).at("open", &path)?;
        Ok(Box::new(f) as Box<dyn Read + Send>)
    });
    let mut rebuilt = Vec::new();
    io::copy(&mut asm, &mut rebuilt).unwrap();
    assert!(rebuilt == tar, "reassembled tar differs");
}

/// Found with the rebuild property of fuzz/'s layer_tar target: `a/b` and then a file `a`
/// extracted with `a/b` lost, and recorded a tar-split that could not be replayed from the
/// extracted tree (a containers-storage layer that could not be exported).
#[test]
fn entry_replacing_own_directory_refused() {
    let tar = {
        let mut t = TarBuf::new();
        t.file("a/b", b"abc");
        t.file("a", b"zz");
        t.finish(None)
    };
    let d = Dest::new();
    let (entry, reason) = bad_reason(extract(&tar, &d, &opts(WhiteoutMode::Files)).unwrap_err());
    assert_eq!(entry, "a");
    assert!(
        reason.contains("replaces the directory holding \"a/b\""),
        "{reason}"
    );

    // Recording a tar-split refuses it too, even where duplicates are allowed.
    let mut o = opts(WhiteoutMode::overlay_for_current_user());
    o.reject_duplicates = false;
    let d = Dest::new();
    let mut split = TarSplitWriter::new(Vec::new());
    let err = extract_layer(tar.as_slice(), &d.dir, &o, "test-layer", Some(&mut split));
    let (entry, _) = bad_reason(err.unwrap_err());
    assert_eq!(entry, "a");

    // Without either, the last entry wins as before.
    let mut o = opts(WhiteoutMode::Files);
    o.reject_duplicates = false;
    let d = Dest::new();
    extract(&tar, &d, &o).unwrap();
    assert_eq!(fs::read(d.path("a")).unwrap(), b"zz");
}

/// The same class as above, for overlay whiteouts: a whiteout for a path the same layer lists
/// replaced that entry with the whiteout device.
#[test]
fn overlay_whiteout_of_own_entry_refused() {
    for first in ["x", "x/y"] {
        let tar = {
            let mut t = TarBuf::new();
            t.file(first, b"data");
            t.file(".wh.x", b"");
            t.finish(None)
        };
        let d = Dest::new();
        let o = opts(WhiteoutMode::overlay_for_current_user());
        let (entry, reason) = bad_reason(extract(&tar, &d, &o).unwrap_err());
        assert_eq!(entry, ".wh.x");
        assert!(
            reason.contains("a whiteout for \"x\", which the same layer lists"),
            "{reason}"
        );
        assert_eq!(fs::read(d.path(first)).unwrap(), b"data");
    }
}
