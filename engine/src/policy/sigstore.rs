//! Sigstore (cosign) signatures: keys, the simple-signing payload, verification and signing.
//!
//! 1. A signature is a payload (JSON: `critical.identity.docker-reference`,
//!    `critical.image.docker-manifest-digest`, `critical.type` = `cosign container image
//!    signature`, `optional`), with media type [`SIGSTORE_SIGNATURE_MIME_TYPE`], and the
//!    base64 signature over the payload bytes in the [`SIGNATURE_ANNOTATION`] annotation. In a
//!    registry they are the layers of the OCI manifest tagged `sha256-<hex>.sig`.
//! 2. Public keys are PEM `PUBLIC KEY` blocks (SubjectPublicKeyInfo): ECDSA P-256 or P-384,
//!    Ed25519, RSA; the hash is SHA-256, as cosign's. Verification uses `ring`, already
//!    linked for TLS.
//! 3. Only a payload whose signature verifies is parsed, strictly (unknown or missing fields
//!    are refused); then its digest must be the manifest's and its reference must match the
//!    requirement's `signedIdentity`.
//! 4. Private keys are cosign's `ENCRYPTED COSIGN PRIVATE KEY` / `ENCRYPTED SIGSTORE PRIVATE
//!    KEY` PEM: JSON with scrypt parameters, a salt, a nacl/secretbox nonce and the sealed
//!    PKCS#8 key. [`generate_key_pair`] writes the same format (P-256), which skopeo reads.

use std::collections::BTreeMap;

use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use ring::rand::SecureRandom as _;
use ring::signature::{self as rsig, KeyPair as _};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The media type of a sigstore signature payload (a layer of the `.sig` manifest).
pub const SIGSTORE_SIGNATURE_MIME_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One sigstore signature as stored: media type, payload and annotations, all untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreSignature {
    /// The layer's media type.
    pub media_type: String,
    /// The payload bytes (what is signed).
    pub payload: Vec<u8>,
    /// The layer's annotations (the signature, certificates, Rekor bundle).
    pub annotations: BTreeMap<String, String>,
}

/// What a verified payload claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: Digest,
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
}

/// A public key a signature can be checked with.
#[derive(Debug, Clone)]
pub struct PublicKey {
    algorithm: &'static dyn rsig::VerificationAlgorithm,
    bytes: Vec<u8>,
}

impl PublicKey {
    /// Every `PUBLIC KEY` PEM block in `bytes`; `what` names the file for messages.
    pub fn parse_pem(bytes: &[u8], what: &str) -> Result<Vec<PublicKey>> {
        let bad = |reason: String| Error::Malformed {
            what: what.to_string(),
            reason,
        };
        let blocks = pem::parse_many(bytes).map_err(|e| bad(format!("not PEM: {e}")))?;
        let keys: Vec<PublicKey> = blocks
            .iter()
            .filter(|b| b.tag() == "PUBLIC KEY")
            .map(|b| PublicKey::from_spki(b.contents()).map_err(&bad))
            .collect::<Result<_>>()?;
        if keys.is_empty() {
            return Err(bad(
                "no \"PUBLIC KEY\" PEM block (a cosign public key such as cosign.pub is expected)"
                    .into(),
            ));
        }
        Ok(keys)
    }

    /// A key from DER SubjectPublicKeyInfo.
    pub fn from_spki(der: &[u8]) -> std::result::Result<PublicKey, String> {
        const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
        let err = || "not a valid SubjectPublicKeyInfo".to_string();
        let (spki, rest) = der_take(der, 0x30).ok_or_else(err)?;
        if !rest.is_empty() {
            return Err(err());
        }
        let (alg, rest) = der_take(spki, 0x30).ok_or_else(err)?;
        let (bits, rest) = der_take(rest, 0x03).ok_or_else(err)?;
        if !rest.is_empty() || bits.first() != Some(&0) {
            return Err(err());
        }
        let key = bits[1..].to_vec();
        let (oid, params) = der_take(alg, 0x06).ok_or_else(err)?;
        let param_oid = der_take(params, 0x06).map(|(o, _)| o);
        let algorithm: &'static dyn rsig::VerificationAlgorithm =
            match (oid, param_oid) {
                (EC, Some(P256)) => &rsig::ECDSA_P256_SHA256_ASN1,
                (EC, Some(P384)) => &rsig::ECDSA_P384_SHA256_ASN1,
                (ED25519, _) => &rsig::ED25519,
                (RSA, _) => &rsig::RSA_PKCS1_2048_8192_SHA256,
                _ => return Err(
                    "unsupported key algorithm (ECDSA P-256/P-384, Ed25519 and RSA are supported)"
                        .into(),
                ),
            };
        Ok(PublicKey {
            algorithm,
            bytes: key,
        })
    }

    /// Whether `signature` is this key's signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        rsig::UnparsedPublicKey::new(self.algorithm, &self.bytes)
            .verify(message, signature)
            .is_ok()
    }
}

/// One DER element with tag `tag` at the start of `input`: (contents, rest).
fn der_take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Check `signature` with `keys`: the cryptographic signature first, then parse the payload.
/// The caller still checks the digest and the identity. Errors say why it is not accepted.
pub fn verify(
    keys: &[PublicKey],
    signature: &SigstoreSignature,
) -> std::result::Result<Payload, String> {
    let b64 = signature
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or_else(|| format!("missing {SIGNATURE_ANNOTATION} annotation"))?;
    let raw = B64
        .decode(b64.trim())
        .map_err(|e| format!("invalid signature: base64 decoding: {e}"))?;
    if !keys.iter().any(|k| k.verify(&signature.payload, &raw)) {
        return Err(format!(
            "cryptographic signature verification failed: the signature does not verify with the {} configured public key(s)",
            keys.len()
        ));
    }
    parse_payload(&signature.payload)
}

/// Parse a (verified) payload strictly, as containers/image does.
pub fn parse_payload(bytes: &[u8]) -> std::result::Result<Payload, String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid signature payload: {e}"))?;
    let exact = |v: &Value,
                 fields: &[&str],
                 what: &str|
     -> std::result::Result<serde_json::Map<String, Value>, String> {
        let o = v
            .as_object()
            .ok_or_else(|| format!("invalid signature payload: {what} is not an object"))?;
        for k in o.keys() {
            if !fields.contains(&k.as_str()) {
                return Err(format!(
                    "invalid signature payload: unexpected field {what}.{k}"
                ));
            }
        }
        for f in fields {
            if !o.contains_key(*f) {
                return Err(format!(
                    "invalid signature payload: missing field {what}.{f}"
                ));
            }
        }
        Ok(o.clone())
    };
    let top = exact(&v, &["critical", "optional"], "payload")?;
    let critical = exact(&top["critical"], &["type", "image", "identity"], "critical")?;
    if critical["type"].as_str() != Some(SIGNATURE_TYPE) {
        return Err(format!(
            "invalid signature payload: unrecognized signature type {}",
            critical["type"]
        ));
    }
    let image = exact(
        &critical["image"],
        &["docker-manifest-digest"],
        "critical.image",
    )?;
    let identity = exact(
        &critical["identity"],
        &["docker-reference"],
        "critical.identity",
    )?;
    let digest = image["docker-manifest-digest"]
        .as_str()
        .ok_or("invalid signature payload: docker-manifest-digest is not a string")?;
    let manifest_digest = crate::digest::parse_digest(digest).map_err(|e| {
        format!("invalid signature payload: docker-manifest-digest {digest:?}: {e}")
    })?;
    let docker_reference = identity["docker-reference"]
        .as_str()
        .ok_or("invalid signature payload: docker-reference is not a string")?
        .to_string();
    Ok(Payload {
        manifest_digest,
        docker_reference,
    })
}

/// The payload for a signature of manifest `digest` as image `reference`.
pub fn make_payload(digest: &Digest, reference: &str) -> Vec<u8> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    serde_json::to_vec(&serde_json::json!({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": SIGNATURE_TYPE,
        },
        "optional": {
            "creator": concat!("stowage ", env!("CARGO_PKG_VERSION")),
            "timestamp": timestamp,
        },
    }))
    .expect("a JSON value serialises")
}

/// A private key to sign with (ECDSA P-256, the kind cosign generates).
pub struct PrivateKey {
    pair: rsig::EcdsaKeyPair,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(ECDSA P-256)")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}
#[derive(serde::Serialize, serde::Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}
#[derive(serde::Serialize, serde::Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}
#[derive(serde::Serialize, serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

fn secretbox_key(
    passphrase: &[u8],
    salt: &[u8],
    p: &KdfParams,
) -> std::result::Result<[u8; 32], String> {
    if !p.n.is_power_of_two() || p.n < 2 {
        return Err(format!("scrypt N = {} is not a power of two", p.n));
    }
    let params = scrypt::Params::new(p.n.trailing_zeros() as u8, p.r, p.p, 32)
        .map_err(|e| format!("invalid scrypt parameters: {e}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(passphrase, salt, &params, &mut key).map_err(|e| format!("scrypt: {e}"))?;
    Ok(key)
}

impl PrivateKey {
    /// Decrypt a cosign private key file (`what` names it in messages).
    pub fn from_encrypted_pem(bytes: &[u8], passphrase: &[u8], what: &str) -> Result<PrivateKey> {
        let bad = |reason: String| Error::Malformed {
            what: what.to_string(),
            reason,
        };
        let block = pem::parse(bytes).map_err(|e| bad(format!("not PEM: {e}")))?;
        if block.tag() != "ENCRYPTED COSIGN PRIVATE KEY"
            && block.tag() != "ENCRYPTED SIGSTORE PRIVATE KEY"
        {
            return Err(bad(format!(
                "unsupported PEM block {:?} (expected an ENCRYPTED SIGSTORE PRIVATE KEY or ENCRYPTED COSIGN PRIVATE KEY, as cosign generate-key-pair writes)",
                block.tag()
            )));
        }
        let sealed: Sealed = serde_json::from_slice(block.contents())
            .map_err(|e| bad(format!("not an encrypted key: {e}")))?;
        if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
            return Err(bad(format!(
                "unsupported encryption {} + {} (scrypt + nacl/secretbox expected)",
                sealed.kdf.name, sealed.cipher.name
            )));
        }
        let dec = |s: &str| {
            B64.decode(s)
                .map_err(|e| bad(format!("invalid base64: {e}")))
        };
        let salt = dec(&sealed.kdf.salt)?;
        let nonce = dec(&sealed.cipher.nonce)?;
        let ciphertext = dec(&sealed.ciphertext)?;
        if nonce.len() != 24 {
            return Err(bad(format!("nonce of {} bytes, expected 24", nonce.len())));
        }
        let key = secretbox_key(passphrase, &salt, &sealed.kdf.params).map_err(&bad)?;
        let pkcs8 = crypto_secretbox::XSalsa20Poly1305::new(&key.into())
            .decrypt(nonce.as_slice().into(), ciphertext.as_slice())
            .map_err(|_| {
                bad("decryption failed: wrong passphrase, or the file is damaged".into())
            })?;
        let pair = rsig::EcdsaKeyPair::from_pkcs8(
            &rsig::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| {
            bad(format!(
                "not an ECDSA P-256 PKCS#8 key (stowage signs with P-256 keys only): {e}"
            ))
        })?;
        Ok(PrivateKey { pair })
    }

    /// Sign `payload`; returns the base64 signature for [`SIGNATURE_ANNOTATION`].
    pub fn sign(&self, payload: &[u8]) -> Result<String> {
        let sig = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), payload)
            .map_err(|_| Error::Malformed {
                what: "signing a sigstore payload".into(),
                reason: "the ECDSA signer failed".into(),
            })?;
        Ok(B64.encode(sig.as_ref()))
    }

    /// The public key, as a `PUBLIC KEY` PEM block.
    pub fn public_pem(&self) -> String {
        public_pem(self.pair.public_key().as_ref())
    }

    /// A signature layer for manifest `digest` as `reference`.
    pub fn sign_manifest(&self, digest: &Digest, reference: &str) -> Result<SigstoreSignature> {
        let payload = make_payload(digest, reference);
        let sig = self.sign(&payload)?;
        Ok(SigstoreSignature {
            media_type: SIGSTORE_SIGNATURE_MIME_TYPE.to_string(),
            payload,
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), sig)]),
        })
    }
}

fn public_pem(point: &[u8]) -> String {
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    spki.extend_from_slice(point);
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki))
}

/// A new ECDSA P-256 key pair: (private key PEM encrypted with `passphrase` in cosign's
/// format, public key PEM), as `cosign generate-key-pair` and `skopeo
/// generate-sigstore-key` write them.
pub fn generate_key_pair(passphrase: &[u8]) -> Result<(String, String)> {
    let rng = ring::rand::SystemRandom::new();
    let fail = |what: &str| Error::Malformed {
        what: "generating a key pair".into(),
        reason: what.to_string(),
    };
    let pkcs8 = rsig::EcdsaKeyPair::generate_pkcs8(&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| fail("key generation failed"))?;
    let pair =
        rsig::EcdsaKeyPair::from_pkcs8(&rsig::ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| fail("the generated key does not load"))?;
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    rng.fill(&mut salt).map_err(|_| fail("no random bytes"))?;
    rng.fill(&mut nonce).map_err(|_| fail("no random bytes"))?;
    let params = KdfParams {
        n: 32768,
        r: 8,
        p: 1,
    };
    let key = secretbox_key(passphrase, &salt, &params).map_err(|e| fail(&e))?;
    let ciphertext = crypto_secretbox::XSalsa20Poly1305::new(&key.into())
        .encrypt(&nonce.into(), pkcs8.as_ref())
        .map_err(|_| fail("encryption failed"))?;
    let sealed = Sealed {
        kdf: Kdf {
            name: "scrypt".into(),
            params,
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(ciphertext),
    };
    let json = serde_json::to_vec(&sealed).expect("serialises");
    Ok((
        pem::encode(&pem::Pem::new("ENCRYPTED COSIGN PRIVATE KEY", json)),
        public_pem(pair.public_key().as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let (private, public) = generate_key_pair(b"pw").unwrap();
        assert!(
            PrivateKey::from_encrypted_pem(private.as_bytes(), b"wrong", "k")
                .unwrap_err()
                .to_string()
                .contains("wrong passphrase")
        );
        let key = PrivateKey::from_encrypted_pem(private.as_bytes(), b"pw", "k").unwrap();
        let keys = PublicKey::parse_pem(public.as_bytes(), "k.pub").unwrap();
        let digest = crate::digest::sha256_of(b"manifest");
        let sig = key.sign_manifest(&digest, "127.0.0.1:5000/x:1").unwrap();
        let p = verify(&keys, &sig).unwrap();
        assert_eq!(p.manifest_digest, digest);
        assert_eq!(p.docker_reference, "127.0.0.1:5000/x:1");
        let mut bad = sig.clone();
        bad.payload[10] ^= 1;
        assert!(verify(&keys, &bad)
            .unwrap_err()
            .contains("verification failed"));
        let (_, other) = generate_key_pair(b"pw").unwrap();
        let other = PublicKey::parse_pem(other.as_bytes(), "o.pub").unwrap();
        assert!(verify(&other, &sig).is_err());
    }

    #[test]
    fn payload_is_parsed_strictly() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let ok = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"x"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert!(parse_payload(ok.as_bytes()).is_ok());
        let extra = ok.replace(r#""type""#, r#""extra":1,"type""#);
        assert!(parse_payload(extra.as_bytes())
            .unwrap_err()
            .contains("unexpected field"));
        let other = ok.replace("cosign container image signature", "x");
        assert!(parse_payload(other.as_bytes())
            .unwrap_err()
            .contains("unrecognized"));
    }
}
