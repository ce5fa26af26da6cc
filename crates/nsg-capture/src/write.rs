//! Captures made from [`PacketMeta`] values, for tests and tools: real frames built with
//! etherparse's `PacketBuilder`, written with pcap-file.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::{IpHeaders, IpNumber, PacketBuilder, PacketBuilderStep};
use nsg_policy::packet::{IcmpKind, PacketMeta};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

/// The link layer of a written pcap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// Ethernet II frames (link type 1) between two fixed locally administered MAC addresses.
    Ethernet,
    /// Bare IP packets (link type 101).
    RawIp,
}

impl Link {
    fn header_len(self) -> usize {
        match self {
            Link::Ethernet => 14,
            Link::RawIp => 0,
        }
    }
}

/// Snapshot length written in headers: above any frame built here (≤ 14 + 65 575 bytes).
const SNAPLEN: u32 = 262_144;
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Writes a little-endian, microsecond pcap file with one frame per packet.
///
/// Each frame is a real packet: IPv4 or IPv6 header, then for TCP, UDP, ICMP and ICMPv6 a
/// transport header carrying the ports, flags (SYN/ACK/FIN/RST as given; missing fields are
/// written as zeros) or echo identifier, and zero bytes of payload so that the IP packet's
/// length is `meta.length` — or the smallest possible size when `meta.length` is below the
/// headers' size, or 65 535 (IPv4) / 65 575 (IPv6) bytes at most. Other protocols get zero
/// bytes of payload after the IP header (so IPv6 extension header numbers do not round-trip).
/// A packet whose source and destination address families differ is written as IPv6 with the
/// IPv4 address mapped (`::ffff:a.b.c.d`). Times beyond what the format can hold are clamped.
pub fn write_pcap(packets: &[PacketMeta], link: Link) -> Vec<u8> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink: match link {
            Link::Ethernet => DataLink::ETHERNET,
            Link::RawIp => DataLink::RAW,
        },
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    };
    let mut writer =
        PcapWriter::with_header(Vec::new(), header).expect("writing to a Vec does not fail");
    for meta in packets {
        let frame = build_frame(meta, link);
        // pcap seconds are 32 bits.
        let micros = meta
            .time
            .micros()
            .min(u64::from(u32::MAX) * 1_000_000 + 999_999);
        let packet = PcapPacket::new(Duration::from_micros(micros), frame.len() as u32, &frame);
        writer
            .write_packet(&packet)
            .expect("frames fit the snapshot length and times fit 32-bit seconds");
    }
    writer.into_writer()
}

/// Writes a little-endian pcapng file: one section, one Ethernet interface with nanosecond
/// timestamps, one enhanced packet block per packet. Frames are built as for [`write_pcap`].
pub fn write_pcapng(packets: &[PacketMeta]) -> Vec<u8> {
    let mut writer = PcapNgWriter::with_endianness(Vec::new(), Endianness::Little)
        .expect("writing to a Vec does not fail");
    let interface = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: SNAPLEN,
        // pcap-file writes an enhanced packet block's timestamp as nanoseconds.
        options: vec![InterfaceDescriptionOption::IfTsResol(9)],
    };
    writer
        .write_pcapng_block(interface)
        .expect("writing to a Vec does not fail");
    for meta in packets {
        let frame = build_frame(meta, Link::Ethernet);
        // 64-bit nanoseconds.
        let micros = meta.time.micros().min(u64::MAX / 1000);
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_micros(micros),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(&frame),
            options: Vec::new(),
        };
        writer
            .write_pcapng_block(block)
            .expect("the interface exists and writing to a Vec does not fail");
    }
    writer.into_inner()
}

#[derive(Clone, Copy)]
enum Addresses {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

fn addresses(meta: &PacketMeta) -> Addresses {
    match (meta.src, meta.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => Addresses::V4(src.octets(), dst.octets()),
        (src, dst) => {
            let v6 = |addr: IpAddr| match addr {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            Addresses::V6(v6(src), v6(dst))
        }
    }
}

fn ip_step(link: Link, addresses: Addresses) -> PacketBuilderStep<IpHeaders> {
    match (link, addresses) {
        (Link::Ethernet, Addresses::V4(src, dst)) => {
            PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, dst, 64)
        }
        (Link::Ethernet, Addresses::V6(src, dst)) => {
            PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv6(src, dst, 64)
        }
        (Link::RawIp, Addresses::V4(src, dst)) => PacketBuilder::ipv4(src, dst, 64),
        (Link::RawIp, Addresses::V6(src, dst)) => PacketBuilder::ipv6(src, dst, 64),
    }
}

/// Builds the frame for one packet.
fn build_frame(meta: &PacketMeta, link: Link) -> Vec<u8> {
    let addresses = addresses(meta);
    let max_ip_len = match addresses {
        Addresses::V4(..) => 65_535,
        Addresses::V6(..) => 65_535 + 40,
    };
    let target_ip_len = (meta.length as usize).min(max_ip_len);
    // Zero payload bytes that bring the IP packet to the target size, given the frame size
    // without payload.
    let payload = |empty_frame_len: usize| {
        vec![0u8; target_ip_len.saturating_sub(empty_frame_len - link.header_len())]
    };
    let step = ip_step(link, addresses);
    let src_port = meta.src_port.unwrap_or(0);
    let dst_port = meta.dst_port.unwrap_or(0);

    let mut frame = Vec::new();
    let written = match meta.protocol {
        6 => {
            let flags = meta.tcp_flags.unwrap_or_default();
            let mut tcp = step.tcp(src_port, dst_port, 1, 65_535);
            if flags.syn {
                tcp = tcp.syn();
            }
            if flags.ack {
                tcp = tcp.ack(1);
            }
            if flags.fin {
                tcp = tcp.fin();
            }
            if flags.rst {
                tcp = tcp.rst();
            }
            let payload = payload(tcp.size(0));
            tcp.write(&mut frame, &payload).is_ok()
        }
        17 => {
            let udp = step.udp(src_port, dst_port);
            let payload = payload(udp.size(0));
            udp.write(&mut frame, &payload).is_ok()
        }
        1 => {
            let icmp = match meta.icmp {
                Some(IcmpKind::EchoRequest { id }) => step.icmpv4_echo_request(id, 0),
                Some(IcmpKind::EchoReply { id }) => step.icmpv4_echo_reply(id, 0),
                Some(IcmpKind::Other { icmp_type, code }) => {
                    step.icmpv4_raw(icmp_type, code, [0; 4])
                }
                None => step.icmpv4_raw(0, 0, [0; 4]),
            };
            let payload = payload(icmp.size(0));
            icmp.write(&mut frame, &payload).is_ok()
        }
        58 => {
            let icmp = match meta.icmp {
                Some(IcmpKind::EchoRequest { id }) => step.icmpv6_echo_request(id, 0),
                Some(IcmpKind::EchoReply { id }) => step.icmpv6_echo_reply(id, 0),
                Some(IcmpKind::Other { icmp_type, code }) => {
                    step.icmpv6_raw(icmp_type, code, [0; 4])
                }
                None => step.icmpv6_raw(0, 0, [0; 4]),
            };
            let payload = payload(icmp.size(0));
            icmp.write(&mut frame, &payload).is_ok()
        }
        _ => false,
    };
    if !written {
        // Other protocols, and transports the builder refuses (ICMPv6 over IPv4): the IP header
        // and zero bytes.
        frame.clear();
        let step = ip_step(link, addresses);
        let payload = payload(step.size(0));
        step.write(&mut frame, IpNumber(meta.protocol), &payload)
            .expect("payload sizes stay within the IP length fields");
    }
    frame
}
