//! Damaged capture files: errors with packet numbers, never a panic.

mod common;

use common::*;
use nsg_capture::{
    read_capture, read_capture_with_progress, write_pcap, write_pcapng, CaptureError, Link,
};
use nsg_policy::packet::{PacketMeta, TcpFlags, Time};
use pcap_file::Endianness;
use proptest::prelude::*;

fn five_packets() -> Vec<PacketMeta> {
    (0..5)
        .map(|i| {
            let mut p = tcp(
                "10.0.0.1",
                "10.0.0.2",
                (1000 + i, 80),
                TcpFlags::default(),
                100,
            );
            p.time = Time(T0 + u64::from(i));
            p
        })
        .collect()
}

/// Byte offsets of each pcap record (header start) in a file of equal-sized records.
fn pcap_record_start(bytes: &[u8], index: usize) -> usize {
    let record = (bytes.len() - 24) / 5;
    24 + index * record
}

#[test]
fn pcap_truncated_in_packet_3() {
    let bytes = write_pcap(&five_packets(), Link::Ethernet);
    let start = pcap_record_start(&bytes, 2);
    // In the middle of packet 3's data, and in the middle of its record header.
    for cut in [start + 16 + 30, start + 7] {
        let err = read_capture(&bytes[..cut]).unwrap_err();
        assert_eq!(err, CaptureError::Truncated { packet: 3 });
        assert_eq!(err.to_string(), "capture is truncated in packet 3");
    }
    // Cut exactly between records: two whole packets.
    assert_eq!(read_capture(&bytes[..start]).unwrap().packets.len(), 2);
    // Cut in the file header.
    let err = read_capture(&bytes[..10]).unwrap_err();
    assert_eq!(err, CaptureError::Truncated { packet: 0 });
    assert_eq!(err.to_string(), "capture is truncated in its file header");
}

#[test]
fn pcapng_truncated_in_packet_3() {
    let bytes = write_pcapng(&five_packets());
    // Section header 28 bytes, interface block 32 bytes, then equal-sized packet blocks.
    let block = (bytes.len() - 28 - 32) / 5;
    let start = 28 + 32 + 2 * block;
    for cut in [start + block / 2, start + 4, start + block - 1] {
        assert_eq!(
            read_capture(&bytes[..cut]),
            Err(CaptureError::Truncated { packet: 3 }),
            "cut at {cut}"
        );
    }
    assert_eq!(read_capture(&bytes[..start]).unwrap().packets.len(), 2);
}

#[test]
fn not_a_capture() {
    for bytes in [
        &b""[..],
        b"abc",
        b"GIF89a, not a capture at all",
        b"{\"json\": true}",
        &[0u8; 100][..],
    ] {
        assert_eq!(read_capture(bytes), Err(CaptureError::NotACapture));
    }
}

#[test]
fn corrupt_structures() {
    // A pcap record claiming 2 GB of captured data.
    let mut bytes = write_pcap(&five_packets(), Link::Ethernet);
    let start = pcap_record_start(&bytes, 1);
    bytes[start + 8..start + 12].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    assert!(matches!(
        read_capture(&bytes),
        Err(CaptureError::Corrupt { packet: 2, .. })
    ));

    // A pcapng block whose trailing length disagrees with its leading length.
    let mut bytes = write_pcapng(&five_packets());
    let block = (bytes.len() - 60) / 5;
    let start = 60 + block;
    bytes[start + 4..start + 8].copy_from_slice(&((block as u32) + 4).to_le_bytes());
    let err = read_capture(&bytes).unwrap_err();
    assert!(
        matches!(err, CaptureError::Corrupt { packet: 2, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("capture is corrupt in packet 2: "),
        "{err}"
    );

    // A block claiming 2 GB.
    let mut bytes = write_pcapng(&five_packets());
    bytes[start + 4..start + 8].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    assert!(matches!(
        read_capture(&bytes),
        Err(CaptureError::Corrupt { packet: 2, .. })
    ));

    // A block length that is not a multiple of 4.
    let mut bytes = write_pcapng(&five_packets());
    bytes[60 + 4] = bytes[60 + 4].wrapping_add(1);
    assert!(matches!(
        read_capture(&bytes),
        Err(CaptureError::Corrupt { packet: 1, .. })
    ));

    // A packet of an interface that was never described.
    let mut bytes = pcapng(
        Endianness::Little,
        &[(1, None)],
        &[(0, frame(T0, arp_frame())), (0, frame(T0, arp_frame()))],
    );
    // Section header 28 bytes, interface 20, packet blocks 32 + 44 (42-byte frame, padded).
    let second = 28 + 20 + 76;
    assert_eq!(bytes.len(), second + 76);
    bytes[second + 8..second + 12].copy_from_slice(&3u32.to_le_bytes());
    let err = read_capture(&bytes).unwrap_err();
    assert!(
        matches!(err, CaptureError::Corrupt { packet: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn progress_is_reported() {
    let mut packets = Vec::new();
    for i in 0..10_000u32 {
        let mut p = tcp(
            "10.0.0.1",
            "10.0.0.2",
            (i as u16, 80),
            TcpFlags::default(),
            40,
        );
        p.time = Time(T0 + u64::from(i));
        packets.push(p);
    }
    for bytes in [write_pcap(&packets, Link::RawIp), write_pcapng(&packets)] {
        let mut calls = Vec::new();
        let capture = read_capture_with_progress(&bytes, &mut |n| calls.push(n)).unwrap();
        assert_eq!(capture.packets.len(), 10_000);
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(calls.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*calls.last().unwrap(), bytes.len());
    }
}

fn sample_captures() -> Vec<Vec<u8>> {
    let packets = vec![
        tcp("10.0.0.1", "10.0.0.2", (1, 2), TcpFlags::default(), 60),
        udp("fd00::1", "fd00::2", (3, 4), 80),
        icmp(
            1,
            "10.0.0.1",
            "10.0.0.2",
            nsg_policy::packet::IcmpKind::EchoRequest { id: 1 },
            40,
        ),
        base(47, "10.0.0.1", "10.0.0.2", 30),
    ];
    let mut vlan = ethernet(0x8100);
    vlan.extend_from_slice(&[0, 5, 0x86, 0xdd]);
    vlan.extend_from_slice(&ipv6_tcp_syn([1; 16], [2; 16], (5, 6)));
    vec![
        write_pcap(&packets, Link::Ethernet),
        write_pcap(&packets, Link::RawIp),
        write_pcapng(&packets),
        pcap(1, &[frame(T0, arp_frame()), frame(T0, vlan)]),
        pcapng(
            Endianness::Big,
            &[(113, Some(9)), (1, None)],
            &[(1, frame(T0, arp_frame()))],
        ),
    ]
}

/// Well-formed raw IP packets with extension headers, fragments and options, for mutation.
fn sample_packets() -> Vec<Vec<u8>> {
    use etherparse::{
        IpFragOffset, IpHeaders, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header,
        Ipv6RawExtHeader, PacketBuilder,
    };
    let header = Ipv6Header {
        source: [1; 16],
        destination: [2; 16],
        hop_limit: 9,
        ..Default::default()
    };
    let options = Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0; 6]).unwrap();
    let mut out = Vec::new();
    let mut v6_exts = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(
        header.clone(),
        Ipv6Extensions {
            hop_by_hop_options: Some(options.clone()),
            destination_options: Some(options.clone()),
            routing: None,
            fragment: Some(Ipv6FragmentHeader::new(
                IpNumber::TCP,
                IpFragOffset::try_new(0).unwrap(),
                true,
                5,
            )),
            auth: None,
        },
    ))
    .tcp(1, 2, 3, 4)
    .options_raw(&[1; 8])
    .unwrap()
    .write(&mut v6_exts, &[0; 8])
    .unwrap();
    out.push(v6_exts);
    out.push(ipv4_udp([1, 2, 3, 4], [5, 6, 7, 8], (9, 10), 12));
    out.push(ipv6_tcp_syn([3; 16], [4; 16], (5, 6)));
    let mut icmp6 = Vec::new();
    PacketBuilder::ipv6([1; 16], [2; 16], 1)
        .icmpv6_echo_request(1, 2)
        .write(&mut icmp6, &[0; 4])
        .unwrap();
    out.push(icmp6);
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_capture(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_magic_never_panic(
        magic in prop::sample::select(vec![
            [0xa1u8, 0xb2, 0xc3, 0xd4],
            [0xd4, 0xc3, 0xb2, 0xa1],
            [0xa1, 0xb2, 0x3c, 0x4d],
            [0x4d, 0x3c, 0xb2, 0xa1],
            [0x0a, 0x0d, 0x0d, 0x0a],
        ]),
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&rest);
        let _ = read_capture(&bytes);
    }

    #[test]
    fn damaged_captures_never_panic(
        which in 0usize..5,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = sample_captures().swap_remove(which);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let _ = read_capture(&bytes);
    }

    #[test]
    fn damaged_frames_never_panic(
        which in 0usize..4,
        link_type in prop::sample::select(vec![0u32, 1, 12, 101, 108, 113, 228, 229, 276]),
        prefix in proptest::collection::vec(any::<u8>(), 0..24),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut data = prefix;
        data.extend_from_slice(&sample_packets()[which]);
        for (at, value) in flips {
            let i = at.index(data.len());
            data[i] ^= value;
        }
        data.truncate(cut.index(data.len() + 1));
        let orig_len = data.len() as u32 + 10;
        let bytes = pcap(link_type, &[Frame { micros: T0, data, orig_len: Some(orig_len), epb_flags: None }]);
        let capture = read_capture(&bytes).unwrap();
        prop_assert_eq!(capture.packets.len() + capture.skipped.len(), 1);
    }

    #[test]
    fn truncated_captures_fail_cleanly_or_read_a_prefix(
        which in 0usize..5,
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = sample_captures().swap_remove(which);
        let full = read_capture(&bytes).unwrap();
        let at = cut.index(bytes.len() + 1);
        match read_capture(&bytes[..at]) {
            Ok(capture) => {
                prop_assert!(capture.packets.len() <= full.packets.len());
                prop_assert_eq!(&capture.packets[..], &full.packets[..capture.packets.len()]);
            }
            Err(CaptureError::Truncated { .. }) | Err(CaptureError::NotACapture) => {}
            Err(other) => prop_assert!(false, "cut at {}: {:?}", at, other),
        }
    }
}
