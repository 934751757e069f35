"""A ThingSpace goToState callback, checked, as the legacy SOAP CallbackRequest envelope.

Checking (``check``; ``to_envelope`` runs it first)
  Rules run in a fixed order, so the first problem found is the one reported:
  requestId, deviceIds (entry by entry, kind before id), status, then
  deviceResponse, goToStateResponse, its deviceIds and its strings in the
  order ipAddress, stateName, serviceName, servicePlan, accountName,
  stageStateChangeReasonCode, stageStateChangeReasonDesc. Fields are named by
  JSON path with 0-based indexes (``deviceIds[0].kind``). An optional value
  that is null counts as absent. Only what is translated is checked:
  callbackCount, maxCallbackThreshold, ThingSpace's credentials, smsrOid and
  subscriptionType* may hold anything. A string longer than
  ``MAX_STRING_LENGTH`` is a fault. Empty strings pass wherever a string
  does, except requestId; a deviceIds list may be empty only inside
  goToStateResponse.

The envelope (``to_envelope``)
  The shape of the legacy document's example, made well-formed, compact (no
  whitespace between elements) and behind ``<?xml version="1.0"
  encoding="utf-8"?>``. Listeners deserialize with XmlSerializer, which is
  order-sensitive, so every element of the shape is always written:

  - Not applicable, or absent, is ``xsi:nil="true"``: the six other
    services' data, Comment, Summary, Fault on success, a GoToState leaf
    that is missing, null or empty (after the cleaning below), and GoToState
    itself when ThingSpace sent no goToStateResponse. A goToStateResponse
    without deviceIds gives an empty DeviceIdentifierCollection.
  - Status is ``Success`` when ThingSpace's status is "success" in any case,
    otherwise ``Failed``. On failure Fault holds faultcode and faultstring
    only (faultfactor and detail have nothing to carry): faultcode is
    stageStateChangeReasonCode, or else ThingSpace's status, or else
    ``Failed``; faultstring is stageStateChangeReasonDesc, or else a sentence
    naming the status (and the reason code, when there is one).
  - Kinds are spelled as the legacy client spelled them in its GoToState
    request (``kind_spellings``), for Device and every DeviceIdentifier.
    A kind the client did not use is written upper-case when it is one of
    ``LEGACY_CALLBACK_KINDS`` (the example's ``mdn`` would read ``MDN``),
    and as ThingSpace sent it otherwise (``eid``, ``imsi``): a legacy client
    has no spelling of its own for kinds it never knew.
  - CallbackCount and MaxCallbackThreshold are the gateway's own delivery
    attempt and limit, never ThingSpace's: ThingSpace retries towards the
    gateway, the gateway towards the listener.
  - Username and Password are the legacy listener's registration (empty
    elements when it has none). ThingSpace's username and password are its
    credentials for the gateway's receiver and are never forwarded; nor are
    smsrOid and subscriptionType*, which the legacy shape has no place for.
  - Characters XML 1.0 cannot carry (most C0 controls, lone surrogates,
    U+FFFE, U+FFFF) are removed from every value, the rest of the value kept,
    so the envelope is always well-formed.

The dedupe key (``dedupe_key``)
  ThingSpace resends a callback until it is acknowledged, raising
  callbackCount each time; the key hashes everything else except ThingSpace's
  credentials, which belong to the delivery, not to the event.
"""

import hashlib
import json
import re

from lxml import etree

from gateway import ns
from gateway.exceptions import RequestInvalid
from gateway.translate.gotostate import Devices
from gateway.translate.quote import LIMIT, shown
from gateway.xmlchars import xml_safe

MAX_STRING_LENGTH = 10_000

# The Kind values the legacy callback table lists (MIN is one more than a
# GoToState request may use).
LEGACY_CALLBACK_KINDS = ("ESN", "ICCID", "IMEI", "MDN", "MEID", "MIN", "MSISDN")
# Looked up by the lower-cased ThingSpace kind: upper-casing first would turn
# look-alikes such as a dotless "ı" into a legacy kind.
_LEGACY_KIND_BY_LOWER = {kind.lower(): kind for kind in LEGACY_CALLBACK_KINDS}

_GO_TO_STATE_STRINGS = (
    ("ipAddress", "IpAddress"),
    ("stateName", "StateName"),
    ("serviceName", "ServiceName"),
    ("servicePlan", "ServicePlan"),
    ("accountName", "AccountName"),
)
_REASON_STRINGS = ("stageStateChangeReasonCode", "stageStateChangeReasonDesc")
_CHECKED_RESPONSE_STRINGS = tuple(rest_name for rest_name, _ in _GO_TO_STATE_STRINGS) + _REASON_STRINGS
# The CallbackData members for other callback services, always nil here.
_OTHER_SERVICES_DATA = (
    "CarrierService",
    "ExternalProvisioningChange",
    "PromoChange",
    "SMSDelivery",
    "PRLInformation",
    "DeviceSuspendStatus",
)
_NOT_PART_OF_THE_EVENT = frozenset({"callbackCount", "maxCallbackThreshold", "username", "password"})

_XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>'
_SOAP = f"{{{ns.SOAP_ENV}}}"
_V2 = f"{{{ns.V2}}}"
_XSI_NIL = f"{{{ns.XSI}}}nil"


# -- check ---------------------------------------------------------------------------


def check(body):
    """Raise ``RequestInvalid`` for the first rule ``body`` (parsed JSON) breaks.

    See the module docstring for the rules and their order.
    """
    if not isinstance(body, dict):
        raise RequestInvalid("$", f"the callback must be a JSON object, got {_described(body)}")
    _check_string("requestId", body.get("requestId"))
    if not body["requestId"]:
        raise RequestInvalid("requestId", "must not be empty")
    _check_device_ids("deviceIds", body.get("deviceIds"))
    if not body["deviceIds"]:
        raise RequestInvalid("deviceIds", "must name the device: at least one {kind, id} is required")
    _check_string("status", body.get("status"))

    device_response = body.get("deviceResponse")
    if device_response is None:
        return
    _check_object("deviceResponse", device_response)
    response = device_response.get("goToStateResponse")
    if response is None:
        return
    path = "deviceResponse.goToStateResponse"
    _check_object(path, response)
    if response.get("deviceIds") is not None:
        _check_device_ids(f"{path}.deviceIds", response["deviceIds"])
    for name in _CHECKED_RESPONSE_STRINGS:
        if response.get(name) is not None:
            _check_string(f"{path}.{name}", response[name])


def _check_device_ids(path, device_ids):
    if not isinstance(device_ids, list):
        raise RequestInvalid(path, f"must be a list of {{kind, id}} objects, got {_described(device_ids)}")
    for index, device_id in enumerate(device_ids):
        if not isinstance(device_id, dict):
            raise RequestInvalid(
                f"{path}[{index}]", f"must be a {{kind, id}} object, got {_described(device_id)}"
            )
        _check_string(f"{path}[{index}].kind", device_id.get("kind"))
        _check_string(f"{path}[{index}].id", device_id.get("id"))


def _check_object(path, value):
    if not isinstance(value, dict):
        raise RequestInvalid(path, f"must be an object, got {_described(value)}")


def _check_string(path, value):
    if not isinstance(value, str):
        raise RequestInvalid(path, f"must be a string, got {_described(value)}")
    if len(value) > MAX_STRING_LENGTH:
        raise RequestInvalid(
            path, f"is {len(value):,} characters long; at most {MAX_STRING_LENGTH:,} are accepted"
        )


def _described(value):
    """``value`` for a fault text: its JSON type for containers, else itself, cut short when long."""
    if value is None:
        return "nothing (missing or null)"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return shown(value)
    return json.dumps(value)[:LIMIT]  # a number or a boolean


# -- the envelope ----------------------------------------------------------------------


def to_envelope(body, *, username, password, callback_count, max_callback_threshold, kind_spellings=None):
    """The legacy SOAP 1.1 CallbackRequest envelope for ``body``, as UTF-8 bytes.

    ``username`` and ``password`` are the legacy listener's registration (None
    or "" for none); ``callback_count`` and ``max_callback_threshold`` are the
    gateway's attempt number and limit (ints); ``kind_spellings`` is what
    ``kind_spellings()`` returned for the originating GoToState request, when
    known. Raises ``RequestInvalid`` as ``check`` does.
    """
    check(body)
    spellings = kind_spellings or {}
    response = (body.get("deviceResponse") or {}).get("goToStateResponse")
    status, fault = legacy_status(body)

    envelope = etree.Element(_SOAP + "Envelope", nsmap={"s": ns.SOAP_ENV})
    soap_body = etree.SubElement(envelope, _SOAP + "Body", nsmap={"xsi": ns.XSI, "xsd": ns.XSD})
    request = etree.SubElement(soap_body, _V2 + "CallbackRequest", nsmap={None: ns.V2})
    _element(request, "Username", username)
    _element(request, "Password", password)
    _element(request, "RequestId", body["requestId"])
    _device_identifier(request, "Device", body["deviceIds"][0], spellings)

    data = _element(_element(request, "Data"), "Data")
    for name in _OTHER_SERVICES_DATA:
        _nil(data, name)
    _go_to_state(data, response, spellings)
    if fault is None:
        _nil(data, "Fault")
    else:
        _fault(data, *fault)
    _nil(data, "Comment")
    _nil(data, "Summary")
    _element(data, "Status", status)
    _element(data, "CallbackCount", f"{callback_count:d}")
    _element(data, "MaxCallbackThreshold", f"{max_callback_threshold:d}")
    return _XML_DECLARATION + etree.tostring(envelope, encoding="utf-8")


def _xml_text(value):
    """``value`` without the characters XML 1.0 cannot carry; None when nothing is left."""
    return (xml_safe(value) or None) if value else None


def _element(parent, name, text=None):
    """A V2 child of ``parent``; empty (``<name/>``) when ``text`` is absent."""
    element = etree.SubElement(parent, _V2 + name)
    element.text = _xml_text(text)
    return element


def _nil(parent, name):
    etree.SubElement(parent, _V2 + name, {_XSI_NIL: "true"})


def _element_or_nil(parent, name, text):
    cleaned = _xml_text(text)
    if cleaned is None:
        _nil(parent, name)
    else:
        etree.SubElement(parent, _V2 + name).text = cleaned


def _device_identifier(parent, name, device_id, spellings):
    identifier = _element(parent, name)
    _element(identifier, "Kind", _legacy_kind(device_id["kind"], spellings))
    _element(identifier, "Identifier", device_id["id"])


def _legacy_kind(kind, spellings):
    lower = kind.lower()
    return spellings.get(lower) or _LEGACY_KIND_BY_LOWER.get(lower, kind)


def _go_to_state(data, response, spellings):
    if response is None:
        _nil(data, "GoToState")
        return
    go_to_state = _element(data, "GoToState")
    collection = _element(go_to_state, "DeviceIdentifierCollection")
    for device_id in response.get("deviceIds") or ():
        _device_identifier(collection, "DeviceIdentifier", device_id, spellings)
    for rest_name, legacy_name in _GO_TO_STATE_STRINGS:
        _element_or_nil(go_to_state, legacy_name, response.get(rest_name))


def legacy_status(body):
    """The legacy Status of a checked callback, ``Success`` or ``Failed``, and for ``Failed`` its
    (faultcode, faultstring); see the module docstring."""
    status = body["status"]
    if status.lower() == "success":
        return "Success", None
    response = (body.get("deviceResponse") or {}).get("goToStateResponse") or {}
    code, description = (response.get(name) for name in _REASON_STRINGS)
    return "Failed", (code or status or "Failed", description or _missing_description(status, code))


def _fault(data, code, description):
    fault = _element(data, "Fault")
    _element(fault, "faultcode", code)
    _element(fault, "faultstring", description)


def _missing_description(status, code):
    reported = f"ThingSpace reported status {status!r}"
    if code:
        return f"{reported} with reason code {code!r} but no description"
    return f"{reported} without a reason"


# -- correlation -----------------------------------------------------------------------


def dedupe_key(body):
    """A hex digest naming one callback across ThingSpace's retries of it; ``body`` must pass ``check``."""
    event = {key: value for key, value in body.items() if key not in _NOT_PART_OF_THE_EVENT}
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def kind_spellings(request):
    """Lower-case kind → the first spelling of it in a ``GoToStateRequest``'s DeviceList,
    for the kinds whose spelling the envelope would not produce by itself.

    Most clients spell kinds as the legacy document does (``IMEI``): for
    their requests this is empty, and the store keeps only ``{}``.
    """
    if isinstance(request.DeviceList, Devices):
        return {}  # every kind spelled as the legacy document spells it
    spellings = {}
    for device in request.DeviceList or ():
        identifiers = device.DeviceIdentifiers if device is not None else None
        for identifier in identifiers or ():
            kind = identifier.Kind if identifier is not None else None
            if kind:
                spellings.setdefault(kind.lower(), kind)
    return {lower: kind for lower, kind in spellings.items() if kind != _LEGACY_KIND_BY_LOWER.get(lower)}
