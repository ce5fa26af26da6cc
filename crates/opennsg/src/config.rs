//! Configuration files: `/etc/opennsg/{serve,enforce}.toml` (or `--config FILE`) carry what the
//! command line carries. Keys are the command's long options (`listen = "0.0.0.0:8443"`,
//! `bind = ["vm1-nic=vnet0"]`, `tls-self-signed = true`); an option given on the command line wins
//! over the file, and the file over the environment and the defaults.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The commands that read a configuration file.
pub const CONFIGURED: [&str; 2] = ["serve", "enforce"];
/// Where the files are unless `$OPENNSG_CONFIG_DIR` says otherwise.
pub const DEFAULT_DIR: &str = "/etc/opennsg";

/// `args` (the whole command line) with the options of the command's configuration file
/// inserted after the command name, except those the command line gives. `command` is the
/// program's clap definition, which says which keys exist.
pub fn with_config_file(args: Vec<OsString>, command: &clap::Command) -> Result<Vec<OsString>> {
    let Some(name) = args.get(1).and_then(|a| a.to_str()).map(str::to_string) else {
        return Ok(args);
    };
    if !CONFIGURED.contains(&name.as_str()) {
        return Ok(args);
    }
    let given: Vec<String> = args[2..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let path = match explicit_config(&given) {
        Some(path) => path,
        None => {
            let dir = std::env::var_os("OPENNSG_CONFIG_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
            let path = dir.join(format!("{name}.toml"));
            if !path.is_file() {
                return Ok(args);
            }
            path
        }
    };
    let subcommand = command
        .find_subcommand(&name)
        .with_context(|| format!("no command {name}"))?;
    let options = options_of(&path, subcommand)?;
    let from_file = options
        .into_iter()
        .filter(|(key, _)| {
            !given
                .iter()
                .any(|a| a == &format!("--{key}") || a.starts_with(&format!("--{key}=")))
        })
        .flat_map(|(_, args)| args);
    let mut merged: Vec<OsString> = args[..2].to_vec();
    merged.extend(from_file.map(OsString::from));
    merged.extend(args[2..].iter().cloned());
    Ok(merged)
}

/// `--config FILE` or `--config=FILE` on the command line.
fn explicit_config(given: &[String]) -> Option<PathBuf> {
    given
        .iter()
        .enumerate()
        .find_map(|(i, arg)| match arg.strip_prefix("--config") {
            Some("") => given.get(i + 1).map(PathBuf::from),
            Some(rest) => rest.strip_prefix('=').map(PathBuf::from),
            None => None,
        })
}

/// Each key of the file with the command-line arguments it stands for, in the file's order.
fn options_of(path: &Path, command: &clap::Command) -> Result<Vec<(String, Vec<String>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let known: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| l != "config" && l != "help"))
        .collect();
    let mut options = Vec::new();
    for (key, value) in table {
        let Some(arg) = known.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            let keys: Vec<&str> = known.iter().filter_map(|a| a.get_long()).collect();
            bail!(
                "{}: unknown key `{key}` for `opennsg {}` (the keys are its long options: {})",
                path.display(),
                command.get_name(),
                keys.join(", ")
            );
        };
        let flag = format!("--{key}");
        let takes_value = arg.get_action().takes_values();
        let mut args = Vec::new();
        let values = match value {
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        for item in values {
            match (item, takes_value) {
                (toml::Value::Boolean(true), false) => args.push(flag.clone()),
                (toml::Value::Boolean(false), false) => {}
                (toml::Value::String(text), true) => args.extend([flag.clone(), text]),
                (toml::Value::Integer(n), true) => args.extend([flag.clone(), n.to_string()]),
                (toml::Value::Float(x), true) => args.extend([flag.clone(), x.to_string()]),
                (other, _) => bail!(
                    "{}: `{key}` must be {}, not {}",
                    path.display(),
                    if takes_value {
                        "a string or number (or an array of them)"
                    } else {
                        "true or false"
                    },
                    other.type_str()
                ),
            }
        }
        options.push((key, args));
    }
    Ok(options)
}
