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
use stowage_engine::policy::{PolicySetting, PrivateKey};

use crate::cli::{
    BuildArgs, BuildPull, CompressFormat, CopyArgs, GlobalOpts, ManifestFormatOpt, MultiArchOpt,
    OstreeVar, PlatformOpts, RegistryOpts, RemoteOpts, SidesOpts, SortBy, StorageOpts, SystemOpts,
};
use stowage_engine::convert::ManifestFormat;
use stowage_engine::copy::MultiArch;

/// The engine's compression for a `--dest-compress-format` choice.
pub fn compression(compress: Option<CompressFormat>) -> Option<Compression> {
    compress.map(|c| match c {
        CompressFormat::Gzip => Compression::Gzip,
        CompressFormat::Zstd => Compression::Zstd,
        CompressFormat::ZstdChunked => Compression::ZstdChunked,
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

/// The signature policy for `--policy` / `--insecure-policy`.
pub fn policy(global: &GlobalOpts) -> PolicySetting {
    match (&global.policy, global.insecure_policy) {
        (_, true) => PolicySetting::InsecureAcceptAnything,
        (Some(p), false) => PolicySetting::File(p.clone()),
        (None, false) => PolicySetting::default(),
    }
}

/// The first line of a passphrase file (without its line end).
pub fn passphrase(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading the passphrase file {}", path.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

/// The signing key of `--sign-by-sigstore-private-key` (decrypted with
/// `--sign-passphrase-file`, else an empty passphrase).
pub fn signing_key(key: &Path, passphrase_file: Option<&Path>) -> Result<PrivateKey> {
    let bytes = std::fs::read(key)
        .with_context(|| format!("reading the sigstore private key {}", key.display()))?;
    let pass = match passphrase_file {
        Some(p) => passphrase(p)?,
        None => Vec::new(),
    };
    Ok(PrivateKey::from_encrypted_pem(
        &bytes,
        &pass,
        &format!("sigstore private key {}", key.display()),
    )?)
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
    o.registries_d = opts.registries_d.clone();
    o.retry_times = opts.retry_times;
    o.retry_delay = seconds("--retry-delay", opts.retry_delay)?;
    o.connect_timeout = seconds("--connect-timeout", opts.connect_timeout)?;
    o.idle_timeout = seconds("--idle-timeout", opts.idle_timeout)?;
    o.min_rate = opts.min_rate;
    Ok(o)
}

impl SidesOpts {
    /// The engine's registry options for the source and the destination; `cert_dir` (copy's
    /// `--cert-dir`) serves a side that has no `--src-cert-dir` / `--dest-cert-dir` of its own.
    pub fn options(
        &self,
        registry: &RegistryOpts,
        cert_dir: Option<&Path>,
    ) -> Result<(RegistryOptions, RegistryOptions)> {
        let src = registry_options(
            registry,
            self.src_creds.as_deref(),
            self.src_tls_verify,
            self.src_cert_dir.as_deref().or(cert_dir),
        )?;
        let dest = registry_options(
            registry,
            self.dest_creds.as_deref(),
            self.dest_tls_verify,
            self.dest_cert_dir.as_deref().or(cert_dir),
        )?;
        Ok((src, dest))
    }
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

/// `stowage copy`'s copy options: platform, jobs, `--all`/`--multi-arch`,
/// `--preserve-digests`, `--format`, `--compress-threads` and `--dest-compress-level`
/// (checked against the format's levels before anything is copied).
pub fn copy_args_options(args: &CopyArgs) -> Result<CopyOptions> {
    let mut c = copy_options(Some(&args.platform), Some(args.jobs));
    c.multi_arch = match (args.all, args.multi_arch) {
        (true, _) | (_, Some(MultiArchOpt::All)) => MultiArch::All,
        (_, Some(MultiArchOpt::IndexOnly)) => MultiArch::IndexOnly,
        _ => MultiArch::System,
    };
    c.preserve_digests = args.preserve_digests;
    c.partial_pulls = !args.no_partial_pull;
    c.manifest_format = args.format.map(|f| match f {
        ManifestFormatOpt::Oci => ManifestFormat::Oci,
        ManifestFormatOpt::V2s2 => ManifestFormat::DockerV2S2,
    });
    if let Some(t) = args.compress_threads {
        c.compress_threads = t as usize;
    }
    if let Some(level) = args.dest_compress_level {
        let (range, format) = match args.dest_compress_format {
            Some(CompressFormat::Zstd | CompressFormat::ZstdChunked) => {
                (parallel::ZSTD_LEVELS, "zstd")
            }
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

/// `image cmd build`'s flags as the engine's build options and pull policy.
pub fn build_options(
    b: &BuildArgs,
) -> Result<(
    stowage_engine::build::BuildOptions,
    stowage_engine::bootc::build::PullPolicy,
)> {
    use stowage_engine::bootc::build::PullPolicy;
    use stowage_engine::cstorage::catalog::local_name;
    if b.format != "oci" {
        anyhow::bail!(
            "--format {}: stowage writes OCI images only; use --format oci (or leave it out)",
            b.format
        );
    }
    if !b.context.is_dir() {
        anyhow::bail!(
            "the build context {} is not a directory; give the directory COPY and ADD read from",
            b.context.display()
        );
    }
    let file = match &b.file {
        Some(f) if f.is_relative() && !f.exists() && b.context.join(f).exists() => {
            b.context.join(f)
        }
        Some(f) => f.clone(),
        None => ["Containerfile", "Dockerfile"]
            .iter()
            .map(|n| b.context.join(n))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no Containerfile or Dockerfile in {}; give one with -f FILE",
                    b.context.display()
                )
            })?,
    };
    let mut o = stowage_engine::build::BuildOptions::new(file, b.context.clone());
    for t in &b.tags {
        o.tags.push(
            local_name(t)
                .with_context(|| format!("-t {t}: not a valid image name"))?
                .to_string(),
        );
    }
    for a in &b.build_args {
        match a.split_once('=') {
            Some((k, v)) => o.build_args.push((k.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(a) {
                    o.build_args.push((a.clone(), v));
                }
            }
        }
    }
    for l in &b.labels {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.is_empty() {
            anyhow::bail!("--label {l:?}: expected KEY=VALUE");
        }
        o.labels.push((k.to_string(), v.to_string()));
    }
    o.timestamp = b.timestamp;
    o.target = b.target.clone();
    o.ignore_file = b.ignorefile.clone();
    let policy = if b.pull_never {
        PullPolicy::Never
    } else if b.pull_always {
        PullPolicy::Always
    } else {
        match b.pull {
            BuildPull::Always | BuildPull::True => PullPolicy::Always,
            BuildPull::Never => PullPolicy::Never,
            BuildPull::Missing | BuildPull::Newer | BuildPull::False => PullPolicy::Missing,
        }
    };
    Ok((o, policy))
}
