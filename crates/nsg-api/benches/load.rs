//! `cargo bench -p nsg-api --bench load`: the REST API under load, over real HTTP on loopback.
//!
//! Workload: 1,000 NSGs of 50 rules each, one VNet with a subnet per NSG, 1,000 NICs (NIC `i`
//! in subnet `i` behind NSG `i`, with NSG `i+1` on the NIC), stored in a SQLite store in a
//! temporary directory. Then, per operation, requests from one keep-alive connection, and from
//! four at once: GET of an NSG, PUT of a security rule (a read-modify-write of its NSG, fsynced),
//! and ipFlowVerify. Prints requests/s, p50 and p99 per operation.
//!
//! Service tags: Microsoft's Public file from `../shared/data` when present.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nsg_api::{router, AppState};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const TOKEN: &str = "bench";
const SUB: &str = "/subscriptions/00000000-0000-0000-0000-0000000000be";
const V: &str = "api-version=2025-07-01";
const NSGS: usize = 1000;
const RULES: usize = 50;

fn net(path: &str) -> String {
    format!("{SUB}/resourceGroups/bench/providers/Microsoft.Network/{path}")
}

fn rule(r: usize, port: usize) -> Value {
    json!({"name": format!("r{r}"), "properties": {"protocol": "Tcp", "sourceAddressPrefix": format!("11.{}.{}.0/24", r % 200, port % 250),
        "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": (1000 + port).to_string(),
        "access": if r.is_multiple_of(3) { "Deny" } else { "Allow" }, "priority": 100 + r, "direction": if r.is_multiple_of(2) { "Inbound" } else { "Outbound" }}})
}

async fn populate(app: &axum::Router) {
    let put = |uri: String, body: Value| {
        let app = app.clone();
        async move {
            let request = Request::builder()
                .method("PUT")
                .uri(format!("{uri}?{V}"))
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::from(body.to_string()))
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert!(
                status.is_success(),
                "{uri}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
    };
    for i in 0..NSGS {
        let rules: Vec<Value> = (0..RULES).map(|r| rule(r, i)).collect();
        put(
            net(&format!("networkSecurityGroups/nsg-{i}")),
            json!({"location": "westeurope", "properties": {"securityRules": rules}}),
        )
        .await;
    }
    let subnets: Vec<Value> = (0..NSGS)
        .map(|i| {
            json!({"name": format!("subnet-{i}"), "properties": {"addressPrefix": format!("10.{}.{}.0/24", i / 256, i % 256),
                "networkSecurityGroup": {"id": net(&format!("networkSecurityGroups/nsg-{i}"))}}})
        })
        .collect();
    put(net("virtualNetworks/vnet"), json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/8"]}, "subnets": subnets}})).await;
    for i in 0..NSGS {
        put(
            net(&format!("networkInterfaces/nic-{i}")),
            json!({"location": "westeurope", "properties": {
                "networkSecurityGroup": {"id": net(&format!("networkSecurityGroups/nsg-{}", (i + 1) % NSGS))},
                "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": net(&format!("virtualNetworks/vnet/subnets/subnet-{i}"))}}}]}}),
        )
        .await;
    }
    put(
        format!("{SUB}/resourceGroups/nw/providers/Microsoft.Network/networkWatchers/watcher"),
        json!({"location": "westeurope"}),
    )
    .await;
}

/// One operation's request: method, path, body.
type Operation = Box<dyn Fn(usize) -> (&'static str, String, Option<Value>) + Send + Sync>;

fn operations() -> Vec<(&'static str, Operation)> {
    vec![
        (
            "GET NSG",
            Box::new(|i| {
                (
                    "GET",
                    net(&format!("networkSecurityGroups/nsg-{}", i % NSGS)),
                    None,
                )
            }),
        ),
        (
            "PUT rule",
            Box::new(|i| {
                (
                    "PUT",
                    net(&format!(
                        "networkSecurityGroups/nsg-{}/securityRules/r{}",
                        (i * 7) % NSGS,
                        i % RULES
                    )),
                    Some(rule(i % RULES, i)),
                )
            }),
        ),
        (
            "ipFlowVerify",
            Box::new(|i| {
                let nic = i % 50;
                (
                    "POST",
                    format!("{SUB}/resourceGroups/nw/providers/Microsoft.Network/networkWatchers/watcher/ipFlowVerify"),
                    Some(json!({"targetResourceId": net(&format!("networkInterfaces/nic-{nic}")), "direction": if i.is_multiple_of(2) { "Inbound" } else { "Outbound" },
                        "protocol": "TCP", "localIPAddress": format!("10.{}.{}.4", nic / 256, nic % 256), "localPort": (1000 + i % 300).to_string(),
                        "remoteIPAddress": format!("11.{}.{}.9", i % 200, i % 250), "remotePort": "50000"})),
                )
            }),
        ),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let tags = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/service-tags/ServiceTags_Public_20251028.json");
        let mut catalog = nsg_tags::Catalog::new();
        if let Ok(bytes) = std::fs::read(&tags) {
            catalog.load_json(&bytes).unwrap();
        }
        let state = Arc::new(AppState::new(nsg_store::Store::open(dir.path()).unwrap(), Arc::new(catalog), vec![TOKEN.into()]));
        let app = router(state);
        let started = Instant::now();
        populate(&app).await;
        println!(
            "workload: {NSGS} NSGs x {RULES} rules, 1 VNet with {NSGS} subnets, {NSGS} NICs, stored in {:.1} s (SQLite, WAL, synchronous=FULL)",
            started.elapsed().as_secs_f64()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        for (name, operation) in operations() {
            let operation = Arc::new(operation);
            for clients in [1usize, 4] {
                let per_client = 500;
                let wall = Instant::now();
                let tasks: Vec<_> = (0..clients)
                    .map(|c| {
                        let (client, operation) = (client.clone(), operation.clone());
                        tokio::spawn(async move {
                            let mut latencies = Vec::with_capacity(per_client);
                            for k in 0..per_client {
                                let (method, path, body) = operation(c * per_client + k);
                                let request = hyper::Request::builder()
                                    .method(method)
                                    .uri(format!("http://{address}{path}?{V}"))
                                    .header("authorization", format!("Bearer {TOKEN}"))
                                    .header("content-type", "application/json")
                                    .body(Full::new(bytes::Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
                                    .unwrap();
                                let t = Instant::now();
                                let response = client.request(request).await.unwrap();
                                let status = response.status();
                                let body = response.into_body().collect().await.unwrap().to_bytes();
                                latencies.push(t.elapsed());
                                assert!(status == StatusCode::OK || status == StatusCode::CREATED, "{name}: {status} {}", String::from_utf8_lossy(&body));
                            }
                            latencies
                        })
                    })
                    .collect();
                let mut latencies = Vec::new();
                for task in tasks {
                    latencies.extend(task.await.unwrap());
                }
                let elapsed = wall.elapsed();
                latencies.sort();
                println!(
                    "{name:<13} {clients} client(s): {:>7.0} requests/s, p50 {:>7.3} ms, p99 {:>7.3} ms ({} requests)",
                    latencies.len() as f64 / elapsed.as_secs_f64(),
                    percentile(&latencies, 0.5).as_secs_f64() * 1e3,
                    percentile(&latencies, 0.99).as_secs_f64() * 1e3,
                    latencies.len()
                );
            }
        }
    });
}
