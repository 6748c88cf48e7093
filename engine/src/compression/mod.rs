//! Layer compression: detection by media type and magic bytes, streaming decoders and encoders.
//!
//! 1. [`Compression::from_media_type`] reads what the manifest claims;
//! 2. [`Compression::sniff`] reads what the bytes are (gzip `1f 8b`, zstd `28 b5 2f fd`, else
//!    uncompressed); the bytes win when the two disagree, as containers/storage does;
//! 3. [`decoder`] wraps a reader; zstd streams may have several frames (zstd:chunked), and
//!    gzip streams several members, and both are decoded to the end;
//! 4. [`Encoder`] compresses on every core ([`parallel`]): fixed chunks on a shared worker
//!    pool, one gzip member or a run of zstd frames, the same bytes whatever the thread count.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::error::{Error, Result};

pub mod parallel;
pub mod zstd_chunked;

pub use parallel::{default_threads, Codec, ParallelEncoder};

/// How a layer blob is compressed. The discriminants are containers/storage's
/// `archive.Compression` values, which it stores in `layers.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    Uncompressed = 0,
    /// bzip2 (recognised, not supported).
    Bzip2 = 1,
    /// gzip.
    Gzip = 2,
    /// xz (recognised, not supported).
    Xz = 3,
    /// zstd, one or more frames.
    Zstd = 4,
    /// zstd:chunked ([`zstd_chunked`]): zstd whose files are frames of their own, with a
    /// TOC. Only ever a target (`--dest-compress-format zstd:chunked`); such a blob reads as
    /// [`Compression::Zstd`], and containers-storage records it as zstd (4).
    ZstdChunked = 5,
}

impl Compression {
    /// The compression a layer media type declares, or an error naming an unknown type.
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        let base = media_type.split(';').next().unwrap_or("").trim();
        Ok(match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::Uncompressed,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            _ => {
                return Err(Error::UnsupportedMediaType {
                    what: "layer".into(),
                    media_type: media_type.to_string(),
                })
            }
        })
    }

    /// The compression the first bytes of a blob show.
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            _ => Compression::Uncompressed,
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd | Compression::ZstdChunked => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            _ => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Lower-case name (`gzip`, `zstd`, `uncompressed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::ZstdChunked => "zstd:chunked",
        }
    }
}

/// A boxed, sendable reader.
pub type BoxRead<'a> = Box<dyn Read + Send + 'a>;

/// Decode `input`, choosing the decoder from its magic bytes. `what` names the blob in errors.
/// Returns the detected compression and the decoded stream.
pub fn decoder<'a, R: Read + Send + 'a>(
    input: R,
    what: &str,
) -> Result<(Compression, BoxRead<'a>)> {
    let mut input = BufReader::with_capacity(128 * 1024, input);
    let head = input
        .fill_buf()
        .map_err(|e| Error::from_io(format!("reading {what}"), e))?;
    let compression = Compression::sniff(head);
    let reader: BoxRead<'a> = match compression {
        Compression::Uncompressed => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            // A decoder holds its frame's window in memory; several large windows at once
            // would break the memory bound, so large windows share a process-wide budget.
            let grant = zstd_window(head).map(|w| window_budget().acquire(w));
            let mut d = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::from_io(format!("starting zstd decoder for {what}"), e))?;
            // Bound the window so a hostile frame header cannot demand gigabytes.
            d.window_log_max(31)
                .map_err(|e| Error::from_io(format!("configuring zstd decoder for {what}"), e))?;
            Box::new(Budgeted {
                inner: d,
                _grant: grant,
            })
        }
        other => {
            return Err(Error::Unsupported {
                transport: what.to_string(),
                reason: format!(
                    "{} compressed layers are not supported; recompress it with gzip or zstd",
                    other.name()
                ),
            })
        }
    };
    Ok((compression, reader))
}

/// The window size a zstd frame header asks for, when the bytes start with one.
fn zstd_window(head: &[u8]) -> Option<u64> {
    let [0x28, 0xb5, 0x2f, 0xfd, descriptor, rest @ ..] = head else {
        return None;
    };
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let wd = *rest.first()?;
        let log = 10 + u64::from(wd >> 3);
        let base = 1u64 << log;
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the content size (Frame_Content_Size, after the optional
    // dictionary ID).
    let dict_len = [0usize, 1, 2, 4][usize::from(descriptor & 3)];
    let fcs_len = [1usize, 2, 4, 8][usize::from(descriptor >> 6)];
    let fcs = rest.get(dict_len..dict_len + fcs_len)?;
    let mut v = 0u64;
    for (i, b) in fcs.iter().enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    Some(if fcs_len == 2 { v + 256 } else { v })
}

/// Memory that large zstd windows may hold at once. Windows up to [`WINDOW_FREE`] (what
/// containers/image, buildah and the zstd CLI produce: 8 MiB) are not counted; a larger one
/// waits until the budget has room (a window over the whole budget waits until it is all free).
pub const WINDOW_BUDGET: u64 = 40 << 20;
/// Windows up to this size do not take from [`WINDOW_BUDGET`].
pub const WINDOW_FREE: u64 = 8 << 20;

/// The process-wide budget for zstd windows.
pub struct WindowBudget {
    used: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
    total: u64,
}

/// Part of the budget, returned on drop.
pub struct WindowGrant {
    budget: &'static WindowBudget,
    amount: u64,
}

impl WindowBudget {
    const fn new(total: u64) -> Self {
        WindowBudget {
            used: std::sync::Mutex::new(0),
            freed: std::sync::Condvar::new(),
            total,
        }
    }

    fn charge(&self, window: u64) -> u64 {
        if window <= WINDOW_FREE {
            0
        } else {
            window.min(self.total)
        }
    }

    /// Take `window` bytes, waiting for room.
    pub fn acquire(&'static self, window: u64) -> WindowGrant {
        let amount = self.charge(window);
        let mut used = self.used.lock().unwrap();
        while *used + amount > self.total {
            used = self.freed.wait(used).unwrap();
        }
        *used += amount;
        WindowGrant {
            budget: self,
            amount,
        }
    }

    /// Take `window` bytes if there is room now.
    pub fn try_acquire(&'static self, window: u64) -> Option<WindowGrant> {
        let amount = self.charge(window);
        let mut used = self.used.lock().unwrap();
        (*used + amount <= self.total).then(|| {
            *used += amount;
            WindowGrant {
                budget: self,
                amount,
            }
        })
    }
}

impl Drop for WindowGrant {
    fn drop(&mut self) {
        if self.amount > 0 {
            *self.budget.used.lock().unwrap() -= self.amount;
            self.budget.freed.notify_all();
        }
    }
}

fn window_budget() -> &'static WindowBudget {
    static BUDGET: WindowBudget = WindowBudget::new(WINDOW_BUDGET);
    &BUDGET
}

/// A decoder that gives its window budget back when dropped.
struct Budgeted<R> {
    inner: R,
    _grant: Option<WindowGrant>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// `level` when it is within `range` for `format`.
pub fn check_level(
    level: Option<i32>,
    range: std::ops::RangeInclusive<i32>,
    format: &str,
) -> Result<Option<i32>> {
    match level {
        Some(l) if !range.contains(&l) => Err(Error::Unsupported {
            transport: "compression".into(),
            reason: format!(
                "{format} level {l} is out of range; use {}–{}",
                range.start(),
                range.end()
            ),
        }),
        l => Ok(l),
    }
}

/// A compressing writer; [`Encoder::finish`] flushes the trailer and returns the inner writer.
/// gzip and zstd compress on the [`parallel`] pool (deterministic chunks).
pub enum Encoder<W: Write> {
    /// Pass-through.
    Uncompressed(W),
    /// gzip or zstd, compressed in parallel.
    Parallel(ParallelEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// A new encoder at the default levels ([`parallel::GZIP_LEVEL`],
    /// [`parallel::ZSTD_LEVEL`]), on [`default_threads`] threads.
    pub fn new(inner: W, compression: Compression) -> Result<Self> {
        Self::with_options(inner, compression, 0, None)
    }

    /// The same with at most `threads` chunks compressing at once (0: [`default_threads`];
    /// the output does not depend on it) and `level` instead of the default (gzip 0–9, zstd
    /// 1–22; another is an error naming the range).
    pub fn with_options(
        inner: W,
        compression: Compression,
        threads: usize,
        level: Option<i32>,
    ) -> Result<Self> {
        let codec = match compression {
            Compression::Uncompressed => return Ok(Encoder::Uncompressed(inner)),
            Compression::Gzip => Codec::Gzip {
                level: check_level(level, parallel::GZIP_LEVELS, "gzip")?
                    .map_or(parallel::GZIP_LEVEL, |l| l as u32),
            },
            Compression::Zstd => Codec::Zstd {
                level: check_level(level, parallel::ZSTD_LEVELS, "zstd")?
                    .unwrap_or(parallel::ZSTD_LEVEL),
            },
            Compression::ZstdChunked => {
                return Err(Error::Unsupported {
                    transport: "compression".into(),
                    reason: "zstd:chunked is written from the tar's structure by \
                             compression::zstd_chunked::encode, not by a byte encoder"
                        .into(),
                })
            }
            other => {
                return Err(Error::Unsupported {
                    transport: "compression".into(),
                    reason: format!("cannot write {} layers; use gzip or zstd", other.name()),
                })
            }
        };
        Ok(Encoder::Parallel(
            ParallelEncoder::new(inner, codec, threads).map_err(|e| {
                Error::from_io(format!("starting the {} encoder", compression.name()), e)
            })?,
        ))
    }

    /// Finish the stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Uncompressed(w) => Ok(w),
            Encoder::Parallel(e) => e.finish(),
        }
    }

    /// Read `r` to its end into the encoder; returns the bytes read. The parallel encoders
    /// read straight into their chunk buffer ([`ParallelEncoder::write_from`]).
    pub fn write_from(&mut self, r: &mut dyn Read) -> io::Result<u64> {
        match self {
            Encoder::Uncompressed(w) => io::copy(r, w),
            Encoder::Parallel(e) => e.write_from(r),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Uncompressed(w) => w.write(buf),
            Encoder::Parallel(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Uncompressed(w) => w.flush(),
            Encoder::Parallel(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), c).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_by_magic_not_media_type() {
        let data = b"some tar bytes".repeat(100);
        for c in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zstd,
        ] {
            let enc = roundtrip(c, &data);
            let (found, mut r) = decoder(&enc[..], "t").unwrap();
            assert_eq!(found, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn zstd_multi_frame_and_gzip_multi_member() {
        for c in [Compression::Zstd, Compression::Gzip] {
            let mut enc = roundtrip(c, b"first frame ");
            enc.extend(roundtrip(c, b"second frame"));
            let (_, mut r) = decoder(&enc[..], "t").unwrap();
            let mut out = String::new();
            r.read_to_string(&mut out).unwrap();
            assert_eq!(out, "first frame second frame");
        }
    }

    #[test]
    fn zstd_window_sizes_from_frame_headers() {
        // What our encoder (like the zstd CLI and containers/image) writes stays under the free
        // threshold.
        let enc = roundtrip(Compression::Zstd, &b"x".repeat(1000));
        assert!(
            matches!(zstd_window(&enc), Some(w) if w <= WINDOW_FREE),
            "{:?}",
            zstd_window(&enc)
        );
        // Single-segment frame, 1-byte content size 232: window = content size; 2-byte sizes
        // are offset by 256.
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x20, 0xe8]),
            Some(232)
        );
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x60, 0x00, 0x01]),
            Some(256 + 256)
        );
        // Window descriptor 0x58: exponent 11, mantissa 0 → 2^21 = 2 MiB; 0x88 → 128 MiB.
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]),
            Some(2 << 20)
        );
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x88]),
            Some(128 << 20)
        );
        assert_eq!(
            zstd_window(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x5b]),
            Some((2 << 20) + 3 * (2 << 20) / 8)
        );
        assert_eq!(zstd_window(b"not zstd"), None);
    }

    #[test]
    fn large_windows_share_a_budget() {
        static B: WindowBudget = WindowBudget::new(40 << 20);
        let small = B.try_acquire(8 << 20).unwrap();
        let a = B.try_acquire(32 << 20).unwrap();
        assert!(
            B.try_acquire(16 << 20).is_none(),
            "32 + 16 MiB exceed the 40 MiB budget"
        );
        let _small_too = B.try_acquire(4 << 20).unwrap();
        drop(a);
        let huge = B
            .try_acquire(1 << 30)
            .expect("an oversized window takes the whole budget once free");
        assert!(B.try_acquire(9 << 20).is_none());
        drop(huge);
        drop(small);
        assert!(B.try_acquire(40 << 20).is_some());
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        let err = Compression::from_media_type("application/x-foo").unwrap_err();
        assert!(err.to_string().contains("application/x-foo"));
    }
}
