"""Property-based: random well-formed GoToState requests go through, random broken ones never do."""

import string

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway import ns
from tests import envelopes

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
ACCOUNT = "0000123456-00001"
KINDS = ["ESN", "ICCID", "IMEI", "MDN", "MEID", "MSISDN", "imei", "Iccid"]
ALLOWED_VALUE = string.ascii_letters + string.digits + "/ @.,:-_()[]#"
PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

text = st.text(alphabet=string.ascii_letters + string.digits + " -_.", min_size=1, max_size=30).filter(lambda t: t.strip())
identifier = st.text(alphabet=string.digits, min_size=1, max_size=20)
device = st.lists(st.tuples(st.sampled_from(KINDS), identifier), min_size=1, max_size=3)
custom_fields = st.lists(
    st.tuples(st.sampled_from([f"CustomField{n}" for n in range(1, 6)]), st.text(alphabet=ALLOWED_VALUE, min_size=1, max_size=20)),
    max_size=3,
)


@st.composite
def valid_requests(draw):
    fields = {"ServiceName": draw(text), "StateName": draw(text), "ServicePlan": draw(text), "MdnZipCode": draw(identifier)}
    if draw(st.booleans()):
        fields["DeviceList"] = {"xml": envelopes.devices_xml(draw(st.lists(device, min_size=1, max_size=5)))}
    else:
        fields["AccountNameFilter"] = ACCOUNT  # the only one the session may name
        if draw(st.booleans()):
            fields["DeviceGroupNameFilter"] = draw(text)
        if draw(st.booleans()):
            fields["DeviceServicePlanFilter"] = draw(text)
    for name in ("CarrierIpPoolName", "DeviceGroupNames"):
        if draw(st.booleans()):
            fields[name] = draw(text)
    pairs = draw(custom_fields)
    if pairs:
        fields["CustomFields"] = {"xml": envelopes.pairs_xml("CustomField", pairs)}
    if draw(st.booleans()):
        fields["PublicIPRestriction"] = draw(st.sampled_from(["restricted", "unrestricted", "Restricted"]))
    if draw(st.booleans()):
        fields["SkuNumber"] = draw(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=20))
    return fields


def post(served_gateway, body):
    return requests.post(served_gateway.service_url("StateService"), data=body, headers={"Content-Type": "text/xml"}, timeout=30)


def fault_code(answer):
    assert answer.status_code == 500, answer.text[:300]
    return etree.fromstring(answer.content).findtext(f".//{{{ns.SOAP_ENV}}}Fault/faultcode")


@pytest.fixture(scope="module")
def session_token(served_gateway):
    body = envelopes.envelope(
        "", f'<v2:LogIn><v2:Input xmlns:a="{ns.SESSION}"><a:Username>demo</a:Username><a:Password>demo-password</a:Password></v2:Input></v2:LogIn>'
    ).encode()
    answer = requests.post(served_gateway.service_url("SessionService"), data=body, headers={"Content-Type": "text/xml"}, timeout=30)
    return etree.fromstring(answer.content).findtext(f".//{{{ns.SESSION}}}SessionToken")


@PROPERTY_SETTINGS
@given(fields=valid_requests())
def test_every_valid_request_goes_through_once(served_gateway, simulator, session_token, fields):
    before = len(simulator.requests(GO_TO_STATE))
    answer = post(served_gateway, envelopes.go_to_state(fields, token=session_token))
    assert answer.status_code == 200, answer.text[:500]
    records = simulator.requests(GO_TO_STATE)
    assert len(records) == before + 1
    assert f"<a:RequestId>{records[-1]['response']['requestId']}</a:RequestId>" in answer.text


def _mutations(body):
    """Ways to break a valid envelope that no reading can accept."""
    root = etree.fromstring(body)
    inputs = root.find(f".//{{{ns.V2}}}Input")
    leaves = [e for e in inputs.iter() if len(e) == 0 and e.getparent() is not None]
    return root, inputs, leaves


@st.composite
def broken_requests(draw):
    body = envelopes.go_to_state(draw(valid_requests()))
    root, inputs, leaves = _mutations(body)
    mutation = draw(st.sampled_from(["truncate", "rename", "duplicate", "namespace", "sku", "kind", "no-token", "doctype"]))
    if mutation == "truncate":
        return mutation, body[: draw(st.integers(min_value=1, max_value=len(body) - 20))]
    if mutation == "rename":
        target = draw(st.sampled_from(leaves))
        target.tag = target.tag.rpartition("}")[0] + "}" + draw(st.sampled_from(["Bogus", "Extra", "serviceName"]))
    elif mutation == "duplicate":
        target = draw(st.sampled_from([e for e in inputs if len(e) == 0]))
        target.addnext(etree.fromstring(etree.tostring(target)))
    elif mutation == "namespace":
        target = draw(st.sampled_from(leaves))
        target.tag = "{urn:wrong}" + target.tag.rpartition("}")[2]
    elif mutation == "sku":
        etree.SubElement(inputs, f"{{{ns.STATE}}}SkuNumber").text = "S" * draw(st.integers(21, 200))
        if len(inputs.findall(f"{{{ns.STATE}}}SkuNumber")) > 1:
            inputs.remove(inputs.findall(f"{{{ns.STATE}}}SkuNumber")[0])
    elif mutation == "kind":
        kinds = inputs.findall(f".//{{{ns.COMMON}}}Kind")
        if not kinds:
            return "no-token", envelopes.go_to_state(envelopes.VALID, token=None)
        draw(st.sampled_from(kinds)).text = draw(st.sampled_from(["IMSI", "EID", "phone", " IMEI"]))
    elif mutation == "no-token":
        header = root.find(f"{{{ns.SOAP_ENV}}}Header")
        header.remove(header[0])
    elif mutation == "doctype":
        return mutation, b"<!DOCTYPE x []>" + body
    return mutation, etree.tostring(root)


@PROPERTY_SETTINGS
@given(case=broken_requests())
def test_no_broken_request_reaches_thingspace(served_gateway, simulator, session_token, case):
    mutation, body = case
    before = len(simulator.requests(GO_TO_STATE))
    answer = post(served_gateway, body.replace(b">t</v2:token>", f">{session_token}</v2:token>".encode()))
    assert fault_code(answer) in {"s:Client", "a:DeserializationFailed"}, mutation
    assert len(simulator.requests(GO_TO_STATE)) == before, mutation
