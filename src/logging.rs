//! `--log-level` and `-v`: what of the engine's `log` records reaches stderr.
//!
//! 1. The engine logs through the `log` facade: every registry request and its answer
//!    (debug), the configuration files, credentials and signature policy it uses (info), what
//!    the pipeline does with each layer (info, debug), retries and refetches (info, warn).
//! 2. The CLI installs [`StderrLogger`] at the level of `--log-level` (podman's names: `trace`,
//!    `debug`, `info`, `warn`/`warning`, `error`, and `fatal`/`panic` for error), or raised by
//!    each `-v` from `warn` to `info`, `debug`, `trace`. Without either, only warnings and
//!    errors are printed, and the engine emits few of either: errors are returned, not logged.
//! 3. Each record is one line, `stowage[LEVEL] module: message` (the engine's module, as
//!    `registry::client`), on stderr, so stdout stays
//!    what scripts read (`image cmd pull` prints IDs there).
//!
//! Hand-written (about 30 lines) rather than `env_logger`: the static binary's size budget,
//! and nothing here needs filters by module or colours.

use std::io::Write as _;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Parse a `--log-level` value, podman's names.
pub fn parse_level(s: &str) -> Result<LevelFilter, String> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::Trace,
        "debug" => LevelFilter::Debug,
        "info" => LevelFilter::Info,
        "warn" | "warning" => LevelFilter::Warn,
        "error" | "fatal" | "panic" => LevelFilter::Error,
        _ => {
            return Err(format!(
                "{s:?} is not a log level (trace, debug, info, warn, error)"
            ))
        }
    })
}

/// The level for `--log-level` (if given) and `verbose` `-v` flags.
pub fn level(explicit: Option<LevelFilter>, verbose: u8) -> LevelFilter {
    explicit.unwrap_or(match verbose {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    })
}

/// Writes every enabled record as one line on stderr.
pub struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Install [`StderrLogger`] at `level`.
pub fn init(level: LevelFilter) {
    // Only fails when a logger is installed already (never: main calls this once).
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        // One write per line, so lines of several threads do not interleave.
        let target = record.target();
        let target = target.strip_prefix("stowage_engine::").unwrap_or(target);
        let line = format!("stowage[{level}] {target}: {}\n", record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_as_podman_names_them() {
        assert_eq!(parse_level("debug").unwrap(), LevelFilter::Debug);
        assert_eq!(parse_level("WARNING").unwrap(), LevelFilter::Warn);
        assert_eq!(parse_level("fatal").unwrap(), LevelFilter::Error);
        assert!(parse_level("loud").unwrap_err().contains("trace, debug"));
        assert_eq!(level(None, 0), LevelFilter::Warn);
        assert_eq!(level(None, 2), LevelFilter::Debug);
        assert_eq!(level(None, 9), LevelFilter::Trace);
        assert_eq!(level(Some(LevelFilter::Error), 3), LevelFilter::Error);
    }
}
