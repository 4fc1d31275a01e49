//! The gRPC services of `fjord-proto` over the [`Broker`] handle.
//!
//! One file per service; `status.rs` holds the one mapping from the broker's
//! [`crate::Error`] to `tonic::Status`.

mod cluster;
mod fetch;
mod groups;
mod health;
mod produce;
mod replica_fetch;
mod status;
mod topics;
mod users;

use fjord_proto::v1::cluster_service_server::ClusterServiceServer;
use fjord_proto::v1::fetch_service_server::FetchServiceServer;
use fjord_proto::v1::group_service_server::GroupServiceServer;
use fjord_proto::v1::health_service_server::HealthServiceServer;
use fjord_proto::v1::produce_service_server::ProduceServiceServer;
use fjord_proto::v1::topic_service_server::TopicServiceServer;
use fjord_proto::v1::user_service_server::UserServiceServer;
use tokio_stream::wrappers::TcpListenerStream;

use crate::Broker;

use fjord_proto::MAX_MESSAGE;

/// Accepted connections with `TCP_NODELAY` set: the server's own
/// `tcp_nodelay` applies only to listeners it binds itself, and without it
/// small responses (a long-poll fetch waking up) wait for Nagle's timer.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        conn
    })
}

/// Serves the gRPC API of `fjord-proto` for `broker` on an already-bound
/// listener until `shutdown` completes, with the services of `extra` (those
/// implemented outside the broker, such as a gateway's admin service;
/// `Routes::default()` for none) beside the broker's own.
///
/// # Errors
/// The transport failed (the listener broke).
pub async fn serve_grpc(
    broker: Broker,
    listener: tokio::net::TcpListener,
    extra: tonic::service::Routes,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (raft, metadata) = broker.parts().quorum.node.services();
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Large produce requests and replica fetches: a 64 KiB HTTP/2
        // window would cost round trips per request.
        .initial_stream_window_size(crate::quorum::WINDOW)
        .initial_connection_window_size(crate::quorum::WINDOW * 2)
        .max_frame_size(crate::quorum::FRAME)
        .add_routes(extra)
        .add_service(raft)
        .add_service(metadata)
        .add_service(ClusterServiceServer::new(cluster::Cluster(broker.clone())))
        .add_service(replica_fetch::ReplicaRoutes::new(broker.clone()))
        .add_service(
            TopicServiceServer::new(topics::Topics(broker.clone()))
                .max_decoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ProduceServiceServer::new(produce::Produce(broker.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            FetchServiceServer::new(fetch::Fetch(broker.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(GroupServiceServer::new(groups::Groups(broker.clone())))
        .add_service(UserServiceServer::new(users::Users(broker.clone())))
        .add_service(HealthServiceServer::new(health::Health(broker)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}
