"""`make run` for a newcomer: the demo starts everything and its printed commands work."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT, free_port


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


def test_the_printed_commands_run_the_whole_loop_to_the_demo_listener(tmp_path):
    gateway_port, simulator_port, listener_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "M2MGW_SERVER_PORT": str(gateway_port),
        "M2MGW_UPSTREAM_BASE_URL": f"http://127.0.0.1:{simulator_port}",
        "M2MGW_STORE_PATH": str(tmp_path / "gateway.sqlite3"),
    }
    output = tmp_path / "demo.out"
    with open(output, "wb") as sink:
        demo = subprocess.Popen([sys.executable, "-m", "gateway", "demo", "--listener-port", str(listener_port)], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        commands = _wait_for(output, r"\n(TOKEN=.*; echo\n)").group(1)
        result = subprocess.run(["bash", "-c", commands], capture_output=True, text=True, timeout=60)
        request_id = re.search(r"<a:RequestId>([^<]+)</a:RequestId>", result.stdout).group(1)
        assert re.search(r"SessionToken: \S+", result.stdout)
        _wait_for(output, rf"goToState requestId={re.escape(request_id)} devices=2")
        # The demo listener prints the legacy SOAP callback of each device.
        for imei in ("990000862471854", "990000862471855"):
            _wait_for(output, rf"<CallbackRequest .*?<RequestId>{request_id}</RequestId>.*?<Identifier>{imei}</Identifier>")
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=15)
    assert demo.returncode == 0
    logged = output.read_text().split(commands)[1]  # what was written after the printed commands
    assert "<Password>********</Password>" in logged
    assert "listener-secret" not in logged, "the listener's password reached a log line"
    assert not any(map(_listening, (gateway_port, simulator_port, listener_port))), "the demo left a process running"
