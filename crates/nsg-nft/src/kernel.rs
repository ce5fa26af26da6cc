//! Talking to the kernel: `nft -j` for the table, `conntrack` for flow records.
//!
//! Commands run with separate arguments, never through a shell. A command can be prefixed (e.g.
//! `ip netns exec NS`) so that benchmarks and tests can work inside a namespace of their own.

use crate::hits::{Hits, RuleComment};
use crate::ruleset::{ListingError, Ruleset, Table, TABLE};
use ipnet::IpNet;
use nftables::schema::Nftables;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "{program} is not installed: install {package} (Debian and Ubuntu: apt install {package})"
    )]
    NotInstalled {
        program: String,
        package: &'static str,
    },
    #[error("{what}: operation not permitted: run as root or with CAP_NET_ADMIN")]
    NotPermitted { what: String },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    #[error("nft listed JSON that does not parse: {0}")]
    ListingJson(serde_json::Error),
    #[error("the listed tables opennsg: {0}")]
    Listing(#[from] ListingError),
}

/// How to run `nft` and `conntrack`: directly, or behind a prefix such as `ip netns exec NS`.
#[derive(Clone, Debug, Default)]
pub struct Kernel {
    prefix: Vec<OsString>,
}

impl Kernel {
    /// Works on the namespace this process runs in.
    pub fn local() -> Kernel {
        Kernel::default()
    }

    /// Works inside the named network namespace (`ip netns exec NAME …`).
    pub fn in_namespace(name: &str) -> Kernel {
        Kernel {
            prefix: ["ip", "netns", "exec", name].map(OsString::from).to_vec(),
        }
    }

    fn command(&self, program: &str) -> Command {
        match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, KernelError> {
        let mut command = self.command(program);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_error = |source: std::io::Error| KernelError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = command.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound && self.prefix.is_empty() {
                KernelError::NotInstalled {
                    program: program.to_string(),
                    // Both programs come in Debian packages of their own name.
                    package: if program == "nft" {
                        "nftables"
                    } else {
                        "conntrack"
                    },
                }
            } else {
                spawn_error(source)
            }
        })?;
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin was piped");
            pipe.write_all(input).map_err(spawn_error)?;
        }
        child.wait_with_output().map_err(spawn_error)
    }

    /// Commits `batch` as one transaction. On failure nothing changed and the error carries nft's
    /// explanation.
    pub fn apply(&self, batch: &Nftables<'_>) -> Result<(), KernelError> {
        let json = serde_json::to_vec(batch).expect("typed nftables documents serialise");
        let output = self.run("nft", &["-j", "-f", "-"], Some(&json))?;
        if !output.status.success() {
            return Err(failure("nft -j -f -".into(), &output));
        }
        Ok(())
    }

    /// The raw listing of our `table`, or `None` when it does not exist.
    pub fn list_raw(&self, table: Table) -> Result<Option<String>, KernelError> {
        let family = table.family_name();
        let output = self.run("nft", &["-j", "list", "table", family, TABLE], None)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(failure(format!("nft list table {table}"), &output));
        }
        Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    /// The hits of every security rule of `desired` (zero for rules the kernel does not
    /// have), or with `None` of every rule in the kernel's table, from the kernel's counters.
    pub fn rule_hits(
        &self,
        desired: Option<&Ruleset>,
    ) -> Result<BTreeMap<RuleComment, Hits>, KernelError> {
        let raw = self.list_raw(Table::Inet)?;
        let listing: Nftables<'_> = match &raw {
            Some(raw) => serde_json::from_str(raw).map_err(KernelError::ListingJson)?,
            None => Nftables {
                objects: Default::default(),
            },
        };
        Ok(match desired {
            Some(desired) => crate::hits::rule_hits(desired, &listing),
            None => crate::hits::listed_rule_hits(&listing),
        })
    }

    /// Which of our tables exist.
    pub fn tables(&self) -> Result<Vec<Table>, KernelError> {
        let mut present = Vec::new();
        for table in Table::ALL {
            if self.list_raw(table)?.is_some() {
                present.push(table);
            }
        }
        Ok(present)
    }

    /// Our tables as the kernel holds them, or `None` when neither exists.
    pub fn current(&self) -> Result<Option<Ruleset>, KernelError> {
        let mut current: Option<Ruleset> = None;
        for table in Table::ALL {
            let Some(raw) = self.list_raw(table)? else {
                continue;
            };
            let listing: Nftables<'_> =
                serde_json::from_str(&raw).map_err(KernelError::ListingJson)?;
            current
                .get_or_insert_with(Ruleset::default)
                .merge(Ruleset::from_listing(&listing)?);
        }
        Ok(current)
    }

    /// Forgets the connection-tracking entries of `addresses` (either end), so that the next
    /// packet of each of their connections is evaluated against the current rules.
    pub fn forget_connections(&self, addresses: &[IpNet]) -> Result<(), KernelError> {
        for net in addresses {
            let family = match net {
                IpNet::V4(_) => "ipv4",
                IpNet::V6(_) => "ipv6",
            };
            let address = net.trunc().to_string();
            for end in ["--orig-src", "--orig-dst"] {
                let output = self.run("conntrack", &["-D", "-f", family, end, &address], None)?;
                // conntrack exits 1 when nothing matched, which is not a failure here.
                let stderr = String::from_utf8_lossy(&output.stderr);
                if !output.status.success() && !stderr.contains("0 flow entries") {
                    return Err(failure(format!("conntrack -D {end} {address}"), &output));
                }
            }
        }
        Ok(())
    }
}

/// The error of a command that ran and failed, telling a missing privilege from the rest.
fn failure(what: String, output: &Output) -> KernelError {
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if stderr.contains("Operation not permitted") {
        KernelError::NotPermitted { what }
    } else {
        KernelError::Failed { what, stderr }
    }
}
