//! Azurite, the Azure Storage emulator, started for one test (on loopback, in the test's own
//! namespace or in a lab namespace) and stopped when it ends.

use std::env;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{tcp_connect, Netns};

/// Azurite's well-known development account (public, the same in every Azurite).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to listen; a readiness limit, not a measurement.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Tries at a free port: another process may take the one chosen before Azurite binds it.
const PORT_TRIES: usize = 5;

/// A running `azurite-blob` on loopback with a data folder of its own; killed on drop, also
/// when the test fails.
pub struct Azurite {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// Starts Azurite on loopback in the caller's network namespace.
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// Starts Azurite on loopback in `namespace` (e.g. a lab's router, for a program running
    /// there), or in the caller's namespace.
    pub fn start_in(namespace: Option<&Netns>) -> Self {
        let program = program();
        let mut last_failure = String::new();
        for _ in 0..PORT_TRIES {
            let data = tempfile::tempdir().expect("temporary folder for Azurite's data");
            let port = free_port(namespace);
            let log = data.path().join("azurite.log");
            let stderr = File::create(&log).expect("Azurite's log file");
            let mut command = match namespace {
                Some(ns) => {
                    let mut command = Command::new("ip");
                    command.args(["netns", "exec", ns.name()]).arg(&program);
                    command
                }
                None => Command::new(&program),
            };
            let mut child = command
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(data.path())
                .args(["--silent", "--skipApiVersionCheck"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", program.display()));
            match wait_until_listening(&mut child, namespace, port, &log) {
                Ok(()) => {
                    return Self {
                        child,
                        port,
                        _data: data,
                    }
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_failure = failure;
                }
            }
        }
        panic!("Azurite did not start: {last_failure}");
    }

    /// The blob endpoint of the development account.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$OPENNSG_AZURITE`, else what `install-azurite.sh` installs under the target directory.
fn program() -> PathBuf {
    if let Some(path) = env::var_os("OPENNSG_AZURITE").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "OPENNSG_AZURITE={} is not a file; point it at the azurite-blob program",
            path.display()
        );
        return path;
    }
    // This crate's manifest is crates/nsg-netlab/Cargo.toml.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir)) // an absolute directory replaces the workspace
        .unwrap_or_else(|| workspace.join("target"));
    let path = target.join("azurite/node_modules/.bin/azurite-blob");
    assert!(
        path.is_file(),
        "Azurite (the Azure Storage emulator these tests write to) is not installed at {}: \
         run `bash crates/nsg-flow-store/install-azurite.sh` (needs node and npm), or set \
         OPENNSG_AZURITE to an azurite-blob program",
        path.display()
    );
    path
}

fn free_port(namespace: Option<&Netns>) -> u16 {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
    };
    match namespace {
        Some(ns) => ns.run(bind),
        None => bind(),
    }
    .expect("a free loopback port")
}

fn wait_until_listening(
    child: &mut Child,
    namespace: Option<&Netns>,
    port: u16,
    log: &Path,
) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listening = || match namespace {
        Some(ns) => tcp_connect(ns, None, address, Duration::from_secs(1)).is_ok(),
        None => TcpStream::connect(address).is_ok(),
    };
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            let stderr = fs::read_to_string(log).unwrap_or_default();
            return Err(format!("azurite-blob exited ({status}): {stderr}"));
        }
        if listening() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not listening on port {port} after {START_LIMIT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
}
