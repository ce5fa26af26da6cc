//! Packets logged by nftables rules (`log group N prefix "…"`), through nfnetlink_log.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use etherparse::{Icmpv4Type, Icmpv6Type, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use netlink_packet_core::{parse_u16_be, parse_u64_be, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigFlags, ConfigMode, PacketHdr, PacketNla, TimeStamp, Timeout,
    ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};

use crate::conntrack::DEFAULT_RECEIVE_BUFFER;
use crate::error::{Error, Result};
use crate::socket::{NetfilterSocket, Received};
use crate::tuple::{Transport, Tuple};
use crate::wire::{messages, value_of};

/// What the messages parsed here are called in errors.
const WHAT: &str = "nflog message";

/// How long the kernel may hold logged packets to batch them into one datagram (it also sends
/// once its buffer holds 100 packets or is full).
const FLUSH_TIMEOUT: Duration = Duration::from_millis(100);

/// At most this many datagrams are read by one [`Nflog::recv`].
const MAX_DATAGRAMS_PER_RECV: usize = 1024;

/// The IPv6 header's fixed size, which its payload length leaves out.
const IPV6_HEADER_LEN: u32 = 40;

/// A packet an nftables `log group` rule sent to userspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NflogPacket {
    /// The rule's `prefix` ("" without one).
    pub prefix: String,
    /// The nflog group the rule logs to.
    pub group: u16,
    /// The link-layer protocol (EtherType) of the packet: 0x0800 IPv4, 0x86dd IPv6.
    pub hw_protocol: u16,
    /// Index of the interface the packet came in on, if any (not for locally sent packets).
    pub indev: Option<u32>,
    /// Index of the interface it was to leave by, if known at the hook (not at input).
    pub outdev: Option<u32>,
    /// When the packet was received, if the kernel stamped it (it does while any socket of
    /// the host asks for receive timestamps).
    pub timestamp: Option<SystemTime>,
    /// The packet's `meta mark` (0 when unset).
    pub mark: u32,
    /// The packet's addresses, protocol and ports or ICMP fields.
    pub packet: Tuple,
    /// The packet's size in bytes by its IP header (IPv4 total length; IPv6 payload length
    /// plus the fixed header), whatever part of it was copied.
    pub length: u32,
    /// The group's count of packets logged before this one (NFULA_SEQ); gaps are packets lost
    /// on the way (see [`Nflog::lost`]).
    pub sequence: Option<u32>,
}

impl NflogPacket {
    /// The packets of one datagram from an nflog socket, what [`Nflog::recv`] does with each it
    /// receives. Other messages are passed over.
    pub fn parse(datagram: &[u8]) -> Result<Vec<NflogPacket>> {
        let mut packets = Vec::new();
        for message in messages(datagram, WHAT) {
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                header,
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(attributes)),
                ..
            }) = message?.payload
            {
                packets.push(NflogPacket::from_attributes(header.res_id, &attributes)?);
            }
        }
        Ok(packets)
    }

    fn from_attributes(group: u16, attributes: &[PacketNla]) -> Result<NflogPacket> {
        let (mut hw_protocol, mut payload) = (None, None);
        let (mut indev, mut outdev, mut timestamp, mut sequence) = (None, None, None, None);
        let mut mark = 0;
        let mut prefix = String::new();
        for attribute in attributes {
            match attribute {
                PacketNla::PacketHdr(header) => hw_protocol = Some(packet_hw_protocol(header)?),
                PacketNla::Mark(value) => mark = *value,
                PacketNla::Timestamp(time) => timestamp = Some(packet_timestamp(time)?),
                PacketNla::IfIndexInDev(index) => indev = Some(*index),
                PacketNla::IfIndexOutDev(index) => outdev = Some(*index),
                PacketNla::Payload(bytes) => payload = Some(bytes),
                PacketNla::Prefix(text) => prefix = text.to_string_lossy().into_owned(),
                PacketNla::Seq(number) => sequence = Some(*number),
                _ => {}
            }
        }
        let hw_protocol =
            hw_protocol.ok_or_else(|| Error::malformed(WHAT, "no NFULA_PACKET_HDR"))?;
        let payload = payload.ok_or_else(|| {
            Error::malformed(WHAT, "no NFULA_PAYLOAD (is the copy mode \"packet\"?)")
        })?;
        let (packet, length) = ip_packet(payload)?;
        Ok(NflogPacket {
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
        })
    }
}

/// `struct nfulnl_msg_packet_hdr` begins with the big-endian hardware protocol.
fn packet_hw_protocol(header: &PacketHdr) -> Result<u16> {
    let value = value_of(header);
    value
        .get(..2)
        .ok_or("shorter than 2 bytes".into())
        .and_then(parse_u16_be)
        .map_err(|err| Error::malformed(WHAT, format!("NFULA_PACKET_HDR: {err}")))
}

/// `struct nfulnl_msg_packet_timestamp`: big-endian seconds and microseconds.
fn packet_timestamp(time: &TimeStamp) -> Result<SystemTime> {
    let value = value_of(time);
    let field = |range: std::ops::Range<usize>| {
        value
            .get(range)
            .ok_or("shorter than 16 bytes".into())
            .and_then(parse_u64_be)
            .map_err(|err| Error::malformed(WHAT, format!("NFULA_TIMESTAMP: {err}")))
    };
    let (seconds, microseconds) = (field(0..8)?, field(8..16)?);
    Duration::from_secs(seconds)
        .checked_add(Duration::from_micros(microseconds))
        .and_then(|since| SystemTime::UNIX_EPOCH.checked_add(since))
        .ok_or_else(|| Error::malformed(WHAT, "NFULA_TIMESTAMP: out of range"))
}

/// The tuple and the IP header's length of a packet as copied (possibly cut short).
fn ip_packet(bytes: &[u8]) -> Result<(Tuple, u32)> {
    let sliced = LaxSlicedPacket::from_ip(bytes)
        .map_err(|err| Error::malformed(WHAT, format!("payload: {err}")))?;
    let (src, dst, protocol, length) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                ip.payload().ip_number.0,
                u32::from(header.total_len()),
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            (
                IpAddr::from(header.source_addr()),
                IpAddr::from(header.destination_addr()),
                ip.payload().ip_number.0,
                u32::from(header.payload_length()) + IPV6_HEADER_LEN,
            )
        }
        Some(LaxNetSlice::Arp(_)) | None => {
            return Err(Error::malformed(WHAT, "the payload is not an IP packet"))
        }
    };
    let transport = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Transport::Ports {
            src: tcp.source_port(),
            dst: tcp.destination_port(),
        },
        Some(TransportSlice::Udp(udp)) => Transport::Ports {
            src: udp.source_port(),
            dst: udp.destination_port(),
        },
        Some(TransportSlice::Icmpv4(icmp)) => Transport::Icmp {
            icmp_type: icmp.type_u8(),
            code: icmp.code_u8(),
            id: match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(echo) | Icmpv4Type::EchoReply(echo) => echo.id,
                _ => 0,
            },
        },
        Some(TransportSlice::Icmpv6(icmp)) => Transport::Icmp {
            icmp_type: icmp.type_u8(),
            code: icmp.code_u8(),
            id: match icmp.icmp_type() {
                Icmpv6Type::EchoRequest(echo) | Icmpv6Type::EchoReply(echo) => echo.id,
                _ => 0,
            },
        },
        Some(TransportSlice::Igmp(_)) | None => Transport::None,
    };
    Ok((
        Tuple {
            src,
            dst,
            protocol,
            transport,
        },
        length,
    ))
}

/// The packets nftables rules log to one nflog group, in the calling thread's network
/// namespace. The group is this socket's until it is dropped; another listener on it makes
/// [`bind`](Self::bind) fail.
pub struct Nflog {
    socket: NetfilterSocket,
    group: u16,
    /// The sequence number of the last packet received.
    last_sequence: Option<u32>,
    lost: u64,
}

impl Nflog {
    /// Binds to `group`, copying at most `copy_range` bytes of each packet from its IP header
    /// on (128 holds an IPv6 header, a few extension headers and a TCP header with options;
    /// 0 copies whole packets), with a receive buffer of [`DEFAULT_RECEIVE_BUFFER`] bytes.
    pub fn bind(group: u16, copy_range: u16) -> Result<Nflog> {
        Nflog::bind_with_buffer(group, copy_range, DEFAULT_RECEIVE_BUFFER)
    }

    /// [`bind`](Self::bind) with a receive buffer of `bytes` (beyond `net.core.rmem_max` only
    /// as root or with CAP_NET_ADMIN).
    pub fn bind_with_buffer(group: u16, copy_range: u16, bytes: usize) -> Result<Nflog> {
        let action = format!("bind nflog group {group}");
        let mut socket = NetfilterSocket::open(&action)?;
        socket.enlarge_receive_buffer(bytes)?;
        let request = config_request(
            NetfilterProtoFamily::Unspec,
            group,
            vec![
                ConfigCmd::Bind.into(),
                ConfigMode::new_packet(u32::from(copy_range)).into(),
                ConfigFlags::SEQ.into(),
                Timeout::from(FLUSH_TIMEOUT).into(),
            ],
        );
        socket
            .request_acknowledged(request, &action)
            .map_err(|err| match err {
                // The kernel refuses a group bound to another socket with EPERM too.
                Error::Io { action, source, .. } if source.raw_os_error() == Some(libc::EPERM) => {
                    Error::Io {
                        action,
                        source,
                        hint: " — another program (ulogd?) listens on this group, \
                               or this one is neither root nor has CAP_NET_ADMIN",
                    }
                }
                other => other,
            })?;
        Ok(Nflog {
            socket,
            group,
            last_sequence: None,
            lost: 0,
        })
    }

    /// Waits at most `timeout` for logged packets, then returns all that are queued (up to a
    /// thousand datagrams' worth); empty if none came in time.
    pub fn recv(&mut self, timeout: Duration) -> Result<Vec<NflogPacket>> {
        let action = format!("receive from nflog group {}", self.group);
        let mut packets = Vec::new();
        if !self
            .socket
            .wait(timeout)
            .map_err(|err| Error::io(&action, err))?
        {
            return Ok(packets);
        }
        for _ in 0..MAX_DATAGRAMS_PER_RECV {
            match self
                .socket
                .receive()
                .map_err(|err| Error::io(&action, err))?
            {
                Received::Datagram => packets.extend(NflogPacket::parse(self.socket.datagram())?),
                // What the overrun dropped shows as gaps in the sequence numbers.
                Received::Overrun => {}
                Received::Empty => break,
            }
        }
        for sequence in packets.iter().filter_map(|packet| packet.sequence) {
            if let Some(last) = self.last_sequence {
                self.lost += u64::from(sequence.wrapping_sub(last).wrapping_sub(1));
            }
            self.last_sequence = Some(sequence);
        }
        Ok(packets)
    }

    /// How many packets logged to the group were lost before reaching this socket because its
    /// receive buffer was full, as far as the packets received since tell (a loss shows once
    /// a later packet arrives).
    pub fn lost(&self) -> u64 {
        self.lost
    }
}
