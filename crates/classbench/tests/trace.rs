//! Trace generator and reference matcher tests.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use classbench::{
    first_match, generate, generate_with, parse, trace, trace_with, GenOptions, Header, Profile,
    Rule, TraceOptions,
};

#[test]
fn drawn_headers_match_their_rule_or_an_earlier_one() {
    for p in Profile::ALL {
        let rules = generate(p, 2000, 13);
        let entries = trace_with(&rules, 5000, 99, &TraceOptions::default());
        assert_eq!(entries.len(), 5000);
        let mut random = 0;
        for e in &entries {
            match e.drawn_from {
                Some(i) => {
                    assert!(
                        rules[i].matches(&e.header),
                        "{p}: {:?} not in rule {i}",
                        e.header
                    );
                    let m = first_match(&rules, &e.header).expect("drawn header matches");
                    assert!(m <= i, "{p}: first match {m} after drawn rule {i}");
                }
                None => random += 1,
            }
        }
        // About 10% random headers.
        assert!(
            (300..=700).contains(&random),
            "{p}: {random} random headers"
        );
    }
}

#[test]
fn trace_is_deterministic_and_matches_trace_with() {
    let rules = generate(Profile::IpChain, 500, 1);
    let a = trace(&rules, 1000, 5);
    assert_eq!(a, trace(&rules, 1000, 5));
    assert_ne!(a, trace(&rules, 1000, 6));
    let b: Vec<Header> = trace_with(&rules, 1000, 5, &TraceOptions::default())
        .into_iter()
        .map(|e| e.header)
        .collect();
    assert_eq!(a, b);
}

#[test]
fn popularity_is_skewed() {
    let rules = generate(Profile::Acl, 1000, 2);
    let entries = trace_with(&rules, 20_000, 3, &TraceOptions::default());
    let mut hits: HashMap<usize, usize> = HashMap::new();
    for e in &entries {
        if let Some(i) = e.drawn_from {
            *hits.entry(i).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = hits.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let drawn: usize = counts.iter().sum();
    let top10: usize = counts.iter().take(100).sum();
    // The top 10% of the rules get well over 10% of the traffic.
    assert!(
        top10 * 100 / drawn >= 35,
        "top 10% of rules: {top10} of {drawn}"
    );
}

#[test]
fn options_random_only_bursts_and_empty_rules() {
    let rules = generate(Profile::Firewall, 300, 4);
    let all_random = TraceOptions {
        random_fraction: 1.0,
        ..TraceOptions::default()
    };
    assert!(trace_with(&rules, 200, 1, &all_random)
        .iter()
        .all(|e| e.drawn_from.is_none()));
    let none_random = TraceOptions {
        random_fraction: 0.0,
        ..TraceOptions::default()
    };
    assert!(trace_with(&rules, 200, 1, &none_random)
        .iter()
        .all(|e| e.drawn_from.is_some()));

    let bursty = TraceOptions {
        random_fraction: 0.0,
        max_burst: 8,
        ..TraceOptions::default()
    };
    let entries = trace_with(&rules, 2000, 1, &bursty);
    assert_eq!(entries.len(), 2000);
    let repeats = entries.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(repeats > 200, "{repeats} repeated headers");

    let empty = trace_with(&[], 100, 1, &TraceOptions::default());
    assert_eq!(empty.len(), 100);
    assert!(empty.iter().all(|e| e.drawn_from.is_none()));
    assert!(trace(&rules, 0, 1).is_empty());
}

#[test]
fn any_protocol_rules_draw_tcp_udp_or_icmp() {
    let rules = vec![Rule::wildcard()];
    let drawn_only = TraceOptions {
        random_fraction: 0.0,
        ..TraceOptions::default()
    };
    let mut seen = std::collections::HashSet::new();
    for e in trace_with(&rules, 500, 8, &drawn_only) {
        assert!(matches!(e.header.protocol, 6 | 17 | 1), "{e:?}");
        seen.insert(e.header.protocol);
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn first_match_semantics() {
    let rules = parse(
        "@10.0.0.0/8\t192.168.1.0/24\t0 : 65535\t80 : 80\t0x06/0xFF\n\
         @10.1.0.0/16\t0.0.0.0/0\t1024 : 65535\t1000 : 2000\t0x11/0xFF\n\
         @0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\n",
    )
    .unwrap();
    let h = |src: [u8; 4], dst: [u8; 4], sp, dp, proto| Header {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
        src_port: sp,
        dst_port: dp,
        protocol: proto,
    };
    assert_eq!(
        first_match(&rules, &h([10, 9, 9, 9], [192, 168, 1, 7], 5, 80, 6)),
        Some(0)
    );
    // Wrong protocol, port or destination: falls through.
    assert_eq!(
        first_match(&rules, &h([10, 9, 9, 9], [192, 168, 1, 7], 5, 80, 17)),
        Some(2)
    );
    assert_eq!(
        first_match(&rules, &h([10, 9, 9, 9], [192, 168, 1, 7], 5, 81, 6)),
        Some(2)
    );
    assert_eq!(
        first_match(&rules, &h([10, 9, 9, 9], [192, 168, 2, 7], 5, 80, 6)),
        Some(2)
    );
    // Range bounds are inclusive.
    assert_eq!(
        first_match(&rules, &h([10, 1, 0, 1], [8, 8, 8, 8], 1024, 1000, 17)),
        Some(1)
    );
    assert_eq!(
        first_match(&rules, &h([10, 1, 0, 1], [8, 8, 8, 8], 65535, 2000, 17)),
        Some(1)
    );
    assert_eq!(
        first_match(&rules, &h([10, 1, 0, 1], [8, 8, 8, 8], 1023, 2000, 17)),
        Some(2)
    );
    assert_eq!(
        first_match(&rules[..2], &h([11, 1, 0, 1], [8, 8, 8, 8], 1, 1, 1)),
        None
    );
    assert_eq!(first_match(&[], &h([0; 4], [0; 4], 0, 0, 0)), None);
}

#[test]
fn default_rule_catches_every_random_header() {
    let opts = GenOptions {
        with_default: true,
        ..GenOptions::default()
    };
    let rules = generate_with(Profile::Acl, 500, 6, &opts);
    for h in trace(&rules, 2000, 6) {
        assert!(first_match(&rules, &h).is_some());
    }
}

#[test]
fn trace_files_round_trip_and_read_trace_generator_lines() {
    let rules = generate(Profile::Firewall, 500, 5);
    let headers = trace(&rules, 2000, 6);
    assert_eq!(
        classbench::parse_trace(&classbench::to_trace(&headers, &rules)).unwrap(),
        headers
    );
    // As trace_generator writes them, with a comment, a blank line and dotted quads.
    let text = "# trace\n3232235777\t167772161\t1024\t80\t6\t12\n\n10.0.0.1 192.168.1.1 53 53 17\n";
    let parsed = classbench::parse_trace(text).unwrap();
    assert_eq!(
        parsed,
        vec![
            Header {
                src: Ipv4Addr::new(192, 168, 1, 1),
                dst: Ipv4Addr::new(10, 0, 0, 1),
                src_port: 1024,
                dst_port: 80,
                protocol: 6,
            },
            Header {
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(192, 168, 1, 1),
                src_port: 53,
                dst_port: 53,
                protocol: 17,
            },
        ]
    );
}

#[test]
fn bad_trace_lines_name_the_line_and_field() {
    let cases = [
        ("1 2 3 4", 1, "protocol"),
        ("1 2 3 4 6\nx 2 3 4 6", 2, "source"),
        ("1 2 70000 4 6", 1, "source port"),
        ("1 2 3 -4 6", 1, "destination port"),
        ("1 2 3 4 256", 1, "protocol"),
        ("1 4294967296 3 4 6", 1, "destination"),
    ];
    for (text, line, field) in cases {
        let error = classbench::parse_trace(text).unwrap_err();
        assert_eq!(
            (error.line, error.field),
            (line, field),
            "{text:?}: {error}"
        );
    }
}
