//! Apply times of the nftables rendering, measured in a network namespace of the benchmark's own
//! (so the host's ruleset is never touched), next to a naive rendering with one nft rule per
//! prefix instead of named sets.

use super::namespace::Namespace;
use super::{median, ms};
use crate::inputs;
use crate::workload;
use anyhow::{bail, Context, Result};
use nftables::expr::Expression;
use nftables::stmt::{Match, Statement};
use nsg_model::rule::{Direction, Ports};
use nsg_nft::ruleset::{set_elements, ChainSpec, Ruleset};
use nsg_nft::{plan, render, BoundNic, Kernel};
use nsg_policy::Settings;
use std::time::{Duration, Instant};

/// Most rules the naive rendering is applied with; beyond this nft needs minutes and gigabytes.
const NAIVE_RULE_BUDGET: usize = 50_000;

pub fn run(options: &super::Options) -> Result<()> {
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let w = workload::nsg_workload(&catalog, 1000, 0, options.seed)?;
    let settings = Settings::default();
    let render_attached = |policy: &nsg_policy::NicPolicy, bridge: Option<&str>| {
        render(
            &[BoundNic {
                policy,
                interface: "bench0",
                bridge,
            }],
            &w.sets,
            &settings,
        )
    };
    let render_policy = |policy: &nsg_policy::NicPolicy| render_attached(policy, None);
    let t = Instant::now();
    let rendered = render_policy(&w.policy);
    let render_time = t.elapsed();
    let ruleset = &rendered.ruleset;
    println!(
        "nft workload: (a)'s NIC behind two 1000-rule NSGs, {} service tags loaded, sides up to \
         4000 prefixes: {} nft rules, {} named sets, {} set elements; rendered in {}",
        catalog.len(),
        ruleset.rule_count(),
        ruleset.sets.len(),
        ruleset.set_element_count(),
        ms(render_time)
    );
    let namespace = Namespace::create("nft")?;
    let kernel = Kernel::in_namespace(namespace.name());

    let full = plan::full(ruleset, false);
    let full_times = repeat(7, || kernel.apply(&full))?;
    println!(
        "nft full apply (whole table replaced, one transaction): {} (median of 7; target ≤ 1 s)",
        ms(full_times)
    );
    verify_listing(&kernel, ruleset)?;

    // The shape: one 1000-rule NSG (the NIC's), without the subnet NSG.
    let mut one_nsg = w.policy.clone();
    for stages in [&mut one_nsg.inbound, &mut one_nsg.outbound] {
        stages.retain(|stage| stage.level == nsg_policy::Level::NetworkInterface);
    }
    let one = render_policy(&one_nsg);
    let one_batch = plan::full(&one.ruleset, false);
    let one_time = repeat(7, || kernel.apply(&one_batch))?;
    println!(
        "nft full apply of one 1000-rule NSG ({} nft rules, {} sets, {} elements): {} (median of 7)",
        one.ruleset.rule_count(),
        one.ruleset.sets.len(),
        one.ruleset.set_element_count(),
        ms(one_time)
    );
    kernel.apply(&full)?;

    // One rule changes: the destination ports of one custom rule, back and forth, for rules
    // spread over both NSGs and both directions.
    let (mut samples, rewritten) = one_rule_changes(&kernel, ruleset, &w.policy, render_policy)?;
    let slowest = *samples.iter().max().context("samples")?;
    println!(
        "nft one-rule change: {} median, {} slowest, over {} changes (the destination ports of {} \
         rules across both NSGs and directions, each applied and undone 3 times); nft rules \
         rewritten per change: {} median, {} most (target ≤ 50 ms)",
        ms(median(&mut samples)),
        ms(slowest),
        samples.len(),
        rewritten.len(),
        rewritten[rewritten.len() / 2],
        rewritten.last().copied().unwrap_or(0),
    );

    // The same NIC on a bridge port: the inet table dispatches by bridge and address, and the
    // bridge table guards the port.
    let bridged = render_attached(&w.policy, Some("br-bench"));
    let bridged_full = plan::full(&bridged.ruleset, false);
    let bridged_times = repeat(7, || kernel.apply(&bridged_full))?;
    verify_listing(&kernel, &bridged.ruleset)?;
    let (mut bridged_samples, _) = one_rule_changes(&kernel, &bridged.ruleset, &w.policy, |p| {
        render_attached(p, Some("br-bench"))
    })?;
    println!(
        "nft bridged (the NIC on a port of a bridge; {} nft rules, {} of them in table bridge): \
         full apply {} (median of 7), one-rule change {} median over {} changes",
        bridged.ruleset.rule_count(),
        bridged
            .ruleset
            .chains
            .values()
            .filter(|c| c.table == nsg_nft::Table::Bridge)
            .map(|c| c.rules.len())
            .sum::<usize>(),
        ms(bridged_times),
        ms(median(&mut bridged_samples)),
        bridged_samples.len(),
    );
    kernel.apply(&plan::full(ruleset, true))?;
    let t = Instant::now();
    let current = kernel.current()?.context("the table exists")?;
    let listing = t.elapsed();
    let drift = nsg_nft::Difference::between(&current, ruleset);
    println!(
        "nft drift check (list the table, parse, compare): {}; drift: {}",
        ms(listing),
        if drift.is_empty() {
            "none".to_string()
        } else {
            drift.describe().join(", ")
        }
    );

    let (naive, whole) = naive_rendering(ruleset);
    let naive_rules = naive.rule_count();
    let naive_time = repeat(3, || kernel.apply(&plan::full(&naive, false)))?;
    println!(
        "nft naive baseline (one rule per prefix, no sets): the whole policy would be {whole} rules; \
         applied the first {naive_rules} of them in {} (median of 3), {:.1} µs per rule, \
         so about {:.1} s for all of them",
        ms(naive_time),
        naive_time.as_secs_f64() * 1e6 / naive_rules as f64,
        naive_time.as_secs_f64() * whole as f64 / naive_rules as f64,
    );
    kernel.apply(&plan::remove(&kernel.tables()?))?;
    Ok(())
}

/// Applies and undoes one-rule changes (the destination ports of custom rules at ten positions
/// of every stage) over `ruleset`, the rendering of `policy`: the time of each apply, and the
/// nft rules each change rewrites, sorted.
fn one_rule_changes(
    kernel: &Kernel,
    ruleset: &Ruleset,
    policy: &nsg_policy::NicPolicy,
    render_policy: impl Fn(&nsg_policy::NicPolicy) -> nsg_nft::Rendered,
) -> Result<(Vec<Duration>, Vec<usize>)> {
    let mut samples = Vec::new();
    let mut rewritten = Vec::new();
    for (direction, stage, position) in changed_rule_positions(policy) {
        let mut changed_policy = policy.clone();
        let stages = match direction {
            Direction::Inbound => &mut changed_policy.inbound,
            Direction::Outbound => &mut changed_policy.outbound,
        };
        let rule = &mut stages[stage].rules[position];
        let only_8443 = Ports::Ranges {
            ranges: vec![nsg_model::rule::PortRange {
                low: 8443,
                high: 8443,
            }],
            plural: false,
        };
        rule.destination_ports = if rule.destination_ports == only_8443 {
            Ports::Any
        } else {
            only_8443
        };
        let changed = render_policy(&changed_policy);
        let difference = nsg_nft::Difference::between(ruleset, &changed.ruleset);
        if difference.is_empty() {
            continue; // ports do not matter to this rule's protocol
        }
        rewritten.push(
            difference
                .chains_changed
                .iter()
                .map(|c| changed.ruleset.chains[c].rules.len())
                .sum::<usize>(),
        );
        let forward = plan::incremental(ruleset, &changed.ruleset).context("the change differs")?;
        let back = plan::incremental(&changed.ruleset, ruleset).context("the change differs")?;
        for _ in 0..3 {
            for batch in [&forward, &back] {
                let t = Instant::now();
                kernel.apply(batch)?;
                samples.push(t.elapsed());
            }
        }
    }
    rewritten.sort();
    Ok((samples, rewritten))
}

/// Custom rules at ten positions of every stage: (direction, stage index, rule index).
fn changed_rule_positions(policy: &nsg_policy::NicPolicy) -> Vec<(Direction, usize, usize)> {
    let mut positions = Vec::new();
    for direction in [Direction::Inbound, Direction::Outbound] {
        for (index, stage) in policy.stages(direction).iter().enumerate() {
            let custom = stage
                .rules
                .iter()
                .filter(|r| r.kind == nsg_model::rule::RuleKind::Custom && r.applies)
                .count();
            positions.extend((0..10).map(|k| (direction, index, k * custom / 10)));
        }
    }
    positions
}

fn repeat(
    runs: usize,
    mut f: impl FnMut() -> Result<(), nsg_nft::KernelError>,
) -> Result<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed());
    }
    Ok(median(&mut samples))
}

fn verify_listing(kernel: &Kernel, ruleset: &Ruleset) -> Result<()> {
    let current = kernel.current()?.context("the table exists after apply")?;
    let drift = nsg_nft::Difference::between(&current, ruleset);
    if !drift.is_empty() {
        bail!(
            "the kernel lists a different table: {}",
            drift.describe().join(", ")
        );
    }
    Ok(())
}

/// The naive rendering: every reference to a named set becomes one rule per set element (the
/// product for two references), and no sets are left. Returns it, cut to the first
/// [`NAIVE_RULE_BUDGET`] rules, and the number of rules the whole expansion has.
fn naive_rendering(ruleset: &Ruleset) -> (Ruleset, usize) {
    let mut naive = Ruleset::default();
    let mut whole = 0usize;
    let mut kept = 0usize;
    for (name, chain) in &ruleset.chains {
        let mut rules = Vec::new();
        for rule in &chain.rules {
            let references: Vec<(usize, &str)> = rule
                .statements
                .iter()
                .enumerate()
                .filter_map(|(position, s)| set_reference(s).map(|set| (position, set)))
                .collect();
            whole = whole.saturating_add(
                references
                    .iter()
                    .map(|(_, set)| ruleset.sets[*set].ranges.len())
                    .fold(1usize, usize::saturating_mul),
            );
            let room = NAIVE_RULE_BUDGET - kept;
            let mut expanded = vec![rule.clone()];
            for (position, set) in references {
                let elements = set_elements(&ruleset.sets[set]);
                expanded = expanded
                    .iter()
                    .flat_map(|r| {
                        elements.iter().map(move |element| {
                            let mut one = r.clone();
                            if let Statement::Match(m) = &mut one.statements[position] {
                                m.right = element.clone();
                            }
                            one
                        })
                    })
                    .take(room)
                    .collect();
            }
            expanded.truncate(room);
            kept += expanded.len();
            rules.extend(expanded);
        }
        naive.chains.insert(
            name.clone(),
            ChainSpec {
                table: chain.table,
                hook: chain.hook,
                rules,
            },
        );
    }
    (naive, whole)
}

/// The set a match refers to by name (`@NAME`), if any.
fn set_reference<'a>(statement: &'a Statement<'_>) -> Option<&'a str> {
    let Statement::Match(Match {
        right: Expression::String(text),
        ..
    }) = statement
    else {
        return None;
    };
    text.strip_prefix('@')
}
