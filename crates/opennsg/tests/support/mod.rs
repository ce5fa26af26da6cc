//! What the kernel tests share: a router namespace where OpenNSG enforces, hosts around it,
//! and the `opennsg` binary run inside the router. Each test binary uses part of it.
#![allow(dead_code)]

pub mod tcpdump;

use nsg_netlab::{
    echo_roundtrip, ping, tcp_connect, udp_exchange, Bridge, EchoServer, GuestSide, Lab, Netns,
    RouterSide, UdpEchoServer,
};
use serde_json::Value;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Long enough for any allowed handshake on veth, short enough for many refused ones.
pub const DENIED_AFTER: Duration = Duration::from_millis(600);

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

/// The small Public service tag file the repository ships (Microsoft's schema, real prefixes).
pub fn shipped_service_tags() -> PathBuf {
    shipped_tag_file(375)
}

/// A shipped service tag file: change 375, or 376 (the next "week").
pub fn shipped_tag_file(change: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../../tests/data/service-tags/ServiceTags_Public_{change}.json"
    ))
}

/// Runs `opennsg ARGS` on this host (no namespace) with `envs` set and no token inherited.
pub fn opennsg_with(envs: &[(&str, &Path)], args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_opennsg"));
    command.args(args).env_remove("OPENNSG_TOKEN");
    for (name, value) in envs {
        command.env(name, value);
    }
    command.output().expect("opennsg runs")
}

/// Output bytes as text, for messages and `contains` checks.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test addresses parse")
}

/// A host: its namespace and its address.
pub struct Host {
    pub ns: Netns,
    pub address: IpAddr,
    /// All its addresses, `address` first.
    pub addresses: Vec<IpAddr>,
}

/// A host to build: name, addresses (tests reach it at the first), MAC of its router-side end.
pub type HostSpec<'a> = (&'a str, &'a [&'a str], Option<[u8; 6]>);

/// The router namespace (where OpenNSG enforces) and the hosts around it.
pub struct Topology {
    /// Owns the namespaces: dropping it removes them.
    pub lab: Lab,
    /// The bridge of [`Topology::with_bridge`].
    pub bridge: Option<Bridge>,
    pub router: Netns,
    pub hosts: Vec<(String, Host)>,
    /// Environment files written by the test.
    pub dir: tempfile::TempDir,
    /// Echo servers started by [`Topology::tcp`], kept for the whole test: rebinding a port
    /// just closed can fail with "address in use" on a busy machine.
    echo_servers: std::cell::RefCell<Vec<(String, u16, EchoServer)>>,
}

impl Topology {
    /// Every host routed through the router (Calico's way).
    pub fn new(hosts: &[HostSpec<'_>]) -> Topology {
        Topology::with_bridge(hosts, &[])
    }

    /// The hosts named in `bridged` on one Linux bridge of the router, `br0` with 10.0.0.1/16
    /// and fd00:1::1/48 (libvirt's, Docker's and LXD's way); the others routed. A bridged host's
    /// own interface has the MAC of its spec, and its bridge port the same with first octet
    /// `fe`, as libvirt makes a VM's tap device.
    pub fn with_bridge(hosts: &[HostSpec<'_>], bridged: &[&str]) -> Topology {
        let lab = Lab::new().expect("kernel tests need root and iproute2 (run the tests as root)");
        let router = lab.router("host").expect("router namespace");
        let bridge = (!bridged.is_empty()).then(|| {
            lab.bridge(&router, "br0", &["10.0.0.1/16", "fd00:1::1/48"])
                .expect("bridge")
        });
        let mut topology = Topology {
            lab,
            router,
            bridge,
            hosts: Vec::new(),
            dir: tempfile::tempdir().expect("temporary directory"),
            echo_servers: Default::default(),
        };
        for spec in hosts {
            topology.add_host(spec, bridged.contains(&spec.0));
        }
        topology
    }

    /// Attaches one more host, on the bridge or routed.
    pub fn add_host(&mut self, (name, addresses, mac): &HostSpec<'_>, bridged: bool) {
        let ns = self.lab.namespace(name).expect("host namespace");
        let addresses: Vec<IpAddr> = addresses.iter().map(|a| ip(a)).collect();
        let mut router_side = RouterSide::new(*name);
        let mut guest_side = GuestSide::new("eth0", addresses.iter().copied());
        if bridged {
            let bridge = self.bridge.as_ref().expect("a topology with a bridge");
            if let Some(mac) = mac {
                guest_side = guest_side.with_mac(*mac);
                let mut tap = *mac;
                tap[0] = 0xfe;
                router_side = router_side.with_mac(tap);
            }
            self.lab
                .attach_to_bridge(bridge, &ns, &router_side, &guest_side)
                .expect("bridge port");
        } else {
            if let Some(mac) = mac {
                router_side = router_side.with_mac(*mac);
            }
            self.lab
                .attach(&self.router, &ns, &router_side, &guest_side)
                .expect("veth pair");
        }
        self.hosts.push((
            name.to_string(),
            Host {
                ns,
                address: addresses[0],
                addresses,
            },
        ));
    }

    pub fn host(&self, name: &str) -> &Host {
        &self
            .hosts
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no host {name}"))
            .1
    }

    /// Runs `opennsg ARGS` in the router namespace.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.router
            .exec(env!("CARGO_BIN_EXE_opennsg"), args)
            .expect("opennsg runs")
    }

    /// Runs `opennsg ARGS` in the router namespace; panics with its stderr if it fails.
    pub fn opennsg(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "opennsg {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Writes `env` to a file and enforces it with `binds`.
    pub fn enforce(&self, env: &Value, binds: &[&str]) -> String {
        let path = self.dir.path().join("env.json");
        std::fs::write(&path, serde_json::to_vec(env).expect("env serialises"))
            .expect("env written");
        let mut args = vec!["enforce", path.to_str().expect("utf-8 path")];
        for bind in binds {
            args.extend(["--bind", bind]);
        }
        self.opennsg(&args)
    }

    /// Whether a TCP connection from host `from` to `to:port` is established and carries data
    /// (an echo server is started there if none is running).
    pub fn tcp(&self, from: &str, to: &str, port: u16) -> bool {
        let mut servers = self.echo_servers.borrow_mut();
        if !servers.iter().any(|(host, p, _)| host == to && *p == port) {
            let server = self.host(to);
            let echo = EchoServer::start(&server.ns, SocketAddr::new(server.address, port))
                .expect("echo server");
            servers.push((to.to_string(), port, echo));
        }
        drop(servers);
        self.tcp_to_running(from, to, port).is_ok()
    }

    pub fn tcp_to_running(
        &self,
        from: &str,
        to: &str,
        port: u16,
    ) -> io::Result<std::net::TcpStream> {
        let client = self.host(from);
        let target = SocketAddr::new(self.host(to).address, port);
        let mut stream = tcp_connect(&client.ns, Some(client.address), target, DENIED_AFTER)?;
        let echoed = echo_roundtrip(&mut stream, b"hello\n")?;
        if echoed != b"hello\n" {
            return Err(io::Error::other("echo differs"));
        }
        Ok(stream)
    }

    /// (arrived at the server, reply came back) for one UDP datagram.
    pub fn udp(&self, from: &str, to: &str, port: u16) -> (bool, bool) {
        let server = self.host(to);
        let echo = UdpEchoServer::start(&server.ns, SocketAddr::new(server.address, port))
            .expect("udp echo server");
        let client = self.host(from);
        let exchange = udp_exchange(&client.ns, Some(client.address), &echo, DENIED_AFTER)
            .expect("udp exchange");
        (exchange.arrived(), exchange.reply_received)
    }

    pub fn ping(&self, from: &str, to: &str) -> bool {
        ping(
            &self.host(from).ns,
            self.host(to).address,
            1,
            Duration::from_secs(1),
        )
        .expect("ping runs")
    }
}

pub fn load(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).expect("fixture")).expect("fixture JSON")
}

/// The seed's VNet (vnet1).
pub const SEED_VNET: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1";

/// The seed's Network Watcher, where its flow logs live.
pub const SEED_WATCHER: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope";

/// An enabled flow log (Network Watcher's `flowLogs` resource) `name` of `target`, storing into
/// storage account `account`, with `extra` properties (a filter, record types, …).
pub fn flow_log_document(name: &str, target: &str, account: &str, extra: Value) -> Value {
    let mut properties = serde_json::json!({
        "targetResourceId": target,
        "storageId": format!("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/{account}"),
        "enabled": true,
        "format": {"type": "JSON", "version": 2},
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        properties[key] = value.clone();
    }
    serde_json::json!({
        "id": format!("{SEED_WATCHER}/flowLogs/{name}"),
        "type": "Microsoft.Network/networkWatchers/flowLogs",
        "location": "westeurope",
        "properties": properties,
    })
}

/// An enabled VNet flow log over the seed's VNet, for `enforce --flow-logs` to write version 4
/// blobs of.
pub fn seed_vnet_flow_log() -> Value {
    flow_log_document("vnet1-log", SEED_VNET, "flowlogs1", serde_json::json!({}))
}

/// The NSG named `nsg` in an environment array.
pub fn nsg_mut<'a>(env: &'a mut Value, nsg: &str) -> &'a mut Value {
    env.as_array_mut()
        .expect("fixtures are arrays")
        .iter_mut()
        .find(|r| r["name"] == nsg && r["type"] == "Microsoft.Network/networkSecurityGroups")
        .unwrap_or_else(|| panic!("no NSG {nsg}"))
}

pub fn remove_rule(env: &mut Value, nsg: &str, rule: &str) {
    let rules = nsg_mut(env, nsg)["properties"]["securityRules"]
        .as_array_mut()
        .expect("rules");
    let before = rules.len();
    rules.retain(|r| r["name"] != rule);
    assert_eq!(rules.len(), before - 1, "{nsg} had rule {rule}");
}

pub fn mac(azure: &str) -> [u8; 6] {
    let mut octets = [0u8; 6];
    for (octet, part) in octets.iter_mut().zip(azure.split('-')) {
        *octet = u8::from_str_radix(part, 16).expect("fixture MACs are hex");
    }
    octets
}

/// How guests are attached to the router: the two topologies every enforcement case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Each guest on a veth pair of its own, routed (Calico's way).
    Routed,
    /// Guests on ports of one Linux bridge (libvirt's, Docker's and LXD's way); other hosts
    /// routed.
    Bridged,
}

impl Topology {
    /// `hosts`, with those named in `guests` attached as `attachment` says and the rest routed.
    pub fn attached(hosts: &[HostSpec<'_>], attachment: Attachment, guests: &[&str]) -> Topology {
        match attachment {
            Attachment::Routed => Topology::new(hosts),
            Attachment::Bridged => Topology::with_bridge(hosts, guests),
        }
    }
}

/// The seed's four VMs, the internet host and the load balancer probe source. The VMs'
/// host-side interfaces carry the NICs' MACs (as libvirt's taps, on a bridge) so that
/// `--bind-by-mac` finds them.
pub fn seed_topology(attachment: Attachment) -> Topology {
    Topology::attached(
        &[
            ("vm1", &["10.0.1.4"], Some(mac("00-0D-3A-C5-06-0A"))),
            ("vm2", &["10.0.1.5"], Some(mac("00-0D-3A-19-23-CF"))),
            ("vm3", &["10.0.2.4"], Some(mac("00-0D-3A-89-86-6F"))),
            ("vm4", &["10.0.3.4"], Some(mac("00-0D-3A-33-73-12"))),
            ("inet", &["203.0.113.10"], None),
            ("lb", &["168.63.129.16"], None),
        ],
        attachment,
        &["vm1", "vm2", "vm3", "vm4"],
    )
}

/// The seed's VM2 (subnet NSG1 only) and the internet host.
pub fn vm2_and_the_internet(attachment: Attachment) -> Topology {
    Topology::attached(
        &[
            ("vm2", &["10.0.1.5"], Some(mac("00-0D-3A-19-23-CF"))),
            ("inet", &["203.0.113.10"], None),
        ],
        attachment,
        &["vm2"],
    )
}

/// Every valid fixture, with every NIC bound, lists back from the kernel exactly as rendered:
/// the canonical form drift checks rely on, with `service_tags` loaded.
pub fn assert_every_fixture_lists_back(service_tags: &Path) {
    let lab = Lab::new().expect("kernel tests need root");
    let ns = lab.namespace("canon").expect("namespace");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("invalid-") {
            continue;
        }
        let env: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let nics: Vec<String> = env
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["type"] == "Microsoft.Network/networkInterfaces")
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let mut args = vec!["enforce".to_string(), path.display().to_string()];
        args.extend(["--service-tags".into(), service_tags.display().to_string()]);
        // The interfaces do not exist: rules match them by name all the same.
        args.push("--allow-absent".into());
        for (i, nic) in nics.iter().enumerate() {
            args.extend(["--bind".to_string(), format!("{nic}=if{i}")]);
        }
        let apply = ns.exec(env!("CARGO_BIN_EXE_opennsg"), &args).expect("runs");
        if !apply.status.success() {
            // Fixtures whose NICs cannot be resolved offline are not enforcement material.
            let stderr = String::from_utf8_lossy(&apply.stderr);
            assert!(
                !stderr.contains("nft"),
                "{name}: nft refused the rendering: {stderr}"
            );
            continue;
        }
        args.push("--check".into());
        let check = ns.exec(env!("CARGO_BIN_EXE_opennsg"), &args).expect("runs");
        assert!(
            check.status.success(),
            "{name}: the kernel lists a different table: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures were enforced");
}

/// A child process killed when the test ends, however it ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `condition` every 100 ms for at most `limit`.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The bearer token of the servers the kernel tests start.
pub const SERVE_TOKEN: &str = "watch-test-token";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

/// An `opennsg serve` in the router namespace, over HTTPS with its self-signed certificate.
pub struct Served<'t> {
    topology: &'t Topology,
    pub listen: String,
    pub data: PathBuf,
    pub certificate: PathBuf,
    _server: Child,
}

impl Topology {
    /// Runs `opennsg ARGS` in the router namespace until the returned child is dropped, with
    /// the servers' token and `envs` in its environment.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &Path)]) -> Child {
        let mut command = std::process::Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                self.router.name(),
                env!("CARGO_BIN_EXE_opennsg"),
            ])
            .args(args)
            .env("OPENNSG_TOKEN", SERVE_TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (name, value) in envs {
            command.env(name, value);
        }
        Child(command.spawn().expect("opennsg starts"))
    }

    /// Starts `opennsg serve` on 127.0.0.1:`port` of the router, data in the test's directory,
    /// and waits until it answers.
    pub fn serve(&self, port: u16) -> Served<'_> {
        let data = self.dir.path().join("store");
        let listen = format!("127.0.0.1:{port}");
        let server = self.spawn(
            &[
                "serve",
                "--listen",
                &listen,
                "--tls-self-signed",
                "--data",
                data.to_str().expect("utf-8"),
                "--subscription",
                SUBSCRIPTION,
            ],
            &[],
        );
        let served = Served {
            topology: self,
            listen,
            certificate: data.join("cert.pem"),
            data,
            _server: server,
        };
        assert!(
            eventually(Duration::from_secs(20), || served
                .call("GET", "/subscriptions", "")
                .is_ok()),
            "the server did not start"
        );
        served
    }
}

impl Served<'_> {
    /// One request over HTTPS, trusting the server's certificate.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> io::Result<nsg_netlab::HttpResponse> {
        let server: SocketAddr = self.listen.parse().expect("listen address");
        let stream = tcp_connect(&self.topology.router, None, server, Duration::from_secs(5))?;
        let mut tls =
            nsg_netlab::tls_client(stream, "127.0.0.1", &std::fs::read(&self.certificate)?)?;
        let separator = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{separator}api-version=2024-05-01");
        nsg_netlab::http_request(&mut tls, &self.listen, method, &path, SERVE_TOKEN, body)
    }

    /// PUTs group rg1, then `env`'s resources, referenced kinds first.
    pub fn put_environment(&self, env: &Value) {
        let group = self
            .call(
                "PUT",
                &format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/rg1"),
                r#"{"location": "westeurope"}"#,
            )
            .expect("PUT group");
        assert!(group.status < 300, "{group:?}");
        let order = [
            "networkSecurityGroups",
            "virtualNetworks",
            "networkInterfaces",
            "virtualMachines",
        ];
        for kind in order {
            for resource in env.as_array().expect("array").iter().filter(|r| {
                r["type"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!("/{kind}")))
            }) {
                let id = resource["id"].as_str().expect("id");
                let response = self.call("PUT", id, &resource.to_string()).expect("PUT");
                assert!(
                    response.status < 300,
                    "PUT {id}: {} {}",
                    response.status,
                    response.body
                );
            }
        }
    }

    /// `opennsg enforce --watch` on this server with short intervals, and `args`.
    pub fn watch(&self, args: &[&str], envs: &[(&str, &Path)]) -> Child {
        let url = format!("https://{}", self.listen);
        let mut all = vec![
            "enforce",
            "--watch",
            &url,
            "--ca-cert",
            self.certificate.to_str().expect("utf-8"),
            "--interval",
            "0.2",
            "--reconcile-interval",
            "0.5",
        ];
        all.extend_from_slice(args);
        self.topology.spawn(&all, envs)
    }
}

/// A loopback HTTP server answering each path with (status, content type, body).
pub struct Site {
    pub url: String,
    _thread: std::thread::JoinHandle<()>,
}

impl Site {
    pub fn start(pages: Vec<(&'static str, u16, &'static str, Vec<u8>)>) -> Site {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("loopback server");
        let url = format!(
            "http://{}",
            server.server_addr().to_ip().expect("ip address")
        );
        let thread = std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let page = pages.iter().find(|(path, ..)| *path == request.url());
                let response = match page {
                    Some((_, status, kind, body)) => tiny_http::Response::from_data(body.clone())
                        .with_status_code(*status)
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", *kind).expect("header"),
                        ),
                    None => {
                        tiny_http::Response::from_data(b"not found".to_vec()).with_status_code(404)
                    }
                };
                let _ = request.respond(response);
            }
        });
        Site {
            url,
            _thread: thread,
        }
    }
}

/// Every `PT1H.json` (an hourly flow log blob) under `dir`, sorted by path.
pub fn hourly_blobs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "PT1H.json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Conntrack's timeouts in the router namespace, lowered so that the kernel ends (and `enforce`
/// logs the end of) the lab's flows within seconds: TCP's TIME_WAIT and CLOSE after a reset
/// (120 s and 10 s by default), UDP without and with replies (30 s, 120 s), ICMP (30 s).
pub const SHORT_CONNTRACK_TIMEOUTS: [&str; 5] = [
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait=2",
    "net.netfilter.nf_conntrack_tcp_timeout_close=2",
    "net.netfilter.nf_conntrack_udp_timeout=2",
    "net.netfilter.nf_conntrack_udp_timeout_stream=2",
    "net.netfilter.nf_conntrack_icmp_timeout=2",
];

/// Seconds between a connection's `C` tuples in flow log tests, short so that they take seconds.
pub const FLOW_LOG_INTERVAL_SECS: u64 = 2;

impl Topology {
    /// Lowers the router's conntrack timeouts ([`SHORT_CONNTRACK_TIMEOUTS`]) so that flows end
    /// in the flow logs within seconds.
    pub fn short_conntrack_timeouts(&self) {
        for timeout in SHORT_CONNTRACK_TIMEOUTS {
            self.router
                .exec_checked("sysctl", ["-w", timeout])
                .expect("sysctl");
        }
    }

    /// `opennsg enforce ENV --flow-logs LOGS` with `extra` options, in the router namespace,
    /// `C` tuples every [`FLOW_LOG_INTERVAL_SECS`] and appends every second; returns once the
    /// table is in force.
    pub fn enforce_with_flow_logs(&self, env: &Path, logs: &Path, extra: &[&str]) -> Child {
        let interval = FLOW_LOG_INTERVAL_SECS.to_string();
        let mut args = vec![
            "enforce",
            env.to_str().expect("utf-8"),
            "--flow-logs",
            logs.to_str().expect("utf-8"),
            "--flow-log-interval",
            &interval,
            "--flow-log-flush",
            "1",
        ];
        args.extend_from_slice(extra);
        let enforcer = self.spawn(&args, &[]);
        let table_in_force = || {
            self.router
                .exec("nft", ["list", "table", "inet", "opennsg"])
                .is_ok_and(|output| output.status.success())
        };
        assert!(
            eventually(Duration::from_secs(20), table_in_force),
            "the table was put in force"
        );
        enforcer
    }
}
