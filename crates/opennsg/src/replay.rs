//! `opennsg replay`: a packet capture through the NSGs of an environment, with Azure's flow logs
//! and a summary of what was allowed and denied by which rule.
//!
//! Packets are mapped to NICs by their private addresses: a packet from a NIC's address leaves
//! that NIC (outbound there), a packet to one arrives (inbound there); traffic between two NICs
//! of the environment crosses both, outbound first. Each NIC has its own flow table, driven by
//! the capture's timestamps.
//!
//! A capture of several interfaces (`tcpdump -i any` on a router) holds each forwarded packet
//! twice, arriving and leaving: the copies are recognised ([`CopyFilter`]) and replayed once.

use crate::owners::AddressOwners;
use anyhow::Result;
use nsg_capture::{Capture, CopyFilter};
use nsg_model::model::{Model, NetworkInterface};
use nsg_model::rule::{Access, Direction};
use nsg_model::ResourceId;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::flow_log::{FlowLogBuilder, FlowLogDocument, FlowLogEvent};
use nsg_policy::flow_table::{logging_rule, FlowTable, PacketOutcome, RuleAt};
use nsg_policy::packet::{PacketMeta, Time};
use nsg_policy::{Resolver, Settings};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// One NIC being replayed.
struct Nic {
    name: String,
    policy: CompiledPolicy,
    table: FlowTable,
}

/// Counts of one summary line.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// A summary line: who decided, and how.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decider {
    /// The NSG's name, or `(none)` when no NSG applies / a platform rule decided.
    pub network_security_group: String,
    /// `securityRules/NAME`, `defaultSecurityRules/NAME`, `platformRules/NAME` or `(no NSG)`.
    pub rule: String,
    pub access: String,
}

/// What a replay found.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub packets: u64,
    pub packets_allowed: u64,
    pub packets_denied: u64,
    /// Allowed by the rules but dropped: a flow table was full.
    pub packets_refused: u64,
    /// TCP packets of no flow that cannot start one (a SYN-ACK, FIN or RST without a record):
    /// dropped before any rule, as the kernel drops what conntrack marks invalid.
    pub packets_without_flow: u64,
    /// Packets with neither address on a NIC of the environment.
    pub packets_unmapped: u64,
    /// Records that were not IP packets (ARP, later fragments, …).
    pub records_skipped: u64,
    /// Further copies of packets the capture recorded on several interfaces (a router's
    /// incoming and outgoing copy): not replayed, and not in `packets`.
    pub packet_copies: u64,
    pub by_rule: Vec<(Decider, Counts)>,
    /// Flow log tuples that version 2 cannot represent (ICMP and other protocols).
    pub flow_log_events_skipped: u64,
}

impl Summary {
    /// The summary's first line, for people.
    pub fn headline(&self) -> String {
        let mut line = format!(
            "{} packets: {} allowed, {} denied, {} refused (flow table full), {} of no flow \
             (TCP SYN-ACK, FIN or RST without a record), {} not to or from a NIC of the \
             environment; {} records skipped (not IP)",
            self.packets,
            self.packets_allowed,
            self.packets_denied,
            self.packets_refused,
            self.packets_without_flow,
            self.packets_unmapped,
            self.records_skipped
        );
        if self.packet_copies > 0 {
            line.push_str(&format!(
                "; {} further copies of packets recorded on several interfaces, replayed once",
                self.packet_copies
            ));
        }
        line
    }
}

/// The result of a replay: the summary and the flow logs.
pub struct Replay {
    pub summary: Summary,
    pub flow_logs: FlowLogDocument,
    /// Every flow log event, in the order the flow tables gave them.
    pub events: Vec<FlowLogEvent>,
}

/// Replays `capture` through the NICs of `model` (all of them, or those named in `only`).
pub fn replay(
    model: &Model,
    catalog: &nsg_tags::Catalog,
    settings: Settings,
    only: &[&NetworkInterface],
    capture: &Capture,
) -> Result<Replay> {
    let mut resolver = Resolver::new(model, catalog, settings);
    let chosen: Vec<&NetworkInterface> = if only.is_empty() {
        model.network_interfaces.iter().collect()
    } else {
        only.to_vec()
    };
    let mut nics = Vec::new();
    for nic in chosen {
        let policy = resolver.resolve(nic)?;
        nics.push(Nic {
            name: nic.name().to_string(),
            policy: CompiledPolicy::build(policy, &resolver.sets, settings),
            table: FlowTable::default(),
        });
    }
    let owners = AddressOwners::new(nics.iter().map(|n| n.policy.policy().addresses.as_slice()));
    let owner = |ip: IpAddr| owners.of(ip);
    let mut state = ReplayState::default();
    let mut events = Vec::new();
    let mut last_tick: Option<Time> = None;
    let mut copies = CopyFilter::new();
    for packet in &capture.packets {
        if copies.is_copy(packet) {
            state.summary.packet_copies += 1;
            continue;
        }
        let meta = &packet.meta;
        // Flow tables age by the capture's clock: end idle flows and report long ones once a
        // captured minute. (Packets of expired flows are caught on arrival; the tick only
        // writes the end of flows that went quiet, with their exact end time.)
        if last_tick.is_none_or(|t| meta.time.secs() / 60 > t.secs() / 60) {
            for nic in &mut nics {
                nic.table.tick(&nic.policy, meta.time, &mut events);
            }
            last_tick = Some(meta.time);
        }
        state.summary.packets += 1;
        let (from, to) = (owner(meta.src), owner(meta.dst));
        if from.is_none() && to.is_none() {
            state.summary.packets_unmapped += 1;
            continue;
        }
        let crossings = [(from, Direction::Outbound), (to, Direction::Inbound)];
        let mut forwarded = true;
        for (nic, direction) in crossings {
            let Some(nic) = nic.map(|i| &mut nics[i]) else {
                continue;
            };
            let outcome = nic.table.process(&nic.policy, meta, direction, &mut events);
            state.count(nic, direction, meta, &outcome);
            if !outcome.forwarded() {
                forwarded = false;
                break;
            }
        }
        if forwarded {
            state.summary.packets_allowed += 1;
        }
    }
    // End of the capture: let every flow end, so the logs close them.
    let end = capture
        .packets
        .last()
        .map(|p| p.meta.time.plus_secs(3600))
        .unwrap_or_default();
    for nic in &mut nics {
        nic.table.tick(&nic.policy, end, &mut events);
    }
    state.summary.records_skipped = capture.skipped.len() as u64;
    let guids: HashMap<&ResourceId, &str> = model
        .network_security_groups
        .iter()
        .filter_map(|n| Some((&n.id, n.resource_guid.as_deref()?)))
        .collect();
    let mut builder = FlowLogBuilder::new();
    for event in &mut events {
        // The NSG's `resourceGuid`, when the environment gives one, is the record's `systemId`.
        event.nsg_guid = guids.get(&event.nsg).map(|g| g.to_string());
        builder.push(event.clone());
    }
    state.summary.flow_log_events_skipped = builder.skipped();
    state.summary.by_rule = state.by_rule.into_iter().collect();
    Ok(Replay {
        summary: state.summary,
        flow_logs: builder.finish(),
        events,
    })
}

#[derive(Default)]
struct ReplayState {
    summary: Summary,
    by_rule: BTreeMap<Decider, Counts>,
}

impl ReplayState {
    fn count(
        &mut self,
        nic: &Nic,
        direction: Direction,
        meta: &PacketMeta,
        outcome: &PacketOutcome,
    ) {
        let (rule, access, new_flow) = match outcome {
            PacketOutcome::Established(rule) => (*rule, Access::Allow, false),
            PacketOutcome::NewFlow(v) => (logging_rule(v, direction), Access::Allow, true),
            PacketOutcome::AllowedStateless(v) => (logging_rule(v, direction), Access::Allow, true),
            PacketOutcome::Denied {
                verdict,
                first_attempt,
            } => {
                self.summary.packets_denied += 1;
                let platform = verdict.platform.map(|p| p.reference());
                self.add(
                    decider(
                        nic,
                        logging_rule(verdict, direction),
                        platform,
                        Access::Deny,
                    ),
                    meta,
                    *first_attempt,
                );
                return;
            }
            PacketOutcome::TableFull => {
                self.summary.packets_refused += 1;
                return;
            }
            PacketOutcome::WithoutFlow => {
                self.summary.packets_without_flow += 1;
                return;
            }
        };
        let platform = match outcome {
            PacketOutcome::NewFlow(v) | PacketOutcome::AllowedStateless(v) => {
                v.platform.map(|p| p.reference())
            }
            _ => None,
        };
        self.add(decider(nic, rule, platform, access), meta, new_flow);
    }

    fn add(&mut self, decider: Decider, meta: &PacketMeta, new_flow: bool) {
        let counts = self.by_rule.entry(decider).or_default();
        counts.packets += 1;
        counts.bytes += u64::from(meta.length);
        counts.flows += u64::from(new_flow);
    }
}

fn decider(nic: &Nic, rule: Option<RuleAt>, platform: Option<&str>, access: Access) -> Decider {
    let resolved = rule.and_then(|r| r.resolve(nic.policy.policy()));
    let (network_security_group, rule) = match (resolved, platform) {
        (_, Some(platform)) => ("(none)".to_string(), platform.to_string()),
        (Some((stage, rule)), None) => (stage.nsg.name().to_string(), rule.reference()),
        (None, None) => ("(none)".to_string(), format!("(no NSG at {})", nic.name)),
    };
    Decider {
        network_security_group,
        rule,
        access: access.as_str().to_string(),
    }
}
