//! `stowage image …`: bootc's image commands, done by the engine.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use stowage_engine::bootc::transfer::{self, Method, Transfer};
use stowage_engine::bootc::{pull, ImageType, System};
use stowage_engine::cstorage::catalog;

use crate::args::{compression, copy_options};
use crate::cli::{CmdCommand, GlobalOpts, ImageArgs, ImageCommand, ListType, OutputFormat};

/// Run an `image` subcommand.
pub fn run(global: &GlobalOpts, args: ImageArgs) -> Result<ExitCode> {
    let mut sys = args.system.system();
    sys.policy = crate::args::policy(global);
    match args.command {
        ImageCommand::List { list_type, format } => list(&sys, list_type, format),
        ImageCommand::CopyToStorage { source, target } => {
            let t = transfer::copy_to_storage(
                &sys,
                source.as_deref(),
                &target,
                &sys.endpoints(),
                &copy_options(None, None),
                None,
            )
            .context("copy-to-storage")?;
            report_transfer(global, &t);
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::PullFromDefaultStorage { image } => {
            pull_from_default_storage(global, &sys, &image)
        }
        ImageCommand::Cmd { command } => cmd(global, &sys, *command),
    }
}

fn list(sys: &System, list_type: ListType, format: OutputFormat) -> Result<ExitCode> {
    let kinds: &[ImageType] = match list_type {
        ListType::All => &[ImageType::Host, ImageType::Unified, ImageType::Logical],
        ListType::Host => &[ImageType::Host],
        ListType::Unified => &[ImageType::Unified],
        ListType::Logical => &[ImageType::Logical],
    };
    let images = sys.list_images(kinds)?;
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &images)?;
            writeln!(out)?;
        }
        OutputFormat::Table => {
            let width = images
                .iter()
                .map(|i| i.image.len())
                .max()
                .unwrap_or(0)
                .max("REPOSITORY".len());
            writeln!(out, "{:width$}  TYPE", "REPOSITORY")?;
            for i in &images {
                writeln!(out, "{:width$}  {}", i.image, i.image_type.as_str())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary line of a copy, unless `-q`.
fn report_transfer(global: &GlobalOpts, t: &Transfer) {
    if !global.quiet {
        let r = &t.report;
        eprintln!(
            "Copied {} to {}: {} layer(s) ({} bytes) copied, {} reused, in {:.2?}",
            t.source, t.destination, r.layers_copied, r.layer_bytes, r.layers_reused, r.elapsed
        );
    }
}

fn pull_from_default_storage(global: &GlobalOpts, sys: &System, image: &str) -> Result<ExitCode> {
    let done = transfer::pull_from_default_storage(sys, image, &copy_options(None, None), None)
        .with_context(|| {
            format!(
                "copying {image} from {} into bootc's storage at {}",
                sys.host_storage_root.display(),
                sys.storage_root().display()
            )
        })?;
    if !global.quiet {
        let id = &done.image.id[..12];
        let to = sys.storage_root();
        match &done.method {
            Method::Cloned(stats) => eprintln!(
                "Copied {image} ({id}) into {}: {} layer(s) copied, {} reused; files: {} reflinked, {} hard-linked, {} copied",
                to.display(),
                stats.layers_copied,
                stats.layers_reused,
                stats.reflinked,
                stats.hardlinked,
                stats.copied
            ),
            Method::Reextracted(r) => eprintln!(
                "Copied {image} ({id}) into {}: {} layer(s) re-extracted ({} bytes), {} reused (the stores keep whiteouts differently, so layers could not be shared)",
                to.display(),
                r.layers_copied,
                r.layer_bytes,
                r.layers_reused
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// podman's names for `tag`/`untag`: short names under `localhost/`.
fn local_names(names: &[String]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| Ok(catalog::local_name(n)?.to_string()))
        .collect()
}

fn cmd(global: &GlobalOpts, sys: &System, command: CmdCommand) -> Result<ExitCode> {
    let bootc_store = || {
        sys.open_storage().with_context(|| {
            format!(
                "opening bootc's storage at {}",
                sys.storage_root().display()
            )
        })
    };
    let read_bootc_store = || {
        sys.read_storage().with_context(|| {
            format!(
                "opening bootc's storage at {}",
                sys.storage_root().display()
            )
        })
    };
    match command {
        CmdCommand::List {
            format,
            all,
            noheading,
            no_trunc,
        } => {
            let store = read_bootc_store()?;
            let images = catalog::list_images(&store, all)?;
            let mut out = std::io::stdout().lock();
            if global.quiet && format == OutputFormat::Table {
                // `podman images -q`: each image's ID once, in listing order (an explicit
                // `--format json` still prints JSON).
                let mut seen = BTreeSet::new();
                for img in &images {
                    if seen.insert(img.id.as_str()) {
                        writeln!(out, "{}", short_id(&img.id, no_trunc))?;
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            match format {
                OutputFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &images)?;
                    writeln!(out)?;
                }
                OutputFormat::Table => print_images_table(&mut out, &images, noheading, no_trunc)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Inspect { images } => {
            let store = read_bootc_store()?;
            let mut all = Vec::new();
            let mut missing = false;
            for i in &images {
                match catalog::inspect_image(&store, i) {
                    Ok(v) => all.push(v),
                    Err(e) => {
                        eprintln!("Error: inspecting {i}: {e}");
                        missing = true;
                    }
                }
            }
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
            Ok(if missing {
                ExitCode::from(PODMAN_ERROR)
            } else {
                ExitCode::SUCCESS
            })
        }
        CmdCommand::Exists { image } => {
            let store = read_bootc_store()?;
            Ok(match catalog::image_exists(&store, &image) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("Error: {image}: {e}");
                    ExitCode::from(PODMAN_ERROR)
                }
            })
        }
        CmdCommand::Tag { image, names } => {
            let store = bootc_store()?;
            catalog::tag(&store, &image, &local_names(&names)?)?;
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Untag { image, names } => {
            let store = bootc_store()?;
            for n in catalog::untag(&store, &image, &local_names(&names)?)? {
                if !global.quiet {
                    eprintln!("Untagged: {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Rm { force, images } => {
            let store = bootc_store()?;
            let mut failed = false;
            for i in &images {
                match catalog::remove_image(&store, i, force) {
                    Ok(report) => {
                        for n in report.untagged {
                            println!("Untagged: {n}");
                        }
                        for d in report.deleted {
                            println!("Deleted: {d}");
                        }
                    }
                    Err(e) => {
                        eprintln!("Error: {i}: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        CmdCommand::Prune { all, force } => {
            let store = bootc_store()?;
            if !force && std::io::stdin().is_terminal() {
                let what = if all {
                    "all images not used by any container"
                } else {
                    "all dangling images"
                };
                eprint!("WARNING! This command removes {what}.\nAre you sure you want to continue? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let scope = if all {
                catalog::PruneScope::Unused
            } else {
                catalog::PruneScope::Dangling
            };
            for id in catalog::prune(&store, scope)? {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Pull {
            images,
            platform: p,
            progress_fd,
            remote,
        } => {
            let mut opts = sys.endpoints();
            opts.src_registry = remote.bootc_options()?;
            let progress = crate::progress::for_copy(global.quiet, progress_fd)?;
            let results = pull::pull_images(
                sys,
                &images,
                &opts,
                &copy_options(Some(&p), None),
                progress.as_ref(),
            )?;
            let mut failed = false;
            for r in results {
                match r {
                    Ok(pulled) => {
                        // podman pull prints the image ID on stdout, for `id=$(… pull …)`.
                        if let Some(id) = &pulled.report.image_id {
                            println!("{id}");
                        }
                        report_transfer(
                            global,
                            &Transfer {
                                source: pulled.candidate.source,
                                destination: pulled.candidate.destination,
                                report: pulled.report,
                            },
                        )
                    }
                    Err(e) => {
                        eprintln!("Error: {}", crate::render_error(&anyhow::Error::new(e)));
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        CmdCommand::Push {
            image,
            destination,
            dest_compress_format,
            progress_fd,
            remote,
        } => {
            let mut opts = sys.endpoints();
            opts.dest_compression = compression(dest_compress_format);
            opts.dest_registry = remote.bootc_options()?;
            let progress = crate::progress::for_copy(global.quiet, progress_fd)?;
            let t = transfer::push(
                sys,
                &image,
                destination.as_deref(),
                &opts,
                &copy_options(None, None),
                progress.as_ref(),
            )
            .with_context(|| format!("pushing {image} from bootc's storage"))?;
            report_transfer(global, &t);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `podman images` table: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE; one row per name.
/// The exit code podman gives an error of its own (as opposed to 1 for "does not exist").
const PODMAN_ERROR: u8 = 125;

/// An image ID as podman lists it: the first 12 digits, or with `--no-trunc` the whole
/// `sha256:…`.
fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        format!("sha256:{id}")
    } else {
        id[..id.len().min(12)].to_string()
    }
}

fn print_images_table(
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
fn human_duration(secs: i64) -> String {
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
fn human_size(mut size: f64) -> String {
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
