//! Synthetic environments for benchmarks: many NSGs with many rules, sides drawn from real
//! service tags, prefix lists and ASGs. Deterministic for a given seed, so runs compare.

use serde_json::{json, Value};

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
