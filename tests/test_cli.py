"""The `m2m-gateway` command line, as an operator runs it."""

import os
import subprocess
import sys

import pytest

from gateway.store import SqliteStore
from gateway.logs import iso_utc
from tests.conftest import ROOT

pytestmark = pytest.mark.process


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize("command", ["serve", "simulator", "wsdl", "demo", "trace"])
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: m2m-gateway {command}")


def test_the_console_script_is_installed():
    script = ROOT / ".venv" / "bin" / "m2m-gateway"
    if not script.exists():
        pytest.skip("not run from the project's .venv")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "serve" in result.stdout


@pytest.mark.parametrize("service", ["SessionService", "StateService"])
def test_wsdl_prints_the_snapshot_on_the_embedded_defaults(service):
    result = run("wsdl", service, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "wsdl" / f"{service}.wsdl").read_text()


def test_wsdl_refuses_an_unknown_service():
    result = run("wsdl", "DeviceService")
    assert result.returncode == 2
    assert "unknown service 'DeviceService'" in result.stderr


def test_the_outbox_listings_show_each_entry_s_last_attempt_and_a_pending_one_s_next_retry(tmp_path):
    path = tmp_path / "gateway.sqlite3"
    store = SqliteStore(path)
    store.put_registration("acct", "StateService", "http://listener.example/cb", "u", "p")
    for key in ("retried", "dead", "untried"):
        store.add_callback(key, "acct", "StateService", f"request-{key}", "{}", 1000.0)
    retried, dead = store.claim_due("w", 1000.0, 30, 2)
    store.mark_failed(retried.id, "w", 1001.0, "listener answered HTTP 502", 1010.0, url=retried.url, duration_s=0.5)
    store.mark_failed(dead.id, "w", 1002.0, "listener unreachable (ConnectionError)", None, url=dead.url, duration_s=0.5)
    store.close()

    def listed(state):
        result = run("callbacks", state, env={**os.environ, "M2MGW_STORE_PATH": str(path)})
        assert result.returncode == 0, result.stderr
        header, *rows = result.stdout.splitlines()
        columns = header.split("\t")
        return [dict(zip(columns, row.split("\t"))) for row in rows]

    retried_row, untried_row = listed("pending")
    assert retried_row["next retry"] == iso_utc(1010.0)
    assert retried_row["last attempt"] == f"{iso_utc(1000.5)} #1 listener answered HTTP 502"
    assert (untried_row["next retry"], untried_row["last attempt"]) == (iso_utc(1000.0), "-")
    (dead_row,) = listed("dead")
    assert dead_row["next retry"] == "-"
    assert dead_row["last attempt"] == f"{iso_utc(1001.5)} #1 listener unreachable (ConnectionError)"
