//! registries.conf: which registry a name really lives on, its mirrors, whether it is
//! blocked or insecure, and the registries short names are searched in.
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
//! The TOML is parsed with the `toml` crate; the lookup rules are containers/image's and are
//! written out here because no Rust crate implements them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::host_paths::HostPaths;
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;

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

/// One place a pull or push of an image goes, after registries.conf's rewriting: a registry
/// host and the repository path there, either a mirror or the image's own location. (Not to
/// be confused with [`crate::endpoint`], which names a whole store of any transport.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryLocation {
    /// `host[:port]`.
    pub registry: String,
    /// The repository path on that registry.
    pub repo: String,
    /// registries.conf marks it insecure.
    pub insecure: bool,
    /// It is a mirror (not the image's own location).
    pub mirror: bool,
}

impl RegistryLocation {
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
            Ok(text) => {
                log::info!("reading registries.conf {}", main.display());
                conf.merge(parse_conf(&text, &main)?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
                log::debug!("no registries.conf at {}", main.display());
            }
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
                log::info!("reading registries.conf drop-in {}", f.display());
                let text = std::fs::read_to_string(&f).at("reading registries.conf drop-in", &f)?;
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
    pub fn pull_endpoints(&self, reference: &Reference) -> Result<Vec<RegistryLocation>> {
        let name = reference.name();
        let Some(entry) = self.find(&name) else {
            return Ok(vec![RegistryLocation {
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
    pub fn push_endpoint(&self, reference: &Reference) -> Result<RegistryLocation> {
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
    let file: ConfFile = toml::from_str(text).map_err(|e| Error::Config {
        what: format!("registries.conf {}", what.display()),
        reason: e.to_string(),
    })?;
    let mut file = file;
    if let Some(v1) = file.v1_registries.take() {
        // Version 1, as containers/image converts it: search → unqualified-search-registries,
        // insecure and block → [[registry]] entries. Mixing it with version 2 is an error.
        if file.unqualified_search_registries.is_some() || !file.registries.is_empty() {
            return Err(Error::Config {
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
            return Err(Error::Config {
                what: format!("registries.conf {}", what.display()),
                reason: "a [[registry]] has neither prefix nor location".into(),
            });
        }
        if let Some(p) = &r.prefix {
            if r.location.is_none() && !p.starts_with("*.") {
                return Err(Error::Config {
                    what: format!("registries.conf {}", what.display()),
                    reason: format!(
                        "[[registry]] prefix {p:?} has no location (only *.domain prefixes may omit it)"
                    ),
                });
            }
            if p.starts_with("*.") && r.location.is_some() {
                return Err(Error::Config {
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
) -> Result<RegistryLocation> {
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
    let (registry, repo) = full.split_once('/').ok_or_else(|| Error::Config {
        what: format!("registries.conf entry for {prefix}"),
        reason: format!("{name} rewritten with location {location:?} has no repository path"),
    })?;
    Ok(RegistryLocation {
        registry: registry.to_string(),
        repo: repo.to_string(),
        insecure,
        mirror,
    })
}

#[cfg(test)]
mod tests {
    use super::super::host_paths::test_support::{paths, write};
    use super::*;

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
        let names: Vec<String> = eps.iter().map(RegistryLocation::name).collect();
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
}
