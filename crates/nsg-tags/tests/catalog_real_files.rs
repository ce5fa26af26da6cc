//! Microsoft's real service tag files (shared/data/service-tags). Each test loads what it needs once.

use std::net::IpAddr;

use nsg_tags::Catalog;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/service-tags/"
);

fn read(file: &str) -> Vec<u8> {
    let path = format!("{DATA}{file}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn load(catalog: &mut Catalog, file: &str) -> nsg_tags::LoadSummary {
    catalog
        .load_json(&read(file))
        .unwrap_or_else(|e| panic!("loading {file}: {e}"))
}

#[test]
fn public_file() {
    let mut catalog = Catalog::new();
    let summary = load(&mut catalog, "ServiceTags_Public_20251028.json");
    assert_eq!(summary.cloud, "Public");
    assert_eq!(summary.change_number, "375");
    assert_eq!(summary.tags, 3_039);
    assert_eq!(summary.prefixes, 93_362);
    assert_eq!(catalog.len(), 3_039);
    assert_eq!(catalog.cloud(), Some("Public"));

    let azure_cloud = catalog.get("AzureCloud").expect("AzureCloud");
    assert_eq!(azure_cloud.prefixes.len(), 13_080);
    assert_eq!(azure_cloud.region, "");
    assert_eq!(azure_cloud.region_id, Some(0));
    assert_eq!(azure_cloud.platform.as_deref(), Some("Azure"));
    assert!(catalog.contains("AzureCloud.centralfrance"));
    assert!(catalog.contains("azurecloud.CENTRALFRANCE"));

    let regional = catalog
        .get("storage.westeurope")
        .expect("Storage.WestEurope");
    assert_eq!(regional.name, "Storage.WestEurope");
    assert_eq!(regional.region, "westeurope");
    let first = regional.prefixes.first().expect("a prefix").network();
    assert!(regional.set.contains(first));
    let storage = catalog.get("Storage").expect("Storage");
    assert!(regional.set.is_subset(&storage.set));
    assert!(!storage.set.is_subset(&regional.set));

    // Every tag's set is exactly its prefixes.
    for tag in catalog.iter() {
        assert!(tag
            .prefixes
            .iter()
            .all(|p| tag.set.contains(p.network()) && tag.set.contains(p.broadcast())));
    }

    let with_v6 = catalog
        .iter()
        .find(|t| t.set.has_v6())
        .expect("some tag has IPv6 prefixes");
    let v6 = with_v6
        .prefixes
        .iter()
        .find(|p| p.addr().is_ipv6())
        .expect("an IPv6 prefix");
    assert!(with_v6.set.contains(v6.network()));
    assert!(with_v6.set.contains(v6.broadcast()));
    assert!(!with_v6.set.contains("::1".parse::<IpAddr>().expect("ip")));
}

#[test]
fn the_later_public_week_wins() {
    let mut catalog = Catalog::new();
    let older = load(&mut catalog, "ServiceTags_Public_20251013.json");
    let newer = load(&mut catalog, "ServiceTags_Public_20251028.json");
    assert_eq!(
        (older.change_number.as_str(), newer.change_number.as_str()),
        ("373", "375")
    );
    assert_eq!(catalog.change_number(), Some("375"));
    assert_eq!(catalog.sources(), [older, newer]);
    assert_eq!(catalog.len(), 3_039);
    let prefixes: usize = catalog.iter().map(|t| t.prefixes.len()).sum();
    assert_eq!(
        prefixes, 93_362,
        "every tag holds the newer week's prefixes"
    );
}

#[test]
fn azure_government_file() {
    let mut catalog = Catalog::new();
    let summary = load(&mut catalog, "ServiceTags_AzureGovernment_20260720.json");
    assert_eq!(summary.tags, 299);
    assert_eq!(catalog.len(), 299);
    assert_eq!(catalog.cloud(), Some("AzureGovernment"));
    assert_eq!(catalog.change_number(), Some("402"));
    assert!(catalog.contains("AzureCloud"));
}
