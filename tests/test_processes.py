"""The ports handed to the servers tests start: none the kernel or another worker could take before the server binds it."""

import os
import socket
import subprocess
import sys

import pytest

from gateway.processes import ROOT, PortShare, ephemeral_ports, free_port, this_process_ports


def test_free_ports_are_outside_the_kernels_ephemeral_range_and_in_this_workers_share():
    # The kernel's pick (bind port 0) is in the ephemeral range, where any
    # outgoing connection may take it as its local end before the server binds it.
    ports = [free_port() for _ in range(50)]
    assert [port for port in ports if port in ephemeral_ports()] == []
    assert set(ports) <= set(this_process_ports().ports)
    assert len(set(ports)) == 50


def test_a_pytest_xdist_worker_hands_out_ports_of_its_own_share_only():
    script = "from gateway.processes import free_port; print(*(free_port() for _ in range(50)))"
    env = {**os.environ, "PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"}
    printed = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    ports = set(map(int, printed.stdout.split()))
    assert len(ports) == 50, printed.stderr
    assert ports <= set(PortShare.of_worker(1, 2, ephemeral_ports()).ports)


def test_workers_shares_are_disjoint_unprivileged_and_outside_the_ephemeral_range():
    ephemeral = range(32768, 61000)
    shares = [set(PortShare.of_worker(worker, 3, ephemeral).ports) for worker in range(3)]
    assert [len(a & b) for a, b in ((shares[0], shares[1]), (shares[0], shares[2]), (shares[1], shares[2]))] == [0, 0, 0]
    every_port = set.union(*shares)
    assert every_port == set(range(1024, 32768)) | set(range(61000, 65536))


def test_a_port_something_is_bound_to_is_not_handed_out():
    held, other = free_port(), free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", held))
        assert [PortShare([held, other]).free_port() for _ in range(3)] == [other, other, other]
        with pytest.raises(RuntimeError, match="all 1 ports of this process's share are in use"):
            PortShare([held]).free_port()


def test_an_ephemeral_range_leaving_no_port_outside_it_is_said_plainly():
    with pytest.raises(RuntimeError, match=r"ephemeral range 1024-65535 \(sysctl net.ipv4.ip_local_port_range\)"):
        PortShare.of_worker(0, 1, range(1024, 65536))
