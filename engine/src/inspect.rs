//! Image summaries shaped like `skopeo inspect` output.
//!
//! Field names, order and types follow skopeo 1.9 (`Name`, `Digest`, `RepoTags`, `Created`,
//! `DockerVersion`, `Labels`, `Architecture`, `Os`, `Layers`, `Env`) plus `LayersData` from
//! newer skopeo, so scripts written against skopeo keep working.

use serde::Serialize;
use serde_json::Value;

use crate::copy::ImagePlan;

/// `skopeo inspect`-shaped output.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectOutput {
    /// Repository name (for registry sources), e.g. `docker.io/library/busybox`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Digest of the manifest that was named (the index's, when the name points at one).
    pub digest: String,
    /// Tags of the repository (registry sources); empty otherwise.
    pub repo_tags: Vec<String>,
    /// The config's `created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The config's `docker_version` (empty for OCI images).
    pub docker_version: String,
    /// The config's labels, or null.
    pub labels: Option<serde_json::Map<String, Value>>,
    /// The config's architecture.
    pub architecture: String,
    /// The config's variant, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The config's os.
    pub os: String,
    /// Layer blob digests from the manifest.
    pub layers: Vec<String>,
    /// Per-layer media type, digest, size and annotations.
    pub layers_data: Vec<LayerData>,
    /// The config's `config.Env`.
    pub env: Vec<String>,
}

/// One entry of [`InspectOutput::layers_data`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerData {
    /// Media type.
    #[serde(rename = "MIMEType")]
    pub mime_type: String,
    /// Blob digest.
    pub digest: String,
    /// Blob size.
    pub size: u64,
    /// Annotations, or null.
    pub annotations: Option<std::collections::HashMap<String, String>>,
}

/// Summarise a planned image. `digest` is the digest of the document the user named (the
/// index, when it was one), as skopeo reports it.
pub fn inspect(plan: &ImagePlan, name: Option<String>, repo_tags: Vec<String>) -> InspectOutput {
    let raw: Value = serde_json::from_slice(&plan.config.bytes).unwrap_or(Value::Null);
    let config = raw.get("config");
    let labels = config
        .and_then(|c| c.get("Labels"))
        .and_then(|l| l.as_object())
        .cloned();
    let env = config
        .and_then(|c| c.get("Env"))
        .and_then(|e| e.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let str_field = |k: &str| raw.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let digest = plan
        .index
        .as_ref()
        .unwrap_or(&plan.manifest)
        .digest
        .to_string();
    InspectOutput {
        name,
        digest,
        repo_tags,
        created: str_field("created"),
        docker_version: str_field("docker_version").unwrap_or_default(),
        labels,
        architecture: str_field("architecture").unwrap_or_default(),
        variant: str_field("variant"),
        os: str_field("os").unwrap_or_default(),
        layers: plan
            .layers
            .iter()
            .map(|l| l.descriptor.digest().to_string())
            .collect(),
        layers_data: plan
            .layers
            .iter()
            .map(|l| LayerData {
                mime_type: l.descriptor.media_type().to_string(),
                digest: l.descriptor.digest().to_string(),
                size: l.descriptor.size(),
                annotations: l.descriptor.annotations().clone(),
            })
            .collect(),
        env,
    }
}
