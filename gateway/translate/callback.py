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

    Written as text, every value escaped, rather than built as an lxml tree:
    the delivery worker writes one per attempt, and the tree cost a tenth of
    a delivery. The bytes are what lxml writes for the same document (the
    tests hold them to it).
    """
    check(body)
    spellings = kind_spellings or {}
    response = (body.get("deviceResponse") or {}).get("goToStateResponse")
    status, fault = legacy_status(body)
    parts = [
        _ENVELOPE_START,
        _element("Username", username),
        _element("Password", password),
        _element("RequestId", body["requestId"]),
        _device_identifier("Device", body["deviceIds"][0], spellings),
        _OTHER_SERVICES_NIL,
        _go_to_state(response, spellings),
        _NIL.format("Fault") if fault is None else _fault(*fault),
        _NIL.format("Comment"),
        _NIL.format("Summary"),
        _element("Status", status),
        f"<CallbackCount>{callback_count:d}</CallbackCount>",
        f"<MaxCallbackThreshold>{max_callback_threshold:d}</MaxCallbackThreshold>",
        _ENVELOPE_END,
    ]
    return "".join(parts).encode("utf-8")


_ENVELOPE_START = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<s:Envelope xmlns:s="{ns.SOAP_ENV}">'
    f'<s:Body xmlns:xsi="{ns.XSI}" xmlns:xsd="{ns.XSD}">'
    f'<CallbackRequest xmlns="{ns.V2}">'
)
_ENVELOPE_END = "</Data></Data></CallbackRequest></s:Body></s:Envelope>"
_NIL = '<{} xsi:nil="true"/>'
# Opens Data/Data, whose first members are the other services' data.
_OTHER_SERVICES_NIL = "<Data><Data>" + "".join(_NIL.format(name) for name in _OTHER_SERVICES_DATA)


def _xml_text(value):
    """``value`` without the characters XML 1.0 cannot carry, escaped as text; None when nothing is left."""
    cleaned = xml_safe(value) if value else None
    if not cleaned:
        return None
    # As libxml2 escapes text: a carriage return too, or a parser would read it as a newline.
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def _element(name, text=None):
    """``<name>text</name>``; empty (``<name/>``) when ``text`` is absent."""
    escaped = _xml_text(text)
    return f"<{name}>{escaped}</{name}>" if escaped else f"<{name}/>"


def _element_or_nil(name, text):
    escaped = _xml_text(text)
    return f"<{name}>{escaped}</{name}>" if escaped else _NIL.format(name)


def _device_identifier(name, device_id, spellings):
    kind = _element("Kind", _legacy_kind(device_id["kind"], spellings))
    return f"<{name}>{kind}{_element('Identifier', device_id['id'])}</{name}>"


def _legacy_kind(kind, spellings):
    lower = kind.lower()
    return spellings.get(lower) or _LEGACY_KIND_BY_LOWER.get(lower, kind)


def _go_to_state(response, spellings):
    if response is None:
        return _NIL.format("GoToState")
    identifiers = "".join(
        _device_identifier("DeviceIdentifier", device_id, spellings) for device_id in response.get("deviceIds") or ()
    )
    collection = f"<DeviceIdentifierCollection>{identifiers}</DeviceIdentifierCollection>" if identifiers else "<DeviceIdentifierCollection/>"
    leaves = "".join(_element_or_nil(legacy_name, response.get(rest_name)) for rest_name, legacy_name in _GO_TO_STATE_STRINGS)
    return f"<GoToState>{collection}{leaves}</GoToState>"


def legacy_status(body):
    """The legacy Status of a checked callback, ``Success`` or ``Failed``, and for ``Failed`` its
    (faultcode, faultstring); see the module docstring."""
    status = body["status"]
    if status.lower() == "success":
        return "Success", None
    response = (body.get("deviceResponse") or {}).get("goToStateResponse") or {}
    code, description = (response.get(name) for name in _REASON_STRINGS)
    return "Failed", (code or status or "Failed", description or _missing_description(status, code))


def _fault(code, description):
    return f"<Fault>{_element('faultcode', code)}{_element('faultstring', description)}</Fault>"


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
