//! The messages a queue has read and not delivered, in delivery order:
//! higher priority first (for a priority queue), then log order; with each
//! message's expiry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::message::Message;

/// One ready message.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) message: Arc<Message>,
    pub(super) redelivered: bool,
    /// When it expires (ms since the epoch), if it does.
    pub(super) expires_at: Option<i64>,
}

/// Delivery order: (255 − priority, offset).
type Slot = (u8, i64);

#[derive(Debug, Default)]
pub(super) struct Ready {
    entries: BTreeMap<Slot, Entry>,
    /// offset → slot.
    slots: BTreeMap<i64, Slot>,
    expiries: BTreeSet<(i64, i64)>,
    bytes: u64,
    /// The queue's `x-max-priority`; `None`: priorities are ignored.
    max_priority: Option<u8>,
}

impl Ready {
    pub(super) fn new(max_priority: Option<u8>) -> Ready {
        Ready {
            max_priority,
            ..Ready::default()
        }
    }

    fn slot(&self, offset: i64, m: &Message) -> Slot {
        match self.max_priority {
            Some(max) => {
                let p = m.properties.priority.unwrap_or(0).min(max);
                (255 - p, offset)
            }
            None => (0, offset),
        }
    }

    pub(super) fn insert(&mut self, offset: i64, entry: Entry) {
        self.remove(offset);
        let slot = self.slot(offset, &entry.message);
        if let Some(at) = entry.expires_at {
            self.expiries.insert((at, offset));
        }
        self.bytes += entry.message.body.len() as u64;
        self.slots.insert(offset, slot);
        self.entries.insert(slot, entry);
    }

    pub(super) fn remove(&mut self, offset: i64) -> Option<Entry> {
        let slot = self.slots.remove(&offset)?;
        let e = self.entries.remove(&slot)?;
        if let Some(at) = e.expires_at {
            self.expiries.remove(&(at, offset));
        }
        self.bytes = self.bytes.saturating_sub(e.message.body.len() as u64);
        Some(e)
    }

    /// The offset of the next message to deliver.
    pub(super) fn first_offset(&self) -> Option<i64> {
        self.entries.keys().next().map(|(_, offset)| *offset)
    }

    /// The next message to deliver.
    pub(super) fn pop_first(&mut self) -> Option<(i64, Entry)> {
        let (&(_, offset), _) = self.entries.iter().next()?;
        self.remove(offset).map(|e| (offset, e))
    }

    /// Removes and returns every message expired at `now`.
    pub(super) fn expired(&mut self, now: i64) -> Vec<(i64, Entry)> {
        let due: Vec<i64> = self
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, o)| *o)
            .collect();
        due.into_iter()
            .filter_map(|o| self.remove(o).map(|e| (o, e)))
            .collect()
    }

    /// The earliest expiry.
    pub(super) fn next_expiry(&self) -> Option<i64> {
        self.expiries.iter().next().map(|(at, _)| *at)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.slots.clear();
        self.expiries.clear();
        self.bytes = 0;
    }

    /// Offsets, ascending.
    pub(super) fn offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.slots.keys().copied()
    }

    /// Offsets of requeued (once delivered) messages.
    pub(super) fn redelivered(&self) -> impl Iterator<Item = i64> + '_ {
        self.slots
            .iter()
            .filter(|(_, s)| self.entries.get(s).is_some_and(|e| e.redelivered))
            .map(|(o, _)| *o)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::BasicProperties;

    fn entry(priority: Option<u8>, expires_at: Option<i64>) -> Entry {
        Entry {
            message: Arc::new(Message {
                exchange: String::new(),
                routing_key: String::new(),
                properties: BasicProperties {
                    priority,
                    ..BasicProperties::default()
                },
                body: bytes::Bytes::from_static(b"abc"),
            }),
            redelivered: false,
            expires_at,
        }
    }

    #[test]
    fn priority_then_log_order() {
        let mut r = Ready::new(Some(5));
        r.insert(1, entry(None, None));
        r.insert(2, entry(Some(9), None)); // capped at 5
        r.insert(3, entry(Some(5), None));
        r.insert(4, entry(Some(1), None));
        let order: Vec<i64> = std::iter::from_fn(|| r.pop_first().map(|(o, _)| o)).collect();
        assert_eq!(order, [2, 3, 4, 1]);
        let mut plain = Ready::new(None);
        plain.insert(2, entry(Some(9), None));
        plain.insert(1, entry(None, None));
        assert_eq!(plain.pop_first().unwrap().0, 1);
    }

    #[test]
    fn expiry_and_bytes() {
        let mut r = Ready::new(None);
        r.insert(1, entry(None, Some(100)));
        r.insert(2, entry(None, Some(50)));
        r.insert(3, entry(None, None));
        assert_eq!(r.bytes(), 9);
        assert_eq!(r.next_expiry(), Some(50));
        let gone: Vec<i64> = r.expired(100).into_iter().map(|(o, _)| o).collect();
        assert_eq!(gone, [2, 1]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.bytes(), 3);
        assert_eq!(r.next_expiry(), None);
    }
}
