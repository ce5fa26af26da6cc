//! The systemd units in `dist/`: `systemd-analyze verify` accepts them as shipped (with this
//! build's binary in place of `/usr/local/bin/opennsg`) without a warning about them, they carry
//! the settings they promise, and every flag they pass is one the binary has.
//!
//! Needs `systemd-analyze` (Debian package `systemd`; `.ci/run` installs it): without it the
//! test fails, it never skips.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `cargo install --locked --path crates/opennsg --root /usr/local` puts the binary, as
/// the units name it.
const INSTALLED: &str = "/usr/local/bin/opennsg";

/// The units `dist/` ships; the test fails on one more or one fewer.
const UNITS: [&str; 2] = ["opennsg-enforce.service", "opennsg-serve.service"];

const SERVE: &str = "opennsg-serve.service";
const ENFORCE: &str = "opennsg-enforce.service";

/// What a unit must say about a key (in a section).
enum Want {
    /// Some assignment of the key is exactly this value (`""` for an empty assignment).
    Is(&'static str),
    /// Some assignment of the key contains this text.
    Contains(&'static str),
    /// No assignment of the key contains this text.
    Lacks(&'static str),
    /// The key is not set at all.
    Absent,
}
use Want::*;

/// The properties each unit is shipped for: (unit, section, key, what it must say).
const REQUIRED: &[(&str, &str, &str, Want)] = &[
    // opennsg serve: its own user and state directory, TLS beyond loopback, hardened.
    (
        SERVE,
        "Service",
        "ExecStart",
        Contains("/usr/local/bin/opennsg serve "),
    ),
    (
        SERVE,
        "Service",
        "ExecStart",
        Contains("--data /var/lib/opennsg"),
    ),
    (
        SERVE,
        "Service",
        "ExecStart",
        Contains("--listen 0.0.0.0:8443"),
    ),
    (SERVE, "Service", "ExecStart", Contains("--tls-self-signed")),
    (SERVE, "Service", "ExecStart", Lacks("--insecure-http")),
    (SERVE, "Service", "ExecStart", Lacks("--config")),
    (SERVE, "Service", "DynamicUser", Is("yes")),
    (SERVE, "Service", "User", Is("opennsg")),
    (SERVE, "Service", "StateDirectory", Is("opennsg")),
    (SERVE, "Service", "Restart", Is("on-failure")),
    (SERVE, "Service", "NoNewPrivileges", Is("yes")),
    (SERVE, "Service", "ProtectSystem", Is("strict")),
    (SERVE, "Service", "ProtectHome", Is("yes")),
    (SERVE, "Service", "PrivateTmp", Is("yes")),
    (SERVE, "Service", "PrivateDevices", Is("yes")),
    (SERVE, "Service", "CapabilityBoundingSet", Is("")),
    (SERVE, "Service", "AmbientCapabilities", Is("")),
    (
        SERVE,
        "Service",
        "RestrictAddressFamilies",
        Is("AF_INET AF_INET6 AF_UNIX"),
    ),
    (SERVE, "Service", "SystemCallFilter", Is("@system-service")),
    (SERVE, "Service", "Environment", Lacks("XDG_DATA_HOME")),
    (SERVE, "Install", "WantedBy", Is("multi-user.target")),
    // opennsg enforce --watch: CAP_NET_ADMIN only (ambient, for nft and conntrack), netlink,
    // restarted on failure, and nothing removed on stop.
    (ENFORCE, "Unit", "After", Contains("network-online.target")),
    (ENFORCE, "Unit", "Wants", Contains("network-online.target")),
    (
        ENFORCE,
        "Service",
        "ExecStart",
        Contains("/usr/local/bin/opennsg enforce --watch "),
    ),
    (ENFORCE, "Service", "ExecStart", Lacks("--remove")),
    (ENFORCE, "Service", "ExecStart", Lacks("--config")),
    (ENFORCE, "Service", "ExecStop", Absent),
    (ENFORCE, "Service", "ExecStopPost", Absent),
    (ENFORCE, "Service", "Restart", Is("on-failure")),
    (ENFORCE, "Service", "RestartSec", Is("5s")),
    (
        ENFORCE,
        "Service",
        "CapabilityBoundingSet",
        Is("CAP_NET_ADMIN"),
    ),
    (
        ENFORCE,
        "Service",
        "AmbientCapabilities",
        Is("CAP_NET_ADMIN"),
    ),
    (
        ENFORCE,
        "Service",
        "RestrictAddressFamilies",
        Is("AF_INET AF_INET6 AF_UNIX AF_NETLINK"),
    ),
    (ENFORCE, "Service", "PrivateUsers", Absent),
    (ENFORCE, "Service", "PrivateNetwork", Absent),
    (
        ENFORCE,
        "Service",
        "Environment",
        Is("XDG_DATA_HOME=/var/lib"),
    ),
    (
        ENFORCE,
        "Service",
        "EnvironmentFile",
        Is("-/etc/opennsg/enforce.env"),
    ),
    (ENFORCE, "Service", "DynamicUser", Is("yes")),
    // The same user as serve: two units with one StateDirectory= must not differ in owner.
    (ENFORCE, "Service", "User", Is("opennsg")),
    (ENFORCE, "Service", "StateDirectory", Is("opennsg")),
    (ENFORCE, "Service", "NoNewPrivileges", Is("yes")),
    (ENFORCE, "Service", "ProtectSystem", Is("strict")),
    (ENFORCE, "Service", "ProtectHome", Is("yes")),
    (ENFORCE, "Service", "PrivateTmp", Is("yes")),
    (ENFORCE, "Service", "PrivateDevices", Is("yes")),
    (
        ENFORCE,
        "Service",
        "SystemCallFilter",
        Is("@system-service"),
    ),
    (ENFORCE, "Install", "WantedBy", Is("multi-user.target")),
];

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

fn read_unit(name: &str) -> String {
    let path = dist().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// One assignment of a unit file.
struct Setting {
    section: String,
    key: String,
    value: String,
}

/// The assignments of a unit file, in order: comments and blank lines dropped, continuation
/// lines (ending in `\`) joined.
fn settings(unit: &str, text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + line;
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| {
            panic!(
                "{unit}:{}: neither a section nor KEY=VALUE: {line}",
                number + 1
            )
        });
        assert!(
            !section.is_empty(),
            "{unit}:{}: a setting before any section",
            number + 1
        );
        out.push(Setting {
            section: section.clone(),
            key: key.trim().to_string(),
            value: value.trim().to_string(),
        });
    }
    out
}

fn values<'a>(settings: &'a [Setting], section: &str, key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|s| s.section == section && s.key == key)
        .map(|s| s.value.as_str())
        .collect()
}

#[test]
fn dist_ships_exactly_the_units_it_documents() {
    let mut found: Vec<String> = std::fs::read_dir(dist())
        .expect("reading dist/")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".service"))
        .collect();
    found.sort();
    assert_eq!(
        found, UNITS,
        "the units in dist/ (update UNITS and REQUIRED with them)"
    );
    let readme = std::fs::read_to_string(dist().join("README.md")).expect("reading dist/README.md");
    for unit in UNITS {
        assert!(
            readme.contains(unit),
            "dist/README.md does not mention {unit}"
        );
    }
}

#[test]
fn units_carry_the_required_settings() {
    let mut failures = Vec::new();
    for (unit, section, key, want) in REQUIRED {
        let text = read_unit(unit);
        let settings = settings(unit, &text);
        let got = values(&settings, section, key);
        let ok = match want {
            Is(value) => got.contains(value),
            Contains(part) => got.iter().any(|v| v.contains(part)),
            Lacks(part) => !got.iter().any(|v| v.contains(part)),
            Absent => got.is_empty(),
        };
        if !ok {
            let wanted = match want {
                Is(value) => format!("{key}={value}"),
                Contains(part) => format!("{key}=…{part}…"),
                Lacks(part) => format!("no {key}= containing {part:?}"),
                Absent => format!("no {key}="),
            };
            failures.push(format!("{unit} [{section}]: wanted {wanted}, has {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `--flags` a unit passes: in `ExecStart=` and in the `Environment=` values ExecStart
/// expands.
fn passed_flags(settings: &[Setting]) -> BTreeSet<String> {
    let mut words = Vec::new();
    for s in settings.iter().filter(|s| s.section == "Service") {
        match s.key.as_str() {
            "ExecStart" => words.extend(s.value.split_whitespace().map(str::to_string)),
            "Environment" => {
                let assignment = s.value.trim_matches('"');
                if let Some((_, value)) = assignment.split_once('=') {
                    words.extend(value.split_whitespace().map(str::to_string));
                }
            }
            _ => {}
        }
    }
    words
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap().to_string())
        .collect()
}

/// The flags `opennsg SUBCOMMAND --help` lists.
fn known_flags(subcommand: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_opennsg"))
        .args([subcommand, "--help"])
        .output()
        .expect("running opennsg --help");
    assert!(out.status.success(), "opennsg {subcommand} --help failed");
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.split('=')
                .next()
                .unwrap()
                .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

#[test]
fn units_pass_only_flags_the_binary_has() {
    for unit in UNITS {
        let text = read_unit(unit);
        let settings = settings(unit, &text);
        let exec = values(&settings, "Service", "ExecStart");
        assert_eq!(exec.len(), 1, "{unit}: one ExecStart=, has {exec:?}");
        let mut words = exec[0].split_whitespace();
        assert_eq!(
            words.next(),
            Some(INSTALLED),
            "{unit}: ExecStart= runs {INSTALLED}"
        );
        let subcommand = words.next().expect("a subcommand");
        let known = known_flags(subcommand);
        let unknown: Vec<_> = passed_flags(&settings)
            .into_iter()
            .filter(|flag| !known.contains(flag))
            .collect();
        assert!(
            unknown.is_empty(),
            "{unit}: `opennsg {subcommand}` has no {unknown:?} (it has {known:?})"
        );
    }
}

/// Quotes `path` for an ExecStart= line when it needs it, and escapes `%` (a specifier).
fn exec_path(path: &str) -> String {
    let path = path.replace('%', "%%");
    if path.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\' || c == '$') {
        panic!("the test binary's path {path:?} cannot go on an ExecStart= line as it is");
    }
    path
}

#[test]
fn systemd_analyze_verifies_the_units_without_a_warning() {
    let binary = exec_path(env!("CARGO_BIN_EXE_opennsg"));
    let dir = tempfile::tempdir().unwrap();
    // Every unit in one directory, so that one naming another (enforce is ordered after serve)
    // finds the copy, not an installed one.
    for unit in UNITS {
        let text = read_unit(unit);
        assert!(text.contains(INSTALLED), "{unit} does not run {INSTALLED}");
        std::fs::write(dir.path().join(unit), text.replace(INSTALLED, &binary)).unwrap();
    }
    for unit in UNITS {
        let path = dir.path().join(unit);
        let out = match Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "systemd-analyze is not installed: install the Debian package `systemd` \
                 (apt-get install systemd; .ci/run installs it) to verify the units in dist/"
            ),
            Err(e) => panic!("running systemd-analyze verify: {e}"),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let dir_text = dir.path().to_string_lossy();
        // systemd-analyze exits 0 on unknown keys and unparsable values, only saying so: a
        // line naming the unit or its file is a finding. Lines about other units are shown.
        let about_unit: Vec<&str> = stderr
            .lines()
            .filter(|line| line.contains(unit) || line.contains(dir_text.as_ref()))
            .collect();
        let others: Vec<&str> = stderr
            .lines()
            .filter(|line| !about_unit.contains(line) && !line.trim().is_empty())
            .collect();
        if !others.is_empty() {
            eprintln!(
                "systemd-analyze verify {unit}, about other units:\n{}",
                others.join("\n")
            );
        }
        assert!(
            out.status.success() && about_unit.is_empty(),
            "systemd-analyze verify {unit} ({}), which also loads the other units of dist/ it \
             names:\n{stderr}",
            out.status
        );
    }
}
