//! `stowage copy` and `stowage inspect`: build engine options (through `args`), call the
//! engine, print the result.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use stowage_engine::copy::plan_image;
use stowage_engine::endpoint::{copy_between, delete as delete_image, open_source, Deleted};
use stowage_engine::registry::RegistrySource;
use stowage_engine::transport::ImageRef;

use crate::args::{copy_args_options, endpoint_options, platform};
use crate::cli::{
    CopyArgs, DeleteArgs, GenerateKeyArgs, GlobalOpts, ImagesArgs, InfoArgs, InspectArgs,
    OutputFormat,
};

fn parse_ref(s: &str) -> Result<ImageRef> {
    Ok(ImageRef::parse(s)?)
}

/// `stowage copy SRC DST`.
pub fn copy(global: &GlobalOpts, args: CopyArgs) -> Result<ExitCode> {
    let src = parse_ref(&args.source)?;
    let dst = parse_ref(&args.destination)?;
    let mut opts = endpoint_options(&args.storage, args.dest_compress_format);
    opts.ostree_import = crate::args::ostree_import(args.ostree_var);
    (opts.src_registry, opts.dest_registry) = args
        .sides
        .options(&args.registry, args.cert_dir.as_deref())?;
    opts.additional_tags = args.additional_tag.clone();
    opts.policy = crate::args::policy(global);
    opts.remove_signatures = args.remove_signatures;
    if let Some(key) = &args.sign_by_sigstore_private_key {
        opts.sign_by_sigstore = Some(std::sync::Arc::new(crate::args::signing_key(
            key,
            args.sign_passphrase_file.as_deref(),
        )?));
    }
    if let Some(identity) = &args.sign_identity {
        opts.sign_identity = Some(
            stowage_engine::Reference::parse(identity)
                .with_context(|| format!("--sign-identity {identity}"))?,
        );
    }
    let mut copy = copy_args_options(&args)?;
    copy.cancel = crate::interrupt::install()?;
    let progress = crate::progress::for_copy(global.quiet, args.progress_fd)?;
    let report = copy_between(&src, &dst, &opts, &copy, progress.as_ref())
        .with_context(|| format!("copying {src} to {dst}"))?;
    if let Some(path) = &args.digestfile {
        std::fs::write(path, report.manifest_digest.to_string())
            .with_context(|| format!("writing the manifest digest to {}", path.display()))?;
    }
    for note in &report.notes {
        eprintln!("Note: {note}");
    }
    if !global.quiet {
        if report.images == 0 {
            eprintln!(
                "Copied the index only (--multi-arch index-only), in {:.2?}; index {}",
                report.elapsed, report.manifest_digest
            );
        } else if report.images == 1 {
            eprintln!(
                "Copied {} layer(s) ({} bytes), reused {}, in {:.2?}; manifest {}{}",
                report.layers_copied,
                report.layer_bytes,
                report.layers_reused,
                report.elapsed,
                report.manifest_digest,
                crate::progress::files_suffix(&report)
            );
        } else {
            eprintln!(
                "Copied {} image(s): {} layer(s) ({} bytes), reused {}, in {:.2?}; index {}{}",
                report.images,
                report.layers_copied,
                report.layer_bytes,
                report.layers_reused,
                report.elapsed,
                report.manifest_digest,
                crate::progress::files_suffix(&report)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `stowage generate-sigstore-key --output-prefix PREFIX --passphrase-file FILE`.
pub fn generate_sigstore_key(args: GenerateKeyArgs) -> Result<ExitCode> {
    let pass = crate::args::passphrase(&args.passphrase_file)?;
    let (private, public) = stowage_engine::policy::sigstore::generate_key_pair(&pass)?;
    let mut prefix = args.output_prefix.into_os_string();
    let key = {
        let mut p = prefix.clone();
        p.push(".key");
        std::path::PathBuf::from(p)
    };
    prefix.push(".pub");
    let public_path = std::path::PathBuf::from(prefix);
    for (path, text, mode) in [(&key, &private, 0o600), (&public_path, &public, 0o644)] {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("Key written to {}", key.display());
    println!("Public key written to {}", public_path.display());
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
    let mut opts = endpoint_options(&args.storage, None);
    opts.dest_registry = args.remote.options()?;
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
            Deleted::Registry(digest) => eprintln!("Deleted {r} (manifest {digest})"),
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

/// `stowage info`: the default containers-storage as storage.conf and the rootless defaults
/// make it (with `--storage-root`/`--runroot` applied), in the shape of `podman info`'s
/// `store` section.
pub fn info(args: InfoArgs) -> Result<ExitCode> {
    let opts = endpoint_options(&args.storage, None);
    let c = opts
        .default_store()
        .context("resolving the default containers-storage")?;
    let driver = c
        .driver
        .clone()
        .unwrap_or_else(|| stowage_engine::cstorage::DRIVER.to_string());
    let images = c
        .open_read_only()
        .and_then(|s| s.images())
        .map(|i| i.len())
        .ok();
    let store = serde_json::json!({
        "configFile": c.config_file,
        "graphDriverName": driver,
        "graphRoot": c.graph_root,
        "runRoot": c.run_root,
        "rootless": c.rootless,
        "additionalImageStores": c.additional_image_stores,
        "mountProgram": c.mount_program,
        "imageStore": { "number": images },
    });
    let mut out = std::io::stdout().lock();
    match args.format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "store": store }))?;
            writeln!(out)?;
        }
        OutputFormat::Table => {
            writeln!(out, "store:")?;
            writeln!(out, "  configFile: {}", c.config_file.display())?;
            writeln!(out, "  graphDriverName: {driver}")?;
            writeln!(out, "  graphRoot: {}", c.graph_root.display())?;
            writeln!(out, "  runRoot: {}", c.run_root.display())?;
            writeln!(out, "  rootless: {}", c.rootless)?;
            for p in &c.additional_image_stores {
                writeln!(out, "  additionalImageStore: {}", p.display())?;
            }
            if let Some(m) = &c.mount_program {
                writeln!(
                    out,
                    "  mountProgram: {} (not needed: stowage does not mount)",
                    m.display()
                )?;
            }
            match images {
                Some(n) => writeln!(out, "  images: {n}")?,
                None => writeln!(out, "  images: unreadable with stowage (driver {driver})")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `stowage images`: the default store's images and those of its additional image stores, as
/// `podman images` lists them (JSON entries of read-only stores carry `"ReadOnly": true`),
/// printed by the same code as `image cmd list`, with the same flags.
pub fn images(global: &GlobalOpts, args: ImagesArgs) -> Result<ExitCode> {
    let opts = endpoint_options(&args.storage, None);
    let config = match opts.default_store() {
        Ok(c) => c,
        Err(e) => {
            return crate::table::podman_error(
                &anyhow::Error::new(e).context("resolving the default containers-storage"),
            )
        }
    };
    let list = &args.list;
    let rows = config.list_rows(&crate::args::list_options(
        list.all,
        &list.filter,
        list.sort,
    ));
    crate::table::print_image_list(rows, list, global.quiet)
}
