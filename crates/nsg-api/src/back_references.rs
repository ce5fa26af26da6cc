//! The read-only back-references Azure computes from other resources: an NSG's `subnets` and
//! `networkInterfaces`, a subnet's `ipConfigurations`. Stored documents never hold them (they
//! are what the client sent); answers get them, computed once per subscription and write
//! generation.

use crate::error::ApiError;
use crate::request::Kind;
use crate::resources::{all, items_at};
use crate::AppState;
use nsg_model::ResourceId;
use nsg_store::Tx;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// One subscription's back-references.
#[derive(Debug, Default)]
pub struct BackReferences {
    /// Per NSG: the subnets and the NICs it is associated with.
    nsg_users: HashMap<ResourceId, (Vec<String>, Vec<String>)>,
    /// Per subnet id (lower case): the NIC IP configurations in it.
    subnet_configurations: HashMap<String, Vec<String>>,
}

impl BackReferences {
    /// Reads them from the store.
    pub fn compute(tx: &Tx<'_>, subscription: &str) -> Result<BackReferences, ApiError> {
        let mut references = BackReferences::default();
        let nsg_of = |doc: &Value| {
            doc.pointer("/properties/networkSecurityGroup/id")
                .and_then(Value::as_str)
                .and_then(|t| ResourceId::parse(t).ok())
        };
        for vnet in all(tx, Kind::VirtualNetwork, subscription)? {
            for subnet in items_at(&vnet.document, "/properties/subnets") {
                if let (Some(nsg), Some(id)) =
                    (nsg_of(subnet), subnet.get("id").and_then(Value::as_str))
                {
                    references
                        .nsg_users
                        .entry(nsg)
                        .or_default()
                        .0
                        .push(id.to_string());
                }
            }
        }
        for nic in all(tx, Kind::NetworkInterface, subscription)? {
            if let Some(nsg) = nsg_of(&nic.document) {
                references
                    .nsg_users
                    .entry(nsg)
                    .or_default()
                    .1
                    .push(nic.id.to_string());
            }
            for config in items_at(&nic.document, "/properties/ipConfigurations") {
                let subnet = config
                    .pointer("/properties/subnet/id")
                    .and_then(Value::as_str);
                if let (Some(subnet), Some(id)) = (subnet, config["id"].as_str()) {
                    references
                        .subnet_configurations
                        .entry(subnet.to_ascii_lowercase())
                        .or_default()
                        .push(id.to_string());
                }
            }
        }
        Ok(references)
    }

    /// The subscription's back-references, computed once per write generation.
    pub fn cached(state: &AppState, subscription: &str) -> Result<Arc<BackReferences>, ApiError> {
        let generation = state.generation();
        let key = subscription.to_ascii_lowercase();
        if let Some((at, references)) = state
            .associations
            .lock()
            .ok()
            .and_then(|c| c.get(&key).cloned())
        {
            if at == generation {
                return Ok(references);
            }
        }
        let references = Arc::new(
            state
                .store
                .transaction(|tx| BackReferences::compute(tx, subscription))?,
        );
        if let Ok(mut cache) = state.associations.lock() {
            cache.insert(key, (generation, references.clone()));
        }
        Ok(references)
    }

    /// Whether answers about `kind` carry back-references (others need none computed).
    pub fn shown_by(kind: Kind) -> bool {
        matches!(kind, Kind::NetworkSecurityGroup | Kind::VirtualNetwork)
    }

    /// Adds them to `rendered`, a rendered `kind` document.
    pub fn add_to(&self, kind: Kind, rendered: &mut Value) {
        let ids =
            |list: &[String]| Value::Array(list.iter().map(|id| json!({ "id": id })).collect());
        match kind {
            Kind::NetworkSecurityGroup => {
                let id = rendered["id"]
                    .as_str()
                    .and_then(|t| ResourceId::parse(t).ok());
                let (subnets, nics) = id
                    .and_then(|id| self.nsg_users.get(&id))
                    .cloned()
                    .unwrap_or_default();
                if let Some(props) = rendered["properties"].as_object_mut() {
                    props.insert("subnets".into(), ids(&subnets));
                    props.insert("networkInterfaces".into(), ids(&nics));
                }
            }
            Kind::VirtualNetwork => {
                let Some(subnets) = rendered["properties"]["subnets"].as_array_mut() else {
                    return;
                };
                for subnet in subnets {
                    let key = subnet["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    let Some(configurations) = self.subnet_configurations.get(&key) else {
                        continue;
                    };
                    if let Some(props) = subnet["properties"].as_object_mut() {
                        props.insert("ipConfigurations".into(), ids(configurations));
                    }
                }
            }
            _ => {}
        }
    }
}
