//! The native registry client: the distribution HTTP API (OCI distribution spec, Docker
//! registry v2) for pulling and pushing images, with no helper binaries.
//!
//! Why a thin client on reqwest instead of the `oci-client` crate: stowage needs to stream
//! every blob straight into its verifying pipeline with resume-on-failure, idle timeouts and
//! bounded read-ahead, to read containers' auth.json / registries.conf / certs.d, and to be
//! testable against a fault-injecting proxy. oci-client buffers whole layers in `pull()`, does
//! not read the containers configuration files, and brings regex, chrono, olpc-cjson and
//! http-auth along; what stowage would use of it (the bearer flow and a few URL shapes) is a
//! few hundred lines here, under our control.
//!
//! Layout:
//! 1. [`auth`]: credentials, `WWW-Authenticate` challenges, bearer tokens (Basic
//!    credentials or an OAuth2 refresh token);
//! 2. the host's configuration, read the way containers/image reads it: [`host_paths`]
//!    (where it lives), [`auth_file`] (auth.json credentials and credential helpers),
//!    [`registries_conf`] (mirrors, insecure, blocked, search registries) and [`certs_d`]
//!    (TLS material), [`registries_d`] (signature storage: sigstore attachments), with the
//!    main types re-exported here;
//! 3. [`client`]: one registry host: ping, auth, retries with backoff, redirects without
//!    leaking `Authorization`, connect and idle timeouts (async, on a process-wide tokio
//!    runtime, with blocking entry points);
//! 4. [`stream`]: a blob as a blocking `Read` that retries and resumes with `Range`;
//! 5. [`source`]: `docker://` as an [`ImageSource`](crate::copy::ImageSource);
//! 6. [`sink`]: `docker://` as an [`ImageSink`](crate::copy::ImageSink) (push);
//! 7. [`manage`]: login and logout (auth.json as podman writes it), deleting a manifest.
//!
//! This module knows nothing of other stores; [`crate::endpoint`] connects it to them.

pub mod auth;
pub mod auth_file;
pub mod certs_d;
pub mod client;
pub mod host_paths;
pub mod manage;
pub mod ranges;
pub mod registries_conf;
pub mod registries_d;
pub mod sink;
pub mod source;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

pub use auth::Credentials;
pub use auth_file::find_credentials;
pub use certs_d::{certs_d_for, read_cert_dir};
pub use client::{ClientSettings, RegistryClient};
pub use host_paths::HostPaths;
pub use registries_conf::{
    MirrorConf, PullFromMirror, RegistriesConf, RegistryConf, RegistryLocation,
};
pub use sink::RegistrySink;
pub use source::RegistrySource;

use crate::error::Result;
use crate::reference::Reference;

/// Registry settings for one side of a copy (skopeo's `--src-*` / `--dest-*` flags).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// `--creds USER:PASS`: used for every registry this side talks to.
    pub credentials: Option<Credentials>,
    /// `--tls-verify`: `Some(false)` accepts any certificate and allows plain http;
    /// `None` is the default (verify).
    pub tls_verify: Option<bool>,
    /// `--cert-dir`: CA certificates (`*.crt`) and client certificates (`*.cert` + `*.key`);
    /// `None`: the registry's certs.d directory.
    pub cert_dir: Option<PathBuf>,
    /// `--authfile`: the only auth file to read; `None`: the standard lookup order.
    pub authfile: Option<PathBuf>,
    /// `--registries-conf`: the registries.conf to read instead of the default one.
    pub registries_conf: Option<PathBuf>,
    /// `--registries.d`: the registries.d directory to read instead of the default one.
    pub registries_d: Option<PathBuf>,
    /// Where the host's configuration files are.
    pub host: HostPaths,
    /// `--retry-times`: retries after the first attempt.
    pub retry_times: u32,
    /// Delay before the first retry (doubling after).
    pub retry_delay: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for response headers or the next chunk of a body.
    pub idle_timeout: Duration,
    /// `--min-rate`: the slowest average rate (bytes/s) a blob download may have before it
    /// fails ([`ClientSettings::min_rate`]; 0: no deadline).
    pub min_rate: u64,
    /// Blobs up to this size are pushed in one request; larger ones in chunks of this size
    /// (one chunk per layer in memory at a time).
    pub upload_chunk_size: usize,
    /// Stops blob downloads when set ([`ClientSettings::cancel`]); the copy pipeline's
    /// [`CopyOptions::cancel`](crate::copy::CopyOptions::cancel) is put here by
    /// [`copy_between`](crate::endpoint::copy_between).
    pub cancel: crate::cancel::Cancel,
}

/// Default [`RegistryOptions::upload_chunk_size`]: 8 MiB.
pub const DEFAULT_UPLOAD_CHUNK_SIZE: usize = 8 << 20;

impl Default for RegistryOptions {
    fn default() -> Self {
        let c = ClientSettings::default();
        RegistryOptions {
            credentials: None,
            tls_verify: None,
            cert_dir: None,
            authfile: None,
            registries_conf: None,
            registries_d: None,
            host: HostPaths::from_env(),
            retry_times: c.retry_times,
            retry_delay: c.retry_delay,
            connect_timeout: c.connect_timeout,
            idle_timeout: c.idle_timeout,
            min_rate: c.min_rate,
            upload_chunk_size: DEFAULT_UPLOAD_CHUNK_SIZE,
            cancel: c.cancel,
        }
    }
}

impl RegistryOptions {
    /// The registries.conf in effect.
    pub fn registries(&self) -> Result<RegistriesConf> {
        RegistriesConf::load(&self.host, self.registries_conf.as_deref())
    }

    /// The registries.d settings in effect (signature storage).
    pub fn registries_d(&self) -> Result<registries_d::RegistriesD> {
        registries_d::RegistriesD::load(&registries_d::RegistriesD::dir(
            self.registries_d.as_deref(),
            &self.host,
        ))
    }

    /// Where to pull `reference` from, mirrors first (blocked registries are an error).
    pub fn pull_endpoints(&self, reference: &Reference) -> Result<Vec<RegistryLocation>> {
        self.registries()?.pull_endpoints(reference)
    }

    /// Where to push `reference` (blocked registries are an error).
    pub fn push_endpoint(&self, reference: &Reference) -> Result<RegistryLocation> {
        self.registries()?.push_endpoint(reference)
    }

    /// The client settings for `endpoint`: `--creds` or the auth files' entry for it;
    /// `--tls-verify` or, when not given, the endpoint's `insecure`; `--cert-dir` or its
    /// certs.d directory.
    pub fn client_settings(&self, endpoint: &RegistryLocation) -> Result<ClientSettings> {
        let credentials = match &self.credentials {
            Some(c) => Some(c.clone()),
            None => find_credentials(
                &self.host,
                self.authfile.as_deref(),
                &endpoint.registry,
                &endpoint.repo,
            )?,
        };
        let cert_dir = self
            .cert_dir
            .clone()
            .or_else(|| certs_d_for(&self.host, &endpoint.registry));
        let tls = match &cert_dir {
            Some(dir) => read_cert_dir(dir)?,
            None => Default::default(),
        };
        Ok(ClientSettings {
            credentials,
            tls_verify: self.tls_verify.unwrap_or(!endpoint.insecure),
            tls,
            retry_times: self.retry_times,
            retry_delay: self.retry_delay,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            min_rate: self.min_rate,
            cancel: self.cancel.clone(),
        })
    }
}
