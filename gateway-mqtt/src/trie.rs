//! The subscription trie: which subscribers does a message published to a topic name reach?
//!
//! # Format
//! One node per filter level from the root: literal levels in a map, `+` and `#` in slots of
//! their own. A node holds the subscriptions whose filter ends there: plain ones by subscriber
//! key, shared ones (`$share/{group}/{filter}`, stored at `filter`'s node) by group, each group's
//! members in key order with a round-robin cursor. A lookup walks the name's levels once,
//! following the literal child, the `+` child and collecting the `#` child at every level.
//!
//! # Invariants
//! - Every node below the root leads to at least one subscription: removal prunes empty nodes.
//! - `len` is the number of (key, filter) pairs; `by_key` holds exactly the subscriptions in the
//!   nodes, keyed by filter as given.
//! - A group's members are sorted by key and unique; its cursor is below the member count
//!   (or 0 when the group is empty, in which case the group itself is gone).
//!
//! # Concurrency
//! Plain data, no locks. [`SubscriptionTrie::matches`] takes `&mut self` because it advances the
//! round-robin cursors, so one owner (a task) holds the trie and answers lookups.
//!
//! # Crash
//! Nothing is persisted; whoever restores sessions inserts their subscriptions again.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::str::Split;
use std::sync::Arc;

use crate::topic;

/// One subscription's options, as the server stores them (MQTT 5.0 section 3.8.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubOptions {
    /// The maximum QoS the subscriber accepts on this subscription.
    pub qos: u8,
    /// Do not deliver the subscriber's own publications back to it.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages instead of clearing it.
    pub retain_as_published: bool,
    /// When to send retained messages at subscribe time (0, 1 or 2).
    pub retain_handling: u8,
    /// Echoed on every delivery through this subscription, so the client knows which one matched.
    pub subscription_id: Option<u32>,
}

/// One subscriber of a message, as [`SubscriptionTrie::matches`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<K> {
    /// Who receives the message.
    pub key: K,
    /// The maximum QoS over the matching subscriptions.
    pub qos: u8,
    /// Set when any matching subscription asked for no-local.
    pub no_local: bool,
    /// Set when any matching subscription asked for retain-as-published.
    pub retain_as_published: bool,
    /// The identifiers of all the matching subscriptions, ascending and without repeats.
    pub subscription_ids: Vec<u32>,
    /// The delivery is on behalf of a shared subscription (one member of a group).
    pub shared: bool,
    /// That shared subscription's filter as subscribed (`$share/{group}/{filter}`).
    pub share: Option<Arc<str>>,
}

/// A subscription index keyed by filter levels, generic over the subscriber key.
#[derive(Debug)]
pub struct SubscriptionTrie<K> {
    root: Node<K>,
    /// Each key's filters as given, with their options, for `remove_all` and `subscriptions_of`.
    by_key: HashMap<K, BTreeMap<String, SubOptions>>,
    len: usize,
}

#[derive(Debug)]
struct Node<K> {
    children: HashMap<String, Node<K>>,
    plus: Option<Box<Node<K>>>,
    hash: Option<Box<Node<K>>>,
    /// Plain subscriptions whose filter ends here.
    subs: HashMap<K, SubOptions>,
    /// Shared subscriptions whose filter ends here, by group name.
    groups: BTreeMap<String, Group<K>>,
}

/// The members of one shared subscription (group and filter).
#[derive(Debug)]
struct Group<K> {
    /// `$share/{group}/{filter}`.
    filter: Arc<str>,
    /// Sorted by key, so round-robin order does not depend on insertion history.
    members: Vec<(K, SubOptions)>,
    /// The member to try first for the next message.
    next: usize,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            hash: None,
            subs: HashMap::new(),
            groups: BTreeMap::new(),
        }
    }
}

/// Where a filter lives: `$share/{group}/{filter}` → (Some(group), filter), else (None, filter).
/// A malformed `$share/...` is stored as the plain filter it spells.
fn locate(filter: &str) -> (Option<&str>, &str) {
    match topic::parse_shared(filter) {
        Ok(Some((group, inner))) => (Some(group), inner),
        _ => (None, filter),
    }
}

impl<K: Clone + Eq + Hash + Ord> Default for SubscriptionTrie<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash + Ord> SubscriptionTrie<K> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            by_key: HashMap::new(),
            len: 0,
        }
    }

    /// Adds or replaces the subscription of `key` to `filter` (a plain filter or
    /// `$share/{group}/{filter}`). Returns true when it replaced an existing one: in MQTT a
    /// SUBSCRIBE to a filter the client already has replaces that subscription.
    ///
    /// The filter should have passed [`topic::validate_filter`]; an invalid one is stored level by
    /// level as written and matches nothing a valid name could be.
    pub fn insert(&mut self, key: K, filter: &str, options: SubOptions) -> bool {
        let (group, inner) = locate(filter);
        let mut node = &mut self.root;
        for level in inner.split('/') {
            node = node.child_or_insert(level);
        }
        let replaced = match group {
            None => node.subs.insert(key.clone(), options.clone()).is_some(),
            Some(group) => node
                .groups
                .entry(group.to_owned())
                .or_insert_with(|| Group::new(filter))
                .insert(key.clone(), options.clone()),
        };
        if !replaced {
            self.len += 1;
        }
        let filters = self.by_key.entry(key).or_default();
        filters.insert(filter.to_owned(), options);
        replaced
    }

    /// Removes the subscription of `key` to `filter` (as given at insert); true when it existed.
    pub fn remove(&mut self, key: &K, filter: &str) -> bool {
        let (group, inner) = locate(filter);
        let removed = self.root.remove(inner.split('/'), group, key);
        if removed {
            self.len -= 1;
            if let Some(filters) = self.by_key.get_mut(key) {
                filters.remove(filter);
                if filters.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        removed
    }

    /// Removes every subscription of `key`.
    pub fn remove_all(&mut self, key: &K) {
        for filter in self.by_key.remove(key).unwrap_or_default().into_keys() {
            let (group, inner) = locate(&filter);
            if self.root.remove(inner.split('/'), group, key) {
                self.len -= 1;
            }
        }
    }

    /// The subscribers of a message published to `name`.
    ///
    /// - Plain subscriptions: one entry per key, merging all of that key's matching filters
    ///   (maximum QoS, all subscription identifiers, no-local and retain-as-published OR-ed), as
    ///   MQTT 5.0 section 3.3.4 allows.
    /// - Shared subscriptions: for each matching (group, filter), one member in round-robin order:
    ///   the first from the group's cursor for which `pick(key)` is true (say, the member is
    ///   online); none when no member qualifies. `pick` is not consulted for plain subscriptions.
    ///
    /// Plain entries come first, then shared ones, each in key order. A name starting with `$`
    /// is not matched by filters starting with a wildcard ([`topic::matches`]).
    pub fn matches(&mut self, name: &str, pick: impl FnMut(&K) -> bool) -> Vec<Matched<K>> {
        let levels: Vec<&str> = name.split('/').collect();
        let mut found = Found {
            plain: BTreeMap::new(),
            shared: Vec::new(),
            pick,
        };
        walk(&mut self.root, &levels, !name.starts_with('$'), &mut found);
        let mut out: Vec<Matched<K>> = found.plain.into_values().collect();
        for m in &mut out {
            m.subscription_ids.sort_unstable();
            m.subscription_ids.dedup();
        }
        found.shared.sort_by(|a, b| a.key.cmp(&b.key));
        out.append(&mut found.shared);
        out
    }

    /// The number of (key, filter) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every subscription of `key`: (filter as given at insert, options), ordered by filter.
    pub fn subscriptions_of(&self, key: &K) -> Vec<(String, SubOptions)> {
        self.by_key.get(key).map_or_else(Vec::new, |filters| {
            filters
                .iter()
                .map(|(f, o)| (f.clone(), o.clone()))
                .collect()
        })
    }

    /// The number of nodes, the root included (for tests of pruning).
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.root.count()
    }
}

impl<K: Clone + Eq + Hash + Ord> Node<K> {
    fn child_or_insert(&mut self, level: &str) -> &mut Node<K> {
        match level {
            "+" => self.plus.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            _ => self.children.entry(level.to_owned()).or_default(),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    fn drop_child(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            "#" => self.hash = None,
            _ => drop(self.children.remove(level)),
        }
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty()
            && self.groups.is_empty()
            && self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
    }

    /// Removes `key`'s subscription at the end of `levels` (in `group` when shared), pruning the
    /// nodes it leaves empty. True when it existed.
    fn remove(&mut self, mut levels: Split<'_, char>, group: Option<&str>, key: &K) -> bool {
        let Some(level) = levels.next() else {
            let Some(name) = group else {
                return self.subs.remove(key).is_some();
            };
            let Some(members) = self.groups.get_mut(name) else {
                return false;
            };
            let removed = members.remove(key);
            if members.members.is_empty() {
                self.groups.remove(name);
            }
            return removed;
        };
        let Some(child) = self.child_mut(level) else {
            return false;
        };
        let removed = child.remove(levels, group, key);
        if child.is_empty() {
            self.drop_child(level);
        }
        removed
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        1 + self.children.values().map(Node::count).sum::<usize>()
            + self.plus.as_deref().map_or(0, Node::count)
            + self.hash.as_deref().map_or(0, Node::count)
    }
}

impl<K: Clone + Eq + Hash + Ord> Group<K> {
    fn new(filter: &str) -> Self {
        Self {
            filter: Arc::from(filter),
            members: Vec::new(),
            next: 0,
        }
    }

    /// Adds or replaces a member; true when it replaced one. The cursor keeps pointing at the
    /// same member.
    fn insert(&mut self, key: K, options: SubOptions) -> bool {
        match self.members.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => {
                self.members[i].1 = options;
                true
            }
            Err(i) => {
                if i < self.next {
                    self.next += 1;
                }
                self.members.insert(i, (key, options));
                false
            }
        }
    }

    /// Removes a member; true when it was one. The cursor moves to the member after it.
    fn remove(&mut self, key: &K) -> bool {
        let Ok(i) = self.members.binary_search_by(|(k, _)| k.cmp(key)) else {
            return false;
        };
        self.members.remove(i);
        if i < self.next {
            self.next -= 1;
        }
        if self.next >= self.members.len() {
            self.next = 0;
        }
        true
    }

    /// The first member from the cursor that `pick` accepts; the cursor moves past it.
    fn pick(&mut self, pick: &mut impl FnMut(&K) -> bool) -> Option<&(K, SubOptions)> {
        let n = self.members.len();
        let i = (0..n)
            .map(|step| (self.next + step) % n)
            .find(|&i| pick(&self.members[i].0))?;
        self.next = (i + 1) % n;
        self.members.get(i)
    }
}

/// What a lookup has found so far.
struct Found<K, P> {
    plain: BTreeMap<K, Matched<K>>,
    shared: Vec<Matched<K>>,
    pick: P,
}

impl<K: Clone + Eq + Hash + Ord, P: FnMut(&K) -> bool> Found<K, P> {
    /// Takes the subscriptions of a node whose filter matches the name.
    fn take(&mut self, node: &mut Node<K>) {
        for (key, options) in &node.subs {
            self.plain
                .entry(key.clone())
                .and_modify(|m| {
                    m.qos = m.qos.max(options.qos);
                    m.no_local |= options.no_local;
                    m.retain_as_published |= options.retain_as_published;
                    m.subscription_ids.extend(options.subscription_id);
                })
                .or_insert_with(|| Matched::new(key, options, false));
        }
        for group in node.groups.values_mut() {
            let filter = Arc::clone(&group.filter);
            if let Some((key, options)) = group.pick(&mut self.pick) {
                let mut m = Matched::new(key, options, true);
                m.share = Some(filter);
                self.shared.push(m);
            }
        }
    }
}

impl<K: Clone> Matched<K> {
    fn new(key: &K, options: &SubOptions, shared: bool) -> Self {
        Self {
            key: key.clone(),
            qos: options.qos,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            subscription_ids: options.subscription_id.into_iter().collect(),
            shared,
            share: None,
        }
    }
}

/// Collects the subscriptions under `node` that match the name's remaining `levels`. `wild`
/// is false only at the first level of a `$` name, where wildcards must not match.
fn walk<K, P>(node: &mut Node<K>, levels: &[&str], wild: bool, found: &mut Found<K, P>)
where
    K: Clone + Eq + Hash + Ord,
    P: FnMut(&K) -> bool,
{
    // `#` matches the remaining levels, or none: `sport/#` matches `sport`.
    if wild && let Some(hash) = node.hash.as_deref_mut() {
        found.take(hash);
    }
    let Some((level, rest)) = levels.split_first() else {
        found.take(node);
        return;
    };
    if wild && let Some(plus) = node.plus.as_deref_mut() {
        walk(plus, rest, true, found);
    }
    if let Some(child) = node.children.get_mut(*level) {
        walk(child, rest, true, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn opts(qos: u8, id: Option<u32>) -> SubOptions {
        SubOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
            subscription_id: id,
        }
    }

    fn keys(trie: &mut SubscriptionTrie<&'static str>, name: &str) -> Vec<&'static str> {
        trie.matches(name, |_| true)
            .into_iter()
            .map(|m| m.key)
            .collect()
    }

    #[test]
    fn spec_examples() {
        let mut t = SubscriptionTrie::new();
        for (key, filter) in [
            ("p1", "sport/tennis/player1/#"),
            ("sp", "sport/#"),
            ("t+", "sport/tennis/+"),
            ("s+", "sport/+"),
            ("++", "+/+"),
            ("/+", "/+"),
            ("+", "+"),
            ("#", "#"),
        ] {
            assert!(!t.insert(key, filter, opts(0, None)));
        }
        assert_eq!(
            keys(&mut t, "sport/tennis/player1"),
            ["#", "p1", "sp", "t+"]
        );
        assert_eq!(
            keys(&mut t, "sport/tennis/player1/score/wimbledon"),
            ["#", "p1", "sp"]
        );
        assert_eq!(keys(&mut t, "sport"), ["#", "+", "sp"]);
        assert_eq!(keys(&mut t, "sport/"), ["#", "++", "s+", "sp"]);
        assert_eq!(keys(&mut t, "/finance"), ["#", "++", "/+"]);
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn dollar_topics() {
        let mut t = SubscriptionTrie::new();
        for (key, filter) in [
            ("#", "#"),
            ("+m", "+/monitor/Clients"),
            ("s#", "$SYS/#"),
            ("s+", "$SYS/monitor/+"),
        ] {
            t.insert(key, filter, opts(0, None));
        }
        t.insert("g", "$share/g/#", opts(0, None));
        assert_eq!(keys(&mut t, "$SYS/monitor/Clients"), ["s#", "s+"]);
        assert_eq!(keys(&mut t, "x/monitor/Clients"), ["#", "+m", "g"]);
    }

    #[test]
    fn overlapping_subscriptions_merge() {
        let mut t = SubscriptionTrie::new();
        t.insert("c", "a/+", opts(1, Some(7)));
        t.insert(
            "c",
            "a/#",
            SubOptions {
                no_local: true,
                ..opts(2, Some(3))
            },
        );
        t.insert(
            "c",
            "#",
            SubOptions {
                retain_as_published: true,
                ..opts(0, None)
            },
        );
        t.insert("c", "a/b", opts(0, Some(7)));
        t.insert("d", "a/b", opts(1, None));
        let found = t.matches("a/b", |_| true);
        let c = Matched {
            key: "c",
            qos: 2,
            no_local: true,
            retain_as_published: true,
            subscription_ids: vec![3, 7],
            shared: false,
            share: None,
        };
        let d = Matched {
            key: "d",
            qos: 1,
            no_local: false,
            retain_as_published: false,
            subscription_ids: vec![],
            shared: false,
            share: None,
        };
        assert_eq!(found, [c, d]);
        assert_eq!(t.matches("a", |_| true)[0].subscription_ids, [3]);
    }

    #[test]
    fn resubscribe_replaces_options() {
        let mut t = SubscriptionTrie::new();
        assert!(!t.insert("c", "a/+", opts(0, Some(1))));
        assert!(t.insert("c", "a/+", opts(2, Some(2))));
        assert!(!t.insert("c", "$share/g/a/+", opts(0, None)));
        assert!(t.insert("c", "$share/g/a/+", opts(1, None)));
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.subscriptions_of(&"c"),
            [
                ("$share/g/a/+".to_owned(), opts(1, None)),
                ("a/+".to_owned(), opts(2, Some(2)))
            ]
        );
        let found = t.matches("a/b", |_| true);
        assert_eq!(
            (found[0].qos, &found[0].subscription_ids, found[0].shared),
            (2, &vec![2], false)
        );
        assert_eq!((found[1].qos, found[1].shared), (1, true));
    }

    #[test]
    fn shared_round_robin() {
        let mut t = SubscriptionTrie::new();
        for key in ["m1", "m2", "m3"] {
            t.insert(key, "$share/g/sensors/+", opts(1, None));
        }
        t.insert("plain", "sensors/#", opts(0, None));
        let mut counts = BTreeMap::new();
        for i in 0..300 {
            let found = t.matches(&format!("sensors/{i}"), |_| true);
            assert_eq!(found.len(), 2);
            assert_eq!((found[0].key, found[0].shared), ("plain", false));
            *counts.entry(found[1].key).or_insert(0) += 1;
        }
        assert_eq!(
            counts,
            BTreeMap::from([("m1", 100), ("m2", 100), ("m3", 100)])
        );
    }

    #[test]
    fn shared_groups_and_filters_pick_independently() {
        let mut t = SubscriptionTrie::new();
        t.insert("a", "$share/g1/x", opts(0, None));
        t.insert("b", "$share/g1/x", opts(0, None));
        t.insert("a", "$share/g2/x", opts(0, None));
        t.insert("b", "$share/g1/+", opts(0, None));
        t.insert("a", "x", opts(0, None));
        let found: Vec<_> = t
            .matches("x", |_| true)
            .into_iter()
            .map(|m| (m.key, m.shared))
            .collect();
        assert_eq!(found, [("a", false), ("a", true), ("a", true), ("b", true)]);
        assert_eq!(keys(&mut t, "x"), ["a", "a", "b", "b"]);
    }

    #[test]
    fn pick_skips_members() {
        let mut t = SubscriptionTrie::new();
        for key in ["a", "b", "c"] {
            t.insert(key, "$share/g/t", opts(0, None));
        }
        let online = |k: &&str| *k != "b";
        let picked: Vec<_> = (0..4).map(|_| t.matches("t", online)[0].key).collect();
        assert_eq!(picked, ["a", "c", "a", "c"]);
        assert!(t.matches("t", |_| false).is_empty());
        // The cursor survives members leaving and joining.
        assert!(t.remove(&"c", "$share/g/t"));
        t.insert("d", "$share/g/t", opts(0, None));
        let picked: Vec<_> = (0..4).map(|_| t.matches("t", |_| true)[0].key).collect();
        assert_eq!(picked, ["a", "b", "d", "a"]);
    }

    #[test]
    fn removal_prunes() {
        let mut t = SubscriptionTrie::new();
        let subs = [
            ("k", "a/b/c"),
            ("k", "a/b/d"),
            ("j", "a/+/#"),
            ("j", "$share/g/a/b/c"),
            ("k", "$share/g/a/b/c"),
        ];
        for (key, filter) in subs {
            t.insert(key, filter, opts(0, None));
        }
        assert_eq!((t.len(), t.node_count()), (5, 7));
        assert!(!t.remove(&"k", "a/b"));
        assert!(!t.remove(&"j", "a/b/c"));
        assert!(t.remove(&"k", "a/b/d"));
        assert_eq!((t.len(), t.node_count()), (4, 6));
        assert!(t.remove(&"j", "$share/g/a/b/c"));
        assert_eq!(keys(&mut t, "a/b/c"), ["j", "k", "k"]);
        t.remove_all(&"k");
        assert_eq!((t.len(), t.node_count()), (1, 4));
        assert!(t.subscriptions_of(&"k").is_empty());
        assert!(t.remove(&"j", "a/+/#"));
        assert!(!t.remove(&"j", "a/+/#"));
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 1);
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$s", "", "+"]);
        (prop::collection::vec(level, 0..4), any::<bool>())
            .prop_map(|(mut levels, hash)| {
                if hash {
                    levels.push("#");
                }
                levels.join("/")
            })
            .prop_filter("a valid filter", |f| topic::validate_filter(f).is_ok())
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "$s", ""]);
        prop::collection::vec(level, 1..5).prop_map(|levels| levels.join("/"))
    }

    proptest! {
        #[test]
        fn matches_agrees_with_topic_matches(
            subs in prop::collection::vec((0u8..4, filter_strategy()), 0..24),
            removed in prop::collection::vec(any::<bool>(), 24),
            names in prop::collection::vec(name_strategy(), 1..8),
        ) {
            let mut t = SubscriptionTrie::new();
            let mut kept = BTreeSet::new();
            for (key, filter) in &subs {
                prop_assert_eq!(topic::validate_filter(filter), Ok(()));
                t.insert(*key, filter, opts(0, None));
                kept.insert((*key, filter.clone()));
            }
            for (i, (key, filter)) in subs.iter().enumerate() {
                if removed[i] {
                    let existed = kept.remove(&(*key, filter.clone()));
                    prop_assert_eq!(t.remove(key, filter), existed);
                }
            }
            for (key, filter) in &kept {
                prop_assert!(t.subscriptions_of(key).iter().any(|(f, _)| f == filter));
            }
            prop_assert_eq!(t.len(), kept.len());
            for name in names.iter().filter(|n| topic::validate_name(n).is_ok()) {
                let want: BTreeSet<u8> =
                    kept.iter().filter(|(_, f)| topic::matches(f, name)).map(|(k, _)| *k).collect();
                let got: Vec<u8> = t.matches(name, |_| true).into_iter().map(|m| m.key).collect();
                prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "name {:?}", name);
            }
            for key in 0..4 {
                t.remove_all(&key);
            }
            prop_assert_eq!((t.len(), t.node_count()), (0, 1));
        }
    }
}
