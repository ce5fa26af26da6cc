//! [`Catalog`]: the service tags loaded from Microsoft's service tag lists.
//!
//! Service tags are data, not code: Microsoft adds and changes them weekly, so OpenNSG accepts any tag
//! in the lists the user loads rather than a hard-coded table (reference §4.2). The built-in tags
//! ([`crate::BuiltinTag`]) are not in these lists and not in the catalog.

mod error;
mod schema;

use std::collections::HashMap;

use ipnet::IpNet;

pub use error::TagError;

use crate::{BuiltinTag, PrefixSet};

/// One service tag, e.g. `Storage` or its regional subset `Storage.WestEurope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceTag {
    /// The name as Microsoft writes it (`Storage.WestEurope`); lookups ignore case.
    pub name: String,
    /// The entry's `id`, equal to the name in every list seen; the name if the list omits it.
    pub id: String,
    /// Lowercase ARM location for a regional tag (`westeurope`), empty for a cloud-wide tag.
    pub region: String,
    /// Microsoft's numeric region id (0 for cloud-wide tags); only the downloadable files have it.
    pub region_id: Option<u64>,
    /// `"Azure"` in the files; absent from the REST API.
    pub platform: Option<String>,
    /// The service behind the tag (`AzureStorage`), which may differ from the tag name.
    pub system_service: String,
    /// The tag's own change number, as decimal text (integer in files, string in the API).
    pub change_number: String,
    /// Which products may use the tag (`API`, `NSG`, `UDR`, `FW`, …); `None` when the list has none,
    /// as for regional entries and the REST API.
    pub network_features: Option<Vec<String>>,
    /// The prefixes in the list's order, exactly as parsed (host bits kept).
    pub prefixes: Vec<IpNet>,
    /// The addresses of `prefixes`, for matching and set algebra.
    pub set: PrefixSet,
}

/// What one call of [`Catalog::load_json`] loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSummary {
    /// The list's `cloud` (`Public`, `AzureGovernment`, …); empty if the list has none.
    pub cloud: String,
    /// The list's top-level `changeNumber` as decimal text; empty if the list has none.
    pub change_number: String,
    /// Number of entries in the list.
    pub tags: usize,
    /// Number of address prefixes over all entries.
    pub prefixes: usize,
    /// Where the list came from (a file's path), as the loader named it; empty if unnamed.
    pub origin: String,
}

/// The service tags of every list loaded so far, looked up by name ignoring case.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// The tags in the order they were first loaded.
    tags: Vec<ServiceTag>,
    /// Lowercased name → index in `tags`.
    index: HashMap<String, usize>,
    /// One summary per successful load, oldest first.
    sources: Vec<LoadSummary>,
}

impl Catalog {
    /// A catalog with no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a service tag list — the downloadable `ServiceTags_*.json` or a `serviceTags` /
    /// `serviceTagDetails` REST API response — from its bytes, and merges it into the catalog.
    ///
    /// A tag whose name (ignoring case) is already in the catalog is replaced, keeping its place in
    /// [`Catalog::iter`]: the later list wins, so loading week N and then week N+1 gives week N+1's
    /// prefixes, while tags only in the older list stay. The same holds for a name repeated within
    /// one list.
    ///
    /// # Errors
    ///
    /// [`TagError::Json`] if the bytes are not JSON of either schema, [`TagError::InvalidPrefix`] if
    /// an address prefix is not a CIDR. On error the catalog is unchanged.
    pub fn load_json(&mut self, bytes: &[u8]) -> Result<LoadSummary, TagError> {
        self.load_json_from("", bytes)
    }

    /// [`Catalog::load_json`], remembering where the list came from (`origin`, e.g. its path),
    /// so that messages about unknown tags can say which lists were searched.
    pub fn load_json_from(&mut self, origin: &str, bytes: &[u8]) -> Result<LoadSummary, TagError> {
        let list: schema::TagList = serde_json::from_slice(bytes)?;
        let tags = list
            .values
            .into_iter()
            .map(service_tag)
            .collect::<Result<Vec<_>, _>>()?;
        let summary = LoadSummary {
            cloud: list.cloud,
            change_number: list.change_number,
            tags: tags.len(),
            prefixes: tags.iter().map(|t| t.prefixes.len()).sum(),
            origin: origin.to_string(),
        };
        for tag in tags {
            self.insert(tag);
        }
        self.sources.push(summary.clone());
        Ok(summary)
    }

    /// Adds a tag, replacing one with the same name (ignoring case) in place.
    fn insert(&mut self, tag: ServiceTag) {
        let key = tag.name.to_lowercase();
        match self.index.get(&key).and_then(|&i| self.tags.get_mut(i)) {
            Some(slot) => *slot = tag,
            None => {
                self.index.insert(key, self.tags.len());
                self.tags.push(tag);
            }
        }
    }

    /// The tag called `name`, ignoring case (`storage.westeurope` finds `Storage.WestEurope`).
    pub fn get(&self, name: &str) -> Option<&ServiceTag> {
        self.index
            .get(&name.to_lowercase())
            .and_then(|&i| self.tags.get(i))
    }

    /// Whether a tag called `name` is loaded, ignoring case.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of distinct tags.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether no tag is loaded.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The tags in the order they were first loaded.
    pub fn iter(&self) -> impl Iterator<Item = &ServiceTag> {
        self.tags.iter()
    }

    /// The `cloud` of the last list loaded, `None` before any load.
    pub fn cloud(&self) -> Option<&str> {
        self.sources.last().map(|s| s.cloud.as_str())
    }

    /// The top-level `changeNumber` of the last list loaded, `None` before any load.
    pub fn change_number(&self) -> Option<&str> {
        self.sources.last().map(|s| s.change_number.as_str())
    }

    /// The summaries of all lists loaded, oldest first.
    pub fn sources(&self) -> &[LoadSummary] {
        &self.sources
    }

    /// Why `name` is not a tag: it is neither built in nor in the lists loaded, which are named
    /// (or, when none is loaded, how to load one).
    pub fn unknown_tag_message(&self, name: &str) -> String {
        let builtins: Vec<&str> = BuiltinTag::ALL
            .iter()
            .map(BuiltinTag::canonical_name)
            .collect();
        let lists: Vec<String> = self
            .sources
            .iter()
            .map(|source| {
                let origin = if source.origin.is_empty() {
                    "a list"
                } else {
                    &source.origin
                };
                format!(
                    "{origin} ({} tags, cloud {}, changeNumber {})",
                    source.tags,
                    or_unknown(&source.cloud),
                    or_unknown(&source.change_number)
                )
            })
            .collect();
        let searched = if lists.is_empty() {
            "no service tag file is loaded: load Microsoft's ServiceTags_*.json with \
             --service-tags FILE, or download the week's with `opennsg tags update`"
                .to_string()
        } else {
            format!("nor in the service tag files loaded: {}", lists.join("; "))
        };
        format!(
            "unknown service tag '{name}': it is not a built-in tag ({}), {searched}",
            builtins.join(", ")
        )
    }
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "unknown"
    } else {
        text
    }
}

/// Converts a parsed entry, checking every prefix.
fn service_tag(entry: schema::TagEntry) -> Result<ServiceTag, TagError> {
    let props = entry.properties;
    let prefixes = props
        .address_prefixes
        .iter()
        .enumerate()
        .map(|(index, text)| {
            text.parse::<IpNet>().map_err(|_| TagError::InvalidPrefix {
                tag: entry.name.clone(),
                index,
                value: text.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let set = PrefixSet::from_nets(prefixes.iter().copied());
    Ok(ServiceTag {
        id: entry.id.unwrap_or_else(|| entry.name.clone()),
        name: entry.name,
        region: props.region,
        region_id: props.region_id,
        platform: props.platform,
        system_service: props.system_service,
        change_number: props.change_number,
        network_features: props.network_features,
        prefixes,
        set,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(change_number: u32, tags: &[(&str, &[&str])]) -> Vec<u8> {
        let values: Vec<serde_json::Value> = tags
            .iter()
            .map(|(name, prefixes)| {
                serde_json::json!({"name": name, "id": name,
                    "properties": {"changeNumber": 1, "region": "", "addressPrefixes": prefixes}})
            })
            .collect();
        serde_json::json!({"changeNumber": change_number, "cloud": "Public", "values": values})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn later_list_replaces_a_tag_in_place_and_keeps_the_others() {
        let mut catalog = Catalog::new();
        catalog
            .load_json(&list(1, &[("A", &["10.0.0.0/8"]), ("B", &["20.0.0.0/8"])]))
            .expect("first");
        catalog
            .load_json(&list(2, &[("b", &["30.0.0.0/8"]), ("C", &[])]))
            .expect("second");
        let names: Vec<&str> = catalog.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["A", "b", "C"]);
        let b = catalog.get("B").expect("B");
        assert!(b.set.contains("30.1.1.1".parse().expect("ip")));
        assert!(!b.set.contains("20.1.1.1".parse().expect("ip")));
        assert_eq!(catalog.change_number(), Some("2"));
        assert_eq!(catalog.sources().len(), 2);
    }

    #[test]
    fn a_failed_load_changes_nothing() {
        let mut catalog = Catalog::new();
        catalog
            .load_json(&list(1, &[("A", &["10.0.0.0/8"])]))
            .expect("first");
        let before = catalog.clone();
        let err = catalog
            .load_json(&list(
                2,
                &[
                    ("A", &["11.0.0.0/8"]),
                    ("Storage", &["1.0.0.0/8", "x", "1.2.3"]),
                ],
            ))
            .expect_err("bad prefix");
        assert_eq!(
            err.to_string(),
            r#"service tag 'Storage' has an invalid address prefix at addressPrefixes[1]: "x""#
        );
        assert_eq!(
            catalog.iter().collect::<Vec<_>>(),
            before.iter().collect::<Vec<_>>()
        );
        assert_eq!(catalog.sources(), before.sources());
    }

    #[test]
    fn unknown_tags_name_the_lists_searched_or_how_to_load_one() {
        let mut catalog = Catalog::new();
        let none = catalog.unknown_tag_message("Storrage");
        assert!(none.starts_with("unknown service tag 'Storrage'"), "{none}");
        assert!(
            none.contains("AzurePlatformLKM") && none.contains("--service-tags FILE"),
            "{none}"
        );
        catalog
            .load_json_from(
                "ServiceTags_Public.json",
                &list(7, &[("Storage", &["20.60.0.0/16"])]),
            )
            .expect("a list");
        let loaded = catalog.unknown_tag_message("Storrage");
        assert!(
            loaded.contains("ServiceTags_Public.json (1 tags") && loaded.contains("changeNumber 7"),
            "{loaded}"
        );
        assert!(!loaded.contains("--service-tags"), "{loaded}");
    }
}
