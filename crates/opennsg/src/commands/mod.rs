//! The binary's longer commands, one module each; `main.rs` parses and dispatches.

pub(crate) mod diff;
pub(crate) mod enforce;
pub(crate) mod lint;
pub(crate) mod matrix;
pub(crate) mod query;
pub(crate) mod replay;
pub(crate) mod serve;

/// Exit codes: 0 ok / allow, 1 deny (or drift, or a difference), 2 bad input or invalid
/// environment.
pub(crate) const EXIT_DENY: u8 = 1;
pub(crate) const EXIT_BAD_INPUT: u8 = 2;
