use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Why reading the kernel's flow events failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed, or the kernel refused a request; `action` says which, e.g.
    /// "bind nflog group 5", and `hint` what to do about it (empty, or starting with " — ").
    #[error("{action}: {source}{hint}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },

    /// The kernel did not answer a request in time.
    #[error("{action}: no answer from the kernel within {waited:?}")]
    NoAnswer { action: String, waited: Duration },

    /// A message did not have the layout its type promises (a kernel bug, or bytes that are
    /// not a netlink message at all).
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },

    /// A sysctl under /proc/sys could not be read or written.
    #[error("{action} {}: {source}{}", path.display(), sysctl_hint(source))]
    Sysctl {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            action: action.into(),
            hint: hint(&source),
            source,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl ToString) -> Error {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

/// What to do about the errors people meet first.
fn hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => " — run as root or with CAP_NET_ADMIN",
        _ => "",
    }
}

fn sysctl_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::NotFound => {
            " — connection tracking is not loaded (load a ruleset that uses ct, or modprobe nf_conntrack)"
        }
        _ => hint(source),
    }
}
