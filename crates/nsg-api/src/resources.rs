//! Network security groups (with their security rules and default rules) and application
//! security groups: ARM's PUT/GET/PATCH/DELETE and lists, on the store.
//!
//! Storage form: an NSG's rules live inside its document (see `nsg_store`'s crate docs); etags,
//! default rules and read-only fields are added when a resource is rendered.

use crate::error::ApiError;
use crate::request::{Child, Kind};
use crate::AppState;
use axum::http::StatusCode;
use nsg_model::arm;
use nsg_model::id::types;
use nsg_model::{Environment, ResourceId};
use nsg_store::{Precondition, Scope, StoredResource, Tx};
use serde_json::{json, Map, Value};

/// A rendered resource and the status to answer with.
pub struct Answer {
    pub status: StatusCode,
    pub body: Option<Value>,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Some(body),
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
        }
    }
    fn deleted(existed: bool) -> Answer {
        Answer {
            status: if existed {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            },
            body: None,
        }
    }
}

fn not_found(kind: Kind, id: &ResourceId) -> ApiError {
    let short = kind.arm_type().trim_start_matches("Microsoft.Network/");
    ApiError::not_found(
        &format!("Microsoft.Network/{short}"),
        id.name(),
        id.resource_group(),
    )
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
fn check_shape<T: serde::de::DeserializeOwned>(doc: &Value) -> Result<(), ApiError> {
    serde_path_to_error::deserialize::<_, T>(doc.clone())
        .map(|_| ())
        .map_err(|e| {
            ApiError::bad_request(
                "InvalidRequestFormat",
                format!("Cannot parse the request: {}: {}.", e.path(), e.inner()),
            )
            .with_target(e.path().to_string())
        })
}

fn object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    value.as_object_mut().expect("made an object above")
}

/// The envelope fields every stored resource gets from its path, and the location rule.
fn envelope(
    id: &ResourceId,
    arm_type: &str,
    body: &mut Map<String, Value>,
    existing: Option<&StoredResource>,
) -> Result<(), ApiError> {
    body.remove("etag");
    body.insert("id".into(), json!(id.as_str()));
    body.insert("name".into(), json!(id.name()));
    body.insert("type".into(), json!(arm_type));
    let existing_location = existing.and_then(|e| e.document.get("location").cloned());
    match (body.get("location").cloned(), existing_location) {
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
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// The resource GUID is assigned once and kept.
fn resource_guid(existing: Option<&StoredResource>) -> Value {
    existing
        .and_then(|e| e.document.pointer("/properties/resourceGuid").cloned())
        .unwrap_or_else(|| json!(uuid::Uuid::new_v4().to_string()))
}

/// Normalises an NSG body into its stored form: envelope from the path, read-only fields
/// dropped or set, each rule given its id and type.
fn normalise_nsg(
    id: &ResourceId,
    mut body: Map<String, Value>,
    existing: Option<&StoredResource>,
) -> Result<Value, ApiError> {
    envelope(id, types::NETWORK_SECURITY_GROUP, &mut body, existing)?;
    let properties = object(body.entry("properties").or_insert_with(|| json!({})));
    for read_only in [
        "defaultSecurityRules",
        "subnets",
        "networkInterfaces",
        "flowLogs",
        "provisioningState",
    ] {
        properties.remove(read_only);
    }
    properties.insert("resourceGuid".into(), resource_guid(existing));
    properties.entry("flushConnection").or_insert(json!(false));
    let rules = properties
        .entry("securityRules")
        .or_insert_with(|| json!([]));
    let Value::Array(rules) = rules else {
        return Err(ApiError::bad_request(
            "InvalidRequestFormat",
            "properties.securityRules must be an array.",
        )
        .with_target("properties.securityRules"));
    };
    for (i, rule) in rules.iter_mut().enumerate() {
        let Value::Object(rule) = rule else {
            return Err(ApiError::bad_request(
                "InvalidRequestFormat",
                format!("properties.securityRules[{i}] must be an object."),
            ));
        };
        let name = rule
            .get("name")
            .and_then(Value::as_str)
            .or_else(|| {
                rule.get("id")
                    .and_then(Value::as_str)
                    .and_then(|t| t.rsplit('/').next())
            })
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidRequestFormat",
                    format!("properties.securityRules[{i}] has no name."),
                )
                .with_target(format!("properties.securityRules[{i}].name"))
            })?;
        normalise_rule(id, &name, rule);
    }
    let doc = Value::Object(body);
    check_shape::<arm::NetworkSecurityGroup>(&doc)?;
    Ok(doc)
}

fn normalise_rule(nsg: &ResourceId, name: &str, rule: &mut Map<String, Value>) {
    rule.remove("etag");
    rule.insert("name".into(), json!(name));
    rule.insert(
        "id".into(),
        json!(nsg.child("securityRules", name).as_str()),
    );
    rule.insert("type".into(), json!(types::SECURITY_RULE));
    let properties = object(rule.entry("properties").or_insert_with(|| json!({})));
    properties.remove("provisioningState");
}

/// Validates an NSG document with nsg-model, against the ASGs of the store.
fn validate_nsg(
    state: &AppState,
    tx: &Tx<'_>,
    id: &ResourceId,
    doc: &Value,
) -> Result<(), ApiError> {
    let mut env = Environment::new();
    let mut asgs = Vec::new();
    let mut page = None;
    loop {
        let listed = tx.list(
            types::APPLICATION_SECURITY_GROUP,
            Scope::Subscription(id.subscription().to_string()),
            page.as_ref(),
            nsg_store::MAX_PAGE_SIZE,
        )?;
        asgs.extend(listed.items.iter().map(|a| a.rendered()));
        match listed.next {
            Some(next) => page = Some(next),
            None => break,
        }
    }
    asgs.push(doc.clone());
    env.add_value("request", Value::Array(asgs))
        .map_err(|e| ApiError::bad_request("InvalidRequestFormat", e.to_string()))?;
    match nsg_model::validate(&env, state.catalog.as_ref()) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let own: Vec<_> = errors
                .into_iter()
                .filter(|e| e.resource.eq_ignore_ascii_case(id.as_str()))
                .collect();
            if own.is_empty() {
                Ok(())
            } else {
                Err(ApiError::invalid(&own))
            }
        }
    }
}

/// An NSG as GET returns it: etag on it and its rules, provisioning states, default rules.
pub fn render_nsg(stored: &StoredResource) -> Value {
    let mut doc = stored.rendered();
    let etag = json!(stored.etag);
    let properties = object(
        object(&mut doc)
            .entry("properties")
            .or_insert_with(|| json!({})),
    );
    properties.insert("provisioningState".into(), json!("Succeeded"));
    if let Some(Value::Array(rules)) = properties.get_mut("securityRules") {
        for rule in rules.iter_mut() {
            render_rule(rule, &etag);
        }
    }
    let defaults: Vec<Value> = nsg_model::defaults::default_rule_documents(&stored.id)
        .into_iter()
        .map(|d| {
            let mut d = serde_json::to_value(d).expect("default rules serialise");
            object(&mut d).insert("etag".into(), etag.clone());
            d
        })
        .collect();
    properties.insert("defaultSecurityRules".into(), Value::Array(defaults));
    doc
}

fn render_rule(rule: &mut Value, etag: &Value) {
    let rule = object(rule);
    rule.insert("etag".into(), etag.clone());
    let properties = object(rule.entry("properties").or_insert_with(|| json!({})));
    properties.insert("provisioningState".into(), json!("Succeeded"));
}

fn render(kind: Kind, stored: &StoredResource) -> Value {
    match kind {
        Kind::NetworkSecurityGroup => render_nsg(stored),
        Kind::ApplicationSecurityGroup => {
            let mut doc = stored.rendered();
            let properties = object(
                object(&mut doc)
                    .entry("properties")
                    .or_insert_with(|| json!({})),
            );
            properties.insert("provisioningState".into(), json!("Succeeded"));
            doc
        }
    }
}

pub fn get(state: &AppState, kind: Kind, id: &ResourceId) -> Result<Answer, ApiError> {
    let stored = state
        .store
        .get(id)?
        .filter(|s| s.resource_type.eq_ignore_ascii_case(kind.arm_type()));
    let stored = stored.ok_or_else(|| not_found(kind, id))?;
    Ok(Answer::ok(render(kind, &stored)))
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
        let doc = match kind {
            Kind::NetworkSecurityGroup => {
                let doc = normalise_nsg(id, body, existing.as_ref())?;
                validate_nsg(state, tx, id, &doc)?;
                doc
            }
            Kind::ApplicationSecurityGroup => {
                let mut body = body;
                envelope(
                    id,
                    types::APPLICATION_SECURITY_GROUP,
                    &mut body,
                    existing.as_ref(),
                )?;
                let properties = object(body.entry("properties").or_insert_with(|| json!({})));
                properties.remove("provisioningState");
                properties.insert("resourceGuid".into(), resource_guid(existing.as_ref()));
                Value::Object(body)
            }
        };
        let outcome = tx.put(id, doc, precondition)?;
        Ok(Answer::written(
            outcome.created(),
            render(kind, outcome.resource()),
        ))
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
            return Ok(Answer::deleted(false));
        }
        let users = referrers(tx, id)?;
        if !users.is_empty() {
            let (code, what) = match kind {
                Kind::NetworkSecurityGroup => ("InUseNetworkSecurityGroupCannotBeDeleted", "Network security group"),
                Kind::ApplicationSecurityGroup => ("InUseApplicationSecurityGroupCannotBeDeleted", "Application security group"),
            };
            return Err(ApiError::bad_request(
                code,
                format!(
                    "{what} {id} cannot be deleted because it is in use by the following resources: {}. In order to delete the {what}, remove the association with the resource(s).",
                    users.join(", ")
                ),
            ));
        }
        Ok(Answer::deleted(tx.delete(id, precondition)?))
    })
}

/// Stored resources (other than `id` itself) whose documents reference `id`.
fn referrers(tx: &Tx<'_>, id: &ResourceId) -> Result<Vec<String>, ApiError> {
    let mut users = Vec::new();
    for kind in [
        types::NETWORK_SECURITY_GROUP,
        types::VIRTUAL_NETWORK,
        types::NETWORK_INTERFACE,
    ] {
        let mut page = None;
        loop {
            let listed = tx.list(
                kind,
                Scope::Subscription(id.subscription().to_string()),
                page.as_ref(),
                nsg_store::MAX_PAGE_SIZE,
            )?;
            for item in &listed.items {
                if item.id != *id && mentions(&item.document, id) {
                    users.push(item.id.to_string());
                }
            }
            match listed.next {
                Some(next) => page = Some(next),
                None => break,
            }
        }
    }
    Ok(users)
}

/// Whether any `id` field in `doc` names `target` (ids compare case-insensitively).
fn mentions(doc: &Value, target: &ResourceId) -> bool {
    match doc {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == "id"
                && v.as_str()
                    .and_then(|t| ResourceId::parse(t).ok())
                    .is_some_and(|r| r == *target))
                || (k != "id" && mentions(v, target))
        }),
        Value::Array(items) => items.iter().any(|v| mentions(v, target)),
        _ => false,
    }
}

/// A child of an NSG: a security rule (read-write) or a default rule (read-only).
pub fn get_child(
    state: &AppState,
    parent: &ResourceId,
    child: Child,
    name: &str,
) -> Result<Answer, ApiError> {
    let nsg = state
        .store
        .get(parent)?
        .ok_or_else(|| not_found(Kind::NetworkSecurityGroup, parent))?;
    let rendered = render_nsg(&nsg);
    let collection = match child {
        Child::SecurityRules => "securityRules",
        Child::DefaultSecurityRules => "defaultSecurityRules",
    };
    let found = rendered["properties"][collection]
        .as_array()
        .and_then(|rules| {
            rules.iter().find(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        })
        .cloned();
    found.map(Answer::ok).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Resource {}/{collection}/{name} not found.", parent),
        )
    })
}

pub fn list_children(
    state: &AppState,
    parent: &ResourceId,
    child: Child,
) -> Result<Answer, ApiError> {
    let nsg = state
        .store
        .get(parent)?
        .ok_or_else(|| not_found(Kind::NetworkSecurityGroup, parent))?;
    let rendered = render_nsg(&nsg);
    let collection = match child {
        Child::SecurityRules => "securityRules",
        Child::DefaultSecurityRules => "defaultSecurityRules",
    };
    Ok(Answer::ok(
        json!({"value": rendered["properties"][collection].clone()}),
    ))
}

/// PUT of a security rule: a read-modify-write of its NSG in one transaction. The rule's etag
/// is its NSG's, so `If-Match` is checked against the NSG.
pub fn put_rule(
    state: &AppState,
    parent: &ResourceId,
    name: &str,
    body: Map<String, Value>,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    state.store.transaction(|tx| {
        let existing = tx.get(parent)?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "ParentResourceNotFound", format!("Can not perform requested operation on nested resource. Parent resource '{}' not found.", parent.name()))
        })?;
        let mut nsg = existing.document.clone();
        let mut rule = body;
        normalise_rule(parent, name, &mut rule);
        let rules = object(object(&mut nsg).entry("properties").or_insert_with(|| json!({})))
            .entry("securityRules")
            .or_insert_with(|| json!([]));
        let rules = rules.as_array_mut().ok_or_else(|| ApiError::bad_request("InvalidRequestFormat", "stored securityRules is not an array"))?;
        let position = rules.iter().position(|r| r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)));
        let created = position.is_none();
        match position {
            Some(i) => rules[i] = Value::Object(rule),
            None => rules.push(Value::Object(rule)),
        }
        let nsg_body = nsg.as_object().cloned().unwrap_or_default();
        let doc = normalise_nsg(parent, nsg_body, Some(&existing))?;
        validate_nsg(state, tx, parent, &doc)?;
        let outcome = tx.put(parent, doc, precondition)?;
        let rendered = render_nsg(outcome.resource());
        let rule = rendered["properties"]["securityRules"]
            .as_array()
            .and_then(|rules| rules.iter().find(|r| r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name))))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Answer::written(created, rule))
    })
}

pub fn delete_rule(
    state: &AppState,
    parent: &ResourceId,
    name: &str,
    precondition: Precondition,
) -> Result<Answer, ApiError> {
    state.store.transaction(|tx| {
        let Some(existing) = tx.get(parent)? else {
            return Ok(Answer::deleted(false));
        };
        let mut nsg = existing.document;
        let Some(Value::Array(rules)) = nsg.pointer_mut("/properties/securityRules") else {
            return Ok(Answer::deleted(false));
        };
        let before = rules.len();
        rules.retain(|r| {
            !r["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        if rules.len() == before {
            return Ok(Answer::deleted(false));
        }
        tx.put(parent, nsg, precondition)?;
        Ok(Answer::deleted(true))
    })
}

/// A page of a list; `next` is the `$skipToken` of the following page.
pub fn list(
    state: &AppState,
    kind: Kind,
    scope: Scope,
    page: Option<&nsg_store::PageToken>,
) -> Result<(Vec<Value>, Option<nsg_store::PageToken>), ApiError> {
    let listed = state
        .store
        .list(kind.arm_type(), scope, page, state.page_size)?;
    Ok((
        listed.items.iter().map(|s| render(kind, s)).collect(),
        listed.next,
    ))
}
