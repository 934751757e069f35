"""Callback bridge: REST callbacks posted to the gateway's receiver, delivered as SOAP to a listener.

A real ``python -m gateway serve`` process (its default serving, SQLite store in
a temporary directory, callback credentials from M2MGW_CALLBACKS_USERNAME /
PASSWORD, the listener's registration written into the store file before it
starts) receives COUNT distinct goToState callbacks from C closed-loop posters:
wrk (Debian's, with bench/post_callbacks.lua: a thread and a connection per
poster, each callback posted once) if it is on PATH, else C threads of this
process (--generator python). The posters share the machine's CPUs with the
gateway: the Python ones take 0.2-0.3 ms of CPU a callback, wrk less than
0.1 ms. A local listener (a child process, bench.common.serve_http) answers
200 at once and timestamps each arrival. Times are CLOCK_MONOTONIC, which all
processes of the machine share.

accepted/s   2xx answers (each one a callback committed to the store) per second,
             from the first post to the last 2xx
delivered/s  callbacks that reached the listener per second, from the first post
             to the last arrival
latency      listener arrival - the poster's 2xx, matched by requestId

The listener (asyncio, one thread) costs about 0.1 ms of CPU a callback: at
1,000/s a tenth of a CPU, never the bottleneck; its CPU is reported.

The paced phase (--paced-count callbacks at --paced-rate/s, 4 connections) is
paced by the same posters: the Lua script's delay(), or the Python threads' sleep.

    python -m bench.callback_bridge [--count 5000] [--posters 8] [--store sqlite|postgresql] [--generator wrk|python] [--profile]
"""

import argparse
import contextlib
import cProfile
import functools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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
    own_cpu_seconds,
    percentile,
    print_machine,
    print_profile,
    print_table,
    print_targets,
    python_module,
    serve_http,
)

ACCEPTED_TARGET = 1000
DELIVERED_TARGET = 1000
P50_TARGET_MS = 50
ACCOUNT = "0000123456-00001"
SERVICE = "StateService"
CALLBACK_PATH = f"/callbacks/thingspace/{ACCOUNT}/{SERVICE}"
CALLBACK_USERNAME = "bench-thingspace"
CALLBACK_PASSWORD = "bench-callback-password"
WARM_UP = 50
DRAIN_TIMEOUT_S = 180
POST_TIMEOUT_S = 240
PACED_POSTERS = 4
WRK_SCRIPT = ROOT / "bench" / "post_callbacks.lua"
_REQUEST_ID = re.compile(rb"<RequestId>([^<]*)</RequestId>")


def callback(request_id, number):
    """A goToState callback as ThingSpace posts it (the shape of the REST document's example)."""
    imei = f"99000086{number:07d}"
    iccid = f"891480000008{number:08d}"
    return {
        "requestId": request_id,
        "deviceIds": [{"id": imei, "kind": "imei"}],
        "deviceResponse": {
            "goToStateResponse": {
                "deviceIds": [{"id": imei, "kind": "imei"}, {"id": iccid, "kind": "iccid"}, {"id": f"5555{number:06d}", "kind": "mdn"}],
                "ipAddress": "10.0.0.1",
                "servicePlan": "4G East",
                "accountName": ACCOUNT,
                "serviceName": "fast1",
                "stateName": "new active",
                "stageStateChangeReasonCode": "",
                "stageStateChangeReasonDesc": "",
            }
        },
        "status": "Success",
        "callbackCount": 1,
        "maxCallbackThreshold": 4,
        "username": CALLBACK_USERNAME,
        "password": CALLBACK_PASSWORD,
    }


# -- the listener (a child process) -----------------------------------------------------------


def serve_listener(port):
    arrivals = []  # (monotonic time, requestId)

    def answer(method, target, headers, body):
        if method == "POST":
            match = _REQUEST_ID.search(body)
            arrivals.append((time.monotonic(), match.group(1).decode() if match else None))
            return 200, "text/xml", b""
        if target.startswith("/_count"):
            return 200, "application/json", str(len(arrivals)).encode()
        if target.startswith("/_arrivals"):
            return 200, "application/json", json.dumps(arrivals).encode()
        return 404, "text/plain", b""

    serve_http(port, answer)


def _get(port, path):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def wait_for_arrivals(port, count, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _get(port, "/_count") >= count:
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def store_location(kind, workdir):
    """(a function opening the store, the gateway's environment naming it, the PID of the store's server
    or None) for a SQLite file in ``workdir`` or a database of a PostgreSQL server of this run's own
    (stopped by PID at the end), whose CPU is counted as this run's, not as others'."""
    from gateway.store import PostgresStore, SqliteStore

    if kind == "sqlite":
        path = workdir / "gateway.sqlite3"
        yield (lambda: SqliteStore(path)), {"M2MGW_STORE_PATH": str(path)}, None
        return
    sys.path.insert(0, str(ROOT))
    from tests.conftest_postgres import PostgresServer, postgres_bin_dir

    if postgres_bin_dir() is None:
        raise SystemExit("PostgreSQL is not installed: `make test` installs it")
    server = PostgresServer(postgres_bin_dir(), tempfile.mkdtemp(prefix="m2m-bench-postgres-")).start()
    try:
        url = server.create_database()
        yield (lambda: PostgresStore(url)), {"M2MGW_STORE_URL": url}, server.pid
    finally:
        server.stop()


# -- posting ----------------------------------------------------------------------------------


def post_all(generator, port, jobs, posters, rate=None, workdir=None):
    """Post each job ((requestId, body)) once from ``posters`` closed-loop connections, job n not before
    n / ``rate`` seconds after the first when paced. Returns (results, CPU seconds of the posters):
    results are (job, first try, answer, status) with time.monotonic() times, status None when the
    connection failed twice; a job never posted (the time bound ran out) has none."""
    if generator == "wrk":
        return post_with_wrk(port, jobs, posters, rate, workdir)
    return post_with_threads(port, jobs, posters, rate)


def post_with_threads(port, jobs, posters, rate):
    headers = {"Content-Type": "application/json"}
    cpu = own_cpu_seconds()
    started = time.monotonic()

    def send(connection, job):
        if rate:
            time.sleep(max(0.0, started + job[2] / rate - time.monotonic()))
        status, _ = connection.request("POST", CALLBACK_PATH, job[1], headers)
        return status

    numbered = [(rid, body, number) for number, (rid, body) in enumerate(jobs)]
    results, _ = closed_loop(posters, port, send, jobs=numbered, duration_s=POST_TIMEOUT_S)
    return [(job[:2], *rest) for job, *rest in results], own_cpu_seconds() - cpu


def post_with_wrk(port, jobs, posters, rate, workdir):
    """wrk with bench/post_callbacks.lua, one thread per connection; its records read back."""
    bodies, records, answered = workdir / "callbacks.jsonl", workdir / "posted.txt", workdir / "answered"
    if any(b"\n" in body for _, body in jobs):
        raise ValueError("a body with a line break cannot go into the bodies file")
    bodies.write_bytes(b"".join(body + b"\n" for _, body in jobs))
    records.unlink(missing_ok=True)
    answered.unlink(missing_ok=True)
    env = {
        **os.environ,
        "BENCH_CALLBACK_BODIES": str(bodies),
        "BENCH_CALLBACK_RECORDS": str(records),
        "BENCH_CALLBACK_ANSWERED": str(answered),
    }
    if rate:
        env["BENCH_CALLBACK_RATE"] = str(rate)
    connections = min(posters, len(jobs))
    argv = [
        "wrk", "-t", str(connections), "-c", str(connections), "-d", f"{POST_TIMEOUT_S}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), f"http://{HOST}:{port}{CALLBACK_PATH}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as wrk:
        output = _until_answered(wrk, answered, POST_TIMEOUT_S + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if wrk.returncode != 0 or not records.exists():
        raise SystemExit(f"wrk failed ({wrk.returncode}):\n{output}")
    results = []
    for line in records.read_text().splitlines():
        number, status, first_try, answer = line.split()
        results.append((jobs[int(number) - 1], float(first_try), float(answer), int(status) or None))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return results, cpu


def _until_answered(wrk, answered, timeout_s):
    """wrk's output once it has ended: by SIGINT, again and again until it does, once the ``answered`` file
    says every callback is (before wrk's handler is in place a SIGINT is ignored), or by -d; killed after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return wrk.communicate(timeout=0.05)[0]
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                wrk.kill()
                raise
            if answered.exists():
                wrk.send_signal(signal.SIGINT)


def jobs_for(prefix, count):
    return [(f"{prefix}-{n:06d}", json.dumps(callback(f"{prefix}-{n:06d}", n)).encode()) for n in range(count)]


# -- the benchmark ----------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="callbacks to post (at most 50,000)")
    parser.add_argument("--posters", type=int, default=8, help="concurrent posters (C)")
    parser.add_argument("--paced-rate", type=float, default=100, help="callbacks per second of the paced phase")
    parser.add_argument("--paced-count", type=int, default=500)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the gateway's store: a SQLite file, or a database of a throwaway PostgreSQL server")
    parser.add_argument(
        "--profile", action="store_true", help="also measure the receiver and the delivery worker in-process, alone in one thread, and profile them"
    )
    parser.add_argument("--profile-count", type=int, default=1000)
    parser.add_argument("--generator", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python",
                        help="the posters: wrk with bench/post_callbacks.lua, or threads of this process")
    parser.add_argument("--listener-child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.listener_child:
        serve_listener(args.listener_child)
        return 0
    args.count = max(1, min(args.count, 50_000))
    args.paced_count = max(1, min(args.paced_count, 5_000))
    args.paced_rate = max(1.0, min(args.paced_rate, 1000.0))

    print_machine()
    ensure_gunicorn()
    with tempfile.TemporaryDirectory(prefix="m2m-bench-") as tmp, store_location(args.store, Path(tmp)) as (open_store, store_env, store_pid):
        workdir = Path(tmp)
        listener_port, gateway_port = free_port(), free_port()
        listener = Child(
            python_module("bench.callback_bridge", "--listener-child", listener_port),
            log_path=workdir / "listener.log",
            port=listener_port,
        ).start()
        store = open_store()
        store.put_registration(ACCOUNT, SERVICE, f"http://{HOST}:{listener_port}/listener", "legacy-user", "legacy-pass")
        store.close()
        env = {
            **store_env,
            "M2MGW_SERVER_PORT": str(gateway_port),
            "M2MGW_CALLBACKS_USERNAME": CALLBACK_USERNAME,
            "M2MGW_CALLBACKS_PASSWORD": CALLBACK_PASSWORD,
            "M2MGW_UPSTREAM_BASE_URL": f"http://{HOST}:{free_port()}",  # never called here
        }
        gateway = Child(python_module("gateway", "serve"), env=env, log_path=workdir / "gateway.log", port=gateway_port).start()

        # Warm-up: connections, worker threads, the store's first writes.
        warm, _ = post_all(args.generator, gateway_port, jobs_for("warm", WARM_UP), args.posters, workdir=workdir)
        if sum(1 for *_, status in warm if status == 200) != WARM_UP:
            raise SystemExit(f"warm-up callbacks were refused: {[s for *_, s in warm][:10]}\n{gateway.log()[-2000:]}")
        if not wait_for_arrivals(listener_port, WARM_UP, 30):
            raise SystemExit(f"warm-up callbacks were not delivered\n{gateway.log()[-2000:]}")

        post = functools.partial(post_all, args.generator, gateway.port, workdir=workdir)
        servers = (gateway, listener, store_pid)
        phases = [
            measure_phase(f"burst: {args.count:,} callbacks, {args.posters} closed-loop posters", "burst", args.count, args.posters, None, post, *servers),
            measure_phase(
                f"paced: {args.paced_count:,} callbacks at {args.paced_rate:g}/s", "paced", args.paced_count, PACED_POSTERS, args.paced_rate, post,
                *servers,
            ),
        ]
        gateway.stop()
        listener.stop()
        store = open_store()
        counts = store.counts()
        store.close()
        log = gateway.log()

    burst = phases[0]
    print_table(
        f"callback bridge: REST callbacks -> store -> SOAP delivery (real `python -m gateway serve`, {args.store})",
        ["phase", "accepted/s", "delivered/s", "p50 receipt->delivery ms", "p99 ms", "2xx / refused / delivered / dup / lost"],
        [phase["row"] for phase in phases],
        notes=[
            *(phase["note"] for phase in phases),
            f"store after the run: {counts}",
            "accepted/s: 2xx per second from the first post to the last 2xx; delivered/s: arrivals at the listener per "
            "second from the first post to the last arrival; latency: arrival - 2xx, by requestId; lost: answered 2xx, "
            "never delivered.",
        ],
    )
    lost = sum(phase["lost"] for phase in phases)
    print_targets(
        f"callback bridge ({args.store}, {args.posters} posters: {args.generator})",
        [
            ("callbacks accepted per second (burst)", f"≥ {ACCEPTED_TARGET:,}", f"{burst['accepted_rate']:,.0f}", burst["accepted_rate"] >= ACCEPTED_TARGET),
            ("callbacks delivered per second (burst)", f"≥ {DELIVERED_TARGET:,}", f"{burst['delivered_rate']:,.0f}", burst["delivered_rate"] >= DELIVERED_TARGET),
            ("p50 receipt to delivery during the burst", f"< {P50_TARGET_MS} ms", f"{burst['p50']:,.1f} ms", burst["p50"] < P50_TARGET_MS),
            ("callbacks lost (both phases)", "none", f"{lost}", lost == 0),
        ],
        burst["background"],
    )
    problems = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line or "failed" in line]
    if problems:
        print(f"\ngateway log: {len(problems)} problem lines, first: {problems[0][:300]}")
    if args.profile:
        profile(args.profile_count)
    return 0


def measure_phase(title, prefix, count, posters, rate, post, gateway, listener, store_pid):
    """Post ``count`` callbacks with ``post`` (closed loop, or at ``rate`` per second), wait until all are delivered."""
    jobs = jobs_for(prefix, count)
    already = _get(listener.port, "/_count")
    store_pids = [store_pid] if store_pid is not None else []
    background = Background([gateway.pid, listener.pid, *store_pids])
    gateway_cpu, listener_cpu = cpu_seconds(gateway.pid), cpu_seconds(listener.pid)
    store_cpu = sum(cpu_seconds(pid) for pid in store_pids)
    results, posted_cpu = post(jobs, posters, rate)
    drained = wait_for_arrivals(listener.port, already + count, DRAIN_TIMEOUT_S)
    background.stop()
    gateway_cpu, listener_cpu = cpu_seconds(gateway.pid) - gateway_cpu, cpu_seconds(listener.pid) - listener_cpu
    store_cpu = sum(cpu_seconds(pid) for pid in store_pids) - store_cpu
    arrivals = _get(listener.port, "/_arrivals")

    first_post = min(started for _, started, _, _ in results)
    accepted = {job[0]: finished for job, _, finished, status in results if status is not None and 200 <= status < 300}
    refused = len(results) - len(accepted)
    arrived = {}
    duplicates = 0
    for at, request_id in arrivals:
        if request_id is None or not request_id.startswith(prefix + "-"):
            continue
        if request_id in arrived:
            duplicates += 1
        else:
            arrived[request_id] = at
    last_accept = max(accepted.values(), default=first_post)
    last_arrival = max(arrived.values(), default=first_post)
    accepted_rate = len(accepted) / (last_accept - first_post) if accepted else 0.0
    delivered_rate = len(arrived) / (last_arrival - first_post) if arrived else 0.0
    latencies = [(arrived[rid] - accepted[rid]) * 1000 for rid in arrived if rid in accepted]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    during = sum(1 for at in arrived.values() if at <= last_accept)
    after_s = last_arrival - last_accept
    drain = f", {during:,} delivered while posting ({during / (last_accept - first_post):,.0f}/s)" if accepted else ""
    if after_s > 0.5:
        drain += f", the other {len(arrived) - during:,} after it at {(len(arrived) - during) / after_s:,.0f}/s"
    note = (
        f"{prefix}: posting took {last_accept - first_post:.2f} s{drain}; the last delivery came {last_arrival - first_post:.2f} s "
        f"after the first post (latency min {min(latencies, default=float('nan')):.1f} ms, max "
        f"{max(latencies, default=float('nan')):.0f} ms){'' if drained else f'; NOT ALL DELIVERED within {DRAIN_TIMEOUT_S} s'}; "
        f"CPU: gateway (all its processes) {gateway_cpu:.2f} s = {gateway_cpu * 1000 / max(len(arrived), 1):.2f} ms per "
        f"callback received and delivered, "
        f"{f'PostgreSQL server {store_cpu:.2f} s = {store_cpu * 1000 / max(len(arrived), 1):.2f} ms per callback, ' if store_pids else ''}"
        f"listener {listener_cpu:.2f} s, posters {posted_cpu:.2f} s = "
        f"{posted_cpu * 1000 / max(len(results), 1):.3f} ms per callback posted; {background.note()}"
    )
    lost = sum(1 for rid in accepted if rid not in arrived)
    return {
        "row": [title, accepted_rate, delivered_rate, p50, p99, f"{len(accepted):,} / {refused} / {len(arrived):,} / {duplicates} / {lost}"],
        "note": note,
        "lost": lost,
        "background": background,
        "accepted_rate": accepted_rate,
        "delivered_rate": delivered_rate,
        "p50": p50,
    }


# -- in-process profile ---------------------------------------------------------------------


def profile(count):
    """The receiver (werkzeug's test client, no HTTP) and the delivery worker (to a listener
    child over loopback HTTP), each on ``count`` callbacks, with the process's CPU time as
    the clock (a commit's wait for the disk is not work): first as they run, the CPU a
    callback costs, the receiver's alone in one thread with a transaction each, the worker's
    in all its threads (its loop, its store thread); then ``count`` more under cProfile,
    the worker's on its loop's thread with that thread's CPU time as the clock."""
    from werkzeug.test import Client

    from gateway import config
    from gateway.callbacks.delivery import DeliveryWorker
    from gateway.callbacks.policy import ListenerPolicy
    from gateway.callbacks.receiver import CallbackReceiver
    from gateway.store import SqliteStore

    with tempfile.TemporaryDirectory(prefix="m2m-bench-") as tmp:
        listener_port = free_port()
        listener = Child(python_module("bench.callback_bridge", "--listener-child", listener_port), port=listener_port).start()
        store = SqliteStore(Path(tmp) / "profile.sqlite3")
        store.put_registration(ACCOUNT, SERVICE, f"http://{HOST}:{listener_port}/listener", "legacy-user", "legacy-pass")
        receiver = Client(CallbackReceiver(store, lambda: (CALLBACK_USERNAME, CALLBACK_PASSWORD)))
        headers = {"Content-Type": "application/json"}

        def receive(jobs, client=receiver):
            # The receiver as mounted: the path below the callbacks path.
            statuses = {client.post(f"/{ACCOUNT}/{SERVICE}", data=body, headers=headers).status_code for _, body in jobs}
            if statuses != {200}:
                raise SystemExit(f"the receiver refused callbacks in-process: {sorted(statuses)}")

        receive_ms = cpu_ms(functools.partial(receive, jobs_for("alone", count)))[0] / count
        client_ms = cpu_ms(functools.partial(receive, jobs_for("client", count), Client(_answer_200)))[0] / count
        print(
            f"\nreceiver in-process: {receive_ms - client_ms:.2f} ms of CPU per callback alone in one thread"
            f" (werkzeug's test client, {client_ms:.2f} ms with an application that only answers, left out)"
        )
        profiler = cProfile.Profile(time.process_time)  # CPU, not the waits for the disk
        cpu_ms(functools.partial(receive, jobs_for("profile", count)), profiler)
        print_profile(
            profiler,
            count,
            "receiver",
            focus={
                "JSON parse": ("json/__init__.py", "loads"),
                "callback.check": ("gateway/translate/callback.py", "check"),
                "dedupe_key": ("gateway/translate/callback.py", "dedupe_key"),
                "store.add_callbacks (commit)": ("gateway/store/", "add_callbacks"),
                "SQLite commit": ("~", "<method 'commit' of 'sqlite3.Connection' objects>"),
            },
        )

        # The worker as it runs (its loop, its store thread), started for ``count`` more and stopped.
        settings = config.load(environ={})

        def deliver(profiler=None):
            """How many were delivered: ``count``, a few more (deliveries under way finish at the stop),
            or the few fewer the run before left. ``profiler`` profiles the loop's thread."""
            before = store.counts().get("delivered", 0)
            worker = DeliveryWorker(store, settings.callbacks, settings.store.retain_s, ListenerPolicy.from_config(settings))
            worker.start()
            on_loop = threading.Event()
            if profiler:
                while worker._loop is None:
                    time.sleep(0.001)
                worker._loop.call_soon_threadsafe(lambda: (profiler.enable(), on_loop.set()))
                on_loop.wait()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(0.05)
                counts = store.counts()
                delivered = counts.get("delivered", 0) - before
                if delivered >= count or (delivered and not counts.get("pending") and not counts.get("claimed")):
                    break
            else:
                raise SystemExit(f"in-process delivery incomplete: {counts}")
            if profiler:
                on_loop.clear()
                worker._loop.call_soon_threadsafe(lambda: (profiler.disable(), on_loop.set()))
                on_loop.wait()
            worker.stop(timeout=10)
            return store.counts().get("delivered", 0) - before

        milliseconds, delivered = cpu_ms(deliver)
        deliver_ms = milliseconds / delivered
        print(f"\ndelivery worker in-process: {deliver_ms:.2f} ms of CPU per callback, all its threads")
        profiler = cProfile.Profile(time.thread_time)
        _, delivered = cpu_ms(functools.partial(deliver, profiler))
        print_profile(
            profiler,
            delivered,
            "delivery worker's loop",
            focus={
                "callback.to_envelope": ("gateway/translate/callback.py", "to_envelope"),
                "POST to the listener": ("gateway/callbacks/delivery.py", "_post"),
                "the answer read": ("gateway/http1.py", "read"),
            },
        )
        store.close()
        listener.stop()


def _answer_200(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def cpu_ms(run, profiler=None):
    """(milliseconds of this process's CPU that ``run()`` took, what it returned), under ``profiler`` if given."""
    started = time.process_time()
    if profiler:
        profiler.enable()
    try:
        result = run()
    finally:
        if profiler:
            profiler.disable()
    return (time.process_time() - started) * 1000, result


if __name__ == "__main__":
    sys.exit(main())
