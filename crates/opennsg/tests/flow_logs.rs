//! Flow logs of real traffic (root): `opennsg enforce --flow-logs DIR` in the router namespace
//! of a lab, real TCP, UDP and ICMP through it, and the blobs it writes checked strictly and
//! tuple by tuple.

mod support;

use nsg_netlab::{echo_roundtrip, EchoServer};
use nsg_policy::flow_log::{check_v2_document, check_v4_document};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::*;

const NIC: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces/vm2-nic";

/// The `storageId` of storage account `account`.
fn storage_id(account: &str) -> String {
    format!("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/{account}")
}

/// (rule, tuple fields) of every tuple of VNet flow log `name` under `dir`, each file (of
/// either format) checked.
fn vnet_tuples(dir: &Path, name: &str) -> Vec<(String, Vec<String>)> {
    let mut tuples = Vec::new();
    let of_log = format!("/FLOWLOGS/{}/", name.to_uppercase());
    for blob in hourly_blobs(dir) {
        let document: Value =
            serde_json::from_slice(&std::fs::read(&blob).expect("read blob")).expect("JSON");
        let name = blob.to_string_lossy();
        if name.contains("insights-logs-flowlogflowevent") {
            assert_eq!(check_v4_document(&document), Ok(()), "{name}");
            if !name.contains(&of_log) {
                continue;
            }
            for record in document["records"].as_array().expect("records") {
                for acl in record["flowRecords"]["flows"].as_array().expect("flows") {
                    for group in acl["flowGroups"].as_array().expect("groups") {
                        for tuple in group["flowTuples"].as_array().expect("tuples") {
                            let fields = tuple.as_str().expect("tuple").split(',');
                            tuples.push((
                                group["rule"].as_str().expect("rule").to_string(),
                                fields.map(str::to_string).collect(),
                            ));
                        }
                    }
                }
            }
        } else {
            assert!(
                name.contains("insights-logs-networksecuritygroupflowevent"),
                "{name}"
            );
            assert_eq!(check_v2_document(&document), Ok(()), "{name}");
        }
    }
    tuples
}

#[test]
fn enforce_logs_the_flows_it_filters() {
    let topology = vm2_and_the_internet(Attachment::Routed);
    let dir = tempfile::tempdir().expect("temporary directory");
    let logs = dir.path().join("logs");
    let mut env = load("seed-vms-http.json");
    // A flow log of the whole VNet, and one of vm2's NIC that keeps only TCP's begin and end.
    for (name, target, extra) in [
        ("vnet1-log", SEED_VNET, json!({})),
        (
            "vm2-tcp-log",
            NIC,
            json!({"enabledFilteringCriteria": "Protocol=TCP", "recordTypes": "B,E"}),
        ),
    ] {
        env.as_array_mut()
            .expect("documents")
            .push(flow_log_document(name, target, "flowlogs1", extra));
    }
    topology.short_conntrack_timeouts();
    let env_file = dir.path().join("env.json");
    std::fs::write(&env_file, env.to_string()).expect("write environment");
    let _enforcer = topology.enforce_with_flow_logs(&env_file, &logs, &["--bind", "vm2-nic=vm2"]);
    assert!(
        eventually(Duration::from_secs(20), || !topology.tcp("inet", "vm2", 22)),
        "the policy was enforced"
    );
    // An allowed connection with data both ways, open past two reporting intervals.
    let vm2 = topology.host("vm2");
    let _http = EchoServer::start(&vm2.ns, SocketAddr::new(vm2.address, 80)).expect("echo");
    let mut connection = topology
        .tcp_to_running("inet", "vm2", 80)
        .expect("HTTP is allowed");
    let payload = vec![b'x'; 3000];
    assert_eq!(
        echo_roundtrip(&mut connection, &payload).expect("echo"),
        payload
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        echo_roundtrip(&mut connection, b"more").expect("echo"),
        b"more"
    );
    let client_port = connection.local_addr().expect("local address").port();
    drop(connection);
    // A denied datagram; a ping out of vm2 (allowed by AllowInternetOutBound).
    assert!(!topology.udp("inet", "vm2", 5000).0, "UDP is denied");
    assert!(topology.ping("vm2", "inet"), "vm2 pings out");

    // The TCP flow: B, at least one C, then E once conntrack reaps the closed connection.
    let http_tuples = |tuples: &[(String, Vec<String>)]| -> Vec<Vec<String>> {
        tuples
            .iter()
            .filter(|(rule, t)| {
                rule == "UserRule_Allow-HTTP-Internet" && t[3] == client_port.to_string()
            })
            .map(|(_, t)| t.clone())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(60), || {
            http_tuples(&vnet_tuples(&logs, "vnet1-log"))
                .iter()
                .any(|t| t[7] == "E")
        }),
        "the connection's end was logged: {:#?}",
        vnet_tuples(&logs, "vnet1-log")
    );
    let tuples = vnet_tuples(&logs, "vnet1-log");
    let http = http_tuples(&tuples);
    let states: Vec<&str> = http.iter().map(|t| t[7].as_str()).collect();
    assert_eq!(states.first(), Some(&"B"), "{http:#?}");
    assert_eq!(states.last(), Some(&"E"), "{http:#?}");
    assert!(
        states.contains(&"C"),
        "a C tuple for a connection past the interval: {http:#?}"
    );
    for t in &http {
        assert_eq!(
            (
                t[1].as_str(),
                t[2].as_str(),
                t[4].as_str(),
                t[5].as_str(),
                t[6].as_str(),
                t[8].as_str()
            ),
            ("203.0.113.10", "10.0.1.5", "80", "6", "I", "NX"),
            "{t:?}"
        );
    }
    // Counters: conntrack's whole IP packets. Summed over C and E they hold the payload each
    // way plus at most 80 bytes of IP and TCP headers (with options) per packet.
    let sum = |field: usize| -> u64 {
        http.iter()
            .map(|t| t[field].parse::<u64>().expect("counter"))
            .sum()
    };
    let sent_payload = (payload.len() + 4) as u64;
    for (packets, bytes) in [(9, 10), (11, 12)] {
        let (packets, bytes) = (sum(packets), sum(bytes));
        assert!(packets >= 3, "{http:#?}");
        assert!(
            bytes >= sent_payload + 40 * packets && bytes <= sent_payload + 80 * packets,
            "{bytes} bytes in {packets} packets: {:?}",
            http.iter().map(|t| t[7..].join(",")).collect::<Vec<_>>()
        );
    }
    // The denied datagram: one D tuple at vm2 under DenyAllInBound.
    let denied: Vec<_> = tuples
        .iter()
        .filter(|(rule, t)| rule == "DefaultRule_DenyAllInBound" && t[4] == "5000")
        .collect();
    assert_eq!(denied.len(), 1, "{tuples:#?}");
    assert_eq!(&denied[0].1[5..9], ["17", "I", "D", "NX"]);
    // The ping: ICMP (1) outbound from vm2.
    assert!(
        tuples
            .iter()
            .any(|(rule, t)| rule == "DefaultRule_AllowInternetOutBound"
                && t[1] == "10.0.1.5"
                && t[5] == "1"
                && t[6] == "O"),
        "{tuples:#?}"
    );
    // Only vm2's flows: the unbound internet host's own traffic is nobody's.
    assert!(
        tuples
            .iter()
            .all(|(_, t)| t[1] == "10.0.1.5" || t[2] == "10.0.1.5"),
        "{tuples:#?}"
    );
    // The filtered flow log holds only TCP's B and E tuples: the HTTP connection's and the
    // denied probes' none (D is not in its record types).
    let filtered = vnet_tuples(&logs, "vm2-tcp-log");
    assert!(!filtered.is_empty(), "{filtered:#?}");
    assert!(
        filtered
            .iter()
            .all(|(_, t)| t[5] == "6" && (t[7] == "B" || t[7] == "E")),
        "{filtered:#?}"
    );
    assert!(filtered
        .iter()
        .any(|(_, t)| t[3] == client_port.to_string() && t[7] == "E"));
    // The VNet blobs are vm2's MAC's.
    assert!(hourly_blobs(&logs)
        .iter()
        .all(|b| b.to_string_lossy().contains("macAddress=000D3A1923CF")));
}

/// `enforce --watch --flow-logs` learns from the server which targets log: a flow log PUT
/// through the REST API starts VNet flow logs of its target without a restart.
#[test]
fn watch_logs_the_flows_of_the_servers_flow_logs() {
    const PORT: u16 = 18090;
    let topology = vm2_and_the_internet(Attachment::Routed);
    topology.short_conntrack_timeouts();
    let dir = tempfile::tempdir().expect("temporary directory");
    let logs = dir.path().join("logs");
    let served = topology.serve(PORT);
    served.put_environment(&load("seed-vms-http.json"));
    let watcher = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Network/networkWatchers/nw1";
    for (id, body) in [
        (watcher.to_string(), json!({"location": "westeurope"})),
        (
            format!("{watcher}/flowLogs/served-log"),
            json!({"location": "westeurope", "properties": {
                "targetResourceId": SEED_VNET,
                "storageId": storage_id("flowlogs1"),
            }}),
        ),
    ] {
        let response = served.call("PUT", &id, &body.to_string()).expect("PUT");
        assert!(response.status < 300, "PUT {id}: {response:?}");
    }
    let _enforcer = served.watch(
        &[
            "--bind",
            "vm2-nic=vm2",
            "--flow-logs",
            logs.to_str().expect("utf-8"),
            "--flow-log-interval",
            &FLOW_LOG_INTERVAL_SECS.to_string(),
            "--flow-log-flush",
            "1",
        ],
        &[],
    );
    assert!(
        eventually(Duration::from_secs(20), || !topology.tcp("inet", "vm2", 22)),
        "the server's policy was enforced"
    );
    assert!(topology.tcp("inet", "vm2", 80), "HTTP is allowed");
    assert!(
        eventually(Duration::from_secs(30), || {
            vnet_tuples(&logs, "served-log")
                .iter()
                .any(|(rule, t)| rule == "UserRule_Allow-HTTP-Internet" && t[7] == "E")
        }),
        "the served flow log has the connection: {:#?}",
        vnet_tuples(&logs, "served-log")
    );
}

/// VNet flow logs reach Azure Blob Storage at their `storageId`'s account (Azurite in the
/// router namespace, where enforce runs), in Azure's blob names, readable with a storage client.
#[test]
fn vnet_flow_logs_reach_the_storage_account_of_their_storage_id() {
    let topology = vm2_and_the_internet(Attachment::Routed);
    topology.short_conntrack_timeouts();
    let azurite = nsg_netlab::Azurite::start_in(Some(&topology.router));
    let dir = tempfile::tempdir().expect("temporary directory");
    let logs = dir.path().join("logs");
    let mut env = load("seed-vms-http.json");
    env.as_array_mut()
        .expect("documents")
        .push(flow_log_document(
            "stored-log",
            SEED_VNET,
            nsg_netlab::AZURITE_ACCOUNT,
            json!({}),
        ));
    let env_file = dir.path().join("env.json");
    std::fs::write(&env_file, env.to_string()).expect("write environment");
    let endpoint = format!("http://127.0.0.1:{}/{{account}}", azurite.port());
    let _enforcer = topology.enforce_with_flow_logs(
        &env_file,
        &logs,
        &[
            "--bind",
            "vm2-nic=vm2",
            "--flow-log-storage",
            &endpoint,
            "--storage-key",
            nsg_netlab::AZURITE_ACCOUNT_KEY,
        ],
    );
    assert!(
        eventually(Duration::from_secs(20), || !topology.tcp("inet", "vm2", 22)),
        "the policy was enforced"
    );
    assert!(topology.tcp("inet", "vm2", 80), "HTTP is allowed");
    // Read with a storage client from inside the namespace, as the account's reader would.
    let read_blobs = || -> Vec<(String, Value)> {
        topology
            .router
            .run(|| {
                let credential = nsg_flow_store::Credential::AccountKey {
                    account: nsg_netlab::AZURITE_ACCOUNT.into(),
                    key: nsg_netlab::AZURITE_ACCOUNT_KEY.into(),
                };
                let mut store = nsg_flow_store::BlobStore::new(&azurite.endpoint(), credential)
                    .map_err(std::io::Error::other)?;
                let scope = nsg_flow_store::BlobPrefix::parse("insights-logs-flowlogflowevent")
                    .map_err(std::io::Error::other)?;
                let mut blobs = Vec::new();
                for path in store.list(&scope).map_err(std::io::Error::other)? {
                    let name =
                        nsg_flow_store::BlobName::new("insights-logs-flowlogflowevent", &path)
                            .map_err(std::io::Error::other)?;
                    if let Some(content) = store.read(&name).map_err(std::io::Error::other)? {
                        let document =
                            serde_json::from_slice(&content).map_err(std::io::Error::other)?;
                        blobs.push((path, document));
                    }
                }
                Ok(blobs)
            })
            .expect("read the storage account")
    };
    assert!(
        eventually(Duration::from_secs(30), || {
            read_blobs()
                .iter()
                .any(|(_, document)| document.to_string().contains(",80,6,I,E,NX,"))
        }),
        "the connection's end reached the storage account: {:#?}",
        read_blobs()
    );
    let blobs = read_blobs();
    for (path, document) in &blobs {
        assert!(
            path.starts_with("flowLogResourceID=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_WESTEUROPE/FLOWLOGS/STORED-LOG/y="),
            "{path}"
        );
        assert!(
            path.ends_with("/macAddress=000D3A1923CF/PT1H.json"),
            "{path}"
        );
        assert_eq!(check_v4_document(document), Ok(()), "{path}");
    }
    // The directory holds the same blobs.
    let on_disk: Vec<String> = blobs
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|path| {
            !logs
                .join("insights-logs-flowlogflowevent")
                .join(path)
                .is_file()
        })
        .collect();
    assert_eq!(
        on_disk,
        Vec::<String>::new(),
        "blobs missing from the directory"
    );
}
