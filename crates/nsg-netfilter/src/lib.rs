//! The kernel's flow events as typed values, read from netlink: what `opennsg enforce` needs
//! to write flow logs. Knows nothing of NSGs.
//!
//! Two sources, each a blocking reader with a timeout meant for a thread of its own:
//!
//! - **Conntrack** (ctnetlink, `NFNL_SUBSYS_CTNETLINK`): [`ConntrackEvents`] receives the
//!   events for new and destroyed connections, and [`conntrack_dump`] lists the whole table
//!   (for long-lived connections). Each connection is a [`ConntrackEntry`]: both tuples, mark,
//!   zone, status, and, with [`enable_accounting`], per-direction [`Counters`] and start and
//!   stop times. Events the kernel had to drop for want of buffer room are counted
//!   ([`ConntrackEvents::lost`]), never silently missing.
//! - **nflog** (`NFNL_SUBSYS_ULOG`): [`Nflog`] binds to the group of nftables rules such as
//!   `log group 5 prefix "…" drop` and receives each logged packet as an [`NflogPacket`]:
//!   prefix, interfaces, mark, the IP packet's [`Tuple`] and its true length.
//!
//! Sockets belong to the network namespace of the thread that opens them, for their whole life
//! (run the opening call inside `ip netns exec`, or on a thread that entered the namespace).
//! Everything needs root or CAP_NET_ADMIN.
//!
//! # Crates
//!
//! - [`netlink_packet_netfilter`] (0.4, the rust-netlink project, which also maintains
//!   `netlink-sys` and `netlink-packet-core`) frames netfilter messages and types the
//!   ctnetlink attributes of tuples, status and mark, nflog's packet attributes and its
//!   configuration requests. It leaves the rest of ctnetlink (ids, counters, timestamps, zones,
//!   ICMP tuple fields) as raw attributes, which this crate parses with
//!   `netlink-packet-core`'s length-checked NLA iterator and number parsers; nothing reads
//!   bytes at fixed offsets. Garbage gives an [`Error::Malformed`], never a panic (property
//!   tests feed both parsers random bytes and random attribute trees).
//! - [`netlink_sys`] opens and binds the socket and joins multicast groups; `rustix` polls it
//!   with a timeout and sizes its receive buffer.
//! - The `conntrack` crate (0.1.5) was not chosen: it only dumps the table (no events), goes
//!   through `neli` and brings `chrono`, `serde` and `log` along.
//! - [`etherparse`] reads the logged IP packets, tolerating copies cut short.
//!
//! # Losses
//!
//! A netlink socket whose receive buffer is full makes the kernel drop messages and report
//! ENOBUFS. Both readers enlarge their buffer (SO_RCVBUFFORCE, else SO_RCVBUF up to
//! `net.core.rmem_max`) and count what is lost exactly: conntrack events by the socket's drop
//! counter (`sk_drops`, which SO_MEMINFO reports), nflog packets by gaps in the group's
//! sequence numbers (nflog batches several packets into one message).

mod conntrack;
mod error;
mod nflog;
mod socket;
mod sysctl;
mod tuple;
mod wire;

pub use conntrack::{
    conntrack_dump, ConntrackEntry, ConntrackEvent, ConntrackEventKind, ConntrackEvents, Counters,
    DEFAULT_RECEIVE_BUFFER,
};
pub use error::{Error, Result};
pub use nflog::{Nflog, NflogPacket};
pub use sysctl::{enable_accounting, AccountingWasOn};
pub use tuple::{Transport, Tuple};
