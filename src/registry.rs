//! `stowage login`, `logout`, `list-tags` and `sync`: build registry options (through `args`), call
//! the engine, print what podman and skopeo print.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use stowage_engine::reference::Reference;
use stowage_engine::registry::auth_file::find_credentials;
use stowage_engine::registry::manage::{self, auth_key};
use stowage_engine::registry::{Credentials, HostPaths, RegistrySource};
use stowage_engine::transport::ImageRef;

use crate::args::{copy_options, registry_options};
use crate::cli::{GlobalOpts, ListTagsArgs, LoginArgs, LogoutArgs, SyncArgs, SyncKind};

/// `stowage login REGISTRY`.
pub fn login(global: &GlobalOpts, args: LoginArgs) -> Result<ExitCode> {
    let opts = registry_options(
        &args.registry_opts,
        None,
        args.tls_verify,
        args.cert_dir.as_deref(),
    )?;
    let key = auth_key(&args.registry)?;
    if args.get_login {
        let (host, repo) = key.split_once('/').unwrap_or((key.as_str(), ""));
        let found = find_credentials(&opts.host, opts.authfile.as_deref(), host, repo)?;
        match found {
            Some(c) => {
                println!("{}", c.username);
                return Ok(ExitCode::SUCCESS);
            }
            None => bail!("not logged into {key}; `stowage login {key}` stores credentials"),
        }
    }
    let Some(username) = args.username.filter(|u| !u.is_empty()) else {
        bail!("stowage login {key}: give the user name with -u/--username");
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            s.strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&s)
                .to_string()
        }
        (None, false) => {
            bail!("stowage login {key}: give the password with --password-stdin (or -p/--password)")
        }
    };
    if password.is_empty() {
        bail!("stowage login {key}: the password is empty");
    }
    let creds = Credentials {
        username,
        password,
        identity_token: None,
    };
    let file =
        manage::login(&key, &creds, &opts).with_context(|| format!("logging in to {key}"))?;
    if !global.quiet {
        eprintln!("Credentials for {key} stored in {}", file.display());
    }
    println!("Login Succeeded!");
    Ok(ExitCode::SUCCESS)
}

/// `stowage logout [--all] REGISTRY`.
pub fn logout(global: &GlobalOpts, args: LogoutArgs) -> Result<ExitCode> {
    let host = HostPaths::from_env();
    let done = manage::logout(args.registry.as_deref(), &host, args.authfile.as_deref())
        .context("logging out")?;
    if !global.quiet {
        match &args.registry {
            Some(_) => eprintln!(
                "Removed login credentials for {} from {}",
                done.keys.join(", "),
                done.file.display()
            ),
            None => eprintln!(
                "Removed login credentials for all registries from {}",
                done.file.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `stowage list-tags docker://REPO`: skopeo's JSON, `{"Repository": …, "Tags": […]}`.
pub fn list_tags(args: ListTagsArgs) -> Result<ExitCode> {
    let Some(repo) = args.repository.strip_prefix("docker://") else {
        match ImageRef::parse(&args.repository) {
            Ok(r) => bail!(
                "list-tags {r}: only docker:// repositories have tags to list (skopeo list-tags docker://REPO)"
            ),
            Err(_) => bail!(
                "list-tags {}: expected docker://REPO (e.g. docker://quay.io/fedora/fedora)",
                args.repository
            ),
        }
    };
    let reference = Reference::parse(repo)?;
    if reference.tag().is_some() || reference.digest().is_some() {
        bail!(
            "list-tags {}: name the repository without a tag or digest (docker://{})",
            args.repository,
            reference.name()
        );
    }
    let opts = args.remote.options()?;
    let tags = RegistrySource::open(&reference, &opts)?
        .tags_paged(args.page_size)
        .with_context(|| format!("listing the tags of {}", reference.name()))?;
    let out = serde_json::json!({ "Repository": reference.name(), "Tags": tags });
    let mut stdout = std::io::stdout().lock();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut stdout,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    serde::Serialize::serialize(&out, &mut ser)?;
    writeln!(stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// `stowage sync --src docker|oci --dest oci|docker SOURCE DESTINATION`.
pub fn sync(global: &GlobalOpts, args: SyncArgs) -> Result<ExitCode> {
    let mut opts = stowage_engine::endpoint::EndpointOptions::default();
    (opts.src_registry, opts.dest_registry) = args.sides.options(&args.registry, None)?;
    let copy = copy_options(Some(&args.platform), Some(args.jobs));
    let strip = |s: &str| s.strip_prefix("docker://").unwrap_or(s).to_string();
    let done = match (args.src, args.dest) {
        (SyncKind::Docker, SyncKind::Oci) => {
            let source = Reference::parse(&strip(&args.source))?;
            stowage_engine::sync::registry_to_oci(
                &source,
                std::path::Path::new(&args.destination),
                args.scoped,
                &opts,
                &copy,
                None,
            )
            .with_context(|| format!("syncing {} to {}", args.source, args.destination))?
        }
        (SyncKind::Oci, SyncKind::Docker) => stowage_engine::sync::oci_to_registry(
            std::path::Path::new(&args.source),
            &strip(&args.destination),
            &opts,
            &copy,
            None,
        )
        .with_context(|| format!("syncing {} to {}", args.source, args.destination))?,
        (s, d) => bail!(
            "sync --src {} --dest {}: stowage syncs a registry to OCI layouts (--src docker --dest oci) or OCI layouts to a registry (--src oci --dest docker)",
            format!("{s:?}").to_lowercase(),
            format!("{d:?}").to_lowercase()
        ),
    };
    if !global.quiet {
        for s in &done {
            eprintln!(
                "Copied {} to {}: {} layer(s) copied, {} reused",
                s.source, s.destination, s.report.layers_copied, s.report.layers_reused
            );
        }
        eprintln!("Synced {} image(s)", done.len());
    }
    Ok(ExitCode::SUCCESS)
}
