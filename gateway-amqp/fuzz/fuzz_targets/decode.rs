//! Arbitrary bytes into `codec::decode_frame`, frame after frame, under
//! several frame-max values. Every frame that decodes must encode again and
//! decode back equal, in no more bytes than it came in.

#![no_main]

use bytes::BytesMut;
use fjord_gateway_amqp::codec::{self, DecodeError, Frame};
use libfuzzer_sys::fuzz_target;

/// No limit; small enough that many inputs hit `FrameTooLarge`; the
/// pre-tune limit.
const FRAME_MAXES: [u32; 3] = [0, 64, codec::FRAME_MIN_SIZE];

fuzz_target!(|data: &[u8]| {
    for frame_max in FRAME_MAXES {
        decode_stream(data, frame_max);
    }
});

/// Decodes frame after frame, as a connection would, until the input runs
/// out or an error ends it.
fn decode_stream(data: &[u8], frame_max: u32) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let checked = codec::check_frame(&buf, frame_max);
        match codec::decode_frame(&mut buf, frame_max) {
            Ok(Some(frame)) => {
                let consumed = before - buf.len();
                assert_eq!(checked, Ok(consumed), "consumed what check measured");
                assert!(frame_max == 0 || consumed <= frame_max as usize);
                round_trip(&frame, consumed);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "nothing consumed while incomplete");
                assert!(matches!(checked, Err(DecodeError::Incomplete(_))));
                return;
            }
            Err(e) => {
                assert!(!matches!(e, DecodeError::Incomplete(_)));
                match checked {
                    // A framing error: nothing consumed.
                    Err(framing) => {
                        assert_eq!(framing, e);
                        assert_eq!(buf.len(), before);
                    }
                    // A payload error: the frame is consumed.
                    Ok(n) => assert_eq!(before - buf.len(), n),
                }
                assert!(matches!(e.reply_code(), 501 | 502 | 505 | 540));
                return;
            }
        }
    }
}

/// Encodes a decoded frame and decodes it again.
fn round_trip(frame: &Frame, consumed: usize) {
    let mut out = BytesMut::new();
    if let Err(e) = codec::encode_frame(frame, &mut out) {
        panic!("decoded {frame:?} but could not encode it: {e}");
    }
    assert!(
        out.len() <= consumed,
        "re-encoded in {} bytes, decoded from {consumed}",
        out.len()
    );
    let again = match codec::decode_frame(&mut out, 0) {
        Ok(Some(again)) => again,
        other => panic!("re-encoded {frame:?} decoded as {other:?}"),
    };
    assert_eq!(&again, frame);
    assert!(out.is_empty(), "re-encoding decoded with bytes left over");
}
