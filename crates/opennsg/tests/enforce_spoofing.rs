//! Anti-spoofing holds for every packet, tracked or not (K4): a guest may not send under
//! another's address, not even on a 5-tuple conntrack already tracks, nor deliver ICMP errors
//! citing another guest's flow; a NIC with `enableIPForwarding` may send and receive for
//! other addresses. Real packets, crafted with raw sockets, between namespaces. Needs root.

mod support;

use nsg_netlab::packet::{
    arp_reply, ethernet_frame, ipv4_icmp_port_unreachable, ipv4_udp, ipv6_icmp_port_unreachable,
    ipv6_neighbor_advertisement, ipv6_udp, parse_arp, parse_neighbor_advertisement, ETHERTYPE_IPV4,
};
use nsg_netlab::{udp_bind, Capture, FiveTuple, FrameSender, IcmpError, RawSender};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use support::*;

fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_udp(s, d, src_port, dst_port, b"probe"),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_udp(s, d, src_port, dst_port, b"probe"),
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// An ICMP port unreachable from `src` to `dst` that quotes `quoted`.
fn port_unreachable(src: IpAddr, dst: IpAddr, quoted: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4_icmp_port_unreachable(s, d, quoted),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6_icmp_port_unreachable(s, d, quoted),
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// The lab's hosts with raw senders and captures on their `eth0`.
struct Probes<'a> {
    topology: &'a Topology,
    senders: Vec<(&'static str, RawSender)>,
    captures: Vec<(&'static str, Capture)>,
}

impl Probes<'_> {
    fn new<'a>(topology: &'a Topology, hosts: &[&'static str]) -> Probes<'a> {
        let ns = |name| &topology.host(name).ns;
        Probes {
            topology,
            senders: hosts
                .iter()
                .map(|&h| (h, RawSender::open(ns(h)).expect("raw socket")))
                .collect(),
            captures: hosts
                .iter()
                .map(|&h| (h, Capture::open(ns(h), "eth0").expect("capture")))
                .collect(),
        }
    }

    /// The packets that arrive at `to` after `from` sends `packet`.
    fn send(&self, from: &str, packet: &[u8], to: &str) -> Vec<Vec<u8>> {
        let find = |name: &str| name == from;
        let capture = &self
            .captures
            .iter()
            .find(|(h, _)| *h == to)
            .expect("a captured host")
            .1;
        capture.drain(Duration::ZERO).expect("drain stale packets");
        self.senders
            .iter()
            .find(|(h, _)| find(h))
            .expect("a sending host")
            .1
            .send(packet)
            .expect("send");
        capture.drain(Duration::from_millis(300)).expect("capture")
    }

    /// Whether `packet`, sent from `from`, arrives at `to` with its addresses and ports.
    fn delivered(&self, from: &str, packet: &[u8], to: &str) -> bool {
        let sent = FiveTuple::parse(packet).expect("a well-formed probe");
        self.send(from, packet, to)
            .iter()
            .any(|p| FiveTuple::parse(p) == Some(sent))
    }

    /// Whether the ICMP error `packet`, sent from `from`, arrives at `to`.
    fn error_delivered(&self, from: &str, packet: &[u8], to: &str) -> bool {
        let sent = IcmpError::parse(packet).expect("an ICMP error");
        self.send(from, packet, to)
            .iter()
            .any(|p| IcmpError::parse(p) == Some(sent))
    }

    fn address(&self, host: &str, v6: bool) -> IpAddr {
        let addresses = &self.topology.host(host).addresses;
        *addresses
            .iter()
            .find(|a| a.is_ipv6() == v6)
            .unwrap_or_else(|| panic!("{host} has an address of the family"))
    }
}

/// The MACs of the NICs in `spoofing.json`.
const N0_MAC: [u8; 6] = [0x00, 0x0d, 0x3a, 0, 1, 4];
const N1_MAC: [u8; 6] = [0x00, 0x0d, 0x3a, 0, 1, 5];
const N3_MAC: [u8; 6] = [0x00, 0x0d, 0x3a, 0, 1, 7];

/// n0 and n1 are ordinary guests with open NSGs, n3 a guest whose NSG denies everything,
/// `appliance` a guest with IP forwarding; `inet` a host on the internet.
const HOSTS: [HostSpec<'static>; 5] = [
    ("n0", &["10.0.1.4", "fd00:1:0:1::4"], Some(N0_MAC)),
    ("n1", &["10.0.1.5", "fd00:1:0:1::5"], Some(N1_MAC)),
    ("n3", &["10.0.1.7", "fd00:1:0:1::7"], Some(N3_MAC)),
    (
        "appliance",
        &["10.0.1.8", "fd00:1:0:1::8"],
        Some([0x00, 0x0d, 0x3a, 0, 1, 8]),
    ),
    ("inet", &["203.0.113.10", "2001:db8::10"], None),
];

const BINDS: [&str; 4] = [
    "n0-nic=n0",
    "n1-nic=n1",
    "n3-nic=n3",
    "router-nic=appliance",
];

fn spoofing_is_dropped_on_new_and_tracked_flows(topology: &Topology) {
    topology.enforce(&load("spoofing.json"), &BINDS);
    let probes = Probes::new(topology, &["n0", "n1", "n3", "appliance", "inet"]);
    for v6 in [false, true] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let (n0, n1, n3) = (
            probes.address("n0", v6),
            probes.address("n1", v6),
            probes.address("n3", v6),
        );
        let inet = probes.address("inet", v6);
        // Sockets on both ends keep the kernels from answering with port unreachables.
        let _sockets = [
            udp_bind(&topology.host("n0").ns, SocketAddr::new(n0, 4000)).expect("bind"),
            udp_bind(&topology.host("inet").ns, SocketAddr::new(inet, 5000)).expect("bind"),
        ];

        // A live flow of n0's: conntrack tracks it, both ways.
        let request = udp(n0, inet, 4000, 5000);
        let reply = udp(inet, n0, 5000, 4000);
        assert!(
            probes.delivered("n0", &request, "inet"),
            "{family}: n0 → inet"
        );
        assert!(
            probes.delivered("inet", &reply, "n0"),
            "{family}: the reply"
        );

        // n3 reuses the flow's 5-tuple, in either direction, under someone else's address.
        assert!(
            !probes.delivered("n3", &request, "inet"),
            "{family}: n3 sends n0's tracked request"
        );
        assert!(
            !probes.delivered("n3", &reply, "n0"),
            "{family}: n3 sends the tracked reply to n0"
        );
        // New 5-tuples under another guest's address.
        assert!(
            !probes.delivered("n3", &udp(n0, inet, 4001, 5000), "inet"),
            "{family}: n3 as n0 on a new flow"
        );
        assert!(
            !probes.delivered("n3", &udp(n1, n0, 4002, 4000), "n0"),
            "{family}: n3 as n1 to n0"
        );

        // An ICMP error citing n0's flow: from n3 (whose NSG denies everything) it is a forgery,
        // dropped whichever end it is sent to; from the flow's other end it is genuine.
        assert!(
            !probes.error_delivered("n3", &port_unreachable(n3, n0, &request), "n0"),
            "{family}: n3's error about n0's flow, to n0"
        );
        assert!(
            !probes.error_delivered("n3", &port_unreachable(n3, inet, &reply), "inet"),
            "{family}: n3's error about n0's flow, to inet"
        );
        assert!(
            probes.error_delivered("inet", &port_unreachable(inet, n0, &request), "n0"),
            "{family}: inet's error about n0's flow reaches n0"
        );
        assert!(
            probes.error_delivered("n0", &port_unreachable(n0, inet, &reply), "inet"),
            "{family}: n0's error about its own flow reaches inet"
        );
    }
}

/// The appliance (IP forwarding) sends for a network behind it and receives for one; n0 may
/// do neither.
fn forwarding_nics_carry_other_addresses(topology: &Topology) {
    topology.enforce(&load("spoofing.json"), &BINDS);
    let probes = Probes::new(topology, &["n0", "appliance", "inet"]);
    let router = &topology.router;
    for (behind_appliance, behind_n0, via_appliance, via_n0) in [
        (
            "198.51.100.0/25",
            "198.51.100.128/25",
            "10.0.1.8",
            "10.0.1.4",
        ),
        (
            "2001:db8:f00::/64",
            "2001:db8:f01::/64",
            "fd00:1:0:1::8",
            "fd00:1:0:1::4",
        ),
    ] {
        for (network, via) in [(behind_appliance, via_appliance), (behind_n0, via_n0)] {
            router
                .exec_checked("ip", ["route", "add", network, "via", via])
                .expect("route");
        }
    }
    for (v6, behind_appliance, behind_n0) in [
        (false, "198.51.100.7", "198.51.100.130"),
        (true, "2001:db8:f00::7", "2001:db8:f01::7"),
    ] {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let inet = probes.address("inet", v6);
        let (appliance_side, n0_side) = (ip(behind_appliance), ip(behind_n0));
        assert!(
            probes.delivered("appliance", &udp(appliance_side, inet, 4000, 5000), "inet"),
            "{family}: the appliance sends for its network"
        );
        assert!(
            probes.delivered("inet", &udp(inet, appliance_side, 5000, 4000), "appliance"),
            "{family}: the appliance receives for its network"
        );
        assert!(
            !probes.delivered("n0", &udp(n0_side, inet, 4000, 5000), "inet"),
            "{family}: n0 has no IP forwarding: it may not send for a network"
        );
        assert!(
            !probes.delivered("inet", &udp(inet, n0_side, 5000, 4000), "n0"),
            "{family}: nor receive for one"
        );
    }
}

/// The guests of [`HOSTS`] and two more that no NIC is bound to, on one bridge.
fn bridged_topology() -> Topology {
    let mut hosts = HOSTS.to_vec();
    hosts.push(("free1", &["10.0.1.20"], None));
    hosts.push(("free2", &["10.0.1.21"], None));
    Topology::with_bridge(&hosts, &["n0", "n1", "n3", "appliance", "free1", "free2"])
}

/// On a bridge a guest also must not send under another's MAC, answer ARP for another's IPv4
/// address or advertise another's IPv6 address; ports no NIC is bound to are not filtered.
fn layer_two_spoofing_is_dropped(topology: &Topology) {
    topology.enforce(&load("spoofing.json"), &BINDS);
    let bridge_mac = topology.bridge.as_ref().expect("a bridge").mac();
    let frames = |host: &str| FrameSender::open(&topology.host(host).ns, "eth0").expect("sender");
    let capture =
        |host: &str| Capture::open_frames(&topology.host(host).ns, "eth0").expect("capture");
    let v4 = |text: &str| text.parse::<Ipv4Addr>().expect("IPv4");
    let v6 = |text: &str| text.parse::<Ipv6Addr>().expect("IPv6");
    let (n0, n1, inet) = (v4("10.0.1.4"), v4("10.0.1.5"), v4("203.0.113.10"));

    // n1's own frame to the internet passes; the same under n0's MAC does not.
    let inet_capture = Capture::open(&topology.host("inet").ns, "eth0").expect("capture");
    let datagram = ipv4_udp(n1, inet, 4100, 5000, b"probe");
    let arrived = |src_mac| {
        inet_capture.drain(Duration::ZERO).expect("drain");
        frames("n1")
            .send(&ethernet_frame(
                src_mac,
                bridge_mac,
                ETHERTYPE_IPV4,
                &datagram,
            ))
            .expect("send");
        let sent = FiveTuple::parse(&datagram);
        inet_capture
            .drain(Duration::from_millis(300))
            .expect("capture")
            .iter()
            .any(|p| FiveTuple::parse(p) == sent)
    };
    assert!(arrived(N1_MAC), "n1's own frame");
    assert!(!arrived(N0_MAC), "n1's frame under n0's MAC");

    // ARP: n0 may say where 10.0.1.4 is; n3 may not.
    let n1_frames = capture("n1");
    let arp_from = |host: &str, mac, claimed| {
        n1_frames.drain(Duration::ZERO).expect("drain");
        frames(host)
            .send(&arp_reply(mac, claimed, N1_MAC, n1))
            .expect("send");
        n1_frames
            .drain(Duration::from_millis(300))
            .expect("capture")
            .iter()
            .filter_map(|f| parse_arp(f))
            .any(|(_, sender_mac, sender_ip, _)| sender_mac == mac && sender_ip == claimed)
    };
    assert!(
        arp_from("n0", N0_MAC, n0),
        "n0's ARP reply for its own address"
    );
    assert!(
        !arp_from("n3", N3_MAC, n0),
        "n3's ARP reply for n0's address"
    );

    // IPv6 neighbour discovery: the same for advertisements.
    let (n0_v6, n1_v6, n3_v6) = (
        v6("fd00:1:0:1::4"),
        v6("fd00:1:0:1::5"),
        v6("fd00:1:0:1::7"),
    );
    let advert_from = |host: &str, mac, src, target| {
        n1_frames.drain(Duration::ZERO).expect("drain");
        frames(host)
            .send(&ipv6_neighbor_advertisement(
                mac, src, N1_MAC, n1_v6, target,
            ))
            .expect("send");
        n1_frames
            .drain(Duration::from_millis(300))
            .expect("capture")
            .iter()
            .any(|f| parse_neighbor_advertisement(f) == Some(target))
    };
    assert!(
        advert_from("n0", N0_MAC, n0_v6, n0_v6),
        "n0 advertises its own address"
    );
    assert!(
        !advert_from("n3", N3_MAC, n3_v6, n0_v6),
        "n3 advertises n0's address"
    );

    // Ports of no bound NIC are untouched, spoofed sources included.
    let probes = Probes::new(topology, &["free1", "free2"]);
    assert!(topology.tcp("free1", "free2", 22), "unbound guests talk");
    assert!(
        probes.delivered(
            "free1",
            &udp(ip("10.0.1.200"), ip("10.0.1.21"), 1, 2),
            "free2"
        ),
        "nor is an unbound guest's spoofing OpenNSG's to stop"
    );
}

#[test]
fn bridged_guests_cannot_spoof_on_new_or_tracked_flows() {
    spoofing_is_dropped_on_new_and_tracked_flows(&bridged_topology());
}

#[test]
fn bridged_forwarding_nics_carry_other_addresses() {
    forwarding_nics_carry_other_addresses(&bridged_topology());
}

#[test]
fn bridged_guests_cannot_spoof_macs_arp_or_neighbour_discovery() {
    layer_two_spoofing_is_dropped(&bridged_topology());
}

#[test]
fn routed_guests_cannot_spoof_on_new_or_tracked_flows() {
    spoofing_is_dropped_on_new_and_tracked_flows(&Topology::new(&HOSTS));
}

#[test]
fn routed_forwarding_nics_carry_other_addresses() {
    forwarding_nics_carry_other_addresses(&Topology::new(&HOSTS));
}
