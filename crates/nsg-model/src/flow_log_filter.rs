//! Virtual network flow log filters: a flow log resource's `enabledFilteringCriteria` and
//! `recordTypes`, parsed as Microsoft's documentation defines them (`vnet-flow-logs-filtering`)
//! and evaluated over one flow log tuple. Pure: the REST API validates flow logs with it, and
//! whatever writes flow logs decides with it which tuples to write.
//!
//! The syntax: conditions `FIELD=VALUES` or `FIELD!=VALUES`, joined by `&&` and `||`; `&&` binds
//! tighter, there are no brackets, and the whole text is at most [`MAX_FILTER_LENGTH`]
//! characters. `VALUES` is one value or a comma-separated list; `=` holds when the tuple matches
//! any of them, `!=` when it matches none. Fields and values ignore case, and whitespace around
//! tokens is ignored. The fields ([`FilterField`]):
//!
//! - `SrcIP`, `DstIP`: addresses or CIDR ranges, IPv4 or IPv6 (`2001:db8::1/64` is the range
//!   `2001:db8::/64`, as Microsoft's example writes it).
//! - `SrcPort`, `DstPort`: ports or ranges `A-B`.
//! - `Protocol`: `TCP`, `UDP`, `ICMP` (ICMPv4 and ICMPv6), `ESP`, `AH`, or an IP protocol number.
//! - `Direction`: `Inbound`, `Outbound`.
//! - `Encryption`: the encryption states of the log format (`X`, `NX`, `NX_HW_NOT_SUPPORTED`, …)
//!   and `NX_ALL`, any state but `X`.
//! - `RecordTypes`: flow states `B`, `C`, `E`, `D`.
//! - `Action`: `Allow` (states `B`, `C`, `E`) or `Deny` (state `D`); named by the REST API's
//!   description of the property though not by the filtering page.

use crate::rule::{Access, Direction, PortRange, Protocol};
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// The longest filter Azure accepts, in characters.
pub const MAX_FILTER_LENGTH: usize = 1000;

/// A flow's state in a flow log tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// `B`: the flow began.
    Begin,
    /// `C`: the flow goes on (written every five minutes).
    Continue,
    /// `E`: the flow ended.
    End,
    /// `D`: the flow was denied.
    Deny,
}

impl FlowState {
    pub const ALL: [FlowState; 4] = [
        FlowState::Begin,
        FlowState::Continue,
        FlowState::End,
        FlowState::Deny,
    ];

    /// The state's letter in a tuple, either case.
    pub fn from_letter(letter: char) -> Option<FlowState> {
        FlowState::ALL
            .into_iter()
            .find(|s| s.letter().eq_ignore_ascii_case(&letter))
    }

    pub fn letter(self) -> char {
        match self {
            FlowState::Begin => 'B',
            FlowState::Continue => 'C',
            FlowState::End => 'E',
            FlowState::Deny => 'D',
        }
    }

    fn parse(text: &str) -> Option<FlowState> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(letter), None) => FlowState::from_letter(letter),
            _ => None,
        }
    }
}

/// A tuple's encryption state, as virtual network flow logs write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encryption {
    /// `X`: encrypted.
    Encrypted,
    /// `NX`: not encrypted (encryption not configured). What OpenNSG, which encrypts nothing,
    /// always writes.
    Unencrypted,
    /// `NX_HW_NOT_SUPPORTED`.
    HardwareNotSupported,
    /// `NX_SW_NOT_READY`.
    SoftwareNotReady,
    /// `NX_NOT_ACCEPTED`.
    NotAccepted,
    /// `NX_NOT_SUPPORTED`.
    NotSupported,
    /// `NX_LOCAL_DST`.
    LocalDestination,
    /// `NX_FALLBACK`.
    Fallback,
}

impl Encryption {
    pub const ALL: [Encryption; 8] = [
        Encryption::Encrypted,
        Encryption::Unencrypted,
        Encryption::HardwareNotSupported,
        Encryption::SoftwareNotReady,
        Encryption::NotAccepted,
        Encryption::NotSupported,
        Encryption::LocalDestination,
        Encryption::Fallback,
    ];

    /// The state as a tuple writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Encrypted => "X",
            Encryption::Unencrypted => "NX",
            Encryption::HardwareNotSupported => "NX_HW_NOT_SUPPORTED",
            Encryption::SoftwareNotReady => "NX_SW_NOT_READY",
            Encryption::NotAccepted => "NX_NOT_ACCEPTED",
            Encryption::NotSupported => "NX_NOT_SUPPORTED",
            Encryption::LocalDestination => "NX_LOCAL_DST",
            Encryption::Fallback => "NX_FALLBACK",
        }
    }

    /// Reads a state, ignoring case.
    pub fn parse(text: &str) -> Option<Encryption> {
        Encryption::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(text))
    }
}

/// What a filter is evaluated over: the fields of one flow log tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterTuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// The IP protocol number (6 TCP, 17 UDP, …).
    pub protocol: u8,
    pub direction: Direction,
    pub state: FlowState,
    pub encryption: Encryption,
}

/// The fields a condition can test, spelled as Microsoft's documentation spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterField {
    Direction,
    SrcIp,
    SrcPort,
    DstIp,
    DstPort,
    Protocol,
    Encryption,
    RecordTypes,
    Action,
}

impl FilterField {
    pub const ALL: [FilterField; 9] = [
        FilterField::Direction,
        FilterField::SrcIp,
        FilterField::SrcPort,
        FilterField::DstIp,
        FilterField::DstPort,
        FilterField::Protocol,
        FilterField::Encryption,
        FilterField::RecordTypes,
        FilterField::Action,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FilterField::Direction => "Direction",
            FilterField::SrcIp => "SrcIP",
            FilterField::SrcPort => "SrcPort",
            FilterField::DstIp => "DstIP",
            FilterField::DstPort => "DstPort",
            FilterField::Protocol => "Protocol",
            FilterField::Encryption => "Encryption",
            FilterField::RecordTypes => "RecordTypes",
            FilterField::Action => "Action",
        }
    }

    fn parse(text: &str) -> Option<FilterField> {
        FilterField::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(text))
    }

    /// What a value of this field looks like, for error messages.
    fn expected(self) -> &'static str {
        match self {
            FilterField::Direction => "Inbound or Outbound",
            FilterField::SrcIp | FilterField::DstIp => "an IPv4 or IPv6 address or CIDR range",
            FilterField::SrcPort | FilterField::DstPort => "a port 0-65535 or a range A-B",
            FilterField::Protocol => "TCP, UDP, ICMP, ESP, AH or a protocol number 0-255",
            FilterField::Encryption => {
                "X, NX, NX_HW_NOT_SUPPORTED, NX_SW_NOT_READY, NX_NOT_ACCEPTED, NX_NOT_SUPPORTED, NX_LOCAL_DST, NX_FALLBACK or NX_ALL"
            }
            FilterField::RecordTypes => "B, C, E or D",
            FilterField::Action => "Allow or Deny",
        }
    }
}

impl fmt::Display for FilterField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a filter (or a `recordTypes` value) cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("the filter is empty")]
    Empty,
    #[error("the filter is {length} characters long; at most {MAX_FILTER_LENGTH} are allowed")]
    TooLong { length: usize },
    #[error("brackets are not supported in filters; '&&' binds tighter than '||'")]
    Brackets,
    #[error("condition {number} is empty: '&&' and '||' join two conditions")]
    EmptyCondition { number: usize },
    #[error("'{condition}' has no operator: write FIELD=VALUES or FIELD!=VALUES")]
    MissingOperator { condition: String },
    #[error("unknown field '{field}' (the fields are Direction, SrcIP, SrcPort, DstIP, DstPort, Protocol, Encryption, RecordTypes and Action)")]
    UnknownField { field: String },
    #[error("{field} has an empty value in '{condition}'")]
    EmptyValue {
        field: FilterField,
        condition: String,
    },
    #[error("'{value}' is not a {field} value: expected {}", .field.expected())]
    InvalidValue { field: FilterField, value: String },
}

/// A parsed `enabledFilteringCriteria`: alternatives (`||`) of conjunctions (`&&`) of
/// conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogFilter {
    alternatives: Vec<Vec<Condition>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Condition {
    negated: bool,
    test: Test,
}

/// One field and the values a condition lists for it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    Direction(Vec<Direction>),
    SrcIp(Vec<IpNet>),
    DstIp(Vec<IpNet>),
    SrcPort(Vec<PortRange>),
    DstPort(Vec<PortRange>),
    Protocol(Vec<ProtocolValue>),
    Encryption(Vec<EncryptionValue>),
    RecordTypes(Vec<FlowState>),
    Action(Vec<Access>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProtocolValue {
    Named(Protocol),
    Number(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EncryptionValue {
    Exactly(Encryption),
    /// `NX_ALL`: not encrypted, for any reason.
    AnyUnencrypted,
}

impl FlowLogFilter {
    /// Parses a filter; see the module documentation for the syntax.
    pub fn parse(text: &str) -> Result<FlowLogFilter, FilterError> {
        let length = text.chars().count();
        if length > MAX_FILTER_LENGTH {
            return Err(FilterError::TooLong { length });
        }
        if text.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        if text.contains(['(', ')']) {
            return Err(FilterError::Brackets);
        }
        let mut number = 0;
        let mut alternatives = Vec::new();
        for alternative in text.split("||") {
            let mut conjunction = Vec::new();
            for condition in alternative.split("&&") {
                number += 1;
                conjunction.push(Condition::parse(condition.trim(), number)?);
            }
            alternatives.push(conjunction);
        }
        Ok(FlowLogFilter { alternatives })
    }

    /// Whether the filter keeps `tuple`.
    pub fn matches(&self, tuple: &FilterTuple) -> bool {
        self.alternatives
            .iter()
            .any(|conjunction| conjunction.iter().all(|c| c.matches(tuple)))
    }
}

impl Condition {
    fn parse(text: &str, number: usize) -> Result<Condition, FilterError> {
        if text.is_empty() {
            return Err(FilterError::EmptyCondition { number });
        }
        let (field, negated, values) = match text.find('=') {
            Some(at) if text[..at].ends_with('!') => (&text[..at - 1], true, &text[at + 1..]),
            Some(at) => (&text[..at], false, &text[at + 1..]),
            None => {
                return Err(FilterError::MissingOperator {
                    condition: text.to_string(),
                })
            }
        };
        let field = field.trim();
        let field = FilterField::parse(field).ok_or_else(|| FilterError::UnknownField {
            field: field.to_string(),
        })?;
        let mut tokens = Vec::new();
        for token in values.split(',').map(str::trim) {
            if token.is_empty() {
                return Err(FilterError::EmptyValue {
                    field,
                    condition: text.to_string(),
                });
            }
            tokens.push(token);
        }
        Ok(Condition {
            negated,
            test: Test::parse(field, &tokens)?,
        })
    }

    fn matches(&self, tuple: &FilterTuple) -> bool {
        self.test.hits(tuple) != self.negated
    }
}

impl Test {
    fn parse(field: FilterField, tokens: &[&str]) -> Result<Test, FilterError> {
        fn each<T>(
            field: FilterField,
            tokens: &[&str],
            read: impl Fn(&str) -> Option<T>,
        ) -> Result<Vec<T>, FilterError> {
            tokens
                .iter()
                .map(|token| {
                    read(token).ok_or_else(|| FilterError::InvalidValue {
                        field,
                        value: token.to_string(),
                    })
                })
                .collect()
        }
        Ok(match field {
            FilterField::Direction => Test::Direction(each(field, tokens, Direction::parse)?),
            FilterField::SrcIp => Test::SrcIp(each(field, tokens, address_range)?),
            FilterField::DstIp => Test::DstIp(each(field, tokens, address_range)?),
            FilterField::SrcPort => Test::SrcPort(each(field, tokens, PortRange::parse)?),
            FilterField::DstPort => Test::DstPort(each(field, tokens, PortRange::parse)?),
            FilterField::Protocol => Test::Protocol(each(field, tokens, protocol)?),
            FilterField::Encryption => Test::Encryption(each(field, tokens, encryption)?),
            FilterField::RecordTypes => Test::RecordTypes(each(field, tokens, FlowState::parse)?),
            FilterField::Action => Test::Action(each(field, tokens, Access::parse)?),
        })
    }

    /// Whether `tuple` matches any of the listed values.
    fn hits(&self, tuple: &FilterTuple) -> bool {
        match self {
            Test::Direction(values) => values.contains(&tuple.direction),
            Test::SrcIp(nets) => nets.iter().any(|n| n.contains(&tuple.src)),
            Test::DstIp(nets) => nets.iter().any(|n| n.contains(&tuple.dst)),
            Test::SrcPort(ranges) => ranges.iter().any(|r| r.contains(tuple.src_port)),
            Test::DstPort(ranges) => ranges.iter().any(|r| r.contains(tuple.dst_port)),
            Test::Protocol(values) => values.iter().any(|p| match p {
                ProtocolValue::Named(name) => name.matches(tuple.protocol),
                ProtocolValue::Number(number) => *number == tuple.protocol,
            }),
            Test::Encryption(values) => values.iter().any(|e| match e {
                EncryptionValue::Exactly(state) => *state == tuple.encryption,
                EncryptionValue::AnyUnencrypted => tuple.encryption != Encryption::Encrypted,
            }),
            Test::RecordTypes(states) => states.contains(&tuple.state),
            Test::Action(actions) => actions.contains(&match tuple.state {
                FlowState::Deny => Access::Deny,
                _ => Access::Allow,
            }),
        }
    }
}

/// An address (a host range) or a CIDR range; host bits are ignored.
fn address_range(text: &str) -> Option<IpNet> {
    match text.parse::<IpAddr>() {
        Ok(address) => Some(IpNet::from(address)),
        Err(_) => text.parse::<IpNet>().ok().map(|net| net.trunc()),
    }
}

fn protocol(text: &str) -> Option<ProtocolValue> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(ProtocolValue::Number);
    }
    Protocol::parse(text)
        .filter(|p| *p != Protocol::Any)
        .map(ProtocolValue::Named)
}

fn encryption(text: &str) -> Option<EncryptionValue> {
    if text.eq_ignore_ascii_case("NX_ALL") {
        return Some(EncryptionValue::AnyUnencrypted);
    }
    Encryption::parse(text).map(EncryptionValue::Exactly)
}

/// A parsed `recordTypes`: the flow states a flow log writes, a comma-separated subset of
/// `B,C,E,D` (either case, whitespace around letters ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordTypes {
    /// Indexed like [`FlowState::ALL`].
    kept: [bool; 4],
}

impl RecordTypes {
    pub fn parse(text: &str) -> Result<RecordTypes, FilterError> {
        if text.trim().is_empty() {
            return Err(FilterError::Empty);
        }
        let mut kept = [false; 4];
        for token in text.split(',').map(str::trim) {
            let state = FlowState::parse(token).ok_or_else(|| FilterError::InvalidValue {
                field: FilterField::RecordTypes,
                value: token.to_string(),
            })?;
            kept[state as usize] = true;
        }
        Ok(RecordTypes { kept })
    }

    /// Whether tuples in `state` are written.
    pub fn contains(&self, state: FlowState) -> bool {
        self.kept[state as usize]
    }
}
