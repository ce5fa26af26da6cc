//! Building single IP packets for [`RawSender`](crate::RawSender) and whole Ethernet frames
//! for [`FrameSender`](crate::FrameSender), and reading back the addresses and ports of
//! captured ones. Checksums are computed by etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    icmpv4, icmpv6, ArpEthIpv4Packet, ArpOperation, EtherType, Ethernet2Header, Icmpv4Type,
    Icmpv6Type, LaxNetSlice, LaxSlicedPacket, NetSlice, PacketBuilder, SlicedPacket,
    TransportSlice,
};

/// EtherType of IPv4, for [`ethernet_frame`].
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// The Ethernet broadcast address: the destination of ordinary ARP requests.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// ARP operation codes, as [`parse_arp`] returns them.
pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// TTL / hop limit of built packets: enough to cross a router, like a real host's.
const HOP_LIMIT: u8 = 64;
const SYN_SEQUENCE_NUMBER: u32 = 1;
const SYN_WINDOW: u16 = 64_240;
/// Building only fails for payloads that do not fit in one IP packet.
const FITS: &str = "payload fits in one IP packet (at most 65,000 bytes)";

/// Receivers drop neighbour discovery messages with any other hop limit (RFC 4861 7.1.2), which
/// proves they were not forwarded by a router.
const NDP_HOP_LIMIT: u8 = 255;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
const NA_FLAG_SOLICITED: u8 = 0x40;
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// NDP option type 2, length 1 (in units of 8 bytes), then the MAC.
const TARGET_LINK_LAYER_ADDRESS_OPTION: [u8; 2] = [2, 1];
/// The most of the offending packet an ICMPv4 error quotes: what keeps the error within 576
/// bytes (RFC 1812 4.3.2.3), after a 20-byte IPv4 and an 8-byte ICMP header.
pub const ICMPV4_MAX_QUOTE: usize = 576 - 20 - 8;
/// The most an ICMPv6 error quotes: what keeps it within the IPv6 minimum MTU of 1280 bytes
/// (RFC 4443 2.4 c), after a 40-byte IPv6 and an 8-byte ICMPv6 header.
pub const ICMPV6_MAX_QUOTE: usize = 1280 - 40 - 8;

/// An IPv4 TCP SYN from `src:src_port` to `dst:dst_port`.
pub fn ipv4_tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), HOP_LIMIT)
        .tcp(src_port, dst_port, SYN_SEQUENCE_NUMBER, SYN_WINDOW)
        .syn()
        .write_to_vec(&mut packet, &[])
        .expect(FITS);
    packet
}

/// An IPv6 TCP SYN from `[src]:src_port` to `[dst]:dst_port`.
pub fn ipv6_tcp_syn(src: Ipv6Addr, dst: Ipv6Addr, src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), HOP_LIMIT)
        .tcp(src_port, dst_port, SYN_SEQUENCE_NUMBER, SYN_WINDOW)
        .syn()
        .write_to_vec(&mut packet, &[])
        .expect(FITS);
    packet
}

/// An IPv4 UDP datagram.
///
/// # Panics
/// If `payload` does not fit in one IP packet.
pub fn ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), HOP_LIMIT)
        .udp(src_port, dst_port)
        .write_to_vec(&mut packet, payload)
        .expect(FITS);
    packet
}

/// An IPv6 UDP datagram.
///
/// # Panics
/// If `payload` does not fit in one IP packet.
pub fn ipv6_udp(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), HOP_LIMIT)
        .udp(src_port, dst_port)
        .write_to_vec(&mut packet, payload)
        .expect(FITS);
    packet
}

/// An ICMPv4 echo request.
pub fn ipv4_icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), HOP_LIMIT)
        .icmpv4_echo_request(id, seq)
        .write_to_vec(&mut packet, &[])
        .expect(FITS);
    packet
}

/// An ICMPv6 echo request.
pub fn ipv6_icmp_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), HOP_LIMIT)
        .icmpv6_echo_request(id, seq)
        .write_to_vec(&mut packet, &[])
        .expect(FITS);
    packet
}

/// An ICMPv4 "port unreachable" error (type 3, code 3) from `src` to `dst`, about the IP
/// packet `quoted` (which a real host would have received from `dst`). Quotes at most
/// [`ICMPV4_MAX_QUOTE`] bytes of it, like Linux; pass just the header and 8 bytes of payload
/// for the RFC 792 minimum.
pub fn ipv4_icmp_port_unreachable(src: Ipv4Addr, dst: Ipv4Addr, quoted: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), HOP_LIMIT)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            icmpv4::DestUnreachableHeader::Port,
        ))
        .write_to_vec(&mut packet, &quoted[..quoted.len().min(ICMPV4_MAX_QUOTE)])
        .expect(FITS);
    packet
}

/// An ICMPv6 "port unreachable" error (type 1, code 4) from `src` to `dst`, about the IP
/// packet `quoted`, of which it quotes at most [`ICMPV6_MAX_QUOTE`] bytes.
pub fn ipv6_icmp_port_unreachable(src: Ipv6Addr, dst: Ipv6Addr, quoted: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    PacketBuilder::ipv6(src.octets(), dst.octets(), HOP_LIMIT)
        .icmpv6(Icmpv6Type::DestinationUnreachable(
            icmpv6::DestUnreachableCode::Port,
        ))
        .write_to_vec(&mut packet, &quoted[..quoted.len().min(ICMPV6_MAX_QUOTE)])
        .expect(FITS);
    packet
}

/// An Ethernet II frame: `dst_mac`, `src_mac`, `ethertype`, then `payload` as given (no
/// padding to the 60-byte minimum, no FCS: a veth needs neither).
pub fn ethernet_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let header = Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type: EtherType(ethertype),
    };
    let mut frame = Vec::with_capacity(Ethernet2Header::LEN + payload.len());
    frame.extend_from_slice(&header.to_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A whole ARP request frame from `sender_mac`, asking who has `target_ip` on behalf of
/// `sender_ip`, sent to `target_mac`: [`BROADCAST_MAC`] for an ordinary request, the current
/// MAC of `target_ip` for the unicast re-check Linux makes of a stale entry.
///
/// The target hardware address field is zero for a broadcast request and `target_mac`
/// otherwise, as Linux fills it in.
pub fn arp_request(
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let target_hw = if target_mac == BROADCAST_MAC {
        [0; 6]
    } else {
        target_mac
    };
    arp_frame(
        ARP_REQUEST,
        sender_mac,
        sender_ip,
        target_mac,
        target_hw,
        target_ip,
    )
}

/// A whole ARP reply frame from `sender_mac` to `target_mac`, claiming that `sender_ip` is at
/// `sender_mac`. With `target_ip == sender_ip` and [`BROADCAST_MAC`] it is a gratuitous ARP.
pub fn arp_reply(
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target_mac: [u8; 6],
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    arp_frame(
        ARP_REPLY, sender_mac, sender_ip, target_mac, target_mac, target_ip,
    )
}

/// An Ethernet/IPv4 ARP packet in a frame from `sender_mac` to `dst_mac`.
fn arp_frame(
    operation: u16,
    sender_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    dst_mac: [u8; 6],
    target_hw: [u8; 6],
    target_ip: Ipv4Addr,
) -> Vec<u8> {
    let arp = ArpEthIpv4Packet {
        operation: ArpOperation(operation),
        sender_mac,
        sender_ipv4: sender_ip.octets(),
        target_mac: target_hw,
        target_ipv4: target_ip.octets(),
    };
    ethernet_frame(sender_mac, dst_mac, ETHERTYPE_ARP, &arp.to_bytes())
}

/// Reads an Ethernet/IPv4 ARP frame (as [`Capture::open_frames`](crate::Capture::open_frames)
/// returns them): `(operation, sender MAC, sender IP, target IP)`, the operation being
/// [`ARP_REQUEST`] or [`ARP_REPLY`]. `None` for any other frame.
pub fn parse_arp(frame: &[u8]) -> Option<(u16, [u8; 6], Ipv4Addr, Ipv4Addr)> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Arp(arp)) = &sliced.net else {
        return None;
    };
    let arp = arp.to_packet().try_eth_ipv4().ok()?;
    Some((
        arp.operation.0,
        arp.sender_mac,
        arp.sender_ipv4_addr(),
        arp.target_ipv4_addr(),
    ))
}

/// A whole frame with an ICMPv6 neighbour advertisement from `src_mac`/`src_ip` to
/// `dst_mac`/`dst_ip`, announcing that `target` is at `src_mac` (target link-layer address
/// option), with the Override flag, so that it replaces an existing neighbour entry.
///
/// The Solicited flag is set when `dst_ip` is unicast and clear when it is multicast
/// (ff02::1 for an unsolicited advertisement): receivers drop a multicast advertisement that
/// claims to be solicited (RFC 4861 7.1.2). Hop limit 255, checksum correct.
pub fn ipv6_neighbor_advertisement(
    src_mac: [u8; 6],
    src_ip: Ipv6Addr,
    dst_mac: [u8; 6],
    dst_ip: Ipv6Addr,
    target: Ipv6Addr,
) -> Vec<u8> {
    let solicited = if dst_ip.is_multicast() {
        0
    } else {
        NA_FLAG_SOLICITED
    };
    let mut body = Vec::with_capacity(16 + 8);
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&TARGET_LINK_LAYER_ADDRESS_OPTION);
    body.extend_from_slice(&src_mac);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv6(src_ip.octets(), dst_ip.octets(), NDP_HOP_LIMIT)
        .icmpv6_raw(
            ICMPV6_NEIGHBOR_ADVERTISEMENT,
            0,
            [solicited | NA_FLAG_OVERRIDE, 0, 0, 0],
        )
        .write_to_vec(&mut frame, &body)
        .expect(FITS);
    frame
}

/// The target address of a frame carrying an ICMPv6 neighbour advertisement; `None` for any
/// other frame.
pub fn parse_neighbor_advertisement(frame: &[u8]) -> Option<Ipv6Addr> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
        return None;
    };
    if icmp.type_u8() != ICMPV6_NEIGHBOR_ADVERTISEMENT {
        return None;
    }
    let target: [u8; 16] = icmp.payload().get(..16)?.try_into().ok()?;
    Some(Ipv6Addr::from(target))
}

/// An ICMP or ICMPv6 error message (destination unreachable, time exceeded, ...), as a
/// firewall must let through when it is about a connection it allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpError {
    /// Who sent the error.
    pub src: IpAddr,
    /// Who it is for: the sender of the quoted packet.
    pub dst: IpAddr,
    /// ICMP type, e.g. 3 (destination unreachable) for ICMPv4, 1 for ICMPv6.
    pub icmp_type: u8,
    /// ICMP code, e.g. 3 (port unreachable) for ICMPv4, 4 for ICMPv6.
    pub code: u8,
    /// The addresses, protocol and ports of the quoted packet, read from however much of it
    /// is quoted; `None` if not even its IP header is.
    pub quoted: Option<FiveTuple>,
}

impl IcmpError {
    /// Reads an IP packet (no link-layer header); `None` unless it is an ICMPv4 error (type 3,
    /// 4, 5, 11 or 12) or an ICMPv6 error (types 0 to 127).
    pub fn parse(packet: &[u8]) -> Option<IcmpError> {
        let sliced = SlicedPacket::from_ip(packet).ok()?;
        let (src, dst): (IpAddr, IpAddr) = match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
            ),
            _ => return None,
        };
        let (icmp_type, code, quoted) = match &sliced.transport {
            Some(TransportSlice::Icmpv4(icmp)) if matches!(icmp.type_u8(), 3 | 4 | 5 | 11 | 12) => {
                (icmp.type_u8(), icmp.code_u8(), icmp.payload())
            }
            // ICMPv6 informational messages are types 128 to 255 (RFC 4443 2.1).
            Some(TransportSlice::Icmpv6(icmp)) if icmp.type_u8() < 128 => {
                (icmp.type_u8(), icmp.code_u8(), icmp.payload())
            }
            _ => return None,
        };
        Some(IcmpError {
            src,
            dst,
            icmp_type,
            code,
            quoted: quoted_five_tuple(quoted),
        })
    }
}

/// Reads a quoted packet, which is usually cut short (a TCP header, for one, is rarely quoted
/// whole), so ports and echo identifiers are read straight from the first bytes after the IP
/// header.
fn quoted_five_tuple(quoted: &[u8]) -> Option<FiveTuple> {
    let sliced = LaxSlicedPacket::from_ip(quoted).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(LaxNetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let payload = sliced.ip_payload()?;
    let (protocol, bytes) = (payload.ip_number.0, payload.payload);
    let be16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    };
    let has_ports = matches!(protocol, 6 | 17);
    // Echo requests: ICMP type 8, ICMPv6 type 128; the identifier follows type, code, checksum.
    let echo_request = matches!((protocol, bytes.first()), (1, Some(8)) | (58, Some(128)));
    Some(FiveTuple {
        src,
        dst,
        protocol,
        src_port: be16(0).filter(|_| has_ports),
        dst_port: be16(2).filter(|_| has_ports),
        echo_request_id: be16(4).filter(|_| echo_request),
    })
}

/// The addresses, protocol and ports of an IP packet: what a firewall rule matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    /// Source port, for TCP and UDP only.
    pub src_port: Option<u16>,
    /// Destination port, for TCP and UDP only.
    pub dst_port: Option<u16>,
    /// The identifier of an ICMP or ICMPv6 echo request; `None` for every other packet, so that
    /// ICMP errors are not mistaken for probes.
    pub echo_request_id: Option<u16>,
}

impl FiveTuple {
    /// Reads an IPv4 or IPv6 packet (no link-layer header, as [`Capture`](crate::Capture)
    /// returns them). `None` if it is not a well-formed IP packet.
    pub fn parse(packet: &[u8]) -> Option<FiveTuple> {
        let sliced = SlicedPacket::from_ip(packet).ok()?;
        let (src, dst, protocol) = match &sliced.net {
            Some(NetSlice::Ipv4(ip)) => (
                IpAddr::V4(ip.header().source_addr()),
                IpAddr::V4(ip.header().destination_addr()),
                ip.payload().ip_number.0,
            ),
            Some(NetSlice::Ipv6(ip)) => (
                IpAddr::V6(ip.header().source_addr()),
                IpAddr::V6(ip.header().destination_addr()),
                ip.payload().ip_number.0,
            ),
            _ => return None,
        };
        let ports = match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => Some((tcp.source_port(), tcp.destination_port())),
            Some(TransportSlice::Udp(udp)) => Some((udp.source_port(), udp.destination_port())),
            _ => None,
        };
        let echo_request_id = match &sliced.transport {
            Some(TransportSlice::Icmpv4(icmp)) => match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(echo) => Some(echo.id),
                _ => None,
            },
            Some(TransportSlice::Icmpv6(icmp)) => match icmp.icmp_type() {
                Icmpv6Type::EchoRequest(echo) => Some(echo.id),
                _ => None,
            },
            _ => None,
        };
        Some(FiveTuple {
            src,
            dst,
            protocol,
            src_port: ports.map(|(src_port, _)| src_port),
            dst_port: ports.map(|(_, dst_port)| dst_port),
            echo_request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4HeaderSlice, TcpHeaderSlice};

    #[test]
    fn built_syn_reads_back_with_valid_checksums() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let packet = ipv4_tcp_syn(src, dst, 40_000, 443);
        let tuple = FiveTuple::parse(&packet).expect("an IP packet");
        assert_eq!(tuple.src, IpAddr::V4(src));
        assert_eq!(tuple.dst, IpAddr::V4(dst));
        assert_eq!(tuple.protocol, 6);
        assert_eq!((tuple.src_port, tuple.dst_port), (Some(40_000), Some(443)));

        let ip = Ipv4HeaderSlice::from_slice(&packet).expect("IPv4 header");
        assert_eq!(ip.header_checksum(), ip.to_header().calc_header_checksum());
        let tcp = TcpHeaderSlice::from_slice(&packet[ip.slice().len()..]).expect("TCP header");
        assert!(tcp.syn() && !tcp.ack());
        let expected = tcp
            .to_header()
            .calc_checksum_ipv4_raw(src.octets(), dst.octets(), &[])
            .expect("checksum");
        assert_eq!(tcp.checksum(), expected);
    }

    #[test]
    fn only_echo_requests_carry_an_echo_identifier() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let echo = FiveTuple::parse(&ipv4_icmp_echo(src, dst, 7, 1)).expect("echo");
        assert_eq!(echo.echo_request_id, Some(7));
        let v6 = FiveTuple::parse(&ipv6_icmp_echo(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            9,
            1,
        ))
        .expect("echo");
        assert_eq!(v6.echo_request_id, Some(9));
        let syn = FiveTuple::parse(&ipv4_tcp_syn(src, dst, 7, 80)).expect("syn");
        assert_eq!(syn.echo_request_id, None);
    }

    #[test]
    fn parses_ipv6_udp_and_icmp() {
        let (src, dst) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let udp = FiveTuple::parse(&ipv6_udp(src, dst, 5353, 53, b"query")).expect("IPv6 UDP");
        assert_eq!(
            (udp.protocol, udp.src_port, udp.dst_port),
            (17, Some(5353), Some(53))
        );
        let echo = FiveTuple::parse(&ipv6_icmp_echo(src, dst, 7, 1)).expect("ICMPv6");
        assert_eq!((echo.protocol, echo.src_port), (58, None));
        assert_eq!(FiveTuple::parse(b"\x00\x01 not ip"), None);
    }

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

    /// The Internet checksum of `bytes` plus `seed`, folded: 0xffff over a correct packet.
    fn folded_sum(seed: u32, bytes: &[u8]) -> u16 {
        let mut sum = bytes.chunks(2).fold(seed, |sum, pair| {
            sum + u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]))
        });
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn ethernet_frames_put_the_destination_first() {
        let frame = ethernet_frame(MAC_A, MAC_B, 0x88b5, b"hi");
        assert_eq!(&frame[..6], &MAC_B);
        assert_eq!(&frame[6..12], &MAC_A);
        assert_eq!(&frame[12..14], &[0x88, 0xb5]);
        assert_eq!(&frame[14..], b"hi");
    }

    #[test]
    fn arp_frames_read_back() {
        let (a, b) = (Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(10, 0, 1, 5));
        let reply = arp_reply(MAC_A, a, MAC_B, b);
        assert_eq!(reply.len(), 14 + 28);
        assert_eq!(&reply[..6], &MAC_B, "sent to the target");
        assert_eq!(&reply[12..14], &[0x08, 0x06]);
        assert_eq!(&reply[32..38], &MAC_B, "target hardware address");
        assert_eq!(parse_arp(&reply), Some((ARP_REPLY, MAC_A, a, b)));

        let request = arp_request(MAC_A, a, BROADCAST_MAC, b);
        assert_eq!(&request[..6], &BROADCAST_MAC);
        assert_eq!(&request[32..38], &[0; 6], "unknown target hardware address");
        assert_eq!(parse_arp(&request), Some((ARP_REQUEST, MAC_A, a, b)));
        let unicast = arp_request(MAC_A, a, MAC_B, b);
        assert_eq!((&unicast[..6], &unicast[32..38]), (&MAC_B[..], &MAC_B[..]));

        let not_arp = ethernet_frame(MAC_A, MAC_B, ETHERTYPE_IPV4, &ipv4_icmp_echo(a, b, 1, 1));
        assert_eq!(parse_arp(&not_arp), None);
        assert_eq!(parse_arp(&reply[..30]), None, "truncated");
    }

    #[test]
    fn neighbor_advertisements_are_valid_and_read_back() {
        let (a, b): (Ipv6Addr, Ipv6Addr) =
            ("fd00:1::4".parse().unwrap(), "fd00:1::5".parse().unwrap());
        let frame = ipv6_neighbor_advertisement(MAC_A, a, MAC_B, b, a);
        assert_eq!(parse_neighbor_advertisement(&frame), Some(a));
        assert_eq!(&frame[..12], &[MAC_B, MAC_A].concat()[..]);

        let sliced = SlicedPacket::from_ethernet(&frame).expect("a frame");
        let Some(NetSlice::Ipv6(ip)) = &sliced.net else {
            panic!("not IPv6")
        };
        assert_eq!(ip.header().hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = &sliced.transport else {
            panic!("not ICMPv6")
        };
        assert!(icmp.is_checksum_valid(a.octets(), b.octets()));
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (136, 0));
        assert_eq!(icmp.bytes5to8(), [0x60, 0, 0, 0], "Solicited and Override");
        assert_eq!(&icmp.payload()[16..], &[&[2, 1][..], &MAC_A].concat()[..]);

        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        let unsolicited =
            ipv6_neighbor_advertisement(MAC_A, a, [0x33, 0x33, 0, 0, 0, 1], all_nodes, a);
        let Some(TransportSlice::Icmpv6(icmp)) =
            SlicedPacket::from_ethernet(&unsolicited).unwrap().transport
        else {
            panic!("not ICMPv6")
        };
        assert_eq!(
            icmp.bytes5to8()[0],
            0x20,
            "Override only, to a multicast group"
        );
        assert!(icmp.is_checksum_valid(a.octets(), all_nodes.octets()));

        let echo = ethernet_frame(MAC_A, MAC_B, ETHERTYPE_IPV6, &ipv6_icmp_echo(a, b, 1, 1));
        assert_eq!(parse_neighbor_advertisement(&echo), None);
        assert_eq!(
            parse_neighbor_advertisement(&arp_reply(
                MAC_A,
                Ipv4Addr::LOCALHOST,
                MAC_B,
                Ipv4Addr::LOCALHOST
            )),
            None
        );
    }

    #[test]
    fn icmpv4_port_unreachable_quotes_and_checksums() {
        let (host, peer) = (Ipv4Addr::new(10, 0, 1, 4), Ipv4Addr::new(10, 10, 0, 6));
        // The datagram the host "received" from its peer, to a closed port.
        let datagram = ipv4_udp(peer, host, 5353, 9999, b"query");
        let error = ipv4_icmp_port_unreachable(host, peer, &datagram);
        assert_eq!(error.len(), 20 + 8 + datagram.len());
        assert_eq!(folded_sum(0, &error[..20]), 0xffff, "IPv4 header checksum");
        assert_eq!(folded_sum(0, &error[20..]), 0xffff, "ICMP checksum");
        assert_eq!((error[20], error[21]), (3, 3));
        assert_eq!(&error[28..], &datagram[..]);

        let tuple = FiveTuple::parse(&error).expect("an IP packet");
        assert_eq!(
            (tuple.src, tuple.dst, tuple.protocol),
            (host.into(), peer.into(), 1)
        );
        assert_eq!(tuple.echo_request_id, None);
        let parsed = IcmpError::parse(&error).expect("an ICMP error");
        assert_eq!((parsed.icmp_type, parsed.code), (3, 3));
        assert_eq!(parsed.quoted, FiveTuple::parse(&datagram));

        // Long packets are cut at 548 bytes; a minimal quote (header + 8) still reads back.
        let long = ipv4_udp(peer, host, 5353, 9999, &[0; 1000]);
        assert_eq!(ipv4_icmp_port_unreachable(host, peer, &long).len(), 576);
        let syn = ipv4_tcp_syn(peer, host, 40_000, 443);
        let minimal = IcmpError::parse(&ipv4_icmp_port_unreachable(host, peer, &syn[..28]))
            .expect("an ICMP error");
        let quoted = minimal.quoted.expect("a quoted header");
        assert_eq!(
            (quoted.src_port, quoted.dst_port, quoted.protocol),
            (Some(40_000), Some(443), 6)
        );

        assert_eq!(IcmpError::parse(&ipv4_icmp_echo(host, peer, 1, 1)), None);
    }

    #[test]
    fn icmpv6_port_unreachable_quotes_and_checksums() {
        let (host, peer): (Ipv6Addr, Ipv6Addr) =
            ("fd00:1::4".parse().unwrap(), "fd00:10::6".parse().unwrap());
        let datagram = ipv6_udp(peer, host, 5353, 9999, b"query");
        let error = ipv6_icmp_port_unreachable(host, peer, &datagram);
        let Some(TransportSlice::Icmpv6(icmp)) = SlicedPacket::from_ip(&error).unwrap().transport
        else {
            panic!("not ICMPv6")
        };
        assert!(icmp.is_checksum_valid(host.octets(), peer.octets()));
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (1, 4));
        assert_eq!(icmp.payload(), &datagram[..]);
        let parsed = IcmpError::parse(&error).expect("an ICMPv6 error");
        assert_eq!((parsed.src, parsed.dst), (host.into(), peer.into()));
        assert_eq!(parsed.quoted, FiveTuple::parse(&datagram));

        let long = ipv6_udp(peer, host, 5353, 9999, &[0; 2000]);
        assert_eq!(ipv6_icmp_port_unreachable(host, peer, &long).len(), 1280);
        assert_eq!(IcmpError::parse(&ipv6_icmp_echo(host, peer, 1, 1)), None);
    }
}
