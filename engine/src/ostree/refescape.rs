//! Escaping image references into ostree ref names, as ostree-rs-ext does
//! (`ostree/container/image/docker_3A__2F__2F_quay_2E_io/x/y_3A_tag`).
//!
//! Rules (from ostree-rs-ext's `refescape`): ASCII alphanumerics and `-` pass through; `/`
//! passes through only right after an alphanumeric (so no empty or `.`-leading path
//! components appear); `_` becomes `__`; anything else becomes `_XX_` with the character's hex
//! code point. Unescaping accepts alphanumerics, `-` and `/` literally, `__` as `_`, and `_HEX_`.

use crate::error::{Error, Result};

/// Escape `s` for use in a ref name.
pub fn escape(s: &str) -> Result<String> {
    if s.is_empty() || s.contains('\0') {
        return Err(Error::InvalidReference {
            input: s.to_string(),
            reason: "cannot escape an empty string or one with NUL into an ostree ref".into(),
        });
    }
    let mut out = String::with_capacity(s.len() * 2);
    let mut previous_alnum = false;
    for c in s.chars() {
        let alnum = c.is_ascii_alphanumeric();
        if alnum || c == '-' || (c == '/' && previous_alnum) {
            out.push(c);
        } else if c == '_' {
            out.push_str("__");
        } else {
            out.push_str(&format!("_{:X}_", c as u32));
        }
        previous_alnum = alnum;
    }
    Ok(out)
}

/// `prefix/escape(s)`.
pub fn prefix_escape(prefix: &str, s: &str) -> Result<String> {
    Ok(format!("{prefix}/{}", escape(s)?))
}

/// Undo [`escape`].
pub fn unescape(s: &str) -> Result<String> {
    let bad = |reason: &str| Error::InvalidReference {
        input: s.to_string(),
        reason: format!("not an escaped ostree ref: {reason}"),
    };
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '/' {
            out.push(c);
            continue;
        }
        if c != '_' {
            return Err(bad(&format!("unexpected {c:?}")));
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return Err(bad("unterminated _HEX_ escape")),
            }
        }
        let code = u32::from_str_radix(&hex, 16).map_err(|_| bad("empty _HEX_ escape"))?;
        out.push(char::from_u32(code).ok_or_else(|| bad("escape is not a character"))?);
    }
    Ok(out)
}

/// Strip `prefix/` from `r` and unescape the rest.
pub fn unprefix_unescape(prefix: &str, r: &str) -> Result<String> {
    let rest = r
        .strip_prefix(prefix)
        .and_then(|x| x.strip_prefix('/'))
        .ok_or_else(|| Error::InvalidReference {
            input: r.to_string(),
            reason: format!("does not start with {prefix}/"),
        })?;
    unescape(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(
            prefix_escape("container", "registry:quay.io/coreos/fedora:latest").unwrap(),
            "container/registry_3A_quay_2E_io/coreos/fedora_3A_latest"
        );
        assert_eq!(
            prefix_escape(
                "ostree/container/image",
                "docker://quay.io/fedora/fedora-bootc:42"
            )
            .unwrap(),
            "ostree/container/image/docker_3A__2F__2F_quay_2E_io/fedora/fedora-bootc_3A_42"
        );
    }

    #[test]
    fn round_trip() {
        for s in [
            "docker://ghcr.io/a_b/c-d:1.0",
            "oci:/var/tmp/x",
            "containers-storage:localhost/bootc",
            "a//b",
            "é",
        ] {
            assert_eq!(unescape(&escape(s).unwrap()).unwrap(), s);
        }
        assert!(escape("").is_err());
        assert!(unescape("a_3A").is_err());
        assert!(unescape("a.b").is_err());
    }
}
