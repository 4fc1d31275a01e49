//! The binding-key trie of one topic exchange: which binding keys match a routing key?
//!
//! # Format
//! Keys are words separated by `.`; words may be empty (`a..b` has three words, `.` two) and
//! the empty key has no words at all (as in RabbitMQ). In a binding key `*` stands for exactly
//! one word and `#` for any number of words, none included; `#` alone matches every routing
//! key, the empty one included.
//!
//! The trie has one node per binding-key prefix: literal words in a map, `*` and `#` in slots
//! of their own; a node where a binding key ends holds that key. A lookup runs the trie as an
//! automaton over the routing key's words, keeping the set of nodes the words read so far can
//! have reached: a literal or `*` child moves on one word, a `#` child is entered without
//! reading a word and stays where it is while reading any. The set never holds a node twice,
//! so a lookup costs at most (words + 1) × nodes steps whatever the keys (`#.#.#.…` patterns
//! cannot make it blow up).
//!
//! # Invariants
//! - Every node below the root leads to at least one binding key: removal prunes empty nodes.
//! - A binding key is held by exactly one node: the one its words lead to.
//!
//! # Concurrency
//! Plain data; lookups take `&self`.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::ptr;

/// A set of distinct binding keys, indexed for matching routing keys.
#[derive(Debug, Clone, Default)]
pub(super) struct TopicTrie {
    root: Node,
}

#[derive(Debug, Clone, Default)]
struct Node {
    words: HashMap<String, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// The binding key that ends here, kept so a lookup can name it.
    key: Option<String>,
}

/// The words of a key; none for the empty key.
fn words(key: &str) -> impl Iterator<Item = &str> {
    (!key.is_empty())
        .then(|| key.split('.'))
        .into_iter()
        .flatten()
}

impl TopicTrie {
    /// Adds a binding key; false when it was already there.
    pub(super) fn insert(&mut self, key: &str) -> bool {
        let mut node = &mut self.root;
        for word in words(key) {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                _ => node.words.entry(word.to_owned()).or_default(),
            };
        }
        if node.key.is_some() {
            return false;
        }
        node.key = Some(key.to_owned());
        true
    }

    /// Removes a binding key, pruning the nodes it leaves empty; true when it was there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
        let words: Vec<&str> = words(key).collect();
        self.root.remove(&words)
    }

    /// Calls `found` once with every binding key that matches `routing_key`.
    pub(super) fn matches<'a>(&'a self, routing_key: &str, mut found: impl FnMut(&'a str)) {
        let mut active = Active::default();
        let mut next = Active::default();
        active.enter(&self.root, false);
        for word in words(routing_key) {
            for &(node, in_hash) in &active.nodes {
                if in_hash {
                    next.enter(node, true);
                }
                if let Some(star) = node.star.as_deref() {
                    next.enter(star, false);
                }
                if let Some(child) = node.words.get(word) {
                    next.enter(child, false);
                }
            }
            if next.nodes.is_empty() {
                return;
            }
            std::mem::swap(&mut active, &mut next);
            next.clear();
        }
        for (node, _) in active.nodes {
            if let Some(key) = &node.key {
                found(key);
            }
        }
    }

    /// The number of binding keys (for tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.root.keys()
    }

    /// The number of nodes, the root included (for tests of pruning).
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.root.count()
    }
}

impl Node {
    fn is_empty(&self) -> bool {
        self.key.is_none() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    /// Removes the key at the end of `words` below this node, pruning emptied children.
    fn remove(&mut self, words: &[&str]) -> bool {
        let Some((&word, rest)) = words.split_first() else {
            return self.key.take().is_some();
        };
        let child = match word {
            "*" => self.star.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.words.get_mut(word),
        };
        let Some(child) = child else {
            return false;
        };
        let removed = child.remove(rest);
        if child.is_empty() {
            match word {
                "*" => self.star = None,
                "#" => self.hash = None,
                _ => {
                    self.words.remove(word);
                }
            }
        }
        removed
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        usize::from(self.key.is_some())
            + self.words.values().map(Node::keys).sum::<usize>()
            + self.star.as_deref().map_or(0, Node::keys)
            + self.hash.as_deref().map_or(0, Node::keys)
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        1 + self.words.values().map(Node::count).sum::<usize>()
            + self.star.as_deref().map_or(0, Node::count)
            + self.hash.as_deref().map_or(0, Node::count)
    }
}

/// The nodes a lookup has reached after some words, each once; `true` marks a `#` node, which
/// may read further words without moving. `seen` holds the `#` nodes among them.
#[derive(Default)]
struct Active<'a> {
    nodes: Vec<(&'a Node, bool)>,
    seen: HashSet<ByAddress<'a>>,
}

impl<'a> Active<'a> {
    /// Adds `node`, and the `#` children below it that match no word.
    fn enter(&mut self, node: &'a Node, in_hash: bool) {
        let mut node = node;
        let mut in_hash = in_hash;
        loop {
            // Only a `#` node can be reached twice after the same words (through its parent and
            // by staying put); any other node comes from its one parent, which is here once.
            if in_hash && !self.seen.insert(ByAddress(node)) {
                return;
            }
            self.nodes.push((node, in_hash));
            let Some(hash) = node.hash.as_deref() else {
                return;
            };
            node = hash;
            in_hash = true;
        }
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.seen.clear();
    }
}

/// A node compared by identity: one trie node is one automaton state.
#[derive(Clone, Copy)]
struct ByAddress<'a>(&'a Node);

impl PartialEq for ByAddress<'_> {
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.0, other.0)
    }
}

impl Eq for ByAddress<'_> {}

impl Hash for ByAddress<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        ptr::hash(self.0, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::topic_reference;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn found(trie: &TopicTrie, routing_key: &str) -> Vec<String> {
        let mut keys = Vec::new();
        trie.matches(routing_key, |k| keys.push(k.to_owned()));
        keys.sort();
        keys
    }

    fn trie(keys: &[&str]) -> TopicTrie {
        let mut trie = TopicTrie::default();
        for key in keys {
            assert!(trie.insert(key));
        }
        trie
    }

    #[test]
    fn tutorial_examples() {
        let t = trie(&["*.orange.*", "*.*.rabbit", "lazy.#"]);
        let cases: &[(&str, &[&str])] = &[
            ("quick.orange.rabbit", &["*.*.rabbit", "*.orange.*"]),
            ("lazy.orange.elephant", &["*.orange.*", "lazy.#"]),
            ("quick.orange.fox", &["*.orange.*"]),
            ("lazy.brown.fox", &["lazy.#"]),
            ("lazy.pink.rabbit", &["*.*.rabbit", "lazy.#"]),
            ("quick.brown.fox", &[]),
            ("orange", &[]),
            ("quick.orange.new.rabbit", &[]),
            ("lazy.orange.new.rabbit", &["lazy.#"]),
            ("lazy", &["lazy.#"]),
        ];
        for (routing_key, expected) in cases {
            assert_eq!(found(&t, routing_key), *expected, "{routing_key}");
        }
    }

    #[test]
    fn empty_words_and_keys() {
        let t = trie(&["#", "*", "", "a..b", "a.*.b", ".", "*.*", "#.#", "a.#.b"]);
        assert_eq!(found(&t, ""), ["", "#", "#.#"]);
        assert_eq!(found(&t, "x"), ["#", "#.#", "*"]);
        assert_eq!(found(&t, "."), ["#", "#.#", "*.*", "."]);
        assert_eq!(found(&t, "a..b"), ["#", "#.#", "a.#.b", "a.*.b", "a..b"]);
        assert_eq!(found(&t, "a.b"), ["#", "#.#", "*.*", "a.#.b"]);
        assert_eq!(found(&t, "a.x.y.b"), ["#", "#.#", "a.#.b"]);
    }

    #[test]
    fn many_hashes_stay_cheap() {
        // 60 words against `#.a.#.a.…`: a backtracking matcher would try billions of splits.
        let key = vec!["#"; 20].join(".a.");
        let t = trie(&[&key]);
        let routing = vec!["a"; 60].join(".");
        assert_eq!(found(&t, &routing), [key]);
        assert!(found(&t, &vec!["a"; 18].join(".")).is_empty());
    }

    #[test]
    fn removal_prunes() {
        let mut t = trie(&["a.b.c", "a.*.#", "a.b"]);
        assert!(!t.insert("a.b"));
        assert_eq!((t.len(), t.node_count()), (3, 6));
        assert!(!t.remove("a"));
        assert!(!t.remove("a.b.c.d"));
        assert!(t.remove("a.b.c"));
        assert_eq!((t.len(), t.node_count()), (2, 5));
        assert!(t.remove("a.*.#"));
        assert!(!t.remove("a.*.#"));
        assert_eq!(found(&t, "a.b"), ["a.b"]);
        assert!(t.remove("a.b"));
        assert_eq!((t.len(), t.node_count()), (0, 1));
    }

    fn key_strategy(wildcards: bool) -> impl Strategy<Value = String> {
        let mut words = vec!["a", "b", ""];
        if wildcards {
            words.extend(["*", "#"]);
        }
        prop::collection::vec(prop::sample::select(words), 0..5).prop_map(|w| w.join("."))
    }

    proptest! {
        #[test]
        fn agrees_with_reference(
            keys in prop::collection::vec(key_strategy(true), 0..20),
            removed in prop::collection::vec(any::<bool>(), 20),
            routing_keys in prop::collection::vec(key_strategy(false), 1..10),
        ) {
            let mut t = TopicTrie::default();
            let mut kept = BTreeSet::new();
            for key in &keys {
                prop_assert_eq!(t.insert(key), kept.insert(key.clone()));
            }
            for (key, remove) in keys.iter().zip(&removed) {
                if *remove {
                    prop_assert_eq!(t.remove(key), kept.remove(key));
                }
            }
            prop_assert_eq!(t.len(), kept.len());
            for routing_key in &routing_keys {
                let expected: Vec<String> =
                    kept.iter().filter(|k| topic_reference(k, routing_key)).cloned().collect();
                prop_assert_eq!(found(&t, routing_key), expected, "routing key {:?}", routing_key);
            }
            for key in &kept {
                prop_assert!(t.remove(key));
            }
            prop_assert_eq!((t.len(), t.node_count()), (0, 1));
        }
    }
}
