//! `opennsg lint`: findings on an environment's NSGs, as text, JSON or SARIF.

use super::EXIT_DENY;
use crate::{load, EnvArgs};
use anyhow::Result;
use clap::Args;
use nsg_analysis::lint::{lint as lint_model, Finding};
use opennsg::{inputs, sarif};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct LintArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// An older ServiceTags file: also report rules whose tags have other prefixes now.
    #[arg(long = "old-service-tags", value_name = "FILE")]
    old_service_tags: Vec<PathBuf>,
    /// Print {"findings": [...]}.
    #[arg(long, conflicts_with = "sarif")]
    json: bool,
    /// Print SARIF 2.1.0 (for code scanning).
    #[arg(long)]
    sarif: bool,
}

/// Exit 0 without findings, 1 with findings.
pub(crate) fn lint(args: LintArgs) -> Result<u8> {
    let loaded = load(&args.env)?;
    let old = if args.old_service_tags.is_empty() {
        None
    } else {
        Some(inputs::load_service_tags(&args.old_service_tags)?)
    };
    let findings = lint_model(
        &loaded.model,
        &loaded.catalog,
        loaded.settings,
        old.as_ref(),
    )?;
    if args.sarif {
        let sources = sarif::Sources::new(
            args.env
                .files
                .iter()
                .filter(|f| f.as_os_str() != "-")
                .filter_map(|f| Some((f.clone(), std::fs::read_to_string(f).ok()?)))
                .collect(),
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&sarif::log(&findings, &sources))?
        );
    } else if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "findings": findings }))?
        );
    } else {
        print_text(&findings);
    }
    Ok(if findings.is_empty() { 0 } else { EXIT_DENY })
}

fn print_text(findings: &[Finding]) {
    for f in findings {
        let what = match (&f.nsg, &f.rule) {
            (_, Some(rule)) => format!("{}/{rule}", f.resource.name()),
            _ => f.resource.name().to_string(),
        };
        println!("{} {} {what}: {}", f.severity.as_str(), f.code, f.message);
        if let Some(example) = &f.example {
            println!("    e.g. opennsg verify ENV {}", example.verify_options());
        }
    }
    println!("{} findings", findings.len());
}
