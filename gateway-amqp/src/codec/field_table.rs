//! Field tables and field values (0-9-1 §4.2.5.5 with RabbitMQ's errata):
//! the `arguments` of declares, binds and consumes, the peer properties of
//! connection.start/start-ok, and the `headers` message property.
//!
//! # Format
//!
//! ```text
//!  table   long length, then that many bytes of entries:
//!  entry   shortstr name, then a value
//!  value   one type octet, then:
//!            't' boolean   octet, 0 false, anything else true
//!            'b' i8        'B' u8
//!            's' i16       'u' u16
//!            'I' i32       'i' u32
//!            'l' i64       'L' i64 as well (read only; written as 'l')
//!            'f' f32       'd' f64   (IEEE 754, big-endian)
//!            'D' decimal   octet scale, then long value (value / 10^scale)
//!            'S' longstr   'x' byte array (long length, then bytes)
//!            'T' timestamp longlong, seconds since the epoch
//!            'A' array     long length, then that many bytes of values
//!            'F' table     nested, as above
//!            'V' void      nothing
//!  array   values one after the other, no names
//! ```
//!
//! These are the letters RabbitMQ and the clients written against it (lapin,
//! pika, kombu, the Java and .NET clients) send: `s` is a signed short, not
//! the specification's short string, and `l`/`L` are both signed 64-bit.
//!
//! # Invariants
//!
//! - Entries keep their wire order; duplicate names are kept too (the first
//!   one wins in [`FieldTable::get`]).
//! - Tables and arrays nested more than [`MAX_NESTING_DEPTH`] deep are
//!   refused both ways ([`DecodeError::Syntax`], [`EncodeError::Invalid`]), so
//!   a hostile frame cannot exhaust the stack.
//! - Floats compare by bit pattern: every value equals itself (NaN too) and a
//!   decoded value equals the one that was encoded.

use bytes::Bytes;

use super::data_types::{Reader, Writer};
use super::{DecodeError, EncodeError};

/// How many tables and arrays may be nested in one another, the outermost
/// table counting as 1. Real peers nest two or three deep.
pub const MAX_NESTING_DEPTH: usize = 64;

/// An ordered field table: name/value pairs in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTable(Vec<(String, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of the first entry called `name`.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Sets `name` to `value`: replaces the first entry of that name, or
    /// appends one.
    pub fn insert(&mut self, name: impl Into<String>, value: FieldValue) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    /// The entries in wire order.
    pub fn entries(&self) -> &[(String, FieldValue)] {
        &self.0
    }

    /// Iterates over the entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldValue)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// How many entries there are, duplicates included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(String, FieldValue)>> for FieldTable {
    fn from(entries: Vec<(String, FieldValue)>) -> Self {
        Self(entries)
    }
}

impl<K: Into<String>> FromIterator<(K, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (K, FieldValue)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl IntoIterator for FieldTable {
    type Item = (String, FieldValue);
    type IntoIter = std::vec::IntoIter<(String, FieldValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One value in a field table or array; the wire letter is in each variant's
/// documentation.
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// `t`.
    Bool(bool),
    /// `b`.
    I8(i8),
    /// `B`.
    U8(u8),
    /// `s` (RabbitMQ's meaning: a signed short).
    I16(i16),
    /// `u`.
    U16(u16),
    /// `I`.
    I32(i32),
    /// `i`.
    U32(u32),
    /// `l`; `L` decodes to this too.
    I64(i64),
    /// `f`.
    F32(f32),
    /// `d`.
    F64(f64),
    /// `D`: `value / 10^scale`.
    Decimal { scale: u8, value: u32 },
    /// `S`: bytes, usually UTF-8 text.
    LongString(Bytes),
    /// `x`.
    ByteArray(Bytes),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    /// `A`.
    Array(Vec<FieldValue>),
    /// `F`.
    Table(FieldTable),
    /// `V`: no value.
    Void,
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        use FieldValue as V;
        match (self, other) {
            (V::Bool(a), V::Bool(b)) => a == b,
            (V::I8(a), V::I8(b)) => a == b,
            (V::U8(a), V::U8(b)) => a == b,
            (V::I16(a), V::I16(b)) => a == b,
            (V::U16(a), V::U16(b)) => a == b,
            (V::I32(a), V::I32(b)) => a == b,
            (V::U32(a), V::U32(b)) => a == b,
            (V::I64(a), V::I64(b)) => a == b,
            (V::F32(a), V::F32(b)) => a.to_bits() == b.to_bits(),
            (V::F64(a), V::F64(b)) => a.to_bits() == b.to_bits(),
            (V::Decimal { scale, value }, V::Decimal { scale: s, value: v }) => {
                scale == s && value == v
            }
            (V::LongString(a), V::LongString(b)) => a == b,
            (V::ByteArray(a), V::ByteArray(b)) => a == b,
            (V::Timestamp(a), V::Timestamp(b)) => a == b,
            (V::Array(a), V::Array(b)) => a == b,
            (V::Table(a), V::Table(b)) => a == b,
            (V::Void, V::Void) => true,
            _ => false,
        }
    }
}

/// Floats compare by bit pattern, so equality is reflexive.
impl Eq for FieldValue {}

/// Reads the entries of a table whose length has been read already; `bytes`
/// is exactly the entries. `depth` is the table's own nesting depth.
pub(crate) fn read_entries(
    bytes: Bytes,
    depth: usize,
    what: &str,
) -> Result<FieldTable, DecodeError> {
    check_depth(depth, what)?;
    let mut r = Reader::new(bytes);
    let mut entries = Vec::new();
    while !r.is_empty() {
        let name = r.shortstr(what)?;
        let value = read_value(&mut r, depth, what)?;
        entries.push((name, value));
    }
    Ok(FieldTable(entries))
}

fn read_array(bytes: Bytes, depth: usize, what: &str) -> Result<Vec<FieldValue>, DecodeError> {
    check_depth(depth, what)?;
    let mut r = Reader::new(bytes);
    let mut values = Vec::new();
    while !r.is_empty() {
        values.push(read_value(&mut r, depth, what)?);
    }
    Ok(values)
}

fn check_depth(depth: usize, what: &str) -> Result<(), DecodeError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(DecodeError::Syntax(format!(
            "{what}: tables nested more than {MAX_NESTING_DEPTH} deep"
        )));
    }
    Ok(())
}

/// Reads one value (type octet and contents) inside a container at `depth`.
fn read_value(r: &mut Reader, depth: usize, what: &str) -> Result<FieldValue, DecodeError> {
    let kind = r.octet(what)?;
    Ok(match kind {
        b't' => FieldValue::Bool(r.octet(what)? != 0),
        b'b' => FieldValue::I8(i8::from_be_bytes([r.octet(what)?])),
        b'B' => FieldValue::U8(r.octet(what)?),
        b's' => FieldValue::I16(i16::from_be_bytes(r.bytes2(what)?)),
        b'u' => FieldValue::U16(r.short(what)?),
        b'I' => FieldValue::I32(i32::from_be_bytes(r.bytes4(what)?)),
        b'i' => FieldValue::U32(r.long(what)?),
        b'l' | b'L' => FieldValue::I64(i64::from_be_bytes(r.bytes8(what)?)),
        b'f' => FieldValue::F32(f32::from_be_bytes(r.bytes4(what)?)),
        b'd' => FieldValue::F64(f64::from_be_bytes(r.bytes8(what)?)),
        b'D' => FieldValue::Decimal {
            scale: r.octet(what)?,
            value: r.long(what)?,
        },
        b'S' => FieldValue::LongString(r.longstr(what)?),
        b'x' => FieldValue::ByteArray(r.longstr(what)?),
        b'T' => FieldValue::Timestamp(r.longlong(what)?),
        b'A' => FieldValue::Array(read_array(r.longstr(what)?, depth + 1, what)?),
        b'F' => FieldValue::Table(r.table_at(depth + 1, what)?),
        b'V' => FieldValue::Void,
        other => {
            return Err(DecodeError::Syntax(format!(
                "{what}: unknown field value type {:?}",
                char::from(other)
            )));
        }
    })
}

/// Writes the entries of a table at nesting depth `depth`, without its length.
pub(crate) fn write_entries(
    w: &mut Writer<'_>,
    table: &FieldTable,
    depth: usize,
    what: &str,
) -> Result<(), EncodeError> {
    check_depth_out(depth, what)?;
    for (name, value) in &table.0 {
        w.shortstr(name, what)?;
        write_value(w, value, depth, what)?;
    }
    Ok(())
}

fn check_depth_out(depth: usize, what: &str) -> Result<(), EncodeError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(EncodeError::Invalid(format!(
            "{what}: tables nested more than {MAX_NESTING_DEPTH} deep"
        )));
    }
    Ok(())
}

fn write_value(
    w: &mut Writer<'_>,
    value: &FieldValue,
    depth: usize,
    what: &str,
) -> Result<(), EncodeError> {
    match value {
        FieldValue::Bool(v) => {
            w.octet(b't');
            w.octet(u8::from(*v));
        }
        FieldValue::I8(v) => {
            w.octet(b'b');
            w.raw(&v.to_be_bytes());
        }
        FieldValue::U8(v) => {
            w.octet(b'B');
            w.octet(*v);
        }
        FieldValue::I16(v) => {
            w.octet(b's');
            w.raw(&v.to_be_bytes());
        }
        FieldValue::U16(v) => {
            w.octet(b'u');
            w.short(*v);
        }
        FieldValue::I32(v) => {
            w.octet(b'I');
            w.raw(&v.to_be_bytes());
        }
        FieldValue::U32(v) => {
            w.octet(b'i');
            w.long(*v);
        }
        FieldValue::I64(v) => {
            w.octet(b'l');
            w.raw(&v.to_be_bytes());
        }
        FieldValue::F32(v) => {
            w.octet(b'f');
            w.raw(&v.to_be_bytes());
        }
        FieldValue::F64(v) => {
            w.octet(b'd');
            w.raw(&v.to_be_bytes());
        }
        FieldValue::Decimal { scale, value } => {
            w.octet(b'D');
            w.octet(*scale);
            w.long(*value);
        }
        FieldValue::LongString(v) => {
            w.octet(b'S');
            w.longstr(v, what)?;
        }
        FieldValue::ByteArray(v) => {
            w.octet(b'x');
            w.longstr(v, what)?;
        }
        FieldValue::Timestamp(v) => {
            w.octet(b'T');
            w.longlong(*v);
        }
        FieldValue::Array(values) => {
            w.octet(b'A');
            check_depth_out(depth + 1, what)?;
            w.sized(what, |w| {
                values
                    .iter()
                    .try_for_each(|v| write_value(w, v, depth + 1, what))
            })?;
        }
        FieldValue::Table(table) => {
            w.octet(b'F');
            w.table_at(table, depth + 1, what)?;
        }
        FieldValue::Void => w.octet(b'V'),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn encode(table: &FieldTable) -> Vec<u8> {
        let mut out = BytesMut::new();
        Writer::new(&mut out).table(table, "table").unwrap();
        out.to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<FieldTable, DecodeError> {
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let table = r.table("table")?;
        r.finish("table")?;
        Ok(table)
    }

    #[test]
    fn every_type_letter() {
        #[rustfmt::skip]
        let bytes: &[u8] = &[
            0, 0, 0, 126,
            1, b'a', b't', 1,
            1, b'b', b'b', 0xff,
            1, b'c', b'B', 0xff,
            1, b'd', b's', 0xff, 0xfe,
            1, b'e', b'u', 0xff, 0xfe,
            1, b'f', b'I', 0xff, 0xff, 0xff, 0xfd,
            1, b'g', b'i', 0xff, 0xff, 0xff, 0xfd,
            1, b'h', b'l', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc,
            1, b'i', b'f', 0x3f, 0xc0, 0, 0,
            1, b'j', b'd', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
            1, b'k', b'D', 2, 0, 0, 0x01, 0x2c,
            1, b'l', b'S', 0, 0, 0, 2, b'h', b'i',
            1, b'm', b'x', 0, 0, 0, 1, 0x00,
            1, b'n', b'T', 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x00,
            1, b'o', b'A', 0, 0, 0, 4, b'V', b't', 0, b'V',
            1, b'p', b'F', 0, 0, 0, 4, 1, b'q', b'B', 7,
            1, b'r', b'V',
        ];
        let table: FieldTable = [
            ("a", FieldValue::Bool(true)),
            ("b", FieldValue::I8(-1)),
            ("c", FieldValue::U8(255)),
            ("d", FieldValue::I16(-2)),
            ("e", FieldValue::U16(65_534)),
            ("f", FieldValue::I32(-3)),
            ("g", FieldValue::U32(4_294_967_293)),
            ("h", FieldValue::I64(-4)),
            ("i", FieldValue::F32(1.5)),
            ("j", FieldValue::F64(1.5)),
            (
                "k",
                FieldValue::Decimal {
                    scale: 2,
                    value: 300,
                },
            ),
            ("l", FieldValue::LongString(Bytes::from_static(b"hi"))),
            ("m", FieldValue::ByteArray(Bytes::from_static(&[0]))),
            ("n", FieldValue::Timestamp(1_700_000_000)),
            (
                "o",
                FieldValue::Array(vec![
                    FieldValue::Void,
                    FieldValue::Bool(false),
                    FieldValue::Void,
                ]),
            ),
            (
                "p",
                FieldValue::Table([("q", FieldValue::U8(7))].into_iter().collect()),
            ),
            ("r", FieldValue::Void),
        ]
        .into_iter()
        .collect();
        assert_eq!(decode(bytes).unwrap(), table);
        assert_eq!(encode(&table), bytes);
        assert_eq!(
            table.get("k"),
            Some(&FieldValue::Decimal {
                scale: 2,
                value: 300
            })
        );
        assert_eq!(table.get("zz"), None);
    }

    #[test]
    fn capital_l_is_signed_and_written_back_as_l() {
        let bytes = [
            0, 0, 0, 11, 1, b'n', b'L', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        let table = decode(&bytes).unwrap();
        assert_eq!(table.get("n"), Some(&FieldValue::I64(-1)));
        let mut again = bytes.to_vec();
        again[6] = b'l';
        assert_eq!(encode(&table), again);
    }

    #[test]
    fn any_non_zero_boolean_is_true() {
        let table = decode(&[0, 0, 0, 4, 1, b'x', b't', 2]).unwrap();
        assert_eq!(table.get("x"), Some(&FieldValue::Bool(true)));
    }

    #[test]
    fn bad_tables() {
        // Unknown type letter.
        let err = decode(&[0, 0, 0, 3, 1, b'x', b'U']).unwrap_err();
        assert!(matches!(err, DecodeError::Syntax(_)), "{err:?}");
        // A value running past the table's end (the table length is honest).
        let err = decode(&[0, 0, 0, 4, 1, b'x', b'u', 1, 0]).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
        // A table length past the payload.
        let err = decode(&[0, 0, 0, 9, 1, b'x', b'V']).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
        // A name that is not UTF-8.
        let err = decode(&[0, 0, 0, 3, 1, 0xff, b'V']).unwrap_err();
        assert!(matches!(err, DecodeError::Syntax(_)), "{err:?}");
        // A name with no value.
        let err = decode(&[0, 0, 0, 2, 1, b'x']).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
    }

    /// A table nested `depth` deep in all: `{"n": {"n": ... {}}}`.
    fn nested(depth: usize) -> FieldTable {
        let mut table = FieldTable::new();
        for _ in 1..depth {
            table = [("n", FieldValue::Table(table))].into_iter().collect();
        }
        table
    }

    #[test]
    fn nesting_depth_is_limited_both_ways() {
        let deepest = nested(MAX_NESTING_DEPTH);
        let bytes = encode(&deepest);
        assert_eq!(decode(&bytes).unwrap(), deepest);

        let too_deep = nested(MAX_NESTING_DEPTH + 1);
        let mut out = BytesMut::new();
        assert!(matches!(
            Writer::new(&mut out).table(&too_deep, "t"),
            Err(EncodeError::Invalid(_))
        ));
        // Build the over-deep bytes by hand: one more `{"n": F ...}` around.
        let mut bytes = bytes;
        let inner_len = u32::try_from(bytes.len() + 3).unwrap();
        let mut outer = inner_len.to_be_bytes().to_vec();
        outer.extend_from_slice(&[1, b'n', b'F']);
        outer.extend_from_slice(&bytes);
        bytes = outer;
        assert!(matches!(decode(&bytes), Err(DecodeError::Syntax(_))));

        // Arrays count as well.
        let mut value = FieldValue::Void;
        for _ in 1..MAX_NESTING_DEPTH {
            value = FieldValue::Array(vec![value]);
        }
        let ok: FieldTable = [("a", value.clone())].into_iter().collect();
        assert_eq!(decode(&encode(&ok)).unwrap(), ok);
        let deep: FieldTable = [("a", FieldValue::Array(vec![value]))]
            .into_iter()
            .collect();
        let mut out = BytesMut::new();
        assert!(Writer::new(&mut out).table(&deep, "t").is_err());
    }

    #[test]
    fn floats_compare_by_bits() {
        assert_eq!(FieldValue::F64(f64::NAN), FieldValue::F64(f64::NAN));
        assert_ne!(FieldValue::F32(0.0), FieldValue::F32(-0.0));
        assert_ne!(FieldValue::U8(1), FieldValue::I8(1));
    }

    #[test]
    fn insert_replaces_or_appends() {
        let mut table = FieldTable::new();
        table.insert("a", FieldValue::U8(1));
        table.insert("b", FieldValue::U8(2));
        table.insert("a", FieldValue::U8(3));
        let names: Vec<_> = table.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(table.get("a"), Some(&FieldValue::U8(3)));
        assert_eq!(table.len(), 2);
    }
}
