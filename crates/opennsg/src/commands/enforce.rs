//! `opennsg enforce`: the command line of `opennsg::enforce` (bind, render, apply, check,
//! remove, or follow a server with `--watch`).

use super::EXIT_DENY;
use anyhow::Result;
use clap::Args;
use nsg_nft::hits::{Hits, RuleComment};
use nsg_nft::render::flow_logging::{FlowLogging, RuleIds};
use nsg_policy::{Settings, SubscriptionType};
use opennsg::flow_logger::{
    vnet_flow_logs_in, BlobStorage, FlowLogSettings, FlowLogger, StorageCredential,
};
use opennsg::hit_history::HitHistory;
use opennsg::inputs;
use opennsg::tag_cache::{TagFiles, TagReloader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub(crate) struct EnforceArgs {
    /// Options from this TOML file (keys are the long options; the command line wins).
    /// Default: /etc/opennsg/enforce.toml ($OPENNSG_CONFIG_DIR/enforce.toml), if it exists.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// ARM JSON files; or follow a server with --watch.
    #[arg(value_name = "ENV", required_unless_present_any = ["watch", "remove"], conflicts_with = "watch")]
    pub(crate) files: Vec<PathBuf>,
    /// Bind a NIC (name or id, or a one-NIC VM) to a local interface (repeatable).
    #[arg(long = "bind", value_name = "NIC=IFNAME", value_parser = opennsg::enforce::parse_binding)]
    pub(crate) bind: Vec<(String, String)>,
    /// Also bind each NIC whose macAddress is a local interface's MAC (or a libvirt tap's,
    /// whose first octet is fe).
    #[arg(long)]
    pub(crate) bind_by_mac: bool,
    /// A --bind interface may not exist yet (a VM not started): warn, and filter it as soon as
    /// it appears. Without this, a missing interface is an error.
    #[arg(long)]
    pub(crate) allow_absent: bool,
    /// Microsoft's ServiceTags_*.json files (repeatable). Default: the current file of
    /// `opennsg tags update`'s cache. With --watch, reloaded when they change (SIGHUP, or every
    /// --tags-interval).
    #[arg(long = "service-tags", value_name = "FILE")]
    pub(crate) service_tags: Vec<PathBuf>,
    /// Subscription type, for the outbound TCP 25 block.
    #[arg(long, default_value = "EnterpriseAgreement", value_name = "TYPE")]
    pub(crate) subscription_type: SubscriptionType,
    /// Print the nft JSON transaction instead of applying it.
    #[arg(long, conflicts_with_all = ["check", "watch"])]
    pub(crate) dry_run: bool,
    /// Report how the kernel's table differs from the policy; change nothing. Exit 1 on drift.
    #[arg(long, conflicts_with = "watch")]
    pub(crate) check: bool,
    /// Print how many packets and bytes each NSG rule decided (the kernel's counters since the
    /// rule's chain was last written; a connection's first packet meets the rules, the rest pass
    /// as established); change nothing.
    #[arg(long, conflicts_with_all = ["watch", "dry_run", "check", "remove"])]
    pub(crate) stats: bool,
    /// A rule hit history: with --watch, updated from the kernel's counters at every reconcile
    /// interval; with --stats, each rule's last hit is read from it.
    #[arg(long, value_name = "FILE")]
    pub(crate) hits_file: Option<PathBuf>,
    /// With --stats and --hits-file: list only the rules without a hit in the last HOURS (exit
    /// 1 if there are any), the input of unused-rule reviews.
    #[arg(long, value_name = "HOURS", requires_all = ["stats", "hits_file"])]
    pub(crate) unused_for: Option<f64>,
    /// With --stats: JSON instead of a table.
    #[arg(long, requires = "stats")]
    pub(crate) json: bool,
    /// Log the flows the kernel filters into DIR, in Azure's blob layout: NSG flow logs
    /// (version 2) for every NSG, VNet flow logs (version 4) for each flowLogs resource of the
    /// environment. Keeps running (as --watch does) to log.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["dry_run", "check", "remove", "stats"])]
    pub(crate) flow_logs: Option<PathBuf>,
    /// Seconds between a long connection's C tuples in the flow logs.
    #[arg(
        long,
        default_value_t = 300,
        value_name = "SECS",
        requires = "flow_logs"
    )]
    pub(crate) flow_log_interval: u64,
    /// Seconds between appends to the flow log blobs (60: at the end of each minute).
    #[arg(
        long,
        default_value_t = 60,
        value_name = "SECS",
        requires = "flow_logs"
    )]
    pub(crate) flow_log_flush: u64,
    /// Also write each VNet flow log to Azure Blob Storage at its storageId's account: the
    /// endpoint, `{account}` standing for the account (https://{account}.blob.core.windows.net,
    /// or Azurite's http://127.0.0.1:10000/{account}).
    #[arg(long, value_name = "URL", requires = "flow_logs")]
    pub(crate) flow_log_storage: Option<String>,
    /// The storage accounts' shared key, for --flow-log-storage.
    #[arg(
        long,
        env = "OPENNSG_STORAGE_KEY",
        hide_env_values = true,
        requires = "flow_log_storage",
        conflicts_with = "storage_sas"
    )]
    pub(crate) storage_key: Option<String>,
    /// A SAS token for the storage accounts, for --flow-log-storage.
    #[arg(
        long,
        env = "OPENNSG_STORAGE_SAS",
        hide_env_values = true,
        requires = "flow_log_storage"
    )]
    pub(crate) storage_sas: Option<String>,
    /// The nflog group denied packets are logged to.
    #[arg(long, default_value_t = FlowLogging::default().group, requires = "flow_logs")]
    pub(crate) flow_log_group: u16,
    /// Denied packets logged per second per rule at most (the rest are dropped unlogged).
    #[arg(long, default_value_t = FlowLogging::default().denied_per_second, requires = "flow_logs")]
    pub(crate) denied_log_rate: u32,
    /// Remove OpenNSG's table.
    #[arg(long, conflicts_with_all = ["watch", "dry_run", "check"])]
    pub(crate) remove: bool,
    /// Follow an `opennsg serve` instance (http:// or https://HOST:PORT): apply on change, repair
    /// drift.
    #[arg(long, value_name = "URL")]
    pub(crate) watch: Option<String>,
    /// PEM certificate(s) to trust for an https:// --watch URL (e.g. serve's DATA/cert.pem).
    #[arg(long, value_name = "FILE", requires = "watch")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The server's bearer token.
    #[arg(
        long,
        env = "OPENNSG_TOKEN",
        hide_env_values = true,
        requires = "watch"
    )]
    pub(crate) token: Option<String>,
    /// Seconds between polls of the server.
    #[arg(long, default_value_t = 2.0, requires = "watch")]
    pub(crate) interval: f64,
    /// Seconds between comparisons of the kernel's table with the policy (drift repair).
    #[arg(long, default_value_t = 30.0, requires = "watch")]
    pub(crate) reconcile_interval: f64,
    /// Serve the kernel's per-rule hit counts as Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Seconds between checks for new service tag files (SIGHUP checks at once).
    #[arg(long, default_value_t = 60.0, requires = "watch")]
    pub(crate) tags_interval: f64,
}

pub(crate) fn enforce(args: EnforceArgs) -> Result<u8> {
    use opennsg::enforce;
    let kernel = nsg_nft::Kernel::local();
    if args.remove {
        let tables = kernel.tables()?;
        if tables.is_empty() {
            eprintln!(
                "opennsg: there is no table {}: nothing to remove",
                nsg_nft::Table::Inet
            );
            return Ok(0);
        }
        kernel.apply(&nsg_nft::plan::remove(&tables))?;
        for table in tables {
            eprintln!("opennsg: removed table {table}");
        }
        return Ok(0);
    }
    let tag_files = TagFiles::or_user_cache(args.service_tags);
    let settings = Settings {
        subscription_type: args.subscription_type,
    };
    let binding = enforce::Binding {
        explicit: args.bind,
        by_mac: args.bind_by_mac,
        allow_absent: args.allow_absent,
    };
    let mut enforcer = nsg_nft::Enforcer::new(kernel);
    let mut logging = match &args.flow_logs {
        Some(dir) => {
            let settings = FlowLogging {
                group: args.flow_log_group,
                denied_per_second: args.denied_log_rate,
                ..FlowLogging::default()
            };
            let logger = FlowLogger::start(FlowLogSettings {
                dir: dir.clone(),
                report_every: Duration::from_secs(args.flow_log_interval.max(1)),
                flush_every: Duration::from_secs(args.flow_log_flush.max(1)),
                storage: match &args.flow_log_storage {
                    None => None,
                    Some(endpoint) => {
                        let credential = match (&args.storage_key, &args.storage_sas) {
                            (Some(key), _) => StorageCredential::AccountKey(key.clone()),
                            (None, Some(sas)) => StorageCredential::SharedAccessSignature(sas.clone()),
                            (None, None) => anyhow::bail!(
                                "--flow-log-storage needs a credential: --storage-key ($OPENNSG_STORAGE_KEY) or --storage-sas ($OPENNSG_STORAGE_SAS)"
                            ),
                        };
                        Some(BlobStorage {
                            endpoint: endpoint.clone(),
                            credential,
                        })
                    }
                },
                logging: settings,
            })?;
            Some(enforce::Logging {
                settings,
                rules: RuleIds::default(),
                logger,
            })
        }
        None => None,
    };
    if let Some(url) = args.watch {
        enforce::check_watch_url(&url)?;
        let token = args.token.ok_or_else(|| {
            anyhow::anyhow!("--watch needs the server's token: --token or $OPENNSG_TOKEN")
        })?;
        for (flag, seconds) in [
            ("--interval", args.interval),
            ("--reconcile-interval", args.reconcile_interval),
            ("--tags-interval", args.tags_interval),
        ] {
            if !(seconds > 0.0 && seconds <= 86400.0) {
                anyhow::bail!("{flag} must be more than 0 and at most 86400 seconds");
            }
        }
        let watch = enforce::Watch {
            url,
            ca_cert: args.ca_cert,
            token,
            interval: Duration::from_secs_f64(args.interval),
            reconcile_interval: Duration::from_secs_f64(args.reconcile_interval),
        };
        let agent = watch.agent()?;
        if let Some(addr) = args.metrics {
            opennsg::enforce_metrics::serve(addr, enforcer.kernel().clone())?;
        }
        let (mut tags, catalog) =
            TagReloader::start(tag_files, Duration::from_secs_f64(args.tags_interval))?;
        let mut live = enforce::Following {
            catalog,
            tags: &mut tags,
            settings,
            binding: &binding,
            flow_logs: logging.as_mut(),
            hits: args
                .hits_file
                .clone()
                .map(enforce::HitRecorder::open)
                .transpose()?,
        };
        match enforce::follow(&watch, &mut live, &mut enforcer, &agent)? {}
    }
    let catalog = tag_files.load()?;
    let model = inputs::load_model(&args.files, &catalog)?;
    let interfaces = enforce::local_interfaces()?;
    if let Some(logging) = &mut logging {
        let flow_logs = vnet_flow_logs_in(&args.files)?;
        let rendered =
            logging.render(&model, &catalog, settings, &binding, &interfaces, flow_logs)?;
        enforce::apply_once(&mut enforcer, rendered)?;
        logging.logger.applied();
        eprintln!("opennsg: logging flows; stop with Ctrl-C (the table stays in force)");
        loop {
            std::thread::park();
        }
    }
    let rendered = enforce::render_model(&model, &catalog, settings, &binding, &interfaces)?;
    if args.dry_run {
        let batch = nsg_nft::plan::full(&rendered.ruleset, false);
        println!("{}", serde_json::to_string_pretty(&batch)?);
        return Ok(0);
    }
    if args.check {
        let drift = enforcer.check(&rendered.ruleset)?;
        for line in drift.describe() {
            println!("{line}");
        }
        return Ok(if drift.is_empty() { 0 } else { EXIT_DENY });
    }
    if args.stats {
        let hits = enforcer.kernel().rule_hits(Some(&rendered.ruleset))?;
        let history = args
            .hits_file
            .as_deref()
            .map(HitHistory::load)
            .transpose()?;
        return stats(&hits, history.as_ref(), args.unused_for, args.json);
    }
    enforce::apply_once(&mut enforcer, rendered)?;
    Ok(0)
}

/// One NSG rule's hits, as `--stats --json` prints them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleHits<'a> {
    network_security_group: &'a str,
    rule: &'a str,
    priority: u32,
    access: &'a str,
    packets: u64,
    bytes: u64,
    /// From the hit history: when the rule last decided a packet (RFC 3339), if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_hit: Option<String>,
}

/// `--stats`: every rule's counters (and last hit), or with `unused_for` only the rules
/// without a hit in that many hours (exit 1 if there are any).
fn stats(
    hits: &BTreeMap<RuleComment, Hits>,
    history: Option<&HitHistory>,
    unused_for: Option<f64>,
    json: bool,
) -> Result<u8> {
    let last_hit = |rule: &RuleComment| {
        history?
            .rules
            .iter()
            .find(|r| r.network_security_group == rule.nsg && r.rule == rule.rule)?
            .last_hit
    };
    // With --unused-for: the (NSG, rule) pairs to list.
    let mut unused: Option<Vec<(&str, &str)>> = None;
    if let (Some(hours), Some(history)) = (unused_for, history) {
        if !(hours > 0.0 && hours.is_finite()) {
            anyhow::bail!("--unused-for must be a positive number of hours");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let window = (hours * 3600.0) as u64;
        let without_hits = history.unused(now, window).map_err(|observed| {
            anyhow::anyhow!(
                "--unused-for {hours}: the hit history covers only {:.1} hours",
                observed as f64 / 3600.0
            )
        })?;
        let mut listed: Vec<(&str, &str)> = without_hits
            .iter()
            .map(|r| (r.network_security_group.as_str(), r.rule.as_str()))
            .collect();
        // Rules the history never saw (new since) have had no hit it knows of either.
        for rule in hits.keys() {
            let seen = history
                .rules
                .iter()
                .any(|r| r.network_security_group == rule.nsg && r.rule == rule.rule);
            if !seen {
                listed.push((&rule.nsg, &rule.rule));
            }
        }
        unused = Some(listed);
    }
    let rows: Vec<RuleHits<'_>> = hits
        .iter()
        .filter(|(rule, _)| {
            unused
                .as_ref()
                .is_none_or(|listed| listed.contains(&(rule.nsg.as_str(), rule.rule.as_str())))
        })
        .map(|(rule, hits)| RuleHits {
            network_security_group: &rule.nsg,
            rule: &rule.rule,
            priority: rule.priority,
            access: &rule.access,
            packets: hits.packets,
            bytes: hits.bytes,
            last_hit: last_hit(rule).map(nsg_policy::flow_log::format_record_time),
        })
        .collect();
    let found = rows.len();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "rules": rows }))?
        );
    } else {
        println!(
            "{:<24} {:<40} {:>8} {:<6} {:>12} {:>14}  LAST HIT",
            "NSG", "RULE", "PRIORITY", "ACCESS", "PACKETS", "BYTES"
        );
        for row in &rows {
            println!(
                "{:<24} {:<40} {:>8} {:<6} {:>12} {:>14}  {}",
                row.network_security_group,
                row.rule,
                row.priority,
                row.access,
                row.packets,
                row.bytes,
                row.last_hit.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(if unused_for.is_some() && found > 0 {
        EXIT_DENY
    } else {
        0
    })
}
