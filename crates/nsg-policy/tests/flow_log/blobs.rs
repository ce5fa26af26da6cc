//! The blob layout: records of both formats placed in Azure's hourly per-MAC blobs.

use super::*;
use nsg_policy::flow_log::blob::{nsg_blobs, vnet_blobs};
use nsg_policy::flow_log::vnet_v4::{FlowLogIdentity, VnetFlowLogBuilder};
use nsg_policy::flow_log::{check_v2_document, check_v4_document, FlowLogBuilder};
use serde_json::json;

const FLOW_LOG: &str = "/subscriptions/s/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/flowLogs/log1";
const VNET: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet1";

/// The scenario moved to just before an hour ends, so its minutes straddle two hourly blobs.
fn straddling_an_hour() -> Vec<FlowLogEvent> {
    scenario()
        .into_iter()
        .map(|mut e| {
            // 12:00:02 → 13:57:02: later minutes fall into hour 14.
            e.time = e.time.plus_secs(3600 + 57 * 60);
            e
        })
        .collect()
}

#[test]
fn vnet_records_go_to_the_blob_of_their_mac_and_hour() {
    let mut builder = VnetFlowLogBuilder::new(FlowLogIdentity {
        id: id(FLOW_LOG),
        guid: None,
        target: id(VNET),
    });
    for e in straddling_an_hour() {
        builder.push(&e);
    }
    let blobs = vnet_blobs(&id(FLOW_LOG), builder.finish());
    let prefix = "insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/S/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_WESTEUROPE/FLOWLOGS/LOG1/y=2018/m=11/d=13";
    let names: Vec<(String, usize)> = blobs
        .iter()
        .map(|b| (b.name.replace(prefix, "…"), b.records.len()))
        .collect();
    assert_eq!(
        names,
        [
            (
                "…/h=13/m=00/macAddress=000D3AF87856/PT1H.json".to_string(),
                1
            ),
            (
                "…/h=13/m=00/macAddress=000D3AF87857/PT1H.json".to_string(),
                1
            ),
            (
                "…/h=13/m=00/macAddress=000D3AF8AAAA/PT1H.json".to_string(),
                1
            ),
            (
                "…/h=14/m=00/macAddress=000D3AF87856/PT1H.json".to_string(),
                2
            ),
            (
                "…/h=14/m=00/macAddress=000D3AF87857/PT1H.json".to_string(),
                2
            ),
        ]
    );
    for blob in &blobs {
        let doc = json!({ "records": blob.records });
        assert_eq!(check_v4_document(&doc), Ok(()), "{}", blob.name);
        assert!(blob
            .records
            .iter()
            .all(|r| blob.name.contains(&r.mac_address)));
    }
}

#[test]
fn nsg_records_are_split_per_mac_and_carry_the_mac() {
    let mut builder = FlowLogBuilder::new();
    for e in straddling_an_hour() {
        builder.push(e);
    }
    let document = builder.finish();
    let tuples_before: usize = document
        .records
        .iter()
        .flat_map(|r| &r.properties.flows)
        .flat_map(|f| &f.flows)
        .map(|m| m.flow_tuples.len())
        .sum();
    let blobs = nsg_blobs(document);
    let mut tuples_after = 0;
    for blob in &blobs {
        assert!(blob.name.starts_with(
            "insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/FABRIKAMRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/"
        ), "{}", blob.name);
        for record in &blob.records {
            let mac = record.mac_address.as_deref().expect("per-MAC record");
            assert!(blob.name.ends_with(&format!("/macAddress={mac}/PT1H.json")));
            for rule in &record.properties.flows {
                for flows in &rule.flows {
                    assert_eq!(flows.mac, mac);
                    tuples_after += flows.flow_tuples.len();
                }
            }
        }
        let doc = json!({ "records": blob.records });
        assert_eq!(check_v2_document(&doc), Ok(()), "{}", blob.name);
    }
    assert_eq!(tuples_after, tuples_before);
    assert_eq!(
        blobs.len(),
        5,
        "{:?}",
        blobs.iter().map(|b| &b.name).collect::<Vec<_>>()
    );
}

#[test]
fn a_record_mac_that_differs_from_its_flows_is_rejected() {
    let mut builder = FlowLogBuilder::new();
    for e in scenario() {
        builder.push(e);
    }
    let blobs = nsg_blobs(builder.finish());
    let mut doc = json!({ "records": blobs[0].records });
    doc["records"][0]["macAddress"] = json!("000D3AFFFFFF");
    let errors = check_v2_document(&doc).expect_err("wrong MAC");
    assert!(
        errors.iter().any(|e| e.contains("records[0].macAddress")),
        "{errors:?}"
    );
}
