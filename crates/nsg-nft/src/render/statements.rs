//! Building blocks of rules: matches on protocols, ports, addresses and platform services,
//! verdicts, and the limits nft sets on comments and names.

use crate::ruleset::AddressFamily;
use crate::ruleset::{address_element, counter, RuleSpec};
use ipnet::IpNet;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, SetItem};
use nftables::stmt::{JumpTarget, Match, Operator, Statement};
use nsg_model::rule::{Ports, Protocol};
use nsg_policy::resolve::{PlatformService, ResolvedRule};
use nsg_tags::context;
use std::net::IpAddr;

/// `nft` limits comments to 128 bytes.
const COMMENT_LIMIT: usize = 128;

/// The matches that recognise traffic to a platform service (reference §3.8).
pub(super) fn platform_matches(service: PlatformService) -> Vec<Vec<Statement<'static>>> {
    let to = |servers: &[std::net::Ipv4Addr]| {
        let servers: Vec<IpAddr> = servers.iter().copied().map(IpAddr::V4).collect();
        equals(payload("ip", "daddr"), addresses(&hosts(&servers)))
    };
    match service {
        PlatformService::Dns => ["tcp", "udp"]
            .iter()
            .map(|p| {
                vec![
                    to(&[context::HOST_VIP]),
                    port_match(p, "dport", &[(53, 53)]),
                ]
            })
            .collect(),
        PlatformService::Imds => vec![vec![
            to(&[context::IMDS]),
            port_match("tcp", "dport", &[(80, 80)]),
        ]],
        PlatformService::Lkm => vec![vec![
            to(&context::KMS_ADDRESSES),
            port_match("tcp", "dport", &[(1688, 1688)]),
        ]],
    }
}

/// The protocol and port matches of a rule, one list per nft rule it needs.
pub(super) fn protocol_matches(
    rule: &ResolvedRule,
    family: Option<AddressFamily>,
) -> Vec<Vec<Statement<'static>>> {
    let ports = |protocol: &str| {
        let mut statements = Vec::new();
        for (ports, field) in [
            (&rule.source_ports, "sport"),
            (&rule.destination_ports, "dport"),
        ] {
            if !ports.is_full() {
                statements.push(port_match(protocol, field, &port_ranges(ports)));
            }
        }
        if statements.is_empty() {
            statements.push(l4proto(protocol));
        }
        statements
    };
    let with_ports = rule.protocol == Protocol::Any
        && !(rule.source_ports.is_full() && rule.destination_ports.is_full());
    match rule.protocol {
        // `*` with ports matches only TCP and UDP; `*` with all ports matches everything.
        Protocol::Any if with_ports => vec![ports("tcp"), ports("udp")],
        Protocol::Any => vec![Vec::new()],
        Protocol::Tcp => vec![ports("tcp")],
        Protocol::Udp => vec![ports("udp")],
        Protocol::Icmp => {
            let mut variants = Vec::new();
            if family != Some(AddressFamily::V6) {
                variants.push(vec![l4proto("icmp")]);
            }
            if family != Some(AddressFamily::V4) {
                variants.push(vec![l4proto("ipv6-icmp")]);
            }
            variants
        }
        Protocol::Esp => vec![vec![l4proto("esp")]],
        Protocol::Ah => vec![vec![l4proto("ah")]],
    }
}

/// A rule's port ranges, sorted and merged: nft refuses overlapping intervals.
pub(super) fn port_ranges(ports: &Ports) -> Vec<(u16, u16)> {
    let Ports::Ranges { ranges, .. } = ports else {
        return vec![(0, u16::MAX)];
    };
    let wide: Vec<(u128, u128)> = ranges
        .iter()
        .map(|r| (u128::from(r.low), u128::from(r.high)))
        .collect();
    crate::ruleset::merge_ranges(wide)
        .into_iter()
        .map(|(low, high)| (low as u16, high as u16))
        .collect()
}

pub(super) fn port_match(protocol: &str, field: &str, ranges: &[(u16, u16)]) -> Statement<'static> {
    let item = |&(low, high): &(u16, u16)| {
        if low == high {
            Expression::Number(u32::from(low))
        } else {
            Expression::Range(Box::new(nftables::expr::Range {
                range: [
                    Expression::Number(u32::from(low)),
                    Expression::Number(u32::from(high)),
                ],
            }))
        }
    };
    let right = match ranges {
        [one] => item(one),
        many => anonymous_set(many.iter().map(item).collect()),
    };
    equals(payload(protocol, field), right)
}

pub(super) fn l4proto(protocol: &str) -> Statement<'static> {
    equals(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Expression::String(protocol.to_string().into()),
    )
}

/// Addresses or prefixes of one family as `nft` lists them: one literal, or an anonymous set,
/// sorted and merged.
pub(super) fn addresses(nets: &[IpNet]) -> Expression<'static> {
    let family = match nets.first() {
        Some(IpNet::V6(_)) => AddressFamily::V6,
        _ => AddressFamily::V4,
    };
    let ranges = crate::ruleset::merge_ranges(
        nets.iter()
            .map(|net| match net {
                IpNet::V4(v4) => (
                    u128::from(u32::from(v4.network())),
                    u128::from(u32::from(v4.broadcast())),
                ),
                IpNet::V6(v6) => (u128::from(v6.network()), u128::from(v6.broadcast())),
            })
            .collect(),
    );
    let element = |&(low, high): &(u128, u128)| address_element(family, low, high);
    match ranges.as_slice() {
        [one] => element(one),
        many => anonymous_set(many.iter().map(element).collect()),
    }
}

/// Single addresses as host prefixes, for [`addresses`].
pub(super) fn hosts(list: &[IpAddr]) -> Vec<IpNet> {
    list.iter().map(|&ip| IpNet::from(ip)).collect()
}

pub(super) fn anonymous_set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

pub(super) fn payload(protocol: &str, field: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.to_string().into(),
            field: field.to_string().into(),
        },
    )))
}

pub(super) fn equals(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// A rule with its matches, a counter (every rule counts), a verdict and maybe a comment.
pub(super) fn rule(
    mut statements: Vec<Statement<'static>>,
    verdict: Statement<'static>,
    comment: impl Into<Option<String>>,
) -> RuleSpec {
    statements.push(counter());
    statements.push(verdict);
    RuleSpec {
        statements,
        comment: comment.into().map(limit_comment),
    }
}

pub(super) fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: target.to_string().into(),
    })
}

/// Longest label in a set name: names stay readable in listings.
pub(super) const SET_LABEL_LIMIT: usize = 40;

/// `label` in the characters nft allows in a set name after its first (letters, digits and
/// `/-_.`), others as `-`, shortened to [`SET_LABEL_LIMIT`].
pub(super) fn set_name_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(SET_LABEL_LIMIT)
        .collect()
}

pub(super) fn limit_comment(mut comment: String) -> String {
    if comment.len() > COMMENT_LIMIT {
        let mut end = COMMENT_LIMIT;
        while !comment.is_char_boundary(end) {
            end -= 1;
        }
        comment.truncate(end);
    }
    comment
}
