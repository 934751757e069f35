"""What the three benchmarks share: ports, child processes, statistics, tables, a tiny HTTP server.

Everything listens on 127.0.0.1 only. Every child process started here is
remembered by its PID, runs in a process group of its own and is ended by
that PID only (SIGTERM, then SIGKILL to its group after a bounded wait; see
gateway/processes.py), also when the benchmark itself fails (atexit).
"""

import asyncio
import atexit
import datetime
import http.client
import importlib.util
import math
import os
import platform
import pstats
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway import processes
from gateway.processes import free_port, wait_for_port  # noqa: F401  (free_port: for the benchmarks)

ROOT = processes.ROOT
HOST = processes.LOOPBACK
STARTUP_TIMEOUT_S = 30
STOP_TIMEOUT_S = processes.STOP_TIMEOUT_S

_children = []


# -- ports and processes ----------------------------------------------------------


class Child:
    """A process this benchmark started; stopped by its PID only."""

    def __init__(self, argv, *, env=None, log_path=None, port=None, cwd=ROOT):
        self.argv = [str(arg) for arg in argv]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.port = port
        self.cwd = cwd
        self.popen = None

    @property
    def pid(self):
        return self.popen.pid

    def start(self):
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                process_group=0,  # its own: stopping it never signals this benchmark's group
            )
        finally:
            if self.log_path:
                log.close()
        _children.append(self)
        if self.port is not None:
            try:
                wait_for_port(self.port, [self.popen], timeout_s=STARTUP_TIMEOUT_S)
            except Exception:
                self.stop()
                raise
        return self

    def stop(self, timeout_s=STOP_TIMEOUT_S):
        if self.popen is not None:
            processes.stop(self.popen, timeout_s)

    def log(self):
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def ensure_gunicorn():
    """gunicorn in this interpreter's environment, installed with pip if missing (benchmark setup only)."""
    if importlib.util.find_spec("gunicorn") is None:
        print("gunicorn is not installed: pip install 'gunicorn>=22,<24' (it belongs in setup.cfg)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "gunicorn>=22,<24"], check=True, timeout=300)


def python_module(module, *args):
    """argv running ``python -m module args`` with this interpreter (the venv's under make)."""
    return [sys.executable, "-m", module, *args]


def _exit_on_sigterm(signum, frame):
    sys.exit(128 + signum)  # through atexit, so that the children are stopped too


if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)


@atexit.register
def _stop_children():
    for child in reversed(_children):
        try:
            child.stop(timeout_s=5)
        except Exception:  # best effort at exit; never hide the real error
            pass


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, with_children=True):
    """User + system CPU seconds of ``pid`` and (optionally) its live direct children, from /proc."""
    total = _own_cpu(pid)
    if with_children:
        for child in child_pids(pid):
            total += _own_cpu(child)
    return total


def _stat_fields(pid):
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def _own_cpu(pid):
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def child_pids(pid):
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(entry)[1]) == pid:
                    children.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return children


def _cpu_times():
    """(busy, steal) CPU seconds of all CPUs since boot (/proc/stat): busy whoever used them, steal included."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS, steal / _CLOCK_TICKS


def load_average():
    """The 1-minute load average (runnable processes, averaged)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def own_cpu_seconds():
    """CPU seconds of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Background:
    """How busy the machine was with other people's work while we measured.

    ``others_cores`` = (all CPUs' busy time - ours) / elapsed, where ours is
    this process, its reaped children and the live process trees (pids) given
    to ``stop``. Others share this machine; a benchmark run while they are
    busy is slower, and this says by how much it could have been disturbed.
    Also the 1-minute load average before and at the end (it includes our
    own processes), and the CPU time the hypervisor stole meanwhile.
    """

    def __init__(self, pids=()):
        self.pids = list(pids)
        self.load_before = load_average()
        self.started = time.monotonic()
        self.busy, self.steal = _cpu_times()
        self.own = own_cpu_seconds()
        self.trees = {pid: cpu_seconds(pid) for pid in self.pids}
        self.others_cores = self.steal_cores = self.load_after = math.nan
        self.elapsed = math.nan

    def stop(self):
        self.elapsed = time.monotonic() - self.started
        ours = own_cpu_seconds() - self.own + sum(cpu_seconds(pid) - before for pid, before in self.trees.items())
        busy, steal = _cpu_times()
        others = busy - self.busy - ours
        self.others_cores = max(0.0, others) / self.elapsed if self.elapsed > 0 else math.nan
        self.steal_cores = (steal - self.steal) / self.elapsed if self.elapsed > 0 else math.nan
        self.load_after = load_average()
        return self

    def note(self):
        return (
            f"machine while measuring: {self.others_cores:.2f} of {os.cpu_count()} CPUs busy with processes not started "
            f"by this benchmark (0 = a quiet machine), {self.steal_cores:.2f} CPUs stolen by the hypervisor; load "
            f"average {self.load_before:.2f} before, {self.load_after:.2f} at the end (ours included)"
        )


# -- statistics ---------------------------------------------------------------------


def percentile(values, p):
    """The ``p``-th percentile (0..100) of ``values``, interpolated linearly (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values):
    return percentile(values, 50)


def ratio(numerator, denominator):
    return numerator / denominator if denominator else math.nan


# -- a closed-loop HTTP client ---------------------------------------------------------


class Connection:
    """One keep-alive connection to 127.0.0.1:port, reopened when the server closes it."""

    def __init__(self, port, timeout_s=10):
        self._port, self._timeout_s = port, timeout_s
        self._http = None

    def request(self, method, path, body, headers):
        """(status, body bytes); raises OSError / http.client errors after one reconnect."""
        for attempt in (1, 2):
            if self._http is None:
                self._http = http.client.HTTPConnection(HOST, self._port, timeout=self._timeout_s)
            try:
                self._http.request(method, path, body=body, headers=headers)
                response = self._http.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # a kept-alive connection the server had closed: once more on a new one
                if attempt == 2:
                    raise

    def close(self):
        if self._http is not None:
            self._http.close()
            self._http = None


def closed_loop(threads, port, send, *, duration_s=None, jobs=None, timeout_s=10):
    """``threads`` clients, each sending its next request as soon as the last one is answered.

    ``send(connection, job) -> status`` does one request. Bounded: until
    ``duration_s`` has passed, or until the ``jobs`` list is used up (each job
    once), whichever is given (both: whichever comes first). Returns
    ``(results, elapsed_s)``; results are ``(job, started, finished, status)``
    with ``time.monotonic()`` times, status None when the request failed.
    """
    if duration_s is None and jobs is None:
        raise ValueError("closed_loop needs duration_s or jobs: every loop is bounded")
    lock = threading.Lock()
    pending = iter(jobs) if jobs is not None else None
    results = []
    started = time.monotonic()
    deadline = started + duration_s if duration_s is not None else math.inf

    def client():
        connection = Connection(port, timeout_s)
        mine = []
        try:
            while time.monotonic() < deadline:
                if pending is None:
                    job = None
                else:
                    with lock:
                        job = next(pending, StopIteration)
                    if job is StopIteration:
                        break
                began = time.monotonic()
                try:
                    status = send(connection, job)
                except (OSError, http.client.HTTPException):
                    connection.close()
                    status = None
                mine.append((job, began, time.monotonic(), status))
        finally:
            connection.close()
            with lock:
                results.extend(mine)

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return results, time.monotonic() - started


# -- output -------------------------------------------------------------------------


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def print_machine():
    info = machine()
    print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, Linux {info['kernel']}, {info['date']}")


def print_table(title, headers, rows, notes=()):
    """A Markdown table (readable in a terminal, pasteable into RESULTS.md)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) if cells else len(str(h)) for i, h in enumerate(headers)]
    print()
    print(f"### {title}")
    print()
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(value.rjust(w) if _numeric(value) else value.ljust(w) for value, w in zip(row, widths)) + " |")
    for note in notes:
        print(f"\n{note}")
    sys.stdout.flush()


def _cell(value):
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _numeric(text):
    return text.replace(",", "").replace(".", "").replace("%", "").replace("×", "").replace("-", "").isdigit()


def verdict(value, target, higher_is_better):
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else "MISSES"


def print_targets(title, rows, background):
    """Each figure beside its target: rows of (measure, target text, measured text, met)."""
    print_table(
        f"{title}: against the targets",
        ["measure", "target", "measured", "met?"],
        [[measure, target, measured, "meets" if met else "MISSES"] for measure, target, measured, met in rows],
        notes=[background.note()],
    )


def print_profile(profiler, requests, title, top=10, focus=None):
    """cProfile's view as tables: the ``top`` functions by own time, and the cumulative
    share of the ``focus`` functions ({label: (part of the file's path, function name)})."""
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    entries = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    rows = []
    for (path, line, function), (_, calls, own, cumulative, _) in entries:
        where = f"{_short_path(path)}:{line}" if line else _short_path(path)
        rows.append(
            [f"{function} ({where})", f"{calls / requests:,.1f}", own / requests * 1000, f"{own / total:.1%}", f"{cumulative / total:.1%}"]
        )
    print_table(
        f"{title}: top {top} functions by own time ({requests:,} requests profiled, "
        f"{total / requests * 1000:.2f} ms each under the profiler)",
        ["function", "calls/request", "own ms/request", "own share", "cumulative share"],
        rows,
    )
    if focus:
        rows = []
        for label, (suffix, name) in focus.items():
            # max, not sum: an override calling its base (both matching) would count twice
            cumulative = max(
                (entry[3] for (path, _, function), entry in stats.stats.items() if function == name and suffix in path),
                default=0.0,
            )
            rows.append([label, f"{name} ({suffix})", cumulative / requests * 1000, f"{cumulative / total:.1%}"])
        print_table(f"{title}: where the time goes (cumulative, inclusive of callees)", ["part", "function", "ms/request", "share"], rows)


def _short_path(path):
    for marker in ("site-packages/", str(ROOT) + "/", f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# -- a tiny HTTP/1.1 server ------------------------------------------------------------


def serve_http(port, handler, on_ready=None):
    """Serve ``handler(method, target, headers, body) -> (status, content_type, body)`` on 127.0.0.1:port.

    Single-threaded asyncio, keep-alive, Content-Length bodies only: about as
    cheap as a Python HTTP server gets, so that the peer it stands in for (the
    upstream, a listener) takes as little CPU from the measured process as
    possible. Runs until SIGTERM or SIGINT.
    """

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        server = await loop.create_server(lambda: _HttpProtocol(handler), HOST, port, backlog=1024)
        if on_ready:
            on_ready()
        async with server:
            await stop

    asyncio.run(main())


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required"}
MAX_HEAD_BYTES = 65536
MAX_BODY_BYTES = 1 << 24


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, handler):
        self._handler = handler
        self._buffer = bytearray()
        self._transport = None

    def connection_made(self, transport):
        self._transport = transport

    def data_received(self, data):
        self._buffer += data
        while self._transport is not None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._reply(400, "text/plain", b"head too large", keep_alive=False)
                return
            lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self._reply(400, "text/plain", b"bad request line", keep_alive=False)
                return
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._reply(411, "text/plain", b"Content-Length bodies only", keep_alive=False)
                return
            length = int(headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(400, "text/plain", b"body too large", keep_alive=False)
                return
            if len(self._buffer) < end + 4 + length:
                return
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            status, content_type, payload = self._handler(method, target, headers, body)
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            self._reply(status, content_type, payload, keep_alive)

    def _reply(self, status, content_type, payload, keep_alive):
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode("latin-1")
        self._transport.write(head + payload)
        if not keep_alive:
            self._transport.close()
            self._transport = None

    def connection_lost(self, exc):
        self._transport = None
