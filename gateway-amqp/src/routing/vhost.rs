//! One vhost's part of the routing table: its exchanges, queues and the reverse index of
//! bindings, with the changes that must keep them consistent.
//!
//! # Invariants
//! - `sources[d]` holds exactly the exchanges whose bindings include one to `d`; no entry is
//!   empty.
//! - Every binding's destination exists: removing a queue or deleting an exchange removes the
//!   bindings to it first.
//! - An auto-delete exchange that loses its last binding as a source is deleted at once.
//!
//! # Concurrency
//! Plain data, owned by [`Exchanges`](super::Exchanges).

use std::collections::{HashMap, HashSet};

use super::RoutingError;
use super::bindings::{Bindings, Destination};
use super::exchange::{ExchangeDecl, PREDECLARED};
use super::headers::HeaderValue;
use super::table::Removed;

/// The exchanges, queues and bindings of one vhost.
#[derive(Debug, Clone)]
pub(super) struct Vhost<V> {
    pub(super) exchanges: HashMap<String, Exchange<V>>,
    /// The queues that exist: bindings may go to them and the default exchange reaches them.
    pub(super) queues: HashSet<String>,
    /// For each destination, the exchanges with a binding to it: removing a queue or exchange
    /// finds its bindings without visiting every exchange.
    pub(super) sources: HashMap<Destination, HashSet<String>>,
}

/// One exchange: its declaration and its bindings as a source.
#[derive(Debug, Clone)]
pub(super) struct Exchange<V> {
    pub(super) decl: ExchangeDecl<V>,
    /// The `alternate-exchange` argument, read once at declaration.
    pub(super) alternate: Option<String>,
    pub(super) bindings: Bindings<V>,
}

impl<V: HeaderValue> Vhost<V> {
    /// A vhost with only its pre-declared exchanges.
    pub(super) fn new() -> Self {
        let exchanges = PREDECLARED
            .iter()
            .map(|&(name, kind)| {
                let exchange = Exchange {
                    decl: ExchangeDecl::durable(kind),
                    alternate: None,
                    bindings: Bindings::new(kind),
                };
                (name.to_owned(), exchange)
            })
            .collect();
        Self {
            exchanges,
            queues: HashSet::new(),
            sources: HashMap::new(),
        }
    }

    /// Exchange `name`, or the 404 naming it.
    pub(super) fn exchange(&self, vhost: &str, name: &str) -> Result<&Exchange<V>, RoutingError> {
        self.exchanges
            .get(name)
            .ok_or_else(|| not_found(vhost, name))
    }

    /// Exchange `name`, or the 404 naming it.
    pub(super) fn exchange_mut(
        &mut self,
        vhost: &str,
        name: &str,
    ) -> Result<&mut Exchange<V>, RoutingError> {
        self.exchanges
            .get_mut(name)
            .ok_or_else(|| not_found(vhost, name))
    }

    /// Checks that a binding from `source` to `destination` may be added or removed: neither
    /// is the default exchange, and both exist.
    pub(super) fn check_binding(
        &self,
        vhost: &str,
        source: &str,
        destination: &Destination,
    ) -> Result<(), RoutingError> {
        if source.is_empty() || matches!(destination, Destination::Exchange(x) if x.is_empty()) {
            return Err(RoutingError::DefaultExchange);
        }
        self.exchange(vhost, source)?;
        match destination {
            Destination::Exchange(name) => self.exchange(vhost, name).map(drop),
            Destination::Queue(queue) if self.queues.contains(queue) => Ok(()),
            Destination::Queue(queue) => Err(RoutingError::QueueNotFound {
                vhost: vhost.to_owned(),
                queue: queue.clone(),
            }),
        }
    }

    /// Drops `source` from the exchanges bound to `destination`.
    pub(super) fn unlink(&mut self, destination: &Destination, source: &str) {
        if let Some(sources) = self.sources.get_mut(destination) {
            sources.remove(source);
            if sources.is_empty() {
                self.sources.remove(destination);
            }
        }
    }

    /// Deletes exchange `name` with its bindings as a source, then the bindings to it.
    pub(super) fn delete_exchange(&mut self, name: &str, removed: &mut Removed) {
        let Some(exchange) = self.exchanges.remove(name) else {
            return;
        };
        removed.exchanges.push(name.to_owned());
        removed.bindings += exchange.bindings.len();
        for destination in exchange.bindings.destinations() {
            self.unlink(destination, name);
        }
        self.remove_bindings_to(Destination::exchange(name), removed);
    }

    /// Removes every binding to `destination`, deleting the auto-delete exchanges it empties,
    /// and the bindings to those, and so on (a loop, not recursion: chains may be long).
    pub(super) fn remove_bindings_to(&mut self, destination: Destination, removed: &mut Removed) {
        let mut pending = vec![destination];
        while let Some(destination) = pending.pop() {
            let Some(sources) = self.sources.remove(&destination) else {
                continue;
            };
            let mut sources: Vec<String> = sources.into_iter().collect();
            sources.sort_unstable();
            for source in sources {
                let Some(exchange) = self.exchanges.get_mut(&source) else {
                    continue;
                };
                removed.bindings += exchange.bindings.remove_destination(&destination);
                if exchange.decl.auto_delete && exchange.bindings.is_empty() {
                    // No bindings as a source left, so nothing to unlink.
                    self.exchanges.remove(&source);
                    pending.push(Destination::exchange(&source));
                    removed.exchanges.push(source);
                }
            }
        }
    }

    /// Checks the invariants of the module docs.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mut expected: HashMap<&Destination, HashSet<&str>> = HashMap::new();
        for (name, exchange) in &self.exchanges {
            exchange.bindings.check_invariants();
            for destination in exchange.bindings.destinations() {
                match destination {
                    Destination::Queue(queue) => assert!(self.queues.contains(queue)),
                    Destination::Exchange(x) => assert!(self.exchanges.contains_key(x)),
                }
                expected.entry(destination).or_default().insert(name);
            }
        }
        let actual: HashMap<&Destination, HashSet<&str>> = self
            .sources
            .iter()
            .map(|(d, s)| (d, s.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(actual, expected);
    }
}

/// The 404 for a missing exchange.
fn not_found(vhost: &str, exchange: &str) -> RoutingError {
    RoutingError::ExchangeNotFound {
        vhost: vhost.to_owned(),
        exchange: exchange.to_owned(),
    }
}
