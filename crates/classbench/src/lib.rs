//! ClassBench-format rule sets for benchmarking OpenNSG's packet classifier.
//!
//! The public ClassBench filter sets (Taylor & Turner, "ClassBench: A Packet Classification
//! Benchmark") are not redistributable, so this crate
//!
//! 1. reads and writes the ClassBench filter format ([`parse`], [`to_classbench`]), so real
//!    files can be passed in (e.g. `opennsg bench --classbench FILE`), and
//! 2. generates rule sets with ClassBench-like structure ([`generate`], [`generate_with`],
//!    [`Profile`]) and header traces for them ([`trace`], [`trace_with`]),
//!
//! plus a naive linear-scan reference classifier ([`first_match`]) and summary statistics
//! ([`Stats`]).
//!
//! Typical statistics of generated sets (10,000 rules, seed 2024; [`Stats`] prints them):
//!
//! | profile | dst /32 | dst /24–/31 | a `/0` side | src WC | dst WC / HI / EM / AR | TCP / UDP / ICMP / any |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | `acl` | 43% | 38% | 33% | 96% | 32 / 9 / 46 / 11% | 74 / 15 / 5 / 4% |
//! | `fw`  | 28% | 21% | 57% | 88% | 55 / 6 / 26 / 12% | 51 / 21 / 5 / 20% |
//! | `ipc` | 36% | 24% | 27% | 84% | 50 / 9 / 31 / 8%  | 46 / 30 / 14 / 8% |
//!
//! The crate does no IO: it parses `&str`s and generates values. Generation is deterministic for
//! a seed (an in-crate SplitMix64, no `rand`).
//!
//! ```
//! let rules = classbench::generate(classbench::Profile::Acl, 100, 7);
//! let text = classbench::to_classbench(&rules);
//! assert_eq!(classbench::parse(&text).unwrap(), rules);
//! for h in classbench::trace(&rules, 50, 7) {
//!     let _ = classbench::first_match(&rules, &h);
//! }
//! ```

pub mod format;
pub mod generator;
mod rng;
pub mod rule;
pub mod stats;
pub mod traces;

pub use format::{parse, to_classbench, ErrorKind, Field, ParseError};
pub use generator::{generate, generate_with, GenOptions, Profile};
pub use rule::{first_match, Header, PortClass, Rule, ALL_PORTS};
pub use stats::Stats;
pub use traces::{parse_trace, to_trace, trace, trace_with, TraceEntry, TraceError, TraceOptions};
