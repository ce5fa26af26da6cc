//! Conntrack events and dumps from a real kernel (root): a client talks to a server through a
//! router namespace whose nftables table accepts and marks new connections and counts their
//! packets per direction with named counters. Those counters see exactly the packets
//! conntrack accounts for (the connection's, in both directions, as IP total lengths), so
//! comparing them is an exact check of the counters read from netlink.

mod support;

use std::io::Read;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use nsg_netfilter::{
    conntrack_dump, enable_accounting, AccountingWasOn, ConntrackEntry, ConntrackEvent,
    ConntrackEventKind, ConntrackEvents, Counters, Nflog, Transport,
};
use nsg_netlab::packet::ipv4_udp;
use nsg_netlab::{
    echo_roundtrip, ping, tcp_connect, udp_exchange, EchoServer, RawSender, UdpEchoServer,
};
use support::{ipv4, receive_until, Family, Net};

const MARK: u32 = 0x0005_0003;

/// Accepts and marks new TCP, UDP and ICMP connections, counts what it accepts of them per
/// direction, and counts new connections; drops the rest. Invalid packets (with
/// `nf_conntrack_tcp_loose` off, any TCP packet of a deleted connection) are dropped uncounted,
/// as conntrack accounts them to no connection either.
const RULESET: &str = r#"
table inet onsg_test {
    counter original {}
    counter reply {}
    counter new {}
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state invalid drop
        ct state new counter name "new"
        ct state new meta l4proto { tcp, udp, icmp, ipv6-icmp } ct mark set 0x00050003
        ct mark 0x00050003 ct direction original counter name "original" accept
        ct mark 0x00050003 ct direction reply counter name "reply" accept
    }
}
"#;

const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;
/// What the client sends over TCP, and the server echoes back.
const TCP_PAYLOAD: usize = 3000;
const TIMEOUT: Duration = Duration::from_secs(5);
/// The payload of `ping`'s echo requests, and so of the replies.
const PING_PAYLOAD: u64 = 56;
const ICMP_HEADER: u64 = 8;
const UDP_HEADER: u64 = 8;
const TCP_HEADER: u64 = 20;
/// IPS_SEEN_REPLY of nf_conntrack_common.h.
const IPS_SEEN_REPLY: u32 = 1 << 1;

/// The topology, with counters and timestamps on and TCP mid-stream pickup off in the router.
fn accounted_net() -> Net {
    let net = Net::new(RULESET);
    net.in_router(enable_accounting);
    net.router_sysctl("net/netfilter/nf_conntrack_tcp_loose", "0");
    net
}

#[derive(Clone, Copy, Debug)]
enum Traffic {
    /// A connection carrying [`TCP_PAYLOAD`] bytes each way, closed by both sides.
    Tcp,
    /// One datagram and its echo.
    Udp,
    /// One echo request and its reply.
    Ping,
}

impl Traffic {
    fn protocol(self, family: Family) -> u8 {
        match (self, family) {
            (Traffic::Tcp, _) => 6,
            (Traffic::Udp, _) => 17,
            (Traffic::Ping, Family::V4) => 1,
            (Traffic::Ping, Family::V6) => 58,
        }
    }

    /// Runs the traffic from the client to the server; returns the counters each direction
    /// must show where they follow from what was sent alone (not for TCP, whose segments and
    /// options are the stack's business).
    fn run(self, net: &Net, family: Family) -> Option<(Counters, Counters)> {
        let (client, server) = (family.client(), family.server());
        match self {
            Traffic::Tcp => {
                let echo = EchoServer::start(&net.server, SocketAddr::new(server, TCP_PORT))
                    .expect("echo server");
                let target = echo.local_addr();
                let mut stream =
                    tcp_connect(&net.client, Some(client), target, TIMEOUT).expect("connect");
                let payload = vec![b'x'; TCP_PAYLOAD];
                assert_eq!(
                    echo_roundtrip(&mut stream, &payload).expect("echo"),
                    payload
                );
                // Both sides close: the server closes once it reads the end of the stream.
                stream.shutdown(Shutdown::Write).expect("shutdown");
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).expect("the server closes");
                assert!(rest.is_empty());
                None
            }
            Traffic::Udp => {
                let echo = UdpEchoServer::start(&net.server, SocketAddr::new(server, UDP_PORT))
                    .expect("udp echo server");
                let exchange =
                    udp_exchange(&net.client, Some(client), &echo, TIMEOUT).expect("exchange");
                assert!(exchange.reply_received, "the echo came back");
                let payload = echo.received()[0].payload.len() as u64;
                let one = Counters {
                    packets: 1,
                    bytes: family.ip_header_len() + UDP_HEADER + payload,
                };
                Some((one, one))
            }
            Traffic::Ping => {
                assert!(ping(&net.client, server, 1, TIMEOUT).expect("ping runs"));
                let one = Counters {
                    packets: 1,
                    bytes: family.ip_header_len() + ICMP_HEADER + PING_PAYLOAD,
                };
                Some((one, one))
            }
        }
    }
}

fn is_flow(entry: &ConntrackEntry, family: Family, protocol: u8) -> bool {
    entry.original.src == family.client()
        && entry.original.dst == family.server()
        && entry.original.protocol == protocol
}

fn find(
    events: &[ConntrackEvent],
    kind: ConntrackEventKind,
    family: Family,
    protocol: u8,
) -> Option<&ConntrackEntry> {
    events
        .iter()
        .find(|event| event.kind == kind && is_flow(&event.entry, family, protocol))
        .map(|event| &event.entry)
}

#[test]
fn new_and_destroy_events_carry_the_mark_and_the_exact_counters() {
    let cases = [
        (Traffic::Tcp, Family::V4),
        (Traffic::Udp, Family::V4),
        (Traffic::Ping, Family::V4),
        (Traffic::Tcp, Family::V6),
        (Traffic::Udp, Family::V6),
        (Traffic::Ping, Family::V6),
    ];
    for (traffic, family) in cases {
        let case = format!("{traffic:?} over {family:?}");
        let net = accounted_net();
        let mut events = net.in_router(ConntrackEvents::subscribe);
        let protocol = traffic.protocol(family);
        let expected = traffic.run(&net, family);

        let received = receive_until(
            |timeout| events.recv(timeout),
            |events| find(events, ConntrackEventKind::New, family, protocol).is_some(),
        );
        let new = find(&received, ConntrackEventKind::New, family, protocol)
            .unwrap_or_else(|| panic!("{case}: no new event in {received:#?}"))
            .clone();
        assert_eq!(new.mark, MARK, "{case}");
        assert_eq!(
            (new.reply.src, new.reply.dst),
            (family.server(), family.client()),
            "{case}"
        );
        match (traffic, new.original.transport, new.reply.transport) {
            (
                Traffic::Tcp | Traffic::Udp,
                Transport::Ports { src, dst },
                Transport::Ports {
                    src: reply_src,
                    dst: reply_dst,
                },
            ) => {
                let port = if let Traffic::Tcp = traffic {
                    TCP_PORT
                } else {
                    UDP_PORT
                };
                assert_eq!((dst, reply_src, reply_dst), (port, port, src), "{case}");
            }
            (
                Traffic::Ping,
                Transport::Icmp {
                    icmp_type,
                    code,
                    id,
                },
                Transport::Icmp {
                    icmp_type: reply_type,
                    id: reply_id,
                    ..
                },
            ) => {
                // Echo request and echo reply of ICMP and ICMPv6.
                let (request, reply) = if family == Family::V4 {
                    (8, 0)
                } else {
                    (128, 129)
                };
                assert_eq!(
                    (icmp_type, code, reply_type, reply_id),
                    (request, 0, reply, id),
                    "{case}"
                );
            }
            other => panic!("{case}: unexpected transports {other:?}"),
        }

        net.delete_connections(MARK);
        let received = receive_until(
            |timeout| events.recv(timeout),
            |events| find(events, ConntrackEventKind::Destroy, family, protocol).is_some(),
        );
        let destroyed = find(&received, ConntrackEventKind::Destroy, family, protocol)
            .unwrap_or_else(|| panic!("{case}: no destroy event in {received:#?}"));
        assert_eq!(
            (
                destroyed.id,
                destroyed.original,
                destroyed.reply,
                destroyed.mark
            ),
            (new.id, new.original, new.reply, MARK),
            "{case}"
        );
        let counted = (net.counter("original"), net.counter("reply"));
        let reported = (
            destroyed
                .counters_original
                .unwrap_or_else(|| panic!("{case}: no counters")),
            destroyed
                .counters_reply
                .unwrap_or_else(|| panic!("{case}: no reply counters")),
        );
        assert_eq!(
            reported, counted,
            "{case}: conntrack's counters against nft's"
        );
        match expected {
            Some(expected) => {
                assert_eq!(reported, expected, "{case}: counters against what was sent")
            }
            None => {
                for (direction, counters) in [("original", reported.0), ("reply", reported.1)] {
                    let least = TCP_PAYLOAD as u64
                        + counters.packets * (family.ip_header_len() + TCP_HEADER);
                    assert!(
                        counters.bytes >= least,
                        "{case}: {direction} {counters:?} below {least} bytes"
                    );
                }
            }
        }
        let (start, stop) = (
            destroyed.start.expect("start time"),
            destroyed.stop.expect("stop time"),
        );
        assert!(start <= stop, "{case}");
        assert_ne!(
            destroyed.status & IPS_SEEN_REPLY,
            0,
            "{case}: status {:#x}",
            destroyed.status
        );
        assert_eq!(events.lost(), 0, "{case}");
    }
}

#[test]
fn a_dump_lists_a_live_connection_with_its_running_counters() {
    for family in [Family::V4, Family::V6] {
        let net = accounted_net();
        let echo = EchoServer::start(&net.server, SocketAddr::new(family.server(), TCP_PORT))
            .expect("echo server");
        let mut stream = tcp_connect(
            &net.client,
            Some(family.client()),
            echo.local_addr(),
            TIMEOUT,
        )
        .expect("connect");
        let mut previous = (Counters::default(), Counters::default());
        for payload in [1000, 2000] {
            let payload = vec![b'y'; payload];
            assert_eq!(
                echo_roundtrip(&mut stream, &payload).expect("echo"),
                payload
            );
            // The last acknowledgement may still be on its way: read until the dump and the
            // table's counters agree (they must, as soon as the connection is quiet).
            let entry = dumped_when_counted(&net, family);
            assert_eq!(entry.mark, MARK);
            assert!(entry.start.is_some() && entry.stop.is_none(), "{entry:?}");
            let now = (
                entry.counters_original.expect("counters"),
                entry.counters_reply.expect("counters"),
            );
            for (before, after) in [(previous.0, now.0), (previous.1, now.1)] {
                assert!(
                    after.packets > before.packets,
                    "{family:?}: {before:?} then {after:?}"
                );
                assert!(
                    after.bytes >= before.bytes + payload.len() as u64,
                    "{family:?}: {before:?} then {after:?}"
                );
            }
            previous = now;
        }
    }
}

/// The connection's entry, from the first dump whose counters equal the table's.
fn dumped_when_counted(net: &Net, family: Family) -> ConntrackEntry {
    let mut last = None;
    for _ in 0..50 {
        let entries = net.in_router(conntrack_dump);
        let counted = (net.counter("original"), net.counter("reply"));
        let entry = entries.into_iter().find(|entry| is_flow(entry, family, 6));
        if let Some(entry) = &entry {
            if (entry.counters_original, entry.counters_reply) == (Some(counted.0), Some(counted.1))
            {
                return entry.clone();
            }
        }
        last = Some((entry, counted));
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{family:?}: the dump never agreed with the table's counters: {last:#?}");
}

#[test]
fn enable_accounting_turns_both_settings_on_and_says_what_was_on() {
    let net = Net::new(RULESET);
    let off = AccountingWasOn {
        counters: false,
        timestamps: false,
    };
    let on = AccountingWasOn {
        counters: true,
        timestamps: true,
    };
    // A new namespace starts with both off.
    assert_eq!(net.in_router(enable_accounting), off);
    assert_eq!(net.in_router(enable_accounting), on);
}

#[test]
fn events_the_kernel_could_not_queue_are_counted_as_lost() {
    let net = accounted_net();
    // The smallest buffer the kernel grants holds a handful of events.
    let mut events = net.in_router(|| ConntrackEvents::subscribe_with_buffer(1));
    let sender = RawSender::open(&net.client).expect("raw sockets");
    let (client, server) = (ipv4(Family::V4.client()), ipv4(Family::V4.server()));
    let connections = 500u16;
    for port in 0..connections {
        // A new connection each: a source port of its own.
        sender
            .send(&ipv4_udp(client, server, 20_000 + port, UDP_PORT, b"burst"))
            .expect("send");
    }
    let mut received = 0;
    let created = loop {
        let batch = events.recv(Duration::from_millis(500)).expect("receive");
        received += batch
            .iter()
            .filter(|event| event.kind == ConntrackEventKind::New)
            .count() as u64;
        // Only new connections were made, each counted by the table once.
        let created = net.counter("new").packets;
        if batch.is_empty() || received + events.lost() >= created {
            break created;
        }
    };
    assert!(
        events.lost() > 0,
        "a burst of {connections} overran {} bytes of buffer",
        events.receive_buffer()
    );
    assert_eq!(
        received + events.lost(),
        created,
        "received {received}, lost {}",
        events.lost()
    );
}

#[test]
fn without_cap_net_admin_each_reader_says_what_failed_and_what_to_do() {
    let net = Net::new(RULESET);
    let messages = net
        .router
        .run(|| {
            // Capabilities are per thread: this one, made for the call, loses CAP_NET_ADMIN.
            let mut sets = rustix::thread::capabilities(None)?;
            sets.effective
                .remove(rustix::thread::CapabilitySet::NET_ADMIN);
            rustix::thread::set_capabilities(None, sets)?;
            let message = |error: Option<nsg_netfilter::Error>| error.map(|e| e.to_string());
            Ok([
                message(ConntrackEvents::subscribe().err()),
                message(conntrack_dump().err()),
                message(Nflog::bind(5, 128).err()),
            ])
        })
        .expect("runs in the router");
    let expected = [
        (
            "subscribe to conntrack events: ",
            "run as root or with CAP_NET_ADMIN",
        ),
        (
            "dump the conntrack table: ",
            "run as root or with CAP_NET_ADMIN",
        ),
        (
            "bind nflog group 5: ",
            "or this one is neither root nor has CAP_NET_ADMIN",
        ),
    ];
    for (message, (start, end)) in messages.iter().zip(expected) {
        let message = message
            .as_deref()
            .unwrap_or_else(|| panic!("{start}succeeded"));
        assert!(
            message.starts_with(start) && message.ends_with(end),
            "{message}"
        );
        assert!(message.contains("Operation not permitted"), "{message}");
    }
}
