//! The copies of one packet in a capture of several interfaces.
//!
//! `tcpdump -i any` on a router records a forwarded packet where it arrives and again where it
//! leaves (packet type `PACKET_OUTGOING`), with the TTL or hop limit one less; a bridge adds
//! copies on the devices it stacks (a routed packet is seen on the port and on the bridge). The
//! copies share a fingerprint ([`crate::CapturedPacket::fingerprint`]) and are seen at different
//! capture points (interface and direction) within a short time.
//!
//! The rule: a packet is a copy when, within [`COPY_WINDOW_MICROS`] of the previous packet with
//! its fingerprint, its fingerprint has been seen at its capture point fewer times than at some
//! other point. So a forwarded packet counts once (its incoming copy), a packet the host sends
//! itself counts once (it has only an outgoing copy), and identical packets sent one after the
//! other (an IPv6 datagram sent again, which has no identification field to differ in) count
//! each: every one of them is seen at each point in turn. Time is the capture's.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use nsg_policy::packet::Time;
use smallvec::SmallVec;

use crate::{CapturePoint, CapturedPacket};

/// How long after the latest packet with a fingerprint another copy of it may follow, in
/// microseconds: far above a forwarding delay (microseconds to milliseconds, queues included).
pub const COPY_WINDOW_MICROS: u64 = 1_000_000;

/// Fingerprints are hashes already: Fx only has to fold them.
type Fingerprints = HashMap<u64, Sightings, BuildHasherDefault<rustc_hash::FxHasher>>;

/// How often one fingerprint was seen at each capture point.
#[derive(Default)]
struct Sightings {
    /// The time of the latest packet with the fingerprint.
    last: Time,
    /// Capture points and how many packets with the fingerprint each saw: one or two, more
    /// through a bridge.
    points: SmallVec<[(CapturePoint, u32); 2]>,
}

/// Recognises the copies among a capture's packets, fed in capture order. Memory holds the
/// fingerprints of the last two windows at most: they are kept in generations of one window,
/// the older generation dropped whole.
#[derive(Default)]
pub struct CopyFilter {
    /// Fingerprints seen since `since`.
    current: Fingerprints,
    /// Fingerprints seen in the window before, not since.
    previous: Fingerprints,
    since: Time,
}

impl CopyFilter {
    pub fn new() -> CopyFilter {
        CopyFilter::default()
    }

    /// Whether `packet` is another copy of a packet seen before it.
    pub fn is_copy(&mut self, packet: &CapturedPacket) -> bool {
        let now = packet.meta.time;
        let age = now.micros().saturating_sub(self.since.micros());
        if age >= COPY_WINDOW_MICROS {
            // A new generation, in the oldest one's storage.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
            if age >= 2 * COPY_WINDOW_MICROS {
                self.previous.clear();
            }
            self.since = now;
        }
        let sightings = match self.current.entry(packet.fingerprint) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(
                self.previous
                    .remove(&packet.fingerprint)
                    .unwrap_or_default(),
            ),
        };
        if now.micros().saturating_sub(sightings.last.micros()) > COPY_WINDOW_MICROS {
            sightings.points.clear();
        }
        sightings.last = now;
        let most = sightings.points.iter().map(|(_, n)| *n).max().unwrap_or(0);
        let here = match sightings
            .points
            .iter()
            .position(|(p, _)| *p == packet.point)
        {
            Some(i) => i,
            None => {
                sightings.points.push((packet.point, 0));
                sightings.points.len() - 1
            }
        };
        let seen_here = &mut sightings.points[here].1;
        let copy = *seen_here < most;
        *seen_here += 1;
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LinkDirection::{Incoming, Outgoing};
    use nsg_policy::packet::PacketMeta;

    const T0: u64 = 1_700_000_000_000_000;

    fn point(if_index: u32, direction: crate::LinkDirection) -> CapturePoint {
        CapturePoint {
            interface: 0,
            if_index: Some(if_index),
            direction: Some(direction),
        }
    }

    fn seen(micros: u64, fingerprint: u64, point: CapturePoint) -> CapturedPacket {
        CapturedPacket {
            number: 0,
            meta: PacketMeta {
                time: Time(T0 + micros),
                protocol: 17,
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                src_port: Some(1),
                dst_port: Some(2),
                tcp_flags: None,
                icmp: None,
                length: 28,
            },
            point,
            fingerprint,
        }
    }

    /// Packets as (µs, fingerprint, capture point).
    type Packets = Vec<(u64, u64, CapturePoint)>;

    /// Sequences of packets and which of them are copies.
    #[test]
    fn copies_are_recognised_and_originals_kept() {
        let (eth0_in, eth1_out) = (point(2, Incoming), point(3, Outgoing));
        let (eth1_in, eth0_out) = (point(3, Incoming), point(2, Outgoing));
        let (port_in, bridge_in) = (point(4, Incoming), point(5, Incoming));
        let (bridge_out, port_out) = (point(5, Outgoing), point(6, Outgoing));
        let cases: Vec<(&str, Packets, Vec<bool>)> = vec![
            (
                "forwarded both ways",
                vec![
                    (0, 1, eth0_in),
                    (20, 1, eth1_out),
                    (90, 2, eth1_in),
                    (95, 2, eth0_out),
                ],
                vec![false, true, false, true],
            ),
            (
                "sent by the host itself, received by it",
                vec![(0, 1, eth1_out), (5, 2, eth0_in), (9, 3, eth0_out)],
                vec![false, false, false],
            ),
            (
                "identical datagrams, forwarded, overlapping",
                vec![
                    (0, 1, eth0_in),
                    (1, 1, eth0_in),
                    (2, 1, eth1_out),
                    (3, 1, eth1_out),
                ],
                vec![false, false, true, true],
            ),
            (
                "identical datagrams sent by the host",
                vec![(0, 1, eth1_out), (1, 1, eth1_out)],
                vec![false, false],
            ),
            (
                "routed through a bridge: port, bridge, bridge, port",
                vec![
                    (0, 1, port_in),
                    (1, 1, bridge_in),
                    (2, 1, bridge_out),
                    (3, 1, port_out),
                ],
                vec![false, true, true, true],
            ),
            (
                "a retransmission after the window is not a copy",
                vec![(0, 1, eth0_in), (1_000_001, 1, eth1_out)],
                vec![false, false],
            ),
        ];
        for (name, packets, copies) in cases {
            let mut filter = CopyFilter::new();
            let found: Vec<bool> = packets
                .iter()
                .map(|(micros, fingerprint, point)| {
                    filter.is_copy(&seen(*micros, *fingerprint, *point))
                })
                .collect();
            assert_eq!(found, copies, "{name}");
        }
    }

    #[test]
    fn memory_holds_two_windows_at_most() {
        let mut filter = CopyFilter::new();
        for i in 0..10_000u64 {
            filter.is_copy(&seen(i * 1000, i, point(2, Incoming)));
            let held = filter.current.len() + filter.previous.len();
            assert!(held <= 2001, "{held} fingerprints after {i} ms");
        }
    }
}
