//! `tokenspeed-cache`: the KV page pool, the recurrent-state slot pool and the hybrid radix
//! prefix cache that stores recurrent-state checkpoints next to KV pages.
//!
//! # Pieces
//! * [`PagePool`] / [`Pages`]: fixed pool of KV pages (page 0 reserved as the padding page);
//!   `Pages` owns a list of page ids and returns them on `Drop`.
//! * [`StatePool`] / [`Slot`]: fixed pool of recurrent-state slots (slot 0 reserved); `Slot`
//!   returns itself on `Drop`.
//! * [`RadixCache`]: page-granular radix tree over token ids (arena of nodes with generational
//!   indices). A node owns the `Pages` of its tokens and optionally a checkpoint `Slot`: the
//!   recurrent state after exactly the node's end depth.
//!
//! All handles are `Send + Sync` (shared state lives behind `Arc<Mutex<_>>`), so the whole
//! cache can live on the engine thread; cloning `PagePool`, `StatePool` or `RadixCache`
//! gives another handle to the same state.
//!
//! # Rules the scheduler relies on
//! * [`RadixCache::match_prefix`] matches full pages of `tokens[..len-1]` (the last token is
//!   always recomputed so logits exist) and truncates the hit to the deepest node end on the
//!   path that has a checkpoint: a hybrid model cannot resume from KV alone, so with no
//!   checkpoint on the path the hit is 0. The returned [`PathLock`] keeps the KV of the
//!   matched path and the checkpoint to copy from alive until it is dropped. The checkpoint
//!   slot must be treated as read-only (copy it into the request's working slot). Only that
//!   checkpoint is pinned: checkpoints of ancestors on a locked path stay evictable.
//! * [`RadixCache::insert`] publishes full pages. `pages` may cover only a suffix of `tokens`
//!   when the prefix before it is already cached (the caller holds a `PathLock` on it). Pages
//!   duplicating cached ones are freed; the result lists the tree's page ids for the whole
//!   path (the request must switch its page table to them) and locks the inserted path.
//!   A freed duplicate may be handed out by the next `alloc`; that is safe as long as GPU
//!   steps run in order (a step planned earlier finishes reading it before a later step
//!   writes it).
//! * Pools never evict on their own: on `alloc` failure call
//!   [`RadixCache::evict_pages`] / [`RadixCache::evict_checkpoints`], then `alloc` again.
//!   [`CacheStats::pages_evictable`] says how much eviction can free.
//!
//! # Example
//! ```
//! use tokenspeed_cache::{PagePool, RadixCache, StatePool};
//!
//! let pages = PagePool::new(17, 4)?; // 16 usable pages of 4 tokens
//! let slots = StatePool::new(5)?; // 4 usable slots
//! let cache = RadixCache::new(pages.clone(), slots.clone());
//!
//! // Turn 1: nothing cached. Compute 9 tokens, publish the 2 full pages + a checkpoint.
//! let turn1: Vec<u32> = (0..9).collect();
//! let hit = cache.match_prefix(&turn1);
//! assert_eq!(hit.hit_tokens, 0);
//! let kv = pages.alloc(2).expect("free pages");
//! let state_at_8 = slots.alloc().expect("free slot");
//! let published = cache.insert(&turn1[..8], kv, Some(state_at_8))?;
//! drop(published.lock);
//!
//! // Turn 2 extends turn 1: the 8 checkpointed tokens are reused.
//! let turn2: Vec<u32> = (0..12).collect();
//! let hit = cache.match_prefix(&turn2);
//! assert_eq!(hit.hit_tokens, 8);
//! assert_eq!(hit.page_ids.len(), 2);
//! assert!(hit.checkpoint.is_some()); // copy this slot into the request's working slot
//! drop(hit.lock);
//!
//! // Under memory pressure: free cached pages (LRU), then allocate.
//! assert_eq!(cache.evict_pages(1), 2);
//! cache.check_integrity()?;
//! # Ok::<(), tokenspeed_cache::CacheError>(())
//! ```
#![deny(missing_docs)]

mod error;
mod id_alloc;
mod pool;
mod radix;
mod slots;
mod stats;

pub use error::CacheError;
pub use pool::{PagePool, Pages};
pub use radix::{InsertResult, PathLock, PrefixMatch, RadixCache};
pub use slots::{Slot, StatePool};
pub use stats::CacheStats;

/// Index of a KV page in the page pool (0 = reserved padding page).
pub type PageId = u32;
/// Index of a recurrent-state slot in the state pool (0 = reserved).
pub type SlotId = u32;
/// A token id.
pub type TokenId = u32;
