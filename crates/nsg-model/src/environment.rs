//! An environment: the ARM documents a user hands us, merged.
//!
//! Input is what `az … show` or the REST API returns: an array of resources, `{"value": [...]}`,
//! or one resource. The Azure CLI prints resources with `properties` flattened into the top
//! level; such documents are put back into ARM's nested shape so the rest of the program, and
//! every error's field path, sees one shape.

use crate::arm;
use crate::id::{types, ResourceId};
use serde_json::{Map, Value};

/// The merged, still unvalidated documents of an environment.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub network_security_groups: Vec<arm::NetworkSecurityGroup>,
    /// Rules given as documents of their own (`az network nsg rule show`).
    pub security_rules: Vec<arm::SecurityRule>,
    pub application_security_groups: Vec<arm::ApplicationSecurityGroup>,
    pub virtual_networks: Vec<arm::VirtualNetwork>,
    /// Subnets given as documents of their own (`az network vnet subnet show`).
    pub subnets: Vec<arm::Subnet>,
    pub network_interfaces: Vec<arm::NetworkInterface>,
    pub virtual_machines: Vec<arm::VirtualMachine>,
    /// Documents of types the model does not use, as `source: type or id`.
    pub ignored: Vec<String>,
}

/// Why a document could not be read as ARM resources.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: not valid JSON: {error}")]
    Json {
        source_name: String,
        error: serde_json::Error,
    },
    #[error("{source_name}: {path}: expected a resource object, an array of them, or {{\"value\": [...]}}")]
    NotAResource { source_name: String, path: String },
    #[error("{source_name}: {path}: {message}")]
    Shape {
        source_name: String,
        path: String,
        message: String,
    },
}

/// Keys of the ARM envelope; everything else of a flattened CLI document is a property.
const ENVELOPE_KEYS: &[&str] = &[
    "id",
    "name",
    "type",
    "location",
    "tags",
    "etag",
    "resourceGroup",
    "zones",
    "sku",
    "kind",
    "extendedLocation",
    "identity",
    "plan",
    "managedBy",
];

/// Child collections (under `properties`) whose items are resources themselves and may be flat.
const CHILD_COLLECTIONS: &[&str] = &[
    "securityRules",
    "defaultSecurityRules",
    "subnets",
    "virtualNetworkPeerings",
    "ipConfigurations",
];

impl Environment {
    pub fn new() -> Environment {
        Environment::default()
    }

    /// Adds the resources in `text`, a JSON document read from `source_name`.
    /// Returns how many resources were added.
    pub fn add_json(&mut self, source_name: &str, text: &str) -> Result<usize, LoadError> {
        let value: Value = serde_json::from_str(text).map_err(|error| LoadError::Json {
            source_name: source_name.to_string(),
            error,
        })?;
        self.add_value(source_name, value)
    }

    /// Adds the resources of an already parsed JSON document.
    pub fn add_value(&mut self, source_name: &str, value: Value) -> Result<usize, LoadError> {
        let items = match value {
            Value::Array(items) => items,
            Value::Object(mut map) if !map.contains_key("id") && !map.contains_key("type") => {
                match map.remove("value") {
                    Some(Value::Array(items)) => items,
                    _ => {
                        return Err(LoadError::NotAResource {
                            source_name: source_name.to_string(),
                            path: "$".into(),
                        })
                    }
                }
            }
            other => vec![other],
        };
        let count = items.len();
        for (index, item) in items.into_iter().enumerate() {
            self.add_resource(source_name, &format!("[{index}]"), item)?;
        }
        Ok(count)
    }

    fn add_resource(
        &mut self,
        source_name: &str,
        path: &str,
        item: Value,
    ) -> Result<(), LoadError> {
        let Value::Object(map) = item else {
            return Err(LoadError::NotAResource {
                source_name: source_name.to_string(),
                path: path.to_string(),
            });
        };
        let resource_type = resource_type_of(&map);
        let Some(resource_type) = resource_type else {
            return Err(LoadError::Shape {
                source_name: source_name.to_string(),
                path: path.to_string(),
                message: "the resource has neither a 'type' nor a parseable 'id'".into(),
            });
        };
        let doc = Value::Object(nest_properties(map));
        let shape_error = |e: serde_path_to_error::Error<serde_json::Error>| LoadError::Shape {
            source_name: source_name.to_string(),
            path: format!("{path}.{}", e.path()),
            message: e.inner().to_string(),
        };
        macro_rules! push {
            ($list:ident) => {{
                let resource = serde_path_to_error::deserialize(doc).map_err(shape_error)?;
                upsert(&mut self.$list, resource);
            }};
        }
        let t = resource_type.to_ascii_lowercase();
        match t.as_str() {
            _ if t == types::NETWORK_SECURITY_GROUP.to_ascii_lowercase() => {
                push!(network_security_groups)
            }
            _ if t == types::SECURITY_RULE.to_ascii_lowercase() => push!(security_rules),
            _ if t == types::APPLICATION_SECURITY_GROUP.to_ascii_lowercase() => {
                push!(application_security_groups)
            }
            _ if t == types::VIRTUAL_NETWORK.to_ascii_lowercase() => push!(virtual_networks),
            _ if t == types::SUBNET.to_ascii_lowercase() => push!(subnets),
            _ if t == types::NETWORK_INTERFACE.to_ascii_lowercase() => push!(network_interfaces),
            _ if t == types::VIRTUAL_MACHINE.to_ascii_lowercase() => push!(virtual_machines),
            _ => self
                .ignored
                .push(format!("{source_name}{path}: {resource_type}")),
        }
        Ok(())
    }
}

/// A later document with the same id replaces an earlier one: several files merge, the last wins.
fn upsert<P>(list: &mut Vec<arm::Resource<P>>, resource: arm::Resource<P>) {
    let key = resource
        .id
        .as_deref()
        .and_then(|id| ResourceId::parse(id).ok());
    if let Some(key) = key {
        let same = |r: &arm::Resource<P>| {
            r.id.as_deref()
                .and_then(|id| ResourceId::parse(id).ok())
                .is_some_and(|id| id == key)
        };
        if let Some(existing) = list.iter_mut().find(|r| same(r)) {
            *existing = resource;
            return;
        }
    }
    list.push(resource);
}

fn resource_type_of(map: &Map<String, Value>) -> Option<String> {
    if let Some(Value::String(t)) = map.get("type") {
        return Some(t.clone());
    }
    let id = map.get("id")?.as_str()?;
    ResourceId::parse(id).ok().map(|id| id.resource_type())
}

/// Puts a flattened (Azure CLI) resource back into ARM's `properties` shape, recursively for
/// child resources. Documents that already have `properties` are left as they are.
fn nest_properties(mut map: Map<String, Value>) -> Map<String, Value> {
    if !map.contains_key("properties") {
        let keys: Vec<String> = map
            .keys()
            .filter(|k| !ENVELOPE_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        if !keys.is_empty() {
            let mut properties = Map::new();
            for k in keys {
                if let Some(v) = map.remove(&k) {
                    properties.insert(k, v);
                }
            }
            map.insert("properties".into(), Value::Object(properties));
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for collection in CHILD_COLLECTIONS {
            if let Some(Value::Array(items)) = properties.get_mut(*collection) {
                for item in items.iter_mut() {
                    if let Value::Object(child) = std::mem::take(item) {
                        *item = Value::Object(nest_properties(child));
                    }
                }
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NSG: &str =
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/n1";

    #[test]
    fn accepts_array_value_list_and_single_resource() {
        let nsg =
            json!({"id": NSG, "type": "Microsoft.Network/networkSecurityGroups", "properties": {}});
        for doc in [
            json!([nsg.clone()]),
            json!({"value": [nsg.clone()]}),
            nsg.clone(),
        ] {
            let mut env = Environment::new();
            assert_eq!(env.add_value("t", doc).unwrap(), 1);
            assert_eq!(env.network_security_groups.len(), 1);
        }
    }

    #[test]
    fn azure_cli_flattened_documents_are_nested() {
        let flat = json!({
            "id": NSG, "name": "n1", "resourceGroup": "rg", "type": "Microsoft.Network/networkSecurityGroups",
            "securityRules": [{"name": "r", "priority": 100, "access": "Allow", "direction": "Inbound",
                               "protocol": "Tcp", "resourceGroup": "rg"}],
            "provisioningState": "Succeeded"
        });
        let mut env = Environment::new();
        env.add_value("t", flat).unwrap();
        let nsg = &env.network_security_groups[0];
        let rules = nsg.properties.security_rules.as_ref().unwrap();
        assert_eq!(rules[0].properties.priority, Some(100));
        assert_eq!(rules[0].extra.get("resourceGroup"), Some(&json!("rg")));
    }

    #[test]
    fn later_documents_replace_earlier_ones_with_the_same_id() {
        let mut env = Environment::new();
        let a = json!({"id": NSG, "type": "Microsoft.Network/networkSecurityGroups", "properties": {"flushConnection": false}});
        let b = json!({"id": NSG.to_uppercase(), "type": "Microsoft.Network/networkSecurityGroups", "properties": {"flushConnection": true}});
        env.add_value("a", a).unwrap();
        env.add_value("b", b).unwrap();
        assert_eq!(env.network_security_groups.len(), 1);
        assert_eq!(
            env.network_security_groups[0].properties.flush_connection,
            Some(true)
        );
    }

    #[test]
    fn shape_errors_name_the_source_and_path() {
        let mut env = Environment::new();
        let bad = json!([{"id": NSG, "type": "Microsoft.Network/networkSecurityGroups",
                          "properties": {"securityRules": [{"properties": {"priority": "high"}}]}}]);
        let err = env.add_value("f.json", bad).unwrap_err().to_string();
        assert!(err.contains("f.json"), "{err}");
        assert!(
            err.contains("securityRules[0].properties.priority"),
            "{err}"
        );
    }

    #[test]
    fn unknown_types_are_set_aside() {
        let mut env = Environment::new();
        env.add_value("t", json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/ip"}))
            .unwrap();
        assert_eq!(env.ignored.len(), 1);
    }
}
