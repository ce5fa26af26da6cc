//! Validation errors with Azure's error codes.

use serde::Serialize;
use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// An Azure error code. The string form is exactly the code Azure returns (see
        /// `docs/semantics.md` for codes Azure's documents do not show and we chose).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode { $($(#[$doc])* $name),* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),*];
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$name => stringify!($name)),* }
            }
        }
    };
}

error_codes! {
    /// Priority missing or outside 100–4096.
    SecurityRuleInvalidPriority,
    /// Two rules of one NSG share direction and priority.
    SecurityRuleConflict,
    /// A name that ARM's name rules reject.
    InvalidResourceName,
    /// Two rules of one NSG with the same name.
    DuplicateResourceName,
    /// A port token that is not `*`, `N` or `A-B` within 0–65535.
    SecurityRuleInvalidPortRange,
    /// `*` inside a plural port list.
    SecurityRuleParameterContainsInvalidPortRanges,
    /// An address that is not `*`, an IP, a canonical CIDR or a known service tag.
    SecurityRuleInvalidAddressPrefix,
    /// A service tag or `*` inside a plural address list.
    SecurityRuleParameterContainsUnsupportedValue,
    /// IPv4 and IPv6 prefixes in one rule.
    ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies,
    /// One side given twice (singular and plural, or prefix and ASGs).
    SecurityRuleInvalidParameterCombination,
    /// A required property missing, an enum value unknown, or a value of the wrong kind.
    InvalidRequestFormat,
    /// A description longer than 140 characters.
    SecurityRuleInvalidDescription,
    /// More than 1,000 custom rules in an NSG.
    SecurityRuleCountLimitReached,
    /// More than 4,000 addresses on one side of a rule.
    SecurityRuleAddressPrefixesLimitReached,
    /// More than 10 ASGs on one side of a rule.
    NumberOfApplicationSecurityGroupsReferencedInSecurityRuleLimitReached,
    /// More than 100 distinct ASGs referenced by the rules of one NSG.
    NumberOfApplicationSecurityGroupsReferencedInNetworkSecurityGroupLimitReached,
    /// More than 20 ASGs on one IP configuration.
    NumberOfApplicationSecurityGroupsPerIpConfigurationLimitReached,
    /// A rule whose ASGs have members in different virtual networks.
    AllApplicationSecurityGroupsInSecurityRuleMustBeFromSameVnet,
    /// An ASG whose members are in different virtual networks.
    ApplicationSecurityGroupMembersMustBeInSameVnet,
    /// The IP configurations of one NIC list different ASG sets.
    AllIpConfigurationsOnANicMustBelongToTheSameApplicationSecurityGroups,
    /// A reference to a resource that is not in the environment.
    InvalidResourceReference,
    /// A reference whose id is not a fully qualified ARM id.
    LinkedInvalidPropertyId,
    /// A VNet or subnet prefix that is not a canonical CIDR.
    InvalidCIDRNotation,
    /// A subnet prefix outside its VNet's address space.
    NetcfgInvalidSubnet,
    /// A private IP address outside its subnet.
    PrivateIPAddressNotInSubnet,
    /// `flowTimeoutInMinutes` outside 4–30.
    InvalidFlowTimeout,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One thing wrong with an environment: which resource, which rule, which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {resource}{}: {field}: {message}", rule.as_ref().map(|r| format!(" (rule {r})")).unwrap_or_default())]
pub struct ValidationError {
    pub code: ErrorCode,
    /// The id of the top-level document the fault is in (or its name when it has no id).
    pub resource: String,
    /// The security rule at fault, when there is one.
    pub rule: Option<String>,
    /// JSON path of the field from the document root, e.g.
    /// `properties.securityRules[0].properties.priority`.
    pub field: String,
    pub message: String,
}
