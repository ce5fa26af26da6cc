//! The Azure network resource model: ARM documents as clients send them ([`arm`]), ARM ids
//! ([`id`]), environments merged from several documents ([`environment`]), and validation
//! ([`validate`]) into a typed [`model::Model`] whose rules are [`rule::Rule`]s; flow log filters
//! ([`flow_log_filter`]).
//!
//! Pure: no IO, no clock. Callers read files and pass text.

pub mod arm;
pub mod defaults;
pub mod environment;
pub mod error;
pub mod flow_log_filter;
pub mod id;
pub mod model;
pub mod rule;
pub mod validate;

pub use environment::{Environment, LoadError};
pub use error::{ErrorCode, ValidationError};
pub use id::ResourceId;
pub use model::Model;
pub use validate::{validate, KnownTags};
