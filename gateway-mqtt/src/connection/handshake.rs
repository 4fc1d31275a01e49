//! The start of a connection: reading CONNECT (within the connect
//! timeout), deciding whether it may go on (client id, authentication,
//! will authorization), and the CONNACK.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::auth::{Action, Principal};
use crate::codec::{self, ConnAck, Connect, DecodeError, Packet, Properties, Protocol, reason};
use crate::hub::{Hub, now_ms};

pub(super) async fn write_raw<S: AsyncWrite + Unpin>(io: &mut S, bytes: &[u8]) {
    let _ = io.write_all(bytes).await;
    let _ = io.flush().await;
}

pub(super) async fn write_packet<S: AsyncWrite + Unpin>(io: &mut S, p: Packet, protocol: Protocol) {
    let mut buf = BytesMut::new();
    if codec::encode(&p, protocol, &mut buf, usize::MAX).is_ok() {
        write_raw(io, &buf).await;
    }
}

/// Reads the first packet, which must be CONNECT.
pub(super) async fn read_connect<S>(gw: &Hub, io: &mut S, rbuf: &mut BytesMut) -> Option<Connect>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + gw.config.connect_timeout;
    loop {
        match codec::decode(rbuf, None, gw.config.max_packet_size) {
            Ok(Some(Packet::Connect(c))) => return Some(c),
            Ok(Some(other)) => {
                debug!("first packet is not CONNECT: {other:?}");
                return None;
            }
            Ok(None) => {}
            Err(DecodeError::UnsupportedProtocol { level }) => {
                debug!(level, "unsupported protocol level");
                // 3.1.1's "unacceptable protocol version", which every
                // client version can read.
                write_raw(io, &[0x20, 0x02, 0x00, reason::V3_UNACCEPTABLE_PROTOCOL]).await;
                return None;
            }
            Err(DecodeError::Incomplete(_)) => {}
            Err(e) => {
                debug!("bad CONNECT: {e}");
                return None;
            }
        }
        let read = tokio::select! {
            r = io.read_buf(rbuf) => r,
            _ = tokio::time::sleep_until(deadline) => return None,
            _ = gw.shutdown.cancelled() => return None,
        };
        match read {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

pub(super) fn connack(
    protocol: Protocol,
    session_present: bool,
    code: u8,
    properties: Properties,
) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        reason_code: code,
        properties: if protocol == Protocol::V5 {
            properties
        } else {
            Properties::default()
        },
    })
}

/// Decides whether a CONNECT may go on: its client id (assigned when
/// empty), and who the client is. `Err` is the CONNACK code refusing it.
pub(super) fn admit(
    gw: &Hub,
    connect: &Connect,
) -> Result<(String, Option<String>, Principal), u8> {
    let v5 = connect.protocol == Protocol::V5;
    let refuse = |v5_code: u8, v3_code: u8| if v5 { v5_code } else { v3_code };
    // Extended authentication is not offered.
    if connect.properties.authentication_method.is_some() {
        return Err(refuse(
            reason::BAD_AUTHENTICATION_METHOD,
            reason::V3_NOT_AUTHORIZED,
        ));
    }
    let mut client_id = connect.client_id.clone();
    let mut assigned = None;
    if client_id.is_empty() {
        if !v5 && !connect.clean_start {
            return Err(reason::V3_IDENTIFIER_REJECTED);
        }
        client_id = format!("fjord-{:x}-{}", now_ms(), gw.next_id());
        assigned = Some(client_id.clone());
    }
    let user = match &connect.username {
        Some(name) => {
            let password = connect.password.clone().unwrap_or_default();
            let user = gw
                .broker
                .admin()
                .authenticate(name, &password)
                .ok_or(refuse(
                    reason::BAD_USER_NAME_OR_PASSWORD,
                    reason::V3_BAD_USERNAME_PASSWORD,
                ))?;
            Some(user)
        }
        None if gw.config.allow_anonymous => None,
        None => return Err(refuse(reason::NOT_AUTHORIZED, reason::V3_NOT_AUTHORIZED)),
    };
    let principal = Principal {
        client_id: client_id.clone(),
        user,
    };
    if let Some(w) = &connect.will
        && !principal.allows(Action::Publish, &w.topic)
    {
        return Err(refuse(reason::NOT_AUTHORIZED, reason::V3_NOT_AUTHORIZED));
    }
    Ok((client_id, assigned, principal))
}
