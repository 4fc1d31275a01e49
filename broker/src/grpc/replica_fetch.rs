//! `ReplicaService.Fetch`, answered without copying the records.
//!
//! The generated service encodes each response into one buffer, which copies
//! every replicated byte once more on the leader (and allocates a buffer the
//! size of the fetch). Here the leader writes each response as two pieces of
//! one gRPC message: a small head (the message's other fields and the
//! records field's key and length) and the records themselves, which point
//! into the segment's mapping. On the wire it is the same message; the
//! follower's generated client reads it as any other.
//!
//! Every other method of the service goes to the generated server.

use std::convert::Infallible;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use fjord_proto::v1 as pb;
use fjord_proto::v1::replica_service_server::ReplicaServiceServer;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Streaming};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use fjord_proto::MAX_MESSAGE;

use super::cluster::{Replica, check_cluster};
use crate::Broker;
use crate::replica::FETCH_PATH;

/// The field number of `ReplicaFetchResponse.records`.
const RECORDS_FIELD: u32 = 3;

/// The replica service, with `Fetch` answered here.
#[derive(Clone)]
pub(crate) struct ReplicaRoutes {
    broker: Broker,
    generated: ReplicaServiceServer<Replica>,
}

impl ReplicaRoutes {
    pub(crate) fn new(broker: Broker) -> ReplicaRoutes {
        ReplicaRoutes {
            generated: ReplicaServiceServer::new(Replica(broker.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            broker,
        }
    }
}

impl NamedService for ReplicaRoutes {
    const NAME: &'static str = <ReplicaServiceServer<Replica> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for ReplicaRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == FETCH_PATH {
            let response = fetch(self.broker.clone(), request);
            Box::pin(async move { Ok(response) })
        } else {
            let mut generated = self.generated.clone();
            Box::pin(async move { generated.call(request).await })
        }
    }
}

/// Answers a follower's fetch stream: one response per request, until the
/// follower ends the stream (or it breaks).
fn fetch(broker: Broker, request: http::Request<Body>) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
    let check = tonic::Request::from_parts(metadata, parts.extensions, ());
    if let Err(status) = check_cluster(&broker, &check) {
        return status.into_http();
    }
    let mut inbound = Streaming::<pb::ReplicaFetchRequest>::new_request(
        tonic_prost::ProstDecoder::new(BufferSettings::default()),
        body,
        None,
        Some(MAX_MESSAGE),
    );
    let frames = async_stream::stream! {
        let status = loop {
            match inbound.message().await {
                Ok(Some(r)) => {
                    let (head, records) = message(broker.parts().replicas.answer_replica_fetch(r).await);
                    yield Ok::<_, Status>(Frame::data(head));
                    if !records.is_empty() {
                        yield Ok(Frame::data(records));
                    }
                }
                Ok(None) => break Status::ok(""),
                Err(status) => break status,
            }
        };
        let mut trailers = http::HeaderMap::new();
        if let Err(e) = status.add_header(&mut trailers) {
            tracing::debug!("replica fetch trailers: {e}");
        }
        yield Ok(Frame::trailers(trailers));
    };
    let mut response = http::Response::new(Body::new(StreamBody::new(frames)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// `response` as one uncompressed gRPC message in two pieces: the prefix
/// and every field but the records, then the records as they are.
fn message(mut response: pb::ReplicaFetchResponse) -> (Bytes, Bytes) {
    let records = std::mem::take(&mut response.records);
    let mut head = BytesMut::with_capacity(5 + response.encoded_len() + 16);
    head.put_u8(0); // not compressed
    head.put_u32(0); // the length, below
    response.encode_raw(&mut head);
    if !records.is_empty() {
        prost::encoding::encode_key(
            RECORDS_FIELD,
            prost::encoding::WireType::LengthDelimited,
            &mut head,
        );
        prost::encoding::encode_varint(records.len() as u64, &mut head);
    }
    let len = (head.len() - 5 + records.len()) as u32;
    head[1..5].copy_from_slice(&len.to_be_bytes());
    (head.freeze(), records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(response: pb::ReplicaFetchResponse) {
        let (head, records) = message(response.clone());
        let mut wire = head.to_vec();
        wire.extend_from_slice(&records);
        assert_eq!(wire[0], 0, "not compressed");
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(len, wire.len() - 5);
        let decoded = pb::ReplicaFetchResponse::decode(&wire[5..]).expect("a valid message");
        assert_eq!(decoded, response);
    }

    #[test]
    fn the_two_pieces_make_the_generated_message() {
        round_trip(pb::ReplicaFetchResponse {
            error: pb::ReplicaError::ReplicaNone as i32,
            message: String::new(),
            records: Bytes::from(vec![7u8; 300_000]),
            high_watermark: 42,
            log_start_offset: 3,
            diverging_end_offset: -1,
        });
        // Nothing to send yet, and an error answer.
        round_trip(pb::ReplicaFetchResponse {
            high_watermark: 9,
            diverging_end_offset: -1,
            ..Default::default()
        });
        round_trip(pb::ReplicaFetchResponse {
            error: pb::ReplicaError::ReplicaDiverging as i32,
            message: "truncate to 12".into(),
            diverging_end_offset: 12,
            ..Default::default()
        });
    }
}
