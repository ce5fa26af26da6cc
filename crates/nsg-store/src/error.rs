//! The store's one error type.

/// Why a store operation failed.
///
/// How the REST layer maps these to answers:
/// - [`StoreError::PreconditionFailed`] → 412 `PreconditionFailed`;
/// - [`StoreError::InvalidPageToken`] → 400 (a client sent a `$skipToken` it did not get from us);
/// - a full disk ([`StoreError::is_storage_full`]) → 507: nothing was written;
/// - everything else is a server fault → 500, logged with its full chain (`source()`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An `If-Match` / `If-None-Match` precondition did not hold; nothing was written.
    #[error(
        "precondition failed for {id}: expected {expected}, found {}",
        .actual.as_deref().map_or("no resource", |etag| etag)
    )]
    PreconditionFailed {
        /// The id as the caller wrote it.
        id: String,
        /// What the precondition asked for: the `If-Match` value (one etag, a comma-separated
        /// list or `*`), or `no resource` for `If-None-Match: *`.
        expected: String,
        /// The stored resource's current etag, `None` when it does not exist.
        actual: Option<String>,
    },

    /// SQLite failed; `context` says what the store was doing.
    #[error("{context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    /// The data directory could not be created.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// The database was written by a newer build: its schema version is above the newest this
    /// build knows. Nothing was changed.
    #[error(
        "{path}: database schema version {found} is newer than this build of opennsg supports \
         (version {supported}); run a newer opennsg against this data directory"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        supported: i64,
    },

    /// A migration step failed; the database was left at version `from` (the migration runs in
    /// one transaction).
    #[error("{path}: migrating the database schema from version {from} to {to}: {source}")]
    Migration {
        path: String,
        from: i64,
        to: i64,
        #[source]
        source: rusqlite::Error,
    },

    /// The file is an SQLite database that this store did not create (schema version 0 but it
    /// already has tables). Nothing was changed.
    #[error("{path}: an SQLite database that is not an opennsg store (it has tables but no schema version)")]
    NotAStore { path: String },

    /// A stored row cannot be read back (bad JSON, an id that does not parse, a column of the
    /// wrong type). Reported, never panicked on; writing the id again with `put` repairs the row,
    /// `delete` removes it.
    #[error("stored resource {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },

    /// A page token that this store did not hand out.
    #[error("invalid page token {token:?}")]
    InvalidPageToken { token: String },

    /// A `Store` method was called from inside `Store::transaction` on the same store and
    /// thread. That would deadlock (or see data outside the transaction): use the `Tx` instead.
    #[error("Store method called inside a transaction of the same store; use the Tx passed to the closure")]
    NestedCall,
}

impl StoreError {
    pub(crate) fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Sqlite { context, source }
    }
}

impl StoreError {
    /// Whether the store failed because its disk is full: nothing was written, and the caller
    /// may try again once there is room.
    pub fn is_storage_full(&self) -> bool {
        match self {
            StoreError::Sqlite { source, .. } => matches!(
                source,
                rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull
            ),
            StoreError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}
