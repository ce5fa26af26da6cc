//! `opennsg bench --workload flow-logs --quick` (root): the workload runs in namespaces of its
//! own, prints each figure it claims, and leaves no namespace behind. How fast is not checked.

use std::process::{Command, Stdio};

/// The namespaces `ip netns` lists.
fn namespaces() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list (the test needs iproute2)");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_flow_logs_workload_prints_its_figures_and_cleans_up() {
    let child = Command::new(env!("CARGO_BIN_EXE_opennsg"))
        .args(["bench", "--workload", "flow-logs", "--quick"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("opennsg runs");
    // The benchmark's namespaces are named after its process.
    let ours = format!("opennsg-bench-{}-", child.id());
    let output = child.wait_with_output().expect("opennsg ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| -> String {
        stdout
            .lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?} in:\n{stdout}"))
            .to_string()
    };
    assert!(line("flow-logs workload:").contains("flow logging: "));
    let memory = line("flow-logs (3) memory:");
    assert_eq!(
        memory.matches(" bytes per connection").count(),
        2,
        "LiveFlows and the naive baseline: {memory}"
    );
    let throughput = line("flow-logs (4) in process");
    for figure in [
        "NSG v2 only",
        "NSG v2 and VNet v4",
        "naive baseline",
        " M events/s",
    ] {
        assert!(throughput.contains(figure), "{figure:?} in {throughput}");
    }
    // Both consumers measured from the first rate on (how far they get depends on the
    // machine), then a burst.
    for consumer in [
        "flow-logs (1) baseline",
        "flow-logs (1) enforce --flow-logs",
    ] {
        let rates = line(consumer);
        for figure in [" flows/s (", "5000/s", "% lost", "a burst of 5000 flows"] {
            assert!(rates.contains(figure), "{figure:?} in {rates}");
        }
    }
    let logged = line("flow-logs (1) enforce --flow-logs");
    assert!(logged.contains("tuples written "), "{logged}");
    let cpu = line("flow-logs (2) CPU at 10000 flows/s");
    for figure in ["flow logger ", "with flow logging", "without"] {
        assert!(cpu.contains(figure), "{figure:?} in {cpu}");
    }
    let left: Vec<String> = namespaces()
        .into_iter()
        .filter(|name| name.starts_with(&ours))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
