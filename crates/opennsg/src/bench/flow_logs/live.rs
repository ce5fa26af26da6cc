//! Figures (1) and (2) of the flow-logs workload: the kernel's events of real traffic, read by
//! a thread that only reads them (the baseline) and by `enforce --flow-logs`'s logger.

use super::{Scale, FIRST_RATE, INTERNET, VM, VM_INTERFACE};
use crate::bench::namespace::Namespace;
use crate::flow_logger::{FlowLogSettings, FlowLogger, LoggedPolicy};
use anyhow::{Context, Result};
use nsg_netfilter::ConntrackEvents;
use nsg_nft::render::flow_logging::FlowLogging;
use nsg_nft::{Enforcer, Kernel, Rendered};
use rustix::thread::CpuSet;
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// conntrack's UDP timeout in the router namespace, in seconds (the smallest it takes).
const UDP_TIMEOUT_SECS: u32 = 1;
/// A tuple comes back this long after its previous datagram: past the UDP timeout, so its
/// connection has expired and the datagram ends it and begins the next.
const POOL_SECONDS: f64 = 1.25;
/// UDP sockets of the VM (source ports); destination ports cover the rest of a pool.
const SOCKETS: usize = 64;
const FIRST_DESTINATION_PORT: usize = 1024;
/// A rate passes with a median window losing less than this share of events.
const LOSS_LIMIT: f64 = 0.01;
/// A window whose sender reached less than this share of the rate is the sender's limit.
const SENDER_SHORTFALL: f64 = 0.95;
/// The rate of figure (2).
const CPU_RATE: u64 = 10_000;
/// The counts are settled once unchanged for this long, and the consumer is behind if they
/// still change after [`SETTLE_LIMIT`].
const SETTLED: Duration = Duration::from_millis(300);
const SETTLE_LIMIT: Duration = Duration::from_secs(3);
/// How often the logger appends in this benchmark (enforce's default is 60 s; windows are
/// seconds long, so appends must happen within them).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the logger dumps the table for `C` tuples: enforce's default.
const REPORT_EVERY: Duration = Duration::from_secs(300);

/// A router namespace between a VM's and the internet's, the NIC bound to the router's `vm0`.
pub(super) struct Lab {
    pub(super) router: Namespace,
    vm: Namespace,
    internet: Namespace,
}

impl Lab {
    pub(super) fn create() -> Result<Lab> {
        let lab = Lab {
            router: Namespace::create("router")?,
            vm: Namespace::create("vm")?,
            internet: Namespace::create("inet")?,
        };
        let (router, vm, internet) = (&lab.router, &lab.vm, &lab.internet);
        for (interface, guest, router_address, guest_address) in [
            (VM_INTERFACE, vm, "10.0.1.1", VM),
            ("up0", internet, "203.0.113.1", INTERNET),
        ] {
            let (router_net, guest_net) = (
                format!("{router_address}/24"),
                format!("{guest_address}/24"),
            );
            router.exec(
                "ip",
                &[
                    "link",
                    "add",
                    interface,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    guest.name(),
                ],
            )?;
            router.exec("ip", &["addr", "add", &router_net, "dev", interface])?;
            router.exec("ip", &["link", "set", interface, "up"])?;
            guest.exec("ip", &["addr", "add", &guest_net, "dev", "eth0"])?;
            guest.exec("ip", &["link", "set", "eth0", "up"])?;
            guest.exec("ip", &["route", "add", "default", "via", router_address])?;
        }
        for namespace in [router, vm, internet] {
            namespace.exec("ip", &["link", "set", "lo", "up"])?;
        }
        router.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        Ok(lab)
    }

    fn sysctl(&self, setting: &str) -> Result<()> {
        self.router.exec("sysctl", &["-qw", setting])
    }

    /// Ends every connection (`conntrack -F`), so that each rate starts from an empty table.
    fn flush(&self) -> Result<()> {
        self.router.exec("conntrack", &["-F"])
    }
}

/// The VM's UDP flows: datagrams from [`SOCKETS`] source ports to destination ports, cycling
/// through a pool of tuples.
struct Traffic {
    sockets: Vec<UdpSocket>,
    pool: usize,
    next: usize,
}

impl Traffic {
    fn open(vm: &Namespace) -> Result<Traffic> {
        let sockets = vm.run(|| {
            (0..SOCKETS)
                .map(|_| UdpSocket::bind((VM, 0)).context("a UDP socket in the VM"))
                .collect::<Result<Vec<_>>>()
        })?;
        Ok(Traffic {
            sockets,
            pool: 1,
            next: 0,
        })
    }

    /// A pool of `tuples`, starting from its first.
    fn pool(&mut self, tuples: usize) {
        self.pool = tuples.max(1);
        self.next = 0;
    }

    /// Sizes the pool for `rate`, so that a tuple comes back after [`POOL_SECONDS`].
    fn pool_for(&mut self, rate: u64) {
        self.pool((rate as f64 * POOL_SECONDS).ceil() as usize);
    }

    /// One datagram, on the next tuple of the pool.
    fn send_one(&mut self) -> Result<()> {
        let tuple = self.next;
        self.next = (tuple + 1) % self.pool;
        let port = FIRST_DESTINATION_PORT + tuple / SOCKETS;
        self.sockets[tuple % SOCKETS]
            .send_to(b"flow", (INTERNET, port as u16))
            .context("sending a datagram")?;
        Ok(())
    }

    /// Sends at `rate` datagrams per second for `duration`; returns how many were sent.
    fn send(&mut self, rate: u64, duration: Duration) -> Result<u64> {
        let started = Instant::now();
        let mut sent = 0u64;
        loop {
            let elapsed = started.elapsed();
            if elapsed >= duration {
                return Ok(sent);
            }
            let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(100));
                continue;
            }
            while sent < due {
                self.send_one()?;
                sent += 1;
            }
        }
    }
}

/// Events a consumer has received and the kernel has dropped, so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    received: u64,
    lost: u64,
}

impl Tally {
    /// The events since `before`.
    fn since(self, before: Tally) -> Tally {
        Tally {
            received: self.received - before.received,
            lost: self.lost - before.lost,
        }
    }

    fn loss(self) -> f64 {
        let all = self.received + self.lost;
        if all == 0 {
            return 0.0;
        }
        self.lost as f64 / all as f64
    }
}

/// Who reads the events: their count so far, and the threads that read them.
struct Consumer<'a> {
    tally: &'a dyn Fn() -> Tally,
    threads: BTreeSet<u32>,
}

impl Consumer<'_> {
    /// Waits until the counts stop changing; returns them and how long after the call they
    /// last changed, or `None` for the time if they still changed after [`SETTLE_LIMIT`].
    fn settle(&self) -> (Tally, Option<Duration>) {
        let started = Instant::now();
        let mut last = (self.tally)();
        let mut changed = started;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = (self.tally)();
            if now != last {
                last = now;
                changed = Instant::now();
            } else if changed.elapsed() >= SETTLED {
                return (last, Some(changed - started));
            }
            if started.elapsed() >= SETTLE_LIMIT {
                return (last, None);
            }
        }
    }

    /// Time the consumer's threads have run on a CPU.
    fn cpu(&self) -> Result<Duration> {
        self.threads.iter().map(|&tid| thread_cpu(tid)).sum()
    }
}

/// One window at one rate.
#[derive(Clone, Copy, Debug)]
struct Window {
    sent: u64,
    events: Tally,
    /// The consumer's threads' CPU time over the window's length.
    consumer_cpu: f64,
}

/// The windows at one rate.
struct Step {
    rate: u64,
    windows: Vec<Window>,
    /// How long after the traffic stopped the consumer had read everything; `None` if it was
    /// still reading after [`SETTLE_LIMIT`].
    caught_up: Option<Duration>,
    window: Duration,
}

impl Step {
    fn median_of(&self, f: impl Fn(&Window) -> f64) -> f64 {
        median_of(self.windows.iter().map(f).collect())
    }

    fn loss(&self) -> f64 {
        self.median_of(|w| w.events.loss())
    }

    fn per_second(&self, f: impl Fn(&Window) -> u64) -> f64 {
        self.median_of(|w| f(w) as f64 / self.window.as_secs_f64())
    }

    /// Flows per second sent (the rate asked, or less where the sender could not keep it).
    fn flows(&self) -> f64 {
        self.per_second(|w| w.sent).min(self.rate as f64)
    }

    fn sender_fell_short(&self) -> bool {
        self.per_second(|w| w.sent) < SENDER_SHORTFALL * self.rate as f64
    }

    /// Whether the consumer kept up: few events lost, and all read soon after the traffic.
    fn kept_up(&self) -> bool {
        self.loss() < LOSS_LIMIT && self.caught_up.is_some()
    }

    fn describe(&self) -> String {
        let mut text = format!("{}/s", self.rate);
        if self.sender_fell_short() {
            text += &format!(" (sent {:.0}/s)", self.per_second(|w| w.sent));
        }
        text += &format!(
            " {:.2} % lost, {:.0} events/s read, readers {:.0} % of their core, ",
            self.loss() * 100.0,
            self.per_second(|w| w.events.received),
            self.median_of(|w| w.consumer_cpu) * 100.0
        );
        text += &match self.caught_up {
            Some(after) => format!("caught up {:.1} s after", after.as_secs_f64()),
            None => format!("still reading {} s after", SETTLE_LIMIT.as_secs_f64()),
        };
        text
    }
}

/// A burst of new flows as fast as the sender goes, then all of them ended at once.
struct Burst {
    flows: u64,
    new: Tally,
    sending: Duration,
    destroy: Tally,
    /// From the flush to the last destroy event read.
    destroying: Duration,
}

/// Pins the calling thread (and the threads it spawns later) to `cpu`, if there is one.
fn pin(cpu: Option<usize>) -> Result<()> {
    let Some(cpu) = cpu else {
        return Ok(());
    };
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).context("pinning a thread")
}

/// The calling thread's CPUs, restored when dropped.
struct Affinity(CpuSet);

impl Affinity {
    fn save() -> Result<Affinity> {
        Ok(Affinity(
            rustix::thread::sched_getaffinity(None).context("reading the CPU affinity")?,
        ))
    }

    /// Two CPUs this thread may run on: the consumer's and the sender's.
    fn two_cpus(&self) -> Option<(usize, usize)> {
        let mut cpus = (0..CpuSet::MAX_CPU).filter(|&cpu| self.0.is_set(cpu));
        Some((cpus.next()?, cpus.next()?))
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        let _ = rustix::thread::sched_setaffinity(None, &self.0);
    }
}

/// This process's threads.
fn threads() -> Result<BTreeSet<u32>> {
    let mut tids = BTreeSet::new();
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        if let Some(tid) = entry?.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.insert(tid);
        }
    }
    Ok(tids)
}

/// The threads that `start` starts, and what it returns.
fn started_threads<T>(start: impl FnOnce() -> Result<T>) -> Result<(T, BTreeSet<u32>)> {
    let before = threads()?;
    let value = start()?;
    let started = threads()?.difference(&before).copied().collect();
    Ok((value, started))
}

fn task_file(tid: u32, file: &str) -> Result<String> {
    let path = format!("/proc/self/task/{tid}/{file}");
    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
}

/// Time thread `tid` has run on a CPU (the first field of its schedstat, in nanoseconds).
fn thread_cpu(tid: u32) -> Result<Duration> {
    let text = task_file(tid, "schedstat")?;
    let nanoseconds = text
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .with_context(|| format!("the schedstat of thread {tid}: {text}"))?;
    Ok(Duration::from_nanos(nanoseconds))
}

fn process_cpu() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// CPU time over wall time.
fn share(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() / wall.as_secs_f64()
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Removes the hourly blobs under `dir`, so that each rate's appends start from empty files
/// (the directory store rewrites a blob's whole hour at each append).
fn remove_blobs(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            remove_blobs(&path)?;
        } else if path.file_name().is_some_and(|name| name == "PT1H.json") {
            match std::fs::remove_file(&path) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(error).with_context(|| format!("removing {}", path.display()))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The traffic and where it goes.
struct Measured<'a> {
    lab: &'a Lab,
    traffic: &'a mut Traffic,
    scale: Scale,
}

impl Measured<'_> {
    /// An empty table, then `rate` until every tuple of its pool has been used once.
    fn start(&mut self, rate: u64, consumer: &Consumer<'_>) -> Result<()> {
        self.lab.flush()?;
        consumer.settle();
        self.traffic.pool_for(rate);
        self.traffic
            .send(rate, Duration::from_secs_f64(POOL_SECONDS))?;
        Ok(())
    }

    fn step(&mut self, rate: u64, consumer: &Consumer<'_>) -> Result<Step> {
        self.start(rate, consumer)?;
        let mut windows = Vec::new();
        let mut caught_up = None;
        for window in 0..self.scale.windows {
            let (before, cpu_before) = ((consumer.tally)(), consumer.cpu()?);
            let sent = self.traffic.send(rate, self.scale.window)?;
            let consumer_cpu = share(consumer.cpu()? - cpu_before, self.scale.window);
            let after = if window + 1 == self.scale.windows {
                let (after, waited) = consumer.settle();
                caught_up = waited;
                after
            } else {
                (consumer.tally)()
            };
            windows.push(Window {
                sent,
                events: after.since(before),
                consumer_cpu,
            });
        }
        Ok(Step {
            rate,
            windows,
            caught_up,
            window: self.scale.window,
        })
    }

    /// Rates doubling from [`FIRST_RATE`] until the consumer falls behind or the sender
    /// cannot go faster, then (when refining) once between the last rate the consumer kept
    /// up with and the first it did not.
    fn rates(
        &mut self,
        consumer: &Consumer<'_>,
        before_each: &dyn Fn() -> Result<()>,
    ) -> Result<Vec<Step>> {
        let mut steps: Vec<Step> = Vec::new();
        let mut rate = FIRST_RATE;
        while rate <= self.scale.last_rate {
            before_each()?;
            let step = self.step(rate, consumer)?;
            let go_on = step.kept_up() && !step.sender_fell_short();
            steps.push(step);
            if !go_on {
                break;
            }
            rate *= 2;
        }
        let kept_up = steps.iter().filter(|s| s.kept_up()).map(|s| s.rate).max();
        let fell_behind = steps.iter().find(|s| !s.kept_up()).map(|s| s.rate);
        if let (true, Some(good), Some(bad)) = (self.scale.refine, kept_up, fell_behind) {
            before_each()?;
            steps.push(self.step((good + bad) / 2, consumer)?);
        }
        steps.sort_by_key(|s| s.rate);
        Ok(steps)
    }

    /// `flows` new flows as fast as one thread sends them, then all ended by `conntrack -F`
    /// (the burst of nsg-netfilter's conntrack_burst example).
    fn burst(&mut self, flows: u64, consumer: &Consumer<'_>) -> Result<Burst> {
        self.lab.flush()?;
        let (before, _) = consumer.settle();
        self.traffic.pool(flows as usize);
        let started = Instant::now();
        for _ in 0..flows {
            self.traffic.send_one()?;
        }
        let sending = started.elapsed();
        let (sent, _) = consumer.settle();
        let started = Instant::now();
        self.lab.flush()?;
        let flushed = started.elapsed();
        let (ended, waited) = consumer.settle();
        Ok(Burst {
            flows,
            new: sent.since(before),
            sending,
            destroy: ended.since(sent),
            destroying: flushed + waited.unwrap_or(SETTLE_LIMIT),
        })
    }

    /// Median CPU shares per window at [`CPU_RATE`]: the whole process, and each of the
    /// consumer's threads by name.
    fn cpu(&mut self, consumer: &Consumer<'_>) -> Result<(f64, Vec<(String, f64)>)> {
        self.start(CPU_RATE, consumer)?;
        let mut process = Vec::new();
        let mut threads: Vec<Vec<f64>> = vec![Vec::new(); consumer.threads.len()];
        for _ in 0..self.scale.windows {
            let process_before = process_cpu();
            let threads_before: Vec<Duration> = consumer
                .threads
                .iter()
                .map(|&tid| thread_cpu(tid))
                .collect::<Result<_>>()?;
            let started = Instant::now();
            self.traffic.send(CPU_RATE, self.scale.window)?;
            let wall = started.elapsed();
            process.push(share(process_cpu() - process_before, wall));
            for ((&tid, before), shares) in consumer
                .threads
                .iter()
                .zip(threads_before)
                .zip(&mut threads)
            {
                shares.push(share(thread_cpu(tid)? - before, wall));
            }
        }
        let named = consumer
            .threads
            .iter()
            .zip(threads)
            .map(|(&tid, shares)| {
                let name = task_file(tid, "comm")?.trim().to_string();
                Ok((name, median_of(shares)))
            })
            .collect::<Result<_>>()?;
        Ok((median_of(process), named))
    }
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The rate the consumer kept up with, why no higher one is known, and how each went.
fn summary(steps: &[Step]) -> String {
    let best = steps
        .iter()
        .filter(|s| s.kept_up())
        .map(Step::flows)
        .fold(0.0, f64::max);
    let (at_least, limit) = match steps.iter().find(|s| !s.kept_up()) {
        Some(step) => (
            "",
            format!(
                "the readers fell behind at {}/s ({:.2} % lost)",
                step.rate,
                step.loss() * 100.0
            ),
        ),
        None if steps.last().is_some_and(Step::sender_fell_short) => (
            "at least ",
            "the sender's limit on its core, and no rate it reached lost events".to_string(),
        ),
        None => ("at least ", "the highest rate tried".to_string()),
    };
    let tried: Vec<String> = steps.iter().map(Step::describe).collect();
    format!(
        "{at_least}{best:.0} flows/s ({best:.0} New and {best:.0} Destroy events/s) with < 1 % \
         of events lost ({limit}); rates tried, medians of {} windows of {:.1} s: {}",
        steps.first().map_or(0, |s| s.windows.len()),
        steps.first().map_or(0.0, |s| s.window.as_secs_f64()),
        tried.join("; ")
    )
}

fn describe_burst(burst: &Burst) -> String {
    format!(
        "a burst of {} flows: New as fast as the sender goes ({:.0}/s), {:.2} % lost; Destroy all \
         at once (conntrack -F), {:.2} % lost, read at {:.0} events/s",
        burst.flows,
        burst.flows as f64 / burst.sending.as_secs_f64(),
        burst.new.loss() * 100.0,
        burst.destroy.loss() * 100.0,
        burst.destroy.received as f64 / burst.destroying.as_secs_f64(),
    )
}

pub(super) fn run(
    lab: &Lab,
    unlogged: Rendered,
    logged: Rendered,
    policy: LoggedPolicy,
    scale: Scale,
) -> Result<()> {
    let affinity = Affinity::save()?;
    let (consumer_cpu, sender_cpu) = affinity.two_cpus().unzip();
    pin(sender_cpu)?;
    let mut enforcer = Enforcer::new(Kernel::in_namespace(lab.router.name()));
    let mut traffic = Traffic::open(&lab.vm)?;
    let mut measured = Measured {
        lab,
        traffic: &mut traffic,
        scale,
    };
    println!(
        "flow-logs (1, 2) live traffic: UDP flows of one datagram from the VM through the router \
         ({VM_INTERFACE} bound) to the internet namespace, conntrack's UDP timeout \
         {UDP_TIMEOUT_SECS} s and each tuple reused after {POOL_SECONDS} s (so each datagram ends \
         one connection and begins the next); {}",
        match (consumer_cpu, sender_cpu) {
            (Some(consumer), Some(sender)) =>
                format!("readers and logger on CPU {consumer}, the sender on CPU {sender}"),
            _ => "one CPU: nothing pinned".to_string(),
        }
    );

    // Without flow logging: no marks, no accounting, nobody listening.
    enforcer.apply(unlogged)?;
    for setting in [
        format!("net.netfilter.nf_conntrack_udp_timeout={UDP_TIMEOUT_SECS}"),
        "net.netfilter.nf_conntrack_acct=0".to_string(),
        "net.netfilter.nf_conntrack_timestamp=0".to_string(),
    ] {
        lab.sysctl(&setting)?;
    }
    let nobody = Consumer {
        tally: &Tally::default,
        threads: BTreeSet::new(),
    };
    let (baseline_process, _) = measured.cpu(&nobody)?;

    enforcer.apply(logged)?;
    lab.router.run(|| Ok(nsg_netfilter::enable_accounting()?))?;
    let (raw, raw_burst) = read_only(&mut measured, consumer_cpu)?;
    println!(
        "flow-logs (1) baseline, conntrack's own event rate (a thread that only reads the events, \
         as nsg-netfilter's conntrack_burst example): {}; {}",
        summary(&raw),
        describe_burst(&raw_burst)
    );

    let dir = tempfile::tempdir().context("a directory for the flow logs")?;
    let (logger, logger_threads) = started_threads(|| {
        lab.router.run(|| {
            pin(consumer_cpu)?;
            FlowLogger::start(FlowLogSettings {
                dir: dir.path().to_path_buf(),
                report_every: REPORT_EVERY,
                flush_every: FLUSH_EVERY,
                logging: FlowLogging::default(),
                storage: None,
            })
        })
    })?;
    logger.update(policy);
    logger.applied();
    let counts = || {
        let counts = logger.counts();
        Tally {
            received: counts.conntrack_events,
            lost: counts.conntrack_events_lost,
        }
    };
    let logging = Consumer {
        tally: &counts,
        threads: logger_threads,
    };
    let steps = measured.rates(&logging, &|| remove_blobs(dir.path()))?;
    remove_blobs(dir.path())?;
    let burst = measured.burst(scale.burst_flows, &logging)?;
    remove_blobs(dir.path())?;
    let (logged_process, logged_threads) = measured.cpu(&logging)?;
    // The last appends, then what the logger wrote for what it read.
    std::thread::sleep(FLUSH_EVERY * 2);
    let totals = logger.counts();
    println!(
        "flow-logs (1) enforce --flow-logs (its reader and logger threads, appends every {} s): \
         {}; {}; tuples written {} for {} events read ({:.2} each: an NSG v2 and a VNet v4 tuple \
         per event)",
        FLUSH_EVERY.as_secs(),
        summary(&steps),
        describe_burst(&burst),
        totals.tuples_written,
        totals.conntrack_events,
        totals.tuples_written as f64 / totals.conntrack_events.max(1) as f64,
    );
    let logger_share: f64 = logged_threads.iter().map(|(_, share)| share).sum();
    let by_thread: Vec<String> = logged_threads
        .iter()
        .map(|(name, share)| format!("{name} {}", percent(*share)))
        .collect();
    println!(
        "flow-logs (2) CPU at {CPU_RATE} flows/s ({CPU_RATE} New and {CPU_RATE} Destroy events/s, \
         medians of {} windows of {:.1} s): the logger's threads (reading, LiveFlows, builders, \
         appends) {} of one core ({}); the whole process {} with flow logging, of which the \
         sending thread (its system time holds the kernel's forwarding, marks and event \
         building) {}, and {} without (the baseline: the same traffic, no marks, no accounting, \
         no listener)",
        scale.windows,
        scale.window.as_secs_f64(),
        percent(logger_share),
        by_thread.join(", "),
        percent(logged_process),
        percent(logged_process - logger_share),
        percent(baseline_process),
    );
    drop(affinity);
    Ok(())
}

/// The rates and the burst read by a thread that does nothing but read conntrack events.
fn read_only(measured: &mut Measured<'_>, cpu: Option<usize>) -> Result<(Vec<Step>, Burst)> {
    let (received, lost, stop) = (
        &AtomicU64::new(0),
        &AtomicU64::new(0),
        &AtomicBool::new(false),
    );
    let tally = || Tally {
        received: received.load(Ordering::Relaxed),
        lost: lost.load(Ordering::Relaxed),
    };
    let lab = measured.lab;
    let burst_flows = measured.scale.burst_flows;
    std::thread::scope(|scope| {
        let (ready, subscribed) = std::sync::mpsc::channel();
        let before = threads()?;
        let reader = scope.spawn(move || -> Result<()> {
            lab.router.enter()?;
            pin(cpu)?;
            let mut events = ConntrackEvents::subscribe()?;
            let _ = ready.send(());
            while !stop.load(Ordering::Relaxed) {
                let batch = events.recv(Duration::from_millis(100))?;
                received.fetch_add(batch.len() as u64, Ordering::Relaxed);
                lost.store(events.lost(), Ordering::Relaxed);
            }
            Ok(())
        });
        // A reader that failed to subscribe says why when joined.
        let measuring = match subscribed.recv() {
            Ok(()) => threads().and_then(|after| {
                let reading = Consumer {
                    tally: &tally,
                    threads: after.difference(&before).copied().collect(),
                };
                let steps = measured.rates(&reading, &|| Ok(()))?;
                Ok(Some((steps, measured.burst(burst_flows, &reading)?)))
            }),
            Err(_) => Ok(None),
        };
        stop.store(true, Ordering::Relaxed);
        match reader.join() {
            Ok(read) => read?,
            Err(panic) => std::panic::resume_unwind(panic),
        }
        measuring?.context("the conntrack reader stopped")
    })
}
