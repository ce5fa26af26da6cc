//! The `opennsg` binary's library part: reading inputs (environments, tag files), finding NICs
//! and parsing flows — the IO edge around the pure crates, shared by the commands and the tests.

pub mod bench;
pub mod clients;
pub mod config;
pub mod enforce;
pub mod enforce_metrics;
pub mod flow_logger;
pub mod hit_history;
pub mod inputs;
pub mod live_flows;
pub mod matrix_page;
pub mod owners;
pub mod query;
pub mod replay;
pub mod sarif;
pub mod tag_cache;
pub mod tags;
pub mod workload;
