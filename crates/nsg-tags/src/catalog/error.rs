//! [`TagError`]: why a service tag list did not load.

use thiserror::Error;

/// A service tag list that could not be loaded. Loading never panics, and a failed load leaves the
/// catalog as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TagError {
    /// The bytes are not JSON, or not a service tag list (wrong shape, missing or mistyped field).
    #[error(
        "not a service tag file (Microsoft's ServiceTags_*.json or the serviceTags REST API response): \
         {message} at line {line} column {column}"
    )]
    Json {
        /// 1-based line of the error; 0 if serde_json did not know it.
        line: usize,
        /// 1-based column of the error; 0 if serde_json did not know it.
        column: usize,
        /// What is wrong, e.g. ``missing field `values` ``.
        message: String,
    },
    /// An entry of `addressPrefixes` is not an IPv4 or IPv6 CIDR.
    #[error(
        "service tag '{tag}' has an invalid address prefix at addressPrefixes[{index}]: {value:?}"
    )]
    InvalidPrefix {
        /// The tag's name as written in the file.
        tag: String,
        /// The 0-based position in the tag's `addressPrefixes`.
        index: usize,
        /// The offending text.
        value: String,
    },
}

impl From<serde_json::Error> for TagError {
    fn from(err: serde_json::Error) -> Self {
        let (line, column) = (err.line(), err.column());
        // serde_json's Display appends " at line L column C" when it knows the position; keep only
        // the description so the position is not said twice.
        let full = err.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        TagError::Json {
            line,
            column,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_say_where_and_what_once() {
        let err =
            serde_json::from_str::<serde_json::Value>("{\n  \"a\": tru }").expect_err("bad JSON");
        let err = TagError::from(err);
        let TagError::Json {
            line,
            column,
            message,
        } = &err
        else {
            panic!("expected a JSON error, got {err:?}");
        };
        assert_eq!(*line, 2);
        assert!(*column > 0);
        assert!(!message.contains("line"), "{message}");
        let text = err.to_string();
        assert!(text.starts_with("not a service tag file"), "{text}");
        assert!(
            text.ends_with(&format!("at line 2 column {column}")),
            "{text}"
        );
    }

    #[test]
    fn invalid_prefix_names_tag_index_and_value() {
        let err = TagError::InvalidPrefix {
            tag: "Storage".into(),
            index: 3,
            value: "1.2.3".into(),
        };
        assert_eq!(
            err.to_string(),
            r#"service tag 'Storage' has an invalid address prefix at addressPrefixes[3]: "1.2.3""#
        );
    }
}
