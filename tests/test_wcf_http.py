"""WCF's HTTP answers at a .svc endpoint, before any SOAP: 405 and 415, and nothing sent upstream."""

import pytest
from tests import envelopes
from tests.inprocess import InProcess

STATE_SERVICE = "/api/v2/StateService.svc"
SOAP11 = "text/xml; charset=utf-8"


@pytest.fixture
def gateway(gateway_app, upstream):
    return InProcess(gateway_app)


@pytest.fixture
def client(gateway):
    return gateway.client


@pytest.fixture
def token(gateway):
    """A live session: a request let through would reach ThingSpace with it."""
    return gateway.log_in()


def go_to_state(token):
    devices = envelopes.devices_xml([[("IMEI", "990000862471854")]])
    return envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": devices}}, token=token)


def test_a_valid_post_reaches_thingspace(client, token, upstream):
    # The baseline the refusals below differ from only in method or content type.
    answer = client.post(STATE_SERVICE, data=go_to_state(token), content_type=SOAP11)
    assert answer.status_code == 200, answer.text
    assert len(upstream.requests("/api/m2m/v1/devices/actions/goToState")) == 1


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/soap+xml; charset=utf-8", None])
def test_a_content_type_other_than_text_xml_is_415_in_wcfs_words(client, token, upstream, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    before = upstream.requests()
    answer = client.post(STATE_SERVICE, data=go_to_state(token), headers=headers)
    sentence = (
        f"Cannot process the message because the content type '{content_type or ''}' "
        "was not the expected type 'text/xml; charset=utf-8'."
    )
    assert answer.status == f"415 {sentence}"
    assert answer.text == sentence + "\n"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert upstream.requests() == before


def test_the_415_shows_a_hostile_content_type_only_as_printable_ascii(client, upstream):
    answer = client.post(STATE_SERVICE, data=b"<x/>", headers={"Content-Type": "text/plain; x=\u00e9" + "a" * 300})
    assert answer.status_code == 415
    assert "'text/plain; x=?" in answer.status and answer.status.endswith("...' was not the expected type 'text/xml; charset=utf-8'.")
    assert answer.status.isascii()


@pytest.mark.parametrize(
    "method, query",
    [("PUT", ""), ("DELETE", ""), ("PATCH", ""), ("GET", ""), ("GET", "?help"), ("HEAD", ""), ("OPTIONS", "")],
)
def test_a_method_other_than_post_is_405_with_allow(client, token, upstream, method, query):
    before = upstream.requests()
    answer = client.open(STATE_SERVICE + query, method=method, data=go_to_state(token), content_type=SOAP11)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"
    if method != "HEAD":
        assert answer.text.startswith(f"Method {method} is not allowed: this endpoint takes SOAP 1.1 by POST")
    assert upstream.requests() == before


@pytest.mark.parametrize("query", ["?wsdl", "?singleWsdl", "?xsd=xsd0"])
def test_a_documents_url_takes_get_and_names_it_in_allow(client, upstream, query):
    assert client.get(STATE_SERVICE + query).status_code == 200
    answer = client.put(STATE_SERVICE + query, data=b"<x/>", content_type=SOAP11)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, POST"
    assert upstream.requests() == []


@pytest.mark.parametrize("query", ["?wsdl", "?singleWsdl", "?xsd=xsd0"])
def test_a_soap_post_to_a_documents_url_is_the_operation_not_the_document(client, token, upstream, query):
    answer = client.post(STATE_SERVICE + query, data=go_to_state(token), content_type=SOAP11)
    assert answer.status_code == 200, answer.text
    assert "GoToStateResponse" in answer.text and "wsdl:definitions" not in answer.text
    assert len(upstream.requests("/api/m2m/v1/devices/actions/goToState")) == 1
