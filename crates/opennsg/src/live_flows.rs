//! From the kernel's flow events to flow log events (sans IO: events and time are passed in).
//!
//! `enforce` with flow logging renders allow rules that put their number in the connection's
//! conntrack mark and deny rules that log to nflog with their number in the prefix
//! (`nsg_nft::render::flow_logging`). [`LiveFlows`] turns what the kernel then reports into the
//! same [`FlowLogEvent`]s a replayed capture gives (docs/semantics.md D6, K11):
//!
//! * a new connection: a `B` tuple at each bound NIC whose half of the mark names a rule — the
//!   sender's NIC (outbound, low half) and the receiver's NIC (inbound, high half);
//! * a periodic dump: a `C` tuple for each connection reported at least `report_every` ago, with
//!   the packets and bytes since its previous tuple;
//! * a destroyed connection: an `E` tuple with the rest of its counters;
//! * a denied packet: a `D` tuple at the NIC the rule guards, once per flow and minute; and
//!   when a bound sender's outbound stage had allowed it (the packet's mark says which rule),
//!   the sender's side as well: `B` at its first packet, `E` with its packets once it has been
//!   quiet for `report_every` — conntrack never confirms such a connection, so no conntrack
//!   event tells of it.
//!
//! Counters are conntrack's (`nf_conntrack_acct`): packets and bytes of whole IP packets, "sent"
//! being the initiator's direction and "received" the reply direction.

use crate::owners::AddressOwners;
use ipnet::IpNet;
use nsg_model::model::NetworkInterface;
use nsg_model::rule::{Access, Direction};
use nsg_model::ResourceId;
use nsg_netfilter::{ConntrackEntry, ConntrackEvent, ConntrackEventKind, NflogPacket, Transport};
use nsg_nft::render::flow_logging::{mark_ids, parse_log_prefix, LoggedRule, RuleIds};
use nsg_policy::flow_log::{FlowCounters, FlowLogEvent, FlowState};
use nsg_policy::packet::Time;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// A bound NIC, as flow logs name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedNic {
    pub id: ResourceId,
    /// The subnets of its IP configurations (a VNet flow log of one of them, or of their VNet,
    /// covers the NIC).
    pub subnets: Vec<ResourceId>,
    pub addresses: Vec<IpNet>,
    /// Its MAC address, in any form flow logs normalise.
    pub mac: String,
}

impl LoggedNic {
    /// `nic` with `addresses`; its MAC is the NIC's `macAddress`, else `local_mac` (its
    /// interface's).
    pub fn new(nic: &NetworkInterface, addresses: Vec<IpNet>, local_mac: Option<String>) -> Self {
        LoggedNic {
            id: nic.id.clone(),
            subnets: nic
                .ip_configurations
                .iter()
                .map(|c| c.subnet.clone())
                .collect(),
            addresses,
            mac: nic.mac_address.clone().or(local_mac).unwrap_or_default(),
        }
    }

    /// `nic` with the addresses of its IP configurations.
    pub fn of(nic: &NetworkInterface) -> Self {
        let addresses = nic.ip_configurations.iter().map(|c| c.address).collect();
        LoggedNic::new(nic, addresses, None)
    }
}

/// A connection reported so far.
#[derive(Clone, Copy, Debug, Default)]
struct Reported {
    /// Counters (initiator's direction, reply direction) at its last tuple.
    sent: (u64, u64),
    received: (u64, u64),
    at: Time,
    /// Missing from the last dump: its destroy event may still be on its way, so it is forgotten
    /// only when a second dump misses it too.
    missing: bool,
}

/// A denied flow within the current minute, for logging it once.
type DeniedFlow = (u16, IpAddr, IpAddr, u8, u16, u16);

/// (source, destination, protocol, source port, destination port).
type Flow = (IpAddr, IpAddr, u8, u16, u16);

/// The most flows allowed out of a bound sender but denied in at a bound receiver that are
/// followed at once; beyond it the quietest is ended early.
pub const UNANSWERED_MAX: usize = 65_536;

/// The sender's side of a flow its receiver denied.
#[derive(Clone, Copy, Debug)]
struct Unanswered {
    rule: u16,
    packets: u64,
    bytes: u64,
    last: Time,
}

/// The state between the kernel's events and flow log events.
#[derive(Debug, Default)]
pub struct LiveFlows {
    nics: Vec<LoggedNic>,
    /// The NIC of each of their addresses.
    owners: AddressOwners,
    /// NSG id → its `resourceGuid`, written as `systemId`/`aclID` when known.
    nsg_guids: HashMap<ResourceId, String>,
    /// Connections with at least one logged side, by conntrack id.
    connections: HashMap<u32, Reported>,
    denied_minute: u64,
    denied: HashSet<DeniedFlow>,
    /// Flows allowed out of a bound sender and denied in at a bound receiver.
    unanswered: HashMap<Flow, Unanswered>,
}

impl LiveFlows {
    pub fn new(nics: Vec<LoggedNic>, nsg_guids: HashMap<ResourceId, String>) -> LiveFlows {
        LiveFlows {
            owners: owners_of(&nics),
            nics,
            nsg_guids,
            ..LiveFlows::default()
        }
    }

    /// Replaces the bound NICs and NSG guids after a new rendering; connections keep their
    /// counters.
    pub fn set_nics(&mut self, nics: Vec<LoggedNic>, nsg_guids: HashMap<ResourceId, String>) {
        self.owners = owners_of(&nics);
        self.nics = nics;
        self.nsg_guids = nsg_guids;
    }

    /// Connections being followed (memory is proportional to this), unanswered flows included.
    pub fn tracked(&self) -> usize {
        self.connections.len() + self.unanswered.len()
    }

    fn nic_of(&self, address: IpAddr) -> Option<&LoggedNic> {
        self.nics.get(self.owners.of(address)?)
    }

    /// A conntrack event: `B` for a new connection, `E` for a destroyed one.
    pub fn on_conntrack(
        &mut self,
        event: &ConntrackEvent,
        rules: &RuleIds,
        now: Time,
        out: &mut Vec<FlowLogEvent>,
    ) {
        let entry = &event.entry;
        match event.kind {
            ConntrackEventKind::New => {
                let before = out.len();
                self.connection_events(entry, rules, now, FlowState::Begin, None, out);
                if out.len() > before {
                    // A `B` tuple carries no counters: the first packets count in the next one.
                    self.connections.insert(
                        entry.id,
                        Reported {
                            at: now,
                            ..Reported::default()
                        },
                    );
                }
            }
            ConntrackEventKind::Destroy => {
                let previous = self.connections.remove(&entry.id).unwrap_or_default();
                let delta = delta(entry, &previous);
                self.connection_events(entry, rules, now, FlowState::End, Some(delta), out);
            }
        }
    }

    /// A dump of the conntrack table: `C` for each followed connection last reported at least
    /// `report_every_secs` ago that carried packets since (an idle connection writes nothing).
    /// A connection missing from two dumps in a row ended unseen (a lost event): it is
    /// forgotten without an `E`.
    pub fn on_dump(
        &mut self,
        entries: &[ConntrackEntry],
        rules: &RuleIds,
        now: Time,
        report_every_secs: u64,
        out: &mut Vec<FlowLogEvent>,
    ) {
        let mut alive = HashSet::new();
        for entry in entries {
            alive.insert(entry.id);
            let Some(&previous) = self.connections.get(&entry.id) else {
                continue;
            };
            if now.secs_since(previous.at) < report_every_secs {
                continue;
            }
            let delta = delta(entry, &previous);
            if delta.packets_sent + delta.packets_received == 0 {
                continue;
            }
            self.connection_events(entry, rules, now, FlowState::Continuing, Some(delta), out);
            let (sent, received) = totals(entry);
            self.connections.insert(
                entry.id,
                Reported {
                    sent,
                    received,
                    at: now,
                    missing: false,
                },
            );
        }
        self.end_unanswered(
            rules,
            now,
            |u| now.secs_since(u.last) >= report_every_secs,
            usize::MAX,
            out,
        );
        self.connections.retain(|id, reported| {
            if alive.contains(id) {
                reported.missing = false;
                return true;
            }
            let keep = !reported.missing;
            reported.missing = true;
            keep
        });
    }

    /// A packet a deny chain logged: a `D` tuple, once per flow and minute.
    pub fn on_denied(
        &mut self,
        packet: &NflogPacket,
        rules: &RuleIds,
        now: Time,
        out: &mut Vec<FlowLogEvent>,
    ) {
        let Some(id) = parse_log_prefix(&packet.prefix) else {
            return;
        };
        let Some(rule) = rules.rule(id).filter(|r| r.access == Access::Deny) else {
            return;
        };
        let tuple = &packet.packet;
        let (src_port, dst_port) = ports(tuple.transport);
        let flow = (tuple.src, tuple.dst, tuple.protocol, src_port, dst_port);
        if rule.direction == Direction::Inbound {
            self.sent_but_denied(packet, flow, rules, now, out);
        }
        let minute = now.secs() / 60;
        if minute != self.denied_minute {
            self.denied_minute = minute;
            self.denied.clear();
        }
        let key = (id, tuple.src, tuple.dst, tuple.protocol, src_port, dst_port);
        if !self.denied.insert(key) {
            return;
        }
        let local = match rule.direction {
            Direction::Inbound => tuple.dst,
            Direction::Outbound => tuple.src,
        };
        let Some(nic) = self.nic_of(local) else {
            return;
        };
        out.push(self.event(rule, nic, flow, now, FlowState::Begin, None));
    }

    /// The sender's side of a packet an inbound rule denied, if the packet's mark names the
    /// outbound rule of a bound sender that allowed it: `B` at the flow's first packet.
    fn sent_but_denied(
        &mut self,
        packet: &NflogPacket,
        flow: Flow,
        rules: &RuleIds,
        now: Time,
        out: &mut Vec<FlowLogEvent>,
    ) {
        let (Some(id), _) = mark_ids(packet.mark) else {
            return;
        };
        let Some(rule) = rules
            .rule(id)
            .filter(|r| r.direction == Direction::Outbound && r.access == Access::Allow)
        else {
            return;
        };
        if self.nic_of(flow.0).is_none() {
            return;
        }
        let bytes = u64::from(packet.length);
        if let Some(known) = self.unanswered.get_mut(&flow) {
            known.packets += 1;
            known.bytes += bytes;
            known.last = now;
            return;
        }
        if let Some(nic) = self.nic_of(flow.0) {
            out.push(self.event(rule, nic, flow, now, FlowState::Begin, None));
        }
        if self.unanswered.len() >= UNANSWERED_MAX {
            self.end_unanswered(rules, now, |_| true, 1, out);
        }
        self.unanswered.insert(
            flow,
            Unanswered {
                rule: id,
                packets: 1,
                bytes,
                last: now,
            },
        );
    }

    /// Ends (with `E` and the packets the sender sent) up to `limit` of the unanswered flows
    /// `ended` selects, quietest first.
    fn end_unanswered(
        &mut self,
        rules: &RuleIds,
        now: Time,
        ended: impl Fn(&Unanswered) -> bool,
        limit: usize,
        out: &mut Vec<FlowLogEvent>,
    ) {
        let mut selected: Vec<(Flow, Unanswered)> = self
            .unanswered
            .iter()
            .filter(|(_, u)| ended(u))
            .map(|(flow, u)| (*flow, *u))
            .collect();
        selected.sort_by_key(|(_, u)| u.last);
        selected.truncate(limit);
        for (flow, unanswered) in selected {
            self.unanswered.remove(&flow);
            let (Some(rule), Some(nic)) = (rules.rule(unanswered.rule), self.nic_of(flow.0)) else {
                continue;
            };
            let counters = FlowCounters {
                packets_sent: unanswered.packets,
                bytes_sent: unanswered.bytes,
                packets_received: 0,
                bytes_received: 0,
            };
            out.push(self.event(rule, nic, flow, now, FlowState::End, Some(counters)));
        }
    }

    /// The tuples of one connection at its logged NICs.
    fn connection_events(
        &self,
        entry: &ConntrackEntry,
        rules: &RuleIds,
        now: Time,
        state: FlowState,
        counters: Option<FlowCounters>,
        out: &mut Vec<FlowLogEvent>,
    ) {
        let original = &entry.original;
        let (src_port, dst_port) = ports(original.transport);
        let flow = (
            original.src,
            original.dst,
            original.protocol,
            src_port,
            dst_port,
        );
        let (outbound, inbound) = mark_ids(entry.mark);
        for (id, local, direction) in [
            (outbound, original.src, Direction::Outbound),
            (inbound, original.dst, Direction::Inbound),
        ] {
            let Some(rule) = id.and_then(|id| rules.rule(id)) else {
                continue;
            };
            if rule.direction != direction || rule.access != Access::Allow {
                continue;
            }
            let Some(nic) = self.nic_of(local) else {
                continue;
            };
            out.push(self.event(rule, nic, flow, now, state, counters));
        }
    }

    fn event(
        &self,
        rule: &LoggedRule,
        nic: &LoggedNic,
        (src, dst, protocol, src_port, dst_port): (IpAddr, IpAddr, u8, u16, u16),
        now: Time,
        state: FlowState,
        counters: Option<FlowCounters>,
    ) -> FlowLogEvent {
        FlowLogEvent {
            time: now,
            nsg: rule.nsg.clone(),
            nsg_guid: self.nsg_guids.get(&rule.nsg).cloned(),
            rule_kind: rule.kind,
            rule_name: rule.name.clone(),
            mac: nic.mac.clone(),
            src,
            dst,
            src_port,
            dst_port,
            protocol,
            direction: rule.direction,
            access: rule.access,
            state,
            counters,
        }
    }
}

fn owners_of(nics: &[LoggedNic]) -> AddressOwners {
    AddressOwners::new(nics.iter().map(|nic| nic.addresses.as_slice()))
}

/// Ports of a tuple; ICMP and other protocols have none (0, 0).
fn ports(transport: Transport) -> (u16, u16) {
    match transport {
        Transport::Ports { src, dst } => (src, dst),
        Transport::Icmp { .. } | Transport::None => (0, 0),
    }
}

/// (packets, bytes) in the initiator's direction and in the reply direction.
fn totals(entry: &ConntrackEntry) -> ((u64, u64), (u64, u64)) {
    let pair = |c: Option<nsg_netfilter::Counters>| c.map_or((0, 0), |c| (c.packets, c.bytes));
    (pair(entry.counters_original), pair(entry.counters_reply))
}

/// The counters since `previous`.
fn delta(entry: &ConntrackEntry, previous: &Reported) -> FlowCounters {
    let (sent, received) = totals(entry);
    FlowCounters {
        packets_sent: sent.0.saturating_sub(previous.sent.0),
        bytes_sent: sent.1.saturating_sub(previous.sent.1),
        packets_received: received.0.saturating_sub(previous.received.0),
        bytes_received: received.1.saturating_sub(previous.received.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsg_model::rule::RuleKind;
    use nsg_netfilter::{Counters, Tuple};

    const NSG: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/";

    fn rule(nsg: &str, name: &str, direction: Direction, access: Access) -> LoggedRule {
        LoggedRule {
            nsg: ResourceId::parse(&format!("{NSG}{nsg}")).expect("test id"),
            kind: RuleKind::Custom,
            name: name.to_string(),
            direction,
            access,
        }
    }

    /// vm1 (10.0.1.4) and vm2 (10.0.1.5) are bound; 203.0.113.9 is outside.
    fn setup() -> (LiveFlows, RuleIds, [u16; 4]) {
        let nic = |address: &str, mac: &str| {
            LoggedNic {
            id: ResourceId::parse(&format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/{mac}")).expect("test id"),
            subnets: Vec::new(),
            addresses: vec![address.parse().expect("test net")],
            mac: mac.to_string(),
        }
        };
        let flows = LiveFlows::new(
            vec![
                nic("10.0.1.4/32", "00-0D-3A-00-00-01"),
                nic("10.0.1.5/32", "00-0D-3A-00-00-02"),
            ],
            HashMap::new(),
        );
        let mut ids = RuleIds::default();
        let numbers = [
            rule("nsg1", "allow-out", Direction::Outbound, Access::Allow),
            rule("nsg1", "allow-in", Direction::Inbound, Access::Allow),
            rule("nsg1", "deny-in", Direction::Inbound, Access::Deny),
            rule("nsg1", "deny-out", Direction::Outbound, Access::Deny),
        ]
        .map(|r| ids.id(&r).expect("numbered"));
        (flows, ids, numbers)
    }

    fn entry(
        id: u32,
        src: &str,
        dst: &str,
        mark: u32,
        sent: (u64, u64),
        received: (u64, u64),
    ) -> ConntrackEntry {
        let tuple = |src: &str, dst: &str, sport: u16, dport: u16| Tuple {
            src: src.parse().expect("test ip"),
            dst: dst.parse().expect("test ip"),
            protocol: 6,
            transport: Transport::Ports {
                src: sport,
                dst: dport,
            },
        };
        ConntrackEntry {
            id,
            original: tuple(src, dst, 40000, 443),
            reply: tuple(dst, src, 443, 40000),
            mark,
            zone: 0,
            status: 0,
            counters_original: Some(Counters {
                packets: sent.0,
                bytes: sent.1,
            }),
            counters_reply: Some(Counters {
                packets: received.0,
                bytes: received.1,
            }),
            start: None,
            stop: None,
        }
    }

    fn event(kind: ConntrackEventKind, entry: ConntrackEntry) -> ConntrackEvent {
        ConntrackEvent { kind, entry }
    }

    /// (state, direction, rule, MAC, counters) of an event.
    type Summary = (char, char, String, String, Option<[u64; 4]>);

    fn summary(events: &[FlowLogEvent]) -> Vec<Summary> {
        events
            .iter()
            .map(|e| {
                (
                    if e.access == Access::Deny {
                        'D'
                    } else {
                        e.state.letter()
                    },
                    if e.direction == Direction::Inbound {
                        'I'
                    } else {
                        'O'
                    },
                    e.rule_name.clone(),
                    e.mac.clone(),
                    e.counters.map(|c| {
                        [
                            c.packets_sent,
                            c.bytes_sent,
                            c.packets_received,
                            c.bytes_received,
                        ]
                    }),
                )
            })
            .collect()
    }

    #[test]
    fn a_connection_between_two_bound_nics_is_logged_at_both() {
        let (mut flows, ids, [out, inb, ..]) = setup();
        let mark = u32::from(out) | u32::from(inb) << 16;
        let e = |sent, received| entry(7, "10.0.1.4", "10.0.1.5", mark, sent, received);
        let mut events = Vec::new();
        let t0 = Time::from_secs(1_000_000);
        flows.on_conntrack(
            &event(ConntrackEventKind::New, e((1, 60), (0, 0))),
            &ids,
            t0,
            &mut events,
        );
        // Reported after 300 s: the counters so far, the first packet included.
        flows.on_dump(
            &[e((10, 1000), (8, 4000))],
            &ids,
            t0.plus_secs(200),
            300,
            &mut events,
        );
        flows.on_dump(
            &[e((10, 1000), (8, 4000))],
            &ids,
            t0.plus_secs(300),
            300,
            &mut events,
        );
        flows.on_conntrack(
            &event(ConntrackEventKind::Destroy, e((12, 1104), (9, 4052))),
            &ids,
            t0.plus_secs(310),
            &mut events,
        );
        let vm1 = "00-0D-3A-00-00-01".to_string();
        let vm2 = "00-0D-3A-00-00-02".to_string();
        assert_eq!(
            summary(&events),
            vec![
                ('B', 'O', "allow-out".into(), vm1.clone(), None),
                ('B', 'I', "allow-in".into(), vm2.clone(), None),
                (
                    'C',
                    'O',
                    "allow-out".into(),
                    vm1.clone(),
                    Some([10, 1000, 8, 4000])
                ),
                (
                    'C',
                    'I',
                    "allow-in".into(),
                    vm2.clone(),
                    Some([10, 1000, 8, 4000])
                ),
                ('E', 'O', "allow-out".into(), vm1, Some([2, 104, 1, 52])),
                ('E', 'I', "allow-in".into(), vm2, Some([2, 104, 1, 52])),
            ]
        );
        assert_eq!(flows.tracked(), 0);
    }

    #[test]
    fn connections_without_a_logged_rule_are_not_followed() {
        let (mut flows, ids, [out, ..]) = setup();
        let mut events = Vec::new();
        let now = Time::from_secs(1_000_000);
        for (mark, src, dst) in [
            (0, "10.0.1.4", "203.0.113.9"),
            // A number for the wrong direction's half, or a number no rule has.
            (u32::from(out) << 16, "203.0.113.9", "10.0.1.4"),
            (999, "10.0.1.4", "203.0.113.9"),
            // The mark names a rule but the address is no bound NIC's.
            (u32::from(out), "192.0.2.1", "203.0.113.9"),
        ] {
            flows.on_conntrack(
                &event(
                    ConntrackEventKind::New,
                    entry(1, src, dst, mark, (1, 60), (0, 0)),
                ),
                &ids,
                now,
                &mut events,
            );
        }
        assert_eq!(summary(&events), vec![]);
        assert_eq!(flows.tracked(), 0);
    }

    #[test]
    fn a_connection_missing_from_two_dumps_is_forgotten() {
        let (mut flows, ids, [out, ..]) = setup();
        let mut events = Vec::new();
        let now = Time::from_secs(1_000_000);
        flows.on_conntrack(
            &event(
                ConntrackEventKind::New,
                entry(
                    3,
                    "10.0.1.4",
                    "203.0.113.9",
                    u32::from(out),
                    (1, 60),
                    (0, 0),
                ),
            ),
            &ids,
            now,
            &mut events,
        );
        assert_eq!(flows.tracked(), 1);
        flows.on_dump(&[], &ids, now.plus_secs(600), 300, &mut events);
        assert_eq!(flows.tracked(), 1, "its destroy event may be on its way");
        flows.on_dump(&[], &ids, now.plus_secs(900), 300, &mut events);
        assert_eq!(flows.tracked(), 0);
        assert_eq!(events.len(), 1);
    }

    /// Regression: a dump taken after the kernel destroyed a connection, but before its
    /// destroy event was read, made the `E` carry the connection's totals instead of the rest.
    #[test]
    fn an_end_read_after_a_dump_that_missed_it_carries_only_the_rest() {
        let (mut flows, ids, [out, ..]) = setup();
        let mut events = Vec::new();
        let t0 = Time::from_secs(1_000_000);
        let e =
            |sent, received| entry(9, "10.0.1.4", "203.0.113.9", u32::from(out), sent, received);
        flows.on_conntrack(
            &event(ConntrackEventKind::New, e((1, 60), (0, 0))),
            &ids,
            t0,
            &mut events,
        );
        flows.on_dump(
            &[e((5, 500), (4, 400))],
            &ids,
            t0.plus_secs(10),
            5,
            &mut events,
        );
        // Idle since: no tuple.
        flows.on_dump(
            &[e((5, 500), (4, 400))],
            &ids,
            t0.plus_secs(20),
            5,
            &mut events,
        );
        flows.on_dump(&[], &ids, t0.plus_secs(30), 5, &mut events);
        flows.on_conntrack(
            &event(ConntrackEventKind::Destroy, e((7, 604), (5, 452))),
            &ids,
            t0.plus_secs(31),
            &mut events,
        );
        let counters: Vec<_> = summary(&events).into_iter().map(|s| (s.0, s.4)).collect();
        assert_eq!(
            counters,
            vec![
                ('B', None),
                ('C', Some([5, 500, 4, 400])),
                ('E', Some([2, 104, 1, 52])),
            ]
        );
    }

    /// The kernel drops a packet a bound receiver denies before conntrack confirms its
    /// connection, so the sender's side (its NSG allowed the flow out) comes from the logged
    /// packet's mark: `B` at the first packet, `E` with all it sent once it is quiet.
    #[test]
    fn a_flow_a_bound_receiver_denies_is_logged_at_its_sender_too() {
        let (mut flows, ids, [allow_out, _, deny_in, _]) = setup();
        let packet = NflogPacket {
            prefix: format!("opennsg {deny_in} "),
            group: 7433,
            hw_protocol: 0x0800,
            indev: None,
            outdev: None,
            timestamp: None,
            mark: u32::from(allow_out),
            packet: Tuple {
                src: "10.0.1.4".parse().expect("test ip"),
                dst: "10.0.1.5".parse().expect("test ip"),
                protocol: 6,
                transport: Transport::Ports {
                    src: 4000,
                    dst: 8080,
                },
            },
            length: 60,
            sequence: None,
        };
        let mut events = Vec::new();
        let t0 = Time::from_secs(1_000_000);
        // A SYN and two retransmissions.
        for at in [0, 1, 3] {
            flows.on_denied(&packet, &ids, t0.plus_secs(at), &mut events);
        }
        assert_eq!(flows.tracked(), 1);
        flows.on_dump(&[], &ids, t0.plus_secs(4), 5, &mut events);
        flows.on_dump(&[], &ids, t0.plus_secs(9), 5, &mut events);
        let vm1 = "00-0D-3A-00-00-01".to_string();
        let vm2 = "00-0D-3A-00-00-02".to_string();
        assert_eq!(
            summary(&events),
            vec![
                ('B', 'O', "allow-out".into(), vm1.clone(), None),
                ('D', 'I', "deny-in".into(), vm2, None),
                ('E', 'O', "allow-out".into(), vm1, Some([3, 180, 0, 0])),
            ]
        );
        assert_eq!(flows.tracked(), 0);
    }

    #[test]
    fn denied_packets_are_logged_once_per_flow_and_minute() {
        let (mut flows, ids, [_, _, deny_in, deny_out]) = setup();
        let packet = |id: u16, src: &str, dst: &str, sport: u16| NflogPacket {
            prefix: format!("opennsg {id} "),
            group: 7433,
            hw_protocol: 0x0800,
            indev: None,
            outdev: None,
            timestamp: None,
            mark: 0,
            packet: Tuple {
                src: src.parse().expect("test ip"),
                dst: dst.parse().expect("test ip"),
                protocol: 6,
                transport: Transport::Ports {
                    src: sport,
                    dst: 22,
                },
            },
            length: 60,
            sequence: None,
        };
        let mut events = Vec::new();
        let t0 = Time::from_secs(1_000_020);
        for (p, at) in [
            // A SYN and its two retransmissions: one flow.
            (packet(deny_in, "203.0.113.9", "10.0.1.4", 5000), t0),
            (
                packet(deny_in, "203.0.113.9", "10.0.1.4", 5000),
                t0.plus_secs(1),
            ),
            (
                packet(deny_in, "203.0.113.9", "10.0.1.4", 5000),
                t0.plus_secs(3),
            ),
            // Another source port: another flow.
            (
                packet(deny_in, "203.0.113.9", "10.0.1.4", 5001),
                t0.plus_secs(3),
            ),
            // The next minute: logged again.
            (
                packet(deny_in, "203.0.113.9", "10.0.1.4", 5000),
                t0.plus_secs(60),
            ),
            // Outbound deny, logged at the sender.
            (
                packet(deny_out, "10.0.1.5", "203.0.113.9", 6000),
                t0.plus_secs(60),
            ),
            // Not ours, or an allow rule's number: ignored.
            (
                NflogPacket {
                    prefix: "other 1 ".into(),
                    ..packet(deny_in, "203.0.113.9", "10.0.1.4", 1)
                },
                t0,
            ),
            (packet(1, "203.0.113.9", "10.0.1.4", 2), t0),
        ] {
            flows.on_denied(&p, &ids, at, &mut events);
        }
        let vm1 = "00-0D-3A-00-00-01".to_string();
        assert_eq!(
            summary(&events),
            vec![
                ('D', 'I', "deny-in".into(), vm1.clone(), None),
                ('D', 'I', "deny-in".into(), vm1.clone(), None),
                ('D', 'I', "deny-in".into(), vm1, None),
                (
                    'D',
                    'O',
                    "deny-out".into(),
                    "00-0D-3A-00-00-02".into(),
                    None
                ),
            ]
        );
    }
}
