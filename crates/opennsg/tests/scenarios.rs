//! One harness, every implementation (ripgrep's pattern): each scenario in `tests/scenarios/`
//! runs through the library's reference evaluator and through the `opennsg` binary
//! (`verify --json`, `check --json`). A new evaluator joins by implementing [`Implementation`].

use nsg_model::ValidationError;
use nsg_policy::compiled::CompiledPolicy;
use nsg_policy::{Resolver, Settings, SubscriptionType};
use opennsg::{inputs, query};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Scenario {
    description: String,
    environment: Vec<String>,
    #[serde(default)]
    service_tags: Vec<String>,
    #[serde(default)]
    subscription_type: Option<String>,
    #[serde(default)]
    flows: Vec<FlowCase>,
    #[serde(default)]
    errors: Vec<ExpectedError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowCase {
    name: String,
    nic: String,
    direction: String,
    protocol: String,
    local: String,
    remote: String,
    expect: Expected,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expected {
    access: String,
    #[serde(default)]
    rule_name: Option<String>,
    #[serde(default)]
    nsg: Option<String>,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct ExpectedError {
    code: String,
    resource: String,
    rule: Option<String>,
    field: String,
}

/// A scenario with its paths made absolute.
struct Loaded {
    path: PathBuf,
    scenario: Scenario,
    environment: Vec<PathBuf>,
    service_tags: Vec<PathBuf>,
}

impl Loaded {
    fn subscription_type(&self) -> SubscriptionType {
        self.scenario
            .subscription_type
            .as_deref()
            .map(|s| s.parse().expect("scenario subscriptionType"))
            .unwrap_or_default()
    }
}

/// What an implementation says about a flow. `nsg` is `None` when the implementation cannot
/// tell which NSG decided (IP flow verify's JSON does not say).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    access: String,
    rule_name: Option<String>,
    nsg: Option<Option<String>>,
}

/// What an implementation says about a whole scenario.
struct Report {
    errors: Vec<ExpectedError>,
    flows: Vec<Result<Outcome, String>>,
}

trait Implementation {
    fn name(&self) -> &'static str;
    fn run(&self, scenario: &Loaded) -> Result<Report, String>;
}

fn text<E: std::fmt::Display>(e: E) -> String {
    format!("{e:#}")
}

/// The library: `nsg_model::validate`, then `nsg_policy::decide` (the reference evaluator) or
/// the compiled classifier.
struct Library {
    compiled: bool,
}

impl Library {
    fn verify(
        &self,
        model: &nsg_model::Model,
        resolver: &mut Resolver<'_>,
        settings: &Settings,
        case: &FlowCase,
    ) -> Result<Outcome, String> {
        let nic = query::find_nic(model, &case.nic).map_err(text)?;
        let flow = query::flow(
            query::parse_direction(&case.direction).map_err(text)?,
            query::parse_protocol(&case.protocol).map_err(text)?,
            query::parse_endpoint(&case.local).map_err(text)?,
            query::parse_endpoint(&case.remote).map_err(text)?,
        )
        .map_err(text)?;
        let policy = resolver.resolve(nic).map_err(text)?;
        if !policy.owns(flow.local.ip) {
            return Err(format!(
                "local {} is not an address of {}",
                flow.local.ip, case.nic
            ));
        }
        let decision = if self.compiled {
            CompiledPolicy::build(policy, &resolver.sets, *settings).decide(&flow)
        } else {
            nsg_policy::decide(&policy, &resolver.sets, settings, &flow)
        };
        let nsg = match &decision.decider {
            nsg_policy::Decider::Rule(v) => Some(v.nsg.name().to_string()),
            _ => None,
        };
        Ok(Outcome {
            access: decision.access.as_str().to_string(),
            rule_name: decision.rule_name(),
            nsg: Some(nsg),
        })
    }
}

impl Implementation for Library {
    fn name(&self) -> &'static str {
        if self.compiled {
            "compiled classifier"
        } else {
            "reference evaluator"
        }
    }

    fn run(&self, scenario: &Loaded) -> Result<Report, String> {
        let env = inputs::load_environment(&scenario.environment).map_err(text)?;
        let catalog = inputs::load_service_tags(&scenario.service_tags).map_err(text)?;
        let model = match inputs::validate(&env, &catalog) {
            Ok(model) => model,
            Err(invalid) => {
                return Ok(Report {
                    errors: invalid.0.iter().map(expected_from).collect(),
                    flows: Vec::new(),
                })
            }
        };
        let settings = Settings {
            subscription_type: scenario.subscription_type(),
        };
        let mut resolver = Resolver::new(&model, &catalog, settings);
        let flows = scenario
            .scenario
            .flows
            .iter()
            .map(|case| self.verify(&model, &mut resolver, &settings, case))
            .collect();
        Ok(Report {
            errors: Vec::new(),
            flows,
        })
    }
}

fn expected_from(e: &ValidationError) -> ExpectedError {
    ExpectedError {
        code: e.code.as_str().to_string(),
        resource: e.resource.clone(),
        rule: e.rule.clone(),
        field: e.field.clone(),
    }
}

/// The `opennsg` binary, as a user runs it.
struct Binary;

impl Binary {
    fn command(subcommand: &str, scenario: &Loaded) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opennsg"));
        cmd.arg(subcommand).args(&scenario.environment);
        for tags in &scenario.service_tags {
            cmd.arg("--service-tags").arg(tags);
        }
        cmd.args(["--subscription-type", scenario.subscription_type().as_str()]);
        cmd
    }

    fn check(scenario: &Loaded) -> Result<Vec<ExpectedError>, String> {
        let out = Binary::command("check", scenario)
            .arg("--json")
            .output()
            .map_err(text)?;
        let value: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {:?}", String::from_utf8_lossy(&out.stderr)))?;
        let errors: Vec<ExpectedError> = value["errors"]
            .as_array()
            .ok_or("no errors array")?
            .iter()
            .map(|e| ExpectedError {
                code: e["code"].as_str().unwrap_or_default().into(),
                resource: e["resource"].as_str().unwrap_or_default().into(),
                rule: e["rule"].as_str().map(str::to_string),
                field: e["field"].as_str().unwrap_or_default().into(),
            })
            .collect();
        let expected_exit = if errors.is_empty() { 0 } else { 2 };
        if out.status.code() != Some(expected_exit) {
            return Err(format!(
                "{} errors but exit code {:?}",
                errors.len(),
                out.status.code()
            ));
        }
        Ok(errors)
    }

    fn verify(scenario: &Loaded, case: &FlowCase) -> Result<Outcome, String> {
        let out = Binary::command("verify", scenario)
            .args([
                "--nic",
                &case.nic,
                "--direction",
                &case.direction,
                "--protocol",
                &case.protocol,
            ])
            .args(["--local", &case.local, "--remote", &case.remote, "--json"])
            .output()
            .map_err(text)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value: Value = serde_json::from_str(&stdout).map_err(|_| {
            format!(
                "exit {:?}, stdout {stdout:?}, stderr {:?}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let access = value["access"].as_str().unwrap_or_default().to_string();
        let expected_exit = if access == "Allow" { 0 } else { 1 };
        if out.status.code() != Some(expected_exit) {
            return Err(format!("{access} but exit code {:?}", out.status.code()));
        }
        Ok(Outcome {
            access,
            rule_name: value
                .get("ruleName")
                .and_then(Value::as_str)
                .map(str::to_string),
            nsg: None,
        })
    }
}

impl Implementation for Binary {
    fn name(&self) -> &'static str {
        "opennsg binary"
    }

    fn run(&self, scenario: &Loaded) -> Result<Report, String> {
        Ok(Report {
            errors: Binary::check(scenario)?,
            flows: scenario
                .scenario
                .flows
                .iter()
                .map(|case| Binary::verify(scenario, case))
                .collect(),
        })
    }
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios")
}

fn load_scenarios() -> Vec<Loaded> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("tests/scenarios exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let scenario: Scenario =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let base = path.parent().unwrap().to_path_buf();
            Loaded {
                environment: scenario.environment.iter().map(|p| base.join(p)).collect(),
                service_tags: scenario.service_tags.iter().map(|p| base.join(p)).collect(),
                path,
                scenario,
            }
        })
        .collect()
}

fn normalise(mut errors: Vec<ExpectedError>) -> Vec<ExpectedError> {
    for e in &mut errors {
        e.resource = e.resource.to_ascii_lowercase();
    }
    errors.sort();
    errors
}

fn run_all(implementation: &dyn Implementation) {
    let scenarios = load_scenarios();
    assert!(
        scenarios.len() >= 10,
        "expected the scenario suite, found {}",
        scenarios.len()
    );
    let mut failures = Vec::new();
    let mut flows = 0;
    for s in &scenarios {
        let file = s.path.file_name().unwrap().to_string_lossy();
        assert!(
            s.scenario.flows.is_empty() != s.scenario.errors.is_empty(),
            "{file}: a scenario has flows or errors, not both nor neither ({})",
            s.scenario.description
        );
        let report = match implementation.run(s) {
            Ok(report) => report,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let (actual, expected) = (
            normalise(report.errors),
            normalise(s.scenario.errors.clone()),
        );
        if actual != expected {
            failures.push(format!(
                "{file}: validation errors differ\n  expected {expected:?}\n  actual   {actual:?}"
            ));
        }
        for (case, outcome) in s.scenario.flows.iter().zip(report.flows) {
            flows += 1;
            let expected = &case.expect;
            let lower = |n: &Option<String>| n.as_deref().map(str::to_ascii_lowercase);
            match outcome {
                Err(e) => failures.push(format!("{file}: {}: {e}", case.name)),
                Ok(o)
                    if o.access != expected.access
                        || o.rule_name != expected.rule_name
                        || o.nsg
                            .as_ref()
                            .is_some_and(|nsg| lower(nsg) != lower(&expected.nsg)) =>
                {
                    failures.push(format!(
                        "{file}: {}: expected {expected:?}, got {o:?}",
                        case.name
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    assert!(flows > 0, "no flows in the scenarios");
    assert!(
        failures.is_empty(),
        "{}: {} scenario cases failed:\n{}",
        implementation.name(),
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn scenarios_through_the_reference_evaluator() {
    run_all(&Library { compiled: false });
}

#[test]
fn scenarios_through_the_compiled_classifier() {
    run_all(&Library { compiled: true });
}

#[test]
fn scenarios_through_the_binary() {
    run_all(&Binary);
}
