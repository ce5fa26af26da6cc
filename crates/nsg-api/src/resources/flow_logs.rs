//! Network Watcher's flow logs, `…/networkWatchers/{nw}/flowLogs/{name}`: resources of their
//! own below their watcher, as in Azure (own rows, etags, locations and tags; not inside the
//! watcher's document), listed per watcher.
//!
//! A write is checked against what it names: the watcher (which must exist, in the flow log's
//! location), the target (a virtual network, subnet or network interface stored here, in the
//! same subscription and location, with at most one flow log; new network security group
//! targets are refused as Azure has refused them since 2025-06-30), the storage account id (its
//! form only: storage accounts are not resources of this server), the filter and record types
//! (through `nsg_model::flow_log_filter`), retention and format. The stored document is the
//! request as sent, with the envelope and the target's `resourceGuid` as `targetResourceGuid`;
//! the defaults Azure shows are added when a flow log is rendered. A flow log whose watcher or
//! target is deleted is deleted with it.

use super::{all, items_at, properties, read_shape, same_location};
use crate::error::ApiError;
use crate::request::{Kind, Target};
use crate::AppState;
use axum::http::{Method, StatusCode};
use nsg_model::flow_log_filter::{FlowLogFilter, RecordTypes};
use nsg_model::id::types;
use nsg_model::ResourceId;
use nsg_store::{Precondition, Scope, StoreError, StoredResource, Tx};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A flow log document as a request sends it: the fields checked here, each of the type the
/// REST specification gives it (api-version 2024-07-01 `FlowLog`); those named `_…` are read
/// only to check their types. Other fields are echoed unchecked.
#[derive(Deserialize)]
pub(super) struct FlowLogDocument {
    location: Option<String>,
    #[serde(rename = "identity")]
    _identity: Option<Map<String, Value>>,
    properties: Option<FlowLogProperties>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlowLogProperties {
    target_resource_id: Option<String>,
    storage_id: Option<String>,
    #[serde(rename = "enabled")]
    _enabled: Option<bool>,
    enabled_filtering_criteria: Option<String>,
    record_types: Option<String>,
    retention_policy: Option<RetentionPolicy>,
    format: Option<Format>,
    #[serde(rename = "flowAnalyticsConfiguration")]
    _flow_analytics_configuration: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RetentionPolicy {
    days: Option<i64>,
    #[serde(rename = "enabled")]
    _enabled: Option<bool>,
}

#[derive(Deserialize)]
struct Format {
    #[serde(rename = "type")]
    format_type: Option<String>,
    version: Option<i64>,
}

/// The kinds a flow log can target, and which of them are network security groups.
const TARGETS: [(&str, bool); 4] = [
    (types::VIRTUAL_NETWORK, false),
    (types::SUBNET, false),
    (types::NETWORK_INTERFACE, false),
    (types::NETWORK_SECURITY_GROUP, true),
];

/// `format.version` values accepted: 0 (the specification's default, which `az network watcher
/// flow-log create` sends unless told `--log-version`), 1 and 2. Virtual network flow logs are
/// written in version 4 of the log format whatever this says (Microsoft's filtering page creates
/// one with version 2).
const FORMAT_VERSIONS: std::ops::RangeInclusive<i64> = 0..=2;

fn invalid(code: &str, field: &str, message: String) -> ApiError {
    ApiError::bad_request(code, message).with_target(field)
}

/// The watcher a flow log belongs to: its parent (every flow log id, parsed from
/// `…/networkWatchers/{nw}/flowLogs/{name}`, has one; an id without is its own, missing, watcher).
fn watcher_id(flow_log: &ResourceId) -> ResourceId {
    flow_log.parent().unwrap_or_else(|| flow_log.clone())
}

/// The network watcher `id`, if it is stored.
fn find_watcher(
    get: impl Fn(&ResourceId) -> Result<Option<StoredResource>, StoreError>,
    id: &ResourceId,
) -> Result<Option<StoredResource>, ApiError> {
    Ok(get(id)?.filter(|w| w.id.is_type(Kind::NetworkWatcher.arm_type())))
}

/// Reads, lists, PATCHes and DELETEs of flow logs need their watcher (a PUT checks it inside
/// its transaction, after its resource group).
pub(crate) fn require_watcher(
    state: &AppState,
    method: &Method,
    target: &Target,
) -> Result<(), ApiError> {
    let watcher = match target {
        _ if *method == Method::PUT => return Ok(()),
        Target::Resource {
            kind: Kind::FlowLog,
            id,
        } => watcher_id(id),
        Target::List {
            kind: Kind::FlowLog,
            scope: Scope::Parent(watcher),
        } => watcher.clone(),
        _ => return Ok(()),
    };
    match find_watcher(|id| state.store.get(id), &watcher)? {
        Some(_) => Ok(()),
        None => Err(ApiError::parent_not_found(&watcher)),
    }
}

/// What a flow log's target is, when it is stored here.
struct StoredTarget {
    location: Option<String>,
    resource_guid: Option<Value>,
}

/// The stored target `id` (a subnet is found in its VNet's document, and has its VNet's
/// location and no GUID of its own).
fn stored_target(tx: &Tx<'_>, id: &ResourceId) -> Result<Option<StoredTarget>, ApiError> {
    let location = |doc: &Value| doc["location"].as_str().map(str::to_string);
    if id.is_type(types::SUBNET) {
        let Some(vnet) = id.parent().map(|v| tx.get(&v)).transpose()?.flatten() else {
            return Ok(None);
        };
        let has_subnet = items_at(&vnet.document, "/properties/subnets").any(|s| {
            s["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(id.name()))
        });
        return Ok(has_subnet.then(|| StoredTarget {
            location: location(&vnet.document),
            resource_guid: None,
        }));
    }
    Ok(tx.get(id)?.map(|stored| StoredTarget {
        location: location(&stored.document),
        resource_guid: stored.document.pointer("/properties/resourceGuid").cloned(),
    }))
}

/// Checks a flow log document (already through the envelope: it has its id and location) and
/// sets its read-only `targetResourceGuid`.
pub(super) fn normalise(
    tx: &Tx<'_>,
    id: &ResourceId,
    doc: &mut Map<String, Value>,
    existing: Option<&StoredResource>,
) -> Result<(), ApiError> {
    let watcher_id = watcher_id(id);
    let watcher = find_watcher(|w| tx.get(w), &watcher_id)?
        .ok_or_else(|| ApiError::parent_not_found(&watcher_id))?;
    let sent: FlowLogDocument = read_shape(doc)?;
    let location = sent.location.unwrap_or_default();
    let watcher_location = watcher.document["location"].as_str().unwrap_or_default();
    if !same_location(&location, watcher_location) {
        return Err(invalid(
            "InvalidResourceLocation",
            "location",
            format!("Flow log {id} is in location '{location}', but its network watcher {} is in '{watcher_location}'; a flow log must be in its network watcher's location.", watcher.id),
        ));
    }
    let props = sent.properties.unwrap_or_default();
    let required = |value: Option<String>, field: &str| {
        value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
            invalid(
                "InvalidRequestFormat",
                field,
                format!("{field} is required."),
            )
        })
    };
    let target = required(props.target_resource_id, "properties.targetResourceId")?;
    let storage = required(props.storage_id, "properties.storageId")?;
    check_storage_id(&storage)?;
    let guid = check_target(tx, id, &location, &target, existing)?;
    check_options(
        props.enabled_filtering_criteria.as_deref(),
        props.record_types.as_deref(),
        props.retention_policy.as_ref(),
        props.format.as_ref(),
    )?;
    let props = properties(doc);
    props.remove("targetResourceGuid");
    if let Some(guid) = guid {
        props.insert("targetResourceGuid".into(), guid);
    }
    Ok(())
}

/// Storage accounts are not resources of this server: only the id's form is checked.
fn check_storage_id(storage: &str) -> Result<(), ApiError> {
    match ResourceId::parse(storage) {
        Ok(id) if id.is_type("Microsoft.Storage/storageAccounts") => Ok(()),
        _ => Err(invalid(
            "InvalidStorageId",
            "properties.storageId",
            format!("'{storage}' is not the id of a storage account (/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.Storage/storageAccounts/{{name}})."),
        )),
    }
}

/// Checks the target of flow log `id` (in `location`) and returns its resource GUID.
fn check_target(
    tx: &Tx<'_>,
    id: &ResourceId,
    location: &str,
    target_text: &str,
    existing: Option<&StoredResource>,
) -> Result<Option<Value>, ApiError> {
    const FIELD: &str = "properties.targetResourceId";
    let unsupported = || {
        invalid(
            "InvalidTargetResource",
            FIELD,
            format!("'{target_text}' is not a virtual network, subnet, network interface or network security group id."),
        )
    };
    let target = ResourceId::parse(target_text).map_err(|_| unsupported())?;
    let (_, is_nsg) = TARGETS
        .into_iter()
        .find(|(kind, _)| target.is_type(kind))
        .ok_or_else(unsupported)?;
    let target_of = |doc: &Value| {
        doc.pointer("/properties/targetResourceId")
            .and_then(Value::as_str)
            .and_then(|t| ResourceId::parse(t).ok())
    };
    // Azure keeps NSG flow logs made before the cutover working and changeable, but makes
    // no new ones; moving a flow log to an NSG would be a new one.
    if is_nsg && existing.and_then(|e| target_of(&e.document)) != Some(target.clone()) {
        return Err(invalid(
            "NsgFlowLogCreationBlocked",
            FIELD,
            "On September 30, 2027, Network Security Group (NSG) flow logs will be retired. As part of this retirement, creation of new NSG flow logs is blocked starting June 30, 2025, but you will be able to continue using and modifying settings for existing NSG flow logs that are previously deployed/configured until Sept 30th 2027. We recommend migrating to virtual network flow logs, which overcome the limitations of NSG flow logs. For migration, please refer to https://learn.microsoft.com/en-us/azure/network-watcher/nsg-flow-logs-migrate.".to_string(),
        ));
    }
    let unreachable = |why: String| {
        invalid(
            "InvalidResourceReference",
            FIELD,
            format!("Resource {target} referenced by resource {id} {why}"),
        )
    };
    if !target
        .subscription()
        .eq_ignore_ascii_case(id.subscription())
    {
        return Err(unreachable(format!(
            "is in another subscription; a flow log's target must be in its subscription {}.",
            id.subscription()
        )));
    }
    let found = stored_target(tx, &target)?.ok_or_else(|| {
        unreachable("was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.".to_string())
    })?;
    if let Some(target_location) = found.location.filter(|l| !same_location(l, location)) {
        return Err(unreachable(format!(
            "is in location '{target_location}'; a flow log in '{location}' can only target resources in '{location}'."
        )));
    }
    if let Some(other) = all(tx, Kind::FlowLog, id.subscription())?
        .into_iter()
        .find(|other| other.id != *id && target_of(&other.document) == Some(target.clone()))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "FlowLogAlreadyExistsForTarget",
            format!(
                "Flow log {} already logs {target}; a target can have one flow log.",
                other.id
            ),
        )
        .with_target(FIELD));
    }
    Ok(found.resource_guid)
}

/// The filter, record types, retention policy and format, as sent.
fn check_options(
    filter: Option<&str>,
    record_types: Option<&str>,
    retention: Option<&RetentionPolicy>,
    format: Option<&Format>,
) -> Result<(), ApiError> {
    // An empty filter or record type list is no filter, as clients clear them (`-RecordTypes ""`).
    fn given(text: Option<&str>) -> Option<&str> {
        text.filter(|t| !t.trim().is_empty())
    }
    if let Some(filter) = given(filter) {
        FlowLogFilter::parse(filter).map_err(|e| {
            invalid(
                "InvalidFilteringCriteria",
                "properties.enabledFilteringCriteria",
                format!("The filtering criteria '{filter}' are invalid: {e}."),
            )
        })?;
    }
    if let Some(record_types) = given(record_types) {
        RecordTypes::parse(record_types).map_err(|e| {
            invalid(
                "InvalidRecordTypes",
                "properties.recordTypes",
                format!("The record types '{record_types}' are invalid: {e}; give a comma-separated list of B, C, E and D."),
            )
        })?;
    }
    if let Some(days) = retention
        .and_then(|r| r.days)
        .filter(|d| !(0..=i64::from(i32::MAX)).contains(d))
    {
        return Err(invalid(
            "InvalidRetentionPolicyDays",
            "properties.retentionPolicy.days",
            format!(
                "Retention of {days} days is invalid: give 0 (keep the logs forever) or more days."
            ),
        ));
    }
    let format_error = |field: &str, what: String| {
        invalid(
            "InvalidFlowLogFormat",
            field,
            format!("{what}; the format is type JSON, version 1 or 2 (0: the default)."),
        )
    };
    if let Some(kind) = format
        .and_then(|f| f.format_type.as_deref())
        .filter(|t| !t.eq_ignore_ascii_case("JSON"))
    {
        return Err(format_error(
            "properties.format.type",
            format!("The flow log format '{kind}' is not supported"),
        ));
    }
    if let Some(version) = format
        .and_then(|f| f.version)
        .filter(|v| !FORMAT_VERSIONS.contains(v))
    {
        return Err(format_error(
            "properties.format.version",
            format!("Flow log format version {version} is not supported"),
        ));
    }
    Ok(())
}

/// What Azure shows for the fields a client did not send (or sent as `null`).
pub(super) fn add_defaults(props: &mut Map<String, Value>) {
    fn fill_in(map: &mut Map<String, Value>, defaults: &Map<String, Value>) {
        for (key, default) in defaults {
            match (map.entry(key.as_str()).or_insert(Value::Null), default) {
                (value @ Value::Null, _) => *value = default.clone(),
                (Value::Object(value), Value::Object(default)) => fill_in(value, default),
                _ => {}
            }
        }
    }
    if let Value::Object(defaults) = json!({
        "enabled": true,
        "flowAnalyticsConfiguration": {},
        "retentionPolicy": {"days": 0, "enabled": false},
        "format": {"type": "JSON", "version": 0},
    }) {
        fill_in(props, &defaults);
    }
}

/// Deletes the flow logs of `subscription` whose watcher or target no longer exists: Azure
/// deletes a flow log with its network watcher, and with its network security group (and so,
/// here, with any target).
pub(crate) fn delete_orphans(tx: &mut Tx<'_>, subscription: &str) -> Result<(), ApiError> {
    for flow_log in all(tx, Kind::FlowLog, subscription)? {
        let watcher_gone = find_watcher(|w| tx.get(w), &watcher_id(&flow_log.id))?.is_none();
        let target = flow_log
            .document
            .pointer("/properties/targetResourceId")
            .and_then(Value::as_str)
            .and_then(|t| ResourceId::parse(t).ok());
        let target_gone = match target {
            Some(target) => stored_target(tx, &target)?.is_none(),
            None => true,
        };
        if watcher_gone || target_gone {
            tx.delete(&flow_log.id, Precondition::None)?;
        }
    }
    Ok(())
}
