//! The capture file formats, read with pcap-file's slice parsers.

use byteorder::{BigEndian, LittleEndian};
use nsg_policy::packet::Time;
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::{Block, PcapNgParser, RawBlock};
use pcap_file::{Endianness, PcapError, TsResolution};

use crate::decode::{decode, Decoded, LinkKind};
use crate::{
    Capture, CaptureError, CapturePoint, CapturedPacket, Format, LinkDirection, SkipReason, Skipped,
};

/// Progress is reported after this many packets.
const PROGRESS_EVERY: u64 = 4096;
/// A pcap record longer than this (and than the file's snapshot length) is taken for damage
/// rather than a frame cut off by the end of the file. Wireshark uses the same bound.
const MAX_FRAME: u32 = 262_144;
/// Likewise for pcapng blocks (Wireshark's bound too).
const MAX_BLOCK: u32 = 16 * 1024 * 1024;

pub(crate) fn read(bytes: &[u8], progress: &mut dyn FnMut(usize)) -> Result<Capture, CaptureError> {
    let capture = match bytes.first_chunk::<4>() {
        Some(
            [0xa1, 0xb2, 0xc3, 0xd4]
            | [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x4d, 0x3c, 0xb2, 0xa1],
        ) => read_pcap(bytes, progress)?,
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(bytes, progress)?,
        _ => return Err(CaptureError::NotACapture),
    };
    progress(bytes.len());
    Ok(capture)
}

/// Collects decoded packets.
struct Sink {
    packets: Vec<CapturedPacket>,
    skipped: Vec<Skipped>,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            packets: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// `interface` and `direction` are what the file format says of the packet (pcapng); the
    /// link header's direction, when it gives one, comes first.
    fn push(
        &mut self,
        number: u64,
        interface: u32,
        direction: Option<LinkDirection>,
        decoded: Result<Decoded, SkipReason>,
    ) {
        match decoded {
            Ok(decoded) => self.packets.push(CapturedPacket {
                number,
                meta: decoded.meta,
                point: CapturePoint {
                    interface,
                    if_index: decoded.if_index,
                    direction: decoded.direction.or(direction),
                },
                fingerprint: decoded.fingerprint,
            }),
            Err(reason) => self.skipped.push(Skipped { number, reason }),
        }
    }

    fn finish(self, format: Format) -> Capture {
        Capture {
            packets: self.packets,
            skipped: self.skipped,
            format,
        }
    }
}

fn corrupt(packet: u64, err: impl std::fmt::Display) -> CaptureError {
    CaptureError::Corrupt {
        packet,
        reason: err.to_string(),
    }
}

fn structure_error(packet: u64, err: PcapError) -> CaptureError {
    match err {
        PcapError::IncompleteBuffer => CaptureError::Truncated { packet },
        err => corrupt(packet, err),
    }
}

fn read_pcap(bytes: &[u8], progress: &mut dyn FnMut(usize)) -> Result<Capture, CaptureError> {
    let (mut rest, parser) = PcapParser::new(bytes).map_err(|err| structure_error(0, err))?;
    let header = parser.header();
    // The upper bits of the link field carry FCS information.
    let link_type = u32::from(header.datalink) & 0xffff;
    let link = LinkKind::from_link_type(link_type)
        .ok_or(CaptureError::UnsupportedLinkType { link_type })?;
    let nanos = header.ts_resolution == TsResolution::NanoSecond;

    let mut sink = Sink::new();
    let mut number = 0u64;
    while !rest.is_empty() {
        number += 1;
        let (remainder, record) = match parser.next_raw_packet(rest) {
            Ok(parsed) => parsed,
            Err(PcapError::IncompleteBuffer) => {
                return Err(incomplete_record(
                    rest,
                    header.endianness,
                    header.snaplen,
                    number,
                ))
            }
            Err(err) => return Err(corrupt(number, err)),
        };
        rest = remainder;
        let fraction = if nanos {
            u64::from(record.ts_frac) / 1000
        } else {
            u64::from(record.ts_frac)
        };
        let time = Time(u64::from(record.ts_sec) * 1_000_000 + fraction);
        let decoded = decode(link, &record.data, record.orig_len, time);
        sink.push(number, 0, None, decoded);
        if number.is_multiple_of(PROGRESS_EVERY) {
            progress(bytes.len() - rest.len());
        }
    }
    Ok(sink.finish(Format::Pcap))
}

/// A record that runs past the end of the file: cut off, unless its length is absurd.
fn incomplete_record(
    rest: &[u8],
    endianness: Endianness,
    snaplen: u32,
    packet: u64,
) -> CaptureError {
    if let Some(record_header) = rest.first_chunk::<16>() {
        let field = [
            record_header[8],
            record_header[9],
            record_header[10],
            record_header[11],
        ];
        let captured = match endianness {
            Endianness::Big => u32::from_be_bytes(field),
            Endianness::Little => u32::from_le_bytes(field),
        };
        if captured > MAX_FRAME.max(snaplen) {
            return corrupt(
                packet,
                format!(
                    "record claims {captured} captured bytes, more than the snapshot length \
                     ({snaplen}) and any real frame"
                ),
            );
        }
    }
    CaptureError::Truncated { packet }
}

/// A pcapng block that runs past the end of the file: cut off, unless its length is absurd.
fn incomplete_block(rest: &[u8], endianness: Endianness, packet: u64) -> CaptureError {
    if let Some(block_header) = rest.first_chunk::<8>() {
        let field = [
            block_header[4],
            block_header[5],
            block_header[6],
            block_header[7],
        ];
        let length = match endianness {
            Endianness::Big => u32::from_be_bytes(field),
            Endianness::Little => u32::from_le_bytes(field),
        };
        if length > MAX_BLOCK {
            return corrupt(
                packet,
                format!("block claims {length} bytes, more than any real block ({MAX_BLOCK})"),
            );
        }
    }
    CaptureError::Truncated { packet }
}

/// What a packet needs of its pcapng interface.
struct Interface {
    link_type: u32,
    link: Option<LinkKind>,
    snaplen: u32,
    /// if_tsresol: bit 7 clear, 10^-n seconds; set, 2^-n seconds. Default 6 (microseconds).
    ts_resolution: u8,
    /// if_tsoffset: seconds added to every timestamp.
    ts_offset: i64,
}

impl Interface {
    fn new(block: &InterfaceDescriptionBlock<'_>) -> Interface {
        let link_type = u32::from(block.linktype);
        let mut interface = Interface {
            link_type,
            link: LinkKind::from_link_type(link_type),
            snaplen: block.snaplen,
            ts_resolution: 6,
            ts_offset: 0,
        };
        for option in &block.options {
            match option {
                InterfaceDescriptionOption::IfTsResol(resolution) => {
                    interface.ts_resolution = *resolution
                }
                InterfaceDescriptionOption::IfTsOffset(offset) => {
                    interface.ts_offset = *offset as i64
                }
                _ => {}
            }
        }
        interface
    }

    /// A timestamp in the interface's units → microseconds since the epoch.
    fn time(&self, raw: u64) -> Time {
        let exponent = u32::from(self.ts_resolution & 0x7f);
        let micros = if self.ts_resolution & 0x80 != 0 {
            // 2^-n seconds; n ≤ 127 and raw·10^6 < 2^84 keep this in range.
            let micros = (u128::from(raw) * 1_000_000) >> exponent;
            u64::try_from(micros).unwrap_or(u64::MAX)
        } else if exponent >= 6 {
            10u64
                .checked_pow(exponent - 6)
                .map_or(0, |divisor| raw / divisor)
        } else {
            raw.saturating_mul(10u64.pow(6 - exponent))
        };
        let offset = self.ts_offset.saturating_mul(1_000_000);
        Time(if offset >= 0 {
            micros.saturating_add(offset as u64)
        } else {
            micros.saturating_sub(offset.unsigned_abs())
        })
    }
}

fn read_pcapng(bytes: &[u8], progress: &mut dyn FnMut(usize)) -> Result<Capture, CaptureError> {
    let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|err| structure_error(0, err))?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut any_supported = false;
    let mut first_unsupported: Option<u32> = None;
    let mut last_time = Time(0);

    let mut sink = Sink::new();
    let mut number = 0u64;
    while !rest.is_empty() {
        let (remainder, raw) = match parser.next_raw_block(rest) {
            Ok(parsed) => parsed,
            Err(PcapError::IncompleteBuffer) => {
                return Err(incomplete_block(
                    rest,
                    parser.section().endianness,
                    number + 1,
                ))
            }
            Err(err) => return Err(corrupt(number + 1, err)),
        };
        rest = remainder;
        match raw.type_ {
            SECTION_HEADER_BLOCK => interfaces.clear(),
            INTERFACE_DESCRIPTION_BLOCK => {
                if let Some(block) = parser.interfaces().last() {
                    let interface = Interface::new(block);
                    if interface.link.is_some() {
                        any_supported = true;
                    } else {
                        first_unsupported.get_or_insert(interface.link_type);
                    }
                    interfaces.push(interface);
                }
            }
            ENHANCED_PACKET_BLOCK | SIMPLE_PACKET_BLOCK | PACKET_BLOCK => {
                number += 1;
                let endianness = parser.section().endianness;
                let record = packet_record(raw, endianness).map_err(|err| corrupt(number, err))?;
                let Some(interface) = interfaces.get(record.interface as usize) else {
                    return Err(corrupt(
                        number,
                        format!(
                            "packet of interface {}, but its section describes {} interface(s)",
                            record.interface,
                            interfaces.len()
                        ),
                    ));
                };
                // Simple packet blocks have no timestamp: they get their predecessor's.
                let time = record
                    .timestamp
                    .map_or(last_time, |raw| interface.time(raw));
                last_time = time;
                let mut data = record.data;
                if record.simple {
                    // The block's data runs to its end, padding included.
                    let mut captured = data.len().min(record.orig_len as usize);
                    if interface.snaplen != 0 {
                        captured = captured.min(interface.snaplen as usize);
                    }
                    data = &data[..captured];
                }
                let decoded = match interface.link {
                    Some(link) => decode(link, data, record.orig_len, time),
                    None => Err(SkipReason::UnsupportedLinkType {
                        link_type: interface.link_type,
                    }),
                };
                sink.push(number, record.interface, record.direction, decoded);
                if number.is_multiple_of(PROGRESS_EVERY) {
                    progress(bytes.len() - rest.len());
                }
            }
            _ => {}
        }
    }
    if let (false, Some(link_type)) = (any_supported, first_unsupported) {
        return Err(CaptureError::UnsupportedLinkType { link_type });
    }
    Ok(sink.finish(Format::PcapNg))
}

struct PacketRecord<'a> {
    interface: u32,
    /// In the interface's timestamp units; `None` for simple packet blocks.
    timestamp: Option<u64>,
    orig_len: u32,
    data: &'a [u8],
    simple: bool,
    /// From an enhanced packet block's `epb_flags`.
    direction: Option<LinkDirection>,
}

/// The direction in an `epb_flags` option: its two lowest bits, 1 inbound and 2 outbound.
fn flags_direction(options: &[EnhancedPacketOption<'_>]) -> Option<LinkDirection> {
    options.iter().find_map(|option| match option {
        EnhancedPacketOption::Flags(flags) => match flags & 0b11 {
            1 => Some(LinkDirection::Incoming),
            2 => Some(LinkDirection::Outgoing),
            _ => None,
        },
        _ => None,
    })
}

fn packet_record(raw: RawBlock<'_>, endianness: Endianness) -> Result<PacketRecord<'_>, PcapError> {
    let block = match endianness {
        Endianness::Big => raw.try_into_block::<BigEndian>()?,
        Endianness::Little => raw.try_into_block::<LittleEndian>()?,
    };
    let record = match block {
        Block::EnhancedPacket(EnhancedPacketBlock {
            interface_id,
            timestamp,
            original_len,
            data,
            options,
        }) => PacketRecord {
            interface: interface_id,
            // pcap-file stores the raw 64-bit timestamp as nanoseconds, whatever the units.
            timestamp: Some(u64::try_from(timestamp.as_nanos()).unwrap_or(u64::MAX)),
            orig_len: original_len,
            data: borrowed(data),
            simple: false,
            direction: flags_direction(&options),
        },
        Block::Packet(block) => PacketRecord {
            interface: u32::from(block.interface_id),
            // The obsolete packet block stores the timestamp as two 32-bit words, high word
            // first; pcap-file reads them as one 64-bit integer, which swaps the words in
            // little-endian sections.
            timestamp: Some(match endianness {
                Endianness::Big => block.timestamp,
                Endianness::Little => block.timestamp.rotate_left(32),
            }),
            orig_len: block.original_len,
            data: borrowed(block.data),
            simple: false,
            direction: None,
        },
        Block::SimplePacket(block) => PacketRecord {
            interface: 0,
            timestamp: None,
            orig_len: block.original_len,
            data: borrowed(block.data),
            simple: true,
            direction: None,
        },
        _ => return Err(PcapError::InvalidField("not a packet block")),
    };
    Ok(record)
}

/// pcap-file's slice parsers always borrow from the input.
fn borrowed(data: std::borrow::Cow<'_, [u8]>) -> &[u8] {
    match data {
        std::borrow::Cow::Borrowed(data) => data,
        std::borrow::Cow::Owned(_) => &[],
    }
}
