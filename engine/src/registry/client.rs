//! The HTTP client for one registry host: ping, authentication, retries, redirects, timeouts.
//!
//! 1. [`RegistryClient::new`] builds a reqwest client (rustls only) whose root store is the
//!    system's CA certificates, or the built-in `webpki-root-certs` when the host has none,
//!    plus the CA files of the registry's certs.d directory; with `tls_verify` off it accepts
//!    any certificate and may fall back to plain http, as skopeo does.
//! 2. The first request pings `GET /v2/` (https first; http too when TLS verification is off)
//!    and remembers the scheme and the authentication challenge.
//! 3. Every request ([`RegistryClient::send`]) carries the right `Authorization` header for its
//!    scope ([`super::auth`]), follows redirects itself so that the header is sent only to the
//!    registry's own origin (never to blob storage on another host), and is retried with
//!    exponential backoff on connection errors, timeouts, 429 and 5xx. A `401` on a request
//!    under token authentication fetches a fresh token and tries again once; a `401` whose
//!    challenge differs from the ping's (a registry that lets anyone ping but not pull)
//!    switches to that challenge and tries again once.
//! 4. Waiting for response headers, and for each chunk of a body, is bounded by the idle
//!    timeout; connecting by the connect timeout: a stalled server becomes an error.
//!
//! All of this is async (reqwest needs tokio); the engine's pipeline is synchronous, so the
//! client runs on one process-wide tokio runtime ([`runtime`]) and exposes blocking methods.
//! Blob bodies are bridged by [`super::stream::BlobReader`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::auth::{Challenge, Credentials, Token, TokenResponse};
use crate::error::{Error, Result};

/// The process-wide tokio runtime the registry code runs on (two worker threads; created on
/// first use and never shut down).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("stowage-registry")
            .enable_all()
            .build()
            .expect("building the tokio runtime")
    })
}

/// Run `fut` to completion from synchronous code.
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

/// TLS material for one registry (from `--cert-dir` or certs.d).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM CA certificates to trust in addition to the system roots (`*.crt`).
    pub ca_pems: Vec<(String, Vec<u8>)>,
    /// A PEM client certificate and key (`*.cert` + `*.key`), for mutual TLS.
    pub identity_pem: Option<(String, Vec<u8>)>,
}

/// How to talk to one registry.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Credentials, if any (anonymous otherwise).
    pub credentials: Option<Credentials>,
    /// Verify TLS certificates and require https (`false`: accept any certificate, allow
    /// plain http).
    pub tls_verify: bool,
    /// Extra CA certificates and client identity.
    pub tls: TlsFiles,
    /// Retries after the first attempt, for connection errors, timeouts, 429, 5xx and
    /// truncated bodies.
    pub retry_times: u32,
    /// Delay before the first retry; it doubles for each further one (capped at 10 s).
    pub retry_delay: Duration,
    /// Longest wait for a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Longest wait for response headers or for the next chunk of a body.
    pub idle_timeout: Duration,
    /// The slowest average rate a blob download may have, in bytes per second: a blob of
    /// `size` bytes must arrive within `2 × idle_timeout + size / min_rate` over all its
    /// attempts, or the download fails (0: no deadline).
    pub min_rate: u64,
    /// Set to stop blob downloads: a read waiting for the next chunk returns
    /// [`Error::Cancelled`](crate::error::Error::Cancelled) at once.
    pub cancel: crate::cancel::Cancel,
}

/// Default [`ClientSettings::min_rate`]: 64 KiB/s (a 100 MB layer may take 26 minutes).
pub const DEFAULT_MIN_RATE: u64 = 64 << 10;

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            credentials: None,
            tls_verify: true,
            tls: TlsFiles::default(),
            retry_times: 3,
            retry_delay: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            min_rate: DEFAULT_MIN_RATE,
            cancel: Default::default(),
        }
    }
}

impl ClientSettings {
    /// The delay before retry number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(6);
        (self.retry_delay * factor).min(Duration::from_secs(10))
    }
}

/// What the ping learned.
#[derive(Debug, Clone)]
struct Base {
    url: Url,
    challenge: Option<Challenge>,
}

/// A client for one registry host. Cheap to clone; clones share connections and tokens.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The registry as named in references (`quay.io`, `localhost:5000`).
    registry: String,
    /// The host actually contacted (`registry-1.docker.io` for `docker.io`).
    host: String,
    http: reqwest::Client,
    settings: ClientSettings,
    base: tokio::sync::OnceCell<Base>,
    /// The challenge in force: the ping's, replaced by a later 401's when it differs.
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
}

/// Why one HTTP exchange failed (before any retry decision).
#[derive(Debug)]
pub(crate) enum SendError {
    /// No response headers within the idle timeout.
    Timeout(Duration),
    /// reqwest failed (connect, TLS, protocol).
    Http(reqwest::Error),
    /// A redirect without a usable Location, or too many redirects.
    Redirect(String),
}

impl SendError {
    /// Whether trying again may help.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            SendError::Timeout(_) => true,
            SendError::Http(e) => e.is_connect() || e.is_timeout() || e.is_request() || e.is_body(),
            SendError::Redirect(_) => false,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Timeout(d) => write!(f, "no response within {}s", d.as_secs_f64()),
            SendError::Http(e) => {
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    write!(f, ": {s}")?;
                    source = s.source();
                }
                Ok(())
            }
            SendError::Redirect(r) => f.write_str(r),
        }
    }
}

/// Whether `status` is worth retrying.
pub(crate) fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Whether `host[:port]` names this machine (`localhost`, `127.0.0.0/8`, `[::1]`).
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Load the system's CA certificates, or the built-in roots when there are none.
fn root_certificates() -> Vec<reqwest::Certificate> {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let ders = ROOTS.get_or_init(|| {
        let system = rustls_native_certs::load_native_certs();
        let mut ders: Vec<Vec<u8>> = system.certs.iter().map(|c| c.to_vec()).collect();
        if ders.is_empty() {
            ders = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| c.to_vec())
                .collect();
        }
        ders
    });
    ders.iter()
        .filter_map(|d| reqwest::Certificate::from_der(d).ok())
        .collect()
}

impl RegistryClient {
    /// A client for `registry` (`host[:port]` as written in image references).
    pub fn new(registry: &str, settings: ClientSettings) -> Result<Self> {
        let host = match registry {
            "docker.io" => "registry-1.docker.io".to_string(),
            other => other.to_string(),
        };
        let mut roots = root_certificates();
        for (path, pem) in &settings.tls.ca_pems {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| Error::Http {
                what: format!("CA certificate {path}"),
                source: e,
            })?;
            roots.extend(certs);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("stowage/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_certs_only(roots)
            .tls_danger_accept_invalid_certs(!settings.tls_verify);
        if is_loopback(&host) {
            // As Go's net/http does: loopback registries never go through a proxy.
            builder = builder.no_proxy();
        }
        if let Some((path, pem)) = &settings.tls.identity_pem {
            let identity = reqwest::Identity::from_pem(pem).map_err(|e| Error::Http {
                what: format!("client certificate and key {path}"),
                source: e,
            })?;
            builder = builder.identity(identity);
        }
        // rustls's process-wide provider is ring (docs/performance.md, section 8), unless the
        // program embedding the engine installed another one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = builder.build().map_err(|e| Error::Network {
            what: format!("setting up the HTTP client for {registry}"),
            reason: SendError::Http(e).to_string(),
        })?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                registry: registry.to_string(),
                host,
                http,
                settings,
                base: tokio::sync::OnceCell::new(),
                challenge: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registry as named in references.
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The settings this client was made with.
    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    /// The base URL (`https://host/`), pinging the registry first if needed.
    pub(crate) async fn base_url(&self) -> Result<Url> {
        Ok(self.base().await?.url.clone())
    }

    /// `base/v2/PATH`.
    pub(crate) async fn url(&self, path: &str) -> Result<Url> {
        let base = self.base_url().await?;
        base.join(&format!("v2/{path}"))
            .map_err(|e| Error::InvalidReference {
                input: path.to_string(),
                reason: format!("cannot form a registry URL: {e}"),
            })
    }

    async fn base(&self) -> Result<&Base> {
        self.inner
            .base
            .get_or_try_init(|| async {
                let base = self.ping().await?;
                *self.inner.challenge.lock().unwrap() = base.challenge.clone();
                Ok(base)
            })
            .await
    }

    /// The challenge in force.
    async fn challenge(&self) -> Result<Option<Challenge>> {
        self.base().await?;
        Ok(self.inner.challenge.lock().unwrap().clone())
    }

    /// After a 401: adopt the response's challenge. Returns whether trying again may help
    /// (token authentication, whose token is then fetched anew, or a challenge that
    /// differs from the one the request was made under).
    fn after_unauthorized(&self, resp: &Response, scope: &str) -> bool {
        let new = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Challenge::parse);
        let mut current = self.inner.challenge.lock().unwrap();
        let same_scheme = |a: &Option<Challenge>, b: &Option<Challenge>| match (a, b) {
            (Some(Challenge::Basic { .. }), Some(Challenge::Basic { .. })) => true,
            (
                Some(Challenge::Bearer {
                    realm: r1,
                    service: s1,
                    ..
                }),
                Some(Challenge::Bearer {
                    realm: r2,
                    service: s2,
                    ..
                }),
            ) => r1 == r2 && s1 == s2,
            (None, None) => true,
            _ => false,
        };
        let changed = new.is_some() && !same_scheme(&current, &new);
        if changed {
            *current = new;
        }
        self.inner.tokens.lock().unwrap().remove(scope);
        changed || matches!(*current, Some(Challenge::Bearer { .. }))
    }

    /// `GET /v2/` over https, then (TLS verification off) plain http.
    async fn ping(&self) -> Result<Base> {
        let s = &self.inner.settings;
        let schemes: &[&str] = if s.tls_verify {
            &["https"]
        } else {
            &["https", "http"]
        };
        let mut failures = Vec::new();
        for scheme in schemes {
            let url = Url::parse(&format!("{scheme}://{}/", self.inner.host)).map_err(|e| {
                Error::InvalidReference {
                    input: self.inner.registry.clone(),
                    reason: format!("not a valid registry host: {e}"),
                }
            })?;
            let ping = url.join("v2/").expect("static path");
            // The https attempt of an insecure registry is not retried: plain http is next.
            let retries = if s.tls_verify || *scheme == "http" {
                s.retry_times
            } else {
                0
            };
            let mut attempt = 0;
            loop {
                let result = self
                    .exchange(Method::GET, ping.clone(), &HeaderMap::new(), None, &url)
                    .await;
                match result {
                    Ok(resp)
                        if resp.status() == StatusCode::OK
                            || resp.status() == StatusCode::UNAUTHORIZED =>
                    {
                        let challenge = resp
                            .headers()
                            .get_all(WWW_AUTHENTICATE)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .find_map(Challenge::parse);
                        return Ok(Base { url, challenge });
                    }
                    Ok(resp) if is_transient_status(resp.status()) && attempt < retries => {}
                    Ok(resp) => {
                        failures.push(format!("{ping}: {}", resp.status()));
                        break;
                    }
                    Err(e) if e.is_transient() && attempt < retries => {}
                    Err(e) => {
                        failures.push(format!("{ping}: {e}"));
                        break;
                    }
                }
                attempt += 1;
                tokio::time::sleep(s.backoff(attempt)).await;
            }
        }
        let joined = failures.join("; ");
        let hint = if s.tls_verify
            && (joined.contains("InvalidContentType")
                || joined.contains("corrupt message")
                || joined.contains("HTTP response to HTTPS")
                || joined.contains("UnknownIssuer")
                || joined.contains("invalid peer certificate"))
        {
            "; if the registry uses plain http or a self-signed certificate, pass --tls-verify=false (copy: --src-tls-verify=false or --dest-tls-verify=false, for the side that talks to it) or add its CA with --cert-dir (copy: --src-cert-dir / --dest-cert-dir)"
        } else {
            ""
        };
        Err(Error::Network {
            what: format!("pinging container registry {}", self.inner.registry),
            reason: format!("{joined}{hint}"),
        })
    }

    /// One exchange: send, follow redirects (GET/HEAD without body), bounded by the idle
    /// timeout. `auth` is sent only to `origin`'s scheme, host and port.
    pub(crate) async fn exchange(
        &self,
        method: Method,
        url: Url,
        headers: &HeaderMap,
        auth: Option<&str>,
        origin: &Url,
    ) -> std::result::Result<Response, SendError> {
        self.exchange_with_body(method, url, headers, auth, origin, None)
            .await
    }

    /// [`exchange`](Self::exchange) with an optional request body (requests with a body are
    /// not redirected).
    pub(crate) async fn exchange_with_body(
        &self,
        method: Method,
        mut url: Url,
        headers: &HeaderMap,
        auth: Option<&str>,
        origin: &Url,
        mut body: Option<reqwest::Body>,
    ) -> std::result::Result<Response, SendError> {
        let idle = self.inner.settings.idle_timeout;
        for _ in 0..=10 {
            let mut rb = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = auth {
                if same_origin(&url, origin) {
                    rb = rb.header(AUTHORIZATION, a);
                }
            }
            let has_body = body.is_some();
            if let Some(b) = body.take() {
                rb = rb.body(b);
            }
            let resp = match tokio::time::timeout(idle, rb.send()).await {
                Err(_) => {
                    log::debug!("{method} {url}: no answer in {idle:?}");
                    return Err(SendError::Timeout(idle));
                }
                Ok(Err(e)) => {
                    log::debug!("{method} {url}: {e}");
                    return Err(SendError::Http(e));
                }
                Ok(Ok(r)) => r,
            };
            log::debug!(
                "{method} {url} -> {}{}",
                resp.status(),
                match resp.headers().get(reqwest::header::CONTENT_LENGTH) {
                    Some(l) => format!(" ({} bytes)", l.to_str().unwrap_or("?")),
                    None => String::new(),
                }
            );
            let redirect = matches!(
                resp.status(),
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            );
            if !redirect || has_body || !(method == Method::GET || method == Method::HEAD) {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    SendError::Redirect(format!("{url}: redirect without a Location header"))
                })?;
            url = url.join(location).map_err(|e| {
                SendError::Redirect(format!("{url}: bad redirect {location:?}: {e}"))
            })?;
        }
        Err(SendError::Redirect(format!(
            "{url}: more than 10 redirects"
        )))
    }

    /// The `Authorization` value for `scope`, fetching a token if needed.
    pub(crate) async fn authorization(&self, scope: &str, what: &str) -> Result<Option<String>> {
        match &self.challenge().await? {
            None => Ok(None),
            Some(Challenge::Basic { .. }) => Ok(self
                .inner
                .settings
                .credentials
                .as_ref()
                .and_then(Credentials::basic_header)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = self.token(realm, service.as_deref(), scope, what).await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        what: &str,
    ) -> Result<String> {
        if let Some(t) = self.inner.tokens.lock().unwrap().get(scope) {
            if t.valid_until > Instant::now() {
                return Ok(t.value.clone());
            }
        }
        let s = &self.inner.settings;
        let mut url = Url::parse(realm).map_err(|e| Error::Malformed {
            what: format!("authentication challenge of {}", self.inner.registry),
            reason: format!("realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(svc) = service {
                q.append_pair("service", svc);
            }
            for part in scope.split(' ').filter(|p| !p.is_empty()) {
                q.append_pair("scope", part);
            }
        }
        let creds = s.credentials.as_ref().and_then(Credentials::basic_header);
        log::debug!(
            "token for {scope:?} from {realm} ({})",
            if creds.is_some() {
                "with credentials"
            } else {
                "anonymous"
            }
        );
        // An identity token is exchanged with the OAuth2 refresh-token grant (POST);
        // otherwise the token is fetched with GET, with Basic credentials when there are any.
        let oauth_form = s
            .credentials
            .as_ref()
            .and_then(|c| c.identity_token.as_deref())
            .map(|refresh| {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", refresh)
                    .append_pair("client_id", "stowage");
                if let Some(svc) = service {
                    form.append_pair("service", svc);
                }
                for part in scope.split(' ').filter(|p| !p.is_empty()) {
                    form.append_pair("scope", part);
                }
                Bytes::from(form.finish())
            });
        let mut form_headers = HeaderMap::new();
        form_headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let mut attempt = 0;
        let resp = loop {
            let r = match &oauth_form {
                Some(form) => {
                    let post_url = Url::parse(realm).expect("parsed above");
                    self.exchange_with_body(
                        Method::POST,
                        post_url.clone(),
                        &form_headers,
                        None,
                        &post_url,
                        Some(reqwest::Body::from(form.clone())),
                    )
                    .await
                }
                None => {
                    self.exchange(
                        Method::GET,
                        url.clone(),
                        &HeaderMap::new(),
                        creds.as_deref(),
                        &url,
                    )
                    .await
                }
            };
            match r {
                Ok(resp) if is_transient_status(resp.status()) && attempt < s.retry_times => {}
                Ok(resp) => break resp,
                Err(e) if e.is_transient() && attempt < s.retry_times => {}
                Err(e) => {
                    return Err(Error::Network {
                        what: format!("{what}: requesting a token from {realm}"),
                        reason: e.to_string(),
                    })
                }
            }
            attempt += 1;
            tokio::time::sleep(s.backoff(attempt)).await;
        };
        let status = resp.status();
        let body = read_capped(resp, 1 << 20, s.idle_timeout)
            .await
            .map_err(|e| Error::Network {
                what: format!("{what}: reading the token from {realm}"),
                reason: e,
            })?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                what: what.to_string(),
                reason: format!(
                    "the token server {realm} refused {}: {}",
                    if oauth_form.is_some() {
                        "the identity token"
                    } else if creds.is_some() {
                        "the credentials"
                    } else {
                        "anonymous access"
                    },
                    error_message(status, &body)
                ),
                hint: credentials_hint(&self.inner.registry),
            });
        }
        if !status.is_success() {
            return Err(Error::Registry {
                what: format!("{what}: requesting a token from {realm}"),
                status: status.as_u16(),
                message: error_message(status, &body),
                hint: String::new(),
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| Error::Json {
            what: format!("token from {realm}"),
            source: e,
        })?;
        let value = parsed
            .bearer()
            .ok_or_else(|| Error::Malformed {
                what: format!("token from {realm}"),
                reason: "the answer has neither token nor access_token".into(),
            })?
            .to_string();
        self.inner.tokens.lock().unwrap().insert(
            scope.to_string(),
            Token {
                value: value.clone(),
                valid_until: Instant::now() + parsed.lifetime(),
            },
        );
        Ok(value)
    }

    /// Send a request without a body to the registry, with authentication for `scope`,
    /// retrying transient failures and refreshing the token once on a 401. Returns the final
    /// response whatever its status (callers turn unexpected ones into errors with
    /// [`RegistryClient::error_from`]).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        scope: &str,
        what: &str,
    ) -> Result<Response> {
        let retries = self.inner.settings.retry_times;
        self.send_retrying(method, url, headers, None, scope, what, retries)
            .await
    }

    /// [`send`](Self::send) with `retries` retries of transient failures (the blob stream
    /// passes 0: it retries, and resumes, itself). `body`, when given, is sent again on each
    /// attempt.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn send_retrying(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        scope: &str,
        what: &str,
        retries: u32,
    ) -> Result<Response> {
        let s = &self.inner.settings;
        let origin = self.base_url().await?;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let auth = self.authorization(scope, what).await?;
            let result = self
                .exchange_with_body(
                    method.clone(),
                    url.clone(),
                    &headers,
                    auth.as_deref(),
                    &origin,
                    body.clone().map(reqwest::Body::from),
                )
                .await;
            match result {
                Ok(resp)
                    if resp.status() == StatusCode::UNAUTHORIZED
                        && !refreshed
                        && self.after_unauthorized(&resp, scope) =>
                {
                    log::debug!("{method} {url}: 401, fetching a new token for {scope:?}");
                    refreshed = true;
                    continue;
                }
                Ok(resp) if is_transient_status(resp.status()) && attempt < retries => {}
                Ok(resp) => return Ok(resp),
                Err(e) if e.is_transient() && attempt < retries => {}
                Err(e) => {
                    return Err(Error::Network {
                        what: what.to_string(),
                        reason: format!(
                            "{method} {url}: {e}{}",
                            if attempt > 0 {
                                format!(" (after {} attempts)", attempt + 1)
                            } else {
                                String::new()
                            }
                        ),
                    })
                }
            }
            attempt += 1;
            let wait = s.backoff(attempt);
            log::info!("{what}: {method} {url} failed transiently; retry {attempt} of {retries} in {wait:?}");
            tokio::time::sleep(wait).await;
        }
    }

    /// GET a small document (manifest, config, tag list) whole, at most `max` bytes, retrying
    /// truncated or stalled bodies. Returns the body and the response headers.
    pub(crate) async fn get_small(
        &self,
        url: Url,
        accept: Option<&str>,
        scope: &str,
        max: u64,
        what: &str,
    ) -> Result<(Vec<u8>, HeaderMap)> {
        let s = &self.inner.settings;
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(
                ACCEPT,
                HeaderValue::from_str(a).expect("media types are valid header values"),
            );
        }
        let mut attempt = 0;
        loop {
            let resp = self
                .send(Method::GET, url.clone(), headers.clone(), scope, what)
                .await?;
            if !resp.status().is_success() {
                return Err(self.error_from(resp, what).await);
            }
            if let Some(len) = resp.content_length() {
                if len > max {
                    return Err(Error::Malformed {
                        what: what.to_string(),
                        reason: format!("{len} bytes, more than the {max} byte limit"),
                    });
                }
            }
            let resp_headers = resp.headers().clone();
            match read_capped(resp, max, s.idle_timeout).await {
                Ok(body) => return Ok((body, resp_headers)),
                Err(reason) if reason.starts_with("more than") => {
                    return Err(Error::Malformed {
                        what: what.to_string(),
                        reason,
                    })
                }
                Err(reason) if attempt >= s.retry_times => {
                    return Err(Error::Network {
                        what: what.to_string(),
                        reason: format!("GET {url}: {reason} (after {} attempts)", attempt + 1),
                    })
                }
                Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(s.backoff(attempt)).await;
        }
    }

    /// Turn an unexpected response into an error naming `what`, with the registry's message.
    pub(crate) async fn error_from(&self, resp: Response, what: &str) -> Error {
        let status = resp.status();
        let body = read_capped(resp, 64 << 10, self.inner.settings.idle_timeout)
            .await
            .unwrap_or_default();
        let message = error_message(status, &body);
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                what: what.to_string(),
                reason: message,
                hint: credentials_hint(&self.inner.registry),
            },
            StatusCode::FORBIDDEN => Error::Unauthorized {
                what: what.to_string(),
                reason: message,
                hint: format!(
                    "the credentials for {} do not allow this; check the user's permissions",
                    self.inner.registry
                ),
            },
            _ => Error::Registry {
                what: what.to_string(),
                status: status.as_u16(),
                message,
                hint: String::new(),
            },
        }
    }

    /// Run an async operation of this client from synchronous code.
    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        block_on(fut)
    }

    /// GET the body of `url` as chunks: used by the blob stream. Returns the response (any
    /// status) after authentication, retries and redirects.
    pub(crate) async fn get_stream(
        &self,
        url: Url,
        range_from: u64,
        scope: &str,
        what: &str,
    ) -> Result<Response> {
        let mut headers = HeaderMap::new();
        if range_from > 0 {
            headers.insert(
                reqwest::header::RANGE,
                HeaderValue::from_str(&format!("bytes={range_from}-")).expect("ascii"),
            );
        }
        self.send_retrying(Method::GET, url, headers, None, scope, what, 0)
            .await
    }
}

/// Read a response body whole, at most `max` bytes, each chunk within `idle`.
pub(crate) async fn read_capped(
    mut resp: Response,
    max: u64,
    idle: Duration,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, resp.chunk()).await {
            Err(_) => return Err(format!("no data received for {}s", idle.as_secs_f64())),
            Ok(Err(e)) => return Err(SendError::Http(e).to_string()),
            Ok(Ok(None)) => return Ok(out),
            Ok(Ok(Some(chunk))) => {
                if out.len() as u64 + chunk.len() as u64 > max {
                    return Err(format!("more than {max} bytes"));
                }
                out.extend_from_slice(&chunk);
            }
        }
    }
}

/// The next chunk of `resp`, or an error after `idle` without data.
pub(crate) async fn next_chunk(
    resp: &mut Response,
    idle: Duration,
) -> std::result::Result<Option<Bytes>, String> {
    match tokio::time::timeout(idle, resp.chunk()).await {
        Err(_) => Err(format!(
            "the transfer stalled: no data received for {}s",
            idle.as_secs_f64()
        )),
        Ok(Err(e)) => Err(SendError::Http(e).to_string()),
        Ok(Ok(c)) => Ok(c),
    }
}

/// The registry's error message: `code: message` of each entry of the distribution error
/// body, or the status line.
pub(crate) fn error_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        let parts: Vec<String> = b
            .errors
            .iter()
            .map(|e| {
                let code = e.code.to_lowercase().replace('_', " ");
                match (code.is_empty(), e.message.is_empty()) {
                    (false, false) => format!("{code}: {}", e.message),
                    (false, true) => code,
                    _ => e.message.clone(),
                }
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let reason = status.canonical_reason().unwrap_or("");
    if text.is_empty() || text.len() > 200 || text.starts_with('<') {
        format!("{} {reason}", status.as_u16())
    } else {
        format!("{} {reason}: {text}", status.as_u16())
    }
}

fn credentials_hint(registry: &str) -> String {
    format!(
        "pass --creds USER:PASSWORD (--src-creds/--dest-creds for copy), or log in to {registry} so that auth.json has credentials for it"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_messages() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, body),
            "manifest unknown: manifest unknown"
        );
        assert_eq!(
            error_message(StatusCode::SERVICE_UNAVAILABLE, b""),
            "503 Service Unavailable"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"upstream down\n"),
            "502 Bad Gateway: upstream down"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = ClientSettings {
            retry_delay: Duration::from_millis(100),
            ..Default::default()
        };
        assert_eq!(s.backoff(1), Duration::from_millis(100));
        assert_eq!(s.backoff(2), Duration::from_millis(200));
        assert_eq!(s.backoff(4), Duration::from_millis(800));
        assert_eq!(s.backoff(30), Duration::from_millis(6400));
        let s = ClientSettings {
            retry_delay: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(s.backoff(30), Duration::from_secs(10));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "quay.io",
            "10.0.0.1:5000",
            "example.com:443",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn transient_statuses_and_origins() {
        assert!(is_transient_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(!is_transient_status(StatusCode::NOT_FOUND));
        assert!(!is_transient_status(StatusCode::NOT_IMPLEMENTED));
        let a = Url::parse("https://r.example/v2/x").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://r.example:443/").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://cdn.example/").unwrap()
        ));
        assert!(!same_origin(&a, &Url::parse("http://r.example/").unwrap()));
        assert!(!same_origin(
            &a,
            &Url::parse("https://r.example:5000/").unwrap()
        ));
    }
}
