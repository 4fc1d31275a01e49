//! A session's durable side: its stored state, saves while connected, and
//! what happens when the connection ends (the session stored or ended, the
//! will sent).

use super::*;

impl Connection {
    /// The session's state as it stands: its cursors are where a resume
    /// must read from so that nothing accepted for the session and not yet
    /// acknowledged is lost (see [`Connection::cursors`]).
    pub(super) fn state(&self) -> SessionState {
        let cursors = self.cursors();
        SessionState {
            expiry_secs: self.expiry,
            subscriptions: self
                .subs
                .iter()
                .map(|(f, o)| StoredSub::new(f, o))
                .collect(),
            completed_qos2: self
                .completed_qos2
                .iter()
                .filter(|at| !below(&cursors, at))
                .cloned()
                .collect(),
            cursors: cursors.into_iter().map(|((t, p), o)| (t, p, o)).collect(),
            outgoing: self.outbound.stored(),
            incoming_qos2: self.incoming_qos2.iter().copied().collect(),
            incoming_seq: self.incoming_seq,
            unsure: self
                .inherited
                .iter()
                .cloned()
                .chain(self.unsure.iter().map(|(from, seq)| Unsure {
                    epoch: self.claim,
                    from: from.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect(),
                    seq: *seq,
                }))
                .collect(),
            disconnected_at_ms: None,
            node: self.gw.node,
            online: true,
            connection: self.id,
            claim: false,
            handed_over: false,
            for_claim: -1,
            epoch: self.claim,
        }
    }

    /// Per log partition, the offset a resume reads from: where the
    /// session stood when it registered, or lower, down to the first QoS 1
    /// or 2 message queued for the client and not yet sent (messages a
    /// resume or a catch-up read from the log before it). A message in
    /// flight is kept by itself (`outgoing`) and sent again on resume.
    /// Everything the client has not acknowledged is thus read again after
    /// a crash of this node (at least once), never skipped.
    pub(super) fn cursors(&self) -> Positions {
        let mut cursors = self.base_cursors.clone();
        for d in self.outbound.queue.iter().filter(|d| d.qos > 0) {
            let key = (d.at.topic.clone(), d.at.partition);
            if let Some(c) = cursors.get_mut(&key) {
                *c = (*c).min(d.at.offset);
            }
        }
        cursors
    }

    /// Saves how far the session got, when it got further: its cursors
    /// move up to where every message has reached this connection, and
    /// what the client has not acknowledged stays in the record (in
    /// flight, or below the cursors while queued). A session whose node
    /// dies goes on from its latest checkpoint: nothing acknowledged to a
    /// publisher is skipped, and what is sent twice is bounded by the
    /// checkpoint interval.
    pub(super) async fn checkpoint(&mut self, rx: &mpsc::Receiver<Delivery>) {
        let Some(at) = self.delivered(rx) else {
            return;
        };
        if at != self.base_cursors {
            self.base_cursors = at;
            let cursors = self.cursors();
            self.completed_qos2.retain(|at| !below(&cursors, at));
            let _ = self.save().await;
        }
    }

    /// Per partition, the dispatch position below which every message for
    /// this session has reached the connection (lowered to where it fell
    /// behind); `None` while deliveries wait in `rx`.
    fn delivered(&self, rx: &mpsc::Receiver<Delivery>) -> Option<Positions> {
        let reg = self.gw.registry();
        // Dispatchers hand messages out under the registry lock.
        if !rx.is_empty() {
            return None;
        }
        let me = reg
            .online
            .get(&self.client_id)
            .filter(|o| o.connection == self.id)?;
        let mut at = self.base_cursors.clone();
        for (key, cursor) in &mut at {
            let mut reached = reg.positions.get(key).copied().unwrap_or(*cursor);
            if let Some(from) = me.behind.get(key) {
                reached = reached.min(*from);
            }
            *cursor = (*cursor).max(reached);
        }
        Some(at)
    }

    /// Whether a later claim on the client id came from
    /// another connection (not applied yet when this one ended).
    pub(super) async fn claimed_elsewhere(&self) -> Option<i64> {
        if let Ok(end) = store::end(&self.gw.broker, store::SESSIONS_TOPIC).await {
            self.gw
                .await_applied(store::SESSIONS_TOPIC, end, Duration::from_secs(2))
                .await;
        }
        let known = self.gw.known();
        let k = known.get(&self.client_id)?;
        (k.latest_claim > self.claim).then_some(k.latest_claim)
    }

    /// Stores the session durably if it outlives the connection; false
    /// when the store failed.
    pub(super) async fn save(&self) -> bool {
        // Every session's subscriptions are written, clean ones too: other
        // nodes share its shared subscriptions' messages with it.
        match self.gw.save_session(&self.client_id, &self.state()).await {
            Ok(_) => {
                self.stored.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                debug!(client = %self.client_id, "session not stored: {e}");
                false
            }
        }
    }

    /// After the connection: store the session (or end it) and send the
    /// will if the client went away without DISCONNECT.
    pub(super) async fn finish(mut self, end: End, conn_id: u64, mut rx: mpsc::Receiver<Delivery>) {
        // Stop deliveries and take a cut of the dispatch positions; the
        // registry entry stays (closing) until the session is stored, so a
        // client reconnecting at once waits for it instead of missing it.
        let (positions, behind, handed) = {
            let mut reg = self.gw.registry();
            let mut behind = std::collections::BTreeMap::new();
            let mut handed = None;
            if let Some(o) = reg
                .online
                .get_mut(&self.client_id)
                .filter(|o| o.connection == conn_id)
            {
                o.closing = true;
                behind = std::mem::take(&mut o.behind);
                handed = o.handed_to;
            }
            (reg.positions.clone(), behind, handed)
        };
        let handed = match handed {
            Some(claim) => Some(claim),
            None => self.claimed_elsewhere().await,
        };
        let mut pending: Vec<Delivery> = self.outbound.queue.drain(..).collect();
        while let Ok(d) = rx.try_recv() {
            if !self.resumed(&d.at) {
                pending.push(d);
            }
        }
        if self.expiry == Some(0) {
            {
                let mut reg = self.gw.registry();
                reg.trie.remove_all(&self.client_id);
                self.gw
                    .metrics
                    .subscriptions
                    .store(reg.trie.len() as i64, Ordering::Relaxed);
            }
            self.gw.metrics.sessions.fetch_sub(1, Ordering::Relaxed);
            // Only a session that was stored has a record to delete (a
            // clean session's connect and disconnect write nothing); one
            // another node took over has its record there.
            if self.stored.load(Ordering::Relaxed) && handed.is_none() {
                let _ = store::put(
                    &self.gw.broker,
                    store::SESSIONS_TOPIC,
                    &self.client_id,
                    None,
                    Vec::new(),
                )
                .await;
            }
        } else {
            // Resume from the first message not handed to the client yet.
            let mut cursors = positions;
            for (key, below) in &self.resumed_below {
                if let Some(c) = cursors.get_mut(key) {
                    *c = (*c).max(*below);
                }
            }
            for (key, from) in behind {
                if let Some(c) = cursors.get_mut(&key) {
                    *c = (*c).min(from);
                }
            }
            for d in pending.iter().filter(|d| d.qos > 0) {
                let key = (d.at.topic.clone(), d.at.partition);
                if let Some(c) = cursors.get_mut(&key) {
                    *c = (*c).min(d.at.offset);
                }
            }
            self.base_cursors = cursors;
            let mut state = self.state();
            state.disconnected_at_ms = Some(now_ms());
            state.online = false;
            // Taken over by another node: the session goes on there, from
            // this last state (a record of its own, which the claimant
            // waits for).
            let key = match handed {
                Some(claim) => {
                    state.handed_over = true;
                    state.for_claim = claim;
                    crate::session::handover_key(&self.client_id)
                }
                None => self.client_id.clone(),
            };
            let offset = match self.gw.save_session(&key, &state).await {
                Ok(offset) => offset,
                Err(e) => {
                    debug!(client = %self.client_id, "session not stored: {e}");
                    -1
                }
            };
            let generation = self.gw.next_id();
            if handed.is_some() {
                self.gw.drop_local(&self.client_id);
            } else {
                self.gw.offline().insert(
                    self.client_id.clone(),
                    crate::hub::Offline { generation, offset },
                );
            }
            if let Some(secs) = self.expiry.filter(|_| handed.is_none()) {
                self.gw.expire_later(
                    self.client_id.clone(),
                    generation,
                    Duration::from_secs(u64::from(secs)),
                );
            }
        }
        {
            let mut reg = self.gw.registry();
            if reg.online.get(&self.client_id).map(|o| o.connection) == Some(conn_id) {
                reg.online.remove(&self.client_id);
            }
        }
        if end == End::WithWill
            && let Some((mut will, delay)) = self.will.take()
        {
            will.timestamp_ms = now_ms();
            // The will waits at most as long as the session lives.
            let delay = match self.expiry {
                Some(secs) => delay.min(Duration::from_secs(u64::from(secs))),
                None => delay,
            };
            self.gw.publish_will(self.client_id.clone(), will, delay);
        }
    }
}

/// True when `at` lies below its partition's cursor (a resume does not
/// read it again).
fn below(cursors: &Positions, at: &LogRef) -> bool {
    cursors
        .get(&(at.topic.clone(), at.partition))
        .is_some_and(|c| at.offset < *c)
}
