//! Registry credentials from the host: auth.json files and credential helpers, the way
//! containers/image reads them.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::auth::Credentials;
use super::host_paths::HostPaths;
use crate::error::{Error, IoContext, Result};

impl HostPaths {
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

/// An auth.json (or Docker config.json) file.
#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// One `auths` entry.
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
        .at("running credential helper", &exe)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is reported by its exit status below.
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .at("running credential helper", &exe)?;
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
    let a: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| Error::Json {
        what: format!("answer of {program} for {registry}"),
        source: e,
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
        let malformed = |reason: String| Error::Config {
            what: format!("auth file {}", file.display()),
            reason,
        };
        let entries: BTreeMap<String, AuthEntry> = if legacy {
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?
        } else {
            let parsed: AuthFile =
                serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
            if let Some(helper) = parsed.cred_helpers.get(registry) {
                log::info!(
                    "credentials for {registry}: credential helper {helper} ({})",
                    file.display()
                );
                if let Some(c) = run_credential_helper(paths, helper, registry)? {
                    return Ok(Some(c));
                }
                continue;
            }
            parsed.auths
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
                    log::info!(
                        "credentials for {registry}: identity token of {key:?} in {}",
                        file.display()
                    );
                    let user = b.map(|b| b.username).unwrap_or_default();
                    return Ok(Some(Credentials::identity(&user, token)));
                }
                (None, Some(b)) => {
                    log::info!("credentials for {registry}: {key:?} in {}", file.display());
                    return Ok(Some(b));
                }
                (None, None) => continue,
            }
        }
    }
    log::debug!("credentials for {registry}: none in any auth file");
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::host_paths::test_support::{paths, write};
    use super::*;

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
}
