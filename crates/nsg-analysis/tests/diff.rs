//! Diff against brute force: on two generated environments, a flow of the reduced flow space
//! lies in a reported difference exactly when its outcome differs, with the sides reported.

mod support;

use nsg_analysis::diff::{differences, Compare};
use nsg_model::rule::Direction;
use nsg_policy::{decide, Settings};
use proptest::prelude::*;

fn side_of(d: &nsg_policy::Decision) -> (&'static str, Option<String>) {
    (d.access.as_str(), d.rule_name())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn diff_agrees_with_brute_force(
        old in support::environment_strategy(4),
        new in support::environment_strategy(4),
        rules in any::<bool>(),
    ) {
        let settings = Settings::default();
        let (old, new) = (support::nic1(&old, settings), support::nic1(&new, settings));
        let compare = if rules { Compare::Rules } else { Compare::Verdicts };
        let found = differences(&old, &new, compare);
        for d in &found {
            prop_assert_ne!(&d.old, &d.new);
        }
        for direction in [Direction::Inbound, Direction::Outbound] {
            let name = if direction == Direction::Inbound { "Inbound" } else { "Outbound" };
            // The reported regions as sets again, to test membership.
            let analysis_regions: Vec<_> = found.iter().filter(|d| d.direction == name).collect();
            for flow in support::brute_flows(&[&old, &new], direction) {
                let o = decide(old.policy(), old.sets(), &settings, &flow);
                let n = decide(new.policy(), new.sets(), &settings, &flow);
                let differs = match compare {
                    Compare::Verdicts => o.access != n.access,
                    Compare::Rules => side_of(&o) != side_of(&n),
                };
                let example = nsg_analysis::example::Example::new(&new.policy().nic, &flow);
                let holding: Vec<_> = analysis_regions
                    .iter()
                    .filter(|d| support::report_contains(&d.region, &example))
                    .collect();
                prop_assert_eq!(holding.len(), usize::from(differs), "{:?}: {:?} vs {:?}, in {} regions", flow, o, n, holding.len());
                if let Some(d) = holding.first() {
                    prop_assert_eq!((d.old.access, d.old.rule_name.clone()), side_of(&o));
                    prop_assert_eq!((d.new.access, d.new.rule_name.clone()), side_of(&n));
                }
            }
            for d in &analysis_regions {
                prop_assert!(support::report_contains(&d.region, &d.example), "example outside its region: {:?}", d);
            }
        }
    }
}
