//! Evaluating a [`Policy`] for one image, as containers/image's `IsRunningImageAllowed`.
//!
//! 1. The requirements come from the first scope present: `transports.T[identity]`, then
//!    each namespace of the image ([`ImageScopes`]), then `transports.T[""]`, then `default`.
//! 2. Every requirement of that list must accept the image; the first that refuses ends the
//!    evaluation with its reason and the scope's name.
//! 3. `sigstoreSigned` reads the image's signatures (once, only when needed) and accepts when
//!    one of them verifies with one of the keys, names the manifest's digest and passes
//!    `signedIdentity`; otherwise the reasons of every signature are reported.
//! 4. `signedBy` (GPG simple signing) always refuses with a message saying stowage has no
//!    OpenPGP verifier; `signedBaseLayer` refuses as in containers/image (not implemented).

use super::config::{KeySource, Policy, Requirement};
use super::identity;
use super::scope::ImageScopes;
use super::sigstore::{self, PublicKey, SigstoreSignature, SIGSTORE_SIGNATURE_MIME_TYPE};
use crate::digest::Hasher;
use crate::error::{Error, Result};
use crate::manifest::RawManifest;

/// Signatures of the image being checked, for the manifest with the given digest.
pub type SignatureFetch<'a> = dyn FnMut() -> Result<Vec<SigstoreSignature>> + 'a;

impl Policy {
    /// The requirements for `image` and the scope they come from (`transports.docker."x"`,
    /// `transports.oci.""`, `default`).
    pub fn requirements_for(&self, image: &ImageScopes) -> (&[Requirement], String) {
        if let Some(scopes) = self.transports.get(image.transport) {
            let t = image.transport;
            for scope in std::iter::once(&image.identity).chain(&image.namespaces) {
                if let Some(r) = scopes.get(scope) {
                    return (r, format!("scope transports.{t}.{scope:?}"));
                }
            }
            if let Some(r) = scopes.get("") {
                return (r, format!("scope transports.{t}.\"\""));
            }
        }
        (&self.default, "scope \"default\"".to_string())
    }

    /// Whether `image`, whose (single-platform) manifest is `manifest`, may be copied;
    /// `signatures` yields its signatures when a requirement needs them. An `Err` is either
    /// [`Error::PolicyRejected`] (naming the scope) or a failure to read the signatures.
    pub fn check(
        &self,
        image: &ImageScopes,
        manifest: &RawManifest,
        signatures: &mut SignatureFetch<'_>,
    ) -> Result<()> {
        let (reqs, scope) = self.requirements_for(image);
        let mut fetched: Option<Vec<SigstoreSignature>> = None;
        for (i, req) in reqs.iter().enumerate() {
            let refuse = |reason: String| Error::PolicyRejected {
                image: image.name.clone(),
                policy: self.source.clone(),
                scope: format!("{scope}, requirement {} ({})", i + 1, req.type_name()),
                reason,
            };
            match req {
                Requirement::InsecureAcceptAnything => {}
                Requirement::Reject => {
                    return Err(refuse("the policy rejects this image (\"type\": \"reject\")".into()))
                }
                Requirement::SignedBaseLayer { .. } => {
                    return Err(refuse("signedBaseLayer is not implemented (by containers/image either)".into()))
                }
                Requirement::SignedBy { .. } => {
                    return Err(refuse(
                        "signedBy (GPG simple signing) is not supported: stowage has no OpenPGP \
                         verifier; sign the image with sigstore (cosign, skopeo \
                         --sign-by-sigstore-private-key, stowage copy --sign-by-sigstore-private-key) \
                         and require sigstoreSigned, or verify it with skopeo"
                            .into(),
                    ))
                }
                Requirement::SigstoreSigned {
                    keys,
                    rekor,
                    signed_identity,
                } => {
                    let keys = match keys {
                        KeySource::Paths(paths) => {
                            let mut out = Vec::new();
                            for p in paths {
                                let bytes = std::fs::read(p).map_err(|e| {
                                    refuse(format!("cannot read public key {}: {e}", p.display()))
                                })?;
                                out.extend(
                                    PublicKey::parse_pem(&bytes, &p.display().to_string())
                                        .map_err(|e| refuse(e.to_string()))?,
                                );
                            }
                            out
                        }
                        KeySource::Data(datas) => {
                            let mut out = Vec::new();
                            for d in datas {
                                out.extend(
                                    PublicKey::parse_pem(d, "keyData").map_err(|e| refuse(e.to_string()))?,
                                );
                            }
                            out
                        }
                        KeySource::Fulcio | KeySource::Pki => {
                            return Err(refuse(
                                "certificate-based sigstore trust (fulcio, pki) is not supported by stowage; use keyPath/keyData with the signer's public key".into(),
                            ))
                        }
                    };
                    if *rekor {
                        return Err(refuse(
                            "Rekor SET verification (rekorPublicKey*) is not supported by stowage; remove it to verify with the public key alone".into(),
                        ));
                    }
                    if fetched.is_none() {
                        fetched = Some(signatures()?);
                    }
                    let sigs = fetched.as_ref().unwrap();
                    let mut reasons = Vec::new();
                    let mut other = 0;
                    let mut accepted = false;
                    for s in sigs {
                        if s.media_type != SIGSTORE_SIGNATURE_MIME_TYPE {
                            other += 1;
                            continue;
                        }
                        match accept(&keys, s, image, manifest, signed_identity) {
                            Ok(()) => {
                                accepted = true;
                                break;
                            }
                            Err(e) => reasons.push(e),
                        }
                    }
                    if !accepted {
                        return Err(refuse(match reasons.len() {
                            0 if other == 0 => "a signature was required, but no signature exists (for a registry, enable use-sigstore-attachments in registries.d)".to_string(),
                            0 => format!("a signature was required, but no signature exists ({other} sigstore non-signature attachments)"),
                            1 => reasons.pop().unwrap(),
                            _ => format!("none of the signatures were accepted: {}", reasons.join("; ")),
                        }));
                    }
                }
            }
        }
        Ok(())
    }
}

fn accept(
    keys: &[PublicKey],
    sig: &SigstoreSignature,
    image: &ImageScopes,
    manifest: &RawManifest,
    rule: &super::config::SignedIdentity,
) -> std::result::Result<(), String> {
    let payload = sigstore::verify(keys, sig)?;
    let mut h =
        Hasher::for_algorithm(payload.manifest_digest.algorithm()).map_err(|e| e.to_string())?;
    h.update(&manifest.bytes);
    if h.finish() != payload.manifest_digest {
        return Err(format!(
            "signature for digest {} does not match the manifest {}",
            payload.manifest_digest, manifest.digest
        ));
    }
    if !identity::matches(
        rule,
        image.docker_reference.as_ref(),
        &payload.docker_reference,
    ) {
        return Err(match &image.docker_reference {
            None => format!(
                "signature for identity {:?} cannot be matched: the image {} has no docker reference",
                payload.docker_reference, image.name
            ),
            Some(_) => format!("signature for identity {:?} is not accepted", payload.docker_reference),
        });
    }
    Ok(())
}
