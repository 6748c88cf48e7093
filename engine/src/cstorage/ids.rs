//! Identifiers of containers-storage: layer IDs, image IDs and overlay link names.
//!
//! 1. A layer pulled by containers/image is named after its place in the chain: the base
//!    layer's ID is its diffID hex; a child's is `sha256(parentID + "+" + diffID hex)` (a chain
//!    ID variant, not the OCI ChainID).
//! 2. An image's ID is the hex of its config digest (schema2 and OCI manifests).
//! 3. The overlay driver gives each layer a 26-character link name, `l/<LINK>`: 17 random bytes
//!    in base32 (RFC 4648 alphabet `A-Z2-7`), cut to 26 characters. The encoder is hand-written
//!    (a dozen lines) rather than pulling a base32 crate for this one use.

use rand::RngCore;
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The layer ID containers/image gives a layer with diffID `diff_id` on top of `parent`.
pub fn layer_id(parent: Option<&str>, diff_id: &Digest) -> String {
    match parent {
        None => diff_id.digest().to_string(),
        Some(parent) => {
            let mut h = Sha256::new();
            h.update(parent.as_bytes());
            h.update(b"+");
            h.update(diff_id.digest().as_bytes());
            hex::encode(h.finalize())
        }
    }
}

/// The IDs of a chain of layers with diffIDs `diff_ids` (bottom first), as containers/image
/// names them.
pub fn layer_ids(diff_ids: &[Digest]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let id = layer_id(out.last().map(String::as_str), d);
        out.push(id);
    }
    out
}

/// The image ID for an image whose config has digest `config`.
pub fn image_id(config: &Digest) -> String {
    config.digest().to_string()
}

/// Whether `s` is a full store ID: 64 lowercase hex digits.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check that `id` is a full store ID, naming `what` in the error.
pub fn check_id(id: &str, what: &str) -> Result<()> {
    if is_full_id(id) {
        Ok(())
    } else {
        Err(Error::Malformed {
            what: format!("{what} ID {id:?}"),
            reason: "expected 64 lowercase hex digits".into(),
        })
    }
}

/// Whether `s` looks like an overlay link name (the characters base32 produces).
pub fn is_link_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
}

/// A fresh random link name: base32 of 17 random bytes, 26 characters.
pub fn new_link_id() -> String {
    let mut bytes = [0u8; 17];
    rand::rng().fill_bytes(&mut bytes);
    let mut s = base32_std(&bytes);
    s.truncate(26);
    s
}

/// RFC 4648 base32 with the standard alphabet, no padding.
fn base32_std(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u64 = 0;
    let mut bits = 0u32;
    for &b in data {
        buffer = (buffer << 8) | u64::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::parse_digest;

    // Values verified against skopeo 1.9 in the reference notes (§2, §7).
    const BASE_DIFF: &str =
        "sha256:d64fbeb2048b6f54af25e1dba71b2edcd69b8d814b7bcd5cdf967f93e64ffeb0";
    const CHILD_DIFF: &str =
        "sha256:cb7a44641236ad24096126ddec4653084f22ceb5d5f471600989551cb36df8a9";
    const CHILD_ID: &str = "da2c6e39702eaf24fe91e5089490506cede16f5395c9f8fd53d7117904d88f96";

    #[test]
    fn layer_ids_match_containers_image() {
        let base = parse_digest(BASE_DIFF).unwrap();
        let child = parse_digest(CHILD_DIFF).unwrap();
        assert_eq!(layer_id(None, &base), &BASE_DIFF[7..]);
        assert_eq!(layer_id(Some(&BASE_DIFF[7..]), &child), CHILD_ID);
        assert_eq!(
            layer_ids(&[base, child]),
            vec![BASE_DIFF[7..].to_string(), CHILD_ID.to_string()]
        );
    }

    #[test]
    fn image_id_is_config_hex() {
        let d =
            parse_digest("sha256:0c4adc37a5e2ce568211891da81868ea8ecc2575ff67637859b34753840af2a7")
                .unwrap();
        assert_eq!(
            image_id(&d),
            "0c4adc37a5e2ce568211891da81868ea8ecc2575ff67637859b34753840af2a7"
        );
        assert!(is_full_id(&image_id(&d)));
        assert!(!is_full_id("0c4adc37"));
        assert!(check_id("../etc", "layer").is_err());
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        assert_eq!(base32_std(b"f"), "MY");
        assert_eq!(base32_std(b"fo"), "MZXQ");
        assert_eq!(base32_std(b"foo"), "MZXW6");
        assert_eq!(base32_std(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn link_ids_have_the_overlay_shape() {
        let a = new_link_id();
        let b = new_link_id();
        assert_eq!(a.len(), 26);
        assert!(is_link_id(&a), "{a}");
        assert!(is_link_id("GICVA3P4O5PFOTCYYCYX3OGPNQ"));
        assert!(!is_link_id("../x"));
        assert_ne!(a, b);
    }
}
