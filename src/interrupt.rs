//! SIGINT / SIGTERM for commands that write stores.
//!
//! 1. [`install`] starts a thread that waits for SIGINT and SIGTERM (signal-hook) and sets the
//!    engine's [`Cancel`] token given to the copy; the engine stops its transfers, removes
//!    what it had not committed and returns `Error::Cancelled`.
//! 2. `main` prints that error as one line and exits 128 + the signal (130, 143).
//! 3. A second signal while the first is being handled ends the process at once with the
//!    same code (anything left is removed by the next write to the store).
//!
//! Commands that do not install it keep the default action of both signals.

use std::sync::OnceLock;

use anyhow::Result;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use stowage_engine::cancel::{Cancel, CancelReason};

static TOKEN: OnceLock<Cancel> = OnceLock::new();

/// Catch SIGINT and SIGTERM from now on; returns the token they set.
pub fn install() -> Result<Cancel> {
    if let Some(t) = TOKEN.get() {
        return Ok(t.clone());
    }
    let cancel = Cancel::new();
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let token = cancel.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if token.is_cancelled() {
                    eprintln!("stowage: interrupted again, exiting at once");
                    std::process::exit(128 + sig);
                }
                token.cancel_because(CancelReason::Signal(sig));
            }
        })?;
    let _ = TOKEN.set(cancel.clone());
    Ok(cancel)
}

/// The signal that cancelled the installed token, if one did.
pub fn received() -> Option<i32> {
    match TOKEN.get()?.reason()? {
        CancelReason::Signal(n) => Some(n),
        CancelReason::Requested => None,
    }
}
