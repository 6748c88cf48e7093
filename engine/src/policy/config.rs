//! Reading `policy.json` (containers-policy.json(5)) into a [`Policy`].
//!
//! 1. The file is found: an explicit path (`--policy`), else `$HOME/.config/containers/policy.json`
//!    when it exists, else `/etc/containers/policy.json` ([`PolicyPaths`]). None of them: an
//!    error that says so and names `--insecure-policy`, as skopeo refuses to run without one.
//! 2. The JSON is read strictly, as containers/image does: unknown fields, a missing
//!    `default`, an empty requirement list, a requirement of unknown `type`, or a requirement
//!    that names its keys twice or not at all are errors naming the place in the file.
//! 3. Keys are not read yet: a `keyPath` is opened only when its requirement is evaluated, so
//!    a policy whose scopes never apply to the image does not need every key file to exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::reference::Reference;

/// A parsed `policy.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Where it was read from (for messages).
    pub source: String,
    /// The requirements for images no transport scope matches.
    pub default: Vec<Requirement>,
    /// Per transport name (`docker`, `oci`, `containers-storage`, …), per scope (`""` is the
    /// transport's own default).
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One policy requirement (an element of a requirement list; all must accept an image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `signedBy`: GPG simple signing.
    SignedBy {
        /// `keyType` (`GPGKeys` or `signedByGPGKeys`).
        key_type: String,
        /// Where the keys come from.
        keys: KeySource,
        /// Which signed identities are accepted.
        signed_identity: SignedIdentity,
    },
    /// `signedBaseLayer` (containers/image does not implement it either: always refused).
    SignedBaseLayer {
        /// `baseLayerIdentity`.
        base_layer_identity: SignedIdentity,
    },
    /// `sigstoreSigned`: cosign-style signatures.
    SigstoreSigned {
        /// The public keys, or the certificate-based trust root stowage does not implement.
        keys: KeySource,
        /// Whether a Rekor public key was given (stowage cannot check Rekor SETs).
        rekor: bool,
        /// Which signed identities are accepted.
        signed_identity: SignedIdentity,
    },
}

impl Requirement {
    /// The requirement's `type` as written in policy.json.
    pub fn type_name(&self) -> &'static str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SignedBy { .. } => "signedBy",
            Requirement::SignedBaseLayer { .. } => "signedBaseLayer",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
        }
    }
}

/// Where a requirement's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `keyPath` / `keyPaths`: files.
    Paths(Vec<PathBuf>),
    /// `keyData` / `keyDatas`: the key bytes (base64 in the file).
    Data(Vec<Vec<u8>>),
    /// `fulcio` (certificates from a Fulcio CA).
    Fulcio,
    /// `pki` (certificates from an X.509 CA).
    Pki,
}

/// `signedIdentity`: which docker reference in a signature is accepted for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    /// `matchExact`: the image's reference, tag included, exactly.
    MatchExact,
    /// `matchRepoDigestOrExact` (the default): exact for a tagged image; the same repository
    /// for an image named by digest.
    MatchRepoDigestOrExact,
    /// `matchRepository`: the same repository, any tag.
    MatchRepository,
    /// `exactReference`: this reference (with tag or digest), whatever the image is called.
    ExactReference(Reference),
    /// `exactRepository`: this repository, any tag.
    ExactRepository(Reference),
    /// `remapIdentity`: the image's name with `prefix` replaced by `signed_prefix`, then as
    /// `matchRepoDigestOrExact`.
    RemapIdentity {
        /// The prefix of the image's name to replace.
        prefix: String,
        /// What the signature names instead.
        signed_prefix: String,
    },
}

/// Where policy.json is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPaths {
    /// `$HOME` (for `~/.config/containers/policy.json`).
    pub home: Option<PathBuf>,
    /// The system file, `/etc/containers/policy.json`.
    pub system: PathBuf,
}

impl PolicyPaths {
    /// The real locations (`$HOME`, `/etc/containers/policy.json`).
    pub fn from_env() -> Self {
        PolicyPaths {
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            system: PathBuf::from(super::SYSTEM_POLICY_PATH),
        }
    }

    /// The user's file, `$HOME/.config/containers/policy.json`.
    pub fn user(&self) -> Option<PathBuf> {
        self.home
            .as_ref()
            .map(|h| h.join(".config/containers/policy.json"))
    }

    /// The file containers/image would read: the user's when it exists, else the system's.
    pub fn find(&self) -> Result<PathBuf> {
        if let Some(u) = self.user().filter(|u| u.exists()) {
            return Ok(u);
        }
        if self.system.exists() {
            return Ok(self.system.clone());
        }
        let mut places: Vec<String> = self
            .user()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        places.push(self.system.display().to_string());
        Err(Error::Policy {
            path: places.join(", "),
            reason: "no policy.json file found; create one (for example \
                     {\"default\":[{\"type\":\"insecureAcceptAnything\"}]} to accept any image, as \
                     Debian's containers-common ships), name one with --policy FILE, or pass \
                     --insecure-policy to skip signature checks"
                .into(),
        })
    }
}

impl Policy {
    /// Read and parse the policy at `path`.
    pub fn load(path: &Path) -> Result<Policy> {
        log::info!("signature policy {}", path.display());
        let bytes = std::fs::read(path).map_err(|e| Error::Policy {
            path: path.display().to_string(),
            reason: format!("cannot read the signature policy: {e}"),
        })?;
        Policy::parse(&bytes, &path.display().to_string())
    }

    /// Parse policy.json bytes; `source` names them in messages.
    pub fn parse(bytes: &[u8], source: &str) -> Result<Policy> {
        let fail = |reason: String| Error::Policy {
            path: source.to_string(),
            reason: format!("invalid policy: {reason}"),
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| fail(e.to_string()))?;
        let top = object(&value, "the policy").map_err(&fail)?;
        only_fields(top, &["default", "transports"], "the policy").map_err(&fail)?;
        let default = match top.get("default") {
            Some(d) => requirements(d, "default").map_err(&fail)?,
            None => return Err(fail("\"default\" is missing".into())),
        };
        let mut transports = BTreeMap::new();
        if let Some(t) = top.get("transports") {
            if !t.is_null() {
                for (name, scopes) in object(t, "transports").map_err(&fail)? {
                    let mut out = BTreeMap::new();
                    let what = format!("transports.{name}");
                    for (scope, reqs) in object(scopes, &what).map_err(&fail)? {
                        validate_scope(name, scope).map_err(&fail)?;
                        let what = format!("transports.{name}.{scope:?}");
                        out.insert(scope.clone(), requirements(reqs, &what).map_err(&fail)?);
                    }
                    transports.insert(name.clone(), out);
                }
            }
        }
        Ok(Policy {
            source: source.to_string(),
            default,
            transports,
        })
    }
}

fn object<'a>(v: &'a Value, what: &str) -> std::result::Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))
}

fn only_fields(
    o: &Map<String, Value>,
    allowed: &[&str],
    what: &str,
) -> std::result::Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what}: unknown field {k:?} (expected {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn string<'a>(
    o: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> std::result::Result<Option<&'a str>, String> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{what}: {key:?} must be a string")),
    }
}

fn strings(
    o: &Map<String, Value>,
    key: &str,
    what: &str,
) -> std::result::Result<Option<Vec<String>>, String> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => {
            if a.is_empty() {
                return Err(format!("{what}: {key:?} contains no entries"));
            }
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{what}: {key:?} must be a list of strings"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Some)
        }
        Some(_) => Err(format!("{what}: {key:?} must be a list of strings")),
    }
}

fn base64_data(s: &str, what: &str) -> std::result::Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("{what}: key data is not valid base64: {e}"))
}

/// Scope syntax per transport, as containers/image validates it (unknown transports are not
/// checked: a newer policy may name transports this build does not know).
fn validate_scope(transport: &str, scope: &str) -> std::result::Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| {
        Err(format!(
            "transports.{transport}: invalid scope {scope:?}: {why}"
        ))
    };
    match transport {
        "oci" | "oci-archive" | "dir" => {
            let path = scope;
            if !path.starts_with('/') {
                return bad("must be an absolute path");
            }
            if path == "/" {
                return bad("\"/\" is not allowed; use the transport's \"\" scope");
            }
            if path != crate::policy::scope::clean_path(path) {
                return bad(
                    "the path must be clean (no trailing \"/\", \".\" or \"..\" components)",
                );
            }
            Ok(())
        }
        "containers-storage" => {
            if scope.starts_with('[') && !scope.contains(']') {
                return bad("an unterminated [store] specifier");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn requirements(v: &Value, what: &str) -> std::result::Result<Vec<Requirement>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("{what} must be a list of requirements"))?;
    if list.is_empty() {
        return Err(format!(
            "{what}: the list of requirements must not be empty (use [{{\"type\":\"reject\"}}] to refuse everything)"
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, r)| requirement(r, &format!("{what}[{i}]")))
        .collect()
}

fn requirement(v: &Value, what: &str) -> std::result::Result<Requirement, String> {
    let o = object(v, what)?;
    let ty = string(o, "type", what)?.ok_or_else(|| format!("{what}: \"type\" is missing"))?;
    match ty {
        "insecureAcceptAnything" => {
            only_fields(o, &["type"], what)?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            only_fields(o, &["type"], what)?;
            Ok(Requirement::Reject)
        }
        "signedBy" => {
            only_fields(o, &["type", "keyType", "keyPath", "keyPaths", "keyData", "signedIdentity"], what)?;
            let key_type = string(o, "keyType", what)?
                .ok_or_else(|| format!("{what}: \"keyType\" is missing"))?;
            if key_type != "GPGKeys" && key_type != "signedByGPGKeys" {
                return Err(format!("{what}: invalid keyType {key_type:?} (expected \"GPGKeys\")"));
            }
            let mut sources = key_sources(o, what)?;
            if sources.len() != 1 {
                return Err(format!("{what}: exactly one of keyPath, keyPaths and keyData must be specified"));
            }
            Ok(Requirement::SignedBy {
                key_type: key_type.to_string(),
                keys: sources.pop().unwrap(),
                signed_identity: signed_identity(o.get("signedIdentity"), what)?,
            })
        }
        "signedBaseLayer" => {
            only_fields(o, &["type", "baseLayerIdentity"], what)?;
            let id = o
                .get("baseLayerIdentity")
                .ok_or_else(|| format!("{what}: \"baseLayerIdentity\" is missing"))?;
            Ok(Requirement::SignedBaseLayer {
                base_layer_identity: signed_identity(Some(id), what)?,
            })
        }
        "sigstoreSigned" => {
            only_fields(
                o,
                &[
                    "type", "keyPath", "keyPaths", "keyData", "keyDatas", "fulcio", "pki",
                    "rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData",
                    "rekorPublicKeyDatas", "signedIdentity",
                ],
                what,
            )?;
            let mut sources = key_sources(o, what)?;
            if let Some(ds) = strings(o, "keyDatas", what)? {
                sources.push(KeySource::Data(
                    ds.iter().map(|d| base64_data(d, what)).collect::<std::result::Result<_, _>>()?,
                ));
            }
            if o.contains_key("fulcio") {
                sources.push(KeySource::Fulcio);
            }
            if o.contains_key("pki") {
                sources.push(KeySource::Pki);
            }
            if sources.len() != 1 {
                return Err(format!(
                    "{what}: exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be specified"
                ));
            }
            let rekor = ["rekorPublicKeyPath", "rekorPublicKeyPaths", "rekorPublicKeyData", "rekorPublicKeyDatas"]
                .iter()
                .filter(|k| o.contains_key(**k))
                .count();
            if rekor > 1 {
                return Err(format!("{what}: at most one of rekorPublicKeyPath, rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas can be used"));
            }
            let keys = sources.pop().unwrap();
            if keys == KeySource::Fulcio && rekor == 0 {
                return Err(format!("{what}: a Rekor public key must be specified when fulcio is used"));
            }
            if keys == KeySource::Pki && rekor > 0 {
                return Err(format!("{what}: Rekor public keys are not supported with pki"));
            }
            Ok(Requirement::SigstoreSigned {
                keys,
                rekor: rekor > 0,
                signed_identity: signed_identity(o.get("signedIdentity"), what)?,
            })
        }
        other => Err(format!(
            "{what}: unknown requirement type {other:?} (expected insecureAcceptAnything, reject, signedBy, sigstoreSigned or signedBaseLayer)"
        )),
    }
}

/// The keys `keyPath`, `keyPaths` and `keyData` name, one source each that is present
/// (signedBy and sigstoreSigned both take them; each then checks that exactly one is given).
fn key_sources(o: &Map<String, Value>, what: &str) -> std::result::Result<Vec<KeySource>, String> {
    let mut sources = Vec::new();
    if let Some(p) = string(o, "keyPath", what)? {
        sources.push(KeySource::Paths(vec![PathBuf::from(p)]));
    }
    if let Some(p) = strings(o, "keyPaths", what)? {
        sources.push(KeySource::Paths(p.into_iter().map(PathBuf::from).collect()));
    }
    if let Some(d) = string(o, "keyData", what)? {
        sources.push(KeySource::Data(vec![base64_data(d, what)?]));
    }
    Ok(sources)
}

fn signed_identity(v: Option<&Value>, what: &str) -> std::result::Result<SignedIdentity, String> {
    let Some(v) = v else {
        return Ok(SignedIdentity::MatchRepoDigestOrExact);
    };
    let what = format!("{what}.signedIdentity");
    let o = object(v, &what)?;
    let ty = string(o, "type", &what)?.ok_or_else(|| format!("{what}: \"type\" is missing"))?;
    let reference = |key: &str| -> std::result::Result<Reference, String> {
        let s = string(o, key, &what)?.ok_or_else(|| format!("{what}: {key:?} is missing"))?;
        Reference::parse(s).map_err(|e| format!("{what}: invalid {key} {s:?}: {e}"))
    };
    match ty {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => {
            only_fields(o, &["type"], &what)?;
            Ok(match ty {
                "matchExact" => SignedIdentity::MatchExact,
                "matchRepository" => SignedIdentity::MatchRepository,
                _ => SignedIdentity::MatchRepoDigestOrExact,
            })
        }
        "exactReference" => {
            only_fields(o, &["type", "dockerReference"], &what)?;
            let r = reference("dockerReference")?;
            if r.is_name_only() {
                return Err(format!("{what}: dockerReference {r} contains neither a tag nor a digest"));
            }
            Ok(SignedIdentity::ExactReference(r))
        }
        "exactRepository" => {
            only_fields(o, &["type", "dockerRepository"], &what)?;
            Ok(SignedIdentity::ExactRepository(reference("dockerRepository")?))
        }
        "remapIdentity" => {
            only_fields(o, &["type", "prefix", "signedPrefix"], &what)?;
            let prefix = string(o, "prefix", &what)?.ok_or_else(|| format!("{what}: \"prefix\" is missing"))?;
            let signed = string(o, "signedPrefix", &what)?
                .ok_or_else(|| format!("{what}: \"signedPrefix\" is missing"))?;
            for p in [prefix, signed] {
                if !valid_prefix(p) {
                    return Err(format!("{what}: prefix {p:?} is not valid (a host, host/namespace or full repository name, without tag or digest)"));
                }
            }
            Ok(SignedIdentity::RemapIdentity {
                prefix: prefix.to_string(),
                signed_prefix: signed.to_string(),
            })
        }
        other => Err(format!(
            "{what}: unknown identity match type {other:?} (expected matchExact, matchRepoDigestOrExact, matchRepository, exactReference, exactRepository or remapIdentity)"
        )),
    }
}

/// A `remapIdentity` prefix: a host[:port] alone, or a repository name without tag/digest
/// that is already in normalised form (`docker.io/library/x`, not `x`).
fn valid_prefix(p: &str) -> bool {
    if !p.contains('/') {
        return !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    }
    match Reference::parse(p) {
        Ok(r) => r.is_name_only() && r.name() == p,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> std::result::Result<Policy, String> {
        Policy::parse(s.as_bytes(), "test.json").map_err(|e| e.to_string())
    }

    #[test]
    fn scopes_and_requirements() {
        let p = parse(
            r#"{"default":[{"type":"reject"}],
                "transports":{"docker":{"127.0.0.1:5000/a":[{"type":"sigstoreSigned","keyPath":"/k.pub","signedIdentity":{"type":"matchRepository"}}],
                                        "":[{"type":"insecureAcceptAnything"}]},
                              "oci":{"/srv/x":[{"type":"reject"}]}}}"#,
        )
        .unwrap();
        assert_eq!(p.default, vec![Requirement::Reject]);
        assert_eq!(
            p.transports["docker"]["127.0.0.1:5000/a"],
            vec![Requirement::SigstoreSigned {
                keys: KeySource::Paths(vec!["/k.pub".into()]),
                rekor: false,
                signed_identity: SignedIdentity::MatchRepository
            }]
        );
    }

    #[test]
    fn strict_like_containers_image() {
        for (text, needle) in [
            (r#"{}"#, "\"default\" is missing"),
            (r#"{"default":[]}"#, "must not be empty"),
            (
                r#"{"default":[{"type":"reject","x":1}]}"#,
                "unknown field \"x\"",
            ),
            (
                r#"{"default":[{"type":"nope"}]}"#,
                "unknown requirement type",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned"}]}"#,
                "exactly one of keyPath",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","keyData":"AA=="}]}"#,
                "exactly one of keyPath",
            ),
            (
                r#"{"default":[{"type":"signedBy","keyPath":"/a"}]}"#,
                "\"keyType\" is missing",
            ),
            (
                r#"{"default":[{"type":"reject"}],"transports":{"oci":{"rel/dir":[{"type":"reject"}]}}}"#,
                "absolute path",
            ),
            (
                r#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","signedIdentity":{"type":"exactReference","dockerReference":"quay.io/x"}}]}"#,
                "neither a tag nor a digest",
            ),
            (
                r#"{"default":[{"type":"reject"}], "extra": 1}"#,
                "unknown field \"extra\"",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains(needle) && err.contains("test.json"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn missing_file_names_the_places_and_the_flag() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = PolicyPaths {
            home: Some(tmp.path().join("home")),
            system: tmp.path().join("etc/policy.json"),
        };
        let err = paths.find().unwrap_err().to_string();
        assert!(
            err.contains("no policy.json file found") && err.contains("--insecure-policy"),
            "{err}"
        );
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(&paths.system, "{}").unwrap();
        assert_eq!(paths.find().unwrap(), paths.system);
        let user = paths.user().unwrap();
        std::fs::create_dir_all(user.parent().unwrap()).unwrap();
        std::fs::write(&user, "{}").unwrap();
        assert_eq!(paths.find().unwrap(), user, "the user's file wins");
    }
}
