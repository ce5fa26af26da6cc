//! Network Watcher's questions over the stored resources: IP flow verify and a NIC's effective
//! security rules, answered by the same reference evaluator as `opennsg verify`; NSG diagnostics
//! over whole sets of flows ([`diagnostic`], as `opennsg query`); and the service tags of the
//! loaded files.
//!
//! Each question needs the subscription's network resources as one model (`VirtualNetwork` at a
//! NIC depends on peerings, ASG sides on every member NIC). The model, and each NIC's resolved
//! policy, are kept until the next write through this server (see [`View`]).

pub mod diagnostic;

use crate::error::ApiError;
use crate::request::Kind;
use crate::resources::{self, Answer};
use crate::AppState;
use nsg_model::model::{Model, NetworkInterface};
use nsg_model::rule::{ip_proto, Direction};
use nsg_model::{Environment, ResourceId};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::effective::effective_network_security_groups;
use nsg_policy::{Endpoint, Flow, Resolver, Settings};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// A subscription's resources as a validated model, with each NIC's policy resolved on demand;
/// valid while the store's write generation is `generation`.
pub struct View {
    generation: u64,
    model: Model,
    policies: Mutex<HashMap<ResourceId, Arc<CompiledPolicy>>>,
}

impl View {
    /// The policy of `nic`, resolved once per view. Deferred: IP flow verify asks the reference
    /// evaluator and diagnostics read verdicts off their own walk, so no classifier is built.
    fn policy(
        &self,
        state: &AppState,
        nic: &NetworkInterface,
    ) -> Result<Arc<CompiledPolicy>, ApiError> {
        if let Some(found) = self
            .policies
            .lock()
            .ok()
            .and_then(|c| c.get(&nic.id).cloned())
        {
            return Ok(found);
        }
        let catalog = state.catalog();
        let settings = Settings::default();
        let mut resolver = Resolver::new(&self.model, &catalog, settings);
        let policy = resolver
            .resolve(nic)
            .map_err(|e| ApiError::bad_request("InvalidTargetResource", e.to_string()))?;
        let sets = Arc::new(std::mem::take(&mut resolver.sets));
        // Two requests missing at once both resolve; the later insert wins, and both are equal.
        let made = Arc::new(CompiledPolicy::deferred(policy, sets, settings));
        if let Ok(mut cache) = self.policies.lock() {
            cache.insert(nic.id.clone(), made.clone());
        }
        Ok(made)
    }
}

/// The current view of `subscription`: rebuilt only when something was written since, so IP
/// flow verify on an unchanged store costs a lookup and an evaluation.
fn view(state: &AppState, subscription: &str) -> Result<Arc<View>, ApiError> {
    let generation = state.generation();
    let key = subscription.to_ascii_lowercase();
    if let Some(view) = state.views.lock().ok().and_then(|v| v.get(&key).cloned()) {
        if view.generation == generation {
            return Ok(view);
        }
    }
    let view = Arc::new(View {
        generation,
        model: model(state, subscription)?,
        policies: Mutex::new(HashMap::new()),
    });
    if let Ok(mut views) = state.views.lock() {
        views.insert(key, view.clone());
    }
    Ok(view)
}

/// The subscription's network resources as a validated model.
fn model(state: &AppState, subscription: &str) -> Result<Model, ApiError> {
    let docs = state.store.transaction(|tx| {
        let mut docs = Vec::new();
        for kind in [
            Kind::NetworkSecurityGroup,
            Kind::ApplicationSecurityGroup,
            Kind::VirtualNetwork,
            Kind::NetworkInterface,
            Kind::VirtualMachine,
        ] {
            docs.extend(
                resources::all(tx, kind, subscription)?
                    .iter()
                    .map(|s| s.rendered()),
            );
        }
        Ok::<_, ApiError>(docs)
    })?;
    let mut env = Environment::new();
    env.add_value("store", Value::Array(docs))
        .map_err(|e| ApiError::bad_request("InvalidRequestFormat", e.to_string()))?;
    let catalog = state.catalog();
    nsg_model::validate(&env, catalog.as_ref()).map_err(|errors| ApiError::invalid(&errors))
}

fn field<'b>(body: &'b Map<String, Value>, name: &str) -> Result<&'b str, ApiError> {
    field_at(body, name, name)
}

/// Text field `name` of `body`, required; an error names it as `target` (its path in the request).
fn field_at<'b>(
    body: &'b Map<String, Value>,
    name: &str,
    target: &str,
) -> Result<&'b str, ApiError> {
    body.get(name).and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request("InvalidRequestFormat", format!("{target} is required."))
            .with_target(target)
    })
}

/// The NIC a request targets: a NIC id, or a VM id (its primary NIC, unless
/// `targetNicResourceId` chooses another of its NICs).
fn target_nic<'m>(
    model: &'m Model,
    target: &str,
    nic: Option<&str>,
) -> Result<&'m NetworkInterface, ApiError> {
    let invalid = |what: String| {
        ApiError::bad_request("InvalidTargetResource", what).with_target("targetResourceId")
    };
    let id = ResourceId::parse(target)
        .map_err(|_| invalid(format!("'{target}' is not a resource id.")))?;
    if let Some(found) = model.network_interface(&id) {
        return Ok(found);
    }
    let vm = model
        .virtual_machine(&id)
        .ok_or_else(|| invalid(format!("The target resource {target} is neither a virtual machine nor a network interface of this server.")))?;
    let chosen = match (nic, vm.network_interfaces.as_slice()) {
        (Some(nic), _) => {
            ResourceId::parse(nic).map_err(|_| invalid(format!("'{nic}' is not a resource id.")))?
        }
        (None, _) => vm.primary_network_interface().cloned().ok_or_else(|| {
            invalid(format!(
                "Virtual machine {target} has no network interfaces."
            ))
        })?,
    };
    if !vm.network_interfaces.contains(&chosen) {
        return Err(invalid(format!(
            "{chosen} is not a network interface of {target}."
        )));
    }
    model
        .network_interface(&chosen)
        .ok_or_else(|| invalid(format!("Network interface {chosen} does not exist.")))
}

/// `POST …/networkWatchers/{nw}/ipFlowVerify`.
pub fn ip_flow_verify(
    state: &AppState,
    watcher: &ResourceId,
    body: Map<String, Value>,
) -> Result<Answer, ApiError> {
    resources::get(state, Kind::NetworkWatcher, watcher)?;
    let direction = Direction::parse(field(&body, "direction")?).ok_or_else(|| {
        ApiError::bad_request(
            "InvalidRequestFormat",
            "direction must be Inbound or Outbound.",
        )
        .with_target("direction")
    })?;
    let protocol = match field(&body, "protocol")?.to_ascii_uppercase().as_str() {
        "TCP" => ip_proto::TCP,
        "UDP" => ip_proto::UDP,
        other => {
            return Err(ApiError::bad_request(
                "InvalidRequestFormat",
                format!("protocol '{other}' is not TCP or UDP."),
            )
            .with_target("protocol"))
        }
    };
    let address = |name: &str| -> Result<IpAddr, ApiError> {
        let text = field(&body, name)?;
        text.parse().map_err(|_| {
            ApiError::bad_request(
                "InvalidRequestFormat",
                format!("{name} '{text}' is not an IP address."),
            )
            .with_target(name)
        })
    };
    // `*` (allowed for the source port) is evaluated as port 0 (docs/semantics.md).
    let port = |name: &str| -> Result<u16, ApiError> {
        match field(&body, name)? {
            "*" => Ok(0),
            text => text.parse().map_err(|_| {
                ApiError::bad_request(
                    "InvalidRequestFormat",
                    format!("{name} '{text}' is not a port 0-65535."),
                )
                .with_target(name)
            }),
        }
    };
    let flow = Flow {
        direction,
        protocol,
        local: Endpoint {
            ip: address("localIPAddress")?,
            port: Some(port("localPort")?),
        },
        remote: Endpoint {
            ip: address("remoteIPAddress")?,
            port: Some(port("remotePort")?),
        },
    };
    let view = view(state, watcher.subscription())?;
    let nic = target_nic(
        &view.model,
        field(&body, "targetResourceId")?,
        body.get("targetNicResourceId").and_then(Value::as_str),
    )?;
    let settings = Settings::default();
    let compiled = view.policy(state, nic)?;
    let policy = compiled.policy();
    if !policy.owns(flow.local.ip) {
        return Err(ApiError::bad_request(
            "InvalidLocalIPAddress",
            format!(
                "The local IP address {} is not an address of network interface {}.",
                flow.local.ip, nic.id
            ),
        )
        .with_target("localIPAddress"));
    }
    let decision = nsg_policy::decide(policy, compiled.sets(), &settings, &flow);
    let mut result = json!({"access": decision.access.as_str()});
    if let Some(rule) = decision.rule_name() {
        result["ruleName"] = json!(rule);
    }
    Ok(Answer::ok(result))
}

/// `POST …/networkInterfaces/{nic}/effectiveNetworkSecurityGroups`.
pub fn effective(state: &AppState, nic: &ResourceId) -> Result<Answer, ApiError> {
    resources::get(state, Kind::NetworkInterface, nic)?;
    let view = view(state, nic.subscription())?;
    let model = &view.model;
    let found = model
        .network_interface(nic)
        .ok_or_else(|| resources::not_found(Kind::NetworkInterface, nic))?;
    let catalog = state.catalog();
    let mut resolver = Resolver::new(model, &catalog, Settings::default());
    let list = effective_network_security_groups(model, &mut resolver, found)
        .map_err(|e| ApiError::bad_request("InvalidResourceReference", e.to_string()))?;
    Ok(Answer::ok(
        serde_json::to_value(list).expect("effective rules serialise"),
    ))
}

/// `POST …/networkWatchers/{nw}/securityGroupView` (legacy, deprecated by Azure but still served):
/// per NIC of the target VM, the rules of its subnet's and its own NSG, the default rules, and
/// the effective rules.
pub fn security_group_view(
    state: &AppState,
    watcher: &ResourceId,
    body: Map<String, Value>,
) -> Result<Answer, ApiError> {
    resources::get(state, Kind::NetworkWatcher, watcher)?;
    let view = view(state, watcher.subscription())?;
    let model = &view.model;
    let target = field(&body, "targetResourceId")?;
    let target_id = ResourceId::parse(target).map_err(|_| {
        ApiError::bad_request(
            "InvalidTargetResource",
            format!("'{target}' is not a resource id."),
        )
        .with_target("targetResourceId")
    })?;
    let nics: Vec<&NetworkInterface> = match model.virtual_machine(&target_id) {
        Some(vm) => vm
            .network_interfaces
            .iter()
            .filter_map(|n| model.network_interface(n))
            .collect(),
        None => vec![target_nic(model, target, None)?],
    };
    let nsg_rules = |id: Option<&ResourceId>| -> Result<Value, ApiError> {
        let Some(id) = id else {
            return Ok(json!([]));
        };
        let stored = state
            .store
            .get(id)?
            .ok_or_else(|| resources::not_found(Kind::NetworkSecurityGroup, id))?;
        Ok(
            resources::render(Kind::NetworkSecurityGroup, &stored)["properties"]["securityRules"]
                .clone(),
        )
    };
    let mut interfaces = Vec::new();
    for nic in nics {
        let subnet = nic.primary_subnet().cloned();
        let subnet_nsg = subnet
            .as_ref()
            .and_then(|s| model.subnet(s))
            .and_then(|(_, s)| s.network_security_group.clone());
        let defaults = subnet_nsg
            .as_ref()
            .or(nic.network_security_group.as_ref())
            .map(|nsg| {
                nsg_model::defaults::default_rule_documents(nsg)
                    .into_iter()
                    .map(|d| serde_json::to_value(d).expect("default rules serialise"))
                    .collect::<Vec<_>>()
            });
        let catalog = state.catalog();
        let mut resolver = Resolver::new(model, &catalog, Settings::default());
        let effective = effective_network_security_groups(model, &mut resolver, nic)
            .map_err(|e| ApiError::bad_request("InvalidResourceReference", e.to_string()))?;
        let effective_rules: Vec<Value> = effective
            .value
            .iter()
            .flat_map(|group| group.effective_security_rules.iter())
            .map(|rule| serde_json::to_value(rule).expect("effective rules serialise"))
            .collect();
        let mut associations = json!({
            "defaultSecurityRules": defaults.unwrap_or_default(),
            "effectiveSecurityRules": effective_rules,
        });
        if let Some(subnet) = &subnet {
            associations["subnetAssociation"] =
                json!({"id": subnet.as_str(), "securityRules": nsg_rules(subnet_nsg.as_ref())?});
        }
        associations["networkInterfaceAssociation"] = json!({"id": nic.id.as_str(), "securityRules": nsg_rules(nic.network_security_group.as_ref())?});
        interfaces.push(json!({"id": nic.id.as_str(), "securityRuleAssociations": associations}));
    }
    Ok(Answer::ok(json!({ "networkInterfaces": interfaces })))
}

/// `GET /subscriptions/{sub}/providers/Microsoft.Network/locations/{location}/serviceTags`:
/// the loaded tag files in the REST API's shape (change numbers as strings).
pub fn service_tags(state: &AppState, subscription: &str) -> Answer {
    let catalog = state.catalog();
    let cloud = catalog.cloud().unwrap_or("Public").to_string();
    let values: Vec<Value> = catalog
        .iter()
        .map(|tag| {
            json!({
                "name": tag.name,
                "id": tag.id,
                "properties": {
                    "changeNumber": tag.change_number,
                    "region": tag.region,
                    "systemService": tag.system_service,
                    "addressPrefixes": tag.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                }
            })
        })
        .collect();
    Answer::ok(json!({
        "name": cloud.to_ascii_lowercase(),
        "id": format!("/subscriptions/{subscription}/providers/Microsoft.Network/serviceTags/{}", cloud.to_ascii_lowercase()),
        "type": "Microsoft.Network/serviceTags",
        "changeNumber": catalog.change_number().unwrap_or("0"),
        "cloud": cloud,
        "values": values,
    }))
}
