//! The reference evaluator: the one definition of every verdict (invariant 1).
//!
//! Linear on purpose, to be read next to the reference document: platform exceptions, then each
//! stage's rules in priority order with the first match deciding; a deny at any stage is final;
//! an allow passes the flow to the next stage; the SMTP block last. Every faster path is tested
//! against this.

use crate::resolve::{Level, NicPolicy, PlatformService, ResolvedRule, SetArena, SideMatch, Stage};
use crate::settings::Settings;
use nsg_model::rule::{ip_proto, protocol_has_ports, Access, Direction, Ports, Protocol, RuleKind};
use nsg_model::ResourceId;
use nsg_tags::context;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// One end of a flow: an address and, for TCP and UDP, a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

/// A flow as IP flow verify states it: seen from the NIC, in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub direction: Direction,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, …).
    pub protocol: u8,
    pub local: Endpoint,
    pub remote: Endpoint,
}

impl Flow {
    /// The packet's source and destination: inbound packets come from the remote end.
    pub fn source_destination(&self) -> (Endpoint, Endpoint) {
        match self.direction {
            Direction::Inbound => (self.remote, self.local),
            Direction::Outbound => (self.local, self.remote),
        }
    }
}

/// A rule outside any NSG that decided a flow (reference §3.8, §3.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlatformRule {
    AllowDhcp,
    AllowPlatform(PlatformService),
    BlockOutboundSmtp,
}

impl PlatformRule {
    /// The name reported where Azure would name a rule: `platformRules/…`.
    pub fn reference(self) -> &'static str {
        match self {
            PlatformRule::AllowDhcp => "platformRules/AllowDhcp",
            PlatformRule::AllowPlatform(PlatformService::Dns) => {
                "platformRules/AllowAzurePlatformDNS"
            }
            PlatformRule::AllowPlatform(PlatformService::Imds) => {
                "platformRules/AllowAzurePlatformIMDS"
            }
            PlatformRule::AllowPlatform(PlatformService::Lkm) => {
                "platformRules/AllowAzurePlatformLKM"
            }
            PlatformRule::BlockOutboundSmtp => "platformRules/BlockOutboundSmtp",
        }
    }
}

/// A rule of an NSG that decided at one stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageVerdict {
    pub level: Level,
    pub nsg: ResourceId,
    pub rule: String,
    pub kind: RuleKind,
    pub priority: u16,
    pub access: Access,
}

impl StageVerdict {
    /// `securityRules/NAME` or `defaultSecurityRules/NAME`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind.collection(), self.rule)
    }
}

/// What decided a flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decider {
    /// No NSG applies at any level: everything is allowed.
    NoNsg,
    Rule(StageVerdict),
    Platform(PlatformRule),
}

/// The verdict on a flow and everything that led to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub access: Access,
    pub decider: Decider,
    /// The verdict of each stage evaluated, in order (a deny ends the list).
    pub stages: Vec<StageVerdict>,
}

impl Decision {
    /// The rule name IP flow verify reports: absent when no rule decided.
    pub fn rule_name(&self) -> Option<String> {
        match &self.decider {
            Decider::NoNsg => None,
            Decider::Rule(v) => Some(v.reference()),
            Decider::Platform(p) => Some(p.reference().to_string()),
        }
    }
}

/// Which fields of a rule matched a flow (like Network Watcher's `rulesEvaluationResult`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleMatch {
    pub protocol: bool,
    pub source: bool,
    pub source_port: bool,
    pub destination: bool,
    pub destination_port: bool,
}

impl RuleMatch {
    pub fn all(&self) -> bool {
        self.protocol
            && self.source
            && self.source_port
            && self.destination
            && self.destination_port
    }
}

/// One rule as considered for a flow, for explanations.
#[derive(Clone, Debug)]
pub struct RuleTrace {
    pub reference: String,
    pub priority: u16,
    pub access: Access,
    /// False when the rule does not apply to this NIC (ASG membership).
    pub applies: bool,
    pub fields: RuleMatch,
}

/// The rules one stage considered, up to and including the one that matched.
#[derive(Clone, Debug)]
pub struct StageTrace {
    pub level: Level,
    pub nsg: ResourceId,
    pub rules: Vec<RuleTrace>,
}

/// A decision with the trace of every stage.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub decision: Decision,
    /// Set when the flow is platform traffic and only rules naming its tag were considered.
    pub platform: Option<PlatformService>,
    pub stages: Vec<StageTrace>,
}

/// Decides `flow` at the NIC of `policy`.
pub fn decide(policy: &NicPolicy, sets: &SetArena, settings: &Settings, flow: &Flow) -> Decision {
    evaluate(policy, sets, settings, flow, None, None)
}

/// A rule by position: the `rule`th rule of the `stage`th stage of a direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RulePosition {
    pub stage: usize,
    pub rule: usize,
}

/// Decides `flow` as if the rule at `removed` did not exist: what removing a rule would change.
pub fn decide_without(
    policy: &NicPolicy,
    sets: &SetArena,
    settings: &Settings,
    flow: &Flow,
    removed: RulePosition,
) -> Decision {
    evaluate(policy, sets, settings, flow, None, Some(removed))
}

/// Decides `flow` and records every rule considered.
pub fn explain(
    policy: &NicPolicy,
    sets: &SetArena,
    settings: &Settings,
    flow: &Flow,
) -> Explanation {
    let mut stages = Vec::new();
    let decision = evaluate(policy, sets, settings, flow, Some(&mut stages), None);
    Explanation {
        platform: platform_service(flow),
        decision,
        stages,
    }
}

fn evaluate(
    policy: &NicPolicy,
    sets: &SetArena,
    settings: &Settings,
    flow: &Flow,
    mut trace: Option<&mut Vec<StageTrace>>,
    removed: Option<RulePosition>,
) -> Decision {
    if is_dhcp(flow) {
        return platform_decision(Access::Allow, PlatformRule::AllowDhcp, Vec::new());
    }
    let platform = platform_service(flow);
    let stages = policy.stages(flow.direction);
    let mut verdicts = Vec::new();
    for (stage_index, stage) in stages.iter().enumerate() {
        // Platform traffic meets only the rules that name its service tag.
        let considered = |index: usize, rule: &ResolvedRule| {
            (platform.is_none() || rule.platform_tag == platform)
                && removed
                    != Some(RulePosition {
                        stage: stage_index,
                        rule: index,
                    })
        };
        let trace_stage = trace.as_deref_mut().map(|t| {
            t.push(StageTrace {
                level: stage.level,
                nsg: stage.nsg.clone(),
                rules: Vec::new(),
            });
            &mut t.last_mut().expect("just pushed").rules
        });
        let matched = first_match(stage, sets, flow, considered, trace_stage);
        let Some(rule) = matched else {
            // Only platform traffic can pass a stage unmatched: the default rules catch the rest.
            continue;
        };
        let verdict = stage_verdict(stage, rule);
        verdicts.push(verdict.clone());
        if rule.access == Access::Deny {
            return Decision {
                access: Access::Deny,
                decider: Decider::Rule(verdict),
                stages: verdicts,
            };
        }
    }
    if let Some(service) = platform {
        return platform_decision(
            Access::Allow,
            PlatformRule::AllowPlatform(service),
            verdicts,
        );
    }
    if blocked_smtp(policy, sets, settings, flow) {
        return platform_decision(Access::Deny, PlatformRule::BlockOutboundSmtp, verdicts);
    }
    match verdicts.last() {
        Some(last) => Decision {
            access: Access::Allow,
            decider: Decider::Rule(last.clone()),
            stages: verdicts,
        },
        None => Decision {
            access: Access::Allow,
            decider: Decider::NoNsg,
            stages: verdicts,
        },
    }
}

fn platform_decision(access: Access, rule: PlatformRule, stages: Vec<StageVerdict>) -> Decision {
    Decision {
        access,
        decider: Decider::Platform(rule),
        stages,
    }
}

/// The verdict of `stage` decided by `rule`.
pub(crate) fn stage_verdict(stage: &Stage, rule: &ResolvedRule) -> StageVerdict {
    StageVerdict {
        level: stage.level,
        nsg: stage.nsg.clone(),
        rule: rule.name.clone(),
        kind: rule.kind,
        priority: rule.priority,
        access: rule.access,
    }
}

/// The rule of `stage` that decides `flow` there, judged as if the stage were alone (whatever
/// an earlier stage decided): its first match, among only the rules naming the flow's tag when it
/// is platform traffic. `None` when no rule matches (only platform traffic can pass a stage so).
/// What Network Watcher's NSG diagnostics report per NSG.
pub fn stage_decider<'s>(
    stage: &'s Stage,
    sets: &SetArena,
    flow: &Flow,
) -> Option<&'s ResolvedRule> {
    let platform = platform_service(flow);
    let considered =
        |_: usize, rule: &ResolvedRule| platform.is_none() || rule.platform_tag == platform;
    first_match(stage, sets, flow, considered, None)
}

/// The first rule of `stage`, in priority order, that applies, is considered and matches.
fn first_match<'s>(
    stage: &'s Stage,
    sets: &SetArena,
    flow: &Flow,
    considered: impl Fn(usize, &ResolvedRule) -> bool,
    mut trace: Option<&mut Vec<RuleTrace>>,
) -> Option<&'s ResolvedRule> {
    let rules = stage.rules.iter().enumerate();
    for (_, rule) in rules.filter(|&(i, r)| considered(i, r)) {
        let fields = match_fields(rule, sets, flow);
        let matched = rule.applies && fields.all();
        if let Some(t) = trace.as_deref_mut() {
            t.push(RuleTrace {
                reference: rule.reference(),
                priority: rule.priority,
                access: rule.access,
                applies: rule.applies,
                fields,
            });
        }
        if matched {
            return Some(rule);
        }
    }
    None
}

/// Matches each field of `rule` against `flow`.
pub fn match_fields(rule: &ResolvedRule, sets: &SetArena, flow: &Flow) -> RuleMatch {
    let (source, destination) = flow.source_destination();
    let ports_match = |ports: &Ports, port: Option<u16>| match port {
        Some(p) if protocol_has_ports(flow.protocol) => ports.contains(p),
        // Portless protocols: a rule for that very protocol ignores its port fields; a `*` rule
        // matches only if its ports are all ports (docs/semantics.md).
        _ => rule.protocol != Protocol::Any || ports.is_full(),
    };
    RuleMatch {
        protocol: rule.protocol.matches(flow.protocol),
        source: side_contains(rule.source, sets, source.ip),
        source_port: ports_match(&rule.source_ports, source.port),
        destination: side_contains(rule.destination, sets, destination.ip),
        destination_port: ports_match(&rule.destination_ports, destination.port),
    }
}

fn side_contains(side: SideMatch, sets: &SetArena, ip: IpAddr) -> bool {
    match side {
        SideMatch::Any => true,
        SideMatch::Set(id) => sets.get(id).contains(ip),
    }
}

/// DHCP with the host (168.63.129.16, or broadcast before an address is leased): always allowed,
/// no tag can deny it.
pub fn is_dhcp(flow: &Flow) -> bool {
    flow.direction == Direction::Outbound
        && flow.protocol == ip_proto::UDP
        && flow.remote.port == Some(67)
        && (flow.remote.ip == IpAddr::V4(context::HOST_VIP)
            || flow.remote.ip == IpAddr::V4(Ipv4Addr::BROADCAST))
}

/// Traffic the platform handles besides NSG rules: DHCP, and DNS, IMDS and licensing, which meet
/// only the rules naming their tag.
pub fn is_platform_traffic(flow: &Flow) -> bool {
    is_dhcp(flow) || platform_service(flow).is_some()
}

/// The platform service an outbound flow goes to, if it is one (reference §3.8).
pub fn platform_service(flow: &Flow) -> Option<PlatformService> {
    if flow.direction != Direction::Outbound {
        return None;
    }
    let IpAddr::V4(remote) = flow.remote.ip else {
        return None;
    };
    let port = flow.remote.port;
    let tcp = flow.protocol == ip_proto::TCP;
    let udp = flow.protocol == ip_proto::UDP;
    if remote == context::HOST_VIP && (tcp || udp) && port == Some(53) {
        Some(PlatformService::Dns)
    } else if remote == context::IMDS && tcp && port == Some(80) {
        Some(PlatformService::Imds)
    } else if context::KMS_ADDRESSES.contains(&remote) && tcp && port == Some(1688) {
        Some(PlatformService::Lkm)
    } else {
        None
    }
}

/// Outbound TCP 25 to the internet, for subscription types that block it (reference §3.9).
pub(crate) fn blocked_smtp(
    policy: &NicPolicy,
    sets: &SetArena,
    settings: &Settings,
    flow: &Flow,
) -> bool {
    flow.direction == Direction::Outbound
        && flow.protocol == ip_proto::TCP
        && flow.remote.port == Some(25)
        && settings.subscription_type.blocks_smtp()
        && sets.get(policy.internet).contains(flow.remote.ip)
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
            (ip, Some(p)) => write!(f, "{ip}:{p}"),
            (ip, None) => write!(f, "{ip}"),
        }
    }
}
