use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::with_context;
use crate::netns::Netns;

/// How often the echo threads look at their stop flag; bounds how long Drop waits.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long an echo thread may block writing to a peer that does not read.
const ECHO_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Shortest timeout accepted: a zero timeout means "block forever" to the socket API.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A TCP listener bound to `addr` inside `ns`.
pub fn tcp_listen(ns: &Netns, addr: SocketAddr) -> io::Result<TcpListener> {
    ns.run(|| TcpListener::bind(addr))
        .map_err(|err| with_context(err, format_args!("listen on tcp {addr} in {ns}")))
}

/// Connects from `ns` to `to`, from the source address `from` if given, waiting at most
/// `timeout`. The stream's read and write timeouts are set to `timeout` as well, so no later
/// call on it blocks for longer.
///
/// A connection the firewall drops fails with [`io::ErrorKind::TimedOut`]; one it rejects
/// with a TCP reset fails with [`io::ErrorKind::ConnectionRefused`].
pub fn tcp_connect(
    ns: &Netns,
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let describe = || match from {
        Some(source) => format!("connect from {source} in {ns} to tcp {to}"),
        None => format!("connect from {ns} to tcp {to}"),
    };
    if timeout < MIN_TIMEOUT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: timeout {timeout:?} is shorter than 1ms", describe()),
        ));
    }
    let socket = ns
        .run(|| {
            let socket = Socket::new(Domain::for_address(to), Type::STREAM, Some(Protocol::TCP))?;
            if let Some(source) = from {
                socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
            }
            Ok(socket)
        })
        .map_err(|err| with_context(err, describe()))?;
    socket
        .connect_timeout(&SockAddr::from(to), timeout)
        .map_err(|err| with_context(err, describe()))?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Writes `payload` to an echo peer and reads back as many bytes, within the stream's
/// timeouts (as set by [`tcp_connect`]). Returns what came back.
pub fn echo_roundtrip(stream: &mut TcpStream, payload: &[u8]) -> io::Result<Vec<u8>> {
    let peer = stream.peer_addr().map_or_else(
        |_| "an unconnected peer".to_owned(),
        |addr| addr.to_string(),
    );
    stream
        .write_all(payload)
        .map_err(|err| with_context(err, format_args!("send to {peer}")))?;
    let mut echoed = vec![0; payload.len()];
    stream
        .read_exact(&mut echoed)
        .map_err(|err| with_context(err, format_args!("read the echo from {peer}")))?;
    Ok(echoed)
}

/// A TCP server that accepts connections in the background and echoes every byte back.
///
/// Lets a test check that a long-lived connection keeps working, e.g. across a firewall
/// rule change. Dropping it stops accepting, closes every connection and joins its threads.
pub struct EchoServer {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Listens on `addr` inside `ns` and starts serving.
    pub fn start(ns: &Netns, addr: SocketAddr) -> io::Result<EchoServer> {
        Self::serve(tcp_listen(ns, addr)?)
    }

    /// Serves an existing listener (e.g. one from [`tcp_listen`]).
    pub fn serve(listener: TcpListener) -> io::Result<EchoServer> {
        let local_addr = listener.local_addr()?;
        // Non-blocking, so the accept loop notices the stop flag.
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = thread::Builder::new()
            .name(format!("echo {local_addr}"))
            .spawn({
                let (stop, peers) = (Arc::clone(&stop), Arc::clone(&peers));
                move || accept_loop(&listener, &stop, &peers)
            })?;
        Ok(EchoServer {
            local_addr,
            stop,
            peers,
            acceptor: Some(acceptor),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Source addresses of the connections accepted so far, as the server saw them.
    pub fn accepted_peers(&self) -> Vec<SocketAddr> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            // The threads only ever end by themselves, so a panic there is already reported.
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, peers: &Mutex<Vec<SocketAddr>>) {
    thread::scope(|scope| {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, peer)) => {
                    peers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(peer);
                    // If no thread can be had, dropping the stream closes the connection.
                    let _ = thread::Builder::new()
                        .name(format!("echo {peer}"))
                        .spawn_scoped(scope, move || echo(stream, stop));
                }
                // Nothing to accept, or a connection aborted before accept: look again soon.
                Err(_) => thread::sleep(POLL_INTERVAL),
            }
        }
    });
}

fn echo(mut stream: TcpStream, stop: &AtomicBool) {
    let configured = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(Some(POLL_INTERVAL)))
        .and_then(|()| stream.set_write_timeout(Some(ECHO_WRITE_TIMEOUT)));
    if configured.is_err() {
        return;
    }
    let mut buffer = [0; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}
