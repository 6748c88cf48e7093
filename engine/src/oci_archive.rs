//! OCI archives (`oci-archive:PATH[:TAG]`): an OCI image layout in a single tar file.
//!
//! The format is the OCI layout, tarred; so this module is a thin wrapper around
//! [`oci_layout`](crate::oci_layout), as containers/image's oci-archive transport is around its
//! oci transport:
//! 1. Reading: the archive is unpacked into a private temporary directory with the safe
//!    extractor ([`layer_tar`](crate::layer_tar), no owners, no devices, no xattrs) and read as a
//!    layout. The temporary directory lives as long as the source.
//! 2. Writing: an existing archive is unpacked first (so images already in it are kept), the
//!    image is written to the layout in the temporary directory, and on commit the layout is
//!    tarred into a temporary file beside the archive, fsynced and renamed over it. An error at
//!    any step leaves the old archive untouched.

use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use oci_spec::image::Descriptor;

use crate::compression::{BoxRead, Compression};
use crate::copy::{
    CommitResult, FinalImage, ImagePlan, ImageSink, ImageSource, ImageWriter, LayerInput,
    LayerStream, StoredLayer,
};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer_tar::{extract_layer, ExtractOptions, WhiteoutMode};
use crate::manifest::RawManifest;
use crate::oci_layout::{OciSink, OciSource};

fn unpack_archive(archive: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(archive).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound {
            what: format!("OCI archive {}", archive.display()),
            hint: "check the path after oci-archive:".into(),
        },
        _ => Error::io_path("opening", archive, e),
    })?;
    let dir = Dir::open_ambient_dir(into, ambient_authority()).at("opening", into)?;
    let opts = ExtractOptions {
        whiteouts: WhiteoutMode::Files,
        chown: false,
        xattrs: false,
        devices: false,
        reject_duplicates: false,
    };
    extract_layer::<_, io::Sink>(
        BufReader::with_capacity(256 * 1024, file),
        &dir,
        &opts,
        &format!("OCI archive {}", archive.display()),
        None,
    )?;
    Ok(())
}

fn temp_dir_near(path: &Path) -> Result<tempfile::TempDir> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".stowage-oci-archive-")
        .tempdir_in(parent)
        .at("creating a temporary directory in", parent)
}

/// An image in an OCI archive, as a copy source.
pub struct OciArchiveSource {
    inner: OciSource,
    name: String,
    _temp: tempfile::TempDir,
}

impl OciArchiveSource {
    /// Unpack `path` and open the image tagged `tag` (or the only image) in it.
    pub fn open(path: &Path, tag: Option<&str>) -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("stowage-oci-archive-")
            .tempdir()
            .map_err(|e| {
                Error::io_path("creating a temporary directory in", std::env::temp_dir(), e)
            })?;
        unpack_archive(path, temp.path())?;
        let inner = OciSource::open(temp.path(), tag).map_err(|e| match e {
            Error::NotOciLayout { .. } => Error::NotFound {
                what: format!("oci-layout in OCI archive {}", path.display()),
                hint: "the archive holds no OCI image layout; is it an OCI archive?".into(),
            },
            other => other,
        })?;
        let name = match tag {
            Some(t) => format!("oci-archive:{}:{t}", path.display()),
            None => format!("oci-archive:{}", path.display()),
        };
        Ok(OciArchiveSource {
            inner,
            name,
            _temp: temp,
        })
    }
}

impl ImageSource for OciArchiveSource {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn manifest(&self) -> Result<RawManifest> {
        self.inner.manifest()
    }
    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        self.inner.child_manifest(descriptor)
    }
    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        self.inner.open_blob(descriptor)
    }
    fn open_layer(
        &self,
        index: usize,
        descriptor: &Descriptor,
        diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        self.inner.open_layer(index, descriptor, diff_id)
    }
}

/// An OCI archive as a copy destination.
pub struct OciArchiveSink {
    inner: OciSink,
    archive: PathBuf,
    temp: tempfile::TempDir,
    name: String,
}

impl OciArchiveSink {
    /// Prepare to write `tag` into the archive at `path` (created, or extended if it exists).
    pub fn create(
        path: &Path,
        tag: Option<&str>,
        compression: Option<Compression>,
    ) -> Result<Self> {
        let temp = temp_dir_near(path)?;
        if path.exists() {
            unpack_archive(path, temp.path())?;
        }
        let inner = OciSink::create(temp.path(), tag, compression)?;
        let name = match tag {
            Some(t) => format!("oci-archive:{}:{t}", path.display()),
            None => format!("oci-archive:{}", path.display()),
        };
        Ok(OciArchiveSink {
            inner,
            archive: path.to_path_buf(),
            temp,
            name,
        })
    }

    /// Tar the layout into a temporary file beside the archive, then rename it into place.
    fn write_archive(&self) -> Result<()> {
        let parent = self
            .archive
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".stowage-oci-archive-")
            .tempfile_in(parent)
            .at("creating a temporary file in", parent)?;
        let what = || format!("writing OCI archive {}", self.archive.display());
        let mut builder = tar::Builder::new(BufWriter::with_capacity(256 * 1024, tmp.as_file()));
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Deterministic);
        let mut names: Vec<PathBuf> = Vec::new();
        collect_files(self.temp.path(), Path::new(""), &mut names).ctx(what)?;
        for rel in &names {
            builder
                .append_path_with_name(self.temp.path().join(rel), rel)
                .ctx(what)?;
        }
        let mut out = builder.into_inner().ctx(what)?;
        out.flush().ctx(what)?;
        drop(out);
        tmp.as_file().sync_all().ctx(what)?;
        tmp.persist(&self.archive)
            .map_err(|e| Error::io_path("replacing", &self.archive, e.error))?;
        Ok(())
    }
}

/// Every file and directory under `root/rel`, parents first, sorted for reproducible archives.
fn collect_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = rel.join(e.file_name());
        let is_dir = e.file_type()?.is_dir();
        out.push(name.clone());
        if is_dir {
            collect_files(root, &name, out)?;
        }
    }
    Ok(())
}

impl ImageSink for OciArchiveSink {
    fn location(&self) -> Option<PathBuf> {
        Some(self.archive.clone())
    }
    fn name(&self) -> String {
        self.name.clone()
    }
    fn index_support(&self) -> Result<()> {
        self.inner.index_support()
    }
    fn commit_index(&self, index: &crate::manifest::RawManifest) -> Result<()> {
        self.inner.commit_index(index)?;
        self.write_archive()
    }
    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>> {
        Ok(Box::new(ArchiveWriter {
            sink: self,
            inner: self.inner.begin(plan)?,
        }))
    }
}

struct ArchiveWriter<'s> {
    sink: &'s OciArchiveSink,
    inner: Box<dyn ImageWriter + 's>,
}

impl ImageWriter for ArchiveWriter<'_> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        self.inner.existing_layer(index)
    }
    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        self.inner.put_layer(input)
    }
    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult> {
        let result = self.inner.commit(image)?;
        if !image.index_child {
            self.sink.write_archive()?;
        }
        Ok(result)
    }
}
