"""GoToState's DeviceList read in one pass (gateway/soap/device_list.py) says and sends what the strict way does.

Each DeviceList below is read twice: as the gateway reads GoToState's Input
(the one-pass reader first), and with a model of the same contract whose
DeviceList has no such reader (the strict reader, then the translation
core's checks). The outcomes, REST body and kind spellings or the fault's
words, must be the same; and the one-pass reader must have taken exactly the
cases it is meant for, so that both ways are exercised.
"""

import json

import pytest
from spyne import ComplexModel

from gateway import ns
from gateway.exceptions import RequestInvalid
from gateway.soap import deserializer, envelope
from gateway.soap import protocol  # noqa: F401 - wires the one-pass reader in, as in the gateway
from gateway.soap.faults import DeserializationFailed
from gateway.soap.models import DeviceIdentifierCollection, GoToStateRequest, _array_of
from gateway.translate import callback, gotostate
from tests import envelopes

NIL = 'i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'
OTHER_NS = 'xmlns:o="urn:other"'


class StrictGoToStateRequest(ComplexModel):
    """GoToStateRequest's contract, its DeviceList a collection type of its own: read the strict way."""

    __namespace__ = ns.STATE
    __type_name__ = "GoToStateRequest"
    _type_info = [
        (name, _array_of(DeviceIdentifierCollection) if name == "DeviceList" else model)
        for name, model in GoToStateRequest._type_info.items()
    ]


for _model in (GoToStateRequest, StrictGoToStateRequest):
    _model.resolve_namespace(_model, ns.STATE)  # as the Application does with the models it serves


def device(*identifiers, ws=""):
    """One DeviceIdentifierCollection of (Kind, Identifier) pairs, raw XML allowed; ``ws`` between elements."""
    inner = ws.join(
        f"<c:DeviceIdentifier>{ws}<c:Kind>{kind}</c:Kind>{ws}<c:Identifier>{value}</c:Identifier>{ws}</c:DeviceIdentifier>"
        for kind, value in identifiers
    )
    return f"<c:DeviceIdentifierCollection>{ws}<c:DeviceIdentifiers>{ws}{inner}{ws}</c:DeviceIdentifiers>{ws}</c:DeviceIdentifierCollection>"


TWO = device(("IMEI", "990000862471854"), ("ICCID", "89148000000800000001"))
ONE = device(("MEID", "A1000000444461"))

# name -> (DeviceList's inner XML, whether the one-pass reader takes it)
CASES = {
    "generated client": (TWO + ONE, True),
    "every legacy kind": ("".join(device((kind, f"id-{kind}")) for kind in gotostate.DEVICE_KINDS), True),
    "pretty-printed": ("\n  " + device(("IMEI", "1"), ("ESN", "2"), ws="\n    ") + "\n  " + ONE + "\n", True),
    "identifier of white space and entities": (device(("MDN", " 5551234 &amp; &lt;x&gt; ")), True),
    "identifier at the length limit": (device(("IMEI", "9" * deserializer.MAX_TEXT)), True),
    "no-break space between elements": ("\u00a0" + TWO, True),  # white space to str.isspace, both ways
    "kind in lower case": (device(("imei", "990000862471854")), False),
    "kind in mixed case": (TWO + device(("Iccid", "8914")), False),
    "kind unknown": (device(("SIM", "1")), False),
    "kind a look-alike": (device(("\u0131mei", "1")), False),
    "kind empty": (device(("", "1")), False),
    "kind nil": (f"<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind {NIL}/>"
                 "<c:Identifier>1</c:Identifier></c:DeviceIdentifier></c:DeviceIdentifiers></c:DeviceIdentifierCollection>", False),
    "identifier empty": (TWO + device(("IMEI", "")), False),
    "identifier too long": (device(("IMEI", "9" * (deserializer.MAX_TEXT + 1))), False),
    "identifier holding an element": (device(("IMEI", "99<c:Kind>x</c:Kind>")), False),
    "identifier missing": ("<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind>IMEI</c:Kind>"
                           "</c:DeviceIdentifier></c:DeviceIdentifiers></c:DeviceIdentifierCollection>", False),
    "identifier before kind": ("<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Identifier>1</c:Identifier>"
                               "<c:Kind>IMEI</c:Kind></c:DeviceIdentifier></c:DeviceIdentifiers></c:DeviceIdentifierCollection>", False),
    "kind twice": ("<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind>IMEI</c:Kind>"
                   "<c:Kind>ESN</c:Kind></c:DeviceIdentifier></c:DeviceIdentifiers></c:DeviceIdentifierCollection>", False),
    "identifier in another namespace": (f"<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind>IMEI</c:Kind>"
                                        f"<o:Identifier {OTHER_NS}>1</o:Identifier></c:DeviceIdentifier></c:DeviceIdentifiers>"
                                        "</c:DeviceIdentifierCollection>", False),
    "an element too many": ("<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind>IMEI</c:Kind>"
                            "<c:Identifier>1</c:Identifier><c:Extra>x</c:Extra></c:DeviceIdentifier></c:DeviceIdentifiers>"
                            "</c:DeviceIdentifierCollection>", False),
    "text between identifiers": (TWO.replace("</c:DeviceIdentifier><c:DeviceIdentifier>", "</c:DeviceIdentifier>x<c:DeviceIdentifier>"), False),
    "text after a kind": (TWO.replace("</c:Kind>", "</c:Kind>x", 1), False),
    "text in a collection": (ONE.replace("<c:DeviceIdentifiers>", "x<c:DeviceIdentifiers>"), False),
    "text in the list": ("x" + TWO, False),
    "device without identifiers": (TWO + "<c:DeviceIdentifierCollection><c:DeviceIdentifiers/></c:DeviceIdentifierCollection>", False),
    "device empty": ("<c:DeviceIdentifierCollection/>" + TWO, False),
    "device nil": (f"<c:DeviceIdentifierCollection {NIL}/>", False),
    "device holding two lists": (ONE.replace("</c:DeviceIdentifiers>", "</c:DeviceIdentifiers><c:DeviceIdentifiers/>"), False),
    "a stranger among devices": (TWO + "<c:DeviceIdentifier><c:Kind>IMEI</c:Kind><c:Identifier>1</c:Identifier></c:DeviceIdentifier>", False),
    "skeleton": (f"<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind {NIL}/><c:Identifier {NIL}/>"
                 "</c:DeviceIdentifier></c:DeviceIdentifiers></c:DeviceIdentifierCollection>", False),
    "empty list": ("", False),
    "too many devices": (ONE * (gotostate.MAX_DEVICES + 1), False),
}


def outcome(input_element, model):
    """What the gateway makes of a GoToState Input read as ``model``: the REST body and kind
    spellings, or the fault's words."""
    try:
        request = deserializer.read(input_element, model)
    except DeserializationFailed as fault:
        return "fault", fault.faultstring
    try:
        return "rest", gotostate.to_rest(request), callback.kind_spellings(request)
    except RequestInvalid as invalid:
        return "invalid", str(invalid)


@pytest.mark.parametrize("inner, taken", CASES.values(), ids=CASES.keys())
def test_the_one_pass_reader_says_and_sends_what_the_strict_way_does(inner, taken):
    body = envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": inner}})
    (operation,) = envelope.parse(body).iter(f"{{{ns.V2}}}GoToState")
    (input_element,) = operation
    gateway_way = outcome(input_element, GoToStateRequest)
    assert (gateway_way[0] == "rest" and isinstance(gateway_way[1]["devices"], gotostate.Devices)) == taken
    assert gateway_way == outcome(input_element, StrictGoToStateRequest)


def test_its_devices_go_upstream_as_json_byte_for_byte():
    """Not only equal as Python values: the JSON text ThingSpace gets is the same."""
    inner = CASES["pretty-printed"][0] + CASES["identifier of white space and entities"][0]
    body = envelopes.go_to_state({**envelopes.VALID, "DeviceList": {"xml": inner}})
    (input_element,) = next(envelope.parse(body).iter(f"{{{ns.V2}}}GoToState"))
    fast, strict = (gotostate.to_rest(deserializer.read(input_element, m)) for m in (GoToStateRequest, StrictGoToStateRequest))
    assert isinstance(fast["devices"], gotostate.Devices) and not isinstance(strict["devices"], gotostate.Devices)
    assert json.dumps(fast) == json.dumps(strict)
