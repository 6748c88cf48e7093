//! An image of an ostree repository's container store as a copy source:
//! `ostree:[REPO]IMGREF`, exported bit for bit.
//!
//! 1. The image ref `ostree/container/image/<escaped docker://IMGREF>` names the merge
//!    commit; its metadata gives the manifest and config exactly as they were imported
//!    (`stowage.manifest`, `stowage.image-config`). Their digests are checked against
//!    `ostree.manifest-digest` and the manifest's config descriptor.
//! 2. Each layer is found by its blob ref; its export data (`stowage/layer-data/…`: the
//!    tar-split and the bodies of files the import filtered out) rebuilds the uncompressed
//!    layer tar byte for byte, with file bodies read from the layer commit's content objects
//!    (each checked against the tar-split's CRC-64). The stream is a
//!    [`LayerStream::Diff`]: the pipeline verifies it against the diffID, and a sink that
//!    keeps compressed blobs compresses it (as from containers-storage). In bare and
//!    bare-user repositories the stream is a [`LayerStream::DiffFiles`]: the content objects
//!    are offered as the files' origins, so a writer on the same filesystem reflinks (or hard
//!    links) them instead of writing their bytes ([`crate::fs_clone`]).
//!    The layers of an ostree-encapsulated image rebuild the same way, their bodies read
//!    from the objects their entries name (`sysroot/ostree/repo/objects/…`) or kept in the
//!    export data ([`super::encapsulated::body_source`]).
//! 3. An image imported by another tool (ostree-rs-ext) has no such data: its merged tree is
//!    exported as one regenerated layer ([`super::regenerate`]), with a new config and
//!    manifest, and [`ImageSource::notes`] says so.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::Descriptor;

use super::checkout::WalkEntry;
use super::config::RepoMode;
use super::encapsulated::{self, LayerRole, META_LAYER_KIND};
use super::import::{map_path, MappedPath, FILTERED_DIR, TAR_SPLIT_FILE};
use super::object::{Checksum, ObjectType};
use super::repo::Repo;
use super::sink::{blob_ref, image_ref, layer_data_ref, META_CONFIG_BYTES, META_MANIFEST_BYTES};
use crate::compression::BoxRead;
use crate::copy::{ImageSource, LayerStream};
use crate::digest::{sha256_of, Digest};
use crate::error::{Error, Result};
use crate::fs_clone::FileOrigin;
use crate::layer_tar::normalize_path;
use crate::manifest::RawManifest;
use crate::reference::Reference;
use crate::tar_split::Assembler;
use crate::transport::ImageRef;

/// An image in an ostree repository, as a copy source.
pub struct OstreeSource {
    repo: Repo,
    name: String,
    manifest: Vec<u8>,
    config: Vec<u8>,
    /// Set when the image has no export data: its one layer is regenerated from this merge
    /// commit ([`super::regenerate`]).
    regenerated: Option<Checksum>,
}

impl OstreeSource {
    /// Open `image` of the repository at `path`.
    pub fn open(path: &Path, image: &Reference) -> Result<Self> {
        let repo = Repo::open(path)?;
        let name = ImageRef::Ostree {
            repo: Some(PathBuf::from(path)),
            image: Some(image.clone()),
        }
        .to_string();
        let imgref = format!("docker://{image}");
        let r = image_ref(&imgref)?;
        let commit = repo.read_ref(&r)?.ok_or_else(|| Error::NotFound {
            what: format!("image {imgref} in {}", path.display()),
            hint: format!(
                "list the repository's images with `stowage image --ostree-repo {} list --type host`",
                path.display()
            ),
        })?;
        let c = repo.read_commit(&commit)?;
        let bytes = |key: &str| c.meta(key).and_then(|v| v.as_bytes()).map(<[u8]>::to_vec);
        let exact = match (bytes(META_MANIFEST_BYTES), bytes(META_CONFIG_BYTES)) {
            (Some(m), Some(cfg)) => Some((m, cfg)),
            _ => None,
        };
        let Some((manifest, config)) = exact else {
            // Imported by another tool (ostree-rs-ext): no export data; regenerate.
            let r = super::regenerate::regenerate(&repo, &commit, &name)?;
            return Ok(OstreeSource {
                repo,
                name,
                manifest: r.manifest,
                config: r.config,
                regenerated: Some(commit),
            });
        };
        if let Some(d) = c.meta_str("ostree.manifest-digest") {
            let actual = sha256_of(&manifest);
            if actual.to_string() != d {
                return Err(Error::Malformed {
                    what: format!("commit {commit} of {name}"),
                    reason: format!(
                        "its manifest hashes to {actual}, but ostree.manifest-digest says {d}"
                    ),
                });
            }
        }
        Ok(OstreeSource {
            repo,
            name,
            manifest,
            config,
            regenerated: None,
        })
    }

    /// The layer commit and the export-data commit of the layer `digest`.
    fn layer_commits(&self, digest: &Digest) -> Result<(Checksum, Checksum)> {
        let missing = |what: &str| Error::NotFound {
            what: format!("{what} of layer {digest} of {}", self.name),
            hint: "the repository lost the layer's refs; import the image again".into(),
        };
        let layer = self
            .repo
            .read_ref(&blob_ref(digest)?)?
            .ok_or_else(|| missing("the blob ref"))?;
        let data = self
            .repo
            .read_ref(&layer_data_ref(digest)?)?
            .ok_or_else(|| missing("the export data"))?;
        let meta = self.repo.read_commit(&data)?;
        if meta.meta_str("stowage.layer-commit") != Some(layer.to_hex().as_str()) {
            return Err(Error::Malformed {
                what: format!("export data {data} of layer {digest} of {}", self.name),
                reason: format!(
                    "it belongs to layer commit {:?}, but the blob ref points at {layer}",
                    meta.meta_str("stowage.layer-commit")
                ),
            });
        }
        Ok((layer, data))
    }

    fn files_of(&self, commit: &Checksum) -> Result<HashMap<String, Checksum>> {
        let mut files = HashMap::new();
        self.repo.walk(commit, &mut |e| {
            if let WalkEntry::File { path, checksum } = e {
                files.insert(path.clone(), *checksum);
            }
            Ok(())
        })?;
        Ok(files)
    }
}

/// A regenerated layer tar, written by a thread into a pipe as it is read (never whole in
/// memory); the thread's error, if any, is the reader's at the end of the stream.
struct GeneratedLayer {
    pipe: std::io::PipeReader,
    writer: Option<std::thread::JoinHandle<Result<()>>>,
}

impl GeneratedLayer {
    fn start(repo: &Path, commit: Checksum) -> Result<Self> {
        let (pipe, mut w) = std::io::pipe().map_err(|e| Error::from_io("creating a pipe", e))?;
        let repo = Repo::open(repo)?;
        let writer = std::thread::spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut w);
            super::regenerate::write_layer(&repo, &commit, &mut out)?;
            out.flush()
                .map_err(|e| Error::from_io("writing the regenerated layer", e))
        });
        Ok(GeneratedLayer {
            pipe,
            writer: Some(writer),
        })
    }
}

impl Read for GeneratedLayer {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.pipe.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(h) = self.writer.take() {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                    Err(_) => return Err(std::io::Error::other("the layer writer panicked")),
                }
            }
        }
        Ok(n)
    }
}

impl ImageSource for OstreeSource {
    fn notes(&self) -> Vec<String> {
        match self.regenerated {
            Some(commit) => vec![format!(
                "{} was imported without stowage's export data (as ostree-rs-ext imports \
                 images): its layers cannot be rebuilt, so its merged tree (commit {commit}) \
                 is exported as one new layer, with a new config and manifest digest",
                self.name
            )],
            None => Vec::new(),
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn manifest(&self) -> Result<RawManifest> {
        RawManifest::parse(self.manifest.clone(), None, &self.name)
    }

    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        Err(Error::NotFound {
            what: format!("manifest {} in {}", descriptor.digest(), self.name),
            hint: "an ostree repository keeps one platform's manifest per image".into(),
        })
    }

    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        if descriptor.digest() == &sha256_of(&self.config) {
            return Ok(Box::new(std::io::Cursor::new(self.config.clone())));
        }
        Err(Error::NotFound {
            what: format!("blob {} of {}", descriptor.digest(), self.name),
            hint: "only the config is kept as a blob".into(),
        })
    }

    fn open_layer(
        &self,
        index: usize,
        descriptor: &Descriptor,
        _diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        if let Some(commit) = self.regenerated {
            return Ok(LayerStream::Diff(Box::new(GeneratedLayer::start(
                self.repo.path(),
                commit,
            )?)));
        }
        let (layer, data) = self.layer_commits(descriptor.digest())?;
        let extra = self.files_of(&data)?;
        let split = extra.get(TAR_SPLIT_FILE).ok_or_else(|| Error::NotFound {
            what: format!("{TAR_SPLIT_FILE} in export data {data} of {}", self.name),
            hint: "import the image again".into(),
        })?;
        let split = self.repo.open_content(split)?;
        let label = format!(
            "layer {} ({}) of {}",
            index + 1,
            descriptor.digest(),
            self.name
        );
        let repo = &self.repo;
        let data_commit = repo.read_commit(&data)?;
        let kind = data_commit.meta_str(META_LAYER_KIND);
        let role = LayerRole::from_kind_name(kind).ok_or_else(|| Error::Malformed {
            what: format!("export data {data} of {label}"),
            reason: format!("unknown layer kind {kind:?}; written by a newer stowage?"),
        })?;
        let files = if role == LayerRole::Derived {
            self.files_of(&layer)?
        } else {
            HashMap::new()
        };
        let derived = Arc::new(DerivedFiles {
            files,
            extra,
            options: super::sink::recorded_mapping(&data_commit),
        });
        let bodies = derived.clone();
        let getter = move |name: &[u8], _size: u64| -> Result<Box<dyn Read + Send>> {
            let path = normalize_path(name)?;
            let extra = &bodies.extra;
            let kept = extra.get(&format!("{FILTERED_DIR}/{}", path.display()));
            if role != LayerRole::Derived {
                // An ostree layer: bodies are objects, or kept in the export data.
                if let Some(c) = kept {
                    let content = repo.open_content(c)?;
                    return Ok(Box::new(content.reader));
                }
                let p = path.to_str().unwrap_or_default();
                return encapsulated::body_source(repo, p)?.ok_or_else(|| Error::NotFound {
                    what: format!("object {} of {label}", path.display()),
                    hint: "the repository lost an object of the layer; import the image again"
                        .into(),
                });
            }
            let checksum = bodies.checksum(&path)?.ok_or_else(|| Error::NotFound {
                what: format!("file {} of {label}", path.display()),
                hint: "the layer commit is missing a file of its tar-split; import the image again"
                    .into(),
            })?;
            // Unbuffered: the assembler reads each body straight into its caller's buffer
            // (the read-ahead's 256 KiB); an archive object's reader buffers its own file.
            Ok(repo.open_content(checksum)?.reader)
        };
        let assembler = Assembler::new(BufReader::new(split.reader), getter);
        // Bare and bare-user objects are the files' bytes as they are: a writer on the same
        // filesystem may share them (archive objects are compressed).
        if role == LayerRole::Derived && repo.mode() != RepoMode::Archive {
            let origin = ObjectOrigin {
                repo,
                files: derived,
            };
            return Ok(LayerStream::DiffFiles(
                Box::new(assembler),
                Box::new(origin),
            ));
        }
        Ok(LayerStream::Diff(Box::new(assembler)))
    }
}

/// Where the bodies of a derived layer's tar entries are: the layer commit's files, and the
/// export data's kept bodies of filtered files.
struct DerivedFiles {
    files: HashMap<String, Checksum>,
    extra: HashMap<String, Checksum>,
    options: super::import::ImportOptions,
}

impl DerivedFiles {
    /// The content object holding the body of tar path `path`.
    fn checksum(&self, path: &Path) -> Result<Option<&Checksum>> {
        Ok(match map_path(path, &self.options)? {
            MappedPath::Kept(p) => self.files.get(&p),
            MappedPath::Filtered(_) => self
                .extra
                .get(&format!("{FILTERED_DIR}/{}", path.display())),
            MappedPath::Root => None,
        })
    }
}

/// The content objects of a bare or bare-user repository as the origins of a layer's files
/// ([`crate::fs_clone`]): the same objects the layer stream reads the bodies from.
struct ObjectOrigin<'a> {
    repo: &'a Repo,
    files: Arc<DerivedFiles>,
}

impl FileOrigin for ObjectOrigin<'_> {
    fn open(&self, name: &[u8], _size: u64) -> Option<std::fs::File> {
        let path = normalize_path(name).ok()?;
        let checksum = self.files.checksum(&path).ok()??;
        let p = self.repo.object_path(checksum, ObjectType::File);
        self.repo.dir.open(&p).ok().map(|f| f.into_std())
    }
}
