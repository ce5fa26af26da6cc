//! The address sets behind the built-in tags ([`BuiltinTag`]).
//!
//! These are OpenNSG's documented choices where Azure publishes no prefix list (design.md, "Semantic
//! decisions"; reference §3.7, §3.8). All are pure functions: what depends on the deployment — the
//! virtual network's address spaces — is an argument the caller computes.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::{BuiltinTag, PrefixSet};

/// The virtual IP of the host, 168.63.129.16: DHCP, DNS, health probes. "The only virtualized IP
/// addresses used in all regions for this purpose" together with [`IMDS`] (reference §3.8).
pub const HOST_VIP: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// The Instance Metadata Service, 169.254.169.254 (reference §3.8).
pub const IMDS: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Azure's Windows activation (KMS, TCP 1688) hosts: `azkms.core.windows.net` (20.118.99.224,
/// 40.83.235.53) and `kms.core.windows.net` (23.102.135.246), as Microsoft's VM activation
/// troubleshooting guide lists them. The reference marks the exact IPs unverified (§3.8).
pub const KMS_ADDRESSES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(20, 118, 99, 224),
    Ipv4Addr::new(40, 83, 235, 53),
    Ipv4Addr::new(23, 102, 135, 246),
];

/// IPv4 space that is never `Internet`: "this network", private (RFC 1918), shared CGNAT (RFC 6598),
/// loopback, link-local, multicast and reserved (240/4, which includes the limited broadcast).
/// Azure does not publish its exact list (reference §3.7 marks it unverified); this one is design.md's
/// choice. Documentation and benchmarking ranges (e.g. 203.0.113.0/24, 198.18.0.0/15) deliberately
/// stay in `Internet`: nothing about a VM's network makes them local.
pub const NOT_INTERNET_V4: [Ipv4Net; 9] = [
    Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 8),
    Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10),
    Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8),
    Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12),
    Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16),
    Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4),
    Ipv4Net::new_assert(Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 space that is never `Internet`: `::/8` (unspecified, loopback, IPv4-mapped and -compatible),
/// unique local `fc00::/7`, link-local `fe80::/10` and multicast `ff00::/8` — the IPv6 counterparts of
/// [`NOT_INTERNET_V4`].
pub const NOT_INTERNET_V6: [Ipv6Net; 4] = [
    Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 8),
    Ipv6Net::new_assert(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    Ipv6Net::new_assert(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

/// A set of single IPv4 hosts.
fn hosts(addresses: &[Ipv4Addr]) -> PrefixSet {
    PrefixSet::from_nets(addresses.iter().map(|&a| IpNet::V4(Ipv4Net::from(a))))
}

/// `AzureLoadBalancer`: "translates to the virtual IP address of the host (168.63.129.16) where the
/// Azure health probes originate" (reference §3.7). No IPv6 host VIP is documented, so none is added.
pub fn azure_load_balancer() -> PrefixSet {
    hosts(&[HOST_VIP])
}

/// `VirtualNetwork` for a NIC: `address_spaces` (the caller passes its VNet's address space and the
/// spaces of peered VNets) plus the host VIP, as Azure's effective rules show it (reference §3.7).
///
/// Connected on-premises spaces and UDR prefixes are the caller's to add. A UDR default route is
/// deliberately not part of it: that would turn `AllowVnetInBound` into "allow everything" (design.md).
pub fn virtual_network(address_spaces: impl IntoIterator<Item = IpNet>) -> PrefixSet {
    PrefixSet::from_nets(address_spaces).union(&hosts(&[HOST_VIP]))
}

/// All public unicast addresses: everything except [`NOT_INTERNET_V4`] and [`NOT_INTERNET_V6`].
pub fn public_unicast() -> PrefixSet {
    let reserved = NOT_INTERNET_V4
        .iter()
        .map(|&n| IpNet::V4(n))
        .chain(NOT_INTERNET_V6.iter().map(|&n| IpNet::V6(n)));
    PrefixSet::everything().difference(&PrefixSet::from_nets(reserved))
}

/// `Internet`: "the IP address space that's outside the virtual network and reachable by the public
/// internet" including Azure's own public space (reference §3.7), i.e. [`public_unicast`] minus the
/// NIC's `VirtualNetwork` set — so a VNet built on public space takes that space out of `Internet`.
pub fn internet(virtual_network: &PrefixSet) -> PrefixSet {
    public_unicast().difference(virtual_network)
}

/// `AzurePlatformDNS`: Azure DNS is served from the host VIP (reference §3.8).
pub fn platform_dns() -> PrefixSet {
    hosts(&[HOST_VIP])
}

/// `AzurePlatformIMDS`: the Instance Metadata Service address (reference §3.8).
pub fn platform_imds() -> PrefixSet {
    hosts(&[IMDS])
}

/// `AzurePlatformLKM`: the KMS hosts Windows VMs activate against ([`KMS_ADDRESSES`]).
pub fn platform_lkm() -> PrefixSet {
    hosts(&KMS_ADDRESSES)
}

/// The set of a built-in tag for a NIC whose `VirtualNetwork` set is `virtual_network` (see
/// [`virtual_network`]); only `VirtualNetwork` and `Internet` depend on it.
pub fn builtin_set(tag: BuiltinTag, virtual_network: &PrefixSet) -> PrefixSet {
    match tag {
        BuiltinTag::VirtualNetwork => virtual_network.clone(),
        BuiltinTag::AzureLoadBalancer => azure_load_balancer(),
        BuiltinTag::Internet => internet(virtual_network),
        BuiltinTag::AzurePlatformDns => platform_dns(),
        BuiltinTag::AzurePlatformImds => platform_imds(),
        BuiltinTag::AzurePlatformLkm => platform_lkm(),
    }
}
