//! Example flows as the analyses print them: what `opennsg verify` takes to confirm them.

use nsg_model::rule::Direction;
use nsg_model::ResourceId;
use nsg_policy::Flow;
use serde::Serialize;
use std::net::IpAddr;

/// One flow at one NIC, in packet terms (the source sends).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Example {
    pub nic: String,
    /// `Inbound` or `Outbound`.
    pub direction: &'static str,
    /// `TCP`, `UDP`, `ICMP`, or the protocol number.
    pub protocol: String,
    pub source: IpAddr,
    pub source_port: Option<u16>,
    pub destination: IpAddr,
    pub destination_port: Option<u16>,
}

impl Example {
    pub fn new(nic: &ResourceId, flow: &Flow) -> Example {
        let (source, destination) = flow.source_destination();
        Example {
            nic: nic.to_string(),
            direction: match flow.direction {
                Direction::Inbound => "Inbound",
                Direction::Outbound => "Outbound",
            },
            protocol: protocol_name(flow.protocol),
            source: source.ip,
            source_port: source.port,
            destination: destination.ip,
            destination_port: destination.port,
        }
    }
}

impl Example {
    /// The flow as `opennsg verify` options: `--nic … --direction … --protocol … --local … --remote …`.
    pub fn verify_options(&self) -> String {
        let end = |ip: IpAddr, port: Option<u16>| nsg_policy::Endpoint { ip, port }.to_string();
        let source = end(self.source, self.source_port);
        let destination = end(self.destination, self.destination_port);
        let (local, remote) = match self.direction {
            "Inbound" => (destination, source),
            _ => (source, destination),
        };
        // `verify` names tcp, udp, icmp, esp and ah; numbers for the rest.
        let protocol = match self.protocol.as_str() {
            "ICMPv6" => "58".to_string(),
            name => name.to_lowercase(),
        };
        format!(
            "--nic {} --direction {} --protocol {protocol} --local {local} --remote {remote}",
            self.nic,
            self.direction.to_lowercase(),
        )
    }
}

/// `TCP`, `UDP`, `ICMP`, `ICMPv6`, `ESP`, `AH`, else the number (as `verify --protocol` takes it).
pub fn protocol_name(number: u8) -> String {
    let name = nsg_model::rule::protocol_name(number);
    match name.strip_prefix("protocol ") {
        Some(digits) => digits.to_string(),
        None => name,
    }
}
