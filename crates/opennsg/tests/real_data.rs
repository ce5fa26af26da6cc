//! The real-data suite: Microsoft's real, large service tag files (scale, every region, two weeks
//! of changes), which the repository does not ship. Built only with `--features real-data` and
//! run with `OPENNSG_REAL_DATA=DIR` (CI: `../shared/data`, holding `service-tags/`); it fails,
//! never skips, when the variable or a file is missing.
mod support;

use std::net::IpAddr;
use std::path::PathBuf;

use nsg_tags::Catalog;
use support::assert_every_fixture_lists_back;

fn real_file(relative: &str) -> PathBuf {
    let dir = std::env::var_os("OPENNSG_REAL_DATA").expect(
        "the real-data suite needs OPENNSG_REAL_DATA=DIR (Microsoft's files, e.g. ../shared/data)",
    );
    let path = PathBuf::from(dir).join(relative);
    assert!(
        path.is_file(),
        "real-data file missing: {} (cargo runs tests in the crate directory: give an absolute DIR)",
        path.display()
    );
    path
}

fn load(catalog: &mut Catalog, file: &str) -> nsg_tags::LoadSummary {
    let path = real_file(&format!("service-tags/{file}"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    catalog
        .load_json_from(&path.display().to_string(), &bytes)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

#[test]
fn public_file() {
    let mut catalog = Catalog::new();
    let summary = load(&mut catalog, "ServiceTags_Public_20251028.json");
    assert_eq!(summary.cloud, "Public");
    assert_eq!(summary.change_number, "375");
    assert_eq!((summary.tags, summary.prefixes), (3_039, 93_362));
    assert_eq!(catalog.len(), 3_039);

    let azure_cloud = catalog.get("AzureCloud").expect("AzureCloud");
    assert_eq!(azure_cloud.prefixes.len(), 13_080);
    assert_eq!(
        (azure_cloud.region.as_str(), azure_cloud.region_id),
        ("", Some(0))
    );
    assert_eq!(azure_cloud.platform.as_deref(), Some("Azure"));
    assert!(catalog.contains("azurecloud.CENTRALFRANCE"));

    let regional = catalog
        .get("storage.westeurope")
        .expect("Storage.WestEurope");
    assert_eq!(regional.name, "Storage.WestEurope");
    let storage = catalog.get("Storage").expect("Storage");
    assert!(regional.set.is_subset(&storage.set));
    assert!(!storage.set.is_subset(&regional.set));
    for tag in catalog.iter() {
        assert!(tag
            .prefixes
            .iter()
            .all(|p| tag.set.contains(p.network()) && tag.set.contains(p.broadcast())));
    }
    assert!(!azure_cloud
        .set
        .contains("::1".parse::<IpAddr>().expect("ip")));
}

/// The shipped fixture's prefixes were taken from this file: they must still be in it, tag by tag.
#[test]
fn the_shipped_fixture_is_a_subset_of_microsofts_file() {
    let mut real = Catalog::new();
    load(&mut real, "ServiceTags_Public_20251028.json");
    let mut shipped = Catalog::new();
    let path = support::shipped_service_tags();
    shipped
        .load_json(&std::fs::read(&path).expect("shipped fixture"))
        .expect("shipped fixture loads");
    for tag in shipped.iter() {
        let theirs = real
            .get(&tag.name)
            .unwrap_or_else(|| panic!("{} is a real tag", tag.name));
        assert!(
            tag.set.is_subset(&theirs.set),
            "{}: prefixes not in Microsoft's file",
            tag.name
        );
    }
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
    assert_eq!(catalog.cloud(), Some("AzureGovernment"));
    assert_eq!(catalog.change_number(), Some("402"));
    assert!(catalog.contains("AzureCloud"));
}

/// Every fixture enforced with Microsoft's whole Public file loaded lists back from the kernel as
/// rendered: the scale the shipped file cannot show (needs root, like the other kernel tests).
#[test]
fn every_fixture_lists_back_with_microsofts_public_file() {
    assert_every_fixture_lists_back(&real_file("service-tags/ServiceTags_Public_20251028.json"));
}
