//! `opennsg bench`: quick benchmarks that print one line per figure. Every figure is a median
//! over repeated batches, next to the naive baseline measured in the same run; the workloads are
//! generated ([`crate::workload`]) and described in the output.

mod analysis;
mod flow_logs;
mod namespace;
mod nft;

use crate::inputs;
use crate::workload::{self, SplitMix64};
use anyhow::{Context, Result};
use nsg_model::rule::Direction;
use nsg_model::Environment;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::flow_table::FlowTable;
use nsg_policy::packet::{PacketMeta, TcpFlags, Time};
use nsg_policy::{Endpoint, Flow, Resolver, Settings};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Which figures to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Every workload but `nft` and `flow-logs`.
    All,
    /// (a) the compiled classifier on one NIC with two 1,000-rule NSGs.
    Nsg,
    /// (b) ClassBench-format rule sets: generated 1k and 10k, and `--classbench` files.
    Classbench,
    /// (c) the flow table: established lookups, inserts, bytes per flow.
    FlowTable,
    /// IP flow verify on 1,000 NSGs x 200 rules: load, validate, resolve, per query.
    Verify,
    /// nftables apply times, full and one-rule change, against a naive rendering (needs root).
    Nft,
    /// The exact analyses (lint, diff, query) on workload (a) and on 1,000 NICs.
    Analysis,
    /// Flow logging of live traffic: flows/s logged with < 1 % loss, CPU at 10,000 flows/s,
    /// memory per followed connection, in-process events/s (needs root).
    FlowLogs,
}

pub struct Options {
    pub workload: Workload,
    pub service_tags: Vec<PathBuf>,
    pub classbench: Vec<PathBuf>,
    /// Headers to look up in the `classbench` sets instead of generated ones.
    pub trace: Option<PathBuf>,
    pub seed: u64,
    /// Short runs of the workloads that take minutes (`flow-logs`): a smoke test.
    pub quick: bool,
}

pub fn run(options: &Options) -> Result<()> {
    let w = options.workload;
    let want = |x: Workload| w == Workload::All || w == x;
    if want(Workload::Nsg) {
        nsg(options)?;
    }
    if want(Workload::Classbench) {
        classbench(options)?;
    }
    if want(Workload::FlowTable) {
        flow_table(options)?;
    }
    if want(Workload::Verify) {
        verify(options, 1000, 200, 200_000)?;
    }
    if want(Workload::Analysis) {
        analysis::run(options)?;
    }
    // These need root and make namespaces, so only when asked for by name.
    if w == Workload::Nft {
        nft::run(options)?;
    }
    if w == Workload::FlowLogs {
        flow_logs::run(options)?;
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The median of `samples`.
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median time per item of `f` over `items`, in batches of 1,000, repeated for at least
/// `min_time` (and at least 21 batches).
fn per_item<T>(items: &[T], min_time: Duration, mut f: impl FnMut(&T)) -> Duration {
    let batch = 1000.min(items.len()).max(1);
    let mut samples = Vec::new();
    let started = Instant::now();
    let mut offset = 0;
    while samples.len() < 21 || started.elapsed() < min_time {
        let chunk = &items[offset..(offset + batch).min(items.len())];
        let t = Instant::now();
        for item in chunk {
            f(item);
        }
        samples.push(t.elapsed() / chunk.len() as u32);
        offset = if offset + batch >= items.len() {
            0
        } else {
            offset + batch
        };
    }
    median(&mut samples)
}

fn rate(per_item: Duration) -> String {
    format!("{:.2} M/s", 1e-6 / per_item.as_secs_f64())
}

/// Median build time over `runs` builds.
fn build_time<T>(runs: usize, mut build: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::new();
    let mut built = build();
    for _ in 0..runs {
        let t = Instant::now();
        built = black_box(build());
        samples.push(t.elapsed());
    }
    (median(&mut samples), built)
}

fn nsg(options: &Options) -> Result<()> {
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let w = workload::nsg_workload(&catalog, 1000, 100_000, options.seed)?;
    println!(
        "(a) workload: one NIC behind a subnet NSG and a NIC NSG of 1000 rules each (500 per direction), {} service tags loaded{}, plural sides up to 4000 prefixes; {} flows, half aimed into rule sets",
        catalog.len(),
        if catalog.is_empty() { " (pass --service-tags FILE for real tags)" } else { "" },
        w.flows.len()
    );
    let settings = Settings::default();
    let (build, compiled) = build_time(5, || {
        CompiledPolicy::build(w.policy.clone(), &w.sets, settings)
    });
    let (classes, intervals) = compiled.shape();
    println!(
        "(a) build: {} (median of 5), {:.1} MB of classifier, {classes} classes, {intervals} intervals",
        ms(build),
        compiled.memory_bytes() as f64 / 1e6
    );
    let disagreements = w
        .flows
        .iter()
        .filter(|f| compiled.classify(f).access != workload::naive_decide(&w.policy, &w.sets, f))
        .count();
    let (fast, naive) = classification_times(&w, &compiled);
    println!(
        "(a) first-packet lookups, compiled: {} ({:.0} ns each)",
        rate(fast),
        fast.as_nanos()
    );
    println!(
        "(a) first-packet lookups, naive linear scan: {} ({:.0} ns each)",
        rate(naive),
        naive.as_nanos()
    );
    println!(
        "(a) compiled and naive disagree on {disagreements} of {} flows",
        w.flows.len()
    );
    anyhow::ensure!(
        disagreements == 0,
        "the compiled classifier disagrees with the naive scan"
    );
    Ok(())
}

/// Per-flow times of the compiled classifier and of the naive linear scan on workload (a).
fn classification_times(
    w: &workload::NsgWorkload,
    compiled: &CompiledPolicy,
) -> (Duration, Duration) {
    let fast = per_item(&w.flows, Duration::from_millis(500), |f| {
        black_box(compiled.classify(black_box(f)));
    });
    let naive = per_item(&w.flows, Duration::from_millis(500), |f| {
        black_box(workload::naive_decide(&w.policy, &w.sets, black_box(f)));
    });
    (fast, naive)
}

fn classbench(options: &Options) -> Result<()> {
    let mut sets: Vec<(String, Vec<classbench::Rule>)> = Vec::new();
    // Files given on the command line replace the generated sets.
    let generated = if options.classbench.is_empty() {
        vec![
            (classbench::Profile::Acl, 1_000),
            (classbench::Profile::Acl, 10_000),
            (classbench::Profile::Firewall, 10_000),
            (classbench::Profile::IpChain, 10_000),
        ]
    } else {
        Vec::new()
    };
    for (profile, count) in generated {
        let rules = classbench::generate_with(
            profile,
            count,
            options.seed,
            &classbench::GenOptions {
                with_default: true,
                sites: None,
            },
        );
        sets.push((format!("generated {} {}", profile.name(), count), rules));
    }
    for path in &options.classbench {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let rules =
            classbench::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
        sets.push((path.display().to_string(), rules));
    }
    let given_trace = match &options.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                classbench::parse_trace(&text)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )
        }
        None => None,
    };
    for (name, rules) in &sets {
        let trace = match &given_trace {
            Some(headers) => headers.clone(),
            None => classbench::trace(rules, 100_000, options.seed),
        };
        let (build, classifier) = build_time(5, || workload::classbench_classifier(rules));
        let headers: Vec<_> = trace.iter().map(workload::classbench_header).collect();
        let first = |h: &nsg_policy::classify::Header| {
            classifier
                .classes(h)
                .and_then(|c| classifier.first_match(&c, 0, rules.len()))
        };
        let disagreements = trace
            .iter()
            .zip(&headers)
            .filter(|(t, h)| first(h) != classbench::first_match(rules, t))
            .count();
        let fast = per_item(&headers, Duration::from_millis(500), |h| {
            black_box(first(black_box(h)));
        });
        if let Some(path) = &options.trace {
            // 1-based rule numbers, 0 for no match: what another implementation can sum too.
            let checksum: u64 = headers
                .iter()
                .map(|h| first(h).map_or(0, |i| i as u64 + 1))
                .sum();
            println!(
                "(b) classbench {name} on trace {} ({} headers): {} lookups/s, checksum of matched rules {checksum}",
                path.display(),
                headers.len(),
                (1.0 / fast.as_secs_f64()).round()
            );
        }
        let naive = per_item(&trace, Duration::from_millis(300), |h| {
            black_box(classbench::first_match(rules, black_box(h)));
        });
        println!(
            "(b) classbench {name} ({} rules): build {} (median of 5), {:.1} MB, {} classes; lookups compiled {} ({} ns), naive linear scan {} ({} ns); disagreements {disagreements}",
            rules.len(),
            ms(build),
            classifier.memory_bytes() as f64 / 1e6,
            classifier.class_count(),
            rate(fast),
            fast.as_nanos(),
            rate(naive),
            naive.as_nanos()
        );
        anyhow::ensure!(
            disagreements == 0,
            "the classifier disagrees with the naive scan on {name}"
        );
    }
    Ok(())
}

/// A NIC with only the default rules plus an inbound allow-all, so every flow gets a record.
fn open_policy() -> CompiledPolicy {
    let s = workload::SUBSCRIPTION;
    let env = serde_json::json!([
        {"id": format!("{s}/Microsoft.Network/networkSecurityGroups/nsg"), "type": "Microsoft.Network/networkSecurityGroups",
         "properties": {"securityRules": [{"name": "allow-in", "properties": {"protocol": "*", "sourceAddressPrefix": "*",
            "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "*", "access": "Allow",
            "priority": 100, "direction": "Inbound"}}]}},
        {"id": format!("{s}/Microsoft.Network/virtualNetworks/vnet"), "type": "Microsoft.Network/virtualNetworks",
         "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [{"name": "sub", "properties": {
            "addressPrefix": "10.0.0.0/24", "networkSecurityGroup": {"id": format!("{s}/Microsoft.Network/networkSecurityGroups/nsg")}}}]}},
        {"id": format!("{s}/Microsoft.Network/networkInterfaces/nic"), "type": "Microsoft.Network/networkInterfaces",
         "properties": {"ipConfigurations": [{"name": "ip", "properties": {"privateIPAddress": "10.0.0.4",
            "subnet": {"id": format!("{s}/Microsoft.Network/virtualNetworks/vnet/subnets/sub")}}}]}}
    ]);
    let mut environment = Environment::new();
    environment
        .add_value("bench", env)
        .expect("a valid document");
    let catalog = nsg_tags::Catalog::new();
    let model = nsg_model::validate(&environment, &catalog).expect("a valid environment");
    let mut resolver = Resolver::new(&model, &catalog, Settings::default());
    let policy = resolver
        .resolve(&model.network_interfaces[0])
        .expect("resolvable");
    CompiledPolicy::build(policy, &resolver.sets, Settings::default())
}

fn flow_table(options: &Options) -> Result<()> {
    const FLOWS: usize = 1_000_000;
    /// Packets per `process_batch` call.
    const BATCH: usize = 256;
    let seed = options.seed;
    let policy = open_policy();
    let local = Ipv4Addr::new(10, 0, 0, 4);
    let mut rng = SplitMix64::new(seed);
    // Half the flows initiated outbound, half inbound: 500,000 per direction, Azure's limit.
    let firsts: Vec<(PacketMeta, Direction)> = (0..FLOWS)
        .map(|i| {
            let remote = IpAddr::V4(Ipv4Addr::from(
                0x0B00_0000 + (rng.next_u64() as u32 & 0x00FF_FFFF),
            ));
            let (remote_port, local_port) = (rng.below(65536) as u16, 1024 + (i % 60000) as u16);
            let outbound = i % 2 == 0;
            let packet = PacketMeta {
                time: Time::from_secs(1_700_000_000),
                protocol: 6,
                src: if outbound { IpAddr::V4(local) } else { remote },
                dst: if outbound { remote } else { IpAddr::V4(local) },
                src_port: Some(if outbound { local_port } else { remote_port }),
                dst_port: Some(if outbound { remote_port } else { local_port }),
                tcp_flags: Some(TcpFlags {
                    syn: true,
                    ..TcpFlags::default()
                }),
                icmp: None,
                length: 60,
            };
            (
                packet,
                if outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
            )
        })
        .collect();
    // Inserts, packet by packet and in batches (into a second table, dropped after).
    let insert_into = |table: &mut FlowTable, batch: Option<usize>| {
        let mut events = Vec::new();
        let mut outcomes = Vec::new();
        let t = Instant::now();
        let mut created = 0;
        match batch {
            None => {
                for (packet, direction) in &firsts {
                    created += usize::from(
                        table
                            .process(&policy, packet, *direction, &mut events)
                            .forwarded(),
                    );
                    events.clear();
                }
            }
            Some(size) => {
                for chunk in firsts.chunks(size) {
                    table.process_batch(&policy, chunk, &mut events, &mut outcomes);
                    created += outcomes.iter().filter(|o| o.forwarded()).count();
                    events.clear();
                    outcomes.clear();
                }
            }
        }
        (t.elapsed() / FLOWS as u32, created)
    };
    let mut table = FlowTable::default();
    let (insert, created) = insert_into(&mut table, None);
    let (insert_batched, _) = insert_into(&mut FlowTable::default(), Some(BATCH));
    println!(
        "(c) flow table: {created} flows in one NIC's table ({} inbound, {} outbound); {} bytes per IPv4 flow (key + record + tag; {} per IPv6 flow), {:.0} bytes per flow allocated",
        table.flows_in(Direction::Inbound),
        table.flows_in(Direction::Outbound),
        FlowTable::bytes_per_flow(),
        FlowTable::bytes_per_flow_v6(),
        table.allocated_bytes() as f64 / table.len() as f64
    );
    println!(
        "(c) inserts (first packets, classified and recorded): {} ({} ns each); in batches of {BATCH}: {} ({} ns)",
        rate(insert),
        insert.as_nanos(),
        rate(insert_batched),
        insert_batched.as_nanos()
    );
    // Established traffic: the replies, in a random order over all flows (the worst case for
    // caches), and in trains of 16 packets per flow (how TCP segments arrive). The packets are
    // contiguous in memory, as in a receive ring.
    let replies: Vec<(PacketMeta, Direction)> = firsts
        .iter()
        .map(|(p, d)| {
            let reply = PacketMeta {
                src: p.dst,
                dst: p.src,
                src_port: p.dst_port,
                dst_port: p.src_port,
                tcp_flags: Some(TcpFlags {
                    ack: true,
                    ..TcpFlags::default()
                }),
                time: Time::from_secs(1_700_000_001),
                ..*p
            };
            let back = if *d == Direction::Outbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            (reply, back)
        })
        .collect();
    let mut shuffled: Vec<usize> = (0..FLOWS).collect();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let random: Vec<(PacketMeta, Direction)> = shuffled.iter().map(|&i| replies[i]).collect();
    let trains: Vec<(PacketMeta, Direction)> = shuffled
        .iter()
        .take(FLOWS / 16)
        .flat_map(|&i| std::iter::repeat_n(replies[i], 16))
        .collect();
    let mut events = Vec::new();
    let mut outcomes = Vec::new();
    let mut per_packet = |packets: &[(PacketMeta, Direction)]| {
        per_item(packets, Duration::from_millis(700), |(p, d)| {
            black_box(table.process(&policy, p, *d, &mut events));
        })
    };
    let (random_time, train_time) = (per_packet(&random), per_packet(&trains));
    // Batched: the median over runs of 1,024 packets (`per_item`'s batches), passed `size` at a
    // time to `process_batch`.
    let mut batched = |packets: &[(PacketMeta, Direction)], size: usize| {
        let runs: Vec<&[(PacketMeta, Direction)]> = packets.chunks(1024).collect();
        per_item(&runs, Duration::from_millis(700), |run| {
            for batch in run.chunks(size) {
                table.process_batch(&policy, batch, &mut events, &mut outcomes);
                black_box(&outcomes);
                outcomes.clear();
            }
        }) / 1024
    };
    let (random_batched, train_batched) = (batched(&random, BATCH), batched(&trains, BATCH));
    let (random_small, train_small) = (batched(&random, 32), batched(&trains, 32));
    println!(
        "(c) established lookups over 1M flows, packet by packet: random order {} ({} ns); in trains of 16 packets: {} ({} ns)",
        rate(random_time),
        random_time.as_nanos(),
        rate(train_time),
        train_time.as_nanos()
    );
    println!(
        "(c) established lookups over 1M flows, in batches of {BATCH} (of 32): random order {} ({:.1} ns) ({}); in trains of 16 packets: {} ({:.1} ns) ({})",
        rate(random_batched),
        random_batched.as_secs_f64() * 1e9,
        rate(random_small),
        rate(train_batched),
        train_batched.as_secs_f64() * 1e9,
        rate(train_small)
    );
    // The baseline: no flow table, every packet classified — under workload (a)'s policy.
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let w = workload::nsg_workload(&catalog, 1000, 100_000, seed)?;
    let compiled = CompiledPolicy::build(w.policy.clone(), &w.sets, Settings::default());
    let (fast, naive) = classification_times(&w, &compiled);
    println!(
        "(c) baseline without a flow table, every packet classified under workload (a)'s policy: compiled {} ({} ns), naive linear scan {} ({} ns)",
        rate(fast),
        fast.as_nanos(),
        rate(naive),
        naive.as_nanos()
    );
    Ok(())
}

/// IP flow verify at scale: load and resolve an environment of `nsgs` NSGs × `rules_per_nsg`
/// rules (with the given tag files), then time single queries on one NIC.
pub fn verify(options: &Options, nsgs: usize, rules_per_nsg: usize, queries: usize) -> Result<()> {
    let started = Instant::now();
    let catalog = inputs::load_service_tags(&options.service_tags)?;
    let tags_time = started.elapsed();
    // Rules name real tags when a file is loaded: global and regional ones, big and small.
    let tags: Vec<String> = catalog.iter().step_by(7).map(|t| t.name.clone()).collect();
    let shape = workload::Shape {
        nsgs,
        rules_per_nsg,
        tags,
        max_prefixes_per_side: 16,
    };
    let text = workload::environment(&shape, options.seed).to_string();
    println!(
        "verify workload: {} NSGs x {} rules, {} NICs (each behind a subnet NSG and a NIC NSG), {} service tags loaded, environment JSON {:.1} MB",
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
    let nic = crate::query::find_nic(&model, &workload::nic_name(nsgs / 2))?;
    let t = Instant::now();
    let policy = resolver.resolve(nic)?;
    let resolve_time = t.elapsed();
    println!("verify load: service tag files {}", ms(tags_time));
    println!("verify load: parse environment JSON {}", ms(parse_time));
    println!("verify load: validate {}", ms(validate_time));
    println!("verify resolve one NIC (2 NSGs) {}", ms(resolve_time));
    println!(
        "verify load + resolve total {}",
        ms(tags_time + parse_time + validate_time + resolve_time)
    );
    let mut rng = SplitMix64::new(options.seed ^ 0xF10);
    let flows: Vec<Flow> = (0..queries.max(1000))
        .map(|_| {
            let v = rng.next_u64();
            let remote = Ipv4Addr::new(
                11 + ((v >> 8) % 180) as u8,
                (v >> 16) as u8,
                (v >> 24) as u8,
                (v >> 32) as u8,
            );
            let port = |r: &mut SplitMix64| {
                Some(*r.pick(&[22u16, 80, 443, 1433, 3389, 8080, 50000, 12345]))
            };
            Flow {
                direction: if v >> 41 & 1 == 0 {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                protocol: if v >> 40 & 1 == 0 { 6 } else { 17 },
                local: Endpoint {
                    ip: policy.addresses[0].addr(),
                    port: port(&mut rng),
                },
                remote: Endpoint {
                    ip: IpAddr::V4(remote),
                    port: port(&mut rng),
                },
            }
        })
        .collect();
    let per_query = per_item(&flows, Duration::from_millis(500), |f| {
        black_box(nsg_policy::decide(
            &policy,
            &resolver.sets,
            &settings,
            black_box(f),
        ));
    });
    println!(
        "verify per query (reference evaluator with its explanation): {:.2} µs ({})",
        per_query.as_secs_f64() * 1e6,
        rate(per_query)
    );
    Ok(())
}
