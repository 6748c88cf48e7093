//! Registry operations besides copying: logging in and out, as podman does, and deleting a
//! manifest, as `skopeo delete` does. (Listing tags is [`RegistrySource::tags`].)
//!
//! 1. [`login`] checks the credentials against the registry first: `GET /v2/` with them
//!    (Basic), or a token for an empty scope from the token server the registry's challenge
//!    names, then `GET /v2/` with that token (Bearer). A registry that asks for no
//!    authentication accepts any credentials. Only then is the entry written.
//! 2. The auth file written ([`auth_file_to_write`]) is the first one podman reads:
//!    `--authfile`, else `REGISTRY_AUTH_FILE`, else `${XDG_RUNTIME_DIR}/containers/auth.json`
//!    (`/run/containers/UID/auth.json` without `XDG_RUNTIME_DIR`). The entry is
//!    `auths[KEY] = {"auth": base64("user:password")}`, KEY being the registry (or
//!    `host/namespace`) as given, without `https://` or a trailing `/`; every other key of the
//!    file is kept. The file is replaced atomically (a temporary file renamed over it), mode
//!    0600, its directory created 0700.
//! 3. [`logout`] removes the entry (or, with `all`, every `auths` entry); an entry that is not
//!    there is an error, as for podman.
//! 4. [`delete_image`] resolves a tag to the manifest digest (`HEAD`, else `GET`, of the
//!    manifest), then sends `DELETE /v2/REPO/manifests/DIGEST` with a token for the
//!    repository's `*` actions; every tag of that manifest goes with it, as with skopeo.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::{Method, StatusCode};

use super::auth::Credentials;
use super::client::RegistryClient;
use super::host_paths::HostPaths;
use super::registries_conf::RegistryLocation;
use super::source::MANIFEST_ACCEPT;
use super::RegistryOptions;
use crate::digest::{sha256_of, Digest};
use crate::error::{Error, IoContext, Result};
use crate::reference::Reference;

/// The auth file `login` and `logout` change (see the module overview, step 2).
pub fn auth_file_to_write(host: &HostPaths, authfile: Option<&Path>) -> PathBuf {
    host.auth_files(authfile)
        .into_iter()
        .next()
        .map(|(p, _)| p)
        .expect("auth_files always names at least one file")
}

/// The auth.json key for a registry as the user wrote it: `https://` and a trailing `/` cut.
pub fn auth_key(registry: &str) -> Result<String> {
    let key = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry)
        .trim_end_matches('/');
    if key.is_empty() || key.contains(['@', ' ']) || key.contains("://") {
        return Err(Error::InvalidReference {
            input: registry.to_string(),
            reason: "expected a registry host (HOST[:PORT]) or HOST[:PORT]/NAMESPACE".into(),
        });
    }
    Ok(key.to_string())
}

/// The registry host of an auth key (`host/ns` → `host`).
fn host_of(key: &str) -> &str {
    key.split('/').next().unwrap_or(key)
}

fn location(key: &str, options: &RegistryOptions) -> Result<RegistryLocation> {
    let host = host_of(key);
    // registries.conf's `insecure` for the host applies as for a pull of an image there.
    let probe = Reference::parse(&format!("{host}/stowage-login-probe"))?;
    let insecure = options
        .push_endpoint(&probe)
        .map(|l| l.insecure)
        .unwrap_or(false);
    Ok(RegistryLocation {
        registry: host.to_string(),
        repo: key
            .split_once('/')
            .map(|(_, r)| r.to_string())
            .unwrap_or_default(),
        insecure,
        mirror: false,
    })
}

/// Check `credentials` against the registry of `key` (step 1 of the module overview).
pub fn verify_credentials(
    key: &str,
    credentials: &Credentials,
    options: &RegistryOptions,
) -> Result<()> {
    let loc = location(key, options)?;
    let mut settings = options.client_settings(&loc)?;
    settings.credentials = Some(credentials.clone());
    let client = RegistryClient::new(&loc.registry, settings)?;
    let what = format!("logging in to {}", loc.registry);
    client.block_on(async {
        let url = client.url("").await?;
        let resp = client
            .send(Method::GET, url, HeaderMap::new(), "", &what)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::UNAUTHORIZED => Err(Error::Unauthorized {
                what: what.clone(),
                reason: format!(
                    "the registry refused the credentials of user {:?}",
                    credentials.username
                ),
                hint: "check the user name and password".into(),
            }),
            _ => Err(client.error_from(resp, &what).await),
        }
    })
}

/// What an auth.json holds, kept as JSON so keys stowage does not know survive.
fn read_auth_json(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Default::default()),
        Ok(b) => match serde_json::from_slice::<serde_json::Value>(&b) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Err(Error::Malformed {
                what: format!("auth file {}", path.display()),
                reason: "not a JSON object; fix or remove the file".into(),
            }),
            Err(e) => Err(Error::Malformed {
                what: format!("auth file {}", path.display()),
                reason: format!("{e}; fix or remove the file"),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(Error::io_path("reading auth file", path, e)),
    }
}

/// Replace `path` with `doc` atomically, mode 0600, creating its directory (0700).
fn write_auth_json(path: &Path, doc: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at("creating the auth file's directory", dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).at("creating a temporary file in", dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .at("setting the mode of a temporary file in", dir)?;
    let mut bytes = serde_json::to_vec_pretty(doc).expect("JSON values serialize");
    bytes.push(b'\n');
    tmp.write_all(&bytes)
        .at("writing a temporary file in", dir)?;
    tmp.as_file()
        .sync_all()
        .at("syncing a temporary file in", dir)?;
    tmp.persist(path)
        .map_err(|e| Error::io_path("replacing auth file", path, e.error))?;
    Ok(())
}

/// `stowage login`: verify `credentials` for `registry` and store them in the auth file;
/// returns the file written.
pub fn login(
    registry: &str,
    credentials: &Credentials,
    options: &RegistryOptions,
) -> Result<PathBuf> {
    let key = auth_key(registry)?;
    verify_credentials(&key, credentials, options)?;
    let path = auth_file_to_write(&options.host, options.authfile.as_deref());
    let mut doc = read_auth_json(&path)?;
    let auths = doc
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let Some(auths) = auths.as_object_mut() else {
        return Err(Error::Malformed {
            what: format!("auth file {}", path.display()),
            reason: "\"auths\" is not an object; fix or remove the file".into(),
        });
    };
    let auth = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.username, credentials.password));
    auths.insert(key, serde_json::json!({ "auth": auth }));
    write_auth_json(&path, &doc)?;
    Ok(path)
}

/// What [`logout`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedOut {
    /// The auth file changed.
    pub file: PathBuf,
    /// The keys removed.
    pub keys: Vec<String>,
}

/// `stowage logout`: remove the entry for `registry` (every entry with `registry = None`)
/// from the auth file.
pub fn logout(
    registry: Option<&str>,
    host: &HostPaths,
    authfile: Option<&Path>,
) -> Result<LoggedOut> {
    let path = auth_file_to_write(host, authfile);
    let mut doc = read_auth_json(&path)?;
    let auths = doc.get_mut("auths").and_then(|a| a.as_object_mut());
    let keys = match (registry, auths) {
        (None, Some(auths)) => {
            let keys: Vec<String> = auths.keys().cloned().collect();
            auths.clear();
            keys
        }
        (None, None) => Vec::new(),
        (Some(r), auths) => {
            let key = auth_key(r)?;
            match auths.and_then(|a| a.remove(&key).map(|_| ())) {
                Some(()) => vec![key],
                None => {
                    return Err(Error::NotFound {
                        what: format!("credentials for {key} in {}", path.display()),
                        hint: format!("not logged into {key}; `stowage login {key}` stores them"),
                    })
                }
            }
        }
    };
    if !keys.is_empty() {
        write_auth_json(&path, &doc)?;
    }
    Ok(LoggedOut { file: path, keys })
}

/// `stowage delete docker://REF`: delete the manifest `reference` names (by digest, or the one
/// its tag points at) from its registry. Returns the digest deleted.
pub fn delete_image(reference: &Reference, options: &RegistryOptions) -> Result<Digest> {
    let loc = options.push_endpoint(reference)?;
    let client = RegistryClient::new(&loc.registry, options.client_settings(&loc)?)?;
    let scope = format!("repository:{}:*", loc.repo);
    let what = format!("deleting {}", reference);
    client.block_on(async {
        let digest = match reference.digest() {
            Some(d) => d.clone(),
            None => {
                let tag = reference.tag().unwrap_or(crate::reference::DEFAULT_TAG);
                let url = client.url(&format!("{}/manifests/{tag}", loc.repo)).await?;
                let mut headers = HeaderMap::new();
                headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
                let resp = client
                    .send(Method::HEAD, url.clone(), headers.clone(), &scope, &what)
                    .await?;
                let from_header = resp
                    .headers()
                    .get("Docker-Content-Digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| crate::digest::parse_digest(v).ok());
                match (resp.status(), from_header) {
                    (s, Some(d)) if s.is_success() => d,
                    (StatusCode::NOT_FOUND, _) => {
                        return Err(Error::NotFound {
                            what: format!("manifest {tag} of {}", loc.name()),
                            hint: format!(
                                "`stowage list-tags docker://{}` lists the tags",
                                reference.name()
                            ),
                        })
                    }
                    _ => {
                        let (body, _) = client
                            .get_small(
                                url,
                                Some(MANIFEST_ACCEPT),
                                &scope,
                                crate::manifest::MAX_MANIFEST_SIZE,
                                &what,
                            )
                            .await?;
                        sha256_of(&body)
                    }
                }
            }
        };
        let url = client
            .url(&format!("{}/manifests/{digest}", loc.repo))
            .await?;
        let resp = client
            .send(Method::DELETE, url, HeaderMap::new(), &scope, &what)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(digest),
            StatusCode::METHOD_NOT_ALLOWED => Err(Error::Registry {
                what: format!("deleting {digest} in registry {}", loc.registry),
                status: 405,
                message: "the registry does not allow deleting images".into(),
                hint: "docker-registry: storage.delete.enabled: true in its config".into(),
            }),
            StatusCode::NOT_FOUND => Err(Error::NotFound {
                what: format!("manifest {digest} of {}", loc.name()),
                hint: String::new(),
            }),
            _ => Err(client.error_from(resp, &what).await),
        }
    })
}
