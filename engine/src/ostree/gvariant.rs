//! GVariant in normal form: the serialization every ostree metadata object uses.
//!
//! Hand-written rather than a dependency. The candidates were `gvariant` 0.5 (pure Rust, what
//! ostree-rs-ext uses, but its types are fixed at compile time by a macro, so a commit's
//! `a{sv}` holding arbitrary nested `v` values needs its own escape hatch, and it has had no
//! release for years) and `zvariant` with its `gvariant` feature (pure Rust and maintained, but
//! built on serde for D-Bus first, with GVariant support marked experimental and a large
//! dependency tree). What ostree needs is small: a dynamic [`Value`] tree, one serializer that
//! emits normal form, and one reader that never panics and never allocates more than the input
//! justifies. The flow:
//! 1. a [`Type`] is parsed from a type string (`"(a{sv}aya(say)sstayay)"`), depth-limited;
//! 2. [`Value::to_bytes`] serializes a value in normal form: members aligned with zero padding,
//!    framing offsets of the smallest width that fits the container, little-endian;
//! 3. [`parse`] reads bytes as a given type, bounds-checking every offset; every element it
//!    creates consumes at least one input byte (or is bounded by the type), so allocation is
//!    linear in the input; malformed input is an [`GvError`], never a panic;
//! 4. [`is_normal_form`] says whether bytes are exactly what step 2 would produce for the value
//!    they decode to (ostree checksums the normal form, so `fsck` checks this).
//!
//! Integers are stored little-endian, as GLib does on the machines ostree runs on; ostree's own
//! objects store uid/gid/mode and the commit timestamp big-endian *inside* those integers,
//! which the object layer ([`super::object`]) handles.

use std::fmt;

/// Deepest nesting of containers accepted in a type or a value (GLib allows 128 in types).
pub const MAX_DEPTH: usize = 64;

/// A malformed type string or serialized value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GvError(pub String);

impl fmt::Display for GvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GvError {}

fn err<T>(msg: impl Into<String>) -> Result<T, GvError> {
    Err(GvError(msg.into()))
}

/// A GVariant type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// `b`
    Bool,
    /// `y`
    Byte,
    /// `n`
    Int16,
    /// `q`
    UInt16,
    /// `i`
    Int32,
    /// `u`
    UInt32,
    /// `h`
    Handle,
    /// `x`
    Int64,
    /// `t`
    UInt64,
    /// `d`
    Double,
    /// `s`
    Str,
    /// `o`
    ObjectPath,
    /// `g`
    Signature,
    /// `v`
    Variant,
    /// `mT`
    Maybe(Box<Type>),
    /// `aT`
    Array(Box<Type>),
    /// `(T...)`
    Tuple(Vec<Type>),
    /// `{KV}`
    DictEntry(Box<Type>, Box<Type>),
}

impl Type {
    /// Parse a complete type string (exactly one type).
    pub fn parse(s: &str) -> Result<Type, GvError> {
        let bytes = s.as_bytes();
        let (t, used) = Self::parse_prefix(bytes, 0)?;
        if used != bytes.len() {
            return err(format!("type string {s:?} has trailing characters"));
        }
        Ok(t)
    }

    fn parse_prefix(s: &[u8], depth: usize) -> Result<(Type, usize), GvError> {
        if depth > MAX_DEPTH {
            return err("type nested too deeply");
        }
        let Some(&c) = s.first() else {
            return err("type string ends early");
        };
        let basic = match c {
            b'b' => Some(Type::Bool),
            b'y' => Some(Type::Byte),
            b'n' => Some(Type::Int16),
            b'q' => Some(Type::UInt16),
            b'i' => Some(Type::Int32),
            b'u' => Some(Type::UInt32),
            b'h' => Some(Type::Handle),
            b'x' => Some(Type::Int64),
            b't' => Some(Type::UInt64),
            b'd' => Some(Type::Double),
            b's' => Some(Type::Str),
            b'o' => Some(Type::ObjectPath),
            b'g' => Some(Type::Signature),
            b'v' => Some(Type::Variant),
            _ => None,
        };
        if let Some(t) = basic {
            return Ok((t, 1));
        }
        match c {
            b'm' | b'a' => {
                let (inner, n) = Self::parse_prefix(&s[1..], depth + 1)?;
                let t = if c == b'm' {
                    Type::Maybe(Box::new(inner))
                } else {
                    Type::Array(Box::new(inner))
                };
                Ok((t, n + 1))
            }
            b'(' => {
                let mut members = Vec::new();
                let mut i = 1;
                loop {
                    match s.get(i) {
                        None => return err("unterminated tuple type"),
                        Some(b')') => return Ok((Type::Tuple(members), i + 1)),
                        Some(_) => {
                            let (t, n) = Self::parse_prefix(&s[i..], depth + 1)?;
                            members.push(t);
                            i += n;
                        }
                    }
                }
            }
            b'{' => {
                let (k, n1) = Self::parse_prefix(&s[1..], depth + 1)?;
                if !k.is_basic() {
                    return err("dictionary key must be a basic type");
                }
                let (v, n2) = Self::parse_prefix(&s[1 + n1..], depth + 1)?;
                if s.get(1 + n1 + n2) != Some(&b'}') {
                    return err("dictionary entry type must have exactly two members");
                }
                Ok((Type::DictEntry(Box::new(k), Box::new(v)), n1 + n2 + 2))
            }
            other => err(format!("unknown type character {:?}", other as char)),
        }
    }

    fn is_basic(&self) -> bool {
        !matches!(
            self,
            Type::Variant | Type::Maybe(_) | Type::Array(_) | Type::Tuple(_) | Type::DictEntry(..)
        )
    }

    /// Alignment in bytes (1, 2, 4 or 8).
    pub fn alignment(&self) -> usize {
        match self {
            Type::Bool | Type::Byte | Type::Str | Type::ObjectPath | Type::Signature => 1,
            Type::Int16 | Type::UInt16 => 2,
            Type::Int32 | Type::UInt32 | Type::Handle => 4,
            Type::Int64 | Type::UInt64 | Type::Double | Type::Variant => 8,
            Type::Maybe(t) | Type::Array(t) => t.alignment(),
            Type::Tuple(ms) => ms.iter().map(Type::alignment).max().unwrap_or(1),
            Type::DictEntry(k, v) => k.alignment().max(v.alignment()),
        }
    }

    /// Size in bytes if every value of this type has the same size.
    pub fn fixed_size(&self) -> Option<usize> {
        match self {
            Type::Bool | Type::Byte => Some(1),
            Type::Int16 | Type::UInt16 => Some(2),
            Type::Int32 | Type::UInt32 | Type::Handle => Some(4),
            Type::Int64 | Type::UInt64 | Type::Double => Some(8),
            Type::Str | Type::ObjectPath | Type::Signature | Type::Variant => None,
            Type::Maybe(_) | Type::Array(_) => None,
            Type::Tuple(ms) => tuple_fixed_size(ms.iter(), self.alignment()),
            Type::DictEntry(k, v) => tuple_fixed_size([&**k, &**v].into_iter(), self.alignment()),
        }
    }
}

fn tuple_fixed_size<'a>(members: impl Iterator<Item = &'a Type>, align: usize) -> Option<usize> {
    let mut size = 0;
    for m in members {
        size = align_up(size, m.alignment()) + m.fixed_size()?;
    }
    if size == 0 {
        return Some(1);
    }
    Some(align_up(size, align))
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self {
            Type::Bool => "b",
            Type::Byte => "y",
            Type::Int16 => "n",
            Type::UInt16 => "q",
            Type::Int32 => "i",
            Type::UInt32 => "u",
            Type::Handle => "h",
            Type::Int64 => "x",
            Type::UInt64 => "t",
            Type::Double => "d",
            Type::Str => "s",
            Type::ObjectPath => "o",
            Type::Signature => "g",
            Type::Variant => "v",
            Type::Maybe(t) => return write!(f, "m{t}"),
            Type::Array(t) => return write!(f, "a{t}"),
            Type::Tuple(ms) => {
                f.write_str("(")?;
                for m in ms {
                    write!(f, "{m}")?;
                }
                return f.write_str(")");
            }
            Type::DictEntry(k, v) => return write!(f, "{{{k}{v}}}"),
        };
        f.write_str(c)
    }
}

/// A GVariant value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `b`
    Bool(bool),
    /// `y`
    Byte(u8),
    /// `n`
    Int16(i16),
    /// `q`
    UInt16(u16),
    /// `i`
    Int32(i32),
    /// `u`
    UInt32(u32),
    /// `h`
    Handle(i32),
    /// `x`
    Int64(i64),
    /// `t`
    UInt64(u64),
    /// `d`
    Double(f64),
    /// `s`
    Str(String),
    /// `o`
    ObjectPath(String),
    /// `g`
    Signature(String),
    /// `v`: a value carrying its own type.
    Variant(Box<Value>),
    /// `mT`: the element type and the value, if any.
    Maybe(Type, Option<Box<Value>>),
    /// `aT` other than `ay`: the element type and the elements.
    Array(Type, Vec<Value>),
    /// `ay`.
    Bytes(Vec<u8>),
    /// `(T...)`
    Tuple(Vec<Value>),
    /// `{KV}`
    DictEntry(Box<Value>, Box<Value>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// An `a{sv}` dictionary with the entries in the given order.
    pub fn dict_sv(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
        Value::Array(
            Type::DictEntry(Box::new(Type::Str), Box::new(Type::Variant)),
            entries
                .into_iter()
                .map(|(k, v)| {
                    Value::DictEntry(
                        Box::new(Value::Str(k)),
                        Box::new(Value::Variant(Box::new(v))),
                    )
                })
                .collect(),
        )
    }

    /// An `as` array.
    pub fn str_array(items: impl IntoIterator<Item = String>) -> Value {
        Value::Array(Type::Str, items.into_iter().map(Value::Str).collect())
    }

    /// The value's type.
    pub fn type_(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Byte(_) => Type::Byte,
            Value::Int16(_) => Type::Int16,
            Value::UInt16(_) => Type::UInt16,
            Value::Int32(_) => Type::Int32,
            Value::UInt32(_) => Type::UInt32,
            Value::Handle(_) => Type::Handle,
            Value::Int64(_) => Type::Int64,
            Value::UInt64(_) => Type::UInt64,
            Value::Double(_) => Type::Double,
            Value::Str(_) => Type::Str,
            Value::ObjectPath(_) => Type::ObjectPath,
            Value::Signature(_) => Type::Signature,
            Value::Variant(_) => Type::Variant,
            Value::Maybe(t, _) => Type::Maybe(Box::new(t.clone())),
            Value::Array(t, _) => Type::Array(Box::new(t.clone())),
            Value::Bytes(_) => Type::Array(Box::new(Type::Byte)),
            Value::Tuple(ms) => Type::Tuple(ms.iter().map(Value::type_).collect()),
            Value::DictEntry(k, v) => Type::DictEntry(Box::new(k.type_()), Box::new(v.type_())),
        }
    }

    /// The string of an `s`, `o` or `g` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of an `ay` value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The members of a tuple.
    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(m) => Some(m),
            _ => None,
        }
    }

    /// The elements of an array other than `ay`.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }

    /// The number of a `u` value.
    pub fn as_u32(&self) -> Option<u32> {
        match self {
            Value::UInt32(n) => Some(*n),
            _ => None,
        }
    }

    /// The number of a `t` value.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::UInt64(n) => Some(*n),
            _ => None,
        }
    }

    /// The value inside a `v`.
    pub fn as_variant(&self) -> Option<&Value> {
        match self {
            Value::Variant(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of an `a{sv}` value, in order.
    pub fn as_dict_sv(&self) -> Option<Vec<(&str, &Value)>> {
        let items = self.as_array()?;
        items
            .iter()
            .map(|e| match e {
                Value::DictEntry(k, v) => Some((k.as_str()?, v.as_variant()?)),
                _ => None,
            })
            .collect()
    }

    /// Serialize in normal form. Panics only on an inconsistent value (an array whose
    /// elements do not have its element type), which is a programming error.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.push(u8::from(*b)),
            Value::Byte(b) => out.push(*b),
            Value::Int16(n) => out.extend_from_slice(&n.to_le_bytes()),
            Value::UInt16(n) => out.extend_from_slice(&n.to_le_bytes()),
            Value::Int32(n) | Value::Handle(n) => out.extend_from_slice(&n.to_le_bytes()),
            Value::UInt32(n) => out.extend_from_slice(&n.to_le_bytes()),
            Value::Int64(n) => out.extend_from_slice(&n.to_le_bytes()),
            Value::UInt64(n) => out.extend_from_slice(&n.to_le_bytes()),
            Value::Double(d) => out.extend_from_slice(&d.to_bits().to_le_bytes()),
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Value::Variant(v) => {
                v.write(out);
                out.push(0);
                out.extend_from_slice(v.type_().to_string().as_bytes());
            }
            Value::Maybe(t, v) => {
                if let Some(v) = v {
                    v.write(out);
                    if t.fixed_size().is_none() {
                        out.push(0);
                    }
                }
            }
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Array(t, items) => {
                let start = out.len();
                if t.fixed_size().is_some() {
                    for item in items {
                        item.write(out);
                    }
                } else {
                    let align = t.alignment();
                    let mut ends = Vec::with_capacity(items.len());
                    for item in items {
                        pad(out, start, align);
                        item.write(out);
                        ends.push(out.len() - start);
                    }
                    write_offsets(out, start, &ends);
                }
            }
            Value::Tuple(ms) => write_tuple(out, ms.iter()),
            Value::DictEntry(k, v) => write_tuple(out, [&**k, &**v].into_iter()),
        }
    }
}

fn write_tuple<'a>(out: &mut Vec<u8>, members: impl ExactSizeIterator<Item = &'a Value>) {
    let start = out.len();
    let n = members.len();
    let mut ends = Vec::new();
    let mut max_align = 1;
    let mut fixed = true;
    for (i, m) in members.enumerate() {
        let t = m.type_();
        let a = t.alignment();
        max_align = max_align.max(a);
        pad(out, start, a);
        m.write(out);
        if t.fixed_size().is_none() {
            fixed = false;
            if i + 1 < n {
                ends.push(out.len() - start);
            }
        }
    }
    if fixed {
        if out.len() == start {
            out.push(0);
        }
        pad(out, start, max_align);
    } else {
        ends.reverse();
        write_offsets(out, start, &ends);
    }
}

fn pad(out: &mut Vec<u8>, start: usize, align: usize) {
    while !(out.len() - start).is_multiple_of(align) {
        out.push(0);
    }
}

fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

/// Width of framing offsets for a container of `total` bytes (offsets included).
fn offset_width(total: usize) -> usize {
    if total > u32::MAX as usize {
        8
    } else if total > u16::MAX as usize {
        4
    } else if total > u8::MAX as usize {
        2
    } else if total > 0 {
        1
    } else {
        0
    }
}

fn write_offsets(out: &mut Vec<u8>, start: usize, ends: &[usize]) {
    if ends.is_empty() {
        return;
    }
    let body = out.len() - start;
    let n = ends.len();
    let w = if body + n <= u8::MAX as usize {
        1
    } else if body + 2 * n <= u16::MAX as usize {
        2
    } else if body + 4 * n <= u32::MAX as usize {
        4
    } else {
        8
    };
    for e in ends {
        out.extend_from_slice(&(*e as u64).to_le_bytes()[..w]);
    }
}

fn read_offset(data: &[u8], at: usize, w: usize) -> Result<usize, GvError> {
    let Some(bytes) = data.get(at..at + w) else {
        return err("framing offset out of bounds");
    };
    let mut buf = [0u8; 8];
    buf[..w].copy_from_slice(bytes);
    usize::try_from(u64::from_le_bytes(buf)).or_else(|_| err("framing offset too large"))
}

/// Read `data` as a value of type `ty`.
pub fn parse(ty: &Type, data: &[u8]) -> Result<Value, GvError> {
    parse_at(ty, data, 0)
}

/// Whether `data` is the normal-form serialization of a value of type `ty`.
pub fn is_normal_form(ty: &Type, data: &[u8]) -> bool {
    parse(ty, data).is_ok_and(|v| v.to_bytes() == data)
}

fn fixed<const N: usize>(data: &[u8], what: &str) -> Result<[u8; N], GvError> {
    data.try_into()
        .or_else(|_| err(format!("{what} needs {N} bytes, has {}", data.len())))
}

fn parse_string(data: &[u8]) -> Result<String, GvError> {
    let Some((&0, body)) = data.split_last() else {
        return err("string is not NUL-terminated");
    };
    if body.contains(&0) {
        return err("string contains a NUL byte");
    }
    String::from_utf8(body.to_vec()).or_else(|_| err("string is not valid UTF-8"))
}

fn parse_at(ty: &Type, data: &[u8], depth: usize) -> Result<Value, GvError> {
    if depth > MAX_DEPTH {
        return err("value nested too deeply");
    }
    Ok(match ty {
        Type::Bool => match fixed::<1>(data, "boolean")? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            [b] => return err(format!("boolean byte {b} is neither 0 nor 1")),
        },
        Type::Byte => Value::Byte(fixed::<1>(data, "byte")?[0]),
        Type::Int16 => Value::Int16(i16::from_le_bytes(fixed(data, "int16")?)),
        Type::UInt16 => Value::UInt16(u16::from_le_bytes(fixed(data, "uint16")?)),
        Type::Int32 => Value::Int32(i32::from_le_bytes(fixed(data, "int32")?)),
        Type::Handle => Value::Handle(i32::from_le_bytes(fixed(data, "handle")?)),
        Type::UInt32 => Value::UInt32(u32::from_le_bytes(fixed(data, "uint32")?)),
        Type::Int64 => Value::Int64(i64::from_le_bytes(fixed(data, "int64")?)),
        Type::UInt64 => Value::UInt64(u64::from_le_bytes(fixed(data, "uint64")?)),
        Type::Double => Value::Double(f64::from_bits(u64::from_le_bytes(fixed(data, "double")?))),
        Type::Str => Value::Str(parse_string(data)?),
        Type::ObjectPath => Value::ObjectPath(parse_string(data)?),
        Type::Signature => Value::Signature(parse_string(data)?),
        Type::Variant => {
            let Some(sep) = data.iter().rposition(|&b| b == 0) else {
                return err("variant has no type separator");
            };
            let Ok(sig) = std::str::from_utf8(&data[sep + 1..]) else {
                return err("variant type is not UTF-8");
            };
            let (inner_ty, used) = Type::parse_prefix(sig.as_bytes(), depth + 1)?;
            if used != sig.len() {
                return err(format!("variant type {sig:?} is not a single type"));
            }
            Value::Variant(Box::new(parse_at(&inner_ty, &data[..sep], depth + 1)?))
        }
        Type::Maybe(t) => {
            if data.is_empty() {
                Value::Maybe((**t).clone(), None)
            } else if t.fixed_size().is_some() {
                Value::Maybe((**t).clone(), Some(Box::new(parse_at(t, data, depth + 1)?)))
            } else {
                let Some((&0, body)) = data.split_last() else {
                    return err("maybe value lacks its trailing zero byte");
                };
                Value::Maybe((**t).clone(), Some(Box::new(parse_at(t, body, depth + 1)?)))
            }
        }
        Type::Array(t) if **t == Type::Byte => Value::Bytes(data.to_vec()),
        Type::Array(t) => {
            let mut items = Vec::new();
            if let Some(size) = t.fixed_size() {
                if !data.len().is_multiple_of(size) {
                    return err(format!(
                        "array of {t} is {} bytes, not a multiple of {size}",
                        data.len()
                    ));
                }
                for chunk in data.chunks_exact(size) {
                    items.push(parse_at(t, chunk, depth + 1)?);
                }
            } else if !data.is_empty() {
                let w = offset_width(data.len());
                let table = read_offset(data, data.len() - w.min(data.len()), w)?;
                if table > data.len()
                    || !(data.len() - table).is_multiple_of(w)
                    || table == data.len()
                {
                    return err("array framing offsets are inconsistent");
                }
                let n = (data.len() - table) / w;
                let align = t.alignment();
                let mut pos = 0;
                for i in 0..n {
                    let end = read_offset(data, table + i * w, w)?;
                    let begin = align_up(pos, align);
                    if begin > end || end > table {
                        return err(format!("array element {i} has out-of-order offsets"));
                    }
                    items.push(parse_at(t, &data[begin..end], depth + 1)?);
                    pos = end;
                }
            }
            Value::Array((**t).clone(), items)
        }
        Type::Tuple(ms) => Value::Tuple(parse_tuple(ms.iter(), ty, data, depth)?),
        Type::DictEntry(k, v) => {
            let mut m = parse_tuple([&**k, &**v].into_iter(), ty, data, depth)?;
            let v = m.pop().expect("two members");
            let k = m.pop().expect("two members");
            Value::DictEntry(Box::new(k), Box::new(v))
        }
    })
}

fn parse_tuple<'a>(
    members: impl ExactSizeIterator<Item = &'a Type> + Clone,
    ty: &Type,
    data: &[u8],
    depth: usize,
) -> Result<Vec<Value>, GvError> {
    if let Some(size) = ty.fixed_size() {
        if data.len() != size {
            return err(format!("{ty} needs {size} bytes, has {}", data.len()));
        }
    }
    let n = members.len();
    let offsets = members
        .clone()
        .enumerate()
        .filter(|(i, t)| t.fixed_size().is_none() && i + 1 < n)
        .count();
    let w = offset_width(data.len());
    let Some(limit) = data.len().checked_sub(w * offsets) else {
        return err(format!("{ty} is too short for its framing offsets"));
    };
    let mut out = Vec::with_capacity(n);
    let mut pos = 0;
    let mut next_offset = data.len();
    for (i, t) in members.enumerate() {
        let begin = align_up(pos, t.alignment());
        let end = match t.fixed_size() {
            Some(size) => begin + size,
            None if i + 1 == n => limit,
            None => {
                next_offset -= w;
                read_offset(data, next_offset, w)?
            }
        };
        if begin > end || end > limit {
            return err(format!("member {i} of {ty} lies outside the value"));
        }
        out.push(parse_at(t, &data[begin..end], depth + 1)?);
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(sig: &str, v: &Value) -> Vec<u8> {
        let t = Type::parse(sig).unwrap();
        assert_eq!(v.type_(), t, "{sig}");
        let b = v.to_bytes();
        assert_eq!(&parse(&t, &b).unwrap(), v, "{sig}");
        assert!(is_normal_form(&t, &b));
        b
    }

    #[test]
    fn type_strings_round_trip() {
        for s in [
            "(a{sv}aya(say)sstayay)",
            "(a(say)a(sayay))",
            "(uuua(ayay))",
            "(tuuuusa(ayay))",
            "mas",
            "()",
        ] {
            assert_eq!(Type::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "(", "a", "{vs}", "{sss}", "z", "ss", &"a".repeat(200)] {
            assert!(Type::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_encodings_from_the_gvariant_spec() {
        // Examples from the GVariant specification, section "Examples".
        assert_eq!(roundtrip("s", &Value::str("hello world")), b"hello world\0");
        let v = Value::Maybe(Type::Str, Some(Box::new(Value::str("hello world"))));
        assert_eq!(roundtrip("ms", &v), b"hello world\0\0");
        let v = Value::Array(
            Type::Bool,
            vec![
                Value::Bool(true),
                Value::Bool(false),
                Value::Bool(false),
                Value::Bool(true),
                Value::Bool(true),
            ],
        );
        assert_eq!(roundtrip("ab", &v), [1, 0, 0, 1, 1]);
        let v = Value::Tuple(vec![Value::str("foo"), Value::Int32(-1)]);
        assert_eq!(roundtrip("(si)", &v), b"foo\0\xff\xff\xff\xff\x04");
        let v = Value::Array(Type::Str, vec![Value::str("hi"), Value::str("bye")]);
        assert_eq!(roundtrip("as", &v), b"hi\0bye\0\x03\x07");
        let v = Value::Array(
            Type::Array(Box::new(Type::Str)),
            vec![
                Value::str_array(["i".into(), "can".into(), "has".into()]),
                Value::str_array(["strings?".into()]),
            ],
        );
        assert_eq!(
            roundtrip("aas", &v),
            b"i\0can\0has\0\x02\x06\x0astrings?\0\x09\x0d\x17"
        );
        let v = Value::Variant(Box::new(Value::Tuple(vec![
            Value::str("foo"),
            Value::Int32(-1),
        ])));
        assert_eq!(&roundtrip("v", &v), b"foo\0\xff\xff\xff\xff\x04\0(si)");
        let v = Value::Tuple(vec![Value::Int16(-1), Value::Byte(b'i')]);
        assert_eq!(roundtrip("(ny)", &v), [0xff, 0xff, b'i', 0]);
        assert_eq!(roundtrip("()", &Value::Tuple(vec![])), [0]);
        let v = Value::dict_sv([("a".to_string(), Value::UInt64(1))]);
        assert_eq!(
            roundtrip("a{sv}", &v),
            b"a\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0t\x02\x13"
        );
    }

    #[test]
    fn wide_offsets() {
        let long = "x".repeat(300);
        let v = Value::Array(Type::Str, vec![Value::str(long.clone()), Value::str("y")]);
        let b = roundtrip("as", &v);
        assert_eq!(b.len(), 301 + 2 + 4);
        let big = Value::Bytes(vec![7; 70_000]);
        let v = Value::Tuple(vec![big, Value::str("z")]);
        let b = roundtrip("(ays)", &v);
        assert_eq!(b.len(), 70_000 + 2 + 4);
    }

    #[test]
    fn hostile_bytes_are_errors() {
        let t = Type::parse("(a{sv}aya(say)sstayay)").unwrap();
        let good = Value::Tuple(vec![
            Value::dict_sv([("k".into(), Value::str("v"))]),
            Value::Bytes(vec![]),
            Value::Array(Type::parse("(say)").unwrap(), vec![]),
            Value::str("s"),
            Value::str("b"),
            Value::UInt64(5),
            Value::Bytes(vec![1; 32]),
            Value::Bytes(vec![2; 32]),
        ])
        .to_bytes();
        // Every truncation and every single-byte corruption must be handled without panic.
        for n in 0..good.len() {
            let _ = parse(&t, &good[..n]);
        }
        for i in 0..good.len() {
            for b in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = parse(&t, &bad);
            }
        }
        // Deeply nested variants are refused, not recursed into without bound.
        let mut v = Value::UInt32(1);
        for _ in 0..(MAX_DEPTH + 2) {
            v = Value::Variant(Box::new(v));
        }
        assert!(parse(&Type::Variant, &v.to_bytes()).is_err());
        assert!(parse(&Type::Str, b"abc").is_err());
        assert!(parse(&Type::Str, b"a\0c\0").is_err());
        assert!(parse(&Type::parse("as").unwrap(), b"\xff").is_err());
    }
}
