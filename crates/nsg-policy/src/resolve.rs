//! Resolution: from a validated [`Model`] and a tag [`Catalog`] to per-NIC policies.
//!
//! A NIC's policy is its ordered stages per direction (inbound: subnet NSG then NIC NSG;
//! outbound: NIC NSG then subnet NSG), each holding that NSG's rules of the direction in priority
//! order. Every address side becomes an interned [`PrefixSet`] (invariant 3: groups are sets,
//! shared between rules and NICs, never multiplied out into rules).

use crate::settings::Settings;
use ipnet::IpNet;
use nsg_model::model::{Model, NetworkInterface, NetworkSecurityGroup};
use nsg_model::rule::{Access, Addresses, Direction, Ports, Protocol, Rule, RuleKind};
use nsg_model::ResourceId;
use nsg_tags::{context, BuiltinTag, Catalog, PrefixSet};
use std::collections::HashMap;

/// Index of an interned set in a [`SetArena`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub u32);

/// Interned prefix sets: equal sets are stored once and shared by every rule and NIC using them.
/// Each keeps a label saying what it is, from its first use (`Internet`, `Storage.WestEurope`,
/// `AsgWeb`, `NSG1/Allow-Web source`), for people reading the kernel's table.
#[derive(Clone, Debug, Default)]
pub struct SetArena {
    sets: Vec<(PrefixSet, String)>,
    ids: HashMap<PrefixSet, SetId>,
}

impl SetArena {
    pub fn intern(&mut self, set: PrefixSet, label: impl FnOnce() -> String) -> SetId {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = SetId(u32::try_from(self.sets.len()).expect("fewer than 2^32 distinct sets"));
        self.sets.push((set.clone(), label()));
        self.ids.insert(set, id);
        id
    }
    pub fn get(&self, id: SetId) -> &PrefixSet {
        &self.sets[id.0 as usize].0
    }
    /// What the set stands for, as first interned.
    pub fn label(&self, id: SetId) -> &str {
        &self.sets[id.0 as usize].1
    }
    pub fn len(&self) -> usize {
        self.sets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

/// Where an NSG is associated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    Subnet,
    NetworkInterface,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Subnet => "subnet",
            Level::NetworkInterface => "network interface",
        }
    }
}

/// The platform services whose traffic bypasses NSGs unless a rule naming their tag denies it
/// (reference §3.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlatformService {
    Dns,
    Imds,
    Lkm,
}

impl PlatformService {
    pub fn tag(self) -> BuiltinTag {
        match self {
            PlatformService::Dns => BuiltinTag::AzurePlatformDns,
            PlatformService::Imds => BuiltinTag::AzurePlatformImds,
            PlatformService::Lkm => BuiltinTag::AzurePlatformLkm,
        }
    }
}

/// One side of a resolved rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SideMatch {
    Any,
    Set(SetId),
}

/// A rule as one NIC sees it.
#[derive(Clone, Debug)]
pub struct ResolvedRule {
    pub name: String,
    pub kind: RuleKind,
    pub priority: u16,
    pub access: Access,
    pub protocol: Protocol,
    pub source: SideMatch,
    pub source_ports: Ports,
    pub destination: SideMatch,
    pub destination_ports: Ports,
    /// False when the rule's local side names ASGs this NIC is not a member of: such a rule is
    /// "not applied to the network interface" (reference §3.6).
    pub applies: bool,
    /// The platform service whose tag the rule's remote side names, if any.
    pub platform_tag: Option<PlatformService>,
}

impl ResolvedRule {
    /// `securityRules/NAME` or `defaultSecurityRules/NAME`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.collection(), self.name)
    }
}

/// One NSG's rules of one direction, as applied to one NIC.
#[derive(Clone, Debug)]
pub struct Stage {
    pub level: Level,
    pub nsg: ResourceId,
    pub flush_connection: bool,
    /// Custom rules then default rules, ascending priority.
    pub rules: Vec<ResolvedRule>,
}

/// Everything needed to decide the flows of one NIC.
#[derive(Clone, Debug)]
pub struct NicPolicy {
    pub nic: ResourceId,
    pub mac_address: Option<String>,
    pub addresses: Vec<IpNet>,
    /// `enableIPForwarding`: the NIC sends and receives for other addresses too (a router or
    /// appliance), so its addresses do not limit its traffic.
    pub ip_forwarding: bool,
    pub subnet: ResourceId,
    pub virtual_network: SetId,
    pub internet: SetId,
    /// Subnet NSG then NIC NSG; absent levels are left out.
    pub inbound: Vec<Stage>,
    /// NIC NSG then subnet NSG; absent levels are left out.
    pub outbound: Vec<Stage>,
    /// Idle timeout of flow records: the VNet's `flowTimeoutInMinutes`, else 4.
    pub flow_timeout_minutes: u8,
}

impl NicPolicy {
    pub fn stages(&self, direction: Direction) -> &[Stage] {
        match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        }
    }
    pub fn owns(&self, ip: std::net::IpAddr) -> bool {
        self.addresses.iter().any(|a| a.contains(&ip))
    }
}

/// Why a NIC cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("network interface {0} has no IP configuration, so no subnet")]
    NoIpConfiguration(String),
    #[error("{rule} of network security group {nsg}: {hint}")]
    UnknownTag {
        nsg: String,
        rule: String,
        hint: String,
    },
}

/// Resolves NICs of one model against one tag catalog, sharing interned sets between them.
pub struct Resolver<'a> {
    model: &'a Model,
    catalog: &'a Catalog,
    settings: Settings,
    pub sets: SetArena,
    named_tags: HashMap<String, SetId>,
    /// Each NIC's `VirtualNetwork` and `Internet` sets, computed once.
    nic_sets: HashMap<ResourceId, (SetId, SetId)>,
}

impl<'a> Resolver<'a> {
    pub fn new(model: &'a Model, catalog: &'a Catalog, settings: Settings) -> Resolver<'a> {
        Resolver {
            model,
            catalog,
            settings,
            sets: SetArena::default(),
            named_tags: HashMap::new(),
            nic_sets: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `VirtualNetwork` tag of a NIC: its VNet's address space, the address spaces of
    /// connected peerings, and the host VIP 168.63.129.16.
    pub fn virtual_network_set(&self, nic: &NetworkInterface) -> PrefixSet {
        let vnet = nic
            .primary_subnet()
            .and_then(|s| self.model.subnet(s))
            .map(|(vnet, _)| vnet);
        let mut prefixes: Vec<IpNet> = Vec::new();
        if let Some(vnet) = vnet {
            prefixes.extend(&vnet.address_space);
            for peering in vnet.peerings.iter().filter(|p| p.connected) {
                if peering.remote_address_space.is_empty() {
                    let remote = peering.remote_virtual_network.as_ref();
                    if let Some(remote) = remote.and_then(|r| self.model.virtual_network(r)) {
                        prefixes.extend(&remote.address_space);
                    }
                } else {
                    prefixes.extend(&peering.remote_address_space);
                }
            }
        }
        context::virtual_network(prefixes)
    }

    /// Resolves the NIC with id `nic`.
    pub fn resolve(&mut self, nic: &NetworkInterface) -> Result<NicPolicy, ResolveError> {
        let subnet_id = nic
            .primary_subnet()
            .cloned()
            .ok_or_else(|| ResolveError::NoIpConfiguration(nic.id.to_string()))?;
        let (vnet, subnet) = self
            .model
            .subnet(&subnet_id)
            .expect("validation resolved the subnet reference");
        let context = self.context(nic);
        let subnet_nsg = subnet
            .network_security_group
            .as_ref()
            .and_then(|id| self.model.network_security_group(id));
        let nic_nsg = nic
            .network_security_group
            .as_ref()
            .and_then(|id| self.model.network_security_group(id));
        let levels_in = [
            (Level::Subnet, subnet_nsg),
            (Level::NetworkInterface, nic_nsg),
        ];
        let levels_out = [
            (Level::NetworkInterface, nic_nsg),
            (Level::Subnet, subnet_nsg),
        ];
        let mut inbound = Vec::new();
        for (level, nsg) in levels_in {
            if let Some(nsg) = nsg {
                inbound.push(self.stage(&context, level, nsg, Direction::Inbound)?);
            }
        }
        let mut outbound = Vec::new();
        for (level, nsg) in levels_out {
            if let Some(nsg) = nsg {
                outbound.push(self.stage(&context, level, nsg, Direction::Outbound)?);
            }
        }
        Ok(NicPolicy {
            nic: nic.id.clone(),
            mac_address: nic.mac_address.clone(),
            ip_forwarding: nic.enable_ip_forwarding,
            addresses: nic.ip_configurations.iter().map(|c| c.address).collect(),
            subnet: subnet_id,
            virtual_network: context.virtual_network,
            internet: context.internet,
            inbound,
            outbound,
            flow_timeout_minutes: vnet.flow_timeout_minutes.unwrap_or(4),
        })
    }

    /// The NIC's `VirtualNetwork` and `Internet` sets, interned.
    fn context<'n>(&mut self, nic: &'n NetworkInterface) -> NicContext<'n> {
        let (virtual_network, internet) = match self.nic_sets.get(&nic.id) {
            Some(&sets) => sets,
            None => {
                let vnet_set = self.virtual_network_set(nic);
                let internet = context::internet(&vnet_set);
                let sets = (
                    self.sets.intern(vnet_set, || "VirtualNetwork".into()),
                    self.sets.intern(internet, || "Internet".into()),
                );
                self.nic_sets.insert(nic.id.clone(), sets);
                sets
            }
        };
        NicContext {
            nic,
            virtual_network,
            internet,
        }
    }

    fn stage(
        &mut self,
        context: &NicContext<'_>,
        level: Level,
        nsg: &NetworkSecurityGroup,
        direction: Direction,
    ) -> Result<Stage, ResolveError> {
        let mut rules: Vec<&Rule> = nsg
            .rules
            .iter()
            .chain(&nsg.default_rules)
            .filter(|r| r.direction == direction)
            .collect();
        // Priorities are unique per direction within the custom rules, and default rules
        // (65000+) sort after every custom rule (≤ 4096); a stable sort keeps that order exact.
        rules.sort_by_key(|r| r.priority);
        let rules = rules
            .into_iter()
            .map(|rule| self.rule(context, nsg, rule))
            .collect::<Result<_, _>>()?;
        Ok(Stage {
            level,
            nsg: nsg.id.clone(),
            flush_connection: nsg.flush_connection,
            rules,
        })
    }

    fn rule(
        &mut self,
        context: &NicContext<'_>,
        nsg: &NetworkSecurityGroup,
        rule: &Rule,
    ) -> Result<ResolvedRule, ResolveError> {
        let (local, remote) = match rule.direction {
            Direction::Inbound => (&rule.destination, &rule.source),
            Direction::Outbound => (&rule.source, &rule.destination),
        };
        let applies = match local {
            Addresses::ApplicationSecurityGroups(asgs) => {
                context.nic.ip_configurations.iter().any(|c| {
                    c.application_security_groups
                        .iter()
                        .any(|a| asgs.contains(a))
                })
            }
            _ => true,
        };
        let platform_tag = match remote {
            Addresses::Tag(name) => match BuiltinTag::parse(name) {
                Some(BuiltinTag::AzurePlatformDns) => Some(PlatformService::Dns),
                Some(BuiltinTag::AzurePlatformImds) => Some(PlatformService::Imds),
                Some(BuiltinTag::AzurePlatformLkm) => Some(PlatformService::Lkm),
                _ => None,
            },
            _ => None,
        };
        let unknown = |hint: String| ResolveError::UnknownTag {
            nsg: nsg.id.to_string(),
            rule: rule.reference(),
            hint,
        };
        Ok(ResolvedRule {
            name: rule.name.clone(),
            kind: rule.kind,
            priority: rule.priority,
            access: rule.access,
            protocol: rule.protocol,
            source: self
                .side(context, &rule.source, || {
                    format!("{}/{} source", nsg.name(), rule.name)
                })
                .map_err(unknown)?,
            source_ports: rule.source_ports.clone(),
            destination: self
                .side(context, &rule.destination, || {
                    format!("{}/{} destination", nsg.name(), rule.name)
                })
                .map_err(unknown)?,
            destination_ports: rule.destination_ports.clone(),
            applies,
            platform_tag,
        })
    }

    /// The addresses a rule side stands for at this NIC, as an interned set (`Any` for `*`).
    /// `rule_side` labels a set of prefixes written in the rule (`NSG1/Allow-Web source`).
    fn side(
        &mut self,
        context: &NicContext<'_>,
        addresses: &Addresses,
        rule_side: impl FnOnce() -> String,
    ) -> Result<SideMatch, String> {
        Ok(match addresses {
            Addresses::Any => SideMatch::Any,
            Addresses::Tag(name) => SideMatch::Set(self.tag_set(context, name)?),
            Addresses::Prefixes { nets, .. } => SideMatch::Set(
                self.sets
                    .intern(PrefixSet::from_nets(nets.iter().copied()), rule_side),
            ),
            Addresses::ApplicationSecurityGroups(asgs) => {
                let members = asgs.iter().flat_map(|asg| {
                    self.model
                        .asg_members(asg)
                        .map(|(_, config)| config.address)
                });
                let names = || {
                    asgs.iter()
                        .map(|asg| asg.name().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                SideMatch::Set(
                    self.sets
                        .intern(PrefixSet::from_nets(members.collect::<Vec<_>>()), names),
                )
            }
        })
    }

    fn tag_set(&mut self, context: &NicContext<'_>, name: &str) -> Result<SetId, String> {
        match BuiltinTag::parse(name) {
            Some(BuiltinTag::VirtualNetwork) => Ok(context.virtual_network),
            Some(BuiltinTag::Internet) => Ok(context.internet),
            Some(builtin) => {
                let set = context::builtin_set(builtin, self.sets.get(context.virtual_network));
                Ok(self.sets.intern(set, || name.to_string()))
            }
            None => {
                let key = name.to_ascii_lowercase();
                if let Some(&id) = self.named_tags.get(&key) {
                    return Ok(id);
                }
                let tag = self
                    .catalog
                    .get(name)
                    .ok_or_else(|| self.catalog.unknown_tag_message(name))?;
                let id = self.sets.intern(tag.set.clone(), || name.to_string());
                self.named_tags.insert(key, id);
                Ok(id)
            }
        }
    }

    /// Expands a rule side for display (effective rules): the CIDRs it covers at this NIC.
    pub fn expand(
        &mut self,
        nic: &NetworkInterface,
        addresses: &Addresses,
    ) -> Result<Vec<IpNet>, String> {
        let context = self.context(nic);
        Ok(
            match self.side(&context, addresses, || "effective rules".into())? {
                SideMatch::Any => PrefixSet::everything().to_cidrs(),
                SideMatch::Set(id) => self.sets.get(id).to_cidrs(),
            },
        )
    }
}

/// The per-NIC values rule sides resolve against.
struct NicContext<'n> {
    nic: &'n NetworkInterface,
    virtual_network: SetId,
    internet: SetId,
}
