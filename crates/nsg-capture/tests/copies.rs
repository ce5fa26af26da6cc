//! Captures of several interfaces (`tcpdump -i any` on a router): where each packet was seen,
//! and the copies of one packet recognised as such.

mod common;

use common::*;
use nsg_capture::{
    read_capture, write_pcap, write_pcap_recorded, CapturePoint, CopyFilter, Link, LinkDirection,
    RecordedPacket,
};
use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};
use pcap_file::Endianness;

const ROUTER_IN: u32 = 2;
const ROUTER_OUT: u32 = 3;

fn flags(syn: bool, ack: bool, fin: bool) -> TcpFlags {
    TcpFlags {
        syn,
        ack,
        fin,
        rst: false,
    }
}

/// What crosses the router, in order: a TCP connection with identical data segments, a UDP
/// exchange, the same IPv6 datagram twice, a ping.
fn forwarded() -> Vec<PacketMeta> {
    let (client, server) = ("10.0.1.4", "10.0.2.4");
    let mut packets = vec![
        tcp(client, server, (40000, 80), flags(true, false, false), 60),
        tcp(server, client, (80, 40000), flags(true, true, false), 60),
        tcp(client, server, (40000, 80), flags(false, true, false), 52),
        tcp(client, server, (40000, 80), flags(false, true, false), 1052),
        tcp(client, server, (40000, 80), flags(false, true, false), 1052),
        tcp(server, client, (80, 40000), flags(false, true, false), 52),
        tcp(client, server, (40000, 80), flags(false, true, true), 52),
        tcp(server, client, (80, 40000), flags(false, true, true), 52),
        udp("fd00:1::4", "fd00:2::4", (5353, 53), 80),
        udp("fd00:2::4", "fd00:1::4", (53, 5353), 120),
        udp("fd00:1::4", "fd00:2::4", (5353, 53), 80),
        icmp(1, client, server, IcmpKind::EchoRequest { id: 7 }, 84),
        icmp(1, server, client, IcmpKind::EchoReply { id: 7 }, 84),
    ];
    for (i, packet) in packets.iter_mut().enumerate() {
        packet.time = Time(T0 + i as u64 * 10_000);
    }
    packets
}

fn seen(
    meta: PacketMeta,
    if_index: u32,
    direction: LinkDirection,
    hop_limit: u8,
) -> RecordedPacket {
    RecordedPacket {
        meta,
        point: CapturePoint {
            interface: 0,
            if_index: Some(if_index),
            direction: Some(direction),
        },
        hop_limit,
    }
}

/// Each forwarded packet as `-i any` records it: in on one interface, then out on the other with
/// the hop limit one less, 30 µs later. Plus a packet the router sends itself and one it receives.
fn as_recorded_on_the_router(forwarded: &[PacketMeta]) -> (Vec<RecordedPacket>, Vec<PacketMeta>) {
    let mut recorded = Vec::new();
    let mut once = Vec::new();
    for meta in forwarded {
        recorded.push(seen(*meta, ROUTER_IN, LinkDirection::Incoming, 64));
        let out = PacketMeta {
            time: Time(meta.time.micros() + 30),
            ..*meta
        };
        recorded.push(seen(out, ROUTER_OUT, LinkDirection::Outgoing, 63));
        once.push(*meta);
    }
    let last = forwarded.last().map_or(T0, |p| p.time.micros());
    let own = [
        (
            udp("10.0.2.1", "10.0.2.4", (123, 123), 76),
            LinkDirection::Outgoing,
        ),
        (
            udp("10.0.2.4", "10.0.2.1", (123, 123), 76),
            LinkDirection::Incoming,
        ),
    ];
    for (i, (meta, direction)) in own.into_iter().enumerate() {
        let meta = PacketMeta {
            time: Time(last + 1000 * (i as u64 + 1)),
            ..meta
        };
        recorded.push(seen(meta, ROUTER_OUT, direction, 64));
        once.push(meta);
    }
    (recorded, once)
}

fn without_copies(bytes: &[u8]) -> Vec<PacketMeta> {
    let capture = read_capture(bytes).unwrap();
    let mut filter = CopyFilter::new();
    capture
        .packets
        .iter()
        .filter(|p| !filter.is_copy(p))
        .map(|p| p.meta)
        .collect()
}

#[test]
fn tcpdump_any_duplicates_count_once() {
    let (recorded, once) = as_recorded_on_the_router(&forwarded());
    for link in [Link::LinuxSll2, Link::LinuxSll] {
        let bytes = write_pcap_recorded(&recorded, link);
        assert_eq!(
            read_capture(&bytes).unwrap().packets.len(),
            recorded.len(),
            "{link:?}"
        );
        assert_eq!(without_copies(&bytes), once, "{link:?}");
    }
    // A capture of one interface has no copies, however alike its packets are.
    let single = write_pcap(&forwarded(), Link::Ethernet);
    assert_eq!(without_copies(&single), forwarded());
}

#[test]
fn cooked_headers_say_where_a_packet_was_seen() {
    let meta = udp("10.0.0.1", "10.0.0.2", (1, 2), 28);
    let recorded = [
        seen(meta, 7, LinkDirection::Incoming, 64),
        seen(meta, 9, LinkDirection::Outgoing, 63),
    ];
    let points = |link| {
        read_capture(&write_pcap_recorded(&recorded, link))
            .unwrap()
            .packets
            .iter()
            .map(|p| p.point)
            .collect::<Vec<_>>()
    };
    let point = |if_index, direction| CapturePoint {
        interface: 0,
        if_index,
        direction: Some(direction),
    };
    assert_eq!(
        points(Link::LinuxSll2),
        [
            point(Some(7), LinkDirection::Incoming),
            point(Some(9), LinkDirection::Outgoing)
        ]
    );
    // Version 1 has no interface index.
    assert_eq!(
        points(Link::LinuxSll),
        [
            point(None, LinkDirection::Incoming),
            point(None, LinkDirection::Outgoing)
        ]
    );
    // Other links say nothing.
    assert_eq!(points(Link::Ethernet), [CapturePoint::default(); 2]);
}

#[test]
fn copies_share_a_fingerprint_and_other_packets_do_not() {
    let meta = tcp(
        "10.0.0.1",
        "10.0.0.2",
        (1, 2),
        flags(false, true, false),
        100,
    );
    let fingerprints = |packets: &[RecordedPacket], link| {
        read_capture(&write_pcap_recorded(packets, link))
            .unwrap()
            .packets
            .iter()
            .map(|p| p.fingerprint)
            .collect::<Vec<_>>()
    };
    let copies = [
        seen(meta, ROUTER_IN, LinkDirection::Incoming, 64),
        seen(meta, ROUTER_OUT, LinkDirection::Outgoing, 63),
    ];
    let [a, b] = fingerprints(&copies, Link::LinuxSll2)[..] else {
        panic!("two packets")
    };
    assert_eq!(a, b, "TTL and header checksum do not count");
    // The same packet in an Ethernet frame (padding aside) has the same fingerprint.
    assert_eq!(fingerprints(&copies[..1], Link::Ethernet), [a]);
    let others = [
        PacketMeta {
            length: 101,
            ..meta
        },
        PacketMeta {
            dst_port: Some(3),
            ..meta
        },
        PacketMeta {
            tcp_flags: Some(flags(false, true, true)),
            ..meta
        },
    ];
    for other in others {
        let fingerprint = fingerprints(&[RecordedPacket::new(other)], Link::LinuxSll2)[0];
        assert_ne!(fingerprint, a, "{other:?}");
    }
}

/// A pcapng file of several interfaces (dumpcap -i eth0 -i eth1): the interface of each packet
/// is its capture point, with the direction `epb_flags` gives, and copies are recognised too.
#[test]
fn pcapng_interfaces_and_directions_are_capture_points() {
    let metas = forwarded();
    let ethernet_frame = |meta: PacketMeta, hop_limit| {
        let packet = RecordedPacket {
            hop_limit,
            ..RecordedPacket::new(meta)
        };
        // The pcap file header (24 bytes) and record header (16) before the frame.
        write_pcap_recorded(&[packet], Link::Ethernet)[40..].to_vec()
    };
    let mut packets = Vec::new();
    for meta in &metas {
        let mut incoming = frame(meta.time.micros(), ethernet_frame(*meta, 64));
        incoming.epb_flags = Some(1);
        packets.push((0, incoming));
        let mut outgoing = frame(meta.time.micros() + 30, ethernet_frame(*meta, 63));
        outgoing.epb_flags = Some(2);
        packets.push((1, outgoing));
    }
    let bytes = pcapng(Endianness::Little, &[(1, None), (1, None)], &packets);
    let capture = read_capture(&bytes).unwrap();
    assert_eq!(
        capture.packets[1].point,
        CapturePoint {
            interface: 1,
            if_index: None,
            direction: Some(LinkDirection::Outgoing)
        }
    );
    assert_eq!(
        capture.packets[0].point.direction,
        Some(LinkDirection::Incoming)
    );
    let once: Vec<u64> = capture
        .packets
        .iter()
        .scan(CopyFilter::new(), |filter, p| {
            Some((!filter.is_copy(p)).then_some(p.number))
        })
        .flatten()
        .collect();
    assert_eq!(
        once,
        (0..metas.len() as u64)
            .map(|i| 2 * i + 1)
            .collect::<Vec<_>>()
    );
}
