//! ARM resource ids.
//!
//! ARM compares ids case-insensitively (`resourceGroups/RG1` and `resourcegroups/rg1` name the same
//! group), but clients expect their own spelling back. A [`ResourceId`] therefore keeps the text as
//! written and compares by a lower-cased key.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A parsed ARM resource id:
/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/{Namespace}/{type}/{name}[/{childType}/{childName}]…`.
#[derive(Clone, Debug)]
pub struct ResourceId {
    text: String,
    key: String,
    subscription: String,
    resource_group: String,
    namespace: String,
    /// `(type, name)` pairs from the top-level resource down to the deepest child.
    segments: Vec<(String, String)>,
}

/// Why a string is not an ARM resource id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a fully qualified resource id: expected /subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/{{namespace}}/{{type}}/{{name}}")]
pub struct InvalidResourceId {
    pub text: String,
}

impl ResourceId {
    pub fn parse(text: &str) -> Result<ResourceId, InvalidResourceId> {
        let invalid = || InvalidResourceId {
            text: text.to_string(),
        };
        let trimmed = text.strip_prefix('/').ok_or_else(invalid)?;
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let parts: Vec<&str> = trimmed.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid());
        }
        let [subs, subscription, groups, resource_group, providers, namespace, rest @ ..] =
            parts.as_slice()
        else {
            return Err(invalid());
        };
        if !subs.eq_ignore_ascii_case("subscriptions")
            || !groups.eq_ignore_ascii_case("resourceGroups")
            || !providers.eq_ignore_ascii_case("providers")
            || rest.is_empty()
            || rest.len() % 2 != 0
        {
            return Err(invalid());
        }
        let segments = rest
            .chunks(2)
            .map(|pair| (pair[0].to_string(), pair[1].to_string()))
            .collect();
        Ok(ResourceId {
            text: text.to_string(),
            key: text.trim_end_matches('/').to_ascii_lowercase(),
            subscription: subscription.to_string(),
            resource_group: resource_group.to_string(),
            namespace: namespace.to_string(),
            segments,
        })
    }

    /// Builds the id of a child resource: `{self}/{child_type}/{name}`.
    pub fn child(&self, child_type: &str, name: &str) -> ResourceId {
        let text = format!(
            "{}/{}/{}",
            self.text.trim_end_matches('/'),
            child_type,
            name
        );
        let mut segments = self.segments.clone();
        segments.push((child_type.to_string(), name.to_string()));
        ResourceId {
            key: text.to_ascii_lowercase(),
            text,
            segments,
            ..self.clone()
        }
    }

    /// The id of the parent resource, if this is a child (`…/subnets/x` → the VNet).
    pub fn parent(&self) -> Option<ResourceId> {
        if self.segments.len() < 2 {
            return None;
        }
        let mut segments = self.segments.clone();
        segments.pop();
        let mut text = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/{}",
            self.subscription, self.resource_group, self.namespace
        );
        for (t, n) in &segments {
            text.push('/');
            text.push_str(t);
            text.push('/');
            text.push_str(n);
        }
        Some(ResourceId {
            key: text.to_ascii_lowercase(),
            text,
            segments,
            ..self.clone()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
    pub fn subscription(&self) -> &str {
        &self.subscription
    }
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The resource's own name (the last segment).
    pub fn name(&self) -> &str {
        self.segments.last().map(|(_, n)| n.as_str()).unwrap_or("")
    }
    /// The full type, e.g. `Microsoft.Network/networkSecurityGroups/securityRules`.
    pub fn resource_type(&self) -> String {
        let mut t = self.namespace.clone();
        for (ty, _) in &self.segments {
            t.push('/');
            t.push_str(ty);
        }
        t
    }
    /// Whether this id's full type equals `ty`, ignoring case.
    pub fn is_type(&self, ty: &str) -> bool {
        self.resource_type().eq_ignore_ascii_case(ty)
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for ResourceId {}
impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state)
    }
}
impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ResourceId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}
impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Full ARM type names of the resources the model understands.
pub mod types {
    pub const NETWORK_SECURITY_GROUP: &str = "Microsoft.Network/networkSecurityGroups";
    pub const SECURITY_RULE: &str = "Microsoft.Network/networkSecurityGroups/securityRules";
    pub const DEFAULT_SECURITY_RULE: &str =
        "Microsoft.Network/networkSecurityGroups/defaultSecurityRules";
    pub const APPLICATION_SECURITY_GROUP: &str = "Microsoft.Network/applicationSecurityGroups";
    pub const VIRTUAL_NETWORK: &str = "Microsoft.Network/virtualNetworks";
    pub const SUBNET: &str = "Microsoft.Network/virtualNetworks/subnets";
    pub const NETWORK_INTERFACE: &str = "Microsoft.Network/networkInterfaces";
    pub const VIRTUAL_MACHINE: &str = "Microsoft.Compute/virtualMachines";
}

#[cfg(test)]
mod tests {
    use super::*;

    const NSG: &str =
        "/subscriptions/sub/resourceGroups/RG1/providers/Microsoft.Network/networkSecurityGroups/nsg1";

    #[test]
    fn parses_and_compares_case_insensitively() {
        let a = ResourceId::parse(NSG).unwrap();
        let b = ResourceId::parse(&NSG.to_lowercase()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), NSG, "original spelling is kept");
        assert_eq!(a.name(), "nsg1");
        assert_eq!(a.resource_group(), "RG1");
        assert!(a.is_type(types::NETWORK_SECURITY_GROUP));
    }

    #[test]
    fn child_and_parent_round_trip() {
        let nsg = ResourceId::parse(NSG).unwrap();
        let rule = nsg.child("securityRules", "r1");
        assert!(rule.is_type(types::SECURITY_RULE));
        assert_eq!(rule.parent().unwrap(), nsg);
        assert_eq!(nsg.parent(), None);
    }

    #[test]
    fn rejects_non_arm_ids() {
        for bad in [
            "jrsg1",
            "",
            "/",
            "/subscriptions/sub",
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups",
            "/subscriptions//resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/x",
            "/foo/sub/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/x",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
