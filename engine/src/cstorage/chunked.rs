//! zstd:chunked in containers-storage: the layers' TOCs, the store's files by content.
//!
//! 1. A layer pulled from a zstd:chunked blob keeps the blob's TOC JSON as its big data
//!    [`TOC_KEY`] (`overlay-layers/<id>/=enN0ZC1jaHVua2VkLW1hbmlmZXN0`, the key listed in the
//!    record's `big-data-names`), exactly as podman 4.3 does after its partial pulls, so
//!    either tool's later partial pull finds the files of the other's layers.
//! 2. [`ContentIndex::build`] reads the TOCs of every complete layer of the store (once per
//!    image written) and maps each regular file's sha256 and size to the layer and path that
//!    hold it — containers/storage's layer cache, kept in memory. Layers without a TOC (pulled
//!    from gzip or zstd blobs) are not indexed: hashing their files would cost a read of the
//!    whole store on every pull.
//! 3. [`ContentIndex`] is the pipeline's [`LocalFiles`]: `open` opens the file below the
//!    layer's `diff/` with cap-std (no escape through symlinks) and checks it is a regular
//!    file of the size the TOC says; the partial pull checks its digest while reading.

use std::collections::HashMap;
use std::io;

use super::{bigdata, LayerRecord, Store};
use crate::compression::zstd_chunked::LocalFiles;
use crate::error::{Error, IoContext, Result};

/// The big-data key of a layer's zstd:chunked TOC (containers/storage's `bigDataKey`).
pub const TOC_KEY: &str = "zstd-chunked-manifest";

/// The part of a TOC the index reads (the other fields, times and offsets of every entry,
/// are skipped unparsed: building the index runs before each partial pull).
#[derive(serde::Deserialize)]
struct IndexToc {
    entries: Vec<IndexEntry>,
}

/// A TOC entry as the index reads it ([`crate::compression::zstd_chunked::TocEntry`]'s
/// names).
#[derive(serde::Deserialize)]
struct IndexEntry {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    digest: String,
}

/// Where one file content lives in the store.
#[derive(Debug, Clone)]
struct Location {
    layer: String,
    path: String,
}

/// The store's regular files by content, from the layers' TOCs.
pub struct ContentIndex<'s> {
    store: &'s Store,
    files: HashMap<(String, u64), Location>,
    /// The `diff/` directories opened so far, by layer id (a partial pull opens hundreds of
    /// files below the same few).
    dirs: std::sync::Mutex<HashMap<String, std::sync::Arc<cap_std::fs::Dir>>>,
}

impl<'s> ContentIndex<'s> {
    /// Index the files of every complete layer of `store` that has a TOC. A TOC that does not
    /// parse is skipped (its layer's files are simply not reused).
    pub fn build(store: &'s Store) -> Result<ContentIndex<'s>> {
        let mut files = HashMap::new();
        let layers: Vec<LayerRecord> = store.layers()?;
        let dir = store.subdir(super::store::LAYERS_DIR)?;
        if let Some(dir) = dir {
            for layer in layers
                .iter()
                .filter(|l| !l.is_incomplete() && l.big_data_names.iter().any(|k| k == TOC_KEY))
            {
                let Ok(Some(json)) = bigdata::read(&dir, &layer.id, TOC_KEY) else {
                    continue;
                };
                let Ok(toc) = serde_json::from_slice::<IndexToc>(&json) else {
                    continue;
                };
                for e in toc.entries {
                    if e.kind == "reg" && e.size > 0 && !e.digest.is_empty() {
                        files
                            .entry((e.digest, e.size as u64))
                            .or_insert_with(|| Location {
                                layer: layer.id.clone(),
                                path: e.name,
                            });
                    }
                }
            }
        }
        Ok(ContentIndex {
            store,
            files,
            dirs: Default::default(),
        })
    }

    /// Number of distinct contents indexed.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

impl LocalFiles for ContentIndex<'_> {
    fn has(&self, digest: &str, size: u64) -> bool {
        self.files.contains_key(&(digest.to_string(), size))
    }

    fn open(&self, digest: &str, size: u64) -> io::Result<std::fs::File> {
        let loc = self
            .files
            .get(&(digest.to_string(), size))
            .ok_or_else(|| io::Error::other(format!("no file with content {digest}")))?;
        let diff = {
            let mut dirs = self.dirs.lock().unwrap();
            match dirs.get(&loc.layer) {
                Some(d) => d.clone(),
                None => {
                    let d = std::sync::Arc::new(
                        self.store
                            .layer_diff_dir(&loc.layer)
                            .map_err(io::Error::other)?,
                    );
                    dirs.insert(loc.layer.clone(), d.clone());
                    d
                }
            }
        };
        let rel = loc.path.trim_start_matches('/').trim_start_matches("./");
        let file = diff.open(rel).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("opening {rel} of layer {} (for {digest}): {e}", loc.layer),
            )
        })?;
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() != size {
            return Err(io::Error::other(format!(
                "{rel} of layer {} is no longer a {size}-byte file",
                loc.layer
            )));
        }
        Ok(file.into_std())
    }
}

impl Store {
    /// Keep `toc_json` as the TOC of the finished layer `id` (big data [`TOC_KEY`], listed in
    /// its record), for later partial pulls by stowage or podman.
    pub fn set_layer_toc(&self, id: &str, toc_json: &[u8]) -> Result<()> {
        let g = self.layers_lock.write()?;
        let mut all = self.load_layers()?;
        let rec = all
            .iter_mut()
            .find(|l| l.id == id)
            .ok_or_else(|| Error::NotFound {
                what: format!("record of layer {id}"),
                hint: "it was removed while its TOC was stored".into(),
            })?;
        let dir = self.required_subdir(super::store::LAYERS_DIR)?;
        bigdata::write(&dir, id, TOC_KEY, toc_json).ctx(|| {
            format!(
                "writing the zstd:chunked TOC of layer {id} in {}",
                self.graph_root().join(super::store::LAYERS_DIR).display()
            )
        })?;
        if !rec.big_data_names.iter().any(|k| k == TOC_KEY) {
            rec.big_data_names.push(TOC_KEY.to_string());
        }
        self.save_layers(&all, &g)
    }
}
