//! zstd:chunked: a zstd layer whose files can be fetched one by one.
//!
//! containers/storage's `pkg/chunked` format (CRFS's idea with zstd), as podman 4.3
//! (containers/storage 1.43) writes and reads it — checked by pushing with `podman push
//! --compression-format zstd:chunked` to a docker-registry and reading the blob's frames,
//! TOC and footer (docs/formats.md, "zstd:chunked"):
//!
//! 1. The uncompressed layer tar is walked once ([`crate::tar_split::split_entries`]); every
//!    byte outside regular-file contents (headers, PAX/GNU extension records, padding, the end
//!    blocks) goes into *header frames*: one zstd frame per run of such bytes.
//! 2. Each regular file's content starts a new frame and is cut into chunks by a rolling
//!    checksum ([`RollSum`], bup's, a split where the low 16 bits of `s2` are all ones: ~64 KiB
//!    chunks); every chunk is its own zstd frame. Decompressing the whole blob gives the tar
//!    back byte for byte (same diffID), so any zstd reader reads it as plain zstd.
//! 3. The TOC ([`Toc`]: `version` 1 and one [`TocEntry`] per tar entry, plus a `chunk` entry
//!    for each chunk after a file's first) is JSON, zstd-compressed, in a skippable frame.
//! 4. The footer, a skippable frame of 40 bytes: the TOC's offset (of its compressed bytes),
//!    compressed and uncompressed lengths, the manifest type (1) and the magic `GnUlInUx`, all
//!    little-endian u64.
//! 5. Two layer annotations locate and check the TOC without reading the footer:
//!    [`MANIFEST_CHECKSUM_KEY`] (sha256 of the compressed TOC) and [`MANIFEST_POSITION_KEY`]
//!    (`offset:length:uncompressed length:1`).
//!
//! Hand-written: no Rust crate writes (or reads) this format. Streaming: file contents pass
//! through a 64 KiB buffer; only the TOC (one small record per entry, as containers/storage
//! holds it) is kept until the end. The frames are compressed on one thread (each file's
//! frames depend on where the previous ones ended); the level is the zstd level.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zstd::stream::raw::{Encoder as RawEncoder, InBuffer, Operation, OutBuffer};
use zstd::zstd_safe::CParameter;

use crate::error::{Error, IoContext, Result};
use crate::tar_split::{self, Body, SplitSink};

/// The layer annotation holding the sha256 of the compressed TOC (podman 4.3's key).
pub const MANIFEST_CHECKSUM_KEY: &str = "io.containers.zstd-chunked.manifest-checksum";
/// The layer annotation `offset:length:uncompressed length:type` of the compressed TOC.
pub const MANIFEST_POSITION_KEY: &str = "io.containers.zstd-chunked.manifest-position";
/// The footer's last 8 bytes.
pub const FOOTER_MAGIC: &[u8; 8] = b"GnUlInUx";
/// Bytes of the footer's data (without its 8-byte skippable frame header).
pub const FOOTER_SIZE: usize = 40;
/// The manifest type containers/storage writes (`ManifestTypeCRFS`).
pub const MANIFEST_TYPE_CRFS: u64 = 1;
/// A zstd skippable frame's magic number (the first of the 16 allowed), little-endian.
const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
/// A chunk ends where the low this-many bits of the rolling sum are all ones.
const ROLLSUM_BITS: u32 = 16;

/// The TOC of a zstd:chunked layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Toc {
    /// Always 1.
    pub version: u32,
    /// One entry per tar entry, in tar order, with `chunk` entries after a file's first.
    pub entries: Vec<TocEntry>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One TOC entry, with containers/storage's JSON names (empty fields omitted as Go's
/// `omitempty` does; the three times always present).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TocEntry {
    /// `reg`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo` or `chunk`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entry's name as in the tar.
    pub name: String,
    /// Link target of symlinks and hard links.
    #[serde(rename = "linkName", default, skip_serializing_if = "String::is_empty")]
    pub link_name: String,
    /// The header's mode field as written (type bits included when the tar has them).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mode: i64,
    /// Content size.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: i64,
    /// Owner.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: i64,
    /// Group.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: i64,
    /// Modification time (RFC 3339 with nanoseconds, as Go prints `time.Time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modtime: Option<String>,
    /// Access time (PAX `atime`, GNU headers), else Go's zero time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accesstime: Option<String>,
    /// Change time (PAX `ctime`, GNU headers), else Go's zero time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changetime: Option<String>,
    /// Device major number.
    #[serde(rename = "devMajor", default, skip_serializing_if = "is_zero")]
    pub dev_major: i64,
    /// Device minor number.
    #[serde(rename = "devMinor", default, skip_serializing_if = "is_zero")]
    pub dev_minor: i64,
    /// Extended attributes, values base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
    /// sha256 of the whole file content (`sha256:…`), for regular files with content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Blob offset of the content's first frame (of this chunk's frame for chunks after the
    /// first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: i64,
    /// Blob offset after the content's last frame (main entries only).
    #[serde(rename = "endOffset", default, skip_serializing_if = "is_zero")]
    pub end_offset: i64,
    /// Uncompressed bytes of this chunk (files of more than one chunk).
    #[serde(rename = "chunkSize", default, skip_serializing_if = "is_zero")]
    pub chunk_size: i64,
    /// Offset of this chunk in the file.
    #[serde(rename = "chunkOffset", default, skip_serializing_if = "is_zero")]
    pub chunk_offset: i64,
    /// sha256 of this chunk's bytes.
    #[serde(
        rename = "chunkDigest",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub chunk_digest: String,
}

/// bup's rolling checksum (as perkeep and containers/storage use it): a 64-byte window.
pub struct RollSum {
    s1: u32,
    s2: u32,
    window: [u8; WINDOW],
    pos: usize,
}

const WINDOW: usize = 64;
const CHAR_OFFSET: u32 = 31;

impl Default for RollSum {
    fn default() -> Self {
        Self::new()
    }
}

impl RollSum {
    /// A checksum over a window of zeros.
    pub fn new() -> Self {
        RollSum {
            s1: WINDOW as u32 * CHAR_OFFSET,
            s2: WINDOW as u32 * (WINDOW as u32 - 1) * CHAR_OFFSET,
            window: [0; WINDOW],
            pos: 0,
        }
    }

    /// Slide the window by one byte.
    #[inline]
    pub fn roll(&mut self, ch: u8) {
        let drop = u32::from(self.window[self.pos]);
        let add = u32::from(ch);
        self.s1 = self.s1.wrapping_add(add).wrapping_sub(drop);
        self.s2 = self
            .s2
            .wrapping_add(self.s1)
            .wrapping_sub((WINDOW as u32).wrapping_mul(drop.wrapping_add(CHAR_OFFSET)));
        self.window[self.pos] = ch;
        self.pos = (self.pos + 1) & (WINDOW - 1);
    }

    /// Whether the low `bits` bits of `s2` are all ones (a chunk boundary).
    #[inline]
    pub fn on_split(&self, bits: u32) -> bool {
        let mask = (1u32 << bits) - 1;
        self.s2 & mask == mask
    }
}

/// The zstd frames of the blob, written to `out` with a running offset.
struct Frames<W: Write> {
    out: W,
    written: u64,
    enc: RawEncoder<'static>,
    open: bool,
    buf: Vec<u8>,
}

impl<W: Write> Frames<W> {
    fn new(out: W, level: i32) -> io::Result<Self> {
        let mut enc = RawEncoder::new(level)?;
        // containers/storage's frames carry the content checksum.
        enc.set_parameter(CParameter::ChecksumFlag(true))?;
        Ok(Frames {
            out,
            written: 0,
            enc,
            open: false,
            buf: vec![0u8; zstd::zstd_safe::CCtx::out_size().max(64 << 10)],
        })
    }

    fn emit(&mut self, n: usize) -> io::Result<()> {
        self.out.write_all(&self.buf[..n])?;
        self.written += n as u64;
        Ok(())
    }

    /// Compress `data` into the open frame (starting one).
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.open = true;
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            let mut out = OutBuffer::around(&mut self.buf[..]);
            self.enc.run(&mut input, &mut out)?;
            let n = out.pos();
            self.emit(n)?;
        }
        Ok(())
    }

    /// End the open frame, if any.
    fn end(&mut self) -> io::Result<()> {
        if !self.open {
            return Ok(());
        }
        loop {
            let mut out = OutBuffer::around(&mut self.buf[..]);
            let left = self.enc.finish(&mut out, true)?;
            let n = out.pos();
            self.emit(n)?;
            if left == 0 {
                break;
            }
        }
        self.enc.reinit()?;
        self.open = false;
        Ok(())
    }

    /// Write `data` as one skippable frame.
    fn skippable(&mut self, data: &[u8]) -> io::Result<()> {
        self.end()?;
        let len = u32::try_from(data.len())
            .map_err(|_| io::Error::other("skippable frame over 4 GiB"))?;
        self.out.write_all(&SKIPPABLE_MAGIC)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(data)?;
        self.written += 8 + data.len() as u64;
        Ok(())
    }
}

/// The walker's raw bytes go into header frames.
/// The walker's raw bytes go into header frames, and into the tar-split stowage adds.
/// (A tar the tar-split cannot describe, e.g. one path twice, gets none: `None`.)
struct HeaderFrames<'a, W: Write>(
    &'a RefCell<Frames<W>>,
    Option<crate::tar_split::TarSplitWriter<Vec<u8>>>,
);

impl<W: Write> SplitSink for HeaderFrames<'_, W> {
    fn segment(&mut self, raw: &[u8]) -> Result<()> {
        if let Some(ts) = &mut self.1 {
            if ts.segment(raw).is_err() {
                self.1 = None;
            }
        }
        self.0
            .borrow_mut()
            .write(raw)
            .ctx(|| "writing a zstd:chunked header frame".to_string())
    }
    fn file(&mut self, name: &[u8], size: u64, crc: Option<[u8; 8]>) -> Result<()> {
        if let Some(ts) = &mut self.1 {
            if ts.file(name, size, crc).is_err() {
                self.1 = None;
            }
        }
        Ok(())
    }
}

/// The layer annotation `offset:length` of the tar-split stowage writes into its
/// zstd:chunked blobs (a gzip tar-split, as containers-storage keeps it, in a skippable
/// frame after the TOC): a partial pull takes every header from it instead of fetching the
/// header frames. Readers that do not know it skip the frame.
pub const TARSPLIT_POSITION_KEY: &str = "io.github.stowage.zstd-chunked.tarsplit-position";
/// sha256 of that tar-split frame's content.
pub const TARSPLIT_CHECKSUM_KEY: &str = "io.github.stowage.zstd-chunked.tarsplit-checksum";

/// What [`encode`] wrote besides the blob.
#[derive(Debug, Clone)]
pub struct Written {
    /// The layer annotations ([`MANIFEST_CHECKSUM_KEY`], [`MANIFEST_POSITION_KEY`]).
    pub annotations: HashMap<String, String>,
    /// Number of TOC entries.
    pub entries: usize,
    /// Bytes written (the blob's size).
    pub size: u64,
}

/// Go's `time.Time` JSON form in UTC: RFC 3339 with the nanoseconds' trailing zeros trimmed.
pub fn go_time(secs: i64, nsec: u32) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nsec).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nsec > 0 {
        let frac = format!("{nsec:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Go's zero `time.Time` as JSON.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Write the zstd:chunked form of the uncompressed layer tar `tar` into `out` at zstd
/// `level`. `layer` names the layer in errors. Returns `out` and the annotations for the
/// layer's descriptor.
pub fn encode<R: Read, W: Write>(tar: R, out: W, level: i32, layer: &str) -> Result<(W, Written)> {
    let what = || format!("writing zstd:chunked {layer}");
    let frames = RefCell::new(Frames::new(out, level).ctx(what)?);
    let mut entries: Vec<TocEntry> = Vec::new();
    let mut sink = HeaderFrames(
        &frames,
        Some(crate::tar_split::TarSplitWriter::new(Vec::new())),
    );
    let mut buf = vec![0u8; 64 << 10];
    tar_split::split_entries(tar, layer, Some(&mut sink), |entry, body| {
        if body == Body::GlobalHeader {
            return Ok(());
        }
        let mut e = toc_entry(entry, layer)?;
        if body != Body::Content || entry.size() == 0 {
            entries.push(e);
            return Ok(());
        }
        let mut f = frames.borrow_mut();
        f.end().ctx(what)?;
        let start = f.written;
        let mut rs = RollSum::new();
        let mut file_hash = Sha256::new();
        let mut chunk_hash = Sha256::new();
        // (blob offset, offset in the file, size, digest) of each chunk.
        let mut chunks: Vec<(u64, u64, u64, String)> = Vec::new();
        let (mut chunk_blob, mut chunk_file, mut pos) = (start, 0u64, 0u64);
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::from_io(format!("layer {layer}: reading"), e)),
            };
            let data = &buf[..n];
            let mut from = 0;
            for (i, &b) in data.iter().enumerate() {
                rs.roll(b);
                if rs.on_split(ROLLSUM_BITS) {
                    let part = &data[from..=i];
                    file_hash.update(part);
                    chunk_hash.update(part);
                    f.write(part).ctx(what)?;
                    f.end().ctx(what)?;
                    from = i + 1;
                    pos += part.len() as u64;
                    let digest = format!("sha256:{}", hex::encode(chunk_hash.finalize_reset()));
                    chunks.push((chunk_blob, chunk_file, pos - chunk_file, digest));
                    chunk_blob = f.written;
                    chunk_file = pos;
                }
            }
            let part = &data[from..];
            file_hash.update(part);
            chunk_hash.update(part);
            f.write(part).ctx(what)?;
            pos += part.len() as u64;
        }
        if pos > chunk_file {
            f.end().ctx(what)?;
            let digest = format!("sha256:{}", hex::encode(chunk_hash.finalize()));
            chunks.push((chunk_blob, chunk_file, pos - chunk_file, digest));
        }
        e.digest = format!("sha256:{}", hex::encode(file_hash.finalize()));
        e.offset = start as i64;
        e.end_offset = f.written as i64;
        if chunks.len() > 1 {
            let name = e.name.clone();
            let (_, _, size, digest) = &chunks[0];
            e.chunk_size = *size as i64;
            e.chunk_digest = digest.clone();
            entries.push(e);
            for (blob, file, size, digest) in &chunks[1..] {
                entries.push(TocEntry {
                    kind: "chunk".into(),
                    name: name.clone(),
                    offset: *blob as i64,
                    chunk_size: *size as i64,
                    chunk_offset: *file as i64,
                    chunk_digest: digest.clone(),
                    ..TocEntry::default()
                });
            }
        } else {
            entries.push(e);
        }
        Ok(())
    })?;
    let tar_split = sink.1.take().and_then(|ts| ts.finish().ok());
    let mut f = frames.into_inner();
    f.end().ctx(what)?;
    let count = entries.len();
    let json = serde_json::to_vec(&Toc {
        version: 1,
        entries,
    })
    .map_err(|e| Error::Json {
        what: format!("zstd:chunked TOC of {layer}"),
        source: e,
    })?;
    let compressed = zstd::bulk::compress(&json, level).ctx(what)?;
    let toc_offset = f.written + 8;
    f.skippable(&compressed).ctx(what)?;
    let tar_split_at = f.written + 8;
    if let Some(ts) = &tar_split {
        f.skippable(ts).ctx(what)?;
    }
    let mut footer = Vec::with_capacity(FOOTER_SIZE);
    for v in [
        toc_offset,
        compressed.len() as u64,
        json.len() as u64,
        MANIFEST_TYPE_CRFS,
    ] {
        footer.extend_from_slice(&v.to_le_bytes());
    }
    footer.extend_from_slice(FOOTER_MAGIC);
    f.skippable(&footer).ctx(what)?;
    f.out.flush().ctx(what)?;
    let mut annotations = HashMap::new();
    annotations.insert(
        MANIFEST_CHECKSUM_KEY.to_string(),
        format!("sha256:{}", hex::encode(Sha256::digest(&compressed))),
    );
    annotations.insert(
        MANIFEST_POSITION_KEY.to_string(),
        format!(
            "{toc_offset}:{}:{}:{MANIFEST_TYPE_CRFS}",
            compressed.len(),
            json.len()
        ),
    );
    if let Some(ts) = &tar_split {
        annotations.insert(
            TARSPLIT_POSITION_KEY.to_string(),
            format!("{tar_split_at}:{}", ts.len()),
        );
        annotations.insert(
            TARSPLIT_CHECKSUM_KEY.to_string(),
            format!("sha256:{}", hex::encode(Sha256::digest(ts))),
        );
    }
    let size = f.written;
    Ok((
        f.out,
        Written {
            annotations,
            entries: count,
            size,
        },
    ))
}

/// The TOC entry for a tar entry, from its header and PAX records as Go's `archive/tar`
/// reports them (containers/storage's `NewFileMetadata`).
fn toc_entry<R: Read>(entry: &mut tar_split::SplitEntry<'_, R>, layer: &str) -> Result<TocEntry> {
    use tar::EntryType as T;
    let raw_name = entry.path_bytes().into_owned();
    let bad = |reason: String| Error::BadTarEntry {
        layer: layer.to_owned(),
        entry: String::from_utf8_lossy(&raw_name).into_owned(),
        reason,
    };
    let header = entry.header().clone();
    let hb = header.as_bytes();
    // A numeric field that does not parse (blank) reads as 0, as in Go.
    let num = |v: io::Result<u64>| v.unwrap_or(0) as i64;
    let kind = match header.entry_type() {
        T::Regular if tar_split::is_legacy_dir(&header, &raw_name) => "dir",
        T::Regular | T::Continuous => "reg",
        T::Directory => "dir",
        T::Symlink => "symlink",
        T::Link => "hardlink",
        T::Char => "char",
        T::Block => "block",
        T::Fifo => "fifo",
        other => {
            return Err(bad(format!(
                "zstd:chunked has no entry type for {other:?}; rebuild the layer with a standard tar writer or use --dest-compress-format zstd"
            )))
        }
    };
    let mut e = TocEntry {
        kind: kind.into(),
        name: String::from_utf8_lossy(&raw_name).into_owned(),
        link_name: entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default(),
        mode: num(header.mode().map(u64::from)),
        size: if kind == "reg" {
            entry.size() as i64
        } else {
            0
        },
        uid: num(header.uid()),
        gid: num(header.gid()),
        dev_major: num(header.device_major().map(|v| u64::from(v.unwrap_or(0)))),
        dev_minor: num(header.device_minor().map(|v| u64::from(v.unwrap_or(0)))),
        ..TocEntry::default()
    };
    let mut mtime = (num(header.mtime()), 0u32);
    let (mut atime, mut ctime) = (None, None);
    // Old GNU headers carry atime and ctime (Go reads them when set).
    if &hb[257..265] == b"ustar  \0" {
        let gnu = |r: std::ops::Range<usize>| -> Option<(i64, u32)> {
            if hb[r.start] == 0 {
                return None;
            }
            let s = std::str::from_utf8(&hb[r]).ok()?;
            let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
            i64::from_str_radix(s, 8).ok().map(|v| (v, 0))
        };
        atime = gnu(345..357);
        ctime = gnu(357..369);
    }
    let header_err = |e: io::Error| bad(format!("bad PAX header: {e}"));
    if let Some(pax) = entry.pax_extensions().map_err(header_err)? {
        for ext in pax {
            let ext = ext.map_err(header_err)?;
            let (key, value) = (ext.key_bytes(), ext.value_bytes());
            let time = || crate::layer_tar::parse_pax_time(value);
            let int = || std::str::from_utf8(value).ok()?.parse::<i64>().ok();
            match key {
                b"mtime" => mtime = time().unwrap_or(mtime),
                b"atime" => atime = time().or(atime),
                b"ctime" => ctime = time().or(ctime),
                b"uid" => e.uid = int().unwrap_or(e.uid),
                b"gid" => e.gid = int().unwrap_or(e.gid),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        e.xattrs.insert(
                            String::from_utf8_lossy(name).into_owned(),
                            BASE64.encode(value),
                        );
                    }
                }
            }
        }
    }
    let fmt = |t: Option<(i64, u32)>| {
        Some(t.map_or_else(|| GO_ZERO_TIME.to_string(), |(s, n)| go_time(s, n)))
    };
    e.modtime = fmt(Some(mtime));
    e.accesstime = fmt(atime);
    e.changetime = fmt(ctime);
    Ok(e)
}

// ---------------------------------------------------------------------------------------
// Reading: partial pulls.
// ---------------------------------------------------------------------------------------

/// Ranged access to one blob (a registry's `Range` requests): what a partial pull fetches.
pub trait BlobRanges: Send + Sync {
    /// The bytes of `ranges` (half-open `start..end`, ascending, not overlapping),
    /// concatenated in order, as a stream (which owns what it needs). An error when the
    /// server does not serve ranges.
    fn read_ranges(&self, ranges: Vec<(u64, u64)>) -> Result<super::BoxRead<'static>>;
    /// Body bytes received and requests made so far through this value.
    fn fetched(&self) -> (u64, u64);
}

/// The destination's files by content: what a partial pull takes instead of fetching.
pub trait LocalFiles: Send + Sync {
    /// Whether a regular file of `size` bytes with sha256 `digest` (`sha256:…`) is there.
    fn has(&self, digest: &str, size: u64) -> bool;
    /// Open that file (called while the layer streams; the content is checked against the
    /// digest as it is read).
    fn open(&self, digest: &str, size: u64) -> io::Result<std::fs::File>;
}

/// Largest compressed TOC accepted (containers/storage's limit is 50 MiB, too).
const MAX_TOC: u64 = 50 << 20;
/// Largest uncompressed TOC accepted.
const MAX_TOC_UNCOMPRESSED: u64 = 256 << 20;

/// A layer's TOC as a partial pull reads it.
#[derive(Debug, Clone)]
pub struct FoundToc {
    /// The parsed TOC.
    pub toc: Toc,
    /// Its JSON as stored in the blob (containers-storage keeps it as the layer's
    /// `zstd-chunked-manifest` big data).
    pub json: Vec<u8>,
    /// Blob offset where the TOC's skippable frame starts: the file frames end here.
    pub frames_end: u64,
    /// Bytes of the compressed TOC (what fetching it cost), and of the tar-split.
    pub compressed_len: u64,
    /// The layer's tar-split (gzip), when the blob carries one ([`TARSPLIT_POSITION_KEY`])
    /// and it checked out: the headers then come from it, not from the header frames.
    pub tar_split: Option<Vec<u8>>,
}

/// Whether a descriptor's annotations mark a zstd:chunked layer.
pub fn is_chunked(annotations: Option<&HashMap<String, String>>) -> bool {
    annotations.is_some_and(|a| {
        a.contains_key(MANIFEST_POSITION_KEY) && a.contains_key(MANIFEST_CHECKSUM_KEY)
    })
}

/// Fetch and check the TOC of a blob of `blob_size` bytes through `ranges`, located by the
/// layer's `annotations`. `Err` holds the reason a partial pull is not possible (the caller
/// pulls the whole blob instead).
pub fn read_toc(
    ranges: &dyn BlobRanges,
    annotations: &HashMap<String, String>,
    blob_size: u64,
) -> std::result::Result<FoundToc, String> {
    let position = annotations
        .get(MANIFEST_POSITION_KEY)
        .ok_or("no manifest-position annotation")?;
    let checksum = annotations
        .get(MANIFEST_CHECKSUM_KEY)
        .ok_or("no manifest-checksum annotation")?;
    let fields: Vec<u64> = position
        .split(':')
        .map(|f| f.parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("malformed manifest-position {position:?}"))?;
    let [offset, length, uncompressed, kind] = fields[..] else {
        return Err(format!("malformed manifest-position {position:?}"));
    };
    if kind != MANIFEST_TYPE_CRFS {
        return Err(format!("manifest type {kind} is not 1 (CRFS)"));
    }
    if offset < 8
        || length > MAX_TOC
        || uncompressed > MAX_TOC_UNCOMPRESSED
        || offset.saturating_add(length) > blob_size
    {
        return Err(format!(
            "manifest-position {position:?} lies outside the {blob_size}-byte blob or is too large"
        ));
    }
    // stowage's tar-split frame, when announced: fetched with the TOC, in one request.
    let split_at = annotations
        .get(TARSPLIT_POSITION_KEY)
        .and_then(|p| p.split_once(':'))
        .and_then(|(a, l)| Some((a.parse::<u64>().ok()?, l.parse::<u64>().ok()?)))
        .filter(|&(a, l)| a >= offset + length && l <= MAX_TOC && a.saturating_add(l) <= blob_size);
    let mut wanted = vec![(offset, offset + length)];
    if let Some((a, l)) = split_at {
        wanted.push((a, a + l));
    }
    let mut compressed = Vec::with_capacity(length as usize);
    ranges
        .read_ranges(wanted)
        .and_then(|mut r| {
            r.read_to_end(&mut compressed)
                .map_err(|e| Error::from_io("reading the zstd:chunked TOC", e))
        })
        .map_err(|e| format!("fetching the TOC: {e}"))?;
    let tar_split = split_at.and_then(|(_, l)| {
        let ts = compressed.split_off(compressed.len().checked_sub(l as usize)?);
        let sum = format!("sha256:{}", hex::encode(Sha256::digest(&ts)));
        (annotations.get(TARSPLIT_CHECKSUM_KEY) == Some(&sum)).then_some(ts)
    });
    let fetched_len = length + tar_split.as_ref().map_or(0, |t| t.len() as u64);
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&compressed)));
    if &actual != checksum {
        return Err(format!(
            "the TOC's checksum is {actual}, the manifest says {checksum}"
        ));
    }
    let json = zstd::bulk::decompress(&compressed, uncompressed as usize)
        .map_err(|e| format!("decompressing the TOC: {e}"))?;
    let toc: Toc = serde_json::from_slice(&json).map_err(|e| format!("parsing the TOC: {e}"))?;
    if toc.version != 1 {
        return Err(format!("TOC version {} is not 1", toc.version));
    }
    Ok(FoundToc {
        toc,
        json,
        frames_end: offset - 8,
        compressed_len: fetched_len,
        tar_split,
    })
}

/// One piece of the layer's tar, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Blob bytes `start..end` (whole zstd frames) to fetch and decompress.
    Remote(u64, u64),
    /// A file's content, taken from the destination.
    Local {
        /// `sha256:…` of the content.
        digest: String,
        /// Its size.
        size: u64,
    },
}

/// What a partial pull takes from where: the tar of the layer, piece by piece.
#[derive(Debug, Clone)]
pub struct PartialPlan {
    pieces: Vec<Piece>,
    /// With a tar-split, the pieces are the files' contents only (headers from it).
    tar_split: Option<Vec<u8>>,
    /// Regular files with content in the TOC.
    pub files: usize,
    /// Of those, taken from the destination.
    pub reused_files: usize,
    /// Uncompressed bytes taken from the destination.
    pub reused_bytes: u64,
    /// Blob bytes to fetch.
    pub remote_bytes: u64,
    /// Ranges to fetch (after coalescing).
    pub remote_ranges: usize,
}

impl PartialPlan {
    /// The blob ranges to fetch, in order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Remote(a, b) => Some((*a, *b)),
                Piece::Local { .. } => None,
            })
            .collect()
    }
}

/// Files of the destination that [`reassemble`] opened as the bodies of tar entries, by the
/// entry's name and size as the tar-split records them, until the extractor asks for them:
/// the layer's [`crate::fs_clone::FileOrigin`], so the extractor reflinks or copies each file
/// in the kernel instead of writing the bytes it reads from the reassembled tar. Each is the
/// very file (a duplicate of the descriptor) whose bytes the tar carried as that entry's
/// body, so what is placed is what the diffID check saw (never a file chosen by a TOC name).
/// An entry asked for before the reassembler reached it, or of a tar without a tar-split,
/// has no origin: its bytes are written as usual.
#[derive(Clone, Default)]
pub struct LocalOrigin {
    opened: std::sync::Arc<std::sync::Mutex<OpenedFiles>>,
}

/// The files of a [`LocalOrigin`] by (tar entry name, size).
type OpenedFiles = HashMap<(Vec<u8>, u64), std::fs::File>;

/// Files [`LocalOrigin`] holds at most (the reassembler runs at most a few MiB ahead of the
/// extractor; this bounds the descriptors of a reader that never asks).
const MAX_OPENED: usize = 256;

impl LocalOrigin {
    /// An origin that holds nothing yet.
    pub fn new() -> Self {
        LocalOrigin::default()
    }

    fn offer(&self, name: &[u8], size: u64, file: &std::fs::File) {
        let mut opened = self.opened.lock().unwrap();
        if opened.len() < MAX_OPENED {
            if let Ok(dup) = file.try_clone() {
                opened.insert((name.to_vec(), size), dup);
            }
        }
    }
}

impl crate::fs_clone::FileOrigin for LocalOrigin {
    fn open(&self, name: &[u8], size: u64) -> Option<std::fs::File> {
        self.opened.lock().unwrap().remove(&(name.to_vec(), size))
    }
}

/// Plan the partial pull of a layer with TOC `found`: each regular file whose content the
/// destination has (same digest and size) is taken from there, everything else (headers,
/// padding, the other files) is fetched as whole frames, adjacent ranges as one. `Err`: the
/// TOC's offsets do not describe a zstd:chunked blob (the reason).
pub fn plan(found: &FoundToc, local: &dyn LocalFiles) -> std::result::Result<PartialPlan, String> {
    let mut pieces = Vec::new();
    let (mut at, mut files, mut reused_files, mut reused_bytes) = (0u64, 0, 0, 0u64);
    for e in &found.toc.entries {
        if e.kind != "reg" || e.size == 0 {
            continue;
        }
        files += 1;
        let (start, end) = (e.offset as u64, e.end_offset as u64);
        if e.offset < 0 || start < at || end <= start || end > found.frames_end || e.size < 0 {
            return Err(format!(
                "TOC entry {:?} has offsets {}..{} outside the file frames or out of order",
                e.name, e.offset, e.end_offset
            ));
        }
        if found.tar_split.is_some() {
            // Content pieces only, in tar order: local or the file's frames.
            if !e.digest.is_empty() && local.has(&e.digest, e.size as u64) {
                pieces.push(Piece::Local {
                    digest: e.digest.clone(),
                    size: e.size as u64,
                });
                reused_files += 1;
                reused_bytes += e.size as u64;
            } else {
                pieces.push(Piece::Remote(start, end));
            }
            at = end;
            continue;
        }
        if e.digest.is_empty() || !local.has(&e.digest, e.size as u64) {
            continue;
        }
        if start > at {
            pieces.push(Piece::Remote(at, start));
        }
        pieces.push(Piece::Local {
            digest: e.digest.clone(),
            size: e.size as u64,
        });
        reused_files += 1;
        reused_bytes += e.size as u64;
        at = end;
    }
    if found.frames_end > at && found.tar_split.is_none() {
        pieces.push(Piece::Remote(at, found.frames_end));
    }
    let remote: Vec<(u64, u64)> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Remote(a, b) => Some((*a, *b)),
            _ => None,
        })
        .collect();
    Ok(PartialPlan {
        remote_bytes: remote.iter().map(|(a, b)| b - a).sum(),
        remote_ranges: remote.len(),
        pieces,
        tar_split: found.tar_split.clone(),
        files,
        reused_files,
        reused_bytes,
    })
}

/// The layer's tar for `plan`: [`Reassembled`] (every byte from the header frames and the
/// files), or, when the blob carried a tar-split, the tar-split replayed with each file's
/// content from the destination or its fetched frames (the tar-split's CRC-64 checks each).
/// `fetched` is the stream of [`BlobRanges::read_ranges`] of [`PartialPlan::ranges`].
/// Each destination file it opens is offered to `origin`, when given ([`LocalOrigin`]).
pub fn reassemble<'a>(
    plan: PartialPlan,
    fetched: super::BoxRead<'static>,
    local: &'a dyn LocalFiles,
    origin: Option<LocalOrigin>,
) -> super::BoxRead<'a> {
    let Some(tar_split) = plan.tar_split.clone() else {
        return Box::new(Reassembled::new(plan, fetched, local));
    };
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(fetched)));
    let mut pieces: std::collections::VecDeque<Piece> = plan.pieces.into();
    let get = move |name: &[u8], size: u64| -> Result<Box<dyn Read + Send>> {
        let who = || String::from_utf8_lossy(name).into_owned();
        match pieces.pop_front() {
            Some(Piece::Local { digest, size: s }) if s == size => {
                let f = local.open(&digest, size).map_err(|e| {
                    Error::from_io(format!("opening the local copy of {}", who()), e)
                })?;
                if let Some(o) = &origin {
                    o.offer(name, size, &f);
                }
                Ok(Box::new(f.take(size)))
            }
            Some(Piece::Remote(a, b)) => {
                let inner = slot
                    .lock()
                    .unwrap()
                    .take()
                    .ok_or_else(|| Error::Malformed {
                        what: "zstd:chunked partial pull".into(),
                        reason: format!("the ranges before {} were not read to their end", who()),
                    })?;
                let region = Region { inner, left: b - a };
                let mut d = zstd::stream::read::Decoder::new(region)
                    .map_err(|e| Error::from_io("starting a zstd decoder", e))?;
                d.window_log_max(27)
                    .map_err(|e| Error::from_io("configuring a zstd decoder", e))?;
                Ok(Box::new(RemoteFile {
                    decoder: Some(d),
                    left: size,
                    slot: slot.clone(),
                }))
            }
            _ => Err(Error::Malformed {
                what: "zstd:chunked partial pull".into(),
                reason: format!(
                    "the tar-split's file {} ({size} bytes) is not the TOC's next file",
                    who()
                ),
            }),
        }
    };
    Box::new(crate::tar_split::Assembler::new(
        io::Cursor::new(tar_split),
        get,
    ))
}

/// One file's content from its fetched frames; gives the fetched stream back when done.
struct RemoteFile {
    decoder: Option<zstd::stream::read::Decoder<'static, io::BufReader<Region<'static>>>>,
    left: u64,
    slot: std::sync::Arc<std::sync::Mutex<Option<super::BoxRead<'static>>>>,
}

impl RemoteFile {
    /// The content is complete: the frames must end here too.
    fn finish(&mut self) -> io::Result<()> {
        let Some(mut d) = self.decoder.take() else {
            return Ok(());
        };
        let mut extra = [0u8; 1];
        if d.read(&mut extra)? != 0 {
            return Err(io::Error::other(
                "a file's frames hold more than the TOC's size",
            ));
        }
        let buffered = d.finish();
        if !buffered.buffer().is_empty() || buffered.get_ref().left != 0 {
            return Err(io::Error::other(
                "a fetched range holds bytes after its last zstd frame",
            ));
        }
        *self.slot.lock().unwrap() = Some(buffered.into_inner().inner);
        Ok(())
    }
}

impl Read for RemoteFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            self.finish()?;
            return Ok(0);
        }
        let Some(d) = self.decoder.as_mut() else {
            return Ok(0);
        };
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = d.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("a file's frames ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        if self.left == 0 {
            self.finish()?;
        }
        Ok(n)
    }
}

/// `left` bytes of the fetched stream: one remote piece.
struct Region<'a> {
    inner: super::BoxRead<'a>,
    left: u64,
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the fetched ranges ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

enum Current<'a> {
    Idle(super::BoxRead<'a>),
    Remote(zstd::stream::read::Decoder<'static, io::BufReader<Region<'a>>>),
    Local {
        file: std::fs::File,
        hash: Sha256,
        left: u64,
        digest: String,
        fetched: super::BoxRead<'a>,
    },
    Gone,
}

/// The layer's uncompressed tar, put together from fetched frames and the destination's
/// files (a `Read`; streaming, one piece at a time). Every local file is checked against its
/// TOC digest as it is read; the caller checks the whole tar against the diffID.
pub struct Reassembled<'a> {
    pieces: std::collections::VecDeque<Piece>,
    local: &'a dyn LocalFiles,
    current: Current<'a>,
}

impl<'a> Reassembled<'a> {
    /// The tar of `plan`, reading the remote pieces from `fetched` (the stream of
    /// [`BlobRanges::read_ranges`] of [`PartialPlan::ranges`]) and the local ones from
    /// `local`.
    pub fn new(plan: PartialPlan, fetched: super::BoxRead<'a>, local: &'a dyn LocalFiles) -> Self {
        Reassembled {
            pieces: plan.pieces.into(),
            local,
            current: Current::Idle(fetched),
        }
    }

    /// Move to the next piece; `false` at the end.
    fn advance(&mut self) -> io::Result<bool> {
        let fetched = match std::mem::replace(&mut self.current, Current::Gone) {
            Current::Idle(f) => f,
            Current::Remote(d) => {
                let buffered = d.finish();
                if !buffered.buffer().is_empty() || buffered.get_ref().left != 0 {
                    return Err(io::Error::other(
                        "a fetched range holds bytes after its last zstd frame",
                    ));
                }
                buffered.into_inner().inner
            }
            Current::Local { fetched, .. } => fetched,
            Current::Gone => return Ok(false),
        };
        match self.pieces.pop_front() {
            None => {
                self.current = Current::Idle(fetched);
                Ok(false)
            }
            Some(Piece::Remote(a, b)) => {
                let region = Region {
                    inner: fetched,
                    left: b - a,
                };
                let mut d = zstd::stream::read::Decoder::new(region)?;
                d.window_log_max(27)?;
                self.current = Current::Remote(d);
                Ok(true)
            }
            Some(Piece::Local { digest, size }) => {
                let file = self.local.open(&digest, size)?;
                self.current = Current::Local {
                    file,
                    hash: Sha256::new(),
                    left: size,
                    digest,
                    fetched,
                };
                Ok(true)
            }
        }
    }
}

impl Read for Reassembled<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = match &mut self.current {
                Current::Idle(_) => 0,
                Current::Gone => return Ok(0),
                Current::Remote(d) => d.read(buf)?,
                Current::Local {
                    file,
                    hash,
                    left,
                    digest,
                    ..
                } => {
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = if want == 0 {
                        0
                    } else {
                        file.read(&mut buf[..want])?
                    };
                    if n == 0 {
                        let actual =
                            format!("sha256:{}", hex::encode(std::mem::take(hash).finalize()));
                        if *left != 0 || &actual != digest {
                            return Err(io::Error::other(format!(
                                "the local file taken for content {digest} is {actual} ({} bytes short); it changed since it was stored",
                                *left
                            )));
                        }
                    } else {
                        hash.update(&buf[..n]);
                        *left -= n as u64;
                    }
                    n
                }
            };
            if n > 0 {
                return Ok(n);
            }
            if !self.advance()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn decodes_to_the_tar_and_the_toc_points_at_each_file() {
        let big = noise(300_000, 7);
        let tar = tar_of(&[("a.txt", b"hello\n"), ("big", &big), ("empty", b"")]);
        let (blob, w) = encode(&tar[..], Vec::new(), 3, "test").unwrap();
        assert_eq!(w.size, blob.len() as u64);
        // A plain zstd reader sees the tar (skippable frames skipped).
        let plain = zstd::stream::decode_all(&blob[..]).unwrap();
        assert_eq!(plain, tar);
        // Footer → TOC, checked against the annotations.
        let footer = &blob[blob.len() - FOOTER_SIZE..];
        assert_eq!(&footer[32..], FOOTER_MAGIC);
        let word = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap());
        let (off, len, ulen) = (word(0) as usize, word(1) as usize, word(2));
        assert_eq!(
            w.annotations[MANIFEST_POSITION_KEY],
            format!("{off}:{len}:{ulen}:1")
        );
        let compressed = &blob[off..off + len];
        assert_eq!(
            w.annotations[MANIFEST_CHECKSUM_KEY],
            format!("sha256:{}", hex::encode(Sha256::digest(compressed)))
        );
        let toc: Toc =
            serde_json::from_slice(&zstd::bulk::decompress(compressed, 1 << 20).unwrap()).unwrap();
        assert_eq!(toc.version, 1);
        let a = &toc.entries[0];
        assert_eq!(
            (a.kind.as_str(), a.name.as_str(), a.size),
            ("reg", "a.txt", 6)
        );
        assert_eq!(a.modtime.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(a.accesstime.as_deref(), Some(GO_ZERO_TIME));
        let range = &blob[a.offset as usize..a.end_offset as usize];
        assert_eq!(zstd::stream::decode_all(range).unwrap(), b"hello\n");
        // The big file: several chunks, each its own frames, together the file.
        let chunks: Vec<&TocEntry> = toc.entries.iter().filter(|e| e.name == "big").collect();
        assert!(chunks.len() > 1, "{} chunks", chunks.len());
        let main = chunks[0];
        let all = &blob[main.offset as usize..main.end_offset as usize];
        assert_eq!(zstd::stream::decode_all(all).unwrap(), big);
        assert_eq!(
            main.digest,
            format!("sha256:{}", hex::encode(Sha256::digest(&big)))
        );
        for (i, c) in chunks.iter().enumerate() {
            let end = chunks.get(i + 1).map_or(main.end_offset, |n| n.offset) as usize;
            let data = zstd::stream::decode_all(&blob[c.offset as usize..end]).unwrap();
            let at = c.chunk_offset as usize;
            assert_eq!(data, &big[at..at + c.chunk_size as usize]);
            assert_eq!(
                c.chunk_digest,
                format!("sha256:{}", hex::encode(Sha256::digest(&data)))
            );
        }
        let empty = toc.entries.last().unwrap();
        assert_eq!(
            (empty.name.as_str(), empty.offset, empty.digest.as_str()),
            ("empty", 0, "")
        );
    }

    struct MemRanges(Vec<u8>, std::sync::Mutex<(u64, u64)>);

    impl BlobRanges for MemRanges {
        fn read_ranges(
            &self,
            ranges: Vec<(u64, u64)>,
        ) -> Result<crate::compression::BoxRead<'static>> {
            let mut out = Vec::new();
            for (a, b) in ranges {
                out.extend_from_slice(&self.0[a as usize..b as usize]);
            }
            let mut c = self.1.lock().unwrap();
            c.0 += out.len() as u64;
            c.1 += 1;
            Ok(Box::new(io::Cursor::new(out)))
        }
        fn fetched(&self) -> (u64, u64) {
            *self.1.lock().unwrap()
        }
    }

    /// Files in a directory, named by their digest's hex.
    struct DirFiles(tempfile::TempDir);

    impl DirFiles {
        fn add(&self, data: &[u8]) {
            let hex = hex::encode(Sha256::digest(data));
            std::fs::write(self.0.path().join(hex), data).unwrap();
        }
    }

    impl LocalFiles for DirFiles {
        fn has(&self, digest: &str, size: u64) -> bool {
            let p = self.0.path().join(digest.trim_start_matches("sha256:"));
            std::fs::metadata(p).is_ok_and(|m| m.len() == size)
        }
        fn open(&self, digest: &str, _: u64) -> io::Result<std::fs::File> {
            std::fs::File::open(self.0.path().join(digest.trim_start_matches("sha256:")))
        }
    }

    #[test]
    fn partial_reassembly_gives_the_tar_and_checks_local_files() {
        let files: Vec<Vec<u8>> = (0..6)
            .map(|i| noise(50_000 + i * 1000, i as u32 + 1))
            .collect();
        let names: Vec<String> = (0..6).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&files)
            .map(|(n, f)| (n.as_str(), f.as_slice()))
            .collect();
        let tar = tar_of(&entries);
        let (blob, w) = encode(&tar[..], Vec::new(), 3, "test").unwrap();
        let ranges = MemRanges(blob.clone(), Default::default());
        let local = DirFiles(tempfile::tempdir().unwrap());
        for f in [&files[0], &files[2], &files[3], &files[5]] {
            local.add(f);
        }
        // With stowage's tar-split (headers from it, contents only fetched) and without
        // (header frames fetched), the same tar; a local file that changed is refused.
        let mut frames_only = w.annotations.clone();
        frames_only.remove(TARSPLIT_POSITION_KEY);
        for (annotations, refused) in [
            (&w.annotations, "integrity checksum failed"),
            (&frames_only, "changed since it was stored"),
        ] {
            local.add(&files[2]);
            let found = read_toc(&ranges, annotations, blob.len() as u64).unwrap();
            assert_eq!(
                found.tar_split.is_some(),
                annotations.contains_key(TARSPLIT_POSITION_KEY)
            );
            let plan = plan(&found, &local).unwrap();
            assert_eq!((plan.files, plan.reused_files), (6, 4));
            assert!(plan.remote_bytes < blob.len() as u64 / 2);
            let fetched = ranges.read_ranges(plan.ranges()).unwrap();
            let mut out = Vec::new();
            let origin = LocalOrigin::new();
            reassemble(plan.clone(), fetched, &local, Some(origin.clone()))
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, tar);
            // With a tar-split, the origin hands out the local files the tar's bodies came
            // from, once each, by entry name and size; none for fetched files.
            use crate::fs_clone::FileOrigin as _;
            for (i, f) in files.iter().enumerate() {
                let got = origin.open(names[i].as_bytes(), f.len() as u64);
                let expect = found.tar_split.is_some() && [0, 2, 3, 5].contains(&i);
                assert_eq!(got.is_some(), expect, "file {i}");
                if let Some(g) = got {
                    // A duplicate of the stream's descriptor: read at offsets.
                    use std::os::unix::fs::FileExt as _;
                    let mut body = vec![0u8; f.len()];
                    g.read_exact_at(&mut body, 0).unwrap();
                    assert_eq!(&body, f);
                }
            }
            assert!(origin.open(b"f0", files[0].len() as u64).is_none());
            std::fs::write(
                local.0.path().join(hex::encode(Sha256::digest(&files[2]))),
                noise(files[2].len(), 99),
            )
            .unwrap();
            let fetched = ranges.read_ranges(plan.ranges()).unwrap();
            let err = reassemble(plan, fetched, &local, None)
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert!(err.to_string().contains(refused), "{err}");
        }
        // A wrong checksum annotation: no partial pull, with the reason.
        let mut bad = w.annotations.clone();
        bad.insert(
            MANIFEST_CHECKSUM_KEY.into(),
            format!("sha256:{}", "0".repeat(64)),
        );
        let reason = read_toc(&ranges, &bad, blob.len() as u64).unwrap_err();
        assert!(reason.contains("checksum"), "{reason}");
    }

    #[test]
    fn rollsum_splits_like_bup() {
        // bup's rollsum over a window of zeros splits nowhere in zeros; on noise a split lands
        // on average every 2^16 bytes.
        let mut rs = RollSum::new();
        let data = noise(1 << 22, 3);
        let splits = data
            .iter()
            .filter(|&&b| {
                rs.roll(b);
                rs.on_split(ROLLSUM_BITS)
            })
            .count();
        assert!((20..=200).contains(&splits), "{splits} splits in 4 MiB");
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(
            go_time(1_700_000_000, 500_000_000),
            "2023-11-14T22:13:20.5Z"
        );
        assert_eq!(go_time(1_700_000_000, 1), "2023-11-14T22:13:20.000000001Z");
    }
}
