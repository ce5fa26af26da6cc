//! Exact analyses of NSG policies: every answer is computed over the whole flow space of a NIC,
//! never by sampling, and comes with an example flow the reference evaluator confirms.
//!
//! The engine ([`partition`]) cuts a NIC's flow space (one direction) into regions inside which
//! every flow meets the same rules first, from the classifier's elementary intervals; the
//! analyses evaluate one example flow per region with the policy's own evaluator. Pure: no IO.

pub mod addresses;
pub mod cores;
pub mod diff;
pub mod example;
pub mod lint;
pub mod matrix;
pub mod nics;
pub mod partition;
pub mod query;
pub mod region;

pub use partition::{Analysis, FlowBox, Leaf, Precision};
pub use region::Region;
