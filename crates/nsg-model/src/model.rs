//! The validated model of an environment: every reference resolved, every value typed.
//! Built only by [`crate::validate`], so holding a [`Model`] means the environment is valid.

use crate::id::ResourceId;
use crate::rule::Rule;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Clone, Debug)]
pub struct NetworkSecurityGroup {
    pub id: ResourceId,
    pub location: Option<String>,
    /// `resourceGuid`, when the document has one (flow logs call it `systemId`).
    pub resource_guid: Option<String>,
    pub flush_connection: bool,
    /// The user's rules, in document order.
    pub rules: Vec<Rule>,
    /// The six default rules, in Azure's order.
    pub default_rules: Vec<Rule>,
}

impl NetworkSecurityGroup {
    pub fn name(&self) -> &str {
        self.id.name()
    }
}

#[derive(Clone, Debug)]
pub struct ApplicationSecurityGroup {
    pub id: ResourceId,
    pub location: Option<String>,
}

#[derive(Clone, Debug)]
pub struct VirtualNetwork {
    pub id: ResourceId,
    pub location: Option<String>,
    pub address_space: Vec<IpNet>,
    pub subnets: Vec<Subnet>,
    pub peerings: Vec<Peering>,
    /// `flowTimeoutInMinutes` (4–30), if set.
    pub flow_timeout_minutes: Option<u8>,
}

#[derive(Clone, Debug)]
pub struct Subnet {
    pub id: ResourceId,
    pub prefixes: Vec<IpNet>,
    pub network_security_group: Option<ResourceId>,
}

#[derive(Clone, Debug)]
pub struct Peering {
    pub remote_virtual_network: Option<ResourceId>,
    /// The remote address space as the peering records it (empty if it records none).
    pub remote_address_space: Vec<IpNet>,
    /// `peeringState` is `Connected` or absent; only connected peerings widen `VirtualNetwork`.
    pub connected: bool,
}

#[derive(Clone, Debug)]
pub struct NetworkInterface {
    pub id: ResourceId,
    pub location: Option<String>,
    pub mac_address: Option<String>,
    /// `enableIPForwarding`: the NIC may send from and receive for addresses not its own.
    pub enable_ip_forwarding: bool,
    pub network_security_group: Option<ResourceId>,
    pub ip_configurations: Vec<IpConfiguration>,
    pub virtual_machine: Option<ResourceId>,
}

impl NetworkInterface {
    pub fn name(&self) -> &str {
        self.id.name()
    }

    /// The subnet of the primary IP configuration (the first if none is marked primary).
    /// Azure requires every IP configuration of a NIC to be in one VNet; NSG layering uses the
    /// primary configuration's subnet.
    pub fn primary_subnet(&self) -> Option<&ResourceId> {
        self.ip_configurations
            .iter()
            .find(|c| c.primary)
            .or_else(|| self.ip_configurations.first())
            .map(|c| &c.subnet)
    }

    /// The IP configuration holding `ip`, if any.
    pub fn configuration_with(&self, ip: IpAddr) -> Option<&IpConfiguration> {
        self.ip_configurations
            .iter()
            .find(|c| c.address.contains(&ip))
    }
}

#[derive(Clone, Debug)]
pub struct IpConfiguration {
    pub id: ResourceId,
    /// The private address as a host prefix, or the prefix for prefix allocations.
    pub address: IpNet,
    pub subnet: ResourceId,
    pub application_security_groups: Vec<ResourceId>,
    pub primary: bool,
}

#[derive(Clone, Debug)]
pub struct VirtualMachine {
    pub id: ResourceId,
    pub network_interfaces: Vec<ResourceId>,
    /// The NIC the VM's network profile marks `properties.primary: true` (the first so marked).
    pub primary: Option<ResourceId>,
}

impl VirtualMachine {
    /// The VM's primary NIC: the one marked primary, else the first (a VM with one NIC need
    /// not mark it).
    pub fn primary_network_interface(&self) -> Option<&ResourceId> {
        self.primary
            .as_ref()
            .or_else(|| self.network_interfaces.first())
    }
}

/// A valid environment.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub network_security_groups: Vec<NetworkSecurityGroup>,
    pub application_security_groups: Vec<ApplicationSecurityGroup>,
    pub virtual_networks: Vec<VirtualNetwork>,
    pub network_interfaces: Vec<NetworkInterface>,
    pub virtual_machines: Vec<VirtualMachine>,
    pub(crate) index: Index,
}

/// Id → position lookups, built once with the model.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    pub nsgs: HashMap<ResourceId, usize>,
    pub asgs: HashMap<ResourceId, usize>,
    pub vnets: HashMap<ResourceId, usize>,
    /// subnet id → (vnet position, subnet position)
    pub subnets: HashMap<ResourceId, (usize, usize)>,
    pub nics: HashMap<ResourceId, usize>,
    pub vms: HashMap<ResourceId, usize>,
}

impl Model {
    pub fn network_security_group(&self, id: &ResourceId) -> Option<&NetworkSecurityGroup> {
        self.index
            .nsgs
            .get(id)
            .map(|&i| &self.network_security_groups[i])
    }
    pub fn application_security_group(&self, id: &ResourceId) -> Option<&ApplicationSecurityGroup> {
        self.index
            .asgs
            .get(id)
            .map(|&i| &self.application_security_groups[i])
    }
    pub fn virtual_network(&self, id: &ResourceId) -> Option<&VirtualNetwork> {
        self.index.vnets.get(id).map(|&i| &self.virtual_networks[i])
    }
    /// A subnet and the VNet it belongs to.
    pub fn subnet(&self, id: &ResourceId) -> Option<(&VirtualNetwork, &Subnet)> {
        self.index.subnets.get(id).map(|&(v, s)| {
            let vnet = &self.virtual_networks[v];
            (vnet, &vnet.subnets[s])
        })
    }
    pub fn network_interface(&self, id: &ResourceId) -> Option<&NetworkInterface> {
        self.index
            .nics
            .get(id)
            .map(|&i| &self.network_interfaces[i])
    }
    pub fn virtual_machine(&self, id: &ResourceId) -> Option<&VirtualMachine> {
        self.index.vms.get(id).map(|&i| &self.virtual_machines[i])
    }

    /// IP configurations (with their NIC) that are members of the ASG `asg`.
    pub fn asg_members<'a>(
        &'a self,
        asg: &'a ResourceId,
    ) -> impl Iterator<Item = (&'a NetworkInterface, &'a IpConfiguration)> + 'a {
        self.network_interfaces.iter().flat_map(move |nic| {
            nic.ip_configurations
                .iter()
                .filter(move |c| c.application_security_groups.contains(asg))
                .map(move |c| (nic, c))
        })
    }
}
