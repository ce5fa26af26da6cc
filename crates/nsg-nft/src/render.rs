//! Rendering resolved NIC policies as the content of OpenNSG's table.
//!
//! Layout (docs/semantics.md, K1–K6):
//! - base chains `forward`, `input`, `output`: conntrack first (`established,related` accepted,
//!   `invalid` dropped), then per bound interface a jump to the NIC's outbound chain (traffic
//!   entering from it) and inbound chain (traffic leaving to it). A packet between two bound NICs
//!   meets the sender's outbound chain and then the receiver's inbound chain.
//! - `NIC-out`: DHCP, anti-spoofing, platform services, the stages (NIC NSG then subnet NSG), and
//!   the SMTP block. `NIC-in`: anti-spoofing, then subnet NSG then NIC NSG.
//! - one chain per stage, `NIC-DIR-LEVEL`, holding that NSG's rules in priority order: an allow
//!   `return`s to the next stage, a deny drops.
//! - every address side that is not `*` is a named interval set, named by its content and shared
//!   by every rule and NIC that uses it (invariant 3).

use crate::ruleset::{
    address_element, counter, AddressFamily, AddressSet, ChainSpec, RuleSpec, Ruleset,
};
use ipnet::IpNet;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, SetItem};
use nftables::stmt::{JumpTarget, Match, Operator, Statement};
use nftables::types::NfHook;
use nsg_model::rule::{Access, Ports, Protocol};
use nsg_policy::evaluate::PlatformRule;
use nsg_policy::resolve::{
    Level, NicPolicy, PlatformService, ResolvedRule, SetArena, SetId, SideMatch, Stage,
};
use nsg_policy::settings::Settings;
use nsg_tags::context;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// A NIC and the local interface that carries its traffic.
#[derive(Clone, Copy, Debug)]
pub struct BoundNic<'a> {
    pub policy: &'a NicPolicy,
    pub interface: &'a str,
}

/// The table content and what a change to it must do beyond the table.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub ruleset: Ruleset,
    /// Stage chains of NSGs with `flushConnection`: when one changes, the connections of these
    /// addresses are forgotten so that their next packets meet the new rules.
    pub flush_on_change: BTreeMap<String, Vec<IpNet>>,
}

impl Rendered {
    /// The addresses whose connections to forget when `changed` chains are rewritten.
    pub fn addresses_to_flush<'a>(
        &self,
        changed: impl IntoIterator<Item = &'a String>,
    ) -> Vec<IpNet> {
        let mut addresses: Vec<IpNet> = changed
            .into_iter()
            .filter_map(|chain| self.flush_on_change.get(chain))
            .flatten()
            .copied()
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }
}

/// Stages with more rules than this are cut into blocks (see `insert_stage_chain`).
const UNCUT_STAGE_MAX: usize = 64;
/// At most this many blocks per stage: each is one level of jump nesting, and the kernel
/// allows 16 levels in all (the base, NIC and platform chains take three).
const BLOCKS_MAX: usize = 10;

/// Cuts `rules` into at most [`BLOCKS_MAX`] blocks at content-defined points.
fn content_defined_blocks(rules: Vec<RuleSpec>) -> Vec<Vec<RuleSpec>> {
    let hashes: Vec<u64> = rules.iter().map(rule_hash).collect();
    let (_, ends) = block_ends(&hashes);
    let mut rules = rules.into_iter();
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let block = rules.by_ref().take(end - start).collect();
            start = end;
            block
        })
        .collect()
}

/// Where blocks end, and their average length: a block ends after a rule whose hash has its
/// low bits clear, so about every `average` rules (at least a quarter, at most twice that).
/// `average` is the smallest power of two that keeps within [`BLOCKS_MAX`] blocks.
fn block_ends(hashes: &[u64]) -> (usize, Vec<usize>) {
    let mut average = (hashes.len() / BLOCKS_MAX).next_power_of_two().max(16);
    loop {
        let mask = average as u64 - 1;
        let mut ends = Vec::new();
        let mut start = 0;
        for (i, hash) in hashes.iter().enumerate() {
            let length = i + 1 - start;
            if (hash & mask == 0 && length >= average / 4) || length >= average * 2 {
                ends.push(i + 1);
                start = i + 1;
            }
        }
        if start < hashes.len() {
            ends.push(hashes.len());
        }
        if ends.len() <= BLOCKS_MAX {
            return (average, ends);
        }
        average *= 2;
    }
}

/// A stable hash of a rule's content.
fn rule_hash(rule: &RuleSpec) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    serde_json::to_string(&rule.statements)
        .expect("statements serialise")
        .hash(&mut hasher);
    rule.comment.hash(&mut hasher);
    hasher.finish()
}

/// `nft` limits comments to 128 bytes.
const COMMENT_LIMIT: usize = 128;

const PLATFORM_SERVICES: [PlatformService; 3] = [
    PlatformService::Dns,
    PlatformService::Imds,
    PlatformService::Lkm,
];

/// Renders the policies of `nics` into one table.
pub fn render(nics: &[BoundNic<'_>], sets: &SetArena, settings: &Settings) -> Rendered {
    let mut renderer = Renderer {
        arena: sets,
        rendered: Rendered::default(),
        set_names: HashMap::new(),
        nic_chain_names: Vec::new(),
        nic_families: Vec::new(),
    };
    let labels = chain_labels(nics);
    let mut forward = base_chain();
    let mut input = base_chain();
    let mut output = base_chain();
    for rules in [&mut input.rules, &mut output.rules] {
        rules.push(neighbour_discovery());
    }
    for (nic, label) in nics.iter().zip(&labels) {
        let outbound = format!("{label}-out");
        let inbound = format!("{label}-in");
        let enter = interface_jump(MetaKey::Iifname, nic.interface, &outbound);
        let leave = interface_jump(MetaKey::Oifname, nic.interface, &inbound);
        forward.rules.push(enter.clone());
        input.rules.push(enter);
        output.rules.push(leave);
        renderer.nic_chains(nic.policy, label, settings);
    }
    // Inbound jumps follow every outbound jump: a packet between two NICs leaves one first.
    for (nic, label) in nics.iter().zip(&labels) {
        let leave = interface_jump(MetaKey::Oifname, nic.interface, &format!("{label}-in"));
        forward.rules.push(leave);
    }
    let chains = &mut renderer.rendered.ruleset.chains;
    chains.insert(
        "forward".into(),
        ChainSpec {
            hook: Some(NfHook::Forward),
            ..forward
        },
    );
    chains.insert(
        "input".into(),
        ChainSpec {
            hook: Some(NfHook::Input),
            ..input
        },
    );
    chains.insert(
        "output".into(),
        ChainSpec {
            hook: Some(NfHook::Output),
            ..output
        },
    );
    renderer.rendered
}

struct Renderer<'a> {
    arena: &'a SetArena,
    rendered: Rendered,
    /// The named set of each interned set and family used so far.
    set_names: HashMap<(SetId, AddressFamily), String>,
    /// The chains made for the NIC being rendered.
    nic_chain_names: Vec<String>,
    /// The address families the NIC being rendered has addresses in.
    nic_families: Vec<AddressFamily>,
}

impl Renderer<'_> {
    /// Makes the chains of one NIC. With `flushConnection` on any of its NSGs, a change to any
    /// of them forgets the NIC's connections (D4: the verdict is the AND of the stages).
    fn nic_chains(&mut self, policy: &NicPolicy, label: &str, settings: &Settings) {
        self.nic_chain_names.clear();
        self.nic_families = [AddressFamily::V4, AddressFamily::V6]
            .into_iter()
            .filter(|family| {
                policy.addresses.iter().any(|net| match family {
                    AddressFamily::V4 => net.addr().is_ipv4(),
                    AddressFamily::V6 => net.addr().is_ipv6(),
                })
            })
            .collect();
        let mut outbound = vec![dhcp()];
        outbound.extend(anti_spoofing(policy, "saddr"));
        for service in PLATFORM_SERVICES {
            let named = policy
                .outbound
                .iter()
                .any(|stage| stage.rules.iter().any(|r| considered_for(r, Some(service))));
            let verdict = if named {
                let chain = format!("{label}-out-{}", service_label(service));
                self.stage_chains(&policy.outbound, &chain, Some(service));
                Statement::Goto(JumpTarget {
                    target: chain.into(),
                })
            } else {
                Statement::Return(None)
            };
            let comment = PlatformRule::AllowPlatform(service).reference();
            for statements in platform_matches(service) {
                outbound.push(rule(statements, verdict.clone(), comment.to_string()));
            }
        }
        outbound.extend(self.stage_jumps(&policy.outbound, &format!("{label}-out")));
        if settings.subscription_type.blocks_smtp() {
            let mut families = self.families(policy.internet);
            families.retain(|f| self.nic_families.contains(f));
            for family in families {
                let statements = vec![
                    self.side_match(policy.internet, family, "daddr"),
                    port_match("tcp", "dport", &[(25, 25)]),
                ];
                let comment = PlatformRule::BlockOutboundSmtp.reference().to_string();
                outbound.push(rule(statements, Statement::Drop(None), comment));
            }
        }
        let mut inbound = anti_spoofing(policy, "daddr");
        inbound.extend(self.stage_jumps(&policy.inbound, &format!("{label}-in")));
        self.add_chain(format!("{label}-out"), outbound);
        self.add_chain(format!("{label}-in"), inbound);
        let flushes = policy
            .inbound
            .iter()
            .chain(&policy.outbound)
            .any(|stage| stage.flush_connection);
        if flushes {
            for name in &self.nic_chain_names {
                self.rendered
                    .flush_on_change
                    .insert(name.clone(), policy.addresses.clone());
            }
        }
    }

    fn add_chain(&mut self, name: String, rules: Vec<RuleSpec>) {
        self.nic_chain_names.push(name.clone());
        self.rendered
            .ruleset
            .chains
            .insert(name, ChainSpec { hook: None, rules });
    }

    /// Jumps from a NIC chain into one chain per stage, creating those chains.
    fn stage_jumps(&mut self, stages: &[Stage], prefix: &str) -> Vec<RuleSpec> {
        self.stage_chains(stages, prefix, None);
        stages
            .iter()
            .map(|stage| {
                rule(
                    Vec::new(),
                    jump(&format!("{prefix}-{}", level_label(stage.level))),
                    format!("{} NSG {}", stage.level.as_str(), stage.nsg.name()),
                )
            })
            .collect()
    }

    /// Creates `PREFIX-LEVEL` for each stage; with `platform`, a chain `PREFIX` that runs the
    /// stages' rules naming that service's tag (reference §3.8).
    fn stage_chains(&mut self, stages: &[Stage], prefix: &str, platform: Option<PlatformService>) {
        let mut jumps = Vec::new();
        for stage in stages {
            let name = format!("{prefix}-{}", level_label(stage.level));
            let mut rules = Vec::new();
            for resolved in stage.rules.iter().filter(|r| considered_for(r, platform)) {
                rules.extend(self.security_rule(stage, resolved));
            }
            jumps.push(rule(Vec::new(), jump(&name), None));
            self.insert_stage_chain(name, rules);
        }
        if platform.is_some() {
            self.add_chain(prefix.to_string(), jumps);
        }
    }

    /// Adds stage chain `name` holding `rules`.
    ///
    /// A long stage is cut into blocks, each ending with a jump to the next, so that changing
    /// one rule rewrites one block instead of the whole stage: the kernel's cost is per rule
    /// written. An allow `return`s through the nested jumps (each jump is its block's last
    /// rule), so it still leaves the whole stage. Cuts depend on the rules' content and later
    /// blocks are named after their first rule, so an insertion or deletion moves no other block.
    fn insert_stage_chain(&mut self, name: String, rules: Vec<RuleSpec>) {
        if rules.len() <= UNCUT_STAGE_MAX {
            self.add_chain(name, rules);
            return;
        }
        let blocks = content_defined_blocks(rules);
        let mut names = vec![name.clone()];
        for block in &blocks[1..] {
            let base = format!("{name}.{:08x}", rule_hash(&block[0]) as u32);
            let mut candidate = base.clone();
            let mut n = 1;
            while names.contains(&candidate) {
                n += 1;
                candidate = format!("{base}_{n}");
            }
            names.push(candidate);
        }
        for (i, mut block) in blocks.into_iter().enumerate() {
            if let Some(next) = names.get(i + 1) {
                block.push(rule(
                    Vec::new(),
                    jump(next),
                    "the stage goes on".to_string(),
                ));
            }
            self.add_chain(names[i].clone(), block);
        }
    }

    /// One security rule as nft rules: one per address family and per protocol its match needs.
    fn security_rule(&mut self, stage: &Stage, resolved: &ResolvedRule) -> Vec<RuleSpec> {
        let comment = limit_comment(format!(
            "{}/{} {} {}",
            stage.nsg.name(),
            resolved.reference(),
            resolved.priority,
            resolved.access.as_str()
        ));
        let verdict = match resolved.access {
            Access::Allow => Statement::Return(None),
            Access::Deny => Statement::Drop(None),
        };
        let sides = [(resolved.source, "saddr"), (resolved.destination, "daddr")];
        let families: Vec<Option<AddressFamily>> =
            if sides.iter().all(|(s, _)| *s == SideMatch::Any) {
                vec![None]
            } else {
                // A family the NIC has no address of cannot reach these rules: anti-spoofing
                // drops it first. Leaving it out spares the kernel its sets.
                self.nic_families
                    .clone()
                    .into_iter()
                    .filter(|&family| {
                        sides.iter().all(|(side, _)| match side {
                            SideMatch::Any => true,
                            SideMatch::Set(id) => self.families(*id).contains(&family),
                        })
                    })
                    .map(Some)
                    .collect()
            };
        let mut rules = Vec::new();
        for family in families {
            let mut addresses = Vec::new();
            if let Some(family) = family {
                for (side, field) in sides {
                    if let SideMatch::Set(id) = side {
                        addresses.push(self.side_match(id, family, field));
                    }
                }
            }
            for protocol in protocol_matches(resolved, family) {
                let mut statements = addresses.clone();
                statements.extend(protocol);
                rules.push(rule(statements, verdict.clone(), comment.clone()));
            }
        }
        rules
    }

    /// The families in which interned set `id` has addresses.
    fn families(&self, id: SetId) -> Vec<AddressFamily> {
        let prefixes = self.arena.get(id);
        let mut families = Vec::new();
        if prefixes.has_v4() {
            families.push(AddressFamily::V4);
        }
        if prefixes.has_v6() {
            families.push(AddressFamily::V6);
        }
        families
    }

    /// `ip saddr @NAME` and the like, for the named set of `id` in `family`, made on first use.
    fn side_match(&mut self, id: SetId, family: AddressFamily, field: &str) -> Statement<'static> {
        let name = match self.set_names.get(&(id, family)) {
            Some(name) => name.clone(),
            None => {
                let prefixes = self.arena.get(id);
                let ranges: Vec<(u128, u128)> = match family {
                    AddressFamily::V4 => prefixes
                        .v4_ranges()
                        .iter()
                        .map(|&(low, high)| (u128::from(low), u128::from(high)))
                        .collect(),
                    AddressFamily::V6 => prefixes.v6_ranges().to_vec(),
                };
                let name = self
                    .add_set(family, ranges)
                    .expect("callers ask only for families the set has");
                self.set_names.insert((id, family), name.clone());
                name
            }
        };
        equals(
            payload(family.payload_protocol(), field),
            Expression::String(format!("@{name}").into()),
        )
    }

    fn add_set(&mut self, family: AddressFamily, ranges: Vec<(u128, u128)>) -> Option<String> {
        if ranges.is_empty() {
            return None;
        }
        let set = AddressSet { family, ranges };
        let prefix = match family {
            AddressFamily::V4 => "v4",
            AddressFamily::V6 => "v6",
        };
        let mut hasher = rustc_hash::FxHasher::default();
        set.hash(&mut hasher);
        let mut name = format!("{prefix}-{:016x}", hasher.finish());
        let sets = &mut self.rendered.ruleset.sets;
        // Names are content; a hash collision between different contents gets a suffix.
        let mut suffix = 1;
        while sets.get(&name).is_some_and(|existing| existing != &set) {
            suffix += 1;
            name = format!("{prefix}-{:016x}-{suffix}", hasher.finish());
        }
        sets.insert(name.clone(), set);
        Some(name)
    }
}

/// Whether `rule` takes part in a stage evaluated for `platform` traffic (or ordinary traffic).
fn considered_for(rule: &ResolvedRule, platform: Option<PlatformService>) -> bool {
    rule.applies && (platform.is_none() || rule.platform_tag == platform)
}

/// Short chain labels from NIC names, made unique in order.
fn chain_labels(nics: &[BoundNic<'_>]) -> Vec<String> {
    let mut used = HashSet::new();
    nics.iter()
        .map(|nic| {
            let base: String = nic
                .policy
                .nic
                .name()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect();
            let mut label = base.clone();
            let mut n = 1;
            while !used.insert(label.to_ascii_lowercase()) {
                n += 1;
                label = format!("{base}_{n}");
            }
            label
        })
        .collect()
}

fn level_label(level: Level) -> &'static str {
    match level {
        Level::Subnet => "subnet",
        Level::NetworkInterface => "nic",
    }
}

fn service_label(service: PlatformService) -> &'static str {
    match service {
        PlatformService::Dns => "dns",
        PlatformService::Imds => "imds",
        PlatformService::Lkm => "lkm",
    }
}

fn base_chain() -> ChainSpec {
    ChainSpec {
        hook: None,
        rules: vec![
            rule(
                vec![ct_state(&["established", "related"])],
                Statement::Accept(None),
                "flow records: return traffic and existing connections".to_string(),
            ),
            rule(vec![ct_state(&["invalid"])], Statement::Drop(None), None),
        ],
    }
}

fn ct_state(states: &[&str]) -> Statement<'static> {
    let left = Expression::Named(NamedExpression::CT(nftables::expr::CT {
        key: "state".into(),
        family: None,
        dir: None,
    }));
    let right = match states {
        [one] => Expression::String(one.to_string().into()),
        many => Expression::List(
            many.iter()
                .map(|s| Expression::String(s.to_string().into()))
                .collect(),
        ),
    };
    Statement::Match(Match {
        left,
        right,
        op: Operator::IN,
    })
}

/// IPv6 neighbour and router discovery between a VM and its host is link plumbing, like ARP,
/// which NSGs do not filter either.
fn neighbour_discovery() -> RuleSpec {
    let types = [
        "nd-router-solicit",
        "nd-router-advert",
        "nd-neighbor-solicit",
        "nd-neighbor-advert",
    ];
    rule(
        vec![equals(
            payload("icmpv6", "type"),
            anonymous_set(
                types
                    .iter()
                    .map(|t| Expression::String(t.to_string().into()))
                    .collect(),
            ),
        )],
        Statement::Accept(None),
        "IPv6 neighbour discovery".to_string(),
    )
}

fn interface_jump(key: MetaKey, interface: &str, chain: &str) -> RuleSpec {
    rule(
        vec![equals(
            Expression::Named(NamedExpression::Meta(Meta { key })),
            Expression::String(interface.to_string().into()),
        )],
        jump(chain),
        None,
    )
}

/// DHCP with the host: always allowed, no rule can deny it (reference §3.8).
fn dhcp() -> RuleSpec {
    let servers = [
        IpAddr::V4(context::HOST_VIP),
        IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
    ];
    rule(
        vec![
            port_match("udp", "dport", &[(67, 67)]),
            equals(payload("ip", "daddr"), addresses(&hosts(&servers))),
        ],
        Statement::Return(None),
        PlatformRule::AllowDhcp.reference().to_string(),
    )
}

/// Packets whose NIC-side address is not the NIC's are dropped, as Azure does for NICs without IP
/// forwarding.
fn anti_spoofing(policy: &NicPolicy, field: &str) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for family in [AddressFamily::V4, AddressFamily::V6] {
        let own: Vec<IpNet> = policy
            .addresses
            .iter()
            .filter(|net| {
                matches!(
                    (net, family),
                    (IpNet::V4(_), AddressFamily::V4) | (IpNet::V6(_), AddressFamily::V6)
                )
            })
            .copied()
            .collect();
        let statement = if own.is_empty() {
            equals(
                Expression::Named(NamedExpression::Meta(Meta {
                    key: MetaKey::Nfproto,
                })),
                Expression::String(match family {
                    AddressFamily::V4 => "ipv4".into(),
                    AddressFamily::V6 => "ipv6".into(),
                }),
            )
        } else {
            Statement::Match(Match {
                left: payload(family.payload_protocol(), field),
                right: addresses(&own),
                op: Operator::NEQ,
            })
        };
        rules.push(rule(
            vec![statement],
            Statement::Drop(None),
            "address is not the NIC's".to_string(),
        ));
    }
    rules
}

/// The matches that recognise traffic to a platform service (reference §3.8).
fn platform_matches(service: PlatformService) -> Vec<Vec<Statement<'static>>> {
    let to = |servers: &[std::net::Ipv4Addr]| {
        let servers: Vec<IpAddr> = servers.iter().copied().map(IpAddr::V4).collect();
        equals(payload("ip", "daddr"), addresses(&hosts(&servers)))
    };
    match service {
        PlatformService::Dns => ["tcp", "udp"]
            .iter()
            .map(|p| {
                vec![
                    to(&[context::HOST_VIP]),
                    port_match(p, "dport", &[(53, 53)]),
                ]
            })
            .collect(),
        PlatformService::Imds => vec![vec![
            to(&[context::IMDS]),
            port_match("tcp", "dport", &[(80, 80)]),
        ]],
        PlatformService::Lkm => vec![vec![
            to(&context::KMS_ADDRESSES),
            port_match("tcp", "dport", &[(1688, 1688)]),
        ]],
    }
}

/// The protocol and port matches of a rule, one list per nft rule it needs.
fn protocol_matches(
    rule: &ResolvedRule,
    family: Option<AddressFamily>,
) -> Vec<Vec<Statement<'static>>> {
    let ports = |protocol: &str| {
        let mut statements = Vec::new();
        for (ports, field) in [
            (&rule.source_ports, "sport"),
            (&rule.destination_ports, "dport"),
        ] {
            if !ports.is_full() {
                statements.push(port_match(protocol, field, &port_ranges(ports)));
            }
        }
        if statements.is_empty() {
            statements.push(l4proto(protocol));
        }
        statements
    };
    let with_ports = rule.protocol == Protocol::Any
        && !(rule.source_ports.is_full() && rule.destination_ports.is_full());
    match rule.protocol {
        // `*` with ports matches only TCP and UDP; `*` with all ports matches everything.
        Protocol::Any if with_ports => vec![ports("tcp"), ports("udp")],
        Protocol::Any => vec![Vec::new()],
        Protocol::Tcp => vec![ports("tcp")],
        Protocol::Udp => vec![ports("udp")],
        Protocol::Icmp => {
            let mut variants = Vec::new();
            if family != Some(AddressFamily::V6) {
                variants.push(vec![l4proto("icmp")]);
            }
            if family != Some(AddressFamily::V4) {
                variants.push(vec![l4proto("ipv6-icmp")]);
            }
            variants
        }
        Protocol::Esp => vec![vec![l4proto("esp")]],
        Protocol::Ah => vec![vec![l4proto("ah")]],
    }
}

/// A rule's port ranges, sorted and merged: nft refuses overlapping intervals.
fn port_ranges(ports: &Ports) -> Vec<(u16, u16)> {
    let Ports::Ranges { ranges, .. } = ports else {
        return vec![(0, u16::MAX)];
    };
    let wide: Vec<(u128, u128)> = ranges
        .iter()
        .map(|r| (u128::from(r.low), u128::from(r.high)))
        .collect();
    crate::ruleset::merge_ranges(wide)
        .into_iter()
        .map(|(low, high)| (low as u16, high as u16))
        .collect()
}

fn port_match(protocol: &str, field: &str, ranges: &[(u16, u16)]) -> Statement<'static> {
    let item = |&(low, high): &(u16, u16)| {
        if low == high {
            Expression::Number(u32::from(low))
        } else {
            Expression::Range(Box::new(nftables::expr::Range {
                range: [
                    Expression::Number(u32::from(low)),
                    Expression::Number(u32::from(high)),
                ],
            }))
        }
    };
    let right = match ranges {
        [one] => item(one),
        many => anonymous_set(many.iter().map(item).collect()),
    };
    equals(payload(protocol, field), right)
}

fn l4proto(protocol: &str) -> Statement<'static> {
    equals(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Expression::String(protocol.to_string().into()),
    )
}

/// Addresses or prefixes of one family as `nft` lists them: one literal, or an anonymous set,
/// sorted and merged.
fn addresses(nets: &[IpNet]) -> Expression<'static> {
    let family = match nets.first() {
        Some(IpNet::V6(_)) => AddressFamily::V6,
        _ => AddressFamily::V4,
    };
    let ranges = crate::ruleset::merge_ranges(
        nets.iter()
            .map(|net| match net {
                IpNet::V4(v4) => (
                    u128::from(u32::from(v4.network())),
                    u128::from(u32::from(v4.broadcast())),
                ),
                IpNet::V6(v6) => (u128::from(v6.network()), u128::from(v6.broadcast())),
            })
            .collect(),
    );
    let element = |&(low, high): &(u128, u128)| address_element(family, low, high);
    match ranges.as_slice() {
        [one] => element(one),
        many => anonymous_set(many.iter().map(element).collect()),
    }
}

/// Single addresses as host prefixes, for [`addresses`].
fn hosts(list: &[IpAddr]) -> Vec<IpNet> {
    list.iter().map(|&ip| IpNet::from(ip)).collect()
}

fn anonymous_set(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.into_iter().map(SetItem::Element).collect(),
    ))
}

fn payload(protocol: &str, field: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.to_string().into(),
            field: field.to_string().into(),
        },
    )))
}

fn equals(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// A rule with its matches, a counter (every rule counts), a verdict and maybe a comment.
fn rule(
    mut statements: Vec<Statement<'static>>,
    verdict: Statement<'static>,
    comment: impl Into<Option<String>>,
) -> RuleSpec {
    statements.push(counter());
    statements.push(verdict);
    RuleSpec {
        statements,
        comment: comment.into().map(limit_comment),
    }
}

fn jump(target: &str) -> Statement<'static> {
    Statement::Jump(JumpTarget {
        target: target.to_string().into(),
    })
}

fn limit_comment(mut comment: String) -> String {
    if comment.len() > COMMENT_LIMIT {
        let mut end = COMMENT_LIMIT;
        while !comment.is_char_boundary(end) {
            end -= 1;
        }
        comment.truncate(end);
    }
    comment
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn numbered_rule(n: u32) -> RuleSpec {
        rule(
            vec![port_match("tcp", "dport", &[(n as u16, n as u16)])],
            Statement::Drop(None),
            format!("rule {n}"),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Blocks keep every rule in order and stay within the kernel's nesting budget; while
        /// the average block length stays, an inserted rule changes only the blocks around it.
        #[test]
        fn blocks_are_few_complete_and_local(count in 65usize..3000, at in any::<prop::sample::Index>()) {
            let rules: Vec<RuleSpec> = (0..count as u32).map(numbered_rule).collect();
            let blocks = content_defined_blocks(rules.clone());
            prop_assert!(blocks.len() <= BLOCKS_MAX);
            prop_assert_eq!(blocks.concat(), rules.clone());

            let mut inserted = rules.clone();
            inserted.insert(at.index(count), numbered_rule(1_000_000));
            let hashes = |rules: &[RuleSpec]| rules.iter().map(rule_hash).collect::<Vec<_>>();
            let (average_before, _) = block_ends(&hashes(&rules));
            let (average_after, _) = block_ends(&hashes(&inserted));
            let after = content_defined_blocks(inserted);
            let changed = after.iter().filter(|b| !blocks.contains(b)).count();
            if average_before == average_after {
                prop_assert!(changed <= 3, "{} of {} blocks changed", changed, after.len());
            }
        }
    }
}
