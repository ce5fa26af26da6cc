//! The engine against brute force: on generated policies, every flow of the reduced flow space
//! lies in exactly one region, and its decision is that region's example's — also with the
//! region's first match removed, at [`Precision::SecondMatch`].

mod support;

use nsg_analysis::partition::{Analysis, FlowBox, Precision};
use nsg_model::rule::Direction;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::evaluate::{decide_without, RulePosition};
use nsg_policy::{decide, Decision, Flow, Settings, SubscriptionType};
use proptest::prelude::*;
use std::ops::ControlFlow;

struct Part {
    region: nsg_analysis::Region,
    example: Flow,
    /// Per policy, per stage: the rules that may come first.
    matches: Vec<Vec<Vec<usize>>>,
    /// Per policy: the decision read off the region's first matches ([`Leaf::decision`]).
    decisions: Vec<Decision>,
    /// Per policy, per stage: the same without the stage's first match, where it has one.
    without_first: Vec<Vec<Option<Decision>>>,
}

fn parts(analysis: &Analysis<'_>) -> Vec<Part> {
    let mut parts = Vec::new();
    let _ = analysis.walk(|leaf| {
        let matches = analysis
            .policies()
            .iter()
            .enumerate()
            .map(|(p, policy)| {
                (0..policy.policy().stages(analysis.direction()).len())
                    .map(|s| leaf.stage_matches(p, s))
                    .collect()
            })
            .collect::<Vec<Vec<Vec<usize>>>>();
        let decisions = (0..analysis.policies().len())
            .map(|p| leaf.decision(p))
            .collect();
        let without_first = matches
            .iter()
            .enumerate()
            .map(|(p, stages)| {
                stages
                    .iter()
                    .enumerate()
                    .map(|(stage, m)| {
                        let removed = RulePosition {
                            stage,
                            rule: *m.first()?,
                        };
                        let verdict = leaf.verdict(p, Some(removed));
                        Some(analysis.policies()[p].decision_of(verdict, leaf.example()))
                    })
                    .collect()
            })
            .collect();
        parts.push(Part {
            region: leaf.region(),
            example: *leaf.example(),
            matches,
            decisions,
            without_first,
        });
        ControlFlow::Continue(())
    });
    parts
}

/// Every brute-force flow in exactly one part, decided as the part's example is, by every policy,
/// and, with each stage's first match removed, as the example is without it.
fn check(policies: &[&CompiledPolicy], settings: Settings) -> Result<(), TestCaseError> {
    let cases = [Direction::Inbound, Direction::Outbound]
        .into_iter()
        .flat_map(|d| [(d, Precision::FirstMatch), (d, Precision::SecondMatch)]);
    for (direction, precision) in cases {
        let analysis = Analysis::new(policies, direction, &FlowBox::everything(), &[], precision);
        let parts = parts(&analysis);
        for part in &parts {
            prop_assert!(
                part.region.contains(&part.example),
                "{:?} outside {:?}",
                part.example,
                part.region
            );
        }
        for flow in support::brute_flows(policies, direction) {
            let holding: Vec<&Part> = parts.iter().filter(|p| p.region.contains(&flow)).collect();
            prop_assert_eq!(
                holding.len(),
                1,
                "{:?} lies in {} regions",
                flow,
                holding.len()
            );
            let part = holding[0];
            for (p, policy) in policies.iter().enumerate() {
                let (nic, sets) = (policy.policy(), policy.sets());
                let expected = decide(nic, sets, &settings, &flow);
                let got = decide(nic, sets, &settings, &part.example);
                prop_assert_eq!(
                    &expected,
                    &got,
                    "{:?} decided unlike its example {:?}",
                    flow,
                    part.example
                );
                prop_assert_eq!(
                    &expected,
                    &part.decisions[p],
                    "{:?}: the region's first matches",
                    flow
                );
                if precision == Precision::FirstMatch {
                    continue;
                }
                for (stage, matches) in part.matches[p].iter().enumerate() {
                    let Some(&first) = matches.first() else {
                        continue;
                    };
                    let removed = RulePosition { stage, rule: first };
                    let expected = decide_without(nic, sets, &settings, &flow, removed);
                    prop_assert_eq!(
                        &expected,
                        &decide_without(nic, sets, &settings, &part.example, removed),
                        "{:?} without {:?} unlike {:?}",
                        flow,
                        removed,
                        part.example
                    );
                    prop_assert_eq!(
                        Some(&expected),
                        part.without_first[p][stage].as_ref(),
                        "{:?} without {:?}: the region's second match",
                        flow,
                        removed
                    );
                }
            }
        }
    }
    Ok(())
}

fn settings() -> impl Strategy<Value = Settings> {
    prop_oneof![
        Just(SubscriptionType::EnterpriseAgreement),
        Just(SubscriptionType::PayAsYouGo)
    ]
    .prop_map(|subscription_type| Settings { subscription_type })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_flow_is_decided_as_its_regions_example(
        env in support::environment_strategy(6),
        settings in settings(),
    ) {
        let policy = support::nic1(&env, settings);
        check(&[&policy], settings)?;
    }

    /// Two policies of one NIC walked together (a diff's old and new): regions fit both.
    #[test]
    fn regions_of_two_policies_fit_both(
        old in support::environment_strategy(4),
        new in support::environment_strategy(4),
        settings in settings(),
    ) {
        let (old, new) = (support::nic1(&old, settings), support::nic1(&new, settings));
        check(&[&old, &new], settings)?;
    }
}

/// Platform DNS meets only the rules naming `AzurePlatformDNS`, not the first match: a rule
/// allowing everything before a deny naming the tag for some source ports must not hide that
/// deny when regions are merged.
#[test]
fn platform_dns_meets_a_later_tagged_rule_behind_an_allow_all() {
    let nic_rules = [
        serde_json::json!({"protocol": "*", "access": "Allow", "direction": "Outbound", "priority": 100,
            "sourceAddressPrefix": "*", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "*"}),
        serde_json::json!({"protocol": "*", "access": "Deny", "direction": "Outbound", "priority": 110,
            "sourceAddressPrefix": "*", "sourcePortRange": "1000-2000",
            "destinationAddressPrefix": "AzurePlatformDNS", "destinationPortRange": "*"}),
    ];
    let settings = Settings::default();
    let policy = support::nic1(&support::environment(&[], &nic_rules), settings);
    check(&[&policy], settings).unwrap();
}
