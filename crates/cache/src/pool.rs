//! KV page pool and the owning [`Pages`] handle.

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::id_alloc::{lock, IdAlloc};
use crate::{CacheError, PageId};

/// A fixed pool of KV pages of `page_size` tokens each. Page 0 is reserved as the dummy page
/// that padding tokens write to, and is never handed out.
///
/// Cloning is cheap (an `Arc`); all clones share the same pages. The pool never evicts: when
/// [`alloc`](Self::alloc) fails, the caller evicts from its [`RadixCache`](crate::RadixCache)
/// (`evict_pages`) and retries.
#[derive(Clone)]
pub struct PagePool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    page_size: usize,
    ids: Mutex<IdAlloc>,
}

impl PagePool {
    /// A pool of `num_pages` pages (including the reserved page 0, so `num_pages - 1` can be
    /// allocated) of `page_size` tokens each.
    pub fn new(num_pages: usize, page_size: usize) -> Result<Self, CacheError> {
        if page_size == 0 {
            return Err(CacheError::ZeroPageSize);
        }
        let ids = Mutex::new(IdAlloc::new(num_pages, "num_pages")?);
        Ok(Self {
            shared: Arc::new(PoolShared { page_size, ids }),
        })
    }

    /// Allocates `n` pages, all or nothing: `None` when fewer than `n` are free. Never evicts.
    pub fn alloc(&self, n: usize) -> Option<Pages> {
        let ids = lock(&self.shared.ids).take(n)?;
        Some(Pages {
            pool: self.clone(),
            ids,
        })
    }

    /// Pages currently free.
    pub fn free_count(&self) -> usize {
        lock(&self.shared.ids).free_count()
    }

    /// Pages that can be allocated at all (`num_pages - 1`: page 0 is reserved).
    pub fn total(&self) -> usize {
        lock(&self.shared.ids).capacity()
    }

    /// Pages currently owned by live [`Pages`] handles (by requests or by the radix cache).
    pub fn outstanding(&self) -> usize {
        lock(&self.shared.ids).outstanding()
    }

    /// Tokens per page.
    pub fn page_size(&self) -> usize {
        self.shared.page_size
    }

    /// Whether `self` and `other` are handles of the same pool.
    pub fn same_pool(&self, other: &PagePool) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Whether page `id` is currently owned by some handle.
    pub(crate) fn is_handed_out(&self, id: PageId) -> bool {
        lock(&self.shared.ids).is_handed_out(id)
    }

    /// Checks the free list against the handed-out flags (`free + outstanding == total`).
    pub fn check_integrity(&self) -> Result<(), CacheError> {
        lock(&self.shared.ids).check("page pool")
    }
}

impl fmt::Debug for PagePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = lock(&self.shared.ids);
        f.debug_struct("PagePool")
            .field("page_size", &self.shared.page_size)
            .field("total", &ids.capacity())
            .field("free", &ids.free_count())
            .finish()
    }
}

/// Owning handle of an ordered list of pages of one [`PagePool`]; dropping it returns the
/// pages to the pool. There is no way to copy a page id into a second handle, so a page can
/// never be owned twice.
pub struct Pages {
    pool: PagePool,
    ids: Vec<PageId>,
}

impl Pages {
    /// An empty handle of `pool` (useful as an accumulator for [`append`](Self::append)).
    pub fn empty(pool: &PagePool) -> Self {
        Self {
            pool: pool.clone(),
            ids: Vec::new(),
        }
    }

    /// Number of pages held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no page is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Token capacity of the held pages (`len() * page_size`).
    pub fn token_capacity(&self) -> usize {
        self.ids.len() * self.pool.page_size()
    }

    /// The held page ids, in order.
    pub fn ids(&self) -> &[PageId] {
        &self.ids
    }

    /// The pool these pages belong to.
    pub fn pool(&self) -> &PagePool {
        &self.pool
    }

    /// Moves all pages of `other` to the end of `self`.
    ///
    /// # Panics
    /// If `other` belongs to a different pool (a programming error, not an input error).
    pub fn append(&mut self, mut other: Pages) {
        assert!(
            self.pool.same_pool(&other.pool),
            "Pages::append across different pools"
        );
        self.ids.append(&mut other.ids);
    }

    /// Splits off the pages from index `at` on into a new handle; `self` keeps `[0, at)`.
    ///
    /// # Panics
    /// If `at > len()`, like [`Vec::split_off`].
    pub fn split_off(&mut self, at: usize) -> Pages {
        Pages {
            pool: self.pool.clone(),
            ids: self.ids.split_off(at),
        }
    }

    /// Keeps the first `len` pages and returns the rest to the pool (no-op if `len >= len()`).
    pub fn truncate(&mut self, len: usize) {
        if len < self.ids.len() {
            drop(self.split_off(len));
        }
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            lock(&self.pool.shared.ids).give_back(&self.ids);
        }
    }
}

impl fmt::Debug for Pages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pages").field(&self.ids).finish()
    }
}
