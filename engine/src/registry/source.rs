//! A registry image as a copy source (`docker://HOST/REPO:TAG` or `…@sha256:…`).
//!
//! 1. registries.conf gives the places to pull from: mirrors first, then the image's own
//!    location ([`RegistryOptions::pull_endpoints`]); each gets its own client settings
//!    (credentials, TLS). The top-level manifest is fetched from the first that has it; a
//!    failing one is skipped and its error kept for the message if all fail. The rest of the
//!    image comes from the endpoint that served the manifest.
//! 2. The manifest is fetched by tag or digest with an `Accept` header listing OCI
//!    manifests and indexes and Docker schema2 manifests and lists; it is capped at
//!    [`MAX_MANIFEST_SIZE`] and, when the reference names a digest, checked against it.
//! 3. Child manifests (chosen from an index by the pipeline) are fetched by digest and
//!    checked likewise.
//! 4. The config and layers are streamed with [`BlobReader`] (retries, resume, timeouts);
//!    the pipeline verifies them and runs several layers at once.

use std::sync::OnceLock;

use oci_spec::image::Descriptor;

use super::client::RegistryClient;
use super::ranges::{RangeCounters, RangeReader};
use super::stream::{BlobReader, BlobRequest};
use super::RegistryLocation;
use super::RegistryOptions;
use crate::compression::zstd_chunked::BlobRanges;
use crate::compression::BoxRead;
use crate::copy::{ImageSource, LayerStream};
use crate::digest::{sha256_of, Digest};
use crate::error::{Error, Result};
use crate::manifest::{
    RawManifest, DOCKER_LIST, DOCKER_MANIFEST, MAX_MANIFEST_SIZE, OCI_INDEX, OCI_MANIFEST,
};
use crate::policy::SigstoreSignature;
use crate::reference::Reference;

/// The `Accept` header for manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

const _: () = {
    // The header lists exactly the media types manifest.rs understands.
    let _ = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
};

/// An image in a registry, opened for reading.
pub struct RegistrySource {
    reference: Reference,
    candidates: Vec<Candidate>,
    /// The candidate that served the manifest.
    chosen: OnceLock<usize>,
    /// registries.d's `use-sigstore-attachments` for this image.
    sigstore_attachments: bool,
    /// What ranged reads (partial pulls) fetched.
    ranges: std::sync::Arc<RangeCounters>,
}

struct Candidate {
    endpoint: RegistryLocation,
    client: RegistryClient,
}

impl RegistrySource {
    /// Open `reference` (`:latest` is added when it has neither tag nor digest). No network
    /// traffic happens until the manifest is asked for; a blocked registry is an error now.
    pub fn open(reference: &Reference, options: &RegistryOptions) -> Result<Self> {
        let reference = reference.clone().with_default_tag();
        let candidates = options
            .pull_endpoints(&reference)?
            .into_iter()
            .map(|endpoint| {
                let settings = options.client_settings(&endpoint)?;
                let client = RegistryClient::new(&endpoint.registry, settings)?;
                Ok(Candidate { endpoint, client })
            })
            .collect::<Result<Vec<_>>>()?;
        let sigstore_attachments = options.registries_d()?.use_sigstore_attachments(&reference);
        Ok(RegistrySource {
            reference,
            candidates,
            chosen: OnceLock::new(),
            sigstore_attachments,
            ranges: Default::default(),
        })
    }

    /// The reference being read.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The endpoint blobs are read from: the one that served the manifest (the first
    /// candidate before that).
    pub fn endpoint(&self) -> &RegistryLocation {
        &self.current().endpoint
    }

    fn current(&self) -> &Candidate {
        &self.candidates[*self.chosen.get().unwrap_or(&0)]
    }

    fn scope(c: &Candidate) -> String {
        super::auth::repository_scope(&c.endpoint.repo, false)
    }

    /// The tag or digest the manifest is fetched by.
    fn manifest_ref(&self) -> String {
        match (self.reference.digest(), self.reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        }
    }

    fn fetch_manifest_from(
        &self,
        c: &Candidate,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<RawManifest> {
        let what = format!("reading manifest {reference} in {}", c.endpoint.name());
        let client = &c.client;
        let (bytes, headers) = client.block_on(async {
            let url = client
                .url(&format!("{}/manifests/{reference}", c.endpoint.repo))
                .await?;
            client
                .get_small(
                    url,
                    Some(MANIFEST_ACCEPT),
                    &Self::scope(c),
                    MAX_MANIFEST_SIZE,
                    &what,
                )
                .await
        })?;
        if let Some(exp) = expected {
            let actual = sha256_of(&bytes);
            if &actual != exp {
                return Err(Error::DigestMismatch {
                    what: format!("manifest of {} from {}", self.name(), c.endpoint.name()),
                    expected: exp.clone(),
                    actual,
                });
            }
        }
        let content_type = headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        RawManifest::parse(bytes, content_type.as_deref(), &self.name())
    }

    fn blob_reader(&self, descriptor: &Descriptor, what: String) -> Result<BlobReader> {
        let c = self.current();
        let client = &c.client;
        let url = client.block_on(client.url(&format!(
            "{}/blobs/{}",
            c.endpoint.repo,
            descriptor.digest()
        )))?;
        Ok(BlobReader::open(
            client,
            BlobRequest {
                url,
                scope: Self::scope(c),
                expected_size: Some(descriptor.size()),
                what,
            },
        ))
    }

    /// The sigstore signatures attached to manifest `digest`: the layers of the OCI manifest
    /// tagged `sha256-<hex>.sig` in the repository that served the image (none when the tag
    /// does not exist, or when registries.d does not enable `use-sigstore-attachments`).
    /// Each payload is read whole (capped at 4 MiB) and checked against its digest.
    pub fn sigstore_signatures(&self, digest: &Digest) -> Result<Vec<SigstoreSignature>> {
        if !self.sigstore_attachments {
            return Ok(Vec::new());
        }
        let tag = format!("{}-{}.sig", digest.algorithm(), digest.digest());
        let c = self.current();
        let client = &c.client;
        let what = format!("reading sigstore attachments {tag} of {}", self.name());
        // Read as plain JSON: the manifest's layers are payloads, not layer media types.
        let fetched = client.block_on(async {
            let url = client
                .url(&format!("{}/manifests/{tag}", c.endpoint.repo))
                .await?;
            client
                .get_small(
                    url,
                    Some(OCI_MANIFEST),
                    &Self::scope(c),
                    MAX_MANIFEST_SIZE,
                    &what,
                )
                .await
        });
        let bytes = match fetched {
            Ok((bytes, _)) => bytes,
            Err(Error::Registry { status: 404, .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        #[derive(serde::Deserialize)]
        struct SigManifest {
            #[serde(default)]
            layers: Vec<Descriptor>,
        }
        let m: SigManifest = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            what: what.clone(),
            source: e,
        })?;
        let mut out = Vec::new();
        for layer in &m.layers {
            let what = format!("sigstore signature {} of {}", layer.digest(), self.name());
            if layer.size() > MAX_MANIFEST_SIZE {
                return Err(Error::Malformed {
                    what,
                    reason: format!(
                        "{} bytes, more than the {MAX_MANIFEST_SIZE} byte limit",
                        layer.size()
                    ),
                });
            }
            let (payload, _) = client.block_on(async {
                let url = client
                    .url(&format!("{}/blobs/{}", c.endpoint.repo, layer.digest()))
                    .await?;
                client
                    .get_small(url, None, &Self::scope(c), MAX_MANIFEST_SIZE, &what)
                    .await
            })?;
            let actual = sha256_of(&payload);
            if &actual != layer.digest() {
                return Err(Error::DigestMismatch {
                    what,
                    expected: layer.digest().clone(),
                    actual,
                });
            }
            out.push(SigstoreSignature {
                media_type: layer.media_type().to_string(),
                payload,
                annotations: layer
                    .annotations()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            });
        }
        Ok(out)
    }

    /// The repository's tags (following `Link` pagination), as `skopeo inspect` lists them.
    pub fn tags(&self) -> Result<Vec<String>> {
        self.tags_paged(None)
    }

    /// [`tags`](Self::tags), asking for `page_size` tags per request (`?n=`); the registry's
    /// `Link: <…>; rel="next"` headers lead to the following pages.
    pub fn tags_paged(&self, page_size: Option<u32>) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let c = self.current();
        let what = format!("listing tags of {}", c.endpoint.name());
        let client = &c.client;
        let scope = Self::scope(c);
        client.block_on(async {
            let mut url = client
                .url(&format!("{}/tags/list", c.endpoint.repo))
                .await?;
            if let Some(n) = page_size {
                url.query_pairs_mut().append_pair("n", &n.to_string());
            }
            let mut tags = Vec::new();
            for _ in 0..1000 {
                let (body, headers) = client
                    .get_small(url.clone(), None, &scope, MAX_MANIFEST_SIZE, &what)
                    .await?;
                let list: TagList = serde_json::from_slice(&body).map_err(|e| Error::Json {
                    what: what.clone(),
                    source: e,
                })?;
                tags.extend(list.tags.unwrap_or_default());
                let next = headers
                    .get(reqwest::header::LINK)
                    .and_then(|v| v.to_str().ok())
                    .and_then(next_link);
                match next {
                    Some(n) => {
                        url = url.join(&n).map_err(|e| Error::Malformed {
                            what: what.clone(),
                            reason: format!("bad Link header {n:?}: {e}"),
                        })?
                    }
                    None => return Ok(tags),
                }
            }
            Ok(tags)
        })
    }
}

/// The target of a `Link: <URL>; rel="next"` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

impl ImageSource for RegistrySource {
    fn name(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn manifest(&self) -> Result<RawManifest> {
        let reference = self.manifest_ref();
        if let Some(&i) = self.chosen.get() {
            return self.fetch_manifest_from(
                &self.candidates[i],
                &reference,
                self.reference.digest(),
            );
        }
        let mut errors = Vec::new();
        for (i, c) in self.candidates.iter().enumerate() {
            match self.fetch_manifest_from(c, &reference, self.reference.digest()) {
                Ok(m) => {
                    let _ = self.chosen.set(i);
                    return Ok(m);
                }
                Err(e) if self.candidates.len() == 1 => return Err(e),
                Err(e) => errors.push(format!("{}: {e}", c.endpoint.name())),
            }
        }
        Err(Error::NotFound {
            what: format!(
                "image {} at any of its {} locations",
                self.reference,
                errors.len()
            ),
            hint: format!(
                "every mirror and the registry failed: {}",
                errors.join("; ")
            ),
        })
    }

    fn child_manifest(&self, descriptor: &Descriptor) -> Result<RawManifest> {
        if descriptor.size() > MAX_MANIFEST_SIZE {
            return Err(Error::Malformed {
                what: format!("manifest {} of {}", descriptor.digest(), self.name()),
                reason: format!(
                    "{} bytes, more than the {MAX_MANIFEST_SIZE} byte limit",
                    descriptor.size()
                ),
            });
        }
        self.fetch_manifest_from(
            self.current(),
            descriptor.digest().as_ref(),
            Some(descriptor.digest()),
        )
    }

    fn open_blob(&self, descriptor: &Descriptor) -> Result<BoxRead<'_>> {
        let what = format!("blob {} of {}", descriptor.digest(), self.name());
        Ok(Box::new(self.blob_reader(descriptor, what)?))
    }

    fn sigstore_signatures(&self, manifest_digest: &Digest) -> Result<Vec<SigstoreSignature>> {
        RegistrySource::sigstore_signatures(self, manifest_digest)
    }

    fn open_layer(
        &self,
        index: usize,
        descriptor: &Descriptor,
        _diff_id: &Digest,
    ) -> Result<LayerStream<'_>> {
        let what = format!(
            "layer {} ({}) of {}",
            index + 1,
            descriptor.digest(),
            self.name()
        );
        Ok(LayerStream::Blob(Box::new(
            self.blob_reader(descriptor, what)?,
        )))
    }

    fn refetch_origin(&self) -> Option<String> {
        Some(format!("registry {}", self.current().endpoint.registry))
    }

    fn blob_ranges(&self, descriptor: &Descriptor) -> Option<Box<dyn BlobRanges + '_>> {
        let c = self.current();
        let client = &c.client;
        let url = client
            .block_on(client.url(&format!(
                "{}/blobs/{}",
                c.endpoint.repo,
                descriptor.digest()
            )))
            .ok()?;
        Some(Box::new(RangeReader {
            client: client.clone(),
            url,
            scope: Self::scope(c),
            what: format!("ranges of blob {} of {}", descriptor.digest(), self.name()),
            counters: self.ranges.clone(),
        }))
    }

    fn notes(&self) -> Vec<String> {
        use std::sync::atomic::Ordering;
        let requests = self.ranges.requests.load(Ordering::Relaxed);
        if requests == 0 {
            return Vec::new();
        }
        vec![format!(
            "ranged reads from {}: {} bytes received in {requests} requests",
            self.current().endpoint.registry,
            self.ranges.bytes.load(Ordering::Relaxed)
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }
}
