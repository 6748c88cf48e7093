//! Image references, transport names and digests (`Reference::parse`, `ImageRef::parse`,
//! `digest::parse_digest`).
//!
//! Property: whatever parses prints (Display) to a text that parses back to the same value,
//! and printing that again gives the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stowage_engine::transport::{DefaultTransport, ImageRef};
use stowage_engine::Reference;

/// Whether `familiar` (of a docker.io image) starts with a component that parses as a host.
fn familiar_is_ambiguous(r: &Reference, familiar: &str) -> bool {
    let Some((first, _)) = familiar.split_once('/') else {
        return false;
    };
    r.domain() == "docker.io"
        && (first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase()))
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = [Reference::parse(s), Reference::parse_with_default_tag(s)];
    for r in parsed.into_iter().flatten() {
        let text = r.to_string();
        let again = Reference::parse(&text)
            .unwrap_or_else(|e| panic!("{s:?} printed as {text:?}, which does not parse: {e}"));
        assert_eq!(again, r, "{s:?} -> {text:?} re-parses differently");
        assert_eq!(again.to_string(), text);
        // The familiar form (`busybox:latest`) names the same image, except where it is
        // ambiguous as in Go's FamiliarString: `docker.io/docker.io/x` prints as
        // `docker.io/x`, whose first component reads as a registry again.
        let familiar = r.familiar();
        if familiar_is_ambiguous(&r, &familiar) {
            continue;
        }
        let back = Reference::parse(&familiar)
            .unwrap_or_else(|e| panic!("familiar form {familiar:?} of {s:?} does not parse: {e}"));
        assert_eq!(
            back, r,
            "familiar form {familiar:?} of {s:?} re-parses differently"
        );
    }
    let _ = Reference::is_short_name(s);
    if let Ok(d) = stowage_engine::digest::parse_digest(s) {
        let text = d.to_string();
        assert_eq!(
            stowage_engine::digest::parse_digest(&text).ok(),
            Some(d),
            "digest {s:?}"
        );
    }
    let parsed = [
        ImageRef::parse(s),
        ImageRef::parse_with_default(s, &DefaultTransport::Docker),
        ImageRef::parse_with_default(s, &DefaultTransport::ContainersStorage(None)),
    ];
    for r in parsed.into_iter().flatten() {
        let text = r.to_string();
        let again = ImageRef::parse(&text)
            .unwrap_or_else(|e| panic!("{s:?} printed as {text:?}, which does not parse: {e}"));
        assert_eq!(again, r, "{s:?} -> {text:?} re-parses differently");
        assert_eq!(again.to_string(), text);
    }
});
