//! The one place the broker's errors become gRPC status codes.

use tonic::{Code, Status};

use crate::Error;
use crate::router::ERROR_KIND;

/// Maps a broker error to a status; out-of-range carries the valid range in
/// the metadata keys `fjord-earliest-offset` and `fjord-latest-offset`.
pub(crate) fn to_status(e: Error) -> Status {
    let code = match &e {
        Error::UnknownTopic(_)
        | Error::UnknownPartition { .. }
        | Error::UnknownUser(_)
        | Error::UnknownGroup(_) => Code::NotFound,
        Error::TopicExists(_) => Code::AlreadyExists,
        Error::InvalidRequest(_) | Error::InvalidBatch { .. } => Code::InvalidArgument,
        Error::OffsetOutOfRange { .. } => Code::OutOfRange,
        Error::Storage { .. } if e.is_disk_full() => Code::ResourceExhausted,
        Error::Storage { .. } | Error::Metadata(_) => Code::Internal,
        Error::UnknownMember { .. }
        | Error::IllegalGeneration { .. }
        | Error::Sequence { .. }
        | Error::GroupNotEmpty { .. } => Code::FailedPrecondition,
        Error::ShuttingDown
        | Error::NotLeader { .. }
        | Error::LeaderNotReady { .. }
        | Error::NotEnoughReplicas { .. }
        | Error::NoQuorum(_) => Code::Unavailable,
        Error::Timeout(_) => Code::DeadlineExceeded,
        Error::Cluster(_) => Code::FailedPrecondition,
    };
    let mut status = Status::new(code, e.to_string());
    // Nodes forwarding a gateway's request tell these refusals (nothing
    // was done; retry on the leader) from other unavailability.
    let kind = match &e {
        Error::NotLeader { .. } => Some("not-leader"),
        Error::LeaderNotReady { .. } => Some("leader-not-ready"),
        _ => None,
    };
    if let Some(kind) = kind
        && let Ok(v) = kind.parse()
    {
        status.metadata_mut().insert(ERROR_KIND, v);
    }
    if let Error::NotLeader {
        leader: Some((id, addr)),
        ..
    } = &e
    {
        let md = status.metadata_mut();
        if let Ok(v) = id.to_string().parse() {
            md.insert("fjord-leader-id", v);
        }
        if let Ok(v) = addr.parse() {
            md.insert("fjord-leader-address", v);
        }
    }
    if let Error::OffsetOutOfRange {
        earliest, latest, ..
    } = e
    {
        let md = status.metadata_mut();
        if let Ok(v) = earliest.to_string().parse() {
            md.insert("fjord-earliest-offset", v);
        }
        if let Ok(v) = latest.to_string().parse() {
            md.insert("fjord-latest-offset", v);
        }
    }
    status
}

pub(crate) type GrpcResult<T> = Result<tonic::Response<T>, Status>;
