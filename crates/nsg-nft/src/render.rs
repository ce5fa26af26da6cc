//! Rendering resolved NIC policies as the content of OpenNSG's table.
//!
//! Layout (docs/semantics.md, K1–K7). The evaluation of a packet is spread over several base
//! chains on one hook, run in priority order: an `accept` ends only the base chain it is in,
//! while a `drop` is final. So each *stage* (one NSG's rules of one direction at one NIC) gets
//! a base chain of its own, in which an allow is `accept` and a deny `drop`:
//!
//! | priority | base chain (`forward`; `input`/`output` take their half) | per bound NIC |
//! |---|---|---|
//! | -5 | `forward`: guards, then conntrack | `NIC-out`: DHCP, anti-spoofing, `invalid`, foreign ICMP errors; `NIC-in`: the same but DHCP |
//! | -4, -3 | `forward-out-1`, `forward-out-2` | `NIC-out-nic`, `NIC-out-subnet`: the outbound stages in Azure's order |
//! | -2 | `forward-smtp` | `NIC-out-smtp`: the outbound TCP 25 block |
//! | -1, 0 | `forward-in-1`, `forward-in-2` | `NIC-in-subnet`, `NIC-in-nic`: the inbound stages |
//!
//! The guards run before any flow record is trusted, since conntrack matches 5-tuples, not
//! interfaces (K4); every other base chain first accepts `established,related`. A packet between two
//! bound NICs meets the sender's outbound stages, then the receiver's inbound stages. Traffic to
//! a platform service meets, per stage, only the rules naming its tag; DHCP meets no stage.
//! A long stage is split into blocks the stage chain jumps to in turn, so that a one-rule change
//! rewrites one block. Every address side that is not `*` is a named interval set, named by its
//! content and shared by every rule and NIC that uses it (invariant 3).

mod bridge;

use crate::ruleset::{
    address_element, counter, AddressFamily, AddressSet, ChainSpec, RuleSpec, Ruleset, Table,
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
    /// The bridge `interface` is a port of, if it is one (K9).
    pub bridge: Option<&'a str>,
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

/// Stages with more rules than this are cut into blocks (see `Renderer::stage_chain`).
const UNCUT_STAGE_MAX: usize = 64;
/// Blocks are about this long: a one-rule change rewrites about this many rules.
const BLOCK_AVERAGE: usize = 16;

/// Cuts `rules` into blocks at content-defined points.
fn content_defined_blocks(rules: Vec<RuleSpec>) -> Vec<Vec<RuleSpec>> {
    let hashes: Vec<u64> = rules.iter().map(rule_hash).collect();
    let mut rules = rules.into_iter();
    let mut start = 0;
    block_ends(&hashes)
        .into_iter()
        .map(|end| {
            let block = rules.by_ref().take(end - start).collect();
            start = end;
            block
        })
        .collect()
}

/// Where blocks end: after a rule whose hash has its bits under [`BLOCK_AVERAGE`] clear, once
/// the block has a quarter of the average; at four times the average at the latest (rarely:
/// such forced cuts are not content-defined, so a run of them moves with an insertion).
fn block_ends(hashes: &[u64]) -> Vec<usize> {
    let mask = BLOCK_AVERAGE as u64 - 1;
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, hash) in hashes.iter().enumerate() {
        let length = i + 1 - start;
        // The high half of the hash: FxHash mixes its low bits poorly.
        let cut = (hash >> 32) & mask == 0;
        if (cut && length >= BLOCK_AVERAGE / 4) || length >= BLOCK_AVERAGE * 4 {
            ends.push(i + 1);
            start = i + 1;
        }
    }
    if start < hashes.len() {
        ends.push(hashes.len());
    }
    ends
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

/// A base chain of the table: its hook, its priority and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Guard,
    Out(usize),
    Smtp,
    In(usize),
}

impl Slot {
    const ALL: [Slot; 6] = [
        Slot::Guard,
        Slot::Out(1),
        Slot::Out(2),
        Slot::Smtp,
        Slot::In(1),
        Slot::In(2),
    ];

    fn priority(self) -> i32 {
        match self {
            Slot::Guard => -5,
            Slot::Out(n) => -5 + n as i32,
            Slot::Smtp => -2,
            Slot::In(n) => -2 + n as i32,
        }
    }

    fn chain_name(self, hook: &str) -> String {
        match self {
            Slot::Guard => hook.to_string(),
            Slot::Out(n) => format!("{hook}-out-{n}"),
            Slot::Smtp => format!("{hook}-smtp"),
            Slot::In(n) => format!("{hook}-in-{n}"),
        }
    }
}

/// A jump from a base chain to a NIC's chain, for packets entering from (`Iifname`) or leaving
/// to (`Oifname`) the NIC's interface.
struct Dispatch {
    slot: Slot,
    key: MetaKey,
    interface: String,
    /// For a NIC on a bridge port, `interface` is the bridge, which `inet` hooks see for every
    /// port: the NIC's packets are those from (or to) its addresses. The bridge table's guards
    /// have made sure that only its port sends from them and receives for them (K9).
    addresses: Option<Vec<IpNet>>,
    chain: String,
}

impl Dispatch {
    fn rules(&self) -> Vec<RuleSpec> {
        let interface = equals(
            Expression::Named(NamedExpression::Meta(Meta { key: self.key })),
            Expression::String(self.interface.clone().into()),
        );
        let Some(nets) = &self.addresses else {
            return vec![rule(vec![interface], jump(&self.chain), None)];
        };
        let field = if self.key == MetaKey::Iifname {
            "saddr"
        } else {
            "daddr"
        };
        [AddressFamily::V4, AddressFamily::V6]
            .into_iter()
            .filter_map(|family| {
                let own = of_family(nets, family);
                (!own.is_empty()).then(|| {
                    let address =
                        equals(payload(family.payload_protocol(), field), addresses(&own));
                    rule(vec![interface.clone(), address], jump(&self.chain), None)
                })
            })
            .collect()
    }
}

/// Renders the policies of `nics` into one table.
pub fn render(nics: &[BoundNic<'_>], sets: &SetArena, settings: &Settings) -> Rendered {
    let mut renderer = Renderer {
        arena: sets,
        rendered: Rendered::default(),
        set_names: HashMap::new(),
        nic_chain_names: Vec::new(),
        nic_families: Vec::new(),
        dispatch: Vec::new(),
    };
    let labels = chain_labels(nics);
    for (nic, label) in nics.iter().zip(&labels) {
        renderer.nic_chains(nic, label, settings);
    }
    let ports: Vec<bridge::Port<'_>> = nics
        .iter()
        .zip(&labels)
        .filter(|(nic, _)| nic.bridge.is_some())
        .map(|(nic, label)| bridge::Port {
            policy: nic.policy,
            interface: nic.interface,
            label,
        })
        .collect();
    if !ports.is_empty() {
        renderer
            .rendered
            .ruleset
            .chains
            .extend(bridge::chains(&ports));
    }
    // Packets entering from a NIC's interface meet its outbound chains (forward, input);
    // packets leaving to it, its inbound chains (forward, output).
    let hooks = [
        (
            NfHook::Forward,
            "forward",
            [MetaKey::Iifname, MetaKey::Oifname].as_slice(),
        ),
        (NfHook::Input, "input", [MetaKey::Iifname].as_slice()),
        (NfHook::Output, "output", [MetaKey::Oifname].as_slice()),
    ];
    for (hook, hook_name, keys) in hooks {
        for slot in Slot::ALL {
            let jumps: Vec<RuleSpec> = renderer
                .dispatch
                .iter()
                .filter(|d| d.slot == slot && keys.contains(&d.key))
                .flat_map(Dispatch::rules)
                .collect();
            if jumps.is_empty() && slot != Slot::Guard {
                continue;
            }
            let mut rules = Vec::new();
            if hook != NfHook::Forward {
                rules.push(neighbour_discovery());
            }
            if slot == Slot::Guard {
                // Anti-spoofing holds for every packet: the guards run before any flow record
                // is trusted, since conntrack matches 5-tuples, not interfaces (K4).
                rules.extend(jumps);
                rules.push(established());
            } else {
                rules.push(established());
                rules.extend(jumps);
            }
            renderer.rendered.ruleset.chains.insert(
                slot.chain_name(hook_name),
                ChainSpec {
                    table: Table::Inet,
                    hook: Some((hook, slot.priority())),
                    rules,
                },
            );
        }
    }
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
    /// Jumps from base chains to NIC chains, in NIC order.
    dispatch: Vec<Dispatch>,
}

impl Renderer<'_> {
    /// Makes the chains of one NIC. With `flushConnection` on any of its NSGs, a change to any
    /// of them forgets the NIC's connections (D4: the verdict is the AND of the stages).
    fn nic_chains(&mut self, nic: &BoundNic<'_>, label: &str, settings: &Settings) {
        let policy = nic.policy;
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
        let mut guard_out = vec![dhcp()];
        guard_out.extend(guards(policy, "saddr"));
        self.add_nic_chain(
            nic,
            Slot::Guard,
            MetaKey::Iifname,
            format!("{label}-out"),
            guard_out,
        );
        let guard_in = guards(policy, "daddr");
        self.add_nic_chain(
            nic,
            Slot::Guard,
            MetaKey::Oifname,
            format!("{label}-in"),
            guard_in,
        );
        for (index, stage) in policy.outbound.iter().enumerate() {
            let name = format!("{label}-out-{}", level_label(stage.level));
            // DHCP and platform traffic are decided before (or instead of) the stage's rules.
            let mut entry = vec![dhcp()];
            for service in PLATFORM_SERVICES {
                let named: Vec<&ResolvedRule> = stage
                    .rules
                    .iter()
                    .filter(|r| considered_for(r, Some(service)))
                    .collect();
                let verdict = if named.is_empty() {
                    Statement::Return(None)
                } else {
                    let chain = format!("{name}-{}", service_label(service));
                    let rules = named
                        .iter()
                        .flat_map(|r| self.security_rule(stage, r))
                        .collect();
                    self.add_chain(chain.clone(), rules);
                    Statement::Goto(JumpTarget {
                        target: chain.into(),
                    })
                };
                let comment = PlatformRule::AllowPlatform(service).reference();
                for statements in platform_matches(service) {
                    entry.push(rule(statements, verdict.clone(), comment.to_string()));
                }
            }
            self.stage_chain(
                nic,
                Slot::Out(index + 1),
                MetaKey::Iifname,
                stage,
                name,
                entry,
            );
        }
        if settings.subscription_type.blocks_smtp() {
            let mut families = self.families(policy.internet);
            families.retain(|f| self.nic_families.contains(f));
            let mut smtp = Vec::new();
            for family in families {
                let statements = vec![
                    self.side_match(policy.internet, family, "daddr"),
                    port_match("tcp", "dport", &[(25, 25)]),
                ];
                let comment = PlatformRule::BlockOutboundSmtp.reference().to_string();
                smtp.push(rule(statements, Statement::Drop(None), comment));
            }
            self.add_nic_chain(
                nic,
                Slot::Smtp,
                MetaKey::Iifname,
                format!("{label}-out-smtp"),
                smtp,
            );
        }
        for (index, stage) in policy.inbound.iter().enumerate() {
            let name = format!("{label}-in-{}", level_label(stage.level));
            self.stage_chain(
                nic,
                Slot::In(index + 1),
                MetaKey::Oifname,
                stage,
                name,
                Vec::new(),
            );
        }
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

    /// Adds a NIC chain that base chain `slot` jumps to for the NIC's interface.
    fn add_nic_chain(
        &mut self,
        nic: &BoundNic<'_>,
        slot: Slot,
        key: MetaKey,
        name: String,
        rules: Vec<RuleSpec>,
    ) {
        self.dispatch.push(Dispatch {
            slot,
            key,
            interface: nic.bridge.unwrap_or(nic.interface).to_string(),
            addresses: nic.bridge.map(|_| nic.policy.addresses.clone()),
            chain: name.clone(),
        });
        self.add_chain(name, rules);
    }

    /// Adds stage chain `name`: `entry` rules, then the stage's rules in priority order (an
    /// allow accepts, which ends only this stage's base chain; a deny drops). A long stage's
    /// rules go into blocks the chain jumps to in turn; cuts depend on the rules' content and
    /// blocks are named after their first rule, so a change rewrites about one block.
    fn stage_chain(
        &mut self,
        nic: &BoundNic<'_>,
        slot: Slot,
        key: MetaKey,
        stage: &Stage,
        name: String,
        mut entry: Vec<RuleSpec>,
    ) {
        let rules: Vec<RuleSpec> = stage
            .rules
            .iter()
            .filter(|r| considered_for(r, None))
            .flat_map(|r| self.security_rule(stage, r))
            .collect();
        if rules.len() <= UNCUT_STAGE_MAX {
            entry.extend(rules);
        } else {
            let mut names: Vec<String> = Vec::new();
            for block in content_defined_blocks(rules) {
                let base = format!("{name}.{:08x}", rule_hash(&block[0]) as u32);
                let mut block_name = base.clone();
                let mut n = 1;
                while names.contains(&block_name) {
                    n += 1;
                    block_name = format!("{base}_{n}");
                }
                entry.push(rule(Vec::new(), jump(&block_name), None));
                self.add_chain(block_name.clone(), block);
                names.push(block_name);
            }
        }
        self.add_nic_chain(nic, slot, key, name, entry);
    }

    fn add_chain(&mut self, name: String, rules: Vec<RuleSpec>) {
        self.nic_chain_names.push(name.clone());
        self.rendered
            .ruleset
            .chains
            .insert(name, ChainSpec::regular(Table::Inet, rules));
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
        // Each stage is a base chain of its own: an accept ends it and the next stage's base
        // chain runs; a drop is final.
        let verdict = match resolved.access {
            Access::Allow => Statement::Accept(None),
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
                let label = self.arena.label(id).to_string();
                let name = self
                    .add_set(family, ranges, &label)
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

    /// Adds the set of `ranges`, named `v4-LABEL-HASH`: the hash of its content makes the name
    /// stable and shared, the label of its first use says what it is in `nft list ruleset`
    /// (nft 1.0.6 drops set comments given in JSON, so the name carries it).
    fn add_set(
        &mut self,
        family: AddressFamily,
        ranges: Vec<(u128, u128)>,
        label: &str,
    ) -> Option<String> {
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
        let prefix = format!("{prefix}-{}", set_name_label(label));
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

/// Flow records: return traffic and existing connections pass every base chain.
fn established() -> RuleSpec {
    rule(
        vec![ct_state(&["established", "related"])],
        Statement::Accept(None),
        "flow records: return traffic and existing connections".to_string(),
    )
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

/// The checks every packet from (`saddr`) or to (`daddr`) a NIC passes before its flow record or
/// any rule is considered (K4): anti-spoofing, conntrack's `invalid`, and ICMP errors that cite
/// a connection of someone else.
fn guards(policy: &NicPolicy, field: &str) -> Vec<RuleSpec> {
    let mut rules = anti_spoofing(policy, field);
    rules.push(rule(
        vec![ct_state(&["invalid"])],
        Statement::Drop(None),
        "conntrack: invalid".to_string(),
    ));
    if !policy.ip_forwarding {
        rules.extend(foreign_related(policy));
    }
    rules
}

/// Related packets (ICMP errors) from or to a NIC must be about a connection the NIC is an end
/// of: otherwise a guest could deliver crafted errors citing another guest's flow, past every
/// rule. A NIC with IP forwarding is a router, whose errors about transit flows are genuine.
fn foreign_related(policy: &NicPolicy) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for family in [AddressFamily::V4, AddressFamily::V6] {
        let own = own_addresses(policy, family);
        if own.is_empty() {
            continue;
        }
        // nft names the original direction's addresses `ct original ip saddr`: the family is
        // part of the key, not a field of its own.
        let not_own = |field: &str| {
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::CT(nftables::expr::CT {
                    key: format!("{} {field}", family.payload_protocol()).into(),
                    family: None,
                    dir: Some(nftables::expr::CTDir::Original),
                })),
                right: addresses(&own),
                op: Operator::NEQ,
            })
        };
        rules.push(rule(
            vec![ct_state(&["related"]), not_own("saddr"), not_own("daddr")],
            Statement::Drop(None),
            "related to a connection that is not the NIC's".to_string(),
        ));
    }
    rules
}

/// The NIC's addresses and prefixes of one family.
fn own_addresses(policy: &NicPolicy, family: AddressFamily) -> Vec<IpNet> {
    of_family(&policy.addresses, family)
}

fn of_family(nets: &[IpNet], family: AddressFamily) -> Vec<IpNet> {
    nets.iter()
        .filter(|net| {
            matches!(
                (net, family),
                (IpNet::V4(_), AddressFamily::V4) | (IpNet::V6(_), AddressFamily::V6)
            )
        })
        .copied()
        .collect()
}

/// Packets whose NIC-side address is not the NIC's are dropped, as Azure does for NICs without IP
/// forwarding; a NIC with IP forwarding may send and receive for any address of the families it
/// has.
fn anti_spoofing(policy: &NicPolicy, field: &str) -> Vec<RuleSpec> {
    let mut rules = Vec::new();
    for family in [AddressFamily::V4, AddressFamily::V6] {
        let own = own_addresses(policy, family);
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
        } else if policy.ip_forwarding {
            continue;
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

/// Longest label in a set name: names stay readable in listings.
const SET_LABEL_LIMIT: usize = 40;

/// `label` in the characters nft allows in a set name after its first (letters, digits and
/// `/-_.`), others as `-`, shortened to [`SET_LABEL_LIMIT`].
fn set_name_label(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(SET_LABEL_LIMIT)
        .collect()
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

        /// Blocks keep every rule in order, and an inserted rule changes only the blocks
        /// around it.
        #[test]
        fn blocks_are_complete_and_local(count in 65usize..3000, at in any::<prop::sample::Index>()) {
            let rules: Vec<RuleSpec> = (0..count as u32).map(numbered_rule).collect();
            let blocks = content_defined_blocks(rules.clone());
            prop_assert_eq!(blocks.concat(), rules.clone());
            prop_assert!(blocks.iter().all(|b| b.len() <= BLOCK_AVERAGE * 4));

            let mut inserted = rules.clone();
            inserted.insert(at.index(count), numbered_rule(1_000_000));
            let after = content_defined_blocks(inserted);
            let changed = after.iter().filter(|b| !blocks.contains(b)).count();
            prop_assert!(changed <= 4, "{} of {} blocks changed", changed, after.len());
        }
    }
}
