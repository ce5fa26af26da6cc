//! Policy: resolution of a validated model into per-NIC policies ([`resolve`]), the reference
//! evaluator ([`evaluate`]) and Network Watcher's effective security rules ([`effective`]).
//!
//! Pure: no IO, no clock.

pub mod classify;
pub mod compiled;
pub mod effective;
pub mod evaluate;
pub mod flow_log;
pub mod flow_table;
pub mod packet;
pub mod resolve;
pub mod settings;

pub use evaluate::{decide, explain, Decider, Decision, Endpoint, Explanation, Flow, PlatformRule};
pub use resolve::{Level, NicPolicy, Resolver, SetArena};
pub use settings::{Settings, SubscriptionType};
