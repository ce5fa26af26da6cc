//! Flow logs in both of Azure's formats: the builders' output against the exact JSON Azure
//! writes, the strict checkers against Microsoft's samples and mutations of them, and the blob
//! layout. Events shared by every format's tests live here.

mod blobs;
mod nsg_v2;
mod vnet_v4;

use nsg_model::rule::{Access, Direction, RuleKind};
use nsg_model::ResourceId;
use nsg_policy::flow_log::{FlowCounters, FlowLogEvent, FlowState};
use nsg_policy::packet::Time;
use proptest::prelude::*;
use std::net::IpAddr;

const NSG1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/FabrikamRG/providers/Microsoft.Network/networkSecurityGroups/FabriakmVM1-NSG";
const NSG1_UPPER: &str = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG";
const NSG2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/FabrikamRG/providers/Microsoft.Network/networkSecurityGroups/fabrikam-subnet-nsg";
const NSG2_UPPER: &str = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIKAM-SUBNET-NSG";
const NSG2_GUID: &str = "5b1c6d2e-8f3a-4c7d-9e1f-2a3b4c5d6e7f";

pub fn id(text: &str) -> ResourceId {
    ResourceId::parse(text).expect("test id")
}

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// Counters from `[packets sent, bytes sent, packets received, bytes received]`.
fn counters_of(
    [packets_sent, bytes_sent, packets_received, bytes_received]: [u64; 4],
) -> FlowCounters {
    FlowCounters {
        packets_sent,
        bytes_sent,
        packets_received,
        bytes_received,
    }
}

/// An event with the fields that vary from one test tuple to the next.
#[allow(clippy::too_many_arguments)]
fn ev(
    secs: u64,
    nsg: &str,
    rule: (RuleKind, &str),
    mac: &str,
    (src, src_port): (&str, u16),
    (dst, dst_port): (&str, u16),
    protocol: u8,
    direction: Direction,
    access: Access,
    state: FlowState,
    counters: Option<[u64; 4]>,
) -> FlowLogEvent {
    FlowLogEvent {
        time: Time::from_secs(secs),
        nsg: id(nsg),
        nsg_guid: (nsg == NSG2).then(|| NSG2_GUID.to_string()),
        rule_kind: rule.0,
        rule_name: rule.1.to_string(),
        mac: mac.to_string(),
        src: ip(src),
        dst: ip(dst),
        src_port,
        dst_port,
        protocol,
        direction,
        access,
        state,
        counters: counters.map(counters_of),
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const IN: Direction = Direction::Inbound;
const OUT: Direction = Direction::Outbound;
const ALLOW: Access = Access::Allow;
const DENY: Access = Access::Deny;
const DENY_ALL_IN: (RuleKind, &str) = (RuleKind::Default, "DenyAllInBound");
const INTERNET_OUT: (RuleKind, &str) = (RuleKind::Default, "AllowInternetOutBound");
const ALLOW_HTTPS: (RuleKind, &str) = (RuleKind::Custom, "allow-https");

/// The reference's scenario, spread over two NSGs and three minutes: VM1's NSG (no known
/// resourceGuid) denies inbound scans and allows one outbound HTTPS flow that begins, continues
/// and ends; the subnet NSG allows an inbound HTTPS flow to a second VM. Events arrive in time
/// order but interleaved across NSGs; one ICMP echo and one event with a broken MAC are skipped.
fn scenario() -> Vec<FlowLogEvent> {
    use FlowState::*;
    vec![
        // Minute 12:00 (buckets end 12:01:00).
        ev(
            1542110402,
            NSG1,
            DENY_ALL_IN,
            "00-0D-3A-F8-78-56",
            ("94.102.49.190", 28746),
            ("10.5.16.4", 443),
            UDP,
            IN,
            DENY,
            Begin,
            None,
        ),
        ev(
            1542110406,
            NSG1,
            INTERNET_OUT,
            "00:0d:3a:f8:78:56",
            ("10.5.16.4", 59831),
            ("13.67.143.118", 443),
            TCP,
            OUT,
            ALLOW,
            Begin,
            None,
        ),
        ev(
            1542110410,
            NSG2,
            ALLOW_HTTPS,
            "000d3af87857",
            ("203.0.113.7", 50000),
            ("10.5.17.4", 443),
            TCP,
            IN,
            ALLOW,
            Begin,
            None,
        ),
        ev(
            1542110415,
            NSG1,
            DENY_ALL_IN,
            "000D3AF87856",
            ("176.119.4.10", 56509),
            ("10.5.16.4", 59336),
            TCP,
            IN,
            DENY,
            Begin,
            None,
        ),
        ev(
            1542110420,
            NSG1,
            DENY_ALL_IN,
            "000D3AF8AAAA",
            ("2001:db8::1:1234", 50123),
            ("fd00::4", 22),
            TCP,
            IN,
            DENY,
            Begin,
            None,
        ),
        ev(
            1542110421,
            NSG1,
            DENY_ALL_IN,
            "000D3AF87856",
            ("94.102.49.190", 0),
            ("10.5.16.4", 0),
            ICMP,
            IN,
            DENY,
            Begin,
            None,
        ),
        ev(
            1542110422,
            NSG1,
            DENY_ALL_IN,
            "00-0D-3A",
            ("167.99.86.8", 48495),
            ("10.5.16.4", 8088),
            TCP,
            IN,
            DENY,
            Begin,
            None,
        ),
        // Minute 12:05: statistics of both allowed flows (5-minute interval).
        ev(
            1542110706,
            NSG1,
            INTERNET_OUT,
            "000D3AF87856",
            ("10.5.16.4", 59831),
            ("13.67.143.118", 443),
            TCP,
            OUT,
            ALLOW,
            Continuing,
            Some([30, 16978, 24, 14008]),
        ),
        ev(
            1542110710,
            NSG2,
            ALLOW_HTTPS,
            "000D3AF87857",
            ("203.0.113.7", 50000),
            ("10.5.17.4", 443),
            TCP,
            IN,
            ALLOW,
            Continuing,
            Some([10, 1500, 8, 9000]),
        ),
        // Minute 12:07: both end; the subnet NSG's event comes first, the record order does not
        // follow.
        ev(
            1542110825,
            NSG2,
            ALLOW_HTTPS,
            "000D3AF87857",
            ("203.0.113.7", 50000),
            ("10.5.17.4", 443),
            TCP,
            IN,
            ALLOW,
            End,
            Some([2, 104, 1, 52]),
        ),
        ev(
            1542110826,
            NSG1,
            INTERNET_OUT,
            "000D3AF87856",
            ("10.5.16.4", 59831),
            ("13.67.143.118", 443),
            TCP,
            OUT,
            ALLOW,
            End,
            Some([15, 8489, 12, 7054]),
        ),
    ]
}

/// Any event, loggable or not: some NSG ids are not NSGs, some MACs and rule names are bad.
fn arb_event() -> impl Strategy<Value = FlowLogEvent> {
    let nsg = prop::sample::select(vec![
        NSG1,
        NSG2,
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic",
    ]);
    let mac = prop::sample::select(vec![
        "00-0D-3A-F8-78-56",
        "000d3af87857",
        "00:0D:3A:F8:78:58",
        "bad",
    ]);
    let rule = prop::sample::select(vec![
        DENY_ALL_IN,
        INTERNET_OUT,
        ALLOW_HTTPS,
        (RuleKind::Custom, ""),
    ]);
    let addr = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ];
    let state = prop::sample::select(vec![
        FlowState::Begin,
        FlowState::Continuing,
        FlowState::End,
    ]);
    let counters = prop::option::of(any::<[u64; 4]>());
    (
        (
            1_500_000_000u64..1_500_000_600,
            nsg,
            rule,
            mac,
            prop::option::of(Just(NSG2_GUID)),
        ),
        (
            addr.clone(),
            addr,
            any::<u16>(),
            any::<u16>(),
            prop::sample::select(vec![6u8, 17, 1, 58]),
        ),
        (any::<bool>(), any::<bool>(), state, counters),
    )
        .prop_map(
            |(
                (secs, nsg, rule, mac, guid),
                (src, dst, sp, dp, protocol),
                (inbound, allow, state, counters),
            )| {
                FlowLogEvent {
                    time: Time::from_secs(secs),
                    nsg: id(nsg),
                    nsg_guid: guid.map(str::to_string),
                    rule_kind: rule.0,
                    rule_name: rule.1.to_string(),
                    mac: mac.to_string(),
                    src,
                    dst,
                    src_port: sp,
                    dst_port: dp,
                    protocol,
                    direction: if inbound { IN } else { OUT },
                    access: if allow { ALLOW } else { DENY },
                    state,
                    counters: counters.map(counters_of),
                }
            },
        )
}
