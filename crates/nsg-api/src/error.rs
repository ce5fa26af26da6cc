//! ARM error responses: `{"error": {"code", "message", "target", "details"}}` with Azure's codes.
//! Bad input is always a 4xx: clients retry 5xx, and a bad request never gets better.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use nsg_model::ValidationError;
use nsg_store::StoreError;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            target: None,
            details: Vec::new(),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// ARM's answer for a resource that does not exist.
    pub fn not_found(kind: &str, name: &str, resource_group: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The Resource '{kind}/{name}' under resource group '{resource_group}' was not found."),
        )
    }

    /// ARM's answer for a nested resource whose parent does not exist.
    pub fn parent_not_found(parent: &nsg_model::ResourceId) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            format!(
                "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                parent.name()
            ),
        )
    }

    pub fn with_target(mut self, target: impl Into<String>) -> ApiError {
        self.target = Some(target.into());
        self
    }

    /// The first validation error as the error, all of them as details.
    pub fn invalid(errors: &[ValidationError]) -> ApiError {
        let Some(first) = errors.first() else {
            return ApiError::bad_request("InvalidRequestFormat", "the request is not valid");
        };
        let detail = |e: &ValidationError| json!({"code": e.code.as_str(), "message": e.message, "target": e.field});
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: first.code.as_str().to_string(),
            message: first.message.clone(),
            target: Some(first.field.clone()),
            details: errors.iter().map(detail).collect(),
        }
    }
}

impl ApiError {
    /// The error as the request of a child (one rule, one subnet) wrote its fields: `prefix`
    /// (`properties.securityRules[2].`, where the child sits in its parent) is cut from every
    /// target. Errors about other fields of the parent keep their paths.
    pub fn relative_to(mut self, prefix: &str) -> ApiError {
        let cut = |target: &str| target.strip_prefix(prefix).map(str::to_string);
        if let Some(relative) = self.target.as_deref().and_then(cut) {
            self.target = Some(relative);
        }
        for detail in &mut self.details {
            if let Some(relative) = detail["target"].as_str().and_then(cut) {
                detail["target"] = json!(relative);
            }
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::PreconditionFailed { id, expected, actual } => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                format!(
                    "The condition on resource {id} is not met: expected {expected}, the resource has {}.",
                    actual.as_deref().unwrap_or("no etag (it does not exist)")
                ),
            ),
            full if full.is_storage_full() => {
                tracing::error!(error = %full, "the store's disk is full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "InsufficientStorage",
                    "The server's storage is full; the request was not applied.",
                )
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "The store failed; the request was not applied.")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error =
            json!({"code": self.code, "message": self.message, "details": self.details});
        if let Some(target) = self.target {
            error["target"] = json!(target);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}
