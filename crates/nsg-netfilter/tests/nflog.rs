//! nflog from a real kernel (root): the router's forward chain logs TCP and UDP to group 5 and
//! drops them; the client sends hand-built packets (exact tuples and sizes) and real ones.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use nsg_netfilter::{Nflog, NflogPacket, Transport, Tuple};
use nsg_netlab::packet::{ipv4_tcp_syn, ipv4_udp, ipv6_tcp_syn, ipv6_udp};
use nsg_netlab::{udp_bind, RawSender};
use support::{ipv4, ipv6, receive_until, Family, Net};

const GROUP: u16 = 5;
const PREFIX: &str = "onsg:d:12";
/// Enough for an IPv6 header and a TCP header with options.
const COPY_RANGE: u16 = 128;

const RULESET: &str = r#"
table inet onsg_test {
    counter logged {}
    chain forward {
        type filter hook forward priority filter; policy accept;
        meta l4proto { tcp, udp } counter name "logged" log group 5 prefix "onsg:d:12" drop
    }
}
"#;

/// Longer than the copy range: the logged length must still be the packet's.
const LONG_PAYLOAD: [u8; 1000] = [b'z'; 1000];

fn ports(src: u16, dst: u16) -> Transport {
    Transport::Ports { src, dst }
}

#[test]
fn denied_packets_arrive_with_the_prefix_their_tuple_and_their_true_length() {
    let net = Net::new(RULESET);
    let mut nflog = net.in_router(|| Nflog::bind(GROUP, COPY_RANGE));
    let (v4, v6) = (Family::V4, Family::V6);
    let (client4, server4) = (ipv4(v4.client()), ipv4(v4.server()));
    let (client6, server6) = (ipv6(v6.client()), ipv6(v6.server()));
    // (packet to send, the tuple it must be logged with, its length)
    let cases: [(Vec<u8>, Tuple, u32); 4] = [
        (
            ipv4_tcp_syn(client4, server4, 40_001, 22),
            tuple(v4, 6, ports(40_001, 22)),
            40,
        ),
        (
            ipv6_tcp_syn(client6, server6, 40_002, 443),
            tuple(v6, 6, ports(40_002, 443)),
            60,
        ),
        (
            ipv4_udp(client4, server4, 40_003, 53, &LONG_PAYLOAD),
            tuple(v4, 17, ports(40_003, 53)),
            20 + 8 + 1000,
        ),
        (
            ipv6_udp(client6, server6, 40_004, 123, b"ntp?"),
            tuple(v6, 17, ports(40_004, 123)),
            40 + 8 + 4,
        ),
    ];
    let sender = RawSender::open(&net.client).expect("raw sockets");
    for (packet, _, _) in &cases {
        sender.send(packet).expect("send");
    }
    let received = receive_until(
        |timeout| nflog.recv(timeout),
        |packets| packets.len() >= cases.len(),
    );

    let (indev, outdev) = (net.router_ifindex("client"), net.router_ifindex("server"));
    assert_eq!(received.len(), cases.len(), "{received:#?}");
    for (index, (logged, (_, tuple, length))) in received.iter().zip(&cases).enumerate() {
        let hw_protocol = if logged.packet.src.is_ipv4() {
            0x0800
        } else {
            0x86dd
        };
        let expected = NflogPacket {
            prefix: PREFIX.to_owned(),
            group: GROUP,
            hw_protocol,
            indev: Some(indev),
            outdev: Some(outdev),
            timestamp: logged.timestamp,
            mark: 0,
            packet: *tuple,
            length: *length,
            sequence: Some(index as u32),
        };
        assert_eq!(logged, &expected);
        // Present when some socket on the host asked for receive timestamps; then recent.
        if let Some(stamp) = logged.timestamp {
            let age = SystemTime::now().duration_since(stamp).unwrap_or_default();
            assert!(age < Duration::from_secs(60), "stamped {stamp:?}");
        }
    }
    assert_eq!(nflog.lost(), 0);
}

#[test]
fn a_real_datagram_is_logged_as_the_stack_sent_it() {
    let net = Net::new(RULESET);
    let mut nflog = net.in_router(|| Nflog::bind(GROUP, COPY_RANGE));
    let (client, server) = (Family::V4.client(), Family::V4.server());
    let socket = udp_bind(&net.client, SocketAddr::new(client, 0)).expect("udp socket");
    let source_port = socket.local_addr().expect("bound").port();
    socket
        .send_to(&LONG_PAYLOAD, SocketAddr::new(server, 9))
        .expect("send");
    let received = receive_until(|timeout| nflog.recv(timeout), |packets| !packets.is_empty());
    let logged = received.first().unwrap_or_else(|| panic!("nothing logged"));
    assert_eq!(logged.packet, tuple(Family::V4, 17, ports(source_port, 9)));
    assert_eq!(logged.length, 20 + 8 + LONG_PAYLOAD.len() as u32);
    assert_eq!(logged.prefix, PREFIX);
}

#[test]
fn a_group_has_one_listener() {
    let net = Net::new(RULESET);
    let _first = net.in_router(|| Nflog::bind(GROUP, COPY_RANGE));
    let second = net
        .router
        .run(|| Ok(Nflog::bind(GROUP, COPY_RANGE).map(drop)))
        .expect("runs in the router");
    let message = second.expect_err("a second bind fails").to_string();
    assert!(message.starts_with("bind nflog group 5: "), "{message}");
    assert!(message.contains("another program"), "{message}");
}

fn tuple(family: Family, protocol: u8, transport: Transport) -> Tuple {
    Tuple {
        src: family.client(),
        dst: family.server(),
        protocol,
        transport,
    }
}

#[test]
fn packets_the_kernel_could_not_queue_are_counted_as_lost() {
    let net = Net::new(RULESET);
    // The smallest buffer the kernel grants holds one batch of logged packets.
    let mut nflog = net.in_router(|| Nflog::bind_with_buffer(GROUP, COPY_RANGE, 1));
    let sender = RawSender::open(&net.client).expect("raw sockets");
    let (client, server) = (ipv4(Family::V4.client()), ipv4(Family::V4.server()));
    let send = |port| {
        let packet = ipv4_udp(client, server, port, 53, b"flood");
        sender.send(&packet).expect("send");
    };
    for port in 0..300 {
        send(30_000 + port);
    }
    let mut received = drain(&mut nflog);
    // A loss shows in the sequence number of the next packet that arrives.
    send(40_000);
    received += drain(&mut nflog);
    let logged = net.counter("logged").packets;
    assert!(nflog.lost() > 0, "300 packets overran the smallest buffer");
    assert_eq!(
        received + nflog.lost(),
        logged,
        "received {received}, lost {}",
        nflog.lost()
    );
}

/// How many packets arrive until none came for half a second (the kernel sends batches
/// within 100 ms).
fn drain(nflog: &mut Nflog) -> u64 {
    let mut received = 0;
    loop {
        let batch = nflog.recv(Duration::from_millis(500)).expect("receive");
        if batch.is_empty() {
            return received;
        }
        received += batch.len() as u64;
    }
}
