//! Reading a stream on a thread of its own, so that producing the bytes and consuming them
//! use two cores (shared ground; the copy pipeline decodes layers with it).
//!
//! One layer used to be one thread: read the blob, hash it, inflate it, hash the tar, then
//! parse the tar and write its files, all in turn. [`read_ahead`] splits that in two:
//!
//! 1. `produce` runs on a new scoped thread with a [`Feed`]. It opens its stream (for a layer:
//!    the verified blob, the decoder and the diffID check) and hands it to
//!    [`Feed::send_all`], which reads it in [`CHUNK`]-byte buffers and sends each through a
//!    channel bounded to [`QUEUE`] buffers: memory stays at `(QUEUE + 2) × CHUNK` per stream
//!    (1 MiB) whatever the stream's size, and a producer ahead of its consumer waits.
//! 2. `consume` runs on the calling thread with a reader over those buffers. Consumed buffers
//!    go back to the producer to be filled again, so the steady state allocates nothing.
//! 3. A read error of the producer's stream (a digest mismatch, a corrupt blob) is handed to
//!    the consumer as the error of its next read — the same `io::Error`, so the engine error
//!    inside it is kept — exactly where a reader on the same thread would have failed.
//! 4. When `consume` returns, the rest of the stream is read and dropped (so its end is
//!    reached and checked), the channel is closed, which stops a producer still sending, and
//!    the producer is joined. A failure of `produce` before it sent anything (opening the
//!    decoder) takes precedence over the consumer's error, which is only a symptom of it.
//!
//! No `unsafe`, no shared buffers: the threads only exchange owned `Vec`s.

use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

use crate::error::{Error, Result};

/// Bytes per buffer handed from the producer to the consumer.
pub const CHUNK: usize = 256 * 1024;

/// Filled buffers that may wait in the channel (besides the one each side holds).
pub const QUEUE: usize = 2;

/// The producer's end: sends a stream's bytes to the consumer.
pub struct Feed {
    tx: SyncSender<io::Result<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
    /// A read error was handed to the consumer.
    delivered: bool,
    /// The consumer went away before the end (its own result decides).
    gone: bool,
}

impl Feed {
    /// Read `r` to its end and send its bytes to the consumer. Fails when `r` fails (the
    /// consumer then gets that error from its next read) or when the consumer is gone (it
    /// returned; its own result decides). `what` names the stream in the error returned here.
    pub fn send_all(&mut self, r: &mut dyn Read, what: &str) -> Result<()> {
        loop {
            let mut buf = self.back.try_recv().unwrap_or_default();
            buf.resize(CHUNK, 0);
            let mut filled = 0;
            let mut eof = false;
            while filled < CHUNK {
                match r.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let message = e.to_string();
                        if self.tx.send(Err(e)).is_ok() {
                            self.delivered = true;
                        } else {
                            self.gone = true;
                        }
                        return Err(Error::Io {
                            context: format!("reading {what}"),
                            source: io::Error::other(message),
                        });
                    }
                }
            }
            if filled > 0 {
                buf.truncate(filled);
                if self.tx.send(Ok(buf)).is_err() {
                    self.gone = true;
                    return Err(consumer_gone(what));
                }
            }
            if eof {
                return Ok(());
            }
        }
    }
}

fn consumer_gone(what: &str) -> Error {
    Error::Io {
        context: format!("reading {what}"),
        source: io::Error::other("the consumer stopped before the end of the stream"),
    }
}

/// The consumer's end: a reader over the buffers the producer sends.
struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    back: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    /// End of stream or error seen: no more buffers come.
    done: bool,
    failed: bool,
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.current.len() {
            if self.failed {
                return Err(io::Error::other(
                    "the stream failed (see the earlier error)",
                ));
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(buf)) => {
                    let used = std::mem::replace(&mut self.current, buf);
                    self.pos = 0;
                    if used.capacity() > 0 {
                        // The producer may be gone already; then the buffer is dropped here.
                        let _ = self.back.send(used);
                    }
                }
                Ok(Err(e)) => {
                    self.done = true;
                    self.failed = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Run `produce` on a new thread and `consume` on this one, connected as the module docs say;
/// returns what each returned, after both have finished. `what` names the stream in errors.
///
/// The result is `consume`'s value when both succeed. When `produce` failed without handing
/// its error to the consumer (before its stream started, or after `consume` had stopped
/// reading), its error is returned; otherwise `consume`'s error is.
pub fn read_ahead<U: Send, T>(
    what: &str,
    produce: impl FnOnce(&mut Feed) -> Result<U> + Send,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<(T, U)> {
    let (tx, rx) = sync_channel(QUEUE);
    let (back_tx, back_rx) = channel();
    std::thread::scope(|scope| {
        let producer = std::thread::Builder::new()
            .name("stowage-read-ahead".into())
            .spawn_scoped(scope, move || {
                let mut feed = Feed {
                    tx,
                    back: back_rx,
                    delivered: false,
                    gone: false,
                };
                let r = produce(&mut feed);
                (r, feed.delivered || feed.gone)
            })
            .map_err(|e| Error::from_io(format!("starting a thread to read {what}"), e))?;
        let mut chunks = Chunks {
            rx,
            back: back_tx,
            current: Vec::new(),
            pos: 0,
            done: false,
            failed: false,
        };
        let consumed = consume(&mut chunks).and_then(|v| {
            io::copy(&mut chunks, &mut io::sink())
                .map_err(|e| Error::from_io(format!("reading {what}"), e))?;
            Ok(v)
        });
        // Closing the channel stops a producer that is still sending.
        drop(chunks);
        let (produced, consumer_decides) = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (consumed, produced) {
            (Ok(v), Ok(u)) => Ok((v, u)),
            (Err(e), Err(_)) if consumer_decides => Err(e),
            (_, Err(p)) => Err(p),
            (Err(e), Ok(_)) => Err(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn the_consumer_reads_every_byte_in_order() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 17] {
            let input = data(len);
            let (out, sent) = read_ahead(
                "test stream",
                |feed| {
                    feed.send_all(&mut &input[..], "test stream")?;
                    Ok(input.len())
                },
                |r| {
                    let mut v = Vec::new();
                    r.read_to_end(&mut v).unwrap();
                    Ok(v)
                },
            )
            .unwrap();
            assert_eq!(sent, len);
            assert!(out == input, "{len} bytes came out changed");
        }
    }

    /// A reader that fails with `Error::Malformed` after `ok` bytes.
    struct Failing {
        ok: usize,
    }

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(Error::Malformed {
                    what: "the test blob".into(),
                    reason: "corrupt on purpose".into(),
                }
                .into_io());
            }
            let n = buf.len().min(self.ok);
            buf[..n].fill(1);
            self.ok -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_reaches_the_consumer_as_the_same_engine_error() {
        let err = read_ahead(
            "test stream",
            |feed| feed.send_all(&mut Failing { ok: 3 * CHUNK + 5 }, "test stream"),
            |r| {
                let mut v = Vec::new();
                r.read_to_end(&mut v)
                    .map_err(|e| Error::from_io("consuming", e))?;
                Ok(v)
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason == "corrupt on purpose"),
            "{err:?}"
        );
    }

    #[test]
    fn a_setup_error_of_the_producer_wins_over_the_consumers_symptom() {
        let err = read_ahead(
            "test stream",
            |_feed| -> Result<()> {
                Err(Error::Malformed {
                    what: "the decoder".into(),
                    reason: "no magic".into(),
                })
            },
            |r| {
                let mut v = Vec::new();
                r.read_to_end(&mut v).unwrap();
                assert!(v.is_empty());
                Err::<(), _>(Error::Malformed {
                    what: "the tar".into(),
                    reason: "empty".into(),
                })
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason == "no magic"),
            "{err:?}"
        );
    }

    #[test]
    fn a_consumer_that_stops_early_still_gets_the_stream_read_to_its_end() {
        let input = data(4 * CHUNK);
        let (first, sent) = read_ahead(
            "test stream",
            |feed| {
                feed.send_all(&mut &input[..], "test stream")?;
                Ok(true)
            },
            |r| {
                let mut b = [0u8; 10];
                r.read_exact(&mut b).unwrap();
                Ok(b)
            },
        )
        .unwrap();
        assert!(sent, "the producer reached the end");
        assert_eq!(&first[..], &input[..10]);
    }

    #[test]
    fn a_consumer_error_stops_the_producer() {
        let err = read_ahead(
            "test stream",
            |feed| feed.send_all(&mut io::repeat(0), "endless"),
            |r| {
                let mut b = [0u8; 10];
                r.read_exact(&mut b).unwrap();
                Err::<(), _>(Error::Malformed {
                    what: "the tar".into(),
                    reason: "bad header".into(),
                })
            },
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { reason, .. } if reason == "bad header"),
            "{err:?}"
        );
    }
}
