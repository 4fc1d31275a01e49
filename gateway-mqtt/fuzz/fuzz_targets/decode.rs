//! Arbitrary bytes into `codec::decode`, for each protocol state and a small
//! and a large maximum packet size. Every packet that decodes must encode
//! again (unless it is too large for the maximum) and decode back equal.

#![no_main]

use bytes::BytesMut;
use fjord_gateway_mqtt::codec::{self, EncodeError, Packet, Protocol};
use libfuzzer_sys::fuzz_target;

/// Small enough that many inputs hit `PacketTooLarge`.
const SMALL_MAX: usize = 64;
/// Larger than any input libFuzzer produces here.
const LARGE_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for protocol in [None, Some(Protocol::V311), Some(Protocol::V5)] {
        for max in [SMALL_MAX, LARGE_MAX] {
            decode_stream(data, protocol, max);
        }
    }
});

/// Decodes packet after packet, as a connection would, until the input runs
/// out or an error ends it.
fn decode_stream(data: &[u8], protocol: Option<Protocol>, max: usize) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let checked = codec::check(&buf, max);
        match codec::decode(&mut buf, protocol, max) {
            Ok(Some(packet)) => {
                assert_eq!(
                    checked,
                    Ok(before - buf.len()),
                    "consumed what check measured"
                );
                assert!(before - buf.len() <= max);
                round_trip(&packet, protocol, max);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "nothing consumed while incomplete");
                return;
            }
            Err(_) => {
                assert!(buf.len() <= before);
                return;
            }
        }
    }
}

/// Encodes a decoded packet and decodes it again.
fn round_trip(packet: &Packet, protocol: Option<Protocol>, max: usize) {
    let encode_as = protocol.unwrap_or(Protocol::V311);
    let mut out = BytesMut::new();
    match codec::encode(packet, encode_as, &mut out, max) {
        Ok(()) => {}
        Err(EncodeError::PacketTooLarge { .. }) => return,
        Err(e) => panic!("decoded {packet:?} but could not encode it: {e}"),
    }
    assert_eq!(out.len(), codec::encoded_size(packet, encode_as));
    let again = match codec::decode(&mut out, protocol, max) {
        Ok(Some(again)) => again,
        other => panic!("re-encoded {packet:?} decoded as {other:?}"),
    };
    assert_eq!(&again, packet);
    assert!(out.is_empty(), "re-encoding decoded with bytes left over");
}
