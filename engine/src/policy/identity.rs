//! `signedIdentity`: whether the docker reference a signature names is accepted for an image.
//!
//! 1. The signature's reference is normalised (`busybox` → `docker.io/library/busybox`);
//!    one that does not parse is not accepted.
//! 2. `matchExact`: both have a tag or digest and are equal. `matchRepoDigestOrExact`: an
//!    image named by tag needs exactly that reference; one named by digest only the same
//!    repository (a signature without tag or digest never matches). `matchRepository`: the
//!    same repository. `exactReference` / `exactRepository` compare with the policy's own
//!    reference instead of the image's. `remapIdentity` rewrites the image's name prefix, then
//!    matches as `matchRepoDigestOrExact`.

use super::config::SignedIdentity;
use crate::reference::Reference;

/// Whether `signed` (the reference inside a signature) is accepted for an image called
/// `image` (`None`: the image has no docker reference, which never matches the
/// image-relative rules).
pub fn matches(rule: &SignedIdentity, image: Option<&Reference>, signed: &str) -> bool {
    let Ok(signed) = Reference::parse(signed) else {
        return false;
    };
    let full = |r: &Reference| r.to_string();
    match rule {
        SignedIdentity::MatchExact => image.is_some_and(|i| {
            !i.is_name_only() && !signed.is_name_only() && full(i) == full(&signed)
        }),
        SignedIdentity::MatchRepoDigestOrExact => {
            image.is_some_and(|i| repo_digest_or_exact(i, &signed))
        }
        SignedIdentity::MatchRepository => image.is_some_and(|i| i.name() == signed.name()),
        SignedIdentity::ExactReference(r) => !signed.is_name_only() && full(r) == full(&signed),
        SignedIdentity::ExactRepository(r) => r.name() == signed.name(),
        SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        } => image.is_some_and(|i| match remap(i, prefix, signed_prefix) {
            Some(remapped) => repo_digest_or_exact(&remapped, &signed),
            None => false,
        }),
    }
}

fn repo_digest_or_exact(intended: &Reference, signed: &Reference) -> bool {
    if signed.is_name_only() {
        return false;
    }
    if intended.tag().is_some() {
        intended.to_string() == signed.to_string()
    } else if intended.digest().is_some() {
        intended.name() == signed.name()
    } else {
        false
    }
}

/// `image` with its name's `prefix` replaced by `signed_prefix` (unchanged when the name does
/// not start with `prefix` at a `/` boundary); `None` when the result does not parse.
fn remap(image: &Reference, prefix: &str, signed_prefix: &str) -> Option<Reference> {
    let name = image.name();
    let applies = name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'/');
    if !applies {
        return Some(image.clone());
    }
    let full = image.to_string();
    let rewritten = format!("{signed_prefix}{}", &full[prefix.len()..]);
    let r = Reference::parse(&rewritten).ok()?;
    // The rewritten text must already be normalised (containers/image parses it strictly).
    (r.to_string() == rewritten).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn rules() {
        let tagged = r("quay.io/x/y:1");
        let digest = r(
            "quay.io/x/y@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        use SignedIdentity::*;
        assert!(matches(
            &MatchRepoDigestOrExact,
            Some(&tagged),
            "quay.io/x/y:1"
        ));
        assert!(!matches(
            &MatchRepoDigestOrExact,
            Some(&tagged),
            "quay.io/x/y:2"
        ));
        assert!(
            !matches(&MatchRepoDigestOrExact, Some(&tagged), "quay.io/x/y"),
            "cosign's untagged identity needs matchRepository"
        );
        assert!(matches(
            &MatchRepoDigestOrExact,
            Some(&digest),
            "quay.io/x/y:whatever"
        ));
        assert!(!matches(
            &MatchRepoDigestOrExact,
            Some(&digest),
            "quay.io/x/y"
        ));
        assert!(matches(&MatchRepository, Some(&tagged), "quay.io/x/y"));
        assert!(!matches(&MatchRepository, Some(&tagged), "quay.io/x/z"));
        assert!(!matches(&MatchRepository, None, "quay.io/x/y"));
        assert!(matches(&MatchExact, Some(&tagged), "quay.io/x/y:1"));
        assert!(!matches(&MatchExact, Some(&digest), "quay.io/x/y:1"));
        assert!(matches(
            &ExactReference(r("docker.io/library/busybox:1")),
            None,
            "busybox:1"
        ));
        assert!(matches(
            &ExactRepository(r("busybox")),
            Some(&tagged),
            "docker.io/library/busybox:7"
        ));
        let remap = RemapIdentity {
            prefix: "mirror.local/x".into(),
            signed_prefix: "quay.io/x".into(),
        };
        assert!(matches(
            &remap,
            Some(&r("mirror.local/x/y:1")),
            "quay.io/x/y:1"
        ));
        assert!(!matches(
            &remap,
            Some(&r("mirror.local/xy:1")),
            "quay.io/xy:1"
        ));
        assert!(!matches(&MatchRepository, Some(&tagged), "Not A Reference"));
    }
}
