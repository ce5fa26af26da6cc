//! Validation: turns an [`Environment`] into a [`Model`], or lists everything wrong with it, each
//! fault with Azure's error code, the resource, the rule and the field.

use crate::arm;
use crate::defaults::default_rules;
use crate::environment::Environment;
use crate::error::{ErrorCode, ValidationError};
use crate::id::ResourceId;
use crate::model::{self, Model};
use crate::rule::{
    Access, AddressToken, AddressTokenError, Addresses, Direction, PortRange, Ports, Protocol,
    Rule, RuleKind,
};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

/// Limits from Azure's networking limits page (reference §2.3).
pub mod limits {
    pub const PRIORITY_MIN: i64 = 100;
    pub const PRIORITY_MAX: i64 = 4096;
    pub const RULES_PER_NSG: usize = 1000;
    pub const ADDRESSES_PER_SIDE: usize = 4000;
    pub const ASGS_PER_RULE_SIDE: usize = 10;
    pub const ASGS_PER_NSG: usize = 100;
    pub const ASGS_PER_IP_CONFIGURATION: usize = 20;
    pub const DESCRIPTION_CHARS: usize = 140;
    pub const NAME_CHARS: usize = 80;
    pub const FLOW_TIMEOUT_MINUTES: std::ops::RangeInclusive<i64> = 4..=30;
}

/// Which service tag names exist. Built-in tags (`VirtualNetwork`, …) and the tags of loaded
/// files are known; the implementation lives with the tag catalog.
pub trait KnownTags {
    fn is_known_tag(&self, name: &str) -> bool;
    /// What to tell a user who wrote an unknown tag.
    fn unknown_tag_hint(&self, name: &str) -> String {
        format!("unknown service tag '{name}'")
    }
}

/// Validates `env`; returns the model, or every error found (in document order).
pub fn validate(env: &Environment, tags: &dyn KnownTags) -> Result<Model, Vec<ValidationError>> {
    let mut v = Validator {
        tags,
        errors: Vec::new(),
    };
    let model = v.run(env);
    if v.errors.is_empty() {
        Ok(model)
    } else {
        Err(v.errors)
    }
}

/// Where a fault is: the document and the path to the object being checked.
#[derive(Clone)]
struct At<'a> {
    resource: &'a str,
    rule: Option<&'a str>,
    path: String,
}

impl<'a> At<'a> {
    fn field(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else if name.starts_with('[') {
            format!("{}{name}", self.path)
        } else {
            format!("{}.{name}", self.path)
        }
    }
    fn at(&self, name: &str) -> At<'a> {
        At {
            path: self.field(name),
            ..self.clone()
        }
    }
}

struct Validator<'t> {
    tags: &'t dyn KnownTags,
    errors: Vec<ValidationError>,
}

/// A rule's document and where it came from (inline in its NSG, or a document of its own).
struct RuleSource<'a> {
    doc: &'a arm::SecurityRule,
    at: At<'a>,
}

impl<'t> Validator<'t> {
    fn error(&mut self, code: ErrorCode, at: &At<'_>, field: &str, message: String) {
        self.errors.push(ValidationError {
            code,
            resource: at.resource.to_string(),
            rule: at.rule.map(str::to_string),
            field: at.field(field),
            message,
        });
    }

    fn run(&mut self, env: &Environment) -> Model {
        let mut model = Model::default();
        // Ids first, so references can be checked in any document order.
        let asg_ids = self.top_level_ids(&env.application_security_groups);
        let nsg_ids = self.top_level_ids(&env.network_security_groups);
        let vnet_ids = self.top_level_ids(&env.virtual_networks);
        let nic_ids = self.top_level_ids(&env.network_interfaces);
        let vm_ids = self.top_level_ids(&env.virtual_machines);

        for (doc, id) in env.application_security_groups.iter().zip(&asg_ids) {
            if let Some(id) = id {
                model
                    .index
                    .asgs
                    .insert(id.clone(), model.application_security_groups.len());
                model
                    .application_security_groups
                    .push(model::ApplicationSecurityGroup {
                        id: id.clone(),
                        location: doc.location.clone(),
                    });
            }
        }
        let nsg_locations: HashMap<ResourceId, Option<String>> = env
            .network_security_groups
            .iter()
            .zip(&nsg_ids)
            .filter_map(|(doc, id)| Some((id.clone()?, doc.location.clone())))
            .collect();

        for (doc, id) in env.virtual_networks.iter().zip(&vnet_ids) {
            if let Some(id) = id {
                let vnet = self.virtual_network(doc, id, env, &nsg_locations);
                model
                    .index
                    .vnets
                    .insert(id.clone(), model.virtual_networks.len());
                for (s, subnet) in vnet.subnets.iter().enumerate() {
                    model
                        .index
                        .subnets
                        .insert(subnet.id.clone(), (model.virtual_networks.len(), s));
                }
                model.virtual_networks.push(vnet);
            }
        }
        self.orphan_subnets(env, &model);

        for (doc, id) in env.network_security_groups.iter().zip(&nsg_ids) {
            if let Some(id) = id {
                let nsg = self.network_security_group(doc, id, env, &model);
                model
                    .index
                    .nsgs
                    .insert(id.clone(), model.network_security_groups.len());
                model.network_security_groups.push(nsg);
            }
        }
        self.orphan_rules(env, &model);

        for (doc, id) in env.network_interfaces.iter().zip(&nic_ids) {
            if let Some(id) = id {
                if let Some(nic) = self.network_interface(doc, id, &model, &nsg_locations) {
                    model
                        .index
                        .nics
                        .insert(id.clone(), model.network_interfaces.len());
                    model.network_interfaces.push(nic);
                }
            }
        }
        for (doc, id) in env.virtual_machines.iter().zip(&vm_ids) {
            if let Some(id) = id {
                let vm = self.virtual_machine(doc, id, &model);
                model
                    .index
                    .vms
                    .insert(id.clone(), model.virtual_machines.len());
                model.virtual_machines.push(vm);
            }
        }
        self.asg_virtual_networks(&model);
        self.rule_asg_virtual_networks(&model);
        model
    }

    fn top_level_ids<P>(&mut self, docs: &[arm::Resource<P>]) -> Vec<Option<ResourceId>> {
        docs.iter()
            .enumerate()
            .map(|(position, doc)| {
                let label = document_label(doc, position);
                let at = At {
                    resource: &label,
                    rule: None,
                    path: String::new(),
                };
                self.id_of(doc.id.as_deref(), &at, "id")
            })
            .collect()
    }

    /// Parses a document's own id (or a reference), reporting a missing or malformed one.
    fn id_of(&mut self, text: Option<&str>, at: &At<'_>, field: &str) -> Option<ResourceId> {
        let Some(text) = text else {
            self.error(
                ErrorCode::InvalidRequestFormat,
                at,
                field,
                "a fully qualified resource id is required here".into(),
            );
            return None;
        };
        match ResourceId::parse(text) {
            Ok(id) => Some(id),
            Err(_) => {
                let path = at.field(field);
                self.error(
                    ErrorCode::LinkedInvalidPropertyId,
                    at,
                    field,
                    format!("Property id '{text}' at path '{path}' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{{subscriptionId}}' or '/providers/{{resourceProviderNamespace}}/'."),
                );
                None
            }
        }
    }

    /// Resolves a reference `{"id": ...}` to a resource that must exist (and share `location`).
    fn reference(
        &mut self,
        reference: &arm::SubResource,
        at: &At<'_>,
        field: &str,
        exists: impl Fn(&ResourceId) -> Option<Option<String>>,
        referrer_location: Option<&str>,
    ) -> Option<ResourceId> {
        let id = self.id_of(reference.id.as_deref(), at, &format!("{field}.id"))?;
        let not_found = |v: &mut Self| {
            v.error(
                ErrorCode::InvalidResourceReference,
                at,
                &format!("{field}.id"),
                format!("Resource {id} referenced by resource {} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.", at.resource),
            )
        };
        match exists(&id) {
            None => {
                not_found(self);
                None
            }
            Some(location) => {
                if let (Some(a), Some(b)) = (location.as_deref(), referrer_location) {
                    if normalise_location(a) != normalise_location(b) {
                        not_found(self);
                        return None;
                    }
                }
                Some(id)
            }
        }
    }

    fn virtual_network(
        &mut self,
        doc: &arm::VirtualNetwork,
        id: &ResourceId,
        env: &Environment,
        nsg_locations: &HashMap<ResourceId, Option<String>>,
    ) -> model::VirtualNetwork {
        let at = At {
            resource: id.as_str(),
            rule: None,
            path: String::new(),
        };
        let p = &doc.properties;
        let address_space = self.cidr_list(
            p.address_space
                .as_ref()
                .and_then(|s| s.address_prefixes.as_ref()),
            &at,
            "properties.addressSpace.addressPrefixes",
        );
        let flow_timeout_minutes = p.flow_timeout_in_minutes.and_then(|m| {
            if limits::FLOW_TIMEOUT_MINUTES.contains(&m) {
                u8::try_from(m).ok()
            } else {
                self.error(
                    ErrorCode::InvalidFlowTimeout,
                    &at,
                    "properties.flowTimeoutInMinutes",
                    format!("FlowTimeoutInMinutes {m} of virtual network {id} is invalid: it must be between 4 and 30 minutes, or null."),
                );
                None
            }
        });
        let mut sources: Vec<(&arm::Subnet, At<'_>)> = p
            .subnets
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| (s, at.at(&format!("properties.subnets[{i}]"))))
            .collect();
        for standalone in &env.subnets {
            let Some(sid) = standalone
                .id
                .as_deref()
                .and_then(|t| ResourceId::parse(t).ok())
            else {
                continue;
            };
            if sid.parent().as_ref() == Some(id) {
                let sat = At {
                    resource: standalone.id.as_deref().unwrap_or_default(),
                    rule: None,
                    path: String::new(),
                };
                sources.retain(|(s, _)| !same_name(s.name.as_deref(), Some(sid.name())));
                sources.push((standalone, sat));
            }
        }
        let subnets = sources
            .into_iter()
            .filter_map(|(subnet, at)| {
                self.subnet(
                    subnet,
                    &at,
                    id,
                    &address_space,
                    doc.location.as_deref(),
                    nsg_locations,
                )
            })
            .collect();
        let peerings = p
            .virtual_network_peerings
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, peering)| {
                let pat = at.at(&format!("properties.virtualNetworkPeerings[{i}]"));
                let pp = &peering.properties;
                let remote_virtual_network = match pp.remote_virtual_network.as_ref() {
                    Some(r) => {
                        self.id_of(r.id.as_deref(), &pat, "properties.remoteVirtualNetwork.id")
                    }
                    None => None,
                };
                let (space, field) = match (
                    &pp.remote_virtual_network_address_space,
                    &pp.remote_address_space,
                ) {
                    (Some(s), _) => (
                        Some(s),
                        "properties.remoteVirtualNetworkAddressSpace.addressPrefixes",
                    ),
                    (None, s) => (s.as_ref(), "properties.remoteAddressSpace.addressPrefixes"),
                };
                let remote_address_space =
                    self.cidr_list(space.and_then(|s| s.address_prefixes.as_ref()), &pat, field);
                model::Peering {
                    remote_virtual_network,
                    remote_address_space,
                    connected: pp
                        .peering_state
                        .as_deref()
                        .is_none_or(|s| s.eq_ignore_ascii_case("Connected")),
                }
            })
            .collect();
        model::VirtualNetwork {
            id: id.clone(),
            location: doc.location.clone(),
            address_space,
            subnets,
            peerings,
            flow_timeout_minutes,
        }
    }

    fn subnet(
        &mut self,
        doc: &arm::Subnet,
        at: &At<'_>,
        vnet: &ResourceId,
        vnet_space: &[IpNet],
        location: Option<&str>,
        nsg_locations: &HashMap<ResourceId, Option<String>>,
    ) -> Option<model::Subnet> {
        let name = doc.name.clone().or_else(|| {
            doc.id
                .as_deref()
                .and_then(|t| ResourceId::parse(t).ok())
                .map(|id| id.name().to_string())
        });
        let Some(name) = name else {
            self.error(
                ErrorCode::InvalidRequestFormat,
                at,
                "name",
                "a subnet needs a name".into(),
            );
            return None;
        };
        let id = vnet.child("subnets", &name);
        let p = &doc.properties;
        let prefixes = match (&p.address_prefix, &p.address_prefixes) {
            (Some(one), _) => {
                self.cidr_list(Some(&vec![one.clone()]), at, "properties.addressPrefix")
            }
            (None, Some(many)) => self.cidr_list(Some(many), at, "properties.addressPrefixes"),
            (None, None) => {
                self.error(
                    ErrorCode::InvalidRequestFormat,
                    at,
                    "properties.addressPrefix",
                    format!("subnet {id} has no addressPrefix"),
                );
                Vec::new()
            }
        };
        let field = if p.address_prefix.is_some() {
            "properties.addressPrefix".to_string()
        } else {
            "properties.addressPrefixes".to_string()
        };
        for (i, prefix) in prefixes.iter().enumerate() {
            if !vnet_space.iter().any(|space| space.contains(prefix)) {
                let f = if p.address_prefix.is_some() {
                    field.clone()
                } else {
                    format!("{field}[{i}]")
                };
                self.error(
                    ErrorCode::NetcfgInvalidSubnet,
                    at,
                    &f,
                    format!("Subnet '{name}' is not valid in virtual network '{}': its prefix {prefix} is outside the address space.", vnet.name()),
                );
            }
        }
        let network_security_group = p.network_security_group.as_ref().and_then(|r| {
            self.reference(
                r,
                at,
                "properties.networkSecurityGroup",
                |id| nsg_locations.get(id).cloned(),
                location,
            )
        });
        Some(model::Subnet {
            id,
            prefixes,
            network_security_group,
        })
    }

    /// Subnet documents whose VNet is not in the environment.
    fn orphan_subnets(&mut self, env: &Environment, model: &Model) {
        for (position, doc) in env.subnets.iter().enumerate() {
            let label = document_label(doc, position);
            let at = At {
                resource: &label,
                rule: None,
                path: String::new(),
            };
            let Some(id) = self.id_of(doc.id.as_deref(), &at, "id") else {
                continue;
            };
            if id
                .parent()
                .and_then(|v| model.virtual_network(&v))
                .is_none()
            {
                self.error(
                    ErrorCode::InvalidResourceReference,
                    &at,
                    "id",
                    format!("the virtual network of subnet {id} is not in the environment"),
                );
            }
        }
    }

    /// Parses a list of canonical CIDRs (VNet address spaces, subnet and peering prefixes).
    fn cidr_list(&mut self, list: Option<&Vec<String>>, at: &At<'_>, field: &str) -> Vec<IpNet> {
        let mut nets = Vec::new();
        let singular = field.ends_with("addressPrefix");
        for (i, text) in list.into_iter().flatten().enumerate() {
            let f = if singular {
                field.to_string()
            } else {
                format!("{field}[{i}]")
            };
            match text.parse::<IpNet>() {
                Ok(net) if net.trunc() == net => nets.push(net),
                Ok(net) => self.error(
                    ErrorCode::InvalidCIDRNotation,
                    at,
                    &f,
                    format!("The address prefix {text} in resource {} has an invalid CIDR notation. For the given prefix length, the address prefix should be {}.", at.resource, net.trunc()),
                ),
                Err(_) => self.error(
                    ErrorCode::InvalidCIDRNotation,
                    at,
                    &f,
                    format!("The address prefix {text} in resource {} is not a valid CIDR.", at.resource),
                ),
            }
        }
        nets
    }

    fn network_security_group(
        &mut self,
        doc: &arm::NetworkSecurityGroup,
        id: &ResourceId,
        env: &Environment,
        model: &Model,
    ) -> model::NetworkSecurityGroup {
        let at = At {
            resource: id.as_str(),
            rule: None,
            path: String::new(),
        };
        let mut sources: Vec<RuleSource<'_>> = doc
            .properties
            .security_rules
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, rule)| RuleSource {
                doc: rule,
                at: At {
                    resource: id.as_str(),
                    rule: rule.name.as_deref(),
                    path: format!("properties.securityRules[{i}]"),
                },
            })
            .collect();
        // Rules given as documents of their own join their NSG; they replace an inline rule
        // of the same name (they are the more specific statement of it).
        for standalone in &env.security_rules {
            let Some(rid) = standalone
                .id
                .as_deref()
                .and_then(|t| ResourceId::parse(t).ok())
            else {
                continue;
            };
            if rid.parent().as_ref() == Some(id) {
                sources.retain(|s| !same_name(s.doc.name.as_deref(), Some(rid.name())));
                sources.push(RuleSource {
                    doc: standalone,
                    at: At {
                        resource: standalone.id.as_deref().unwrap_or_default(),
                        rule: standalone.name.as_deref(),
                        path: String::new(),
                    },
                });
            }
        }
        if sources.len() > limits::RULES_PER_NSG {
            self.error(
                ErrorCode::SecurityRuleCountLimitReached,
                &at,
                "properties.securityRules",
                format!(
                    "A security group cannot have more than {} security rules.",
                    limits::RULES_PER_NSG
                ),
            );
        }
        let mut rules = Vec::new();
        let mut seen_names: HashMap<String, String> = HashMap::new();
        let mut seen_priorities: HashMap<(Direction, u16), String> = HashMap::new();
        let mut asgs_referenced: BTreeSet<ResourceId> = BTreeSet::new();
        for source in &sources {
            let name = source.doc.name.clone().unwrap_or_default();
            if let Some(rule) = self.security_rule(source, model) {
                if seen_names
                    .insert(name.to_ascii_lowercase(), name.clone())
                    .is_some()
                {
                    self.error(
                        ErrorCode::DuplicateResourceName,
                        &source.at,
                        "name",
                        format!("Network security group {id} has more than one security rule named {name}."),
                    );
                }
                match seen_priorities.get(&(rule.direction, rule.priority)) {
                    Some(existing) => self.error(
                        ErrorCode::SecurityRuleConflict,
                        &source.at,
                        "properties.priority",
                        format!("Security rule {existing} conflicts with rule {name}. Rules cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules."),
                    ),
                    None => {
                        seen_priorities.insert((rule.direction, rule.priority), name.clone());
                    }
                }
                for side in [&rule.source, &rule.destination] {
                    if let Addresses::ApplicationSecurityGroups(ids) = side {
                        asgs_referenced.extend(ids.iter().cloned());
                    }
                }
                rules.push(rule);
            } else {
                seen_names.insert(name.to_ascii_lowercase(), name);
            }
        }
        if asgs_referenced.len() > limits::ASGS_PER_NSG {
            self.error(
                ErrorCode::NumberOfApplicationSecurityGroupsReferencedInNetworkSecurityGroupLimitReached,
                &at,
                "properties.securityRules",
                format!("The security rules of a network security group may reference up to {} Application Security Groups. The requested configuration references {}.", limits::ASGS_PER_NSG, asgs_referenced.len()),
            );
        }
        model::NetworkSecurityGroup {
            id: id.clone(),
            location: doc.location.clone(),
            resource_guid: doc
                .properties
                .extra
                .get("resourceGuid")
                .and_then(|g| g.as_str())
                .map(str::to_string),
            flush_connection: doc.properties.flush_connection.unwrap_or(false),
            rules,
            default_rules: default_rules(),
        }
    }

    /// Rule documents whose NSG is not in the environment.
    fn orphan_rules(&mut self, env: &Environment, model: &Model) {
        for (position, doc) in env.security_rules.iter().enumerate() {
            let label = document_label(doc, position);
            let at = At {
                resource: &label,
                rule: doc.name.as_deref(),
                path: String::new(),
            };
            let Some(id) = self.id_of(doc.id.as_deref(), &at, "id") else {
                continue;
            };
            if id
                .parent()
                .and_then(|n| model.network_security_group(&n))
                .is_none()
            {
                self.error(
                    ErrorCode::InvalidResourceReference,
                    &at,
                    "id",
                    format!("the network security group of rule {id} is not in the environment"),
                );
            }
        }
    }

    /// Validates one security rule; `None` if it has any error.
    fn security_rule(&mut self, source: &RuleSource<'_>, model: &Model) -> Option<Rule> {
        let errors_before = self.errors.len();
        let at = &source.at;
        let doc = source.doc;
        let p = &doc.properties;
        let rule_id = doc.id.clone().unwrap_or_else(|| {
            format!(
                "{}/securityRules/{}",
                at.resource,
                doc.name.as_deref().unwrap_or("")
            )
        });
        let name = doc.name.clone().unwrap_or_default();
        if !valid_name(&name) {
            self.error(
                ErrorCode::InvalidResourceName,
                at,
                "name",
                format!("Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'."),
            );
        }
        let protocol = self.enum_field(
            p.protocol.as_deref(),
            Protocol::parse,
            at,
            "protocol",
            "'Tcp', 'Udp', 'Icmp', 'Esp', 'Ah' or '*'",
        );
        let access = self.enum_field(
            p.access.as_deref(),
            Access::parse,
            at,
            "access",
            "'Allow' or 'Deny'",
        );
        let direction = self.enum_field(
            p.direction.as_deref(),
            Direction::parse,
            at,
            "direction",
            "'Inbound' or 'Outbound'",
        );
        let priority = match p.priority {
            Some(n) if (limits::PRIORITY_MIN..=limits::PRIORITY_MAX).contains(&n) => {
                u16::try_from(n).ok()
            }
            other => {
                let shown = other
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "(none)".into());
                self.error(
                    ErrorCode::SecurityRuleInvalidPriority,
                    at,
                    "properties.priority",
                    format!("Security rule {name} has invalid Priority. Value provided: {shown} Allowed range {}-{}.", limits::PRIORITY_MIN, limits::PRIORITY_MAX),
                );
                None
            }
        };
        if let Some(d) = &p.description {
            if d.chars().count() > limits::DESCRIPTION_CHARS {
                self.error(
                    ErrorCode::SecurityRuleInvalidDescription,
                    at,
                    "properties.description",
                    format!("The description of security rule {name} is {} characters long; at most {} are allowed.", d.chars().count(), limits::DESCRIPTION_CHARS),
                );
            }
        }
        let source_side = self.addresses(
            Side::Source,
            (
                &p.source_address_prefix,
                &p.source_address_prefixes,
                &p.source_application_security_groups,
            ),
            at,
            &rule_id,
            model,
        );
        let destination_side = self.addresses(
            Side::Destination,
            (
                &p.destination_address_prefix,
                &p.destination_address_prefixes,
                &p.destination_application_security_groups,
            ),
            at,
            &rule_id,
            model,
        );
        let source_ports = self.ports(
            Side::Source,
            (&p.source_port_range, &p.source_port_ranges),
            at,
            &rule_id,
        );
        let destination_ports = self.ports(
            Side::Destination,
            (&p.destination_port_range, &p.destination_port_ranges),
            at,
            &rule_id,
        );
        if let (Some(s), Some(d)) = (&source_side, &destination_side) {
            let families: HashSet<bool> = [s, d]
                .into_iter()
                .flat_map(|side| match side {
                    Addresses::Prefixes { nets, .. } => {
                        nets.iter().map(|n| n.addr().is_ipv4()).collect()
                    }
                    _ => Vec::new(),
                })
                .collect();
            if families.len() > 1 {
                self.error(
                    ErrorCode::ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies,
                    at,
                    "properties",
                    format!("{name} contains IP addresses or prefixes that belong to different address families. All IP addresses or prefixes in the resource should belong to the same address family."),
                );
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        Some(Rule {
            name,
            kind: RuleKind::Custom,
            priority: priority?,
            direction: direction?,
            access: access?,
            protocol: protocol?,
            source: source_side?,
            source_ports: source_ports?,
            destination: destination_side?,
            destination_ports: destination_ports?,
            description: p.description.clone(),
        })
    }

    fn enum_field<T>(
        &mut self,
        value: Option<&str>,
        parse: fn(&str) -> Option<T>,
        at: &At<'_>,
        field: &str,
        allowed: &str,
    ) -> Option<T> {
        let path = format!("properties.{field}");
        match value {
            None => {
                self.error(
                    ErrorCode::InvalidRequestFormat,
                    at,
                    &path,
                    format!("{field} is required: one of {allowed}"),
                );
                None
            }
            Some(v) => {
                let parsed = parse(v);
                if parsed.is_none() {
                    self.error(
                        ErrorCode::InvalidRequestFormat,
                        at,
                        &path,
                        format!("'{v}' is not a valid {field}: expected {allowed}"),
                    );
                }
                parsed
            }
        }
    }

    fn addresses(
        &mut self,
        side: Side,
        fields: (
            &Option<String>,
            &Option<Vec<String>>,
            &Option<Vec<arm::SubResource>>,
        ),
        at: &At<'_>,
        rule_id: &str,
        model: &Model,
    ) -> Option<Addresses> {
        let (single, plural, asgs) = fields;
        let prefix_field = format!("properties.{}AddressPrefix", side.word());
        let prefixes_field = format!("properties.{}AddressPrefixes", side.word());
        let asgs_field = format!("properties.{}ApplicationSecurityGroups", side.word());
        let single = single.as_deref().filter(|s| !s.is_empty());
        let plural = plural.as_ref().filter(|l| !l.is_empty());
        let asgs = asgs.as_ref().filter(|l| !l.is_empty());
        let given: Vec<&String> = [
            single.map(|_| &prefix_field),
            plural.map(|_| &prefixes_field),
            asgs.map(|_| &asgs_field),
        ]
        .into_iter()
        .flatten()
        .collect();
        match given.as_slice() {
            [] => {
                self.error(
                    ErrorCode::InvalidRequestFormat,
                    at,
                    &prefix_field,
                    format!("Security rule {rule_id} has no {} address: set {}AddressPrefix, {}AddressPrefixes or {}ApplicationSecurityGroups.", side.word(), side.word(), side.word(), side.word()),
                );
                return None;
            }
            [_, second, ..] => {
                self.error(
                    ErrorCode::SecurityRuleInvalidParameterCombination,
                    at,
                    second,
                    format!("Security rule {rule_id} specifies its {} addresses in more than one of {}AddressPrefix, {}AddressPrefixes and {}ApplicationSecurityGroups; use exactly one.", side.word(), side.word(), side.word(), side.word()),
                );
                return None;
            }
            [_] => {}
        }
        if let Some(text) = single {
            return match AddressToken::parse(text) {
                Ok(AddressToken::Any) => Some(Addresses::Any),
                Ok(AddressToken::Net(net)) => Some(Addresses::Prefixes {
                    nets: vec![net],
                    plural: false,
                }),
                Ok(AddressToken::Tag(tag)) if self.tags.is_known_tag(&tag) => {
                    Some(Addresses::Tag(tag))
                }
                Ok(AddressToken::Tag(tag)) => {
                    let hint = self.tags.unknown_tag_hint(&tag);
                    self.invalid_prefix(at, &prefix_field, rule_id, text, &hint);
                    None
                }
                Err(e) => {
                    self.invalid_prefix(at, &prefix_field, rule_id, text, &token_problem(&e));
                    None
                }
            };
        }
        if let Some(list) = plural {
            if list.len() > limits::ADDRESSES_PER_SIDE {
                self.error(
                    ErrorCode::SecurityRuleAddressPrefixesLimitReached,
                    at,
                    &prefixes_field,
                    format!(
                        "Security rule {rule_id} has {} {} addresses; at most {} are allowed.",
                        list.len(),
                        side.word(),
                        limits::ADDRESSES_PER_SIDE
                    ),
                );
                return None;
            }
            let mut nets = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let field = format!("{prefixes_field}[{i}]");
                match AddressToken::parse(text) {
                    Ok(AddressToken::Net(net)) => nets.push(net),
                    Ok(AddressToken::Any) => {
                        self.unsupported_value(at, &field, side, rule_id, text)
                    }
                    Ok(AddressToken::Tag(tag)) if self.tags.is_known_tag(&tag) => {
                        self.unsupported_value(at, &field, side, rule_id, text)
                    }
                    Ok(AddressToken::Tag(tag)) => {
                        let hint = self.tags.unknown_tag_hint(&tag);
                        self.invalid_prefix(at, &field, rule_id, text, &hint)
                    }
                    Err(e) => self.invalid_prefix(at, &field, rule_id, text, &token_problem(&e)),
                }
            }
            return (nets.len() == list.len())
                .then_some(Addresses::Prefixes { nets, plural: true });
        }
        let list = asgs?;
        if list.len() > limits::ASGS_PER_RULE_SIDE {
            self.error(
                ErrorCode::NumberOfApplicationSecurityGroupsReferencedInSecurityRuleLimitReached,
                at,
                &asgs_field,
                format!("A security rule may have up to {} Application Security Group in the source or destination fields. The requested configuration has {} in the {}ApplicationSecurityGroups field.", limits::ASGS_PER_RULE_SIDE, list.len(), side.title()),
            );
            return None;
        }
        let mut ids = Vec::with_capacity(list.len());
        for (i, reference) in list.iter().enumerate() {
            let found = self.reference(
                reference,
                at,
                &format!("{asgs_field}[{i}]"),
                |id| {
                    model
                        .application_security_group(id)
                        .map(|a| a.location.clone())
                },
                None,
            );
            ids.extend(found);
        }
        (ids.len() == list.len()).then_some(Addresses::ApplicationSecurityGroups(ids))
    }

    fn invalid_prefix(&mut self, at: &At<'_>, field: &str, rule_id: &str, value: &str, why: &str) {
        self.error(
            ErrorCode::SecurityRuleInvalidAddressPrefix,
            at,
            field,
            format!("Security rule {rule_id} has invalid Address prefix. Value provided: {value}. {why}"),
        );
    }

    fn unsupported_value(
        &mut self,
        at: &At<'_>,
        field: &str,
        side: Side,
        rule_id: &str,
        value: &str,
    ) {
        self.error(
            ErrorCode::SecurityRuleParameterContainsUnsupportedValue,
            at,
            field,
            format!("Security rule parameter {}AddressPrefix for rule with Id {rule_id} cannot specify existing VIRTUALNETWORK, INTERNET, AZURELOADBALANCER, '*' or system tags. Unsupported value used: {value}.", side.title()),
        );
    }

    fn ports(
        &mut self,
        side: Side,
        fields: (&Option<String>, &Option<Vec<String>>),
        at: &At<'_>,
        rule_id: &str,
    ) -> Option<Ports> {
        let range_field = format!("properties.{}PortRange", side.word());
        let ranges_field = format!("properties.{}PortRanges", side.word());
        let single = fields.0.as_deref().filter(|s| !s.is_empty());
        let plural = fields.1.as_ref().filter(|l| !l.is_empty());
        let invalid = |v: &mut Self, field: &str, value: &str| {
            v.error(
                ErrorCode::SecurityRuleInvalidPortRange,
                at,
                field,
                format!("Security rule {rule_id} has invalid Port range. Value provided: {value}. Value should be an integer OR integer range with '-' delimiter. Valid range 0-65535."),
            )
        };
        match (single, plural) {
            (None, None) => {
                self.error(
                    ErrorCode::InvalidRequestFormat,
                    at,
                    &range_field,
                    format!(
                        "Security rule {rule_id} has no {} port: set {}PortRange or {}PortRanges.",
                        side.word(),
                        side.word(),
                        side.word()
                    ),
                );
                None
            }
            (Some(_), Some(_)) => {
                self.error(
                    ErrorCode::SecurityRuleInvalidParameterCombination,
                    at,
                    &ranges_field,
                    format!("Security rule {rule_id} sets both {0}PortRange and {0}PortRanges; use exactly one.", side.word()),
                );
                None
            }
            (Some("*"), None) => Some(Ports::Any),
            (Some(text), None) => match PortRange::parse(text) {
                Some(r) => Some(Ports::Ranges {
                    ranges: vec![r],
                    plural: false,
                }),
                None => {
                    invalid(self, &range_field, text);
                    None
                }
            },
            (None, Some(list)) => {
                let mut ranges = Vec::with_capacity(list.len());
                for (i, text) in list.iter().enumerate() {
                    let field = format!("{ranges_field}[{i}]");
                    if text == "*" {
                        self.error(
                            ErrorCode::SecurityRuleParameterContainsInvalidPortRanges,
                            at,
                            &field,
                            format!("Security rule {rule_id} has '*' in {}PortRanges; '*' is allowed only in {}PortRange.", side.word(), side.word()),
                        );
                    } else if let Some(r) = PortRange::parse(text) {
                        ranges.push(r);
                    } else {
                        invalid(self, &field, text);
                    }
                }
                (ranges.len() == list.len()).then_some(Ports::Ranges {
                    ranges,
                    plural: true,
                })
            }
        }
    }

    fn network_interface(
        &mut self,
        doc: &arm::NetworkInterface,
        id: &ResourceId,
        model: &Model,
        nsg_locations: &HashMap<ResourceId, Option<String>>,
    ) -> Option<model::NetworkInterface> {
        let at = At {
            resource: id.as_str(),
            rule: None,
            path: String::new(),
        };
        let p = &doc.properties;
        let location = doc.location.as_deref();
        let network_security_group = p.network_security_group.as_ref().and_then(|r| {
            self.reference(
                r,
                &at,
                "properties.networkSecurityGroup",
                |id| nsg_locations.get(id).cloned(),
                location,
            )
        });
        let mut ip_configurations = Vec::new();
        let mut first_asgs: Option<(String, BTreeSet<ResourceId>)> = None;
        for (i, config) in p.ip_configurations.iter().flatten().enumerate() {
            let cat = at.at(&format!("properties.ipConfigurations[{i}]"));
            let cp = &config.properties;
            let config_name = config
                .name
                .clone()
                .unwrap_or_else(|| format!("ipconfig{}", i + 1));
            let config_id = id.child("ipConfigurations", &config_name);
            let subnet = match &cp.subnet {
                Some(r) => self.reference(
                    r,
                    &cat,
                    "properties.subnet",
                    |sid| model.subnet(sid).map(|(v, _)| v.location.clone()),
                    None,
                ),
                None => {
                    self.error(
                        ErrorCode::InvalidRequestFormat,
                        &cat,
                        "properties.subnet",
                        format!("IP configuration {config_id} has no subnet"),
                    );
                    None
                }
            };
            let address = match cp.private_ip_address.as_deref() {
                None => {
                    self.error(ErrorCode::InvalidRequestFormat, &cat, "properties.privateIPAddress", format!("IP configuration {config_id} has no privateIPAddress; give the allocated address"));
                    None
                }
                Some(text) => match parse_private_address(text) {
                    Some(a) => Some(a),
                    None => {
                        self.error(
                            ErrorCode::InvalidRequestFormat,
                            &cat,
                            "properties.privateIPAddress",
                            format!("'{text}' is not an IP address"),
                        );
                        None
                    }
                },
            };
            if let (Some(address), Some(subnet)) = (address, &subnet) {
                if let Some((_, s)) = model.subnet(subnet) {
                    if !s.prefixes.iter().any(|p| p.contains(&address)) {
                        let shown: Vec<String> = s.prefixes.iter().map(|p| p.to_string()).collect();
                        self.error(
                            ErrorCode::PrivateIPAddressNotInSubnet,
                            &cat,
                            "properties.privateIPAddress",
                            format!("Private static IP address {} does not belong to the range of subnet prefix {}.", address.addr(), shown.join(", ")),
                        );
                    }
                }
            }
            let asg_list = cp
                .application_security_groups
                .as_deref()
                .unwrap_or_default();
            let mut asgs = Vec::new();
            if asg_list.len() > limits::ASGS_PER_IP_CONFIGURATION {
                self.error(
                    ErrorCode::NumberOfApplicationSecurityGroupsPerIpConfigurationLimitReached,
                    &cat,
                    "properties.applicationSecurityGroups",
                    format!("IP configuration {config_id} references {} Application Security Groups; at most {} are allowed.", asg_list.len(), limits::ASGS_PER_IP_CONFIGURATION),
                );
            } else {
                for (k, r) in asg_list.iter().enumerate() {
                    asgs.extend(self.reference(
                        r,
                        &cat,
                        &format!("properties.applicationSecurityGroups[{k}]"),
                        |a| {
                            model
                                .application_security_group(a)
                                .map(|a| a.location.clone())
                        },
                        location,
                    ));
                }
            }
            let set: BTreeSet<ResourceId> = asgs.iter().cloned().collect();
            match &first_asgs {
                None => first_asgs = Some((config_id.to_string(), set)),
                Some((first_id, first_set)) if *first_set != set => {
                    let show = |s: &BTreeSet<ResourceId>| {
                        s.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    self.error(
                        ErrorCode::AllIpConfigurationsOnANicMustBelongToTheSameApplicationSecurityGroups,
                        &cat,
                        "properties.applicationSecurityGroups",
                        format!("All IPConfigurations on a Network Interface should reference the same set of Application Security Groups. IPConfiguration {first_id} references ASG(s) {}, wheras IPConfiguration {config_id} references ASG(s) {}.", show(first_set), show(&set)),
                    );
                }
                Some(_) => {}
            }
            if let (Some(address), Some(subnet)) = (address, subnet) {
                ip_configurations.push(model::IpConfiguration {
                    id: config_id,
                    address,
                    subnet,
                    application_security_groups: asgs,
                    primary: cp.primary.unwrap_or(false),
                });
            }
        }
        let virtual_machine = p
            .virtual_machine
            .as_ref()
            .and_then(|r| self.id_of(r.id.as_deref(), &at, "properties.virtualMachine.id"));
        Some(model::NetworkInterface {
            id: id.clone(),
            location: doc.location.clone(),
            mac_address: p.mac_address.clone(),
            enable_ip_forwarding: p.enable_ip_forwarding.unwrap_or(false),
            network_security_group,
            ip_configurations,
            virtual_machine,
        })
    }

    fn virtual_machine(
        &mut self,
        doc: &arm::VirtualMachine,
        id: &ResourceId,
        model: &Model,
    ) -> model::VirtualMachine {
        let at = At {
            resource: id.as_str(),
            rule: None,
            path: String::new(),
        };
        let list = doc
            .properties
            .network_profile
            .as_ref()
            .and_then(|p| p.network_interfaces.as_ref());
        let mut network_interfaces = Vec::new();
        let mut primary = None;
        for (i, reference) in list.into_iter().flatten().enumerate() {
            let field = format!("properties.networkProfile.networkInterfaces[{i}]");
            let marked = self.primary_mark(reference, &at, &field);
            let found = self.reference(
                reference,
                &at,
                &field,
                |n| model.network_interface(n).map(|n| n.location.clone()),
                None,
            );
            if let Some(nic) = found {
                if marked && primary.is_none() {
                    primary = Some(nic.clone());
                }
                network_interfaces.push(nic);
            }
        }
        model::VirtualMachine {
            id: id.clone(),
            network_interfaces,
            primary,
        }
    }

    /// Whether a VM's NIC reference is marked `properties.primary: true`; any other JSON type
    /// there is an error naming the field.
    fn primary_mark(&mut self, reference: &arm::SubResource, at: &At<'_>, field: &str) -> bool {
        let Some(properties) = reference.extra.get("properties") else {
            return false;
        };
        match properties.get("primary") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(marked)) => *marked,
            Some(other) => {
                self.error(
                    ErrorCode::InvalidRequestFormat,
                    at,
                    &format!("{field}.properties.primary"),
                    format!("primary must be true or false, not {other}."),
                );
                false
            }
        }
    }

    /// "All network interfaces assigned to an application security group have to exist in the
    /// same virtual network" (reference §3.6).
    fn asg_virtual_networks(&mut self, model: &Model) {
        for asg in &model.application_security_groups {
            let vnets = member_vnets(model, &asg.id);
            if vnets.len() > 1 {
                let at = At {
                    resource: asg.id.as_str(),
                    rule: None,
                    path: String::new(),
                };
                let shown: Vec<String> = vnets.iter().map(|v| v.to_string()).collect();
                self.error(
                    ErrorCode::ApplicationSecurityGroupMembersMustBeInSameVnet,
                    &at,
                    "id",
                    format!("Application security group {} has members in more than one virtual network ({}). All network interfaces of an application security group must be in the same virtual network.", asg.id, shown.join(", ")),
                );
            }
        }
    }

    /// "If you specify an application security group as the source and destination in a
    /// security rule, the network interfaces in both application security groups must exist in
    /// the same virtual network."
    fn rule_asg_virtual_networks(&mut self, model: &Model) {
        for nsg in &model.network_security_groups {
            for rule in &nsg.rules {
                let vnets: BTreeSet<ResourceId> = [&rule.source, &rule.destination]
                    .into_iter()
                    .filter_map(|side| match side {
                        Addresses::ApplicationSecurityGroups(ids) => Some(ids),
                        _ => None,
                    })
                    .flatten()
                    .flat_map(|asg| member_vnets(model, asg))
                    .collect();
                if vnets.len() > 1 {
                    let position = nsg
                        .rules
                        .iter()
                        .position(|r| r.name == rule.name)
                        .unwrap_or(0);
                    let at = At {
                        resource: nsg.id.as_str(),
                        rule: Some(&rule.name),
                        path: format!("properties.securityRules[{position}]"),
                    };
                    let shown: Vec<String> = vnets.iter().map(|v| v.to_string()).collect();
                    self.error(
                        ErrorCode::AllApplicationSecurityGroupsInSecurityRuleMustBeFromSameVnet,
                        &at,
                        "properties",
                        format!("Security Rule {} has Application Security Groups (ASGs) from multiple virtual networks ({}). All ASGs on the Security Rule must be from the same virtual network.", nsg.id, shown.join(", ")),
                    );
                }
            }
        }
    }
}

/// What an error calls a document: its id, else its name, else its type and position.
fn document_label<P>(doc: &arm::Resource<P>, position: usize) -> String {
    doc.id
        .clone()
        .or_else(|| doc.name.clone())
        .filter(|label| !label.is_empty())
        .unwrap_or_else(|| {
            format!(
                "{} #{}",
                doc.resource_type.as_deref().unwrap_or("resource"),
                position + 1
            )
        })
}

fn member_vnets(model: &Model, asg: &ResourceId) -> BTreeSet<ResourceId> {
    model
        .asg_members(asg)
        .filter_map(|(_, config)| config.subnet.parent())
        .collect()
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Destination,
}

impl Side {
    fn word(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Side::Source => "Source",
            Side::Destination => "Destination",
        }
    }
}

fn token_problem(e: &AddressTokenError) -> String {
    match e {
        AddressTokenError::NotCanonical(net) => {
            format!("The prefix has host bits set; the network is {net}.")
        }
        AddressTokenError::Malformed => {
            "Expected '*', an IP address, a CIDR or a service tag.".to_string()
        }
    }
}

/// ARM names (reference §2.1): 1–80 characters, word characters, '.', '-' and '_'; begins with a
/// word character and ends with a word character or '_'. "Word character" is .NET's `\w`, so
/// Unicode letters and digits count.
pub fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let count = name.chars().count();
    (1..=limits::NAME_CHARS).contains(&count)
        && name.chars().all(|c| word(c) || c == '.' || c == '-')
        && name.chars().next().is_some_and(word)
        && name.chars().last().is_some_and(word)
}

fn same_name(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

/// `westeurope`, `West Europe` and `WestEurope` are one location.
fn normalise_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// A private address as NICs report it: an address, or `address/len` for prefix allocations.
fn parse_private_address(text: &str) -> Option<IpNet> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    text.parse::<IpNet>().ok()
}
