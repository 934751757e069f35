"""The Python `make` builds .venv with, from what a machine's PATH offers (`make -n`: nothing is built)."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.process

MAKE = shutil.which("make")
RUNNING = f"python{sys.version_info[0]}.{sys.version_info[1]}"  # a supported one: the suite runs on it
# What pyenv puts on PATH for a version its global setting does not provide.
PYENV_SHIM = '#!/bin/sh\necho "pyenv: $(basename "$0"): command not found" >&2\nexit 127\n'


def make_n(tmp_path, pythons, *args):
    """`make -n test` with only ``pythons`` on PATH: name -> "running" (this interpreter) or "shim"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, kind in pythons.items():
        if kind == "running":
            (bin_dir / name).symlink_to(os.path.realpath(sys.executable))
        else:
            (bin_dir / name).write_text(PYENV_SHIM)
            (bin_dir / name).chmod(0o755)
    # Nothing of an outer make (MAKEFLAGS carries its PYTHON=...), no other Python.
    return subprocess.run(
        [MAKE, "-n", "test", *args], cwd=ROOT, env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60
    )


def test_python3_is_taken_when_it_is_a_supported_version(tmp_path):
    result = make_n(tmp_path, {"python3": "running", "python3.13": "running"})
    assert result.returncode == 0, result.stderr
    assert "python3 -m venv .venv" in result.stdout


def test_a_pyenv_shim_that_fails_is_passed_over_for_the_next_candidate(tmp_path):
    result = make_n(tmp_path, {"python3": "shim", RUNNING: "running"})
    assert result.returncode == 0, result.stderr
    assert f"{RUNNING} -m venv .venv" in result.stdout


@pytest.mark.parametrize(
    "args, names",
    [
        ((), "none of python3 python3.13 python3.12 python3.11 on PATH is one"),
        (("PYTHON=python3.13",), "PYTHON=python3.13 does not run"),
    ],
)
def test_without_a_supported_python_make_stops_with_one_line_naming_the_versions(tmp_path, args, names):
    result = make_n(tmp_path, dict.fromkeys(["python3", "python3.13", "python3.12", "python3.11"], "shim"), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "m2m-gateway needs Python 3.11, 3.12 or 3.13: " + names in line
