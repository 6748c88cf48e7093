//! containers-storage with the overlay driver: the store podman, buildah, skopeo and CRI-O
//! share (`/var/lib/containers/storage`), read and written the way containers/storage 1.43
//! does, so that podman sees what stowage wrote and the other way round.
//!
//! Layout below the graph root `R`:
//! `overlay/<layer>/{diff,link,lower,work,merged,empty}` and `overlay/l/<LINK>` symlinks for
//! layer content, `overlay-layers/layers.json` + `<layer>.tar-split.gz` for layer records,
//! `overlay-images/images.json` + `overlay-images/<image>/` big data for images, and
//! `overlay-containers/containers.json` (read only here).
//!
//! Reading: every call takes the read lock of the JSON file it reads ([`lockfile`]), parses the
//! file anew (so there is no cache to go stale), and releases the lock.
//!
//! Writing a layer (what containers/image's `PutLayer` does, split so other modules fill in the
//! content):
//! 1. [`Store::begin_layer`] saves the record with `flags.incomplete` FIRST, then creates
//!    `overlay/<id>/` (`diff/` with the parent's mode or 0555, `link`, `lower`, `work/`,
//!    `merged/`, `empty/` for a base layer) and the `l/<LINK>` symlink. The kernel write lock on
//!    `layers.lock` stays held (pinned) until the layer is finished or aborted, because every
//!    podman process deletes incomplete layers it can lock.
//! 2. The caller extracts the tar into [`LayerHandle::diff_dir`] and writes the tar-split to
//!    [`LayerHandle::create_tar_split`].
//! 3. [`Store::finish_layer`] records digests, sizes, compression and uid/gid sets and clears
//!    the flag; [`Store::abort_layer`] (or dropping the handle) removes everything.
//!
//! Writing an image: [`Store::create_image`] with its big data (the config, `manifest-<digest>`,
//! `manifest` and signatures), metadata and names — the files first, then one save of the
//! record listing them, so a concurrent `podman images` never sees the image without its
//! manifest (containers/image 5.23 adds the items one by one after the record; see
//! `image_write`). [`Store::set_big_data`], [`Store::set_image_metadata`] and
//! [`Store::add_names`] change an image later.
//!
//! Every change is an atomic replace of the JSON file followed by a fresh last-writer token in
//! its lock file. Lock order is `layers.lock`, `images.lock`, `containers.lock`.
//!
//! One file per job: `store` opens the store, `json_files` loads and saves the records,
//! `lookup` finds layers and images, `naming` maps transport names to them,
//! `layer_read`/`image_read` read their content, `layer_write`/`image_write` write them,
//! `delete` removes them; `source`/`sink` make the store a copy source and destination;
//! `catalog` is podman's view of it (images, inspect, tag, rm, prune); `clone` copies images
//! between two stores without re-extracting; `config` resolves the default store from
//! storage.conf and the rootless defaults, as podman does.

pub mod bigdata;
pub mod catalog;
pub mod chunked;
pub mod clone;
pub mod config;
pub mod containers;
mod delete;
mod files;
pub mod gotime;
pub mod ids;
mod image_read;
mod image_write;
pub mod images;
mod json_files;
mod layer_read;
mod layer_write;
pub mod layers;
pub mod lockfile;
mod lookup;
mod naming;
mod sink;
mod source;
mod store;

pub use config::StorageConfig;
pub use containers::ContainerRecord;
pub use delete::DeletedImage;
pub use gotime::GoTime;
pub use image_write::NewImage;
pub use images::{ImageRecord, NameOp};
pub use layer_write::{LayerHandle, NewLayer, MAX_LOWER_DEPTH};
pub use layers::{LayerDigests, LayerRecord};
pub(crate) use lookup::{name_matches, split_repo_tag_digest};
pub use sink::StorageSink;
pub use source::StorageSource;
pub use store::{Store, DRIVER};

#[cfg(test)]
mod tests;
