//! The subscription trie.
