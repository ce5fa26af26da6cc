//! [`BuiltinTag`]: the tags whose addresses depend on where a rule applies, not on Microsoft's files.
//!
//! Microsoft's `ServiceTags_*.json` files do not list these six tags: `VirtualNetwork` and `Internet`
//! depend on the NIC's virtual network, and the other four are fixed host addresses
//! (reference §3.7, §3.8 and the bold rows of §4.2). Their sets come from [`crate::context`].

use std::fmt;

/// A tag that is not in the service tag files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinTag {
    /// The NIC's virtual network address space, its peers' spaces and the host VIP.
    VirtualNetwork,
    /// The host VIP 168.63.129.16 where health probes come from.
    AzureLoadBalancer,
    /// Public unicast space outside `VirtualNetwork`.
    Internet,
    /// Azure DNS on the host VIP; rules with it override the platform's DNS bypass.
    AzurePlatformDns,
    /// The Instance Metadata Service at 169.254.169.254.
    AzurePlatformImds,
    /// Windows license activation (KMS) hosts.
    AzurePlatformLkm,
}

/// Every accepted spelling, compared ignoring ASCII case. Azure accepts the names in any case (the
/// error messages upper-case them), and the classic deployment model spelled three of them with
/// underscores (reference §4.2, "Classic deployment model spellings").
const SPELLINGS: [(&str, BuiltinTag); 8] = [
    ("VirtualNetwork", BuiltinTag::VirtualNetwork),
    ("VIRTUAL_NETWORK", BuiltinTag::VirtualNetwork),
    ("AzureLoadBalancer", BuiltinTag::AzureLoadBalancer),
    ("AZURE_LOADBALANCER", BuiltinTag::AzureLoadBalancer),
    ("Internet", BuiltinTag::Internet),
    ("AzurePlatformDNS", BuiltinTag::AzurePlatformDns),
    ("AzurePlatformIMDS", BuiltinTag::AzurePlatformImds),
    ("AzurePlatformLKM", BuiltinTag::AzurePlatformLkm),
];

impl BuiltinTag {
    /// All built-in tags, in the order Microsoft's documentation lists them.
    pub const ALL: [BuiltinTag; 6] = [
        BuiltinTag::VirtualNetwork,
        BuiltinTag::AzureLoadBalancer,
        BuiltinTag::Internet,
        BuiltinTag::AzurePlatformDns,
        BuiltinTag::AzurePlatformImds,
        BuiltinTag::AzurePlatformLkm,
    ];

    /// The built-in tag a rule's address names, ignoring case and accepting the classic spellings
    /// `VIRTUAL_NETWORK`, `AZURE_LOADBALANCER` and `INTERNET`; `None` for any other name.
    pub fn parse(name: &str) -> Option<BuiltinTag> {
        SPELLINGS
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(name))
            .map(|&(_, tag)| tag)
    }

    /// The name as Microsoft's current documentation writes it, for output.
    pub fn canonical_name(&self) -> &'static str {
        match self {
            BuiltinTag::VirtualNetwork => "VirtualNetwork",
            BuiltinTag::AzureLoadBalancer => "AzureLoadBalancer",
            BuiltinTag::Internet => "Internet",
            BuiltinTag::AzurePlatformDns => "AzurePlatformDNS",
            BuiltinTag::AzurePlatformImds => "AzurePlatformIMDS",
            BuiltinTag::AzurePlatformLkm => "AzurePlatformLKM",
        }
    }
}

impl fmt::Display for BuiltinTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_parse_back_in_any_case() {
        for tag in BuiltinTag::ALL {
            let name = tag.canonical_name();
            assert_eq!(BuiltinTag::parse(name), Some(tag));
            assert_eq!(BuiltinTag::parse(&name.to_uppercase()), Some(tag));
            assert_eq!(BuiltinTag::parse(&name.to_lowercase()), Some(tag));
            assert_eq!(tag.to_string(), name);
        }
    }

    #[test]
    fn classic_spellings() {
        assert_eq!(
            BuiltinTag::parse("VIRTUAL_NETWORK"),
            Some(BuiltinTag::VirtualNetwork)
        );
        assert_eq!(
            BuiltinTag::parse("azure_loadbalancer"),
            Some(BuiltinTag::AzureLoadBalancer)
        );
        assert_eq!(BuiltinTag::parse("INTERNET"), Some(BuiltinTag::Internet));
        assert_eq!(
            BuiltinTag::parse("AzurePlatformDns"),
            Some(BuiltinTag::AzurePlatformDns)
        );
    }

    #[test]
    fn other_names_are_not_builtin() {
        for name in [
            "",
            "*",
            "Storage",
            "VirtualNetwork.WestEurope",
            "Virtual Network",
            "AZURE_LOAD_BALANCER",
        ] {
            assert_eq!(BuiltinTag::parse(name), None, "{name:?}");
        }
    }
}
