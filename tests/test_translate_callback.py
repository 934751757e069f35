"""gateway.translate.callback: ThingSpace's JSON callback as the legacy SOAP CallbackRequest."""

import copy
import hashlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.exceptions import RequestInvalid
from gateway.soap.models import DeviceIdentifier, DeviceIdentifierCollection, GoToStateRequest
from gateway.translate.callback import check, dedupe_key, kind_spellings, to_envelope
from gateway.xmlchars import xml_safe

# Spelled out rather than taken from gateway.ns: these strings are the contract.
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
V2 = "http://nphase.com/unifiedwebservice/v2"
NIL = f"{{{XSI}}}nil"

RESPONSE_PATH = "deviceResponse.goToStateResponse"
GO_TO_STATE_LEAVES = [
    ("ipAddress", "IpAddress"),
    ("stateName", "StateName"),
    ("serviceName", "ServiceName"),
    ("servicePlan", "ServicePlan"),
    ("accountName", "AccountName"),
]
CHECKED_RESPONSE_STRINGS = [rest for rest, _ in GO_TO_STATE_LEAVES] + [
    "stageStateChangeReasonCode",
    "stageStateChangeReasonDesc",
]
LEGACY_KINDS = ["ESN", "ICCID", "IMEI", "MDN", "MEID", "MIN", "MSISDN"]

# The REST document's callback example, verbatim.
DOCUMENT_EXAMPLE = json.loads(
    """
{
"username" : "user",
"password" : "user",
"requestId" : "595f5c44-c31c-4552-8670-020a1545a84d",
"deviceIds" : [ {
"id" : "16-digit IMEI",
"kind" : "imei"
} ],
"deviceResponse" : {
"goToStateResponse" : {
"deviceIds" : [ {
"id" : "10-digit MDN",
"kind" : "mdn"
}, {
"id" : "15-digit IMSI",
"kind" : "imsi"
}, {
"id" : "11-digit MSISDN",
"kind" : "msisdn"
}, {
"id" : "15-digit IMEI",
"kind" : "imei"
}, {
"id" : "20-digit ICCID",
"kind" : "iccid"
}, {
"id" : "32-digit EID",
"kind" : "eid"
} ],
"ipAddress" : "10.0.0.1",
"servicePlan" : "service plan name",
"accountName" : "0000123456-00001",
"serviceName" : "service name",
"stateName" : "new active",
"smsrOid" : "1.3.6.1.4.1.31746.1.500.200.101.5",
"subscriptionTypeCode" : "GPX",
"subscriptionTypeDesc" : "Garage Swap with Pre-Paid External Subscriber",
"stageStateChangeReasonCode" : "",
"stageStateChangeReasonDesc" : ""
}
},
"status" : "Success",
"callbackCount" : 1,
"maxCallbackThreshold" : 4
}
"""
)

EXPECTED_FOR_DOCUMENT_EXAMPLE = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'
    b'<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
    b'<CallbackRequest xmlns="http://nphase.com/unifiedwebservice/v2">'
    b"<Username>legacy-user</Username>"
    b"<Password>legacy-pass</Password>"
    b"<RequestId>595f5c44-c31c-4552-8670-020a1545a84d</RequestId>"
    b"<Device><Kind>IMEI</Kind><Identifier>16-digit IMEI</Identifier></Device>"
    b"<Data>"
    b"<Data>"
    b'<CarrierService xsi:nil="true"/>'
    b'<ExternalProvisioningChange xsi:nil="true"/>'
    b'<PromoChange xsi:nil="true"/>'
    b'<SMSDelivery xsi:nil="true"/>'
    b'<PRLInformation xsi:nil="true"/>'
    b'<DeviceSuspendStatus xsi:nil="true"/>'
    b"<GoToState>"
    b"<DeviceIdentifierCollection>"
    b"<DeviceIdentifier><Kind>MDN</Kind><Identifier>10-digit MDN</Identifier></DeviceIdentifier>"
    b"<DeviceIdentifier><Kind>imsi</Kind><Identifier>15-digit IMSI</Identifier></DeviceIdentifier>"
    b"<DeviceIdentifier><Kind>MSISDN</Kind><Identifier>11-digit MSISDN</Identifier></DeviceIdentifier>"
    b"<DeviceIdentifier><Kind>IMEI</Kind><Identifier>15-digit IMEI</Identifier></DeviceIdentifier>"
    b"<DeviceIdentifier><Kind>ICCID</Kind><Identifier>20-digit ICCID</Identifier></DeviceIdentifier>"
    b"<DeviceIdentifier><Kind>eid</Kind><Identifier>32-digit EID</Identifier></DeviceIdentifier>"
    b"</DeviceIdentifierCollection>"
    b"<IpAddress>10.0.0.1</IpAddress>"
    b"<StateName>new active</StateName>"
    b"<ServiceName>service name</ServiceName>"
    b"<ServicePlan>service plan name</ServicePlan>"
    b"<AccountName>0000123456-00001</AccountName>"
    b"</GoToState>"
    b'<Fault xsi:nil="true"/>'
    b'<Comment xsi:nil="true"/>'
    b'<Summary xsi:nil="true"/>'
    b"<Status>Success</Status>"
    b"<CallbackCount>2</CallbackCount>"
    b"<MaxCallbackThreshold>5</MaxCallbackThreshold>"
    b"</Data>"
    b"</Data>"
    b"</CallbackRequest>"
    b"</s:Body>"
    b"</s:Envelope>"
)

DELIVERY = {"username": "legacy-user", "password": "legacy-pass", "callback_count": 2, "max_callback_threshold": 5}

# Marks a key to remove in callback() and with_response().
DROP = object()


def _apply(mapping, changes):
    for key, value in changes.items():
        if value is DROP:
            mapping.pop(key, None)
        else:
            mapping[key] = value


def callback(**changes):
    """The document's example with top-level ``changes``."""
    body = copy.deepcopy(DOCUMENT_EXAMPLE)
    _apply(body, changes)
    return body


def with_response(**changes):
    """The document's example with ``changes`` to its goToStateResponse."""
    body = callback()
    _apply(body["deviceResponse"]["goToStateResponse"], changes)
    return body


def envelope_bytes(body, **delivery):
    return to_envelope(body, **{**DELIVERY, **delivery})


def callback_request(body, **delivery):
    """The parsed CallbackRequest element of ``body``'s envelope."""
    root = etree.fromstring(envelope_bytes(body, **delivery))
    return root.find(f"{{{SOAP_ENV}}}Body/{{{V2}}}CallbackRequest")


def child(element, path):
    """``element``'s descendant at a slash-separated path of V2 local names."""
    found = element.find("/".join(f"{{{V2}}}{name}" for name in path.split("/")))
    assert found is not None, f"no {path}"
    return found


def data(body, **delivery):
    return child(callback_request(body, **delivery), "Data/Data")


def local_names(element):
    return [etree.QName(c).localname for c in element]


def is_nil(element):
    return element.get(NIL) == "true" and len(element) == 0 and element.text is None


def identifiers(element):
    """(Kind, Identifier) of each DeviceIdentifier in a DeviceIdentifierCollection."""
    return [(child(i, "Kind").text, child(i, "Identifier").text) for i in element]


def fault(body):
    with pytest.raises(RequestInvalid) as raised:
        check(body)
    return raised.value


# -- the whole envelope ----------------------------------------------------------------


def test_document_example_gives_exactly_the_expected_envelope():
    produced = envelope_bytes(DOCUMENT_EXAMPLE, kind_spellings={"imei": "IMEI"})

    assert produced == EXPECTED_FOR_DOCUMENT_EXAMPLE


def test_values_are_utf8_encoded():
    produced = envelope_bytes(with_response(stateName="aktiv – grün"))

    assert "<StateName>aktiv – grün</StateName>".encode("utf-8") in produced


def test_translation_is_deterministic_and_leaves_the_body_unchanged():
    body = callback()

    first, second = envelope_bytes(body), envelope_bytes(body)

    assert first == second
    assert body == DOCUMENT_EXAMPLE


def test_a_callback_translates_in_well_under_a_millisecond():
    body = callback()
    rounds = 500

    started = time.perf_counter()
    for _ in range(rounds):
        envelope_bytes(body)
    elapsed = time.perf_counter() - started

    # Typically ~130 µs each; the bound only catches something badly slow.
    assert elapsed / rounds < 0.002


# -- shape, order and namespaces --------------------------------------------------------


def test_callback_request_children_are_in_the_legacy_order():
    assert local_names(callback_request(callback())) == ["Username", "Password", "RequestId", "Device", "Data"]


def test_data_data_children_are_in_the_legacy_order():
    assert local_names(data(callback(status="Failed"))) == [
        "CarrierService",
        "ExternalProvisioningChange",
        "PromoChange",
        "SMSDelivery",
        "PRLInformation",
        "DeviceSuspendStatus",
        "GoToState",
        "Fault",
        "Comment",
        "Summary",
        "Status",
        "CallbackCount",
        "MaxCallbackThreshold",
    ]


def test_go_to_state_children_are_in_the_legacy_order():
    assert local_names(child(data(callback()), "GoToState")) == [
        "DeviceIdentifierCollection",
        "IpAddress",
        "StateName",
        "ServiceName",
        "ServicePlan",
        "AccountName",
    ]


def test_every_element_of_the_callback_request_is_in_the_v2_namespace():
    request = callback_request(callback(status="Failed"))

    assert {etree.QName(element).namespace for element in request.iter()} == {V2}


# -- the mapping table, row by row --------------------------------------------------------


def test_request_id_maps_to_request_id():
    assert child(callback_request(callback(requestId="rq-42")), "RequestId").text == "rq-42"


def test_first_device_id_maps_to_device_and_later_ones_are_ignored():
    body = callback(deviceIds=[{"kind": "meid", "id": "A1000000444461"}, {"kind": "mdn", "id": "5555550100"}])

    device = child(callback_request(body), "Device")

    assert local_names(device) == ["Kind", "Identifier"]
    assert (child(device, "Kind").text, child(device, "Identifier").text) == ("MEID", "A1000000444461")


def test_go_to_state_response_device_ids_map_to_one_device_identifier_each_in_order():
    ids = [{"kind": "iccid", "id": "8914"}, {"kind": "mdn", "id": "5555550100"}, {"kind": "iccid", "id": "8915"}]

    collection = child(data(with_response(deviceIds=ids)), "GoToState/DeviceIdentifierCollection")

    assert local_names(collection) == ["DeviceIdentifier"] * 3
    assert identifiers(collection) == [("ICCID", "8914"), ("MDN", "5555550100"), ("ICCID", "8915")]


@pytest.mark.parametrize("rest_name, legacy_name", GO_TO_STATE_LEAVES)
def test_go_to_state_leaf_maps_to_its_legacy_element(rest_name, legacy_name):
    value = f"value of {rest_name}"

    assert child(data(with_response(**{rest_name: value})), f"GoToState/{legacy_name}").text == value


@pytest.mark.parametrize("status", ["Success", "success", "SUCCESS"])
def test_success_in_any_case_maps_to_success_with_a_nil_fault(status):
    body = with_response(stageStateChangeReasonCode="IGNORED", stageStateChangeReasonDesc="ignored")

    result = data({**body, "status": status})

    assert child(result, "Status").text == "Success"
    assert is_nil(child(result, "Fault"))


@pytest.mark.parametrize("status", ["Failed", "Pending", "Error", "", " Success", "Successful"])
def test_any_other_status_maps_to_failed_with_a_fault(status):
    result = data(callback(status=status))

    assert child(result, "Status").text == "Failed"
    assert local_names(child(result, "Fault")) == ["faultcode", "faultstring"]


def test_failure_reason_code_and_description_map_to_faultcode_and_faultstring():
    body = with_response(stageStateChangeReasonCode="RC-17", stageStateChangeReasonDesc="Plan not allowed")

    result = child(data({**body, "status": "Failed"}), "Fault")

    assert (child(result, "faultcode").text, child(result, "faultstring").text) == ("RC-17", "Plan not allowed")


@pytest.mark.parametrize("absent", ["", None, DROP], ids=["empty", "null", "missing"])
def test_failure_without_a_reason_has_the_status_as_faultcode_and_says_so(absent):
    body = with_response(stageStateChangeReasonCode=absent, stageStateChangeReasonDesc=absent)

    result = child(data({**body, "status": "Failed"}), "Fault")

    assert child(result, "faultcode").text == "Failed"
    assert child(result, "faultstring").text == "ThingSpace reported status 'Failed' without a reason"


def test_failure_with_another_status_and_no_reason_uses_that_status_as_faultcode():
    result = child(data(callback(status="Error")), "Fault")

    assert child(result, "faultcode").text == "Error"
    assert child(result, "faultstring").text == "ThingSpace reported status 'Error' without a reason"


def test_failure_with_an_empty_status_and_no_reason_has_faultcode_failed():
    result = child(data(callback(status="")), "Fault")

    assert child(result, "faultcode").text == "Failed"
    assert child(result, "faultstring").text == "ThingSpace reported status '' without a reason"


def test_failure_with_a_reason_code_but_no_description_names_the_code():
    body = with_response(stageStateChangeReasonCode="RC-17")

    result = child(data({**body, "status": "Failed"}), "Fault")

    assert child(result, "faultcode").text == "RC-17"
    assert (
        child(result, "faultstring").text
        == "ThingSpace reported status 'Failed' with reason code 'RC-17' but no description"
    )


def test_failure_with_a_description_but_no_reason_code_has_the_status_as_faultcode():
    body = with_response(stageStateChangeReasonDesc="Plan not allowed")

    result = child(data({**body, "status": "Failed"}), "Fault")

    assert (child(result, "faultcode").text, child(result, "faultstring").text) == ("Failed", "Plan not allowed")


def test_failure_without_a_go_to_state_response_still_has_a_fault():
    result = child(data(callback(status="Failed", deviceResponse=DROP)), "Fault")

    assert child(result, "faultcode").text == "Failed"


def test_username_and_password_are_the_listeners_registration():
    request = callback_request(callback(), username="listener-7", password="s3cret")

    assert (child(request, "Username").text, child(request, "Password").text) == ("listener-7", "s3cret")


@pytest.mark.parametrize("absent", [None, ""], ids=["none", "empty"])
def test_absent_listener_credentials_are_empty_elements(absent):
    request = callback_request(callback(), username=absent, password=absent)

    for name in ("Username", "Password"):
        element = child(request, name)
        assert element.text is None and element.get(NIL) is None


def test_callback_count_and_threshold_are_the_gateways_not_thingspaces():
    result = data(callback(callbackCount=9, maxCallbackThreshold=11), callback_count=3, max_callback_threshold=6)

    assert (child(result, "CallbackCount").text, child(result, "MaxCallbackThreshold").text) == ("3", "6")


def test_thingspace_credentials_smsr_oid_and_subscription_type_are_not_forwarded():
    body = callback(username="ts-user-3f9a", password="ts-secret-8c1d")
    _apply(
        body["deviceResponse"]["goToStateResponse"],
        {"smsrOid": "oid-5e2b", "subscriptionTypeCode": "code-71aa", "subscriptionTypeDesc": "desc-0c4f"},
    )

    produced = envelope_bytes(body)

    for value in (b"ts-user-3f9a", b"ts-secret-8c1d", b"oid-5e2b", b"code-71aa", b"desc-0c4f"):
        assert value not in produced
    assert b"smsr" not in produced.lower() and b"subscription" not in produced.lower()


# -- nil elements ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "CarrierService",
        "ExternalProvisioningChange",
        "PromoChange",
        "SMSDelivery",
        "PRLInformation",
        "DeviceSuspendStatus",
        "Comment",
        "Summary",
    ],
)
@pytest.mark.parametrize("status", ["Success", "Failed"])
def test_data_of_other_services_comment_and_summary_are_nil(name, status):
    assert is_nil(child(data(callback(status=status)), name))


@pytest.mark.parametrize("absent", ["", None, DROP, "\x00\x01"], ids=["empty", "null", "missing", "only-invalid"])
@pytest.mark.parametrize("rest_name, legacy_name", GO_TO_STATE_LEAVES)
def test_absent_go_to_state_leaf_is_nil_and_its_siblings_stay(rest_name, legacy_name, absent):
    go_to_state = child(data(with_response(**{rest_name: absent})), "GoToState")

    assert is_nil(child(go_to_state, legacy_name))
    assert len(go_to_state) == 6
    assert [child(go_to_state, name).text for _, name in GO_TO_STATE_LEAVES if name != legacy_name] == [
        DOCUMENT_EXAMPLE["deviceResponse"]["goToStateResponse"][rest]
        for rest, name in GO_TO_STATE_LEAVES
        if name != legacy_name
    ]


@pytest.mark.parametrize(
    "device_response",
    [DROP, None, {}, {"goToStateResponse": None}],
    ids=["no-device-response", "null-device-response", "empty-device-response", "null-go-to-state-response"],
)
def test_go_to_state_is_nil_without_a_go_to_state_response(device_response):
    result = data(callback(deviceResponse=device_response))

    assert is_nil(child(result, "GoToState"))
    assert local_names(result)[6:8] == ["GoToState", "Fault"]


@pytest.mark.parametrize("device_ids", [DROP, None, []], ids=["missing", "null", "empty"])
def test_go_to_state_without_device_ids_has_an_empty_collection(device_ids):
    collection = child(data(with_response(deviceIds=device_ids)), "GoToState/DeviceIdentifierCollection")

    assert len(collection) == 0 and collection.get(NIL) is None


# -- kind spellings ------------------------------------------------------------------------


def test_clients_spellings_apply_to_device_and_every_device_identifier():
    body = with_response(deviceIds=[{"kind": "imei", "id": "1"}, {"kind": "iccid", "id": "2"}])

    request = callback_request(body, kind_spellings={"imei": "Imei", "iccid": "iccid"})

    assert child(request, "Device/Kind").text == "Imei"
    assert identifiers(child(request, "Data/Data/GoToState/DeviceIdentifierCollection")) == [
        ("Imei", "1"),
        ("iccid", "2"),
    ]


def test_spellings_are_looked_up_by_the_lower_cased_thingspace_kind():
    body = callback(deviceIds=[{"kind": "IMEI", "id": "1"}])

    assert child(callback_request(body, kind_spellings={"imei": "iMEI"}), "Device/Kind").text == "iMEI"


@pytest.mark.parametrize("kind", LEGACY_KINDS)
@pytest.mark.parametrize("spelling", [str.lower, str.title], ids=["lower", "title"])
def test_legacy_kind_the_client_did_not_spell_is_upper_case(kind, spelling):
    sent = spelling(kind)
    body = callback(deviceIds=[{"kind": sent, "id": "1"}])
    _apply(body["deviceResponse"]["goToStateResponse"], {"deviceIds": [{"kind": sent, "id": "1"}]})

    request = callback_request(body, kind_spellings={"other": "OTHER"})

    assert child(request, "Device/Kind").text == kind
    assert identifiers(child(request, "Data/Data/GoToState/DeviceIdentifierCollection")) == [(kind, "1")]


@pytest.mark.parametrize("kind", ["eid", "imsi", "Eid", "ımeı"], ids=["eid", "imsi", "mixed-case", "look-alike"])
def test_kind_unknown_to_the_legacy_api_is_written_as_thingspace_sent_it(kind):
    body = callback(deviceIds=[{"kind": kind, "id": "1"}])
    _apply(body["deviceResponse"]["goToStateResponse"], {"deviceIds": [{"kind": kind, "id": "1"}]})

    request = callback_request(body)

    assert child(request, "Device/Kind").text == kind
    assert identifiers(child(request, "Data/Data/GoToState/DeviceIdentifierCollection")) == [(kind, "1")]


def test_kind_spellings_keep_each_kinds_first_spelling_unless_the_envelope_spells_it_so_anyway():
    request = GoToStateRequest(
        DeviceList=[
            DeviceIdentifierCollection(
                DeviceIdentifiers=[
                    DeviceIdentifier(Kind="Imei", Identifier="1"),
                    DeviceIdentifier(Kind="iccid", Identifier="2"),
                ]
            ),
            DeviceIdentifierCollection(
                DeviceIdentifiers=[
                    DeviceIdentifier(Kind="IMEI", Identifier="3"),
                    DeviceIdentifier(Kind="MDN", Identifier="4"),
                ]
            ),
        ]
    )

    # MDN is how the envelope writes a legacy kind by itself: nothing to remember.
    assert kind_spellings(request) == {"imei": "Imei", "iccid": "iccid"}


def test_kind_spellings_skip_missing_devices_identifiers_and_kinds():
    request = GoToStateRequest(
        DeviceList=[
            None,
            DeviceIdentifierCollection(DeviceIdentifiers=None),
            DeviceIdentifierCollection(
                DeviceIdentifiers=[
                    None,
                    DeviceIdentifier(Kind=None, Identifier="1"),
                    DeviceIdentifier(Kind="", Identifier="2"),
                    DeviceIdentifier(Kind="Meid", Identifier="3"),
                ]
            ),
        ]
    )

    assert kind_spellings(request) == {"meid": "Meid"}


@pytest.mark.parametrize("device_list", [None, []], ids=["none", "empty"])
def test_kind_spellings_are_empty_without_a_device_list(device_list):
    assert kind_spellings(GoToStateRequest(DeviceList=device_list, AccountNameFilter="0000123456-00001")) == {}


# -- characters XML 1.0 cannot carry ---------------------------------------------------------

# Invalid: C0 controls other than tab, LF, CR; a lone surrogate; U+FFFE, U+FFFF.
DIRTY = "a\x00b\x01c\x0bd\x0ce\x1ff\ud800g\ufffeh\uffffi \t\n\r\x7f\u20ac\U0001f600"
CLEANED = "abcdefghi \t\n\r\x7f\u20ac\U0001f600"


@pytest.mark.parametrize(
    "body, path",
    [
        (callback(requestId=DIRTY), "RequestId"),
        (callback(deviceIds=[{"kind": "imei", "id": DIRTY}]), "Device/Identifier"),
        (with_response(deviceIds=[{"kind": "mdn", "id": DIRTY}]),
         "Data/Data/GoToState/DeviceIdentifierCollection/DeviceIdentifier/Identifier"),
        (with_response(deviceIds=[{"kind": DIRTY, "id": "1"}]),
         "Data/Data/GoToState/DeviceIdentifierCollection/DeviceIdentifier/Kind"),
        *[(with_response(**{rest: DIRTY}), f"Data/Data/GoToState/{legacy}") for rest, legacy in GO_TO_STATE_LEAVES],
        ({**with_response(stageStateChangeReasonCode=DIRTY), "status": "Failed"}, "Data/Data/Fault/faultcode"),
        ({**with_response(stageStateChangeReasonDesc=DIRTY), "status": "Failed"}, "Data/Data/Fault/faultstring"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_characters_xml_cannot_carry_are_removed_from_values(body, path):
    # fromstring raises on anything not well-formed.
    assert child(callback_request(body), path).text == CLEANED


def test_characters_xml_cannot_carry_are_removed_from_the_listeners_credentials():
    request = callback_request(callback(), username=DIRTY, password=DIRTY)

    assert (child(request, "Username").text, child(request, "Password").text) == (CLEANED, CLEANED)


# Text that XML escaping and cleaning must get right: markup characters, a CDATA end, CR, quotes,
# characters XML 1.0 cannot carry, non-ASCII up to the astral planes.
_TRICKY_TEXT = st.text(st.sampled_from(list("&<>]\r\n\t\"'a \x00\x1f\ufffe\u00e9\u20ac\U0001f600")) | st.characters(), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(_TRICKY_TEXT, min_size=9, max_size=9),
    status=st.sampled_from(["Success", "Failed"]),
    credentials=st.tuples(_TRICKY_TEXT | st.none(), _TRICKY_TEXT | st.none()),
)
def test_the_envelope_is_exactly_what_lxml_writes_and_every_value_comes_back(values, status, credentials):
    request_id, identifier, kind, *leaves = values
    body = with_response(**dict(zip(CHECKED_RESPONSE_STRINGS, leaves)), deviceIds=[{"kind": kind, "id": identifier}])
    body.update(requestId=request_id or "r", status=status)
    username, password = credentials

    produced = envelope_bytes(body, username=username, password=password)

    # Written as text: the bytes lxml writes for the document they parse to, declaration apart.
    root = etree.fromstring(produced)
    declaration = b'<?xml version="1.0" encoding="utf-8"?>'
    assert produced == declaration + etree.tostring(root, encoding="utf-8")
    request = root.find(f"{{{SOAP_ENV}}}Body/{{{V2}}}CallbackRequest")
    expected = [(xml_safe(value) or None) if value else None for value in (username, password, request_id or "r")]
    assert [child(request, name).text for name in ("Username", "Password", "RequestId")] == expected
    identifier_element = child(request, "Data/Data/GoToState/DeviceIdentifierCollection/DeviceIdentifier/Identifier")
    assert identifier_element.text == (xml_safe(identifier) or None)


# -- dedupe key ------------------------------------------------------------------------------


def test_dedupe_key_is_the_sha256_of_the_canonical_body_without_delivery_fields():
    event = {
        key: value
        for key, value in DOCUMENT_EXAMPLE.items()
        if key not in ("callbackCount", "maxCallbackThreshold", "username", "password")
    }
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":")).encode("utf-8")

    assert dedupe_key(DOCUMENT_EXAMPLE) == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "changes",
    [
        {"callbackCount": 2},
        {"callbackCount": DROP},
        {"maxCallbackThreshold": 10},
        {"username": "other", "password": "other"},
        {"username": DROP, "password": DROP},
    ],
    ids=["count", "no-count", "threshold", "credentials", "no-credentials"],
)
def test_dedupe_key_is_the_same_across_retries_and_credentials(changes):
    assert dedupe_key(callback(**changes)) == dedupe_key(DOCUMENT_EXAMPLE)


def test_dedupe_key_ignores_key_order():
    reordered = dict(reversed(list(DOCUMENT_EXAMPLE.items())))

    assert dedupe_key(reordered) == dedupe_key(DOCUMENT_EXAMPLE)


@pytest.mark.parametrize(
    "body",
    [
        callback(deviceIds=[{"kind": "imei", "id": "another IMEI"}]),
        callback(status="Failed"),
        callback(requestId="another request"),
        with_response(stateName="another state"),
    ],
    ids=["device", "status", "request", "response"],
)
def test_dedupe_key_differs_for_a_different_event(body):
    assert dedupe_key(body) != dedupe_key(DOCUMENT_EXAMPLE)


# -- check ------------------------------------------------------------------------------------

OK_ID = {"kind": "mdn", "id": "5555550100"}
TOO_LONG = "x" * 10_001


@pytest.mark.parametrize("body", [None, [], "text", 3], ids=["null", "list", "string", "number"])
def test_body_must_be_an_object(body):
    error = fault(body)

    assert error.field == "$"
    assert "must be a JSON object" in error.rule


@pytest.mark.parametrize(
    "body, field, rule",
    [
        pytest.param(callback(requestId=DROP), "requestId", "must be a string", id="request-id-missing"),
        pytest.param(callback(requestId=None), "requestId", "must be a string", id="request-id-null"),
        pytest.param(callback(requestId=42), "requestId", "must be a string, got 42", id="request-id-number"),
        pytest.param(callback(requestId=""), "requestId", "must not be empty", id="request-id-empty"),
        pytest.param(callback(deviceIds=DROP), "deviceIds", "must be a list", id="device-ids-missing"),
        pytest.param(callback(deviceIds=OK_ID), "deviceIds", "must be a list", id="device-ids-object"),
        pytest.param(callback(deviceIds=[]), "deviceIds", "at least one", id="device-ids-empty"),
        pytest.param(callback(deviceIds=["mdn"]), "deviceIds[0]", "must be a {kind, id} object", id="device-id-string"),
        pytest.param(callback(deviceIds=[{"id": "1"}]), "deviceIds[0].kind", "must be a string", id="kind-missing"),
        pytest.param(
            callback(deviceIds=[{"kind": "mdn", "id": 5}]), "deviceIds[0].id", "must be a string", id="id-number"
        ),
        pytest.param(
            callback(deviceIds=[OK_ID, {"kind": True, "id": "1"}]), "deviceIds[1].kind", "got true", id="second-kind"
        ),
        pytest.param(callback(status=DROP), "status", "must be a string", id="status-missing"),
        pytest.param(callback(status=None), "status", "must be a string", id="status-null"),
        pytest.param(callback(status=["Success"]), "status", "got a list", id="status-list"),
        pytest.param(callback(deviceResponse="x"), "deviceResponse", "must be an object", id="device-response-string"),
        pytest.param(callback(deviceResponse=[]), "deviceResponse", "got a list", id="device-response-list"),
        pytest.param(
            callback(deviceResponse={"goToStateResponse": 5}), RESPONSE_PATH, "must be an object", id="response-number"
        ),
        pytest.param(
            with_response(deviceIds="mdn"), f"{RESPONSE_PATH}.deviceIds", "must be a list", id="response-ids-string"
        ),
        pytest.param(
            with_response(deviceIds=OK_ID), f"{RESPONSE_PATH}.deviceIds", "must be a list", id="response-ids-object"
        ),
        pytest.param(
            with_response(deviceIds=[OK_ID, "x"]), f"{RESPONSE_PATH}.deviceIds[1]", "object", id="response-id-string"
        ),
        pytest.param(
            with_response(deviceIds=[OK_ID, OK_ID, {"kind": 7, "id": "1"}]),
            f"{RESPONSE_PATH}.deviceIds[2].kind",
            "must be a string, got 7",
            id="response-third-kind",
        ),
        pytest.param(
            with_response(deviceIds=[{"kind": "mdn"}]), f"{RESPONSE_PATH}.deviceIds[0].id", "string", id="response-id"
        ),
    ],
)
def test_check_rule(body, field, rule):
    error = fault(body)

    assert error.field == field
    assert rule in error.rule


@pytest.mark.parametrize("name", CHECKED_RESPONSE_STRINGS)
@pytest.mark.parametrize("value", [12, {}, [], False], ids=["number", "object", "list", "boolean"])
def test_go_to_state_response_strings_must_be_strings(name, value):
    error = fault(with_response(**{name: value}))

    assert error.field == f"{RESPONSE_PATH}.{name}"
    assert "must be a string" in error.rule


@pytest.mark.parametrize(
    "body, field",
    [
        (callback(requestId=TOO_LONG), "requestId"),
        (callback(deviceIds=[{"kind": TOO_LONG, "id": "1"}]), "deviceIds[0].kind"),
        (callback(deviceIds=[{"kind": "mdn", "id": TOO_LONG}]), "deviceIds[0].id"),
        (callback(status=TOO_LONG), "status"),
        (with_response(deviceIds=[OK_ID, {"kind": "mdn", "id": TOO_LONG}]), f"{RESPONSE_PATH}.deviceIds[1].id"),
        *[(with_response(**{name: TOO_LONG}), f"{RESPONSE_PATH}.{name}") for name in CHECKED_RESPONSE_STRINGS],
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_strings_over_ten_thousand_characters_are_a_fault(body, field):
    error = fault(body)

    assert error.field == field
    assert "10,001 characters" in error.rule
    assert "x" * 41 not in error.rule


def test_strings_of_ten_thousand_characters_are_accepted():
    check(with_response(stateName="x" * 10_000))


def test_echoed_values_are_cut_to_forty_characters():
    string_error = fault(callback(deviceResponse="y" * 500))
    number_error = fault(callback(status=10**60))

    assert "y" * 40 in string_error.rule and "y" * 41 not in string_error.rule
    assert "500 characters" in string_error.rule
    assert "1" + "0" * 39 in number_error.rule and "0" * 40 not in number_error.rule


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(callback(deviceResponse=None), id="null-device-response"),
        pytest.param(callback(deviceResponse=DROP), id="no-device-response"),
        pytest.param(callback(deviceResponse={"goToStateResponse": None}), id="null-go-to-state-response"),
        pytest.param(with_response(deviceIds=None), id="null-response-device-ids"),
        pytest.param(with_response(**{name: None for name in CHECKED_RESPONSE_STRINGS}), id="null-strings"),
        pytest.param(callback(deviceIds=[{"kind": "", "id": ""}]), id="empty-kind-and-id"),
        pytest.param(callback(status=""), id="empty-status"),
        pytest.param(
            callback(callbackCount="x", maxCallbackThreshold={}, username=1, password=[TOO_LONG]),
            id="ignored-fields-hold-anything",
        ),
        pytest.param(with_response(smsrOid=5, subscriptionTypeCode=TOO_LONG), id="untranslated-response-fields"),
    ],
)
def test_check_accepts(body):
    check(body)


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param(callback(requestId=1, deviceIds=[]), "requestId", id="request-id-before-device-ids"),
        pytest.param(callback(deviceIds=[], status=1), "deviceIds", id="device-ids-before-status"),
        pytest.param(callback(status=1, deviceResponse=1), "status", id="status-before-device-response"),
        pytest.param(
            with_response(deviceIds="x", ipAddress=1), f"{RESPONSE_PATH}.deviceIds", id="response-ids-before-strings"
        ),
        pytest.param(
            with_response(ipAddress=1, stageStateChangeReasonDesc=1),
            f"{RESPONSE_PATH}.ipAddress",
            id="ip-address-before-reason",
        ),
    ],
)
def test_checks_run_in_the_documented_order(body, field):
    assert fault(body).field == field


def test_to_envelope_checks_the_body_first():
    with pytest.raises(RequestInvalid) as raised:
        envelope_bytes(callback(deviceIds=[]))

    assert raised.value.field == "deviceIds"
