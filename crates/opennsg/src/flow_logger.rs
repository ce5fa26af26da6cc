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
use crate::owners::AddressOwners;
use anyhow::{Context, Result};
use nsg_flow_store::{
    BlobName, BlobPrefix, BlobStore, Credential, DirectoryStore, FlowLogStore, HourStamp,
};
use nsg_model::flow_log_filter::{
    Encryption, FilterTuple, FlowLogFilter, FlowState as FilterState, RecordTypes,
};
use nsg_model::id::types;
use nsg_model::rule::{Access, Direction};
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
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The type of flow log resources.
pub const FLOW_LOG_TYPE: &str = "Microsoft.Network/networkWatchers/flowLogs";
/// Bytes of each denied packet copied to userspace: enough for IPv6 and TCP headers.
const NFLOG_COPY: u16 = 128;
/// The conntrack event socket's receive buffer: the kernel doubles it and queues about 1,280
/// bytes per event, so a burst of some 100,000 ended connections (a flush, a restart of a busy
/// guest) waits for the reader instead of being lost. Only what is queued is used.
const CONNTRACK_EVENT_BUFFER: usize = 64 << 20;
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
    /// VNet flow logs also go to Azure Blob Storage, at their `storageId`'s account.
    pub storage: Option<BlobStorage>,
}

/// How to reach the storage accounts flow logs name.
#[derive(Clone, Debug)]
pub struct BlobStorage {
    /// The blob endpoint, `{account}` standing for the account of a flow log's `storageId`:
    /// `https://{account}.blob.core.windows.net`, or Azurite's `http://127.0.0.1:10000/{account}`.
    pub endpoint: String,
    pub credential: StorageCredential,
}

/// How requests to the storage accounts are signed.
#[derive(Clone)]
pub enum StorageCredential {
    /// Each account's shared key (one key for all accounts, as Azurite's development account).
    AccountKey(String),
    /// A SAS token valid for the accounts.
    SharedAccessSignature(String),
}

impl std::fmt::Debug for StorageCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of logs.
        f.write_str(match self {
            StorageCredential::AccountKey(_) => "AccountKey(…)",
            StorageCredential::SharedAccessSignature(_) => "SharedAccessSignature(…)",
        })
    }
}

impl BlobStorage {
    /// The store of `account`.
    fn store(&self, account: &str) -> Result<BlobStore, nsg_flow_store::StoreError> {
        let endpoint = self.endpoint.replace("{account}", account);
        let credential = match &self.credential {
            StorageCredential::AccountKey(key) => Credential::AccountKey {
                account: account.to_string(),
                key: key.clone(),
            },
            StorageCredential::SharedAccessSignature(sas) => {
                Credential::SharedAccessSignature(sas.clone())
            }
        };
        BlobStore::new(&endpoint, credential)
    }
}

/// An enabled VNet flow log: its identity, whom it covers, and how long its blobs are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VnetFlowLog {
    pub identity: FlowLogIdentity,
    /// The storage account of its `storageId`, if that is one.
    pub storage_account: Option<String>,
    /// Days of blobs to keep; 0 keeps them forever.
    pub retention_days: u32,
    /// `enabledFilteringCriteria`: only matching tuples are written.
    pub filter: Option<FlowLogFilter>,
    /// `recordTypes`: only tuples of these states are written.
    pub record_types: Option<RecordTypes>,
}

impl VnetFlowLog {
    /// Whether the flow log writes `event`: its filter and record types keep it.
    pub fn keeps(&self, event: &FlowLogEvent) -> bool {
        let letter = match event.access {
            Access::Deny => 'D',
            Access::Allow => event.state.letter(),
        };
        let Some(state) = FilterState::from_letter(letter) else {
            return false;
        };
        if self
            .record_types
            .is_some_and(|types| !types.contains(state))
        {
            return false;
        }
        self.filter.as_ref().is_none_or(|filter| {
            filter.matches(&FilterTuple {
                src: event.src,
                dst: event.dst,
                src_port: event.src_port,
                dst_port: event.dst_port,
                protocol: event.protocol,
                direction: event.direction,
                state,
                encryption: Encryption::Unencrypted,
            })
        })
    }

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
        let filter = match properties["enabledFilteringCriteria"].as_str() {
            Some(text) if !text.trim().is_empty() => match FlowLogFilter::parse(text) {
                Ok(filter) => Some(filter),
                Err(error) => {
                    skipped.push(format!("flow log {id}: enabledFilteringCriteria: {error}"));
                    continue;
                }
            },
            _ => None,
        };
        let record_types = match properties["recordTypes"].as_str() {
            Some(text) if !text.trim().is_empty() => match RecordTypes::parse(text) {
                Ok(types) => Some(types),
                Err(error) => {
                    skipped.push(format!("flow log {id}: recordTypes: {error}"));
                    continue;
                }
            },
            _ => None,
        };
        let retention = &properties["retentionPolicy"];
        let retention_days = match retention["enabled"] {
            Value::Bool(true) => retention["days"]
                .as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or(0),
            _ => 0,
        };
        let storage_account = properties["storageId"]
            .as_str()
            .and_then(|id| ResourceId::parse(id).ok())
            .filter(|id| id.is_type("Microsoft.Storage/storageAccounts"))
            .map(|id| id.name().to_string());
        logs.push(VnetFlowLog {
            storage_account,
            identity: FlowLogIdentity {
                id,
                guid: properties["resourceGuid"]
                    .as_str()
                    .or_else(|| item["properties"]["flowLogGuid"].as_str())
                    .map(str::to_string),
                target,
            },
            retention_days,
            filter,
            record_types,
        });
    }
    (logs, skipped)
}

/// The enabled VNet flow logs of environment files (warning of those skipped).
pub fn vnet_flow_logs_in(files: &[PathBuf]) -> Result<Vec<VnetFlowLog>> {
    let mut flow_logs = Vec::new();
    for file in files {
        let documents: Value = serde_json::from_slice(&crate::inputs::read_input(file)?)
            .with_context(|| format!("{}: not JSON", file.display()))?;
        let (found, skipped) = vnet_flow_logs(&documents);
        for reason in skipped {
            eprintln!("opennsg: warning: {reason}");
        }
        flow_logs.extend(found);
    }
    Ok(flow_logs)
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
    /// Shared with the writer, which takes it at each append without copying it.
    policy: Arc<LoggedPolicy>,
    live: LiveFlows,
    counts: LoggerCounts,
}

/// The running logger; logging goes on in its threads until the process ends.
pub struct FlowLogger {
    shared: Arc<Mutex<Shared>>,
    /// Whether conntrack's counters are on (`nf_conntrack_acct`).
    accounting: std::sync::atomic::AtomicBool,
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
        // Before the first apply connection tracking may not be loaded yet (its sysctls do
        // not exist): `update` tries again after each rendering.
        let accounting = nsg_netfilter::enable_accounting().is_ok();
        let mut events = ConntrackEvents::subscribe_with_buffer(CONNTRACK_EVENT_BUFFER)
            .context("flow logs: conntrack events")?;
        let mut nflog = Nflog::bind(settings.logging.group, NFLOG_COPY)
            .with_context(|| format!("flow logs: nflog group {}", settings.logging.group))?;
        std::fs::create_dir_all(&settings.dir)
            .with_context(|| format!("--flow-logs {}", settings.dir.display()))?;
        let shared = Arc::new(Mutex::new(Shared {
            policy: Arc::new(LoggedPolicy::default()),
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
        Ok(FlowLogger {
            shared,
            accounting: std::sync::atomic::AtomicBool::new(accounting),
        })
    }

    /// Puts a new rendering's rules, NICs and flow logs in force for logging (before it is
    /// applied, so that the logger knows every rule number the kernel may report).
    pub fn update(&self, policy: LoggedPolicy) {
        let mut shared = lock(&self.shared);
        shared
            .live
            .set_nics(policy.nics.clone(), policy.nsg_guids.clone());
        shared.policy = Arc::new(policy);
    }

    /// After a rendering is applied: turns on conntrack's counters if that failed before
    /// (connection tracking is loaded by the first table using it).
    pub fn applied(&self) {
        use std::sync::atomic::Ordering;
        if self.accounting.load(Ordering::Relaxed) {
            return;
        }
        match nsg_netfilter::enable_accounting() {
            Ok(_) => self.accounting.store(true, Ordering::Relaxed),
            Err(error) => eprintln!(
                "opennsg: warning: flow logs carry no packet counts: {error} (set net.netfilter.nf_conntrack_acct=1)"
            ),
        }
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
    let mut accounts = Accounts::new(settings.storage.clone());
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
            let mut failures = Vec::new();
            let written = write_events(&mut store, &mut accounts, &done, &policy, &mut failures);
            for failure in failures {
                eprintln!("opennsg: {failure:#}");
            }
            lock(&shared).counts.tuples_written += written;
            let hour = at.secs() / 3600;
            if last_retention_hour != Some(hour) {
                last_retention_hour = Some(hour);
                apply_retention(&mut store, &policy.flow_logs, at);
            }
        }
    }
}

/// Writes `events` into `dir` in Azure's blob layout, as `--flow-logs` does (for `replay`):
/// NSG flow logs for every NSG, VNet flow logs for `policy`'s flow logs. Returns the tuples
/// written, or the first blob that could not be written.
pub fn write_directory(dir: &Path, events: &[FlowLogEvent], policy: &LoggedPolicy) -> Result<u64> {
    let mut store = DirectoryStore::new(dir);
    let mut accounts = Accounts::new(None);
    let mut failures = Vec::new();
    let written = write_events(&mut store, &mut accounts, events, policy, &mut failures);
    match failures.into_iter().next() {
        Some(failure) => Err(failure),
        None => Ok(written),
    }
}

/// The blob stores of the storage accounts flow logs name, made when first needed.
pub struct Accounts {
    storage: Option<BlobStorage>,
    stores: HashMap<String, BlobStore>,
}

impl Accounts {
    pub fn new(storage: Option<BlobStorage>) -> Accounts {
        Accounts {
            storage,
            stores: HashMap::new(),
        }
    }

    /// The store of `account`, when blob storage is configured; a failure is reported and
    /// tried again at the next append.
    fn store(&mut self, account: &str) -> Option<&mut BlobStore> {
        let storage = self.storage.as_ref()?;
        if !self.stores.contains_key(account) {
            match storage.store(account) {
                Ok(store) => {
                    self.stores.insert(account.to_string(), store);
                }
                Err(error) => {
                    eprintln!("opennsg: flow logs: storage account {account}: {error}");
                    return None;
                }
            }
        }
        self.stores.get_mut(account)
    }
}

/// Appends events to their blobs (VNet flow logs also to their storage accounts, when
/// `accounts` has storage); returns the tuples written to `store`. Public for `opennsg bench`,
/// which measures it with a store in memory.
pub fn write_events(
    store: &mut impl FlowLogStore,
    accounts: &mut Accounts,
    events: &[FlowLogEvent],
    policy: &LoggedPolicy,
    failures: &mut Vec<anyhow::Error>,
) -> u64 {
    if events.is_empty() {
        return 0;
    }
    let mut nsg = FlowLogBuilder::new();
    for event in events {
        nsg.push(event.clone());
    }
    let mut written = append_all(store, nsg_blobs(nsg.finish()), failures);
    if policy.flow_logs.is_empty() {
        return written;
    }
    // The NIC each event was logged at: the local end of its direction.
    let owners = AddressOwners::new(policy.nics.iter().map(|nic| nic.addresses.as_slice()));
    let logged_at: Vec<Option<usize>> = events
        .iter()
        .map(|event| {
            owners.of(match event.direction {
                Direction::Inbound => event.dst,
                Direction::Outbound => event.src,
            })
        })
        .collect();
    for flow_log in &policy.flow_logs {
        let covered: Vec<bool> = policy.nics.iter().map(|nic| flow_log.covers(nic)).collect();
        let mut vnet = VnetFlowLogBuilder::new(flow_log.identity.clone());
        for (event, nic) in events.iter().zip(&logged_at) {
            if nic.is_some_and(|nic| covered[nic]) && flow_log.keeps(event) {
                vnet.push(event);
            }
        }
        if vnet.is_empty() {
            continue;
        }
        let blobs = vnet_blobs(&flow_log.identity.id, vnet.finish());
        if let Some(account) = flow_log.storage_account.as_deref() {
            if let Some(blob_store) = accounts.store(account) {
                append_all(blob_store, blobs.clone(), failures);
            }
        }
        written += append_all(store, blobs, failures);
    }
    written
}

/// Appends each blob's records; a blob that fails is left as it was and its failure (naming
/// it) kept in `failures`. Returns the tuples written.
fn append_all<R: Serialize>(
    store: &mut impl FlowLogStore,
    blobs: Vec<Blob<R>>,
    failures: &mut Vec<anyhow::Error>,
) -> u64 {
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
            Err(error) => failures.push(error.context(format!("flow logs: {}", blob.name))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "/subscriptions/s/resourceGroups/rg/providers";

    fn flow_log(name: &str, properties: Value) -> Value {
        json!({
            "id": format!("{SUB}/Microsoft.Network/networkWatchers/nw/flowLogs/{name}"),
            "type": "Microsoft.Network/networkWatchers/flowLogs",
            "properties": properties,
        })
    }

    #[test]
    fn the_vnet_flow_logs_of_an_environment_are_found_and_others_skipped() {
        let vnet = format!("{SUB}/Microsoft.Network/virtualNetworks/v");
        let nsg = format!("{SUB}/Microsoft.Network/networkSecurityGroups/n");
        let documents = json!([
            {"id": format!("{SUB}/Microsoft.Network/virtualNetworks/v"), "type": "Microsoft.Network/virtualNetworks"},
            flow_log("kept", json!({"targetResourceId": vnet, "retentionPolicy": {"days": 7, "enabled": true}, "enabledFilteringCriteria": "DstPort=443", "recordTypes": "B,E"})),
            flow_log("off", json!({"targetResourceId": vnet, "enabled": false})),
            flow_log("nsg", json!({"targetResourceId": nsg})),
            flow_log("bad-filter", json!({"targetResourceId": vnet, "enabledFilteringCriteria": "Port=1"})),
            flow_log("bad-types", json!({"targetResourceId": vnet, "recordTypes": "X"})),
            flow_log("no-target", json!({})),
        ]);
        let (logs, skipped) = vnet_flow_logs(&documents);
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].identity.id.name(), "kept");
        assert_eq!(logs[0].retention_days, 7);
        assert!(logs[0].filter.is_some() && logs[0].record_types.is_some());
        for name in ["nsg", "bad-filter", "bad-types", "no-target"] {
            assert!(
                skipped.iter().any(|reason| reason.contains(name)
                    || (name == "no-target" && reason.contains("no valid id"))),
                "{name}: {skipped:?}"
            );
        }
        assert_eq!(skipped.len(), 4, "{skipped:?}");
    }
}
