//! The strict checker of VNet flow logs version 4.

use super::check::{canonical_u64, check_records, Checker, RecordTime, TupleFields};
use super::names::is_uuid;
use super::vnet_v4::{CATEGORY, ENCRYPTION_VALUES, OPERATION_NAME, V4_TUPLE_FIELDS, VERSION};
use nsg_model::id::types;
use nsg_model::ResourceId;
use serde_json::Value;

/// The type of a flow log's `flowLogResourceID`.
const FLOW_LOG_TYPE: &str = "Microsoft.Network/networkWatchers/flowLogs";
/// The `aclID` of traffic denied for encryption reasons.
const UNSPECIFIED_ACL: &str = "unspecified";

/// Checks that `v` is a VNet flow log file (version 4), strictly: `{"records":[…]}` and nothing
/// else; every record with exactly the keys `time` (`YYYY-MM-DDTHH:MM:SS.fffffffZ`),
/// `flowLogVersion` (the integer 4), `flowLogGUID` (a UUID), `macAddress` (12 upper-case hex
/// digits), `category` and `operationName` (`FlowLogFlowEvent`), `flowLogResourceID` (a flow log
/// id, upper case), `targetResourceID` (a VNet, subnet or NIC id) and `flowRecords` (exactly
/// `flows`, non-empty); every `flows` entry exactly `aclID` (a UUID or `unspecified`) and a
/// non-empty `flowGroups`; every group exactly `rule` (non-empty) and a non-empty `flowTuples` of
/// strings; every tuple 13 comma-separated fields: epoch milliseconds, IPv4/IPv6 source and
/// destination, ports 0–65535, an IANA protocol number 0–255, `I|O`, `B|C|E|D`, an encryption
/// value, then four counters in canonical decimal, all zero for `B` and `D`; and the records of
/// each flow log and MAC in non-decreasing `time`.
pub fn check_v4_document(v: &Value) -> Result<(), Vec<String>> {
    let mut c = Checker::default();
    check_records(&mut c, v, "flow log and MAC", check_record);
    c.finish()
}

/// (flow log, MAC) of a record.
type RecordKey<'a> = (&'a str, &'a str);

/// Checks one record; returns its (flow log, MAC) and time if they are well-formed.
fn check_record<'a>(
    c: &mut Checker,
    path: &str,
    v: &'a Value,
) -> Option<(RecordKey<'a>, RecordTime)> {
    let map = c.object(
        path,
        v,
        &[
            "time",
            "flowLogVersion",
            "flowLogGUID",
            "macAddress",
            "category",
            "flowLogResourceID",
            "targetResourceID",
            "operationName",
            "flowRecords",
        ],
    )?;
    let time = c.record_time(path, map, "2022-09-14T09:00:52.5625085Z");
    if let Some(version) = map.get("flowLogVersion") {
        if !(version.is_u64() && version.as_u64() == Some(VERSION)) {
            c.error(
                &format!("{path}.flowLogVersion"),
                format!("expected the integer {VERSION}, found {version}"),
            );
        }
    }
    c.uuid(path, map, "flowLogGUID");
    let mac = c
        .string(path, map, "macAddress")
        .filter(|mac| c.mac(&format!("{path}.macAddress"), mac));
    c.constants(
        path,
        map,
        &[("category", CATEGORY), ("operationName", OPERATION_NAME)],
    );
    let flow_log = c.upper_case_id(
        path,
        map,
        "flowLogResourceID",
        |id| id.is_type(FLOW_LOG_TYPE),
        "a flow log id",
    );
    if let Some(id) = c.string(path, map, "targetResourceID") {
        let target_types = [
            types::VIRTUAL_NETWORK,
            types::SUBNET,
            types::NETWORK_INTERFACE,
        ];
        let ok = ResourceId::parse(id)
            .is_ok_and(|parsed| target_types.iter().any(|ty| parsed.is_type(ty)));
        if !ok {
            c.error(
                &format!("{path}.targetResourceID"),
                format!("\"{id}\" is not a virtual network, subnet or network interface id"),
            );
        }
    }
    if let Some(flow_records) = map.get("flowRecords") {
        check_flow_records(c, &format!("{path}.flowRecords"), flow_records);
    }
    Some(((flow_log?, mac?), time?))
}

fn check_flow_records(c: &mut Checker, path: &str, v: &Value) {
    let Some(map) = c.object(path, v, &["flows"]) else {
        return;
    };
    let Some(acls) = c.array(path, map, "flows") else {
        return;
    };
    for (i, acl) in acls.iter().enumerate() {
        let path = format!("{path}.flows[{i}]");
        let Some(map) = c.object(&path, acl, &["aclID", "flowGroups"]) else {
            continue;
        };
        if let Some(id) = c.string(&path, map, "aclID") {
            if id != UNSPECIFIED_ACL && !is_uuid(id) {
                c.error(
                    &format!("{path}.aclID"),
                    format!("\"{id}\" is neither a UUID nor \"{UNSPECIFIED_ACL}\""),
                );
            }
        }
        let Some(groups) = c.array(&path, map, "flowGroups") else {
            continue;
        };
        for (j, group) in groups.iter().enumerate() {
            check_flow_group(c, &format!("{path}.flowGroups[{j}]"), group);
        }
    }
}

fn check_flow_group(c: &mut Checker, path: &str, v: &Value) {
    let Some(map) = c.object(path, v, &["rule", "flowTuples"]) else {
        return;
    };
    if c.string(path, map, "rule").is_some_and(str::is_empty) {
        c.error(&format!("{path}.rule"), "is empty");
    }
    c.flow_tuples(path, map, check_tuple);
}

fn check_tuple(c: &mut Checker, path: &str, tuple: &str) {
    let Some(t) = TupleFields::split(c, path, tuple, V4_TUPLE_FIELDS) else {
        return;
    };
    t.check_shared(c, "milliseconds");
    let fields = &t.fields;
    if canonical_u64(fields[5]).is_none_or(|p| p > u64::from(u8::MAX)) {
        t.bad(c, 5, "is not an IANA protocol number 0-255");
    }
    let counters_must_be_zero = match fields[7] {
        "B" | "D" => true,
        "C" | "E" => false,
        _ => {
            t.bad(c, 7, "is not a flow state B, C, E or D");
            false
        }
    };
    if !ENCRYPTION_VALUES.contains(&fields[8]) {
        t.bad(c, 8, "is not an encryption value (X, NX, NX_…)");
    }
    for (field, value) in fields.iter().enumerate().skip(9) {
        match canonical_u64(value) {
            None => t.bad(c, field, "is not a counter (an unsigned integer)"),
            Some(n) if n != 0 && counters_must_be_zero => {
                t.bad(c, field, "must be 0: B and D tuples carry no counters")
            }
            Some(_) => {}
        }
    }
}
