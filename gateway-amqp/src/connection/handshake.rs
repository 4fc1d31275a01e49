//! The start of a connection: connection.start, tune and open.

use super::*;

pub(super) fn server_properties() -> FieldTable {
    let mut caps = FieldTable::new();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "per_consumer_qos",
        "authentication_failure_close",
    ] {
        caps.insert(c, FieldValue::Bool(true));
    }
    let mut t = FieldTable::new();
    let text = |s: &str| FieldValue::LongString(Bytes::from(s.to_string().into_bytes()));
    t.insert("product", text("Fjord"));
    t.insert("version", text(env!("CARGO_PKG_VERSION")));
    t.insert("platform", text("Rust"));
    t.insert("capabilities", FieldValue::Table(caps));
    t
}

pub(super) fn write_method(out: &mut BytesMut, channel: u16, m: Method) {
    let _ = codec::encode_frame(
        &Frame {
            channel,
            payload: FramePayload::Method(m),
        },
        out,
    );
}

/// start/start-ok, tune/tune-ok, open/open-ok. `None`: the client was
/// refused or went away.
pub(super) async fn handshake<S>(
    gw: &Inner,
    io: &mut S,
    rbuf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> Option<(String, Tune, bool)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut out = BytesMut::new();
    write_method(
        &mut out,
        0,
        Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: Bytes::from_static(b"PLAIN AMQPLAIN"),
            locales: Bytes::from_static(b"en_US"),
        }),
    );
    io.write_all(&out).await.ok()?;
    out.clear();
    let next = async |rbuf: &mut BytesMut, io: &mut S| -> Option<Method> {
        loop {
            match codec::decode_frame(rbuf, codec::FRAME_MIN_SIZE) {
                Ok(Some(Frame {
                    payload: FramePayload::Method(m),
                    ..
                })) => return Some(m),
                Ok(Some(_)) => return None,
                Ok(None) => {}
                Err(e) => {
                    debug!("bad frame in handshake: {e}");
                    return None;
                }
            }
            match tokio::time::timeout_at(deadline, io.read_buf(rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    };
    let Method::ConnectionStartOk(ok) = next(rbuf, io).await? else {
        return None;
    };
    let creds = match ok.mechanism.as_str() {
        "PLAIN" => codec::parse_plain(&ok.response),
        "AMQPLAIN" => codec::parse_amqplain(&ok.response),
        _ => None,
    };
    let allowed = match &creds {
        Some((user, pass)) if gw.config.allow_guest && user == "guest" && pass == "guest" => true,
        Some((user, pass)) => gw.broker.authenticate(user, pass.as_bytes()).is_some(),
        None => false,
    };
    if !allowed {
        let text = format!(
            "ACCESS_REFUSED - Login was refused using authentication mechanism {}",
            ok.mechanism
        );
        write_method(
            &mut out,
            0,
            Method::ConnectionClose(Close {
                reply_code: reply::ACCESS_REFUSED,
                reply_text: text,
                class_id: class::CONNECTION,
                method_id: 11,
            }),
        );
        let _ = io.write_all(&out).await;
        return None;
    }
    let offered = Tune {
        channel_max: gw.config.channel_max,
        frame_max: gw.config.frame_max,
        heartbeat: gw.config.heartbeat,
    };
    write_method(&mut out, 0, Method::ConnectionTune(offered));
    io.write_all(&out).await.ok()?;
    out.clear();
    let Method::ConnectionTuneOk(asked) = next(rbuf, io).await? else {
        return None;
    };
    let pick = |asked: u32, offered: u32| match (asked, offered) {
        (0, o) => o,
        (a, 0) => a,
        (a, o) => a.min(o),
    };
    let tune = Tune {
        channel_max: u16::try_from(pick(
            u32::from(asked.channel_max),
            u32::from(offered.channel_max),
        ))
        .unwrap_or(offered.channel_max),
        frame_max: pick(asked.frame_max, offered.frame_max).max(codec::FRAME_MIN_SIZE),
        heartbeat: asked.heartbeat,
    };
    let Method::ConnectionOpen(open) = next(rbuf, io).await? else {
        return None;
    };
    if !gw.has_vhost(&open.virtual_host).await {
        write_method(
            &mut out,
            0,
            Method::ConnectionClose(Close {
                reply_code: reply::NOT_ALLOWED,
                reply_text: format!("NOT_ALLOWED - vhost {} not found", open.virtual_host),
                class_id: class::CONNECTION,
                method_id: 40,
            }),
        );
        let _ = io.write_all(&out).await;
        return None;
    }
    write_method(&mut out, 0, Method::ConnectionOpenOk);
    io.write_all(&out).await.ok()?;
    let hears_blocked = matches!(
        ok.client_properties.get("capabilities"),
        Some(FieldValue::Table(caps)) if caps.get("connection.blocked") == Some(&FieldValue::Bool(true))
    );
    Some((open.virtual_host, tune, hears_blocked))
}
