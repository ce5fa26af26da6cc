//! The durable resource store behind `opennsg serve`: ARM documents by resource id, in one
//! embedded SQLite database.
//!
//! # Guarantees
//!
//! - **Durable on return.** Every write method returns only after its transaction has committed
//!   with `journal_mode=WAL` and `synchronous=FULL` (the WAL is fsynced at every commit). A write
//!   the REST layer has acknowledged survives a crash of the process (tested by SIGKILLing a
//!   writer process, see `tests/durability.rs`).
//! - **Atomic.** Every write is one transaction; [`Store::transaction`] groups several reads and
//!   writes into one. Readers never see half of a transaction.
//! - **No lost updates.** Write transactions start with `BEGIN IMMEDIATE`, so they hold SQLite's
//!   write lock from their first read; a read-modify-write inside one [`Tx`] cannot interleave
//!   with another writer, in this process or another. Writers of this process queue on a mutex
//!   first; other processes are waited for up to [`BUSY_TIMEOUT`].
//! - **Etags.** Every stored resource has an etag `W/"<random uuid>"`, new on every `put`.
//!   [`Precondition`] carries `If-Match` / `If-None-Match: *`; a failed one is
//!   [`StoreError::PreconditionFailed`] and writes nothing.
//! - **Never a panic on bad data.** A row that cannot be read back is [`StoreError::Corrupt`].
//! - **Versioned schema.** `PRAGMA user_version` and an append-only list of migrations
//!   ([`schema`]); an older database is migrated when opened, a newer one is refused.
//!
//! # Decisions
//!
//! **Child resources live inside their parent's document.** Security rules are stored in their
//! NSG's `properties.securityRules`, subnets in their VNet's `properties.subnets`; only top-level
//! resources (and any child type that ARM manages independently) are rows. Why: ARM's semantics
//! are those of the parent document. A full NSG `PUT` replaces the rule set (omitted rules are
//! removed), `GET` of the NSG returns its rules inline, `az network nsg rule list` reads the NSG,
//! and an inline rule must be addressable as a child and vice versa. With one row per parent
//! these are one read or one write and can never disagree; with rows per child every NSG read
//! would assemble rows and every NSG write would diff them. A child operation is a
//! read-modify-write of the parent in one [`Tx`] (see its docs), which also gives the parent a
//! new etag, as Azure does when a rule changes. The store keeps no separate etag for children:
//! the REST layer should give a child its parent's etag (so `If-Match` on a child is checked as
//! `Precondition::IfMatch` on the parent's write). The store itself is flat: any valid
//! [`ResourceId`] can be a row, and deleting a row deletes nothing else.
//!
//! **Ids are case-insensitive and keep their first spelling.** The identity of a row is the id
//! lower-cased (ASCII, exactly as [`ResourceId`] compares), so `…/resourcegroups/RG1/…/NSG1`
//! finds `…/resourceGroups/rg1/…/nsg1`. The id *as written when the resource was created* is
//! kept and returned by `get`, `list` and `put`, whatever spelling later requests use, so ids
//! that other resources hold as references stay stable (Azure likewise keeps a resource's name as
//! created). After a delete, the next create sets the spelling anew. Documents are stored as given:
//! [`StoredResource::rendered`] sets `id`, `name` and `etag` from the record for answers.
//!
//! **Paging is keyset paging on the lower-cased id.** A listing is ordered by key; a
//! [`PageToken`] is the hex of the last key returned and the next page is `key > token`. It
//! needs no server state, cannot skip or repeat items that exist throughout the listing (unlike
//! offsets, which shift under concurrent writes), and is one index range scan per page.
//!
//! **Connections.** A `Store` on a file keeps a small pool of connections: reads run in
//! parallel (WAL lets them read beside a writer), writes take the store's write gate then
//! `BEGIN IMMEDIATE`. An in-memory store (tests) is one connection behind a mutex. Calling a
//! `Store` method from inside [`Store::transaction`] of the same store is
//! [`StoreError::NestedCall`] rather than a deadlock: use the [`Tx`].
//!
//! All methods block (file IO, fsync, waiting for locks): call them from `spawn_blocking` in
//! async code. `Store` is `Send + Sync`; share it in an `Arc`.

mod error;
mod pool;
pub mod schema;
mod tx;
mod types;

pub use error::StoreError;
pub use nsg_model::ResourceId;
pub use tx::Tx;
pub use types::{Page, PageToken, Precondition, PutOutcome, Scope, StoredResource};

use pool::Connections;
use rusqlite::TransactionBehavior;
use serde_json::Value;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The database file's name inside the data directory.
pub const DB_FILE_NAME: &str = "opennsg.db";

/// The largest page `list` returns; larger limits are clamped to it (and 0 is taken as 1).
pub const MAX_PAGE_SIZE: usize = 1000;

/// How long a statement waits for another process's lock before failing with SQLite's
/// `SQLITE_BUSY` (as [`StoreError::Sqlite`]).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A resource store on one SQLite database. See the crate docs.
pub struct Store {
    conns: Connections,
    /// Identifies this store in [`IN_TRANSACTION`].
    token: u64,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The stores whose `transaction` closure this thread is running.
    static IN_TRANSACTION: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Marks this thread as inside a transaction of one store for as long as it lives.
struct TransactionMark(u64);

impl TransactionMark {
    fn enter(token: u64) -> TransactionMark {
        IN_TRANSACTION.with(|stores| stores.borrow_mut().push(token));
        TransactionMark(token)
    }
}

impl Drop for TransactionMark {
    fn drop(&mut self) {
        IN_TRANSACTION.with(|stores| {
            let mut stores = stores.borrow_mut();
            if let Some(at) = stores.iter().rposition(|t| *t == self.0) {
                stores.remove(at);
            }
        });
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: the directory, `dir/opennsg.db` in WAL
    /// mode, and the schema, migrated to this build's [`schema::VERSION`].
    ///
    /// Errors: the directory cannot be created ([`StoreError::Io`]), the file is not an SQLite
    /// database or cannot be opened ([`StoreError::Sqlite`]), is another program's database
    /// ([`StoreError::NotAStore`]), was written by a newer build ([`StoreError::SchemaTooNew`]),
    /// or a migration failed ([`StoreError::Migration`]).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            context: format!("creating the data directory {}", dir.display()),
            source,
        })?;
        let path: PathBuf = dir.join(DB_FILE_NAME);
        private(dir, &path)?;
        Ok(Store {
            conns: Connections::open_file(path)?,
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A store in memory, gone when dropped; for tests. Same semantics except durability.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Ok(Store {
            conns: Connections::open_memory()?,
            token: NEXT_TOKEN.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.conns.path()
    }

    /// The resource with this id (any casing), or `None`.
    pub fn get(&self, id: &ResourceId) -> Result<Option<StoredResource>, StoreError> {
        self.not_nested()?;
        let conn = self.conns.read()?;
        tx::get(&conn, id)
    }

    /// One page of the resources of type `kind` (the full ARM type, e.g.
    /// `Microsoft.Network/networkSecurityGroups`; any casing) in `scope`, ordered by lower-cased
    /// id. `page` is `None` for the first page, else the `next` of the previous one. At most
    /// `limit` items (clamped to `1..=`[`MAX_PAGE_SIZE`]); `next` is `None` on the last page.
    /// A page is one consistent snapshot; see [`PageToken`] for what holds across pages.
    pub fn list(
        &self,
        kind: &str,
        scope: Scope,
        page: Option<&PageToken>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.not_nested()?;
        let conn = self.conns.read()?;
        tx::list(&conn, kind, &scope, page, limit)
    }

    /// Creates or replaces the resource `id` with `document`, if `precondition` holds, in one
    /// committed transaction. Returns [`PutOutcome::Created`] or [`PutOutcome::Updated`] with the
    /// stored resource: its id as first written, a new etag, the version. The document is stored
    /// as given (any JSON value).
    pub fn put(
        &self,
        id: &ResourceId,
        document: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.transaction(|tx| tx.put(id, document, precondition))
    }

    /// Deletes the resource `id`, if `precondition` holds, in one committed transaction. Returns
    /// whether it existed (ARM: 200 vs 204).
    pub fn delete(&self, id: &ResourceId, precondition: Precondition) -> Result<bool, StoreError> {
        self.transaction(|tx| tx.delete(id, precondition))
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`) and commits if it returns `Ok`;
    /// returns only after the commit is durable. If `f` returns `Err` (or panics) nothing of it is
    /// kept. Use it for anything that reads before it writes (a child PUT rewriting its parent,
    /// reference checks before a delete) or writes several rows.
    ///
    /// `E` is any error that a [`StoreError`] converts into, so the REST layer can abort with its
    /// own errors (e.g. "NSG in use"); with plain `StoreError` a closure may need
    /// `Ok::<_, StoreError>(value)`.
    pub fn transaction<T, E>(&self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.not_nested()?;
        let mut conn = self.conns.write()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("beginning a write transaction"))?;
        let mut tx = Tx { tx };
        let mark = TransactionMark::enter(self.token);
        let value = f(&mut tx)?;
        drop(mark);
        tx.tx
            .commit()
            .map_err(StoreError::sqlite("committing a write transaction"))?;
        Ok(value)
    }

    /// How many resources are stored (rows, so children inside parents are not counted).
    pub fn count(&self) -> Result<usize, StoreError> {
        self.not_nested()?;
        let conn = self.conns.read()?;
        tx::count(&conn)
    }

    fn not_nested(&self) -> Result<(), StoreError> {
        if IN_TRANSACTION.with(|stores| stores.borrow().contains(&self.token)) {
            Err(StoreError::NestedCall)
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// The store holds every resource and is private to its owner: the directory is 0700 and the
/// database 0600, created so before SQLite opens it (SQLite gives its WAL and shared-memory
/// files the database's permissions).
#[cfg(unix)]
fn private(dir: &Path, database: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |context: String| move |source| StoreError::Io { context, source };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("making {} private (0700)", dir.display())))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(database)
        .map_err(io(format!("creating {}", database.display())))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", database.display()));
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io(format!("making {} private (0600)", file.display()))(e))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn private(_dir: &Path, _database: &Path) -> Result<(), StoreError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn store_is_send_and_sync() {
        assert_send_sync::<Store>();
    }

    #[test]
    fn file_connections_use_wal_full_sync_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for conn in [store.conns.read().unwrap(), store.conns.write().unwrap()] {
            let mode: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            let sync: i64 = conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            let timeout: i64 = conn
                .pragma_query_value(None, "busy_timeout", |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
            assert_eq!(sync, 2, "synchronous=FULL");
            assert_eq!(timeout, BUSY_TIMEOUT.as_millis() as i64);
        }
    }

    #[test]
    fn listing_uses_the_scope_indexes() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conns.read().unwrap();
        let plan = |sql: &str| -> String {
            let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = statement
                .query_map([], |row| row.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ")
        };
        let by_sub = plan(
            "SELECT key FROM resources WHERE type_key = 't' AND sub_key = 's' AND key > '' ORDER BY key LIMIT 3",
        );
        assert!(by_sub.contains("resources_by_subscription"), "{by_sub}");
        assert!(!by_sub.contains("TEMP B-TREE"), "{by_sub}");
        let by_rg = plan(
            "SELECT key FROM resources WHERE type_key = 't' AND sub_key = 's' AND rg_key = 'r' AND key > '' ORDER BY key LIMIT 3",
        );
        assert!(by_rg.contains("resources_by_group"), "{by_rg}");
        assert!(!by_rg.contains("TEMP B-TREE"), "{by_rg}");
        let by_parent = plan(
            "SELECT key FROM resources WHERE type_key = 't' AND sub_key = 's' AND rg_key = 'r' AND key > 'p/' AND key < 'p0' ORDER BY key LIMIT 3",
        );
        assert!(by_parent.contains("resources_by_group"), "{by_parent}");
        assert!(!by_parent.contains("TEMP B-TREE"), "{by_parent}");
    }
}
