//! `stowage copy` and `stowage inspect`: build engine options (through `args`), call the
//! engine, print the result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use stowage_engine::copy::plan_image;
use stowage_engine::endpoint::{copy_between, delete as delete_image, open_source, Deleted};
use stowage_engine::registry::RegistrySource;
use stowage_engine::transport::ImageRef;

use crate::args::{copy_command_options, endpoint_options, platform, registry_options};
use crate::cli::{CopyArgs, DeleteArgs, GlobalOpts, InspectArgs};

fn parse_ref(s: &str) -> Result<ImageRef> {
    Ok(ImageRef::parse(s)?)
}

/// `stowage copy SRC DST`.
pub fn copy(global: &GlobalOpts, args: CopyArgs) -> Result<ExitCode> {
    let src = parse_ref(&args.source)?;
    let dst = parse_ref(&args.destination)?;
    let mut opts = endpoint_options(&args.storage, args.dest_compress_format);
    opts.ostree_import = crate::args::ostree_import(args.ostree_var);
    opts.src_registry = registry_options(
        &args.registry,
        args.src_creds.as_deref(),
        args.src_tls_verify,
        args.src_cert_dir.as_deref().or(args.cert_dir.as_deref()),
    )?;
    opts.dest_registry = registry_options(
        &args.registry,
        args.dest_creds.as_deref(),
        args.dest_tls_verify,
        args.dest_cert_dir.as_deref().or(args.cert_dir.as_deref()),
    )?;
    let mut copy = copy_command_options(&args)?;
    copy.cancel = crate::interrupt::install()?;
    let progress = crate::progress::for_copy(global.quiet, args.progress_fd)?;
    let report = copy_between(&src, &dst, &opts, &copy, progress.as_ref())
        .with_context(|| format!("copying {src} to {dst}"))?;
    if let Some(path) = &args.digestfile {
        std::fs::write(path, report.manifest_digest.to_string())
            .with_context(|| format!("writing the manifest digest to {}", path.display()))?;
    }
    if !global.quiet {
        eprintln!(
            "Copied {} layer(s) ({} bytes), reused {}, in {:.2?}; manifest {}",
            report.layers_copied,
            report.layer_bytes,
            report.layers_reused,
            report.elapsed,
            report.manifest_digest
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `stowage inspect IMAGE`.
pub fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let r = parse_ref(&args.image)?;
    let mut opts = endpoint_options(&args.storage, None);
    opts.src_registry = args.remote.options()?;
    let source = open_source(&r, &opts).with_context(|| format!("opening {r}"))?;
    let mut out = std::io::stdout().lock();
    if args.raw {
        let m = source
            .manifest()
            .with_context(|| format!("reading the manifest of {r}"))?;
        out.write_all(&m.bytes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let plan = plan_image(source.as_ref(), &platform(&args.platform))
        .with_context(|| format!("inspecting {r}"))?;
    if args.config {
        out.write_all(&plan.config.bytes)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (name, tags) = match &r {
        ImageRef::Docker(reference) => {
            let tags = if args.no_tags {
                Vec::new()
            } else {
                RegistrySource::open(reference, &opts.src_registry)?
                    .tags()
                    .with_context(|| format!("listing the tags of {}", reference.name()))?
            };
            (Some(reference.name()), tags)
        }
        _ => (None, Vec::new()),
    };
    let summary = stowage_engine::inspect::inspect(&plan, name, tags);
    if let Some(f) = args
        .format
        .as_deref()
        .filter(|f| !stowage_engine::gotemplate::is_json_format(f))
    {
        out.write_all(crate::format::skopeo_inspect(f, &summary)?.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    serde_json::to_writer_pretty(&mut out, &summary)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}

/// `stowage delete IMAGE`.
pub fn delete(global: &GlobalOpts, args: DeleteArgs) -> Result<ExitCode> {
    let r = parse_ref(&args.image)?;
    let opts = endpoint_options(&args.storage, None);
    let done = delete_image(&r, &opts).with_context(|| format!("deleting {r}"))?;
    if !global.quiet {
        match done {
            Deleted::Ostree(d) => eprintln!(
                "Deleted {r}: {} layer ref(s) no other image used, {} object(s) ({} bytes) pruned, {} kept",
                d.layer_refs_removed.len(),
                d.pruned.removed,
                d.pruned.bytes_freed,
                d.pruned.kept
            ),
            Deleted::Storage(d) => {
                for n in d.untagged {
                    eprintln!("Untagged: {n}");
                }
                for id in d.deleted {
                    eprintln!("Deleted: {id}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
