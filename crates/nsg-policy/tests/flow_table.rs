//! The flow table with simulated time (quinn's way: a sans-IO core driven by tests).

use nsg_model::rule::Direction::{self, Inbound, Outbound};
use nsg_model::Environment;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::flow_log::{FlowLogEvent, FlowState};
use nsg_policy::flow_table::{
    needs_flush, FlowTable, PacketOutcome, DENIED_FLOWS_REMEMBERED, TCP_CLOSE_GRACE_SECS,
};
use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};
use nsg_policy::{Resolver, Settings};
use serde_json::{json, Value};
use std::net::IpAddr;

const S: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network";
const VM: &str = "10.0.1.4";
const INTERNET: &str = "203.0.113.9";
const T0: u64 = 1_700_000_000;

/// A NIC in 10.0.1.0/24 whose subnet NSG has `rules`; the VNet's flow timeout optional.
fn policy(rules: Value, flush_connection: bool, flow_timeout: Option<u32>) -> CompiledPolicy {
    let mut vnet = json!({"id": format!("{S}/virtualNetworks/vnet"), "type": "Microsoft.Network/virtualNetworks",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
          "subnets": [{"name": "sub", "properties": {"addressPrefix": "10.0.1.0/24",
             "networkSecurityGroup": {"id": format!("{S}/networkSecurityGroups/nsg")}}}]}});
    if let Some(minutes) = flow_timeout {
        vnet["properties"]["flowTimeoutInMinutes"] = json!(minutes);
    }
    let env = json!([
        {"id": format!("{S}/networkSecurityGroups/nsg"), "type": "Microsoft.Network/networkSecurityGroups",
         "properties": {"flushConnection": flush_connection, "securityRules": rules}},
        vnet,
        {"id": format!("{S}/networkInterfaces/nic"), "type": "Microsoft.Network/networkInterfaces",
         "properties": {"macAddress": "00-0D-3A-00-00-01", "ipConfigurations": [{"name": "ip", "properties": {
            "privateIPAddress": VM, "subnet": {"id": format!("{S}/virtualNetworks/vnet/subnets/sub")}}}]}}
    ]);
    let mut environment = Environment::new();
    environment.add_value("test", env).unwrap();
    let catalog = nsg_tags::Catalog::new();
    let model = nsg_model::validate(&environment, &catalog).unwrap();
    let mut resolver = Resolver::new(&model, &catalog, Settings::default());
    let nic = &model.network_interfaces[0];
    let resolved = resolver.resolve(nic).unwrap();
    CompiledPolicy::build(resolved, &resolver.sets, Settings::default())
}

fn allow_ssh_in() -> Value {
    json!([{"name": "allow-ssh", "properties": {"protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "22", "access": "Allow", "priority": 100, "direction": "Inbound"}}])
}

fn tcp(at: u64, src: &str, sport: u16, dst: &str, dport: u16, flags: TcpFlags) -> PacketMeta {
    PacketMeta {
        time: Time::from_secs(at),
        protocol: 6,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        src_port: Some(sport),
        dst_port: Some(dport),
        tcp_flags: Some(flags),
        icmp: None,
        length: 60,
    }
}

const SYN: TcpFlags = TcpFlags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
const SYNACK: TcpFlags = TcpFlags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
const FIN: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};
const RST: TcpFlags = TcpFlags {
    syn: false,
    ack: false,
    fin: false,
    rst: true,
};

/// Packets and bytes sent, then received.
type Counts = (u64, u64, u64, u64);

/// Drives one NIC: packets out of the VM are outbound, packets to it inbound.
struct Nic {
    policy: CompiledPolicy,
    table: FlowTable,
    events: Vec<FlowLogEvent>,
}

impl Nic {
    fn new(policy: CompiledPolicy) -> Nic {
        Nic {
            policy,
            table: FlowTable::default(),
            events: Vec::new(),
        }
    }
    fn send(&mut self, packet: PacketMeta) -> PacketOutcome {
        let direction: Direction = if packet.src == VM.parse::<IpAddr>().unwrap() {
            Outbound
        } else {
            Inbound
        };
        self.table
            .process(&self.policy, &packet, direction, &mut self.events)
    }
    fn states(&self) -> Vec<(FlowState, Option<Counts>)> {
        self.events
            .iter()
            .map(|e| {
                (
                    e.state,
                    e.counters.map(|c| {
                        (
                            c.packets_sent,
                            c.bytes_sent,
                            c.packets_received,
                            c.bytes_received,
                        )
                    }),
                )
            })
            .collect()
    }
}

#[test]
fn return_traffic_of_an_allowed_flow_passes_without_rules() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    // Outbound to the internet: AllowInternetOutBound. Inbound from the internet: DenyAllInBound —
    // except for the replies of the outbound connection.
    assert!(matches!(
        nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN)),
        PacketOutcome::NewFlow(_)
    ));
    assert!(matches!(
        nic.send(tcp(T0, INTERNET, 443, VM, 40000, SYNACK)),
        PacketOutcome::Established(_)
    ));
    assert!(matches!(
        nic.send(tcp(T0 + 1, VM, 40000, INTERNET, 443, ACK)),
        PacketOutcome::Established(_)
    ));
    // The same remote on another port is a new, inbound flow: denied.
    assert!(matches!(
        nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40001, SYN)),
        PacketOutcome::Denied { .. }
    ));
    assert_eq!(nic.table.len(), 1);
}

#[test]
fn idle_flows_expire_after_four_minutes_or_the_vnet_timeout() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    assert!(matches!(
        nic.send(tcp(T0 + 239, INTERNET, 443, VM, 40000, ACK)),
        PacketOutcome::Established(_)
    ));
    // 240 s after the last packet the record is gone: the reply is a new inbound flow.
    assert!(matches!(
        nic.send(tcp(T0 + 239 + 240, INTERNET, 443, VM, 40000, ACK)),
        PacketOutcome::Denied { .. }
    ));

    let mut nic = Nic::new(policy(json!([]), false, Some(10)));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    assert!(matches!(
        nic.send(tcp(T0 + 599, INTERNET, 443, VM, 40000, ACK)),
        PacketOutcome::Established(_)
    ));
    assert!(matches!(
        nic.send(tcp(T0 + 599 + 600, INTERNET, 443, VM, 40000, ACK)),
        PacketOutcome::Denied { .. }
    ));
}

#[test]
fn deleting_the_allowing_rule_spares_existing_flows() {
    let with_rule = policy(allow_ssh_in(), false, None);
    let without_rule = policy(json!([]), false, None);
    assert!(!needs_flush(with_rule.policy(), without_rule.policy()));
    let mut nic = Nic::new(with_rule);
    assert!(matches!(
        nic.send(tcp(T0, INTERNET, 50000, VM, 22, SYN)),
        PacketOutcome::NewFlow(_)
    ));
    nic.policy = without_rule;
    assert!(matches!(
        nic.send(tcp(T0 + 5, INTERNET, 50000, VM, 22, ACK)),
        PacketOutcome::Established(_)
    ));
    assert!(matches!(
        nic.send(tcp(T0 + 5, VM, 22, INTERNET, 50000, ACK)),
        PacketOutcome::Established(_)
    ));
    assert!(
        matches!(
            nic.send(tcp(T0 + 6, INTERNET, 50001, VM, 22, SYN)),
            PacketOutcome::Denied { .. }
        ),
        "new connections meet the new rules"
    );
}

#[test]
fn flush_connection_re_evaluates_existing_flows() {
    let mut nic = Nic::new(policy(allow_ssh_in(), true, None));
    nic.send(tcp(T0, INTERNET, 50000, VM, 22, SYN));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    let new_policy = policy(json!([]), true, None);
    assert!(needs_flush(nic.policy.policy(), new_policy.policy()));
    nic.policy = new_policy;
    nic.table
        .flush(&nic.policy, Time::from_secs(T0 + 10), &mut nic.events);
    assert_eq!(
        nic.table.stats().flushed,
        1,
        "the SSH flow is now denied; the outbound one is still allowed"
    );
    assert!(matches!(
        nic.send(tcp(T0 + 11, INTERNET, 50000, VM, 22, ACK)),
        PacketOutcome::Denied { .. }
    ));
    assert!(matches!(
        nic.send(tcp(T0 + 11, INTERNET, 443, VM, 40000, ACK)),
        PacketOutcome::Established(_)
    ));
}

#[test]
fn a_full_table_refuses_new_flows_and_keeps_established_ones() {
    let mut nic = Nic::new(policy(allow_ssh_in(), false, None));
    nic.table = FlowTable::with_capacity(2);
    for port in [40000, 40001] {
        assert!(matches!(
            nic.send(tcp(T0, VM, port, INTERNET, 443, SYN)),
            PacketOutcome::NewFlow(_)
        ));
    }
    assert_eq!(
        nic.send(tcp(T0, VM, 40002, INTERNET, 443, SYN)),
        PacketOutcome::TableFull
    );
    assert_eq!(nic.table.stats().refused, 1);
    assert!(matches!(
        nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40001, ACK)),
        PacketOutcome::Established(_)
    ));
    // Capacity is per direction: inbound flows still fit.
    assert!(matches!(
        nic.send(tcp(T0 + 1, INTERNET, 50000, VM, 22, SYN)),
        PacketOutcome::NewFlow(_)
    ));
    assert_eq!(
        (nic.table.flows_in(Outbound), nic.table.flows_in(Inbound)),
        (2, 1)
    );
}

#[test]
fn rst_ends_a_flow_and_fin_from_both_sides_closes_it() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    assert!(matches!(
        nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40000, RST)),
        PacketOutcome::Established(_)
    ));
    assert!(matches!(
        nic.send(tcp(T0 + 2, INTERNET, 443, VM, 40000, ACK)),
        PacketOutcome::Denied { .. }
    ));

    nic.send(tcp(T0, VM, 40001, INTERNET, 443, SYN));
    nic.send(tcp(T0 + 1, VM, 40001, INTERNET, 443, FIN));
    assert!(matches!(
        nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40001, FIN)),
        PacketOutcome::Established(_)
    ));
    // The last ACK within the grace period is absorbed; later packets are new flows.
    assert!(matches!(
        nic.send(tcp(T0 + 2, VM, 40001, INTERNET, 443, ACK)),
        PacketOutcome::Established(_)
    ));
    assert!(matches!(
        nic.send(tcp(T0 + 30, INTERNET, 443, VM, 40001, ACK)),
        PacketOutcome::Denied { .. }
    ));
}

/// Regression (issue 12, live flow logs against replayed ones): the `E` tuple came at the
/// second FIN, so the last ACK was in no tuple, one packet fewer than the kernel's conntrack
/// counts for the same connection.
#[test]
fn the_last_ack_after_both_fins_counts_in_the_end_tuple() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    nic.send(tcp(T0, INTERNET, 443, VM, 40000, SYNACK));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, FIN));
    nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40000, FIN));
    assert_eq!(
        nic.states(),
        vec![(FlowState::Begin, None)],
        "not ended yet"
    );
    nic.send(tcp(T0 + 1, VM, 40000, INTERNET, 443, ACK));
    // Ended by the next packet after the grace period (a new flow), or by a tick.
    nic.send(tcp(T0 + 30, VM, 40000, INTERNET, 443, SYN));
    assert_eq!(
        nic.states(),
        vec![
            (FlowState::Begin, None),
            (FlowState::End, Some((3, 180, 2, 120))),
            (FlowState::Begin, None),
        ]
    );
    assert_eq!(
        nic.events[1].time,
        Time::from_secs(T0 + 1 + TCP_CLOSE_GRACE_SECS)
    );
}

#[test]
fn icmp_echo_is_a_flow_and_other_icmp_is_decided_per_packet() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    let icmp = |at, src: &str, dst: &str, kind| PacketMeta {
        time: Time::from_secs(at),
        protocol: 1,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        src_port: None,
        dst_port: None,
        tcp_flags: None,
        icmp: Some(kind),
        length: 84,
    };
    assert!(matches!(
        nic.send(icmp(T0, VM, INTERNET, IcmpKind::EchoRequest { id: 7 })),
        PacketOutcome::NewFlow(_)
    ));
    assert!(matches!(
        nic.send(icmp(T0, INTERNET, VM, IcmpKind::EchoReply { id: 7 })),
        PacketOutcome::Established(_)
    ));
    assert!(matches!(
        nic.send(icmp(T0, INTERNET, VM, IcmpKind::EchoReply { id: 8 })),
        PacketOutcome::Denied { .. }
    ));
    let unreachable = IcmpKind::Other {
        icmp_type: 3,
        code: 1,
    };
    assert!(matches!(
        nic.send(icmp(T0, INTERNET, VM, unreachable)),
        PacketOutcome::Denied { .. }
    ));
    assert!(matches!(
        nic.send(icmp(T0, VM, INTERNET, unreachable)),
        PacketOutcome::AllowedStateless(_)
    ));
    assert_eq!(nic.table.len(), 1);
}

#[test]
fn flow_log_events_begin_continue_every_five_minutes_and_end() {
    let mut nic = Nic::new(policy(json!([]), false, Some(30)));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN)); // B
    nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40000, SYNACK));
    nic.send(tcp(T0 + 200, VM, 40000, INTERNET, 443, ACK));
    nic.send(tcp(T0 + 301, INTERNET, 443, VM, 40000, ACK)); // C: 2 out, 2 in since B
    nic.send(tcp(T0 + 400, VM, 40000, INTERNET, 443, FIN));
    nic.send(tcp(T0 + 401, INTERNET, 443, VM, 40000, FIN));
    nic.table
        .tick(&nic.policy, Time::from_secs(T0 + 1000), &mut nic.events); // E: 1 out, 1 in since C
    assert_eq!(
        nic.states(),
        vec![
            (FlowState::Begin, None),
            (FlowState::Continuing, Some((2, 120, 2, 120))),
            (FlowState::End, Some((1, 60, 1, 60))),
        ]
    );
    let begin = &nic.events[0];
    assert_eq!(begin.rule_name, "AllowInternetOutBound");
    assert_eq!(
        (begin.src.to_string(), begin.dst_port),
        (VM.to_string(), 443)
    );
    // A closed flow ends at its last packet plus the grace period.
    assert_eq!(
        nic.events[2].time,
        Time::from_secs(T0 + 401 + TCP_CLOSE_GRACE_SECS)
    );

    // An idle flow ends at its last packet plus the timeout.
    let mut nic = Nic::new(policy(json!([]), false, None));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    nic.table
        .tick(&nic.policy, Time::from_secs(T0 + 1000), &mut nic.events);
    assert_eq!(
        nic.states(),
        vec![
            (FlowState::Begin, None),
            (FlowState::End, Some((1, 60, 0, 0)))
        ],
        "the SYN counts in the end tuple"
    );
    assert_eq!(nic.events[1].time, Time::from_secs(T0 + 240));
    assert!(nic.table.is_empty());
}

#[test]
fn denied_attempts_are_logged_once_a_minute() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    for second in 0..10 {
        nic.send(tcp(T0 - T0 % 60 + second, INTERNET, 50000, VM, 23, SYN));
    }
    nic.send(tcp(T0 - T0 % 60 + 61, INTERNET, 50000, VM, 23, SYN));
    let denied: Vec<_> = nic
        .events
        .iter()
        .filter(|e| e.access == nsg_model::rule::Access::Deny)
        .collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0].rule_name, "DenyAllInBound");
    assert_eq!(denied[0].state, FlowState::Begin);
}

/// Issue 12: after a denied SYN, the server's SYN-ACK was logged as a new allowed outbound flow.
/// A TCP packet without a record starts a flow only if it is a SYN or a plain ACK (D2).
#[test]
fn a_syn_ack_without_a_flow_is_not_a_new_flow() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    assert!(matches!(
        nic.send(tcp(T0, INTERNET, 50000, VM, 22, SYN)),
        PacketOutcome::Denied { .. }
    ));
    assert_eq!(
        nic.send(tcp(T0, VM, 22, INTERNET, 50000, SYNACK)),
        PacketOutcome::WithoutFlow
    );
    assert!(nic.table.is_empty());
    assert!(
        nic.events
            .iter()
            .all(|e| e.access == nsg_model::rule::Access::Deny),
        "{:?}",
        nic.events
    );

    // Every direction, allowed or not: only a SYN or a plain ACK starts a flow.
    let flags = |syn, ack, fin, rst| TcpFlags { syn, ack, fin, rst };
    let cases = [
        ("SYN-ACK", SYNACK, false),
        ("FIN-ACK", FIN, false),
        ("FIN", flags(false, false, true, false), false),
        ("RST", RST, false),
        ("RST-ACK", flags(false, true, false, true), false),
        ("SYN-RST", flags(true, false, false, true), false),
        ("SYN-FIN", flags(true, false, true, false), false),
        ("no flags", flags(false, false, false, false), false),
        ("SYN", SYN, true),
        ("ACK (picked up mid-stream)", ACK, true),
    ];
    for (name, flags, starts) in cases {
        let mut nic = Nic::new(policy(allow_ssh_in(), false, None));
        let outbound = nic.send(tcp(T0, VM, 40000, INTERNET, 443, flags));
        let inbound = nic.send(tcp(T0, INTERNET, 50000, VM, 22, flags));
        for outcome in [outbound, inbound] {
            if starts {
                assert!(
                    matches!(outcome, PacketOutcome::NewFlow(_)),
                    "{name}: {outcome:?}"
                );
            } else {
                assert_eq!(outcome, PacketOutcome::WithoutFlow, "{name}");
            }
        }
        assert_eq!(nic.table.len(), if starts { 2 } else { 0 }, "{name}");
        assert_eq!(nic.events.is_empty(), !starts, "{name}: {:?}", nic.events);
    }

    // A flow's packets after its reset have no record either.
    let mut nic = Nic::new(policy(json!([]), false, None));
    nic.send(tcp(T0, VM, 40000, INTERNET, 443, SYN));
    nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40000, RST));
    assert_eq!(
        nic.send(tcp(T0 + 1, INTERNET, 443, VM, 40000, RST)),
        PacketOutcome::WithoutFlow
    );
}

/// Issue 12: the retransmitted SYNs of one denied connection counted as separate flows; Azure
/// logs one flow, once a minute (D6).
#[test]
fn retransmitted_syns_of_a_denied_connection_are_one_flow() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    let minute = T0 - T0 % 60;
    // Linux's SYN retransmissions: 1, 3, 7, 15, 31 and 63 seconds after the first.
    let attempts: Vec<bool> = [0, 1, 3, 7, 15, 31, 63]
        .iter()
        .map(
            |after| match nic.send(tcp(minute + after, INTERNET, 50000, VM, 23, SYN)) {
                PacketOutcome::Denied { first_attempt, .. } => first_attempt,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(attempts, [true, false, false, false, false, false, false]);
    let logged: Vec<u64> = nic.events.iter().map(|e| e.time.secs() - minute).collect();
    assert_eq!(logged, [0, 63], "once in each minute with attempts");

    // Another source port is another flow; so is an attempt after the idle timeout's pause.
    assert!(matches!(
        nic.send(tcp(minute + 64, INTERNET, 50001, VM, 23, SYN)),
        PacketOutcome::Denied {
            first_attempt: true,
            ..
        }
    ));
    assert!(matches!(
        nic.send(tcp(minute + 63 + 240, INTERNET, 50000, VM, 23, SYN)),
        PacketOutcome::Denied {
            first_attempt: true,
            ..
        }
    ));
    nic.table.tick(
        &nic.policy,
        Time::from_secs(minute + 64 + 240),
        &mut nic.events,
    );
    assert_eq!(
        nic.table.denied_flows(),
        1,
        "the flow attempted last is still remembered"
    );
    nic.table.tick(
        &nic.policy,
        Time::from_secs(minute + 63 + 480),
        &mut nic.events,
    );
    assert_eq!(nic.table.denied_flows(), 0);
}

/// A flood of distinct denied 5-tuples (a port scan) does not grow the memory of denied flows
/// beyond its bound; the flows attempted least recently are forgotten first.
#[test]
fn denied_flows_are_remembered_within_a_bound() {
    let mut nic = Nic::new(policy(json!([]), false, None));
    let flood = DENIED_FLOWS_REMEMBERED + 1000;
    for i in 0..flood {
        let source = IpAddr::from([198, 51, (i >> 16) as u8, (i >> 8) as u8]);
        let packet = PacketMeta {
            src: source,
            ..tcp(T0, INTERNET, 1024 + (i & 0xff) as u16, VM, 23, SYN)
        };
        nic.send(packet);
    }
    assert_eq!(nic.table.denied_flows(), DENIED_FLOWS_REMEMBERED);
    let forgotten = PacketMeta {
        src: IpAddr::from([198, 51, 0, 0]),
        ..tcp(T0 + 1, INTERNET, 1024, VM, 23, SYN)
    };
    assert!(matches!(
        nic.send(forgotten),
        PacketOutcome::Denied {
            first_attempt: true,
            ..
        }
    ));
}

#[test]
fn a_record_costs_at_most_128_bytes() {
    assert!(
        FlowTable::bytes_per_flow() <= 128,
        "{} bytes",
        FlowTable::bytes_per_flow()
    );
}

/// Invariant 4: readers on other threads see either the old or the new policy, whole, while a
/// writer publishes new ones; a flow table driven by the cell keeps its records across swaps.
#[test]
fn policies_are_swapped_atomically_under_concurrent_readers() {
    use nsg_policy::compiled::PolicyCell;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let open = policy(allow_ssh_in(), false, None);
    let closed = policy(json!([]), false, None);
    let ssh = nsg_policy::Flow {
        direction: Inbound,
        protocol: 6,
        local: nsg_policy::Endpoint {
            ip: VM.parse().unwrap(),
            port: Some(22),
        },
        remote: nsg_policy::Endpoint {
            ip: INTERNET.parse().unwrap(),
            port: Some(50000),
        },
    };
    let cell = Arc::new(PolicyCell::new(open.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (cell, stop) = (cell.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = [0u32; 2];
                while !stop.load(Ordering::Relaxed) {
                    let snapshot = cell.load();
                    // A whole policy: its two directions agree on which version it is.
                    let inbound_allows =
                        snapshot.classify(&ssh).access == nsg_model::rule::Access::Allow;
                    let stages = snapshot.policy().inbound[0].rules.len();
                    assert_eq!(inbound_allows, stages == 4, "a torn policy");
                    seen[usize::from(inbound_allows)] += 1;
                }
                seen
            })
        })
        .collect();
    for round in 0..200 {
        cell.publish(if round % 2 == 0 {
            closed.clone()
        } else {
            open.clone()
        });
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().expect("reader saw whole policies");
    }

    let cell = PolicyCell::new(open);
    let mut table = FlowTable::default();
    let mut events = Vec::new();
    let syn = tcp(T0, INTERNET, 50000, VM, 22, SYN);
    assert!(matches!(
        table.process(&cell.load(), &syn, Inbound, &mut events),
        PacketOutcome::NewFlow(_)
    ));
    let old = cell.publish(closed);
    assert!(!needs_flush(old.policy(), cell.load().policy()));
    let ack = tcp(T0 + 1, INTERNET, 50000, VM, 22, ACK);
    assert!(matches!(
        table.process(&cell.load(), &ack, Inbound, &mut events),
        PacketOutcome::Established(_)
    ));
}
