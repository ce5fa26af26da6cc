//! A ClassBench-like header trace generator.
//!
//! Like ClassBench's `trace_generator`, most headers are drawn from the rules: a rule is picked
//! with a skewed (Pareto-like) popularity over a random ranking of the rules, so a few rules get
//! most of the traffic, and the header is a random point inside it: a random address in each
//! prefix, a random port in each range, and the rule's protocol (or one of TCP, UDP and ICMP for
//! an any-protocol rule). Optionally a drawn header is repeated in a short burst (temporal
//! locality, ClassBench's Pareto "b" parameter). The remaining headers (10% by default) are fully
//! random and may match no rule.
//!
//! A header drawn from rule `i` matches rule `i`, so [`first_match`](crate::first_match) of it is
//! `Some(j)` with `j <= i` (an earlier rule may shadow it).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::rng::SplitMix64;
use crate::rule::{Header, Rule};

/// Options for [`trace_with`].
#[derive(Debug, Clone, PartialEq)]
pub struct TraceOptions {
    /// Share of fully random headers, from 0 to 1 (clamped). Default 0.1.
    pub random_fraction: f64,
    /// Popularity skew: rule ranks are drawn as `floor(n * u^skew)`; 1 = uniform, larger = more
    /// skewed. Default 3 (about half of the headers come from the top 10% of the rules).
    pub skew: i32,
    /// Longest burst of copies of one drawn header (ClassBench's temporal locality); burst
    /// lengths follow a truncated Pareto law with shape 1. 1 = no bursts (the default).
    pub max_burst: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            random_fraction: 0.1,
            skew: 3,
            max_burst: 1,
        }
    }
}

/// One header of a trace and the rule it was drawn from (`None` for a random header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEntry {
    /// The header.
    pub header: Header,
    /// Index of the rule the header was drawn from; `None` for a fully random header.
    pub drawn_from: Option<usize>,
}

/// `count` headers for `rules` with the default [`TraceOptions`], deterministic for the seed.
pub fn trace(rules: &[Rule], count: usize, seed: u64) -> Vec<Header> {
    trace_with(rules, count, seed, &TraceOptions::default())
        .into_iter()
        .map(|e| e.header)
        .collect()
}

/// `count` headers with the rule each was drawn from, deterministic for `(seed, options)`.
/// With no rules, every header is random.
pub fn trace_with(rules: &[Rule], count: usize, seed: u64, opts: &TraceOptions) -> Vec<TraceEntry> {
    let mut rng = SplitMix64::new(seed ^ 0x7AAC_E5EE);
    // Popularity ranking: a random permutation, so popular rules are anywhere in the list.
    let mut ranking: Vec<usize> = (0..rules.len()).collect();
    for i in (1..ranking.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        ranking.swap(i, j);
    }
    let random_fraction = if opts.random_fraction.is_nan() {
        0.0
    } else {
        opts.random_fraction.clamp(0.0, 1.0)
    };
    let skew = opts.skew.clamp(1, 64);
    let max_burst = opts.max_burst.max(1);

    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        if rules.is_empty() || rng.chance(random_fraction) {
            out.push(TraceEntry {
                header: random_header(&mut rng),
                drawn_from: None,
            });
            continue;
        }
        let index = ranking[rng.skewed(rules.len(), skew)];
        let entry = TraceEntry {
            header: point_in(&rules[index], &mut rng),
            drawn_from: Some(index),
        };
        let burst = if max_burst > 1 {
            // Pareto with shape 1 and scale 1: P(X > x) = 1/x.
            let x = 1.0 / (1.0 - rng.unit());
            (x as usize).clamp(1, max_burst)
        } else {
            1
        };
        for _ in 0..burst.min(count - out.len()) {
            out.push(entry);
        }
    }
    out
}

fn random_header(rng: &mut SplitMix64) -> Header {
    Header {
        src: Ipv4Addr::from(rng.next_u32()),
        dst: Ipv4Addr::from(rng.next_u32()),
        src_port: rng.next_u32() as u16,
        dst_port: rng.next_u32() as u16,
        protocol: match rng.below(4) {
            0 => 6,
            1 => 17,
            2 => 1,
            _ => rng.next_u32() as u8,
        },
    }
}

/// A uniformly random point of the rule's box.
fn point_in(rule: &Rule, rng: &mut SplitMix64) -> Header {
    Header {
        src: addr_in(rule.src, rng),
        dst: addr_in(rule.dst, rng),
        src_port: port_in(rule.src_ports, rng),
        dst_port: port_in(rule.dst_ports, rng),
        protocol: rule
            .protocol
            .unwrap_or_else(|| [6, 17, 1][rng.below(3) as usize]),
    }
}

fn addr_in(net: Ipv4Net, rng: &mut SplitMix64) -> Ipv4Addr {
    let host_mask = u32::from(net.hostmask());
    let base = u32::from(net.network());
    Ipv4Addr::from(base | (rng.next_u32() & host_mask))
}

fn port_in((lo, hi): (u16, u16), rng: &mut SplitMix64) -> u16 {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    rng.range_u32(u32::from(lo), u32::from(hi)) as u16
}

/// A line of a trace file that could not be parsed. Displays as `line 3: source port: 70000 is
/// not a port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct TraceError {
    /// 1-based line number (blank and comment lines count).
    pub line: usize,
    /// The field the error is in.
    pub field: &'static str,
    pub message: String,
}

/// Parses a trace as ClassBench's `trace_generator` writes it: one header per line, whitespace
/// separated `source destination source-port destination-port protocol`, addresses as unsigned
/// decimal integers (dotted quads are accepted too); further fields (the generator's rule
/// number) are ignored, as are blank lines and lines starting with `#`.
pub fn parse_trace(text: &str) -> Result<Vec<Header>, TraceError> {
    let mut headers = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let error = |field, message: String| TraceError {
            line: i + 1,
            field,
            message,
        };
        let mut next = |field| {
            fields
                .next()
                .ok_or_else(|| error(field, "the line ends before it".into()))
        };
        let address = |field, text: &str| {
            text.parse::<u32>()
                .map(Ipv4Addr::from)
                .or_else(|_| text.parse::<Ipv4Addr>())
                .map_err(|_| error(field, format!("{text} is not an IPv4 address")))
        };
        let number = |field, text: &str, max: u32| {
            text.parse::<u32>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| error(field, format!("{text} is not a number from 0 to {max}")))
        };
        let (src, dst) = (next("source")?, next("destination")?);
        let (src_port, dst_port) = (next("source port")?, next("destination port")?);
        let protocol = next("protocol")?;
        headers.push(Header {
            src: address("source", src)?,
            dst: address("destination", dst)?,
            src_port: number("source port", src_port, 65535)? as u16,
            dst_port: number("destination port", dst_port, 65535)? as u16,
            protocol: number("protocol", protocol, 255)? as u8,
        });
    }
    Ok(headers)
}

/// Writes headers as `trace_generator` does: tab-separated, addresses as unsigned integers,
/// each line ending in the 1-based number of the rule it matches first (`0` for none).
pub fn to_trace(headers: &[Header], rules: &[Rule]) -> String {
    headers
        .iter()
        .map(|h| {
            let rule = crate::first_match(rules, h).map_or(0, |i| i + 1);
            format!(
                "{}\t{}\t{}\t{}\t{}\t{rule}\n",
                u32::from(h.src),
                u32::from(h.dst),
                h.src_port,
                h.dst_port,
                h.protocol
            )
        })
        .collect()
}
