"""`make run` for a newcomer: the demo starts everything, its printed commands work, Ctrl-C stops it all."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.process

IMEIS = ("990000862471854", "990000862471855")


def _wait_for(path, pattern, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text(errors="replace"), re.S)
        if match:
            return match
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared in:\n{path.read_text(errors='replace')}")


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _descendants(pid):
    """Every process below ``pid`` (the demo's children and gunicorn's workers)."""
    try:
        children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return [descendant for child in children for descendant in (child, *_descendants(child))]


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _demo_env(tmp_path):
    ports = {"gateway": free_port(), "simulator": free_port(), "listener": free_port()}
    env = {
        **os.environ,
        "M2MGW_SERVER_PORT": str(ports["gateway"]),
        "M2MGW_UPSTREAM_BASE_URL": f"http://127.0.0.1:{ports['simulator']}",
        "M2MGW_STORE_PATH": str(tmp_path / "gateway.sqlite3"),
    }
    return env, ports


def test_the_printed_commands_run_the_whole_loop_and_ctrl_c_stops_it_all(tmp_path):
    env, ports = _demo_env(tmp_path)
    output = tmp_path / "demo.out"
    with open(output, "wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "gateway", "demo", "--listener-port", str(ports["listener"])],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        printed = _wait_for(output, r"\n(TOKEN=.*?)\n\nThen follow that request[^\n]*\n\n([^\n]*)\n")
        commands, trace_command = printed.groups()
        result = subprocess.run(["bash", "-c", commands], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        request_id = re.search(r"RequestId: (\S+)", result.stdout).group(1)
        assert re.search(r"SessionToken: \S+", result.stdout)
        _wait_for(output, rf"goToState requestId={re.escape(request_id)} devices=2")
        # The demo listener prints the legacy SOAP callback of each device.
        for imei in IMEIS:
            _wait_for(output, rf"<CallbackRequest .*?<RequestId>{request_id}</RequestId>.*?<Identifier>{imei}</Identifier>")
        # The last printed command tells that request's story.
        deadline = time.monotonic() + 30
        while True:
            traced = subprocess.run(
                ["bash", "-c", trace_command], cwd=ROOT, env={**env, "REQUEST_ID": request_id},
                capture_output=True, text=True, timeout=60,
            )
            if traced.stdout.count("; delivered") == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        children = _descendants(demo.pid)
        assert len(children) >= 4  # the simulator, the listener, gunicorn and its workers
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(timeout=60)
    assert demo.returncode == 0
    assert not [pid for pid in children if _alive(pid)], "the demo left a process running"
    assert not any(map(_listening, ports.values()))

    assert traced.returncode == 0, traced.stderr
    assert request_id in traced.stdout and all(imei in traced.stdout for imei in IMEIS)
    assert traced.stdout.count("; delivered") == 2, traced.stdout
    shown = output.read_text()
    assert "\x1b" not in shown, "an ANSI escape code reached the screen"
    assert "\\n" not in shown, "a literal \\n reached the screen"
    # Each envelope is a block of its own, indented under the line saying it arrived.
    assert re.search(r"Z callback received on /:\n    <s:Envelope [^\n]*>\n      <s:Body ", shown)
    logged = shown.split(commands)[1]  # what was written after the printed commands
    assert "<Password>********</Password>" in logged
    assert "listener-secret" not in logged, "the listener's password reached the screen"


def test_ctrl_c_on_make_run_stops_everything_without_a_make_error(tmp_path):
    if not (ROOT / ".venv" / "bin" / "m2m-gateway").exists():
        pytest.skip("not run from the project's .venv")
    env, ports = _demo_env(tmp_path)
    output = tmp_path / "make.out"
    with open(output, "wb") as sink:
        make = subprocess.Popen(
            # -o: the .venv is there; never reinstall it from a test.
            ["make", "-o", ".venv/.installed", "run", f"DEMO_ARGS=--listener-port {ports['listener']}"],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal's foreground job
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        _wait_for(output, r"m2m-gateway is running")
        processes = [make.pid, *_descendants(make.pid)]
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
        make.wait(timeout=60)
    shown = output.read_text()
    assert "make: ***" not in shown, shown[-2000:]
    assert "Traceback" not in shown, shown[-2000:]
    assert not [pid for pid in processes if _alive(pid)], "make run left a process running"
    assert not any(map(_listening, ports.values()))
