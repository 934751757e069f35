"""The `m2m-gateway` command line, as an operator runs it."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize("command", ["serve", "simulator", "wsdl", "demo"])
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
