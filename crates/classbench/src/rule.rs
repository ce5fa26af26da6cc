//! The rule and header types shared by the parser, the generators and the reference matcher.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The full port range, `0 : 65535`.
pub const ALL_PORTS: (u16, u16) = (0, u16::MAX);

/// One ClassBench filter.
///
/// Prefixes produced by [`parse`](crate::parse) and [`generate`](crate::generate) are always
/// canonical (host bits zero). Port ranges are inclusive and always have `lo <= hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Source prefix.
    pub src: Ipv4Net,
    /// Destination prefix.
    pub dst: Ipv4Net,
    /// Inclusive source port range `(lo, hi)`.
    pub src_ports: (u16, u16),
    /// Inclusive destination port range `(lo, hi)`.
    pub dst_ports: (u16, u16),
    /// IP protocol number; `None` = any protocol (ClassBench `0x00/0x00`).
    pub protocol: Option<u8>,
    /// TCP flags `(value, mask)` as written in the file; kept for round trips, not used by NSG
    /// classification nor by [`Rule::matches`].
    pub flags: (u16, u16),
}

impl Rule {
    /// The full wildcard: any source, any destination, all ports, any protocol.
    pub fn wildcard() -> Self {
        let any = Ipv4Net::default(); // 0.0.0.0/0
        Rule {
            src: any,
            dst: any,
            src_ports: ALL_PORTS,
            dst_ports: ALL_PORTS,
            protocol: None,
            flags: (0, 0),
        }
    }

    /// Whether the header falls inside this rule: both addresses in their prefixes, both ports in
    /// their ranges, and the protocol equal (or the rule's protocol is any). Flags are ignored.
    pub fn matches(&self, h: &Header) -> bool {
        self.src.contains(&h.src)
            && self.dst.contains(&h.dst)
            && in_range(self.src_ports, h.src_port)
            && in_range(self.dst_ports, h.dst_port)
            && self.protocol.is_none_or(|p| p == h.protocol)
    }
}

fn in_range((lo, hi): (u16, u16), port: u16) -> bool {
    lo <= port && port <= hi
}

/// A packet header (5-tuple), as in a ClassBench trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
}

/// The naive reference classifier: the index of the first (highest-priority) rule that
/// [matches](Rule::matches) the header, by linear scan.
pub fn first_match(rules: &[Rule], h: &Header) -> Option<usize> {
    rules.iter().position(|r| r.matches(h))
}

/// The port range classes that ClassBench's seed files and generator use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortClass {
    /// Wildcard, `0 : 65535`.
    Wc,
    /// High ports, `1024 : 65535`.
    Hi,
    /// Low ports, `0 : 1023`.
    Lo,
    /// Exact match, `p : p`.
    Em,
    /// Any other (arbitrary) range.
    Ar,
}

impl PortClass {
    /// All classes, in ClassBench's order.
    pub const ALL: [PortClass; 5] = [
        PortClass::Wc,
        PortClass::Hi,
        PortClass::Lo,
        PortClass::Em,
        PortClass::Ar,
    ];

    /// The class of an inclusive range.
    pub fn of(range: (u16, u16)) -> PortClass {
        match range {
            (0, 65535) => PortClass::Wc,
            (1024, 65535) => PortClass::Hi,
            (0, 1023) => PortClass::Lo,
            (lo, hi) if lo == hi => PortClass::Em,
            _ => PortClass::Ar,
        }
    }

    /// ClassBench's two-letter name.
    pub fn name(self) -> &'static str {
        match self {
            PortClass::Wc => "WC",
            PortClass::Hi => "HI",
            PortClass::Lo => "LO",
            PortClass::Em => "EM",
            PortClass::Ar => "AR",
        }
    }
}

impl fmt::Display for PortClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
