"""Bulk translation: a 10,000-device GoToState from request bytes to REST JSON bytes, in-process.

gateway  the gateway's real request path up to the upstream call, driven through
         the real Spyne objects: a ``ServiceEndpoint(GatewayApplication(StateService))``
         (the object the gateway mounts at /api/v2/StateService.svc), a
         ``WsgiMethodContext`` per request, and its ``WcfSoap11`` protocol's
         ``create_in_document`` (envelope.parse), ``decompose_incoming_envelope``
         (envelope.split), ``generate_method_contexts`` (dispatch + SOAPAction rule)
         and ``deserialize`` (deserializer.read against GoToState's in-message), then
         ``gotostate.to_rest`` and ``json.dumps(..., allow_nan=False).encode()``
         (what ``requests`` does with ``json=``). No network, no store.
floor    ``lxml.etree.fromstring`` + a hand-written loop collecting the same data +
         ``json.dumps``; its bytes are checked equal to the gateway's.

Time: median and p90 of RUNS interleaved runs (floor, gateway, floor, ...) after
a warm-up, gc.collect() before each (untimed); wall time, and CPU time of this
process (process_time), which other processes taking the CPU do not inflate.

Memory: each variant runs once in a fresh child process (setup identical for
both: imports, body, endpoint);
/proc/self/clear_refs resets the RSS high-water mark after setup, and the peak
is VmHWM minus VmRSS at that point, i.e. what the request added at its worst
(lxml's tree included, which tracemalloc cannot see). The tracemalloc peak of a
second run in the same child is shown too (Python objects only). Median of
MEMORY_REPS children per variant.

    python -m bench.bulk_translation [--runs 21] [--devices 10000] [--profile]
"""

import argparse
import cProfile
import gc
import json
import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from bench.common import ROOT, Background, median, percentile, print_machine, print_profile, print_table, ratio, verdict
from bench.floor import to_rest_json as floor

# The targets are over HTTP (bench/small_requests.py's bulk GoToState); in process, for where the time goes.
TIME_TARGET = 1.6
MEMORY_TARGET = 1.5
MEMORY_REPS = 3
CHILD_TIMEOUT_S = 120
GO_TO_STATE_ACTION = '"http://nphase.com/unifiedwebservice/v2/IStateService/GoToState"'


def request_body(devices):
    """The GoToState envelope of tests/envelopes.py with ``devices`` devices, two identifiers each."""
    sys.path.insert(0, str(ROOT))
    from tests import envelopes

    device_list = [[("IMEI", f"99000086{n:07d}"), ("ICCID", f"891480000008{n:08d}")] for n in range(devices)]
    fields = {**envelopes.VALID, "DeviceList": {"xml": envelopes.devices_xml(device_list)}}
    return envelopes.go_to_state(fields, token="bench-session-token")


# -- the gateway's path ------------------------------------------------------------------


class GatewayPath:
    """The StateService endpoint as the gateway builds it, driven request by request."""

    STAGES = ("parse", "split", "dispatch", "deserializer read", "to_rest", "json")

    def __init__(self, default_mdn_zip_code=None):
        from spyne.server.wsgi import WsgiMethodContext

        from gateway.app import service_path
        from gateway.soap.application import GatewayApplication, ServiceEndpoint
        from gateway.soap.services import StateService
        from gateway.translate import gotostate

        self._context = WsgiMethodContext
        self._to_rest = gotostate.to_rest
        self._zip = default_mdn_zip_code
        path = service_path("StateService")
        self.endpoint = ServiceEndpoint(GatewayApplication(StateService), path, 16 << 20)
        self.protocol = self.endpoint.app.in_protocol
        self.environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": path,
            "PATH_INFO": "",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "text/xml; charset=utf-8",
            "HTTP_SOAPACTION": GO_TO_STATE_ACTION,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8080",
            "wsgi.url_scheme": "http",
        }

    def __call__(self, body, stages=None):
        """REST JSON bytes for ``body``; adds each stage's seconds to ``stages`` (a dict) if given."""
        clock = time.perf_counter
        t0 = clock()
        ctx = self._context(self.endpoint, self.environ, self.protocol.mime_type)
        ctx.in_string = [body]
        protocol = self.protocol
        protocol.create_in_document(ctx)  # envelope.parse
        t1 = clock()
        protocol.decompose_incoming_envelope(ctx, protocol.REQUEST)  # envelope.split
        t2 = clock()
        ctx = protocol.generate_method_contexts(ctx)[0]  # dispatch on the body element, SOAPAction rule
        t3 = clock()
        protocol.deserialize(ctx, protocol.REQUEST)  # deserializer.read on the in-message
        t4 = clock()
        (request,) = ctx.in_object
        if not ctx.in_header:
            raise AssertionError("the token header was not read")
        rest = self._to_rest(request, self._zip)
        t5 = clock()
        out = json.dumps(rest, allow_nan=False).encode("utf-8")
        t6 = clock()
        if stages is not None:
            for name, seconds in zip(self.STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                stages[name] = stages.get(name, 0.0) + seconds
        return out


# -- memory, one child process per measurement ------------------------------------------------


def _status_kb(key):
    return int(re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def measure_memory_here(variant, devices):
    """In this (fresh) process: peak RSS added by one request, then the tracemalloc peak of another."""
    body = request_body(devices)
    gateway = GatewayPath()  # built in both variants so that both children start alike
    run = gateway if variant == "gateway" else floor
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = _status_kb("VmRSS")
    out = run(body)
    peak = _status_kb("VmHWM")
    del out
    gc.collect()
    tracemalloc.start()
    out = run(body)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rss_peak_mb": (peak - baseline) / 1024, "baseline_mb": baseline / 1024, "traced_peak_mb": traced_peak / 2**20}


def measure_memory(variant, devices):
    argv = [sys.executable, "-m", "bench.bulk_translation", "--memory-child", variant, "--devices", str(devices)]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the benchmark ---------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs per variant (at least 11)")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true", help="also cProfile the gateway variant")
    parser.add_argument("--profile-top", type=int, default=10)
    parser.add_argument("--memory-child", choices=("floor", "gateway"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(measure_memory_here(args.memory_child, args.devices)))
        return 0
    runs = max(args.runs, 11)

    print_machine()
    body = request_body(args.devices)
    gateway = GatewayPath()
    expected = gateway(body)
    if floor(body) != expected:
        raise SystemExit("the floor does not produce the gateway's JSON: fix the floor before comparing")
    print(f"request: {args.devices:,} devices, {len(body):,} bytes of XML -> {len(expected):,} bytes of JSON")

    background = Background()
    variants = {"floor": floor, "gateway": gateway}
    times = {name: [] for name in variants}
    cpu_times = {name: [] for name in variants}
    stages = {name: {} for name in variants}
    for run in variants.values():  # warm-up
        run(body)
    for _ in range(runs):
        for name, run in variants.items():
            gc.collect()
            started, cpu_started = time.perf_counter(), time.process_time()
            run(body, stages[name])
            times[name].append(time.perf_counter() - started)
            cpu_times[name].append(time.process_time() - cpu_started)

    memory = {name: [] for name in variants}
    for _ in range(MEMORY_REPS):
        for name in variants:
            memory[name].append(measure_memory(name, args.devices))

    background.stop()

    def mem(name, key):
        return median([m[key] for m in memory[name]])

    rows = []
    for name in variants:
        rows.append(
            [
                name,
                median(times[name]) * 1000,
                percentile(times[name], 90) * 1000,
                median(cpu_times[name]) * 1000,
                mem(name, "rss_peak_mb"),
                mem(name, "traced_peak_mb"),
            ]
        )
    time_ratio = ratio(median(times["gateway"]), median(times["floor"]))
    memory_ratio = ratio(mem("gateway", "rss_peak_mb"), mem("floor", "rss_peak_mb"))
    traced_ratio = ratio(mem("gateway", "traced_peak_mb"), mem("floor", "traced_peak_mb"))
    cpu_ratio = ratio(median(cpu_times["gateway"]), median(cpu_times["floor"]))
    rows.append(
        [
            "ratio gateway/floor",
            f"{time_ratio:.2f}×",
            f"{ratio(rows[1][2], rows[0][2]):.2f}×",
            f"{cpu_ratio:.2f}×",
            f"{memory_ratio:.2f}×",
            f"{traced_ratio:.2f}×",
        ]
    )
    print_table(
        f"bulk translation: GoToState, {args.devices:,} devices, request bytes -> REST JSON bytes ({runs} runs each, interleaved)",
        ["variant", "median ms", "p90 ms", "median CPU ms", "peak RSS MB", "tracemalloc peak MB"],
        rows,
        notes=[
            f"time: gateway/floor {time_ratio:.2f}× (target ≤ {TIME_TARGET:g}×: {verdict(time_ratio, TIME_TARGET, False)}); "
            f"memory (peak RSS added, child process per variant, median of {MEMORY_REPS}): {memory_ratio:.2f}× "
            f"(target ≤ {MEMORY_TARGET:g}×: {verdict(memory_ratio, MEMORY_TARGET, False)})",
            f"CPU time (process_time, not disturbed by other processes taking the CPU): gateway/floor {cpu_ratio:.2f}×.",
            "gateway = real WcfSoap11 protocol objects via a WsgiMethodContext; tracemalloc sees Python objects only, not lxml's tree.",
            background.note(),
        ],
    )

    stage_rows = []
    for name in variants:
        total = sum(stages[name].values())
        for stage, seconds in stages[name].items():
            stage_rows.append([name, stage, seconds / runs * 1000, f"{seconds / total:.0%}"])
    print_table("where the time goes, by stage (mean ms per request)", ["variant", "stage", "ms", "share"], stage_rows)

    if args.profile:
        profile(gateway, body, args.profile_top)
    return 0


def profile(gateway, body, top, runs=5):
    """cProfile of the gateway variant."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        gateway(body)
    profiler.disable()
    print_profile(
        profiler,
        runs,
        "cProfile of the gateway variant (profiler overhead inflates per-call costs)",
        top,
        focus={
            "parse (envelope.parse)": ("gateway/soap/envelope.py", "parse"),
            "deserializer read (deserializer.read)": ("gateway/soap/deserializer.py", "read"),
            "to_rest": ("gateway/translate/gotostate.py", "to_rest"),
            "json.dumps": ("json/__init__.py", "dumps"),
        },
    )


if __name__ == "__main__":
    sys.exit(main())
