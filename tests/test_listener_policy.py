"""The listener URL policy: where the gateway will post callbacks, at registration and at every delivery."""

import ipaddress
import subprocess
import sys
import time

import pytest
import zeep

from gateway.callbacks.policy import ListenerPolicy
from gateway.exceptions import ListenerRefused
from gateway.store import SqliteStore
from tests.conftest import ROOT
from tests.test_callbacks import ACCOUNT, bridge, log_in, post_callback, rest_callback
from tests.test_delivery_faults import wait_until

GATEWAY_PORT = 8080


def refusal(policy, url):
    with pytest.raises(ListenerRefused) as refused:
        policy.check(url)
    return str(refused.value)


@pytest.mark.parametrize(
    "url, rule",
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local addresses (cloud metadata) are refused"),
        ("http://[fe80::1]:8080/listener", "link-local addresses (cloud metadata) are refused"),
        ("http://[::ffff:169.254.169.254]/", "link-local addresses (cloud metadata) are refused"),
        (f"http://127.0.0.1:{GATEWAY_PORT}/metrics", "this gateway's own listening address"),
        # A name, resolved: what it resolves to is what counts.
        (f"http://localhost:{GATEWAY_PORT}/api/v2/StateService.svc", "this gateway's own listening address"),
        ("https://m2m.example.com/callbacks/thingspace/x", "this gateway's own public URL"),
        ("http://no-such-host.invalid/listener", "does not resolve"),
    ],
)
def test_the_default_policy_refuses_metadata_and_the_gateway_itself(url, rule):
    policy = ListenerPolicy((), "127.0.0.1", GATEWAY_PORT, ("https://m2m.example.com",))
    assert rule in refusal(policy, url)


def test_the_default_policy_allows_loopback_listeners_on_other_ports_and_the_world():
    policy = ListenerPolicy((), "0.0.0.0", GATEWAY_PORT)
    policy.check("http://127.0.0.1:8082/listener")  # make run's demo listener
    policy.check("http://localhost:9000/")
    policy.check("https://203.0.113.10/listener")
    # Listening on every address: each of this host's own, on the gateway's port, is the gateway.
    assert "own listening address" in refusal(policy, f"http://127.0.0.1:{GATEWAY_PORT}/")


def test_an_allow_list_admits_only_its_networks_and_names():
    allowed = (ipaddress.ip_network("10.20.0.0/16"), "localhost", ipaddress.ip_network("169.254.10.0/24"))
    policy = ListenerPolicy(allowed, "127.0.0.1", GATEWAY_PORT)
    policy.check("http://10.20.3.4:8443/listener")
    policy.check("http://localhost:9000/")  # a listed name
    policy.check("http://169.254.10.5/")  # link-local, but listed by the operator
    assert "[callbacks] allowed_listeners does not allow" in refusal(policy, "http://10.21.0.1/")
    assert "[callbacks] allowed_listeners does not allow" in refusal(policy, "http://127.0.0.1:9000/")
    assert "link-local" in refusal(policy, "http://169.254.169.254/")  # not the listed /24
    assert "own listening address" in refusal(policy, f"http://localhost:{GATEWAY_PORT}/")  # listed, still the gateway


def register(gateway, url):
    token = log_in(gateway)
    return zeep.Client(gateway.service_url("CallbackRegistrationService") + "?wsdl").service.RegisterCallback(
        Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": url}, _soapheaders={"token": token}
    )


def registered_with_thingspace(simulator):
    return [r for r in simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}") if r["method"] == "POST"]


def test_register_callback_refuses_a_listener_the_policy_forbids_and_tells_no_one(tmp_path, simulator, listener):
    gateway = bridge(tmp_path, simulator, callbacks_allowed_listeners="10.0.0.0/8").start()
    try:
        refused = {}
        for url in (
            "http://169.254.169.254/latest/meta-data/iam/",
            f"{gateway.url}/metrics",
            f"http://localhost:{gateway.port}/healthz",
            listener.url,  # 127.0.0.1: outside the allow-list
        ):
            simulator.reset()
            with pytest.raises(zeep.exceptions.Fault) as fault:
                register(gateway, url)
            refused[url] = fault.value
            assert registered_with_thingspace(simulator) == []
    finally:
        gateway.stop()
    for url, fault in refused.items():
        assert fault.code == "s:Client" and fault.message.startswith("Url: "), (url, fault.message)
    messages = [fault.message for fault in refused.values()]
    assert "link-local addresses (cloud metadata) are refused" in messages[0]
    assert "this gateway's own public URL" in messages[1]  # the URL it registers with ThingSpace
    assert "this gateway's own listening address" in messages[2]  # another name for it, resolved
    assert "[callbacks] allowed_listeners does not allow" in messages[3]
    assert SqliteStore(tmp_path / "gateway.sqlite3").registrations() == []
    assert listener.all() == []


@pytest.mark.process
def test_the_command_line_refuses_what_the_policy_forbids(tmp_path, simulator):
    simulator.reset()
    gateway = bridge(tmp_path, simulator)  # not started: the command uses its configuration
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "callbacks", "register", ACCOUNT, "StateService",
         "http://169.254.169.254/latest/", "--m2m-user", "demo"],
        cwd=ROOT, env={**gateway.env, "THINGSPACE_PASSWORD": "demo-password"},
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "Url: 169.254.169.254: resolves to 169.254.169.254: link-local" in result.stderr
    assert registered_with_thingspace(simulator) == []


def test_a_listener_the_policy_now_refuses_is_not_posted_to_and_the_attempt_fails_with_the_rule(
    tmp_path, simulator, listener
):
    # Registered before the operator narrowed the policy (the store keeps it):
    # every delivery checks again, after resolving the name.
    store_path = tmp_path / "gateway.sqlite3"
    store = SqliteStore(store_path)
    store.put_registration(ACCOUNT, "StateService", listener.url.replace("127.0.0.1", "localhost"), "", "")
    gateway = bridge(
        tmp_path, simulator, callbacks_allowed_listeners="10.0.0.0/8", callbacks_max_attempts="2",
        callbacks_backoff_s="0.05",
    ).start()
    try:
        assert post_callback(gateway, rest_callback("r-refused", "990000862471854")).status_code == 200
        wait_until(lambda: store.counts()["dead"] == 1, what="the dead letter")
    finally:
        gateway.stop()
    time.sleep(0.1)
    assert listener.all() == []
    (dead,) = store.outbox("dead")
    assert dead.attempts == 2
    assert dead.last_error.startswith("listener URL refused: localhost: resolves to 127.0.0.1")
    assert "[callbacks] allowed_listeners does not allow" in dead.last_error
