//! Configuration files for `serve` and `enforce`: keys are the long options, the command line
//! wins, `$OPENNSG_CONFIG_DIR/{command}.toml` is read by default, and a wrong file is refused with
//! the file and the key named.

mod support;

use std::path::Path;
use std::process::Output;
use support::{opennsg_with, text};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/seed-vms-http.json"
);

fn opennsg(config_dir: &Path, args: &[&str]) -> Output {
    opennsg_with(&[("OPENNSG_CONFIG_DIR", config_dir)], args)
}

/// `enforce --dry-run` prints the transaction without touching the kernel: what it binds shows
/// which options were in force.
#[test]
fn the_file_gives_options_and_the_command_line_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("enforce.toml"),
        "# as a host would keep it\nbind = [\"vm2-nic=cfg0\"]\nallow-absent = true\ndry-run = true\nsubscription-type = \"Msdn\"\n",
    )
    .expect("config written");
    let from_file = opennsg(dir.path(), &["enforce", FIXTURE]);
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let printed = text(&from_file.stdout);
    assert!(printed.contains("\"cfg0\""), "the file's --bind: {printed}");

    let overridden = opennsg(dir.path(), &["enforce", FIXTURE, "--bind", "vm2-nic=cli0"]);
    assert!(overridden.status.success(), "{}", text(&overridden.stderr));
    let printed = text(&overridden.stdout);
    assert!(
        printed.contains("\"cli0\"") && !printed.contains("\"cfg0\""),
        "{printed}"
    );

    // --config names another file; without the file's dry-run, allow-absent is missing too.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "bind = [\"vm2-nic=absent0\"]\n").expect("config written");
    let refused = opennsg(
        dir.path(),
        &[
            "enforce",
            FIXTURE,
            "--config",
            other.to_str().expect("utf-8"),
            "--dry-run",
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("absent0"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn serve_reads_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("serve.toml"), "listen = \"0.0.0.0:1\"\n")
        .expect("config written");
    let refused = opennsg(
        dir.path(),
        &[
            "serve",
            "--data",
            dir.path().join("data").to_str().expect("utf-8"),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("0.0.0.0:1 is not a loopback address"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn a_wrong_file_is_refused_with_the_file_and_the_key() {
    let cases = [
        (
            "bnid = [\"a=b\"]\n",
            "unknown key `bnid` for `opennsg enforce`",
        ),
        (
            "dry-run = \"yes\"\n",
            "`dry-run` must be true or false, not string",
        ),
        ("bind = true\n", "`bind` must be a string or number"),
        ("bind = [\n", "is not valid TOML"),
        ("config = \"x.toml\"\n", "unknown key `config`"),
    ];
    for (content, says) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("enforce.toml"), content).expect("config written");
        let out = opennsg(dir.path(), &["enforce", FIXTURE]);
        assert_eq!(out.status.code(), Some(2), "{content}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.contains("enforce.toml"),
            "{content}: {stderr}"
        );
    }
    let missing = opennsg(
        Path::new("/nonexistent"),
        &["enforce", FIXTURE, "--config", "/nonexistent/x.toml"],
    );
    assert!(
        text(&missing.stderr).contains("reading the configuration file /nonexistent/x.toml"),
        "{}",
        text(&missing.stderr)
    );
}
