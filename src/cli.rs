//! Command-line syntax (clap derive). Flag names follow skopeo and podman where they exist.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Container image storage engine: registries, OCI layouts, containers-storage and ostree,
/// in one static binary.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Graph root for `containers-storage:NAME` names without `[overlay@ROOT+RUNROOT]`.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/containers/storage",
        env = "STOWAGE_STORAGE_ROOT"
    )]
    pub storage_root: PathBuf,
    /// Run root for `containers-storage:NAME` names without `[overlay@ROOT+RUNROOT]`.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/run/containers/storage",
        env = "STOWAGE_STORAGE_RUNROOT"
    )]
    pub runroot: PathBuf,
    /// Suppress progress output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image between transports (skopeo copy).
    Copy(CopyArgs),
    /// Show an image's manifest digest, config summary and layers (skopeo inspect).
    Inspect(InspectArgs),
}

/// Layer compression choices.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressFormat {
    Gzip,
    Zstd,
}

/// Platform overrides for multi-arch images.
#[derive(Debug, Args)]
pub struct PlatformOpts {
    /// Use OS instead of the running OS when choosing from a multi-arch image.
    #[arg(long, value_name = "OS")]
    pub override_os: Option<String>,
    /// Use ARCH instead of the machine's architecture when choosing from a multi-arch image.
    #[arg(long, value_name = "ARCH")]
    pub override_arch: Option<String>,
    /// Use VARIANT instead of the machine's variant when choosing from a multi-arch image.
    #[arg(long, value_name = "VARIANT")]
    pub override_variant: Option<String>,
}

/// Registry options shared by every command that talks to a registry.
#[derive(Debug, Args)]
pub struct RegistryOpts {
    /// Path of the authentication file (default: REGISTRY_AUTH_FILE, then
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
    /// ~/.docker/config.json).
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
    /// registries.conf to use instead of /etc/containers/registries.conf (drop-ins in
    /// registries.conf.d still apply).
    #[arg(long, value_name = "PATH", env = "CONTAINERS_REGISTRIES_CONF")]
    pub registries_conf: Option<PathBuf>,
    /// Retries after a failed network operation (connection errors, 5xx, truncated or
    /// stalled transfers).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retry_times: u32,
    /// Delay before the first retry, in seconds (it doubles for each further retry).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    pub retry_delay: f64,
    /// Fail a transfer that receives no data for this many seconds (it is then retried).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Fail a connection attempt after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub connect_timeout: f64,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source image, e.g. oci:/path:tag, docker://quay.io/x/y:1, containers-storage:NAME.
    pub source: String,
    /// Destination image.
    pub destination: String,
    /// Compress layers in the destination with this format.
    #[arg(long, value_enum)]
    pub dest_compress_format: Option<CompressFormat>,
    /// Layers transferred at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Credentials (USER[:PASSWORD]) for a docker:// source.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub src_creds: Option<String>,
    /// Credentials (USER[:PASSWORD]) for a docker:// destination.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub dest_creds: Option<String>,
    /// Require https and verify certificates for a docker:// source (false: allow plain
    /// http and any certificate).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub src_tls_verify: Option<bool>,
    /// Require https and verify certificates for a docker:// destination.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dest_tls_verify: Option<bool>,
    /// Directory of CA certificates (*.crt) and client certificates (*.cert, *.key) for
    /// a docker:// source.
    #[arg(long, value_name = "DIR")]
    pub src_cert_dir: Option<PathBuf>,
    /// Likewise for a docker:// destination.
    #[arg(long, value_name = "DIR")]
    pub dest_cert_dir: Option<PathBuf>,
    /// Use --cert-dir for both sides (skopeo spells it --src-cert-dir/--dest-cert-dir).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub platform: PlatformOpts,
    #[command(flatten)]
    pub registry: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image, in transport syntax.
    pub image: String,
    /// Print the manifest (or index) bytes exactly as stored.
    #[arg(long, conflicts_with = "config")]
    pub raw: bool,
    /// Print the image config.
    #[arg(long)]
    pub config: bool,
    /// Do not list the repository's tags (docker:// images).
    #[arg(short = 'n', long)]
    pub no_tags: bool,
    /// Credentials (USER[:PASSWORD]) for the registry.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub creds: Option<String>,
    /// Require https and verify certificates (false: allow plain http and any certificate).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Directory of CA certificates (*.crt) and client certificates (*.cert, *.key).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub platform: PlatformOpts,
    #[command(flatten)]
    pub registry: RegistryOpts,
}
