//! The built-in tags' sets (design.md "Semantic decisions").

use std::net::IpAddr;

use ipnet::IpNet;
use nsg_tags::context::{
    azure_load_balancer, builtin_set, internet, platform_dns, platform_imds, platform_lkm,
    public_unicast, virtual_network, HOST_VIP, IMDS, KMS_ADDRESSES,
};
use nsg_tags::{BuiltinTag, PrefixSet};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

#[test]
fn internet_is_public_unicast_including_documentation_ranges() {
    let internet = internet(&virtual_network([net("10.0.0.0/16")]));
    for public in [
        "203.0.113.7",
        "8.8.8.8",
        "2001:4860::8888",
        "1.0.0.0",
        "223.255.255.255",
        "2001:db8::1",
    ] {
        assert!(internet.contains(ip(public)), "{public} should be Internet");
    }
    for local in [
        "10.1.2.3",
        "192.168.1.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "172.31.255.255",
        "fe80::1",
        "fd00::1",
        "::1",
        "::ffff:8.8.8.8",
        "ff02::1",
    ] {
        assert!(
            !internet.contains(ip(local)),
            "{local} should not be Internet"
        );
    }
}

#[test]
fn the_host_vip_is_virtual_network_not_internet() {
    let vnet = virtual_network([net("10.0.0.0/16")]);
    assert!(vnet.contains(IpAddr::V4(HOST_VIP)));
    assert!(!internet(&vnet).contains(IpAddr::V4(HOST_VIP)));
    // Without a VNet the host VIP is ordinary public space.
    assert!(public_unicast().contains(IpAddr::V4(HOST_VIP)));
}

#[test]
fn a_vnet_on_public_space_takes_it_out_of_internet() {
    let vnet = virtual_network([net("20.0.0.0/16")]);
    let internet = internet(&vnet);
    assert!(!internet.contains(ip("20.0.1.2")));
    assert!(internet.contains(ip("20.1.0.0")));
    assert!(!internet.intersects(&vnet));
}

#[test]
fn virtual_network_is_the_spaces_plus_the_host_vip() {
    let vnet = virtual_network([net("10.9.0.0/16"), net("10.0.0.0/16"), net("10.1.0.0/16")]);
    let cidrs: Vec<String> = vnet.to_cidrs().iter().map(ToString::to_string).collect();
    assert_eq!(cidrs, ["10.0.0.0/15", "10.9.0.0/16", "168.63.129.16/32"]);
}

#[test]
fn fixed_platform_addresses() {
    let single = |s: &PrefixSet| {
        s.to_cidrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(single(&azure_load_balancer()), ["168.63.129.16/32"]);
    assert_eq!(single(&platform_dns()), ["168.63.129.16/32"]);
    assert_eq!(single(&platform_imds()), ["169.254.169.254/32"]);
    assert_eq!(IMDS.to_string(), "169.254.169.254");
    let lkm = platform_lkm();
    assert_eq!(lkm.to_cidrs().len(), 3);
    assert!(KMS_ADDRESSES.iter().all(|&a| lkm.contains(IpAddr::V4(a))));
    assert!(lkm.contains(ip("23.102.135.246")) && lkm.contains(ip("20.118.99.224")));
}

#[test]
fn builtin_set_dispatches_every_tag() {
    let vnet = virtual_network([net("10.0.0.0/16")]);
    assert_eq!(builtin_set(BuiltinTag::VirtualNetwork, &vnet), vnet);
    assert_eq!(builtin_set(BuiltinTag::Internet, &vnet), internet(&vnet));
    assert_eq!(
        builtin_set(BuiltinTag::AzureLoadBalancer, &vnet),
        azure_load_balancer()
    );
    assert_eq!(
        builtin_set(BuiltinTag::AzurePlatformDns, &vnet),
        platform_dns()
    );
    assert_eq!(
        builtin_set(BuiltinTag::AzurePlatformImds, &vnet),
        platform_imds()
    );
    assert_eq!(
        builtin_set(BuiltinTag::AzurePlatformLkm, &vnet),
        platform_lkm()
    );
}
