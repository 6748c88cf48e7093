//! Image names in skopeo's transport syntax (containers-transports(5)): `TRANSPORT:NAME`.
//!
//! Parsing ([`ImageRef::parse`]) follows containers/image's `alltransports.ParseImageName` and
//! each transport's `ParseReference`:
//! 1. the text before the first `:` names the transport; a missing or unknown transport is an
//!    error that lists the supported ones, and known skopeo transports stowage does not
//!    implement (`dir:`, `docker-archive:`, `docker-daemon:`, `sif:`, `tarball:`) say so;
//! 2. `docker://REF`: REF is a docker reference, normalised with `:latest` added when it has
//!    neither tag nor digest; a tag together with a digest is refused, as in skopeo;
//! 3. `oci:PATH[:TAG]`, `oci-archive:PATH[:TAG]`: split at the first `:` (so PATH cannot hold
//!    one); TAG must be an OCI `org.opencontainers.image.ref.name` (`/`-separated components of
//!    `[A-Za-z0-9]` runs joined by one of `-._:@+` or `--`);
//! 4. `containers-storage:[DRIVER@GRAPHROOT+RUNROOT:OPT,OPT]NAME`: an optional store specifier,
//!    then a name (normalised like `docker://`), a name followed by `@ID`, a bare full ID, `@ID`,
//!    or an ID prefix (see [`StorageImage`]);
//! 5. `ostree:IMGREF@/ABS/REPO` (c/image's form) or `ostree:[REPO]IMGREF` (stowage's form, which
//!    is also how it is displayed); IMGREF is normalised like `docker://`.
//!
//! Every [`ImageRef`] displays in a form that parses back to the same value.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::digest::parse_digest;
use crate::error::{Error, Result};
use crate::reference::{is_full_id, is_lower_hex, Reference};

/// The transports stowage implements, as they are written before the name.
pub const SUPPORTED_TRANSPORTS: &str =
    "docker://, oci:, oci-archive:, containers-storage:, ostree:";

/// skopeo transports that exist but that stowage does not implement.
const UNSUPPORTED_TRANSPORTS: [&str; 5] =
    ["dir", "docker-archive", "docker-daemon", "sif", "tarball"];

/// The repository `ostree:` names without an explicit repository refer to.
pub const DEFAULT_OSTREE_REPO: &str = "/ostree/repo";

/// Shortest image-ID prefix accepted in place of a full ID (c/image's
/// `minimumTruncatedIDLength`).
pub const MIN_ID_PREFIX_LEN: usize = 3;

/// c/image's suffix for "destination digest unknown" docker references.
const UNKNOWN_DIGEST_SUFFIX: &str = "@@unknown-digest@@";

/// A parsed image name with its transport.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// `docker://REF`: an image in a registry.
    Docker(Reference),
    /// `oci:PATH[:TAG]`: an OCI image layout directory, and the image's
    /// `org.opencontainers.image.ref.name` in its index.
    Oci {
        /// The layout directory.
        path: PathBuf,
        /// The image's name in the index; `None` when the layout holds a single image.
        tag: Option<String>,
    },
    /// `oci-archive:PATH[:TAG]`: a tar archive of an OCI image layout.
    OciArchive {
        /// The archive file.
        path: PathBuf,
        /// The image's name in the archived index.
        tag: Option<String>,
    },
    /// `containers-storage:[STORE]IMAGE`: an image in a containers-storage store.
    ContainersStorage {
        /// The store; `None` for the default store.
        store: Option<StoreSpec>,
        /// Which image.
        image: StorageImage,
    },
    /// `ostree:[REPO]IMGREF`: an image stored in an ostree repository (ostree-rs-ext's
    /// container store).
    Ostree {
        /// The repository; `None` for [`DEFAULT_OSTREE_REPO`].
        repo: Option<PathBuf>,
        /// The image, normalised with a default `:latest` tag. `None` (`ostree:[REPO]`, as a
        /// destination): the image is recorded under its source's name, as
        /// `ostree container image pull` does.
        image: Option<Reference>,
    },
}

/// The store specifier of a `containers-storage:[…]` name:
/// `[DRIVER@GRAPHROOT+RUNROOT:OPTION,OPTION]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreSpec {
    /// The graph driver (`overlay`, `vfs`), when given.
    pub driver: Option<String>,
    /// The store's graph root (an absolute path).
    pub graph_root: PathBuf,
    /// The store's run root (an absolute path), when given.
    pub run_root: Option<PathBuf>,
    /// Graph driver options (`overlay.mountopt=nodev`, …).
    pub options: Vec<String>,
}

/// Which image of a containers-storage store a name refers to.
///
/// Names are normalised like docker references (`busybox` is
/// `docker.io/library/busybox:latest`). Image IDs are 64 lowercase hex digits; containers/image
/// also accepts a unique prefix of at least [`MIN_ID_PREFIX_LEN`] digits of an image present in
/// the store, which only the store can resolve, so such prefixes are kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StorageImage {
    /// `NAME`: the image with this name.
    Named(Reference),
    /// `ID` or `@ID`: the image with this full ID.
    Id(String),
    /// `NAME@ID`: the image with this ID, which should carry this name.
    NamedWithId(Reference, String),
    /// `@PREFIX` or `NAME@PREFIX`: the one image whose ID starts with `prefix`; it is an error
    /// when no image does.
    IdPrefix {
        /// The name given before `@`, if any.
        name: Option<Reference>,
        /// 3 to 63 lowercase hex digits.
        prefix: String,
    },
    /// A bare string of 3 to 63 lowercase hex digits (`a1b2c3`): like containers/image, the
    /// image whose ID starts with it if there is one, otherwise the image named `name`.
    NameOrIdPrefix {
        /// The string read as a name (`docker.io/library/a1b2c3:latest`).
        name: Reference,
        /// The string as written.
        prefix: String,
    },
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidTransport {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// Re-home a reference error under the whole transport name.
fn in_name(input: &str, e: Error) -> Error {
    match e {
        Error::InvalidReference {
            input: part,
            reason,
        } => invalid(input, format!("{part:?}: {reason}")),
        other => other,
    }
}

/// "; did you mean …?": the known transport `input`'s transport is a misspelling of (one or two
/// letters off: `containers-storge:x` → `containers-storage:x`), else `docker://INPUT` when
/// `input` is a valid docker reference (`busybox:1` → `docker://busybox:1`).
fn docker_hint(input: &str) -> String {
    if let Some((t, rest)) = input.split_once(':') {
        let known = [
            "docker",
            "oci",
            "oci-archive",
            "containers-storage",
            "ostree",
        ];
        if let Some(k) = known
            .iter()
            .filter(|k| t.len() > 3 && edit_distance(t, k) <= 2)
            .min_by_key(|k| edit_distance(t, k))
        {
            return format!("; did you mean {k}:{rest}?");
        }
    }
    if Reference::parse(input).is_ok() {
        format!("; did you mean docker://{input}?")
    } else {
        String::new()
    }
}

/// Levenshtein distance of two short ASCII strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<u8> = b.bytes().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl ImageRef {
    /// Parse `TRANSPORT:NAME`.
    pub fn parse(s: &str) -> Result<ImageRef> {
        let Some((transport, rest)) = s.split_once(':') else {
            return Err(invalid(
                s,
                format!(
                    "no transport: expected TRANSPORT:NAME with one of {SUPPORTED_TRANSPORTS}{}",
                    docker_hint(s)
                ),
            ));
        };
        match transport {
            "docker" => parse_docker(s, rest),
            "oci" => {
                let (path, tag) = parse_oci_like(s, "oci", rest)?;
                Ok(ImageRef::Oci { path, tag })
            }
            "oci-archive" => {
                let (path, tag) = parse_oci_like(s, "oci-archive", rest)?;
                Ok(ImageRef::OciArchive { path, tag })
            }
            "containers-storage" => parse_storage(s, rest),
            "ostree" => parse_ostree(s, rest),
            t if UNSUPPORTED_TRANSPORTS.contains(&t) => Err(Error::Unsupported {
                transport: format!("{t}:"),
                reason: format!(
                    "the transport of {s:?} is not supported by stowage; supported transports: {SUPPORTED_TRANSPORTS}"
                ),
            }),
            t => Err(invalid(
                s,
                format!(
                    "unknown transport {t:?}; supported transports: {SUPPORTED_TRANSPORTS}{}",
                    docker_hint(s)
                ),
            )),
        }
    }

    /// The transport's name as containers/image spells it (`docker`, `oci`, `oci-archive`,
    /// `containers-storage`, `ostree`).
    pub fn transport_name(&self) -> &'static str {
        match self {
            ImageRef::Docker(_) => "docker",
            ImageRef::Oci { .. } => "oci",
            ImageRef::OciArchive { .. } => "oci-archive",
            ImageRef::ContainersStorage { .. } => "containers-storage",
            ImageRef::Ostree { .. } => "ostree",
        }
    }

    /// Parse `s`, reading it as a name of `default` when it starts with no transport:
    /// `quay.io/x/y:1` with [`DefaultTransport::Docker`] is `docker://quay.io/x/y:1`, and
    /// `localhost/bootc` with [`DefaultTransport::ContainersStorage`] is an image of that store.
    /// Text that does start with a transport (even one stowage does not implement, such as
    /// `dir:`) is parsed as written, so its errors name the transport.
    pub fn parse_with_default(s: &str, default: &DefaultTransport) -> Result<ImageRef> {
        if has_transport(s) {
            return ImageRef::parse(s);
        }
        match default {
            DefaultTransport::Docker => parse_docker(s, &format!("//{s}")),
            DefaultTransport::ContainersStorage(store) => Ok(ImageRef::ContainersStorage {
                store: store.clone(),
                image: StorageImage::parse(s, s)?,
            }),
        }
    }

    /// `containers-storage:[overlay@GRAPHROOT+RUNROOT]IMAGE`.
    pub fn containers_storage(store: StoreSpec, image: StorageImage) -> ImageRef {
        ImageRef::ContainersStorage {
            store: Some(store),
            image,
        }
    }
}

/// The transport a name without one is read as ([`ImageRef::parse_with_default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DefaultTransport {
    /// A registry image (`docker://`), as podman pull reads a plain name.
    Docker,
    /// An image of a containers-storage store (`None`: the default store).
    ContainersStorage(Option<StoreSpec>),
}

/// Whether `s` starts with a transport name (`docker://`, `oci:`, `containers-storage:`, …,
/// or one of skopeo's that stowage does not implement), rather than being a plain image name
/// such as `localhost:5000/x` or `busybox`.
pub fn has_transport(s: &str) -> bool {
    let Some((t, rest)) = s.split_once(':') else {
        return false;
    };
    match t {
        "docker" => rest.starts_with("//"),
        "oci" | "oci-archive" | "containers-storage" | "ostree" => true,
        t => UNSUPPORTED_TRANSPORTS.contains(&t),
    }
}

fn parse_docker(s: &str, rest: &str) -> Result<ImageRef> {
    let Some(name) = rest.strip_prefix("//") else {
        return Err(invalid(
            s,
            format!(
                "a docker reference starts with \"//\" after \"docker:\"; did you mean docker://{}?",
                rest.trim_start_matches('/')
            ),
        ));
    };
    if name.ends_with(UNKNOWN_DIGEST_SUFFIX) {
        return Err(Error::Unsupported {
            transport: "docker://".into(),
            reason: format!(
                "the {UNKNOWN_DIGEST_SUFFIX} suffix of {s:?} is not supported by stowage"
            ),
        });
    }
    let r = Reference::parse_with_default_tag(name).map_err(|e| in_name(s, e))?;
    if let (Some(tag), Some(digest)) = (r.tag(), r.digest()) {
        return Err(invalid(
            s,
            format!(
                "docker references with both a tag and a digest are not supported; use docker://{}:{tag} or docker://{}@{digest}",
                r.name(),
                r.name()
            ),
        ));
    }
    Ok(ImageRef::Docker(r))
}

fn parse_oci_like(s: &str, transport: &str, rest: &str) -> Result<(PathBuf, Option<String>)> {
    let (path, tag) = rest.split_once(':').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(invalid(
            s,
            format!("no path: expected {transport}:PATH[:TAG]"),
        ));
    }
    let tag = match tag {
        "" => None,
        t if t.starts_with('@') => {
            return Err(Error::Unsupported {
                transport: format!("{transport}:"),
                reason: format!(
                    "selecting an image by index ({t}) in {s:?} is not supported by stowage; name it by its tag"
                ),
            })
        }
        t if is_valid_oci_ref_name(t) => Some(t.to_string()),
        t => {
            return Err(invalid(
                s,
                format!("invalid image name {t:?} after the path: expected components of letters and digits joined by one of -._:@+ or --, separated by '/'"),
            ))
        }
    };
    Ok((PathBuf::from(path), tag))
}

/// The OCI annotation grammar for `org.opencontainers.image.ref.name`, as containers/image
/// checks it: `/`-separated components, each `[A-Za-z0-9]+` runs joined by one of `-._:@+`
/// or by `--`.
fn is_valid_oci_ref_name(name: &str) -> bool {
    name.split('/').all(|c| {
        let b = c.as_bytes();
        let (Some(first), Some(last)) = (b.first(), b.last()) else {
            return false;
        };
        if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let sep = &c[start..i];
            if !(sep == "--" || (sep.len() == 1 && "-._:@+".contains(sep))) {
                return false;
            }
        }
        true
    })
}

fn parse_storage(s: &str, rest: &str) -> Result<ImageRef> {
    let (store, name) = match rest.strip_prefix('[') {
        Some(inner) => {
            let Some((spec, name)) = inner.split_once(']') else {
                return Err(invalid(
                    s,
                    "the store specifier has no closing ']': expected [DRIVER@GRAPHROOT+RUNROOT:OPTIONS]NAME",
                ));
            };
            (Some(StoreSpec::parse(s, spec)?), name)
        }
        None => (None, rest),
    };
    let image = StorageImage::parse(s, name)?;
    Ok(ImageRef::ContainersStorage { store, image })
}

impl StoreSpec {
    /// The overlay store at `graph_root` with run root `run_root`:
    /// `[overlay@GRAPHROOT+RUNROOT]`.
    pub fn overlay(graph_root: impl Into<PathBuf>, run_root: Option<PathBuf>) -> StoreSpec {
        StoreSpec {
            driver: Some("overlay".into()),
            graph_root: graph_root.into(),
            run_root,
            options: Vec::new(),
        }
    }

    /// Parse the text between `[` and `]` as containers/image does: `DRIVER@` is cut at the
    /// first `@`, `:OPTIONS` at the first following `:`, `+RUNROOT` at the first following `+`.
    /// `input` is the whole image name, for error messages.
    fn parse(input: &str, spec: &str) -> Result<StoreSpec> {
        const FORM: &str = "expected [DRIVER@GRAPHROOT+RUNROOT:OPTIONS]";
        let (driver, rest) = match spec.split_once('@') {
            Some(("", _)) => {
                return Err(invalid(
                    input,
                    format!("empty driver name before '@' in the store specifier; {FORM}"),
                ))
            }
            Some((d, r)) => (Some(d.to_string()), r),
            None => (None, spec),
        };
        let (rest, options) = match rest.split_once(':') {
            Some((r, opts)) => {
                let options: Vec<String> = opts.split(',').map(str::to_string).collect();
                if options.iter().any(String::is_empty) {
                    return Err(invalid(
                        input,
                        format!("empty option in the store specifier; {FORM}"),
                    ));
                }
                (r, options)
            }
            None => (rest, Vec::new()),
        };
        let (graph_root, run_root) = match rest.split_once('+') {
            Some((g, "")) => (g, None),
            Some((g, r)) => (g, Some(r)),
            None => (rest, None),
        };
        if graph_root.is_empty() {
            return Err(invalid(
                input,
                format!("the store specifier names no graph root; {FORM}"),
            ));
        }
        for (what, p) in [("graph root", Some(graph_root)), ("run root", run_root)] {
            if let Some(p) = p {
                if !Path::new(p).is_absolute() {
                    return Err(invalid(
                        input,
                        format!("the store's {what} {p:?} is not an absolute path"),
                    ));
                }
            }
        }
        Ok(StoreSpec {
            driver,
            graph_root: PathBuf::from(graph_root),
            run_root: run_root.map(PathBuf::from),
            options,
        })
    }
}

/// `[DRIVER@GRAPHROOT+RUNROOT:OPTIONS]`.
impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        if let Some(d) = &self.driver {
            write!(f, "{d}@")?;
        }
        write!(f, "{}", self.graph_root.display())?;
        if let Some(r) = &self.run_root {
            write!(f, "+{}", r.display())?;
        }
        if !self.options.is_empty() {
            write!(f, ":{}", self.options.join(","))?;
        }
        f.write_str("]")
    }
}

impl StorageImage {
    /// Parse the part of a `containers-storage:` name after any store specifier, as
    /// containers/image does: a trailing `@X` is an image ID (or ID prefix) unless `X` is a
    /// digest, which stays part of the name. `input` is the whole image name, for errors.
    fn parse(input: &str, text: &str) -> Result<StorageImage> {
        if text.is_empty() {
            return Err(invalid(
                input,
                "no image name or ID after containers-storage:",
            ));
        }
        let (name_text, id) = match text.rsplit_once('@') {
            Some((_, "")) => {
                return Err(invalid(input, "empty image ID or digest after '@'"));
            }
            Some((before, after)) if parse_digest(after).is_err() => {
                if !is_lower_hex(after) || after.len() < MIN_ID_PREFIX_LEN || after.len() > 64 {
                    return Err(invalid(
                        input,
                        format!("{after:?} does not look like an image ID (64 lowercase hex digits, or a prefix of at least {MIN_ID_PREFIX_LEN}) or a digest"),
                    ));
                }
                (before, Some(after))
            }
            _ => (text, None),
        };
        let name = |t: &str| Reference::parse_with_default_tag(t).map_err(|e| in_name(input, e));
        Ok(match id {
            Some(id) => {
                let name = if name_text.is_empty() {
                    None
                } else {
                    Some(name(name_text)?)
                };
                match (name, id.len() == 64) {
                    (None, true) => StorageImage::Id(id.to_string()),
                    (Some(n), true) => StorageImage::NamedWithId(n, id.to_string()),
                    (name, false) => StorageImage::IdPrefix {
                        name,
                        prefix: id.to_string(),
                    },
                }
            }
            None if is_full_id(text) => StorageImage::Id(text.to_string()),
            None if text.len() >= MIN_ID_PREFIX_LEN && is_lower_hex(text) => {
                StorageImage::NameOrIdPrefix {
                    name: name(text)?,
                    prefix: text.to_string(),
                }
            }
            None => StorageImage::Named(name(text)?),
        })
    }

    /// The name, if the image is named.
    pub fn name(&self) -> Option<&Reference> {
        match self {
            StorageImage::Named(n)
            | StorageImage::NamedWithId(n, _)
            | StorageImage::NameOrIdPrefix { name: n, .. } => Some(n),
            StorageImage::IdPrefix { name, .. } => name.as_ref(),
            StorageImage::Id(_) => None,
        }
    }

    /// The full image ID, if one was given.
    pub fn id(&self) -> Option<&str> {
        match self {
            StorageImage::Id(id) | StorageImage::NamedWithId(_, id) => Some(id),
            _ => None,
        }
    }
}

/// The form that parses back to the same value: `NAME`, `@ID`, `NAME@ID`, `@PREFIX`, `PREFIX`.
impl fmt::Display for StorageImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageImage::Named(n) => write!(f, "{n}"),
            StorageImage::Id(id) => write!(f, "@{id}"),
            StorageImage::NamedWithId(n, id) => write!(f, "{n}@{id}"),
            StorageImage::IdPrefix { name, prefix } => {
                if let Some(n) = name {
                    write!(f, "{n}")?;
                }
                write!(f, "@{prefix}")
            }
            StorageImage::NameOrIdPrefix { prefix, .. } => f.write_str(prefix),
        }
    }
}

fn parse_ostree(s: &str, rest: &str) -> Result<ImageRef> {
    let (repo, image) = if let Some(inner) = rest.strip_prefix('[') {
        let Some((repo, image)) = inner.split_once(']') else {
            return Err(invalid(
                s,
                "the repository has no closing ']': expected ostree:[REPO]IMAGE",
            ));
        };
        if image.contains("@/") {
            return Err(invalid(
                s,
                "the repository is given twice: use either ostree:[REPO]IMAGE or ostree:IMAGE@/REPO",
            ));
        }
        (Some(repo.to_string()), image)
    } else if let Some((image, repo)) = rest.split_once("@/") {
        (Some(format!("/{repo}")), image)
    } else {
        (None, rest)
    };
    if let Some(repo) = &repo {
        if repo.is_empty() {
            return Err(invalid(
                s,
                "empty ostree repository path between '[' and ']'",
            ));
        }
        if repo.contains(':') {
            return Err(invalid(
                s,
                format!("the ostree repository path {repo:?} contains a colon"),
            ));
        }
        // `ostree:[REPO]` (how the name prints) cannot hold a ']' in REPO.
        if repo.contains(']') {
            return Err(invalid(
                s,
                format!("the ostree repository path {repo:?} contains ']'; rename the directory"),
            ));
        }
    }
    if image.is_empty() && repo.is_none() {
        return Err(invalid(
            s,
            "no image and no repository: expected ostree:[REPO]IMAGE or ostree:[REPO]",
        ));
    }
    let image = match image {
        "" => None,
        i => Some(Reference::parse_with_default_tag(i).map_err(|e| in_name(s, e))?),
    };
    Ok(ImageRef::Ostree {
        repo: repo.map(PathBuf::from),
        image,
    })
}

/// The transport syntax, in a form [`ImageRef::parse`] reads back to the same value.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Docker(r) => write!(f, "docker://{r}"),
            ImageRef::Oci { path, tag } | ImageRef::OciArchive { path, tag } => {
                write!(f, "{}:{}", self.transport_name(), path.display())?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
            ImageRef::ContainersStorage { store, image } => {
                f.write_str("containers-storage:")?;
                if let Some(s) = store {
                    write!(f, "{s}")?;
                }
                write!(f, "{image}")
            }
            ImageRef::Ostree { repo, image } => {
                f.write_str("ostree:")?;
                if let Some(r) = repo {
                    write!(f, "[{}]", r.display())?;
                }
                match image {
                    Some(i) => write!(f, "{i}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Same as [`ImageRef::parse`].
impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<ImageRef> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const H: &str = "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    /// parse → Display → parse gives the same value, and Display is stable.
    fn round_trip(s: &str) -> ImageRef {
        let a = ImageRef::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let shown = a.to_string();
        let b: ImageRef = shown.parse().unwrap_or_else(|e| panic!("{shown:?}: {e}"));
        assert_eq!(a, b, "{s:?} displayed as {shown:?}");
        assert_eq!(b.to_string(), shown);
        a
    }

    fn err_reason(s: &str) -> String {
        match ImageRef::parse(s) {
            Err(Error::InvalidTransport { input, reason }) => {
                assert_eq!(input, s);
                reason
            }
            Err(Error::Unsupported { reason, .. }) => reason,
            other => panic!("{s:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn docker() {
        let cases = [
            (
                "docker://busybox",
                "docker://docker.io/library/busybox:latest",
            ),
            (
                "docker://busybox:1.36",
                "docker://docker.io/library/busybox:1.36",
            ),
            (
                "docker://quay.io/fedora/fedora-bootc:42",
                "docker://quay.io/fedora/fedora-bootc:42",
            ),
            (
                "docker://localhost:5000/a/b",
                "docker://localhost:5000/a/b:latest",
            ),
            (
                "docker://index.docker.io/user/x",
                "docker://docker.io/user/x:latest",
            ),
        ];
        for (input, shown) in cases {
            let i = round_trip(input);
            assert_eq!(i.to_string(), shown);
            assert_eq!(i.transport_name(), "docker");
        }
        let d = format!("docker://quay.io/a/b@sha256:{H}");
        let i = round_trip(&d);
        assert_eq!(i.to_string(), d);
        match i {
            ImageRef::Docker(r) => assert_eq!(r.tag(), None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_errors() {
        assert!(err_reason("docker:busybox").contains("did you mean docker://busybox?"));
        assert!(err_reason("docker:/busybox").contains("did you mean docker://busybox?"));
        assert!(err_reason("docker://").contains("empty"));
        assert!(err_reason("docker://FOO/bar").contains("must be lowercase"));
        assert!(err_reason("docker://[::1]:5000/x").contains("invalid reference format"));
        let both = format!("docker://busybox:latest@sha256:{H}");
        assert!(err_reason(&both).contains("both a tag and a digest"));
        assert!(err_reason("docker://busybox@@unknown-digest@@").contains("not supported"));
    }

    #[test]
    fn oci_and_archive() {
        let i = round_trip("oci:/tmp/layout");
        assert_eq!(
            i,
            ImageRef::Oci {
                path: "/tmp/layout".into(),
                tag: None
            }
        );
        assert_eq!(i.transport_name(), "oci");
        let i = round_trip("oci:relative/dir:v1.0");
        assert_eq!(
            i,
            ImageRef::Oci {
                path: "relative/dir".into(),
                tag: Some("v1.0".into())
            }
        );
        // Split at the first ':', so the tag may hold ':' and '/'.
        let i = round_trip("oci:/l:quay.io/fedora/fedora:40");
        assert_eq!(
            i,
            ImageRef::Oci {
                path: "/l".into(),
                tag: Some("quay.io/fedora/fedora:40".into())
            }
        );
        for tag in ["a--b", "a+b", "a@b", "A_b", "1.0-rc.1"] {
            round_trip(&format!("oci:/l:{tag}"));
        }
        // An empty tag is no tag.
        assert_eq!(ImageRef::parse("oci:/l:").unwrap(), round_trip("oci:/l"));
        let i = round_trip("oci-archive:/tmp/img.tar:latest");
        assert_eq!(
            i,
            ImageRef::OciArchive {
                path: "/tmp/img.tar".into(),
                tag: Some("latest".into())
            }
        );
        assert_eq!(i.transport_name(), "oci-archive");
        assert_eq!(i.to_string(), "oci-archive:/tmp/img.tar:latest");
    }

    #[test]
    fn oci_errors() {
        assert!(err_reason("oci:").contains("no path"));
        assert!(err_reason("oci::tag").contains("no path"));
        assert!(err_reason("oci-archive:").contains("no path"));
        for bad in ["-a", "a-", "a__b", "a---b", "a//b", "a b", "a:", "/a", "a/"] {
            let s = format!("oci:/l:{bad}");
            assert!(err_reason(&s).contains("invalid image name"), "{s}");
        }
        assert!(err_reason("oci:/l:@0").contains("by index"));
    }

    #[test]
    fn containers_storage_names_and_ids() {
        let i = round_trip("containers-storage:busybox");
        assert_eq!(
            i,
            ImageRef::ContainersStorage {
                store: None,
                image: StorageImage::Named(r("docker.io/library/busybox:latest")),
            }
        );
        assert_eq!(
            i.to_string(),
            "containers-storage:docker.io/library/busybox:latest"
        );
        assert_eq!(i.transport_name(), "containers-storage");

        let i = round_trip(&format!("containers-storage:{ID}"));
        assert_eq!(
            i,
            ImageRef::ContainersStorage {
                store: None,
                image: StorageImage::Id(ID.into())
            }
        );
        assert_eq!(i.to_string(), format!("containers-storage:@{ID}"));
        assert_eq!(round_trip(&format!("containers-storage:@{ID}")), i);

        let i = round_trip(&format!("containers-storage:localhost/x:1@{ID}"));
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(
            *image,
            StorageImage::NamedWithId(r("localhost/x:1"), ID.into())
        );
        assert_eq!(image.name(), Some(&r("localhost/x:1")));
        assert_eq!(image.id(), Some(ID));

        // A digest after '@' stays part of the name; an ID may follow it.
        let named = format!("quay.io/a/b@sha256:{H}");
        let i = round_trip(&format!("containers-storage:{named}"));
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(*image, StorageImage::Named(r(&named)));
        let i = round_trip(&format!("containers-storage:{named}@{ID}"));
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(*image, StorageImage::NamedWithId(r(&named), ID.into()));
    }

    #[test]
    fn containers_storage_id_prefixes() {
        let i = round_trip("containers-storage:@0123ab");
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(
            *image,
            StorageImage::IdPrefix {
                name: None,
                prefix: "0123ab".into()
            }
        );
        assert_eq!(image.id(), None);
        let i = round_trip("containers-storage:busybox@0123ab");
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(
            *image,
            StorageImage::IdPrefix {
                name: Some(r("busybox:latest")),
                prefix: "0123ab".into()
            }
        );
        let i = round_trip("containers-storage:abc");
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(
            *image,
            StorageImage::NameOrIdPrefix {
                name: r("docker.io/library/abc:latest"),
                prefix: "abc".into()
            }
        );
        assert_eq!(i.to_string(), "containers-storage:abc");
        // Two characters are too short to be an ID prefix: a plain name.
        let i = round_trip("containers-storage:ab");
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(*image, StorageImage::Named(r("ab:latest")));
        // With a tag it is a name, never a prefix.
        let i = round_trip("containers-storage:abc:1");
        let ImageRef::ContainersStorage { image, .. } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(*image, StorageImage::Named(r("abc:1")));
    }

    #[test]
    fn containers_storage_store_spec() {
        let s = "containers-storage:[overlay@/var/lib/containers/storage+/run/containers/storage:overlay.mountopt=nodev,overlay.ignore_chown_errors=true]quay.io/a/b:1";
        let i = round_trip(s);
        assert_eq!(i.to_string(), s);
        let ImageRef::ContainersStorage { store, image } = &i else {
            panic!("{i:?}")
        };
        assert_eq!(
            *store,
            Some(StoreSpec {
                driver: Some("overlay".into()),
                graph_root: "/var/lib/containers/storage".into(),
                run_root: Some("/run/containers/storage".into()),
                options: vec![
                    "overlay.mountopt=nodev".into(),
                    "overlay.ignore_chown_errors=true".into()
                ],
            })
        );
        assert_eq!(*image, StorageImage::Named(r("quay.io/a/b:1")));

        // bootc's form.
        let i = round_trip(
            "containers-storage:[overlay@/run/bootc/storage+/proc/self/fd/3]localhost/bootc",
        );
        assert_eq!(
            i.to_string(),
            "containers-storage:[overlay@/run/bootc/storage+/proc/self/fd/3]localhost/bootc:latest"
        );

        let i = round_trip(&format!("containers-storage:[/tmp/root]@{ID}"));
        assert_eq!(
            i,
            ImageRef::ContainersStorage {
                store: Some(StoreSpec {
                    driver: None,
                    graph_root: "/tmp/root".into(),
                    run_root: None,
                    options: vec![]
                }),
                image: StorageImage::Id(ID.into()),
            }
        );
        let i = round_trip("containers-storage:[vfs@/g:opt]x");
        let ImageRef::ContainersStorage {
            store: Some(st), ..
        } = &i
        else {
            panic!("{i:?}")
        };
        assert_eq!(st.driver.as_deref(), Some("vfs"));
        assert_eq!(st.run_root, None);
        assert_eq!(st.options, vec!["opt".to_string()]);
    }

    #[test]
    fn containers_storage_errors() {
        let cases = [
            ("containers-storage:", "no image name or ID"),
            ("containers-storage:[overlay@/g+/r]", "no image name or ID"),
            ("containers-storage:[/g", "no closing ']'"),
            ("containers-storage:[]x", "no graph root"),
            ("containers-storage:[overlay@]x", "no graph root"),
            ("containers-storage:[@/g]x", "empty driver"),
            ("containers-storage:[rel/root]x", "not an absolute path"),
            ("containers-storage:[/g+rel]x", "not an absolute path"),
            ("containers-storage:[/g:a,,b]x", "empty option"),
            ("containers-storage:busybox@", "empty image ID"),
            (
                "containers-storage:busybox@xyz",
                "does not look like an image ID",
            ),
            (
                "containers-storage:busybox@ab",
                "does not look like an image ID",
            ),
            (
                "containers-storage:busybox@sha256:abc",
                "does not look like an image ID",
            ),
            ("containers-storage:Busybox", "must be lowercase"),
        ];
        for (input, want) in cases {
            let got = err_reason(input);
            assert!(got.contains(want), "{input:?}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn ostree() {
        let i = round_trip("ostree:busybox");
        assert_eq!(
            i,
            ImageRef::Ostree {
                repo: None,
                image: Some(r("busybox:latest"))
            }
        );
        assert_eq!(i.to_string(), "ostree:docker.io/library/busybox:latest");
        assert_eq!(i.transport_name(), "ostree");

        let c_image_form = round_trip("ostree:quay.io/a/b:1@/srv/repo");
        let bracket_form = round_trip("ostree:[/srv/repo]quay.io/a/b:1");
        assert_eq!(c_image_form, bracket_form);
        assert_eq!(
            bracket_form,
            ImageRef::Ostree {
                repo: Some("/srv/repo".into()),
                image: Some(r("quay.io/a/b:1"))
            }
        );
        assert_eq!(c_image_form.to_string(), "ostree:[/srv/repo]quay.io/a/b:1");
        // A relative repository in the bracket form.
        let i = round_trip("ostree:[repo]x");
        assert_eq!(
            i,
            ImageRef::Ostree {
                repo: Some("repo".into()),
                image: Some(r("x:latest"))
            }
        );
        // No image: a destination that records the source's name.
        assert_eq!(
            round_trip("ostree:[/srv/repo]"),
            ImageRef::Ostree {
                repo: Some("/srv/repo".into()),
                image: None
            }
        );
        // A digested image in the c/image form.
        let d = format!("busybox@sha256:{H}");
        let i = round_trip(&format!("ostree:{d}@/r"));
        assert_eq!(
            i,
            ImageRef::Ostree {
                repo: Some("/r".into()),
                image: Some(r(&d))
            }
        );
    }

    #[test]
    fn ostree_errors() {
        let cases = [
            ("ostree:", "no image and no repository"),
            ("ostree:[]x", "empty ostree repository"),
            ("ostree:[/r", "no closing ']'"),
            ("ostree:[/r]x@/s", "given twice"),
            ("ostree:x@/a:b", "contains a colon"),
            // Found by fuzz/ (reference): the repository printed as `[/oso]qua]`.
            ("ostree:@/oso]qua", "contains ']'"),
            ("ostree:x@/a]b", "contains ']'"),
            ("ostree:X", "must be lowercase"),
        ];
        for (input, want) in cases {
            let got = err_reason(input);
            assert!(got.contains(want), "{input:?}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn transport_errors() {
        let r = err_reason("busybox");
        assert!(r.contains("no transport"), "{r}");
        assert!(r.contains(SUPPORTED_TRANSPORTS), "{r}");
        assert!(r.contains("did you mean docker://busybox?"), "{r}");
        assert!(!err_reason("$$$").contains("did you mean"));
        let r = err_reason("busybox:latest");
        assert!(r.contains("unknown transport \"busybox\""), "{r}");
        assert!(r.contains("did you mean docker://busybox:latest?"), "{r}");
        let r = err_reason("quay.io:443/a/b");
        assert!(r.contains("did you mean docker://quay.io:443/a/b?"), "{r}");
        let r = err_reason("foo:bar baz");
        assert!(r.contains("unknown transport \"foo\""), "{r}");
        assert!(!r.contains("did you mean"), "{r}");
        assert!(err_reason("").contains("no transport"));
        for t in ["dir", "docker-archive", "docker-daemon", "sif", "tarball"] {
            let s = format!("{t}:/x");
            match ImageRef::parse(&s) {
                Err(e @ Error::Unsupported { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("not supported by stowage"), "{msg}");
                    assert!(msg.contains(SUPPORTED_TRANSPORTS), "{msg}");
                    assert!(msg.starts_with(&format!("{t}:")), "{msg}");
                }
                other => panic!("{s}: {other:?}"),
            }
        }
    }
}

#[cfg(test)]
mod hint_tests {
    use super::*;

    #[test]
    fn misspelt_transports_get_the_right_hint() {
        let msg = |s: &str| ImageRef::parse(s).unwrap_err().to_string();
        let m = msg("containers-storge:foo");
        assert!(m.contains("did you mean containers-storage:foo?"), "{m}");
        assert!(!m.contains("did you mean docker://"), "{m}");
        let m = msg("dokcer://busybox");
        assert!(m.contains("did you mean docker://busybox?"), "{m}");
        let m = msg("busybox:1");
        assert!(m.contains("did you mean docker://busybox:1?"), "{m}");
        assert_eq!(edit_distance("oci-achive", "oci-archive"), 1);
    }
}
