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
    gw: &Engine,
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
    // The next method on channel 0 (heartbeats skipped). A bad frame, or
    // another frame, is answered with connection.close before the socket
    // closes, as on an open connection.
    let next = async |rbuf: &mut BytesMut, io: &mut S| -> Option<Method> {
        loop {
            let refusal = match codec::decode_frame(rbuf, codec::FRAME_MIN_SIZE) {
                Ok(Some(Frame {
                    channel: 0,
                    payload: FramePayload::Method(m),
                })) => return Some(m),
                Ok(Some(Frame {
                    payload: FramePayload::Heartbeat,
                    ..
                })) => continue,
                Ok(Some(f)) => (
                    reply::COMMAND_INVALID,
                    format!(
                        "COMMAND_INVALID - a frame on channel {} before the connection is open",
                        f.channel
                    ),
                    0,
                    0,
                ),
                Ok(None) => match tokio::time::timeout_at(deadline, io.read_buf(rbuf)).await {
                    Ok(Ok(n)) if n > 0 => continue,
                    _ => return None,
                },
                Err(e) => {
                    debug!("bad frame in handshake: {e}");
                    let (class_id, method_id) = e.method_ids();
                    (e.reply_code(), frame_text(&e), class_id, method_id)
                }
            };
            let (reply_code, reply_text, class_id, method_id) = refusal;
            close_now(io, reply_code, reply_text, class_id, method_id).await;
            return None;
        }
    };
    let m = next(rbuf, io).await?;
    let Method::ConnectionStartOk(ok) = m else {
        return unexpected(io, "connection.start-ok", &m).await;
    };
    let creds = match ok.mechanism.as_str() {
        "PLAIN" => codec::parse_plain(&ok.response),
        "AMQPLAIN" => codec::parse_amqplain(&ok.response),
        _ => None,
    };
    let allowed = match &creds {
        Some((user, pass)) if gw.config.allow_guest && user == "guest" && pass == "guest" => true,
        Some((user, pass)) => gw
            .broker
            .admin()
            .authenticate(user, pass.as_bytes())
            .is_some(),
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
    let m = next(rbuf, io).await?;
    let Method::ConnectionTuneOk(asked) = m else {
        return unexpected(io, "connection.tune-ok", &m).await;
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
    let m = next(rbuf, io).await?;
    let Method::ConnectionOpen(open) = m else {
        return unexpected(io, "connection.open", &m).await;
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

/// Sends connection.close (the handshake is over: the socket closes next).
async fn close_now<S>(
    io: &mut S,
    reply_code: u16,
    reply_text: String,
    class_id: u16,
    method_id: u16,
) where
    S: AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    write_method(
        &mut out,
        0,
        Method::ConnectionClose(Close {
            reply_code,
            reply_text,
            class_id,
            method_id,
        }),
    );
    let _ = io.write_all(&out).await;
}

/// Another method than the handshake's next: 503 COMMAND_INVALID.
async fn unexpected<S, T>(io: &mut S, expected: &str, got: &Method) -> Option<T>
where
    S: AsyncWrite + Unpin,
{
    let text = format!(
        "COMMAND_INVALID - expected '{expected}', got '{}'",
        got.name()
    );
    close_now(
        io,
        reply::COMMAND_INVALID,
        text,
        got.class_id(),
        got.method_id(),
    )
    .await;
    None
}
