"""Legacy listeners on TLS from a private CA: [callbacks] ca_bundle, client_cert and client_key;
and reached through the environment's proxy.

In process: the real delivery worker, a real SQLite file, a real https:// listener on 127.0.0.1,
a real CONNECT and forwarding proxy.
"""

import logging
import ssl

import pytest

from gateway import cli
from tests.certificates import Authority
from tests.conftest import Listener, free_port
from tests.test_delivery_faults import (
    ACCOUNT,
    SERVICE,
    add,
    delivered_request_ids,
    running_worker,
    settings,
    store,  # noqa: F401  (fixture)
    store_path,  # noqa: F401  (fixture)
    wait_until,
)
from tests.test_upstream_transport import Proxy, environment  # noqa: F401  (environment: a fixture)


@pytest.fixture
def private_ca(tmp_path):
    return Authority(tmp_path, "private")


def tls_listener(ca, client_ca=None):
    """An https:// listener with a certificate ``ca`` issued; requiring one ``client_ca`` issued, if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*ca.issue("listener"))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca.certificate_file)
    return Listener(tls=context)


def deliver_once(store, listener, **callbacks):
    """One callback to ``listener``, one attempt: the request ids delivered and the dead entries' reasons."""
    store.put_registration(ACCOUNT, SERVICE, listener.url, "legacy", "pw")
    add(store, "r-tls")
    worker = running_worker(store, settings(max_attempts=1, **callbacks))
    try:
        wait_until(lambda: store.counts()["delivered"] + store.counts()["dead"] == 1, what="the attempt recorded")
    finally:
        worker.stop(timeout=5)
    return delivered_request_ids(listener), [entry.last_error for entry in store.outbox("dead")]


def test_a_listener_on_a_private_ca_gets_its_callbacks_with_ca_bundle(store, private_ca):
    listener = tls_listener(private_ca)
    try:
        delivered, dead = deliver_once(store, listener, ca_bundle=private_ca.certificate_file)
    finally:
        listener.close()
    assert delivered == ["r-tls"] and dead == []


def test_without_ca_bundle_the_attempt_fails_naming_the_certificate_problem(
    store, store_path, private_ca, caplog, monkeypatch, capsys
):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    listener = tls_listener(private_ca)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.callbacks.delivery"):
            delivered, dead = deliver_once(store, listener)
    finally:
        listener.close()
    assert delivered == [] and listener.all() == []
    assert dead == ["TLS with the listener failed: certificate verify failed: unable to get local issuer certificate"]
    assert any(dead[0] in record.getMessage() for record in caplog.records), "the log says why"
    monkeypatch.setenv("M2MGW_STORE_PATH", str(store_path))
    assert cli.main(["callbacks", "dead"]) == 0
    assert "certificate verify failed" in capsys.readouterr().out


@pytest.mark.parametrize("holding", ["the right certificate", "another CA's certificate", "no certificate"])
def test_a_listener_requiring_client_certificates_accepts_only_the_right_one(store, tmp_path, private_ca, holding):
    clients = Authority(tmp_path, "clients")
    strangers = Authority(tmp_path, "strangers")
    certificates = {
        "the right certificate": dict(zip(("client_cert", "client_key"), clients.issue("gateway", server=False))),
        "another CA's certificate": dict(zip(("client_cert", "client_key"), strangers.issue("gateway", server=False))),
        "no certificate": {},
    }[holding]
    listener = tls_listener(private_ca, client_ca=clients)
    try:
        delivered, dead = deliver_once(store, listener, ca_bundle=private_ca.certificate_file, **certificates)
    finally:
        listener.close()
    if holding == "the right certificate":
        assert delivered == ["r-tls"] and dead == []
    else:
        assert delivered == [] and listener.all() == []
        assert len(dead) == 1 and dead[0].startswith(("TLS with the listener failed", "listener unreachable")), dead


def test_an_https_listener_is_reached_through_the_environments_proxy_in_a_connect_tunnel(store, private_ca, environment):
    listener, proxy = tls_listener(private_ca), Proxy()
    environment.setenv("HTTPS_PROXY", proxy.url)
    try:
        delivered, dead = deliver_once(store, listener, ca_bundle=private_ca.certificate_file)
    finally:
        listener.close()
        proxy.close()
    assert delivered == ["r-tls"] and dead == []
    port = listener.url.split(":")[2].split("/")[0]
    assert proxy.request_lines == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]


def test_a_listener_on_a_private_ca_is_refused_through_the_tunnel_too(store, private_ca, environment):
    listener, proxy = tls_listener(private_ca), Proxy()
    environment.setenv("HTTPS_PROXY", proxy.url)
    try:
        delivered, dead = deliver_once(store, listener)
    finally:
        listener.close()
        proxy.close()
    assert delivered == [] and listener.all() == []
    assert dead == ["TLS with the listener failed: certificate verify failed: unable to get local issuer certificate"]


@pytest.mark.parametrize("no_proxy", [False, True], ids=["forwarded", "no_proxy"])
def test_an_http_listener_is_forwarded_by_the_environments_proxy_unless_no_proxy_names_it(store, environment, no_proxy):
    listener, proxy = Listener(), Proxy()
    environment.setenv("HTTP_PROXY", proxy.url)
    if no_proxy:
        environment.setenv("NO_PROXY", "127.0.0.1")
    try:
        delivered, dead = deliver_once(store, listener)
    finally:
        listener.close()
        proxy.close()
    assert delivered == ["r-tls"] and dead == []
    assert proxy.request_lines == ([] if no_proxy else [f"POST {listener.url} HTTP/1.1"])


def test_a_proxy_that_cannot_be_reached_fails_the_attempt_as_an_unreachable_listener(store, private_ca, environment):
    listener = tls_listener(private_ca)
    environment.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    try:
        delivered, dead = deliver_once(store, listener, ca_bundle=private_ca.certificate_file)
    finally:
        listener.close()
    assert delivered == [] and dead == ["listener unreachable (ConnectionError)"]
