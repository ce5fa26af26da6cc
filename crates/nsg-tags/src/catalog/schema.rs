//! The wire format of service tag lists: one serde model for both of Microsoft's schemas.
//!
//! * The downloadable `ServiceTags_<cloud>_<date>.json` (reference §4.4): integer `changeNumber`s,
//!   `regionId`, `platform`, `networkFeatures`.
//! * The REST API (reference §4.5): `changeNumber`s as strings, top-level `name`/`id`/`type`/`nextLink`,
//!   no `regionId`/`platform`/`networkFeatures`; the `serviceTagDetails` operation names the list
//!   `value` and has no top-level `cloud` or `changeNumber`.
//!
//! Fields one schema lacks are optional; unknown fields (`type`, `nextLink`, `state`, …) are ignored.
//! `values` and each entry's `name` and `properties.addressPrefixes` are required, so that another JSON
//! document (an NSG, a `{"value": [...]}` list of other resources) is rejected instead of loading as
//! an empty or nameless catalog.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A whole service tag list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TagList {
    #[serde(default, deserialize_with = "number_or_string")]
    pub change_number: String,
    #[serde(default)]
    pub cloud: String,
    #[serde(alias = "value")]
    pub values: Vec<TagEntry>,
}

/// One entry of `values`.
#[derive(Debug, Deserialize)]
pub(super) struct TagEntry {
    pub name: String,
    /// Always equal to `name` in the files and API examples seen; `None` if absent.
    #[serde(default)]
    pub id: Option<String>,
    pub properties: TagProperties,
}

/// An entry's `properties`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TagProperties {
    #[serde(default, deserialize_with = "number_or_string")]
    pub change_number: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub region_id: Option<u64>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub system_service: String,
    /// Kept as strings so that a bad prefix can be reported with its tag and index.
    pub address_prefixes: Vec<String>,
    #[serde(default)]
    pub network_features: Option<Vec<String>>,
}

/// Reads a `changeNumber`, an integer in the files and a string in the REST API, as its decimal
/// text; `null` reads as empty.
fn number_or_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct NumberOrString;

    impl Visitor<'_> for NumberOrString {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a change number (an integer or a string)")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }

        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }

    deserializer.deserialize_any(NumberOrString)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_numbers_read_from_integers_strings_and_null() {
        let list: TagList = serde_json::from_str(
            r#"{"changeNumber": 375, "cloud": "Public", "values": [
                {"name": "A", "id": "A", "properties": {"changeNumber": "7", "addressPrefixes": []}},
                {"name": "B", "properties": {"changeNumber": null, "addressPrefixes": []}}]}"#,
        )
        .expect("valid list");
        assert_eq!(list.change_number, "375");
        let numbers: Vec<&str> = list
            .values
            .iter()
            .map(|v| v.properties.change_number.as_str())
            .collect();
        assert_eq!(numbers, ["7", ""]);
    }

    #[test]
    fn a_float_change_number_is_rejected() {
        let err = serde_json::from_str::<TagList>(r#"{"changeNumber": 1.5, "values": []}"#)
            .expect_err("float change number");
        assert!(err.to_string().contains("change number"), "{err}");
    }

    #[test]
    fn value_is_an_alias_of_values() {
        let list: TagList =
            serde_json::from_str(r#"{"value": []}"#).expect("serviceTagDetails shape");
        assert!(list.values.is_empty());
        assert_eq!(list.cloud, "");
    }
}
