//! The database schema and its migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version` (0 in a new file). [`MIGRATIONS`]`[i]`
//! takes a database from version `i` to `i + 1`; [`VERSION`] is the number of migrations.
//! Opening a database runs the missing steps and sets `user_version`, all in one `BEGIN
//! IMMEDIATE` transaction (so two processes opening an old file at once migrate it once, and a
//! failed step leaves the file as it was). A database whose version is above [`VERSION`] was
//! written by a newer build and is refused with [`StoreError::SchemaTooNew`], untouched.
//!
//! **Rules for changing the schema:** never edit a released migration (a test keeps a frozen copy
//! of each); append a new one and let `VERSION` grow. A migration may not depend on data this
//! build cannot produce, and must be plain SQL (no `BEGIN`/`COMMIT`: the runner owns the
//! transaction).
//!
//! History:
//! 1. `resources`: one row per stored resource. `key` is the id lower-cased (ASCII, as
//!    `ResourceId` compares) and is the identity; `id` is the id as first written; `type_key`,
//!    `sub_key`, `rg_key` are the lower-cased full type, subscription and resource group, for
//!    listing; `etag`; `document` is the JSON text.
//! 2. `version` (a counter of writes to the row, 1 on create) and the two listing indexes
//!    (by resource group and by subscription, each ordered by key for keyset paging).

use crate::error::StoreError;
use rusqlite::{Connection, TransactionBehavior};

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only.
pub const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE resources (
    key      TEXT NOT NULL UNIQUE,
    id       TEXT NOT NULL,
    type_key TEXT NOT NULL,
    sub_key  TEXT NOT NULL,
    rg_key   TEXT NOT NULL,
    etag     TEXT NOT NULL,
    document TEXT NOT NULL
);",
    // 1 → 2
    "ALTER TABLE resources ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX resources_by_group ON resources (type_key, sub_key, rg_key, key);
CREATE INDEX resources_by_subscription ON resources (type_key, sub_key, key);",
];

/// The schema version this build writes: the number of migrations.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection, path: &str) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(StoreError::sqlite(format!(
            "{path}: reading the schema version"
        )))
}

/// The database's schema version, if this build can use the database: refuses a newer schema
/// and another program's database. Reads only.
pub(crate) fn check(conn: &Connection, path: &str) -> Result<i64, StoreError> {
    let found = user_version(conn, path)?;
    if found > VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_string(),
            found,
            supported: VERSION,
        });
    }
    let foreign = || StoreError::NotAStore {
        path: path.to_string(),
    };
    if found < 0 {
        return Err(foreign());
    }
    if found == 0 {
        let objects: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(StoreError::sqlite(format!("{path}: inspecting the schema")))?;
        if objects > 0 {
            return Err(foreign());
        }
    }
    Ok(found)
}

/// Brings the database to [`VERSION`], or refuses it (see [`check`]).
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    if check(conn, path)? == VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::sqlite(format!(
            "{path}: starting the migration"
        )))?;
    // Another process may have migrated between the check above and the lock.
    let found = check(&tx, path)?;
    for from in found..VERSION {
        tx.execute_batch(MIGRATIONS[from as usize])
            .map_err(|source| StoreError::Migration {
                path: path.to_string(),
                from,
                to: from + 1,
                source,
            })?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(|source| StoreError::Migration {
            path: path.to_string(),
            from: found,
            to: VERSION,
            source,
        })?;
    tx.commit().map_err(|source| StoreError::Migration {
        path: path.to_string(),
        from: found,
        to: VERSION,
        source,
    })
}
