//! The tx class (90): select, commit, rollback.
//!
//! A transactional channel holds its publishes and acknowledgements back
//! until commit (all appended, then all settled) or rollback (dropped).

use crate::codec::{Method, reply};
use crate::refusal::{Answer, Refusal};

use super::super::publish::append_all;
use super::super::{Channel, Conn};
use super::settle_ack;

impl Conn {
    /// tx.select, commit and rollback.
    pub(super) async fn tx_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::TxSelect => {
                let ch = self.channel_mut(channel)?;
                if ch.confirm {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                    ));
                }
                ch.tx = true;
                self.send(channel, Method::TxSelectOk);
                Ok(())
            }
            Method::TxCommit => self.tx_commit(channel).await,
            Method::TxRollback => {
                let ch = transactional(self.channel_mut(channel)?)?;
                ch.tx_publishes.clear();
                ch.tx_acks.clear();
                self.send(channel, Method::TxRollbackOk);
                Ok(())
            }
            other => self.not_from_client(channel, &other),
        }
    }

    /// Appends the transaction's publishes, then settles its
    /// acknowledgements.
    async fn tx_commit(&mut self, channel: u16) -> Answer<()> {
        let ch = transactional(self.channel_mut(channel)?)?;
        let publishes = std::mem::take(&mut ch.tx_publishes);
        let acks = std::mem::take(&mut ch.tx_acks);
        self.flush_publishes().await;
        let failed = append_all(&self.gw, &publishes).await;
        if !failed.is_empty() {
            return Err(Refusal::new(
                reply::INTERNAL_ERROR,
                "INTERNAL_ERROR - the transaction's messages could not all be stored",
            ));
        }
        self.answer_publishes(publishes, &failed);
        let ch = self.channel_mut(channel)?;
        for a in acks {
            settle_ack(ch, a)?;
        }
        self.send(channel, Method::TxCommitOk);
        Ok(())
    }
}

/// The channel, if it is transactional (406 PRECONDITION_FAILED if not).
fn transactional(ch: &mut Channel) -> Answer<&mut Channel> {
    if !ch.tx {
        return Err(Refusal::new(
            reply::PRECONDITION_FAILED,
            "PRECONDITION_FAILED - channel is not transactional",
        ));
    }
    Ok(ch)
}
