//! The routing table: every vhost's exchanges, queues and bindings, the operations of
//! `exchange.*` and `queue.bind`/`queue.unbind`, and the routing of a published message.
//!
//! # Format
//! See the [module docs](super): per vhost, exchanges by name, queue names, and for every
//! destination the set of exchanges with a binding to it.
//!
//! # Invariants
//! Those of the module docs; each vhost keeps its own (see `vhost.rs`).
//!
//! # Concurrency
//! Plain data: one owner applies changes; `route` takes `&self`.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::bindings::{BindingRef, Bindings, Destination};
use super::exchange::{ExchangeDecl, RESERVED_PREFIX};
use super::headers::{HeaderValue, validate_headers_binding};
use super::vhost::{Exchange, Vhost};
use super::{ExchangeKind, RoutingError};

/// Every vhost's exchanges, queues and bindings, generic over the field-table value `V`.
#[derive(Debug, Clone)]
pub struct Exchanges<V> {
    vhosts: HashMap<String, Vhost<V>>,
}

/// What removing bindings took away, so the caller can persist the same changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// How many bindings were removed.
    pub bindings: usize,
    /// The exchanges deleted, in order: for [`Exchanges::delete_exchange`] the one asked for
    /// first, then every auto-delete exchange that lost its last binding on the way.
    pub exchanges: Vec<String>,
}

/// Where a published message goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routed {
    /// The destination queues, each once, in name order.
    pub queues: Vec<String>,
}

impl Routed {
    /// True when the message reached at least one queue; when false, a `mandatory` message
    /// goes back to its publisher (`basic.return`, 312 NO_ROUTE).
    pub fn is_routed(&self) -> bool {
        !self.queues.is_empty()
    }
}

/// The outcome of [`Exchanges::route`].
pub type RouteResult = Result<Routed, RoutingError>;

impl<V> Default for Exchanges<V> {
    fn default() -> Self {
        Self {
            vhosts: HashMap::new(),
        }
    }
}

impl<V: HeaderValue> Exchanges<V> {
    /// A table without vhosts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds vhost `name` with its pre-declared exchanges (`""`, `amq.direct`, `amq.fanout`,
    /// `amq.topic`, `amq.headers`, `amq.match`). False when it existed, which changes nothing.
    pub fn add_vhost(&mut self, name: &str) -> bool {
        if self.vhosts.contains_key(name) {
            return false;
        }
        self.vhosts.insert(name.to_owned(), Vhost::new());
        true
    }

    /// Removes vhost `name` with everything in it; false when it did not exist.
    pub fn delete_vhost(&mut self, name: &str) -> bool {
        self.vhosts.remove(name).is_some()
    }

    /// Whether vhost `name` exists.
    pub fn has_vhost(&self, name: &str) -> bool {
        self.vhosts.contains_key(name)
    }

    /// Records that queue `queue` exists, so it can be bound and the default exchange reaches
    /// it. False when it was known already.
    ///
    /// # Errors
    /// [`RoutingError::VhostNotFound`] (530).
    pub fn add_queue(&mut self, vhost: &str, queue: &str) -> Result<bool, RoutingError> {
        Ok(self.vhost_mut(vhost)?.queues.insert(queue.to_owned()))
    }

    /// Forgets queue `queue` (it was deleted) and removes every binding to it. Auto-delete
    /// exchanges left without bindings are deleted and listed in the result.
    ///
    /// # Errors
    /// [`RoutingError::VhostNotFound`] (530).
    pub fn remove_queue(&mut self, vhost: &str, queue: &str) -> Result<Removed, RoutingError> {
        let host = self.vhost_mut(vhost)?;
        host.queues.remove(queue);
        let mut removed = Removed::default();
        host.remove_bindings_to(Destination::queue(queue), &mut removed);
        Ok(removed)
    }

    /// Whether queue `queue` is known in `vhost`.
    pub fn has_queue(&self, vhost: &str, queue: &str) -> bool {
        self.vhosts
            .get(vhost)
            .is_some_and(|host| host.queues.contains(queue))
    }

    /// `exchange.declare` (not passive): creates exchange `name`, or checks that an existing
    /// one is equivalent. Returns true when it created the exchange.
    ///
    /// # Errors
    /// - [`RoutingError::VhostNotFound`] (530).
    /// - [`RoutingError::DefaultExchange`] (403) for `""`.
    /// - [`RoutingError::Inequivalent`] (406) when the exchange exists with another type,
    ///   flag or argument (the pre-declared ones included).
    /// - [`RoutingError::ReservedName`] (403) for a new name starting with `amq.`.
    /// - [`RoutingError::InvalidAlternateExchange`] (406) when `alternate-exchange` is not a
    ///   string.
    pub fn declare_exchange(
        &mut self,
        vhost: &str,
        name: &str,
        decl: ExchangeDecl<V>,
    ) -> Result<bool, RoutingError> {
        if name.is_empty() {
            return Err(RoutingError::DefaultExchange);
        }
        let host = self.vhost_mut(vhost)?;
        if let Some(existing) = host.exchanges.get(name) {
            existing.decl.check_equivalent(&decl, vhost, name)?;
            return Ok(false);
        }
        if name.starts_with(RESERVED_PREFIX) {
            return Err(RoutingError::ReservedName {
                exchange: name.to_owned(),
            });
        }
        let alternate = decl.parse_alternate(vhost, name)?;
        let exchange = Exchange {
            bindings: Bindings::new(decl.kind),
            decl,
            alternate,
        };
        host.exchanges.insert(name.to_owned(), exchange);
        Ok(true)
    }

    /// `exchange.declare` with passive set: the declaration of exchange `name`, which must
    /// exist.
    ///
    /// # Errors
    /// [`RoutingError::VhostNotFound`] (530), [`RoutingError::DefaultExchange`] (403) for `""`,
    /// [`RoutingError::ExchangeNotFound`] (404).
    pub fn declare_exchange_passive(
        &self,
        vhost: &str,
        name: &str,
    ) -> Result<&ExchangeDecl<V>, RoutingError> {
        if name.is_empty() {
            return Err(RoutingError::DefaultExchange);
        }
        Ok(&self.vhost(vhost)?.exchange(vhost, name)?.decl)
    }

    /// The declaration of exchange `name`, the default exchange included; `None` when it or
    /// the vhost does not exist.
    pub fn exchange(&self, vhost: &str, name: &str) -> Option<&ExchangeDecl<V>> {
        let host = self.vhosts.get(vhost)?;
        host.exchanges.get(name).map(|x| &x.decl)
    }

    /// Every exchange of `vhost` (none when it does not exist), in no particular order.
    pub fn exchanges<'a>(
        &'a self,
        vhost: &str,
    ) -> impl Iterator<Item = (&'a str, &'a ExchangeDecl<V>)> + use<'a, V> {
        self.vhosts
            .get(vhost)
            .into_iter()
            .flat_map(|host| host.exchanges.iter().map(|(n, x)| (n.as_str(), &x.decl)))
    }

    /// `exchange.delete`: deletes exchange `name` with its bindings, as a source and as a
    /// destination; auto-delete exchanges that lose their last binding this way go too. A
    /// missing exchange is no error: nothing is removed.
    ///
    /// # Errors
    /// - [`RoutingError::VhostNotFound`] (530).
    /// - [`RoutingError::DefaultExchange`] (403) for `""`, [`RoutingError::SystemExchange`]
    ///   (403) for `amq.*` names.
    /// - [`RoutingError::InUse`] (406) when `if_unused` is set and the exchange is the source
    ///   of a binding (bindings to it do not count).
    pub fn delete_exchange(
        &mut self,
        vhost: &str,
        name: &str,
        if_unused: bool,
    ) -> Result<Removed, RoutingError> {
        if name.is_empty() {
            return Err(RoutingError::DefaultExchange);
        }
        let host = self.vhost_mut(vhost)?;
        if name.starts_with(RESERVED_PREFIX) {
            return Err(RoutingError::SystemExchange {
                vhost: vhost.to_owned(),
                exchange: name.to_owned(),
            });
        }
        let mut removed = Removed::default();
        let Some(exchange) = host.exchanges.get(name) else {
            return Ok(removed);
        };
        if if_unused && !exchange.bindings.is_empty() {
            return Err(RoutingError::InUse {
                vhost: vhost.to_owned(),
                exchange: name.to_owned(),
            });
        }
        host.delete_exchange(name, &mut removed);
        Ok(removed)
    }

    /// `queue.bind` (destination a queue) or `exchange.bind` (destination an exchange): adds
    /// the binding from exchange `source` to `destination`. Returns false when the same
    /// binding (key and arguments alike) existed, which changes nothing.
    ///
    /// # Errors
    /// - [`RoutingError::VhostNotFound`] (530).
    /// - [`RoutingError::DefaultExchange`] (403) when the source or the destination exchange is
    ///   `""`.
    /// - [`RoutingError::ExchangeNotFound`] / [`RoutingError::QueueNotFound`] (404) for a
    ///   missing source or destination.
    /// - [`RoutingError::InvalidXMatch`] (406) on a headers exchange.
    pub fn bind(
        &mut self,
        vhost: &str,
        source: &str,
        destination: Destination,
        routing_key: &str,
        arguments: Vec<(String, V)>,
    ) -> Result<bool, RoutingError> {
        let host = self.vhost_mut(vhost)?;
        host.check_binding(vhost, source, &destination)?;
        let exchange = host.exchange_mut(vhost, source)?;
        if exchange.decl.kind == ExchangeKind::Headers {
            validate_headers_binding(&arguments)?;
        }
        if !exchange
            .bindings
            .insert(destination.clone(), routing_key, arguments)
        {
            return Ok(false);
        }
        host.sources
            .entry(destination)
            .or_default()
            .insert(source.to_owned());
        Ok(true)
    }

    /// `queue.unbind` / `exchange.unbind`: removes the binding from `source` to
    /// `destination` with this key and these arguments (in any order). A missing binding is no
    /// error (`bindings` is 0 in the result). An auto-delete source that loses its last binding
    /// is deleted, and so on.
    ///
    /// # Errors
    /// As for [`Exchanges::bind`], but for `x-match`, which is not checked.
    pub fn unbind(
        &mut self,
        vhost: &str,
        source: &str,
        destination: &Destination,
        routing_key: &str,
        arguments: &[(String, V)],
    ) -> Result<Removed, RoutingError> {
        let host = self.vhost_mut(vhost)?;
        host.check_binding(vhost, source, destination)?;
        let exchange = host.exchange_mut(vhost, source)?;
        let mut removed = Removed::default();
        if !exchange
            .bindings
            .remove(destination, routing_key, arguments)
        {
            return Ok(removed);
        }
        removed.bindings = 1;
        let still_bound = exchange.bindings.has_destination(destination);
        let emptied = exchange.decl.auto_delete && exchange.bindings.is_empty();
        if !still_bound {
            host.unlink(destination, source);
        }
        if emptied {
            host.delete_exchange(source, &mut removed);
        }
        Ok(removed)
    }

    /// Every binding whose source is exchange `source` (none when it does not exist), in no
    /// particular order.
    pub fn bindings<'a>(
        &'a self,
        vhost: &str,
        source: &str,
    ) -> impl Iterator<Item = BindingRef<'a, V>> + use<'a, V> {
        self.vhosts
            .get(vhost)
            .and_then(|host| host.exchanges.get(source))
            .into_iter()
            .flat_map(|exchange| exchange.bindings.iter())
    }

    /// Routes a message published to `exchange` with `routing_key` and `headers`: see
    /// [`Exchanges::route_keys`].
    ///
    /// # Errors
    /// As for [`Exchanges::route_keys`].
    pub fn route(
        &self,
        vhost: &str,
        exchange: &str,
        routing_key: &str,
        headers: &[(String, V)],
    ) -> RouteResult {
        self.route_keys(vhost, exchange, &[routing_key], headers)
    }

    /// Routes a message published to `exchange` with several routing keys (the routing key
    /// and those of its `CC` and `BCC` headers) and `headers`: the queues it reaches, each
    /// once.
    ///
    /// The default exchange reaches the known queues named by the routing keys. Any other
    /// exchange follows its bindings that match; a binding to an exchange routes on through
    /// that one. An exchange whose bindings match nothing (no queue, no exchange) passes the
    /// message to its alternate exchange, if that exists. Each exchange routes a message at
    /// most once, so cycles of bindings and alternate exchanges end.
    ///
    /// # Errors
    /// [`RoutingError::VhostNotFound`] (530), [`RoutingError::ExchangeNotFound`] (404),
    /// [`RoutingError::InternalExchange`] (403) when publishing to an internal exchange.
    pub fn route_keys(
        &self,
        vhost: &str,
        exchange: &str,
        routing_keys: &[&str],
        headers: &[(String, V)],
    ) -> RouteResult {
        let host = self.vhost(vhost)?;
        let first = host.exchange(vhost, exchange)?;
        if first.decl.internal {
            return Err(RoutingError::InternalExchange {
                vhost: vhost.to_owned(),
                exchange: exchange.to_owned(),
            });
        }
        let mut queues = BTreeSet::new();
        let mut pending = vec![(exchange, first)];
        // Each exchange routes at most once: the one published to is already reached.
        let mut seen = HashSet::from([exchange]);
        let mut reach = |name| {
            let exchange = host.exchanges.get(name).filter(|_| seen.insert(name));
            exchange.map(|exchange| (name, exchange))
        };
        let mut matched = Vec::new();
        while let Some((name, current)) = pending.pop() {
            if name.is_empty() {
                // The default exchange: every queue is bound to it by its name.
                let named = routing_keys.iter().filter_map(|key| host.queues.get(*key));
                queues.extend(named.map(String::as_str));
                continue;
            }
            current
                .bindings
                .matching(routing_keys, headers, &mut matched);
            if matched.is_empty() {
                pending.extend(current.alternate.as_deref().and_then(&mut reach));
            }
            for destination in matched.drain(..) {
                match destination {
                    Destination::Queue(queue) => {
                        queues.insert(queue.as_str());
                    }
                    Destination::Exchange(name) => pending.extend(reach(name)),
                }
            }
        }
        Ok(Routed {
            queues: queues.into_iter().map(str::to_owned).collect(),
        })
    }

    fn vhost(&self, vhost: &str) -> Result<&Vhost<V>, RoutingError> {
        self.vhosts
            .get(vhost)
            .ok_or_else(|| RoutingError::VhostNotFound {
                vhost: vhost.to_owned(),
            })
    }

    fn vhost_mut(&mut self, vhost: &str) -> Result<&mut Vhost<V>, RoutingError> {
        self.vhosts
            .get_mut(vhost)
            .ok_or_else(|| RoutingError::VhostNotFound {
                vhost: vhost.to_owned(),
            })
    }

    /// Checks the invariants of every vhost (for tests).
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        for host in self.vhosts.values() {
            host.check_invariants();
        }
    }
}
