//! registries.d (containers-registries.d(5)): per-registry signature storage settings.
//!
//! 1. The directory is `--registries.d DIR`, else `$HOME/.config/containers/registries.d` when
//!    it exists, else `/etc/containers/registries.d`; a missing directory means no settings.
//! 2. Every `*.yaml` file in it is read (in name order) and merged: `default-docker` may be
//!    defined in one file only, and each `docker:` namespace key likewise.
//! 3. For an image, the `docker:` entry for its most specific scope that sets a value wins
//!    (identity, then repository, parent namespaces, host, `*.domain` wildcards), then
//!    `default-docker`. stowage uses `use-sigstore-attachments` (read and write sigstore
//!    signatures as `sha256-<hex>.sig` tags) and reports `lookaside` URLs (GPG simple-signing
//!    signature storage) to explain why signedBy cannot be checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::HostPaths;
use crate::error::{Error, Result};
use crate::reference::Reference;

/// One `default-docker` or `docker:` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceConf {
    /// `lookaside` (or the deprecated `sigstore`): where simple-signing signatures are read.
    pub lookaside: Option<String>,
    /// `lookaside-staging` (or `sigstore-staging`): where they are written.
    pub lookaside_staging: Option<String>,
    /// `use-sigstore-attachments`.
    pub use_sigstore_attachments: Option<bool>,
}

/// The merged registries.d configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesD {
    /// `default-docker`.
    pub default_docker: Option<NamespaceConf>,
    /// `docker:` entries by scope.
    pub docker: BTreeMap<String, NamespaceConf>,
}

impl RegistriesD {
    /// The directory containers/image would read (see the module docs).
    pub fn dir(explicit: Option<&Path>, host: &HostPaths) -> PathBuf {
        if let Some(d) = explicit {
            return d.to_path_buf();
        }
        if let Some(home) = &host.home {
            let user = home.join(".config/containers/registries.d");
            if user.exists() {
                return user;
            }
        }
        host.etc_containers.join("registries.d")
    }

    /// Read and merge every `*.yaml` file of `dir` (none, or no directory: empty settings).
    pub fn load(dir: &Path) -> Result<RegistriesD> {
        let mut out = RegistriesD::default();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(out);
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let mut default_from: Option<PathBuf> = None;
        let mut ns_from: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| Error::io_path("reading", &file, e))?;
            let bad = |reason: String| Error::Malformed {
                what: format!("registries.d file {}", file.display()),
                reason,
            };
            let docs = YamlLoader::load_from_str(&text).map_err(|e| bad(e.to_string()))?;
            let Some(doc) = docs.into_iter().next() else {
                continue;
            };
            if doc.is_null() {
                continue;
            }
            let top = doc
                .as_hash()
                .ok_or_else(|| bad("expected a mapping".into()))?;
            for (k, v) in top {
                match k.as_str() {
                    Some("default-docker") => {
                        if let Some(prev) = &default_from {
                            return Err(bad(format!(
                                "\"default-docker\" is also defined in {}",
                                prev.display()
                            )));
                        }
                        default_from = Some(file.clone());
                        out.default_docker = Some(namespace(v).map_err(&bad)?);
                    }
                    Some("docker") => {
                        if v.is_null() {
                            continue;
                        }
                        let map = v
                            .as_hash()
                            .ok_or_else(|| bad("\"docker\" must be a mapping".into()))?;
                        for (name, conf) in map {
                            let name = name
                                .as_str()
                                .ok_or_else(|| bad("\"docker\" keys must be strings".into()))?
                                .to_string();
                            if let Some(prev) = ns_from.get(&name) {
                                return Err(bad(format!(
                                    "docker namespace {name:?} is also defined in {}",
                                    prev.display()
                                )));
                            }
                            ns_from.insert(name.clone(), file.clone());
                            out.docker.insert(name, namespace(conf).map_err(&bad)?);
                        }
                    }
                    Some(other) => {
                        return Err(bad(format!(
                            "unknown key {other:?} (expected default-docker, docker)"
                        )))
                    }
                    None => return Err(bad("keys must be strings".into())),
                }
            }
        }
        Ok(out)
    }

    /// The first value `get` finds for `reference`: its `docker:` scopes, then `default-docker`.
    fn lookup<T>(
        &self,
        reference: &Reference,
        get: impl Fn(&NamespaceConf) -> Option<T>,
    ) -> Option<T> {
        crate::policy::scope::docker_scopes(reference)
            .iter()
            .filter_map(|s| self.docker.get(s))
            .chain(self.default_docker.iter())
            .find_map(get)
    }

    /// Whether sigstore signatures of `reference` are read from and written to its registry.
    pub fn use_sigstore_attachments(&self, reference: &Reference) -> bool {
        self.lookup(reference, |n| n.use_sigstore_attachments)
            .unwrap_or(false)
    }

    /// The lookaside (simple-signing) URL configured for `reference`, if any.
    pub fn lookaside(&self, reference: &Reference) -> Option<String> {
        self.lookup(reference, |n| n.lookaside.clone())
    }
}

fn namespace(v: &Yaml) -> std::result::Result<NamespaceConf, String> {
    let mut out = NamespaceConf::default();
    if v.is_null() {
        return Ok(out);
    }
    let map = v.as_hash().ok_or("a namespace entry must be a mapping")?;
    for (k, val) in map {
        let key = k.as_str().ok_or("keys must be strings")?;
        let string = || {
            val.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{key:?} must be a string"))
        };
        match key {
            "lookaside" | "sigstore" => {
                if out.lookaside.is_none() || key == "lookaside" {
                    out.lookaside = Some(string()?);
                }
            }
            "lookaside-staging" | "sigstore-staging" => {
                if out.lookaside_staging.is_none() || key == "lookaside-staging" {
                    out.lookaside_staging = Some(string()?);
                }
            }
            "use-sigstore-attachments" => {
                out.use_sigstore_attachments =
                    Some(val.as_bool().ok_or("\"use-sigstore-attachments\" must be true or false")?)
            }
            other => {
                return Err(format!(
                    "unknown key {other:?} (expected lookaside, lookaside-staging, sigstore, sigstore-staging, use-sigstore-attachments)"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_scope_wins_then_default() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("a.yaml"),
            "default-docker:\n  use-sigstore-attachments: true\n  lookaside: file:///var/lib/sigs\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("b.yaml"),
            "docker:\n  127.0.0.1:5000/off:\n    use-sigstore-attachments: false\n  127.0.0.1:5000/off/on:\n    lookaside: https://sigs.example.com\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("ignored.conf"), "not: [yaml").unwrap();
        let d = RegistriesD::load(tmp.path()).unwrap();
        let r = |s: &str| Reference::parse(s).unwrap();
        assert!(d.use_sigstore_attachments(&r("quay.io/x:1")));
        assert!(!d.use_sigstore_attachments(&r("127.0.0.1:5000/off/x:1")));
        assert!(
            !d.use_sigstore_attachments(&r("127.0.0.1:5000/off/on:1")),
            "an entry without the key defers to the next scope"
        );
        assert_eq!(
            d.lookaside(&r("127.0.0.1:5000/off/on:1")).as_deref(),
            Some("https://sigs.example.com")
        );
        std::fs::write(
            tmp.path().join("c.yaml"),
            "default-docker:\n  lookaside: x\n",
        )
        .unwrap();
        let err = RegistriesD::load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("c.yaml") && err.contains("also defined in"),
            "{err}"
        );
        assert_eq!(
            RegistriesD::load(&tmp.path().join("none")).unwrap(),
            RegistriesD::default()
        );
    }
}
