//! write_pcap / write_pcapng → read_capture gives the same packets back.

mod common;

use common::*;
use nsg_capture::{read_capture, write_pcap, write_pcapng, Capture, Format, Link};
use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};

/// Writes the packets every way there is, reads them back and compares.
fn assert_round_trip(packets: &[PacketMeta]) {
    let written = [
        (write_pcap(packets, Link::Ethernet), Format::Pcap),
        (write_pcap(packets, Link::RawIp), Format::Pcap),
        (write_pcap(packets, Link::LinuxSll), Format::Pcap),
        (write_pcap(packets, Link::LinuxSll2), Format::Pcap),
        (write_pcapng(packets), Format::PcapNg),
    ];
    for (bytes, format) in written {
        let capture = read_capture(&bytes).unwrap();
        assert_eq!(capture.format, format);
        assert_eq!(capture.skipped, vec![], "{format:?}");
        let numbers: Vec<u64> = capture.packets.iter().map(|p| p.number).collect();
        assert_eq!(numbers, (1..=packets.len() as u64).collect::<Vec<_>>());
        let metas: Vec<PacketMeta> = capture.packets.iter().map(|p| p.meta).collect();
        assert_eq!(metas, packets, "{format:?}");
    }
}

fn times(mut packets: Vec<PacketMeta>) -> Vec<PacketMeta> {
    for (i, p) in packets.iter_mut().enumerate() {
        p.time = Time(T0 + i as u64 * 1_234_567);
    }
    packets
}

#[test]
fn tcp_with_every_flag_combination() {
    let mut packets = Vec::new();
    for bits in 0..16u8 {
        let flags = TcpFlags {
            syn: bits & 1 != 0,
            ack: bits & 2 != 0,
            fin: bits & 4 != 0,
            rst: bits & 8 != 0,
        };
        packets.push(tcp(
            "10.0.0.1",
            "10.0.0.2",
            (40_000 + bits as u16, 443),
            flags,
            60,
        ));
        packets.push(tcp(
            "fd00::1",
            "fd00::2",
            (50_000, 22 + bits as u16),
            flags,
            1_500,
        ));
    }
    assert_round_trip(&times(packets));
}

#[test]
fn udp_and_lengths() {
    assert_round_trip(&times(vec![
        udp("192.168.1.10", "8.8.8.8", (5353, 53), 28),
        udp("192.168.1.10", "8.8.8.8", (5353, 53), 1_400),
        udp("192.168.1.10", "8.8.8.8", (1, 65_535), 65_535),
        udp("2001:db8::1", "2001:db8::2", (123, 123), 48),
        udp("2001:db8::1", "2001:db8::2", (123, 123), 9_000),
    ]));
}

#[test]
fn lengths_below_the_headers_become_the_minimum() {
    let packets = [
        udp("10.0.0.1", "10.0.0.2", (1, 2), 0),
        tcp("fd00::1", "fd00::2", (1, 2), TcpFlags::default(), 10),
    ];
    let capture = read_capture(&write_pcap(&packets, Link::Ethernet)).unwrap();
    assert_eq!(capture.packets[0].meta.length, 28);
    assert_eq!(capture.packets[1].meta.length, 60);
}

#[test]
fn icmp_echo_and_other_messages() {
    assert_round_trip(&times(vec![
        icmp(
            1,
            "10.0.0.1",
            "10.0.0.2",
            IcmpKind::EchoRequest { id: 7 },
            84,
        ),
        icmp(1, "10.0.0.2", "10.0.0.1", IcmpKind::EchoReply { id: 7 }, 84),
        icmp(
            1,
            "10.0.0.9",
            "10.0.0.1",
            IcmpKind::Other {
                icmp_type: 3,
                code: 4,
            },
            56,
        ),
        icmp(
            1,
            "10.0.0.9",
            "10.0.0.1",
            IcmpKind::Other {
                icmp_type: 11,
                code: 0,
            },
            36,
        ),
        icmp(
            58,
            "fd00::1",
            "fd00::2",
            IcmpKind::EchoRequest { id: 0xbeef },
            104,
        ),
        icmp(
            58,
            "fd00::2",
            "fd00::1",
            IcmpKind::EchoReply { id: 0xbeef },
            104,
        ),
        icmp(
            58,
            "fe80::1",
            "ff02::1",
            IcmpKind::Other {
                icmp_type: 134,
                code: 0,
            },
            64,
        ),
    ]));
}

#[test]
fn icmp_timestamp_messages_keep_type_and_code() {
    // etherparse wants exactly 20 bytes for a timestamp message; these have 8 + payload.
    assert_round_trip(&times(vec![
        icmp(
            1,
            "10.0.0.1",
            "10.0.0.2",
            IcmpKind::Other {
                icmp_type: 13,
                code: 0,
            },
            28,
        ),
        icmp(
            1,
            "10.0.0.1",
            "10.0.0.2",
            IcmpKind::Other {
                icmp_type: 14,
                code: 0,
            },
            100,
        ),
    ]));
}

#[test]
fn esp_gre_and_other_protocols_over_ipv4_and_ipv6() {
    assert_round_trip(&times(vec![
        base(50, "10.1.0.1", "10.2.0.1", 120),
        base(47, "10.1.0.1", "10.2.0.1", 24),
        base(50, "2001:db8::a", "2001:db8::b", 140),
        base(47, "2001:db8::a", "2001:db8::b", 44),
        base(132, "10.1.0.1", "10.2.0.1", 20),
        base(89, "10.1.0.1", "224.0.0.5", 64),
    ]));
}

#[test]
fn mixed_families_are_written_as_mapped_ipv6() {
    let packet = udp("10.0.0.1", "fd00::2", (1, 2), 100);
    let capture = read_capture(&write_pcap(&[packet], Link::RawIp)).unwrap();
    assert_eq!(capture.packets[0].meta.src, ip("::ffff:10.0.0.1"));
    assert_eq!(capture.packets[0].meta.dst, ip("fd00::2"));
}

#[test]
fn times_keep_their_microseconds() {
    let mut packets = Vec::new();
    for micros in [
        0,
        1,
        999_999,
        1_000_000,
        T0 + 123_456,
        4_294_967_295_999_999,
    ] {
        let mut p = udp("10.0.0.1", "10.0.0.2", (1, 2), 28);
        p.time = Time(micros);
        packets.push(p);
    }
    assert_round_trip(&packets);
}

#[test]
fn empty_captures() {
    for bytes in [write_pcap(&[], Link::Ethernet), write_pcapng(&[])] {
        let capture: Capture = read_capture(&bytes).unwrap();
        assert!(capture.packets.is_empty() && capture.skipped.is_empty());
    }
}
