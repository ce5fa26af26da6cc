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

use crate::decode::PACKET_OUTGOING;
use crate::{CapturePoint, LinkDirection};

/// The link layer of a written pcap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// Ethernet II frames (link type 1) between two fixed locally administered MAC addresses.
    Ethernet,
    /// Bare IP packets (link type 101).
    RawIp,
    /// Linux cooked capture (link type 113), as `tcpdump -i any` writes: the packet type says
    /// the direction (`PACKET_HOST` for incoming, `PACKET_OUTGOING`).
    LinuxSll,
    /// Linux cooked capture v2 (link type 276): the direction and the interface index.
    LinuxSll2,
}

/// A packet as a capture of several interfaces records it: where it was seen, and the TTL or
/// hop limit it had there (a router's outgoing copy has one less).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordedPacket {
    pub meta: PacketMeta,
    /// Written in cooked headers only: the direction in both versions, the interface index
    /// (0 when `None`) in version 2.
    pub point: CapturePoint,
    pub hop_limit: u8,
}

impl RecordedPacket {
    /// `meta` as a packet received with hop limit 64, where no capture point is given.
    pub fn new(meta: PacketMeta) -> RecordedPacket {
        RecordedPacket {
            meta,
            point: CapturePoint::default(),
            hop_limit: 64,
        }
    }
}

/// Snapshot length written in headers: above any frame built here (≤ 14 + 65 575 bytes).
const SNAPLEN: u32 = 262_144;
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const ETHERNET_HEADER_LEN: usize = 14;
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
/// Cooked frames are written as received (`PACKET_HOST`) on interface index 0; see
/// [`write_pcap_recorded`] for the rest.
pub fn write_pcap(packets: &[PacketMeta], link: Link) -> Vec<u8> {
    let recorded: Vec<RecordedPacket> = packets.iter().copied().map(RecordedPacket::new).collect();
    write_pcap_recorded(&recorded, link)
}

/// Like [`write_pcap`], with each packet's capture point (in cooked headers) and hop limit: for
/// captures of several interfaces, such as `tcpdump -i any` on a router.
pub fn write_pcap_recorded(packets: &[RecordedPacket], link: Link) -> Vec<u8> {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: SNAPLEN,
        datalink: match link {
            Link::Ethernet => DataLink::ETHERNET,
            Link::RawIp => DataLink::RAW,
            Link::LinuxSll => DataLink::LINUX_SLL,
            Link::LinuxSll2 => DataLink::LINUX_SLL2,
        },
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
    };
    let mut writer =
        PcapWriter::with_header(Vec::new(), header).expect("writing to a Vec does not fail");
    for recorded in packets {
        let frame = build_frame(recorded, link);
        // pcap seconds are 32 bits.
        let micros = recorded
            .meta
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
        let frame = build_frame(&RecordedPacket::new(*meta), Link::Ethernet);
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

/// The builder up to the IP header: an Ethernet header, or none (cooked headers are added after).
fn ip_step(ethernet: bool, addresses: Addresses, hop_limit: u8) -> PacketBuilderStep<IpHeaders> {
    match (ethernet, addresses) {
        (true, Addresses::V4(src, dst)) => {
            PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv4(src, dst, hop_limit)
        }
        (true, Addresses::V6(src, dst)) => {
            PacketBuilder::ethernet2(SRC_MAC, DST_MAC).ipv6(src, dst, hop_limit)
        }
        (false, Addresses::V4(src, dst)) => PacketBuilder::ipv4(src, dst, hop_limit),
        (false, Addresses::V6(src, dst)) => PacketBuilder::ipv6(src, dst, hop_limit),
    }
}

/// ARPHRD_ETHER, the device type written in cooked headers.
const ARPHRD_ETHER: u16 = 1;
/// Linux's `PACKET_HOST`: a packet addressed to the capturing host.
const PACKET_HOST: u16 = 0;

/// The cooked capture header of `packet` for `link`, if it has one.
fn cooked_header(packet: &RecordedPacket, link: Link) -> Option<Vec<u8>> {
    let packet_type = match packet.point.direction {
        Some(LinkDirection::Outgoing) => PACKET_OUTGOING,
        Some(LinkDirection::Incoming) | None => PACKET_HOST,
    };
    let ether_type: u16 = match addresses(&packet.meta) {
        Addresses::V4(..) => 0x0800,
        Addresses::V6(..) => 0x86dd,
    };
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&SRC_MAC);
    let mut header = Vec::with_capacity(20);
    match link {
        Link::LinuxSll => {
            header.extend_from_slice(&packet_type.to_be_bytes());
            header.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
            header.extend_from_slice(&6u16.to_be_bytes());
            header.extend_from_slice(&address);
            header.extend_from_slice(&ether_type.to_be_bytes());
        }
        Link::LinuxSll2 => {
            header.extend_from_slice(&ether_type.to_be_bytes());
            header.extend_from_slice(&[0, 0]);
            header.extend_from_slice(&packet.point.if_index.unwrap_or(0).to_be_bytes());
            header.extend_from_slice(&ARPHRD_ETHER.to_be_bytes());
            header.push(packet_type as u8);
            header.push(6);
            header.extend_from_slice(&address);
        }
        Link::Ethernet | Link::RawIp => return None,
    }
    Some(header)
}

/// Builds the frame for one packet.
fn build_frame(packet: &RecordedPacket, link: Link) -> Vec<u8> {
    let ip = build_ip_frame(&packet.meta, link == Link::Ethernet, packet.hop_limit);
    match cooked_header(packet, link) {
        Some(mut header) => {
            header.extend_from_slice(&ip);
            header
        }
        None => ip,
    }
}

/// Builds an Ethernet frame (`ethernet`) or a bare IP packet for `meta`.
fn build_ip_frame(meta: &PacketMeta, ethernet: bool, hop_limit: u8) -> Vec<u8> {
    let link_header_len = if ethernet { ETHERNET_HEADER_LEN } else { 0 };
    let addresses = addresses(meta);
    let max_ip_len = match addresses {
        Addresses::V4(..) => 65_535,
        Addresses::V6(..) => 65_535 + 40,
    };
    let target_ip_len = (meta.length as usize).min(max_ip_len);
    // Zero payload bytes that bring the IP packet to the target size, given the frame size
    // without payload.
    let payload = |empty_frame_len: usize| {
        vec![0u8; target_ip_len.saturating_sub(empty_frame_len - link_header_len)]
    };
    let step = ip_step(ethernet, addresses, hop_limit);
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
        let step = ip_step(ethernet, addresses, hop_limit);
        let payload = payload(step.size(0));
        step.write(&mut frame, IpNumber(meta.protocol), &payload)
            .expect("payload sizes stay within the IP length fields");
    }
    frame
}
