//! The flow table as it was before its own hash table (a `std` `HashMap` of records): the
//! reference that tests compare [`super::FlowTable`] with.
//!
//! Both tables share the rules that are not about storage: which packets may start a flow, and
//! the memory of denied flows.

use super::denied::DeniedFlows;
use super::{
    can_start_a_flow, logging_rule, PacketOutcome, RuleAt, TableStats, CONTINUATION_SECS,
    DENIED_FLOWS_REMEMBERED, TCP_CLOSE_GRACE_SECS,
};
use crate::compiled::{CompiledPolicy, Verdict};
use crate::evaluate::{Endpoint, Flow, PlatformRule};
use crate::flow_log::{FlowCounters, FlowLogEvent, FlowState};
use crate::packet::{IcmpKind, PacketMeta, Time};
use crate::resolve::NicPolicy;
use nsg_model::rule::{ip_proto, protocol_has_ports, Access, Direction};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv6Addr};

/// A flow's identity at one NIC: the same for both directions of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    local: [u8; 16],
    remote: [u8; 16],
    local_port: u16,
    remote_port: u16,
    protocol: u8,
    v6: bool,
}

fn address_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn address_of(bytes: [u8; 16], v6: bool) -> IpAddr {
    let a = Ipv6Addr::from(bytes);
    match (v6, a.to_ipv4_mapped()) {
        (false, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(a),
    }
}

/// The parts of a packet seen from the NIC.
struct Oriented {
    local: Endpoint,
    remote: Endpoint,
    key: Option<FlowKey>,
}

/// Orients `packet` at a NIC: `direction` says whether it leaves the NIC (outbound) or arrives.
/// ICMP echo requests and replies form a flow by their identifier; other ICMP messages have no
/// flow identity and are decided one by one.
fn orient(packet: &PacketMeta, direction: Direction) -> Oriented {
    let (local_ip, remote_ip, local_port, remote_port) = match direction {
        Direction::Outbound => (packet.src, packet.dst, packet.src_port, packet.dst_port),
        Direction::Inbound => (packet.dst, packet.src, packet.dst_port, packet.src_port),
    };
    let flow_ports = match (packet.protocol, packet.icmp) {
        (p, _) if protocol_has_ports(p) => {
            Some((local_port.unwrap_or(0), remote_port.unwrap_or(0)))
        }
        (
            ip_proto::ICMP | ip_proto::ICMPV6,
            Some(IcmpKind::EchoRequest { id } | IcmpKind::EchoReply { id }),
        ) => Some((id, 0)),
        (ip_proto::ICMP | ip_proto::ICMPV6, _) => None,
        _ => Some((0, 0)),
    };
    let key = flow_ports.map(|(lp, rp)| FlowKey {
        local: address_bytes(local_ip),
        remote: address_bytes(remote_ip),
        local_port: lp,
        remote_port: rp,
        protocol: packet.protocol,
        v6: local_ip.is_ipv6(),
    });
    let ports = protocol_has_ports(packet.protocol);
    Oriented {
        local: Endpoint {
            ip: local_ip,
            port: if ports { local_port } else { None },
        },
        remote: Endpoint {
            ip: remote_ip,
            port: if ports { remote_port } else { None },
        },
        key,
    }
}

/// What a TCP packet did to its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcpEvent {
    None,
    Reset,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcpState {
    Open,
    /// FIN seen from the initiator (`true`) or the responder (`false`).
    HalfClosed {
        by_initiator: bool,
    },
    /// Closed by FIN from both sides: counting the last ACKs until the grace period ends, when
    /// the flow ends.
    Closed,
}

/// A flow record. Kept small: the table holds up to a million of them per NIC.
#[derive(Clone, Copy, Debug)]
struct FlowRecord {
    last_seen: Time,
    last_report: Time,
    /// Counters since the last flow log report: initiator→responder, then back.
    packets_forward: u32,
    packets_reverse: u32,
    bytes_forward: u64,
    bytes_reverse: u64,
    /// The direction of the first packet, seen from the NIC.
    initiator: Direction,
    tcp: TcpState,
    /// The rule that allowed the flow (for flow logs), if an NSG rule did.
    logged_by: Option<RuleAt>,
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;

/// The flow records of one NIC.
pub struct FlowTable {
    flows: FastMap<FlowKey, FlowRecord>,
    denied: DeniedFlows<FlowKey>,
    capacity_per_direction: usize,
    per_direction: [usize; 2],
    stats: TableStats,
}

fn direction_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

impl FlowTable {
    pub fn with_capacity(capacity_per_direction: usize) -> FlowTable {
        FlowTable {
            flows: FastMap::default(),
            denied: DeniedFlows::with_capacity(DENIED_FLOWS_REMEMBERED),
            capacity_per_direction,
            per_direction: [0, 0],
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }
    pub fn stats(&self) -> TableStats {
        self.stats
    }
    /// Flows initiated in `direction`.
    pub fn flows_in(&self, direction: Direction) -> usize {
        self.per_direction[direction_index(direction)]
    }

    /// Processes one packet crossing the NIC of `policy` in `direction` at `packet.time`.
    /// Flow log events are appended to `events`.
    pub fn process(
        &mut self,
        policy: &CompiledPolicy,
        packet: &PacketMeta,
        direction: Direction,
        events: &mut Vec<FlowLogEvent>,
    ) -> PacketOutcome {
        let now = packet.time;
        let oriented = orient(packet, direction);
        let timeout = timeout_secs(policy.policy());
        if let Some(key) = oriented.key {
            if let Some(record) = self.flows.get_mut(&key) {
                if now.secs_since(record.last_seen) < idle_limit(record, timeout) {
                    // The hot path: count the packet in place.
                    let tcp = FlowTable::count(record, packet, direction);
                    let logged_by = record.logged_by;
                    if tcp != TcpEvent::None
                        || now.secs_since(record.last_report) >= CONTINUATION_SECS
                    {
                        let mut record = *record;
                        self.after_count(policy, key, &mut record, tcp, now, events);
                    }
                    return PacketOutcome::Established(logged_by);
                }
                let record = *record;
                let ended = record.last_seen.plus_secs(idle_limit(&record, timeout));
                self.remove(policy, key, record, ended, events);
            }
        }
        if !can_start_a_flow(packet) {
            return PacketOutcome::WithoutFlow;
        }
        let flow = Flow {
            direction,
            protocol: packet.protocol,
            local: oriented.local,
            remote: oriented.remote,
        };
        let verdict = policy.classify(&flow);
        let Some(key) = oriented.key else {
            return if verdict.access == Access::Allow {
                PacketOutcome::AllowedStateless(verdict)
            } else {
                PacketOutcome::Denied {
                    verdict,
                    first_attempt: true,
                }
            };
        };
        if verdict.access == Access::Deny {
            let denial = self.denied.attempt(key, now, timeout);
            if denial.log {
                events.extend(log_event(
                    policy,
                    key,
                    direction,
                    &verdict,
                    Access::Deny,
                    FlowState::Begin,
                    now,
                    None,
                ));
            }
            return PacketOutcome::Denied {
                verdict,
                first_attempt: denial.first_attempt,
            };
        }
        let slot = direction_index(direction);
        if self.per_direction[slot] >= self.capacity_per_direction {
            self.stats.refused += 1;
            return PacketOutcome::TableFull;
        }
        let logged_by = logging_rule(&verdict, direction);
        let mut record = FlowRecord {
            last_seen: now,
            last_report: now,
            packets_forward: 1,
            packets_reverse: 0,
            bytes_forward: u64::from(packet.length),
            bytes_reverse: 0,
            initiator: direction,
            tcp: TcpState::Open,
            logged_by,
        };
        events.extend(log_event(
            policy,
            key,
            direction,
            &verdict,
            Access::Allow,
            FlowState::Begin,
            now,
            None,
        ));
        self.per_direction[slot] += 1;
        self.stats.flows_created += 1;
        self.flows.insert(key, record);
        let tcp = FlowTable::track_tcp(&mut record, packet, direction);
        self.store(policy, key, record, tcp, now, events);
        PacketOutcome::NewFlow(verdict)
    }

    /// Counts a packet of an established flow and follows its TCP flags.
    #[inline]
    fn count(record: &mut FlowRecord, packet: &PacketMeta, direction: Direction) -> TcpEvent {
        record.last_seen = packet.time;
        if direction == record.initiator {
            record.packets_forward = record.packets_forward.saturating_add(1);
            record.bytes_forward += u64::from(packet.length);
        } else {
            record.packets_reverse = record.packets_reverse.saturating_add(1);
            record.bytes_reverse += u64::from(packet.length);
        }
        FlowTable::track_tcp(record, packet, direction)
    }

    /// The rare part of an established packet: a close, a reset, or a five-minute report.
    fn after_count(
        &mut self,
        policy: &CompiledPolicy,
        key: FlowKey,
        record: &mut FlowRecord,
        tcp: TcpEvent,
        now: Time,
        events: &mut Vec<FlowLogEvent>,
    ) {
        if tcp == TcpEvent::None {
            events.extend(self.report(policy, key, record, FlowState::Continuing, now));
        }
        self.store(policy, key, *record, tcp, now, events);
    }

    /// Follows TCP flags: RST ends a flow, a FIN from each side closes it.
    fn track_tcp(record: &mut FlowRecord, packet: &PacketMeta, direction: Direction) -> TcpEvent {
        let Some(flags) = packet.tcp_flags else {
            return TcpEvent::None;
        };
        if flags.rst {
            return TcpEvent::Reset;
        }
        if flags.fin {
            let by_initiator = direction == record.initiator;
            match record.tcp {
                TcpState::Open => record.tcp = TcpState::HalfClosed { by_initiator },
                TcpState::HalfClosed {
                    by_initiator: first,
                } if first != by_initiator => return TcpEvent::Closed,
                _ => {}
            }
        }
        TcpEvent::None
    }

    /// Stores `record`, or ends the flow as `tcp` says.
    fn store(
        &mut self,
        policy: &CompiledPolicy,
        key: FlowKey,
        mut record: FlowRecord,
        tcp: TcpEvent,
        at: Time,
        events: &mut Vec<FlowLogEvent>,
    ) {
        match tcp {
            TcpEvent::None => {
                self.flows.insert(key, record);
            }
            TcpEvent::Reset => self.remove(policy, key, record, at, events),
            TcpEvent::Closed => {
                // The record stays for the grace period, counting the last ACKs; its end is
                // reported when it goes.
                record.tcp = TcpState::Closed;
                self.flows.insert(key, record);
            }
        }
    }

    /// Removes a flow, reporting its end (`E`).
    fn remove(
        &mut self,
        policy: &CompiledPolicy,
        key: FlowKey,
        mut record: FlowRecord,
        at: Time,
        events: &mut Vec<FlowLogEvent>,
    ) {
        events.extend(self.report(policy, key, &mut record, FlowState::End, at));
        if self.flows.remove(&key).is_some() {
            self.per_direction[direction_index(record.initiator)] -= 1;
            self.stats.flows_ended += 1;
        }
    }

    /// A `C` or `E` tuple with the counters since the last report, which it resets.
    fn report(
        &self,
        policy: &CompiledPolicy,
        key: FlowKey,
        record: &mut FlowRecord,
        state: FlowState,
        at: Time,
    ) -> Option<FlowLogEvent> {
        let counters = FlowCounters {
            packets_sent: u64::from(record.packets_forward),
            bytes_sent: record.bytes_forward,
            packets_received: u64::from(record.packets_reverse),
            bytes_received: record.bytes_reverse,
        };
        record.packets_forward = 0;
        record.packets_reverse = 0;
        record.bytes_forward = 0;
        record.bytes_reverse = 0;
        record.last_report = at;
        event(
            policy,
            key,
            record.logged_by?,
            Access::Allow,
            state,
            at,
            Some(counters),
        )
    }

    /// Ends idle flows and closed flows past their grace period, and reports long flows
    /// (`C` every five minutes). Call it regularly with the current time.
    pub fn tick(&mut self, policy: &CompiledPolicy, now: Time, events: &mut Vec<FlowLogEvent>) {
        let timeout = timeout_secs(policy.policy());
        let keys: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, r)| {
                now.secs_since(r.last_seen) >= idle_limit(r, timeout)
                    || now.secs_since(r.last_report) >= CONTINUATION_SECS
            })
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            let Some(mut record) = self.flows.get(&key).copied() else {
                continue;
            };
            let limit = idle_limit(&record, timeout);
            if now.secs_since(record.last_seen) >= limit {
                self.remove(
                    policy,
                    key,
                    record,
                    record.last_seen.plus_secs(limit),
                    events,
                );
            } else {
                events.extend(self.report(policy, key, &mut record, FlowState::Continuing, now));
                self.flows.insert(key, record);
            }
        }
        self.denied.expire(now, timeout);
    }

    /// Re-evaluates every flow under a new policy, ending those it denies. Called when a rule
    /// changes in an NSG with `flushConnection` (reference §3.2); otherwise records are left alone.
    pub fn flush(&mut self, policy: &CompiledPolicy, now: Time, events: &mut Vec<FlowLogEvent>) {
        let keys: Vec<(FlowKey, FlowRecord)> = self.flows.iter().map(|(k, r)| (*k, *r)).collect();
        for (key, mut record) in keys {
            let flow = initiator_flow(key, record.initiator);
            let verdict = policy.classify(&flow);
            if verdict.access == Access::Deny {
                self.stats.flushed += 1;
                self.remove(policy, key, record, now, events);
            } else {
                record.logged_by = logging_rule(&verdict, record.initiator);
                self.flows.insert(key, record);
            }
        }
    }
}

fn timeout_secs(policy: &NicPolicy) -> u64 {
    u64::from(policy.flow_timeout_minutes) * 60
}

fn idle_limit(record: &FlowRecord, timeout: u64) -> u64 {
    if record.tcp == TcpState::Closed {
        TCP_CLOSE_GRACE_SECS
    } else {
        timeout
    }
}

/// The flow as its first packet stated it, for re-evaluation.
fn initiator_flow(key: FlowKey, initiator: Direction) -> Flow {
    let ports = protocol_has_ports(key.protocol);
    Flow {
        direction: initiator,
        protocol: key.protocol,
        local: Endpoint {
            ip: address_of(key.local, key.v6),
            port: ports.then_some(key.local_port),
        },
        remote: Endpoint {
            ip: address_of(key.remote, key.v6),
            port: ports.then_some(key.remote_port),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn log_event(
    policy: &CompiledPolicy,
    key: FlowKey,
    direction: Direction,
    verdict: &Verdict,
    access: Access,
    state: FlowState,
    at: Time,
    counters: Option<FlowCounters>,
) -> Option<FlowLogEvent> {
    if verdict.platform == Some(PlatformRule::BlockOutboundSmtp) {
        return None;
    }
    event(
        policy,
        key,
        logging_rule(verdict, direction)?,
        access,
        state,
        at,
        counters,
    )
}

#[allow(clippy::too_many_arguments)]
fn event(
    policy: &CompiledPolicy,
    key: FlowKey,
    rule: RuleAt,
    access: Access,
    state: FlowState,
    at: Time,
    counters: Option<FlowCounters>,
) -> Option<FlowLogEvent> {
    let nic = policy.policy();
    let initiator = rule.direction;
    let (stage, rule) = rule.resolve(nic)?;
    let flow = initiator_flow(key, initiator);
    let (source, destination) = flow.source_destination();
    Some(FlowLogEvent {
        time: at,
        nsg: stage.nsg.clone(),
        nsg_guid: None,
        rule_kind: rule.kind,
        rule_name: rule.name.clone(),
        mac: nic.mac_address.clone().unwrap_or_default(),
        src: source.ip,
        dst: destination.ip,
        src_port: source.port.unwrap_or(0),
        dst_port: destination.port.unwrap_or(0),
        protocol: key.protocol,
        direction: initiator,
        access,
        state,
        counters,
    })
}
