//! Which NIC owns an address: what replay and live flow logs both ask of every packet.

use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// The NICs' addresses, indexed: host addresses by hash, prefix allocations by scan.
#[derive(Clone, Debug, Default)]
pub struct AddressOwners {
    hosts: HashMap<IpAddr, usize>,
    prefixes: Vec<(IpNet, usize)>,
}

impl AddressOwners {
    /// Each item is one NIC's addresses; a NIC is named by its position. An address two NICs
    /// claim belongs to the first.
    pub fn new<'a>(nics: impl IntoIterator<Item = &'a [IpNet]>) -> AddressOwners {
        let mut owners = AddressOwners::default();
        for (i, addresses) in nics.into_iter().enumerate() {
            for net in addresses {
                if net.prefix_len() == net.max_prefix_len() {
                    owners.hosts.entry(net.addr()).or_insert(i);
                } else {
                    owners.prefixes.push((*net, i));
                }
            }
        }
        owners
    }

    /// The position of the NIC owning `ip`.
    pub fn of(&self, ip: IpAddr) -> Option<usize> {
        self.hosts.get(&ip).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(net, _)| net.contains(&ip))
                .map(|(_, i)| *i)
        })
    }
}
