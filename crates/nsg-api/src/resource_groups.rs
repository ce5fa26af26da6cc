//! `Microsoft.Resources/resourceGroups`: what `az group create/show/list/exists/delete` need, and
//! the location `az network … create -g RG` takes from the group when it is given none.
//!
//! A group's own id (`/subscriptions/S/resourceGroups/RG`) names no provider, so the store keeps
//! it under `…/resourceGroups/RG/providers/Microsoft.Resources/resourceGroups/RG`; answers use
//! the group's own id. Deleting a group deletes what it holds, as Azure does, in one transaction
//! — unless a resource outside the group uses one of them: then nothing is deleted and the error
//! names the user, as deleting that resource alone would.

use crate::error::ApiError;
use crate::request::Kind;
use crate::resources::{all_in, in_use_error, Answer};
use crate::AppState;
use axum::http::StatusCode;
use nsg_model::ResourceId;
use nsg_store::{PageToken, Precondition, Scope, Store, StoredResource, Tx};
use serde_json::{json, Map, Value};

pub const TYPE: &str = "Microsoft.Resources/resourceGroups";

/// Where the store keeps group `name` of `subscription`.
fn stored_id(subscription: &str, name: &str) -> Result<ResourceId, ApiError> {
    ResourceId::parse(&format!(
        "/subscriptions/{subscription}/resourceGroups/{name}/providers/{TYPE}/{name}"
    ))
    .map_err(|e| ApiError::bad_request("InvalidResourceGroup", e.to_string()))
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{name}' could not be found."),
    )
}

/// The group as ARM answers it.
fn render(stored: &StoredResource) -> Value {
    let mut doc = stored.rendered();
    let name = stored.id.resource_group().to_string();
    let id = format!(
        "/subscriptions/{}/resourceGroups/{name}",
        stored.id.subscription()
    );
    if let Some(map) = doc.as_object_mut() {
        map.insert("id".into(), json!(id));
        map.insert("name".into(), json!(name));
        map.insert("type".into(), json!(TYPE));
        map.insert(
            "properties".into(),
            json!({"provisioningState": "Succeeded"}),
        );
        map.remove("etag");
    }
    doc
}

/// Writes go into groups that exist, as in Azure.
pub fn require(tx: &Tx<'_>, id: &ResourceId) -> Result<(), ApiError> {
    match tx.get(&stored_id(id.subscription(), id.resource_group())?)? {
        Some(_) => Ok(()),
        None => Err(not_found(id.resource_group())),
    }
}

/// Creates the groups that hold resources but were never created (stores written before groups
/// were served), each in the location of one of its resources. Returns their ids.
pub fn adopt(store: &Store) -> Result<Vec<String>, ApiError> {
    store.transaction(|tx| {
        let mut adopted = Vec::new();
        for resource in tx.one_per_resource_group()? {
            let (subscription, name) = (resource.id.subscription(), resource.id.resource_group());
            let id = stored_id(subscription, name)?;
            if tx.get(&id)?.is_some() {
                continue;
            }
            let location = resource.document["location"]
                .as_str()
                .filter(|l| !l.is_empty())
                .unwrap_or("global");
            tx.put(&id, json!({"location": location}), Precondition::None)?;
            adopted.push(format!(
                "/subscriptions/{subscription}/resourceGroups/{name}"
            ));
        }
        Ok(adopted)
    })
}

pub fn put(
    state: &AppState,
    subscription: &str,
    name: &str,
    body: Map<String, Value>,
) -> Result<Answer, ApiError> {
    let id = stored_id(subscription, name)?;
    let location = match body.get("location") {
        Some(Value::String(location)) if !location.trim().is_empty() => location.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "LocationRequired",
                "The location property is required for this definition.",
            )
            .with_target("location"))
        }
        Some(_) => {
            return Err(
                ApiError::bad_request("InvalidRequestFormat", "location must be a string.")
                    .with_target("location"),
            )
        }
    };
    let mut doc = json!({"location": location});
    match body.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => {
            doc["tags"] = Value::Object(tags.clone());
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "InvalidRequestFormat",
                "tags must be an object whose values are strings.",
            )
            .with_target("tags"))
        }
    }
    state.store.transaction(|tx| {
        if let Some(existing) = tx.get(&id)? {
            let old = existing.document["location"].as_str().unwrap_or_default();
            if !old.eq_ignore_ascii_case(&location) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "InvalidResourceGroupLocation",
                    format!("Invalid resource group location '{location}'. The Resource group already exists in location '{old}'."),
                ));
            }
            // The location keeps the spelling it was created with.
            doc["location"] = json!(old);
        }
        let outcome = tx.put(&id, doc, Precondition::None)?;
        let rendered = render(outcome.resource());
        Ok(if outcome.created() {
            Answer {
                status: StatusCode::CREATED,
                body: Some(rendered),
                headers: Vec::new(),
            }
        } else {
            Answer::ok(rendered)
        })
    })
}

pub fn get(state: &AppState, subscription: &str, name: &str) -> Result<Answer, ApiError> {
    let stored = state
        .store
        .get(&stored_id(subscription, name)?)?
        .ok_or_else(|| not_found(name))?;
    Ok(Answer::ok(render(&stored)))
}

/// `HEAD` (`az group exists`): 204 if the group exists, 404 if not, no body either way.
pub fn exists(state: &AppState, subscription: &str, name: &str) -> Result<Answer, ApiError> {
    let found = state.store.get(&stored_id(subscription, name)?)?.is_some();
    Ok(Answer {
        status: if found {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::NOT_FOUND
        },
        body: None,
        headers: Vec::new(),
    })
}

/// Deletes the group and everything in it, or nothing (see the module's documentation).
pub fn delete(state: &AppState, subscription: &str, name: &str) -> Result<Answer, ApiError> {
    let id = stored_id(subscription, name)?;
    state.store.transaction(|tx| {
        if tx.get(&id)?.is_none() {
            return Err(not_found(name));
        }
        let contents = contents(tx, subscription, name)?;
        let inside = |user: &str| {
            ResourceId::parse(user)
                .is_ok_and(|user| user.resource_group().eq_ignore_ascii_case(name))
        };
        for (kind, resource) in &contents {
            if let Some(error) = in_use_error(tx, *kind, &resource.id, &|user| !inside(user))? {
                return Err(error);
            }
        }
        for (_, resource) in &contents {
            tx.delete(&resource.id, Precondition::None)?;
        }
        tx.delete(&id, Precondition::None)?;
        // Flow logs elsewhere whose targets were in the group go with them.
        crate::resources::flow_logs::delete_orphans(tx, subscription)?;
        Ok(Answer {
            status: StatusCode::OK,
            body: None,
            headers: Vec::new(),
        })
    })
}

/// Every resource in the group, with its kind.
fn contents(
    tx: &Tx<'_>,
    subscription: &str,
    name: &str,
) -> Result<Vec<(Kind, StoredResource)>, ApiError> {
    let mut found = Vec::new();
    for kind in Kind::ALL {
        let scope = Scope::ResourceGroup(subscription.to_string(), name.to_string());
        found.extend(all_in(tx, kind, scope)?.into_iter().map(|r| (kind, r)));
    }
    Ok(found)
}

/// A page of the subscription's groups.
pub fn list(
    state: &AppState,
    subscription: &str,
    page: Option<&PageToken>,
) -> Result<(Vec<Value>, Option<PageToken>), ApiError> {
    let listed = state.store.list(
        TYPE,
        Scope::Subscription(subscription.to_string()),
        page,
        state.page_size,
    )?;
    Ok((listed.items.iter().map(render).collect(), listed.next))
}
