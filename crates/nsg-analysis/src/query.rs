//! Questions about a whole set of flows at one NIC: does every flow get the expected verdict,
//! and which verdicts and deciding rules does the set meet?

use crate::partition::{Analysis, FlowBox, Precision};
use nsg_model::rule::{Access, Direction};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::{Decision, Flow};
use std::ops::ControlFlow;

/// A flow of the space and its decision (the reference's, through the compiled policy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub example: Flow,
    pub decision: Decision,
}

/// The first flow of `space` whose verdict is not `expect`, if any: `None` proves that every
/// flow of the space gets `expect`.
pub fn counterexample(
    policy: &CompiledPolicy,
    direction: Direction,
    space: &FlowBox,
    expect: Access,
) -> Option<Outcome> {
    let analysis = Analysis::new(&[policy], direction, space, &[], Precision::FirstMatch);
    let mut found = None;
    let _ = analysis.walk(|leaf| {
        let example = *leaf.example();
        let verdict = leaf.verdict(0, None);
        if verdict.access == expect {
            return ControlFlow::Continue(());
        }
        found = Some(Outcome {
            decision: policy.decision_of(verdict, &example),
            example,
        });
        ControlFlow::Break(())
    });
    found
}

/// [`counterexample`] of each NIC's space, the NICs shared out among the machine's cores.
pub fn counterexamples(
    asked: &[(&CompiledPolicy, FlowBox)],
    direction: Direction,
    expect: Access,
) -> Vec<Option<Outcome>> {
    crate::cores::map_in_order(asked, |(policy, space)| {
        counterexample(policy, direction, space, expect)
    })
}

/// What a space of flows meets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceAnswer {
    /// One outcome per distinct deciding rule (and verdict), in the order the walk met them.
    pub outcomes: Vec<Outcome>,
}

impl SpaceAnswer {
    /// The verdict every flow of the space gets, if they all get the same one.
    pub fn uniform(&self) -> Option<Access> {
        let first = self.outcomes.first()?.decision.access;
        self.outcomes
            .iter()
            .all(|o| o.decision.access == first)
            .then_some(first)
    }

    /// An outcome with verdict `access`, if any flow of the space gets it.
    pub fn with(&self, access: Access) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.decision.access == access)
    }

    /// Whether the space is empty (no flow of it exists at this NIC).
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }
}

/// Every verdict and deciding rule the flows of `space` meet, each with an example.
pub fn answer(policy: &CompiledPolicy, direction: Direction, space: &FlowBox) -> SpaceAnswer {
    let analysis = Analysis::new(&[policy], direction, space, &[], Precision::FirstMatch);
    let mut answer = SpaceAnswer::default();
    let _ = analysis.walk(|leaf| {
        let example = *leaf.example();
        let decision = leaf.decision(0);
        let known = answer.outcomes.iter().any(|o| {
            o.decision.access == decision.access && o.decision.decider == decision.decider
        });
        if !known {
            answer.outcomes.push(Outcome { example, decision });
        }
        ControlFlow::Continue(())
    });
    answer
}
