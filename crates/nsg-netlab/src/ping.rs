use std::io;
use std::net::IpAddr;
use std::time::Duration;

use crate::netns::Netns;

/// Seconds between echo requests; ping's default of 1s would make tests slow.
const INTERVAL_SECONDS: &str = "0.2";

/// Pings `dst` from `ns` with `count` echo requests, 0.2s apart, using the `ping` binary.
///
/// `Ok(true)` when every request was answered within `timeout` (rounded up to whole seconds,
/// at least 1, because ping takes whole seconds), `Ok(false)` when ping ran and some
/// answers did not come. A ping that could not run at all (missing binary or namespace, no
/// route from `ns`, bad arguments) is an error, so a test expecting "blocked" cannot pass
/// for the wrong reason.
pub fn ping(ns: &Netns, dst: IpAddr, count: u32, timeout: Duration) -> io::Result<bool> {
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ping {dst} from {ns}: count must be at least 1"),
        ));
    }
    let whole_seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let seconds = whole_seconds.max(1).to_string();
    let family = match dst {
        IpAddr::V4(_) => "-4",
        IpAddr::V6(_) => "-6",
    };
    let count = count.to_string();
    let dst_text = dst.to_string();
    let args = [
        family,
        "-n", // no DNS lookups
        "-q", // only the summary
        "-c",
        &count,
        "-i",
        INTERVAL_SECONDS,
        "-W", // how long to wait for each answer
        &seconds,
        "-w", // how long ping may run in total
        &seconds,
        &dst_text,
    ];
    let output = ns.exec("ping", args)?;
    // iputils ping exits 1 both for "no answer" and for some usage errors; only the
    // statistics line proves it actually sent requests.
    let ran = String::from_utf8_lossy(&output.stdout).contains(" packets transmitted");
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1) if ran => Ok(false),
        _ => Err(io::Error::other(format!(
            "`ip netns exec {ns} ping {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}
