//! Transactions and the row-level operations behind every store method.

use crate::error::StoreError;
use crate::types::{new_etag, Page, PageToken, Precondition, PutOutcome, Scope, StoredResource};
use crate::MAX_PAGE_SIZE;
use nsg_model::ResourceId;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;

/// A write transaction (`BEGIN IMMEDIATE`), handed to the closure of
/// [`Store::transaction`](crate::Store::transaction).
///
/// Its methods have the same semantics as the `Store` methods of the same names, but all of them
/// see the transaction's own writes and none of them is visible to others, or durable, until the
/// closure returns `Ok` and the store commits. If the closure returns `Err` (or panics) everything
/// is rolled back. Because the transaction holds SQLite's write lock from its first statement, a
/// read followed by a write in one `Tx` cannot lose a concurrent update: read-modify-write of a
/// parent document (an NSG with its rules, a VNet with its subnets) is
///
/// ```no_run
/// # use nsg_store::{Store, StoreError, Precondition, ResourceId};
/// # fn f(store: &Store, nsg_id: &ResourceId, rule: serde_json::Value) -> Result<(), StoreError> {
/// store.transaction(|tx| {
///     let Some(nsg) = tx.get(nsg_id)? else { return Ok(None) };
///     let mut document = nsg.document;
///     // … insert or replace `rule` in document["properties"]["securityRules"] …
///     let outcome = tx.put(nsg_id, document, Precondition::IfMatch(nsg.etag))?;
///     Ok::<_, StoreError>(Some(outcome))
/// })?;
/// # Ok(()) }
/// ```
pub struct Tx<'c> {
    pub(crate) tx: rusqlite::Transaction<'c>,
}

impl Tx<'_> {
    /// See [`Store::get`](crate::Store::get).
    pub fn get(&self, id: &ResourceId) -> Result<Option<StoredResource>, StoreError> {
        get(&self.tx, id)
    }

    /// See [`Store::list`](crate::Store::list).
    pub fn list(
        &self,
        kind: &str,
        scope: Scope,
        page: Option<&PageToken>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        list(&self.tx, kind, &scope, page, limit)
    }

    /// See [`Store::put`](crate::Store::put). Durable only once the transaction commits.
    pub fn put(
        &mut self,
        id: &ResourceId,
        document: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        put(&self.tx, id, document, &precondition)
    }

    /// See [`Store::delete`](crate::Store::delete). Durable only once the transaction commits.
    pub fn delete(
        &mut self,
        id: &ResourceId,
        precondition: Precondition,
    ) -> Result<bool, StoreError> {
        delete(&self.tx, id, &precondition)
    }

    /// See [`Store::count`](crate::Store::count).
    pub fn count(&self) -> Result<usize, StoreError> {
        count(&self.tx)
    }

    /// One stored resource of every resource group that holds any (see
    /// [`Store::put`](crate::Store::put) for ids: they keep their first spelling).
    pub fn one_per_resource_group(&self) -> Result<Vec<StoredResource>, StoreError> {
        one_per_resource_group(&self.tx)
    }
}

/// The identity of a resource: its id lower-cased the way `ResourceId` compares.
pub(crate) fn key_of(id: &ResourceId) -> String {
    id.as_str().trim_end_matches('/').to_ascii_lowercase()
}

const COLUMNS: &str = "key, id, etag, version, document";

pub(crate) fn get(
    conn: &Connection,
    id: &ResourceId,
) -> Result<Option<StoredResource>, StoreError> {
    let key = key_of(id);
    let mut statement = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM resources WHERE key = ?1"))
        .map_err(StoreError::sqlite(format!("reading {id}")))?;
    let mut rows = statement
        .query([&key])
        .map_err(StoreError::sqlite(format!("reading {id}")))?;
    match rows
        .next()
        .map_err(StoreError::sqlite(format!("reading {id}")))?
    {
        Some(row) => read_row(row).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn list(
    conn: &Connection,
    kind: &str,
    scope: &Scope,
    page: Option<&PageToken>,
    limit: usize,
) -> Result<Page, StoreError> {
    let limit = limit.clamp(1, MAX_PAGE_SIZE);
    let type_key = kind.to_ascii_lowercase();
    let after = page.map(PageToken::key).unwrap_or_default();
    // One more than asked: tells whether a next page exists without ever handing out an empty one.
    let fetch = (limit + 1) as i64;
    let context = || format!("listing {kind} in {scope:?}");
    let mut items = Vec::with_capacity(limit + 1);
    let mut collect = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<(), StoreError> {
        let mut statement = conn
            .prepare_cached(sql)
            .map_err(StoreError::sqlite(context()))?;
        let mut rows = statement
            .query(params)
            .map_err(StoreError::sqlite(context()))?;
        while let Some(row) = rows.next().map_err(StoreError::sqlite(context()))? {
            items.push(read_row(row)?);
        }
        Ok(())
    };
    match scope {
        Scope::Subscription(sub) => collect(
            &format!(
                "SELECT {COLUMNS} FROM resources \
                 WHERE type_key = ?1 AND sub_key = ?2 AND key > ?3 ORDER BY key LIMIT ?4"
            ),
            &[&type_key, &sub.to_ascii_lowercase(), &after, &fetch],
        )?,
        Scope::ResourceGroup(sub, rg) => collect(
            &format!(
                "SELECT {COLUMNS} FROM resources \
                 WHERE type_key = ?1 AND sub_key = ?2 AND rg_key = ?3 AND key > ?4 \
                 ORDER BY key LIMIT ?5"
            ),
            &[
                &type_key,
                &sub.to_ascii_lowercase(),
                &rg.to_ascii_lowercase(),
                &after,
                &fetch,
            ],
        )?,
        Scope::Parent(parent) => {
            // The keys below the parent's are exactly those in (`{parent}/`, `{parent}0`):
            // '0' is the byte after '/', and SQLite compares text bytewise.
            let parent_key = key_of(parent);
            let below = format!("{parent_key}/");
            let after = after.max(below);
            collect(
                &format!(
                    "SELECT {COLUMNS} FROM resources \
                     WHERE type_key = ?1 AND sub_key = ?2 AND rg_key = ?3 AND key > ?4 AND key < ?5 \
                     ORDER BY key LIMIT ?6"
                ),
                &[
                    &type_key,
                    &parent.subscription().to_ascii_lowercase(),
                    &parent.resource_group().to_ascii_lowercase(),
                    &after,
                    &format!("{parent_key}0"),
                    &fetch,
                ],
            )?
        }
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| PageToken::after(&key_of(&last.id)))
    } else {
        None
    };
    Ok(Page { items, next })
}

/// What a write needs to know of the current row; read leniently so that a corrupt row can
/// still be overwritten or deleted.
struct Current {
    id: Option<ResourceId>,
    etag: Option<String>,
    version: u64,
}

/// The row of `key`, once `precondition` holds for it. A row whose etag is unreadable still
/// exists (If-None-Match fails on it) but matches no etag.
fn current_meeting(
    conn: &Connection,
    key: &str,
    id: &ResourceId,
    precondition: &Precondition,
) -> Result<Option<Current>, StoreError> {
    let current = current(conn, key, id)?;
    precondition.check(
        id,
        current.as_ref().map(|c| c.etag.as_deref().unwrap_or("")),
    )?;
    Ok(current)
}

fn current(conn: &Connection, key: &str, id: &ResourceId) -> Result<Option<Current>, StoreError> {
    conn.prepare_cached("SELECT id, etag, version FROM resources WHERE key = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([key], |row| {
                    let text = |i: usize| -> rusqlite::Result<Option<String>> {
                        Ok(match row.get_ref(i)? {
                            ValueRef::Text(bytes) => {
                                std::str::from_utf8(bytes).ok().map(str::to_string)
                            }
                            _ => None,
                        })
                    };
                    Ok(Current {
                        id: text(0)?
                            .and_then(|text| ResourceId::parse(&text).ok())
                            .filter(|stored| key_of(stored) == key),
                        etag: text(1)?,
                        version: match row.get_ref(2)? {
                            ValueRef::Integer(v) => u64::try_from(v).unwrap_or(0),
                            _ => 0,
                        },
                    })
                })
                .optional()
        })
        .map_err(StoreError::sqlite(format!("reading {id}")))
}

/// Callers run this inside a write transaction.
pub(crate) fn put(
    conn: &Connection,
    id: &ResourceId,
    document: Value,
    precondition: &Precondition,
) -> Result<PutOutcome, StoreError> {
    let key = key_of(id);
    let current = current_meeting(conn, &key, id, precondition)?;
    let text = serde_json::to_string(&document).map_err(|e| StoreError::Corrupt {
        key: key.clone(),
        reason: format!("the document cannot be serialised: {e}"),
    })?;
    let etag = new_etag();
    let context = || format!("writing {id}");
    match current {
        None => {
            conn.prepare_cached(
                "INSERT INTO resources (key, id, type_key, sub_key, rg_key, etag, document, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    key,
                    id.as_str(),
                    id.resource_type().to_ascii_lowercase(),
                    id.subscription().to_ascii_lowercase(),
                    id.resource_group().to_ascii_lowercase(),
                    etag,
                    text,
                ])
            })
            .map_err(StoreError::sqlite(context()))?;
            Ok(PutOutcome::Created(StoredResource {
                id: id.clone(),
                resource_type: id.resource_type(),
                etag,
                document,
                version: 1,
            }))
        }
        Some(current) => {
            // The id keeps the spelling it was created with (a row whose stored id is unreadable
            // is repaired with this one).
            let stored_id = current.id.unwrap_or_else(|| id.clone());
            let version = current.version.saturating_add(1).max(1);
            conn.prepare_cached(
                "UPDATE resources SET id = ?2, etag = ?3, document = ?4, version = ?5 WHERE key = ?1",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    key,
                    stored_id.as_str(),
                    etag,
                    text,
                    i64::try_from(version).unwrap_or(i64::MAX),
                ])
            })
            .map_err(StoreError::sqlite(context()))?;
            Ok(PutOutcome::Updated(StoredResource {
                resource_type: stored_id.resource_type(),
                id: stored_id,
                etag,
                document,
                version,
            }))
        }
    }
}

/// Callers run this inside a write transaction.
pub(crate) fn delete(
    conn: &Connection,
    id: &ResourceId,
    precondition: &Precondition,
) -> Result<bool, StoreError> {
    let key = key_of(id);
    let current = current_meeting(conn, &key, id, precondition)?;
    if current.is_none() {
        return Ok(false);
    }
    conn.prepare_cached("DELETE FROM resources WHERE key = ?1")
        .and_then(|mut statement| statement.execute([&key]))
        .map_err(StoreError::sqlite(format!("deleting {id}")))?;
    Ok(true)
}

/// One stored resource of every resource group that holds any, in no particular order: its id
/// carries the subscription and group as first written.
pub(crate) fn one_per_resource_group(conn: &Connection) -> Result<Vec<StoredResource>, StoreError> {
    let context = "listing the resource groups in use";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM resources WHERE key IN \
             (SELECT MIN(key) FROM resources GROUP BY sub_key, rg_key)"
        ))
        .map_err(StoreError::sqlite(context))?;
    let mut rows = statement.query([]).map_err(StoreError::sqlite(context))?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(StoreError::sqlite(context))? {
        found.push(read_row(row)?);
    }
    Ok(found)
}

pub(crate) fn count(conn: &Connection) -> Result<usize, StoreError> {
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM resources", [], |row| row.get(0))
        .map_err(StoreError::sqlite("counting resources"))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Reads a row selected with [`COLUMNS`]; anything unexpected is [`StoreError::Corrupt`].
fn read_row(row: &Row<'_>) -> Result<StoredResource, StoreError> {
    let column = |i: usize| {
        row.get_ref(i)
            .map_err(StoreError::sqlite("reading a stored resource"))
    };
    let key = match column(0)? {
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => format!("<key of type {}>", other.data_type()),
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let text = |i: usize, what: &str| -> Result<&str, StoreError> {
        match column(i)? {
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map_err(|_| corrupt(format!("the {what} is not valid UTF-8"))),
            other => Err(corrupt(format!(
                "the {what} is of type {}, not text",
                other.data_type()
            ))),
        }
    };
    let id = ResourceId::parse(text(1, "id")?).map_err(|e| corrupt(format!("the id: {e}")))?;
    if key_of(&id) != key {
        return Err(corrupt(format!("the id {id} does not match the key")));
    }
    let etag = text(2, "etag")?.to_string();
    let version = match column(3)? {
        ValueRef::Integer(v) if v >= 1 => v as u64,
        other => {
            return Err(corrupt(format!(
                "the version is {other:?}, not a positive integer"
            )))
        }
    };
    let document = serde_json::from_str(text(4, "document")?)
        .map_err(|e| corrupt(format!("the document is not valid JSON: {e}")))?;
    Ok(StoredResource {
        resource_type: id.resource_type(),
        id,
        etag,
        document,
        version,
    })
}
