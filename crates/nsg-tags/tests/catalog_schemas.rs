//! The REST API schema, error messages, and "never panics" on garbage.

use nsg_tags::{Catalog, TagError};
use proptest::prelude::*;

/// The `ServiceTags_List` response shape (reference §4.5): string change numbers, top-level
/// name/id/type/nextLink, no regionId/platform/networkFeatures.
const API_RESPONSE: &str = r#"{
  "name": "public",
  "id": "/subscriptions/subId/providers/Microsoft.Network/serviceTags/public",
  "type": "Microsoft.Network/serviceTags",
  "changeNumber": "63",
  "cloud": "Public",
  "values": [
    { "name": "ApiManagement", "id": "ApiManagement",
      "properties": { "changeNumber": "7", "region": "", "systemService": "AzureApiManagement",
        "addressPrefixes": [ "13.64.39.16/32", "40.74.146.80/31", "40.74.147.32/28" ] } },
    { "name": "ServiceBus.EastUS2", "id": "ServiceBus.EastUS2",
      "properties": { "changeNumber": "1", "region": "eastus2", "systemService": "AzureServiceBus",
        "addressPrefixes": [ "13.68.110.36/32", "2603:1030:40c:402::170/125" ], "state": "GA" },
      "serviceTagChangeNumber": "63" }
  ],
  "nextLink": "https://management.azure.com/subscriptions/subid/providers/Microsoft.Network/locations/centraluseuap/serviceTags?api-version=2020-06-01"
}"#;

#[test]
fn rest_api_schema_loads() {
    let mut catalog = Catalog::new();
    let summary = catalog
        .load_json(API_RESPONSE.as_bytes())
        .expect("API response");
    assert_eq!(
        (summary.cloud.as_str(), summary.change_number.as_str()),
        ("Public", "63")
    );
    assert_eq!((summary.tags, summary.prefixes), (2, 5));
    let apim = catalog.get("apimanagement").expect("ApiManagement");
    assert_eq!(apim.change_number, "7");
    assert_eq!(apim.system_service, "AzureApiManagement");
    assert_eq!(
        (
            apim.region_id,
            apim.platform.as_deref(),
            apim.network_features.as_ref()
        ),
        (None, None, None)
    );
    assert!(apim.set.contains("40.74.146.81".parse().expect("ip")));
    let sb = catalog
        .get("ServiceBus.EastUS2")
        .expect("ServiceBus.EastUS2");
    assert!(sb
        .set
        .contains("2603:1030:40c:402::177".parse().expect("ip")));
}

#[test]
fn service_tag_details_list_loads() {
    // `ServiceTagInformation_List` (serviceTagDetails): `value`, no cloud or changeNumber.
    let body = r#"{"value": [{"name": "ApiManagement", "id": "ApiManagement",
        "properties": {"addressPrefixes": [], "changeNumber": "7", "region": "", "systemService": "AzureApiManagement"}}]}"#;
    let mut catalog = Catalog::new();
    let summary = catalog
        .load_json(body.as_bytes())
        .expect("serviceTagDetails");
    assert_eq!(
        (summary.cloud.as_str(), summary.tags, summary.prefixes),
        ("", 1, 0)
    );
    assert!(catalog.get("ApiManagement").expect("tag").set.is_empty());
}

#[test]
fn arm_example_body_loads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/arm-examples/ServiceTagsList.json"
    );
    let example: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("example file")).expect("example JSON");
    let body = serde_json::to_vec(&example["responses"]["200"]["body"]).expect("body");
    let mut catalog = Catalog::new();
    let summary = catalog.load_json(&body).expect("example body");
    assert_eq!(summary.change_number, "63");
    assert!(catalog.contains("ApiManagement.AustraliaCentral"));
}

#[test]
fn other_json_is_not_a_service_tag_file() {
    let cases = [
        ("", "EOF"),
        (
            "{\"name\": \"nsg1\",\n \"properties\": {}}",
            "missing field `values`",
        ),
        (
            r#"{"value": [{"name": "nsg1", "properties": {"securityRules": []}}]}"#,
            "missing field `addressPrefixes`",
        ),
        (
            r#"{"values": [{"name": "A", "properties": {"addressPrefixes": "1.2.3.4/32"}}]}"#,
            "invalid type",
        ),
        (r#"[1, 2]"#, "invalid type"),
        (r#"{"values": []} trailing"#, "trailing characters"),
    ];
    for (input, what) in cases {
        let err = Catalog::new().load_json(input.as_bytes()).expect_err(input);
        let text = err.to_string();
        assert!(matches!(err, TagError::Json { .. }), "{input}: {err:?}");
        assert!(text.starts_with("not a service tag file"), "{text}");
        assert!(
            text.contains(what) && text.contains(" at line "),
            "{input}: {text}"
        );
    }
}

#[test]
fn every_truncation_of_a_valid_response_is_an_error() {
    let mut catalog = Catalog::new();
    for end in 0..API_RESPONSE.len() {
        let cut = API_RESPONSE.as_bytes().get(..end).expect("in range");
        assert!(
            catalog.load_json(cut).is_err(),
            "accepted a truncation at byte {end}"
        );
    }
    assert!(catalog.is_empty() && catalog.sources().is_empty());
}

#[test]
fn invalid_prefix_is_named_with_tag_and_index() {
    let body = r#"{"values": [{"name": "Storage", "properties": {"addressPrefixes":
        ["1.0.0.0/8", "2.0.0.0/8", "2001:db8::/32", "1.2.3", "10.0.0.0/33"]}}]}"#;
    let err = Catalog::new()
        .load_json(body.as_bytes())
        .expect_err("bad prefix");
    assert_eq!(
        err,
        TagError::InvalidPrefix {
            tag: "Storage".into(),
            index: 3,
            value: "1.2.3".into()
        }
    );
    assert_eq!(
        err.to_string(),
        r#"service tag 'Storage' has an invalid address prefix at addressPrefixes[3]: "1.2.3""#
    );
}

/// Pieces of service tag lists, so that the fuzzing gets past the first byte.
const PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "\"\"",
    "\"values\"",
    "\"value\"",
    "\"name\"",
    "\"id\"",
    "\"cloud\"",
    "\"properties\"",
    "\"addressPrefixes\"",
    "\"changeNumber\"",
    "\"regionId\"",
    "\"networkFeatures\"",
    "\"10.0.0.0/8\"",
    "\"::/0\"",
    "\"1.2.3\"",
    "\"\\u00e9\"",
    "\"\\ud800\"",
    "-1",
    "1.5",
    "1e999",
    "18446744073709551616",
    " ",
];

/// Strings made of [`PIECES`], arbitrary numbers and arbitrary characters.
fn json_ish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| n.to_string()),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(atom, 0..64).prop_map(|atoms| atoms.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Catalog::new().load_json(&bytes);
    }

    #[test]
    fn json_ish_strings_never_panic(text in json_ish()) {
        let _ = Catalog::new().load_json(text.as_bytes());
    }

    #[test]
    fn well_formed_lists_with_arbitrary_prefix_strings_never_panic(
        prefixes in prop::collection::vec("[0-9a-f.:/ ]{0,24}", 0..8),
        change in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "\"[0-9]{0,5}\""],
    ) {
        let body = serde_json::json!({"values": [{"name": "T", "properties": {"addressPrefixes": prefixes}}]});
        let text = body.to_string().replacen('{', &format!("{{\"changeNumber\": {change},"), 1);
        match Catalog::new().load_json(text.as_bytes()) {
            Ok(summary) => prop_assert_eq!(summary.prefixes, prefixes.len()),
            Err(TagError::InvalidPrefix { tag, index, value }) => {
                prop_assert_eq!(tag, "T");
                prop_assert_eq!(Some(&value), prefixes.get(index));
            }
            Err(other) => prop_assert!(false, "unexpected {other}"),
        }
    }
}
