//! The openraft type configuration: what the metadata log carries.

use std::io::Cursor;

use crate::metadata::{MetadataRequest, MetadataResponse};

openraft::declare_raft_types!(
    /// Fjord's Raft types: metadata commands in, outcomes out; node ids are
    /// broker ids, nodes carry their gRPC address.
    pub TypeConfig:
        D = MetadataRequest,
        R = MetadataResponse,
);

/// A Raft log entry of the metadata log.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id (leader id + index) of the metadata log.
pub type LogId = openraft::LogId<u64>;
/// Errors the storage traits return.
pub type StorageError = openraft::StorageError<u64>;
