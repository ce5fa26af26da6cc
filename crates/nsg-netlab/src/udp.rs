use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::with_context;
use crate::netns::Netns;

/// How often the server thread looks at its stop flag; bounds how long Drop waits.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Numbers exchanges so that each carries a payload no earlier one did.
static NEXT_EXCHANGE: AtomicU64 = AtomicU64::new(0);

/// A UDP socket bound to `addr` inside `ns`.
pub fn udp_bind(ns: &Netns, addr: SocketAddr) -> io::Result<UdpSocket> {
    ns.run(|| UdpSocket::bind(addr))
        .map_err(|err| with_context(err, format_args!("bind udp {addr} in {ns}")))
}

/// A datagram as the server received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedDatagram {
    /// Source address as seen by the server (after any NAT on the way).
    pub from: SocketAddr,
    pub payload: Vec<u8>,
}

/// A UDP server that records every datagram it receives and echoes it back to its sender.
/// Dropping it stops and joins its thread.
pub struct UdpEchoServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<(Mutex<Vec<ReceivedDatagram>>, Condvar)>,
    worker: Option<JoinHandle<()>>,
}

impl UdpEchoServer {
    /// Binds `addr` inside `ns` and starts serving.
    pub fn start(ns: &Netns, addr: SocketAddr) -> io::Result<UdpEchoServer> {
        let socket = udp_bind(ns, addr)?;
        let local_addr = socket.local_addr()?;
        // A receive timeout, so the loop notices the stop flag.
        socket.set_read_timeout(Some(POLL_INTERVAL))?;
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let worker = thread::Builder::new()
            .name(format!("udp echo {local_addr}"))
            .spawn({
                let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
                move || serve(&socket, &stop, &received)
            })?;
        Ok(UdpEchoServer {
            local_addr,
            stop,
            received,
            worker: Some(worker),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every datagram received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedDatagram> {
        lock(&self.received.0).clone()
    }

    /// Waits until a datagram carrying exactly `payload` has arrived, at most `timeout`.
    /// Returns its source address as the server saw it.
    pub fn wait_for(&self, payload: &[u8], timeout: Duration) -> Option<SocketAddr> {
        let deadline = Instant::now() + timeout;
        let (received, arrived) = &*self.received;
        let mut received = lock(received);
        loop {
            if let Some(datagram) = received.iter().find(|d| d.payload == payload) {
                return Some(datagram.from);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            received = arrived
                .wait_timeout(received, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            // The thread only ever ends by itself, so a panic there is already reported.
            let _ = worker.join();
        }
    }
}

fn serve(
    socket: &UdpSocket,
    stop: &AtomicBool,
    received: &(Mutex<Vec<ReceivedDatagram>>, Condvar),
) {
    let mut buffer = [0; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = socket.recv_from(&mut buffer) else {
            continue; // timeout (or a transient ICMP error): look at the stop flag again
        };
        let payload = &buffer[..len];
        // Recorded before echoing, so an exchange that sees the echo also sees the arrival.
        lock(&received.0).push(ReceivedDatagram {
            from,
            payload: payload.to_vec(),
        });
        received.1.notify_all();
        // The reply may be refused (e.g. by an output rule); the arrival is recorded anyway.
        let _ = socket.send_to(payload, from);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one [`udp_exchange`] observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpExchange {
    /// The client's address as the server saw it, if the datagram reached the server.
    pub arrived_from: Option<SocketAddr>,
    /// Whether the server's echo came back to the client.
    pub reply_received: bool,
}

impl UdpExchange {
    pub fn arrived(&self) -> bool {
        self.arrived_from.is_some()
    }
}

/// Sends one datagram with a fresh payload from `client_ns` (from source address `from` if
/// given) to `server`, and waits at most `timeout` in total for the echo. Reports both whether
/// the server got the datagram and whether its reply got back, so a test can tell a blocked
/// request from a blocked reply.
pub fn udp_exchange(
    client_ns: &Netns,
    from: Option<IpAddr>,
    server: &UdpEchoServer,
    timeout: Duration,
) -> io::Result<UdpExchange> {
    let deadline = Instant::now() + timeout;
    let to = server.local_addr();
    let source = from.unwrap_or(match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let payload = format!(
        "nsg-netlab udp exchange {} {}",
        std::process::id(),
        NEXT_EXCHANGE.fetch_add(1, Ordering::Relaxed)
    )
    .into_bytes();
    let describe = || format!("udp exchange from {source} in {client_ns} to {to}");

    let client = udp_bind(client_ns, SocketAddr::new(source, 0))?;
    // Connected, so that only the server's datagrams are received, and an ICMP error for the
    // request (e.g. from a reject rule) ends the wait early.
    client
        .connect(to)
        .map_err(|err| with_context(err, describe()))?;
    match client.send(&payload) {
        Ok(_) => {}
        // Netfilter refuses a locally generated packet it drops with EPERM.
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            return Ok(UdpExchange {
                arrived_from: None,
                reply_received: false,
            })
        }
        Err(err) => return Err(with_context(err, describe())),
    }
    let reply_received =
        wait_for_echo(&client, &payload, deadline).map_err(|err| with_context(err, describe()))?;
    let arrived_from =
        server.wait_for(&payload, deadline.saturating_duration_since(Instant::now()));
    Ok(UdpExchange {
        arrived_from,
        reply_received,
    })
}

fn wait_for_echo(client: &UdpSocket, payload: &[u8], deadline: Instant) -> io::Result<bool> {
    let mut buffer = vec![0; payload.len() + 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        client.set_read_timeout(Some(left))?;
        match client.recv(&mut buffer) {
            Ok(len) if buffer[..len] == *payload => return Ok(true),
            Ok(_) => {} // not our echo; keep waiting
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            // An ICMP error for the request (port, host or network unreachable) surfaces as an
            // error on receive: no reply is coming.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::PermissionDenied // ICMPv6 administratively prohibited
                ) =>
            {
                return Ok(false)
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}
