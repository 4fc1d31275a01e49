//! Random sequences of declarations, bindings and deletions: the table keeps its invariants,
//! and routing agrees with a router that tests every listed binding by definition.

use std::collections::{BTreeSet, HashSet};

use proptest::prelude::*;

use super::{Val, table, topic_reference};
use crate::routing::*;

const EXCHANGES: [&str; 5] = ["e0", "e1", "e2", "e3", "amq.topic"];
const QUEUES: [&str; 3] = ["q0", "q1", "q2"];
const KEYS: [&str; 6] = ["a", "a.b", "*.b", "#", "a.#", ""];
const ROUTING_KEYS: [&str; 5] = ["a", "a.b", "c.b", "", "a.b.c"];

/// One binding operation's operands, as indexes into the name lists.
#[derive(Debug, Clone)]
struct Target {
    source: usize,
    /// The destination queue, or `None` for the destination exchange.
    queue: Option<usize>,
    exchange: usize,
    key: usize,
    arguments: u8,
}

impl Target {
    fn destination(&self) -> Destination {
        match self.queue {
            Some(q) => Destination::queue(QUEUES[q]),
            None => Destination::exchange(EXCHANGES[self.exchange]),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Bind(Target),
    Unbind(Target),
    AddQueue(usize),
    RemoveQueue(usize),
    /// Delete an exchange, with if-unused or not.
    Delete(usize, bool),
    /// Declare an exchange again (as first declared), which recreates a deleted one.
    Declare(usize),
}

fn arguments(which: u8) -> Vec<(String, Val)> {
    match which % 3 {
        0 => vec![],
        1 => table(&[("h", Val::s("a"))]),
        _ => table(&[
            ("x-match", Val::s("any")),
            ("h", Val::s("b")),
            ("g", Val::Void),
        ]),
    }
}

fn target_strategy() -> impl Strategy<Value = Target> {
    let queue = prop::option::of(0..QUEUES.len());
    (0..5usize, queue, 0..5usize, 0..KEYS.len(), any::<u8>()).prop_map(
        |(source, queue, exchange, key, arguments)| Target {
            source,
            queue,
            exchange,
            key,
            arguments,
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => target_strategy().prop_map(Op::Bind),
        2 => target_strategy().prop_map(Op::Unbind),
        1 => (0..QUEUES.len()).prop_map(Op::AddQueue),
        1 => (0..QUEUES.len()).prop_map(Op::RemoveQueue),
        1 => (0..5usize, any::<bool>()).prop_map(|(e, if_unused)| Op::Delete(e, if_unused)),
        1 => (0..5usize).prop_map(Op::Declare),
    ]
}

/// An exchange's kind (modulo 4), auto-delete flag and alternate (an index into `e0`..`e3`,
/// 4 for a missing exchange).
fn shape_strategy() -> impl Strategy<Value = (u8, bool, Option<usize>)> {
    (any::<u8>(), any::<bool>(), prop::option::of(0..5usize))
}

/// The declaration of exchange `i`, from the drawn kinds, auto-delete flags and alternates.
fn decl(i: usize, shape: &[(u8, bool, Option<usize>)]) -> ExchangeDecl<Val> {
    let (kind, auto_delete, alternate) = shape[i];
    let kind = [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ][usize::from(kind % 4)];
    let arguments = alternate.map_or_else(Vec::new, |a| {
        table(&[(
            "alternate-exchange",
            Val::s(["e0", "e1", "e2", "e3", "none"][a]),
        )])
    });
    ExchangeDecl {
        kind,
        durable: false,
        auto_delete,
        internal: false,
        arguments,
    }
}

/// Routes by testing every binding `bindings` lists, following exchanges and alternates.
fn reference_route(
    t: &Exchanges<Val>,
    exchange: &str,
    keys: &[&str],
    headers: &[(String, Val)],
) -> Vec<String> {
    let mut queues = BTreeSet::new();
    let mut seen = HashSet::from([exchange.to_owned()]);
    let mut pending = vec![exchange.to_owned()];
    while let Some(name) = pending.pop() {
        let decl = t.exchange("/", &name).unwrap();
        let mut next = Vec::new();
        let mut hit_any = false;
        for binding in t.bindings("/", &name) {
            let hit = match decl.kind {
                ExchangeKind::Direct => keys.contains(&binding.routing_key),
                ExchangeKind::Fanout => true,
                ExchangeKind::Topic => keys.iter().any(|k| topic_reference(binding.routing_key, k)),
                ExchangeKind::Headers => headers_match(binding.arguments, headers),
            };
            if !hit {
                continue;
            }
            hit_any = true;
            match binding.destination {
                Destination::Queue(queue) => {
                    queues.insert(queue.clone());
                }
                Destination::Exchange(x) => next.push(x.clone()),
            }
        }
        if !hit_any {
            next.extend(decl.alternate_exchange().map(str::to_owned));
        }
        for x in next {
            if t.exchange("/", &x).is_some() && seen.insert(x.clone()) {
                pending.push(x);
            }
        }
    }
    queues.into_iter().collect()
}

proptest! {
    #[test]
    fn random_operations_keep_routing_right(
        shape in prop::collection::vec(shape_strategy(), 4),
        ops in prop::collection::vec(op_strategy(), 1..40),
        routing_keys in prop::collection::vec(prop::sample::select(ROUTING_KEYS.to_vec()), 0..3),
        header in prop::option::of(prop::sample::select(vec!["a", "b"])),
    ) {
        let mut t = Exchanges::new();
        t.add_vhost("/");
        for (i, name) in EXCHANGES.iter().take(4).enumerate() {
            prop_assert_eq!(t.declare_exchange("/", name, decl(i, &shape)), Ok(true));
        }
        for queue in QUEUES {
            prop_assert_eq!(t.add_queue("/", queue), Ok(true));
        }
        for op in ops {
            match op {
                Op::Bind(b) => {
                    let (source, key) = (EXCHANGES[b.source], KEYS[b.key]);
                    let _ = t.bind("/", source, b.destination(), key, arguments(b.arguments));
                }
                Op::Unbind(b) => {
                    let (source, key) = (EXCHANGES[b.source], KEYS[b.key]);
                    let _ = t.unbind("/", source, &b.destination(), key, &arguments(b.arguments));
                }
                Op::AddQueue(q) => {
                    let _ = t.add_queue("/", QUEUES[q]);
                }
                Op::RemoveQueue(q) => {
                    let _ = t.remove_queue("/", QUEUES[q]);
                }
                Op::Delete(e, if_unused) => {
                    let used = t.bindings("/", EXCHANGES[e]).next().is_some();
                    let result = t.delete_exchange("/", EXCHANGES[e], if_unused);
                    if e == 4 {
                        prop_assert_eq!(result.map_err(|e| e.reply_code()), Err(403));
                    } else if if_unused && used {
                        prop_assert_eq!(result.map_err(|e| e.reply_code()), Err(406));
                    } else {
                        prop_assert!(t.exchange("/", EXCHANGES[e]).is_none());
                    }
                }
                Op::Declare(e) if e < 4 => {
                    let _ = t.declare_exchange("/", EXCHANGES[e], decl(e, &shape));
                }
                Op::Declare(_) => {}
            }
            t.check_invariants();
        }
        let headers = header.map_or_else(Vec::new, |h| table(&[("h", Val::s(h))]));
        for exchange in EXCHANGES {
            if t.exchange("/", exchange).is_none() {
                continue;
            }
            let routed = t.route_keys("/", exchange, &routing_keys, &headers).unwrap();
            let expected = reference_route(&t, exchange, &routing_keys, &headers);
            prop_assert_eq!(&routed.queues, &expected, "exchange {}", exchange);
            for queue in &routed.queues {
                prop_assert!(t.has_queue("/", queue));
            }
        }
    }
}
