//! Registries for the tests: a real `docker-registry` on 127.0.0.1, and the servers around it
//! that the tests need to provoke what real registries do.
//!
//! 1. [`registry_tools`] checks that docker-registry and skopeo exist (else `SKIP:`, or a
//!    failure under `CI=true`).
//! 2. [`Registry::start`] writes a config (storage in a temp dir, a free loopback port,
//!    optional htpasswd / token auth and TLS), runs `docker-registry serve`, waits until the
//!    port accepts connections, and kills the process on drop; [`test_ca`] makes the TLS
//!    certificates, [`TokenServer`] the bearer tokens, [`FaultProxy`] and [`BlobServer`] the
//!    faults and redirects.
//! 3. [`seed_registry`] pushes a test image with skopeo ([`seeded_registry`],
//!    [`proxied_registry`] and [`faulty_registry`] are the usual set-ups around it); [`skopeo_push`], [`skopeo_pull`] and
//!    [`skopeo_inspect_registry`] are skopeo's side of the comparisons.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::images::{two_layer_image, Built};
use crate::common::{require, run, run_stdout, skopeo};

/// Whether docker-registry and skopeo are installed; prints `SKIP:` when not (and panics
/// under CI).
pub fn registry_tools(test: &str) -> bool {
    require(test, &["docker-registry", "skopeo"])
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the registry authenticates clients.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// htpasswd basic auth with one user.
    Htpasswd {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Token auth: the registry trusts tokens signed by the key of `root_cert_pem`.
    Token {
        /// The token server URL.
        realm: String,
        /// The service name.
        service: String,
        /// The issuer name in the tokens.
        issuer: String,
        /// PEM of the certificate whose key signs tokens.
        root_cert_pem: String,
    },
}

impl Auth {
    /// htpasswd basic auth with the one user `user`.
    pub fn htpasswd(user: &str, password: &str) -> Auth {
        Auth::Htpasswd {
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

/// TLS for the registry's listener.
#[derive(Clone, Debug)]
pub struct Tls {
    /// PEM server certificate (chain).
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
}

/// A running docker-registry.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The port.
    pub port: u16,
    /// Temp dir with config and storage.
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry with `auth` and optional `tls`.
    pub fn start(auth: Auth, tls: Option<Tls>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: stowage-test-secret\n",
            storage.display()
        );
        if let Some(tls) = &tls {
            std::fs::write(dir.path().join("server.crt"), &tls.cert_pem).unwrap();
            std::fs::write(dir.path().join("server.key"), &tls.key_pem).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
        }
        match &auth {
            Auth::None => {}
            Auth::Htpasswd { user, password } => {
                let hash = bcrypt::hash_with_result(password, 4)
                    .unwrap()
                    .format_for_version(bcrypt::Version::TwoA);
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{hash}\n")).unwrap();
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                    path.display()
                ));
            }
            Auth::Token {
                realm,
                service,
                issuer,
                root_cert_pem,
            } => {
                let path = dir.path().join("token-root.pem");
                std::fs::write(&path, root_cert_pem).unwrap();
                config.push_str(&format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    path.display()
                ));
            }
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut reg = Registry {
            child,
            addr,
            port,
            dir,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited with {status}: {log}");
            }
            if TcpStream::connect(&self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not listen on {} within 10s", self.addr);
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The path of a blob's data in the registry's storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Push `oci:LAYOUT:TAG` to `docker://DEST` with skopeo over plain http, with `creds`.
pub fn skopeo_push(layout: &Path, tag: &str, dest: &str, creds: Option<&str>, extra: &[&str]) {
    let mut c = skopeo();
    c.args(["copy", "-q", "--dest-tls-verify=false"]);
    if let Some(cr) = creds {
        c.args(["--dest-creds", cr]);
    }
    c.args(extra);
    c.arg(format!("oci:{}:{tag}", layout.display()));
    c.arg(format!("docker://{dest}"));
    run(c);
}

/// [`two_layer_image`] written to `DIR/src` (tag `v1`) and pushed by skopeo to
/// `REGISTRY/name`, with `creds` if given.
pub fn seed_registry(reg: &Registry, dir: &Path, name: &str, creds: Option<&str>) -> Built {
    let src = dir.join("src");
    let img = two_layer_image(&src, "v1");
    skopeo_push(&src, "v1", &format!("{}/{name}", reg.addr), creds, &[]);
    img
}

/// A registry with `auth` behind a [`FaultProxy`], and a temporary directory. Keep the
/// [`Registry`] alive while the proxy forwards to it.
pub fn proxied_registry(auth: Auth) -> (Registry, FaultProxy, tempfile::TempDir) {
    let reg = Registry::start(auth, None);
    let proxy = FaultProxy::start(&reg.addr);
    (reg, proxy, tempfile::tempdir().unwrap())
}

/// A plain registry behind a [`FaultProxy`] holding `f/app:v1` ([`seed_registry`]: two
/// layers, about 300 KiB), and a temporary directory.
pub fn faulty_registry() -> (Registry, FaultProxy, tempfile::TempDir, Built) {
    let (reg, proxy, tmp) = proxied_registry(Auth::None);
    let img = seed_registry(&reg, tmp.path(), "f/app:v1", None);
    (reg, proxy, tmp, img)
}

/// A plain registry holding `repo_tag` ([`seed_registry`]), a temporary directory and the
/// image's full name `ADDR/repo_tag`.
pub fn seeded_registry(repo_tag: &str) -> (Registry, tempfile::TempDir, String, Built) {
    let reg = Registry::start(Auth::None, None);
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("{}/{repo_tag}", reg.addr);
    let img = seed_registry(&reg, tmp.path(), repo_tag, None);
    (reg, tmp, name, img)
}

/// `skopeo inspect` of a registry image (plain http).
pub fn skopeo_inspect_registry(image: &str, creds: Option<&str>) -> serde_json::Value {
    let mut c = skopeo();
    c.args(["inspect", "--tls-verify=false"]);
    if let Some(cr) = creds {
        c.args(["--creds", cr]);
    }
    serde_json::from_str(&run_stdout(c.arg(format!("docker://{image}")))).unwrap()
}

/// skopeo pulls `image` (plain http) into the new layout `DIR/name`, tag `t`; returns it.
pub fn skopeo_pull(image: &str, creds: Option<&str>, dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    let mut c = skopeo();
    c.args(["copy", "-q", "--src-tls-verify=false"]);
    if let Some(cr) = creds {
        c.args(["--src-creds", cr]);
    }
    run(c
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:t", dest.display())));
    dest
}

/// A CA generated for one test, and a server certificate it signed for 127.0.0.1 and
/// localhost.
pub struct TestCa {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The server's certificate (PEM) and key (PEM).
    pub server: Tls,
}

/// Generate a CA and a server certificate signed by it.
pub fn test_ca() -> TestCa {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stowage test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).unwrap();
    TestCa {
        ca_pem: ca_cert.pem(),
        server: Tls {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    }
}

/// Write `{"auths":{KEY:{"auth":base64(CREDS)}}}` to `path`.
pub fn write_auth_json(path: &Path, entries: &[(&str, &str)]) {
    use base64::Engine as _;
    let mut auths = serde_json::Map::new();
    for (key, creds) in entries {
        let b64 = base64::engine::general_purpose::STANDARD.encode(creds);
        auths.insert(key.to_string(), serde_json::json!({ "auth": b64 }));
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        path,
        serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap(),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 server toolkit (one request per connection, `Connection: close`).
// ---------------------------------------------------------------------------------------

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Header (lower-case name, value) pairs in order.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Read bytes up to and including `\r\n\r\n` (at most 64 KiB).
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 65536 || stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        if head.is_empty() && byte[0] == 0x16 {
            // A TLS ClientHello on this plain-http port: answer as Go's http server does,
            // so https-then-http probing fails fast.
            let _ = stream.write_all(
                b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            );
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

fn parse_request(head: &[u8]) -> Option<RequestHead> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(RequestHead {
        method,
        target,
        headers,
    })
}

/// Write a complete response with a body.
fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A background accept loop on 127.0.0.1 that stops on drop.
pub struct Server {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn spawn(
        handler: impl Fn(TcpStream, &std::sync::atomic::AtomicBool) + Send + Sync + 'static,
    ) -> Server {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handler = Arc::new(handler);
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let h = handler.clone();
                        let s = stop2.clone();
                        std::thread::spawn(move || h(stream, &s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return,
                }
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Token server.
// ---------------------------------------------------------------------------------------

/// What the token server does; shared with the test.
#[derive(Debug, Default)]
pub struct TokenState {
    /// Tokens issued so far.
    pub issued: usize,
    /// Issue this many tokens that expired an hour ago before valid ones.
    pub expired_first: usize,
    /// Requests refused for bad credentials.
    pub refused: usize,
    /// OAuth2 refresh-token grants (POST) answered.
    pub oauth_posts: usize,
}

/// The refresh token ("identitytoken") the token server accepts.
pub const REFRESH_TOKEN: &str = "stowage-test-refresh-token";

/// A JWT token server for docker-registry's `auth: token`, signing ES256 tokens with a key
/// whose self-signed certificate is the registry's root bundle.
pub struct TokenServer {
    server: Server,
    /// The certificate to give the registry as `rootcertbundle`.
    pub root_cert_pem: String,
    /// Shared state (counters, modes).
    pub state: std::sync::Arc<std::sync::Mutex<TokenState>>,
    /// The service name.
    pub service: String,
    /// The issuer name.
    pub issuer: String,
}

impl TokenServer {
    /// Start a token server granting what `user`/`password` ask for, and nothing to
    /// anonymous clients.
    pub fn start(user: &str, password: &str) -> TokenServer {
        use base64::Engine as _;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["token".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stowage test token issuer");
        let cert = params.self_signed(&key).unwrap();
        let cert_der = cert.der().to_vec();
        let signer = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
        )
        .unwrap();
        let state = std::sync::Arc::new(std::sync::Mutex::new(TokenState::default()));
        let service = "stowage-test-registry".to_string();
        let issuer = "stowage-test-issuer".to_string();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (st, svc, iss) = (state.clone(), service.clone(), issuer.clone());
        let server = Server::spawn(move |mut stream, _| {
            let Some(head) = read_head(&mut stream).and_then(|h| parse_request(&h)) else {
                return;
            };
            // POST: the OAuth2 refresh-token grant, form-encoded in the body.
            let mut form_query = String::new();
            if head.method == "POST" {
                use std::io::Read;
                let len: u64 = head
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let _ = (&mut stream).take(len).read_to_string(&mut form_query);
                let form = url_pairs(&form_query);
                let ok = form
                    .iter()
                    .any(|(k, v)| k == "grant_type" && v == "refresh_token")
                    && form
                        .iter()
                        .any(|(k, v)| k == "refresh_token" && v == REFRESH_TOKEN);
                if !ok {
                    st.lock().unwrap().refused += 1;
                    respond(
                        &mut stream,
                        "401 Unauthorized",
                        &[],
                        br#"{"error":"invalid_grant"}"#,
                    );
                    return;
                }
                st.lock().unwrap().oauth_posts += 1;
            } else if head.header("authorization") != Some(expected.as_str()) {
                st.lock().unwrap().refused += 1;
                respond(
                    &mut stream,
                    "401 Unauthorized",
                    &[],
                    br#"{"details":"invalid credentials"}"#,
                );
                return;
            }
            let query = if head.method == "POST" {
                form_query.as_str()
            } else {
                head.target.split_once('?').map(|(_, q)| q).unwrap_or("")
            };
            let mut access = Vec::new();
            for (k, v) in url_pairs(query) {
                if k == "scope" {
                    // repository:NAME:ACTIONS
                    let mut parts = v.splitn(3, ':');
                    let (Some(t), Some(name), Some(actions)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    access.push(serde_json::json!({
                        "type": t, "name": name,
                        "actions": actions.split(',').collect::<Vec<_>>()}));
                }
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let (exp, n) = {
                let mut s = st.lock().unwrap();
                s.issued += 1;
                if s.expired_first > 0 {
                    s.expired_first -= 1;
                    (now - 3600, s.issued)
                } else {
                    (now + 3600, s.issued)
                }
            };
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let header = serde_json::json!({"typ": "JWT", "alg": "ES256",
                "x5c": [base64::engine::general_purpose::STANDARD.encode(&cert_der)]});
            let claims = serde_json::json!({
                "iss": iss, "sub": "tester", "aud": svc, "exp": exp, "nbf": exp - 7200,
                "iat": exp - 7200, "jti": format!("token-{n}"), "access": access});
            let signing_input = format!(
                "{}.{}",
                b64(&serde_json::to_vec(&header).unwrap()),
                b64(&serde_json::to_vec(&claims).unwrap())
            );
            let sig = signer
                .sign(
                    &aws_lc_rs::rand::SystemRandom::new(),
                    signing_input.as_bytes(),
                )
                .unwrap();
            let token = format!("{signing_input}.{}", b64(sig.as_ref()));
            let body = serde_json::to_vec(&serde_json::json!({"token": token, "expires_in": 3600}))
                .unwrap();
            respond(
                &mut stream,
                "200 OK",
                &[("Content-Type", "application/json".into())],
                &body,
            );
        });
        TokenServer {
            server,
            root_cert_pem: cert.pem(),
            state,
            service,
            issuer,
        }
    }

    /// The realm URL.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr)
    }

    /// The registry auth configuration that trusts this server.
    pub fn auth(&self) -> Auth {
        Auth::Token {
            realm: self.realm(),
            service: self.service.clone(),
            issuer: self.issuer.clone(),
            root_cert_pem: self.root_cert_pem.clone(),
        }
    }
}

/// Decode `a=b&c=d` (percent-decoding, `+` as space).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match h {
                        Some(b) => {
                            out.push(b);
                            i += 3;
                        }
                        None => {
                            out.push(b'%');
                            i += 1;
                        }
                    }
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Fault-injecting proxy.
// ---------------------------------------------------------------------------------------

/// What the proxy does to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Send the response head and only this many body bytes, then close.
    Truncate(usize),
    /// Flip the bits of the body byte at this offset.
    Corrupt(usize),
    /// Answer with this status and an empty body, without asking the registry.
    Status(u16),
    /// Send the head and this many body bytes, then send nothing more (until the client
    /// goes away or 120 s pass).
    Stall(usize),
    /// Send the body in pieces of `chunk` bytes with `delay_ms` between them.
    Trickle {
        /// Bytes per piece.
        chunk: usize,
        /// Pause between pieces.
        delay_ms: u64,
    },
    /// Answer `307` to the same path on another origin (the blob server).
    Redirect(String),
    /// Answer `401` with this `WWW-Authenticate` value (a token the registry no longer
    /// accepts).
    Unauthorized(String),
    /// Remove the request's `Range` header (a server that ignores ranges).
    IgnoreRange,
}

/// A fault applied to the next `times` requests whose target contains `path`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Substring of the request target, or `=TARGET` for an exact match.
    pub path: String,
    /// What to do.
    pub fault: Fault,
    /// How many more requests it applies to.
    pub times: usize,
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request.
    pub head: RequestHead,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

/// A reverse proxy to a registry that injects faults.
pub struct FaultProxy {
    server: Server,
    /// Rules, consumed in order.
    pub rules: std::sync::Arc<std::sync::Mutex<Vec<Rule>>>,
    /// Requests seen.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl FaultProxy {
    /// Proxy to `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> FaultProxy {
        let rules: std::sync::Arc<std::sync::Mutex<Vec<Rule>>> = Default::default();
        let seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>> = Default::default();
        let (r, s, up) = (rules.clone(), seen.clone(), upstream.to_string());
        let server = Server::spawn(move |mut client, stop| {
            let Some(head_bytes) = read_head(&mut client) else {
                return;
            };
            let Some(mut head) = parse_request(&head_bytes) else {
                return;
            };
            let fault = {
                let mut rules = r.lock().unwrap();
                let hit = rules.iter_mut().find(|rule| {
                    rule.times > 0
                        && match rule.path.strip_prefix('=') {
                            Some(exact) => head.target == exact,
                            None => head.target.contains(&rule.path),
                        }
                });
                hit.map(|rule| {
                    rule.times -= 1;
                    rule.fault.clone()
                })
            };
            s.lock().unwrap().push(Seen {
                head: head.clone(),
                fault: fault.clone(),
            });
            match &fault {
                Some(Fault::Status(code)) => {
                    respond(&mut client, &format!("{code} Injected"), &[], b"");
                    return;
                }
                Some(Fault::Redirect(origin)) => {
                    respond(
                        &mut client,
                        "307 Temporary Redirect",
                        &[("Location", format!("http://{origin}{}", head.target))],
                        b"",
                    );
                    return;
                }
                Some(Fault::Unauthorized(challenge)) => {
                    respond(
                        &mut client,
                        "401 Unauthorized",
                        &[("WWW-Authenticate", challenge.clone()), ("Content-Type", "application/json".into())],
                        br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                    );
                    return;
                }
                Some(Fault::IgnoreRange) => head.headers.retain(|(n, _)| n != "range"),
                _ => {}
            }
            let Ok(mut upstream) = TcpStream::connect(&up) else {
                return;
            };
            let mut req = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
            for (n, v) in &head.headers {
                if n != "connection" {
                    req.push_str(&format!("{n}: {v}\r\n"));
                }
            }
            req.push_str("Connection: close\r\n\r\n");
            if upstream.write_all(req.as_bytes()).is_err() {
                return;
            }
            // A request body (uploads): forward exactly Content-Length bytes.
            let body_len: u64 = head
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if body_len > 0 {
                use std::io::Read;
                let mut limited = (&mut client).take(body_len);
                if std::io::copy(&mut limited, &mut upstream).is_err() {
                    return;
                }
            }
            let Some(resp_head) = read_head(&mut upstream) else {
                return;
            };
            if client.write_all(&resp_head).is_err() {
                return;
            }
            // The body, up to upstream EOF, with the fault applied.
            use std::io::Read;
            let mut offset = 0usize;
            let mut buf = vec![0u8; 16384];
            loop {
                let n = match upstream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let chunk = &mut buf[..n];
                match &fault {
                    Some(Fault::Truncate(limit)) | Some(Fault::Stall(limit)) => {
                        let keep = limit.saturating_sub(offset).min(n);
                        let _ = client.write_all(&chunk[..keep]);
                        offset += n;
                        if offset >= *limit {
                            if let Some(Fault::Stall(_)) = &fault {
                                let _ = client.flush();
                                stall(&mut client, stop);
                            }
                            return;
                        }
                        continue;
                    }
                    Some(Fault::Corrupt(at)) if *at >= offset && *at < offset + n => {
                        chunk[at - offset] ^= 0xff;
                    }
                    Some(Fault::Trickle {
                        chunk: piece,
                        delay_ms,
                    }) => {
                        for p in chunk.chunks(*piece) {
                            if client.write_all(p).is_err() {
                                return;
                            }
                            let _ = client.flush();
                            std::thread::sleep(Duration::from_millis(*delay_ms));
                        }
                        offset += n;
                        continue;
                    }
                    _ => {}
                }
                if client.write_all(chunk).is_err() {
                    return;
                }
                offset += n;
            }
        });
        FaultProxy {
            server,
            rules,
            seen,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.server.addr
    }

    /// Add a rule.
    pub fn add(&self, path: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            path: path.to_string(),
            fault,
            times,
        });
    }

    /// Requests seen whose target contains `path`.
    pub fn requests(&self, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.head.target.contains(path))
            .cloned()
            .collect()
    }
}

/// Hold a connection open without sending, until the peer closes it, the server stops, or
/// 120 s pass.
fn stall(client: &mut TcpStream, stop: &std::sync::atomic::AtomicBool) {
    use std::io::Read;
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut b = [0u8; 1];
    for _ in 0..2400 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        match client.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Blob storage server (the target of redirects).
// ---------------------------------------------------------------------------------------

/// Serves `/v2/REPO/blobs/DIGEST` from a registry's storage directory, like a CDN that a
/// registry redirects to, and records the Authorization headers it was sent.
pub struct BlobServer {
    server: Server,
    /// Authorization headers received (must stay empty).
    pub authorizations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests served.
    pub served: std::sync::Arc<std::sync::Mutex<usize>>,
}

impl BlobServer {
    /// Serve blobs from `storage` (a docker-registry filesystem root).
    pub fn start(storage: PathBuf) -> BlobServer {
        let authorizations: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let served: std::sync::Arc<std::sync::Mutex<usize>> = Default::default();
        let (a, s) = (authorizations.clone(), served.clone());
        let server = Server::spawn(move |mut stream, _| {
            let Some(head) = read_head(&mut stream).and_then(|h| parse_request(&h)) else {
                return;
            };
            if let Some(v) = head.header("authorization") {
                a.lock().unwrap().push(v.to_string());
            }
            let digest = head.target.rsplit('/').next().unwrap_or("");
            let Some(hex) = digest.strip_prefix("sha256:") else {
                respond(&mut stream, "404 Not Found", &[], b"");
                return;
            };
            let path = storage
                .join("docker/registry/v2/blobs/sha256")
                .join(&hex[..2.min(hex.len())])
                .join(hex)
                .join("data");
            match std::fs::read(path) {
                Ok(data) => {
                    *s.lock().unwrap() += 1;
                    respond(
                        &mut stream,
                        "200 OK",
                        &[("Content-Type", "application/octet-stream".into())],
                        &data,
                    )
                }
                Err(_) => respond(&mut stream, "404 Not Found", &[], b""),
            }
        });
        BlobServer {
            server,
            authorizations,
            served,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.server.addr
    }
}
