//! Where Azure stores flow logs: one blob per hour per log (flow log or NSG) per MAC address,
//! `PT1H.json`, to which each minute's records are appended.
//!
//! Names are `CONTAINER/…/y=YYYY/m=MM/d=DD/h=HH/m=00/macAddress=MAC/PT1H.json`, the first segment
//! being the container. A record goes to the hour of its `time` (the end of its minute bucket),
//! so a record's blob never names an hour earlier than the record. Of the two forms Microsoft's
//! pages show for VNet flow logs, the one with the whole upper-cased flow log id is written
//! (`flowLogResourceID=/SUBSCRIPTIONS/…/FLOWLOGS/{NAME}`); readers list blobs by prefix either way.

use super::names::record_resource_id;
use super::nsg_v2::{FlowLogDocument, FlowLogProperties, FlowLogRecord, RuleFlows};
use super::parse_record_time;
use super::time::civil_from_days;
use super::vnet_v4::VnetFlowLogRecord;
use nsg_model::ResourceId;

/// The container of VNet flow logs.
pub const VNET_CONTAINER: &str = "insights-logs-flowlogflowevent";
/// The container of NSG flow logs.
pub const NSG_CONTAINER: &str = "insights-logs-networksecuritygroupflowevent";
/// The file name of every hourly blob.
pub const HOURLY_FILE: &str = "PT1H.json";

/// `y=YYYY/m=MM/d=DD/h=HH/m=00`: the hour containing epoch second `secs`.
pub fn hour_segments(secs: u64) -> String {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let hour = secs % 86_400 / 3600;
    format!("y={year:04}/m={month:02}/d={day:02}/h={hour:02}/m=00")
}

/// The blob of a VNet flow log's records of MAC `mac` (as records write it) in the hour of `secs`.
pub fn vnet_blob_name(flow_log: &ResourceId, secs: u64, mac: &str) -> String {
    format!(
        "{VNET_CONTAINER}/flowLogResourceID={}/{}/macAddress={mac}/{HOURLY_FILE}",
        record_resource_id(flow_log),
        hour_segments(secs)
    )
}

/// The blob of an NSG's version 2 records of MAC `mac` in the hour of `secs`.
pub fn nsg_blob_name(record_resource_id: &str, secs: u64, mac: &str) -> String {
    format!(
        "{NSG_CONTAINER}/resourceId={record_resource_id}/{}/macAddress={mac}/{HOURLY_FILE}",
        hour_segments(secs)
    )
}

/// The records of one blob, in the order they are appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob<R> {
    pub name: String,
    pub records: Vec<R>,
}

/// Groups records by blob, keeping their order; blobs in order of their first record.
fn group<R>(placed: impl IntoIterator<Item = (String, R)>) -> Vec<Blob<R>> {
    let mut blobs: Vec<Blob<R>> = Vec::new();
    for (name, record) in placed {
        match blobs.iter_mut().find(|b| b.name == name) {
            Some(blob) => blob.records.push(record),
            None => blobs.push(Blob {
                name,
                records: vec![record],
            }),
        }
    }
    blobs
}

/// A VNet flow log's records ([`super::vnet_v4::VnetFlowLogBuilder::finish`]) by blob.
pub fn vnet_blobs(
    flow_log: &ResourceId,
    records: Vec<(u64, VnetFlowLogRecord)>,
) -> Vec<Blob<VnetFlowLogRecord>> {
    group(
        records
            .into_iter()
            .map(|(secs, record)| (vnet_blob_name(flow_log, secs, &record.mac_address), record)),
    )
}

/// A version 2 document by blob: each record split into one record per MAC (carrying
/// `macAddress`, as Azure's per-MAC blobs do), placed in its NSG's blob of that MAC and hour.
pub fn nsg_blobs(document: FlowLogDocument) -> Vec<Blob<FlowLogRecord>> {
    let mut placed = Vec::new();
    for record in document.records {
        // The builder writes well-formed times; a record without one cannot be placed.
        let Some((secs, _)) = parse_record_time(&record.time) else {
            continue;
        };
        let mut macs: Vec<String> = Vec::new();
        for rule in &record.properties.flows {
            for flows in &rule.flows {
                if !macs.contains(&flows.mac) {
                    macs.push(flows.mac.clone());
                }
            }
        }
        for mac in macs {
            let flows: Vec<RuleFlows> = record
                .properties
                .flows
                .iter()
                .filter_map(|rule| {
                    let of_mac: Vec<_> = rule
                        .flows
                        .iter()
                        .filter(|f| f.mac == mac)
                        .cloned()
                        .collect();
                    (!of_mac.is_empty()).then(|| RuleFlows {
                        rule: rule.rule.clone(),
                        flows: of_mac,
                    })
                })
                .collect();
            let name = nsg_blob_name(&record.resource_id, secs, &mac);
            placed.push((
                name,
                FlowLogRecord {
                    mac_address: Some(mac),
                    properties: FlowLogProperties {
                        version: record.properties.version,
                        flows,
                    },
                    ..record.clone()
                },
            ));
        }
    }
    group(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_name_the_utc_hour() {
        assert_eq!(hour_segments(0), "y=1970/m=01/d=01/h=00/m=00");
        // 2026-12-04T01:59:59Z and the next second.
        assert_eq!(hour_segments(1_796_349_599), "y=2026/m=12/d=04/h=01/m=00");
        assert_eq!(hour_segments(1_796_349_600), "y=2026/m=12/d=04/h=02/m=00");
    }

    #[test]
    fn vnet_blob_names_follow_azure() {
        let id = ResourceId::parse(
            "/subscriptions/sub/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/flowLogs/vnet1-log",
        )
        .expect("test id");
        assert_eq!(
            vnet_blob_name(&id, 1_796_349_599, "00224871C205"),
            "insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/SUB/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_WESTEUROPE/FLOWLOGS/VNET1-LOG/y=2026/m=12/d=04/h=01/m=00/macAddress=00224871C205/PT1H.json"
        );
    }
}
