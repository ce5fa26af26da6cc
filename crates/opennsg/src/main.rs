//! `opennsg`: Azure network security groups, offline.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nsg_model::rule::Access;
use nsg_policy::effective::effective_network_security_groups;
use nsg_policy::evaluate::{Explanation, RuleMatch};
use nsg_policy::{explain, Decider, Resolver, Settings, SubscriptionType};
use opennsg::inputs::{self, InvalidEnvironment};
use opennsg::query;
use opennsg::tag_cache::TagFiles;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "opennsg",
    version,
    about = "Azure network security groups: check, verify and explain them offline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate an environment; list every error with Azure's code, the resource and the field.
    /// Exit 0 if valid, 2 if not.
    Check {
        #[command(flatten)]
        env: EnvArgs,
        /// Print the errors as JSON.
        #[arg(long)]
        json: bool,
    },
    /// IP flow verify: is this flow allowed at this NIC, and by which rule?
    /// Exit 0 for Allow, 1 for Deny, 2 for bad input.
    Verify {
        #[command(flatten)]
        env: EnvArgs,
        /// NIC name or id, or the name or id of a VM with one NIC.
        #[arg(long)]
        nic: String,
        /// inbound or outbound.
        #[arg(long)]
        direction: String,
        /// tcp, udp, icmp, esp, ah, or an IP protocol number.
        #[arg(long)]
        protocol: String,
        /// The NIC's address, with the port for TCP/UDP: IP:PORT or [IPv6]:PORT.
        #[arg(long)]
        local: String,
        /// The other end: IP:PORT, [IPv6]:PORT, or IP for portless protocols.
        #[arg(long)]
        remote: String,
        /// Print Azure's ipFlowVerify result: {"access": ..., "ruleName": ...}.
        #[arg(long)]
        json: bool,
        /// Show every stage and every rule considered.
        #[arg(long)]
        explain: bool,
    },
    /// The effective security rules of a NIC, as Azure's effectiveNetworkSecurityGroups.
    Effective {
        #[command(flatten)]
        env: EnvArgs,
        /// NIC name or id, or the name or id of a VM with one NIC.
        #[arg(long)]
        nic: String,
        /// Print Azure's JSON (the default prints a table).
        #[arg(long)]
        json: bool,
    },
    /// Lint the NSGs over every flow of every NIC they reach: shadowed, redundant and
    /// never-applying rules, rules open to the Internet, tag changes, unused NSGs and ASGs.
    /// Exit 0 without findings, 1 with findings, 2 for bad input.
    Lint(commands::lint::LintArgs),
    /// Where two environments decide differently: regions of flows per NIC and direction, each
    /// with an example. Exit 0 same behaviour, 1 different, 2 bad input.
    Diff(commands::diff::DiffArgs),
    /// Prove that every flow of a set gets the expected verdict, or give a counterexample.
    /// Exit 0 holds, 1 does not, 2 bad input.
    Query(commands::query::QueryArgs),
    /// Who can reach whom: NICs (grouped by subnet and ASG) and service tags as rows and
    /// columns, each cell allow, deny or partial per port, as text, JSON, HTML or SVG.
    Matrix(commands::matrix::MatrixArgs),
    /// Replay a packet capture through the NSGs: a summary of what each rule allowed and denied,
    /// and Azure's flow logs. Exit 0, or 2 for bad input.
    Replay(commands::replay::ReplayArgs),
    /// Serve the ARM-compatible Microsoft.Network API (network security groups and application
    /// security groups so far) on the embedded store in DATA.
    Serve(commands::serve::ServeArgs),
    /// Enforce NSGs on local interfaces with nftables: table `inet opennsg` (and `bridge opennsg`
    /// for bridge ports), replaced or changed atomically. Needs root (CAP_NET_ADMIN) and nft; conntrack for flushConnection.
    Enforce(commands::enforce::EnforceArgs),
    /// Microsoft's service tag files: download the week's (`update`) into the cache the other
    /// commands read by default; `list`, `show`, `diff` and `export` them.
    Tags {
        #[command(subcommand)]
        command: opennsg::tags::TagsCommand,
    },
    /// Print a shell completion script (e.g. `opennsg completions bash >
    /// /etc/bash_completion.d/opennsg`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, in roff (e.g. `opennsg man > /usr/local/share/man/man1/opennsg.1`).
    Man,
    /// Quick benchmarks; one line per figure, each next to a naive baseline.
    Bench {
        /// Which figures.
        #[arg(long, value_enum, default_value = "all")]
        workload: opennsg::bench::Workload,
        /// Service tag files whose tags the generated rules use.
        #[arg(long = "service-tags", value_name = "FILE")]
        service_tags: Vec<PathBuf>,
        /// ClassBench filter files to measure instead of the generated sets (repeatable).
        #[arg(long, value_name = "FILE")]
        classbench: Vec<PathBuf>,
        /// A ClassBench trace (one header per line, as `trace_generator` writes it) to look up
        /// in every `--classbench` set instead of generated headers; prints lookups/s and the
        /// checksum of the matched rules, to compare implementations on the same headers.
        #[arg(long, value_name = "FILE", requires = "classbench")]
        trace: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One short window per figure (flow-logs): a smoke test, the figures rough.
        #[arg(long)]
        quick: bool,
    },
}

#[derive(Args)]
pub(crate) struct EnvArgs {
    /// ARM JSON files (an array of resources, {"value": [...]}, or one resource); - reads stdin.
    #[arg(required = true, value_name = "ENV")]
    pub(crate) files: Vec<PathBuf>,
    /// Microsoft's ServiceTags_*.json file (repeatable; a later file wins for a tag in both).
    /// Default: the current file of `opennsg tags update`'s cache, if any.
    #[arg(long = "service-tags", value_name = "FILE")]
    service_tags: Vec<PathBuf>,
    /// Subscription type, for the outbound TCP 25 block.
    #[arg(long, default_value = "EnterpriseAgreement", value_name = "TYPE")]
    subscription_type: SubscriptionType,
}

mod commands;

use commands::{EXIT_BAD_INPUT, EXIT_DENY};

fn main() -> ExitCode {
    let command = <Cli as clap::CommandFactory>::command();
    let args = match opennsg::config::with_config_file(std::env::args_os().collect(), &command) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("opennsg: {error:#}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let cli = Cli::parse_from(args);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if let Some(invalid) = error.downcast_ref::<InvalidEnvironment>() {
                eprint!("opennsg: {invalid}");
            } else {
                eprintln!("opennsg: {error:#}");
            }
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

pub(crate) struct Loaded {
    model: nsg_model::Model,
    catalog: nsg_tags::Catalog,
    settings: Settings,
}

impl EnvArgs {
    /// `--service-tags`, else the user's cache.
    fn service_tags(&self) -> Result<nsg_tags::Catalog> {
        TagFiles::or_user_cache(self.service_tags.clone()).load()
    }
}

pub(crate) fn load(args: &EnvArgs) -> Result<Loaded> {
    let catalog = args.service_tags()?;
    let model = inputs::load_model(&args.files, &catalog)?;
    Ok(Loaded {
        model,
        catalog,
        settings: Settings {
            subscription_type: args.subscription_type,
        },
    })
}

/// Lets a report command that writes into a closed pipe (`opennsg diff … | head`) end quietly,
/// as Unix tools do, instead of panicking in `println!`. Not for the daemons, whose sockets must
/// never kill them, nor for `tags`, which fetches over the network.
fn die_quietly_on_closed_pipe() {
    // SAFETY: restoring a signal's default disposition, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Result<u8> {
    let daemon = matches!(
        cli.command,
        Command::Serve(_) | Command::Enforce(_) | Command::Tags { .. }
    );
    if !daemon {
        die_quietly_on_closed_pipe();
    }
    match cli.command {
        Command::Check { env, json } => check(&env, json),
        Command::Verify {
            env,
            nic,
            direction,
            protocol,
            local,
            remote,
            json,
            explain,
        } => {
            let loaded = load(&env)?;
            let flow = query::flow(
                query::parse_direction(&direction)?,
                query::parse_protocol(&protocol)?,
                query::parse_endpoint(&local)?,
                query::parse_endpoint(&remote)?,
            )?;
            verify(&loaded, &nic, &flow, json, explain)
        }
        Command::Effective { env, nic, json } => effective(&load(&env)?, &nic, json),
        Command::Lint(args) => commands::lint::lint(args),
        Command::Diff(args) => commands::diff::diff(args),
        Command::Query(args) => commands::query::query(args),
        Command::Matrix(args) => commands::matrix::matrix(args),
        Command::Replay(args) => commands::replay::replay(args),
        Command::Serve(args) => commands::serve::serve(args),
        Command::Enforce(args) => commands::enforce::enforce(args),
        Command::Tags { command } => opennsg::tags::run(command),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "opennsg", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut std::io::stdout())?;
            Ok(0)
        }
        Command::Bench {
            workload,
            service_tags,
            classbench,
            trace,
            seed,
            quick,
        } => {
            opennsg::bench::run(&opennsg::bench::Options {
                workload,
                service_tags,
                classbench,
                trace,
                seed,
                quick,
            })?;
            Ok(0)
        }
    }
}

fn check(args: &EnvArgs, json: bool) -> Result<u8> {
    let catalog = args.service_tags()?;
    let env = inputs::load_environment(&args.files)?;
    let errors = match inputs::validate(&env, &catalog) {
        Ok(_) => Vec::new(),
        Err(InvalidEnvironment(errors)) => errors,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "errors": errors }))?
        );
    } else if errors.is_empty() {
        let count = env.network_security_groups.len();
        println!(
            "valid: {count} network security groups, {} network interfaces",
            env.network_interfaces.len()
        );
    } else {
        for e in &errors {
            println!("{e}");
        }
        println!("{} errors", errors.len());
    }
    Ok(if errors.is_empty() { 0 } else { EXIT_BAD_INPUT })
}

fn verify(
    loaded: &Loaded,
    nic: &str,
    flow: &nsg_policy::Flow,
    json: bool,
    explain_flag: bool,
) -> Result<u8> {
    let nic = query::find_nic(&loaded.model, nic)?;
    let mut resolver = Resolver::new(&loaded.model, &loaded.catalog, loaded.settings);
    let policy = resolver.resolve(nic)?;
    if !policy.owns(flow.local.ip) {
        let owned: Vec<String> = policy.addresses.iter().map(|a| a.to_string()).collect();
        bail!(
            "the local address {} is not an address of network interface {} (it has {})",
            flow.local.ip,
            nic.name(),
            owned.join(", ")
        );
    }
    let explanation = explain(&policy, &resolver.sets, &loaded.settings, flow);
    let decision = &explanation.decision;
    if json {
        let mut out = json!({ "access": decision.access.as_str() });
        if let Some(name) = decision.rule_name() {
            out["ruleName"] = json!(name);
        }
        if explain_flag {
            out["evaluatedNetworkSecurityGroups"] = evaluated_groups_json(&explanation);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        if explain_flag {
            print_explanation(nic.name(), flow, &explanation);
        }
        println!("{}", verdict_line(&explanation));
    }
    Ok(match decision.access {
        Access::Allow => 0,
        Access::Deny => EXIT_DENY,
    })
}

fn verdict_line(explanation: &Explanation) -> String {
    let d = &explanation.decision;
    match &d.decider {
        Decider::NoNsg => format!("{}: no network security group applies", d.access.as_str()),
        Decider::Rule(v) => format!(
            "{}: {} of network security group {} ({} NSG)",
            d.access.as_str(),
            v.reference(),
            v.nsg.name(),
            v.level.as_str()
        ),
        Decider::Platform(p) => format!(
            "{}: {} (Azure platform, outside any NSG)",
            d.access.as_str(),
            p.reference()
        ),
    }
}

fn fields_text(m: &RuleMatch) -> String {
    let mark = |b: bool| if b { "yes" } else { "no" };
    format!(
        "protocol {} source {} sport {} destination {} dport {}",
        mark(m.protocol),
        mark(m.source),
        mark(m.source_port),
        mark(m.destination),
        mark(m.destination_port)
    )
}

fn print_explanation(nic: &str, flow: &nsg_policy::Flow, explanation: &Explanation) {
    let (source, destination) = flow.source_destination();
    println!(
        "{} {} {} -> {} at network interface {nic}",
        flow.direction.as_str(),
        nsg_model::rule::protocol_name(flow.protocol),
        source,
        destination
    );
    if let Some(service) = explanation.platform {
        println!(
            "platform traffic ({}): only rules naming that tag are considered",
            service.tag().canonical_name()
        );
    }
    if explanation.stages.is_empty() {
        println!("no network security group at the subnet or the network interface");
    }
    for (i, stage) in explanation.stages.iter().enumerate() {
        println!(
            "stage {}: {} NSG {}",
            i + 1,
            stage.level.as_str(),
            stage.nsg.name()
        );
        for rule in &stage.rules {
            let outcome = if !rule.applies {
                "skipped: the NIC is not in the rule's application security groups".to_string()
            } else if rule.fields.all() {
                format!("MATCH -> {}", rule.access.as_str())
            } else {
                fields_text(&rule.fields)
            };
            println!(
                "  {:>5} {:<5} {:<45} {outcome}",
                rule.priority,
                rule.access.as_str(),
                rule.reference
            );
        }
    }
}

/// The explanation in the shape of Network Watcher's `evaluatedNetworkSecurityGroups`.
fn evaluated_groups_json(explanation: &Explanation) -> serde_json::Value {
    let groups: Vec<_> = explanation
        .stages
        .iter()
        .map(|stage| {
            let matched = stage.rules.iter().find(|r| r.applies && r.fields.all());
            json!({
                "networkSecurityGroupId": stage.nsg.to_string(),
                "appliedTo": stage.level.as_str(),
                "matchedRule": matched.map(|r| json!({"ruleName": r.reference, "action": r.access.as_str()})),
                "rulesEvaluationResult": stage.rules.iter().map(|r| json!({
                    "name": r.reference,
                    "applies": r.applies,
                    "protocolMatched": r.fields.protocol,
                    "sourceMatched": r.fields.source,
                    "sourcePortMatched": r.fields.source_port,
                    "destinationMatched": r.fields.destination,
                    "destinationPortMatched": r.fields.destination_port,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!(groups)
}

fn effective(loaded: &Loaded, nic: &str, json: bool) -> Result<u8> {
    let nic = query::find_nic(&loaded.model, nic)?;
    let mut resolver = Resolver::new(&loaded.model, &loaded.catalog, loaded.settings);
    let list = effective_network_security_groups(&loaded.model, &mut resolver, nic)
        .with_context(|| format!("effective rules of {}", nic.name()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    if list.value.is_empty() {
        println!(
            "no network security group is associated with {} or its subnet: all traffic is allowed",
            nic.name()
        );
    }
    for group in &list.value {
        let level = if group.association.subnet.is_some() {
            "subnet"
        } else {
            "network interface"
        };
        println!(
            "{} (associated with the {level})",
            group.network_security_group.id
        );
        for r in &group.effective_security_rules {
            let shown = |single: &Option<String>, list: &Vec<String>| {
                single.clone().unwrap_or_else(|| list.join(","))
            };
            println!(
                "  {:<9} {:>5} {:<5} {:<4} {} : {} -> {} : {}  {}",
                r.direction,
                r.priority,
                r.access,
                r.protocol,
                shown(&r.source_address_prefix, &r.source_address_prefixes),
                shown(&r.source_port_range, &r.source_port_ranges),
                shown(
                    &r.destination_address_prefix,
                    &r.destination_address_prefixes
                ),
                shown(&r.destination_port_range, &r.destination_port_ranges),
                r.name
            );
        }
    }
    Ok(0)
}
