//! certs.d directories (`read_cert_dir`) and the PEM they hold, as the registry client loads
//! it (`RegistryClient::new`: CA bundles, client certificate + key).
//!
//! Input: one byte choosing which files the directory has, then their contents separated by
//! a NUL byte. No network: the client is only built.
//! Properties: a `.cert` without its `.key` (or the other way round) is refused; every `.crt`
//! is a CA and is read exactly as written.
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stowage_engine::registry::{read_cert_dir, ClientSettings, RegistryClient};

const NAMES: [&str; 5] = ["ca.crt", "client.cert", "client.key", "other.crt", "z.key"];

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary directory").keep())
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch().join("certs.d/r.example:5000");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut parts = rest.split(|&b| b == 0);
    let mut written = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        if sel & (1 << i) != 0 {
            let body = parts.next().unwrap_or_default();
            std::fs::write(dir.join(name), body).unwrap();
            written.push((*name, body.to_vec()));
        }
    }
    let has = |n: &str| written.iter().any(|(w, _)| *w == n);
    let pairs_ok = has("client.cert") == has("client.key") && !has("z.key");
    match read_cert_dir(&dir) {
        Ok(tls) => {
            assert!(
                pairs_ok,
                "an unpaired client certificate or key was accepted"
            );
            let cas: Vec<&Vec<u8>> = tls.ca_pems.iter().map(|(_, p)| p).collect();
            let want: Vec<&Vec<u8>> = written
                .iter()
                .filter(|(n, _)| n.ends_with(".crt"))
                .map(|(_, b)| b)
                .collect();
            assert_eq!(cas, want, "CA files read back differently");
            assert_eq!(tls.identity_pem.is_some(), has("client.cert"));
            let settings = ClientSettings {
                tls,
                ..ClientSettings::default()
            };
            let _ = RegistryClient::new("r.example:5000", settings);
        }
        Err(_) => assert!(!pairs_ok, "a well-paired directory was refused"),
    }
});
