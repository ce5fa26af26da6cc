//! What the API's test files share: one request through the server's router, answered in full,
//! and the documents several of them write.

// Each test file is a crate of its own and uses a part of this.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// An answer: its status, headers and JSON body (`Null` when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

/// Sends `method uri` (with its query) through `app` with `Authorization: Bearer token`, the
/// extra `headers`, and `body` as JSON.
pub async fn send(
    app: &axum::Router,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// A NIC in West Europe with one dynamic IP configuration in subnet `subnet` (an id), and NSG
/// `nsg` (an id) when given.
pub fn nic_document(subnet: &str, nsg: Option<&str>) -> Value {
    let mut body = json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
        "privateIPAllocationMethod": "Dynamic", "subnet": {"id": subnet}}}]}});
    if let Some(nsg) = nsg {
        body["properties"]["networkSecurityGroup"] = json!({ "id": nsg });
    }
    body
}
