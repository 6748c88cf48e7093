//! podman's `images` listing, the one printer of `stowage images` and `stowage image cmd
//! list`: the same flags (`ListArgs`), rows from the engine's catalog, printed through the
//! gotemplate path (`format.rs`); and go-units' human sizes and durations.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use stowage_engine::cstorage::catalog;
use stowage_engine::gotemplate;

use crate::cli::ListArgs;

/// An image ID as podman lists it: the first 12 digits, or with `--no-trunc` the whole
/// `sha256:…`.
pub(crate) fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        format!("sha256:{id}")
    } else {
        id[..id.len().min(12)].to_string()
    }
}

/// Print `rows` as `podman images` does with `args` (`-q`: the IDs, each once; `--format
/// json`; a Go template or the default table with `--digests`, `--noheading`, `--no-trunc`),
/// for `stowage images` and `stowage image cmd list` alike. An error in listing (`rows`) or in
/// the template is printed as podman prints it, with its exit code 125.
pub(crate) fn print_image_list(
    rows: stowage_engine::Result<Vec<catalog::ImageRow>>,
    args: &ListArgs,
    quiet: bool,
) -> Result<ExitCode> {
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return podman_error(&anyhow::Error::new(e)),
    };
    let mut out = std::io::stdout().lock();
    let json = args
        .format
        .as_deref()
        .is_some_and(gotemplate::is_json_format);
    if quiet && !json {
        // `podman images -q`: each image's ID once, in listing order (an explicit JSON
        // format still prints JSON).
        let mut seen = BTreeSet::new();
        for r in &rows {
            if seen.insert(r.summary.id.as_str()) {
                writeln!(out, "{}", short_id(&r.summary.id, args.no_trunc))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let images: Vec<_> = rows.iter().map(|r| &r.summary).collect();
        serde_json::to_writer_pretty(&mut out, &images)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let f = match args.format.as_deref() {
        None | Some("table") => crate::format::default_images_format(
            args.digests,
            rows.iter().any(|r| r.summary.read_only),
        ),
        Some(f) => f.to_string(),
    };
    match crate::format::image_rows(&f, &rows, args.no_trunc, args.noheading) {
        Ok(text) => out.write_all(text.as_bytes())?,
        Err(e) => return podman_error(&anyhow::Error::new(e)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Print `e` as podman prints its errors and exit with its code.
pub(crate) fn podman_error(e: &anyhow::Error) -> Result<ExitCode> {
    eprintln!("Error: {}", crate::render_error(e));
    Ok(ExitCode::from(PODMAN_ERROR))
}

/// The exit code podman gives an error of its own (as opposed to 1 for "does not exist").
pub(crate) const PODMAN_ERROR: u8 = 125;

/// go-units `HumanDuration`, as podman prints CREATED.
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (min, hour, day) = (60, 3600, 86400);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < min => format!("{s} seconds"),
        s if s / min == 1 => "About a minute".into(),
        s if s < hour => format!("{} minutes", s / min),
        s if (s as f64 / hour as f64).round() as i64 == 1 => "About an hour".into(),
        s if s < 48 * hour => format!("{} hours", (s as f64 / hour as f64).round() as i64),
        s if s < 7 * 2 * day => format!("{} days", s / day),
        s if s < 30 * 3 * day => format!("{} weeks", s / (7 * day)),
        s if s < 365 * 2 * day => format!("{} months", s / (30 * day)),
        s => format!("{} years", s / (365 * day)),
    }
}

/// go-units `HumanSizeWithPrecision(size, 3)`: decimal units, three significant digits.
pub(crate) fn human_size(mut size: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut i = 0;
    while size >= 1000.0 && i < units.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    // %.3g
    let digits = if size == 0.0 {
        1
    } else {
        size.abs().log10().floor() as i32 + 1
    };
    let decimals = (3 - digits).max(0) as usize;
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s} {}", units[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_like_podman() {
        assert_eq!(human_size(13107.0), "13.1 kB");
        assert_eq!(human_size(1996423.0), "2 MB");
        assert_eq!(human_size(999.0), "999 B");
        assert_eq!(human_size(276_000_000.0), "276 MB");
        assert_eq!(human_duration(34 * 60), "34 minutes");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
        assert_eq!(human_duration(90), "About a minute");
    }
}
