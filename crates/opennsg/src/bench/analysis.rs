//! Figures of the exact analyses: lint and diff of workload (a)'s environment (two 1,000-rule
//! NSGs with real tags and prefix lists of up to 4,000 addresses, two NICs each behind both),
//! `query --nic '*'` over 1,000 NICs, and the naive baseline: brute force over the reduced flow
//! space, projected from the reference evaluator's time per flow measured in the same run.

use super::{median, ms, Options};
use crate::inputs;
use crate::workload::{self, SplitMix64};
use anyhow::{Context, Result};
use nsg_analysis::diff::{differences_at, Compare};
use nsg_analysis::lint::lint;
use nsg_analysis::nics::{compile_all, compile_both};
use nsg_analysis::partition::FlowBox;
use nsg_analysis::query::counterexamples;
use nsg_analysis::{Analysis, Precision};
use nsg_model::rule::{ip_proto, Access, Direction, PortRange};
use nsg_model::{Environment, Model};
use nsg_policy::classify::ProtocolSet;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::Settings;
use nsg_tags::Catalog;
use serde_json::Value;
use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

/// Median of `RUNS` timings of `f`, and its last result.
fn timed<T>(mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut samples = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        last = Some(black_box(f()?));
        samples.push(start.elapsed());
    }
    Ok((median(&mut samples), last.expect("RUNS > 0")))
}

fn model_of(env: &Value, catalog: &Catalog) -> Result<Model> {
    let mut environment = Environment::new();
    environment.add_value("generated", env.clone())?;
    inputs::validate(&environment, catalog).context("the generated environment is invalid")
}

/// `env` with the access of `count` of its leading rules flipped: the pull request a diff
/// reviews.
fn edited(env: &Value, count: usize, seed: u64) -> Value {
    let mut env = env.clone();
    let mut rng = SplitMix64::new(seed ^ 0xD1FF);
    let Some(resources) = env.as_array_mut() else {
        return env;
    };
    for _ in 0..count {
        let nsgs: Vec<usize> = (0..resources.len())
            .filter(|&i| resources[i]["type"] == "Microsoft.Network/networkSecurityGroups")
            .collect();
        let nsg = &mut resources[*rng.pick(&nsgs)];
        let Some(rules) = nsg["properties"]["securityRules"].as_array_mut() else {
            continue;
        };
        // Among the first rules, which decide most flows: a random rule of 500 is shadowed.
        let index = rng.below(rules.len().min(20) as u64) as usize;
        let rule = &mut rules[index]["properties"];
        let flipped = if rule["access"] == "Allow" {
            "Deny"
        } else {
            "Allow"
        };
        rule["access"] = flipped.into();
    }
    env
}

pub fn run(options: &Options) -> Result<()> {
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let settings = Settings::default();
    let shape = workload::Shape {
        nsgs: 2,
        rules_per_nsg: 1000,
        tags: catalog.iter().map(|t| t.name.clone()).collect(),
        max_prefixes_per_side: 4000,
    };
    let env = workload::environment(&shape, options.seed);
    let model = model_of(&env, &catalog)?;
    println!(
        "analysis (a): two NSGs of 1000 rules (500 per direction), {} service tags loaded{}, plural sides up to 4000 prefixes, {} NICs each behind both",
        catalog.len(),
        if catalog.is_empty() { " (pass --service-tags FILE for real tags)" } else { "" },
        model.network_interfaces.len()
    );

    let (compile_time, _) = timed(|| Ok(compile_all(&model, &catalog, settings)?))?;
    println!(
        "analysis (a): compiling the NICs for analysis {} (median of {RUNS}; part of each figure below)",
        ms(compile_time)
    );
    let (lint_time, findings) = timed(|| Ok(lint(&model, &catalog, settings, None)?))?;
    println!(
        "analysis (a): lint {} (median of {RUNS}, compiling the NICs included), {} findings",
        ms(lint_time),
        findings.len()
    );

    let new_model = model_of(&edited(&env, 10, options.seed), &catalog)?;
    let (diff_time, found) = timed(|| {
        let (old, new) = compile_both((&model, &catalog), (&new_model, &catalog), settings)?;
        let pairs: Vec<_> = old.iter().zip(&new).collect();
        Ok(differences_at(&pairs, Compare::Verdicts).len())
    })?;
    println!(
        "analysis (a): diff against 10 rules' access flipped {} (median of {RUNS}, compiling both sides included, side by side), {found} difference regions",
        ms(diff_time)
    );

    let nics = compile_all(&model, &catalog, settings)?;
    baseline(&nics[0], settings)?;
    query_every_nic(options, &catalog, settings)
}

/// Brute force over the reduced flow space of one NIC's inbound direction: one flow per
/// combination of atoms (elementary-interval classes), each decided by the reference evaluator.
/// Too long to run; its time is projected from the evaluator's measured time per flow.
fn baseline(policy: &CompiledPolicy, settings: Settings) -> Result<()> {
    let analysis = Analysis::new(
        &[policy],
        Direction::Inbound,
        &FlowBox::everything(),
        &[],
        Precision::FirstMatch,
    );
    let combinations = analysis.atom_combinations();
    let mut regions = 0u64;
    let _ = analysis.walk(|_| {
        regions += 1;
        ControlFlow::Continue(())
    });
    let mut flows = Vec::new();
    let _ = analysis.walk(|leaf| {
        flows.push(*leaf.example());
        if flows.len() == 10_000 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let start = Instant::now();
    for flow in &flows {
        black_box(nsg_policy::decide(
            policy.policy(),
            policy.sets(),
            &settings,
            flow,
        ));
    }
    let per_flow = start.elapsed().as_secs_f64() / flows.len().max(1) as f64;
    println!(
        "analysis (a) baseline: brute force over one NIC's inbound reduced flow space is {combinations:.3e} atom combinations; at the reference evaluator's {:.1} µs per flow (measured on {} flows) that is {:.3e} s, where the walk visits {regions} regions",
        per_flow * 1e6,
        flows.len(),
        combinations * per_flow
    );
    Ok(())
}

/// `query --nic '*' --direction inbound --protocol tcp --remote Internet --local-port 22
/// --expect deny` over 1,000 NICs, each behind a subnet NSG and a NIC NSG of 200 rules.
fn query_every_nic(options: &Options, catalog: &Catalog, settings: Settings) -> Result<()> {
    let shape = workload::Shape {
        nsgs: 1000,
        rules_per_nsg: 200,
        tags: catalog.iter().step_by(7).map(|t| t.name.clone()).collect(),
        max_prefixes_per_side: 16,
    };
    let model = model_of(&workload::environment(&shape, options.seed), catalog)?;
    let (compile_time, _) = timed(|| Ok(compile_all(&model, catalog, settings)?))?;
    println!(
        "analysis query: compiling 1000 NICs {} (median of {RUNS}; part of the figure below)",
        ms(compile_time)
    );
    let (time, failing) = timed(|| {
        let nics = compile_all(&model, catalog, settings)?;
        let spaces: Vec<(&CompiledPolicy, FlowBox)> = nics
            .iter()
            .map(|policy| {
                let internet = policy.sets().get(policy.policy().internet).clone();
                let space = FlowBox {
                    protocols: ProtocolSet::default().with(ip_proto::TCP),
                    local: None,
                    local_ports: vec![PortRange { low: 22, high: 22 }],
                    remote: Some(internet),
                    remote_ports: vec![PortRange::ALL],
                };
                (policy, space)
            })
            .collect();
        Ok(counterexamples(&spaces, Direction::Inbound, Access::Deny)
            .iter()
            .filter(|found| found.is_some())
            .count())
    })?;
    println!(
        "analysis query: 1000 NICs (1000 NSGs x 200 rules), SSH from the Internet denied? {} (median of {RUNS}, compiling every NIC included, the NICs shared out among {} cores), {failing} NICs with a counterexample",
        ms(time),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}
