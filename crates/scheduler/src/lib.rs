//! `tokenspeed-scheduler`: request finite-state machine, chunked-prefill batch planning and
//! overlap bookkeeping on top of `tokenspeed-cache`.
