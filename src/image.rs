//! `stowage image …`: bootc's image commands, done by the engine.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use stowage_engine::bootc::transfer::{self, Method, Transfer};
use stowage_engine::bootc::{pull, ImageType, System};
use stowage_engine::cstorage::catalog;
use stowage_engine::gotemplate;

use crate::args::{build_options, compression, copy_options, list_options};
use crate::cli::{
    BuildArgs, CmdCommand, GlobalOpts, ImageArgs, ImageCommand, ListType, OutputFormat,
};
use crate::table::{human_duration, human_size, podman_error, print_image_list, PODMAN_ERROR};

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
                &interruptible(copy_options(None, None))?,
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
    let bootc_system = sys.is_bootc_system();
    let kinds: &[ImageType] = match list_type {
        ListType::All if !bootc_system => {
            eprintln!(
                "Note: {} is not a bootc system (no ostree repository at {}): host images need one; \
                 listing logical images (point --sysroot or --ostree-repo at the system to list its host images)",
                sys.sysroot.display(),
                sys.ostree_repo().display()
            );
            &[ImageType::Unified, ImageType::Logical]
        }
        ListType::All => &[ImageType::Host, ImageType::Unified, ImageType::Logical],
        ListType::Host if !bootc_system => anyhow::bail!(
            "image list --type host requires a booted bootc system: no ostree repository at {}; \
             point --sysroot (or --ostree-repo) at the system's physical root",
            sys.ostree_repo().display()
        ),
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
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let mut text = String::from("REPOSITORY\tTYPE\tDIGEST\tSIZE\tCREATED\tPRESENT\n");
            for i in &images {
                let digest = i
                    .digest
                    .as_deref()
                    .map(|d| d[..d.len().min("sha256:".len() + 12)].to_string())
                    .unwrap_or_else(|| "-".into());
                let size = i
                    .size
                    .map(|s| human_size(s as f64))
                    .unwrap_or_else(|| "-".into());
                let created = i
                    .created
                    .as_deref()
                    .and_then(gotemplate::unix_of_rfc3339)
                    .map(|t| format!("{} ago", human_duration(now - t)))
                    .unwrap_or_else(|| "-".into());
                let present = match i.present {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "",
                };
                text.push_str(&format!(
                    "{}\t{}\t{digest}\t{size}\t{created}\t{present}\n",
                    i.image,
                    i.image_type.as_str()
                ));
            }
            let table = gotemplate::tabwrite(&text, 0, 2);
            for line in table.lines() {
                writeln!(out, "{}", line.trim_end())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The summary line of a copy, unless `-q`.
fn report_transfer(global: &GlobalOpts, t: &Transfer) {
    for note in &t.report.notes {
        eprintln!("Note: {note}");
    }
    if !global.quiet {
        let r = &t.report;
        eprintln!(
            "Copied {} to {}: {} layer(s) ({} bytes) copied, {} reused, in {:.2?}{}",
            t.source,
            t.destination,
            r.layers_copied,
            r.layer_bytes,
            r.layers_reused,
            r.elapsed,
            crate::progress::files_suffix(r)
        );
    }
}

fn pull_from_default_storage(global: &GlobalOpts, sys: &System, image: &str) -> Result<ExitCode> {
    let done = transfer::pull_from_default_storage(
        sys,
        image,
        &interruptible(copy_options(None, None))?,
        None,
    )
    .with_context(|| {
        format!(
            "copying {image} from {} into bootc's storage at {}",
            sys.host_store()
                .map(|c| c.graph_root.display().to_string())
                .unwrap_or_else(|_| "the host's default store".into()),
            sys.storage_root().display()
        )
    })?;
    if !global.quiet {
        let id = &done.image.id[..12];
        let to = sys.storage_root();
        match &done.method {
            Method::Cloned(stats) => eprintln!(
                "Copied {image} ({id}) into {}: {} layer(s) copied, {} reused; {}",
                to.display(),
                stats.layers_copied,
                stats.layers_reused,
                stats.files.summary()
            ),
            Method::Reextracted(r) => eprintln!(
                "Copied {image} ({id}) into {}: {} layer(s) re-extracted ({} bytes), {} reused (the stores keep whiteouts differently, so layer trees could not be shared){}",
                to.display(),
                r.layers_copied,
                r.layer_bytes,
                r.layers_reused,
                crate::progress::files_suffix(r)
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
        CmdCommand::List(list) => {
            let store = match read_bootc_store() {
                Ok(s) => s,
                Err(e) => return podman_error(&e),
            };
            let opts = list_options(list.all, &list.filter, list.sort);
            print_image_list(catalog::list_rows(&store, &opts), &list, global.quiet)
        }
        CmdCommand::Inspect { images, format } => {
            let store = match read_bootc_store() {
                Ok(s) => s,
                Err(e) => return podman_error(&e),
            };
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
            match format.as_deref() {
                Some(f) if !gotemplate::is_json_format(f) => {
                    match crate::format::image_inspect(f, &all) {
                        Ok(text) => out.write_all(text.as_bytes())?,
                        Err(e) => {
                            return podman_error(
                                &anyhow::Error::new(e)
                                    .context("inspecting object: printing inspect output"),
                            )
                        }
                    }
                }
                _ => {
                    serde_json::to_writer_pretty(&mut out, &all)?;
                    writeln!(out)?;
                }
            }
            Ok(if missing {
                ExitCode::from(PODMAN_ERROR)
            } else {
                ExitCode::SUCCESS
            })
        }
        CmdCommand::Exists { image } => {
            let store = match read_bootc_store() {
                Ok(s) => s,
                Err(e) => return podman_error(&e),
            };
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
            let mut failed: Option<u8> = None;
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
                        // podman rmi: 2 for an image in use, 1 for one that does not exist,
                        // 125 otherwise.
                        let code = match e {
                            stowage_engine::error::Error::ImageInUse { .. } => 2,
                            stowage_engine::error::Error::NotFound { .. } => 1,
                            _ => PODMAN_ERROR,
                        };
                        failed = Some(failed.map_or(code, |c: u8| c.max(code)));
                    }
                }
            }
            Ok(match failed {
                Some(code) => ExitCode::from(code),
                None => ExitCode::SUCCESS,
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
            mut images,
            bound,
            platform: p,
            progress_fd,
            remote,
        } => {
            if bound {
                let (declared, missing) = pull::missing_bound_images(sys)?;
                eprintln!(
                    "{declared} logically bound image(s) in {}: {} present, {} to pull",
                    sys.root
                        .join(stowage_engine::bootc::BOUND_IMAGES_DIR)
                        .display(),
                    declared - missing.len(),
                    missing.len()
                );
                for m in missing {
                    if !images.contains(&m) {
                        images.push(m);
                    }
                }
                if images.is_empty() {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            let mut opts = sys.endpoints();
            opts.src_registry = remote.bootc_options()?;
            let progress = crate::progress::for_copy(global.quiet, progress_fd)?;
            let results = pull::pull_images(
                sys,
                &images,
                &opts,
                &interruptible(copy_options(Some(&p), None))?,
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
                        // An interrupted pull ends the command with the one interrupted
                        // line (main), not an error per image.
                        if let Some(pos) = e.attempts.iter().position(|(_, err)| {
                            matches!(err, stowage_engine::error::Error::Cancelled { .. })
                        }) {
                            let (_, err) = e.attempts.into_iter().nth(pos).expect("found");
                            return Err(anyhow::Error::new(err));
                        }
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
        CmdCommand::Build(b) => build(global, sys, *b),
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
                &interruptible(copy_options(None, None))?,
                progress.as_ref(),
            )
            .with_context(|| format!("pushing {image} from bootc's storage"))?;
            report_transfer(global, &t);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn build(global: &GlobalOpts, sys: &System, b: BuildArgs) -> Result<ExitCode> {
    let (options, policy) = build_options(&b)?;
    let mut opts = sys.endpoints();
    opts.src_registry = b.remote.bootc_options()?;
    let quiet = global.quiet;
    let progress = crate::progress::for_copy(true, None)?;
    let report = stowage_engine::bootc::build::build(
        sys,
        &options,
        policy,
        &opts,
        &interruptible(copy_options(None, None))?,
        progress.as_ref(),
        &mut |step| {
            if !quiet {
                eprintln!("{step}");
            }
        },
    )
    .with_context(|| format!("building {}", options.containerfile.display()))?;
    for w in &report.warnings {
        eprintln!("[Warning] {w}");
    }
    if !quiet {
        eprintln!(
            "COMMIT {}",
            report.names.first().map(String::as_str).unwrap_or("")
        );
        for n in &report.names {
            eprintln!("Successfully tagged {n}");
        }
    }
    if let Some(f) = &b.iidfile {
        std::fs::write(f, format!("sha256:{}", report.image_id))
            .with_context(|| format!("writing the image ID to {}", f.display()))?;
    }
    println!("{}", report.image_id);
    Ok(ExitCode::SUCCESS)
}

/// Copy options whose copy SIGINT/SIGTERM stop cleanly (exit 130/143, what was not committed
/// removed), as for `stowage copy`.
fn interruptible(
    mut copy: stowage_engine::copy::CopyOptions,
) -> Result<stowage_engine::copy::CopyOptions> {
    copy.cancel = crate::interrupt::install()?;
    Ok(copy)
}
