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
    /// What is logged on stderr: trace, debug (every registry request), info (the files,
    /// credentials and policy used; each layer), warn, error [default: warn].
    #[arg(long, global = true, value_name = "LEVEL", value_parser = crate::logging::parse_level)]
    pub log_level: Option<log::LevelFilter>,
    /// Log more: -v info, -vv debug, -vvv trace (--log-level wins).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The signature policy to enforce on every copy and pull [default:
    /// ~/.config/containers/policy.json, else /etc/containers/policy.json; neither is an error].
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        conflicts_with = "insecure_policy"
    )]
    pub policy: Option<PathBuf>,
    /// Copy and pull without any signature policy (accept every image), as skopeo's flag.
    #[arg(long, global = true)]
    pub insecure_policy: bool,
}

/// The store that `containers-storage:NAME` (without `[overlay@ROOT+RUNROOT]`) means.
#[derive(Debug, Args)]
pub struct StorageOpts {
    /// Graph root for `containers-storage:NAME` names without `[overlay@ROOT+RUNROOT]`
    /// [default: storage.conf's graphroot, as podman; `stowage info` shows it].
    #[arg(long, value_name = "DIR", env = "STOWAGE_STORAGE_ROOT")]
    pub storage_root: Option<PathBuf>,
    /// Run root for `containers-storage:NAME` names without `[overlay@ROOT+RUNROOT]`
    /// [default: storage.conf's runroot].
    #[arg(long, value_name = "DIR", env = "STOWAGE_STORAGE_RUNROOT")]
    pub runroot: Option<PathBuf>,
}

// Parsed once per run; boxing the copy flags would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Copy an image between transports (skopeo copy).
    Copy(CopyArgs),
    /// Show an image's manifest digest, config summary and layers (skopeo inspect).
    Inspect(InspectArgs),
    /// Images of a bootc system: list, copy to and from its stores, manage bootc's storage.
    Image(ImageArgs),
    /// Generate a sigstore (cosign) key pair: PREFIX.key (encrypted private key) and PREFIX.pub.
    GenerateSigstoreKey(GenerateKeyArgs),
    /// Delete an image from its store (skopeo delete): ostree:[REPO]IMAGE removes the image
    /// ref, the layers only it used and the objects nothing references any more;
    /// containers-storage:NAME removes the image and its unshared layers.
    Delete(DeleteArgs),
    /// List the default containers-storage's images and those of storage.conf's additional
    /// image stores (podman images).
    Images(ImagesArgs),
    /// Show where the default containers-storage is (storage.conf, rootless defaults), like
    /// `podman info`'s `store` section.
    Info(InfoArgs),
    /// Log in to a registry: check the credentials, then store them in the auth file podman
    /// reads ($REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json).
    Login(LoginArgs),
    /// Remove a registry's credentials from the auth file.
    Logout(LogoutArgs),
    /// List a registry repository's tags, as skopeo list-tags (JSON).
    ListTags(ListTagsArgs),
    /// Copy every tag of a registry repository into OCI layouts, or every image of OCI layouts
    /// into a registry (skopeo sync --src docker --dest dir, and back).
    Sync(SyncArgs),
    /// Print a shell completion script, generated from this command line's definition:
    /// `source <(stowage completion bash)`, or save it where the shell loads completions
    /// (docs/cli.md).
    Completion(CompletionArgs),
    /// Write the manual pages (roff, section 1), one per command and subcommand: stowage.1,
    /// stowage-copy.1, stowage-image-cmd-list.1, … (`stowage man --output
    /// /usr/local/share/man/man1`).
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created when missing; pages of the same name
    /// are replaced).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
}

/// The two sides `stowage sync` moves images between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncKind {
    /// A registry: HOST/REPO[:TAG] as source, HOST[/NAMESPACE] as destination.
    Docker,
    /// A directory of OCI layouts.
    Oci,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// What SOURCE is.
    #[arg(long = "src", value_enum)]
    pub src: SyncKind,
    /// What DESTINATION is.
    #[arg(long = "dest", value_enum)]
    pub dest: SyncKind,
    /// Registry → directory: put the layout at DESTINATION/HOST/REPO (a `:` in HOST written
    /// as `_`) instead of DESTINATION/<last component of REPO>.
    #[arg(long)]
    pub scoped: bool,
    /// HOST/REPO (every tag) or HOST/REPO:TAG for --src docker; a directory for --src oci.
    pub source: String,
    /// A directory for --dest oci; HOST[/NAMESPACE] for --dest docker.
    pub destination: String,
    #[command(flatten)]
    pub sides: SidesOpts,
    /// Layers transferred at once.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub platform: PlatformOpts,
    #[command(flatten)]
    pub registry: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    #[command(flatten)]
    pub list: ListArgs,
    #[command(flatten)]
    pub storage: StorageOpts,
}

/// `podman images`' flags, shared by `stowage images` and `stowage image cmd list`.
///
/// With `-q` (the global quiet flag) and the table format, only the image IDs, one per
/// line, as `podman images -q` prints them for `$(…)` loops.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// `table` (default), `json`, or a Go template: `{{.ID}}`, `{{.Repository}}:{{.Tag}}`,
    /// `table {{.ID}}\t{{.Size}}` (with a header row), `{{json .}}`.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Show intermediate images too.
    #[arg(short, long)]
    pub all: bool,
    /// Add the manifest digest column to the table.
    #[arg(long)]
    pub digests: bool,
    /// Only images matching KEY=VALUE: reference=PATTERN, label=KEY[=VALUE],
    /// dangling=true|false, intermediate=true|false (with -a), readonly=true|false,
    /// before=IMAGE, since=IMAGE, until=TIME (10h, 2024-01-02, RFC 3339, epoch seconds),
    /// id=ID (the full ID), digest=DIGEST (repeatable; the same key: any may match;
    /// different keys: all must).
    #[arg(short = 'f', long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Order of the rows.
    #[arg(long, value_enum, default_value = "created")]
    pub sort: SortBy,
    /// Leave out the table's header line.
    #[arg(short = 'n', long)]
    pub noheading: bool,
    /// Print full image IDs instead of their first 12 digits.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    #[command(flatten)]
    pub storage: StorageOpts,
}

#[derive(Debug, Args)]
pub struct GenerateKeyArgs {
    /// Write PREFIX.key and PREFIX.pub (neither may exist).
    #[arg(long, value_name = "PREFIX")]
    pub output_prefix: PathBuf,
    /// Read the passphrase that encrypts the private key from this file (first line).
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The image, in transport syntax.
    pub image: String,
    #[command(flatten)]
    pub storage: StorageOpts,
    /// For docker:// images.
    #[command(flatten)]
    pub remote: RemoteOpts,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (HOST[:PORT], or HOST[:PORT]/NAMESPACE for credentials of one namespace).
    pub registry: String,
    /// The user name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password (visible to other users in the process list; prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (up to the end, one trailing newline removed).
    #[arg(long)]
    pub password_stdin: bool,
    /// Print the user name stored for the registry and stop.
    #[arg(long, conflicts_with_all = ["username", "password", "password_stdin"])]
    pub get_login: bool,
    /// Require https and verify certificates (false: allow plain http and any certificate).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// Directory of CA certificates (*.crt) and client certificates (*.cert, *.key).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry_opts: RegistryOpts,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry to forget.
    #[arg(required_unless_present = "all")]
    pub registry: Option<String>,
    /// Remove the credentials of every registry from the auth file.
    #[arg(short, long, conflicts_with = "registry")]
    pub all: bool,
    /// The auth file (default: REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json).
    #[arg(long, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListTagsArgs {
    /// The repository: docker://REPO (without a tag or digest).
    pub repository: String,
    /// Ask for this many tags per request (the registry's Link headers lead to the rest).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
    #[command(flatten)]
    pub remote: RemoteOpts,
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
    /// The host's default containers-storage graph root [default: storage.conf's, as podman].
    #[arg(long, global = true, value_name = "DIR")]
    pub host_storage: Option<PathBuf>,
    /// The host's default containers-storage run root [default: storage.conf's].
    #[arg(long, global = true, value_name = "DIR")]
    pub host_runroot: Option<PathBuf>,
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
        command: Box<CmdCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CmdCommand {
    /// List images (podman images).
    #[command(alias = "ls")]
    ///
    /// With `-q` (the global quiet flag) and the table format, only the image IDs, one per
    /// line, as `podman images -q` prints them for `$(…)` loops.
    List(ListArgs),
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
        /// Images to pull (short names resolve as podman resolves them).
        #[arg(required_unless_present = "bound")]
        images: Vec<String>,
        /// Also pull the deployment's logically bound images (ROOT/usr/lib/bootc/bound-images.d,
        /// --rootfs) that bootc's store does not have yet, all at once.
        #[arg(long)]
        bound: bool,
        #[command(flatten)]
        platform: PlatformOpts,
        /// Write machine-readable progress to file descriptor N (bootc's JSON Lines protocol).
        #[arg(long, value_name = "N")]
        progress_fd: Option<u32>,
        /// Without --authfile, bootc's own /etc/ostree/auth.json is used when it exists.
        #[command(flatten)]
        remote: RemoteOpts,
    },
    /// Build an image from a Containerfile into bootc's storage, without a container runtime
    /// (podman build's flags): FROM (bootc's storage, else pulled), COPY, ADD (local files;
    /// local tar archives unpacked), ENV, LABEL, WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE, ARG,
    /// VOLUME, STOPSIGNAL, SHELL; one new layer per build. RUN is refused (it needs a
    /// container runtime). Prints the image ID on stdout.
    Build(Box<BuildArgs>),
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

/// `image cmd build`'s flags (podman build's names).
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: the directory COPY and ADD sources are relative to.
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Name the image (repeatable); a short name goes under localhost/, as podman names it.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// The Containerfile [default: CONTEXT/Containerfile, else CONTEXT/Dockerfile].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Set an ARG (repeatable); `--build-arg KEY` takes KEY's value from the environment.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Add a label to the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Use this time (seconds since the epoch) as the image's creation time and as every
    /// file's mtime in the new layer, for reproducible images.
    #[arg(long, value_name = "SECONDS")]
    pub timestamp: Option<i64>,
    /// Build this stage (FROM IMAGE AS STAGE) instead of the last.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// When to pull base images: missing (default), always, never (a bare --pull: always).
    #[arg(long, value_enum, value_name = "POLICY", num_args = 0..=1, require_equals = true, default_missing_value = "always", default_value = "missing")]
    pub pull: BuildPull,
    /// --pull=always.
    #[arg(long)]
    pub pull_always: bool,
    /// --pull=never.
    #[arg(long)]
    pub pull_never: bool,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Ignore file instead of CONTEXT/.containerignore (or .dockerignore).
    #[arg(long, value_name = "FILE")]
    pub ignorefile: Option<PathBuf>,
    /// The image format: only oci (the format stowage writes).
    #[arg(long, value_name = "FORMAT", default_value = "oci")]
    pub format: String,
    /// Accepted for podman compatibility; a build always makes one new layer.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub layers: Option<bool>,
    /// Accepted for podman compatibility (there is no build cache).
    #[arg(long)]
    pub no_cache: bool,
    /// Accepted for podman compatibility (the build's instructions make one layer anyway).
    #[arg(long)]
    pub squash: bool,
    /// Without --authfile, bootc's own /etc/ostree/auth.json is used when it exists (for
    /// pulling base images).
    #[command(flatten)]
    pub remote: RemoteOpts,
}

/// podman build's `--pull` policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildPull {
    /// Pull a base image only when bootc's storage lacks it.
    Missing,
    /// Always pull base images.
    Always,
    /// Never pull (a missing base image is an error).
    Never,
    /// podman's `newer`; treated as missing (the store's image is used when present).
    Newer,
    /// podman's `true`: always.
    True,
    /// podman's `false`: missing.
    False,
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
    /// zstd with one frame per file and a table of contents (containers/storage's
    /// zstd:chunked, which podman can pull partially).
    #[value(name = "zstd:chunked")]
    ZstdChunked,
}

/// `copy --multi-arch` choices (skopeo's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MultiArchOpt {
    /// The image for this machine's platform (or --override-*).
    System,
    /// Every image and the index.
    All,
    /// Only the index (its images must already be in the destination, or it must accept a
    /// sparse index, as an OCI layout does).
    IndexOnly,
}

/// `copy --format` choices (skopeo's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormatOpt {
    /// OCI image manifest / index.
    Oci,
    /// Docker schema2 manifest / manifest list.
    V2s2,
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

/// How a command with a source and a destination reaches each side when it is a registry
/// (skopeo's `--src-*` / `--dest-*` flag names); `copy` and `sync` share them.
#[derive(Debug, Args)]
pub struct SidesOpts {
    /// Credentials (USER[:PASSWORD]) for a docker:// (registry) source.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub src_creds: Option<String>,
    /// Credentials (USER[:PASSWORD]) for a docker:// (registry) destination.
    #[arg(long, value_name = "USER[:PASSWORD]")]
    pub dest_creds: Option<String>,
    /// Require https and verify certificates for a docker:// (registry) source (false: allow
    /// plain http and any certificate).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub src_tls_verify: Option<bool>,
    /// Require https and verify certificates for a docker:// (registry) destination.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dest_tls_verify: Option<bool>,
    /// Directory of CA certificates (*.crt) and client certificates (*.cert, *.key) for
    /// a docker:// (registry) source.
    #[arg(long, value_name = "DIR")]
    pub src_cert_dir: Option<PathBuf>,
    /// Likewise for a docker:// (registry) destination.
    #[arg(long, value_name = "DIR")]
    pub dest_cert_dir: Option<PathBuf>,
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
    /// registries.d directory (signature storage, use-sigstore-attachments) instead of
    /// ~/.config/containers/registries.d or /etc/containers/registries.d.
    #[arg(long = "registries.d", value_name = "DIR")]
    pub registries_d: Option<PathBuf>,
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
    /// The level of layers the destination compresses (gzip 0-9, default 3; zstd and
    /// zstd:chunked 1-22, default 3).
    #[arg(long, value_name = "LEVEL", allow_negative_numbers = true)]
    pub dest_compress_level: Option<i32>,
    /// Write the digest of the stored manifest (with --all: of the index) to this file.
    #[arg(long, value_name = "PATH")]
    pub digestfile: Option<std::path::PathBuf>,
    /// Copy every image of a multi-arch index and the index itself (--multi-arch all).
    #[arg(short = 'a', long, conflicts_with = "multi_arch")]
    pub all: bool,
    /// What to copy of a multi-arch index: the host's (or --override-*) image, every image
    /// and the index, or only the index.
    #[arg(long, value_enum, value_name = "system|all|index-only")]
    pub multi_arch: Option<MultiArchOpt>,
    /// Fail instead of storing a manifest or index whose digest differs from the source's.
    #[arg(long)]
    pub preserve_digests: bool,
    /// Pull zstd:chunked layers whole, even into containers-storage (by default only the
    /// files the store does not hold are fetched).
    #[arg(long)]
    pub no_partial_pull: bool,
    /// Manifest type of the destination: oci or v2s2 (Docker schema2) [default: the source's].
    #[arg(short = 'f', long, value_enum, value_name = "oci|v2s2")]
    pub format: Option<ManifestFormatOpt>,
    /// Also tag the copied image (or index) NAME in the destination: a tag in oci: and
    /// docker://, an image name in containers-storage: (repeatable).
    #[arg(long, value_name = "NAME")]
    pub additional_tag: Vec<String>,
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
    #[command(flatten)]
    pub sides: SidesOpts,
    /// Use --cert-dir for both sides (skopeo spells it --src-cert-dir/--dest-cert-dir).
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Sign the copied image with this sigstore (cosign) private key; the signature is
    /// attached in the destination registry as the sha256-<digest>.sig tag.
    #[arg(long, value_name = "PATH")]
    pub sign_by_sigstore_private_key: Option<PathBuf>,
    /// The passphrase of the signing key, from this file (first line).
    #[arg(long, value_name = "PATH", requires = "sign_by_sigstore_private_key")]
    pub sign_passphrase_file: Option<PathBuf>,
    /// The docker reference the signature names [default: the destination's].
    #[arg(long, value_name = "REF", requires = "sign_by_sigstore_private_key")]
    pub sign_identity: Option<String>,
    /// Do not copy the source's sigstore signatures to a registry destination.
    #[arg(long)]
    pub remove_signatures: bool,
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
