//! [`CatalogDiff`]: what changed between two service tag lists, tag by tag — the answer to "what
//! did this week's file change?" (`opennsg tags update`, `opennsg tags diff`, the reload logs).

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::Serialize;

use crate::{Catalog, ServiceTag};

/// The changes from an older catalog to a newer one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogDiff {
    /// The older catalog's change number (of its last list), if any.
    pub old_change_number: Option<String>,
    pub new_change_number: Option<String>,
    /// Tags only in the newer catalog, in its order.
    pub added: Vec<TagPrefixes>,
    /// Tags only in the older catalog, in its order.
    pub removed: Vec<TagPrefixes>,
    /// Tags in both whose prefixes or change number differ, in the newer catalog's order.
    pub changed: Vec<TagChange>,
}

/// A tag that appeared or disappeared, with its prefixes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagPrefixes {
    pub name: String,
    pub change_number: String,
    pub prefixes: Vec<IpNet>,
}

/// A tag in both catalogs that changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagChange {
    /// The name as the newer catalog writes it.
    pub name: String,
    pub old_change_number: String,
    pub new_change_number: String,
    /// Prefixes in the newer list and not the older (compared as networks, host bits cleared).
    pub added: Vec<IpNet>,
    /// Prefixes in the older list and not the newer.
    pub removed: Vec<IpNet>,
    /// Whether the tag's addresses differ — `false` when only the split into prefixes or the
    /// change number moved, which no rule can notice.
    pub addresses_changed: bool,
}

impl CatalogDiff {
    /// No tag added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The names of the tags whose addresses are different now: what rules naming them notice.
    pub fn tags_with_new_addresses(&self) -> impl Iterator<Item = &str> {
        let added = self.added.iter().map(|t| t.name.as_str());
        let removed = self.removed.iter().map(|t| t.name.as_str());
        let changed = self
            .changed
            .iter()
            .filter(|c| c.addresses_changed)
            .map(|c| c.name.as_str());
        added.chain(removed).chain(changed)
    }
}

impl TagPrefixes {
    fn of(tag: &ServiceTag) -> TagPrefixes {
        TagPrefixes {
            name: tag.name.clone(),
            change_number: tag.change_number.clone(),
            prefixes: tag.prefixes.clone(),
        }
    }
}

/// What changed from `old` to `new` (tag names compared ignoring case, as lookups do).
pub fn diff(old: &Catalog, new: &Catalog) -> CatalogDiff {
    let mut changes = CatalogDiff {
        old_change_number: old.change_number().map(str::to_string),
        new_change_number: new.change_number().map(str::to_string),
        ..CatalogDiff::default()
    };
    for tag in new.iter() {
        match old.get(&tag.name) {
            None => changes.added.push(TagPrefixes::of(tag)),
            Some(before) => {
                if let Some(change) = tag_change(before, tag) {
                    changes.changed.push(change);
                }
            }
        }
    }
    changes.removed = old
        .iter()
        .filter(|tag| !new.contains(&tag.name))
        .map(TagPrefixes::of)
        .collect();
    changes
}

fn tag_change(before: &ServiceTag, after: &ServiceTag) -> Option<TagChange> {
    let networks = |tag: &ServiceTag| {
        tag.prefixes
            .iter()
            .map(IpNet::trunc)
            .collect::<BTreeSet<_>>()
    };
    let (old, new) = (networks(before), networks(after));
    let added: Vec<IpNet> = new.difference(&old).copied().collect();
    let removed: Vec<IpNet> = old.difference(&new).copied().collect();
    if added.is_empty() && removed.is_empty() && before.change_number == after.change_number {
        return None;
    }
    Some(TagChange {
        name: after.name.clone(),
        old_change_number: before.change_number.clone(),
        new_change_number: after.change_number.clone(),
        added,
        removed,
        addresses_changed: before.set != after.set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(change: u32, tags: &[(&str, u32, &[&str])]) -> Catalog {
        let values: Vec<_> = tags
            .iter()
            .map(|(name, number, prefixes)| {
                serde_json::json!({"name": name, "id": name, "properties": {
                    "changeNumber": number, "region": "", "addressPrefixes": prefixes}})
            })
            .collect();
        let list = serde_json::json!({"changeNumber": change, "cloud": "Public", "values": values});
        let mut catalog = Catalog::new();
        catalog
            .load_json(&serde_json::to_vec(&list).expect("json"))
            .expect("list loads");
        catalog
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    #[test]
    fn added_removed_and_changed_tags_with_their_prefixes() {
        let old = catalog(
            1,
            &[
                ("A", 1, &["10.0.0.0/24"]),
                ("Gone", 1, &["10.9.0.0/16"]),
                ("Same", 4, &["::/64"]),
            ],
        );
        let new = catalog(
            2,
            &[
                ("a", 2, &["10.0.0.0/24", "10.0.1.0/24"]),
                ("Same", 4, &["::/64"]),
                ("New", 1, &["10.8.0.0/16"]),
            ],
        );
        let changes = diff(&old, &new);
        assert_eq!(
            (
                changes.old_change_number.as_deref(),
                changes.new_change_number.as_deref()
            ),
            (Some("1"), Some("2"))
        );
        assert_eq!(changes.added.len(), 1);
        assert_eq!(
            (
                changes.added[0].name.as_str(),
                changes.added[0].prefixes.clone()
            ),
            ("New", vec![net("10.8.0.0/16")])
        );
        assert_eq!(changes.removed.len(), 1);
        assert_eq!(changes.removed[0].name, "Gone");
        assert_eq!(
            changes.changed,
            [TagChange {
                name: "a".into(),
                old_change_number: "1".into(),
                new_change_number: "2".into(),
                added: vec![net("10.0.1.0/24")],
                removed: vec![],
                addresses_changed: true,
            }]
        );
        assert_eq!(
            changes.tags_with_new_addresses().collect::<Vec<_>>(),
            ["New", "Gone", "a"]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn a_resplit_prefix_changes_the_list_but_not_the_addresses() {
        let old = catalog(1, &[("A", 1, &["10.0.0.0/23"])]);
        let new = catalog(2, &[("A", 2, &["10.0.0.0/24", "10.0.1.0/24"])]);
        let changes = diff(&old, &new);
        assert_eq!(changes.changed.len(), 1);
        assert!(!changes.changed[0].addresses_changed);
        assert_eq!(changes.tags_with_new_addresses().count(), 0);
    }

    #[test]
    fn host_bits_do_not_make_a_prefix_new() {
        let old = catalog(1, &[("A", 1, &["10.0.0.1/24"])]);
        let new = catalog(1, &[("A", 1, &["10.0.0.0/24"])]);
        assert!(diff(&old, &new).is_empty());
    }
}
