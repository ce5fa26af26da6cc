//! Where flow logs are written: hourly documents `{"records":[…]}` named in Azure's layout,
//! appended to every minute, in a directory ([`DirectoryStore`]) or in Azure Blob Storage
//! ([`BlobStore`]), with `retentionPolicy.days` retention. The records and the names come from
//! the caller; this crate only stores them, and depends on nothing else of OpenNSG.
//!
//! ```text
//! insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/{SUB}/RESOURCEGROUPS/NETWORKWATCHERRG/
//!     PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_{REGION}/FLOWLOGS/{NAME}/
//!     y=2026/m=12/d=04/h=01/m=00/macAddress=00224871C205/PT1H.json
//! ```
//!
//! The first segment is the container; [`BlobName`] checks both parts once (Azure's rules, and
//! no segment that could leave a directory) and every store takes it.
//!
//! # Guarantees
//!
//! - **Valid JSON after every append.** Readers of Azure's flow logs fetch blobs mid-hour and
//!   break on half-written ones. A directory file is replaced by rename (a reader sees the old
//!   document or the new one); a blob is a block list committed whole (see [`BlobStore`]).
//! - **Exactly the records appended, in order**, as compact JSON; both stores write the same
//!   bytes for the same appends.
//! - **Retention by the hour in the name.** [`FlowLogStore::remove_older_than`] deletes the
//!   blobs under a [`BlobPrefix`] (one flow log's, since each flow log has its own
//!   `retentionPolicy.days`) whose `y=/m=/d=/h=` hour is before a cutoff
//!   ([`HourStamp::retention_cutoff`]: 0 days keeps everything). Blobs without an hour in their
//!   name are never deleted.
//! - One writer per blob: stores are `&mut` and not shared; [`BlobStore`]'s conditional commits
//!   make a second writer of the same blob fail instead of losing records.
//!
//! # Choices
//!
//! **The Azure SDK.** [`BlobStore`] uses Microsoft's official `azure_storage_blob` 1.1 (with
//! `azure_core`), the maintained SDK, rather than the older `azure_storage_blobs` 0.21, whose
//! README says Microsoft has no plans to update it. The official SDK authenticates with Entra
//! ID tokens or a SAS in the URL, and has no shared-key signing; an account key
//! ([`Credential::AccountKey`], which is what Azurite's development account has) is therefore
//! turned into an account SAS, signed here with the key as Azure documents it (HMAC-SHA256 of
//! the fields, renewed before it expires), so every request goes through the SDK as a SAS
//! request. A SAS from the user is used as given ([`Credential::SharedAccessSignature`]).
//!
//! **Blocking.** The caller writes from a thread of its own, so the API is synchronous;
//! [`BlobStore`] owns a single-threaded tokio runtime for the async SDK.
//!
//! # What Azure's own writer does differently
//!
//! - Azure's block ids are 32 random-looking hex characters; ours are 32 decimal digits
//!   numbering the blocks (header 0, records 1…, footer all nines). Readers only need the
//!   order, which the block list gives, and the 12-byte first and 2-byte last block, which
//!   are the same.
//! - Azure's records are written by the platform with its own JSON formatting; ours are
//!   `serde_json`'s compact form of the values given.
//! - Azure's commits are not conditional as far as is documented; ours carry `If-Match` (or
//!   `If-None-Match: *` for a new blob), so a concurrent writer makes an append fail.
//! - The content type Azure sets on flow log blobs is not documented; ours is
//!   `application/json`.
//! - The directory store has no Azure counterpart: it writes the same documents under the same
//!   names as files, replacing each file on every append.

mod blob;
mod directory;
mod document;
mod name;

use std::io;
use std::path::PathBuf;

pub use blob::{service_client, BlobStore, Credential};
pub use directory::DirectoryStore;
pub use name::{BlobName, BlobPrefix, ContainerName, HourStamp, NameError, NameFault};

/// Somewhere flow log documents are kept.
pub trait FlowLogStore {
    /// Adds `records`, in order, at the end of the blob's `records` array, creating the blob
    /// (and its container or directories) if it does not exist. Nothing is written for no
    /// records. After it returns, the blob is a complete `{"records":[…]}` document; if it
    /// fails, the blob is as it was.
    fn append(&mut self, blob: &BlobName, records: &[serde_json::Value]) -> Result<(), StoreError>;

    /// Deletes the blobs under `scope` whose hour ([`HourStamp::of_path`]) is before `cutoff`;
    /// returns how many.
    fn remove_older_than(
        &mut self,
        scope: &BlobPrefix,
        cutoff: HourStamp,
    ) -> Result<u64, StoreError>;
}

/// Why a store operation failed. Each names the file, blob or endpoint concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{location} is not a flow log document of this store: {reason}")]
    Foreign {
        location: String,
        reason: &'static str,
    },
    /// From the service or the way to it. `status` and `code` are the HTTP status and Azure's
    /// error code (`x-ms-error-code`) when the service answered. `message` is the SDK's error
    /// with its causes, signatures (`sig=`) blanked: the SDK's own error carries request URLs,
    /// and so the SAS, in its causes.
    #[error("blob storage, {operation}: {message}")]
    Azure {
        operation: String,
        status: Option<u16>,
        code: Option<String>,
        message: String,
    },
    #[error("storage endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("the access key of storage account {account:?} is not base64")]
    AccountKey { account: String },
    #[error("cannot start the runtime of the blob storage client: {0}")]
    Runtime(io::Error),
}
