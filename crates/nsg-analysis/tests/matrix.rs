//! The reachability matrix against brute force: on generated policies, every cell's verdict and
//! deciding rules equal those of every flow of the cell's (reduced) space, decided at both ends
//! by the reference evaluator, and every example flow is confirmed at the NIC it names.

mod support;

use nsg_analysis::example::Example;
use nsg_analysis::matrix::{matrix, PortReach, Reach};
use nsg_analysis::nics::compile_all;
use nsg_model::rule::{ip_proto, Access, Direction};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::{decide, Decision, Endpoint, Flow, Settings};
use nsg_tags::{Catalog, PrefixSet};
use proptest::prelude::*;
use std::collections::BTreeSet;

const PORTS: &[u16] = &[22, 53, 80, 1433];

fn decision(policy: &CompiledPolicy, flow: &Flow) -> Decision {
    decide(policy.policy(), policy.sets(), &Settings::default(), flow)
}

fn rule_label(policy: &CompiledPolicy, flow: &Flow, decision: &Decision) -> String {
    nsg_analysis::matrix::rule_label(&policy.policy().nic, flow.direction, decision)
}

/// What brute force finds for one port of a cell.
#[derive(Default)]
struct Expected {
    allowed: bool,
    denied: bool,
    rules: BTreeSet<String>,
}

impl Expected {
    fn access(&self) -> Reach {
        match (self.allowed, self.denied) {
            (true, false) => Reach::Allow,
            (true, true) => Reach::Partial,
            _ => Reach::Deny,
        }
    }
}

/// Every TCP flow from `from` to `to`'s `port`: both ends' addresses, every elementary source
/// port either end's rules distinguish.
fn between_nics(from: &CompiledPolicy, to: &CompiledPolicy, port: u16) -> Expected {
    let extra = [port, port.saturating_add(1)];
    let source_ports: BTreeSet<u16> =
        support::brute_flows_with(&[from], Direction::Outbound, &extra)
            .iter()
            .filter_map(|f| f.local.port)
            .chain(
                support::brute_flows_with(&[to], Direction::Inbound, &extra)
                    .iter()
                    .filter_map(|f| f.remote.port),
            )
            .collect();
    let mut expected = Expected::default();
    for source in &from.policy().addresses {
        for destination in &to.policy().addresses {
            if source.addr().is_ipv4() != destination.addr().is_ipv4() {
                continue;
            }
            for &source_port in &source_ports {
                let (s, d) = (
                    Endpoint {
                        ip: source.addr(),
                        port: Some(source_port),
                    },
                    Endpoint {
                        ip: destination.addr(),
                        port: Some(port),
                    },
                );
                let leaving = Flow {
                    direction: Direction::Outbound,
                    protocol: ip_proto::TCP,
                    local: s,
                    remote: d,
                };
                let arriving = Flow {
                    direction: Direction::Inbound,
                    protocol: ip_proto::TCP,
                    local: d,
                    remote: s,
                };
                let out = decision(from, &leaving);
                expected.rules.insert(rule_label(from, &leaving, &out));
                if out.access == Access::Deny {
                    expected.denied = true;
                    continue;
                }
                let incoming = decision(to, &arriving);
                expected.rules.insert(rule_label(to, &arriving, &incoming));
                match incoming.access {
                    Access::Allow => expected.allowed = true,
                    Access::Deny => expected.denied = true,
                }
            }
        }
    }
    expected
}

/// Every TCP flow between `nic` and the addresses of `set` on `port` (at `nic`'s end when
/// inbound, at the far end when outbound).
fn with_addresses(
    nic: &CompiledPolicy,
    set: &PrefixSet,
    direction: Direction,
    port: u16,
) -> Expected {
    let mut expected = Expected::default();
    for flow in support::brute_flows_with(&[nic], direction, &[port, port.saturating_add(1)]) {
        let destination_port = match direction {
            Direction::Inbound => flow.local.port,
            Direction::Outbound => flow.remote.port,
        };
        if flow.protocol != ip_proto::TCP
            || destination_port != Some(port)
            || !set.contains(flow.remote.ip)
        {
            continue;
        }
        let d = decision(nic, &flow);
        expected.rules.insert(rule_label(nic, &flow, &d));
        match d.access {
            Access::Allow => expected.allowed = true,
            Access::Deny => expected.denied = true,
        }
    }
    expected
}

/// `example`, decided at the NIC it names, gets `access`, and is a TCP flow to `port`.
fn confirm(
    nics: &[CompiledPolicy],
    example: &Example,
    access: Access,
    port: u16,
) -> Result<(), TestCaseError> {
    let nic = nics
        .iter()
        .find(|p| p.policy().nic.to_string() == example.nic)
        .expect("the example names a NIC");
    let direction = if example.direction == "Inbound" {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let (source, destination) = (
        Endpoint {
            ip: example.source,
            port: example.source_port,
        },
        Endpoint {
            ip: example.destination,
            port: example.destination_port,
        },
    );
    let (local, remote) = match direction {
        Direction::Inbound => (destination, source),
        Direction::Outbound => (source, destination),
    };
    let flow = Flow {
        direction,
        protocol: ip_proto::TCP,
        local,
        remote,
    };
    prop_assert_eq!(example.protocol.as_str(), "TCP");
    prop_assert_eq!(example.destination_port, Some(port));
    prop_assert_eq!(decision(nic, &flow).access, access, "{:?}", example);
    Ok(())
}

fn check(
    answer: &PortReach,
    expected: &Expected,
    nics: &[CompiledPolicy],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(answer.access, expected.access());
    let rules: BTreeSet<String> = answer.rules.iter().cloned().collect();
    prop_assert_eq!(&rules, &expected.rules);
    prop_assert_eq!(answer.allowed.is_empty(), !expected.allowed);
    prop_assert_eq!(answer.denied.is_some(), expected.denied);
    for example in &answer.allowed {
        confirm(nics, example, Access::Allow, answer.port)?;
    }
    if let Some(example) = &answer.denied {
        confirm(nics, example, Access::Deny, answer.port)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn matrix_cells_agree_with_brute_force(env in support::environment_strategy(5)) {
        let model = support::model(&env);
        let catalog = Catalog::new();
        let nics = compile_all(&model, &catalog, Settings::default()).expect("compiles");
        let tags = ["Internet".to_string(), "10.0.0.0/8".to_string()];
        let found = matrix(&model, &nics, &catalog, &tags, ip_proto::TCP, PORTS).expect("known tags");
        // Two NICs, two address sets: every ordered pair but the two between address sets.
        prop_assert_eq!(found.cells.len(), 4 * 3 - 2);
        let policy_of = |i: usize| {
            let id = found.endpoints[i].id.as_deref()?;
            nics.iter().find(|p| p.policy().nic.to_string() == id)
        };
        for cell in &found.cells {
            prop_assert_eq!(cell.ports.len(), PORTS.len());
            for answer in &cell.ports {
                let expected = match (policy_of(cell.source), policy_of(cell.destination)) {
                    (Some(from), Some(to)) => between_nics(from, to, answer.port),
                    (Some(from), None) => {
                        let text = &found.endpoints[cell.destination].name;
                        with_addresses(from, &set_at(from, text), Direction::Outbound, answer.port)
                    }
                    (None, Some(to)) => {
                        let text = &found.endpoints[cell.source].name;
                        with_addresses(to, &set_at(to, text), Direction::Inbound, answer.port)
                    }
                    (None, None) => unreachable!("no cell joins two address sets"),
                };
                check(answer, &expected, &nics)?;
            }
        }
    }
}

fn set_at(nic: &CompiledPolicy, text: &str) -> PrefixSet {
    let virtual_network = nic.sets().get(nic.policy().virtual_network);
    nsg_analysis::addresses::address_set(text, &Catalog::new(), virtual_network)
        .expect("known")
        .expect("not *")
}
