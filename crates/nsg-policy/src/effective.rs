//! Effective security rules: what `az network nic list-effective-nsg` and the REST operation
//! `networkInterfaces/{nic}/effectiveNetworkSecurityGroups` return (reference §5.2).

use crate::resolve::{Level, ResolveError, Resolver};
use ipnet::IpNet;
use nsg_model::model::{Model, NetworkInterface};
use nsg_model::rule::{Addresses, Direction, Ports, Protocol, Rule};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct EffectiveNetworkSecurityGroupList {
    pub value: Vec<EffectiveNetworkSecurityGroup>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveNetworkSecurityGroup {
    pub network_security_group: IdRef,
    pub association: Association,
    pub effective_security_rules: Vec<EffectiveSecurityRule>,
    /// Each tag the rules name, with its prefixes. The REST spec calls it a string, but Azure
    /// sends an object (the Azure CLI requires one; the Python SDK reads either).
    pub tag_map: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Association {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<IdRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<IdRef>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSecurityRule {
    pub name: String,
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    pub source_port_ranges: Vec<String>,
    pub destination_port_ranges: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    pub source_address_prefixes: Vec<String>,
    pub destination_address_prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expanded_source_address_prefix: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expanded_destination_address_prefix: Option<Vec<String>>,
    pub access: &'static str,
    pub priority: u16,
    pub direction: &'static str,
}

/// The effective security rules of `nic`: one entry per associated NSG, subnet first.
pub fn effective_network_security_groups(
    model: &Model,
    resolver: &mut Resolver<'_>,
    nic: &NetworkInterface,
) -> Result<EffectiveNetworkSecurityGroupList, ResolveError> {
    let policy = resolver.resolve(nic)?;
    let mut value = Vec::new();
    for level in [Level::Subnet, Level::NetworkInterface] {
        let Some(stage) = policy.inbound.iter().find(|s| s.level == level) else {
            continue;
        };
        let nsg = model
            .network_security_group(&stage.nsg)
            .expect("resolved stages name NSGs of the model");
        let association = match level {
            Level::Subnet => Association {
                subnet: Some(IdRef {
                    id: policy.subnet.to_string(),
                }),
                network_interface: None,
            },
            Level::NetworkInterface => Association {
                subnet: None,
                network_interface: Some(IdRef {
                    id: nic.id.to_string(),
                }),
            },
        };
        let mut custom: Vec<&Rule> = nsg.rules.iter().collect();
        custom.sort_by_key(|r| (r.direction, r.priority));
        let mut tag_map = BTreeMap::new();
        let mut rules = Vec::new();
        for rule in custom.into_iter().chain(&nsg.default_rules) {
            rules.push(render_rule(
                resolver,
                nic,
                nsg.id.as_str(),
                rule,
                &mut tag_map,
            )?);
        }
        value.push(EffectiveNetworkSecurityGroup {
            network_security_group: IdRef {
                id: nsg.id.to_string(),
            },
            association,
            effective_security_rules: rules,
            tag_map,
        });
    }
    Ok(EffectiveNetworkSecurityGroupList { value })
}

fn render_rule(
    resolver: &mut Resolver<'_>,
    nic: &NetworkInterface,
    nsg: &str,
    rule: &Rule,
    tag_map: &mut BTreeMap<String, Vec<String>>,
) -> Result<EffectiveSecurityRule, ResolveError> {
    let (source_port_range, source_port_ranges) = render_ports(&rule.source_ports);
    let (destination_port_range, destination_port_ranges) = render_ports(&rule.destination_ports);
    let mut side = |addresses: &Addresses| -> Result<RenderedAddresses, ResolveError> {
        render_addresses(resolver, nic, addresses, tag_map).map_err(|hint| {
            ResolveError::UnknownTag {
                nsg: nsg.to_string(),
                rule: rule.reference(),
                hint,
            }
        })
    };
    let source = side(&rule.source)?;
    let destination = side(&rule.destination)?;
    Ok(EffectiveSecurityRule {
        name: format!("{}/{}", rule.kind.collection(), rule.name),
        protocol: match rule.protocol {
            Protocol::Any => "All",
            other => other.as_str(),
        },
        source_port_range,
        destination_port_range,
        source_port_ranges,
        destination_port_ranges,
        source_address_prefix: source.single,
        destination_address_prefix: destination.single,
        source_address_prefixes: source.list,
        destination_address_prefixes: destination.list,
        expanded_source_address_prefix: source.expanded,
        expanded_destination_address_prefix: destination.expanded,
        access: rule.access.as_str(),
        priority: rule.priority,
        direction: match rule.direction {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
        },
    })
}

/// `*` is `0-65535`, a single port `N` is `N-N`; a singular field is mirrored in the plural list
/// as the Azure CLI shows it.
fn render_ports(ports: &Ports) -> (Option<String>, Vec<String>) {
    let shown: Vec<String> = ports
        .ranges()
        .iter()
        .map(|r| format!("{}-{}", r.low, r.high))
        .collect();
    match ports {
        Ports::Ranges { plural: true, .. } => (None, shown),
        _ => (shown.first().cloned(), shown),
    }
}

struct RenderedAddresses {
    single: Option<String>,
    list: Vec<String>,
    expanded: Option<Vec<String>>,
}

fn render_addresses(
    resolver: &mut Resolver<'_>,
    nic: &NetworkInterface,
    addresses: &Addresses,
    tag_map: &mut BTreeMap<String, Vec<String>>,
) -> Result<RenderedAddresses, String> {
    let cidrs = |nets: Vec<IpNet>| nets.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    Ok(match addresses {
        Addresses::Any => RenderedAddresses {
            single: Some("0.0.0.0/0".into()),
            list: vec!["0.0.0.0/0".into()],
            expanded: None,
        },
        Addresses::Prefixes { nets, plural } => {
            let list = cidrs(nets.clone());
            RenderedAddresses {
                single: (!plural).then(|| list[0].clone()),
                list,
                expanded: None,
            }
        }
        Addresses::Tag(name) => {
            let expanded = cidrs(resolver.expand(nic, addresses)?);
            tag_map.insert(name.clone(), expanded.clone());
            RenderedAddresses {
                single: Some(name.clone()),
                list: vec![name.clone()],
                expanded: Some(expanded),
            }
        }
        // Azure's documents do not show how ASGs render; we list the members' addresses
        // (docs/semantics.md).
        Addresses::ApplicationSecurityGroups(_) => {
            let expanded = cidrs(resolver.expand(nic, addresses)?);
            RenderedAddresses {
                single: None,
                list: expanded.clone(),
                expanded: Some(expanded),
            }
        }
    })
}
