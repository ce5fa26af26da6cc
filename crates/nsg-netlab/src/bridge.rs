//! Bridged guests, attached the way libvirt, Docker and LXD attach theirs: the router end of
//! each guest's veth pair is a port of a Linux bridge in the router namespace, the bridge holds
//! the gateway addresses, and guests on one bridge share a subnet and reach each other on-link
//! (layer 2, without crossing the router's IP forward path).
//!
//! The bridge's subnets are routed like any connected network, so bridged guests and the
//! routed guests of [`Lab::attach`] reach each other through the router.
//!
//! Note for firewall tests: br_netfilter is built into the test kernel, and every namespace
//! starts with `net.bridge.bridge-nf-call-iptables`, `-ip6tables` and `-arptables` set to 1,
//! so frames bridged between two guests of one bridge also traverse the router's IP `forward`
//! hook, although they are never routed. There both the input and the output interface are
//! the bridge (`iifname "br0" oifname "br0"`), never the port: per-port rules in the `inet`
//! family cannot tell bridged guests apart; the `bridge` family sees the ports.

use ipnet::IpNet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::LabError;
use crate::lab::{check_ifname, create_veth, format_mac, GuestSide, Lab, RouterSide};
use crate::netns::Netns;

/// A Linux bridge in a router namespace, made by [`Lab::bridge`].
///
/// A cheap handle like [`Netns`]: the bridge goes away with its namespace when the lab is
/// dropped (a bridge is a virtual device, so the kernel deletes it with its namespace instead of
/// moving it to the initial one, and its ports' veth peers with it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bridge {
    router: Netns,
    name: String,
    mac: [u8; 6],
    /// The bridge's addresses with their prefix lengths (`10.0.1.1/24`).
    addresses: Vec<IpNet>,
}

impl Bridge {
    /// The interface name in the router namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace the bridge lives in.
    pub fn router(&self) -> &Netns {
        &self.router
    }

    /// The bridge's own MAC, which guests resolve their gateway to.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The bridge's addresses with their prefix lengths, in the order given.
    pub fn addresses(&self) -> &[IpNet] {
        &self.addresses
    }

    /// The first IPv4 address of the bridge: the IPv4 gateway of its guests.
    pub fn gateway_v4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(|net| match net {
            IpNet::V4(v4) => Some(v4.addr()),
            IpNet::V6(_) => None,
        })
    }

    /// The first IPv6 address of the bridge: the IPv6 gateway of its guests.
    pub fn gateway_v6(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|net| match net {
            IpNet::V6(v6) => Some(v6.addr()),
            IpNet::V4(_) => None,
        })
    }

    /// The bridge address (with its prefix length) whose subnet holds `address`, if any.
    fn subnet_of(&self, address: IpAddr) -> Option<IpNet> {
        self.addresses
            .iter()
            .copied()
            .find(|net| net.contains(&address))
    }
}

impl Lab {
    /// Creates the bridge `name` in `router`, with `addresses` ("10.0.1.1/24",
    /// "fd00:1::1/64", ...) on it, and brings it up.
    ///
    /// STP is off and the forward delay 0, so a new port forwards at once (with STP it would
    /// listen and learn for 2 x 15 s first). IPv6 DAD is off, so its addresses are usable
    /// at once. Multicast snooping is off, so the bridge floods multicast (neighbour
    /// solicitations included) to every port instead of guessing group membership from MLD
    /// reports that a guest may have sent before its port existed. The bridge gets a fixed MAC
    /// (derived from its name): a bridge with a kernel-chosen MAC takes over the lowest MAC of
    /// its ports, so the gateway MAC guests had resolved would change as guests are attached.
    pub fn bridge(
        &self,
        router: &Netns,
        name: &str,
        addresses: &[impl AsRef<str>],
    ) -> Result<Bridge, LabError> {
        check_ifname(name)?;
        let addresses = addresses
            .iter()
            .map(|text| parse_interface_address(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mac = bridge_mac(router.name(), name);
        router.ip([
            "link",
            "add",
            "name",
            name,
            "address",
            &format_mac(mac),
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        router.write_sysctl(&format!("net/ipv6/conf/{name}/accept_dad"), "0")?;
        for net in &addresses {
            add_address(router, name, net.addr(), net.prefix_len())?;
        }
        router.ip(["link", "set", name, "up"])?;
        Ok(Bridge {
            router: router.clone(),
            name: name.to_owned(),
            mac,
            addresses,
        })
    }

    /// Connects `guest` to `bridge` with a veth pair: the router end (`router_side`) becomes
    /// a port of the bridge, with no addresses, and the guest end (`guest_side`) gets the
    /// guest's addresses, each with the prefix length of the bridge subnet it is in (so the
    /// guests of one bridge reach each other on-link), and default routes via the bridge's
    /// address in the subnet of the guest's first IPv4 and first IPv6 address.
    ///
    /// Fails before creating anything if a guest address is in none of the bridge's subnets.
    /// A guest is meant to be attached once (it gets default routes).
    pub fn attach_to_bridge(
        &self,
        bridge: &Bridge,
        guest: &Netns,
        router_side: &RouterSide,
        guest_side: &GuestSide,
    ) -> Result<(), LabError> {
        let subnets = guest_side
            .addresses
            .iter()
            .map(|&address| {
                bridge
                    .subnet_of(address)
                    .map(|subnet| (address, subnet.addr(), subnet.prefix_len()))
                    .ok_or_else(|| LabError::InvalidName {
                        what: "bridged guest address",
                        name: address.to_string(),
                        reason: "is in none of the bridge's subnets",
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let router = bridge.router();
        create_veth(router, guest, router_side, guest_side)?;
        let (r_if, g_if) = (router_side.ifname.as_str(), guest_side.ifname.as_str());

        // A port is a plain layer-2 attachment: without this it would still get an IPv6
        // link-local address and answer on it.
        router.ip(["link", "set", "dev", r_if, "addrgenmode", "none"])?;
        router.ip(["link", "set", "dev", r_if, "master", bridge.name()])?;
        router.ip(["link", "set", "dev", r_if, "up"])?;

        for &(address, _, prefix_len) in &subnets {
            add_address(guest, g_if, address, prefix_len)?;
        }
        guest.ip(["link", "set", "dev", g_if, "up"])?;

        // Routes need the link up; a gateway must be on-link, hence one of the guest's subnets.
        let first_v4 = subnets.iter().find(|(address, ..)| address.is_ipv4());
        let first_v6 = subnets.iter().find(|(address, ..)| address.is_ipv6());
        for (family, gateway) in [("-4", first_v4), ("-6", first_v6)]
            .into_iter()
            .filter_map(|(family, subnet)| subnet.map(|&(_, gateway, _)| (family, gateway)))
        {
            let gateway = gateway.to_string();
            guest.ip([
                family, "route", "add", "default", "via", &gateway, "dev", g_if,
            ])?;
        }
        Ok(())
    }
}

/// Adds `address/prefix_len` to `ifname`, IPv6 ones without DAD (usable at once).
fn add_address(ns: &Netns, ifname: &str, address: IpAddr, prefix_len: u8) -> Result<(), LabError> {
    let with_prefix = format!("{address}/{prefix_len}");
    match address {
        IpAddr::V4(_) => ns.ip(["address", "add", &with_prefix, "dev", ifname]),
        IpAddr::V6(_) => ns.ip(["address", "add", &with_prefix, "dev", ifname, "nodad"]),
    }
}

/// Reads "ADDRESS/PREFIX_LEN" as `ip address add` takes it; the prefix length is required,
/// since guessing /32 for a bridge address would silently leave its guests without a subnet.
fn parse_interface_address(text: &str) -> Result<IpNet, LabError> {
    text.parse().map_err(|_| LabError::InvalidName {
        what: "interface address",
        name: text.to_owned(),
        reason: "is not an address with a prefix length, as in 10.0.1.1/24",
    })
}

/// A locally administered unicast MAC that stays the same for the same router and bridge names.
fn bridge_mac(router: &str, bridge: &str) -> [u8; 6] {
    // DefaultHasher::new() uses fixed keys, so the result is the same in every run.
    let mut hasher = DefaultHasher::new();
    (router, bridge).hash(&mut hasher);
    let hash = hasher.finish().to_be_bytes();
    [
        (hash[0] & 0xfc) | 0x02,
        hash[1],
        hash[2],
        hash[3],
        hash[4],
        hash[5],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_prefix_lengths() {
        assert_eq!(
            parse_interface_address("10.0.1.1/24").unwrap(),
            "10.0.1.1/24".parse::<IpNet>().unwrap()
        );
        for bad in ["10.0.1.1", "10.0.1.1/33", "fd00::1/129", "x/8", "10.0.0.1/"] {
            assert!(
                matches!(
                    parse_interface_address(bad),
                    Err(LabError::InvalidName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn gateways_and_subnets_come_from_the_bridge_addresses() {
        let bridge = Bridge {
            router: Netns::new("r".to_owned()),
            name: "br0".to_owned(),
            mac: [2, 0, 0, 0, 0, 1],
            addresses: ["fd00:1::1/64", "10.0.1.1/24", "10.0.2.1/24"]
                .map(|text| parse_interface_address(text).unwrap())
                .to_vec(),
        };
        assert_eq!(bridge.gateway_v4(), Some(Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(bridge.gateway_v6(), Some("fd00:1::1".parse().unwrap()));
        assert_eq!(
            bridge.subnet_of("10.0.2.9".parse().unwrap()),
            Some("10.0.2.1/24".parse().unwrap())
        );
        assert_eq!(bridge.subnet_of("10.0.3.9".parse().unwrap()), None);
    }

    #[test]
    fn bridge_macs_are_stable_local_unicast_and_distinct() {
        let mac = bridge_mac("router", "br0");
        assert_eq!(mac, bridge_mac("router", "br0"));
        assert_eq!(
            mac[0] & 0x03,
            0x02,
            "locally administered unicast: {mac:02x?}"
        );
        assert_ne!(mac, bridge_mac("router", "br1"));
        assert_ne!(mac, bridge_mac("router2", "br0"));
    }
}
