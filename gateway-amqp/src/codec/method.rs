//! Methods (0-9-1 §4.2.4): the payload of a method frame, one enum variant
//! per method of the classes a broker speaks.
//!
//! # Format
//!
//! ```text
//!  short class-id, short method-id, then the method's arguments in order
//!  (drawn in the class's file: connection.rs, channel.rs, exchange.rs,
//!  queue.rs, basic.rs, confirm.rs; tx methods have none)
//! ```
//!
//! # Invariants
//!
//! - A (class, method) pair not listed here is
//!   [`DecodeError::UnknownMethod`]; that includes the access class (30),
//!   gone from 0-9-1.
//! - The arguments must fill the payload exactly: trailing bytes are
//!   [`DecodeError::Malformed`].
//! - Reserved arguments (the `ticket` shorts, connection.open's
//!   capabilities and insist, channel.open's out-of-band, ...) are read past
//!   and written as zero or empty; no type carries them.

use bytes::Bytes;

use super::arguments::Arguments;
use super::basic::{
    BasicAck, BasicCancel, BasicCancelOk, BasicConsume, BasicConsumeOk, BasicDeliver, BasicGet,
    BasicGetOk, BasicNack, BasicPublish, BasicQos, BasicRecover, BasicReject, BasicReturn,
};
use super::channel::Flow;
use super::confirm::ConfirmSelect;
use super::connection::{
    Close, ConnectionBlocked, ConnectionOpen, ConnectionSecure, ConnectionSecureOk,
    ConnectionStart, ConnectionStartOk, ConnectionUpdateSecret, Tune,
};
use super::data_types::{Reader, Writer};
use super::exchange::{ExchangeBind, ExchangeDeclare, ExchangeDelete};
use super::queue::{
    MessageCount, QueueBind, QueueDeclare, QueueDeclareOk, QueueDelete, QueuePurge, QueueUnbind,
};
use super::{DecodeError, EncodeError};

/// What a method without arguments of its own still carries on the wire.
#[derive(Clone, Copy)]
enum Reserved {
    Nothing,
    ShortStr,
    LongStr,
}

impl Reserved {
    fn read(self, r: &mut Reader) -> Result<(), DecodeError> {
        match self {
            Self::Nothing => Ok(()),
            Self::ShortStr => r.skip_shortstr("reserved-1"),
            Self::LongStr => r.longstr("reserved-1").map(drop),
        }
    }

    fn write(self, w: &mut Writer<'_>) {
        match self {
            Self::Nothing => {}
            Self::ShortStr => w.octet(0),
            Self::LongStr => w.long(0),
        }
    }
}

/// Declares [`Method`] and its id, name, read and write tables from one list:
/// methods with arguments (a struct each), then methods without.
macro_rules! methods {
    (
        with_arguments {
            $( $(#[$adoc:meta])* ($ac:literal, $am:literal, $aname:literal) $avar:ident($aty:ty), )*
        }
        without_arguments {
            $( $(#[$ndoc:meta])* ($nc:literal, $nm:literal, $nname:literal) $nvar:ident [$res:ident], )*
        }
    ) => {
        /// One method: the payload of a method frame.
        ///
        /// Variants with arguments come first, then those without; within
        /// each, in class and method id order.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Method {
            $( $(#[$adoc])* $avar($aty), )*
            $( $(#[$ndoc])* $nvar, )*
        }

        impl Method {
            /// The class id, e.g. 60 for basic (see [`class`](super::class)).
            pub fn class_id(&self) -> u16 {
                match self {
                    $( Self::$avar(_) => $ac, )*
                    $( Self::$nvar => $nc, )*
                }
            }

            /// The method id within its class, e.g. 40 for basic.publish.
            pub fn method_id(&self) -> u16 {
                match self {
                    $( Self::$avar(_) => $am, )*
                    $( Self::$nvar => $nm, )*
                }
            }

            /// The specification's name, e.g. `basic.publish`, for logs and
            /// reply texts.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$avar(_) => $aname, )*
                    $( Self::$nvar => $nname, )*
                }
            }

            /// Reads the arguments of method (`class_id`, `method_id`).
            fn read_arguments(
                class_id: u16,
                method_id: u16,
                r: &mut Reader,
            ) -> Result<Self, DecodeError> {
                match (class_id, method_id) {
                    $( ($ac, $am) => <$aty as Arguments>::read(r)
                        .map(Self::$avar)
                        .map_err(|e| e.in_context($aname)), )*
                    $( ($nc, $nm) => Reserved::$res
                        .read(r)
                        .map(|()| Self::$nvar)
                        .map_err(|e| e.in_context($nname)), )*
                    _ => Err(DecodeError::UnknownMethod { class_id, method_id }),
                }
            }

            /// Writes the arguments (not the ids).
            fn write_arguments(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
                match self {
                    $( Self::$avar(m) => m.write(w), )*
                    $( Self::$nvar => {
                        Reserved::$res.write(w);
                        Ok(())
                    } )*
                }
            }
        }
    };
}

methods! {
    with_arguments {
        /// connection.start (server).
        (10, 10, "connection.start") ConnectionStart(ConnectionStart),
        /// connection.start-ok (client).
        (10, 11, "connection.start-ok") ConnectionStartOk(ConnectionStartOk),
        /// connection.secure (server).
        (10, 20, "connection.secure") ConnectionSecure(ConnectionSecure),
        /// connection.secure-ok (client).
        (10, 21, "connection.secure-ok") ConnectionSecureOk(ConnectionSecureOk),
        /// connection.tune (server).
        (10, 30, "connection.tune") ConnectionTune(Tune),
        /// connection.tune-ok (client).
        (10, 31, "connection.tune-ok") ConnectionTuneOk(Tune),
        /// connection.open (client).
        (10, 40, "connection.open") ConnectionOpen(ConnectionOpen),
        /// connection.close (either).
        (10, 50, "connection.close") ConnectionClose(Close),
        /// connection.blocked (server).
        (10, 60, "connection.blocked") ConnectionBlocked(ConnectionBlocked),
        /// connection.update-secret (client).
        (10, 70, "connection.update-secret") ConnectionUpdateSecret(ConnectionUpdateSecret),
        /// channel.flow (either).
        (20, 20, "channel.flow") ChannelFlow(Flow),
        /// channel.flow-ok (either).
        (20, 21, "channel.flow-ok") ChannelFlowOk(Flow),
        /// channel.close (either).
        (20, 40, "channel.close") ChannelClose(Close),
        /// exchange.declare (client).
        (40, 10, "exchange.declare") ExchangeDeclare(ExchangeDeclare),
        /// exchange.delete (client).
        (40, 20, "exchange.delete") ExchangeDelete(ExchangeDelete),
        /// exchange.bind (client).
        (40, 30, "exchange.bind") ExchangeBind(ExchangeBind),
        /// exchange.unbind (client).
        (40, 40, "exchange.unbind") ExchangeUnbind(ExchangeBind),
        /// queue.declare (client).
        (50, 10, "queue.declare") QueueDeclare(QueueDeclare),
        /// queue.declare-ok (server).
        (50, 11, "queue.declare-ok") QueueDeclareOk(QueueDeclareOk),
        /// queue.bind (client).
        (50, 20, "queue.bind") QueueBind(QueueBind),
        /// queue.purge (client).
        (50, 30, "queue.purge") QueuePurge(QueuePurge),
        /// queue.purge-ok (server).
        (50, 31, "queue.purge-ok") QueuePurgeOk(MessageCount),
        /// queue.delete (client).
        (50, 40, "queue.delete") QueueDelete(QueueDelete),
        /// queue.delete-ok (server).
        (50, 41, "queue.delete-ok") QueueDeleteOk(MessageCount),
        /// queue.unbind (client).
        (50, 50, "queue.unbind") QueueUnbind(QueueUnbind),
        /// basic.qos (client).
        (60, 10, "basic.qos") BasicQos(BasicQos),
        /// basic.consume (client).
        (60, 20, "basic.consume") BasicConsume(BasicConsume),
        /// basic.consume-ok (server).
        (60, 21, "basic.consume-ok") BasicConsumeOk(BasicConsumeOk),
        /// basic.cancel (either).
        (60, 30, "basic.cancel") BasicCancel(BasicCancel),
        /// basic.cancel-ok (either).
        (60, 31, "basic.cancel-ok") BasicCancelOk(BasicCancelOk),
        /// basic.publish (client), with content.
        (60, 40, "basic.publish") BasicPublish(BasicPublish),
        /// basic.return (server), with content.
        (60, 50, "basic.return") BasicReturn(BasicReturn),
        /// basic.deliver (server), with content.
        (60, 60, "basic.deliver") BasicDeliver(BasicDeliver),
        /// basic.get (client).
        (60, 70, "basic.get") BasicGet(BasicGet),
        /// basic.get-ok (server), with content.
        (60, 71, "basic.get-ok") BasicGetOk(BasicGetOk),
        /// basic.ack (either).
        (60, 80, "basic.ack") BasicAck(BasicAck),
        /// basic.reject (client).
        (60, 90, "basic.reject") BasicReject(BasicReject),
        /// basic.recover-async (client; deprecated).
        (60, 100, "basic.recover-async") BasicRecoverAsync(BasicRecover),
        /// basic.recover (client).
        (60, 110, "basic.recover") BasicRecover(BasicRecover),
        /// basic.nack (either).
        (60, 120, "basic.nack") BasicNack(BasicNack),
        /// confirm.select (client).
        (85, 10, "confirm.select") ConfirmSelect(ConfirmSelect),
    }
    without_arguments {
        /// connection.open-ok (server).
        (10, 41, "connection.open-ok") ConnectionOpenOk [ShortStr],
        /// connection.close-ok (either).
        (10, 51, "connection.close-ok") ConnectionCloseOk [Nothing],
        /// connection.unblocked (server).
        (10, 61, "connection.unblocked") ConnectionUnblocked [Nothing],
        /// connection.update-secret-ok (server).
        (10, 71, "connection.update-secret-ok") ConnectionUpdateSecretOk [Nothing],
        /// channel.open (client).
        (20, 10, "channel.open") ChannelOpen [ShortStr],
        /// channel.open-ok (server).
        (20, 11, "channel.open-ok") ChannelOpenOk [LongStr],
        /// channel.close-ok (either).
        (20, 41, "channel.close-ok") ChannelCloseOk [Nothing],
        /// exchange.declare-ok (server).
        (40, 11, "exchange.declare-ok") ExchangeDeclareOk [Nothing],
        /// exchange.delete-ok (server).
        (40, 21, "exchange.delete-ok") ExchangeDeleteOk [Nothing],
        /// exchange.bind-ok (server).
        (40, 31, "exchange.bind-ok") ExchangeBindOk [Nothing],
        /// exchange.unbind-ok (server): method id 51.
        (40, 51, "exchange.unbind-ok") ExchangeUnbindOk [Nothing],
        /// queue.bind-ok (server).
        (50, 21, "queue.bind-ok") QueueBindOk [Nothing],
        /// queue.unbind-ok (server).
        (50, 51, "queue.unbind-ok") QueueUnbindOk [Nothing],
        /// basic.qos-ok (server).
        (60, 11, "basic.qos-ok") BasicQosOk [Nothing],
        /// basic.get-empty (server).
        (60, 72, "basic.get-empty") BasicGetEmpty [ShortStr],
        /// basic.recover-ok (server).
        (60, 111, "basic.recover-ok") BasicRecoverOk [Nothing],
        /// confirm.select-ok (server).
        (85, 11, "confirm.select-ok") ConfirmSelectOk [Nothing],
        /// tx.select (client).
        (90, 10, "tx.select") TxSelect [Nothing],
        /// tx.select-ok (server).
        (90, 11, "tx.select-ok") TxSelectOk [Nothing],
        /// tx.commit (client).
        (90, 20, "tx.commit") TxCommit [Nothing],
        /// tx.commit-ok (server).
        (90, 21, "tx.commit-ok") TxCommitOk [Nothing],
        /// tx.rollback (client).
        (90, 30, "tx.rollback") TxRollback [Nothing],
        /// tx.rollback-ok (server).
        (90, 31, "tx.rollback-ok") TxRollbackOk [Nothing],
    }
}

impl Method {
    /// Whether a content header and body frames follow this method on its
    /// channel: basic.publish, basic.return, basic.deliver, basic.get-ok.
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Self::BasicPublish(_)
                | Self::BasicReturn(_)
                | Self::BasicDeliver(_)
                | Self::BasicGetOk(_)
        )
    }

    /// Reads a whole method frame payload.
    pub(crate) fn read(payload: Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let class_id = r.short("method frame class-id")?;
        let method_id = r.short("method frame method-id")?;
        let method = Self::read_arguments(class_id, method_id, &mut r)?;
        r.finish(method.name())?;
        Ok(method)
    }

    /// Writes a whole method frame payload.
    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.short(self.class_id());
        w.short(self.method_id());
        self.write_arguments(w)
    }
}
