//! The content of OpenNSG's nftables table as plain data: named address sets and chains of rules.
//!
//! The same type describes what we want ([`crate::render`]) and what the kernel holds (parsed back
//! from `nft -j list table`), so drift is a comparison and an update is a difference (see
//! [`crate::plan`]). Rules are kept in the canonical form `nft` lists them in; a round-trip test
//! against the real `nft` pins that.

use nftables::expr::{Expression, NamedExpression, Prefix};
use nftables::schema::{NfListObject, NfObject, Nftables, SetType, SetTypeValue};
use nftables::stmt::{AnonymousCounter, Counter, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The name of the tables OpenNSG owns; nothing else in them is ours to keep.
pub const TABLE: &str = "opennsg";

/// OpenNSG's tables: `inet opennsg` holds the sets and every stage; `bridge opennsg`, made only
/// when bridge ports are bound, holds the layer-2 guards of those ports (invariant 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    #[default]
    Inet,
    Bridge,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::Inet, Table::Bridge];

    pub fn family(self) -> NfFamily {
        match self {
            Table::Inet => NfFamily::INet,
            Table::Bridge => NfFamily::Bridge,
        }
    }

    /// The family as `nft` spells it on its command line.
    pub fn family_name(self) -> &'static str {
        match self {
            Table::Inet => "inet",
            Table::Bridge => "bridge",
        }
    }

    fn of(family: NfFamily) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.family() == family)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {TABLE}", self.family_name())
    }
}

/// The address family of a named set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    V4,
    V6,
}

impl AddressFamily {
    /// The payload protocol whose `saddr`/`daddr` fields hold addresses of this family.
    pub fn payload_protocol(self) -> &'static str {
        match self {
            AddressFamily::V4 => "ip",
            AddressFamily::V6 => "ip6",
        }
    }
    fn set_type(self) -> SetType {
        match self {
            AddressFamily::V4 => SetType::Ipv4Addr,
            AddressFamily::V6 => SetType::Ipv6Addr,
        }
    }
}

/// A named interval set of addresses of one family.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AddressSet {
    pub family: AddressFamily,
    /// Inclusive ranges, sorted, disjoint and not adjacent.
    pub ranges: Vec<(u128, u128)>,
}

impl AddressSet {
    pub fn address(&self, value: u128) -> IpAddr {
        address(self.family, value)
    }
    pub fn element_count(&self) -> usize {
        self.ranges.len()
    }
}

/// An address of `family` from its numeric value.
pub fn address(family: AddressFamily, value: u128) -> IpAddr {
    match family {
        AddressFamily::V4 => IpAddr::V4(Ipv4Addr::from(value as u32)),
        AddressFamily::V6 => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// One rule: its statements in `nft`'s canonical form and its comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub statements: Vec<Statement<'static>>,
    pub comment: Option<String>,
}

/// A chain: a base chain has a hook and a priority; a regular chain is only reached by jumps.
/// Chain names are unique across both tables.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ChainSpec {
    pub table: Table,
    pub hook: Option<(NfHook, i32)>,
    pub rules: Vec<RuleSpec>,
}

impl ChainSpec {
    /// A chain reached only by jumps.
    pub fn regular(table: Table, rules: Vec<RuleSpec>) -> ChainSpec {
        ChainSpec {
            table,
            hook: None,
            rules,
        }
    }
}

/// Everything in the table.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub sets: BTreeMap<String, AddressSet>,
    pub chains: BTreeMap<String, ChainSpec>,
}

impl Ruleset {
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }
    pub fn set_element_count(&self) -> usize {
        self.sets.values().map(AddressSet::element_count).sum()
    }
    /// Whether anything goes in the `bridge` table.
    pub fn has_bridge_chains(&self) -> bool {
        self.chains.values().any(|c| c.table == Table::Bridge)
    }
    /// Adds what another listing holds (the other table's).
    pub fn merge(&mut self, other: Ruleset) {
        self.sets.extend(other.sets);
        self.chains.extend(other.chains);
    }
}

/// Why a listed table could not be read back into a [`Ruleset`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListingError {
    #[error("set {set}: element {element} is not an address, prefix or range of its family")]
    SetElement { set: String, element: String },
    #[error("set {set}: type {kind} is not an address type OpenNSG writes")]
    SetType { set: String, kind: String },
    #[error("rule in chain {chain}, which is not listed")]
    UnknownChain { chain: String },
}

impl Ruleset {
    /// Reads our tables back from `nft -j list table inet opennsg` (and `bridge opennsg`).
    /// Objects of other tables are ignored; counters are zeroed so that traffic is not drift.
    pub fn from_listing(listing: &Nftables<'_>) -> Result<Ruleset, ListingError> {
        let mut ruleset = Ruleset::default();
        for object in listing.objects.iter() {
            let NfObject::ListObject(object) = object else {
                continue;
            };
            match object {
                NfListObject::Set(set) if set.table == TABLE && set.family == NfFamily::INet => {
                    let family = match &set.set_type {
                        SetTypeValue::Single(SetType::Ipv4Addr) => AddressFamily::V4,
                        SetTypeValue::Single(SetType::Ipv6Addr) => AddressFamily::V6,
                        other => {
                            return Err(ListingError::SetType {
                                set: set.name.to_string(),
                                kind: format!("{other:?}"),
                            })
                        }
                    };
                    let mut ranges = Vec::new();
                    for element in set.elem.iter().flat_map(|e| e.iter()) {
                        ranges.push(element_range(family, element).ok_or_else(|| {
                            ListingError::SetElement {
                                set: set.name.to_string(),
                                element: serde_json::to_string(element).unwrap_or_default(),
                            }
                        })?);
                    }
                    ruleset.sets.insert(
                        set.name.to_string(),
                        AddressSet {
                            family,
                            ranges: merge_ranges(ranges),
                        },
                    );
                }
                NfListObject::Chain(chain) if chain.table == TABLE => {
                    let Some(table) = Table::of(chain.family) else {
                        continue;
                    };
                    ruleset.chains.insert(
                        chain.name.to_string(),
                        ChainSpec {
                            table,
                            hook: chain.hook.map(|hook| (hook, chain.prio.unwrap_or(0))),
                            rules: Vec::new(),
                        },
                    );
                }
                NfListObject::Rule(rule)
                    if rule.table == TABLE && Table::of(rule.family).is_some() =>
                {
                    let chain = ruleset.chains.get_mut(rule.chain.as_ref()).ok_or_else(|| {
                        ListingError::UnknownChain {
                            chain: rule.chain.to_string(),
                        }
                    })?;
                    chain.rules.push(RuleSpec {
                        statements: rule.expr.iter().map(zero_counter).collect(),
                        comment: rule.comment.as_ref().map(|c| c.to_string()),
                    });
                }
                _ => {}
            }
        }
        Ok(ruleset)
    }
}

/// A counter statement starting at zero, as we write it and as drift checks compare it.
pub fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(Some(AnonymousCounter {
        packets: Some(0),
        bytes: Some(0),
    })))
}

fn zero_counter(statement: &Statement<'_>) -> Statement<'static> {
    match statement {
        Statement::Counter(Counter::Anonymous(_)) => counter(),
        other => into_owned(other),
    }
}

/// Detaches a listed statement from the listing's buffer.
fn into_owned(statement: &Statement<'_>) -> Statement<'static> {
    // The typed schema has no owned conversion; a serde round trip is exact for it.
    let value = serde_json::to_value(statement).expect("statements serialise");
    serde_json::from_value(value).expect("a serialised statement parses back")
}

/// The inclusive range of one listed set element: an address, a prefix or a range.
fn element_range(family: AddressFamily, element: &Expression<'_>) -> Option<(u128, u128)> {
    match element {
        Expression::String(text) => {
            let value = parse_address(family, text)?;
            Some((value, value))
        }
        Expression::Named(NamedExpression::Prefix(Prefix { addr, len })) => {
            let Expression::String(text) = addr.as_ref() else {
                return None;
            };
            let start = parse_address(family, text)?;
            let bits: u32 = match family {
                AddressFamily::V4 => 32,
                AddressFamily::V6 => 128,
            };
            let host_bits = bits.checked_sub(*len)?;
            let span = if host_bits >= 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            Some((start, start.checked_add(span)?))
        }
        Expression::Range(range) => {
            let [Expression::String(low), Expression::String(high)] = &range.range else {
                return None;
            };
            Some((parse_address(family, low)?, parse_address(family, high)?))
        }
        _ => None,
    }
}

fn parse_address(family: AddressFamily, text: &str) -> Option<u128> {
    match family {
        AddressFamily::V4 => text
            .parse::<Ipv4Addr>()
            .ok()
            .map(|a| u128::from(u32::from(a))),
        AddressFamily::V6 => text.parse::<Ipv6Addr>().ok().map(u128::from),
    }
}

/// Sorts ranges and joins overlapping or adjacent ones (`nft` may list one range as several).
pub fn merge_ranges(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match merged.last_mut() {
            Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    merged
}

/// The set's elements as `nft` lists them: an address, a prefix when the range is one, else a
/// range.
pub fn set_elements(set: &AddressSet) -> Vec<Expression<'static>> {
    set.ranges
        .iter()
        .map(|&(low, high)| address_element(set.family, low, high))
        .collect()
}

/// One address, prefix or range as an expression in `nft`'s canonical form.
pub fn address_element(family: AddressFamily, low: u128, high: u128) -> Expression<'static> {
    let bits: u32 = match family {
        AddressFamily::V4 => 32,
        AddressFamily::V6 => 128,
    };
    let text = |value: u128| Expression::String(address(family, value).to_string().into());
    if low == high {
        return text(low);
    }
    let span = high - low;
    let is_prefix = span
        .checked_add(1)
        .is_some_and(|size| size.is_power_of_two())
        && low & span == 0;
    let is_everything = low == 0
        && span
            == if bits == 32 {
                u128::from(u32::MAX)
            } else {
                u128::MAX
            };
    if is_everything || is_prefix {
        let host_bits = if is_everything {
            bits
        } else {
            (span + 1).trailing_zeros()
        };
        return Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(text(low)),
            len: bits - host_bits,
        }));
    }
    Expression::Range(Box::new(nftables::expr::Range {
        range: [text(low), text(high)],
    }))
}

/// The typed objects that create `set` named `name` in our table.
pub fn set_object(name: &str, set: &AddressSet) -> NfListObject<'static> {
    NfListObject::Set(Box::new(nftables::schema::Set {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.to_string().into(),
        set_type: SetTypeValue::Single(set.family.set_type()),
        flags: Some([nftables::schema::SetFlag::Interval].into_iter().collect()),
        elem: if set.ranges.is_empty() {
            None
        } else {
            Some(set_elements(set).into())
        },
        ..Default::default()
    }))
}

/// Chain `name` as nft's schema has it: base chains filter with policy accept, so that traffic
/// of interfaces OpenNSG does not manage passes untouched.
pub fn chain(name: &str, chain: &ChainSpec) -> nftables::schema::Chain<'static> {
    nftables::schema::Chain {
        family: chain.table.family(),
        table: TABLE.into(),
        name: name.to_string().into(),
        _type: chain.hook.map(|_| NfChainType::Filter),
        hook: chain.hook.map(|(hook, _)| hook),
        prio: chain.hook.map(|(_, priority)| priority),
        policy: chain.hook.map(|_| NfChainPolicy::Accept),
        ..Default::default()
    }
}

/// The typed object that creates chain `name`.
pub fn chain_object(name: &str, spec: &ChainSpec) -> NfListObject<'static> {
    NfListObject::Chain(chain(name, spec))
}

/// The typed object that appends `rule` to chain `chain`.
pub fn rule_object(chain: &str, spec: &ChainSpec, rule: &RuleSpec) -> NfListObject<'static> {
    NfListObject::Rule(nftables::schema::Rule {
        family: spec.table.family(),
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: rule.statements.clone().into(),
        comment: rule.comment.clone().map(Into::into),
        ..Default::default()
    })
}

pub fn table_object(table: Table) -> NfListObject<'static> {
    NfListObject::Table(nftables::schema::Table {
        family: table.family(),
        name: TABLE.into(),
        handle: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_take_the_form_nft_lists_them_in() {
        let v4 = |a: &str| u128::from(u32::from(a.parse::<Ipv4Addr>().unwrap()));
        let json = |e: Expression<'_>| serde_json::to_string(&e).unwrap();
        let one = address_element(AddressFamily::V4, v4("10.2.0.1"), v4("10.2.0.1"));
        assert_eq!(json(one), r#""10.2.0.1""#);
        let prefix = address_element(AddressFamily::V4, v4("10.0.0.0"), v4("10.0.0.255"));
        assert_eq!(json(prefix), r#"{"prefix":{"addr":"10.0.0.0","len":24}}"#);
        let range = address_element(AddressFamily::V4, v4("10.1.0.1"), v4("10.1.0.9"));
        assert_eq!(json(range), r#"{"range":["10.1.0.1","10.1.0.9"]}"#);
        let all = address_element(AddressFamily::V6, 0, u128::MAX);
        assert_eq!(json(all), r#"{"prefix":{"addr":"::","len":0}}"#);
        let all4 = address_element(AddressFamily::V4, 0, u128::from(u32::MAX));
        assert_eq!(json(all4), r#"{"prefix":{"addr":"0.0.0.0","len":0}}"#);
    }

    #[test]
    fn listed_elements_read_back_to_the_same_ranges() {
        let set = AddressSet {
            family: AddressFamily::V6,
            ranges: vec![(1, 1), (4, 7), (9, 20), (u128::MAX - 255, u128::MAX)],
        };
        let back: Vec<_> = set_elements(&set)
            .iter()
            .map(|e| element_range(AddressFamily::V6, e).unwrap())
            .collect();
        assert_eq!(back, set.ranges);
    }

    #[test]
    fn the_family_name_is_how_the_schema_spells_the_family() {
        for table in Table::ALL {
            assert_eq!(
                serde_json::to_value(table.family()).unwrap(),
                table.family_name()
            );
        }
    }

    #[test]
    fn merging_joins_adjacent_and_overlapping_ranges() {
        assert_eq!(
            merge_ranges(vec![(5, 9), (0, 3), (4, 4), (20, 30), (25, 26)]),
            vec![(0, 9), (20, 30)]
        );
    }
}
