//! Real traffic through bridged guests, without any firewall. Needs root: without it every
//! test fails, naming the reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use etherparse::{NetSlice, SlicedPacket};
use nsg_netlab::packet::{
    arp_reply, arp_request, ethernet_frame, ipv4_icmp_port_unreachable, ipv4_tcp_syn, ipv4_udp,
    ipv6_icmp_port_unreachable, ipv6_neighbor_advertisement, ipv6_tcp_syn, ipv6_udp, parse_arp,
    parse_neighbor_advertisement, ARP_REPLY, ARP_REQUEST, BROADCAST_MAC, ETHERTYPE_IPV4,
};
use nsg_netlab::{
    ping, Bridge, Capture, FiveTuple, FrameSender, GuestSide, IcmpError, Lab, LabError, Netns,
    RawSender, RouterSide,
};

const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 1);
const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 1, 0, 0, 0, 0, 1);
const A_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 4);
const B_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 1, 0, 0, 0, 0, 4);
const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 1, 0, 0, 0, 0, 5);
/// A routed guest (Calico style) on the same router.
const C_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 6);
const C_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 6);

/// Azure NIC MACs (00:0d:3a is Microsoft's prefix), as the guests play those NICs.
const A_MAC: [u8; 6] = [0x00, 0x0d, 0x3a, 0x14, 0x01, 0x04];
const B_MAC: [u8; 6] = [0x00, 0x0d, 0x3a, 0x14, 0x01, 0x05];
/// A MAC no interface has, for spoofing.
const SPOOFED_MAC: [u8; 6] = [0x00, 0x0d, 0x3a, 0x99, 0x99, 0x99];
/// An ethertype for local experiments (IEEE 802 "local experimental ethertype 1").
const EXPERIMENTAL_ETHERTYPE: u16 = 0x88b5;

/// Long enough for anything that works to succeed on a loaded CI machine.
const PASS: Duration = Duration::from_secs(2);
/// How long to wait before calling something absent.
const ABSENT: Duration = Duration::from_millis(300);

/// Two guests on one bridge and a routed guest, all behind one router.
struct Topology {
    _lab: Lab,
    router: Netns,
    bridge: Bridge,
    a: Netns,
    b: Netns,
    c: Netns,
}

fn new_lab() -> Lab {
    Lab::new().unwrap_or_else(|err| panic!("cannot build a network lab: {err}"))
}

fn topology() -> Topology {
    let lab = new_lab();
    let router = lab.router("router").expect("router");
    let bridge = lab
        .bridge(&router, "br0", &["10.20.1.1/24", "fd00:20:1::1/64"])
        .expect("bridge");
    let a = lab.namespace("a").expect("guest a");
    let b = lab.namespace("b").expect("guest b");
    let c = lab.namespace("c").expect("guest c");
    lab.attach_to_bridge(
        &bridge,
        &a,
        &RouterSide::new("vnet-a"),
        &GuestSide::new("eth0", [A_V4.into(), A_V6.into()]).with_mac(A_MAC),
    )
    .expect("attach a to the bridge");
    lab.attach_to_bridge(
        &bridge,
        &b,
        &RouterSide::new("vnet-b"),
        &GuestSide::new("eth0", [B_V4.into(), B_V6.into()]).with_mac(B_MAC),
    )
    .expect("attach b to the bridge");
    lab.attach(
        &router,
        &c,
        &RouterSide::new("vm-c"),
        &GuestSide::new("eth0", [C_V4.into(), C_V6.into()]),
    )
    .expect("attach c, routed");
    Topology {
        _lab: lab,
        router,
        bridge,
        a,
        b,
        c,
    }
}

/// Waits for the first captured packet or frame `wanted` accepts.
fn capture_first(
    capture: &Capture,
    timeout: Duration,
    wanted: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match capture.next_packet(left).expect("capture") {
            Some(packet) if wanted(&packet) => return Some(packet),
            Some(_) => continue,
            None => return None,
        }
    }
}

fn hop_limit(packet: &[u8]) -> u8 {
    match SlicedPacket::from_ip(packet).expect("an IP packet").net {
        Some(NetSlice::Ipv4(ip)) => ip.header().ttl(),
        Some(NetSlice::Ipv6(ip)) => ip.header().hop_limit(),
        _ => panic!("not IP: {packet:?}"),
    }
}

fn is_syn_probe(packet: &[u8], src: IpAddr, dst: IpAddr, dst_port: u16) -> bool {
    FiveTuple::parse(packet)
        .is_some_and(|t| (t.src, t.dst, t.protocol, t.dst_port) == (src, dst, 6, Some(dst_port)))
}

/// The MAC `ns` has for `address` on eth0, as `ip neigh` prints it ("" if none).
fn neighbour_entry(ns: &Netns, address: IpAddr) -> String {
    let output = ns
        .exec_checked("ip", ["neigh", "show", &address.to_string(), "dev", "eth0"])
        .expect("ip neigh show");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// Sends `frame` from `sender` every 200 ms until `done` or `PASS` has gone by.
fn send_until(sender: &FrameSender, frame: &[u8], done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + PASS;
    while Instant::now() < deadline {
        sender.send(frame).expect("send frame");
        for _ in 0..4 {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
    done()
}

#[test]
fn bridged_guests_reach_each_other_on_link_and_a_routed_guest_through_the_router() {
    let t = topology();
    assert_eq!(t.bridge.gateway_v4(), Some(GATEWAY_V4));
    assert_eq!(t.bridge.gateway_v6(), Some(GATEWAY_V6));
    assert_eq!(t.bridge.router(), &t.router);

    for (from, to, what) in [
        (&t.a, IpAddr::from(B_V4), "a -> b"),
        (&t.b, A_V4.into(), "b -> a"),
        (&t.a, B_V6.into(), "a -> b over IPv6"),
        (&t.a, C_V4.into(), "bridged a -> routed c"),
        (&t.a, C_V6.into(), "bridged a -> routed c over IPv6"),
        (&t.c, B_V4.into(), "routed c -> bridged b"),
        (&t.c, B_V6.into(), "routed c -> bridged b over IPv6"),
        (&t.b, GATEWAY_V4.into(), "b -> its gateway"),
    ] {
        assert!(ping(from, to, 1, PASS).unwrap(), "{what}");
    }
    // The negative control: an address nobody has on the subnet is not reachable.
    assert!(!ping(&t.a, Ipv4Addr::new(10, 20, 1, 99).into(), 1, ABSENT).unwrap());

    // On-link between bridged guests (hop limit untouched), one router hop to the routed guest.
    let (at_b, at_c) = (
        Capture::open(&t.b, "eth0").unwrap(),
        Capture::open(&t.c, "eth0").unwrap(),
    );
    let sender = RawSender::open(&t.a).unwrap();
    for (packet, capture, src, dst, hops) in [
        (
            ipv4_tcp_syn(A_V4, B_V4, 40_000, 8443),
            &at_b,
            IpAddr::from(A_V4),
            IpAddr::from(B_V4),
            64,
        ),
        (
            ipv6_tcp_syn(A_V6, B_V6, 40_000, 8443),
            &at_b,
            A_V6.into(),
            B_V6.into(),
            64,
        ),
        (
            ipv4_tcp_syn(A_V4, C_V4, 40_000, 8443),
            &at_c,
            A_V4.into(),
            C_V4.into(),
            63,
        ),
        (
            ipv6_tcp_syn(A_V6, C_V6, 40_000, 8443),
            &at_c,
            A_V6.into(),
            C_V6.into(),
            63,
        ),
    ] {
        sender.send(&packet).unwrap();
        let seen = capture_first(capture, PASS, |p| is_syn_probe(p, src, dst, 8443))
            .unwrap_or_else(|| panic!("SYN {src} -> {dst} not captured"));
        assert_eq!(hop_limit(&seen), hops, "{src} -> {dst}");
    }

    // The port is a plain layer-2 attachment: no addresses, a member of the bridge.
    let port = t
        .router
        .exec_checked("ip", ["-o", "address", "show", "dev", "vnet-a"])
        .unwrap();
    assert!(port.stdout.is_empty(), "{port:?}");
    let link = t
        .router
        .exec_checked("ip", ["-o", "link", "show", "dev", "vnet-a"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("master br0"),
        "{link:?}"
    );
}

#[test]
fn a_frame_sent_by_one_bridged_guest_is_captured_whole_at_the_other() {
    let t = topology();
    let frames_at_b = Capture::open_frames(&t.b, "eth0").unwrap();
    let packets_at_b = Capture::open(&t.b, "eth0").unwrap();
    let frames_at_a = Capture::open_frames(&t.a, "eth0").unwrap();
    let sender = FrameSender::open(&t.a, "eth0").unwrap();

    // A non-IP frame with a source MAC that is not a's: the bridge forwards it as it is.
    let probe = ethernet_frame(
        SPOOFED_MAC,
        B_MAC,
        EXPERIMENTAL_ETHERTYPE,
        b"nsg-netlab frame probe",
    );
    sender.send(&probe).unwrap();
    assert!(
        capture_first(&frames_at_b, PASS, |f| f == probe.as_slice()).is_some(),
        "the frame did not reach b unchanged"
    );

    // An IP packet in a hand-built frame arrives too, and an IP capture sees just the packet.
    let datagram = ipv4_udp(A_V4, B_V4, 5000, 6000, b"in a frame");
    sender
        .send(&ethernet_frame(A_MAC, B_MAC, ETHERTYPE_IPV4, &datagram))
        .unwrap();
    assert!(
        capture_first(&packets_at_b, PASS, |p| p == datagram.as_slice()).is_some(),
        "the IP packet in the frame did not reach b"
    );
    let leftovers = packets_at_b.drain(ABSENT).unwrap();
    assert!(
        !leftovers
            .iter()
            .any(|p| p.ends_with(b"nsg-netlab frame probe")),
        "an IP capture reported a non-IP frame"
    );
    // Frames are captured where they arrive, not where they leave.
    assert!(
        !frames_at_a
            .drain(Duration::ZERO)
            .unwrap()
            .iter()
            .any(|f| f == &probe),
        "a's capture reported a frame a sent"
    );

    let too_short = sender.send(&[0; 10]).unwrap_err();
    assert_eq!(too_short.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn arp_from_one_bridged_guest_is_captured_at_the_other_and_parses_back() {
    let t = topology();
    let frames_at_a = Capture::open_frames(&t.a, "eth0").unwrap();
    let frames_at_b = Capture::open_frames(&t.b, "eth0").unwrap();
    let sender = FrameSender::open(&t.a, "eth0").unwrap();

    // a claims to be the gateway: the classic ARP spoof.
    let spoof = arp_reply(A_MAC, GATEWAY_V4, B_MAC, B_V4);
    sender.send(&spoof).unwrap();
    let seen = capture_first(&frames_at_b, PASS, |f| {
        parse_arp(f).is_some_and(|(op, ..)| op == ARP_REPLY)
    })
    .expect("the ARP reply reaches b");
    assert_eq!(seen, spoof);
    assert_eq!(parse_arp(&seen), Some((ARP_REPLY, A_MAC, GATEWAY_V4, B_V4)));

    // A broadcast request is flooded to b, whose kernel answers it: the frame is valid ARP.
    let request = arp_request(A_MAC, A_V4, BROADCAST_MAC, B_V4);
    sender.send(&request).unwrap();
    assert!(capture_first(&frames_at_b, PASS, |f| f == request.as_slice()).is_some());
    let answer = capture_first(&frames_at_a, PASS, |f| {
        parse_arp(f) == Some((ARP_REPLY, B_MAC, B_V4, A_V4))
    });
    assert!(answer.is_some(), "b did not answer the built ARP request");
    assert_eq!(parse_arp(&request).map(|(op, ..)| op), Some(ARP_REQUEST));

    // Without a firewall, a spoofed reply rewrites b's entry for a (once ARP's 1 s lock time
    // since the entry was last updated has passed, hence the repeats).
    assert!(ping(&t.b, A_V4.into(), 1, PASS).unwrap());
    let poison = arp_reply(SPOOFED_MAC, A_V4, B_MAC, B_V4);
    let spoofed = mac_text(SPOOFED_MAC);
    assert!(
        send_until(&sender, &poison, || neighbour_entry(&t.b, A_V4.into())
            .contains(&spoofed)),
        "b's ARP entry for a: {}",
        neighbour_entry(&t.b, A_V4.into())
    );
}

#[test]
fn a_neighbour_advertisement_from_one_bridged_guest_is_captured_and_believed_at_the_other() {
    let t = topology();
    // b learns a's real MAC first, so the advertisement has an entry to override.
    assert!(ping(&t.b, A_V6.into(), 1, PASS).unwrap());
    assert!(neighbour_entry(&t.b, A_V6.into()).contains(&mac_text(A_MAC)));

    let frames_at_b = Capture::open_frames(&t.b, "eth0").unwrap();
    let sender = FrameSender::open(&t.a, "eth0").unwrap();
    let advertisement = ipv6_neighbor_advertisement(SPOOFED_MAC, A_V6, B_MAC, B_V6, A_V6);
    sender.send(&advertisement).unwrap();
    let seen = capture_first(&frames_at_b, PASS, |f| {
        parse_neighbor_advertisement(f).is_some()
    })
    .expect("the advertisement reaches b");
    assert_eq!(seen, advertisement);
    assert_eq!(parse_neighbor_advertisement(&seen), Some(A_V6));

    // b's kernel accepted it (checksum, hop limit and flags are right): its entry now points
    // at the spoofed MAC.
    let spoofed = mac_text(SPOOFED_MAC);
    assert!(
        send_until(&sender, &advertisement, || neighbour_entry(
            &t.b,
            A_V6.into()
        )
        .contains(&spoofed)),
        "b's neighbour entry for a: {}",
        neighbour_entry(&t.b, A_V6.into())
    );
}

#[test]
fn built_icmp_port_unreachable_crosses_the_router_and_is_recognised() {
    let t = topology();
    let at_c = Capture::open(&t.c, "eth0").unwrap();
    let sender = RawSender::open(&t.a).unwrap();

    // As if c had sent a a datagram to a closed port, and a answered with the error.
    let datagram_v4 = ipv4_udp(C_V4, A_V4, 5353, 9999, b"to a closed port");
    let datagram_v6 = ipv6_udp(C_V6, A_V6, 5353, 9999, b"to a closed port");
    let cases = [
        (
            ipv4_icmp_port_unreachable(A_V4, C_V4, &datagram_v4),
            FiveTuple::parse(&datagram_v4),
            (3, 3),
        ),
        (
            ipv6_icmp_port_unreachable(A_V6, C_V6, &datagram_v6),
            FiveTuple::parse(&datagram_v6),
            (1, 4),
        ),
    ];
    for (error, quoted, (icmp_type, code)) in cases {
        let sent = IcmpError::parse(&error).expect("an ICMP error");
        sender.send(&error).unwrap();
        let seen = capture_first(&at_c, PASS, |p| {
            IcmpError::parse(p).is_some_and(|e| (e.src, e.dst) == (sent.src, sent.dst))
        })
        .unwrap_or_else(|| panic!("ICMP error {} -> {} not captured", sent.src, sent.dst));
        let received = IcmpError::parse(&seen).unwrap();
        assert_eq!((received.icmp_type, received.code), (icmp_type, code));
        assert!(quoted.is_some());
        assert_eq!(received.quoted, quoted);
        assert_eq!(hop_limit(&seen), 63, "crossed the router");
        let tuple = FiveTuple::parse(&seen).expect("FiveTuple reads the ICMP error");
        assert_eq!(tuple.protocol, if sent.src.is_ipv4() { 1 } else { 58 });
        assert_eq!(tuple.echo_request_id, None);
    }
}

#[test]
fn a_guest_address_outside_the_bridge_subnets_is_refused_before_anything_is_made() {
    let lab = new_lab();
    let router = lab.router("router").unwrap();
    let bridge = lab.bridge(&router, "br0", &["10.20.1.1/24"]).unwrap();
    assert_eq!(bridge.gateway_v6(), None);
    let guest = lab.namespace("g").unwrap();
    let refused = lab.attach_to_bridge(
        &bridge,
        &guest,
        &RouterSide::new("vnet-g"),
        &GuestSide::new("eth0", [Ipv4Addr::new(10, 20, 2, 4).into()]),
    );
    assert!(
        matches!(refused, Err(LabError::InvalidName { .. })),
        "{refused:?}"
    );
    let links = router
        .exec("ip", ["link", "show", "dev", "vnet-g"])
        .unwrap();
    assert!(!links.status.success(), "a port was made: {links:?}");

    let no_prefix = lab.bridge(&router, "br1", &["10.20.3.1"]).unwrap_err();
    assert!(
        no_prefix.to_string().contains("prefix length"),
        "{no_prefix}"
    );
}

#[test]
fn dropping_the_lab_deletes_the_bridge_with_its_namespace() {
    let t = topology();
    let names: Vec<String> = [&t.router, &t.a, &t.b, &t.c]
        .iter()
        .map(|ns| ns.name().to_owned())
        .collect();
    let bridge_mac = mac_text(t.bridge.mac());
    let shown = t
        .router
        .exec_checked("ip", ["-o", "link", "show", "dev", "br0"])
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains(&bridge_mac));
    drop(t);

    let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        names.iter().all(|name| !listed.contains(name.as_str())),
        "left behind: {listed}"
    );
    // A bridge is a virtual device: the kernel deletes it with its namespace rather than
    // handing it to the initial namespace, as it does with physical devices.
    let host_links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host_links.stdout).contains(&bridge_mac),
        "the bridge moved to the initial namespace"
    );
}
