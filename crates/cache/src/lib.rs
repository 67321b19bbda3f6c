//! `tokenspeed-cache`: KV page pool, recurrent-state slot pool and the hybrid radix prefix
//! cache that stores state checkpoints next to KV pages.
