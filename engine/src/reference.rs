//! Docker image references (`busybox`, `quay.io/fedora/fedora:40`, `name@sha256:…`), parsed and
//! normalised the way containers/image (`docker/reference`, the distribution reference grammar)
//! does it, so that every name means the same image to stowage as to podman and skopeo.
//!
//! Parsing a user's name ([`Reference::parse`], c/image's `ParseNormalizedNamed`):
//! 1. a bare 64-digit lowercase hex string is refused: it is an image ID, not a name;
//! 2. the first `/`-separated component is the registry only when it contains `.` or `:` or is
//!    `localhost`; otherwise the registry is `docker.io`. `index.docker.io` becomes `docker.io`,
//!    and a one-component path on `docker.io` gets the `library/` prefix;
//! 3. the repository path (everything after the registry, up to a `:`) must be lowercase;
//! 4. the result `DOMAIN/PATH[:TAG][@DIGEST]` is checked against the reference grammar:
//!    the domain is DNS-like components with an optional `:port`, each path component is
//!    `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`, the tag is `[A-Za-z0-9_][A-Za-z0-9_.-]`
//!    of at most 128 characters, the digest is `algorithm:hex` (sha256, sha384 or sha512 with
//!    lowercase hex of the right length); `DOMAIN/PATH` is at most 255 characters.
//!
//! [`Reference::parse_with_default_tag`] adds `:latest` when there is neither tag nor digest
//! (c/image's `TagNameOnly`), which is what the `docker://` transport does.
//!
//! The grammar is small and fixed, so it is checked by a hand-written parser rather than by the
//! `regex` crate: that keeps a dependency out of the static binary, and a parser that knows
//! which part failed can say so ("invalid tag format", "repository name must be lowercase")
//! where a regex only says "no match".
//!
//! Known differences from containers/image, both making bad names fail earlier and more
//! clearly: like c/image, IPv6 literal registries (`[::1]:5000/x`) are refused (its grammar has
//! no brackets); unlike c/image, a registry-looking first component that is not a valid host
//! name but is a valid path component (`a_b.com/x`) is refused here, where c/image accepts it
//! as a reference with an empty registry and fails later when contacting the registry "".

use std::fmt;
use std::str::FromStr;

use crate::digest::{parse_digest, Digest};
use crate::error::{Error, Result};

/// The registry short names resolve to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy spelling of [`DEFAULT_DOMAIN`], rewritten to it.
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of Docker Hub's official images (`busybox` is `docker.io/library/busybox`).
pub const OFFICIAL_REPO_NAME: &str = "library";
/// The tag added by [`Reference::parse_with_default_tag`].
pub const DEFAULT_TAG: &str = "latest";
/// Longest `domain/path` accepted.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag accepted.
pub const TAG_LENGTH_MAX: usize = 128;

const REASON_FORMAT: &str = "invalid reference format";
const REASON_UPPERCASE: &str = "repository name must be lowercase";
const REASON_TAG: &str = "invalid tag format: a tag is 1 to 128 characters of [A-Za-z0-9_.-] and must not start with '.' or '-'";

/// A normalised docker image reference: registry domain, repository path, optional tag and
/// optional digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse a reference the way podman and skopeo do (`ParseNormalizedNamed`): `busybox`
    /// becomes `docker.io/library/busybox`, `user/app` becomes `docker.io/user/app`, and names
    /// whose first component looks like a host (`localhost/x`, `host:5000/a/b:tag`,
    /// `quay.io/x@sha256:…`) keep it as the registry. No tag is added; see
    /// [`Reference::parse_with_default_tag`].
    pub fn parse(s: &str) -> Result<Reference> {
        let fail = |reason: String| Error::InvalidReference {
            input: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(fail("the reference is empty".into()));
        }
        if is_full_id(s) {
            return Err(fail(
                "cannot specify 64-byte hexadecimal strings as a repository name (this looks like an image ID)"
                    .into(),
            ));
        }
        let (domain, remainder) = split_docker_domain(s);
        let remote_name = remainder.split(':').next().unwrap_or_default();
        if remote_name.to_lowercase() != remote_name {
            return Err(fail(REASON_UPPERCASE.into()));
        }
        let full = format!("{domain}/{remainder}");
        let parts = parse_unnormalized(&full).map_err(|e| fail(e.reason(s)))?;
        if parts.domain.is_empty() {
            return Err(fail(format!(
                "{domain:?} looks like a registry but is not a valid host name"
            )));
        }
        Ok(parts)
    }

    /// [`Reference::parse`], then add the tag `latest` when the reference has neither a tag
    /// nor a digest (c/image's `TagNameOnly`).
    pub fn parse_with_default_tag(s: &str) -> Result<Reference> {
        Ok(Reference::parse(s)?.with_default_tag())
    }

    /// This reference, with the tag `latest` added when it has neither a tag nor a digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.is_name_only() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// True when `s` is a valid reference without a registry: `fedora`, `library/fedora:40`,
    /// `busybox@sha256:…`. `quay.io/x`, `localhost/x`, `host:5000/x` and `docker.io/x` are not
    /// short names, nor is anything that does not parse. Short names are what registries.conf
    /// aliases and unqualified-search registries apply to (c/image's `shortnames.IsShortName`).
    pub fn is_short_name(s: &str) -> bool {
        match parse_unnormalized(s) {
            Ok(parts) => !(parts.domain.contains(['.', ':']) || parts.domain == "localhost"),
            Err(_) => false,
        }
    }

    /// The registry: `docker.io`, `quay.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry: `library/busybox`, `fedora/fedora`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, `domain/path`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// True when there is neither a tag nor a digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The same repository with `tag` (replacing any tag; a digest is kept, as in c/image's
    /// `WithTag`). Fails when `tag` is not a valid tag.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        if !is_valid_tag(tag) {
            return Err(Error::InvalidReference {
                input: format!("{}:{tag}", self.name()),
                reason: REASON_TAG.into(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            ..self.clone()
        })
    }

    /// The same repository with `digest` (replacing any digest; a tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The bare repository name, without tag or digest.
    pub fn without_tag_or_digest(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    /// The familiar name Docker's UI shows: `docker.io/` dropped, and `library/` dropped for a
    /// one-level official image; tag and digest kept (`busybox:latest`, `user/x`,
    /// `localhost/x:1`).
    pub fn familiar(&self) -> String {
        let mut out = String::new();
        if self.domain == DEFAULT_DOMAIN {
            match self.path.split_once('/') {
                Some((OFFICIAL_REPO_NAME, rest)) if !rest.contains('/') => out.push_str(rest),
                _ => out.push_str(&self.path),
            }
        } else {
            out.push_str(&self.domain);
            out.push('/');
            out.push_str(&self.path);
        }
        self.push_tag_and_digest(&mut out);
        out
    }

    fn push_tag_and_digest(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_ref());
        }
    }
}

/// The full normalised form: `docker.io/library/busybox:latest`, `quay.io/x:tag@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        self.push_tag_and_digest(&mut out);
        f.write_str(&out)
    }
}

/// Same as [`Reference::parse`].
impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

/// A full image ID: exactly 64 lowercase hex digits.
pub(crate) fn is_full_id(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// Non-empty and only `[0-9a-f]`.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// c/image's `SplitDockerDomain`: pick the registry and the rest, applying the docker.io
/// defaults. `name` need not be valid yet.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, remainder) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first, rest),
        _ => (DEFAULT_DOMAIN, name),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let remainder = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        format!("{OFFICIAL_REPO_NAME}/{remainder}")
    } else {
        remainder.to_string()
    };
    (domain, remainder)
}

/// Why the unnormalised grammar refused a string.
#[derive(Debug, PartialEq)]
enum GrammarError {
    /// Nothing matches (`ErrReferenceInvalidFormat`).
    Format,
    /// Everything but the tag is well-formed.
    Tag,
    /// It would parse if lowercased (`ErrNameContainsUppercase`).
    Uppercase,
    /// `domain/path` is over 255 characters.
    TooLong(usize),
    /// The digest is in the grammar but not a valid digest of a supported algorithm.
    Digest(String),
}

impl GrammarError {
    fn reason(&self, input: &str) -> String {
        match self {
            GrammarError::Format => {
                if input.contains("://") {
                    format!("{REASON_FORMAT} (a transport prefix such as docker:// does not belong in an image reference)")
                } else {
                    REASON_FORMAT.to_string()
                }
            }
            GrammarError::Tag => REASON_TAG.to_string(),
            GrammarError::Uppercase => REASON_UPPERCASE.to_string(),
            GrammarError::TooLong(n) => format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters (it has {n})"
            ),
            GrammarError::Digest(why) => format!("invalid digest: {why}"),
        }
    }
}

/// c/image's `Parse`: match `[DOMAIN/]PATH[:TAG][@DIGEST]` without any normalisation. The
/// domain is empty when the first component is not a valid domain (or there is only one).
fn parse_unnormalized(s: &str) -> std::result::Result<Reference, GrammarError> {
    match split_grammar(s) {
        Ok(parts) => finish_parts(parts),
        Err(e @ (GrammarError::Format | GrammarError::Tag)) => {
            let lower = s.to_lowercase();
            if lower != s && split_grammar(&lower).is_ok() {
                Err(GrammarError::Uppercase)
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

/// The pieces of a string that matched the grammar, before the digest is validated.
struct GrammarParts<'a> {
    domain: &'a str,
    path: &'a str,
    name_len: usize,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

fn split_grammar(s: &str) -> std::result::Result<GrammarParts<'_>, GrammarError> {
    // Neither the name nor the tag can hold '@', and the digest cannot either, so the first
    // '@' is the digest separator.
    let (name_tag, digest) = match s.split_once('@') {
        Some((nt, d)) => {
            if !is_digest_grammar(d) {
                return Err(GrammarError::Format);
            }
            (nt, Some(d))
        }
        None => (s, None),
    };
    // A ':' in the name can only be a port, which is followed by '/'; so a ':' after the last
    // '/' starts the tag.
    let last_slash = name_tag.rfind('/');
    let (name, tag) = match name_tag.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
            (&name_tag[..colon], Some(&name_tag[colon + 1..]))
        }
        _ => (name_tag, None),
    };
    let (domain, path) = split_domain_path(name).ok_or(GrammarError::Format)?;
    if let Some(tag) = tag {
        if !is_valid_tag(tag) {
            return Err(GrammarError::Tag);
        }
    }
    Ok(GrammarParts {
        domain,
        path,
        name_len: name.len(),
        tag,
        digest,
    })
}

fn finish_parts(parts: GrammarParts<'_>) -> std::result::Result<Reference, GrammarError> {
    if parts.name_len > NAME_TOTAL_LENGTH_MAX {
        return Err(GrammarError::TooLong(parts.name_len));
    }
    let digest = match parts.digest {
        Some(d) => Some(parse_digest(d).map_err(|e| match e {
            Error::InvalidDigest { reason, .. } => GrammarError::Digest(reason),
            other => GrammarError::Digest(other.to_string()),
        })?),
        None => None,
    };
    Ok(Reference {
        domain: parts.domain.to_string(),
        path: parts.path.to_string(),
        tag: parts.tag.map(str::to_string),
        digest,
    })
}

/// Split a name into (domain, path) as the anchored name grammar does: the first component is
/// the domain when it is a valid domain and something follows; otherwise the whole name must
/// be a path and the domain is empty. `None` when neither reading works.
fn split_domain_path(name: &str) -> Option<(&str, &str)> {
    if let Some((first, rest)) = name.split_once('/') {
        if is_valid_domain(first) && is_valid_path(rest) {
            return Some((first, rest));
        }
    }
    is_valid_path(name).then_some(("", name))
}

/// One or more path components separated by single '/'.
fn is_valid_path(path: &str) -> bool {
    path.split('/').all(is_valid_path_component)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]`, host being dot-separated components of `[A-Za-z0-9-]` that neither start
/// nor end with '-'.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(|c| {
        let b = c.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(l)) => {
                f.is_ascii_alphanumeric()
                    && l.is_ascii_alphanumeric()
                    && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
            }
            _ => false,
        }
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
    match b.first() {
        Some(first) if word(first) && b.len() <= TAG_LENGTH_MAX => {
            b[1..].iter().all(|x| word(x) || *x == b'.' || *x == b'-')
        }
        _ => false,
    }
}

/// The digest grammar of references, `ALG[SEP ALG]*:HEX{32,}` with `ALG` =
/// `[A-Za-z][A-Za-z0-9]*` and `SEP` one of `-_+.`; whether the algorithm is supported and the
/// hex has the right length is checked afterwards by [`parse_digest`].
fn is_digest_grammar(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        matches!(b.first(), Some(f) if f.is_ascii_alphabetic())
            && b.iter().all(u8::is_ascii_alphanumeric)
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";

    fn reason(s: &str) -> String {
        match Reference::parse(s) {
            Err(Error::InvalidReference { input, reason }) => {
                assert_eq!(input, s);
                reason
            }
            other => panic!("{s:?}: expected InvalidReference, got {other:?}"),
        }
    }

    /// input, domain, path, tag, digest.
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    /// Cases from c/image's normalisation and parsing tests.
    #[test]
    fn normalisation_table() {
        let d = format!("sha256:{H}");
        let cases: &[Case] = &[
            ("busybox", "docker.io", "library/busybox", None, None),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36"), None),
            ("library/busybox", "docker.io", "library/busybox", None, None),
            ("docker.io/busybox", "docker.io", "library/busybox", None, None),
            ("docker.io/library/busybox", "docker.io", "library/busybox", None, None),
            ("index.docker.io/busybox", "docker.io", "library/busybox", None, None),
            ("index.docker.io/fooo/bar", "docker.io", "fooo/bar", None, None),
            ("fooo/bar", "docker.io", "fooo/bar", None, None),
            ("library/foo/bar", "docker.io", "library/foo/bar", None, None),
            ("store/foo/bar", "docker.io", "store/foo/bar", None, None),
            ("other/library", "docker.io", "other/library", None, None),
            ("localhost/x", "localhost", "x", None, None),
            ("localhost/x:1", "localhost", "x", Some("1"), None),
            ("localhost:5000/a/b", "localhost:5000", "a/b", None, None),
            ("host:5000/a/b:tag", "host:5000", "a/b", Some("tag"), None),
            ("127.0.0.1:8000/private/moonbase", "127.0.0.1:8000", "private/moonbase", None, None),
            ("example.com/privatebase", "example.com", "privatebase", None, None),
            ("Foo.com/bar", "Foo.com", "bar", None, None),
            ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", Some("some-long-tag"), None),
            ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app", Some("test.example.com"), None),
            ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", Some("xn--n3h.com"), None),
            ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", Some("8080"), None),
            ("test.com:5000", "docker.io", "library/test.com", Some("5000"), None),
            ("test_com/foo", "docker.io", "test_com/foo", None, None),
            ("lowercase:Uppercase", "docker.io", "library/lowercase", Some("Uppercase"), None),
            ("docker-rules/docker", "docker.io", "docker-rules/docker", None, None),
            ("docker---rules/docker", "docker.io", "docker---rules/docker", None, None),
            ("dock__er/docker", "docker.io", "dock__er/docker", None, None),
            ("d/docker", "docker.io", "d/docker", None, None),
            ("ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", None, None),
            ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io", "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", None, None),
            ("docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "docker.io", "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", None, None),
            ("busybox@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa", "docker.io", "library/busybox", None, Some(&d)),
            ("busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa", "docker.io", "library/busybox", Some("latest"), Some(&d)),
            ("test:5000/repo:tag@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa", "test:5000", "repo", Some("tag"), Some(&d)),
        ];
        for &(input, domain, path, tag, digest) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(r.domain(), domain, "{input}");
            assert_eq!(r.path(), path, "{input}");
            assert_eq!(r.name(), format!("{domain}/{path}"), "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(
                r.digest().map(|d| d.to_string()).as_deref(),
                digest,
                "{input}"
            );
        }
    }

    #[test]
    fn sha512_digest_and_punycode() {
        let hex = "f".repeat(128);
        let s = format!("xn--7o8h.com/myimage:xn--7o8h.com@sha512:{hex}");
        let r = Reference::parse(&s).unwrap();
        assert_eq!(r.domain(), "xn--7o8h.com");
        assert_eq!(r.tag(), Some("xn--7o8h.com"));
        assert_eq!(r.digest().unwrap().to_string(), format!("sha512:{hex}"));
        assert_eq!(r.to_string(), s);
    }

    #[test]
    fn display_and_familiar() {
        let cases = [
            ("busybox", "docker.io/library/busybox", "busybox"),
            (
                "busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("docker.io/library/foo", "docker.io/library/foo", "foo"),
            (
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "library/foo/bar",
            ),
            ("user/x", "docker.io/user/x", "user/x"),
            ("localhost/x:1", "localhost/x:1", "localhost/x:1"),
            (
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
            ),
            (
                "quay.io/library/foo",
                "quay.io/library/foo",
                "quay.io/library/foo",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            // The full form parses back to the same reference.
            assert_eq!(Reference::parse(full).unwrap(), r, "{input}");
            assert_eq!(full.parse::<Reference>().unwrap(), r, "{input}");
        }
        let both = format!("busybox:latest@sha256:{H}");
        let r = Reference::parse(&both).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/{both}"));
        assert_eq!(r.familiar(), both);
    }

    #[test]
    fn default_tag() {
        let r = Reference::parse_with_default_tag("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        let r = Reference::parse_with_default_tag("quay.io/a/b:40").unwrap();
        assert_eq!(r.tag(), Some("40"));
        // A digest-only reference stays digest-only.
        let r = Reference::parse_with_default_tag(&format!("busybox@sha256:{H}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{H}")
        );
    }

    #[test]
    fn rejects_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Uppercase:tag", REASON_UPPERCASE),
            ("docker/Docker", REASON_UPPERCASE),
            ("docker.io/docker/Docker", REASON_UPPERCASE),
            ("test:5000/Uppercase/lowercase:tag", REASON_UPPERCASE),
            ("FOO/bar", REASON_UPPERCASE),
            ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "64-byte hexadecimal"),
            ("https://github.com/docker/docker", "transport prefix"),
            ("-docker", REASON_FORMAT),
            ("-docker/docker", REASON_FORMAT),
            ("-docker.io/docker/docker", REASON_FORMAT),
            ("docker-/docker", REASON_FORMAT),
            ("-docker-/docker", REASON_FORMAT),
            ("docker///docker", REASON_FORMAT),
            ("docker.io/docker///docker", REASON_FORMAT),
            ("____/____", REASON_FORMAT),
            ("_docker/_docker", REASON_FORMAT),
            ("dock..er/docker", REASON_FORMAT),
            ("dock_.er/docker", REASON_FORMAT),
            ("dock-.er/docker", REASON_FORMAT),
            ("dock___er/docker", REASON_FORMAT),
            ("docker/", REASON_FORMAT),
            (":justtag", REASON_FORMAT),
            ("aa/asdf$$^/aa", REASON_FORMAT),
            ("[::1]:5000/x", REASON_FORMAT),
            ("a:b:c", REASON_FORMAT),
            ("foo:bar/baz", REASON_FORMAT),
            ("host:/x", REASON_FORMAT),
            ("busybox:-tag", "invalid tag format"),
            ("busybox:.tag", "invalid tag format"),
            ("busybox:", "invalid tag format"),
            ("busybox:t/a", REASON_FORMAT),
            ("a_b.com/x", "not a valid host name"),
            ("@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", REASON_FORMAT),
            ("repo@sha256:ffffffffffffffffffffffffffffffffff", "invalid digest"),
            ("validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "invalid digest"),
            ("repo@sha256:FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", "invalid digest"),
            ("repo@sha256:abc", REASON_FORMAT),
            ("repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff@x", REASON_FORMAT),
            (" ", REASON_FORMAT),
            ("busybox ", REASON_FORMAT),
        ];
        for (input, want) in cases {
            let got = reason(input);
            assert!(
                got.contains(want),
                "{input:?}: reason {got:?} lacks {want:?}"
            );
        }
    }

    #[test]
    fn name_length_limit() {
        // 255 characters of name are fine, 256 are not (domain/path counts, the tag does not).
        let path = format!("{}a", "a/".repeat(122));
        let ok = format!("localhost/{path}");
        assert_eq!(ok.len(), NAME_TOTAL_LENGTH_MAX);
        assert!(Reference::parse(&format!("{ok}:tag-puts-this-over-max")).is_ok());
        let max = format!("localhost/{}", "a".repeat(NAME_TOTAL_LENGTH_MAX - 10));
        assert_eq!(max.len(), NAME_TOTAL_LENGTH_MAX);
        assert!(Reference::parse(&max).is_ok());
        let over = format!("localhost/{}", "a".repeat(NAME_TOTAL_LENGTH_MAX - 9));
        assert!(reason(&over).contains("must not be more than 255 characters"));
        // Normalisation adds docker.io/ before the length is checked.
        let long_ns = format!("{}/docker", "a".repeat(240));
        assert!(reason(&long_ns).contains("255"));
    }

    #[test]
    fn tag_length_limit() {
        let tag128 = "t".repeat(128);
        let r = Reference::parse(&format!("busybox:{tag128}")).unwrap();
        assert_eq!(r.tag(), Some(tag128.as_str()));
        let tag129 = "t".repeat(129);
        assert!(reason(&format!("busybox:{tag129}")).contains("invalid tag format"));
    }

    #[test]
    fn with_tag_digest_and_trim() {
        let r = Reference::parse("quay.io/a/b:1").unwrap();
        let t = r.with_tag("2").unwrap();
        assert_eq!(t.to_string(), "quay.io/a/b:2");
        match r.with_tag("-bad") {
            Err(Error::InvalidReference { reason, .. }) => {
                assert!(reason.contains("invalid tag format"))
            }
            other => panic!("{other:?}"),
        }
        assert!(r.with_tag(&"x".repeat(129)).is_err());
        let d = parse_digest(&format!("sha256:{H}")).unwrap();
        let td = t.with_digest(d.clone());
        assert_eq!(td.to_string(), format!("quay.io/a/b:2@sha256:{H}"));
        // with_tag on a digested reference keeps the digest.
        assert_eq!(
            td.with_tag("3").unwrap().to_string(),
            format!("quay.io/a/b:3@sha256:{H}")
        );
        let bare = td.without_tag_or_digest();
        assert_eq!(bare.to_string(), "quay.io/a/b");
        assert!(bare.is_name_only());
        assert_eq!(bare.with_default_tag().to_string(), "quay.io/a/b:latest");
    }

    #[test]
    fn short_names() {
        let short = [
            "fedora",
            "fedora:latest",
            "library/fedora",
            "library/fedora:latest",
            "repo/fedora",
        ];
        for s in short {
            assert!(Reference::is_short_name(s), "{s}");
        }
        let b = format!("busybox@sha256:{H}");
        assert!(Reference::is_short_name(&b));
        let not_short = [
            "quay.io/fedora",
            "docker.io/fedora",
            "docker.io/library/fedora:latest",
            "localhost/fedora",
            "localhost:5000/fedora:latest",
            "example.foo.this.may.be.garbage.but.maybe.not:1234/fedora:latest",
            "",
            "$$$",
            "::",
            "docker://quay.io/library/foo:bar",
            " ",
        ];
        for s in not_short {
            assert!(!Reference::is_short_name(s), "{s}");
        }
        let d = format!("docker.io/library/busybox:latest@sha256:{H}");
        assert!(!Reference::is_short_name(&d));
    }

    #[test]
    fn grammar_pieces() {
        assert!(is_valid_path_component("a"));
        assert!(is_valid_path_component("a-----b"));
        assert!(is_valid_path_component("a.b_c__d-e"));
        assert!(!is_valid_path_component("a._b"));
        assert!(!is_valid_path_component("A"));
        assert!(!is_valid_path_component(""));
        assert!(is_valid_domain("a-b.c:1"));
        assert!(!is_valid_domain("a-.c"));
        assert!(!is_valid_domain("a..c"));
        assert!(!is_valid_domain("a:"));
        assert!(!is_valid_domain("a:1x"));
        assert!(is_valid_tag("_"));
        assert!(is_valid_tag("A.b-c_d"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag("a+b"));
        assert!(is_digest_grammar(
            "sha256+b64u.x:0123456789abcdef0123456789ABCDEF"
        ));
        assert!(!is_digest_grammar("1sha:0123456789abcdef0123456789abcdef"));
        assert!(!is_digest_grammar("sha256:0123"));
    }
}
