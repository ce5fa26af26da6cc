//! The values the store takes and gives.

use crate::error::StoreError;
use nsg_model::ResourceId;
use serde_json::Value;
use std::fmt;

/// A condition a write must meet, from the HTTP `If-Match` / `If-None-Match` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional: `put` creates or replaces, `delete` removes whatever is there.
    None,
    /// `If-Match`: the resource must exist and its etag must be one of the listed ones (the header
    /// value as sent: one etag, a comma-separated list, or `*` for "any existing resource").
    /// Etags compare without their weak prefix and quotes, so `W/"x"`, `"x"` and `x` all match the
    /// stored `W/"x"`.
    IfMatch(String),
    /// `If-None-Match: *`: the resource must not exist (`put` only creates; `delete` of an
    /// existing resource fails).
    IfNoneMatch,
}

impl Precondition {
    /// Checks the condition against the current etag (`None`: no such resource).
    pub(crate) fn check(&self, id: &ResourceId, current: Option<&str>) -> Result<(), StoreError> {
        let failed = |expected: &str| StoreError::PreconditionFailed {
            id: id.as_str().to_string(),
            expected: expected.to_string(),
            actual: current.map(str::to_string),
        };
        match self {
            Precondition::None => Ok(()),
            Precondition::IfMatch(list) => match current {
                Some(etag) if etag_list_matches(list, etag) => Ok(()),
                _ => Err(failed(list)),
            },
            Precondition::IfNoneMatch => match current {
                None => Ok(()),
                Some(_) => Err(failed("no resource")),
            },
        }
    }
}

fn etag_list_matches(list: &str, current: &str) -> bool {
    let current = bare_etag(current);
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || (!candidate.is_empty() && bare_etag(candidate) == current)
    })
}

fn bare_etag(etag: &str) -> &str {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"')
}

/// A new etag: `W/"<random v4 uuid>"`, the shape Azure's network resource provider uses.
pub(crate) fn new_etag() -> String {
    format!("W/\"{}\"", uuid::Uuid::new_v4())
}

/// A resource as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResource {
    /// The id as first written (see the crate docs on casing); compares case-insensitively.
    pub id: ResourceId,
    /// The full ARM type taken from `id`, e.g. `Microsoft.Network/networkSecurityGroups`.
    pub resource_type: String,
    /// `W/"<guid>"`, new on every write.
    pub etag: String,
    /// The document exactly as last put (the store never edits it; see [`Self::rendered`]).
    pub document: Value,
    /// 1 when created, +1 on every `put` since.
    pub version: u64,
}

impl StoredResource {
    /// The document with its top-level `id`, `name` and `etag` set from this record (replaced in
    /// place when present, appended when not; a non-object document is returned unchanged): what
    /// a GET should answer before resource-specific rendering. Children's etags are the REST
    /// layer's business (the crate docs suggest the parent's etag).
    pub fn rendered(&self) -> Value {
        let mut document = self.document.clone();
        if let Value::Object(map) = &mut document {
            map.insert("id".into(), Value::String(self.id.as_str().to_string()));
            map.insert("name".into(), Value::String(self.id.name().to_string()));
            map.insert("etag".into(), Value::String(self.etag.clone()));
        }
        document
    }
}

/// What `put` did.
#[derive(Clone, Debug, PartialEq)]
pub enum PutOutcome {
    /// There was no resource with this id (HTTP 201).
    Created(StoredResource),
    /// An existing resource was replaced (HTTP 200).
    Updated(StoredResource),
}

impl PutOutcome {
    pub fn created(&self) -> bool {
        matches!(self, PutOutcome::Created(_))
    }
    pub fn resource(&self) -> &StoredResource {
        match self {
            PutOutcome::Created(r) | PutOutcome::Updated(r) => r,
        }
    }
    pub fn into_resource(self) -> StoredResource {
        match self {
            PutOutcome::Created(r) | PutOutcome::Updated(r) => r,
        }
    }
}

/// Where to list: ARM's "list all" (a subscription), "list" (a resource group), or the
/// resources below one parent that ARM manages as resources of their own (a network watcher's
/// flow logs). Names compare case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Subscription(String),
    /// `(subscription, resource group)`.
    ResourceGroup(String, String),
    /// The rows whose ids extend this id (`{parent}/flowLogs/x` for the watcher `{parent}`).
    Parent(ResourceId),
}

impl Scope {
    /// The subscription the scope lies in.
    pub fn subscription(&self) -> &str {
        match self {
            Scope::Subscription(subscription) | Scope::ResourceGroup(subscription, _) => {
                subscription
            }
            Scope::Parent(parent) => parent.subscription(),
        }
    }
}

/// One page of a listing, ordered by lower-cased id.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub items: Vec<StoredResource>,
    /// Where the next page starts; `None` on the last page (never an empty page after a full one).
    pub next: Option<PageToken>,
}

/// Where a listing goes on: an opaque, URL-safe string (lower-case hex) for the `$skipToken` of a
/// `nextLink`.
///
/// It encodes the key (lower-cased id) of the last item returned; the next page is the items whose
/// key sorts after it. Paging is therefore stable while others write: every item that exists for
/// the whole listing is returned exactly once, never twice, whatever is created or deleted
/// meanwhile; an item created or deleted during the listing may or may not appear.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageToken(String);

impl PageToken {
    pub(crate) fn after(key: &str) -> PageToken {
        let mut hex = String::with_capacity(key.len() * 2);
        for byte in key.bytes() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        PageToken(hex)
    }

    /// Reads a token back from a request; anything this store did not produce is
    /// [`StoreError::InvalidPageToken`].
    pub fn parse(text: &str) -> Result<PageToken, StoreError> {
        let invalid = || StoreError::InvalidPageToken {
            token: text.to_string(),
        };
        if text.is_empty() || !text.len().is_multiple_of(2) {
            return Err(invalid());
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut bytes = Vec::with_capacity(text.len() / 2);
        for pair in text.as_bytes().chunks(2) {
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(invalid());
            };
            bytes.push(hi << 4 | lo);
        }
        let key = String::from_utf8(bytes).map_err(|_| invalid())?;
        if !key.starts_with("/subscriptions/") {
            return Err(invalid());
        }
        Ok(PageToken(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key the next page starts after.
    pub(crate) fn key(&self) -> String {
        let digit = |c: u8| {
            if c.is_ascii_digit() {
                c - b'0'
            } else {
                c - b'a' + 10
            }
        };
        let bytes: Vec<u8> = self
            .0
            .as_bytes()
            .chunks(2)
            .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
            .collect();
        // Built by `after` from a `str` or checked by `parse`: valid UTF-8 either way.
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_foreign_text() {
        let key = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/networksecuritygroups/nsg-é";
        let token = PageToken::after(key);
        assert!(token.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(PageToken::parse(token.as_str()).unwrap(), token);
        assert_eq!(token.key(), key);
        for bad in ["", "abc", "zz", "2F", "00ff", "616263"] {
            assert!(
                matches!(
                    PageToken::parse(bad),
                    Err(StoreError::InvalidPageToken { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn etag_lists_compare_without_weak_prefix_and_quotes() {
        let stored = "W/\"abc\"";
        for ok in [
            "W/\"abc\"",
            "\"abc\"",
            "abc",
            "*",
            "W/\"x\", W/\"abc\"",
            " abc ",
        ] {
            assert!(etag_list_matches(ok, stored), "{ok:?}");
        }
        for no in ["", "W/\"abd\"", "ab", ","] {
            assert!(!etag_list_matches(no, stored), "{no:?}");
        }
    }

    #[test]
    fn new_etags_have_azures_shape_and_differ() {
        let a = new_etag();
        let b = new_etag();
        assert_ne!(a, b);
        assert!(a.starts_with("W/\"") && a.ends_with('"'), "{a}");
        assert!(uuid::Uuid::parse_str(&a[3..a.len() - 1]).is_ok(), "{a}");
    }
}
