//! Digests and verified readers.
//!
//! Every blob stowage reads from anywhere goes through [`VerifiedReader`]: it hashes what passes
//! through it and, at end of stream, compares the size and digest with the descriptor. A mismatch
//! becomes a read error (carrying [`Error::DigestMismatch`] or [`Error::SizeMismatch`]), so a
//! sink that copies the stream to a temporary file fails before it commits anything.
//!
//! The digest type itself is `oci_spec::image::Digest`, shared with the whole OCI ecosystem.

use std::io::{self, Read, Write};

pub use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use crate::error::{Error, Result};

/// Parse `algorithm:hex`, accepting only sha256/sha384/sha512 with well-formed hex.
pub fn parse_digest(s: &str) -> Result<Digest> {
    let d: Digest = s.parse().map_err(|e| Error::InvalidDigest {
        input: s.to_string(),
        reason: format!("{e}"),
    })?;
    match d.algorithm() {
        DigestAlgorithm::Sha256 | DigestAlgorithm::Sha384 | DigestAlgorithm::Sha512 => Ok(d),
        other => Err(Error::InvalidDigest {
            input: s.to_string(),
            reason: format!("unsupported algorithm {other}"),
        }),
    }
}

/// A digest from a sha256 hex string that is already known to be valid.
pub fn sha256_from_hex(hex: &str) -> Result<Digest> {
    parse_digest(&format!("sha256:{hex}"))
}

/// The sha256 digest of `bytes`.
pub fn sha256_of(bytes: &[u8]) -> Digest {
    let hex = hex::encode(Sha256::digest(bytes));
    sha256_from_hex(&hex).expect("sha256 hex is a valid digest")
}

/// An incremental hasher for any digest algorithm stowage accepts.
#[derive(Clone)]
pub enum Hasher {
    /// sha256 (the only algorithm registries and containers-storage use in practice).
    Sha256(Sha256),
    /// sha384.
    Sha384(Sha384),
    /// sha512.
    Sha512(Sha512),
}

impl Hasher {
    /// A sha256 hasher.
    pub fn sha256() -> Self {
        Hasher::Sha256(Sha256::new())
    }

    /// A hasher for `algorithm`.
    pub fn for_algorithm(algorithm: &DigestAlgorithm) -> Result<Self> {
        Ok(match algorithm {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha384 => Hasher::Sha384(Sha384::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            other => {
                return Err(Error::InvalidDigest {
                    input: other.to_string(),
                    reason: "unsupported digest algorithm".into(),
                })
            }
        })
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            Hasher::Sha384(h) => ("sha384", hex::encode(h.finalize())),
            Hasher::Sha512(h) => ("sha512", hex::encode(h.finalize())),
        };
        parse_digest(&format!("{alg}:{hex}")).expect("hasher output is a valid digest")
    }
}

/// A `Write` that hashes and counts what is written, then passes it on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wrap `inner` with a sha256 hasher.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::sha256(),
            count: 0,
        }
    }

    /// The digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A `Read` that hashes and counts what is read (no verification; see [`VerifiedReader`]).
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner` with a sha256 hasher.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::sha256(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and size of what was read, and the inner reader.
    pub fn finish(self) -> (Digest, u64, R) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A reader that checks size and digest of the stream against a descriptor.
///
/// Reading past the declared size is an error as soon as it happens (a blob that is too long
/// never streams unbounded data); at end of stream the digest is compared. Either failure is
/// returned as an `io::Error` wrapping the engine [`Error`] (use [`Error::from_io`] to get it
/// back). Only after `read` has returned `Ok(0)` is the content known to be good.
pub struct VerifiedReader<R> {
    inner: R,
    what: String,
    expected: Digest,
    expected_size: Option<u64>,
    hasher: Option<Hasher>,
    count: u64,
    verified: bool,
}

impl<R: Read> VerifiedReader<R> {
    /// Verify `inner` against `expected` and, when known, `expected_size`. `what` names the blob
    /// in errors ("layer 2 of oci:/x:latest").
    pub fn new(
        inner: R,
        expected: &Digest,
        expected_size: Option<u64>,
        what: impl Into<String>,
    ) -> Result<Self> {
        Ok(VerifiedReader {
            inner,
            what: what.into(),
            hasher: Some(Hasher::for_algorithm(expected.algorithm())?),
            expected: expected.clone(),
            expected_size,
            count: 0,
            verified: false,
        })
    }

    /// Whether end of stream was reached and everything matched.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The expected digest.
    pub fn digest(&self) -> &Digest {
        &self.expected
    }

    /// Read whatever is left (a tar reader may stop before the end) so the digest is checked.
    pub fn drain(&mut self) -> Result<u64> {
        io::copy(self, &mut io::sink())
            .map_err(|e| Error::from_io(format!("reading {}", self.what), e))
    }

    fn size_error(&self, actual: u64) -> io::Error {
        Error::SizeMismatch {
            what: self.what.clone(),
            digest: self.expected.clone(),
            expected: self.expected_size.unwrap_or(0),
            actual,
        }
        .into_io()
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        // Never hand out more than the declared size: read at most one byte past it to detect
        // an overlong blob.
        let limit = match self.expected_size {
            Some(size) => {
                let remaining = size.saturating_sub(self.count) as usize;
                buf.len().min(remaining.max(1))
            }
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..limit])?;
        if let Some(size) = self.expected_size {
            if self.count + n as u64 > size {
                return Err(self.size_error(self.count + n as u64));
            }
        }
        if n == 0 {
            if let Some(size) = self.expected_size {
                if self.count != size {
                    return Err(self.size_error(self.count));
                }
            }
            let actual = self
                .hasher
                .take()
                .expect("hasher present until verified")
                .finish();
            if actual != self.expected {
                return Err(Error::DigestMismatch {
                    what: self.what.clone(),
                    expected: self.expected.clone(),
                    actual,
                }
                .into_io());
            }
            self.verified = true;
            return Ok(0);
        }
        self.hasher
            .as_mut()
            .expect("hasher present until verified")
            .update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn sha256_known_value() {
        assert_eq!(sha256_of(b"hello").to_string(), HELLO);
    }

    #[test]
    fn verified_reader_accepts_good_blob() {
        let d = parse_digest(HELLO).unwrap();
        let mut r = VerifiedReader::new(&b"hello"[..], &d, Some(5), "test blob").unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
        assert!(r.is_verified());
    }

    #[test]
    fn verified_reader_rejects_wrong_digest_and_names_it() {
        let d = parse_digest(HELLO).unwrap();
        let mut r = VerifiedReader::new(&b"hellO"[..], &d, Some(5), "layer 1 of test").unwrap();
        let err = Error::from_io("x", r.read_to_end(&mut Vec::new()).unwrap_err());
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(HELLO) && msg.contains("layer 1 of test"),
            "{msg}"
        );
    }

    #[test]
    fn verified_reader_rejects_truncated_and_overlong() {
        let d = parse_digest(HELLO).unwrap();
        let mut r = VerifiedReader::new(&b"hell"[..], &d, Some(5), "t").unwrap();
        let err = Error::from_io("x", r.read_to_end(&mut Vec::new()).unwrap_err());
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 5,
                    actual: 4,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("truncated"));

        let mut r = VerifiedReader::new(&b"hello world"[..], &d, Some(5), "t").unwrap();
        let err = Error::from_io("x", r.read_to_end(&mut Vec::new()).unwrap_err());
        assert!(
            matches!(
                err,
                Error::SizeMismatch {
                    expected: 5,
                    actual: 6,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn parse_digest_rejects_bad_input() {
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
        ] {
            assert!(parse_digest(bad).is_err(), "{bad}");
        }
    }
}
