"""Small requests: a 2-device GoToState over HTTP, the gateway under gunicorn against a bare baseline.

gateway  the gateway's WSGI application (``gateway/wsgi.py``'s ``application``
         if that file exists, else bench/gateway_app.py: ``Gateway(config.load())``
         with logging configured as ``serve`` does) under gunicorn, talking to a
         loopback upstream stub (bench.common.serve_http: token, login, goToState
         answered at once), with its SQLite store in a temporary directory.
bare     bench/bare_app.py: werkzeug's Request + the lxml floor (bench/floor.py),
         answering the bytes the gateway answered; no upstream call, no store.
bare+upstream  the same plus one PUT of the JSON to the stub (http.client, kept
         alive): for information, what the unavoidable upstream call costs.

Both under the same gunicorn command line (WORKERS workers, the product's
gthread worker class by default), loaded by the same generator in the same
run: wrk (Debian's ``wrk``, with a Lua script for the POST body and headers)
if it is on PATH, else a closed-loop Python client with CONNECTIONS threads.
Rounds: gateway, bare, bare+upstream, then again, DURATION seconds each.

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
    closed_loop,
    cpu_seconds,
    ensure_gunicorn,
    free_port,
    median,
    percentile,
    print_machine,
    print_profile,
    print_table,
    python_module,
    ratio,
    serve_http,
    verdict,
)

RPS_TARGET = 0.75
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


# -- the upstream stub (a child process) ------------------------------------------------------


def serve_upstream(port):
    def answer(method, target, headers, body):
        path = target.split("?", 1)[0]
        payload = UPSTREAM_ANSWERS.get(path)
        if payload is None:
            return 404, "application/json", b'{"errorCode":"NotFound","errorMessage":"not stubbed"}'
        return 200, "application/json", payload

    serve_http(port, answer)


# -- servers ------------------------------------------------------------------------------


def gunicorn(app, port, args, env, log_path):
    argv = python_module(
        "gunicorn",
        "--bind", f"{HOST}:{port}",
        "--workers", args.workers,
        "--worker-class", args.worker_class,
        "--threads", args.threads,
        "--timeout", "60",
        "--graceful-timeout", "10",
        "--log-level", "warning",
        "--chdir", ROOT,
        app,
    )
    return Child(argv, env=env, log_path=log_path, port=port).start()


def gateway_app_name():
    return "gateway.wsgi:application" if (ROOT / "gateway" / "wsgi.py").exists() else "bench.gateway_app:application"


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


# -- the benchmark ----------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per round and variant")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of gateway, bare, bare+upstream")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (wrk -c) or client threads")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class for both variants")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--profile", action="store_true", help="also time and profile both apps in-process (no HTTP server)")
    parser.add_argument("--profile-count", type=int, default=1000)
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--upstream-child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.upstream_child:
        serve_upstream(args.upstream_child)
        return 0
    args.duration = max(1, min(args.duration, 60))
    args.rounds = max(1, min(args.rounds, 5))

    print_machine()
    ensure_gunicorn()
    body = request_body()
    with tempfile.TemporaryDirectory(prefix="m2m-bench-") as tmp:
        workdir = Path(tmp)
        upstream_port, gateway_port, bare_port = free_port(), free_port(), free_port()
        upstream = Child(
            python_module("bench.small_requests", "--upstream-child", upstream_port),
            log_path=workdir / "upstream.log",
            port=upstream_port,
        ).start()
        gateway_env = {
            "M2MGW_UPSTREAM_BASE_URL": f"http://{HOST}:{upstream_port}",
            "M2MGW_STORE_PATH": str(workdir / "gateway.sqlite3"),
            "M2MGW_SERVER_PORT": str(gateway_port),
        }
        app = gateway_app_name()
        gateway = gunicorn(app, gateway_port, args, gateway_env, workdir / "gateway.log")
        status, content_type, answer = check_answer(gateway_port, body)
        if status != 200 or not re.search(rb"RequestId>r</", answer):
            raise SystemExit(f"the gateway did not answer the GoToState as expected: {status} {answer[:300]!r}")
        (workdir / "answer.xml").write_bytes(answer)
        bare_env = {"BENCH_BARE_RESPONSE": str(workdir / "answer.xml"), "BENCH_BARE_CONTENT_TYPE": content_type}
        bare = gunicorn("bench.bare_app:application", bare_port, args, bare_env, workdir / "bare.log")
        bare_upstream_port = free_port()
        bare_upstream = gunicorn(
            "bench.bare_app:application",
            bare_upstream_port,
            args,
            {**bare_env, "BENCH_BARE_UPSTREAM": f"{HOST}:{upstream_port}"},
            workdir / "bare_upstream.log",
        )
        for port in (bare_port, bare_upstream_port):
            if check_answer(port, body)[2] != answer:
                raise SystemExit("the bare app does not answer the gateway's bytes")
        print(
            f"gateway app {app}; gunicorn --workers {args.workers} --worker-class {args.worker_class} --threads {args.threads}; "
            f"load: {args.generator}, {args.connections} connections, {args.duration} s per round; request {len(body)} bytes, "
            f"answer {len(answer)} bytes",
            flush=True,
        )

        results = []
        background = Background([gateway.pid, bare.pid, bare_upstream.pid, upstream.pid])
        for _ in range(args.rounds):
            results.append(measure("gateway", gateway_port, body, args, workdir, {"server": gateway.pid, "upstream stub": upstream.pid}))
            results.append(measure("bare", bare_port, body, args, workdir, {"server": bare.pid}))
            results.append(
                measure("bare+upstream", bare_upstream_port, body, args, workdir, {"server": bare_upstream.pid, "upstream stub": upstream.pid})
            )
        background.stop()
        for child in (bare_upstream, bare, gateway, upstream):
            child.stop()
        gateway_log = gateway.log()

    variants = ("gateway", "bare", "bare+upstream")
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
    rps_ratio = ratio(mean_rps["gateway"], mean_rps["bare"])
    for baseline in ("bare", "bare+upstream"):
        rows.append(
            [
                f"ratio gateway/{baseline}",
                f"{ratio(mean_rps['gateway'], mean_rps[baseline]):.0%}",
                f"{ratio(p50['gateway'], p50[baseline]):.2f}×",
                f"{ratio(p99['gateway'], p99[baseline]):.2f}×",
                "", "", "", "",
            ]
        )
    print_table(
        "small requests: 2-device GoToState over HTTP, gunicorn, same load generator",
        ["variant", "rps", "p50 ms", "p99 ms", "errors", "server CPU ms/req", "stub CPU ms/req", "loadgen CPU ms/req"],
        rows,
        notes=[
            f"rps gateway/bare (mean of {args.rounds} rounds each): {rps_ratio:.0%} (target ≥ {RPS_TARGET:.0%}: "
            f"{verdict(rps_ratio, RPS_TARGET, True)})",
            "bare+upstream (information, no target): the bare app plus the one upstream PUT the gateway cannot avoid, "
            "over a kept-alive http.client connection per thread.",
            "CPU ms/req: user+system CPU of the gunicorn master and workers, of the upstream stub and of the load "
            f"generator during the round, per request; the machine has {os.cpu_count()} CPUs for all of them.",
            background.note(),
        ],
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
        upstream = Child(python_module("bench.small_requests", "--upstream-child", upstream_port), port=upstream_port).start()
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
            "  of it: requests' proxy lookup in os.environ": ("requests/sessions.py", "merge_environment_settings"),
            "store.remember_request (SQLite commit)": ("gateway/store/", "remember_request"),
            "response (Spyne serialize + WCF prefixes)": ("spyne/server/_base.py", "get_out_string_pull"),
            "Spyne's gc.collect() (once a second)": ("~", "<built-in method gc.collect>"),
            "logging (access line)": ("logging/__init__.py", "info"),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
