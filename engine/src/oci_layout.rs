//! OCI image layouts: `oci-layout`, `index.json` and `blobs/<alg>/<hex>` in a directory.
//!
//! Hand-written rather than taken from `ocidir` because that crate links openssl (for sha256
//! only), which would break the static pure-Rust binary.
//!
//! 1. Every file access goes through a `cap_std::fs::Dir` opened on the layout root, so a
//!    hostile digest or tag can never name a path outside it.
//! 2. Blobs are written to a temporary file in the layout root, hashed while written, and
//!    renamed into `blobs/` only after the digest (and, for verified streams, the size) is
//!    known to be right; a blob already present is not written again.
//! 3. `index.json` is replaced atomically (temporary file, fsync, rename) under an advisory
//!    lock on the layout directory, so concurrent stowage writers never lose each other's tags.
//!    Keys stowage does not know are preserved.
//! 5. Every temporary file (`.tmp-*`) is created with an exclusive `flock` held as long as
//!    its writer keeps it open. Opening a layout for writing removes the temporaries whose
//!    lock can be taken — left by a writer that was killed — and never one a live writer
//!    holds ([`OciDir::remove_stale_temporaries`]). An interrupted or failed copy removes its
//!    own (drop handlers).
//! 4. Tags are `org.opencontainers.image.ref.name` annotations, as skopeo and umoci use them;
//!    adding a tag removes it from whichever entry had it before.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, File, OpenOptions};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde_json::Value;

use crate::compression::{BoxRead, Compression};
use crate::copy::{
    recompressed_descriptor, target_compression, CommitResult, FinalImage, ImagePlan, ImageSink,
    ImageSource, ImageWriter, LayerForm, LayerInput, LayerStream, StoredLayer,
};
use crate::digest::{Digest, HashingWriter, VerifiedReader};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{RawManifest, MAX_MANIFEST_SIZE};

/// The annotation that carries a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_CONTENT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// An OCI image layout directory.
#[derive(Debug)]
pub struct OciDir {
    dir: Dir,
    path: PathBuf,
}

impl OciDir {
    /// Open an existing layout; fails clearly if `path` is not one.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = Dir::open_ambient_dir(path, ambient_authority()).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound {
                what: format!("OCI layout {}", path.display()),
                hint: "check the path after oci:".into(),
            },
            _ => Error::io_path("opening OCI layout", path, e),
        })?;
        let layout = dir
            .read_to_string(LAYOUT_FILE)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotOciLayout {
                    path: path.to_path_buf(),
                    hint: String::new(),
                },
                _ => Error::io_path("reading", path.join(LAYOUT_FILE), e),
            })?;
        check_layout_file(&layout, path)?;
        Ok(OciDir {
            dir,
            path: path.to_path_buf(),
        })
    }

    /// Open the layout at `path`, creating the directory, `oci-layout`, `blobs/sha256` and an
    /// empty `index.json` where missing.
    pub fn create(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path).at("creating OCI layout", path)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority()).at("opening", path)?;
        match dir.read_to_string(LAYOUT_FILE) {
            Ok(s) => check_layout_file(&s, path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let non_empty = dir.entries().at("listing", path)?.next().is_some();
                if non_empty && !dir.exists(INDEX_FILE) && !dir.exists("blobs") {
                    return Err(Error::Conflict {
                        what: format!("OCI layout {}", path.display()),
                        reason: "the directory exists, is not empty and is not an OCI layout; choose an empty or new directory".into(),
                    });
                }
                write_atomic(&dir, LAYOUT_FILE, LAYOUT_CONTENT.as_bytes())
                    .ctx(|| format!("writing {}/{LAYOUT_FILE}", path.display()))?;
            }
            Err(e) => return Err(Error::io_path("reading", path.join(LAYOUT_FILE), e)),
        }
        dir.create_dir_all("blobs/sha256")
            .at("creating", path.join("blobs/sha256"))?;
        if !dir.exists(INDEX_FILE) {
            let empty = serde_json::json!({"schemaVersion": 2, "manifests": []});
            write_atomic(
                &dir,
                INDEX_FILE,
                &serde_json::to_vec(&empty).expect("static JSON"),
            )
            .ctx(|| format!("writing {}/{INDEX_FILE}", path.display()))?;
        }
        let layout = OciDir {
            dir,
            path: path.to_path_buf(),
        };
        layout.remove_stale_temporaries()?;
        Ok(layout)
    }

    /// Remove the temporary files (`.tmp-*` in the layout root) that writers which died left
    /// behind (a SIGKILL, a power cut), and return how many. A live writer holds an exclusive
    /// `flock` on each of its temporary files from creation until rename or removal; a file
    /// whose lock can be taken has no live writer and goes. [`OciDir::create`] (every write
    /// to a layout) runs this first.
    pub fn remove_stale_temporaries(&self) -> Result<usize> {
        use rustix::fs::{flock, FlockOperation};
        let mut removed = 0;
        for entry in self.dir.entries().at("listing", &self.path)? {
            let entry = entry.at("listing", &self.path)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(TEMP_PREFIX) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(file) = self.dir.open(name) else {
                continue;
            };
            let file = file.into_std();
            if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
                continue; // a live writer's
            }
            match self.dir.remove_file(name) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io_path("removing", self.path.join(name), e)),
            }
        }
        Ok(removed)
    }

    /// The layout's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn blob_path(digest: &Digest) -> PathBuf {
        // Digest guarantees the algorithm is [a-z0-9+._-]+ and the hex part is lowercase hex
        // for the sha family; `Dir` confines any remaining surprise to the layout.
        PathBuf::from(format!("blobs/{}/{}", digest.algorithm(), digest.digest()))
    }

    /// Whether a blob with `digest` is present (and, when `size` is given, has that size).
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool> {
        match self.dir.metadata(Self::blob_path(digest)) {
            Ok(m) => Ok(m.is_file() && size.is_none_or(|s| s == m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io_path(
                "checking",
                self.path.join(Self::blob_path(digest)),
                e,
            )),
        }
    }

    /// Open a blob for reading (unverified; wrap it in a [`VerifiedReader`]).
    pub fn open_blob(&self, digest: &Digest) -> Result<std::fs::File> {
        let rel = Self::blob_path(digest);
        self.dir
            .open(&rel)
            .map(File::into_std)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::NotFound {
                    what: format!("blob {digest} in OCI layout {}", self.path.display()),
                    hint: "the layout is incomplete; copy the image into it again".into(),
                },
                _ => Error::io_path("opening", self.path.join(rel), e),
            })
    }

    /// Read a whole small blob (manifest, index, config), verified against `digest` and
    /// capped at `max` bytes.
    pub fn read_blob(
        &self,
        digest: &Digest,
        expected_size: Option<u64>,
        max: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let len = file
            .metadata()
            .at("stat", self.path.join(Self::blob_path(digest)))?
            .len();
        if len > max {
            return Err(Error::Malformed {
                what: what.to_string(),
                reason: format!("blob {digest} is {len} bytes, more than the {max} byte limit"),
            });
        }
        let mut r = VerifiedReader::new(file, digest, expected_size, what.to_string())?;
        let mut out = Vec::with_capacity(len as usize);
        r.read_to_end(&mut out).ctx(|| format!("reading {what}"))?;
        Ok(out)
    }

    /// Start writing a blob. Commit it with [`BlobWriter::commit`]; dropping it discards it.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>> {
        let (name, file) = create_temp(&self.dir, ".tmp-blob-")
            .ctx(|| format!("creating a temporary file in {}", self.path.display()))?;
        Ok(BlobWriter {
            layout: self,
            temp_name: Some(name),
            writer: Some(HashingWriter::new(io::BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
        })
    }

    /// Write `bytes` as a blob; returns its digest and size.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<(Digest, u64)> {
        let digest = crate::digest::sha256_of(bytes);
        if self.has_blob(&digest, Some(bytes.len() as u64))? {
            return Ok((digest, bytes.len() as u64));
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes)
            .ctx(|| format!("writing blob {digest} to {}", self.path.display()))?;
        w.commit(Some(&digest))
    }

    /// The raw `index.json` as JSON (unknown keys kept).
    fn read_index_value(&self) -> Result<Value> {
        let bytes = self.dir.read(INDEX_FILE).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound {
                what: format!("{}/{INDEX_FILE}", self.path.display()),
                hint: "the OCI layout has no index".into(),
            },
            _ => Error::io_path("reading", self.path.join(INDEX_FILE), e),
        })?;
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::Malformed {
                what: format!("{}/{INDEX_FILE}", self.path.display()),
                reason: format!(
                    "{} bytes, more than the {MAX_MANIFEST_SIZE} byte limit",
                    bytes.len()
                ),
            });
        }
        let what = format!("{}/{INDEX_FILE}", self.path.display());
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Malformed {
                what,
                reason: "the file is empty, so the layout holds no image index; copy an image \
                         into it again, or remove the directory to start afresh"
                    .into(),
            });
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            what: what.clone(),
            source: e,
        })?;
        if !value.is_object() {
            return Err(Error::Malformed {
                what,
                reason: format!(
                    "holds a JSON {} where an OCI image index ({{\"schemaVersion\": 2, \"manifests\": [...]}}) belongs",
                    match value {
                        Value::Array(_) => "array",
                        Value::String(_) => "string",
                        Value::Number(_) => "number",
                        Value::Bool(_) => "boolean",
                        _ => "null",
                    }
                ),
            });
        }
        Ok(value)
    }

    /// The parsed `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let value = self.read_index_value()?;
        serde_json::from_value(value).map_err(|e| Error::Json {
            what: format!("{}/{INDEX_FILE}", self.path.display()),
            source: e,
        })
    }

    /// The tags in `index.json`, in index order.
    pub fn tags(&self) -> Result<Vec<String>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .cloned()
            })
            .collect())
    }

    /// The index entry for `tag`, or the only entry when `tag` is `None` (skopeo's rule).
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        let index = self.read_index()?;
        let tag_of = |d: &Descriptor| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .cloned()
        };
        match tag {
            Some(t) => index
                .manifests()
                .iter()
                .find(|d| tag_of(d).as_deref() == Some(t))
                .cloned()
                .ok_or_else(|| {
                    let tags: Vec<String> = index.manifests().iter().filter_map(tag_of).collect();
                    Error::NotFound {
                        what: format!("tag {t:?} in OCI layout {}", self.path.display()),
                        hint: if tags.is_empty() {
                            "the layout has no tagged images".into()
                        } else {
                            format!("it has {}", tags.join(", "))
                        },
                    }
                }),
            None => match index.manifests().as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(Error::NotFound {
                    what: format!("image in OCI layout {}", self.path.display()),
                    hint: "the layout is empty".into(),
                }),
                many => Err(Error::Conflict {
                    what: format!("OCI layout {}", self.path.display()),
                    reason: format!(
                        "it holds {} images; name one with oci:{}:TAG (tags: {})",
                        many.len(),
                        self.path.display(),
                        many.iter()
                            .filter_map(tag_of)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
            },
        }
    }

    /// Add `descriptor` to `index.json`, tagged `tag` (removing the tag from any other entry).
    /// An identical untagged entry is not added twice.
    pub fn add_manifest(&self, descriptor: Descriptor, tag: Option<&str>) -> Result<()> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index_value()?;
        let mut desc = serde_json::to_value(&descriptor).expect("descriptor serialises");
        if let Some(t) = tag {
            desc.as_object_mut()
                .expect("descriptor is an object")
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
                .ok_or_else(|| Error::Malformed {
                    what: "descriptor".into(),
                    reason: "annotations is not an object".into(),
                })?
                .insert(REF_NAME.into(), Value::String(t.to_string()));
        }
        let what = format!("{}/{INDEX_FILE}", self.path.display());
        let obj = index.as_object_mut().ok_or_else(|| Error::Malformed {
            what: what.clone(),
            reason: "not a JSON object".into(),
        })?;
        let manifests = obj
            .entry("manifests")
            .or_insert_with(|| Value::Array(vec![]));
        let list = manifests.as_array_mut().ok_or_else(|| Error::Malformed {
            what: what.clone(),
            reason: "manifests is not an array".into(),
        })?;
        let tag_of = |v: &Value| {
            v.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(|t| t.as_str())
                .map(str::to_string)
        };
        match tag {
            Some(t) => list.retain(|v| tag_of(v).as_deref() != Some(t)),
            None => {
                list.retain(|v| !(tag_of(v).is_none() && v.get("digest") == desc.get("digest")))
            }
        }
        list.push(desc);
        let bytes = serde_json::to_vec(&index).expect("index serialises");
        write_atomic(&self.dir, INDEX_FILE, &bytes).ctx(|| format!("replacing {what}"))
    }

    fn lock_index(&self) -> Result<IndexLock> {
        use rustix::fs::{openat, Mode, OFlags};
        let fd = openat(
            &self.dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .at("locking", &self.path)?;
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::LockExclusive)
            .at("locking", &self.path)?;
        Ok(IndexLock { _fd: fd })
    }
}

/// Holds the layout lock; released on drop (closing the fd).
struct IndexLock {
    _fd: rustix::fd::OwnedFd,
}

fn check_layout_file(content: &str, path: &Path) -> Result<()> {
    let v: Value = serde_json::from_str(content).map_err(|e| Error::Json {
        what: format!("{}/{LAYOUT_FILE}", path.display()),
        source: e,
    })?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(ver) if ver.starts_with("1.") => Ok(()),
        other => Err(Error::Unsupported {
            transport: format!("OCI layout {}", path.display()),
            reason: format!("imageLayoutVersion {other:?} is not supported (expected 1.x)"),
        }),
    }
}

/// Prefix of every temporary file stowage writes in a layout (blobs and `index.json`).
pub const TEMP_PREFIX: &str = ".tmp-";

/// Create a uniquely named temporary file in `dir`, holding an exclusive `flock` on it for as
/// long as the file stays open, which tells [`OciDir::remove_stale_temporaries`] that its
/// writer is alive.
fn create_temp(dir: &Dir, prefix: &str) -> io::Result<(String, std::fs::File)> {
    use rustix::fs::{flock, fstat, statat, AtFlags, FlockOperation};
    loop {
        let name = format!("{prefix}{:016x}", rand::random::<u64>());
        let file = match dir.open_with(&name, OpenOptions::new().write(true).create_new(true)) {
            Ok(f) => f.into_std(),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        flock(&file, FlockOperation::LockExclusive)?;
        // A cleaner may have locked and removed the file between its creation and our lock:
        // then the name no longer refers to our file, and we start again with another.
        let ours = fstat(&file)?;
        match statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => {
                return Ok((name, file))
            }
            Ok(_) | Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write `name` in `dir` atomically: temporary file, fsync, rename.
pub(crate) fn write_atomic(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    let (tmp, mut f) = create_temp(dir, ".tmp-")?;
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        dir.rename(&tmp, dir, name)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
}

/// A blob being written into a layout.
pub struct BlobWriter<'a> {
    layout: &'a OciDir,
    temp_name: Option<String>,
    writer: Option<HashingWriter<io::BufWriter<std::fs::File>>>,
}

impl<'a> BlobWriter<'a> {
    /// Finish the blob: check it against `expected` (when given), then move it into `blobs/`.
    pub fn commit(self, expected: Option<&Digest>) -> Result<(Digest, u64)> {
        self.finish(expected)?.publish()
    }

    /// Finish the blob and check it against `expected` (when given), but keep it out of
    /// `blobs/` until [`StagedBlob::publish`]; dropping the staged blob deletes it. Used to make
    /// a whole image visible at once, so a failed copy leaves the layout unchanged.
    pub fn finish(mut self, expected: Option<&Digest>) -> Result<StagedBlob<'a>> {
        let temp = self
            .temp_name
            .take()
            .expect("temp name present until commit");
        let layout = self.layout;
        let writer = self.writer.take().expect("writer present until commit");
        let staged = |digest: Digest, size: u64| StagedBlob {
            layout,
            temp_name: Some(temp.clone()),
            digest,
            size,
            _file: None,
        };
        let (digest, size, buf) = writer.finish();
        // From here on the staged blob owns the temporary file and removes it on error.
        let mut blob = staged(digest.clone(), size);
        let file = buf
            .into_inner()
            .map_err(|e| Error::from_io(format!("writing {temp}"), e.into_error()))?;
        if let Some(exp) = expected {
            if exp != &digest {
                return Err(Error::DigestMismatch {
                    what: format!("blob written to {}", layout.path.display()),
                    expected: exp.clone(),
                    actual: digest,
                });
            }
        }
        file.sync_data().ctx(|| format!("syncing blob {digest}"))?;
        blob._file = Some(file);
        Ok(blob)
    }
}

/// A verified blob in a temporary file, not yet in `blobs/`.
pub struct StagedBlob<'a> {
    layout: &'a OciDir,
    temp_name: Option<String>,
    digest: Digest,
    size: u64,
    /// The open temporary file: its lock marks it as in use until published or dropped.
    _file: Option<std::fs::File>,
}

impl StagedBlob<'_> {
    /// The blob's digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Move the blob into `blobs/` (a no-op rename if an identical blob is already there).
    pub fn publish(mut self) -> Result<(Digest, u64)> {
        let temp = self
            .temp_name
            .take()
            .expect("temp name present until published");
        let layout = self.layout;
        let rel = OciDir::blob_path(&self.digest);
        let parent = rel.parent().expect("blob path has a parent");
        let result = layout
            .dir
            .create_dir_all(parent)
            .ctx(|| format!("creating {}", layout.path.join(parent).display()))
            .and_then(|()| {
                layout
                    .dir
                    .rename(&temp, &layout.dir, &rel)
                    .ctx(|| format!("storing blob {} in {}", self.digest, layout.path.display()))
            });
        if result.is_err() {
            let _ = layout.dir.remove_file(&temp);
        }
        result.map(|()| (self.digest.clone(), self.size))
    }
}

impl Drop for StagedBlob<'_> {
    fn drop(&mut self) {
        if let Some(temp) = self.temp_name.take() {
            let _ = self.layout.dir.remove_file(temp);
        }
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .flush()
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if let Some(temp) = self.temp_name.take() {
            let _ = self.layout.dir.remove_file(temp);
        }
    }
}

/// An image in an OCI layout, as a copy source.
pub struct OciSource {
    layout: OciDir,
    tag: Option<String>,
}

impl OciSource {
    /// Open `oci:PATH[:TAG]` for reading.
    pub fn open(path: &Path, tag: Option<&str>) -> Result<Self> {
        Ok(OciSource {
            layout: OciDir::open(path)?,
            tag: tag.map(str::to_string),
        })
    }

    /// The layout.
    pub fn layout(&self) -> &OciDir {
        &self.layout
    }

    fn read_manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        let what = format!("manifest {} of {}", desc.digest(), self.name());
        let bytes =
            self.layout
                .read_blob(desc.digest(), Some(desc.size()), MAX_MANIFEST_SIZE, &what)?;
        RawManifest::parse(bytes, Some(desc.media_type().as_ref()), &self.name())
    }
}

impl ImageSource for OciSource {
    fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("oci:{}:{t}", self.layout.path.display()),
            None => format!("oci:{}", self.layout.path.display()),
        }
    }

    fn manifest(&self) -> Result<RawManifest> {
        let desc = self.layout.resolve(self.tag.as_deref())?;
        self.read_manifest(&desc)
    }

    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        self.read_manifest(descriptor)
    }

    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        Ok(Box::new(self.layout.open_blob(descriptor.digest())?))
    }

    fn open_layer(
        &self,
        _index: usize,
        descriptor: &Descriptor,
        _diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        let file = self.layout.open_blob(descriptor.digest()).map_err(|e| {
            match (&e, descriptor.urls()) {
                (Error::NotFound { what, .. }, Some(urls)) if !urls.is_empty() => Error::NotFound {
                    what: what.clone(),
                    hint: format!(
                        "it is a foreign layer (urls: {}); stowage does not fetch foreign layers",
                        urls.join(", ")
                    ),
                },
                _ => e,
            }
        })?;
        Ok(LayerStream::Blob(Box::new(io::BufReader::with_capacity(
            256 * 1024,
            file,
        ))))
    }
}

/// An OCI layout as a copy destination.
pub struct OciSink {
    layout: OciDir,
    tag: Option<String>,
    additional_tags: Vec<String>,
    compression: Option<Compression>,
}

impl OciSink {
    /// Open (creating if needed) `oci:PATH[:TAG]` for writing. With `compression`, layers are
    /// stored with it (recompressed when they arrive otherwise); without, they are stored as
    /// they come, and uncompressed diffs are gzip-compressed (skopeo's default).
    pub fn create(
        path: &Path,
        tag: Option<&str>,
        compression: Option<Compression>,
    ) -> Result<Self> {
        Ok(OciSink {
            layout: OciDir::create(path)?,
            tag: tag.map(str::to_string),
            additional_tags: Vec::new(),
            compression,
        })
    }

    /// Tag the image (or index) with `tags` as well (`--additional-tag`).
    pub fn with_additional_tags(mut self, tags: Vec<String>) -> Self {
        self.additional_tags = tags;
        self
    }

    /// Add `descriptor` to `index.json` under the tag and every additional tag.
    fn tag_manifest(&self, descriptor: Descriptor) -> Result<()> {
        self.layout
            .add_manifest(descriptor.clone(), self.tag.as_deref())?;
        for t in &self.additional_tags {
            self.layout.add_manifest(descriptor.clone(), Some(t))?;
        }
        Ok(())
    }
}

impl ImageSink for OciSink {
    fn location(&self) -> Option<std::path::PathBuf> {
        Some(self.layout.path.clone())
    }
    fn name(&self) -> String {
        match &self.tag {
            Some(t) => format!("oci:{}:{t}", self.layout.path.display()),
            None => format!("oci:{}", self.layout.path.display()),
        }
    }

    fn index_support(&self) -> Result<()> {
        Ok(())
    }

    /// The index blob, then its `index.json` entry (tagged). The children's manifests are
    /// in `blobs/` already, or (`index-only`) may be missing, as skopeo leaves them.
    fn commit_index(&self, index: &RawManifest) -> Result<()> {
        let (digest, size) = self.layout.write_blob(&index.bytes)?;
        self.tag_manifest(Descriptor::new(
            MediaType::from(index.media_type.as_str()),
            size,
            digest,
        ))
    }

    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>> {
        Ok(Box::new(OciWriter {
            sink: self,
            plan: plan.clone(),
            staged: Default::default(),
        }))
    }
}

struct OciWriter<'s> {
    sink: &'s OciSink,
    plan: ImagePlan,
    /// Layer blobs written by this copy, published only at commit.
    staged: std::sync::Mutex<Vec<StagedBlob<'s>>>,
}

impl ImageWriter for OciWriter<'_> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        let desc = &self.plan.layers[index].descriptor;
        let source = Compression::from_media_type(desc.media_type().as_ref())?;
        if target_compression(LayerForm::Blob, source, self.sink.compression).is_some() {
            return Ok(None);
        }
        Ok(self
            .sink
            .layout
            .has_blob(desc.digest(), Some(desc.size()))?
            .then(|| StoredLayer {
                descriptor: desc.clone(),
            }))
    }

    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        let plan = &self.plan.layers[input.index];
        let mut out = self.sink.layout.blob_writer()?;
        let stored = match target_compression(input.form, input.compression, self.sink.compression)
        {
            None => {
                input.copy_to(&mut out)?;
                let staged = out.finish(Some(plan.descriptor.digest()))?;
                (staged, plan.descriptor.clone())
            }
            Some(target) => {
                let (out, decoded) = input.recompress(out, target)?;
                let staged = out.finish(None)?;
                let descriptor = recompressed_descriptor(
                    target,
                    staged.size(),
                    staged.digest().clone(),
                    decoded.value,
                );
                (staged, descriptor)
            }
        };
        self.staged.lock().unwrap().push(stored.0);
        Ok(StoredLayer {
            descriptor: stored.1,
        })
    }

    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult> {
        let layout = &self.sink.layout;
        for staged in self.staged.into_inner().unwrap() {
            staged.publish()?;
        }
        let (config_digest, _) = layout.write_blob(&image.config.bytes)?;
        if &config_digest != image.config_descriptor.digest() {
            return Err(Error::DigestMismatch {
                what: format!("config of {}", self.plan.source_name),
                expected: image.config_descriptor.digest().clone(),
                actual: config_digest,
            });
        }
        let (digest, size) = layout.write_blob(&image.manifest.bytes)?;
        if !image.index_child {
            let media_type = MediaType::from(image.manifest.media_type.as_str());
            self.sink
                .tag_manifest(Descriptor::new(media_type, size, digest))?;
        }
        Ok(CommitResult::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_go_and_live_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let oci = OciDir::create(tmp.path()).unwrap();
        // A dead writer's file (nobody holds its lock) and a live writer's.
        std::fs::write(tmp.path().join(".tmp-blob-dead"), b"x").unwrap();
        let mut live = oci.blob_writer().unwrap();
        live.write_all(b"partial").unwrap();
        let live_name = live.temp_name.clone().unwrap();
        let again = OciDir::create(tmp.path()).unwrap();
        assert!(!tmp.path().join(".tmp-blob-dead").exists());
        assert!(
            tmp.path().join(&live_name).exists(),
            "a live writer's file was removed"
        );
        assert_eq!(again.remove_stale_temporaries().unwrap(), 0);
        // A finished (staged) blob keeps its lock until published.
        let staged = live.finish(None).unwrap();
        assert_eq!(again.remove_stale_temporaries().unwrap(), 0);
        staged.publish().unwrap();
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn create_write_tag_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let oci = OciDir::create(&tmp.path().join("l")).unwrap();
        let (d, n) = oci.write_blob(b"hello").unwrap();
        assert_eq!(n, 5);
        assert!(oci.has_blob(&d, Some(5)).unwrap());
        assert!(!oci.has_blob(&d, Some(6)).unwrap());
        let desc = Descriptor::new(MediaType::ImageManifest, 5, d.clone());
        oci.add_manifest(desc.clone(), Some("a")).unwrap();
        oci.add_manifest(desc.clone(), Some("b")).unwrap();
        oci.add_manifest(desc.clone(), Some("a")).unwrap();
        assert_eq!(oci.tags().unwrap(), vec!["b", "a"]);
        assert_eq!(oci.resolve(Some("a")).unwrap().digest(), &d);
        let err = oci.resolve(None).unwrap_err().to_string();
        assert!(err.contains("2 images"), "{err}");
        let err = oci.resolve(Some("zz")).unwrap_err().to_string();
        assert!(err.contains("\"zz\"") && err.contains("b, a"), "{err}");
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("l"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn rejected_blob_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let oci = OciDir::create(tmp.path()).unwrap();
        let mut w = oci.blob_writer().unwrap();
        w.write_all(b"abc").unwrap();
        let wrong = crate::digest::sha256_of(b"abd");
        assert!(matches!(
            w.commit(Some(&wrong)),
            Err(Error::DigestMismatch { .. })
        ));
        let mut w = oci.blob_writer().unwrap();
        w.write_all(b"abc").unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn open_rejects_non_layouts() {
        let tmp = tempfile::tempdir().unwrap();
        let err = OciDir::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
        std::fs::write(tmp.path().join("stuff"), "x").unwrap();
        let err = OciDir::create(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not an OCI layout"), "{err}");
    }
}
