//! Connection tracking through ctnetlink: events for new and destroyed connections, and dumps
//! of the whole table.

use std::time::{Duration, SystemTime};

use netlink_packet_core::{
    parse_u16_be, parse_u32_be, parse_u64_be, parse_u8, DecodeError, NetlinkHeader, NetlinkMessage,
    NetlinkPayload, Nla, NlasIterator, NLA_TYPE_MASK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Tuple as TupleAttribute,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};

use crate::error::{Error, Result};
use crate::socket::{NetfilterSocket, Received, ANSWER_TIMEOUT};
use crate::tuple::{Transport, Tuple};
use crate::wire::{messages, value_of};

// Attribute numbers of include/uapi/linux/netfilter/nfnetlink_conntrack.h that
// netlink-packet-netfilter 0.4 does not type.
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TIMESTAMP: u16 = 20;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
const CTA_TIMESTAMP_START: u16 = 1;
const CTA_TIMESTAMP_STOP: u16 = 2;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

const NFNETLINK_V0: u8 = libc::NFNETLINK_V0 as u8;

/// What the messages parsed here are called in errors.
const WHAT: &str = "conntrack message";

/// The receive buffer [`ConntrackEvents::subscribe`] and [`Nflog::bind`](crate::Nflog::bind)
/// ask for. The kernel doubles it and queues about 13,000 conntrack events in that (1,280 bytes
/// each with its bookkeeping), so that a burst of short connections outlasts a reader busy for
/// a moment; it only uses what is queued.
pub const DEFAULT_RECEIVE_BUFFER: usize = 8 << 20;

/// At most this many datagrams are read by one [`ConntrackEvents::recv`], so that a flood does
/// not keep the caller from its other work.
const MAX_DATAGRAMS_PER_RECV: usize = 4096;

/// A connection as conntrack knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackEntry {
    /// The kernel's id of this connection (CTA_ID), unique among the live ones.
    pub id: u32,
    /// The tuple of the packet that opened the connection.
    pub original: Tuple,
    /// The tuple replies carry (the original one reversed, after any NAT).
    pub reply: Tuple,
    /// `ct mark` (0 when unset).
    pub mark: u32,
    /// The conntrack zone (0, the default, when absent).
    pub zone: u16,
    /// The `IPS_*` status bits of include/uapi/linux/netfilter/nf_conntrack_common.h.
    pub status: u32,
    /// Packets and bytes (IP total lengths) in the original direction, when
    /// `net.netfilter.nf_conntrack_acct` was on as the connection began (see
    /// [`enable_accounting`](crate::enable_accounting)). Destroy events and dumps carry them,
    /// new events do not.
    pub counters_original: Option<Counters>,
    /// The same for the reply direction.
    pub counters_reply: Option<Counters>,
    /// When the connection was confirmed (its first packet left the stack), when
    /// `net.netfilter.nf_conntrack_timestamp` was on as it began. Destroy events and dumps.
    pub start: Option<SystemTime>,
    /// When it was destroyed: destroy events only.
    pub stop: Option<SystemTime>,
}

/// A conntrack counter: packets, and bytes as the sum of their IP total lengths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConntrackEventKind {
    /// A connection was confirmed (its first packet was accepted).
    New,
    /// A connection ended: timed out, closed and reaped, flushed or deleted.
    Destroy,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackEvent {
    pub kind: ConntrackEventKind,
    pub entry: ConntrackEntry,
}

impl ConntrackEvent {
    /// The events of one datagram from a socket subscribed to conntrack events, what
    /// [`ConntrackEvents::recv`] does with each it receives. Other messages (updates, if the
    /// socket were subscribed to them) are passed over.
    pub fn parse(datagram: &[u8]) -> Result<Vec<ConntrackEvent>> {
        let mut events = Vec::new();
        for message in messages(datagram, WHAT) {
            let message = message?;
            let Some(conntrack) = conntrack_message(&message.payload) else {
                continue;
            };
            let (kind, attributes) = match conntrack {
                ConntrackMessage::New(attributes) if message.header.flags & NLM_F_CREATE != 0 => {
                    (ConntrackEventKind::New, attributes)
                }
                ConntrackMessage::Delete(attributes) => (ConntrackEventKind::Destroy, attributes),
                _ => continue,
            };
            events.push(ConntrackEvent {
                kind,
                entry: ConntrackEntry::from_attributes(attributes)?,
            });
        }
        Ok(events)
    }
}

/// A subscription to the conntrack events of the calling thread's network namespace: new
/// and destroyed connections (NFNLGRP_CONNTRACK_NEW and NFNLGRP_CONNTRACK_DESTROY).
///
/// Events the kernel could not queue because the receive buffer was full are lost; the
/// kernel counts them and [`lost`](Self::lost) says how many there were. A reader that sees
/// the count grow re-reads the table with [`conntrack_dump`] to find what it missed.
pub struct ConntrackEvents {
    socket: NetfilterSocket,
    receive_buffer: usize,
    /// The kernel's (32-bit, wrapping) drop counter when last read.
    dropped_seen: u32,
    lost: u64,
}

impl ConntrackEvents {
    /// Subscribes with a receive buffer of [`DEFAULT_RECEIVE_BUFFER`] bytes.
    pub fn subscribe() -> Result<ConntrackEvents> {
        ConntrackEvents::subscribe_with_buffer(DEFAULT_RECEIVE_BUFFER)
    }

    /// Subscribes with a receive buffer of `bytes` (beyond `net.core.rmem_max` only as root
    /// or with CAP_NET_ADMIN).
    pub fn subscribe_with_buffer(bytes: usize) -> Result<ConntrackEvents> {
        let action = "subscribe to conntrack events";
        let socket = NetfilterSocket::open(action)?;
        let receive_buffer = socket.enlarge_receive_buffer(bytes)?;
        for group in [libc::NFNLGRP_CONNTRACK_NEW, libc::NFNLGRP_CONNTRACK_DESTROY] {
            // The constants are small and positive.
            socket.join(group as u32, action)?;
        }
        let dropped_seen = socket
            .dropped()
            .map_err(|err| Error::io("read the netlink socket's drop counter", err))?;
        Ok(ConntrackEvents {
            socket,
            receive_buffer,
            dropped_seen,
            lost: 0,
        })
    }

    /// The receive buffer the kernel granted, in bytes (twice what was asked: the kernel
    /// doubles the request for its bookkeeping).
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }

    /// Waits at most `timeout` for events, then returns all that are queued (up to a few
    /// thousand datagrams' worth); empty if none came in time.
    pub fn recv(&mut self, timeout: Duration) -> Result<Vec<ConntrackEvent>> {
        let action = "receive conntrack events";
        let mut events = Vec::new();
        if self
            .socket
            .wait(timeout)
            .map_err(|err| Error::io(action, err))?
        {
            for _ in 0..MAX_DATAGRAMS_PER_RECV {
                match self
                    .socket
                    .receive()
                    .map_err(|err| Error::io(action, err))?
                {
                    Received::Datagram => {
                        events.extend(ConntrackEvent::parse(self.socket.datagram())?)
                    }
                    // Counted below.
                    Received::Overrun => {}
                    Received::Empty => break,
                }
            }
        }
        let dropped = self
            .socket
            .dropped()
            .map_err(|err| Error::io("read the netlink socket's drop counter", err))?;
        self.lost += u64::from(dropped.wrapping_sub(self.dropped_seen));
        self.dropped_seen = dropped;
        Ok(events)
    }

    /// How many events the kernel has dropped since the subscription began, because the
    /// receive buffer was full (as of the last [`recv`](Self::recv)).
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

/// Every connection conntrack tracks in the calling thread's network namespace, IPv4 and
/// IPv6, with their running counters and start times (a `conntrack -L`).
pub fn conntrack_dump() -> Result<Vec<ConntrackEntry>> {
    let action = "dump the conntrack table";
    let mut socket = NetfilterSocket::open(action)?;
    let request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(NetfilterMessage::new(
            // Unspecified: every address family.
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, NFNETLINK_V0, 0),
            ConntrackMessage::Get(Vec::new()),
        )),
    );
    let sequence = socket.send(request, NLM_F_REQUEST | NLM_F_DUMP, action)?;
    let mut entries = Vec::new();
    loop {
        socket.receive_within(ANSWER_TIMEOUT, action)?;
        if dump_part(socket.datagram(), sequence, &mut entries)? == DumpPart::Last {
            return Ok(entries);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DumpPart {
    More,
    Last,
}

/// Adds the entries of one datagram of the answer to dump request `sequence` to `entries`;
/// says whether the answer is complete. Messages of other requests are passed over.
pub(crate) fn dump_part(
    datagram: &[u8],
    sequence: u32,
    entries: &mut Vec<ConntrackEntry>,
) -> Result<DumpPart> {
    for message in messages(datagram, WHAT) {
        let message = message?;
        if message.header.sequence_number != sequence {
            continue;
        }
        match &message.payload {
            NetlinkPayload::Done(_) => return Ok(DumpPart::Last),
            NetlinkPayload::Error(error) => {
                if let Some(code) = error.code {
                    return Err(Error::io(
                        "dump the conntrack table",
                        std::io::Error::from_raw_os_error(-code.get()),
                    ));
                }
            }
            payload => {
                // Older kernels answer with IPCTNL_MSG_CT_NEW, newer ones with the GET asked.
                if let Some(ConntrackMessage::New(attributes) | ConntrackMessage::Get(attributes)) =
                    conntrack_message(payload)
                {
                    entries.push(ConntrackEntry::from_attributes(attributes)?);
                }
            }
        }
    }
    Ok(DumpPart::More)
}

fn conntrack_message(payload: &NetlinkPayload<NetfilterMessage>) -> Option<&ConntrackMessage> {
    match payload {
        NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(message),
            ..
        }) => Some(message),
        _ => None,
    }
}

impl ConntrackEntry {
    fn from_attributes(attributes: &[ConntrackAttribute]) -> Result<ConntrackEntry> {
        let (mut id, mut original, mut reply, mut status) = (None, None, None, None);
        let (mut mark, mut zone) = (0, 0);
        let (mut counters_original, mut counters_reply) = (None, None);
        let (mut start, mut stop) = (None, None);
        for attribute in attributes {
            match attribute {
                ConntrackAttribute::CtaTupleOrig(parts) => {
                    original = Some(tuple(parts).map_err(malformed("CTA_TUPLE_ORIG"))?)
                }
                ConntrackAttribute::CtaTupleReply(parts) => {
                    reply = Some(tuple(parts).map_err(malformed("CTA_TUPLE_REPLY"))?)
                }
                ConntrackAttribute::CtaStatus(bits) => status = Some(bits.bits()),
                ConntrackAttribute::CtaMark(value) => mark = *value,
                ConntrackAttribute::Other(other) => {
                    let value = value_of(other);
                    match other.kind() & NLA_TYPE_MASK {
                        CTA_ID => id = Some(parse_u32_be(&value).map_err(malformed("CTA_ID"))?),
                        CTA_ZONE => zone = parse_u16_be(&value).map_err(malformed("CTA_ZONE"))?,
                        CTA_COUNTERS_ORIG => {
                            counters_original =
                                Some(counters(&value).map_err(malformed("CTA_COUNTERS_ORIG"))?)
                        }
                        CTA_COUNTERS_REPLY => {
                            counters_reply =
                                Some(counters(&value).map_err(malformed("CTA_COUNTERS_REPLY"))?)
                        }
                        CTA_TIMESTAMP => {
                            (start, stop) =
                                timestamps(&value).map_err(malformed("CTA_TIMESTAMP"))?
                        }
                        _ => {}
                    }
                }
                // Timeouts, TCP state, helpers: not what a flow log needs.
                _ => {}
            }
        }
        let missing = |name: &str| Error::malformed(WHAT, format!("no {name}"));
        Ok(ConntrackEntry {
            id: id.ok_or_else(|| missing("CTA_ID"))?,
            original: original.ok_or_else(|| missing("CTA_TUPLE_ORIG"))?,
            reply: reply.ok_or_else(|| missing("CTA_TUPLE_REPLY"))?,
            mark,
            zone,
            status: status.ok_or_else(|| missing("CTA_STATUS"))?,
            counters_original,
            counters_reply,
            start,
            stop,
        })
    }
}

fn malformed(attribute: &'static str) -> impl Fn(DecodeError) -> Error {
    move |err| Error::malformed(WHAT, format!("{attribute}: {err}"))
}

/// A CTA_TUPLE_ORIG or CTA_TUPLE_REPLY: addresses (CTA_TUPLE_IP) and protocol (CTA_TUPLE_PROTO).
fn tuple(parts: &[TupleAttribute]) -> Result<Tuple, DecodeError> {
    let (mut src, mut dst, mut protocol) = (None, None, None);
    let (mut src_port, mut dst_port) = (None, None);
    let (mut icmp_type, mut icmp_code, mut icmp_id) = (None, None, None);
    for part in parts {
        match part {
            TupleAttribute::Ip(addresses) => {
                for address in addresses {
                    match address {
                        IPTuple::SourceAddress(address) => src = Some(*address),
                        IPTuple::DestinationAddress(address) => dst = Some(*address),
                        _ => {}
                    }
                }
            }
            TupleAttribute::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(number) => protocol = Some(u8::from(*number)),
                        ProtoTuple::SourcePort(port) => src_port = Some(*port),
                        ProtoTuple::DestinationPort(port) => dst_port = Some(*port),
                        ProtoTuple::Other(other) => {
                            let value = value_of(other);
                            match other.kind() & NLA_TYPE_MASK {
                                CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                                    icmp_id = Some(parse_u16_be(&value)?)
                                }
                                CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                                    icmp_type = Some(parse_u8(&value)?)
                                }
                                CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                                    icmp_code = Some(parse_u8(&value)?)
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
            }
            // The tuple's zone (CTA_TUPLE_ZONE): the entry's CTA_ZONE says it.
            _ => {}
        }
    }
    let transport = match (src_port, dst_port, icmp_type, icmp_code) {
        (Some(src), Some(dst), _, _) => Transport::Ports { src, dst },
        (_, _, Some(icmp_type), Some(code)) => Transport::Icmp {
            icmp_type,
            code,
            id: icmp_id.unwrap_or(0),
        },
        _ => Transport::None,
    };
    Ok(Tuple {
        src: src.ok_or("no source address")?,
        dst: dst.ok_or("no destination address")?,
        protocol: protocol.ok_or("no protocol")?,
        transport,
    })
}

/// CTA_COUNTERS_ORIG or CTA_COUNTERS_REPLY: 64-bit packet and byte counts.
fn counters(value: &[u8]) -> Result<Counters, DecodeError> {
    let (mut packets, mut bytes) = (None, None);
    for attribute in NlasIterator::new(value) {
        let attribute = attribute?;
        match attribute.kind() {
            CTA_COUNTERS_PACKETS => packets = Some(parse_u64_be(attribute.value())?),
            CTA_COUNTERS_BYTES => bytes = Some(parse_u64_be(attribute.value())?),
            _ => {}
        }
    }
    Ok(Counters {
        packets: packets.ok_or("no packet count")?,
        bytes: bytes.ok_or("no byte count")?,
    })
}

/// CTA_TIMESTAMP: start and (once destroyed) stop, in nanoseconds since the Unix epoch.
fn timestamps(value: &[u8]) -> Result<(Option<SystemTime>, Option<SystemTime>), DecodeError> {
    let (mut start, mut stop) = (None, None);
    for attribute in NlasIterator::new(value) {
        let attribute = attribute?;
        let time = || {
            let nanoseconds = parse_u64_be(attribute.value())?;
            SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_nanos(nanoseconds))
                .ok_or(DecodeError::from("time out of range"))
        };
        match attribute.kind() {
            CTA_TIMESTAMP_START => start = Some(time()?),
            CTA_TIMESTAMP_STOP => stop = Some(time()?),
            _ => {}
        }
    }
    Ok((start, stop))
}
