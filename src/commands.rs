//! Running parsed commands: build engine options, call the engine, print the result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use stowage_engine::compression::Compression;
use stowage_engine::copy::{copy_image, plan_image, CopyOptions};
use stowage_engine::endpoint::{open_sink, open_source, EndpointOptions};
use stowage_engine::manifest::PlatformSpec;
use stowage_engine::progress::Observed;
use stowage_engine::transport::ImageRef;

use stowage_engine::registry::{Credentials, RegistryOptions, RegistrySource};

use crate::cli::{
    Cli, Command, CompressFormat, CopyArgs, GlobalOpts, InspectArgs, PlatformOpts, RegistryOpts,
    RemoteOpts, StorageOpts,
};

/// Run `cli`, returning the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Copy(args) => copy(&cli.global, args),
        Command::Inspect(args) => inspect(args),
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

fn endpoint_options(storage: &StorageOpts, compress: Option<CompressFormat>) -> EndpointOptions {
    EndpointOptions {
        dest_compression: compression(compress),
        storage_root: storage.storage_root.clone(),
        storage_runroot: storage.runroot.clone(),
        src_registry: RegistryOptions::default(),
        dest_registry: RegistryOptions::default(),
    }
}

fn seconds(what: &str, v: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero() || what == "--retry-delay")
        .with_context(|| format!("{what} {v}: expected a positive number of seconds"))
}

/// Registry options for one side of an operation.
pub fn registry_options(
    opts: &RegistryOpts,
    creds: Option<&str>,
    tls_verify: Option<bool>,
    cert_dir: Option<&std::path::Path>,
) -> Result<RegistryOptions> {
    let credentials = match creds {
        Some(c) => Some(
            Credentials::parse(c)
                .with_context(|| "credentials must be USER[:PASSWORD] with a non-empty user")?,
        ),
        None => None,
    };
    Ok(RegistryOptions {
        credentials,
        tls_verify,
        cert_dir: cert_dir.map(|p| p.to_path_buf()),
        authfile: opts.authfile.clone(),
        registries_conf: opts.registries_conf.clone(),
        host: stowage_engine::registry::config::HostPaths::from_env(),
        retry_times: opts.retry_times,
        retry_delay: seconds("--retry-delay", opts.retry_delay)?,
        connect_timeout: seconds("--connect-timeout", opts.connect_timeout)?,
        idle_timeout: seconds("--idle-timeout", opts.idle_timeout)?,
        ..RegistryOptions::default()
    })
}

impl RemoteOpts {
    /// The engine's registry options for these flags.
    pub fn options(&self) -> Result<RegistryOptions> {
        registry_options(
            &self.registry,
            self.creds.as_deref(),
            self.tls_verify,
            self.cert_dir.as_deref(),
        )
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
    let mut opts = endpoint_options(&args.storage, args.dest_compress_format);
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
    let source = open_source(&src, &opts).with_context(|| format!("opening source {src}"))?;
    let sink = open_sink(&dst, &opts).with_context(|| format!("opening destination {dst}"))?;
    let copy_opts = CopyOptions {
        jobs: args.jobs as usize,
        platform: platform(&args.platform),
    };
    let report = match crate::progress::for_copy(global.quiet, args.progress_fd)? {
        Some(p) => copy_image(
            &Observed::source(source.as_ref(), p.clone()),
            &Observed::sink(sink.as_ref(), p),
            &copy_opts,
        ),
        None => copy_image(source.as_ref(), sink.as_ref(), &copy_opts),
    }
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

fn inspect(args: InspectArgs) -> Result<ExitCode> {
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
    serde_json::to_writer_pretty(&mut out, &summary)?;
    writeln!(out)?;
    Ok(ExitCode::SUCCESS)
}
