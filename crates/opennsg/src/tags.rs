//! `opennsg tags`: keep Microsoft's service tag files current (`update`), and read them
//! (`list`, `show`, `diff`, `export` — the last for other firewalls).

use crate::tag_cache::{self, Cloud, Source, TagCache, TagFiles};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nsg_tags::CatalogDiff;
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TagsCommand {
    /// Download the week's ServiceTags_*.json into the cache, verify it, keep the previous
    /// files, make it current and print what changed. Without --from-url or --from-file, the
    /// link is read from Microsoft's download page for the cloud.
    Update {
        /// Which cloud's file.
        #[arg(long, value_enum, default_value = "Public")]
        cloud: Cloud,
        /// Download this URL: the file, or a page linking to it.
        #[arg(long, value_name = "URL", conflicts_with = "from_file")]
        from_url: Option<String>,
        /// Take this file (e.g. downloaded by hand).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The cached files, the current one marked.
    List {
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// One tag: its region, service, change number and prefixes.
    Show {
        name: String,
        #[command(flatten)]
        files: FileArgs,
        #[arg(long)]
        json: bool,
    },
    /// What changed from OLD to NEW, tag by tag. Exit 0 if nothing, 1 if something changed.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// A tag's prefixes, one per line, for other firewalls.
    Export {
        name: String,
        /// Which addresses.
        #[arg(long, value_enum, default_value = "all")]
        family: Family,
        #[command(flatten)]
        files: FileArgs,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Family {
    Ipv4,
    Ipv6,
    All,
}

#[derive(Args)]
pub struct CacheArgs {
    /// Use DATA/service-tags (the cache of `opennsg serve --data DATA`) instead of
    /// $XDG_DATA_HOME/opennsg/service-tags.
    #[arg(long, value_name = "DATA")]
    data: Option<PathBuf>,
}

impl CacheArgs {
    fn cache(&self) -> Result<TagCache> {
        match &self.data {
            Some(data) => Ok(TagCache::in_data(data)),
            None => TagCache::for_user(),
        }
    }
}

#[derive(Args)]
pub struct FileArgs {
    /// Service tag files to read (repeatable); default: the cache's current file.
    #[arg(long = "service-tags", value_name = "FILE")]
    service_tags: Vec<PathBuf>,
    #[command(flatten)]
    cache: CacheArgs,
}

impl FileArgs {
    fn load(&self) -> Result<nsg_tags::Catalog> {
        let cache = self.cache.cache()?;
        let paths = TagFiles {
            explicit: self.service_tags.clone(),
            cache: Some(cache.clone()),
        }
        .paths();
        if paths.is_empty() {
            bail!(
                "no service tag file: the cache ({}) has none yet (run `opennsg tags update`), and no --service-tags FILE was given",
                cache.dir.display()
            );
        }
        crate::inputs::load_service_tags(&paths)
    }
}

/// Runs a `tags` command; the exit code.
pub fn run(command: TagsCommand) -> Result<u8> {
    match command {
        TagsCommand::Update {
            cloud,
            from_url,
            from_file,
            cache,
            json,
        } => {
            let source = match (from_url, from_file) {
                (Some(url), _) => Source::Url(url),
                (None, Some(file)) => Source::File(file),
                (None, None) => Source::DownloadPage,
            };
            let cache = cache.cache()?;
            let (origin, bytes) = tag_cache::fetch(&source, cloud)?;
            let installed = cache
                .install(&origin, &bytes, cloud)
                .with_context(|| format!("the cache {} is unchanged", cache.dir.display()))?;
            if json {
                let document = json!({
                    "file": installed.path,
                    "cloud": installed.cloud,
                    "changeNumber": installed.change_number,
                    "tags": installed.tags,
                    "current": installed.made_current,
                    "alreadyCached": installed.already_cached,
                    "changes": installed.changes,
                });
                println!("{}", serde_json::to_string_pretty(&document)?);
                return Ok(0);
            }
            eprintln!(
                "opennsg: {} ({}, changeNumber {}, {} tags) {} {}",
                origin,
                installed.cloud,
                installed.change_number,
                installed.tags,
                if installed.already_cached {
                    "was already in"
                } else {
                    "saved to"
                },
                installed.path.display()
            );
            if !installed.made_current {
                eprintln!(
                    "opennsg: warning: it is older than the current file {}, which stays current",
                    installed
                        .previous
                        .as_deref()
                        .unwrap_or(installed.path.as_path())
                        .display()
                );
            }
            match &installed.changes {
                Some(changes) => print!("{}", describe(changes)),
                None => println!("no previous file: nothing to compare"),
            }
            Ok(0)
        }
        TagsCommand::List { cache } => {
            let cache = cache.cache()?;
            let current = cache.current();
            let files = cache.files()?;
            if files.is_empty() {
                eprintln!(
                    "opennsg: no files in {} (run `opennsg tags update`)",
                    cache.dir.display()
                );
            }
            for file in files {
                let mark = if std::fs::canonicalize(&file.path).ok() == current {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {} {} {}",
                    file.cloud,
                    file.change_number,
                    file.path.display()
                );
            }
            Ok(0)
        }
        TagsCommand::Show { name, files, json } => {
            let catalog = files.load()?;
            let tag = catalog
                .get(&name)
                .with_context(|| catalog.unknown_tag_message(&name))?;
            if json {
                let document = json!({
                    "name": tag.name, "id": tag.id, "properties": {
                        "changeNumber": tag.change_number, "region": tag.region,
                        "regionId": tag.region_id, "platform": tag.platform,
                        "systemService": tag.system_service, "addressPrefixes": tag.prefixes,
                        "networkFeatures": tag.network_features}});
                println!("{}", serde_json::to_string_pretty(&document)?);
                return Ok(0);
            }
            let or_none = |text: &str| {
                if text.is_empty() {
                    "-".to_string()
                } else {
                    text.to_string()
                }
            };
            println!("name:           {}", tag.name);
            println!("region:         {}", or_none(&tag.region));
            println!("system service: {}", or_none(&tag.system_service));
            println!("change number:  {}", tag.change_number);
            if let Some(features) = &tag.network_features {
                println!("features:       {}", features.join(", "));
            }
            println!("prefixes:       {}", tag.prefixes.len());
            for prefix in &tag.prefixes {
                println!("  {prefix}");
            }
            Ok(0)
        }
        TagsCommand::Diff { old, new, json } => {
            let changes =
                nsg_tags::diff(&tag_cache::load_file(&old)?, &tag_cache::load_file(&new)?);
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else {
                print!("{}", describe(&changes));
            }
            Ok(if changes.is_empty() { 0 } else { 1 })
        }
        TagsCommand::Export {
            name,
            family,
            files,
        } => {
            let catalog = files.load()?;
            let tag = catalog
                .get(&name)
                .with_context(|| catalog.unknown_tag_message(&name))?;
            for prefix in tag.prefixes.iter().filter(|p| match family {
                Family::Ipv4 => p.addr().is_ipv4(),
                Family::Ipv6 => p.addr().is_ipv6(),
                Family::All => true,
            }) {
                println!("{}", prefix.trunc());
            }
            Ok(0)
        }
    }
}

/// The changes as text: a summary line, then one line per tag (`+` added, `-` removed,
/// `~` changed with its prefixes added and removed).
pub fn describe(changes: &CatalogDiff) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}: {} tags added, {} removed, {} changed",
        tag_cache::change_numbers(changes),
        changes.added.len(),
        changes.removed.len(),
        changes.changed.len()
    );
    for (sign, tag) in changes
        .added
        .iter()
        .map(|t| ('+', t))
        .chain(changes.removed.iter().map(|t| ('-', t)))
    {
        let _ = writeln!(
            text,
            "{sign} {} (changeNumber {}, {} prefixes)",
            tag.name,
            tag.change_number,
            tag.prefixes.len()
        );
    }
    for change in &changes.changed {
        let prefixes: Vec<String> = change
            .added
            .iter()
            .map(|p| format!("+{p}"))
            .chain(change.removed.iter().map(|p| format!("-{p}")))
            .collect();
        let _ = writeln!(
            text,
            "~ {} (changeNumber {} -> {}){}{}",
            change.name,
            change.old_change_number,
            change.new_change_number,
            if prefixes.is_empty() { "" } else { ": " },
            prefixes.join(" ")
        );
    }
    text
}
