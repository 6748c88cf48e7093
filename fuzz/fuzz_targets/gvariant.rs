//! The ostree GVariant reader (`gvariant::parse`, `Type::parse`) and the object parsers built
//! on it (`Commit`, `DirTree`, `DirMeta`, `FileMeta` from `user.ostreemeta` and archive
//! headers).
//!
//! Input: one byte choosing the type (one of ostree's object types, or, for the last
//! choice, a type string read up to the first NUL), then the serialized value.
//! Properties:
//! 1. a parsed type prints to a type string that parses to the same type;
//! 2. decode → encode → decode is stable: the encoding of a decoded value is in normal form,
//!    decodes again, and encodes to the same bytes; input already in normal form encodes to
//!    itself;
//! 3. an object that parses serializes to bytes that parse to the same object.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stowage_engine::ostree::gvariant::{self, Type};
use stowage_engine::ostree::object::{COMMIT_TYPE, DIRMETA_TYPE, DIRTREE_TYPE, FILE_HEADER_TYPE};
use stowage_engine::ostree::{Commit, DirMeta, DirTree, FileMeta};

const TYPES: [&str; 8] = [
    COMMIT_TYPE,
    DIRTREE_TYPE,
    DIRMETA_TYPE,
    FILE_HEADER_TYPE,
    "(tuuuusa(ayay))",
    "a{sv}",
    "v",
    "(a(s(taya{sv}))a{sv})",
];

fn roundtrip(ty: &Type, data: &[u8]) {
    let text = ty.to_string();
    assert_eq!(
        Type::parse(&text).as_ref(),
        Ok(ty),
        "type {text:?} re-parses differently"
    );
    let Ok(v) = gvariant::parse(ty, data) else {
        return;
    };
    assert_eq!(
        v.type_(),
        *ty,
        "a decoded value has the type it was read as"
    );
    let bytes = v.to_bytes();
    assert!(
        gvariant::is_normal_form(ty, &bytes),
        "encoding is not in normal form"
    );
    let again = gvariant::parse(ty, &bytes).expect("an encoded value decodes");
    assert_eq!(
        again.to_bytes(),
        bytes,
        "decode → encode → decode is not stable"
    );
    if gvariant::is_normal_form(ty, data) {
        assert_eq!(bytes, data, "normal-form input encodes to itself");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let choice = usize::from(sel) % (TYPES.len() + 1);
    let (ty, body) = if choice < TYPES.len() {
        (Type::parse(TYPES[choice]).expect("constant type"), rest)
    } else {
        let split = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let Ok(s) = std::str::from_utf8(&rest[..split]) else {
            return;
        };
        let Ok(ty) = Type::parse(s) else {
            return;
        };
        (ty, rest.get(split + 1..).unwrap_or_default())
    };
    roundtrip(&ty, body);
    match choice {
        0 => {
            if let Ok(c) = Commit::parse(body, "fuzz") {
                let b = c.to_bytes();
                let again = Commit::parse(&b, "fuzz").expect("own commit parses");
                assert_eq!(again.to_bytes(), b, "commit changes through to_bytes/parse");
            }
        }
        1 => {
            if let Ok(t) = DirTree::parse(body, "fuzz") {
                let again = DirTree::parse(&t.to_bytes(), "fuzz").expect("own dirtree parses");
                assert_eq!(again, t);
            }
        }
        2 => {
            if let Ok(m) = DirMeta::parse(body, "fuzz") {
                let again = DirMeta::parse(&m.to_bytes(), "fuzz").expect("own dirmeta parses");
                assert_eq!(again, m);
            }
            if let Ok(m) = FileMeta::from_ostreemeta(body, "fuzz") {
                let again = FileMeta::from_ostreemeta(&m.ostreemeta(), "fuzz")
                    .expect("own ostreemeta parses");
                assert_eq!(again, m);
            }
        }
        4 => {
            if let Ok((size, m)) = FileMeta::parse_archive_header(body, "fuzz") {
                let header = m.archive_header(size);
                // The archive header is length-prefixed; the body after 8 bytes is the variant.
                let (again_size, again) = FileMeta::parse_archive_header(&header[8..], "fuzz")
                    .expect("own archive header parses");
                assert_eq!((again_size, again), (size, m));
            }
        }
        _ => {}
    }
});
