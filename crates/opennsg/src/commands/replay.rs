//! `opennsg replay`: a capture through the NSGs of an environment, with its summary and flow
//! logs (one document, or Azure's blob layout in a directory).

use anyhow::{Context, Result};
use clap::Args;
use opennsg::flow_logger::{vnet_flow_logs_in, write_directory, LoggedPolicy};
use opennsg::inputs;
use opennsg::live_flows::LoggedNic;
use opennsg::query;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub(crate) env: crate::EnvArgs,
    /// A pcap or pcapng capture (Ethernet, Linux cooked or raw IP).
    #[arg(long, value_name = "FILE")]
    pub(crate) pcap: PathBuf,
    /// Only these NICs (name or id; repeatable). Default: every NIC of the environment.
    #[arg(long)]
    pub(crate) nic: Vec<String>,
    /// Write the NSG flow logs (version 2) here: {"records": [...]} as in Azure's PT1H.json blobs.
    #[arg(long, value_name = "OUT.json")]
    pub(crate) flow_logs: Option<PathBuf>,
    /// Write the flow logs into DIR in Azure's blob layout, as `enforce --flow-logs` does: NSG
    /// flow logs for every NSG, VNet flow logs for each flowLogs resource of the environment.
    #[arg(long, value_name = "DIR")]
    pub(crate) flow_log_dir: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn replay(args: ReplayArgs) -> Result<u8> {
    let loaded = crate::load(&args.env)?;
    let (pcap, flow_logs, json) = (&args.pcap, args.flow_logs.as_deref(), args.json);
    let only = args
        .nic
        .iter()
        .map(|n| query::find_nic(&loaded.model, n))
        .collect::<Result<Vec<_>>>()?;
    let bytes = inputs::read_input(pcap)?;
    let capture = read_capture_with_progress_bar(&bytes)
        .with_context(|| format!("reading {}", pcap.display()))?;
    let result = opennsg::replay::replay(
        &loaded.model,
        &loaded.catalog,
        loaded.settings,
        &only,
        &capture,
    )?;
    if let Some(path) = flow_logs {
        let text = serde_json::to_string_pretty(&result.flow_logs)?;
        std::fs::write(path, text)
            .with_context(|| format!("writing flow logs to {}", path.display()))?;
    }
    if let Some(dir) = &args.flow_log_dir {
        let flow_logs = vnet_flow_logs_in(&args.env.files)?;
        let policy = LoggedPolicy {
            nics: loaded
                .model
                .network_interfaces
                .iter()
                .map(LoggedNic::of)
                .collect(),
            flow_logs,
            ..LoggedPolicy::default()
        };
        let tuples = write_directory(dir, &result.events, &policy)?;
        eprintln!(
            "opennsg: {tuples} flow log tuples written under {}",
            dir.display()
        );
    }
    let s = &result.summary;
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(0);
    }
    println!("{}", s.headline());
    println!(
        "{:<24} {:<48} {:<6} {:>8} {:>10} {:>12}",
        "NSG", "rule", "access", "flows", "packets", "bytes"
    );
    for (decider, counts) in &s.by_rule {
        println!(
            "{:<24} {:<48} {:<6} {:>8} {:>10} {:>12}",
            decider.network_security_group,
            decider.rule,
            decider.access,
            counts.flows,
            counts.packets,
            counts.bytes
        );
    }
    if let Some(path) = flow_logs {
        println!(
            "flow logs: {} records written to {}{}",
            result.flow_logs.records.len(),
            path.display(),
            if s.flow_log_events_skipped > 0 {
                format!(
                    " ({} ICMP or other-protocol events have no version 2 tuple)",
                    s.flow_log_events_skipped
                )
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

/// Reads a capture, with a progress bar on a terminal for large files.
fn read_capture_with_progress_bar(
    bytes: &[u8],
) -> Result<nsg_capture::Capture, nsg_capture::CaptureError> {
    use std::io::IsTerminal;
    const LARGE: usize = 16 << 20;
    if bytes.len() < LARGE || !std::io::stderr().is_terminal() {
        return nsg_capture::read_capture(bytes);
    }
    let bar = indicatif::ProgressBar::new(bytes.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {elapsed_precise}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let capture =
        nsg_capture::read_capture_with_progress(bytes, &mut |done| bar.set_position(done as u64));
    bar.finish_and_clear();
    capture
}
