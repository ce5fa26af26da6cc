//! `cargo bench -p opennsg`: the data plane's figures with criterion, each next to the naive
//! linear scan. The same workloads as `opennsg bench` (see `opennsg::workload`).
//!
//! Workload (a) uses Microsoft's Public service tag file from `../shared/data` when present.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::flow_table::FlowTable;
use nsg_policy::packet::{PacketMeta, TcpFlags, Time};
use nsg_policy::Settings;
use opennsg::workload;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

fn catalog() -> nsg_tags::Catalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/service-tags/ServiceTags_Public_20251028.json");
    opennsg::inputs::load_service_tags(&[path]).unwrap_or_default()
}

fn nsg_classifier(c: &mut Criterion) {
    let catalog = catalog();
    // 100,000 distinct flows, as `opennsg bench`: fewer would let the touched classes sit in cache.
    let w = workload::nsg_workload(&catalog, 1000, 100_000, 1).expect("workload");
    let compiled = CompiledPolicy::build(w.policy.clone(), &w.sets, Settings::default());
    let mut group = c.benchmark_group("a_nsg_1000_rules");
    group.throughput(Throughput::Elements(w.flows.len() as u64));
    group.bench_function("compiled", |b| {
        b.iter(|| {
            for flow in &w.flows {
                black_box(compiled.classify(black_box(flow)));
            }
        })
    });
    group.sample_size(10);
    group.bench_function("naive_linear_scan", |b| {
        b.iter(|| {
            for flow in &w.flows {
                black_box(workload::naive_decide(&w.policy, &w.sets, black_box(flow)));
            }
        })
    });
    group.bench_function("build", |b| {
        b.iter_batched(
            || w.policy.clone(),
            |p| CompiledPolicy::build(p, &w.sets, Settings::default()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn classbench(c: &mut Criterion) {
    for count in [1_000, 10_000] {
        let rules = classbench::generate_with(
            classbench::Profile::Acl,
            count,
            1,
            &classbench::GenOptions {
                with_default: true,
                sites: None,
            },
        );
        let trace = classbench::trace(&rules, 10_000, 1);
        let headers: Vec<_> = trace.iter().map(workload::classbench_header).collect();
        let classifier = workload::classbench_classifier(&rules);
        let mut group = c.benchmark_group(format!("b_classbench_acl_{count}"));
        group.throughput(Throughput::Elements(headers.len() as u64));
        group.bench_function("compiled", |b| {
            b.iter(|| {
                for h in &headers {
                    black_box(
                        classifier
                            .classes(h)
                            .and_then(|cl| classifier.first_match(&cl, 0, rules.len())),
                    );
                }
            })
        });
        group.sample_size(10);
        group.bench_function("naive_linear_scan", |b| {
            b.iter(|| {
                for h in &trace {
                    black_box(classbench::first_match(&rules, black_box(h)));
                }
            })
        });
        group.bench_function("build", |b| {
            b.iter(|| workload::classbench_classifier(black_box(&rules)))
        });
        group.finish();
    }
}

fn flow_table(c: &mut Criterion) {
    const FLOWS: u32 = 1_000_000;
    /// Packets per `process_batch` call.
    const BATCH: usize = 256;
    let catalog = nsg_tags::Catalog::new();
    let w = workload::nsg_workload(&catalog, 0, 0, 1).expect("workload");
    let policy = CompiledPolicy::build(w.policy, &w.sets, Settings::default());
    let nic = policy.policy().addresses[0].addr();
    let syn = |i: u32| PacketMeta {
        time: Time::from_secs(1_700_000_000),
        protocol: 6,
        src: nic,
        dst: IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + i)),
        src_port: Some(40000),
        dst_port: Some(443),
        tcp_flags: Some(TcpFlags {
            syn: true,
            ..TcpFlags::default()
        }),
        icmp: None,
        length: 60,
    };
    let reply = |i: u32| PacketMeta {
        src: IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + i)),
        dst: nic,
        src_port: Some(443),
        dst_port: Some(40000),
        tcp_flags: Some(TcpFlags {
            ack: true,
            ..TcpFlags::default()
        }),
        ..syn(i)
    };
    let mut table = FlowTable::with_capacity(FLOWS as usize);
    let mut events = Vec::new();
    for i in 0..FLOWS {
        table.process(
            &policy,
            &syn(i),
            nsg_model::rule::Direction::Outbound,
            &mut events,
        );
        events.clear();
    }
    // Replies of every flow in a random order (the worst case for caches), and in trains of 16
    // packets per flow (how TCP segments arrive).
    let mut rng = workload::SplitMix64::new(7);
    let mut order: Vec<u32> = (0..FLOWS).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let random: Vec<PacketMeta> = order.iter().map(|&i| reply(i)).collect();
    let trains: Vec<PacketMeta> = order
        .iter()
        .take(FLOWS as usize / 16)
        .flat_map(|&i| [reply(i); 16])
        .collect();
    let mut group = c.benchmark_group("c_flow_table_1m_flows");
    group.sample_size(10);
    for (name, packets) in [
        ("established_random_order", &random),
        ("established_trains_of_16", &trains),
    ] {
        group.throughput(Throughput::Elements(packets.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                for p in packets {
                    black_box(table.process(
                        &policy,
                        p,
                        nsg_model::rule::Direction::Inbound,
                        &mut events,
                    ));
                }
            })
        });
        // The same packets through `process_batch`, `BATCH` at a time.
        let batch: Vec<(PacketMeta, nsg_model::rule::Direction)> = packets
            .iter()
            .map(|p| (*p, nsg_model::rule::Direction::Inbound))
            .collect();
        let mut outcomes = Vec::with_capacity(BATCH);
        group.bench_function(format!("{name}_batched_{BATCH}"), |b| {
            b.iter(|| {
                for chunk in batch.chunks(BATCH) {
                    table.process_batch(&policy, chunk, &mut events, &mut outcomes);
                    black_box(&outcomes);
                    outcomes.clear();
                }
            })
        });
    }
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("insert", |b| {
        b.iter_batched(
            || FlowTable::with_capacity(100_000),
            |mut fresh| {
                for i in 0..10_000 {
                    fresh.process(
                        &policy,
                        &syn(i),
                        nsg_model::rule::Direction::Outbound,
                        &mut events,
                    );
                }
                events.clear();
                fresh
            },
            BatchSize::LargeInput,
        )
    });
    let syns: Vec<(PacketMeta, nsg_model::rule::Direction)> = (0..10_000)
        .map(|i| (syn(i), nsg_model::rule::Direction::Outbound))
        .collect();
    let mut outcomes = Vec::with_capacity(BATCH);
    group.bench_function(format!("insert_batched_{BATCH}"), |b| {
        b.iter_batched(
            || FlowTable::with_capacity(100_000),
            |mut fresh| {
                for chunk in syns.chunks(BATCH) {
                    fresh.process_batch(&policy, chunk, &mut events, &mut outcomes);
                    outcomes.clear();
                }
                events.clear();
                fresh
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, nsg_classifier, classbench, flow_table);
criterion_main!(benches);
