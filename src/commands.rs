//! Running parsed commands: build engine options, call the engine, print the result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use stowage_engine::compression::Compression;
use stowage_engine::copy::{copy_image, plan_image, CopyOptions};
use stowage_engine::endpoint::{open_sink, open_source, EndpointOptions};
use stowage_engine::manifest::PlatformSpec;
use stowage_engine::transport::ImageRef;

use crate::cli::{Cli, Command, CompressFormat, CopyArgs, GlobalOpts, InspectArgs, PlatformOpts};

/// Run `cli`, returning the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Copy(args) => copy(&cli.global, args),
        Command::Inspect(args) => inspect(&cli.global, args),
        Command::Image(args) => crate::image::run(&cli.global, args),
    }
}

/// The engine's compression for a `--dest-compress-format` choice.
pub fn compression(compress: Option<CompressFormat>) -> Option<Compression> {
    compress.map(|c| match c {
        CompressFormat::Gzip => Compression::Gzip,
        CompressFormat::Zstd => Compression::Zstd,
    })
}

fn endpoint_options(global: &GlobalOpts, compress: Option<CompressFormat>) -> EndpointOptions {
    EndpointOptions {
        dest_compression: compression(compress),
        storage_root: global.storage_root.clone(),
        storage_runroot: global.runroot.clone(),
    }
}

/// The platform to choose from multi-arch images.
pub fn platform(opts: &PlatformOpts) -> PlatformSpec {
    let mut p = PlatformSpec::host();
    if let Some(os) = &opts.override_os {
        p.os = os.clone();
    }
    if let Some(arch) = &opts.override_arch {
        if *arch != p.architecture {
            p.variant = None;
        }
        p.architecture = arch.clone();
    }
    if let Some(v) = &opts.override_variant {
        p.variant = Some(v.clone());
    }
    p
}

fn parse_ref(s: &str) -> Result<ImageRef> {
    Ok(ImageRef::parse(s)?)
}

fn copy(global: &GlobalOpts, args: CopyArgs) -> Result<ExitCode> {
    let src = parse_ref(&args.source)?;
    let dst = parse_ref(&args.destination)?;
    let opts = endpoint_options(global, args.dest_compress_format);
    let source = open_source(&src, &opts).with_context(|| format!("opening source {src}"))?;
    let sink = open_sink(&dst, &opts).with_context(|| format!("opening destination {dst}"))?;
    let copy_opts = CopyOptions {
        jobs: args.jobs as usize,
        platform: platform(&args.platform),
    };
    let report = copy_image(source.as_ref(), sink.as_ref(), &copy_opts)
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

fn inspect(global: &GlobalOpts, args: InspectArgs) -> Result<ExitCode> {
    let r = parse_ref(&args.image)?;
    let source =
        open_source(&r, &endpoint_options(global, None)).with_context(|| format!("opening {r}"))?;
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
    let name = match &r {
        ImageRef::Docker(reference) => Some(reference.name()),
        _ => None,
    };
    let summary = stowage_engine::inspect::inspect(&plan, name, Vec::new());
    serde_json::to_writer_pretty(&mut out, &summary)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
