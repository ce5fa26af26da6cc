//! Durability (issue 4, item 7): a writer process is SIGKILLed in the middle of a stream of
//! writes; on reopening, every write it acknowledged is there, complete, and nothing is
//! half-written.
//!
//! The writer is this test binary itself, run again with [`WRITER_DIR`] set so that only
//! [`durability_writer_process`] runs and does the writing. Each of its write transactions
//! creates a pair of rows (an NSG and an ASG with the same index) and updates a counter row; it
//! prints `ACK <index>` only after `transaction` has returned, i.e. after COMMIT, as the REST
//! layer answers only after the store returns.

use nsg_store::{Page, PageToken, Precondition, ResourceId, Scope, Store, StoreError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Set in the writer process: the data directory to write to.
const WRITER_DIR: &str = "NSG_STORE_DURABILITY_WRITER_DIR";
/// Set in the writer process: the first index to write.
const WRITER_START: &str = "NSG_STORE_DURABILITY_WRITER_START";
/// The writer stops by itself after this many writes or this long, whichever comes first.
const WRITER_MAX_WRITES: u64 = 20_000;
const WRITER_MAX_TIME: Duration = Duration::from_secs(30);

const NSG: &str = "Microsoft.Network/networkSecurityGroups";
const ASG: &str = "Microsoft.Network/applicationSecurityGroups";

fn nsg(i: u64) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/sub/resourceGroups/rg/providers/{NSG}/nsg-{i:06}"
    ))
    .unwrap()
}

fn asg(i: u64) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/sub/resourceGroups/rg/providers/{ASG}/asg-{i:06}"
    ))
    .unwrap()
}

fn counter() -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/meta/resourceGroups/meta/providers/{NSG}/counter"
    ))
    .unwrap()
}

/// The document written for index `i`: big enough (~6 KB, several pages) that a torn write
/// would show, and derived from `i` alone so the reader can check every byte.
fn document(kind: &str, i: u64) -> Value {
    let rules: Vec<Value> = (0..24)
        .map(|r| {
            json!({
                "name": format!("rule-{i}-{r}"),
                "properties": {
                    "priority": 100 + r,
                    "description": format!("{kind} {i} rule {r} {}", "x".repeat(150)),
                }
            })
        })
        .collect();
    json!({
        "name": format!("{kind}-{i:06}"),
        "location": "westeurope",
        "properties": {"index": i, "securityRules": rules}
    })
}

/// Not a test by itself: the body of the writer process (returns at once in a normal run).
#[test]
fn durability_writer_process() {
    let Ok(dir) = std::env::var(WRITER_DIR) else {
        return;
    };
    let start: u64 = std::env::var(WRITER_START).unwrap().parse().unwrap();
    let store = Store::open(Path::new(&dir)).unwrap();
    let deadline = Instant::now() + WRITER_MAX_TIME;
    let mut out = std::io::stdout().lock();
    for i in start..start + WRITER_MAX_WRITES {
        if Instant::now() > deadline {
            break;
        }
        store
            .transaction(|tx| {
                let pairs = match tx.get(&counter())? {
                    Some(c) => c.document["pairs"].as_u64().unwrap(),
                    None => 0,
                };
                tx.put(&nsg(i), document("nsg", i), Precondition::IfNoneMatch)?;
                tx.put(&asg(i), document("asg", i), Precondition::IfNoneMatch)?;
                tx.put(
                    &counter(),
                    json!({"pairs": pairs + 1, "last": i}),
                    Precondition::None,
                )?;
                Ok::<_, StoreError>(())
            })
            .unwrap();
        // Acknowledged only now that the transaction has committed.
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Kills the child if the test fails before it does.
struct Killer(Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a writer from `start`, SIGKILLs it `delay` after `kill_after` acknowledgements have been
/// read, and returns every index it acknowledged (including those still in the pipe at the kill).
fn run_writer_and_kill(dir: &Path, start: u64, kill_after: usize, delay: Duration) -> Vec<u64> {
    let stderr_path = dir.join(format!("writer-{start}.stderr"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_writer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_DIR, dir.join("data"))
        .env(WRITER_START, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut child = Killer(child);
    let stdout = child.0.stdout.take().unwrap();
    let (send, acks) = mpsc::channel::<u64>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print "test durability_writer_process ... " before the first ack.
            if let Some(at) = line.find("ACK ") {
                let index = line[at + 4..].trim().parse().expect("an ack index");
                if send.send(index).is_err() {
                    break;
                }
            }
        }
    });
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked = Vec::new();
    while acked.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match acks.recv_timeout(left) {
            Ok(i) => acked.push(i),
            Err(e) => panic!(
                "the writer gave {} of {kill_after} acks ({e:?}); its stderr:\n{}",
                acked.len(),
                stderr()
            ),
        }
    }
    // The delay moves the kill across the phases of a write (reading, writing, fsync, acking).
    std::thread::sleep(delay);
    child.0.kill().unwrap(); // SIGKILL on Unix
    let status = child.0.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the writer was killed mid-stream, not finished ({status}); stderr:\n{}",
            stderr()
        );
    }
    #[cfg(not(unix))]
    let _ = status;
    // The pipe is closed now: collect what the writer acknowledged before it died.
    reader.join().unwrap();
    acked.extend(acks.try_iter());
    acked
}

fn list_everything(store: &Store, kind: &str) -> Vec<nsg_store::StoredResource> {
    let mut all = Vec::new();
    let mut token: Option<PageToken> = None;
    for _ in 0..10_000 {
        let Page { items, next } = store
            .list(kind, Scope::Subscription("sub".into()), token.as_ref(), 500)
            .unwrap_or_else(|e| panic!("listing {kind} after the kill: {e}"));
        all.extend(items);
        match next {
            Some(next) => token = Some(next),
            None => return all,
        }
    }
    panic!("listing does not end");
}

/// Reopens the store after a kill and checks it: `acked` holds every acknowledgement so far,
/// `before` pairs were stored before this round, which acknowledged `round` more. Returns how
/// many pairs are stored.
fn verify(dir: &Path, acked: &BTreeSet<u64>, before: u64, round: u64) -> u64 {
    let data = dir.join("data");
    // SQLite's own check of the file (pages, indexes) after WAL recovery.
    {
        let store = Store::open(&data).unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(data.join("opennsg.db")).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
    let store = Store::open(&data).unwrap();

    let index_of =
        |r: &nsg_store::StoredResource| r.document["properties"]["index"].as_u64().unwrap();
    let nsgs = list_everything(&store, NSG);
    let asgs = list_everything(&store, ASG);
    // Every row present is complete: exactly the document written for its index.
    for (kind, rows) in [("nsg", &nsgs), ("asg", &asgs)] {
        for r in rows {
            let i = index_of(r);
            assert_eq!(
                r.document,
                document(kind, i),
                "{} is not what was written",
                r.id
            );
            assert_eq!(r.version, 1);
        }
    }
    let nsg_set: BTreeSet<u64> = nsgs.iter().map(index_of).collect();
    let asg_set: BTreeSet<u64> = asgs.iter().map(index_of).collect();
    assert_eq!(nsg_set.len(), nsgs.len());
    // All or nothing: a transaction's rows are both there or both not.
    assert_eq!(nsg_set, asg_set, "a half-written transaction");
    let pairs = nsg_set.len() as u64;
    let c = store.get(&counter()).unwrap();
    match &c {
        Some(c) => {
            assert_eq!(
                c.document["pairs"],
                json!(pairs),
                "counter disagrees with the rows"
            );
            assert_eq!(c.document["last"].as_u64(), nsg_set.last().copied());
        }
        None => assert_eq!(pairs, 0),
    }
    // Every acknowledged write is there.
    let missing: Vec<&u64> = acked.difference(&nsg_set).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // Writes are sequential: what is there is 0..pairs, and a round leaves at most one committed
    // write unacknowledged (the one the kill caught between COMMIT and the ack).
    assert_eq!(nsg_set, (0..pairs).collect::<BTreeSet<u64>>());
    assert!(
        pairs == before + round || pairs == before + round + 1,
        "{pairs} pairs stored: {before} before a round that acknowledged {round}"
    );
    assert_eq!(
        store.count().unwrap() as u64,
        2 * pairs + u64::from(c.is_some())
    );
    pairs
}

#[test]
fn acknowledged_writes_survive_sigkill_and_nothing_is_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = BTreeSet::new();
    let mut next = 0;
    // Several kills at different points, each writer continuing where the store left off.
    let rounds = [
        (60, 0),
        (1, 0),
        (40, 300),
        (25, 700),
        (30, 1_100),
        (20, 1_600),
        (35, 2_300),
        (15, 3_100),
        (30, 4_000),
        (10, 5_500),
    ];
    for (kill_after, delay_us) in rounds {
        let round = run_writer_and_kill(
            dir.path(),
            next,
            kill_after,
            Duration::from_micros(delay_us),
        );
        assert!(round.len() >= kill_after);
        // Acks come in order, starting at `next`.
        assert_eq!(round, (next..next + round.len() as u64).collect::<Vec<_>>());
        let acknowledged = round.len() as u64;
        acked.extend(round);
        next = verify(dir.path(), &acked, next, acknowledged);
    }
    assert!(next >= rounds.iter().map(|r| r.0 as u64).sum());
}
