//! A generic five-field packet classifier: "which is the first rule (by index) matching this
//! header, within this range of rules?"
//!
//! Design (a bit-vector scheme, Lakshman & Stiliadis '98, with aggregated bit vectors, Baboescu &
//! Varghese '01): each field's axis is cut into elementary intervals at every rule boundary; every
//! interval maps to an equivalence *class*, the set of rules whose field matches there, stored once
//! as a bitset (rule `i` is bit `i`). A lookup finds one class per field (binary search over
//! interval starts, a table for the protocol) and ANDs the five bitsets, skipping zero regions
//! through one summary bit per 64-bit word. The lowest set bit is the first matching rule.
//!
//! Why this shape for NSGs: a rule side is an arbitrary *set* (a service tag is thousands of
//! disjoint prefixes, an ASG scattered hosts), which per-field intervals absorb without multiplying
//! rules, where decision trees and tuple spaces would have to split or replicate them. Build is
//! linear in the number of interval boundaries, so a policy can be rebuilt on every change.

use nsg_model::rule::PortRange;
use nsg_tags::PrefixSet;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<rustc_hash::FxHasher>>;
use std::net::IpAddr;

/// A set of IP protocol numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProtocolSet([u64; 4]);

impl ProtocolSet {
    pub const ALL: ProtocolSet = ProtocolSet([u64::MAX; 4]);
    pub fn with(mut self, protocol: u8) -> ProtocolSet {
        self.0[usize::from(protocol >> 6)] |= 1 << (protocol & 63);
        self
    }
    pub fn contains(&self, protocol: u8) -> bool {
        self.0[usize::from(protocol >> 6)] & (1 << (protocol & 63)) != 0
    }
    pub fn intersection(&self, other: &ProtocolSet) -> ProtocolSet {
        ProtocolSet(std::array::from_fn(|i| self.0[i] & other.0[i]))
    }
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
    /// The protocols of the set whose packets carry ports rules compare (TCP and UDP).
    pub fn with_ports(&self) -> ProtocolSet {
        self.intersection(
            &ProtocolSet::default()
                .with(nsg_model::rule::ip_proto::TCP)
                .with(nsg_model::rule::ip_proto::UDP),
        )
    }
    /// Whether every protocol of `self` is in `other`.
    pub fn is_subset(&self, other: &ProtocolSet) -> bool {
        self.intersection(other) == *self
    }
}

/// One rule as the classifier sees it, in packet terms (source, destination).
#[derive(Clone, Debug)]
pub struct FieldRule<'a> {
    /// `None` matches every address.
    pub source: Option<&'a PrefixSet>,
    pub destination: Option<&'a PrefixSet>,
    pub source_ports: Vec<PortRange>,
    pub destination_ports: Vec<PortRange>,
    pub protocols: ProtocolSet,
    /// Whether the rule matches packets without ports (protocols other than TCP and UDP).
    pub matches_portless: bool,
    /// An inactive rule never matches (an NSG rule not applied at this NIC).
    pub active: bool,
}

/// The class id meaning "outside the field's domain": lookups there give no answer.
const FOREIGN: u32 = u32::MAX;

/// Interned bitsets of the rule sets of every field's classes.
#[derive(Clone, Debug)]
struct ClassTable {
    words_per_class: usize,
    summary_words_per_class: usize,
    words: Vec<u64>,
    summaries: Vec<u64>,
    ids: FastMap<Vec<u64>, u32>,
}

impl ClassTable {
    fn new(rules: usize) -> ClassTable {
        let words_per_class = rules.div_ceil(64).max(1);
        ClassTable {
            words_per_class,
            summary_words_per_class: words_per_class.div_ceil(64),
            words: Vec::new(),
            summaries: Vec::new(),
            ids: FastMap::default(),
        }
    }

    fn intern(&mut self, bits: &[u64]) -> u32 {
        if let Some(&id) = self.ids.get(bits) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).expect("fewer than 2^32 classes");
        self.words.extend_from_slice(bits);
        let mut summary = vec![0u64; self.summary_words_per_class];
        for (i, w) in bits.iter().enumerate() {
            if *w != 0 {
                summary[i / 64] |= 1 << (i % 64);
            }
        }
        self.summaries.extend_from_slice(&summary);
        self.ids.insert(bits.to_vec(), id);
        id
    }

    /// The bitset of `class`.
    #[inline]
    fn class_words(&self, class: u32) -> &[u64] {
        let start = class as usize * self.words_per_class;
        &self.words[start..start + self.words_per_class]
    }

    fn summary(&self, class: u32, index: usize) -> u64 {
        self.summaries[class as usize * self.summary_words_per_class + index]
    }

    /// Bytes allocated for the classes (the interning map is dropped after the build).
    fn bytes(&self) -> usize {
        (self.words.capacity() + self.summaries.capacity()) * std::mem::size_of::<u64>()
    }
}

/// A running bitset swept along an axis.
struct Sweep {
    bits: Vec<u64>,
}

impl Sweep {
    fn set(&mut self, rule: usize, on: bool) {
        let (w, b) = (rule / 64, rule % 64);
        if on {
            self.bits[w] |= 1 << b;
        } else {
            self.bits[w] &= !(1 << b);
        }
    }
}

/// A point on an axis: an IPv4 address or port (`u32`), or an IPv6 address (`u128`).
trait AxisKey: Copy + Ord + Default {
    /// The top 16 bits, which pick a bucket of the axis index.
    fn bucket(self) -> usize;
}

impl AxisKey for u32 {
    fn bucket(self) -> usize {
        (self >> 16) as usize
    }
}

impl AxisKey for u128 {
    fn bucket(self) -> usize {
        (self >> 112) as usize
    }
}

/// Axes shorter than this are searched directly; longer ones get a bucket index.
const INDEXED_AXIS: usize = 256;

/// Intervals of one axis, each with its class.
#[derive(Clone, Debug, Default)]
struct Axis<T> {
    /// `(start, class)` of each interval, by start; side by side so a lookup's last step and
    /// its answer share a cache line.
    intervals: Vec<(T, u32)>,
    /// For long axes: `buckets[b]..buckets[b + 1]` are the intervals starting in bucket `b`
    /// (the top 16 bits), so a lookup searches a few starts instead of all of them.
    buckets: Vec<u32>,
}

impl<T: AxisKey> Axis<T> {
    fn index(&mut self) {
        // Built by pushing: give back what growth over-allocated, so that memory reported is
        // memory held.
        self.intervals.shrink_to_fit();
        if self.intervals.len() < INDEXED_AXIS {
            return;
        }
        let mut buckets = Vec::with_capacity(65537);
        let mut i = 0;
        for b in 0..=65536usize {
            while i < self.intervals.len() && self.intervals[i].0.bucket() < b {
                i += 1;
            }
            buckets.push(i as u32);
        }
        self.buckets = buckets;
    }

    /// Bytes allocated for the axis.
    fn bytes(&self) -> usize {
        self.intervals.capacity() * std::mem::size_of::<(T, u32)>()
            + self.buckets.capacity() * std::mem::size_of::<u32>()
    }

    #[inline]
    fn lookup(&self, x: T) -> u32 {
        let i = if self.buckets.is_empty() {
            self.intervals.partition_point(|&(s, _)| s <= x)
        } else {
            let b = x.bucket();
            let (low, high) = (self.buckets[b] as usize, self.buckets[b + 1] as usize);
            low + self.intervals[low..high].partition_point(|&(s, _)| s <= x)
        };
        // The first interval starts at 0, so `i >= 1`.
        self.intervals[i - 1].1
    }
}

/// Builds an axis from per-rule inclusive ranges (each rule's ranges disjoint). `always` rules
/// match the whole axis; `domain`, if given, limits where answers exist.
fn build_axis<T: AxisKey>(
    table: &mut ClassTable,
    rules: usize,
    always: &[usize],
    ranges: &[(usize, T, T)],
    domain: Option<&[(T, T)]>,
    max: T,
    next: impl Fn(T) -> T,
) -> Axis<T> {
    // (position, rule, on): turn the rule on at the start of a range, off after its end.
    let mut events: Vec<(T, bool, usize)> = Vec::with_capacity(ranges.len() * 2);
    for &(rule, low, high) in ranges {
        events.push((low, true, rule));
        if high < max {
            events.push((next(high), false, rule));
        }
    }
    // The domain acts as a pseudo-rule: outside it the class is FOREIGN.
    let domain_marker = rules;
    if let Some(domain) = domain {
        for &(low, high) in domain {
            events.push((low, true, domain_marker));
            if high < max {
                events.push((next(high), false, domain_marker));
            }
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    let mut sweep = Sweep {
        bits: vec![0; table.words_per_class],
    };
    for &rule in always {
        sweep.set(rule, true);
    }
    let mut in_domain = domain.is_none();
    let mut axis = Axis {
        intervals: Vec::new(),
        buckets: Vec::new(),
    };
    let emit = |axis: &mut Axis<T>, at: T, class: u32| {
        if axis.intervals.last().map(|&(_, c)| c) != Some(class) {
            axis.intervals.push((at, class));
        }
    };
    let mut i = 0;
    let mut position = T::default();
    loop {
        while i < events.len() && events[i].0 == position {
            let (_, on, rule) = events[i];
            if rule == domain_marker {
                in_domain = on;
            } else {
                sweep.set(rule, on);
            }
            i += 1;
        }
        let class = if in_domain {
            table.intern(&sweep.bits)
        } else {
            FOREIGN
        };
        emit(&mut axis, position, class);
        if i == events.len() {
            break;
        }
        position = events[i].0;
    }
    axis.index();
    axis
}

/// The address field: IPv4 and IPv6 axes sharing one class table.
#[derive(Clone, Debug, Default)]
struct AddressField {
    v4: Axis<u32>,
    v6: Axis<u128>,
}

impl AddressField {
    fn lookup(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
}

/// The port field: an axis for packets with ports and one class for packets without.
#[derive(Clone, Debug, Default)]
struct PortField {
    axis: Axis<u32>,
    portless: u32,
}

impl PortField {
    fn lookup(&self, port: Option<u16>) -> u32 {
        match port {
            Some(p) => self.axis.lookup(u32::from(p)),
            None => self.portless,
        }
    }
}

/// The bitset of the active rules satisfying `predicate`.
fn rule_bits(
    table: &ClassTable,
    rules: &[FieldRule<'_>],
    predicate: impl Fn(&FieldRule<'_>) -> bool,
) -> Vec<u64> {
    let mut bits = vec![0u64; table.words_per_class];
    for (i, rule) in rules.iter().enumerate() {
        if rule.active && predicate(rule) {
            bits[i / 64] |= 1 << (i % 64);
        }
    }
    bits
}

fn address_field<'a>(
    table: &mut ClassTable,
    rules: &[FieldRule<'a>],
    side: impl Fn(&FieldRule<'a>) -> Option<&'a PrefixSet>,
    domain: Option<&PrefixSet>,
) -> AddressField {
    let n = rules.len();
    let mut always = Vec::new();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (i, rule) in rules.iter().enumerate().filter(|(_, r)| r.active) {
        match side(rule) {
            None => always.push(i),
            Some(set) => {
                v4.extend(set.v4_ranges().iter().map(|&(l, h)| (i, l, h)));
                v6.extend(set.v6_ranges().iter().map(|&(l, h)| (i, l, h)));
            }
        }
    }
    AddressField {
        v4: build_axis(
            table,
            n,
            &always,
            &v4,
            domain.map(|d| d.v4_ranges()),
            u32::MAX,
            |x| x + 1,
        ),
        v6: build_axis(
            table,
            n,
            &always,
            &v6,
            domain.map(|d| d.v6_ranges()),
            u128::MAX,
            |x| x + 1,
        ),
    }
}

fn port_field<'r>(
    table: &mut ClassTable,
    rules: &'r [FieldRule<'_>],
    side: impl Fn(&'r FieldRule<'_>) -> &'r [PortRange],
) -> PortField {
    let mut ranges = Vec::new();
    for (i, rule) in rules.iter().enumerate().filter(|(_, r)| r.active) {
        // A rule's port list may overlap itself; the sweep needs each rule's ranges disjoint.
        let mut own: Vec<(u32, u32)> = side(rule)
            .iter()
            .map(|r| (u32::from(r.low), u32::from(r.high)))
            .collect();
        own.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(own.len());
        for (l, h) in own {
            match merged.last_mut() {
                Some(last) if l <= last.1 + 1 => last.1 = last.1.max(h),
                _ => merged.push((l, h)),
            }
        }
        ranges.extend(merged.into_iter().map(|(l, h)| (i, l, h)));
    }
    let portless = rule_bits(table, rules, |r| r.matches_portless);
    PortField {
        axis: build_axis(
            table,
            rules.len(),
            &[],
            &ranges,
            Some(&[(0, u32::from(u16::MAX))]),
            u32::MAX,
            |x| x + 1,
        ),
        portless: table.intern(&portless),
    }
}

/// A header to classify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub protocol: u8,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: Option<u16>,
    pub destination_port: Option<u16>,
}

/// The classes of one header, one per field; computed once, then asked for several rule ranges.
#[derive(Clone, Copy, Debug)]
pub struct Classes([u32; 5]);

/// An immutable classifier over an ordered list of rules.
#[derive(Clone, Debug)]
pub struct Classifier {
    rules: usize,
    table: ClassTable,
    source: AddressField,
    destination: AddressField,
    source_port: PortField,
    destination_port: PortField,
    protocol: Box<[u32; 256]>,
}

/// Limits on where a classifier answers: addresses outside a domain give no answer (the caller
/// falls back to a slower path). NSG policies restrict the NIC's own side to its addresses.
#[derive(Clone, Debug, Default)]
pub struct Domains<'a> {
    pub source: Option<&'a PrefixSet>,
    pub destination: Option<&'a PrefixSet>,
}

impl Classifier {
    pub fn build(rules: &[FieldRule<'_>], domains: &Domains<'_>) -> Classifier {
        let mut table = ClassTable::new(rules.len());
        let source = address_field(&mut table, rules, |r| r.source, domains.source);
        let destination = address_field(&mut table, rules, |r| r.destination, domains.destination);
        let source_port = port_field(&mut table, rules, |r| &r.source_ports);
        let destination_port = port_field(&mut table, rules, |r| &r.destination_ports);
        let mut protocol = Box::new([0u32; 256]);
        for (number, class) in (0..=u8::MAX).zip(protocol.iter_mut()) {
            let bits = rule_bits(&table, rules, |r| r.protocols.contains(number));
            *class = table.intern(&bits);
        }
        // The interning map is only needed while building.
        table.ids = FastMap::default();
        table.words.shrink_to_fit();
        table.summaries.shrink_to_fit();
        Classifier {
            rules: rules.len(),
            table,
            source,
            destination,
            source_port,
            destination_port,
            protocol,
        }
    }

    /// The classes of `header`, or `None` if an address is outside its domain.
    #[inline]
    pub fn classes(&self, header: &Header) -> Option<Classes> {
        let classes = [
            self.source.lookup(header.source),
            self.destination.lookup(header.destination),
            self.source_port.lookup(header.source_port),
            self.destination_port.lookup(header.destination_port),
            self.protocol[usize::from(header.protocol)],
        ];
        (!classes.contains(&FOREIGN)).then_some(Classes(classes))
    }

    /// The first rule in `start..end` that matches the header of `classes`.
    #[inline]
    pub fn first_match(&self, classes: &Classes, start: usize, end: usize) -> Option<usize> {
        let end = end.min(self.rules);
        if start >= end {
            return None;
        }
        let t = &self.table;
        let [a, b, c, d, e] = classes.0.map(|class| t.class_words(class));
        let first_word = start / 64;
        let last_word = (end - 1) / 64;
        for s in first_word / 64..=last_word / 64 {
            let mut summary = classes
                .0
                .iter()
                .fold(u64::MAX, |acc, &class| acc & t.summary(class, s));
            while summary != 0 {
                let w = s * 64 + summary.trailing_zeros() as usize;
                summary &= summary - 1;
                if w < first_word {
                    continue;
                }
                if w > last_word {
                    return None;
                }
                let mut bits = a[w] & b[w] & c[w] & d[w] & e[w];
                if w == first_word {
                    bits &= u64::MAX << (start % 64);
                }
                if w == last_word && !end.is_multiple_of(64) {
                    bits &= u64::MAX >> (64 - end % 64);
                }
                if bits != 0 {
                    return Some(w * 64 + bits.trailing_zeros() as usize);
                }
            }
        }
        None
    }

    /// Bytes of the class bitsets and axes.
    pub fn memory_bytes(&self) -> usize {
        let address = |f: &AddressField| f.v4.bytes() + f.v6.bytes();
        self.table.bytes()
            + address(&self.source)
            + address(&self.destination)
            + self.source_port.axis.bytes()
            + self.destination_port.axis.bytes()
            + std::mem::size_of_val(&*self.protocol)
    }

    /// Number of elementary intervals over all fields.
    pub fn interval_count(&self) -> usize {
        let address = |f: &AddressField| f.v4.intervals.len() + f.v6.intervals.len();
        address(&self.source)
            + address(&self.destination)
            + self.source_port.axis.intervals.len()
            + self.destination_port.axis.intervals.len()
    }

    /// Number of distinct classes (bitsets) over all fields.
    pub fn class_count(&self) -> usize {
        self.table.words.len() / self.table.words_per_class
    }
}

/// An axis of a classifier, for analyses that walk its elementary intervals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxisId {
    SourceV4,
    SourceV6,
    DestinationV4,
    DestinationV6,
    SourcePort,
    DestinationPort,
    Protocol,
}

/// One class of an axis and every interval (inclusive) where it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atom {
    pub class: u32,
    pub intervals: Vec<(u128, u128)>,
}

/// Groups an axis's intervals by class, leaving out the foreign ones.
fn atoms_of<T: AxisKey + Into<u128>>(axis: &Axis<T>, max: u128) -> Vec<Atom> {
    let mut atoms: Vec<Atom> = Vec::new();
    let mut index: FastMap<u32, usize> = FastMap::default();
    for (i, &(start, class)) in axis.intervals.iter().enumerate() {
        if class == FOREIGN {
            continue;
        }
        let end = axis
            .intervals
            .get(i + 1)
            .map_or(max, |&(next, _)| next.into() - 1);
        let slot = *index.entry(class).or_insert_with(|| {
            atoms.push(Atom {
                class,
                intervals: Vec::new(),
            });
            atoms.len() - 1
        });
        atoms[slot].intervals.push((start.into(), end));
    }
    atoms
}

impl Classifier {
    /// The classes of `axis` with their intervals: the elementary intervals grouped by the rule
    /// set that matches there. Outside the field's domain nothing is listed.
    pub fn atoms(&self, axis: AxisId) -> Vec<Atom> {
        match axis {
            AxisId::SourceV4 => atoms_of(&self.source.v4, u128::from(u32::MAX)),
            AxisId::SourceV6 => atoms_of(&self.source.v6, u128::MAX),
            AxisId::DestinationV4 => atoms_of(&self.destination.v4, u128::from(u32::MAX)),
            AxisId::DestinationV6 => atoms_of(&self.destination.v6, u128::MAX),
            AxisId::SourcePort => atoms_of(&self.source_port.axis, u128::from(u32::MAX)),
            AxisId::DestinationPort => atoms_of(&self.destination_port.axis, u128::from(u32::MAX)),
            AxisId::Protocol => {
                let mut atoms: Vec<Atom> = Vec::new();
                for (number, &class) in self.protocol.iter().enumerate() {
                    let number = number as u128;
                    match atoms.iter_mut().find(|a| a.class == class) {
                        Some(atom) => match atom.intervals.last_mut() {
                            Some(last) if last.1 + 1 == number => last.1 = number,
                            _ => atom.intervals.push((number, number)),
                        },
                        None => atoms.push(Atom {
                            class,
                            intervals: vec![(number, number)],
                        }),
                    }
                }
                atoms
            }
        }
    }

    /// The class of packets without ports on the source (`true`) or destination port field.
    pub fn portless_class(&self, source: bool) -> u32 {
        if source {
            self.source_port.portless
        } else {
            self.destination_port.portless
        }
    }

    /// The rule set of `class`, rule `i` being bit `i`.
    pub fn class_bits(&self, class: u32) -> &[u64] {
        self.table.class_words(class)
    }

    /// Number of rules the classifier was built over.
    pub fn rule_count(&self) -> usize {
        self.rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> PrefixSet {
        PrefixSet::from_nets(nets.iter().map(|n| n.parse().unwrap()))
    }

    #[test]
    fn first_match_respects_order_ranges_and_portless() {
        let web = set(&["10.0.0.0/24"]);
        let other = set(&["10.0.0.128/25", "192.168.0.0/16"]);
        let rules = vec![
            FieldRule {
                source: Some(&other),
                destination: None,
                source_ports: vec![PortRange::ALL],
                destination_ports: vec![PortRange { low: 80, high: 80 }],
                protocols: ProtocolSet::default().with(6),
                matches_portless: false,
                active: true,
            },
            FieldRule {
                source: Some(&web),
                destination: None,
                source_ports: vec![PortRange::ALL],
                destination_ports: vec![PortRange { low: 0, high: 1023 }],
                protocols: ProtocolSet::ALL,
                matches_portless: false,
                active: true,
            },
            FieldRule {
                source: None,
                destination: None,
                source_ports: vec![PortRange::ALL],
                destination_ports: vec![PortRange::ALL],
                protocols: ProtocolSet::ALL,
                matches_portless: true,
                active: true,
            },
        ];
        let c = Classifier::build(&rules, &Domains::default());
        let h = |src: &str, port: Option<u16>, protocol| Header {
            protocol,
            source: src.parse().unwrap(),
            destination: "1.1.1.1".parse().unwrap(),
            source_port: port.map(|_| 1),
            destination_port: port,
        };
        let first = |hd: Header| c.first_match(&c.classes(&hd).unwrap(), 0, 3);
        assert_eq!(first(h("10.0.0.200", Some(80), 6)), Some(0));
        assert_eq!(first(h("10.0.0.5", Some(80), 6)), Some(1));
        assert_eq!(first(h("10.0.0.5", Some(8080), 6)), Some(2));
        assert_eq!(
            first(h("10.0.0.5", None, 1)),
            Some(2),
            "ICMP: only the portless-capable rule"
        );
        assert_eq!(
            c.first_match(&c.classes(&h("10.0.0.200", Some(80), 6)).unwrap(), 1, 3),
            Some(1)
        );
        assert_eq!(
            c.first_match(&c.classes(&h("10.0.0.200", Some(80), 6)).unwrap(), 1, 1),
            None
        );
    }

    #[test]
    fn domains_refuse_foreign_addresses() {
        let nic = set(&["10.0.0.4/32"]);
        let rules = vec![FieldRule {
            source: None,
            destination: None,
            source_ports: vec![PortRange::ALL],
            destination_ports: vec![PortRange::ALL],
            protocols: ProtocolSet::ALL,
            matches_portless: true,
            active: true,
        }];
        let c = Classifier::build(
            &rules,
            &Domains {
                source: None,
                destination: Some(&nic),
            },
        );
        let h = |dst: &str| Header {
            protocol: 6,
            source: "1.2.3.4".parse().unwrap(),
            destination: dst.parse().unwrap(),
            source_port: Some(1),
            destination_port: Some(2),
        };
        assert!(c.classes(&h("10.0.0.4")).is_some());
        assert!(c.classes(&h("10.0.0.5")).is_none());
        assert!(c.classes(&h("::1")).is_none());
    }
}
