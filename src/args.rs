//! Flags → engine options: the one place where the command line's values become the engine's
//! option structs (ripgrep's "low args → high args" step). `commands.rs` and `image.rs` both
//! use it; neither uses the other.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use stowage_engine::bootc::{self, System};
use stowage_engine::compression::{check_level, parallel, Compression};
use stowage_engine::copy::CopyOptions;
use stowage_engine::endpoint::EndpointOptions;
use stowage_engine::manifest::PlatformSpec;
use stowage_engine::ostree::import::{ImportOptions, VarHandling};
use stowage_engine::registry::{Credentials, RegistryOptions};

use stowage_engine::cstorage::catalog::{ListOptions, SortKey};

use crate::cli::{
    CompressFormat, CopyArgs, OstreeVar, PlatformOpts, RegistryOpts, RemoteOpts, SortBy,
    StorageOpts, SystemOpts,
};

/// The engine's compression for a `--dest-compress-format` choice.
pub fn compression(compress: Option<CompressFormat>) -> Option<Compression> {
    compress.map(|c| match c {
        CompressFormat::Gzip => Compression::Gzip,
        CompressFormat::Zstd => Compression::Zstd,
    })
}

/// Endpoint options for `copy`/`inspect`: the default containers-storage from `--storage-root`
/// and `--runroot`, and the destination compression.
pub fn endpoint_options(
    storage: &StorageOpts,
    compress: Option<CompressFormat>,
) -> EndpointOptions {
    let mut o = EndpointOptions::default();
    o.dest_compression = compression(compress);
    o.storage_root = storage.storage_root.clone();
    o.storage_runroot = storage.runroot.clone();
    o
}

fn seconds(what: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero() || what == "--retry-delay")
        .with_context(|| format!("{what} {v}: expected a positive number of seconds"))
}

/// The ostree import options of `--ostree-var`.
pub fn ostree_import(var: OstreeVar) -> ImportOptions {
    let mut o = ImportOptions::default();
    o.var = match var {
        OstreeVar::Keep => VarHandling::Keep,
        OstreeVar::Factory => VarHandling::FactoryVar,
    };
    o
}

/// Registry options for one side of an operation.
pub fn registry_options(
    opts: &RegistryOpts,
    creds: Option<&str>,
    tls_verify: Option<bool>,
    cert_dir: Option<&Path>,
) -> Result<RegistryOptions> {
    let credentials = match creds {
        Some(c) => Some(
            Credentials::parse(c)
                .with_context(|| "credentials must be USER[:PASSWORD] with a non-empty user")?,
        ),
        None => None,
    };
    let mut o = RegistryOptions::default();
    o.credentials = credentials;
    o.tls_verify = tls_verify;
    o.cert_dir = cert_dir.map(|p| p.to_path_buf());
    o.authfile = opts.authfile.clone();
    o.registries_conf = opts.registries_conf.clone();
    o.retry_times = opts.retry_times;
    o.retry_delay = seconds("--retry-delay", opts.retry_delay)?;
    o.connect_timeout = seconds("--connect-timeout", opts.connect_timeout)?;
    o.idle_timeout = seconds("--idle-timeout", opts.idle_timeout)?;
    o.min_rate = opts.min_rate;
    Ok(o)
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

    /// Likewise, with bootc's `/etc/ostree/auth.json` as the default auth file.
    pub fn bootc_options(&self) -> Result<RegistryOptions> {
        Ok(bootc::registry_options(self.options()?))
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

/// Copy options for the platform flags (and `--jobs` when given).
pub fn copy_options(opts: Option<&PlatformOpts>, jobs: Option<u16>) -> CopyOptions {
    let mut c = CopyOptions::default();
    if let Some(p) = opts {
        c.platform = platform(p);
    }
    if let Some(j) = jobs {
        c.jobs = j as usize;
    }
    c
}

/// Copy options for `stowage copy`: [`copy_options`] plus `--compress-threads` and
/// `--dest-compress-level` (checked against the format's levels before anything is copied).
pub fn copy_command_options(args: &CopyArgs) -> Result<CopyOptions> {
    let mut c = copy_options(Some(&args.platform), Some(args.jobs));
    if let Some(t) = args.compress_threads {
        c.compress_threads = t as usize;
    }
    if let Some(level) = args.dest_compress_level {
        let (range, format) = match args.dest_compress_format {
            Some(CompressFormat::Zstd) => (parallel::ZSTD_LEVELS, "zstd"),
            Some(CompressFormat::Gzip) | None => (parallel::GZIP_LEVELS, "gzip"),
        };
        check_level(Some(level), range, format).context("--dest-compress-level")?;
        c.compress_level = Some(level);
    }
    Ok(c)
}

impl SystemOpts {
    /// The bootc system these flags describe.
    pub fn system(&self) -> System {
        let mut s = System::default();
        s.sysroot = self.sysroot.clone();
        s.storage_root = self.bootc_storage.clone();
        s.storage_runroot = self.bootc_runroot.clone();
        s.host_storage_root = self.host_storage.clone();
        s.host_storage_runroot = self.host_runroot.clone();
        s.ostree_repo = self.ostree_repo.clone();
        s.root = self.root.clone();
        s.kernel_cmdline = self.kernel_cmdline.clone();
        s
    }
}

/// `image cmd list`'s listing options.
pub fn list_options(all: bool, filters: &[String], sort: SortBy) -> ListOptions {
    ListOptions {
        all,
        filters: filters.to_vec(),
        sort: match sort {
            SortBy::Created => SortKey::Created,
            SortBy::Id => SortKey::Id,
            SortBy::Repository => SortKey::Repository,
            SortBy::Size => SortKey::Size,
            SortBy::Tag => SortKey::Tag,
        },
    }
}
