//! The methods of channels: what each does and answers.

use super::*;

impl Conn {
    /// Binds (`bind`) or unbinds `to` and `source`; sends `ok` after.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn binding(
        &mut self,
        channel: u16,
        source: &str,
        to: Destination,
        routing_key: &str,
        arguments: FieldTable,
        bind: bool,
        ok: Option<Method>,
    ) -> Answer<()> {
        self.channel_mut(channel)?;
        let vhost = self.vhost.clone();
        self.gw
            .bind(&vhost, source, to, routing_key, arguments, bind, self.id)
            .await?;
        if let Some(ok) = ok {
            self.send(channel, ok);
        }
        Ok(())
    }

    #[allow(clippy::too_many_lines)]
    pub(super) async fn method(&mut self, channel: u16, m: Method) -> Answer<Step> {
        // Connection class on channel 0 only, others never on channel 0.
        if channel == 0 {
            return Ok(match m {
                Method::ConnectionClose(_) => {
                    self.send(0, Method::ConnectionCloseOk);
                    Step::Closed
                }
                Method::ConnectionCloseOk => Step::Closed,
                Method::ConnectionUpdateSecret(_) => {
                    self.send(0, Method::ConnectionUpdateSecretOk);
                    Step::Go
                }
                other => {
                    return Err(Refusal::new(
                        reply::COMMAND_INVALID,
                        format!("COMMAND_INVALID - {} on channel 0", other.name()),
                    ));
                }
            });
        }
        if m.class_id() == class::CONNECTION {
            return Err(Refusal::new(
                reply::COMMAND_INVALID,
                format!("COMMAND_INVALID - {} on channel {channel}", m.name()),
            ));
        }
        // A channel the server closed ignores all but close and close-ok.
        if let Some(ch) = self.channels.get(&channel)
            && ch.closing
        {
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
            return Ok(Step::Go);
        }
        let vhost = self.vhost.clone();
        match m {
            Method::ChannelOpen => {
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
            }
            Method::ChannelClose(_) => {
                self.channel_mut(channel)?;
                self.release_channel(channel).await;
                self.channels.remove(&channel);
                self.gw.metrics.channels.fetch_sub(1, Ordering::Relaxed);
                self.send(channel, Method::ChannelCloseOk);
            }
            Method::ChannelCloseOk => {
                self.channel_mut(channel)?;
            }
            Method::ChannelFlow(f) => {
                self.channel_mut(channel)?;
                self.send(channel, Method::ChannelFlowOk(Flow { active: f.active }));
            }
            Method::ChannelFlowOk(_) => {
                self.channel_mut(channel)?;
            }
            Method::ExchangeDeclare(d) => {
                self.channel_mut(channel)?;
                self.gw
                    .declare_exchange(
                        &vhost,
                        &d.exchange,
                        &d.exchange_type,
                        d.passive,
                        d.durable,
                        d.auto_delete,
                        d.internal,
                        d.arguments,
                    )
                    .await?;
                if !d.no_wait {
                    self.send(channel, Method::ExchangeDeclareOk);
                }
            }
            Method::ExchangeDelete(d) => {
                self.channel_mut(channel)?;
                self.gw
                    .delete_exchange(&vhost, &d.exchange, d.if_unused)
                    .await?;
                if !d.no_wait {
                    self.send(channel, Method::ExchangeDeleteOk);
                }
            }
            Method::ExchangeBind(b) => {
                let to = Destination::exchange(&b.destination);
                let ok = (!b.no_wait).then_some(Method::ExchangeBindOk);
                self.binding(
                    channel,
                    &b.source,
                    to,
                    &b.routing_key,
                    b.arguments,
                    true,
                    ok,
                )
                .await?;
            }
            Method::ExchangeUnbind(b) => {
                let to = Destination::exchange(&b.destination);
                let ok = (!b.no_wait).then_some(Method::ExchangeUnbindOk);
                self.binding(
                    channel,
                    &b.source,
                    to,
                    &b.routing_key,
                    b.arguments,
                    false,
                    ok,
                )
                .await?;
            }
            Method::QueueDeclare(d) => {
                self.channel_mut(channel)?;
                let declared = self
                    .gw
                    .declare_queue(
                        &vhost,
                        &d.queue,
                        d.passive,
                        d.durable,
                        d.exclusive,
                        d.auto_delete,
                        d.arguments,
                        self.id,
                    )
                    .await?;
                if !d.no_wait {
                    self.send(
                        channel,
                        Method::QueueDeclareOk(QueueDeclareOk {
                            queue: declared.name,
                            message_count: declared.messages,
                            consumer_count: declared.consumers,
                        }),
                    );
                }
            }
            Method::QueueBind(b) => {
                let to = Destination::queue(&b.queue);
                let ok = (!b.no_wait).then_some(Method::QueueBindOk);
                self.binding(
                    channel,
                    &b.exchange,
                    to,
                    &b.routing_key,
                    b.arguments,
                    true,
                    ok,
                )
                .await?;
            }
            Method::QueueUnbind(b) => {
                let to = Destination::queue(&b.queue);
                let ok = Some(Method::QueueUnbindOk);
                self.binding(
                    channel,
                    &b.exchange,
                    to,
                    &b.routing_key,
                    b.arguments,
                    false,
                    ok,
                )
                .await?;
            }
            Method::QueuePurge(p) => {
                self.channel_mut(channel)?;
                let q = self.gw.queue(&vhost, &p.queue, self.id).await?;
                let n = q.purge().await;
                if !p.no_wait {
                    self.send(
                        channel,
                        Method::QueuePurgeOk(MessageCount { message_count: n }),
                    );
                }
            }
            Method::QueueDelete(d) => {
                self.channel_mut(channel)?;
                let n = self
                    .gw
                    .delete_queue(&vhost, &d.queue, d.if_unused, d.if_empty, Some(self.id))
                    .await?;
                if !d.no_wait {
                    self.send(
                        channel,
                        Method::QueueDeleteOk(MessageCount { message_count: n }),
                    );
                }
            }
            Method::BasicQos(q) => {
                let ch = self.channel_mut(channel)?;
                if q.global {
                    // Shared by the consumers the channel starts from now.
                    ch.budget = (q.prefetch_count > 0).then(|| {
                        Arc::new(queue::Budget {
                            held: std::sync::atomic::AtomicU32::new(0),
                            limit: u32::from(q.prefetch_count),
                        })
                    });
                } else {
                    ch.prefetch = q.prefetch_count;
                }
                self.send(channel, Method::BasicQosOk);
            }
            Method::BasicConsume(c) => {
                self.channel_mut(channel)?;
                let q = self.gw.queue(&vhost, &c.queue, self.id).await?;
                let ch = self.channel_mut(channel)?;
                let tag = if c.consumer_tag.is_empty() {
                    format!("amq.ctag-{}-{}", channel, ch.consumers.len() + 1)
                } else {
                    c.consumer_tag.clone()
                };
                if ch.consumers.contains_key(&tag) {
                    return Err(Refusal::new(
                        reply::NOT_ALLOWED,
                        format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"),
                    ));
                }
                let prefetch = ch.prefetch;
                let budget = ch.budget.clone();
                ch.consumers
                    .insert(tag.clone(), (c.queue.clone(), q.clone()));
                ch.used.insert(q.topic.to_string(), q.clone());
                // consume-ok goes before any delivery.
                if !c.no_wait {
                    self.send(
                        channel,
                        Method::BasicConsumeOk(BasicConsumeOk {
                            consumer_tag: tag.clone(),
                        }),
                    );
                }
                let refused = q
                    .consume(Consumer {
                        connection: self.id,
                        channel,
                        tag: tag.clone(),
                        prefetch,
                        no_ack: c.no_ack,
                        exclusive: c.exclusive,
                        tx: self.events.clone(),
                        budget,
                    })
                    .await;
                if refused.is_err() {
                    if let Ok(ch) = self.channel_mut(channel) {
                        ch.consumers.remove(&tag);
                    }
                    return Err(Refusal::new(
                        reply::ACCESS_REFUSED,
                        format!(
                            "ACCESS_REFUSED - queue '{}' in vhost '{vhost}' in exclusive use",
                            c.queue
                        ),
                    ));
                }
            }
            Method::BasicCancel(c) => {
                let ch = self.channel_mut(channel)?;
                if let Some((name, q)) = ch.consumers.remove(&c.consumer_tag) {
                    q.cancel(self.id, channel, &c.consumer_tag);
                    let gw = Arc::clone(&self.gw);
                    let vhost = vhost.clone();
                    tokio::spawn(async move { gw.consumer_gone(&vhost, &name).await });
                }
                if !c.no_wait {
                    self.send(
                        channel,
                        Method::BasicCancelOk(BasicCancelOk {
                            consumer_tag: c.consumer_tag,
                        }),
                    );
                }
            }
            Method::BasicPublish(p) => {
                let ch = self.channel_mut(channel)?;
                ch.incoming = Some(Incoming {
                    publish: p,
                    header: None,
                    body: BytesMut::new(),
                });
            }
            Method::BasicGet(g) => {
                self.channel_mut(channel)?;
                // Earlier publishes of this connection are in the queue first.
                self.flush_publishes().await;
                let q = self.gw.queue(&vhost, &g.queue, self.id).await?;
                match q.get(self.id, channel, g.no_ack).await {
                    Some(d) => {
                        let ch = self.channel_mut(channel)?;
                        ch.next_tag += 1;
                        let tag = ch.next_tag;
                        ch.used.insert(q.topic.to_string(), q.clone());
                        if !d.settled {
                            ch.unacked.insert(tag, (q.clone(), d.offset, false));
                        }
                        self.send_content(
                            channel,
                            Method::BasicGetOk(BasicGetOk {
                                delivery_tag: tag,
                                redelivered: d.redelivered,
                                exchange: d.message.exchange.clone(),
                                routing_key: d.message.routing_key.clone(),
                                message_count: d.remaining,
                            }),
                            &d.message.properties,
                            &d.message.body.clone(),
                        );
                    }
                    None => self.send(channel, Method::BasicGetEmpty),
                }
            }
            Method::BasicAck(a) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    ch.tx_acks.push(TxAck::Ack(a.delivery_tag, a.multiple));
                } else {
                    settle(ch, a.delivery_tag, a.multiple, None)?;
                }
            }
            Method::BasicNack(n) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    ch.tx_acks
                        .push(TxAck::Nack(n.delivery_tag, n.multiple, n.requeue));
                } else {
                    settle(ch, n.delivery_tag, n.multiple, Some(n.requeue))?;
                }
            }
            Method::BasicReject(r) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    ch.tx_acks
                        .push(TxAck::Nack(r.delivery_tag, false, r.requeue));
                } else {
                    settle(ch, r.delivery_tag, false, Some(r.requeue))?;
                }
            }
            Method::BasicRecover(r) | Method::BasicRecoverAsync(r) => {
                let ch = self.channel_mut(channel)?;
                let _ = r.requeue;
                ch.unacked.clear();
                if let Some(b) = &ch.budget {
                    b.release(u32::MAX);
                }
                let used: Vec<QueueHandle> = ch.used.values().cloned().collect();
                for q in used {
                    q.recover(self.id, channel);
                }
                self.send(channel, Method::BasicRecoverOk);
            }
            Method::ConfirmSelect(c) => {
                let ch = self.channel_mut(channel)?;
                if ch.tx {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                    ));
                }
                ch.confirm = true;
                if !c.no_wait {
                    self.send(channel, Method::ConfirmSelectOk);
                }
            }
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
            }
            Method::TxCommit => {
                let ch = self.channel_mut(channel)?;
                if !ch.tx {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                }
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
                    match a {
                        TxAck::Ack(tag, multiple) => settle(ch, tag, multiple, None)?,
                        TxAck::Nack(tag, multiple, requeue) => {
                            settle(ch, tag, multiple, Some(requeue))?;
                        }
                    }
                }
                self.send(channel, Method::TxCommitOk);
            }
            Method::TxRollback => {
                let ch = self.channel_mut(channel)?;
                if !ch.tx {
                    return Err(Refusal::new(
                        reply::PRECONDITION_FAILED,
                        "PRECONDITION_FAILED - channel is not transactional",
                    ));
                }
                ch.tx_publishes.clear();
                ch.tx_acks.clear();
                self.send(channel, Method::TxRollbackOk);
            }
            other => {
                self.channel_mut(channel)?;
                return Err(Refusal::new(
                    reply::COMMAND_INVALID,
                    format!("COMMAND_INVALID - a client does not send {}", other.name()),
                ));
            }
        }
        Ok(Step::Go)
    }
}

/// Acknowledges (`requeue` None) or rejects delivery `tag` (and with
/// `multiple` every earlier one; tag 0 with `multiple`: all).
pub(super) fn settle(
    ch: &mut Channel,
    tag: u64,
    multiple: bool,
    requeue: Option<bool>,
) -> Answer<()> {
    let tags: Vec<u64> = if multiple {
        let upto = if tag == 0 { u64::MAX } else { tag };
        ch.unacked.range(..=upto).map(|(t, _)| *t).collect()
    } else if ch.unacked.contains_key(&tag) {
        vec![tag]
    } else {
        Vec::new()
    };
    if tags.is_empty() && !(multiple && tag == 0) {
        return Err(Refusal::new(
            reply::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
        ));
    }
    let mut by_queue: HashMap<String, (QueueHandle, Vec<i64>)> = HashMap::new();
    let mut freed = 0u32;
    for t in tags {
        if let Some((q, offset, budgeted)) = ch.unacked.remove(&t) {
            freed += u32::from(budgeted);
            by_queue
                .entry(q.topic.to_string())
                .or_insert_with(|| (q, Vec::new()))
                .1
                .push(offset);
        }
    }
    for (_, (q, offsets)) in by_queue {
        match requeue {
            None => q.ack(offsets),
            Some(requeue) => q.reject(offsets, requeue),
        }
    }
    // Room given back: every queue the channel consumes from may deliver.
    if freed > 0
        && let Some(b) = &ch.budget
    {
        b.release(freed);
        for (_, q) in ch.consumers.values() {
            q.poke();
        }
    }
    Ok(())
}
