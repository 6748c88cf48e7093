//! Blob downloads as a synchronous `Read` that survives network failures.
//!
//! 1. [`BlobReader::open`] spawns a task on the registry runtime and returns at once; the
//!    task sends the body's chunks through a channel while the consumer decompresses. The
//!    read-ahead is bounded in bytes ([`READ_AHEAD`]), not only in chunks: hyper hands out
//!    chunks of up to ~400 KiB on a fast link, so a bound of N chunks alone would let each
//!    layer in flight hold N × 400 KiB.
//! 2. The task counts the bytes it has passed on. When the connection fails, the server
//!    answers 5xx, a chunk does not arrive within the idle timeout, or the body ends before
//!    the descriptor's size, it waits (exponential backoff) and asks again with
//!    `Range: bytes=N-`. A `206` starting at N continues the stream; a `200` (the server
//!    ignores ranges) is read from the start with the first N bytes skipped. Either way the
//!    consumer sees one continuous stream.
//! 3. Attempts that made real progress do not use up the retry budget, so a long layer over a
//!    flaky link still completes; attempts that made none, or only a little, do: an attempt
//!    counts as progress only when it brought at least [`progress_bytes`] (an eighth of the
//!    blob, at least 64 KiB and at most 32 MiB). A server that always sends part of what is
//!    left and then goes silent (each retry "progressing" by half) thus ends after a handful
//!    of attempts instead of never.
//! 4. Over all its attempts, a blob of `size` bytes has
//!    `2 × idle_timeout + size / min_rate` ([`ClientSettings::min_rate`](super::client::ClientSettings::min_rate),
//!    default 64 KiB/s, `--min-rate`) to arrive; past that the download fails naming the blob
//!    and what was received. A slow but steady link above the minimum rate is never cut.
//! 5. The reader does not verify: the copy pipeline wraps it in a
//!    [`VerifiedReader`](crate::digest::VerifiedReader), so corrupted bytes are an error at
//!    end of stream and nothing is committed.
//!
//! 6. A read waits for the next chunk or for the client's
//!    [`cancel`](super::client::ClientSettings::cancel) token, whichever comes first: a set
//!    token ends the read with [`Error::Cancelled`] even while the connection is stalled.
//!
//! Dropping the reader aborts the task and its connection.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use reqwest::header::CONTENT_RANGE;
use reqwest::StatusCode;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::client::{next_chunk, RegistryClient};
use crate::error::{Error, Result};

/// Bytes of a blob received but not yet read, at most (per blob being read). The task waits
/// for the reader beyond this; the kernel's socket buffer keeps the connection busy meanwhile.
pub const READ_AHEAD: usize = 1 << 20;
/// Chunks buffered between the network task and the reader, at most (small chunks, as TLS
/// records give, still fill [`READ_AHEAD`]).
const CHANNEL_CHUNKS: usize = 64;
/// Restarts allowed in total, even when each made progress (a server that always cuts the
/// body after a few bytes must still end in an error).
const MAX_RESTARTS: u32 = 64;

/// A blob body as a blocking `Read`.
pub struct BlobReader {
    rx: mpsc::Receiver<Result<Chunk>>,
    current: Bytes,
    /// The read-ahead budget `current` holds; given back when it is used up.
    permit: Option<OwnedSemaphorePermit>,
    done: bool,
    task: tokio::task::AbortHandle,
    cancel: crate::cancel::Cancel,
    what: String,
}

/// A piece of the body and its share of the read-ahead budget.
type Chunk = (Bytes, OwnedSemaphorePermit);

/// What to download.
pub(crate) struct BlobRequest {
    pub(crate) url: Url,
    pub(crate) scope: String,
    pub(crate) expected_size: Option<u64>,
    pub(crate) what: String,
}

impl BlobReader {
    /// Start downloading. Errors (including a 404) arrive on the first `read`.
    pub(crate) fn open(client: &RegistryClient, request: BlobRequest) -> BlobReader {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let cancel = client.settings().cancel.clone();
        let what = request.what.clone();
        let client = client.clone();
        let budget = Arc::new(Semaphore::new(READ_AHEAD));
        let handle = super::client::runtime().spawn(async move {
            if let Err(e) = pump(&client, &request, &tx, &budget).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        BlobReader {
            rx,
            current: Bytes::new(),
            permit: None,
            done: false,
            task: handle.abort_handle(),
            cancel,
            what,
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            // The chunk is used up: the task may read that much further.
            self.permit = None;
            if self.done {
                return Ok(0);
            }
            let what = &self.what;
            self.cancel.check(|| what.clone()).map_err(Error::into_io)?;
            let (rx, cancel) = (&mut self.rx, &self.cancel);
            let next = super::client::runtime().block_on(async {
                tokio::select! {
                    c = rx.recv() => Some(c),
                    _ = cancel.cancelled() => None,
                }
            });
            let Some(next) = next else {
                self.task.abort();
                return Err(self.cancel.check(|| what.clone()).unwrap_err().into_io());
            };
            match next {
                Some(Ok((chunk, permit))) => {
                    self.current = chunk;
                    self.permit = Some(permit);
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e.into_io());
                }
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why one attempt ended early.
enum AttemptEnd {
    /// The consumer went away: stop quietly.
    Closed,
    /// Worth another attempt.
    Transient(String),
}

/// The bytes an attempt must bring to count as progress (module doc, step 3).
pub fn progress_bytes(size: Option<u64>) -> u64 {
    const MIN: u64 = 64 << 10;
    const MAX: u64 = 32 << 20;
    size.map_or(MIN, |s| (s / 8).clamp(MIN, MAX))
}

/// Download with retries and resume; returns when everything was sent.
async fn pump(
    client: &RegistryClient,
    req: &BlobRequest,
    tx: &mpsc::Sender<Result<Chunk>>,
    budget: &Arc<Semaphore>,
) -> Result<()> {
    let settings = client.settings().clone();
    let mut sent: u64 = 0;
    let mut failures: u32 = 0;
    let mut restarts: u32 = 0;
    let mut ranges_work = true;
    let progress = progress_bytes(req.expected_size);
    let deadline = match (settings.min_rate, req.expected_size) {
        (0, _) => None,
        (rate, size) => Some(
            tokio::time::Instant::now()
                + settings.idle_timeout * 2
                + std::time::Duration::from_secs_f64(size.unwrap_or(0) as f64 / rate as f64),
        ),
    };
    let too_slow =
        |sent: u64, restarts: u32| Error::Network {
            what: req.what.clone(),
            reason: format!(
            "the download is slower than the minimum rate of {} bytes/s ({sent}{} bytes received \
             after {restarts} attempts); check the network or the registry, or lower --min-rate",
            settings.min_rate,
            req.expected_size.map(|s| format!(" of {s}")).unwrap_or_default()
        ),
        };
    loop {
        let before = sent;
        let run = attempt(client, req, tx, budget, &mut sent, &mut ranges_work);
        let end = match deadline {
            Some(d) => match tokio::time::timeout_at(d, run).await {
                Ok(end) => end?,
                Err(_) => return Err(too_slow(sent, restarts + 1)),
            },
            None => run.await?,
        };
        let reason = match end {
            None => return Ok(()),
            Some(AttemptEnd::Closed) => return Ok(()),
            Some(AttemptEnd::Transient(reason)) => reason,
        };
        restarts += 1;
        if sent - before < progress {
            failures += 1;
        }
        if failures > settings.retry_times || restarts > MAX_RESTARTS {
            return Err(Error::Network {
                what: req.what.clone(),
                reason: format!("{reason} (after {restarts} attempts, {sent} bytes received)",),
            });
        }
        let pause = settings.backoff(failures.max(1));
        if deadline.is_some_and(|d| tokio::time::Instant::now() + pause > d) {
            return Err(too_slow(sent, restarts));
        }
        tokio::time::sleep(pause).await;
    }
}

/// One GET of the blob from `sent` on. `Ok(None)`: complete.
async fn attempt(
    client: &RegistryClient,
    req: &BlobRequest,
    tx: &mpsc::Sender<Result<Chunk>>,
    budget: &Arc<Semaphore>,
    sent: &mut u64,
    ranges_work: &mut bool,
) -> Result<Option<AttemptEnd>> {
    let idle = client.settings().idle_timeout;
    let from = if *ranges_work { *sent } else { 0 };
    if let Some(size) = req.expected_size {
        if *sent >= size && *sent > 0 {
            return Ok(None);
        }
    }
    let mut resp = match client
        .get_stream(req.url.clone(), from, &req.scope, &req.what)
        .await
    {
        Ok(r) => r,
        // Network failures after the client's own retries: the stream level may still
        // retry (its budget counts attempts without progress).
        Err(Error::Network { reason, .. }) => return Ok(Some(AttemptEnd::Transient(reason))),
        Err(e) => return Err(e),
    };
    let status = resp.status();
    // Bytes of this response to drop before passing data on.
    let mut skip: u64 = 0;
    match status {
        StatusCode::PARTIAL_CONTENT if from > 0 => {
            let start = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range_start);
            if start != Some(from) {
                // A range we did not ask for: fall back to whole-body requests.
                *ranges_work = false;
                return Ok(Some(AttemptEnd::Transient(format!(
                    "the server answered a range request with Content-Range {:?}",
                    resp.headers().get(CONTENT_RANGE)
                ))));
            }
        }
        StatusCode::OK => skip = *sent,
        StatusCode::RANGE_NOT_SATISFIABLE => {
            *ranges_work = false;
            return Ok(Some(AttemptEnd::Transient(
                "the server refused a range request".into(),
            )));
        }
        s if super::client::is_transient_status(s) => {
            return Ok(Some(AttemptEnd::Transient(format!("HTTP status {s}"))));
        }
        _ => return Err(client.error_from(resp, &req.what).await),
    }
    loop {
        let chunk = match next_chunk(&mut resp, idle).await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(reason) => return Ok(Some(AttemptEnd::Transient(reason))),
        };
        let mut chunk = chunk;
        if skip > 0 {
            let n = skip.min(chunk.len() as u64) as usize;
            chunk.advance(n);
            skip -= n as u64;
            if chunk.is_empty() {
                continue;
            }
        }
        *sent += chunk.len() as u64;
        // Wait until the reader has used up enough of what it was sent. The budget is never
        // closed, so this only fails if it were; a chunk larger than the whole budget takes
        // all of it.
        let want = chunk.len().min(READ_AHEAD) as u32;
        let Ok(permit) = budget.clone().acquire_many_owned(want).await else {
            return Ok(Some(AttemptEnd::Closed));
        };
        if tx.send(Ok((chunk, permit))).await.is_err() {
            return Ok(Some(AttemptEnd::Closed));
        }
    }
    match req.expected_size {
        Some(size) if *sent < size => Ok(Some(AttemptEnd::Transient(format!(
            "the body ended after {} of {size} bytes",
            *sent
        )))),
        _ => Ok(None),
    }
}

/// The first byte position of `Content-Range: bytes START-END/TOTAL`.
fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::ClientSettings;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// How the test server answers blob request number N (0-based).
    #[derive(Clone, Copy)]
    enum Answer {
        /// The requested range (or all), complete.
        Full,
        /// The requested range, cut after this many bytes.
        Cut(usize),
        /// Headers and this many bytes, then silence (until the client hangs up).
        Stall(usize),
        /// Headers and half of what is asked for, then silence: each retry "progresses".
        StallHalf,
        /// The whole blob with 200, ignoring any Range.
        IgnoreRange,
        /// A 503.
        Unavailable,
    }

    /// A one-blob HTTP server on 127.0.0.1; records the Range header of each blob request.
    fn serve(blob: Vec<u8>, answers: Vec<Answer>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let ranges: Arc<Mutex<Vec<Option<String>>>> = Default::default();
        let seen = ranges.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let blob = blob.clone();
                let answers = answers.clone();
                let seen = seen.clone();
                std::thread::spawn(move || handle(stream, &blob, &answers, &seen));
            }
        });
        (addr, ranges)
    }

    fn handle(
        mut s: TcpStream,
        blob: &[u8],
        answers: &[Answer],
        seen: &Mutex<Vec<Option<String>>>,
    ) {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match std::io::Read::read(&mut s, &mut b) {
                Ok(1) if head.is_empty() && b[0] == 0x16 => return, // TLS: hang up
                Ok(1) => head.push(b[0]),
                _ => return,
            }
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.starts_with("GET /v2/ ") {
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let range = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Range: ")
                    .or_else(|| l.strip_prefix("range: "))
            })
            .map(str::to_string);
        let n = {
            let mut v = seen.lock().unwrap();
            v.push(range.clone());
            v.len() - 1
        };
        let answer = answers.get(n).copied().unwrap_or(Answer::Full);
        let from: usize = match (&range, answer) {
            (_, Answer::IgnoreRange) => 0,
            (Some(r), _) => r
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap(),
            (None, _) => 0,
        };
        let body = &blob[from..];
        let status = match (answer, from) {
            (Answer::Unavailable, _) => {
                let _ = s.write_all(
                    b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                return;
            }
            (_, 0) => "200 OK".to_string(),
            _ => "206 Partial Content".to_string(),
        };
        let mut resp = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        if from > 0 {
            resp.push_str(&format!(
                "Content-Range: bytes {from}-{}/{}\r\n",
                blob.len() - 1,
                blob.len()
            ));
        }
        resp.push_str("\r\n");
        let _ = s.write_all(resp.as_bytes());
        match answer {
            Answer::Cut(k) => {
                let _ = s.write_all(&body[..k.min(body.len())]);
            }
            Answer::Stall(k) => {
                let _ = s.write_all(&body[..k.min(body.len())]);
                let _ = s.flush();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = std::io::Read::read(&mut s, &mut b);
            }
            Answer::StallHalf => {
                let _ = s.write_all(&body[..body.len().div_ceil(2)]);
                let _ = s.flush();
                // Silence until the client gives up and closes (bounded).
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let _ = std::io::Read::read(&mut s, &mut b);
            }
            _ => {
                let _ = s.write_all(body);
            }
        }
    }

    fn fetch(addr: &str, blob_len: usize, retry_times: u32) -> std::io::Result<Vec<u8>> {
        fetch_at_least(addr, blob_len, retry_times, 0)
    }

    /// [`fetch`] with a minimum rate (bytes/s; 0: none).
    fn fetch_at_least(
        addr: &str,
        blob_len: usize,
        retry_times: u32,
        min_rate: u64,
    ) -> std::io::Result<Vec<u8>> {
        let settings = ClientSettings {
            tls_verify: false,
            retry_times,
            retry_delay: Duration::from_millis(5),
            idle_timeout: Duration::from_secs(1),
            min_rate,
            ..Default::default()
        };
        let client = RegistryClient::new(addr, settings).unwrap();
        let url = client.block_on(client.url("r/blobs/sha256:0000")).unwrap();
        let mut r = BlobReader::open(
            &client,
            BlobRequest {
                url,
                scope: "repository:r:pull".into(),
                expected_size: Some(blob_len as u64),
                what: "test blob".into(),
            },
        );
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut out)?;
        Ok(out)
    }

    fn blob() -> Vec<u8> {
        (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn resumes_cut_bodies_with_range() {
        let blob = blob();
        let (addr, ranges) = serve(blob.clone(), vec![Answer::Cut(10_000), Answer::Cut(5_000)]);
        assert_eq!(fetch(&addr, blob.len(), 3).unwrap(), blob);
        assert_eq!(
            *ranges.lock().unwrap(),
            vec![
                None,
                Some("bytes=10000-".into()),
                Some("bytes=15000-".into())
            ]
        );
    }

    #[test]
    fn a_blob_many_times_the_read_ahead_arrives_whole() {
        // The task must get its budget back as the reader consumes chunks, also when the
        // reader's buffer is smaller than the chunks.
        let blob: Vec<u8> = (0..(5 * READ_AHEAD as u32 + 12_345))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let (addr, _) = serve(blob.clone(), vec![Answer::Full]);
        assert_eq!(fetch(&addr, blob.len(), 0).unwrap(), blob);
    }

    #[test]
    fn restarts_and_skips_when_ranges_are_ignored() {
        let blob = blob();
        let (addr, _) = serve(blob.clone(), vec![Answer::Cut(30_000), Answer::IgnoreRange]);
        assert_eq!(fetch(&addr, blob.len(), 3).unwrap(), blob);
    }

    #[test]
    fn stalls_and_server_errors_are_retried() {
        let blob = blob();
        let (addr, ranges) = serve(
            blob.clone(),
            vec![Answer::Unavailable, Answer::Stall(20_000), Answer::Full],
        );
        assert_eq!(fetch(&addr, blob.len(), 3).unwrap(), blob);
        assert_eq!(ranges.lock().unwrap()[2].as_deref(), Some("bytes=20000-"));
    }

    #[test]
    fn a_server_that_never_delivers_is_an_error_not_a_hang() {
        let blob = blob();
        let (addr, ranges) = serve(blob.clone(), vec![Answer::Stall(0); 10]);
        let err = fetch(&addr, blob.len(), 2).unwrap_err();
        let msg = Error::from_io("x", err).to_string();
        assert!(
            msg.contains("stalled") && msg.contains("test blob"),
            "{msg}"
        );
        assert_eq!(
            ranges.lock().unwrap().len(),
            3,
            "first attempt and two retries"
        );
    }

    #[test]
    fn a_server_that_sends_half_of_what_is_left_and_stalls_ends_in_an_error() {
        // Before: every retry brought half of the rest, counted as progress, and waited an
        // idle timeout: the pull never ended. Now such attempts count against the budget.
        let blob = blob();
        let (addr, ranges) = serve(blob.clone(), vec![Answer::StallHalf; 100]);
        let err = fetch(&addr, blob.len(), 3).unwrap_err();
        let msg = Error::from_io("x", err).to_string();
        assert!(
            msg.contains("test blob") && msg.contains("bytes received"),
            "{msg}"
        );
        // The bound: the first attempt and three retries, each at most one idle timeout.
        assert_eq!(
            ranges.lock().unwrap().len(),
            4,
            "first attempt and three retries"
        );
    }

    #[test]
    fn a_download_slower_than_the_minimum_rate_fails_naming_the_blob() {
        // Retries allowed without end, but the blob must average 50 kB/s: 100 kB has
        // 2 × 1 s + 2 s.
        let blob = blob();
        let (addr, _) = serve(blob.clone(), vec![Answer::StallHalf; 100]);
        let err = fetch_at_least(&addr, blob.len(), 1000, 50_000).unwrap_err();
        let msg = Error::from_io("x", err).to_string();
        assert!(
            msg.contains("minimum rate of 50000 bytes/s") && msg.contains("test blob"),
            "{msg}"
        );
        // A steady link faster than the minimum completes.
        let (addr, _) = serve(blob.clone(), vec![Answer::Full]);
        assert_eq!(fetch_at_least(&addr, blob.len(), 3, 50_000).unwrap(), blob);
    }

    #[test]
    fn progress_needs_a_meaningful_share() {
        assert_eq!(progress_bytes(None), 64 << 10);
        assert_eq!(progress_bytes(Some(100_000)), 64 << 10);
        assert_eq!(progress_bytes(Some(80 << 20)), 10 << 20);
        assert_eq!(progress_bytes(Some(10 << 30)), 32 << 20);
    }

    #[test]
    fn content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes */200"), None);
    }
}
