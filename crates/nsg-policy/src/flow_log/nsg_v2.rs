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

use super::names::{is_uuid, uuid_from_name};
use super::time::{bucket_end_secs, minute_bucket};
use super::{
    format_record_time, normalise_mac, record_resource_id, rule_label, FlowLogEvent, FlowState,
    SkipCounts, SkipReason,
};
use nsg_model::rule::{ip_proto, Access, Direction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `category` of every record.
pub const CATEGORY: &str = "NetworkSecurityGroupFlowEvent";
/// `operationName` of every record.
pub const OPERATION_NAME: &str = "NetworkSecurityGroupFlowEvents";
/// `properties.Version` of the format produced here.
pub const VERSION: u64 = 2;
/// Fields of a version 2 tuple.
pub const V2_TUPLE_FIELDS: usize = 13;

pub(super) fn protocol_letter(protocol: u8) -> Option<char> {
    match protocol {
        ip_proto::TCP => Some('T'),
        ip_proto::UDP => Some('U'),
        _ => None,
    }
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
    /// The one MAC of the record's flows, in per-MAC blobs ([`super::blob::nsg_blobs`]); real
    /// Azure records carry it, replay's single file does not.
    #[serde(
        rename = "macAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mac_address: Option<String>,
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
    skipped: SkipCounts,
}

impl FlowLogBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one tuple, or counts the event as skipped (see [`FlowLogEvent::loggable_v2`]).
    pub fn push(&mut self, e: FlowLogEvent) {
        if let Err(reason) = e.loggable_v2() {
            self.skipped.count(reason);
            return;
        }
        let (Some(tuple), Some(mac)) = (format_tuple(&e), normalise_mac(&e.mac)) else {
            // Unreachable after `loggable`; count rather than panic.
            self.skipped.count(SkipReason::UnsupportedProtocol);
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
        self.skipped.total()
    }

    /// Events not logged for one reason.
    pub fn skipped_for(&self, reason: SkipReason) -> u64 {
        self.skipped.of(reason)
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
                mac_address: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow_log::time::LAST_RFC3339_SECS;
    use crate::flow_log::{check_v2_document, derived_system_id, FlowCounters};
    use crate::packet::Time;
    use nsg_model::rule::RuleKind;
    use nsg_model::ResourceId;

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
            assert_eq!(e.loggable_v2(), Err(SkipReason::UnsupportedProtocol));
        }
    }

    #[test]
    fn events_with_bad_macs_are_skipped_and_counted() {
        let mut b = FlowLogBuilder::new();
        let mut e = event(FlowState::Begin, None);
        e.mac = "00-0D-3A".into();
        assert_eq!(e.loggable_v2(), Err(SkipReason::InvalidMac));
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
        assert_eq!(e.loggable_v2(), Err(SkipReason::NotAnNsg));
        let mut e = event(FlowState::Begin, None);
        e.rule_name.clear();
        assert_eq!(e.loggable_v2(), Err(SkipReason::EmptyRuleName));
        let mut e = event(FlowState::Begin, None);
        e.time = Time::from_secs(LAST_RFC3339_SECS);
        assert_eq!(e.loggable_v2(), Err(SkipReason::TimeOutOfRange));
        e.time = Time::from_secs(253_402_300_739); // 9999-12-31T23:58:59, bucket ends 23:59:00
        assert_eq!(e.loggable_v2(), Ok(()));
        e.time = Time(u64::MAX);
        assert_eq!(e.loggable_v2(), Err(SkipReason::TimeOutOfRange));
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
    fn empty_builder_gives_an_empty_valid_document() {
        let b = FlowLogBuilder::new();
        assert!(b.is_empty());
        let doc = b.finish();
        let v = serde_json::to_value(&doc).expect("serialisable");
        assert_eq!(v, serde_json::json!({"records": []}));
        assert_eq!(check_v2_document(&v), Ok(()));
    }
}
