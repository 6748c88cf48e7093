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
//! 1. [`auth`]: credentials, `WWW-Authenticate` challenges, bearer tokens;
//! 2. [`config`]: TLS material from `--cert-dir`;
//! 3. [`client`]: one registry host: ping, auth, retries with backoff, redirects without
//!    leaking `Authorization`, connect and idle timeouts (async, on a process-wide tokio
//!    runtime, with blocking entry points);
//! 4. [`stream`]: a blob as a blocking `Read` that retries and resumes with `Range`;
//! 5. [`source`]: `docker://` as an [`ImageSource`](crate::copy::ImageSource).
//!
//! This module knows nothing of other stores; [`crate::endpoint`] connects it to them.

pub mod auth;
pub mod client;
pub mod config;
pub mod source;
pub mod stream;

use std::path::PathBuf;
use std::time::Duration;

pub use auth::Credentials;
pub use client::{ClientSettings, RegistryClient};
pub use source::RegistrySource;

use crate::error::Result;

/// Registry settings for one side of a copy (skopeo's `--src-*` / `--dest-*` flags).
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `--creds USER:PASS`: used for every registry this side talks to.
    pub credentials: Option<Credentials>,
    /// `--tls-verify`: `Some(false)` accepts any certificate and allows plain http;
    /// `None` is the default (verify).
    pub tls_verify: Option<bool>,
    /// `--cert-dir`: CA certificates (`*.crt`) and client certificates (`*.cert` + `*.key`).
    pub cert_dir: Option<PathBuf>,
    /// `--retry-times`: retries after the first attempt.
    pub retry_times: u32,
    /// Delay before the first retry (doubling after).
    pub retry_delay: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for response headers or the next chunk of a body.
    pub idle_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        let c = ClientSettings::default();
        RegistryOptions {
            credentials: None,
            tls_verify: None,
            cert_dir: None,
            retry_times: c.retry_times,
            retry_delay: c.retry_delay,
            connect_timeout: c.connect_timeout,
            idle_timeout: c.idle_timeout,
        }
    }
}

impl RegistryOptions {
    /// The client settings for `registry`.
    pub fn client_settings(&self, _registry: &str) -> Result<ClientSettings> {
        let tls = match &self.cert_dir {
            Some(dir) => config::read_cert_dir(dir)?,
            None => Default::default(),
        };
        Ok(ClientSettings {
            credentials: self.credentials.clone(),
            tls_verify: self.tls_verify.unwrap_or(true),
            tls,
            retry_times: self.retry_times,
            retry_delay: self.retry_delay,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
        })
    }
}
