//! Synthetic environments for benchmarks: many NSGs with many rules, sides drawn from real
//! service tags, prefix lists and ASGs. Deterministic for a given seed, so runs compare.

use ipnet::IpNet;
use nsg_model::rule::{ip_proto, protocol_has_ports, Access, Direction, PortRange};
use nsg_model::Environment;
use nsg_policy::classify::{Classifier, Domains, FieldRule, Header, ProtocolSet};
use nsg_policy::evaluate::match_fields;
use nsg_policy::resolve::SideMatch;
use nsg_policy::{Endpoint, Flow, NicPolicy, Resolver, SetArena, Settings};
use nsg_tags::{Catalog, PrefixSet};
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr};

/// A small, fast, deterministic generator (SplitMix64); benchmarks need repeatability, not
/// cryptographic quality.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub const SUBSCRIPTION: &str =
    "/subscriptions/00000000-0000-0000-0000-0000000000be/resourceGroups/bench/providers";

/// Shape of a generated environment.
pub struct Shape {
    pub nsgs: usize,
    pub rules_per_nsg: usize,
    /// Service tag names rules may use (from a loaded tag file); empty for none.
    pub tags: Vec<String>,
    /// Addresses in a plural prefix list (1 up to this many).
    pub max_prefixes_per_side: usize,
}

/// The NIC name of subnet `i`.
pub fn nic_name(i: usize) -> String {
    format!("nic-{i}")
}

/// One VNet (10.0.0.0/8) with one /24 subnet per NSG; subnet `i` has NSG `i`, and NIC `i`
/// (10.a.b.4, in subnet `i`) has NSG `(i + 1) % n`, so every NIC meets two NSGs.
pub fn environment(shape: &Shape, seed: u64) -> Value {
    let mut rng = SplitMix64::new(seed);
    let network = format!("{SUBSCRIPTION}/Microsoft.Network");
    let nsg_id = |i: usize| format!("{network}/networkSecurityGroups/nsg-{i}");
    let subnet_prefix = |i: usize| format!("10.{}.{}.0/24", i / 256, i % 256);
    let mut resources = Vec::new();
    for n in 0..shape.nsgs {
        let mut rules = Vec::with_capacity(shape.rules_per_nsg);
        for r in 0..shape.rules_per_nsg {
            let direction = if r % 2 == 0 { "Inbound" } else { "Outbound" };
            let priority = 100 + r / 2;
            let mut properties = json!({
                "protocol": rng.pick(&["Tcp", "Udp", "*", "Tcp", "Tcp", "Icmp"]),
                "access": if rng.below(3) == 0 { "Deny" } else { "Allow" },
                "priority": priority,
                "direction": direction,
            });
            side(&mut rng, shape, &mut properties, "source");
            side(&mut rng, shape, &mut properties, "destination");
            ports(&mut rng, &mut properties, "sourcePort", true);
            ports(&mut rng, &mut properties, "destinationPort", false);
            rules.push(json!({"name": format!("rule-{r}"), "properties": properties}));
        }
        resources.push(json!({
            "id": nsg_id(n), "type": "Microsoft.Network/networkSecurityGroups", "location": "westeurope",
            "properties": {"securityRules": rules}
        }));
    }
    let subnets: Vec<Value> = (0..shape.nsgs)
        .map(|i| {
            json!({"name": format!("subnet-{i}"), "properties": {
                "addressPrefix": subnet_prefix(i),
                "networkSecurityGroup": {"id": nsg_id(i)}
            }})
        })
        .collect();
    resources.push(json!({
        "id": format!("{network}/virtualNetworks/vnet"), "type": "Microsoft.Network/virtualNetworks",
        "location": "westeurope",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/8"]}, "subnets": subnets}
    }));
    for i in 0..shape.nsgs {
        resources.push(json!({
            "id": format!("{network}/networkInterfaces/{}", nic_name(i)),
            "type": "Microsoft.Network/networkInterfaces", "location": "westeurope",
            "properties": {
                "networkSecurityGroup": {"id": nsg_id((i + 1) % shape.nsgs)},
                "ipConfigurations": [{"name": "ipconfig1", "properties": {
                    "privateIPAddress": format!("10.{}.{}.4", i / 256, i % 256),
                    "subnet": {"id": format!("{network}/virtualNetworks/vnet/subnets/subnet-{i}")},
                    "primary": true
                }}]
            }
        }));
    }
    Value::Array(resources)
}

fn random_ipv4(rng: &mut SplitMix64) -> [u8; 4] {
    let v = rng.next_u64();
    // Mostly public space, some of it the VNet's own.
    let first = if v.is_multiple_of(4) {
        10
    } else {
        11 + (v >> 8) % 180
    } as u8;
    [first, (v >> 16) as u8, (v >> 24) as u8, (v >> 32) as u8]
}

fn random_cidr(rng: &mut SplitMix64) -> String {
    let [a, b, c, d] = random_ipv4(rng);
    let len = *rng.pick(&[8u8, 12, 16, 20, 24, 28, 32]);
    let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(a, b, c, d), len).expect("length ≤ 32");
    net.trunc().to_string()
}

fn side(rng: &mut SplitMix64, shape: &Shape, properties: &mut Value, which: &str) {
    let choice = rng.below(10);
    if choice < 2 {
        properties[format!("{which}AddressPrefix")] = json!("*");
    } else if choice < 4 && !shape.tags.is_empty() {
        properties[format!("{which}AddressPrefix")] = json!(rng.pick(&shape.tags));
    } else if choice < 5 {
        properties[format!("{which}AddressPrefix")] =
            json!(rng.pick(&["VirtualNetwork", "Internet", "AzureLoadBalancer"]));
    } else if choice < 7 {
        properties[format!("{which}AddressPrefix")] = json!(random_cidr(rng));
    } else {
        let count = 1 + rng.below(shape.max_prefixes_per_side.max(1) as u64) as usize;
        let list: Vec<String> = (0..count).map(|_| random_cidr(rng)).collect();
        properties[format!("{which}AddressPrefixes")] = json!(list);
    }
}

fn ports(rng: &mut SplitMix64, properties: &mut Value, which: &str, mostly_any: bool) {
    let choice = rng.below(10);
    if choice < 3 || (mostly_any && choice < 9) {
        properties[format!("{which}Range")] = json!("*");
    } else if choice < 6 {
        properties[format!("{which}Range")] =
            json!(rng.pick(&[22, 80, 443, 1433, 3389, 8080]).to_string());
    } else if choice < 8 {
        let low = rng.below(60000);
        properties[format!("{which}Range")] = json!(format!("{low}-{}", low + rng.below(5000)));
    } else {
        let list: Vec<String> = (0..1 + rng.below(5))
            .map(|_| rng.below(65536).to_string())
            .collect();
        properties[format!("{which}Ranges")] = json!(list);
    }
}

/// Workload (a): one NIC behind a subnet NSG and a NIC NSG of `rules_per_nsg` rules each, sides
/// drawn from the loaded service tags and from prefix lists of up to 4,000 addresses.
pub struct NsgWorkload {
    pub policy: NicPolicy,
    pub sets: SetArena,
    /// Flows at the NIC: half aimed into the rules' address sets, half anywhere.
    pub flows: Vec<Flow>,
}

pub fn nsg_workload(
    catalog: &Catalog,
    rules_per_nsg: usize,
    flows: usize,
    seed: u64,
) -> anyhow::Result<NsgWorkload> {
    let shape = Shape {
        nsgs: 2,
        rules_per_nsg,
        tags: catalog.iter().map(|t| t.name.clone()).collect(),
        max_prefixes_per_side: 4000,
    };
    let mut env = Environment::new();
    env.add_value("generated", environment(&shape, seed))?;
    let model = nsg_model::validate(&env, catalog)
        .map_err(|e| anyhow::anyhow!("generated environment invalid: {:?}", e.first()))?;
    let mut resolver = Resolver::new(&model, catalog, Settings::default());
    let policy = resolver.resolve(&model.network_interfaces[0])?;
    let sets = std::mem::take(&mut resolver.sets);
    let mut rng = SplitMix64::new(seed ^ 0xF10E);
    let flows = (0..flows)
        .map(|_| aimed_flow(&mut rng, &policy, &sets))
        .collect();
    Ok(NsgWorkload {
        policy,
        sets,
        flows,
    })
}

/// A flow at the NIC of `policy`; half the time the remote address is drawn from a rule's set.
fn aimed_flow(rng: &mut SplitMix64, policy: &NicPolicy, sets: &SetArena) -> Flow {
    let direction = if rng.below(2) == 0 {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let stages = policy.stages(direction);
    let remote_set = (rng.below(2) == 0)
        .then(|| {
            let rules: Vec<_> = stages.iter().flat_map(|s| &s.rules).collect();
            let rule = rules[rng.below(rules.len() as u64) as usize];
            let remote = if direction == Direction::Inbound {
                rule.source
            } else {
                rule.destination
            };
            match remote {
                SideMatch::Set(id) => Some(sets.get(id)),
                SideMatch::Any => None,
            }
        })
        .flatten()
        .filter(|set| !set.v4_ranges().is_empty());
    let remote = match remote_set {
        Some(set) => {
            let ranges = set.v4_ranges();
            let (low, high) = ranges[rng.below(ranges.len() as u64) as usize];
            Ipv4Addr::from(low + (rng.next_u64() % (u64::from(high - low) + 1)) as u32)
        }
        None => Ipv4Addr::from(random_ipv4(rng)),
    };
    let protocol = *rng.pick(&[ip_proto::TCP, ip_proto::TCP, ip_proto::UDP, ip_proto::ICMP]);
    let port = |rng: &mut SplitMix64| {
        let any = rng.below(65536) as u16;
        protocol_has_ports(protocol)
            .then(|| *rng.pick(&[22u16, 80, 443, 1433, 3389, 8080, 50000, any]))
    };
    Flow {
        direction,
        protocol,
        local: Endpoint {
            ip: policy.addresses[0].addr(),
            port: port(rng),
        },
        remote: Endpoint {
            ip: IpAddr::V4(remote),
            port: port(rng),
        },
    }
}

/// The naive baseline: each stage's rules scanned in order with the reference's field match,
/// the first match deciding — the reference evaluator without its explanation.
pub fn naive_decide(policy: &NicPolicy, sets: &SetArena, flow: &Flow) -> Access {
    for stage in policy.stages(flow.direction) {
        let rule = stage
            .rules
            .iter()
            .find(|r| r.applies && match_fields(r, sets, flow).all());
        if let Some(rule) = rule {
            if rule.access == Access::Deny {
                return Access::Deny;
            }
        }
    }
    Access::Allow
}

/// ClassBench rules as classifier rules; the prefix sets are built once and borrowed.
pub struct ClassBenchSets(Vec<(PrefixSet, PrefixSet)>);

impl ClassBenchSets {
    pub fn new(rules: &[classbench::Rule]) -> ClassBenchSets {
        ClassBenchSets(
            rules
                .iter()
                .map(|r| {
                    (
                        PrefixSet::from_nets([IpNet::V4(r.src)]),
                        PrefixSet::from_nets([IpNet::V4(r.dst)]),
                    )
                })
                .collect(),
        )
    }

    pub fn field_rules<'a>(&'a self, rules: &[classbench::Rule]) -> Vec<FieldRule<'a>> {
        rules
            .iter()
            .zip(&self.0)
            .map(|(r, (src, dst))| FieldRule {
                source: (r.src.prefix_len() > 0).then_some(src),
                destination: (r.dst.prefix_len() > 0).then_some(dst),
                source_ports: vec![PortRange {
                    low: r.src_ports.0,
                    high: r.src_ports.1,
                }],
                destination_ports: vec![PortRange {
                    low: r.dst_ports.0,
                    high: r.dst_ports.1,
                }],
                protocols: match r.protocol {
                    Some(p) => ProtocolSet::default().with(p),
                    None => ProtocolSet::ALL,
                },
                matches_portless: true,
                active: true,
            })
            .collect()
    }
}

/// Builds the classifier of a ClassBench rule set (prefix sets included, as a user's build would).
pub fn classbench_classifier(rules: &[classbench::Rule]) -> Classifier {
    let sets = ClassBenchSets::new(rules);
    Classifier::build(&sets.field_rules(rules), &Domains::default())
}

pub fn classbench_header(h: &classbench::Header) -> Header {
    Header {
        protocol: h.protocol,
        source: IpAddr::V4(h.src),
        destination: IpAddr::V4(h.dst),
        source_port: Some(h.src_port),
        destination_port: Some(h.dst_port),
    }
}
