//! What the Azure CLI needs before it talks to Microsoft.Network: `GET /subscriptions`, and a
//! managed-identity token endpoint for `az login --identity` (see `shared/docs/arm-clients.md`).
//!
//! The token endpoint is off unless enabled. When on, it answers only requests whose
//! `X-IDENTITY-HEADER` (the CLI's `IDENTITY_HEADER`) is one of the server's bearer tokens, so it
//! hands out nothing a caller did not already hold. The tokens it issues are unsigned JWTs (the
//! CLI decodes them without verifying) carrying a `tid` claim; the server remembers them and
//! accepts them as bearer tokens until they expire.

use crate::error::ApiError;
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// How long an issued identity token is accepted.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// `GET /subscriptions`.
pub fn subscriptions(state: &AppState) -> Value {
    let value: Vec<Value> = state
        .subscriptions
        .iter()
        .map(|s| {
            json!({
                "id": format!("/subscriptions/{s}"),
                "subscriptionId": s,
                "displayName": format!("OpenNSG {s}"),
                "state": "Enabled",
                "tenantId": state.tenant,
                "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
                "authorizationSource": "RoleBased",
            })
        })
        .collect();
    json!({ "value": value })
}

/// `GET /msi/token?resource=…`.
pub fn token(
    state: &AppState,
    headers: &HeaderMap,
    resource: Option<&str>,
) -> Result<Value, ApiError> {
    if !state.identity_endpoint {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "The identity endpoint is not enabled (opennsg serve --identity-endpoint).",
        ));
    }
    let presented = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let known = state.tokens.iter().fold(false, |ok, t| {
        ok | bool::from(t.as_bytes().ct_eq(presented.as_bytes()))
    });
    if !known {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "X-IDENTITY-HEADER must carry the server's bearer token (set IDENTITY_HEADER to it).",
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let expires = now + TOKEN_LIFETIME;
    let resource = resource.unwrap_or("https://management.azure.com/");
    let claims = json!({
        "aud": resource,
        "iss": "https://opennsg.invalid/",
        "tid": state.tenant,
        "oid": uuid::Uuid::new_v4().to_string(),
        "sub": "opennsg-identity",
        "iat": now.as_secs(),
        "nbf": now.as_secs(),
        "exp": expires.as_secs(),
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwt = format!(
        "{}.{}.",
        b64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        b64.encode(claims.to_string())
    );
    state.issue(jwt.clone(), expires);
    Ok(json!({
        "access_token": jwt,
        "expires_on": expires.as_secs().to_string(),
        "expires_in": TOKEN_LIFETIME.as_secs().to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
}
