//! Lint against brute force: on generated environments (two NICs, nic1 behind both NSGs, nic2
//! behind the subnet's), every rule finding holds exactly when brute force over the reduced flow
//! space says so, and every example is confirmed by the reference evaluator.

mod support;

use nsg_analysis::lint::{lint, Code, Finding, MANAGEMENT_PORTS};
use nsg_analysis::nics::compile_all;
use nsg_model::rule::{Access, Direction, RuleKind};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::evaluate::{self, decide_without, match_fields, RulePosition};
use nsg_policy::resolve::Stage;
use nsg_policy::{decide, Flow, Settings};
use nsg_tags::Catalog;
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};

/// What brute force knows of one rule (by NSG name and rule name).
#[derive(Default, Debug)]
struct Truth {
    matches: bool,
    decides: bool,
    matters: bool,
    covered_by: BTreeSet<String>,
    permissive_management: bool,
}

/// The reference's stage-local decider, as an index into the stage; none for DHCP, which no
/// rule decides.
fn stage_decider(policy: &CompiledPolicy, stage: &Stage, flow: &Flow) -> Option<usize> {
    if evaluate::is_dhcp(flow) {
        return None;
    }
    let decider = evaluate::stage_decider(stage, policy.sets(), flow)?;
    stage.rules.iter().position(|r| std::ptr::eq(r, decider))
}

fn truths(nics: &[CompiledPolicy], settings: Settings) -> HashMap<(String, String), Truth> {
    let mut truths: HashMap<(String, String), Truth> = HashMap::new();
    for policy in nics {
        let (nic, sets) = (policy.policy(), policy.sets());
        for direction in [Direction::Inbound, Direction::Outbound] {
            let stages = nic.stages(direction);
            let management_edges: Vec<u16> = MANAGEMENT_PORTS
                .iter()
                .flat_map(|&(low, high, _)| [low, high + 1])
                .collect();
            for flow in support::brute_flows_with(&[policy], direction, &management_edges) {
                let decision = decide(nic, sets, &settings, &flow);
                for (s, stage) in stages.iter().enumerate() {
                    let decider = stage_decider(policy, stage, &flow);
                    for (r, rule) in stage.rules.iter().enumerate() {
                        if rule.kind != RuleKind::Custom {
                            continue;
                        }
                        let truth = truths
                            .entry((stage.nsg.name().to_string(), rule.name.clone()))
                            .or_default();
                        let matched = rule.applies && match_fields(rule, sets, &flow).all();
                        truth.matches |= matched;
                        if decider == Some(r) {
                            truth.decides = true;
                            let removed = RulePosition { stage: s, rule: r };
                            truth.matters |= decide_without(nic, sets, &settings, &flow, removed)
                                .access
                                != decision.access;
                            let evaluated = decision
                                .stages
                                .iter()
                                .any(|v| v.nsg == stage.nsg && v.rule == rule.name);
                            let management = flow.local.port.is_some_and(|p| {
                                MANAGEMENT_PORTS.iter().any(|&(l, h, _)| l <= p && p <= h)
                            });
                            truth.permissive_management |= direction == Direction::Inbound
                                && evaluated
                                && decision.access == Access::Allow
                                && rule.access == Access::Allow
                                && management
                                && sets.get(nic.internet).contains(flow.remote.ip);
                        } else if matched {
                            if let Some(d) = decider {
                                truth.covered_by.insert(stage.rules[d].name.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    truths
}

fn finding<'f>(findings: &'f [Finding], code: Code, nsg: &str, rule: &str) -> Option<&'f Finding> {
    findings.iter().find(|f| {
        f.code == code
            && f.rule.as_deref() == Some(rule)
            && f.nsg
                .as_deref()
                .is_some_and(|n| n.ends_with(&format!("/{nsg}")))
    })
}

/// The example's flow, as the reference sees it.
fn flow_of(example: &nsg_analysis::example::Example) -> (String, Flow) {
    let direction = if example.direction == "Inbound" {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let protocol = support::protocol_number(&example.protocol);
    let source = nsg_policy::Endpoint {
        ip: example.source,
        port: example.source_port,
    };
    let destination = nsg_policy::Endpoint {
        ip: example.destination,
        port: example.destination_port,
    };
    let (local, remote) = match direction {
        Direction::Inbound => (destination, source),
        Direction::Outbound => (source, destination),
    };
    (
        example.nic.clone(),
        Flow {
            direction,
            protocol,
            local,
            remote,
        },
    )
}

/// A rule matching only DNS to the platform (168.63.129.16:53) decides nothing, because only
/// rules naming AzurePlatformDNS decide such flows; lint said it was all DHCP, and the oracle
/// expected DHCP only.
#[test]
fn shadowed_by_platform_dns_is_not_called_dhcp() {
    let rule = serde_json::json!({"protocol": "*", "access": "Deny", "direction": "Outbound",
        "priority": 150, "sourceAddressPrefix": "10.0.0.0/16",
        "destinationAddressPrefix": "168.63.129.16", "sourcePortRange": "*",
        "destinationPortRange": "53"});
    let model = support::model(&support::environment(&[rule], &[]));
    let findings = lint(&model, &Catalog::new(), Settings::default(), None).unwrap();
    let shadowed = finding(&findings, Code::ShadowedRule, "subnet-nsg", "r0").expect("shadowed");
    assert!(shadowed.covered_by.is_empty(), "{shadowed:?}");
    assert!(
        shadowed
            .message
            .contains("only rules naming AzurePlatformDNS decide"),
        "{}",
        shadowed.message
    );
    let (_, flow) = flow_of(shadowed.example.as_ref().expect("example"));
    assert_eq!(
        evaluate::platform_service(&flow),
        Some(nsg_policy::resolve::PlatformService::Dns)
    );
}

proptest! {
    // Each case brute-forces two NICs with the management ports' edges: a few seconds unoptimised.
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn lint_agrees_with_brute_force(env in support::environment_strategy(6)) {
        let settings = Settings::default();
        let model = support::model(&env);
        let findings = lint(&model, &Catalog::new(), settings, None).unwrap();
        let nics = compile_all(&model, &Catalog::new(), settings).unwrap();
        let truths = truths(&nics, settings);
        for ((nsg, rule), truth) in &truths {
            let never = finding(&findings, Code::NeverApplies, nsg, rule);
            let shadowed = finding(&findings, Code::ShadowedRule, nsg, rule);
            let redundant = finding(&findings, Code::RedundantRule, nsg, rule);
            let permissive = finding(&findings, Code::OverlyPermissive, nsg, rule)
                .filter(|f| f.severity == nsg_analysis::lint::Severity::Error);
            prop_assert_eq!(never.is_some(), !truth.matches, "never-applies of {}/{}: {:?}", nsg, rule, truth);
            prop_assert_eq!(shadowed.is_some(), truth.matches && !truth.decides, "shadowed {}/{}: {:?}", nsg, rule, truth);
            prop_assert_eq!(redundant.is_some(), truth.decides && !truth.matters, "redundant {}/{}: {:?}", nsg, rule, truth);
            prop_assert_eq!(permissive.is_some(), truth.permissive_management, "permissive {}/{}: {:?}", nsg, rule, truth);
            if let Some(f) = shadowed {
                let covered: BTreeSet<String> = f.covered_by.iter().cloned().collect();
                prop_assert_eq!(&covered, &truth.covered_by, "coveredBy of {}/{}", nsg, rule);
            }
            // Examples: a redundant or permissive rule's example is decided by it; a shadowed
            // rule's by one of its coverers.
            for f in [shadowed, redundant, permissive].into_iter().flatten() {
                let example = f.example.as_ref().expect("rule findings carry an example");
                let (nic_id, flow) = flow_of(example);
                let policy = nics.iter().find(|p| p.policy().nic.to_string() == nic_id).unwrap();
                let stages = policy.policy().stages(flow.direction);
                let stage = stages.iter().find(|s| s.nsg.name() == nsg).unwrap();
                let decider = stage_decider(policy, stage, &flow).map(|d| stage.rules[d].name.clone());
                if f.code == Code::ShadowedRule {
                    match decider {
                        Some(d) => prop_assert!(f.covered_by.contains(&d), "{:?}", f),
                        None => prop_assert!(
                            f.covered_by.is_empty()
                                && evaluate::is_platform_traffic(&flow),
                            "{:?}", f
                        ),
                    }
                    let r = stage.rules.iter().find(|r| &r.name == rule).unwrap();
                    prop_assert!(match_fields(r, policy.sets(), &flow).all(), "{:?} not matched by {}", flow, rule);
                } else {
                    prop_assert_eq!(decider.as_deref(), Some(rule.as_str()), "{:?}", f);
                }
            }
        }
    }
}
