"""A throwaway PostgreSQL server on 127.0.0.1 for the test session, and a new database per test.

The cluster is made with initdb in a temporary directory and run by its own
``postgres`` process, stopped by PID at the end: nothing of an installed
server (its clusters, its service) is used or touched. PostgreSQL refuses to
run as root, so under root the cluster belongs to the ``postgres`` user that
the Debian package creates. Tests that need it are skipped only when
PostgreSQL is not installed at all (``make test`` installs it).
"""

import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

import psycopg
import pytest

from gateway import processes

STARTUP_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 30
SUPERUSER = "postgres"


def postgres_bin_dir():
    """Where initdb and postgres are: PATH first, then Debian's versioned directories, newest first."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    versioned = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(re.findall(r"\d+", path)[0]))
    return Path(versioned[-1]).parent if versioned else None


class PostgresServer:
    """One postgres process serving a fresh cluster, trusting local connections (it only listens on loopback)."""

    def __init__(self, bin_dir, directory):
        self._bin_dir = Path(bin_dir)
        self._directory = Path(directory)
        self._data = self._directory / "data"
        self._log_path = self._directory / "postgres.log"
        self._as_user = _unprivileged_user()
        self._databases = itertools.count(1)
        self.port = processes.free_port()
        self._process = None

    def start(self):
        if self._as_user:
            os.chown(self._directory, self._as_user.pw_uid, self._as_user.pw_gid)
        self._run(
            "initdb", "-D", self._data, "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"
        )
        return self.launch()

    def launch(self):
        """Start the server on its cluster and port (again, after ``shut_down``)."""
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                [
                    self._bin_dir / "postgres", "-D", self._data, "-p", str(self.port),
                    "-c", "listen_addresses=127.0.0.1",
                    "-c", f"unix_socket_directories={self._directory}",
                    # Two gateways, spawned claimers and the tests' own connections at once.
                    "-c", "max_connections=200",
                    # A throwaway cluster: a crash of the machine may lose it.
                    "-c", "fsync=off",
                ],
                **self._process_options(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_ready()
        return self

    def stop(self):
        """Shut down; then the directory goes."""
        self.shut_down()
        shutil.rmtree(self._directory, ignore_errors=True)

    def shut_down(self):
        """Fast shutdown (SIGINT) by PID, SIGKILL if it does not come; the cluster stays for ``launch``."""
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=SHUTDOWN_TIMEOUT_S)

    @property
    def pid(self):
        """The postmaster's; the server's other processes are its children."""
        return self._process.pid

    def url(self, database="postgres"):
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self):
        """A new, empty database; its URL."""
        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, program, *args):
        result = subprocess.run(
            [self._bin_dir / program, *args], **self._process_options(), capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def _process_options(self):
        options = {"cwd": self._directory}
        if self._as_user:
            options.update(user=self._as_user.pw_uid, group=self._as_user.pw_gid, extra_groups=[])
        return options

    def _wait_until_ready(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self._process.returncode}: {self._log()}")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready after {STARTUP_TIMEOUT_S} s: {self._log()}") from None
                time.sleep(0.1)

    def _log(self):
        return self._log_path.read_text(errors="replace")[-2000:]


def _unprivileged_user():
    """The user to run PostgreSQL as when we are root (it refuses root), else None: ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no postgres user to run PostgreSQL as") from None


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb on PATH nor in /usr/lib/postgresql/*/bin); `make test` installs it"
        )
    server = PostgresServer(bin_dir, tempfile.mkdtemp(prefix="m2m-gateway-postgres-"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new, empty database of the session's server."""
    return postgres_server.create_database()
