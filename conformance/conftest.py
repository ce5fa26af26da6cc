"""Starts `opennsg serve` once for the session and hands the tests an Azure SDK client bound to it.

The suite builds nothing: it runs `target/release/opennsg` (relative to the repository root) or
the binary named by the environment variable OPENNSG_BIN. The server gets a free loopback port,
a temporary data directory and a random bearer token, and is always stopped at the end (SIGTERM,
then SIGKILL after a timeout), whatever happened to the tests.

Environment:
  OPENNSG_BIN             the server binary (default: <repo>/target/release/opennsg)
  OPENNSG_SERVICE_TAGS    service tag files for --service-tags, separated by ':'; empty for none
                          (default: the repository's tests/data/service-tags/ServiceTags_Public_375.json)
  OPENNSG_KEEP_DATA=1     keep the server's data directory and log after the run
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Optional

import pytest
from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network import models

from conformance_support import LOCATION, RESOURCE_GROUP, SUBSCRIPTION, create_group
from scenario_support import WATCHER, WATCHER_GROUP, load_environment, subscription_for

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_BINARY = REPO / "target" / "release" / "opennsg"
DEFAULT_SERVICE_TAGS = REPO / "tests" / "data" / "service-tags" / "ServiceTags_Public_375.json"
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

# Requests to the loopback server must never go through a proxy from the environment.
for _variable in ("NO_PROXY", "no_proxy"):
    _hosts = [h for h in os.environ.get(_variable, "").split(",") if h]
    os.environ[_variable] = ",".join(_hosts + ["127.0.0.1", "localhost"])


class StaticTokenCredential:
    """A credential object as the SDK expects one; the bearer token is set by BearerTokenPolicy."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class BearerTokenPolicy(SansIOHTTPPolicy):
    """Sets `Authorization: Bearer <token>` on every request, polls and pages included (the SDK's
    own policy refuses plain http:// endpoints)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._value = f"Bearer {token}"

    def on_request(self, request) -> None:
        request.http_request.headers["Authorization"] = self._value


@dataclass
class Server:
    """A running `opennsg serve`."""

    base_url: str
    token: str
    data_dir: pathlib.Path
    log_path: pathlib.Path
    service_tags: list = field(default_factory=list)

    def client(self, subscription_id: str = SUBSCRIPTION, token: Optional[str] = None) -> NetworkManagementClient:
        token = self.token if token is None else token
        return NetworkManagementClient(
            StaticTokenCredential(token),
            subscription_id,
            base_url=self.base_url,
            authentication_policy=BearerTokenPolicy(token),
            polling_interval=1,
            retry_total=0,
            connection_timeout=10,
            read_timeout=120,
        )


def _binary() -> pathlib.Path:
    value = os.environ.get("OPENNSG_BIN")
    path = pathlib.Path(value).resolve() if value else DEFAULT_BINARY
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise pytest.UsageError(
            f"no opennsg binary at {path}: run `cargo build --release -p opennsg` first, or set OPENNSG_BIN"
        )
    return path


def _service_tag_files() -> list:
    value = os.environ.get("OPENNSG_SERVICE_TAGS")
    if value is None:
        return [DEFAULT_SERVICE_TAGS]
    return [pathlib.Path(p).resolve() for p in value.split(os.pathsep) if p]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM the server if the test process dies without cleaning up."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # noqa: BLE001 - best effort only
        pass


def _healthy(base_url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{base_url}/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _tail(path: pathlib.Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


_SERVER_LOG_TAIL: list = []


@pytest.fixture(scope="session")
def server(request) -> Server:
    binary = _binary()
    tags = _service_tag_files()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="opennsg-conformance-"))
    data_dir = workdir / "data"
    log_path = workdir / "server.log"
    token = secrets.token_hex(24)
    process = None
    try:
        with open(log_path, "ab") as log:
            # A port found free can be taken before the server binds it: try a few.
            for _attempt in range(3):
                port = _free_port()
                base_url = f"http://127.0.0.1:{port}"
                command = [str(binary), "serve", "--listen", f"127.0.0.1:{port}", "--data", str(data_dir), "--token", token]
                for tag_file in tags:
                    command += ["--service-tags", str(tag_file)]
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
                deadline = time.monotonic() + STARTUP_TIMEOUT_S
                while time.monotonic() < deadline and process.poll() is None and not _healthy(base_url):
                    time.sleep(0.1)
                if process.poll() is None and _healthy(base_url):
                    break
                _stop(process)
            else:
                raise RuntimeError(f"opennsg serve did not become healthy; its log:\n{_tail(log_path)}")
        yield Server(base_url=base_url, token=token, data_dir=data_dir, log_path=log_path, service_tags=tags)
    finally:
        if process is not None:
            _stop(process)
        if request.session.testsfailed:
            _SERVER_LOG_TAIL[:] = [str(log_path), _tail(log_path)]
        if os.environ.get("OPENNSG_KEEP_DATA") == "1":
            print(f"\nopennsg conformance: data and log kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def client(server: Server) -> NetworkManagementClient:
    """The SDK client of the suite: subscription SUBSCRIPTION on the session's server."""
    with server.client() as network_client:
        for group in (RESOURCE_GROUP, WATCHER_GROUP):
            create_group(network_client, group)
        yield network_client


@pytest.fixture(scope="session")
def seeded(server):
    """Loads a fixture set of tests/fixtures (once per session) into a subscription of its own,
    with the region's network watcher beside it; returns (client of that subscription,
    scenario_support.Environment)."""
    loaded = {}
    clients = []

    def load(fixtures):
        key = "|".join(str(p) for p in fixtures)
        if key not in loaded:
            subscription = subscription_for("watcher:" + key)
            environment = load_environment(server, fixtures, subscription)
            network_client = server.client(subscription)
            clients.append(network_client)
            create_group(network_client, WATCHER_GROUP)
            network_client.network_watchers.create_or_update(WATCHER_GROUP, WATCHER, models.NetworkWatcher(location=LOCATION))
            loaded[key] = (network_client, environment)
        return loaded[key]

    yield load
    for network_client in clients:
        network_client.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _SERVER_LOG_TAIL:
        path, tail = _SERVER_LOG_TAIL
        terminalreporter.section("opennsg serve log (last lines)")
        terminalreporter.write_line(f"{path}:")
        terminalreporter.write_line(tail)
