//! The flow table of one NIC: Azure's flow records (reference §3.2–3.4), sans-IO.
//!
//! The first packet of a connection is decided by the policy; an allowed connection gets a
//! record keyed by its normalised 5-tuple (protocol, local and remote address and port), so its
//! later packets — in both directions, which is what makes return traffic pass — are forwarded
//! without rule evaluation. Records end on TCP RST, shortly after FIN from both sides, or after
//! the idle timeout (the VNet's `flowTimeoutInMinutes`, 4 by default). A new policy leaves records alone
//! unless an NSG of the NIC has `flushConnection`, in which case every record is re-evaluated.
//! Capacity is bounded per direction (500,000 by default, as Azure): when full, new flows are
//! refused and counted while established ones keep working.
//!
//! A packet without a record starts a flow only if it can begin a connection: a TCP SYN, or a
//! plain ACK (picked up mid-stream); a TCP SYN-ACK, FIN, RST or segment without flags is dropped
//! and logged by no one ([`PacketOutcome::WithoutFlow`]), as Linux conntrack, which the kernel
//! enforcement uses, marks such packets invalid. Denied flows have no record, but their attempts
//! are remembered for the idle timeout ([`denied`]) so that retries are one flow, logged once a
//! minute.
//!
//! Time is an argument everywhere; events for flow logs are returned, not written.
//!
//! Storage: records live in an open-addressing hash table of the flow table's own ([`map`]),
//! keys and records inline. An IPv4 flow (key packed into 16 bytes, record 48 bytes with times in
//! microseconds as before) takes one 64-byte cache line plus a one-byte tag; IPv6 flows are in a
//! second table with 88-byte entries. [`FlowTable::process_batch`] processes packets in a pipeline
//! that prefetches the tags and entries of packets a few groups ahead, so the cache misses of a
//! random mix of flows overlap instead of following one another.

mod denied;
mod map;
#[cfg(test)]
mod reference;

use crate::compiled::{CompiledPolicy, Verdict};
use crate::evaluate::{Endpoint, Flow, PlatformRule};
use crate::flow_log::{FlowCounters, FlowLogEvent, FlowState};
use crate::packet::{IcmpKind, PacketMeta, Time};
use crate::resolve::{NicPolicy, ResolvedRule, Stage};
use denied::DeniedFlows;
pub use denied::DENIED_FLOWS_REMEMBERED;
use map::{FlowMap, MapEntry};
use nsg_model::rule::{ip_proto, protocol_has_ports, Access, Direction};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Azure's limit of concurrent flows per NIC, per direction (reference §3.4).
pub const DEFAULT_CAPACITY_PER_DIRECTION: usize = 500_000;
/// How long a TCP flow closed by FIN from both sides lives on to count its last ACKs; it ends
/// (its `E` tuple) this long after its last packet.
pub const TCP_CLOSE_GRACE_SECS: u64 = 10;
/// Flow logs report long flows every five minutes (`C` tuples).
pub const CONTINUATION_SECS: u64 = 300;

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

/// A [`FlowKey`] of an IPv4 flow packed into 16 bytes: the addresses, then the ports and the
/// protocol. Every key whose local side is IPv4 and whose remote address is IPv4 (or IPv4-mapped)
/// has one, and only those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Key4 {
    /// Local address in the high half, remote in the low.
    addresses: u64,
    /// Local port, remote port, protocol, from the high bits down.
    rest: u64,
}

impl Key4 {
    fn new(
        local: Ipv4Addr,
        remote: Ipv4Addr,
        local_port: u16,
        remote_port: u16,
        protocol: u8,
    ) -> Key4 {
        Key4 {
            addresses: u64::from(u32::from(local)) << 32 | u64::from(u32::from(remote)),
            rest: u64::from(local_port) << 32 | u64::from(remote_port) << 16 | u64::from(protocol),
        }
    }

    fn wide(self) -> FlowKey {
        let local = Ipv4Addr::from((self.addresses >> 32) as u32);
        let remote = Ipv4Addr::from(self.addresses as u32);
        FlowKey {
            local: local.to_ipv6_mapped().octets(),
            remote: remote.to_ipv6_mapped().octets(),
            local_port: (self.rest >> 32) as u16,
            remote_port: (self.rest >> 16) as u16,
            protocol: self.rest as u8,
            v6: false,
        }
    }

    #[inline]
    fn hash(&self) -> u64 {
        mix(mix(SEED, self.addresses), self.rest)
    }
}

impl FlowKey {
    /// The packed form, when the key has one.
    fn narrow(&self) -> Option<Key4> {
        if self.v6 {
            return None;
        }
        let local = Ipv6Addr::from(self.local).to_ipv4_mapped()?;
        let remote = Ipv6Addr::from(self.remote).to_ipv4_mapped()?;
        Some(Key4::new(
            local,
            remote,
            self.local_port,
            self.remote_port,
            self.protocol,
        ))
    }

    fn hash(&self) -> u64 {
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let rest = u64::from(self.local_port) << 32
            | u64::from(self.remote_port) << 16
            | u64::from(self.protocol) << 8
            | u64::from(self.v6);
        [
            word(&self.local[..8]),
            word(&self.local[8..]),
            word(&self.remote[..8]),
            word(&self.remote[8..]),
            rest,
        ]
        .into_iter()
        .fold(SEED, mix)
    }
}

const SEED: u64 = 0x243F_6A88_85A3_08D3;

/// One round of hashing: `word` folded into `state` by a 64×64→128-bit multiplication whose
/// halves are xored (every output bit depends on every input bit). Deterministic, like the
/// FxHash the table used before: flow tables must replay identically.
#[inline]
fn mix(state: u64, word: u64) -> u64 {
    let product = u128::from(state ^ word) * 0x9E37_79B9_7F4A_7C15_u128;
    (product as u64) ^ ((product >> 64) as u64)
}

/// A packet's flow key at a NIC, hashed: computed once per packet.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// No flow identity (ICMP messages other than echo).
    None,
    V4(Key4, u64),
    V6(FlowKey, u64),
}

impl Probe {
    fn of(key: FlowKey) -> Probe {
        match key.narrow() {
            Some(k) => Probe::V4(k, k.hash()),
            None => Probe::V6(key, key.hash()),
        }
    }

    fn wide(&self) -> Option<FlowKey> {
        match self {
            Probe::None => None,
            Probe::V4(k, _) => Some(k.wide()),
            Probe::V6(k, _) => Some(*k),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    None,
    V4,
    V6,
}

/// A packet in [`FlowTable::process_batch`]'s pipeline: its probe, kept whole for IPv4 only (the
/// rest is recomputed when the packet is processed; only the hash serves before).
#[derive(Clone, Copy, Debug)]
struct Ahead {
    key: Key4,
    hash: u64,
    family: Family,
}

impl Ahead {
    const NONE: Ahead = Ahead {
        key: Key4 {
            addresses: 0,
            rest: 0,
        },
        hash: 0,
        family: Family::None,
    };
}

/// The local and remote address and port of `packet`, crossing a NIC in `direction`.
#[inline]
fn sides(packet: &PacketMeta, direction: Direction) -> (IpAddr, IpAddr, Option<u16>, Option<u16>) {
    match direction {
        Direction::Outbound => (packet.src, packet.dst, packet.src_port, packet.dst_port),
        Direction::Inbound => (packet.dst, packet.src, packet.dst_port, packet.src_port),
    }
}

/// The flow key of `packet` at a NIC: `direction` says whether it leaves the NIC (outbound) or
/// arrives. ICMP echo requests and replies form a flow by their identifier; other ICMP messages
/// have no flow identity and are decided one by one.
#[inline]
fn probe(packet: &PacketMeta, direction: Direction) -> Probe {
    // The common case inline: TCP or UDP over IPv4.
    if let (IpAddr::V4(src), IpAddr::V4(dst)) = (packet.src, packet.dst) {
        if protocol_has_ports(packet.protocol) {
            let (src_port, dst_port) = (packet.src_port.unwrap_or(0), packet.dst_port.unwrap_or(0));
            let key = match direction {
                Direction::Outbound => Key4::new(src, dst, src_port, dst_port, packet.protocol),
                Direction::Inbound => Key4::new(dst, src, dst_port, src_port, packet.protocol),
            };
            return Probe::V4(key, key.hash());
        }
    }
    probe_other(packet, direction)
}

/// [`probe`] for everything else.
#[inline(never)]
fn probe_other(packet: &PacketMeta, direction: Direction) -> Probe {
    let (local_ip, remote_ip, local_port, remote_port) = sides(packet, direction);
    let (local_port, remote_port) = match (packet.protocol, packet.icmp) {
        (p, _) if protocol_has_ports(p) => (local_port.unwrap_or(0), remote_port.unwrap_or(0)),
        (
            ip_proto::ICMP | ip_proto::ICMPV6,
            Some(IcmpKind::EchoRequest { id } | IcmpKind::EchoReply { id }),
        ) => (id, 0),
        (ip_proto::ICMP | ip_proto::ICMPV6, _) => return Probe::None,
        _ => (0, 0),
    };
    if let (IpAddr::V4(local), IpAddr::V4(remote)) = (local_ip, remote_ip) {
        let key = Key4::new(local, remote, local_port, remote_port, packet.protocol);
        return Probe::V4(key, key.hash());
    }
    Probe::of(FlowKey {
        local: address_bytes(local_ip),
        remote: address_bytes(remote_ip),
        local_port,
        remote_port,
        protocol: packet.protocol,
        v6: local_ip.is_ipv6(),
    })
}

/// The flow of `packet` at a NIC, for the policy.
fn flow_of(packet: &PacketMeta, direction: Direction) -> Flow {
    let (local_ip, remote_ip, local_port, remote_port) = sides(packet, direction);
    let ports = protocol_has_ports(packet.protocol);
    Flow {
        direction,
        protocol: packet.protocol,
        local: Endpoint {
            ip: local_ip,
            port: if ports { local_port } else { None },
        },
        remote: Endpoint {
            ip: remote_ip,
            port: if ports { remote_port } else { None },
        },
    }
}

/// Whether `packet`, which has no flow record, may start one (D2). TCP follows Linux conntrack's
/// state table for a connection it has no entry for: a SYN opens one, a plain ACK picks one up
/// mid-stream (`nf_conntrack_tcp_loose`, on by default), and a SYN-ACK, a FIN, a RST or a
/// segment without flags is invalid. The first packet of every other protocol starts a flow.
fn can_start_a_flow(packet: &PacketMeta) -> bool {
    // Neither FIN nor RST, and SYN or ACK but not both.
    packet
        .tcp_flags
        .is_none_or(|flags| !flags.fin && !flags.rst && flags.syn != flags.ack)
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

/// A rule of a NIC's policy: the `rule`-th rule of the `stage`-th stage of `direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleAt {
    pub direction: Direction,
    pub stage: u8,
    pub rule: u16,
}

impl RuleAt {
    /// The stage and rule in `policy`.
    pub fn resolve(self, policy: &NicPolicy) -> Option<(&Stage, &ResolvedRule)> {
        let stage = policy.stages(self.direction).get(usize::from(self.stage))?;
        Some((stage, stage.rules.get(usize::from(self.rule))?))
    }
}

/// The rule that logs a flow of `direction` decided by `verdict`: a deny by the denying stage,
/// an allow by the last allowing stage — in both cases the last stage with a rule (reference
/// §6.2). None when no NSG or a platform rule decided.
pub fn logging_rule(verdict: &Verdict, direction: Direction) -> Option<RuleAt> {
    if verdict.platform.is_some() {
        return None;
    }
    verdict
        .stage_rules
        .iter()
        .enumerate()
        .rev()
        .find_map(|(stage, rule)| {
            rule.map(|rule| RuleAt {
                direction,
                stage: stage as u8,
                rule,
            })
        })
}

/// What happened to a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketOutcome {
    /// Part of a flow with a record: forwarded without rule evaluation. Carries the rule that
    /// allowed the flow, if an NSG rule did.
    Established(Option<RuleAt>),
    /// The first packet of a flow the policy allows: forwarded, a record created.
    NewFlow(Verdict),
    /// Decided by the policy and allowed without a record (ICMP messages other than echo).
    AllowedStateless(Verdict),
    /// Denied by the policy. `first_attempt` is false for a repeated attempt of a denied flow
    /// (a retransmitted SYN) within the idle timeout of the previous one: the same denied flow.
    Denied {
        verdict: Verdict,
        first_attempt: bool,
    },
    /// Allowed by the policy but dropped: the table is full in this direction.
    TableFull,
    /// A TCP packet of no flow that cannot start one (a SYN-ACK, FIN or RST without a record):
    /// dropped before any rule, as conntrack's `invalid`.
    WithoutFlow,
}

impl PacketOutcome {
    pub fn forwarded(&self) -> bool {
        matches!(
            self,
            PacketOutcome::Established(_)
                | PacketOutcome::NewFlow(_)
                | PacketOutcome::AllowedStateless(_)
        )
    }
}

/// Counters a flow table keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub flows_created: u64,
    pub flows_ended: u64,
    /// New flows refused because the table was full.
    pub refused: u64,
    /// Flows ended by re-evaluation after a rule change (`flushConnection`).
    pub flushed: u64,
}

/// An IPv4 flow: key and record in one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Slot4 {
    key: Key4,
    record: FlowRecord,
}

/// Any other flow.
#[derive(Clone, Copy, Debug)]
struct Slot6 {
    key: FlowKey,
    record: FlowRecord,
}

const _: () = assert!(std::mem::size_of::<Slot4>() == 64);

/// What fills vacant slots.
const NO_RECORD: FlowRecord = FlowRecord {
    last_seen: Time(0),
    last_report: Time(0),
    packets_forward: 0,
    packets_reverse: 0,
    bytes_forward: 0,
    bytes_reverse: 0,
    initiator: Direction::Inbound,
    tcp: TcpState::Open,
    logged_by: None,
};

impl MapEntry for Slot4 {
    type Key = Key4;
    const VACANT: Slot4 = Slot4 {
        key: Key4 {
            addresses: 0,
            rest: 0,
        },
        record: NO_RECORD,
    };
    #[inline]
    fn key(&self) -> &Key4 {
        &self.key
    }
    #[inline]
    fn hash(key: &Key4) -> u64 {
        key.hash()
    }
}

impl MapEntry for Slot6 {
    type Key = FlowKey;
    const VACANT: Slot6 = Slot6 {
        key: FlowKey {
            local: [0; 16],
            remote: [0; 16],
            local_port: 0,
            remote_port: 0,
            protocol: 0,
            v6: false,
        },
        record: NO_RECORD,
    };
    #[inline]
    fn key(&self) -> &FlowKey {
        &self.key
    }
    #[inline]
    fn hash(key: &FlowKey) -> u64 {
        key.hash()
    }
}

/// Where a record is: its table and slot. Valid until the next insert or removal.
#[derive(Clone, Copy, Debug)]
enum Loc {
    V4(usize),
    V6(usize),
}

/// [`FlowTable::process_batch`] works on groups of this many packets.
const GROUP: usize = 8;
/// The ring of packets in flight in [`FlowTable::process_batch`]: `TAGS_AHEAD + 1` groups,
/// rounded up to a power of two.
const RING: usize = 32;
/// How many groups ahead tags, then entries, are prefetched.
const TAGS_AHEAD: usize = 3;
const SLOTS_AHEAD: usize = 2;
const _: () = assert!(RING.is_power_of_two() && RING >= (TAGS_AHEAD + 1) * GROUP);

/// The flow records of one NIC.
pub struct FlowTable {
    v4: FlowMap<Slot4>,
    v6: FlowMap<Slot6>,
    /// Recently denied flows, so that retries are one flow, logged once a minute.
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

impl Default for FlowTable {
    fn default() -> Self {
        FlowTable::with_capacity(DEFAULT_CAPACITY_PER_DIRECTION)
    }
}

impl FlowTable {
    pub fn with_capacity(capacity_per_direction: usize) -> FlowTable {
        FlowTable {
            v4: FlowMap::new(),
            v6: FlowMap::new(),
            denied: DeniedFlows::with_capacity(DENIED_FLOWS_REMEMBERED),
            capacity_per_direction,
            per_direction: [0, 0],
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn stats(&self) -> TableStats {
        self.stats
    }
    /// Flows initiated in `direction`.
    pub fn flows_in(&self, direction: Direction) -> usize {
        self.per_direction[direction_index(direction)]
    }
    /// Denied flows remembered, at most [`DENIED_FLOWS_REMEMBERED`].
    pub fn denied_flows(&self) -> usize {
        self.denied.len()
    }

    /// Bytes the table's storage takes, spare capacity included: entries and tags of both
    /// tables (the table of denied flows aside).
    pub fn allocated_bytes(&self) -> usize {
        self.v4.allocated_bytes() + self.v6.allocated_bytes()
    }

    /// Bytes one IPv4 record costs: key and record (one cache line), and its tag.
    pub const fn bytes_per_flow() -> usize {
        std::mem::size_of::<Slot4>() + 1
    }

    /// Bytes one IPv6 record costs: key, record and tag.
    pub const fn bytes_per_flow_v6() -> usize {
        std::mem::size_of::<Slot6>() + 1
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
        let probe = probe(packet, direction);
        // Most keys sit in their home slot: load it while the tags are read.
        if let Probe::V4(_, hash) = probe {
            self.v4.prefetch_home(hash);
        }
        self.process_probe(policy, packet, direction, &probe, events)
    }

    /// Processes `packets` in order, exactly as many calls of [`FlowTable::process`] would,
    /// appending their outcomes to `outcomes` and flow log events to `events`; faster on many
    /// flows, as the memory accesses of packets a few places apart overlap. The first packets of
    /// a batch have nothing to overlap with: batches of 64 packets or more come close to full speed.
    pub fn process_batch(
        &mut self,
        policy: &CompiledPolicy,
        packets: &[(PacketMeta, Direction)],
        events: &mut Vec<FlowLogEvent>,
        outcomes: &mut Vec<PacketOutcome>,
    ) {
        outcomes.reserve(packets.len());
        // In groups of `GROUP` packets: at step g, the probes of group g + TAGS_AHEAD are
        // computed and their tags prefetched, the entries of group g + SLOTS_AHEAD prefetched
        // (their tags are in cache by then), and group g processed. Each phase is a short loop,
        // so its prefetches are in flight together. Prefetches are only hints: the table may
        // change in between, and processing looks up afresh.
        let mut ring = [Ahead::NONE; RING];
        let group = |g: usize| (g * GROUP).min(packets.len())..((g + 1) * GROUP).min(packets.len());
        for g in 0..TAGS_AHEAD {
            self.look_ahead(&packets[group(g)], &mut ring, g * GROUP);
        }
        for g in 0..SLOTS_AHEAD {
            for i in group(g) {
                self.prefetch_slot(&ring[i % RING]);
            }
        }
        for g in 0..packets.len().div_ceil(GROUP) {
            let next = g + TAGS_AHEAD;
            self.look_ahead(&packets[group(next)], &mut ring, next * GROUP);
            for i in group(g + SLOTS_AHEAD) {
                self.prefetch_slot(&ring[i % RING]);
            }
            for i in group(g) {
                let (packet, direction) = &packets[i];
                let ahead = &ring[i % RING];
                let outcome = match ahead.family {
                    Family::V4 => {
                        let probe = Probe::V4(ahead.key, ahead.hash);
                        self.process_probe(policy, packet, *direction, &probe, events)
                    }
                    _ => self.process(policy, packet, *direction, events),
                };
                outcomes.push(outcome);
            }
        }
    }

    /// The first phase of [`FlowTable::process_batch`] for `packets`, the first of which is the
    /// `first`-th: computes their probes and prefetches their tags.
    #[inline(always)]
    fn look_ahead(
        &self,
        packets: &[(PacketMeta, Direction)],
        ring: &mut [Ahead; RING],
        first: usize,
    ) {
        for (i, (packet, direction)) in packets.iter().enumerate() {
            let ahead = match probe(packet, *direction) {
                Probe::None => Ahead::NONE,
                Probe::V4(key, hash) => {
                    self.v4.prefetch_tags(hash);
                    self.v4.prefetch_home(hash);
                    Ahead {
                        key,
                        hash,
                        family: Family::V4,
                    }
                }
                Probe::V6(_, hash) => {
                    self.v6.prefetch_tags(hash);
                    Ahead {
                        key: Key4::default(),
                        hash,
                        family: Family::V6,
                    }
                }
            };
            ring[(first + i) % RING] = ahead;
        }
    }

    #[inline(always)]
    fn prefetch_slot(&self, ahead: &Ahead) {
        match ahead.family {
            Family::None => {}
            Family::V4 => self.v4.prefetch_slot(ahead.hash),
            Family::V6 => self.v6.prefetch_slot(ahead.hash),
        }
    }

    #[inline(always)]
    fn find(&self, probe: &Probe) -> Option<Loc> {
        match probe {
            Probe::None => None,
            Probe::V4(key, hash) => self.v4.find(key, *hash).map(Loc::V4),
            Probe::V6(key, hash) => self.v6.find(key, *hash).map(Loc::V6),
        }
    }

    #[inline]
    fn record(&self, loc: Loc) -> &FlowRecord {
        match loc {
            Loc::V4(i) => &self.v4.get(i).record,
            Loc::V6(i) => &self.v6.get(i).record,
        }
    }

    #[inline]
    fn record_mut(&mut self, loc: Loc) -> &mut FlowRecord {
        match loc {
            Loc::V4(i) => &mut self.v4.get_mut(i).record,
            Loc::V6(i) => &mut self.v6.get_mut(i).record,
        }
    }

    fn key_at(&self, loc: Loc) -> FlowKey {
        match loc {
            Loc::V4(i) => self.v4.get(i).key.wide(),
            Loc::V6(i) => self.v6.get(i).key,
        }
    }

    /// Stores a new record under `probe`'s key, which has none.
    fn insert(&mut self, probe: &Probe, record: FlowRecord) -> Option<Loc> {
        match *probe {
            Probe::None => None,
            Probe::V4(key, hash) => Some(Loc::V4(self.v4.insert_new(Slot4 { key, record }, hash))),
            Probe::V6(key, hash) => Some(Loc::V6(self.v6.insert_new(Slot6 { key, record }, hash))),
        }
    }

    /// The probes of the records `select` picks, in slot order.
    fn probes(&self, mut select: impl FnMut(&FlowRecord) -> bool) -> Vec<Probe> {
        let v4 = self
            .v4
            .iter()
            .filter(|(_, s)| select(&s.record))
            .map(|(_, s)| Probe::V4(s.key, s.key.hash()))
            .collect::<Vec<_>>();
        let v6 = self
            .v6
            .iter()
            .filter(|(_, s)| select(&s.record))
            .map(|(_, s)| Probe::V6(s.key, s.key.hash()));
        let mut probes = v4;
        probes.extend(v6);
        probes
    }

    /// [`FlowTable::process`] with the packet's probe computed.
    #[inline(always)]
    fn process_probe(
        &mut self,
        policy: &CompiledPolicy,
        packet: &PacketMeta,
        direction: Direction,
        probe: &Probe,
        events: &mut Vec<FlowLogEvent>,
    ) -> PacketOutcome {
        let now = packet.time;
        if let Some(loc) = self.find(probe) {
            let timeout = timeout_secs(policy.policy());
            let record = self.record_mut(loc);
            if now.secs_since(record.last_seen) < idle_limit(record, timeout) {
                // The hot path: count the packet in place.
                let tcp = FlowTable::count(record, packet, direction);
                let logged_by = record.logged_by;
                if tcp != TcpEvent::None || now.secs_since(record.last_report) >= CONTINUATION_SECS
                {
                    self.after_count(policy, loc, tcp, now, events);
                }
                return PacketOutcome::Established(logged_by);
            }
            let record = *record;
            let ended = record.last_seen.plus_secs(idle_limit(&record, timeout));
            self.remove(policy, loc, record, ended, events);
        }
        self.first_packet(policy, packet, direction, probe, events)
    }

    /// A packet without a record: decided by the policy, and recorded if allowed.
    #[inline(never)]
    fn first_packet(
        &mut self,
        policy: &CompiledPolicy,
        packet: &PacketMeta,
        direction: Direction,
        probe: &Probe,
        events: &mut Vec<FlowLogEvent>,
    ) -> PacketOutcome {
        if !can_start_a_flow(packet) {
            return PacketOutcome::WithoutFlow;
        }
        let now = packet.time;
        let verdict = policy.classify(&flow_of(packet, direction));
        let Some(key) = probe.wide() else {
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
            let denial = self.denied.attempt(key, now, timeout_secs(policy.policy()));
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
        let tcp = FlowTable::track_tcp(&mut record, packet, direction);
        let loc = self.insert(probe, record).expect("a flow key");
        if tcp != TcpEvent::None {
            self.after_count(policy, loc, tcp, now, events);
        }
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

    /// The rare part of a counted packet: a five-minute report (`tcp` is `None`), or the end of
    /// the flow: removed on a reset, kept for the grace period on a close.
    #[cold]
    fn after_count(
        &mut self,
        policy: &CompiledPolicy,
        loc: Loc,
        tcp: TcpEvent,
        now: Time,
        events: &mut Vec<FlowLogEvent>,
    ) {
        let key = self.key_at(loc);
        match tcp {
            TcpEvent::None => {
                events.extend(report(
                    policy,
                    key,
                    self.record_mut(loc),
                    FlowState::Continuing,
                    now,
                ));
            }
            TcpEvent::Reset => {
                let record = *self.record(loc);
                self.remove(policy, loc, record, now, events);
            }
            TcpEvent::Closed => {
                // The record stays for the grace period and counts the last ACKs; its end is
                // reported when it goes, with them (as conntrack counts them before TIME_WAIT
                // ends).
                self.record_mut(loc).tcp = TcpState::Closed;
            }
        }
    }

    /// Follows TCP flags: RST ends a flow, a FIN from each side closes it.
    #[inline]
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

    /// Removes the flow at `loc`, whose record is `record`, reporting its end (`E`).
    fn remove(
        &mut self,
        policy: &CompiledPolicy,
        loc: Loc,
        mut record: FlowRecord,
        at: Time,
        events: &mut Vec<FlowLogEvent>,
    ) {
        events.extend(report(
            policy,
            self.key_at(loc),
            &mut record,
            FlowState::End,
            at,
        ));
        match loc {
            Loc::V4(i) => {
                self.v4.remove_at(i);
            }
            Loc::V6(i) => {
                self.v6.remove_at(i);
            }
        }
        self.per_direction[direction_index(record.initiator)] -= 1;
        self.stats.flows_ended += 1;
    }

    /// Ends idle flows and closed flows past their grace period, and reports long flows
    /// (`C` every five minutes). Call it regularly with the current time.
    pub fn tick(&mut self, policy: &CompiledPolicy, now: Time, events: &mut Vec<FlowLogEvent>) {
        let timeout = timeout_secs(policy.policy());
        let due = self.probes(|r| {
            now.secs_since(r.last_seen) >= idle_limit(r, timeout)
                || now.secs_since(r.last_report) >= CONTINUATION_SECS
        });
        for probe in due {
            let Some(loc) = self.find(&probe) else {
                continue;
            };
            let record = *self.record(loc);
            let limit = idle_limit(&record, timeout);
            if now.secs_since(record.last_seen) >= limit {
                self.remove(
                    policy,
                    loc,
                    record,
                    record.last_seen.plus_secs(limit),
                    events,
                );
            } else {
                let key = self.key_at(loc);
                events.extend(report(
                    policy,
                    key,
                    self.record_mut(loc),
                    FlowState::Continuing,
                    now,
                ));
            }
        }
        self.denied.expire(now, timeout);
    }

    /// Re-evaluates every flow under a new policy, ending those it denies. Called when a rule
    /// changes in an NSG with `flushConnection` (reference §3.2); otherwise records are left alone.
    pub fn flush(&mut self, policy: &CompiledPolicy, now: Time, events: &mut Vec<FlowLogEvent>) {
        for probe in self.probes(|_| true) {
            let Some(loc) = self.find(&probe) else {
                continue;
            };
            let record = *self.record(loc);
            let flow = initiator_flow(self.key_at(loc), record.initiator);
            let verdict = policy.classify(&flow);
            if verdict.access == Access::Deny {
                self.stats.flushed += 1;
                self.remove(policy, loc, record, now, events);
            } else {
                self.record_mut(loc).logged_by = logging_rule(&verdict, record.initiator);
            }
        }
    }
}

/// A `C` or `E` tuple with the counters since the last report, which it resets.
fn report(
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

/// Whether a new policy must re-evaluate existing flows: some NSG of the NIC has
/// `flushConnection` set, in the new policy or the old.
pub fn needs_flush(old: &NicPolicy, new: &NicPolicy) -> bool {
    [old, new]
        .iter()
        .flat_map(|p| p.inbound.iter().chain(&p.outbound))
        .any(|stage| stage.flush_connection)
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

#[cfg(test)]
mod tests {
    use super::reference;
    use super::*;
    use crate::packet::TcpFlags;
    use crate::{Resolver, Settings};
    use proptest::prelude::*;
    use serde_json::json;

    const S: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network";
    const T0: u64 = 1_700_000_000;

    /// A dual-stack NIC behind a subnet NSG that allows SSH in (when `ssh`) and denies DNS out;
    /// `flushConnection` on.
    fn policy(ssh: bool) -> CompiledPolicy {
        let mut rules = vec![json!({"name": "deny-dns", "properties": {"protocol": "Udp",
            "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
            "destinationPortRange": "53", "access": "Deny", "priority": 110, "direction": "Outbound"}})];
        if ssh {
            rules.push(json!({"name": "allow-ssh", "properties": {"protocol": "Tcp",
                "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
                "destinationPortRange": "22", "access": "Allow", "priority": 100, "direction": "Inbound"}}));
        }
        let env = json!([
            {"id": format!("{S}/networkSecurityGroups/nsg"), "type": "Microsoft.Network/networkSecurityGroups",
             "properties": {"flushConnection": true, "securityRules": rules}},
            {"id": format!("{S}/virtualNetworks/vnet"), "type": "Microsoft.Network/virtualNetworks",
             "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16", "fd00::/48"]},
               "subnets": [{"name": "sub", "properties": {"addressPrefixes": ["10.0.1.0/24", "fd00::/64"],
                 "networkSecurityGroup": {"id": format!("{S}/networkSecurityGroups/nsg")}}}]}},
            {"id": format!("{S}/networkInterfaces/nic"), "type": "Microsoft.Network/networkInterfaces",
             "properties": {"macAddress": "00-0D-3A-00-00-01", "ipConfigurations": [
                {"name": "ip", "properties": {"privateIPAddress": "10.0.1.4",
                  "subnet": {"id": format!("{S}/virtualNetworks/vnet/subnets/sub")}}},
                {"name": "ip6", "properties": {"privateIPAddress": "fd00::4", "privateIPAddressVersion": "IPv6",
                  "subnet": {"id": format!("{S}/virtualNetworks/vnet/subnets/sub")}}}]}}
        ]);
        let mut environment = nsg_model::Environment::new();
        environment.add_value("test", env).unwrap();
        let catalog = nsg_tags::Catalog::new();
        let model = nsg_model::validate(&environment, &catalog).unwrap();
        let mut resolver = Resolver::new(&model, &catalog, Settings::default());
        let resolved = resolver.resolve(&model.network_interfaces[0]).unwrap();
        CompiledPolicy::build(resolved, &resolver.sets, Settings::default())
    }

    /// The NIC's addresses first, then remote ones: IPv4, the VNet, IPv6, and IPv4-mapped IPv6
    /// (which only malformed captures would mix with IPv4, but keys must still agree).
    const ADDRESSES: [&str; 7] = [
        "10.0.1.4",
        "fd00::4",
        "203.0.113.9",
        "10.0.1.5",
        "2001:db8::9",
        "fd00::5",
        "::ffff:203.0.113.9",
    ];

    fn packet() -> impl Strategy<Value = (PacketMeta, Direction)> {
        let address = || (0..ADDRESSES.len()).prop_map(|i| ADDRESSES[i].parse::<IpAddr>().unwrap());
        let port = || prop::sample::select(vec![22u16, 53, 443, 40000, 40001]);
        let flags = (0u8..16, 0u8..8).prop_map(|(bits, rst)| TcpFlags {
            syn: bits & 1 != 0,
            ack: bits & 2 != 0,
            fin: bits & 4 != 0,
            rst: rst == 0,
        });
        let icmp = (0u8..3, 0u16..3).prop_map(|(kind, id)| match kind {
            0 => IcmpKind::EchoRequest { id },
            1 => IcmpKind::EchoReply { id },
            _ => IcmpKind::Other {
                icmp_type: 3,
                code: 1,
            },
        });
        (
            address(),
            address(),
            prop::sample::select(vec![6u8, 6, 6, 17, 17, 1, 58, 47]),
            port(),
            port(),
            flags,
            icmp,
            any::<bool>(),
            40u32..1500,
        )
            .prop_map(|(a, b, protocol, sp, dp, flags, icmp, outbound, length)| {
                let ports = protocol_has_ports(protocol);
                let packet = PacketMeta {
                    time: Time(0),
                    protocol,
                    src: a,
                    dst: b,
                    src_port: ports.then_some(sp),
                    dst_port: ports.then_some(dp),
                    tcp_flags: (protocol == 6).then_some(flags),
                    icmp: matches!(protocol, 1 | 58).then_some(icmp),
                    length,
                };
                let direction = if outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                (packet, direction)
            })
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Packets, processed one by one or as a batch, each after the previous by a gap.
        Packets(Vec<((PacketMeta, Direction), u64)>),
        Tick(u64),
        /// Flush under the policy with or without the SSH rule, which becomes the policy.
        Flush(bool),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // Gaps in microseconds: most packets close together, some across the idle timeout,
        // the grace period or the five-minute report.
        let gap = prop_oneof![
            4 => 0u64..2_000_000,
            1 => 9_000_000u64..11_000_000,
            1 => 230_000_000u64..250_000_000,
            1 => 290_000_000u64..310_000_000,
        ];
        prop::collection::vec(
            prop_oneof![
                8 => prop::collection::vec((packet(), gap.clone()), 1..80).prop_map(Op::Packets),
                1 => gap.prop_map(Op::Tick),
                1 => any::<bool>().prop_map(Op::Flush),
            ],
            1..12,
        )
    }

    /// Events sorted, for comparing `tick` and `flush`, which visit flows in table order.
    fn sorted(events: &[FlowLogEvent]) -> Vec<String> {
        let mut events: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        events.sort();
        events
    }

    /// The reference table, the new one packet by packet, and the new one in batches agree on
    /// every outcome, every event (in order, except that `tick` and `flush` may order theirs
    /// differently) and every count.
    fn agree(ops: &[Op], capacity: usize) {
        let policies = [policy(false), policy(true)];
        let mut current = 1;
        let mut old = reference::FlowTable::with_capacity(capacity);
        let mut one = FlowTable::with_capacity(capacity);
        let mut batched = FlowTable::with_capacity(capacity);
        let mut now = T0 * 1_000_000;
        for op in ops {
            let policy = &policies[current];
            let (mut e_old, mut e_one, mut e_batched) = (Vec::new(), Vec::new(), Vec::new());
            match op {
                Op::Packets(packets) => {
                    let packets: Vec<(PacketMeta, Direction)> = packets
                        .iter()
                        .map(|((p, d), gap)| {
                            now += gap;
                            (
                                PacketMeta {
                                    time: Time(now),
                                    ..*p
                                },
                                *d,
                            )
                        })
                        .collect();
                    let mut outcomes = Vec::new();
                    batched.process_batch(policy, &packets, &mut e_batched, &mut outcomes);
                    assert_eq!(outcomes.len(), packets.len());
                    for ((p, d), batched) in packets.iter().zip(outcomes) {
                        let expected = old.process(policy, p, *d, &mut e_old);
                        assert_eq!(one.process(policy, p, *d, &mut e_one), expected);
                        assert_eq!(batched, expected);
                    }
                    assert_eq!(e_one, e_old);
                    assert_eq!(e_batched, e_old);
                }
                Op::Tick(gap) => {
                    now += gap;
                    old.tick(policy, Time(now), &mut e_old);
                    one.tick(policy, Time(now), &mut e_one);
                    batched.tick(policy, Time(now), &mut e_batched);
                    assert_eq!(sorted(&e_one), sorted(&e_old));
                    assert_eq!(e_batched, e_one);
                }
                Op::Flush(ssh) => {
                    current = usize::from(*ssh);
                    let policy = &policies[current];
                    old.flush(policy, Time(now), &mut e_old);
                    one.flush(policy, Time(now), &mut e_one);
                    batched.flush(policy, Time(now), &mut e_batched);
                    assert_eq!(sorted(&e_one), sorted(&e_old));
                    assert_eq!(e_batched, e_one);
                }
            }
            for table in [&one, &batched] {
                assert_eq!(table.len(), old.len());
                assert_eq!(table.stats(), old.stats());
                for d in [Direction::Inbound, Direction::Outbound] {
                    assert_eq!(table.flows_in(d), old.flows_in(d));
                }
                table.v4.check();
                table.v6.check();
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn agrees_with_the_reference_and_batches_with_single_packets(
            ops in ops(),
            capacity in prop_oneof![Just(DEFAULT_CAPACITY_PER_DIRECTION), 1..6usize],
        ) {
            agree(&ops, capacity);
        }
    }

    /// Many flows: the table grows during batches, and a batch's prefetches run far ahead.
    #[test]
    fn batches_agree_with_single_packets_over_many_flows() {
        let policy = policy(true);
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let packets: Vec<(PacketMeta, Direction)> = (0..60_000u64)
            .map(|i| {
                let r = next();
                let flow = r % 6000;
                let remote = if flow % 5 == 0 {
                    IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(flow)))
                } else {
                    IpAddr::V4(Ipv4Addr::from(0xCB00_7100 + flow as u32))
                };
                let local: IpAddr = if remote.is_ipv4() {
                    "10.0.1.4".parse().unwrap()
                } else {
                    "fd00::4".parse().unwrap()
                };
                let outbound = flow % 3 != 0;
                let (src, dst) = if outbound {
                    (local, remote)
                } else {
                    (remote, local)
                };
                let packet = PacketMeta {
                    time: Time::from_secs(T0 + i / 100),
                    protocol: 6,
                    src,
                    dst,
                    src_port: Some(if outbound { 40000 } else { 22 }),
                    dst_port: Some(if outbound { 443 } else { 40000 }),
                    tcp_flags: Some(TcpFlags {
                        syn: r >> 20 & 7 == 0,
                        ack: true,
                        fin: r >> 24 & 63 == 0,
                        rst: r >> 30 & 255 == 0,
                    }),
                    icmp: None,
                    length: 60 + (r >> 40) as u32 % 1400,
                };
                let direction = if (r >> 50) & 1 == 0 {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                (packet, direction)
            })
            .collect();
        let mut one = FlowTable::default();
        let mut batched = FlowTable::default();
        let (mut e_one, mut e_batched) = (Vec::new(), Vec::new());
        let (mut o_one, mut o_batched) = (Vec::new(), Vec::new());
        for (i, chunk) in packets.chunks(997).enumerate() {
            for (p, d) in chunk {
                o_one.push(one.process(&policy, p, *d, &mut e_one));
            }
            batched.process_batch(&policy, chunk, &mut e_batched, &mut o_batched);
            if i % 20 == 19 {
                let now = chunk[chunk.len() - 1].0.time;
                one.tick(&policy, now, &mut e_one);
                batched.tick(&policy, now, &mut e_batched);
            }
        }
        assert_eq!(o_batched, o_one);
        assert_eq!(e_batched, e_one);
        assert_eq!(batched.stats(), one.stats());
        assert!(one.len() > 2000, "{} flows", one.len());
        assert!(one.v6.len() > 200, "{} IPv6 flows", one.v6.len());
        one.v4.check();
        one.v6.check();
    }

    #[test]
    fn an_ipv4_record_fills_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot4>(), 64);
        assert_eq!(std::mem::align_of::<Slot4>(), 64);
        assert_eq!(FlowTable::bytes_per_flow(), 65);
        assert!(FlowTable::bytes_per_flow_v6() <= 128);
    }

    #[test]
    fn packed_keys_round_trip() {
        let key = Key4::new(
            Ipv4Addr::new(10, 0, 1, 4),
            Ipv4Addr::new(203, 0, 113, 9),
            40000,
            443,
            6,
        );
        assert_eq!(key.wide().narrow(), Some(key));
        let wide = key.wide();
        assert_eq!(
            address_of(wide.local, wide.v6),
            "10.0.1.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            (wide.local_port, wide.remote_port, wide.protocol),
            (40000, 443, 6)
        );
    }
}
