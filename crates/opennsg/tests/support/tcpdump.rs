//! `tcpdump -i any` in a lab's namespace: the real captures replay tests read.

use super::Child;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// `tcpdump -i any` in a namespace, writing a capture file; killed if the test ends early.
pub struct Tcpdump {
    process: Child,
    stderr: BufReader<std::process::ChildStderr>,
    pub file: PathBuf,
}

impl Tcpdump {
    /// Starts tcpdump on every interface of `ns`, with cooked headers of `link_type`, for IPv4
    /// without multicast; returns when it listens.
    pub fn start(ns: &nsg_netlab::Netns, link_type: &str, file: PathBuf) -> Tcpdump {
        let spawned = ns
            .run(|| {
                std::process::Command::new("tcpdump")
                    .args(["-i", "any", "-y", link_type, "-Z", "root", "-U"])
                    // Immediate mode's ring has a slot per snapshot length: short
                    // snapshots (headers and the start of payloads are enough) and a large
                    // buffer, so that no burst overflows it.
                    .args(["--immediate-mode", "-s", "512", "-B", "8192", "-n", "-w"])
                    .arg(&file)
                    .arg("ip and not ip multicast")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .expect("tcpdump runs (install it: apt-get install tcpdump, as .ci/run does)");
        let mut process = Child(spawned);
        let stderr = process.0.stderr.take().expect("tcpdump's stderr is piped");
        let mut tcpdump = Tcpdump {
            process,
            stderr: BufReader::new(stderr),
            file,
        };
        let mut said = String::new();
        while !said.contains("listening on") {
            let before = said.len();
            tcpdump
                .stderr
                .read_line(&mut said)
                .expect("tcpdump's stderr");
            assert!(
                said.len() > before,
                "tcpdump ended without listening: {said}"
            );
        }
        assert!(said.contains(link_type), "{said}");
        tcpdump
    }

    /// Stops tcpdump as a user would (SIGTERM, so it writes what it holds), waits for it, and
    /// checks that it dropped nothing.
    pub fn stop(mut self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.process.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.process.0.wait().expect("tcpdump ends");
        let mut statistics = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut statistics).expect("stderr");
        assert!(
            statistics
                .lines()
                .any(|l| l == "0 packets dropped by kernel"),
            "{statistics}"
        );
    }
}
