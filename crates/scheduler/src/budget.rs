//! The token budget of one step: decodes first (one token each), prefill chunks from the
//! rest, chunk ends on page boundaries.

/// What is left of one step's token budget.
///
/// Decodes are reserved up front (`decodes_ahead`), so a prefill chunk planned before a
/// younger decode never eats that decode's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepBudget {
    tokens_left: usize,
    decodes_ahead: usize,
}

impl StepBudget {
    /// A budget of `max_tokens`, of which `decodes_ahead` are reserved for decodes.
    pub fn new(max_tokens: usize, decodes_ahead: usize) -> Self {
        Self {
            tokens_left: max_tokens,
            decodes_ahead,
        }
    }

    /// Tokens not yet given out.
    pub fn tokens_left(&self) -> usize {
        self.tokens_left
    }

    /// Takes one reserved decode token. Returns false when none is left (a caller bug, but
    /// planning then simply skips the decode).
    pub fn take_decode(&mut self) -> bool {
        if self.tokens_left == 0 {
            return false;
        }
        self.tokens_left -= 1;
        self.decodes_ahead = self.decodes_ahead.saturating_sub(1);
        true
    }

    /// Releases a reserved decode token that will not be used (its request was skipped or
    /// preempted).
    pub fn release_decode(&mut self) {
        self.decodes_ahead = self.decodes_ahead.saturating_sub(1);
    }

    /// Size of the next prefill chunk of a sequence of `total` tokens of which `done` are
    /// computed: all the rest if it fits, otherwise as much as fits ending on a page boundary
    /// (so every chunk but the last starts and ends page-aligned and its checkpoint offset is
    /// a whole number of pages into the chunk). 0 when not one page fits.
    pub fn prefill_chunk(&self, done: usize, total: usize, page_size: usize) -> usize {
        let room = self.tokens_left.saturating_sub(self.decodes_ahead);
        let rest = total.saturating_sub(done);
        if rest <= room {
            return rest;
        }
        ((done + room) / page_size * page_size).saturating_sub(done)
    }

    /// Gives out `n` prefill tokens.
    pub fn take(&mut self, n: usize) {
        self.tokens_left = self.tokens_left.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::StepBudget;

    #[test]
    fn whole_rest_when_it_fits() {
        assert_eq!(StepBudget::new(100, 10).prefill_chunk(8, 50, 4), 42);
    }

    #[test]
    fn chunk_ends_on_page_boundary_and_leaves_decode_tokens() {
        // room = 20 - 3 = 17; 8 + 17 = 25 -> boundary 24 -> 16 tokens.
        assert_eq!(StepBudget::new(20, 3).prefill_chunk(8, 100, 4), 16);
    }

    #[test]
    fn less_than_a_page_gives_nothing() {
        assert_eq!(StepBudget::new(5, 2).prefill_chunk(8, 100, 4), 0);
    }

    #[test]
    fn decodes_consume_reservation() {
        let mut b = StepBudget::new(6, 2);
        assert!(b.take_decode());
        b.release_decode();
        assert_eq!(b.prefill_chunk(0, 100, 1), 5);
        b.take(5);
        assert!(!b.take_decode());
    }
}
