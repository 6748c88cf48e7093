//! Layer compression on every core, with the same bytes whatever the thread count.
//!
//! 1. [`ParallelEncoder`] cuts its input into fixed chunks ([`GZIP_CHUNK`], [`ZSTD_CHUNK`])
//!    by offset alone, so where chunks start never depends on how the caller writes or on how
//!    many threads run.
//! 2. Each full chunk goes to the process-wide worker pool ([`pool`]) as one job; at most
//!    [`in_flight`]`(threads)` jobs of one encoder are out at a time (`threads` compressing
//!    and up to as many again queued behind them, so a worker that finishes early takes the
//!    next chunk at once instead of waiting for the oldest to be written), and the caller
//!    blocks on the oldest when that many are: memory stays at that many chunks in and out
//!    (a bounded queue, never a whole layer). The input and output buffers of written
//!    chunks are reused for the next ones, so the steady state allocates nothing.
//! 3. gzip (pigz-style): a job deflates its chunk as raw deflate at a fixed level, primed with
//!    the previous chunk's last 32 KiB as dictionary (so matches reach back across the cut),
//!    and ends it with a sync flush (an empty stored block: byte-aligned, not final); the last
//!    chunk ends with a final block instead. The job also hashes its chunk with CRC-32, and
//!    the encoder combines those CRCs in order; header + deflate chunks + CRC-32 + ISIZE make
//!    ONE gzip member, which every gzip reader (Go's, zlib's, `gzip -t`) reads.
//! 4. zstd: a job compresses its chunk as one independent frame (fixed level, content size
//!    and checksum in the frame header); the frames, in order, are one valid zstd stream
//!    (zstd's format allows concatenated frames; `zstd -t`, klauspost's decoder in
//!    containers/image and this crate's decoder read them all).
//! 5. Results are written in submission order, so the output is the same bytes for the same
//!    input, level and chunk size, with 1 thread or 64.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

/// Bytes of input per gzip chunk (pigz uses 128 KiB, pgzip 1 MiB).
pub const GZIP_CHUNK: usize = 256 << 10;
/// Bytes of input per zstd frame: the level-3 window of a large input is 2 MiB anyway, so
/// independent 2 MiB frames lose little ratio.
pub const ZSTD_CHUNK: usize = 2 << 20;
/// The default gzip level: 3, zlib's fastest level with lazy-free hash chains. On an
/// OS-like layer it writes the same size as containers/image's default (klauspost's level 6,
/// whose fast encoders compress less than zlib's 6) with 40% less CPU than zlib level 6
/// (docs/performance.md, section 10); `--dest-compress-level` chooses another.
pub const GZIP_LEVEL: u32 = 3;
/// The default zstd level (zstd's default, 3).
pub const ZSTD_LEVEL: i32 = 3;
/// The gzip levels accepted (0 stores).
pub const GZIP_LEVELS: std::ops::RangeInclusive<i32> = 0..=9;
/// The zstd levels accepted.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=22;
/// The deflate window: how much of the previous chunk primes the next.
const DICT: usize = 32 << 10;

/// Chunks of one encoder out at once for `threads` compressing threads: as many again
/// queued (at most 16 more), so the order chunks finish in never leaves a worker idle while
/// the oldest is still compressing. The bytes written do not depend on it.
pub fn in_flight(threads: usize) -> usize {
    threads + threads.clamp(1, 16)
}

/// The codec and its fixed settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// One gzip member of sync-flushed deflate chunks, at this level (0–9).
    Gzip {
        /// zlib level.
        level: u32,
    },
    /// Concatenated independent zstd frames, at this level.
    Zstd {
        /// zstd level.
        level: i32,
    },
}

impl Codec {
    fn chunk_size(self) -> usize {
        match self {
            Codec::Gzip { .. } => GZIP_CHUNK,
            Codec::Zstd { .. } => ZSTD_CHUNK,
        }
    }
}

/// Threads the encoders use when not told otherwise: the machine's available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

type Job = Box<dyn FnOnce() + Send>;

/// The process-wide compression workers, shared by every encoder (several layers compress at
/// once without multiplying threads). It starts as many workers as the first encoder asks for
/// and grows when a later one asks for more, up to 4 × [`default_threads`]; workers never
/// exit.
pub struct Pool {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    jobs: std::sync::Arc<Mutex<Receiver<Job>>>,
    workers: Mutex<usize>,
}

/// The one [`Pool`].
pub fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        Pool {
            queue: Mutex::new(Some(tx)),
            jobs: std::sync::Arc::new(Mutex::new(rx)),
            workers: Mutex::new(0),
        }
    })
}

impl Pool {
    /// Make sure at least `n` workers run.
    fn ensure(&self, n: usize) -> io::Result<()> {
        let mut have = self.workers.lock().unwrap();
        while *have < n {
            let jobs = self.jobs.clone();
            std::thread::Builder::new()
                .name("stowage-compress".into())
                .spawn(move || loop {
                    let job = jobs.lock().unwrap().recv();
                    match job {
                        // A panicking job drops its result sender; its encoder reports it.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                })
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("starting a compression thread: {e}"))
                })?;
            *have += 1;
        }
        Ok(())
    }

    fn submit(&self, job: Job) -> io::Result<()> {
        let queue = self.queue.lock().unwrap();
        queue
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| io::Error::other("the compression pool has stopped"))
    }
}

/// One compressed chunk: `data[..len]`, and the input buffer back for reuse.
struct ChunkOut {
    data: Vec<u8>,
    len: usize,
    crc: crc32fast::Hasher,
    input: Vec<u8>,
}

/// An input buffer of `chunk_size` initialised bytes (a reused one keeps its length, so
/// filling it never zeroes it again).
fn full_buffer(spare: Option<Vec<u8>>, chunk_size: usize) -> Vec<u8> {
    let mut b = spare.unwrap_or_default();
    b.resize(chunk_size, 0);
    b
}

/// A compressing writer that compresses fixed chunks on the [`pool`] and writes them in order;
/// [`finish`](Self::finish) writes the last chunk and the trailer and returns the inner writer.
pub struct ParallelEncoder<W: Write> {
    inner: W,
    codec: Codec,
    chunk_size: usize,
    max_pending: usize,
    /// The chunk being filled: always `chunk_size` bytes long, `fill` of them input.
    buf: Vec<u8>,
    fill: usize,
    /// Input buffers of written chunks, for the next ones.
    spare_in: Vec<Vec<u8>>,
    /// Output buffers of written chunks, for the next jobs.
    spare_out: Vec<Vec<u8>>,
    /// The last [`DICT`] bytes of the previous chunk (gzip).
    dict: std::sync::Arc<Vec<u8>>,
    pending: VecDeque<Receiver<io::Result<ChunkOut>>>,
    crc: crc32fast::Hasher,
    total_in: u64,
    chunks: u64,
    started: bool,
}

impl<W: Write> ParallelEncoder<W> {
    /// A new encoder writing to `inner`, with at most `threads` chunks compressing at once
    /// (0: [`default_threads`]).
    pub fn new(inner: W, codec: Codec, threads: usize) -> io::Result<Self> {
        Self::with_chunk_size(inner, codec, threads, codec.chunk_size())
    }

    /// The same with another chunk size (tests and benches; the output depends on it).
    pub fn with_chunk_size(
        inner: W,
        codec: Codec,
        threads: usize,
        chunk_size: usize,
    ) -> io::Result<Self> {
        let threads = if threads == 0 {
            default_threads()
        } else {
            threads
        };
        // More workers than cores only queue the same work; the cap keeps a large request
        // from spawning hundreds of threads.
        pool().ensure(threads.min(4 * default_threads()))?;
        let chunk_size = chunk_size.max(1);
        Ok(ParallelEncoder {
            inner,
            codec,
            chunk_size,
            max_pending: in_flight(threads),
            buf: full_buffer(None, chunk_size),
            fill: 0,
            spare_in: Vec::new(),
            spare_out: Vec::new(),
            dict: Default::default(),
            pending: VecDeque::new(),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            chunks: 0,
            started: false,
        })
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.started {
            self.started = true;
            if let Codec::Gzip { level } = self.codec {
                // No name, mtime 0, XFL as zlib sets it, OS unknown (255), as Go writes.
                let xfl = match level {
                    9 => 2,
                    1 => 4,
                    _ => 0,
                };
                self.inner
                    .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
            }
        }
        Ok(())
    }

    /// Write the oldest pending chunk.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let out = rx
            .recv()
            .map_err(|_| io::Error::other("a compression thread panicked"))??;
        self.header()?;
        self.crc.combine(&out.crc);
        self.inner.write_all(&out.data[..out.len])?;
        self.spare_in.push(out.input);
        self.spare_out.push(out.data);
        Ok(())
    }

    /// Hand the buffered chunk to the pool.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let next = full_buffer(self.spare_in.pop(), self.chunk_size);
        let data = std::mem::replace(&mut self.buf, next);
        let len = std::mem::take(&mut self.fill);
        let out = self.spare_out.pop().unwrap_or_default();
        let codec = self.codec;
        let dict = self.dict.clone();
        if let Codec::Gzip { .. } = codec {
            // The next chunk's dictionary: this chunk's tail, or, for a chunk shorter than the
            // window, as much of the window as it and the previous dictionary cover.
            let input = &data[..len];
            let mut next = Vec::with_capacity(DICT);
            if input.len() < DICT {
                let keep = (DICT - input.len()).min(dict.len());
                next.extend_from_slice(&dict[dict.len() - keep..]);
            }
            next.extend_from_slice(&input[input.len().saturating_sub(DICT)..]);
            self.dict = std::sync::Arc::new(next);
        }
        self.total_in += len as u64;
        self.chunks += 1;
        let (tx, rx): (SyncSender<io::Result<ChunkOut>>, _) = mpsc::sync_channel(1);
        pool().submit(Box::new(move || {
            let _ = tx.send(compress_chunk(codec, &dict, data, len, last, out));
        }))?;
        self.pending.push_back(rx);
        Ok(())
    }

    /// Compress what is buffered as the last chunk, write everything and the trailer, and
    /// return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        match self.codec {
            // The final deflate block, even when empty.
            Codec::Gzip { .. } => self.submit(true)?,
            // A last frame when there is input left, or none was written (an empty stream is
            // still one frame, so the blob is recognisably zstd).
            Codec::Zstd { .. } => {
                if self.fill > 0 || self.chunks == 0 {
                    self.submit(true)?
                }
            }
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.header()?;
        if let Codec::Gzip { .. } = self.codec {
            let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
            let mut trailer = [0u8; 8];
            trailer[..4].copy_from_slice(&crc.to_le_bytes());
            trailer[4..].copy_from_slice(&(self.total_in as u32).to_le_bytes());
            self.inner.write_all(&trailer)?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> ParallelEncoder<W> {
    /// Read `r` to its end straight into the chunk buffer (one copy less than
    /// `io::copy(r, encoder)`, which goes through a stack buffer, and no zeroing: the chunk
    /// buffers stay initialised from one chunk to the next); returns the bytes read. The
    /// output is the same as writing the same bytes.
    pub fn write_from(&mut self, r: &mut dyn io::Read) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let n = loop {
                match r.read(&mut self.buf[self.fill..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(total);
            }
            self.fill += n;
            total += n as u64;
            if self.fill == self.chunk_size {
                self.submit(false)?;
            }
        }
    }
}

impl<W: Write> Write for ParallelEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk_size - self.fill);
        self.buf[self.fill..self.fill + n].copy_from_slice(&buf[..n]);
        self.fill += n;
        if self.fill == self.chunk_size {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Writes the chunks already compressed; a partial chunk stays buffered (cutting it here
    /// would make the output depend on when the caller flushes).
    fn flush(&mut self) -> io::Result<()> {
        while self.pending.front().is_some() {
            self.write_oldest()?;
        }
        self.inner.flush()
    }
}

/// One job: the first `input_len` bytes of `input` compressed as a chunk of `codec`'s stream
/// into `out` (a buffer to reuse; its contents do not matter).
fn compress_chunk(
    codec: Codec,
    dict: &[u8],
    input: Vec<u8>,
    input_len: usize,
    last: bool,
    mut out: Vec<u8>,
) -> io::Result<ChunkOut> {
    let mut crc = crc32fast::Hasher::new();
    let data = &input[..input_len];
    let len = match codec {
        Codec::Gzip { level } => {
            crc.update(data);
            deflate_chunk_into(level, dict, data, last, &mut out)?
        }
        Codec::Zstd { level } => {
            zstd_frame_into(level, data, &mut out)?;
            out.len()
        }
    };
    Ok(ChunkOut {
        data: out,
        len,
        crc,
        input,
    })
}

/// Bytes of each of the three probes that decide whether matches pay (see [`deflate_chunk`]).
const PROBE: usize = 4 << 10;

/// Deflate one chunk. A chunk where each of three [`PROBE`]-byte samples (start, middle,
/// end) compresses less than 2% better with LZ77 matches than with Huffman codes alone
/// (base64 of random bytes, already-compressed files) is coded with Huffman codes only: the
/// match search finds nothing there and is most of the cost (zlib level 3–6 runs at
/// ~45 MB/s on base64 text, Huffman-only at several hundred). The probes cost ~5% of a
/// chunk's LZ77 time. The choice depends on the chunk's bytes alone, so the output stays
/// deterministic.
#[cfg(test)]
fn deflate_chunk(level: u32, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let n = deflate_chunk_into(level, dict, data, last, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// [`deflate_chunk`] into `out` (grown as needed, never shrunk, so a reused buffer is zeroed
/// once); returns the bytes written at its start.
fn deflate_chunk_into(
    level: u32,
    dict: &[u8],
    data: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Status, Strategy};
    let err = |e: zlib_rs::DeflateError| io::Error::other(format!("deflate: {e:?}"));
    // Every run gets a new coder: a reset zlib-rs coder keeps part of its previous stream
    // (window, chains), and a chunk's bytes then depended on which chunks its thread had
    // compressed before (caught by tests/compression.rs with 7 threads). A new coder costs
    // no measurable time next to 256 KiB of deflate.
    let run = |strategy, dict: &[u8], data: &[u8], flush, out: &mut Vec<u8>| -> io::Result<usize> {
        let mut c = Deflate::new_with_config(DeflateConfig {
            level: level as i32,
            window_bits: -15,
            strategy,
            ..DeflateConfig::default()
        });
        if !dict.is_empty() {
            c.set_dictionary(dict).map_err(err)?;
        }
        let need = data.len() + data.len() / 8 + 1024;
        if out.len() < need {
            out.resize(need, 0);
        }
        loop {
            let (read, written) = (c.total_in() as usize, c.total_out() as usize);
            let status = c
                .compress(&data[read..], &mut out[written..], flush)
                .map_err(err)?;
            let written = c.total_out() as usize;
            let done = match status {
                Status::StreamEnd => true,
                // A sync flush is complete once all input is in and the output was not
                // filled (zlib's rule: avail_out != 0).
                Status::Ok | Status::BufError => {
                    flush != DeflateFlush::Finish
                        && c.total_in() as usize == data.len()
                        && written < out.len()
                }
            };
            if done {
                return Ok(written);
            }
            if written == out.len() {
                out.resize(out.len() * 2, 0);
            }
        }
    };
    let flush = if last {
        DeflateFlush::Finish
    } else {
        DeflateFlush::SyncFlush
    };
    let mut huffman_only = level > 0 && data.len() >= 8 * PROBE;
    if huffman_only {
        let n = data.len();
        for at in [0, n / 2 - PROBE / 2, n - PROBE] {
            let probe = &data[at..at + PROBE];
            let lz = run(Strategy::Default, &[], probe, DeflateFlush::Finish, out)?;
            let huffman = run(Strategy::HuffmanOnly, &[], probe, DeflateFlush::Finish, out)?;
            if lz * 100 < huffman * 98 {
                huffman_only = false;
                break;
            }
        }
    }
    if huffman_only {
        run(Strategy::HuffmanOnly, &[], data, flush, out)
    } else {
        run(Strategy::Default, dict, data, flush, out)
    }
}

#[cfg(test)]
fn zstd_frame(level: i32, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd_frame_into(level, data, &mut out)?;
    Ok(out)
}

/// One zstd frame of `data` in `out`, which is emptied and grown to the frame's bound first.
fn zstd_frame_into(level: i32, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    use zstd::zstd_safe::CParameter;
    thread_local! {
        static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    }
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            let mut c = zstd::bulk::Compressor::new(level)?;
            c.set_parameter(CParameter::ChecksumFlag(true))?;
            *cell = Some((level, c));
        }
        let (_, c) = cell.as_mut().unwrap();
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        c.compress_to_buffer(data, out).map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const GZ: Codec = Codec::Gzip { level: GZIP_LEVEL };
    const ZS: Codec = Codec::Zstd { level: ZSTD_LEVEL };

    /// Compressible, not trivially repetitive bytes (a text-like stream with a counter).
    fn sample(len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while v.len() < len {
            v.extend_from_slice(
                format!("line {i} of a layer tar, value {}\n", i * i % 977).as_bytes(),
            );
            i += 1;
        }
        v.truncate(len);
        v
    }

    fn encode(
        codec: Codec,
        data: &[u8],
        threads: usize,
        chunk: usize,
        write_size: usize,
    ) -> Vec<u8> {
        let mut e = ParallelEncoder::with_chunk_size(Vec::new(), codec, threads, chunk).unwrap();
        for piece in data.chunks(write_size.max(1)) {
            e.write_all(piece).unwrap();
        }
        e.finish().unwrap()
    }

    fn gunzip_single_member(gz: &[u8]) -> Vec<u8> {
        // GzDecoder (not Multi) reads exactly one member: the whole input must be it.
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        let mut rest = Vec::new();
        d.into_inner().read_to_end(&mut rest).unwrap();
        assert!(
            rest.is_empty(),
            "{} bytes after the first gzip member",
            rest.len()
        );
        out
    }

    fn unzstd(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        zstd::stream::read::Decoder::new(z)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_round_trip_one_member_with_crc_and_isize() {
        let chunk = 64 << 10;
        for len in [
            0,
            1,
            1000,
            chunk - 1,
            chunk,
            chunk + 1,
            3 * chunk,
            3 * chunk + 17,
            40_000,
        ] {
            let data = sample(len);
            let gz = encode(GZ, &data, 3, chunk, 10_000);
            assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
            assert_eq!(gunzip_single_member(&gz), data, "length {len}");
            let n = gz.len();
            let crc = u32::from_le_bytes(gz[n - 8..n - 4].try_into().unwrap());
            let isize = u32::from_le_bytes(gz[n - 4..].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&data), "CRC-32 of length {len}");
            assert_eq!(isize, len as u32, "ISIZE of length {len}");
        }
    }

    #[test]
    fn zstd_round_trip_and_frame_count() {
        let chunk = 64 << 10;
        for (len, frames) in [
            (0, 1),
            (1, 1),
            (chunk - 1, 1),
            (chunk, 1),
            (chunk + 1, 2),
            (3 * chunk, 3),
        ] {
            let data = sample(len);
            let z = encode(ZS, &data, 2, chunk, 7_000);
            assert_eq!(unzstd(&z), data, "length {len}");
            // Count the frames by walking their compressed sizes.
            let mut at = 0;
            let mut n = 0;
            while at < z.len() {
                let size = zstd::zstd_safe::find_frame_compressed_size(&z[at..]).unwrap();
                at += size;
                n += 1;
            }
            assert_eq!(n, frames, "frames for length {len}");
        }
    }

    #[test]
    fn same_bytes_whatever_the_threads_and_write_sizes() {
        let data = sample(700_000);
        for codec in [GZ, ZS] {
            let one = encode(codec, &data, 1, 100_000, 4096);
            for (threads, write) in [(2, 1 << 20), (4, 999), (8, 100_001), (16, 1)] {
                if write == 1 && codec == ZS {
                    continue; // byte-at-a-time is slow and covered for gzip
                }
                assert_eq!(
                    encode(codec, &data, threads, 100_000, write),
                    one,
                    "{codec:?} with {threads} threads, writes of {write}"
                );
            }
        }
    }

    #[test]
    fn default_chunks_compress_like_a_single_stream() {
        // The dictionary keeps the ratio close to one deflate stream's.
        let data = sample(4 << 20);
        let par = encode(GZ, &data, 0, GZIP_CHUNK, 64 << 10);
        let mut single =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert_eq!(gunzip_single_member(&par), data);
        assert!(
            par.len() < single.len() + single.len() / 50,
            "parallel {} vs single {}",
            par.len(),
            single.len()
        );
    }

    #[test]
    fn match_poor_chunks_are_huffman_coded_and_still_one_member() {
        // Pseudo-random bytes as base64 text (what the registry bench's large layer holds):
        // LZ77 finds nothing, Huffman codes give ~75%.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut data: Vec<u8> = (0..600_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % 64) as usize]
            })
            .collect();
        // ...followed by compressible text, so both kinds of chunk meet in one member.
        data.extend(sample(300_000));
        let gz = encode(GZ, &data, 2, 100_000, 65_536);
        assert_eq!(gunzip_single_member(&gz), data);
        assert_eq!(gz, encode(GZ, &data, 1, 100_000, 3_000));
        let random_part = encode(GZ, &data[..600_000], 2, 100_000, 65_536).len();
        assert!(
            random_part < 600_000 * 78 / 100,
            "base64 of random bytes compresses to ~75%, got {random_part}"
        );
    }

    #[test]
    fn a_chunk_does_not_depend_on_what_its_thread_compressed_before() {
        let a = sample(256 << 10);
        let b: Vec<u8> = sample(300 << 10)[40_000..].to_vec();
        let dict = &a[a.len() - DICT..];
        let alone = deflate_chunk(GZIP_LEVEL, dict, &b, false).unwrap();
        for before in [&a[..], &b[..], &[][..]] {
            deflate_chunk(GZIP_LEVEL, &[], before, true).unwrap();
            deflate_chunk(6, dict, before, false).unwrap();
            assert_eq!(deflate_chunk(GZIP_LEVEL, dict, &b, false).unwrap(), alone);
            zstd_frame(ZSTD_LEVEL, before).unwrap();
            assert_eq!(zstd_frame(ZSTD_LEVEL, &b).unwrap(), {
                let mut fresh = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
                fresh
                    .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                    .unwrap();
                fresh.compress(&b).unwrap()
            });
        }
    }

    /// A reader that hands out its bytes in uneven pieces (1, 2, … 4,099 bytes, again).
    struct Uneven<'a> {
        data: &'a [u8],
        next: usize,
    }

    impl Read for Uneven<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.next = self.next % 4099 + 1;
            let n = self.next.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn write_from_gives_the_bytes_of_write_with_reused_buffers_and_bounded_chunks() {
        let data = sample(900_000);
        for codec in [GZ, ZS] {
            let written = encode(codec, &data, 1, 100_000, 65_536);
            for threads in [1, 2, 5] {
                let mut e =
                    ParallelEncoder::with_chunk_size(Vec::new(), codec, threads, 100_000).unwrap();
                let mut r = Uneven {
                    data: &data,
                    next: 0,
                };
                assert_eq!(e.write_from(&mut r).unwrap(), data.len() as u64);
                assert!(
                    e.pending.len() <= in_flight(threads),
                    "{} chunks out with {threads} threads",
                    e.pending.len()
                );
                assert_eq!(e.finish().unwrap(), written, "{codec:?}, {threads} threads");
            }
        }
    }

    #[test]
    fn write_from_reports_the_readers_error_and_keeps_what_it_read() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = self.0.min(buf.len()).min(1000);
                buf[..n].fill(b'x');
                self.0 -= n;
                Ok(n)
            }
        }
        let mut e = ParallelEncoder::with_chunk_size(Vec::new(), GZ, 2, 4096).unwrap();
        let err = e.write_from(&mut Failing(10_000)).unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
        assert_eq!(e.fill as u64 + e.total_in, 10_000);
        assert_eq!(
            gunzip_single_member(&e.finish().unwrap()),
            vec![b'x'; 10_000]
        );
    }

    #[test]
    fn flush_does_not_change_the_bytes() {
        let data = sample(300_000);
        let plain = encode(GZ, &data, 2, 50_000, 30_000);
        let mut e = ParallelEncoder::with_chunk_size(Vec::new(), GZ, 2, 50_000).unwrap();
        for piece in data.chunks(30_000) {
            e.write_all(piece).unwrap();
            e.flush().unwrap();
        }
        assert_eq!(e.finish().unwrap(), plain);
    }

    #[test]
    fn errors_of_the_inner_writer_surface() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut e = ParallelEncoder::with_chunk_size(Full, GZ, 2, 1000).unwrap();
        let r = e
            .write_all(&sample(10_000))
            .and_then(|_| e.finish().map(|_| ()));
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::StorageFull);
    }
}
