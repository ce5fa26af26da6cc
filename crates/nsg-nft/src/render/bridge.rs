//! The layer-2 guards of NICs whose interface is a bridge port (table `bridge opennsg`, K9).
//!
//! On a bridge, the `inet` hooks see bridged frames only through br_netfilter, and with the
//! bridge as both input and output interface: they cannot tell ports apart. So the guards that
//! need the port run here, in the bridge family, before br_netfilter hands the packet to `inet`
//! (priority -200, br_netfilter's hooks are at 0): frames from a port carry the NIC's MAC, its
//! ARP speaks for its own addresses only, its neighbour advertisements name only its own (or
//! link-local) addresses, and its IP packets its own source addresses; frames to a port carry
//! its own destination addresses. Then the `inet` table, dispatching bridged NICs by bridge and
//! address, applies the stages and flow records as for routed NICs. Ports of no bound NIC meet
//! no rule here.

use super::{addresses, equals, jump, own_addresses, payload, rule, ChainSpec, RuleSpec};
use crate::ruleset::{AddressFamily, Table};
use nftables::expr::{BinaryOperation, Expression, Meta, MetaKey, NamedExpression, Payload};
use nftables::expr::{PayloadBase, PayloadRaw};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::NfHook;
use nsg_policy::resolve::NicPolicy;

/// The bridge family's filter priority, before br_netfilter (0) passes packets to `inet`.
const PRIORITY: i32 = -200;

/// ICMPv6 a guest sends as link plumbing: router and neighbour solicitations, neighbour
/// advertisements (their targets checked first) and multicast listener reports. Router
/// advertisements are not among them: a guest must not become its neighbours' router.
const ND_FROM_GUEST: [&str; 5] = [
    "mld-listener-report",
    "nd-router-solicit",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld2-listener-report",
];
/// ICMPv6 a guest receives as link plumbing: the above and the host's router advertisements.
const ND_TO_GUEST: [&str; 7] = [
    "mld-listener-query",
    "mld-listener-report",
    "nd-router-solicit",
    "nd-router-advert",
    "nd-neighbor-solicit",
    "nd-neighbor-advert",
    "mld2-listener-report",
];

/// A bridged NIC: its policy, its port and the label of its chains.
pub(super) struct Port<'a> {
    pub policy: &'a NicPolicy,
    pub interface: &'a str,
    pub label: &'a str,
}

/// The bridge table's chains for `ports`: three base chains dispatching by port, and per port a
/// chain for frames from it and one for frames to it.
pub(super) fn chains(ports: &[Port<'_>]) -> Vec<(String, ChainSpec)> {
    let mut chains = Vec::new();
    let mut from = Vec::new();
    let mut to = Vec::new();
    for port in ports {
        let from_chain = format!("{}-l2-from", port.label);
        let to_chain = format!("{}-l2-to", port.label);
        from.push(port_jump(MetaKey::Iifname, port.interface, &from_chain));
        to.push(port_jump(MetaKey::Oifname, port.interface, &to_chain));
        chains.push((from_chain, regular(port_guards(port.policy, true))));
        chains.push((to_chain, regular(port_guards(port.policy, false))));
    }
    for (name, hook, rules) in [
        ("l2-prerouting", NfHook::Prerouting, from),
        ("l2-forward", NfHook::Forward, to.clone()),
        ("l2-output", NfHook::Output, to),
    ] {
        chains.push((
            name.to_string(),
            ChainSpec {
                table: Table::Bridge,
                hook: Some((hook, PRIORITY)),
                rules,
            },
        ));
    }
    chains
}

fn regular(rules: Vec<RuleSpec>) -> ChainSpec {
    ChainSpec::regular(Table::Bridge, rules)
}

fn port_jump(key: MetaKey, interface: &str, chain: &str) -> RuleSpec {
    rule(
        vec![equals(
            meta(key),
            Expression::String(interface.to_string().into()),
        )],
        jump(chain),
        None,
    )
}

/// The guards of the frames entering the bridge from the NIC's port (`from_guest`) or leaving
/// it to the port: the same checks on the guest's side of each address, and on the way in also
/// the link-layer ones (MAC, ARP sender, neighbour advertisement target).
fn port_guards(policy: &NicPolicy, from_guest: bool) -> Vec<RuleSpec> {
    let (field, side, dhcp_ports, nd_types): (_, _, _, &[&str]) = if from_guest {
        ("saddr", "source", (68, 67), &ND_FROM_GUEST)
    } else {
        ("daddr", "destination", (67, 68), &ND_TO_GUEST)
    };
    let mut rules = Vec::new();
    let drop =
        |statements, comment: &str| rule(statements, Statement::Drop(None), comment.to_string());
    let accept =
        |statements, comment: &str| rule(statements, Statement::Accept(None), comment.to_string());
    if let Some(mac) = policy
        .mac_address
        .as_deref()
        .and_then(nft_mac)
        .filter(|_| from_guest)
    {
        rules.push(drop(
            vec![differs(payload("ether", "saddr"), mac.clone())],
            "anti-spoofing: MAC",
        ));
        rules.push(drop(
            vec![differs(payload("arp", "saddr ether"), mac)],
            "anti-spoofing: ARP sender MAC",
        ));
    }
    let v4 = own_addresses(policy, AddressFamily::V4);
    if v4.is_empty() {
        rules.push(drop(
            vec![ether_type(&["ip", "arp"])],
            "anti-spoofing: no IPv4 address",
        ));
    } else {
        if from_guest {
            // An ARP probe (RFC 5227) speaks for 0.0.0.0.
            let mut senders = v4.clone();
            senders.push("0.0.0.0/32".parse().expect("a host prefix"));
            rules.push(drop(
                vec![differs(payload("arp", "saddr ip"), addresses(&senders))],
                "anti-spoofing: ARP sender address",
            ));
        }
        rules.push(accept(
            vec![
                ether_type(&["ip"]),
                udp_port("sport", dhcp_ports.0),
                udp_port("dport", dhcp_ports.1),
            ],
            "DHCP",
        ));
        if !policy.ip_forwarding {
            rules.push(drop(
                vec![differs(payload("ip", field), addresses(&v4))],
                &format!("anti-spoofing: IPv4 {side}"),
            ));
        }
    }
    let v6 = own_addresses(policy, AddressFamily::V6);
    if v6.is_empty() {
        rules.push(drop(
            vec![ether_type(&["ip6"])],
            "anti-spoofing: no IPv6 address",
        ));
    } else {
        if from_guest {
            rules.push(drop(
                vec![
                    icmpv6_types(&["nd-neighbor-advert"]),
                    not_link_local(nd_target(16)),
                    differs(nd_target(128), nd_targets(&v6)),
                ],
                "anti-spoofing: neighbour advertisement target",
            ));
        }
        rules.push(accept(
            vec![icmpv6_types(nd_types)],
            "IPv6 neighbour discovery",
        ));
        if !policy.ip_forwarding {
            rules.push(drop(
                vec![differs(payload("ip6", field), addresses(&v6))],
                &format!("anti-spoofing: IPv6 {side}"),
            ));
        }
    }
    rules.push(drop(
        vec![differs(
            payload("ether", "type"),
            set_of(&["ip", "arp", "ip6"]),
        )],
        "only IP, ARP and IPv6",
    ));
    rules
}

/// An Azure MAC (`00-0D-3A-12-34-56`) as nft writes one (`00:0d:3a:12:34:56`).
fn nft_mac(azure: &str) -> Option<Expression<'static>> {
    let octets: Vec<u8> = azure
        .split(['-', ':'])
        .map(|part| u8::from_str_radix(part, 16).ok())
        .collect::<Option<_>>()?;
    (octets.len() == 6).then(|| {
        let text: Vec<String> = octets.iter().map(|o| format!("{o:02x}")).collect();
        Expression::String(text.join(":").into())
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn differs(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn set_of(items: &[&str]) -> Expression<'static> {
    match items {
        [one] => Expression::String(one.to_string().into()),
        many => super::anonymous_set(
            many.iter()
                .map(|i| Expression::String(i.to_string().into()))
                .collect(),
        ),
    }
}

fn ether_type(types: &[&str]) -> Statement<'static> {
    equals(payload("ether", "type"), set_of(types))
}

fn icmpv6_types(types: &[&str]) -> Statement<'static> {
    equals(payload("icmpv6", "type"), set_of(types))
}

fn udp_port(field: &str, port: u16) -> Statement<'static> {
    equals(payload("udp", field), Expression::Number(u32::from(port)))
}

/// The first `len` bits of a neighbour advertisement's target address (nft 1.0.6 has no name
/// for the field: it is the transport header's bits 64 to 191).
fn nd_target(len: u32) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadRaw(PayloadRaw {
        base: PayloadBase::TH,
        offset: 64,
        len,
    })))
}

/// The target is not link-local (fe80::/10): those addresses are not in the model, and a guest
/// answers for its own.
fn not_link_local(first_16_bits: Expression<'static>) -> Statement<'static> {
    differs(
        Expression::BinaryOperation(Box::new(BinaryOperation::AND(
            first_16_bits,
            Expression::Number(0xffc0),
        ))),
        Expression::Number(0xfe80),
    )
}

/// The NIC's IPv6 addresses as the raw 128-bit values nft compares a raw payload with.
fn nd_targets(own: &[ipnet::IpNet]) -> Expression<'static> {
    let values: Vec<String> = own
        .iter()
        .filter_map(|net| match net {
            ipnet::IpNet::V6(v6) => Some(format!("0x{:032x}", u128::from(v6.addr()))),
            ipnet::IpNet::V4(_) => None,
        })
        .collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    set_of(&refs)
}
