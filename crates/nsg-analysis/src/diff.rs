//! Semantic diff: the flows whose verdict (or deciding rule) differs between two environments,
//! per NIC and direction, as few readable regions, each with an example.
//!
//! The old and new policy of a NIC are walked together, so every region is homogeneous for
//! both; regions with the same change are merged into fewer products.

use crate::example::Example;
use crate::partition::{Analysis, FlowBox, Precision};
use crate::region::{Region, RegionReport};
use nsg_model::rule::Direction;
use nsg_model::ResourceId;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::Decision;
use serde::Serialize;
use std::collections::HashMap;
use std::ops::ControlFlow;

/// What decided a flow on one side of the diff.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub access: &'static str,
    /// Absent when no rule decided (no NSG at the NIC).
    pub rule_name: Option<String>,
}

impl Side {
    fn of(decision: &Decision) -> Side {
        Side {
            access: decision.access.as_str(),
            rule_name: decision.rule_name(),
        }
    }
}

/// One region of flows whose outcome changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    pub nic: String,
    pub direction: &'static str,
    pub old: Side,
    pub new: Side,
    pub region: RegionReport,
    pub example: Example,
}

/// What counts as a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Only the verdict (allow or deny).
    Verdicts,
    /// The verdict or the rule that decides it.
    Rules,
}

/// The differences at one NIC (the same NIC in both environments).
pub fn differences(
    old: &CompiledPolicy,
    new: &CompiledPolicy,
    compare: Compare,
) -> Vec<Difference> {
    differences_at(&[(old, new)], compare)
}

/// The differences at each NIC of `nics` (old and new policy of one NIC), in order: every NIC
/// and direction an independent walk, shared out among the cores.
pub fn differences_at(
    nics: &[(&CompiledPolicy, &CompiledPolicy)],
    compare: Compare,
) -> Vec<Difference> {
    let walks: Vec<_> = nics
        .iter()
        .flat_map(|&pair| [(pair, Direction::Inbound), (pair, Direction::Outbound)])
        .collect();
    crate::cores::map_in_order(&walks, |&((old, new), direction)| {
        differences_in(old, new, compare, direction)
    })
    .concat()
}

fn differences_in(
    old: &CompiledPolicy,
    new: &CompiledPolicy,
    compare: Compare,
    direction: Direction,
) -> Vec<Difference> {
    let nic: &ResourceId = &new.policy().nic;
    let mut found = Vec::new();
    let analysis = Analysis::new(
        &[old, new],
        direction,
        &FlowBox::everything(),
        &[],
        Precision::FirstMatch,
    );
    // (old side, new side) → its regions and first example, in the order met.
    let mut changes: Vec<((Side, Side), Vec<Region>, nsg_policy::Flow)> = Vec::new();
    let mut index: HashMap<(Side, Side), usize> = HashMap::new();
    let _ = analysis.walk(|leaf| {
        let example = leaf.example();
        let (o, n) = (leaf.verdict(0, None), leaf.verdict(1, None));
        if o.access == n.access && compare == Compare::Verdicts {
            return ControlFlow::Continue(());
        }
        let (o, n) = (
            Side::of(&old.decision_of(o, example)),
            Side::of(&new.decision_of(n, example)),
        );
        if o == n {
            return ControlFlow::Continue(());
        }
        let key = (o, n);
        match index.get(&key) {
            Some(&i) => changes[i].1.push(leaf.region()),
            None => {
                index.insert(key.clone(), changes.len());
                changes.push((key, vec![leaf.region()], *example));
            }
        }
        ControlFlow::Continue(())
    });
    for ((o, n), regions, example) in changes {
        for region in Region::merge(regions) {
            // Each merged region's own example: one of its flows, as walked.
            let example = if region.contains(&example) {
                example
            } else {
                region_example(&region)
            };
            found.push(Difference {
                nic: nic.to_string(),
                direction: match direction {
                    Direction::Inbound => "Inbound",
                    Direction::Outbound => "Outbound",
                },
                old: o.clone(),
                new: n.clone(),
                region: region.report(),
                example: Example::new(nic, &example),
            });
        }
    }
    found
}

/// A flow of `region`: the first address, protocol and port of each field.
fn region_example(region: &Region) -> nsg_policy::Flow {
    let first = |set: &nsg_tags::PrefixSet| {
        set.to_cidrs()
            .first()
            .map(|n| n.addr())
            .expect("regions are not empty")
    };
    let port = |ports: &Option<Vec<nsg_model::rule::PortRange>>| ports.as_ref().map(|p| p[0].low);
    nsg_policy::Flow {
        direction: region.direction,
        protocol: region.protocols[0].0,
        local: nsg_policy::Endpoint {
            ip: first(&region.local),
            port: port(&region.local_ports),
        },
        remote: nsg_policy::Endpoint {
            ip: first(&region.remote),
            port: port(&region.remote_ports),
        },
    }
}
