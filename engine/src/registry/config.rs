//! Registry configuration read from the host: TLS certificate directories.
//!
//! A certificate directory (`--cert-dir DIR`, or `certs.d/HOST[:PORT]/`) holds, as in
//! containers-certs.d(5):
//! 1. `*.crt`: CA certificates (PEM) trusted for this registry, in addition to the system's;
//! 2. `NAME.cert` with `NAME.key`: a client certificate and its key for mutual TLS (a `.cert`
//!    without its `.key`, or the reverse, is an error, as in containers/image).

use std::path::Path;

use super::client::TlsFiles;
use crate::error::{Error, Result};

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
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| Error::io_path("reading", dir.join(name), e))
    };
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
    use super::*;

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
