//! Concurrent writers on one resource never lose an update.

use nsg_store::{Precondition, ResourceId, Store, StoreError};
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;

const THREADS: usize = 8;
const INCREMENTS: usize = 50;

fn counter_id() -> ResourceId {
    ResourceId::parse(
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/counter",
    )
    .unwrap()
}

/// One read-modify-write: read the counter and this thread's tally, write both back incremented.
fn increment(store: &Store, id: &ResourceId, thread: usize) -> Result<(), StoreError> {
    store.transaction(|tx| {
        let current = tx.get(id)?.expect("the counter exists");
        let mut document = current.document;
        let n = document["properties"]["count"].as_u64().unwrap();
        document["properties"]["count"] = json!(n + 1);
        let mine = &mut document["properties"]["byThread"][thread];
        *mine = json!(mine.as_u64().unwrap() + 1);
        tx.put(id, document, Precondition::None)?;
        Ok(())
    })
}

fn check(store: &Store, id: &ResourceId) {
    let r = store.get(id).unwrap().unwrap();
    assert_eq!(
        r.document["properties"]["count"],
        json!(THREADS * INCREMENTS),
        "lost updates: {}",
        r.document
    );
    assert_eq!(
        r.document["properties"]["byThread"],
        json!(vec![INCREMENTS; THREADS])
    );
    assert_eq!(r.version, (THREADS * INCREMENTS) as u64 + 1);
}

fn create_counter(store: &Store, id: &ResourceId) {
    store
        .put(
            id,
            json!({"properties": {"count": 0, "byThread": vec![0; THREADS]}}),
            Precondition::IfNoneMatch,
        )
        .unwrap();
}

#[test]
fn threads_sharing_a_store_never_lose_an_increment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let id = counter_id();
    create_counter(&store, &id);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, id, start) = (store.clone(), id.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..INCREMENTS {
                    increment(&store, &id, t).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    check(&store, &id);
    drop(store);
    check(&Store::open(dir.path()).unwrap(), &id);
}

/// Each thread with its own `Store` (its own connections, no shared write gate): the
/// serialisation comes from SQLite alone (`BEGIN IMMEDIATE` and the busy timeout), as between
/// processes.
#[test]
fn separate_stores_on_one_file_never_lose_an_increment() {
    let dir = tempfile::tempdir().unwrap();
    let id = counter_id();
    create_counter(&Store::open(dir.path()).unwrap(), &id);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (path, id, start) = (dir.path().to_path_buf(), id.clone(), start.clone());
            thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                start.wait();
                for _ in 0..INCREMENTS {
                    increment(&store, &id, t).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    check(&Store::open(dir.path()).unwrap(), &id);
}

/// The REST pattern without a transaction: GET, then PUT with `If-Match` of what was read,
/// retrying on 412. Every increment lands exactly once.
#[test]
fn optimistic_if_match_writers_never_lose_an_increment() {
    const WRITERS: usize = 4;
    const EACH: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let id = counter_id();
    store
        .put(&id, json!({"count": 0}), Precondition::None)
        .unwrap();
    let handles: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            thread::spawn(move || {
                let mut conflicts = 0u64;
                for _ in 0..EACH {
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "no progress");
                        let r = store.get(&id).unwrap().unwrap();
                        let n = r.document["count"].as_u64().unwrap();
                        match store.put(&id, json!({"count": n + 1}), Precondition::IfMatch(r.etag))
                        {
                            Ok(_) => break,
                            Err(StoreError::PreconditionFailed { .. }) => conflicts += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let r = store.get(&id).unwrap().unwrap();
    assert_eq!(r.document["count"], json!(WRITERS as u64 * EACH));
    assert_eq!(
        r.version,
        1 + WRITERS as u64 * EACH,
        "only successful writes count ({conflicts} conflicts were retried)"
    );
}
