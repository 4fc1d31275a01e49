//! MQTT over WebSocket: binary frames carry the MQTT byte stream (MQTT 5.0
//! section 6). The `mqtt` subprotocol is accepted; any path is.
//!
//! The WebSocket is bridged to an in-memory duplex pipe so the connection
//! code sees one byte stream whatever the transport.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tracing::debug;

use crate::connection;
use crate::hub::Hub;

pub(crate) async fn serve(gw: Arc<Hub>, stream: TcpStream) {
    // The error type is tungstenite's, boxed or not.
    #[allow(clippy::result_large_err)]
    let pick_subprotocol = |req: &Request, mut resp: Response| {
        let wants_mqtt = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "mqtt"));
        if wants_mqtt {
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(resp)
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, pick_subprotocol).await {
        Ok(ws) => ws,
        Err(e) => {
            debug!("WebSocket handshake failed: {e}");
            return;
        }
    };
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut sink, mut source) = ws.split();
    let (mut pipe_read, mut pipe_write) = tokio::io::split(theirs);
    let inbound = async move {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                WsMessage::Binary(data) if pipe_write.write_all(&data).await.is_err() => break,
                WsMessage::Binary(_) => {}
                WsMessage::Close(_) => break,
                _ => {}
            }
        }
        let _ = pipe_write.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = WsMessage::Binary(buf[..n].to_vec().into());
                    if sink.send(frame).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    let bridge = tokio::spawn(async move {
        tokio::join!(inbound, outbound);
    });
    connection::serve(gw, ours).await;
    let _ = bridge.await;
}
