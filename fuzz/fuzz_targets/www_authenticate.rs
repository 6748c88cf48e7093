//! `WWW-Authenticate` challenges (`Challenge::parse`), token-server answers
//! (`TokenResponse`) and `user:password` credentials (`Credentials::parse`,
//! `Credentials::from_auth_field`).
//!
//! Properties: a Bearer challenge always has a realm; a challenge printed back in the
//! canonical quoted form parses to the same challenge; credentials survive the base64
//! `auth` form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stowage_engine::registry::auth::{Challenge, Credentials, TokenResponse};

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn print(c: &Challenge) -> String {
    match c {
        Challenge::Basic { realm } => format!("Basic realm={}", quote(realm)),
        Challenge::Bearer {
            realm,
            service,
            scope,
            error,
        } => {
            let mut s = format!("Bearer realm={}", quote(realm));
            for (k, v) in [("service", service), ("scope", scope), ("error", error)] {
                if let Some(v) = v {
                    s.push_str(&format!(",{k}={}", quote(v)));
                }
            }
            s
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = std::str::from_utf8(data) {
        if let Some(c) = Challenge::parse(header) {
            let text = print(&c);
            assert_eq!(
                Challenge::parse(&text).as_ref(),
                Some(&c),
                "{header:?} -> {text:?}"
            );
        }
        if let Some(cred) = Credentials::parse(header) {
            if let Some(basic) = cred.basic_header() {
                let field = basic.strip_prefix("Basic ").expect("a Basic header");
                let back = Credentials::from_auth_field(field).expect("own auth field parses");
                assert_eq!(back.username, cred.username);
                assert_eq!(back.password, cred.password);
            }
        }
        let _ = Credentials::from_auth_field(header);
    }
    if let Ok(t) = serde_json::from_slice::<TokenResponse>(data) {
        let _ = t.bearer();
        assert!(t.lifetime().as_secs() >= 10);
    }
});
