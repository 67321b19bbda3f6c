//! One radix tree node and the map from a child's first page to the child.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::arena::NodeId;
use crate::{Pages, Slot, TokenId};

/// LRU key of a KV-evictable leaf: leaves without a checkpoint (`0`) sort first because no
/// match can ever use their KV, then least recently used.
pub(crate) type KvKey = (u8, u64, NodeId);
/// LRU key of an evictable checkpoint.
pub(crate) type CheckpointKey = (u64, NodeId);

/// Children keyed by their first page of tokens (distinct by construction of a radix tree).
pub(crate) type ChildMap = HashMap<Box<[TokenId]>, NodeId, BuildHasherDefault<FxHasher>>;

/// A node covers `key` (whole pages) below its parent and owns the KV pages of those tokens.
pub(crate) struct Node {
    /// `None` only for the root.
    pub parent: Option<NodeId>,
    /// Tokens of this node; a non-empty multiple of `page_size` except for the root.
    pub key: Vec<TokenId>,
    /// KV pages of `key`, one per `page_size` tokens.
    pub pages: Pages,
    /// Recurrent state after exactly `end_depth` tokens of this node's path.
    pub checkpoint: Option<Slot>,
    pub children: ChildMap,
    /// Tokens from the root to the end of this node.
    pub end_depth: usize,
    /// Live locks whose path passes through this node (they pin its KV).
    pub lock_count: u32,
    /// Live match locks that will copy this node's checkpoint (they pin the checkpoint).
    pub checkpoint_pins: u32,
    /// Last time this node's KV was used by a match or an insert.
    pub kv_tick: u64,
    /// Last time this node's checkpoint was matched or (re)published.
    pub checkpoint_tick: u64,
    /// Key under which the node sits in the KV LRU index, if it is an evictable leaf.
    pub kv_lru: Option<KvKey>,
    /// Key under which the node sits in the checkpoint LRU index, if evictable.
    pub checkpoint_lru: Option<CheckpointKey>,
}

impl Node {
    pub(crate) fn new(parent: Option<NodeId>, key: Vec<TokenId>, pages: Pages, end: usize) -> Self {
        Self {
            parent,
            key,
            pages,
            checkpoint: None,
            children: ChildMap::default(),
            end_depth: end,
            lock_count: 0,
            checkpoint_pins: 0,
            kv_tick: 0,
            checkpoint_tick: 0,
            kv_lru: None,
            checkpoint_lru: None,
        }
    }

    /// The first page of `key` (the child-map key of this node in its parent).
    pub(crate) fn first_page(&self, page_size: usize) -> &[TokenId] {
        &self.key[..page_size.min(self.key.len())]
    }
}

/// FxHash (rustc's hasher): child lookups hash a whole page per tree level, and SipHash would
/// dominate `match_prefix`. Token pages are not attacker-chosen map keys worth DoS hardening
/// (a collision only costs a slower lookup).
#[derive(Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.add(u64::from(byte));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}
