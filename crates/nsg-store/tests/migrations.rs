//! Schema versions: old databases are migrated when opened, newer ones are refused.

use nsg_store::{schema, Precondition, ResourceId, Scope, Store, StoreError};
use rusqlite::Connection;
use serde_json::json;
use std::path::Path;

/// Frozen copies of every released migration. A released migration must never change (databases
/// out there were built by it): if this test fails, restore the old text and append a new
/// migration instead.
const RELEASED: &[&str] = &[
    "CREATE TABLE resources (
    key      TEXT NOT NULL UNIQUE,
    id       TEXT NOT NULL,
    type_key TEXT NOT NULL,
    sub_key  TEXT NOT NULL,
    rg_key   TEXT NOT NULL,
    etag     TEXT NOT NULL,
    document TEXT NOT NULL
);",
    "ALTER TABLE resources ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE INDEX resources_by_group ON resources (type_key, sub_key, rg_key, key);
CREATE INDEX resources_by_subscription ON resources (type_key, sub_key, key);",
];

#[test]
fn released_migrations_are_unchanged() {
    assert!(schema::MIGRATIONS.len() >= RELEASED.len());
    for (i, frozen) in RELEASED.iter().enumerate() {
        assert_eq!(schema::MIGRATIONS[i], *frozen, "migration {i} was edited");
    }
    assert_eq!(schema::VERSION, schema::MIGRATIONS.len() as i64);
}

fn db(dir: &Path) -> Connection {
    Connection::open(dir.join("opennsg.db")).unwrap()
}

fn user_version(dir: &Path) -> i64 {
    db(dir)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

const NSG1: &str =
    "/subscriptions/Sub/resourceGroups/RG/providers/Microsoft.Network/networkSecurityGroups/NSG1";

/// A database as version 1 of the store left it, built by hand with the v1 SQL.
fn make_v1(dir: &Path) {
    let conn = db(dir);
    conn.execute_batch(RELEASED[0]).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn.execute(
        "INSERT INTO resources (key, id, type_key, sub_key, rg_key, etag, document) \
         VALUES (?1, ?2, 'microsoft.network/networksecuritygroups', 'sub', 'rg', 'W/\"v1-etag\"', ?3)",
        rusqlite::params![
            NSG1.to_ascii_lowercase(),
            NSG1,
            r#"{"name":"NSG1","properties":{"securityRules":[]}}"#
        ],
    )
    .unwrap();
}

#[test]
fn a_version_1_database_is_migrated_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    make_v1(dir.path());
    assert_eq!(user_version(dir.path()), 1);

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(user_version(dir.path()), schema::VERSION);

    // The old row reads back with the new column's default.
    let id = ResourceId::parse(NSG1).unwrap();
    let r = store.get(&id).unwrap().unwrap();
    assert_eq!(r.id.as_str(), NSG1);
    assert_eq!(r.etag, "W/\"v1-etag\"");
    assert_eq!(r.version, 1);
    assert_eq!(
        r.document,
        json!({"name": "NSG1", "properties": {"securityRules": []}})
    );
    // Listing (which needs the v2 indexes) and writing work.
    let page = store
        .list(
            "Microsoft.Network/networkSecurityGroups",
            Scope::ResourceGroup("sub".into(), "rg".into()),
            None,
            10,
        )
        .unwrap();
    assert_eq!(page.items, vec![r.clone()]);
    let updated = store
        .put(
            &id,
            json!({}),
            Precondition::IfMatch("W/\"v1-etag\"".into()),
        )
        .unwrap()
        .into_resource();
    assert_eq!(updated.version, 2);
    drop(store);

    // Opening again migrates nothing and keeps the data.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap(), updated);
    assert_eq!(user_version(dir.path()), schema::VERSION);
}

#[test]
fn a_new_database_gets_the_latest_schema() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    assert_eq!(user_version(dir.path()), schema::VERSION);
    let indexes: i64 = db(dir.path())
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'resources_by_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 2);
}

#[test]
fn a_database_from_a_newer_build_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let future = schema::VERSION + 5;
    db(dir.path())
        .pragma_update(None, "user_version", future)
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::SchemaTooNew {
            found, supported, ..
        } => {
            assert_eq!(*found, future);
            assert_eq!(*supported, schema::VERSION);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("version {future}"))
            && message.contains("newer")
            && message.contains("opennsg.db"),
        "{message}"
    );
    assert_eq!(user_version(dir.path()), future);
}

#[test]
fn a_failed_migration_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    make_v1(dir.path());
    // Something occupies a name migration 2 creates: the step fails half-way.
    db(dir.path())
        .execute_batch("CREATE TABLE resources_by_subscription (x INTEGER);")
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    match &err {
        StoreError::Migration { from, to, .. } => assert_eq!((*from, *to), (1, 2)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("from version 1 to 2"), "{err}");
    assert_eq!(user_version(dir.path()), 1);
    let columns: Vec<String> = db(dir.path())
        .prepare("SELECT name FROM pragma_table_info('resources')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !columns.contains(&"version".to_string()),
        "the ALTER was rolled back: {columns:?}"
    );
}
