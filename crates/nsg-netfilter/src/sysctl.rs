use std::fs;
use std::path::Path;

use crate::error::{Error, Result};

/// Counting packets and bytes per connection direction.
const ACCOUNTING: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";
/// Start and stop times per connection.
const TIMESTAMPS: &str = "/proc/sys/net/netfilter/nf_conntrack_timestamp";

/// Which of the two settings [`enable_accounting`] found on already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountingWasOn {
    /// `net.netfilter.nf_conntrack_acct`.
    pub counters: bool,
    /// `net.netfilter.nf_conntrack_timestamp`.
    pub timestamps: bool,
}

/// Turns on conntrack's per-connection counters and timestamps in the calling thread's
/// network namespace (both settings are per namespace), and says which were on already.
///
/// They apply to connections that begin afterwards: older ones carry neither. Needs
/// connection tracking loaded (any ruleset using `ct` loads it) and root.
pub fn enable_accounting() -> Result<AccountingWasOn> {
    Ok(AccountingWasOn {
        counters: enable(Path::new(ACCOUNTING))?,
        timestamps: enable(Path::new(TIMESTAMPS))?,
    })
}

/// Writes 1 to the boolean sysctl at `path` unless it holds 1; says whether it did.
fn enable(path: &Path) -> Result<bool> {
    let error = |action, source| Error::Sysctl {
        action,
        path: path.to_owned(),
        source,
    };
    // /proc/sys/net shows the namespace of the thread that opens it.
    let current = fs::read_to_string(path).map_err(|err| error("read", err))?;
    if current.trim() == "1" {
        return Ok(true);
    }
    fs::write(path, "1").map_err(|err| error("write 1 to", err))?;
    Ok(false)
}
