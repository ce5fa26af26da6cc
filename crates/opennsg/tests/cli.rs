//! The command line as users meet it: inputs, exit codes, output shapes and error messages.

use assert_cmd::Command;
use serde_json::{json, Value};

const S: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers";

/// One subnet with NSG1 (allows TCP 80 from the internet), one NIC with two IP configurations
/// and a VM that owns it.
fn environment() -> Value {
    json!([
        {"id": format!("{S}/Microsoft.Network/networkSecurityGroups/NSG1"), "type": "Microsoft.Network/networkSecurityGroups",
         "location": "westeurope", "properties": {"securityRules": [
            {"name": "Allow-HTTP", "properties": {"protocol": "TCP", "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
             "destinationAddressPrefix": "*", "destinationPortRange": "80", "access": "Allow", "priority": 200, "direction": "Inbound"}}]}},
        {"id": format!("{S}/Microsoft.Network/virtualNetworks/vnet1"), "type": "Microsoft.Network/virtualNetworks", "location": "westeurope",
         "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [
            {"name": "Subnet1", "properties": {"addressPrefix": "10.0.1.0/24",
             "networkSecurityGroup": {"id": format!("{S}/Microsoft.Network/networkSecurityGroups/NSG1")}}}]}},
        {"id": format!("{S}/Microsoft.Network/networkInterfaces/vm1-nic"), "type": "Microsoft.Network/networkInterfaces", "location": "westeurope",
         "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": {"privateIPAddress": "10.0.1.4", "primary": true,
             "subnet": {"id": format!("{S}/Microsoft.Network/virtualNetworks/vnet1/subnets/Subnet1")}}},
            {"name": "ipconfig2", "properties": {"privateIPAddress": "10.0.1.16/28",
             "subnet": {"id": format!("{S}/Microsoft.Network/virtualNetworks/vnet1/subnets/Subnet1")}}}]}},
        {"id": format!("{S}/Microsoft.Compute/virtualMachines/VM1"), "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
         "properties": {"networkProfile": {"networkInterfaces": [{"id": format!("{S}/Microsoft.Network/networkInterfaces/vm1-nic")}]}}}
    ])
}

fn opennsg(args: &[&str], stdin: &Value) -> (i32, String, String) {
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .args(args)
        .write_stdin(stdin.to_string())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["verify", "-", "--nic", "vm1-nic"];
    args.extend_from_slice(extra);
    opennsg(&args, &environment())
}

#[test]
fn verify_json_is_exactly_azures_shape_and_exit_code_follows_access() {
    let (code, out, _) = verify(&[
        "--direction",
        "inbound",
        "--protocol",
        "tcp",
        "--local",
        "10.0.1.4:80",
        "--remote",
        "203.0.113.9:50000",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"access": "Allow", "ruleName": "securityRules/Allow-HTTP"})
    );

    let (code, out, _) = verify(&[
        "--direction",
        "Inbound",
        "--protocol",
        "udp",
        "--local",
        "10.0.1.4:80",
        "--remote",
        "203.0.113.9:50000",
        "--json",
    ]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"access": "Deny", "ruleName": "defaultSecurityRules/DenyAllInBound"})
    );
}

#[test]
fn nic_can_be_named_by_vm_name_vm_id_or_nic_id() {
    for nic in [
        "VM1",
        "vm1",
        &format!("{S}/Microsoft.Compute/virtualMachines/VM1"),
        &format!("{S}/microsoft.network/networkinterfaces/VM1-NIC"),
    ] {
        let (code, out, err) = opennsg(
            &[
                "verify",
                "-",
                "--nic",
                nic,
                "--direction",
                "outbound",
                "--protocol",
                "tcp",
                "--local",
                "10.0.1.4:5000",
                "--remote",
                "8.8.8.8:443",
                "--json",
            ],
            &environment(),
        );
        assert_eq!(code, 0, "{nic}: {err}");
        assert!(
            out.contains("defaultSecurityRules/AllowInternetOutBound"),
            "{nic}: {out}"
        );
    }
}

#[test]
fn plain_output_names_the_nsg_and_stage_and_explain_lists_rules() {
    let (code, out, _) = verify(&[
        "--direction",
        "inbound",
        "--protocol",
        "tcp",
        "--local",
        "10.0.1.4:22",
        "--remote",
        "203.0.113.9:50000",
        "--explain",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("stage 1: subnet NSG NSG1"), "{out}");
    assert!(out.contains("securityRules/Allow-HTTP"), "{out}");
    assert!(
        out.contains("dport no"),
        "the rule considered shows which field failed: {out}"
    );
    assert!(
        out.trim_end().ends_with(
            "Deny: defaultSecurityRules/DenyAllInBound of network security group NSG1 (subnet NSG)"
        ),
        "{out}"
    );
}

#[test]
fn explain_json_lists_evaluated_groups() {
    let (code, out, _) = verify(&[
        "--direction",
        "inbound",
        "--protocol",
        "tcp",
        "--local",
        "10.0.1.4:80",
        "--remote",
        "203.0.113.9:1",
        "--json",
        "--explain",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let group = &v["evaluatedNetworkSecurityGroups"][0];
    assert_eq!(group["appliedTo"], "subnet");
    assert_eq!(group["matchedRule"]["ruleName"], "securityRules/Allow-HTTP");
    assert_eq!(group["rulesEvaluationResult"].as_array().unwrap().len(), 1);
}

/// A prefix allocation (`10.0.1.16/28` on ipconfig2) makes all its addresses the NIC's.
#[test]
fn local_address_must_belong_to_the_nic() {
    let (code, _, err) = verify(&[
        "--direction",
        "inbound",
        "--protocol",
        "tcp",
        "--local",
        "10.0.1.9:80",
        "--remote",
        "203.0.113.9:1",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("10.0.1.9 is not an address of network interface vm1-nic"),
        "{err}"
    );
    let (code, _, _) = verify(&[
        "--direction",
        "inbound",
        "--protocol",
        "tcp",
        "--local",
        "10.0.1.20:80",
        "--remote",
        "203.0.113.9:1",
    ]);
    assert_eq!(code, 0);
}

#[test]
fn bad_questions_exit_2_with_a_reason() {
    for (args, needle) in [
        (
            vec![
                "--direction",
                "sideways",
                "--protocol",
                "tcp",
                "--local",
                "10.0.1.4:80",
                "--remote",
                "1.2.3.4:1",
            ],
            "not a direction",
        ),
        (
            vec![
                "--direction",
                "inbound",
                "--protocol",
                "gre",
                "--local",
                "10.0.1.4:80",
                "--remote",
                "1.2.3.4:1",
            ],
            "not a protocol",
        ),
        (
            vec![
                "--direction",
                "inbound",
                "--protocol",
                "tcp",
                "--local",
                "10.0.1.4",
                "--remote",
                "1.2.3.4:1",
            ],
            "needs a port",
        ),
        (
            vec![
                "--direction",
                "inbound",
                "--protocol",
                "icmp",
                "--local",
                "10.0.1.4:80",
                "--remote",
                "1.2.3.4",
            ],
            "has no ports",
        ),
        (
            vec![
                "--direction",
                "inbound",
                "--protocol",
                "tcp",
                "--local",
                "10.0.1.4:80",
                "--remote",
                "1.2.3:1",
            ],
            "not an address",
        ),
    ] {
        let (code, _, err) = verify(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let (code, _, err) = opennsg(
        &[
            "verify",
            "-",
            "--nic",
            "nope",
            "--direction",
            "inbound",
            "--protocol",
            "tcp",
            "--local",
            "10.0.1.4:80",
            "--remote",
            "1.2.3.4:1",
        ],
        &environment(),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no network interface or virtual machine named nope"),
        "{err}"
    );
}

#[test]
fn check_reports_code_resource_and_field_and_exits_2() {
    let mut env = environment();
    env[0]["properties"]["securityRules"][0]["properties"]["destinationPortRange"] =
        json!("636, 389");
    let (code, out, _) = opennsg(&["check", "-", "--json"], &env);
    assert_eq!(code, 2);
    let v: Value = serde_json::from_str(&out).unwrap();
    let e = &v["errors"][0];
    assert_eq!(e["code"], "SecurityRuleInvalidPortRange");
    assert_eq!(
        e["resource"],
        format!("{S}/Microsoft.Network/networkSecurityGroups/NSG1")
    );
    assert_eq!(e["rule"], "Allow-HTTP");
    assert_eq!(
        e["field"],
        "properties.securityRules[0].properties.destinationPortRange"
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("Value provided: 636, 389"));

    let (code, out, _) = opennsg(&["check", "-"], &env);
    assert_eq!(code, 2);
    assert!(out.starts_with("SecurityRuleInvalidPortRange: "), "{out}");

    let (code, out, _) = opennsg(&["check", "-"], &environment());
    assert_eq!((code, out.starts_with("valid")), (0, true));
}

#[test]
fn verify_on_an_invalid_environment_lists_the_errors() {
    let mut env = environment();
    env[0]["properties"]["securityRules"][0]["properties"]["priority"] = json!(50);
    let (code, _, err) = verify_with(&env);
    assert_eq!(code, 2);
    assert!(err.contains("SecurityRuleInvalidPriority"), "{err}");
    assert!(
        err.contains("Value provided: 50 Allowed range 100-4096"),
        "{err}"
    );
}

fn verify_with(env: &Value) -> (i32, String, String) {
    opennsg(
        &[
            "verify",
            "-",
            "--nic",
            "vm1-nic",
            "--direction",
            "inbound",
            "--protocol",
            "tcp",
            "--local",
            "10.0.1.4:80",
            "--remote",
            "1.2.3.4:1",
        ],
        env,
    )
}

#[test]
fn unreadable_inputs_exit_2() {
    let (code, _, err) = opennsg(&["check", "-"], &json!("not resources"));
    assert_eq!(code, 2, "{err}");
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .args(["check", "-"])
        .write_stdin("{ broken")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .args(["check", "/nonexistent/env.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/env.json"));
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .args(["check", "-", "--service-tags", "-"])
        .write_stdin("[]")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unknown_tag_says_how_to_load_a_tag_file() {
    let mut env = environment();
    env[0]["properties"]["securityRules"][0]["properties"]["sourceAddressPrefix"] =
        json!("Storage.WestEurope");
    let (code, out, _) = opennsg(&["check", "-"], &env);
    assert_eq!(code, 2);
    assert!(out.contains("SecurityRuleInvalidAddressPrefix"), "{out}");
    assert!(
        out.contains("Storage.WestEurope") && out.contains("--service-tags"),
        "{out}"
    );
}

#[test]
fn effective_json_has_azures_shape() {
    let (code, out, _) = opennsg(
        &["effective", "-", "--nic", "vm1-nic", "--json"],
        &environment(),
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let group = &v["value"][0];
    assert_eq!(
        group["networkSecurityGroup"]["id"],
        format!("{S}/Microsoft.Network/networkSecurityGroups/NSG1")
    );
    assert_eq!(
        group["association"]["subnet"]["id"],
        format!("{S}/Microsoft.Network/virtualNetworks/vnet1/subnets/Subnet1")
    );
    let rules = group["effectiveSecurityRules"].as_array().unwrap();
    assert_eq!(rules.len(), 7, "one custom rule and six defaults");
    let custom = &rules[0];
    assert_eq!(custom["name"], "securityRules/Allow-HTTP");
    assert_eq!(custom["protocol"], "Tcp");
    assert_eq!(custom["sourcePortRange"], "0-65535");
    assert_eq!(custom["destinationPortRange"], "80-80");
    assert_eq!(custom["destinationAddressPrefix"], "0.0.0.0/0");
    assert_eq!(custom["sourceAddressPrefix"], "Internet");
    let internet = custom["expandedSourceAddressPrefix"].as_array().unwrap();
    assert!(
        internet.contains(&json!("1.0.0.0/8"))
            && !internet
                .iter()
                .any(|p| p.as_str().unwrap().starts_with("10."))
    );
    let deny = rules
        .iter()
        .find(|r| r["name"] == "defaultSecurityRules/DenyAllOutBound")
        .unwrap();
    assert_eq!(deny["protocol"], "All");
    assert_eq!(deny["priority"], 65500);
    let tag_map = &group["tagMap"];
    assert_eq!(
        tag_map["VirtualNetwork"],
        json!(["10.0.0.0/16", "168.63.129.16/32"])
    );
}

#[test]
fn several_files_merge_and_cli_flattened_documents_are_read() {
    let dir = std::env::temp_dir().join(format!("opennsg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = environment();
    let (nsg, rest) = (env[0].clone(), json!(env.as_array().unwrap()[1..].to_vec()));
    // The Azure CLI prints properties flattened into the resource.
    let mut flat = nsg.clone();
    let props = flat.as_object_mut().unwrap().remove("properties").unwrap();
    for (k, v) in props.as_object().unwrap() {
        flat[k] = v.clone();
    }
    std::fs::write(dir.join("nsg.json"), flat.to_string()).unwrap();
    std::fs::write(dir.join("rest.json"), json!({"value": rest}).to_string()).unwrap();
    let out = Command::cargo_bin("opennsg")
        .unwrap()
        .args([
            "verify",
            dir.join("nsg.json").to_str().unwrap(),
            dir.join("rest.json").to_str().unwrap(),
        ])
        .args([
            "--nic",
            "vm1-nic",
            "--direction",
            "inbound",
            "--protocol",
            "tcp",
            "--local",
            "10.0.1.4:80",
            "--remote",
            "203.0.113.9:1",
            "--json",
        ])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("securityRules/Allow-HTTP"));
}

/// `opennsg bench --workload classbench --classbench ARGS…`.
fn bench_classbench(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::cargo_bin("opennsg")
        .unwrap()
        .args(["bench", "--workload", "classbench", "--classbench"])
        .args(args)
        .output()
        .unwrap()
}

/// [`bench_classbench`], which must exit 0: its stdout.
fn bench_classbench_succeeds(args: &[&std::ffi::OsStr]) -> String {
    let out = bench_classbench(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `opennsg bench --classbench FILE` reads the ClassBench filter format (a generated set here:
/// the public files are not redistributable) and checks the classifier against the naive scan.
#[test]
fn bench_accepts_classbench_files() {
    let rules = classbench::generate(classbench::Profile::Firewall, 200, 3);
    let path = std::env::temp_dir().join(format!("opennsg-classbench-{}.txt", std::process::id()));
    std::fs::write(&path, classbench::to_classbench(&rules)).unwrap();
    let stdout = bench_classbench_succeeds(&[path.as_os_str()]);
    std::fs::remove_file(&path).unwrap();
    assert!(
        stdout.contains("(200 rules)") && stdout.contains("disagreements 0"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the file is measured: {stdout}"
    );

    let bad =
        std::env::temp_dir().join(format!("opennsg-classbench-bad-{}.txt", std::process::id()));
    std::fs::write(&bad, "@1.2.3.4/32 5.6.7.8/32 0 : 65535 80 : 70 0x06/0xFF\n").unwrap();
    let out = bench_classbench(&[bad.as_os_str()]);
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `opennsg bench --classbench RULES --trace FILE` looks up a trace_generator-format trace and
/// prints the checksum of the matched rules: the naive scan's sum of 1-based first matches.
#[test]
fn bench_looks_up_a_classbench_trace_and_prints_the_checksum() {
    let rules = classbench::generate(classbench::Profile::Acl, 300, 4);
    let headers = classbench::trace(&rules, 500, 8);
    let dir = std::env::temp_dir().join(format!("opennsg-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rules_file, trace_file) = (dir.join("rules"), dir.join("trace"));
    std::fs::write(&rules_file, classbench::to_classbench(&rules)).unwrap();
    std::fs::write(&trace_file, classbench::to_trace(&headers, &rules)).unwrap();
    let stdout = bench_classbench_succeeds(&[
        rules_file.as_os_str(),
        "--trace".as_ref(),
        trace_file.as_os_str(),
    ]);
    std::fs::remove_dir_all(&dir).unwrap();
    let expected: u64 = headers
        .iter()
        .map(|h| classbench::first_match(&rules, h).map_or(0, |i| i as u64 + 1))
        .sum();
    assert!(
        stdout.contains("(500 headers)")
            && stdout.contains(&format!("checksum of matched rules {expected}\n")),
        "{stdout}"
    );
}

/// `enforce --dry-run` needs no root: it prints the nft transaction. A NIC's addresses, prefixes
/// included, are what its interface may use.
#[test]
fn enforce_dry_run_prints_the_nft_transaction() {
    let (code, stdout, stderr) = opennsg(
        &[
            "enforce",
            "-",
            "--bind",
            "vm1-nic=eth9",
            "--allow-absent",
            "--dry-run",
        ],
        &environment(),
    );
    assert_eq!(code, 0, "{stderr}");
    let batch: Value = serde_json::from_str(&stdout).expect("nft JSON");
    let commands = batch["nftables"].as_array().expect("commands");
    assert_eq!(
        commands[0],
        json!({"add": {"table": {"family": "inet", "name": "opennsg"}}})
    );
    let rule = |chain: &str, comment: &str| {
        commands
            .iter()
            .find(|c| c["add"]["rule"]["chain"] == chain && c["add"]["rule"]["comment"] == comment)
            .unwrap_or_else(|| panic!("no rule {comment} in {chain}"))
            .clone()
    };
    let spoofing = rule("vm1-nic-in", "address is not the NIC's");
    assert_eq!(
        spoofing["add"]["rule"]["expr"][0]["match"]["right"],
        json!({"set": ["10.0.1.4", {"prefix": {"addr": "10.0.1.16", "len": 28}}]})
    );
    rule(
        "vm1-nic-in-subnet",
        "NSG1/securityRules/Allow-HTTP 200 Allow",
    );
    rule(
        "forward",
        "flow records: return traffic and existing connections",
    );

    let (code, _, stderr) = opennsg(
        &["enforce", "-", "--bind", "no-such-nic=eth9", "--dry-run"],
        &environment(),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("--bind no-such-nic=eth9"), "{stderr}");
    let (code, _, stderr) = opennsg(&["enforce", "-", "--bind", "vm1-nic"], &environment());
    assert_eq!(code, 2);
    assert!(stderr.contains("NIC=IFNAME"), "{stderr}");
}

#[test]
fn serve_takes_a_public_url_without_a_path() {
    let data = tempfile::tempdir().unwrap();
    for bad in [
        "ftp://nsg.example",
        "https://",
        "https://nsg.example/api",
        "nsg.example",
    ] {
        let (code, _, stderr) = opennsg(
            &[
                "serve",
                "--public-url",
                bad,
                "--data",
                data.path().to_str().unwrap(),
            ],
            &Value::Null,
        );
        assert_eq!(code, 2, "bad input: {bad}: {stderr}");
        assert!(stderr.contains("--public-url"), "{bad}: {stderr}");
    }
    assert!(
        std::fs::read_dir(data.path()).unwrap().next().is_none(),
        "nothing is written before the arguments are checked"
    );
}

/// Completions and the manual page come from the same clap definitions as the parser.
#[test]
fn completions_and_the_manual_page_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, script, stderr) = opennsg(&["completions", shell], &Value::Null);
        assert_eq!(code, 0, "{shell}: {stderr}");
        for command in ["verify", "serve", "enforce", "bind-by-mac"] {
            assert!(script.contains(command), "{shell} completes {command}");
        }
    }
    let (code, page, stderr) = opennsg(&["man"], &Value::Null);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH opennsg"),
        "{}",
        &page[..page.len().min(200)]
    );
    for command in ["verify", "serve", "enforce"] {
        assert!(page.contains(command), "the manual names {command}");
    }
}

/// `opennsg matrix … | head -1` panicked with "failed printing to stdout: Broken pipe": a report
/// writing into a closed pipe must end as Unix tools do (SIGPIPE), without a panic.
#[test]
fn report_into_a_closed_pipe_ends_without_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/seed-vms-http.json"
    );
    // Enough output that the pipe closes while it is still writing.
    let ports: Vec<String> = (1..=50).map(|p| p.to_string()).collect();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_opennsg"))
        .args(["matrix", fixture, "--json", "--ports", &ports.join(",")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("opennsg runs");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("one line");
    // The reader is dropped here: the pipe is closed.
    let output = child.wait_with_output().expect("opennsg ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!first.is_empty());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "{:?} {stderr}",
        output.status
    );
}
