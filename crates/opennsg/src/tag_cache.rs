//! The service tag cache: Microsoft's weekly `ServiceTags_*.json` files, downloaded by
//! `opennsg tags update` into `$XDG_DATA_HOME/opennsg/service-tags` (or `DATA/service-tags` for
//! `serve`), and the reloader that lets `serve` and `enforce --watch` pick up a new file.
//!
//! Files are named `ServiceTags_{cloud}_{changeNumber}.json`; `current.json` is a symlink to the
//! file in use, replaced by rename so readers never see a half-written file or a missing link.

use crate::inputs::read_input;
use anyhow::{bail, Context, Result};
use nsg_tags::{Catalog, CatalogDiff};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Files kept per cloud: the current one and the weeks before it, for `tags diff` and rollback.
pub const KEPT_PER_CLOUD: usize = 8;
/// The largest download accepted (Microsoft's Public file is about 4 MB).
const DOWNLOAD_LIMIT: u64 = 64 << 20;
const CURRENT: &str = "current.json";

/// The clouds Microsoft publishes a file for, with the download page of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cloud {
    #[value(name = "Public")]
    Public,
    #[value(name = "AzureGovernment")]
    AzureGovernment,
    #[value(name = "AzureChinaCloud")]
    AzureChinaCloud,
}

impl Cloud {
    /// The `cloud` field of the file and the middle of its name.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Public => "Public",
            Cloud::AzureGovernment => "AzureGovernment",
            Cloud::AzureChinaCloud => "China",
        }
    }

    /// Microsoft's download page, whose link to the week's file changes every week.
    pub fn download_page(self) -> &'static str {
        match self {
            Cloud::Public => "https://www.microsoft.com/en-us/download/details.aspx?id=56519",
            Cloud::AzureGovernment => {
                "https://www.microsoft.com/en-us/download/details.aspx?id=57063"
            }
            Cloud::AzureChinaCloud => {
                "https://www.microsoft.com/en-us/download/details.aspx?id=57062"
            }
        }
    }
}

/// A directory of downloaded tag files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagCache {
    pub dir: PathBuf,
}

/// One file of the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedFile {
    pub path: PathBuf,
    pub cloud: String,
    pub change_number: u64,
}

/// What [`TagCache::install`] did.
#[derive(Debug)]
pub struct Installed {
    pub path: PathBuf,
    pub cloud: String,
    pub change_number: u64,
    pub tags: usize,
    /// The file `current.json` named before, if any.
    pub previous: Option<PathBuf>,
    /// From the previous current file to this one (`None` without a previous file).
    pub changes: Option<CatalogDiff>,
    /// Whether `current.json` now names this file (not when it is older than the current one).
    pub made_current: bool,
    /// Whether the file was already in the cache.
    pub already_cached: bool,
}

impl TagCache {
    /// The user's cache: `$XDG_DATA_HOME/opennsg/service-tags`, else
    /// `$HOME/.local/share/opennsg/service-tags`.
    pub fn for_user() -> Result<TagCache> {
        let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home).join(".local/share"),
                None => bail!("neither XDG_DATA_HOME nor HOME is set: pass --data DIR for the service tag cache"),
            },
        };
        if !base.is_absolute() {
            bail!(
                "XDG_DATA_HOME or HOME is not an absolute path: {}",
                base.display()
            );
        }
        Ok(TagCache {
            dir: base.join("opennsg/service-tags"),
        })
    }

    /// The cache of a `serve` data directory: `DATA/service-tags`.
    pub fn in_data(data: &Path) -> TagCache {
        TagCache {
            dir: data.join("service-tags"),
        }
    }

    /// The file in use (`current.json`, resolved), if the cache has one.
    pub fn current(&self) -> Option<PathBuf> {
        let link = self.dir.join(CURRENT);
        link.is_file()
            .then(|| std::fs::canonicalize(&link).unwrap_or(link))
    }

    /// The cached files, oldest first per cloud (by change number).
    pub fn files(&self) -> Result<Vec<CachedFile>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.dir.display())),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("reading {}", self.dir.display()))?
                .path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if let Some((cloud, change_number)) = parse_file_name(name) {
                files.push(CachedFile {
                    cloud: cloud.to_string(),
                    change_number,
                    path,
                });
            }
        }
        files.sort_by(|a, b| (&a.cloud, a.change_number).cmp(&(&b.cloud, b.change_number)));
        Ok(files)
    }

    /// Verifies that `bytes` are a service tag file of `cloud` and stores them: as
    /// `ServiceTags_{cloud}_{changeNumber}.json`, made current unless older than the current file
    /// of the same cloud, with at most [`KEPT_PER_CLOUD`] files of that cloud kept. On any error
    /// the cache is as it was.
    pub fn install(&self, origin: &str, bytes: &[u8], cloud: Cloud) -> Result<Installed> {
        let downloaded = parse_tag_file(origin, bytes)?;
        let file_cloud = downloaded.cloud().unwrap_or_default().to_string();
        if file_cloud != cloud.name() {
            bail!(
                "{origin} is the service tag file of cloud {:?}, not {}: pass --cloud for it",
                file_cloud,
                cloud.name()
            );
        }
        let change_number: u64 = downloaded
            .change_number()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("{origin}: its changeNumber is not a number"))?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let name = format!("ServiceTags_{}_{change_number}.json", cloud.name());
        let path = self.dir.join(&name);
        let already_cached = path.is_file();
        if !already_cached {
            write_atomically(&path, bytes)?;
        }
        let previous = self.current();
        let previous_file = previous.as_deref().and_then(|p| {
            let name = p.file_name()?.to_str()?;
            parse_file_name(name).map(|(c, n)| (c.to_string(), n))
        });
        let made_current = match &previous_file {
            Some((c, n)) if c == cloud.name() => *n <= change_number,
            _ => true,
        };
        let changes = match &previous {
            Some(old) if old != &path => Some(nsg_tags::diff(&load_file(old)?, &downloaded)),
            _ => None,
        };
        if made_current {
            let link = self.dir.join(format!(".{CURRENT}.{}", std::process::id()));
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&name, &link)
                .with_context(|| format!("linking {}", link.display()))?;
            std::fs::rename(&link, self.dir.join(CURRENT))
                .with_context(|| format!("making {name} current"))?;
        }
        self.prune(cloud)?;
        Ok(Installed {
            path,
            cloud: cloud.name().to_string(),
            change_number,
            tags: downloaded.len(),
            previous,
            changes,
            made_current,
            already_cached,
        })
    }

    /// Removes the oldest files of `cloud` beyond [`KEPT_PER_CLOUD`], never the current one.
    fn prune(&self, cloud: Cloud) -> Result<()> {
        let current = self.current();
        let mine: Vec<CachedFile> = self
            .files()?
            .into_iter()
            .filter(|f| f.cloud == cloud.name())
            .collect();
        let excess = mine.len().saturating_sub(KEPT_PER_CLOUD);
        for old in mine.iter().take(excess) {
            if current.as_deref() != std::fs::canonicalize(&old.path).ok().as_deref() {
                std::fs::remove_file(&old.path)
                    .with_context(|| format!("removing {}", old.path.display()))?;
            }
        }
        Ok(())
    }
}

/// `ServiceTags_{cloud}_{changeNumber}.json` → (cloud, change number).
fn parse_file_name(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_prefix("ServiceTags_")?.strip_suffix(".json")?;
    let (cloud, number) = stem.rsplit_once('_')?;
    Some((cloud, number.parse().ok()?))
}

/// Parses a downloaded file strictly: Microsoft's schema, a cloud, a change number and tags. An
/// HTML error page, a truncated download or other JSON is refused with what it looks like.
pub fn parse_tag_file(origin: &str, bytes: &[u8]) -> Result<Catalog> {
    if looks_like_html(bytes) {
        bail!("{origin} is an HTML or XML page, not a service tag file (an error page, or a download page without a link to the file)");
    }
    let mut catalog = Catalog::new();
    let summary = catalog.load_json_from(origin, bytes).with_context(|| {
        format!("{origin} is not a service tag file (truncated or another schema?)")
    })?;
    if summary.cloud.is_empty() || summary.change_number.is_empty() || summary.tags == 0 {
        bail!(
            "{origin} is not one of Microsoft's ServiceTags_*.json files: it lacks the cloud, the changeNumber or any tag"
        );
    }
    Ok(catalog)
}

/// Reads and strictly parses one tag file (`-`: standard input).
pub fn load_file(path: &Path) -> Result<Catalog> {
    parse_tag_file(&path.display().to_string(), &read_input(path)?)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temporary.write_all(bytes)?;
    // Public data, readable by the services' own users whoever downloaded it (tempfile makes 0600).
    temporary
        .as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    temporary.as_file().sync_all()?;
    temporary
        .persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Where the bytes of a new file come from.
pub enum Source {
    /// Microsoft's download page of the cloud: the week's link is read from it.
    DownloadPage,
    /// A URL: of a file, or of a page linking to one.
    Url(String),
    File(PathBuf),
}

/// Fetches a tag file: reads it, or downloads it, following one page's link to
/// `ServiceTags_{cloud}_*.json`. Returns where it came from and the bytes.
pub fn fetch(source: &Source, cloud: Cloud) -> Result<(String, Vec<u8>)> {
    let url = match source {
        Source::File(path) => return Ok((path.display().to_string(), read_input(path)?)),
        Source::Url(url) => url.clone(),
        Source::DownloadPage => cloud.download_page().to_string(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let bytes = download(&agent, &url)?;
    // A page without the link is left to the file checks, which say it is HTML.
    match looks_like_html(&bytes)
        .then(|| find_file_link(&bytes, cloud))
        .flatten()
    {
        Some(link) => Ok((link.clone(), download(&agent, &link)?)),
        None => Ok((url, bytes)),
    }
}

fn download(agent: &ureq::Agent, url: &str) -> Result<Vec<u8>> {
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("downloading {url}"))?;
    response
        .body_mut()
        .with_config()
        .limit(DOWNLOAD_LIMIT)
        .read_to_vec()
        .with_context(|| format!("reading the download of {url}"))
}

fn looks_like_html(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'<')
}

/// The first URL in a download page that ends in `ServiceTags_{cloud}_{digits}.json`.
pub fn find_file_link(page: &[u8], cloud: Cloud) -> Option<String> {
    let text = String::from_utf8_lossy(page);
    let marker = format!("ServiceTags_{}_", cloud.name());
    let is_url_char = |c: char| !(c.is_whitespace() || "\"'<>()".contains(c));
    let mut from = 0;
    while let Some(found) = text[from..].find(&marker) {
        let at = from + found;
        let after = &text[at + marker.len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(".json") {
            let end = at + marker.len() + digits + ".json".len();
            let start = text[..at]
                .char_indices()
                .rev()
                .find(|&(_, c)| !is_url_char(c))
                .map_or(0, |(i, c)| i + c.len_utf8());
            let url = &text[start..end];
            if url.starts_with("https://") || url.starts_with("http://") {
                return Some(url.to_string());
            }
        }
        from = at + marker.len();
    }
    None
}

/// The tag files a command uses: those given with `--service-tags`, else the cache's current
/// file (none if the cache has none).
#[derive(Clone, Debug)]
pub struct TagFiles {
    pub explicit: Vec<PathBuf>,
    pub cache: Option<TagCache>,
}

/// What the files were when loaded: a reload happens when this changes.
type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

impl TagFiles {
    /// `explicit` files, else the current file of the user's cache (if there is a user cache).
    pub fn or_user_cache(explicit: Vec<PathBuf>) -> TagFiles {
        TagFiles {
            explicit,
            cache: TagCache::for_user().ok(),
        }
    }

    /// The files to load now.
    pub fn paths(&self) -> Vec<PathBuf> {
        if !self.explicit.is_empty() {
            return self.explicit.clone();
        }
        self.cache.iter().filter_map(TagCache::current).collect()
    }

    fn fingerprint(&self) -> Fingerprint {
        self.paths()
            .into_iter()
            .map(|path| {
                let meta = std::fs::metadata(&path).ok();
                let modified = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map_or(0, |m| m.len());
                (path, modified, len)
            })
            .collect()
    }

    /// Loads the files (a later file wins for a tag in several).
    pub fn load(&self) -> Result<Catalog> {
        crate::inputs::load_service_tags(&self.paths())
    }
}

/// Reloads the tag files when they change (a new cache file made current, or a given file
/// rewritten): checked on SIGHUP and every `interval`.
pub struct TagReloader {
    files: TagFiles,
    seen: Fingerprint,
    interval: Duration,
    checked: std::time::Instant,
    hangup: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TagReloader {
    /// Loads the files now and starts listening for SIGHUP; later polls compare against this.
    pub fn start(files: TagFiles, interval: Duration) -> Result<(TagReloader, Catalog)> {
        let hangup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
            .context("listening for SIGHUP")?;
        let seen = files.fingerprint();
        let catalog = files.load()?;
        let reloader = TagReloader {
            files,
            seen,
            interval,
            checked: std::time::Instant::now(),
            hangup,
        };
        Ok((reloader, catalog))
    }

    /// The new catalog and what changed from `current`, if a SIGHUP came or `interval` passed
    /// and the files changed since the last load. On error (a file that does not load) the
    /// caller keeps `current`; the next poll tries again only once the files change again.
    pub fn poll(&mut self, current: &Catalog) -> Result<Option<(Catalog, CatalogDiff)>> {
        let hangup = self.hangup.swap(false, std::sync::atomic::Ordering::AcqRel);
        if !hangup && self.checked.elapsed() < self.interval {
            return Ok(None);
        }
        self.checked = std::time::Instant::now();
        let now = self.files.fingerprint();
        if now == self.seen {
            return Ok(None);
        }
        self.seen = now;
        let catalog = self.files.load()?;
        let changes = nsg_tags::diff(current, &catalog);
        Ok(Some((catalog, changes)))
    }
}

/// `changeNumber OLD -> NEW`, as every change listing starts.
pub fn change_numbers(changes: &CatalogDiff) -> String {
    format!(
        "changeNumber {} -> {}",
        changes.old_change_number.as_deref().unwrap_or("none"),
        changes.new_change_number.as_deref().unwrap_or("none")
    )
}

/// One line for logs: which tags' addresses changed.
pub fn describe_reload(changes: &CatalogDiff) -> String {
    let changed: Vec<&str> = changes.tags_with_new_addresses().collect();
    let numbers = change_numbers(changes);
    if changed.is_empty() {
        format!("service tags reloaded ({numbers}): no tag's addresses changed")
    } else {
        format!(
            "service tags reloaded ({numbers}): {} tags changed addresses: {}",
            changed.len(),
            changed.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_cloud_and_change_number() {
        assert_eq!(
            parse_file_name("ServiceTags_Public_375.json"),
            Some(("Public", 375))
        );
        assert_eq!(
            parse_file_name("ServiceTags_AzureGovernment_402.json"),
            Some(("AzureGovernment", 402))
        );
        for other in [
            "current.json",
            "ServiceTags_Public.json",
            "ServiceTags_Public_x.json",
            ".current.json.12",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn the_weeks_link_is_found_in_a_download_page() {
        let page = br#"<html><a href="https://download.microsoft.com/download/7/1/d/x/ServiceTags_Public_20251103.json">Download</a>
            "url":"https://download.microsoft.com/download/y/ServiceTags_AzureGovernment_20251103.json"</html>"#;
        assert_eq!(
            find_file_link(page, Cloud::Public).as_deref(),
            Some(
                "https://download.microsoft.com/download/7/1/d/x/ServiceTags_Public_20251103.json"
            )
        );
        assert_eq!(
            find_file_link(page, Cloud::AzureGovernment).as_deref(),
            Some("https://download.microsoft.com/download/y/ServiceTags_AzureGovernment_20251103.json")
        );
        assert_eq!(find_file_link(page, Cloud::AzureChinaCloud), None);
        assert_eq!(
            find_file_link(b"ServiceTags_Public_1.json, no URL", Cloud::Public),
            None
        );
    }

    #[test]
    fn garbage_is_not_a_tag_file() {
        for (bytes, says) in [
            (
                &b"<!DOCTYPE html><html>Service unavailable</html>"[..],
                "HTML",
            ),
            (
                br#"{"changeNumber": 3, "cloud": "Public", "values": [{"name": "A""#,
                "truncated",
            ),
            (br#"{"value": []}"#, "lacks"),
            (b"", "not a service tag file"),
        ] {
            let error = parse_tag_file("x", bytes).unwrap_err();
            assert!(format!("{error:#}").contains(says), "{error:#}");
        }
    }
}
