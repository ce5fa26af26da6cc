//! VNet flow logs, version 4: the builder's records against the JSON Azure writes (reference
//! §6.4, Microsoft's sample tuples verbatim), and the strict checker against mutations.

use super::*;
use nsg_policy::flow_log::vnet_v4::{format_v4_tuple, FlowLogIdentity, VnetFlowLogBuilder};
use nsg_policy::flow_log::{check_v4_document, derived_system_id, SkipReason};
use serde_json::{json, Value};

const FLOW_LOG: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/flowLogs/fabrikam-vnet-log";
const FLOW_LOG_UPPER: &str = "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_WESTEUROPE/FLOWLOGS/FABRIKAM-VNET-LOG";
const FLOW_LOG_GUID: &str = "66aa66aa-6666-4aaa-8aaa-666666666666";
const VNET: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/FabrikamRG/providers/Microsoft.Network/virtualNetworks/fabrikam-vnet";

fn identity() -> FlowLogIdentity {
    FlowLogIdentity {
        id: id(FLOW_LOG),
        guid: Some(FLOW_LOG_GUID.to_string()),
        target: id(VNET),
    }
}

fn records(events: &[FlowLogEvent]) -> Vec<Value> {
    let mut builder = VnetFlowLogBuilder::new(identity());
    for e in events {
        builder.push(e);
    }
    builder
        .finish()
        .into_iter()
        .map(|(_, r)| serde_json::to_value(r).expect("serialisable"))
        .collect()
}

#[test]
fn tuples_have_milliseconds_protocol_numbers_and_a_d_state() {
    use FlowState::*;
    let mut begin = ev(
        0,
        NSG1,
        INTERNET_OUT,
        "000D3AF87856",
        ("10.0.0.6", 23956),
        ("52.239.184.180", 443),
        TCP,
        OUT,
        ALLOW,
        Begin,
        Some([9, 9, 9, 9]),
    );
    begin.time = Time(1_663_146_003_599_123);
    let mut end = begin.clone();
    end.time = Time(1_663_146_003_606_000);
    end.state = End;
    end.counters = Some(FlowCounters {
        packets_sent: 3,
        bytes_sent: 767,
        packets_received: 2,
        bytes_received: 1580,
    });
    let mut denied = ev(
        0,
        NSG1,
        DENY_ALL_IN,
        "000D3AF87856",
        ("101.33.218.153", 55188),
        ("10.0.0.6", 22),
        TCP,
        IN,
        DENY,
        Continuing,
        Some([1, 60, 0, 0]),
    );
    denied.time = Time(1_663_145_998_065_000);
    let mut ping = denied.clone();
    ping.protocol = ICMP;
    ping.src_port = 0;
    ping.dst_port = 0;
    // Microsoft's sample tuples, verbatim.
    for (event, tuple) in [
        (
            &begin,
            "1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,NX,0,0,0,0",
        ),
        (
            &end,
            "1663146003606,10.0.0.6,52.239.184.180,23956,443,6,O,E,NX,3,767,2,1580",
        ),
        (
            &denied,
            "1663145998065,101.33.218.153,10.0.0.6,55188,22,6,I,D,NX,0,0,0,0",
        ),
        (
            &ping,
            "1663145998065,101.33.218.153,10.0.0.6,0,0,1,I,D,NX,0,0,0,0",
        ),
    ] {
        assert_eq!(format_v4_tuple(event), tuple);
    }
}

#[test]
fn builds_records_per_mac_and_minute_grouped_by_nsg_and_rule() {
    let records = records(&scenario());
    let nsg1_acl = derived_system_id(&id(NSG1));
    let record = |time: &str, mac: &str, flows: Value| {
        json!({
            "time": time,
            "flowLogVersion": 4,
            "flowLogGUID": FLOW_LOG_GUID,
            "macAddress": mac,
            "category": "FlowLogFlowEvent",
            "flowLogResourceID": FLOW_LOG_UPPER,
            "targetResourceID": VNET,
            "operationName": "FlowLogFlowEvent",
            "flowRecords": {"flows": flows},
        })
    };
    let expected = vec![
        record(
            "2018-11-13T12:01:00.0000000Z",
            "000D3AF87856",
            json!([{"aclID": nsg1_acl, "flowGroups": [
                {"rule": "DefaultRule_DenyAllInBound", "flowTuples": [
                    "1542110402000,94.102.49.190,10.5.16.4,28746,443,17,I,D,NX,0,0,0,0",
                    "1542110415000,176.119.4.10,10.5.16.4,56509,59336,6,I,D,NX,0,0,0,0",
                    "1542110421000,94.102.49.190,10.5.16.4,0,0,1,I,D,NX,0,0,0,0",
                ]},
                {"rule": "DefaultRule_AllowInternetOutBound", "flowTuples": [
                    "1542110406000,10.5.16.4,13.67.143.118,59831,443,6,O,B,NX,0,0,0,0",
                ]},
            ]}]),
        ),
        record(
            "2018-11-13T12:01:00.0000000Z",
            "000D3AF87857",
            json!([{"aclID": NSG2_GUID, "flowGroups": [
                {"rule": "UserRule_allow-https", "flowTuples": [
                    "1542110410000,203.0.113.7,10.5.17.4,50000,443,6,I,B,NX,0,0,0,0",
                ]},
            ]}]),
        ),
        record(
            "2018-11-13T12:01:00.0000000Z",
            "000D3AF8AAAA",
            json!([{"aclID": nsg1_acl, "flowGroups": [
                {"rule": "DefaultRule_DenyAllInBound", "flowTuples": [
                    "1542110420000,2001:db8::1:1234,fd00::4,50123,22,6,I,D,NX,0,0,0,0",
                ]},
            ]}]),
        ),
        record(
            "2018-11-13T12:06:00.0000000Z",
            "000D3AF87856",
            json!([{"aclID": nsg1_acl, "flowGroups": [
                {"rule": "DefaultRule_AllowInternetOutBound", "flowTuples": [
                    "1542110706000,10.5.16.4,13.67.143.118,59831,443,6,O,C,NX,30,16978,24,14008",
                ]},
            ]}]),
        ),
        record(
            "2018-11-13T12:06:00.0000000Z",
            "000D3AF87857",
            json!([{"aclID": NSG2_GUID, "flowGroups": [
                {"rule": "UserRule_allow-https", "flowTuples": [
                    "1542110710000,203.0.113.7,10.5.17.4,50000,443,6,I,C,NX,10,1500,8,9000",
                ]},
            ]}]),
        ),
        record(
            "2018-11-13T12:08:00.0000000Z",
            "000D3AF87856",
            json!([{"aclID": nsg1_acl, "flowGroups": [
                {"rule": "DefaultRule_AllowInternetOutBound", "flowTuples": [
                    "1542110826000,10.5.16.4,13.67.143.118,59831,443,6,O,E,NX,15,8489,12,7054",
                ]},
            ]}]),
        ),
        record(
            "2018-11-13T12:08:00.0000000Z",
            "000D3AF87857",
            json!([{"aclID": NSG2_GUID, "flowGroups": [
                {"rule": "UserRule_allow-https", "flowTuples": [
                    "1542110825000,203.0.113.7,10.5.17.4,50000,443,6,I,E,NX,2,104,1,52",
                ]},
            ]}]),
        ),
    ];
    assert_eq!(records, expected);
    assert_eq!(check_v4_document(&json!({ "records": records })), Ok(()));
}

#[test]
fn a_bad_mac_is_skipped_and_counted() {
    let mut builder = VnetFlowLogBuilder::new(identity());
    for e in scenario() {
        builder.push(&e);
    }
    assert_eq!(builder.skipped().of(SkipReason::InvalidMac), 1);
    assert_eq!(builder.skipped().total(), 1);
}

/// Microsoft's sample record (reference §6.4) in the shape our records take.
fn sample() -> Value {
    json!({"records": [{
        "time": "2022-09-14T09:00:52.5625085Z",
        "flowLogVersion": 4,
        "flowLogGUID": "66aa66aa-6666-4aaa-8aaa-666666666666",
        "macAddress": "00224871C205",
        "category": "FlowLogFlowEvent",
        "flowLogResourceID": FLOW_LOG_UPPER,
        "targetResourceID": VNET,
        "operationName": "FlowLogFlowEvent",
        "flowRecords": {"flows": [
            {"aclID": "00000000-1234-abcd-ef00-c1c2c3c4c5c6", "flowGroups": [
                {"rule": "DefaultRule_AllowInternetOutBound", "flowTuples": [
                    "1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,NX,0,0,0,0",
                    "1663146003606,10.0.0.6,52.239.184.180,23956,443,6,O,E,NX,3,767,2,1580",
                ]},
            ]},
            {"aclID": "unspecified", "flowGroups": [
                {"rule": "BlockHighRiskTCPPortsFromInternet", "flowTuples": [
                    "1663145998065,101.33.218.153,10.0.0.6,55188,22,6,I,D,NX,0,0,0,0",
                ]},
            ]},
        ]},
    }]})
}

#[test]
fn the_checker_accepts_the_sample_and_names_each_fault() {
    assert_eq!(check_v4_document(&sample()), Ok(()));
    let tuple = "/records/0/flowRecords/flows/0/flowGroups/0/flowTuples/0";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/records/0/flowLogVersion",
            json!(2),
            "records[0].flowLogVersion",
        ),
        (
            "/records/0/flowLogVersion",
            json!("4"),
            "records[0].flowLogVersion",
        ),
        (
            "/records/0/flowLogGUID",
            json!("x"),
            "records[0].flowLogGUID",
        ),
        (
            "/records/0/macAddress",
            json!("00-22-48-71-C2-05"),
            "records[0].macAddress",
        ),
        (
            "/records/0/category",
            json!("NetworkSecurityGroupFlowEvent"),
            "records[0].category",
        ),
        (
            "/records/0/flowLogResourceID",
            json!(FLOW_LOG),
            "records[0].flowLogResourceID",
        ),
        (
            "/records/0/flowLogResourceID",
            json!(NSG1_UPPER),
            "records[0].flowLogResourceID",
        ),
        (
            "/records/0/targetResourceID",
            json!(NSG1),
            "records[0].targetResourceID",
        ),
        (
            "/records/0/time",
            json!("2022-09-14T09:00:52Z"),
            "records[0].time",
        ),
        (
            "/records/0/flowRecords/flows/0/aclID",
            json!("nsg1"),
            "flows[0].aclID",
        ),
        (
            "/records/0/flowRecords/flows/0/flowGroups",
            json!([]),
            "flowGroups",
        ),
        (
            "/records/0/flowRecords/flows/0/flowGroups/0/rule",
            json!(""),
            "rule",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,NX,0,0,0"),
            "fields",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,T,O,B,NX,0,0,0,0"),
            "field 6",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,256,O,B,NX,0,0,0,0"),
            "field 6",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,X,B,NX,0,0,0,0"),
            "field 7",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,A,NX,0,0,0,0"),
            "field 8",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,YES,0,0,0,0"),
            "field 9",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,NX,1,60,0,0"),
            "must be 0",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,E,NX,,,,"),
            "counter",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,52.239.184.180,65536,443,6,O,B,NX,0,0,0,0"),
            "port",
        ),
        (
            tuple,
            json!("1663146003599,10.0.0.6,not-an-ip,23956,443,6,O,B,NX,0,0,0,0"),
            "address",
        ),
        (
            tuple,
            json!("-1663146003599,10.0.0.6,52.239.184.180,23956,443,6,O,B,NX,0,0,0,0"),
            "milliseconds",
        ),
    ];
    for (pointer, value, place) in cases {
        let mut v = sample();
        *v.pointer_mut(pointer).expect("pointer into the sample") = value.clone();
        let errors = check_v4_document(&v).expect_err(&format!("{pointer} = {value}"));
        assert!(
            errors.iter().any(|e| e.contains(place)),
            "{pointer} = {value}: {errors:?} does not mention {place}"
        );
    }
    let mut extra = sample();
    extra["records"][0]["systemId"] = json!(FLOW_LOG_GUID);
    assert!(check_v4_document(&extra).is_err());
    let mut unsorted = sample();
    let mut earlier = unsorted["records"][0].clone();
    earlier["time"] = json!("2022-09-14T08:59:00.0000000Z");
    unsorted["records"]
        .as_array_mut()
        .expect("records")
        .push(earlier);
    let errors = check_v4_document(&unsorted).expect_err("unsorted");
    assert!(errors.iter().any(|e| e.contains("sorted")), "{errors:?}");
}

proptest! {
    #[test]
    fn builder_output_always_passes_the_checker(events in prop::collection::vec(arb_event(), 0..60)) {
        let loggable = events.iter().filter(|e| e.loggable_v4().is_ok()).count();
        let records = records(&events);
        let tuples: usize = records.iter()
            .flat_map(|r| r["flowRecords"]["flows"].as_array().cloned().unwrap_or_default())
            .flat_map(|acl| acl["flowGroups"].as_array().cloned().unwrap_or_default())
            .map(|g| g["flowTuples"].as_array().map_or(0, Vec::len))
            .sum();
        prop_assert_eq!(tuples, loggable);
        prop_assert_eq!(check_v4_document(&json!({ "records": records })), Ok(()));
    }
}
