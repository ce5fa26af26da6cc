use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;

use rustix::thread::LinkNameSpaceType;

use crate::error::{describe, run_checked, with_context, LabError};

/// Where `ip netns add` publishes named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A named network namespace (as listed by `ip netns list`).
///
/// A cheap handle: cloning it does not create anything, and dropping it does not delete the
/// namespace; the [`Lab`](crate::Lab) that created it does that.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Netns {
    name: String,
}

impl Netns {
    pub(crate) fn new(name: String) -> Self {
        Netns { name }
    }

    /// The real name, as used by `ip netns exec NAME`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` inside this namespace; see [`in_namespace`].
    pub fn run<T, F>(&self, f: F) -> io::Result<T>
    where
        T: Send,
        F: FnOnce() -> io::Result<T> + Send,
    {
        in_namespace(&self.name, f)
    }

    /// Runs `ip netns exec NAME program args...` and returns its output whatever its exit status.
    pub fn exec<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.exec_command(program, args);
        command
            .output()
            .map_err(|err| with_context(err, format_args!("run `{}`", describe(&command))))
    }

    /// Like [`exec`](Self::exec), but a non-zero exit status is an error that carries the
    /// command line and its stderr.
    pub fn exec_checked<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
    ) -> Result<Output, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(&mut self.exec_command(program, args))
    }

    fn exec_command<I, S>(&self, program: impl AsRef<OsStr>, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs `ip -n NAME args...`, failing unless it succeeds.
    pub(crate) fn ip<I, S>(&self, args: I) -> Result<(), LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(Command::new("ip").args(["-n", &self.name]).args(args)).map(drop)
    }

    /// Writes a sysctl of this namespace, e.g. `net/ipv4/ip_forward`.
    ///
    /// Written through /proc/sys from a thread inside the namespace: /proc/sys/net shows the
    /// namespace of the thread that opens it, and this needs no `sysctl` binary. Paths are
    /// slash-separated so interface names containing dots stay unambiguous.
    pub(crate) fn write_sysctl(&self, path: &str, value: &str) -> Result<(), LabError> {
        let file = Path::new("/proc/sys").join(path);
        self.run(|| {
            File::options()
                .write(true)
                .open(&file)
                .and_then(|mut f| f.write_all(value.as_bytes()))
                .map_err(|err| {
                    with_context(err, format_args!("write {value} to {}", file.display()))
                })
        })
        .map_err(|source| LabError::Namespace {
            namespace: self.name.clone(),
            source,
        })
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Runs `f` on a fresh thread that has entered the network namespace `ns_name`
/// (`/run/netns/NAME`), and returns its result. A panic in `f` is resumed on the caller.
///
/// A socket belongs to the namespace it was created in for its whole life, whichever thread
/// uses it later. So a test creates its sockets here, one call per namespace, and then uses
/// them all from its own thread:
///
/// ```no_run
/// # fn demo() -> std::io::Result<()> {
/// let listener = nsg_netlab::in_namespace("some-netns", || {
///     std::net::TcpListener::bind("0.0.0.0:8080")
/// })?;
/// let (_connection, _peer) = listener.accept()?; // still in "some-netns"
/// # Ok(())
/// # }
/// ```
///
/// A child process spawned inside `f` also starts in the namespace.
pub fn in_namespace<T, F>(ns_name: &str, f: F) -> io::Result<T>
where
    T: Send,
    F: FnOnce() -> io::Result<T> + Send,
{
    if ns_name.is_empty() || ns_name.contains('/') || ns_name == "." || ns_name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid network namespace name {ns_name:?}"),
        ));
    }
    let path = Path::new(NETNS_DIR).join(ns_name);
    let namespace = File::open(&path).map_err(|err| {
        with_context(
            err,
            format_args!("open network namespace {}", path.display()),
        )
    })?;
    // A dedicated thread, because setns changes the namespace of the calling thread for good
    // and the caller's thread must stay where it is.
    thread::scope(|scope| {
        let worker = thread::Builder::new()
            .name(format!("netns {ns_name}"))
            .spawn_scoped(scope, move || {
                rustix::thread::move_into_link_name_space(
                    namespace.as_fd(),
                    Some(LinkNameSpaceType::Network),
                )
                .map_err(|err| {
                    with_context(
                        err.into(),
                        format_args!("enter network namespace {ns_name}"),
                    )
                })?;
                f()
            })?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
