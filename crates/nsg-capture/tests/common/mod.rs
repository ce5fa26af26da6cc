//! Helpers shared by the integration tests: packet metadata and hand-made capture files.

#![allow(dead_code)]

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

pub const T0: u64 = 1_700_000_000_000_000;

pub fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub fn base(protocol: u8, src: &str, dst: &str, length: u32) -> PacketMeta {
    PacketMeta {
        time: Time(T0),
        protocol,
        src: ip(src),
        dst: ip(dst),
        src_port: None,
        dst_port: None,
        tcp_flags: None,
        icmp: None,
        length,
    }
}

pub fn tcp(src: &str, dst: &str, ports: (u16, u16), flags: TcpFlags, length: u32) -> PacketMeta {
    PacketMeta {
        src_port: Some(ports.0),
        dst_port: Some(ports.1),
        tcp_flags: Some(flags),
        ..base(6, src, dst, length)
    }
}

pub fn udp(src: &str, dst: &str, ports: (u16, u16), length: u32) -> PacketMeta {
    PacketMeta {
        src_port: Some(ports.0),
        dst_port: Some(ports.1),
        ..base(17, src, dst, length)
    }
}

pub fn icmp(protocol: u8, src: &str, dst: &str, kind: IcmpKind, length: u32) -> PacketMeta {
    PacketMeta {
        icmp: Some(kind),
        ..base(protocol, src, dst, length)
    }
}

/// A frame with its time (µs), original length (defaults to the data's length) and, in pcapng
/// files, the `epb_flags` option.
pub struct Frame {
    pub micros: u64,
    pub data: Vec<u8>,
    pub orig_len: Option<u32>,
    pub epb_flags: Option<u32>,
}

pub fn frame(micros: u64, data: Vec<u8>) -> Frame {
    Frame {
        micros,
        data,
        orig_len: None,
        epb_flags: None,
    }
}

/// A pcap file of the given link type, resolution and byte order.
pub fn pcap_with(
    link_type: u32,
    resolution: TsResolution,
    endianness: Endianness,
    frames: &[Frame],
) -> Vec<u8> {
    let header = PcapHeader {
        snaplen: 262_144,
        datalink: DataLink::from(link_type),
        ts_resolution: resolution,
        endianness,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    for f in frames {
        let orig_len = f.orig_len.unwrap_or(f.data.len() as u32);
        writer
            .write_packet(&PcapPacket::new(
                Duration::from_micros(f.micros),
                orig_len,
                &f.data,
            ))
            .unwrap();
    }
    writer.into_writer()
}

pub fn pcap(link_type: u32, frames: &[Frame]) -> Vec<u8> {
    pcap_with(
        link_type,
        TsResolution::MicroSecond,
        Endianness::Little,
        frames,
    )
}

/// A pcapng file with the given interfaces (link type, if_tsresol option) and packets
/// (interface index, frame). Timestamps are written in the interface's units.
pub fn pcapng(
    endianness: Endianness,
    interfaces: &[(u32, Option<u8>)],
    packets: &[(u32, Frame)],
) -> Vec<u8> {
    let mut writer = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
    for (link_type, resolution) in interfaces {
        writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::from(*link_type),
                snaplen: 0,
                options: resolution
                    .iter()
                    .map(|r| InterfaceDescriptionOption::IfTsResol(*r))
                    .collect(),
            })
            .unwrap();
    }
    for (interface, f) in packets {
        let resolution = interfaces[*interface as usize].1.unwrap_or(6);
        assert!(resolution == 6 || resolution == 9);
        let units = if resolution == 9 {
            f.micros * 1000
        } else {
            f.micros
        };
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: *interface,
                // pcap-file writes the Duration's nanoseconds as the raw timestamp.
                timestamp: Duration::from_nanos(units),
                original_len: f.orig_len.unwrap_or(f.data.len() as u32),
                data: Cow::Borrowed(&f.data),
                options: f
                    .epb_flags
                    .map(EnhancedPacketOption::Flags)
                    .into_iter()
                    .collect(),
            })
            .unwrap();
    }
    writer.into_inner()
}

/// An Ethernet II header.
pub fn ethernet(ether_type: u16) -> Vec<u8> {
    let mut bytes = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    bytes.extend_from_slice(&ether_type.to_be_bytes());
    bytes
}

/// A raw IPv4 / UDP packet built with etherparse.
pub fn ipv4_udp(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), payload_len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4(src, dst, 64)
        .udp(ports.0, ports.1)
        .write(&mut out, &vec![0; payload_len])
        .unwrap();
    out
}

/// A raw IPv6 / TCP SYN packet built with etherparse.
pub fn ipv6_tcp_syn(src: [u8; 16], dst: [u8; 16], ports: (u16, u16)) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv6(src, dst, 64)
        .tcp(ports.0, ports.1, 7, 1000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

/// An Ethernet ARP request.
pub fn arp_frame() -> Vec<u8> {
    let arp = etherparse::ArpPacket::new(
        etherparse::ArpHardwareId::ETHERNET,
        etherparse::EtherType::IPV4,
        etherparse::ArpOperation::REQUEST,
        &[2, 0, 0, 0, 0, 1],
        &[10, 0, 0, 1],
        &[0; 6],
        &[10, 0, 0, 2],
    )
    .unwrap();
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
        .arp(arp)
        .write(&mut out)
        .unwrap();
    out
}
