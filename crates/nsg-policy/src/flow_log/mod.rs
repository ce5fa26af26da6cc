//! Flow logs: what the data plane reports about flows, written in Azure's two formats.
//!
//! The flow table (for a replayed capture) and `opennsg enforce` (for the kernel's connections)
//! produce [`FlowLogEvent`]s — one per tuple: a flow began, is continuing, ended, or was denied.
//! One event type serves both sources, and both formats are built from it:
//!
//! * [`nsg_v2`] — NSG flow logs version 2 (reference §6.2): one record per NSG per minute;
//!   checked strictly by [`check_v2_document`].
//! * [`vnet_v4`] — VNet flow logs (reference §6.4, `flowLogVersion` 4): one record per flow log,
//!   NIC (MAC) and minute, grouped by NSG (`aclID`) and rule; checked by [`check_v4_document`].
//! * [`blob`] — the storage names Azure gives the hourly files of both.

pub mod blob;
mod check;
mod names;
pub mod nsg_v2;
mod nsg_v2_check;
mod time;
pub mod vnet_v4;
mod vnet_v4_check;

pub use names::{derived_system_id, normalise_mac, record_resource_id, rule_label};
pub use nsg_v2::{
    format_tuple, FlowLogBuilder, FlowLogDocument, FlowLogProperties, FlowLogRecord, MacFlows,
    RuleFlows, CATEGORY, OPERATION_NAME, V2_TUPLE_FIELDS, VERSION,
};
pub use nsg_v2_check::check_v2_document;
pub use time::{format_record_time, parse_record_time};
pub use vnet_v4_check::check_v4_document;

use crate::packet::Time;
use nsg_model::id::types;
use nsg_model::rule::{Access, Direction, RuleKind};
use nsg_model::ResourceId;
use std::net::IpAddr;

/// Rule names longer than this are truncated in rule labels ("might be truncated", both formats).
pub const MAX_RULE_NAME_CHARS: usize = 65;

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
    /// Whether the event can be written as a version 2 tuple, and if not why: only TCP and UDP
    /// are representable there. The first failing check, in the order of [`SkipReason`]'s
    /// variants, is reported.
    pub fn loggable_v2(&self) -> Result<(), SkipReason> {
        if nsg_v2::protocol_letter(self.protocol).is_none() {
            return Err(SkipReason::UnsupportedProtocol);
        }
        self.loggable_v4()
    }

    /// Whether the event can be written as a version 4 tuple (any IP protocol), and if not why.
    pub fn loggable_v4(&self) -> Result<(), SkipReason> {
        if normalise_mac(&self.mac).is_none() {
            return Err(SkipReason::InvalidMac);
        }
        if !self.nsg.is_type(types::NETWORK_SECURITY_GROUP) {
            return Err(SkipReason::NotAnNsg);
        }
        if self.rule_name.is_empty() {
            return Err(SkipReason::EmptyRuleName);
        }
        if time::bucket_end_secs(time::minute_bucket(self.time)) > time::LAST_RFC3339_SECS {
            return Err(SkipReason::TimeOutOfRange);
        }
        Ok(())
    }
}

/// Events not written, counted by reason; each builder has one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts([u64; SkipReason::ALL.len()]);

impl SkipCounts {
    fn count(&mut self, reason: SkipReason) {
        self.0[reason.index()] += 1;
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    pub fn of(&self, reason: SkipReason) -> u64 {
        self.0[reason.index()]
    }
}
