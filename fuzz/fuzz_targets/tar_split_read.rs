//! The tar-split reader on untrusted metadata (`TarSplitReader`, `Assembler`): a store's
//! `*.tar-split.gz` is read back when a layer is exported.
//!
//! Input: the JSON lines (the target gzips them, so the fuzzer works on the JSON itself).
//! Properties: records that read re-encode with `TarSplitWriter` and read back the same; the
//! assembler never emits more than the segments plus the declared file sizes, and a body that
//! does not match its checksum is refused.
#![no_main]
use std::io::{Cursor, Read, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use stowage_engine::tar_split::{crc64_iso, Assembler, Record, TarSplitReader, TarSplitWriter};

fuzz_target!(|json: &[u8]| {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(json).unwrap();
    let gz = gz.finish().unwrap();

    let mut records = Vec::new();
    for rec in TarSplitReader::new(gz.as_slice()) {
        match rec {
            Ok(r) => records.push(r),
            Err(_) => break,
        }
    }
    // Re-encode what was read (the writer refuses a path recorded twice).
    let mut w = TarSplitWriter::new(Vec::new());
    let mut ok = true;
    let mut written = Vec::new();
    for r in &records {
        let res = match r {
            Record::Segment(s) => w.segment(s),
            Record::File { name, size, crc } => w.file(name, *size, *crc),
        };
        if res.is_err() {
            ok = false;
            break;
        }
        written.push(r.clone());
    }
    if ok {
        if let Ok(bytes) = w.finish() {
            let back: Vec<Record> = TarSplitReader::new(bytes.as_slice())
                .map(|r| r.expect("a written tar-split reads back"))
                .filter(|r| !matches!(r, Record::Segment(s) if s.is_empty()))
                .collect();
            // The writer drops the checksum of an empty file, as Go's packer does.
            let want: Vec<Record> = written
                .into_iter()
                .filter(|r| !matches!(r, Record::Segment(s) if s.is_empty()))
                .map(|r| match r {
                    Record::File { name, size: 0, .. } => Record::File {
                        name,
                        size: 0,
                        crc: None,
                    },
                    other => other,
                })
                .collect();
            assert_eq!(back, want, "records change through write and read");
        }
    }

    // Replay with bodies of zeros (capped): bounded output, checksums enforced.
    let mut bound = 0u64;
    for r in &records {
        match r {
            Record::Segment(s) => bound += s.len() as u64,
            Record::File { size, .. } => bound = bound.saturating_add(*size),
        }
    }
    let mut asm = Assembler::new(gz.as_slice(), |_name: &[u8], size| {
        let n = size.min(1 << 16);
        Ok(Box::new(Cursor::new(vec![0u8; n as usize])) as Box<dyn Read + Send>)
    });
    let mut out = Vec::new();
    let res = (&mut asm).take(1 << 20).read_to_end(&mut out);
    assert!(
        out.len() as u64 <= bound,
        "assembler emitted more than the records describe"
    );
    if res.is_ok() && (out.len() as u64) < (1 << 20) {
        // Every file body it accepted matched its checksum: zeros of the declared size.
        for r in &records {
            if let Record::File {
                size, crc: Some(c), ..
            } = r
            {
                if *size > 0 && *size <= 1 << 16 {
                    assert_eq!(crc64_iso(&vec![0u8; *size as usize]).to_be_bytes(), *c);
                }
            }
        }
    }
});
