//! How fast conntrack events are read, and how many are lost, in a burst (root).
//!
//! In a router namespace of its own, N new UDP connections cross the router (hand-built
//! datagrams from N source ports, as fast as one thread sends them): N new events. Then the
//! table is flushed (`conntrack -F`): N destroy events, as fast as the kernel makes them. A
//! reader thread counts each burst's events and losses, and the time from its first event to
//! its last.
//!
//! ```text
//! cargo run --release -p nsg-netfilter --example conntrack_burst -- [N] [RECEIVE_BUFFER_BYTES]
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::thread;
use std::time::{Duration, Instant};

use nsg_netfilter::{ConntrackEventKind, ConntrackEvents, DEFAULT_RECEIVE_BUFFER};
use nsg_netlab::packet::ipv4_udp;
use nsg_netlab::RawSender;
use support::{ipv4, Family, Net};

const RULESET: &str = r#"
table inet onsg_test {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state new ct mark set 0x00050003
    }
}
"#;

/// A burst is over once no event came for this long.
const IDLE: Duration = Duration::from_secs(2);
/// Destination ports cycle through this many, source ports through the rest of the range.
const DESTINATION_PORTS: u32 = 16;

/// What the reader saw of one burst.
struct Tally {
    received: u64,
    lost: u64,
    window: Duration,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let connections: u32 = args
        .next()
        .map_or(20_000, |n| n.parse().expect("N is a number"));
    let buffer: usize = args.next().map_or(DEFAULT_RECEIVE_BUFFER, |n| {
        n.parse().expect("a buffer size in bytes")
    });
    assert!(
        connections <= 60_000 * DESTINATION_PORTS,
        "at most {} connections",
        60_000 * DESTINATION_PORTS
    );

    let net = Net::new(RULESET);
    let events = net.in_router(|| ConntrackEvents::subscribe_with_buffer(buffer));
    println!(
        "{} cores; receive buffer asked {buffer} bytes, granted {}; {connections} connections",
        thread::available_parallelism().map_or(0, |n| n.get()),
        events.receive_buffer()
    );

    let expected = u64::from(connections);
    let reader = thread::spawn(move || read_burst(events, ConntrackEventKind::New, expected));
    let sender = RawSender::open(&net.client).expect("raw sockets");
    let (client, server) = (ipv4(Family::V4.client()), ipv4(Family::V4.server()));
    let started = Instant::now();
    for n in 0..connections {
        let (source_port, destination_port) =
            (1024 + n / DESTINATION_PORTS, 10_000 + n % DESTINATION_PORTS);
        let packet = ipv4_udp(
            client,
            server,
            source_port as u16,
            destination_port as u16,
            b"burst",
        );
        sender.send(&packet).expect("send");
    }
    let sending = started.elapsed();
    let (events, new) = reader.join().expect("reader");
    report(
        "new",
        &new,
        &format!("sent in {:.3} s", sending.as_secs_f64()),
    );

    let reader = thread::spawn(move || read_burst(events, ConntrackEventKind::Destroy, expected));
    net.router
        .exec_checked("conntrack", ["-F"])
        .expect("conntrack flushes the table");
    let (_, destroy) = reader.join().expect("reader");
    report("destroy", &destroy, "flushed at once");
}

/// Counts the events of `kind` until `expected` were received or lost, or the events stop.
fn read_burst(
    mut events: ConntrackEvents,
    kind: ConntrackEventKind,
    expected: u64,
) -> (ConntrackEvents, Tally) {
    let lost_before = events.lost();
    let (mut received, mut first, mut last) = (0, None, Instant::now());
    loop {
        let batch = events.recv(IDLE).expect("receive");
        let now = Instant::now();
        let matching = batch.iter().filter(|event| event.kind == kind).count() as u64;
        if matching > 0 {
            first.get_or_insert(now);
            last = now;
            received += matching;
        }
        let lost = events.lost() - lost_before;
        if received + lost >= expected || (batch.is_empty() && first.is_some()) {
            let window = first.map_or(Duration::ZERO, |first| last - first);
            return (
                events,
                Tally {
                    received,
                    lost,
                    window,
                },
            );
        }
    }
}

fn report(burst: &str, tally: &Tally, how: &str) {
    let seconds = tally.window.as_secs_f64();
    let rate = if seconds > 0.0 {
        tally.received as f64 / seconds
    } else {
        f64::INFINITY
    };
    println!(
        "{burst:>8}: {how}; {} events received, {} lost, first to last {seconds:.3} s ({rate:.0} events/s)",
        tally.received, tally.lost
    );
}
