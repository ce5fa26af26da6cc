//! Generated environments and brute force over their reduced flow space, shared by the
//! property tests.
//!
//! The skeleton is fixed — one VNet (10.0.0.0/16, fd00::/48), one subnet, `nic1` (10.0.1.4 and
//! fd00:0:0:1::4, in `asg-web`) and `nic2` (10.0.1.5, in `asg-db`) — and what varies is the
//! rules of the subnet's and nic1's NSGs, drawn from small pools so that they overlap.

#![allow(dead_code)] // each test binary uses its part

use nsg_model::rule::{ip_proto, Direction};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::{Endpoint, Flow, Resolver, Settings};
use nsg_tags::{context, Catalog};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const NETWORK: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network";

pub fn nsg_id(name: &str) -> String {
    format!("{NETWORK}/networkSecurityGroups/{name}")
}

fn asg_ref(name: &str) -> Value {
    json!({"id": format!("{NETWORK}/applicationSecurityGroups/{name}")})
}

/// An environment whose subnet NSG and nic1 NSG have these rules (`properties` of each).
pub fn environment(subnet_rules: &[Value], nic_rules: &[Value]) -> Value {
    let nsg = |name: &str, rules: &[Value]| {
        let rules: Vec<Value> = rules
            .iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"id": format!("{}/securityRules/r{i}", nsg_id(name)), "name": format!("r{i}"), "properties": p})
            })
            .collect();
        json!({"id": nsg_id(name), "name": name, "location": "westeurope",
               "type": "Microsoft.Network/networkSecurityGroups",
               "properties": {"securityRules": rules}})
    };
    let asg = |name: &str| {
        json!({"id": format!("{NETWORK}/applicationSecurityGroups/{name}"), "name": name,
               "location": "westeurope", "type": "Microsoft.Network/applicationSecurityGroups",
               "properties": {}})
    };
    let subnet = format!("{NETWORK}/virtualNetworks/vnet1/subnets/subnet1");
    let ip = |name: &str, address: &str, asgs: &[&str]| {
        json!({"name": name, "properties": {"privateIPAddress": address, "subnet": {"id": subnet},
               "primary": name == "ipconfig1",
               "applicationSecurityGroups": asgs.iter().map(|a| asg_ref(a)).collect::<Vec<_>>()}})
    };
    json!([
        asg("asg-web"),
        asg("asg-db"),
        nsg("subnet-nsg", subnet_rules),
        nsg("nic-nsg", nic_rules),
        {"id": format!("{NETWORK}/virtualNetworks/vnet1"), "name": "vnet1", "location": "westeurope",
         "type": "Microsoft.Network/virtualNetworks",
         "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16", "fd00::/48"]},
            "subnets": [{"id": subnet, "name": "subnet1", "properties": {
                "addressPrefixes": ["10.0.1.0/24", "fd00:0:0:1::/64"],
                "networkSecurityGroup": {"id": nsg_id("subnet-nsg")}}}]}},
        {"id": format!("{NETWORK}/networkInterfaces/nic1"), "name": "nic1", "location": "westeurope",
         "type": "Microsoft.Network/networkInterfaces",
         "properties": {"networkSecurityGroup": {"id": nsg_id("nic-nsg")}, "ipConfigurations": [
            ip("ipconfig1", "10.0.1.4", &["asg-web"]), ip("ipconfig2", "fd00:0:0:1::4", &["asg-web"])]}},
        {"id": format!("{NETWORK}/networkInterfaces/nic2"), "name": "nic2", "location": "westeurope",
         "type": "Microsoft.Network/networkInterfaces",
         "properties": {"ipConfigurations": [ip("ipconfig1", "10.0.1.5", &["asg-db"])]}}
    ])
}

/// The validated model of `env` (no tag file: built-in tags only).
pub fn model(env: &Value) -> nsg_model::Model {
    let mut environment = nsg_model::Environment::new();
    environment
        .add_value("generated", env.clone())
        .expect("generated environments load");
    match nsg_model::validate(&environment, &Catalog::new()) {
        Ok(model) => model,
        Err(errors) => panic!("generator bug: {errors:?}"),
    }
}

/// The compiled policy of nic1 in `env`.
pub fn nic1(env: &Value, settings: Settings) -> CompiledPolicy {
    let catalog = Catalog::new();
    let model = model(env);
    let nic = model
        .network_interfaces
        .iter()
        .find(|n| n.name() == "nic1")
        .expect("nic1");
    let mut resolver = Resolver::new(&model, &catalog, settings);
    let policy = resolver.resolve(nic).expect("nic1 resolves");
    CompiledPolicy::build(policy, &resolver.sets, settings)
}

const TAGS: &[&str] = &[
    "*",
    "VirtualNetwork",
    "Internet",
    "AzureLoadBalancer",
    "AzurePlatformDNS",
];
const V4: &[&str] = &[
    "10.0.1.4",
    "10.0.1.0/24",
    "10.0.0.0/16",
    "203.0.113.0/24",
    "203.0.113.9",
    "168.63.129.16",
];
const V6: &[&str] = &["fd00::/48", "fd00:0:0:1::4", "2001:db8::/32"];
const PORTS: &[&str] = &[
    "*",
    "*",
    "22",
    "25",
    "53",
    "80",
    "443",
    "1000-2000",
    "1433",
    "0-1023",
];

/// One side of a rule; a rule's prefixes are of one family (`v6`), as Azure requires.
fn address_side(side: &'static str, v6: bool) -> impl Strategy<Value = (String, Value)> {
    let family = if v6 { V6 } else { V4 };
    prop_oneof![
        2 => select(TAGS).prop_map(move |a| (format!("{side}AddressPrefix"), json!(a))),
        2 => select(family).prop_map(move |a| (format!("{side}AddressPrefix"), json!(a))),
        1 => prop::collection::vec(select(family), 1..3)
            .prop_map(move |list| (format!("{side}AddressPrefixes"), json!(list))),
        1 => select(&["asg-web", "asg-db"][..])
            .prop_map(move |a| (format!("{side}ApplicationSecurityGroups"), json!([asg_ref(a)]))),
    ]
}

fn port_side(side: &'static str) -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        3 => select(PORTS).prop_map(move |p| (format!("{side}PortRange"), json!(p))),
        1 => prop::collection::vec(select(&PORTS[2..]), 1..3)
            .prop_map(move |list| (format!("{side}PortRanges"), json!(list))),
    ]
}

/// A rule's `properties` with priority `100 + 10 * i`.
fn rule(i: usize) -> impl Strategy<Value = Value> {
    (
        select(&["Tcp", "Udp", "Icmp", "*", "*", "Esp"][..]),
        select(&["Allow", "Deny"][..]),
        select(&["Inbound", "Outbound"][..]),
        any::<bool>().prop_flat_map(|v6| (address_side("source", v6), address_side("destination", v6))),
        prop_oneof![3 => Just(("sourcePortRange".to_string(), json!("*"))), 1 => port_side("source")],
        port_side("destination"),
    )
        .prop_map(move |(protocol, access, direction, (source, destination), sport, dport)| {
            let mut p = json!({"protocol": protocol, "access": access, "direction": direction,
                               "priority": 100 + 10 * i});
            for (key, value) in [source, destination, sport, dport] {
                p[key] = value;
            }
            p
        })
}

pub fn rules(max: usize) -> impl Strategy<Value = Vec<Value>> {
    (0..=max).prop_flat_map(|n| (0..n).map(rule).collect::<Vec<_>>())
}

/// Subnet and NIC rules.
pub fn environment_strategy(max_rules: usize) -> impl Strategy<Value = Value> {
    (rules(max_rules), rules(max_rules)).prop_map(|(s, n)| environment(&s, &n))
}

/// Every flow of the reduced flow space of `direction` at the policy's NIC: one per elementary
/// interval of every field, made of the starts of every set and port range the policy names
/// (and of the platform exceptions'), so that every distinction the evaluator can make shows.
pub fn brute_flows(policies: &[&CompiledPolicy], direction: Direction) -> Vec<Flow> {
    brute_flows_with(policies, direction, &[])
}

/// [`brute_flows`], with `extra_ports` also starting elementary intervals (the edges of an
/// analysis's own boxes).
pub fn brute_flows_with(
    policies: &[&CompiledPolicy],
    direction: Direction,
    extra_ports: &[u16],
) -> Vec<Flow> {
    let mut v4: BTreeSet<u32> = [0].into();
    let mut v6: BTreeSet<u128> = [0].into();
    let mut platform_ports: BTreeSet<u16> = [0, 25, 53, 67, 80, 1688].into();
    platform_ports.extend(extra_ports);
    let (mut source_ports, mut destination_ports) = (platform_ports.clone(), platform_ports);
    for policy in policies {
        let sets = policy.sets();
        let mut add_set = |set: &nsg_tags::PrefixSet| {
            for &(l, h) in set.v4_ranges() {
                v4.insert(l);
                v4.extend(h.checked_add(1));
            }
            for &(l, h) in set.v6_ranges() {
                v6.insert(l);
                v6.extend(h.checked_add(1));
            }
        };
        for stage in policy.policy().stages(direction) {
            for rule in &stage.rules {
                for side in [rule.source, rule.destination] {
                    if let nsg_policy::resolve::SideMatch::Set(id) = side {
                        add_set(sets.get(id));
                    }
                }
                for (ports, side) in [
                    (&mut source_ports, &rule.source_ports),
                    (&mut destination_ports, &rule.destination_ports),
                ] {
                    for r in side.ranges() {
                        ports.insert(r.low);
                        ports.extend(r.high.checked_add(1));
                    }
                }
            }
        }
        add_set(sets.get(policy.policy().internet));
    }
    for a in [context::HOST_VIP, context::IMDS, Ipv4Addr::BROADCAST]
        .into_iter()
        .chain(context::KMS_ADDRESSES)
    {
        v4.insert(u32::from(a));
        v4.extend(u32::from(a).checked_add(1));
    }
    let locals: BTreeSet<IpAddr> = policies
        .iter()
        .flat_map(|p| p.policy().addresses.iter().map(|a| a.addr()))
        .collect();
    let remotes: Vec<IpAddr> = v4
        .iter()
        .map(|&a| IpAddr::V4(Ipv4Addr::from(a)))
        .chain(v6.iter().map(|&a| IpAddr::V6(Ipv6Addr::from(a))))
        .collect();
    let (local_ports, remote_ports) = match direction {
        Direction::Inbound => (destination_ports, source_ports),
        Direction::Outbound => (source_ports, destination_ports),
    };
    let protocols = [
        ip_proto::TCP,
        ip_proto::UDP,
        ip_proto::ICMP,
        ip_proto::ESP,
        0,
    ];
    let mut flows = Vec::new();
    for &local in &locals {
        for &remote in remotes.iter().filter(|r| r.is_ipv4() == local.is_ipv4()) {
            for protocol in protocols {
                let choices = |ports: &BTreeSet<u16>| -> Vec<Option<u16>> {
                    if nsg_model::rule::protocol_has_ports(protocol) {
                        ports.iter().map(|&p| Some(p)).collect()
                    } else {
                        vec![None]
                    }
                };
                for &local_port in &choices(&local_ports) {
                    for &remote_port in &choices(&remote_ports) {
                        flows.push(Flow {
                            direction,
                            protocol,
                            local: Endpoint {
                                ip: local,
                                port: local_port,
                            },
                            remote: Endpoint {
                                ip: remote,
                                port: remote_port,
                            },
                        });
                    }
                }
            }
        }
    }
    flows
}

/// Whether a reported region (in packet terms, as printed) holds the example's flow: the
/// printed form is what users read, so the tests read it too.
pub fn report_contains(
    region: &nsg_analysis::region::RegionReport,
    example: &nsg_analysis::example::Example,
) -> bool {
    let address_in = |list: &[String], ip: IpAddr| {
        list.iter()
            .any(|a| a == "*" || a.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&ip)))
    };
    let range_in = |list: &[String], value: u16| {
        list.iter().any(|r| match r.as_str() {
            "*" => true,
            r => match r.split_once('-') {
                Some((l, h)) => {
                    l.parse::<u16>().unwrap() <= value && value <= h.parse::<u16>().unwrap()
                }
                None => r.parse::<u16>().unwrap() == value,
            },
        })
    };
    let ports_in = |list: &Option<Vec<String>>, port: Option<u16>| match (list, port) {
        (Some(list), Some(p)) => range_in(list, p),
        (None, None) => true,
        _ => false,
    };
    let number = protocol_number(&example.protocol);
    let protocol_in = region.protocols.iter().any(|p| {
        p == "*"
            || *p == example.protocol
            || match p.split_once('-') {
                Some((l, h)) => {
                    l.parse::<u8>().unwrap() <= number && number <= h.parse::<u8>().unwrap()
                }
                None => p.parse::<u8>().is_ok_and(|n| n == number),
            }
    });
    protocol_in
        && address_in(&region.source, example.source)
        && address_in(&region.destination, example.destination)
        && ports_in(&region.source_ports, example.source_port)
        && ports_in(&region.destination_ports, example.destination_port)
}

/// The protocol number of a name as examples print it.
pub fn protocol_number(name: &str) -> u8 {
    match name {
        "TCP" => 6,
        "UDP" => 17,
        "ICMP" => 1,
        "ICMPv6" => 58,
        "ESP" => 50,
        "AH" => 51,
        n => n.parse().expect("a protocol name or number"),
    }
}
