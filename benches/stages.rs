//! Throughput of each stage a layer goes through, one at a time (`cargo bench --bench stages`).
//!
//! Measurement only: nothing here asserts a time. `benches/pipeline.rs` times whole copies;
//! this file takes them apart, so a regression (or a gain) shows in the stage it belongs to.
//! Every input is generated in memory, deterministically, from the fixtures crate
//! ([`LayerSpec`], [`SplitMix64`], [`compress`]); every bench sets `Throughput::Bytes`, so
//! criterion prints MiB/s (of the stage's input, or of the layer tar where that is the unit).
//!
//! 1. Setup (not timed): two layer tars — `files`, OS-like: 3,000 files of 0–8 KiB of
//!    text-like content in 150 directories (what `/usr` looks like to the extractor), and
//!    `big`: one 32 MiB text file — and their gzip (level 6, as containers/image writes) and
//!    zstd (level 3) blobs, and each tar's tar-split.
//! 2. `hash/sha256`: the engine's [`Hasher`] over 32 MiB (every layer byte is hashed twice: the
//!    blob digest and the diffID).
//! 3. `gunzip/<layer>`, `zstd/<layer>`: [`decoder`] over the blob, read to the end in 256 KiB
//!    reads; MiB/s of decoded tar.
//! 4. `decode/<compression>/<layer>`: [`LayerInput::decode`], the pipeline's whole decode
//!    stage (blob digest, decoder, diffID), draining the tar: with the decoder on its own
//!    thread this is the stage the extractor waits on.
//! 5. `tar-walk/<layer>`: [`read_entries`] over the uncompressed tar, reading every body.
//! 6. `tar-split/write/<layer>`: [`disassemble`] into a [`TarSplitWriter`] (JSON, base64,
//!    CRC-64 of every body, gzip level 1) to a sink; `tar-split/reassemble/<layer>`: the
//!    [`Assembler`] rebuilding the tar from that tar-split and bodies held in memory.
//! 7. `overlay-write/<layer>`: [`extract_layer`] of the tar into a fresh directory on
//!    `/dev/shm` (tmpfs, so this is the CPU and syscall cost, not the disk's) with the
//!    tar-split recorded, as the containers-storage writer does; owners are set only as root.
//!
//! Sample sizes are small (10 samples, 2 s) so the whole file runs in about a minute after the
//! build; `cargo bench --bench stages -- tar-walk` runs one group.

use std::collections::HashMap;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use stowage_engine::compression::{decoder, BoxRead, Compression};
use stowage_engine::copy::{LayerForm, LayerInput, LayerLabel};
use stowage_engine::digest::{sha256_of, Hasher, VerifiedReader};
use stowage_engine::layer_tar::{extract_layer, read_entries, ExtractOptions, WhiteoutMode};
use stowage_engine::tar_split::{disassemble, Assembler, TarSplitWriter};
use stowage_fixtures::layer::{compress, LayerCompression, LayerSpec, SplitMix64};
use tempfile::TempDir;

/// Size of each read, like the pipeline's buffered readers.
const READ: usize = 256 * 1024;

/// One generated layer and everything derived from it.
struct Layer {
    label: &'static str,
    tar: Vec<u8>,
    gzip: Vec<u8>,
    zstd: Vec<u8>,
    tar_split: Vec<u8>,
    /// File bodies by their tar name, for reassembly.
    bodies: HashMap<Vec<u8>, Vec<u8>>,
}

/// `len` bytes of text like a distribution's files (paths, numbers, words), varied by `rng`.
fn text(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "usr",
        "lib",
        "share",
        "x86_64-linux-gnu",
        "python3",
        "locale",
        "debian",
        "config",
        "return",
        "static",
        "const",
        "include",
    ];
    let mut v = Vec::with_capacity(len + 64);
    while v.len() < len {
        let r = rng.next_u64();
        let line = format!(
            "{} /{}/{}/{}.{} = {:x}\n",
            r % 10_007,
            WORDS[(r >> 16) as usize % 12],
            WORDS[(r >> 24) as usize % 12],
            WORDS[(r >> 32) as usize % 12],
            (r >> 40) % 97,
            r >> 48,
        );
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(len);
    v
}

fn files_layer() -> LayerSpec {
    let mut rng = SplitMix64::new(0x0057_a9e5);
    let mut l = LayerSpec::new("os-like files");
    for d in 0..150 {
        for f in 0..20 {
            let len = (rng.next_u64() % 8192) as usize;
            let content = text(&mut rng, len);
            l.file(
                &format!("usr/d{:02}/s{}/f{f:02}.txt", d / 10, d % 10),
                content,
            );
        }
    }
    l
}

fn big_layer() -> LayerSpec {
    let mut rng = SplitMix64::new(0xb16);
    let mut l = LayerSpec::new("one big file");
    l.file("srv/big.txt", text(&mut rng, 32 << 20));
    l
}

fn layer(label: &'static str, spec: LayerSpec) -> Layer {
    let tar = spec.to_tar().expect("writing the layer tar");
    let gzip = compress(&tar, LayerCompression::Gzip).expect("gzip");
    let zstd = compress(&tar, LayerCompression::Zstd).expect("zstd");
    let mut ts = TarSplitWriter::new(Vec::new());
    disassemble(&tar[..], &mut ts).expect("tar-split");
    let tar_split = ts.finish().expect("tar-split");
    let mut bodies = HashMap::new();
    read_entries(&tar[..], "bench", |meta, body| {
        let mut v = Vec::new();
        body.read_to_end(&mut v).expect("reading a body");
        bodies.insert(meta.raw_name.clone(), v);
        Ok(())
    })
    .expect("walking the layer");
    Layer {
        label,
        tar,
        gzip,
        zstd,
        tar_split,
        bodies,
    }
}

/// Read `r` to its end in [`READ`]-sized reads; returns the byte count.
fn drain(mut r: impl Read) -> u64 {
    let mut buf = vec![0u8; READ];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => n += k as u64,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// `/dev/shm` when present (tmpfs), else the system temporary directory.
fn temp_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn quick(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
}

fn stages(c: &mut Criterion) {
    let layers = [layer("files", files_layer()), layer("big", big_layer())];

    let mut g = c.benchmark_group("hash");
    quick(&mut g);
    let data = SplitMix64::new(1).bytes(32 << 20);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("sha256", |b| {
        b.iter(|| {
            let mut h = Hasher::sha256();
            for piece in data.chunks(READ) {
                h.update(piece);
            }
            h.finish()
        })
    });
    g.finish();

    for (group, pick) in [
        ("gunzip", (|l: &Layer| &l.gzip) as fn(&Layer) -> &Vec<u8>),
        ("zstd", |l: &Layer| &l.zstd),
    ] {
        let mut g = c.benchmark_group(group);
        quick(&mut g);
        for l in &layers {
            g.throughput(Throughput::Bytes(l.tar.len() as u64));
            g.bench_function(l.label, |b| {
                b.iter(|| {
                    let (_, d) = decoder(&pick(l)[..], "bench").unwrap();
                    assert_eq!(drain(d), l.tar.len() as u64);
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("decode");
    quick(&mut g);
    for l in &layers {
        let diff_id = sha256_of(&l.tar);
        for (name, blob) in [("gzip", &l.gzip), ("zstd", &l.zstd)] {
            let digest = sha256_of(blob);
            let compression = if name == "gzip" {
                Compression::Gzip
            } else {
                Compression::Zstd
            };
            g.throughput(Throughput::Bytes(l.tar.len() as u64));
            g.bench_function(format!("{name}/{}", l.label), |b| {
                b.iter(|| {
                    let label = LayerLabel {
                        index: 0,
                        digest: digest.clone(),
                        image: "bench".into(),
                    };
                    let reader: BoxRead<'_> = Box::new(Cursor::new(&blob[..]));
                    let verified =
                        VerifiedReader::new(reader, &digest, Some(blob.len() as u64), "bench")
                            .unwrap();
                    let input = LayerInput::new(
                        label,
                        LayerForm::Blob,
                        compression,
                        diff_id.clone(),
                        verified,
                    );
                    let decoded = input.decode(|tar| Ok(drain(tar))).unwrap();
                    assert_eq!(decoded.value, l.tar.len() as u64);
                })
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("tar-walk");
    quick(&mut g);
    for l in &layers {
        g.throughput(Throughput::Bytes(l.tar.len() as u64));
        g.bench_function(l.label, |b| {
            b.iter(|| {
                let mut bytes = 0u64;
                read_entries(&l.tar[..], "bench", |_, body| {
                    bytes += io::copy(body, &mut io::sink()).unwrap();
                    Ok(())
                })
                .unwrap();
                bytes
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("tar-split");
    quick(&mut g);
    for l in &layers {
        g.throughput(Throughput::Bytes(l.tar.len() as u64));
        g.bench_function(format!("write/{}", l.label), |b| {
            b.iter(|| {
                let mut ts = TarSplitWriter::new(io::sink());
                disassemble(&l.tar[..], &mut ts).unwrap();
                ts.finish().unwrap();
            })
        });
        g.bench_function(format!("reassemble/{}", l.label), |b| {
            b.iter(|| {
                let asm = Assembler::new(&l.tar_split[..], |name: &[u8], _size| {
                    let body = l.bodies.get(name).expect("a body for every file").clone();
                    Ok(Box::new(Cursor::new(body)) as Box<dyn Read + Send>)
                });
                assert_eq!(drain(asm), l.tar.len() as u64);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("overlay-write");
    quick(&mut g);
    let scratch = tempfile::Builder::new()
        .prefix("stowage-stages-")
        .tempdir_in(temp_base())
        .expect("creating the bench directory");
    let opts = ExtractOptions::for_current_user(WhiteoutMode::overlay_for_current_user());
    for l in &layers {
        g.throughput(Throughput::Bytes(l.tar.len() as u64));
        g.bench_function(l.label, |b| {
            b.iter_batched(
                || {
                    let dir: TempDir = tempfile::Builder::new()
                        .prefix("diff-")
                        .tempdir_in(scratch.path())
                        .unwrap();
                    let cap = cap_std::fs::Dir::open_ambient_dir(
                        dir.path(),
                        cap_std::ambient_authority(),
                    )
                    .unwrap();
                    (dir, cap)
                },
                |(dir, cap)| {
                    let mut ts = TarSplitWriter::new(io::sink());
                    let stats =
                        extract_layer(&l.tar[..], &cap, &opts, "bench", Some(&mut ts)).unwrap();
                    ts.finish().unwrap();
                    assert!(stats.files > 0);
                    dir
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(stages_group, stages);
criterion_main!(stages_group);
