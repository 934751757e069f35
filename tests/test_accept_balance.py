"""`serve`'s workers share new connections: one with as many requests under way as threads, or as
many kept-alive connections, leaves the next to another worker, and takes it itself when no other
does (gateway/whole_requests.py).

Real gunicorn workers; which worker holds a connection is read from /proc; a worker
is kept from accepting by stopping it (SIGSTOP), and always continued.
"""

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import Gateway

THREADS = 3
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
# A request under way: its body is still to come.
UNDER_WAY = b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n12345"


@pytest.fixture
def two_workers(tmp_path, simulator):
    gateway = Gateway(tmp_path, simulator.url, server_workers=2, server_threads=THREADS).start()
    connections = []
    yield gateway, connections
    for connection in connections:
        connection.close()
    gateway.stop()


def answered_connection(gateway, connections):
    """A new kept-alive connection, once the gateway answered a request on it."""
    connection = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    connections.append(connection)
    connection.sendall(HEALTH)
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = connection.recv(65536)
        assert data, "the gateway closed the connection"
        answer += data
    assert answer.startswith(b"HTTP/1.1 200 ")
    return connection


def request_under_way(gateway, connections):
    """A new connection whose request a worker is receiving, once a worker holds it."""
    connection = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    connections.append(connection)
    connection.sendall(UNDER_WAY)
    for _ in range(500):
        with contextlib.suppress(AssertionError):
            return holder(gateway, connection)
        time.sleep(0.01)
    raise AssertionError("no worker accepted the connection")


def holder(gateway, connection):
    """The worker process that holds the server's end of ``connection``."""
    client_port = connection.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local_port == gateway.port and remote_port == client_port:
            inodes.add(f"socket:[{fields[9]}]")
    for pid in gateway.pids()[1:]:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def both_workers_serving(gateway, connections):
    """The two worker pids, once each has answered (booted, listening): new connections until both have."""
    seen = set()
    for _ in range(200):
        connection = answered_connection(gateway, connections)
        seen.add(holder(gateway, connection))
        connections.remove(connection)
        connection.close()
        if len(seen) == 2:
            return sorted(seen)
    raise AssertionError("the second worker answered no connection")


@contextlib.contextmanager
def stopped(pid):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_worker_with_a_request_under_way_in_every_thread_leaves_new_connections_to_the_other(two_workers):
    gateway, connections = two_workers
    busy, idle = both_workers_serving(gateway, connections)
    with stopped(idle):
        assert {request_under_way(gateway, connections) for _ in range(THREADS)} == {busy}
    more = [answered_connection(gateway, connections) for _ in range(2 * THREADS)]
    assert [holder(gateway, connection) for connection in more] == [idle] * (2 * THREADS)


def test_when_no_other_worker_takes_it_a_loaded_worker_accepts_the_connection_itself(two_workers):
    gateway, connections = two_workers
    busy, idle = both_workers_serving(gateway, connections)
    with stopped(idle):
        assert {request_under_way(gateway, connections) for _ in range(THREADS)} == {busy}
        assert holder(gateway, answered_connection(gateway, connections)) == busy


def test_a_worker_with_a_kept_alive_connection_for_each_thread_leaves_new_connections_to_one_with_fewer(two_workers):
    gateway, connections = two_workers
    full, other = both_workers_serving(gateway, connections)
    with stopped(other):
        pool = [answered_connection(gateway, connections) for _ in range(THREADS)]  # between two requests, each
    assert {holder(gateway, connection) for connection in pool} == {full}
    more = [answered_connection(gateway, connections) for _ in range(THREADS)]
    assert [holder(gateway, connection) for connection in more] == [other] * THREADS
