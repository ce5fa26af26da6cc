//! Property tests: the parser never panics, and writing then parsing is the identity.

use std::net::Ipv4Addr;

use classbench::{generate, parse, to_classbench, Profile, Rule};
use ipnet::Ipv4Net;
use proptest::prelude::*;

fn arb_rule() -> impl Strategy<Value = Rule> {
    let range = (any::<u16>(), any::<u16>()).prop_map(|(a, b)| (a.min(b), a.max(b)));
    (
        any::<u32>(),
        0u8..=32,
        any::<u32>(),
        0u8..=32,
        range.clone(),
        range,
        proptest::option::of(any::<u8>()),
        any::<(u16, u16)>(),
    )
        .prop_map(|(s, sl, d, dl, sp, dp, protocol, flags)| Rule {
            src: Ipv4Net::new(Ipv4Addr::from(s), sl).unwrap().trunc(),
            dst: Ipv4Net::new(Ipv4Addr::from(d), dl).unwrap().trunc(),
            src_ports: sp,
            dst_ports: dp,
            protocol,
            flags,
        })
}

/// Characters that appear in ClassBench lines, plus a few troublemakers.
const ALPHABET: &[char] = &[
    '@', '/', ':', '.', ' ', '\t', '\n', '\r', '#', 'x', 'X', 'F', 'f', '0', '1', '2', '3', '5',
    '9', '-', '+', 'é', '\u{feff}', '\0',
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    Replace(usize, char),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    let c = proptest::sample::select(ALPHABET);
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), c.clone()).prop_map(|(i, c)| Edit::Insert(i, c)),
        (any::<usize>(), c).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Duplicate(i, j)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len();
        match *e {
            Edit::Delete(i) if n > 0 => {
                chars.remove(i % n);
            }
            Edit::Insert(i, c) => chars.insert(i % (n + 1), c),
            Edit::Replace(i, c) if n > 0 => chars[i % n] = c,
            Edit::Truncate(i) => chars.truncate(i % (n + 1)),
            Edit::Duplicate(i, j) if n > 0 => {
                let (a, b) = (i % n, j % n);
                let piece: Vec<char> = chars[a.min(b)..=a.max(b)].to_vec();
                chars.splice(a..a, piece);
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_panic_on_arbitrary_strings(s in any::<String>()) {
        let _ = parse(&s);
        let _ = classbench::parse_trace(&s);
    }

    #[test]
    fn no_panic_on_trace_like_lines(s in "([0-9.]{0,12}[ \t]){0,7}\n?") {
        let _ = classbench::parse_trace(&s);
    }

    #[test]
    fn no_panic_on_at_prefixed_strings(s in "@[ -~\t]{0,80}") {
        let _ = parse(&s);
    }

    #[test]
    fn no_panic_on_mutated_valid_lines(
        rules in proptest::collection::vec(arb_rule(), 1..4),
        edits in proptest::collection::vec(arb_edit(), 1..6),
    ) {
        let text = apply(&to_classbench(&rules), &edits);
        match parse(&text) {
            Ok(parsed) => {
                // Whatever was accepted is well-formed and writes back to the same rules.
                for r in &parsed {
                    prop_assert!(r.src_ports.0 <= r.src_ports.1);
                    prop_assert!(r.dst_ports.0 <= r.dst_ports.1);
                    prop_assert_eq!(r.src, r.src.trunc());
                    prop_assert_eq!(r.dst, r.dst.trunc());
                }
                prop_assert_eq!(parse(&to_classbench(&parsed)).unwrap(), parsed);
            }
            Err(e) => {
                let lines = text.lines().count();
                prop_assert!(e.line >= 1 && e.line <= lines, "{} of {}", e.line, lines);
            }
        }
    }

    #[test]
    fn round_trip_arbitrary_rules(rules in proptest::collection::vec(arb_rule(), 0..20)) {
        prop_assert_eq!(parse(&to_classbench(&rules)).unwrap(), rules);
    }

    #[test]
    fn round_trip_generated(seed in any::<u64>(), count in 0usize..200) {
        for p in Profile::ALL {
            let rules = generate(p, count, seed);
            prop_assert_eq!(rules.len(), count);
            prop_assert_eq!(parse(&to_classbench(&rules)).unwrap(), rules);
        }
    }
}
