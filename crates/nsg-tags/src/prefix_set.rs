//! [`PrefixSet`]: an immutable set of IPv4 and IPv6 addresses.
//!
//! Service tags, `VirtualNetwork`, `Internet`, ASGs and rule address lists all become prefix sets, which
//! the policy layer interns by value (design invariant 3). That is why the representation is canonical:
//! sorted, disjoint, non-adjacent inclusive ranges, so two sets with the same addresses are `==` and hash
//! alike however they were built. Ranges rather than CIDRs keep the set algebra simple and linear;
//! [`PrefixSet::to_cidrs`] gives CIDRs back for output and for nftables.

mod ranges;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};

/// A set of IP addresses, IPv4 and IPv6, built once and then only read or combined into new sets.
///
/// IPv4 and IPv6 are separate spaces: an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is an IPv6
/// address and is not in a set that holds only `10.0.0.0/8`. Azure rules never mix the families either.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PrefixSet {
    /// Normalised (sorted, disjoint, non-adjacent) inclusive ranges of IPv4 addresses.
    v4: Vec<(u32, u32)>,
    /// Normalised inclusive ranges of IPv6 addresses.
    v6: Vec<(u128, u128)>,
}

impl PrefixSet {
    /// The set with no address.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every IPv4 and IPv6 address: `0.0.0.0/0` and `::/0`, what the rule address `*` means.
    pub fn everything() -> Self {
        Self {
            v4: vec![(0, u32::MAX)],
            v6: vec![(0, u128::MAX)],
        }
    }

    /// The addresses of the given networks, in any order and overlapping or not.
    ///
    /// Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`), as Azure does for rule prefixes.
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Self {
            v4: ranges::normalize(v4),
            v6: ranges::normalize(v6),
        }
    }

    /// The IPv4 addresses of inclusive ranges `(first, last)`, for ranges that are not CIDR-aligned.
    /// A range with `first > last` is empty.
    pub fn from_ranges_v4<I: IntoIterator<Item = (Ipv4Addr, Ipv4Addr)>>(ranges: I) -> Self {
        let v4 = ranges
            .into_iter()
            .map(|(first, last)| (u32::from(first), u32::from(last)));
        Self {
            v4: ranges::normalize(v4.collect()),
            v6: Vec::new(),
        }
    }

    /// The IPv6 addresses of inclusive ranges `(first, last)`. A range with `first > last` is empty.
    pub fn from_ranges_v6<I: IntoIterator<Item = (Ipv6Addr, Ipv6Addr)>>(ranges: I) -> Self {
        let v6 = ranges
            .into_iter()
            .map(|(first, last)| (u128::from(first), u128::from(last)));
        Self {
            v4: Vec::new(),
            v6: ranges::normalize(v6.collect()),
        }
    }

    /// Whether `ip` is in the set, in O(log n).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => ranges::contains(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => ranges::contains(&self.v6, u128::from(ip)),
        }
    }

    /// The addresses in `self` or `other`.
    pub fn union(&self, other: &PrefixSet) -> PrefixSet {
        Self {
            v4: ranges::union(&self.v4, &other.v4),
            v6: ranges::union(&self.v6, &other.v6),
        }
    }

    /// The addresses in `self` but not in `other`.
    pub fn difference(&self, other: &PrefixSet) -> PrefixSet {
        Self {
            v4: ranges::difference(&self.v4, &other.v4),
            v6: ranges::difference(&self.v6, &other.v6),
        }
    }

    /// The addresses in both `self` and `other`.
    pub fn intersection(&self, other: &PrefixSet) -> PrefixSet {
        Self {
            v4: ranges::intersection(&self.v4, &other.v4),
            v6: ranges::intersection(&self.v6, &other.v6),
        }
    }

    /// Whether some address is in both sets (cheaper than building the intersection).
    pub fn intersects(&self, other: &PrefixSet) -> bool {
        ranges::intersects(&self.v4, &other.v4) || ranges::intersects(&self.v6, &other.v6)
    }

    /// Whether every address of `self` is in `other`.
    pub fn is_subset(&self, other: &PrefixSet) -> bool {
        ranges::is_subset(&self.v4, &other.v4) && ranges::is_subset(&self.v6, &other.v6)
    }

    /// Whether the set has no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Whether the set has every IPv4 and every IPv6 address.
    pub fn is_everything(&self) -> bool {
        *self == Self::everything()
    }

    /// Whether the set has an IPv4 address.
    pub fn has_v4(&self) -> bool {
        !self.v4.is_empty()
    }

    /// Whether the set has an IPv6 address.
    pub fn has_v6(&self) -> bool {
        !self.v6.is_empty()
    }

    /// The fewest CIDRs that cover exactly the set: IPv4 first, then IPv6, each ascending.
    ///
    /// Minimal because each range splits into its fewest aligned blocks, and blocks of different
    /// ranges can never merge: the ranges are not adjacent.
    pub fn to_cidrs(&self) -> Vec<IpNet> {
        let v4 = self
            .v4
            .iter()
            .flat_map(|&(first, last)| Ipv4Subnets::new(first.into(), last.into(), 0))
            .map(IpNet::V4);
        let v6 = self
            .v6
            .iter()
            .flat_map(|&(first, last)| Ipv6Subnets::new(first.into(), last.into(), 0))
            .map(IpNet::V6);
        v4.chain(v6).collect()
    }

    /// The IPv4 part as normalised inclusive ranges (sorted, disjoint, non-adjacent).
    pub fn v4_ranges(&self) -> &[(u32, u32)] {
        &self.v4
    }

    /// The IPv6 part as normalised inclusive ranges (sorted, disjoint, non-adjacent).
    pub fn v6_ranges(&self) -> &[(u128, u128)] {
        &self.v6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> PrefixSet {
        PrefixSet::from_nets(nets.iter().map(|n| n.parse::<IpNet>().expect("test CIDR")))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn everything_is_the_two_default_routes() {
        let all = PrefixSet::everything();
        assert!(all.is_everything());
        assert_eq!(all, set(&["::/0", "0.0.0.0/0"]));
        assert_eq!(
            all.to_cidrs(),
            vec![
                "0.0.0.0/0".parse::<IpNet>().expect("cidr"),
                "::/0".parse().expect("cidr")
            ]
        );
        assert!(all.contains(ip("255.255.255.255")));
        assert!(all.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn empty_set() {
        let none = PrefixSet::empty();
        assert!(none.is_empty());
        assert!(!none.has_v4() && !none.has_v6());
        assert!(none.to_cidrs().is_empty());
        assert!(!none.contains(ip("0.0.0.0")));
    }

    #[test]
    fn host_bits_are_ignored_and_adjacent_nets_merge() {
        let s = set(&["10.0.0.7/25", "10.0.0.128/25"]);
        assert_eq!(s.v4_ranges(), &[(0x0a00_0000, 0x0a00_00ff)]);
        assert_eq!(
            s.to_cidrs(),
            vec!["10.0.0.0/24".parse::<IpNet>().expect("cidr")]
        );
    }

    #[test]
    fn the_last_addresses_merge_without_overflow() {
        let s = set(&[
            "255.255.255.255/32",
            "255.255.255.254/32",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ]);
        assert_eq!(s.v4_ranges(), &[(u32::MAX - 1, u32::MAX)]);
        assert_eq!(s.v6_ranges(), &[(u128::MAX, u128::MAX)]);
        let cidrs: Vec<String> = s.to_cidrs().iter().map(ToString::to_string).collect();
        assert_eq!(
            cidrs,
            [
                "255.255.255.254/31",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"
            ]
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_not_ipv4() {
        let s = set(&["10.0.0.0/8"]);
        assert!(s.contains(ip("10.1.2.3")));
        assert!(!s.contains(ip("::ffff:10.1.2.3")));
        assert!(!set(&["::ffff:0:0/96"]).contains(ip("10.1.2.3")));
    }

    #[test]
    fn families_are_reported_separately() {
        let s = set(&["2001:db8::/32"]);
        assert!(s.has_v6() && !s.has_v4());
        assert!(!s.intersects(&set(&["0.0.0.0/0"])));
    }

    #[test]
    fn ranges_that_are_not_cidr_aligned_split_into_minimal_cidrs() {
        let s =
            PrefixSet::from_ranges_v4([(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 6))]);
        let cidrs: Vec<String> = s.to_cidrs().iter().map(ToString::to_string).collect();
        assert_eq!(
            cidrs,
            ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]
        );
        let reversed = PrefixSet::from_ranges_v6([(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED)]);
        assert!(reversed.is_empty());
    }

    #[test]
    fn set_algebra_on_a_small_example() {
        let a = set(&["10.0.0.0/8", "2001:db8::/32"]);
        let b = set(&["10.1.0.0/16", "192.168.0.0/16"]);
        assert_eq!(
            a.union(&b),
            set(&["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"])
        );
        assert_eq!(a.intersection(&b), set(&["10.1.0.0/16"]));
        let d = a.difference(&b);
        assert!(
            d.contains(ip("10.0.255.255"))
                && !d.contains(ip("10.1.0.0"))
                && d.contains(ip("10.2.0.0"))
        );
        assert!(set(&["10.1.2.0/24"]).is_subset(&a));
        assert!(!b.is_subset(&a));
    }
}
