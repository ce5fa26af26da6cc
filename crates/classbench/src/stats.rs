//! Summary statistics of a rule set, in ClassBench's terms.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::rule::{PortClass, Rule};

/// Prefix-length buckets used by the [`Stats`] summary: `(label, lo, hi)`.
pub const LENGTH_BUCKETS: [(&str, u8, u8); 7] = [
    ("/0", 0, 0),
    ("/1-7", 1, 7),
    ("/8-15", 8, 15),
    ("/16-23", 16, 23),
    ("/24", 24, 24),
    ("/25-31", 25, 31),
    ("/32", 32, 32),
];

/// Counts over a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Number of rules.
    pub rules: usize,
    /// Rules per source prefix length (index = length).
    pub src_len: [usize; 33],
    /// Rules per destination prefix length (index = length).
    pub dst_len: [usize; 33],
    /// Rules per source port class, in [`PortClass::ALL`] order.
    pub src_ports: [usize; 5],
    /// Rules per destination port class, in [`PortClass::ALL`] order.
    pub dst_ports: [usize; 5],
    /// Rules per protocol (`None` = any).
    pub protocols: BTreeMap<Option<u8>, usize>,
    /// Rules with a `/0` source or destination.
    pub wildcard_side: usize,
    /// Rules with both sides `/0`.
    pub wildcard_both: usize,
    /// Distinct source prefixes.
    pub distinct_src: usize,
    /// Distinct destination prefixes.
    pub distinct_dst: usize,
}

impl Stats {
    /// Computes the statistics of `rules`.
    pub fn of(rules: &[Rule]) -> Stats {
        let mut s = Stats {
            rules: rules.len(),
            src_len: [0; 33],
            dst_len: [0; 33],
            src_ports: [0; 5],
            dst_ports: [0; 5],
            protocols: BTreeMap::new(),
            wildcard_side: 0,
            wildcard_both: 0,
            distinct_src: 0,
            distinct_dst: 0,
        };
        let class_index = |range| {
            let c = PortClass::of(range);
            PortClass::ALL.iter().position(|&k| k == c).unwrap_or(0)
        };
        let (mut srcs, mut dsts) = (HashSet::new(), HashSet::new());
        for r in rules {
            let (sl, dl) = (r.src.prefix_len(), r.dst.prefix_len());
            s.src_len[usize::from(sl.min(32))] += 1;
            s.dst_len[usize::from(dl.min(32))] += 1;
            s.src_ports[class_index(r.src_ports)] += 1;
            s.dst_ports[class_index(r.dst_ports)] += 1;
            *s.protocols.entry(r.protocol).or_default() += 1;
            s.wildcard_side += usize::from(sl == 0 || dl == 0);
            s.wildcard_both += usize::from(sl == 0 && dl == 0);
            srcs.insert(r.src);
            dsts.insert(r.dst);
        }
        s.distinct_src = srcs.len();
        s.distinct_dst = dsts.len();
        s
    }

    /// Share (0–1) of rules whose source prefix length is in `lo..=hi`.
    pub fn src_len_share(&self, lo: u8, hi: u8) -> f64 {
        self.share(range_sum(&self.src_len, lo, hi))
    }

    /// Share (0–1) of rules whose destination prefix length is in `lo..=hi`.
    pub fn dst_len_share(&self, lo: u8, hi: u8) -> f64 {
        self.share(range_sum(&self.dst_len, lo, hi))
    }

    /// Share (0–1) of rules whose source port range is of class `c`.
    pub fn src_port_share(&self, c: PortClass) -> f64 {
        self.share(self.src_ports[class_pos(c)])
    }

    /// Share (0–1) of rules whose destination port range is of class `c`.
    pub fn dst_port_share(&self, c: PortClass) -> f64 {
        self.share(self.dst_ports[class_pos(c)])
    }

    /// Share (0–1) of rules with protocol `p` (`None` = any).
    pub fn protocol_share(&self, p: Option<u8>) -> f64 {
        self.share(self.protocols.get(&p).copied().unwrap_or(0))
    }

    fn share(&self, n: usize) -> f64 {
        if self.rules == 0 {
            0.0
        } else {
            n as f64 / self.rules as f64
        }
    }
}

fn class_pos(c: PortClass) -> usize {
    PortClass::ALL.iter().position(|&k| k == c).unwrap_or(0)
}

fn range_sum(hist: &[usize; 33], lo: u8, hi: u8) -> usize {
    let (lo, hi) = (usize::from(lo.min(32)), usize::from(hi.min(32)));
    if lo > hi {
        return 0;
    }
    hist[lo..=hi].iter().sum()
}

impl fmt::Display for Stats {
    /// A few lines: prefix-length buckets per side, port classes per side, protocols, wildcards.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |x: f64| x * 100.0;
        writeln!(
            f,
            "{} rules, {} distinct src / {} distinct dst prefixes",
            self.rules, self.distinct_src, self.distinct_dst
        )?;
        for (name, hist) in [("src len", &self.src_len), ("dst len", &self.dst_len)] {
            write!(f, "{name}:")?;
            for (label, lo, hi) in LENGTH_BUCKETS {
                write!(
                    f,
                    " {label} {:.0}%",
                    pct(self.share(range_sum(hist, lo, hi)))
                )?;
            }
            writeln!(f)?;
        }
        for (name, counts) in [
            ("src ports", &self.src_ports),
            ("dst ports", &self.dst_ports),
        ] {
            write!(f, "{name}:")?;
            for (c, &n) in PortClass::ALL.iter().zip(counts.iter()) {
                write!(f, " {c} {:.0}%", pct(self.share(n)))?;
            }
            writeln!(f)?;
        }
        write!(f, "protocols:")?;
        let mut protos: Vec<_> = self.protocols.iter().collect();
        protos.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (p, &n) in protos {
            match p {
                Some(p) => write!(f, " {p} {:.1}%", pct(self.share(n)))?,
                None => write!(f, " any {:.1}%", pct(self.share(n)))?,
            }
        }
        writeln!(f)?;
        writeln!(
            f,
            "a /0 side: {:.0}%, both /0: {:.0}%",
            pct(self.share(self.wildcard_side)),
            pct(self.share(self.wildcard_both))
        )
    }
}
