//! ARM JSON documents as clients send and receive them.
//!
//! These types hold raw, unvalidated values so that what is read is written back in the same
//! shape: enum values keep their casing (`"TCP"` stays `"TCP"`), plural arrays stay present when
//! sent empty, and fields this model does not know are kept in `extra`. Validation turns them into
//! the typed model in [`crate::model`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A reference to another resource: `{"id": "..."}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The envelope every ARM resource and child resource shares.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource<P> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default)]
    pub properties: P,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub type NetworkSecurityGroup = Resource<NetworkSecurityGroupProperties>;
pub type SecurityRule = Resource<SecurityRuleProperties>;
pub type ApplicationSecurityGroup = Resource<OpaqueProperties>;
pub type VirtualNetwork = Resource<VirtualNetworkProperties>;
pub type Subnet = Resource<SubnetProperties>;
pub type VirtualNetworkPeering = Resource<PeeringProperties>;
pub type NetworkInterface = Resource<NetworkInterfaceProperties>;
pub type IpConfiguration = Resource<IpConfigurationProperties>;
pub type VirtualMachine = Resource<VirtualMachineProperties>;

/// Properties this model reads nothing from (ASGs); kept verbatim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpaqueProperties {
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSecurityGroupProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_connection: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_rules: Option<Vec<SecurityRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_security_rules: Option<Vec<SecurityRule>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address_prefixes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_application_security_groups: Option<Vec<SubResource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_address_prefixes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_application_security_groups: Option<Vec<SubResource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_port_ranges: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port_ranges: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressSpace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefixes: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualNetworkProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_space: Option<AddressSpace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnets: Option<Vec<Subnet>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_network_peerings: Option<Vec<VirtualNetworkPeering>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_timeout_in_minutes: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_prefixes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeeringProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_virtual_network: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_address_space: Option<AddressSpace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_virtual_network_address_space: Option<AddressSpace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peering_state: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_configurations: Option<Vec<IpConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_security_group: Option<SubResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(
        rename = "enableIPForwarding",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ip_forwarding: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_machine: Option<SubResource>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfigurationProperties {
    #[serde(
        rename = "privateIPAddress",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address: Option<String>,
    #[serde(
        rename = "privateIPAddressVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_address_version: Option<String>,
    #[serde(
        rename = "privateIPAllocationMethod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub private_ip_allocation_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubResource>,
    #[serde(
        rename = "applicationSecurityGroups",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub application_security_groups: Option<Vec<SubResource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_profile: Option<NetworkProfile>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interfaces: Option<Vec<SubResource>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_body(file: &str) -> Value {
        let path = format!(
            "{}/../../tests/data/arm-examples/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("reading ARM example");
        let doc: Value = serde_json::from_str(&text).expect("example is JSON");
        doc["responses"]["200"]["body"].clone()
    }

    /// Echo Azure's shapes (invariant 7): reading and writing gives back the same JSON.
    #[test]
    fn microsoft_examples_round_trip_unchanged() {
        for (file, kind) in [
            ("NetworkSecurityGroupGet.json", "nsg"),
            ("NetworkSecurityGroupCreateWithRule.json", "nsg"),
            ("NetworkInterfaceGet.json", "nic"),
            ("VirtualNetworkGet.json", "vnet"),
            ("ApplicationSecurityGroupGet.json", "asg"),
        ] {
            let body = example_body(file);
            let back = match kind {
                "nsg" => serde_json::to_value(
                    serde_json::from_value::<NetworkSecurityGroup>(body.clone()).unwrap(),
                ),
                "nic" => serde_json::to_value(
                    serde_json::from_value::<NetworkInterface>(body.clone()).unwrap(),
                ),
                "vnet" => serde_json::to_value(
                    serde_json::from_value::<VirtualNetwork>(body.clone()).unwrap(),
                ),
                _ => serde_json::to_value(
                    serde_json::from_value::<ApplicationSecurityGroup>(body.clone()).unwrap(),
                ),
            }
            .unwrap();
            assert_eq!(back, body, "{file} changed shape on a round trip");
        }
    }

    #[test]
    fn enum_casing_and_empty_plurals_are_kept() {
        let body = serde_json::json!({
            "name": "r", "properties": {
                "protocol": "TCP", "access": "allow", "direction": "Inbound", "priority": 100,
                "sourcePortRanges": [], "sourcePortRange": "*",
                "futureField": {"x": 1}
            }
        });
        let rule: SecurityRule = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(rule.properties.protocol.as_deref(), Some("TCP"));
        assert_eq!(serde_json::to_value(&rule).unwrap(), body);
    }
}
