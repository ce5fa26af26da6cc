//! NSG flow logs, version 2: the builder's documents against the exact JSON Azure writes
//! (reference §6.2), and the strict checker against the reference's verbatim sample and
//! mutations of it.

use super::*;
use nsg_policy::flow_log::{
    check_v2_document, derived_system_id, format_tuple, FlowLogBuilder, FlowLogDocument, SkipReason,
};
use serde_json::{json, Value};

fn build(events: Vec<FlowLogEvent>) -> (FlowLogDocument, FlowLogBuilder) {
    let mut builder = FlowLogBuilder::new();
    let mut again = FlowLogBuilder::new();
    for e in events {
        builder.push(e.clone());
        again.push(e);
    }
    (builder.finish(), again)
}

#[test]
fn builds_the_reference_scenario() {
    let (doc, builder) = build(scenario());
    assert_eq!(builder.skipped(), 2);
    assert_eq!(builder.skipped_for(SkipReason::UnsupportedProtocol), 1);
    assert_eq!(builder.skipped_for(SkipReason::InvalidMac), 1);

    let nsg1_system_id = derived_system_id(&id(NSG1));
    assert_eq!(
        nsg1_system_id, "bb451988-39db-8a99-88a5-becf685d891d",
        "derived systemId is pinned"
    );
    let record = |time: &str, nsg: &str, system_id: &str, flows: Value| {
        json!({
            "time": time,
            "systemId": system_id,
            "category": "NetworkSecurityGroupFlowEvent",
            "resourceId": nsg,
            "operationName": "NetworkSecurityGroupFlowEvents",
            "properties": { "Version": 2, "flows": flows }
        })
    };
    let expected = json!({
        "records": [
            record("2018-11-13T12:01:00.0000000Z", NSG1_UPPER, &nsg1_system_id, json!([
                {
                    "rule": "DefaultRule_DenyAllInBound",
                    "flows": [
                        {
                            "mac": "000D3AF87856",
                            "flowTuples": [
                                "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
                                "1542110415,176.119.4.10,10.5.16.4,56509,59336,T,I,D,B,,,,"
                            ]
                        },
                        {
                            "mac": "000D3AF8AAAA",
                            "flowTuples": ["1542110420,2001:db8::1:1234,fd00::4,50123,22,T,I,D,B,,,,"]
                        }
                    ]
                },
                {
                    "rule": "DefaultRule_AllowInternetOutBound",
                    "flows": [
                        {
                            "mac": "000D3AF87856",
                            "flowTuples": ["1542110406,10.5.16.4,13.67.143.118,59831,443,T,O,A,B,,,,"]
                        }
                    ]
                }
            ])),
            record("2018-11-13T12:01:00.0000000Z", NSG2_UPPER, NSG2_GUID, json!([
                {
                    "rule": "UserRule_allow-https",
                    "flows": [
                        {
                            "mac": "000D3AF87857",
                            "flowTuples": ["1542110410,203.0.113.7,10.5.17.4,50000,443,T,I,A,B,,,,"]
                        }
                    ]
                }
            ])),
            record("2018-11-13T12:06:00.0000000Z", NSG1_UPPER, &nsg1_system_id, json!([
                {
                    "rule": "DefaultRule_AllowInternetOutBound",
                    "flows": [
                        {
                            "mac": "000D3AF87856",
                            "flowTuples": ["1542110706,10.5.16.4,13.67.143.118,59831,443,T,O,A,C,30,16978,24,14008"]
                        }
                    ]
                }
            ])),
            record("2018-11-13T12:06:00.0000000Z", NSG2_UPPER, NSG2_GUID, json!([
                {
                    "rule": "UserRule_allow-https",
                    "flows": [
                        {
                            "mac": "000D3AF87857",
                            "flowTuples": ["1542110710,203.0.113.7,10.5.17.4,50000,443,T,I,A,C,10,1500,8,9000"]
                        }
                    ]
                }
            ])),
            record("2018-11-13T12:08:00.0000000Z", NSG1_UPPER, &nsg1_system_id, json!([
                {
                    "rule": "DefaultRule_AllowInternetOutBound",
                    "flows": [
                        {
                            "mac": "000D3AF87856",
                            "flowTuples": ["1542110826,10.5.16.4,13.67.143.118,59831,443,T,O,A,E,15,8489,12,7054"]
                        }
                    ]
                }
            ])),
            record("2018-11-13T12:08:00.0000000Z", NSG2_UPPER, NSG2_GUID, json!([
                {
                    "rule": "UserRule_allow-https",
                    "flows": [
                        {
                            "mac": "000D3AF87857",
                            "flowTuples": ["1542110825,203.0.113.7,10.5.17.4,50000,443,T,I,A,E,2,104,1,52"]
                        }
                    ]
                }
            ])),
        ]
    });
    let actual = serde_json::to_value(&doc).expect("serialisable");
    assert_eq!(
        actual,
        expected,
        "{}",
        serde_json::to_string_pretty(&actual).unwrap_or_default()
    );
    assert_eq!(check_v2_document(&actual), Ok(()));

    // Keys come out in Azure's order (serde_json preserves order in this workspace).
    let text = serde_json::to_string(&doc).expect("serialisable");
    let order = [
        "\"time\"",
        "\"systemId\"",
        "\"category\"",
        "\"resourceId\"",
        "\"operationName\"",
        "\"properties\"",
        "\"Version\"",
        "\"flows\"",
        "\"rule\"",
        "\"mac\"",
        "\"flowTuples\"",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| text.find(k).expect("key present"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");

    // The document reads back into the same types.
    let back: FlowLogDocument = serde_json::from_str(&text).expect("round trip");
    assert_eq!(back, doc);
}

#[test]
fn counters_are_deltas_as_in_the_reference_conversation() {
    // Reference §6.2: B, then C with 1021/588096/8005/4610880, then E with 52/29952/47/27072;
    // totals 9125 packets and 5256000 bytes. (The reference's B time stamp is later than its C;
    // here the B comes first.)
    let base = ev(
        1493695538,
        NSG1,
        (RuleKind::Custom, "allow-telnet"),
        "000D3A1BC721",
        ("185.170.185.105", 35370),
        ("10.2.0.4", 23),
        TCP,
        IN,
        ALLOW,
        FlowState::Begin,
        None,
    );
    let c = FlowLogEvent {
        time: Time::from_secs(1493695838),
        state: FlowState::Continuing,
        counters: Some(FlowCounters {
            packets_sent: 1021,
            bytes_sent: 588096,
            packets_received: 8005,
            bytes_received: 4610880,
        }),
        ..base.clone()
    };
    let e = FlowLogEvent {
        time: Time::from_secs(1493696138),
        state: FlowState::End,
        counters: Some(FlowCounters {
            packets_sent: 52,
            bytes_sent: 29952,
            packets_received: 47,
            bytes_received: 27072,
        }),
        ..base.clone()
    };
    let tuples: Vec<String> = [&base, &c, &e]
        .iter()
        .filter_map(|x| format_tuple(x))
        .collect();
    assert_eq!(
        tuples,
        [
            "1493695538,185.170.185.105,10.2.0.4,35370,23,T,I,A,B,,,,",
            "1493695838,185.170.185.105,10.2.0.4,35370,23,T,I,A,C,1021,588096,8005,4610880",
            "1493696138,185.170.185.105,10.2.0.4,35370,23,T,I,A,E,52,29952,47,27072",
        ]
    );
    let sum = |from: usize| -> u64 {
        tuples
            .iter()
            .filter_map(|t| {
                let f: Vec<&str> = t.split(',').collect();
                Some(f[from].parse::<u64>().ok()? + f[from + 2].parse::<u64>().ok()?)
            })
            .sum()
    };
    assert_eq!(sum(9), 9125);
    assert_eq!(sum(10), 5256000);
    let (doc, _) = build(vec![base, c, e]);
    assert_eq!(doc.records.len(), 3, "three minutes, three records");
    assert_eq!(
        check_v2_document(&serde_json::to_value(&doc).expect("serialisable")),
        Ok(())
    );
}

/// The reference's verbatim version 2 sample (§6.2).
fn reference_sample() -> Value {
    json!({
      "records": [
        {
          "time": "2018-11-13T12:00:35.3899262Z",
          "systemId": "a0fca5ce-022c-47b1-9735-89943b42f2fa",
          "category": "NetworkSecurityGroupFlowEvent",
          "resourceId": "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/FABRIAKMVM1-NSG",
          "operationName": "NetworkSecurityGroupFlowEvents",
          "properties": {
            "Version": 2,
            "flows": [
              {
                "rule": "DefaultRule_DenyAllInBound",
                "flows": [
                  {
                    "mac": "000D3AF87856",
                    "flowTuples": [
                      "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
                      "1542110424,176.119.4.10,10.5.16.4,56509,59336,T,I,D,B,,,,",
                      "1542110432,167.99.86.8,10.5.16.4,48495,8088,T,I,D,B,,,,"
                    ]
                  }
                ]
              },
              {
                "rule": "DefaultRule_AllowInternetOutBound",
                "flows": [
                  {
                    "mac": "000D3AF87856",
                    "flowTuples": [
                      "1542110377,10.5.16.4,13.67.143.118,59831,443,T,O,A,B,,,,",
                      "1542110379,10.5.16.4,13.67.143.117,59932,443,T,O,A,E,1,66,1,66",
                      "1542110379,10.5.16.4,13.67.143.115,44931,443,T,O,A,C,30,16978,24,14008",
                      "1542110406,10.5.16.4,40.71.12.225,59929,443,T,O,A,E,15,8489,12,7054"
                    ]
                  }
                ]
              }
            ]
          }
        }
      ]
    })
}

#[test]
fn the_reference_sample_passes() {
    assert_eq!(check_v2_document(&reference_sample()), Ok(()));
}

/// Applies `mutation` to the reference sample and returns the checker's errors.
fn errors_after(mutation: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut v = reference_sample();
    mutation(&mut v);
    match check_v2_document(&v) {
        Ok(()) => panic!("mutated document accepted: {v}"),
        Err(errors) => errors,
    }
}

/// Asserts that some error starts with `place` and mentions every one of `words`.
fn assert_reported(errors: &[String], place: &str, words: &[&str]) {
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(place) && words.iter().all(|w| e.contains(w))),
        "no error at {place} mentioning {words:?}: {errors:#?}"
    );
}

const RULE0_TUPLES: &str = "/records/0/properties/flows/0/flows/0/flowTuples";
const RULE1_TUPLES: &str = "/records/0/properties/flows/1/flows/0/flowTuples";

fn set(v: &mut Value, pointer: &str, new: Value) {
    *v.pointer_mut(pointer).expect("pointer into the sample") = new;
}

#[test]
fn wrong_version_is_rejected() {
    for version in [json!(3), json!(1), json!("2"), json!(2.0), Value::Null] {
        let errors = errors_after(|v| set(v, "/records/0/properties/Version", version.clone()));
        assert_reported(&errors, "records[0].properties.Version", &["2"]);
    }
}

#[test]
fn lowercase_resource_id_is_rejected() {
    let errors = errors_after(|v| {
        set(v, "/records/0/resourceId", json!("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/FabrikamRG/providers/Microsoft.Network/networkSecurityGroups/FabriakmVM1-NSG"))
    });
    assert_reported(&errors, "records[0].resourceId", &["upper case"]);
}

#[test]
fn resource_id_of_something_else_is_rejected() {
    let errors = errors_after(|v| {
        set(v, "/records/0/resourceId", json!("/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKINTERFACES/NIC1"))
    });
    assert_reported(
        &errors,
        "records[0].resourceId",
        &["network security group"],
    );
}

#[test]
fn twelve_field_tuple_is_rejected() {
    let errors = errors_after(|v| {
        set(
            v,
            &format!("{RULE0_TUPLES}/1"),
            json!("1542110424,176.119.4.10,10.5.16.4,56509,59336,T,I,D,B,,,"),
        )
    });
    assert_reported(
        &errors,
        "records[0].properties.flows[0].flows[0].flowTuples[1]",
        &["12 fields", "13"],
    );
    // A version 1 tuple is not a version 2 one.
    let errors = errors_after(|v| {
        set(
            v,
            &format!("{RULE0_TUPLES}/0"),
            json!("1487282421,42.119.146.95,10.1.0.4,51529,5358,T,I,D"),
        )
    });
    assert_reported(
        &errors,
        "records[0].properties.flows[0].flows[0].flowTuples[0]",
        &["8 fields"],
    );
}

#[test]
fn counters_on_a_begin_tuple_are_rejected() {
    let errors = errors_after(|v| {
        set(
            v,
            &format!("{RULE1_TUPLES}/0"),
            json!("1542110377,10.5.16.4,13.67.143.118,59831,443,T,O,A,B,1,66,1,66"),
        )
    });
    assert_reported(
        &errors,
        "records[0].properties.flows[1].flows[0].flowTuples[0]",
        &["field 10", "B tuple"],
    );
}

#[test]
fn missing_counters_on_continuing_and_end_tuples_are_rejected() {
    let errors = errors_after(|v| {
        set(
            v,
            &format!("{RULE1_TUPLES}/2"),
            json!("1542110379,10.5.16.4,13.67.143.115,44931,443,T,O,A,C,,,,"),
        );
        set(
            v,
            &format!("{RULE1_TUPLES}/3"),
            json!("1542110406,10.5.16.4,40.71.12.225,59929,443,T,O,A,E,15,-1,12,7054"),
        );
    });
    assert_reported(
        &errors,
        "records[0].properties.flows[1].flows[0].flowTuples[2]",
        &["field 10", "counter"],
    );
    assert_reported(
        &errors,
        "records[0].properties.flows[1].flows[0].flowTuples[3]",
        &["field 11", "\"-1\""],
    );
}

#[test]
fn bad_mac_is_rejected() {
    for mac in [
        "000d3af87856",
        "00-0D-3A-F8-78-56",
        "000D3AF8785",
        "000D3AF8785G",
    ] {
        let errors =
            errors_after(|v| set(v, "/records/0/properties/flows/1/flows/0/mac", json!(mac)));
        assert_reported(
            &errors,
            "records[0].properties.flows[1].flows[0].mac",
            &[mac, "12 upper-case hex"],
        );
    }
}

#[test]
fn protocol_x_is_rejected() {
    let errors = errors_after(|v| {
        set(
            v,
            &format!("{RULE0_TUPLES}/2"),
            json!("1542110432,167.99.86.8,10.5.16.4,48495,8088,X,I,D,B,,,,"),
        )
    });
    assert_reported(
        &errors,
        "records[0].properties.flows[0].flows[0].flowTuples[2]",
        &["field 6", "\"X\"", "protocol"],
    );
}

#[test]
fn other_tuple_fields_are_checked() {
    let cases = [
        (
            "1542110402.5,94.102.49.190,10.5.16.4,28746,443,U,I,D,B,,,,",
            "field 1",
        ),
        (
            "1542110402,94.102.49,10.5.16.4,28746,443,U,I,D,B,,,,",
            "field 2",
        ),
        (
            "1542110402,94.102.49.190,fd00::4::1,28746,443,U,I,D,B,,,,",
            "field 3",
        ),
        (
            "1542110402,94.102.49.190,10.5.16.4,65536,443,U,I,D,B,,,,",
            "field 4",
        ),
        (
            "1542110402,94.102.49.190,10.5.16.4,28746,0443,U,I,D,B,,,,",
            "field 5",
        ),
        (
            "1542110402,94.102.49.190,10.5.16.4,28746,443,U,X,D,B,,,,",
            "field 7",
        ),
        (
            "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,d,B,,,,",
            "field 8",
        ),
        (
            "1542110402,94.102.49.190,10.5.16.4,28746,443,U,I,D,S,,,,",
            "field 9",
        ),
    ];
    for (tuple, field) in cases {
        let errors = errors_after(|v| set(v, &format!("{RULE0_TUPLES}/0"), json!(tuple)));
        assert_reported(
            &errors,
            "records[0].properties.flows[0].flows[0].flowTuples[0]",
            &[field],
        );
    }
    // IPv6 tuples are fine.
    let mut v = reference_sample();
    set(
        &mut v,
        &format!("{RULE0_TUPLES}/0"),
        json!("1542110402,2001:db8::1,fd00::4,28746,443,U,I,D,B,,,,"),
    );
    assert_eq!(check_v2_document(&v), Ok(()));
}

#[test]
fn record_fields_are_checked() {
    let errors =
        errors_after(|v| set(v, "/records/0/category", json!("NetworkSecurityGroupEvent")));
    assert_reported(
        &errors,
        "records[0].category",
        &["NetworkSecurityGroupFlowEvent"],
    );
    let errors = errors_after(|v| {
        set(
            v,
            "/records/0/operationName",
            json!("NetworkSecurityGroupFlowEvent"),
        )
    });
    assert_reported(
        &errors,
        "records[0].operationName",
        &["NetworkSecurityGroupFlowEvents"],
    );
    let errors = errors_after(|v| set(v, "/records/0/time", json!("2018-11-13T12:00:35Z")));
    assert_reported(&errors, "records[0].time", &["2018-11-13T12:00:35Z"]);
    let errors = errors_after(|v| set(v, "/records/0/systemId", json!(42)));
    assert_reported(&errors, "records[0].systemId", &["string", "number"]);
    let errors = errors_after(|v| {
        set(
            v,
            "/records/0/properties/flows/1/rule",
            json!("Rule_AllowInternetOutBound"),
        )
    });
    assert_reported(
        &errors,
        "records[0].properties.flows[1].rule",
        &["UserRule_"],
    );
    let errors = errors_after(|v| set(v, "/records/0/properties/flows/1/rule", json!("UserRule_")));
    assert_reported(
        &errors,
        "records[0].properties.flows[1].rule",
        &["no rule name"],
    );
    let errors = errors_after(|v| set(v, &format!("{RULE1_TUPLES}/1"), json!(1542110379)));
    assert_reported(
        &errors,
        "records[0].properties.flows[1].flows[0].flowTuples[1]",
        &["string"],
    );
    let errors = errors_after(|v| set(v, "/records/0/properties/flows/0/flows", json!([])));
    assert_reported(&errors, "records[0].properties.flows[0].flows", &["empty"]);
    let errors = errors_after(|v| {
        let record = v
            .pointer_mut("/records/0")
            .and_then(Value::as_object_mut)
            .expect("record");
        record.remove("systemId");
        let value = record.remove("resourceId").expect("resourceId");
        record.insert("resourceid".into(), value);
    });
    assert_reported(&errors, "records[0]", &["missing key \"systemId\""]);
    assert_reported(&errors, "records[0]", &["missing key \"resourceId\""]);
    assert_reported(&errors, "records[0]", &["unexpected key \"resourceid\""]);
    let errors = errors_after(|v| *v = json!([]));
    assert_reported(&errors, "document", &["object"]);
}

#[test]
fn records_of_an_nsg_must_be_sorted_by_time() {
    let errors = errors_after(|v| {
        let records = v
            .pointer_mut("/records")
            .and_then(Value::as_array_mut)
            .expect("records");
        let mut earlier = records[0].clone();
        set(&mut earlier, "/time", json!("2018-11-13T11:59:35.0000000Z"));
        records.push(earlier);
    });
    assert_reported(&errors, "records[1].time", &["earlier", "records[0]"]);
    // Another NSG's records do not count.
    let mut v = reference_sample();
    let records = v
        .pointer_mut("/records")
        .and_then(Value::as_array_mut)
        .expect("records");
    let mut other = records[0].clone();
    set(&mut other, "/time", json!("2018-11-13T11:59:35.0000000Z"));
    set(&mut other, "/resourceId", json!(NSG2_UPPER));
    records.push(other);
    assert_eq!(check_v2_document(&v), Ok(()));
}

#[test]
fn errors_are_all_reported() {
    let errors = errors_after(|v| {
        set(v, "/records/0/properties/Version", json!(1));
        set(
            v,
            "/records/0/properties/flows/0/flows/0/mac",
            json!("000d3af87856"),
        );
        set(
            v,
            &format!("{RULE1_TUPLES}/3"),
            json!("1542110406,10.5.16.4,40.71.12.225,59929,443,X,O,A,E,15,8489,12,7054"),
        );
    });
    assert_eq!(errors.len(), 3, "{errors:#?}");
}

proptest! {
    #[test]
    fn builder_output_always_passes_the_checker(events in prop::collection::vec(arb_event(), 0..60)) {
        let loggable = events.iter().filter(|e| e.loggable_v2().is_ok()).count() as u64;
        let total = events.len() as u64;
        let mut builder = FlowLogBuilder::new();
        for e in events {
            builder.push(e);
        }
        prop_assert_eq!(builder.skipped(), total - loggable);
        let doc = builder.finish();
        let tuples: usize = doc.records.iter()
            .flat_map(|r| &r.properties.flows)
            .flat_map(|f| &f.flows)
            .map(|m| m.flow_tuples.len())
            .sum();
        prop_assert_eq!(tuples as u64, loggable);
        let v = serde_json::to_value(&doc).expect("serialisable");
        prop_assert_eq!(check_v2_document(&v), Ok(()));
        // Records are ordered by (time, resourceId) and unique.
        let keys: Vec<(&str, &str)> = doc.records.iter().map(|r| (r.time.as_str(), r.resource_id.as_str())).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "{:?}", keys);
    }
}
