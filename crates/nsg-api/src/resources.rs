//! Resources on the store: ARM's PUT/GET/PATCH/DELETE and lists for every kind, and the child
//! collections kept inside their parents' documents (an NSG's security rules, a VNet's subnets).
//!
//! Storage form: the document as normalised here (envelope from the path, children with their
//! ids, read-only fields dropped). Etags, provisioning states and default rules are added when a
//! resource is rendered. Every write is validated with `nsg-model` against the resources it
//! references, inside the write's transaction.

mod addresses;
pub(crate) mod flow_logs;

use crate::back_references::BackReferences;
use crate::error::ApiError;
use crate::request::{Child, Kind};
use crate::AppState;
use addresses::{allocate_addresses, mac_address};
use axum::http::StatusCode;
use nsg_model::arm;
use nsg_model::{Environment, ResourceId};
use nsg_store::{Precondition, Scope, StoredResource, Tx};
use serde_json::{json, Map, Value};

/// A rendered resource and the status to answer with.
pub struct Answer {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// Headers beside the body (`Location` and `Retry-After` of an operation still to poll).
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    /// 202 with `Location` to poll, at once (`Retry-After: 0`): the answer is already there.
    pub fn accepted(location: String) -> Answer {
        Answer {
            status: StatusCode::ACCEPTED,
            body: None,
            headers: vec![("location", location), ("retry-after", "0".to_string())],
        }
    }

    pub fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Some(body),
            headers: Vec::new(),
        }
    }
    fn written(created: bool, body: Value) -> Answer {
        Answer {
            status: if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            body: Some(body),
            headers: Vec::new(),
        }
    }
    fn deleted(kind: Kind, existed: bool) -> Answer {
        // The SDK's pollers for network watchers and flow logs accept 202/204 only.
        let status = match (existed, kind) {
            (false, _) => StatusCode::NO_CONTENT,
            (true, Kind::NetworkWatcher | Kind::FlowLog) => StatusCode::ACCEPTED,
            (true, _) => StatusCode::OK,
        };
        Answer {
            status,
            body: None,
            headers: Vec::new(),
        }
    }
}

pub fn not_found(kind: Kind, id: &ResourceId) -> ApiError {
    ApiError::not_found(kind.arm_type(), id.name(), id.resource_group())
}

/// Parses a request body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request(
            "InvalidRequestFormat",
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::bad_request(
            "InvalidRequestFormat",
            format!("Cannot parse the request: {e}."),
        )),
    }
}

/// Checks that `doc` has the shape of `T`, naming the field that does not.
fn check_shape<T: serde::de::DeserializeOwned>(doc: &Map<String, Value>) -> Result<(), ApiError> {
    read_shape::<T>(doc).map(|_| ())
}

/// `doc` read as a `T`, or the error naming the field that does not fit.
fn read_shape<T: serde::de::DeserializeOwned>(doc: &Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize::<_, T>(Value::Object(doc.clone())).map_err(|e| {
        ApiError::bad_request(
            "InvalidRequestFormat",
            format!("Cannot parse the request: {}: {}.", e.path(), e.inner()),
        )
        .with_target(e.path().to_string())
    })
}

/// Element `i` of the list at `field`, which must be an object.
fn list_object<'v>(
    item: &'v mut Value,
    field: &str,
    i: usize,
) -> Result<&'v mut Map<String, Value>, ApiError> {
    item.as_object_mut().ok_or_else(|| {
        ApiError::bad_request(
            "InvalidRequestFormat",
            format!("{field}[{i}] must be an object."),
        )
        .with_target(format!("{field}[{i}]"))
    })
}

fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("made an object above")
}

fn properties(doc: &mut Map<String, Value>) -> &mut Map<String, Value> {
    object(doc.entry("properties").or_insert_with(|| json!({})))
}

/// Field `key` of `map` as a string, set to `default` when it is missing or not a string.
fn string_or_default(map: &mut Map<String, Value>, key: &str, default: &str) -> String {
    let value = map
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string();
    map.insert(key.into(), json!(value));
    value
}

/// The envelope every stored resource gets from its path, and ARM's location rules.
fn envelope(
    id: &ResourceId,
    kind: Kind,
    body: &mut Map<String, Value>,
    existing: Option<&StoredResource>,
) -> Result<(), ApiError> {
    body.remove("etag");
    if !nsg_model::validate::valid_name(id.name()) {
        return Err(ApiError::bad_request(
            "InvalidResourceName",
            format!("Resource name {} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.", id.name()),
        )
        .with_target("name"));
    }
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "InvalidRequestFormat",
                "tags must be an object whose values are strings.",
            )
            .with_target("tags"))
        }
    }
    body.insert("id".into(), json!(id.as_str()));
    body.insert("name".into(), json!(id.name()));
    body.insert("type".into(), json!(kind.arm_type()));
    let existing_location = existing.and_then(|e| e.document.get("location").cloned());
    match (body.get("location").cloned(), existing_location) {
        (Some(Value::String(new)), _) if new.trim().is_empty() => Err(ApiError::bad_request("LocationRequired", "The location property is required for this definition.").with_target("location")),
        (Some(Value::String(new)), Some(Value::String(old))) if !same_location(&new, &old) => Err(ApiError::bad_request(
            "InvalidResourceLocation",
            format!("The resource '{}' already exists in location '{old}'. A resource with the same name cannot be created in location '{new}'.", id.name()),
        )),
        (Some(Value::String(_)), _) => Ok(()),
        (None, Some(old)) => {
            body.insert("location".into(), old);
            Ok(())
        }
        _ => Err(ApiError::bad_request("LocationRequired", "The location property is required for this definition.").with_target("location")),
    }
}

fn same_location(a: &str, b: &str) -> bool {
    location_name(a) == location_name(b)
}

/// A location as ARM names it in paths: `West Europe` is `westeurope`.
pub(crate) fn location_name(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The resource GUID is assigned once and kept.
fn keep_resource_guid(doc: &mut Map<String, Value>, existing: Option<&StoredResource>) {
    let guid = existing
        .and_then(|e| e.document.pointer("/properties/resourceGuid").cloned())
        .unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string()));
    properties(doc).insert("resourceGuid".into(), guid);
}

/// Gives each child of `collection` its id and type; every child needs a name.
fn normalise_children(
    parent: &ResourceId,
    doc: &mut Map<String, Value>,
    child: Child,
) -> Result<(), ApiError> {
    let field = format!("properties.{}", child.collection());
    let list = properties(doc)
        .entry(child.collection())
        .or_insert_with(|| json!([]));
    let Value::Array(items) = list else {
        return Err(ApiError::bad_request(
            "InvalidRequestFormat",
            format!("{field} must be an array."),
        )
        .with_target(field));
    };
    for (i, item) in items.iter_mut().enumerate() {
        let item = list_object(item, &field, i)?;
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| {
                item.get("id")
                    .and_then(Value::as_str)
                    .and_then(|t| t.rsplit('/').next())
            })
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request("InvalidRequestFormat", format!("{field}[{i}] has no name."))
                    .with_target(format!("{field}[{i}].name"))
            })?;
        normalise_child(parent, child, &name, item);
    }
    Ok(())
}

fn normalise_child(parent: &ResourceId, child: Child, name: &str, item: &mut Map<String, Value>) {
    item.remove("etag");
    item.insert("name".into(), json!(name));
    item.insert(
        "id".into(),
        json!(parent.child(child.collection(), name).as_str()),
    );
    item.insert("type".into(), json!(child.arm_type()));
    let props = properties(item);
    props.remove("provisioningState");
    // Read-only back-references a client may send back from an earlier answer.
    if child == Child::Subnets {
        props.remove("ipConfigurations");
    }
}

/// Normalises a request body into the stored form of `kind`.
fn normalise(
    tx: &Tx<'_>,
    kind: Kind,
    id: &ResourceId,
    mut body: Map<String, Value>,
    existing: Option<&StoredResource>,
) -> Result<Value, ApiError> {
    // The body as sent is checked before anything is defaulted: a field of the wrong type
    // must be refused, never replaced (a `"properties": "x"` would otherwise drop every rule).
    // `null` is an absent field, as ARM takes it.
    if body.get("properties") == Some(&Value::Null) {
        body.remove("properties");
    }
    check_kind_shape(kind, &body)?;
    envelope(id, kind, &mut body, existing)?;
    let props = properties(&mut body);
    for read_only in ["provisioningState", "defaultSecurityRules", "flowLogs"] {
        props.remove(read_only);
    }
    match kind {
        Kind::NetworkSecurityGroup => {
            for back_reference in ["subnets", "networkInterfaces"] {
                props.remove(back_reference);
            }
            props.entry("flushConnection").or_insert(json!(false));
            keep_resource_guid(&mut body, existing);
            normalise_children(id, &mut body, Child::SecurityRules)?;
        }
        Kind::ApplicationSecurityGroup => keep_resource_guid(&mut body, existing),
        Kind::VirtualNetwork => {
            keep_resource_guid(&mut body, existing);
            normalise_children(id, &mut body, Child::Subnets)?;
            properties(&mut body)
                .entry("virtualNetworkPeerings")
                .or_insert_with(|| json!([]));
        }
        Kind::NetworkInterface => {
            keep_resource_guid(&mut body, existing);
            allocate_addresses(tx, id, &mut body, existing)?;
            properties(&mut body)
                .entry("macAddress")
                .or_insert_with(|| json!(mac_address(id)));
        }
        Kind::FlowLog => flow_logs::normalise(tx, id, &mut body, existing)?,
        Kind::VirtualMachine | Kind::NetworkWatcher => {}
    }
    check_kind_shape(kind, &body)?;
    Ok(Value::Object(body))
}

/// Checks that `doc` has the shape of a `kind` document.
fn check_kind_shape(kind: Kind, doc: &Map<String, Value>) -> Result<(), ApiError> {
    match kind {
        Kind::NetworkSecurityGroup => check_shape::<arm::NetworkSecurityGroup>(doc),
        Kind::VirtualNetwork => check_shape::<arm::VirtualNetwork>(doc),
        Kind::NetworkInterface => check_shape::<arm::NetworkInterface>(doc),
        Kind::VirtualMachine => check_shape::<arm::VirtualMachine>(doc),
        Kind::FlowLog => check_shape::<flow_logs::FlowLogDocument>(doc),
        Kind::ApplicationSecurityGroup | Kind::NetworkWatcher => {
            check_shape::<arm::ApplicationSecurityGroup>(doc)
        }
    }
}

/// Checks that `doc` has the shape of a `child` document, as the request wrote it.
fn check_child_shape(child: Child, doc: &Map<String, Value>) -> Result<(), ApiError> {
    match child {
        Child::SecurityRules | Child::DefaultSecurityRules => check_shape::<arm::SecurityRule>(doc),
        Child::Subnets => check_shape::<arm::Subnet>(doc),
    }
}

/// Every stored resource of `kind` in `subscription`, page by page.
pub fn all(tx: &Tx<'_>, kind: Kind, subscription: &str) -> Result<Vec<StoredResource>, ApiError> {
    all_in(tx, kind, Scope::Subscription(subscription.to_string()))
}

/// Every stored resource of `kind` in `scope`, page by page.
pub fn all_in(tx: &Tx<'_>, kind: Kind, scope: Scope) -> Result<Vec<StoredResource>, ApiError> {
    let mut items = Vec::new();
    let mut page = None;
    loop {
        let listed = tx.list(
            kind.arm_type(),
            scope.clone(),
            page.as_ref(),
            nsg_store::MAX_PAGE_SIZE,
        )?;
        items.extend(listed.items);
        match listed.next {
            Some(next) => page = Some(next),
            None => return Ok(items),
        }
    }
}

/// The elements of the array at `pointer` in `doc` (none when it is missing or not an array).
pub fn items_at<'v>(doc: &'v Value, pointer: &str) -> impl Iterator<Item = &'v Value> {
    doc.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Ids a document references (outside its own children), and the VNets of referenced subnets.
fn references(doc: &Value, own: &ResourceId, found: &mut Vec<ResourceId>) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "id" {
                    if let Some(id) = value.as_str().and_then(|t| ResourceId::parse(t).ok()) {
                        let is_own = id == *own || id.parent().is_some_and(|p| p == *own);
                        if !is_own {
                            found.extend(id.parent());
                            found.push(id);
                        }
                    }
                } else {
                    references(value, own, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, own, found)),
        _ => {}
    }
}

/// Validates a document with nsg-model, with the resources it references as context.
fn validate(
    state: &AppState,
    tx: &Tx<'_>,
    kind: Kind,
    id: &ResourceId,
    doc: &Value,
) -> Result<(), ApiError> {
    // Flow logs are checked as they are normalised, against the resources they name.
    if matches!(
        kind,
        Kind::ApplicationSecurityGroup | Kind::NetworkWatcher | Kind::FlowLog
    ) {
        return Ok(());
    }
    let mut referenced = Vec::new();
    references(doc, id, &mut referenced);
    // References stay within one subscription: everything that evaluates, validates or checks
    // use reads one subscription, so a foreign reference stored here would make later reads of
    // this subscription fail and leave the foreign resource deletable while in use.
    if let Some(foreign) = referenced
        .iter()
        .find(|r| !r.subscription().eq_ignore_ascii_case(id.subscription()))
    {
        return Err(ApiError::bad_request(
            "InvalidResourceReference",
            format!(
                "Resource {foreign} referenced by resource {id} is in another subscription; references must stay within subscription {}.",
                id.subscription()
            ),
        ));
    }
    let asgs: Vec<ResourceId> = referenced
        .iter()
        .filter(|r| r.is_type(nsg_model::id::types::APPLICATION_SECURITY_GROUP))
        .cloned()
        .collect();
    let mut docs = vec![doc.clone()];
    let mut seen = std::collections::HashSet::new();
    seen.insert(id.clone());
    for reference in referenced {
        if seen.insert(reference.clone()) {
            if let Some(stored) = tx.get(&reference)? {
                docs.push(stored.rendered());
            }
        }
    }
    // The rules about ASGs span resources: an ASG's members must share one VNet, as must the
    // members of a rule's ASGs. Bring in the NICs of the ASGs referenced, and their VNets.
    if !asgs.is_empty() {
        for nic in all(tx, Kind::NetworkInterface, id.subscription())? {
            let member = asgs.iter().any(|asg| mentions(&nic.document, asg, false));
            if member && seen.insert(nic.id.clone()) {
                let mut vnets = Vec::new();
                references(&nic.document, &nic.id, &mut vnets);
                for vnet in vnets
                    .into_iter()
                    .filter(|r| r.is_type(nsg_model::id::types::VIRTUAL_NETWORK))
                {
                    if seen.insert(vnet.clone()) {
                        if let Some(stored) = tx.get(&vnet)? {
                            docs.push(stored.rendered());
                        }
                    }
                }
                docs.push(nic.rendered());
            }
        }
    }
    let mut env = Environment::new();
    env.add_value("request", Value::Array(docs))
        .map_err(|e| ApiError::bad_request("InvalidRequestFormat", e.to_string()))?;
    let catalog = state.catalog();
    match nsg_model::validate(&env, catalog.as_ref()) {
        Ok(_) => Ok(()),
        Err(errors) => {
            // This write's own faults, and the ASG rule it would break.
            let own: Vec<_> = errors
                .into_iter()
                .filter(|e| {
                    e.resource.eq_ignore_ascii_case(id.as_str())
                        || (e.code
                            == nsg_model::ErrorCode::ApplicationSecurityGroupMembersMustBeInSameVnet
                            && asgs
                                .iter()
                                .any(|a| e.resource.eq_ignore_ascii_case(a.as_str())))
                })
                .collect();
            if own.is_empty() {
                Ok(())
            } else {
                Err(ApiError::invalid(&own))
            }
        }
    }
}

/// A resource as GET returns it: etags, provisioning states, an NSG's default rules.
pub fn render(kind: Kind, stored: &StoredResource) -> Value {
    let mut doc = stored.rendered();
    let etag = json!(stored.etag);
    let map = object(&mut doc);
    let props = properties(map);
    props.insert("provisioningState".into(), json!("Succeeded"));
    for child in kind.children() {
        if let Some(Value::Array(items)) = props.get_mut(child.collection()) {
            for item in items.iter_mut() {
                let item = object(item);
                item.insert("etag".into(), etag.clone());
                let item_props = properties(item);
                item_props.insert("provisioningState".into(), json!("Succeeded"));
                if *child == Child::SecurityRules {
                    // Azure lists the plural fields of a custom rule, empty when the singular
                    // one is used (clients such as `az … -o table` read them).
                    for plural in [
                        "sourcePortRanges",
                        "destinationPortRanges",
                        "sourceAddressPrefixes",
                        "destinationAddressPrefixes",
                    ] {
                        item_props.entry(plural).or_insert_with(|| json!([]));
                    }
                }
            }
        }
    }
    if kind == Kind::FlowLog {
        flow_logs::add_defaults(props);
    }
    if kind == Kind::NetworkInterface {
        // What Azure answers for fields the client did not send.
        props.entry("enableIPForwarding").or_insert(json!(false));
        props
            .entry("enableAcceleratedNetworking")
            .or_insert(json!(false));
    }
    if let Some(Value::Array(configs)) = props.get_mut("ipConfigurations") {
        // The first configuration is the primary one unless the client named another.
        let primary_named = configs
            .iter()
            .any(|c| c["properties"]["primary"] == json!(true));
        for (i, config) in configs.iter_mut().enumerate() {
            let config = object(config);
            config.insert("etag".into(), etag.clone());
            let config_props = properties(config);
            config_props.insert("provisioningState".into(), json!("Succeeded"));
            config_props
                .entry("primary")
                .or_insert(json!(i == 0 && !primary_named));
        }
    }
    if kind == Kind::NetworkSecurityGroup {
        let defaults: Vec<Value> = nsg_model::defaults::default_rule_documents(&stored.id)
            .into_iter()
            .map(|d| {
                let mut d = serde_json::to_value(d).expect("default rules serialise");
                object(&mut d).insert("etag".into(), etag.clone());
                d
            })
            .collect();
        props.insert("defaultSecurityRules".into(), Value::Array(defaults));
    }
    doc
}

fn stored_of_kind(
    state: &AppState,
    kind: Kind,
    id: &ResourceId,
) -> Result<StoredResource, ApiError> {
    state
        .store
        .get(id)?
        .filter(|s| s.resource_type.eq_ignore_ascii_case(kind.arm_type()))
        .ok_or_else(|| not_found(kind, id))
}

pub fn get(state: &AppState, kind: Kind, id: &ResourceId) -> Result<Answer, ApiError> {
    let stored = stored_of_kind(state, kind, id)?;
    let mut rendered = render(kind, &stored);
    add_back_references(state, kind, id.subscription(), &mut rendered)?;
    Ok(Answer::ok(rendered))
}

pub fn put(
    state: &AppState,
    kind: Kind,
    id: &ResourceId,
    body: Map<String, Value>,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    state.store.transaction(|tx| {
        let existing = tx.get(id)?;
        if existing.is_none() {
            crate::resource_groups::require(tx, id)?;
        }
        let doc = normalise(tx, kind, id, body, existing.as_ref())?;
        validate(state, tx, kind, id, &doc)?;
        let outcome = tx.put(id, doc, precondition)?;
        if kind == Kind::VirtualNetwork {
            // Subnets a full PUT leaves out are gone, with their flow logs.
            flow_logs::delete_orphans(tx, id.subscription())?;
        }
        let mut rendered = render(kind, outcome.resource());
        add_back_references_in(tx, kind, id.subscription(), &mut rendered)?;
        Ok(Answer::written(outcome.created(), rendered))
    })
}

/// PATCH: only `tags` can change (ARM's `TagsObject`).
pub fn patch_tags(
    state: &AppState,
    kind: Kind,
    id: &ResourceId,
    body: Map<String, Value>,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    let tags = match body.get("tags") {
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => {
            Value::Object(tags.clone())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "InvalidRequestFormat",
                "tags must be an object of strings.",
            )
            .with_target("tags"))
        }
        None => json!({}),
    };
    state.store.transaction(|tx| {
        let mut existing = tx.get(id)?.ok_or_else(|| not_found(kind, id))?;
        object(&mut existing.document).insert("tags".into(), tags);
        let outcome = tx.put(id, existing.document, precondition)?;
        Ok(Answer::ok(render(kind, outcome.resource())))
    })
}

pub fn delete(
    state: &AppState,
    kind: Kind,
    id: &ResourceId,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    state.store.transaction(|tx| {
        if tx.get(id)?.is_none() {
            return Ok(Answer::deleted(kind, false));
        }
        if let Some(error) = in_use_error(tx, kind, id, &|_| true)? {
            return Err(error);
        }
        let deleted = tx.delete(id, precondition)?;
        flow_logs::delete_orphans(tx, id.subscription())?;
        Ok(Answer::deleted(kind, deleted))
    })
}

/// The error that refuses to delete `id` because other resources use it — those of its users
/// that `counts` keeps (a resource group's deletion ignores users it deletes too) — if any.
pub(crate) fn in_use_error(
    tx: &Tx<'_>,
    kind: Kind,
    id: &ResourceId,
    counts: &dyn Fn(&str) -> bool,
) -> Result<Option<ApiError>, ApiError> {
    let (users, code, what): (Vec<String>, &str, &str) = match kind {
        Kind::NetworkSecurityGroup => (
            referrers(
                tx,
                id,
                &[Kind::VirtualNetwork, Kind::NetworkInterface],
                false,
            )?,
            "InUseNetworkSecurityGroupCannotBeDeleted",
            "Network security group",
        ),
        Kind::ApplicationSecurityGroup => (
            referrers(
                tx,
                id,
                &[Kind::NetworkSecurityGroup, Kind::NetworkInterface],
                false,
            )?,
            "InUseApplicationSecurityGroupCannotBeDeleted",
            "Application security group",
        ),
        Kind::VirtualNetwork => (
            referrers(tx, id, &[Kind::NetworkInterface], true)?,
            "InUseSubnetCannotBeDeleted",
            "Virtual network",
        ),
        Kind::NetworkInterface => (
            referrers(tx, id, &[Kind::VirtualMachine], false)?,
            "NicInUse",
            "Network interface",
        ),
        Kind::VirtualMachine | Kind::NetworkWatcher | Kind::FlowLog => (Vec::new(), "", ""),
    };
    let users: Vec<String> = users.into_iter().filter(|user| counts(user)).collect();
    Ok((!users.is_empty()).then(|| in_use(code, what, id, &users)))
}

fn in_use(code: &str, what: &str, id: &ResourceId, users: &[String]) -> ApiError {
    ApiError::bad_request(
        code,
        format!(
            "{what} {id} cannot be deleted because it is in use by the following resources: {}. In order to delete it, remove the association with the resource(s).",
            users.join(", ")
        ),
    )
}

/// Stored resources of `kinds` (other than `id`) whose documents reference `id` — or, with
/// `under`, anything below it (a VNet's subnets).
fn referrers(
    tx: &Tx<'_>,
    id: &ResourceId,
    kinds: &[Kind],
    under: bool,
) -> Result<Vec<String>, ApiError> {
    let mut users = Vec::new();
    for &kind in kinds {
        for item in all(tx, kind, id.subscription())? {
            if item.id == *id || !mentions(&item.document, id, under) {
                continue;
            }
            // A VNet uses an NSG through its subnets, which Azure names.
            let subnets: Vec<String> = match (kind, under) {
                (Kind::VirtualNetwork, false) => item.document["properties"]["subnets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|subnet| mentions(subnet, id, false))
                    .filter_map(|subnet| subnet["id"].as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            if subnets.is_empty() {
                users.push(item.id.to_string());
            } else {
                users.extend(subnets);
            }
        }
    }
    Ok(users)
}

fn mentions(doc: &Value, target: &ResourceId, under: bool) -> bool {
    let hits = |id: ResourceId| {
        id == *target
            || (under && std::iter::successors(id.parent(), |p| p.parent()).any(|p| p == *target))
    };
    match doc {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == "id"
                && v.as_str()
                    .and_then(|t| ResourceId::parse(t).ok())
                    .is_some_and(hits))
                || (k != "id" && mentions(v, target, under))
        }),
        Value::Array(items) => items.iter().any(|v| mentions(v, target, under)),
        _ => false,
    }
}

fn find_child<'v>(rendered: &'v Value, child: Child, name: &str) -> Option<&'v Value> {
    rendered["properties"][child.collection()]
        .as_array()?
        .iter()
        .find(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
}

pub fn get_child(
    state: &AppState,
    kind: Kind,
    parent: &ResourceId,
    child: Child,
    name: &str,
) -> Result<Answer, ApiError> {
    let rendered = rendered_parent(state, kind, parent)?;
    find_child(&rendered, child, name)
        .cloned()
        .map(Answer::ok)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("Resource {parent}/{}/{name} not found.", child.collection()),
            )
        })
}

pub fn list_children(
    state: &AppState,
    kind: Kind,
    parent: &ResourceId,
    child: Child,
) -> Result<Answer, ApiError> {
    let rendered = rendered_parent(state, kind, parent)?;
    Ok(Answer::ok(
        json!({"value": rendered["properties"][child.collection()].clone()}),
    ))
}

/// Adds the back-references a `kind` answer shows, from the subscription's cached ones.
fn add_back_references(
    state: &AppState,
    kind: Kind,
    subscription: &str,
    rendered: &mut Value,
) -> Result<(), ApiError> {
    if BackReferences::shown_by(kind) {
        BackReferences::cached(state, subscription)?.add_to(kind, rendered);
    }
    Ok(())
}

/// [`add_back_references`] inside a write, which sees its own change before it commits.
fn add_back_references_in(
    tx: &Tx<'_>,
    kind: Kind,
    subscription: &str,
    rendered: &mut Value,
) -> Result<(), ApiError> {
    if BackReferences::shown_by(kind) {
        BackReferences::compute(tx, subscription)?.add_to(kind, rendered);
    }
    Ok(())
}

/// The parent of a child collection as a GET answers it.
fn rendered_parent(state: &AppState, kind: Kind, parent: &ResourceId) -> Result<Value, ApiError> {
    let mut rendered = render(kind, &stored_of_kind(state, kind, parent)?);
    add_back_references(state, kind, parent.subscription(), &mut rendered)?;
    Ok(rendered)
}

/// PUT of a child (a security rule, a subnet): a read-modify-write of its parent in one
/// transaction. A child's etag is its parent's, so `If-Match` is checked against the parent.
pub fn put_child(
    state: &AppState,
    kind: Kind,
    parent: &ResourceId,
    child: Child,
    name: &str,
    body: Map<String, Value>,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    if child == Child::DefaultSecurityRules {
        return Err(read_only_defaults());
    }
    state.store.transaction(|tx| {
        let existing = tx.get(parent)?.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ParentResourceNotFound",
                format!("Can not perform requested operation on nested resource. Parent resource '{}' not found.", parent.name()),
            )
        })?;
        check_child_shape(child, &body)?;
        let mut doc = existing.document.clone();
        let mut item = body;
        normalise_child(parent, child, name, &mut item);
        let items = properties(object(&mut doc)).entry(child.collection()).or_insert_with(|| json!([]));
        let items = items.as_array_mut().ok_or_else(|| ApiError::bad_request("InvalidRequestFormat", "the stored collection is not an array"))?;
        let position = items.iter().position(|r| r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        let created = position.is_none();
        // The precondition is about the child: `If-None-Match: *` asks that the child not exist;
        // `If-Match` names an etag, which a child shares with its parent.
        let precondition = match precondition {
            Precondition::IfNoneMatch if !created => {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    format!("{} {name} already exists in {parent}.", child.collection()),
                ))
            }
            Precondition::IfNoneMatch => Precondition::None,
            other => other,
        };
        let index = match position {
            Some(i) => {
                items[i] = Value::Object(item);
                i
            }
            None => {
                items.push(Value::Object(item));
                items.len() - 1
            }
        };
        let as_sent = |error: ApiError| error.relative_to(&format!("properties.{}[{index}].", child.collection()));
        let doc = normalise(tx, kind, parent, doc.as_object().cloned().unwrap_or_default(), Some(&existing)).map_err(as_sent)?;
        validate(state, tx, kind, parent, &doc).map_err(as_sent)?;
        let outcome = tx.put(parent, doc, precondition)?;
        let mut rendered = render(kind, outcome.resource());
        add_back_references_in(tx, kind, parent.subscription(), &mut rendered)?;
        Ok(Answer::written(created, find_child(&rendered, child, name).cloned().unwrap_or(Value::Null)))
    })
}

pub fn delete_child(
    state: &AppState,
    kind: Kind,
    parent: &ResourceId,
    child: Child,
    name: &str,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    if child == Child::DefaultSecurityRules {
        return Err(read_only_defaults());
    }
    state.store.transaction(|tx| {
        let Some(existing) = tx.get(parent)? else {
            return Ok(Answer::deleted(kind, false));
        };
        if child == Child::Subnets {
            let users = referrers(
                tx,
                &parent.child(child.collection(), name),
                &[Kind::NetworkInterface],
                false,
            )?;
            if !users.is_empty() {
                return Err(in_use(
                    "InUseSubnetCannotBeDeleted",
                    "Subnet",
                    &parent.child(child.collection(), name),
                    &users,
                ));
            }
        }
        let mut doc = existing.document;
        let Some(Value::Array(items)) =
            doc.pointer_mut(&format!("/properties/{}", child.collection()))
        else {
            return Ok(Answer::deleted(kind, false));
        };
        let before = items.len();
        items.retain(|r| {
            !r["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        if items.len() == before {
            return Ok(Answer::deleted(kind, false));
        }
        tx.put(parent, doc, precondition)?;
        flow_logs::delete_orphans(tx, parent.subscription())?;
        Ok(Answer::deleted(kind, true))
    })
}

fn read_only_defaults() -> ApiError {
    ApiError::bad_request(
        "CannotModifyDefaultSecurityRule",
        "Default security rules are read-only; override them with security rules of higher priority.",
    )
}

/// A page of a list; `next` is the `$skipToken` of the following page.
pub fn list(
    state: &AppState,
    kind: Kind,
    scope: Scope,
    page: Option<&nsg_store::PageToken>,
) -> Result<(Vec<Value>, Option<nsg_store::PageToken>), ApiError> {
    let subscription = scope.subscription().to_string();
    let listed = state
        .store
        .list(kind.arm_type(), scope, page, state.page_size)?;
    let references = match BackReferences::shown_by(kind) {
        true => Some(BackReferences::cached(state, &subscription)?),
        false => None,
    };
    let items = listed
        .items
        .iter()
        .map(|s| {
            let mut rendered = render(kind, s);
            if let Some(references) = &references {
                references.add_to(kind, &mut rendered);
            }
            rendered
        })
        .collect();
    Ok((items, listed.next))
}
