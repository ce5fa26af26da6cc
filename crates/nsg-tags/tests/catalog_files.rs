//! The service tag files the repository ships (`tests/data/service-tags`): two weeks of a small
//! Public file in Microsoft's schema. Microsoft's real, large files are the real-data suite's
//! (`crates/opennsg/tests/real_data.rs`).

use std::net::IpAddr;

use nsg_tags::Catalog;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/data/service-tags/"
);

fn load(catalog: &mut Catalog, file: &str) -> nsg_tags::LoadSummary {
    let path = format!("{DATA}{file}");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    catalog
        .load_json_from(&path, &bytes)
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn public_file() {
    let mut catalog = Catalog::new();
    let summary = load(&mut catalog, "ServiceTags_Public_375.json");
    assert_eq!(
        (summary.cloud.as_str(), summary.change_number.as_str()),
        ("Public", "375")
    );
    assert_eq!((summary.tags, summary.prefixes), (8, 67));
    assert_eq!(catalog.cloud(), Some("Public"));

    let regional = catalog
        .get("storage.westeurope")
        .expect("tags are case-insensitive");
    assert_eq!(regional.name, "Storage.WestEurope");
    assert_eq!(
        (regional.region.as_str(), regional.region_id),
        ("westeurope", Some(18))
    );
    assert!(regional.set.contains(ip("13.69.40.16")) && regional.set.contains(ip("13.69.40.31")));
    assert!(!regional.set.contains(ip("13.69.40.15")) && !regional.set.contains(ip("13.69.40.32")));
    assert!(regional.set.contains(ip("2603:1020:207::1")));
    let storage = catalog.get("Storage").expect("Storage");
    assert!(regional.set.is_subset(&storage.set));
    assert!(!storage.set.is_subset(&regional.set));
    let cloud = catalog.get("AzureCloud").expect("AzureCloud");
    for tag in catalog.iter() {
        assert!(
            tag.set.is_subset(&cloud.set),
            "{} is inside AzureCloud",
            tag.name
        );
        assert!(tag
            .prefixes
            .iter()
            .all(|p| tag.set.contains(p.network()) && tag.set.contains(p.broadcast())));
    }
}

#[test]
fn the_later_week_wins_and_tags_only_in_the_older_stay() {
    let mut catalog = Catalog::new();
    let older = load(&mut catalog, "ServiceTags_Public_375.json");
    let newer = load(&mut catalog, "ServiceTags_Public_376.json");
    assert_eq!(catalog.change_number(), Some("376"));
    assert_eq!(catalog.sources(), [older, newer]);
    let regional = catalog.get("Storage.WestEurope").expect("tag");
    assert!(regional.set.contains(ip("13.69.41.1")), "added in 376");
    assert!(!regional.set.contains(ip("13.95.240.33")), "removed in 376");
    assert!(catalog.contains("Storage.NorthEurope"), "new in 376");
    assert!(
        catalog.contains("ApiManagement.AustraliaCentral"),
        "only in 375, kept"
    );
}
