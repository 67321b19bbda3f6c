//! Occupancy figures of pools and cache, for the scheduler's decisions and for metrics.

/// A snapshot of where every page and slot is. For both resources
/// `total == free + cached + in_use`, where `in_use` counts handles owned outside the tree
/// (by requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Allocatable pages (reserved page 0 excluded).
    pub pages_total: usize,
    /// Pages in the free list.
    pub pages_free: usize,
    /// Pages owned by the radix tree.
    pub pages_cached: usize,
    /// Pages owned by handles outside the tree (requests' private pages).
    pub pages_in_use: usize,
    /// Cached pages that `evict_pages` could free now (in nodes no lock passes through).
    pub pages_evictable: usize,
    /// Allocatable state slots (reserved slot 0 excluded).
    pub slots_total: usize,
    /// Slots in the free list.
    pub slots_free: usize,
    /// Slots held by the tree as checkpoints.
    pub slots_cached: usize,
    /// Slots owned outside the tree (requests' working and checkpoint slots).
    pub slots_in_use: usize,
    /// Cached checkpoints that `evict_checkpoints` could free now (not pinned by a match).
    pub slots_evictable: usize,
    /// Tree nodes, root excluded.
    pub nodes: usize,
    /// Tree nodes with a non-zero lock count, root excluded.
    pub locked_nodes: usize,
}
