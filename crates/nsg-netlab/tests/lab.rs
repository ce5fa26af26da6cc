//! Real traffic through a real lab. Needs root: without it every test fails, naming the reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use nsg_netlab::packet::{ipv4_tcp_syn, ipv6_tcp_syn};
use nsg_netlab::{
    echo_roundtrip, in_namespace, ping, tcp_connect, udp_exchange, Capture, EchoServer, FiveTuple,
    GuestSide, Lab, LabError, Netns, RawSender, RouterSide, UdpEchoServer,
};

const A_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 4);
const B_V4: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 5);
const A_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 4);
const B_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 5);
const INTERNET_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const INTERNET_V4_SECOND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
const LOAD_BALANCER_PROBE: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// Long enough for anything that works to succeed on a loaded CI machine.
const PASS: Duration = Duration::from_secs(3);
/// How long to wait before calling something blocked.
const BLOCKED: Duration = Duration::from_millis(500);

/// Two guests and an "internet" host behind one router.
struct Topology {
    lab: Lab,
    router: Netns,
    a: Netns,
    b: Netns,
    internet: Netns,
}

fn new_lab() -> Lab {
    Lab::new().unwrap_or_else(|err| panic!("cannot build a network lab: {err}"))
}

fn topology() -> Topology {
    let lab = new_lab();
    let router = lab.router("router").expect("router");
    let a = lab.namespace("a").expect("guest a");
    let b = lab.namespace("b").expect("guest b");
    let internet = lab.namespace("internet").expect("internet");
    lab.attach(
        &router,
        &a,
        &RouterSide::new("vm-a").with_mac([0xee; 6]),
        &GuestSide::new("eth0", [A_V4.into(), A_V6.into()]).with_mac([0x02, 0, 0, 0, 0, 0x0a]),
    )
    .expect("attach a");
    lab.attach(
        &router,
        &b,
        &RouterSide::new("vm-b").with_mac([0xee; 6]),
        &GuestSide::new("eth0", [B_V4.into(), B_V6.into()]),
    )
    .expect("attach b");
    lab.attach(
        &router,
        &internet,
        &RouterSide::new("uplink"),
        &GuestSide::new(
            "eth0",
            [
                INTERNET_V4.into(),
                INTERNET_V4_SECOND.into(),
                LOAD_BALANCER_PROBE.into(),
            ],
        ),
    )
    .expect("attach internet");
    Topology {
        lab,
        router,
        a,
        b,
        internet,
    }
}

fn listed_namespaces() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    assert!(output.status.success(), "ip netns list failed: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Waits for the first captured packet `wanted` accepts.
fn capture_first(
    capture: &Capture,
    timeout: Duration,
    wanted: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match capture.next_packet(left).expect("capture") {
            Some(packet) if wanted(&packet) => return Some(packet),
            Some(_) => continue,
            None => return None,
        }
    }
}

fn is_probe(packet: &[u8], src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> bool {
    FiveTuple::parse(packet)
        == Some(FiveTuple {
            src,
            dst,
            protocol: 6,
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            echo_request_id: None,
        })
}

#[test]
fn guests_ping_each_other_and_the_internet_through_the_router() {
    let t = topology();
    assert!(ping(&t.a, B_V4.into(), 2, PASS).unwrap(), "a -> b");
    assert!(ping(&t.b, A_V4.into(), 2, PASS).unwrap(), "b -> a");
    for internet in [INTERNET_V4, INTERNET_V4_SECOND, LOAD_BALANCER_PROBE] {
        assert!(
            ping(&t.a, internet.into(), 1, PASS).unwrap(),
            "a -> {internet}"
        );
    }
    assert!(
        ping(&t.internet, B_V4.into(), 1, PASS).unwrap(),
        "internet -> b"
    );
    // The negative control: an address nobody has must not count as reachable.
    assert!(!ping(&t.a, Ipv4Addr::new(10, 10, 0, 99).into(), 1, BLOCKED).unwrap());
}

#[test]
fn guests_ping_each_other_over_ipv6() {
    let t = topology();
    assert!(
        ping(&t.a, B_V6.into(), 2, PASS).unwrap(),
        "a -> b over IPv6"
    );
    assert!(
        ping(&t.b, A_V6.into(), 2, PASS).unwrap(),
        "b -> a over IPv6"
    );
}

#[test]
fn tcp_connection_echoes_and_keeps_working() {
    let t = topology();
    let server = EchoServer::start(&t.b, SocketAddr::new(B_V4.into(), 8080)).unwrap();

    let mut stream = tcp_connect(&t.a, Some(A_V4.into()), server.local_addr(), PASS).unwrap();
    assert_eq!(echo_roundtrip(&mut stream, b"hello\n").unwrap(), b"hello\n");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        echo_roundtrip(&mut stream, b"still there\n").unwrap(),
        b"still there\n"
    );

    // The source address chosen by the client is the one the server sees.
    let from_second = tcp_connect(
        &t.internet,
        Some(INTERNET_V4_SECOND.into()),
        server.local_addr(),
        PASS,
    )
    .unwrap();
    let peers: Vec<IpAddr> = server.accepted_peers().iter().map(SocketAddr::ip).collect();
    let expected: [IpAddr; 2] = [A_V4.into(), INTERNET_V4_SECOND.into()];
    let deadline = Instant::now() + PASS;
    let mut peers = peers;
    while peers.len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        peers = server.accepted_peers().iter().map(SocketAddr::ip).collect();
    }
    assert_eq!(peers, expected);
    drop(from_second);

    // Over IPv6 too.
    let server_v6 = EchoServer::start(&t.b, SocketAddr::new(B_V6.into(), 8080)).unwrap();
    let mut stream_v6 = tcp_connect(&t.a, None, server_v6.local_addr(), PASS).unwrap();
    assert_eq!(echo_roundtrip(&mut stream_v6, b"six\n").unwrap(), b"six\n");
}

#[test]
fn tcp_connect_to_a_closed_port_is_refused() {
    let t = topology();
    let err = tcp_connect(&t.a, None, SocketAddr::new(B_V4.into(), 8999), PASS).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(
        err.to_string().contains(t.a.name()),
        "the error names the namespace: {err}"
    );
}

#[test]
fn udp_exchange_reports_arrival_and_reply() {
    let t = topology();
    let server = UdpEchoServer::start(&t.b, SocketAddr::new(B_V4.into(), 9090)).unwrap();
    let exchange = udp_exchange(&t.a, None, &server, PASS).unwrap();
    assert!(exchange.reply_received, "{exchange:?}");
    assert_eq!(
        exchange.arrived_from.map(|from| from.ip()),
        Some(A_V4.into())
    );

    let from_probe =
        udp_exchange(&t.internet, Some(LOAD_BALANCER_PROBE.into()), &server, PASS).unwrap();
    assert!(from_probe.reply_received, "{from_probe:?}");
    assert_eq!(
        from_probe.arrived_from.map(|from| from.ip()),
        Some(LOAD_BALANCER_PROBE.into())
    );
    assert_eq!(server.received().len(), 2);

    let server_v6 = UdpEchoServer::start(&t.a, SocketAddr::new(A_V6.into(), 9090)).unwrap();
    let over_v6 = udp_exchange(&t.b, None, &server_v6, PASS).unwrap();
    assert!(over_v6.reply_received && over_v6.arrived(), "{over_v6:?}");
}

#[test]
fn raw_syn_from_one_guest_is_captured_on_the_other() {
    let t = topology();
    let capture = Capture::open(&t.b, "eth0").unwrap();
    let sender = RawSender::open(&t.a).unwrap();

    sender
        .send(&ipv4_tcp_syn(A_V4, B_V4, 40_000, 8443))
        .unwrap();
    let packet = capture_first(&capture, PASS, |p| {
        is_probe(p, A_V4.into(), B_V4.into(), 40_000, 8443)
    })
    .expect("the SYN reaches b's eth0");
    let sliced = SlicedPacket::from_ip(&packet).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
        panic!("not IPv4: {packet:?}")
    };
    assert_eq!(ip.header().ttl(), 63, "crossed exactly one router");
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        panic!("not TCP: {packet:?}")
    };
    assert!(tcp.syn() && !tcp.ack());

    sender
        .send(&ipv6_tcp_syn(A_V6, B_V6, 40_001, 8443))
        .unwrap();
    let packet = capture_first(&capture, PASS, |p| {
        is_probe(p, A_V6.into(), B_V6.into(), 40_001, 8443)
    })
    .expect("the IPv6 SYN reaches b's eth0");
    let Some(NetSlice::Ipv6(ip)) = SlicedPacket::from_ip(&packet).unwrap().net else {
        panic!("not IPv6: {packet:?}")
    };
    assert_eq!(ip.header().hop_limit(), 63, "crossed exactly one router");

    // A spoofed source is sent as written: the router does not filter by reverse path.
    sender
        .send(&ipv4_tcp_syn(LOAD_BALANCER_PROBE, B_V4, 40_002, 8443))
        .unwrap();
    assert!(capture_first(&capture, PASS, |p| is_probe(
        p,
        LOAD_BALANCER_PROBE.into(),
        B_V4.into(),
        40_002,
        8443
    ))
    .is_some());

    // The capture only reports what arrives: b's answers (RST) are not in it.
    let leftovers = capture.drain(Duration::from_millis(200)).unwrap();
    assert!(
        leftovers
            .iter()
            .all(|p| FiveTuple::parse(p).is_none_or(|t| t.src != IpAddr::from(B_V4))),
        "captured a packet b sent: {leftovers:?}"
    );
}

#[test]
fn a_forward_drop_on_the_router_is_observed_as_blocked() {
    let t = topology();
    let tcp_server = EchoServer::start(&t.b, SocketAddr::new(B_V4.into(), 8081)).unwrap();
    let request_blocked = UdpEchoServer::start(&t.b, SocketAddr::new(B_V4.into(), 9091)).unwrap();
    let reply_blocked = UdpEchoServer::start(&t.b, SocketAddr::new(B_V4.into(), 9092)).unwrap();
    t.router
        .exec_checked(
            "nft",
            [concat!(
                "add table inet netlab_test; ",
                "add chain inet netlab_test forward { type filter hook forward priority 0; policy accept; }; ",
                "add rule inet netlab_test forward ip daddr 10.10.0.5 icmp type echo-request drop; ",
                "add rule inet netlab_test forward ip daddr 10.10.0.5 tcp dport 8081 drop; ",
                "add rule inet netlab_test forward ip daddr 10.10.0.5 udp dport 9091 drop; ",
                "add rule inet netlab_test forward ip saddr 10.10.0.5 udp sport 9092 drop"
            )],
        )
        .unwrap();

    assert!(
        !ping(&t.a, B_V4.into(), 1, BLOCKED).unwrap(),
        "ping crossed a drop rule"
    );
    let err = tcp_connect(&t.a, None, tcp_server.local_addr(), BLOCKED).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");

    let no_request = udp_exchange(&t.a, None, &request_blocked, BLOCKED).unwrap();
    assert!(
        !no_request.arrived() && !no_request.reply_received,
        "{no_request:?}"
    );
    let no_reply = udp_exchange(&t.a, None, &reply_blocked, BLOCKED).unwrap();
    assert!(
        no_reply.arrived() && !no_reply.reply_received,
        "{no_reply:?}"
    );

    let capture = Capture::open(&t.b, "eth0").unwrap();
    RawSender::open(&t.a)
        .unwrap()
        .send(&ipv4_tcp_syn(A_V4, B_V4, 40_003, 8081))
        .unwrap();
    let probes = capture.drain(BLOCKED).unwrap();
    assert!(
        !probes
            .iter()
            .any(|p| is_probe(p, A_V4.into(), B_V4.into(), 40_003, 8081)),
        "a dropped SYN was captured"
    );

    // Traffic the rules do not match still flows, so the above is the rules' doing.
    assert!(ping(&t.b, A_V4.into(), 1, PASS).unwrap());
}

#[test]
fn in_namespace_creates_sockets_that_stay_in_that_namespace() {
    let t = topology();
    let b_address = SocketAddr::new(B_V4.into(), 0);
    assert!(
        TcpListener::bind(b_address).is_err(),
        "b's address exists outside b"
    );
    let listener = in_namespace(t.b.name(), || TcpListener::bind(b_address)).unwrap();
    let server = EchoServer::serve(listener).unwrap();
    let mut stream = tcp_connect(&t.a, None, server.local_addr(), PASS).unwrap();
    assert_eq!(echo_roundtrip(&mut stream, b"x").unwrap(), b"x");

    let missing = in_namespace("nsg-netlab-no-such-namespace", || Ok(())).unwrap_err();
    assert!(
        missing.to_string().contains("nsg-netlab-no-such-namespace"),
        "{missing}"
    );
    let result = panic::catch_unwind(|| {
        in_namespace(t.a.name(), || -> std::io::Result<()> { panic!("inside") })
    });
    assert!(result.is_err(), "a panic inside reaches the caller");
}

#[test]
fn exec_runs_commands_inside_the_namespace() {
    let t = topology();
    let output =
        t.a.exec_checked("ip", ["-o", "address", "show", "dev", "eth0"])
            .unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("10.10.0.4/32"));
    let routes = t.router.exec("ip", ["route", "show", "10.10.0.5"]).unwrap();
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("dev vm-b"),
        "{routes:?}"
    );

    let failed =
        t.a.exec_checked("ip", ["link", "show", "dev", "no-such-if"])
            .unwrap_err();
    let message = failed.to_string();
    assert!(
        matches!(failed, LabError::CommandFailed { .. }),
        "{message}"
    );
    assert!(
        message.contains(t.a.name()) && message.contains("no-such-if"),
        "{message}"
    );
}

#[test]
fn invalid_names_and_duplicates_are_clear_errors() {
    let lab = new_lab();
    let router = lab.router("r").unwrap();
    let guest = lab.namespace("g").unwrap();
    let too_long = lab.attach(
        &router,
        &guest,
        &RouterSide::new("sixteen-chars-xx"),
        &GuestSide::new("eth0", []),
    );
    assert!(
        matches!(too_long, Err(LabError::InvalidName { .. })),
        "{too_long:?}"
    );
    let duplicate = lab.namespace("g").unwrap_err().to_string();
    assert!(duplicate.contains(&lab.namespace_name("g")), "{duplicate}");
    assert!(matches!(
        lab.namespace("a/b"),
        Err(LabError::InvalidName { .. })
    ));
}

#[test]
fn dropping_the_lab_deletes_its_namespaces() {
    let t = topology();
    let names: Vec<String> = ["router", "a", "b", "internet"]
        .iter()
        .map(|short| t.lab.namespace_name(short))
        .collect();
    assert_eq!(t.a.name(), t.lab.namespace_name("a"));
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|name| listed.contains(name)),
        "{names:?} not all in {listed:?}"
    );
    drop(t);
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|name| !listed.contains(name)),
        "left behind: {listed:?}"
    );
}

#[test]
fn a_panicking_test_still_deletes_its_namespaces() {
    let mut names = Vec::new();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let t = topology();
        names = ["router", "a", "b", "internet"]
            .iter()
            .map(|short| t.lab.namespace_name(short))
            .collect();
        assert!(ping(&t.a, B_V4.into(), 1, PASS).unwrap());
        panic!("a test body failing halfway");
    }));
    assert!(outcome.is_err());
    assert_eq!(names.len(), 4);
    let listed = listed_namespaces();
    assert!(
        names.iter().all(|name| !listed.contains(name)),
        "left behind: {listed:?}"
    );
}

#[test]
fn labs_in_one_process_get_distinct_names() {
    let (first, second) = (new_lab(), new_lab());
    assert_ne!(first.namespace_name("a"), second.namespace_name("a"));
    first.namespace("a").unwrap();
    second.namespace("a").unwrap();
}
