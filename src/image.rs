//! `stowage image …`: bootc's image commands, done by the engine.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use stowage_engine::bootc::{self, ListSources};
use stowage_engine::copy::{copy_image, CopyOptions};
use stowage_engine::cstorage::{catalog, clone, StorageSink, Store};
use stowage_engine::endpoint::{open_sink, open_source, EndpointOptions};
use stowage_engine::progress::{Observed, Progress};
use stowage_engine::reference::Reference;
use stowage_engine::transport::ImageRef;

use crate::cli::{
    CmdCommand, GlobalOpts, ImageArgs, ImageCommand, ListType, OutputFormat, RemoteOpts, SystemOpts,
};
use crate::commands::{compression, platform};

impl SystemOpts {
    fn bootc_storage(&self) -> PathBuf {
        self.bootc_storage
            .clone()
            .unwrap_or_else(|| self.sysroot.join(bootc::STORAGE_SUBDIR))
    }
    fn ostree_repo(&self) -> PathBuf {
        self.ostree_repo
            .clone()
            .unwrap_or_else(|| self.sysroot.join(bootc::OSTREE_REPO_SUBDIR))
    }
    fn open_bootc_store(&self) -> Result<Store> {
        let root = self.bootc_storage();
        Store::open(&root, Some(&self.bootc_runroot), None)
            .with_context(|| format!("opening bootc's storage at {}", root.display()))
    }
    fn read_bootc_store(&self) -> Result<Store> {
        let root = self.bootc_storage();
        Store::open_read_only(&root, None)
            .with_context(|| format!("opening bootc's storage at {}", root.display()))
    }
    /// Endpoint options whose default containers-storage is the host's.
    fn host_endpoints(&self) -> EndpointOptions {
        EndpointOptions {
            storage_root: self.host_storage.clone(),
            storage_runroot: self.host_runroot.clone(),
            ..Default::default()
        }
    }
}

/// Run an `image` subcommand.
pub fn run(global: &GlobalOpts, args: ImageArgs) -> Result<ExitCode> {
    let sys = &args.system;
    match args.command {
        ImageCommand::List { list_type, format } => list(sys, list_type, format),
        ImageCommand::CopyToStorage { source, target } => {
            copy_to_storage(global, sys, source, &target)
        }
        ImageCommand::PullFromDefaultStorage { image } => {
            pull_from_default_storage(global, sys, &image)
        }
        ImageCommand::Cmd { command } => cmd(global, sys, command),
    }
}

fn list(sys: &SystemOpts, list_type: ListType, format: OutputFormat) -> Result<ExitCode> {
    let repo = sys.ostree_repo();
    let storage = sys.bootc_storage();
    let want = |t: ListType| list_type == ListType::All || list_type == t;
    let sources = ListSources {
        ostree_repo: want(ListType::Host).then_some(repo.as_path()),
        storage_root: want(ListType::Unified).then_some(storage.as_path()),
        root: want(ListType::Logical).then_some(sys.root.as_path()),
    };
    let images = bootc::list_images(&sources)?;
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

/// Whether `s` starts with a transport name (`docker://`, `oci:`, `containers-storage:`, ...).
fn has_transport(s: &str) -> bool {
    [
        "docker://",
        "oci:",
        "oci-archive:",
        "containers-storage:",
        "ostree:",
    ]
    .iter()
    .any(|t| s.starts_with(t))
}

/// `name` as a transport string, with `default` (e.g. `containers-storage:`) when it has none.
fn with_default_transport(name: &str, default: &str) -> Result<ImageRef> {
    Ok(if has_transport(name) {
        ImageRef::parse(name)?
    } else {
        ImageRef::parse(&format!("{default}{name}"))?
    })
}

fn run_copy(
    global: &GlobalOpts,
    src: &ImageRef,
    dst: &ImageRef,
    opts: &EndpointOptions,
    copy: &CopyOptions,
    progress: Option<&Arc<dyn Progress>>,
) -> Result<()> {
    let source = open_source(src, opts).with_context(|| format!("opening source {src}"))?;
    let sink = open_sink(dst, opts).with_context(|| format!("opening destination {dst}"))?;
    let report = match progress {
        Some(p) => copy_image(
            &Observed::source(source.as_ref(), p.clone()),
            &Observed::sink(sink.as_ref(), p.clone()),
            copy,
        ),
        None => copy_image(source.as_ref(), sink.as_ref(), copy),
    }
    .with_context(|| format!("copying {src} to {dst}"))?;
    if !global.quiet {
        eprintln!(
            "Copied {src} to {dst}: {} layer(s) ({} bytes) copied, {} reused, in {:.2?}",
            report.layers_copied, report.layer_bytes, report.layers_reused, report.elapsed
        );
    }
    Ok(())
}

/// Registry options for `image cmd pull/push`: bootc's `/etc/ostree/auth.json` unless
/// `--authfile` names another.
fn remote_options(remote: &RemoteOpts) -> Result<stowage_engine::registry::RegistryOptions> {
    let mut o = remote.options()?;
    if o.authfile.is_none() {
        let bootc_auth = std::path::Path::new(BOOTC_AUTHFILE);
        if bootc_auth.exists() {
            o.authfile = Some(bootc_auth.to_path_buf());
        }
    }
    Ok(o)
}

/// bootc's registry credentials, used instead of the user's.
const BOOTC_AUTHFILE: &str = "/etc/ostree/auth.json";

fn copy_to_storage(
    global: &GlobalOpts,
    sys: &SystemOpts,
    source: Option<String>,
    target: &str,
) -> Result<ExitCode> {
    let Some(source) = source else {
        bail!(
            "copying the booted image needs stowage's ostree export, which is not implemented yet; \
             name the image with --source (e.g. --source oci:/path:tag or --source docker://quay.io/org/image:tag)"
        );
    };
    let src = ImageRef::parse(&source)?;
    let dst = with_default_transport(target, "containers-storage:")?;
    run_copy(
        global,
        &src,
        &dst,
        &sys.host_endpoints(),
        &CopyOptions::default(),
        None,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn pull_from_default_storage(
    global: &GlobalOpts,
    sys: &SystemOpts,
    image: &str,
) -> Result<ExitCode> {
    let host = Store::open_read_only(&sys.host_storage, None).with_context(|| {
        format!(
            "opening the host's storage at {}",
            sys.host_storage.display()
        )
    })?;
    let record = host
        .image(image)
        .with_context(|| format!("finding {image} in {}", sys.host_storage.display()))?;
    let dst = sys.open_bootc_store()?;
    match clone::clone_image(&host, &dst, &record, &[]) {
        Ok(stats) => {
            if !global.quiet {
                eprintln!(
                    "Copied {image} ({}) into {}: {} layer(s) copied, {} reused; files: {} reflinked, {} hard-linked, {} copied",
                    &record.id[..12],
                    sys.bootc_storage().display(),
                    stats.layers_copied,
                    stats.layers_reused,
                    stats.reflinked,
                    stats.hardlinked,
                    stats.copied
                );
            }
        }
        Err(stowage_engine::Error::Conflict { reason, .. }) if reason.contains("whiteouts") => {
            // Different whiteout forms: re-extract through the pipeline.
            let src = ImageRef::parse(&format!(
                "containers-storage:[overlay@{}+{}]{}",
                sys.host_storage.display(),
                sys.host_runroot.display(),
                record.id
            ))?;
            let sink = StorageSink::new(dst, record.names.first().cloned());
            let source = open_source(&src, &sys.host_endpoints())?;
            copy_image(source.as_ref(), &sink, &CopyOptions::default())
                .with_context(|| format!("copying {image} into bootc's storage"))?;
            for name in record.names.iter().skip(1) {
                catalog::tag(sink.store(), &record.id, std::slice::from_ref(name))?;
            }
        }
        Err(e) => return Err(e).with_context(|| format!("copying {image} into bootc's storage")),
    }
    Ok(ExitCode::SUCCESS)
}

/// podman's rule for names given to `tag`: a short name goes to `localhost/`.
fn tag_name(name: &str) -> Result<String> {
    let full = if Reference::is_short_name(name) {
        format!("localhost/{name}")
    } else {
        name.to_string()
    };
    Ok(Reference::parse_with_default_tag(&full)
        .with_context(|| format!("invalid name {name}"))?
        .to_string())
}

fn cmd(global: &GlobalOpts, sys: &SystemOpts, command: CmdCommand) -> Result<ExitCode> {
    match command {
        CmdCommand::List { format, all } => {
            let store = sys.read_bootc_store()?;
            let images = catalog::list_images(&store, all)?;
            let mut out = std::io::stdout().lock();
            match format {
                OutputFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &images)?;
                    writeln!(out)?;
                }
                OutputFormat::Table => print_images_table(&mut out, &images)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Inspect { images } => {
            let store = sys.read_bootc_store()?;
            let mut all = Vec::new();
            for i in &images {
                all.push(
                    catalog::inspect_image(&store, i).with_context(|| format!("inspecting {i}"))?,
                );
            }
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Exists { image } => {
            let store = sys.read_bootc_store()?;
            Ok(if catalog::image_exists(&store, &image)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CmdCommand::Tag { image, names } => {
            let store = sys.open_bootc_store()?;
            let names = names
                .iter()
                .map(|n| tag_name(n))
                .collect::<Result<Vec<_>>>()?;
            catalog::tag(&store, &image, &names)?;
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Untag { image, names } => {
            let store = sys.open_bootc_store()?;
            let names = names
                .iter()
                .map(|n| tag_name(n))
                .collect::<Result<Vec<_>>>()?;
            for n in catalog::untag(&store, &image, &names)? {
                if !global.quiet {
                    eprintln!("Untagged: {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CmdCommand::Rm { force, images } => {
            let store = sys.open_bootc_store()?;
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
        CmdCommand::Prune => {
            let store = sys.open_bootc_store()?;
            for id in catalog::prune(&store)? {
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
            let store_root = sys.bootc_storage();
            let copy = CopyOptions {
                platform: platform(&p),
                ..Default::default()
            };
            let mut opts = sys.host_endpoints();
            opts.src_registry = remote_options(&remote)?;
            let progress = crate::progress::for_copy(global.quiet, progress_fd)?;
            let registries = opts.src_registry.registries()?;
            // Each image: the candidates to try in order (a short name gives one per
            // unqualified-search registry, as podman resolves it), each with its destination.
            let jobs: Vec<Vec<(ImageRef, ImageRef)>> = images
                .iter()
                .map(|i| {
                    let sources: Vec<ImageRef> = if !has_transport(i) && Reference::is_short_name(i) {
                        registries
                            .resolve_short_name(i)
                            .with_context(|| format!("resolving the short name {i}"))?
                            .into_iter()
                            .map(ImageRef::Docker)
                            .collect()
                    } else {
                        vec![with_default_transport(i, "docker://")?]
                    };
                    sources
                        .into_iter()
                        .map(|src| {
                            let name = match &src {
                                ImageRef::Docker(r) => r.to_string(),
                                ImageRef::Oci { path, tag } | ImageRef::OciArchive { path, tag } => tag_name(&format!(
                                    "{}:{}",
                                    path.file_name().map(|f| f.to_string_lossy().to_lowercase()).unwrap_or_else(|| "image".into()),
                                    tag.as_deref().unwrap_or("latest")
                                ))?,
                                other => bail!("cannot pull {other} into bootc's storage; pull a registry image or an OCI layout"),
                            };
                            let dst = ImageRef::parse(&format!(
                                "containers-storage:[overlay@{}+{}]{name}",
                                store_root.display(),
                                sys.bootc_runroot.display()
                            ))?;
                            Ok((src, dst))
                        })
                        .collect()
                })
                .collect::<Result<_>>()?;
            let errors: Vec<String> = std::thread::scope(|s| {
                let handles: Vec<_> = jobs
                    .iter()
                    .map(|candidates| {
                        let (opts, copy, progress) = (&opts, &copy, &progress);
                        s.spawn(move || {
                            let mut failures = Vec::new();
                            for (src, dst) in candidates {
                                match run_copy(global, src, dst, opts, copy, progress.as_ref()) {
                                    Ok(()) => return Ok(()),
                                    Err(e) => failures.push(format!("{e:#}")),
                                }
                            }
                            Err(failures.join("; "))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .filter_map(|h| h.join().expect("pull thread panicked").err())
                    .collect()
            });
            for e in &errors {
                eprintln!("Error: {e}");
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CmdCommand::Push {
            image,
            destination,
            dest_compress_format,
            progress_fd,
            remote,
        } => {
            let store = sys.read_bootc_store()?;
            let record = store
                .image(&image)
                .with_context(|| format!("finding {image} in bootc's storage"))?;
            let src = ImageRef::parse(&format!(
                "containers-storage:[overlay@{}+{}]{}",
                sys.bootc_storage().display(),
                sys.bootc_runroot.display(),
                record.id
            ))?;
            let dst = match destination {
                Some(d) => with_default_transport(&d, "docker://")?,
                None => {
                    let name = record
                        .names
                        .first()
                        .with_context(|| format!("{image} has no name; give a destination"))?;
                    ImageRef::parse(&format!("docker://{name}"))?
                }
            };
            let mut opts = sys.host_endpoints();
            opts.dest_compression = compression(dest_compress_format);
            opts.dest_registry = remote_options(&remote)?;
            let progress = crate::progress::for_copy(global.quiet, progress_fd)?;
            run_copy(
                global,
                &src,
                &dst,
                &opts,
                &CopyOptions::default(),
                progress.as_ref(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `podman images` table: REPOSITORY, TAG, IMAGE ID, CREATED, SIZE; one row per name.
fn print_images_table(out: &mut impl Write, images: &[catalog::ImageSummary]) -> Result<()> {
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
        let id = img.id.chars().take(12).collect::<String>();
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
    writeln!(out, "{}", line(header))?;
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
