//! Progress of a copy: events, the decorators that produce them, and bootc's JSON Lines
//! protocol.
//!
//! 1. [`Observed::source`] and [`Observed::sink`] wrap any [`ImageSource`] / [`ImageSink`]
//!    without the pipeline knowing: the sink wrapper reports the plan when the copy begins,
//!    layers the destination already has, and the commit; the source wrapper reports each
//!    layer as it is opened, the bytes read from it, and its end.
//! 2. A [`Progress`] receives those events, from several threads at once.
//! 3. [`JsonLines`] writes them as bootc's `--progress-fd` protocol (version 0.1.0): one
//!    `Start`, then `ProgressBytes` for the `pulling` task (per-layer subtasks; `bytes`
//!    counts fetched plus cached bytes so that it reaches `bytesTotal`) at most five times a
//!    second, plus once whenever a layer starts, ends or is found cached, and a final
//!    `ProgressSteps` for the `importing` task when the image is committed.
//!
//! Terminal rendering (bars, plain lines) belongs to the CLI.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_spec::image::Descriptor;
use serde::Serialize;

use crate::compression::BoxRead;
use crate::copy::{
    CommitResult, FinalImage, ImagePlan, ImageSink, ImageSource, ImageWriter, LayerInput,
    LayerStream, StoredLayer,
};
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::RawManifest;

/// Receives progress events. Calls come from several threads at once.
pub trait Progress: Send + Sync {
    /// A copy of `plan` into `destination` begins.
    fn begin(&self, plan: &ImagePlan, destination: &str);
    /// Layer `index` is already in the destination.
    fn layer_cached(&self, index: usize, descriptor: &Descriptor);
    /// Layer `index` starts streaming.
    fn layer_started(&self, index: usize, descriptor: &Descriptor);
    /// `total` bytes of layer `index` have been read so far.
    fn layer_bytes(&self, index: usize, total: u64);
    /// Layer `index` was read to its end.
    fn layer_finished(&self, index: usize);
    /// The image was committed (the copy succeeded).
    fn committed(&self);
}

/// Progress decorators.
pub struct Observed;

impl Observed {
    /// `source`, reporting layer reads to `progress`.
    pub fn source<'a>(
        source: &'a dyn ImageSource,
        progress: Arc<dyn Progress>,
    ) -> ObservedSource<'a> {
        ObservedSource { source, progress }
    }

    /// `sink`, reporting the plan, cached layers and the commit to `progress`.
    pub fn sink<'a>(sink: &'a dyn ImageSink, progress: Arc<dyn Progress>) -> ObservedSink<'a> {
        ObservedSink { sink, progress }
    }
}

/// See [`Observed::source`].
pub struct ObservedSource<'a> {
    source: &'a dyn ImageSource,
    progress: Arc<dyn Progress>,
}

impl ImageSource for ObservedSource<'_> {
    fn name(&self) -> String {
        self.source.name()
    }
    fn manifest(&self) -> Result<RawManifest> {
        self.source.manifest()
    }
    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        self.source.child_manifest(descriptor)
    }
    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        self.source.open_blob(descriptor)
    }
    fn sigstore_signatures(
        &self,
        manifest_digest: &crate::digest::Digest,
    ) -> Result<Vec<crate::policy::SigstoreSignature>> {
        self.source.sigstore_signatures(manifest_digest)
    }
    fn open_layer(
        &self,
        index: usize,
        descriptor: &Descriptor,
        diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        let stream = self.source.open_layer(index, descriptor, diff_id)?;
        self.progress.layer_started(index, descriptor);
        let progress = &self.progress;
        let wrap = |inner| counting(inner, index, progress.clone());
        Ok(match stream {
            LayerStream::Blob(r) => LayerStream::Blob(wrap(r)),
            LayerStream::Diff(r) => LayerStream::Diff(wrap(r)),
            LayerStream::DiffFiles(r, origin) => LayerStream::DiffFiles(wrap(r), origin),
        })
    }
    fn refetch_origin(&self) -> Option<String> {
        self.source.refetch_origin()
    }
    fn notes(&self) -> Vec<String> {
        self.source.notes()
    }
    fn blob_ranges(
        &self,
        descriptor: &Descriptor,
    ) -> Option<Box<dyn crate::compression::zstd_chunked::BlobRanges + '_>> {
        self.source.blob_ranges(descriptor)
    }
}

fn counting(inner: BoxRead<'_>, index: usize, progress: Arc<dyn Progress>) -> BoxRead<'_> {
    Box::new(Counting {
        inner,
        index,
        total: 0,
        finished: false,
        progress,
    })
}

struct Counting<'a> {
    inner: BoxRead<'a>,
    index: usize,
    total: u64,
    finished: bool,
    progress: Arc<dyn Progress>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.total += n as u64;
            self.progress.layer_bytes(self.index, self.total);
        } else if !buf.is_empty() && !self.finished {
            self.finished = true;
            self.progress.layer_finished(self.index);
        }
        Ok(n)
    }
}

/// See [`Observed::sink`].
pub struct ObservedSink<'a> {
    sink: &'a dyn ImageSink,
    progress: Arc<dyn Progress>,
}

impl ImageSink for ObservedSink<'_> {
    fn location(&self) -> Option<std::path::PathBuf> {
        self.sink.location()
    }
    fn name(&self) -> String {
        self.sink.name()
    }
    fn index_support(&self) -> Result<()> {
        self.sink.index_support()
    }
    fn commit_index(&self, index: &crate::manifest::RawManifest) -> Result<()> {
        self.sink.commit_index(index)
    }
    fn put_sigstore_signatures(
        &self,
        manifest_digest: &Digest,
        signatures: &[crate::policy::SigstoreSignature],
    ) -> Result<()> {
        self.sink
            .put_sigstore_signatures(manifest_digest, signatures)
    }
    fn docker_reference(&self) -> Option<crate::reference::Reference> {
        self.sink.docker_reference()
    }
    fn can_store_sigstore_signatures(&self) -> Result<()> {
        self.sink.can_store_sigstore_signatures()
    }
    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>> {
        let inner = self.sink.begin(plan)?;
        self.progress.begin(plan, &self.sink.name());
        Ok(Box::new(ObservedWriter {
            inner,
            plan_layers: plan.layers.iter().map(|l| l.descriptor.clone()).collect(),
            progress: self.progress.clone(),
        }))
    }
}

struct ObservedWriter<'s> {
    inner: Box<dyn ImageWriter + 's>,
    plan_layers: Vec<Descriptor>,
    progress: Arc<dyn Progress>,
}

impl ImageWriter for ObservedWriter<'_> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        let r = self.inner.existing_layer(index)?;
        if r.is_some() {
            self.progress.layer_cached(index, &self.plan_layers[index]);
        }
        Ok(r)
    }
    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        self.inner.put_layer(input)
    }
    fn layer_failed(&self, index: usize, error: &crate::error::Error) {
        self.inner.layer_failed(index, error)
    }
    fn layers_kept(&self) -> usize {
        self.inner.layers_kept()
    }
    fn layers_in_any_order(&self) -> bool {
        self.inner.layers_in_any_order()
    }
    fn local_files(&self) -> Option<&dyn crate::compression::zstd_chunked::LocalFiles> {
        self.inner.local_files()
    }
    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult> {
        let progress = self.progress.clone();
        let r = self.inner.commit(image)?;
        progress.committed();
        Ok(r)
    }
}

/// Several observers as one.
pub struct Fanout(pub Vec<Arc<dyn Progress>>);

impl Progress for Fanout {
    fn begin(&self, plan: &ImagePlan, destination: &str) {
        self.0.iter().for_each(|p| p.begin(plan, destination));
    }
    fn layer_cached(&self, index: usize, descriptor: &Descriptor) {
        self.0
            .iter()
            .for_each(|p| p.layer_cached(index, descriptor));
    }
    fn layer_started(&self, index: usize, descriptor: &Descriptor) {
        self.0
            .iter()
            .for_each(|p| p.layer_started(index, descriptor));
    }
    fn layer_bytes(&self, index: usize, total: u64) {
        self.0.iter().for_each(|p| p.layer_bytes(index, total));
    }
    fn layer_finished(&self, index: usize) {
        self.0.iter().for_each(|p| p.layer_finished(index));
    }
    fn committed(&self) {
        self.0.iter().for_each(|p| p.committed());
    }
}

/// bootc's progress protocol version.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// One line of bootc's protocol.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type")]
pub enum Event {
    /// First line.
    Start {
        /// Protocol version.
        version: String,
    },
    /// Byte-level progress of a task.
    #[serde(rename_all = "camelCase")]
    ProgressBytes {
        /// Machine name of the task (`pulling`).
        task: String,
        /// Human description.
        description: String,
        /// What the task is about (the image).
        id: String,
        /// Bytes the destination already had.
        bytes_cached: u64,
        /// Bytes done (fetched plus cached).
        bytes: u64,
        /// Bytes in all (0 = unknown).
        bytes_total: u64,
        /// Layers the destination already had.
        steps_cached: u64,
        /// Layers done (fetched plus cached).
        steps: u64,
        /// Layers in all.
        steps_total: u64,
        /// Per-layer progress.
        subtasks: Vec<SubtaskBytes>,
    },
    /// Step-level progress of a task.
    #[serde(rename_all = "camelCase")]
    ProgressSteps {
        /// Machine name of the task (`importing`).
        task: String,
        /// Human description.
        description: String,
        /// What the task is about.
        id: String,
        /// Steps skipped as already done.
        steps_cached: u64,
        /// Steps done.
        steps: u64,
        /// Steps in all.
        steps_total: u64,
        /// Sub-steps.
        subtasks: Vec<SubtaskStep>,
    },
}

/// A layer in [`Event::ProgressBytes`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubtaskBytes {
    /// Kind (`layer`).
    pub subtask: String,
    /// Human description.
    pub description: String,
    /// The layer digest.
    pub id: String,
    /// Bytes already present.
    pub bytes_cached: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Layer size.
    pub bytes_total: u64,
}

/// A step in [`Event::ProgressSteps`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubtaskStep {
    /// Kind.
    pub subtask: String,
    /// Human description.
    pub description: String,
    /// What the step is about.
    pub id: String,
    /// Whether it is done.
    pub completed: bool,
}

#[derive(Debug, Clone)]
struct LayerState {
    digest: String,
    size: u64,
    done: u64,
    cached: bool,
    finished: bool,
    started: bool,
}

#[derive(Default)]
struct JsonState {
    id: String,
    layers: Vec<LayerState>,
    last: Option<Instant>,
    started: bool,
}

/// Writes bootc's JSON Lines progress protocol to `out`.
pub struct JsonLines<W: Write + Send> {
    out: Mutex<(W, JsonState)>,
    interval: Duration,
}

impl<W: Write + Send> JsonLines<W> {
    /// Report to `out`, at most five `ProgressBytes` lines a second between layer events.
    pub fn new(out: W) -> Self {
        JsonLines {
            out: Mutex::new((out, JsonState::default())),
            interval: Duration::from_millis(200),
        }
    }

    fn emit(out: &mut W, event: &Event) {
        // Progress must never fail a copy: write errors (a closed pipe) are ignored.
        if let Ok(line) = serde_json::to_string(event) {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn bytes_event(state: &JsonState) -> Event {
        let layers = &state.layers;
        let cached: u64 = layers.iter().filter(|l| l.cached).map(|l| l.size).sum();
        Event::ProgressBytes {
            task: "pulling".into(),
            description: format!("Copying {}", state.id),
            id: state.id.clone(),
            bytes_cached: cached,
            bytes: layers.iter().map(|l| l.done).sum(),
            bytes_total: layers.iter().map(|l| l.size).sum(),
            steps_cached: layers.iter().filter(|l| l.cached).count() as u64,
            steps: layers.iter().filter(|l| l.finished).count() as u64,
            steps_total: layers.len() as u64,
            subtasks: layers
                .iter()
                .filter(|l| l.started || l.cached)
                .map(|l| SubtaskBytes {
                    subtask: "layer".into(),
                    description: format!("Layer {}", l.digest),
                    id: l.digest.clone(),
                    bytes_cached: if l.cached { l.size } else { 0 },
                    bytes: l.done,
                    bytes_total: l.size,
                })
                .collect(),
        }
    }

    fn update(&self, force: bool, f: impl FnOnce(&mut JsonState)) {
        let mut guard = self.out.lock().unwrap();
        let (out, state) = &mut *guard;
        f(state);
        let now = Instant::now();
        if force
            || state
                .last
                .is_none_or(|t| now.duration_since(t) >= self.interval)
        {
            state.last = Some(now);
            let ev = Self::bytes_event(state);
            Self::emit(out, &ev);
        }
    }
}

impl<W: Write + Send> Progress for JsonLines<W> {
    fn begin(&self, plan: &ImagePlan, _destination: &str) {
        let mut guard = self.out.lock().unwrap();
        let (out, state) = &mut *guard;
        if !state.started {
            state.started = true;
            Self::emit(
                out,
                &Event::Start {
                    version: PROTOCOL_VERSION.into(),
                },
            );
        }
        state.id = plan.source_name.clone();
        state.layers = plan
            .layers
            .iter()
            .map(|l| LayerState {
                digest: l.descriptor.digest().to_string(),
                size: l.descriptor.size(),
                done: 0,
                cached: false,
                finished: false,
                started: false,
            })
            .collect();
        state.last = Some(Instant::now());
        let ev = Self::bytes_event(state);
        Self::emit(out, &ev);
    }
    fn layer_cached(&self, index: usize, _descriptor: &Descriptor) {
        self.update(true, |s| {
            if let Some(l) = s.layers.get_mut(index) {
                l.cached = true;
                l.finished = true;
                l.done = l.size;
            }
        });
    }
    fn layer_started(&self, index: usize, _descriptor: &Descriptor) {
        self.update(true, |s| {
            if let Some(l) = s.layers.get_mut(index) {
                l.started = true;
            }
        });
    }
    fn layer_bytes(&self, index: usize, total: u64) {
        self.update(false, |s| {
            if let Some(l) = s.layers.get_mut(index) {
                l.done = total;
            }
        });
    }
    fn layer_finished(&self, index: usize) {
        self.update(true, |s| {
            if let Some(l) = s.layers.get_mut(index) {
                l.finished = true;
            }
        });
    }
    fn committed(&self) {
        let mut guard = self.out.lock().unwrap();
        let (out, state) = &mut *guard;
        let ev = Self::bytes_event(state);
        Self::emit(out, &ev);
        let ev = Event::ProgressSteps {
            task: "importing".into(),
            description: format!("Committing {}", state.id),
            id: state.id.clone(),
            steps_cached: 0,
            steps: 1,
            steps_total: 1,
            subtasks: vec![SubtaskStep {
                subtask: "commit".into(),
                description: "Writing manifest to image destination".into(),
                id: state.id.clone(),
                completed: true,
            }],
        };
        Self::emit(out, &ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::{copy_image, CopyOptions};
    use crate::oci_layout::{OciDir, OciSink, OciSource};
    use oci_spec::image::MediaType;

    /// A Write that shares its buffer with the test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn image(dir: &std::path::Path) -> Vec<Descriptor> {
        let oci = OciDir::create(dir).unwrap();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..3u8 {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_ustar();
            let data = vec![i; 1000 * (i as usize + 1)];
            h.set_path(format!("f{i}")).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, data.as_slice()).unwrap();
            let tar = b.into_inner().unwrap();
            diff_ids.push(crate::digest::sha256_of(&tar).to_string());
            let (d, size) = oci.write_blob(&tar).unwrap();
            layers.push(Descriptor::new(MediaType::ImageLayer, size, d));
        }
        let config = serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let (cd, cs) = oci
            .write_blob(&serde_json::to_vec(&config).unwrap())
            .unwrap();
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {"mediaType": crate::manifest::OCI_CONFIG, "digest": cd.to_string(), "size": cs},
            "layers": layers});
        let (md, ms) = oci
            .write_blob(&serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        oci.add_manifest(Descriptor::new(MediaType::ImageManifest, ms, md), Some("t"))
            .unwrap();
        layers
    }

    fn lines(buf: &Shared) -> Vec<serde_json::Value> {
        String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn json_lines_follow_bootc_protocol() {
        let tmp = tempfile::tempdir().unwrap();
        let layers = image(&tmp.path().join("src"));
        let src = OciSource::open(&tmp.path().join("src"), Some("t")).unwrap();
        let dst = OciSink::create(&tmp.path().join("dst"), Some("x"), None).unwrap();
        let buf = Shared::default();
        let progress: Arc<dyn Progress> = Arc::new(JsonLines::new(buf.clone()));
        let opts = CopyOptions {
            jobs: 2,
            ..Default::default()
        };
        copy_image(
            &Observed::source(&src, progress.clone()),
            &Observed::sink(&dst, progress.clone()),
            &opts,
        )
        .unwrap();
        let l = lines(&buf);
        assert_eq!(
            l[0],
            serde_json::json!({"type": "Start", "version": "0.1.0"})
        );
        let total: u64 = layers.iter().map(|d| d.size()).sum();
        let last_bytes = l
            .iter()
            .rev()
            .find(|v| v["type"] == "ProgressBytes")
            .unwrap();
        assert_eq!(last_bytes["task"], "pulling");
        assert_eq!(last_bytes["bytes"], total);
        assert_eq!(last_bytes["bytesTotal"], total);
        assert_eq!(last_bytes["steps"], 3);
        assert_eq!(last_bytes["stepsTotal"], 3);
        assert_eq!(last_bytes["stepsCached"], 0);
        let subtasks = last_bytes["subtasks"].as_array().unwrap();
        assert_eq!(subtasks.len(), 3);
        for s in subtasks {
            assert_eq!(s["bytes"], s["bytesTotal"], "every layer complete");
        }
        let last = l.last().unwrap();
        assert_eq!(last["type"], "ProgressSteps");
        assert_eq!(last["task"], "importing");
        assert_eq!(last["steps"], last["stepsTotal"]);

        // Second copy: every layer is cached.
        let buf = Shared::default();
        let progress: Arc<dyn Progress> = Arc::new(JsonLines::new(buf.clone()));
        copy_image(
            &Observed::source(&src, progress.clone()),
            &Observed::sink(&dst, progress.clone()),
            &opts,
        )
        .unwrap();
        let l = lines(&buf);
        let last_bytes = l
            .iter()
            .rev()
            .find(|v| v["type"] == "ProgressBytes")
            .unwrap();
        assert_eq!(last_bytes["bytesCached"], total);
        assert_eq!(last_bytes["stepsCached"], 3);
        assert_eq!(last_bytes["bytes"], total);
    }

    #[test]
    fn a_failed_copy_never_reports_a_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let layers = image(&tmp.path().join("src"));
        let p = tmp
            .path()
            .join("src/blobs/sha256")
            .join(layers[1].digest().digest());
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let src = OciSource::open(&tmp.path().join("src"), Some("t")).unwrap();
        let dst = OciSink::create(&tmp.path().join("dst"), Some("x"), None).unwrap();
        let buf = Shared::default();
        let progress: Arc<dyn Progress> = Arc::new(JsonLines::new(buf.clone()));
        assert!(copy_image(
            &Observed::source(&src, progress.clone()),
            &Observed::sink(&dst, progress),
            &CopyOptions::default(),
        )
        .is_err());
        assert!(lines(&buf).iter().all(|v| v["type"] != "ProgressSteps"));
    }
}
