//! `opennsg bench --workload flow-logs`: flow logging of live traffic (`enforce --flow-logs`).
//!
//! Four figures, each next to a baseline measured in the same run:
//!
//! 1. **Flows per second logged with < 1 % loss on one core.** In namespaces of the benchmark's
//!    own (a router between a VM and "the internet", veth pairs), the VM's NIC is enforced with
//!    flow logging and the VM sends UDP flows of one datagram each at increasing rates. The
//!    router's UDP timeout is 1 s and the flows' tuples come from a pool that each tuple leaves
//!    for 1.25 s, so every datagram ends its tuple's expired connection (a Destroy event) and
//!    begins a new one (a New event): New and Destroy both at the rate. The reader threads and
//!    the logger thread of [`FlowLogger`] share one CPU, the sender has the other. Events
//!    received and lost (the socket's drop counter, `ConntrackEvents::lost`) are counted per
//!    one-second window; a rate passes when the median window loses < 1 % and the logger has
//!    caught up soon after the traffic stops. The baseline is conntrack's own event rate: the
//!    same traffic read by a thread that does nothing but read (the approach of
//!    `nsg-netfilter`'s `conntrack_burst` example).
//! 2. **CPU at 10,000 flows per second**: the logger's threads (reading, `LiveFlows`, the
//!    builders, the appends; `/proc/self/task/*/schedstat`) and the whole process (its
//!    sending thread's system time includes the kernel's forwarding in softirq), next to the
//!    same traffic without flow logging (the ruleset without marks, nobody listening).
//! 3. **Memory per followed connection** in `LiveFlows`: the bytes glibc's malloc holds
//!    (`mallinfo2`) before and after 100,000 synthetic New events, next to a map keeping
//!    every `ConntrackEntry` whole.
//! 4. **In-process throughput**: synthetic conntrack events through `LiveFlows` and the
//!    logger's [`write_events`] (both builders, JSON) into a store in memory, next to a naive
//!    writer that decodes each event on its own and builds the JSON as `serde_json::Value`.

mod live;

use super::build_time;
use crate::enforce::{render_model_logged, Binding, LocalInterface, RenderedModel};
use crate::flow_logger::{write_events, Accounts, LoggedPolicy, VnetFlowLog, FLOW_LOG_TYPE};
use crate::live_flows::{LiveFlows, LoggedNic};
use anyhow::{ensure, Context, Result};
use nsg_flow_store::{BlobName, BlobPrefix, FlowLogStore, HourStamp, StoreError};
use nsg_model::model::Model;
use nsg_model::rule::{Access, Direction, RuleKind};
use nsg_model::{Environment, ResourceId};
use nsg_netfilter::{
    ConntrackEntry, ConntrackEvent, ConntrackEventKind, Counters, Transport, Tuple,
};
use nsg_nft::render::flow_logging::{mark_ids, FlowLogging, LoggedRule, RuleIds};
use nsg_policy::flow_log::{
    format_record_time, normalise_mac, record_resource_id, rule_label, CATEGORY, OPERATION_NAME,
    VERSION,
};
use nsg_policy::packet::Time;
use nsg_policy::Settings;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const NSG_NAME: &str = "bench-nsg";
const NIC_NAME: &str = "vm-nic";
const NIC_MAC: &str = "00-0D-3A-00-00-04";
const LOGGED_RULE: &str = "allow-udp-out";
/// The router's interface towards the VM, which the NIC is bound to.
const VM_INTERFACE: &str = "vm0";
const VM: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 4);
const INTERNET: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Rates tried double from the first; the pool of the last fits conntrack's default table
/// (262,144 entries).
const FIRST_RATE: u64 = 5_000;
const LAST_RATE: u64 = 160_000;

/// How long and how often each figure is measured.
#[derive(Clone, Copy, Debug)]
struct Scale {
    /// Windows per rate and for the CPU figure (the median is reported).
    windows: usize,
    window: Duration,
    last_rate: u64,
    /// Whether to try once between the last passing and the first failing rate.
    refine: bool,
    followed_connections: u32,
    /// Flows of the burst after the rates.
    burst_flows: u64,
    /// Connections per in-process batch (a New and a Destroy event each), and batches.
    batch_connections: u32,
    batches: usize,
}

const FULL: Scale = Scale {
    windows: 3,
    window: Duration::from_secs(1),
    last_rate: LAST_RATE,
    refine: true,
    followed_connections: 100_000,
    burst_flows: 50_000,
    batch_connections: 10_000,
    batches: 15,
};

/// A smoke test: every figure once, briefly, at two rates.
const QUICK: Scale = Scale {
    windows: 1,
    window: Duration::from_millis(500),
    last_rate: 2 * FIRST_RATE,
    refine: false,
    followed_connections: 10_000,
    burst_flows: 5_000,
    batch_connections: 2_000,
    batches: 3,
};

pub fn run(options: &super::Options) -> Result<()> {
    let scale = if options.quick { QUICK } else { FULL };
    let setup = Setup::new()?;
    let lab = live::Lab::create()?;
    // Rendered in the router, whose forwarding the renderer checks.
    let mut rules = RuleIds::default();
    let logged = lab.router.run(|| setup.render(Some(&mut rules)))?;
    let unlogged = lab.router.run(|| setup.render(None))?;
    let mark = rules
        .id(&setup.logged_rule)
        .context("the logged rule has a number")?;
    let policy = setup.logged_policy(logged.nics, rules);
    println!(
        "flow-logs workload: {NIC_NAME} ({VM}, MAC {NIC_MAC}) behind an NSG whose rules are \
         logged (its UDP flows by {LOGGED_RULE}), NSG flow logs (v2) and one VNet flow log (v4); \
         rendered with flow logging: {} nft rules (without: {})",
        logged.rendered.ruleset.rule_count(),
        unlogged.rendered.ruleset.rule_count()
    );
    memory(&policy, mark, scale)?;
    throughput(&policy, mark, scale)?;
    live::run(&lab, unlogged.rendered, logged.rendered, policy, scale)
}

/// The environment: one NIC behind one NSG, and the VNet flow log of its VNet.
struct Setup {
    model: Model,
    binding: Binding,
    interfaces: Vec<LocalInterface>,
    flow_log: VnetFlowLog,
    logged_rule: LoggedRule,
}

impl Setup {
    fn new() -> Result<Setup> {
        let s = crate::workload::SUBSCRIPTION;
        let nsg = format!("{s}/Microsoft.Network/networkSecurityGroups/{NSG_NAME}");
        let vnet = format!("{s}/Microsoft.Network/virtualNetworks/vnet");
        let documents = json!([
            {"id": nsg, "type": "Microsoft.Network/networkSecurityGroups",
             "properties": {"resourceGuid": "6f1b0c8e-3d59-4c38-9b7a-0000000000be",
                "securityRules": [{"name": LOGGED_RULE, "properties": {"protocol": "Udp",
                    "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*",
                    "destinationPortRange": "*", "access": "Allow", "priority": 100, "direction": "Outbound"}}]}},
            {"id": vnet, "type": "Microsoft.Network/virtualNetworks",
             "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "sub", "properties": {"addressPrefix": "10.0.1.0/24"}}]}},
            {"id": format!("{s}/Microsoft.Network/networkInterfaces/{NIC_NAME}"),
             "type": "Microsoft.Network/networkInterfaces",
             "properties": {"macAddress": NIC_MAC, "networkSecurityGroup": {"id": nsg},
                "ipConfigurations": [{"name": "ip", "properties": {"privateIPAddress": VM.to_string(),
                    "privateIPAllocationMethod": "Static", "subnet": {"id": format!("{vnet}/subnets/sub")}}}]}},
            {"id": format!("{s}/Microsoft.Network/networkWatchers/nw/flowLogs/bench-log"),
             "type": FLOW_LOG_TYPE,
             "properties": {"targetResourceId": vnet, "enabled": true}}
        ]);
        let mut environment = Environment::new();
        environment.add_value("bench", documents.clone())?;
        let model = crate::inputs::validate(&environment, &nsg_tags::Catalog::new())?;
        let (mut flow_logs, skipped) = crate::flow_logger::vnet_flow_logs(&documents);
        ensure!(skipped.is_empty(), "flow logs skipped: {skipped:?}");
        let flow_log = flow_logs.pop().context("the VNet flow log")?;
        Ok(Setup {
            model,
            binding: Binding {
                explicit: vec![(NIC_NAME.to_string(), VM_INTERFACE.to_string())],
                ..Binding::default()
            },
            interfaces: vec![LocalInterface {
                name: VM_INTERFACE.to_string(),
                mac: String::new(),
                bridge: None,
            }],
            flow_log,
            logged_rule: LoggedRule {
                nsg: ResourceId::parse(&nsg)?,
                kind: RuleKind::Custom,
                name: LOGGED_RULE.to_string(),
                direction: Direction::Outbound,
                access: Access::Allow,
            },
        })
    }

    /// The table `enforce` renders, with flow logging when `rules` are given.
    fn render(&self, rules: Option<&mut RuleIds>) -> Result<RenderedModel> {
        render_model_logged(
            &self.model,
            &nsg_tags::Catalog::new(),
            Settings::default(),
            &self.binding,
            &self.interfaces,
            rules.map(|rules| (FlowLogging::default(), rules)),
        )
    }

    /// What `enforce` tells its logger after rendering.
    fn logged_policy(&self, nics: Vec<LoggedNic>, rules: RuleIds) -> LoggedPolicy {
        LoggedPolicy {
            rules,
            nics,
            nsg_guids: self
                .model
                .network_security_groups
                .iter()
                .filter_map(|nsg| Some((nsg.id.clone(), nsg.resource_guid.clone()?)))
                .collect(),
            flow_logs: vec![self.flow_log.clone()],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In process: synthetic events
// ---------------------------------------------------------------------------------------------

/// An event of synthetic connection `n`: the VM to the internet over UDP, marked with the
/// logged rule's number (the outbound half); one datagram each way when it is destroyed.
fn synthetic_event(n: u32, mark: u16, kind: ConntrackEventKind) -> ConntrackEvent {
    let (src_port, dst_port) = (1024 + (n % 60_000) as u16, 53 + (n / 60_000) as u16);
    let tuple = |src: Ipv4Addr, dst: Ipv4Addr, sport, dport| Tuple {
        src: IpAddr::V4(src),
        dst: IpAddr::V4(dst),
        protocol: 17,
        transport: Transport::Ports {
            src: sport,
            dst: dport,
        },
    };
    let counters = (kind == ConntrackEventKind::Destroy).then_some(Counters {
        packets: 1,
        bytes: 60,
    });
    ConntrackEvent {
        kind,
        entry: ConntrackEntry {
            id: n,
            original: tuple(VM, INTERNET, src_port, dst_port),
            reply: tuple(INTERNET, VM, dst_port, src_port),
            mark: u32::from(mark),
            zone: 0,
            status: 0,
            counters_original: counters,
            counters_reply: counters,
            start: None,
            stop: None,
        },
    }
}

/// Bytes glibc's malloc (Rust's System allocator here) holds for the program: in use in its
/// arenas plus in mmapped chunks, chunk headers included.
#[cfg(target_env = "gnu")]
fn allocated_bytes() -> Option<usize> {
    // SAFETY: mallinfo2 takes no arguments and only reads the allocator's statistics.
    let info = unsafe { libc::mallinfo2() };
    Some(info.uordblks + info.hblkhd)
}

#[cfg(not(target_env = "gnu"))]
fn allocated_bytes() -> Option<usize> {
    None
}

/// Bytes allocated per item while `fill` runs and keeps what it made, or why not known.
fn bytes_per<T>(items: u32, fill: impl FnOnce() -> T) -> Result<(f64, T), &'static str> {
    let before = allocated_bytes().ok_or("not measured (needs glibc's mallinfo2)")?;
    let kept = fill();
    let after = allocated_bytes().ok_or("not measured")?;
    Ok((after.saturating_sub(before) as f64 / f64::from(items), kept))
}

fn memory(policy: &LoggedPolicy, mark: u16, scale: Scale) -> Result<()> {
    let n = scale.followed_connections;
    let events: Vec<ConntrackEvent> = (0..n)
        .map(|i| synthetic_event(i, mark, ConntrackEventKind::New))
        .collect();
    let now = Time::from_secs(1_700_000_000);
    let mut out = Vec::with_capacity(4);
    let mut live = LiveFlows::new(policy.nics.clone(), policy.nsg_guids.clone());
    let followed = bytes_per(n, || {
        for event in &events {
            live.on_conntrack(event, &policy.rules, now, &mut out);
            out.clear();
        }
    });
    ensure!(
        live.tracked() == n as usize,
        "LiveFlows follows {} of {n} connections",
        live.tracked()
    );
    let naive = bytes_per(n, || {
        let kept: HashMap<u32, ConntrackEntry> = events
            .iter()
            .map(|event| (event.entry.id, event.entry.clone()))
            .collect();
        black_box(kept)
    });
    let show = |measured: Result<f64, &str>| match measured {
        Ok(bytes) => format!("{bytes:.0} bytes per connection"),
        Err(why) => why.to_string(),
    };
    println!(
        "flow-logs (3) memory: LiveFlows following {n} connections (synthetic New events): {}; \
         naive baseline keeping each ConntrackEntry whole in a HashMap: {} (bytes glibc's malloc \
         holds, mallinfo2, before and after)",
        show(followed.map(|(bytes, ())| bytes)),
        show(naive.map(|(bytes, _)| bytes)),
    );
    Ok(())
}

/// A store that keeps nothing: each record is serialised as the stores write it (compact JSON)
/// and its bytes counted.
#[derive(Default)]
struct CountingStore {
    bytes: usize,
}

impl FlowLogStore for CountingStore {
    fn append(&mut self, _blob: &BlobName, records: &[Value]) -> Result<(), StoreError> {
        self.bytes += records.iter().map(|r| r.to_string().len()).sum::<usize>();
        Ok(())
    }

    fn remove_older_than(&mut self, _: &BlobPrefix, _: HourStamp) -> Result<u64, StoreError> {
        Ok(0)
    }
}

fn throughput(policy: &LoggedPolicy, mark: u16, scale: Scale) -> Result<()> {
    let connections = scale.batch_connections;
    // A minute's events in one flush: every connection begun, then every one ended.
    let events: Vec<ConntrackEvent> = [ConntrackEventKind::New, ConntrackEventKind::Destroy]
        .into_iter()
        .flat_map(|kind| (0..connections).map(move |i| synthetic_event(i, mark, kind)))
        .collect();
    let now = Time::from_secs(1_700_000_000);
    let nsg_only = LoggedPolicy {
        flow_logs: Vec::new(),
        ..policy.clone()
    };
    let pipeline = |policy: &LoggedPolicy| {
        let mut live = LiveFlows::new(policy.nics.clone(), policy.nsg_guids.clone());
        let mut pending = Vec::with_capacity(events.len());
        build_time(scale.batches, || {
            pending.clear();
            for event in &events {
                live.on_conntrack(event, &policy.rules, now, &mut pending);
            }
            let mut store = CountingStore::default();
            let mut failures = Vec::new();
            let tuples = write_events(
                &mut store,
                &mut Accounts::new(None),
                &pending,
                policy,
                &mut failures,
            );
            (tuples, store.bytes)
        })
    };
    let (v2_time, (v2_tuples, v2_bytes)) = pipeline(&nsg_only);
    let (both_time, (both_tuples, _)) = pipeline(policy);
    let (naive_time, (naive_tuples, naive_bytes)) = build_time(scale.batches, || {
        naive_nsg_records(&events, &policy.rules, &policy.nics, &policy.nsg_guids, now)
    });
    ensure!(
        naive_tuples == v2_tuples && both_tuples == 2 * v2_tuples,
        "tuples written: naive {naive_tuples}, v2 {v2_tuples}, v2 and v4 {both_tuples}"
    );
    let per_second = |time: Duration| events.len() as f64 / time.as_secs_f64() / 1e6;
    println!(
        "flow-logs (4) in process, {} synthetic events ({connections} UDP connections begun and \
         ended) through LiveFlows and the logger's writer into a store in memory: NSG v2 only \
         {:.2} M events/s ({v2_tuples} tuples, {:.1} MB of JSON), NSG v2 and VNet v4 {:.2} M \
         events/s; naive baseline (each event decoded alone, NSG v2 JSON built as \
         serde_json::Value) {:.2} M events/s ({:.1} MB) (medians of {})",
        events.len(),
        per_second(v2_time),
        v2_bytes as f64 / 1e6,
        per_second(both_time),
        per_second(naive_time),
        naive_bytes as f64 / 1e6,
        scale.batches,
    );
    Ok(())
}

/// The naive writer: no connection state (an `E` carries the entry's totals), each event's
/// rule and NIC looked up on their own, and the NSG v2 document built as a `serde_json::Value`
/// whose records, rules and MACs are found by linear search. Returns (tuples, bytes of JSON).
fn naive_nsg_records(
    events: &[ConntrackEvent],
    rules: &RuleIds,
    nics: &[LoggedNic],
    guids: &HashMap<ResourceId, String>,
    now: Time,
) -> (u64, usize) {
    let mut records: Vec<Value> = Vec::new();
    let mut tuples = 0;
    for event in events {
        let entry = &event.entry;
        let Some(rule) = mark_ids(entry.mark).0.and_then(|id| rules.rule(id)) else {
            continue;
        };
        let Some(nic) = nics.iter().find(|nic| {
            nic.addresses
                .iter()
                .any(|net| net.contains(&entry.original.src))
        }) else {
            continue;
        };
        let (Transport::Ports { src, dst }, Some(mac)) =
            (entry.original.transport, normalise_mac(&nic.mac))
        else {
            continue;
        };
        let (state, counters) = match (event.kind, entry.counters_original, entry.counters_reply) {
            (ConntrackEventKind::Destroy, Some(sent), Some(received)) => (
                'E',
                format!(
                    "{},{},{},{}",
                    sent.packets, sent.bytes, received.packets, received.bytes
                ),
            ),
            _ => ('B', ",,,".to_string()),
        };
        let tuple = format!(
            "{},{},{},{src},{dst},U,O,A,{state},{counters}",
            now.secs(),
            entry.original.src,
            entry.original.dst,
        );
        let resource_id = record_resource_id(&rule.nsg);
        let position = records.iter().position(|record| {
            record["resourceId"] == resource_id.as_str() && record["macAddress"] == mac.as_str()
        });
        let index = position.unwrap_or_else(|| {
            records.push(json!({
                    "time": format_record_time(now.secs() / 60 * 60 + 60),
                    "systemId": guids.get(&rule.nsg),
                    "macAddress": mac,
                    "category": CATEGORY,
                    "resourceId": resource_id,
                    "operationName": OPERATION_NAME,
                    "properties": {"Version": VERSION, "flows": []},
            }));
            records.len() - 1
        });
        let label = rule_label(rule.kind, &rule.name);
        let Some(flows) = records[index]["properties"]["flows"].as_array_mut() else {
            continue;
        };
        let rule_index = flows
            .iter()
            .position(|f| f["rule"] == label.as_str())
            .unwrap_or_else(|| {
                flows.push(json!({"rule": label, "flows": [{"mac": mac, "flowTuples": []}]}));
                flows.len() - 1
            });
        if let Some(list) = flows[rule_index]["flows"][0]["flowTuples"].as_array_mut() {
            list.push(Value::String(tuple));
            tuples += 1;
        }
    }
    let bytes = json!({ "records": records }).to_string().len();
    (tuples, bytes)
}
