//! Zig-zag varints as Kafka's record format uses them (protobuf style).
//!
//! # Format
//! A signed value is zig-zag mapped to unsigned (`(n << 1) ^ (n >> 63)`) and
//! written 7 bits at a time, least significant first, with the top bit of each
//! byte set while more bytes follow. `varint` holds an `i32` (at most 5 bytes),
//! `varlong` an `i64` (at most 10 bytes).

use crate::{Error, Result};

/// Appends the zig-zag varint encoding of `value`.
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the zig-zag varint encoding of an `i32`.
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Reads a zig-zag varlong at `*pos`, advancing it.
///
/// # Errors
/// `CorruptBatch` if the input ends first or the value is longer than 10 bytes.
pub(crate) fn get_varlong(buf: &[u8], pos: &mut usize) -> Result<i64> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| Error::CorruptBatch("varint runs past the end of the record".into()))?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(Error::CorruptBatch("varint longer than 10 bytes".into()))
}

/// Reads a zig-zag varint that must fit an `i32`.
///
/// # Errors
/// `CorruptBatch` on truncation or overflow.
pub(crate) fn get_varint(buf: &[u8], pos: &mut usize) -> Result<i32> {
    let v = get_varlong(buf, pos)?;
    i32::try_from(v).map_err(|_| Error::CorruptBatch(format!("varint {v} overflows 32 bits")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encodings() {
        let cases: [(i64, &[u8]); 6] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-65, &[0x81, 0x01]),
            (300, &[0xd8, 0x04]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out, bytes, "encoding {value}");
            let mut pos = 0;
            assert_eq!(get_varlong(bytes, &mut pos).unwrap(), value);
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn extremes_round_trip_and_bad_input_is_rejected() {
        for value in [i64::MIN, i64::MAX, i64::from(i32::MIN), i64::from(i32::MAX)] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            let mut pos = 0;
            assert_eq!(get_varlong(&out, &mut pos).unwrap(), value);
        }
        let mut pos = 0;
        assert!(get_varlong(&[0x80, 0x80], &mut pos).is_err());
        let mut pos = 0;
        assert!(get_varlong(&[0xff; 11], &mut pos).is_err());
        let mut out = Vec::new();
        put_varlong(&mut out, i64::from(i32::MAX) + 1);
        let mut pos = 0;
        assert!(get_varint(&out, &mut pos).is_err());
    }
}
