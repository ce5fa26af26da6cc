//! What the data plane knows of one IP packet, and of time. Captures and the kernel path produce
//! these; the flow table consumes them. Time is a value passed in (invariant 2): nothing here reads
//! a clock.

use std::net::IpAddr;

/// A point in time: microseconds since the Unix epoch, as captures record it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    pub const fn from_secs(secs: u64) -> Time {
        Time(secs * 1_000_000)
    }
    pub const fn micros(self) -> u64 {
        self.0
    }
    /// Whole seconds since the epoch, as flow log tuples carry them.
    pub const fn secs(self) -> u64 {
        self.0 / 1_000_000
    }
    pub const fn plus_secs(self, secs: u64) -> Time {
        Time(self.0 + secs * 1_000_000)
    }
    /// Seconds from `earlier` to `self` (0 if `earlier` is later).
    pub const fn secs_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0) / 1_000_000
    }
}

/// The TCP flags the flow table follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// ICMP and ICMPv6 messages the flow table tracks: echo requests and replies carry an identifier
/// that makes them a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpKind {
    EchoRequest {
        id: u16,
    },
    EchoReply {
        id: u16,
    },
    /// Any other message (errors, router advertisements, …): no flow identity.
    Other {
        icmp_type: u8,
        code: u8,
    },
}

/// One IP packet, reduced to what NSGs look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketMeta {
    pub time: Time,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, …).
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports, for TCP and UDP.
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Flags, for TCP.
    pub tcp_flags: Option<TcpFlags>,
    /// Message kind, for ICMP and ICMPv6.
    pub icmp: Option<IcmpKind>,
    /// Bytes of the IP packet, headers included (what flow logs count).
    pub length: u32,
}
