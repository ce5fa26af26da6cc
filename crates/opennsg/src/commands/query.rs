//! `opennsg query`: does every flow of a set get the expected verdict? A proof, or a
//! counterexample.

use super::EXIT_DENY;
use crate::{load, EnvArgs};
use anyhow::{anyhow, Result};
use clap::Args;
use nsg_analysis::addresses::address_set;
use nsg_analysis::example::Example;
use nsg_analysis::nics::compile_all;
use nsg_analysis::partition::FlowBox;
use nsg_analysis::query::counterexamples;
use nsg_model::rule::{Access, PortRange};
use nsg_policy::classify::ProtocolSet;
use opennsg::query;
use serde_json::{json, Value};

#[derive(Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// NIC name or id, or the name or id of a VM with one NIC; '*' for every NIC.
    #[arg(long)]
    nic: String,
    /// inbound or outbound.
    #[arg(long)]
    direction: String,
    /// tcp, udp, icmp, esp, ah, a protocol number, or * (the default).
    #[arg(long, default_value = "*")]
    protocol: String,
    /// The other end: '*' (the default), a service tag, or IP addresses and CIDRs, comma-separated.
    #[arg(long, default_value = "*")]
    remote: String,
    /// The other end's ports: N, A-B, comma-separated, or * (the default).
    #[arg(long = "remote-port", default_value = "*")]
    remote_port: String,
    /// The NIC's own ports.
    #[arg(long = "local-port", default_value = "*")]
    local_port: String,
    /// allow or deny: the verdict every flow of the set should get.
    #[arg(long)]
    expect: String,
    /// Print {"holds": …, "counterexample": …}.
    #[arg(long)]
    json: bool,
}

/// Exit 0 when it holds (at every NIC asked), 1 with a counterexample.
pub(crate) fn query(args: QueryArgs) -> Result<u8> {
    let loaded = load(&args.env)?;
    let direction = query::parse_direction(&args.direction)?;
    let expect = Access::parse(&args.expect)
        .ok_or_else(|| anyhow!("'{}' is not a verdict: use allow or deny", args.expect))?;
    let protocols = match args.protocol.as_str() {
        "*" => ProtocolSet::ALL,
        text => {
            let number = query::parse_protocol(text)?;
            // ICMP rules match ICMPv6 too: asking for icmp asks for both.
            let set = ProtocolSet::default().with(number);
            if number == nsg_model::rule::ip_proto::ICMP {
                set.with(nsg_model::rule::ip_proto::ICMPV6)
            } else {
                set
            }
        }
    };
    let remote_ports = parse_ports(&args.remote_port)?;
    let local_ports = parse_ports(&args.local_port)?;
    let nics = compile_all(&loaded.model, &loaded.catalog, loaded.settings)?;
    let asked: Vec<_> = if args.nic == "*" {
        nics.iter().collect()
    } else {
        let id = &query::find_nic(&loaded.model, &args.nic)?.id;
        nics.iter().filter(|p| &p.policy().nic == id).collect()
    };
    let mut spaces = Vec::new();
    for policy in asked {
        let virtual_network = policy.sets().get(policy.policy().virtual_network);
        let remote = address_set(&args.remote, &loaded.catalog, virtual_network)?;
        let space = FlowBox {
            protocols,
            local: None,
            local_ports: local_ports.clone(),
            remote,
            remote_ports: remote_ports.clone(),
        };
        spaces.push((policy, space));
    }
    let answers = counterexamples(&spaces, direction, expect);
    let mut results: Vec<Value> = Vec::new();
    let mut first_counterexample: Option<Value> = None;
    for ((policy, _), answer) in spaces.iter().zip(answers) {
        let nic = &policy.policy().nic;
        let found = answer.map(|outcome| {
            let mut value = json!(Example::new(nic, &outcome.example));
            value["access"] = json!(outcome.decision.access.as_str());
            value["ruleName"] = json!(outcome.decision.rule_name());
            if !args.json {
                println!(
                    "{}: does not hold: {} by {}\n    e.g. opennsg verify ENV {}",
                    nic.name(),
                    outcome.decision.access.as_str(),
                    outcome
                        .decision
                        .rule_name()
                        .unwrap_or_else(|| "no NSG".into()),
                    Example::new(nic, &outcome.example).verify_options()
                );
            }
            value
        });
        if found.is_none() && !args.json {
            println!("{}: holds", nic.name());
        }
        if first_counterexample.is_none() {
            first_counterexample.clone_from(&found);
        }
        let mut result = json!({"nic": nic.to_string(), "holds": found.is_none()});
        if let Some(c) = found {
            result["counterexample"] = c;
        }
        results.push(result);
    }
    let holds = first_counterexample.is_none();
    if args.json {
        let mut out = json!({ "holds": holds });
        if let Some(c) = first_counterexample {
            out["counterexample"] = c;
        }
        if args.nic == "*" {
            out["nics"] = json!(results);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if holds { 0 } else { EXIT_DENY })
}

/// `*`, `N`, `A-B`, comma-separated.
fn parse_ports(text: &str) -> Result<Vec<PortRange>> {
    if text.trim() == "*" {
        return Ok(vec![PortRange::ALL]);
    }
    text.split(',')
        .map(|item| {
            PortRange::parse(item.trim())
                .ok_or_else(|| anyhow!("'{item}' is not a port or port range (0-65535, A-B)"))
        })
        .collect()
}
