//! The strict checker of NSG flow logs version 2.

use super::check::{canonical_u64, check_records, Checker, RecordTime, TupleFields};
use super::nsg_v2::{CATEGORY, OPERATION_NAME, V2_TUPLE_FIELDS, VERSION};
use super::FlowState;
use nsg_model::id::types;
use serde_json::Value;

/// Checks that `v` is a version 2 flow log file, strictly: `{"records":[…]}` and nothing else;
/// every record with exactly the keys `time` (`YYYY-MM-DDTHH:MM:SS.fffffffZ`), `systemId` (a
/// UUID), `category` and `operationName` (the constants), `resourceId` (an NSG id, upper case) and
/// `properties` (`Version` = the integer 2, and a non-empty `flows`); every rule entry exactly
/// `rule` (`UserRule_…` / `DefaultRule_…` with a name) and a non-empty `flows`; every MAC entry
/// exactly `mac` (12 upper-case hex digits) and a non-empty `flowTuples` of strings; every tuple
/// 13 comma-separated fields: epoch seconds, IPv4/IPv6 source and destination, ports 0–65535,
/// `T|U`, `I|O`, `A|D`, `B|C|E`, then four empty counters for `B` and four unsigned integers for
/// `C` and `E` (numbers in canonical decimal: no sign, no leading zeros); and the records of each
/// NSG in non-decreasing `time`.
///
/// Errors name the place, e.g. `records[0].properties.flows[1].flows[0].flowTuples[2]`.
pub fn check_v2_document(v: &Value) -> Result<(), Vec<String>> {
    let mut c = Checker::default();
    check_records(&mut c, v, "NSG", check_record);
    c.finish()
}

/// Checks one record; returns its resourceId and time if both are well-formed.
fn check_record<'a>(c: &mut Checker, path: &str, v: &'a Value) -> Option<(&'a str, RecordTime)> {
    let map = c.object_with_optional(
        path,
        v,
        &[
            "time",
            "systemId",
            "category",
            "resourceId",
            "operationName",
            "properties",
        ],
        &["macAddress"],
    )?;
    let time = c.record_time(path, map, "2018-11-13T12:00:35.3899262Z");
    c.uuid(path, map, "systemId");
    c.constants(
        path,
        map,
        &[("category", CATEGORY), ("operationName", OPERATION_NAME)],
    );
    let resource_id = c.upper_case_id(
        path,
        map,
        "resourceId",
        |id| id.is_type(types::NETWORK_SECURITY_GROUP),
        "a network security group id",
    );
    if let Some(properties) = map.get("properties") {
        check_properties(c, &format!("{path}.properties"), properties);
    }
    if map.contains_key("macAddress") {
        if let Some(mac) = c.string(path, map, "macAddress") {
            check_record_mac(c, path, mac, map.get("properties"));
        }
    }
    Some((resource_id?, time?))
}

/// A record's `macAddress` (written in per-MAC blobs) must be a MAC and the MAC of all its flows.
fn check_record_mac(c: &mut Checker, path: &str, mac: &str, properties: Option<&Value>) {
    if !c.mac(&format!("{path}.macAddress"), mac) {
        return;
    }
    let inner = properties
        .and_then(|p| p.get("flows"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.get("flows")?.as_array())
        .flatten()
        .filter_map(|flows| flows.get("mac")?.as_str());
    for other in inner {
        if other != mac {
            c.error(
                &format!("{path}.macAddress"),
                format!("is \"{mac}\" but the record has flows of MAC \"{other}\""),
            );
        }
    }
}

fn check_properties(c: &mut Checker, path: &str, v: &Value) {
    let Some(map) = c.object(path, v, &["Version", "flows"]) else {
        return;
    };
    if let Some(version) = map.get("Version") {
        if !(version.is_u64() && version.as_u64() == Some(VERSION)) {
            c.error(
                &format!("{path}.Version"),
                format!("expected the integer {VERSION}, found {version}"),
            );
        }
    }
    let Some(rules) = c.array(path, map, "flows") else {
        return;
    };
    for (i, rule) in rules.iter().enumerate() {
        check_rule_flows(c, &format!("{path}.flows[{i}]"), rule);
    }
}

fn check_rule_flows(c: &mut Checker, path: &str, v: &Value) {
    let Some(map) = c.object(path, v, &["rule", "flows"]) else {
        return;
    };
    if let Some(label) = c.string(path, map, "rule") {
        let name = label
            .strip_prefix("UserRule_")
            .or_else(|| label.strip_prefix("DefaultRule_"));
        match name {
            Some(name) if !name.is_empty() => {}
            Some(_) => c.error(
                &format!("{path}.rule"),
                format!("\"{label}\" has no rule name"),
            ),
            None => c.error(
                &format!("{path}.rule"),
                format!("\"{label}\" does not start with UserRule_ or DefaultRule_"),
            ),
        }
    }
    let Some(macs) = c.array(path, map, "flows") else {
        return;
    };
    for (i, mac) in macs.iter().enumerate() {
        check_mac_flows(c, &format!("{path}.flows[{i}]"), mac);
    }
}

fn check_mac_flows(c: &mut Checker, path: &str, v: &Value) {
    let Some(map) = c.object(path, v, &["mac", "flowTuples"]) else {
        return;
    };
    if let Some(mac) = c.string(path, map, "mac") {
        c.mac(&format!("{path}.mac"), mac);
    }
    c.flow_tuples(path, map, check_tuple);
}

fn check_tuple(c: &mut Checker, path: &str, tuple: &str) {
    let Some(t) = TupleFields::split(c, path, tuple, V2_TUPLE_FIELDS) else {
        return;
    };
    t.check_shared(c, "seconds");
    let fields = &t.fields;
    if !matches!(fields[5], "T" | "U") {
        t.bad(c, 5, "is not a protocol T or U");
    }
    if !matches!(fields[7], "A" | "D") {
        t.bad(c, 7, "is not a traffic decision A or D");
    }
    let state = match fields[8] {
        "B" => Some(FlowState::Begin),
        "C" => Some(FlowState::Continuing),
        "E" => Some(FlowState::End),
        _ => None,
    };
    match state {
        None => t.bad(c, 8, "is not a flow state B, C or E"),
        Some(FlowState::Begin) => {
            for (field, value) in fields.iter().enumerate().skip(9) {
                if !value.is_empty() {
                    t.bad(c, field, "must be empty: a B tuple carries no counters");
                }
            }
        }
        Some(FlowState::Continuing | FlowState::End) => {
            for (field, value) in fields.iter().enumerate().skip(9) {
                if canonical_u64(value).is_none() {
                    t.bad(
                        c,
                        field,
                        "is not a counter (an unsigned integer), required for C and E tuples",
                    );
                }
            }
        }
    }
}
