//! Which policy scopes an image name falls in, per transport, as containers/image computes
//! them (`PolicyConfigurationIdentity` and `PolicyConfigurationNamespaces`).
//!
//! 1. `docker`: the identity is `HOST/REPO:TAG` (or `@DIGEST`); then the repository, each
//!    parent namespace up to the host, and wildcard domains (`*.example.com`, `*.com`).
//! 2. `oci`, `oci-archive`: the absolute, symlink-resolved path (the tag is not part of it);
//!    then the path itself and each parent directory (never `/`).
//! 3. `containers-storage`: `[DRIVER@GRAPHROOT]NAME:TAG@ID`; then the name with the ID, each
//!    repository component, `[DRIVER@GRAPHROOT]` and `[GRAPHROOT]`.
//! 4. `ostree` (stowage's own transport): `[REPO]NAME:TAG`; then each repository component
//!    and `[REPO]`.
//!
//! The first scope present in policy.json wins; then the transport's `""`; then `default`.

use std::path::{Component, Path, PathBuf};

use crate::reference::Reference;
use crate::transport::{ImageRef, StorageImage, DEFAULT_OSTREE_REPO};

/// The policy-relevant view of an image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScopes {
    /// The transport name (`docker`, `oci`, …): the key under `transports`.
    pub transport: &'static str,
    /// The most specific scope.
    pub identity: String,
    /// Less specific scopes, most specific first.
    pub namespaces: Vec<String>,
    /// The docker reference signatures are matched against (`None` when the name has none,
    /// as for `oci:` layouts).
    pub docker_reference: Option<Reference>,
    /// The image in transport syntax, for messages.
    pub name: String,
}

impl ImageScopes {
    /// The scopes of `image`; `storage_root` is the graph root `containers-storage:NAME`
    /// means when the name has no `[store]`.
    pub fn of(image: &ImageRef, storage_root: &Path) -> ImageScopes {
        let name = image.to_string();
        match image {
            ImageRef::Docker(r) => {
                let r = r.clone().with_default_tag();
                ImageScopes {
                    transport: "docker",
                    identity: docker_identity(&r),
                    namespaces: docker_namespaces(&r),
                    docker_reference: Some(r),
                    name,
                }
            }
            ImageRef::Oci { path, .. } | ImageRef::OciArchive { path, .. } => {
                let resolved = resolve_path(path);
                ImageScopes {
                    transport: image.transport_name(),
                    namespaces: path_namespaces(&resolved),
                    identity: resolved,
                    docker_reference: None,
                    name,
                }
            }
            ImageRef::ContainersStorage { store, image } => {
                let (driver, root) = match store {
                    Some(s) => (
                        s.driver.clone().unwrap_or_else(|| "overlay".into()),
                        s.graph_root.clone(),
                    ),
                    None => ("overlay".to_string(), storage_root.to_path_buf()),
                };
                let spec = format!("[{driver}@{}]", root.display());
                let (named, id) = match image {
                    StorageImage::Named(n) => (Some(n.clone()), None),
                    StorageImage::Id(id) => (None, Some(id.clone())),
                    StorageImage::NamedWithId(n, id) => (Some(n.clone()), Some(id.clone())),
                    StorageImage::IdPrefix { name, prefix } => (name.clone(), Some(prefix.clone())),
                    StorageImage::NameOrIdPrefix { name, .. } => (Some(name.clone()), None),
                };
                let mut identity = spec.clone();
                if let Some(n) = &named {
                    identity.push_str(&n.to_string());
                }
                if let Some(id) = &id {
                    identity.push('@');
                    identity.push_str(id);
                }
                let mut namespaces = Vec::new();
                if let Some(n) = &named {
                    if id.is_some() {
                        namespaces.push(format!("{spec}{n}"));
                    }
                    if let (Some(t), Some(_)) = (n.tag(), n.digest()) {
                        namespaces.push(format!("{spec}{}:{t}", n.name()));
                    }
                    namespaces.extend(components(&n.name()).map(|c| format!("{spec}{c}")));
                }
                namespaces.push(spec);
                namespaces.push(format!("[{}]", root.display()));
                ImageScopes {
                    transport: "containers-storage",
                    identity,
                    namespaces,
                    docker_reference: named,
                    name,
                }
            }
            ImageRef::Ostree { repo, image } => {
                let repo = repo
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_OSTREE_REPO));
                let spec = format!("[{}]", resolve_path(&repo));
                let mut namespaces = Vec::new();
                let identity = match image {
                    Some(r) => {
                        namespaces.extend(components(&r.name()).map(|c| format!("{spec}{c}")));
                        format!("{spec}{r}")
                    }
                    None => spec.clone(),
                };
                namespaces.push(spec);
                ImageScopes {
                    transport: "ostree",
                    identity,
                    namespaces,
                    docker_reference: image.clone(),
                    name,
                }
            }
        }
    }
}

/// The `docker` scopes of `r`, most specific first: identity, then namespaces (registries.d
/// looks its `docker:` keys up in the same order).
pub fn docker_scopes(r: &Reference) -> Vec<String> {
    let mut out = vec![docker_identity(r)];
    out.extend(docker_namespaces(r));
    out
}

/// `NAME:TAG` or `NAME@DIGEST` (the digest wins when both are given).
fn docker_identity(r: &Reference) -> String {
    match (r.digest(), r.tag()) {
        (Some(d), _) => format!("{}@{d}", r.name()),
        (None, Some(t)) => format!("{}:{t}", r.name()),
        (None, None) => r.name(),
    }
}

/// `a/b/c`, `a/b`, `a`.
fn components(name: &str) -> impl Iterator<Item = String> + '_ {
    let parts: Vec<&str> = name.split('/').collect();
    (1..=parts.len()).rev().map(move |n| parts[..n].join("/"))
}

/// The repository, its parent namespaces up to the host, then `*.` wildcards of the host's
/// parent domains (without the port).
fn docker_namespaces(r: &Reference) -> Vec<String> {
    let mut out: Vec<String> = components(&r.name()).collect();
    let host = r.domain();
    let mut host = host.split(':').next().unwrap_or(host);
    while let Some((_, rest)) = host.split_once('.') {
        out.push(format!("*.{rest}"));
        host = rest;
    }
    out
}

/// The path and each parent directory, not including `/`.
fn path_namespaces(resolved: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = resolved;
    while path != "/" && !path.is_empty() {
        out.push(path.to_string());
        match path.rfind('/') {
            Some(0) | None => break,
            Some(i) => path = &path[..i],
        }
    }
    out
}

/// `path` made absolute with `.`/`..` resolved lexically.
pub fn clean_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n.to_str().unwrap_or("")),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

/// The fully explicit path containers/image uses: absolute, and symlinks resolved for the
/// longest existing prefix (the rest, which does not exist yet, appended as written).
fn resolve_path(path: &Path) -> String {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let abs = PathBuf::from(clean_path(&abs.to_string_lossy()));
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut p = real;
            for r in rest.iter().rev() {
                p.push(r);
            }
            return p.to_string_lossy().into_owned();
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs.to_string_lossy().into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(s: &str) -> ImageScopes {
        ImageScopes::of(
            &ImageRef::parse(s).unwrap(),
            Path::new("/var/lib/containers/storage"),
        )
    }

    #[test]
    fn docker_scopes_like_containers_image() {
        let s = scopes("docker://a.b.example.com:5000/ns/repo:1");
        assert_eq!(s.identity, "a.b.example.com:5000/ns/repo:1");
        assert_eq!(
            s.namespaces,
            [
                "a.b.example.com:5000/ns/repo",
                "a.b.example.com:5000/ns",
                "a.b.example.com:5000",
                "*.b.example.com",
                "*.example.com",
                "*.com"
            ]
        );
        assert_eq!(
            scopes("docker://busybox").identity,
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn storage_and_path_scopes() {
        let s = scopes("containers-storage:[overlay@/r+/run]quay.io/x/y:2");
        assert_eq!(s.identity, "[overlay@/r]quay.io/x/y:2");
        assert_eq!(
            s.namespaces,
            [
                "[overlay@/r]quay.io/x/y",
                "[overlay@/r]quay.io/x",
                "[overlay@/r]quay.io",
                "[overlay@/r]",
                "[/r]"
            ]
        );
        let s = scopes("oci:/nonexistent-stowage/a/b:t");
        assert_eq!(s.identity, "/nonexistent-stowage/a/b");
        assert_eq!(
            s.namespaces,
            [
                "/nonexistent-stowage/a/b",
                "/nonexistent-stowage/a",
                "/nonexistent-stowage"
            ]
        );
        assert!(s.docker_reference.is_none());
    }
}
