//! A seeded generator of ClassBench-like rule sets.
//!
//! This is not ClassBench's `db_generator` (whose seed files are not redistributable) but a
//! model that reproduces the structure its seed files describe, qualitatively:
//!
//! * **Sites.** Addresses are drawn around a limited number of base networks ("sites", by
//!   default `count / 8` clamped to 16–400, shared by sources and destinations), picked with a
//!   skewed popularity. A prefix of length `L` shorter than its site's base length is the site's
//!   supernet; a longer one is carved out of the site from a small pool of per-site host patterns
//!   (so `/32`s sit inside `/28`s inside `/24`s, and rules share prefixes), with a share of
//!   fully random host bits for diversity. Prefixes therefore nest and repeat as in real sets.
//! * **Shared address pairs.** A share of the rules (25–35% by profile) reuses the source and
//!   destination of an earlier rule with another protocol or ports (one host pair, several
//!   services), as in real ACLs.
//! * **Prefix lengths** per profile and side (see [`Profile`]).
//! * **Port classes** as ClassBench defines them ([`PortClass`]): WC `0:65535`, HI
//!   `1024:65535`, LO `0:1023`, EM an exact (mostly well-known) port, AR an arbitrary range
//!   (well-known ranges such as `6000:6063` or random ones). Source ports are mostly WC.
//!   Rules for protocols other than TCP and UDP, and for any protocol, have WC ports.
//! * **Protocols**: mostly TCP and UDP, some ICMP, some any, a few others (GRE, ESP, AH, OSPF,
//!   IGMP).
//! * **Order**: rules are sorted from more to less specific (prefix lengths, port and protocol
//!   specificity) with random jitter, so specific rules tend to come first as in real ACLs, but
//!   not strictly.
//! * **No exact duplicates**; flags are always `(0, 0)`.
//! * **Default rule**: [`generate`] adds none. With [`GenOptions::with_default`], the last of
//!   the `count` rules is the full wildcard [`Rule::wildcard`] (and no other rule equals it).
//!
//! Output is a pure function of `(profile, count, seed, options)`, using the crate's own
//! SplitMix64, so it is stable across platforms and dependency upgrades.
//!
//! [`Stats`](crate::Stats) measures a set; the crate documentation lists typical values.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::rng::{mix, SplitMix64};
use crate::rule::{PortClass, Rule, ALL_PORTS};

/// The three ClassBench seed families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Access control lists (router ACLs): destinations mostly `/32` and `/24`–`/31`, varied
    /// sources with many `/0`; destination ports mostly exact; mostly TCP.
    Acl,
    /// Firewalls: many `/0` on either side and short prefixes; more WC and AR ports; many
    /// any-protocol rules.
    Firewall,
    /// IP chains: a mix of both; more UDP and ICMP.
    IpChain,
}

impl Profile {
    /// All profiles.
    pub const ALL: [Profile; 3] = [Profile::Acl, Profile::Firewall, Profile::IpChain];

    /// ClassBench's short name: `acl`, `fw` or `ipc`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Acl => "acl",
            Profile::Firewall => "fw",
            Profile::IpChain => "ipc",
        }
    }

    /// Parses `acl`, `fw`/`firewall`, `ipc`/`ipchain` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Profile> {
        match name.to_ascii_lowercase().as_str() {
            "acl" => Some(Profile::Acl),
            "fw" | "firewall" => Some(Profile::Firewall),
            "ipc" | "ipchain" | "ip-chain" | "ipchains" => Some(Profile::IpChain),
            _ => None,
        }
    }

    fn params(self) -> &'static Params {
        match self {
            Profile::Acl => &ACL,
            Profile::Firewall => &FW,
            Profile::IpChain => &IPC,
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options for [`generate_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenOptions {
    /// Make the last rule the full wildcard default ([`Rule::wildcard`]); it counts toward
    /// `count`.
    pub with_default: bool,
    /// Number of base networks; `None` = `count / 8` clamped to 16–400.
    pub sites: Option<usize>,
}

/// `count` distinct rules of the given profile, deterministic for the seed, without a default
/// rule. Same as [`generate_with`] with default options.
pub fn generate(profile: Profile, count: usize, seed: u64) -> Vec<Rule> {
    generate_with(profile, count, seed, &GenOptions::default())
}

/// `count` distinct rules of the given profile, deterministic for `(seed, options)`.
pub fn generate_with(profile: Profile, count: usize, seed: u64, opts: &GenOptions) -> Vec<Rule> {
    if count == 0 {
        return Vec::new();
    }
    let p = profile.params();
    let mut rng = SplitMix64::new(seed ^ profile_salt(profile));
    let n_sites = match opts.sites {
        Some(n) => n.max(1),
        None => (count / 8).clamp(16, 400),
    };
    let sites: Vec<Site> = (0..n_sites).map(|_| Site::new(&mut rng)).collect();

    let wanted = if opts.with_default { count - 1 } else { count };
    let mut seen: HashSet<Rule> = HashSet::with_capacity(count * 2);
    seen.insert(Rule::wildcard());
    let mut keyed: Vec<(u32, Rule)> = Vec::with_capacity(count);
    let mut pairs: Vec<(Ipv4Net, Ipv4Net)> = Vec::with_capacity(count);
    let mut fails = 0u32;
    while keyed.len() < wanted {
        // After repeated duplicates (tiny sets of sites, huge counts), draw fresher rules.
        let fresh = fails > 16;
        let reuse = !fresh && !pairs.is_empty() && rng.chance(p.reuse_pair);
        let (src, dst) = if reuse {
            pairs[rng.below(pairs.len() as u64) as usize]
        } else {
            draw_pair(p, &sites, &mut rng, fresh)
        };
        let rule = draw_rule(p, src, dst, &mut rng, fresh);
        if seen.insert(rule) {
            if !reuse {
                pairs.push((src, dst));
            }
            keyed.push((specificity(&rule) + rng.below(32) as u32, rule));
            fails = 0;
        } else {
            fails += 1;
        }
    }
    // More specific first; the sort is stable so ties keep generation order.
    keyed.sort_by_key(|k| std::cmp::Reverse(k.0));
    let mut rules: Vec<Rule> = keyed.into_iter().map(|(_, r)| r).collect();
    if opts.with_default {
        rules.push(Rule::wildcard());
    }
    rules
}

fn profile_salt(profile: Profile) -> u64 {
    match profile {
        Profile::Acl => 0x0AC1_0AC1,
        Profile::Firewall => 0xF14E_3A11,
        Profile::IpChain => 0x01BC_4A15,
    }
}

fn specificity(r: &Rule) -> u32 {
    let port = |range| match PortClass::of(range) {
        PortClass::Em => 16,
        PortClass::Ar => 8,
        PortClass::Hi | PortClass::Lo => 2,
        PortClass::Wc => 0,
    };
    u32::from(r.src.prefix_len())
        + u32::from(r.dst.prefix_len())
        + port(r.src_ports)
        + port(r.dst_ports)
        + if r.protocol.is_some() { 8 } else { 0 }
}

/// A prefix-length distribution: `(lo, hi, weight)` buckets, uniform within a bucket.
type LenDist = [(u8, u8, u32)];

struct Params {
    src_len: &'static LenDist,
    dst_len: &'static LenDist,
    /// Redraw the source when both sides came out `/0` (ACLs rarely have both wild).
    avoid_double_wildcard: bool,
    /// Probability that a rule reuses the address pair of an earlier rule with other ports or
    /// protocol (one host pair, several services).
    reuse_pair: f64,
    /// Weights in [`PortClass::ALL`] order: WC, HI, LO, EM, AR.
    src_ports: [u32; 5],
    dst_ports: [u32; 5],
    /// Weights of TCP, UDP, ICMP, any, other.
    protocols: [u32; 5],
}

static ACL: Params = Params {
    src_len: &[
        (0, 0, 30),
        (1, 7, 1),
        (8, 15, 7),
        (16, 23, 18),
        (24, 24, 10),
        (25, 31, 10),
        (32, 32, 24),
    ],
    dst_len: &[
        (0, 0, 4),
        (8, 15, 4),
        (16, 23, 12),
        (24, 24, 15),
        (25, 31, 20),
        (32, 32, 45),
    ],
    avoid_double_wildcard: true,
    reuse_pair: 0.35,
    src_ports: [96, 2, 0, 1, 1],
    dst_ports: [25, 10, 2, 50, 13],
    protocols: [75, 15, 5, 4, 1],
};

static FW: Params = Params {
    src_len: &[
        (0, 0, 45),
        (1, 7, 2),
        (8, 15, 10),
        (16, 23, 15),
        (24, 24, 8),
        (25, 31, 5),
        (32, 32, 15),
    ],
    dst_len: &[
        (0, 0, 30),
        (1, 7, 2),
        (8, 15, 10),
        (16, 23, 15),
        (24, 24, 10),
        (25, 31, 8),
        (32, 32, 25),
    ],
    avoid_double_wildcard: false,
    reuse_pair: 0.25,
    src_ports: [85, 8, 1, 3, 3],
    dst_ports: [40, 8, 2, 35, 15],
    protocols: [50, 20, 5, 22, 3],
};

static IPC: Params = Params {
    src_len: &[
        (0, 0, 15),
        (1, 7, 2),
        (8, 15, 8),
        (16, 23, 20),
        (24, 24, 13),
        (25, 31, 12),
        (32, 32, 30),
    ],
    dst_len: &[
        (0, 0, 15),
        (1, 7, 1),
        (8, 15, 5),
        (16, 23, 20),
        (24, 24, 14),
        (25, 31, 10),
        (32, 32, 35),
    ],
    avoid_double_wildcard: false,
    reuse_pair: 0.3,
    src_ports: [80, 8, 2, 8, 2],
    dst_ports: [35, 12, 3, 40, 10],
    protocols: [45, 30, 15, 8, 2],
};

/// A base network.
struct Site {
    base: u32,
    len: u8,
    /// Seed of the site's host patterns.
    salt: u64,
}

impl Site {
    fn new(rng: &mut SplitMix64) -> Site {
        // Unicast-looking first octet, 1–223.
        let first = rng.range_u32(1, 223);
        let base = (first << 24) | (rng.next_u32() & 0x00FF_FFFF);
        const LENS: [(u8, u32); 7] = [
            (8, 3),
            (12, 5),
            (16, 35),
            (18, 10),
            (20, 15),
            (22, 12),
            (24, 20),
        ];
        let weights = LENS.map(|(_, w)| w);
        let len = LENS[rng.weighted(&weights)].0;
        Site {
            base: base & mask(len),
            len,
            salt: rng.next_u64(),
        }
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn net(addr: u32, len: u8) -> Ipv4Net {
    // len <= 32 always; trunc() clears the host bits.
    Ipv4Net::new(Ipv4Addr::from(addr), len.min(32))
        .unwrap_or_default()
        .trunc()
}

fn draw_len(dist: &LenDist, rng: &mut SplitMix64) -> u8 {
    let weights: Vec<u32> = dist.iter().map(|b| b.2).collect();
    let (lo, hi, _) = dist[rng.weighted(&weights)];
    rng.range_u32(u32::from(lo), u32::from(hi)) as u8
}

fn draw_prefix(len: u8, sites: &[Site], rng: &mut SplitMix64, fresh: bool) -> Ipv4Net {
    if len == 0 {
        return Ipv4Net::default();
    }
    let site = &sites[rng.skewed(sites.len(), 2)];
    if len <= site.len {
        return net(site.base, len);
    }
    let host = if !fresh && rng.chance(0.9) {
        // One of a few dozen per-site host patterns, popular ones more often.
        mix(site.salt ^ rng.skewed(32, 2) as u64) as u32
    } else {
        rng.next_u32()
    };
    net(site.base | (host & !mask(site.len)), len)
}

fn draw_pair(p: &Params, sites: &[Site], rng: &mut SplitMix64, fresh: bool) -> (Ipv4Net, Ipv4Net) {
    let dst_len = draw_len(p.dst_len, rng);
    let mut src_len = draw_len(p.src_len, rng);
    if p.avoid_double_wildcard && dst_len == 0 {
        while src_len == 0 {
            src_len = draw_len(p.src_len, rng);
        }
    }
    let src = draw_prefix(src_len, sites, rng, fresh);
    let dst = draw_prefix(dst_len, sites, rng, fresh);
    (src, dst)
}

fn draw_rule(p: &Params, src: Ipv4Net, dst: Ipv4Net, rng: &mut SplitMix64, fresh: bool) -> Rule {
    let protocol = match rng.weighted(&p.protocols) {
        0 => Some(6),
        1 => Some(17),
        2 => Some(1),
        3 => None,
        _ => Some([47, 50, 51, 89, 2][rng.below(5) as usize]),
    };
    let (src_ports, dst_ports) = match protocol {
        Some(proto @ (6 | 17)) => (
            draw_ports(&p.src_ports, proto, rng, fresh),
            draw_ports(&p.dst_ports, proto, rng, fresh),
        ),
        _ => (ALL_PORTS, ALL_PORTS),
    };
    Rule {
        src,
        dst,
        src_ports,
        dst_ports,
        protocol,
        flags: (0, 0),
    }
}

const TCP_PORTS: &[(u16, u32)] = &[
    (80, 20),
    (443, 18),
    (22, 8),
    (25, 5),
    (21, 4),
    (23, 3),
    (110, 2),
    (143, 2),
    (3389, 3),
    (1521, 3),
    (3306, 3),
    (1433, 2),
    (5432, 2),
    (8080, 4),
    (8443, 2),
    (445, 2),
    (139, 2),
    (135, 1),
    (389, 2),
    (636, 1),
    (993, 1),
    (995, 1),
    (179, 1),
    (6379, 1),
    (9200, 1),
    (27017, 1),
    (20, 1),
    (5060, 1),
];

const UDP_PORTS: &[(u16, u32)] = &[
    (53, 25),
    (123, 10),
    (161, 8),
    (162, 4),
    (67, 3),
    (68, 3),
    (69, 3),
    (500, 4),
    (4500, 3),
    (514, 4),
    (1812, 2),
    (1813, 1),
    (5060, 3),
    (137, 3),
    (138, 3),
    (1194, 2),
    (3478, 1),
];

const KNOWN_RANGES: &[((u16, u16), u32)] = &[
    ((20, 21), 6),
    ((137, 139), 5),
    ((135, 139), 2),
    ((6000, 6063), 4),
    ((5000, 5100), 2),
    ((8000, 8999), 3),
    ((49152, 65535), 4),
    ((33434, 33534), 3),
    ((1024, 5000), 3),
    ((2000, 2999), 1),
    ((10000, 20000), 2),
    ((16384, 32767), 2),
    ((3000, 3010), 1),
];

fn weighted_pick<T: Copy>(table: &[(T, u32)], rng: &mut SplitMix64) -> T {
    let weights: Vec<u32> = table.iter().map(|e| e.1).collect();
    table[rng.weighted(&weights)].0
}

fn draw_ports(weights: &[u32; 5], proto: u8, rng: &mut SplitMix64, fresh: bool) -> (u16, u16) {
    match PortClass::ALL[rng.weighted(weights)] {
        PortClass::Wc => ALL_PORTS,
        PortClass::Hi => (1024, 65535),
        PortClass::Lo => (0, 1023),
        PortClass::Em => {
            let p = if !fresh && rng.chance(0.85) {
                weighted_pick(if proto == 17 { UDP_PORTS } else { TCP_PORTS }, rng)
            } else {
                rng.range_u32(1, 65535) as u16
            };
            (p, p)
        }
        PortClass::Ar => {
            if !fresh && rng.chance(0.5) {
                return weighted_pick(KNOWN_RANGES, rng);
            }
            loop {
                let lo = rng.range_u32(0, 65534);
                let width = (1u32 << rng.range_u32(1, 12)) - 1;
                let hi = (lo + width).min(65535);
                let range = (lo as u16, hi as u16);
                if PortClass::of(range) == PortClass::Ar {
                    return range;
                }
            }
        }
    }
}
