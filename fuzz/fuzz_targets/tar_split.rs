//! tar-split from a tar (`disassemble`) and back (`Assembler`).
//!
//! Input: a tar stream. Property: for every tar that disassembles, replaying its tar-split
//! with the file bodies (cut from the input at the offsets the records give) reproduces the
//! input byte for byte, and the records name each file with the size the tar gives.
#![no_main]
use std::io::{Cursor, Read};

use libfuzzer_sys::fuzz_target;
use stowage_engine::tar_split::{disassemble, Assembler, Record, TarSplitReader, TarSplitWriter};

fuzz_target!(|tar: &[u8]| {
    let mut w = TarSplitWriter::new(Vec::new());
    let Ok(total) = disassemble(tar, &mut w) else {
        return;
    };
    assert_eq!(
        total,
        tar.len() as u64,
        "disassemble reads the whole stream"
    );
    let Ok(split) = w.finish() else {
        return;
    };
    // Where each body is: after everything the records before it emit.
    let mut offset = 0usize;
    let mut bodies = Vec::new();
    for rec in TarSplitReader::new(split.as_slice()) {
        match rec.expect("a written tar-split reads back") {
            Record::Segment(s) => {
                assert_eq!(
                    &tar[offset..offset + s.len()],
                    s.as_slice(),
                    "segment bytes"
                );
                offset += s.len();
            }
            Record::File { name, size, .. } => {
                let size = usize::try_from(size).expect("size fits");
                assert!(
                    offset + size <= tar.len(),
                    "body of {name:?} beyond the input"
                );
                bodies.push((name, tar[offset..offset + size].to_vec()));
                offset += size;
            }
        }
    }
    assert_eq!(offset, tar.len(), "the records cover the input exactly");
    let mut bodies = bodies.into_iter().filter(|(_, b)| !b.is_empty());
    let mut out = Vec::new();
    Assembler::new(split.as_slice(), |name: &[u8], size| {
        let (want, body) = bodies.next().expect("a body for every file record");
        assert_eq!(name, want.as_slice());
        assert_eq!(size, body.len() as u64);
        Ok(Box::new(Cursor::new(body)) as Box<dyn Read + Send>)
    })
    .read_to_end(&mut out)
    .expect("reassembly of a fresh tar-split succeeds");
    assert!(out == tar, "reassembly differs from the input");
});
