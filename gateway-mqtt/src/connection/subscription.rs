//! SUBSCRIBE and UNSUBSCRIBE: filters checked and authorized, the trie
//! updated, the session stored, then retained messages delivered.

use std::sync::atomic::Ordering;

use super::Connection;
use crate::auth::Action;
use crate::codec::{
    Packet, Properties, Protocol, SubAck, Subscribe, UnsubAck, Unsubscribe, reason,
};
use crate::hub::now_ms;
use crate::registry::Delivery;
use crate::topic;
use crate::trie::SubOptions;

impl Connection {
    pub(super) async fn subscribe(&mut self, s: Subscribe) -> Result<(), u8> {
        let subscription_id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut retained: Vec<(String, u8, Option<u32>)> = Vec::new();
        let v5 = self.protocol == Protocol::V5;
        for f in &s.filters {
            let shared = match topic::parse_shared(&f.filter) {
                Ok(shared) => shared.map(|(_, inner)| inner.to_string()),
                Err(_) => {
                    codes.push(if v5 {
                        reason::TOPIC_FILTER_INVALID
                    } else {
                        0x80
                    });
                    continue;
                }
            };
            let inner = shared.clone().unwrap_or_else(|| f.filter.clone());
            if topic::validate_filter(&inner).is_err() {
                codes.push(if v5 {
                    reason::TOPIC_FILTER_INVALID
                } else {
                    0x80
                });
                continue;
            }
            if shared.is_some() && f.no_local && v5 {
                return Err(reason::PROTOCOL_ERROR);
            }
            if !self.principal.allows(Action::Subscribe, &inner) {
                codes.push(if v5 { reason::NOT_AUTHORIZED } else { 0x80 });
                continue;
            }
            let qos = f.qos.min(2);
            let options = SubOptions {
                qos,
                no_local: f.no_local,
                retain_as_published: f.retain_as_published,
                retain_handling: f.retain_handling,
                subscription_id,
            };
            let existed = {
                let mut reg = self.gw.registry();
                let existed = reg
                    .trie
                    .insert(self.client_id.clone(), &f.filter, options.clone());
                self.gw
                    .metrics
                    .subscriptions
                    .store(reg.trie.len() as i64, Ordering::Relaxed);
                existed
            };
            self.subs.insert(f.filter.clone(), options);
            // A new subscription gets what is published from now on; one
            // that existed (a client subscribing again as it reconnects)
            // replaces it without a gap (MQTT 3.8.4).
            if shared.is_none() && !existed {
                let lag = self.gw.undispatched().await;
                self.recent.retain(|(filter, _)| filter != &f.filter);
                if !lag.is_empty() {
                    self.recent.push((f.filter.clone(), lag));
                }
            }
            if shared.is_none() && (f.retain_handling == 0 || (f.retain_handling == 1 && !existed))
            {
                retained.push((f.filter.clone(), qos, subscription_id));
            }
            codes.push(qos);
        }
        let _ = self.save().await;
        self.send(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            reason_codes: codes,
            properties: Properties::default(),
        }));
        // Retained messages follow the SUBACK.
        let now = now_ms();
        for (filter, qos, id) in retained {
            let found: Vec<_> = self
                .gw
                .retained()
                .iter()
                .filter(|(t, _)| topic::matches(&filter, t))
                .map(|(_, r)| r.clone())
                .collect();
            for r in found {
                let d = Delivery {
                    qos: r.msg.qos.min(qos),
                    msg: r.msg,
                    at: r.at,
                    retain: true,
                    subscription_ids: id.into_iter().collect(),
                };
                self.outbound
                    .deliver(d, now, &self.gw.metrics, &mut self.out);
            }
        }
        Ok(())
    }

    pub(super) async fn unsubscribe(&mut self, u: Unsubscribe) {
        let mut codes = Vec::with_capacity(u.filters.len());
        for f in &u.filters {
            let existed = {
                let mut reg = self.gw.registry();
                let existed = reg.trie.remove(&self.client_id, f);
                self.gw
                    .metrics
                    .subscriptions
                    .store(reg.trie.len() as i64, Ordering::Relaxed);
                existed
            };
            self.subs.remove(f);
            codes.push(if existed {
                reason::SUCCESS
            } else {
                reason::NO_SUBSCRIPTION_EXISTED
            });
        }
        let _ = self.save().await;
        self.send(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            reason_codes: codes,
            properties: Properties::default(),
        }));
    }
}
