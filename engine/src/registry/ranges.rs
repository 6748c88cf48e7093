//! Ranged blob reads: what a partial pull of a zstd:chunked layer fetches
//! ([`crate::compression::zstd_chunked::BlobRanges`]).
//!
//! 1. The wanted ranges (ascending, disjoint) are cut into batches of at most
//!    [`MAX_RANGES`] ranges and [`BATCH_BYTES`] bytes; a range larger than that is a batch
//!    of its own, streamed when the reader reaches it. The batches grow geometrically
//!    ([`FIRST_BATCH`] ranges, then twice as many each time): the reader (the layer's tar,
//!    hashed and extracted in order) waits only for the first small batch, not for the
//!    registry to serve a whole 64-range answer (docker-registry takes ~1 ms per range),
//!    and the local work then overlaps the fetch of the rest.
//! 2. The first batch is fetched alone, before the stream is handed out. The other batches
//!    are fetched whole by tasks on the registry runtime, [`PREFETCH`] ahead of the reader (docker-registry serves a multi-range answer range by range, with a
//!    seek each: several requests at once hide that), and handed out in order.
//! 3. A batch of several ranges is one `GET` with `Range: bytes=A-B,C-D,…`; docker-registry
//!    (Go's `http.ServeContent`) answers `206 multipart/byteranges` with the parts in the
//!    order asked, each checked against its `Content-Range`. A server that answers it
//!    otherwise is asked one range per request. A single range must come back `206` with its
//!    `Content-Range`; a `200` (ranges ignored) is an error, and the first batch is fetched
//!    before the layer is begun, so such a registry fails the partial pull up front.
//! 4. Every body byte received and every request is counted; the source reports the totals
//!    (`ImageSource::notes`).
//!
//! Hand-written multipart parsing: the answer is a short, fixed shape (RFC 9110 §14.6), and
//! the HTTP client has no multipart reader.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::client::{next_chunk, RegistryClient};
use crate::compression::zstd_chunked::BlobRanges;
use crate::compression::BoxRead;
use crate::error::{Error, Result};

/// Ranges asked for in one request, at most.
pub const MAX_RANGES: usize = 64;
/// Bytes of ranges asked for in one multi-range request, at most (its body is held whole).
pub const BATCH_BYTES: u64 = 4 << 20;

/// Body bytes and requests of a source's ranged reads.
#[derive(Debug, Default)]
pub struct RangeCounters {
    /// Body bytes received.
    pub bytes: AtomicU64,
    /// Requests made.
    pub requests: AtomicU64,
}

/// Ranged reads of one blob of a registry.
pub struct RangeReader {
    pub(super) client: RegistryClient,
    pub(super) url: Url,
    pub(super) scope: String,
    pub(super) what: String,
    pub(super) counters: Arc<RangeCounters>,
}

impl BlobRanges for RangeReader {
    fn read_ranges(&self, ranges: Vec<(u64, u64)>) -> Result<BoxRead<'static>> {
        let batches = batches(ranges);
        let mut stream = RangesStream {
            reader: Arc::new(self.clone_reader()),
            batches,
            inflight: VecDeque::new(),
            current: Body::Empty,
        };
        // The first batch now, alone (the registry's CPU serves it before any other): a
        // server that refuses ranges fails here, before the layer is begun; the others are
        // fetched while the reader works through it.
        stream.first_batch()?;
        Ok(Box::new(stream))
    }

    fn fetched(&self) -> (u64, u64) {
        (
            self.counters.bytes.load(Ordering::Relaxed),
            self.counters.requests.load(Ordering::Relaxed),
        )
    }
}

/// Ranges in the first batch; each later batch may hold twice as many as the one before (up
/// to [`MAX_RANGES`]).
pub const FIRST_BATCH: usize = 2;

/// `ranges` cut into batches (module doc, step 1).
fn batches(ranges: Vec<(u64, u64)>) -> VecDeque<Vec<(u64, u64)>> {
    let mut batches: VecDeque<Vec<(u64, u64)>> = VecDeque::new();
    let (mut bytes, mut limit) = (0u64, FIRST_BATCH);
    for r in ranges.into_iter().filter(|(a, b)| b > a) {
        let len = r.1 - r.0;
        match batches.back_mut() {
            Some(b) if b.len() < limit && bytes + len <= BATCH_BYTES => {
                b.push(r);
                bytes += len;
            }
            last => {
                if last.is_some() {
                    limit = (limit * 2).min(MAX_RANGES);
                }
                batches.push_back(vec![r]);
                bytes = len;
            }
        }
    }
    batches
}

/// Batches fetched ahead of the reader, at most (each at most [`BATCH_BYTES`] in memory):
/// the registry answers a multi-range request range by range, so several requests at once
/// hide its per-range cost.
pub const PREFETCH: usize = 4;

enum Body {
    Empty,
    /// A streamed single-range body (a range over [`BATCH_BYTES`]): the current chunk and
    /// how much is left after it.
    Stream {
        resp: Response,
        chunk: Bytes,
        left: u64,
    },
    /// A batch fetched whole: its ranges' bytes, concatenated.
    Buffer(io::Cursor<Vec<u8>>),
}

type Fetch = tokio::task::JoinHandle<Result<Vec<u8>>>;

struct RangesStream {
    reader: Arc<RangeReader>,
    batches: VecDeque<Vec<(u64, u64)>>,
    /// Batches being fetched, in order.
    inflight: VecDeque<Fetch>,
    current: Body,
}

impl Drop for RangesStream {
    fn drop(&mut self) {
        for f in &self.inflight {
            f.abort();
        }
    }
}

fn range_header(ranges: &[(u64, u64)]) -> HeaderValue {
    let list: Vec<String> = ranges
        .iter()
        .map(|(a, b)| format!("{a}-{}", b - 1))
        .collect();
    HeaderValue::from_str(&format!("bytes={}", list.join(","))).expect("ascii")
}

fn err(what: &str, reason: impl Into<String>) -> Error {
    Error::Network {
        what: what.to_string(),
        reason: reason.into(),
    }
}

impl RangeReader {
    fn clone_reader(&self) -> RangeReader {
        RangeReader {
            client: self.client.clone(),
            url: self.url.clone(),
            scope: self.scope.clone(),
            what: self.what.clone(),
            counters: self.counters.clone(),
        }
    }

    async fn get(&self, ranges: &[(u64, u64)]) -> Result<Response> {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, range_header(ranges));
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        self.client
            .send_retrying(
                Method::GET,
                self.url.clone(),
                headers,
                None,
                &self.scope,
                &self.what,
                0,
            )
            .await
    }

    async fn chunk(&self, resp: &mut Response) -> Result<Option<Bytes>> {
        let idle = self.client.settings().idle_timeout;
        let c = next_chunk(resp, idle)
            .await
            .map_err(|r| err(&self.what, r))?;
        if let Some(c) = &c {
            self.counters
                .bytes
                .fetch_add(c.len() as u64, Ordering::Relaxed);
        }
        Ok(c)
    }

    /// One range, checked: the response positioned at its body.
    async fn single(&self, (a, b): (u64, u64)) -> Result<Response> {
        let resp = self.get(&[(a, b)]).await?;
        let status = resp.status();
        if status != StatusCode::PARTIAL_CONTENT {
            if status == StatusCode::OK || status == StatusCode::RANGE_NOT_SATISFIABLE {
                return Err(err(
                    &self.what,
                    format!(
                        "the registry answered a range request with {status}: it does not serve ranges"
                    ),
                ));
            }
            return Err(self.client.error_from(resp, &self.what).await);
        }
        let got = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(content_range);
        if got != Some((a, b - 1)) {
            return Err(err(
                &self.what,
                format!(
                    "asked for bytes {a}-{}, the registry sent Content-Range {:?}",
                    b - 1,
                    resp.headers().get(CONTENT_RANGE)
                ),
            ));
        }
        Ok(resp)
    }

    /// The bytes of a batch (at most [`BATCH_BYTES`] and the part headers), with one
    /// multi-range request, or one request per range when the server answers it otherwise.
    async fn batch(self: Arc<Self>, batch: Vec<(u64, u64)>) -> Result<Vec<u8>> {
        let wanted: u64 = batch.iter().map(|(a, b)| b - a).sum();
        let mut out = Vec::with_capacity(wanted as usize);
        if batch.len() > 1 {
            let mut resp = self.get(&batch).await?;
            let boundary = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|ct| {
                    ct.strip_prefix("multipart/byteranges")?
                        .split(';')
                        .find_map(|p| p.trim().strip_prefix("boundary="))
                        .map(|b| b.trim_matches('"').to_string())
                });
            if let (StatusCode::PARTIAL_CONTENT, Some(boundary)) = (resp.status(), boundary) {
                let cap = wanted + 512 * batch.len() as u64;
                let mut body = Vec::new();
                while let Some(c) = self.chunk(&mut resp).await? {
                    if body.len() as u64 + c.len() as u64 > cap {
                        return Err(err(
                            &self.what,
                            "the multi-range answer is larger than asked for",
                        ));
                    }
                    body.extend_from_slice(&c);
                }
                return parse_multipart(&body, &boundary, &batch).ok_or_else(|| {
                    err(
                        &self.what,
                        "the multi-range answer does not hold the ranges asked for",
                    )
                });
            }
            // No multi-range answer: one range per request.
        }
        for r in batch {
            let mut resp = self.single(r).await?;
            let start = out.len();
            while let Some(c) = self.chunk(&mut resp).await? {
                out.extend_from_slice(&c);
            }
            if (out.len() - start) as u64 != r.1 - r.0 {
                return Err(err(
                    &self.what,
                    format!(
                        "bytes {}-{}: {} bytes received",
                        r.0,
                        r.1 - 1,
                        out.len() - start
                    ),
                ));
            }
        }
        Ok(out)
    }
}

/// `bytes START-END/…` → (START, END).
fn content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, _) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The parts of a `multipart/byteranges` body, checked against `ranges` (in order) and
/// concatenated.
fn parse_multipart(body: &[u8], boundary: &str, ranges: &[(u64, u64)]) -> Option<Vec<u8>> {
    let delim = format!("--{boundary}");
    let mut out = Vec::with_capacity(ranges.iter().map(|(a, b)| (b - a) as usize).sum());
    let mut at = 0usize;
    for &(a, b) in ranges {
        let start = at + find(&body[at..], delim.as_bytes())? + delim.len();
        let headers_end = start + find(&body[start..], b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&body[start..headers_end]).ok()?;
        let got = headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-range")
                .then(|| content_range(v))
                .flatten()
        })?;
        if got != (a, b - 1) {
            return None;
        }
        let data = headers_end + 4;
        let end = data.checked_add((b - a) as usize)?;
        out.extend_from_slice(body.get(data..end)?);
        at = end;
    }
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl RangesStream {
    /// Keep up to [`PREFETCH`] batches that fit in memory fetching ahead.
    fn prefetch(&mut self) {
        while self.inflight.len() < PREFETCH {
            match self.batches.front() {
                Some(b) if b.len() > 1 || b[0].1 - b[0].0 <= BATCH_BYTES => {
                    let batch = self.batches.pop_front().expect("front exists");
                    let reader = self.reader.clone();
                    self.inflight
                        .push_back(super::client::runtime().spawn(reader.batch(batch)));
                }
                _ => break,
            }
        }
    }

    /// Fetch the first batch before asking for any other, then start prefetching.
    fn first_batch(&mut self) -> Result<()> {
        match self.batches.front() {
            Some(b) if b.len() > 1 || b[0].1 - b[0].0 <= BATCH_BYTES => {
                let batch = self.batches.pop_front().expect("front exists");
                let r = self.reader.clone();
                let data = r.client.block_on(r.clone().batch(batch))?;
                self.current = Body::Buffer(io::Cursor::new(data));
                self.prefetch();
                Ok(())
            }
            _ => self.next_batch().map(|_| ()),
        }
    }

    /// Start the next batch; `false` when there is none.
    fn next_batch(&mut self) -> Result<bool> {
        self.prefetch();
        let r = self.reader.clone();
        if let Some(f) = self.inflight.pop_front() {
            let data = r
                .client
                .block_on(f)
                .map_err(|e| err(&r.what, format!("the range fetch stopped: {e}")))??;
            self.prefetch();
            self.current = Body::Buffer(io::Cursor::new(data));
            return Ok(true);
        }
        let Some(batch) = self.batches.pop_front() else {
            self.current = Body::Empty;
            return Ok(false);
        };
        // One range too large to hold: streamed.
        let (a, b) = batch[0];
        let resp = r.client.block_on(r.single((a, b)))?;
        self.current = Body::Stream {
            resp,
            chunk: Bytes::new(),
            left: b - a,
        };
        self.prefetch();
        Ok(true)
    }
}

impl Read for RangesStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.current {
                Body::Empty => {}
                Body::Buffer(c) => {
                    let n = c.read(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                }
                Body::Stream { resp, chunk, left } => {
                    if chunk.is_empty() && *left > 0 {
                        let r = self.reader.clone();
                        match r.client.block_on(r.chunk(resp)).map_err(io::Error::other)? {
                            Some(c) => *chunk = c,
                            None => {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    format!("{}: a range body ended {left} bytes early", r.what),
                                ))
                            }
                        }
                    }
                    if !chunk.is_empty() {
                        let n = buf.len().min(chunk.len()).min(*left as usize);
                        buf[..n].copy_from_slice(&chunk[..n]);
                        *chunk = chunk.slice(n..);
                        *left -= n as u64;
                        if n > 0 {
                            return Ok(n);
                        }
                    }
                }
            }
            if !self.next_batch().map_err(io::Error::other)? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_from_a_small_first_one() {
        let ranges: Vec<(u64, u64)> = (0..200u64).map(|i| (i * 10, i * 10 + 5)).collect();
        let sizes: Vec<usize> = batches(ranges.clone()).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 4, 8, 16, 32, 64, 64, 10]);
        let flat: Vec<(u64, u64)> = batches(ranges.clone()).into_iter().flatten().collect();
        assert_eq!(flat, ranges, "every range once, in order");
        // A range over BATCH_BYTES is a batch of its own; empty ranges are dropped.
        let big = vec![
            (0, 1),
            (5, 5),
            (10, 10 + BATCH_BYTES + 1),
            (BATCH_BYTES * 2, BATCH_BYTES * 2 + 1),
        ];
        let sizes: Vec<usize> = batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }

    #[test]
    fn multipart_parts_in_order() {
        let body = b"\r\n--XB\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 2-4/100\r\n\r\nabc\r\n--XB\r\nContent-Range: bytes 10-10/100\r\n\r\nz\r\n--XB--\r\n";
        assert_eq!(
            parse_multipart(body, "XB", &[(2, 5), (10, 11)]).as_deref(),
            Some(&b"abcz"[..])
        );
        assert_eq!(parse_multipart(body, "XB", &[(2, 5), (11, 12)]), None);
        assert_eq!(content_range("bytes 0-9/10"), Some((0, 9)));
    }
}
