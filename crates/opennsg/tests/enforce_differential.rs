//! The kernel against the reference evaluator: random policies enforced by `opennsg enforce`, and
//! random single packets sent between namespaces. A packet must reach its destination exactly
//! when the reference allows it at the sender's NIC (outbound) and at the receiver's NIC
//! (inbound). Needs root, like `enforce.rs`.

use nsg_model::rule::{ip_proto, Direction};
use nsg_model::Environment;
use nsg_netlab::packet::{ipv4_icmp_echo, ipv4_tcp_syn, ipv4_udp};
use nsg_netlab::{Capture, FiveTuple, GuestSide, Lab, Netns, RawSender, RouterSide};
use nsg_policy::{decide, Endpoint, Flow, Resolver, Settings};
use nsg_tags::Catalog;
use opennsg::workload::SplitMix64;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const SUBSCRIPTION: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1";
const POLICIES: u64 = 6;
const FLOWS_PER_POLICY: usize = 60;
const LARGE_NSG_RULES: u64 = 300;

/// A host of the lab; `nic` is the NIC bound to its router-side interface, if any.
struct Host {
    name: &'static str,
    address: Ipv4Addr,
    nic: Option<(&'static str, &'static str)>, // (NIC name, subnet name)
}

/// The index of the host VIP in [`HOSTS`].
const VIP: usize = 5;

const HOSTS: [Host; 6] = [
    Host {
        name: "vma",
        address: Ipv4Addr::new(10, 0, 1, 4),
        nic: Some(("a-nic", "s1")),
    },
    Host {
        name: "vmb",
        address: Ipv4Addr::new(10, 0, 1, 5),
        nic: Some(("b-nic", "s1")),
    },
    Host {
        name: "vmc",
        address: Ipv4Addr::new(10, 0, 2, 4),
        nic: Some(("c-nic", "s2")),
    },
    Host {
        name: "netx",
        address: Ipv4Addr::new(203, 0, 113, 10),
        nic: None,
    },
    Host {
        name: "nety",
        address: Ipv4Addr::new(198, 51, 100, 7),
        nic: None,
    },
    // The host VIP: Azure DNS (a platform service) and the load balancer's probe source.
    Host {
        name: "vip",
        address: Ipv4Addr::new(168, 63, 129, 16),
        nic: None,
    },
];

fn id(kind: &str, name: &str) -> String {
    format!("{SUBSCRIPTION}/providers/Microsoft.Network/{kind}/{name}")
}

fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    rng.pick(items)
}

/// One random security rule over addresses and ports the lab's flows use.
fn random_rule(rng: &mut SplitMix64, name: String, priority: u64) -> Value {
    let addresses: [Value; 11] = [
        json!("*"),
        json!("VirtualNetwork"),
        json!("Internet"),
        json!("10.0.1.4"),
        json!("10.0.1.0/24"),
        json!("10.0.2.0/24"),
        json!("203.0.113.0/24"),
        json!("198.51.100.7"),
        json!(["10.0.1.5", "203.0.113.10"]),
        json!("AzurePlatformDNS"),
        json!("AzureLoadBalancer"),
    ];
    let ports: [Value; 6] = [
        json!("*"),
        json!("80"),
        json!("22"),
        json!("1000-2000"),
        json!(["80", "443"]),
        json!("0-65535"),
    ];
    let side =
        |rng: &mut SplitMix64, prefix: &str, properties: &mut serde_json::Map<String, Value>| {
            match pick(rng, &addresses) {
                Value::Array(list) => properties.insert(
                    format!("{prefix}AddressPrefixes"),
                    Value::Array(list.clone()),
                ),
                one => properties.insert(format!("{prefix}AddressPrefix"), one.clone()),
            };
        };
    let port =
        |rng: &mut SplitMix64, prefix: &str, properties: &mut serde_json::Map<String, Value>| {
            match pick(rng, &ports) {
                Value::Array(list) => {
                    properties.insert(format!("{prefix}PortRanges"), Value::Array(list.clone()))
                }
                one => properties.insert(format!("{prefix}PortRange"), one.clone()),
            };
        };
    let mut properties = serde_json::Map::new();
    properties.insert(
        "protocol".into(),
        json!(pick(rng, &["*", "Tcp", "Udp", "Icmp"])),
    );
    side(rng, "source", &mut properties);
    side(rng, "destination", &mut properties);
    // Source ports are mostly `*`, as in real rules; the flows' source ports are random.
    if rng.below(4) == 0 {
        port(rng, "source", &mut properties);
    } else {
        properties.insert("sourcePortRange".into(), json!("*"));
    }
    port(rng, "destination", &mut properties);
    properties.insert("access".into(), json!(pick(rng, &["Allow", "Deny"])));
    properties.insert(
        "direction".into(),
        json!(pick(rng, &["Inbound", "Outbound"])),
    );
    properties.insert("priority".into(), json!(priority));
    json!({"name": name, "properties": properties})
}

/// An NSG of up to six rules, or of `LARGE_NSG_RULES` when `large` (so that stages are cut
/// into blocks of chains).
fn random_nsg(rng: &mut SplitMix64, name: &str, large: bool) -> Value {
    let count = if large { LARGE_NSG_RULES } else { rng.below(7) };
    let mut priorities = HashSet::new();
    let rules: Vec<Value> = (0..count)
        .map(|i| {
            let mut priority = 100 + rng.below(390) * 10;
            while !priorities.insert(priority) {
                priority += 1;
            }
            random_rule(rng, format!("r{i}"), priority)
        })
        .collect();
    json!({
        "id": id("networkSecurityGroups", name),
        "name": name,
        "type": "Microsoft.Network/networkSecurityGroups",
        "location": "westeurope",
        "properties": {"securityRules": rules}
    })
}

/// A random environment: each subnet and NIC has an NSG with probability 2/3.
fn random_environment(rng: &mut SplitMix64, large: bool) -> Value {
    let mut resources = Vec::new();
    let attach = |rng: &mut SplitMix64, name: &str, resources: &mut Vec<Value>| {
        (rng.below(3) > 0).then(|| {
            resources.push(random_nsg(rng, name, large));
            json!({"id": id("networkSecurityGroups", name)})
        })
    };
    let subnets: Vec<Value> = [("s1", "10.0.1.0/24"), ("s2", "10.0.2.0/24")]
        .iter()
        .map(|(name, prefix)| {
            let mut properties = json!({"addressPrefix": prefix});
            if let Some(nsg) = attach(rng, &format!("nsg-{name}"), &mut resources) {
                properties["networkSecurityGroup"] = nsg;
            }
            json!({"name": name, "id": format!("{}/subnets/{name}", id("virtualNetworks", "vnet1")), "properties": properties})
        })
        .collect();
    resources.push(json!({
        "id": id("virtualNetworks", "vnet1"),
        "name": "vnet1",
        "type": "Microsoft.Network/virtualNetworks",
        "location": "westeurope",
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": subnets}
    }));
    for host in &HOSTS {
        let Some((nic, subnet)) = host.nic else {
            continue;
        };
        let mut properties = json!({
            "ipConfigurations": [{
                "name": "ipconfig1",
                "properties": {
                    "privateIPAddress": host.address.to_string(),
                    "privateIPAllocationMethod": "Static",
                    "subnet": {"id": format!("{}/subnets/{subnet}", id("virtualNetworks", "vnet1"))},
                    "primary": true
                }
            }]
        });
        if let Some(nsg) = attach(rng, &format!("nsg-{nic}"), &mut resources) {
            properties["networkSecurityGroup"] = nsg;
        }
        resources.push(json!({
            "id": id("networkInterfaces", nic),
            "name": nic,
            "type": "Microsoft.Network/networkInterfaces",
            "location": "westeurope",
            "properties": properties
        }));
    }
    Value::Array(resources)
}

/// One probe: a packet from `from` to `to`.
#[derive(Clone, Copy, Debug)]
struct Probe {
    from: usize,
    to: usize,
    protocol: u8,
    source_port: u16,
    destination_port: u16,
}

impl Probe {
    fn packet(&self) -> Vec<u8> {
        let (src, dst) = (HOSTS[self.from].address, HOSTS[self.to].address);
        match self.protocol {
            ip_proto::TCP => ipv4_tcp_syn(src, dst, self.source_port, self.destination_port),
            ip_proto::UDP => ipv4_udp(src, dst, self.source_port, self.destination_port, b"probe"),
            _ => ipv4_icmp_echo(src, dst, self.source_port, 1),
        }
    }

    fn ports(&self) -> (Option<u16>, Option<u16>) {
        match self.protocol {
            ip_proto::TCP | ip_proto::UDP => (Some(self.source_port), Some(self.destination_port)),
            _ => (None, None),
        }
    }

    /// Whether the captured packet is this probe arriving.
    fn is(&self, seen: &FiveTuple) -> bool {
        let (sport, dport) = self.ports();
        // Echo requests carry the probe's identifier where TCP and UDP carry its source port.
        let echo_id = (self.protocol == ip_proto::ICMP).then_some(self.source_port);
        seen.protocol == self.protocol
            && seen.src == IpAddr::V4(HOSTS[self.from].address)
            && seen.dst == IpAddr::V4(HOSTS[self.to].address)
            && seen.src_port == sport
            && seen.dst_port == dport
            && seen.echo_request_id == echo_id
    }
}

/// The reference verdict: allowed at the sender's NIC outbound and the receiver's NIC inbound.
fn reference_allows(env: &Value, probe: &Probe) -> bool {
    let catalog = Catalog::new();
    let mut environment = Environment::new();
    environment
        .add_value("random", env.clone())
        .expect("generated environments load");
    let model = nsg_model::validate(&environment, &catalog)
        .unwrap_or_else(|errors| panic!("generated environment is invalid: {errors:?}"));
    let settings = Settings::default();
    let mut resolver = Resolver::new(&model, &catalog, settings);
    let (sport, dport) = probe.ports();
    let source = Endpoint {
        ip: IpAddr::V4(HOSTS[probe.from].address),
        port: sport,
    };
    let destination = Endpoint {
        ip: IpAddr::V4(HOSTS[probe.to].address),
        port: dport,
    };
    let mut verdict = |host: &Host, direction: Direction| {
        let Some((nic, _)) = host.nic else {
            return true;
        };
        let nic = model
            .network_interfaces
            .iter()
            .find(|n| n.name() == nic)
            .expect("generated NIC");
        let policy = resolver.resolve(nic).expect("generated NICs resolve");
        let (local, remote) = match direction {
            Direction::Outbound => (source, destination),
            Direction::Inbound => (destination, source),
        };
        let flow = Flow {
            direction,
            protocol: probe.protocol,
            local,
            remote,
        };
        decide(&policy, &resolver.sets, &settings, &flow).access == nsg_model::rule::Access::Allow
    };
    verdict(&HOSTS[probe.from], Direction::Outbound)
        && verdict(&HOSTS[probe.to], Direction::Inbound)
}

#[test]
fn the_kernel_agrees_with_the_reference_on_random_policies_and_packets() {
    the_kernel_agrees_with_the_reference(false);
}

/// The same with the VMs on ports of one Linux bridge (and the other hosts routed).
#[test]
fn the_kernel_agrees_with_the_reference_for_bridged_guests() {
    the_kernel_agrees_with_the_reference(true);
}

fn the_kernel_agrees_with_the_reference(bridged: bool) {
    let lab = Lab::new().expect("kernel tests need root and iproute2 (run the tests as root)");
    let router = lab.router("host").expect("router");
    let bridge = bridged.then(|| {
        lab.bridge(&router, "br0", &["10.0.0.1/16"])
            .expect("bridge")
    });
    let namespaces: Vec<Netns> = HOSTS
        .iter()
        .map(|host| {
            let ns = lab.namespace(host.name).expect("namespace");
            let (router_side, guest_side) = (
                RouterSide::new(host.name),
                GuestSide::new("eth0", [IpAddr::V4(host.address)]),
            );
            match &bridge {
                Some(bridge) if host.nic.is_some() => {
                    lab.attach_to_bridge(bridge, &ns, &router_side, &guest_side)
                }
                _ => lab.attach(&router, &ns, &router_side, &guest_side),
            }
            .expect("veth");
            ns
        })
        .collect();
    let senders: Vec<RawSender> = namespaces
        .iter()
        .map(|ns| RawSender::open(ns).expect("raw socket"))
        .collect();
    let captures: Vec<Capture> = namespaces
        .iter()
        .map(|ns| Capture::open(ns, "eth0").expect("capture"))
        .collect();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("env.json");

    let mut rng = SplitMix64::new(0x6e73_6720_6b65_726e);
    let mut compared = 0;
    let mut allowed = 0;
    // Azure DNS probes from VMs: [denied, allowed].
    let mut platform = [0; 2];
    for round in 0..POLICIES {
        // The last round's NSGs are long enough to be cut into blocks.
        let env = random_environment(&mut rng, round == POLICIES - 1);
        std::fs::write(&path, serde_json::to_vec(&env).expect("serialise")).expect("write env");
        let mut args = vec!["enforce".to_string(), path.display().to_string()];
        for host in &HOSTS {
            if let Some((nic, _)) = host.nic {
                args.extend(["--bind".to_string(), format!("{nic}={}", host.name)]);
            }
        }
        let output = router
            .exec(env!("CARGO_BIN_EXE_opennsg"), &args)
            .expect("opennsg runs");
        assert!(
            output.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let probes: Vec<Probe> = (0..FLOWS_PER_POLICY)
            .map(|i| {
                let from = rng.below(HOSTS.len() as u64) as usize;
                let mut to = rng.below(HOSTS.len() as u64 - 1) as usize;
                if to >= from {
                    to += 1;
                }
                // Unique source ports keep every probe a new connection for conntrack.
                let source_port = 20000 + (round as u16) * 1000 + i as u16;
                if i % 6 == 0 {
                    // Azure DNS from a VM: platform traffic, denied only by rules naming its tag.
                    return Probe {
                        from: rng.below(3) as usize,
                        to: VIP,
                        protocol: *rng.pick(&[ip_proto::TCP, ip_proto::UDP]),
                        source_port,
                        destination_port: 53,
                    };
                }
                let protocol = *rng.pick(&[ip_proto::TCP, ip_proto::UDP, ip_proto::ICMP]);
                Probe {
                    from,
                    to,
                    protocol,
                    source_port,
                    destination_port: *rng.pick(&[22, 53, 80, 443, 1500, 5000]),
                }
            })
            .collect();
        for capture in &captures {
            capture
                .drain(Duration::from_millis(1))
                .expect("drain stale packets");
        }
        for probe in &probes {
            senders[probe.from]
                .send(&probe.packet())
                .expect("send probe");
        }
        let mut arrived = Vec::new();
        for (index, capture) in captures.iter().enumerate() {
            let packets = capture.drain(Duration::from_millis(300)).expect("capture");
            arrived.extend(
                packets
                    .iter()
                    .filter_map(|p| FiveTuple::parse(p))
                    .map(|t| (index, t)),
            );
        }
        for probe in &probes {
            let kernel = arrived
                .iter()
                .any(|(at, seen)| *at == probe.to && probe.is(seen));
            let reference = reference_allows(&env, probe);
            assert_eq!(
                kernel, reference,
                "round {round}: {probe:?} from {} to {}: kernel {} but reference {}; environment:\n{}",
                HOSTS[probe.from].name,
                HOSTS[probe.to].name,
                if kernel { "delivered" } else { "dropped" },
                if reference { "allows" } else { "denies" },
                serde_json::to_string_pretty(&env).unwrap_or_default()
            );
            allowed += usize::from(reference);
            compared += 1;
            if probe.to == VIP && probe.destination_port == 53 && HOSTS[probe.from].nic.is_some() {
                platform[usize::from(reference)] += 1;
            }
        }
    }
    assert_eq!(compared, POLICIES as usize * FLOWS_PER_POLICY);
    // Both verdicts must be well represented, or the comparison says little.
    assert!(
        allowed > compared / 5 && allowed < compared * 4 / 5,
        "{allowed} of {compared} allowed"
    );
}
