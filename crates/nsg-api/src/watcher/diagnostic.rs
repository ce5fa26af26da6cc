//! `POST …/networkWatchers/{nw}/networkConfigurationDiagnostic` (NSG diagnostics): for each
//! profile — a direction, a protocol, a source and a destination set, destination ports — whether
//! every flow of that whole set is allowed at the target's NIC, answered exactly by
//! `nsg_analysis::query` (as `opennsg query` answers), with each NSG stage's deciding rule and,
//! per rule, which of its fields cover the profile's. Long-running, as Azure answers it (see
//! [`crate::operations`]). The choices are docs/semantics.md's A20–A24.

use super::{field, field_at, target_nic, view};
use crate::error::ApiError;
use crate::operations;
use crate::request::Kind;
use crate::resources::{self, Answer};
use crate::AppState;
use nsg_analysis::addresses::address_set;
use nsg_analysis::example::Example;
use nsg_analysis::partition::FlowBox;
use nsg_analysis::query::{answer, Outcome};
use nsg_model::rule::{covers_ports, Access, Direction, PortRange, Ports, Protocol, RuleKind};
use nsg_model::ResourceId;
use nsg_policy::classify::ProtocolSet;
use nsg_policy::compiled::{protocol_set, CompiledPolicy};
use nsg_policy::evaluate::stage_decider;
use nsg_policy::resolve::{ResolvedRule, SideMatch, Stage};
use nsg_policy::{Decider, Level, SetArena};
use nsg_tags::{Catalog, PrefixSet};
use serde_json::{json, Map, Value};

/// The most profiles one request may ask about (Azure's limit is not documented; this bounds
/// the work of one request).
pub const MAX_PROFILES: usize = 100;

/// How much of each NSG's evaluation an answer shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verbosity {
    /// Each NSG's matched rule only.
    Minimum,
    /// Also the rules evaluated before it, and it (as Microsoft's example shows).
    Normal,
    /// Also every rule after it.
    Full,
}

impl Verbosity {
    fn parse(body: &Map<String, Value>) -> Result<Verbosity, ApiError> {
        let invalid = |sent: &Value| {
            ApiError::bad_request(
                "InvalidRequestFormat",
                format!("verbosityLevel {sent} is not Minimum, Normal or Full."),
            )
            .with_target("verbosityLevel")
        };
        match body.get("verbosityLevel") {
            None | Some(Value::Null) => Ok(Verbosity::Normal),
            Some(Value::String(text)) => match text.to_ascii_lowercase().as_str() {
                "minimum" => Ok(Verbosity::Minimum),
                "normal" => Ok(Verbosity::Normal),
                "full" => Ok(Verbosity::Full),
                _ => Err(invalid(&json!(text))),
            },
            Some(other) => Err(invalid(other)),
        }
    }
}

/// One profile, parsed, in packet terms (the source sends).
struct Profile {
    direction: Direction,
    protocols: ProtocolSet,
    /// `None`: every address. The NIC's own side is cut to the NIC's addresses.
    source: Option<PrefixSet>,
    destination: Option<PrefixSet>,
    destination_ports: Vec<PortRange>,
}

impl Profile {
    /// The profile as a box of flows at the NIC (local and remote ends).
    fn space(&self) -> FlowBox {
        let (local, remote, local_ports, remote_ports) = match self.direction {
            Direction::Inbound => (
                &self.destination,
                &self.source,
                self.destination_ports.clone(),
                vec![PortRange::ALL],
            ),
            Direction::Outbound => (
                &self.source,
                &self.destination,
                vec![PortRange::ALL],
                self.destination_ports.clone(),
            ),
        };
        FlowBox {
            protocols: self.protocols,
            local: local.clone(),
            local_ports,
            remote: remote.clone(),
            remote_ports,
        }
    }

    /// Whether the profile asks about protocols with ports (TCP or UDP) at all.
    fn has_ports(&self) -> bool {
        !self.protocols.with_ports().is_empty()
    }
}

/// `POST …/networkWatchers/{nw}/networkConfigurationDiagnostic`: every profile answered, then
/// 202 with the `Location` of the answer.
pub fn run(
    state: &AppState,
    watcher: &ResourceId,
    api_version: &str,
    body: Map<String, Value>,
) -> Result<Answer, ApiError> {
    let watcher_answer = resources::get(state, Kind::NetworkWatcher, watcher)?;
    let location = watcher_answer
        .body
        .as_ref()
        .and_then(|w| w["location"].as_str())
        .unwrap_or_default()
        .to_string();
    let verbosity = Verbosity::parse(&body)?;
    let profiles = profiles(&body)?;
    let view = view(state, watcher.subscription())?;
    let nic = target_nic(&view.model, field(&body, "targetResourceId")?, None)?;
    let compiled = view.policy(state, nic)?;
    let catalog = state.catalog();
    let results = profiles
        .iter()
        .enumerate()
        .map(|(index, sent)| diagnose(&compiled, &catalog, verbosity, index, sent))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(operations::accepted(
        state,
        watcher.subscription(),
        &location,
        api_version,
        json!({ "results": results }),
    ))
}

/// The request's profiles: 1 to [`MAX_PROFILES`] objects.
fn profiles(body: &Map<String, Value>) -> Result<Vec<Map<String, Value>>, ApiError> {
    let invalid = |message: String| {
        ApiError::bad_request("InvalidRequestFormat", message).with_target("profiles")
    };
    let list = match body.get("profiles") {
        None | Some(Value::Null) => return Err(invalid("profiles is required.".into())),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("profiles must be an array of profiles.".into())),
    };
    if list.is_empty() || list.len() > MAX_PROFILES {
        return Err(invalid(format!(
            "profiles has {} entries; between 1 and {MAX_PROFILES} are accepted.",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, profile)| match profile {
            Value::Object(profile) => Ok(profile.clone()),
            _ => Err(ApiError::bad_request(
                "InvalidRequestFormat",
                format!("profiles[{i}] must be an object."),
            )
            .with_target(format!("profiles[{i}]"))),
        })
        .collect()
}

/// A 400 about field `name` of profile `index`.
fn profile_error(index: usize, name: &str, code: &str, message: String) -> ApiError {
    ApiError::bad_request(code, message).with_target(format!("profiles[{index}].{name}"))
}

/// Parses profile `index` at the NIC of `compiled`.
fn parse_profile(
    compiled: &CompiledPolicy,
    catalog: &Catalog,
    index: usize,
    sent: &Map<String, Value>,
) -> Result<Profile, ApiError> {
    let text = |name: &str| field_at(sent, name, &format!("profiles[{index}].{name}"));
    let invalid =
        |name: &str, message: String| profile_error(index, name, "InvalidRequestFormat", message);
    let direction_text = text("direction")?;
    let direction = Direction::parse(direction_text).ok_or_else(|| {
        invalid(
            "direction",
            format!("direction '{direction_text}' is not Inbound or Outbound."),
        )
    })?;
    let protocol_text = text("protocol")?;
    // As a rule's protocol: ICMP asks for ICMPv6 too (docs/semantics.md).
    let protocols = match Protocol::parse(protocol_text) {
        Some(p @ (Protocol::Any | Protocol::Tcp | Protocol::Udp | Protocol::Icmp)) => {
            protocol_set(p)
        }
        _ => {
            return Err(invalid(
                "protocol",
                format!("protocol '{protocol_text}' is not TCP, UDP, ICMP or '*'."),
            ))
        }
    };
    let policy = compiled.policy();
    let virtual_network = compiled.sets().get(policy.virtual_network);
    let addresses = |name: &str| -> Result<Option<PrefixSet>, ApiError> {
        let asked = text(name)?;
        address_set(asked, catalog, virtual_network).map_err(|e| invalid(name, e.to_string()))
    };
    let mut source = addresses("source")?;
    let mut destination = addresses("destination")?;
    // The NIC's own end: only its addresses are flows at this NIC.
    let (local, local_name) = match direction {
        Direction::Inbound => (&mut destination, "destination"),
        Direction::Outbound => (&mut source, "source"),
    };
    let own = PrefixSet::from_nets(policy.addresses.iter().copied());
    let cut = match local.as_ref() {
        None => own,
        Some(asked) => asked.intersection(&own),
    };
    if cut.is_empty() {
        return Err(profile_error(
            index,
            local_name,
            "InvalidLocalIPAddress",
            format!(
                "The {local_name} of an {} profile is the network interface's end: it must include \
                 an address of network interface {}.",
                match direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                },
                policy.nic
            ),
        ));
    }
    *local = Some(cut);
    let port_text = text("destinationPort")?;
    let destination_ports = match port_text.trim() {
        "*" => vec![PortRange::ALL],
        one => vec![PortRange::parse(one).ok_or_else(|| {
            invalid(
                "destinationPort",
                format!(
                    "destinationPort '{port_text}' is not '*', a port or a range A-B of 0-65535."
                ),
            )
        })?],
    };
    let profile = Profile {
        direction,
        protocols,
        source,
        destination,
        destination_ports,
    };
    if !profile.has_ports() && port_text.trim() != "*" {
        return Err(invalid(
            "destinationPort",
            format!("protocol '{protocol_text}' has no ports: destinationPort must be '*'."),
        ));
    }
    Ok(profile)
}

/// One profile's result.
fn diagnose(
    compiled: &CompiledPolicy,
    catalog: &Catalog,
    verbosity: Verbosity,
    index: usize,
    sent: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let profile = parse_profile(compiled, catalog, index, sent)?;
    let found = answer(compiled, profile.direction, &profile.space());
    // Allow only if every flow is allowed: one denied flow decides, and is the example. When
    // all are allowed, the example is one an NSG rule allowed, where there is one (not platform
    // traffic, which passes NSGs unmatched), so that each stage has a matched rule to show.
    let denied = found.with(Access::Deny);
    let by_rule = || {
        found
            .outcomes
            .iter()
            .find(|o| matches!(o.decision.decider, Decider::Rule(_)))
    };
    let Some(deciding) = denied.or_else(by_rule).or(found.outcomes.first()) else {
        return Err(ApiError::bad_request(
            "InvalidRequestFormat",
            format!(
                "Profile {index} names no flow at network interface {}: its source and destination \
                 share no address family, or one of them is an empty set.",
                compiled.policy().nic
            ),
        )
        .with_target(format!("profiles[{index}]")));
    };
    let access = if denied.is_some() {
        Access::Deny
    } else {
        Access::Allow
    };
    let policy = compiled.policy();
    let evaluated: Vec<Value> = policy
        .stages(profile.direction)
        .iter()
        .map(|stage| {
            let applied_to = match stage.level {
                Level::Subnet => &policy.subnet,
                Level::NetworkInterface => &policy.nic,
            };
            evaluated_group(
                stage,
                applied_to,
                compiled.sets(),
                &profile,
                deciding,
                verbosity,
            )
        })
        .collect();
    let mut result = json!({
        "profile": sent,
        "networkSecurityGroupResult": {
            "securityRuleAccessResult": access.as_str(),
            "evaluatedNetworkSecurityGroups": evaluated,
        },
    });
    if access == Access::Deny {
        // An OpenNSG extension: a flow of the profile that is denied, as `opennsg verify` takes it.
        let mut example = json!(Example::new(&policy.nic, &deciding.example));
        example["access"] = json!(deciding.decision.access.as_str());
        example["ruleName"] = json!(deciding.decision.rule_name());
        result["example"] = example;
    }
    Ok(result)
}

/// One NSG stage's entry: the rule deciding the example flow there (judged as if the stage were
/// alone), and, by verbosity, how each rule's fields compare with the profile's.
fn evaluated_group(
    stage: &Stage,
    applied_to: &ResourceId,
    sets: &SetArena,
    profile: &Profile,
    deciding: &Outcome,
    verbosity: Verbosity,
) -> Value {
    let decider = stage_decider(stage, sets, &deciding.example);
    let mut group = json!({
        "networkSecurityGroupId": stage.nsg.as_str(),
        "appliedTo": applied_to.as_str(),
    });
    if let Some(rule) = decider {
        group["matchedRule"] =
            json!({"ruleName": diagnostic_name(rule), "action": rule.access.as_str()});
    }
    let shown = match verbosity {
        Verbosity::Minimum => return group,
        Verbosity::Full => stage.rules.len(),
        Verbosity::Normal => decider
            .and_then(|d| stage.rules.iter().position(|r| std::ptr::eq(r, d)))
            .map_or(stage.rules.len(), |at| at + 1),
    };
    group["rulesEvaluationResult"] = stage.rules[..shown]
        .iter()
        .map(|rule| rule_coverage(rule, sets, profile))
        .collect();
    group
}

/// A rule's name as Azure's diagnostics write it: `UserRule_NAME`, `DefaultRule_NAME`.
fn diagnostic_name(rule: &ResolvedRule) -> String {
    match rule.kind {
        RuleKind::Custom => format!("UserRule_{}", rule.name),
        RuleKind::Default => format!("DefaultRule_{}", rule.name),
    }
}

/// Which fields of `rule` cover the profile's whole field (every protocol, address or port the
/// profile asks about); a side naming ASGs the NIC is not a member of covers nothing.
fn rule_coverage(rule: &ResolvedRule, sets: &SetArena, profile: &Profile) -> Value {
    let side = |side: SideMatch, asked: &Option<PrefixSet>| match side {
        SideMatch::Any => true,
        SideMatch::Set(id) => {
            let set = sets.get(id);
            asked
                .as_ref()
                .map_or_else(|| set.is_everything(), |asked| asked.is_subset(set))
        }
    };
    let ports = |ports: &Ports, asked: &[PortRange]| {
        if profile.has_ports() {
            let ranges = ports.ranges();
            asked.iter().all(|&a| covers_ports(&ranges, a))
        } else {
            // Only portless protocols asked: a rule for them ignores its ports, a `*` rule
            // matches them only with all ports (docs/semantics.md).
            rule.protocol != Protocol::Any || ports.is_full()
        }
    };
    let protocol_covered = profile.protocols.is_subset(&protocol_set(rule.protocol));
    let (source_applies, destination_applies) = match profile.direction {
        Direction::Inbound => (true, rule.applies),
        Direction::Outbound => (rule.applies, true),
    };
    json!({
        "name": diagnostic_name(rule),
        "protocolMatched": protocol_covered,
        "sourceMatched": source_applies && side(rule.source, &profile.source),
        "sourcePortMatched": ports(&rule.source_ports, &[PortRange::ALL]),
        "destinationMatched": destination_applies && side(rule.destination, &profile.destination),
        "destinationPortMatched": ports(&rule.destination_ports, &profile.destination_ports),
    })
}
