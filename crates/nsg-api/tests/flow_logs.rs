//! Network Watcher's flow logs (`…/networkWatchers/{nw}/flowLogs/{name}`) through the real
//! router and a real store: their own documents below their watcher, Microsoft's example, the
//! checks with Azure's codes, and their deletion with their watcher or target.

use axum::http::StatusCode;
use nsg_api::{router, AppState};
use nsg_store::{Precondition, ResourceId};
use serde_json::{json, Value};
use std::sync::Arc;

mod support;

const TOKEN: &str = "t";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
const V: &str = "api-version=2024-07-01";

fn net(group: &str, path: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Network/{path}"
    )
}

fn watcher() -> String {
    net(
        "NetworkWatcherRG",
        "networkWatchers/NetworkWatcher_westeurope",
    )
}

fn flow_log(name: &str) -> String {
    format!("{}/flowLogs/{name}", watcher())
}

fn storage() -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/flowlogs1")
}

/// The smallest flow log a client can create.
fn flow_log_body(target: &str) -> Value {
    json!({"location": "westeurope", "properties": {"targetResourceId": target, "storageId": storage()}})
}

/// The router on a store in a temporary directory, with resource groups rg1, rg2 and
/// NetworkWatcherRG, the West Europe watcher, VNet vnet1 (subnets s1 and s2), NIC nic1 in s1
/// and NSG nsg1.
struct Api {
    app: axum::Router,
    state: Arc<AppState>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut state = AppState::new(
            nsg_store::Store::open(dir.path()).unwrap(),
            Arc::new(nsg_tags::Catalog::new()),
            vec![TOKEN.into()],
        );
        state.page_size = 2;
        let state = Arc::new(state);
        let api = Api {
            app: router(state.clone()),
            state,
            _dir: dir,
        };
        for group in ["rg1", "rg2", "NetworkWatcherRG"] {
            api.ok(
                "PUT",
                &format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/{group}"),
                json!({"location": "westeurope"}),
            )
            .await;
        }
        api.ok("PUT", &watcher(), json!({"location": "westeurope"}))
            .await;
        api.ok(
            "PUT",
            &net("rg1", "virtualNetworks/vnet1"),
            json!({"location": "westeurope", "properties": {
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "s1", "properties": {"addressPrefix": "10.0.1.0/24"}},
                        {"name": "s2", "properties": {"addressPrefix": "10.0.2.0/24"}}]}}),
        )
        .await;
        api.ok("PUT", &net("rg1", "networkInterfaces/nic1"), json!({"location": "westeurope", "properties": {
            "ipConfigurations": [{"name": "ipconfig1", "properties": {"privateIPAllocationMethod": "Dynamic",
                "subnet": {"id": net("rg1", "virtualNetworks/vnet1/subnets/s1")}}}]}}))
            .await;
        api.ok(
            "PUT",
            &net("rg1", "networkSecurityGroups/nsg1"),
            json!({"location": "westeurope"}),
        )
        .await;
        api
    }

    /// A request to `uri` as given (with its query).
    async fn call_uri(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let reply = support::send(&self.app, TOKEN, method, uri, body, &[]).await;
        (reply.status, reply.body)
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_uri(method, &format!("{path}?{V}"), body).await
    }

    /// A request that must succeed; its answer.
    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, reply) = self.call(method, path, Some(body)).await;
        assert!(status.is_success(), "{method} {path}: {status} {reply}");
        reply
    }

    /// A list followed through its `nextLink`s: the names on every page, and how many pages.
    async fn list_names(&self, path: &str) -> (Vec<String>, usize) {
        let mut names = Vec::new();
        let mut uri = format!("{path}?{V}");
        for pages in 1.. {
            let (status, page) = self.call_uri("GET", &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {page}");
            names.extend(
                page["value"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["name"].as_str().unwrap().to_string()),
            );
            match page["nextLink"].as_str() {
                Some(next) => uri = next.trim_start_matches("http://localhost").to_string(),
                None => return (names, pages),
            }
        }
        unreachable!()
    }

    async fn resource_guid(&self, path: &str) -> Value {
        let (_, doc) = self.call("GET", path, None).await;
        doc["properties"]["resourceGuid"].clone()
    }
}

fn assert_error(reply: &(StatusCode, Value), status: StatusCode, code: &str, target: Option<&str>) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
    if let Some(target) = target {
        assert_eq!(reply.1["error"]["target"], target, "{}", reply.1);
    }
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn microsofts_example_request_gets_the_example_answer_shape() {
    let api = Api::new().await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/arm-examples/NetworkWatcherFlowLogCreate.json"
    ))
    .unwrap();
    let example: Value = serde_json::from_str(&text).unwrap();
    let request = example["parameters"]["parameters"].clone();
    let location = request["location"].as_str().unwrap();
    api.ok(
        "PUT",
        &net("NetworkWatcherRG", "networkWatchers/nw1"),
        json!({"location": location}),
    )
    .await;
    let vnet = net("rg1", "virtualNetworks/central");
    api.ok("PUT", &vnet, json!({"location": location, "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}}}))
        .await;
    let path = net("NetworkWatcherRG", "networkWatchers/nw1/flowLogs/fl");

    // As Microsoft wrote it, it asks for a new NSG flow log, which Azure no longer makes.
    let refused = api.call("PUT", &path, Some(request.clone())).await;
    assert_error(
        &refused,
        StatusCode::BAD_REQUEST,
        "NsgFlowLogCreationBlocked",
        Some("properties.targetResourceId"),
    );

    // The same request for a virtual network gets the example's answer.
    let mut request = request;
    request["properties"]["targetResourceId"] = json!(vnet);
    for (status, example_status) in [(StatusCode::CREATED, "201"), (StatusCode::OK, "200")] {
        let (got, answer) = api.call("PUT", &path, Some(request.clone())).await;
        assert_eq!(got, status, "{answer}");
        let expected = &example["responses"][example_status]["body"];
        assert_eq!(keys(&answer), keys(expected));
        assert_eq!(keys(&answer["properties"]), keys(&expected["properties"]));
        assert_eq!(answer["type"], expected["type"]);
        assert_eq!(answer["id"], path.as_str());
        assert_eq!(answer["name"], "fl");
        assert_eq!(answer["location"], expected["location"]);
        assert!(answer["etag"].as_str().unwrap().starts_with("W/\""));
        assert_eq!(keys(&answer["identity"]), keys(&expected["identity"]));
        assert_eq!(answer["identity"], request["identity"], "echoed as sent");
        let props = &answer["properties"];
        assert_eq!(props["provisioningState"], "Succeeded");
        assert_eq!(props["targetResourceId"], vnet.as_str());
        assert_eq!(props["targetResourceGuid"], api.resource_guid(&vnet).await);
        for echoed in [
            "storageId",
            "enabledFilteringCriteria",
            "recordTypes",
            "enabled",
            "flowAnalyticsConfiguration",
            "retentionPolicy",
            "format",
        ] {
            assert_eq!(props[echoed], expected["properties"][echoed], "{echoed}");
        }
        let (_, read) = api.call("GET", &path, None).await;
        assert_eq!(read, answer, "GET answers what PUT did");
    }
}

#[tokio::test]
async fn flow_logs_are_resources_of_their_own_below_their_watcher() {
    let api = Api::new().await;
    let vnet = net("rg1", "virtualNetworks/vnet1");
    let mut body = flow_log_body(&vnet);
    body["tags"] = json!({"team": "net"});
    body["futureTopLevel"] = json!({"kept": [1, 2]});
    body["properties"]["futureField"] = json!("kept");
    body["properties"]["retentionPolicy"] = json!({"days": 7});
    let (status, created) = api
        .call("PUT", &flow_log("vnet1-log"), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let props = &created["properties"];
    // What the client sent, and what Azure fills in.
    assert_eq!(created["futureTopLevel"], body["futureTopLevel"]);
    assert_eq!(props["futureField"], "kept");
    assert_eq!(
        props["retentionPolicy"],
        json!({"days": 7, "enabled": false})
    );
    assert_eq!(props["enabled"], true);
    assert_eq!(props["format"], json!({"type": "JSON", "version": 0}));
    assert_eq!(props["flowAnalyticsConfiguration"], json!({}));
    assert_eq!(props["provisioningState"], "Succeeded");
    assert_eq!(props["targetResourceGuid"], api.resource_guid(&vnet).await);
    assert_eq!(
        created["type"],
        "Microsoft.Network/networkWatchers/FlowLogs"
    );

    // The stored document is the request as sent (plus the envelope and the target's GUID).
    let stored = api
        .state
        .store
        .get(&ResourceId::parse(&flow_log("vnet1-log")).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.document["properties"]["retentionPolicy"],
        json!({"days": 7})
    );
    assert!(stored.document["properties"].get("enabled").is_none());

    // A second PUT updates; a client's read-only fields are ignored; the etag changes.
    let mut again = created.clone();
    again["properties"]["enabled"] = json!(false);
    again["properties"]["targetResourceGuid"] = json!("00000000-0000-0000-0000-000000000000");
    again["properties"]["provisioningState"] = json!("Failed");
    let (status, updated) = api.call("PUT", &flow_log("vnet1-log"), Some(again)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["properties"]["enabled"], false);
    assert_eq!(
        updated["properties"]["targetResourceGuid"],
        props["targetResourceGuid"]
    );
    assert_eq!(updated["properties"]["provisioningState"], "Succeeded");
    assert_ne!(updated["etag"], created["etag"]);

    // PATCH changes tags only.
    let patched = api
        .ok(
            "PATCH",
            &flow_log("vnet1-log"),
            json!({"tags": {"env": "test"}}),
        )
        .await;
    assert_eq!(patched["tags"], json!({"env": "test"}));
    assert_eq!(patched["properties"]["enabled"], false);
    assert_ne!(patched["etag"], updated["etag"]);

    // The watcher's own document does not hold its flow logs.
    let (_, watcher_doc) = api.call("GET", &watcher(), None).await;
    assert!(
        !watcher_doc.to_string().contains("vnet1-log"),
        "{watcher_doc}"
    );

    // Lists page through the watcher's flow logs only.
    api.ok(
        "PUT",
        &flow_log("s2-log"),
        flow_log_body(&net("rg1", "virtualNetworks/vnet1/subnets/s2")),
    )
    .await;
    let nic = api
        .ok(
            "PUT",
            &flow_log("nic1-log"),
            flow_log_body(&net("rg1", "networkInterfaces/nic1")),
        )
        .await;
    assert_eq!(
        nic["properties"]["targetResourceGuid"],
        api.resource_guid(&net("rg1", "networkInterfaces/nic1"))
            .await
    );
    let other_watcher = net(
        "NetworkWatcherRG",
        "networkWatchers/NetworkWatcher_westeurope2",
    );
    api.ok("PUT", &other_watcher, json!({"location": "westeurope"}))
        .await;
    api.ok(
        "PUT",
        &format!("{other_watcher}/flowLogs/s1-log"),
        flow_log_body(&net("rg1", "virtualNetworks/vnet1/subnets/s1")),
    )
    .await;
    let (names, pages) = api.list_names(&format!("{}/flowLogs", watcher())).await;
    assert_eq!(names, ["nic1-log", "s2-log", "vnet1-log"]);
    assert_eq!(pages, 2);
    let (names, _) = api.list_names(&format!("{other_watcher}/flowLogs")).await;
    assert_eq!(names, ["s1-log"]);

    // DELETE answers 202, then 204; the flow log is gone.
    let (status, _) = api.call("DELETE", &flow_log("vnet1-log"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = api.call("DELETE", &flow_log("vnet1-log"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = api.call("GET", &flow_log("vnet1-log"), None).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "ResourceNotFound", None);
}

#[tokio::test]
async fn writes_are_checked_with_azures_codes_and_write_nothing() {
    let api = Api::new().await;
    api.ok(
        "PUT",
        &net("rg1", "virtualNetworks/north"),
        json!({"location": "northeurope"}),
    )
    .await;
    let vnet = net("rg1", "virtualNetworks/vnet1");
    let other_subscription = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vnet1";
    let filter = "/properties/enabledFilteringCriteria";
    let target = "/properties/targetResourceId";
    let bad_request = StatusCode::BAD_REQUEST;
    // what is wrong: the field set (`null` is ARM's absent) and its value; the code and target
    // of the 400 answer
    let cases = [
        (
            "no target",
            target,
            Value::Null,
            "InvalidRequestFormat",
            "properties.targetResourceId",
        ),
        (
            "no storage",
            "/properties/storageId",
            json!(""),
            "InvalidRequestFormat",
            "properties.storageId",
        ),
        (
            "no properties",
            "/properties",
            Value::Null,
            "InvalidRequestFormat",
            "properties.targetResourceId",
        ),
        (
            "storage not a storage account",
            "/properties/storageId",
            json!(vnet),
            "InvalidStorageId",
            "properties.storageId",
        ),
        (
            "target not an id",
            target,
            json!("vnet1"),
            "InvalidTargetResource",
            "properties.targetResourceId",
        ),
        (
            "target an ASG",
            target,
            json!(net("rg1", "applicationSecurityGroups/asg1")),
            "InvalidTargetResource",
            "properties.targetResourceId",
        ),
        (
            "target missing",
            target,
            json!(net("rg1", "virtualNetworks/nowhere")),
            "InvalidResourceReference",
            "properties.targetResourceId",
        ),
        (
            "subnet missing",
            target,
            json!(net("rg1", "virtualNetworks/vnet1/subnets/s9")),
            "InvalidResourceReference",
            "properties.targetResourceId",
        ),
        (
            "NIC missing",
            target,
            json!(net("rg1", "networkInterfaces/nic9")),
            "InvalidResourceReference",
            "properties.targetResourceId",
        ),
        (
            "target in another region",
            target,
            json!(net("rg1", "virtualNetworks/north")),
            "InvalidResourceReference",
            "properties.targetResourceId",
        ),
        (
            "target in another subscription",
            target,
            json!(other_subscription),
            "InvalidResourceReference",
            "properties.targetResourceId",
        ),
        (
            "new NSG flow log",
            target,
            json!(net("rg1", "networkSecurityGroups/nsg1")),
            "NsgFlowLogCreationBlocked",
            "properties.targetResourceId",
        ),
        (
            "not in the watcher's region",
            "/location",
            json!("northeurope"),
            "InvalidResourceLocation",
            "location",
        ),
        (
            "no location",
            "/location",
            Value::Null,
            "LocationRequired",
            "location",
        ),
        (
            "filter with brackets",
            filter,
            json!("(SrcIP=10.0.0.1)"),
            "InvalidFilteringCriteria",
            "properties.enabledFilteringCriteria",
        ),
        (
            "filter with an unknown field",
            filter,
            json!("SrcIp=10.0.0.1 && Port=80"),
            "InvalidFilteringCriteria",
            "properties.enabledFilteringCriteria",
        ),
        (
            "filter too long",
            filter,
            json!(format!("DstPort=80{}", ",80".repeat(500))),
            "InvalidFilteringCriteria",
            "properties.enabledFilteringCriteria",
        ),
        (
            "record types",
            "/properties/recordTypes",
            json!("B,X"),
            "InvalidRecordTypes",
            "properties.recordTypes",
        ),
        (
            "negative retention",
            "/properties/retentionPolicy",
            json!({"days": -1, "enabled": true}),
            "InvalidRetentionPolicyDays",
            "properties.retentionPolicy.days",
        ),
        (
            "format type",
            "/properties/format",
            json!({"type": "CSV"}),
            "InvalidFlowLogFormat",
            "properties.format.type",
        ),
        (
            "format version",
            "/properties/format",
            json!({"type": "JSON", "version": 3}),
            "InvalidFlowLogFormat",
            "properties.format.version",
        ),
        (
            "enabled not a boolean",
            "/properties/enabled",
            json!("yes"),
            "InvalidRequestFormat",
            "properties.enabled",
        ),
        (
            "days not a number",
            "/properties/retentionPolicy",
            json!({"days": "7"}),
            "InvalidRequestFormat",
            "properties.retentionPolicy.days",
        ),
        (
            "identity not an object",
            "/identity",
            json!("UserAssigned"),
            "InvalidRequestFormat",
            "identity",
        ),
        (
            "analytics not an object",
            "/properties/flowAnalyticsConfiguration",
            json!(true),
            "InvalidRequestFormat",
            "properties.flowAnalyticsConfiguration",
        ),
        (
            "tags not strings",
            "/tags",
            json!({"a": 1}),
            "InvalidRequestFormat",
            "tags",
        ),
    ];
    for (what, field, value, code, error_target) in cases {
        let mut body = flow_log_body(&vnet);
        let (parent, key) = field.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[key] = value;
        let reply = api.call("PUT", &flow_log("log"), Some(body)).await;
        assert_eq!(reply.0, bad_request, "{what}: {}", reply.1);
        assert_eq!(reply.1["error"]["code"], code, "{what}: {}", reply.1);
        assert_eq!(
            reply.1["error"]["target"], error_target,
            "{what}: {}",
            reply.1
        );
    }
    let (names, _) = api.list_names(&format!("{}/flowLogs", watcher())).await;
    assert!(names.is_empty(), "nothing was written: {names:?}");

    // Filters and record types in Azure's syntax are accepted; empty ones are no filter.
    let mut good = flow_log_body(&vnet);
    good["properties"]["enabledFilteringCriteria"] =
        json!("srcIP=158.255.7.8 || dstPort=56891 && Protocol=TCP,UDP");
    good["properties"]["recordTypes"] = json!("B,C,E,D");
    good["properties"]["format"] = json!({"type": "JSON", "version": 2});
    api.ok("PUT", &flow_log("log"), good.clone()).await;
    good["properties"]["enabledFilteringCriteria"] = json!("");
    good["properties"]["recordTypes"] = json!("");
    let cleared = api.ok("PUT", &flow_log("log"), good).await;
    assert_eq!(cleared["properties"]["enabledFilteringCriteria"], "");

    // One flow log per target: a second is refused, the first can still be rewritten.
    let second = api
        .call("PUT", &flow_log("second"), Some(flow_log_body(&vnet)))
        .await;
    assert_error(
        &second,
        StatusCode::CONFLICT,
        "FlowLogAlreadyExistsForTarget",
        Some("properties.targetResourceId"),
    );
    api.ok("PUT", &flow_log("log"), flow_log_body(&vnet)).await;
}

#[tokio::test]
async fn a_flow_log_needs_its_watcher() {
    let api = Api::new().await;
    let missing = net("NetworkWatcherRG", "networkWatchers/NetworkWatcher_eastus");
    let path = format!("{missing}/flowLogs/log");
    for (method, body) in [
        (
            "PUT",
            Some(flow_log_body(&net("rg1", "virtualNetworks/vnet1"))),
        ),
        ("GET", None),
        ("PATCH", Some(json!({"tags": {}}))),
        ("DELETE", None),
    ] {
        let reply = api.call(method, &path, body).await;
        assert_error(
            &reply,
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            None,
        );
    }
    let list = api.call("GET", &format!("{missing}/flowLogs"), None).await;
    assert_error(&list, StatusCode::NOT_FOUND, "ParentResourceNotFound", None);
    // A watcher in a group that does not exist: the group is missing first.
    let reply = api
        .call(
            "PUT",
            &net("nogroup", "networkWatchers/w/flowLogs/log"),
            Some(flow_log_body(&net("rg1", "virtualNetworks/vnet1"))),
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND, "ResourceGroupNotFound", None);
}

#[tokio::test]
async fn an_nsg_flow_log_made_before_the_cutover_can_still_be_changed() {
    let api = Api::new().await;
    let nsg = net("rg1", "networkSecurityGroups/nsg1");
    // Written as an older Azure made it: straight into the store.
    let id = ResourceId::parse(&flow_log("nsg1-log")).unwrap();
    let mut old = flow_log_body(&nsg);
    old["properties"]["enabled"] = json!(true);
    api.state.store.put(&id, old, Precondition::None).unwrap();

    let mut changed = flow_log_body(&nsg);
    changed["properties"]["retentionPolicy"] = json!({"days": 30, "enabled": true});
    let (status, answer) = api.call("PUT", &flow_log("nsg1-log"), Some(changed)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["properties"]["retentionPolicy"]["days"], 30);
    assert_eq!(
        answer["properties"]["targetResourceGuid"],
        api.resource_guid(&nsg).await
    );

    // Moving a flow log onto an NSG makes a new NSG flow log.
    api.ok(
        "PUT",
        &flow_log("vnet-log"),
        flow_log_body(&net("rg1", "virtualNetworks/vnet1")),
    )
    .await;
    let moved = api
        .call("PUT", &flow_log("vnet-log"), Some(flow_log_body(&nsg)))
        .await;
    assert_error(
        &moved,
        StatusCode::BAD_REQUEST,
        "NsgFlowLogCreationBlocked",
        Some("properties.targetResourceId"),
    );
    // Deleting the NSG deletes its flow log, as Azure does.
    api.ok("DELETE", &nsg, Value::Null).await;
    let (names, _) = api.list_names(&format!("{}/flowLogs", watcher())).await;
    assert_eq!(names, ["vnet-log"]);
}

#[tokio::test]
async fn flow_logs_go_with_their_watcher_and_their_targets() {
    let api = Api::new().await;
    api.ok(
        "PUT",
        &net("rg2", "virtualNetworks/vnet2"),
        json!({"location": "westeurope"}),
    )
    .await;
    for (name, target) in [
        ("vnet1-log", net("rg1", "virtualNetworks/vnet1")),
        ("s1-log", net("rg1", "virtualNetworks/vnet1/subnets/s1")),
        ("s2-log", net("rg1", "virtualNetworks/vnet1/subnets/s2")),
        ("nic1-log", net("rg1", "networkInterfaces/nic1")),
        ("vnet2-log", net("rg2", "virtualNetworks/vnet2")),
    ] {
        api.ok("PUT", &flow_log(name), flow_log_body(&target)).await;
    }
    let names = || async { api.list_names(&format!("{}/flowLogs", watcher())).await.0 };

    // A subnet deleted as a child, a NIC, a resource group (with the VNet in it).
    api.ok(
        "DELETE",
        &net("rg1", "virtualNetworks/vnet1/subnets/s2"),
        Value::Null,
    )
    .await;
    assert_eq!(
        names().await,
        ["nic1-log", "s1-log", "vnet1-log", "vnet2-log"]
    );
    api.ok("DELETE", &net("rg1", "networkInterfaces/nic1"), Value::Null)
        .await;
    assert_eq!(names().await, ["s1-log", "vnet1-log", "vnet2-log"]);
    api.ok(
        "DELETE",
        &format!("/subscriptions/{SUBSCRIPTION}/resourcegroups/rg2"),
        Value::Null,
    )
    .await;
    assert_eq!(names().await, ["s1-log", "vnet1-log"]);
    // A subnet a full VNet PUT leaves out.
    let mut vnet = api
        .ok("GET", &net("rg1", "virtualNetworks/vnet1"), Value::Null)
        .await;
    vnet["properties"]["subnets"] = json!([]);
    api.ok("PUT", &net("rg1", "virtualNetworks/vnet1"), vnet)
        .await;
    assert_eq!(names().await, ["vnet1-log"]);

    // The watcher: 202, and its flow logs are deleted, not hidden.
    let (status, _) = api.call("DELETE", &watcher(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    api.ok("PUT", &watcher(), json!({"location": "westeurope"}))
        .await;
    assert!(names().await.is_empty());
    let gone = api.call("GET", &flow_log("vnet1-log"), None).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "ResourceNotFound", None);
}
