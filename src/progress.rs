//! Showing copy progress: bars on a terminal, plain lines otherwise, JSON Lines on a file
//! descriptor for machines.
//!
//! 1. With `--progress-fd N`, bootc's JSON Lines protocol goes to descriptor N (opened again
//!    through `/proc/self/fd/N`, so no unsafe descriptor juggling is needed).
//! 2. Unless `-q`: when stderr is a terminal, one indicatif bar per layer (bytes, rate, ETA)
//!    above an overall bar; otherwise one plain line per layer event, skopeo-style
//!    (`Copying blob sha256:… done`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use oci_spec::image::Descriptor;
use stowage_engine::copy::ImagePlan;
use stowage_engine::progress::{Fanout, JsonLines, Progress};

/// The progress observers for a copy, or `None` when nothing is to be shown.
pub fn for_copy(quiet: bool, progress_fd: Option<u32>) -> Result<Option<Arc<dyn Progress>>> {
    let mut all: Vec<Arc<dyn Progress>> = Vec::new();
    if let Some(fd) = progress_fd {
        let path = format!("/proc/self/fd/{fd}");
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| {
                format!("--progress-fd {fd}: the descriptor is not open for writing")
            })?;
        all.push(Arc::new(JsonLines::new(file)));
    }
    if !quiet {
        if std::io::stderr().is_terminal() {
            all.push(Arc::new(Bars::new()));
        } else {
            all.push(Arc::new(Lines::new(std::io::stderr())));
        }
    }
    Ok(match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(Arc::new(Fanout(all))),
    })
}

/// `sha256:0123456789ab` (12 hex digits, as skopeo prints blobs).
fn short(d: &Descriptor) -> String {
    let s = d.digest().to_string();
    match s.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..hex.len().min(12)]),
        None => s,
    }
}

/// Plain lines for logs and pipes.
pub struct Lines<W: Write + Send> {
    out: Mutex<W>,
    layers: Mutex<Vec<Descriptor>>,
}

impl<W: Write + Send> Lines<W> {
    /// Write lines to `out`.
    pub fn new(out: W) -> Self {
        Lines {
            out: Mutex::new(out),
            layers: Mutex::new(Vec::new()),
        }
    }
    fn line(&self, s: String) {
        let mut out = self.out.lock().unwrap();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }
    fn layer(&self, index: usize) -> Option<Descriptor> {
        self.layers.lock().unwrap().get(index).cloned()
    }
}

impl<W: Write + Send> Progress for Lines<W> {
    fn begin(&self, plan: &ImagePlan, destination: &str) {
        *self.layers.lock().unwrap() = plan.layers.iter().map(|l| l.descriptor.clone()).collect();
        let bytes: u64 = plan.layers.iter().map(|l| l.descriptor.size()).sum();
        self.line(format!(
            "Copying {} layer(s) ({}) from {} to {destination}",
            plan.layers.len(),
            indicatif::HumanBytes(bytes),
            plan.source_name
        ));
    }
    fn layer_cached(&self, _index: usize, descriptor: &Descriptor) {
        self.line(format!(
            "Copying blob {} skipped: already exists",
            short(descriptor)
        ));
    }
    fn layer_started(&self, _index: usize, descriptor: &Descriptor) {
        self.line(format!(
            "Copying blob {} ({})",
            short(descriptor),
            indicatif::HumanBytes(descriptor.size())
        ));
    }
    fn layer_bytes(&self, _index: usize, _total: u64) {}
    fn layer_finished(&self, index: usize) {
        if let Some(d) = self.layer(index) {
            self.line(format!("Copying blob {} done", short(&d)));
        }
    }
    fn committed(&self) {
        self.line("Writing manifest to image destination".into());
    }
}

/// indicatif bars on a terminal.
pub struct Bars {
    multi: MultiProgress,
    overall: Mutex<Option<ProgressBar>>,
    bars: Mutex<HashMap<usize, (ProgressBar, u64)>>,
}

impl Bars {
    /// Bars drawn on stderr.
    pub fn new() -> Self {
        Bars {
            multi: MultiProgress::new(),
            overall: Mutex::new(None),
            bars: Mutex::new(HashMap::new()),
        }
    }
    fn overall_inc(&self, n: u64) {
        if let Some(o) = &*self.overall.lock().unwrap() {
            o.inc(n);
        }
    }
}

impl Progress for Bars {
    fn begin(&self, plan: &ImagePlan, destination: &str) {
        let total: u64 = plan.layers.iter().map(|l| l.descriptor.size()).sum();
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "[{bar:20}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {wide_msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{} layer(s) to {destination}", plan.layers.len()));
        *self.overall.lock().unwrap() = Some(bar);
    }
    fn layer_cached(&self, _index: usize, descriptor: &Descriptor) {
        let _ = self.multi.println(format!(
            "Copying blob {} skipped: already exists",
            short(descriptor)
        ));
        self.overall_inc(descriptor.size());
    }
    fn layer_started(&self, index: usize, descriptor: &Descriptor) {
        let bar = ProgressBar::new(descriptor.size());
        let bar = match &*self.overall.lock().unwrap() {
            Some(o) => self.multi.insert_before(o, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(short(descriptor));
        self.bars.lock().unwrap().insert(index, (bar, 0));
    }
    fn layer_bytes(&self, index: usize, total: u64) {
        let delta = {
            let mut bars = self.bars.lock().unwrap();
            let Some((bar, last)) = bars.get_mut(&index) else {
                return;
            };
            bar.set_position(total);
            let d = total.saturating_sub(*last);
            *last = total;
            d
        };
        self.overall_inc(delta);
    }
    fn layer_finished(&self, index: usize) {
        if let Some((bar, _)) = self.bars.lock().unwrap().get(&index) {
            bar.finish();
        }
    }
    fn committed(&self) {
        if let Some(o) = &*self.overall.lock().unwrap() {
            o.finish();
        }
        let _ = self.multi.println("Writing manifest to image destination");
    }
}

/// `; files: N reflinked, …` when the copy's layers came with their files' origins on disk
/// (an ostree repository or containers-storage source), else nothing.
pub(crate) fn files_suffix(r: &stowage_engine::CopyReport) -> String {
    r.files
        .map(|f| format!("; {}", f.summary()))
        .unwrap_or_default()
}
