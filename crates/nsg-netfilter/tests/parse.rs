//! The message parsers without a kernel. Messages built here as the kernel lays them out
//! (include/uapi/linux/netfilter/nfnetlink_{conntrack,log}.h) parse back into exactly the
//! values they were built from; and no datagram makes a parser panic: random bytes, random
//! attribute trees in well-framed messages, and well-formed messages with bytes changed or
//! cut off all end in `Ok` or `Err`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use nsg_netfilter::{
    ConntrackEntry, ConntrackEvent, ConntrackEventKind, Counters, NflogPacket, Transport, Tuple,
};
use nsg_netlab::packet::{
    ipv4_icmp_echo, ipv4_tcp_syn, ipv4_udp, ipv6_icmp_echo, ipv6_tcp_syn, ipv6_udp,
};
use proptest::prelude::*;

const NLA_F_NESTED: u16 = 0x8000;
const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_CREATE: u16 = 0x400;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NFULNL_MSG_PACKET: u16 = 0;

/// An attribute: a kind (flags included) and a value, or nested attributes.
#[derive(Clone, Debug)]
enum Attribute {
    Leaf(u16, Vec<u8>),
    Nested(u16, Vec<Attribute>),
}

impl Attribute {
    fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend([0; 4]);
        let kind = match self {
            Attribute::Leaf(kind, value) => {
                out.extend(value);
                *kind
            }
            Attribute::Nested(kind, children) => {
                for child in children {
                    child.write(out);
                }
                *kind | NLA_F_NESTED
            }
        };
        // Oversized random trees get a wrong (wrapped) length: garbage too.
        let length = (out.len() - start) as u16;
        out[start..start + 2].copy_from_slice(&length.to_ne_bytes());
        out[start + 2..start + 4].copy_from_slice(&kind.to_ne_bytes());
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
}

fn leaf(kind: u16, value: impl Into<Vec<u8>>) -> Attribute {
    Attribute::Leaf(kind, value.into())
}

fn address(kind_v4: u16, kind_v6: u16, address: IpAddr) -> Attribute {
    match address {
        IpAddr::V4(address) => leaf(kind_v4, address.octets()),
        IpAddr::V6(address) => leaf(kind_v6, address.octets()),
    }
}

/// A netlink message: header, nfgenmsg (family, version, big-endian resource id), attributes.
fn netlink_message(
    message_type: u16,
    flags: u16,
    nfgenmsg: [u8; 4],
    attributes: &[Attribute],
) -> Vec<u8> {
    let mut out = vec![0; 16];
    out.extend(nfgenmsg);
    for attribute in attributes {
        attribute.write(&mut out);
    }
    let length = out.len() as u32;
    out[0..4].copy_from_slice(&length.to_ne_bytes());
    out[4..6].copy_from_slice(&message_type.to_ne_bytes());
    out[6..8].copy_from_slice(&flags.to_ne_bytes());
    out
}

// ---- conntrack ----

fn encode_tuple(kind: u16, tuple: &Tuple) -> Attribute {
    let ip = Attribute::Nested(1, vec![address(1, 3, tuple.src), address(2, 4, tuple.dst)]);
    let mut proto = vec![leaf(1, [tuple.protocol])];
    match tuple.transport {
        Transport::Ports { src, dst } => {
            proto.extend([leaf(2, src.to_be_bytes()), leaf(3, dst.to_be_bytes())])
        }
        Transport::Icmp {
            icmp_type,
            code,
            id,
        } => {
            // CTA_PROTO_ICMP_* for IPv4, CTA_PROTO_ICMPV6_* for IPv6.
            let first = if tuple.src.is_ipv4() { 4 } else { 7 };
            proto.extend([
                leaf(first, id.to_be_bytes()),
                leaf(first + 1, [icmp_type]),
                leaf(first + 2, [code]),
            ])
        }
        Transport::None => {}
    }
    Attribute::Nested(kind, vec![ip, Attribute::Nested(2, proto)])
}

fn encode_counters(kind: u16, counters: Counters) -> Attribute {
    Attribute::Nested(
        kind,
        vec![
            leaf(1, counters.packets.to_be_bytes()),
            leaf(2, counters.bytes.to_be_bytes()),
        ],
    )
}

fn nanoseconds(time: SystemTime) -> [u8; 8] {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after the epoch");
    (since.as_nanos() as u64).to_be_bytes()
}

fn encode_event(event: &ConntrackEvent) -> Vec<u8> {
    let entry = &event.entry;
    let mut attributes = vec![
        encode_tuple(1, &entry.original),
        encode_tuple(2, &entry.reply),
        leaf(12, entry.id.to_be_bytes()),
        leaf(3, entry.status.to_be_bytes()),
    ];
    // The kernel leaves out a zero mark and the default zone.
    if entry.mark != 0 {
        attributes.push(leaf(8, entry.mark.to_be_bytes()));
    }
    if entry.zone != 0 {
        attributes.push(leaf(18, entry.zone.to_be_bytes()));
    }
    attributes.extend(entry.counters_original.map(|c| encode_counters(9, c)));
    attributes.extend(entry.counters_reply.map(|c| encode_counters(10, c)));
    if entry.start.is_some() || entry.stop.is_some() {
        let mut times = Vec::new();
        times.extend(entry.start.map(|t| leaf(1, nanoseconds(t))));
        times.extend(entry.stop.map(|t| leaf(2, nanoseconds(t))));
        attributes.push(Attribute::Nested(20, times));
    }
    let (message_type, flags) = match event.kind {
        ConntrackEventKind::New => (IPCTNL_MSG_CT_NEW, NLM_F_CREATE),
        ConntrackEventKind::Destroy => (IPCTNL_MSG_CT_DELETE, 0),
    };
    let family = if entry.original.src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    netlink_message(
        NFNL_SUBSYS_CTNETLINK << 8 | message_type,
        flags,
        [family, 0, 0, 0],
        &attributes,
    )
}

fn addresses() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        any::<([u8; 4], [u8; 4])>()
            .prop_map(|(a, b)| (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into())),
        any::<([u8; 16], [u8; 16])>()
            .prop_map(|(a, b)| (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into())),
    ]
}

fn conntrack_tuple() -> impl Strategy<Value = Tuple> {
    let transport = prop_oneof![
        (
            prop_oneof![Just(6u8), Just(17), Just(132)],
            any::<(u16, u16)>()
        )
            .prop_map(|(protocol, (src, dst))| (protocol, Transport::Ports { src, dst })),
        any::<(u8, u8, u16)>().prop_map(|(icmp_type, code, id)| (
            0,
            Transport::Icmp {
                icmp_type,
                code,
                id
            }
        )),
        Just((47u8, Transport::None)),
    ];
    (addresses(), transport).prop_map(|((src, dst), (protocol, transport))| {
        let protocol = match (protocol, src) {
            (0, IpAddr::V4(_)) => 1,
            (0, IpAddr::V6(_)) => 58,
            (protocol, _) => protocol,
        };
        Tuple {
            src,
            dst,
            protocol,
            transport,
        }
    })
}

fn time() -> impl Strategy<Value = SystemTime> {
    any::<u64>().prop_map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
}

fn counters() -> impl Strategy<Value = Counters> {
    any::<(u64, u64)>().prop_map(|(packets, bytes)| Counters { packets, bytes })
}

fn conntrack_event() -> impl Strategy<Value = ConntrackEvent> {
    let ids = any::<(u32, u32, u32, u16)>();
    let extras = (
        prop::option::of(counters()),
        prop::option::of(counters()),
        prop::option::of(time()),
        prop::option::of(time()),
    );
    (
        any::<bool>(),
        conntrack_tuple(),
        conntrack_tuple(),
        ids,
        extras,
    )
        .prop_map(
            |(new, original, reply, (id, status, mark, zone), (c_orig, c_reply, start, stop))| {
                ConntrackEvent {
                    kind: if new {
                        ConntrackEventKind::New
                    } else {
                        ConntrackEventKind::Destroy
                    },
                    entry: ConntrackEntry {
                        id,
                        original,
                        reply,
                        mark,
                        zone,
                        status,
                        counters_original: c_orig,
                        counters_reply: c_reply,
                        start,
                        stop,
                    },
                }
            },
        )
}

// ---- nflog ----

/// An IP packet built by nsg-netlab, its tuple and its length.
fn ip_packet() -> impl Strategy<Value = (Vec<u8>, Tuple, u32)> {
    (addresses(), any::<(u16, u16)>(), 0usize..1500, 0u8..3).prop_map(
        |((src, dst), (a, b), payload, shape)| {
            let payload = vec![0xab; payload];
            let [syn, udp, echo] = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => [
                    ipv4_tcp_syn(s, d, a, b),
                    ipv4_udp(s, d, a, b, &payload),
                    ipv4_icmp_echo(s, d, a, b),
                ],
                (IpAddr::V6(s), IpAddr::V6(d)) => [
                    ipv6_tcp_syn(s, d, a, b),
                    ipv6_udp(s, d, a, b, &payload),
                    ipv6_icmp_echo(s, d, a, b),
                ],
                _ => unreachable!("addresses() gives one family"),
            };
            let ports = Transport::Ports { src: a, dst: b };
            let (packet, protocol, transport) = match (shape, src.is_ipv4()) {
                (0, _) => (syn, 6, ports),
                (1, _) => (udp, 17, ports),
                // Echo requests of ICMP and ICMPv6.
                (_, v4) => (
                    echo,
                    if v4 { 1 } else { 58 },
                    Transport::Icmp {
                        icmp_type: if v4 { 8 } else { 128 },
                        code: 0,
                        id: a,
                    },
                ),
            };
            let length = packet.len() as u32;
            (
                packet,
                Tuple {
                    src,
                    dst,
                    protocol,
                    transport,
                },
                length,
            )
        },
    )
}

/// A logged packet and the bytes of it the kernel copied (at least the headers).
fn nflog_packet() -> impl Strategy<Value = (NflogPacket, Vec<u8>)> {
    let meta = (
        "[a-z0-9:]{0,24}",
        any::<u16>(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of((any::<u32>(), 0u64..1_000_000)),
        any::<u32>(),
        prop::option::of(any::<u32>()),
    );
    (meta, ip_packet(), 64usize..256).prop_map(
        |(
            (prefix, group, indev, outdev, stamp, mark, sequence),
            (bytes, packet, length),
            copy_range,
        )| {
            let copied = bytes[..bytes.len().min(copy_range)].to_vec();
            let timestamp = stamp.map(|(seconds, micros)| {
                SystemTime::UNIX_EPOCH
                    + Duration::from_secs(seconds.into())
                    + Duration::from_micros(micros)
            });
            let hw_protocol = if packet.src.is_ipv4() { 0x0800 } else { 0x86dd };
            let logged = NflogPacket {
                prefix,
                group,
                hw_protocol,
                indev,
                outdev,
                timestamp,
                mark,
                packet,
                length,
                sequence,
            };
            (logged, copied)
        },
    )
}

fn encode_nflog(packet: &NflogPacket, copied: &[u8]) -> Vec<u8> {
    // struct nfulnl_msg_packet_hdr: hw_protocol (big-endian), hook, padding.
    let [hw0, hw1] = packet.hw_protocol.to_be_bytes();
    let mut attributes = vec![
        leaf(1, [hw0, hw1, 2, 0]),
        leaf(2, packet.mark.to_be_bytes()),
    ];
    if let Some(time) = packet.timestamp {
        let since = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after the epoch");
        let mut value = since.as_secs().to_be_bytes().to_vec();
        value.extend(u64::from(since.subsec_micros()).to_be_bytes());
        attributes.push(leaf(3, value));
    }
    attributes.extend(packet.indev.map(|index| leaf(4, index.to_be_bytes())));
    attributes.extend(packet.outdev.map(|index| leaf(5, index.to_be_bytes())));
    attributes.push(leaf(9, copied));
    let mut prefix = packet.prefix.clone().into_bytes();
    prefix.push(0);
    attributes.push(leaf(10, prefix));
    attributes.extend(packet.sequence.map(|number| leaf(12, number.to_be_bytes())));
    let [group0, group1] = packet.group.to_be_bytes();
    let family = if packet.packet.src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    netlink_message(
        NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET,
        0,
        [family, 0, group0, group1],
        &attributes,
    )
}

// ---- garbage ----

/// Kinds around those the parsers know, sometimes with the byte-order flag.
fn kind() -> impl Strategy<Value = u16> {
    (0u16..28, any::<bool>()).prop_map(|(kind, net_order)| {
        if net_order {
            kind | NLA_F_NET_BYTEORDER
        } else {
            kind
        }
    })
}

fn random_attribute() -> impl Strategy<Value = Attribute> {
    let leaf = (kind(), prop::collection::vec(any::<u8>(), 0..24))
        .prop_map(|(kind, value)| Attribute::Leaf(kind, value));
    leaf.prop_recursive(4, 64, 6, |inner| {
        (kind(), prop::collection::vec(inner, 0..6))
            .prop_map(|(kind, children)| Attribute::Nested(kind, children))
    })
}

fn random_message() -> impl Strategy<Value = Vec<u8>> {
    let message_type = prop_oneof![
        (
            prop_oneof![Just(NFNL_SUBSYS_CTNETLINK), Just(NFNL_SUBSYS_ULOG)],
            0u16..4
        )
            .prop_map(|(subsystem, kind)| subsystem << 8 | kind),
        Just(NLMSG_ERROR),
        Just(NLMSG_DONE),
    ];
    (
        message_type,
        any::<u16>(),
        any::<[u8; 4]>(),
        prop::collection::vec(random_attribute(), 0..8),
    )
        .prop_map(|(message_type, flags, nfgenmsg, attributes)| {
            netlink_message(message_type, flags, nfgenmsg, &attributes)
        })
}

/// `datagram` with some bytes replaced, and perhaps cut short.
fn damaged(datagram: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        datagram,
        prop::collection::vec(any::<(prop::sample::Index, u8)>(), 0..6),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(mut bytes, changes, cut)| {
            for (at, byte) in changes {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

fn parse_both(bytes: &[u8]) {
    let _ = ConntrackEvent::parse(bytes);
    let _ = NflogPacket::parse(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn conntrack_events_parse_back_into_what_they_were_built_from(events in prop::collection::vec(conntrack_event(), 1..4)) {
        let datagram: Vec<u8> = events.iter().flat_map(encode_event).collect();
        prop_assert_eq!(ConntrackEvent::parse(&datagram).expect("well-formed"), events);
    }

    #[test]
    fn nflog_packets_parse_back_into_what_they_were_built_from(packets in prop::collection::vec(nflog_packet(), 1..4)) {
        let datagram: Vec<u8> = packets.iter().flat_map(|(packet, copied)| encode_nflog(packet, copied)).collect();
        let expected: Vec<NflogPacket> = packets.into_iter().map(|(packet, _)| packet).collect();
        prop_assert_eq!(NflogPacket::parse(&datagram).expect("well-formed"), expected);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_both(&bytes);
    }

    #[test]
    fn random_attribute_trees_never_panic(bytes in damaged(prop::collection::vec(random_message(), 1..4).prop_map(|m| m.concat()))) {
        parse_both(&bytes);
    }

    #[test]
    fn damaged_conntrack_events_never_panic(bytes in damaged(conntrack_event().prop_map(|event| encode_event(&event)))) {
        parse_both(&bytes);
    }

    #[test]
    fn damaged_nflog_packets_never_panic(bytes in damaged(nflog_packet().prop_map(|(packet, copied)| encode_nflog(&packet, &copied)))) {
        parse_both(&bytes);
    }
}

#[test]
fn an_nflog_timestamp_beyond_the_clock_is_an_error_not_a_panic() {
    let packet = ipv4_udp(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 1, 2, b"");
    let attributes = [
        leaf(1, [0x08, 0x00, 2, 0]),
        // u64::MAX seconds and microseconds.
        leaf(3, [0xff; 16]),
        leaf(9, packet),
    ];
    let datagram = netlink_message(
        NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET,
        0,
        [2, 0, 0, 5],
        &attributes,
    );
    let error = NflogPacket::parse(&datagram).expect_err("out of range");
    assert!(error.to_string().contains("NFULA_TIMESTAMP"), "{error}");
}
