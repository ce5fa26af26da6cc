//! The rules every bound NIC gets before its stages: flow records, DHCP, neighbour discovery,
//! anti-spoofing and the foreign-ICMP-error check (K2, K4).

use super::statements::*;
use crate::ruleset::{AddressFamily, RuleSpec};
use ipnet::IpNet;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::stmt::{Match, Operator, Statement};
use nsg_policy::evaluate::PlatformRule;
use nsg_policy::resolve::NicPolicy;
use nsg_tags::context;
use std::net::IpAddr;

/// Flow records: return traffic and existing connections pass every base chain.
pub(super) fn established() -> RuleSpec {
    rule(
        vec![ct_state(&["established", "related"])],
        Statement::Accept(None),
        "flow records: return traffic and existing connections".to_string(),
    )
}

pub(super) fn ct_state(states: &[&str]) -> Statement<'static> {
    let left = Expression::Named(NamedExpression::CT(nftables::expr::CT {
        key: "state".into(),
        family: None,
        dir: None,
    }));
    let right = match states {
        [one] => Expression::String(one.to_string().into()),
        many => Expression::List(
            many.iter()
                .map(|s| Expression::String(s.to_string().into()))
                .collect(),
        ),
    };
    Statement::Match(Match {
        left,
        right,
        op: Operator::IN,
    })
}

/// IPv6 neighbour and router discovery between a VM and its host is link plumbing, like ARP,
/// which NSGs do not filter either.
pub(super) fn neighbour_discovery() -> RuleSpec {
    let types = [
        "nd-router-solicit",
        "nd-router-advert",
        "nd-neighbor-solicit",
        "nd-neighbor-advert",
    ];
    rule(
        vec![equals(
            payload("icmpv6", "type"),
            anonymous_set(
                types
                    .iter()
                    .map(|t| Expression::String(t.to_string().into()))
                    .collect(),
            ),
        )],
        Statement::Accept(None),
        "IPv6 neighbour discovery".to_string(),
    )
}

/// DHCP with the host: always allowed, no rule can deny it (reference §3.8).
pub(super) fn dhcp() -> RuleSpec {
    let servers = [
        IpAddr::V4(context::HOST_VIP),
        IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
    ];
    rule(
        vec![
            port_match("udp", "dport", &[(67, 67)]),
            equals(payload("ip", "daddr"), addresses(&hosts(&servers))),
        ],
        Statement::Return(None),
        PlatformRule::AllowDhcp.reference().to_string(),
    )
}

/// The checks every packet from (`saddr`) or to (`daddr`) a NIC passes before its flow record or
/// any rule is considered (K4): anti-spoofing, conntrack's `invalid`, and ICMP errors that cite
/// a connection of someone else.
pub(super) fn guards(policy: &NicPolicy, field: &str) -> Vec<RuleSpec> {
    let mut rules = anti_spoofing(policy, field);
    rules.push(rule(
        vec![ct_state(&["invalid"])],
        Statement::Drop(None),
        "conntrack: invalid".to_string(),
    ));
    if !policy.ip_forwarding {
        rules.extend(foreign_related(policy));
    }
    rules
}

/// Related packets (ICMP errors) from or to a NIC must be about a connection the NIC is an end
/// of: otherwise a guest could deliver crafted errors citing another guest's flow, past every
/// rule. A NIC with IP forwarding is a router, whose errors about transit flows are genuine.
pub(super) fn foreign_related(policy: &NicPolicy) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for family in [AddressFamily::V4, AddressFamily::V6] {
        let own = own_addresses(policy, family);
        if own.is_empty() {
            continue;
        }
        // nft names the original direction's addresses `ct original ip saddr`: the family is
        // part of the key, not a field of its own.
        let not_own = |field: &str| {
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::CT(nftables::expr::CT {
                    key: format!("{} {field}", family.payload_protocol()).into(),
                    family: None,
                    dir: Some(nftables::expr::CTDir::Original),
                })),
                right: addresses(&own),
                op: Operator::NEQ,
            })
        };
        rules.push(rule(
            vec![ct_state(&["related"]), not_own("saddr"), not_own("daddr")],
            Statement::Drop(None),
            "related to a connection that is not the NIC's".to_string(),
        ));
    }
    rules
}

/// The NIC's addresses and prefixes of one family.
pub(super) fn own_addresses(policy: &NicPolicy, family: AddressFamily) -> Vec<IpNet> {
    of_family(&policy.addresses, family)
}

pub(super) fn of_family(nets: &[IpNet], family: AddressFamily) -> Vec<IpNet> {
    nets.iter()
        .filter(|net| {
            matches!(
                (net, family),
                (IpNet::V4(_), AddressFamily::V4) | (IpNet::V6(_), AddressFamily::V6)
            )
        })
        .copied()
        .collect()
}

/// Packets whose NIC-side address is not the NIC's are dropped, as Azure does for NICs without IP
/// forwarding; a NIC with IP forwarding may send and receive for any address of the families it
/// has.
pub(super) fn anti_spoofing(policy: &NicPolicy, field: &str) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for family in [AddressFamily::V4, AddressFamily::V6] {
        let own = own_addresses(policy, family);
        let statement = if own.is_empty() {
            equals(
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Nfproto,
                })),
                Expression::String(match family {
                    AddressFamily::V4 => "ipv4".into(),
                    AddressFamily::V6 => "ipv6".into(),
                }),
            )
        } else if policy.ip_forwarding {
            continue;
        } else {
            Statement::Match(Match {
                left: payload(family.payload_protocol(), field),
                right: addresses(&own),
                op: Operator::NEQ,
            })
        };
        rules.push(rule(
            vec![statement],
            Statement::Drop(None),
            "address is not the NIC's".to_string(),
        ));
    }
    rules
}
