//! Registry authentication: credentials, `WWW-Authenticate` challenges and bearer tokens.
//!
//! The flow (distribution's token authentication, plus HTTP Basic):
//! 1. the client pings `GET /v2/`; `200` means anonymous access, `401` carries a challenge,
//!    parsed by [`Challenge::parse`] (`Basic realm="…"` or
//!    `Bearer realm="…",service="…",scope="…"`);
//! 2. with `Basic`, every request carries `Authorization: Basic base64(user:pass)`;
//! 3. with `Bearer`, the client asks the realm for a token:
//!    `GET realm?service=SERVICE&scope=repository:REPO:pull` (Basic credentials attached when
//!    the user has some, anonymous otherwise; with an identity token from auth.json, the
//!    OAuth2 refresh-token grant `POST realm` instead), and reads `token` or `access_token` and
//!    `expires_in` from the JSON answer ([`TokenResponse`]); tokens are cached per scope until
//!    shortly before they expire;
//! 4. a `401` on a request that carried a token (it expired or was revoked mid-pull) drops the
//!    cached token and fetches a new one, once per request.
//!
//! The challenge grammar (RFC 7235 auth-params with quoted strings) is small, so it is parsed
//! here rather than with a crate such as `http-auth`, which would add a dependency for one
//! function.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password (or registry token used as a password), or an OAuth2 refresh
/// token (auth.json's `identitytoken`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
    /// An OAuth2 refresh token: when set, bearer tokens are asked for with
    /// `POST realm` (`grant_type=refresh_token`) instead of Basic credentials.
    pub identity_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    /// Parse `USER[:PASSWORD]` as skopeo's `--creds` takes it (the password may contain `:`).
    pub fn parse(s: &str) -> Option<Credentials> {
        let (user, pass) = s.split_once(':').unwrap_or((s, ""));
        if user.is_empty() {
            return None;
        }
        Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
            identity_token: None,
        })
    }

    /// An OAuth2 refresh token (with the user name it was issued to, if known).
    pub fn identity(username: &str, token: &str) -> Credentials {
        Credentials {
            username: username.to_string(),
            password: String::new(),
            identity_token: Some(token.to_string()),
        }
    }

    /// Decode the `auth` field of an auth.json entry: base64 of `user:password`.
    pub fn from_auth_field(auth: &str) -> Option<Credentials> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let s = String::from_utf8(bytes).ok()?;
        let (user, pass) = s.split_once(':')?;
        Some(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
            identity_token: None,
        })
    }

    /// The `Authorization` header value for HTTP Basic (`None` for an identity token,
    /// which is only good for the token server).
    pub fn basic_header(&self) -> Option<String> {
        if self.identity_token.is_some() {
            return None;
        }
        let raw = format!("{}:{}", self.username, self.password);
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP Basic.
    Basic {
        /// The realm (informational).
        realm: String,
    },
    /// Token authentication.
    Bearer {
        /// The token server URL.
        realm: String,
        /// The `service` parameter to pass to it.
        service: Option<String>,
        /// The scope the registry said it wants, if any.
        scope: Option<String>,
        /// The `error` parameter (`invalid_token`, `insufficient_scope`), if any.
        error: Option<String>,
    },
}

impl Challenge {
    /// Parse a `WWW-Authenticate` header value. Bearer is preferred when a header offers
    /// several challenges; unknown schemes yield `None`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let challenges = parse_challenges(header);
        let find = |scheme: &str| {
            challenges
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(scheme))
        };
        if let Some((_, params)) = find("bearer") {
            let realm = params.get("realm")?.clone();
            return Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
                error: params.get("error").cloned(),
            });
        }
        find("basic").map(|(_, params)| Challenge::Basic {
            realm: params.get("realm").cloned().unwrap_or_default(),
        })
    }
}

/// Split a header into `(scheme, params)` challenges. Parameter names are lower-cased.
fn parse_challenges(header: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
    let bytes = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    let is_token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    while i < bytes.len() {
        skip_ws(&mut i);
        if i < bytes.len() && bytes[i] == b',' {
            i += 1;
            continue;
        }
        // A token: either a new scheme or a parameter name.
        let start = i;
        while i < bytes.len() && is_token(bytes[i]) {
            i += 1;
        }
        if start == i {
            // Unexpected character: skip it.
            i += 1;
            continue;
        }
        let token = &header[start..i];
        skip_ws(&mut i);
        if i < bytes.len() && bytes[i] == b'=' && !out.is_empty() {
            i += 1;
            skip_ws(&mut i);
            let value = if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    // Push whole UTF-8 characters.
                    let ch = header[i..].chars().next().expect("in bounds");
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1; // closing quote
                v
            } else {
                let vs = i;
                while i < bytes.len() && bytes[i] != b',' {
                    i += 1;
                }
                header[vs..i].trim().to_string()
            };
            out.last_mut()
                .expect("checked non-empty")
                .1
                .insert(token.to_ascii_lowercase(), value);
        } else {
            out.push((token.to_string(), HashMap::new()));
        }
    }
    out
}

/// The JSON a token server answers with.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    /// The token (distribution's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth2's name); used when `token` is absent.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (default 60, as in the distribution spec).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token to use, if the answer carried one.
    pub fn bearer(&self) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|t| !t.is_empty())
            .or(self.access_token.as_deref().filter(|t| !t.is_empty()))
    }

    /// How long the token may be used: its lifetime less a margin, at least 10 seconds.
    pub fn lifetime(&self) -> Duration {
        let secs = self.expires_in.unwrap_or(60).max(60);
        Duration::from_secs(secs.saturating_sub(secs / 10).max(10))
    }
}

/// A cached bearer token.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token value.
    pub value: String,
    /// When to stop using it.
    pub valid_until: Instant,
}

/// The scope string for `repository:REPO:ACTIONS`.
pub fn repository_scope(repo: &str, push: bool) -> String {
    if push {
        format!("repository:{repo}:pull,push")
    } else {
        format!("repository:{repo}:pull")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
                error: None,
            }
        );
        let c = Challenge::parse(
            r#"Bearer realm="http://127.0.0.1:1/t",service="s",error="invalid_token",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        match c {
            Challenge::Bearer { error, scope, .. } => {
                assert_eq!(error.as_deref(), Some("invalid_token"));
                assert_eq!(scope.as_deref(), Some("repository:a/b:pull,push"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn basic_and_multiple_and_unknown() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic {
                realm: "Registry Realm".into()
            })
        );
        let c =
            Challenge::parse(r#"Basic realm="x", Bearer realm="https://t/x",service=reg"#).unwrap();
        assert!(
            matches!(&c, Challenge::Bearer { realm, service, .. } if realm == "https://t/x" && service.as_deref() == Some("reg")),
            "{c:?}"
        );
        assert_eq!(Challenge::parse(r#"Negotiate abc"#), None);
        assert_eq!(Challenge::parse(""), None);
        // A quoted value with an escaped quote and a comma.
        let c = Challenge::parse(r#"Basic realm="a \"b\", c""#).unwrap();
        assert_eq!(
            c,
            Challenge::Basic {
                realm: r#"a "b", c"#.into()
            }
        );
    }

    #[test]
    fn credentials() {
        let c = Credentials::parse("user:pa:ss").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("user", "pa:ss")
        );
        assert_eq!(c.basic_header().unwrap(), "Basic dXNlcjpwYTpzcw==");
        let id = Credentials::identity("u", "refresh-me");
        assert_eq!(id.basic_header(), None);
        assert!(!format!("{id:?}").contains("refresh-me"));
        assert!(Credentials::parse(":x").is_none());
        let c = Credentials::from_auth_field("dXNlcjpwYTpzcw==").unwrap();
        assert_eq!(c.password, "pa:ss");
        assert!(Credentials::from_auth_field("not base64!").is_none());
        assert!(!format!("{c:?}").contains("pa:ss"));
    }

    #[test]
    fn token_response() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.bearer(), Some("a"));
        assert_eq!(t.lifetime(), Duration::from_secs(270));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"b","access_token":"a"}"#).unwrap();
        assert_eq!(t.bearer(), Some("b"));
        assert_eq!(t.lifetime(), Duration::from_secs(54));
        let t: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(t.bearer(), None);
    }
}
