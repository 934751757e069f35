"""Child processes of ``python -m gateway`` on 127.0.0.1: free ports, starting, waiting, stopping.

One place for what the demo (``make run``), the tests, the benchmarks and the
toolkit matrix do with the processes they start. Each child runs in a process
group of its own, led by its PID: a crash of the group takes gunicorn's
workers too, and only the group this code started is ever signalled.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 20
STOP_TIMEOUT_S = 30
ROOT = Path(__file__).resolve().parents[1]


class NotListening(RuntimeError):
    """A child exited, or nothing listened on its port in time."""


def free_port(host=LOOPBACK):
    """A TCP port nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(port, processes=(), host=LOOPBACK, timeout_s=STARTUP_TIMEOUT_S):
    """Return once ``host:port`` accepts a connection; NotListening if one of ``processes`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise NotListening(f"{process.args[1:4]} exited with {process.returncode} before {host}:{port} listened")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise NotListening(f"nothing listens on {host}:{port} after {timeout_s} s")


def start(args, env=None, log_path=None, **popen_options):
    """``python -m gateway args`` (this interpreter) in a process group of its own, its output to ``log_path``."""
    log = open(log_path, "ab") if log_path else None  # None: this process's own output
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
            **{"cwd": ROOT, **popen_options},
        )
    finally:
        if log_path:
            log.close()


def stop(popen, timeout_s=STOP_TIMEOUT_S, sig=signal.SIGTERM):
    """Signal the child (SIGTERM: a graceful stop), then SIGKILL its group if it has not exited in ``timeout_s``.

    SIGKILL as ``sig``: a crash of the whole group at once. Either way this
    returns once the group is gone, so none of gunicorn's workers outlives it.
    """
    if popen.poll() is None:
        if sig == signal.SIGKILL:
            kill_group(popen.pid)
        else:
            popen.send_signal(sig)
        try:
            popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_group(popen.pid)
            popen.wait(timeout=timeout_s)
    if sig == signal.SIGKILL:
        wait_until_gone(popen.pid)


def kill_group(group):
    """SIGKILL every process of ``group`` (one this code started, named by the PID that led it), if any is left."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until_gone(group, timeout_s=10):
    """Return once no process of ``group`` is left."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise RuntimeError(f"process group {group} outlived SIGKILL")
