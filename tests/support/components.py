"""Real components the tests drive: Redis, PostgreSQL, Orthanc and the DICOM command-line tools.

A test that needs one asks for it through a fixture in ``tests/conftest.py``. When the component
is missing we try to bring it up (start the server, or install the Debian package); if that fails
the test is skipped on a developer's machine but *fails* under ``CI=true``, so CI can never pass by
quietly not testing the real thing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_DEPS = REPO / "scripts" / "system-deps.sh"


def missing(what: str, how_to_fix: str) -> None:
    """Skip locally, fail in CI: a component we cannot reach is a broken environment there."""
    message = f"{what} is not available: {how_to_fix}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def install_system_deps() -> None:
    """Runs the project's installer for Debian packages; harmless when everything is present."""
    if os.geteuid() != 0 and not shutil.which("sudo"):
        return
    subprocess.run(["bash", str(SYSTEM_DEPS)], check=False, capture_output=True, timeout=900)


def require_tool(name: str) -> str:
    """Path of a command-line tool such as ``dciodvfy`` or ``Orthanc``, installed if missing."""
    path = shutil.which(name)
    if path is None:
        install_system_deps()
        path = shutil.which(name)
    if path is None:
        missing(f"the command {name!r}", f"run {SYSTEM_DEPS.relative_to(REPO)} as root")
    assert path is not None
    return path


def require_file(path: Path, package: str) -> Path:
    """A file that a Debian package installs (an Orthanc plugin, say), installing it if needed."""
    if not path.exists():
        install_system_deps()
    if not path.exists():
        fix = f"run {SYSTEM_DEPS.relative_to(REPO)} as root"
        missing(f"{path} (Debian package {package})", fix)
    return path


def ensure_redis(host: str = "127.0.0.1", port: int = 6379) -> str:
    """URL of a running Redis on loopback, starting one (nothing kept on disk) if none answers."""
    if not port_open(host, port):
        server = shutil.which("redis-server")
        if server is None:
            install_system_deps()
            server = shutil.which("redis-server")
        if server is not None:
            subprocess.run(
                [
                    server,
                    "--daemonize",
                    "yes",
                    "--bind",
                    host,
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                check=False,
                capture_output=True,
                timeout=30,
            )
            wait_for_port(host, port, 10)
    if not port_open(host, port):
        missing("Redis on 127.0.0.1:6379", "install redis-server or start it")
    return f"redis://{host}:{port}"


def ensure_postgres(host: str = "127.0.0.1", port: int = 5432) -> str:
    """URL of the ``test`` database on a running PostgreSQL, starting the cluster if it is down."""
    if not port_open(host, port):
        clusters = Path("/etc/postgresql")
        if shutil.which("pg_ctlcluster") and clusters.is_dir():
            for version in sorted(p.name for p in clusters.iterdir()):
                subprocess.run(
                    ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                    check=False,
                    capture_output=True,
                    timeout=60,
                )
            wait_for_port(host, port, 20)
    if not port_open(host, port):
        missing("PostgreSQL on 127.0.0.1:5432", "install postgresql and start its cluster")
    user = os.environ.get("PGUSER", "postgres")
    return f"postgresql+psycopg://{user}@{host}:{port}/test"
