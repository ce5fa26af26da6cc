//! Hit counts: how many packets and bytes each NSG rule decided, from the kernel's counters.
//!
//! Every rule OpenNSG writes carries an anonymous counter and a comment naming what it enforces
//! (`NSG/securityRules/NAME PRIORITY ACCESS`, see [`crate::render`]). A rule of an NSG becomes
//! several nft rules (per NIC, address family, protocol), so hits are summed by comment. Only
//! the first packet of a connection meets the rules (the rest pass as established), so the
//! counts are of new flows' first packets and of denied packets. A chain rewritten by an
//! apply starts its counters again from zero.

use crate::ruleset::{Ruleset, TABLE};
use nftables::schema::{NfListObject, NfObject, Nftables};
use nftables::stmt::{Counter, Statement};
use std::collections::BTreeMap;

/// Packets and bytes counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    pub packets: u64,
    pub bytes: u64,
}

/// What a rule comment says: the NSG, the rule, its priority and access.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleComment {
    /// The NSG's name.
    pub nsg: String,
    /// `securityRules/NAME` or `defaultSecurityRules/NAME`.
    pub rule: String,
    pub priority: u32,
    /// `Allow` or `Deny`.
    pub access: String,
}

impl RuleComment {
    /// Reads a security rule's comment; `None` for other rules (guards, platform exceptions) and
    /// for comments cut at nft's 128 bytes.
    pub fn parse(comment: &str) -> Option<RuleComment> {
        let mut words = comment.rsplitn(3, ' ');
        let access = words.next()?;
        let priority = words.next()?.parse().ok()?;
        let reference = words.next()?;
        if !matches!(access, "Allow" | "Deny") {
            return None;
        }
        let (nsg, rule) = ["/securityRules/", "/defaultSecurityRules/"]
            .into_iter()
            .find_map(|kind| {
                let at = reference.find(kind)?;
                Some((&reference[..at], &reference[at + 1..]))
            })?;
        Some(RuleComment {
            nsg: nsg.to_string(),
            rule: rule.to_string(),
            priority,
            access: access.to_string(),
        })
    }
}

/// The hits of every security rule of `desired` (zero where the kernel counted nothing or has
/// no such rule), from the kernel's listing of `inet opennsg`.
pub fn rule_hits(desired: &Ruleset, listing: &Nftables<'_>) -> BTreeMap<RuleComment, Hits> {
    let mut hits: BTreeMap<RuleComment, Hits> = desired
        .chains
        .values()
        .flat_map(|chain| &chain.rules)
        .filter_map(|rule| RuleComment::parse(rule.comment.as_deref()?))
        .map(|comment| (comment, Hits::default()))
        .collect();
    add_counters(listing, &mut hits, false);
    hits
}

/// The hits of every security rule the kernel's listing holds (for a running `enforce`, whose
/// table is the policy in force).
pub fn listed_rule_hits(listing: &Nftables<'_>) -> BTreeMap<RuleComment, Hits> {
    let mut hits = BTreeMap::new();
    add_counters(listing, &mut hits, true);
    hits
}

/// Adds the counters of each listed security rule to its comment's total in `hits`; rules not
/// in `hits` are added only with `add_unknown`.
fn add_counters(listing: &Nftables<'_>, hits: &mut BTreeMap<RuleComment, Hits>, add_unknown: bool) {
    for object in listing.objects.iter() {
        let NfObject::ListObject(NfListObject::Rule(rule)) = object else {
            continue;
        };
        if rule.table != TABLE {
            continue;
        }
        let Some(comment) = rule.comment.as_deref().and_then(RuleComment::parse) else {
            continue;
        };
        let total = match hits.get_mut(&comment) {
            Some(total) => total,
            None if add_unknown => hits.entry(comment).or_default(),
            None => continue,
        };
        for statement in rule.expr.iter() {
            if let Statement::Counter(Counter::Anonymous(Some(counter))) = statement {
                total.packets += counter.packets.unwrap_or(0) as u64;
                total.bytes += counter.bytes.unwrap_or(0) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_read_back() {
        let cases = [
            (
                "nsg1/securityRules/allow web 100 Allow",
                Some(("nsg1", "securityRules/allow web", 100, "Allow")),
            ),
            (
                "nsg-x/defaultSecurityRules/DenyAllInBound 65500 Deny",
                Some((
                    "nsg-x",
                    "defaultSecurityRules/DenyAllInBound",
                    65500,
                    "Deny",
                )),
            ),
            ("platformRules/AllowAzureDNS", None),
            ("nsg1/securityRules/r 100 Maybe", None),
            ("nsg1/securityRules/r x Allow", None),
            ("nsg1/other/r 100 Allow", None),
            ("", None),
        ];
        for (comment, expected) in cases {
            let parsed = RuleComment::parse(comment);
            let parsed = parsed.as_ref().map(|c| {
                (
                    c.nsg.as_str(),
                    c.rule.as_str(),
                    c.priority,
                    c.access.as_str(),
                )
            });
            assert_eq!(parsed, expected, "{comment:?}");
        }
    }
}
