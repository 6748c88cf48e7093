//! Layer compression: detection by media type and magic bytes, streaming decoders and encoders.
//!
//! 1. [`Compression::from_media_type`] reads what the manifest claims;
//! 2. [`Compression::sniff`] reads what the bytes are (gzip `1f 8b`, zstd `28 b5 2f fd`, else
//!    uncompressed); the bytes win when the two disagree, as containers/storage does;
//! 3. [`decoder`] wraps a reader; zstd streams may have several frames (zstd:chunked), and
//!    gzip streams several members, and both are decoded to the end.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::error::{Error, Result};

/// How a layer blob is compressed. The discriminants are containers/storage's
/// `archive.Compression` values, which it stores in `layers.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    Uncompressed = 0,
    /// bzip2 (recognised, not supported).
    Bzip2 = 1,
    /// gzip.
    Gzip = 2,
    /// xz (recognised, not supported).
    Xz = 3,
    /// zstd, one or more frames.
    Zstd = 4,
}

impl Compression {
    /// The compression a layer media type declares, or an error naming an unknown type.
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        let base = media_type.split(';').next().unwrap_or("").trim();
        Ok(match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::Uncompressed,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
            _ => {
                return Err(Error::UnsupportedMediaType {
                    what: "layer".into(),
                    media_type: media_type.to_string(),
                })
            }
        })
    }

    /// The compression the first bytes of a blob show.
    pub fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            _ => Compression::Uncompressed,
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// Lower-case name (`gzip`, `zstd`, `uncompressed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Bzip2 => "bzip2",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// A boxed, sendable reader.
pub type BoxRead<'a> = Box<dyn Read + Send + 'a>;

/// Decode `input`, choosing the decoder from its magic bytes. `what` names the blob in errors.
/// Returns the detected compression and the decoded stream.
pub fn decoder<'a, R: Read + Send + 'a>(
    input: R,
    what: &str,
) -> Result<(Compression, BoxRead<'a>)> {
    let mut input = BufReader::with_capacity(128 * 1024, input);
    let head = input
        .fill_buf()
        .map_err(|e| Error::from_io(format!("reading {what}"), e))?;
    let compression = Compression::sniff(head);
    let reader: BoxRead<'a> = match compression {
        Compression::Uncompressed => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| Error::from_io(format!("starting zstd decoder for {what}"), e))?;
            // Bound the window so a hostile frame header cannot demand gigabytes.
            d.window_log_max(31)
                .map_err(|e| Error::from_io(format!("configuring zstd decoder for {what}"), e))?;
            Box::new(d)
        }
        other => {
            return Err(Error::Unsupported {
                transport: what.to_string(),
                reason: format!(
                    "{} compressed layers are not supported; recompress it with gzip or zstd",
                    other.name()
                ),
            })
        }
    };
    Ok((compression, reader))
}

/// A compressing writer; [`Encoder::finish`] flushes the trailer and returns the inner writer.
pub enum Encoder<W: Write> {
    /// Pass-through.
    Uncompressed(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// A new encoder at a level suited to layers (gzip 6 like containers/image, zstd 3).
    pub fn new(inner: W, compression: Compression) -> Result<Self> {
        Ok(match compression {
            Compression::Uncompressed => Encoder::Uncompressed(inner),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                inner,
                flate2::Compression::new(6),
            )),
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(inner, 3)
                    .map_err(|e| Error::from_io("starting zstd encoder", e))?,
            ),
            other => {
                return Err(Error::Unsupported {
                    transport: "compression".into(),
                    reason: format!("cannot write {} layers; use gzip or zstd", other.name()),
                })
            }
        })
    }

    /// Finish the stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Uncompressed(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Uncompressed(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Uncompressed(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new(), c).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_by_magic_not_media_type() {
        let data = b"some tar bytes".repeat(100);
        for c in [
            Compression::Uncompressed,
            Compression::Gzip,
            Compression::Zstd,
        ] {
            let enc = roundtrip(c, &data);
            let (found, mut r) = decoder(&enc[..], "t").unwrap();
            assert_eq!(found, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn zstd_multi_frame_and_gzip_multi_member() {
        for c in [Compression::Zstd, Compression::Gzip] {
            let mut enc = roundtrip(c, b"first frame ");
            enc.extend(roundtrip(c, b"second frame"));
            let (_, mut r) = decoder(&enc[..], "t").unwrap();
            let mut out = String::new();
            r.read_to_string(&mut out).unwrap();
            assert_eq!(out, "first frame second frame");
        }
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        let err = Compression::from_media_type("application/x-foo").unwrap_err();
        assert!(err.to_string().contains("application/x-foo"));
    }
}
