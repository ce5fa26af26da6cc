//! `opennsg enforce --flow-logs DIR`: the flows the kernel filters, written in Azure's formats and
//! blob layout (docs/semantics.md K11).
//!
//! Two reader threads take the kernel's conntrack events and the deny chains' nflog packets
//! (`nsg-netfilter`); a logger thread turns them into flow log events ([`LiveFlows`]), dumps
//! the conntrack table every `report_every` for the `C` tuples of long connections, and at the
//! end of each minute appends that minute's records to the hourly blobs:
//!
//! * NSG flow logs version 2 for every NSG that decided a flow, as `opennsg replay` writes them;
//! * VNet flow logs version 4 for each enabled `Microsoft.Network/networkWatchers/flowLogs`
//!   resource whose target (VNet, subnet or NIC) covers the NIC, with its retention.

use crate::live_flows::{LiveFlows, LoggedNic};
use anyhow::{Context, Result};
use nsg_flow_store::{BlobName, BlobPrefix, DirectoryStore, FlowLogStore, HourStamp};
use nsg_model::id::types;
use nsg_model::ResourceId;
use nsg_netfilter::{ConntrackEvent, ConntrackEvents, Nflog, NflogPacket};
use nsg_nft::render::flow_logging::{FlowLogging, RuleIds};
use nsg_policy::flow_log::blob::{nsg_blobs, vnet_blobs, Blob, VNET_CONTAINER};
use nsg_policy::flow_log::vnet_v4::{FlowLogIdentity, VnetFlowLogBuilder};
use nsg_policy::flow_log::{record_resource_id, FlowLogBuilder, FlowLogEvent};
use nsg_policy::packet::Time;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The type of flow log resources.
pub const FLOW_LOG_TYPE: &str = "Microsoft.Network/networkWatchers/flowLogs";
/// Bytes of each denied packet copied to userspace: enough for IPv6 and TCP headers.
const NFLOG_COPY: u16 = 128;
/// How long a reader waits for the kernel before looking whether to stop.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Where and how often flows are logged.
#[derive(Clone, Debug)]
pub struct FlowLogSettings {
    pub dir: PathBuf,
    /// A connection's `C` tuples come at least this often apart.
    pub report_every: Duration,
    /// Records are appended at every multiple of this (60 s: at the end of each minute, as
    /// Azure does; shorter for tests, a minute's record then coming in several appends).
    pub flush_every: Duration,
    pub logging: FlowLogging,
}

/// An enabled VNet flow log: its identity, whom it covers, and how long its blobs are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnetFlowLog {
    pub identity: FlowLogIdentity,
    /// Days of blobs to keep; 0 keeps them forever.
    pub retention_days: u32,
}

impl VnetFlowLog {
    /// Whether the flow log's target is `nic`, one of its subnets, or their VNet.
    pub fn covers(&self, nic: &LoggedNic) -> bool {
        let target = &self.identity.target;
        *target == nic.id
            || nic
                .subnets
                .iter()
                .any(|subnet| subnet == target || subnet.parent().as_ref() == Some(target))
    }
}

/// The enabled VNet flow logs among ARM documents (an array, `{"value":[…]}` or one document):
/// those with a VNet, subnet or NIC target. Others are skipped with the reason.
pub fn vnet_flow_logs(documents: &Value) -> (Vec<VnetFlowLog>, Vec<String>) {
    let items: Vec<&Value> = match documents {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => match map.get("value") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => vec![documents],
        },
        _ => Vec::new(),
    };
    let mut logs = Vec::new();
    let mut skipped = Vec::new();
    for item in items {
        let is_flow_log = item["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(FLOW_LOG_TYPE));
        if !is_flow_log {
            continue;
        }
        let id = item["id"].as_str().unwrap_or("(no id)");
        let properties = &item["properties"];
        let parsed = ResourceId::parse(id).ok().zip(
            properties["targetResourceId"]
                .as_str()
                .and_then(|t| ResourceId::parse(t).ok()),
        );
        let Some((id, target)) = parsed else {
            skipped.push(format!("flow log {id}: no valid id or targetResourceId"));
            continue;
        };
        if properties["enabled"] == Value::Bool(false) {
            continue;
        }
        let vnet_target = [
            types::VIRTUAL_NETWORK,
            types::SUBNET,
            types::NETWORK_INTERFACE,
        ]
        .iter()
        .any(|ty| target.is_type(ty));
        if !vnet_target {
            skipped.push(format!(
                "flow log {id}: target {target} is not a VNet, subnet or NIC (NSG flow logs are written for every NSG)"
            ));
            continue;
        }
        let retention = &properties["retentionPolicy"];
        let retention_days = match retention["enabled"] {
            Value::Bool(true) => retention["days"]
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or(0),
            _ => 0,
        };
        logs.push(VnetFlowLog {
            identity: FlowLogIdentity {
                id,
                guid: properties["resourceGuid"]
                    .as_str()
                    .or_else(|| item["properties"]["flowLogGuid"].as_str())
                    .map(str::to_string),
                target,
            },
            retention_days,
        });
    }
    (logs, skipped)
}

/// What the logger knows of the policy in force; replaced after every rendering.
#[derive(Clone, Debug, Default)]
pub struct LoggedPolicy {
    pub rules: RuleIds,
    pub nics: Vec<LoggedNic>,
    pub nsg_guids: HashMap<ResourceId, String>,
    pub flow_logs: Vec<VnetFlowLog>,
}

/// What the logger has seen, for `--stats`-like reporting and tests.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggerCounts {
    pub conntrack_events: u64,
    pub conntrack_events_lost: u64,
    pub denied_packets: u64,
    pub denied_packets_lost: u64,
    pub tuples_written: u64,
}

enum Input {
    Conntrack(Vec<ConntrackEvent>, u64),
    Denied(Vec<NflogPacket>, u64),
}

struct Shared {
    policy: LoggedPolicy,
    live: LiveFlows,
    counts: LoggerCounts,
}

/// The running logger; logging goes on in its threads until the process ends.
pub struct FlowLogger {
    shared: Arc<Mutex<Shared>>,
}

fn now() -> Time {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Time(since.as_micros() as u64)
}

impl FlowLogger {
    /// Turns on conntrack accounting, subscribes to conntrack events and binds the nflog group
    /// (in this process's network namespace), and starts logging into `settings.dir`.
    pub fn start(settings: FlowLogSettings) -> Result<FlowLogger> {
        nsg_netfilter::enable_accounting().context("flow logs need conntrack accounting")?;
        let mut events = ConntrackEvents::subscribe().context("flow logs: conntrack events")?;
        let mut nflog = Nflog::bind(settings.logging.group, NFLOG_COPY)
            .with_context(|| format!("flow logs: nflog group {}", settings.logging.group))?;
        std::fs::create_dir_all(&settings.dir)
            .with_context(|| format!("--flow-logs {}", settings.dir.display()))?;
        let shared = Arc::new(Mutex::new(Shared {
            policy: LoggedPolicy::default(),
            live: LiveFlows::default(),
            counts: LoggerCounts::default(),
        }));
        let (sender, receiver) = mpsc::channel();
        spawn_reader("conntrack events", sender.clone(), move || {
            let batch = events.recv(READ_TIMEOUT)?;
            Ok(Input::Conntrack(batch, events.lost()))
        })?;
        spawn_reader("nflog", sender, move || {
            let batch = nflog.recv(READ_TIMEOUT)?;
            Ok(Input::Denied(batch, nflog.lost()))
        })?;
        let logger_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("flow logger".into())
            .spawn(move || log_loop(settings, receiver, logger_shared))
            .context("start the flow logger")?;
        Ok(FlowLogger { shared })
    }

    /// Puts a new rendering's rules, NICs and flow logs in force for logging.
    pub fn update(&self, policy: LoggedPolicy) {
        let mut shared = lock(&self.shared);
        shared
            .live
            .set_nics(policy.nics.clone(), policy.nsg_guids.clone());
        shared.policy = policy;
    }

    pub fn counts(&self) -> LoggerCounts {
        lock(&self.shared).counts
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic in the logger thread must not stop enforcement; the state stays usable.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spawn_reader(
    name: &str,
    sender: Sender<Input>,
    mut read: impl FnMut() -> nsg_netfilter::Result<Input> + Send + 'static,
) -> Result<()> {
    let label = name.to_string();
    thread::Builder::new()
        .name(label.clone())
        .spawn(move || loop {
            match read() {
                Ok(input) => {
                    if sender.send(input).is_err() {
                        return;
                    }
                }
                Err(error) => {
                    eprintln!("opennsg: flow logs: {label}: {error}");
                    thread::sleep(READ_TIMEOUT);
                }
            }
        })
        .with_context(|| format!("start the {name} reader"))?;
    Ok(())
}

fn log_loop(settings: FlowLogSettings, inputs: Receiver<Input>, shared: Arc<Mutex<Shared>>) {
    let mut store = DirectoryStore::new(&settings.dir);
    let mut pending: Vec<FlowLogEvent> = Vec::new();
    let mut flushed = now().secs() / settings.flush_every.as_secs().max(1);
    let mut last_dump = now();
    let mut last_retention_hour = None;
    loop {
        match inputs.recv_timeout(Duration::from_secs(1)) {
            Ok(input) => {
                let mut guard = lock(&shared);
                let Shared {
                    policy,
                    live,
                    counts,
                } = &mut *guard;
                let at = now();
                match input {
                    Input::Conntrack(events, lost) => {
                        counts.conntrack_events += events.len() as u64;
                        counts.conntrack_events_lost = lost;
                        for event in &events {
                            live.on_conntrack(event, &policy.rules, at, &mut pending);
                        }
                    }
                    Input::Denied(packets, lost) => {
                        counts.denied_packets += packets.len() as u64;
                        counts.denied_packets_lost = lost;
                        for packet in &packets {
                            live.on_denied(packet, &policy.rules, at, &mut pending);
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let at = now();
        if at.secs_since(last_dump) >= settings.report_every.as_secs().max(1) {
            last_dump = at;
            match nsg_netfilter::conntrack_dump() {
                Ok(entries) => {
                    let mut guard = lock(&shared);
                    let Shared { policy, live, .. } = &mut *guard;
                    live.on_dump(
                        &entries,
                        &policy.rules,
                        at,
                        settings.report_every.as_secs(),
                        &mut pending,
                    );
                }
                Err(error) => eprintln!("opennsg: flow logs: conntrack dump: {error}"),
            }
        }
        let flush_secs = settings.flush_every.as_secs().max(1);
        let boundary = at.secs() / flush_secs;
        if boundary != flushed {
            flushed = boundary;
            // Events before the boundary are written; later ones wait for the next.
            let (done, later): (Vec<_>, Vec<_>) = pending
                .drain(..)
                .partition(|e| e.time.secs() / flush_secs < boundary);
            pending = later;
            let policy = lock(&shared).policy.clone();
            let written = write_events(&mut store, &done, &policy);
            lock(&shared).counts.tuples_written += written;
            let hour = at.secs() / 3600;
            if last_retention_hour != Some(hour) {
                last_retention_hour = Some(hour);
                apply_retention(&mut store, &policy.flow_logs, at);
            }
        }
    }
}

/// Appends events to their blobs; returns the tuples written. (Public for `opennsg bench`,
/// which measures it with a store in memory.)
pub fn write_events(
    store: &mut impl FlowLogStore,
    events: &[FlowLogEvent],
    policy: &LoggedPolicy,
) -> u64 {
    if events.is_empty() {
        return 0;
    }
    let mut nsg = FlowLogBuilder::new();
    for event in events {
        nsg.push(event.clone());
    }
    let mut written = append_all(store, nsg_blobs(nsg.finish()));
    for flow_log in &policy.flow_logs {
        let covered: Vec<&LoggedNic> = policy
            .nics
            .iter()
            .filter(|nic| flow_log.covers(nic))
            .collect();
        let mut vnet = VnetFlowLogBuilder::new(flow_log.identity.clone());
        for event in events {
            let local = match event.direction {
                nsg_model::rule::Direction::Inbound => event.dst,
                nsg_model::rule::Direction::Outbound => event.src,
            };
            if covered
                .iter()
                .any(|nic| nic.addresses.iter().any(|net| net.contains(&local)))
            {
                vnet.push(event);
            }
        }
        if !vnet.is_empty() {
            written += append_all(store, vnet_blobs(&flow_log.identity.id, vnet.finish()));
        }
    }
    written
}

/// Appends each blob's records; failures are reported and the minute's records for that blob
/// dropped (the store leaves the blob as it was). Returns the tuples written.
fn append_all<R: Serialize>(store: &mut impl FlowLogStore, blobs: Vec<Blob<R>>) -> u64 {
    let mut tuples = 0;
    for blob in blobs {
        let records: Vec<Value> = blob
            .records
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        let count = records.iter().map(tuple_count).sum::<u64>();
        let result = BlobName::parse(&blob.name)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|name| store.append(&name, &records).map_err(anyhow::Error::from));
        match result {
            Ok(()) => tuples += count,
            Err(error) => eprintln!("opennsg: flow logs: {}: {error:#}", blob.name),
        }
    }
    tuples
}

/// The tuples of one record of either format.
fn tuple_count(record: &Value) -> u64 {
    let groups = record["properties"]["flows"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["flows"].as_array().into_iter().flatten())
        .chain(
            record["flowRecords"]["flows"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|acl| acl["flowGroups"].as_array().into_iter().flatten()),
        );
    groups
        .map(|group| group["flowTuples"].as_array().map_or(0, Vec::len) as u64)
        .sum()
}

/// Deletes each VNet flow log's hours older than its retention.
fn apply_retention(store: &mut DirectoryStore, flow_logs: &[VnetFlowLog], at: Time) {
    for flow_log in flow_logs.iter().filter(|f| f.retention_days > 0) {
        let Some(cutoff) = HourStamp::retention_cutoff(at.secs() as i64, flow_log.retention_days)
        else {
            continue;
        };
        let prefix = format!(
            "{VNET_CONTAINER}/flowLogResourceID={}/",
            record_resource_id(&flow_log.identity.id)
        );
        match BlobPrefix::parse(&prefix) {
            Ok(scope) => {
                if let Err(error) = store.remove_older_than(&scope, cutoff) {
                    eprintln!("opennsg: flow logs: retention of {prefix}: {error}");
                }
            }
            Err(error) => eprintln!("opennsg: flow logs: {prefix}: {error}"),
        }
    }
}
