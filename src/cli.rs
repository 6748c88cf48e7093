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
    /// Suppress progress output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The store that `containers-storage:NAME` (without `[overlay@ROOT+RUNROOT]`) means.
#[derive(Debug, Args)]
pub struct StorageOpts {
    /// Graph root for `containers-storage:NAME` names without `[overlay@ROOT+RUNROOT]`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/containers/storage",
        env = "STOWAGE_STORAGE_ROOT"
    )]
    pub storage_root: PathBuf,
    /// Run root for `containers-storage:NAME` names without `[overlay@ROOT+RUNROOT]`.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/run/containers/storage",
        env = "STOWAGE_STORAGE_RUNROOT"
    )]
    pub runroot: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image between transports (skopeo copy).
    Copy(CopyArgs),
    /// Show an image's manifest digest, config summary and layers (skopeo inspect).
    Inspect(InspectArgs),
    /// Images of a bootc system: list, copy to and from its stores, manage bootc's storage.
    Image(ImageArgs),
    /// Delete an image from its store (skopeo delete): ostree:[REPO]IMAGE removes the image
    /// ref, the layers only it used and the objects nothing references any more;
    /// containers-storage:NAME removes the image and its unshared layers.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The image, in transport syntax.
    pub image: String,
    #[command(flatten)]
    pub storage: StorageOpts,
}

/// Where the bootc system's stores are.
#[derive(Debug, Args)]
pub struct SystemOpts {
    /// The physical root of the bootc system.
    #[arg(long, global = true, value_name = "DIR", default_value = "/sysroot")]
    pub sysroot: PathBuf,
    /// bootc's containers-storage graph root [default: SYSROOT/ostree/bootc/storage].
    #[arg(
        long = "storage-root",
        visible_alias = "bootc-storage",
        global = true,
        value_name = "DIR"
    )]
    pub bootc_storage: Option<PathBuf>,
    /// Run root for bootc's containers-storage.
    #[arg(
        long = "runroot",
        visible_alias = "bootc-runroot",
        global = true,
        value_name = "DIR",
        default_value = "/run/bootc/storage"
    )]
    pub bootc_runroot: PathBuf,
    /// The host's default containers-storage graph root.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/var/lib/containers/storage"
    )]
    pub host_storage: PathBuf,
    /// The host's default containers-storage run root.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "/run/containers/storage"
    )]
    pub host_runroot: PathBuf,
    /// The ostree repository [default: SYSROOT/ostree/repo].
    #[arg(long, global = true, value_name = "DIR")]
    pub ostree_repo: Option<PathBuf>,
    /// The deployment root whose bound images are listed.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The kernel command line whose `ostree=` names the booted deployment.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        default_value = "/proc/cmdline"
    )]
    pub kernel_cmdline: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    pub system: SystemOpts,
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// Which images `image list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListType {
    All,
    Host,
    Unified,
    Logical,
}

/// `image cmd list --sort` keys (podman's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    Created,
    Id,
    Repository,
    Size,
    Tag,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List host (ostree), unified (bootc storage) and logically bound images.
    List {
        #[arg(long = "type", value_enum, default_value = "all")]
        list_type: ListType,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Copy an image into the host's containers-storage (default target localhost/bootc).
    CopyToStorage {
        /// The image to copy, in transport syntax [default: the booted deployment's image,
        /// exported from the ostree repository].
        #[arg(long)]
        source: Option<String>,
        /// Target name or transport string.
        #[arg(long, default_value = "localhost/bootc")]
        target: String,
    },
    /// Copy an image from the host's default containers-storage into bootc's storage, sharing
    /// file data where the filesystem allows (reflinks, else hard links).
    PullFromDefaultStorage {
        /// Image name or ID in the host's store.
        image: String,
    },
    /// Operate on bootc's containers-storage, like `podman image` (no podman needed).
    Cmd {
        #[command(subcommand)]
        command: CmdCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CmdCommand {
    /// List images (podman images).
    #[command(alias = "ls")]
    ///
    /// With `-q` (the global quiet flag) and the table format, only the image IDs, one per
    /// line, as `podman images -q` prints them for `$(…)` loops.
    List {
        /// `table` (default), `json`, or a Go template: `{{.ID}}`, `{{.Repository}}:{{.Tag}}`,
        /// `table {{.ID}}\t{{.Size}}` (with a header row), `{{json .}}`.
        #[arg(long, value_name = "FORMAT")]
        format: Option<String>,
        /// Show intermediate images too.
        #[arg(short, long)]
        all: bool,
        /// Add the manifest digest column to the table.
        #[arg(long)]
        digests: bool,
        /// Only images matching KEY=VALUE: reference=PATTERN, label=KEY[=VALUE],
        /// dangling=true|false, before=IMAGE, since=IMAGE, id=ID, digest=DIGEST (repeatable;
        /// the same key: any may match; different keys: all must).
        #[arg(short = 'f', long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
        /// Order of the rows.
        #[arg(long, value_enum, default_value = "created")]
        sort: SortBy,
        /// Leave out the table's header line.
        #[arg(short = 'n', long)]
        noheading: bool,
        /// Print full image IDs instead of their first 12 digits.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show images as podman image inspect does. Images that are not found are named on
    /// stderr and make the exit code 125; the others are still printed.
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
        /// `json` (default) or a Go template over podman's inspect fields: `{{.Id}}`,
        /// `{{.RepoTags}}`, `{{index .Config.Labels "KEY"}}`, `{{json .Config}}`.
        #[arg(short, long, value_name = "FORMAT")]
        format: Option<String>,
    },
    /// Exit 0 when the image exists, 1 when it does not, 125 on an error (an invalid name, an
    /// unreadable store), as podman.
    Exists { image: String },
    /// Add names to an image.
    Tag {
        image: String,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove names from an image (all of them when none is given).
    Untag { image: String, names: Vec<String> },
    /// Remove images and the layers only they use.
    #[command(alias = "rmi")]
    Rm {
        /// Remove the image even when it has several names.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove dangling (unnamed) images, or with `-a` every image no container uses. Asks
    /// first when stdin is a terminal, as podman does, unless `-f`.
    Prune {
        /// Remove every unused image, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        force: bool,
    },
    /// Pull images into bootc's storage (several at once).
    Pull {
        #[arg(required = true)]
        images: Vec<String>,
        #[command(flatten)]
        platform: PlatformOpts,
        /// Write machine-readable progress to file descriptor N (bootc's JSON Lines protocol).
        #[arg(long, value_name = "N")]
        progress_fd: Option<u32>,
        /// Without --authfile, bootc's own /etc/ostree/auth.json is used when it exists.
        #[command(flatten)]
        remote: RemoteOpts,
    },
    /// Push an image from bootc's storage to a destination (default: the registry it names).
    Push {
        image: String,
        destination: Option<String>,
        /// Compress layers with this format.
        #[arg(long, value_enum)]
        dest_compress_format: Option<CompressFormat>,
        /// Write machine-readable progress to file descriptor N (bootc's JSON Lines protocol).
        #[arg(long, value_name = "N")]
        progress_fd: Option<u32>,
        /// Without --authfile, bootc's own /etc/ostree/auth.json is used when it exists.
        #[command(flatten)]
        remote: RemoteOpts,
    },
}

/// How a command with one registry side reaches it (podman's and `skopeo inspect`'s flag
/// names).
#[derive(Debug, Args)]
pub struct RemoteOpts {
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
    pub registry: RegistryOpts,
}

/// Layer compression choices.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompressFormat {
    Gzip,
    Zstd,
}

/// Where an ostree import puts the layers' `/var`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OstreeVar {
    /// Keep it as `var` (what ostree-rs-ext does with ostree 2024.3 and newer).
    Keep,
    /// Move it to `usr/share/factory/var` (ostree-rs-ext with an older ostree, which
    /// copies it to /var at boot with systemd-tmpfiles).
    Factory,
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
    /// Fail a blob download that averages less than this many bytes per second over all its
    /// attempts (it has 2 × --idle-timeout + SIZE / RATE seconds; 0: no limit).
    #[arg(long, value_name = "BYTES_PER_SECOND", default_value_t = 65536)]
    pub min_rate: u64,
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
    /// The level of layers the destination compresses (gzip 0-9, default 3; zstd 1-22,
    /// default 3).
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub dest_compress_level: Option<i32>,
    /// Write the digest of the stored manifest to this file.
    #[arg(long, value_name = "PATH")]
    pub digestfile: Option<std::path::PathBuf>,
    /// For an ostree: destination, where the layers' /var goes.
    #[arg(long, value_enum, default_value = "keep")]
    pub ostree_var: OstreeVar,
    /// Layers transferred at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Threads that compress one layer when the destination compresses it (default: the
    /// number of CPUs); the compressed bytes are the same whatever it is.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub compress_threads: Option<u16>,
    /// Write machine-readable progress to file descriptor N as JSON Lines (bootc's
    /// --progress-fd protocol); independent of --quiet.
    #[arg(long, value_name = "N")]
    pub progress_fd: Option<u32>,
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
    #[command(flatten)]
    pub storage: StorageOpts,
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
    /// A Go template over skopeo inspect's fields (`{{.Digest}}`, `{{.Name}}`,
    /// `{{index .Labels "KEY"}}`, `{{json .}}`).
    #[arg(short, long, value_name = "FORMAT", conflicts_with_all = ["raw", "config"])]
    pub format: Option<String>,
    #[command(flatten)]
    pub remote: RemoteOpts,
    #[command(flatten)]
    pub platform: PlatformOpts,
    #[command(flatten)]
    pub storage: StorageOpts,
}
