//! Network namespaces of the kernel benchmarks' own, so that the host's ruleset, connections and
//! interfaces are never touched (nsg-netlab is a dev-dependency; `ip netns` does it here).

use anyhow::{bail, Context, Result};
use rustix::thread::LinkNameSpaceType;
use std::fs::File;
use std::os::fd::AsFd;
use std::process::Command;

/// A network namespace that exists while this value does (`ip netns add`, `ip netns del`).
pub struct Namespace(String);

impl Namespace {
    /// `opennsg-bench-PID-ROLE`.
    pub fn create(role: &str) -> Result<Namespace> {
        let name = format!("opennsg-bench-{}-{role}", std::process::id());
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .context("running ip netns add (the kernel benchmarks need root and iproute2)")?;
        if !status.success() {
            bail!("ip netns add {name} failed (the kernel benchmarks need root)");
        }
        Ok(Namespace(name))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// Runs `program args…` inside the namespace (`ip netns exec`); fails unless it succeeds.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = Command::new("ip")
            .args(["netns", "exec", &self.0, program])
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.0))?;
        if !output.status.success() {
            bail!(
                "{program} {} in {}: {}",
                args.join(" "),
                self.0,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Moves the calling thread into the namespace, for good: sockets it opens from then on
    /// belong to the namespace, and so do the threads it spawns.
    pub fn enter(&self) -> Result<()> {
        let path = format!("/run/netns/{}", self.0);
        let file = File::open(&path).with_context(|| format!("opening {path}"))?;
        rustix::thread::move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
            .with_context(|| format!("entering network namespace {}", self.0))
    }

    /// Runs `f` on a thread of its own inside the namespace (the caller's thread stays where
    /// it is) and returns what it returns.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                self.enter()?;
                f()
            });
            match worker.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
