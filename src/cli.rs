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

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source image, e.g. oci:/path:tag, docker://quay.io/x/y:1, containers-storage:NAME.
    pub source: String,
    /// Destination image.
    pub destination: String,
    /// Compress layers in the destination with this format.
    #[arg(long, value_enum)]
    pub dest_compress_format: Option<CompressFormat>,
    /// Write the digest of the stored manifest to this file.
    #[arg(long, value_name = "PATH")]
    pub digestfile: Option<std::path::PathBuf>,
    /// Layers transferred at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub platform: PlatformOpts,
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
    #[command(flatten)]
    pub platform: PlatformOpts,
}
