//! The values a template sees, and how Go's `fmt` prints them.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

/// A value as a Go template sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A nil pointer or interface: prints `<nil>`.
    Nil,
    /// A value that is not there (a missing map key): prints `<no value>`.
    Missing,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A `time.Time`: prints as Go's `Time.String`, JSON as RFC 3339.
    Time(DateTime<FixedOffset>),
    /// A slice.
    List(Vec<Data>),
    /// A `map[string]…`: a missing key is [`Data::Missing`]; printed with sorted keys.
    Map(BTreeMap<String, Data>),
    /// A struct: an unknown field is an error.
    Struct(Struct),
    /// A nil map: prints `map[]` like an empty one, but its JSON is `null`.
    NilMap,
}

/// A Go struct: its type name (for errors), its fields in order, and the JSON the `json`
/// function prints for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    /// Go's name of the type, as errors print it (`*v1.ImageConfig`, `interface {}`).
    pub type_name: String,
    /// Fields by Go name, in declaration order.
    pub fields: Vec<(String, Data)>,
    /// What `{{json .}}` prints; `None`: the fields as an object.
    pub json: Option<Value>,
}

impl Struct {
    /// The field `name`, if the struct has it.
    pub fn field(&self, name: &str) -> Option<&Data> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// One field of a [`Shape::Struct`].
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The Go field name templates use (`ID`).
    pub go: &'static str,
    /// The JSON key it is serialised under (`Id`).
    pub json: &'static str,
    /// Its shape.
    pub shape: &'static Shape,
}

impl Field {
    /// The field `go`, serialised under the JSON key `json`.
    pub const fn new(go: &'static str, json: &'static str, shape: &'static Shape) -> Field {
        Field { go, json, shape }
    }

    /// A field whose JSON key is its Go name (`Digest` under `Digest`).
    pub const fn named(name: &'static str, shape: &'static Shape) -> Field {
        Field::new(name, name, shape)
    }
}

/// How a JSON value maps onto Go types, for [`Data::from_json`].
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A string (zero value `""`).
    Str,
    /// An integer (zero value 0).
    Int,
    /// A boolean (zero value false).
    Bool,
    /// A `*time.Time` in RFC 3339 (zero value nil).
    Time,
    /// A slice of the inner shape (zero value `[]`).
    List(&'static Shape),
    /// A `map[string]…` (zero value `map[]`).
    Map,
    /// Whatever JSON holds: objects become maps (zero value nil).
    Any,
    /// A struct (zero value nil: podman's are pointers).
    Struct {
        /// Go's name of the type.
        type_name: &'static str,
        /// Its fields in order.
        fields: &'static [Field],
    },
}

impl Data {
    /// The value `json` holds, read as `shape` says; absent fields get the zero value.
    pub fn from_json(json: &Value, shape: &Shape) -> Data {
        match (shape, json) {
            (_, Value::Null) => Data::zero(shape),
            (Shape::Str, Value::String(s)) => Data::Str(s.clone()),
            (Shape::Time, Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(Data::Time)
                .unwrap_or_else(|_| Data::Str(s.clone())),
            (Shape::List(inner), Value::Array(a)) => {
                Data::List(a.iter().map(|v| Data::from_json(v, inner)).collect())
            }
            (Shape::Map, Value::Object(o)) => Data::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Data::from_json(v, &Shape::Any)))
                    .collect(),
            ),
            (Shape::Struct { type_name, fields }, Value::Object(o)) => {
                // `json` prints the object as it came, except that maps inside it are
                // encoded again, with sorted keys, as Go's encoder writes maps.
                let mut encoded = o.clone();
                let fields = fields
                    .iter()
                    .map(|f| {
                        let v = match o.get(f.json) {
                            Some(j) => {
                                let d = Data::from_json(j, f.shape);
                                if matches!(
                                    f.shape,
                                    Shape::Map | Shape::Struct { .. } | Shape::List(_)
                                ) {
                                    encoded.insert(f.json.to_string(), d.to_json());
                                }
                                d
                            }
                            None => Data::zero(f.shape),
                        };
                        (f.go.to_string(), v)
                    })
                    .collect();
                Data::Struct(Struct {
                    type_name: type_name.to_string(),
                    fields,
                    json: Some(Value::Object(encoded)),
                })
            }
            (_, v) => Data::any(v),
        }
    }

    /// A JSON value as it is: objects are maps.
    pub fn any(json: &Value) -> Data {
        match json {
            Value::Null => Data::Nil,
            Value::Bool(b) => Data::Bool(*b),
            Value::Number(n) => n
                .as_i64()
                .map(Data::Int)
                .unwrap_or_else(|| Data::Float(n.as_f64().unwrap_or(0.0))),
            Value::String(s) => Data::Str(s.clone()),
            Value::Array(a) => Data::List(a.iter().map(Data::any).collect()),
            Value::Object(o) => {
                Data::Map(o.iter().map(|(k, v)| (k.clone(), Data::any(v))).collect())
            }
        }
    }

    /// Go's zero value of `shape`.
    pub fn zero(shape: &Shape) -> Data {
        match shape {
            Shape::Str => Data::Str(String::new()),
            Shape::Int => Data::Int(0),
            Shape::Bool => Data::Bool(false),
            Shape::List(_) => Data::List(Vec::new()),
            Shape::Map => Data::NilMap,
            Shape::Time | Shape::Any | Shape::Struct { .. } => Data::Nil,
        }
    }

    /// Go template truth: false, 0, "", nil, empty slices and maps are false.
    pub fn truth(&self) -> bool {
        match self {
            Data::Nil | Data::Missing => false,
            Data::Bool(b) => *b,
            Data::Int(i) => *i != 0,
            Data::Float(f) => *f != 0.0,
            Data::Str(s) => !s.is_empty(),
            Data::List(l) => !l.is_empty(),
            Data::Map(m) => !m.is_empty(),
            Data::NilMap => false,
            Data::Time(_) | Data::Struct(_) => true,
        }
    }

    /// The value as JSON (what the `json` function encodes).
    pub fn to_json(&self) -> Value {
        match self {
            Data::Nil | Data::Missing | Data::NilMap => Value::Null,
            Data::Bool(b) => Value::Bool(*b),
            Data::Int(i) => Value::from(*i),
            Data::Float(f) => Value::from(*f),
            Data::Str(s) => Value::String(s.clone()),
            Data::Time(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Data::List(l) => Value::Array(l.iter().map(Data::to_json).collect()),
            Data::Map(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Data::Struct(s) => s.json.clone().unwrap_or_else(|| {
                Value::Object(
                    s.fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_json()))
                        .collect(),
                )
            }),
        }
    }

    /// Go's name of the value's type, for errors.
    pub fn type_name(&self) -> String {
        match self {
            Data::Nil | Data::Missing => "interface {}".into(),
            Data::Bool(_) => "bool".into(),
            Data::Int(_) => "int64".into(),
            Data::Float(_) => "float64".into(),
            Data::Str(_) => "string".into(),
            Data::Time(_) => "*time.Time".into(),
            Data::List(_) => "[]interface {}".into(),
            Data::Map(_) | Data::NilMap => "map[string]string".into(),
            Data::Struct(s) => s.type_name.clone(),
        }
    }
}

/// Go's `Time.String`: `2006-01-02 15:04:05.999999999 -0700 MST` (the zone's name is `UTC`
/// at offset 0, else the offset again, as Go prints an unnamed zone).
pub fn go_time(t: &DateTime<FixedOffset>) -> String {
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = t.format("%z").to_string();
    let zone = if t.offset().local_minus_utc() == 0 {
        "UTC".to_string()
    } else {
        off.clone()
    };
    format!("{s} {off} {zone}")
}

/// Go's `%v` of a float64: the shortest representation, in exponent form (`1e+06`) when the
/// exponent is below -4 or at least 21... as `strconv.FormatFloat(f, 'g', -1, 64)` with
/// `%v`'s threshold.
pub fn go_float(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f.is_infinite() {
            if f > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else {
            "0".into()
        };
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        let e = format!("{f:e}");
        let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
        let x: i32 = x.parse().unwrap_or(0);
        let sign = if x < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", x.abs())
    } else {
        format!("{f}")
    }
}

/// Go's `fmt` `%v` of a value.
pub fn print_value(d: &Data, out: &mut String) {
    match d {
        Data::Nil => out.push_str("<nil>"),
        Data::Missing => out.push_str("<no value>"),
        Data::NilMap => out.push_str("map[]"),
        Data::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Data::Int(i) => out.push_str(&i.to_string()),
        Data::Float(f) => out.push_str(&go_float(*f)),
        Data::Str(s) => out.push_str(s),
        Data::Time(t) => out.push_str(&go_time(t)),
        Data::List(l) => {
            out.push('[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(v, out);
            }
            out.push(']');
        }
        Data::Map(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                print_value(v, out);
            }
            out.push(']');
        }
        Data::Struct(s) => {
            out.push('{');
            for (i, (_, v)) in s.fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                print_value(v, out);
            }
            out.push('}');
        }
    }
}

/// [`print_value`] into a new string.
pub fn to_text(d: &Data) -> String {
    let mut s = String::new();
    print_value(d, &mut s);
    s
}

/// [`go_time`] of a Unix time, in UTC (podman's `CreatedAt` where the zone is UTC).
pub fn go_time_unix(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| go_time(&t.fixed_offset()))
        .unwrap_or_default()
}

/// The Unix time of an RFC 3339 timestamp, if it is one.
pub fn unix_of_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}
