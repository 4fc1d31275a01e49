//! The channel class (20): open, flow, close.

use std::sync::atomic::Ordering;

use crate::codec::{Flow, Method, reply};
use crate::refusal::{Answer, Refusal};

use super::super::{Channel, Conn};

impl Conn {
    /// channel.open, flow and close.
    pub(super) async fn channel_method(&mut self, channel: u16, m: Method) -> Answer<()> {
        match m {
            Method::ChannelOpen => self.open_channel(channel)?,
            Method::ChannelClose(_) => {
                self.channel_mut(channel)?;
                let stored = self.release_channel(channel).await;
                self.channels.remove(&channel);
                self.gw.metrics.channels.fetch_sub(1, Ordering::Relaxed);
                if !stored {
                    // A close-ok would tell the client its acknowledgements
                    // are kept: they may not be (the gateway is moving).
                    return Err(Refusal::new(
                        reply::CONNECTION_FORCED,
                        "CONNECTION_FORCED - the channel's acknowledgements could not be stored; its messages may come again, redelivered",
                    ));
                }
                self.send(channel, Method::ChannelCloseOk);
            }
            Method::ChannelCloseOk | Method::ChannelFlowOk(_) => {
                self.channel_mut(channel)?;
            }
            Method::ChannelFlow(f) => {
                self.channel_mut(channel)?;
                self.send(channel, Method::ChannelFlowOk(Flow { active: f.active }));
            }
            other => self.not_from_client(channel, &other)?,
        }
        Ok(())
    }

    /// A method on a channel the server closed: only close and close-ok
    /// count, the rest is ignored.
    pub(super) fn closing_channel_method(&mut self, channel: u16, m: &Method) {
        match m {
            Method::ChannelCloseOk => {
                self.channels.remove(&channel);
                self.gw.metrics.channels.fetch_sub(1, Ordering::Relaxed);
            }
            Method::ChannelClose(_) => {
                self.send(channel, Method::ChannelCloseOk);
            }
            _ => {}
        }
    }

    fn open_channel(&mut self, channel: u16) -> Answer<()> {
        if self.channels.contains_key(&channel) {
            return Err(Refusal::new(
                reply::CHANNEL_ERROR,
                format!("CHANNEL_ERROR - second 'channel.open' seen for channel {channel}"),
            ));
        }
        if channel > self.channel_max {
            return Err(Refusal::new(
                reply::NOT_ALLOWED,
                format!(
                    "NOT_ALLOWED - channel {channel} above channel-max {}",
                    self.channel_max
                ),
            ));
        }
        self.channels.insert(channel, Channel::default());
        self.gw.metrics.channels.fetch_add(1, Ordering::Relaxed);
        self.send(channel, Method::ChannelOpenOk);
        Ok(())
    }
}
