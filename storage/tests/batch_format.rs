//! The record-batch format: a byte-literal batch, round trips, and
//! robustness of the parser against arbitrary bytes.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use fjord_storage::{BatchBuilder, Compression, Record, RecordBatch};
use proptest::prelude::*;

/// A Kafka v2 batch with one record (key "k", value "v", timestamp 1000),
/// laid out by hand from the format description.
fn literal() -> Vec<u8> {
    let record: &[u8] = &[
        0x10, // length 8 (zig-zag)
        0x00, // attributes
        0x00, // timestamp delta 0
        0x00, // offset delta 0
        0x02, b'k', // key length 1, "k"
        0x02, b'v', // value length 1, "v"
        0x00, // no headers
    ];
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((49 + record.len()) as i32).to_be_bytes()); // batch length
    b.extend_from_slice(&(-1i32).to_be_bytes()); // leader epoch
    b.push(2); // magic
    b.extend_from_slice(&[0, 0, 0, 0]); // crc
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&1000i64.to_be_bytes()); // base timestamp
    b.extend_from_slice(&1000i64.to_be_bytes()); // max timestamp
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // records count
    b.extend_from_slice(record);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn builder_output_is_the_kafka_v2_layout_byte_for_byte() {
    let built = BatchBuilder::new(Compression::None)
        .push(Record::new(Some("k".into()), Some("v".into()), 1000))
        .build()
        .unwrap();
    assert_eq!(&built[..], &literal()[..]);
    let parsed = RecordBatch::parse(Bytes::from(literal())).unwrap();
    assert_eq!(parsed.header.batch_length, 58);
    let records = parsed.records().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].key.as_deref(), records[0].value.as_deref()),
        (Some(&b"k"[..]), Some(&b"v"[..]))
    );
    assert_eq!(records[0].timestamp_ms, 1000);
}

#[test]
fn crc_is_crc32c_castagnoli() {
    // The standard check value of CRC-32C.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

fn arb_record() -> impl Strategy<Value = Record> {
    (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        0i64..1_000_000,
        prop::collection::vec(
            (
                "[a-z]{0,5}",
                prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
            ),
            0..3,
        ),
    )
        .prop_map(|(k, v, ts, hs)| {
            let mut r = Record::new(k.map(Bytes::from), v.map(Bytes::from), ts);
            for (hk, hv) in hs {
                r = r.with_header(hk, hv.map(Bytes::from));
            }
            r
        })
}

fn arb_codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Lz4),
        Just(Compression::Zstd)
    ]
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(records in prop::collection::vec(arb_record(), 1..20), codec in arb_codec()) {
        let mut b = BatchBuilder::new(codec);
        for r in &records { b.add(r.clone()); }
        let bytes = b.build().unwrap();
        let parsed = RecordBatch::parse(bytes).unwrap();
        let decoded = parsed.records().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(d.offset, i as i64);
            prop_assert_eq!(&d.key, &r.key);
            prop_assert_eq!(&d.value, &r.value);
            prop_assert_eq!(&d.headers, &r.headers);
            prop_assert_eq!(d.timestamp_ms, r.timestamp_ms);
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(batch) = RecordBatch::parse(Bytes::from(bytes)) {
            let _ = batch.records();
        }
    }

    #[test]
    fn any_flipped_bit_in_the_crc_region_is_rejected(records in prop::collection::vec(arb_record(), 1..5), codec in arb_codec(), pick in any::<usize>(), bit in 0u8..8) {
        let mut b = BatchBuilder::new(codec);
        for r in &records { b.add(r.clone()); }
        let mut bytes = b.build().unwrap().to_vec();
        let at = 17 + pick % (bytes.len() - 17);
        bytes[at] ^= 1 << bit;
        prop_assert!(RecordBatch::parse(Bytes::from(bytes)).is_err());
    }

    /// A corrupted batch whose CRC is recomputed: the record parser itself
    /// must reject or accept it without panicking.
    #[test]
    fn record_parser_survives_corruption_behind_a_valid_crc(records in prop::collection::vec(arb_record(), 1..5), pick in any::<usize>(), byte in any::<u8>()) {
        let mut b = BatchBuilder::new(Compression::None);
        for r in &records { b.add(r.clone()); }
        let mut bytes = b.build().unwrap().to_vec();
        let at = 21 + pick % (bytes.len() - 21);
        bytes[at] = byte;
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let _ = RecordBatch::parse(Bytes::from(bytes));
    }
}
