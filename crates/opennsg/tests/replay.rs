//! `opennsg replay` end to end: a capture built with a packet library (real Ethernet/IP/TCP/UDP
//! frames in a pcap file) through the seed's VM1–VM4 environment. The flow logs must be valid
//! version 2 documents, and every flow in them must agree with `opennsg verify`. And a real
//! capture: `tcpdump -i any` on the router of a network lab (needs root and tcpdump).

mod support;

use assert_cmd::Command;
use nsg_capture::{
    read_capture, write_pcap, write_pcap_recorded, write_pcapng, CapturePoint, Link, LinkDirection,
    RecordedPacket,
};
use nsg_policy::flow_log::check_v2_document;
use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::tcpdump::Tcpdump;
use support::{seed_topology, Attachment, DENIED_AFTER};

const VM1: &str = "10.0.1.4";
const VM2: &str = "10.0.1.5";
const VM3: &str = "10.0.2.4";
const VM4: &str = "10.0.3.4";
const INTERNET: &str = "203.0.113.10";
const T0: u64 = 1_700_000_000;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/seed-vms-http.json")
}

fn flags(syn: bool, ack: bool, fin: bool, rst: bool) -> TcpFlags {
    TcpFlags { syn, ack, fin, rst }
}

fn packet(
    at: u64,
    protocol: u8,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    tcp: Option<TcpFlags>,
) -> PacketMeta {
    let ports = protocol == 6 || protocol == 17;
    PacketMeta {
        time: Time::from_secs(at),
        protocol,
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        src_port: ports.then_some(sport),
        dst_port: ports.then_some(dport),
        tcp_flags: tcp,
        icmp: None,
        length: 100,
    }
}

/// A TCP connection: handshake, `data` segments each way, then FIN from both sides.
fn connection(
    at: u64,
    client: &str,
    cport: u16,
    server: &str,
    sport: u16,
    data: usize,
) -> Vec<PacketMeta> {
    let mut p = vec![
        packet(
            at,
            6,
            client,
            cport,
            server,
            sport,
            Some(flags(true, false, false, false)),
        ),
        packet(
            at,
            6,
            server,
            sport,
            client,
            cport,
            Some(flags(true, true, false, false)),
        ),
        packet(
            at,
            6,
            client,
            cport,
            server,
            sport,
            Some(flags(false, true, false, false)),
        ),
    ];
    for i in 0..data {
        let t = at + 1 + i as u64;
        p.push(packet(
            t,
            6,
            client,
            cport,
            server,
            sport,
            Some(flags(false, true, false, false)),
        ));
        p.push(packet(
            t,
            6,
            server,
            sport,
            client,
            cport,
            Some(flags(false, true, false, false)),
        ));
    }
    let end = at + 2 + data as u64;
    p.push(packet(
        end,
        6,
        client,
        cport,
        server,
        sport,
        Some(flags(false, true, true, false)),
    ));
    p.push(packet(
        end,
        6,
        server,
        sport,
        client,
        cport,
        Some(flags(false, true, true, false)),
    ));
    p
}

/// The seed's traffic: what the VM1–VM4 picture allows and denies.
fn traffic() -> Vec<PacketMeta> {
    let mut packets = Vec::new();
    // Internet → VM1:80 — allowed by NSG1 then NSG2; a long one, to see a C tuple.
    packets.extend(connection(T0, INTERNET, 50000, VM1, 80, 3));
    // Internet → VM1:22 — denied by NSG1's DenyAllInBound (three SYN retries).
    for retry in 0..3 {
        packets.push(packet(
            T0 + 5 + retry,
            6,
            INTERNET,
            50001,
            VM1,
            22,
            Some(flags(true, false, false, false)),
        ));
    }
    // VM1 → Internet:80 — denied by NSG2's Deny-HTTP-Out.
    packets.push(packet(
        T0 + 6,
        6,
        VM1,
        40000,
        INTERNET,
        80,
        Some(flags(true, false, false, false)),
    ));
    // VM1 → VM2:443 inside Subnet1 — outbound at VM1, inbound at VM2.
    packets.extend(connection(T0 + 7, VM1, 40001, VM2, 443, 1));
    // VM3 → Internet DNS over UDP, and the answer.
    packets.push(packet(T0 + 8, 17, VM3, 53000, "8.8.8.8", 53, None));
    packets.push(packet(T0 + 8, 17, "8.8.8.8", 53, VM3, 53000, None));
    // VM4 has no NSG: allowed, logged by no one.
    packets.extend(connection(T0 + 9, VM4, 40002, INTERNET, 443, 1));
    // A ping from VM2 and its reply: allowed, not representable in a version 2 tuple.
    let mut ping = packet(T0 + 10, 1, VM2, 0, INTERNET, 0, None);
    ping.icmp = Some(IcmpKind::EchoRequest { id: 9 });
    let mut pong = packet(T0 + 10, 1, INTERNET, 0, VM2, 0, None);
    pong.icmp = Some(IcmpKind::EchoReply { id: 9 });
    packets.extend([ping, pong]);
    // The long HTTP connection goes on past five minutes.
    packets.push(packet(
        T0 + 400,
        6,
        INTERNET,
        50003,
        VM1,
        80,
        Some(flags(true, false, false, false)),
    ));
    packets.push(packet(
        T0 + 401,
        6,
        VM1,
        80,
        INTERNET,
        50003,
        Some(flags(true, true, false, false)),
    ));
    packets.push(packet(
        T0 + 600,
        6,
        VM1,
        80,
        INTERNET,
        50003,
        Some(flags(false, true, false, false)),
    ));
    packets.push(packet(
        T0 + 720,
        6,
        INTERNET,
        50003,
        VM1,
        80,
        Some(flags(false, true, false, false)),
    ));
    packets.sort_by_key(|p| p.time);
    packets
}

/// One flow tuple of a flow log document, with the NSG, the rule label and the NIC it is under.
#[derive(Debug)]
struct Tuple {
    nsg: String,
    label: String,
    nic: &'static str,
    /// The tuple's comma-separated fields.
    fields: Vec<String>,
}

fn tuples(document: &Value) -> Vec<Tuple> {
    let macs: HashMap<&str, &'static str> = [
        ("000D3AC5060A", "vm1-nic"),
        ("000D3A1923CF", "vm2-nic"),
        ("000D3A89866F", "vm3-nic"),
        ("000D3A337312", "vm4-nic"),
    ]
    .into();
    let mut tuples = Vec::new();
    for record in document["records"].as_array().unwrap() {
        let nsg = record["resourceId"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        for rule in record["properties"]["flows"].as_array().unwrap() {
            for by_mac in rule["flows"].as_array().unwrap() {
                for tuple in by_mac["flowTuples"].as_array().unwrap() {
                    tuples.push(Tuple {
                        nsg: nsg.to_string(),
                        label: rule["rule"].as_str().unwrap().to_string(),
                        nic: macs[by_mac["mac"].as_str().unwrap()],
                        fields: tuple
                            .as_str()
                            .unwrap()
                            .split(',')
                            .map(String::from)
                            .collect(),
                    });
                }
            }
        }
    }
    tuples
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opennsg-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Replays `bytes` (a capture file's content) and returns the summary and the flow logs.
fn replay_bytes(name: &str, bytes: &[u8]) -> (Value, Value) {
    let capture = temp(name);
    let logs = temp(&format!("{name}.flowlogs.json"));
    std::fs::write(&capture, bytes).unwrap();
    let (code, summary, stderr) = replay(&capture, &logs);
    assert_eq!(code, 0, "{name}: {stderr}");
    let document = serde_json::from_str(&std::fs::read_to_string(&logs).unwrap()).unwrap();
    (summary, document)
}

/// A summary's line for `rule` (`securityRules/NAME`, …) of `nsg`: (flows, packets).
fn by_rule(summary: &Value, nsg: &str, rule: &str) -> Option<(u64, u64)> {
    summary["byRule"].as_array()?.iter().find_map(|entry| {
        (entry[0]["networkSecurityGroup"] == nsg && entry[0]["rule"] == rule).then(|| {
            (
                entry[1]["flows"].as_u64().unwrap_or(0),
                entry[1]["packets"].as_u64().unwrap_or(0),
            )
        })
    })
}

fn replay(capture: &Path, logs: &Path) -> (i32, Value, String) {
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .arg("replay")
        .arg(fixture())
        .arg("--pcap")
        .arg(capture)
        .arg("--flow-logs")
        .arg(logs)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), summary, stderr)
}

/// Asks `opennsg verify --json` about one flow; returns (access, ruleName).
fn verify(
    nic: &str,
    direction: &str,
    protocol: &str,
    local: &str,
    remote: &str,
) -> (String, String) {
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .arg("verify")
        .arg(fixture())
        .args([
            "--nic",
            nic,
            "--direction",
            direction,
            "--protocol",
            protocol,
            "--local",
            local,
            "--remote",
            remote,
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["access"].as_str().unwrap().to_string(),
        v["ruleName"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn flow_logs_are_valid_version_2_and_agree_with_verify_for_every_flow() {
    for (name, bytes) in [
        ("seed.pcap", write_pcap(&traffic(), Link::Ethernet)),
        ("seed.pcapng", write_pcapng(&traffic())),
    ] {
        let (summary, document) = replay_bytes(name, &bytes);
        if let Err(errors) = check_v2_document(&document) {
            panic!("{name}: invalid flow logs:\n{}", errors.join("\n"));
        }

        let tuples = tuples(&document);
        let states: String = tuples.iter().map(|t| t.fields[8].as_str()).collect();
        let begins: Vec<&Tuple> = tuples.iter().filter(|t| t.fields[8] == "B").collect();
        // Every flow the NSGs saw: the HTTP connections, the two denied attempts, the intra-subnet
        // connection (at VM1 and at VM2), and VM3's DNS query. VM4 has no NSG; pings have no tuple.
        assert_eq!(begins.len(), 7, "{name}: {begins:?}");
        assert!(
            states.contains('C') && states.contains('E'),
            "{name}: states {states}"
        );
        for Tuple {
            nsg,
            label,
            nic,
            fields: f,
        } in begins
        {
            let (src, dst, sport, dport, protocol, direction, decision) =
                (&f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7]);
            let (direction, local, remote) = if direction == "I" {
                (
                    "inbound",
                    format!("{dst}:{dport}"),
                    format!("{src}:{sport}"),
                )
            } else {
                (
                    "outbound",
                    format!("{src}:{sport}"),
                    format!("{dst}:{dport}"),
                )
            };
            let protocol = if protocol == "T" { "tcp" } else { "udp" };
            let (access, rule_name) = verify(nic, direction, protocol, &local, &remote);
            let expected_label = match rule_name.split_once('/') {
                Some(("securityRules", rule)) => format!("UserRule_{rule}"),
                Some(("defaultSecurityRules", rule)) => format!("DefaultRule_{rule}"),
                _ => panic!("{name}: verify names no NSG rule for a logged flow: {rule_name:?}"),
            };
            assert_eq!(
                (access.chars().next().unwrap().to_string(), expected_label),
                (decision.clone(), label.clone()),
                "{name}: {f:?} at {nic}"
            );
            assert!(["NSG1", "NSG2"].contains(&nsg.as_str()), "{nsg}");
        }

        assert_eq!(summary["packets"], traffic().len());
        assert_eq!(
            summary["packetsDenied"], 4,
            "three SYNs to 22 and one to the internet on 80"
        );
        assert_eq!(summary["packetsUnmapped"], 0);
        assert_eq!(
            by_rule(&summary, "NSG1", "defaultSecurityRules/DenyAllInBound"),
            Some((1, 3)),
            "three attempts of one denied flow"
        );
        assert!(
            summary["flowLogEventsSkipped"].as_u64().unwrap() >= 1,
            "the ping"
        );
    }
}

#[test]
fn a_truncated_capture_names_the_packet() {
    let bytes = write_pcap(&traffic(), Link::RawIp);
    let capture = temp("truncated.pcap");
    // Cut the file in the middle of the fourth packet's record.
    let header = 24;
    let record = |i: usize| 16 + traffic()[i].length as usize;
    let cut = header + record(0) + record(1) + record(2) + 10;
    std::fs::write(&capture, &bytes[..cut]).unwrap();
    let (code, _, stderr) = replay(&capture, &temp("truncated.json"));
    assert_eq!(code, 2);
    assert!(stderr.contains("packet 4"), "{stderr}");

    std::fs::write(&capture, b"not a capture at all").unwrap();
    let (code, _, stderr) = replay(&capture, &temp("garbage.json"));
    assert_eq!(code, 2);
    assert!(stderr.contains("not a pcap or pcapng capture"), "{stderr}");
}

/// Issue 12: after a denied SYN, the server's SYN-ACK was logged as a new allowed outbound flow.
#[test]
fn a_syn_ack_without_a_flow_is_not_logged_as_a_new_flow() {
    let from_vm1 = |at, flags| packet(at, 6, VM1, 22, INTERNET, 50001, Some(flags));
    let packets = [
        packet(
            T0,
            6,
            INTERNET,
            50001,
            VM1,
            22,
            Some(flags(true, false, false, false)),
        ),
        // The server's SYN-ACK, then its RST.
        from_vm1(T0, flags(true, true, false, false)),
        from_vm1(T0 + 1, flags(false, true, false, true)),
    ];
    let (summary, document) = replay_bytes("syn-ack.pcap", &write_pcap(&packets, Link::Ethernet));
    assert_eq!(
        (
            &summary["packetsDenied"],
            &summary["packetsWithoutFlow"],
            &summary["packetsAllowed"]
        ),
        (&Value::from(1), &Value::from(2), &Value::from(0)),
        "{summary}"
    );
    let tuples = tuples(&document);
    let decisions: Vec<(&str, &str)> = tuples
        .iter()
        .map(|t| (t.label.as_str(), t.fields[7].as_str()))
        .collect();
    assert_eq!(decisions, [("DefaultRule_DenyAllInBound", "D")]);
}

/// Issue 12: the retransmitted SYNs of one denied connection counted as separate flows; Azure
/// logs one flow, and its attempts once a minute.
#[test]
fn retransmitted_syns_of_a_denied_connection_are_one_flow() {
    let minute = T0 - T0 % 60;
    let attempts: Vec<PacketMeta> = [0, 1, 3, 7, 15, 31, 63]
        .iter()
        .map(|after| {
            packet(
                minute + after,
                6,
                INTERNET,
                50001,
                VM1,
                22,
                Some(flags(true, false, false, false)),
            )
        })
        .collect();
    let (summary, document) =
        replay_bytes("retransmitted.pcap", &write_pcap(&attempts, Link::Ethernet));
    assert_eq!(
        by_rule(&summary, "NSG1", "defaultSecurityRules/DenyAllInBound"),
        Some((1, 7))
    );
    let times: Vec<u64> = tuples(&document)
        .iter()
        .map(|t| t.fields[0].parse::<u64>().unwrap() - minute)
        .collect();
    assert_eq!(times, [0, 63], "one tuple in each minute with attempts");
}

/// Each packet as `tcpdump -i any` on a router records it: arriving on one interface, then
/// leaving by another with its TTL one less.
fn recorded_twice(packets: &[PacketMeta]) -> Vec<RecordedPacket> {
    let point = |if_index, direction| CapturePoint {
        interface: 0,
        if_index: Some(if_index),
        direction: Some(direction),
    };
    packets
        .iter()
        .flat_map(|meta| {
            let leaving = PacketMeta {
                time: Time(meta.time.micros() + 40),
                ..*meta
            };
            [
                RecordedPacket {
                    meta: *meta,
                    point: point(2, LinkDirection::Incoming),
                    hop_limit: 64,
                },
                RecordedPacket {
                    meta: leaving,
                    point: point(3, LinkDirection::Outgoing),
                    hop_limit: 63,
                },
            ]
        })
        .collect()
}

/// A summary without its count of copies, to compare captures with and without them.
fn without_copies(mut summary: Value) -> Value {
    summary
        .as_object_mut()
        .and_then(|fields| fields.remove("packetCopies"));
    summary
}

/// Issue 12: a capture taken with `tcpdump -i any` counted forwarded packets twice.
#[test]
fn tcpdump_any_duplicates_count_once() {
    let (single, single_logs) =
        replay_bytes("single.pcap", &write_pcap(&traffic(), Link::Ethernet));
    for link in [Link::LinuxSll2, Link::LinuxSll] {
        let bytes = write_pcap_recorded(&recorded_twice(&traffic()), link);
        let (doubled, doubled_logs) = replay_bytes(&format!("doubled-{link:?}.pcap"), &bytes);
        assert_eq!(doubled["packetCopies"], traffic().len(), "{link:?}");
        assert_eq!(
            without_copies(doubled),
            without_copies(single.clone()),
            "{link:?}"
        );
        assert_eq!(doubled_logs, single_logs, "{link:?}");
    }
}

/// Runs the traffic of [`a_real_tcpdump_any_capture_on_a_router_replays_each_packet_once`]
/// under `tcpdump -i any` in the router of a lab (no enforcement: the captures see everything),
/// one capture per cooked version in `link_types`, and replays each. Checks every replay against
/// the same capture less its copies, as tcpdump's own filter picks them (`oracle`: the packets
/// to keep, in tcpdump's filter language), and returns the summaries.
fn capture_and_replay(lab: &support::Topology, link_types: &[&str], oracle: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    // IPv4 only and no multicast, so that the router's own neighbour discovery and IGMP stay
    // out: its filter could not tell them from copies.
    let captures: Vec<Tcpdump> = link_types
        .iter()
        .map(|link_type| {
            let file = dir.path().join(format!("{link_type}.pcap"));
            Tcpdump::start(&lab.router, link_type, file)
        })
        .collect();

    for _ in 0..3 {
        assert!(lab.tcp("inet", "vm1", 80), "HTTP to VM1");
    }
    assert!(lab.tcp("vm2", "vm3", 443), "VM2 to VM3");
    assert_eq!(lab.udp("vm4", "inet", 53), (true, true), "VM4's DNS query");
    assert!(lab.ping("vm3", "inet"), "VM3 pings the internet");
    // Nothing listens on VM1's port 22: the SYN is answered by a RST.
    let (inet, vm1) = (lab.host("inet"), lab.host("vm1"));
    let refused = nsg_netlab::tcp_connect(
        &inet.ns,
        Some(inet.address),
        std::net::SocketAddr::new(vm1.address, 22),
        DENIED_AFTER,
    );
    assert!(refused.is_err(), "nothing listens on VM1:22");
    // The echo servers' connections close; then the captures stop.
    std::thread::sleep(Duration::from_millis(500));

    let mut summaries = Vec::new();
    for tcpdump in captures {
        let file = tcpdump.file.clone();
        tcpdump.stop();
        let bytes = std::fs::read(&file).unwrap();
        let recorded = read_capture(&bytes).unwrap().packets.len();
        let once_file = file.with_extension("once.pcap");
        let filtered = std::process::Command::new("tcpdump")
            .arg("-r")
            .arg(&file)
            .arg("-w")
            .arg(&once_file)
            .arg(oracle)
            .output()
            .expect("tcpdump runs");
        let stderr = String::from_utf8_lossy(&filtered.stderr);
        assert!(filtered.status.success(), "{stderr}");
        let once = std::fs::read(&once_file).unwrap();

        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (summary, logs) = replay_bytes(&name, &bytes);
        let (expected, expected_logs) = replay_bytes(&format!("{name}.once"), &once);
        let copies = summary["packetCopies"].as_u64().unwrap_or(0);
        assert!(copies > 0, "{name}: {summary}");
        assert_eq!(
            summary["packets"].as_u64().map(|p| p + copies),
            Some(recorded as u64),
            "{name}: {summary}"
        );
        assert_eq!(
            without_copies(summary.clone()),
            without_copies(expected),
            "{name}"
        );
        assert_eq!(logs, expected_logs, "{name}");
        summaries.push(summary);
    }
    summaries
}

/// A real capture: `tcpdump -i any` in the router namespace of a lab while TCP, UDP and ICMP
/// cross it. Routed guests: each forwarded packet is in the capture twice, arriving and leaving.
/// Guests on a bridge: a routed packet is also seen on the bridge device, and a bridged one on
/// two ports. The replay counts each packet once: its summary and flow logs are those of the
/// capture less its copies as tcpdump's filter picks them (incoming copies only; on the bridge,
/// not the bridge device's), both cooked versions replay alike, and the flows are those sent.
/// Version 1 has no interface index, so it is not asked to see through a bridge (D11).
#[test]
fn a_real_tcpdump_any_capture_on_a_router_replays_each_packet_once() {
    for attachment in [Attachment::Routed, Attachment::Bridged] {
        let lab = seed_topology(attachment);
        let summaries = match &lab.bridge {
            None => capture_and_replay(&lab, &["LINUX_SLL2", "LINUX_SLL"], "inbound"),
            Some(bridge) => {
                let link = lab
                    .router
                    .exec("ip", ["-o", "link", "show", "dev", bridge.name()])
                    .expect("ip runs");
                let listing = String::from_utf8_lossy(&link.stdout).into_owned();
                let index = listing.split(':').next().unwrap_or_default().trim();
                assert!(index.parse::<u32>().is_ok(), "{listing}");
                let oracle = format!("inbound and not ifindex {index}");
                capture_and_replay(&lab, &["LINUX_SLL2"], &oracle)
            }
        };
        let summary = &summaries[0];
        for other in &summaries[1..] {
            assert_eq!(
                other, summary,
                "{attachment:?}: both cooked versions replay alike"
            );
        }
        // Routed, every packet has one copy; through the bridge, traffic with the internet host
        // has two (the bridge device's and the port's), bridged traffic one.
        let (packets, copies) = (&summary["packets"], &summary["packetCopies"]);
        match attachment {
            Attachment::Routed => assert_eq!(copies, packets, "{summary}"),
            Attachment::Bridged => assert!(copies.as_u64() > packets.as_u64(), "{summary}"),
        }
        let flows = |nsg, rule| by_rule(summary, nsg, rule).map(|(flows, _)| flows);
        let sent = [
            (("NSG2", "securityRules/Allow-HTTP-Internet"), 3),
            (("NSG1", "defaultSecurityRules/AllowVnetOutBound"), 1),
            (("NSG2", "defaultSecurityRules/AllowVnetInBound"), 1),
            (("NSG2", "defaultSecurityRules/AllowInternetOutBound"), 1),
            (("(none)", "(no NSG at vm4-nic)"), 1),
            (("NSG1", "defaultSecurityRules/DenyAllInBound"), 1),
        ];
        for ((nsg, rule), expected) in sent {
            assert_eq!(
                flows(nsg, rule),
                Some(expected),
                "{attachment:?}: {rule} at {nsg}"
            );
        }
        assert_eq!(
            by_rule(summary, "(none)", "(no NSG at vm4-nic)"),
            Some((1, 2)),
            "{attachment:?}: one datagram and its answer"
        );
        assert_eq!(
            summary["packetsWithoutFlow"], 1,
            "{attachment:?}: VM1's RST: {summary}"
        );
        assert_eq!(summary["packetsUnmapped"], 0, "{attachment:?}: {summary}");
    }
}

/// Every hourly blob under `dir`, with its path.
fn blob_documents(dir: &Path) -> Vec<(String, Value)> {
    support::hourly_blobs(dir)
        .into_iter()
        .map(|path| {
            let document = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            (path.to_string_lossy().into_owned(), document)
        })
        .collect()
}

#[test]
fn the_flow_log_directory_holds_the_same_tuples_in_azures_blob_layout() {
    let capture = temp("layout.pcap");
    std::fs::write(&capture, write_pcap(&traffic(), Link::Ethernet)).unwrap();
    let flow_log = temp("flow-log.json");
    std::fs::write(&flow_log, support::seed_vnet_flow_log().to_string()).unwrap();
    let single = temp("layout.flowlogs.json");
    let dir = temp("layout-blobs");
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .arg("replay")
        .arg(fixture())
        .arg(&flow_log)
        .arg("--pcap")
        .arg(&capture)
        .arg("--flow-logs")
        .arg(&single)
        .arg("--flow-log-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let single: Value = serde_json::from_str(&std::fs::read_to_string(&single).unwrap()).unwrap();
    let count = |document: &Value, groups: &str, inner: &str| -> usize {
        document["records"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.pointer(groups)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|g| g[inner].as_array().cloned().unwrap_or_default())
            .map(|t| t["flowTuples"].as_array().map_or(0, Vec::len))
            .sum()
    };
    let (mut nsg_tuples, mut vnet_tuples) = (0, 0);
    for (path, document) in blob_documents(&dir) {
        if path.contains("/insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/")
        {
            assert_eq!(check_v2_document(&document), Ok(()), "{path}");
            nsg_tuples += count(&document, "/properties/flows", "flows");
        } else {
            assert!(
                path.contains("/insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/"),
                "{path}"
            );
            assert!(path.contains("/FLOWLOGS/VNET1-LOG/y="), "{path}");
            assert_eq!(
                nsg_policy::flow_log::check_v4_document(&document),
                Ok(()),
                "{path}"
            );
            vnet_tuples += count(&document, "/flowRecords/flows", "flowGroups");
        }
        assert!(
            path.contains("/macAddress=") && path.ends_with("/PT1H.json"),
            "{path}"
        );
    }
    // The same tuples as the single document, now per NSG, MAC and hour.
    assert_eq!(nsg_tuples, count(&single, "/properties/flows", "flows"));
    // The VNet flow log covers every NIC of vnet1 with an NSG, ICMP included.
    assert!(vnet_tuples >= nsg_tuples, "{vnet_tuples} < {nsg_tuples}");
}
