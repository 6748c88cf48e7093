//! A registry repository as a copy destination (`docker://HOST/REPO:TAG`): push.
//!
//! 1. registries.conf gives the push location (never a mirror; blocked registries are
//!    refused) and the client settings for it.
//! 2. For each layer the writer first asks whether the registry already has it:
//!    `HEAD /v2/REPO/blobs/DIGEST`; when the source is another repository of the same
//!    registry, it tries a cross-repository mount
//!    (`POST /v2/REPO/blobs/uploads/?mount=DIGEST&from=OTHER`, `201` = mounted). Either way
//!    the pipeline then does not read the layer at all.
//! 3. Missing layers are streamed into an [`Upload`]: bytes are hashed and gathered into
//!    chunks of [`RegistryOptions::upload_chunk_size`]. A blob that fits in one chunk is
//!    uploaded monolithically (`POST` then one `PUT ?digest=`); a larger one in chunks
//!    (`PATCH` with `Content-Range`, following each new `Location`), then `PUT ?digest=`.
//!    Only one chunk per layer is ever held in memory, and each request can be retried
//!    because its body is in that buffer. An upload dropped before it finished is
//!    cancelled (`DELETE`).
//! 4. Layers that arrive as uncompressed diffs (containers-storage), or whose compression
//!    must change (`--dest-compress-format`), are compressed on the fly on their way into the
//!    upload; their new digest is known only at the end, which the chunked protocol allows.
//! 5. Commit uploads the config if missing, then `PUT`s the manifest by tag (or by digest
//!    for a digest reference) with its media type; nothing is visible under the tag before.

use std::io::{self, Write};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::client::RegistryClient;
use super::RegistryLocation;
use super::RegistryOptions;
use crate::compression::Compression;
use crate::copy::{
    recompressed_descriptor, target_compression, CommitResult, FinalImage, ImagePlan, ImageSink,
    ImageWriter, LayerForm, LayerInput, StoredLayer,
};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::manifest::{MAX_MANIFEST_SIZE, OCI_MANIFEST};
use crate::policy::SigstoreSignature;
use crate::reference::Reference;

/// A registry repository opened for writing.
pub struct RegistrySink {
    reference: Reference,
    endpoint: RegistryLocation,
    client: RegistryClient,
    compression: Option<Compression>,
    chunk_size: usize,
    additional_tags: Vec<String>,
    /// registries.d's `use-sigstore-attachments` for this image.
    sigstore_attachments: bool,
}

impl RegistrySink {
    /// Open `reference` for pushing (`:latest` is added when it has neither tag nor digest).
    /// With `compression`, layers are pushed with it (recompressed when they arrive
    /// otherwise); without, blobs are pushed as they are and uncompressed diffs are
    /// gzip-compressed. No network traffic happens until an image is written.
    pub fn open(
        reference: &Reference,
        options: &RegistryOptions,
        compression: Option<Compression>,
    ) -> Result<Self> {
        let reference = reference.clone().with_default_tag();
        let endpoint = options.push_endpoint(&reference)?;
        let settings = options.client_settings(&endpoint)?;
        let client = RegistryClient::new(&endpoint.registry, settings)?;
        let sigstore_attachments = options.registries_d()?.use_sigstore_attachments(&reference);
        Ok(RegistrySink {
            reference,
            endpoint,
            client,
            compression,
            chunk_size: options.upload_chunk_size.max(1),
            additional_tags: Vec::new(),
            sigstore_attachments,
        })
    }

    /// Push the manifest (or index) under `tags` as well (`--additional-tag`).
    pub fn with_additional_tags(mut self, tags: Vec<String>) -> Self {
        self.additional_tags = tags;
        self
    }

    /// `PUT` a top-level manifest or index under the destination's tag (or, for a digest
    /// reference, by that digest, which must be its own) and every additional tag.
    fn put_top(&self, manifest: &crate::manifest::RawManifest) -> Result<()> {
        let reference = match (self.reference.tag(), self.reference.digest()) {
            (Some(tag), _) => tag.to_string(),
            (None, Some(d)) => {
                if d != &manifest.digest {
                    return Err(Error::DigestMismatch {
                        what: format!(
                            "manifest pushed to {} (the destination names a digest)",
                            self.name()
                        ),
                        expected: d.clone(),
                        actual: manifest.digest.clone(),
                    });
                }
                d.to_string()
            }
            (None, None) => crate::reference::DEFAULT_TAG.to_string(),
        };
        self.put_manifest(&manifest.bytes, &manifest.media_type, &reference)?;
        for t in &self.additional_tags {
            self.put_manifest(&manifest.bytes, &manifest.media_type, t)?;
        }
        Ok(())
    }

    /// The push location.
    pub fn endpoint(&self) -> &RegistryLocation {
        &self.endpoint
    }

    fn scope(&self, mount_from: Option<&str>) -> String {
        let own = super::auth::repository_scope(&self.endpoint.repo, true);
        match mount_from {
            Some(from) => format!("{own} {}", super::auth::repository_scope(from, false)),
            None => own,
        }
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.client
            .block_on(self.client.url(&format!("{}/{path}", self.endpoint.repo)))
    }

    /// Send a request (body retried as needed) and return the response.
    fn request(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        scope: &str,
        what: &str,
    ) -> Result<Response> {
        let c = &self.client;
        let retries = c.settings().retry_times;
        c.block_on(c.send_retrying(method, url, headers, body, scope, what, retries))
    }

    /// Whether the repository has blob `digest` (of `size` bytes, when the registry says).
    pub fn has_blob(&self, digest: &Digest, size: u64) -> Result<bool> {
        let what = format!("checking for blob {digest} in {}", self.endpoint.name());
        let url = self.url(&format!("blobs/{digest}"))?;
        let resp = self.request(
            Method::HEAD,
            url,
            HeaderMap::new(),
            None,
            &self.scope(None),
            &what,
        )?;
        match resp.status() {
            // The header, not `content_length()`: a HEAD response has no body.
            s if s.is_success() => Ok(resp
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_none_or(|l| l == size)),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.client.block_on(self.client.error_from(resp, &what))),
        }
    }

    /// Try to mount blob `digest` from repository `from` of the same registry.
    pub fn try_mount(&self, digest: &Digest, from: &str) -> Result<bool> {
        let what = format!(
            "mounting blob {digest} from {from} into {}",
            self.endpoint.name()
        );
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_ref())
            .append_pair("from", from);
        let resp = self.request(
            Method::POST,
            url.clone(),
            HeaderMap::new(),
            None,
            &self.scope(Some(from)),
            &what,
        )?;
        match resp.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an ordinary upload instead: close it.
                if let Ok(location) = location(&resp, &url) {
                    let _ = self.request(
                        Method::DELETE,
                        location,
                        HeaderMap::new(),
                        None,
                        &self.scope(None),
                        &what,
                    );
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// Start a blob upload (no request is made until the first chunk or the finish).
    pub fn upload(&self, what: String) -> Upload<'_> {
        Upload {
            sink: self,
            what,
            location: None,
            buf: Vec::new(),
            hasher: Hasher::sha256(),
            size: 0,
            sent: 0,
            done: false,
        }
    }

    /// Upload `bytes` as a blob unless the registry has it; returns its digest.
    fn ensure_blob(&self, bytes: &[u8], what: &str) -> Result<Digest> {
        let digest = crate::digest::sha256_of(bytes);
        if !self.has_blob(&digest, bytes.len() as u64)? {
            let mut up = self.upload(what.to_string());
            up.write_all(bytes).ctx(|| format!("uploading {what}"))?;
            up.finish()?;
        }
        Ok(digest)
    }

    /// `PUT` `manifest` under `reference` (a tag or a digest).
    fn put_manifest(&self, bytes: &[u8], media_type: &str, reference: &str) -> Result<()> {
        let what = format!("writing manifest {reference} to {}", self.endpoint.name());
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Malformed {
                what: what.clone(),
                reason: format!("media type {media_type:?} is not a valid header value"),
            })?,
        );
        let resp = self.request(
            Method::PUT,
            url,
            headers,
            Some(Bytes::copy_from_slice(bytes)),
            &self.scope(None),
            &what,
        )?;
        if !resp.status().is_success() {
            return Err(self.client.block_on(self.client.error_from(resp, &what)));
        }
        Ok(())
    }

    /// Attach sigstore `signatures` to manifest `digest`: add them as layers of the OCI
    /// manifest tagged `sha256-<hex>.sig` (created, or extended keeping the signatures it
    /// has; one already there is not added twice), payloads and config uploaded first, the
    /// tag written last. Refused unless registries.d enables `use-sigstore-attachments` for
    /// this image, as containers/image does.
    pub fn put_sigstore_signatures(
        &self,
        digest: &Digest,
        signatures: &[SigstoreSignature],
    ) -> Result<()> {
        self.can_store_sigstore_signatures()?;
        self.write_sigstore_signatures(digest, signatures)
    }

    /// `Ok` when registries.d enables `use-sigstore-attachments` for this image.
    pub fn can_store_sigstore_signatures(&self) -> Result<()> {
        if !self.sigstore_attachments {
            return Err(Error::Unsupported {
                transport: format!("docker://{}", self.reference),
                reason: "writing sigstore signatures is disabled by configuration: set \
                         use-sigstore-attachments: true for this registry in registries.d \
                         (/etc/containers/registries.d/*.yaml, or --registries.d DIR)"
                    .into(),
            });
        }
        Ok(())
    }

    fn write_sigstore_signatures(
        &self,
        digest: &Digest,
        signatures: &[SigstoreSignature],
    ) -> Result<()> {
        let tag = format!("{}-{}.sig", digest.algorithm(), digest.digest());
        let what = format!(
            "reading sigstore attachments {tag} of docker://{}",
            self.reference
        );
        let existing = {
            let c = &self.client;
            let url = self.url(&format!("manifests/{tag}"))?;
            match c.block_on(c.get_small(
                url,
                Some(OCI_MANIFEST),
                &self.scope(None),
                MAX_MANIFEST_SIZE,
                &what,
            )) {
                Ok((bytes, _)) => Some(bytes),
                Err(Error::Registry { status: 404, .. }) => None,
                Err(e) => return Err(e),
            }
        };
        let (mut layers, mut diff_ids): (Vec<serde_json::Value>, Vec<serde_json::Value>) =
            (Vec::new(), Vec::new());
        if let Some(bytes) = existing {
            let m: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
                what: what.clone(),
                source: e,
            })?;
            layers = m["layers"].as_array().cloned().unwrap_or_default();
            let config = m["config"]["digest"].as_str().map(str::to_string);
            if let Some(cd) = config {
                let c = &self.client;
                let url = self.url(&format!("blobs/{cd}"))?;
                if let Ok((cfg, _)) =
                    c.block_on(c.get_small(url, None, &self.scope(None), MAX_MANIFEST_SIZE, &what))
                {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&cfg) {
                        diff_ids = v["rootfs"]["diff_ids"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                    }
                }
            }
        }
        for sig in signatures {
            let payload_digest = crate::digest::sha256_of(&sig.payload);
            let annotations = serde_json::to_value(&sig.annotations).expect("strings serialise");
            let present = layers.iter().any(|l| {
                l["digest"].as_str() == Some(payload_digest.as_ref())
                    && l["annotations"] == annotations
            });
            if present {
                continue;
            }
            self.ensure_blob(
                &sig.payload,
                &format!("sigstore signature payload {payload_digest}"),
            )?;
            layers.push(serde_json::json!({
                "mediaType": sig.media_type,
                "size": sig.payload.len(),
                "digest": payload_digest.to_string(),
                "annotations": annotations,
            }));
            diff_ids.push(serde_json::Value::String(payload_digest.to_string()));
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("serialises");
        let config_digest =
            self.ensure_blob(&config, &format!("config of sigstore attachments {tag}"))?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": crate::manifest::OCI_CONFIG, "size": config.len(), "digest": config_digest.to_string()},
            "layers": layers,
        }))
        .expect("serialises");
        self.put_manifest(&manifest, OCI_MANIFEST, &tag)
    }

    /// The repository of the copy's source when it is another repository of this registry
    /// (a mount candidate).
    fn mount_source(&self, source_name: &str) -> Option<String> {
        let r = source_name.strip_prefix("docker://")?;
        let r = Reference::parse(r).ok()?;
        (r.domain() == self.endpoint.registry && r.path() != self.endpoint.repo)
            .then(|| r.path().to_string())
    }
}

/// The `Location` of `resp`, resolved against the request URL.
fn location(resp: &Response, request: &Url) -> Result<Url> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Malformed {
            what: format!("upload response from {request}"),
            reason: "no Location header".into(),
        })?;
    request.join(loc).map_err(|e| Error::Malformed {
        what: format!("upload response from {request}"),
        reason: format!("bad Location {loc:?}: {e}"),
    })
}

/// A blob being uploaded. Write the content, then [`finish`](Upload::finish); dropping it
/// unfinished cancels the upload.
pub struct Upload<'a> {
    sink: &'a RegistrySink,
    what: String,
    /// The upload URL once the upload is started.
    location: Option<Url>,
    buf: Vec<u8>,
    hasher: Hasher,
    size: u64,
    /// Bytes already sent in chunks.
    sent: u64,
    done: bool,
}

impl Upload<'_> {
    fn start(&mut self) -> Result<Url> {
        if let Some(l) = &self.location {
            return Ok(l.clone());
        }
        let url = self.sink.url("blobs/uploads/")?;
        let resp = self.sink.request(
            Method::POST,
            url.clone(),
            HeaderMap::new(),
            None,
            &self.sink.scope(None),
            &self.what,
        )?;
        if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
            let c = &self.sink.client;
            return Err(c.block_on(c.error_from(resp, &self.what)));
        }
        let loc = location(&resp, &url)?;
        self.location = Some(loc.clone());
        Ok(loc)
    }

    /// Send the buffered bytes as one `PATCH` chunk.
    fn send_chunk(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let url = self.start()?;
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let end = self.sent + body.len() as u64 - 1;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(
            CONTENT_RANGE,
            HeaderValue::from_str(&format!("{}-{end}", self.sent)).expect("ascii"),
        );
        let len = body.len() as u64;
        let resp = self.sink.request(
            Method::PATCH,
            url.clone(),
            headers,
            Some(body),
            &self.sink.scope(None),
            &self.what,
        )?;
        if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
            let c = &self.sink.client;
            return Err(c.block_on(c.error_from(resp, &self.what)));
        }
        self.location = Some(location(&resp, &url)?);
        self.sent += len;
        Ok(())
    }

    /// Complete the upload: the last bytes (or, for a blob that fit in one chunk, all of
    /// them) with `PUT ?digest=`. Returns the blob's digest and size.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        let digest = std::mem::replace(&mut self.hasher, Hasher::sha256()).finish();
        let mut url = self.start()?;
        url.query_pairs_mut().append_pair("digest", digest.as_ref());
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if !body.is_empty() && self.sent > 0 {
            let end = self.sent + body.len() as u64 - 1;
            headers.insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("{}-{end}", self.sent)).expect("ascii"),
            );
        }
        let resp = self.sink.request(
            Method::PUT,
            url,
            headers,
            Some(body),
            &self.sink.scope(None),
            &self.what,
        )?;
        if !resp.status().is_success() {
            let c = &self.sink.client;
            return Err(c.block_on(c.error_from(resp, &self.what)));
        }
        self.done = true;
        Ok((digest, self.size))
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.sink.chunk_size.saturating_sub(self.buf.len());
        let n = data.len().min(room.max(1));
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.size += n as u64;
        if self.buf.len() >= self.sink.chunk_size {
            self.send_chunk().map_err(Error::into_io)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(loc) = self.location.take() {
            let _ = self.sink.request(
                Method::DELETE,
                loc,
                HeaderMap::new(),
                None,
                &self.sink.scope(None),
                &self.what,
            );
        }
    }
}

impl ImageSink for RegistrySink {
    fn name(&self) -> String {
        format!("docker://{}", self.reference)
    }

    fn index_support(&self) -> Result<()> {
        Ok(())
    }

    /// `PUT` the index under the tag. The registry checks that its images are there (a
    /// `--multi-arch index-only` copy of images it lacks fails with its `MANIFEST_UNKNOWN`).
    fn commit_index(&self, index: &crate::manifest::RawManifest) -> Result<()> {
        self.put_top(index).map_err(|e| match e {
            Error::Registry {
                what,
                status,
                message,
                hint,
            } if message.contains("MANIFEST_BLOB_UNKNOWN")
                || message.contains("manifest blob unknown") =>
            {
                Error::Registry {
                    what,
                    status,
                    message,
                    hint: if hint.is_empty() {
                        "the registry lacks images the index lists; copy them first, or use --multi-arch all (--all)".into()
                    } else {
                        hint
                    },
                }
            }
            other => other,
        })
    }

    fn put_sigstore_signatures(
        &self,
        digest: &Digest,
        signatures: &[SigstoreSignature],
    ) -> Result<()> {
        RegistrySink::put_sigstore_signatures(self, digest, signatures)
    }

    fn docker_reference(&self) -> Option<Reference> {
        Some(self.reference.clone())
    }

    fn can_store_sigstore_signatures(&self) -> Result<()> {
        RegistrySink::can_store_sigstore_signatures(self)
    }

    fn begin<'s>(&'s self, plan: &ImagePlan) -> Result<Box<dyn ImageWriter + 's>> {
        Ok(Box::new(RegistryWriter {
            sink: self,
            mount_from: self.mount_source(&plan.source_name),
            plan: plan.clone(),
        }))
    }
}

struct RegistryWriter<'s> {
    sink: &'s RegistrySink,
    plan: ImagePlan,
    mount_from: Option<String>,
}

impl ImageWriter for RegistryWriter<'_> {
    fn existing_layer(&self, index: usize) -> Result<Option<StoredLayer>> {
        let desc = &self.plan.layers[index].descriptor;
        let source = Compression::from_media_type(desc.media_type().as_ref())?;
        if target_compression(LayerForm::Blob, source, self.sink.compression).is_some() {
            return Ok(None);
        }
        let stored = || {
            Some(StoredLayer {
                descriptor: desc.clone(),
            })
        };
        if self.sink.has_blob(desc.digest(), desc.size())? {
            return Ok(stored());
        }
        if let Some(from) = &self.mount_from {
            if self.sink.try_mount(desc.digest(), from)? {
                return Ok(stored());
            }
        }
        Ok(None)
    }

    fn put_layer(&self, input: LayerInput<'_>) -> Result<StoredLayer> {
        let plan = &self.plan.layers[input.index];
        let what = format!("uploading {} to {}", input.label, self.sink.endpoint.name());
        let mut upload = self.sink.upload(what.clone());
        match target_compression(input.form, input.compression, self.sink.compression) {
            None => {
                input.copy_to(&mut upload)?;
                let (digest, _) = upload.finish()?;
                if &digest != plan.descriptor.digest() {
                    return Err(Error::DigestMismatch {
                        what,
                        expected: plan.descriptor.digest().clone(),
                        actual: digest,
                    });
                }
                Ok(StoredLayer {
                    descriptor: plan.descriptor.clone(),
                })
            }
            Some(target) => {
                let (upload, decoded) = input.recompress(upload, target)?;
                let (digest, size) = upload.finish()?;
                Ok(StoredLayer {
                    descriptor: recompressed_descriptor(target, size, digest, decoded.value),
                })
            }
        }
    }

    fn commit(self: Box<Self>, image: &FinalImage) -> Result<CommitResult> {
        let sink = self.sink;
        let config_digest = sink.ensure_blob(
            &image.config.bytes,
            &format!("uploading the config of {}", self.plan.source_name),
        )?;
        if &config_digest != image.config_descriptor.digest() {
            return Err(Error::DigestMismatch {
                what: format!("config of {}", self.plan.source_name),
                expected: image.config_descriptor.digest().clone(),
                actual: config_digest,
            });
        }
        let manifest = &image.manifest;
        if image.index_child {
            // One image of an index: by digest; the index is tagged last.
            sink.put_manifest(
                &manifest.bytes,
                &manifest.media_type,
                manifest.digest.as_ref(),
            )?;
        } else {
            sink.put_top(manifest)?;
        }
        Ok(CommitResult::default())
    }
}
