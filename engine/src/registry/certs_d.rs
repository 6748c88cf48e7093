//! TLS material for a registry from the host's certs.d directories (containers-certs.d(5)).
//!
//! `--cert-dir DIR` names the directory directly; otherwise it is the first existing
//! `HOST[:PORT]` directory under `~/.config/containers/certs.d`, `/etc/containers/certs.d`,
//! `/etc/docker/certs.d`. It holds `*.crt` CA certificates (trusted in addition to the
//! system's) and `NAME.cert` + `NAME.key` client certificates.
//!
//! 1. [`certs_d_for`] finds the directory: the first existing `DIR/HOST[:PORT]` of
//!    [`HostPaths::certs_d_dirs`].
//! 2. [`read_cert_dir`] reads it in name order: every `*.crt` is a CA, and `NAME.cert` needs
//!    its `NAME.key` (and the other way round).

use std::path::{Path, PathBuf};

use super::client::TlsFiles;
use super::host_paths::HostPaths;
use crate::error::{Error, IoContext, Result};

impl HostPaths {
    /// The directories whose `HOST[:PORT]` subdirectory holds a registry's certificates.
    pub fn certs_d_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(c) = self.config_home() {
            dirs.push(c.join("containers/certs.d"));
        }
        dirs.push(self.etc_containers.join("certs.d"));
        dirs.push(self.etc_docker.join("certs.d"));
        dirs
    }
}

/// The certificate directory for `registry` (`host[:port]`): the first existing
/// `DIR/registry` of [`HostPaths::certs_d_dirs`].
pub fn certs_d_for(paths: &HostPaths, registry: &str) -> Option<PathBuf> {
    paths
        .certs_d_dirs()
        .into_iter()
        .map(|d| d.join(registry))
        .find(|d| d.is_dir())
}

/// Read the TLS material in `dir`. A missing directory is empty.
pub fn read_cert_dir(dir: &Path) -> Result<TlsFiles> {
    let mut files = TlsFiles::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(Error::io_path("reading certificate directory", dir, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let read = |name: &str| std::fs::read(dir.join(name)).at("reading", dir.join(name));
    for name in &names {
        if name.ends_with(".crt") {
            files
                .ca_pems
                .push((dir.join(name).display().to_string(), read(name)?));
        } else if let Some(stem) = name.strip_suffix(".cert") {
            let key = format!("{stem}.key");
            if !names.contains(&key) {
                return Err(Error::NotFound {
                    what: format!(
                        "key {} for client certificate {}",
                        dir.join(&key).display(),
                        dir.join(name).display()
                    ),
                    hint: "put the certificate's private key next to it, or remove the .cert file"
                        .into(),
                });
            }
            let mut pem = read(name)?;
            pem.push(b'\n');
            pem.extend(read(&key)?);
            files.identity_pem = Some((dir.join(name).display().to_string(), pem));
        } else if let Some(stem) = name.strip_suffix(".key") {
            if !names.contains(&format!("{stem}.cert")) {
                return Err(Error::NotFound {
                    what: format!(
                        "client certificate {}",
                        dir.join(format!("{stem}.cert")).display()
                    ),
                    hint: format!("{} has no matching .cert file", dir.join(name).display()),
                });
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::super::host_paths::test_support::paths;
    use super::*;

    #[test]
    fn cert_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        assert_eq!(certs_d_for(&p, "r.io:5000"), None);
        std::fs::create_dir_all(tmp.path().join("etc/docker/certs.d/r.io:5000")).unwrap();
        assert_eq!(
            certs_d_for(&p, "r.io:5000"),
            Some(tmp.path().join("etc/docker/certs.d/r.io:5000"))
        );
        std::fs::create_dir_all(tmp.path().join("home/.config/containers/certs.d/r.io:5000"))
            .unwrap();
        assert_eq!(
            certs_d_for(&p, "r.io:5000"),
            Some(tmp.path().join("home/.config/containers/certs.d/r.io:5000"))
        );
    }

    #[test]
    fn cert_dir_contents() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_cert_dir(&tmp.path().join("missing"))
            .unwrap()
            .ca_pems
            .is_empty());
        std::fs::write(tmp.path().join("b.crt"), "B").unwrap();
        std::fs::write(tmp.path().join("a.crt"), "A").unwrap();
        std::fs::write(tmp.path().join("c.cert"), "CERT").unwrap();
        std::fs::write(tmp.path().join("c.key"), "KEY").unwrap();
        std::fs::write(tmp.path().join("README"), "ignored").unwrap();
        let f = read_cert_dir(tmp.path()).unwrap();
        let cas: Vec<&[u8]> = f.ca_pems.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(cas, vec![b"A".as_slice(), b"B".as_slice()]);
        assert_eq!(f.identity_pem.unwrap().1, b"CERT\nKEY");
        std::fs::write(tmp.path().join("d.key"), "KEY").unwrap();
        let err = read_cert_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("d.cert"), "{err}");
    }
}
