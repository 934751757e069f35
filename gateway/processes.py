"""Child processes of ``python -m gateway`` on 127.0.0.1: free ports, starting, waiting, stopping.

One place for what the demo (``make run``), the tests, the benchmarks and the
toolkit matrix do with the processes they start. Each child runs in a process
group of its own, led by its PID: a crash of the group takes gunicorn's
workers too, and only the group this code started is ever signalled.
"""

import functools
import itertools
import os
import random
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
    """A TCP port nothing is bound to now, one that neither the kernel nor another
    pytest-xdist worker of this run hands out before a child binds it (PortShare)."""
    return this_process_ports().free_port(host)


class PortShare:
    """One process's share of the ports outside the kernel's ephemeral range, handed out in turn.

    Not the kernel's pick (bind port 0, read it, close): that port is free only
    until the child binds it, and meanwhile the kernel may hand it out again
    from its ephemeral range, to another worker's server or as the local end of
    an outgoing connection. The child then fails to bind (gunicorn retries, then
    exits) while wait_for_port returns on reaching the stranger. The
    kernel picks no port outside that range, and no two workers of a test run
    share one (``of_worker``); each port is still checked free by binding it,
    for whatever else on the machine may hold it.
    """

    def __init__(self, ports, start=0):
        self.ports = ports
        self._turns = itertools.count(start)

    @classmethod
    def of_worker(cls, worker, workers, ephemeral):
        """Worker ``worker``'s (0 to ``workers`` - 1) share: every ``workers``-th unprivileged port outside ``ephemeral``.

        It starts at a random one: another run beside this one (a second
        checkout's tests, a benchmark) has the same worker numbers, and the two
        then seldom take the same ports at the same time.
        """
        ports = [port for port in range(1024, 65536) if port not in ephemeral][worker::workers]
        if not ports:
            raise RuntimeError(
                f"no unprivileged port is outside the kernel's ephemeral range {ephemeral.start}-{ephemeral.stop - 1}"
                " (sysctl net.ipv4.ip_local_port_range) for the servers of tests and benchmarks"
            )
        return cls(ports, start=random.SystemRandom().randrange(len(ports)))

    def free_port(self, host=LOOPBACK):
        """The share's next port nothing is bound to now."""
        for _ in self.ports:
            port = self.ports[next(self._turns) % len(self.ports)]  # count's next(): one turn a call, across threads
            with socket.socket() as probe:
                try:
                    probe.bind((host, port))
                except OSError:
                    continue
            return port
        raise RuntimeError(f"all {len(self.ports)} ports of this process's share are in use on {host}")


def ephemeral_ports():
    """The ports the kernel picks from for bind(port 0) and for outgoing connections' local ends."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


@functools.cache
def this_process_ports():
    """A pytest-xdist worker's share (PYTEST_XDIST_WORKER "gw3" of PYTEST_XDIST_WORKER_COUNT); any other process has them all."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    return PortShare.of_worker(worker, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), ephemeral_ports())


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
