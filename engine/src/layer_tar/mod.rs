//! Safe reading and extraction of layer tars.
//!
//! Every store that unpacks a layer (containers-storage `diff/` dirs, flattened root
//! filesystems, ostree checkouts later) goes through this module, so the rules for untrusted
//! tars live in one place. Parsing uses the `tar` crate (ustar, PAX incl. `SCHILY.xattr.*`, GNU
//! long names/links); the walk is [`crate::tar_split`]'s, so a tar-split can be recorded in the
//! same pass and the input is always read to EOF (a wrapping
//! [`VerifiedReader`](crate::digest::VerifiedReader) sees every byte and checks the digest).
//!
//! Extraction ([`extract_layer`]), per entry:
//! 1. Parse the header into an [`EntryMeta`]: the path is normalised ([`normalize_path`]:
//!    leading `/` and `./` dropped, `..` resolved lexically, anything escaping the root or
//!    containing NUL rejected); `.wh.*` names are classified as whiteouts.
//! 2. Reject duplicates when asked (containers-storage cannot store a tar that lists a path
//!    twice); otherwise the last entry wins.
//! 3. Create missing parent directories (0755). Parents are opened through `cap_std::fs::Dir`
//!    relative to the destination, which follows symlinks only while they stay inside it: an
//!    entry below a symlink pointing outside (`a -> /`, then `a/etc/passwd`) fails with
//!    [`Error::BadTarEntry`] instead of writing outside. The final component is always created
//!    with `*at` calls on the parent's fd and is never followed.
//! 4. Replace whatever is at the path (unless both are directories: then metadata is updated),
//!    create the node (regular file streamed with `O_EXCL`, directory, symlink as-is,
//!    hard link with `linkat` inside the destination, device with `mknodat`, fifo) and apply
//!    owner, then mode (chown clears setuid), then xattrs, then mtime (nanoseconds from PAX).
//! 5. Whiteouts per [`WhiteoutMode`].
//! 6. At the end, directory modes and mtimes are applied deepest first, so a 0555 directory does
//!    not block its children and creating children does not disturb the parents' mtimes.
//!
//! With [`extract_layer_sharing`], a regular file whose body the copy's source has on disk
//! ([`crate::fs_clone::FileOrigin`]) is reflinked from it, or hard-linked when owner, mode,
//! mtime and xattrs already agree, instead of written; its body is still read from the tar.
//!
//! Opaque directories in [`WhiteoutMode::Apply`]: the opaque marker must hide what *earlier*
//! layers put in the directory but keep this layer's own entries in it, in whatever order the
//! tar lists them. The extractor remembers every path of the current layer; when the marker is
//! seen it removes each child of the directory that is neither one of those paths nor an
//! ancestor of one (descending into kept directories, so an older file inside a directory this
//! layer also lists is removed too). Entries listed after the marker are created afterwards and
//! need no protection. A plain whiteout `.wh.NAME` is handled the same way for `NAME` (removed
//! entirely unless this layer itself lists `NAME` or something under it), following the OCI
//! rule that a whiteout only hides content of lower layers. This is containers-storage's
//! `UnpackLayer` approach.
//!
//! Hard links must point at something already extracted in the destination: for per-layer
//! directories that is this layer; for [`WhiteoutMode::Apply`] onto a root filesystem it may
//! be a file from an earlier layer. The link shares its target's inode, whose metadata came
//! from the target's own entry; the link header's metadata is not applied again.
//!
//! The files: `entry` parses headers (PAX records, GNU long names, the entry walker
//! [`read_entries`]), `extract` writes nodes below the destination (cap-std / `*at` calls,
//! deferred directory metadata, hard links), and `whiteout` holds [`WhiteoutMode`] and the
//! overlay and apply forms of whiteouts.

mod entry;
mod extract;
mod whiteout;

pub(crate) use entry::parse_pax_time;
pub use entry::{normalize_path, read_entries, read_entries_recording, EntryKind, EntryMeta};
pub use extract::{extract_layer, extract_layer_sharing, ExtractOptions, ExtractStats};
pub use whiteout::WhiteoutMode;

#[cfg(test)]
mod tests;

#[cfg(doc)]
use crate::error::Error;
