//! containers-storage as a copy source.
//!
//! 1. The image is found by its transport name ([`Store::resolve`]).
//! 2. Manifest and config come from the image's big data.
//! 3. Each layer is the uncompressed tar, rebuilt bit for bit from its tar-split with file
//!    bodies from the layer's `diff/` (falling back to the lower layers), CRC-checked per file
//!    and diffID-checked by the pipeline. The layers read lock is held while a layer streams.
//!    The same files are offered as the entries' origins ([`LayerStream::DiffFiles`]), so a
//!    writer on the same filesystem (an ostree repository) reflinks or hard-links them.

use std::io::{self, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::image::Descriptor;

use super::{ImageRecord, Store};
use crate::compression::BoxRead;
use crate::copy::{ImageSource, LayerStream};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fs_clone::FileOrigin;
use crate::layer_tar::normalize_path;
use crate::manifest::RawManifest;
use crate::tar_split::Assembler;
use crate::transport::{ImageRef, StorageImage};

/// An image in a containers-storage store, as a copy source.
pub struct StorageSource {
    store: Store,
    image: ImageRecord,
    query: StorageImage,
}

impl StorageSource {
    /// Open the image `image` in `store`.
    pub fn open(store: Store, image: &StorageImage) -> Result<Self> {
        let record = store.resolve(image).map_err(|e| match e {
            Error::NotFound { what, .. } => Error::NotFound {
                what,
                hint: format!(
                    "list the images with `stowage image cmd list --storage-root {}`",
                    store.graph_root().display()
                ),
            },
            other => other,
        })?;
        Ok(StorageSource {
            store,
            image: record,
            query: image.clone(),
        })
    }

    /// The image record.
    pub fn image(&self) -> &ImageRecord {
        &self.image
    }
}

impl ImageSource for StorageSource {
    fn name(&self) -> String {
        ImageRef::containers_storage(self.store.spec(), self.query.clone()).to_string()
    }

    fn manifest(&self) -> Result<RawManifest> {
        self.store.image_manifest(&self.image)
    }

    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        let bytes = self
            .store
            .image_manifest_bytes_by_digest(&self.image, descriptor.digest())?;
        RawManifest::parse(bytes, Some(descriptor.media_type().as_ref()), &self.name())
    }

    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        let key = descriptor.digest().to_string();
        let bytes = self
            .store
            .big_data(&self.image.id, &key)?
            .ok_or_else(|| Error::NotFound {
                what: format!("blob {key} of {}", self.name()),
                hint: "the image's big data is incomplete; pull it again".into(),
            })?;
        Ok(Box::new(io::Cursor::new(bytes)))
    }

    fn open_layer(
        &self,
        index: usize,
        _descriptor: &Descriptor,
        diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        let guard = self.store.lock_layers_shared()?;
        let layers = self.store.image_layers(&self.image)?;
        let layer = layers.get(index).ok_or_else(|| Error::Malformed {
            what: self.name(),
            reason: format!(
                "the manifest has more layers than the store's layer chain ({})",
                layers.len()
            ),
        })?;
        if layer.diff_digest != diff_id.to_string() {
            return Err(Error::Malformed {
                what: format!("layer {} of {}", layer.id, self.name()),
                reason: format!(
                    "its diff-digest is {:?}, the config says {diff_id}",
                    layer.diff_digest
                ),
            });
        }
        let tar_split = self
            .store
            .open_tar_split(&layer.id)?
            .ok_or_else(|| Error::NotFound {
                what: format!("tar-split of layer {} of {}", layer.id, self.name()),
                hint: "the layer cannot be exported bit for bit; pull the image again".into(),
            })?;
        let mut dirs = vec![self.store.layer_diff_dir(&layer.id)?];
        for lower in self.store.layer_lowers(&layer.id)? {
            dirs.push(self.store.layer_diff_dir(&lower)?);
        }
        let dirs = Arc::new(dirs);
        let origin = DiffOrigin { dirs: dirs.clone() };
        let layer_name = format!("layer {} of {}", layer.id, self.name());
        let getter = move |name: &[u8], _size: u64| -> Result<Box<dyn Read + Send>> {
            let rel: PathBuf = normalize_path(name)?;
            for dir in dirs.iter() {
                match dir.open(&rel) {
                    // Unbuffered: the assembler reads each body straight into its caller's
                    // buffer (the read-ahead's 256 KiB), with no copy through another.
                    Ok(f) => return Ok(Box::new(f.into_std())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        return Err(Error::from_io(
                            format!("opening {} in {layer_name}", rel.display()),
                            e,
                        ))
                    }
                }
            }
            Err(Error::NotFound {
                what: format!("file {} of {layer_name}", rel.display()),
                hint: "the layer's diff directory is damaged".into(),
            })
        };
        let assembler = Assembler::new(BufReader::new(tar_split.into_std()), getter);
        Ok(LayerStream::DiffFiles(
            Box::new(Guarded {
                inner: assembler,
                _guard: guard,
            }),
            Box::new(origin),
        ))
    }
}

/// The layer's `diff/` files (then its lowers') as the origins of its tar entries' bodies
/// ([`crate::fs_clone`]): found exactly as the layer stream finds them.
struct DiffOrigin {
    dirs: Arc<Vec<cap_std::fs::Dir>>,
}

impl FileOrigin for DiffOrigin {
    fn open(&self, name: &[u8], _size: u64) -> Option<std::fs::File> {
        let rel: PathBuf = normalize_path(name).ok()?;
        for dir in self.dirs.iter() {
            match dir.open(&rel) {
                Ok(f) => return Some(f.into_std()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(_) => return None,
            }
        }
        None
    }
}

/// A reader that keeps the layers read lock while it is alive.
struct Guarded<R, G> {
    inner: R,
    _guard: G,
}

impl<R: Read, G> Read for Guarded<R, G> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
