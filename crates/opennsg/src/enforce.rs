//! `opennsg enforce`: binds NICs to local interfaces and keeps the kernel's nftables table equal
//! to their policies, from environment files or by following an `opennsg serve` instance.

use crate::flow_logger::{vnet_flow_logs, FlowLogger, LoggedPolicy, VnetFlowLog};
use crate::hit_history::HitHistory;
use crate::live_flows::LoggedNic;
use crate::query::find_nic;
use crate::tag_cache::{describe_reload, TagReloader};
use anyhow::{anyhow, bail, Context, Result};
use nsg_model::model::Model;
use nsg_model::Environment;
use nsg_nft::render::flow_logging::{FlowLogging, RuleIds};
use nsg_nft::{BoundNic, Enforcer, Rendered};
use nsg_policy::resolve::Resolver;
use nsg_policy::settings::Settings;
use nsg_tags::Catalog;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How NICs find their interfaces.
#[derive(Clone, Debug, Default)]
pub struct Binding {
    /// `NIC=IFNAME`: the NIC by name or id (or a one-NIC VM), the interface by name.
    pub explicit: Vec<(String, String)>,
    /// Also bind every NIC whose `macAddress` is the MAC of a local interface (see
    /// [`mac_matches`]).
    pub by_mac: bool,
    /// An explicit binding may name an interface that does not exist yet (a VM not started):
    /// warn instead of failing. Rules match interfaces by name, so they filter it the moment
    /// it appears.
    pub allow_absent: bool,
}

/// Parses `NIC=IFNAME`.
pub fn parse_binding(text: &str) -> Result<(String, String), String> {
    let (nic, interface) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text}: expected NIC=IFNAME"))?;
    if nic.is_empty() || interface.is_empty() || interface.len() > 15 {
        return Err(format!(
            "{text}: expected NIC=IFNAME with an interface name of 1–15 characters"
        ));
    }
    Ok((nic.to_string(), interface.to_string()))
}

/// An interface of this namespace, as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalInterface {
    pub name: String,
    pub mac: String,
    /// The bridge it is a port of, if any (libvirt's `virbr0`, Docker's `docker0`, ...).
    pub bridge: Option<String>,
}

/// The interfaces of this namespace, from sysfs, by name.
pub fn local_interfaces() -> Result<Vec<LocalInterface>> {
    let mut interfaces = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net").context("listing /sys/class/net")? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mac = std::fs::read_to_string(path.join("address")).unwrap_or_default();
        // A bridge port has `brport`; its `master` links to the bridge.
        let bridge = path
            .join("brport")
            .exists()
            .then(|| std::fs::read_link(path.join("master")).ok())
            .flatten()
            .and_then(|master| Some(master.file_name()?.to_string_lossy().into_owned()));
        interfaces.push(LocalInterface {
            name,
            mac: mac.trim().to_string(),
            bridge,
        });
    }
    interfaces.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(interfaces)
}

/// Whether interface MAC `local` belongs to a NIC with Azure MAC `azure` (`00-0D-3A-…`): the same
/// address, or the same with the first octet `fe`, as libvirt gives a guest's tap device.
pub fn mac_matches(azure: &str, local: &str) -> bool {
    let octets = |text: &str| -> Option<Vec<u8>> {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 {
            return None;
        }
        parts
            .iter()
            .map(|p| u8::from_str_radix(p, 16).ok())
            .collect()
    };
    let (Some(nic), Some(interface)) = (octets(azure), octets(local)) else {
        return false;
    };
    nic == interface || (interface[0] == 0xfe && nic[1..] == interface[1..])
}

/// Resolves the bound NICs of `model` and renders their table.
pub fn render_model(
    model: &Model,
    catalog: &Catalog,
    settings: Settings,
    binding: &Binding,
    interfaces: &[LocalInterface],
) -> Result<Rendered> {
    Ok(render_model_logged(model, catalog, settings, binding, interfaces, None)?.rendered)
}

/// A rendering and, for flow logs, the NICs it binds.
pub struct RenderedModel {
    pub rendered: Rendered,
    pub nics: Vec<LoggedNic>,
}

/// As [`render_model`], with flow logging when `logging` is given (rules numbered in its
/// [`RuleIds`], kept by the caller from one rendering to the next).
pub fn render_model_logged(
    model: &Model,
    catalog: &Catalog,
    settings: Settings,
    binding: &Binding,
    interfaces: &[LocalInterface],
    logging: Option<(FlowLogging, &mut RuleIds)>,
) -> Result<RenderedModel> {
    let mut bound: Vec<(usize, String)> = Vec::new();
    for (query, interface) in &binding.explicit {
        let nic = find_nic(model, query).with_context(|| format!("--bind {query}={interface}"))?;
        if !interfaces.iter().any(|local| &local.name == interface) {
            // A typo must not move a NIC's filtering off the interface that carries it.
            if !binding.allow_absent {
                let names: Vec<&str> = interfaces.iter().map(|local| local.name.as_str()).collect();
                bail!(
                    "--bind {query}={interface}: there is no interface {interface} (there are: {}); \
                     if it appears later (a VM not started yet), add --allow-absent",
                    names.join(", ")
                );
            }
            eprintln!(
                "opennsg: warning: --bind {query}={interface}: there is no interface {interface} \
                 yet; its traffic is filtered as soon as it appears (if it appears as a bridge \
                 port, only --watch notices and filters it as one)"
            );
        }
        let index = model
            .network_interfaces
            .iter()
            .position(|n| n.id == nic.id)
            .expect("find_nic returns a NIC of the model");
        bound.push((index, interface.clone()));
    }
    if binding.by_mac {
        for (index, nic) in model.network_interfaces.iter().enumerate() {
            let Some(mac) = &nic.mac_address else {
                continue;
            };
            if bound.iter().any(|(i, _)| *i == index) {
                continue;
            }
            if let Some(local) = interfaces.iter().find(|local| mac_matches(mac, &local.mac)) {
                bound.push((index, local.name.clone()));
            }
        }
    }
    for (i, (_, interface)) in bound.iter().enumerate() {
        if bound[..i].iter().any(|(_, other)| other == interface) {
            bail!("interface {interface} is bound to two network interfaces");
        }
    }
    if bound.is_empty() {
        eprintln!("opennsg: warning: no network interface is bound, so nothing is filtered");
    }
    let bridge_of = |interface: &str| {
        interfaces
            .iter()
            .find(|local| local.name == interface)
            .and_then(|local| local.bridge.as_deref())
    };
    for (index, interface) in &bound {
        let nic = &model.network_interfaces[*index];
        match bridge_of(interface) {
            Some(bridge) => {
                eprintln!(
                    "opennsg: {} on {interface}, a port of bridge {bridge}",
                    nic.name()
                );
                if nic.enable_ip_forwarding {
                    eprintln!(
                        "opennsg: warning: {} has IP forwarding, but on a bridge its NSGs filter \
                         only traffic of its own addresses: what it forwards for others meets \
                         no rule of its NSGs",
                        nic.name()
                    );
                }
            }
            None => eprintln!("opennsg: {} on {interface}", nic.name()),
        }
    }
    if bound
        .iter()
        .any(|(_, interface)| bridge_of(interface).is_some())
    {
        check_bridge_netfilter()?;
    }
    let ipv6 = bound.iter().any(|(index, _)| {
        model.network_interfaces[*index]
            .ip_configurations
            .iter()
            .any(|c| c.address.addr().is_ipv6())
    });
    for warning in host_warnings(ipv6) {
        eprintln!("opennsg: warning: {warning}");
    }
    let mut resolver = Resolver::new(model, catalog, settings);
    let mut policies = Vec::with_capacity(bound.len());
    for (index, _) in &bound {
        let nic = &model.network_interfaces[*index];
        policies.push(
            resolver
                .resolve(nic)
                .with_context(|| format!("resolving network interface {}", nic.id))?,
        );
    }
    let nics: Vec<BoundNic<'_>> = policies
        .iter()
        .zip(&bound)
        .map(|(policy, (_, interface))| BoundNic {
            policy,
            interface,
            bridge: bridge_of(interface),
        })
        .collect();
    let logged_nics = bound
        .iter()
        .zip(&policies)
        .map(|((index, interface), policy)| {
            let nic = &model.network_interfaces[*index];
            let local_mac = interfaces
                .iter()
                .find(|local| &local.name == interface)
                .map(|local| local.mac.clone());
            LoggedNic::new(nic, policy.addresses.clone(), local_mac)
        })
        .collect();
    let rendered = nsg_nft::render_logged(&nics, &resolver.sets, resolver.settings(), logging);
    Ok(RenderedModel {
        rendered,
        nics: logged_nics,
    })
}

/// What this host lacks for its guests' traffic to flow as the policy says: the table filters
/// what the host forwards, so a host that does not forward carries nothing beyond itself.
fn host_warnings(ipv6: bool) -> Vec<String> {
    let mut sysctls = vec![("net.ipv4.ip_forward", "routed guests reach only this host")];
    if ipv6 {
        sysctls.push((
            "net.ipv6.conf.all.forwarding",
            "routed guests' IPv6 reaches only this host",
        ));
    }
    sysctls
        .into_iter()
        .filter(|(name, _)| sysctl(name).as_deref() == Some("0"))
        .map(|(name, effect)| format!("{name} is 0, so {effect} (sysctl -w {name}=1)"))
        .collect()
}

/// Bridged guests are filtered in `inet` only if br_netfilter passes bridged frames to it
/// (K9): without it, traffic between two guests of one bridge would meet no NSG.
fn check_bridge_netfilter() -> Result<()> {
    let missing: Vec<&str> = [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
    ]
    .into_iter()
    .filter(|name| sysctl(name).as_deref() != Some("1"))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let settings: Vec<String> = missing.iter().map(|name| format!("{name}=1")).collect();
    bail!(
        "bridge ports are bound, but {} {} not 1, so traffic between guests of one bridge would \
         meet no NSG: run `modprobe br_netfilter && sysctl -w {}`",
        missing.join(" and "),
        if missing.len() == 1 { "is" } else { "are" },
        settings.join(" ")
    )
}

/// A sysctl's value, `None` if it does not exist here.
fn sysctl(name: &str) -> Option<String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    Some(std::fs::read_to_string(path).ok()?.trim().to_string())
}

/// Following an `opennsg serve` instance.
pub struct Watch {
    /// Base URL, e.g. `http://127.0.0.1:8080` or `https://nsg.example:8443`.
    pub url: String,
    /// PEM certificates to trust for HTTPS instead of the usual roots (e.g. `serve`'s
    /// self-signed `DATA/cert.pem`).
    pub ca_cert: Option<std::path::PathBuf>,
    pub token: String,
    /// How often to poll the server.
    pub interval: Duration,
    /// How often to compare the kernel's table with the policy (listing a large table costs
    /// seconds of CPU, so this is rarer than polling).
    pub reconcile_interval: Duration,
}

/// The resource types a policy is made of, listed per subscription.
const WATCHED_TYPES: [&str; 5] = [
    "Microsoft.Network/networkSecurityGroups",
    "Microsoft.Network/applicationSecurityGroups",
    "Microsoft.Network/virtualNetworks",
    "Microsoft.Network/networkInterfaces",
    "Microsoft.Compute/virtualMachines",
];
const API_VERSION: &str = "2024-05-01";

impl Watch {
    /// The HTTP client: a 30 s limit per request, and `ca_cert`'s roots if given.
    pub fn agent(&self) -> Result<ureq::Agent> {
        let mut config =
            ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30)));
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let mut roots = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(cert) =
                    item.with_context(|| format!("{} is not PEM", path.display()))?
                {
                    roots.push(cert);
                }
            }
            if roots.is_empty() {
                bail!("{} holds no certificate", path.display());
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(roots)))
                    .build(),
            );
        }
        Ok(config.build().into())
    }

    fn get(&self, agent: &ureq::Agent, url: &str) -> Result<Value> {
        let mut response = match agent
            .get(url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
        {
            Ok(response) => response,
            Err(ureq::Error::StatusCode(status @ (401 | 403))) => {
                return Err(Refused {
                    url: url.to_string(),
                    status,
                }
                .into())
            }
            Err(error) => return Err(anyhow::Error::new(error).context(format!("GET {url}"))),
        };
        response
            .body_mut()
            .read_json::<Value>()
            .with_context(|| format!("GET {url}: the body is not JSON"))
    }

    /// Every resource of every subscription the server lists, as one environment document.
    pub fn fetch(&self, agent: &ureq::Agent) -> Result<Vec<Value>> {
        let mut resources = Vec::new();
        for kind in WATCHED_TYPES {
            resources.extend(self.fetch_kind(agent, kind)?);
        }
        Ok(resources)
    }

    /// The flow logs of every network watcher the server lists (for `--flow-logs`).
    pub fn fetch_flow_logs(&self, agent: &ureq::Agent) -> Result<Vec<Value>> {
        let base = self.url.trim_end_matches('/');
        let mut flow_logs = Vec::new();
        for watcher in self.fetch_kind(agent, "Microsoft.Network/networkWatchers")? {
            let id = watcher["id"]
                .as_str()
                .ok_or_else(|| anyhow!("a network watcher without id"))?;
            self.fetch_pages(
                agent,
                format!("{base}{id}/flowLogs?api-version={API_VERSION}"),
                &mut flow_logs,
            )?;
        }
        Ok(flow_logs)
    }

    /// Every resource of type `kind` in every subscription the server lists.
    fn fetch_kind(&self, agent: &ureq::Agent, kind: &str) -> Result<Vec<Value>> {
        let base = self.url.trim_end_matches('/');
        let subscriptions = self.get(
            agent,
            &format!("{base}/subscriptions?api-version={API_VERSION}"),
        )?;
        let mut resources = Vec::new();
        for subscription in list_items(&subscriptions)? {
            let id = subscription["subscriptionId"]
                .as_str()
                .ok_or_else(|| anyhow!("a subscription without subscriptionId"))?;
            self.fetch_pages(
                agent,
                format!("{base}/subscriptions/{id}/providers/{kind}?api-version={API_VERSION}"),
                &mut resources,
            )?;
        }
        Ok(resources)
    }

    /// The items of a list and of its next pages.
    fn fetch_pages(&self, agent: &ureq::Agent, first: String, into: &mut Vec<Value>) -> Result<()> {
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page = self.get(agent, &url)?;
            into.extend(list_items(&page)?.iter().cloned());
            next = page["nextLink"].as_str().map(str::to_string);
        }
        Ok(())
    }
}

/// The server refused the token: waiting does not help, so `--watch` stops.
#[derive(Debug)]
pub struct Refused {
    url: String,
    status: u16,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GET {}: {} — the server does not accept this token; pass the one `serve` uses \
             (its DATA/token) with --token or $OPENNSG_TOKEN",
            self.url,
            if self.status == 401 {
                "401 Unauthorized"
            } else {
                "403 Forbidden"
            }
        )
    }
}

impl std::error::Error for Refused {}

/// A `--watch` URL: `http://` or `https://` and a host, checked before anything is fetched.
pub fn check_watch_url(url: &str) -> Result<()> {
    let authority = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    match authority {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(()),
        _ => bail!("--watch {url}: expected http(s)://HOST[:PORT], the address of `opennsg serve`"),
    }
}

/// The longest pause between attempts while the server cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn list_items(page: &Value) -> Result<&Vec<Value>> {
    page["value"]
        .as_array()
        .ok_or_else(|| anyhow!("a list response without a value array"))
}

/// Applies once, reporting what changed on stderr.
pub fn apply_once(enforcer: &mut Enforcer, rendered: Rendered) -> Result<()> {
    let started = Instant::now();
    let rules = rendered.ruleset.rule_count();
    let sets = rendered.ruleset.sets.len();
    let elements = rendered.ruleset.set_element_count();
    let applied = enforcer.apply(rendered)?;
    let difference = &applied.difference;
    eprintln!(
        "opennsg: applied {rules} rules and {sets} sets ({elements} elements) in {:.1} ms: {}; \
         chains +{} ~{} -{}, sets +{} -{}",
        started.elapsed().as_secs_f64() * 1e3,
        if applied.replaced_table {
            "table replaced"
        } else {
            "changed in place"
        },
        difference.chains_added.len(),
        difference.chains_changed.len(),
        difference.chains_removed.len(),
        difference.sets_added.len(),
        difference.sets_removed.len(),
    );
    if !applied.forgotten.is_empty() {
        let addresses: Vec<String> = applied
            .forgotten
            .iter()
            .map(|a| a.addr().to_string())
            .collect();
        eprintln!(
            "opennsg: flushConnection: forgot the connections of {}",
            addresses.join(", ")
        );
    }
    Ok(())
}

/// What `--watch` renders with: the service tags in force (reloaded when their files change),
/// the settings and the bindings.
pub struct Following<'a> {
    pub catalog: Catalog,
    pub tags: &'a mut TagReloader,
    pub settings: Settings,
    pub binding: &'a Binding,
    /// With `--flow-logs`: the logger, kept informed of every rendering.
    pub flow_logs: Option<&'a mut Logging>,
    /// With `--hits-file`: the rules' hit history, read from the kernel at every reconcile.
    pub hits: Option<HitRecorder>,
}

/// Keeps a [`HitHistory`] file up to date from the kernel's counters.
pub struct HitRecorder {
    pub path: std::path::PathBuf,
    pub history: HitHistory,
}

impl HitRecorder {
    /// Loads the history in `path` (or starts one).
    pub fn open(path: std::path::PathBuf) -> Result<HitRecorder> {
        let history = HitHistory::load(&path)?;
        Ok(HitRecorder { path, history })
    }

    /// Reads the kernel's counters now and saves the history.
    pub fn observe(&mut self, kernel: &nsg_nft::Kernel) -> Result<()> {
        let hits = kernel.rule_hits(None)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.history.observe(now, &hits);
        self.history.save(&self.path)
    }
}

/// Flow logging across renderings: how, the rule numbers, and the running logger.
pub struct Logging {
    pub settings: FlowLogging,
    pub rules: RuleIds,
    pub logger: FlowLogger,
}

impl Logging {
    /// Renders `model` with flow logging, tells the logger, and returns the rendering to apply.
    pub fn render(
        &mut self,
        model: &Model,
        catalog: &Catalog,
        settings: Settings,
        binding: &Binding,
        interfaces: &[LocalInterface],
        flow_logs: Vec<VnetFlowLog>,
    ) -> Result<Rendered> {
        let rendered = render_model_logged(
            model,
            catalog,
            settings,
            binding,
            interfaces,
            Some((self.settings, &mut self.rules)),
        )?;
        self.logger.update(LoggedPolicy {
            rules: self.rules.clone(),
            nics: rendered.nics,
            nsg_guids: model
                .network_security_groups
                .iter()
                .filter_map(|nsg| Some((nsg.id.clone(), nsg.resource_guid.clone()?)))
                .collect(),
            flow_logs,
        });
        Ok(rendered.rendered)
    }
}

/// Follows `watch` until the process is stopped: re-renders and applies when the server's
/// resources or the service tag files change (the kernel gets the new set contents in one
/// transaction; tracked connections are kept), and repairs drift of the kernel's table at every
/// interval. A server that cannot be reached is retried, waiting twice as long each time (up to
/// [`MAX_BACKOFF`]); one that refuses the token ends it with that error (the table in force
/// stays).
pub fn follow(
    watch: &Watch,
    live: &mut Following<'_>,
    enforcer: &mut Enforcer,
    agent: &ureq::Agent,
) -> Result<std::convert::Infallible> {
    let mut backoff = watch.interval;
    // What the table in force was rendered from: the server's resources and the local
    // interfaces (a VM that starts brings an interface that --bind-by-mac binds).
    let mut last: Option<(Vec<Value>, Vec<LocalInterface>)> = None;
    let mut reconciled = Instant::now();
    loop {
        match live.tags.poll(&live.catalog) {
            Ok(Some((catalog, changes))) => {
                eprintln!("opennsg: {}", describe_reload(&changes));
                live.catalog = catalog;
                last = None;
            }
            Ok(None) => {}
            Err(error) => eprintln!("opennsg: service tags not reloaded: {error:#}"),
        }
        let logging = live.flow_logs.is_some();
        let inputs = watch.fetch(agent).and_then(|mut resources| {
            if logging {
                resources.extend(watch.fetch_flow_logs(agent)?);
            }
            Ok((resources, local_interfaces()?))
        });
        match inputs {
            Ok(inputs) if last.as_ref() != Some(&inputs) => {
                let applied = (|| {
                    let (resources, interfaces) = &inputs;
                    let mut env = Environment::new();
                    env.add_value(&watch.url, Value::Array(resources.clone()))?;
                    let model = crate::inputs::validate(&env, &live.catalog)?;
                    let rendered = match live.flow_logs.as_deref_mut() {
                        Some(logging) => {
                            let (flow_logs, skipped) =
                                vnet_flow_logs(&Value::Array(resources.clone()));
                            for reason in skipped {
                                eprintln!("opennsg: warning: {reason}");
                            }
                            logging.render(
                                &model,
                                &live.catalog,
                                live.settings,
                                live.binding,
                                interfaces,
                                flow_logs,
                            )?
                        }
                        None => render_model(
                            &model,
                            &live.catalog,
                            live.settings,
                            live.binding,
                            interfaces,
                        )?,
                    };
                    apply_once(enforcer, rendered)
                })();
                // On failure the previous policy stays in force (invariant 4); the next poll
                // tries again.
                match applied {
                    Ok(()) => {
                        if let Some(logging) = live.flow_logs.as_deref() {
                            logging.logger.applied();
                        }
                        last = Some(inputs);
                    }
                    Err(error) => eprintln!("opennsg: not applied: {error:#}"),
                }
            }
            Ok(_) if reconciled.elapsed() >= watch.reconcile_interval => {
                reconciled = Instant::now();
                if let Some(recorder) = &mut live.hits {
                    if let Err(error) = recorder.observe(enforcer.kernel()) {
                        eprintln!("opennsg: hit counts not recorded: {error:#}");
                    }
                }
                match enforcer.reconcile() {
                    Ok(drift) => {
                        for line in drift.describe() {
                            eprintln!("opennsg: drift repaired: {line}");
                        }
                    }
                    Err(error) => eprintln!("opennsg: drift check: {error:#}"),
                }
            }
            Ok(_) => {}
            Err(error) if error.downcast_ref::<Refused>().is_some() => return Err(error),
            Err(error) => {
                eprintln!(
                    "opennsg: {error:#}; trying again in {:.1} s",
                    backoff.as_secs_f64()
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF.max(watch.interval));
                continue;
            }
        }
        backoff = watch.interval;
        std::thread::sleep(watch.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_match_exactly_or_as_libvirt_taps() {
        assert!(mac_matches("00-0D-3A-12-34-56", "00:0d:3a:12:34:56"));
        assert!(mac_matches("00-0D-3A-12-34-56", "fe:0d:3a:12:34:56"));
        assert!(!mac_matches("00-0D-3A-12-34-56", "00:0d:3a:12:34:57"));
        assert!(!mac_matches("garbage", "00:0d:3a:12:34:56"));
    }

    #[test]
    fn bindings_parse_or_say_what_is_expected() {
        assert_eq!(
            parse_binding("VM1=vm1").unwrap(),
            ("VM1".to_string(), "vm1".to_string())
        );
        assert!(parse_binding("VM1").unwrap_err().contains("NIC=IFNAME"));
        assert!(parse_binding("VM1=much-too-long-name").is_err());
    }
}
