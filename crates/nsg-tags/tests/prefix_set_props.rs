//! `PrefixSet` against a naive model: a list of networks and "is the address in any of them".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use nsg_tags::PrefixSet;
use proptest::prelude::*;

/// IPv4 addresses that collide often: the whole space, plus the first and last 1,024 addresses, where
/// overflow and underflow bugs live.
fn v4_addr() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), 0u32..1024, (u32::MAX - 1023)..=u32::MAX]
}

fn v6_addr() -> impl Strategy<Value = u128> {
    prop_oneof![any::<u128>(), 0u128..4096, (u128::MAX - 4095)..=u128::MAX]
}

/// Networks with host bits set, mostly long prefixes so that they overlap and abut.
fn net() -> impl Strategy<Value = IpNet> {
    let v4 = (v4_addr(), prop_oneof![0u8..=32, 22u8..=32]).prop_map(|(a, len)| {
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).expect("length is at most 32"))
    });
    let v6 = (v6_addr(), prop_oneof![0u8..=128, 116u8..=128]).prop_map(|(a, len)| {
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).expect("length is at most 128"))
    });
    prop_oneof![3 => v4, 2 => v6]
}

fn nets() -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec(net(), 0..12)
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4_addr().prop_map(|a| IpAddr::V4(a.into())),
        v6_addr().prop_map(|a| IpAddr::V6(a.into())),
    ]
}

/// Random addresses plus every network's edges and their neighbours.
fn probes(random: &[IpAddr], nets: &[&[IpNet]]) -> Vec<IpAddr> {
    let mut out = random.to_vec();
    for net in nets.iter().flat_map(|n| n.iter()) {
        match net {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                let edges = [lo.checked_sub(1), Some(lo), Some(hi), hi.checked_add(1)];
                out.extend(edges.into_iter().flatten().map(|a| IpAddr::V4(a.into())));
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                let edges = [lo.checked_sub(1), Some(lo), Some(hi), hi.checked_add(1)];
                out.extend(edges.into_iter().flatten().map(|a| IpAddr::V6(a.into())));
            }
        }
    }
    out
}

fn naive(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// Whether two CIDRs are the two halves of one larger CIDR.
fn siblings(a: &IpNet, b: &IpNet) -> bool {
    a.prefix_len() == b.prefix_len() && a.prefix_len() > 0 && a.supernet() == b.supernet()
}

/// Addresses of a tiny universe at both ends of the IPv4 space, where ranges touch often and every
/// address can be checked.
const LOW: std::ops::RangeInclusive<u32> = 0..=40;
const HIGH: std::ops::RangeInclusive<u32> = (u32::MAX - 40)..=u32::MAX;

fn tiny_addr() -> impl Strategy<Value = u32> {
    prop_oneof![LOW, HIGH]
}

fn tiny_ranges() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((tiny_addr(), tiny_addr()), 0..6)
}

fn tiny_set(ranges: &[(u32, u32)]) -> PrefixSet {
    PrefixSet::from_ranges_v4(ranges.iter().map(|&(a, b)| (a.into(), b.into())))
}

fn in_ranges(ranges: &[(u32, u32)], x: u32) -> bool {
    ranges.iter().any(|&(a, b)| (a..=b).contains(&x))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn contains_agrees_with_the_model(nets in nets(), random in prop::collection::vec(addr(), 0..16)) {
        let set = PrefixSet::from_nets(nets.iter().copied());
        for ip in probes(&random, &[&nets]) {
            prop_assert_eq!(set.contains(ip), naive(&nets, ip), "{}", ip);
        }
        prop_assert_eq!(set.is_empty(), nets.is_empty());
    }

    #[test]
    fn set_operations_agree_pointwise(a in nets(), b in nets(), random in prop::collection::vec(addr(), 0..16)) {
        let (sa, sb) = (PrefixSet::from_nets(a.clone()), PrefixSet::from_nets(b.clone()));
        let (union, difference, intersection) = (sa.union(&sb), sa.difference(&sb), sa.intersection(&sb));
        for ip in probes(&random, &[&a, &b]) {
            let (in_a, in_b) = (naive(&a, ip), naive(&b, ip));
            prop_assert_eq!(union.contains(ip), in_a || in_b, "union at {}", ip);
            prop_assert_eq!(difference.contains(ip), in_a && !in_b, "difference at {}", ip);
            prop_assert_eq!(intersection.contains(ip), in_a && in_b, "intersection at {}", ip);
        }
        // Results are normalised, so equal sets compare equal whichever way they were built.
        prop_assert_eq!(&union, &PrefixSet::from_nets(a.iter().chain(&b).copied()));
        prop_assert_eq!(&union, &sb.union(&sa));
        prop_assert_eq!(difference.union(&intersection), sa.clone());
        prop_assert_eq!(sa.intersects(&sb), !intersection.is_empty());
        prop_assert_eq!(sa.intersects(&sb), difference != sa);
        prop_assert_eq!(sa.is_subset(&sb), difference.is_empty());
        prop_assert!(sa.is_subset(&union) && intersection.is_subset(&sb));
    }

    #[test]
    fn operations_are_exact_on_a_tiny_universe(a in tiny_ranges(), b in tiny_ranges()) {
        let (sa, sb) = (tiny_set(&a), tiny_set(&b));
        let (union, difference, intersection) = (sa.union(&sb), sa.difference(&sb), sa.intersection(&sb));
        let mut any_common = false;
        let mut a_within_b = true;
        for x in LOW.chain(HIGH) {
            let ip = IpAddr::V4(x.into());
            let (in_a, in_b) = (in_ranges(&a, x), in_ranges(&b, x));
            prop_assert_eq!(sa.contains(ip), in_a, "contains {}", ip);
            prop_assert_eq!(union.contains(ip), in_a || in_b, "union at {}", ip);
            prop_assert_eq!(difference.contains(ip), in_a && !in_b, "difference at {}", ip);
            prop_assert_eq!(intersection.contains(ip), in_a && in_b, "intersection at {}", ip);
            any_common |= in_a && in_b;
            a_within_b &= !in_a || in_b;
        }
        prop_assert_eq!(sa.intersects(&sb), any_common);
        prop_assert_eq!(sa.is_subset(&sb), a_within_b);
        prop_assert_eq!(PrefixSet::from_nets(difference.to_cidrs()), difference);
    }

    #[test]
    fn to_cidrs_round_trips_and_is_minimal(nets in nets()) {
        let set = PrefixSet::from_nets(nets);
        let cidrs = set.to_cidrs();
        prop_assert_eq!(PrefixSet::from_nets(cidrs.iter().copied()), set.clone());
        for cidr in &cidrs {
            prop_assert_eq!(*cidr, cidr.trunc(), "not canonical: {}", cidr);
        }
        // Sorted IPv4 first then ascending, disjoint, and no two could merge into one CIDR (two
        // mergeable CIDRs are siblings, which sort next to each other).
        for pair in cidrs.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            match (a, b) {
                (IpNet::V6(_), IpNet::V4(_)) => prop_assert!(false, "IPv6 before IPv4: {} {}", a, b),
                (IpNet::V4(_), IpNet::V6(_)) => {}
                _ => {
                    prop_assert!(a.broadcast() < b.network(), "not ascending and disjoint: {} {}", a, b);
                    prop_assert!(!siblings(a, b), "mergeable: {} {}", a, b);
                }
            }
        }
    }

    #[test]
    fn arbitrary_ranges_round_trip_through_cidrs(
        v4 in prop::collection::vec((v4_addr(), v4_addr()), 0..6),
        v6 in prop::collection::vec((v6_addr(), v6_addr()), 0..6),
        random in prop::collection::vec(addr(), 0..16),
    ) {
        let set = PrefixSet::from_ranges_v4(v4.iter().map(|&(a, b)| (a.into(), b.into())))
            .union(&PrefixSet::from_ranges_v6(v6.iter().map(|&(a, b)| (a.into(), b.into()))));
        let cidrs = set.to_cidrs();
        prop_assert_eq!(PrefixSet::from_nets(cidrs.iter().copied()), set.clone());
        for ip in random {
            let in_ranges = match ip {
                IpAddr::V4(ip) => v4.iter().any(|&(a, b)| (a..=b).contains(&u32::from(ip))),
                IpAddr::V6(ip) => v6.iter().any(|&(a, b)| (a..=b).contains(&u128::from(ip))),
            };
            prop_assert_eq!(set.contains(ip), in_ranges, "{}", ip);
        }
        for pair in cidrs.windows(2) {
            prop_assert!(!siblings(&pair[0], &pair[1]), "mergeable: {} {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn normalised_ranges_are_sorted_disjoint_and_not_adjacent(nets in nets()) {
        let set = PrefixSet::from_nets(nets);
        for &(first, last) in set.v4_ranges() {
            prop_assert!(first <= last);
        }
        for pair in set.v4_ranges().windows(2) {
            prop_assert!(pair[0].1.checked_add(1).is_some_and(|next| next < pair[1].0));
        }
        for pair in set.v6_ranges().windows(2) {
            prop_assert!(pair[0].1.checked_add(1).is_some_and(|next| next < pair[1].0));
        }
    }
}

#[test]
fn everything_minus_nothing_and_minus_itself() {
    let all = PrefixSet::everything();
    assert_eq!(all.difference(&PrefixSet::empty()), all);
    assert!(all.difference(&all).is_empty());
    assert!(PrefixSet::empty().union(&all).is_everything());
}
