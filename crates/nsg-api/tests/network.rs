//! The seed's VM1–VM4 picture built through the API (VNet, subnets, NICs with dynamic
//! addresses, VMs, NSGs), then Network Watcher's questions, "in use" checks and validation.

use axum::http::StatusCode;
use nsg_api::{router, AppState};
use serde_json::{json, Value};
use std::sync::Arc;

mod support;

const TOKEN: &str = "t";
const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";
const V: &str = "api-version=2025-07-01";

fn net(path: &str) -> String {
    format!("{SUB}/resourceGroups/rg1/providers/Microsoft.Network/{path}")
}

/// The router, and the store directory it lives as long as.
struct Api(axum::Router, #[allow(dead_code)] tempfile::TempDir);

impl Api {
    async fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut catalog = nsg_tags::Catalog::new();
        catalog
            .load_json(br#"{"changeNumber": 7, "cloud": "Public", "values": [{"name": "Storage", "id": "Storage",
                "properties": {"changeNumber": 3, "region": "", "systemService": "AzureStorage", "addressPrefixes": ["20.60.0.0/16"]}}]}"#)
            .unwrap();
        let mut state = AppState::new(
            nsg_store::Store::open(dir.path()).unwrap(),
            Arc::new(catalog),
            vec![TOKEN.into()],
        );
        state.page_size = 100;
        let api = Api(router(Arc::new(state)), dir);
        // Writes go into groups that exist.
        for group in ["rg1", "NetworkWatcherRG"] {
            let (status, reply) = api
                .call(
                    "PUT",
                    &format!("{SUB}/resourcegroups/{group}"),
                    Some(json!({"location": "westeurope"})),
                )
                .await;
            assert!(status.is_success(), "{group}: {reply}");
        }
        api
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let reply = support::send(&self.0, TOKEN, method, &format!("{path}?{V}"), body, &[]).await;
        (reply.status, reply.body)
    }
}

fn rule(
    name: &str,
    priority: u32,
    direction: &str,
    access: &str,
    source: &str,
    destination: &str,
) -> Value {
    json!({"name": name, "properties": {"protocol": "Tcp", "sourceAddressPrefix": source, "sourcePortRange": "*",
        "destinationAddressPrefix": destination, "destinationPortRange": "80", "access": access, "priority": priority, "direction": direction}})
}

fn nic(subnet: &str, nsg: Option<&str>) -> Value {
    let nsg = nsg.map(|nsg| net(&format!("networkSecurityGroups/{nsg}")));
    support::nic_document(
        &net(&format!("virtualNetworks/vnet1/subnets/{subnet}")),
        nsg.as_deref(),
    )
}

async fn seed() -> Api {
    let api = Api::new().await;
    let put = |path: String, body: Value| {
        let api = &api;
        async move {
            let (status, reply) = api.call("PUT", &path, Some(body)).await;
            assert!(status.is_success(), "{path}: {status} {reply}");
            reply
        }
    };
    put(
        net("networkSecurityGroups/NSG1"),
        json!({"location": "westeurope", "properties": {"securityRules": [
        rule("Allow-HTTP-Internet", 200, "Inbound", "Allow", "Internet", "*")]}}),
    )
    .await;
    put(
        net("networkSecurityGroups/NSG2"),
        json!({"location": "westeurope", "properties": {"securityRules": [
        rule("Allow-HTTP-Internet", 300, "Inbound", "Allow", "Internet", "*"),
        rule("Deny-HTTP-Out", 100, "Outbound", "Deny", "*", "Internet")]}}),
    )
    .await;
    put(net("virtualNetworks/vnet1"), json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
        "subnets": [{"name": "Subnet1", "properties": {"addressPrefix": "10.0.1.0/24", "networkSecurityGroup": {"id": net("networkSecurityGroups/NSG1")}}},
                    {"name": "Subnet2", "properties": {"addressPrefix": "10.0.2.0/24"}}]}})).await;
    put(
        net("virtualNetworks/vnet1/subnets/Subnet3"),
        json!({"properties": {"addressPrefix": "10.0.3.0/24"}}),
    )
    .await;
    let vm1 = put(
        net("networkInterfaces/vm1-nic"),
        nic("Subnet1", Some("NSG2")),
    )
    .await;
    assert_eq!(
        vm1["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"], "10.0.1.4",
        "the first free address from .4"
    );
    let vm2 = put(net("networkInterfaces/vm2-nic"), nic("Subnet1", None)).await;
    assert_eq!(
        vm2["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
        "10.0.1.5"
    );
    put(net("networkInterfaces/vm4-nic"), nic("Subnet3", None)).await;
    for (vm, nic) in [("VM1", "vm1-nic"), ("VM2", "vm2-nic"), ("VM4", "vm4-nic")] {
        put(format!("{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/{vm}"),
            json!({"location": "westeurope", "properties": {"networkProfile": {"networkInterfaces": [{"id": net(&format!("networkInterfaces/{nic}"))}]}}})).await;
    }
    put(format!("{SUB}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope"),
        json!({"location": "westeurope"})).await;
    api
}

async fn verify(
    api: &Api,
    vm: &str,
    direction: &str,
    local: &str,
    local_port: &str,
    remote: &str,
    remote_port: &str,
) -> (StatusCode, Value) {
    api.call(
        "POST",
        &format!("{SUB}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/ipFlowVerify"),
        Some(json!({"targetResourceId": format!("{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/{vm}"),
            "direction": direction, "protocol": "TCP", "localIPAddress": local, "localPort": local_port,
            "remoteIPAddress": remote, "remotePort": remote_port})),
    )
    .await
}

#[tokio::test]
async fn ip_flow_verify_answers_the_seed_picture() {
    let api = seed().await;
    let cases = [
        (
            "VM1",
            "Inbound",
            "10.0.1.4",
            "80",
            "203.0.113.10",
            "50000",
            json!({"access": "Allow", "ruleName": "securityRules/Allow-HTTP-Internet"}),
        ),
        (
            "VM1",
            "Outbound",
            "10.0.1.4",
            "50000",
            "203.0.113.10",
            "80",
            json!({"access": "Deny", "ruleName": "securityRules/Deny-HTTP-Out"}),
        ),
        (
            "VM2",
            "Inbound",
            "10.0.1.5",
            "80",
            "203.0.113.10",
            "50000",
            json!({"access": "Allow", "ruleName": "securityRules/Allow-HTTP-Internet"}),
        ),
        (
            "VM2",
            "Inbound",
            "10.0.1.5",
            "22",
            "203.0.113.10",
            "50000",
            json!({"access": "Deny", "ruleName": "defaultSecurityRules/DenyAllInBound"}),
        ),
        (
            "VM4",
            "Inbound",
            "10.0.3.4",
            "22",
            "203.0.113.10",
            "50000",
            json!({"access": "Allow"}),
        ),
    ];
    for (vm, direction, local, local_port, remote, remote_port, expected) in cases {
        let (status, answer) =
            verify(&api, vm, direction, local, local_port, remote, remote_port).await;
        assert_eq!(
            (status, &answer),
            (StatusCode::OK, &expected),
            "{vm} {direction} {local}:{local_port}"
        );
    }
    let (status, error) = verify(
        &api,
        "VM1",
        "Inbound",
        "10.0.9.9",
        "80",
        "203.0.113.10",
        "1",
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidLocalIPAddress"))
    );
}

#[tokio::test]
async fn effective_rules_list_the_subnet_and_nic_nsgs() {
    let api = seed().await;
    let (status, effective) = api
        .call(
            "POST",
            &format!(
                "{}/effectiveNetworkSecurityGroups",
                net("networkInterfaces/vm1-nic")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{effective}");
    let groups = effective["value"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert!(groups[0]["networkSecurityGroup"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/NSG1"));
    assert!(groups[0]["association"]["subnet"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/subnets/Subnet1"));
    assert!(groups[1]["association"]["networkInterface"]["id"]
        .as_str()
        .unwrap()
        .ends_with("/vm1-nic"));
}

#[tokio::test]
async fn security_group_view_shows_both_levels() {
    let api = seed().await;
    let (status, view) = api
        .call(
            "POST",
            &format!("{SUB}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/securityGroupView"),
            Some(json!({"targetResourceId": format!("{SUB}/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/VM1")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let nic = &view["networkInterfaces"][0];
    assert_eq!(nic["id"], net("networkInterfaces/vm1-nic"));
    let associations = &nic["securityRuleAssociations"];
    assert_eq!(
        associations["subnetAssociation"]["securityRules"][0]["name"],
        "Allow-HTTP-Internet"
    );
    assert_eq!(
        associations["networkInterfaceAssociation"]["securityRules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        associations["defaultSecurityRules"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        associations["effectiveSecurityRules"]
            .as_array()
            .unwrap()
            .len(),
        1 + 6 + 2 + 6
    );
}

#[tokio::test]
async fn nsgs_list_the_subnets_and_nics_that_use_them() {
    let api = seed().await;
    let (_, nsg1) = api
        .call("GET", &net("networkSecurityGroups/NSG1"), None)
        .await;
    assert_eq!(
        nsg1["properties"]["subnets"],
        json!([{"id": net("virtualNetworks/vnet1/subnets/Subnet1")}])
    );
    assert_eq!(nsg1["properties"]["networkInterfaces"], json!([]));
    let (_, list) = api.call("GET", &net("networkSecurityGroups"), None).await;
    let nsg2 = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "NSG2")
        .unwrap();
    assert_eq!(
        nsg2["properties"]["networkInterfaces"],
        json!([{"id": net("networkInterfaces/vm1-nic")}])
    );
}

#[tokio::test]
async fn resources_in_use_cannot_be_deleted() {
    let api = seed().await;
    let (status, error) = api
        .call("DELETE", &net("networkSecurityGroups/NSG1"), None)
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("InUseNetworkSecurityGroupCannotBeDeleted")
        )
    );
    let (_, error) = api
        .call("DELETE", &net("networkSecurityGroups/NSG2"), None)
        .await;
    assert_eq!(
        error["error"]["code"],
        "InUseNetworkSecurityGroupCannotBeDeleted"
    );
    // Regression (found with the Azure CLI): the error named the VNet where Azure names the
    // subnets that use the NSG.
    let (_, error) = api
        .call("DELETE", &net("networkSecurityGroups/NSG1"), None)
        .await;
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&net("virtualNetworks/vnet1/subnets/Subnet1"))
            && !message.contains(&format!("{}, ", net("virtualNetworks/vnet1"))),
        "{message}"
    );
    let (_, error) = api
        .call(
            "DELETE",
            &net("virtualNetworks/vnet1/subnets/Subnet1"),
            None,
        )
        .await;
    assert_eq!(error["error"]["code"], "InUseSubnetCannotBeDeleted");
    let (_, error) = api
        .call("DELETE", &net("virtualNetworks/vnet1"), None)
        .await;
    assert_eq!(error["error"]["code"], "InUseSubnetCannotBeDeleted");
    let (_, error) = api
        .call("DELETE", &net("networkInterfaces/vm1-nic"), None)
        .await;
    assert_eq!(error["error"]["code"], "NicInUse");
    let (status, _) = api
        .call(
            "DELETE",
            &net("virtualNetworks/vnet1/subnets/Subnet2"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "an unused subnet goes");
    let (_, vnet) = api.call("GET", &net("virtualNetworks/vnet1"), None).await;
    assert_eq!(vnet["properties"]["subnets"].as_array().unwrap().len(), 2);
    let watcher = format!("{SUB}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope");
    assert_eq!(
        api.call("DELETE", &watcher, None).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.call("DELETE", &watcher, None).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn writes_are_validated_against_what_they_reference() {
    let api = seed().await;
    let (status, error) = api
        .call(
            "PUT",
            &net("networkInterfaces/bad-nic"),
            Some(nic("Subnet1", Some("NoSuchNsg"))),
        )
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidResourceReference"))
    );
    let (_, error) = api
        .call(
            "PUT",
            &net("virtualNetworks/vnet1/subnets/outside"),
            Some(json!({"properties": {"addressPrefix": "10.9.0.0/24"}})),
        )
        .await;
    assert_eq!(error["error"]["code"], "NetcfgInvalidSubnet");
    let (_, error) = api
        .call(
            "PUT",
            &net("networkInterfaces/far"),
            Some(nic("Nowhere", None)),
        )
        .await;
    assert_eq!(error["error"]["code"], "InvalidResourceReference");
    let (status, created) = api
        .call(
            "PUT",
            &net("networkSecurityGroups/NSG1/securityRules/storage"),
            Some(rule("storage", 300, "Outbound", "Allow", "*", "Storage")),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "service tags of the loaded file are known: {created}"
    );
    let (_, error) = api
        .call(
            "PUT",
            &net("networkSecurityGroups/NSG1/securityRules/sql"),
            Some(rule("sql", 301, "Outbound", "Allow", "*", "Sql")),
        )
        .await;
    assert_eq!(error["error"]["code"], "SecurityRuleInvalidAddressPrefix");
}

#[tokio::test]
async fn service_tags_come_from_the_loaded_files() {
    let api = Api::new().await;
    let (status, tags) = api
        .call(
            "GET",
            &format!("{SUB}/providers/Microsoft.Network/locations/westeurope/serviceTags"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tags["changeNumber"], "7");
    assert_eq!(tags["values"][0]["name"], "Storage");
    assert_eq!(
        tags["values"][0]["properties"]["addressPrefixes"],
        json!(["20.60.0.0/16"])
    );
}

/// Regressions found by the SDK conformance suite: writes checked only against their own
/// faults let an ASG span two VNets (then every question in the subscription failed); names of
/// top-level resources were not checked; an empty rule name had the wrong code; the PUT answer
/// of an NSG lacked its back-references.
#[tokio::test]
async fn cross_resource_rules_names_and_put_answers() {
    let api = seed().await;
    let put = |path: String, body: Value| {
        let api = &api;
        async move { api.call("PUT", &path, Some(body)).await }
    };
    put(
        net("applicationSecurityGroups/asgX"),
        json!({"location": "westeurope"}),
    )
    .await;
    put(net("virtualNetworks/vnet2"), json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.9.0.0/16"]},
        "subnets": [{"name": "s", "properties": {"addressPrefix": "10.9.1.0/24"}}]}})).await;
    let member = |vnet: &str, subnet: &str| {
        json!({"location": "westeurope", "properties": {"ipConfigurations": [{"name": "ip", "properties": {
        "subnet": {"id": net(&format!("virtualNetworks/{vnet}/subnets/{subnet}"))},
        "applicationSecurityGroups": [{"id": net("applicationSecurityGroups/asgX")}]}}]}})
    };
    let (status, _) = put(net("networkInterfaces/nicA"), member("vnet1", "Subnet2")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, error) = put(net("networkInterfaces/nicB"), member("vnet2", "s")).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("ApplicationSecurityGroupMembersMustBeInSameVnet")
        )
    );
    let (status, _) = api
        .call(
            "POST",
            &format!(
                "{}/effectiveNetworkSecurityGroups",
                net("networkInterfaces/vm1-nic")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the subscription stays answerable");

    for name in ["-starts-with-dash", "ends-with-dot.", &"x".repeat(81)] {
        let (status, error) = put(
            net(&format!("networkSecurityGroups/{name}")),
            json!({"location": "westeurope"}),
        )
        .await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidResourceName")),
            "{name}"
        );
        let (_, error) = put(
            net(&format!("applicationSecurityGroups/{name}")),
            json!({"location": "westeurope"}),
        )
        .await;
        assert_eq!(error["error"]["code"], "InvalidResourceName", "{name}");
    }
    let (_, error) = put(net("networkSecurityGroups/empty-name"), json!({"location": "westeurope", "properties": {"securityRules": [{"name": "", "properties": {
        "protocol": "Tcp", "sourceAddressPrefix": "*", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22",
        "access": "Allow", "priority": 100, "direction": "Inbound"}}]}})).await;
    assert_eq!(error["error"]["code"], "InvalidResourceName");

    let (_, nsg1) = put(
        net("networkSecurityGroups/NSG1"),
        json!({"location": "westeurope"}),
    )
    .await;
    assert_eq!(
        nsg1["properties"]["subnets"],
        json!([{"id": net("virtualNetworks/vnet1/subnets/Subnet1")}])
    );
    assert_eq!(nsg1["properties"]["networkInterfaces"], json!([]));
}

/// Regression (found with the Azure CLI and the JavaScript SDK): custom rules lacked their empty
/// plural fields (`az network nsg rule list -o table` failed on them), and NICs the fields Azure
/// fills in when the client sends none.
#[tokio::test]
async fn answers_carry_the_fields_azure_adds() {
    let api = seed().await;
    let (_, nsg) = api
        .call("GET", &net("networkSecurityGroups/NSG2"), None)
        .await;
    for rule in nsg["properties"]["securityRules"].as_array().unwrap() {
        for plural in [
            "sourcePortRanges",
            "destinationPortRanges",
            "sourceAddressPrefixes",
            "destinationAddressPrefixes",
        ] {
            assert_eq!(rule["properties"][plural], json!([]), "{plural} of {rule}");
        }
    }
    let (_, child) = api
        .call(
            "GET",
            &net("networkSecurityGroups/NSG2/securityRules/Deny-HTTP-Out"),
            None,
        )
        .await;
    assert_eq!(child["properties"]["sourcePortRanges"], json!([]));
    let (_, nic) = api
        .call("GET", &net("networkInterfaces/vm1-nic"), None)
        .await;
    assert_eq!(nic["properties"]["enableIPForwarding"], false);
    assert_eq!(nic["properties"]["enableAcceleratedNetworking"], false);
    assert_eq!(
        nic["properties"]["ipConfigurations"][0]["properties"]["primary"],
        true
    );
    // Regression: subnets lacked the back-references to the IP configurations in them.
    let (_, vnet) = api.call("GET", &net("virtualNetworks/vnet1"), None).await;
    let subnet1 = &vnet["properties"]["subnets"][0];
    assert_eq!(subnet1["name"], "Subnet1");
    assert_eq!(
        subnet1["properties"]["ipConfigurations"],
        json!([
            {"id": net("networkInterfaces/vm1-nic/ipConfigurations/ipconfig1")},
            {"id": net("networkInterfaces/vm2-nic/ipConfigurations/ipconfig1")}
        ])
    );
    let (_, subnet3) = api
        .call("GET", &net("virtualNetworks/vnet1/subnets/Subnet3"), None)
        .await;
    assert_eq!(
        subnet3["properties"]["ipConfigurations"],
        json!([{"id": net("networkInterfaces/vm4-nic/ipConfigurations/ipconfig1")}])
    );
    // Sent back in a PUT, they are not stored as the client's.
    let (status, _) = api
        .call("PUT", &net("virtualNetworks/vnet1"), Some(vnet.clone()))
        .await;
    assert!(status.is_success());
    // What the client sent is echoed, not overridden.
    let mut body = nic_body_with_two_configurations();
    body["properties"]["enableIPForwarding"] = json!(true);
    body["properties"]["ipConfigurations"][1]["properties"]["primary"] = json!(true);
    let (status, two) = api
        .call("PUT", &net("networkInterfaces/two-nic"), Some(body))
        .await;
    assert!(status.is_success(), "{two}");
    assert_eq!(two["properties"]["enableIPForwarding"], true);
    let primaries: Vec<&Value> = two["properties"]["ipConfigurations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["properties"]["primary"])
        .collect();
    assert_eq!(primaries, [&json!(false), &json!(true)]);
}

fn nic_body_with_two_configurations() -> Value {
    let mut body = nic("Subnet2", None);
    let second = json!({"name": "ipconfig2", "properties": {"privateIPAllocationMethod": "Dynamic",
        "subnet": {"id": net("virtualNetworks/vnet1/subnets/Subnet2")}}});
    body["properties"]["ipConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(second);
    body
}
