//! The six default security rules Azure puts in every NSG (reference §1.3): one table, rendered
//! both as typed rules for evaluation and as ARM documents for output.

use crate::arm;
use crate::id::ResourceId;
use crate::rule::{Access, Addresses, Direction, Ports, Protocol, Rule, RuleKind};
use serde_json::{json, Map, Value};

struct DefaultRule {
    name: &'static str,
    direction: Direction,
    priority: u16,
    access: Access,
    source: &'static str,
    destination: &'static str,
    description: &'static str,
}

/// In Azure's order: the order of the `defaultSecurityRules` array.
const DEFAULT_RULES: [DefaultRule; 6] = [
    DefaultRule {
        name: "AllowVnetInBound",
        direction: Direction::Inbound,
        priority: 65000,
        access: Access::Allow,
        source: "VirtualNetwork",
        destination: "VirtualNetwork",
        description: "Allow inbound traffic from all VMs in VNET",
    },
    DefaultRule {
        name: "AllowAzureLoadBalancerInBound",
        direction: Direction::Inbound,
        priority: 65001,
        access: Access::Allow,
        source: "AzureLoadBalancer",
        destination: "*",
        description: "Allow inbound traffic from azure load balancer",
    },
    DefaultRule {
        name: "DenyAllInBound",
        direction: Direction::Inbound,
        priority: 65500,
        access: Access::Deny,
        source: "*",
        destination: "*",
        description: "Deny all inbound traffic",
    },
    DefaultRule {
        name: "AllowVnetOutBound",
        direction: Direction::Outbound,
        priority: 65000,
        access: Access::Allow,
        source: "VirtualNetwork",
        destination: "VirtualNetwork",
        description: "Allow outbound traffic from all VMs to all VMs in VNET",
    },
    DefaultRule {
        name: "AllowInternetOutBound",
        direction: Direction::Outbound,
        priority: 65001,
        access: Access::Allow,
        source: "*",
        destination: "Internet",
        description: "Allow outbound traffic from all VMs to Internet",
    },
    DefaultRule {
        name: "DenyAllOutBound",
        direction: Direction::Outbound,
        priority: 65500,
        access: Access::Deny,
        source: "*",
        destination: "*",
        description: "Deny all outbound traffic",
    },
];

fn addresses(text: &str) -> Addresses {
    if text == "*" {
        Addresses::Any
    } else {
        Addresses::Tag(text.to_string())
    }
}

/// The default rules as typed rules, in Azure's order.
pub fn default_rules() -> Vec<Rule> {
    DEFAULT_RULES
        .iter()
        .map(|d| Rule {
            name: d.name.to_string(),
            kind: RuleKind::Default,
            priority: d.priority,
            direction: d.direction,
            access: d.access,
            protocol: Protocol::Any,
            source: addresses(d.source),
            source_ports: Ports::Any,
            destination: addresses(d.destination),
            destination_ports: Ports::Any,
            description: Some(d.description.to_string()),
        })
        .collect()
}

/// The default rules as the ARM documents an NSG GET returns, with ids under `nsg`.
pub fn default_rule_documents(nsg: &ResourceId) -> Vec<arm::SecurityRule> {
    DEFAULT_RULES
        .iter()
        .map(|d| {
            let properties = json!({
                "provisioningState": "Succeeded",
                "description": d.description,
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "sourceAddressPrefix": d.source,
                "destinationAddressPrefix": d.destination,
                "access": d.access.as_str(),
                "priority": d.priority,
                "direction": d.direction.as_str(),
                "sourcePortRanges": [],
                "destinationPortRanges": [],
                "sourceAddressPrefixes": [],
                "destinationAddressPrefixes": [],
            });
            arm::SecurityRule {
                id: Some(nsg.child("defaultSecurityRules", d.name).to_string()),
                name: Some(d.name.to_string()),
                resource_type: Some(crate::id::types::DEFAULT_SECURITY_RULE.to_string()),
                properties: serde_json::from_value(properties)
                    .expect("the default rule table is valid security rule JSON"),
                extra: Map::<String, Value>::new(),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_match_microsofts_example() {
        let path = format!(
            "{}/../../tests/data/arm-examples/NetworkSecurityGroupCreate.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let example: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let body = &example["responses"]["201"]["body"];
        let nsg = ResourceId::parse(body["id"].as_str().unwrap()).unwrap();
        let ours = default_rule_documents(&nsg);
        let theirs = body["properties"]["defaultSecurityRules"]
            .as_array()
            .unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (o, t) in ours.iter().zip(theirs) {
            let o = serde_json::to_value(o).unwrap();
            for key in ["id", "name"] {
                assert_eq!(o[key], t[key]);
            }
            for key in [
                "description",
                "protocol",
                "sourcePortRange",
                "destinationPortRange",
                "sourceAddressPrefix",
                "destinationAddressPrefix",
                "access",
                "priority",
                "direction",
            ] {
                assert_eq!(o["properties"][key], t["properties"][key], "{key}");
            }
        }
        assert_eq!(default_rules().len(), 6);
    }
}
