//! Canonical JSON (OLPC): how ostree-rs-ext stores the manifest and config in commit metadata
//! (`canon_json::CanonJsonSerialize`).
//!
//! 1. Object members are sorted by key (byte order of the UTF-8 key), arrays keep their order;
//!    no whitespace anywhere.
//! 2. Strings escape only `"` and `\`; every other character, control characters included, is
//!    written as it is.
//! 3. Numbers must be integers (OLPC canonical JSON has no floats): a float is an error.
//!
//! Hand-written: the format is these three rules, and a crate for them (olpc-cjson) would pull
//! in its own serializer for 60 lines of code.

use std::fmt::Write as _;

use serde_json::Value;

use crate::error::{Error, Result};

/// `value` as canonical JSON; `what` names the document in errors.
pub fn to_string(value: &Value, what: &str) -> Result<String> {
    let mut out = String::new();
    write_value(&mut out, value, what)?;
    Ok(out)
}

/// The JSON document `bytes` as canonical JSON.
pub fn canonicalize(bytes: &[u8], what: &str) -> Result<String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: what.to_string(),
        source: e,
    })?;
    to_string(&v, what)
}

fn write_value(out: &mut String, v: &Value, what: &str) -> Result<()> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write!(out, "{i}").expect("writing to a String");
            } else if let Some(u) = n.as_u64() {
                write!(out, "{u}").expect("writing to a String");
            } else {
                return Err(Error::Malformed {
                    what: what.to_string(),
                    reason: format!(
                        "the number {n} is not an integer; canonical JSON has no floats"
                    ),
                });
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, what)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v, what)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_compact_minimal_escapes() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, {"z": true, "a": null}], "a": "x\"y\\z\nw"}"#)
                .unwrap();
        assert_eq!(
            to_string(&v, "t").unwrap(),
            "{\"a\":\"x\\\"y\\\\z\nw\",\"b\":[1,{\"a\":null,\"z\":true}]}"
        );
        let f: Value = serde_json::from_str("{\"a\": 1.5}").unwrap();
        assert!(to_string(&f, "t")
            .unwrap_err()
            .to_string()
            .contains("not an integer"));
    }
}
