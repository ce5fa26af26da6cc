//! Generator tests: determinism, uniqueness, speed and profile statistics.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use classbench::{generate, generate_with, GenOptions, PortClass, Profile, Rule, Stats};

#[test]
fn deterministic_for_a_seed_and_different_across_seeds() {
    for p in Profile::ALL {
        assert_eq!(generate(p, 500, 42), generate(p, 500, 42));
        assert_ne!(generate(p, 500, 42), generate(p, 500, 43));
    }
    assert_ne!(
        generate(Profile::Acl, 200, 1),
        generate(Profile::Firewall, 200, 1)
    );
}

#[test]
fn exact_count_and_no_duplicates() {
    for p in Profile::ALL {
        for count in [0, 1, 2, 17, 1000] {
            let rules = generate(p, count, 9);
            assert_eq!(rules.len(), count, "{p} {count}");
            let distinct: HashSet<&Rule> = rules.iter().collect();
            assert_eq!(distinct.len(), count, "{p} {count}: duplicates");
            assert!(
                !rules.contains(&Rule::wildcard()),
                "{p}: no default by default"
            );
        }
    }
}

#[test]
fn rules_are_well_formed() {
    for p in Profile::ALL {
        for r in generate(p, 2000, 5) {
            assert_eq!(r.src, r.src.trunc());
            assert_eq!(r.dst, r.dst.trunc());
            assert!(r.src_ports.0 <= r.src_ports.1);
            assert!(r.dst_ports.0 <= r.dst_ports.1);
            assert_eq!(r.flags, (0, 0));
            if !matches!(r.protocol, Some(6 | 17)) {
                assert_eq!(r.src_ports, classbench::ALL_PORTS);
                assert_eq!(r.dst_ports, classbench::ALL_PORTS);
            }
        }
    }
}

#[test]
fn default_rule_option() {
    for p in Profile::ALL {
        let opts = GenOptions {
            with_default: true,
            ..GenOptions::default()
        };
        let rules = generate_with(p, 300, 3, &opts);
        assert_eq!(rules.len(), 300);
        assert_eq!(rules.last(), Some(&Rule::wildcard()));
        assert_eq!(rules.iter().filter(|r| **r == Rule::wildcard()).count(), 1);
        assert_eq!(generate_with(p, 1, 3, &opts), vec![Rule::wildcard()]);
    }
}

#[test]
fn few_sites_still_gives_distinct_rules() {
    let opts = GenOptions {
        with_default: false,
        sites: Some(1),
    };
    for p in Profile::ALL {
        let rules = generate_with(p, 3000, 11, &opts);
        let distinct: HashSet<&Rule> = rules.iter().collect();
        assert_eq!(distinct.len(), 3000);
    }
}

#[test]
fn ten_thousand_rules_generate_fast() {
    for p in Profile::ALL {
        let start = Instant::now();
        let rules = generate(p, 10_000, 1);
        let took = start.elapsed();
        assert_eq!(rules.len(), 10_000);
        // Debug build; typically a few tens of milliseconds.
        assert!(took < Duration::from_millis(700), "{p}: {took:?}");
    }
}

#[test]
fn profile_statistics() {
    for p in Profile::ALL {
        let s = Stats::of(&generate(p, 10_000, 2024));
        println!("== {p}\n{s}");
        // Common to all profiles: source ports mostly WC, protocols mostly TCP/UDP.
        assert!(s.src_port_share(PortClass::Wc) >= 0.8, "{p}");
        let tcp_udp = s.protocol_share(Some(6)) + s.protocol_share(Some(17));
        assert!(tcp_udp >= 0.6, "{p}");
        assert!(s.protocol_share(Some(1)) > 0.02, "{p}");
        assert!(s.protocol_share(None) > 0.02, "{p}");
        // Prefixes repeat and nest (sites): far fewer distinct prefixes than rules.
        assert!(s.distinct_dst < s.rules * 3 / 4, "{p}: {}", s.distinct_dst);
        // Destination ports are mostly EM/WC/HI/AR, all classes present.
        for c in [PortClass::Wc, PortClass::Hi, PortClass::Em, PortClass::Ar] {
            assert!(s.dst_port_share(c) > 0.03, "{p} dst {c}");
        }
    }

    let acl = Stats::of(&generate(Profile::Acl, 10_000, 2024));
    assert!(acl.dst_len_share(32, 32) >= 0.30);
    assert!(acl.dst_len_share(24, 32) >= 0.65);
    assert!(acl.src_len_share(0, 0) >= 0.15);
    assert!(acl.wildcard_both * 100 < acl.rules);
    assert!(acl.protocol_share(Some(6)) >= 0.6);
    assert!(acl.dst_port_share(PortClass::Em) >= 0.3);

    let fw = Stats::of(&generate(Profile::Firewall, 10_000, 2024));
    assert!(fw.wildcard_side as f64 >= 0.2 * fw.rules as f64);
    assert!(fw.wildcard_side > acl.wildcard_side);
    assert!(fw.protocol_share(None) >= 0.1);
    assert!(fw.dst_len_share(0, 23) > acl.dst_len_share(0, 23));

    let ipc = Stats::of(&generate(Profile::IpChain, 10_000, 2024));
    assert!(ipc.src_len_share(32, 32) >= 0.15);
    assert!(ipc.src_len_share(0, 0) >= 0.05);
    assert!(ipc.protocol_share(Some(17)) > acl.protocol_share(Some(17)));
}

#[test]
fn prefixes_nest() {
    // Many /32 destinations lie inside another rule's shorter, non-zero destination prefix.
    let rules = generate(Profile::Acl, 2000, 8);
    let shorter: Vec<_> = rules
        .iter()
        .map(|r| r.dst)
        .filter(|n| (8..32).contains(&n.prefix_len()))
        .collect();
    let hosts: Vec<_> = rules
        .iter()
        .map(|r| r.dst)
        .filter(|n| n.prefix_len() == 32)
        .collect();
    let nested = hosts
        .iter()
        .filter(|h| shorter.iter().any(|s| s.contains(*h)))
        .count();
    assert!(nested * 2 > hosts.len(), "{nested} of {}", hosts.len());
}

#[test]
fn profile_names() {
    for p in Profile::ALL {
        assert_eq!(Profile::from_name(p.name()), Some(p));
        assert_eq!(Profile::from_name(&p.name().to_uppercase()), Some(p));
    }
    assert_eq!(Profile::from_name("firewall"), Some(Profile::Firewall));
    assert_eq!(Profile::from_name("nope"), None);
}
