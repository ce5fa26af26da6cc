//! Link types, file format variants, and frames that are not (usable) IP packets.

mod common;

use common::*;
use etherparse::{LinuxSllPacketType, PacketBuilder};
use nsg_capture::{read_capture, write_pcap, CaptureError, Format, Link, SkipReason};
use nsg_policy::packet::{IcmpKind, TcpFlags, Time};
use pcap_file::{Endianness, TsResolution};

const SYN: TcpFlags = TcpFlags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};

#[test]
fn vlan_tagged_ethernet() {
    let udp_packet = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], (1000, 53), 20);
    // One 802.1Q tag, VLAN 100.
    let mut single = ethernet(0x8100);
    single.extend_from_slice(&[0x00, 0x64, 0x08, 0x00]);
    single.extend_from_slice(&udp_packet);
    // QinQ: an 802.1ad S-tag (VLAN 10) around an 802.1Q C-tag (VLAN 200).
    let mut double = ethernet(0x88a8);
    double.extend_from_slice(&[0x00, 0x0a, 0x81, 0x00]);
    double.extend_from_slice(&[0x00, 0xc8, 0x86, 0xdd]);
    double.extend_from_slice(&ipv6_tcp_syn([0xfd; 16], [0xfe; 16], (4000, 443)));

    let capture = read_capture(&pcap(1, &[frame(T0, single), frame(T0 + 1, double)])).unwrap();
    assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
    assert_eq!(
        capture.packets[0].meta,
        udp_at(udp("10.0.0.1", "10.0.0.2", (1000, 53), 48), T0)
    );
    let v6 = capture.packets[1].meta;
    assert_eq!(
        (v6.protocol, v6.src_port, v6.dst_port),
        (6, Some(4000), Some(443))
    );
    assert_eq!(v6.tcp_flags, Some(SYN));
    assert_eq!(v6.length, 60);
}

fn udp_at(mut meta: nsg_policy::packet::PacketMeta, micros: u64) -> nsg_policy::packet::PacketMeta {
    meta.time = Time(micros);
    meta
}

#[test]
fn linux_cooked_capture_v1() {
    let mut built = Vec::new();
    PacketBuilder::linux_sll(LinuxSllPacketType::OUTGOING, 6, [2, 0, 0, 0, 0, 1, 0, 0])
        .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
        .tcp(33_000, 5432, 1, 100)
        .syn()
        .ack(9)
        .write(&mut built, &[0; 10])
        .unwrap();
    // The same packet from the loopback device (ARPHRD_LOOPBACK 772), as "-i any" records it:
    // etherparse rejects that device type, the protocol field is an ether type all the same.
    let mut loopback = built.clone();
    loopback[2..4].copy_from_slice(&772u16.to_be_bytes());
    // And an ARP frame seen on the same capture.
    let mut arp = built[..16].to_vec();
    arp[14..16].copy_from_slice(&0x0806u16.to_be_bytes());
    arp.extend_from_slice(&arp_frame()[14..]);

    let capture = read_capture(&pcap(
        113,
        &[frame(T0, built), frame(T0, loopback), frame(T0, arp)],
    ))
    .unwrap();
    assert_eq!(capture.packets.len(), 2);
    for packet in &capture.packets {
        let m = packet.meta;
        assert_eq!((m.src, m.dst), (ip("172.16.0.1"), ip("172.16.0.2")));
        assert_eq!((m.src_port, m.dst_port), (Some(33_000), Some(5432)));
        let flags = m.tcp_flags.unwrap();
        assert!(flags.syn && flags.ack && !flags.fin && !flags.rst);
        assert_eq!(m.length, 50);
    }
    assert_eq!(capture.skipped.len(), 1);
    assert_eq!(capture.skipped[0].number, 3);
    assert!(matches!(&capture.skipped[0].reason, SkipReason::NotIp(what) if what.contains("ARP")));
}

#[test]
fn linux_cooked_capture_v2() {
    let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6];
    sll2.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(sll2.len(), 20);
    sll2.extend_from_slice(&ipv6_tcp_syn([1; 16], [2; 16], (1, 2)));
    let capture =
        read_capture(&pcap(276, &[frame(T0, sll2), frame(T0, vec![0x08, 0x00])])).unwrap();
    assert_eq!(capture.packets.len(), 1);
    assert_eq!(capture.packets[0].meta.tcp_flags, Some(SYN));
    assert_eq!(capture.skipped[0].number, 2);
    assert!(matches!(
        capture.skipped[0].reason,
        SkipReason::Malformed(_)
    ));
}

#[test]
fn raw_ip_link_types() {
    let v4 = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], (7, 9), 0);
    let v6 = ipv6_tcp_syn([1; 16], [2; 16], (1, 2));
    for link_type in [12, 101, 228, 229] {
        let capture = read_capture(&pcap(
            link_type,
            &[frame(T0, v4.clone()), frame(T0, v6.clone())],
        ))
        .unwrap();
        assert_eq!(capture.packets.len(), 2, "link type {link_type}");
        assert_eq!(capture.packets[0].meta.protocol, 17);
        assert_eq!(capture.packets[1].meta.protocol, 6);
    }
}

#[test]
fn bsd_loopback() {
    let v4 = ipv4_udp([127, 0, 0, 1], [127, 0, 0, 1], (7, 9), 0);
    let v6 = ipv6_tcp_syn([0; 16], [1; 16], (1, 2));
    let mut null_v4 = 2u32.to_le_bytes().to_vec();
    null_v4.extend_from_slice(&v4);
    let mut null_v6 = 30u32.to_be_bytes().to_vec(); // macOS AF_INET6, big-endian host
    null_v6.extend_from_slice(&v6);
    let mut null_other = 7u32.to_le_bytes().to_vec();
    null_other.extend_from_slice(&v4);
    let capture = read_capture(&pcap(
        0,
        &[
            frame(T0, null_v4),
            frame(T0, null_v6),
            frame(T0, null_other),
        ],
    ))
    .unwrap();
    assert_eq!(capture.packets.len(), 2);
    assert_eq!(capture.skipped[0].number, 3);
    assert!(matches!(capture.skipped[0].reason, SkipReason::NotIp(_)));

    let mut loop_v6 = 24u32.to_be_bytes().to_vec();
    loop_v6.extend_from_slice(&v6);
    let capture = read_capture(&pcap(108, &[frame(T0, loop_v6)])).unwrap();
    assert_eq!(capture.packets.len(), 1);
}

#[test]
fn nanosecond_and_big_endian_pcap() {
    let packets = [udp("10.0.0.1", "10.0.0.2", (1, 2), 28)];
    let data = write_pcap(&packets, Link::RawIp)[40..].to_vec();
    for resolution in [TsResolution::NanoSecond, TsResolution::MicroSecond] {
        for endianness in [Endianness::Big, Endianness::Little] {
            let bytes = pcap_with(
                101,
                resolution,
                endianness,
                &[frame(T0 + 123_456, data.clone())],
            );
            let capture = read_capture(&bytes).unwrap();
            assert_eq!(capture.format, Format::Pcap);
            assert_eq!(
                capture.packets[0].meta.time,
                Time(T0 + 123_456),
                "{resolution:?} {endianness:?}"
            );
            assert_eq!(capture.packets[0].meta.src_port, Some(1));
        }
    }
    // Nanoseconds below a microsecond are dropped.
    let mut bytes = pcap_with(
        101,
        TsResolution::NanoSecond,
        Endianness::Little,
        &[frame(T0, data)],
    );
    bytes[24 + 4..24 + 8].copy_from_slice(&999u32.to_le_bytes());
    assert_eq!(read_capture(&bytes).unwrap().packets[0].meta.time, Time(T0));
}

#[test]
fn pcapng_resolutions_byte_orders_and_interfaces() {
    let eth = write_pcap(&[udp("10.0.0.1", "10.0.0.2", (1, 2), 28)], Link::Ethernet)[40..].to_vec();
    let raw = write_pcap(&[udp("10.0.0.3", "10.0.0.4", (3, 4), 28)], Link::RawIp)[40..].to_vec();
    for endianness in [Endianness::Big, Endianness::Little] {
        let bytes = pcapng(
            endianness,
            &[(1, None), (101, Some(9)), (105, None)],
            &[
                (0, frame(T0 + 1, eth.clone())),
                (1, frame(T0 + 2, raw.clone())),
                (2, frame(T0 + 3, eth.clone())),
                (0, frame(T0 + 4, eth.clone())),
            ],
        );
        let capture = read_capture(&bytes).unwrap();
        assert_eq!(capture.format, Format::PcapNg);
        let got: Vec<(u64, u64, Option<u16>)> = capture
            .packets
            .iter()
            .map(|p| (p.number, p.meta.time.micros(), p.meta.src_port))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, T0 + 1, Some(1)),
                (2, T0 + 2, Some(3)),
                (4, T0 + 4, Some(1))
            ]
        );
        assert_eq!(capture.skipped.len(), 1);
        assert_eq!(capture.skipped[0].number, 3);
        assert_eq!(
            capture.skipped[0].reason,
            SkipReason::UnsupportedLinkType { link_type: 105 }
        );
    }
}

#[test]
fn unsupported_link_types() {
    let bytes = pcap(105, &[frame(T0, vec![0; 40])]);
    assert_eq!(
        read_capture(&bytes),
        Err(CaptureError::UnsupportedLinkType { link_type: 105 })
    );
    let bytes = pcapng(
        Endianness::Little,
        &[(127, None)],
        &[(0, frame(T0, vec![0; 40]))],
    );
    assert_eq!(
        read_capture(&bytes),
        Err(CaptureError::UnsupportedLinkType { link_type: 127 })
    );
    // FCS bits in the upper part of a pcap link field do not hide Ethernet.
    let mut bytes = write_pcap(&[udp("10.0.0.1", "10.0.0.2", (1, 2), 28)], Link::Ethernet);
    bytes[20..24].copy_from_slice(&(0x1000_0001u32 | (4 << 29)).to_le_bytes());
    assert_eq!(read_capture(&bytes).unwrap().packets.len(), 1);
}

#[test]
fn non_ip_frames_are_skipped_with_their_numbers() {
    let udp_frame =
        write_pcap(&[udp("10.0.0.1", "10.0.0.2", (1, 2), 28)], Link::Ethernet)[40..].to_vec();
    let mut lldp = ethernet(0x88cc);
    lldp.extend_from_slice(&[0; 30]);
    let mut stp = vec![0x01, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0x00, 0x26];
    stp.extend_from_slice(&[0x42, 0x42, 0x03, 0, 0]);
    let frames = [
        frame(T0, arp_frame()),
        frame(T0, udp_frame.clone()),
        frame(T0, lldp),
        frame(T0, udp_frame),
        frame(T0, stp),
        frame(T0, arp_frame()),
    ];
    let capture = read_capture(&pcap(1, &frames)).unwrap();
    let numbers: Vec<u64> = capture.packets.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![2, 4]);
    let skipped: Vec<(u64, String)> = capture
        .skipped
        .iter()
        .map(|s| (s.number, s.reason.to_string()))
        .collect();
    assert_eq!(skipped.len(), 4);
    assert_eq!(
        skipped[0],
        (1, "not IP: ARP (ether type 0x0806)".to_string())
    );
    assert_eq!(
        skipped[1],
        (3, "not IP: LLDP (ether type 0x88cc)".to_string())
    );
    assert_eq!(skipped[2].0, 5);
    assert!(skipped[2].1.contains("802.3"), "{}", skipped[2].1);
    assert_eq!(skipped[3].0, 6);
    assert_eq!(
        capture.skipped[0].to_string(),
        "packet 1: not IP: ARP (ether type 0x0806)"
    );
}

#[test]
fn malformed_headers_inside_frames_are_skipped() {
    let mut bad_ihl = ethernet(0x0800);
    bad_ihl.extend_from_slice(&[0x43, 0, 0, 20]);
    bad_ihl.extend_from_slice(&[0; 16]);
    let mut short_ip = ethernet(0x86dd);
    short_ip.extend_from_slice(&[0x60, 0, 0]);
    let mut bad_tcp = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], (1, 2), 12);
    bad_tcp[9] = 6; // protocol TCP over a 20-byte payload: data offset 0
    let mut bad_tcp_frame = ethernet(0x0800);
    bad_tcp_frame.extend_from_slice(&bad_tcp);
    let mut not_ip = ethernet(0x0800);
    not_ip.extend_from_slice(&[0x50; 40]);
    let frames = [
        frame(T0, bad_ihl),
        frame(T0, short_ip),
        frame(T0, bad_tcp_frame),
        frame(T0, not_ip),
        frame(T0, vec![1, 2, 3]),
    ];
    let capture = read_capture(&pcap(1, &frames)).unwrap();
    assert!(capture.packets.is_empty());
    assert_eq!(capture.skipped.len(), 5);
    for (i, s) in capture.skipped.iter().enumerate() {
        assert_eq!(s.number, i as u64 + 1);
        assert!(matches!(s.reason, SkipReason::Malformed(_)), "{s}");
    }
}

#[test]
fn ipv4_fragments() {
    use etherparse::{IpFragOffset, Ipv4Header};
    let udp_bytes = ipv4_udp([10, 0, 0, 1], [10, 0, 0, 2], (5000, 6000), 2000);
    // First fragment: the IP header, the UDP header and 1472 payload bytes, more-fragments set.
    let (header, _) = Ipv4Header::from_slice(&udp_bytes).unwrap();
    let payload = &udp_bytes[20..];
    let mut first = header.clone();
    first.more_fragments = true;
    first.set_payload_len(1480).unwrap();
    let mut first_bytes = first.to_bytes().to_vec();
    first_bytes.extend_from_slice(&payload[..1480]);
    let mut second = header.clone();
    second.fragment_offset = IpFragOffset::try_new(185).unwrap();
    second.set_payload_len(payload.len() - 1480).unwrap();
    let mut second_bytes = second.to_bytes().to_vec();
    second_bytes.extend_from_slice(&payload[1480..]);

    let capture = read_capture(&pcap(
        101,
        &[frame(T0, first_bytes), frame(T0, second_bytes)],
    ))
    .unwrap();
    assert_eq!(capture.packets.len(), 1);
    let m = capture.packets[0].meta;
    assert_eq!(
        (m.protocol, m.src_port, m.dst_port, m.length),
        (17, Some(5000), Some(6000), 1500)
    );
    assert_eq!(capture.skipped[0].number, 2);
    assert_eq!(
        capture.skipped[0].reason,
        SkipReason::LaterFragment { offset: 1480 }
    );
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    use etherparse::{
        IpHeaders, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader,
    };
    let header = Ipv6Header {
        source: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        destination: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        hop_limit: 64,
        ..Default::default()
    };
    let options = Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0; 6]).unwrap();
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(options.clone()),
        destination_options: Some(options),
        ..Default::default()
    };
    let mut with_exts = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(header.clone(), exts))
        .tcp(1234, 80, 1, 100)
        .syn()
        .write(&mut with_exts, &[0; 4])
        .unwrap();

    let frag = |offset: u16, more: bool| {
        let exts = Ipv6Extensions {
            fragment: Some(Ipv6FragmentHeader::new(
                IpNumber::UDP,
                etherparse::IpFragOffset::try_new(offset).unwrap(),
                more,
                99,
            )),
            ..Default::default()
        };
        let mut out = Vec::new();
        PacketBuilder::ip(IpHeaders::Ipv6(header.clone(), exts))
            .udp(53, 5353)
            .write(&mut out, &[0; 16])
            .unwrap();
        out
    };
    let capture = read_capture(&pcap(
        229,
        &[
            frame(T0, with_exts),
            frame(T0, frag(0, true)),
            frame(T0, frag(3, false)),
        ],
    ))
    .unwrap();
    assert_eq!(capture.packets.len(), 2);
    let m = capture.packets[0].meta;
    assert_eq!(
        (m.protocol, m.src_port, m.dst_port, m.length),
        (6, Some(1234), Some(80), 40 + 16 + 20 + 4)
    );
    let m = capture.packets[1].meta;
    assert_eq!(
        (m.protocol, m.src_port, m.dst_port),
        (17, Some(53), Some(5353))
    );
    assert_eq!(capture.skipped[0].number, 3);
    assert_eq!(
        capture.skipped[0].reason,
        SkipReason::LaterFragment { offset: 24 }
    );
}

#[test]
fn snaplen_cut_frames_count_real_sizes() {
    // A SYN with 20 bytes of TCP options and 1000 bytes of payload, captured with a 68-byte
    // snapshot length: the options are cut off, but ports, flags and size survive.
    let mut full = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(50_000, 443, 1, 100)
        .syn()
        .options_raw(&[1; 20])
        .unwrap()
        .write(&mut full, &[0; 1000])
        .unwrap();
    let orig_len = full.len() as u32;
    let mut cut = full.clone();
    cut.truncate(68);
    let mut icmp_cut = write_pcap(
        &[icmp(
            1,
            "10.0.0.1",
            "10.0.0.2",
            IcmpKind::EchoRequest { id: 3 },
            1500,
        )],
        Link::Ethernet,
    )[40..]
        .to_vec();
    icmp_cut.truncate(14 + 20 + 8);
    let frames = [
        Frame {
            micros: T0,
            data: cut,
            orig_len: Some(orig_len),
            epb_flags: None,
        },
        Frame {
            micros: T0,
            data: icmp_cut,
            orig_len: Some(14 + 1500),
            epb_flags: None,
        },
    ];
    let capture = read_capture(&pcap(1, &frames)).unwrap();
    assert!(capture.skipped.is_empty(), "{:?}", capture.skipped);
    let m = capture.packets[0].meta;
    assert_eq!(
        (m.src_port, m.dst_port, m.tcp_flags),
        (Some(50_000), Some(443), Some(SYN))
    );
    assert_eq!(m.length, 20 + 40 + 1000);
    let m = capture.packets[1].meta;
    assert_eq!(
        (m.icmp, m.length),
        (Some(IcmpKind::EchoRequest { id: 3 }), 1500)
    );
}

#[test]
fn zero_ip_lengths_fall_back_to_the_frame() {
    // TCP segmentation offload: the capturing host records IPv4 total length 0.
    let mut tso = write_pcap(
        &[tcp(
            "10.0.0.1",
            "10.0.0.2",
            (1, 2),
            TcpFlags::default(),
            9000,
        )],
        Link::Ethernet,
    )[40..]
        .to_vec();
    tso[16..18].copy_from_slice(&[0, 0]);
    let capture = read_capture(&pcap(1, &[frame(T0, tso)])).unwrap();
    assert_eq!(capture.packets[0].meta.length, 9000);
    assert_eq!(capture.packets[0].meta.src_port, Some(1));
}

#[test]
fn ipv6_fragment_header_followed_by_a_misplaced_hop_by_hop_header() {
    // Found by fuzzing: etherparse's extension iterator would read past the packet here.
    let mut packet = ipv6_tcp_syn([1; 16], [2; 16], (1, 2));
    packet[6] = 44; // next header: fragment
    packet[40..48].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]); // fragment → hop-by-hop
    let capture = read_capture(&pcap(101, &[frame(T0, packet)])).unwrap();
    assert!(capture.packets.is_empty());
    assert!(matches!(
        capture.skipped[0].reason,
        SkipReason::Malformed(_)
    ));
}

#[test]
fn ipv6_without_payload_keeps_its_size_despite_ethernet_padding() {
    let mut frame_bytes =
        write_pcap(&[base(59, "fd00::1", "fd00::2", 40)], Link::Ethernet)[40..].to_vec();
    frame_bytes.resize(60, 0);
    let capture = read_capture(&pcap(1, &[frame(T0, frame_bytes)])).unwrap();
    assert_eq!(
        (
            capture.packets[0].meta.protocol,
            capture.packets[0].meta.length
        ),
        (59, 40)
    );
}
