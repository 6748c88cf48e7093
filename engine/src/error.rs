//! The engine's error type.
//!
//! Every error names the thing it is about (an image, a blob digest, a tar entry, a path) and,
//! where there is one, the fix. The CLI prints the chain and exits non-zero.
//!
//! 1. Each failure that a caller decides on has its own variant; the rest carry the
//!    underlying error as `#[source]` with the operation and path as context ([`IoContext`]).
//! 2. A write that fails because the filesystem is full is turned by the copy pipeline into
//!    [`Error::NoSpace`] ([`Error::no_space`]), which names the store, the filesystem's mount
//!    point, the fix, and what the destination keeps.

use std::path::PathBuf;

use oci_spec::image::Digest;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A blob's content did not hash to the digest that names it.
    #[error("blob {expected} ({what}): digest mismatch, content hashes to {actual}; the source is corrupt or was changed while being read")]
    DigestMismatch {
        /// What the blob is (layer 2 of IMAGE, config of IMAGE, ...).
        what: String,
        /// The digest the blob was expected to have.
        expected: Digest,
        /// The digest of what was actually read.
        actual: Digest,
    },
    /// A blob was longer or shorter than its descriptor says.
    #[error("blob {digest} ({what}): expected {expected} bytes, read {actual}{hint}", hint = if actual < expected { "; the blob is truncated" } else { "; the blob is longer than its descriptor says" })]
    SizeMismatch {
        /// What the blob is.
        what: String,
        /// Its digest.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },
    /// A digest string that is not `algorithm:hex` of a supported algorithm.
    #[error("invalid digest {input:?}: {reason} (expected sha256:<64 lowercase hex digits>)")]
    InvalidDigest {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A docker reference that does not parse.
    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A transport string (`docker://…`, `oci:…`, …) that does not parse.
    #[error("invalid image name {input:?}: {reason}")]
    InvalidTransport {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A transport that exists but is not implemented in this direction.
    #[error("{transport}: {reason}")]
    Unsupported {
        /// The transport or feature.
        transport: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A store in a form stowage does not implement (a containers-storage graph driver other
    /// than overlay, an ostree repository mode).
    #[error("{what}: {reason}")]
    StoreUnsupported {
        /// The store and the form.
        what: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A signature policy (policy.json) that cannot be used: missing, unreadable or invalid.
    #[error("{path}: {reason}")]
    Policy {
        /// The policy file (or the places looked at).
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The signature policy refused an image; nothing was written.
    #[error("source image {image} rejected by policy {policy}, {scope}: {reason}")]
    PolicyRejected {
        /// The image, in transport syntax.
        image: String,
        /// The policy file.
        policy: String,
        /// The scope whose requirements applied (`transports.docker."quay.io/x"`, `default`).
        scope: String,
        /// Why the requirement refused it.
        reason: String,
    },
    /// A media type stowage does not know.
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// What carried it.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A configuration file (storage.conf, registries.conf, registries.d, an auth file) that
    /// does not parse or holds a value that cannot be used.
    #[error("{what}: malformed: {reason}")]
    Config {
        /// The file, and where in it.
        what: String,
        /// What is wrong, and the fix.
        reason: String,
    },
    /// A store (a containers-storage graph root, an ostree repository) that a command expected
    /// to exist and that does not.
    #[error("{what}: not found{hint}", hint = if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    StoreMissing {
        /// The store, and where it was looked for.
        what: String,
        /// What the user can do.
        hint: String,
    },
    /// JSON (manifest, index, config, store metadata) that is not what it should be.
    #[error("{what}: malformed: {reason}")]
    Malformed {
        /// What was being parsed.
        what: String,
        /// The parser's complaint.
        reason: String,
    },
    /// JSON (a manifest, config, index, store record, token) that does not parse as what it
    /// should be.
    #[error("{what}: malformed JSON: {source}")]
    Json {
        /// What was being parsed or written.
        what: String,
        /// The parser's error (line, column, what was expected).
        #[source]
        source: serde_json::Error,
    },
    /// An HTTP client failure that is not a status code: TLS material that does not load, a
    /// connection or protocol error after the retries.
    #[error("{what}: {source}")]
    Http {
        /// The operation and URL or file.
        what: String,
        /// The client's error; its sources name the TLS or socket cause.
        #[source]
        source: reqwest::Error,
    },
    /// A tar entry that is unsafe or unrepresentable.
    #[error("layer {layer}: tar entry {entry:?}: {reason}")]
    BadTarEntry {
        /// The layer (digest or description).
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// An option value the operation cannot use (an image filter, a sort key).
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The option and the value given.
        what: String,
        /// What is wrong and what would work.
        reason: String,
    },
    /// Something looked up that does not exist.
    #[error("{what}: not found{hint}", hint = if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    NotFound {
        /// What was looked up, and where.
        what: String,
        /// What the user can do.
        hint: String,
    },
    /// A directory that should be an OCI image layout but has no `oci-layout` file.
    #[error("{}/oci-layout: not found; {} is not an OCI image layout{hint}", path.display(), path.display())]
    NotOciLayout {
        /// The directory.
        path: PathBuf,
        /// More context (`; is it an OCI archive?`), or empty.
        hint: String,
    },
    /// A layer to be written is already recorded in the store.
    #[error("layer {id}: {}", match state {
        ExistingLayer::Complete => "already exists; reuse it instead of writing it again",
        ExistingLayer::BeingWritten => "is being written by another thread of this process",
        ExistingLayer::Incomplete => "is left incomplete by an interrupted writer; open the store again to clean it up",
    })]
    LayerExists {
        /// The layer ID.
        id: String,
        /// What state it is in.
        state: ExistingLayer,
    },
    /// A layer this copy found in a store (or wrote into it) was removed by another process
    /// (`podman rmi`, `podman image prune`) before the layer above it or the image record was
    /// written on it. The copy pipeline then starts the image over, writing the layer anew;
    /// this error is what remains when that keeps happening.
    #[error("layer {id} ({what}) was removed from the store by another process (podman rmi or image prune) while this copy was writing on top of it; run the copy again")]
    LayerRemoved {
        /// The layer ID.
        id: String,
        /// The layer, as [`crate::copy::LayerLabel`] names it.
        what: String,
    },
    /// An image containers use cannot be removed; stowage runs no containers, so it does not
    /// remove them either (podman's `rmi` exits 2 for this).
    #[error("image {image} is in use by {}; stowage has no container runtime and does not remove containers, even with -f: remove them first (podman rm -f {}), then the image", containers.join(", "), names.join(" "))]
    ImageInUse {
        /// The image ID.
        image: String,
        /// `NAME (ID)` of each container using it.
        containers: Vec<String>,
        /// The containers' names, for the command to run.
        names: Vec<String>,
    },
    /// A request that conflicts with the state of a store.
    #[error("{what}: {reason}")]
    Conflict {
        /// The thing in conflict.
        what: String,
        /// Why.
        reason: String,
    },
    /// A registry answered with an error (HTTP status and, when given, the distribution
    /// error code and message).
    #[error("{what}: {message}{hint}", hint = if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    Registry {
        /// The operation and image (`reading manifest latest in host/repo`).
        what: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's message(s), `code: message`, or the status line.
        message: String,
        /// What the user can do.
        hint: String,
    },
    /// A registry refused the credentials, or asked for some and none were given.
    #[error("{what}: unauthorized: {reason}; {hint}")]
    Unauthorized {
        /// The operation and image.
        what: String,
        /// What the registry or token server said.
        reason: String,
        /// What the user can do.
        hint: String,
    },
    /// A network transfer failed (connection refused, TLS, timeout, stall), after retries.
    #[error("{what}: {reason}")]
    Network {
        /// The operation and URL or image.
        what: String,
        /// What went wrong, and how many attempts were made.
        reason: String,
    },
    /// The work was stopped through a [`Cancel`](crate::cancel::Cancel) token (the CLI sets
    /// it on SIGINT/SIGTERM). Whatever was not committed has been removed.
    #[error("{reason}: {what} stopped{}", if kept.is_empty() { String::new() } else { format!("; {kept}") })]
    Cancelled {
        /// What was stopped (`copying IMAGE to DEST`, a layer).
        what: String,
        /// Why.
        reason: crate::cancel::CancelReason,
        /// What the destination keeps (`2 layers committed before the stop are kept`), or
        /// empty.
        kept: String,
    },
    /// The filesystem a store is on ran out of space (`ENOSPC`) or the user's disk quota
    /// (`EDQUOT`) while an image was written into it. Made by the copy pipeline from the
    /// writer's error ([`Error::no_space`]); what the failed copy had begun is removed.
    #[error("{cause}; {}", no_space_hint(path, mount.as_deref(), kept))]
    NoSpace {
        /// The error the write failed with (its I/O error says `No space left on device`).
        cause: Box<Error>,
        /// The store (graph root, layout, repository, archive) being written.
        path: PathBuf,
        /// The mount point of the filesystem holding `path`, when it could be found.
        mount: Option<PathBuf>,
        /// What the destination keeps (`1 of 3 layer(s) written before are kept …`), or empty.
        kept: String,
    },
    /// An I/O error, with the path or operation it happened on.
    #[error("{context}: {source}")]
    Io {
        /// The operation and path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The state of a layer found by [`Error::LayerExists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingLayer {
    /// Finished: usable as it is.
    Complete,
    /// Being written by this process right now.
    BeingWritten,
    /// Left incomplete by a writer that died; the next open of the store removes it.
    Incomplete,
}

/// The three kinds of failure a user acts on differently ([`Error::class`]); the CLI gives
/// each its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The image: not found, not a valid image (format, name, media type, tar), corrupted
    /// (digest, size, diffID), refused by the signature policy.
    Image,
    /// Where images are kept: a store that is missing or in the wrong state, permission
    /// denied and other I/O errors, a full filesystem, a configuration file that is wrong.
    Storage,
    /// The registry: unreachable (network, TLS), refusing the credentials, or answering with
    /// an error.
    Registry,
}

impl Error {
    /// Which [`ErrorClass`] this error is; `None` for a cancelled operation and for invalid
    /// arguments (usage errors of the caller).
    pub fn class(&self) -> Option<ErrorClass> {
        use ErrorClass::*;
        Some(match self {
            // The registry says the image (or a blob of it) is not there.
            Error::Registry { status: 404, .. } => Image,
            Error::Registry { .. }
            | Error::Unauthorized { .. }
            | Error::Network { .. }
            | Error::Http { .. } => Registry,
            Error::Config { .. }
            | Error::StoreMissing { .. }
            | Error::StoreUnsupported { .. }
            | Error::Policy { .. }
            | Error::NoSpace { .. }
            | Error::Io { .. }
            | Error::LayerExists { .. }
            | Error::LayerRemoved { .. }
            | Error::ImageInUse { .. }
            | Error::Conflict { .. } => Storage,
            Error::DigestMismatch { .. }
            | Error::SizeMismatch { .. }
            | Error::InvalidDigest { .. }
            | Error::InvalidReference { .. }
            | Error::InvalidTransport { .. }
            | Error::Unsupported { .. }
            | Error::PolicyRejected { .. }
            | Error::UnsupportedMediaType { .. }
            | Error::Malformed { .. }
            | Error::Json { .. }
            | Error::BadTarEntry { .. }
            | Error::NotFound { .. }
            | Error::NotOciLayout { .. } => Image,
            Error::InvalidArgument { .. } | Error::Cancelled { .. } => return None,
        })
    }

    /// An I/O error about `path`.
    pub fn io_path(op: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context: format!("{op} {}", path.into().display()),
            source,
        }
    }

    /// Whether this error, or any error in its chain of sources, is an I/O error saying the
    /// filesystem is full (`ENOSPC`) or the disk quota is used up (`EDQUOT`).
    pub fn is_no_space(&self) -> bool {
        if let Error::NoSpace { .. } = self {
            return true;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                let full = matches!(
                    io.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) || matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
                if full {
                    return true;
                }
            }
            cause = c.source();
        }
        false
    }

    /// `self` as [`Error::NoSpace`] about the store at `path` when it is a full-filesystem
    /// error ([`is_no_space`](Self::is_no_space)), with `kept` saying what the destination
    /// keeps; any other error unchanged.
    pub fn no_space(self, path: &std::path::Path, kept: impl FnOnce() -> String) -> Self {
        if matches!(self, Error::NoSpace { .. }) || !self.is_no_space() {
            return self;
        }
        Error::NoSpace {
            cause: Box::new(self),
            path: path.to_path_buf(),
            mount: mount_point(path),
            kept: kept(),
        }
    }

    /// Convert an `io::Error` produced by a verified stream back into the engine error it
    /// carries (digest or size mismatch), or wrap it with `context`.
    pub fn from_io(context: impl Into<String>, e: std::io::Error) -> Self {
        match e.get_ref().map(|inner| inner.is::<Error>()) {
            Some(true) => *e.into_inner().unwrap().downcast::<Error>().unwrap(),
            _ => Error::Io {
                context: context.into(),
                source: e,
            },
        }
    }

    /// Wrap this error as an `io::Error` (for use inside `Read` impls); `from_io` undoes it.
    pub fn into_io(self) -> std::io::Error {
        let kind = match &self {
            Error::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, self)
    }
}

/// Attach context to I/O results (std's and rustix's).
pub trait IoContext<T> {
    /// On error, say what was being done (`"reading blobs/sha256/…"`).
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;

    /// On error, say which operation on which path failed: `.at("reading", &path)` gives
    /// "reading /the/path: <cause>".
    fn at(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T>;
}

impl<T, E: Into<std::io::Error>> IoContext<T> for std::result::Result<T, E> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::from_io(context(), e.into()))
    }

    fn at(self, op: &str, path: impl AsRef<std::path::Path>) -> Result<T> {
        self.map_err(|e| Error::from_io(format!("{op} {}", path.as_ref().display()), e.into()))
    }
}

/// The sentence [`Error::NoSpace`] ends with: which filesystem is full, what to do, and what
/// the destination keeps.
fn no_space_hint(path: &std::path::Path, mount: Option<&std::path::Path>, kept: &str) -> String {
    let fs = match mount {
        Some(m) if m != path => format!("mounted at {} (holding {})", m.display(), path.display()),
        Some(m) => format!("mounted at {}", m.display()),
        None => format!("holding {}", path.display()),
    };
    let kept = if kept.is_empty() {
        String::new()
    } else {
        format!("; {kept}")
    };
    format!(
        "the filesystem {fs} is full: free space on it, or use a store on a larger filesystem, and run the command again{kept}"
    )
}

/// The mount point of the filesystem holding `path` (or its nearest existing ancestor): the
/// topmost ancestor on the same device.
fn mount_point(path: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let path = std::path::absolute(path).ok()?;
    let mut existing = path.as_path();
    let meta = loop {
        match std::fs::metadata(existing) {
            Ok(m) => break m,
            Err(_) => existing = existing.parent()?,
        }
    };
    let dev = meta.dev();
    let mut mount = existing;
    while let Some(parent) = mount.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => mount = parent,
            _ => break,
        }
    }
    Some(mount.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_filesystem_names_the_store_its_mount_point_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store/root");
        let full = Error::io_path(
            "writing",
            store.join("blob"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        // Wrapped as a verified stream wraps it, the cause is still found.
        let wrapped = Error::from_io("copying layer 1", full.into_io());
        assert!(wrapped.is_no_space());
        let e = wrapped.no_space(&store, || "what the copy had begun was removed".into());
        let Error::NoSpace {
            mount: Some(mount), ..
        } = &e
        else {
            panic!("not NoSpace: {e:?}");
        };
        assert!(dir.path().starts_with(mount), "{mount:?}");
        let text = e.to_string();
        assert!(text.contains("No space left on device"), "{text}");
        assert!(
            text.contains(&format!("holding {}", store.display())),
            "{text}"
        );
        assert!(text.contains("free space on it"), "{text}");
        assert!(
            text.ends_with("what the copy had begun was removed"),
            "{text}"
        );
        // Another error stays as it was.
        let other = Error::io_path(
            "writing",
            &store,
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(!other.is_no_space());
        assert!(matches!(
            other.no_space(&store, String::new),
            Error::Io { .. }
        ));
    }
}
