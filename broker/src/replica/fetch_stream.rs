//! A follower's end of `ReplicaService.Fetch`, read without copying the
//! records.
//!
//! The generated client gathers each response into one buffer before
//! decoding it, a copy of every replicated byte. This reads the HTTP/2
//! frames as they arrive and decodes each message straight from them: the
//! records of a response come out as a slice of the frame that carried them
//! (the leader sends them in a frame of their own; see
//! `grpc::replica_fetch`). A message whose records straddle frames is
//! gathered with one copy, as before.

use std::collections::VecDeque;
use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_proto::v1 as pb;
use fjord_raft::CLUSTER_ID_HEADER;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::transport::Channel;

use fjord_proto::MAX_MESSAGE;

/// The HTTP/2 path of `ReplicaService.Fetch`.
pub(crate) const FETCH_PATH: &str = "/fjord.v1.ReplicaService/Fetch";

/// An open fetch stream to a partition's leader.
pub(super) struct FetchStream {
    requests: mpsc::Sender<Bytes>,
    body: Body,
    chunks: Chunks,
    /// The length of the message being read, once its prefix is.
    length: Option<usize>,
}

impl FetchStream {
    /// Opens a stream to the node behind `channel` and sends `first`.
    pub(super) async fn open(
        mut channel: Channel,
        cluster_id: &str,
        first: &pb::ReplicaFetchRequest,
    ) -> Result<FetchStream, String> {
        let (requests, rx) = mpsc::channel::<Bytes>(1);
        requests
            .send(frame(first))
            .await
            .map_err(|e| e.to_string())?;
        let frames = ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(FETCH_PATH)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(CLUSTER_ID_HEADER, cluster_id)
            .body(Body::new(StreamBody::new(frames)))
            .map_err(|e| e.to_string())?;
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(|e| e.to_string())?;
        let response = channel.call(request).await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("the leader answered HTTP {}", response.status()));
        }
        // An error before any message comes as headers alone.
        if let Some(status) = tonic::Status::from_header_map(response.headers())
            && status.code() != tonic::Code::Ok
        {
            return Err(status.message().to_string());
        }
        Ok(FetchStream {
            requests,
            body: response.into_body(),
            chunks: Chunks::default(),
            length: None,
        })
    }

    /// Sends the next fetch.
    pub(super) async fn send(&mut self, request: &pb::ReplicaFetchRequest) -> Result<(), String> {
        self.requests
            .send(frame(request))
            .await
            .map_err(|_| "the fetch stream is closed".to_string())
    }

    /// The next response.
    pub(super) async fn message(&mut self) -> Result<pb::ReplicaFetchResponse, String> {
        loop {
            if let Some(message) = self.decode()? {
                return Ok(message);
            }
            let frame = match self.body.frame().await {
                None => return Err("the leader ended the stream".into()),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => frame,
            };
            match frame.into_data() {
                Ok(data) => self.chunks.push(data),
                Err(frame) => {
                    let status = frame
                        .into_trailers()
                        .ok()
                        .and_then(|t| tonic::Status::from_header_map(&t));
                    return Err(match status {
                        Some(s) if s.code() != tonic::Code::Ok => s.message().to_string(),
                        _ => "the leader ended the stream".into(),
                    });
                }
            }
        }
    }

    /// A whole message from the frames read so far, if there is one.
    fn decode(&mut self) -> Result<Option<pb::ReplicaFetchResponse>, String> {
        let length = match self.length {
            Some(length) => length,
            None if self.chunks.remaining() >= 5 => {
                if self.chunks.get_u8() != 0 {
                    return Err("the leader sent a compressed message".into());
                }
                let length = self.chunks.get_u32() as usize;
                if length > MAX_MESSAGE {
                    return Err(format!("a {length}-byte message is too large"));
                }
                self.length = Some(length);
                length
            }
            None => return Ok(None),
        };
        if self.chunks.remaining() < length {
            return Ok(None);
        }
        self.length = None;
        pb::ReplicaFetchResponse::decode((&mut self.chunks).take(length))
            .map(Some)
            .map_err(|e| format!("a bad fetch response: {e}"))
    }
}

/// `request` as one uncompressed gRPC message.
fn frame(request: &pb::ReplicaFetchRequest) -> Bytes {
    let len = request.encoded_len();
    let mut buf = BytesMut::with_capacity(5 + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    request.encode_raw(&mut buf);
    buf.freeze()
}

/// The frames read and not yet decoded, as one buffer. Taking bytes that
/// lie in one frame slices it; only a run across frames is copied.
#[derive(Debug, Default)]
struct Chunks {
    list: VecDeque<Bytes>,
    len: usize,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.len += data.len();
            self.list.push_back(data);
        }
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.list.front().map_or(&[], |c| &c[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of the frames read");
        self.len -= cnt;
        while cnt > 0 {
            let Some(front) = self.list.front_mut() else {
                break;
            };
            if cnt < front.len() {
                front.advance(cnt);
                break;
            }
            cnt -= front.len();
            self.list.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        if let Some(front) = self.list.front_mut()
            && front.len() >= len
        {
            let out = front.split_to(len);
            if front.is_empty() {
                self.list.pop_front();
            }
            self.len -= len;
            return out;
        }
        let mut out = BytesMut::with_capacity(len);
        out.put((&mut *self).take(len));
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(records: usize) -> pb::ReplicaFetchResponse {
        pb::ReplicaFetchResponse {
            records: Bytes::from((0..records).map(|i| i as u8).collect::<Vec<_>>()),
            high_watermark: 77,
            diverging_end_offset: -1,
            ..Default::default()
        }
    }

    fn wire(r: &pb::ReplicaFetchResponse) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(r.encoded_len() as u32).to_be_bytes());
        out.extend_from_slice(&r.encode_to_vec());
        out
    }

    /// Feeds `bytes` cut at `cuts` and decodes every message.
    fn decode_all(bytes: &[u8], cuts: &[usize]) -> Vec<pb::ReplicaFetchResponse> {
        let mut s = Chunks::default();
        let mut at = 0;
        for cut in cuts.iter().copied().chain([bytes.len()]) {
            s.push(Bytes::copy_from_slice(&bytes[at..cut]));
            at = cut;
        }
        let (tx, _rx) = mpsc::channel(1);
        let mut stream = FetchStream {
            requests: tx,
            body: Body::empty(),
            chunks: s,
            length: None,
        };
        let mut out = Vec::new();
        while let Some(m) = stream.decode().expect("valid messages") {
            out.push(m);
        }
        assert_eq!(stream.chunks.remaining(), 0, "all consumed");
        out
    }

    #[test]
    fn messages_decode_however_the_frames_cut_them() {
        let (a, b) = (response(1000), response(0));
        let mut bytes = wire(&a);
        bytes.extend(wire(&b));
        for cuts in [
            vec![],
            vec![3],
            vec![5],
            vec![20],
            vec![500],
            vec![wire(&a).len()],
            vec![1, 2, 3, 4, 600, wire(&a).len() + 2],
        ] {
            assert_eq!(
                decode_all(&bytes, &cuts),
                vec![a.clone(), b.clone()],
                "{cuts:?}"
            );
        }
    }

    #[test]
    fn records_in_a_frame_of_their_own_are_not_copied() {
        let mut chunks = Chunks::default();
        let records = Bytes::from(vec![9u8; 4096]);
        chunks.push(Bytes::from_static(b"head"));
        chunks.push(records.clone());
        chunks.advance(4);
        let out = chunks.copy_to_bytes(4096);
        assert_eq!(out.as_ptr(), records.as_ptr(), "a slice of the frame");
        assert_eq!(chunks.remaining(), 0);
    }

    #[test]
    fn a_compressed_or_oversized_message_is_refused() {
        let (tx, _rx) = mpsc::channel(1);
        let mut stream = FetchStream {
            requests: tx,
            body: Body::empty(),
            chunks: Chunks::default(),
            length: None,
        };
        stream.chunks.push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]));
        assert!(stream.decode().is_err());
        stream.chunks = Chunks::default();
        stream.length = None;
        stream
            .chunks
            .push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]));
        assert!(stream.decode().is_err());
    }
}
