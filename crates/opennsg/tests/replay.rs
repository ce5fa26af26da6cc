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

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opennsg-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
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
        let capture = temp(name);
        let logs = temp(&format!("{name}.flowlogs.json"));
        std::fs::write(&capture, bytes).unwrap();
        let (code, summary, stderr) = replay(&capture, &logs);
        assert_eq!(code, 0, "{stderr}");
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(&logs).unwrap()).unwrap();
        if let Err(errors) = check_v2_document(&document) {
            panic!("{name}: invalid flow logs:\n{}", errors.join("\n"));
        }

        let macs: HashMap<&str, &str> = [
            ("000D3AC5060A", "vm1-nic"),
            ("000D3A1923CF", "vm2-nic"),
            ("000D3A89866F", "vm3-nic"),
            ("000D3A337312", "vm4-nic"),
        ]
        .into();
        let mut begins = Vec::new();
        let mut states = String::new();
        for record in document["records"].as_array().unwrap() {
            let nsg = record["resourceId"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            for rule in record["properties"]["flows"].as_array().unwrap() {
                let label = rule["rule"].as_str().unwrap();
                for by_mac in rule["flows"].as_array().unwrap() {
                    let nic = macs[by_mac["mac"].as_str().unwrap()];
                    for tuple in by_mac["flowTuples"].as_array().unwrap() {
                        let f: Vec<&str> = tuple.as_str().unwrap().split(',').collect();
                        states.push_str(f[8]);
                        if f[8] == "B" {
                            begins.push((
                                nsg.clone(),
                                label.to_string(),
                                nic,
                                f.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                            ));
                        }
                    }
                }
            }
        }
        // Every flow the NSGs saw: the HTTP connections, the two denied attempts, the intra-subnet
        // connection (at VM1 and at VM2), and VM3's DNS query. VM4 has no NSG; pings have no tuple.
        assert_eq!(begins.len(), 7, "{name}: {begins:?}");
        assert!(
            states.contains('C') && states.contains('E'),
            "{name}: states {states}"
        );
        for (nsg, label, nic, f) in &begins {
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
        let by_rule = summary["byRule"].as_array().unwrap();
        let denied_22 = by_rule
            .iter()
            .find(|e| e[0]["rule"] == "defaultSecurityRules/DenyAllInBound")
            .unwrap();
        assert_eq!(
            (
                denied_22[0]["networkSecurityGroup"].as_str(),
                denied_22[1]["packets"].as_u64()
            ),
            (Some("NSG1"), Some(3))
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
