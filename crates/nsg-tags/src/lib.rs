//! Address groups for OpenNSG: prefix sets, the built-in tags and Microsoft's service tag catalog.
//!
//! Every group an NSG rule can name — a service tag such as `Storage.WestEurope`, the context tags
//! `VirtualNetwork`, `AzureLoadBalancer` and `Internet`, the platform tags `AzurePlatformDNS`,
//! `AzurePlatformIMDS` and `AzurePlatformLKM` — becomes one [`PrefixSet`]: a normalised, hashable
//! set of IPv4 and IPv6 addresses that the policy layer interns and shares between rules and NICs
//! (design invariant 3, "groups are sets").
//!
//! The crate does no IO (design invariant 2): [`Catalog::load_json`] parses bytes the caller read,
//! and the context tags are functions of the address spaces the caller computed.
//!
//! * [`prefix_set`] — [`PrefixSet`] and its set algebra.
//! * [`builtin`] — [`BuiltinTag`], the tag names that are not in Microsoft's files.
//! * [`context`] — the address sets behind the built-in tags.
//! * [`catalog`] — [`Catalog`], the service tags loaded from `ServiceTags_*.json` or the REST API.
//! * [`diff`] — [`CatalogDiff`], what changed between two lists, tag by tag.

pub mod builtin;
pub mod catalog;
pub mod context;
pub mod diff;
pub mod prefix_set;

pub use builtin::BuiltinTag;
pub use catalog::{Catalog, LoadSummary, ServiceTag, TagError};
pub use diff::{diff, CatalogDiff, TagChange, TagPrefixes};
pub use prefix_set::PrefixSet;

/// Rules may name the built-in tags and any tag of a loaded file; validation asks the catalog.
impl nsg_model::KnownTags for Catalog {
    fn is_known_tag(&self, name: &str) -> bool {
        BuiltinTag::parse(name).is_some() || self.contains(name)
    }
    fn unknown_tag_hint(&self, name: &str) -> String {
        self.unknown_tag_message(name)
    }
}
