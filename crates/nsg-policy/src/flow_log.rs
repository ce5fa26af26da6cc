//! NSG flow logs, version 2 (reference §6.2): the tuples, the records and the `{"records":[…]}`
//! document Azure writes to storage, and a strict checker of that format.
//!
//! The flow table (or a replay) produces [`FlowLogEvent`]s — one per tuple: a flow began, is
//! continuing, or ended. A [`FlowLogBuilder`] groups them the way Azure does:
//!
//! * one record per NSG per minute (bucket `floor(time.secs() / 60)`);
//! * inside a record, one `flows` entry per rule label, ordered by first appearance;
//! * inside that, one entry per MAC address, ordered by first appearance;
//! * tuples in the order the events were pushed.
//!
//! Records are ordered by (minute, `resourceId`), `resourceId` being the upper-cased NSG id the
//! record carries; NSG ids that differ only in case are the same NSG (ARM compares them so).
//!
//! Decisions that the reference leaves open:
//!
//! * Record `time` ("Time in UTC when the event was logged") is the **end of the minute bucket**,
//!   `(bucket + 1) × 60` seconds, written as `YYYY-MM-DDTHH:MM:SS.0000000Z`. It does not depend on
//!   the order events arrive in, is never earlier than any tuple of the record, and strictly
//!   increases from one record of an NSG to the next.
//! * `systemId` is the NSG's `resourceGuid` when an event carries a well-formed one (the first such
//!   event of the NSG wins). Otherwise it is [`derived_system_id`]: a name-based UUID (version 8,
//!   RFC 9562 "custom") whose 122 free bits come from the 128-bit FNV-1a hash of the upper-cased
//!   NSG id — stable across runs and platforms, the same for every spelling of the id.
//! * MAC addresses are normalised by [`normalise_mac`]; an event whose MAC is not a MAC is **not
//!   logged** and is counted (Azure files name the MAC in the blob path, and a raw value would make
//!   the document fail [`check_v2_document`]).
//! * Only TCP and UDP are representable in v2; other protocols are counted and not logged. So are
//!   events whose `nsg` is not an NSG id, whose rule name is empty, or whose time is beyond
//!   9999-12-31 (RFC 3339 years have four digits). See [`SkipReason`]; the builder's output always
//!   passes [`check_v2_document`].
//! * Counters of a `B` tuple are always empty, even if the event carries some; a `C` or `E` event
//!   without counters is written with zero deltas (`0,0,0,0`).
//! * Rule names longer than 65 characters are truncated to 65 characters ("might be truncated").

use crate::packet::Time;
use nsg_model::id::types;
use nsg_model::rule::{ip_proto, Access, Direction, RuleKind};
use nsg_model::ResourceId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// `category` of every record.
pub const CATEGORY: &str = "NetworkSecurityGroupFlowEvent";
/// `operationName` of every record.
pub const OPERATION_NAME: &str = "NetworkSecurityGroupFlowEvents";
/// `properties.Version` of the format produced here.
pub const VERSION: u64 = 2;
/// Rule names longer than this are truncated in rule labels.
pub const MAX_RULE_NAME_CHARS: usize = 65;
/// Fields of a version 2 tuple.
pub const V2_TUPLE_FIELDS: usize = 13;

/// 9999-12-31T23:59:59Z: the last instant an RFC 3339 timestamp (four-digit year) can name.
const LAST_RFC3339_SECS: u64 = 253_402_300_799;
const SECS_PER_MINUTE: u64 = 60;

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

/// Flow state of a version 2 tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// `B`: the flow was created. No statistics.
    Begin,
    /// `C`: the flow is ongoing; statistics since the previous tuple of the flow.
    Continuing,
    /// `E`: the flow ended; statistics since the previous tuple of the flow.
    End,
}

impl FlowState {
    pub fn letter(self) -> char {
        match self {
            FlowState::Begin => 'B',
            FlowState::Continuing => 'C',
            FlowState::End => 'E',
        }
    }
    pub fn from_letter(letter: char) -> Option<FlowState> {
        match letter {
            'B' => Some(FlowState::Begin),
            'C' => Some(FlowState::Continuing),
            'E' => Some(FlowState::End),
            _ => None,
        }
    }
}

/// Throughput of a flow since its previous tuple (deltas, not totals). "Sent" is the tuple's
/// source → destination; "received" is destination → source. Bytes count whole IP packets,
/// headers included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowCounters {
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
}

/// One flow log tuple to be written: what the flow table reports when a flow begins, at a
/// statistics interval, or when it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogEvent {
    /// The tuple's timestamp (written as whole epoch seconds).
    pub time: Time,
    /// The NSG that logs the flow: the one that denied it, or the last one that allowed it.
    pub nsg: ResourceId,
    /// The NSG's `resourceGuid`, written as `systemId`; see [`derived_system_id`] for `None`.
    pub nsg_guid: Option<String>,
    pub rule_kind: RuleKind,
    /// The rule's name, without prefix; see [`rule_label`].
    pub rule_name: String,
    /// The NIC's MAC address, in any form [`normalise_mac`] accepts.
    pub mac: String,
    /// The packet's source and destination (for inbound flows remote → local).
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number; only 6 (TCP) and 17 (UDP) are representable in version 2.
    pub protocol: u8,
    pub direction: Direction,
    pub access: Access,
    pub state: FlowState,
    /// `None` for `B` (empty fields); deltas for `C` and `E`.
    pub counters: Option<FlowCounters>,
}

/// Why an event is not logged. [`FlowLogBuilder::skipped`] counts them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Not TCP or UDP: version 2 tuples cannot say ICMP, ESP, AH, ….
    UnsupportedProtocol,
    /// The MAC address is not 12 hex digits (optionally separated by `-` or `:`).
    InvalidMac,
    /// `nsg` is not a `Microsoft.Network/networkSecurityGroups` id.
    NotAnNsg,
    /// The rule name is empty.
    EmptyRuleName,
    /// The time is too late for a four-digit-year record `time`.
    TimeOutOfRange,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::UnsupportedProtocol,
        SkipReason::InvalidMac,
        SkipReason::NotAnNsg,
        SkipReason::EmptyRuleName,
        SkipReason::TimeOutOfRange,
    ];
    fn index(self) -> usize {
        match self {
            SkipReason::UnsupportedProtocol => 0,
            SkipReason::InvalidMac => 1,
            SkipReason::NotAnNsg => 2,
            SkipReason::EmptyRuleName => 3,
            SkipReason::TimeOutOfRange => 4,
        }
    }
}

impl FlowLogEvent {
    /// Whether the event can be written as a version 2 tuple, and if not why. Checks in the order
    /// of [`SkipReason`]'s variants; the first failing one is reported.
    pub fn loggable(&self) -> Result<(), SkipReason> {
        if protocol_letter(self.protocol).is_none() {
            return Err(SkipReason::UnsupportedProtocol);
        }
        if normalise_mac(&self.mac).is_none() {
            return Err(SkipReason::InvalidMac);
        }
        if !self.nsg.is_type(types::NETWORK_SECURITY_GROUP) {
            return Err(SkipReason::NotAnNsg);
        }
        if self.rule_name.is_empty() {
            return Err(SkipReason::EmptyRuleName);
        }
        if bucket_end_secs(minute_bucket(self.time)) > LAST_RFC3339_SECS {
            return Err(SkipReason::TimeOutOfRange);
        }
        Ok(())
    }
}

fn protocol_letter(protocol: u8) -> Option<char> {
    match protocol {
        ip_proto::TCP => Some('T'),
        ip_proto::UDP => Some('U'),
        _ => None,
    }
}

fn minute_bucket(time: Time) -> u64 {
    time.secs() / SECS_PER_MINUTE
}

fn bucket_end_secs(bucket: u64) -> u64 {
    // `Time` holds microseconds in a u64, so buckets are far below u64::MAX / 60.
    (bucket + 1) * SECS_PER_MINUTE
}

// ---------------------------------------------------------------------------------------------
// Labels, MACs, tuples
// ---------------------------------------------------------------------------------------------

/// The rule as flow logs name it: `UserRule_NAME` for custom rules, `DefaultRule_NAME` for the
/// default ones. Names longer than 65 characters are truncated to 65 characters.
pub fn rule_label(kind: RuleKind, name: &str) -> String {
    let prefix = match kind {
        RuleKind::Custom => "UserRule_",
        RuleKind::Default => "DefaultRule_",
    };
    let truncated = match name.char_indices().nth(MAX_RULE_NAME_CHARS) {
        Some((end, _)) => &name[..end],
        None => name,
    };
    format!("{prefix}{truncated}")
}

/// A MAC address as flow logs write it: 12 upper-case hex digits without separators
/// (`000D3A1BC721`). Accepts `00-0D-3A-1B-C7-21`, `00:0d:3a:1b:c7:21` and `000d3a1bc721` (any
/// case); the separator, if any, must be the same throughout and sit between every pair of
/// digits. Anything else is `None`.
pub fn normalise_mac(mac: &str) -> Option<String> {
    let bytes = mac.as_bytes();
    let digits: Vec<u8> = match bytes.len() {
        12 => bytes.to_vec(),
        17 => {
            let sep = bytes[2];
            if sep != b'-' && sep != b':' {
                return None;
            }
            let mut digits = Vec::with_capacity(12);
            for (i, &b) in bytes.iter().enumerate() {
                if i % 3 == 2 {
                    if b != sep {
                        return None;
                    }
                } else {
                    digits.push(b);
                }
            }
            digits
        }
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Some(
        digits
            .iter()
            .map(|b| char::from(b.to_ascii_uppercase()))
            .collect(),
    )
}

/// The version 2 tuple of an event:
/// `time,src,dst,sport,dport,T|U,I|O,A|D,B|C|E,packets sent,bytes sent,packets received,bytes received`,
/// e.g. `1493763938,185.170.185.105,10.2.0.4,35370,23,T,I,A,B,,,,`. `None` for protocols other
/// than TCP and UDP. Counters are empty for `B`; for `C` and `E` missing counters are zeros.
pub fn format_tuple(e: &FlowLogEvent) -> Option<String> {
    let protocol = protocol_letter(e.protocol)?;
    let direction = match e.direction {
        Direction::Inbound => 'I',
        Direction::Outbound => 'O',
    };
    let access = match e.access {
        Access::Allow => 'A',
        Access::Deny => 'D',
    };
    let counters = match e.state {
        FlowState::Begin => ",,,".to_string(),
        FlowState::Continuing | FlowState::End => {
            let c = e.counters.unwrap_or_default();
            format!(
                "{},{},{},{}",
                c.packets_sent, c.bytes_sent, c.packets_received, c.bytes_received
            )
        }
    };
    Some(format!(
        "{},{},{},{},{},{},{},{},{},{}",
        e.time.secs(),
        e.src,
        e.dst,
        e.src_port,
        e.dst_port,
        protocol,
        direction,
        access,
        e.state.letter(),
        counters
    ))
}

// ---------------------------------------------------------------------------------------------
// System ids and time stamps
// ---------------------------------------------------------------------------------------------

/// The `resourceId` of an NSG's records: its id, upper-cased, without a trailing `/`.
pub fn record_resource_id(nsg: &ResourceId) -> String {
    nsg.as_str().trim_end_matches('/').to_uppercase()
}

/// The `systemId` written for an NSG whose `resourceGuid` is unknown: a version 8 UUID (RFC 9562)
/// from the 128-bit FNV-1a hash of [`record_resource_id`], lower-case, `8-4-4-4-12`. The same for
/// every spelling of the id, and stable across runs and platforms.
pub fn derived_system_id(nsg: &ResourceId) -> String {
    uuid_from_name(&record_resource_id(nsg))
}

fn uuid_from_name(name: &str) -> String {
    const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = FNV128_OFFSET;
    for &b in name.as_bytes() {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(FNV128_PRIME);
    }
    let mut bytes = hash.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether `s` is a UUID: `8-4-4-4-12` hex digits, either case.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// (year, month, day) of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // month in [1, 12] and day in [1, 31] by construction.
    (year, month as u32, day as u32)
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Epoch seconds as a record `time`: `YYYY-MM-DDTHH:MM:SS.0000000Z` (UTC, seven fractional
/// digits as Azure writes them). Meant for times up to 9999-12-31T23:59:59Z.
pub fn format_record_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64; // secs < 2^64 so days < 2^48
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.0000000Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parses a record `time` as Azure writes it, `YYYY-MM-DDTHH:MM:SS.fffffffZ` (exactly seven
/// fractional digits, UTC): (epoch seconds, 100 ns ticks). `None` if malformed, not a calendar
/// date, or before the epoch.
pub fn parse_record_time(text: &str) -> Option<(u64, u32)> {
    let b = text.as_bytes();
    if b.len() != 28 {
        return None;
    }
    let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        10 => *c == b'T',
        13 | 16 => *c == b':',
        19 => *c == b'.',
        27 => *c == b'Z',
        _ => c.is_ascii_digit(),
    });
    if !shape_ok {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> { text.get(from..to)?.parse().ok() };
    let year = num(0, 4)?;
    let month = num(5, 7)?;
    let day = num(8, 10)?;
    let hour = num(11, 13)?;
    let minute = num(14, 16)?;
    let second = num(17, 19)?;
    let ticks = num(20, 27)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((u64::try_from(secs).ok()?, ticks))
}

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

/// A flow log file: `{"records":[…]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLogDocument {
    pub records: Vec<FlowLogRecord>,
}

/// One NSG's flows of one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLogRecord {
    pub time: String,
    #[serde(rename = "systemId")]
    pub system_id: String,
    pub category: String,
    #[serde(rename = "resourceId")]
    pub resource_id: String,
    #[serde(rename = "operationName")]
    pub operation_name: String,
    pub properties: FlowLogProperties,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLogProperties {
    #[serde(rename = "Version")]
    pub version: u64,
    pub flows: Vec<RuleFlows>,
}

/// The tuples one rule decided, by MAC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFlows {
    pub rule: String,
    pub flows: Vec<MacFlows>,
}

/// The tuples of one NIC (by MAC) under one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacFlows {
    pub mac: String,
    #[serde(rename = "flowTuples")]
    pub flow_tuples: Vec<String>,
}

#[derive(Debug, Default)]
struct RecordAcc {
    rules: Vec<RuleFlows>,
    rule_index: HashMap<String, usize>,
    /// (rule position, MAC) → position in that rule's `flows`.
    mac_index: HashMap<(usize, String), usize>,
}

/// Accumulates [`FlowLogEvent`]s into a [`FlowLogDocument`]; see the module documentation for the
/// grouping and ordering.
#[derive(Debug, Default)]
pub struct FlowLogBuilder {
    /// (minute bucket, record resourceId) → record under construction.
    records: HashMap<(u64, String), RecordAcc>,
    /// record resourceId → the first well-formed `resourceGuid` seen.
    guids: HashMap<String, String>,
    skipped: [u64; SkipReason::ALL.len()],
}

impl FlowLogBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one tuple, or counts the event as skipped (see [`FlowLogEvent::loggable`]).
    pub fn push(&mut self, e: FlowLogEvent) {
        if let Err(reason) = e.loggable() {
            self.skipped[reason.index()] += 1;
            return;
        }
        let (Some(tuple), Some(mac)) = (format_tuple(&e), normalise_mac(&e.mac)) else {
            // Unreachable after `loggable`; count rather than panic.
            self.skipped[SkipReason::UnsupportedProtocol.index()] += 1;
            return;
        };
        let resource_id = record_resource_id(&e.nsg);
        if let Some(guid) = e.nsg_guid.as_deref().filter(|g| is_uuid(g)) {
            self.guids
                .entry(resource_id.clone())
                .or_insert_with(|| guid.to_string());
        }
        let record = self
            .records
            .entry((minute_bucket(e.time), resource_id))
            .or_default();
        let label = rule_label(e.rule_kind, &e.rule_name);
        let rule_pos = match record.rule_index.get(&label) {
            Some(&pos) => pos,
            None => {
                let pos = record.rules.len();
                record.rule_index.insert(label.clone(), pos);
                record.rules.push(RuleFlows {
                    rule: label,
                    flows: Vec::new(),
                });
                pos
            }
        };
        let rule = &mut record.rules[rule_pos];
        let mac_pos = match record.mac_index.get(&(rule_pos, mac.clone())) {
            Some(&pos) => pos,
            None => {
                let pos = rule.flows.len();
                record.mac_index.insert((rule_pos, mac.clone()), pos);
                rule.flows.push(MacFlows {
                    mac,
                    flow_tuples: Vec::new(),
                });
                pos
            }
        };
        rule.flows[mac_pos].flow_tuples.push(tuple);
    }

    /// Events not logged, for every [`SkipReason`] (non-TCP/UDP protocols, bad MACs, …).
    pub fn skipped(&self) -> u64 {
        self.skipped.iter().sum()
    }

    /// Events not logged for one reason.
    pub fn skipped_for(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()]
    }

    /// Whether no event has been logged (skipped ones aside).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn finish(self) -> FlowLogDocument {
        let FlowLogBuilder { records, guids, .. } = self;
        let mut records: Vec<_> = records.into_iter().collect();
        records.sort_by(|(a, _), (b, _)| a.cmp(b));
        let records = records
            .into_iter()
            .map(|((bucket, resource_id), acc)| FlowLogRecord {
                time: format_record_time(bucket_end_secs(bucket)),
                system_id: guids
                    .get(&resource_id)
                    .cloned()
                    .unwrap_or_else(|| uuid_from_name(&resource_id)),
                category: CATEGORY.to_string(),
                resource_id,
                operation_name: OPERATION_NAME.to_string(),
                properties: FlowLogProperties {
                    version: VERSION,
                    flows: acc.rules,
                },
            })
            .collect();
        FlowLogDocument { records }
    }
}

// ---------------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------------

/// Checks that `v` is a version 2 flow log file, strictly: `{"records":[…]}` and nothing else;
/// every record with exactly the keys `time` (`YYYY-MM-DDTHH:MM:SS.fffffffZ`), `systemId` (a
/// UUID), `category` and `operationName` (the constants), `resourceId` (an NSG id, upper case) and
/// `properties` (`Version` = the integer 2, and a non-empty `flows`); every rule entry exactly
/// `rule` (`UserRule_…` / `DefaultRule_…` with a name) and a non-empty `flows`; every MAC entry
/// exactly `mac` (12 upper-case hex digits) and a non-empty `flowTuples` of strings; every tuple
/// 13 comma-separated fields: epoch seconds, IPv4/IPv6 source and destination, ports 0–65535,
/// `T|U`, `I|O`, `A|D`, `B|C|E`, then four empty counters for `B` and four unsigned integers for
/// `C` and `E` (numbers in canonical decimal: no sign, no leading zeros); and the records of each
/// NSG in non-decreasing `time`.
///
/// Errors name the place, e.g. `records[0].properties.flows[1].flows[0].flowTuples[2]`.
pub fn check_v2_document(v: &Value) -> Result<(), Vec<String>> {
    let mut c = Checker::default();
    c.document(v);
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<String>,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` as a u64 written in canonical decimal.
fn canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl Checker {
    fn error(&mut self, path: &str, message: impl AsRef<str>) {
        self.errors.push(format!("{path}: {}", message.as_ref()));
    }

    /// `v` as an object with exactly `keys`.
    fn object<'a>(
        &mut self,
        path: &str,
        v: &'a Value,
        keys: &[&str],
    ) -> Option<&'a Map<String, Value>> {
        let Some(map) = v.as_object() else {
            self.error(path, format!("expected an object, found {}", kind_of(v)));
            return None;
        };
        for key in keys {
            if !map.contains_key(*key) {
                self.error(path, format!("missing key \"{key}\""));
            }
        }
        for key in map.keys() {
            if !keys.contains(&key.as_str()) {
                self.error(path, format!("unexpected key \"{key}\""));
            }
        }
        Some(map)
    }

    fn string<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a str> {
        let v = map.get(key)?; // missing keys are reported by `object`
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.error(
                    &format!("{path}.{key}"),
                    format!("expected a string, found {}", kind_of(v)),
                );
                None
            }
        }
    }

    /// `map[key]` as a non-empty array.
    fn array<'a>(
        &mut self,
        path: &str,
        map: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a [Value]> {
        let v = map.get(key)?;
        let path = format!("{path}.{key}");
        match v.as_array() {
            Some(items) if items.is_empty() => {
                self.error(&path, "is empty");
                None
            }
            Some(items) => Some(items),
            None => {
                self.error(&path, format!("expected an array, found {}", kind_of(v)));
                None
            }
        }
    }

    fn document(&mut self, v: &Value) {
        let Some(map) = self.object("document", v, &["records"]) else {
            return;
        };
        let Some(records_value) = map.get("records") else {
            return;
        };
        let Some(records) = records_value.as_array() else {
            self.error(
                "records",
                format!("expected an array, found {}", kind_of(records_value)),
            );
            return;
        };
        // resourceId → (time, record index) of its latest record so far.
        let mut latest: HashMap<&str, ((u64, u32), usize)> = HashMap::new();
        for (i, record) in records.iter().enumerate() {
            let path = format!("records[{i}]");
            if let Some((resource_id, time)) = self.record(&path, record) {
                if let Some(&(prev_time, prev)) = latest.get(resource_id) {
                    if time < prev_time {
                        self.error(
                            &format!("{path}.time"),
                            format!(
                                "is earlier than the time of records[{prev}], of the same NSG (records must be sorted by time per NSG)"
                            ),
                        );
                    }
                }
                latest.insert(resource_id, (time, i));
            }
        }
    }

    /// Checks one record; returns its resourceId and time if both are well-formed.
    fn record<'a>(&mut self, path: &str, v: &'a Value) -> Option<(&'a str, (u64, u32))> {
        let map = self.object(
            path,
            v,
            &[
                "time",
                "systemId",
                "category",
                "resourceId",
                "operationName",
                "properties",
            ],
        )?;
        let time = self.string(path, map, "time").and_then(|t| {
            let parsed = parse_record_time(t);
            if parsed.is_none() {
                self.error(
                    &format!("{path}.time"),
                    format!("\"{t}\" is not a UTC time like 2018-11-13T12:00:35.3899262Z"),
                );
            }
            parsed
        });
        if let Some(id) = self.string(path, map, "systemId") {
            if !is_uuid(id) {
                self.error(
                    &format!("{path}.systemId"),
                    format!("\"{id}\" is not a UUID"),
                );
            }
        }
        for (key, expected) in [("category", CATEGORY), ("operationName", OPERATION_NAME)] {
            if let Some(s) = self.string(path, map, key) {
                if s != expected {
                    self.error(
                        &format!("{path}.{key}"),
                        format!("expected \"{expected}\", found \"{s}\""),
                    );
                }
            }
        }
        let resource_id = self.string(path, map, "resourceId").and_then(|id| {
            let p = format!("{path}.resourceId");
            let mut ok = true;
            if id.to_uppercase() != id {
                self.error(&p, format!("\"{id}\" is not upper case"));
                ok = false;
            }
            match ResourceId::parse(id) {
                Ok(parsed) if parsed.is_type(types::NETWORK_SECURITY_GROUP) => {}
                _ => {
                    self.error(&p, format!("\"{id}\" is not a network security group id"));
                    ok = false;
                }
            }
            ok.then_some(id)
        });
        if let Some(properties) = map.get("properties") {
            self.properties(&format!("{path}.properties"), properties);
        }
        Some((resource_id?, time?))
    }

    fn properties(&mut self, path: &str, v: &Value) {
        let Some(map) = self.object(path, v, &["Version", "flows"]) else {
            return;
        };
        if let Some(version) = map.get("Version") {
            if !(version.is_u64() && version.as_u64() == Some(VERSION)) {
                self.error(
                    &format!("{path}.Version"),
                    format!("expected the integer {VERSION}, found {version}"),
                );
            }
        }
        let Some(rules) = self.array(path, map, "flows") else {
            return;
        };
        for (i, rule) in rules.iter().enumerate() {
            self.rule_flows(&format!("{path}.flows[{i}]"), rule);
        }
    }

    fn rule_flows(&mut self, path: &str, v: &Value) {
        let Some(map) = self.object(path, v, &["rule", "flows"]) else {
            return;
        };
        if let Some(label) = self.string(path, map, "rule") {
            let name = label
                .strip_prefix("UserRule_")
                .or_else(|| label.strip_prefix("DefaultRule_"));
            match name {
                Some(name) if !name.is_empty() => {}
                Some(_) => self.error(
                    &format!("{path}.rule"),
                    format!("\"{label}\" has no rule name"),
                ),
                None => self.error(
                    &format!("{path}.rule"),
                    format!("\"{label}\" does not start with UserRule_ or DefaultRule_"),
                ),
            }
        }
        let Some(macs) = self.array(path, map, "flows") else {
            return;
        };
        for (i, mac) in macs.iter().enumerate() {
            self.mac_flows(&format!("{path}.flows[{i}]"), mac);
        }
    }

    fn mac_flows(&mut self, path: &str, v: &Value) {
        let Some(map) = self.object(path, v, &["mac", "flowTuples"]) else {
            return;
        };
        if let Some(mac) = self.string(path, map, "mac") {
            let ok = mac.len() == 12
                && mac
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
            if !ok {
                self.error(
                    &format!("{path}.mac"),
                    format!("\"{mac}\" is not 12 upper-case hex digits"),
                );
            }
        }
        let Some(tuples) = self.array(path, map, "flowTuples") else {
            return;
        };
        for (i, tuple) in tuples.iter().enumerate() {
            let p = format!("{path}.flowTuples[{i}]");
            match tuple.as_str() {
                Some(t) => self.tuple(&p, t),
                None => self.error(&p, format!("expected a string, found {}", kind_of(tuple))),
            }
        }
    }

    fn tuple(&mut self, path: &str, tuple: &str) {
        let fields: Vec<&str> = tuple.split(',').collect();
        if fields.len() != V2_TUPLE_FIELDS {
            self.error(
                path,
                format!(
                    "\"{tuple}\" has {} fields, expected {V2_TUPLE_FIELDS}",
                    fields.len()
                ),
            );
            return;
        }
        let mut bad = |field: usize, what: &str| {
            self.errors.push(format!(
                "{path}: \"{tuple}\": field {} (\"{}\") {what}",
                field + 1,
                fields[field]
            ));
        };
        if canonical_u64(fields[0]).is_none() {
            bad(0, "is not a time stamp in epoch seconds");
        }
        for field in [1, 2] {
            if fields[field].parse::<IpAddr>().is_err() {
                bad(field, "is not an IPv4 or IPv6 address");
            }
        }
        for field in [3, 4] {
            if canonical_u64(fields[field]).is_none_or(|p| p > u64::from(u16::MAX)) {
                bad(field, "is not a port 0-65535");
            }
        }
        if !matches!(fields[5], "T" | "U") {
            bad(5, "is not a protocol T or U");
        }
        if !matches!(fields[6], "I" | "O") {
            bad(6, "is not a traffic flow I or O");
        }
        if !matches!(fields[7], "A" | "D") {
            bad(7, "is not a traffic decision A or D");
        }
        let state = match fields[8] {
            "B" => Some(FlowState::Begin),
            "C" => Some(FlowState::Continuing),
            "E" => Some(FlowState::End),
            _ => None,
        };
        match state {
            None => bad(8, "is not a flow state B, C or E"),
            Some(FlowState::Begin) => {
                for (field, value) in fields.iter().enumerate().skip(9) {
                    if !value.is_empty() {
                        bad(field, "must be empty: a B tuple carries no counters");
                    }
                }
            }
            Some(FlowState::Continuing | FlowState::End) => {
                for (field, value) in fields.iter().enumerate().skip(9) {
                    if canonical_u64(value).is_none() {
                        bad(
                            field,
                            "is not a counter (an unsigned integer), required for C and E tuples",
                        );
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const NSG: &str = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg1";

    fn event(state: FlowState, counters: Option<FlowCounters>) -> FlowLogEvent {
        FlowLogEvent {
            time: Time::from_secs(1_493_763_938),
            nsg: ResourceId::parse(NSG).expect("test id"),
            nsg_guid: None,
            rule_kind: RuleKind::Custom,
            rule_name: "allow-telnet".into(),
            mac: "00-0D-3A-1B-C7-21".into(),
            src: "185.170.185.105".parse().expect("test ip"),
            dst: "10.2.0.4".parse().expect("test ip"),
            src_port: 35370,
            dst_port: 23,
            protocol: ip_proto::TCP,
            direction: Direction::Inbound,
            access: Access::Allow,
            state,
            counters,
        }
    }

    const COUNTERS: FlowCounters = FlowCounters {
        packets_sent: 1021,
        bytes_sent: 588_096,
        packets_received: 8005,
        bytes_received: 4_610_880,
    };

    #[test]
    fn begin_tuple_has_empty_counters() {
        let e = event(FlowState::Begin, None);
        assert_eq!(
            format_tuple(&e).as_deref(),
            Some("1493763938,185.170.185.105,10.2.0.4,35370,23,T,I,A,B,,,,")
        );
        // Counters on a B event are not written.
        let e = event(FlowState::Begin, Some(COUNTERS));
        assert_eq!(
            format_tuple(&e).as_deref(),
            Some("1493763938,185.170.185.105,10.2.0.4,35370,23,T,I,A,B,,,,")
        );
    }

    #[test]
    fn continuing_and_end_tuples_carry_counters() {
        let mut e = event(FlowState::Continuing, Some(COUNTERS));
        e.time = Time::from_secs(1_493_695_838);
        assert_eq!(
            format_tuple(&e).as_deref(),
            Some("1493695838,185.170.185.105,10.2.0.4,35370,23,T,I,A,C,1021,588096,8005,4610880")
        );
        let mut e = event(
            FlowState::End,
            Some(FlowCounters {
                packets_sent: 52,
                bytes_sent: 29_952,
                packets_received: 47,
                bytes_received: 27_072,
            }),
        );
        e.time = Time(1_493_696_138_999_999); // sub-second part dropped
        assert_eq!(
            format_tuple(&e).as_deref(),
            Some("1493696138,185.170.185.105,10.2.0.4,35370,23,T,I,A,E,52,29952,47,27072")
        );
        // C/E without counters: zero deltas.
        let e = event(FlowState::End, None);
        assert!(format_tuple(&e).expect("tcp").ends_with(",T,I,A,E,0,0,0,0"));
    }

    #[test]
    fn outbound_denied_udp_and_ipv6() {
        let mut e = event(FlowState::Begin, None);
        e.src = "fd00::4".parse().expect("test ip");
        e.dst = "2001:db8::1:0:0:1".parse().expect("test ip");
        e.src_port = 53000;
        e.dst_port = 53;
        e.protocol = ip_proto::UDP;
        e.direction = Direction::Outbound;
        e.access = Access::Deny;
        assert_eq!(
            format_tuple(&e).as_deref(),
            Some("1493763938,fd00::4,2001:db8::1:0:0:1,53000,53,U,O,D,B,,,,")
        );
    }

    #[test]
    fn other_protocols_have_no_tuple() {
        for protocol in [
            ip_proto::ICMP,
            ip_proto::ICMPV6,
            ip_proto::ESP,
            ip_proto::AH,
            0,
            255,
        ] {
            let mut e = event(FlowState::Begin, None);
            e.protocol = protocol;
            assert_eq!(format_tuple(&e), None, "protocol {protocol}");
            assert_eq!(e.loggable(), Err(SkipReason::UnsupportedProtocol));
        }
    }

    #[test]
    fn macs_are_normalised() {
        for mac in [
            "00-0D-3A-1B-C7-21",
            "00:0d:3a:1b:c7:21",
            "000D3A1BC721",
            "000d3a1bc721",
            "00-0d-3A-1b-C7-21",
        ] {
            assert_eq!(normalise_mac(mac).as_deref(), Some("000D3A1BC721"), "{mac}");
        }
    }

    #[test]
    fn bad_macs_are_rejected() {
        for mac in [
            "",
            "00-0D-3A",
            "000D3A1BC72",
            "000D3A1BC7211",
            "00-0D-3A-1B-C7-2G",
            "00-0D:3A-1B-C7-21",
            "00.0D.3A.1B.C7.21",
            "000D.3A1B.C721",
            "0-00D-3A-1B-C7-21",
            "00-0D-3A-1B-C7-21-",
            "00-0D-3A-1B-C7-2١", // non-ASCII digit
            "Z00D3A1BC721",
        ] {
            assert_eq!(normalise_mac(mac), None, "{mac:?}");
        }
    }

    #[test]
    fn events_with_bad_macs_are_skipped_and_counted() {
        let mut b = FlowLogBuilder::new();
        let mut e = event(FlowState::Begin, None);
        e.mac = "00-0D-3A".into();
        assert_eq!(e.loggable(), Err(SkipReason::InvalidMac));
        b.push(e);
        let mut e = event(FlowState::Begin, None);
        e.protocol = ip_proto::ICMP;
        b.push(e);
        b.push(event(FlowState::Begin, None));
        assert_eq!(b.skipped(), 2);
        assert_eq!(b.skipped_for(SkipReason::InvalidMac), 1);
        assert_eq!(b.skipped_for(SkipReason::UnsupportedProtocol), 1);
        let doc = b.finish();
        assert_eq!(doc.records.len(), 1);
        assert_eq!(
            doc.records[0].properties.flows[0].flows[0].mac,
            "000D3A1BC721"
        );
    }

    #[test]
    fn other_unloggable_events_are_skipped() {
        let mut e = event(FlowState::Begin, None);
        e.nsg = ResourceId::parse(
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic1",
        )
        .expect("test id");
        assert_eq!(e.loggable(), Err(SkipReason::NotAnNsg));
        let mut e = event(FlowState::Begin, None);
        e.rule_name.clear();
        assert_eq!(e.loggable(), Err(SkipReason::EmptyRuleName));
        let mut e = event(FlowState::Begin, None);
        e.time = Time::from_secs(LAST_RFC3339_SECS);
        assert_eq!(e.loggable(), Err(SkipReason::TimeOutOfRange));
        e.time = Time::from_secs(253_402_300_739); // 9999-12-31T23:58:59, bucket ends 23:59:00
        assert_eq!(e.loggable(), Ok(()));
        e.time = Time(u64::MAX);
        assert_eq!(e.loggable(), Err(SkipReason::TimeOutOfRange));
    }

    #[test]
    fn rule_labels() {
        assert_eq!(
            rule_label(RuleKind::Custom, "default-allow-rdp"),
            "UserRule_default-allow-rdp"
        );
        assert_eq!(
            rule_label(RuleKind::Default, "DenyAllInBound"),
            "DefaultRule_DenyAllInBound"
        );
        let long = "a".repeat(80);
        assert_eq!(
            rule_label(RuleKind::Custom, &long),
            format!("UserRule_{}", "a".repeat(65))
        );
        let exact = "b".repeat(65);
        assert_eq!(
            rule_label(RuleKind::Default, &exact),
            format!("DefaultRule_{exact}")
        );
        // Truncation counts characters, not bytes.
        let wide = "é".repeat(70);
        assert_eq!(
            rule_label(RuleKind::Custom, &wide),
            format!("UserRule_{}", "é".repeat(65))
        );
    }

    #[test]
    fn record_times() {
        assert_eq!(format_record_time(0), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(
            format_record_time(1_542_110_435),
            "2018-11-13T12:00:35.0000000Z"
        );
        assert_eq!(
            format_record_time(951_782_400),
            "2000-02-29T00:00:00.0000000Z"
        );
        assert_eq!(
            format_record_time(4_107_542_400),
            "2100-03-01T00:00:00.0000000Z"
        );
        assert_eq!(
            format_record_time(LAST_RFC3339_SECS),
            "9999-12-31T23:59:59.0000000Z"
        );
        assert_eq!(
            parse_record_time("2018-11-13T12:00:35.3899262Z"),
            Some((1_542_110_435, 3_899_262))
        );
        assert_eq!(
            parse_record_time("2017-02-16T22:00:32.8950000Z"),
            Some((1_487_282_432, 8_950_000))
        );
        for bad in [
            "2018-11-13T12:00:35Z",
            "2018-11-13T12:00:35.389926Z",
            "2018-11-13 12:00:35.3899262Z",
            "2018-11-13T12:00:35.3899262+00:00",
            "2018-02-29T12:00:35.0000000Z",
            "2018-13-01T12:00:35.0000000Z",
            "2018-11-13T24:00:00.0000000Z",
            "2018-11-13T12:60:00.0000000Z",
            "2018-11-13T12:00:60.0000000Z",
            "1969-12-31T23:59:59.0000000Z",
            "2018-1a-13T12:00:35.0000000Z",
        ] {
            assert_eq!(parse_record_time(bad), None, "{bad}");
        }
        // Round trip over a spread of days, leap years included.
        for days in (0..3_000_000u64).step_by(997) {
            let secs = days * 86_400 + days % 86_400;
            if secs > LAST_RFC3339_SECS {
                break;
            }
            assert_eq!(
                parse_record_time(&format_record_time(secs)),
                Some((secs, 0))
            );
        }
    }

    #[test]
    fn derived_system_ids_are_stable_uuids() {
        let a = ResourceId::parse(NSG).expect("test id");
        let b = ResourceId::parse(&NSG.to_uppercase()).expect("test id");
        let c = ResourceId::parse(&format!("{NSG}/")).expect("test id");
        let id = derived_system_id(&a);
        assert!(is_uuid(&id), "{id}");
        assert_eq!(&id[14..15], "8", "version 8: {id}");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "variant: {id}"
        );
        assert_eq!(id, derived_system_id(&b));
        assert_eq!(id, derived_system_id(&c));
        let other = ResourceId::parse(&NSG.replace("nsg1", "nsg2")).expect("test id");
        assert_ne!(id, derived_system_id(&other));
        // Pinned: the value must not change between releases.
        assert_eq!(id, uuid_from_name(&NSG.to_uppercase()));
        assert_eq!(uuid_from_name(""), "6c62272e-07bb-8142-a2b8-21756295c58d");
    }

    #[test]
    fn given_guids_are_used_and_malformed_ones_ignored() {
        let mut b = FlowLogBuilder::new();
        let mut e = event(FlowState::Begin, None);
        e.nsg_guid = Some("not-a-guid".into());
        b.push(e);
        let mut e = event(FlowState::Begin, None);
        e.nsg_guid = Some("a0fca5ce-022c-47b1-9735-89943b42f2fa".into());
        b.push(e);
        let mut e = event(FlowState::Begin, None);
        e.nsg_guid = Some("2c002c16-72f3-4dc5-b391-3444c3527434".into());
        b.push(e);
        let doc = b.finish();
        assert_eq!(
            doc.records[0].system_id,
            "a0fca5ce-022c-47b1-9735-89943b42f2fa"
        );

        let mut b = FlowLogBuilder::new();
        let mut e = event(FlowState::Begin, None);
        e.nsg_guid = Some("not-a-guid".into());
        b.push(e);
        let doc = b.finish();
        let nsg = ResourceId::parse(NSG).expect("test id");
        assert_eq!(doc.records[0].system_id, derived_system_id(&nsg));
    }

    #[test]
    fn canonical_numbers() {
        assert_eq!(canonical_u64("0"), Some(0));
        assert_eq!(canonical_u64("65535"), Some(65535));
        for bad in ["", "01", "+1", "-1", " 1", "1.0", "18446744073709551616"] {
            assert_eq!(canonical_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn empty_builder_gives_an_empty_valid_document() {
        let b = FlowLogBuilder::new();
        assert!(b.is_empty());
        let doc = b.finish();
        let v = serde_json::to_value(&doc).expect("serialisable");
        assert_eq!(v, serde_json::json!({"records": []}));
        assert_eq!(check_v2_document(&v), Ok(()));
    }
}
