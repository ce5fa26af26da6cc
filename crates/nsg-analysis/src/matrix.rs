//! Who can reach whom: for each ordered pair of endpoints (NICs, and address sets such as service
//! tags) and each chosen port, whether every flow from one to the other is allowed, none is, or
//! some are — exactly, over every source port and every address of both ends.
//!
//! A flow between two NICs is allowed when the source NIC's outbound policy and the destination
//! NIC's inbound policy both allow it. The two see the flow from opposite ends, so one joint walk
//! cannot cover both: the source's regions are walked, and inside each allowed region the
//! destination's policy is asked about exactly that region, seen from its end. An address set
//! has no NSG of its own: only the NIC end filters. Routing (peering, UDRs) is not modelled.

use crate::addresses::{address_set, UnknownAddresses};
use crate::example::Example;
use crate::partition::{Analysis, FlowBox, Precision};
use crate::query::answer;
use crate::region::Region;
use nsg_model::rule::{Access, Direction, PortRange};
use nsg_model::{Model, ResourceId};
use nsg_policy::classify::ProtocolSet;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::{Decider, Decision, Flow};
use nsg_tags::{Catalog, PrefixSet};
use serde::Serialize;
use std::collections::BTreeSet;
use std::ops::ControlFlow;

/// One end of a cell.
#[derive(Clone, Copy)]
pub enum Endpoint<'a> {
    Nic(&'a CompiledPolicy),
    /// `*`, a service tag, or addresses and CIDRs, resolved at the NIC of the other end (the
    /// `VirtualNetwork` and `Internet` tags are relative to it).
    Addresses(&'a str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Every flow of the cell is allowed.
    Allow,
    /// No flow of the cell is allowed (or none exists: the ends share no address family).
    Deny,
    /// Some flows are allowed and some denied.
    Partial,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Allow => "allow",
            Reach::Deny => "deny",
            Reach::Partial => "partial",
        }
    }

    /// The reach of the union of spaces whose reaches are `parts`.
    fn combine(parts: impl IntoIterator<Item = Reach>) -> Reach {
        let mut seen = (false, false);
        for part in parts {
            seen.0 |= part != Reach::Deny;
            seen.1 |= part != Reach::Allow;
        }
        match seen {
            (true, false) => Reach::Allow,
            (true, true) => Reach::Partial,
            _ => Reach::Deny,
        }
    }
}

/// The answer for one port of one cell.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortReach {
    pub port: u16,
    pub access: Reach,
    /// The rules that decide flows of the cell, as `NIC inbound|outbound: securityRules/NAME`
    /// (`no NSG` where none applies), sorted.
    pub rules: Vec<String>,
    /// One allowed flow, once at each NIC it crosses: `opennsg verify` allows each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Example>,
    /// One denied flow, at the NIC that denies it: `opennsg verify` denies it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<Example>,
}

#[derive(Default)]
struct Findings {
    rules: BTreeSet<String>,
    allowed: Vec<Example>,
    denied: Option<Example>,
}

impl Findings {
    fn note_rule(&mut self, policy: &CompiledPolicy, direction: Direction, decision: &Decision) {
        self.rules
            .insert(rule_label(&policy.policy().nic, direction, decision));
    }

    fn finish(self, port: u16) -> PortReach {
        let access = match (self.allowed.is_empty(), self.denied.is_some()) {
            (false, false) => Reach::Allow,
            (false, true) => Reach::Partial,
            (true, _) => Reach::Deny,
        };
        PortReach {
            port,
            access,
            rules: self.rules.into_iter().collect(),
            allowed: self.allowed,
            denied: self.denied,
        }
    }
}

/// What decided a flow at a NIC: `NIC inbound|outbound: NSG/securityRules/NAME`, a platform
/// rule, or `no NSG`.
pub fn rule_label(nic: &ResourceId, direction: Direction, decision: &Decision) -> String {
    let way = match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    let rule = match &decision.decider {
        Decider::NoNsg => "no NSG".to_string(),
        Decider::Rule(v) => format!("{}/{}", v.nsg.name(), v.reference()),
        Decider::Platform(p) => p.reference().to_string(),
    };
    format!("{} {way}: {rule}", nic.name())
}

/// Whether flows of `protocol` from `source` to `destination`'s `port` are allowed; `None` when
/// neither end is a NIC (nothing filters them).
pub fn reach(
    catalog: &Catalog,
    source: Endpoint,
    destination: Endpoint,
    protocol: u8,
    port: u16,
) -> Result<Option<PortReach>, UnknownAddresses> {
    let protocols = ProtocolSet::default().with(protocol);
    let mut found = Findings::default();
    match (source, destination) {
        (Endpoint::Addresses(_), Endpoint::Addresses(_)) => return Ok(None),
        (Endpoint::Addresses(text), Endpoint::Nic(nic)) => {
            let space = FlowBox {
                protocols,
                local: None,
                local_ports: vec![PortRange {
                    low: port,
                    high: port,
                }],
                remote: remote_set(text, catalog, nic)?,
                remote_ports: vec![PortRange::ALL],
            };
            at_one_nic(nic, Direction::Inbound, &space, &mut found);
        }
        (Endpoint::Nic(nic), Endpoint::Addresses(text)) => {
            let space = FlowBox {
                protocols,
                local: None,
                local_ports: vec![PortRange::ALL],
                remote: remote_set(text, catalog, nic)?,
                remote_ports: vec![PortRange {
                    low: port,
                    high: port,
                }],
            };
            at_one_nic(nic, Direction::Outbound, &space, &mut found);
        }
        (Endpoint::Nic(from), Endpoint::Nic(to)) => {
            let space = FlowBox {
                protocols,
                local: None,
                local_ports: vec![PortRange::ALL],
                remote: Some(addresses_of(to)),
                remote_ports: vec![PortRange {
                    low: port,
                    high: port,
                }],
            };
            between_nics(from, to, &space, &mut found);
        }
    }
    Ok(Some(found.finish(port)))
}

fn remote_set(
    text: &str,
    catalog: &Catalog,
    nic: &CompiledPolicy,
) -> Result<Option<PrefixSet>, UnknownAddresses> {
    let virtual_network = nic.sets().get(nic.policy().virtual_network);
    address_set(text, catalog, virtual_network)
}

fn addresses_of(nic: &CompiledPolicy) -> PrefixSet {
    PrefixSet::from_nets(nic.policy().addresses.iter().copied())
}

fn at_one_nic(nic: &CompiledPolicy, direction: Direction, space: &FlowBox, found: &mut Findings) {
    let id = &nic.policy().nic;
    for outcome in answer(nic, direction, space).outcomes {
        found.note_rule(nic, direction, &outcome.decision);
        match outcome.decision.access {
            Access::Allow if found.allowed.is_empty() => {
                found.allowed = vec![Example::new(id, &outcome.example)];
            }
            Access::Deny if found.denied.is_none() => {
                found.denied = Some(Example::new(id, &outcome.example));
            }
            _ => {}
        }
    }
}

/// `space` is seen from `from` (outbound); each region `from` allows is asked of `to`.
fn between_nics(from: &CompiledPolicy, to: &CompiledPolicy, space: &FlowBox, found: &mut Findings) {
    let analysis = Analysis::new(
        &[from],
        Direction::Outbound,
        space,
        &[],
        Precision::FirstMatch,
    );
    let (from_id, to_id) = (&from.policy().nic, &to.policy().nic);
    let _ = analysis.walk(|leaf| {
        let example = *leaf.example();
        let decision = leaf.decision(0);
        found.note_rule(from, Direction::Outbound, &decision);
        if decision.access == Access::Deny {
            found
                .denied
                .get_or_insert_with(|| Example::new(from_id, &example));
            return ControlFlow::Continue(());
        }
        let arriving = seen_from_the_destination(&leaf.region());
        for outcome in answer(to, Direction::Inbound, &arriving).outcomes {
            found.note_rule(to, Direction::Inbound, &outcome.decision);
            match outcome.decision.access {
                Access::Allow if found.allowed.is_empty() => {
                    let leaving = mirrored(&outcome.example);
                    found.allowed = vec![
                        Example::new(from_id, &leaving),
                        Example::new(to_id, &outcome.example),
                    ];
                }
                Access::Deny if found.denied.is_none() => {
                    found.denied = Some(Example::new(to_id, &outcome.example));
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    });
}

/// The flows of an outbound region as the receiving NIC sees them (inbound).
fn seen_from_the_destination(region: &Region) -> FlowBox {
    let protocols = region
        .protocols
        .iter()
        .flat_map(|&(low, high)| low..=high)
        .fold(ProtocolSet::default(), ProtocolSet::with);
    let ports = |p: &Option<Vec<PortRange>>| p.clone().unwrap_or_else(|| vec![PortRange::ALL]);
    FlowBox {
        protocols,
        local: Some(region.remote.clone()),
        local_ports: ports(&region.remote_ports),
        remote: Some(region.local.clone()),
        remote_ports: ports(&region.local_ports),
    }
}

/// The same packet seen from the other end.
fn mirrored(flow: &Flow) -> Flow {
    Flow {
        direction: match flow.direction {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        },
        protocol: flow.protocol,
        local: flow.remote,
        remote: flow.local,
    }
}

/// A row and column of the matrix.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointInfo {
    pub name: String,
    /// `nic` or `addresses`.
    pub kind: &'static str,
    /// The NIC's resource id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_machine: Option<String>,
    pub addresses: Vec<String>,
    /// Index into [`Matrix::groups`].
    pub group: usize,
}

/// NICs of one subnet with the same application security groups, or the address sets.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    pub application_security_groups: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    /// Index into [`Matrix::endpoints`] of the sending end.
    pub source: usize,
    pub destination: usize,
    /// Over every port: allow if each allows all, deny if each denies all, else partial.
    pub access: Reach,
    pub ports: Vec<PortReach>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Matrix {
    pub protocol: String,
    pub ports: Vec<u16>,
    /// NICs grouped (by subnet, then ASGs, then name), then the address sets asked for.
    pub endpoints: Vec<EndpointInfo>,
    pub groups: Vec<Group>,
    /// Every ordered pair of distinct endpoints with a NIC at one end at least.
    pub cells: Vec<Cell>,
}

impl Matrix {
    pub fn cell(&self, source: usize, destination: usize) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.source == source && c.destination == destination)
    }
}

/// The matrix of `model`'s NICs (`nics`, compiled in the model's order) and `address_sets`
/// (service tag names, or addresses and CIDRs), for `protocol` to each of `ports`.
pub fn matrix(
    model: &Model,
    nics: &[CompiledPolicy],
    catalog: &Catalog,
    address_sets: &[String],
    protocol: u8,
    ports: &[u16],
) -> Result<Matrix, UnknownAddresses> {
    struct Row<'a> {
        key: (String, Vec<String>),
        info: EndpointInfo,
        endpoint: Endpoint<'a>,
    }
    let mut rows: Vec<Row> = model
        .network_interfaces
        .iter()
        .zip(nics)
        .map(|(nic, policy)| {
            let subnet = nic.primary_subnet().map(subnet_label).unwrap_or_default();
            let mut groups: Vec<String> = nic
                .ip_configurations
                .iter()
                .flat_map(|c| c.application_security_groups.iter())
                .map(|asg| asg.name().to_string())
                .collect();
            groups.sort();
            groups.dedup();
            Row {
                key: (subnet, groups),
                info: EndpointInfo {
                    name: nic.name().to_string(),
                    kind: "nic",
                    id: Some(nic.id.to_string()),
                    virtual_machine: nic.virtual_machine.as_ref().map(|vm| vm.name().to_string()),
                    addresses: policy
                        .policy()
                        .addresses
                        .iter()
                        .map(|a| a.addr().to_string())
                        .collect(),
                    group: 0,
                },
                endpoint: Endpoint::Nic(policy),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.key, &a.info.name).cmp(&(&b.key, &b.info.name)));
    let mut groups: Vec<Group> = Vec::new();
    let mut last_key = None;
    for row in &mut rows {
        if last_key.as_ref() != Some(&row.key) {
            let (subnet, asgs) = &row.key;
            let label = if asgs.is_empty() {
                subnet.clone()
            } else {
                format!("{subnet} · {}", asgs.join(", "))
            };
            groups.push(Group {
                label,
                subnet: Some(subnet.clone()),
                application_security_groups: asgs.clone(),
            });
            last_key = Some(row.key.clone());
        }
        row.info.group = groups.len() - 1;
    }
    if !address_sets.is_empty() {
        groups.push(Group {
            label: "addresses".into(),
            subnet: None,
            application_security_groups: Vec::new(),
        });
    }
    for text in address_sets {
        rows.push(Row {
            key: Default::default(),
            info: EndpointInfo {
                name: text.clone(),
                kind: "addresses",
                id: None,
                virtual_machine: None,
                addresses: Vec::new(),
                group: groups.len() - 1,
            },
            endpoint: Endpoint::Addresses(text),
        });
    }
    let mut cells = Vec::new();
    for (i, from) in rows.iter().enumerate() {
        for (j, to) in rows.iter().enumerate() {
            if i == j {
                continue;
            }
            let mut answers = Vec::new();
            for &port in ports {
                if let Some(answer) = reach(catalog, from.endpoint, to.endpoint, protocol, port)? {
                    answers.push(answer);
                }
            }
            if answers.is_empty() {
                continue;
            }
            cells.push(Cell {
                source: i,
                destination: j,
                access: Reach::combine(answers.iter().map(|a| a.access)),
                ports: answers,
            });
        }
    }
    Ok(Matrix {
        protocol: crate::example::protocol_name(protocol),
        ports: ports.to_vec(),
        endpoints: rows.into_iter().map(|r| r.info).collect(),
        groups,
        cells,
    })
}

/// `VNET/SUBNET` of a subnet id.
fn subnet_label(subnet: &ResourceId) -> String {
    let text = subnet.to_string();
    let mut parts = text.rsplit('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some("subnets"), Some(vnet)) => format!("{vnet}/{name}"),
        _ => subnet.name().to_string(),
    }
}
