//! Parsing what users ask about: which NIC, which flow.

use anyhow::{anyhow, bail, Result};
use nsg_model::model::{Model, NetworkInterface};
use nsg_model::rule::{ip_proto, protocol_has_ports, Direction};
use nsg_model::ResourceId;
use nsg_policy::{Endpoint, Flow};
use std::net::{IpAddr, SocketAddr};

/// Finds a NIC by NIC id or name, or by the id or name of a VM with exactly one NIC.
pub fn find_nic<'m>(model: &'m Model, query: &str) -> Result<&'m NetworkInterface> {
    if let Ok(id) = ResourceId::parse(query) {
        if let Some(nic) = model.network_interface(&id) {
            return Ok(nic);
        }
        if let Some(vm) = model.virtual_machine(&id) {
            return vm_nic(model, vm.id.name(), &vm.network_interfaces);
        }
        bail!("no network interface or virtual machine with id {query} in the environment");
    }
    let nics: Vec<&NetworkInterface> = model
        .network_interfaces
        .iter()
        .filter(|n| n.name().eq_ignore_ascii_case(query))
        .collect();
    match nics.as_slice() {
        [nic] => return Ok(nic),
        [] => {}
        many => bail!(
            "{} network interfaces are named {query}; give the id: {}",
            many.len(),
            many.iter()
                .map(|n| n.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    let vms: Vec<_> = model
        .virtual_machines
        .iter()
        .filter(|vm| vm.id.name().eq_ignore_ascii_case(query))
        .collect();
    match vms.as_slice() {
        [vm] => vm_nic(model, vm.id.name(), &vm.network_interfaces),
        [] => {
            let known: Vec<&str> = model.network_interfaces.iter().map(|n| n.name()).collect();
            bail!(
                "no network interface or virtual machine named {query}; network interfaces: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            )
        }
        many => bail!(
            "{} virtual machines are named {query}; give the id",
            many.len()
        ),
    }
}

fn vm_nic<'m>(model: &'m Model, vm: &str, nics: &[ResourceId]) -> Result<&'m NetworkInterface> {
    match nics {
        [one] => model
            .network_interface(one)
            .ok_or_else(|| anyhow!("network interface {one} of VM {vm} is not in the environment")),
        [] => bail!("virtual machine {vm} has no network interfaces"),
        many => bail!(
            "virtual machine {vm} has {} network interfaces; choose one with --nic: {}",
            many.len(),
            many.iter()
                .map(|n| n.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Parses a protocol as users write it: `tcp`, `udp`, `icmp`, `esp`, `ah`, or a number 0–255.
pub fn parse_protocol(text: &str) -> Result<u8> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "tcp" => ip_proto::TCP,
        "udp" => ip_proto::UDP,
        "icmp" => ip_proto::ICMP,
        "esp" => ip_proto::ESP,
        "ah" => ip_proto::AH,
        number => number.parse::<u8>().map_err(|_| {
            anyhow!("'{text}' is not a protocol: use tcp, udp, icmp, esp, ah or a number 0-255")
        })?,
    })
}

/// Parses `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
pub fn parse_endpoint(text: &str) -> Result<Endpoint> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Endpoint { ip, port: None });
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Ok(Endpoint {
            ip: socket.ip(),
            port: Some(socket.port()),
        });
    }
    bail!("'{text}' is not an address: use IP, IP:PORT or [IPv6]:PORT")
}

pub fn parse_direction(text: &str) -> Result<Direction> {
    Direction::parse(text)
        .ok_or_else(|| anyhow!("'{text}' is not a direction: use inbound or outbound"))
}

/// Builds a flow, checking that ports are given exactly when the protocol has them.
pub fn flow(direction: Direction, protocol: u8, local: Endpoint, remote: Endpoint) -> Result<Flow> {
    let has_ports = protocol_has_ports(protocol);
    for (end, name) in [(local, "local"), (remote, "remote")] {
        match (has_ports, end.port) {
            (true, None) => bail!("the {name} end needs a port for TCP and UDP: IP:PORT"),
            (false, Some(_)) => {
                bail!("protocol {protocol} has no ports: give the {name} end as a bare IP")
            }
            _ => {}
        }
    }
    Ok(Flow {
        direction,
        protocol,
        local,
        remote,
    })
}
