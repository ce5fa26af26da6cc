//! Flow log filters (`enabledFilteringCriteria`, `recordTypes`): what each filter keeps, what
//! is refused and why, and that no text makes the parser or the evaluation panic.

use nsg_model::flow_log_filter::{
    Encryption, FilterError, FilterField, FilterTuple, FlowLogFilter, FlowState, RecordTypes,
    MAX_FILTER_LENGTH,
};
use nsg_model::rule::Direction;
use proptest::prelude::*;

/// An outbound TCP flow 10.0.0.6:23956 → 52.239.184.180:443 that began, unencrypted (the first
/// tuple of Microsoft's sample record).
fn sample() -> FilterTuple {
    FilterTuple {
        src: "10.0.0.6".parse().unwrap(),
        dst: "52.239.184.180".parse().unwrap(),
        src_port: 23956,
        dst_port: 443,
        protocol: 6,
        direction: Direction::Outbound,
        state: FlowState::Begin,
        encryption: Encryption::Unencrypted,
    }
}

fn keeps(filter: &str, tuple: FilterTuple) -> bool {
    FlowLogFilter::parse(filter)
        .unwrap_or_else(|e| panic!("{filter:?}: {e}"))
        .matches(&tuple)
}

#[test]
fn filters_keep_the_tuples_their_conditions_describe() {
    let denied_inbound_ssh = FilterTuple {
        src: "101.33.218.153".parse().unwrap(),
        dst: "10.0.0.6".parse().unwrap(),
        src_port: 55188,
        dst_port: 22,
        direction: Direction::Inbound,
        state: FlowState::Deny,
        ..sample()
    };
    let udp_v6 = FilterTuple {
        src: "2001:db8::7".parse().unwrap(),
        dst: "2001:db8:1::9".parse().unwrap(),
        protocol: 17,
        ..sample()
    };
    let encrypted = FilterTuple {
        encryption: Encryption::Encrypted,
        ..sample()
    };
    let ping = FilterTuple {
        protocol: 1,
        src_port: 0,
        dst_port: 0,
        ..sample()
    };
    // filter, tuple, kept
    let cases: &[(&str, FilterTuple, bool)] = &[
        // Microsoft's examples (the REST example and the filtering page).
        ("srcIP=158.255.7.8 || dstPort=56891", sample(), false),
        ("srcIP=10.0.0.6 || dstPort=56891", sample(), true),
        ("dstip=20.252.145.59 || DstPort=443", sample(), true),
        (
            "dstip=20.252.145.59 || DstPort=54300-54400",
            sample(),
            false,
        ),
        // Addresses, CIDRs (host bits ignored), lists, either family.
        ("SrcIP=10.0.0.0/24", sample(), true),
        ("SrcIP=10.0.0.5/31", sample(), false),
        ("SrcIP=10.0.0.7/31", sample(), true),
        ("SrcIP=192.168.1.1, 10.0.0.6", sample(), true),
        ("SrcIP!=192.168.1.1,10.0.0.6", sample(), false),
        ("SrcIP!=192.168.1.1", sample(), true),
        ("DstIP=2001:db8:1::2/64", udp_v6, true),
        ("DstIP=2001:db8:2::/64", udp_v6, false),
        ("SrcIP=0.0.0.0/0", udp_v6, false),
        ("SrcIP=::/0", udp_v6, true),
        // Ports and ranges.
        ("DstPort=443", sample(), true),
        ("DstPort=22, 8080-8090", sample(), false),
        ("SrcPort=1024-65535", sample(), true),
        ("SrcPort!=1024-65535", sample(), false),
        ("DstPort=0", ping, true),
        // Protocols by name and number; ICMP is both ICMPs.
        ("Protocol=TCP", sample(), true),
        ("protocol=udp", sample(), false),
        ("Protocol=6", sample(), true),
        ("Protocol=TCP,UDP", udp_v6, true),
        ("Protocol!=TCP", sample(), false),
        ("Protocol=ICMP", ping, true),
        (
            "Protocol=ICMP",
            FilterTuple {
                protocol: 58,
                ..ping
            },
            true,
        ),
        ("Protocol=1", ping, true),
        // Direction, encryption, record types, action.
        ("Direction=Outbound", sample(), true),
        ("direction=INBOUND", sample(), false),
        ("Direction=Inbound", denied_inbound_ssh, true),
        ("Encryption=NX", sample(), true),
        ("Encryption=NX_ALL", sample(), true),
        ("Encryption=NX_ALL", encrypted, false),
        ("Encryption=X", encrypted, true),
        ("Encryption!=NX_LOCAL_DST,NX_FALLBACK", sample(), true),
        ("RecordTypes=B,E", sample(), true),
        ("RecordTypes=C", sample(), false),
        ("RecordTypes=d", denied_inbound_ssh, true),
        ("Action=Deny", denied_inbound_ssh, true),
        ("Action=Deny", sample(), false),
        ("Action=Allow", sample(), true),
        // && binds tighter than ||, evaluated left to right.
        ("Direction=Inbound && DstPort=22", denied_inbound_ssh, true),
        ("Direction=Inbound && DstPort=22", sample(), false),
        (
            "Direction=Inbound && DstPort=22 || Protocol=TCP && DstPort=443",
            sample(),
            true,
        ),
        (
            "Direction=Inbound && DstPort=443 || Protocol=UDP",
            sample(),
            false,
        ),
        ("DstPort=1 || DstPort=2 && DstPort=443", sample(), false),
        ("DstPort=443 || DstPort=2 && DstPort=3", sample(), true),
        (
            "  SrcIP = 10.0.0.6  &&  Direction != Inbound ",
            sample(),
            true,
        ),
    ];
    for (filter, tuple, kept) in cases {
        assert_eq!(keeps(filter, *tuple), *kept, "{filter:?} on {tuple:?}");
    }
}

#[test]
fn malformed_filters_are_refused_with_the_reason() {
    let too_long = format!("DstPort=443{}", " ".repeat(MAX_FILTER_LENGTH));
    let cases: Vec<(&str, FilterError)> = vec![
        ("", FilterError::Empty),
        ("   ", FilterError::Empty),
        (
            &too_long,
            FilterError::TooLong {
                length: MAX_FILTER_LENGTH + 11,
            },
        ),
        ("(DstPort=443 || DstPort=80)", FilterError::Brackets),
        ("DstPort=443 ||", FilterError::EmptyCondition { number: 2 }),
        ("&& DstPort=443", FilterError::EmptyCondition { number: 1 }),
        (
            "DstPort=443 && && SrcPort=1",
            FilterError::EmptyCondition { number: 2 },
        ),
        (
            "DstPort 443",
            FilterError::MissingOperator {
                condition: "DstPort 443".into(),
            },
        ),
        (
            "Port=443",
            FilterError::UnknownField {
                field: "Port".into(),
            },
        ),
        (
            "DstPort>=443",
            FilterError::UnknownField {
                field: "DstPort>".into(),
            },
        ),
        (
            "DstPort=",
            FilterError::EmptyValue {
                field: FilterField::DstPort,
                condition: "DstPort=".into(),
            },
        ),
        (
            "DstPort=80,,443",
            FilterError::EmptyValue {
                field: FilterField::DstPort,
                condition: "DstPort=80,,443".into(),
            },
        ),
        (
            "DstPort=70000",
            FilterError::InvalidValue {
                field: FilterField::DstPort,
                value: "70000".into(),
            },
        ),
        (
            "DstPort=90-80",
            FilterError::InvalidValue {
                field: FilterField::DstPort,
                value: "90-80".into(),
            },
        ),
        (
            "SrcIP=10.0.0.300",
            FilterError::InvalidValue {
                field: FilterField::SrcIp,
                value: "10.0.0.300".into(),
            },
        ),
        (
            "SrcIP=Internet",
            FilterError::InvalidValue {
                field: FilterField::SrcIp,
                value: "Internet".into(),
            },
        ),
        (
            "Protocol=*",
            FilterError::InvalidValue {
                field: FilterField::Protocol,
                value: "*".into(),
            },
        ),
        (
            "Protocol=256",
            FilterError::InvalidValue {
                field: FilterField::Protocol,
                value: "256".into(),
            },
        ),
        (
            "Direction=In",
            FilterError::InvalidValue {
                field: FilterField::Direction,
                value: "In".into(),
            },
        ),
        (
            "RecordTypes=BC",
            FilterError::InvalidValue {
                field: FilterField::RecordTypes,
                value: "BC".into(),
            },
        ),
        (
            "Encryption=NX_MAYBE",
            FilterError::InvalidValue {
                field: FilterField::Encryption,
                value: "NX_MAYBE".into(),
            },
        ),
        (
            "DstPort=443 | SrcPort=1",
            FilterError::InvalidValue {
                field: FilterField::DstPort,
                value: "443 | SrcPort=1".into(),
            },
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(FlowLogFilter::parse(filter), Err(expected), "{filter:?}");
    }
}

#[test]
fn a_filter_of_exactly_the_limit_is_accepted() {
    let filter = format!("DstPort=443{}", " ".repeat(MAX_FILTER_LENGTH - 11));
    assert_eq!(filter.chars().count(), MAX_FILTER_LENGTH);
    assert!(keeps(&filter, sample()));
}

#[test]
fn record_types_are_subsets_of_bced() {
    let all = RecordTypes::parse("B,C,E,D").unwrap();
    assert!(FlowState::ALL.into_iter().all(|s| all.contains(s)));
    let some = RecordTypes::parse(" b , E ").unwrap();
    assert!(some.contains(FlowState::Begin) && some.contains(FlowState::End));
    assert!(!some.contains(FlowState::Continue) && !some.contains(FlowState::Deny));
    for bad in ["B,X", "BC", "B,,C", "B;C", "1"] {
        assert!(
            matches!(
                RecordTypes::parse(bad),
                Err(FilterError::InvalidValue {
                    field: FilterField::RecordTypes,
                    ..
                })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(RecordTypes::parse(" "), Err(FilterError::Empty));
}

#[test]
fn flow_states_and_encryptions_read_what_they_write() {
    for state in FlowState::ALL {
        assert_eq!(FlowState::from_letter(state.letter()), Some(state));
    }
    for encryption in Encryption::ALL {
        assert_eq!(Encryption::parse(encryption.as_str()), Some(encryption));
    }
    assert_eq!(FlowState::from_letter('x'), None);
}

fn tuples() -> impl Strategy<Value = FilterTuple> {
    (
        any::<[u8; 4]>(),
        any::<[u16; 8]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<bool>(),
        0..4usize,
        0..8usize,
    )
        .prop_map(
            |(v4, v6, src_port, dst_port, protocol, inbound, state, encryption)| FilterTuple {
                src: std::net::Ipv4Addr::from(v4).into(),
                dst: std::net::Ipv6Addr::from(v6).into(),
                src_port,
                dst_port,
                protocol,
                direction: if inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                state: FlowState::ALL[state],
                encryption: Encryption::ALL[encryption],
            },
        )
}

/// Text built from the filter's own pieces, so that many samples get past the first check.
fn filter_like() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "SrcIP",
        "dstip",
        "SrcPort",
        "DstPort",
        "Protocol",
        "Direction",
        "Encryption",
        "RecordTypes",
        "Action",
        "=",
        "!=",
        "!",
        "==",
        "&&",
        "||",
        "&",
        "|",
        ",",
        " ",
        "-",
        "/",
        "10.0.0.0/8",
        "2001:db8::1/64",
        "::",
        "443",
        "0-65535",
        "65536",
        "TCP",
        "icmp",
        "6",
        "Inbound",
        "NX_ALL",
        "X",
        "B",
        "D",
        "Deny",
        "(",
        ")",
        "é",
        "\u{0}",
        "\u{feff}",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn garbage_never_panics(text in ".{0,1200}", tuple in tuples()) {
        if let Ok(filter) = FlowLogFilter::parse(&text) {
            filter.matches(&tuple);
        }
        let _ = RecordTypes::parse(&text).map(|r| r.contains(tuple.state));
    }

    #[test]
    fn filter_shaped_garbage_never_panics(text in filter_like(), tuple in tuples()) {
        match FlowLogFilter::parse(&text) {
            Ok(filter) => { filter.matches(&tuple); }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }

    /// `a || b` keeps what either keeps; `a && b` what both keep.
    #[test]
    fn or_and_and_combine_conditions(a in 0..6usize, b in 0..6usize, tuple in tuples()) {
        let conditions = ["Direction=Inbound", "SrcPort=0-32767", "Protocol=6,17", "DstIP=::/1",
                          "RecordTypes!=D", "Encryption=NX_ALL"];
        let keeps = |text: &str| FlowLogFilter::parse(text).unwrap().matches(&tuple);
        let (a, b) = (conditions[a], conditions[b]);
        prop_assert_eq!(keeps(&format!("{a} || {b}")), keeps(a) || keeps(b));
        prop_assert_eq!(keeps(&format!("{a} && {b}")), keeps(a) && keeps(b));
    }
}
