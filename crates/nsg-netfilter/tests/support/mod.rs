//! What the kernel tests and the benchmark share: a client and a server namespace routed through a router
//! namespace, where the test's nftables table is loaded and the readers are opened.
#![allow(dead_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use nsg_netfilter::Counters;
use nsg_netlab::{GuestSide, Lab, Netns, RouterSide};

/// The test tables' name: `inet onsg_test`.
pub const TABLE: &str = "onsg_test";

/// How long a test waits for the kernel's events before giving up (they come in milliseconds).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The client's and server's addresses, IPv4 then IPv6.
pub const CLIENT: [&str; 2] = ["10.0.0.1", "fd00::1"];
pub const SERVER: [&str; 2] = ["10.0.0.2", "fd00::2"];

/// The address families the cases run in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn client(self) -> IpAddr {
        address(CLIENT[self as usize])
    }

    pub fn server(self) -> IpAddr {
        address(SERVER[self as usize])
    }

    /// The IP header's size without options or extension headers.
    pub fn ip_header_len(self) -> u64 {
        match self {
            Family::V4 => 20,
            Family::V6 => 40,
        }
    }
}

pub fn address(text: &str) -> IpAddr {
    text.parse().expect("test addresses parse")
}

pub fn ipv4(address: IpAddr) -> Ipv4Addr {
    match address {
        IpAddr::V4(address) => address,
        IpAddr::V6(_) => panic!("{address} is not IPv4"),
    }
}

pub fn ipv6(address: IpAddr) -> Ipv6Addr {
    match address {
        IpAddr::V6(address) => address,
        IpAddr::V4(_) => panic!("{address} is not IPv6"),
    }
}

/// Router namespace "r" with interfaces "client" and "server" towards the two guests.
pub struct Net {
    pub router: Netns,
    pub client: Netns,
    pub server: Netns,
    /// Owns the namespaces (dropped last).
    _lab: Lab,
}

impl Net {
    /// The topology with `ruleset` (nft syntax) loaded in the router.
    pub fn new(ruleset: &str) -> Net {
        let lab = Lab::new().expect("kernel tests need root and iproute2 (run the tests as root)");
        let router = lab.router("r").expect("router namespace");
        let client = lab.namespace("client").expect("client namespace");
        let server = lab.namespace("server").expect("server namespace");
        for (guest, name, addresses) in [(&client, "client", CLIENT), (&server, "server", SERVER)] {
            lab.attach(
                &router,
                guest,
                &RouterSide::new(name),
                &GuestSide::new("eth0", addresses.map(address)),
            )
            .expect("veth pair");
        }
        let mut file = tempfile::NamedTempFile::new().expect("temporary ruleset file");
        file.write_all(ruleset.as_bytes()).expect("ruleset written");
        let path = file.path().to_str().expect("utf-8 temporary path");
        router
            .exec_checked("nft", ["-f", path])
            .expect("the test ruleset loads");
        Net {
            router,
            client,
            server,
            _lab: lab,
        }
    }

    /// Runs `f` on a thread inside the router namespace (where readers must be opened).
    pub fn in_router<T: Send>(&self, f: impl FnOnce() -> nsg_netfilter::Result<T> + Send) -> T {
        self.router
            .run(|| f().map_err(std::io::Error::other))
            .unwrap_or_else(|err| panic!("in the router namespace: {err}"))
    }

    /// Sets a sysctl of the router, e.g. `net/netfilter/nf_conntrack_tcp_loose`.
    pub fn router_sysctl(&self, path: &str, value: &str) {
        let path = format!("/proc/sys/{path}");
        self.router
            .run(|| std::fs::write(&path, value))
            .unwrap_or_else(|err| panic!("write {value} to {path} in the router: {err}"));
    }

    /// The named counter `name` of the test table.
    pub fn counter(&self, name: &str) -> Counters {
        let output = self
            .router
            .exec_checked("nft", ["-j", "list", "counter", "inet", TABLE, name])
            .expect("nft lists the counter");
        let listing: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("nft -j prints JSON");
        let counter = listing["nftables"]
            .as_array()
            .and_then(|items| items.iter().find_map(|item| item.get("counter")))
            .unwrap_or_else(|| panic!("no counter {name} in {listing}"));
        Counters {
            packets: counter["packets"].as_u64().expect("packets"),
            bytes: counter["bytes"].as_u64().expect("bytes"),
        }
    }

    /// Deletes the router's conntrack entries with `mark` (`conntrack -D`), which makes the
    /// kernel send their destroy events.
    pub fn delete_connections(&self, mark: u32) {
        self.router
            .exec_checked("conntrack", ["-D", "--mark", &mark.to_string()])
            .expect("conntrack deletes the marked entries");
    }

    /// The index of the router's interface `name`.
    pub fn router_ifindex(&self, name: &str) -> u32 {
        let output = self
            .router
            .exec_checked("cat", [format!("/sys/class/net/{name}/ifindex")])
            .expect("sysfs of the router");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("an interface index")
    }
}

/// Calls `receive` until `done` holds for everything received so far, at most [`PATIENCE`];
/// returns everything received (the caller's assertions say what was missing).
pub fn receive_until<T>(
    mut receive: impl FnMut(Duration) -> nsg_netfilter::Result<Vec<T>>,
    mut done: impl FnMut(&[T]) -> bool,
) -> Vec<T> {
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::new();
    while !done(&received) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        received.extend(receive(left.min(Duration::from_millis(200))).expect("receive"));
    }
    received
}
