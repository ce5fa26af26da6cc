//! The compiled policy of one NIC: the reference semantics ([`crate::evaluate`]) answered by
//! [`Classifier`]s, one per direction, whose rules are the direction's stages concatenated
//! (subnet NSG then NIC NSG inbound, the reverse outbound). One lookup of the header's classes
//! serves every stage; each stage then asks for its first match within its own rule range.
//!
//! Platform traffic (DHCP, DNS, IMDS, licensing) meets only the rules naming its tag; it is rare,
//! so it takes the reference path, as do headers whose local address is not the NIC's.

use crate::classify::{Classes, Classifier, Domains, FieldRule, Header, ProtocolSet};
use crate::evaluate::{self, Decider, Decision, Flow, PlatformRule, RulePosition, StageVerdict};
use crate::resolve::{NicPolicy, ResolvedRule, SetArena, SideMatch, Stage};
use crate::settings::Settings;
use nsg_model::rule::{ip_proto, Access, Direction, Protocol};
use nsg_tags::PrefixSet;
use std::sync::{Arc, OnceLock};

/// What decided a flow, without allocation: the fast answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub access: Access,
    /// The deciding rule of each evaluated stage, as an index into that stage's rules.
    pub stage_rules: [Option<u16>; 2],
    /// A platform rule that decided, if any.
    pub platform: Option<PlatformRule>,
}

/// The compiled form of one direction.
#[derive(Clone, Debug)]
struct CompiledDirection {
    classifier: Classifier,
    /// `[start, end)` of each stage's rules in the classifier's rule order.
    stage_ranges: Vec<(usize, usize)>,
    /// Access of every rule, in classifier order.
    access: Vec<Access>,
}

/// A NIC's policy, compiled. Immutable; rebuild and swap on change.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    policy: NicPolicy,
    /// Shared by the NICs compiled from one resolver ([`CompiledPolicy::deferred`]).
    sets: std::sync::Arc<SetArena>,
    settings: Settings,
    /// Built by [`CompiledPolicy::build`]; by a deferred policy, on the first lookup.
    inbound: OnceLock<CompiledDirection>,
    outbound: OnceLock<CompiledDirection>,
}

/// The protocol numbers a rule's protocol matches.
pub fn protocol_set(protocol: Protocol) -> ProtocolSet {
    let none = ProtocolSet::default();
    match protocol {
        Protocol::Any => ProtocolSet::ALL,
        Protocol::Tcp => none.with(ip_proto::TCP),
        Protocol::Udp => none.with(ip_proto::UDP),
        Protocol::Icmp => none.with(ip_proto::ICMP).with(ip_proto::ICMPV6),
        Protocol::Esp => none.with(ip_proto::ESP),
        Protocol::Ah => none.with(ip_proto::AH),
    }
}

/// `rule` in the classifier's terms: what it matches, field by field.
pub fn field_rule<'a>(rule: &ResolvedRule, sets: &'a SetArena) -> FieldRule<'a> {
    let side = |s: SideMatch| match s {
        SideMatch::Any => None,
        SideMatch::Set(id) => Some(sets.get(id)),
    };
    FieldRule {
        source: side(rule.source),
        destination: side(rule.destination),
        source_ports: rule.source_ports.ranges(),
        destination_ports: rule.destination_ports.ranges(),
        protocols: protocol_set(rule.protocol),
        // The reference's rule for portless protocols (docs/semantics.md E3).
        matches_portless: rule.protocol != Protocol::Any
            || (rule.source_ports.is_full() && rule.destination_ports.is_full()),
        active: rule.applies,
    }
}

fn compile_direction(
    stages: &[Stage],
    sets: &SetArena,
    local: &PrefixSet,
    direction: Direction,
) -> CompiledDirection {
    let mut rules = Vec::new();
    let mut access = Vec::new();
    let mut stage_ranges = Vec::new();
    for stage in stages {
        let start = rules.len();
        for rule in &stage.rules {
            rules.push(field_rule(rule, sets));
            access.push(rule.access);
        }
        stage_ranges.push((start, rules.len()));
    }
    let domains = match direction {
        Direction::Inbound => Domains {
            source: None,
            destination: Some(local),
        },
        Direction::Outbound => Domains {
            source: Some(local),
            destination: None,
        },
    };
    CompiledDirection {
        classifier: Classifier::build(&rules, &domains),
        stage_ranges,
        access,
    }
}

impl CompiledPolicy {
    /// Compiles `policy`, whose sets live in `sets` (copied). Both directions are built now, so
    /// that no lookup ever pays for a build (a policy is built beside the one in force).
    pub fn build(policy: NicPolicy, sets: &SetArena, settings: Settings) -> CompiledPolicy {
        let compiled = Self::deferred(policy, Arc::new(sets.clone()), settings);
        for direction in [Direction::Inbound, Direction::Outbound] {
            compiled.compiled(direction);
        }
        compiled
    }

    /// `policy` on an arena shared with other NICs' policies, each direction compiled on its
    /// first lookup: compiling every NIC of a large model copies no sets, and an analysis that
    /// reads first matches off its own walk ([`CompiledPolicy::verdict_from_first_matches`])
    /// never builds a classifier it does not use.
    pub fn deferred(policy: NicPolicy, sets: Arc<SetArena>, settings: Settings) -> CompiledPolicy {
        CompiledPolicy {
            sets,
            policy,
            settings,
            inbound: OnceLock::new(),
            outbound: OnceLock::new(),
        }
    }

    #[inline]
    fn compiled(&self, direction: Direction) -> &CompiledDirection {
        let (cell, stages) = match direction {
            Direction::Inbound => (&self.inbound, &self.policy.inbound),
            Direction::Outbound => (&self.outbound, &self.policy.outbound),
        };
        cell.get_or_init(|| {
            let local = PrefixSet::from_nets(self.policy.addresses.iter().copied());
            compile_direction(stages, &self.sets, &local, direction)
        })
    }

    pub fn policy(&self) -> &NicPolicy {
        &self.policy
    }

    pub fn sets(&self) -> &SetArena {
        &self.sets
    }

    /// Classes and elementary intervals of the two classifiers.
    pub fn shape(&self) -> (usize, usize) {
        let c = [Direction::Inbound, Direction::Outbound].map(|d| &self.compiled(d).classifier);
        (
            c.iter().map(|c| c.class_count()).sum(),
            c.iter().map(|c| c.interval_count()).sum(),
        )
    }

    /// Bytes used by the classifiers.
    pub fn memory_bytes(&self) -> usize {
        [Direction::Inbound, Direction::Outbound]
            .map(|d| self.compiled(d).classifier.memory_bytes())
            .iter()
            .sum()
    }

    /// The fast answer. Agrees with [`crate::evaluate::decide`] on every flow (tested).
    #[inline]
    pub fn classify(&self, flow: &Flow) -> Verdict {
        self.classify_without(flow, None)
    }

    /// The fast answer as if the rule at `removed` did not exist; agrees with
    /// [`crate::evaluate::decide_without`] (tested).
    #[inline]
    pub fn classify_without(&self, flow: &Flow, removed: Option<RulePosition>) -> Verdict {
        if evaluate::is_platform_traffic(flow) {
            return self.verdict_of(&self.reference(flow, removed), flow.direction);
        }
        let compiled = self.compiled(flow.direction);
        let (source, destination) = flow.source_destination();
        let header = Header {
            protocol: flow.protocol,
            source: source.ip,
            destination: destination.ip,
            source_port: source.port,
            destination_port: destination.port,
        };
        let Some(classes) = compiled.classifier.classes(&header) else {
            return self.verdict_of(&self.reference(flow, removed), flow.direction);
        };
        self.decide_stages(compiled, &classes, flow, removed)
    }

    #[inline]
    fn decide_stages(
        &self,
        compiled: &CompiledDirection,
        classes: &Classes,
        flow: &Flow,
        removed: Option<RulePosition>,
    ) -> Verdict {
        let first = |start, end| compiled.classifier.first_match(classes, start, end);
        self.combine_stages(flow, compiled.stage_ranges.len(), |s| {
            let (start, end) = compiled.stage_ranges[s];
            let found = match removed {
                Some(r) if r.stage == s => {
                    let at = start + r.rule;
                    first(start, at).or_else(|| first(at + 1, end))
                }
                _ => first(start, end),
            }?;
            Some((found - start, compiled.access[found]))
        })
    }

    /// The verdict of `flow` given each stage's first match (an index into the stage's rules),
    /// as a walk over the flow space knows it: the same answer as [`CompiledPolicy::classify`]
    /// when the matches are right, without a classifier. Platform traffic, which meets only the
    /// rules naming its tag, takes the reference path.
    /// With `removed`, `first_match` must skip that rule, as the answer is then
    /// [`CompiledPolicy::classify_without`]'s.
    pub fn verdict_from_first_matches(
        &self,
        flow: &Flow,
        removed: Option<RulePosition>,
        mut first_match: impl FnMut(usize) -> Option<usize>,
    ) -> Verdict {
        if evaluate::is_platform_traffic(flow) {
            return self.verdict_of(&self.reference(flow, removed), flow.direction);
        }
        let stages = self.policy.stages(flow.direction);
        self.combine_stages(flow, stages.len(), |s| {
            let rule = first_match(s)?;
            Some((rule, stages[s].rules[rule].access))
        })
    }

    /// Subnet and NIC stages in evaluation order, the first Deny ending it; then the SMTP block.
    /// `first_match(s)`: stage `s`'s deciding rule (index into the stage) and its access.
    #[inline]
    fn combine_stages(
        &self,
        flow: &Flow,
        stages: usize,
        mut first_match: impl FnMut(usize) -> Option<(usize, Access)>,
    ) -> Verdict {
        let mut verdict = Verdict {
            access: Access::Allow,
            stage_rules: [None, None],
            platform: None,
        };
        for s in 0..stages {
            // Every stage ends with its direction's DenyAll (`*`, all ports): a non-platform
            // flow always matches some rule.
            let Some((rule, access)) = first_match(s) else {
                continue;
            };
            verdict.stage_rules[s] = Some(rule as u16);
            if access == Access::Deny {
                verdict.access = Access::Deny;
                return verdict;
            }
        }
        if evaluate::blocked_smtp(&self.policy, &self.sets, &self.settings, flow) {
            verdict.access = Access::Deny;
            verdict.platform = Some(PlatformRule::BlockOutboundSmtp);
        }
        verdict
    }

    fn reference(&self, flow: &Flow, removed: Option<RulePosition>) -> Decision {
        match removed {
            None => evaluate::decide(&self.policy, &self.sets, &self.settings, flow),
            Some(r) => evaluate::decide_without(&self.policy, &self.sets, &self.settings, flow, r),
        }
    }

    /// Maps a full decision back to the compact form (for the paths that take the reference).
    fn verdict_of(&self, decision: &Decision, direction: Direction) -> Verdict {
        let stages = self.policy.stages(direction);
        let mut stage_rules = [None, None];
        for verdict in &decision.stages {
            if let Some(s) = stages.iter().position(|s| s.level == verdict.level) {
                stage_rules[s] = stages[s]
                    .rules
                    .iter()
                    .position(|r| r.name == verdict.rule && r.kind == verdict.kind)
                    .map(|i| i as u16);
            }
        }
        Verdict {
            access: decision.access,
            stage_rules,
            platform: match decision.decider {
                Decider::Platform(p) => Some(p),
                _ => None,
            },
        }
    }

    /// The full decision, as the reference evaluator states it.
    pub fn decide(&self, flow: &Flow) -> Decision {
        self.decision(flow, None)
    }

    /// The full decision as if the rule at `removed` did not exist, as
    /// [`crate::evaluate::decide_without`] states it.
    pub fn decide_without(&self, flow: &Flow, removed: RulePosition) -> Decision {
        self.decision(flow, Some(removed))
    }

    fn decision(&self, flow: &Flow, removed: Option<RulePosition>) -> Decision {
        self.decision_of(self.classify_without(flow, removed), flow)
    }

    /// The full decision a verdict of `flow` stands for.
    pub fn decision_of(&self, verdict: Verdict, flow: &Flow) -> Decision {
        let stages = self.policy.stages(flow.direction);
        let verdicts: Vec<StageVerdict> = stages
            .iter()
            .zip(verdict.stage_rules)
            .filter_map(|(stage, index)| {
                Some(evaluate::stage_verdict(
                    stage,
                    &stage.rules[usize::from(index?)],
                ))
            })
            .collect();
        let decider = match (verdict.platform, verdicts.last()) {
            (Some(platform), _) => Decider::Platform(platform),
            (None, Some(last)) => Decider::Rule(last.clone()),
            (None, None) => Decider::NoNsg,
        };
        Decision {
            access: verdict.access,
            decider,
            stages: verdicts,
        }
    }
}

/// The policy in force for a NIC: readers take a snapshot, a writer publishes a new one built
/// beside it, and the swap is one atomic pointer exchange (invariant 4). A reader holding the old
/// snapshot finishes with it; no reader ever sees half a policy.
pub struct PolicyCell {
    current: arc_swap::ArcSwap<CompiledPolicy>,
}

impl PolicyCell {
    pub fn new(policy: CompiledPolicy) -> PolicyCell {
        PolicyCell {
            current: arc_swap::ArcSwap::from_pointee(policy),
        }
    }

    /// The policy in force now.
    pub fn load(&self) -> std::sync::Arc<CompiledPolicy> {
        self.current.load_full()
    }

    /// Puts `policy` in force; returns the one it replaces. Whether existing flows must be
    /// re-evaluated is the caller's question ([`crate::flow_table::needs_flush`]).
    pub fn publish(&self, policy: CompiledPolicy) -> std::sync::Arc<CompiledPolicy> {
        self.current.swap(std::sync::Arc::new(policy))
    }
}
