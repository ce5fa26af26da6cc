//! `opennsg enforce` end to end: the seed's topology built from network namespaces and veth pairs,
//! the binary applying the policy in the host namespace, and real TCP, UDP and ICMP traffic
//! between the VMs, an internet host (203.0.113.10) and the load balancer probe source
//! (168.63.129.16). Needs root, `ip`, `nft`, `conntrack` and `ping` (`.ci/run` installs them).
//! Namespaces are removed when the `Lab` drops, also when a test fails.

mod support;

use nsg_netlab::{echo_roundtrip, EchoServer};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

#[test]
fn the_seed_picture_holds_for_real_traffic() {
    seed_picture(Attachment::Routed);
}

#[test]
fn the_seed_picture_holds_for_bridged_guests() {
    seed_picture(Attachment::Bridged);
}

fn seed_picture(attachment: Attachment) {
    let topology = seed_topology(attachment);
    let env = fixture("seed-vms-http.json");
    let env = env.to_str().expect("utf-8 path");
    topology.opennsg(&["enforce", env, "--bind-by-mac"]);

    // Port 80 from the internet reaches every VM: each NSG on the way allows it.
    for vm in ["vm1", "vm2", "vm3", "vm4"] {
        assert!(topology.tcp("inet", vm, 80), "internet → {vm}:80");
    }
    // Other ports from the internet meet DenyAllInBound wherever an NSG applies.
    for (vm, allowed) in [
        ("vm1", false),
        ("vm2", false),
        ("vm3", false),
        ("vm4", true),
    ] {
        assert_eq!(topology.tcp("inet", vm, 22), allowed, "internet → {vm}:22");
        assert_eq!(topology.ping("inet", vm), allowed, "ping internet → {vm}");
        assert_eq!(
            topology.udp("inet", vm, 5000).0,
            allowed,
            "udp internet → {vm}"
        );
    }
    // NSG2 denies HTTP to the internet; VM1 and VM3 carry it.
    for (vm, allowed) in [("vm1", false), ("vm2", true), ("vm3", false), ("vm4", true)] {
        assert_eq!(topology.tcp(vm, "inet", 80), allowed, "{vm} → internet:80");
    }
    // Return traffic of allowed outbound flows comes back: pings, UDP replies, TCP (above).
    for vm in ["vm1", "vm2", "vm3", "vm4"] {
        assert!(topology.ping(vm, "inet"), "ping {vm} → internet");
        assert_eq!(
            topology.udp(vm, "inet", 5001),
            (true, true),
            "udp {vm} → internet"
        );
    }
    // Inside the VNet, including within one subnet, the default rules allow everything.
    assert!(topology.tcp("vm1", "vm2", 22));
    assert!(topology.tcp("vm2", "vm1", 22));
    assert!(topology.tcp("vm3", "vm1", 3389));
    assert!(topology.ping("vm4", "vm3"));
    // The load balancer's probes are in VirtualNetwork, so AllowVnetInBound admits them.
    assert!(topology.tcp("lb", "vm1", 22));
    assert!(topology.tcp("lb", "vm2", 80));

    // The kernel lists back what was rendered: no drift.
    topology.opennsg(&["enforce", env, "--bind-by-mac", "--check"]);
    let listing = topology
        .router
        .exec("nft", ["list", "table", "inet", "opennsg"])
        .expect("nft list");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("comment \"NSG2/securityRules/Deny-HTTP-Out 100 Deny\""),
        "{listing}"
    );
    assert!(listing.contains("flags interval"), "{listing}");
    // Sets say what they stand for.
    assert!(listing.contains("set v4-Internet-"), "{listing}");
}

#[test]
fn the_asg_example_holds_for_real_traffic() {
    asg_example(Attachment::Routed);
}

#[test]
fn the_asg_example_holds_for_bridged_guests() {
    asg_example(Attachment::Bridged);
}

fn asg_example(attachment: Attachment) {
    let topology = Topology::attached(
        &[
            ("web", &["10.0.1.4"], Some(mac("00-0D-3A-E0-06-01"))),
            ("logic", &["10.0.1.5"], Some(mac("00-0D-3A-90-D4-7C"))),
            ("db", &["10.0.1.6"], Some(mac("00-0D-3A-07-EB-EF"))),
            ("inet", &["203.0.113.10"], None),
        ],
        attachment,
        &["web", "logic", "db"],
    );
    topology.enforce(
        &load("seed-asg.json"),
        &["web-nic=web", "logic-nic=logic", "db-nic=db"],
    );
    assert!(
        topology.tcp("inet", "web", 80),
        "AsgWeb takes HTTP from the internet"
    );
    assert!(!topology.tcp("inet", "logic", 80), "AsgLogic does not");
    assert!(!topology.tcp("inet", "db", 80), "nor does AsgDb");
    assert!(
        topology.tcp("logic", "db", 1433),
        "AsgLogic reaches the database"
    );
    assert!(!topology.tcp("web", "db", 1433), "AsgWeb does not");
    assert!(
        topology.tcp("web", "logic", 8080),
        "the rest of the VNet is open"
    );
}

#[test]
fn a_connection_outlives_the_rule_that_allowed_it_unless_the_nsg_flushes() {
    connection_outlives_its_rule(Attachment::Routed);
}

#[test]
fn a_bridged_connection_outlives_the_rule_that_allowed_it_unless_the_nsg_flushes() {
    connection_outlives_its_rule(Attachment::Bridged);
}

fn connection_outlives_its_rule(attachment: Attachment) {
    let topology = vm2_and_the_internet(attachment);
    let vm2 = topology.host("vm2");
    let _echo = EchoServer::start(&vm2.ns, SocketAddr::new(vm2.address, 80)).expect("echo");
    let binds = ["vm2-nic=vm2"];

    let allowed = load("seed-vms-http.json");
    let mut denied = allowed.clone();
    remove_rule(&mut denied, "NSG1", "Allow-HTTP-Internet");

    topology.enforce(&allowed, &binds);
    let mut long_lived = topology
        .tcp_to_running("inet", "vm2", 80)
        .expect("allowed connection");
    topology.enforce(&denied, &binds);
    assert_eq!(
        echo_roundtrip(&mut long_lived, b"still here\n").expect("the connection survives"),
        b"still here\n"
    );
    assert!(
        topology.tcp_to_running("inet", "vm2", 80).is_err(),
        "a new connection is refused"
    );
    drop(long_lived);

    // With flushConnection the rule change re-evaluates the connection, which is then dropped.
    let mut allowed_flushing = allowed.clone();
    nsg_mut(&mut allowed_flushing, "NSG1")["properties"]["flushConnection"] = Value::Bool(true);
    let mut denied_flushing = denied.clone();
    nsg_mut(&mut denied_flushing, "NSG1")["properties"]["flushConnection"] = Value::Bool(true);
    topology.enforce(&allowed_flushing, &binds);
    let mut flushed = topology
        .tcp_to_running("inet", "vm2", 80)
        .expect("allowed again");
    let report = topology.enforce(&denied_flushing, &binds);
    assert!(
        report.contains("forgot the connections of 10.0.1.5"),
        "{report}"
    );
    assert!(
        echo_roundtrip(&mut flushed, b"gone\n").is_err(),
        "the flushed connection no longer carries data"
    );
}

#[test]
fn drift_is_reported_and_repaired() {
    let topology = vm2_and_the_internet(Attachment::Routed);
    let env = load("seed-vms-http.json");
    topology.enforce(&env, &["vm2-nic=vm2"]);
    assert!(topology.tcp("inet", "vm2", 80));
    // Someone empties a chain by hand: HTTP falls through to… nothing, and is allowed to 22 too.
    topology
        .router
        .exec_checked(
            "nft",
            ["flush", "chain", "inet", "opennsg", "vm2-nic-in-subnet"],
        )
        .expect("hand edit");
    assert!(
        topology.tcp("inet", "vm2", 22),
        "the hand edit opened port 22"
    );
    let path = topology.dir.path().join("env.json");
    let path = path.to_str().expect("utf-8");
    let check = topology.run(&["enforce", path, "--bind", "vm2-nic=vm2", "--check"]);
    assert_eq!(check.status.code(), Some(1), "drift exits 1");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "altered chain vm2-nic-in-subnet"
    );
    topology.enforce(&env, &["vm2-nic=vm2"]);
    assert!(
        !topology.tcp("inet", "vm2", 22),
        "enforcing again repaired it"
    );
    assert!(topology.tcp("inet", "vm2", 80));
}

#[test]
fn a_failed_apply_leaves_the_previous_policy_in_force() {
    let topology = vm2_and_the_internet(Attachment::Routed);
    topology.enforce(&load("seed-vms-http.json"), &["vm2-nic=vm2"]);
    // A policy that would open port 22, applied by a process the kernel refuses (no
    // CAP_NET_ADMIN): nft fails, the command says why, and the table in force is unchanged.
    let mut open = load("seed-vms-http.json");
    let rules = nsg_mut(&mut open, "NSG1")["properties"]["securityRules"]
        .as_array_mut()
        .expect("rules");
    let mut ssh = rules[0].clone();
    ssh["name"] = "Allow-SSH".into();
    ssh["properties"]["destinationPortRange"] = "22".into();
    ssh["properties"]["priority"] = 210.into();
    rules.push(ssh);
    let path = topology.dir.path().join("open.json");
    std::fs::write(&path, serde_json::to_vec(&open).expect("serialise")).expect("write");
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", topology.router.name()])
        .args([
            "setpriv",
            "--inh-caps=-net_admin",
            "--bounding-set=-net_admin",
            "--",
        ])
        .args([env!("CARGO_BIN_EXE_opennsg"), "enforce"])
        .arg(&path)
        .args(["--bind", "vm2-nic=vm2"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("nft") && stderr.contains("run as root or with CAP_NET_ADMIN"),
        "{stderr}"
    );
    assert!(topology.tcp("inet", "vm2", 80));
    assert!(
        !topology.tcp("inet", "vm2", 22),
        "the refused policy is not in force"
    );
    // The same policy applied with the capability opens the port: the refusal was the only
    // difference.
    topology.enforce(&open, &["vm2-nic=vm2"]);
    assert!(topology.tcp("inet", "vm2", 22));
}

/// Every valid fixture, with every NIC bound, lists back from the kernel exactly as rendered:
/// the canonical form drift checks rely on. The real-data suite runs it with Microsoft's file.
#[test]
fn every_fixture_lists_back_as_rendered() {
    assert_every_fixture_lists_back(&shipped_service_tags());
}

#[test]
fn enforce_follows_a_server_and_repairs_drift() {
    const PORT: u16 = 18080;
    let mut topology = vm2_and_the_internet(Attachment::Routed);
    let vm2 = topology.host("vm2");
    // One HTTP echo server for the whole test: new connections and the long-lived one.
    let _http = EchoServer::start(&vm2.ns, SocketAddr::new(vm2.address, 80)).expect("echo");
    let http_allowed = || topology.tcp_to_running("inet", "vm2", 80).is_ok();
    let served = topology.serve(PORT);
    served.put_environment(&load("seed-vms-http.json"));
    let metrics: SocketAddr = "127.0.0.1:19464".parse().expect("address");
    let history_dir = tempfile::tempdir().expect("temporary directory");
    let history = history_dir.path().join("hits.json");
    let _enforcer = served.watch(
        &[
            "--bind",
            "vm2-nic=vm2",
            "--bind-by-mac",
            "--metrics",
            &metrics.to_string(),
            "--hits-file",
            history.to_str().expect("utf-8"),
        ],
        &[],
    );
    // Before the first apply everything passes; the policy shows when port 22 closes.
    assert!(
        eventually(Duration::from_secs(20), || !topology.tcp("inet", "vm2", 22)),
        "the server's policy was enforced"
    );
    assert!(http_allowed(), "and it allows HTTP from the internet");
    // --metrics serves the kernel's hit counts: the allowed connection and the denied probes.
    let scrape = {
        let mut stream =
            nsg_netlab::tcp_connect(&topology.router, None, metrics, Duration::from_secs(5))
                .expect("connect to --metrics");
        nsg_netlab::http_request(&mut stream, "metrics", "GET", "/metrics", "", "").expect("scrape")
    };
    assert_eq!(scrape.status, 200, "{scrape:?}");
    for (series, rule) in [
        ("opennsg_rule_packets_total", "nsg=\"NSG1\",rule=\"securityRules/Allow-HTTP-Internet\",priority=\"200\",access=\"Allow\""),
        ("opennsg_rule_packets_total", "nsg=\"NSG1\",rule=\"defaultSecurityRules/DenyAllInBound\",priority=\"65500\",access=\"Deny\""),
    ] {
        let prefix = format!("{series}{{{rule}}} ");
        let count: u64 = scrape
            .body
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} in {}", scrape.body));
        assert!(count >= 1, "{prefix}{count}");
    }
    // --hits-file records when each rule last decided a packet, at every reconcile.
    let last_hit = |rule: &str| -> Option<u64> {
        let history: Value = serde_json::from_slice(&std::fs::read(&history).ok()?).ok()?;
        history["rules"]
            .as_array()?
            .iter()
            .find(|r| r["rule"] == rule)?["lastHit"]
            .as_u64()
    };
    assert!(
        eventually(Duration::from_secs(20), || last_hit(
            "securityRules/Allow-HTTP-Internet"
        )
        .is_some()),
        "the hit history names the allow rule: {:?}",
        std::fs::read_to_string(&history)
    );
    assert_eq!(
        last_hit("defaultSecurityRules/AllowAzureLoadBalancerInBound"),
        None
    );

    let mut long_lived = topology
        .tcp_to_running("inet", "vm2", 80)
        .expect("allowed connection");
    let rule = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/\
                Microsoft.Network/networkSecurityGroups/NSG1/securityRules/Allow-HTTP-Internet";
    let deleted = served.call("DELETE", rule, "").expect("DELETE");
    assert!(deleted.status < 300, "{deleted:?}");
    assert!(
        eventually(Duration::from_secs(20), || !http_allowed()),
        "the deletion reached the kernel"
    );
    assert_eq!(
        echo_roundtrip(&mut long_lived, b"kept\n").expect("still open"),
        b"kept\n"
    );

    // A hand edit that opens everything is repaired at the next interval.
    topology
        .router
        .exec_checked(
            "nft",
            ["flush", "chain", "inet", "opennsg", "vm2-nic-in-subnet"],
        )
        .expect("hand edit");
    assert!(
        eventually(Duration::from_secs(20), || {
            let listing = topology
                .router
                .exec(
                    "nft",
                    ["list", "chain", "inet", "opennsg", "vm2-nic-in-subnet"],
                )
                .expect("nft list");
            String::from_utf8_lossy(&listing.stdout).contains("DenyAllInBound")
        }),
        "the drift was repaired"
    );
    assert!(!topology.tcp("inet", "vm2", 22));

    // A VM that starts later: --bind-by-mac binds its interface as soon as it appears.
    topology.add_host(
        &("vm1", &["10.0.1.4"], Some(mac("00-0D-3A-C5-06-0A"))),
        false,
    );
    assert!(
        eventually(Duration::from_secs(20), || !topology.tcp("inet", "vm1", 22)),
        "the new VM's NSGs were enforced"
    );
    assert!(
        topology.tcp("vm2", "vm1", 22),
        "AllowVnetInBound: the VM is up, and filtered"
    );
}

#[test]
fn dual_stack_rules_hold_for_ipv6_traffic() {
    let topology = Topology::new(&[
        ("vm", &["fd00:db8:1:1::4", "10.1.1.4"], None),
        ("trusted", &["2001:db8:abcd:1::22"], None),
        ("blocked", &["2001:db8:dead::5"], None),
        ("other", &["2001:db8:ffff::9"], None),
    ]);
    topology.enforce(&load("ipv6.json"), &["v6-nic=vm"]);
    assert!(topology.tcp("trusted", "vm", 443), "Allow-HTTPS-v6");
    assert!(
        !topology.tcp("other", "vm", 443),
        "outside 2001:db8:abcd::/48"
    );
    assert!(topology.tcp("other", "vm", 8080), "Allow-Any-8080");
    assert!(topology.tcp("trusted", "vm", 22), "Allow-Ssh-From-Host");
    assert!(!topology.tcp("other", "vm", 22));
    assert!(topology.ping("trusted", "vm"), "Allow-Icmp-v6");
    assert!(!topology.ping("other", "vm"));
    assert!(!topology.tcp("vm", "blocked", 80), "Deny-v6-Range-Out");
    assert!(topology.tcp("vm", "other", 80), "AllowInternetOutBound");
    assert_eq!(
        topology.udp("vm", "blocked", 5000),
        (true, true),
        "the deny is TCP only"
    );
}

#[test]
fn a_bind_to_a_missing_interface_fails_unless_it_may_appear_later() {
    let mut topology = vm2_and_the_internet(Attachment::Routed);
    let env = load("seed-vms-http.json");
    topology.enforce(&env, &["vm2-nic=vm2"]);
    assert!(!topology.tcp("inet", "vm2", 22), "DenyAllInBound");

    // A typo is an error, and the binding in force stays where it was.
    let path = topology.dir.path().join("env.json");
    let path = path.to_str().expect("utf-8 path");
    let typo = topology.run(&["enforce", path, "--bind", "vm2-nic=vm2-typo"]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success(), "{stderr}");
    assert!(
        stderr.contains("there is no interface vm2-typo") && stderr.contains("--allow-absent"),
        "{stderr}"
    );
    assert!(!topology.tcp("inet", "vm2", 22), "vm2 is still filtered");

    // A VM that is not started yet: a warning, and its interface is filtered once it appears.
    let warned = topology.opennsg(&[
        "enforce",
        path,
        "--bind",
        "vm2-nic=vm2",
        "--bind",
        "vm1-nic=late",
        "--allow-absent",
    ]);
    assert!(warned.contains("no interface late yet"), "{warned}");
    topology.add_host(&("late", &["10.0.1.4"], None), false);
    assert!(
        topology.tcp("inet", "late", 80),
        "NSG1 and NSG2 allow HTTP in"
    );
    assert!(
        !topology.tcp("inet", "late", 22),
        "DenyAllInBound at the late NIC"
    );
    assert!(!topology.tcp("late", "inet", 80), "NSG2 denies HTTP out");
}

#[test]
fn bridge_ports_are_not_bound_without_br_netfilter() {
    let topology = vm2_and_the_internet(Attachment::Bridged);
    topology
        .router
        .exec_checked("sysctl", ["-qw", "net.bridge.bridge-nf-call-iptables=0"])
        .expect("sysctl");
    let path = topology.dir.path().join("env.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&load("seed-vms-http.json")).expect("json"),
    )
    .expect("write");
    let output = topology.run(&[
        "enforce",
        path.to_str().expect("utf-8 path"),
        "--bind",
        "vm2-nic=vm2",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("net.bridge.bridge-nf-call-iptables")
            && stderr.contains("modprobe br_netfilter"),
        "{stderr}"
    );
}

/// `opennsg tags update --from-url` makes a new week current; `enforce --watch` puts it in force
/// without a restart: an address the new week adds to Storage.WestEurope is reachable, one it
/// removes is not, and a connection opened under the old week survives.
#[test]
fn watch_picks_up_new_service_tags_and_keeps_connections() {
    let topology = Topology::new(&[
        ("vm", &["10.70.1.4"], None),
        // 13.69.41.0/28 is Storage.WestEurope from change 376 on; 13.95.240.32/28 until then.
        ("storage-new", &["13.69.41.5"], None),
        ("storage-old", &["13.95.240.40"], None),
    ]);
    let site = Site::start(vec![
        (
            "/375.json",
            200,
            "application/json",
            std::fs::read(shipped_tag_file(375)).expect("file"),
        ),
        (
            "/376.json",
            200,
            "application/json",
            std::fs::read(shipped_tag_file(376)).expect("file"),
        ),
    ]);
    let store = topology.dir.path().join("store");
    let user_data = topology.dir.path().join("xdg");
    let update = |week: &str, cache: &[&str]| {
        let url = format!("{}/{week}.json", site.url);
        let mut args = vec!["tags", "update", "--from-url", &url];
        args.extend_from_slice(cache);
        let out = opennsg_with(&[("XDG_DATA_HOME", &user_data)], &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    update("375", &["--data", store.to_str().expect("utf-8")]);
    update("375", &[]);
    let served = topology.serve(18081);
    served.put_environment(&load("service-tags.json"));
    let _enforcer = served.watch(
        &["--bind", "st-nic=vm", "--tags-interval", "0.5"],
        &[("XDG_DATA_HOME", &user_data)],
    );
    assert!(
        eventually(Duration::from_secs(20), || !topology.tcp(
            "vm",
            "storage-new",
            443
        )),
        "change 375 is enforced: 13.69.41.5 is Internet (Deny-Internet-All)"
    );
    assert!(
        topology.tcp("vm", "storage-old", 443),
        "Allow-Storage-WE under change 375"
    );
    let mut kept = topology
        .tcp_to_running("vm", "storage-old", 443)
        .expect("a connection under change 375");

    update("376", &[]);
    assert!(
        eventually(Duration::from_secs(20), || topology.tcp(
            "vm",
            "storage-new",
            443
        )),
        "change 376 reached the kernel without a restart"
    );
    assert!(
        !topology.tcp("vm", "storage-old", 443),
        "new connections meet change 376"
    );
    assert_eq!(
        echo_roundtrip(&mut kept, b"kept\n").expect("still open"),
        b"kept\n",
        "the established connection survived the new tags"
    );
}

/// `enforce --stats` counts, per NSG rule, the packets the rule decided: the first packet of
/// each allowed connection and every denied packet (the rest of a connection passes as
/// established and meets no rule).
#[test]
fn stats_count_the_packets_each_rule_decided() {
    let topology = seed_topology(Attachment::Routed);
    let env = fixture("seed-vms-http.json");
    let env = env.to_str().expect("utf-8 path");
    topology.opennsg(&["enforce", env, "--bind-by-mac"]);
    for _ in 0..2 {
        assert!(topology.tcp("inet", "vm2", 80), "internet → vm2:80");
    }
    for _ in 0..3 {
        assert!(!topology.udp("inet", "vm2", 5000).0, "udp internet → vm2");
    }
    let output = topology.run(&["enforce", env, "--bind-by-mac", "--stats", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stats: Value = serde_json::from_slice(&output.stdout).expect("--stats --json is JSON");
    let hits = |nsg: &str, rule: &str| -> (u64, u64) {
        let row = stats["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|r| r["networkSecurityGroup"] == nsg && r["rule"] == rule)
            .unwrap_or_else(|| panic!("{nsg}/{rule} in {stats:#}"));
        (
            row["packets"].as_u64().expect("packets"),
            row["bytes"].as_u64().expect("bytes"),
        )
    };
    // Two SYNs (IPv4 20 + TCP header with options; at least 40 bytes each).
    let (packets, bytes) = hits("NSG1", "securityRules/Allow-HTTP-Internet");
    assert_eq!(packets, 2, "{stats:#}");
    assert!(bytes >= 2 * 40, "{bytes}");
    // Three datagrams of the same size.
    let (packets, bytes) = hits("NSG1", "defaultSecurityRules/DenyAllInBound");
    assert_eq!(packets, 3, "{stats:#}");
    assert!(bytes >= 3 * 28 && bytes % 3 == 0, "{bytes}");
    // Rules no traffic met are listed with zero.
    assert_eq!(hits("NSG2", "securityRules/Deny-HTTP-Out"), (0, 0));
    // Nothing was changed: the table is as rendered.
    let check = topology.run(&["enforce", env, "--bind-by-mac", "--check"]);
    assert!(check.status.success(), "{}", text(&check.stdout));

    // With a hit history (as `--watch --hits-file` keeps it) covering two hours: rules whose
    // last hit is older than the window, and rules the history never saw, are unused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let dir = tempfile::tempdir().expect("temporary directory");
    let history = dir.path().join("hits.json");
    let rule = |nsg: &str, rule: &str, last_hit: Option<u64>| {
        serde_json::json!({"networkSecurityGroup": nsg, "rule": rule, "priority": 0,
            "access": "Allow", "packets": 1, "bytes": 60, "lastHit": last_hit})
    };
    let rules: Vec<Value> = stats["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter(|r| r["rule"] != "securityRules/Deny-HTTP-Out")
        .map(|r| {
            let recent = r["rule"] == "securityRules/Allow-HTTP-Internet";
            rule(
                r["networkSecurityGroup"].as_str().expect("nsg"),
                r["rule"].as_str().expect("rule"),
                Some(if recent { now - 600 } else { now - 3 * 3600 }),
            )
        })
        .collect();
    std::fs::write(
        &history,
        serde_json::json!({"since": now - 2 * 3600, "rules": rules}).to_string(),
    )
    .expect("history");
    let history = history.to_str().expect("utf-8");
    let unused = |hours: &str| {
        topology.run(&[
            "enforce",
            env,
            "--bind-by-mac",
            "--stats",
            "--json",
            "--hits-file",
            history,
            "--unused-for",
            hours,
        ])
    };
    let output = unused("1");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names: Vec<&str> = listed["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["rule"].as_str().expect("rule"))
        .collect();
    assert!(
        !names.contains(&"securityRules/Allow-HTTP-Internet"),
        "{names:?}"
    );
    assert!(
        names.contains(&"securityRules/Deny-HTTP-Out"),
        "never seen: {names:?}"
    );
    assert!(
        names.contains(&"defaultSecurityRules/DenyAllInBound"),
        "{names:?}"
    );
    // Three hours are more than the history knows.
    let output = unused("3");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("covers only 2.0 hours"),
        "{}",
        text(&output.stderr)
    );
}
