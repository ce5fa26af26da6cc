//! Single-packet probing: send a hand-built IP packet (or whole Ethernet frame) from one
//! namespace, see whether it arrives on an interface of another. Much faster than a connection
//! per verdict.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::with_context;
use crate::netns::Netns;

/// Larger than any packet a veth delivers (its MTU is 1500, no offloads re-segment here).
const CAPTURE_BUFFER_LEN: usize = 65_536;

/// Kernel receive buffer of a capture, so a burst of a few thousand small probes is kept
/// until the test drains it (the default holds only a few hundred).
const CAPTURE_SOCKET_BUFFER: libc::c_int = 8 << 20;

/// Destination MAC, source MAC, ethertype.
const ETHERNET_HEADER_LEN: usize = 14;

/// Below this a socket receive timeout would round down to "block forever".
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Sends caller-built IPv4 and IPv6 packets from inside a namespace, headers included, so the
/// source address, ports and flags are exactly what the caller wrote.
///
/// The kernel still routes the packet (by its destination) and fills in the IPv4 header
/// checksum and total length; nothing else is changed.
pub struct RawSender {
    namespace: String,
    ipv4: Socket,
    ipv6: Socket,
}

impl RawSender {
    pub fn open(ns: &Netns) -> io::Result<RawSender> {
        // IPPROTO_RAW means "header included" for both families.
        let raw = Some(Protocol::from(libc::IPPROTO_RAW));
        let (ipv4, ipv6) = ns
            .run(|| {
                Ok((
                    Socket::new(Domain::IPV4, Type::RAW, raw)?,
                    Socket::new(Domain::IPV6, Type::RAW, raw)?,
                ))
            })
            .map_err(|err| with_context(err, format_args!("open raw IP sockets in {ns}")))?;
        Ok(RawSender {
            namespace: ns.name().to_owned(),
            ipv4,
            ipv6,
        })
    }

    /// Sends one IP packet (starting with its IPv4 or IPv6 header) towards its destination.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let invalid = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("raw send from {}: {what}", self.namespace),
            )
        };
        let (socket, dst): (&Socket, IpAddr) = match packet.first().map(|byte| byte >> 4) {
            Some(4) => {
                let header = Ipv4HeaderSlice::from_slice(packet)
                    .map_err(|err| invalid(format!("bad IPv4 header: {err}")))?;
                (&self.ipv4, header.destination_addr().into())
            }
            Some(6) => {
                let header = Ipv6HeaderSlice::from_slice(packet)
                    .map_err(|err| invalid(format!("bad IPv6 header: {err}")))?;
                (&self.ipv6, header.destination_addr().into())
            }
            _ => return Err(invalid("not an IPv4 or IPv6 packet".to_owned())),
        };
        let context = || format!("raw send from {} to {dst}", self.namespace);
        let sent = socket
            .send_to(packet, &SockAddr::from(SocketAddr::new(dst, 0)))
            .map_err(|err| with_context(err, context()))?;
        if sent != packet.len() {
            return Err(io::Error::other(format!(
                "{}: sent {sent} of {} bytes",
                context(),
                packet.len()
            )));
        }
        Ok(())
    }
}

/// Sends caller-built Ethernet frames out of one interface of a namespace, exactly as given:
/// source MAC, ethertype and everything after them are the caller's (the kernel neither routes
/// nor resolves anything, and adds no padding). For layer-2 probes such as spoofed ARP replies
/// and neighbour advertisements.
pub struct FrameSender {
    description: String,
    socket: Socket,
}

impl FrameSender {
    pub fn open(ns: &Netns, ifname: &str) -> io::Result<FrameSender> {
        let description = format!("frame sender on {ifname} in {ns}");
        let socket = ns
            .run(|| {
                let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
                let ifindex = rustix::net::netdevice::name_to_index(&socket, ifname)?;
                // Bound with protocol 0: the interface to send on, and no frames to receive, so
                // nothing piles up in a queue nobody reads.
                packet_socket::bind(&socket, ifindex, 0)?;
                Ok(socket)
            })
            .map_err(|err| with_context(err, &description))?;
        Ok(FrameSender {
            description,
            socket,
        })
    }

    /// Sends one whole Ethernet frame (destination MAC first, no FCS).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < ETHERNET_HEADER_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a frame of {} bytes has no room for an Ethernet header",
                    self.description,
                    frame.len()
                ),
            ));
        }
        let sent = self
            .socket
            .send(frame)
            .map_err(|err| with_context(err, &self.description))?;
        if sent != frame.len() {
            return Err(io::Error::other(format!(
                "{}: sent {sent} of {} bytes",
                self.description,
                frame.len()
            )));
        }
        Ok(())
    }
}

/// Records what arrives on one interface of a namespace (not what it sends), from the moment
/// it is opened: IP packets without their link-layer headers ([`open`](Self::open)), or whole
/// Ethernet frames of every protocol, ARP included ([`open_frames`](Self::open_frames)).
pub struct Capture {
    description: String,
    socket: Socket,
    /// Whole frames of every protocol, rather than IP packets only.
    frames: bool,
}

impl Capture {
    /// Captures arriving IPv4 and IPv6 packets, link-layer headers stripped; ARP and other
    /// non-IP frames are skipped.
    pub fn open(ns: &Netns, ifname: &str) -> io::Result<Capture> {
        Capture::open_kind(ns, ifname, false)
    }

    /// Captures arriving Ethernet frames whole (from the destination MAC on) and of every
    /// protocol: ARP, IP, and anything else.
    pub fn open_frames(ns: &Netns, ifname: &str) -> io::Result<Capture> {
        Capture::open_kind(ns, ifname, true)
    }

    fn open_kind(ns: &Netns, ifname: &str, frames: bool) -> io::Result<Capture> {
        let kind = if frames { "frame capture" } else { "capture" };
        let description = format!("{kind} on {ifname} in {ns}");
        // SOCK_RAW keeps the link-layer header; SOCK_DGRAM strips it.
        let socket_type = if frames { Type::RAW } else { Type::DGRAM };
        let socket = ns
            .run(|| {
                // Protocol 0 receives nothing until bound; created with "all protocols" it
                // would first see traffic of every interface.
                let socket = Socket::new(Domain::PACKET, socket_type, None)?;
                let ifindex = rustix::net::netdevice::name_to_index(&socket, ifname)?;
                packet_socket::bind(&socket, ifindex, libc::ETH_P_ALL as u16)?;
                packet_socket::force_receive_buffer(&socket, CAPTURE_SOCKET_BUFFER)?;
                Ok(socket)
            })
            .map_err(|err| with_context(err, &description))?;
        Ok(Capture {
            description,
            socket,
            frames,
        })
    }

    /// The next arriving IP packet (or frame), waiting at most `timeout`; `None` if none came.
    pub fn next_packet(&self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        self.receive_before(Instant::now() + timeout, &mut vec![0; CAPTURE_BUFFER_LEN])
    }

    /// Every IP packet (or frame) arriving within `window` (those already queued included);
    /// with a zero window, just what is queued.
    pub fn drain(&self, window: Duration) -> io::Result<Vec<Vec<u8>>> {
        let deadline = Instant::now() + window;
        let mut packets = Vec::new();
        let mut buffer = vec![0; CAPTURE_BUFFER_LEN];
        while let Some(packet) = self.receive_before(deadline, &mut buffer)? {
            packets.push(packet);
        }
        Ok(packets)
    }

    fn receive_before(&self, deadline: Instant, buffer: &mut [u8]) -> io::Result<Option<Vec<u8>>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = left >= MIN_WAIT;
            if wait {
                self.socket
                    .set_read_timeout(Some(left))
                    .map_err(|err| with_context(err, &self.description))?;
            }
            match packet_socket::receive(&self.socket, buffer, wait) {
                Ok(frame) if frame.incoming && (self.frames || frame.is_ip) => {
                    return Ok(Some(buffer[..frame.len].to_vec()))
                }
                Ok(_) => {} // sent by this interface, or not IP when only IP is wanted
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(with_context(err, &self.description)),
            }
        }
    }
}

/// The few AF_PACKET calls that need `sockaddr_ll`, which neither socket2 nor rustix wrap.
mod packet_socket {
    use super::*;

    pub(super) struct Frame {
        pub(super) len: usize,
        pub(super) incoming: bool,
        pub(super) is_ip: bool,
    }

    /// Binds to one interface, for frames of `protocol` (an ethertype; ETH_P_ALL for every
    /// protocol, 0 for none).
    pub(super) fn bind(socket: &Socket, ifindex: u32, protocol: u16) -> io::Result<()> {
        let ifindex = libc::c_int::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range")
        })?;
        // SAFETY: sockaddr_ll is plain old data, for which all zeroes is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::sa_family_t;
        address.sll_protocol = protocol.to_be();
        address.sll_ifindex = ifindex;
        // SAFETY: the pointer and length describe `address`, which outlives the call.
        let result = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&raw const address).cast::<libc::sockaddr>(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// SO_RCVBUFFORCE: like SO_RCVBUF but not capped by net.core.rmem_max (needs root).
    pub(super) fn force_receive_buffer(socket: &Socket, bytes: libc::c_int) -> io::Result<()> {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let result = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const bytes).cast::<libc::c_void>(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Receives one frame into `buffer`, waiting up to the socket's receive timeout if `wait`.
    pub(super) fn receive(socket: &Socket, buffer: &mut [u8], wait: bool) -> io::Result<Frame> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        // SAFETY: sockaddr_ll is plain old data, for which all zeroes is a valid value.
        let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
        let mut from_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the pointers and lengths describe `buffer`, `from` and `from_len`, which
        // outlive the call; the kernel writes at most those lengths.
        let received = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast::<libc::c_void>(),
                buffer.len(),
                flags,
                (&raw mut from).cast::<libc::sockaddr>(),
                &mut from_len,
            )
        };
        let len = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
        let protocol = u16::from_be(from.sll_protocol);
        Ok(Frame {
            len: len.min(buffer.len()),
            incoming: from.sll_pkttype != libc::PACKET_OUTGOING,
            is_ip: protocol == libc::ETH_P_IP as u16 || protocol == libc::ETH_P_IPV6 as u16,
        })
    }
}
