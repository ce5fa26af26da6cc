//! Typed security rules: the validated form of [`crate::arm::SecurityRule`].

use crate::id::ResourceId;
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn parse(text: &str) -> Option<Direction> {
        match text.to_ascii_lowercase().as_str() {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    Allow,
    Deny,
}

impl Access {
    pub fn parse(text: &str) -> Option<Access> {
        match text.to_ascii_lowercase().as_str() {
            "allow" => Some(Access::Allow),
            "deny" => Some(Access::Deny),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allow => "Allow",
            Access::Deny => "Deny",
        }
    }
}

/// IP protocol numbers the rule protocols stand for.
pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
}

/// A rule's protocol. `Any` is written `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
    Esp,
    Ah,
}

impl Protocol {
    /// Parses Azure's enum value, ignoring case as the service does.
    pub fn parse(text: &str) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "*" => Some(Protocol::Any),
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            "icmp" => Some(Protocol::Icmp),
            "esp" => Some(Protocol::Esp),
            "ah" => Some(Protocol::Ah),
            _ => None,
        }
    }

    /// Azure's canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Any => "*",
            Protocol::Tcp => "Tcp",
            Protocol::Udp => "Udp",
            Protocol::Icmp => "Icmp",
            Protocol::Esp => "Esp",
            Protocol::Ah => "Ah",
        }
    }

    /// Whether a packet of IP protocol `number` is of this rule protocol. `Icmp` covers ICMPv4
    /// and ICMPv6 (docs/semantics.md).
    pub fn matches(self, number: u8) -> bool {
        match self {
            Protocol::Any => true,
            Protocol::Tcp => number == ip_proto::TCP,
            Protocol::Udp => number == ip_proto::UDP,
            Protocol::Icmp => number == ip_proto::ICMP || number == ip_proto::ICMPV6,
            Protocol::Esp => number == ip_proto::ESP,
            Protocol::Ah => number == ip_proto::AH,
        }
    }
}

/// A protocol number as people write it: `TCP`, `ICMPv6`, or the number.
pub fn protocol_name(number: u8) -> String {
    match number {
        ip_proto::ICMP => "ICMP".into(),
        ip_proto::TCP => "TCP".into(),
        ip_proto::UDP => "UDP".into(),
        ip_proto::ESP => "ESP".into(),
        ip_proto::AH => "AH".into(),
        ip_proto::ICMPV6 => "ICMPv6".into(),
        other => format!("protocol {other}"),
    }
}

/// Whether packets of IP protocol `number` carry ports NSG rules compare (TCP and UDP only).
pub fn protocol_has_ports(number: u8) -> bool {
    number == ip_proto::TCP || number == ip_proto::UDP
}

/// Whether `ranges` together cover every port 0–65535.
pub fn covers_all_ports(ranges: &[PortRange]) -> bool {
    covers_ports(ranges, PortRange::ALL)
}

/// Whether `ranges` together cover every port of `asked`.
pub fn covers_ports(ranges: &[PortRange], asked: PortRange) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut next = u32::from(asked.low);
    for r in sorted {
        if u32::from(r.high) < next {
            continue;
        }
        if u32::from(r.low) > next {
            break;
        }
        next = u32::from(r.high) + 1;
    }
    next > u32::from(asked.high)
}

/// An inclusive port range; a single port `N` is `N-N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub const ALL: PortRange = PortRange {
        low: 0,
        high: u16::MAX,
    };

    /// Parses `N` or `A-B` (0–65535, A ≤ B). `*` is not a range; callers handle it.
    pub fn parse(text: &str) -> Option<PortRange> {
        fn port(s: &str) -> Option<u16> {
            if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        }
        let (low, high) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        (low <= high).then_some(PortRange { low, high })
    }

    pub fn contains(self, port: u16) -> bool {
        self.low <= port && port <= self.high
    }
}

/// The ports of one side of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ports {
    /// `*`.
    Any,
    /// One range in the singular field, or the plural list (`plural`), as written.
    Ranges {
        ranges: Vec<PortRange>,
        plural: bool,
    },
}

impl Ports {
    pub fn contains(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::Ranges { ranges, .. } => ranges.iter().any(|r| r.contains(port)),
        }
    }

    /// Whether every port 0–65535 is covered (`*`, `0-65535`, or lists that add up to it).
    pub fn is_full(&self) -> bool {
        match self {
            Ports::Any => true,
            Ports::Ranges { ranges, .. } => covers_all_ports(ranges),
        }
    }

    /// The ranges this side covers (`*` is `0-65535`).
    pub fn ranges(&self) -> Vec<PortRange> {
        match self {
            Ports::Any => vec![PortRange::ALL],
            Ports::Ranges { ranges, .. } => ranges.clone(),
        }
    }
}

/// The addresses of one side of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// `*`: every IPv4 and IPv6 address.
    Any,
    /// A service tag, as written (`Internet`, `Storage.WestEurope`, `VIRTUAL_NETWORK`, …).
    Tag(String),
    /// Addresses and CIDRs; single addresses are host prefixes. `plural` tells which field held them.
    Prefixes { nets: Vec<IpNet>, plural: bool },
    /// Application security groups: the addresses of their member IP configurations.
    ApplicationSecurityGroups(Vec<ResourceId>),
}

/// What one address token of a rule is, before tags are checked against a catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressToken {
    Any,
    Net(IpNet),
    Tag(String),
}

/// Why an address token is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressTokenError {
    /// A CIDR with host bits set, e.g. `50.206.209.68/27`; carries the canonical form.
    NotCanonical(IpNet),
    /// Neither an address, a CIDR, `*`, nor something shaped like a tag name.
    Malformed,
}

impl AddressToken {
    pub fn parse(text: &str) -> Result<AddressToken, AddressTokenError> {
        if text == "*" {
            return Ok(AddressToken::Any);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(AddressToken::Net(IpNet::from(ip)));
        }
        if let Ok(net) = text.parse::<IpNet>() {
            return if net.trunc() == net {
                Ok(AddressToken::Net(net))
            } else {
                Err(AddressTokenError::NotCanonical(net.trunc()))
            };
        }
        // Tag names are letters, digits, '.', '_' and '-'; anything with ':' or '/' that failed to
        // parse as an address is a broken address, not a tag.
        let tag_shaped = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && text.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        if tag_shaped {
            Ok(AddressToken::Tag(text.to_string()))
        } else {
            Err(AddressTokenError::Malformed)
        }
    }
}

/// Whether a rule is one of the user's or one of the six Azure generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    Custom,
    Default,
}

impl RuleKind {
    /// The collection name Azure uses in rule references: `securityRules/NAME`.
    pub fn collection(self) -> &'static str {
        match self {
            RuleKind::Custom => "securityRules",
            RuleKind::Default => "defaultSecurityRules",
        }
    }
}

/// A validated security rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub priority: u16,
    pub direction: Direction,
    pub access: Access,
    pub protocol: Protocol,
    pub source: Addresses,
    pub source_ports: Ports,
    pub destination: Addresses,
    pub destination_ports: Ports,
    pub description: Option<String>,
}

impl Rule {
    /// `securityRules/NAME` or `defaultSecurityRules/NAME`, as IP flow verify reports it.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.collection(), self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("80"),
            Some(PortRange { low: 80, high: 80 })
        );
        assert_eq!(PortRange::parse("0-65535"), Some(PortRange::ALL));
        for bad in [
            "", "-", "1-", "-1", "80-70", "65536", "636, 389", " 80", "+80", "1-2-3", "*",
        ] {
            assert_eq!(PortRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ports_full_coverage() {
        let r = |l, h| PortRange { low: l, high: h };
        let plural = |ranges| Ports::Ranges {
            ranges,
            plural: true,
        };
        assert!(Ports::Any.is_full());
        assert!(plural(vec![r(1000, 65535), r(0, 999)]).is_full());
        assert!(!plural(vec![r(0, 998), r(1000, 65535)]).is_full());
        assert!(!plural(vec![r(0, 65534)]).is_full());
    }

    #[test]
    fn address_tokens() {
        assert_eq!(AddressToken::parse("*"), Ok(AddressToken::Any));
        assert_eq!(
            AddressToken::parse("10.0.0.1"),
            Ok(AddressToken::Net("10.0.0.1/32".parse().unwrap()))
        );
        assert_eq!(
            AddressToken::parse("50.206.209.68/27"),
            Err(AddressTokenError::NotCanonical(
                "50.206.209.64/27".parse().unwrap()
            ))
        );
        assert_eq!(
            AddressToken::parse("Storage.WestEurope"),
            Ok(AddressToken::Tag("Storage.WestEurope".into()))
        );
        for bad in [
            "10.0.0.300",
            "10.0.0.0/33",
            "fe80::/129",
            "",
            "1.2.3.4/",
            "::g",
        ] {
            assert_eq!(
                AddressToken::parse(bad),
                Err(AddressTokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn protocols_match_numbers() {
        assert!(Protocol::Icmp.matches(ip_proto::ICMPV6));
        assert!(Protocol::Any.matches(47));
        assert!(!Protocol::Tcp.matches(ip_proto::UDP));
        assert_eq!(Protocol::parse("TCP"), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse("Any"), None, "the API spells any as *");
    }
}
