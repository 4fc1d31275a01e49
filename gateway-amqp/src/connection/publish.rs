//! Publishes: a message's content frames, then appends in batches and the
//! confirms and returns that answer them.

use super::*;

impl Conn {
    pub(super) async fn content_header(&mut self, channel: u16, h: ContentHeader) -> Step {
        let max_body = 128u64 << 20;
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.unopened(channel, "content header").await;
        };
        if ch.closing {
            return Step::Go;
        }
        match &mut ch.incoming {
            Some(inc) if inc.header.is_none() => {
                if h.body_size > max_body {
                    let size = h.body_size;
                    let text = format!(
                        "FRAME_ERROR - message body of {size} bytes exceeds the maximum of {max_body}"
                    );
                    return self.fail(reply::FRAME_ERROR, &text, class::BASIC, 40).await;
                }
                let empty = h.body_size == 0;
                inc.header = Some(h);
                if empty {
                    return self.content_done(channel).await;
                }
                Step::Go
            }
            _ => self.unexpected(channel, "content header").await,
        }
    }

    pub(super) async fn content_body(&mut self, channel: u16, b: Bytes) -> Step {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.unopened(channel, "content body").await;
        };
        if ch.closing {
            return Step::Go;
        }
        match &mut ch.incoming {
            Some(Incoming {
                header: Some(h),
                body,
                ..
            }) => {
                body.extend_from_slice(&b);
                let size = body.len() as u64;
                if size > h.body_size {
                    let declared = h.body_size;
                    let text = format!(
                        "FRAME_ERROR - content body of {size} bytes is larger than the {declared} declared"
                    );
                    return self.fail(reply::FRAME_ERROR, &text, class::BASIC, 40).await;
                }
                if size == h.body_size {
                    return self.content_done(channel).await;
                }
                Step::Go
            }
            _ => self.unexpected(channel, "content body").await,
        }
    }

    /// A publish is complete: route it and queue it for appending.
    pub(super) async fn content_done(&mut self, channel: u16) -> Step {
        let Some(inc) = self
            .channels
            .get_mut(&channel)
            .and_then(|c| c.incoming.take())
        else {
            return Step::Go;
        };
        let Some(header) = inc.header else {
            return Step::Go;
        };
        let message = Arc::new(Message {
            exchange: inc.publish.exchange.clone(),
            routing_key: inc.publish.routing_key.clone(),
            properties: header.properties,
            body: inc.body.freeze(),
        });
        let routed = self
            .gw
            .route(
                &self.vhost,
                &inc.publish.exchange,
                &inc.publish.routing_key,
                message.properties.headers.as_ref(),
            )
            .await;
        let mut queues = match routed {
            Ok(q) => q,
            Err(r) => return self.refuse(channel, r, class::BASIC, 40).await,
        };
        let before = queues.len();
        queues.retain(|q| !q.refuses_publish());
        let refused = queues.len() < before;
        self.gw.metrics.published.fetch_add(1, Ordering::Relaxed);
        self.published = true;
        if queues.is_empty() {
            self.gw.metrics.unroutable.fetch_add(1, Ordering::Relaxed);
        }
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Step::Go;
        };
        let seq = ch.confirm.then(|| {
            ch.next_seq += 1;
            ch.next_seq
        });
        let out = Outgoing {
            channel,
            seq,
            message,
            queues,
            mandatory: inc.publish.mandatory,
            refused,
        };
        if ch.tx {
            ch.tx_publishes.push(out);
        } else {
            self.pending.push(out);
        }
        Step::Go
    }

    /// Appends every pending publish (one append per queue), then sends
    /// returns and confirms in publish order.
    pub(super) async fn flush_publishes(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let failed = append_all(&self.gw, &pending).await;
        // Queues delivering at full speed with a backlog hold back this
        // connection's next frames (publisher flow control).
        for q in pending.iter().flat_map(|o| &o.queues) {
            if q.stats.holds_back() && !self.flow.iter().any(|f| f.topic == q.topic) {
                self.flow.push(q.clone());
            }
        }
        self.answer_publishes(pending, &failed);
    }

    pub(super) fn answer_publishes(
        &mut self,
        done: Vec<Outgoing>,
        failed: &std::collections::HashSet<String>,
    ) {
        // Per channel: the last sequence number, and whether all succeeded.
        let mut confirms: BTreeMap<u16, Vec<(u64, bool)>> = BTreeMap::new();
        for o in done {
            let ok = !o.refused && o.queues.iter().all(|q| !failed.contains(q.topic.as_ref()));
            if o.queues.is_empty() && o.mandatory && !o.refused {
                self.send_content(
                    o.channel,
                    Method::BasicReturn(BasicReturn {
                        reply_code: reply::NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        exchange: o.message.exchange.clone(),
                        routing_key: o.message.routing_key.clone(),
                    }),
                    &o.message.properties,
                    &o.message.body.clone(),
                );
            }
            if let Some(seq) = o.seq {
                confirms.entry(o.channel).or_default().push((seq, ok));
            }
        }
        for (channel, seqs) in confirms {
            if self.channels.get(&channel).is_none_or(|c| c.closing) {
                continue;
            }
            if seqs.iter().all(|(_, ok)| *ok) {
                // One multiple ack covers every earlier sequence number:
                // confirms on a channel go out in order.
                if let Some((last, _)) = seqs.last() {
                    self.send(
                        channel,
                        Method::BasicAck(codec::BasicAck {
                            delivery_tag: *last,
                            multiple: seqs.len() > 1,
                        }),
                    );
                }
            } else {
                for (seq, ok) in seqs {
                    if ok {
                        self.send(
                            channel,
                            Method::BasicAck(codec::BasicAck {
                                delivery_tag: seq,
                                multiple: false,
                            }),
                        );
                    } else {
                        self.send(
                            channel,
                            Method::BasicNack(codec::BasicNack {
                                delivery_tag: seq,
                                multiple: false,
                                requeue: false,
                            }),
                        );
                    }
                }
            }
            self.gw.metrics.confirmed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Appends each queue's messages of `publishes` as one batch, all queues at
/// once; returns the topics whose append failed.
pub(super) async fn append_all(
    gw: &Engine,
    publishes: &[Outgoing],
) -> std::collections::HashSet<String> {
    let mut by_queue: HashMap<String, (&QueueHandle, Vec<Arc<Message>>)> = HashMap::new();
    for o in publishes {
        for q in &o.queues {
            by_queue
                .entry(q.topic.to_string())
                .or_insert_with(|| (q, Vec::new()))
                .1
                .push(Arc::clone(&o.message));
        }
    }
    let appends = by_queue
        .into_iter()
        .map(|(topic, (q, messages))| async move {
            let r = queue::append(&gw.broker, q, &messages).await;
            (topic, r)
        });
    futures::future::join_all(appends)
        .await
        .into_iter()
        .filter_map(|(topic, r)| match r {
            Ok(()) => None,
            Err(e) => {
                warn!(topic, "append failed, its publishes are nacked: {e}");
                Some(topic)
            }
        })
        .collect()
}
