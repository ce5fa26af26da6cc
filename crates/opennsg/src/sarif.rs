//! `opennsg lint --sarif`: findings as SARIF 2.1.0, so that code scanning (GitHub's, among
//! others) shows them on the ARM JSON files that define the rules.

use nsg_analysis::lint::{Code, Finding};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Where a resource is written: a file and a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLine {
    pub file: PathBuf,
    pub line: usize,
}

/// The environment files' text, to place findings on lines.
pub struct Sources {
    files: Vec<(PathBuf, String)>,
}

impl Sources {
    /// `files` as given on the command line with their text (stdin, `-`, has no lines to point at).
    pub fn new(files: Vec<(PathBuf, String)>) -> Sources {
        Sources { files }
    }

    /// The line of `"name": "<rule>"` after the line of `"name": "<resource>"`, or of the
    /// resource alone: where a reader of the file finds it.
    pub fn locate(&self, resource: &str, rule: Option<&str>) -> Option<SourceLine> {
        let names = |line: &str, name: &str| {
            line.contains("\"name\"") && line.contains(&format!("\"{name}\""))
        };
        for (file, text) in &self.files {
            let lines: Vec<&str> = text.lines().collect();
            let Some(at) = lines.iter().position(|l| names(l, resource)) else {
                continue;
            };
            let line = match rule {
                Some(rule) => lines[at..]
                    .iter()
                    .position(|l| names(l, rule))
                    .map_or(at, |i| at + i),
                None => at,
            };
            return Some(SourceLine {
                file: file.clone(),
                line: line + 1,
            });
        }
        None
    }
}

/// The SARIF log of `findings`.
pub fn log(findings: &[Finding], sources: &Sources) -> Value {
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|code| {
            json!({
                "id": code.as_str(),
                "shortDescription": {"text": code.description()},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|finding| {
            let name = finding.resource.name();
            let mut qualified = finding.resource.to_string();
            if let Some(rule) = &finding.rule {
                qualified = format!("{qualified}/securityRules/{rule}");
            }
            let mut location = json!({
                "logicalLocations": [{"fullyQualifiedName": qualified, "kind": "resource"}]
            });
            if let Some(at) = sources.locate(name, finding.rule.as_deref()) {
                location["physicalLocation"] = json!({
                    "artifactLocation": {"uri": uri(&at.file)},
                    "region": {"startLine": at.line},
                });
            }
            let index = Code::ALL
                .iter()
                .position(|c| *c == finding.code)
                .expect("every code is listed");
            let mut properties = json!({"coveredBy": finding.covered_by});
            if let Some(example) = &finding.example {
                properties["example"] = json!(example);
            }
            json!({
                "ruleId": finding.code.as_str(),
                "ruleIndex": index,
                "level": finding.severity.as_str(),
                "message": {"text": finding.message},
                "locations": [location],
                "properties": properties,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "opennsg",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }]
    })
}

/// A relative path as a URI reference (SARIF wants `/` separators; code scanning resolves it
/// against the repository root).
fn uri(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
