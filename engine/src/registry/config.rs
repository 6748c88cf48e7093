//! Registry configuration read from the host, the way containers/image reads it:
//! credentials (auth.json), registries.conf v2, and TLS certificate directories.
//!
//! Credentials ([`find_credentials`], containers-auth.json(5)):
//! 1. with `--authfile` or `REGISTRY_AUTH_FILE`, only that file is read;
//! 2. otherwise `${XDG_RUNTIME_DIR}/containers/auth.json` (`/run/containers/UID/auth.json`
//!    when XDG_RUNTIME_DIR is unset), `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`,
//!    `~/.docker/config.json` and `~/.dockercfg`, in this order; the first file with an
//!    entry for the image wins;
//! 3. within a file, a `credHelpers` entry for the registry host comes first: the helper
//!    `docker-credential-NAME get` is run (found on `PATH`) with the host on stdin and
//!    answers `{"Username":…,"Secret":…}` (`<token>` as the user name means the secret is an
//!    identity token); a helper that has nothing for the host passes on to the next file;
//! 4. otherwise the most specific `auths` key wins: `host/ns/repo`, then `host/ns`, then
//!    `host` (legacy keys such as `https://index.docker.io/v1/` are normalised to their
//!    host). An entry is `{"auth": base64("user:password")}` and/or
//!    `{"identitytoken": "…"}` (an OAuth2 refresh token, used with the token server).
//!
//! registries.conf ([`RegistriesConf`], containers-registries.conf(5), version 2; version 1's
//! `[registries.search|insecure|block]` lists are converted as containers/image does):
//! 1. the main file is `--registries-conf` (or `CONTAINERS_REGISTRIES_CONF`), else
//!    `~/.config/containers/registries.conf` when it exists, else
//!    `/etc/containers/registries.conf`; then `*.conf` drop-ins in `registries.conf.d`
//!    (system, then user), in name order: a later `unqualified-search-registries` replaces an
//!    earlier one, a later `[[registry]]` replaces one with the same prefix;
//! 2. an image's entry is the `[[registry]]` whose `prefix` (or `location` when no prefix) is
//!    the longest match at a `/` boundary; `*.example.com` prefixes match sub-domains;
//! 3. `blocked` refuses the image; the pull sources are the mirrors (subject to
//!    `pull-from-mirror` and `mirror-by-digest-only`) then the location itself, each with the
//!    matched prefix rewritten to its location and its own `insecure`; pushes go to the
//!    location only.
//!
//! TLS ([`read_cert_dir`], containers-certs.d(5)): `--cert-dir DIR`, else the first existing
//! `HOST[:PORT]` directory under `~/.config/containers/certs.d`, `/etc/containers/certs.d`,
//! `/etc/docker/certs.d`. It holds `*.crt` CA certificates (trusted in addition to the
//! system's) and `NAME.cert` + `NAME.key` client certificates.
//!
//! The TOML is parsed with the `toml` crate; the lookup rules are containers/image's and are
//! written out here because no Rust crate implements them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::Credentials;
use super::client::TlsFiles;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// Where the host's configuration lives. [`HostPaths::from_env`] gives the real locations;
/// tests point them at temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// The user id (for `/run/containers/UID/auth.json`).
    pub uid: u32,
    /// `/etc/containers` (registries.conf, registries.conf.d, certs.d).
    pub etc_containers: PathBuf,
    /// `/etc/docker` (certs.d).
    pub etc_docker: PathBuf,
    /// `$PATH`, where credential helpers are looked for.
    pub search_path: Option<std::ffi::OsString>,
}

impl HostPaths {
    /// The locations from the process environment.
    pub fn from_env() -> Self {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        HostPaths {
            home: var("HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            registry_auth_file: var("REGISTRY_AUTH_FILE"),
            uid: rustix::process::getuid().as_raw(),
            etc_containers: PathBuf::from("/etc/containers"),
            etc_docker: PathBuf::from("/etc/docker"),
            search_path: std::env::var_os("PATH"),
        }
    }

    fn config_home(&self) -> Option<PathBuf> {
        self.xdg_config_home
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".config")))
    }

    /// The auth files to read, in order, and whether each is in Docker's legacy format.
    pub fn auth_files(&self, authfile: Option<&Path>) -> Vec<(PathBuf, bool)> {
        if let Some(f) = authfile
            .map(Path::to_path_buf)
            .or(self.registry_auth_file.clone())
        {
            return vec![(f, false)];
        }
        let mut files = vec![(
            match &self.xdg_runtime_dir {
                Some(d) => d.join("containers/auth.json"),
                None => PathBuf::from(format!("/run/containers/{}/auth.json", self.uid)),
            },
            false,
        )];
        if let Some(c) = self.config_home() {
            files.push((c.join("containers/auth.json"), false));
        }
        if let Some(h) = &self.home {
            files.push((h.join(".docker/config.json"), false));
            files.push((h.join(".dockercfg"), true));
        }
        files
    }

    /// The directories whose `HOST[:PORT]` subdirectory holds a registry's certificates.
    pub fn certs_d_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(c) = self.config_home() {
            dirs.push(c.join("containers/certs.d"));
        }
        dirs.push(self.etc_containers.join("certs.d"));
        dirs.push(self.etc_docker.join("certs.d"));
        dirs
    }
}

/// The auth.json key normalised to a host (or host/path) name.
fn normalize_auth_key(key: &str) -> String {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    match stripped {
        // Legacy keys are URLs whose path (`/v1/`) is not part of the name.
        Some(rest) => {
            let host = rest.split('/').next().unwrap_or(rest);
            if host == "index.docker.io" || host == "registry-1.docker.io" {
                "docker.io".to_string()
            } else {
                host.to_string()
            }
        }
        None if key == "index.docker.io" => "docker.io".to_string(),
        None => key.trim_end_matches('/').to_string(),
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// Ask `docker-credential-HELPER` for `registry`'s credentials. `Ok(None)`: it has none.
fn run_credential_helper(
    paths: &HostPaths,
    helper: &str,
    registry: &str,
) -> Result<Option<Credentials>> {
    use std::io::Write as _;
    let program = format!("docker-credential-{helper}");
    let found = paths.search_path.as_ref().and_then(|p| {
        std::env::split_paths(p)
            .map(|d| d.join(&program))
            .find(|f| f.is_file())
    });
    let Some(exe) = found else {
        return Err(Error::NotFound {
            what: format!("credential helper {program} (credHelpers entry for {registry})"),
            hint: format!("install {program} or remove the credHelpers entry"),
        });
    };
    let mut child = std::process::Command::new(&exe)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::io_path("running credential helper", &exe, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is reported by its exit status below.
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io_path("running credential helper", &exe, e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::Unauthorized {
            what: format!("getting credentials for {registry}"),
            reason: format!(
                "{program} failed ({}): {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            hint: format!("check {program}, or remove its credHelpers entry"),
        });
    }
    #[derive(Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| Error::Malformed {
        what: format!("answer of {program} for {registry}"),
        reason: e.to_string(),
    })?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if a.username == "<token>" {
        Credentials::identity("", &a.secret)
    } else {
        Credentials {
            username: a.username,
            password: a.secret,
            identity_token: None,
        }
    }))
}

/// The credentials for the repository `registry/repo` in the auth files, following the
/// lookup order above. `None` when no file has an entry.
pub fn find_credentials(
    paths: &HostPaths,
    authfile: Option<&Path>,
    registry: &str,
    repo: &str,
) -> Result<Option<Credentials>> {
    // Most specific key first: host/a/b, host/a, host.
    let mut keys = vec![];
    let full = format!("{registry}/{repo}");
    let mut k = full.as_str();
    loop {
        keys.push(k.to_string());
        match k.rfind('/') {
            Some(i) => k = &k[..i],
            None => break,
        }
    }
    for (file, legacy) in paths.auth_files(authfile) {
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io_path("reading auth file", &file, e)),
        };
        let malformed = |reason: String| Error::Malformed {
            what: format!("auth file {}", file.display()),
            reason,
        };
        let entries: BTreeMap<String, AuthEntry> = if legacy {
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?
        } else {
            let file: AuthFile =
                serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
            if let Some(helper) = file.cred_helpers.get(registry) {
                if let Some(c) = run_credential_helper(paths, helper, registry)? {
                    return Ok(Some(c));
                }
                continue;
            }
            file.auths
        };
        let normalized: BTreeMap<String, &AuthEntry> = entries
            .iter()
            .map(|(k, v)| (normalize_auth_key(k), v))
            .collect();
        for key in &keys {
            let Some(entry) = normalized.get(key) else {
                continue;
            };
            let basic = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
                Some(auth) => Some(Credentials::from_auth_field(auth).ok_or_else(|| {
                    malformed(format!(
                        "the \"auth\" of {key:?} is not base64 of \"user:password\""
                    ))
                })?),
                None => None,
            };
            match (
                entry.identitytoken.as_deref().filter(|t| !t.is_empty()),
                basic,
            ) {
                (Some(token), b) => {
                    let user = b.map(|b| b.username).unwrap_or_default();
                    return Ok(Some(Credentials::identity(&user, token)));
                }
                (None, Some(b)) => return Ok(Some(b)),
                (None, None) => continue,
            }
        }
    }
    Ok(None)
}

/// When mirrors may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullFromMirror {
    /// For every pull.
    #[default]
    All,
    /// Only for pulls by digest.
    DigestOnly,
    /// Only for pulls by tag.
    TagOnly,
}

/// A `[[registry.mirror]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorConf {
    /// `host[:port][/path]`.
    pub location: String,
    /// Allow plain http and unverified TLS.
    #[serde(default)]
    pub insecure: bool,
    /// When to use the mirror.
    #[serde(default)]
    pub pull_from_mirror: Option<PullFromMirror>,
}

/// A `[[registry]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryConf {
    /// The names this entry applies to (`host[/path]` or `*.domain`); defaults to
    /// `location`. Only `*.domain` prefixes may be given without a location.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where the images really are (`host[:port][/path]`).
    #[serde(default)]
    pub location: Option<String>,
    /// Allow plain http and unverified TLS.
    #[serde(default)]
    pub insecure: bool,
    /// Refuse to pull from it.
    #[serde(default)]
    pub blocked: bool,
    /// Use mirrors only for pulls by digest.
    #[serde(default)]
    pub mirror_by_digest_only: bool,
    /// Mirrors, tried in order before the location.
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<MirrorConf>,
}

impl RegistryConf {
    fn effective_prefix(&self) -> Option<&str> {
        self.prefix.as_deref().or(self.location.as_deref())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ConfFile {
    #[serde(default)]
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default, rename = "registry")]
    registries: Vec<RegistryConf>,
    /// The version 1 `[registries.search|insecure|block]` tables.
    #[serde(default, rename = "registries")]
    v1_registries: Option<V1Tables>,
}

#[derive(Debug, Default, Deserialize)]
struct V1Tables {
    #[serde(default)]
    search: Option<V1List>,
    #[serde(default)]
    insecure: Option<V1List>,
    #[serde(default)]
    block: Option<V1List>,
}

#[derive(Debug, Default, Deserialize)]
struct V1List {
    #[serde(default)]
    registries: Vec<String>,
}

/// The merged registries.conf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    /// Registries tried, in order, for short names.
    pub unqualified_search_registries: Vec<String>,
    /// `[[registry]]` entries.
    pub registries: Vec<RegistryConf>,
}

/// Where to pull from or push to: a registry host and the repository path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub registry: String,
    /// The repository path on that registry.
    pub repo: String,
    /// registries.conf marks it insecure.
    pub insecure: bool,
    /// It is a mirror (not the image's own location).
    pub mirror: bool,
}

impl Endpoint {
    /// `host/repo`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repo)
    }
}

impl RegistriesConf {
    /// Read the configuration as described in the module docs. `explicit` is
    /// `--registries-conf`.
    pub fn load(paths: &HostPaths, explicit: Option<&Path>) -> Result<Self> {
        let user_file = paths
            .config_home()
            .map(|c| c.join("containers/registries.conf"));
        let user_dir = paths
            .config_home()
            .map(|c| c.join("containers/registries.conf.d"));
        let system_dir = paths.etc_containers.join("registries.conf.d");
        let (main, dirs) = match (explicit, &user_file) {
            (Some(f), _) => (f.to_path_buf(), vec![Some(system_dir), user_dir]),
            (None, Some(u)) if u.exists() => (u.clone(), vec![user_dir]),
            _ => (
                paths.etc_containers.join("registries.conf"),
                vec![Some(system_dir), user_dir],
            ),
        };
        let mut conf = RegistriesConf::default();
        match std::fs::read_to_string(&main) {
            Ok(text) => conf.merge(parse_conf(&text, &main)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {}
            Err(e) => return Err(Error::io_path("reading registries.conf", &main, e)),
        }
        for dir in dirs.into_iter().flatten() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                    .collect(),
                Err(_) => continue,
            };
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f)
                    .map_err(|e| Error::io_path("reading registries.conf drop-in", &f, e))?;
                conf.merge(parse_conf(&text, &f)?);
            }
        }
        Ok(conf)
    }

    /// Parse one registries.conf text (tests and single files).
    pub fn parse(text: &str, what: &Path) -> Result<Self> {
        let mut conf = RegistriesConf::default();
        conf.merge(parse_conf(text, what)?);
        Ok(conf)
    }

    fn merge(&mut self, file: ConfFile) {
        if let Some(u) = file.unqualified_search_registries {
            self.unqualified_search_registries = u;
        }
        for r in file.registries {
            let p = r.effective_prefix().map(str::to_string);
            self.registries
                .retain(|old| old.effective_prefix().map(str::to_string) != p);
            self.registries.push(r);
        }
    }

    /// The entry for `name` (`host/path`): the longest matching prefix.
    pub fn find(&self, name: &str) -> Option<&RegistryConf> {
        self.registries
            .iter()
            .filter_map(|r| {
                let p = r.effective_prefix()?;
                prefix_matches(p, name).then_some((prefix_len(p, name), r))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r)
    }

    /// Where to pull `reference` from, in order (mirrors first). Fails when it is blocked.
    pub fn pull_endpoints(&self, reference: &Reference) -> Result<Vec<Endpoint>> {
        let name = reference.name();
        let Some(entry) = self.find(&name) else {
            return Ok(vec![Endpoint {
                registry: reference.domain().to_string(),
                repo: reference.path().to_string(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(blocked(&name));
        }
        let by_digest = reference.digest().is_some();
        let mut out = Vec::new();
        for m in &entry.mirrors {
            let mode = m
                .pull_from_mirror
                .unwrap_or(if entry.mirror_by_digest_only {
                    PullFromMirror::DigestOnly
                } else {
                    PullFromMirror::All
                });
            let usable = match mode {
                PullFromMirror::All => !entry.mirror_by_digest_only || by_digest,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if usable {
                out.push(rewrite(entry, &m.location, &name, m.insecure, true)?);
            }
        }
        let location = match entry.prefix.as_deref() {
            // A wildcard entry stands for the host that matched it.
            Some(p) if p.starts_with("*.") => reference.domain().to_string(),
            _ => entry
                .location
                .clone()
                .or_else(|| entry.prefix.clone())
                .unwrap_or_default(),
        };
        out.push(rewrite(entry, &location, &name, entry.insecure, false)?);
        Ok(out)
    }

    /// Where to push `reference` (the location, never a mirror). Fails when it is blocked.
    pub fn push_endpoint(&self, reference: &Reference) -> Result<Endpoint> {
        let all = self.pull_endpoints(reference)?;
        Ok(all
            .into_iter()
            .find(|e| !e.mirror)
            .expect("the location is always last"))
    }

    /// The fully qualified candidates for a short name (`fedora:40`): one per
    /// `unqualified-search-registries` entry, in order. Names that are not short are
    /// returned as they are.
    pub fn resolve_short_name(&self, name: &str) -> Result<Vec<Reference>> {
        if !Reference::is_short_name(name) {
            return Ok(vec![Reference::parse_with_default_tag(name)?]);
        }
        if self.unqualified_search_registries.is_empty() {
            return Err(Error::NotFound {
                what: format!("registry for short name {name:?}"),
                hint: "no unqualified-search-registries are configured in registries.conf; use a fully qualified name such as docker.io/library/NAME".into(),
            });
        }
        self.unqualified_search_registries
            .iter()
            .map(|r| {
                let full = if r == "docker.io" && !name.contains('/') {
                    format!("{r}/library/{name}")
                } else {
                    format!("{r}/{name}")
                };
                Reference::parse_with_default_tag(&full)
            })
            .collect()
    }
}

fn blocked(name: &str) -> Error {
    Error::Conflict {
        what: format!("registry for {name}"),
        reason: "it is blocked in registries.conf (blocked = true)".into(),
    }
}

fn parse_conf(text: &str, what: &Path) -> Result<ConfFile> {
    let file: ConfFile = toml::from_str(text).map_err(|e| Error::Malformed {
        what: format!("registries.conf {}", what.display()),
        reason: e.to_string(),
    })?;
    let mut file = file;
    if let Some(v1) = file.v1_registries.take() {
        // Version 1, as containers/image converts it: search → unqualified-search-registries,
        // insecure and block → [[registry]] entries. Mixing it with version 2 is an error.
        if file.unqualified_search_registries.is_some() || !file.registries.is_empty() {
            return Err(Error::Malformed {
                what: format!("registries.conf {}", what.display()),
                reason: "it mixes the version 1 format ([registries.search|insecure|block]) with version 2 (unqualified-search-registries, [[registry]]); use one".into(),
            });
        }
        if let Some(search) = v1.search {
            file.unqualified_search_registries = Some(search.registries);
        }
        let mut entries: Vec<RegistryConf> = Vec::new();
        let mut entry = |location: &str| -> usize {
            match entries
                .iter()
                .position(|e| e.location.as_deref() == Some(location))
            {
                Some(i) => i,
                None => {
                    entries.push(RegistryConf {
                        prefix: None,
                        location: Some(location.to_string()),
                        insecure: false,
                        blocked: false,
                        mirror_by_digest_only: false,
                        mirrors: Vec::new(),
                    });
                    entries.len() - 1
                }
            }
        };
        let insecure: Vec<usize> = v1
            .insecure
            .map(|l| l.registries.iter().map(|r| entry(r)).collect())
            .unwrap_or_default();
        let blocked: Vec<usize> = v1
            .block
            .map(|l| l.registries.iter().map(|r| entry(r)).collect())
            .unwrap_or_default();
        for i in insecure {
            entries[i].insecure = true;
        }
        for i in blocked {
            entries[i].blocked = true;
        }
        file.registries = entries;
    }
    for r in &file.registries {
        if r.effective_prefix().is_none() {
            return Err(Error::Malformed {
                what: format!("registries.conf {}", what.display()),
                reason: "a [[registry]] has neither prefix nor location".into(),
            });
        }
        if let Some(p) = &r.prefix {
            if r.location.is_none() && !p.starts_with("*.") {
                return Err(Error::Malformed {
                    what: format!("registries.conf {}", what.display()),
                    reason: format!(
                        "[[registry]] prefix {p:?} has no location (only *.domain prefixes may omit it)"
                    ),
                });
            }
            if p.starts_with("*.") && r.location.is_some() {
                return Err(Error::Malformed {
                    what: format!("registries.conf {}", what.display()),
                    reason: format!(
                        "[[registry]] prefix {p:?}: a wildcard prefix cannot have a location"
                    ),
                });
            }
        }
    }
    Ok(file)
}

fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or("");
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix || (name.starts_with(prefix) && name.as_bytes().get(prefix.len()) == Some(&b'/'))
}

fn prefix_len(prefix: &str, name: &str) -> usize {
    if prefix.starts_with("*.") {
        // A wildcard matches the whole host; it is less specific than any explicit prefix
        // of that host.
        name.split('/').next().unwrap_or("").len().saturating_sub(1)
    } else {
        prefix.len()
    }
}

/// `name` with `entry`'s prefix replaced by `location`, split into registry and repository.
fn rewrite(
    entry: &RegistryConf,
    location: &str,
    name: &str,
    insecure: bool,
    mirror: bool,
) -> Result<Endpoint> {
    let prefix = entry.effective_prefix().unwrap_or("");
    let rest = if prefix.starts_with("*.") {
        // Wildcard entries have no location rewrite; mirrors replace the host.
        name.split_once('/').map(|(_, r)| r).unwrap_or("")
    } else {
        name.strip_prefix(prefix)
            .unwrap_or("")
            .trim_start_matches('/')
    };
    let full = match (location.trim_end_matches('/'), rest) {
        (l, "") => l.to_string(),
        ("", r) => r.to_string(),
        (l, r) => format!("{l}/{r}"),
    };
    let (registry, repo) = full.split_once('/').ok_or_else(|| Error::Malformed {
        what: format!("registries.conf entry for {prefix}"),
        reason: format!("{name} rewritten with location {location:?} has no repository path"),
    })?;
    Ok(Endpoint {
        registry: registry.to_string(),
        repo: repo.to_string(),
        insecure,
        mirror,
    })
}

/// The certificate directory for `registry` (`host[:port]`): the first existing
/// `DIR/registry` of [`HostPaths::certs_d_dirs`].
pub fn certs_d_for(paths: &HostPaths, registry: &str) -> Option<PathBuf> {
    paths
        .certs_d_dirs()
        .into_iter()
        .map(|d| d.join(registry))
        .find(|d| d.is_dir())
}

/// Read the TLS material in `dir`. A missing directory is empty.
pub fn read_cert_dir(dir: &Path) -> Result<TlsFiles> {
    let mut files = TlsFiles::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(Error::io_path("reading certificate directory", dir, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| Error::io_path("reading", dir.join(name), e))
    };
    for name in &names {
        if name.ends_with(".crt") {
            files
                .ca_pems
                .push((dir.join(name).display().to_string(), read(name)?));
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !names.contains(&key) {
                return Err(Error::NotFound {
                    what: format!(
                        "key {} for client certificate {}",
                        dir.join(&key).display(),
                        dir.join(name).display()
                    ),
                    hint: "put the certificate's private key next to it, or remove the .cert file"
                        .into(),
                });
            }
            let mut pem = read(name)?;
            pem.push(b'\n');
            pem.extend(read(&key)?);
            files.identity_pem = Some((dir.join(name).display().to_string(), pem));
        } else if let Some(stem) = name.strip_suffix(".key") {
            if !names.contains(&format!("{stem}.cert")) {
                return Err(Error::NotFound {
                    what: format!(
                        "client certificate {}",
                        dir.join(format!("{stem}.cert")).display()
                    ),
                    hint: format!("{} has no matching .cert file", dir.join(name).display()),
                });
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(root: &Path) -> HostPaths {
        HostPaths {
            home: Some(root.join("home")),
            xdg_runtime_dir: Some(root.join("run")),
            xdg_config_home: None,
            registry_auth_file: None,
            uid: 1000,
            etc_containers: root.join("etc/containers"),
            etc_docker: root.join("etc/docker"),
            search_path: Some(root.join("bin").into_os_string()),
        }
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn auth(user_pass: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    }

    #[test]
    fn auth_file_order() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let files: Vec<PathBuf> = p.auth_files(None).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            files,
            vec![
                tmp.path().join("run/containers/auth.json"),
                tmp.path().join("home/.config/containers/auth.json"),
                tmp.path().join("home/.docker/config.json"),
                tmp.path().join("home/.dockercfg"),
            ]
        );
        let no_xdg = HostPaths {
            xdg_runtime_dir: None,
            xdg_config_home: Some(tmp.path().join("cfg")),
            ..p.clone()
        };
        let files: Vec<PathBuf> = no_xdg
            .auth_files(None)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(files[0], PathBuf::from("/run/containers/1000/auth.json"));
        assert_eq!(files[1], tmp.path().join("cfg/containers/auth.json"));
        let env_file = HostPaths {
            registry_auth_file: Some(tmp.path().join("env.json")),
            ..p.clone()
        };
        assert_eq!(
            env_file.auth_files(None),
            vec![(tmp.path().join("env.json"), false)]
        );
        assert_eq!(
            env_file.auth_files(Some(Path::new("/x.json"))),
            vec![(PathBuf::from("/x.json"), false)]
        );
    }

    #[test]
    fn credentials_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        assert_eq!(find_credentials(&p, None, "r.io", "a/b").unwrap(), None);
        // Docker's file has the host; the containers file a namespace: the first file with
        // any matching entry wins.
        write(
            &tmp.path().join("home/.docker/config.json"),
            &format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"r.io":{{"auth":"{}"}}}}}}"#,
                auth("hub:1"),
                auth("docker:2")
            ),
        );
        let got = find_credentials(&p, None, "r.io", "a/b").unwrap().unwrap();
        assert_eq!(got.username, "docker");
        let hub = find_credentials(&p, None, "docker.io", "library/x")
            .unwrap()
            .unwrap();
        assert_eq!(hub.username, "hub");
        write(
            &tmp.path().join("home/.config/containers/auth.json"),
            &format!(
                r#"{{"auths":{{"r.io/a":{{"auth":"{}"}},"r.io/a/b":{{"auth":"{}"}},"other.io":{{"auth":""}}}}}}"#,
                auth("ns:3"),
                auth("repo:4")
            ),
        );
        assert_eq!(
            find_credentials(&p, None, "r.io", "a/b")
                .unwrap()
                .unwrap()
                .username,
            "repo"
        );
        assert_eq!(
            find_credentials(&p, None, "r.io", "a/c")
                .unwrap()
                .unwrap()
                .username,
            "ns"
        );
        // No match for r.io/z in the containers file: docker's host entry applies.
        assert_eq!(
            find_credentials(&p, None, "r.io", "z/y")
                .unwrap()
                .unwrap()
                .username,
            "docker"
        );
        // A prefix that is not at a path boundary does not match.
        assert_eq!(
            find_credentials(&p, None, "r.io", "ab/c")
                .unwrap()
                .unwrap()
                .username,
            "docker"
        );
        // --authfile: only that file.
        let only = tmp.path().join("only.json");
        write(&only, r#"{"auths":{}}"#);
        assert_eq!(
            find_credentials(&p, Some(&only), "r.io", "a/b").unwrap(),
            None
        );
        write(&only, r#"{"auths":{"r.io":{"auth":"!!"}}}"#);
        let err = find_credentials(&p, Some(&only), "r.io", "a/b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only.json") && err.contains("base64"), "{err}");
        write(&only, "not json");
        assert!(find_credentials(&p, Some(&only), "r.io", "a/b").is_err());
    }

    #[test]
    fn identity_tokens_and_credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let file = tmp.path().join("home/.config/containers/auth.json");
        write(
            &file,
            &format!(
                r#"{{"auths":{{"id.io":{{"identitytoken":"refresh-1"}},"both.io":{{"auth":"{}","identitytoken":"refresh-2"}}}},
                   "credHelpers":{{"helped.io":"fake","token.io":"fake","none.io":"fake","broken.io":"missing"}}}}"#,
                auth("alice:pw")
            ),
        );
        let c = find_credentials(&p, None, "id.io", "a").unwrap().unwrap();
        assert_eq!(c.identity_token.as_deref(), Some("refresh-1"));
        let c = find_credentials(&p, None, "both.io", "a").unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.identity_token.as_deref()),
            ("alice", Some("refresh-2"))
        );
        // A helper script: answers per registry read from stdin.
        let helper = tmp.path().join("bin/docker-credential-fake");
        write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread host\ncase \"$host\" in\n  helped.io) echo '{\"ServerURL\":\"helped.io\",\"Username\":\"bob\",\"Secret\":\"s3\"}';;\n  token.io) echo '{\"ServerURL\":\"token.io\",\"Username\":\"<token>\",\"Secret\":\"rt\"}';;\n  *) echo 'credentials not found in native keychain'; exit 1;;\nesac\n",
        );
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = find_credentials(&p, None, "helped.io", "x/y")
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "s3"));
        let c = find_credentials(&p, None, "token.io", "x")
            .unwrap()
            .unwrap();
        assert_eq!(c.identity_token.as_deref(), Some("rt"));
        // Nothing from the helper: the next file is consulted.
        assert_eq!(find_credentials(&p, None, "none.io", "x").unwrap(), None);
        write(
            &tmp.path().join("home/.docker/config.json"),
            &format!(
                r#"{{"auths":{{"none.io":{{"auth":"{}"}}}}}}"#,
                auth("carol:pw")
            ),
        );
        assert_eq!(
            find_credentials(&p, None, "none.io", "x")
                .unwrap()
                .unwrap()
                .username,
            "carol"
        );
        // A helper that is not installed is an error naming it.
        let err = find_credentials(&p, None, "broken.io", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("docker-credential-missing"), "{err}");
    }

    const CONF: &str = r#"
unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com:5000/bar"
insecure = true

[[registry.mirror]]
location = "mirror-a.example.com/m"

[[registry.mirror]]
location = "mirror-b.example.com"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
prefix = "example.com"
location = "example.com"

[[registry]]
location = "blocked.example.com"
blocked = true

[[registry]]
prefix = "*.wild.example.com"
[[registry.mirror]]
location = "wild-mirror.example.com"
"#;

    fn r(s: &str) -> Reference {
        Reference::parse_with_default_tag(s).unwrap()
    }

    #[test]
    fn registries_conf_pull_endpoints() {
        let conf = RegistriesConf::parse(CONF, Path::new("t.conf")).unwrap();
        let eps = conf.pull_endpoints(&r("example.com/foo/app:1")).unwrap();
        let names: Vec<(String, bool, bool)> = eps
            .iter()
            .map(|e| (e.name(), e.insecure, e.mirror))
            .collect();
        assert_eq!(
            names,
            vec![
                ("mirror-a.example.com/m/app".to_string(), false, true),
                ("internal.example.com:5000/bar/app".to_string(), true, false),
            ]
        );
        let digest = "sha256:".to_string() + &"a".repeat(64);
        let eps = conf
            .pull_endpoints(&r(&format!("example.com/foo/app@{digest}")))
            .unwrap();
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[1].name(), "mirror-b.example.com/app");
        // Longest prefix: example.com/foobar is not under example.com/foo.
        let eps = conf.pull_endpoints(&r("example.com/foobar:1")).unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].name(), "example.com/foobar");
        // Blocked.
        let err = conf
            .pull_endpoints(&r("blocked.example.com/x:1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("blocked"), "{err}");
        assert!(conf.push_endpoint(&r("blocked.example.com/x:1")).is_err());
        // Wildcards.
        let eps = conf.pull_endpoints(&r("a.wild.example.com/x/y:1")).unwrap();
        let names: Vec<String> = eps.iter().map(Endpoint::name).collect();
        assert_eq!(
            names,
            vec!["wild-mirror.example.com/x/y", "a.wild.example.com/x/y"]
        );
        // Unconfigured registries are used as named.
        let eps = conf.pull_endpoints(&r("quay.io/a/b:1")).unwrap();
        assert_eq!(eps.len(), 1);
        assert!(!eps[0].insecure && !eps[0].mirror);
        // Push: never a mirror.
        let ep = conf.push_endpoint(&r("example.com/foo/app:1")).unwrap();
        assert_eq!(ep.name(), "internal.example.com:5000/bar/app");
    }

    #[test]
    fn mirror_by_digest_only_and_short_names() {
        let conf = RegistriesConf::parse(
            r#"
[[registry]]
location = "r.example.com"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example.com"
[[registry.mirror]]
location = "t.example.com"
pull-from-mirror = "tag-only"
"#,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(
            conf.pull_endpoints(&r("r.example.com/a:1")).unwrap().len(),
            2
        );
        let d = format!("r.example.com/a@sha256:{}", "b".repeat(64));
        assert_eq!(conf.pull_endpoints(&r(&d)).unwrap().len(), 2);
        let err = conf.resolve_short_name("fedora").unwrap_err().to_string();
        assert!(err.contains("unqualified-search-registries"), "{err}");
        let conf = RegistriesConf::parse(CONF, Path::new("t")).unwrap();
        let names: Vec<String> = conf
            .resolve_short_name("fedora:40")
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "registry.fedoraproject.org/fedora:40",
                "docker.io/library/fedora:40"
            ]
        );
        assert_eq!(
            conf.resolve_short_name("quay.io/x/y").unwrap()[0].to_string(),
            "quay.io/x/y:latest"
        );
    }

    #[test]
    fn registries_conf_files_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        // No files at all: empty configuration.
        assert_eq!(
            RegistriesConf::load(&p, None).unwrap(),
            RegistriesConf::default()
        );
        write(
            &tmp.path().join("etc/containers/registries.conf"),
            "unqualified-search-registries = [\"a.io\"]\n[[registry]]\nlocation = \"x.io\"\ninsecure = true\n",
        );
        write(
            &tmp.path()
                .join("etc/containers/registries.conf.d/10-b.conf"),
            "[[registry]]\nlocation = \"x.io\"\nblocked = true\n",
        );
        write(
            &tmp.path()
                .join("etc/containers/registries.conf.d/20-c.conf"),
            "unqualified-search-registries = [\"c.io\"]\n",
        );
        write(
            &tmp.path()
                .join("etc/containers/registries.conf.d/ignored.txt"),
            "garbage",
        );
        let conf = RegistriesConf::load(&p, None).unwrap();
        assert_eq!(conf.unqualified_search_registries, vec!["c.io"]);
        assert_eq!(conf.registries.len(), 1);
        assert!(conf.registries[0].blocked && !conf.registries[0].insecure);
        // The user's file replaces the system file (and system drop-ins).
        write(
            &tmp.path().join("home/.config/containers/registries.conf"),
            "unqualified-search-registries = [\"user.io\"]\n",
        );
        let conf = RegistriesConf::load(&p, None).unwrap();
        assert_eq!(conf.unqualified_search_registries, vec!["user.io"]);
        assert!(conf.registries.is_empty());
        // An explicit file must exist.
        let missing = tmp.path().join("missing.conf");
        assert!(RegistriesConf::load(&p, Some(&missing)).is_err());
        // Version 1 is converted; mixed with version 2 it is refused.
        let v1 = RegistriesConf::parse(
            "[registries.search]\nregistries = [\"a.io\", \"b.io\"]\n[registries.insecure]\nregistries = [\"i.io:5000\"]\n[registries.block]\nregistries = [\"bad.io\", \"i.io:5000\"]\n",
            Path::new("v1"),
        )
        .unwrap();
        assert_eq!(v1.unqualified_search_registries, vec!["a.io", "b.io"]);
        let i = v1.find("i.io:5000/x").unwrap();
        assert!(i.insecure && i.blocked);
        assert!(v1.pull_endpoints(&r("bad.io/x:1")).is_err());
        let err = RegistriesConf::parse(
            "unqualified-search-registries = [\"a\"]\n[registries.search]\nregistries = [\"a\"]\n",
            Path::new("mixed"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mixes"), "{err}");
        assert!(RegistriesConf::parse("[[registry]]\ninsecure = true\n", Path::new("t")).is_err());
        let err = RegistriesConf::parse("[[registry]]\nprefix = \"a.io/x\"\n", Path::new("t"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no location"), "{err}");
        assert!(RegistriesConf::parse("[[registry]\n", Path::new("t")).is_err());
    }

    #[test]
    fn cert_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        assert_eq!(certs_d_for(&p, "r.io:5000"), None);
        std::fs::create_dir_all(tmp.path().join("etc/docker/certs.d/r.io:5000")).unwrap();
        assert_eq!(
            certs_d_for(&p, "r.io:5000"),
            Some(tmp.path().join("etc/docker/certs.d/r.io:5000"))
        );
        std::fs::create_dir_all(tmp.path().join("home/.config/containers/certs.d/r.io:5000"))
            .unwrap();
        assert_eq!(
            certs_d_for(&p, "r.io:5000"),
            Some(tmp.path().join("home/.config/containers/certs.d/r.io:5000"))
        );
    }

    #[test]
    fn cert_dir_contents() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_cert_dir(&tmp.path().join("missing"))
            .unwrap()
            .ca_pems
            .is_empty());
        std::fs::write(tmp.path().join("b.crt"), "B").unwrap();
        std::fs::write(tmp.path().join("a.crt"), "A").unwrap();
        std::fs::write(tmp.path().join("c.cert"), "CERT").unwrap();
        std::fs::write(tmp.path().join("c.key"), "KEY").unwrap();
        std::fs::write(tmp.path().join("README"), "ignored").unwrap();
        let f = read_cert_dir(tmp.path()).unwrap();
        let cas: Vec<&[u8]> = f.ca_pems.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(cas, vec![b"A".as_slice(), b"B".as_slice()]);
        assert_eq!(f.identity_pem.unwrap().1, b"CERT\nKEY");
        std::fs::write(tmp.path().join("d.key"), "KEY").unwrap();
        let err = read_cert_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("d.cert"), "{err}");
    }
}
