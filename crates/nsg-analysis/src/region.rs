//! Regions: products of one set per field, as the analyses report them.

use nsg_model::rule::{protocol_has_ports, Direction, PortRange};
use nsg_policy::Flow;
use nsg_tags::PrefixSet;
use serde::Serialize;
use std::collections::HashMap;

/// A set of flows at a NIC in one direction: the product of its fields' sets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub direction: Direction,
    /// Inclusive ranges of IP protocol numbers.
    pub protocols: Vec<(u8, u8)>,
    pub local: PrefixSet,
    /// `None`: flows without ports (the region's protocols have none).
    pub local_ports: Option<Vec<PortRange>>,
    pub remote: PrefixSet,
    pub remote_ports: Option<Vec<PortRange>>,
}

impl Region {
    pub fn contains(&self, flow: &Flow) -> bool {
        let port_in = |ports: &Option<Vec<PortRange>>, port: Option<u16>| match (ports, port) {
            (Some(ranges), Some(p)) => ranges.iter().any(|r| r.contains(p)),
            (None, None) => true,
            _ => false,
        };
        flow.direction == self.direction
            && self
                .protocols
                .iter()
                .any(|&(l, h)| l <= flow.protocol && flow.protocol <= h)
            && protocol_has_ports(flow.protocol) == self.local_ports.is_some()
            && self.local.contains(flow.local.ip)
            && self.remote.contains(flow.remote.ip)
            && port_in(&self.local_ports, flow.local.port)
            && port_in(&self.remote_ports, flow.remote.port)
    }

    /// The unions of `regions` that are still products: regions equal in every field but one
    /// become one, until no two can merge. Fewer, larger regions to read; the same flows.
    pub fn merge(mut regions: Vec<Region>) -> Vec<Region> {
        loop {
            let before = regions.len();
            for field in Field::ALL {
                regions = merge_along(regions, field);
            }
            if regions.len() == before {
                return regions;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Field {
    Protocols,
    Local,
    LocalPorts,
    Remote,
    RemotePorts,
}

impl Field {
    const ALL: [Field; 5] = [
        Field::Remote,
        Field::RemotePorts,
        Field::LocalPorts,
        Field::Protocols,
        Field::Local,
    ];
}

/// Merges the regions that differ only in `field`.
fn merge_along(regions: Vec<Region>, field: Field) -> Vec<Region> {
    let mut merged: Vec<Region> = Vec::new();
    let mut index: HashMap<Region, usize> = HashMap::new();
    for region in regions {
        let key = without(&region, field);
        match index.get(&key) {
            Some(&i) => union_into(&mut merged[i], region, field),
            None => {
                index.insert(key, merged.len());
                merged.push(region);
            }
        }
    }
    merged
}

/// `region` with `field` blanked: the key of the regions it can merge with along `field`.
fn without(region: &Region, field: Field) -> Region {
    let mut key = region.clone();
    match field {
        Field::Protocols => key.protocols.clear(),
        Field::Local => key.local = PrefixSet::empty(),
        Field::LocalPorts => key.local_ports = key.local_ports.map(|_| Vec::new()),
        Field::Remote => key.remote = PrefixSet::empty(),
        Field::RemotePorts => key.remote_ports = key.remote_ports.map(|_| Vec::new()),
    }
    key
}

fn union_into(into: &mut Region, other: Region, field: Field) {
    let ports = |a: &mut Option<Vec<PortRange>>, b: Option<Vec<PortRange>>| {
        if let (Some(a), Some(b)) = (a.as_mut(), b) {
            a.extend(b);
            *a = merge_ports(std::mem::take(a));
        }
    };
    match field {
        Field::Protocols => {
            into.protocols.extend(other.protocols);
            into.protocols = merge_protocols(std::mem::take(&mut into.protocols));
        }
        Field::Local => into.local = into.local.union(&other.local),
        Field::LocalPorts => ports(&mut into.local_ports, other.local_ports),
        Field::Remote => into.remote = into.remote.union(&other.remote),
        Field::RemotePorts => ports(&mut into.remote_ports, other.remote_ports),
    }
}

/// Sorted, with touching and overlapping ranges joined.
pub fn merge_ports(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort_unstable();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if u32::from(r.low) <= u32::from(last.high) + 1 => {
                last.high = last.high.max(r.high)
            }
            _ => merged.push(r),
        }
    }
    merged
}

/// Sorted, with touching and overlapping ranges joined.
pub fn merge_protocols(mut ranges: Vec<(u8, u8)>) -> Vec<(u8, u8)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u8, u8)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match merged.last_mut() {
            Some(last) if u16::from(low) <= u16::from(last.1) + 1 => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged
}

/// A region in packet terms (the source sends), as reports print it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionReport {
    /// Protocol names or numbers, and ranges of numbers (`0-5`).
    pub protocols: Vec<String>,
    pub source: Vec<String>,
    /// Absent for protocols without ports.
    pub source_ports: Option<Vec<String>>,
    pub destination: Vec<String>,
    pub destination_ports: Option<Vec<String>>,
}

impl Region {
    pub fn report(&self) -> RegionReport {
        let protocols = self
            .protocols
            .iter()
            .map(|&(low, high)| {
                if low == high {
                    crate::example::protocol_name(low)
                } else if (low, high) == (0, u8::MAX) {
                    "*".to_string()
                } else {
                    format!("{low}-{high}")
                }
            })
            .collect();
        let addresses = |set: &PrefixSet| -> Vec<String> {
            if set.is_everything() {
                vec!["*".into()]
            } else {
                set.to_cidrs().iter().map(|n| n.to_string()).collect()
            }
        };
        let ports = |ports: &Option<Vec<PortRange>>| {
            ports.as_ref().map(|ranges| {
                ranges
                    .iter()
                    .map(|r| match (r.low, r.high) {
                        (0, u16::MAX) => "*".to_string(),
                        (l, h) if l == h => l.to_string(),
                        (l, h) => format!("{l}-{h}"),
                    })
                    .collect()
            })
        };
        let (local, local_ports) = (addresses(&self.local), ports(&self.local_ports));
        let (remote, remote_ports) = (addresses(&self.remote), ports(&self.remote_ports));
        match self.direction {
            Direction::Inbound => RegionReport {
                protocols,
                source: remote,
                source_ports: remote_ports,
                destination: local,
                destination_ports: local_ports,
            },
            Direction::Outbound => RegionReport {
                protocols,
                source: local,
                source_ports: local_ports,
                destination: remote,
                destination_ports: remote_ports,
            },
        }
    }
}
