//! VNet flow logs, `flowLogVersion` 4 (reference §6.4): the records one `flowLogs` resource
//! writes, one per NIC (MAC) per minute.
//!
//! A [`VnetFlowLogBuilder`] serves one flow log (its id, `resourceGuid` and target). It groups
//! events as Azure does:
//!
//! * one record per minute bucket per MAC address, ordered by (minute, MAC);
//! * inside a record, one `flows` entry per NSG (`aclID`), then one `flowGroups` entry per rule
//!   label, each ordered by first appearance; tuples in the order the events were pushed.
//!
//! Decisions that the reference leaves open (docs/semantics.md D10):
//!
//! * `aclID` is the NSG's `resourceGuid`, else the same derived UUID NSG flow logs write as
//!   `systemId` ([`super::derived_system_id`]); `flowLogGUID` likewise for the flow log.
//! * Rule names are labelled as in version 2 (`UserRule_…`, `DefaultRule_…`), as Microsoft's
//!   sample shows for NSG rules.
//! * A denied event is written with state `D` and zero counters, whatever its flow state; `B`
//!   tuples have zero counters; `C` and `E` carry the deltas since the flow's previous tuple.
//! * Encryption is always `NX`: OpenNSG does not encrypt virtual network traffic.
//! * Record `time` is the end of the minute bucket, as in version 2.

use super::names::{is_uuid, uuid_from_name};
use super::time::{bucket_end_secs, minute_bucket};
use super::{
    format_record_time, normalise_mac, record_resource_id, rule_label, FlowLogEvent, FlowState,
    SkipCounts, SkipReason,
};
use nsg_model::rule::{Access, Direction};
use nsg_model::ResourceId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `category` and `operationName` of every record.
pub const CATEGORY: &str = "FlowLogFlowEvent";
pub const OPERATION_NAME: &str = "FlowLogFlowEvent";
/// `flowLogVersion` of the records produced here.
pub const VERSION: u64 = 4;
/// Fields of a version 4 tuple.
pub const V4_TUPLE_FIELDS: usize = 13;
/// The encryption field: OpenNSG does not encrypt traffic.
pub const NOT_ENCRYPTED: &str = "NX";
/// Every encryption value the format defines (reference §6.4).
pub const ENCRYPTION_VALUES: [&str; 8] = [
    "X",
    "NX",
    "NX_HW_NOT_SUPPORTED",
    "NX_SW_NOT_READY",
    "NX_NOT_ACCEPTED",
    "NX_NOT_SUPPORTED",
    "NX_LOCAL_DST",
    "NX_FALLBACK",
];

/// The `flowLogs` resource whose records are built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogIdentity {
    /// `…/networkWatchers/{nw}/flowLogs/{name}`.
    pub id: ResourceId,
    /// Its `resourceGuid`, written as `flowLogGUID`; derived from the id when `None` or malformed.
    pub guid: Option<String>,
    /// The flow log's `targetResourceId`: a VNet, subnet or NIC.
    pub target: ResourceId,
}

impl FlowLogIdentity {
    fn guid(&self) -> String {
        match self.guid.as_deref().filter(|g| is_uuid(g)) {
            Some(guid) => guid.to_string(),
            None => uuid_from_name(&record_resource_id(&self.id)),
        }
    }
}

/// A VNet flow log file: `{"records":[…]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnetFlowLogDocument {
    pub records: Vec<VnetFlowLogRecord>,
}

/// One NIC's flows of one minute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnetFlowLogRecord {
    pub time: String,
    pub flow_log_version: u64,
    #[serde(rename = "flowLogGUID")]
    pub flow_log_guid: String,
    pub mac_address: String,
    pub category: String,
    #[serde(rename = "flowLogResourceID")]
    pub flow_log_resource_id: String,
    #[serde(rename = "targetResourceID")]
    pub target_resource_id: String,
    pub operation_name: String,
    pub flow_records: FlowRecords,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecords {
    pub flows: Vec<AclFlows>,
}

/// The tuples one NSG decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFlows {
    #[serde(rename = "aclID")]
    pub acl_id: String,
    #[serde(rename = "flowGroups")]
    pub flow_groups: Vec<FlowGroup>,
}

/// The tuples of one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowGroup {
    pub rule: String,
    #[serde(rename = "flowTuples")]
    pub flow_tuples: Vec<String>,
}

/// The version 4 tuple of an event:
/// `ms,src,dst,sport,dport,protocol number,I|O,B|C|E|D,NX,packets sent,bytes sent,packets received,bytes received`.
pub fn format_v4_tuple(e: &FlowLogEvent) -> String {
    let direction = match e.direction {
        Direction::Inbound => 'I',
        Direction::Outbound => 'O',
    };
    let (state, counters) = match (e.access, e.state) {
        (Access::Deny, _) => ('D', Default::default()),
        (Access::Allow, FlowState::Begin) => ('B', Default::default()),
        (Access::Allow, state) => (state.letter(), e.counters.unwrap_or_default()),
    };
    format!(
        "{},{},{},{},{},{},{direction},{state},{NOT_ENCRYPTED},{},{},{},{}",
        e.time.micros() / 1000,
        e.src,
        e.dst,
        e.src_port,
        e.dst_port,
        e.protocol,
        counters.packets_sent,
        counters.bytes_sent,
        counters.packets_received,
        counters.bytes_received,
    )
}

#[derive(Debug, Default)]
struct RecordAcc {
    acls: Vec<AclFlows>,
    /// (aclID, rule label) → (acl position, group position).
    groups: HashMap<(String, String), (usize, usize)>,
    acl_index: HashMap<String, usize>,
}

/// Accumulates one flow log's [`FlowLogEvent`]s into records; see the module documentation.
#[derive(Debug)]
pub struct VnetFlowLogBuilder {
    log: FlowLogIdentity,
    /// (minute bucket, MAC) → record under construction.
    records: BTreeMap<(u64, String), RecordAcc>,
    /// NSG record id → its `aclID`.
    acl_ids: HashMap<String, String>,
    skipped: SkipCounts,
}

impl VnetFlowLogBuilder {
    pub fn new(log: FlowLogIdentity) -> Self {
        VnetFlowLogBuilder {
            log,
            records: BTreeMap::new(),
            acl_ids: HashMap::new(),
            skipped: SkipCounts::default(),
        }
    }

    /// Adds one tuple, or counts the event as skipped (see [`FlowLogEvent::loggable_v4`]).
    pub fn push(&mut self, e: &FlowLogEvent) {
        if let Err(reason) = e.loggable_v4() {
            self.skipped.count(reason);
            return;
        }
        let Some(mac) = normalise_mac(&e.mac) else {
            // Unreachable after `loggable_v4`; count rather than panic.
            self.skipped.count(SkipReason::InvalidMac);
            return;
        };
        let nsg = record_resource_id(&e.nsg);
        let acl_id = self
            .acl_ids
            .entry(nsg.clone())
            .or_insert_with(|| match e.nsg_guid.as_deref().filter(|g| is_uuid(g)) {
                Some(guid) => guid.to_string(),
                None => uuid_from_name(&nsg),
            })
            .clone();
        let record = self
            .records
            .entry((minute_bucket(e.time), mac))
            .or_default();
        let label = rule_label(e.rule_kind, &e.rule_name);
        let (acl, group) = match record.groups.get(&(acl_id.clone(), label.clone())) {
            Some(&at) => at,
            None => {
                let acl = *record.acl_index.entry(acl_id.clone()).or_insert_with(|| {
                    record.acls.push(AclFlows {
                        acl_id: acl_id.clone(),
                        flow_groups: Vec::new(),
                    });
                    record.acls.len() - 1
                });
                let groups = &mut record.acls[acl].flow_groups;
                groups.push(FlowGroup {
                    rule: label.clone(),
                    flow_tuples: Vec::new(),
                });
                let at = (acl, groups.len() - 1);
                record.groups.insert((acl_id, label), at);
                at
            }
        };
        record.acls[acl].flow_groups[group]
            .flow_tuples
            .push(format_v4_tuple(e));
    }

    /// Events not logged, by reason.
    pub fn skipped(&self) -> SkipCounts {
        self.skipped
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, ordered by (minute, MAC), each with the epoch second of its `time`.
    pub fn finish(self) -> Vec<(u64, VnetFlowLogRecord)> {
        let guid = self.log.guid();
        let flow_log_resource_id = record_resource_id(&self.log.id);
        let target_resource_id = self.log.target.as_str().to_string();
        self.records
            .into_iter()
            .map(|((bucket, mac), acc)| {
                let secs = bucket_end_secs(bucket);
                let record = VnetFlowLogRecord {
                    time: format_record_time(secs),
                    flow_log_version: VERSION,
                    flow_log_guid: guid.clone(),
                    mac_address: mac,
                    category: CATEGORY.to_string(),
                    flow_log_resource_id: flow_log_resource_id.clone(),
                    target_resource_id: target_resource_id.clone(),
                    operation_name: OPERATION_NAME.to_string(),
                    flow_records: FlowRecords { flows: acc.acls },
                };
                (secs, record)
            })
            .collect()
    }
}
