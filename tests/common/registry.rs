//! Test harness for registry tests: a real `docker-registry` on 127.0.0.1, skopeo, small
//! OCI test images, and the stowage binary.
//!
//! 1. [`require_tools`] checks that docker-registry and skopeo exist; without them a test
//!    prints `SKIP:` and returns, unless `CI=true`, where it fails.
//! 2. [`Registry::start`] writes a config (storage in a temp dir, a free loopback port,
//!    optional htpasswd / token auth and TLS), runs `docker-registry serve`, waits until the
//!    port accepts connections, and kills the process on drop.
//! 3. [`build_image`] and [`build_index`] write deterministic OCI layouts to push with
//!    skopeo; [`stowage`] and [`skopeo`] run the binaries.

#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Whether the external tools are present. Prints `SKIP:` when not (and panics under CI).
pub fn require_tools(test: &str) -> bool {
    let missing: Vec<&str> = ["docker-registry", "skopeo"]
        .into_iter()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIP: {test}: {} not installed", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true requires them)");
    }
    eprintln!("{msg}");
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
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

/// Run a command, returning its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Run a command that must succeed; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `skopeo` command.
pub fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.env_remove("REGISTRY_AUTH_FILE");
    c
}

/// A `stowage` command (the binary under test).
pub fn stowage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stowage"));
    c.env_remove("REGISTRY_AUTH_FILE");
    c
}

/// sha256 digest string of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One file in a test layer.
pub struct File<'a> {
    /// Path in the layer.
    pub path: &'a str,
    /// Content.
    pub data: Vec<u8>,
}

/// Deterministic pseudo-random bytes (so layers do not compress to nothing).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A gzip-compressed layer tar of `files`: (blob, diffID).
pub fn layer(files: &[File<'_>]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, f.path, f.data.as_slice()).unwrap();
    }
    let raw = tar.into_inner().unwrap();
    let diff_id = sha256(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// An image's pieces as written into a layout.
pub struct BuiltImage {
    /// Manifest digest.
    pub manifest_digest: String,
    /// Manifest size.
    pub manifest_size: usize,
    /// Layer blob digests.
    pub layers: Vec<String>,
    /// Layer diffIDs.
    pub diff_ids: Vec<String>,
}

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.strip_prefix("sha256:").unwrap()), bytes).unwrap();
    d
}

fn write_index(layout: &Path, entries: Vec<serde_json::Value>) {
    std::fs::create_dir_all(layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Write the blobs of a single-platform image (layers made from `layers`, seeded by
/// `seed`) into `layout` and return it (not yet in index.json).
pub fn write_image_blobs(layout: &Path, arch: &str, layers: &[Vec<File<'_>>]) -> BuiltImage {
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    let mut diff_ids = Vec::new();
    for files in layers {
        let (blob, diff_id) = layer(files);
        let d = write_blob(layout, &blob);
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d, "size": blob.len()}));
        digests.push(d);
        diff_ids.push(diff_id);
    }
    let config = serde_json::json!({
        "created": "2026-11-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": {"test": "stowage"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created": "2026-11-01T00:00:00Z", "created_by": "test"})).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = write_blob(layout, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": descs,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = write_blob(layout, &manifest_bytes);
    BuiltImage {
        manifest_digest,
        manifest_size: manifest_bytes.len(),
        layers: digests,
        diff_ids,
    }
}

/// A one-platform image in a new layout at `layout`, tagged `tag`.
pub fn build_image(layout: &Path, tag: &str, layers: &[Vec<File<'_>>]) -> BuiltImage {
    let img = write_image_blobs(layout, "amd64", layers);
    write_index(
        layout,
        vec![serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.manifest_digest, "size": img.manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag}})],
    );
    img
}

/// A multi-platform image (amd64 and arm64/v8) in a new layout, tagged `tag`; returns the
/// index digest and the two images.
pub fn build_index(layout: &Path, tag: &str) -> (String, BuiltImage, BuiltImage) {
    let amd = write_image_blobs(
        layout,
        "amd64",
        &[vec![File {
            path: "arch",
            data: b"amd64\n".to_vec(),
        }]],
    );
    let arm = write_image_blobs(
        layout,
        "arm64",
        &[vec![File {
            path: "arch",
            data: b"arm64\n".to_vec(),
        }]],
    );
    let index = serde_json::json!({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.manifest_digest, "size": amd.manifest_size,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.manifest_digest, "size": arm.manifest_size,
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
    ]});
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = write_blob(layout, &bytes);
    write_index(
        layout,
        vec![serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest, "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag}})],
    );
    (digest, amd, arm)
}

/// A typical two-layer test image (about 300 KiB of incompressible data).
pub fn two_layer_image(layout: &Path, tag: &str) -> BuiltImage {
    build_image(
        layout,
        tag,
        &[
            vec![
                File {
                    path: "etc/hello",
                    data: b"hello\n".to_vec(),
                },
                File {
                    path: "usr/lib/big",
                    data: noise(1, 200_000),
                },
            ],
            vec![File {
                path: "usr/lib/more",
                data: noise(2, 100_000),
            }],
        ],
    )
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
    run_ok(&mut c);
}

/// The manifest digest of the single entry (or the entry tagged `tag`) of an OCI layout.
pub fn layout_manifest_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Read a blob of a layout.
pub fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap()
}

/// The set of blob digests in a layout.
pub fn layout_blobs(layout: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .map(|rd| {
            rd.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The diffIDs of the image tagged `tag` in a layout.
pub fn layout_diff_ids(layout: &Path, tag: &str) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_slice(&layout_blob(layout, &layout_manifest_digest(layout, tag))).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&layout_blob(
        layout,
        m["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
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
