"""The sample nginx site of conf/ in front of the gateway: TLS, a prefix, X-Forwarded-*, callbacks."""

import shutil
import ssl
import subprocess

import pytest
import requests
import zeep
import zeep.transports
from lxml import etree

from gateway import ns
from gateway.processes import wait_for_port
from tests.conftest import ROOT, Gateway, Simulator, free_port
from tests.test_slow_clients import assert_others_answered_while_trickled

SITE = ROOT / "conf" / "nginx" / "m2m-gateway.conf"
ACCOUNT = "0000123456-00001"


def _nginx():
    return shutil.which("nginx") or shutil.which("/usr/sbin/nginx")


pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(_nginx() is None, reason="nginx is not installed (make test installs it)"),
]


@pytest.fixture
def tls(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", key, "-out", cert,
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def start_nginx(tmp_path, tls, port, gateway_port):
    """The sample site as shipped, pointed at this test's ports and certificate."""
    cert, key = tls
    site = SITE.read_text()
    for shipped, here in [
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{gateway_port};"),
        ("/etc/ssl/certs/m2m.example.com.pem", str(cert)),
        ("/etc/ssl/private/m2m.example.com.key", str(key)),
    ]:
        assert shipped in site, f"the sample site no longer has {shipped!r}"
        site = site.replace(shipped, here)
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site)
    (prefix / "nginx.conf").write_text(
        f"""
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    include {prefix}/site.conf;
}}
"""
    )
    process = subprocess.Popen([_nginx(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"])
    wait_for_port(port, [process])
    return process


def test_a_client_works_end_to_end_through_nginx(tmp_path, tls, listener):
    cert, _ = tls
    nginx_port = free_port()
    public = f"https://127.0.0.1:{nginx_port}/legacy"
    simulator = Simulator(tmp_path)
    simulator.env["REQUESTS_CA_BUNDLE"] = str(cert)  # ThingSpace trusts nginx's certificate
    gateway = Gateway(tmp_path, simulator.url, callbacks_public_url=f"{public}/callbacks/thingspace")
    nginx = None
    try:
        simulator.start()
        gateway.start()
        nginx = start_nginx(tmp_path, tls, nginx_port, gateway.port)

        wsdl = requests.get(f"{public}/api/v2/StateService.svc?wsdl", verify=cert, timeout=10)
        assert wsdl.status_code == 200
        root = etree.fromstring(wsdl.content)
        address = root.find(f".//{{{ns.WSDL_SOAP}}}address").get("location")
        assert address == f"{public}/api/v2/StateService.svc"
        schema = requests.get(f"{public}/api/v2/StateService.svc?xsd=xsd0", verify=cert, timeout=10)
        locations = [i.get("schemaLocation") for i in etree.fromstring(schema.content).iter(f"{{{ns.XSD}}}import")]
        assert locations and all(location.startswith(f"{address}?xsd=xsd") for location in locations)

        session = requests.Session()
        session.verify = str(cert)
        session.trust_env = False  # else a REQUESTS_CA_BUNDLE in the environment overrides verify
        transport = zeep.transports.Transport(session=session)
        token = zeep.Client(f"{public}/api/v2/SessionService.svc?wsdl", transport=transport).service.LogIn(
            Input={"Username": "demo", "Password": "demo-password"}
        )
        zeep.Client(f"{public}/api/v2/CallbackRegistrationService.svc?wsdl", transport=transport).service.RegisterCallback(
            Input={"AccountName": ACCOUNT, "ServiceName": "StateService", "Url": listener.url}, _soapheaders={"token": token}
        )
        request_id = zeep.Client(f"{public}/api/v2/StateService.svc?wsdl", transport=transport).service.GoToState(
            Input={
                "DeviceList": {"DeviceIdentifierCollection": [
                    {"DeviceIdentifiers": {"DeviceIdentifier": [{"Kind": "IMEI", "Identifier": "990000862471854"}]}},
                    {"DeviceIdentifiers": {"DeviceIdentifier": [{"Kind": "IMEI", "Identifier": "990000862471855"}]}},
                ]},
                "ServiceName": "fast1", "StateName": "new active", "ServicePlan": "4G East", "MdnZipCode": "94203",
            },
            _soapheaders={"token": token},
        )
        envelopes = listener.wait_for(2)
        registered = [r for r in simulator.requests(f"/api/m2m/v1/callbacks/{ACCOUNT}") if r["method"] == "POST"]
        access = (tmp_path / "nginx" / "access.log").read_text()
    finally:
        gateway.stop()
        simulator.stop()
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
    assert registered[0]["json"]["url"] == f"{public}/callbacks/thingspace/{ACCOUNT}/StateService"
    assert all(request_id.encode() in envelope for envelope in envelopes)
    assert f"POST /legacy/callbacks/thingspace/{ACCOUNT}/StateService" in access, "the callbacks came through nginx"


def test_slow_bodies_through_nginx_do_not_starve_the_gateway(tmp_path, tls, simulator, monkeypatch):
    cert, _ = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    nginx_port = free_port()
    gateway = Gateway(tmp_path, simulator.url, server_workers=2)
    nginx = None
    try:
        gateway.start()
        nginx = start_nginx(tmp_path, tls, nginx_port, gateway.port)
        assert_others_answered_while_trickled(
            nginx_port,
            lambda service: f"https://127.0.0.1:{nginx_port}/legacy/api/v2/{service}.svc",
            path="/legacy/api/v2/StateService.svc",
            tls=ssl.create_default_context(cafile=str(cert)),
        )
        access = (tmp_path / "nginx" / "access.log").read_text()
    finally:
        gateway.stop()
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
    assert access.count("GET /legacy/api/v2/StateService.svc?wsdl") == 3, "the requests came through nginx"
