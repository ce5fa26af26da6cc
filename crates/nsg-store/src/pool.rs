//! Connections: a small pool on a file, one connection in memory.

use crate::error::StoreError;
use crate::schema;
use crate::BUSY_TIMEOUT;
use rusqlite::Connection;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How many idle connections a file store keeps open for reuse.
const MAX_IDLE: usize = 8;

pub(crate) enum Connections {
    /// In memory: the database lives in this one connection.
    Single(Mutex<Connection>),
    File {
        path: PathBuf,
        idle: Mutex<Vec<Connection>>,
        /// Held by this process's writer for its whole transaction, so writers of one process
        /// queue here rather than in SQLite's sleeping busy handler.
        write_gate: Mutex<()>,
    },
}

/// A borrowed connection; back to the pool (or its mutex) when dropped.
pub(crate) enum Lease<'a> {
    Single(MutexGuard<'a, Connection>),
    Pooled {
        conn: Option<Connection>,
        idle: &'a Mutex<Vec<Connection>>,
        /// Dropped after `conn` went back (fields drop after `Drop::drop`).
        _gate: Option<MutexGuard<'a, ()>>,
    },
}

/// Locks ignoring poison: the data behind these mutexes (a connection whose transaction was
/// rolled back by its drop, a list of idle connections, nothing) stays valid if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connections {
    pub(crate) fn open_file(path: PathBuf) -> Result<Connections, StoreError> {
        let shown = path.display().to_string();
        let mut conn = connect(&path)?;
        // Before anything writes to the file: refuse a newer schema or another program's database
        // without touching it.
        schema::check(&conn, &shown)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(StoreError::sqlite(format!("{shown}: enabling WAL")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io {
                context: format!("{shown}: enabling WAL"),
                source: std::io::Error::other(format!(
                    "SQLite kept journal mode {mode:?} (is the file on a filesystem without shared memory?)"
                )),
            });
        }
        schema::migrate(&mut conn, &shown)?;
        Ok(Connections::File {
            path,
            idle: Mutex::new(vec![conn]),
            write_gate: Mutex::new(()),
        })
    }

    pub(crate) fn open_memory() -> Result<Connections, StoreError> {
        let mut conn = Connection::open_in_memory()
            .map_err(StoreError::sqlite("opening an in-memory database"))?;
        schema::migrate(&mut conn, ":memory:")?;
        Ok(Connections::Single(Mutex::new(conn)))
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        match self {
            Connections::Single(_) => None,
            Connections::File { path, .. } => Some(path),
        }
    }

    /// A connection for reading (no gate).
    pub(crate) fn read(&self) -> Result<Lease<'_>, StoreError> {
        self.lease(false)
    }

    /// A connection for a write transaction, with this process's write gate held.
    pub(crate) fn write(&self) -> Result<Lease<'_>, StoreError> {
        self.lease(true)
    }

    fn lease(&self, write: bool) -> Result<Lease<'_>, StoreError> {
        match self {
            Connections::Single(conn) => {
                let conn = lock(conn);
                if !conn.is_autocommit() {
                    // Only reachable if a transaction's rollback itself failed; start clean.
                    conn.execute_batch("ROLLBACK")
                        .map_err(StoreError::sqlite("rolling back an abandoned transaction"))?;
                }
                Ok(Lease::Single(conn))
            }
            Connections::File {
                path,
                idle,
                write_gate,
            } => {
                let gate = write.then(|| lock(write_gate));
                let pooled = lock(idle).pop();
                let conn = match pooled {
                    Some(conn) => conn,
                    None => connect(path)?,
                };
                Ok(Lease::Pooled {
                    conn: Some(conn),
                    idle,
                    _gate: gate,
                })
            }
        }
    }
}

/// A new connection to the file with the per-connection settings (WAL is a property of the file,
/// set once by `open_file`).
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display();
    let conn = Connection::open(path).map_err(StoreError::sqlite(format!("opening {shown}")))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(StoreError::sqlite(format!(
            "{shown}: setting the busy timeout"
        )))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(StoreError::sqlite(format!(
            "{shown}: setting synchronous=FULL"
        )))?;
    Ok(conn)
}

impl Deref for Lease<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Lease::Single(conn) => conn,
            Lease::Pooled { conn, .. } => conn
                .as_ref()
                .expect("a lease holds its connection until dropped"),
        }
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            Lease::Single(conn) => conn,
            Lease::Pooled { conn, .. } => conn
                .as_mut()
                .expect("a lease holds its connection until dropped"),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Lease::Pooled { conn, idle, .. } = self {
            if let Some(conn) = conn.take() {
                // A connection left inside a transaction (its rollback failed) is closed, not reused.
                if conn.is_autocommit() {
                    let mut idle = lock(idle);
                    if idle.len() < MAX_IDLE {
                        idle.push(conn);
                    }
                }
            }
        }
    }
}
