//! Live flow logs against replayed ones (root, tcpdump). `opennsg enforce --flow-logs` runs in
//! the router of a lab while `tcpdump -i any` captures there; real TCP, UDP and ICMP cross it,
//! allowed and denied; then `opennsg replay` reads the capture through the same environment.
//! Both write NSG flow logs version 2 from the same `FlowLogEvent`s, so on what both can know —
//! each flow's NSG, rule, MAC, 5-tuple, direction, decision, its states and its counters — they
//! must agree flow by flow (docs/semantics.md K12). And a flood of denied datagrams stays
//! bounded: in what the kernel logs, in the logger's memory, and on disk.

mod support;

use nsg_netlab::packet::ipv4_udp;
use nsg_netlab::{echo_roundtrip, EchoServer, Netns, RawSender};
use nsg_policy::flow_log::{check_v2_document, check_v4_document};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::tcpdump::Tcpdump;
use support::*;

/// The seed environment, written into `dir`: NSG2 also denies 8080 in from the VNet (so that a
/// connection can be allowed out of VM2 and denied into VM1), and with `vnet_flow_log` a VNet
/// flow log covers vnet1 (so that `enforce` also writes version 4, which alone can say ICMP).
fn environment(dir: &Path, vnet_flow_log: bool) -> PathBuf {
    let mut env = load("seed-vms-http.json");
    nsg_mut(&mut env, "NSG2")["properties"]["securityRules"]
        .as_array_mut()
        .expect("rules")
        .push(
            json!({"name": "Deny-8080-From-VNet", "properties": {"protocol": "Tcp",
            "sourceAddressPrefix": "VirtualNetwork", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "8080",
            "access": "Deny", "priority": 150, "direction": "Inbound"}}),
        );
    if vnet_flow_log {
        env.as_array_mut()
            .expect("documents")
            .push(seed_vnet_flow_log());
    }
    let file = dir.join("env.json");
    std::fs::write(&file, env.to_string()).expect("write environment");
    file
}

/// `nft -j ARGS` in `ns`, parsed; `None` if nft fails.
fn nft_json(ns: &Netns, args: &[&str]) -> Option<Value> {
    let output = ns.exec("nft", ["-j"].iter().chain(args)).expect("nft runs");
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).expect("nft lists JSON"))
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
    {
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The `PT1H.json` blobs under `dir` whose path contains `container`.
fn blobs_of(dir: &Path, container: &str) -> Vec<Value> {
    files_under(dir)
        .iter()
        .filter(|path| path.ends_with("PT1H.json") && path.to_string_lossy().contains(container))
        .map(|path| serde_json::from_slice(&std::fs::read(path).expect("read blob")).expect("JSON"))
        .collect()
}

/// A flow as a version 2 tuple names it, at the NSG and NIC that logged it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LoggedFlow {
    nsg: String,
    rule: String,
    mac: String,
    /// Source, destination, source port, destination port, protocol, direction, decision.
    tuple: [String; 7],
}

impl LoggedFlow {
    fn field(&self, index: usize) -> &str {
        &self.tuple[index]
    }
    fn allowed(&self) -> bool {
        self.field(6) == "A"
    }
}

/// What the logs say of one flow: its states in time order and its counters (packets and bytes
/// sent, packets and bytes received) summed over its tuples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct History {
    states: String,
    counters: [u64; 4],
}

impl History {
    /// The states with the `C`s left out: when a long flow is reported is each side's own
    /// (`--flow-log-interval` live, five minutes of capture time in replay), what it reports in
    /// sum is not.
    fn outline(&self) -> String {
        self.states.replace('C', "")
    }
}

/// One tuple of a flow: time, state, counters (`None` for `B`).
type Mark = (u64, char, Option<[u64; 4]>);

/// Each flow's history, from its tuples in any order.
fn histories<K: Ord>(tuples: impl IntoIterator<Item = (K, Mark)>) -> BTreeMap<K, History> {
    let mut by_flow: BTreeMap<K, Vec<Mark>> = BTreeMap::new();
    for (flow, mark) in tuples {
        by_flow.entry(flow).or_default().push(mark);
    }
    let rank = |state: char| "BCE".find(state).unwrap_or(3);
    by_flow
        .into_iter()
        .map(|(flow, mut marks)| {
            marks.sort_by_key(|&(time, state, _)| (time, rank(state)));
            let mut history = History::default();
            for (_, state, counters) in marks {
                history.states.push(state);
                for (sum, value) in history.counters.iter_mut().zip(counters.unwrap_or([0; 4])) {
                    *sum += value;
                }
            }
            (flow, history)
        })
        .collect()
}

/// Counters of a tuple's last four fields; `None` when empty (`B`).
fn counters(fields: &[&str]) -> Option<[u64; 4]> {
    if fields.iter().all(|f| f.is_empty()) {
        return None;
    }
    let mut values = [0; 4];
    for (value, field) in values.iter_mut().zip(fields) {
        *value = field.parse().expect("a counter");
    }
    Some(values)
}

/// The flows of version 2 documents (each checked strictly).
fn v2_flows(documents: &[Value]) -> BTreeMap<LoggedFlow, History> {
    let mut tuples = Vec::new();
    for document in documents {
        assert_eq!(check_v2_document(document), Ok(()), "{document:#}");
        for record in document["records"].as_array().expect("records") {
            let nsg = record["resourceId"].as_str().expect("resourceId");
            let nsg = nsg.rsplit('/').next().unwrap_or(nsg);
            for rule in record["properties"]["flows"].as_array().expect("flows") {
                for by_mac in rule["flows"].as_array().expect("flows of a rule") {
                    for tuple in by_mac["flowTuples"].as_array().expect("tuples") {
                        let fields: Vec<&str> = tuple.as_str().expect("tuple").split(',').collect();
                        assert_eq!(fields.len(), 13, "{tuple}");
                        let flow = LoggedFlow {
                            nsg: nsg.to_string(),
                            rule: rule["rule"].as_str().expect("rule").to_string(),
                            mac: by_mac["mac"].as_str().expect("mac").to_string(),
                            tuple: std::array::from_fn(|i| fields[1 + i].to_string()),
                        };
                        let time = fields[0].parse().expect("time");
                        let state = fields[8].chars().next().expect("state");
                        tuples.push((flow, (time, state, counters(&fields[9..]))));
                    }
                }
            }
        }
    }
    histories(tuples)
}

/// The ICMP flows of version 4 documents (each checked strictly), by rule, source and
/// destination.
fn v4_icmp_flows(documents: &[Value]) -> BTreeMap<(String, String, String), History> {
    let mut tuples = Vec::new();
    for document in documents {
        assert_eq!(check_v4_document(document), Ok(()), "{document:#}");
        for record in document["records"].as_array().expect("records") {
            for acl in record["flowRecords"]["flows"].as_array().expect("flows") {
                for group in acl["flowGroups"].as_array().expect("groups") {
                    for tuple in group["flowTuples"].as_array().expect("tuples") {
                        let fields: Vec<&str> = tuple.as_str().expect("tuple").split(',').collect();
                        if fields[5] != "1" {
                            continue;
                        }
                        let flow = (
                            group["rule"].as_str().expect("rule").to_string(),
                            fields[1].to_string(),
                            fields[2].to_string(),
                        );
                        let millis: u64 = fields[0].parse().expect("time");
                        let state = fields[7].chars().next().expect("state");
                        tuples.push((flow, (millis / 1000, state, counters(&fields[9..]))));
                    }
                }
            }
        }
    }
    histories(tuples)
}

/// A TCP connection with data both ways, kept open past a reporting interval.
struct Conversation {
    stream: std::net::TcpStream,
    _server: EchoServer,
}

impl Conversation {
    fn open(topology: &Topology, from: &str, to: &str, port: u16) -> Conversation {
        let server = topology.host(to);
        let echo = EchoServer::start(&server.ns, SocketAddr::new(server.address, port))
            .expect("echo server");
        let mut stream = topology
            .tcp_to_running(from, to, port)
            .unwrap_or_else(|e| panic!("{from} → {to}:{port} is allowed: {e}"));
        let payload = vec![b'x'; 3000];
        assert_eq!(
            echo_roundtrip(&mut stream, &payload).expect("echo"),
            payload
        );
        Conversation {
            stream,
            _server: echo,
        }
    }

    /// A last exchange, then the client closes (FIN both ways, the echo server closing too).
    fn finish(mut self) {
        assert_eq!(
            echo_roundtrip(&mut self.stream, b"more").expect("echo"),
            b"more"
        );
    }
}

/// The version 2 flows the test's traffic makes live, as "NSG rule direction decision protocol
/// destination-port".
const EXPECTED_LIVE_FLOWS: [&str; 11] = [
    "NSG2 UserRule_Allow-HTTP-Internet I A T 80",
    "NSG1 DefaultRule_AllowVnetOutBound O A T 443",
    "NSG2 DefaultRule_AllowVnetInBound I A T 443",
    "NSG1 DefaultRule_AllowVnetOutBound O A T 444",
    "NSG2 DefaultRule_AllowVnetInBound I A T 444",
    "NSG1 DefaultRule_AllowInternetOutBound O A U 53",
    "NSG1 DefaultRule_DenyAllInBound I D T 22",
    "NSG2 DefaultRule_DenyAllInBound I D U 5000",
    "NSG2 UserRule_Deny-HTTP-Out O D T 80",
    "NSG2 UserRule_Deny-8080-From-VNet I D T 8080",
    // VM2's side of it: allowed out, its SYNs counted though VM1 denied them.
    "NSG1 DefaultRule_AllowVnetOutBound O A T 8080",
];

/// Whether the live logs hold every expected flow, the allowed ones ended.
fn complete(flows: &BTreeMap<LoggedFlow, History>) -> bool {
    let mut found: Vec<String> = flows
        .iter()
        .filter(|(flow, history)| !flow.allowed() || history.states.ends_with('E'))
        .map(|(flow, _)| {
            [flow.nsg.as_str(), &flow.rule]
                .into_iter()
                .chain([5, 6, 4, 3].map(|i| flow.field(i)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    found.sort();
    let mut expected = EXPECTED_LIVE_FLOWS.to_vec();
    expected.sort();
    found == expected
}

/// The live-versus-replay comparison on one lab.
fn live_flow_logs_equal_replayed_ones_on(attachment: Attachment) {
    let topology = seed_topology(attachment);
    let dir = tempfile::tempdir().expect("temporary directory");
    let logs = dir.path().join("logs");
    let env = environment(dir.path(), true);
    topology.short_conntrack_timeouts();
    let capture = Tcpdump::start(
        &topology.router,
        "LINUX_SLL2",
        dir.path().join("router.pcap"),
    );
    let enforcer = topology.enforce_with_flow_logs(&env, &logs, &["--bind-by-mac"]);

    // Allowed: TCP with data both ways from the internet to VM1 and between VM2 and VM1 (two
    // bound NICs, logged at both), kept open past a reporting interval; a DNS query out of VM2
    // and its answer; a ping out of VM3.
    let conversations = [
        Conversation::open(&topology, "inet", "vm1", 80),
        Conversation::open(&topology, "vm2", "vm1", 443),
    ];
    assert_eq!(topology.udp("vm2", "inet", 53), (true, true), "VM2's query");
    assert!(topology.ping("vm3", "inet"), "VM3 pings out");
    // Two intervals and a second: some dump of the logger (every 2 to 3 s) falls after the
    // first interval, while the connections are open.
    std::thread::sleep(Duration::from_secs(2 * FLOW_LOG_INTERVAL_SECS + 1));
    for conversation in conversations {
        conversation.finish();
    }
    // Allowed but refused: nothing listens on VM1's port 444, which answers the SYN with a RST.
    let (vm2, vm1) = (topology.host("vm2"), topology.host("vm1"));
    let refused = nsg_netlab::tcp_connect(
        &vm2.ns,
        Some(vm2.address),
        SocketAddr::new(vm1.address, 444),
        DENIED_AFTER,
    );
    assert!(refused.is_err(), "nothing listens on VM1:444");
    // Denied: a TCP SYN in to VM2, a datagram in to VM3, HTTP out of VM1.
    assert!(!topology.tcp("inet", "vm2", 22), "SSH to VM2 is denied");
    assert!(!topology.udp("inet", "vm3", 5000).0, "UDP to VM3 is denied");
    assert!(
        !topology.tcp("vm1", "inet", 80),
        "HTTP out of VM1 is denied"
    );
    assert!(!topology.tcp("vm2", "vm1", 8080), "VM1 denies 8080 in");

    let live_flows = || {
        v2_flows(&blobs_of(
            &logs,
            "insights-logs-networksecuritygroupflowevent",
        ))
    };
    assert!(
        eventually(Duration::from_secs(90), || complete(&live_flows())),
        "{attachment:?}: the live logs hold every flow, ended: {:#?}",
        live_flows()
    );
    let live = live_flows();
    let live_icmp = v4_icmp_flows(&blobs_of(&logs, "insights-logs-flowlogflowevent"));
    drop(enforcer);
    let capture_file = capture.file.clone();
    capture.stop();

    let replayed_logs = dir.path().join("replayed.json");
    let replay = opennsg_with(
        &[],
        &[
            "replay",
            env.to_str().expect("utf-8"),
            "--pcap",
            capture_file.to_str().expect("utf-8"),
            "--flow-logs",
            replayed_logs.to_str().expect("utf-8"),
            "--json",
        ],
    );
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    let summary: Value = serde_json::from_slice(&replay.stdout).expect("summary");
    let document: Value =
        serde_json::from_slice(&std::fs::read(&replayed_logs).expect("replayed logs"))
            .expect("JSON");
    let replayed = v2_flows(&[document]);

    // Flow by flow: the same flows, each B … E when allowed (C tuples between), one denied
    // tuple when denied, with the same counters in sum. Exactly the same: conntrack counts each
    // packet of a connection as the router's stack holds it (a GRO/GSO aggregate is one packet
    // of its whole IP length), and the capture holds the same packets, each once after replay's
    // copy filter (D11); so offloads stay on. Times are not compared: live tuples carry the
    // logger's clock and come when conntrack reports (E after its timeouts), replayed ones the
    // capture's clock (E at the record's end or the capture's).
    for (flow, history) in live.iter().chain(&replayed) {
        let shape = if flow.allowed() { "BE" } else { "B" };
        assert!(
            history.outline() == shape && history.states.starts_with('B'),
            "{attachment:?}: {flow:?}: {history:?}"
        );
    }
    let outlined =
        |flows: &BTreeMap<LoggedFlow, History>| -> BTreeMap<LoggedFlow, (String, [u64; 4])> {
            flows
                .iter()
                .map(|(flow, history)| (flow.clone(), (history.outline(), history.counters)))
                .collect()
        };
    // VM2's side of 8080 (allowed out by NSG1, denied in at VM1) included: the kernel drops
    // it before conntrack confirms the connection, and the logged packet's mark names the
    // sender's rule (K11).
    assert_eq!(
        outlined(&live),
        outlined(&replayed),
        "{attachment:?}: live (left) and replayed (right) flow logs"
    );
    assert!(
        live.iter()
            .any(|(flow, history)| flow.field(3) == "80" && history.states.contains('C')),
        "{attachment:?}: the long connection was reported while open: {live:#?}"
    );

    // ICMP has no version 2 tuple: replay counts VM3's ping as skipped events (B and E); the
    // live VNet flow log has them, with the counters replay's summary gives the rule.
    assert_eq!(summary["flowLogEventsSkipped"], 2, "{summary:#}");
    let (_, ping) = live_icmp
        .iter()
        .find(|((rule, src, _), _)| {
            rule == "DefaultRule_AllowInternetOutBound" && src == "10.0.2.4"
        })
        .unwrap_or_else(|| panic!("{attachment:?}: VM3's ping: {live_icmp:#?}"));
    assert_eq!(ping.outline(), "BE", "{ping:?}");
    let by_rule = summary["byRule"]
        .as_array()
        .expect("byRule")
        .iter()
        .find(|entry| {
            entry[0]["networkSecurityGroup"] == "NSG2"
                && entry[0]["rule"] == "defaultSecurityRules/AllowInternetOutBound"
        })
        .unwrap_or_else(|| panic!("{summary:#}"));
    let [sent, sent_bytes, received, received_bytes] = ping.counters;
    assert_eq!(
        (by_rule[1]["packets"].as_u64(), by_rule[1]["bytes"].as_u64()),
        (Some(sent + received), Some(sent_bytes + received_bytes)),
        "{attachment:?}: {by_rule}"
    );
}

#[test]
fn live_flow_logs_equal_replayed_ones() {
    for attachment in [Attachment::Routed, Attachment::Bridged] {
        live_flow_logs_equal_replayed_ones_on(attachment);
    }
}

/// Datagrams in the flood, each from a source port of its own.
const FLOOD: u16 = 20_000;
/// The logger's peak resident memory must stay below this. Measured here (debug build): about
/// 20 MiB before the flood, 21 MiB after. What a flood can grow is bounded by the rate limit:
/// the denied flows of the current minute (at most `rate × 60 + burst` per rule, 3,100 here,
/// under 100 bytes each) and the tuples waiting for the next append (a second's worth); 64 MiB
/// leaves room for the allocator, threads and slower machines. (It does not tell a logger
/// without the limit apart on this flood, 20,000 records of a few hundred bytes being a few
/// MiB: the chain's counters and the `D` tuples do that.)
const RSS_LIMIT_KIB: u64 = 64 * 1024;

/// A `kB` line of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// The packet counters of the rules of `chain`, in order.
fn chain_counters(ns: &Netns, chain: &str) -> Vec<u64> {
    let listing = nft_json(ns, &["list", "chain", "inet", "opennsg", chain]).expect("the chain");
    listing["nftables"]
        .as_array()
        .expect("nftables")
        .iter()
        .filter_map(|item| item.get("rule"))
        .map(|rule| {
            rule["expr"]
                .as_array()
                .expect("expr")
                .iter()
                .find_map(|e| e["counter"]["packets"].as_u64())
                .expect("every rule counts")
        })
        .collect()
}

/// The deny chain a rule whose comment starts with `rule` goes to.
fn deny_chain_of(ns: &Netns, rule: &str) -> String {
    let listing = nft_json(ns, &["list", "table", "inet", "opennsg"]).expect("the table");
    let chains: Vec<String> = listing["nftables"]
        .as_array()
        .expect("nftables")
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter(|r| r["comment"].as_str().is_some_and(|c| c.starts_with(rule)))
        .flat_map(|r| r["expr"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["goto"]["target"].as_str().map(str::to_string))
        .collect();
    assert!(
        !chains.is_empty() && chains.iter().all(|c| *c == chains[0]),
        "{rule}: {chains:?}"
    );
    chains[0].clone()
}

/// A flood of denied datagrams, each its own 5-tuple, from the internet to VM2: the deny chain
/// logs at most its rate (and burst) and drops the rest unlogged, counted; the logger writes
/// one `D` tuple per logged packet (each a flow of its own) and no more; its memory and the log
/// directory stay small.
#[test]
fn a_flood_of_denied_datagrams_stays_bounded() {
    let topology = vm2_and_the_internet(Attachment::Routed);
    let dir = tempfile::tempdir().expect("temporary directory");
    let logs = dir.path().join("logs");
    let env = environment(dir.path(), false);
    let enforcer = topology.enforce_with_flow_logs(&env, &logs, &["--bind", "vm2-nic=vm2"]);
    let pid = enforcer.0.id();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(
        comm.trim(),
        "opennsg",
        "ip netns exec runs opennsg in its place"
    );
    let chain = deny_chain_of(&topology.router, "NSG1/defaultSecurityRules/DenyAllInBound");
    assert_eq!(chain_counters(&topology.router, &chain), [0, 0]);

    let (inet, vm2) = (topology.host("inet"), topology.host("vm2"));
    let (IpAddr::V4(from), IpAddr::V4(to)) = (inet.address, vm2.address) else {
        panic!("IPv4 hosts");
    };
    let sender = RawSender::open(&inet.ns).expect("raw socket");
    let resident_before = status_kib(pid, "VmRSS");
    let started = Instant::now();
    for port in 10_000..10_000 + FLOOD {
        sender
            .send(&ipv4_udp(from, to, port, 5000, b"flood"))
            .expect("sent");
    }
    // The kernel met every datagram at the deny chain: over the rate, or logged.
    assert!(
        eventually(Duration::from_secs(10), || chain_counters(
            &topology.router,
            &chain
        )
        .iter()
        .sum::<u64>()
            == u64::from(FLOOD)),
        "{:?}",
        chain_counters(&topology.router, &chain)
    );
    let seconds = started.elapsed().as_secs_f64();
    let [over_rate, logged] = chain_counters(&topology.router, &chain)[..] else {
        panic!("a deny chain has two rules");
    };
    // The limit's bucket holds the burst and refills at the rate: in the flood's time at most
    // that many were logged (the time is measured around the flood, so it bounds from above).
    let defaults = nsg_nft::render::flow_logging::FlowLogging::default();
    let most = f64::from(defaults.denied_per_second) * seconds + f64::from(defaults.denied_burst);
    assert!(
        logged as f64 <= most.ceil() && logged >= u64::from(defaults.denied_burst),
        "{logged} logged in {seconds:.2} s"
    );
    assert_eq!(over_rate, u64::from(FLOOD) - logged);

    // One D tuple per logged packet (each is a flow of its own, so none is folded into another's
    // minute), and none for the packets dropped unlogged.
    let denied = || -> usize {
        v2_flows(&blobs_of(
            &logs,
            "insights-logs-networksecuritygroupflowevent",
        ))
        .iter()
        .filter(|(flow, _)| flow.rule == "DefaultRule_DenyAllInBound" && flow.field(3) == "5000")
        .map(|(_, history)| history.states.len())
        .sum()
    };
    assert!(
        eventually(Duration::from_secs(20), || denied() as u64 >= logged),
        "{} D tuples for {logged} logged packets",
        denied()
    );
    // A few appends later nothing more has come.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(denied() as u64, logged);
    let (resident, peak) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    assert!(
        peak < RSS_LIMIT_KIB,
        "the logger's peak resident memory: {peak} KiB"
    );
    // A version 2 tuple is under 70 bytes with its quotes; records add a few hundred bytes per
    // append of a minute's tuples.
    let size: u64 = files_under(&logs)
        .iter()
        .map(|file| std::fs::metadata(file).map_or(0, |m| m.len()))
        .sum();
    assert!(
        size <= 16 * 1024 + 70 * logged,
        "{size} bytes of logs for {logged} tuples"
    );
    eprintln!(
        "flood: {FLOOD} datagrams in {seconds:.2} s, {logged} logged, {over_rate} over the rate; \
         resident {resident_before} KiB before, {resident} KiB after, peak {peak} KiB; \
         {size} bytes of logs"
    );
}
