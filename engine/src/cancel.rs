//! Cancelling a copy: a token a caller sets and the pipeline, the stores and the registry
//! client check.
//!
//! 1. The caller makes a [`Cancel`] token, puts a clone in
//!    [`CopyOptions::cancel`](crate::copy::CopyOptions::cancel) (the `stowage` CLI sets it from
//!    its SIGINT/SIGTERM handler; a library user may set it from anywhere) and calls
//!    [`Cancel::cancel`] when the work should stop.
//! 2. The pipeline checks the token before each layer and wraps every layer stream in a
//!    [`CancelReader`], which fails its next `read` once the token is set, so a layer being
//!    written stops at the next chunk (a tar being extracted stops at its next entry or block).
//!    The registry's blob downloads wait for either the next chunk or the token, so a stalled
//!    connection does not delay the stop either.
//! 3. The stopped read is an error like any other: each writer's drop handlers remove what it
//!    had not committed (OCI temporary blobs, the incomplete containers-storage layer, the
//!    ostree staging directory), and [`copy_image`](crate::copy::copy_image) then returns
//!    [`Error::Cancelled`] — with the layers the destination keeps — instead of the error the
//!    stopped read caused.

use std::io::{self, Read};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// Why a [`Cancel`] token was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// [`Cancel::cancel`] was called.
    Requested,
    /// The process received this signal (SIGINT = 2, SIGTERM = 15).
    Signal(i32),
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelReason::Requested => f.write_str("cancelled"),
            CancelReason::Signal(2) => f.write_str("interrupted (SIGINT)"),
            CancelReason::Signal(15) => f.write_str("interrupted (SIGTERM)"),
            CancelReason::Signal(n) => write!(f, "interrupted (signal {n})"),
        }
    }
}

/// A shared cancellation flag; clones share it. Setting it is cheap and may happen from any
/// thread (a signal-handling thread included).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// 0: not cancelled; -1: requested; otherwise the signal number.
    state: AtomicI32,
    wake: tokio::sync::Notify,
}

impl Cancel {
    /// A token that is not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the token ([`CancelReason::Requested`]). Only the first reason is kept.
    pub fn cancel(&self) {
        self.cancel_because(CancelReason::Requested);
    }

    /// Set the token with a reason. Only the first reason is kept.
    pub fn cancel_because(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::Requested => -1,
            CancelReason::Signal(n) if n > 0 => n,
            CancelReason::Signal(_) => -1,
        };
        let _ = self
            .0
            .state
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.0.wake.notify_waiters();
    }

    /// Why the token was set, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        match self.0.state.load(Ordering::SeqCst) {
            0 => None,
            -1 => Some(CancelReason::Requested),
            n => Some(CancelReason::Signal(n)),
        }
    }

    /// Whether the token is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.state.load(Ordering::Relaxed) != 0
    }

    /// `Err(Error::Cancelled)` once the token is set; `what` says what was stopped.
    pub fn check(&self, what: impl FnOnce() -> String) -> Result<()> {
        match self.reason() {
            None => Ok(()),
            Some(reason) => Err(Error::Cancelled {
                what: what(),
                reason,
                kept: String::new(),
            }),
        }
    }

    /// Resolves once the token is set (for async code such as the registry client).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.wake.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel between the two still wakes us.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A reader that fails with [`Error::Cancelled`] (as an `io::Error`) on the first `read`
/// after its token is set.
pub struct CancelReader<R> {
    inner: R,
    cancel: Cancel,
    what: String,
}

impl<R: Read> CancelReader<R> {
    /// Wrap `inner`; `what` names the stream in the error.
    pub fn new(inner: R, cancel: Cancel, what: impl Into<String>) -> Self {
        CancelReader {
            inner,
            cancel,
            what: what.into(),
        }
    }
}

impl<R: Read> Read for CancelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let what = &self.what;
        self.cancel.check(|| what.clone()).map_err(Error::into_io)?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_readers_stop() {
        let c = Cancel::new();
        assert!(c.check(|| "x".into()).is_ok());
        let mut r = CancelReader::new(&b"abcdef"[..], c.clone(), "the stream");
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        c.cancel_because(CancelReason::Signal(15));
        c.cancel_because(CancelReason::Signal(2));
        assert_eq!(c.reason(), Some(CancelReason::Signal(15)));
        let err = Error::from_io("reading", r.read(&mut buf).unwrap_err());
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(err.to_string().contains("the stream"), "{err}");
    }

    #[test]
    fn the_async_wait_ends_when_set_from_another_thread() {
        let c = Cancel::new();
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(c2.cancelled())
        });
        c.cancel();
        t.join().unwrap();
        assert_eq!(c.reason(), Some(CancelReason::Requested));
    }
}
