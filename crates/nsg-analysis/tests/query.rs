//! Queries against brute force: on generated policies and spaces, `counterexample` finds one
//! exactly when some flow of the space gets the other verdict, and `answer` meets every
//! deciding rule the space's flows meet.

mod support;

use nsg_analysis::partition::FlowBox;
use nsg_analysis::query::{answer, counterexample};
use nsg_model::rule::{Access, Direction, PortRange};
use nsg_policy::classify::ProtocolSet;
use nsg_policy::{decide, Settings};
use nsg_tags::PrefixSet;
use proptest::prelude::*;
use proptest::sample::select;

fn space() -> impl Strategy<Value = FlowBox> {
    let remote = select(
        &[
            None,
            Some("203.0.113.0/24"),
            Some("10.0.0.0/16"),
            Some("168.63.129.16/32"),
            Some("0.0.0.0/1"),
        ][..],
    );
    let ports = select(
        &[
            None,
            Some((22u16, 22u16)),
            Some((0, 1023)),
            Some((53, 53)),
            Some((1500, 1500)),
        ][..],
    );
    let protocols = select(&[None, Some(6u8), Some(17), Some(1)][..]);
    (remote, ports.clone(), ports, protocols).prop_map(
        |(remote, local_ports, remote_ports, protocol)| {
            let ranges = |p: Option<(u16, u16)>| {
                vec![p.map_or(PortRange::ALL, |(low, high)| PortRange { low, high })]
            };
            FlowBox {
                protocols: protocol.map_or(ProtocolSet::ALL, |p| ProtocolSet::default().with(p)),
                local: None,
                local_ports: ranges(local_ports),
                remote: remote.map(|r| PrefixSet::from_nets([r.parse().unwrap()])),
                remote_ports: ranges(remote_ports),
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn queries_agree_with_brute_force(
        env in support::environment_strategy(6),
        space in space(),
        inbound in any::<bool>(),
        allow in any::<bool>(),
    ) {
        let settings = Settings::default();
        let policy = support::nic1(&env, settings);
        let direction = if inbound { Direction::Inbound } else { Direction::Outbound };
        let expect = if allow { Access::Allow } else { Access::Deny };
        let (nic, sets) = (policy.policy(), policy.sets());
        let flows: Vec<_> = support::brute_flows(&[&policy], direction)
            .into_iter()
            .filter(|f| space.contains(f))
            .collect();
        let wrong = flows.iter().find(|f| decide(nic, sets, &settings, f).access != expect);
        match counterexample(&policy, direction, &space, expect) {
            Some(found) => {
                prop_assert!(space.contains(&found.example), "{:?} outside the space", found.example);
                prop_assert_eq!(&found.decision, &decide(nic, sets, &settings, &found.example));
                prop_assert_ne!(found.decision.access, expect);
            }
            None => prop_assert!(wrong.is_none(), "missed counterexample {:?}", wrong),
        }
        let met = answer(&policy, direction, &space);
        for flow in &flows {
            let decision = decide(nic, sets, &settings, flow);
            prop_assert!(
                met.outcomes.iter().any(|o| o.decision.access == decision.access && o.decision.decider == decision.decider),
                "{:?} decided by {:?}, which the answer does not list", flow, decision.decider
            );
        }
        for outcome in &met.outcomes {
            prop_assert!(space.contains(&outcome.example));
        }
    }
}
