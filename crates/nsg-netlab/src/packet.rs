//! Building single IP packets for [`RawSender`](crate::RawSender), and reading back the
//! addresses and ports of captured ones. Checksums are computed by etherparse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

/// TTL / hop limit of built packets: enough to cross a router, like a real host's.
const HOP_LIMIT: u8 = 64;
const SYN_SEQUENCE_NUMBER: u32 = 1;
const SYN_WINDOW: u16 = 64_240;
/// Building only fails for payloads that do not fit in one IP packet.
const FITS: &str = "payload fits in one IP packet (at most 65,000 bytes)";

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
}
