//! The store's semantics on real SQLite files: CRUD, id casing, etags and preconditions,
//! listing and paging, transactions, damaged data.

use nsg_store::{
    Page, PageToken, Precondition, PutOutcome, ResourceId, Scope, Store, StoreError, MAX_PAGE_SIZE,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

const NSG: &str = "Microsoft.Network/networkSecurityGroups";
const ASG: &str = "Microsoft.Network/applicationSecurityGroups";

fn id(text: &str) -> ResourceId {
    ResourceId::parse(text).unwrap()
}

fn nsg_id(sub: &str, rg: &str, name: &str) -> ResourceId {
    id(&format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/{NSG}/{name}"
    ))
}

fn open(dir: &Path) -> Store {
    Store::open(dir).unwrap()
}

fn doc(name: &str) -> Value {
    json!({"name": name, "location": "westeurope", "properties": {"securityRules": []}})
}

#[test]
fn crud_round_trip_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("data"));
    assert_eq!(
        store.path().unwrap(),
        dir.path().join("data").join("opennsg.db")
    );
    let id = nsg_id("sub1", "rg1", "nsg1");
    assert_eq!(store.get(&id).unwrap(), None);
    assert_eq!(store.count().unwrap(), 0);

    let created = store.put(&id, doc("nsg1"), Precondition::None).unwrap();
    assert!(created.created());
    let r = created.resource();
    assert_eq!(r.id, id);
    assert_eq!(r.resource_type, NSG);
    assert_eq!(r.version, 1);
    assert_eq!(r.document, doc("nsg1"));
    assert_eq!(store.get(&id).unwrap().as_ref(), Some(r));
    assert_eq!(store.count().unwrap(), 1);

    let mut changed = doc("nsg1");
    changed["tags"] = json!({"env": "prod"});
    let updated = store.put(&id, changed.clone(), Precondition::None).unwrap();
    assert!(matches!(updated, PutOutcome::Updated(_)));
    let r = updated.into_resource();
    assert_eq!(r.version, 2);
    assert_eq!(r.document, changed);
    assert_eq!(store.get(&id).unwrap(), Some(r));
    assert_eq!(store.count().unwrap(), 1);

    assert!(store.delete(&id, Precondition::None).unwrap());
    assert_eq!(store.get(&id).unwrap(), None);
    assert!(
        !store.delete(&id, Precondition::None).unwrap(),
        "already gone"
    );
    assert_eq!(store.count().unwrap(), 0);

    // Created anew after a delete: version starts again.
    let again = store.put(&id, doc("nsg1"), Precondition::None).unwrap();
    assert!(again.created());
    assert_eq!(again.resource().version, 1);
}

#[test]
fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let id = nsg_id("sub1", "rg1", "nsg1");
    let written = {
        let store = open(dir.path());
        store
            .put(&id, doc("nsg1"), Precondition::None)
            .unwrap()
            .into_resource()
    };
    let store = open(dir.path());
    assert_eq!(store.get(&id).unwrap(), Some(written));
}

#[test]
fn documents_round_trip_exactly() {
    let store = Store::open_in_memory().unwrap();
    let id = nsg_id("s", "g", "n");
    // Member order (serde_json's preserve_order), unicode, escapes, numbers, nesting.
    let text = r#"{"zeta":1,"alpha":{"b":[1,2.5,-3e-7,18446744073709551615],"a":null},"name":"ñ \"q\" \u0001 😀","properties":{"securityRules":[{"name":"r1","properties":{"priority":100}}]},"empty":{},"list":[]}"#;
    let document: Value = serde_json::from_str(text).unwrap();
    store.put(&id, document, Precondition::None).unwrap();
    let back = store.get(&id).unwrap().unwrap().document;
    assert_eq!(serde_json::to_string(&back).unwrap(), text);
    // Any JSON value is a document.
    store
        .put(&id, json!([1, "two"]), Precondition::None)
        .unwrap();
    assert_eq!(store.get(&id).unwrap().unwrap().document, json!([1, "two"]));
}

#[test]
fn ids_are_case_insensitive_and_keep_their_first_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = id("/subscriptions/SUB1/resourceGroups/RG-One/providers/Microsoft.Network/networkSecurityGroups/Web-NSG");
    let lower = id(&first.as_str().to_lowercase());
    let upper = id(&first.as_str().to_uppercase());

    store
        .put(&first, doc("Web-NSG"), Precondition::None)
        .unwrap();
    for spelling in [&first, &lower, &upper] {
        let found = store.get(spelling).unwrap().expect("found in any casing");
        assert_eq!(
            found.id.as_str(),
            first.as_str(),
            "returned as first written"
        );
        assert_eq!(
            found.resource_type,
            "Microsoft.Network/networkSecurityGroups"
        );
    }

    // A PUT in another casing updates the same resource and keeps the first spelling.
    let outcome = store.put(&upper, doc("x"), Precondition::None).unwrap();
    assert!(!outcome.created());
    assert_eq!(outcome.resource().id.as_str(), first.as_str());
    assert_eq!(store.count().unwrap(), 1);
    let listed = store
        .list(
            "microsoft.network/NETWORKSECURITYGROUPS",
            Scope::ResourceGroup("sub1".into(), "rg-one".into()),
            None,
            10,
        )
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].id.as_str(), first.as_str());

    // Delete in a third casing; a new create takes the new spelling.
    assert!(store.delete(&lower, Precondition::None).unwrap());
    let recreated = store.put(&upper, doc("x"), Precondition::None).unwrap();
    assert!(recreated.created());
    assert_eq!(recreated.resource().id.as_str(), upper.as_str());

    // A trailing slash is the same resource.
    let slash = id(&format!("{}/", upper.as_str()));
    assert!(store.get(&slash).unwrap().is_some());
}

#[test]
fn every_put_makes_a_new_etag_in_azures_shape() {
    let store = Store::open_in_memory().unwrap();
    let id = nsg_id("s", "g", "n");
    let mut seen = BTreeSet::new();
    for version in 1..=20u64 {
        // The same document every time: the etag still changes.
        let r = store
            .put(&id, doc("n"), Precondition::None)
            .unwrap()
            .into_resource();
        assert_eq!(r.version, version);
        assert!(
            r.etag.starts_with("W/\"") && r.etag.ends_with('"') && r.etag.len() == 40,
            "{}",
            r.etag
        );
        assert_eq!(store.get(&id).unwrap().unwrap().etag, r.etag);
        assert!(seen.insert(r.etag), "etag reused");
    }
}

#[test]
fn rendered_documents_carry_the_records_id_name_and_etag() {
    let store = Store::open_in_memory().unwrap();
    let first = nsg_id("s", "g", "Web");
    store
        .put(
            &first,
            json!({"id": "stale", "etag": "old", "properties": {}}),
            Precondition::None,
        )
        .unwrap();
    let r = store
        .put(
            &nsg_id("S", "G", "WEB"),
            json!({"name": "WEB", "properties": {}}),
            Precondition::None,
        )
        .unwrap()
        .into_resource();
    let rendered = r.rendered();
    assert_eq!(rendered["id"], first.as_str());
    assert_eq!(rendered["name"], "Web");
    assert_eq!(rendered["etag"], r.etag.as_str());
    assert_eq!(rendered["properties"], json!({}));
    assert_eq!(
        r.document["name"], "WEB",
        "the stored document itself is not edited"
    );
}

#[test]
fn if_match_needs_the_current_etag() {
    let store = Store::open_in_memory().unwrap();
    let id = nsg_id("s", "g", "n");

    // On a missing resource If-Match fails, even with `*`.
    for etag in ["*", "W/\"00000000-0000-0000-0000-000000000000\""] {
        let err = store
            .put(&id, doc("n"), Precondition::IfMatch(etag.into()))
            .unwrap_err();
        match err {
            StoreError::PreconditionFailed {
                id: failed,
                expected,
                actual,
            } => {
                assert_eq!(failed, id.as_str());
                assert_eq!(expected, etag);
                assert_eq!(actual, None);
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(store.get(&id).unwrap(), None, "nothing written");

    let v1 = store
        .put(&id, doc("n"), Precondition::None)
        .unwrap()
        .into_resource();
    let v2 = store
        .put(&id, doc("n"), Precondition::IfMatch(v1.etag.clone()))
        .unwrap()
        .into_resource();
    assert_eq!(v2.version, 2);

    // The old etag no longer matches; the error names the current one.
    let err = store
        .put(
            &id,
            json!({"lost": true}),
            Precondition::IfMatch(v1.etag.clone()),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::PreconditionFailed { actual: Some(a), .. } if *a == v2.etag),
        "{err}"
    );
    assert!(err.to_string().contains(&v2.etag), "{err}");
    assert_eq!(store.get(&id).unwrap().unwrap(), v2, "nothing written");

    // Equivalent spellings of the current etag, lists, and `*` match.
    let mut current = v2;
    let spellings: [fn(&str) -> String; 4] = [
        |etag| etag.trim_start_matches("W/").to_string(),
        |etag| etag.trim_start_matches("W/").trim_matches('"').to_string(),
        |etag| format!("W/\"nope\", {etag}"),
        |_| "*".to_string(),
    ];
    for spelling in spellings {
        let spelling = spelling(&current.etag);
        current = store
            .put(&id, doc("n"), Precondition::IfMatch(spelling.clone()))
            .unwrap_or_else(|e| panic!("{spelling}: {e}"))
            .into_resource();
    }
    assert_eq!(current.version, 6);

    // Delete honours If-Match too.
    let err = store
        .delete(&id, Precondition::IfMatch("W/\"stale\"".into()))
        .unwrap_err();
    assert!(matches!(err, StoreError::PreconditionFailed { .. }));
    assert!(store.get(&id).unwrap().is_some());
    assert!(store
        .delete(&id, Precondition::IfMatch(current.etag.clone()))
        .unwrap());
    let err = store
        .delete(&id, Precondition::IfMatch(current.etag))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::PreconditionFailed { actual: None, .. }),
        "If-Match on a missing resource fails"
    );
}

#[test]
fn if_none_match_only_creates() {
    let store = Store::open_in_memory().unwrap();
    let id = nsg_id("s", "g", "n");
    let created = store
        .put(&id, doc("first"), Precondition::IfNoneMatch)
        .unwrap();
    assert!(created.created());
    let err = store
        .put(&id, doc("second"), Precondition::IfNoneMatch)
        .unwrap_err();
    match &err {
        StoreError::PreconditionFailed {
            expected, actual, ..
        } => {
            assert_eq!(expected, "no resource");
            assert_eq!(actual.as_deref(), Some(created.resource().etag.as_str()));
        }
        other => panic!("{other}"),
    }
    assert_eq!(store.get(&id).unwrap().unwrap().document, doc("first"));
    // Also in another casing.
    let upper = id.as_str().to_uppercase();
    assert!(store
        .put(
            &ResourceId::parse(&upper).unwrap(),
            doc("x"),
            Precondition::IfNoneMatch
        )
        .is_err());
    // Delete with If-None-Match fails on an existing resource, and is a no-op on a missing one.
    assert!(store.delete(&id, Precondition::IfNoneMatch).is_err());
    assert!(store.delete(&id, Precondition::None).unwrap());
    assert!(!store.delete(&id, Precondition::IfNoneMatch).unwrap());
}

/// 25 NSGs in sub1/rg1, 10 in sub1/rg2 (spelled `RG2`), 5 in sub2/rg1, plus ASGs in sub1/rg1.
fn populate(store: &Store) -> (Vec<ResourceId>, Vec<ResourceId>, Vec<ResourceId>) {
    let mut rg1 = Vec::new();
    let mut rg2 = Vec::new();
    let mut other = Vec::new();
    store
        .transaction(|tx| {
            for i in 0..25 {
                // Mixed casing: order must follow the lower-cased id.
                let name = if i % 3 == 0 {
                    format!("NSG-{i:02}")
                } else {
                    format!("nsg-{i:02}")
                };
                let id = nsg_id("sub1", "rg1", &name);
                tx.put(&id, doc(&name), Precondition::None)?;
                rg1.push(id);
            }
            for i in 0..10 {
                let id = nsg_id("sub1", "RG2", &format!("b{i}"));
                tx.put(&id, doc("b"), Precondition::None)?;
                rg2.push(id);
            }
            for i in 0..5 {
                let id = nsg_id("sub2", "rg1", &format!("c{i}"));
                tx.put(&id, doc("c"), Precondition::None)?;
                other.push(id);
            }
            for i in 0..7 {
                let id = id(&format!(
                    "/subscriptions/sub1/resourceGroups/rg1/providers/{ASG}/asg{i}"
                ));
                tx.put(&id, json!({}), Precondition::None)?;
            }
            // A child row and a resource of the same type elsewhere: not in these listings.
            let child = nsg_id("sub1", "rg1", "nsg-01").child("securityRules", "r1");
            tx.put(&child, json!({}), Precondition::None)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    (rg1, rg2, other)
}

fn list_all(store: &Store, kind: &str, scope: Scope, limit: usize) -> (Vec<ResourceId>, usize) {
    let mut ids = Vec::new();
    let mut token: Option<PageToken> = None;
    let mut pages = 0;
    loop {
        let Page { items, next } = store
            .list(kind, scope.clone(), token.as_ref(), limit)
            .unwrap();
        pages += 1;
        assert!(pages < 1000, "paging does not end");
        assert!(!items.is_empty(), "an empty page");
        assert!(items.len() <= limit);
        if next.is_some() {
            assert_eq!(items.len(), limit, "only the last page is short");
        }
        ids.extend(items.into_iter().map(|r| r.id));
        match next {
            // Tokens survive a trip through text (a nextLink).
            Some(next) => token = Some(PageToken::parse(next.as_str()).unwrap()),
            None => return (ids, pages),
        }
    }
}

fn sorted(ids: &[ResourceId]) -> Vec<String> {
    let mut keys: Vec<String> = ids
        .iter()
        .map(|i| i.as_str().to_ascii_lowercase())
        .collect();
    keys.sort();
    keys
}

fn keys(ids: &[ResourceId]) -> Vec<String> {
    ids.iter()
        .map(|i| i.as_str().to_ascii_lowercase())
        .collect()
}

#[test]
fn lists_by_resource_group_and_subscription_in_stable_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (rg1, rg2, other) = populate(&store);

    for limit in [1, 2, 7, 25, 26, 1000] {
        let (ids, pages) = list_all(
            &store,
            NSG,
            Scope::ResourceGroup("sub1".into(), "rg1".into()),
            limit,
        );
        assert_eq!(keys(&ids), sorted(&rg1), "limit {limit}");
        assert_eq!(pages, 25usize.div_ceil(limit), "limit {limit}");
    }
    let (ids, _) = list_all(
        &store,
        NSG,
        Scope::ResourceGroup("SUB1".into(), "rg2".into()),
        4,
    );
    assert_eq!(keys(&ids), sorted(&rg2));
    for id in &ids {
        assert!(
            id.as_str().contains("/resourceGroups/RG2/"),
            "spelling kept: {id}"
        );
    }

    let mut sub1: Vec<ResourceId> = rg1.iter().chain(&rg2).cloned().collect();
    sub1.sort();
    let (ids, pages) = list_all(&store, NSG, Scope::Subscription("Sub1".into()), 6);
    assert_eq!(keys(&ids), sorted(&sub1));
    assert_eq!(pages, 6);
    let (ids, _) = list_all(&store, NSG, Scope::Subscription("sub2".into()), 100);
    assert_eq!(keys(&ids), sorted(&other));

    let (asgs, _) = list_all(&store, ASG, Scope::Subscription("sub1".into()), 3);
    assert_eq!(asgs.len(), 7);
    let rules = store
        .list(
            &format!("{NSG}/securityRules"),
            Scope::ResourceGroup("sub1".into(), "rg1".into()),
            None,
            10,
        )
        .unwrap();
    assert_eq!(rules.items.len(), 1);

    // Nothing there: one empty page.
    let empty = store
        .list(NSG, Scope::Subscription("nobody".into()), None, 10)
        .unwrap();
    assert_eq!(
        empty,
        Page {
            items: vec![],
            next: None
        }
    );
}

#[test]
fn lists_below_a_parent_take_only_its_own_rows() {
    let store = Store::open_in_memory().unwrap();
    let watcher = |name: &str| {
        id(&format!(
            "/subscriptions/s/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/{name}"
        ))
    };
    let flow_log = |parent: &ResourceId, name: &str| parent.child("flowLogs", name);
    let (nw1, nw10, nw2) = (watcher("nw1"), watcher("nw10"), watcher("nw2"));
    let mine: Vec<ResourceId> = (0..7).map(|i| flow_log(&nw1, &format!("fl{i}"))).collect();
    store
        .transaction(|tx| {
            for parent in [&nw1, &nw10, &nw2] {
                tx.put(parent, json!({}), Precondition::None)?;
            }
            for id in &mine {
                tx.put(id, json!({}), Precondition::None)?;
            }
            // Neighbours by key: a watcher whose name extends nw1's, one sorting after it, and
            // another type below nw1.
            tx.put(&flow_log(&nw10, "fl0"), json!({}), Precondition::None)?;
            tx.put(&flow_log(&nw2, "fl0"), json!({}), Precondition::None)?;
            tx.put(
                &nw1.child("connectionMonitors", "cm"),
                json!({}),
                Precondition::None,
            )?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let flow_logs = "Microsoft.Network/networkWatchers/flowLogs";
    for limit in [1, 3, 7, 100] {
        let (ids, pages) = list_all(&store, flow_logs, Scope::Parent(nw1.clone()), limit);
        assert_eq!(keys(&ids), sorted(&mine), "limit {limit}");
        assert_eq!(pages, 7usize.div_ceil(limit), "limit {limit}");
    }
    let upper = id(&nw1.as_str().to_uppercase());
    let (ids, _) = list_all(
        &store,
        "MICROSOFT.NETWORK/NETWORKWATCHERS/FLOWLOGS",
        Scope::Parent(upper),
        100,
    );
    assert_eq!(ids.len(), 7, "parents and types compare case-insensitively");
    let (ids, _) = list_all(&store, flow_logs, Scope::Parent(nw10.clone()), 100);
    assert_eq!(keys(&ids), sorted(&[flow_log(&nw10, "fl0")]));
    let none = store
        .list(flow_logs, Scope::Parent(watcher("nw3")), None, 10)
        .unwrap();
    assert!(none.items.is_empty() && none.next.is_none());
    assert_eq!(Scope::Parent(nw1).subscription(), "s");
}

#[test]
fn page_limits_are_clamped() {
    let store = Store::open_in_memory().unwrap();
    populate(&store);
    let page = store
        .list(
            NSG,
            Scope::ResourceGroup("sub1".into(), "rg1".into()),
            None,
            0,
        )
        .unwrap();
    assert_eq!(page.items.len(), 1, "0 is taken as 1");
    assert!(page.next.is_some());
    store
        .transaction(|tx| {
            for i in 0..MAX_PAGE_SIZE + 5 {
                tx.put(
                    &nsg_id("big", "g", &format!("n{i:05}")),
                    json!({}),
                    Precondition::None,
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let page = store
        .list(NSG, Scope::Subscription("big".into()), None, usize::MAX)
        .unwrap();
    assert_eq!(page.items.len(), MAX_PAGE_SIZE);
    let rest = store
        .list(
            NSG,
            Scope::Subscription("big".into()),
            page.next.as_ref(),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(rest.items.len(), 5);
    assert_eq!(rest.next, None);
}

#[test]
fn paging_has_no_duplicates_or_omissions_while_others_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let scope = Scope::ResourceGroup("s".into(), "g".into());
    // Stable residents, and churn around them.
    let stable: Vec<ResourceId> = (0..40)
        .map(|i| nsg_id("s", "g", &format!("keep-{i:03}")))
        .collect();
    store
        .transaction(|tx| {
            for id in &stable {
                tx.put(id, json!({}), Precondition::None)?;
            }
            for i in 0..40 {
                tx.put(
                    &nsg_id("s", "g", &format!("churn-{i:03}")),
                    json!({}),
                    Precondition::None,
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();

    let mut seen = Vec::new();
    let mut token = None;
    let mut round = 0;
    loop {
        let page = store.list(NSG, scope.clone(), token.as_ref(), 7).unwrap();
        seen.extend(
            page.items
                .iter()
                .map(|r| r.id.as_str().to_ascii_lowercase()),
        );
        // Between pages: delete some churn, create new names before and after the cursor, and
        // rewrite stable ones (updates must not move them).
        store
            .delete(
                &nsg_id("s", "g", &format!("churn-{:03}", round * 3)),
                Precondition::None,
            )
            .unwrap();
        store
            .put(
                &nsg_id("s", "g", &format!("aaa-{round}")),
                json!({}),
                Precondition::None,
            )
            .unwrap();
        store
            .put(
                &nsg_id("s", "g", &format!("zzz-{round}")),
                json!({}),
                Precondition::None,
            )
            .unwrap();
        store
            .put(
                &stable[(round * 7) % 40],
                json!({"round": round}),
                Precondition::None,
            )
            .unwrap();
        round += 1;
        assert!(round < 100);
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let mut in_order = seen.clone();
    in_order.sort();
    assert_eq!(in_order, seen, "ascending order across pages");
    for id in &stable {
        assert!(
            unique.contains(&id.as_str().to_ascii_lowercase()),
            "{id} omitted"
        );
    }
}

#[test]
fn foreign_page_tokens_are_refused() {
    let store = Store::open_in_memory().unwrap();
    for bad in ["", "xyz", "/subscriptions/s", "AB", "2f"] {
        assert!(
            matches!(
                PageToken::parse(bad),
                Err(StoreError::InvalidPageToken { .. })
            ),
            "{bad:?}"
        );
    }
    // A token from another listing just starts after its key: no error, no panic.
    populate(&store);
    let page = store
        .list(NSG, Scope::Subscription("sub1".into()), None, 3)
        .unwrap();
    let elsewhere = store
        .list(
            ASG,
            Scope::Subscription("sub2".into()),
            page.next.as_ref(),
            3,
        )
        .unwrap();
    assert!(elsewhere.items.is_empty());
}

#[test]
fn a_transaction_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = nsg_id("s", "g", "a");
    let b = nsg_id("s", "g", "b");
    store.put(&a, json!({"v": 0}), Precondition::None).unwrap();

    // The closure fails after two writes: neither is kept.
    let err = store
        .transaction(|tx| {
            tx.put(&a, json!({"v": 1}), Precondition::None)?;
            tx.put(&b, json!({"v": 1}), Precondition::None)?;
            assert_eq!(
                tx.get(&b)?.unwrap().document,
                json!({"v": 1}),
                "reads its own writes"
            );
            assert_eq!(tx.count()?, 2);
            tx.delete(&a, Precondition::IfMatch("W/\"wrong\"".into()))?;
            Ok::<_, StoreError>(())
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::PreconditionFailed { .. }));
    assert_eq!(store.get(&a).unwrap().unwrap().document, json!({"v": 0}));
    assert_eq!(store.get(&b).unwrap(), None);

    // A caller's own error type aborts too.
    #[derive(Debug)]
    #[allow(dead_code)]
    enum ApiError {
        InUse,
        Store(StoreError),
    }
    impl From<StoreError> for ApiError {
        fn from(e: StoreError) -> Self {
            ApiError::Store(e)
        }
    }
    let result: Result<(), ApiError> = store.transaction(|tx| {
        tx.delete(&a, Precondition::None)?;
        Err(ApiError::InUse)
    });
    assert!(matches!(result, Err(ApiError::InUse)));
    assert!(store.get(&a).unwrap().is_some());

    // A panic inside rolls back and leaves the store usable.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = store.transaction(|tx| {
            tx.put(&b, json!({}), Precondition::None)?;
            if tx.count()? > 0 {
                panic!("handler bug");
            }
            Ok::<_, StoreError>(())
        });
    }));
    assert!(panicked.is_err());
    assert_eq!(store.get(&b).unwrap(), None);
    store.put(&b, json!({"v": 2}), Precondition::None).unwrap();
    assert_eq!(store.count().unwrap(), 2);

    // And the committed result is what a new process sees.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.get(&b).unwrap().unwrap().document, json!({"v": 2}));
}

#[test]
fn a_child_put_rewrites_its_parent_in_one_transaction() {
    let store = Store::open_in_memory().unwrap();
    let nsg = nsg_id("s", "g", "nsg");
    let rule = |name: &str, priority: u32| json!({"name": name, "properties": {"priority": priority, "access": "Allow"}});
    let parent = store
        .put(
            &nsg,
            json!({"name": "nsg", "properties": {"securityRules": [rule("a", 100)]}}),
            Precondition::None,
        )
        .unwrap()
        .into_resource();

    // What the REST layer does for PUT …/securityRules/B with If-Match of the child (= the parent's etag).
    let put_child = |name: &str, priority: u32, if_match: Option<String>| {
        store.transaction(|tx| {
            let Some(parent) = tx.get(&nsg)? else {
                return Ok(None);
            };
            let precondition = match if_match {
                Some(etag) => Precondition::IfMatch(etag),
                None => Precondition::IfMatch(parent.etag.clone()),
            };
            let mut document = parent.document;
            let rules = document["properties"]["securityRules"]
                .as_array_mut()
                .unwrap();
            rules.retain(|r| !r["name"].as_str().unwrap().eq_ignore_ascii_case(name));
            rules.push(rule(name, priority));
            let outcome = tx.put(&nsg, document, precondition)?;
            Ok::<_, StoreError>(Some(outcome.into_resource()))
        })
    };
    let after = put_child("B", 200, None).unwrap().unwrap();
    assert_ne!(after.etag, parent.etag, "a child change is a parent change");
    assert_eq!(
        after.document["properties"]["securityRules"],
        json!([rule("a", 100), rule("B", 200)])
    );
    let err = put_child("b", 300, Some(parent.etag)).unwrap_err();
    assert!(matches!(err, StoreError::PreconditionFailed { .. }));
    assert_eq!(store.get(&nsg).unwrap().unwrap(), after);
    assert_eq!(
        put_child("b", 300, Some(after.etag))
            .unwrap()
            .unwrap()
            .version,
        3
    );
}

#[test]
fn store_calls_inside_a_transaction_are_refused_not_deadlocked() {
    let dir = tempfile::tempdir().unwrap();
    for store in [Store::open_in_memory().unwrap(), open(dir.path())] {
        let id = nsg_id("s", "g", "n");
        let result = store.transaction(|_tx| {
            assert!(matches!(store.get(&id), Err(StoreError::NestedCall)));
            assert!(matches!(store.count(), Err(StoreError::NestedCall)));
            assert!(matches!(
                store.list(NSG, Scope::Subscription("s".into()), None, 1),
                Err(StoreError::NestedCall)
            ));
            store.put(&id, json!({}), Precondition::None)?;
            Ok::<_, StoreError>(())
        });
        assert!(matches!(result, Err(StoreError::NestedCall)));
        // Another store inside is fine, and the mark is gone afterwards.
        let other = Store::open_in_memory().unwrap();
        store
            .transaction(|tx| {
                other.put(&id, json!({}), Precondition::None)?;
                tx.put(&id, json!({}), Precondition::None)
            })
            .unwrap();
        assert!(store.get(&id).unwrap().is_some());
    }
}

/// Writes a row behind the store's back.
fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("opennsg.db")).unwrap()
}

#[test]
fn corrupt_rows_are_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let good = nsg_id("s", "g", "good");
    store
        .put(&good, json!({"ok": true}), Precondition::None)
        .unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("bad-json", "UPDATE resources SET document = '{\"truncated\": [1, 2' WHERE key LIKE '%/bad-json'".into()),
        ("blob-doc", "UPDATE resources SET document = x'7b7d' WHERE key LIKE '%/blob-doc'".into()),
        ("empty-doc", "UPDATE resources SET document = '' WHERE key LIKE '%/empty-doc'".into()),
        ("bad-utf8", "UPDATE resources SET document = CAST(x'22ff22' AS TEXT) WHERE key LIKE '%/bad-utf8'".into()),
        ("bad-id", "UPDATE resources SET id = 'not an id' WHERE key LIKE '%/bad-id'".into()),
        ("other-id", "UPDATE resources SET id = '/subscriptions/s/resourceGroups/g/providers/x/y/z' WHERE key LIKE '%/other-id'".into()),
        ("bad-etag", "UPDATE resources SET etag = x'07' WHERE key LIKE '%/bad-etag'".into()),
        ("bad-version", "UPDATE resources SET version = 'seven' WHERE key LIKE '%/bad-version'".into()),
        ("zero-version", "UPDATE resources SET version = 0 WHERE key LIKE '%/zero-version'".into()),
    ];
    let conn = raw(dir.path());
    for (name, sql) in &cases {
        store
            .put(
                &nsg_id("s", "g", name),
                json!({"name": name}),
                Precondition::None,
            )
            .unwrap();
        assert_eq!(conn.execute(sql, []).unwrap(), 1, "{name}");
    }
    for (name, _) in &cases {
        let id = nsg_id("s", "g", name);
        match store.get(&id) {
            Err(StoreError::Corrupt { key, reason }) => {
                assert_eq!(key, id.as_str().to_ascii_lowercase(), "{name}");
                assert!(!reason.is_empty());
            }
            other => panic!("{name}: {other:?}"),
        }
        // Listing across it reports it too.
        assert!(matches!(
            store.list(NSG, Scope::ResourceGroup("s".into(), "g".into()), None, 100),
            Err(StoreError::Corrupt { .. })
        ));
    }
    let err = store.get(&nsg_id("s", "g", "bad-json")).unwrap_err();
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    assert_eq!(
        store.get(&good).unwrap().unwrap().document,
        json!({"ok": true})
    );
    assert_eq!(store.count().unwrap(), cases.len() + 1);

    // Every damaged row can be repaired by a put or removed by a delete.
    for (i, (name, _)) in cases.iter().enumerate() {
        let id = nsg_id("s", "g", name);
        if i % 2 == 0 {
            let r = store
                .put(&id, json!({"fixed": true}), Precondition::None)
                .unwrap();
            assert!(!r.created(), "{name}");
            assert_eq!(
                store.get(&id).unwrap().unwrap().document,
                json!({"fixed": true})
            );
        } else {
            assert!(store.delete(&id, Precondition::None).unwrap(), "{name}");
        }
    }
    let (ids, _) = list_all(&store, NSG, Scope::ResourceGroup("s".into(), "g".into()), 3);
    assert_eq!(ids.len(), 1 + cases.len().div_ceil(2));
}

#[test]
fn a_file_that_is_not_a_database_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("opennsg.db"), vec![0x5a; 8192]).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Sqlite { .. }), "{err:?}");
    assert!(err.to_string().contains("opennsg.db"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("opennsg.db")).unwrap(),
        vec![0x5a; 8192],
        "left as it was"
    );
}

#[test]
fn another_programs_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    raw(dir.path())
        .execute_batch("CREATE TABLE mine (x INTEGER); INSERT INTO mine VALUES (1);")
        .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    let tables: i64 = raw(dir.path())
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1);
    let mode: String = raw(dir.path())
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "not even switched to WAL");
}

#[test]
fn the_data_directory_must_be_creatable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file.join("data")).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
}

/// Regression (found by a probe of `serve`'s data directory): the store was readable by every
/// user of the host, though the token file beside it was not.
#[cfg(unix)]
#[test]
fn the_store_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = open(&data);
    store
        .put(
            &nsg_id("sub1", "rg1", "nsg1"),
            doc("nsg1"),
            Precondition::None,
        )
        .unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    let database = store.path().unwrap().to_path_buf();
    for suffix in ["", "-wal", "-shm"] {
        let file = Path::new(&format!("{}{suffix}", database.display())).to_path_buf();
        if suffix.is_empty() || file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    assert!(
        Path::new(&format!("{}-wal", database.display())).exists(),
        "the store runs in WAL mode, so its WAL file is checked too"
    );
}
