//! `opennsg matrix`: who can reach whom, as text, JSON, an HTML page or an SVG picture.

use crate::{load, EnvArgs};
use anyhow::{Context, Result};
use clap::Args;
use nsg_analysis::matrix::{matrix as reachability, Matrix, Reach};
use nsg_analysis::nics::compile_all;
use opennsg::{matrix_page, query};
use std::path::PathBuf;

/// Shown when `--tags` is not given; a tag the ServiceTags file lacks is left out.
const DEFAULT_TAGS: [&str; 2] = ["Internet", "AzureCloud"];

#[derive(Args)]
pub(crate) struct MatrixArgs {
    #[command(flatten)]
    env: EnvArgs,
    /// Destination ports, comma-separated: one square per port in each cell.
    #[arg(long, default_value = "22,80,443,1433", value_delimiter = ',')]
    ports: Vec<u16>,
    /// tcp or udp.
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// Rows and columns beside the NICs: service tags, or addresses and CIDRs (comma-separated;
    /// default Internet and AzureCloud).
    #[arg(long, value_delimiter = ',')]
    tags: Option<Vec<String>>,
    /// Print the matrix as JSON.
    #[arg(long, conflicts_with_all = ["html", "svg"])]
    json: bool,
    /// Write an HTML page (deciding rules on hover).
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Write an SVG picture.
    #[arg(long, value_name = "OUT.svg")]
    svg: Option<PathBuf>,
}

pub(crate) fn matrix(args: MatrixArgs) -> Result<u8> {
    let loaded = load(&args.env)?;
    let protocol = query::parse_protocol(&args.protocol)?;
    anyhow::ensure!(
        nsg_model::rule::protocol_has_ports(protocol),
        "--protocol {}: the matrix asks about ports, so tcp or udp",
        args.protocol
    );
    let tags: Vec<String> = match args.tags {
        Some(tags) => tags,
        None => DEFAULT_TAGS
            .iter()
            .filter(|t| *t == &"Internet" || loaded.catalog.get(t).is_some())
            .map(|t| t.to_string())
            .collect(),
    };
    let nics = compile_all(&loaded.model, &loaded.catalog, loaded.settings)?;
    let found = reachability(
        &loaded.model,
        &nics,
        &loaded.catalog,
        &tags,
        protocol,
        &args.ports,
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    }
    if let Some(path) = &args.html {
        std::fs::write(path, matrix_page::html(&found))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, matrix_page::svg(&found))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !args.json && args.html.is_none() && args.svg.is_none() {
        print_text(&found);
    }
    Ok(0)
}

/// One character per port in each cell: `+` allow, `-` deny, `~` partial, `.` none.
fn print_text(matrix: &Matrix) {
    let ports: Vec<String> = matrix.ports.iter().map(u16::to_string).collect();
    println!(
        "{} to ports {} (rows send, columns receive; + allow, - deny, ~ partial, . n/a):",
        matrix.protocol,
        ports.join(",")
    );
    let width = matrix
        .endpoints
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0);
    let column = matrix.ports.len().max(2);
    let header: Vec<String> = (1..=matrix.endpoints.len())
        .map(|j| format!("{j:>column$}"))
        .collect();
    println!("{:width$}     {}", "", header.join(" "));
    for (i, endpoint) in matrix.endpoints.iter().enumerate() {
        let cells: Vec<String> = (0..matrix.endpoints.len())
            .map(|j| {
                let text: String = match matrix.cell(i, j) {
                    None => ".".repeat(matrix.ports.len()),
                    Some(cell) => cell
                        .ports
                        .iter()
                        .map(|p| match p.access {
                            Reach::Allow => '+',
                            Reach::Deny => '-',
                            Reach::Partial => '~',
                        })
                        .collect(),
                };
                format!("{text:>column$}")
            })
            .collect();
        println!("{:>3} {:width$} {}", i + 1, endpoint.name, cells.join(" "));
    }
    for (i, endpoint) in matrix.endpoints.iter().enumerate() {
        let group = &matrix.groups[endpoint.group].label;
        println!("{:>3} {} ({group})", i + 1, endpoint.name);
    }
}
