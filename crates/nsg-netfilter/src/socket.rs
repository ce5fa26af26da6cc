//! The NETLINK_NETFILTER socket both sources read: requests with acknowledgements, waiting
//! with a timeout, receive buffer sizing, and the kernel's count of messages it dropped.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_netfilter::NetfilterMessage;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::error::{Error, Result};

/// Room for any datagram the kernel sends us: events are one message each (a few hundred
/// bytes), nflog batches fill at most its buffer (a page by default), dumps fill at most 32 KiB.
const DATAGRAM_CAPACITY: usize = 64 * 1024;

/// How long a request may wait for its acknowledgement or for the next part of a dump. The
/// kernel answers requests synchronously, so only a wedged kernel takes this long.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one receive found.
pub(crate) enum Received {
    /// A datagram, now in [`NetfilterSocket::datagram`].
    Datagram,
    /// The kernel dropped messages for want of room in the receive buffer (ENOBUFS); the
    /// socket stays usable and [`NetfilterSocket::dropped`] says how many.
    Overrun,
    /// Nothing is waiting.
    Empty,
}

pub(crate) struct NetfilterSocket {
    socket: Socket,
    last_sequence: u32,
    buffer: Vec<u8>,
    /// How much of `buffer` the last datagram received fills.
    datagram_length: usize,
    /// Datagrams that arrived while a request waited for its acknowledgement, in order.
    backlog: VecDeque<Vec<u8>>,
}

impl NetfilterSocket {
    /// A socket in the calling thread's network namespace, bound to a port the kernel picks.
    pub(crate) fn open(purpose: &str) -> Result<NetfilterSocket> {
        let mut socket = Socket::new(NETLINK_NETFILTER)
            .map_err(|err| Error::io(format!("{purpose}: open a netfilter netlink socket"), err))?;
        socket
            .bind_auto()
            .map_err(|err| Error::io(format!("{purpose}: bind a netfilter netlink socket"), err))?;
        Ok(NetfilterSocket {
            socket,
            last_sequence: 0,
            buffer: Vec::new(),
            datagram_length: 0,
            backlog: VecDeque::new(),
        })
    }

    /// Joins a multicast group (e.g. `NFNLGRP_CONNTRACK_NEW`).
    pub(crate) fn join(&self, group: u32, action: &str) -> Result<()> {
        self.socket
            .add_membership(group)
            .map_err(|err| Error::io(action, err))
    }

    /// Asks for a receive buffer of `bytes`: beyond `net.core.rmem_max` where the process may
    /// (SO_RCVBUFFORCE, CAP_NET_ADMIN), else as much as that limit allows. Returns the size the
    /// kernel settled on (it doubles the request for its bookkeeping).
    pub(crate) fn enlarge_receive_buffer(&self, bytes: usize) -> Result<usize> {
        let forced = rustix::net::sockopt::set_socket_recv_buffer_size_force(&self.socket, bytes);
        if forced.is_err() {
            rustix::net::sockopt::set_socket_recv_buffer_size(&self.socket, bytes)
                .map_err(|err| Error::io("set the netlink receive buffer size", err.into()))?;
        }
        rustix::net::sockopt::socket_recv_buffer_size(&self.socket)
            .map_err(|err| Error::io("read the netlink receive buffer size", err.into()))
    }

    /// Sends `message` to the kernel as a request asking for an acknowledgement, and waits for
    /// it. Whatever else arrives meanwhile is kept for [`receive`](Self::receive).
    pub(crate) fn request_acknowledged(
        &mut self,
        message: NetlinkMessage<NetfilterMessage>,
        action: &str,
    ) -> Result<()> {
        let sequence = self.send(message, NLM_F_REQUEST | NLM_F_ACK, action)?;
        loop {
            self.receive_within(ANSWER_TIMEOUT, action)?;
            if let Some(answer) = acknowledgement(self.datagram(), sequence) {
                return answer.map_err(|err| Error::io(action, err));
            }
            self.backlog.push_back(self.datagram().to_vec());
        }
    }

    /// Sends `message` with the header `flags`; returns the sequence number it carries.
    pub(crate) fn send(
        &mut self,
        mut message: NetlinkMessage<NetfilterMessage>,
        flags: u16,
        action: &str,
    ) -> Result<u32> {
        self.last_sequence = self.last_sequence.wrapping_add(1);
        message.header.flags = flags;
        message.header.sequence_number = self.last_sequence;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        let kernel = SocketAddr::new(0, 0);
        self.socket
            .send_to(&bytes, &kernel, 0)
            .map_err(|err| Error::io(action, err))?;
        Ok(self.last_sequence)
    }

    /// Waits at most `timeout` until something can be received (or an overrun is pending).
    pub(crate) fn wait(&self, timeout: Duration) -> io::Result<bool> {
        if !self.backlog.is_empty() {
            return Ok(true);
        }
        // A timeout too long for a timespec is as good as forever.
        let timespec = Timespec::try_from(timeout).ok();
        let mut fds = [PollFd::new(&self.socket, PollFlags::IN)];
        loop {
            match poll(&mut fds, timespec.as_ref()) {
                Ok(ready) => return Ok(ready > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Receives one datagram without blocking.
    pub(crate) fn receive(&mut self) -> io::Result<Received> {
        if let Some(datagram) = self.backlog.pop_front() {
            self.datagram_length = datagram.len();
            self.buffer = datagram;
            return Ok(Received::Datagram);
        }
        if self.buffer.len() < DATAGRAM_CAPACITY {
            self.buffer.resize(DATAGRAM_CAPACITY, 0);
        }
        let received = loop {
            match self.socket.recv(
                &mut &mut self.buffer[..],
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            ) {
                Ok(length) => break length,
                Err(err) => match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return Ok(Received::Empty),
                    Some(libc::ENOBUFS) => return Ok(Received::Overrun),
                    _ => return Err(err),
                },
            }
        };
        if received > self.buffer.len() {
            return Err(io::Error::other(format!(
                "a datagram of {received} bytes exceeds the {DATAGRAM_CAPACITY} bytes read"
            )));
        }
        self.datagram_length = received;
        Ok(Received::Datagram)
    }

    /// The datagram the last [`Received::Datagram`] stands for.
    pub(crate) fn datagram(&self) -> &[u8] {
        &self.buffer[..self.datagram_length]
    }

    /// Receives the next datagram (then in [`datagram`](Self::datagram)), waiting at most
    /// `timeout` for it. Overruns are passed over: they concern multicast messages, which the
    /// answers to requests are not.
    pub(crate) fn receive_within(&mut self, timeout: Duration, action: &str) -> Result<()> {
        loop {
            if !self.wait(timeout).map_err(|err| Error::io(action, err))? {
                return Err(Error::NoAnswer {
                    action: action.to_owned(),
                    waited: timeout,
                });
            }
            if let Received::Datagram = self.receive().map_err(|err| Error::io(action, err))? {
                return Ok(());
            }
        }
    }

    /// How many messages the kernel has dropped for this socket since it was opened, for want
    /// of room in its receive buffer (the socket's `sk_drops`, read with SO_MEMINFO). The
    /// kernel's counter is 32 bits wide and wraps.
    pub(crate) fn dropped(&self) -> io::Result<u32> {
        let mut meminfo = [0u32; MEMINFO_FIELDS];
        let mut length =
            libc::socklen_t::try_from(std::mem::size_of_val(&meminfo)).map_err(io::Error::other)?;
        // SAFETY: the kernel writes at most `length` bytes into `meminfo`, which is that long,
        // and updates `length`, a valid socklen_t.
        let status = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                linux_raw_sys::net::SO_MEMINFO as libc::c_int,
                meminfo.as_mut_ptr().cast(),
                &mut length,
            )
        };
        if status != 0 {
            return Err(io::Error::last_os_error());
        }
        let drops = libc::SK_MEMINFO_DROPS as usize;
        if (length as usize) < (drops + 1) * std::mem::size_of::<u32>() {
            return Err(io::Error::other("SO_MEMINFO did not report drops"));
        }
        Ok(meminfo[drops])
    }
}

/// SK_MEMINFO_VARS: the fields of SO_MEMINFO's answer.
const MEMINFO_FIELDS: usize = libc::SK_MEMINFO_DROPS as usize + 1;

/// The answer to request `sequence` if `datagram` holds it: `Ok` for an acknowledgement, the
/// error the kernel reported otherwise. `None` if the datagram is something else.
fn acknowledgement(datagram: &[u8], sequence: u32) -> Option<io::Result<()>> {
    let message = NetlinkMessage::<NetfilterMessage>::deserialize(datagram).ok()?;
    if message.header.sequence_number != sequence {
        return None;
    }
    match message.payload {
        NetlinkPayload::Error(error) => Some(match error.code {
            None => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        }),
        _ => None,
    }
}
