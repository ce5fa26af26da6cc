//! `opennsg replay` end to end: a capture built with a packet library (real Ethernet/IP/TCP/UDP
//! frames in a pcap file) through the seed's VM1–VM4 environment. The flow logs must be valid
//! version 2 documents, and every flow in them must agree with `opennsg verify`.

use assert_cmd::Command;
use nsg_capture::{write_pcap, write_pcapng, Link};
use nsg_policy::flow_log::check_v2_document;
use nsg_policy::packet::{IcmpKind, PacketMeta, TcpFlags, Time};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
