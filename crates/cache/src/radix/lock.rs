//! Provisional (filled in by the next commit).

/// Key of a live lock in the tree's lock registry.
pub(crate) type LockId = u64;
