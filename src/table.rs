//! podman's `images` table, shared by `stowage images` and `stowage image cmd list`.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::Result;
use stowage_engine::cstorage::catalog;

/// An image ID as podman lists it: the first 12 digits, or with `--no-trunc` the whole
/// `sha256:…`.
pub(crate) fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        format!("sha256:{id}")
    } else {
        id[..id.len().min(12)].to_string()
    }
}

pub(crate) fn print_images_table(
    out: &mut impl Write,
    images: &[catalog::ImageSummary],
    noheading: bool,
    no_trunc: bool,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut seen = BTreeSet::new();
    let mut rows: Vec<[String; 5]> = Vec::new();
    for img in images {
        if !seen.insert(img.id.clone()) {
            continue;
        }
        let created = format!("{} ago", human_duration(now - img.created));
        let size = human_size(img.size as f64);
        let id = short_id(&img.id, no_trunc);
        if img.names.is_empty() {
            rows.push(["<none>".into(), "<none>".into(), id, created, size]);
            continue;
        }
        for name in &img.names {
            let (repo, tag) = match name.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                _ => (name.clone(), "<none>".into()),
            };
            rows.push([repo, tag, id.clone(), created.clone(), size.clone()]);
        }
    }
    let header = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    if !noheading {
        writeln!(out, "{}", line(header))?;
    }
    for r in &rows {
        writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4]]))?;
    }
    Ok(())
}

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
