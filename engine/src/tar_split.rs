//! tar-split: the metadata that lets a store rebuild a layer tar bit for bit.
//!
//! containers-storage keeps, next to each layer's extracted `diff/` directory, a
//! `<layer>.tar-split.gz` file holding every byte of the original uncompressed layer tar
//! *except* regular-file contents. Replaying it with the file bodies read back from `diff/`
//! reproduces the original tar, so an exported layer hashes to the same DiffID.
//!
//! Format (vbatts/tar-split v0.11, `tar/storage/entry.go`): a gzip stream of JSON lines, one
//! record per line, `position` counting from 0:
//! * segment, `{"type":2,"payload":"<base64 raw bytes>","position":N}`: bytes emitted verbatim
//!   (headers incl. PAX/GNU extension blocks, content padding, end-of-archive blocks, trailing
//!   record padding or garbage). The stream ends with an empty segment (`"payload":""`).
//! * file, `{"type":1,"name":"…","size":S,"payload":"<base64 CRC-64/ISO, 8 bytes BE>","position":N}`:
//!   one per tar entry, after the segment holding its header. `size` is omitted when 0 and
//!   `payload` is `null` then; `name_raw` (base64) replaces `name` when the name is not UTF-8.
//!   The name is the header's path after PAX/GNU resolution, exactly as written in the tar.
//!
//! This module is hand-written: no crate writes tar-split (composefs-storage only reads it, and
//! is read-only). It provides:
//! 1. [`crc64_iso`] / [`Crc64Iso`]: Go's `hash/crc64` ISO checksum (the `crc` crate's
//!    `CRC_64_GO_ISO`, slice-by-16).
//! 2. [`TarSplitWriter`]: the gzip JSON-lines encoder (rejects a path recorded twice, as Go's
//!    packer does, because containers-storage cannot read such a file back).
//! 3. [`TarSplitReader`]: iterates the [`Record`]s of a `tar-split.gz` stream.
//! 4. [`Assembler`]: a pull-based `Read` that replays the records, fetching file bodies through
//!    a callback and checking their sizes and checksums while streaming.
//! 5. [`disassemble`]: tar in, tar-split out, without extracting anything.
//!
//! Capturing the raw bytes in the same pass as extraction: the tar stream is wrapped in a
//! [`RecordingReader`] whose state is shared (`Rc<RefCell>`) with the walker. The `tar` crate
//! reads headers in exact 512-byte blocks and file bodies through `Read::take` — it never reads
//! ahead — so every byte it pulls while parsing headers (and PAX/GNU extension data, padding)
//! is appended to the pending segment, while the `size` bytes after a regular file's header
//! feed only the CRC. The walker flushes the pending segment before each file record, and at
//! the end reads the stream to EOF so trailing zero blocks and record padding are recorded.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use crc::{Crc, Table, CRC_64_GO_ISO};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

static CRC64_ISO: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_GO_ISO);

/// Segments are flushed at this size at the latest, so trailing garbage is never held whole.
const MAX_SEGMENT: usize = 1024 * 1024;

/// Record type numbers of the JSON format.
const FILE_TYPE: u8 = 1;
const SEGMENT_TYPE: u8 = 2;

/// CRC-64/ISO of `data` as Go's `crc64.Checksum(data, crc64.MakeTable(crc64.ISO))` computes it.
pub fn crc64_iso(data: &[u8]) -> u64 {
    CRC64_ISO.checksum(data)
}

/// Incremental CRC-64/ISO (the checksum tar-split stores for each file).
pub struct Crc64Iso {
    digest: crc::Digest<'static, u64, Table<16>>,
}

impl Default for Crc64Iso {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc64Iso {
    /// A fresh checksum.
    pub fn new() -> Self {
        Crc64Iso {
            digest: CRC64_ISO.digest(),
        }
    }

    /// Feed `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
    }

    /// The checksum of everything fed.
    pub fn finish(self) -> u64 {
        self.digest.finalize()
    }

    /// The checksum as tar-split stores it: 8 bytes, big-endian.
    pub fn finish_bytes(self) -> [u8; 8] {
        self.finish().to_be_bytes()
    }
}

/// One JSON line, field names and order as Go's `storage.Entry`.
#[derive(Serialize, Deserialize)]
struct JsonEntry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name_raw: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    size: u64,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    position: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Go's `filepath.Clean`, on bytes: the key under which tar-split detects duplicate paths.
fn go_clean(name: &[u8]) -> Vec<u8> {
    let rooted = name.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|p| *p != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(part);
                }
            }
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(name.len() + 1);
    if rooted {
        out.push(b'/');
    }
    out.extend_from_slice(&parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Writes a `tar-split.gz` stream: gzip (fast level, like containers-storage) of JSON lines.
pub struct TarSplitWriter<W: Write> {
    gz: GzEncoder<W>,
    position: u64,
    /// Names recorded so far; `None` when duplicates are allowed.
    seen: Option<HashSet<Vec<u8>>>,
    line: Vec<u8>,
}

impl<W: Write> TarSplitWriter<W> {
    /// Start a tar-split stream written to `w`.
    pub fn new(w: W) -> Self {
        TarSplitWriter {
            gz: GzEncoder::new(w, flate2::Compression::fast()),
            position: 0,
            seen: Some(HashSet::new()),
            line: Vec::with_capacity(1024),
        }
    }

    /// Record a name that appears twice instead of refusing it. For stores other than
    /// containers-storage, which keep the tar-split only to rebuild the layer bit for bit:
    /// ostree-rs-ext's own export writes `var/tmp` twice when the commit has one, and its
    /// importer takes such layers. Copying the layer into containers-storage later still
    /// fails there, with the message of [`file`](Self::file).
    pub fn allow_duplicate_paths(mut self) -> Self {
        self.seen = None;
        self
    }

    fn emit(&mut self, entry: &JsonEntry) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, entry).map_err(|e| Error::Json {
            what: "tar-split record".into(),
            source: e,
        })?;
        self.line.push(b'\n');
        self.gz.write_all(&self.line).map_err(|e| Error::Io {
            context: "writing tar-split".into(),
            source: e,
        })?;
        self.position += 1;
        Ok(())
    }

    /// Record raw tar bytes to be replayed verbatim. Empty input writes nothing (the closing
    /// empty segment is written by [`finish`](Self::finish)).
    pub fn segment(&mut self, raw: &[u8]) -> Result<()> {
        for chunk in raw.chunks(MAX_SEGMENT) {
            // Written by hand, byte for byte what serde_json makes of the `JsonEntry` (type 2,
            // payload, position; the rest skipped): base64 needs no JSON escaping, so the
            // payload is encoded straight into the line — segments are most of a tar-split's
            // bytes (every header), and this skips a String and an escaping pass per record.
            self.line.clear();
            self.line.extend_from_slice(b"{\"type\":2,\"payload\":\"");
            let start = self.line.len();
            self.line.resize(
                start + base64::encoded_len(chunk.len(), true).unwrap_or(0),
                0,
            );
            let n = BASE64
                .encode_slice(chunk, &mut self.line[start..])
                .expect("sized by encoded_len");
            self.line.truncate(start + n);
            self.line.extend_from_slice(b"\",\"position\":");
            self.line
                .extend_from_slice(itoa::Buffer::new().format(self.position).as_bytes());
            self.line.extend_from_slice(b"}\n");
            self.gz.write_all(&self.line).map_err(|e| Error::Io {
                context: "writing tar-split".into(),
                source: e,
            })?;
            self.position += 1;
        }
        Ok(())
    }

    /// Record a tar entry: `name` as in its header, `size` its content length and `crc` the
    /// CRC-64/ISO of the content (required when `size > 0`, ignored when it is 0).
    ///
    /// A name that was already recorded (compared after Go's `filepath.Clean`) is refused
    /// (unless [`allow_duplicate_paths`](Self::allow_duplicate_paths)): containers-storage
    /// rejects such a tar-split when reading it back.
    pub fn file(&mut self, name: &[u8], size: u64, crc: Option<[u8; 8]>) -> Result<()> {
        let display = String::from_utf8_lossy(name).into_owned();
        if self
            .seen
            .as_mut()
            .is_some_and(|seen| !seen.insert(go_clean(name)))
        {
            return Err(Error::Conflict {
                what: format!("tar entry {display:?}"),
                reason: "the same path appears twice in the layer; containers-storage cannot \
                         store such a layer (rebuild the image without duplicate entries)"
                    .into(),
            });
        }
        let payload = if size == 0 {
            None
        } else {
            let crc = crc.ok_or_else(|| Error::Malformed {
                what: format!("tar-split record for {display:?}"),
                reason: format!("{size}-byte file recorded without a checksum"),
            })?;
            Some(BASE64.encode(crc))
        };
        let (name, name_raw) = match std::str::from_utf8(name) {
            Ok("") => (None, None),
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (None, Some(BASE64.encode(name))),
        };
        self.emit(&JsonEntry {
            kind: FILE_TYPE,
            name,
            name_raw,
            size,
            payload,
            position: self.position,
        })
    }

    /// Write the closing empty segment, finish the gzip stream and return the writer.
    pub fn finish(mut self) -> Result<W> {
        self.emit(&JsonEntry {
            kind: SEGMENT_TYPE,
            name: None,
            name_raw: None,
            size: 0,
            payload: Some(String::new()),
            position: self.position,
        })?;
        self.gz.finish().map_err(|e| Error::Io {
            context: "finishing tar-split".into(),
            source: e,
        })
    }
}

/// One tar-split record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Raw tar bytes to emit verbatim.
    Segment(Vec<u8>),
    /// A tar entry; for `size > 0` its content follows in the tar and `crc` is its CRC-64/ISO.
    File {
        /// The entry's name as in the tar header.
        name: Vec<u8>,
        /// Content length.
        size: u64,
        /// CRC-64/ISO, big-endian; `None` when the record has no payload (size 0).
        crc: Option<[u8; 8]>,
    },
}

/// The longest text one record may take (segments are at most [`MAX_SEGMENT`] bytes, so
/// their base64 lines are far shorter): bounds the memory a hostile stream without line ends
/// can take.
const MAX_RECORD_TEXT: usize = 64 << 20;

/// Iterates the records of a `tar-split.gz` stream.
///
/// tar-split writes one JSON object per line (Go's `json.Encoder`); each line is parsed from
/// a slice, several times faster than serde_json's reader over a byte stream, which was 5%
/// of an export's CPU. A record split over several lines or several on one line (any JSON
/// whitespace between records is valid) still parse: a line that ends inside a record is
/// joined with the next.
pub struct TarSplitReader<R: Read> {
    input: BufReader<MultiGzDecoder<R>>,
    /// Unparsed text: the current line(s) from `start` on.
    line: Vec<u8>,
    start: usize,
    /// Records parsed from `line` and not yet returned.
    ready: std::collections::VecDeque<JsonEntry>,
    /// The decompressed stream has ended (what is in `line` is all there is).
    at_end: bool,
    done: bool,
}

impl<R: Read> TarSplitReader<R> {
    /// Read the gzip-compressed tar-split stream `r`.
    pub fn new(r: R) -> Self {
        TarSplitReader {
            input: BufReader::with_capacity(64 * 1024, MultiGzDecoder::new(r)),
            line: Vec::new(),
            start: 0,
            ready: Default::default(),
            at_end: false,
            done: false,
        }
    }

    /// The next record, `None` at the end of the stream.
    fn next_entry(&mut self) -> Result<Option<JsonEntry>> {
        use std::io::BufRead as _;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let text = &self.line[self.start..];
            if text.iter().all(u8::is_ascii_whitespace) {
                self.line.clear();
                self.start = 0;
                if self.at_end {
                    return Ok(None);
                }
            } else {
                let mut records = serde_json::Deserializer::from_slice(text).into_iter();
                let mut cut = false;
                for r in records.by_ref() {
                    match r {
                        Ok(e) => self.ready.push_back(e),
                        Err(e) if e.is_eof() => {
                            cut = true;
                            break;
                        }
                        Err(e) => {
                            return Err(Error::Malformed {
                                what: "tar-split".into(),
                                reason: e.to_string(),
                            })
                        }
                    }
                }
                if !cut {
                    self.line.clear();
                    self.start = 0;
                    continue;
                }
                // The last record goes on on the next line: keep it (and only it).
                self.start += records.byte_offset();
                if self.at_end && self.ready.is_empty() {
                    return Err(Error::Malformed {
                        what: "tar-split".into(),
                        reason: "the stream ends inside a record".into(),
                    });
                }
                if !self.ready.is_empty() {
                    continue;
                }
            }
            // At least one more line; while a record is incomplete, as many more as double its
            // text, so a record spread over many short lines is parsed a few times, not once
            // per line (which would be quadratic).
            let pending = self.line.len() - self.start;
            loop {
                let n = self
                    .input
                    .read_until(b'\n', &mut self.line)
                    .map_err(|e| Error::Io {
                        context: "reading tar-split".into(),
                        source: e,
                    })?;
                let now = self.line.len() - self.start;
                if now > MAX_RECORD_TEXT {
                    return Err(Error::Malformed {
                        what: "tar-split".into(),
                        reason: format!(
                            "a record is longer than {} MiB (tar-split records are lines of at \
                             most a few MiB)",
                            MAX_RECORD_TEXT >> 20
                        ),
                    });
                }
                if n == 0 {
                    self.at_end = true;
                    break;
                }
                if now >= 2 * pending {
                    break;
                }
            }
        }
    }

    fn convert(entry: JsonEntry) -> Result<Record> {
        let decode = |what: &str, s: &str| {
            BASE64.decode(s).map_err(|e| Error::Malformed {
                what: format!("tar-split record {}", entry.position),
                reason: format!("{what} is not base64: {e}"),
            })
        };
        match entry.kind {
            SEGMENT_TYPE => Ok(Record::Segment(match &entry.payload {
                Some(p) => decode("payload", p)?,
                None => Vec::new(),
            })),
            FILE_TYPE => {
                let name = match (&entry.name_raw, &entry.name) {
                    (Some(raw), _) if !raw.is_empty() => decode("name_raw", raw)?,
                    (_, Some(name)) => name.as_bytes().to_vec(),
                    _ => Vec::new(),
                };
                let crc = match &entry.payload {
                    None => None,
                    Some(p) => {
                        let bytes = decode("payload", p)?;
                        Some(<[u8; 8]>::try_from(bytes.as_slice()).map_err(|_| {
                            Error::Malformed {
                                what: format!(
                                    "tar-split record for {:?}",
                                    String::from_utf8_lossy(&name)
                                ),
                                reason: format!("checksum has {} bytes, expected 8", bytes.len()),
                            }
                        })?)
                    }
                };
                Ok(Record::File {
                    name,
                    size: entry.size,
                    crc,
                })
            }
            other => Err(Error::Malformed {
                what: format!("tar-split record {}", entry.position),
                reason: format!("unknown record type {other}"),
            }),
        }
    }
}

impl<R: Read> Iterator for TarSplitReader<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.next_entry() {
            Ok(None) => {
                self.done = true;
                return None;
            }
            Ok(Some(entry)) => Self::convert(entry),
            Err(e) => Err(e),
        };
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

/// What the [`Assembler`] is currently emitting.
enum Current {
    Idle,
    Segment {
        data: Vec<u8>,
        pos: usize,
    },
    File {
        name: Vec<u8>,
        body: Box<dyn Read + Send>,
        size: u64,
        left: u64,
        crc: Crc64Iso,
        expected: [u8; 8],
    },
    Done,
}

/// Rebuilds the original tar from a tar-split stream and the file bodies.
///
/// Pull-based: `io::copy(&mut assembler, out)` replays segments verbatim and, for each file
/// record with content, calls the getter `G(name, size)` to open the body, streams exactly
/// `size` bytes of it and checks the CRC-64/ISO. Errors come out of `read` as `io::Error`s
/// wrapping the engine [`Error`] (get it back with [`Error::from_io`]).
pub struct Assembler<R: Read, G> {
    records: TarSplitReader<R>,
    get: G,
    current: Current,
}

impl<R, G> Assembler<R, G>
where
    R: Read,
    G: FnMut(&[u8], u64) -> Result<Box<dyn Read + Send>>,
{
    /// Replay the `tar-split.gz` stream `tar_split`, opening file bodies with `get`.
    pub fn new(tar_split: R, get: G) -> Self {
        Assembler {
            records: TarSplitReader::new(tar_split),
            get,
            current: Current::Idle,
        }
    }

    fn integrity(name: &[u8], detail: String) -> io::Error {
        Error::Malformed {
            what: "layer reassembled from tar-split".into(),
            reason: format!(
                "file integrity checksum failed for {:?}: {detail}; the stored copy of the \
                 layer was modified or is corrupt (remove the image and pull it again)",
                String::from_utf8_lossy(name)
            ),
        }
        .into_io()
    }

    /// Move to the next record; `Ok(false)` at the end.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            match self.records.next() {
                None => {
                    self.current = Current::Done;
                    return Ok(false);
                }
                Some(Err(e)) => {
                    self.current = Current::Done;
                    return Err(e.into_io());
                }
                Some(Ok(Record::Segment(data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    self.current = Current::Segment { data, pos: 0 };
                    return Ok(true);
                }
                Some(Ok(Record::File { size: 0, .. })) => continue,
                Some(Ok(Record::File { name, size, crc })) => {
                    let Some(expected) = crc else {
                        return Err(Self::integrity(
                            &name,
                            format!("the tar-split records {size} bytes but no checksum"),
                        ));
                    };
                    let body = (self.get)(&name, size).map_err(|e| match e {
                        Error::Io { context, source } => Error::Io {
                            context: format!(
                                "{context} (opening {:?} to rebuild the layer tar)",
                                String::from_utf8_lossy(&name)
                            ),
                            source,
                        },
                        other => other,
                    });
                    let body = body.map_err(Error::into_io)?;
                    self.current = Current::File {
                        name,
                        body,
                        size,
                        left: size,
                        crc: Crc64Iso::new(),
                        expected,
                    };
                    return Ok(true);
                }
            }
        }
    }
}

impl<R, G> Read for Assembler<R, G>
where
    R: Read,
    G: FnMut(&[u8], u64) -> Result<Box<dyn Read + Send>>,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.current {
                Current::Done => return Ok(0),
                Current::Idle => {
                    if !self.advance()? {
                        return Ok(0);
                    }
                }
                Current::Segment { data, pos } => {
                    let n = (data.len() - *pos).min(buf.len());
                    buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                    *pos += n;
                    if *pos == data.len() {
                        self.current = Current::Idle;
                    }
                    return Ok(n);
                }
                Current::File {
                    name,
                    body,
                    size,
                    left,
                    crc,
                    expected,
                } => {
                    if *left == 0 {
                        // The stored file must end exactly here.
                        let mut probe = [0u8; 1];
                        if read_retrying(body, &mut probe)? != 0 {
                            return Err(Self::integrity(
                                name,
                                format!("the file is longer than the {size} bytes recorded"),
                            ));
                        }
                        let sum = std::mem::take(crc).finish_bytes();
                        if sum != *expected {
                            return Err(Self::integrity(
                                name,
                                format!(
                                    "CRC-64 is {}, the tar-split records {}",
                                    hex::encode(sum),
                                    hex::encode(*expected)
                                ),
                            ));
                        }
                        self.current = Current::Idle;
                        continue;
                    }
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = read_retrying(body, &mut buf[..want])?;
                    if n == 0 {
                        return Err(Self::integrity(
                            name,
                            format!(
                                "the file has {} bytes, the tar-split records {size}",
                                *size - *left
                            ),
                        ));
                    }
                    crc.update(&buf[..n]);
                    *left -= n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

fn read_retrying(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// State shared between a [`RecordingReader`] and its [`Recorder`].
struct RecState {
    /// Whether raw (non-content) bytes are kept for a tar-split.
    keep: bool,
    /// Raw bytes not yet written as a segment.
    pending: Vec<u8>,
    /// Content bytes still to come for the current entry.
    content_left: u64,
    /// CRC of the current entry's content so far.
    crc: Crc64Iso,
    /// Bytes handed out in total (read from the stream; zeros made up at its end excluded).
    total: u64,
    /// Zero bytes the reader may still make up when the stream ends between entries (see
    /// [`RecordingReader`]); 0 once the archive's end has been parsed.
    synthetic_left: usize,
}

/// Zeros made up for a stream that ends right after an entry: the rest of a 512-byte block
/// and the two end-of-archive blocks.
const SYNTHETIC_END: usize = 511 + 1024;

/// The reader handed to the `tar` crate: sorts the bytes it hands out into raw segment bytes
/// and file content (see the module docs). It buffers the underlying stream itself; the
/// classification happens on the bytes given to the tar parser, so this is not read-ahead.
///
/// Layers as some tools write them (Debian's `umoci insert`) end right after the last file's
/// data: no padding to 512 bytes, no end-of-archive blocks. containers/storage stores them.
/// When the stream ends outside an entry's content, this reader hands the parser the zeros
/// such a tar lacks (at most [`SYNTHETIC_END`]), without recording them: the tar-split, the
/// byte count and the digest (taken on the real stream by the pipeline) stay those of the
/// bytes that were there, so the layer is rebuilt exactly as it came. A stream that ends
/// inside an entry's content is still an error.
pub(crate) struct RecordingReader<R> {
    inner: BufReader<R>,
    state: Rc<RefCell<RecState>>,
}

impl<R: Read> Read for RecordingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.state.borrow_mut();
        let want = if st.content_left > 0 {
            buf.len()
                .min(usize::try_from(st.content_left).unwrap_or(usize::MAX))
        } else {
            buf.len()
        };
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && st.content_left == 0 && st.synthetic_left > 0 {
            let k = want.min(st.synthetic_left);
            buf[..k].fill(0);
            st.synthetic_left -= k;
            return Ok(k);
        }
        st.total += n as u64;
        if st.content_left > 0 {
            st.crc.update(&buf[..n]);
            st.content_left -= n as u64;
        } else if st.keep {
            st.pending.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// The walker's handle on a [`RecordingReader`].
struct Recorder {
    state: Rc<RefCell<RecState>>,
}

impl Recorder {
    fn new<R: Read>(inner: R, keep: bool) -> (Recorder, RecordingReader<R>) {
        let state = Rc::new(RefCell::new(RecState {
            keep,
            pending: Vec::new(),
            content_left: 0,
            crc: Crc64Iso::new(),
            total: 0,
            synthetic_left: SYNTHETIC_END,
        }));
        (
            Recorder {
                state: state.clone(),
            },
            RecordingReader {
                inner: BufReader::with_capacity(128 * 1024, inner),
                state,
            },
        )
    }

    fn flush<S: SplitSink>(&self, split: &mut Option<&mut S>) -> Result<()> {
        if let Some(w) = split {
            let pending = std::mem::take(&mut self.state.borrow_mut().pending);
            w.segment(&pending)?;
        }
        Ok(())
    }

    fn pending_len(&self) -> usize {
        self.state.borrow().pending.len()
    }

    fn start_content(&self, size: u64) {
        let mut st = self.state.borrow_mut();
        st.content_left = size;
        st.crc = Crc64Iso::new();
    }

    fn content_left(&self) -> u64 {
        self.state.borrow().content_left
    }

    fn take_crc(&self) -> [u8; 8] {
        std::mem::take(&mut self.state.borrow_mut().crc).finish_bytes()
    }

    fn total(&self) -> u64 {
        self.state.borrow().total
    }

    /// The archive's end was parsed: from now on the stream's own end is its end.
    fn end_of_archive(&self) {
        self.state.borrow_mut().synthetic_left = 0;
    }
}

/// Where [`split_entries`] sends what it records: the raw bytes between file contents
/// (headers, extension records, padding, end blocks) and one record per entry. A
/// [`TarSplitWriter`] writes them as tar-split; zstd:chunked
/// ([`crate::compression::zstd_chunked`]) compresses the raw bytes into its header frames.
pub(crate) trait SplitSink {
    /// Raw tar bytes, in stream order (file contents excluded).
    fn segment(&mut self, raw: &[u8]) -> Result<()>;
    /// One entry: its name, content size and the content's CRC-64/ISO (when `size > 0`).
    fn file(&mut self, name: &[u8], size: u64, crc: Option<[u8; 8]>) -> Result<()>;
}

impl<W: Write> SplitSink for TarSplitWriter<W> {
    fn segment(&mut self, raw: &[u8]) -> Result<()> {
        TarSplitWriter::segment(self, raw)
    }
    fn file(&mut self, name: &[u8], size: u64, crc: Option<[u8; 8]>) -> Result<()> {
        TarSplitWriter::file(self, name, size, crc)
    }
}

/// A tar entry as the walker hands it to its callback.
pub(crate) type SplitEntry<'a, R> = tar::Entry<'a, RecordingReader<R>>;

/// How the walker treats an entry's body, decided from its type the way Go's `archive/tar`
/// (which produced the tar-splits containers-storage reads) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// File content: feeds the CRC and the file record's `size`.
    Content,
    /// Go's reader has no body for this type (directories, links, devices, fifos).
    None,
    /// A PAX global header: Go consumes the records as part of the header (raw segment bytes)
    /// and reports size 0.
    GlobalHeader,
}

/// Classify an entry's body; errors for bodies the `tar` crate and Go would read differently.
pub(crate) fn body_kind(
    header: &tar::Header,
    name: &[u8],
    size: u64,
) -> std::result::Result<Body, String> {
    use tar::EntryType as T;
    let t = header.entry_type();
    Ok(match t {
        T::XGlobalHeader => Body::GlobalHeader,
        T::Directory | T::Symlink | T::Link | T::Char | T::Block | T::Fifo => {
            if size > 0 {
                return Err(format!(
                    "{t:?} entry declares {size} bytes of content; tar readers disagree on \
                     such archives, rebuild the layer with a standard tar writer"
                ));
            }
            Body::None
        }
        // A legacy (type '\0') entry named with a trailing slash is a directory.
        T::Regular if is_legacy_dir(header, name) => {
            if size > 0 {
                return Err(format!("directory entry declares {size} bytes of content"));
            }
            Body::None
        }
        T::GNUSparse => {
            return Err(
                "GNU sparse files are not supported; rebuild the layer without \
                        --sparse"
                    .into(),
            )
        }
        _ => Body::Content,
    })
}

/// Whether a legacy (type `'\0'`) entry is a directory: its name ends with a slash.
pub(crate) fn is_legacy_dir(header: &tar::Header, name: &[u8]) -> bool {
    header.as_bytes()[156] == 0 && name.ends_with(b"/")
}

/// Walk a tar stream, optionally recording a tar-split, calling `on_entry` for every entry
/// (extension headers already applied). The callback may read any part of the body; the rest
/// is consumed afterwards. Reads `tar_stream` to EOF. Returns the number of tar bytes read.
pub(crate) fn split_entries<R: Read, S: SplitSink>(
    tar_stream: R,
    layer: &str,
    mut split: Option<&mut S>,
    mut on_entry: impl FnMut(&mut SplitEntry<'_, R>, Body) -> Result<()>,
) -> Result<u64> {
    let read_err =
        |e: io::Error| Error::from_io(format!("layer {layer}: reading the tar stream"), e);
    let (recorder, reader) = Recorder::new(tar_stream, split.is_some());
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let name = entry.path_bytes().into_owned();
        let bad = |reason: String| Error::BadTarEntry {
            layer: layer.to_owned(),
            entry: String::from_utf8_lossy(&name).into_owned(),
            reason,
        };
        let size = entry.size();
        let body = body_kind(entry.header(), &name, size).map_err(bad)?;
        if let Some(pax) = entry.pax_extensions().map_err(read_err)? {
            for ext in pax {
                let ext = ext.map_err(read_err)?;
                if ext.key_bytes().starts_with(b"GNU.sparse.") {
                    return Err(bad(
                        "PAX sparse files are not supported; rebuild the layer \
                                    without sparse files"
                            .into(),
                    ));
                }
            }
        }
        recorder.flush(&mut split)?;
        if body == Body::Content {
            recorder.start_content(size);
        }
        on_entry(&mut entry, body)?;
        // Consume whatever the callback left of the body.
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            if recorder.pending_len() >= MAX_SEGMENT {
                recorder.flush(&mut split)?;
            }
        }
        if recorder.content_left() != 0 {
            return Err(bad("the tar stream ends inside this entry's content".into()));
        }
        if body == Body::GlobalHeader {
            // Go reports the global header's records as header bytes: flush them first.
            recorder.flush(&mut split)?;
        }
        if let Some(w) = split.as_deref_mut() {
            match body {
                Body::Content if size > 0 => w.file(&name, size, Some(recorder.take_crc()))?,
                _ => w.file(&name, 0, None)?,
            }
        }
    }
    // End of archive: record the end blocks, record padding and anything after, to EOF.
    recorder.end_of_archive();
    let mut reader = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if n == 0 {
            break;
        }
        if recorder.pending_len() >= MAX_SEGMENT {
            recorder.flush(&mut split)?;
        }
    }
    recorder.flush(&mut split)?;
    Ok(recorder.total())
}

/// Write the tar-split of `tar_stream` to `out` without extracting anything. Returns the
/// number of tar bytes read (the whole stream, trailing padding included). The caller
/// finishes `out` with [`TarSplitWriter::finish`].
pub fn disassemble<R: Read, W: Write>(tar_stream: R, out: &mut TarSplitWriter<W>) -> Result<u64> {
    split_entries(tar_stream, "(tar stream)", Some(out), |_, _| Ok(()))
}

/// Helpers to build test tars with exact control over headers (shared with `layer_tar` tests).
#[cfg(test)]
pub(crate) mod test_tar {
    use tar::{EntryType, Header};

    /// A tar under construction.
    pub(crate) struct TarBuf {
        pub(crate) builder: tar::Builder<Vec<u8>>,
    }

    /// A ustar header named exactly `name` (≤ 100 bytes), fixed mtime, uid/gid 0.
    pub(crate) fn header(name: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    }

    /// PAX extended-header records, `%d key=value\n` each with its own length.
    pub(crate) fn pax_records(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            out.extend_from_slice(format!("{len} {k}=").as_bytes());
            out.extend_from_slice(v);
            out.push(b'\n');
        }
        out
    }

    impl TarBuf {
        pub(crate) fn new() -> Self {
            TarBuf {
                builder: tar::Builder::new(Vec::new()),
            }
        }

        /// Append an entry with a raw ustar name.
        pub(crate) fn entry(&mut self, name: &[u8], kind: EntryType, data: &[u8], mode: u32) {
            let h = header(name, kind, data.len() as u64, mode);
            self.builder.append(&h, data).unwrap();
        }

        /// Append an entry with a header built by the caller.
        pub(crate) fn raw(&mut self, mut h: Header, data: &[u8]) {
            h.set_cksum();
            self.builder.append(&h, data).unwrap();
        }

        pub(crate) fn file(&mut self, name: &str, data: &[u8]) {
            self.entry(name.as_bytes(), EntryType::Regular, data, 0o644);
        }

        pub(crate) fn dir(&mut self, name: &str) {
            self.entry(name.as_bytes(), EntryType::Directory, b"", 0o755);
        }

        /// A link (symlink or hardlink) named `name` pointing at `target`.
        pub(crate) fn link(&mut self, name: &str, kind: EntryType, target: &str) {
            let mut h = header(name.as_bytes(), kind, 0, 0o777);
            h.set_link_name(target).unwrap();
            self.raw(h, b"");
        }

        /// A PAX 'x' header describing the next entry.
        pub(crate) fn pax(&mut self, records: &[(&str, &[u8])]) {
            let data = pax_records(records);
            let h = header(
                b"PaxHeaders.0/x",
                EntryType::XHeader,
                data.len() as u64,
                0o644,
            );
            self.builder.append(&h, data.as_slice()).unwrap();
        }

        /// The finished tar (two zero blocks), padded to `record` bytes when given.
        pub(crate) fn finish(self, record: Option<usize>) -> Vec<u8> {
            let mut v = self.builder.into_inner().unwrap();
            if let Some(r) = record {
                let padded = v.len().div_ceil(r) * r;
                v.resize(padded, 0);
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tar::{EntryType, Header};

    use super::test_tar::{header, TarBuf};
    use super::*;

    fn b64crc(data: &[u8]) -> String {
        BASE64.encode(crc64_iso(data).to_be_bytes())
    }

    #[test]
    fn hand_written_segment_records_are_serde_json_s() {
        let mut w = TarSplitWriter::new(Vec::new());
        let payloads: [&[u8]; 4] = [b"x", &[0u8; 512], &[0xff; 1000], b"ab\"\\/"];
        for p in payloads {
            w.segment(p).unwrap();
        }
        let out = w.finish().unwrap();
        let mut text = String::new();
        MultiGzDecoder::new(&out[..])
            .read_to_string(&mut text)
            .unwrap();
        let mut lines = text.lines();
        for (i, p) in payloads.iter().enumerate() {
            let expected = serde_json::to_string(&JsonEntry {
                kind: SEGMENT_TYPE,
                name: None,
                name_raw: None,
                size: 0,
                payload: Some(BASE64.encode(p)),
                position: i as u64,
            })
            .unwrap();
            assert_eq!(lines.next().unwrap(), expected);
        }
    }

    #[test]
    fn crc_check_values() {
        assert_eq!(b64crc(b"hello world\n"), "ROnPP1cq2aw=");
        assert_eq!(b64crc(b"b\n"), "YUbwAAAAAAA=");
        assert_eq!(crc64_iso(b"123456789"), 0xb90956c775a41001);
        let mut inc = Crc64Iso::new();
        inc.update(b"hello ");
        inc.update(b"world\n");
        assert_eq!(
            inc.finish_bytes(),
            crc64_iso(b"hello world\n").to_be_bytes()
        );
    }

    #[test]
    fn go_clean_matches_filepath_clean() {
        for (input, want) in [
            ("./a", "a"),
            ("a/", "a"),
            ("a//b/./c/..", "a/b"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("", "."),
            ("./", "."),
            ("/", "/"),
        ] {
            assert_eq!(go_clean(input.as_bytes()), want.as_bytes(), "{input}");
        }
    }

    /// Contents of every regular file in `tar`, read independently with the tar crate.
    fn contents(tar: &[u8]) -> HashMap<Vec<u8>, Vec<u8>> {
        let mut out = HashMap::new();
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let name = entry.path_bytes().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                out.insert(name, data);
            }
        }
        out
    }

    fn split(tar: &[u8]) -> Vec<u8> {
        let mut w = TarSplitWriter::new(Vec::new());
        let n = disassemble(tar, &mut w).unwrap();
        assert_eq!(n, tar.len() as u64, "disassemble reads the whole stream");
        w.finish().unwrap()
    }

    fn reassemble(
        ts: &[u8],
        files: HashMap<Vec<u8>, Vec<u8>>,
    ) -> std::result::Result<Vec<u8>, Error> {
        let mut asm = Assembler::new(ts, move |name: &[u8], _size| match files.get(name) {
            Some(d) => Ok(Box::new(io::Cursor::new(d.clone())) as Box<dyn Read + Send>),
            None => Err(Error::NotFound {
                what: format!(
                    "file {:?} in the layer's diff",
                    String::from_utf8_lossy(name)
                ),
                hint: String::new(),
            }),
        });
        let mut out = Vec::new();
        io::copy(&mut asm, &mut out).map_err(|e| Error::from_io("reassembling", e))?;
        Ok(out)
    }

    fn round_trip(tar: &[u8]) -> Vec<Record> {
        let ts = split(tar);
        let rebuilt = reassemble(&ts, contents(tar)).unwrap();
        assert_eq!(rebuilt.len(), tar.len());
        assert!(rebuilt == tar, "reassembled tar differs from the original");
        let records: Vec<Record> = TarSplitReader::new(ts.as_slice())
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(records.last(), Some(&Record::Segment(Vec::new())));
        records
    }

    fn json_lines(ts: &[u8]) -> Vec<String> {
        let mut s = String::new();
        MultiGzDecoder::new(ts).read_to_string(&mut s).unwrap();
        s.lines().map(str::to_owned).collect()
    }

    #[test]
    fn round_trip_ustar() {
        let mut t = TarBuf::new();
        t.dir("etc/");
        t.file("etc/hosts", b"127.0.0.1 localhost\n");
        t.file("etc/empty", b"");
        t.file("big", &vec![7u8; 70_000]);
        t.link("etc/link", EntryType::Symlink, "hosts");
        t.link("etc/hard", EntryType::Link, "etc/hosts");
        t.entry(b"dev/null", EntryType::Char, b"", 0o666);
        t.entry(b"fifo", EntryType::Fifo, b"", 0o644);
        let tar = t.finish(Some(10240));
        let records = round_trip(&tar);
        let files: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::File { name, size, crc } => Some((name.clone(), *size, *crc)),
                _ => None,
            })
            .collect();
        assert_eq!(files.len(), 8);
        assert_eq!(
            files[1],
            (
                b"etc/hosts".to_vec(),
                20,
                Some(crc64_iso(b"127.0.0.1 localhost\n").to_be_bytes())
            )
        );
        assert_eq!(files[2], (b"etc/empty".to_vec(), 0, None));
        assert_eq!(files[5], (b"etc/hard".to_vec(), 0, None));
    }

    #[test]
    fn round_trip_pax_long_utf8_names_and_xattrs() {
        let long = format!("{}/ünïcødé-file", "d".repeat(150));
        let mut t = TarBuf::new();
        t.pax(&[
            ("path", long.as_bytes()),
            ("SCHILY.xattr.user.note", b"hello\0world"),
            ("mtime", b"1700000000.123456789"),
        ]);
        t.file("truncated-name", b"pax content\n");
        t.file("日本語.txt", b"utf-8 name\n");
        let tar = t.finish(None);
        let records = round_trip(&tar);
        assert!(records.contains(&Record::File {
            name: long.into_bytes(),
            size: 12,
            crc: Some(crc64_iso(b"pax content\n").to_be_bytes()),
        }));
        let lines = json_lines(&split(&tar));
        assert!(
            lines.iter().any(|l| l.contains("\"name\":\"日本語.txt\"")),
            "{lines:?}"
        );
    }

    #[test]
    fn round_trip_gnu_long_names_and_links() {
        let long = format!("{}/file", "g".repeat(120));
        let long_target = format!("{}/target", "t".repeat(120));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_entry_type(EntryType::Regular);
        b.append_data(&mut h, &long, &b"gnu!\n"[..]).unwrap();
        let mut h = Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(EntryType::Symlink);
        b.append_link(&mut h, "sym", &long_target).unwrap();
        let tar = b.into_inner().unwrap();
        assert!(
            tar.windows(13).any(|w| w == b"././@LongLink"),
            "GNU long-name entry written"
        );
        let records = round_trip(&tar);
        assert!(records.contains(&Record::File {
            name: long.into_bytes(),
            size: 5,
            crc: Some(crc64_iso(b"gnu!\n").to_be_bytes()),
        }));
    }

    #[test]
    fn round_trip_non_utf8_names_use_name_raw() {
        let mut t = TarBuf::new();
        t.entry(b"caf\xe9", EntryType::Regular, b"latin-1\n", 0o644);
        let tar = t.finish(None);
        let records = round_trip(&tar);
        assert!(records.contains(&Record::File {
            name: b"caf\xe9".to_vec(),
            size: 8,
            crc: Some(crc64_iso(b"latin-1\n").to_be_bytes()),
        }));
        let lines = json_lines(&split(&tar));
        let expected = format!(
            "{{\"type\":1,\"name_raw\":\"{}\",\"size\":8,\"payload\":\"{}\",\"position\":1}}",
            BASE64.encode(b"caf\xe9"),
            b64crc(b"latin-1\n")
        );
        assert_eq!(lines[1], expected);
    }

    #[test]
    fn round_trip_trailing_garbage_and_no_end_blocks() {
        let mut t = TarBuf::new();
        t.file("a", b"abc");
        let mut tar = t.finish(Some(10240));
        tar.extend_from_slice(b"trailing garbage that is not tar");
        round_trip(&tar);

        // A tar that just stops after its last entry (no end blocks) also round-trips.
        let mut b = tar::Builder::new(Vec::new());
        b.append(&header(b"x", EntryType::Regular, 2, 0o644), &b"xy"[..])
            .unwrap();
        let bare = b.get_ref().clone();
        round_trip(&bare);

        // An empty stream has only the closing segment.
        assert_eq!(round_trip(b""), vec![Record::Segment(Vec::new())]);
    }

    #[test]
    fn pax_global_header_is_raw_bytes_with_size_zero() {
        let mut t = TarBuf::new();
        let data = super::test_tar::pax_records(&[("comment", b"global")]);
        t.raw(
            header(
                b"pax_global_header",
                EntryType::XGlobalHeader,
                data.len() as u64,
                0o644,
            ),
            &data,
        );
        t.file("f", b"ff");
        let tar = t.finish(None);
        let records = round_trip(&tar);
        assert!(records.contains(&Record::File {
            name: b"pax_global_header".to_vec(),
            size: 0,
            crc: None
        }));
    }

    /// Layer 2 of the reference's worked example (§6.1): our writer produces the same records
    /// as tar-split did, line for line, up to the (insignificant) split of the final padding.
    #[test]
    fn matches_reference_worked_example() {
        let mut t = TarBuf::new();
        t.dir("etc/");
        t.file("etc/.wh.gone.txt", b"");
        t.dir("opq/");
        t.file("opq/.wh..wh..opq", b"");
        t.file("opq/b", b"b\n");
        let tar = t.finish(Some(10240));
        assert_eq!(tar.len(), 10240);
        let lines = json_lines(&split(&tar));
        let expected_files = [
            (1, r#"{"type":1,"name":"etc/","payload":null,"position":1}"#),
            (
                3,
                r#"{"type":1,"name":"etc/.wh.gone.txt","payload":null,"position":3}"#,
            ),
            (5, r#"{"type":1,"name":"opq/","payload":null,"position":5}"#),
            (
                7,
                r#"{"type":1,"name":"opq/.wh..wh..opq","payload":null,"position":7}"#,
            ),
            (
                9,
                r#"{"type":1,"name":"opq/b","size":2,"payload":"YUbwAAAAAAA=","position":9}"#,
            ),
        ];
        for (i, line) in expected_files {
            assert_eq!(lines[i], line);
        }
        // Segments: each header is one 512-byte segment at even positions.
        for (i, name) in [
            (0, "etc/"),
            (2, "etc/.wh.gone.txt"),
            (4, "opq/"),
            (6, "opq/.wh..wh..opq"),
            (8, "opq/b"),
        ] {
            let v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
            assert_eq!(v["type"], 2);
            assert_eq!(v["position"], i);
            let raw = BASE64.decode(v["payload"].as_str().unwrap()).unwrap();
            assert_eq!(raw.len(), 512);
            assert!(raw.starts_with(name.as_bytes()));
        }
        // Then the padding + end blocks + record padding (1534 + 6144 bytes in the example),
        // then the closing empty segment.
        let tail: usize = lines[10..lines.len() - 1]
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["type"], 2);
                BASE64.decode(v["payload"].as_str().unwrap()).unwrap().len()
            })
            .sum();
        assert_eq!(tail, 1534 + 6144);
        let last = lines.len() - 1;
        assert_eq!(
            lines[last],
            format!(r#"{{"type":2,"payload":"","position":{last}}}"#)
        );
    }

    #[test]
    fn reads_go_written_records() {
        // As Go writes them: `name_raw`, omitted `size`, null payload, unknown keys absent.
        let text = format!(
            "{}\n{}\n{}\n{}\n",
            r#"{"type":2,"payload":"AAEC","position":0}"#,
            r#"{"type":1,"name":"dir/","payload":null,"position":1}"#,
            format_args!(
                r#"{{"type":1,"name_raw":"{}","size":2,"payload":"YUbwAAAAAAA=","position":2}}"#,
                BASE64.encode(b"\xff\xfe")
            ),
            r#"{"type":2,"payload":"","position":3}"#,
        );
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let ts = gz.finish().unwrap();
        let records: Vec<Record> = TarSplitReader::new(ts.as_slice())
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            records,
            vec![
                Record::Segment(vec![0, 1, 2]),
                Record::File {
                    name: b"dir/".to_vec(),
                    size: 0,
                    crc: None
                },
                Record::File {
                    name: b"\xff\xfe".to_vec(),
                    size: 2,
                    crc: Some(crc64_iso(b"b\n").to_be_bytes())
                },
                Record::Segment(Vec::new()),
            ]
        );
    }

    #[test]
    fn malformed_tar_split_is_an_error() {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"type\":9,\"payload\":null,\"position\":0}\n")
            .unwrap();
        let ts = gz.finish().unwrap();
        let err = TarSplitReader::new(ts.as_slice())
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("unknown record type 9"), "{err}");
        let err = TarSplitReader::new(&b"not gzip"[..])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn records_over_several_lines_or_several_on_a_line_read_as_one_per_line() {
        let gz = |text: &[u8]| {
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(text).unwrap();
            gz.finish().unwrap()
        };
        let records = |ts: &[u8]| -> Result<Vec<Record>> { TarSplitReader::new(ts).collect() };
        let one_per_line = gz(b"{\"type\":2,\"payload\":\"YQ==\",\"position\":0}\n\
            {\"type\":1,\"name\":\"a\",\"size\":1,\"payload\":\"AAAAAAAAAAE=\",\"position\":1}\n\
            {\"type\":2,\"payload\":null,\"position\":2}\n");
        let expected = records(&one_per_line).unwrap();
        assert_eq!(expected.len(), 3);
        let odd = gz(b"\n  {\"type\":2,\n\"payload\":\"YQ==\",\"position\":0} \
            {\"type\":1,\"name\":\"a\",\"size\":1,\n\n\"payload\":\"AAAAAAAAAAE=\",\"position\":1}\
            {\"type\":2,\"payload\":null,\"position\":2}\n\n");
        assert_eq!(records(&odd).unwrap(), expected);
        // One record over 200,000 lines (whitespace between its tokens) reads in a few parses
        // of its text, not one per line.
        let mut long = b"{".to_vec();
        long.extend(std::iter::repeat_n(b'\n', 200_000));
        long.extend_from_slice(b"\"type\":2,\"payload\":null,\"position\":0}\n");
        assert_eq!(records(&gz(&long)).unwrap().len(), 1);
        // Cut inside a record: an error, after the complete records before it.
        let cut = gz(b"{\"type\":2,\"payload\":\"YQ==\",\"position\":0}\n{\"type\":2,\"pay");
        let mut r = TarSplitReader::new(cut.as_slice());
        assert!(r.next().unwrap().is_ok());
        let err = r.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("ends inside a record"), "{err}");
        assert!(r.next().is_none());
    }

    fn example() -> (Vec<u8>, Vec<u8>) {
        let mut t = TarBuf::new();
        t.dir("opq/");
        t.file("opq/b", b"b\n");
        let tar = t.finish(None);
        let ts = split(&tar);
        (tar, ts)
    }

    #[test]
    fn crc_mismatch_names_the_file() {
        let (_, ts) = example();
        let files = HashMap::from([(b"opq/b".to_vec(), b"c\n".to_vec())]);
        let err = reassemble(&ts, files).unwrap_err().to_string();
        assert!(
            err.contains("file integrity checksum failed for \"opq/b\""),
            "{err}"
        );
    }

    #[test]
    fn size_mismatch_and_missing_file_are_errors() {
        let (_, ts) = example();
        let short = HashMap::from([(b"opq/b".to_vec(), b"b".to_vec())]);
        let err = reassemble(&ts, short).unwrap_err().to_string();
        assert!(
            err.contains("\"opq/b\"") && err.contains("has 1 bytes"),
            "{err}"
        );
        let long = HashMap::from([(b"opq/b".to_vec(), b"b\nextra".to_vec())]);
        let err = reassemble(&ts, long).unwrap_err().to_string();
        assert!(err.contains("longer than the 2 bytes"), "{err}");
        let err = reassemble(&ts, HashMap::new()).unwrap_err().to_string();
        assert!(
            err.contains("file \"opq/b\" in the layer's diff: not found"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let mut t = TarBuf::new();
        t.file("a/b", b"1");
        t.file("./a/b", b"2");
        let tar = t.finish(None);
        let mut w = TarSplitWriter::new(Vec::new());
        let err = disassemble(tar.as_slice(), &mut w).unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn duplicate_paths_can_be_allowed_and_replay_bit_for_bit() {
        // What ostree-rs-ext's export writes for a commit with /var/tmp: the directory twice.
        let mut t = TarBuf::new();
        t.entry(b"var/tmp/", EntryType::Directory, b"", 0o1777);
        t.file("usr/a", b"1");
        t.entry(b"var/tmp/", EntryType::Directory, b"", 0o1777);
        let tar = t.finish(None);
        let mut w = TarSplitWriter::new(Vec::new()).allow_duplicate_paths();
        disassemble(tar.as_slice(), &mut w).unwrap();
        let ts = w.finish().unwrap();
        let rebuilt = reassemble(&ts, contents(&tar)).unwrap();
        assert!(rebuilt == tar, "reassembled tar differs from the original");
    }

    #[test]
    fn header_only_entry_with_content_is_rejected() {
        let mut t = TarBuf::new();
        t.entry(b"d/", EntryType::Directory, b"data", 0o755);
        let tar = t.finish(None);
        let mut w = TarSplitWriter::new(Vec::new());
        let err = disassemble(tar.as_slice(), &mut w).unwrap_err();
        assert!(matches!(err, Error::BadTarEntry { .. }), "{err}");
    }
}
