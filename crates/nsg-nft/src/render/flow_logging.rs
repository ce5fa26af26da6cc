//! Flow logging in the kernel (docs/semantics.md K11): the kernel itself says which NSG rule
//! decided a flow, so that flow logs never guess from a 5-tuple.
//!
//! * Every NSG rule that can be logged gets a number, [`RuleIds`]: 1 to 65,535, kept for the
//!   life of the enforcing process so that connections opened under one rendering are still
//!   named rightly after the next.
//! * An allow rule sets its number in the connection's conntrack mark before it accepts: the
//!   low 16 bits for an outbound stage, the high 16 bits for an inbound one, leaving the other
//!   half. A later stage of the same direction overwrites the half, so the mark names the last
//!   NSG that allowed the flow, as flow logs do (D6). Conntrack's events then carry the mark.
//! * A deny rule jumps to a chain of its number, shared by every NIC the rule applies at, that
//!   logs the packet to an nflog group with prefix `opennsg <number> ` and drops it; a `limit`
//!   before it drops without logging beyond a rate per rule, so a flood cannot flood the host.
//!   The logged packet carries the connection's mark (`meta mark set ct mark`), which names
//!   the rule of a bound sender's outbound stage that allowed it before a receiver denied it.

use super::statements::rule;
use crate::ruleset::{ChainSpec, Table};
use nftables::expr::{BinaryOperation, Expression, Meta, MetaKey, NamedExpression, CT};
use nftables::stmt::{JumpTarget, Limit, Log, Mangle, Statement};
use nsg_model::rule::{Access, Direction, RuleKind};
use nsg_model::ResourceId;
use std::collections::HashMap;

/// Prefix of every nflog message OpenNSG's deny chains send (`opennsg 42 `).
pub const LOG_PREFIX: &str = "opennsg ";

/// How denied packets are logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLogging {
    /// The nflog group deny chains log to.
    pub group: u16,
    /// Denied packets logged per second and rule at most; the rest are dropped unlogged.
    pub denied_per_second: u32,
    /// Packets logged in a burst above the rate.
    pub denied_burst: u32,
}

impl Default for FlowLogging {
    fn default() -> Self {
        FlowLogging {
            group: 7433,
            denied_per_second: 50,
            denied_burst: 100,
        }
    }
}

/// An NSG rule as flow logs name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoggedRule {
    pub nsg: ResourceId,
    pub kind: RuleKind,
    pub name: String,
    pub direction: Direction,
    pub access: Access,
}

/// The numbers given to logged rules; a rule keeps its number as long as this value lives.
#[derive(Clone, Debug, Default)]
pub struct RuleIds {
    by_rule: HashMap<LoggedRule, u16>,
    /// `rules[n - 1]` is rule number `n`.
    rules: Vec<LoggedRule>,
}

impl RuleIds {
    /// The number of `rule`, given now if it has none; `None` once 65,535 rules are numbered
    /// (that rule is then enforced but not logged).
    pub fn id(&mut self, rule: &LoggedRule) -> Option<u16> {
        if let Some(&id) = self.by_rule.get(rule) {
            return Some(id);
        }
        let id = u16::try_from(self.rules.len() + 1).ok()?;
        self.rules.push(rule.clone());
        self.by_rule.insert(rule.clone(), id);
        Some(id)
    }

    /// The rule numbered `id`.
    pub fn rule(&self, id: u16) -> Option<&LoggedRule> {
        self.rules.get(usize::from(id).checked_sub(1)?)
    }
}

/// The rule numbers a conntrack mark holds: (outbound, inbound); 0 is none.
pub fn mark_ids(mark: u32) -> (Option<u16>, Option<u16>) {
    let id = |half: u32| u16::try_from(half).ok().filter(|&id| id != 0);
    (id(mark & 0xffff), id(mark >> 16))
}

/// The rule number of an nflog prefix written by a deny chain.
pub fn parse_log_prefix(prefix: &str) -> Option<u16> {
    prefix.strip_prefix(LOG_PREFIX)?.trim_end().parse().ok()
}

/// `ct mark set ct mark & KEEP | VALUE`: rule `id` into the half of `direction`, in the form
/// nft lists it back (the mask keeps the other half and has the value's bits set).
pub(super) fn mark_statement(direction: Direction, id: u16) -> Statement<'static> {
    let (keep, value) = match direction {
        Direction::Outbound => (0xffff_0000u32, u32::from(id)),
        Direction::Inbound => (0x0000_ffff, u32::from(id) << 16),
    };
    let mark = || {
        Expression::Named(NamedExpression::CT(CT {
            key: "mark".into(),
            family: None,
            dir: None,
        }))
    };
    let masked = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        mark(),
        Expression::Number(keep | value),
    )));
    Statement::Mangle(Mangle {
        key: mark(),
        value: Expression::BinaryOperation(Box::new(BinaryOperation::OR(vec![
            masked,
            Expression::Number(value),
        ]))),
    })
}

/// The chain deny rule `id` goes to.
pub(super) fn deny_chain_name(id: u16) -> String {
    format!("flowlog-deny-{id}")
}

/// `goto` the deny chain of rule `id`.
pub(super) fn to_deny_chain(id: u16) -> Statement<'static> {
    Statement::Goto(JumpTarget {
        target: deny_chain_name(id).into(),
    })
}

/// The deny chain of rule `id`: beyond the rate, drop unlogged (counted); else log and drop.
pub(super) fn deny_chain(id: u16, logging: &FlowLogging) -> ChainSpec {
    let over_rate = Statement::Limit(Limit {
        rate: logging.denied_per_second,
        rate_unit: None,
        per: Some("second".into()),
        burst: Some(logging.denied_burst),
        burst_unit: None,
        inv: Some(true),
    });
    // The packet carries the connection's mark into the log: an outbound stage of a bound
    // sender may have allowed it before this (inbound) rule denied it, and conntrack will never
    // confirm the connection to say so. The packet is dropped right after.
    let mark_to_packet = Statement::Mangle(Mangle {
        key: Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark })),
        value: Expression::Named(NamedExpression::CT(CT {
            key: "mark".into(),
            family: None,
            dir: None,
        })),
    });
    let log = Statement::Log(Some(Log {
        prefix: Some(format!("{LOG_PREFIX}{id} ").into()),
        group: Some(u32::from(logging.group)),
        snaplen: None,
        queue_threshold: None,
        level: None,
        flags: None,
    }));
    ChainSpec::regular(
        Table::Inet,
        vec![
            rule(
                vec![over_rate],
                Statement::Drop(None),
                "flow log: over the rate, not logged".to_string(),
            ),
            rule(
                vec![mark_to_packet, log],
                Statement::Drop(None),
                "flow log: denied".to_string(),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_hold_one_rule_per_direction() {
        assert_eq!(mark_ids(0), (None, None));
        assert_eq!(mark_ids(0x0007_0005), (Some(5), Some(7)));
        assert_eq!(mark_ids(0x0000_ffff), (Some(65535), None));
    }

    #[test]
    fn log_prefixes_name_the_rule() {
        assert_eq!(parse_log_prefix("opennsg 42 "), Some(42));
        assert_eq!(parse_log_prefix("opennsg 42"), Some(42));
        assert_eq!(parse_log_prefix("other 42 "), None);
        assert_eq!(parse_log_prefix("opennsg x "), None);
        assert_eq!(parse_log_prefix("opennsg 70000 "), None);
    }

    #[test]
    fn rules_keep_their_numbers() {
        let rule = |name: &str| {
            LoggedRule {
            nsg: ResourceId::parse(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n",
            )
            .expect("test id"),
            kind: RuleKind::Custom,
            name: name.to_string(),
            direction: Direction::Inbound,
            access: Access::Allow,
        }
        };
        let mut ids = RuleIds::default();
        assert_eq!(ids.id(&rule("a")), Some(1));
        assert_eq!(ids.id(&rule("b")), Some(2));
        assert_eq!(ids.id(&rule("a")), Some(1));
        assert_eq!(ids.rule(2), Some(&rule("b")));
        assert_eq!(ids.rule(0), None);
        assert_eq!(ids.rule(3), None);
    }
}
