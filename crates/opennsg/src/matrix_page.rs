//! The reachability matrix as a page people open: an HTML table and an SVG picture, each cell
//! coloured allow/deny/partial per port, the deciding rules on hover, and a legend. Static (no
//! script): what the browser shows is what was written, and tests read the cells back from the
//! browser's DOM.

use nsg_analysis::matrix::{Cell, Matrix, PortReach, Reach};
use std::fmt::Write;

const ALLOW: &str = "#2e9e4f";
const DENY: &str = "#c9353b";
const PARTIAL: &str = "#e8a33c";
const NOT_APPLICABLE: &str = "#d9d9d9";

fn colour(access: Reach) -> &'static str {
    match access {
        Reach::Allow => ALLOW,
        Reach::Deny => DENY,
        Reach::Partial => PARTIAL,
    }
}

/// Text for HTML and XML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The hover text of a cell: one line per port with its deciding rules.
fn hover(matrix: &Matrix, cell: &Cell) -> String {
    let mut text = format!(
        "{} → {}: {}",
        matrix.endpoints[cell.source].name,
        matrix.endpoints[cell.destination].name,
        cell.access.as_str()
    );
    for port in &cell.ports {
        let _ = write!(
            text,
            "\n{} {}: {} — {}",
            matrix.protocol,
            port.port,
            port.access.as_str(),
            port.rules.join("; ")
        );
    }
    text
}

fn caption(matrix: &Matrix) -> String {
    let ports: Vec<String> = matrix.ports.iter().map(u16::to_string).collect();
    format!(
        "Who can reach whom over {} to ports {}: rows send, columns receive. Each cell shows one square per port; hover for the deciding rules.",
        matrix.protocol,
        ports.join(", ")
    )
}

const LEGEND: [(&str, &str, &str); 4] = [
    ("allow", ALLOW, "every flow allowed"),
    ("deny", DENY, "no flow allowed"),
    ("partial", PARTIAL, "some flows allowed"),
    ("n/a", NOT_APPLICABLE, "itself, or no NSG between"),
];

fn port_span(port: &PortReach) -> String {
    let allowed = serde_json::to_string(&port.allowed).expect("examples serialise");
    let denied = serde_json::to_string(&port.denied).expect("examples serialise");
    format!(
        r#"<span class="port {access}" data-port="{p}" data-access="{access}" data-allowed="{allowed}" data-denied="{denied}">{p}</span>"#,
        access = port.access.as_str(),
        p = port.port,
        allowed = escape(&allowed),
        denied = escape(&denied),
    )
}

/// A whole HTML page.
pub fn html(matrix: &Matrix) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>OpenNSG reachability matrix</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
table.matrix {{ border-collapse: collapse; }}
.matrix th, .matrix td {{ border: 1px solid #bbb; padding: 4px 6px; }}
.matrix th.group {{ background: #eef2f7; font-weight: 600; }}
.matrix th.endpoint {{ background: #f7f7f7; font-weight: 500; white-space: nowrap; }}
.matrix td.cell {{ text-align: center; white-space: nowrap; }}
.matrix td.none {{ background: {na}; }}
.port {{ display: inline-block; min-width: 2.6em; margin: 1px; padding: 2px 0; color: #fff; border-radius: 3px; font-size: 12px; }}
.allow {{ background: {allow}; }} .deny {{ background: {deny}; }} .partial {{ background: {partial}; }}
.legend span.swatch {{ display: inline-block; width: 14px; height: 14px; vertical-align: middle; margin: 0 4px 0 12px; border-radius: 3px; }}
</style></head><body>
<h1>Reachability</h1>
<p class="caption">{caption}</p>
<p class="legend">"#,
        na = NOT_APPLICABLE,
        allow = ALLOW,
        deny = DENY,
        partial = PARTIAL,
        caption = escape(&caption(matrix)),
    );
    for (name, colour, meaning) in LEGEND {
        let _ = write!(
            page,
            r#"<span class="swatch" style="background:{colour}"></span>{name}: {meaning}"#
        );
    }
    page.push_str("</p>\n<table class=\"matrix\">\n<thead><tr><th></th><th></th>");
    for (group, count) in group_runs(matrix) {
        let _ = write!(
            page,
            r#"<th class="group" colspan="{count}">{}</th>"#,
            escape(&matrix.groups[group].label)
        );
    }
    page.push_str("</tr>\n<tr><th></th><th></th>");
    for endpoint in &matrix.endpoints {
        let _ = write!(
            page,
            r#"<th class="endpoint" scope="col">{}</th>"#,
            escape(&endpoint.name)
        );
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    let mut runs = group_runs(matrix).into_iter().peekable();
    let mut left_in_group = 0;
    for (i, endpoint) in matrix.endpoints.iter().enumerate() {
        page.push_str("<tr>");
        if left_in_group == 0 {
            if let Some((group, count)) = runs.next() {
                let _ = write!(
                    page,
                    r#"<th class="group" rowspan="{count}">{}</th>"#,
                    escape(&matrix.groups[group].label)
                );
                left_in_group = count;
            }
        }
        left_in_group -= 1;
        let _ = write!(
            page,
            r#"<th class="endpoint" scope="row">{}</th>"#,
            escape(&endpoint.name)
        );
        for j in 0..matrix.endpoints.len() {
            match matrix.cell(i, j) {
                None => page.push_str(r#"<td class="none">—</td>"#),
                Some(cell) => {
                    let _ = write!(
                        page,
                        r#"<td class="cell" data-source="{}" data-destination="{}" data-access="{}" title="{}">"#,
                        escape(&matrix.endpoints[i].name),
                        escape(&matrix.endpoints[j].name),
                        cell.access.as_str(),
                        escape(&hover(matrix, cell)),
                    );
                    for port in &cell.ports {
                        page.push_str(&port_span(port));
                    }
                    page.push_str("</td>");
                }
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table>\n</body></html>\n");
    page
}

/// Consecutive endpoints of one group: (group, how many).
fn group_runs(matrix: &Matrix) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for endpoint in &matrix.endpoints {
        match runs.last_mut() {
            Some((group, count)) if *group == endpoint.group => *count += 1,
            _ => runs.push((endpoint.group, 1)),
        }
    }
    runs
}

/// A standalone SVG picture: a grid of cells, one square per port, `<title>` for hover.
pub fn svg(matrix: &Matrix) -> String {
    const SQUARE: usize = 16;
    const GAP: usize = 2;
    const LABEL: usize = 180;
    let ports = matrix.ports.len().max(1);
    let cell_width = ports * (SQUARE + GAP) + GAP;
    let cell_height = SQUARE + 2 * GAP;
    let n = matrix.endpoints.len();
    let (top, left) = (LABEL, LABEL);
    let width = (left + n * cell_width + 20).max(720);
    let height = top + n * cell_height + 40;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">
<title>OpenNSG reachability matrix</title>
<desc>{}</desc>
<rect width="100%" height="100%" fill="white"/>
"#,
        escape(&caption(matrix))
    );
    for (k, (name, colour, meaning)) in LEGEND.iter().enumerate() {
        let x = 10 + k * 175;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="10" width="12" height="12" fill="{colour}"/><text x="{}" y="20">{name}: {meaning}</text>"#,
            x + 16
        );
    }
    let ports: Vec<String> = matrix.ports.iter().map(u16::to_string).collect();
    let _ = writeln!(
        out,
        r#"<text x="10" y="42">{} ports {}, one square each, left to right; rows send, columns receive.</text>"#,
        matrix.protocol,
        ports.join(", ")
    );
    for (j, endpoint) in matrix.endpoints.iter().enumerate() {
        let x = left + j * cell_width + cell_width / 2;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{}" transform="rotate(-60 {x} {})">{}</text>"#,
            top - 6,
            top - 6,
            escape(&endpoint.name)
        );
    }
    for (i, endpoint) in matrix.endpoints.iter().enumerate() {
        let y = top + i * cell_height;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6,
            y + cell_height - 6,
            escape(&endpoint.name)
        );
        for j in 0..n {
            let x = left + j * cell_width;
            match matrix.cell(i, j) {
                None => {
                    let _ = writeln!(
                        out,
                        r#"<rect x="{x}" y="{y}" width="{cell_width}" height="{cell_height}" fill="{NOT_APPLICABLE}" stroke="white"/>"#
                    );
                }
                Some(cell) => {
                    let _ = writeln!(
                        out,
                        r#"<g class="cell" data-source="{}" data-destination="{}" data-access="{}"><title>{}</title><rect x="{x}" y="{y}" width="{cell_width}" height="{cell_height}" fill="whitesmoke" stroke="silver"/>"#,
                        escape(&matrix.endpoints[i].name),
                        escape(&matrix.endpoints[j].name),
                        cell.access.as_str(),
                        escape(&hover(matrix, cell))
                    );
                    for (k, port) in cell.ports.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            r#"<rect class="port" data-port="{}" data-access="{}" x="{}" y="{}" width="{SQUARE}" height="{SQUARE}" fill="{}"/>"#,
                            port.port,
                            port.access.as_str(),
                            x + GAP + k * (SQUARE + GAP),
                            y + GAP,
                            colour(port.access)
                        );
                    }
                    out.push_str("</g>\n");
                }
            }
        }
    }
    out.push_str("</svg>\n");
    out
}
