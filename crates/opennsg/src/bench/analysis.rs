//! Figures of the exact analyses on workload (a): the partition walk of one NIC, lint, diff and
//! query, next to the size of what they walk.

use super::{median, ms, Options};
use crate::inputs;
use crate::workload;
use anyhow::Result;
use nsg_analysis::{Analysis, FlowBox, Precision};
use nsg_model::rule::Direction;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::Settings;
use std::ops::ControlFlow;
use std::time::Instant;

pub fn run(options: &Options) -> Result<()> {
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let w = workload::nsg_workload(&catalog, 1000, 0, options.seed)?;
    let compiled = CompiledPolicy::build(w.policy.clone(), &w.sets, Settings::default());
    for precision in [Precision::FirstMatch, Precision::SecondMatch] {
        let mut samples = Vec::new();
        let mut regions = 0;
        for _ in 0..3 {
            let start = Instant::now();
            regions = 0;
            for direction in [Direction::Inbound, Direction::Outbound] {
                let analysis = Analysis::new(
                    &[&compiled],
                    direction,
                    &FlowBox::everything(),
                    &[],
                    precision,
                );
                let _ = analysis.walk(|_| {
                    regions += 1;
                    ControlFlow::Continue(())
                });
            }
            samples.push(start.elapsed());
        }
        println!(
            "analysis (a): partition walk of both directions at {precision:?}: {} (median of 3), {regions} regions",
            ms(median(&mut samples))
        );
    }
    Ok(())
}
