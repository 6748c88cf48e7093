//! The engine's error type.
//!
//! Every error names the thing it is about (an image, a blob digest, a tar entry, a path) and,
//! where there is one, the fix. The CLI prints the chain and exits non-zero.

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

impl Error {
    /// An I/O error about `path`.
    pub fn io_path(op: &str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context: format!("{op} {}", path.into().display()),
            source,
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
