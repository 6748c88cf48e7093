//! Building images from a Containerfile without a container runtime (`image cmd build`).
//!
//! 1. The Containerfile is parsed ([`containerfile`]) and split into stages; every stage up
//!    to the target (`--target`, else the last) is built in order, the earlier ones as
//!    unnamed images of the store (as buildah keeps intermediate images), so that a later
//!    `FROM NAME` can start from one.
//! 2. The stage's base comes from the caller's [`BaseImages`] (an image in the store, pulled
//!    when missing by bootc's rules: [`crate::bootc::build`]); `FROM scratch` has none.
//! 3. Each instruction is evaluated in order, with ARG and ENV values substituted as the
//!    Dockerfile lexer does: ENV, LABEL, WORKDIR (creating the directory, owned by USER),
//!    USER, ENTRYPOINT, CMD, EXPOSE, VOLUME, STOPSIGNAL, ARG, SHELL, MAINTAINER change the
//!    config; COPY and ADD ([`context`]) add the context's files to the one new layer
//!    ([`tree`]). RUN is refused: it needs a container runtime. A history entry is recorded
//!    per instruction, as buildah writes it with `--layers=false`: `/bin/sh -c #(nop) …`,
//!    every entry but the last marked `empty_layer`.
//! 4. The new layer is written once, deterministically, to a temporary file while its sha256
//!    (the diffID) is computed; the config (base config + changes + diffID + history, `created`
//!    from `--timestamp` or now) and an OCI manifest are made from it.
//! 5. The result goes through the copy pipeline as an [`ImageSource`] (the base's layers, which
//!    the store already has, and the new layer as an uncompressed diff) into the store's
//!    [`StorageSink`]: a failed build leaves no image and no complete new layer behind. The
//!    image gets the `-t` names.

pub mod containerfile;
pub mod context;
pub mod tree;

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use serde_json::{json, Map, Value};

use crate::compression::BoxRead;
use crate::copy::{copy_planned, plan_image, CopyOptions, ImageSource, LayerStream};
use crate::cstorage::{catalog, ImageRecord, StorageSink, Store};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{PlatformSpec, RawManifest, OCI_CONFIG, OCI_MANIFEST};

use containerfile::{key_values, Instruction, Stage, Words};
use context::{archive_kind, copy_source, sources, unpack_archive, CopyMeta, Ignore};
use tree::{clean, resolve_owner, BaseTree, Content, LayerTree, Node};

/// The PATH buildah gives an image whose base sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The Containerfile.
    pub containerfile: PathBuf,
    /// The build context directory (COPY and ADD sources are relative to it).
    pub context: PathBuf,
    /// Names for the image (`-t`), as they are stored (`localhost/app:latest`).
    pub tags: Vec<String>,
    /// `--build-arg KEY=VALUE` values.
    pub build_args: Vec<(String, String)>,
    /// `--label KEY=VALUE`: added to the image's labels last.
    pub labels: Vec<(String, String)>,
    /// `--timestamp SECONDS`: the image's creation time and every mtime in the new layer.
    pub timestamp: Option<i64>,
    /// `--target STAGE`: build this stage instead of the last.
    pub target: Option<String>,
    /// `--ignorefile`: instead of the context's `.containerignore`/`.dockerignore`.
    pub ignore_file: Option<PathBuf>,
    /// The platform of a `FROM scratch` image.
    pub platform: PlatformSpec,
}

impl BuildOptions {
    /// Build `containerfile` with `context`, no names.
    pub fn new(containerfile: PathBuf, context: PathBuf) -> Self {
        BuildOptions {
            containerfile,
            context,
            tags: Vec::new(),
            build_args: Vec::new(),
            labels: Vec::new(),
            timestamp: None,
            target: None,
            ignore_file: None,
            platform: PlatformSpec::host(),
        }
    }
}

/// Where FROM images come from.
pub trait BaseImages {
    /// The image `name` (as written after FROM, ARGs substituted) in `store`, pulled into it
    /// first if the policy says so.
    fn base(&self, store: &Store, name: &str) -> Result<ImageRecord>;
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The image ID (the config digest's hex).
    pub image_id: String,
    /// The names it was given.
    pub names: Vec<String>,
    /// The diffID of the new layer.
    pub layer: Digest,
    /// Warnings (unused build args, instructions OCI images cannot hold).
    pub warnings: Vec<String>,
}

/// Build `options` into `store` (the module doc's steps); `step` is told each instruction as
/// podman prints it (`STEP 2/5: COPY . /app`).
pub fn build(
    store: Store,
    options: &BuildOptions,
    bases: &dyn BaseImages,
    copy: &CopyOptions,
    step: &mut dyn FnMut(&str),
) -> Result<BuildReport> {
    let file = options.containerfile.display().to_string();
    let text = std::fs::read_to_string(&options.containerfile).map_err(|e| Error::NotFound {
        what: format!("Containerfile {file}"),
        hint: format!("{e}; give it with -f FILE, or put a Containerfile (or Dockerfile) in the context directory"),
    })?;
    let cf = containerfile::parse(&text, &file)?;
    let (global, stages) = containerfile::stages(&cf, &file)?;
    let target = match &options.target {
        None => stages.len() - 1,
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("--target {t}"),
                reason: format!("{file} has no stage named {t} (FROM IMAGE AS {t})"),
            })?,
    };
    let mut b = Builder {
        file,
        escape: cf.escape,
        options,
        build_args: options.build_args.iter().cloned().collect(),
        used_args: Default::default(),
        global: BTreeMap::new(),
        warnings: Vec::new(),
        stage_images: BTreeMap::new(),
        steps_total: stages[..=target]
            .iter()
            .map(|s| s.body.len() + 1)
            .sum::<usize>()
            + global.len(),
        step_no: 0,
    };
    for g in &global {
        b.step_no += 1;
        step(&format!(
            "STEP {}/{}: {}",
            b.step_no, b.steps_total, g.original
        ));
        let vars = b.global.clone();
        let words = Words {
            escape: b.escape,
            vars: &vars,
        };
        for (name, default) in b.arg_decls(g, &words)? {
            let v = b.arg_value(&name, default, None);
            if let Some(v) = v {
                b.global.insert(name, v);
            }
        }
    }
    let mut store = Some(store);
    let mut last = None;
    for (i, stage) in stages[..=target].iter().enumerate() {
        let s = store.take().expect("the store comes back after each stage");
        let (report, back) = b.stage(s, stage, bases, copy, i == target, step)?;
        store = Some(back);
        if let Some(name) = &stage.name {
            b.stage_images.insert(name.clone(), report.image_id.clone());
        }
        b.stage_images
            .insert(i.to_string(), report.image_id.clone());
        last = Some(report);
    }
    let mut report = last.expect("at least one stage");
    let unused: Vec<&String> = b
        .build_args
        .keys()
        .filter(|k| !b.used_args.contains(*k))
        .collect();
    if !unused.is_empty() {
        b.warnings.push(format!(
            "one or more build args were not consumed: {}",
            unused
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    report.warnings = b.warnings;
    Ok(report)
}

struct Builder<'o> {
    file: String,
    escape: char,
    options: &'o BuildOptions,
    build_args: BTreeMap<String, String>,
    used_args: std::collections::BTreeSet<String>,
    global: BTreeMap<String, String>,
    warnings: Vec<String>,
    /// Image IDs of the stages built so far, by name and by index.
    stage_images: BTreeMap<String, String>,
    steps_total: usize,
    step_no: usize,
}

/// The config state of a stage while its instructions run.
struct StageState {
    config: Map<String, Value>,
    env: Vec<String>,
    args: BTreeMap<String, String>,
    declared: Vec<String>,
    history: Vec<Value>,
    shell: Vec<String>,
    cmd_set: bool,
    author: Option<String>,
}

impl StageState {
    fn vars(&self) -> BTreeMap<String, String> {
        let mut v = self.args.clone();
        for e in &self.env {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    fn set_env(&mut self, k: &str, v: &str) {
        let prefix = format!("{k}=");
        self.env.retain(|e| !e.starts_with(&prefix));
        self.env.push(format!("{k}={v}"));
    }
}

impl Builder<'_> {
    /// `ARG a=1 b` → [(a, Some(1)), (b, None)].
    fn arg_decls(
        &self,
        ins: &Instruction,
        words: &Words<'_>,
    ) -> Result<Vec<(String, Option<String>)>> {
        let ws = words
            .split(&ins.args)
            .map_err(|e| ins.error(&self.file, e))?;
        if ws.is_empty() {
            return Err(ins.error(&self.file, "ARG needs a name: ARG NAME[=DEFAULT]"));
        }
        Ok(ws
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            })
            .collect())
    }

    fn arg_value(
        &mut self,
        name: &str,
        default: Option<String>,
        global: Option<&String>,
    ) -> Option<String> {
        if let Some(v) = self.build_args.get(name) {
            self.used_args.insert(name.to_string());
            return Some(v.clone());
        }
        default
            .or_else(|| global.cloned())
            .or_else(|| automatic_arg(name, &self.options.platform))
    }

    #[allow(clippy::too_many_arguments)]
    fn stage(
        &mut self,
        store: Store,
        stage: &Stage,
        bases: &dyn BaseImages,
        copy: &CopyOptions,
        is_target: bool,
        step: &mut dyn FnMut(&str),
    ) -> Result<(BuildReport, Store)> {
        let file = self.file.clone();
        self.step_no += 1;
        step(&format!(
            "STEP {}/{}: {}",
            self.step_no, self.steps_total, stage.from.original
        ));
        let gvars = self.global.clone();
        let gwords = Words {
            escape: self.escape,
            vars: &gvars,
        };
        let base_name = gwords
            .one(&stage.base)
            .map_err(|e| stage.from.error(&file, e))?;
        if let Some(p) = stage.from.flag("platform") {
            let host = format!(
                "{}/{}",
                self.options.platform.os, self.options.platform.architecture
            );
            if !p.starts_with(&host) && !p.contains('$') {
                return Err(stage.from.error(&file, format!("--platform={p}: only the build platform {host} can be built (there is no emulation without a container runtime)")));
            }
        }
        let base = if base_name.eq_ignore_ascii_case("scratch") {
            None
        } else if let Some(id) = self.stage_images.get(&base_name.to_ascii_lowercase()) {
            Some(store.image(id)?)
        } else {
            Some(bases.base(&store, &base_name)?)
        };
        // The base's config, manifest layers and tree.
        let (mut cfg, base_layers, base_tree, base_digest) = match &base {
            None => {
                let p = &self.options.platform;
                let mut c = Map::new();
                c.insert("architecture".into(), json!(p.architecture));
                c.insert("os".into(), json!(p.os));
                if let Some(v) = &p.variant {
                    c.insert("variant".into(), json!(v));
                }
                (c, Vec::new(), BaseTree::default(), None)
            }
            Some(rec) => {
                let raw = store.image_config(rec)?;
                let c: Map<String, Value> =
                    serde_json::from_slice(&raw.bytes).map_err(|e| Error::Json {
                        what: format!("config of the base image {base_name}"),
                        source: e,
                    })?;
                let manifest = store.image_manifest(rec)?;
                let layers: Vec<Descriptor> = manifest
                    .image()
                    .map(|m| m.layers().to_vec())
                    .unwrap_or_default()
                    .into_iter()
                    .map(oci_layer_descriptor)
                    .collect();
                let mut dirs: Vec<PathBuf> = store
                    .image_layers(rec)?
                    .iter()
                    .map(|l| store.layer_path(&l.id).join("diff"))
                    .collect();
                dirs.reverse();
                (c, layers, BaseTree { dirs }, Some(manifest.digest.clone()))
            }
        };
        for k in [
            "container",
            "container_config",
            "docker_version",
            "id",
            "parent",
        ] {
            cfg.remove(k);
        }
        let inner = match cfg.remove("config") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let env: Vec<String> = inner
            .get("Env")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        let mut st = StageState {
            config: inner,
            env,
            args: BTreeMap::new(),
            declared: Vec::new(),
            history: Vec::new(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            cmd_set: false,
            author: None,
        };
        let now = self.options.timestamp.unwrap_or_else(now_seconds);
        let created = rfc3339(self.options.timestamp);
        let scratch = tempfile::Builder::new()
            .prefix("stowage-build-")
            .tempdir()
            .ctx(|| "creating a temporary directory for the build".to_string())?;
        let ignore = Ignore::load(&self.options.context, self.options.ignore_file.as_deref())?;
        let mut tree = LayerTree::default();
        for ins in &stage.body {
            self.step_no += 1;
            step(&format!(
                "STEP {}/{}: {}",
                self.step_no, self.steps_total, ins.original
            ));
            let created_by = self.instruction(
                ins,
                &mut st,
                &mut tree,
                &base_tree,
                &ignore,
                now,
                scratch.path(),
            )?;
            if let Some(c) = created_by {
                st.history
                    .push(json!({"created": created, "created_by": c, "empty_layer": true}));
            }
        }
        // Finish the config.
        if !st.env.iter().any(|e| e.starts_with("PATH=")) {
            st.env.insert(0, DEFAULT_PATH.to_string());
        }
        st.config.insert("Env".into(), json!(st.env));
        if is_target && !self.options.labels.is_empty() {
            let labels = st
                .config
                .entry("Labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if !labels.is_object() {
                *labels = Value::Object(Map::new());
            }
            for (k, v) in &self.options.labels {
                labels.as_object_mut().unwrap().insert(k.clone(), json!(v));
            }
            // buildah records the command line's labels as one more LABEL step.
            let text: Vec<String> = self
                .options
                .labels
                .iter()
                .map(|(k, v)| format!("{}={}", json!(k), json!(v)))
                .collect();
            st.history.push(json!({"created": created, "created_by": format!("/bin/sh -c #(nop) LABEL {}", text.join(" ")), "empty_layer": true}));
        }
        if let Some(last) = st.history.last_mut() {
            last.as_object_mut().unwrap().remove("empty_layer");
        } else {
            st.history.push(json!({"created": created, "created_by": format!("/bin/sh -c #(nop) {}", stage.from.original)}));
        }
        // The new layer (step 4).
        let layer_path = scratch.path().join("layer.tar");
        let f = std::fs::File::create(&layer_path).at("creating", &layer_path)?;
        let hw = tree.write_tar(HashingWriter::new(BufWriter::new(f)))?;
        let (diff_id, size, w) = hw.finish();
        w.into_inner()
            .map_err(|e| {
                Error::from_io(format!("writing {}", layer_path.display()), e.into_error())
            })?
            .sync_all()
            .at("writing", &layer_path)?;
        let mut diff_ids: Vec<Value> = cfg
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(|d| d.as_array().cloned())
            .unwrap_or_default();
        diff_ids.push(json!(diff_id.to_string()));
        let mut history: Vec<Value> = cfg
            .get("history")
            .and_then(|h| h.as_array().cloned())
            .unwrap_or_default();
        history.extend(st.history);
        cfg.insert("created".into(), json!(created));
        if let Some(a) = st.author {
            cfg.insert("author".into(), json!(a));
        }
        cfg.insert("config".into(), Value::Object(st.config));
        cfg.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        cfg.insert("history".into(), Value::Array(history));
        let config_bytes = serde_json::to_vec(&Value::Object(cfg)).expect("JSON values serialize");
        let config_digest = crate::digest::sha256_of(&config_bytes);
        let mut layers = base_layers;
        layers.push(Descriptor::new(
            MediaType::ImageLayer,
            size,
            diff_id.clone(),
        ));
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": layers,
        });
        if let Some(d) = base_digest {
            manifest["annotations"] = json!({
                "org.opencontainers.image.base.digest": d.to_string(),
                "org.opencontainers.image.base.name": base_name,
            });
        }
        let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON values serialize");
        // Step 5.
        let source = BuildSource {
            name: format!("build of {file}"),
            manifest: RawManifest::parse(manifest_bytes, Some(OCI_MANIFEST), &file)?,
            config: config_bytes,
            layer: layer_path,
        };
        let names = if is_target {
            self.options.tags.clone()
        } else {
            Vec::new()
        };
        let sink = StorageSink::new(store, names.first().cloned());
        let plan = plan_image(&source, &copy.platform)?;
        let report = copy_planned(&source, &plan, &sink, copy, std::time::Instant::now())?;
        let image_id = report
            .image_id
            .unwrap_or_else(|| config_digest.digest().to_string());
        for n in names.iter().skip(1) {
            catalog::tag(sink.store(), &image_id, std::slice::from_ref(n))?;
        }
        drop(scratch);
        let store = sink.into_store();
        Ok((
            BuildReport {
                image_id,
                names,
                layer: diff_id,
                warnings: Vec::new(),
            },
            store,
        ))
    }

    /// Run one instruction; returns its history `created_by`, or `None` for none.
    #[allow(clippy::too_many_arguments)]
    fn instruction(
        &mut self,
        ins: &Instruction,
        st: &mut StageState,
        tree: &mut LayerTree,
        base: &BaseTree,
        ignore: &Ignore,
        now: i64,
        scratch: &Path,
    ) -> Result<Option<String>> {
        let file = self.file.clone();
        let err = |r: String| ins.error(&file, r);
        let vars = st.vars();
        let words = Words {
            escape: self.escape,
            vars: &vars,
        };
        let nop = format!("/bin/sh -c #(nop) {}", ins.original);
        let exec_form = |st: &StageState| -> Vec<String> {
            match ins.json_args() {
                Some(v) => v,
                None => {
                    let mut v = st.shell.clone();
                    v.push(ins.args.clone());
                    v
                }
            }
        };
        match ins.keyword.as_str() {
            "RUN" => Err(err(
                "RUN needs a container runtime, and stowage builds images without one: build this Containerfile with `podman build`, or move the RUN steps into the base image and keep COPY/ADD/ENV/… here".into(),
            )),
            "ARG" => {
                for (name, default) in self.arg_decls(ins, &words)? {
                    let global = self.global.get(&name).cloned();
                    if let Some(v) = self.arg_value(&name, default, global.as_ref()) {
                        st.args.insert(name.clone(), v);
                    }
                    if !st.declared.contains(&name) {
                        st.declared.push(name);
                    }
                }
                // buildah lists the stage's arguments that have a value.
                let mut names: Vec<String> = st
                    .declared
                    .iter()
                    .filter(|n| st.args.contains_key(*n))
                    .cloned()
                    .collect();
                names.sort();
                Ok(Some(format!("/bin/sh -c #(nop) ARG {}", names.join(" "))))
            }
            "ENV" => {
                for (k, v) in key_values(&words, &ins.args, true).map_err(err)? {
                    st.set_env(&k, &v);
                }
                Ok(Some(nop))
            }
            "LABEL" => {
                let pairs = key_values(&words, &ins.args, true).map_err(err)?;
                let labels = st.config.entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in pairs {
                    labels.as_object_mut().unwrap().insert(k, json!(v));
                }
                Ok(Some(nop))
            }
            "MAINTAINER" => {
                st.author = Some(ins.args.trim().to_string());
                Ok(Some(nop))
            }
            "WORKDIR" => {
                let w = words.one(ins.args.trim()).map_err(err)?;
                if w.is_empty() {
                    return Err(err("WORKDIR needs a path".into()));
                }
                let cur = st.config.get("WorkingDir").and_then(|v| v.as_str()).unwrap_or("/").to_string();
                let abs = Path::new("/").join(clean(&Path::new(&cur).join(&w)));
                st.config.insert("WorkingDir".into(), json!(abs.display().to_string()));
                let rel = tree.resolve(base, &abs, true);
                if !rel.as_os_str().is_empty() && !tree.exists(base, &rel) {
                    let user = st.config.get("User").and_then(|v| v.as_str()).unwrap_or("").to_string();
                    let owner = if user.is_empty() { (0, 0) } else { resolve_owner(&user, tree, base).map_err(err)? };
                    let node = Node { content: Content::Dir, mode: 0o755, uid: owner.0, gid: owner.1, mtime: now };
                    tree.insert(base, rel, node, owner, now);
                }
                Ok(Some(nop))
            }
            "USER" => {
                let u = words.one(ins.args.trim()).map_err(err)?;
                if u.is_empty() {
                    return Err(err("USER needs a user: USER NAME[:GROUP] or UID[:GID]".into()));
                }
                st.config.insert("User".into(), json!(u));
                Ok(Some(nop))
            }
            "ENTRYPOINT" => {
                let v = exec_form(st);
                if v.is_empty() {
                    st.config.remove("Entrypoint");
                } else {
                    st.config.insert("Entrypoint".into(), json!(v));
                }
                if !st.cmd_set {
                    st.config.remove("Cmd");
                }
                Ok(Some(nop))
            }
            "CMD" => {
                let v = exec_form(st);
                st.config.insert("Cmd".into(), json!(v));
                st.cmd_set = true;
                Ok(Some(nop))
            }
            "SHELL" => {
                st.shell = ins.json_args().filter(|v| !v.is_empty()).ok_or_else(|| err("SHELL needs the JSON form: SHELL [\"/bin/sh\", \"-c\"]".into()))?;
                Ok(Some(nop))
            }
            "EXPOSE" => {
                let ports = st.config.entry("ExposedPorts").or_insert_with(|| json!({}));
                for w in words.split(&ins.args).map_err(err)? {
                    let (p, proto) = match w.split_once('/') {
                        Some((p, pr)) => (p.to_string(), pr.to_ascii_lowercase()),
                        None => (w.clone(), "tcp".to_string()),
                    };
                    let range: Vec<u32> = match p.split_once('-') {
                        Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                            (Ok(a), Ok(b)) if a <= b && b <= 65535 => (a..=b).collect(),
                            _ => return Err(err(format!("invalid port range {w:?}"))),
                        },
                        None => vec![p.parse::<u32>().ok().filter(|n| *n <= 65535).ok_or_else(|| err(format!("invalid port {w:?}; write PORT[/tcp|udp|sctp]")))?],
                    };
                    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                        return Err(err(format!("invalid protocol in {w:?}: use tcp, udp or sctp")));
                    }
                    for n in range {
                        ports.as_object_mut().unwrap().insert(format!("{n}/{proto}"), json!({}));
                    }
                }
                Ok(Some(nop))
            }
            "VOLUME" => {
                let list = match ins.json_args() {
                    Some(v) => v.into_iter().map(|x| words.one(&x)).collect::<std::result::Result<Vec<_>, _>>().map_err(err)?,
                    None => words.split(&ins.args).map_err(err)?,
                };
                if list.is_empty() {
                    return Err(err("VOLUME needs a path".into()));
                }
                let vols = st.config.entry("Volumes").or_insert_with(|| json!({}));
                for v in list {
                    vols.as_object_mut().unwrap().insert(v, json!({}));
                }
                Ok(Some(nop))
            }
            "STOPSIGNAL" => {
                let s = words.one(ins.args.trim()).map_err(err)?;
                if s.is_empty() {
                    return Err(err("STOPSIGNAL needs a signal (SIGTERM, 15)".into()));
                }
                st.config.insert("StopSignal".into(), json!(s));
                Ok(Some(nop))
            }
            "HEALTHCHECK" | "ONBUILD" => {
                self.warnings.push(format!("{file}:{}: {} is not supported for OCI image format and is ignored", ins.line, ins.keyword));
                Ok(Some(nop))
            }
            "COPY" | "ADD" => self.copy(ins, st, tree, base, ignore, now, scratch).map(Some),
            other => Err(err(format!("unknown instruction {other}"))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        ins: &Instruction,
        st: &StageState,
        tree: &mut LayerTree,
        base: &BaseTree,
        ignore: &Ignore,
        now: i64,
        scratch: &Path,
    ) -> Result<String> {
        let file = self.file.clone();
        let err = |r: String| ins.error(&file, r);
        let vars = st.vars();
        let words = Words {
            escape: self.escape,
            vars: &vars,
        };
        let add = ins.keyword == "ADD";
        for (k, _) in &ins.flags {
            match k.as_str() {
                "chown" | "chmod" | "link" => {}
                "from" => {
                    return Err(err(format!(
                        "{} --from is not supported yet; copy the files into the build context, or use a stage as the base (FROM stage)",
                        ins.keyword
                    )))
                }
                other => return Err(err(format!("unknown flag --{other} (supported: --chown, --chmod, --link)"))),
            }
        }
        let mut args = match ins.json_args() {
            Some(v) => v
                .into_iter()
                .map(|x| words.one(&x))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(err)?,
            None => words.split(&ins.args).map_err(err)?,
        };
        if args.len() < 2 {
            return Err(err(format!(
                "{} needs a source and a destination: {} SRC... DEST",
                ins.keyword, ins.keyword
            )));
        }
        let dest = args.pop().unwrap();
        let chown = match ins.flag("chown") {
            Some(c) => Some(resolve_owner(&words.one(c).map_err(err)?, tree, base).map_err(err)?),
            None => None,
        };
        let chmod = match ins.flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        err(format!("--chmod={m}: expected an octal mode such as 0755"))
                    })?,
            ),
            None => None,
        };
        let meta = CopyMeta {
            chown,
            chmod,
            timestamp: self.options.timestamp,
            now,
        };
        let workdir = st
            .config
            .get("WorkingDir")
            .and_then(|v| v.as_str())
            .unwrap_or("/");
        let dest_abs = Path::new(workdir).join(&dest);
        let dest_rel = clean(&dest_abs);
        let into_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
        if args.len() > 1 && !into_dir {
            return Err(err(format!(
                "with several sources the destination must be a directory ending in /: {dest}/"
            )));
        }
        let mut kinds = Vec::new();
        let mut summary = crate::digest::Hasher::sha256();
        for src in &args {
            if add
                && (src.starts_with("http://")
                    || src.starts_with("https://")
                    || src.starts_with("git@"))
            {
                return Err(err(format!("ADD of a URL ({src}) is not supported: download it into the build context first and ADD or COPY the file")));
            }
            let found = sources(&self.options.context, src, ignore).map_err(err)?;
            for (rel, host) in found {
                let m = std::fs::metadata(&host).at("reading", &host)?;
                summary.update(
                    format!(
                        "{}\0{}\0{}\0{}\n",
                        rel.display(),
                        m.len(),
                        m.mode(),
                        m.mtime()
                    )
                    .as_bytes(),
                );
                if add && m.is_file() && archive_kind(&host)?.is_some() {
                    let d = tree.resolve(base, &dest_rel, true);
                    unpack_archive(tree, base, &host, &d, &meta, scratch)?;
                    kinds.push("file");
                    continue;
                }
                kinds.push(if m.is_dir() { "dir" } else { "file" });
                copy_source(
                    tree,
                    base,
                    &rel,
                    &host,
                    &dest_rel,
                    into_dir || args.len() > 1,
                    &meta,
                    ignore,
                )?;
            }
        }
        let kind = if kinds.len() == 1 { kinds[0] } else { "multi" };
        Ok(format!(
            "/bin/sh -c #(nop) {} {kind}:{} in {dest} ",
            ins.keyword,
            summary.finish().digest()
        ))
    }
}

use std::os::unix::fs::MetadataExt;

/// The values BuildKit and buildah give the platform ARGs when declared without one.
fn automatic_arg(name: &str, p: &PlatformSpec) -> Option<String> {
    let platform = match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    };
    Some(match name {
        "TARGETPLATFORM" | "BUILDPLATFORM" => platform,
        "TARGETOS" | "BUILDOS" => p.os.clone(),
        "TARGETARCH" | "BUILDARCH" => p.architecture.clone(),
        "TARGETVARIANT" | "BUILDVARIANT" => p.variant.clone().unwrap_or_default(),
        _ => return None,
    })
}

/// An OCI layer descriptor for a base layer (Docker media types mapped to OCI's).
fn oci_layer_descriptor(d: Descriptor) -> Descriptor {
    let mt = match d.media_type().as_ref() {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => MediaType::ImageLayerGzip,
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => MediaType::ImageLayerZstd,
        "application/vnd.docker.image.rootfs.diff.tar" => MediaType::ImageLayer,
        _ => return d,
    };
    Descriptor::new(mt, d.size(), d.digest().clone())
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC time of `--timestamp` (seconds), else now with nanoseconds, as buildah writes.
fn rfc3339(timestamp: Option<i64>) -> String {
    match timestamp {
        Some(t) => chrono::DateTime::from_timestamp(t, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        None => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    }
}

/// The built image as a copy source: the base's layers (already in the store) and the new
/// layer as an uncompressed diff from its temporary file.
struct BuildSource {
    name: String,
    manifest: RawManifest,
    config: Vec<u8>,
    layer: PathBuf,
}

impl ImageSource for BuildSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn manifest(&self) -> Result<RawManifest> {
        Ok(self.manifest.clone())
    }

    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        Err(Error::NotFound {
            what: format!("manifest {} of {}", descriptor.digest(), self.name),
            hint: "a build makes one manifest, not an index".into(),
        })
    }

    fn open_blob(&self, _descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        Ok(Box::new(std::io::Cursor::new(self.config.clone())))
    }

    fn open_layer(
        &self,
        index: usize,
        descriptor: &Descriptor,
        _diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        let n = self.manifest.image().map(|m| m.layers().len()).unwrap_or(0);
        if index + 1 != n {
            return Err(Error::NotFound {
                what: format!(
                    "base layer {} ({}) of {} in the store",
                    index + 1,
                    descriptor.digest(),
                    self.name
                ),
                hint: "the base image lost a layer while the build ran; run the build again".into(),
            });
        }
        let f = std::fs::File::open(&self.layer).at("opening", &self.layer)?;
        Ok(LayerStream::Diff(Box::new(
            std::io::BufReader::with_capacity(128 * 1024, f),
        )))
    }
}
