//! Throughput of the engine's real paths on generated fixtures (`cargo bench --bench pipeline`).
//!
//! Measurement only: nothing here asserts a time. Every bench runs the production code path
//! end to end on the `many` fixture (a layer of 2000 small files and a layer holding one
//! 8 MiB file), in a temporary directory on `/dev/shm` when it exists (so the numbers are CPU
//! cost, not disk noise; `benches/compare-cstorage.sh` covers the disk).
//!
//! 1. Setup (not timed): generate `many` (gzip) with `stowage-fixtures`, and a zstd copy of it
//!    through the copy pipeline; measure each layer's uncompressed size, which is the
//!    throughput unit of every bench, so criterion's MB/s are MB of layer tar per second.
//! 2. `walk/<compression>/<layer>`: `VerifiedReader` (blob digest) → `compression::decoder` →
//!    `VerifiedReader` (diffID) → `layer_tar::read_entries`, reading every entry body.
//! 3. `copy/oci-to-oci`: `copy_image` of `many` into a fresh OCI layout (blobs copied as they
//!    are, verified, synced).
//! 4. `copy/oci-to-cstorage/<compression>`: `copy_image` into a fresh containers-storage root
//!    through `cstorage::StorageSink` (decompress, extract, tar-split). Needs root (owners,
//!    device nodes); skipped with a message otherwise.
//! 5. `copy/cstorage-to-oci`: export of the stored image to a fresh OCI layout (tar-split
//!    reassembly from `diff/`, gzip recompression). Needs the store from 4, so root as well.
//! 6. `compress/<gzip|zstd>/<single|parallel-1|parallel-N>`: 32 MiB of text-like input (in
//!    memory) compressed to a sink at the layer levels (gzip 6, zstd 3): `single` is one
//!    flate2 / zstd stream encoder on the calling thread (the encoder before parallel
//!    compression), `parallel-T` the [`ParallelEncoder`] with T threads (N = the machine's
//!    available parallelism). Throughput is MiB of input per second.
//!
//! Fresh destinations are created in the untimed setup of each iteration and removed after
//! timing (criterion drops batched outputs outside the measurement).

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stowage_engine::compression::parallel::{GZIP_LEVEL, ZSTD_LEVEL};
use stowage_engine::compression::{decoder, default_threads, Codec, Compression, ParallelEncoder};
use stowage_engine::copy::{copy_image, plan_image, CopyOptions, ImageSink, ImageSource};
use stowage_engine::cstorage::{StorageSink, StorageSource, Store};
use stowage_engine::digest::VerifiedReader;
use stowage_engine::layer_tar::read_entries;
use stowage_engine::manifest::PlatformSpec;
use stowage_engine::oci_layout::{OciSink, OciSource};
use stowage_engine::transport::{ImageRef, StorageImage};
use stowage_fixtures::{generate, FixtureSet};
use tempfile::TempDir;

/// Tag of the image in every layout the benches use.
const TAG: &str = "many";
/// containers-storage name of the imported image.
const STORAGE_NAME: &str = "localhost/many:1";

/// One layer blob of a fixture layout.
struct Layer {
    /// Short name for the bench id (`files`, `big`).
    label: &'static str,
    blob: PathBuf,
    digest: stowage_engine::digest::Digest,
    size: u64,
    diff_id: stowage_engine::digest::Digest,
    /// Bytes of the uncompressed tar.
    tar_size: u64,
}

/// The generated inputs, alive for the whole run.
struct Setup {
    /// Keeps the temporary tree alive.
    _dir: TempDir,
    /// Where fresh destinations are created.
    scratch: PathBuf,
    /// `many` with gzip layers, and the same image with zstd layers.
    layouts: Vec<(Compression, PathBuf, Vec<Layer>)>,
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

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn options() -> CopyOptions {
    let mut o = CopyOptions::default();
    o.jobs = 3;
    o
}

/// The layers of `tag` in the layout at `path`, with their uncompressed sizes.
fn layers_of(path: &Path) -> Vec<Layer> {
    let source = OciSource::open(path, Some(TAG)).expect("opening the fixture layout");
    let plan = plan_image(&source, &PlatformSpec::host()).expect("reading the fixture image");
    assert_eq!(plan.layers.len(), 2, "the many fixture has two layers");
    plan.layers
        .iter()
        .zip(["files", "big"])
        .map(|(l, label)| {
            let digest = l.descriptor.digest().clone();
            let blob = path.join("blobs/sha256").join(digest.digest());
            let file = std::fs::File::open(&blob).expect("opening a layer blob");
            let (_, mut decoded) = decoder(BufReader::new(file), "fixture layer").unwrap();
            let tar_size = io::copy(&mut decoded, &mut io::sink()).unwrap();
            Layer {
                label,
                blob,
                digest,
                size: l.descriptor.size(),
                diff_id: l.diff_id.clone(),
                tar_size,
            }
        })
        .collect()
}

fn setup() -> Setup {
    let dir = tempfile::Builder::new()
        .prefix("stowage-bench-")
        .tempdir_in(temp_base())
        .expect("creating the bench directory");
    let fixtures = dir.path().join("fixtures");
    generate(&fixtures, FixtureSet::Large).expect("generating the many fixture");
    let gzip = fixtures.join(stowage_fixtures::MANY_LAYOUT);
    let zstd = dir.path().join("many-zstd");
    {
        let source = OciSource::open(&gzip, Some(TAG)).unwrap();
        let sink = OciSink::create(&zstd, Some(TAG), Some(Compression::Zstd)).unwrap();
        copy_image(&source, &sink, &options()).expect("recompressing many with zstd");
    }
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let layouts = vec![
        (Compression::Gzip, gzip.clone(), layers_of(&gzip)),
        (Compression::Zstd, zstd.clone(), layers_of(&zstd)),
    ];
    Setup {
        _dir: dir,
        scratch,
        layouts,
    }
}

/// Step 2: verify, decode, verify again and walk one layer, reading every body.
fn walk(layer: &Layer) -> u64 {
    let file = std::fs::File::open(&layer.blob).unwrap();
    let mut blob = VerifiedReader::new(
        BufReader::with_capacity(256 * 1024, file),
        &layer.digest,
        Some(layer.size),
        "bench layer",
    )
    .unwrap();
    let mut body_bytes = 0u64;
    {
        let (_, decoded) = decoder(&mut blob, "bench layer").unwrap();
        let mut tar = VerifiedReader::new(decoded, &layer.diff_id, None, "bench diff").unwrap();
        read_entries(&mut tar, "bench layer", |_, body| {
            body_bytes += io::copy(body, &mut io::sink())
                .map_err(|e| stowage_engine::Error::from_io("reading a body".to_string(), e))?;
            Ok(())
        })
        .unwrap();
        tar.drain().unwrap();
        assert!(tar.is_verified());
    }
    blob.drain().unwrap();
    assert!(blob.is_verified());
    body_bytes
}

/// A fresh, empty directory under the scratch area (removed when dropped).
fn fresh(scratch: &Path) -> TempDir {
    tempfile::Builder::new()
        .prefix("dst-")
        .tempdir_in(scratch)
        .unwrap()
}

fn copy(source: &dyn ImageSource, sink: &dyn ImageSink) {
    copy_image(source, sink, &options()).expect("bench copy");
}

fn storage_sink(root: &Path) -> StorageSink {
    let store = Store::open(&root.join("root"), Some(&root.join("run")), Some("overlay"))
        .expect("opening a fresh store");
    StorageSink::new(store, Some(STORAGE_NAME.into()))
}

fn storage_image() -> StorageImage {
    match ImageRef::parse(&format!("containers-storage:{STORAGE_NAME}")).unwrap() {
        ImageRef::ContainersStorage { image, .. } => image,
        other => panic!("unexpected reference {other:?}"),
    }
}

fn benches(c: &mut Criterion) {
    let s = setup();

    let mut g = c.benchmark_group("walk");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (compression, _, layers) in &s.layouts {
        for layer in layers {
            g.throughput(Throughput::Bytes(layer.tar_size));
            g.bench_function(format!("{}/{}", compression.name(), layer.label), |b| {
                b.iter(|| walk(layer))
            });
        }
    }
    g.finish();

    let mut g = c.benchmark_group("copy");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    let (_, gzip_layout, gzip_layers) = &s.layouts[0];
    let image_bytes: u64 = gzip_layers.iter().map(|l| l.tar_size).sum();
    g.throughput(Throughput::Bytes(image_bytes));

    let gzip_source = OciSource::open(gzip_layout, Some(TAG)).unwrap();
    g.bench_function("oci-to-oci", |b| {
        b.iter_batched(
            || fresh(&s.scratch),
            |dst| {
                let sink = OciSink::create(&dst.path().join("oci"), Some(TAG), None).unwrap();
                copy(&gzip_source, &sink);
                dst
            },
            BatchSize::PerIteration,
        )
    });

    if !is_root() {
        eprintln!(
            "skipping copy/oci-to-cstorage and copy/cstorage-to-oci: they need root \
             (containers-storage layers keep file owners and device nodes); run `sudo cargo bench`"
        );
        g.finish();
        return;
    }

    for (compression, layout, _) in &s.layouts {
        let source = OciSource::open(layout, Some(TAG)).unwrap();
        g.bench_function(format!("oci-to-cstorage/{}", compression.name()), |b| {
            b.iter_batched(
                || fresh(&s.scratch),
                |dst| {
                    copy(&source, &storage_sink(dst.path()));
                    dst
                },
                BatchSize::PerIteration,
            )
        });
    }

    let store_dir = fresh(&s.scratch);
    copy(&gzip_source, &storage_sink(store_dir.path()));
    let image = storage_image();
    g.bench_function("cstorage-to-oci", |b| {
        b.iter_batched(
            || fresh(&s.scratch),
            |dst| {
                let store =
                    Store::open_read_only(&store_dir.path().join("root"), Some("overlay")).unwrap();
                let source = StorageSource::open(store, &image).unwrap();
                let sink = OciSink::create(&dst.path().join("oci"), Some(TAG), None).unwrap();
                copy(&source, &sink);
                dst
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// `len` bytes of text like a layer's listings: numbered lines, compressible but not trivially.
fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 80);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(
            format!(
                "{i:08} /usr/lib/x86_64-linux-gnu/lib{}.so.{}\n",
                i % 313,
                i * 7 % 101
            )
            .as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}

fn compress_benches(c: &mut Criterion) {
    use std::io::Write;
    let data = text(32 << 20);
    let mut g = c.benchmark_group("compress");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Bytes(data.len() as u64));
    let feed = |w: &mut dyn Write| {
        for piece in data.chunks(128 << 10) {
            w.write_all(piece).unwrap();
        }
    };
    g.bench_function("gzip/single", |b| {
        b.iter(|| {
            let mut e =
                flate2::write::GzEncoder::new(io::sink(), flate2::Compression::new(GZIP_LEVEL));
            feed(&mut e);
            e.finish().unwrap();
        })
    });
    g.bench_function("zstd/single", |b| {
        b.iter(|| {
            let mut e = zstd::stream::write::Encoder::new(io::sink(), ZSTD_LEVEL).unwrap();
            feed(&mut e);
            e.finish().unwrap();
        })
    });
    let mut counts = vec![1, default_threads()];
    counts.dedup();
    for codec in [
        Codec::Gzip { level: GZIP_LEVEL },
        Codec::Zstd { level: ZSTD_LEVEL },
    ] {
        let name = match codec {
            Codec::Gzip { .. } => "gzip",
            Codec::Zstd { .. } => "zstd",
        };
        for &threads in &counts {
            g.bench_function(format!("{name}/parallel-{threads}"), |b| {
                b.iter(|| {
                    let mut e = ParallelEncoder::new(io::sink(), codec, threads).unwrap();
                    feed(&mut e);
                    e.finish().unwrap();
                })
            });
        }
    }
    g.finish();
}

criterion_group!(pipeline, compress_benches, benches);
criterion_main!(pipeline);
