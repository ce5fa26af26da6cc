//! Blob names, validated once, and the hour a flow log blob belongs to.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// Azure's limit on a blob name, in characters.
const MAX_BLOB_NAME_CHARS: usize = 1024;
/// Azure's limit on the `/`-separated segments of a blob name.
const MAX_BLOB_NAME_SEGMENTS: usize = 254;

/// A name that is not a valid container, blob or prefix name, with the name as given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid blob name {name:?}: {fault}")]
pub struct NameError {
    pub name: String,
    pub fault: NameFault,
}

/// What is wrong with a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameFault {
    #[error("expected `container/path`, with a path after the container")]
    NoPath,
    #[error("a container name has 3 to 63 characters")]
    ContainerLength,
    #[error(
        "a container name is lowercase letters, digits and single hyphens, \
         starting and ending with a letter or digit"
    )]
    ContainerCharacters,
    #[error("a blob name has 1 to 1024 characters")]
    PathLength,
    #[error("a blob name has at most 254 `/`-separated segments")]
    TooManySegments,
    #[error("a path segment is empty (a leading, trailing or doubled `/`)")]
    EmptySegment,
    #[error("a path segment ends with `.` (so `.` and `..` too)")]
    SegmentEndsWithDot,
    #[error("a blob name has no control characters and no `\\`")]
    Character,
}

/// A storage container name as Azure accepts it: 3–63 characters, lowercase ASCII letters,
/// digits and hyphens, beginning and ending with a letter or digit, no two hyphens in a row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerName(String);

impl ContainerName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        check_container(name).map_err(|fault| NameError {
            name: name.to_owned(),
            fault,
        })?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_container(name: &str) -> Result<(), NameFault> {
    if !(3..=63).contains(&name.len()) {
        return Err(NameFault::ContainerLength);
    }
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let ends_alphanumeric = |b: u8| b != b'-';
    if !bytes.iter().all(allowed)
        || !ends_alphanumeric(bytes[0])
        || !ends_alphanumeric(bytes[bytes.len() - 1])
        || name.contains("--")
    {
        return Err(NameFault::ContainerCharacters);
    }
    Ok(())
}

/// The path of a blob inside its container, checked segment by segment. The rules are Azure's
/// (length, segment count, no trailing `.` or `/`) plus those that make every name a safe
/// relative file path for [`crate::DirectoryStore`] (no empty, `.` or `..` segments, no control
/// characters or `\`), so that a name valid for one store is valid for every store.
fn check_path(path: &str, may_be_empty: bool) -> Result<(), NameFault> {
    if path.is_empty() && may_be_empty {
        return Ok(());
    }
    if path.is_empty() || path.chars().count() > MAX_BLOB_NAME_CHARS {
        return Err(NameFault::PathLength);
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err(NameFault::Character);
    }
    let mut segments = 0;
    for segment in path.split('/') {
        segments += 1;
        if segment.is_empty() {
            return Err(NameFault::EmptySegment);
        }
        if segment.ends_with('.') {
            return Err(NameFault::SegmentEndsWithDot);
        }
    }
    if segments > MAX_BLOB_NAME_SEGMENTS {
        return Err(NameFault::TooManySegments);
    }
    Ok(())
}

/// `container/path` split at the first `/`, both parts checked.
fn split_checked(
    full: &str,
    path_may_be_empty: bool,
) -> Result<(ContainerName, String), NameError> {
    let fault = |fault| NameError {
        name: full.to_owned(),
        fault,
    };
    let (container, path) = full.split_once('/').unwrap_or((full, ""));
    check_container(container).map_err(fault)?;
    if path.is_empty() && !path_may_be_empty {
        return Err(fault(NameFault::NoPath));
    }
    check_path(path, path_may_be_empty).map_err(fault)?;
    Ok((ContainerName(container.to_owned()), path.to_owned()))
}

/// A blob: a container and a path inside it, both valid. Parsed once; every store takes this.
/// Written (and parsed) as `container/path`, the first segment being the container, as Azure's
/// flow log paths are quoted
/// (`insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/…/PT1H.json`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobName {
    container: ContainerName,
    path: String,
}

impl BlobName {
    /// A blob from its container and its path inside the container.
    pub fn new(container: &str, path: &str) -> Result<Self, NameError> {
        let container = ContainerName::parse(container)?;
        check_path(path, false).map_err(|fault| NameError {
            name: format!("{container}/{path}"),
            fault,
        })?;
        Ok(Self {
            container,
            path: path.to_owned(),
        })
    }

    /// A blob from `container/path`.
    pub fn parse(full: &str) -> Result<Self, NameError> {
        let (container, path) = split_checked(full, false)?;
        Ok(Self { container, path })
    }

    pub fn container(&self) -> &ContainerName {
        &self.container
    }

    /// The blob's name inside its container (what Azure's API calls the blob name).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The hour of the flow log this blob holds, from its `y=/m=/d=/h=` segments.
    pub fn hour(&self) -> Option<HourStamp> {
        HourStamp::of_path(&self.path)
    }
}

impl fmt::Display for BlobName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container, self.path)
    }
}

impl FromStr for BlobName {
    type Err = NameError;

    fn from_str(full: &str) -> Result<Self, Self::Err> {
        Self::parse(full)
    }
}

/// Where retention looks: a container and whole leading segments of the blobs' paths, e.g. one
/// flow log's `insights-logs-flowlogflowevent/flowLogResourceID=/SUBSCRIPTIONS/…/FLOWLOGS/FL1`
/// (which does not reach into `…/FLOWLOGS/FL10`). An empty path means the whole container.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobPrefix {
    container: ContainerName,
    path: String,
}

impl BlobPrefix {
    /// `container` or `container/leading/segments`.
    pub fn parse(full: &str) -> Result<Self, NameError> {
        let (container, path) = split_checked(full, true)?;
        Ok(Self { container, path })
    }

    pub fn container(&self) -> &ContainerName {
        &self.container
    }

    /// The leading segments, without a trailing `/`; empty for the whole container.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The string prefix every blob path under these segments starts with (`path/`, or nothing).
    pub fn listing_prefix(&self) -> String {
        if self.path.is_empty() {
            String::new()
        } else {
            format!("{}/", self.path)
        }
    }
}

impl fmt::Display for BlobPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.container)
        } else {
            write!(f, "{}/{}", self.container, self.path)
        }
    }
}

/// An hour in UTC, as flow log blobs are named by (`y=2026/m=12/d=04/h=01`). Ordered in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HourStamp(PrimitiveDateTime);

impl HourStamp {
    /// The hour, if it exists in the calendar.
    pub fn new(year: i32, month: u8, day: u8, hour: u8) -> Option<Self> {
        let month = Month::try_from(month).ok()?;
        let date = Date::from_calendar_date(year, month, day).ok()?;
        let time = Time::from_hms(hour, 0, 0).ok()?;
        Some(Self(PrimitiveDateTime::new(date, time)))
    }

    /// The hour of a blob path from its consecutive `y=YYYY/m=MM/d=DD/h=HH` segments (the first
    /// such run; the `m=00` after `h=` is the minute and not read). `None` if the path has no
    /// such run or it names no real hour.
    pub fn of_path(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.split('/').collect();
        segments.windows(4).find_map(|run| {
            let year = field(run[0], "y=", 4)?;
            let month = field(run[1], "m=", 2)?;
            let day = field(run[2], "d=", 2)?;
            let hour = field(run[3], "h=", 2)?;
            Self::new(
                i32::try_from(year).ok()?,
                u8::try_from(month).ok()?,
                u8::try_from(day).ok()?,
                u8::try_from(hour).ok()?,
            )
        })
    }

    /// The hour containing a moment given in seconds since the Unix epoch.
    pub fn containing_unix_seconds(seconds: i64) -> Option<Self> {
        let moment = OffsetDateTime::from_unix_timestamp(seconds).ok()?;
        Self::new(
            moment.year(),
            u8::from(moment.month()),
            moment.day(),
            moment.hour(),
        )
    }

    /// The cutoff for `retentionPolicy.days` at a moment (seconds since the Unix epoch): blobs of
    /// hours before it hold only records older than `days` days. `None` for 0 days (Azure's
    /// "keep forever"), or a moment outside the calendar.
    pub fn retention_cutoff(now_unix_seconds: i64, days: u32) -> Option<Self> {
        if days == 0 {
            return None;
        }
        let then = now_unix_seconds.checked_sub(i64::from(days) * 86_400)?;
        Self::containing_unix_seconds(then)
    }

    /// The segments this hour names blobs with: `y=2026/m=12/d=04/h=01`.
    pub fn path_segments(&self) -> String {
        format!(
            "y={:04}/m={:02}/d={:02}/h={:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day(),
            self.0.hour()
        )
    }
}

impl fmt::Display for HourStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:00Z",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day(),
            self.0.hour()
        )
    }
}

/// The number in `key` + exactly `digits` ASCII digits.
fn field(segment: &str, key: &str, digits: usize) -> Option<u32> {
    let value = segment.strip_prefix(key)?;
    if value.len() != digits || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURE_PATH: &str = "flowLogResourceID=/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000001/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/MICROSOFT.NETWORK/NETWORKWATCHERS/NETWORKWATCHER_EASTUS/FLOWLOGS/FL1/y=2026/m=12/d=04/h=01/m=00/macAddress=00224871C205/PT1H.json";

    #[test]
    fn azure_layout_parses_with_its_hour() {
        let full = format!("insights-logs-flowlogflowevent/{AZURE_PATH}");
        let blob = BlobName::parse(&full).unwrap();
        assert_eq!(blob.container().as_str(), "insights-logs-flowlogflowevent");
        assert_eq!(blob.path(), AZURE_PATH);
        assert_eq!(blob.to_string(), full);
        assert_eq!(blob.hour(), HourStamp::new(2026, 12, 4, 1));
        assert_eq!(
            blob,
            BlobName::new("insights-logs-flowlogflowevent", AZURE_PATH).unwrap()
        );
    }

    #[test]
    fn bad_names_are_refused_naming_the_name_and_the_fault() {
        let long_path = "a/".repeat(600) + "PT1H.json";
        let many_segments = "a/".repeat(254) + "PT1H.json";
        let cases = [
            ("insights-logs-flowlogflowevent", NameFault::NoPath),
            ("insights-logs-flowlogflowevent/", NameFault::NoPath),
            ("ab/PT1H.json", NameFault::ContainerLength),
            (
                &format!("{}/PT1H.json", "a".repeat(64)),
                NameFault::ContainerLength,
            ),
            ("Insights-logs/PT1H.json", NameFault::ContainerCharacters),
            ("-logs/PT1H.json", NameFault::ContainerCharacters),
            ("logs-/PT1H.json", NameFault::ContainerCharacters),
            ("in--logs/PT1H.json", NameFault::ContainerCharacters),
            ("in_logs/PT1H.json", NameFault::ContainerCharacters),
            (&format!("logs/{long_path}"), NameFault::PathLength),
            (&format!("logs/{many_segments}"), NameFault::TooManySegments),
            ("logs//PT1H.json", NameFault::EmptySegment),
            ("logs/a//PT1H.json", NameFault::EmptySegment),
            ("logs/a/PT1H.json/", NameFault::EmptySegment),
            ("logs/../../etc/passwd", NameFault::SegmentEndsWithDot),
            ("logs/a/./PT1H.json", NameFault::SegmentEndsWithDot),
            ("logs/a./PT1H.json", NameFault::SegmentEndsWithDot),
            ("logs/a\\b/PT1H.json", NameFault::Character),
            ("logs/a\nb/PT1H.json", NameFault::Character),
        ];
        for (name, fault) in cases {
            let error = BlobName::parse(name).expect_err(name);
            assert_eq!(error.fault, fault, "{name:?}");
            assert_eq!(error.name, name);
            let message = error.to_string();
            assert!(message.contains(&format!("{name:?}")), "{message}");
            assert!(message.contains(&fault.to_string()), "{message}");
        }
        let error = BlobName::new("logs", "a/../b").expect_err("dot segment");
        assert_eq!(error.name, "logs/a/../b");
        assert!(BlobName::new("Logs", "a").is_err());
        assert!(BlobPrefix::parse("logs/a/").is_err());
        assert_eq!(
            BlobPrefix::parse("logs").map(|p| p.listing_prefix()),
            Ok(String::new())
        );
        assert_eq!(
            BlobPrefix::parse("logs/a/b").map(|p| p.listing_prefix()),
            Ok("a/b/".into())
        );
    }

    #[test]
    fn hours_come_only_from_a_whole_real_run_of_segments() {
        let cases = [
            ("a/y=2026/m=02/d=29/h=00/x", None),
            ("a/y=2028/m=02/d=29/h=23/x", HourStamp::new(2028, 2, 29, 23)),
            ("a/y=2026/m=12/d=04/h=24/x", None),
            ("a/y=2026/m=12/d=4/h=01/x", None),
            ("a/y=2026/m=12/d=04/x/h=01", None),
            ("y=2026/m=01/d=31/h=05", HourStamp::new(2026, 1, 31, 5)),
            ("no/hour/here", None),
        ];
        for (path, hour) in cases {
            assert_eq!(HourStamp::of_path(path), hour, "{path}");
        }
    }

    #[test]
    fn retention_cutoff_is_the_hour_n_days_back_and_zero_days_keeps_forever() {
        // 2026-12-04T10:30:00Z
        let now = 1_796_380_200;
        assert_eq!(
            HourStamp::containing_unix_seconds(now),
            HourStamp::new(2026, 12, 4, 10)
        );
        assert_eq!(
            HourStamp::retention_cutoff(now, 2),
            HourStamp::new(2026, 12, 2, 10)
        );
        assert_eq!(HourStamp::retention_cutoff(now, 0), None);
        assert_eq!(
            HourStamp::new(2026, 12, 4, 1).map(|h| h.path_segments()),
            Some("y=2026/m=12/d=04/h=01".to_owned())
        );
    }
}
