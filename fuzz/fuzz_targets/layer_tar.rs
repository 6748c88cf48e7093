//! Layer tar entries: ustar, PAX (`path`, `linkpath`, `mtime`, `SCHILY.xattr.*`, sizes) and
//! GNU long names/links, through `read_entries` and `extract_layer`.
//!
//! Input: one byte choosing the whiteout mode, then the tar.
//! Properties:
//! 1. every entry path is `normalize_path` of its raw name: relative, without `.`/`..`
//!    components or NUL; whiteout, opaque and hard-link targets likewise;
//! 2. extraction writes nothing outside the destination (its parent holds only it);
//! 3. a tar that extracts also walks (extraction checks at least what walking checks), and
//!    both count the same entries;
//! 4. when the tar-split was recorded during extraction, replaying it with the bodies read
//!    back from the extracted tree gives the input bytes (a containers-storage export).
#![no_main]
use std::io::Read as _;
use std::path::{Component, Path};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use libfuzzer_sys::fuzz_target;
use stowage_engine::layer_tar::{
    extract_layer, normalize_path, read_entries, EntryKind, ExtractOptions, WhiteoutMode,
};
use stowage_engine::tar_split::{Assembler, TarSplitWriter};

fn assert_clean(p: &Path, what: &str) {
    for c in p.components() {
        assert!(
            matches!(c, Component::Normal(_)),
            "{what} {p:?} has a component {c:?}"
        );
    }
    assert!(
        !p.as_os_str().as_encoded_bytes().contains(&0),
        "{what} {p:?} has a NUL"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, tar)) = data.split_first() else {
        return;
    };
    let mut walked = 0u64;
    let walk = read_entries(tar, "fuzz", |meta, body| {
        walked += 1;
        assert_clean(&meta.path, "entry path");
        let again = normalize_path(&meta.raw_name).expect("a walked name normalises");
        match &meta.kind {
            EntryKind::Whiteout { target } => {
                assert_clean(target, "whiteout target");
                assert_eq!(again.parent(), target.parent());
            }
            EntryKind::OpaqueWhiteout { dir } => {
                assert_clean(dir, "opaque directory");
                assert_eq!(again.parent().unwrap_or(Path::new("")), dir.as_path());
            }
            EntryKind::Hardlink { target } => assert_clean(target, "hard-link target"),
            _ => assert_eq!(again, meta.path),
        }
        // Read a little of the body; the walker consumes the rest.
        let mut buf = [0u8; 100];
        let _ = body.read(&mut buf);
        Ok(())
    });

    let mode = match sel % 3 {
        0 => WhiteoutMode::overlay_for_current_user(),
        1 => WhiteoutMode::Files,
        _ => WhiteoutMode::Apply,
    };
    let mut opts = ExtractOptions::for_current_user(mode);
    opts.reject_duplicates = sel & 0x80 != 0;
    let outer = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir(outer.path().join("root")).expect("mkdir");
    let dest = Dir::open_ambient_dir(outer.path().join("root"), ambient_authority()).expect("open");
    let extracted = if sel & 0x40 != 0 {
        let mut split = TarSplitWriter::new(Vec::new());
        let r = extract_layer(tar, &dest, &opts, "fuzz", Some(&mut split));
        if r.is_ok() {
            let split = split
                .finish()
                .expect("a tar-split of an extracted tar finishes");
            let mut out = Vec::new();
            Assembler::new(split.as_slice(), |name: &[u8], _size| {
                let path = normalize_path(name)?;
                let f = dest
                    .open(&path)
                    .map_err(|e| stowage_engine::Error::from_io(format!("opening {path:?}"), e))?;
                Ok(Box::new(f.into_std()) as Box<dyn std::io::Read + Send>)
            })
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("rebuilding the extracted layer failed: {e}"));
            assert!(out == tar, "the rebuilt layer differs from the input");
        }
        r
    } else {
        extract_layer(
            tar,
            &dest,
            &opts,
            "fuzz",
            None::<&mut TarSplitWriter<Vec<u8>>>,
        )
    };
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .expect("read the parent")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["root"], "extraction wrote beside its destination");
    if let Ok(stats) = extracted {
        assert!(
            walk.is_ok(),
            "extracted but the walk failed: {:?}",
            walk.err()
        );
        assert_eq!(
            stats.entries, walked,
            "extraction and walk count different entries"
        );
    }
});
