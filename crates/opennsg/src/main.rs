//! `opennsg`: Azure network security groups, offline.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nsg_model::rule::Access;
use nsg_policy::effective::effective_network_security_groups;
use nsg_policy::evaluate::{Explanation, RuleMatch};
use nsg_policy::{explain, Decider, Resolver, Settings, SubscriptionType};
use opennsg::inputs::{self, InvalidEnvironment};
use opennsg::query;
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
    /// Replay a packet capture through the NSGs: a summary of what each rule allowed and denied,
    /// and Azure's NSG flow logs (version 2). Exit 0, or 2 for bad input.
    Replay {
        #[command(flatten)]
        env: EnvArgs,
        /// A pcap or pcapng capture (Ethernet, Linux cooked or raw IP).
        #[arg(long, value_name = "FILE")]
        pcap: PathBuf,
        /// Only these NICs (name or id; repeatable). Default: every NIC of the environment.
        #[arg(long)]
        nic: Vec<String>,
        /// Write the flow logs here: {"records": [...]} as in Azure's PT1H.json blobs.
        #[arg(long, value_name = "OUT.json")]
        flow_logs: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the ARM-compatible Microsoft.Network API (network security groups and application
    /// security groups so far) on the embedded store in DATA.
    Serve(ServeArgs),
    /// Enforce NSGs on local interfaces with nftables: table `inet opennsg` (and `bridge opennsg`
    /// for bridge ports), replaced or changed atomically. Needs root (CAP_NET_ADMIN) and nft; conntrack for flushConnection.
    Enforce(EnforceArgs),
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
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Args)]
struct EnvArgs {
    /// ARM JSON files (an array of resources, {"value": [...]}, or one resource); - reads stdin.
    #[arg(required = true, value_name = "ENV")]
    files: Vec<PathBuf>,
    /// Microsoft's ServiceTags_*.json file (repeatable; a later file wins for a tag in both).
    #[arg(long = "service-tags", value_name = "FILE")]
    service_tags: Vec<PathBuf>,
    /// Subscription type, for the outbound TCP 25 block.
    #[arg(long, default_value = "EnterpriseAgreement", value_name = "TYPE")]
    subscription_type: SubscriptionType,
}

/// Exit codes: 0 ok / allow, 1 deny, 2 bad input or invalid environment.
const EXIT_DENY: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
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

struct Loaded {
    model: nsg_model::Model,
    catalog: nsg_tags::Catalog,
    settings: Settings,
}

fn load(args: &EnvArgs) -> Result<Loaded> {
    let catalog = inputs::load_service_tags(&args.service_tags)?;
    let model = inputs::load_model(&args.files, &catalog)?;
    Ok(Loaded {
        model,
        catalog,
        settings: Settings {
            subscription_type: args.subscription_type,
        },
    })
}

fn run(cli: Cli) -> Result<u8> {
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
        Command::Replay {
            env,
            pcap,
            nic,
            flow_logs,
            json,
        } => replay(&load(&env)?, &pcap, &nic, flow_logs.as_deref(), json),
        Command::Serve(args) => serve(args),
        Command::Enforce(args) => enforce(args),
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
            seed,
        } => {
            opennsg::bench::run(&opennsg::bench::Options {
                workload,
                service_tags,
                classbench,
                seed,
            })?;
            Ok(0)
        }
    }
}

#[derive(Args)]
struct EnforceArgs {
    /// ARM JSON files; or follow a server with --watch.
    #[arg(value_name = "ENV", required_unless_present_any = ["watch", "remove"], conflicts_with = "watch")]
    files: Vec<PathBuf>,
    /// Bind a NIC (name or id, or a one-NIC VM) to a local interface (repeatable).
    #[arg(long = "bind", value_name = "NIC=IFNAME", value_parser = opennsg::enforce::parse_binding)]
    bind: Vec<(String, String)>,
    /// Also bind each NIC whose macAddress is a local interface's MAC (or a libvirt tap's,
    /// whose first octet is fe).
    #[arg(long)]
    bind_by_mac: bool,
    /// A --bind interface may not exist yet (a VM not started): warn, and filter it as soon as
    /// it appears. Without this, a missing interface is an error.
    #[arg(long)]
    allow_absent: bool,
    /// Microsoft's ServiceTags_*.json files (repeatable).
    #[arg(long = "service-tags", value_name = "FILE")]
    service_tags: Vec<PathBuf>,
    /// Subscription type, for the outbound TCP 25 block.
    #[arg(long, default_value = "EnterpriseAgreement", value_name = "TYPE")]
    subscription_type: SubscriptionType,
    /// Print the nft JSON transaction instead of applying it.
    #[arg(long, conflicts_with_all = ["check", "watch"])]
    dry_run: bool,
    /// Report how the kernel's table differs from the policy; change nothing. Exit 1 on drift.
    #[arg(long, conflicts_with = "watch")]
    check: bool,
    /// Remove OpenNSG's table.
    #[arg(long, conflicts_with_all = ["watch", "dry_run", "check"])]
    remove: bool,
    /// Follow an `opennsg serve` instance (http:// or https://HOST:PORT): apply on change, repair
    /// drift.
    #[arg(long, value_name = "URL")]
    watch: Option<String>,
    /// PEM certificate(s) to trust for an https:// --watch URL (e.g. serve's DATA/cert.pem).
    #[arg(long, value_name = "FILE", requires = "watch")]
    ca_cert: Option<PathBuf>,
    /// The server's bearer token.
    #[arg(
        long,
        env = "OPENNSG_TOKEN",
        hide_env_values = true,
        requires = "watch"
    )]
    token: Option<String>,
    /// Seconds between polls of the server.
    #[arg(long, default_value_t = 2.0, requires = "watch")]
    interval: f64,
    /// Seconds between comparisons of the kernel's table with the policy (drift repair).
    #[arg(long, default_value_t = 30.0, requires = "watch")]
    reconcile_interval: f64,
}

fn enforce(args: EnforceArgs) -> Result<u8> {
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
    let catalog = inputs::load_service_tags(&args.service_tags)?;
    let settings = Settings {
        subscription_type: args.subscription_type,
    };
    let binding = enforce::Binding {
        explicit: args.bind,
        by_mac: args.bind_by_mac,
        allow_absent: args.allow_absent,
    };
    let mut enforcer = nsg_nft::Enforcer::new(kernel);
    if let Some(url) = args.watch {
        enforce::check_watch_url(&url)?;
        let token = args.token.ok_or_else(|| {
            anyhow::anyhow!("--watch needs the server's token: --token or $OPENNSG_TOKEN")
        })?;
        for (flag, seconds) in [
            ("--interval", args.interval),
            ("--reconcile-interval", args.reconcile_interval),
        ] {
            if !(seconds > 0.0 && seconds <= 86400.0) {
                anyhow::bail!("{flag} must be more than 0 and at most 86400 seconds");
            }
        }
        let watch = enforce::Watch {
            url,
            ca_cert: args.ca_cert,
            token,
            interval: std::time::Duration::from_secs_f64(args.interval),
            reconcile_interval: std::time::Duration::from_secs_f64(args.reconcile_interval),
        };
        let agent = watch.agent()?;
        match enforce::follow(&watch, &catalog, settings, &binding, &mut enforcer, &agent)? {}
    }
    let model = inputs::load_model(&args.files, &catalog)?;
    let interfaces = enforce::local_interfaces()?;
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
    enforce::apply_once(&mut enforcer, rendered)?;
    Ok(0)
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on. Beyond loopback it needs TLS or --insecure-http.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long, default_value = "opennsg-data")]
    data: PathBuf,
    /// Microsoft's ServiceTags_*.json files (repeatable), for rules naming service tags.
    #[arg(long = "service-tags", value_name = "FILE")]
    service_tags: Vec<PathBuf>,
    /// Bearer token clients must send; default: $OPENNSG_TOKEN, else DATA/token (created
    /// with a random token, mode 0600).
    #[arg(long, env = "OPENNSG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    insecure_http: bool,
    /// Serve HTTPS with this certificate (PEM; with --tls-key).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate, written to DATA/cert.pem for clients to trust.
    #[arg(long)]
    tls_self_signed: bool,
    /// A host name (or address) the self-signed certificate is for, besides localhost, the
    /// loopback addresses and the listen address (repeatable): the name clients use.
    #[arg(long = "tls-name", value_name = "NAME", requires = "tls_self_signed")]
    tls_names: Vec<String>,
    /// Where clients reach this server (e.g. https://nsg.example:8443), for the nextLinks of
    /// list pages; default: the listen address.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Answer `GET /msi/token` for `az login --identity`, to callers whose
    /// X-IDENTITY-HEADER is the bearer token.
    #[arg(long)]
    identity_endpoint: bool,
    /// Subscription ids `GET /subscriptions` lists (repeatable).
    #[arg(long = "subscription", value_name = "ID")]
    subscriptions: Vec<String>,
}

/// The base of the URLs the server hands out: `--public-url`, else the listen address (with
/// `localhost` for an unspecified one).
fn public_url(given: Option<&str>, listen: std::net::SocketAddr, tls: bool) -> Result<String> {
    let scheme = if tls { "https" } else { "http" };
    let Some(given) = given else {
        let host = if listen.ip().is_unspecified() {
            format!("localhost:{}", listen.port())
        } else {
            listen.to_string()
        };
        return Ok(format!("{scheme}://{host}"));
    };
    let url = given.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(authority) if !authority.is_empty() && !authority.contains(['/', '?', '#', ' ']) => {
            Ok(url.to_string())
        }
        _ => bail!("--public-url {given}: expected http(s)://HOST[:PORT], without a path"),
    }
}

fn serve(args: ServeArgs) -> Result<u8> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let listen = args.listen;
    let serves_tls = args.tls_cert.is_some() || args.tls_self_signed;
    if !listen.ip().is_loopback() && !serves_tls && !args.insecure_http {
        bail!("{listen} is not a loopback address: serve it over TLS (--tls-cert/--tls-key or --tls-self-signed) or pass --insecure-http");
    }
    let public_url = public_url(args.public_url.as_deref(), listen, serves_tls)?;
    let catalog = inputs::load_service_tags(&args.service_tags)?;
    let store = nsg_store::Store::open(&args.data)
        .with_context(|| format!("opening the store in {}", args.data.display()))?;
    for group in nsg_api::resource_groups::adopt(&store)
        .map_err(|e| anyhow::anyhow!("adopting resource groups: {}", e.message))?
    {
        eprintln!("opennsg: created resource group {group}, which held resources stored before groups were served");
    }
    let token_file = args.data.join("token");
    let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
    let (token, token_source) = match args.token {
        Some(token) if !token.trim().is_empty() => {
            (token, opennsg::clients::TokenSource::Environment)
        }
        _ => (
            stored_token(&args.data)?,
            opennsg::clients::TokenSource::File(&token_file),
        ),
    };
    let given_certificate = args.tls_cert.clone();
    let tls = match (args.tls_cert, args.tls_key, args.tls_self_signed) {
        (Some(cert), Some(key), _) => Some(nsg_api::Tls {
            cert_pem: std::fs::read(&cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?,
        }),
        (_, _, true) => {
            let mut names = args.tls_names.clone();
            if !listen.ip().is_unspecified() {
                names.push(listen.ip().to_string());
            }
            let tls = nsg_api::Tls::self_signed(&names)
                .map_err(|e| anyhow::anyhow!("making a self-signed certificate: {e}"))?;
            let path = args.data.join("cert.pem");
            std::fs::write(&path, &tls.cert_pem)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "opennsg: self-signed certificate written to {}",
                path.display()
            );
            Some(tls)
        }
        _ => None,
    };
    let certificate = args.tls_self_signed.then(|| args.data.join("cert.pem"));
    let certificate = certificate
        .map(|path| std::path::absolute(&path).unwrap_or(path))
        .or(given_certificate);
    if let Some(setup) = opennsg::clients::azure_cli_setup(
        &public_url,
        certificate.as_deref(),
        args.identity_endpoint,
        token_source,
    ) {
        eprintln!("{setup}");
    }
    let mut state = nsg_api::AppState::new(store, std::sync::Arc::new(catalog), vec![token]);
    state.identity_endpoint = args.identity_endpoint;
    state.public_url = public_url;
    if !args.subscriptions.is_empty() {
        state.subscriptions = args.subscriptions;
    }
    let state = std::sync::Arc::new(state);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime
        .block_on(nsg_api::serve(nsg_api::ServeOptions { listen, state, tls }))
        .with_context(|| format!("serving on {listen}"))?;
    Ok(0)
}

/// The token in DATA/token, created with 32 random bytes (hex) and mode 0600 if missing.
fn stored_token(data: &std::path::Path) -> Result<String> {
    let path = data.join("token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            eprintln!("opennsg: bearer token from {}", path.display());
            return Ok(token);
        }
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    eprintln!(
        "opennsg: new bearer token written to {}: {token}",
        path.display()
    );
    Ok(token)
}

fn check(args: &EnvArgs, json: bool) -> Result<u8> {
    let catalog = inputs::load_service_tags(&args.service_tags)?;
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

fn replay(
    loaded: &Loaded,
    pcap: &std::path::Path,
    nics: &[String],
    flow_logs: Option<&std::path::Path>,
    json: bool,
) -> Result<u8> {
    let only = nics
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
    let s = &result.summary;
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(0);
    }
    println!(
        "{} packets: {} allowed, {} denied, {} refused (flow table full), {} not to or from a NIC of the environment; {} records skipped (not IP)",
        s.packets, s.packets_allowed, s.packets_denied, s.packets_refused, s.packets_unmapped, s.records_skipped
    );
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
