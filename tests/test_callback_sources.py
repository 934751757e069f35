"""[callbacks] allowed_sources and [server] trusted_proxies: who may post callbacks, and whose X-Forwarded-* count."""

import pytest
from lxml import etree
from werkzeug.test import Client

from gateway import config, ns
from gateway.app import Gateway
from gateway.store import open_store
from tests.test_callbacks import ACCOUNT, THINGSPACE_PASSWORD, THINGSPACE_USER, rest_callback

RECEIVER = f"/callbacks/thingspace/{ACCOUNT}/StateService"
THINGSPACE = "192.0.2.10"  # where the test's "ThingSpace" posts from
NGINX = "127.0.0.1"
STRANGER = "198.51.100.7"


@pytest.fixture
def gateway_with(tmp_path, simulator):
    """``gateway_with(**settings)``: the gateway in process; the store is at ``tmp_path``."""
    apps = []

    def make(**settings):
        environ = {
            "M2MGW_UPSTREAM_BASE_URL": simulator.url,
            "M2MGW_STORE_PATH": str(tmp_path / "gateway.sqlite3"),
            "M2MGW_CALLBACKS_USERNAME": THINGSPACE_USER,
            "M2MGW_CALLBACKS_PASSWORD": THINGSPACE_PASSWORD,
            **{f"M2MGW_{key.upper()}": value for key, value in settings.items()},
        }
        app = Gateway(config.load(environ=environ))
        apps.append(app)
        return Client(app)

    yield make
    for app in apps:
        app.close(timeout=10)


def stored(tmp_path):
    store = open_store(config.load(environ={"M2MGW_STORE_PATH": str(tmp_path / "gateway.sqlite3")}).store)
    try:
        return [entry.request_id for entry in store.outbox("pending")]
    finally:
        store.close()


def post(client, peer, request_id, forwarded_for=None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post(
        RECEIVER, json=rest_callback(request_id, "990000862471854"), headers=headers, environ_base={"REMOTE_ADDR": peer}
    )


def test_a_callback_from_outside_the_allowed_sources_gets_403_and_is_not_stored(gateway_with, tmp_path):
    client = gateway_with(callbacks_allowed_sources="192.0.2.0/24, 2001:db8::/32")
    answer = post(client, NGINX, "r-outside")
    assert answer.status_code == 403 and "allowed_sources" in answer.json["message"]
    assert stored(tmp_path) == []
    assert post(client, THINGSPACE, "r-inside").status_code == 200
    assert stored(tmp_path) == ["r-inside"]


def test_allowed_sources_including_the_peer_accept_its_callbacks(gateway_with, tmp_path):
    client = gateway_with(callbacks_allowed_sources="127.0.0.0/8")
    assert post(client, NGINX, "r-local").status_code == 200
    assert stored(tmp_path) == ["r-local"]


def test_forwarded_for_counts_from_a_trusted_proxy_only(gateway_with, tmp_path):
    client = gateway_with(callbacks_allowed_sources="192.0.2.0/24")  # trusted_proxies: its default, loopback
    assert post(client, STRANGER, "r-spoofed", forwarded_for=THINGSPACE).status_code == 403
    assert post(client, NGINX, "r-nginx-from-outside", forwarded_for=STRANGER).status_code == 403
    assert stored(tmp_path) == []
    assert post(client, NGINX, "r-through-nginx", forwarded_for=f"{STRANGER}, {THINGSPACE}").status_code == 200
    assert stored(tmp_path) == ["r-through-nginx"]


def test_no_proxy_is_trusted_when_trusted_proxies_is_empty(gateway_with, tmp_path):
    client = gateway_with(callbacks_allowed_sources="192.0.2.0/24", server_trusted_proxies="")
    assert post(client, NGINX, "r-forwarded", forwarded_for=THINGSPACE).status_code == 403
    assert stored(tmp_path) == []


def test_the_wsdl_names_the_forwarded_url_only_behind_a_trusted_proxy(gateway_with):
    client = gateway_with()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "m2m.example.com", "X-Forwarded-Prefix": "/legacy"}

    def address(peer):
        wsdl = client.get("/api/v2/StateService.svc?wsdl", headers=forwarded, environ_base={"REMOTE_ADDR": peer})
        return etree.fromstring(wsdl.data).find(f".//{{{ns.WSDL_SOAP}}}address").get("location")

    assert address(NGINX) == "https://m2m.example.com/legacy/api/v2/StateService.svc"
    assert address(STRANGER) == "http://localhost/api/v2/StateService.svc"
