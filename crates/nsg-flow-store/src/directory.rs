//! Flow logs in a directory: `root/<container>/<path>`, one file per blob.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::document::{record_bytes, FOOTER, HEADER};
use crate::{BlobName, BlobPrefix, FlowLogStore, HourStamp, StoreError};

/// Mode of the written files: readable by log shippers running as other users.
const FILE_MODE: u32 = 0o644;
/// Prefix of the temporary files an append writes beside the file it replaces.
const TEMPORARY_PREFIX: &str = ".tmp-";

/// Writes each blob as the file `root/<container>/<path>` (directories made as needed, files
/// mode 0644).
///
/// **Every append replaces the file atomically**: the whole new document is written to a
/// temporary file in the same directory, fsynced, and renamed over the old file, then the
/// directory is fsynced. A reader opening the file at any instant gets the old document or the
/// new one, each complete. Appending in place instead (overwrite the closing `]}` with
/// `,record]}`) would leave instants at which the file holds a document with its end cut off,
/// to readers and after a crash, because a write of several bytes is not atomic for a
/// concurrent `read`. The cost is rewriting the hour's file on each append: one file per hour
/// and NIC, appended once a minute, a few megabytes at most.
#[derive(Debug, Clone)]
pub struct DirectoryStore {
    root: PathBuf,
}

impl DirectoryStore {
    /// A store under `root` (created at the first append).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file a blob is written to.
    pub fn file_of(&self, blob: &BlobName) -> PathBuf {
        self.root.join(blob.container().as_str()).join(blob.path())
    }

    fn directory_of(&self, prefix: &BlobPrefix) -> PathBuf {
        let container = self.root.join(prefix.container().as_str());
        if prefix.path().is_empty() {
            container
        } else {
            container.join(prefix.path())
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

impl FlowLogStore for DirectoryStore {
    fn append(&mut self, blob: &BlobName, records: &[Value]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let file = self.file_of(blob);
        // A valid name has a path below its container, so its file has a parent directory.
        let directory = file.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&directory).map_err(io_error(&directory))?;

        let mut document = match fs::read(&file) {
            Ok(existing) => without_footer(existing).ok_or_else(|| StoreError::Foreign {
                location: file.display().to_string(),
                reason: "it does not start with {\"records\":[ and end with ]}",
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => HEADER.to_vec(),
            Err(error) => return Err(io_error(&file)(error)),
        };
        let mut first = document.len() == HEADER.len();
        for record in records {
            document.extend(record_bytes(record, first));
            first = false;
        }
        document.extend_from_slice(FOOTER);
        replace(&directory, &file, &document)
    }

    fn remove_older_than(
        &mut self,
        scope: &BlobPrefix,
        cutoff: HourStamp,
    ) -> Result<u64, StoreError> {
        let directory = self.directory_of(scope);
        if !directory.is_dir() {
            return Ok(0);
        }
        let mut deleted = 0;
        prune(&directory, scope.path(), cutoff, &mut deleted)?;
        Ok(deleted)
    }
}

/// The document without its closing `]}`, if it is one of ours.
fn without_footer(mut document: Vec<u8>) -> Option<Vec<u8>> {
    let ours = document.len() >= HEADER.len() + FOOTER.len()
        && document.starts_with(HEADER)
        && document.ends_with(FOOTER);
    ours.then(|| {
        document.truncate(document.len() - FOOTER.len());
        document
    })
}

/// Writes `content` to a new file in `directory` and renames it to `file`, durably.
fn replace(directory: &Path, file: &Path, content: &[u8]) -> Result<(), StoreError> {
    let mut temporary = tempfile::Builder::new()
        .prefix(TEMPORARY_PREFIX)
        .tempfile_in(directory)
        .map_err(io_error(directory))?;
    let written = temporary.as_file_mut();
    written
        .write_all(content)
        .and_then(|()| written.set_permissions(Permissions::from_mode(FILE_MODE)))
        .and_then(|()| written.sync_all())
        .map_err(io_error(temporary.path()))?;
    temporary
        .persist(file)
        .map_err(|error| io_error(file)(error.error))?;
    // The rename is durable once the directory entry is.
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(directory))
}

/// Deletes the files under `directory` (blob path `relative`) whose hour is before `cutoff`,
/// and the directories that this leaves empty. Returns whether `directory` is now empty
/// because of deletions (so its parent removes it; directories found empty are left alone).
fn prune(
    directory: &Path,
    relative: &str,
    cutoff: HourStamp,
    deleted: &mut u64,
) -> Result<bool, StoreError> {
    let mut removed_any = false;
    let mut kept = 0;
    for entry in fs::read_dir(directory).map_err(io_error(directory))? {
        let entry = entry.map_err(io_error(directory))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            kept += 1; // not a name this store writes
            continue;
        };
        let child = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        let kind = entry.file_type().map_err(io_error(&path))?;
        if kind.is_dir() {
            if prune(&path, &child, cutoff, deleted)? {
                fs::remove_dir(&path).map_err(io_error(&path))?;
                removed_any = true;
            } else {
                kept += 1;
            }
        } else if HourStamp::of_path(&child).is_some_and(|hour| hour < cutoff) {
            // Leftover temporary files of an interrupted append share their blob's hour.
            fs::remove_file(&path).map_err(io_error(&path))?;
            removed_any = true;
            if !entry
                .file_name()
                .to_string_lossy()
                .starts_with(TEMPORARY_PREFIX)
            {
                *deleted += 1;
            }
        } else {
            kept += 1;
        }
    }
    Ok(kept == 0 && removed_any)
}
