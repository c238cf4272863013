"""Session fixtures for the label-studio-sdk compatibility suite.

Starts one Verity server (``$VERITY_BIN serve``) on a free loopback port with a
fresh temporary data directory, waits (bounded) for ``GET /readyz`` to answer
200, hands out SDK clients authenticated with a legacy token and with a
personal access token (JWT refresh token), and stops the server at the end.
When any test fails, or the server does not come up, the server log is printed.

Environment:
  VERITY_BIN                 server binary (default /work/main/target/debug/verity)
  VERITY_SDK_DATABASE_URL    if set, passed to the server as VERITY_DATABASE_URL
                             (PostgreSQL); use an empty database
  VERITY_SDK_READY_TIMEOUT   seconds to wait for readiness (default 60)
  VERITY_SDK_READY_PATH      readiness path (default /readyz)
  VERITY_SDK_KEEP_DATA       keep the temp data dir (and log) even when all pass
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Optional

import pytest
import requests
from label_studio_sdk import LabelStudio

DEFAULT_BIN = "/work/main/target/debug/verity"
ADMIN_EMAIL = "admin@example.com"
SDK_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 400

# Set while the session runs so that pytest_terminal_summary can print the log.
_SERVER_LOG: dict = {"path": None}


def _die_with_parent() -> None:
    """preexec_fn: on Linux, SIGTERM the server if pytest itself is killed."""
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # not Linux / no libc: teardown still stops the server
        pass


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_log(path: Optional[str], lines: int = LOG_TAIL_LINES) -> str:
    if not path or not os.path.exists(path):
        return "<no server log>"
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        content = f.read().splitlines()
    tail = content[-lines:]
    skipped = len(content) - len(tail)
    head = f"... ({skipped} earlier lines omitted)\n" if skipped else ""
    return head + "\n".join(tail)


@dataclass
class VerityServer:
    bin: str
    base_url: str
    env: dict
    data_dir: str
    log_path: str
    admin_email: str
    admin_password: str
    admin_token: str
    proc: Optional[subprocess.Popen] = None
    created_users: list = field(default_factory=list)

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run a verity sub-command against the same data dir / database."""
        return subprocess.run(
            [self.bin, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def create_user(self, email: str, role: str) -> str:
        """Create a user through the CLI and return its legacy API token."""
        token = secrets.token_hex(20)  # 40 chars, like a DRF authtoken key
        res = self.cli("user", "create", "--email", email, "--role", role, "--token", token)
        assert res.returncode == 0, (
            f"`verity user create --email {email} --role {role}` exited {res.returncode}\n"
            f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        )
        assert token in res.stdout, (
            f"`verity user create` did not print the token it was given\nstdout:\n{res.stdout}"
        )
        self.created_users.append(email)
        return token

    def client(self, api_key: str) -> LabelStudio:
        # max_retries=0: the SDK retries 5xx/408/409/429 by default, which would
        # re-send non-idempotent POSTs and hide server errors behind duplicates.
        return LabelStudio(
            base_url=self.base_url, api_key=api_key, timeout=SDK_TIMEOUT_S, max_retries=0
        )


def _start_server(extra_env: Optional[dict] = None, own_database: bool = False) -> VerityServer:
    """Starts `verity serve`. `extra_env` adds server settings; `own_database` gives it a fresh
    SQLite database of its own even when VERITY_SDK_DATABASE_URL names a shared one (for a test
    that needs a server with settings the session's server does not have)."""
    bin_path = os.environ.get("VERITY_BIN", DEFAULT_BIN)
    if not (os.path.isfile(bin_path) and os.access(bin_path, os.X_OK)):
        pytest.fail(f"Verity binary not found or not executable: {bin_path} (set VERITY_BIN)", pytrace=False)

    data_dir = tempfile.mkdtemp(prefix="verity-sdk-")
    log_path = os.path.join(data_dir, "server.log")
    port = _free_loopback_port()

    env = dict(os.environ)
    env.pop("VERITY_DATABASE_URL", None)
    env.setdefault("NO_COLOR", "1")  # plain server log
    db_url = None if own_database else os.environ.get("VERITY_SDK_DATABASE_URL")
    if db_url:
        env["VERITY_DATABASE_URL"] = db_url
    server = VerityServer(
        bin=bin_path,
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        data_dir=data_dir,
        log_path=log_path,
        admin_email=ADMIN_EMAIL,
        admin_password="pw-" + secrets.token_urlsafe(12),
        admin_token=secrets.token_hex(20),
    )
    env.update(
        {
            "VERITY_LISTEN": f"127.0.0.1:{port}",
            "VERITY_DATA_DIR": data_dir,
            "VERITY_ADMIN_EMAIL": server.admin_email,
            "VERITY_ADMIN_PASSWORD": server.admin_password,
            "VERITY_ADMIN_TOKEN": server.admin_token,
            # Seals stored secrets; required on PostgreSQL.
            "VERITY_SESSION_KEY": secrets.token_hex(32),
            # Webhook receivers of the tests listen on 127.0.0.1; nothing else private.
            "VERITY_ALLOW_PRIVATE_TARGETS": "127.0.0.1",
            "VERITY_WEBHOOK_RETRY_BASE_MS": "200",
        }
    )
    env.update(extra_env or {})
    if not (extra_env or own_database):
        _SERVER_LOG["path"] = log_path  # the session's server: its log is shown on failure

    log_file = open(log_path, "wb")
    try:
        server.proc = subprocess.Popen(
            [bin_path, "serve"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
    finally:
        log_file.close()  # the child keeps its own descriptor

    timeout = float(os.environ.get("VERITY_SDK_READY_TIMEOUT", "60"))
    ready_path = os.environ.get("VERITY_SDK_READY_PATH", "/readyz")
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while True:
        if server.proc.poll() is not None:
            pytest.fail(
                f"verity serve exited with code {server.proc.returncode} before becoming ready\n"
                f"--- server log ---\n{_read_log(log_path)}",
                pytrace=False,
            )
        try:
            r = requests.get(server.base_url + ready_path, timeout=2, allow_redirects=False)
            if r.status_code == 200:
                break
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        if time.monotonic() > deadline:
            _stop(server)
            pytest.fail(
                f"verity serve not ready after {timeout:.0f}s (last {ready_path}: {last})\n"
                f"--- server log ---\n{_read_log(log_path)}",
                pytrace=False,
            )
        time.sleep(0.2)
    return server


def _stop(server: VerityServer) -> None:
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def verity(request) -> VerityServer:
    server = _start_server()
    yield server
    _stop(server)
    failed = request.session.testsfailed > 0
    if not failed and not os.environ.get("VERITY_SDK_KEEP_DATA"):
        shutil.rmtree(server.data_dir, ignore_errors=True)
        _SERVER_LOG["path"] = None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = _SERVER_LOG.get("path")
    if exitstatus != 0 and path:
        terminalreporter.write_sep("=", f"verity server log (tail, {path})")
        terminalreporter.write_line(_read_log(path))


# ---------------------------------------------------------------- identities


@pytest.fixture(scope="session")
def admin_client(verity) -> LabelStudio:
    """Legacy-token client used for setup/teardown (never the object under test)."""
    return verity.client(verity.admin_token)


@pytest.fixture(scope="session")
def admin_id(verity) -> int:
    r = requests.get(
        verity.base_url + "/api/current-user/whoami",
        headers={"Authorization": f"Token {verity.admin_token}"},
        timeout=SDK_TIMEOUT_S,
    )
    assert r.status_code == 200, f"whoami with the admin legacy token: HTTP {r.status_code} {r.text[:500]}"
    body = r.json()
    assert body.get("email") == verity.admin_email, body
    assert isinstance(body.get("id"), int), body
    return body["id"]


@pytest.fixture(scope="session")
def admin_pat(verity) -> str:
    """A personal access token (JWT refresh token) minted through the SDK's tokens API."""
    created = verity.client(verity.admin_token).tokens.create()
    assert isinstance(created.token, str) and created.token.count(".") == 2, (
        f"POST /api/token/ did not return a JWT: {created!r}"
    )
    return created.token


@pytest.fixture(scope="session")
def annotator_account(verity) -> dict:
    email = f"annotator-{secrets.token_hex(4)}@example.com"
    token = verity.create_user(email, "annotator")
    return {"email": email, "token": token}


@pytest.fixture(scope="session")
def annotator_pat(verity, annotator_account) -> str:
    created = verity.client(annotator_account["token"]).tokens.create()
    assert isinstance(created.token, str) and created.token.count(".") == 2, (
        f"POST /api/token/ (annotator) did not return a JWT: {created!r}"
    )
    return created.token


@pytest.fixture(params=["legacy", "pat"])
def auth_kind(request) -> str:
    return request.param


@pytest.fixture
def ls(verity, auth_kind, request) -> LabelStudio:
    """The SDK client under test, once with the legacy token and once with a PAT."""
    if auth_kind == "legacy":
        return verity.client(verity.admin_token)
    return verity.client(request.getfixturevalue("admin_pat"))


@pytest.fixture
def annotator_ls(verity, auth_kind, annotator_account, request) -> LabelStudio:
    if auth_kind == "legacy":
        return verity.client(annotator_account["token"])
    return verity.client(request.getfixturevalue("annotator_pat"))
