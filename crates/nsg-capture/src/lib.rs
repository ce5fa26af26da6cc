//! Packet captures (pcap and pcapng) turned into [`PacketMeta`] values for `opennsg replay`.
//!
//! The capture file formats are read with [`pcap_file`]; link, IP and transport headers are
//! decoded with [`etherparse`]. This crate only glues them together and decides what each frame
//! means for an NSG:
//!
//! * every frame that carries an IPv4 or IPv6 packet becomes a [`CapturedPacket`], numbered like
//!   Wireshark numbers frames (1-based, counting every packet record of the file);
//! * every other frame — ARP, LLDP and other non-IP ether types, IP fragments after the first,
//!   frames of an unsupported link type in a pcapng file with several interfaces, frames whose IP
//!   or transport header is malformed — becomes a [`Skipped`] entry with its number and a
//!   [`SkipReason`];
//! * damage to the capture file's own structure (an unknown magic number, a record or block cut
//!   off at the end of the file, an impossible block length) is a [`CaptureError`].
//!
//! ```
//! use nsg_capture::{read_capture, write_pcap, Link};
//! # use nsg_policy::packet::{PacketMeta, Time};
//! # let packets = [PacketMeta { time: Time(1), protocol: 17, src: "10.0.0.1".parse().unwrap(),
//! #     dst: "10.0.0.2".parse().unwrap(), src_port: Some(53), dst_port: Some(53),
//! #     tcp_flags: None, icmp: None, length: 60 }];
//! let bytes = write_pcap(&packets, Link::Ethernet);
//! let capture = read_capture(&bytes)?;
//! for packet in &capture.packets {
//!     println!("#{}: {:?} → {:?}", packet.number, packet.meta.src, packet.meta.dst);
//! }
//! for skipped in &capture.skipped {
//!     eprintln!("{skipped}"); // "packet 7: not IP: ARP (ether type 0x0806)"
//! }
//! # assert_eq!(capture.packets[0].meta, packets[0]);
//! # Ok::<(), nsg_capture::CaptureError>(())
//! ```
//!
//! # What a [`PacketMeta`] holds
//!
//! * `time`: the record's timestamp in microseconds since the epoch (nanosecond pcap files and
//!   pcapng interfaces with other resolutions are converted, rounding down).
//! * `protocol`: the upper-layer protocol number, i.e. the last "next header" after IPv6
//!   extension headers and an IP authentication header (AH); 6, 17, 1, 58, 50, 47, ….
//! * `length`: the IP packet's size from its own header — IPv4 total length, or 40 + IPv6
//!   payload length — not the captured length, so captures cut short by a snapshot length still
//!   count real sizes. When that field is zero or smaller than the header (TCP segmentation
//!   offload on the capturing host, IPv6 jumbograms) the frame's original length less the link
//!   header is used instead.
//! * ports for TCP and UDP, flags for TCP, [`IcmpKind`](nsg_policy::packet::IcmpKind) for ICMP
//!   and ICMPv6; all `None` for other protocols.
//!
//! # Fragments
//!
//! A first fragment (offset 0, more-fragments set) is returned as a packet with the ports, flags
//! or ICMP kind found in its transport header, and its own length. Later fragments carry no
//! transport header and so cannot be matched against port rules on their own: they are skipped
//! with [`SkipReason::LaterFragment`]. The same holds for IPv6 fragment headers.
//!
//! # Link types
//!
//! Ethernet (1, with any 802.1Q / 802.1ad / QinQ VLAN tags), Linux cooked capture SLL (113) and
//! SLL2 (276), raw IP (101 and 12; 228 IPv4, 229 IPv6), BSD null/loopback (0) and OpenBSD loop
//! (108). A pcap file of any other link type is [`CaptureError::UnsupportedLinkType`]; in a
//! pcapng file the same holds when no interface has a supported link type, otherwise the
//! packets of the unsupported interfaces are skipped one by one.
//!
//! # Captures of several interfaces
//!
//! A capture of several interfaces of a router (`tcpdump -i any`, or a pcapng file of several
//! interfaces) records each forwarded packet twice: arriving on one interface and leaving on
//! another. Each [`CapturedPacket`] says where it was seen ([`CapturePoint`]) and carries a
//! fingerprint of its bytes that the copies share; [`CopyFilter`] recognises the copies.

use std::fmt;

use nsg_policy::packet::PacketMeta;

mod copies;
mod decode;
mod read;
mod write;

pub use copies::{CopyFilter, COPY_WINDOW_MICROS};
pub use write::{write_pcap, write_pcap_recorded, write_pcapng, Link, RecordedPacket};

/// One IP packet of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapturedPacket {
    /// 1-based packet number in the file (every packet record counts, IP or not).
    pub number: u64,
    pub meta: PacketMeta,
    /// Where the capturing host saw the packet, as far as the capture says.
    pub point: CapturePoint,
    /// A hash of the IP packet's first 128 bytes (headers and the start of the payload) with the
    /// fields a router changes — IPv4 TTL and header checksum, IPv6 hop limit — taken as zero:
    /// the copies of one forwarded packet share it. Stable within one version of this crate.
    pub fingerprint: u64,
}

/// Where a capturing host saw a packet. Only some captures say: a Linux cooked capture
/// (`tcpdump -i any`) gives the direction (its packet type) and, in version 2 (SLL2), the
/// interface index; a pcapng file gives each packet's interface and may give the direction
/// (the `epb_flags` option). What the capture does not say is `None` (or interface 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapturePoint {
    /// The pcapng interface the packet was captured on; 0 in pcap files.
    pub interface: u32,
    /// The Linux interface index in a cooked capture v2 header.
    pub if_index: Option<u32>,
    pub direction: Option<LinkDirection>,
}

/// Which way a packet crossed the capturing host's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkDirection {
    /// Received: addressed to the host, broadcast, multicast, or to another host.
    Incoming,
    /// Sent by the host: its own packets and those it forwards.
    Outgoing,
}

/// A packet record that did not become a [`CapturedPacket`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Skipped {
    /// 1-based packet number in the file.
    pub number: u64,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packet {}: {}", self.number, self.reason)
    }
}

/// Why a packet record was skipped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The frame does not carry IPv4 or IPv6 (ARP, LLDP, STP, …); the text names what it carries.
    NotIp(String),
    /// An IPv4 or IPv6 fragment other than the first: it has no transport header.
    LaterFragment {
        /// Offset of the fragment in the original packet, in bytes.
        offset: u32,
    },
    /// The packet's interface has a link type this crate does not decode (pcapng files with
    /// several interfaces).
    UnsupportedLinkType { link_type: u32 },
    /// A link, IP or transport header inside the frame is malformed or cut off.
    Malformed(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotIp(what) => write!(f, "not IP: {what}"),
            SkipReason::LaterFragment { offset } => {
                write!(
                    f,
                    "IP fragment at offset {offset} (only first fragments carry ports)"
                )
            }
            SkipReason::UnsupportedLinkType { link_type } => {
                write!(f, "unsupported link type {link_type}")
            }
            SkipReason::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

/// The file format of a capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Classic libpcap format (either byte order, microsecond or nanosecond timestamps).
    Pcap,
    /// pcapng.
    PcapNg,
}

/// A decoded capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// IP packets in file order.
    pub packets: Vec<CapturedPacket>,
    /// Records that are not usable IP packets, in file order.
    pub skipped: Vec<Skipped>,
    pub format: Format,
}

/// Why a capture could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The file starts with neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng capture (unknown magic number)")]
    NotACapture,
    /// The file ends in the middle of a record or block. `packet` is the number of the packet
    /// being read (one more than the packets read completely); 0 means the file header itself.
    #[error("capture is truncated {}", truncated_where(.packet))]
    Truncated { packet: u64 },
    /// The capture's structure is damaged (impossible block or record length, packet of an
    /// undeclared interface, …). `packet` is numbered as for [`CaptureError::Truncated`].
    #[error("capture is corrupt in {}: {reason}", packet_where(.packet))]
    Corrupt { packet: u64, reason: String },
    /// The whole file has a link type this crate does not decode.
    #[error(
        "unsupported link type {link_type} (supported: Ethernet, Linux cooked capture, raw IP, \
         BSD loopback)"
    )]
    UnsupportedLinkType { link_type: u32 },
}

fn truncated_where(packet: &u64) -> String {
    if *packet == 0 {
        "in its file header".to_string()
    } else {
        format!("in packet {packet}")
    }
}

fn packet_where(packet: &u64) -> String {
    if *packet == 0 {
        "its file header".to_string()
    } else {
        format!("packet {packet}")
    }
}

/// Reads a pcap or pcapng capture held in memory.
pub fn read_capture(bytes: &[u8]) -> Result<Capture, CaptureError> {
    read::read(bytes, &mut |_| {})
}

/// Like [`read_capture`], calling `progress` with the number of bytes consumed so far every few
/// thousand packets, and once more with `bytes.len()` when done.
pub fn read_capture_with_progress(
    bytes: &[u8],
    progress: &mut dyn FnMut(usize),
) -> Result<Capture, CaptureError> {
    read::read(bytes, progress)
}
