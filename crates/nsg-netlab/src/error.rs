use std::io;
use std::process::{Command, ExitStatus};

/// Why building or driving a lab failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "nsg-netlab must run as root (it creates network namespaces and veth pairs); \
         the effective uid is {euid}"
    )]
    NotRoot { euid: u32 },

    #[error("required program `{program}` is not runnable: {source}")]
    MissingProgram {
        program: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },

    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },

    #[error("network namespace {namespace}: {source}")]
    Namespace {
        namespace: String,
        #[source]
        source: io::Error,
    },
}

impl From<LabError> for io::Error {
    fn from(err: LabError) -> Self {
        io::Error::other(err)
    }
}

/// The command as a person would type it, for error messages only (it is never run through a shell).
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` to completion and fails unless it exits with status 0.
pub(crate) fn run_checked(command: &mut Command) -> Result<std::process::Output, LabError> {
    command.stdin(std::process::Stdio::null());
    let output = command.output().map_err(|source| LabError::Spawn {
        command: describe(command),
        source,
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(LabError::CommandFailed {
            command: describe(command),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Prefixes an I/O error with what was being done, keeping its kind (tests match on `TimedOut` etc.).
pub(crate) fn with_context(err: io::Error, context: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{context}: {err}"))
}
