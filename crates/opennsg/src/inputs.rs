//! Reading environments and service tag files from disk or standard input.

use anyhow::{bail, Context, Result};
use nsg_model::{Environment, Model, ValidationError};
use nsg_tags::Catalog;
use std::io::Read;
use std::path::Path;

/// Reads `path`, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Merges the environment files, in order (a resource given twice: the later one wins).
pub fn load_environment(paths: &[impl AsRef<Path>]) -> Result<Environment> {
    if paths.is_empty() {
        bail!("no environment given: pass one or more ARM JSON files (or - for standard input)");
    }
    let mut env = Environment::new();
    let mut stdin_used = false;
    for path in paths {
        let path = path.as_ref();
        if path.as_os_str() == "-" {
            if stdin_used {
                bail!("standard input (-) can be read only once");
            }
            stdin_used = true;
        }
        let bytes = read_input(path)?;
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
        env.add_json(&path.display().to_string(), &text)?;
    }
    Ok(env)
}

/// Loads Microsoft's service tag files, in order (a tag loaded again: the later file wins).
pub fn load_service_tags(paths: &[impl AsRef<Path>]) -> Result<Catalog> {
    let mut catalog = Catalog::new();
    for path in paths {
        let path = path.as_ref();
        let bytes = read_input(path)?;
        catalog
            .load_json_from(&path.display().to_string(), &bytes)
            .with_context(|| format!("loading service tags from {}", path.display()))?;
    }
    Ok(catalog)
}

/// An environment that failed validation, with every error.
#[derive(Debug)]
pub struct InvalidEnvironment(pub Vec<ValidationError>);

impl std::fmt::Display for InvalidEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "the environment is not valid ({} errors):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidEnvironment {}

/// Loads environment files (notes on ignored documents go to stderr) and validates them.
pub fn load_model(files: &[impl AsRef<Path>], catalog: &Catalog) -> Result<Model> {
    let env = load_environment(files)?;
    for ignored in &env.ignored {
        eprintln!("opennsg: note: ignoring {ignored}");
    }
    Ok(validate(&env, catalog)?)
}

/// Validates `env` against `catalog`'s tags.
pub fn validate(env: &Environment, catalog: &Catalog) -> Result<Model, InvalidEnvironment> {
    nsg_model::validate(env, catalog).map_err(InvalidEnvironment)
}
