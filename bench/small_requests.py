"""GoToState over HTTP, the gateway under gunicorn against the floor: a small one under load, a bulk one alone.

Small: a 2-device GoToState from CONNECTIONS closed-loop clients, for
throughput. Bulk: a BULK_DEVICES-device GoToState (3.2 MB), BULK_RUNS times
one after the other, for time and the peak memory it adds to the worker.

gateway  ``python -m gateway serve`` itself, talking to the upstream stub,
         with its SQLite store in a temporary directory.
floor    bench/bare_app.py with an upstream: the least a Python gateway can do
         for the same request: werkzeug's Request, lxml parse, a hand-written
         walk of the envelope (bench/floor.py), ``json.dumps``, one PUT over a
         kept-alive ``http.client`` connection per thread, the gateway's own
         answer bytes as a template.
bare     the floor without the PUT: for information.

The upstream stub is nginx (bench/stub.py: ``return 200`` per path), never the
bottleneck. All three apps run under ``serve``'s own gunicorn line
(gateway/server.py; the floor and bare through bench/served.py: its worker
class, WORKERS workers x THREADS threads, its worker_connections), loaded by the same generator in the same
run: wrk (Debian's ``wrk``, with a Lua script for the POST body and headers)
if it is on PATH, else a closed-loop Python client with CONNECTIONS threads.
Rounds: gateway, floor, bare, then again, DURATION seconds each.

    python -m bench.small_requests [--duration 10] [--rounds 2] [--connections 8]
"""

import argparse
import cProfile
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    HOST,
    ROOT,
    Background,
    Child,
    Connection,
    child_pids,
    closed_loop,
    cpu_seconds,
    ensure_gunicorn,
    free_port,
    median,
    percentile,
    print_machine,
    print_profile,
    print_table,
    print_targets,
    python_module,
    ratio,
)
from bench.bulk_translation import request_body as bulk_request_body
from bench.stub import nginx_stub
from gateway.server import MAX_CONNECTIONS
from gateway.whole_requests import WholeRequestWorker

WORKER_CLASS = f"{WholeRequestWorker.__module__}.{WholeRequestWorker.__name__}"

# Throughput of the gateway as a share of the floor's.
RPS_TARGET = 0.6
# Time and peak memory of the 10,000-device GoToState over HTTP, as multiples of the floor's.
BULK_TIME_TARGET = 1.6
BULK_MEMORY_TARGET = 1.5
SERVICE_PATH = "/api/v2/StateService.svc"
SOAP_ACTION = '"http://nphase.com/unifiedwebservice/v2/IStateService/GoToState"'
HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": SOAP_ACTION}

# What the upstream stub answers: path -> JSON body.
UPSTREAM_ANSWERS = {
    "/api/ts/v1/oauth2/token": b'{"access_token":"t","expires_in":3600}',
    "/api/m2m/v1/session/login": b'{"sessionToken":"s"}',
    "/api/m2m/v1/devices/actions/goToState": b'{"requestId":"r"}',
}


def request_body():
    sys.path.insert(0, str(ROOT))
    from tests import envelopes

    devices = [[("IMEI", "990000862471854"), ("ICCID", "89148000000800000001")], [("MEID", "A1000000444461")]]
    return envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": envelopes.devices_xml(devices)}}, token="s")


# -- servers ------------------------------------------------------------------------------


def serve(app, port, args, env, log_path):
    """``app`` ("gateway": ``python -m gateway serve`` itself; else MODULE:NAME) under serve's gunicorn line."""
    env = {
        **env,
        "M2MGW_SERVER_HOST": HOST,
        "M2MGW_SERVER_PORT": str(port),
        "M2MGW_SERVER_WORKERS": str(args.workers),
        "M2MGW_SERVER_THREADS": str(args.threads),
    }
    argv = python_module("gateway", "serve") if app == "gateway" else python_module("bench.served", app)
    return Child(argv, env=env, log_path=log_path, port=port).start()


# -- load -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def run_wrk(url, body, args, workdir):
    script = workdir / "gotostate.lua"
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot go into a Lua long string")
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{text}]==]"]
    lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in HEADERS.items()]
    script.write_text("\n".join(lines) + "\n")
    argv = [
        "wrk", "-t", str(args.wrk_threads), "-c", str(args.connections), "-d", f"{args.duration}s",
        "--timeout", "5s", "--latency", "-s", str(script), url,
    ]
    output = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 30, check=True).stdout

    def number(pattern, default=None):
        match = re.search(pattern, output)
        if match is None:
            if default is None:
                raise RuntimeError(f"wrk output without {pattern!r}:\n{output}")
            return default
        return match.group(1)

    def latency_ms(p):
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        return float(match.group(1)) * _UNITS[match.group(2)]

    errors = int(number(r"Non-2xx or 3xx responses: (\d+)", "0"))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups()[::3])  # connect and timeout: read/write are closes
    return {
        "requests": int(number(r"(\d+) requests in")),
        "rps": float(number(r"Requests/sec:\s+([\d.]+)")),
        "p50": latency_ms(50),
        "p99": latency_ms(99),
        "errors": errors,
    }


def run_python_client(port, body, args, workdir):
    def send(connection, job):
        status, _ = connection.request("POST", SERVICE_PATH, body, HEADERS)
        return status

    results, elapsed = closed_loop(args.connections, port, send, duration_s=args.duration)
    latencies = [(finished - started) * 1000 for _, started, finished, status in results if status == 200]
    return {
        "requests": len(results),
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "errors": len(results) - len(latencies),
    }


def measure(variant, port, body, args, workdir, watched):
    """One round against ``port``; CPU seconds of the ``watched`` processes and of the load generator."""
    load = run_wrk if args.generator == "wrk" else run_python_client
    before = {name: cpu_seconds(pid) for name, pid in watched.items()}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    result = load(f"http://{HOST}:{port}{SERVICE_PATH}", body, args, workdir) if load is run_wrk else load(port, body, args, workdir)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = {name: cpu_seconds(pid) - before[name] for name, pid in watched.items()}
    if load is run_wrk:
        generator = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    else:
        generator = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    result["cpu"]["load generator"] = generator
    result["variant"] = variant
    return result


def check_answer(port, body):
    import urllib.request

    request = urllib.request.Request(f"http://{HOST}:{port}{SERVICE_PATH}", data=body, headers=HEADERS, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers.get("Content-Type"), response.read()


def measure_bulk(server, body, runs):
    """One warm-up, then ``runs`` bulk requests one after the other on one kept-alive connection (so to one
    worker): the median and p90 ms, and the peak RSS they added to the worker over its RSS before the first
    (the memory a worker keeps after a bulk request is counted as well: malloc rarely gives it back)."""
    workers = child_pids(server.pid)
    for pid in workers:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # each worker's high-water mark to its RSS now
    before = {pid: _status_kb(pid, "VmRSS") for pid in workers}
    connection = Connection(server.port, timeout_s=60)
    times = []
    try:
        for _ in range(runs + 1):
            started = time.perf_counter()
            status, _ = connection.request("POST", SERVICE_PATH, body, HEADERS)
            times.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise SystemExit(f"the bulk GoToState was answered {status}")
    finally:
        connection.close()
    peak_mb = max(_status_kb(pid, "VmHWM") - before[pid] for pid in workers) / 1024
    return {"ms": median(times[1:]), "p90": percentile(times[1:], 90), "peak_mb": peak_mb}


def _status_kb(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


# -- the benchmark ----------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per round and variant")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of gateway, floor, bare")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (wrk -c) or client threads")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers ([server] workers' default)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker ([server] threads' default)")
    parser.add_argument("--profile", action="store_true", help="also time and profile both apps in-process (no HTTP server)")
    parser.add_argument("--profile-count", type=int, default=1000)
    parser.add_argument("--bulk-devices", type=int, default=10_000, help="devices of the bulk GoToState")
    parser.add_argument("--bulk-runs", type=int, default=11, help="bulk requests per variant (after one warm-up)")
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    args = parser.parse_args(argv)
    args.duration = max(1, min(args.duration, 60))
    args.rounds = max(1, min(args.rounds, 5))
    args.bulk_runs = max(1, min(args.bulk_runs, 51))
    args.bulk_devices = max(1, min(args.bulk_devices, 20_000))

    print_machine()
    ensure_gunicorn()
    body = request_body()
    with tempfile.TemporaryDirectory(prefix="m2m-bench-") as tmp:
        workdir = Path(tmp)
        upstream_port, gateway_port, bare_port, floor_port = free_port(), free_port(), free_port(), free_port()
        upstream = nginx_stub(upstream_port, UPSTREAM_ANSWERS, workdir)
        gateway_env = {
            "M2MGW_UPSTREAM_BASE_URL": f"http://{HOST}:{upstream_port}",
            "M2MGW_STORE_PATH": str(workdir / "gateway.sqlite3"),
        }
        gateway = serve("gateway", gateway_port, args, gateway_env, workdir / "gateway.log")
        status, content_type, answer = check_answer(gateway_port, body)
        if status != 200 or not re.search(rb"RequestId>r</", answer):
            raise SystemExit(f"the gateway did not answer the GoToState as expected: {status} {answer[:300]!r}")
        (workdir / "answer.xml").write_bytes(answer)
        bare_env = {"BENCH_BARE_RESPONSE": str(workdir / "answer.xml"), "BENCH_BARE_CONTENT_TYPE": content_type}
        floor = serve(
            "bench.bare_app:application",
            floor_port,
            args,
            {**bare_env, "BENCH_BARE_UPSTREAM": f"{HOST}:{upstream_port}"},
            workdir / "floor.log",
        )
        bare = serve("bench.bare_app:application", bare_port, args, bare_env, workdir / "bare.log")
        for port in (floor_port, bare_port):
            if check_answer(port, body)[2] != answer:
                raise SystemExit("the floor does not answer the gateway's bytes")
        print(
            f"`m2m-gateway serve`'s gunicorn line for all: {args.workers} workers x {args.threads} threads, worker class "
            f"{WORKER_CLASS}, worker_connections {MAX_CONNECTIONS}; upstream stub: nginx; load: {args.generator}, {args.connections} "
            f"connections, {args.duration} s per round; request {len(body)} bytes, answer {len(answer)} bytes",
            flush=True,
        )

        results = []
        background = Background([gateway.pid, floor.pid, bare.pid, upstream.pid])
        for _ in range(args.rounds):
            results.append(measure("gateway", gateway_port, body, args, workdir, {"server": gateway.pid, "upstream stub": upstream.pid}))
            results.append(measure("floor", floor_port, body, args, workdir, {"server": floor.pid, "upstream stub": upstream.pid}))
            results.append(measure("bare", bare_port, body, args, workdir, {"server": bare.pid}))
        bulk_body = bulk_request_body(args.bulk_devices)
        bulk = {name: measure_bulk(server, bulk_body, args.bulk_runs) for name, server in (("gateway", gateway), ("floor", floor))}
        background.stop()
        for child in (bare, floor, gateway, upstream):
            child.stop()
        gateway_log = gateway.log()

    variants = ("gateway", "floor", "bare")
    rows = []
    for number, result in enumerate(results):
        cpu = result["cpu"]
        done = max(result["requests"], 1)
        rows.append(
            [
                f"{result['variant']} (round {number // len(variants) + 1})",
                result["rps"],
                result["p50"],
                result["p99"],
                result["errors"],
                cpu["server"] * 1000 / done,
                cpu.get("upstream stub", 0.0) * 1000 / done,
                cpu["load generator"] * 1000 / done,
            ]
        )
    mean_rps = {v: sum(r["rps"] for r in results if r["variant"] == v) / args.rounds for v in variants}
    p50 = {v: median([r["p50"] for r in results if r["variant"] == v]) for v in variants}
    p99 = {v: median([r["p99"] for r in results if r["variant"] == v]) for v in variants}
    cpu_per_request = {
        v: sum(r["cpu"]["server"] for r in results if r["variant"] == v) * 1000
        / max(sum(r["requests"] for r in results if r["variant"] == v), 1)
        for v in variants
    }
    rps_ratio = ratio(mean_rps["gateway"], mean_rps["floor"])
    for baseline in ("floor", "bare"):
        rows.append(
            [
                f"ratio gateway/{baseline}",
                f"{ratio(mean_rps['gateway'], mean_rps[baseline]):.2f}×",
                f"{ratio(p50['gateway'], p50[baseline]):.2f}×",
                f"{ratio(p99['gateway'], p99[baseline]):.2f}×",
                "",
                f"{ratio(cpu_per_request['gateway'], cpu_per_request[baseline]):.2f}×",
                "", "",
            ]
        )
    print_table(
        "small requests: 2-device GoToState over HTTP, gunicorn, same load generator",
        ["variant", "rps", "p50 ms", "p99 ms", "errors", "server CPU ms/req", "stub CPU ms/req", "loadgen CPU ms/req"],
        rows,
        notes=[
            "floor: lxml parse, a hand-written walk, json.dumps, one PUT over a kept-alive http.client connection, "
            "a template answer; bare (information): the floor without the PUT.",
            "CPU ms/req: user+system CPU of the gunicorn master and workers, of the upstream stub (nginx) and of the load "
            f"generator during the round, per request; the machine has {os.cpu_count()} CPUs for all of them.",
        ],
    )
    bulk_time, bulk_memory = (ratio(bulk["gateway"][key], bulk["floor"][key]) for key in ("ms", "peak_mb"))
    print_table(
        f"bulk GoToState over HTTP: {args.bulk_devices:,} devices, {len(bulk_body):,} bytes, {args.bulk_runs} requests "
        "one after the other",
        ["variant", "median ms", "p90 ms", "peak RSS added MB"],
        [[name, result["ms"], result["p90"], result["peak_mb"]] for name, result in bulk.items()]
        + [["ratio gateway/floor", f"{bulk_time:.2f}×", f"{ratio(bulk['gateway']['p90'], bulk['floor']['p90']):.2f}×", f"{bulk_memory:.2f}×"]],
        notes=[
            "peak RSS added: the serving worker's high-water mark (VmHWM, reset before) minus its RSS before the "
            "requests (the warm-up included: what malloc keeps after one counts too), lxml's tree included."
        ],
    )
    errors = sum(r["errors"] for r in results)
    print_targets(
        "GoToState over HTTP",
        [
            (
                f"2-device GoToState throughput (mean of {args.rounds} rounds)",
                f"≥ {RPS_TARGET:.1f}× the floor",
                f"{rps_ratio:.2f}× ({mean_rps['gateway']:,.0f} vs {mean_rps['floor']:,.0f} rps)",
                rps_ratio >= RPS_TARGET,
            ),
            (
                f"{args.bulk_devices:,}-device GoToState time (median)",
                f"≤ {BULK_TIME_TARGET:.1f}× the floor",
                f"{bulk_time:.2f}× ({bulk['gateway']['ms']:,.0f} vs {bulk['floor']['ms']:,.0f} ms)",
                bulk_time <= BULK_TIME_TARGET,
            ),
            (
                f"{args.bulk_devices:,}-device GoToState peak memory",
                f"≤ {BULK_MEMORY_TARGET:.1f}× the floor",
                f"{bulk_memory:.2f}× ({bulk['gateway']['peak_mb']:,.1f} vs {bulk['floor']['peak_mb']:,.1f} MB)",
                bulk_memory <= BULK_MEMORY_TARGET,
            ),
            ("errors (non-2xx, socket)", "0", f"{errors}", errors == 0),
        ],
        background,
    )
    problems = [line for line in gateway_log.splitlines() if " ERROR " in line or "Traceback" in line]
    if problems:
        print(f"\ngateway log: {len(problems)} error lines, first: {problems[0][:300]}")
    if args.profile:
        profile(body, args.profile_count)
    return 0


# -- in-process: cost per request without the HTTP server -------------------------------------------


def profile(body, count):
    """Both WSGI apps called through werkzeug's test client in this process, one thread:
    wall and CPU ms per request, then cProfile of the gateway's."""
    from werkzeug.test import Client

    with tempfile.TemporaryDirectory(prefix="m2m-bench-") as tmp:
        workdir = Path(tmp)
        upstream_port = free_port()
        upstream = nginx_stub(upstream_port, UPSTREAM_ANSWERS, workdir)
        environ = {
            **os.environ,
            "M2MGW_UPSTREAM_BASE_URL": f"http://{HOST}:{upstream_port}",
            "M2MGW_STORE_PATH": str(workdir / "gateway.sqlite3"),
        }
        from gateway import config, logs
        from gateway.app import Gateway

        settings = config.load(environ=environ)
        with open(workdir / "gateway.log", "w") as log:
            logs.configure(settings.logging.format, settings.logging.level, stream=log)  # as in the server
            gateway_app = Gateway(settings)
            gateway = Client(gateway_app)
            answer = gateway.post(SERVICE_PATH, data=body, headers=HEADERS)
            (workdir / "answer.xml").write_bytes(answer.data)
            os.environ["BENCH_BARE_RESPONSE"] = str(workdir / "answer.xml")
            from bench import bare_app

            bare = Client(bare_app.application)
            rows = []
            for name, client in (("gateway", gateway), ("bare", bare)):
                for _ in range(50):  # warm-up
                    client.post(SERVICE_PATH, data=body, headers=HEADERS)
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(count):
                    client.post(SERVICE_PATH, data=body, headers=HEADERS)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rows.append([name, wall * 1000 / count, cpu * 1000 / count, count / wall])
            rows.append(["ratio gateway/bare", f"{rows[0][1] / rows[1][1]:.2f}×", f"{rows[0][2] / rows[1][2]:.2f}×", f"{rows[0][3] / rows[1][3]:.0%}"])
            print_table(
                f"in-process, one thread, werkzeug test client, no HTTP server ({count:,} requests each)",
                ["app", "wall ms/req", "CPU ms/req", "req/s"],
                rows,
                notes=["gateway: the whole WSGI stack of gateway.app.Gateway with the loopback upstream stub and the SQLite store."],
            )

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(count):
                gateway.post(SERVICE_PATH, data=body, headers=HEADERS)
            profiler.disable()
            gateway_app.close(timeout=5)
        upstream.stop()
    print_profile(
        profiler,
        count,
        "gateway, one small GoToState",
        focus={
            "whole WSGI call": ("gateway/app.py", "__call__"),
            "SOAP parse + split + dispatch": ("spyne/server/_base.py", "generate_contexts"),
            "strict read (deserialize)": ("spyne/server/_base.py", "get_in_object"),
            "to_rest": ("gateway/translate/gotostate.py", "to_rest"),
            "upstream call (ThingSpace.go_to_state)": ("gateway/thingspace.py", "go_to_state"),
            "  of it: the exchange (outbound.KeptAlive.request)": ("gateway/outbound.py", "request"),
            "request memory (queued for its writer)": ("gateway/request_memory.py", "remember"),
            "response (Spyne serialize + WCF prefixes)": ("spyne/server/_base.py", "get_out_string_pull"),
            "Spyne's gc.collect() (once a second)": ("~", "<built-in method gc.collect>"),
            "logging (access line)": ("logging/__init__.py", "info"),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
