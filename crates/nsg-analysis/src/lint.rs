//! Lint: what is wrong with an environment's NSGs, computed over the whole flow space of every
//! NIC each NSG reaches.
//!
//! Per NIC and direction one walk (at [`Precision::SecondMatch`]) finds, for every region, the
//! rule each stage's NSG decides it with (its first match there, or for platform traffic the
//! first rule naming its tag) and whether removing that rule would change the region's verdict.
//! A rule that decides nothing anywhere is shadowed; one whose removal changes nothing anywhere
//! is redundant; one that matches nothing anywhere never applies.

use crate::example::Example;
use crate::nics::compile_all;
use crate::partition::{Analysis, FlowBox, Leaf, Precision};
use nsg_model::model::NetworkSecurityGroup;
use nsg_model::rule::{ip_proto, Access, Addresses, Direction, PortRange, RuleKind};
use nsg_model::{Model, ResourceId};
use nsg_policy::classify::ProtocolSet;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::evaluate::{self, RulePosition};
use nsg_policy::resolve::{ResolveError, ResolvedRule, SideMatch, Stage};
use nsg_policy::{Flow, Settings};
use nsg_tags::{Catalog, PrefixSet};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    ShadowedRule,
    RedundantRule,
    NeverApplies,
    OverlyPermissive,
    ChangedByTagUpdate,
    UnusedNsg,
    UnusedAsg,
}

impl Code {
    pub const ALL: [Code; 7] = [
        Code::ShadowedRule,
        Code::RedundantRule,
        Code::NeverApplies,
        Code::OverlyPermissive,
        Code::ChangedByTagUpdate,
        Code::UnusedNsg,
        Code::UnusedAsg,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::ShadowedRule => "shadowed-rule",
            Code::RedundantRule => "redundant-rule",
            Code::NeverApplies => "never-applies",
            Code::OverlyPermissive => "overly-permissive",
            Code::ChangedByTagUpdate => "changed-by-tag-update",
            Code::UnusedNsg => "unused-nsg",
            Code::UnusedAsg => "unused-asg",
        }
    }

    /// One line on what the finding means, for reports that list the checks.
    pub fn description(self) -> &'static str {
        match self {
            Code::ShadowedRule => "No flow at any network interface the NSG applies to is decided by this rule: higher-priority rules decide them all.",
            Code::RedundantRule => "Removing the rule changes no verdict at any network interface the NSG applies to.",
            Code::NeverApplies => "The rule matches no flow at any network interface the NSG applies to (an ASG without members there, an empty tag, an address family the interfaces lack, addresses that are not theirs).",
            Code::OverlyPermissive => "The rule allows traffic from the Internet to management or database ports, or to every port.",
            Code::ChangedByTagUpdate => "A service tag the rule names has different prefixes in the newer tag file.",
            Code::UnusedNsg => "The NSG reaches no network interface.",
            Code::UnusedAsg => "The application security group has no member, or no rule names it.",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

impl Severity {
    /// `error`, `warning`, `note` (also SARIF's levels).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    /// The NSG's id (absent for ASG findings).
    pub nsg: Option<String>,
    pub rule: Option<String>,
    pub message: String,
    /// The rules that decide the flows of a shadowed rule instead.
    pub covered_by: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<Example>,
    /// The resource the finding is about: the NSG, or the ASG.
    #[serde(skip)]
    pub resource: ResourceId,
}

/// The ports of remote administration and databases that should not be open to the Internet.
pub const MANAGEMENT_PORTS: &[(u16, u16, &str)] = &[
    (22, 22, "SSH"),
    (23, 23, "Telnet"),
    (135, 135, "RPC"),
    (139, 139, "NetBIOS"),
    (445, 445, "SMB"),
    (1433, 1433, "SQL Server"),
    (1521, 1521, "Oracle"),
    (3306, 3306, "MySQL"),
    (3389, 3389, "RDP"),
    (5432, 5432, "PostgreSQL"),
    (5985, 5986, "WinRM"),
    (6379, 6379, "Redis"),
    (9200, 9200, "Elasticsearch"),
    (27017, 27017, "MongoDB"),
];

/// The refiners of the inbound walk: from the Internet to a management port, from the Internet.
const FROM_INTERNET_TO_MANAGEMENT: usize = 0;
const FROM_INTERNET: usize = 1;

/// What one NIC's walks found about one rule of one NSG.
#[derive(Default)]
struct RuleFacts {
    /// Some flow at some NIC matches the rule.
    matches: bool,
    /// Why it matches nothing, at the first NIC that said so.
    never: Option<String>,
    /// Some flow is decided by it (it is its NSG's first match, or the platform flow's).
    decides: Option<Example>,
    /// Removing it changes some flow's verdict.
    matters: bool,
    /// The rules deciding its flows where it decides none (priority, name, access), and one
    /// such flow.
    covered_by: BTreeSet<(u16, String, Access)>,
    covered_example: Option<Example>,
    /// One of its flows that the platform decides, not this rule: DHCP, or traffic to a platform
    /// service that only rules naming the service's tag decide; with what it is.
    platform_example: Option<(Example, String)>,
    /// It allows some flow from the Internet to a management port / on every port.
    permissive_management: Option<Example>,
    permissive_any_port: Option<Example>,
}

/// Lints every NSG and ASG of `model`. With `old_catalog`, rules naming tags whose prefixes
/// differ from it to `catalog` are reported too.
pub fn lint(
    model: &Model,
    catalog: &Catalog,
    settings: Settings,
    old_catalog: Option<&Catalog>,
) -> Result<Vec<Finding>, ResolveError> {
    let nics = compile_all(model, catalog, settings)?;
    let walks: Vec<(&CompiledPolicy, Direction)> = nics
        .iter()
        .flat_map(|p| [(p, Direction::Inbound), (p, Direction::Outbound)])
        .collect();
    let mut facts: HashMap<(ResourceId, String), RuleFacts> = HashMap::new();
    // Each walk on its own, on every core; merged in the walks' order, so that the examples
    // reported are those of the first NIC, whatever the number of cores.
    for found in
        crate::cores::map_in_order(&walks, |&(policy, direction)| walk_nic(policy, direction))
    {
        for (rule, fact) in found {
            facts.entry(rule).or_default().merge(fact);
        }
    }
    let mut findings = Vec::new();
    let reached: HashSet<&ResourceId> = nics
        .iter()
        .flat_map(|p| p.policy().inbound.iter().map(|s| &s.nsg))
        .collect();
    let changed_tags: HashMap<String, nsg_tags::diff::TagChange> = old_catalog
        .map(|old| nsg_tags::diff::diff(old, catalog))
        .map(|d| {
            d.changed
                .into_iter()
                .filter(|c| c.addresses_changed)
                .map(|c| (c.name.to_lowercase(), c))
                .collect()
        })
        .unwrap_or_default();
    for nsg in &model.network_security_groups {
        if !reached.contains(&nsg.id) {
            findings.push(unused_nsg(model, nsg));
            continue;
        }
        let mut rules: Vec<_> = nsg.rules.iter().collect();
        rules.sort_by_key(|r| (r.direction as u8, r.priority));
        for rule in rules {
            let fact = facts.remove(&(nsg.id.clone(), rule.name.clone()));
            if let Some(fact) = fact {
                findings.extend(rule_findings(nsg, rule, fact));
            }
            for side in [&rule.source, &rule.destination] {
                if let Addresses::Tag(tag) = side {
                    if let Some(change) = changed_tags.get(&tag.to_lowercase()) {
                        findings.push(tag_finding(nsg, &rule.name, change));
                    }
                }
            }
        }
    }
    findings.extend(unused_asgs(model));
    Ok(findings)
}

impl RuleFacts {
    /// What two walks found together; `self`'s examples (the earlier walk's) stand.
    fn merge(&mut self, later: RuleFacts) {
        self.matches |= later.matches;
        self.matters |= later.matters;
        self.covered_by.extend(later.covered_by);
        self.never = self.never.take().or(later.never);
        self.decides = self.decides.take().or(later.decides);
        self.covered_example = self.covered_example.take().or(later.covered_example);
        self.platform_example = self.platform_example.take().or(later.platform_example);
        self.permissive_management = self
            .permissive_management
            .take()
            .or(later.permissive_management);
        self.permissive_any_port = self
            .permissive_any_port
            .take()
            .or(later.permissive_any_port);
    }
}

/// One walk of one NIC in one direction: what it finds about each custom rule.
fn walk_nic(
    policy: &CompiledPolicy,
    direction: Direction,
) -> HashMap<(ResourceId, String), RuleFacts> {
    let mut facts: HashMap<(ResourceId, String), RuleFacts> = HashMap::new();
    let nic = policy.policy();
    let stages = nic.stages(direction);
    for stage in stages {
        for rule in stage.rules.iter().filter(|r| r.kind == RuleKind::Custom) {
            let fact = facts
                .entry((stage.nsg.clone(), rule.name.clone()))
                .or_default();
            match never_applies(policy, direction, rule) {
                None => fact.matches = true,
                Some(reason) => {
                    fact.never.get_or_insert(reason);
                }
            }
        }
    }
    let refiners = match direction {
        Direction::Inbound => {
            let internet = policy.sets().get(nic.internet).clone();
            let management = MANAGEMENT_PORTS
                .iter()
                .map(|&(low, high, _)| PortRange { low, high })
                .collect();
            vec![
                FlowBox {
                    protocols: ProtocolSet::default()
                        .with(ip_proto::TCP)
                        .with(ip_proto::UDP),
                    local: None,
                    local_ports: management,
                    remote: Some(internet.clone()),
                    remote_ports: vec![PortRange::ALL],
                },
                FlowBox {
                    remote: Some(internet),
                    ..FlowBox::everything()
                },
            ]
        }
        Direction::Outbound => Vec::new(),
    };
    let analysis = Analysis::new(
        &[policy],
        direction,
        &FlowBox::everything(),
        &refiners,
        Precision::SecondMatch,
    );
    let mut decided_here: HashSet<(usize, usize)> = HashSet::new();
    let _ = analysis.walk(|leaf| {
        let example = *leaf.example();
        let verdict = leaf.verdict(0, None);
        for (s, stage) in stages.iter().enumerate() {
            let Some(r) = stage_decider(leaf, stage, s, &example) else {
                continue;
            };
            decided_here.insert((s, r));
            let rule = &stage.rules[r];
            if rule.kind != RuleKind::Custom {
                continue;
            }
            let fact = facts
                .get_mut(&(stage.nsg.clone(), rule.name.clone()))
                .expect("every custom rule has facts");
            fact.decides
                .get_or_insert_with(|| Example::new(&nic.nic, &example));
            let evaluated = verdict.stage_rules[s] == Some(r as u16);
            if evaluated && !fact.matters {
                let removed = RulePosition { stage: s, rule: r };
                fact.matters = leaf.verdict(0, Some(removed)).access != verdict.access;
            }
            let allowed_in = direction == Direction::Inbound
                && evaluated
                && verdict.access == Access::Allow
                && rule.access == Access::Allow;
            if allowed_in && leaf.inside(FROM_INTERNET_TO_MANAGEMENT) {
                fact.permissive_management
                    .get_or_insert_with(|| Example::new(&nic.nic, &example));
            }
            if allowed_in && leaf.inside(FROM_INTERNET) && rule.destination_ports.is_full() {
                fact.permissive_any_port
                    .get_or_insert_with(|| Example::new(&nic.nic, &example));
            }
        }
        ControlFlow::Continue(())
    });
    // Where a matching rule decides nothing at this NIC: what decides its flows instead.
    for (s, stage) in stages.iter().enumerate() {
        for (r, rule) in stage.rules.iter().enumerate() {
            if rule.kind != RuleKind::Custom || decided_here.contains(&(s, r)) {
                continue;
            }
            let fact = facts
                .get_mut(&(stage.nsg.clone(), rule.name.clone()))
                .expect("every custom rule has facts");
            if fact.decides.is_some() || never_applies(policy, direction, rule).is_some() {
                continue;
            }
            let _ = analysis.walk_within(0, s, r, |leaf| {
                let example = *leaf.example();
                match stage_decider(leaf, stage, s, &example) {
                    Some(decider) => {
                        let by = &stage.rules[decider];
                        fact.covered_by
                            .insert((by.priority, by.name.clone(), by.access));
                        fact.covered_example
                            .get_or_insert_with(|| Example::new(&nic.nic, &example));
                    }
                    None => {
                        fact.platform_example.get_or_insert_with(|| {
                            (Example::new(&nic.nic, &example), platform_traffic(&example))
                        });
                    }
                }
                ControlFlow::Continue(())
            });
        }
    }
    facts
}

/// The rule stage `s` decides the leaf's flows with, on its own (whatever earlier stages say):
/// its first match, or for platform traffic its first match among the rules naming the
/// service's tag; none for DHCP, which no rule decides.
fn stage_decider(leaf: &Leaf<'_>, stage: &Stage, s: usize, example: &Flow) -> Option<usize> {
    if evaluate::is_dhcp(example) {
        return None;
    }
    let matches = leaf.stage_matches(0, s);
    match evaluate::platform_service(example) {
        Some(service) => matches
            .into_iter()
            .find(|&r| stage.rules[r].platform_tag == Some(service)),
        None => matches.first().copied(),
    }
}

/// What a flow that no ordinary rule decides is, for a message.
fn platform_traffic(flow: &Flow) -> String {
    match evaluate::platform_service(flow) {
        Some(service) => format!(
            "{} to the platform, which only rules naming {} decide",
            flow.remote.ip,
            service.tag()
        ),
        None => "DHCP with the platform, which no rule decides".into(),
    }
}

/// Why `rule` matches no flow of `direction` at the NIC of `policy`, if it matches none.
fn never_applies(
    policy: &CompiledPolicy,
    direction: Direction,
    rule: &ResolvedRule,
) -> Option<String> {
    let nic = policy.policy();
    let nic_name = nic.nic.name();
    if !rule.applies {
        return Some(format!(
            "its application security groups have no member at network interface {nic_name}"
        ));
    }
    let (local, remote, local_field, remote_field) = match direction {
        Direction::Inbound => (rule.destination, rule.source, "destination", "source"),
        Direction::Outbound => (rule.source, rule.destination, "source", "destination"),
    };
    let addresses = PrefixSet::from_nets(nic.addresses.iter().copied());
    let set = |side: SideMatch| match side {
        SideMatch::Any => PrefixSet::everything(),
        SideMatch::Set(id) => policy.sets().get(id).clone(),
    };
    let (local, remote) = (set(local).intersection(&addresses), set(remote));
    if remote.is_empty() {
        return Some(format!("its {remote_field} has no address"));
    }
    if local.is_empty() {
        return Some(format!(
            "its {local_field} holds none of the addresses of network interface {nic_name}"
        ));
    }
    let same_family = (local.has_v4() && remote.has_v4()) || (local.has_v6() && remote.has_v6());
    (!same_family).then(|| {
        format!(
            "its {remote_field} is of an address family network interface {nic_name} has no address of"
        )
    })
}

fn rule_findings(
    nsg: &NetworkSecurityGroup,
    rule: &nsg_model::rule::Rule,
    fact: RuleFacts,
) -> Vec<Finding> {
    let finding = |code, severity, message: String| Finding {
        code,
        severity,
        nsg: Some(nsg.id.to_string()),
        rule: Some(rule.name.clone()),
        message,
        covered_by: Vec::new(),
        example: None,
        resource: nsg.id.clone(),
    };
    let mut findings = Vec::new();
    if !fact.matches {
        let reason = fact.never.unwrap_or_else(|| "it matches no flow".into());
        findings.push(finding(
            Code::NeverApplies,
            Severity::Warning,
            format!("{} never applies: {reason}.", rule.name),
        ));
        return findings;
    }
    match &fact.decides {
        None => {
            let opposite = fact
                .covered_by
                .iter()
                .any(|(_, _, access)| *access != rule.access);
            let names: Vec<String> = fact.covered_by.iter().map(|(_, n, _)| n.clone()).collect();
            let mut f = finding(
                Code::ShadowedRule,
                if opposite {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                if let (true, Some((_, traffic))) = (names.is_empty(), &fact.platform_example) {
                    format!(
                        "{} ({}) decides no flow: every flow it matches is platform traffic (such as {traffic}).",
                        rule.name,
                        rule.access.as_str()
                    )
                } else if opposite {
                    format!(
                        "{} ({}) decides no flow: higher-priority rules {} decide all of its flows, some with the opposite access.",
                        rule.name,
                        rule.access.as_str(),
                        names.join(", ")
                    )
                } else {
                    format!(
                        "{} ({}) decides no flow: higher-priority rules {} decide all of its flows the same way.",
                        rule.name,
                        rule.access.as_str(),
                        names.join(", ")
                    )
                },
            );
            f.covered_by = names;
            f.example = fact
                .covered_example
                .clone()
                .or(fact.platform_example.map(|(example, _)| example));
            findings.push(f);
        }
        Some(decided) if !fact.matters => {
            let mut f = finding(
                Code::RedundantRule,
                Severity::Warning,
                format!(
                    "{} is redundant: removing it changes no verdict at any network interface; the rules after it decide its flows the same way.",
                    rule.name
                ),
            );
            f.example = Some(decided.clone());
            findings.push(f);
        }
        Some(_) => {}
    }
    if let Some(example) = fact.permissive_management {
        let mut f = finding(
            Code::OverlyPermissive,
            Severity::Error,
            format!(
                "{} allows the Internet to reach management or database ports (such as port {}).",
                rule.name,
                example.destination_port.unwrap_or_default()
            ),
        );
        f.example = Some(example);
        findings.push(f);
    } else if let Some(example) = fact.permissive_any_port {
        let mut f = finding(
            Code::OverlyPermissive,
            Severity::Warning,
            format!("{} allows the Internet to reach every port.", rule.name),
        );
        f.example = Some(example);
        findings.push(f);
    }
    findings
}

fn tag_finding(
    nsg: &NetworkSecurityGroup,
    rule: &str,
    change: &nsg_tags::diff::TagChange,
) -> Finding {
    let list = |nets: &[ipnet::IpNet]| {
        let shown: Vec<String> = nets.iter().take(5).map(|n| n.to_string()).collect();
        let more = nets.len().saturating_sub(5);
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    Finding {
        code: Code::ChangedByTagUpdate,
        severity: Severity::Note,
        nsg: Some(nsg.id.to_string()),
        rule: Some(rule.to_string()),
        message: format!(
            "{rule} names {}, which changed from change number {} to {}: {} prefixes added ({}), {} removed ({}).",
            change.name,
            change.old_change_number,
            change.new_change_number,
            change.added.len(),
            list(&change.added),
            change.removed.len(),
            list(&change.removed),
        ),
        covered_by: Vec::new(),
        example: None,
        resource: nsg.id.clone(),
    }
}

fn unused_nsg(model: &Model, nsg: &NetworkSecurityGroup) -> Finding {
    let on_subnet = model
        .virtual_networks
        .iter()
        .flat_map(|v| &v.subnets)
        .any(|s| s.network_security_group.as_ref() == Some(&nsg.id));
    let on_nic = model
        .network_interfaces
        .iter()
        .any(|n| n.network_security_group.as_ref() == Some(&nsg.id));
    let name = nsg.id.name();
    Finding {
        code: Code::UnusedNsg,
        severity: Severity::Note,
        nsg: Some(nsg.id.to_string()),
        rule: None,
        message: if on_subnet || on_nic {
            format!(
                "{name} reaches no network interface: the subnets it is associated with have none."
            )
        } else {
            format!("{name} is associated with no subnet and no network interface.")
        },
        covered_by: Vec::new(),
        example: None,
        resource: nsg.id.clone(),
    }
}

fn unused_asgs(model: &Model) -> Vec<Finding> {
    let members: HashSet<&ResourceId> = model
        .network_interfaces
        .iter()
        .flat_map(|n| &n.ip_configurations)
        .flat_map(|c| &c.application_security_groups)
        .collect();
    let named: HashSet<&ResourceId> = model
        .network_security_groups
        .iter()
        .flat_map(|n| &n.rules)
        .flat_map(|r| [&r.source, &r.destination])
        .flat_map(|a| match a {
            Addresses::ApplicationSecurityGroups(ids) => ids.as_slice(),
            _ => &[],
        })
        .collect();
    model
        .application_security_groups
        .iter()
        .filter_map(|asg| {
            let name = asg.id.name();
            let message = match (members.contains(&asg.id), named.contains(&asg.id)) {
                (true, true) => return None,
                (false, true) => {
                    format!("{name} has no member: the rules naming it match nothing through it.")
                }
                (true, false) => format!("{name} is named by no security rule."),
                (false, false) => format!("{name} has no member and is named by no security rule."),
            };
            Some(Finding {
                code: Code::UnusedAsg,
                severity: Severity::Note,
                nsg: None,
                rule: None,
                message,
                covered_by: Vec::new(),
                example: None,
                resource: asg.id.clone(),
            })
        })
        .collect()
}
