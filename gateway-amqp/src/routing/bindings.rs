//! The bindings of one exchange, indexed for its type's matching.
//!
//! # Format
//! A binding is (destination, routing key, arguments); two bindings are the same when all three
//! are, arguments compared as tables in any order. Bindings are grouped by routing key, then by
//! destination, each group holding the distinct argument tables. A second index lists each
//! destination's routing keys, so a destination's bindings go without a scan; a topic exchange
//! also keeps its binding keys in a [`TopicTrie`].
//!
//! # Invariants
//! - No empty group: a routing key is in `by_key` iff some binding has it, and a destination
//!   is in `by_destination` iff some binding has it, listing exactly the keys it is bound with.
//! - For a topic exchange, the trie holds exactly the keys of `by_key`; for other types it is
//!   empty.
//! - `len` is the number of bindings.
//!
//! # Concurrency
//! Plain data, owned by its exchange.

use std::collections::{HashMap, HashSet};

use super::exchange::ExchangeKind;
use super::headers::{HeaderValue, headers_match, same_table};
use super::topic::TopicTrie;

/// Where a binding sends the messages it matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// A queue, by name.
    Queue(String),
    /// Another exchange, by name (an exchange-to-exchange binding), which routes further.
    Exchange(String),
}

impl Destination {
    /// The queue `name`.
    pub fn queue(name: &str) -> Self {
        Self::Queue(name.to_owned())
    }

    /// The exchange `name`.
    pub fn exchange(name: &str) -> Self {
        Self::Exchange(name.to_owned())
    }
}

/// One binding of an exchange, as [`Exchanges::bindings`](super::Exchanges::bindings) lists
/// it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BindingRef<'a, V> {
    /// Where the binding sends matching messages.
    pub destination: &'a Destination,
    /// The binding key (a pattern for topic exchanges; unused by fanout and headers ones).
    pub routing_key: &'a str,
    /// The binding's arguments as given (`x-match` and the header values for headers
    /// exchanges).
    pub arguments: &'a [(String, V)],
}

/// The argument tables of the bindings from one routing key to one destination.
type Tables<V> = Vec<Vec<(String, V)>>;

/// The bindings whose source is one exchange.
#[derive(Debug, Clone)]
pub(super) struct Bindings<V> {
    kind: ExchangeKind,
    by_key: HashMap<String, HashMap<Destination, Tables<V>>>,
    by_destination: HashMap<Destination, HashSet<String>>,
    topic: TopicTrie,
    len: usize,
}

impl<V: HeaderValue> Bindings<V> {
    /// No bindings, for an exchange of type `kind`.
    pub(super) fn new(kind: ExchangeKind) -> Self {
        Self {
            kind,
            by_key: HashMap::new(),
            by_destination: HashMap::new(),
            topic: TopicTrie::default(),
            len: 0,
        }
    }

    /// Adds a binding; false when the same one was there already.
    pub(super) fn insert(
        &mut self,
        destination: Destination,
        routing_key: &str,
        arguments: Vec<(String, V)>,
    ) -> bool {
        let by_destination = self.by_key.entry(routing_key.to_owned()).or_default();
        if by_destination.is_empty() && self.kind == ExchangeKind::Topic {
            self.topic.insert(routing_key);
        }
        let tables = by_destination.entry(destination.clone()).or_default();
        if tables.iter().any(|t| same_table(t, &arguments)) {
            return false;
        }
        tables.push(arguments);
        self.by_destination
            .entry(destination)
            .or_default()
            .insert(routing_key.to_owned());
        self.len += 1;
        true
    }

    /// Removes a binding; false when there was no such binding.
    pub(super) fn remove(
        &mut self,
        destination: &Destination,
        routing_key: &str,
        arguments: &[(String, V)],
    ) -> bool {
        let Some(by_destination) = self.by_key.get_mut(routing_key) else {
            return false;
        };
        let Some(tables) = by_destination.get_mut(destination) else {
            return false;
        };
        let Some(i) = tables.iter().position(|t| same_table(t, arguments)) else {
            return false;
        };
        tables.swap_remove(i);
        self.len -= 1;
        if tables.is_empty() {
            by_destination.remove(destination);
            if let Some(keys) = self.by_destination.get_mut(destination) {
                keys.remove(routing_key);
                if keys.is_empty() {
                    self.by_destination.remove(destination);
                }
            }
            if by_destination.is_empty() {
                self.drop_key(routing_key);
            }
        }
        true
    }

    /// Removes every binding to `destination`; returns how many there were.
    pub(super) fn remove_destination(&mut self, destination: &Destination) -> usize {
        let Some(keys) = self.by_destination.remove(destination) else {
            return 0;
        };
        let mut removed = 0;
        for key in keys {
            let Some(by_destination) = self.by_key.get_mut(&key) else {
                continue;
            };
            removed += by_destination.remove(destination).map_or(0, |t| t.len());
            if by_destination.is_empty() {
                self.drop_key(&key);
            }
        }
        self.len -= removed;
        removed
    }

    fn drop_key(&mut self, routing_key: &str) {
        self.by_key.remove(routing_key);
        if self.kind == ExchangeKind::Topic {
            self.topic.remove(routing_key);
        }
    }

    /// The number of bindings.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// True when the exchange is the source of no binding.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some binding goes to `destination`.
    pub(super) fn has_destination(&self, destination: &Destination) -> bool {
        self.by_destination.contains_key(destination)
    }

    /// The distinct destinations of the bindings.
    pub(super) fn destinations(&self) -> impl Iterator<Item = &Destination> {
        self.by_destination.keys()
    }

    /// Every binding, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = BindingRef<'_, V>> {
        self.by_key.iter().flat_map(|(key, by_destination)| {
            by_destination
                .iter()
                .flat_map(move |(destination, tables)| {
                    tables.iter().map(move |arguments| BindingRef {
                        destination,
                        routing_key: key,
                        arguments,
                    })
                })
        })
    }

    /// Pushes onto `out` the destinations of the bindings a message with `routing_keys` and
    /// `headers` matches, possibly more than once each.
    pub(super) fn matching<'a>(
        &'a self,
        routing_keys: &[&str],
        headers: &[(String, V)],
        out: &mut Vec<&'a Destination>,
    ) {
        match self.kind {
            ExchangeKind::Direct => {
                for key in routing_keys {
                    if let Some(by_destination) = self.by_key.get(*key) {
                        out.extend(by_destination.keys());
                    }
                }
            }
            ExchangeKind::Fanout => out.extend(self.by_destination.keys()),
            ExchangeKind::Topic => {
                for key in routing_keys {
                    self.topic.matches(key, |bound| {
                        if let Some(by_destination) = self.by_key.get(bound) {
                            out.extend(by_destination.keys());
                        }
                    });
                }
            }
            ExchangeKind::Headers => {
                for by_destination in self.by_key.values() {
                    for (destination, tables) in by_destination {
                        if tables.iter().any(|t| headers_match(t, headers)) {
                            out.push(destination);
                        }
                    }
                }
            }
        }
    }

    /// Checks the invariants of the module docs.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mut len = 0;
        for (key, by_destination) in &self.by_key {
            assert!(!by_destination.is_empty());
            for (destination, tables) in by_destination {
                assert!(!tables.is_empty());
                assert!(self.by_destination[destination].contains(key));
                len += tables.len();
            }
        }
        for (destination, keys) in &self.by_destination {
            for key in keys {
                assert!(self.by_key[key].contains_key(destination));
            }
        }
        assert_eq!(self.len, len);
        let expected_trie = if self.kind == ExchangeKind::Topic {
            self.by_key.len()
        } else {
            0
        };
        assert_eq!(self.topic.len(), expected_trie);
    }
}
