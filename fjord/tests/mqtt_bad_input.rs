//! Bad MQTT input, byte by byte, against a real `fjord serve`: each gets
//! the spec's answer (a CONNACK or DISCONNECT reason code, or a closed
//! connection), other clients are unaffected, and nothing half-written
//! reaches the log.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;

const CONNECT_V311: &[u8] = &[
    0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, b'a',
];
const CONNECT_V5: &[u8] = &[
    0x10, 0x0e, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x01, b'b',
];

fn dial(server: &Server) -> TcpStream {
    let s = TcpStream::connect(&server.mqtt).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes the connection (bounded by the timeout).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the server did not close the connection: {e} (read {out:?})"),
        }
    }
}

/// One whole packet: (type byte, body).
fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        len |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (first[0], body)
}

/// Splits a byte stream into (type byte, body) packets.
fn packets(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = bytes.split_first() {
        let mut len = 0usize;
        let mut used = 0;
        for (i, b) in rest.iter().enumerate().take(4) {
            len |= usize::from(b & 0x7f) << (7 * i);
            used = i + 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let body = &rest[used..used + len];
        out.push((kind, body.to_vec()));
        bytes = &rest[used + len..];
    }
    out
}

/// Connects with MQTT 5 and reads the CONNACK.
fn connected_v5(server: &Server) -> TcpStream {
    let mut s = dial(server);
    s.write_all(CONNECT_V5).unwrap();
    let (kind, body) = read_packet(&mut s);
    assert_eq!(kind, 0x20);
    assert_eq!(body[1], 0x00, "CONNACK reason");
    s
}

/// Sends `bytes` after CONNECT and expects DISCONNECT with `reason`, then
/// the connection closed.
fn expect_disconnect(server: &Server, bytes: &[u8], reasons: &[u8]) {
    let mut s = connected_v5(server);
    s.write_all(bytes).unwrap();
    let rest = read_to_close(&mut s);
    assert!(
        rest.len() >= 3,
        "no DISCONNECT for {bytes:02x?}: {rest:02x?}"
    );
    assert_eq!(
        rest[0], 0xe0,
        "DISCONNECT expected for {bytes:02x?}: {rest:02x?}"
    );
    assert!(
        reasons.contains(&rest[2]),
        "reason for {bytes:02x?}: {rest:02x?}"
    );
}

/// A well-behaved client still gets its QoS 1 publish acknowledged.
fn healthy(server: &Server) {
    let mut s = dial(server);
    s.write_all(CONNECT_V311).unwrap();
    assert_eq!(read_packet(&mut s), (0x20, vec![0x00, 0x00]));
    // PUBLISH QoS 1 "ok" id 7 payload "fine".
    s.write_all(&[
        0x32, 0x0a, 0x00, 0x02, b'o', b'k', 0x00, 0x07, b'f', b'i', b'n', b'e',
    ])
    .unwrap();
    assert_eq!(read_packet(&mut s), (0x40, vec![0x00, 0x07]));
}

#[test]
fn bad_input_gets_reason_codes_and_leaves_everyone_else_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &[
            "--mqtt-listen",
            "127.0.0.1:0",
            "--mqtt-tls-listen",
            "off",
            "--mqtt-ws-listen",
            "off",
            "--mqtt-max-packet-size",
            "1024",
        ],
    );

    // PUBLISH before CONNECT: closed, nothing sent.
    let mut s = dial(&server);
    s.write_all(&[0x30, 0x05, 0x00, 0x01, b'x', b'h', b'i'])
        .unwrap();
    assert_eq!(read_to_close(&mut s), Vec::<u8>::new());

    // An unknown protocol level: "unacceptable protocol version", closed.
    for level in [3u8, 6] {
        let mut connect = CONNECT_V311.to_vec();
        connect[8] = level;
        let mut s = dial(&server);
        s.write_all(&connect).unwrap();
        assert_eq!(
            read_to_close(&mut s),
            vec![0x20, 0x02, 0x00, 0x01],
            "level {level}"
        );
    }

    // A malformed fixed header (reserved packet type 0, PUBREL flags).
    expect_disconnect(&server, &[0x00, 0x00], &[0x81, 0x82]);
    expect_disconnect(&server, &[0x60, 0x02, 0x00, 0x01], &[0x81]);
    // Remaining length longer than 4 bytes.
    expect_disconnect(&server, &[0x30, 0xff, 0xff, 0xff, 0xff, 0x7f], &[0x81]);
    // Larger than the maximum packet size: refused on the header alone.
    expect_disconnect(&server, &[0x30, 0xd0, 0x0f], &[0x95]);
    // Invalid UTF-8 and a NUL in a topic.
    expect_disconnect(
        &server,
        &[0x30, 0x05, 0x00, 0x01, 0xff, 0x00, b'x'],
        &[0x81],
    );
    expect_disconnect(
        &server,
        &[0x30, 0x06, 0x00, 0x02, b'a', 0x00, 0x00, b'x'],
        &[0x81],
    );
    // Wildcards in a PUBLISH topic.
    expect_disconnect(
        &server,
        &[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'+', 0x00],
        &[0x90],
    );
    expect_disconnect(&server, &[0x30, 0x04, 0x00, 0x01, b'#', 0x00], &[0x90]);
    // Packet id 0 with QoS 1.
    expect_disconnect(
        &server,
        &[0x32, 0x07, 0x00, 0x01, b't', 0x00, 0x00, 0x00, b'x'],
        &[0x82],
    );
    // A PUBLISH from a client with a subscription identifier (0x0b = 1).
    expect_disconnect(
        &server,
        &[0x30, 0x07, 0x00, 0x01, b't', 0x02, 0x0b, 0x01, b'x'],
        &[0x82],
    );
    // A second CONNECT.
    expect_disconnect(&server, CONNECT_V5, &[0x82]);
    // AUTH without an authentication method.
    expect_disconnect(&server, &[0xf0, 0x02, 0x00, 0x00], &[0x82]);

    // MQTT 3.1.1 has no DISCONNECT from the server: just closed.
    let mut s = dial(&server);
    s.write_all(CONNECT_V311).unwrap();
    assert_eq!(read_packet(&mut s), (0x20, vec![0x00, 0x00]));
    s.write_all(&[0x30, 0x06, 0x00, 0x03, b'a', b'/', b'#', b'x'])
        .unwrap();
    assert_eq!(read_to_close(&mut s), Vec::<u8>::new());

    // A flood of unacknowledged QoS 2 beyond the receive maximum (1024).
    let mut s = connected_v5(&server);
    let mut flood = Vec::new();
    for id in 1u16..=1100 {
        let [hi, lo] = id.to_be_bytes();
        flood.extend_from_slice(&[0x34, 0x08, 0x00, 0x02, b'q', b'2', hi, lo, 0x00, b'x']);
    }
    s.write_all(&flood).unwrap();
    let rest = read_to_close(&mut s);
    let answers = packets(&rest);
    assert_eq!(
        answers.last().map(|(k, b)| (*k, b.first().copied())),
        Some((0xe0, Some(0x93))),
        "receive maximum exceeded"
    );

    healthy(&server);
    // Only whole, valid publishes reached the log: the healthy client's,
    // and the QoS 2 messages acknowledged before the flood went too far.
    let out = server.ok(&["consume", "mqtt", "--from-beginning", "--print-key"]);
    for line in out.lines() {
        assert!(
            line.starts_with("ok\t") || line.starts_with("q2\t"),
            "unexpected record {line:?}"
        );
    }
    assert!(out.lines().any(|l| l == "ok\tfine"), "{out}");
    let acked = answers.iter().filter(|(k, _)| *k == 0x50).count();
    let stored = out.lines().filter(|l| l.starts_with("q2\t")).count();
    assert_eq!(
        stored, acked,
        "every PUBREC'd message, and only those, is stored"
    );
}
