//! Properties of the reference evaluator over random but valid environments.
//!
//! Every environment has the same skeleton — one VNet with one dual-stack subnet, the NICs `nic1`
//! (10.0.1.4 and fd00:0:0:1::4) and `nic2` (10.0.1.5), the ASGs `asg-web` and `asg-db` — and what
//! varies is what decides verdicts: which NSGs are attached where, whether `nic1` is in `asg-web`,
//! and the NSGs' rules. Rules and flows draw their addresses and ports from small shared pools, so
//! that rules actually match the flows (random addresses would leave every verdict to the default
//! rules and the properties would hold vacuously).
//!
//! The generator works on a small description ([`GenEnv`]) rather than on JSON, so that the
//! properties can add and remove rules and recase enum values, and then renders ARM JSON that goes
//! through the real loader, validation and resolution. Every generated environment must validate;
//! if one does not, that is a bug of the generator and the test fails with the validation errors.

use nsg_model::rule::{protocol_has_ports, Access, Direction, RuleKind};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::evaluate::{
    decide_without, platform_service, stage_decider, RuleMatch, RulePosition, StageVerdict,
};
use nsg_policy::{
    decide, explain, Decider, Decision, Endpoint, Explanation, Flow, Level, NicPolicy,
    PlatformRule, Resolver, SetArena, Settings, SubscriptionType,
};
use nsg_tags::Catalog;
use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::net::IpAddr;

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

const NETWORK: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network";
const LOCATION: &str = "westeurope";

const NIC1_V4: &str = "10.0.1.4";
const NIC1_V6: &str = "fd00:0:0:1::4";
const HOST_VIP: &str = "168.63.129.16";

/// IPv4 addresses and CIDRs rules name: nic1, nic2, the VNet and subnet, public documentation
/// ranges, the host VIP, a public resolver's /24 and private space outside the VNet. Each of the
/// flows' remote hosts is inside at least one of them or deliberately outside all of them.
const V4_PREFIXES: &[&str] = &[
    "10.0.1.4",
    "10.0.1.5",
    "10.0.0.0/16",
    "10.0.1.0/24",
    "203.0.113.0/24",
    "203.0.113.9",
    "198.51.100.7",
    "168.63.129.16",
    "8.8.8.0/24",
    "172.16.0.0/12",
];

/// IPv6 addresses and CIDRs rules name: the VNet's /48, the subnet's /64, nic1 and documentation space.
const V6_PREFIXES: &[&str] = &[
    "fd00::/48",
    "fd00:0:0:1::/64",
    "fd00:0:0:1::4",
    "fd00:0:0:1::5",
    "2001:db8::/32",
];

/// Built-in tags that need no tag file. `AzurePlatformDNS` is the one that makes rules count for
/// platform DNS traffic (the others bypass NSGs entirely).
const TAGS: &[&str] = &[
    "VirtualNetwork",
    "Internet",
    "AzureLoadBalancer",
    "AzurePlatformDNS",
];

const ASGS: &[&str] = &["asg-web", "asg-db"];

/// Ports rules name; ranges are built around them.
const RULE_PORTS: &[u16] = &[0, 22, 25, 53, 80, 443, 1433, 5000, 65535];

/// Ports flows use: the rules' ports plus 67, so that DHCP (outbound UDP to the host VIP, port 67)
/// turns up, and 53/80 with the host VIP and IMDS for platform DNS and IMDS traffic.
const FLOW_PORTS: &[u16] = &[0, 22, 25, 53, 67, 80, 443, 1433, 5000, 65535];

/// Remote hosts of flows: nic2, another host in the VNet, public hosts inside and outside the rule
/// pools, the host VIP and IMDS (platform traffic), private space outside the VNet, and IPv6 hosts
/// inside and outside the VNet.
const REMOTE_HOSTS: &[&str] = &[
    "10.0.1.5",
    "10.0.2.9",
    "203.0.113.9",
    "198.51.100.7",
    HOST_VIP,
    "169.254.169.254",
    "8.8.8.8",
    "172.16.0.1",
    "fd00:0:0:1::5",
    "2001:db8::9",
];

fn nsg_id(name: &str) -> String {
    format!("{NETWORK}/networkSecurityGroups/{name}")
}
fn asg_id(name: &str) -> String {
    format!("{NETWORK}/applicationSecurityGroups/{name}")
}
fn vnet_id() -> String {
    format!("{NETWORK}/virtualNetworks/vnet1")
}
fn subnet_id() -> String {
    format!("{}/subnets/subnet1", vnet_id())
}
fn nic_id(name: &str) -> String {
    format!("{NETWORK}/networkInterfaces/{name}")
}

// ---------------------------------------------------------------------------------------------
// The environment description and its ARM JSON
// ---------------------------------------------------------------------------------------------

/// How a rule writes its enum values and tags. Azure ignores case (`TCP`, `allow`, `INBOUND`,
/// `internet`), so every casing must decide alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Casing {
    Canonical,
    Lower,
    Upper,
    /// `tCp`, `aLlOw`: neither of the usual forms.
    Alternating,
}

impl Casing {
    fn apply(self, text: &str) -> String {
        match self {
            Casing::Canonical => text.to_string(),
            Casing::Lower => text.to_ascii_lowercase(),
            Casing::Upper => text.to_ascii_uppercase(),
            Casing::Alternating => text
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect(),
        }
    }
}

/// One address side of a rule, in the form it is written.
#[derive(Clone, Debug)]
enum AddressSide {
    /// `*`.
    Any,
    /// A built-in tag, in `…AddressPrefix`.
    Tag(&'static str),
    /// One address or CIDR, in `…AddressPrefix`.
    Single(&'static str),
    /// 1–4 addresses or CIDRs of one family, in `…AddressPrefixes`.
    Plural(Vec<&'static str>),
    /// 1–2 ASGs, in `…ApplicationSecurityGroups`.
    Asgs(Vec<&'static str>),
}

/// One port side of a rule.
#[derive(Clone, Debug)]
enum PortSide {
    /// `*` in `…PortRange`.
    Any,
    /// `N` or `A-B` in `…PortRange`.
    Single(String),
    /// `N`s and `A-B`s in `…PortRanges`.
    Plural(Vec<String>),
}

#[derive(Clone, Debug)]
struct GenRule {
    name: String,
    priority: u16,
    direction: Direction,
    access: Access,
    /// In Azure's spelling; written with `casing`.
    protocol: &'static str,
    casing: Casing,
    source: AddressSide,
    source_ports: PortSide,
    destination: AddressSide,
    destination_ports: PortSide,
}

/// The two NSGs of an environment. Both documents are always present; whether they count depends
/// on where they are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    /// `nsg-subnet`: attached to the subnet, or not at all, and sometimes to nic1 as well.
    Subnet,
    /// `nsg-nic`: attached to nic1, or not at all.
    Nic,
}

impl Which {
    const BOTH: [Which; 2] = [Which::Subnet, Which::Nic];
    fn name(self) -> &'static str {
        match self {
            Which::Subnet => "nsg-subnet",
            Which::Nic => "nsg-nic",
        }
    }
    fn of(verdict: &StageVerdict) -> Option<Which> {
        Which::BOTH
            .into_iter()
            .find(|w| verdict.nsg.name() == w.name())
    }
}

/// The NSG of nic1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NicNsg {
    None,
    /// `nsg-nic`.
    Own,
    /// `nsg-subnet`, which then may be attached at both levels.
    SharedWithSubnet,
}

#[derive(Clone, Debug)]
struct GenEnv {
    /// Whether the subnet has `nsg-subnet`.
    subnet_nsg: bool,
    nic_nsg: NicNsg,
    nic1_in_asg_web: bool,
    subnet_rules: Vec<GenRule>,
    nic_rules: Vec<GenRule>,
}

impl GenEnv {
    fn rules(&self, which: Which) -> &Vec<GenRule> {
        match which {
            Which::Subnet => &self.subnet_rules,
            Which::Nic => &self.nic_rules,
        }
    }
    fn rules_mut(&mut self, which: Which) -> &mut Vec<GenRule> {
        match which {
            Which::Subnet => &mut self.subnet_rules,
            Which::Nic => &mut self.nic_rules,
        }
    }

    /// The NSG at each level of nic1 (subnet level first).
    fn levels(&self) -> Vec<(Level, Which)> {
        let mut levels = Vec::new();
        if self.subnet_nsg {
            levels.push((Level::Subnet, Which::Subnet));
        }
        match self.nic_nsg {
            NicNsg::None => {}
            NicNsg::Own => levels.push((Level::NetworkInterface, Which::Nic)),
            NicNsg::SharedWithSubnet => levels.push((Level::NetworkInterface, Which::Subnet)),
        }
        levels
    }

    /// The levels a flow of `direction` passes, in order: inbound subnet then NIC, outbound NIC
    /// then subnet.
    fn stage_order(&self, direction: Direction) -> Vec<(Level, Which)> {
        let mut levels = self.levels();
        if direction == Direction::Outbound {
            levels.reverse();
        }
        levels
    }

    fn attachments(&self, which: Which) -> usize {
        self.levels().iter().filter(|(_, w)| *w == which).count()
    }

    fn without_nsgs(mut self) -> GenEnv {
        self.subnet_nsg = false;
        self.nic_nsg = NicNsg::None;
        self
    }

    /// The same environment with every rule's protocol, access, direction and tags written in
    /// `casings` (cycled over the rules).
    fn recased(&self, casings: &[Casing]) -> GenEnv {
        let mut env = self.clone();
        let mut next = casings.iter().copied().cycle();
        for which in Which::BOTH {
            for rule in env.rules_mut(which) {
                rule.casing = next.next().unwrap_or(Casing::Canonical);
            }
        }
        env
    }

    fn to_json(&self) -> Value {
        let asg = |name: &str| {
            json!({
                "id": asg_id(name), "name": name, "location": LOCATION,
                "type": "Microsoft.Network/applicationSecurityGroups", "properties": {}
            })
        };
        let nsg = |which: Which| {
            let rules: Vec<Value> = self
                .rules(which)
                .iter()
                .map(|r| rule_json(which, r))
                .collect();
            json!({
                "id": nsg_id(which.name()), "name": which.name(), "location": LOCATION,
                "type": "Microsoft.Network/networkSecurityGroups",
                "properties": {"securityRules": rules}
            })
        };
        let mut subnet_properties = json!({"addressPrefixes": ["10.0.1.0/24", "fd00:0:0:1::/64"]});
        if self.subnet_nsg {
            subnet_properties["networkSecurityGroup"] = json!({"id": nsg_id(Which::Subnet.name())});
        }
        let vnet = json!({
            "id": vnet_id(), "name": "vnet1", "location": LOCATION,
            "type": "Microsoft.Network/virtualNetworks",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16", "fd00::/48"]},
                "subnets": [{"id": subnet_id(), "name": "subnet1", "properties": subnet_properties}]
            }
        });
        let nic1_asgs: Vec<Value> = if self.nic1_in_asg_web {
            vec![json!({"id": asg_id("asg-web")})]
        } else {
            Vec::new()
        };
        let mut nic1 = json!({
            "id": nic_id("nic1"), "name": "nic1", "location": LOCATION,
            "type": "Microsoft.Network/networkInterfaces",
            "properties": {"ipConfigurations": [
                {"name": "ipconfig1", "properties": {
                    "privateIPAddress": NIC1_V4, "privateIPAddressVersion": "IPv4",
                    "subnet": {"id": subnet_id()}, "primary": true,
                    "applicationSecurityGroups": nic1_asgs.clone()}},
                {"name": "ipconfig2", "properties": {
                    "privateIPAddress": NIC1_V6, "privateIPAddressVersion": "IPv6",
                    "subnet": {"id": subnet_id()}, "primary": false,
                    "applicationSecurityGroups": nic1_asgs}}
            ]}
        });
        let nic_nsg = match self.nic_nsg {
            NicNsg::None => None,
            NicNsg::Own => Some(Which::Nic),
            NicNsg::SharedWithSubnet => Some(Which::Subnet),
        };
        if let Some(which) = nic_nsg {
            nic1["properties"]["networkSecurityGroup"] = json!({"id": nsg_id(which.name())});
        }
        let nic2 = json!({
            "id": nic_id("nic2"), "name": "nic2", "location": LOCATION,
            "type": "Microsoft.Network/networkInterfaces",
            "properties": {"ipConfigurations": [
                {"name": "ipconfig1", "properties": {
                    "privateIPAddress": "10.0.1.5", "subnet": {"id": subnet_id()}, "primary": true,
                    "applicationSecurityGroups": [{"id": asg_id("asg-db")}]}}
            ]}
        });
        json!([
            asg("asg-web"),
            asg("asg-db"),
            nsg(Which::Subnet),
            nsg(Which::Nic),
            vnet,
            nic1,
            nic2
        ])
    }
}

fn rule_json(which: Which, rule: &GenRule) -> Value {
    let mut p = Map::new();
    let c = rule.casing;
    p.insert("protocol".into(), json!(c.apply(rule.protocol)));
    p.insert("access".into(), json!(c.apply(rule.access.as_str())));
    p.insert("direction".into(), json!(c.apply(rule.direction.as_str())));
    p.insert("priority".into(), json!(rule.priority));
    address_json(&mut p, "source", &rule.source, c);
    address_json(&mut p, "destination", &rule.destination, c);
    ports_json(&mut p, "source", &rule.source_ports);
    ports_json(&mut p, "destination", &rule.destination_ports);
    json!({
        "id": format!("{}/securityRules/{}", nsg_id(which.name()), rule.name),
        "name": rule.name,
        "properties": p
    })
}

fn address_json(p: &mut Map<String, Value>, side: &str, addresses: &AddressSide, casing: Casing) {
    let (key, value) = match addresses {
        AddressSide::Any => (format!("{side}AddressPrefix"), json!("*")),
        AddressSide::Tag(tag) => (format!("{side}AddressPrefix"), json!(casing.apply(tag))),
        AddressSide::Single(a) => (format!("{side}AddressPrefix"), json!(a)),
        AddressSide::Plural(list) => (format!("{side}AddressPrefixes"), json!(list)),
        AddressSide::Asgs(list) => {
            let refs: Vec<Value> = list.iter().map(|a| json!({"id": asg_id(a)})).collect();
            (format!("{side}ApplicationSecurityGroups"), json!(refs))
        }
    };
    p.insert(key, value);
}

fn ports_json(p: &mut Map<String, Value>, side: &str, ports: &PortSide) {
    let (key, value) = match ports {
        PortSide::Any => (format!("{side}PortRange"), json!("*")),
        PortSide::Single(s) => (format!("{side}PortRange"), json!(s)),
        PortSide::Plural(list) => (format!("{side}PortRanges"), json!(list)),
    };
    p.insert(key, value);
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Mostly Azure's own spelling, sometimes `TCP`, `allow`, `tCp`: the service accepts any case.
fn casing() -> impl Strategy<Value = Casing> {
    prop_oneof![
        6 => Just(Casing::Canonical),
        1 => Just(Casing::Lower),
        1 => Just(Casing::Upper),
        1 => Just(Casing::Alternating),
    ]
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![Just(Direction::Inbound), Just(Direction::Outbound)]
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::Allow), Just(Access::Deny)]
}

/// An address side whose prefixes (if any) are all of one family: Azure rejects rules that mix
/// IPv4 and IPv6, and `*`, tags and ASGs belong to no family.
fn address_side(v6: bool) -> impl Strategy<Value = AddressSide> {
    let pool = if v6 { V6_PREFIXES } else { V4_PREFIXES };
    prop_oneof![
        4 => Just(AddressSide::Any),
        3 => select(TAGS).prop_map(AddressSide::Tag),
        3 => select(pool).prop_map(AddressSide::Single),
        2 => subsequence(pool, 1..=4).prop_shuffle().prop_map(AddressSide::Plural),
        2 => subsequence(ASGS, 1..=2).prop_map(AddressSide::Asgs),
    ]
}

/// `N`, or `A-B` from two pool ports or a few ports around one, so that range edges meet the
/// flows' ports exactly, just inside and just outside.
fn port_token() -> impl Strategy<Value = String> {
    prop_oneof![
        select(RULE_PORTS).prop_map(|p| p.to_string()),
        (select(RULE_PORTS), select(RULE_PORTS)).prop_map(|(a, b)| format!(
            "{}-{}",
            a.min(b),
            a.max(b)
        )),
        (select(RULE_PORTS), 0u16..=2, 0u16..=2).prop_map(|(p, below, above)| format!(
            "{}-{}",
            p.saturating_sub(below),
            p.saturating_add(above)
        )),
    ]
}

fn port_side() -> impl Strategy<Value = PortSide> {
    prop_oneof![
        4 => Just(PortSide::Any),
        4 => port_token().prop_map(PortSide::Single),
        2 => prop::collection::vec(port_token(), 1..=3).prop_map(PortSide::Plural),
    ]
}

/// A priority before fix-up: often one of a few values so that rules of the two directions and
/// the added rules of property (a) collide and must be moved, otherwise anything in 100–4096.
fn raw_priority() -> impl Strategy<Value = u16> {
    prop_oneof![
        select(vec![100u16, 101, 200, 300, 1000, 4095, 4096]),
        100u16..=4096,
    ]
}

/// The side of a rule that names nic1's end of the flow (destination of inbound rules, source of
/// outbound ones). Real rules mostly name the protected machine there — `*`, `VirtualNetwork`, its
/// address or subnet, its ASG — so this side is biased towards what contains nic1; otherwise most
/// rules would never match and the default rules would decide nearly every flow.
fn local_side(v6: bool) -> impl Strategy<Value = AddressSide> {
    let nic1: &'static [&'static str] = if v6 {
        &["fd00:0:0:1::4", "fd00:0:0:1::/64", "fd00::/48"]
    } else {
        &["10.0.1.4", "10.0.1.0/24", "10.0.0.0/16"]
    };
    prop_oneof![
        3 => address_side(v6),
        2 => Just(AddressSide::Any),
        1 => Just(AddressSide::Tag("VirtualNetwork")),
        2 => select(nic1).prop_map(AddressSide::Single),
        1 => Just(AddressSide::Asgs(vec!["asg-web"])),
    ]
}

/// Mostly TCP and `*`, as real rules are; every protocol turns up.
fn rule_protocol() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => Just("Tcp"),
        2 => Just("Udp"),
        4 => Just("*"),
        1 => Just("Icmp"),
        1 => Just("Esp"),
        1 => Just("Ah"),
    ]
}

/// Source ports are `*` in most real rules (clients pick ephemeral ports); sometimes not.
fn source_port_side() -> impl Strategy<Value = PortSide> {
    prop_oneof![4 => Just(PortSide::Any), 1 => port_side()]
}

/// A rule of either direction whose sides keep to one address family; name and priority are
/// fixed up by [`rules`] to be unique in their NSG.
fn rule() -> impl Strategy<Value = GenRule> {
    let sides = (direction(), prop::bool::weighted(0.25)).prop_flat_map(|(direction, v6)| {
        (local_side(v6), address_side(v6)).prop_map(move |(local, remote)| match direction {
            Direction::Inbound => (direction, remote, local),
            Direction::Outbound => (direction, local, remote),
        })
    });
    (
        (access(), rule_protocol(), casing()),
        raw_priority(),
        sides,
        (source_port_side(), port_side()),
    )
        .prop_map(
            |((access, protocol, casing), priority, (direction, source, destination), ports)| {
                GenRule {
                    name: String::new(),
                    priority,
                    direction,
                    access,
                    protocol,
                    casing,
                    source,
                    source_ports: ports.0,
                    destination,
                    destination_ports: ports.1,
                }
            },
        )
}

/// Moves `priority` up (wrapping from 4096 to 100) until no rule of `direction` in `used` has it.
fn free_priority(used: &HashSet<(Direction, u16)>, direction: Direction, mut priority: u16) -> u16 {
    while used.contains(&(direction, priority)) {
        priority = if priority >= 4096 { 100 } else { priority + 1 };
    }
    priority
}

/// 0–12 rules with unique names and priorities unique per direction, as Azure requires.
fn rules() -> impl Strategy<Value = Vec<GenRule>> {
    prop::collection::vec(rule(), 0..=12).prop_map(|mut rules| {
        let mut used = HashSet::new();
        for (i, rule) in rules.iter_mut().enumerate() {
            rule.name = format!("rule{i}");
            rule.priority = free_priority(&used, rule.direction, rule.priority);
            used.insert((rule.direction, rule.priority));
        }
        rules
    })
}

fn nic_nsg() -> impl Strategy<Value = NicNsg> {
    prop_oneof![
        2 => Just(NicNsg::None),
        3 => Just(NicNsg::Own),
        1 => Just(NicNsg::SharedWithSubnet),
    ]
}

/// A valid environment; usually with at least one NSG on nic1, sometimes with none.
fn environment() -> impl Strategy<Value = GenEnv> {
    (
        prop::bool::weighted(0.75),
        nic_nsg(),
        any::<bool>(),
        rules(),
        rules(),
    )
        .prop_map(
            |(subnet_nsg, nic_nsg, nic1_in_asg_web, subnet_rules, nic_rules)| GenEnv {
                subnet_nsg,
                nic_nsg,
                nic1_in_asg_web,
                subnet_rules,
                nic_rules,
            },
        )
}

/// Mostly pool ports, where rules' ranges start and end, sometimes any port.
fn flow_port() -> impl Strategy<Value = u16> {
    prop_oneof![4 => select(FLOW_PORTS), 1 => any::<u16>()]
}

/// TCP and UDP more often than ICMP, ICMPv6, ESP, AH and GRE (which only `*` rules cover): port
/// matching is where most of the semantics are.
fn flow_protocol() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(6u8),
        2 => Just(17u8),
        1 => select(vec![1u8, 58, 50, 51, 47]),
    ]
}

/// A flow at nic1: the local address is nic1's address of the remote host's family; ports only
/// for TCP and UDP.
fn flow() -> impl Strategy<Value = Flow> {
    (
        direction(),
        flow_protocol(),
        select(REMOTE_HOSTS),
        flow_port(),
        flow_port(),
    )
        .prop_map(|(direction, protocol, remote, local_port, remote_port)| {
            let remote = parse_ip(remote);
            let local = parse_ip(if remote.is_ipv4() { NIC1_V4 } else { NIC1_V6 });
            let ports = protocol_has_ports(protocol);
            Flow {
                direction,
                protocol,
                local: Endpoint {
                    ip: local,
                    port: ports.then_some(local_port),
                },
                remote: Endpoint {
                    ip: remote,
                    port: ports.then_some(remote_port),
                },
            }
        })
}

/// 1–8 flows that do not depend on an environment's rules: random and platform traffic.
fn flows() -> impl Strategy<Value = Vec<Flow>> {
    prop::collection::vec(prop_oneof![3 => flow(), 1 => platform_flow()], 1..=8)
}

/// Choices that aim a flow at one rule: the rule, the prefix and host of its remote side, ports
/// in its ranges, and ICMP or ICMPv6 for `Icmp`.
#[derive(Clone, Debug)]
struct Aim {
    rule: Index,
    prefix: Index,
    host: Index,
    local_port: Index,
    remote_port: Index,
    icmp_v6: bool,
}

fn aim() -> impl Strategy<Value = Aim> {
    (
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
        (any::<Index>(), any::<Index>()),
        any::<bool>(),
    )
        .prop_map(
            |(rule, prefix, host, (local_port, remote_port), icmp_v6)| Aim {
                rule,
                prefix,
                host,
                local_port,
                remote_port,
                icmp_v6,
            },
        )
}

fn prefixes(side: &AddressSide) -> Option<&[&'static str]> {
    match side {
        AddressSide::Single(a) => Some(std::slice::from_ref(a)),
        AddressSide::Plural(list) => Some(list),
        _ => None,
    }
}

fn parse_ip(text: &str) -> IpAddr {
    text.parse().expect("pool hosts are addresses")
}

/// Remote hosts of the pool inside a built-in tag (for nic1's VNet).
fn tag_hosts(tag: &str) -> Vec<IpAddr> {
    let hosts: &[&str] = match tag {
        "VirtualNetwork" => &["10.0.1.5", "10.0.2.9", HOST_VIP, "fd00:0:0:1::5"],
        "Internet" => &["203.0.113.9", "198.51.100.7", "8.8.8.8", "2001:db8::9"],
        _ => &[HOST_VIP],
    };
    hosts.iter().map(|h| parse_ip(h)).collect()
}

/// A port of `ports` (a range's first or last port, or `fallback` if it is inside), or `fallback`
/// for `*`.
fn aim_port(ports: &PortSide, fallback: u16, pick: &Index) -> u16 {
    let tokens: Vec<&String> = match ports {
        PortSide::Any => return fallback,
        PortSide::Single(t) => vec![t],
        PortSide::Plural(list) => list.iter().collect(),
    };
    let mut candidates = Vec::new();
    for token in tokens {
        let (low, high) = token.split_once('-').unwrap_or((token, token));
        let (low, high): (u16, u16) = (
            low.parse().expect("generated ports are numbers"),
            high.parse().expect("generated ports are numbers"),
        );
        candidates.extend([low, high]);
        if (low..=high).contains(&fallback) {
            candidates.push(fallback);
        }
    }
    *pick.get(&candidates)
}

/// Turns `flow` into one that `rule` has a good chance to match (it still may not: the other NSG,
/// a higher-priority rule, ASG membership, or a `*` rule's ports for portless protocols).
fn aim_flow(flow: Flow, rule: &GenRule, aim: &Aim) -> Flow {
    let (local_side, remote_side, local_ports, remote_ports) = match rule.direction {
        Direction::Inbound => (
            &rule.destination,
            &rule.source,
            &rule.destination_ports,
            &rule.source_ports,
        ),
        Direction::Outbound => (
            &rule.source,
            &rule.destination,
            &rule.source_ports,
            &rule.destination_ports,
        ),
    };
    let protocol = match rule.protocol {
        "Tcp" => 6,
        "Udp" => 17,
        "Icmp" if aim.icmp_v6 => 58,
        "Icmp" => 1,
        "Esp" => 50,
        "Ah" => 51,
        _ => flow.protocol,
    };
    let remote = match prefixes(remote_side) {
        Some(list) => {
            let net = net(aim.prefix.get::<&str>(list));
            let mut hosts: Vec<IpAddr> = REMOTE_HOSTS
                .iter()
                .map(|h| parse_ip(h))
                .filter(|h| net.contains(h))
                .collect();
            hosts.extend([net.network(), net.broadcast()]);
            *aim.host.get(&hosts)
        }
        None => match prefixes(local_side) {
            Some(list) => {
                let v6 = list.iter().any(|p| p.contains(':'));
                let hosts: Vec<IpAddr> = REMOTE_HOSTS
                    .iter()
                    .map(|h| parse_ip(h))
                    .filter(|h| h.is_ipv6() == v6)
                    .collect();
                *aim.host.get(&hosts)
            }
            None => match remote_side {
                AddressSide::Tag(tag) => *aim.host.get(&tag_hosts(tag)),
                _ => flow.remote.ip,
            },
        },
    };
    let local = parse_ip(if remote.is_ipv4() { NIC1_V4 } else { NIC1_V6 });
    let ports = protocol_has_ports(protocol);
    let local_port = aim_port(
        local_ports,
        flow.local.port.unwrap_or(49152),
        &aim.local_port,
    );
    // Rules naming AzurePlatformDNS are the ones platform DNS traffic meets: aim at port 53.
    let remote_port = match remote_side {
        AddressSide::Tag("AzurePlatformDNS") => 53,
        _ => flow.remote.port.unwrap_or(443),
    };
    let remote_port = aim_port(remote_ports, remote_port, &aim.remote_port);
    Flow {
        direction: rule.direction,
        protocol,
        local: Endpoint {
            ip: local,
            port: ports.then_some(local_port),
        },
        remote: Endpoint {
            ip: remote,
            port: ports.then_some(remote_port),
        },
    }
}

/// Traffic with the platform and its near misses: DNS and DHCP with the host VIP, IMDS, KMS
/// activation, and the same hosts on other ports, protocols or directions. Random flows hit
/// these combinations too rarely.
fn platform_flow() -> impl Strategy<Value = Flow> {
    let templates: Vec<(Direction, u8, &'static str, u16)> = vec![
        (Direction::Outbound, 17, HOST_VIP, 53),
        (Direction::Outbound, 6, HOST_VIP, 53),
        (Direction::Outbound, 17, HOST_VIP, 67),
        (Direction::Outbound, 17, "255.255.255.255", 67),
        (Direction::Outbound, 6, "169.254.169.254", 80),
        (Direction::Outbound, 6, "20.118.99.224", 1688),
        (Direction::Outbound, 6, HOST_VIP, 67),
        (Direction::Outbound, 17, HOST_VIP, 54),
        (Direction::Outbound, 6, "169.254.169.254", 443),
        (Direction::Outbound, 17, "169.254.169.254", 80),
        (Direction::Inbound, 17, HOST_VIP, 53),
    ];
    (select(templates), flow_port()).prop_map(
        |((direction, protocol, remote, port), local_port)| Flow {
            direction,
            protocol,
            local: Endpoint {
                ip: parse_ip(NIC1_V4),
                port: Some(local_port),
            },
            remote: Endpoint {
                ip: parse_ip(remote),
                port: Some(port),
            },
        },
    )
}

/// A flow for `env`: some purely random, most aimed at one of its rules (so that custom rules
/// decide often and flows sit on the edges of port ranges and prefixes), some platform traffic.
fn flow_in(env: &GenEnv) -> impl Strategy<Value = Flow> {
    let rules: Vec<GenRule> = env
        .subnet_rules
        .iter()
        .chain(&env.nic_rules)
        .cloned()
        .collect();
    prop_oneof![
        2 => flow(),
        4 => (flow(), aim()).prop_map(move |(flow, aim)| {
            if rules.is_empty() {
                flow
            } else {
                aim_flow(flow, aim.rule.get(&rules), &aim)
            }
        }),
        1 => platform_flow(),
    ]
}

/// An environment and one flow at nic1.
fn env_and_flow() -> impl Strategy<Value = (GenEnv, Flow)> {
    environment().prop_flat_map(|env| {
        let flow = flow_in(&env);
        (Just(env), flow)
    })
}

/// An environment and 1–8 flows at nic1.
fn env_and_flows() -> impl Strategy<Value = (GenEnv, Vec<Flow>)> {
    environment().prop_flat_map(|env| {
        let flows = prop::collection::vec(flow_in(&env), 1..=8);
        (Just(env), flows)
    })
}

fn subscription_type() -> impl Strategy<Value = SubscriptionType> {
    select(SubscriptionType::ALL.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Running an environment
// ---------------------------------------------------------------------------------------------

/// Loads, validates and resolves `env`, then hands nic1's policy to `f`.
fn with_nic1<T>(
    env: &GenEnv,
    settings: Settings,
    f: impl FnOnce(&NicPolicy, &SetArena) -> T,
) -> Result<T, TestCaseError> {
    let mut environment = nsg_model::Environment::new();
    environment
        .add_value("generated", env.to_json())
        .map_err(|e| TestCaseError::fail(format!("generator bug, not loadable: {e}")))?;
    let catalog = Catalog::new();
    let model = nsg_model::validate(&environment, &catalog).map_err(|errors| {
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        TestCaseError::fail(format!(
            "generator bug, invalid environment:\n{}",
            shown.join("\n")
        ))
    })?;
    let nic = model
        .network_interfaces
        .iter()
        .find(|n| n.name() == "nic1")
        .ok_or_else(|| TestCaseError::fail("nic1 is missing from the model"))?;
    let mut resolver = Resolver::new(&model, &catalog, settings);
    let policy = resolver
        .resolve(nic)
        .map_err(|e| TestCaseError::fail(format!("nic1 does not resolve: {e}")))?;
    Ok(f(&policy, &resolver.sets))
}

fn decide_all(
    env: &GenEnv,
    settings: Settings,
    flows: &[Flow],
) -> Result<Vec<Decision>, TestCaseError> {
    with_nic1(env, settings, |policy, sets| {
        flows
            .iter()
            .map(|flow| decide(policy, sets, &settings, flow))
            .collect()
    })
}

fn decide_one(env: &GenEnv, flow: &Flow) -> Result<Decision, TestCaseError> {
    let settings = Settings::default();
    with_nic1(env, settings, |policy, sets| {
        decide(policy, sets, &settings, flow)
    })
}

/// DHCP with the host, which the evaluator allows before anything else (its check is private).
fn is_dhcp(flow: &Flow) -> bool {
    let vip = parse_ip(HOST_VIP);
    flow.direction == Direction::Outbound
        && flow.protocol == 17
        && flow.remote.port == Some(67)
        && (flow.remote.ip == vip || flow.remote.ip == IpAddr::from([255, 255, 255, 255]))
}

/// Traffic the platform handles before or besides NSGs: DHCP, and DNS/IMDS/KMS.
fn is_platform(flow: &Flow) -> bool {
    is_dhcp(flow) || platform_service(flow).is_some()
}

// ---------------------------------------------------------------------------------------------
// A naive reading of a rule, for property (g)
// ---------------------------------------------------------------------------------------------

fn net(text: &str) -> ipnet::IpNet {
    text.parse()
        .unwrap_or_else(|_| ipnet::IpNet::from(parse_ip(text)))
}

fn in_any(ip: IpAddr, nets: &[&str]) -> bool {
    nets.iter().any(|n| net(n).contains(&ip))
}

/// design.md: `VirtualNetwork` is the VNet's address space and the host VIP (no peerings here).
const VIRTUAL_NETWORK: &[&str] = &["10.0.0.0/16", "fd00::/48", "168.63.129.16/32"];

/// design.md: `Internet` is public unicast space outside `VirtualNetwork`.
const NOT_INTERNET: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/8",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Whether `ip` is in a rule side as written, in `env`, at nic1.
fn side_contains(env: &GenEnv, side: &AddressSide, ip: IpAddr) -> bool {
    match side {
        AddressSide::Any => true,
        AddressSide::Tag("VirtualNetwork") => in_any(ip, VIRTUAL_NETWORK),
        AddressSide::Tag("Internet") => !in_any(ip, NOT_INTERNET) && !in_any(ip, VIRTUAL_NETWORK),
        AddressSide::Tag(_) => ip == parse_ip(HOST_VIP),
        AddressSide::Single(a) => in_any(ip, &[a]),
        AddressSide::Plural(list) => in_any(ip, list),
        AddressSide::Asgs(asgs) => asgs.iter().any(|asg| match *asg {
            "asg-web" => {
                env.nic1_in_asg_web && (ip == parse_ip(NIC1_V4) || ip == parse_ip(NIC1_V6))
            }
            _ => ip == parse_ip("10.0.1.5"),
        }),
    }
}

/// The port ranges of a side as written.
fn port_ranges(ports: &PortSide) -> Vec<(u16, u16)> {
    let tokens: Vec<&String> = match ports {
        PortSide::Any => return vec![(0, u16::MAX)],
        PortSide::Single(t) => vec![t],
        PortSide::Plural(list) => list.iter().collect(),
    };
    tokens
        .into_iter()
        .map(|t| {
            let (low, high) = t.split_once('-').unwrap_or((t, t));
            (
                low.parse().expect("generated ports are numbers"),
                high.parse().expect("generated ports are numbers"),
            )
        })
        .collect()
}

/// Whether every port is in `ranges`, by counting (a different method from the library's sweep).
fn covers_all_ports(ranges: &[(u16, u16)]) -> bool {
    (0..=u16::MAX).all(|p| ranges.iter().any(|&(l, h)| l <= p && p <= h))
}

/// design.md: ports count only for TCP and UDP; for other protocols a rule of that protocol
/// ignores its ports and a `*` rule matches only if its ports are all ports.
fn ports_match(rule: &GenRule, ports: &PortSide, protocol: u8, port: Option<u16>) -> bool {
    let ranges = port_ranges(ports);
    match port {
        Some(p) if protocol_has_ports(protocol) => ranges.iter().any(|&(l, h)| l <= p && p <= h),
        _ => rule.protocol != "*" || covers_all_ports(&ranges),
    }
}

fn protocol_matches(rule: &GenRule, protocol: u8) -> bool {
    match rule.protocol {
        "*" => true,
        "Tcp" => protocol == 6,
        "Udp" => protocol == 17,
        "Icmp" => protocol == 1 || protocol == 58,
        "Esp" => protocol == 50,
        "Ah" => protocol == 51,
        other => panic!("unknown generated protocol {other}"),
    }
}

/// Each field of `rule` against `flow`, and whether the rule applies to nic1 at all (a local
/// side of ASGs nic1 is not in makes the rule not apply).
fn naive_match(env: &GenEnv, rule: &GenRule, flow: &Flow) -> (RuleMatch, bool) {
    let (source, destination) = flow.source_destination();
    let fields = RuleMatch {
        protocol: protocol_matches(rule, flow.protocol),
        source: side_contains(env, &rule.source, source.ip),
        source_port: ports_match(rule, &rule.source_ports, flow.protocol, source.port),
        destination: side_contains(env, &rule.destination, destination.ip),
        destination_port: ports_match(
            rule,
            &rule.destination_ports,
            flow.protocol,
            destination.port,
        ),
    };
    let local = match rule.direction {
        Direction::Inbound => &rule.destination,
        Direction::Outbound => &rule.source,
    };
    let applies = match local {
        AddressSide::Asgs(asgs) => env.nic1_in_asg_web && asgs.contains(&"asg-web"),
        _ => true,
    };
    (fields, applies)
}

/// Outbound TCP to port 25 of an `Internet` host (by design.md's definition, not the library's):
/// what subscription types that block SMTP deny after the NSGs allowed it.
fn is_smtp_to_internet(env: &GenEnv, flow: &Flow) -> bool {
    flow.direction == Direction::Outbound
        && flow.protocol == 6
        && flow.remote.port == Some(25)
        && side_contains(env, &AddressSide::Tag("Internet"), flow.remote.ip)
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures are reported by the run; no regression files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    // Only about 30% of cases have a stage decided by a custom rule in an NSG attached once
    // (the rest are decided by default rules, which nothing can rank below), hence more cases.
    #![proptest_config(proptest_config(1024))]

    /// (a) Rules are first-match in priority order: a rule placed after the rule that decided a
    /// stage can change nothing, whatever it says. The NSG must be attached at exactly one level,
    /// or the new rule would also meet the flow at the other level.
    #[test]
    fn lower_precedence_rule_never_changes_a_verdict(
        (env, flow) in env_and_flow(),
        stage_pick in any::<Index>(),
        extra in rule(),
        tight in any::<bool>(),
        priority_pick in any::<Index>(),
        position_pick in any::<Index>(),
    ) {
        let before = decide_one(&env, &flow)?;
        let candidates: Vec<(&StageVerdict, Which)> = before
            .stages
            .iter()
            .filter_map(|v| Some((v, Which::of(v)?)))
            .filter(|(v, which)| env.attachments(*which) == 1 && v.priority < 4096)
            .collect();
        if candidates.is_empty() {
            // No NSG, or every stage was decided by a default rule (65000+): nothing ranks lower
            // that a user could add.
            return Ok(());
        }
        let (verdict, which) = *stage_pick.get(&candidates);
        let used: HashSet<u16> = env
            .rules(which)
            .iter()
            .filter(|r| r.direction == flow.direction)
            .map(|r| r.priority)
            .collect();
        let free: Vec<u16> = (verdict.priority + 1..=4096)
            .filter(|p| !used.contains(p))
            .collect();
        if free.is_empty() {
            return Ok(());
        }
        let mut added = extra;
        added.name = "added-rule".into();
        added.direction = flow.direction;
        // Half the time the very next free priority, where off-by-one mistakes would show.
        added.priority = if tight { free[0] } else { *priority_pick.get(&free) };
        let mut after_env = env.clone();
        let rules = after_env.rules_mut(which);
        let position = position_pick.index(rules.len() + 1);
        rules.insert(position, added.clone());
        let after = decide_one(&after_env, &flow)?;
        prop_assert_eq!(&before, &after, "adding {:?} to {} changed the decision", added, which.name());
    }
}

proptest! {
    #![proptest_config(proptest_config(512))]

    /// (b) A rule that decided no stage can go without changing the decision: a stage's verdict
    /// depends only on the rules ranked up to its deciding rule, and those that did not match stay
    /// unmatched.
    #[test]
    fn removing_a_rule_that_decides_nothing_changes_nothing(
        (env, flow) in env_and_flow(),
        pick in any::<Index>(),
    ) {
        let before = decide_one(&env, &flow)?;
        let decided = |which: Which, name: &str| {
            before.stages.iter().any(|v| {
                v.kind == RuleKind::Custom && Which::of(v) == Some(which) && v.rule == name
            })
        };
        let candidates: Vec<(Which, usize)> = Which::BOTH
            .into_iter()
            .flat_map(|which| {
                env.rules(which)
                    .iter()
                    .enumerate()
                    .filter(move |(_, r)| !decided(which, &r.name))
                    .map(move |(i, _)| (which, i))
                    .collect::<Vec<_>>()
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let (which, i) = *pick.get(&candidates);
        let mut after_env = env.clone();
        let removed = after_env.rules_mut(which).remove(i);
        let after = decide_one(&after_env, &flow)?;
        prop_assert_eq!(&before, &after, "removing {:?} from {} changed the decision", removed, which.name());
    }
}

proptest! {
    #![proptest_config(proptest_config(256))]

    /// (c) For traffic that is not the platform's, the verdict is the AND of the stages: the flow
    /// passes the stages in order (inbound subnet then NIC, outbound NIC then subnet), each stage
    /// is decided by some rule (the default rules catch everything), a deny ends the list and is
    /// the verdict, and otherwise the last stage's allow decides — unless the SMTP block of the
    /// subscription type denies outbound TCP 25 to the internet after every stage allowed.
    #[test]
    fn verdict_is_and_of_stages(
        (env, flows) in env_and_flows(),
        subscription_type in subscription_type(),
    ) {
        let settings = Settings { subscription_type };
        let order_in = env.stage_order(Direction::Inbound);
        let order_out = env.stage_order(Direction::Outbound);
        prop_assume!(!order_in.is_empty());
        let decisions = decide_all(&env, settings, &flows)?;
        for (flow, decision) in flows.iter().zip(&decisions) {
            if is_platform(flow) {
                continue;
            }
            let order = if flow.direction == Direction::Inbound { &order_in } else { &order_out };
            let stages = &decision.stages;
            prop_assert!(!stages.is_empty() && stages.len() <= order.len(), "{flow:?}: {decision:?}");
            for (verdict, (level, which)) in stages.iter().zip(order) {
                prop_assert_eq!(verdict.level, *level, "{:?}: {:?}", flow, decision);
                prop_assert_eq!(verdict.nsg.name(), which.name(), "{:?}: {:?}", flow, decision);
            }
            let denied_at = stages.iter().position(|v| v.access == Access::Deny);
            if let Some(i) = denied_at {
                prop_assert_eq!(i, stages.len() - 1, "a deny must end the stages: {:?}", decision);
            } else {
                prop_assert_eq!(stages.len(), order.len(), "an allow passes the flow on: {:?}", decision);
            }
            let last = stages.last().cloned();
            let smtp_blocked = denied_at.is_none()
                && subscription_type.blocks_smtp()
                && is_smtp_to_internet(&env, flow);
            let smtp_decided =
                decision.decider == Decider::Platform(PlatformRule::BlockOutboundSmtp);
            prop_assert_eq!(smtp_decided, smtp_blocked, "SMTP block: {:?}: {:?}", flow, decision);
            match &decision.decider {
                Decider::Platform(PlatformRule::BlockOutboundSmtp) => {
                    prop_assert_eq!(decision.access, Access::Deny);
                }
                other => {
                    let expected = last.map(Decider::Rule);
                    prop_assert_eq!(Some(other), expected.as_ref(), "{:?}", flow);
                    let any_deny = denied_at.is_some();
                    prop_assert_eq!(decision.access == Access::Deny, any_deny, "{:?}: {:?}", flow, decision);
                }
            }
        }
    }

    /// (d) With no NSG on the subnet or the NIC, nothing is filtered: every flow is allowed and no
    /// rule decides — except that platform traffic (DHCP, DNS, IMDS) is reported as allowed by its
    /// platform rule, and the subscription's SMTP block still applies to outbound TCP 25 to the
    /// internet (it is not an NSG rule).
    #[test]
    fn no_nsg_allows_everything(
        env in environment().prop_map(GenEnv::without_nsgs),
        flows in flows(),
        subscription_type in subscription_type(),
    ) {
        let settings = Settings { subscription_type };
        let decisions = decide_all(&env, settings, &flows)?;
        for (flow, decision) in flows.iter().zip(decisions) {
            prop_assert!(decision.stages.is_empty(), "{flow:?}: {decision:?}");
            let smtp = is_smtp_to_internet(&env, flow) && subscription_type.blocks_smtp();
            let expected = if is_dhcp(flow) {
                (Access::Allow, Decider::Platform(PlatformRule::AllowDhcp))
            } else if let Some(service) = platform_service(flow) {
                (Access::Allow, Decider::Platform(PlatformRule::AllowPlatform(service)))
            } else if smtp {
                (Access::Deny, Decider::Platform(PlatformRule::BlockOutboundSmtp))
            } else {
                (Access::Allow, Decider::NoNsg)
            };
            prop_assert_eq!((decision.access, decision.decider), expected, "{:?}", flow);
        }
    }

    /// (e) `explain` is `decide` with a trace: the same decision, and in each traced stage the
    /// rules in priority order up to the first that applies and matches in every field — that
    /// one is the stage's verdict — and none that matched earlier. A stage whose trace ends
    /// without a match is one platform traffic passed unmatched.
    #[test]
    fn explain_agrees_with_decide(
        (env, flows) in env_and_flows(),
        subscription_type in subscription_type(),
    ) {
        let settings = Settings { subscription_type };
        let results: Vec<(Decision, Explanation)> = with_nic1(&env, settings, |policy, sets| {
            flows
                .iter()
                .map(|flow| {
                    (decide(policy, sets, &settings, flow), explain(policy, sets, &settings, flow))
                })
                .collect()
        })?;
        for (flow, (decision, explanation)) in flows.iter().zip(results) {
            prop_assert_eq!(&explanation.decision, &decision, "{:?}", flow);
            prop_assert_eq!(explanation.platform, platform_service(flow), "{:?}", flow);
            let mut verdicts = decision.stages.iter();
            for stage in &explanation.stages {
                let matched: Vec<bool> = stage
                    .rules
                    .iter()
                    .map(|r| r.applies && r.fields.all())
                    .collect();
                let before_last = matched.len().saturating_sub(1);
                prop_assert!(
                    !matched[..before_last].iter().any(|&m| m),
                    "a rule before the last traced one matched: {:?} {:?}", flow, stage
                );
                prop_assert!(
                    stage.rules.windows(2).all(|w| w[0].priority < w[1].priority),
                    "rules traced out of priority order: {:?}", stage
                );
                match stage.rules.last().filter(|r| r.applies && r.fields.all()) {
                    Some(last) => {
                        let Some(verdict) = verdicts.next() else {
                            return Err(TestCaseError::fail(format!(
                                "a traced match without a verdict: {flow:?}: {decision:?}"
                            )));
                        };
                        prop_assert_eq!(&verdict.nsg, &stage.nsg);
                        prop_assert_eq!(verdict.level, stage.level);
                        prop_assert_eq!(verdict.reference(), last.reference.clone());
                        prop_assert_eq!(verdict.priority, last.priority);
                        prop_assert_eq!(verdict.access, last.access);
                    }
                    None => prop_assert!(
                        is_platform(flow),
                        "only platform traffic passes a stage unmatched: {:?} {:?}", flow, stage
                    ),
                }
            }
            prop_assert!(verdicts.next().is_none(), "a verdict without a traced match: {:?}", decision);
        }
    }

    /// Each stage's decider judged alone (what NSG diagnostics report per NSG) is the reference's
    /// verdict for every stage the reference evaluated; a stage after a deny still has one unless
    /// the flow is platform traffic.
    #[test]
    fn stage_decider_agrees_with_the_stages_evaluated(
        (env, flows) in env_and_flows(),
    ) {
        let settings = Settings::default();
        let results: Vec<(Decision, Vec<Option<String>>)> = with_nic1(&env, settings, |policy, sets| {
            flows
                .iter()
                .map(|flow| {
                    let deciders = policy
                        .stages(flow.direction)
                        .iter()
                        .map(|stage| stage_decider(stage, sets, flow).map(|r| r.reference()))
                        .collect();
                    (decide(policy, sets, &settings, flow), deciders)
                })
                .collect()
        })?;
        for (flow, (decision, deciders)) in flows.iter().zip(results) {
            if is_dhcp(flow) {
                continue;
            }
            let mut alone = deciders.iter();
            for verdict in &decision.stages {
                // Stages the reference passed unmatched (platform traffic) have no verdict.
                let found = alone.by_ref().flatten().next();
                prop_assert_eq!(found, Some(&verdict.reference()), "{:?} {:?}", flow, decision);
            }
            prop_assert!(
                is_platform(flow) || deciders.iter().all(Option::is_some),
                "only platform traffic passes a stage unmatched: {:?} {:?}", flow, deciders
            );
        }
    }

    /// (g) The evaluator reads each custom rule as written: every field `explain` reports for a
    /// traced rule equals a naive reading of the rule's JSON (prefixes, tags as design.md defines
    /// them, ASG members, port ranges, the portless-protocol convention).
    #[test]
    fn rule_fields_match_the_rule_as_written(
        (env, flows) in env_and_flows(),
    ) {
        let settings = Settings::default();
        let explanations: Vec<Explanation> = with_nic1(&env, settings, |policy, sets| {
            flows.iter().map(|flow| explain(policy, sets, &settings, flow)).collect()
        })?;
        for (flow, explanation) in flows.iter().zip(&explanations) {
            for stage in &explanation.stages {
                let which = Which::BOTH
                    .into_iter()
                    .find(|w| stage.nsg.name() == w.name())
                    .ok_or_else(|| TestCaseError::fail(format!("unknown NSG {}", stage.nsg)))?;
                for traced in &stage.rules {
                    let Some(name) = traced.reference.strip_prefix("securityRules/") else {
                        continue;
                    };
                    let Some(rule) = env.rules(which).iter().find(|r| r.name == name) else {
                        return Err(TestCaseError::fail(format!(
                            "traced rule {name} is not in {}", which.name()
                        )));
                    };
                    let (fields, applies) = naive_match(&env, rule, flow);
                    prop_assert_eq!(
                        (traced.fields, traced.applies), (fields, applies),
                        "{:?} against {:?} (nic1 in asg-web: {})", flow, rule, env.nic1_in_asg_web
                    );
                }
            }
        }
    }

    /// (f) Azure ignores the case of protocols, accesses, directions and tags; so must we.
    #[test]
    fn protocol_casing_does_not_change_verdicts(
        (env, flows) in env_and_flows(),
        casings in prop::collection::vec(casing(), 1..=3),
    ) {
        let settings = Settings::default();
        let recased = env.recased(&casings);
        let expected = decide_all(&env, settings, &flows)?;
        let actual = decide_all(&recased, settings, &flows)?;
        prop_assert_eq!(expected, actual);
    }
}

/// The generator is worth testing with: every environment validates, and its flows reach custom
/// rules of both accesses at both levels, not only the default rules. (Guards against a change to
/// the pools that would leave the properties above holding vacuously.)
#[test]
fn generated_environments_are_valid_and_reach_custom_rules() {
    let mut runner = TestRunner::deterministic();
    let strategy = env_and_flows();
    let mut custom = 0usize;
    let mut default = 0usize;
    let mut accesses = HashSet::new();
    let mut levels = HashSet::new();
    let mut platform = 0usize;
    let mut total = 0usize;
    for _ in 0..300 {
        let (env, flows) = strategy
            .new_tree(&mut runner)
            .expect("strategy generates")
            .current();
        let decisions = decide_all(&env, Settings::default(), &flows)
            .unwrap_or_else(|e| panic!("{e}: {env:#?}"));
        for (flow, decision) in flows.iter().zip(&decisions) {
            total += 1;
            platform += usize::from(is_platform(flow));
            for stage in &decision.stages {
                match stage.kind {
                    RuleKind::Custom => {
                        custom += 1;
                        accesses.insert(stage.access.as_str());
                        levels.insert(stage.level.as_str());
                    }
                    RuleKind::Default => default += 1,
                }
            }
        }
    }
    assert!(
        custom * 3 >= default,
        "custom rules decide too rarely: {custom} custom, {default} default stage verdicts"
    );
    assert_eq!(accesses.len(), 2, "custom rules decide only {accesses:?}");
    assert_eq!(levels.len(), 2, "custom rules decide only at {levels:?}");
    assert!(
        platform * 30 > total && platform * 4 < total,
        "{platform} of {total} flows are platform traffic"
    );
}

/// Policies for the differential test: this many, each asked about `DIFFERENTIAL_FLOWS` flows,
/// make the 100,000 (policy, flow) cases the data-plane issue asks of CI.
const DIFFERENTIAL_POLICIES: u32 = 2_000;
const DIFFERENTIAL_FLOWS: usize = 50;

/// The position of each stage's deciding rule in `decision`.
fn deciding_positions(policy: &NicPolicy, flow: &Flow, decision: &Decision) -> Vec<RulePosition> {
    let stages = policy.stages(flow.direction);
    decision
        .stages
        .iter()
        .filter_map(|verdict| {
            let stage = stages.iter().position(|s| s.level == verdict.level)?;
            let rule = stages[stage]
                .rules
                .iter()
                .position(|r| r.name == verdict.rule && r.kind == verdict.kind)?;
            Some(RulePosition { stage, rule })
        })
        .collect()
}

/// An environment and many flows at nic1.
fn env_and_many_flows() -> impl Strategy<Value = (GenEnv, Vec<Flow>)> {
    environment().prop_flat_map(|env| {
        let flows = prop::collection::vec(flow_in(&env), DIFFERENTIAL_FLOWS);
        (Just(env), flows)
    })
}

proptest! {
    #![proptest_config(proptest_config(DIFFERENTIAL_POLICIES))]

    /// Invariant 1: the compiled classifier is an optimisation of the reference evaluator. On
    /// generated policies (random rules, tags, ASGs, augmented sides, IPv4 and IPv6, one NSG at
    /// both levels) and flows (aimed at rule edges, random, platform traffic) both give the same
    /// decision: access, deciding rule and every stage's verdict, also with any stage's
    /// deciding rule removed.
    #[test]
    fn compiled_classifier_agrees_with_the_reference(
        (env, flows) in env_and_many_flows(),
        subscription_type in subscription_type(),
    ) {
        let settings = Settings { subscription_type };
        let mismatches = with_nic1(&env, settings, |policy, sets| {
            let compiled = CompiledPolicy::build(policy.clone(), sets, settings);
            flows
                .iter()
                .flat_map(|flow| {
                    let reference = decide(policy, sets, &settings, flow);
                    let fast = compiled.decide(flow);
                    let mut found = Vec::new();
                    if reference != fast {
                        found.push(format!("{flow:?}\n  reference {reference:?}\n  compiled  {fast:?}"));
                    }
                    // What-if answers (lint's "would removing this rule change anything?"):
                    // remove each stage's deciding rule, the only removals that change anything.
                    for removed in deciding_positions(policy, flow, &reference) {
                        let reference = decide_without(policy, sets, &settings, flow, removed);
                        let fast = compiled.decide_without(flow, removed);
                        if reference != fast {
                            found.push(format!("{flow:?} without {removed:?}\n  reference {reference:?}\n  compiled  {fast:?}"));
                        }
                    }
                    found
                })
                .collect::<Vec<_>>()
        })?;
        prop_assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }
}
