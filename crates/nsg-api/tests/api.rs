//! The REST API through its real router and a real SQLite store in a temporary directory.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nsg_api::{router, AppState};
use serde_json::{json, Value};
use std::sync::Arc;
use support::Reply;
use tower::ServiceExt;

mod support;

const TOKEN: &str = "test-token";
const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.Network";
const V: &str = "api-version=2026-03-01";

struct Api {
    app: axum::Router,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AppState::new(
            nsg_store::Store::open(dir.path()).unwrap(),
            Arc::new(nsg_tags::Catalog::new()),
            vec![TOKEN.to_string()],
        );
        state.page_size = 2;
        let api = Api {
            app: router(Arc::new(state)),
            _dir: dir,
        };
        // Writes go into groups that exist.
        api.group("00000000-0000-0000-0000-000000000001", "rg1")
            .await;
        api
    }

    /// Creates resource group `name` of `subscription`.
    async fn group(&self, subscription: &str, name: &str) {
        let reply = self
            .call(
                "PUT",
                &format!(
                    "/subscriptions/{subscription}/resourcegroups/{name}?api-version=2021-04-01"
                ),
                Some(json!({"location": "westeurope"})),
                &[],
            )
            .await;
        assert!(reply.status.is_success(), "{name}: {:?}", reply.body);
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        support::send(&self.app, TOKEN, method, uri, body, headers).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.call("PUT", &format!("{RG}/{path}?{V}"), Some(body), &[])
            .await
    }
    async fn get(&self, path: &str) -> Reply {
        self.call("GET", &format!("{RG}/{path}?{V}"), None, &[])
            .await
    }
}

fn rule(name: &str, priority: u32, port: &str) -> Value {
    json!({"name": name, "properties": {"protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": port, "access": "Allow", "priority": priority, "direction": "Inbound"}})
}

#[tokio::test]
async fn nsg_create_get_update_delete_with_arm_status_codes() {
    let api = Api::new().await;
    let created = api.put("networkSecurityGroups/nsg1", json!({"location": "westeurope", "properties": {"securityRules": [rule("ssh", 100, "22")]}})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let nsg = &created.body;
    assert_eq!(nsg["id"], format!("{RG}/networkSecurityGroups/nsg1"));
    assert_eq!(nsg["type"], "Microsoft.Network/networkSecurityGroups");
    assert_eq!(nsg["properties"]["provisioningState"], "Succeeded");
    assert_eq!(nsg["properties"]["flushConnection"], false);
    assert_eq!(
        nsg["properties"]["defaultSecurityRules"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        nsg["properties"]["securityRules"][0]["id"],
        format!("{RG}/networkSecurityGroups/nsg1/securityRules/ssh")
    );
    assert!(nsg["etag"].as_str().unwrap().starts_with("W/\""));
    assert!(created.headers.contains_key("x-ms-request-id"));

    let got = api.get("networkSecurityGroups/NSG1").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["etag"], nsg["etag"]);
    assert_eq!(
        got.body["properties"]["securityRules"][0]["properties"]["protocol"], "Tcp",
        "echoed as sent"
    );

    // A full PUT replaces the rule set: rules left out are removed.
    let updated = api.put("networkSecurityGroups/nsg1", json!({"location": "westeurope", "properties": {"securityRules": [rule("web", 200, "80")]}})).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_ne!(updated.body["etag"], nsg["etag"]);
    assert_eq!(
        updated.body["properties"]["securityRules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        updated.body["properties"]["resourceGuid"],
        nsg["properties"]["resourceGuid"]
    );

    let deleted = api
        .call(
            "DELETE",
            &format!("{RG}/networkSecurityGroups/nsg1?{V}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let again = api
        .call(
            "DELETE",
            &format!("{RG}/networkSecurityGroups/nsg1?{V}"),
            None,
            &[],
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let gone = api.get("networkSecurityGroups/nsg1").await;
    assert_eq!(
        (gone.status, gone.body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ResourceNotFound"))
    );
}

#[tokio::test]
async fn inline_rules_and_child_rules_are_one_and_the_same() {
    let api = Api::new().await;
    api.put("networkSecurityGroups/nsg1", json!({"location": "westeurope", "properties": {"securityRules": [rule("ssh", 100, "22")]}})).await;
    let child = api
        .get("networkSecurityGroups/nsg1/securityRules/ssh")
        .await;
    assert_eq!(child.status, StatusCode::OK);
    assert_eq!(child.body["properties"]["destinationPortRange"], "22");

    let put = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/web",
            rule("ignored-name", 110, "80"),
        )
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    assert_eq!(put.body["name"], "web");
    let nsg = api.get("networkSecurityGroups/nsg1").await;
    let names: Vec<&str> = nsg.body["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ssh", "web"]);
    assert_eq!(
        put.body["etag"], nsg.body["etag"],
        "a rule carries its NSG's etag"
    );

    let list = api.get("networkSecurityGroups/nsg1/securityRules").await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 2);
    let defaults = api
        .get("networkSecurityGroups/nsg1/defaultSecurityRules/DenyAllInBound")
        .await;
    assert_eq!(defaults.body["properties"]["priority"], 65500);

    let deleted = api
        .call(
            "DELETE",
            &format!("{RG}/networkSecurityGroups/nsg1/securityRules/SSH?{V}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let nsg = api.get("networkSecurityGroups/nsg1").await;
    assert_eq!(
        nsg.body["properties"]["securityRules"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let orphan = api
        .put(
            "networkSecurityGroups/missing/securityRules/x",
            rule("x", 100, "22"),
        )
        .await;
    assert_eq!(orphan.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn validation_errors_carry_azures_codes_and_write_nothing() {
    let api = Api::new().await;
    let conflict = api
        .put("networkSecurityGroups/nsg1", json!({"location": "westeurope", "properties": {"securityRules": [rule("a", 100, "22"), rule("b", 100, "80")]}}))
        .await;
    assert_eq!(conflict.status, StatusCode::BAD_REQUEST);
    assert_eq!(conflict.body["error"]["code"], "SecurityRuleConflict");
    assert_eq!(
        conflict.body["error"]["target"],
        "properties.securityRules[1].properties.priority"
    );
    assert_eq!(
        api.get("networkSecurityGroups/nsg1").await.status,
        StatusCode::NOT_FOUND
    );

    api.put(
        "networkSecurityGroups/nsg1",
        json!({"location": "westeurope"}),
    )
    .await;
    let bad_port = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/r",
            rule("r", 100, "636, 389"),
        )
        .await;
    assert_eq!(
        bad_port.body["error"]["code"],
        "SecurityRuleInvalidPortRange"
    );
    let missing_asg = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/r",
            json!({"properties": {"protocol": "Tcp", "sourceApplicationSecurityGroups": [{"id": format!("{RG}/applicationSecurityGroups/nope")}],
                "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "80", "access": "Allow", "priority": 100, "direction": "Inbound"}}),
        )
        .await;
    assert_eq!(
        missing_asg.body["error"]["code"],
        "InvalidResourceReference"
    );
    api.put(
        "applicationSecurityGroups/web",
        json!({"location": "westeurope"}),
    )
    .await;
    let with_asg = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/r",
            json!({"properties": {"protocol": "Tcp", "sourceApplicationSecurityGroups": [{"id": format!("{RG}/applicationSecurityGroups/WEB")}],
                "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "80", "access": "Allow", "priority": 100, "direction": "Inbound"}}),
        )
        .await;
    assert_eq!(with_asg.status, StatusCode::CREATED, "{}", with_asg.body);
    // The ASG is in use by the rule now.
    let in_use = api
        .call(
            "DELETE",
            &format!("{RG}/applicationSecurityGroups/web?{V}"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        in_use.body["error"]["code"],
        "InUseApplicationSecurityGroupCannotBeDeleted"
    );

    for (body, code) in [
        ("{ broken", "InvalidRequestFormat"),
        ("[1,2]", "InvalidRequestFormat"),
    ] {
        let request = Request::builder()
            .method("PUT")
            .uri(format!("{RG}/networkSecurityGroups/nsg2?{V}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(body))
            .unwrap();
        let response = api.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap()["error"]["code"],
            code
        );
    }
    let no_location = api
        .put("networkSecurityGroups/nsg2", json!({"properties": {}}))
        .await;
    assert_eq!(no_location.body["error"]["code"], "LocationRequired");
    let wrong_type = api
        .put(
            "networkSecurityGroups/nsg2",
            json!({"location": "westeurope", "properties": {"flushConnection": "yes"}}),
        )
        .await;
    assert_eq!(
        (wrong_type.status, wrong_type.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidRequestFormat"))
    );
}

#[tokio::test]
async fn etag_preconditions() {
    let api = Api::new().await;
    let uri = format!("{RG}/networkSecurityGroups/nsg1?{V}");
    let body = json!({"location": "westeurope"});
    let created = api
        .call("PUT", &uri, Some(body.clone()), &[("if-none-match", "*")])
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let again = api
        .call("PUT", &uri, Some(body.clone()), &[("if-none-match", "*")])
        .await;
    assert_eq!(
        (again.status, again.body["error"]["code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("PreconditionFailed"))
    );
    let etag = created.body["etag"].as_str().unwrap().to_string();
    let ok = api
        .call("PUT", &uri, Some(body.clone()), &[("if-match", &etag)])
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let stale = api
        .call("PUT", &uri, Some(body), &[("if-match", &etag)])
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let tags = api
        .call("PATCH", &uri, Some(json!({"tags": {"env": "test"}})), &[])
        .await;
    assert_eq!(
        (tags.status, &tags.body["tags"]),
        (StatusCode::OK, &json!({"env": "test"}))
    );
}

#[tokio::test]
async fn lists_page_with_next_links_that_carry_the_api_version() {
    let api = Api::new().await;
    for name in ["a", "b", "c"] {
        api.put(
            &format!("networkSecurityGroups/{name}"),
            json!({"location": "westeurope"}),
        )
        .await;
    }
    // Regression (found by a hostile probe): nextLink echoed the request's Host header, so a
    // client following it would send its token wherever a caller pointed it.
    let first = api
        .call(
            "GET",
            &format!("{RG}/networkSecurityGroups?{V}"),
            None,
            &[("host", "evil.example:443")],
        )
        .await;
    assert_eq!(first.body["value"].as_array().unwrap().len(), 2);
    let next = first.body["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with("http://localhost/subscriptions/"),
        "{next}"
    );
    assert!(
        next.contains("api-version=2026-03-01") && next.contains("$skipToken="),
        "{next}"
    );
    let path = next.split_once("://").unwrap().1.split_once('/').unwrap().1;
    let second = api.call("GET", &format!("/{path}"), None, &[]).await;
    let names: Vec<&str> = second.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c"]);
    assert!(second.body.get("nextLink").is_none());
    let all = api.call("GET", &format!("/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Network/networkSecurityGroups?{V}"), None, &[]).await;
    assert_eq!(all.body["value"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn requests_need_a_token_and_an_api_version() {
    let api = Api::new().await;
    let anonymous = api
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri(format!("{RG}/networkSecurityGroups/x?{V}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = api
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri(format!("{RG}/networkSecurityGroups/x?{V}"))
                .header("authorization", "Bearer nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let health = api
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/healthz")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let missing = api
        .call("GET", &format!("{RG}/networkSecurityGroups/x"), None, &[])
        .await;
    assert_eq!(
        (missing.status, missing.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MissingApiVersionParameter"))
    );
    let malformed = api
        .call(
            "GET",
            &format!("{RG}/networkSecurityGroups/x?api-version=latest"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        malformed.body["error"]["code"],
        "InvalidApiVersionParameter"
    );
    let unknown = api
        .call("GET", &format!("{RG}/loadBalancers/x?{V}"), None, &[])
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let default_write = api
        .put(
            "networkSecurityGroups/x/defaultSecurityRules/DenyAllInBound",
            json!({}),
        )
        .await;
    assert_eq!(default_write.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn subscriptions_identity_tokens_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = AppState::new(
        nsg_store::Store::open(dir.path()).unwrap(),
        Arc::new(nsg_tags::Catalog::new()),
        vec![TOKEN.to_string()],
    );
    state.identity_endpoint = true;
    let app = router(Arc::new(state));
    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, body) = send(
        Request::builder()
            .uri(format!("/subscriptions?{V}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let subscriptions: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        subscriptions["value"][0]["subscriptionId"],
        "00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(subscriptions["value"][0]["state"], "Enabled");

    // The identity endpoint answers only holders of the bearer token, with a JWT the API accepts.
    let token_uri =
        "/msi/token?api-version=2019-08-01&resource=https://management.core.windows.net/";
    let (status, _) = send(
        Request::builder()
            .uri(token_uri)
            .header("x-identity-header", "guess")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = send(
        Request::builder()
            .uri(token_uri)
            .header("x-identity-header", TOKEN)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    let jwt = issued["access_token"].as_str().unwrap();
    let claims = jwt.split('.').nth(1).unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert!(claims["tid"].is_string());
    assert_eq!(issued["token_type"], "Bearer");
    let (status, _) = send(
        Request::builder()
            .uri(format!("{RG}/networkSecurityGroups/x?{V}"))
            .header("authorization", format!("Bearer {jwt}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the issued token is accepted (the NSG just does not exist)"
    );

    let (status, metrics) = send(
        Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("opennsg_requests_total{operation=\"networkSecurityGroups\",method=\"GET\",status=\"404\"} 1"), "{metrics}");
    assert!(
        metrics.contains("opennsg_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("opennsg_resources 0"), "{metrics}");
}

/// Regression (found by the SDK conformance suite): tags that are not an object of strings were
/// stored, and then every SDK list of that type failed to deserialise.
#[tokio::test]
async fn tags_must_be_an_object_of_strings() {
    let api = Api::new().await;
    for tags in [
        json!("x"),
        json!(["a"]),
        json!({"a": 1}),
        json!({"a": {"b": "c"}}),
    ] {
        let reply = api
            .put(
                "networkSecurityGroups/bad",
                json!({"location": "westeurope", "tags": tags}),
            )
            .await;
        assert_eq!(
            (reply.status, reply.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidRequestFormat"))
        );
    }
    let ok = api
        .put(
            "networkSecurityGroups/good",
            json!({"location": "westeurope", "tags": {"env": "test"}}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

/// Regression (found by the SDK conformance suite): `If-None-Match: *` on a new child rule was
/// checked against its NSG, which exists, so it always failed.
#[tokio::test]
async fn if_none_match_on_a_child_is_about_the_child() {
    let api = Api::new().await;
    api.put(
        "networkSecurityGroups/nsg1",
        json!({"location": "westeurope"}),
    )
    .await;
    let uri = format!("{RG}/networkSecurityGroups/nsg1/securityRules/new?{V}");
    let created = api
        .call(
            "PUT",
            &uri,
            Some(rule("new", 100, "22")),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let again = api
        .call(
            "PUT",
            &uri,
            Some(rule("new", 100, "80")),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(
        (again.status, again.body["error"]["code"].as_str()),
        (StatusCode::PRECONDITION_FAILED, Some("PreconditionFailed"))
    );
}

/// Issue 4: concurrent writers on the same NSG never lose an update (each rule PUT is a
/// read-modify-write of the NSG in one store transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rule_writes_on_one_nsg_lose_nothing() {
    let api = Arc::new(Api::new().await);
    api.put(
        "networkSecurityGroups/busy",
        json!({"location": "westeurope"}),
    )
    .await;
    let writers: Vec<_> = (0..24)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.put(
                    &format!("networkSecurityGroups/busy/securityRules/r{i}"),
                    rule("x", 100 + i, "22"),
                )
                .await
                .status
            })
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.await.unwrap(), StatusCode::CREATED);
    }
    let nsg = api.get("networkSecurityGroups/busy").await;
    assert_eq!(
        nsg.body["properties"]["securityRules"]
            .as_array()
            .unwrap()
            .len(),
        24
    );
}

/// Regression (found by a hostile probe): `properties` of the wrong JSON type was replaced by
/// `{}`, so `PUT {"location": …, "properties": "x"}` answered 200 and dropped every rule.
#[tokio::test]
async fn properties_of_the_wrong_type_are_refused_not_replaced() {
    let api = Api::new().await;
    let subnet = format!("{RG}/virtualNetworks/vnet1/subnets/s1");
    let resources = [
        (
            "networkSecurityGroups/nsg1",
            json!({"location": "westeurope", "properties": {"securityRules": [rule("deny-all", 100, "*")]}}),
        ),
        (
            "applicationSecurityGroups/asg1",
            json!({"location": "westeurope", "properties": {}}),
        ),
        (
            "virtualNetworks/vnet1",
            json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "s1", "properties": {"addressPrefix": "10.0.1.0/24"}}]}}),
        ),
        (
            "networkInterfaces/nic1",
            json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "c1",
                "properties": {"subnet": {"id": subnet}}}]}}),
        ),
    ];
    for (path, body) in &resources {
        let created = api.put(path, body.clone()).await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{path}: {:?}",
            created.body
        );
        let before = api.get(path).await.body;
        for wrong in [json!("x"), json!([]), json!(5), json!(true)] {
            let reply = api
                .put(path, json!({"location": "westeurope", "properties": wrong}))
                .await;
            assert_eq!(
                (reply.status, reply.body["error"]["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("InvalidRequestFormat")),
                "{path} with properties {wrong}: {:?}",
                reply.body
            );
            assert_eq!(reply.body["error"]["target"], "properties", "{path}");
        }
        assert_eq!(api.get(path).await.body, before, "{path} is unchanged");
    }
    // Nested objects too: an inline rule's and a child rule's properties.
    let inline = api
        .put(
            "networkSecurityGroups/nsg1",
            json!({"location": "westeurope", "properties": {"securityRules": [{"name": "r", "properties": "x"}]}}),
        )
        .await;
    assert_eq!(inline.status, StatusCode::BAD_REQUEST, "{:?}", inline.body);
    let child = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/r",
            json!({"properties": 5}),
        )
        .await;
    assert_eq!(
        (child.status, child.body["error"]["target"].as_str()),
        (StatusCode::BAD_REQUEST, Some("properties")),
        "{:?}",
        child.body
    );
    let rules =
        api.get("networkSecurityGroups/nsg1").await.body["properties"]["securityRules"].clone();
    assert_eq!(rules.as_array().map(Vec::len), Some(1), "{rules}");
}

/// Regression (found by a hostile probe): axum's own rejections answered in plain text or with
/// an empty body — 413 for a body over the limit, 400 for a path that is not UTF-8, 405 for a
/// method a route does not take — where ARM clients expect `{"error": {"code", "message"}}`.
#[tokio::test]
async fn every_error_body_is_arm_json() {
    let api = Api::new().await;
    let too_large = "x".repeat(nsg_api::BODY_LIMIT + 1);
    let cases: Vec<(&str, String, Option<Body>, StatusCode, &str)> = vec![
        (
            "PUT",
            format!("{RG}/networkSecurityGroups/big?{V}"),
            Some(Body::from(too_large)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
        ),
        (
            "GET",
            format!("{RG}/networkSecurityGroups/nsg%FF?{V}"),
            None,
            StatusCode::BAD_REQUEST,
            "InvalidRequestFormat",
        ),
        (
            "DELETE",
            "/healthz".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            "POST",
            "/metrics".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            "PUT",
            "/msi/token".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            "POST",
            format!("/subscriptions?{V}"),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            "POST",
            format!("{RG}/networkSecurityGroups/nsg1?{V}"),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.unwrap_or_else(Body::empty))
            .unwrap();
        let response = api.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status, "{method} {uri}");
        assert!(
            response.headers().contains_key("x-ms-request-id"),
            "{method} {uri}"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let error: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}: {}", String::from_utf8_lossy(&bytes)));
        assert_eq!(error["error"]["code"], code, "{method} {uri}: {error}");
        assert!(error["error"]["message"].is_string(), "{method} {uri}");
    }
}

/// Regression (found by a hostile probe): resource group names, subscription ids and empty
/// locations were taken as given.
#[tokio::test]
async fn names_and_ids_are_validated_as_arm_does() {
    let api = Api::new().await;
    let nsg = json!({"location": "westeurope"});
    let sub = "/subscriptions/00000000-0000-0000-0000-000000000001";
    let cases = [
        (format!("{sub}/resourceGroups/rg./providers/Microsoft.Network/networkSecurityGroups/n"), "InvalidResourceGroup"),
        (format!("{sub}/resourceGroups/r%20g/providers/Microsoft.Network/networkSecurityGroups/n"), "InvalidResourceGroup"),
        (format!("{sub}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/n", "r".repeat(91)), "InvalidResourceGroup"),
        ("/subscriptions/not-a-guid/resourceGroups/rg1/providers/Microsoft.Network/networkSecurityGroups/n".to_string(), "InvalidSubscriptionId"),
    ];
    for (path, code) in cases {
        let reply = api
            .call("PUT", &format!("{path}?{V}"), Some(nsg.clone()), &[])
            .await;
        assert_eq!(
            (reply.status, reply.body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{path}"
        );
    }
    for name in ["a", "rg-1_(test).x", "Ünïcode", &"r".repeat(90)] {
        api.group("00000000-0000-0000-0000-000000000001", name)
            .await;
        let reply = api
            .call(
                "PUT",
                &format!("{sub}/resourceGroups/{name}/providers/Microsoft.Network/networkSecurityGroups/n?{V}"),
                Some(nsg.clone()),
                &[],
            )
            .await;
        assert!(reply.status.is_success(), "{name}: {:?}", reply.body);
    }
    for location in [json!(""), json!("  ")] {
        let reply = api
            .put("networkSecurityGroups/n", json!({"location": location}))
            .await;
        assert_eq!(
            reply.body["error"]["code"], "LocationRequired",
            "{location}"
        );
    }
    let reply = api
        .put("networkSecurityGroups/n", json!({"location": 5}))
        .await;
    assert_eq!(reply.body["error"]["code"], "InvalidRequestFormat");
}

/// Regression (found with Microsoft's CLI tutorial): `az group create` failed with
/// `InvalidResourceType`, and `az network nsg create -g RG` without `-l`, which takes the
/// location from the group, with `LocationRequired`.
#[tokio::test]
async fn resource_groups_are_served_as_the_cli_uses_them() {
    let api = Api::new().await;
    let sub = "/subscriptions/00000000-0000-0000-0000-000000000001";
    let group = format!("{sub}/resourcegroups/myResourceGroup");
    let at = |path: &str| format!("{path}?api-version=2021-04-01");
    let missing = api.call("GET", &at(&group), None, &[]).await;
    assert_eq!(
        (missing.status, missing.body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ResourceGroupNotFound"))
    );
    assert_eq!(
        api.call("HEAD", &at(&group), None, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let created = api
        .call(
            "PUT",
            &at(&group),
            Some(json!({"location": "eastus", "tags": {"env": "test"}})),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(
        created.body,
        json!({"id": format!("{sub}/resourceGroups/myResourceGroup"), "name": "myResourceGroup",
               "type": "Microsoft.Resources/resourceGroups", "location": "eastus",
               "tags": {"env": "test"}, "properties": {"provisioningState": "Succeeded"}})
    );
    let again = api
        .call("PUT", &at(&group), Some(json!({"location": "EastUS"})), &[])
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let moved = api
        .call("PUT", &at(&group), Some(json!({"location": "westus"})), &[])
        .await;
    assert_eq!(
        (moved.status, moved.body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("InvalidResourceGroupLocation"))
    );
    assert_eq!(
        api.call("HEAD", &at(&group), None, &[]).await.status,
        StatusCode::NO_CONTENT
    );
    let shown = api.call("GET", &at(&group), None, &[]).await;
    assert_eq!(shown.body["location"], "eastus");
    let listed = api
        .call("GET", &at(&format!("{sub}/resourcegroups")), None, &[])
        .await;
    let names: Vec<&str> = listed.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["myResourceGroup", "rg1"]);
    // Writes go into groups that exist.
    let homeless = api
        .call(
            "PUT",
            &format!("{sub}/resourceGroups/nogroup/providers/Microsoft.Network/networkSecurityGroups/n?{V}"),
            Some(json!({"location": "eastus"})),
            &[],
        )
        .await;
    assert_eq!(
        (homeless.status, homeless.body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ResourceGroupNotFound"))
    );

    // Deleting a group deletes what it holds, unless something outside uses it.
    let net = |group: &str, path: &str| {
        format!("{sub}/resourceGroups/{group}/providers/Microsoft.Network/{path}?{V}")
    };
    let nsg = api
        .call(
            "PUT",
            &net("myResourceGroup", "networkSecurityGroups/myNsg"),
            Some(json!({"location": "eastus"})),
            &[],
        )
        .await;
    assert_eq!(nsg.status, StatusCode::CREATED);
    let nsg_id = nsg.body["id"].as_str().unwrap().to_string();
    let vnet = json!({"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
        "subnets": [{"name": "s1", "properties": {"addressPrefix": "10.0.1.0/24", "networkSecurityGroup": {"id": nsg_id}}}]}});
    api.group("00000000-0000-0000-0000-000000000001", "rg2")
        .await;
    let used = api
        .call("PUT", &net("rg2", "virtualNetworks/vnet1"), Some(vnet), &[])
        .await;
    assert_eq!(used.status, StatusCode::CREATED, "{:?}", used.body);
    let refused = api.call("DELETE", &at(&group), None, &[]).await;
    assert_eq!(
        refused.body["error"]["code"], "InUseNetworkSecurityGroupCannotBeDeleted",
        "{:?}",
        refused.body
    );
    assert_eq!(
        api.call(
            "GET",
            &net("myResourceGroup", "networkSecurityGroups/myNsg"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::OK,
        "nothing was deleted"
    );
    api.call("DELETE", &net("rg2", "virtualNetworks/vnet1"), None, &[])
        .await;
    let deleted = api.call("DELETE", &at(&group), None, &[]).await;
    assert_eq!(deleted.status, StatusCode::OK, "{:?}", deleted.body);
    assert_eq!(
        api.call(
            "GET",
            &net("myResourceGroup", "networkSecurityGroups/myNsg"),
            None,
            &[]
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call("HEAD", &at(&group), None, &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Regression (found by a hostile probe): a rule naming an ASG of another subscription was
/// stored; afterwards ipFlowVerify and effective NSGs of the subscription failed, every later
/// rule PUT on that NSG failed, and the foreign ASG could be deleted while in use.
#[tokio::test]
async fn references_to_another_subscription_are_refused() {
    let api = Api::new().await;
    api.group("00000000-0000-0000-0000-000000000002", "rg1")
        .await;
    let other = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg1/providers/Microsoft.Network";
    let asg = api
        .call(
            "PUT",
            &format!("{other}/applicationSecurityGroups/foreign?{V}"),
            Some(json!({"location": "westeurope"})),
            &[],
        )
        .await;
    assert_eq!(asg.status, StatusCode::CREATED);
    let mut with_asg = rule("to-foreign", 100, "80");
    with_asg["properties"]
        .as_object_mut()
        .unwrap()
        .remove("destinationAddressPrefix");
    with_asg["properties"]["destinationApplicationSecurityGroups"] =
        json!([{"id": asg.body["id"]}]);
    let refused = api
        .put(
            "networkSecurityGroups/nsg1",
            json!({"location": "westeurope", "properties": {"securityRules": [with_asg.clone()]}}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidResourceReference")),
        "{:?}",
        refused.body
    );
    assert_eq!(
        api.get("networkSecurityGroups/nsg1").await.status,
        StatusCode::NOT_FOUND
    );
    // The same as a child rule of an NSG of this subscription.
    api.put(
        "networkSecurityGroups/nsg1",
        json!({"location": "westeurope"}),
    )
    .await;
    let child = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/to-foreign",
            with_asg,
        )
        .await;
    assert_eq!(child.body["error"]["code"], "InvalidResourceReference");
    let deleted = api
        .call(
            "DELETE",
            &format!("{other}/applicationSecurityGroups/foreign?{V}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "nothing here uses it");
}

/// Regression (found by a new user): errors of a single-rule PUT named
/// `properties.securityRules[2]…`, a path the request did not contain.
#[tokio::test]
async fn a_child_puts_errors_name_the_fields_it_sent() {
    let api = Api::new().await;
    api.put(
        "networkSecurityGroups/nsg1",
        json!({"location": "westeurope", "properties": {"securityRules": [rule("a", 100, "80"), rule("b", 110, "81")]}}),
    )
    .await;
    let reply = api
        .put(
            "networkSecurityGroups/nsg1/securityRules/c",
            rule("c", 99999, "82"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{:?}", reply.body);
    assert_eq!(
        reply.body["error"]["target"], "properties.priority",
        "{:?}",
        reply.body
    );
    for detail in reply.body["error"]["details"].as_array().unwrap() {
        let target = detail["target"].as_str().unwrap_or_default();
        assert!(!target.contains("securityRules["), "{detail}");
    }
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("securityRules["), "{message}");
}

/// A store written before resource groups were served holds resources in groups never created:
/// they are adopted, each in the location of one of its resources, and writes go on.
#[test]
fn groups_of_stores_written_before_groups_existed_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let store = nsg_store::Store::open(dir.path()).unwrap();
    let nsg = nsg_model::ResourceId::parse(&format!("{RG}/networkSecurityGroups/old")).unwrap();
    store
        .put(
            &nsg,
            json!({"location": "northeurope"}),
            nsg_store::Precondition::None,
        )
        .unwrap();
    let adopted = nsg_api::resource_groups::adopt(&store).unwrap();
    assert_eq!(
        adopted,
        ["/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1"]
    );
    assert!(nsg_api::resource_groups::adopt(&store).unwrap().is_empty());
}
