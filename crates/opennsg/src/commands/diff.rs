//! `opennsg diff OLD NEW`: where two environments' NSGs decide differently.

use super::EXIT_DENY;
use anyhow::Result;
use clap::Args;
use nsg_analysis::diff::{differences_at, Compare, Difference};
use nsg_analysis::nics::compile_both;
use nsg_policy::{Settings, SubscriptionType};
use opennsg::{inputs, query, tag_cache::TagFiles};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct DiffArgs {
    /// The environment before the change (ARM JSON).
    #[arg(value_name = "OLD")]
    old: PathBuf,
    /// The environment after the change.
    #[arg(value_name = "NEW")]
    new: PathBuf,
    /// ServiceTags file for both sides (default: the cache of `opennsg tags update`).
    #[arg(long = "service-tags", value_name = "FILE", conflicts_with_all = ["old_service_tags", "new_service_tags"])]
    service_tags: Vec<PathBuf>,
    /// ServiceTags file of the old side (with --new-service-tags: a tag update's effect).
    #[arg(
        long = "old-service-tags",
        value_name = "FILE",
        requires = "new_service_tags"
    )]
    old_service_tags: Vec<PathBuf>,
    #[arg(
        long = "new-service-tags",
        value_name = "FILE",
        requires = "old_service_tags"
    )]
    new_service_tags: Vec<PathBuf>,
    /// Only this NIC (name or id).
    #[arg(long)]
    nic: Option<String>,
    /// Also report flows whose verdict stays but whose deciding rule changes.
    #[arg(long)]
    rules: bool,
    /// Print {"differences": [...]}.
    #[arg(long)]
    json: bool,
    /// Subscription type, for the outbound TCP 25 block.
    #[arg(long, default_value = "EnterpriseAgreement", value_name = "TYPE")]
    subscription_type: SubscriptionType,
}

/// Exit 0 when both behave the same, 1 when they differ.
pub(crate) fn diff(args: DiffArgs) -> Result<u8> {
    let (old_tags, new_tags) = if args.old_service_tags.is_empty() {
        let both = TagFiles::or_user_cache(args.service_tags.clone()).load()?;
        (both.clone(), both)
    } else {
        (
            inputs::load_service_tags(&args.old_service_tags)?,
            inputs::load_service_tags(&args.new_service_tags)?,
        )
    };
    let settings = Settings {
        subscription_type: args.subscription_type,
    };
    let old_model = inputs::load_model(&[&args.old], &old_tags)?;
    let new_model = inputs::load_model(&[&args.new], &new_tags)?;
    let only = match &args.nic {
        Some(name) => Some(query::find_nic(&new_model, name)?.id.clone()),
        None => None,
    };
    let (old_nics, new_nics) =
        compile_both((&old_model, &old_tags), (&new_model, &new_tags), settings)?;
    let compare = if args.rules {
        Compare::Rules
    } else {
        Compare::Verdicts
    };
    let mut pairs = Vec::new();
    let mut only_old: Vec<String> = Vec::new();
    let mut only_new: Vec<String> = Vec::new();
    for new in &new_nics {
        let id = &new.policy().nic;
        if only.as_ref().is_some_and(|o| o != id) {
            continue;
        }
        match old_nics.iter().find(|o| &o.policy().nic == id) {
            Some(old) => pairs.push((old, new)),
            None => only_new.push(id.to_string()),
        }
    }
    let found: Vec<Difference> = differences_at(&pairs, compare);
    for old in &old_nics {
        let id = &old.policy().nic;
        let wanted = only.as_ref().is_none_or(|o| o == id);
        if wanted && !new_nics.iter().any(|n| &n.policy().nic == id) {
            only_old.push(id.to_string());
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "differences": found,
                "nicsOnlyInOld": only_old,
                "nicsOnlyInNew": only_new,
            }))?
        );
    } else {
        for d in &found {
            let name = |rule: &Option<String>| rule.clone().unwrap_or_else(|| "no NSG".into());
            println!(
                "{} {}: {} ({}) -> {} ({})",
                short(&d.nic),
                d.direction.to_lowercase(),
                d.old.access,
                name(&d.old.rule_name),
                d.new.access,
                name(&d.new.rule_name),
            );
            let r = &d.region;
            let ports = |p: &Option<Vec<String>>| {
                p.as_ref()
                    .map_or(String::new(), |p| format!(":{}", shorten(p)))
            };
            println!(
                "    {} {}{} -> {}{}",
                r.protocols.join(","),
                shorten(&r.source),
                ports(&r.source_ports),
                shorten(&r.destination),
                ports(&r.destination_ports),
            );
            println!("    e.g. opennsg verify NEW {}", d.example.verify_options());
        }
        for id in &only_old {
            println!("{}: only in {}", short(id), args.old.display());
        }
        for id in &only_new {
            println!("{}: only in {}", short(id), args.new.display());
        }
        println!(
            "{} differences",
            found.len() + only_old.len() + only_new.len()
        );
    }
    let same = found.is_empty() && only_old.is_empty() && only_new.is_empty();
    Ok(if same { 0 } else { EXIT_DENY })
}

/// The last segment of an id: the name people read.
fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// A list for one line: the first few items and how many more.
fn shorten(items: &[String]) -> String {
    const SHOWN: usize = 4;
    if items.len() <= SHOWN {
        items.join(",")
    } else {
        format!(
            "{},… ({} more)",
            items[..SHOWN].join(","),
            items.len() - SHOWN
        )
    }
}
