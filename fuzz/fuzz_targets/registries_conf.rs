//! registries.conf (`RegistriesConf::parse`) and the lookups that use it: `find`,
//! `pull_endpoints`, `push_endpoint`, `resolve_short_name`.
//!
//! Input: an image name on the first line, the TOML text after it.
//! Properties: the push endpoint is the last pull endpoint and never a mirror; short-name
//! candidates are fully qualified references with a tag or digest.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use stowage_engine::registry::RegistriesConf;
use stowage_engine::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (name, text) = s.split_once('\n').unwrap_or(("busybox", s));
    let Ok(conf) = RegistriesConf::parse(text, Path::new("fuzz.conf")) else {
        return;
    };
    let _ = conf.find(name);
    if let Ok(r) = Reference::parse_with_default_tag(name) {
        match conf.pull_endpoints(&r) {
            Ok(all) => {
                let push = conf
                    .push_endpoint(&r)
                    .expect("pull endpoints exist, so push does");
                assert!(!push.mirror);
                assert_eq!(all.last(), Some(&push), "the location comes last");
                assert!(all[..all.len() - 1].iter().all(|e| e.mirror));
                for e in &all {
                    let _ = e.name();
                }
            }
            Err(_) => assert!(conf.push_endpoint(&r).is_err()),
        }
    }
    if let Ok(candidates) = conf.resolve_short_name(name) {
        for c in candidates {
            assert!(c.tag().is_some() || c.digest().is_some(), "{c} has no tag");
            assert!(
                !Reference::is_short_name(&c.to_string()),
                "{c} is still short"
            );
        }
    }
});
