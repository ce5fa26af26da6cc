//! `GET /subscriptions/{sub}/providers/{namespace}`: resource provider metadata, for the Azure
//! CLI's generic resource lookup (`az network watcher run-configuration-diagnostic --resource ID`
//! reads the target's location through it: the provider's api-versions, then the resource).
//! Lists the resource types this server stores in that namespace.

use crate::error::ApiError;
use crate::request::Kind;
use crate::resources::Answer;
use axum::http::StatusCode;
use serde_json::json;

/// The api-version the metadata offers for every type: this server accepts any well-formed one,
/// so this is the one the CLI then uses (it takes the first that is not a preview).
const API_VERSION: &str = "2025-05-01";

pub fn get(subscription: &str, namespace: &str) -> Result<Answer, ApiError> {
    let prefix = format!("{}/", namespace.to_ascii_lowercase());
    let types: Vec<_> = Kind::ALL
        .iter()
        .filter_map(|kind| {
            let arm_type = kind.arm_type();
            let (space, resource_type) = arm_type.split_once('/')?;
            arm_type
                .to_ascii_lowercase()
                .starts_with(&prefix)
                .then_some((space, resource_type))
        })
        .collect();
    let Some((spelled, _)) = types.first() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        ));
    };
    Ok(Answer::ok(json!({
        "id": format!("/subscriptions/{subscription}/providers/{spelled}"),
        "namespace": spelled,
        "registrationState": "Registered",
        "registrationPolicy": "RegistrationRequired",
        "resourceTypes": types.iter().map(|(_, resource_type)| json!({
            "resourceType": resource_type,
            "locations": [],
            "apiVersions": [API_VERSION],
        })).collect::<Vec<_>>(),
    })))
}
