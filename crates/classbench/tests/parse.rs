//! Parser and writer tests: a hand-written file, round trips, and every error kind.

use std::net::Ipv4Addr;

use classbench::{
    generate, parse, to_classbench, ErrorKind, Field, ParseError, Profile, Rule, ALL_PORTS,
};
use ipnet::Ipv4Net;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn hand_written_file() {
    let text = "\
# a ClassBench file, edited by hand
@198.151.163.28/32\t12.33.128.0/20\t0 : 65535\t1521 : 1521\t0x06/0xFF\t0x0000/0x0000
@10.1.2.3/8   0.0.0.0/0  1024:65535   53 :53  0x11/0xFF
\t
  @ 192.168.0.0/16\t\t10.0.0.0/24 0 :  65535\t0 : 1023\t0x00/0x00\t0x1000/0x1000\t17\textra
@0.0.0.0/0\t1.2.3.4/32\t0 : 65535\t6000 : 6063\t0x01/0xFF\t0x0000/0x0000\t\t
@5.6.7.0/24 5.6.8.0/24 0 : 65535 80 : 80 0x06/0xFF 3 4 5
";
    let rules = parse(text).unwrap();
    let expected = vec![
        Rule {
            src: net("198.151.163.28/32"),
            dst: net("12.33.128.0/20"),
            src_ports: ALL_PORTS,
            dst_ports: (1521, 1521),
            protocol: Some(6),
            flags: (0, 0),
        },
        Rule {
            // Host bits truncated.
            src: net("10.0.0.0/8"),
            dst: net("0.0.0.0/0"),
            src_ports: (1024, 65535),
            dst_ports: (53, 53),
            protocol: Some(17),
            // Absent flags.
            flags: (0, 0),
        },
        Rule {
            src: net("192.168.0.0/16"),
            dst: net("10.0.0.0/24"),
            src_ports: ALL_PORTS,
            dst_ports: (0, 1023),
            protocol: None,
            flags: (0x1000, 0x1000),
        },
        Rule {
            src: net("0.0.0.0/0"),
            dst: net("1.2.3.4/32"),
            src_ports: ALL_PORTS,
            dst_ports: (6000, 6063),
            protocol: Some(1),
            flags: (0, 0),
        },
        Rule {
            src: net("5.6.7.0/24"),
            dst: net("5.6.8.0/24"),
            src_ports: ALL_PORTS,
            dst_ports: (80, 80),
            protocol: Some(6),
            // "3 4 5" are extra fields ("3" has no "/" nor "0x"), not flags.
            flags: (0, 0),
        },
    ];
    assert_eq!(rules, expected);

    // Written back and re-read, the rules are the same; the text is canonical.
    let written = to_classbench(&rules);
    assert_eq!(parse(&written).unwrap(), rules);
    assert_eq!(
        written.lines().next().unwrap(),
        "@198.151.163.28/32\t12.33.128.0/20\t0 : 65535\t1521 : 1521\t0x06/0xFF\t0x0000/0x0000"
    );
    assert_eq!(written.lines().count(), 5);
}

#[test]
fn crlf_bom_and_empty_input() {
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse("\n\n# only comments\n   \n").unwrap(), vec![]);
    let text = "\u{feff}@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000\r\n";
    let rules = parse(text).unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].dst.addr(), Ipv4Addr::new(5, 6, 7, 8));
}

#[test]
fn any_protocol_ignores_value() {
    let rules = parse("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0x00").unwrap();
    assert_eq!(rules, vec![Rule::wildcard()]);
    assert_eq!(
        to_classbench(&rules),
        "@0.0.0.0/0\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\n"
    );
}

#[test]
fn round_trip_generated_sets() {
    for p in Profile::ALL {
        let rules = generate(p, 1000, 77);
        let text = to_classbench(&rules);
        assert_eq!(text.lines().count(), 1000);
        assert_eq!(parse(&text).unwrap(), rules, "{p}");
    }
}

const GOOD: &str = "@1.2.3.4/32\t5.6.7.0/24\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000";

/// Parses a file whose line 3 is `bad` (after a comment and a good rule) and returns the error.
fn error_of(bad: &str) -> ParseError {
    let text = format!("# header\n{GOOD}\n{bad}\n{GOOD}\n");
    let e = parse(&text).expect_err(bad);
    assert_eq!(e.line, 3, "{bad}: {e}");
    e
}

#[test]
fn every_error_kind_with_its_line() {
    use ErrorKind::*;
    use Field::*;
    let cases: &[(&str, Field, ErrorKind)] = &[
        (
            "1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF",
            Rule,
            MissingAt,
        ),
        ("@", SourcePrefix, MissingField),
        ("@1.2.3.4/32", DestinationPrefix, MissingField),
        ("@1.2.3.4/32 5.6.7.0/24", SourcePorts, MissingField),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535",
            DestinationPorts,
            MissingField,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80",
            Protocol,
            MissingField,
        ),
        (
            "@1.2.3.4 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF",
            SourcePrefix,
            MissingSeparator,
        ),
        (
            "@1.2.3.4/ 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF",
            SourcePrefix,
            InvalidPrefixLength,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 65535 80 : 80 0x06/0xFF",
            SourcePorts,
            MissingSeparator,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06",
            Protocol,
            MissingSeparator,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF 0x0000/",
            Flags,
            MissingSeparator,
        ),
        (
            "@1.2.3.999/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF",
            SourcePrefix,
            InvalidAddress,
        ),
        (
            "@1.2.3.4/32 host/24 0 : 65535 80 : 80 0x06/0xFF",
            DestinationPrefix,
            InvalidAddress,
        ),
        (
            "@1.2.3.4/33 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF",
            SourcePrefix,
            InvalidPrefixLength,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/x 0 : 65535 80 : 80 0x06/0xFF",
            DestinationPrefix,
            InvalidPrefixLength,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65536 80 : 80 0x06/0xFF",
            SourcePorts,
            InvalidPort,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 -1 : 80 0x06/0xFF",
            DestinationPorts,
            InvalidPort,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 http : 80 0x06/0xFF",
            DestinationPorts,
            InvalidPort,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 9 : 8 80 : 80 0x06/0xFF",
            SourcePorts,
            InvertedRange,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 70 0x06/0xFF",
            DestinationPorts,
            InvertedRange,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0xZZ/0xFF",
            Protocol,
            InvalidNumber,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x/0xFF",
            Protocol,
            InvalidNumber,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF 0x00g0/0x0000",
            Flags,
            InvalidNumber,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x100/0xFF",
            Protocol,
            ValueTooLarge,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0x1FF",
            Protocol,
            ValueTooLarge,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF 0x10000/0xFFFF",
            Flags,
            ValueTooLarge,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF 0x0/0xFFFFFFFFF",
            Flags,
            ValueTooLarge,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0x0F",
            Protocol,
            InvalidProtocolMask,
        ),
        (
            "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0x01",
            Protocol,
            InvalidProtocolMask,
        ),
    ];
    let mut kinds_seen = std::collections::HashSet::new();
    for &(bad, field, kind) in cases {
        let e = error_of(bad);
        assert_eq!((e.field, e.kind), (field, kind), "{bad}: {e}");
        assert!(
            e.to_string().starts_with(&format!("line 3: {field}: ")),
            "{e}"
        );
        kinds_seen.insert(kind);
    }
    // All ten kinds are covered.
    assert_eq!(kinds_seen.len(), 10);
}

#[test]
fn error_messages_read_well() {
    let e = error_of("@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 70 0x06/0xFF");
    assert_eq!(
        e.to_string(),
        "line 3: destination port range: 80 : 70 has low > high"
    );
    let e = error_of("@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0x0F");
    assert_eq!(
        e.to_string(),
        "line 3: protocol: mask 0x0F is neither 0xFF (exact protocol) nor 0x00 (any protocol)"
    );
    let e = error_of("@1.2.3.4/33 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF");
    assert_eq!(
        e.to_string(),
        "line 3: source prefix: prefix length \"33\" is not a number from 0 to 32"
    );
}

#[test]
fn first_error_wins() {
    let text = "@1.2.3.4/32 5.6.7.0/24 0 : 65535 80 : 80 0x06/0xFF\n\n\
                @bad\n\
                @also bad\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.line, 3);
}
