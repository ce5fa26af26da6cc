//! Address sets as users name them in questions: `*`, a service tag, or addresses and CIDRs.

use ipnet::IpNet;
use nsg_tags::{context, BuiltinTag, Catalog, PrefixSet};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not '*', a service tag, or a list of IP addresses and CIDRs")]
pub struct UnknownAddresses {
    pub text: String,
}

/// The set `text` names at a NIC whose `VirtualNetwork` is `virtual_network` (the tags
/// `VirtualNetwork` and `Internet` are relative to it); `None` for `*`, every address.
pub fn address_set(
    text: &str,
    catalog: &Catalog,
    virtual_network: &PrefixSet,
) -> Result<Option<PrefixSet>, UnknownAddresses> {
    let text = text.trim();
    if text == "*" {
        return Ok(None);
    }
    if let Some(tag) = BuiltinTag::parse(text) {
        return Ok(Some(context::builtin_set(tag, virtual_network)));
    }
    if let Some(tag) = catalog.get(text) {
        return Ok(Some(tag.set.clone()));
    }
    let nets: Option<Vec<IpNet>> = text
        .split(',')
        .map(|item| {
            let item = item.trim();
            item.parse::<IpNet>()
                .ok()
                .or_else(|| item.parse::<IpAddr>().ok().map(IpNet::from))
        })
        .collect();
    nets.map(|nets| Some(PrefixSet::from_nets(nets)))
        .ok_or_else(|| UnknownAddresses { text: text.into() })
}
