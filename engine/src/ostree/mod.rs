//! ostree repositories in pure Rust: no libostree, no glib.
//!
//! The format is libostree 2022.7's, checked against its CLI (see `docs/formats.md`):
//! 1. [`gvariant`]: GVariant normal form, the serialization of every metadata object;
//! 2. [`object`]: checksums, object paths, and the dirmeta/dirtree/commit/file-header shapes;
//! 3. [`config`]: the `config` keyfile and the repository modes (bare, bare-user, archive);
//! 4. [`repo`]: [`Repo::init`] / [`Repo::open`], reading objects and refs;
//! 5. [`txn`]: write transactions (staging in `tmp/`, rename into `objects/`, refs last,
//!    locks shared with ostree, stale staging cleaned);
//! 6. [`mtree`]: building trees (from a directory or entry by entry from streams) and commits;
//! 7. [`checkout`]: walking, checking out and verifying (fsck) commits;
//! 8. [`container::list_images`] and [`refescape`]: the ostree-rs-ext image refs;
//! 9. the ostree-rs-ext container store as a copy destination: [`import`] (a layer tar → a
//!    layer commit, with ostree-rs-ext's path rules), [`merge`] (layer commits → the image's
//!    root, whiteouts applied), [`canon_json`] (the manifest and config as stored in commit
//!    metadata) and [`sink`] ([`OstreeSink`], `ostree:[REPO]IMGREF`); ostree-encapsulated
//!    images (bootc base images: the ostree commit and object sets as layers) through
//!    [`encapsulated`];
//! 10. and as a copy source, exported bit for bit: [`source`] ([`OstreeSource`]); images
//!     other tools imported as one regenerated layer ([`regenerate`]);
//! 11. removing images ([`container::delete_image`], [`container::gc_layers`]) and
//!     unreachable objects ([`prune`]).

pub mod canon_json;
pub mod checkout;
pub mod config;
pub mod container;
pub mod encapsulated;
pub mod fsutil;
pub mod gvariant;
pub mod import;
pub mod lock;
pub mod merge;
pub mod mtree;
pub mod object;
pub mod prune;
pub mod refescape;
pub mod regenerate;
pub mod repo;
pub mod selinux;
pub mod sink;
pub mod source;
pub mod txn;

pub use checkout::{CheckoutMode, FsckReport, WalkEntry};
pub use config::RepoMode;
pub use mtree::{CommitFilter, CommitSpec, MutableTree};
pub use object::{Checksum, Commit, DirMeta, DirTree, FileMeta, ObjectType, Xattrs};
pub use repo::{Content, Repo};
pub use sink::OstreeSink;
pub use source::OstreeSource;
pub use txn::{Transaction, TxnStats};
