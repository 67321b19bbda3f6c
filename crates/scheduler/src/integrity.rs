//! [`Scheduler::check_integrity`]: the cache's own proof plus the scheduler's accounting.

use crate::{Request, Resident, Scheduler, SchedulerError};

impl Scheduler {
    /// Proves that every page and slot is accounted for exactly once: the cache's check
    /// (`free + owned outside the tree + cached == total`, no id in two nodes), and on top of
    /// it that the pages and slots owned outside the tree are exactly those owned by resident
    /// requests, none by two of them, that no request's private page is pinned as a tree page
    /// by another, that every request's page table and cursors are consistent, and that the
    /// waiting / running lists match the request states.
    pub fn check_integrity(&self) -> Result<(), SchedulerError> {
        self.mem
            .cache
            .check_integrity()
            .map_err(|e| SchedulerError::Integrity(e.to_string()))?;
        let fail = |msg: String| Err(SchedulerError::Integrity(msg));
        let stats = self.mem.cache.stats();
        let mut page_owner = vec![false; stats.pages_total + 1];
        let mut slot_owner = vec![false; stats.slots_total + 1];
        let (mut pages, mut slots) = (0, 0);
        for (key, entry) in self.entries.iter() {
            let id = entry.seq.spec().id;
            let listed = match entry.request {
                Request::Waiting => self.waiting.contains(&key) && !self.running.contains(&key),
                Request::Prefilling { .. } | Request::Decoding { .. } => {
                    self.running.contains(&key) && !self.waiting.contains(&key)
                }
                Request::Finished(_) => {
                    return fail(format!("finished request {id} still in the table"))
                }
            };
            if !listed {
                return fail(format!(
                    "request {id} ({:?}) is not in exactly its queue",
                    entry.request.name()
                ));
            }
            let Some(resident) = entry.request.resident() else {
                continue;
            };
            self.check_resident(resident, entry.seq.tokens().len())
                .or_else(|m| fail(format!("request {id}: {m}")))?;
            for &page in resident.private_pages() {
                if std::mem::replace(&mut page_owner[page as usize], true) {
                    return fail(format!(
                        "page {page} owned twice (second owner: request {id})"
                    ));
                }
                pages += 1;
            }
            for slot in resident.owned_slots() {
                if std::mem::replace(&mut slot_owner[slot as usize], true) {
                    return fail(format!(
                        "slot {slot} owned twice (second owner: request {id})"
                    ));
                }
                slots += 1;
            }
        }
        for (_, entry) in self.entries.iter() {
            let Some(resident) = entry.request.resident() else {
                continue;
            };
            let tree_pages = &resident.page_table()[..resident.cached() / self.mem.page_size];
            if let Some(page) = tree_pages.iter().find(|&&p| page_owner[p as usize]) {
                return fail(format!(
                    "page {page} is both a tree page and a request's private page"
                ));
            }
        }
        if pages != stats.pages_in_use || slots != stats.slots_in_use {
            return fail(format!(
                "requests own {pages} pages / {slots} slots, pools say {} / {} are held outside the tree",
                stats.pages_in_use, stats.slots_in_use
            ));
        }
        if self.entries.len() != self.waiting.len() + self.running.len() {
            return fail("waiting + running lists do not match the request table".into());
        }
        Ok(())
    }

    fn check_resident(&self, r: &Resident, known_tokens: usize) -> Result<(), String> {
        let ps = self.mem.page_size;
        if !r.cached().is_multiple_of(ps) || r.cached() != r.lock_tokens() {
            return Err(format!(
                "cached {} not page-aligned or != locked path {}",
                r.cached(),
                r.lock_tokens()
            ));
        }
        if r.page_table().len() != r.cached() / ps + r.private_pages().len() {
            return Err("page table is not tree pages ++ private pages".into());
        }
        if r.page_table()[r.cached() / ps..] != *r.private_pages() {
            return Err("page table tail differs from the private pages".into());
        }
        if !(r.cached() <= r.committed() && r.committed() <= r.computed()) {
            return Err(format!(
                "cursors out of order: {} {} {}",
                r.cached(),
                r.committed(),
                r.computed()
            ));
        }
        if r.computed() > r.page_table().len() * ps || r.computed() > known_tokens + 1 {
            return Err(format!(
                "computed {} beyond pages or known tokens {known_tokens}",
                r.computed()
            ));
        }
        Ok(())
    }
}
