//! Blob downloads as a synchronous `Read` that survives network failures.
//!
//! 1. [`BlobReader::open`] spawns a task on the registry runtime and returns at once; the
//!    task sends the body's chunks through a bounded channel (a few chunks of read-ahead, so
//!    memory stays small and the network works while the consumer decompresses).
//! 2. The task counts the bytes it has passed on. When the connection fails, the server
//!    answers 5xx, a chunk does not arrive within the idle timeout, or the body ends before
//!    the descriptor's size, it waits (exponential backoff) and asks again with
//!    `Range: bytes=N-`. A `206` starting at N continues the stream; a `200` (the server
//!    ignores ranges) is read from the start with the first N bytes skipped. Either way the
//!    consumer sees one continuous stream.
//! 3. Attempts that made progress do not use up the retry budget, so a long layer over a
//!    flaky link still completes; attempts that made none do, so a dead server ends in an
//!    error within `(retries + 1)` idle timeouts plus backoff, never a hang.
//! 4. The reader does not verify: the copy pipeline wraps it in a
//!    [`VerifiedReader`](crate::digest::VerifiedReader), so corrupted bytes are an error at
//!    end of stream and nothing is committed.
//!
//! Dropping the reader aborts the task and its connection.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use reqwest::header::CONTENT_RANGE;
use reqwest::StatusCode;
use tokio::sync::mpsc;
use url::Url;

use super::client::{next_chunk, RegistryClient};
use crate::error::{Error, Result};

/// Chunks buffered between the network task and the reader.
const CHANNEL_CHUNKS: usize = 16;
/// Restarts allowed in total, even when each made progress (a server that always cuts the
/// body after a few bytes must still end in an error).
const MAX_RESTARTS: u32 = 64;

/// A blob body as a blocking `Read`.
pub struct BlobReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
    done: bool,
    task: tokio::task::AbortHandle,
}

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
        let client = client.clone();
        let handle = super::client::runtime().spawn(async move {
            if let Err(e) = pump(&client, &request, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        BlobReader {
            rx,
            current: Bytes::new(),
            done: false,
            task: handle.abort_handle(),
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
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

/// Download with retries and resume; returns when everything was sent.
async fn pump(
    client: &RegistryClient,
    req: &BlobRequest,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<()> {
    let settings = client.settings().clone();
    let mut sent: u64 = 0;
    let mut failures: u32 = 0;
    let mut restarts: u32 = 0;
    let mut ranges_work = true;
    loop {
        let before = sent;
        let end = attempt(client, req, tx, &mut sent, &mut ranges_work).await?;
        let reason = match end {
            None => return Ok(()),
            Some(AttemptEnd::Closed) => return Ok(()),
            Some(AttemptEnd::Transient(reason)) => reason,
        };
        restarts += 1;
        if sent == before {
            failures += 1;
        }
        if failures > settings.retry_times || restarts > MAX_RESTARTS {
            return Err(Error::Network {
                what: req.what.clone(),
                reason: format!("{reason} (after {restarts} attempts, {sent} bytes received)",),
            });
        }
        tokio::time::sleep(settings.backoff(failures.max(1))).await;
    }
}

/// One GET of the blob from `sent` on. `Ok(None)`: complete.
async fn attempt(
    client: &RegistryClient,
    req: &BlobRequest,
    tx: &mpsc::Sender<Result<Bytes>>,
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
        if tx.send(Ok(chunk)).await.is_err() {
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

    #[test]
    fn content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_start("bytes */200"), None);
    }
}
