"""What the gateway stands on fails under a running gateway: real processes, real faults.

PostgreSQL stopped (fast shutdown) and started again on its port, a full disk
under the SQLite file, the gateway killed with SIGKILL in a burst, a database
that is not there at start. In each, a callback answered 2xx reaches the
listener, one answered otherwise is sent again by ThingSpace (here: the
test), and the gateway heals without a restart.
"""

import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import zeep

from gateway.callbacks.delivery import IN_FLIGHT
from gateway.store import PostgresStore, SqliteStore
from tests.conftest import ROOT, Gateway, free_port, wait_until_settled
from tests.conftest_postgres import PostgresServer, postgres_bin_dir
from tests.test_callbacks import ACCOUNT, bridge, log_in, post_callback, rest_callback
from tests.test_delivery_faults import delivered_request_ids, wait_until

pytestmark = pytest.mark.process


def callback(request_id):
    return rest_callback(request_id, "990000862471854")


def readiness(gateway):
    answer = requests.get(gateway.url + "/readyz", timeout=10)
    return answer.status_code, answer.json()


def register_listener(store, listener):
    store.put_registration(ACCOUNT, "StateService", listener.url, "legacy-user", "legacy-secret")
    store.close()


def assert_each_delivered_once(gateway, listener, request_ids):
    wait_until(lambda: set(delivered_request_ids(listener)) >= set(request_ids), timeout_s=30, what="every delivery")
    wait_until_settled(gateway, delivered=len(request_ids))
    delivered = delivered_request_ids(listener)
    assert sorted(delivered) == sorted(request_ids)


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of this test's own, to stop and start again."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed; `make test` installs it")
    server = PostgresServer(bin_dir, tempfile.mkdtemp(prefix="m2m-gateway-outage-")).start()
    yield server
    server.stop()


def test_postgresql_restarted_under_a_running_gateway_loses_no_callback(tmp_path, simulator, listener, postgres):
    url = postgres.create_database()
    register_listener(PostgresStore(url), listener)
    gateway = bridge(tmp_path, simulator, Gateway, store_url=url).start()
    try:
        # Once a worker answers: the port listens from the master's bind, before its worker is forked.
        wait_until(lambda: readiness(gateway)[0] == 200, what="readiness")
        processes = gateway.pids()
        before = [f"r-before-{n}" for n in range(10)]
        assert [post_callback(gateway, callback(r)).status_code for r in before] == [200] * 10
        token = log_in(gateway)

        postgres.shut_down()
        during = [f"r-during-{n}" for n in range(5)]
        for request_id in during:
            started = time.monotonic()
            answer = post_callback(gateway, callback(request_id))
            assert answer.status_code == 503 and time.monotonic() - started < 5, (answer.status_code, answer.text)
            assert answer.headers["Retry-After"] == "5"
        status, body = readiness(gateway)
        assert status == 503 and body["store"].startswith("[store] url (postgresql://postgres@127.0.0.1:"), body
        simulator.reset()
        with pytest.raises(zeep.exceptions.Fault) as fault:
            zeep.Client(gateway.service_url("CallbackRegistrationService") + "?wsdl").service.RegisterCallback(
                Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": listener.url},
                _soapheaders={"token": token},
            )
        assert fault.value.message.startswith("The gateway cannot reach its store right now")
        assert simulator.requests() == []  # refused before ThingSpace heard of it

        postgres.launch()
        wait_until(lambda: readiness(gateway)[0] == 200, timeout_s=20, what="readiness after the restart")
        after = [f"r-after-{n}" for n in range(5)]
        # ThingSpace sends the refused ones again; they and new ones are taken.
        assert [post_callback(gateway, callback(r)).status_code for r in during + after] == [200] * 10
        assert_each_delivered_once(gateway, listener, before + during + after)
        assert gateway.pids() == processes  # healed, not restarted
    finally:
        gateway.stop()


@pytest.fixture
def small_disk():
    """A 4 MiB tmpfs: a disk that fills up for real."""
    mount_point = tempfile.mkdtemp(prefix="m2m-gateway-disk-")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount_point], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        os.rmdir(mount_point)
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    yield Path(mount_point)
    subprocess.run(["umount", "-l", mount_point], check=True)
    os.rmdir(mount_point)


def fill(directory):
    """Write a file until the disk is full; the file, to free the space again."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (64 << 10, 512):  # then the last partial chunk
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(descriptor)
    return filler


def test_a_full_disk_refuses_callbacks_and_loses_none_once_space_is_freed(tmp_path, simulator, listener, small_disk):
    store_path = small_disk / "gateway.sqlite3"
    gateway = bridge(tmp_path, simulator, store_path=store_path).start()
    try:
        wait_until(lambda: readiness(gateway)[0] == 200, what="readiness")  # the disk fills under a running gateway
        filler = fill(small_disk)
        status, body = readiness(gateway)
        assert status == 503 and "disk is full" in body["store"], body
        # Each commit appends a page or more to the write-ahead log: it must grow.
        request_ids = [f"r-full-{n}" for n in range(60)]
        bodies = {r: callback(r) for r in request_ids}
        answers = {r: post_callback(gateway, bodies[r]).status_code for r in request_ids}
        refused = [r for r, status in answers.items() if status != 200]
        assert refused and set(answers.values()) <= {200, 503}, answers

        filler.unlink()
        wait_until(lambda: readiness(gateway)[0] == 200, what="readiness with space again")
        assert [post_callback(gateway, bodies[r]).status_code for r in refused] == [200] * len(refused)
        register_listener(SqliteStore(store_path), listener)
        assert_each_delivered_once(gateway, listener, request_ids)
    finally:
        gateway.stop()


def test_a_gateway_killed_in_a_burst_delivers_all_after_restart_and_its_claims_within_15_s(
    tmp_path, simulator, listener
):
    store_path = tmp_path / "gateway.sqlite3"
    gateway = bridge(tmp_path, simulator, Gateway).start()
    register_listener(SqliteStore(store_path), listener)
    listener.delay_s = 0.02
    request_ids = [f"r-burst-{n}" for n in range(400)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda r: post_callback(gateway, callback(r)).status_code, request_ids))
    assert statuses == [200] * 400
    wait_until(lambda: len(listener.acknowledged()) >= 100, timeout_s=30, what="100 deliveries")
    gateway.stop(signal.SIGKILL)
    store = SqliteStore(store_path)
    held = {entry.request_id for entry in store.outbox("pending") if entry.state == "claimed"}
    store.close()
    assert held, "the killed worker held no claim: the test proves nothing"

    restarted = bridge(tmp_path, simulator, Gateway).start()
    restarted_at = time.time()
    try:
        wait_until(lambda: set(delivered_request_ids(listener)) >= set(request_ids), timeout_s=60, what="all 400")
    finally:
        restarted.stop()
    first_after_restart = {}
    for when, body in listener.acknowledged_at():
        request_id = body.split(b"<RequestId>")[1].split(b"</RequestId>")[0].decode()
        if when >= restarted_at:
            first_after_restart.setdefault(request_id, when)
    late = {r: first_after_restart[r] - restarted_at for r in held if r in first_after_restart}
    assert all(seconds <= 15 for seconds in late.values()), late
    delivered = delivered_request_ids(listener)
    duplicates = len(delivered) - len(set(delivered))
    # Only what was being sent at the kill (at most IN_FLIGHT) comes twice.
    assert duplicates <= IN_FLIGHT, duplicates


def test_serve_with_an_unreachable_database_stops_with_one_line_naming_the_setting(tmp_path):
    closed_port = free_port()
    env = {
        **os.environ,
        "M2MGW_SERVER_PORT": str(free_port()),
        "M2MGW_STORE_URL": f"postgresql://gateway:hunter2-s3cret@127.0.0.1:{closed_port}/m2m",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"m2m-gateway: [store] url (postgresql://gateway:***@127.0.0.1:{closed_port}/m2m)")
    assert "unavailable" in lines[0] and "hunter2-s3cret" not in result.stderr + result.stdout
