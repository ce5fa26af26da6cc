//! `opennsg lint`, `diff` and `query` as users run them: exit codes, the JSON fields the issue
//! fixes, SARIF valid against the schema, and every example flow confirmed by `opennsg verify`.

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn opennsg(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .args(args)
        .env("XDG_CACHE_HOME", repo("target/tmp/no-tag-cache"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

const SHOWCASE: &str = "tests/fixtures/lint-showcase.json";
const TAGS: &str = "tests/data/service-tags/ServiceTags_Public_376.json";
const OLD_TAGS: &str = "tests/data/service-tags/ServiceTags_Public_375.json";

fn showcase_lint(format: &str) -> (i32, String) {
    let (env, tags, old) = (repo(SHOWCASE), repo(TAGS), repo(OLD_TAGS));
    let (code, out, err) = opennsg(&[
        "lint",
        env.to_str().unwrap(),
        "--service-tags",
        tags.to_str().unwrap(),
        "--old-service-tags",
        old.to_str().unwrap(),
        format,
    ]);
    assert!(err.is_empty(), "{err}");
    (code, out)
}

/// `verify`'s {"access", "ruleName"} for an example as lint, diff and query print them.
fn verify(env: &Path, tags: &Path, example: &Value) -> Value {
    let field = |name: &str| example[name].clone();
    let end = |ip: &str, port: &str| match field(port).as_u64() {
        Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    };
    let source = end(field("source").as_str().unwrap(), "sourcePort");
    let destination = end(field("destination").as_str().unwrap(), "destinationPort");
    let inbound = field("direction") == "Inbound";
    let (local, remote) = if inbound {
        (destination, source)
    } else {
        (source, destination)
    };
    let protocol = match field("protocol").as_str().unwrap() {
        "ICMPv6" => "58".to_string(),
        p => p.to_lowercase(),
    };
    let (_, out, err) = opennsg(&[
        "verify",
        env.to_str().unwrap(),
        "--service-tags",
        tags.to_str().unwrap(),
        "--nic",
        field("nic").as_str().unwrap(),
        "--direction",
        if inbound { "inbound" } else { "outbound" },
        "--protocol",
        &protocol,
        "--local",
        &local,
        "--remote",
        &remote,
        "--json",
    ]);
    assert!(err.is_empty(), "verify: {err}");
    json(&out)
}

#[test]
fn lint_finds_each_kind_of_finding_and_verify_confirms_every_example() {
    let (code, out) = showcase_lint("--json");
    assert_eq!(code, 1, "findings exit 1");
    let findings = json(&out)["findings"].as_array().unwrap().clone();
    let found: Vec<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let expected = [
        ("overly-permissive", "error", "Allow-SSH-Anywhere"),
        ("shadowed-rule", "error", "Deny-SSH-Internet"),
        ("shadowed-rule", "warning", "Allow-HTTPS-Storage"),
        ("changed-by-tag-update", "note", "Allow-HTTPS-Storage"),
        ("never-applies", "warning", "Deny-From-DB"),
        ("redundant-rule", "warning", "Allow-Vnet-8080"),
        ("unused-nsg", "note", ""),
        ("unused-nsg", "note", ""),
        ("unused-asg", "note", ""),
        ("unused-asg", "note", ""),
        ("unused-asg", "note", ""),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(c, s, r)| (c.to_string(), s.to_string(), r.to_string()))
        .collect();
    assert_eq!(found, expected);
    for f in &findings {
        for key in ["code", "severity", "nsg", "rule", "message", "coveredBy"] {
            assert!(f.get(key).is_some(), "{key} missing from {f}");
        }
        let Some(example) = f.get("example") else {
            continue;
        };
        let verdict = verify(&repo(SHOWCASE), &repo(TAGS), example);
        let rule = format!("securityRules/{}", f["rule"].as_str().unwrap());
        match f["code"].as_str().unwrap() {
            "shadowed-rule" => {
                let covered: Vec<String> = f["coveredBy"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| format!("securityRules/{}", c.as_str().unwrap()))
                    .collect();
                assert!(
                    covered.contains(&verdict["ruleName"].as_str().unwrap().to_string()),
                    "{f} vs {verdict}"
                );
            }
            "overly-permissive" => assert_eq!(
                (verdict["access"].as_str(), verdict["ruleName"].as_str()),
                (Some("Allow"), Some(rule.as_str())),
                "{f}"
            ),
            _ => assert_eq!(verdict["ruleName"].as_str(), Some(rule.as_str()), "{f}"),
        }
    }
    assert_eq!(
        findings[1]["coveredBy"],
        serde_json::json!(["Allow-SSH-Anywhere"])
    );
}

#[test]
fn lint_sarif_is_valid_against_the_sarif_2_1_0_schema_and_points_at_lines() {
    let (code, out) = showcase_lint("--sarif");
    assert_eq!(code, 1);
    let log = json(&out);
    // The OASIS schema's `run.language` pattern has a lone `]`, a literal in ECMA-262 regexes
    // but an error for Rust's: escaped, it means the same.
    let text = std::fs::read_to_string(repo("tests/data/sarif/sarif-schema-2.1.0.json")).unwrap();
    let lone_bracket = r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#;
    assert!(
        text.contains(lone_bracket),
        "the schema changed: revisit this workaround"
    );
    let text = text.replace(
        lone_bracket,
        r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\\]?$""#,
    );
    let validator = jsonschema::draft7::new(&json(&text)).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&log)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // The schema requires little; the fields code scanning reads must be there too.
    let results = log["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 11);
    let text = std::fs::read_to_string(repo(SHOWCASE)).unwrap();
    for r in results {
        let location = &r["locations"][0]["physicalLocation"];
        let line = location["region"]["startLine"].as_u64().unwrap() as usize;
        assert!(location["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("lint-showcase.json"));
        let logical = r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]
            .as_str()
            .unwrap();
        let name = logical.rsplit('/').next().unwrap();
        let at = text.lines().nth(line - 1).unwrap();
        assert!(
            at.contains(&format!("\"{name}\"")),
            "line {line} ({at}) is not {logical}"
        );
    }
    let invalid = json(r#"{"version": "2.1.0", "runs": [{"results": []}]}"#);
    assert!(
        !validator.is_valid(&invalid),
        "the schema check can fail: a run needs its tool"
    );
}

#[test]
fn lint_of_a_clean_environment_exits_0_and_bad_input_2() {
    let env = repo("tests/fixtures/seed-vms-http.json");
    let (code, out, _) = opennsg(&["lint", env.to_str().unwrap(), "--json"]);
    assert_eq!(
        (code, json(&out)["findings"].clone()),
        (0, serde_json::json!([]))
    );
    let (code, _, err) = opennsg(&["lint", "/nonexistent.json"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn diff_reports_the_changed_regions_with_examples_each_side_confirms() {
    let (old, new) = (
        repo("tests/fixtures/seed-vms-http.json"),
        repo("tests/fixtures/seed-vms-nsg1-deny-all.json"),
    );
    let tags = repo(TAGS);
    let (code, out, err) = opennsg(&[
        "diff",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1, "{err}");
    let differences = json(&out)["differences"].as_array().unwrap().clone();
    assert!(!differences.is_empty());
    for d in &differences {
        for key in ["nic", "direction", "old", "new", "region", "example"] {
            assert!(d.get(key).is_some(), "{key} missing from {d}");
        }
        assert_ne!(d["old"]["access"], d["new"]["access"]);
        for (side, env) in [("old", &old), ("new", &new)] {
            let verdict = verify(env, &tags, &d["example"]);
            assert_eq!(verdict["access"], d[side]["access"], "{side} of {d}");
            assert_eq!(
                verdict.get("ruleName"),
                d[side].get("ruleName"),
                "{side} of {d}"
            );
        }
    }
    let (code, out, _) = opennsg(&[
        "diff",
        old.to_str().unwrap(),
        old.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        (code, json(&out)["differences"].clone()),
        (0, serde_json::json!([]))
    );
}

#[test]
fn query_proves_or_gives_a_counterexample_verify_confirms() {
    let env = repo("tests/fixtures/seed-vms-http.json");
    let tags = repo(TAGS);
    let e = env.to_str().unwrap();
    // SSH from the internet is denied at VM1, behind both NSGs...
    let from_internet = |port: &'static str| {
        [
            "--direction",
            "inbound",
            "--protocol",
            "tcp",
            "--remote",
            "Internet",
        ]
        .into_iter()
        .chain(["--local-port", port, "--expect", "deny", "--json"])
        .collect::<Vec<&str>>()
    };
    let ssh = from_internet("22");
    let (code, out, err) = opennsg(&[&["query", e, "--nic", "VM1"][..], &ssh].concat());
    assert_eq!(
        (code, json(&out)["holds"].clone()),
        (0, Value::Bool(true)),
        "{out}{err}"
    );
    // ...but not at every NIC: VM4 has no NSG, so everything reaches it.
    let (code, out, _) = opennsg(&[&["query", e, "--nic", "*"][..], &ssh].concat());
    assert_eq!(code, 1);
    let answer = json(&out);
    assert_eq!(answer["holds"], false);
    assert_eq!(answer["nics"].as_array().unwrap().len(), 4);
    let counterexample = &answer["counterexample"];
    assert!(
        counterexample["nic"]
            .as_str()
            .unwrap()
            .ends_with("/vm4-nic"),
        "{counterexample}"
    );
    let verdict = verify(&env, &tags, counterexample);
    assert_eq!(
        (&verdict["access"], verdict.get("ruleName")),
        (&counterexample["access"], None)
    );
    // HTTP from the internet reaches VM1: a counterexample to "denied", decided by a rule.
    let (code, out, _) =
        opennsg(&[&["query", e, "--nic", "VM1"][..], &from_internet("80")].concat());
    assert_eq!(code, 1);
    let counterexample = &json(&out)["counterexample"];
    let verdict = verify(&env, &tags, counterexample);
    assert_eq!(verdict["access"], "Allow");
    assert_eq!(verdict["access"], counterexample["access"]);
    assert_eq!(verdict["ruleName"], counterexample["ruleName"]);
    assert_eq!(counterexample["destinationPort"], 80);
    let (code, _, err) = opennsg(&[
        "query",
        e,
        "--nic",
        "VM1",
        "--direction",
        "sideways",
        "--expect",
        "deny",
    ]);
    assert_eq!(code, 2, "{err}");
}

/// Debian's Chromium, or `OPENNSG_CHROMIUM`: the matrix test renders the page in a real browser
/// (`.ci/run` installs it; without it the test fails, it does not skip).
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let binary = std::env::var("OPENNSG_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    std::process::Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {binary} ({e}): install Debian's chromium or set OPENNSG_CHROMIUM")
        })
}

/// Pixels of each colour (RGB) in a PNG screenshot.
fn colour_counts(png_file: &Path, colours: &[[u8; 3]]) -> Vec<usize> {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_file).expect("the screenshot exists"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buffer = vec![0; reader.output_buffer_size().expect("fits")];
    let info = reader.next_frame(&mut buffer).expect("a frame");
    let step = info.color_type.samples();
    let mut counts = vec![0; colours.len()];
    for pixel in buffer[..info.buffer_size()].chunks(step) {
        if let Some(i) = colours.iter().position(|c| pixel[..3] == c[..]) {
            counts[i] += 1;
        }
    }
    counts
}

const ALLOW_RGB: [u8; 3] = [0x2e, 0x9e, 0x4f];
const DENY_RGB: [u8; 3] = [0xc9, 0x35, 0x3b];

#[test]
fn matrix_page_in_chromium_shows_the_cells_verify_confirms() {
    let (env, tags) = (repo("tests/fixtures/seed-vms-http.json"), repo(TAGS));
    let dir = repo("target/tmp/matrix-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (html, svg) = (dir.join("matrix.html"), dir.join("matrix.svg"));
    let (code, out, err) = opennsg(&[
        "matrix",
        env.to_str().unwrap(),
        "--service-tags",
        tags.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!((code, err.as_str()), (0, ""));
    let computed = json(&out);
    let (code, _, err) = opennsg(&[
        "matrix",
        env.to_str().unwrap(),
        "--service-tags",
        tags.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!((code, err.as_str()), (0, ""));

    // What the browser shows: a screenshot with allowed and denied squares in it.
    for (page, name) in [(&html, "html"), (&svg, "svg")] {
        let shot = dir.join(format!("{name}.png"));
        let run = chromium(
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1200,700",
                &format!("file://{}", page.display()),
            ],
            &dir.join(format!("profile-{name}")),
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let [allow, deny] = colour_counts(&shot, &[ALLOW_RGB, DENY_RGB])[..] else {
            unreachable!()
        };
        assert!(
            allow > 500 && deny > 100,
            "{name}: {allow} allow and {deny} deny pixels"
        );
    }

    // The page's cells, as the browser parsed them, against the computed matrix and verify.
    let run = chromium(
        &["--dump-dom", &format!("file://{}", html.display())],
        &dir.join("profile-dom"),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dom = scraper::Html::parse_document(&String::from_utf8_lossy(&run.stdout));
    let cell_selector = scraper::Selector::parse("td.cell").unwrap();
    let port_selector = scraper::Selector::parse("span.port").unwrap();
    let endpoints = computed["endpoints"].as_array().unwrap();
    let expected_cells = computed["cells"].as_array().unwrap();
    let shown: Vec<_> = dom.select(&cell_selector).collect();
    assert_eq!(shown.len(), expected_cells.len());
    assert_eq!(
        shown.len(),
        6 * 5 - 2,
        "4 NICs and 2 tags, no tag-to-tag cell"
    );
    let mut verified = 0;
    for (td, expected) in shown.iter().zip(expected_cells) {
        let attr = |name: &str| td.value().attr(name).unwrap_or_default().to_string();
        let name = |key: &str| endpoints[expected[key].as_u64().unwrap() as usize]["name"].clone();
        assert_eq!(attr("data-source"), name("source"));
        assert_eq!(attr("data-destination"), name("destination"));
        assert_eq!(attr("data-access"), expected["access"]);
        assert!(attr("title").contains("→"), "hover text");
        let ports: Vec<_> = td.select(&port_selector).collect();
        assert_eq!(ports.len(), 4);
        for (span, port) in ports.iter().zip(expected["ports"].as_array().unwrap()) {
            let attr = |name: &str| span.value().attr(name).unwrap_or_default();
            assert_eq!(attr("data-port"), port["port"].to_string());
            let access = attr("data-access");
            assert_eq!(access, port["access"]);
            let allowed: Value = serde_json::from_str(attr("data-allowed")).unwrap();
            let denied: Value = serde_json::from_str(attr("data-denied")).unwrap();
            assert_eq!(allowed.as_array().unwrap().is_empty(), access == "deny");
            assert_eq!(denied.is_null(), access == "allow");
            for example in allowed.as_array().unwrap() {
                assert_eq!(verify(&env, &tags, example)["access"], "Allow", "{example}");
                verified += 1;
            }
            if !denied.is_null() {
                assert_eq!(verify(&env, &tags, &denied)["access"], "Deny", "{denied}");
                verified += 1;
            }
        }
    }
    let accesses: Vec<&str> = expected_cells
        .iter()
        .map(|c| c["access"].as_str().unwrap())
        .collect();
    for kind in ["allow", "partial"] {
        assert!(accesses.contains(&kind), "the seed shows {kind} cells");
    }
    assert!(verified > 100, "{verified} examples verified");
}
