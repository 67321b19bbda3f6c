//! `tokenspeed-server`: the OpenAI-compatible HTTP front end (not built yet: see issue 5).

/// Message printed by the front ends until the HTTP server lands.
pub const NOT_BUILT_YET: &str =
    "tokenspeed-server: the HTTP server is not built yet (planned in the server issue)";
