//! Compression codecs of a record batch's records section.
//!
//! # Format
//! The codec is the low three bits of the batch attributes, Kafka numbering:
//! 0 none, 1 gzip, 2 snappy, 3 lz4 (LZ4 *frame* format), 4 zstd. Only the
//! records that follow the 61-byte header are compressed, as one stream.
//! This build supports none, lz4 and zstd; gzip and snappy batches are
//! rejected with `UnsupportedCodec` (nothing is stored that cannot be read).

use std::io::{Read, Write};

use crate::{Error, Result};

/// Codec in the low 3 bits of a batch's attributes (Kafka numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Largest decompressed records section accepted (guards against bombs).
const MAX_DECOMPRESSED: usize = 256 << 20;

impl Compression {
    /// The codec for attribute bits `id` (0..=4).
    ///
    /// # Errors
    /// `UnsupportedCodec` for any other id.
    pub fn from_id(id: u8) -> Result<Compression> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(Error::UnsupportedCodec(other)),
        }
    }

    /// Attribute bits of this codec.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// Compresses a records section.
    ///
    /// # Errors
    /// `UnsupportedCodec` for gzip and snappy; `CorruptBatch` if the encoder fails.
    pub fn compress(self, raw: &[u8]) -> Result<Vec<u8>> {
        match self {
            Compression::None => Ok(raw.to_vec()),
            Compression::Zstd => zstd::bulk::compress(raw, 3)
                .map_err(|e| Error::CorruptBatch(format!("zstd compression failed: {e}"))),
            Compression::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder
                    .write_all(raw)
                    .map_err(|e| Error::CorruptBatch(format!("lz4 compression failed: {e}")))?;
                encoder
                    .finish()
                    .map_err(|e| Error::CorruptBatch(format!("lz4 compression failed: {e}")))
            }
            Compression::Gzip | Compression::Snappy => Err(Error::UnsupportedCodec(self.id())),
        }
    }

    /// Decompresses a records section.
    ///
    /// # Errors
    /// `UnsupportedCodec` for gzip and snappy; `CorruptBatch` for bad input or
    /// output larger than 256 MiB.
    pub fn decompress(self, compressed: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let limit = MAX_DECOMPRESSED as u64 + 1;
        let result = match self {
            Compression::None => return Ok(compressed.to_vec()),
            Compression::Zstd => zstd::stream::read::Decoder::new(compressed)
                .and_then(|d| d.take(limit).read_to_end(&mut out)),
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(compressed)
                .take(limit)
                .read_to_end(&mut out),
            Compression::Gzip | Compression::Snappy => {
                return Err(Error::UnsupportedCodec(self.id()));
            }
        };
        result.map_err(|e| Error::CorruptBatch(format!("{self:?} decompression failed: {e}")))?;
        if out.len() > MAX_DECOMPRESSED {
            return Err(Error::CorruptBatch(
                "decompressed records exceed 256 MiB".into(),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::Compression;

    #[test]
    fn codecs_round_trip_and_reject_garbage() {
        let raw: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 97).to_le_bytes())
            .collect();
        for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let packed = codec.compress(&raw).unwrap();
            assert_eq!(codec.decompress(&packed).unwrap(), raw, "{codec:?}");
            assert_eq!(Compression::from_id(codec.id()).unwrap(), codec);
        }
        assert!(Compression::Zstd.decompress(b"not zstd at all").is_err());
        assert!(Compression::Lz4.decompress(b"not lz4 at all").is_err());
        assert!(Compression::from_id(7).is_err());
        assert!(Compression::Gzip.compress(b"x").is_err());
    }
}
