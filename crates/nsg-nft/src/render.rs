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

mod blocks;
mod bridge;
pub mod flow_logging;
mod guards;
mod statements;

use blocks::{content_defined_blocks, rule_hash, UNCUT_STAGE_MAX};
use guards::*;
use statements::*;

use crate::ruleset::{AddressFamily, AddressSet, ChainSpec, RuleSpec, Ruleset, Table};
use flow_logging::{FlowLogging, LoggedRule, RuleIds};
use ipnet::IpNet;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::stmt::{JumpTarget, Statement};
use nftables::types::NfHook;
use nsg_model::rule::{Access, Direction};
use nsg_policy::evaluate::PlatformRule;
use nsg_policy::resolve::{
    Level, NicPolicy, PlatformService, ResolvedRule, SetArena, SetId, SideMatch, Stage,
};
use nsg_policy::settings::Settings;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

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

    /// The direction of the stages in this slot (guards and the SMTP block count as outbound).
    fn direction(self) -> Direction {
        match self {
            Slot::In(_) => Direction::Inbound,
            Slot::Guard | Slot::Out(_) | Slot::Smtp => Direction::Outbound,
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
    render_logged(nics, sets, settings, None)
}

/// Renders as [`render`] and, with `logging`, so that the kernel tells which rule decided each
/// flow: allow rules mark connections, deny rules log to nflog (see [`flow_logging`]); rules are
/// numbered in `logging`'s [`RuleIds`], which the caller keeps from one rendering to the next.
pub fn render_logged(
    nics: &[BoundNic<'_>],
    sets: &SetArena,
    settings: &Settings,
    logging: Option<(FlowLogging, &mut RuleIds)>,
) -> Rendered {
    let mut renderer = Renderer {
        arena: sets,
        logging,
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
    /// With flow logging: how denied packets are logged, and the rule numbers.
    logging: Option<(FlowLogging, &'a mut RuleIds)>,
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
                        .flat_map(|r| self.security_rule(stage, Direction::Outbound, r))
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
            .flat_map(|r| self.security_rule(stage, slot.direction(), r))
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
    fn security_rule(
        &mut self,
        stage: &Stage,
        direction: Direction,
        resolved: &ResolvedRule,
    ) -> Vec<RuleSpec> {
        let comment = limit_comment(format!(
            "{}/{} {} {}",
            stage.nsg.name(),
            resolved.reference(),
            resolved.priority,
            resolved.access.as_str()
        ));
        // Each stage is a base chain of its own: an accept ends it and the next stage's base
        // chain runs; a drop is final.
        let (marks, verdict) = self.verdict(stage, direction, resolved);
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
                statements.extend(marks.clone());
                rules.push(rule(statements, verdict.clone(), comment.clone()));
            }
        }
        rules
    }

    /// How a rule ends: allow accepts, deny drops; with flow logging an allow first marks the
    /// connection with the rule's number and a deny goes to its number's logging chain.
    fn verdict(
        &mut self,
        stage: &Stage,
        direction: Direction,
        resolved: &ResolvedRule,
    ) -> (Vec<Statement<'static>>, Statement<'static>) {
        let plain = match resolved.access {
            Access::Allow => Statement::Accept(None),
            Access::Deny => Statement::Drop(None),
        };
        let Some((settings, ids)) = &mut self.logging else {
            return (Vec::new(), plain);
        };
        let logged = LoggedRule {
            nsg: stage.nsg.clone(),
            kind: resolved.kind,
            name: resolved.name.clone(),
            direction,
            access: resolved.access,
        };
        let Some(id) = ids.id(&logged) else {
            return (Vec::new(), plain);
        };
        match resolved.access {
            Access::Allow => (
                vec![flow_logging::mark_statement(direction, id)],
                Statement::Accept(None),
            ),
            Access::Deny => {
                let chain = flow_logging::deny_chain(id, settings);
                self.rendered
                    .ruleset
                    .chains
                    .insert(flow_logging::deny_chain_name(id), chain);
                (Vec::new(), flow_logging::to_deny_chain(id))
            }
        }
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
