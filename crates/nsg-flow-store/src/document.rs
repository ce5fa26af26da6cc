//! The bytes of a flow log document, `{"records":[r1,r2,…]}`, in the pieces both stores write:
//! the same header, records with their separators, and footer, so a directory file and a blob
//! hold identical bytes for the same appends.

use serde_json::Value;

/// What a document starts with: the 12 bytes of the first block of Azure's flow log blobs.
pub(crate) const HEADER: &[u8] = br#"{"records":["#;
/// What a document ends with: the 2 bytes of the last block of Azure's flow log blobs.
pub(crate) const FOOTER: &[u8] = b"]}";

/// One record as it is stored: compact JSON, preceded by `,` unless it is the document's first.
pub(crate) fn record_bytes(record: &Value, first_in_document: bool) -> Vec<u8> {
    let json = record.to_string();
    let mut bytes = Vec::with_capacity(json.len() + 1);
    if !first_in_document {
        bytes.push(b',');
    }
    bytes.extend_from_slice(json.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_make_a_document() {
        let records = [serde_json::json!({"a": 1}), serde_json::json!({"b": [2]})];
        let mut document = HEADER.to_vec();
        for (index, record) in records.iter().enumerate() {
            document.extend(record_bytes(record, index == 0));
        }
        document.extend_from_slice(FOOTER);
        assert_eq!(HEADER.len(), 12);
        assert_eq!(document, br#"{"records":[{"a":1},{"b":[2]}]}"#);
    }
}
