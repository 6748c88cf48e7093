//! Image operations on a containers-storage store, returning what podman 4.3 prints.
//!
//! 1. [`Catalog::load`] reads images, layers, containers and each image's config once.
//! 2. Parent/child relations follow podman's (libimage) layer tree: an image's parent is an
//!    image whose top layer is the child's top layer or its parent layer, whose diffIDs are a
//!    prefix of the child's, and whose history is the child's minus one entry. An untagged
//!    image with no children is *dangling*; with children it is *intermediate* (hidden from
//!    listings unless `all`).
//! 3. [`list_images`] gives `podman images --format json` (one entry per tagged name, newest
//!    first; `RepoTags` is always null there, as podman 4.3 prints it), [`inspect_image`]
//!    gives `podman image inspect` (keys in podman's order), and the rest mirror
//!    `podman image exists / tag / untag / rmi / image prune`.
//!
//! Sizes are containers/storage's `ImageSize`: the diff sizes of every layer reachable from
//! the top layer (and mapped top layers) plus the sizes of the image's big-data items.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::{Map, Value};

use super::gotime::GoTime;
use super::{split_repo_tag_digest, ContainerRecord, ImageRecord, LayerRecord, Store, DRIVER};
use crate::error::{Error, Result};
use crate::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};

/// One entry of `podman images --format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSummary {
    /// Image ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// ID of the parent image, or empty.
    #[serde(rename = "ParentId")]
    pub parent_id: String,
    /// Always `null` in podman 4.3's JSON output.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Option<Vec<String>>,
    /// `repository@digest` for every name and digest, sorted.
    #[serde(rename = "RepoDigests")]
    pub repo_digests: Vec<String>,
    /// Bytes: layer diff sizes plus big-data sizes.
    #[serde(rename = "Size")]
    pub size: i64,
    /// Always 0 (as podman).
    #[serde(rename = "SharedSize")]
    pub shared_size: i64,
    /// Same as `Size` (as podman).
    #[serde(rename = "VirtualSize")]
    pub virtual_size: i64,
    /// The config's labels (`null` if none).
    #[serde(rename = "Labels")]
    pub labels: Option<Map<String, Value>>,
    /// Number of containers using the image.
    #[serde(rename = "Containers")]
    pub containers: usize,
    /// An image of one of storage.conf's additional (read-only) image stores, as podman marks
    /// it ([`StorageConfig::list_images`](super::StorageConfig::list_images) sets it; opening a
    /// store read-only does not).
    #[serde(rename = "ReadOnly", skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Untagged and without children.
    #[serde(rename = "Dangling", skip_serializing_if = "std::ops::Not::not")]
    pub dangling: bool,
    /// The image's names.
    #[serde(rename = "Names", skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The manifest digest.
    #[serde(rename = "Digest", skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Names history, newest first.
    #[serde(rename = "History", skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<String>,
    /// Creation time, Unix seconds.
    #[serde(rename = "Created")]
    pub created: i64,
    /// Creation time, RFC 3339 in UTC, whole seconds.
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
}

/// `GraphDriver` of an inspect result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphDriver {
    /// `overlay`.
    #[serde(rename = "Name")]
    pub name: String,
    /// `LowerDir` (colon-separated, nearest first; only with more than one layer),
    /// `UpperDir`, `WorkDir`.
    #[serde(rename = "Data")]
    pub data: BTreeMap<String, String>,
}

/// `RootFS` of an inspect result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The diffIDs.
    #[serde(rename = "Layers")]
    pub layers: Option<Vec<String>>,
}

/// One element of `podman image inspect` output, keys in podman's order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInspect {
    /// Image ID.
    #[serde(rename = "Id")]
    pub id: String,
    /// Manifest digest.
    #[serde(rename = "Digest")]
    pub digest: String,
    /// Tagged names.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    /// `repository@digest` for every name and digest, sorted.
    #[serde(rename = "RepoDigests")]
    pub repo_digests: Vec<String>,
    /// Parent image ID or empty.
    #[serde(rename = "Parent")]
    pub parent: String,
    /// Docker config `comment`, or the first history entry's comment for OCI images.
    #[serde(rename = "Comment")]
    pub comment: String,
    /// The config's `created`.
    #[serde(rename = "Created")]
    pub created: Option<String>,
    /// The config's `config` as an OCI image config.
    #[serde(rename = "Config")]
    pub config: Map<String, Value>,
    /// The config's `docker_version`.
    #[serde(rename = "Version")]
    pub version: String,
    /// The config's `author`.
    #[serde(rename = "Author")]
    pub author: String,
    /// The config's `architecture`.
    #[serde(rename = "Architecture")]
    pub architecture: String,
    /// The config's `os`.
    #[serde(rename = "Os")]
    pub os: String,
    /// Bytes: layer diff sizes plus big-data sizes.
    #[serde(rename = "Size")]
    pub size: i64,
    /// Same as `Size`.
    #[serde(rename = "VirtualSize")]
    pub virtual_size: i64,
    /// Where the layers are.
    #[serde(rename = "GraphDriver")]
    pub graph_driver: GraphDriver,
    /// The diffIDs.
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    /// The config's labels.
    #[serde(rename = "Labels")]
    pub labels: Option<Map<String, Value>>,
    /// The manifest's annotations (OCI), `{}` if none.
    #[serde(rename = "Annotations")]
    pub annotations: Map<String, Value>,
    /// The manifest's media type.
    #[serde(rename = "ManifestType")]
    pub manifest_type: String,
    /// The config's user.
    #[serde(rename = "User")]
    pub user: String,
    /// The config's history.
    #[serde(rename = "History")]
    pub history: Option<Vec<Value>>,
    /// Names history, newest first.
    #[serde(rename = "NamesHistory")]
    pub names_history: Option<Vec<String>>,
    /// Docker health check, if any.
    #[serde(rename = "Healthcheck", skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
}

/// What [`remove_image`] and [`prune`] did, as `podman rmi` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemoveReport {
    /// Names taken away (`Untagged: …`).
    pub untagged: Vec<String>,
    /// Images deleted (`Deleted: …`).
    pub deleted: Vec<String>,
}

/// One image with what the operations need from its config.
#[derive(Debug, Clone)]
struct ImageInfo {
    rec: ImageRecord,
    /// The raw config JSON, if it could be read.
    config: Option<Value>,
}

impl ImageInfo {
    fn diff_ids(&self) -> Vec<&str> {
        self.config
            .as_ref()
            .and_then(|c| c.pointer("/rootfs/diff_ids"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn history(&self) -> &[Value] {
        self.config
            .as_ref()
            .and_then(|c| c.get("history"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn labels(&self) -> Option<Map<String, Value>> {
        self.config
            .as_ref()
            .and_then(|c| c.pointer("/config/Labels"))
            .and_then(Value::as_object)
            .cloned()
    }
}

/// Everything in a store, read once.
struct Catalog {
    images: Vec<ImageInfo>,
    layers: Vec<LayerRecord>,
    containers: Vec<ContainerRecord>,
}

impl Catalog {
    fn load(store: &Store) -> Result<Catalog> {
        let layers = store.layers()?;
        let images = store
            .images()?
            .into_iter()
            .map(|rec| {
                let config = store
                    .image_config(&rec)
                    .ok()
                    .and_then(|c| serde_json::from_slice(&c.bytes).ok());
                ImageInfo { rec, config }
            })
            .collect();
        let containers = store.containers()?;
        Ok(Catalog {
            images,
            layers,
            containers,
        })
    }

    fn layer(&self, id: &str) -> Option<&LayerRecord> {
        self.layers.iter().find(|l| l.id == id)
    }

    /// Indices of images whose top layer is `layer`.
    fn images_at(&self, layer: &str) -> impl Iterator<Item = usize> + '_ {
        let layer = layer.to_string();
        self.images
            .iter()
            .enumerate()
            .filter(move |(_, i)| i.rec.layer == layer)
            .map(|(n, _)| n)
    }

    /// libimage `parent`.
    fn parent(&self, child: usize) -> Option<usize> {
        let c = &self.images[child];
        let top = &c.rec.layer;
        let mut candidates: Vec<usize> = self.images_at(top).collect();
        if !top.is_empty() {
            let node = self.layer(top)?;
            if let Some(p) = node.parent() {
                candidates.extend(self.images_at(p));
            }
        }
        candidates
            .into_iter()
            .find(|&p| p != child && are_parent_and_child(&self.images[p], c))
    }

    /// Whether libimage finds any child of `parent`.
    fn has_children(&self, parent: usize) -> bool {
        let p = &self.images[parent];
        let top = &p.rec.layer;
        let mut candidates: Vec<usize> = Vec::new();
        if !top.is_empty() {
            for l in self.layers.iter().filter(|l| &l.parent == top) {
                candidates.extend(self.images_at(&l.id));
            }
        }
        candidates.extend(self.images_at(top));
        candidates
            .into_iter()
            .any(|c| c != parent && are_parent_and_child(p, &self.images[c]))
    }

    fn is_dangling(&self, i: usize) -> bool {
        self.images[i].rec.names.is_empty() && !self.has_children(i)
    }

    fn size(&self, i: usize) -> i64 {
        let rec = &self.images[i].rec;
        let mut queue: Vec<String> = std::iter::once(rec.layer.clone())
            .chain(rec.mapped_layers.iter().cloned())
            .filter(|l| !l.is_empty())
            .collect();
        let mut seen = HashSet::new();
        let mut size = 0i64;
        while let Some(id) = queue.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(l) = self.layer(&id) {
                size += l.diff_size.max(0);
                if let Some(p) = l.parent() {
                    queue.push(p.to_string());
                }
            }
        }
        size + rec.big_data_size()
    }

    fn container_count(&self, i: usize) -> usize {
        let id = &self.images[i].rec.id;
        self.containers.iter().filter(|c| &c.image == id).count()
    }
}

/// libimage `areParentAndChild`.
fn are_parent_and_child(parent: &ImageInfo, child: &ImageInfo) -> bool {
    if parent.config.is_none() || child.config.is_none() {
        return false;
    }
    let (pd, cd) = (parent.diff_ids(), child.diff_ids());
    if pd.len() > cd.len() || pd.iter().zip(&cd).any(|(a, b)| a != b) {
        return false;
    }
    let (ph, ch) = (parent.history(), child.history());
    ph.len() + 1 == ch.len() && ph.iter().zip(ch).all(|(a, b)| history_entries_match(a, b))
}

/// libimage `historiesMatch` for one entry: created (as instants), created_by, author,
/// comment, empty_layer.
fn history_entries_match(a: &Value, b: &Value) -> bool {
    let created = |v: &Value| {
        v.get("created")
            .and_then(Value::as_str)
            .and_then(GoTime::parse)
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let empty = |v: &Value| {
        v.get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    created(a).map(|t| t.0) == created(b).map(|t| t.0)
        && ["created_by", "author", "comment"]
            .iter()
            .all(|k| text(a, k) == text(b, k))
        && empty(a) == empty(b)
}

/// `repository@digest` for every name and digest of `rec`, sorted and deduplicated.
fn repo_digests(rec: &ImageRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut digests = rec.digests();
    if !rec.digest.is_empty() && !digests.contains(&rec.digest) {
        digests.push(rec.digest.clone());
    }
    for name in &rec.names {
        let repo = split_repo_tag_digest(name).0;
        for d in &digests {
            let s = format!("{repo}@{d}");
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out.sort();
    out
}

/// Names with a tag.
fn repo_tags(rec: &ImageRecord) -> Vec<String> {
    rec.names
        .iter()
        .filter(|n| split_repo_tag_digest(n).1.is_some())
        .cloned()
        .collect()
}

/// `podman images --format json` (with `--all` when `all`), newest first.
pub fn list_images(store: &Store, all: bool) -> Result<Vec<ImageSummary>> {
    let opts = ListOptions {
        all,
        ..ListOptions::default()
    };
    Ok(list_rows(store, &opts)?
        .into_iter()
        .map(|r| r.summary)
        .collect())
}

/// One row of `podman images`: an image under one of its tagged names (or `<none>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    /// The image.
    pub summary: ImageSummary,
    /// The name's repository, or `<none>`.
    pub repository: String,
    /// The name's tag, or `<none>`.
    pub tag: String,
}

/// What `podman images --sort` orders by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortKey {
    /// Newest first (the default).
    #[default]
    Created,
    /// Image ID, ascending.
    Id,
    /// Repository, ascending.
    Repository,
    /// Size, smallest first.
    Size,
    /// Tag, ascending.
    Tag,
}

/// Options of [`list_rows`]: `podman images [-a] [--filter …] [--sort …]`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Intermediate images too.
    pub all: bool,
    /// `KEY=VALUE` filters: `reference=`, `label=KEY[=VALUE]`, `dangling=BOOL`,
    /// `intermediate=BOOL`, `readonly=BOOL`, `before=IMAGE`, `since=IMAGE`, `until=TIME`,
    /// `id=`, `digest=`. As in podman 4.3, filters with the
    /// same key are alternatives (any may match) and different keys must all match.
    pub filters: Vec<String>,
    /// The order of the rows (ties keep the store's order).
    pub sort: SortKey,
}

/// One parsed filter.
enum Filter {
    Reference(String),
    Label(String, Option<String>),
    Dangling(bool),
    Before(i64),
    Since(i64),
    Id(String),
    Digest(String),
    /// Untagged with children (the images `-a` adds).
    Intermediate(bool),
    /// From a read-only additional image store.
    ReadOnly(bool),
    /// Created before this time (seconds since the epoch).
    Until(i64),
}

/// podman's (strconv.ParseBool's) boolean spellings.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "true" | "1" | "t" | "T" | "TRUE" | "True" => Some(true),
        "false" | "0" | "f" | "F" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration`: an optional sign and a sequence of decimal numbers, each with
/// a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`): `10h`, `1h30m`, `1.5h`, `-2m`; `0` alone.
/// In seconds.
fn parse_go_duration(text: &str) -> Option<f64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Some(sign * total)
}

/// The time an `until=` value names, as podman's `timetype.GetTimestamp` reads it: a Go
/// duration before `now` (`10h`), an RFC 3339 time, `YYYY-MM-DDTHH:MM:SS[.frac]` or
/// `YYYY-MM-DD` (UTC), or seconds since the epoch (`1704164645[.5]`). Whole seconds since the
/// epoch (the fraction is dropped, rounding up: `created < until` stays exact for the whole
/// seconds image times are compared in).
fn parse_until(value: &str, now: i64) -> Option<i64> {
    if let Some(d) = parse_go_duration(value) {
        return Some(now - d.floor() as i64);
    }
    let ceil = |secs: i64, nanos: u32| if nanos > 0 { secs + 1 } else { secs };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(ceil(t.timestamp(), t.timestamp_subsec_nanos()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, f) {
            let t = t.and_utc();
            return Some(ceil(t.timestamp(), t.timestamp_subsec_nanos()));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp());
    }
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(if frac.trim_end_matches('0').is_empty() {
        secs
    } else {
        secs + 1
    })
}

impl Filter {
    /// `text` parsed; `before=`/`since=` images are looked up in `stores` in order (the
    /// first that has it counts), with the first store's error when none has it.
    fn parse(stores: &[(&Store, Catalog)], text: &str) -> Result<(String, Filter)> {
        let invalid = |reason: String| Error::InvalidArgument {
            what: format!("image filter {text:?}"),
            reason,
        };
        let (key, value) = text.split_once('=').ok_or_else(|| {
            invalid(
                "expected KEY=VALUE (reference=, label=, dangling=, intermediate=, readonly=, before=, since=, until=, id=, digest=)"
                    .into(),
            )
        })?;
        let created_of = |v: &str| -> Result<i64> {
            let mut first_error = None;
            for (store, cat) in stores {
                match store.image(v) {
                    Ok(img) => {
                        let i = cat.images.iter().position(|x| x.rec.id == img.id);
                        return Ok(i
                            .and_then(|i| cat.images[i].rec.created)
                            .map(|t| t.unix())
                            .unwrap_or(i64::MIN));
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            let e = first_error.map(|e| e.to_string()).unwrap_or_default();
            Err(Error::NotFound {
                what: format!("local image for filter {key:?}={v:?}"),
                hint: format!("{e}; name an image of this store (`image cmd list` shows them)"),
            })
        };
        let f = match key {
            "reference" => Filter::Reference(value.to_string()),
            "label" => match value.split_once('=') {
                Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                None => Filter::Label(value.to_string(), None),
            },
            "dangling" | "intermediate" | "readonly" => {
                let b = parse_go_bool(value).ok_or_else(|| {
                    invalid(format!(
                        "non-boolean value {value:?} for {key} (use true or false)"
                    ))
                })?;
                match key {
                    "dangling" => Filter::Dangling(b),
                    "intermediate" => Filter::Intermediate(b),
                    _ => Filter::ReadOnly(b),
                }
            }
            "until" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                Filter::Until(parse_until(value, now).ok_or_else(|| {
                    invalid(format!(
                        "{value:?} is not a time: use a duration before now (10h, 90m), an RFC 3339 time (2024-01-02T03:04:05Z), a date (2024-01-02) or seconds since the epoch"
                    ))
                })?)
            }
            "before" => Filter::Before(created_of(value)?),
            "since" => Filter::Since(created_of(value)?),
            // The whole hex ID, exactly (podman 4.3 matches neither a prefix nor `sha256:…`).
            "id" => Filter::Id(value.to_string()),
            "digest" => Filter::Digest(value.to_string()),
            _ => {
                return Err(invalid(format!(
                    "unsupported image filter {key:?}; use reference=, label=, dangling=, intermediate=, readonly=, before=, since=, until=, id= or digest="
                )))
            }
        };
        Ok((key.to_string(), f))
    }

    fn matches(&self, s: &ImageSummary) -> bool {
        match self {
            Filter::Reference(pattern) => s.names.iter().any(|n| {
                reference_candidates(n)
                    .iter()
                    .any(|c| glob_match(pattern, c))
            }),
            Filter::Label(k, v) => match (s.labels.as_ref().and_then(|l| l.get(k)), v) {
                (Some(_), None) => true,
                (Some(Value::String(have)), Some(want)) => have == want,
                _ => false,
            },
            Filter::Dangling(d) => s.dangling == *d,
            Filter::Before(t) => s.created < *t,
            Filter::Since(t) => s.created > *t,
            Filter::Id(id) => s.id == *id,
            Filter::Intermediate(b) => (s.names.is_empty() && !s.dangling) == *b,
            Filter::ReadOnly(b) => s.read_only == *b,
            Filter::Until(t) => s.created < *t,
            Filter::Digest(d) => {
                s.digest == *d || s.repo_digests.iter().any(|r| r.ends_with(&format!("@{d}")))
            }
        }
    }
}

/// The strings a `reference=` pattern is matched against for one name, as podman 4.3: the
/// name and its repository, each also without the registry, and the last path component
/// with and without the tag (`quay.io/a/b:1` → `quay.io/a/b:1`, `quay.io/a/b`, `a/b:1`,
/// `a/b`, `b:1`, `b`).
fn reference_candidates(name: &str) -> Vec<String> {
    let (repo, tag, _) = split_repo_tag_digest(name);
    let full = match tag {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let mut out = vec![full.clone(), repo.to_string()];
    if let Some((first, rest)) = full.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            out.push(rest.to_string());
            out.push(split_repo_tag_digest(rest).0.to_string());
        }
    }
    let last = full.rsplit('/').next().unwrap_or(&full).to_string();
    out.push(split_repo_tag_digest(&last).0.to_string());
    out.push(last);
    out
}

/// Go's `path.Match`: `*` is any run of non-`/` characters, `?` one, `[…]` a class
/// (`[^…]` negated, `a-z` ranges), `\\` escapes.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(c) = n.first() else { return false };
                let mut i = 1;
                let negate = p.get(1) == Some(&'^');
                if negate {
                    i += 1;
                }
                let mut hit = false;
                while i < p.len() && p[i] != ']' {
                    let lo = p[i];
                    if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                        hit |= lo <= *c && *c <= p[i + 2];
                        i += 3;
                    } else {
                        hit |= lo == *c;
                        i += 1;
                    }
                }
                i < p.len() && hit != negate && go(&p[i + 1..], &n[1..])
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// `podman images` rows: each listed image once per tagged name (untagged ones once, as
/// `<none>`), filtered and sorted as `opts` says.
pub fn list_rows(store: &Store, opts: &ListOptions) -> Result<Vec<ImageRow>> {
    list_rows_in(&[store], opts)
}

/// [`list_rows`] over several stores, as `podman images` lists a store with additional image
/// stores: the first store's images, then each further store's marked `ReadOnly` (an image in
/// two stores is listed from each); the filters apply to all of them and the rows of all are
/// sorted together.
pub fn list_rows_in(stores: &[&Store], opts: &ListOptions) -> Result<Vec<ImageRow>> {
    let cats: Vec<(&Store, Catalog)> = stores
        .iter()
        .map(|s| Ok((*s, Catalog::load(s)?)))
        .collect::<Result<_>>()?;
    let mut filters: Vec<(String, Filter)> = Vec::new();
    for f in &opts.filters {
        let (key, filter) = Filter::parse(&cats, f)?;
        // podman hides intermediate images without -a by an `intermediate=false` of its own,
        // and refuses a user's `intermediate=true` beside it.
        if !opts.all && matches!(filter, Filter::Intermediate(true)) {
            return Err(Error::InvalidArgument {
                what: format!("image filter {f:?}"),
                reason: "intermediate images are listed only with -a/--all (podman: specifying \"intermediate\" filter more than once with different values is not supported)".into(),
            });
        }
        filters.push((key, filter));
    }
    let mut rows = Vec::new();
    for (n, (_, cat)) in cats.iter().enumerate() {
        store_rows(cat, n > 0, &filters, opts, &mut rows);
    }
    match opts.sort {
        SortKey::Created => rows.sort_by_key(|r| std::cmp::Reverse(r.summary.created)),
        SortKey::Id => rows.sort_by(|a, b| a.summary.id.cmp(&b.summary.id)),
        SortKey::Repository => rows.sort_by(|a, b| a.repository.cmp(&b.repository)),
        SortKey::Size => rows.sort_by_key(|r| r.summary.size),
        SortKey::Tag => rows.sort_by(|a, b| a.tag.cmp(&b.tag)),
    }
    Ok(rows)
}

/// The rows of one store's catalog that pass `filters`, appended to `rows` in store order.
fn store_rows(
    cat: &Catalog,
    read_only: bool,
    filters: &[(String, Filter)],
    opts: &ListOptions,
    rows: &mut Vec<ImageRow>,
) {
    for (i, info) in cat.images.iter().enumerate() {
        let rec = &info.rec;
        let untagged = rec.names.is_empty();
        let children = untagged && cat.has_children(i);
        if untagged && children && !opts.all {
            continue; // intermediate image
        }
        let created = rec.created.map(|t| t.unix()).unwrap_or(-62_135_596_800);
        let size = cat.size(i);
        let summary = ImageSummary {
            id: rec.id.clone(),
            parent_id: cat
                .parent(i)
                .map(|p| cat.images[p].rec.id.clone())
                .unwrap_or_default(),
            repo_tags: None,
            repo_digests: repo_digests(rec),
            size,
            shared_size: 0,
            virtual_size: size,
            labels: info.labels(),
            containers: cat.container_count(i),
            read_only,
            dangling: untagged && !children,
            names: rec.names.clone(),
            digest: rec.digest.clone(),
            history: rec.names_history.clone(),
            created,
            created_at: chrono::DateTime::from_timestamp(created, 0)
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default(),
        };
        let keys: BTreeMap<&str, ()> = filters.iter().map(|(k, _)| (k.as_str(), ())).collect();
        let pass = keys.keys().all(|k| {
            filters
                .iter()
                .filter(|(fk, _)| fk == k)
                .any(|(_, f)| f.matches(&summary))
        });
        if !pass {
            continue;
        }
        let tags = repo_tags(rec);
        if tags.is_empty() {
            rows.push(ImageRow {
                summary,
                repository: "<none>".into(),
                tag: "<none>".into(),
            });
            continue;
        }
        for name in tags {
            let (repo, tag, _) = split_repo_tag_digest(&name);
            rows.push(ImageRow {
                summary: summary.clone(),
                repository: repo.to_string(),
                tag: tag.unwrap_or("<none>").to_string(),
            });
        }
    }
}

/// The keys of an OCI image config's `config`, in Go's struct order.
const OCI_CONFIG_KEYS: [&str; 10] = [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
];

/// Go's `omitempty`: false, 0, "", null, empty array or object.
fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The config's `config` as podman shows it: decoded into the OCI struct (unknown keys
/// dropped, set-like maps with `{}` values) and encoded again.
fn oci_config_section(config: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(section) = config.get("config").and_then(Value::as_object) else {
        return out;
    };
    for key in OCI_CONFIG_KEYS {
        let Some(v) = section.get(key) else { continue };
        if is_empty_value(v) {
            continue;
        }
        let v = match (key, v) {
            ("ExposedPorts" | "Volumes", Value::Object(m)) => Value::Object(
                m.keys()
                    .map(|k| (k.clone(), Value::Object(Map::new())))
                    .collect(),
            ),
            _ => v.clone(),
        };
        out.insert(key.to_string(), v);
    }
    out
}

/// A config history entry as podman shows it (OCI `History`, omitempty fields).
fn oci_history_entry(v: &Value) -> Value {
    let mut out = Map::new();
    if let Some(t) = v
        .get("created")
        .and_then(Value::as_str)
        .and_then(GoTime::parse)
    {
        out.insert("created".into(), Value::String(t.to_string()));
    }
    for key in ["created_by", "author", "comment", "empty_layer"] {
        if let Some(x) = v.get(key).filter(|x| !is_empty_value(x)) {
            out.insert(key.into(), x.clone());
        }
    }
    Value::Object(out)
}

/// `podman image inspect` of the image `query` resolves to.
pub fn inspect_image(store: &Store, query: &str) -> Result<ImageInspect> {
    let cat = Catalog::load(store)?;
    let target = store.image(query)?;
    let i = cat
        .images
        .iter()
        .position(|x| x.rec.id == target.id)
        .ok_or_else(|| Error::NotFound {
            what: format!("image {query}"),
            hint: "it was removed meanwhile".into(),
        })?;
    let info = &cat.images[i];
    let rec = &info.rec;
    let raw_config = store.image_config(rec)?;
    let config: Value = serde_json::from_slice(&raw_config.bytes).map_err(|e| Error::Json {
        what: format!("config of image {}", rec.id),
        source: e,
    })?;
    let manifest = store.image_manifest(rec)?;
    let manifest_json: Value = serde_json::from_slice(&manifest.bytes).unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();

    let history: Option<Vec<Value>> = config
        .get("history")
        .and_then(Value::as_array)
        .map(|h| h.iter().map(oci_history_entry).collect());
    let mut annotations = Map::new();
    let mut comment = String::new();
    let mut healthcheck = None;
    match manifest.media_type.as_str() {
        OCI_MANIFEST => {
            if let Some(a) = manifest_json.get("annotations").and_then(Value::as_object) {
                annotations = a.clone();
            }
            if let Some(first) = config.get("history").and_then(|h| h.get(0)) {
                comment = text(first, "comment");
            }
        }
        DOCKER_MANIFEST => {
            comment = text(&config, "comment");
            healthcheck = config
                .pointer("/container_config/Healthcheck")
                .filter(|v| !v.is_null())
                .or_else(|| {
                    config
                        .pointer("/config/Healthcheck")
                        .filter(|v| !v.is_null())
                })
                .cloned();
        }
        _ => {}
    }

    let mut data = BTreeMap::new();
    if let Some(top) = rec.top_layer() {
        let lowers = store.layer_lowers(top)?;
        if !lowers.is_empty() {
            let dirs: Vec<String> = lowers
                .iter()
                .map(|l| store.layer_path(l).join("diff").display().to_string())
                .collect();
            data.insert("LowerDir".to_string(), dirs.join(":"));
        }
        let path = store.layer_path(top);
        data.insert("UpperDir".into(), path.join("diff").display().to_string());
        data.insert("WorkDir".into(), path.join("work").display().to_string());
    }
    let size = cat.size(i);
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        });
    Ok(ImageInspect {
        id: rec.id.clone(),
        digest: rec.digest.clone(),
        repo_tags: repo_tags(rec),
        repo_digests: repo_digests(rec),
        parent: cat
            .parent(i)
            .map(|p| cat.images[p].rec.id.clone())
            .unwrap_or_default(),
        comment,
        created: config
            .get("created")
            .and_then(Value::as_str)
            .and_then(GoTime::parse)
            .map(|t| t.to_string()),
        config: oci_config_section(&config),
        version: text(&config, "docker_version"),
        author: text(&config, "author"),
        architecture: text(&config, "architecture"),
        os: text(&config, "os"),
        size,
        virtual_size: size,
        graph_driver: GraphDriver {
            name: DRIVER.into(),
            data,
        },
        root_fs: RootFs {
            kind: config
                .pointer("/rootfs/type")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            layers: diff_ids,
        },
        labels: info.labels(),
        annotations,
        manifest_type: manifest.media_type.clone(),
        user: config
            .pointer("/config/User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        history,
        names_history: (!rec.names_history.is_empty()).then(|| rec.names_history.clone()),
        healthcheck,
    })
}

/// `podman image exists`: whether `query` names an image.
/// A name that is neither an image ID (prefix) nor a valid image name is an error, not
/// "absent", as in podman.
pub fn image_exists(store: &Store, query: &str) -> Result<bool> {
    let hex = !query.is_empty()
        && query
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !hex && crate::reference::Reference::parse(query).is_err() {
        local_name(query)?;
    }
    match store.image(query) {
        Ok(_) => Ok(true),
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// podman's reading of a name given to `tag`, `untag` or as a local image's new name: a short
/// name (`foo`, `foo:1`) lives under `localhost/`, and a missing tag is `latest`.
pub fn local_name(name: &str) -> Result<crate::reference::Reference> {
    use crate::reference::Reference;
    let full = if Reference::is_short_name(name) {
        format!("localhost/{name}")
    } else {
        name.to_string()
    };
    Reference::parse_with_default_tag(&full).map_err(|e| match e {
        Error::InvalidReference { reason, .. } => Error::InvalidReference {
            input: name.to_string(),
            reason,
        },
        other => other,
    })
}

/// `podman tag`: give the image `query` the fully-qualified `names`.
pub fn tag(store: &Store, query: &str, names: &[String]) -> Result<ImageRecord> {
    for n in names {
        if n.starts_with("sha256:") || split_repo_tag_digest(n).2.is_some() {
            return Err(Error::InvalidReference {
                input: n.clone(),
                reason: "tag by digest not supported".into(),
            });
        }
    }
    store.add_names(query, names)
}

/// `podman untag`: take `names` (all names if empty) from the image `query`. Returns the
/// names removed.
pub fn untag(store: &Store, query: &str, names: &[String]) -> Result<Vec<String>> {
    let img = store.image(query)?;
    let remove: Vec<String> = if names.is_empty() {
        img.names.clone()
    } else {
        for n in names {
            if !img.names.contains(n) {
                return Err(Error::NotFound {
                    what: format!("{n}: tag"),
                    hint: format!("image {} has names {:?}", img.id, img.names),
                });
            }
        }
        names.to_vec()
    };
    store.remove_names(&img.id, &remove)?;
    Ok(remove)
}

/// `podman rmi`: remove the image `query` names. By name, an image with several names only
/// loses that name; by ID or digest such an image is only removed with `force`. A parent
/// image left dangling is removed too. Refused while a container uses the image.
pub fn remove_image(store: &Store, query: &str, force: bool) -> Result<RemoveReport> {
    let img = store.image(query)?;
    let mut report = RemoveReport::default();
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    let by_id = img.id.starts_with(hex);
    let by_digest = query.starts_with("sha256:") && !by_id;
    if img.names.len() > 1 {
        if !force && (by_id || by_digest) {
            return Err(Error::Conflict {
                what: format!("image {}", img.id),
                reason: format!(
                    "unable to delete image by {} with more than one tag ({}): please force removal",
                    if by_id { "ID" } else { "digest" },
                    img.names.join(", ")
                ),
            });
        }
        if !by_id && !by_digest {
            let name = img
                .names
                .iter()
                .find(|n| super::name_matches(n, query))
                .or_else(|| {
                    img.names.iter().find(|n| {
                        query.contains('@')
                            && split_repo_tag_digest(n).0 == split_repo_tag_digest(query).0
                    })
                })
                .cloned()
                .unwrap_or_else(|| query.to_string());
            store.remove_names(&img.id, std::slice::from_ref(&name))?;
            report.untagged.push(name);
            return Ok(report);
        }
    }
    remove_recursive(store, &img.id, &mut report)?;
    Ok(report)
}

fn remove_recursive(store: &Store, id: &str, report: &mut RemoveReport) -> Result<()> {
    let parent = {
        let cat = Catalog::load(store)?;
        cat.images
            .iter()
            .position(|x| x.rec.id == id)
            .and_then(|i| cat.parent(i))
            .map(|p| cat.images[p].rec.id.clone())
    };
    let deleted = store.delete_image(id)?;
    report.untagged.extend(deleted.names);
    report.deleted.push(deleted.id);
    if let Some(p) = parent {
        let cat = Catalog::load(store)?;
        if let Some(i) = cat.images.iter().position(|x| x.rec.id == p) {
            if cat.is_dangling(i) && cat.container_count(i) == 0 {
                remove_recursive(store, &p, report)?;
            }
        }
    }
    Ok(())
}

/// Which images [`prune`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneScope {
    /// Dangling images (no name, no child): `podman image prune`.
    Dangling,
    /// Every image no container uses, named or not: `podman image prune -a`.
    Unused,
}

/// `podman image prune [-a]`: remove the images of `scope` that no container uses,
/// repeating until none is left (removing a child can leave its parent dangling). Returns the
/// removed image IDs.
pub fn prune(store: &Store, scope: PruneScope) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    loop {
        let cat = Catalog::load(store)?;
        let victims: Vec<String> = (0..cat.images.len())
            .filter(|&i| {
                cat.container_count(i) == 0 && (scope == PruneScope::Unused || cat.is_dangling(i))
            })
            .map(|i| cat.images[i].rec.id.clone())
            .collect();
        if victims.is_empty() {
            return Ok(removed);
        }
        for id in victims {
            store.delete_image(&id)?;
            removed.push(id);
        }
    }
}

#[cfg(test)]
mod filter_tests {
    use super::{parse_go_duration, parse_until};

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("10h"), Some(36000.0));
        assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_go_duration("1.5h"), Some(5400.0));
        assert_eq!(parse_go_duration("-2m"), Some(-120.0));
        assert_eq!(parse_go_duration("250ms"), Some(0.25));
        assert_eq!(parse_go_duration("0"), Some(0.0));
        for bad in ["", "10", "h", "2024-01-02", "1x", "1h-2m"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn until_times_as_podman_reads_them() {
        let now = 1_800_000_000;
        assert_eq!(parse_until("10h", now), Some(now - 36000));
        assert_eq!(parse_until("2024-01-02T03:04:05Z", now), Some(1704164645));
        assert_eq!(
            parse_until("2024-01-02T04:04:05+01:00", now),
            Some(1704164645)
        );
        assert_eq!(parse_until("2024-01-02T03:04:05", now), Some(1704164645));
        assert_eq!(parse_until("2024-01-02T03:04:04.5Z", now), Some(1704164645));
        assert_eq!(parse_until("2024-01-02", now), Some(1704153600));
        assert_eq!(parse_until("1704164645", now), Some(1704164645));
        assert_eq!(parse_until("1704164644.25", now), Some(1704164645));
        assert_eq!(parse_until("yesterday", now), None);
    }
}
