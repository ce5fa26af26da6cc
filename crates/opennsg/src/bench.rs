//! `opennsg bench`: quick benchmarks that print one line per figure. Medians over repeated
//! batches; the workloads are generated (see [`crate::workload`]) and described in the output.

use crate::inputs;
use crate::workload::{self, SplitMix64};
use anyhow::{Context, Result};
use nsg_model::rule::{ip_proto, Direction};
use nsg_model::Environment;
use nsg_policy::{Endpoint, Flow, Resolver, Settings};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `opennsg bench verify`.
pub struct VerifyBench {
    pub nsgs: usize,
    pub rules_per_nsg: usize,
    pub service_tags: Vec<PathBuf>,
    pub queries: usize,
    pub seed: u64,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The median of `samples` (sorted in place).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// IP flow verify at scale: load and resolve an environment of `nsgs` NSGs × `rules_per_nsg`
/// rules (with the given tag files), then time single queries on one NIC.
pub fn verify(options: &VerifyBench) -> Result<()> {
    let started = Instant::now();
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let tags_time = started.elapsed();
    // Rules name real tags when a file is loaded: global and regional ones, big and small.
    let tags: Vec<String> = catalog.iter().step_by(7).map(|t| t.name.clone()).collect();
    let shape = workload::Shape {
        nsgs: options.nsgs,
        rules_per_nsg: options.rules_per_nsg,
        tags,
        max_prefixes_per_side: 16,
    };
    let text = workload::environment(&shape, options.seed).to_string();
    println!(
        "workload: {} NSGs x {} rules, {} NICs (each behind a subnet NSG and a NIC NSG), {} service tags loaded, environment JSON {:.1} MB",
        shape.nsgs,
        shape.rules_per_nsg,
        shape.nsgs,
        catalog.len(),
        text.len() as f64 / 1e6
    );

    let t = Instant::now();
    let mut env = Environment::new();
    env.add_json("generated", &text)?;
    let parse_time = t.elapsed();
    let t = Instant::now();
    let model = inputs::validate(&env, &catalog).context("the generated environment is invalid")?;
    let validate_time = t.elapsed();
    let settings = Settings::default();
    let mut resolver = Resolver::new(&model, &catalog, settings);
    let nic_name = workload::nic_name(options.nsgs / 2);
    let nic = crate::query::find_nic(&model, &nic_name)?;
    let t = Instant::now();
    let policy = resolver.resolve(nic)?;
    let resolve_time = t.elapsed();
    println!("load: service tag files           {}", ms(tags_time));
    println!("load: parse environment JSON      {}", ms(parse_time));
    println!("load: validate                    {}", ms(validate_time));
    println!("resolve one NIC (2 NSGs)          {}", ms(resolve_time));
    println!(
        "load + resolve total              {}",
        ms(tags_time + parse_time + validate_time + resolve_time)
    );

    let local = policy.addresses[0].addr();
    let mut rng = SplitMix64::new(options.seed ^ 0xF10);
    let flows: Vec<Flow> = (0..options.queries.max(1000))
        .map(|_| random_flow(&mut rng, local))
        .collect();
    let batch = 1000;
    let mut samples = Vec::new();
    let mut denied = 0usize;
    for chunk in flows.chunks(batch) {
        let t = Instant::now();
        for flow in chunk {
            let d = nsg_policy::decide(&policy, &resolver.sets, &settings, flow);
            denied += usize::from(d.access == nsg_model::rule::Access::Deny);
        }
        samples.push(t.elapsed() / chunk.len() as u32);
    }
    let per_query = median(&mut samples);
    println!(
        "verify per query (reference evaluator, median of {} batches of {batch}): {:.2} µs ({:.0} queries/s); {:.0}% denied",
        samples.len(),
        per_query.as_secs_f64() * 1e6,
        1.0 / per_query.as_secs_f64(),
        100.0 * denied as f64 / flows.len() as f64
    );
    Ok(())
}

fn random_flow(rng: &mut SplitMix64, local: IpAddr) -> Flow {
    let v = rng.next_u64();
    let remote = if v.is_multiple_of(5) {
        Ipv4Addr::new(10, (v >> 8) as u8 % 4, (v >> 16) as u8, 4)
    } else {
        Ipv4Addr::new(
            11 + ((v >> 8) % 180) as u8,
            (v >> 16) as u8,
            (v >> 24) as u8,
            (v >> 32) as u8,
        )
    };
    let protocol = if v >> 40 & 1 == 0 {
        ip_proto::TCP
    } else {
        ip_proto::UDP
    };
    let port =
        |r: &mut SplitMix64| Some(*r.pick(&[22u16, 80, 443, 1433, 3389, 8080, 50000, 12345]));
    Flow {
        direction: if v >> 41 & 1 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        protocol,
        local: Endpoint {
            ip: local,
            port: port(rng),
        },
        remote: Endpoint {
            ip: IpAddr::V4(remote),
            port: port(rng),
        },
    }
}
