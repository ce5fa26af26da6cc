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
        if policy.classify(&example).access == expect {
            return ControlFlow::Continue(());
        }
        found = Some(Outcome {
            decision: policy.decide(&example),
            example,
        });
        ControlFlow::Break(())
    });
    found
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
        let decision = policy.decide(&example);
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
