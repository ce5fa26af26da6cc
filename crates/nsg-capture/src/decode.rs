//! One captured frame → [`PacketMeta`], with etherparse doing the header parsing.

use std::hash::{DefaultHasher, Hasher};
use std::net::IpAddr;

use etherparse::err::tcp::HeaderSliceError as TcpSliceError;
use etherparse::err::Layer;
use etherparse::{
    EtherType, Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv6ExtensionSlice,
    Ipv6ExtensionsSlice, LaxNetSlice, LaxSlicedPacket, LinuxSllProtocolType, LinuxSllSlice,
    TcpHeaderSlice, UdpHeaderSlice,
};
use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};

use crate::{LinkDirection, SkipReason};

/// The link layers this crate decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkKind {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    RawIp,
    /// BSD null: 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loop: 4-byte address family in network byte order.
    Loop,
}

impl LinkKind {
    /// `link_type` is a LINKTYPE_ value (the low 16 bits of a pcap header's link field).
    pub(crate) fn from_link_type(link_type: u32) -> Option<LinkKind> {
        Some(match link_type {
            1 => LinkKind::Ethernet,
            113 => LinkKind::LinuxSll,
            276 => LinkKind::LinuxSll2,
            12 | 101 | 228 | 229 => LinkKind::RawIp,
            0 => LinkKind::Null,
            108 => LinkKind::Loop,
            _ => return None,
        })
    }
}

const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;
/// Linux's `PACKET_OUTGOING`: the packet type of a packet the host sent. Types 0 to 3 (to the
/// host, broadcast, multicast, to another host) are packets it received.
pub(crate) const PACKET_OUTGOING: u16 = 4;
/// How many bytes of an IP packet its fingerprint covers: IP and transport headers with options,
/// and the start of the payload.
const FINGERPRINT_BYTES: usize = 128;

/// Address family values for IPv4 (all systems) and IPv6 (Linux, the BSDs, macOS) in a BSD
/// loopback header.
const AF_INET: u32 = 2;
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

/// A decoded frame: the packet, and what the link header says about where it was seen.
pub(crate) struct Decoded {
    pub meta: PacketMeta,
    pub direction: Option<LinkDirection>,
    pub if_index: Option<u32>,
    pub fingerprint: u64,
}

/// Decodes one frame. `orig_len` is the frame's length on the wire (the record's original
/// length), used only when the IP header does not give the packet's size.
pub(crate) fn decode(
    link: LinkKind,
    frame: &[u8],
    orig_len: u32,
    time: Time,
) -> Result<Decoded, SkipReason> {
    let sliced = slice_frame(link, frame)?;
    let (meta, fingerprint) = meta_of(&sliced, frame, orig_len, time)?;
    let (packet_type, if_index) = match link {
        LinkKind::LinuxSll => (
            frame.first_chunk::<2>().map(|t| u16::from_be_bytes(*t)),
            None,
        ),
        LinkKind::LinuxSll2 => (
            frame.get(10).map(|t| u16::from(*t)),
            frame
                .get(4..8)
                .and_then(|index| index.try_into().ok())
                .map(u32::from_be_bytes),
        ),
        _ => (None, None),
    };
    let direction = packet_type.and_then(|t| match t {
        0..=3 => Some(LinkDirection::Incoming),
        PACKET_OUTGOING => Some(LinkDirection::Outgoing),
        _ => None,
    });
    Ok(Decoded {
        meta,
        direction,
        if_index,
        fingerprint,
    })
}

/// The fingerprint of an IP packet (`ip`: its bytes as captured, up to its length): a hash of
/// its first bytes with the fields a router changes as zero.
fn fingerprint(ip: &[u8], v6: bool) -> u64 {
    let mut bytes = [0u8; FINGERPRINT_BYTES];
    let covered = ip.len().min(FINGERPRINT_BYTES);
    bytes[..covered].copy_from_slice(&ip[..covered]);
    if v6 {
        // Hop limit.
        bytes[7] = 0;
    } else {
        // TTL and header checksum.
        bytes[8] = 0;
        bytes[10..12].fill(0);
    }
    let mut hasher = DefaultHasher::new();
    hasher.write(&bytes[..covered]);
    hasher.finish()
}

fn malformed(err: impl std::fmt::Display) -> SkipReason {
    SkipReason::Malformed(err.to_string())
}

fn slice_frame(link: LinkKind, frame: &[u8]) -> Result<LaxSlicedPacket<'_>, SkipReason> {
    match link {
        LinkKind::Ethernet => LaxSlicedPacket::from_ethernet(frame).map_err(malformed),
        LinkKind::LinuxSll => slice_sll(frame),
        LinkKind::LinuxSll2 => {
            // etherparse has no SLL2 decoder: the header is 20 bytes, starting with the
            // protocol (an ether type) in network byte order.
            match frame.split_first_chunk::<SLL2_HEADER_LEN>() {
                Some((header, payload)) => from_ether_type(
                    EtherType(u16::from_be_bytes([header[0], header[1]])),
                    payload,
                ),
                None => Err(SkipReason::Malformed(format!(
                    "Linux cooked capture v2 header cut off ({} of {SLL2_HEADER_LEN} bytes)",
                    frame.len()
                ))),
            }
        }
        LinkKind::RawIp => LaxSlicedPacket::from_ip(frame).map_err(malformed),
        LinkKind::Null | LinkKind::Loop => {
            let Some((family, packet)) = frame.split_first_chunk::<4>() else {
                return Err(SkipReason::Malformed(format!(
                    "loopback header cut off ({} of 4 bytes)",
                    frame.len()
                )));
            };
            let be = u32::from_be_bytes(*family);
            let candidates = if link == LinkKind::Null {
                [u32::from_le_bytes(*family), be]
            } else {
                [be, be]
            };
            if candidates
                .iter()
                .any(|af| *af == AF_INET || AF_INET6.contains(af))
            {
                LaxSlicedPacket::from_ip(packet).map_err(malformed)
            } else {
                Err(SkipReason::NotIp(format!(
                    "loopback address family {}",
                    candidates[0].min(candidates[1])
                )))
            }
        }
    }
}

fn slice_sll(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, SkipReason> {
    use etherparse::err::linux_sll::HeaderSliceError;
    match LinuxSllSlice::from_slice(frame) {
        Ok(sll) => match sll.protocol_type() {
            LinuxSllProtocolType::EtherType(ether_type) => {
                from_ether_type(ether_type, sll.payload_slice())
            }
            // A GRE device's protocol field holds the GRE protocol type, an ether type too.
            LinuxSllProtocolType::GenericRoutingEncapsulationProtocolType(ether_type) => {
                from_ether_type(EtherType(ether_type), sll.payload_slice())
            }
            other => Err(SkipReason::NotIp(format!(
                "Linux cooked capture protocol {other:?}"
            ))),
        },
        Err(HeaderSliceError::Len(err)) => Err(malformed(err)),
        // etherparse only accepts a handful of ARPHRD_ device types (Ethernet, netlink, GRE, …);
        // for every other one (loopback 772, tun/none 0xfffe, PPP 512, …) Linux puts an ether
        // type in the protocol field, the last two bytes of the 16-byte header.
        Err(HeaderSliceError::Content(err)) => match frame.split_first_chunk::<SLL_HEADER_LEN>() {
            Some((header, payload)) => from_ether_type(
                EtherType(u16::from_be_bytes([header[14], header[15]])),
                payload,
            ),
            None => Err(malformed(err)),
        },
    }
}

fn from_ether_type(
    ether_type: EtherType,
    payload: &[u8],
) -> Result<LaxSlicedPacket<'_>, SkipReason> {
    Ok(LaxSlicedPacket::from_ether_type(ether_type, payload))
}

/// Names what a non-IP frame carries.
fn ether_type_name(ether_type: u16) -> String {
    let name = match ether_type {
        0x0806 => "ARP",
        0x8035 => "RARP",
        0x88cc => "LLDP",
        0x888e => "EAPOL (802.1X)",
        0x8809 => "slow protocols (LACP)",
        0x8847 | 0x8848 => "MPLS",
        0x8863 => "PPPoE discovery",
        0x8864 => "PPPoE session",
        0x88e5 => "MACsec",
        0x88f7 => "PTP",
        0x0842 => "Wake-on-LAN",
        0x8100 | 0x88a8 | 0x9100 => "more VLAN tags than supported",
        0x9000 => "Ethernet loopback (CTP)",
        t if t < 0x0600 => {
            return format!("IEEE 802.3 frame with LLC (length field {t}; STP, CDP, …)")
        }
        t => return format!("ether type {t:#06x}"),
    };
    format!("{name} (ether type {ether_type:#06x})")
}

/// Layers at which a parse error only concerns the transport header, which is decoded again
/// below (leniently for headers cut short by a snapshot length).
fn is_transport_layer(layer: Layer) -> bool {
    matches!(
        layer,
        Layer::UdpHeader
            | Layer::UdpPayload
            | Layer::TcpHeader
            | Layer::Icmpv4
            | Layer::Icmpv4Timestamp
            | Layer::Icmpv4TimestampReply
            | Layer::Icmpv6
            | Layer::Igmp
    )
}

/// The packet of a sliced frame, and its fingerprint.
fn meta_of(
    sliced: &LaxSlicedPacket<'_>,
    frame: &[u8],
    orig_len: u32,
    time: Time,
) -> Result<(PacketMeta, u64), SkipReason> {
    let net = match &sliced.net {
        Some(LaxNetSlice::Arp(_)) => return Err(SkipReason::NotIp(ether_type_name(0x0806))),
        Some(net) => net,
        None => {
            return Err(match &sliced.stop_err {
                Some((_, Layer::Arp)) => SkipReason::NotIp(ether_type_name(0x0806)),
                Some((err, _)) => malformed(err),
                None => SkipReason::NotIp(match sliced.ether_payload() {
                    Some(payload) => ether_type_name(payload.ether_type.0),
                    None => "no IP header (MACsec-protected or unsupported link header)".into(),
                }),
            })
        }
    };

    // What the frame holds beyond the IP packet's start, for sizes the IP header lacks.
    let wire_len = (orig_len as usize).max(frame.len());
    let (src, dst, header_start, declared_len, header_len, payload) = match net {
        LaxNetSlice::Ipv4(ip) => {
            let header = ip.header();
            let offset = header.fragments_offset().value();
            if offset != 0 {
                return Err(SkipReason::LaterFragment {
                    offset: u32::from(offset) * 8,
                });
            }
            let header_len = usize::from(header.ihl()) * 4;
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                header.slice().as_ptr(),
                // A total length below the header's own size (0 with TCP segmentation offload)
                // says nothing: fall back to the frame's length.
                Some(usize::from(header.total_len())).filter(|len| *len >= header_len),
                header_len,
                ip.payload(),
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            if let Some(offset) = ipv6_fragment_offset(ip.extensions()).filter(|o| *o != 0) {
                return Err(SkipReason::LaterFragment {
                    offset: u32::from(offset) * 8,
                });
            }
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                header.slice().as_ptr(),
                // Payload length 0 with something after the header: a jumbogram or segmentation
                // offload; use the frame's length.
                Some(usize::from(header.payload_length()))
                    .filter(|len| *len > 0 || header.next_header() == IpNumber::IPV6_NO_NEXT_HEADER)
                    .map(|len| len + 40),
                40,
                ip.payload(),
            )
        }
        LaxNetSlice::Arp(_) => return Err(SkipReason::NotIp(ether_type_name(0x0806))),
    };
    if let Some((err, layer)) = &sliced.stop_err {
        if !is_transport_layer(*layer) {
            return Err(malformed(err));
        }
    }

    let link_len = (header_start as usize).saturating_sub(frame.as_ptr() as usize);
    let length = declared_len.unwrap_or_else(|| wire_len.saturating_sub(link_len).max(header_len));
    // The packet's bytes without the link layer's padding (short Ethernet frames).
    let ip_bytes = frame
        .get(link_len..frame.len().min(link_len + length))
        .unwrap_or_default();
    let fingerprint = fingerprint(ip_bytes, matches!(net, LaxNetSlice::Ipv6(_)));
    let protocol = payload.ip_number.0;
    let mut meta = PacketMeta {
        time,
        protocol,
        src,
        dst,
        src_port: None,
        dst_port: None,
        tcp_flags: None,
        icmp: None,
        length: u32::try_from(length).unwrap_or(u32::MAX),
    };
    let data = payload.payload;
    match protocol {
        6 => {
            let (src_port, dst_port, flags) = tcp(data)?;
            meta.src_port = Some(src_port);
            meta.dst_port = Some(dst_port);
            meta.tcp_flags = Some(flags);
        }
        17 => {
            let udp = UdpHeaderSlice::from_slice(data).map_err(|_| {
                SkipReason::Malformed(format!("UDP header cut off ({} of 8 bytes)", data.len()))
            })?;
            meta.src_port = Some(udp.source_port());
            meta.dst_port = Some(udp.destination_port());
        }
        1 => meta.icmp = Some(icmpv4(data)?),
        58 => meta.icmp = Some(icmpv6(data)?),
        _ => {}
    }
    Ok((meta, fingerprint))
}

/// The fragment offset (in 8-byte units) of an IPv6 fragment header among `exts`, if any.
fn ipv6_fragment_offset(exts: &Ipv6ExtensionsSlice<'_>) -> Option<u16> {
    let first = exts.first_header()?;
    // etherparse 0.21's extension iterator reads unchecked until the chain ends, trusting its
    // slice to hold the whole chain. After a lax parse that stopped on an error (a hop-by-hop
    // header not at the start, a header cut off) it does not, and iterating reads out of
    // bounds. A strict parse of the same bytes succeeds only when the chain is complete.
    let (strict, _, _) = Ipv6ExtensionsSlice::from_slice(first, exts.slice()).ok()?;
    strict.into_iter().find_map(|ext| match ext {
        Ipv6ExtensionSlice::Fragment(fragment) => Some(fragment.fragment_offset().value()),
        _ => None,
    })
}

fn tcp(data: &[u8]) -> Result<(u16, u16, TcpFlags), SkipReason> {
    fn parts(header: &TcpHeaderSlice<'_>) -> (u16, u16, TcpFlags) {
        let flags = TcpFlags {
            syn: header.syn(),
            ack: header.ack(),
            fin: header.fin(),
            rst: header.rst(),
        };
        (header.source_port(), header.destination_port(), flags)
    }
    match TcpHeaderSlice::from_slice(data) {
        Ok(header) => Ok(parts(&header)),
        // Options cut off by the snapshot length: the fixed 20 bytes still hold the ports and
        // flags. Parse them as an option-less header.
        Err(TcpSliceError::Len(_)) if data.len() >= 20 => {
            let mut fixed = [0u8; 20];
            fixed.copy_from_slice(&data[..20]);
            fixed[12] = (5 << 4) | (fixed[12] & 0x0f);
            TcpHeaderSlice::from_slice(&fixed)
                .map(|header| parts(&header))
                .map_err(malformed)
        }
        Err(TcpSliceError::Len(_)) => Err(SkipReason::Malformed(format!(
            "TCP header cut off ({} of 20 bytes)",
            data.len()
        ))),
        Err(err) => Err(malformed(err)),
    }
}

fn icmpv4(data: &[u8]) -> Result<IcmpKind, SkipReason> {
    match Icmpv4Slice::from_slice(data) {
        Ok(icmp) => Ok(match icmp.icmp_type() {
            Icmpv4Type::EchoRequest(echo) => IcmpKind::EchoRequest { id: echo.id },
            Icmpv4Type::EchoReply(echo) => IcmpKind::EchoReply { id: echo.id },
            _ => IcmpKind::Other {
                icmp_type: icmp.type_u8(),
                code: icmp.code_u8(),
            },
        }),
        // etherparse insists on the exact size of timestamp messages; type and code are
        // all an NSG needs of them.
        Err(_) if data.len() >= 8 => Ok(IcmpKind::Other {
            icmp_type: data[0],
            code: data[1],
        }),
        Err(_) => Err(SkipReason::Malformed(format!(
            "ICMP header cut off ({} of 8 bytes)",
            data.len()
        ))),
    }
}

fn icmpv6(data: &[u8]) -> Result<IcmpKind, SkipReason> {
    let icmp = Icmpv6Slice::from_slice(data).map_err(|_| {
        SkipReason::Malformed(format!("ICMPv6 header cut off ({} of 8 bytes)", data.len()))
    })?;
    Ok(match icmp.icmp_type() {
        Icmpv6Type::EchoRequest(echo) => IcmpKind::EchoRequest { id: echo.id },
        Icmpv6Type::EchoReply(echo) => IcmpKind::EchoReply { id: echo.id },
        _ => IcmpKind::Other {
            icmp_type: icmp.type_u8(),
            code: icmp.code_u8(),
        },
    })
}
