//! ostree objects: checksums, object names, and the GVariant shapes of metadata and file
//! headers.
//!
//! 1. Every object is named by a SHA-256 [`Checksum`] and stored at
//!    `objects/XX/<62 hex>.<ext>` ([`ObjectType::ext`], [`object_path`]).
//! 2. Metadata objects ([`DirMeta`] `(uuua(ayay))`, [`DirTree`] `(a(say)a(sayay))`,
//!    [`Commit`] `(a{sv}aya(say)sstayay)`) are checksummed over their normal-form bytes.
//! 3. A content object is checksummed over its *file header* — `[u32 BE length][4 zero
//!    bytes]` then the normal-form `(uuuusa(ayay))` of uid, gid, mode, rdev 0, symlink target
//!    and sorted xattrs ([`FileMeta::header`]) — followed by the file's bytes
//!    ([`ContentHasher`]); symlinks have no bytes. The checksum does not depend on the
//!    repository mode.
//! 4. uid, gid, mode and the commit timestamp are stored big-endian inside GVariant's
//!    integers; xattr names carry their trailing NUL inside the `ay`.

use std::fmt;
use std::io::Read;

use sha2::{Digest as _, Sha256};

use super::gvariant::{self, Type, Value};
use crate::error::{Error, Result};

/// `S_IFMT` and friends, as ostree stores them in `mode`.
pub mod mode {
    /// File type mask.
    pub const S_IFMT: u32 = 0o170000;
    /// Directory.
    pub const S_IFDIR: u32 = 0o040000;
    /// Regular file.
    pub const S_IFREG: u32 = 0o100000;
    /// Symbolic link.
    pub const S_IFLNK: u32 = 0o120000;
}

/// A SHA-256 object checksum.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(pub [u8; 32]);

impl Checksum {
    /// Parse 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Checksum> {
        let bad = |reason: &str| Error::Malformed {
            what: format!("ostree checksum {s:?}"),
            reason: format!("{reason}; expected 64 lowercase hex digits"),
        };
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("wrong length or case"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad("not hex"))?;
        Ok(Checksum(out))
    }

    /// From the 32 raw bytes ostree keeps in `ay` fields.
    pub fn from_bytes(b: &[u8], what: &str) -> Result<Checksum> {
        let arr: [u8; 32] = b.try_into().map_err(|_| Error::Malformed {
            what: what.to_string(),
            reason: format!("checksum field has {} bytes, expected 32", b.len()),
        })?;
        Ok(Checksum(arr))
    }

    /// The checksum in hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Checksum {
        Checksum(Sha256::digest(data).into())
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl std::str::FromStr for Checksum {
    type Err = Error;
    fn from_str(s: &str) -> Result<Checksum> {
        Checksum::from_hex(s)
    }
}

/// The kinds of object stowage reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// A file or symlink (`.file`, or `.filez` in archive repositories).
    File,
    /// A directory listing.
    DirTree,
    /// A directory's owner, mode and xattrs.
    DirMeta,
    /// A commit.
    Commit,
    /// A commit's detached metadata.
    CommitMeta,
}

impl ObjectType {
    /// The file extension (without the dot); `archive` selects `.filez` for content.
    pub fn ext(self, archive: bool) -> &'static str {
        match self {
            ObjectType::File if archive => "filez",
            ObjectType::File => "file",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::CommitMeta => "commitmeta",
        }
    }

    /// The GVariant type of a metadata object (`None` for content).
    pub fn variant_type(self) -> Option<Type> {
        let sig = match self {
            ObjectType::File => return None,
            ObjectType::DirTree => DIRTREE_TYPE,
            ObjectType::DirMeta => DIRMETA_TYPE,
            ObjectType::Commit => COMMIT_TYPE,
            ObjectType::CommitMeta => "a{sv}",
        };
        Some(Type::parse(sig).expect("constant type string"))
    }
}

/// `(a{sv}aya(say)sstayay)`
pub const COMMIT_TYPE: &str = "(a{sv}aya(say)sstayay)";
/// `(a(say)a(sayay))`
pub const DIRTREE_TYPE: &str = "(a(say)a(sayay))";
/// `(uuua(ayay))`, also the `user.ostreemeta` xattr of bare-user repositories.
pub const DIRMETA_TYPE: &str = "(uuua(ayay))";
/// `(uuuusa(ayay))`: the file header that content checksums cover.
pub const FILE_HEADER_TYPE: &str = "(uuuusa(ayay))";
/// `(tuuuusa(ayay))`: the header of `.filez` objects in archive repositories.
pub const ARCHIVE_HEADER_TYPE: &str = "(tuuuusa(ayay))";

/// `objects/XX/<rest>.<ext>` for an object.
pub fn object_path(checksum: &Checksum, ty: ObjectType, archive: bool) -> String {
    let hex = checksum.to_hex();
    format!("objects/{}/{}.{}", &hex[..2], &hex[2..], ty.ext(archive))
}

/// The deepest directory nesting stowage follows in a tree (a hostile or corrupt repository
/// could otherwise recurse without end).
pub const MAX_TREE_DEPTH: usize = 4096;

/// An error when `depth` is past [`MAX_TREE_DEPTH`]; `what` names the tree (called lazily).
pub fn check_tree_depth(depth: usize, what: impl FnOnce() -> String) -> Result<()> {
    if depth > MAX_TREE_DEPTH {
        return Err(Error::Malformed {
            what: what(),
            reason: format!("nested more than {MAX_TREE_DEPTH} directories deep"),
        });
    }
    Ok(())
}

/// Extended attributes, kept sorted by name as ostree canonicalises them. Names are stored
/// without the trailing NUL that the serialized form carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xattrs(Vec<(Vec<u8>, Vec<u8>)>);

impl Xattrs {
    /// No xattrs.
    pub fn new() -> Xattrs {
        Xattrs(Vec::new())
    }

    /// From name/value pairs in any order (a later duplicate name replaces an earlier one).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Xattrs {
        let mut x = Xattrs::new();
        for (k, v) in pairs {
            x.insert(k, v);
        }
        x
    }

    /// Set `name` to `value`.
    pub fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        match self.0.binary_search_by(|(k, _)| k.as_slice().cmp(&name)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (name, value)),
        }
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn to_value(&self) -> Value {
        let elem = Type::parse("(ayay)").expect("constant");
        Value::Array(
            elem,
            self.0
                .iter()
                .map(|(k, v)| {
                    let mut name = k.clone();
                    name.push(0);
                    Value::Tuple(vec![Value::Bytes(name), Value::Bytes(v.clone())])
                })
                .collect(),
        )
    }

    /// Parse serialized `a(ayay)` xattrs (a `.file-xattrs` object of ostree-rs-ext's tar
    /// format), keeping their order.
    pub fn parse(data: &[u8], what: &str) -> Result<Xattrs> {
        Xattrs::from_value(&parse_as("a(ayay)", data, what)?, what)
    }

    fn from_value(v: &Value, what: &str) -> Result<Xattrs> {
        let items = v
            .as_array()
            .ok_or_else(|| malformed(what, "xattrs are not a(ayay)"))?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let (Some(name), Some(value)) = (
                item.as_tuple()
                    .and_then(|t| t.first())
                    .and_then(Value::as_bytes),
                item.as_tuple()
                    .and_then(|t| t.get(1))
                    .and_then(Value::as_bytes),
            ) else {
                return Err(malformed(what, "xattr entry is not (ayay)"));
            };
            let Some((&0, name)) = name.split_last() else {
                return Err(malformed(what, "xattr name is not NUL-terminated"));
            };
            out.push((name.to_vec(), value.to_vec()));
        }
        // Keep the order as stored; canonical objects are sorted, and re-sorting here would
        // hide a non-canonical object from fsck's normal-form check.
        Ok(Xattrs(out))
    }
}

fn malformed(what: &str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        what: what.to_string(),
        reason: reason.into(),
    }
}

fn parse_as(sig: &str, data: &[u8], what: &str) -> Result<Value> {
    let ty = Type::parse(sig).expect("constant type string");
    gvariant::parse(&ty, data)
        .map_err(|e| malformed(what, format!("not a valid {sig} GVariant: {e}")))
}

fn be_u32(v: Option<&Value>, what: &str, field: &str) -> Result<u32> {
    v.and_then(Value::as_u32)
        .map(u32::from_be)
        .ok_or_else(|| malformed(what, format!("{field} is not a u")))
}

fn field_bytes<'a>(v: Option<&'a Value>, what: &str, field: &str) -> Result<&'a [u8]> {
    v.and_then(Value::as_bytes)
        .ok_or_else(|| malformed(what, format!("{field} is not ay")))
}

fn field_str<'a>(v: Option<&'a Value>, what: &str, field: &str) -> Result<&'a str> {
    v.and_then(Value::as_str)
        .ok_or_else(|| malformed(what, format!("{field} is not s")))
}

/// A directory's metadata: the `.dirmeta` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `S_IFDIR | permissions`.
    pub mode: u32,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl DirMeta {
    /// `uid 0, gid 0, S_IFDIR | 0755`, no xattrs: what ostree uses for directories it creates.
    pub fn default_dir() -> DirMeta {
        DirMeta {
            uid: 0,
            gid: 0,
            mode: mode::S_IFDIR | 0o755,
            xattrs: Xattrs::new(),
        }
    }

    /// The GVariant `(uuua(ayay))`.
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![
            Value::UInt32(self.uid.to_be()),
            Value::UInt32(self.gid.to_be()),
            Value::UInt32(self.mode.to_be()),
            self.xattrs.to_value(),
        ])
    }

    /// The serialized object.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// The object's checksum.
    pub fn checksum(&self) -> Checksum {
        Checksum::of(&self.to_bytes())
    }

    /// Parse a serialized dirmeta (or a bare-user `user.ostreemeta` value); `what` names it
    /// in errors.
    pub fn parse(data: &[u8], what: &str) -> Result<DirMeta> {
        let v = parse_as(DIRMETA_TYPE, data, what)?;
        let m = v.as_tuple().expect("tuple type");
        Ok(DirMeta {
            uid: be_u32(m.first(), what, "uid")?,
            gid: be_u32(m.get(1), what, "gid")?,
            mode: be_u32(m.get(2), what, "mode")?,
            xattrs: Xattrs::from_value(&m[3], what)?,
        })
    }
}

/// A content object's metadata: what its checksum covers besides the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `S_IFREG` or `S_IFLNK` with the permission bits.
    pub mode: u32,
    /// The target, for a symlink (empty for regular files).
    pub symlink_target: String,
    /// Extended attributes.
    pub xattrs: Xattrs,
}

impl FileMeta {
    /// A regular file.
    pub fn regular(uid: u32, gid: u32, permissions: u32, xattrs: Xattrs) -> FileMeta {
        FileMeta {
            uid,
            gid,
            mode: mode::S_IFREG | (permissions & 0o7777),
            symlink_target: String::new(),
            xattrs,
        }
    }

    /// A symlink (mode `S_IFLNK | 0777`).
    pub fn symlink(uid: u32, gid: u32, target: impl Into<String>, xattrs: Xattrs) -> FileMeta {
        FileMeta {
            uid,
            gid,
            mode: mode::S_IFLNK | 0o777,
            symlink_target: target.into(),
            xattrs,
        }
    }

    /// Whether this is a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & mode::S_IFMT == mode::S_IFLNK
    }

    /// Whether this is a regular file.
    pub fn is_regular(&self) -> bool {
        self.mode & mode::S_IFMT == mode::S_IFREG
    }

    /// Refuse anything but a regular file or a symlink, and symlink targets ostree refuses.
    pub fn validate(&self, what: &str) -> Result<()> {
        if !self.is_regular() && !self.is_symlink() {
            return Err(Error::Unsupported {
                transport: "ostree".into(),
                reason: format!(
                    "{what}: mode {:o} is not a regular file or symlink; ostree stores only those (devices, fifos and sockets cannot be committed)",
                    self.mode
                ),
            });
        }
        if self.is_symlink() && self.symlink_target.is_empty() {
            return Err(malformed(what, "symlink with an empty target"));
        }
        if self.is_regular() && !self.symlink_target.is_empty() {
            return Err(malformed(what, "regular file with a symlink target"));
        }
        if self.symlink_target.contains('\0') {
            return Err(malformed(what, "symlink target contains NUL"));
        }
        Ok(())
    }

    fn header_value(&self, size: Option<u64>) -> Value {
        let mut m = Vec::with_capacity(7);
        if let Some(size) = size {
            m.push(Value::UInt64(size.to_be()));
        }
        m.extend([
            Value::UInt32(self.uid.to_be()),
            Value::UInt32(self.gid.to_be()),
            Value::UInt32(self.mode.to_be()),
            Value::UInt32(0),
            Value::str(self.symlink_target.clone()),
            self.xattrs.to_value(),
        ]);
        Value::Tuple(m)
    }

    /// The length-prefixed `(uuuusa(ayay))` file header that the content checksum covers.
    pub fn header(&self) -> Vec<u8> {
        lenprefixed(&self.header_value(None).to_bytes())
    }

    /// The length-prefixed `(tuuuusa(ayay))` header that starts an archive `.filez` object.
    pub fn archive_header(&self, size: u64) -> Vec<u8> {
        lenprefixed(&self.header_value(Some(size)).to_bytes())
    }

    /// The `(uuua(ayay))` bare-user `user.ostreemeta` value.
    pub fn ostreemeta(&self) -> Vec<u8> {
        DirMeta {
            uid: self.uid,
            gid: self.gid,
            mode: self.mode,
            xattrs: self.xattrs.clone(),
        }
        .to_bytes()
    }

    /// Parse a bare-user `user.ostreemeta` value (the symlink target is not in it).
    pub fn from_ostreemeta(data: &[u8], what: &str) -> Result<FileMeta> {
        let d = DirMeta::parse(data, what)?;
        Ok(FileMeta {
            uid: d.uid,
            gid: d.gid,
            mode: d.mode,
            symlink_target: String::new(),
            xattrs: d.xattrs,
        })
    }

    /// Parse an archive header body (the variant after the length prefix): (size, meta).
    pub fn parse_archive_header(data: &[u8], what: &str) -> Result<(u64, FileMeta)> {
        let v = parse_as(ARCHIVE_HEADER_TYPE, data, what)?;
        let m = v.as_tuple().expect("tuple type");
        let size = m[0]
            .as_u64()
            .map(u64::from_be)
            .ok_or_else(|| malformed(what, "size is not t"))?;
        let meta = FileMeta {
            uid: be_u32(m.get(1), what, "uid")?,
            gid: be_u32(m.get(2), what, "gid")?,
            mode: be_u32(m.get(3), what, "mode")?,
            symlink_target: field_str(m.get(5), what, "symlink target")?.to_string(),
            xattrs: Xattrs::from_value(&m[6], what)?,
        };
        if be_u32(m.get(4), what, "rdev")? != 0 {
            return Err(malformed(what, "rdev is not 0"));
        }
        meta.validate(what)?;
        Ok((size, meta))
    }
}

fn lenprefixed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(body);
    out
}

/// Streaming content checksum: header first, then the data as it passes.
pub struct ContentHasher {
    sha: Sha256,
    bytes: u64,
}

impl ContentHasher {
    /// Start with `meta`'s file header.
    pub fn new(meta: &FileMeta) -> ContentHasher {
        let mut sha = Sha256::new();
        sha.update(meta.header());
        ContentHasher { sha, bytes: 0 }
    }

    /// Feed file data.
    pub fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.sha.update(data);
    }

    /// Data bytes fed so far.
    pub fn data_len(&self) -> u64 {
        self.bytes
    }

    /// The checksum.
    pub fn finish(self) -> Checksum {
        Checksum(self.sha.finalize().into())
    }
}

/// The checksum of a content object read from `data` (empty for a symlink).
pub fn content_checksum(meta: &FileMeta, mut data: impl Read) -> std::io::Result<Checksum> {
    let mut h = ContentHasher::new(meta);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finish());
        }
        h.update(&buf[..n]);
    }
}

/// Check an entry name inside a dirtree (a path component).
pub fn validate_name(name: &str, what: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(malformed(
            what,
            format!("invalid file name {name:?} in a directory"),
        ));
    }
    Ok(())
}

/// A directory listing: the `.dirtree` object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirTree {
    /// Files and symlinks: name and content checksum, sorted by name.
    pub files: Vec<(String, Checksum)>,
    /// Subdirectories: name, dirtree checksum and dirmeta checksum, sorted by name.
    pub dirs: Vec<(String, Checksum, Checksum)>,
}

impl DirTree {
    /// The GVariant `(a(say)a(sayay))` (entries as given; keep them sorted).
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![
            Value::Array(
                Type::parse("(say)").expect("constant"),
                self.files
                    .iter()
                    .map(|(n, c)| {
                        Value::Tuple(vec![Value::str(n.clone()), Value::Bytes(c.0.to_vec())])
                    })
                    .collect(),
            ),
            Value::Array(
                Type::parse("(sayay)").expect("constant"),
                self.dirs
                    .iter()
                    .map(|(n, t, m)| {
                        Value::Tuple(vec![
                            Value::str(n.clone()),
                            Value::Bytes(t.0.to_vec()),
                            Value::Bytes(m.0.to_vec()),
                        ])
                    })
                    .collect(),
            ),
        ])
    }

    /// The serialized object.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// Parse a serialized dirtree, checking names (valid, unique, sorted).
    pub fn parse(data: &[u8], what: &str) -> Result<DirTree> {
        let v = parse_as(DIRTREE_TYPE, data, what)?;
        let m = v.as_tuple().expect("tuple type");
        let mut tree = DirTree::default();
        for f in m[0].as_array().expect("array type") {
            let t = f.as_tuple().expect("tuple type");
            let name = field_str(t.first(), what, "file name")?;
            validate_name(name, what)?;
            let c = Checksum::from_bytes(field_bytes(t.get(1), what, "file checksum")?, what)?;
            tree.files.push((name.to_string(), c));
        }
        for d in m[1].as_array().expect("array type") {
            let t = d.as_tuple().expect("tuple type");
            let name = field_str(t.first(), what, "directory name")?;
            validate_name(name, what)?;
            let tc = Checksum::from_bytes(field_bytes(t.get(1), what, "dirtree checksum")?, what)?;
            let mc = Checksum::from_bytes(field_bytes(t.get(2), what, "dirmeta checksum")?, what)?;
            tree.dirs.push((name.to_string(), tc, mc));
        }
        let sorted_unique = |names: Vec<&str>| names.windows(2).all(|w| w[0] < w[1]);
        if !sorted_unique(tree.files.iter().map(|f| f.0.as_str()).collect())
            || !sorted_unique(tree.dirs.iter().map(|d| d.0.as_str()).collect())
        {
            return Err(malformed(
                what,
                "entries are not sorted by name or repeat a name",
            ));
        }
        // A name may not be both a file and a directory (a checkout would have to pick one).
        if let Some(name) = tree
            .files
            .iter()
            .find(|(n, _)| tree.dirs.binary_search_by(|d| d.0.as_str().cmp(n)).is_ok())
        {
            return Err(malformed(
                what,
                format!("{:?} is listed both as a file and as a directory", name.0),
            ));
        }
        Ok(tree)
    }
}

/// A commit: the `.commit` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The `a{sv}` metadata, in stored order.
    pub metadata: Vec<(String, Value)>,
    /// The parent commit, if any.
    pub parent: Option<Checksum>,
    /// Related objects `a(say)` (ostree writes none).
    pub related: Vec<(String, Checksum)>,
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Seconds since the epoch (UTC).
    pub timestamp: u64,
    /// The root directory's dirtree.
    pub root_tree: Checksum,
    /// The root directory's dirmeta.
    pub root_meta: Checksum,
}

impl Commit {
    /// The GVariant `(a{sv}aya(say)sstayay)`.
    pub fn to_value(&self) -> Value {
        Value::Tuple(vec![
            Value::dict_sv(self.metadata.iter().cloned()),
            Value::Bytes(self.parent.map(|p| p.0.to_vec()).unwrap_or_default()),
            Value::Array(
                Type::parse("(say)").expect("constant"),
                self.related
                    .iter()
                    .map(|(n, c)| {
                        Value::Tuple(vec![Value::str(n.clone()), Value::Bytes(c.0.to_vec())])
                    })
                    .collect(),
            ),
            Value::str(self.subject.clone()),
            Value::str(self.body.clone()),
            Value::UInt64(self.timestamp.to_be()),
            Value::Bytes(self.root_tree.0.to_vec()),
            Value::Bytes(self.root_meta.0.to_vec()),
        ])
    }

    /// The serialized object.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string metadata value by key.
    pub fn meta_str(&self, key: &str) -> Option<&str> {
        self.meta(key).and_then(Value::as_str)
    }

    /// Parse a serialized commit.
    pub fn parse(data: &[u8], what: &str) -> Result<Commit> {
        let v = parse_as(COMMIT_TYPE, data, what)?;
        let m = v.as_tuple().expect("tuple type");
        let metadata = m[0]
            .as_dict_sv()
            .ok_or_else(|| malformed(what, "metadata is not a{sv}"))?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let parent_bytes = field_bytes(m.get(1), what, "parent")?;
        let parent = if parent_bytes.is_empty() {
            None
        } else {
            Some(Checksum::from_bytes(parent_bytes, what)?)
        };
        let mut related = Vec::new();
        for r in m[2].as_array().expect("array type") {
            let t = r.as_tuple().expect("tuple type");
            let name = field_str(t.first(), what, "related name")?;
            let c = Checksum::from_bytes(field_bytes(t.get(1), what, "related checksum")?, what)?;
            related.push((name.to_string(), c));
        }
        Ok(Commit {
            metadata,
            parent,
            related,
            subject: field_str(m.get(3), what, "subject")?.to_string(),
            body: field_str(m.get(4), what, "body")?.to_string(),
            timestamp: m[5]
                .as_u64()
                .map(u64::from_be)
                .ok_or_else(|| malformed(what, "timestamp is not t"))?,
            root_tree: Checksum::from_bytes(field_bytes(m.get(6), what, "root dirtree")?, what)?,
            root_meta: Checksum::from_bytes(field_bytes(m.get(7), what, "root dirmeta")?, what)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_header_matches_ostree_bytes() {
        // The header of ostree 2022.7's `.filez` for a symlink `a` (uid 0, gid 0), taken from
        // an archive repository written by `ostree commit`.
        let meta = FileMeta::symlink(0, 0, "a", Xattrs::new());
        let expected: &[u8] =
            b"\0\0\0\x1b\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xa1\xff\0\0\0\0a\0\x1a";
        assert_eq!(meta.archive_header(0), expected);
        let (size, back) = FileMeta::parse_archive_header(&expected[8..], "t").unwrap();
        assert_eq!((size, back), (0, meta));
        // bare-user `user.ostreemeta` of a 0644 file with user.aaa=1 and user.foo=bar.
        let x = Xattrs::from_pairs([
            (b"user.foo".to_vec(), b"bar".to_vec()),
            (b"user.aaa".to_vec(), b"1".to_vec()),
        ]);
        let meta = FileMeta::regular(0, 0, 0o644, x);
        assert_eq!(
            meta.ostreemeta(),
            b"\0\0\0\0\0\0\0\0\0\0\x81\xa4user.aaa\x001\x09user.foo\0bar\x09\x0b\x18"
        );
    }

    #[test]
    fn round_trips() {
        let c = Checksum::of(b"x");
        let t = DirTree {
            files: vec![("a".into(), c), ("b".into(), c)],
            dirs: vec![("d".into(), c, c)],
        };
        assert_eq!(DirTree::parse(&t.to_bytes(), "t").unwrap(), t);
        let commit = Commit {
            metadata: vec![("k".into(), Value::str("v"))],
            parent: Some(c),
            related: vec![],
            subject: "s".into(),
            body: String::new(),
            timestamp: 1_700_000_000,
            root_tree: c,
            root_meta: c,
        };
        assert_eq!(Commit::parse(&commit.to_bytes(), "c").unwrap(), commit);
        let unsorted = DirTree {
            files: vec![("b".into(), c), ("a".into(), c)],
            dirs: vec![],
        };
        assert!(DirTree::parse(&unsorted.to_bytes(), "t").is_err());
        let both = DirTree {
            files: vec![("a".into(), c)],
            dirs: vec![("a".into(), c, c)],
        };
        assert!(DirTree::parse(&both.to_bytes(), "t")
            .unwrap_err()
            .to_string()
            .contains("both"));
        assert_eq!(Checksum::from_hex(&c.to_hex()).unwrap(), c);
        assert!(Checksum::from_hex(&c.to_hex().to_uppercase()).is_err());
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// Mutations of valid objects (truncations, byte flips, insertions from a fixed-seed
    /// generator) give errors or values, never a panic.
    #[test]
    fn mutated_objects_never_panic() {
        let c = Checksum::of(b"x");
        let x = Xattrs::from_pairs([(b"user.a".to_vec(), b"1".to_vec())]);
        let samples: Vec<Vec<u8>> = vec![
            DirTree {
                files: vec![("a".into(), c)],
                dirs: vec![("d".into(), c, c)],
            }
            .to_bytes(),
            DirMeta {
                uid: 1,
                gid: 2,
                mode: 0o40755,
                xattrs: x.clone(),
            }
            .to_bytes(),
            Commit {
                metadata: vec![
                    ("k".into(), Value::str_array(["a".into()])),
                    ("v".into(), Value::Variant(Box::new(Value::Bool(true)))),
                ],
                parent: Some(c),
                related: vec![],
                subject: "s".into(),
                body: "b".into(),
                timestamp: 3,
                root_tree: c,
                root_meta: c,
            }
            .to_bytes(),
            FileMeta::regular(0, 0, 0o644, x).archive_header(9)[8..].to_vec(),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for s in &samples {
            for round in 0..3000 {
                let mut b = s.clone();
                match round % 3 {
                    0 => b.truncate(next() as usize % (s.len() + 1)),
                    1 => {
                        let i = next() as usize % b.len();
                        b[i] = next() as u8;
                    }
                    _ => {
                        let i = next() as usize % (b.len() + 1);
                        b.insert(i, next() as u8);
                    }
                }
                let _ = DirTree::parse(&b, "t");
                let _ = DirMeta::parse(&b, "t");
                let _ = Commit::parse(&b, "t");
                let _ = FileMeta::parse_archive_header(&b, "t");
            }
        }
    }
}
