"""The rules ThingSpace applies to request bodies, goToState's above all.

A broken rule raises the 400 naming the field the way a caller would find it,
e.g. ``devices[3].deviceIds[0].kind``, so one bad entry in a 10,000-device
request can be found. Optional fields, when present, must have their type:
null is not a way to leave a field out.
"""

import re

from gateway.simulator.errors import invalid_request

MAX_DEVICES = 10_000
MAX_SKU_LENGTH = 20
DEVICE_ID_KINDS = ("esn", "iccid", "imei", "mdn", "meid", "msisdn", "min", "eid", "imsi")
CUSTOM_FIELD_KEYS = tuple(f"CustomField{n}" for n in range(1, 6))
PUBLIC_IP_RESTRICTIONS = ("R", "U")
FILTER_KEYS = ("accountName", "groupName", "servicePlan", "customFields")
# A filter on these narrows devices within one account, so it must name it.
FILTER_KEYS_NEEDING_ACCOUNT = ("servicePlan", "customFields")

_REQUIRED_STRINGS = ("serviceName", "stateName", "servicePlan", "mdnZipCode")
_OPTIONAL_STRINGS = ("carrierIpPoolName", "groupName", "skuNumber", "publicIpRestriction")
_GO_TO_STATE_KEYS = {
    *_REQUIRED_STRINGS,
    *_OPTIONAL_STRINGS,
    "devices",
    "filter",
    "customFields",
    "devicesWithServiceAddress",
    "primaryPlaceOfUse",
}


def string_field(document, key, field=None, required=True):
    """``document[key]``: a non-empty string if required, else a string or absent (None)."""
    field = field or key
    if key not in document:
        if required:
            raise invalid_request(field, "is required")
        return None
    value = document[key]
    if not isinstance(value, str):
        raise invalid_request(field, "must be a string")
    if required and not value:
        raise invalid_request(field, "must not be empty")
    return value


def _object(value, field):
    if not isinstance(value, dict):
        raise invalid_request(field, "must be a JSON object")


def _list(value, field, max_items=None):
    if not isinstance(value, list):
        raise invalid_request(field, "must be a list")
    if not value:
        raise invalid_request(field, "must not be empty")
    if max_items is not None and len(value) > max_items:
        raise invalid_request(field, f"must have at most {max_items:,} entries, not {len(value):,}")


def _no_unknown_keys(document, known, prefix=""):
    unknown = sorted(document.keys() - set(known))
    if unknown:
        raise invalid_request(prefix + unknown[0], "is not a known field")


def _is_ip_address(value):
    """The document's format: 1-255.0-255.0-255.0-255."""
    octets = value.split(".")
    if len(octets) != 4 or not all(re.fullmatch(r"[0-9]{1,3}", octet) for octet in octets):
        return False
    first, *rest = (int(octet) for octet in octets)
    return 1 <= first <= 255 and all(octet <= 255 for octet in rest)


def _check_custom_fields(custom_fields, field):
    _list(custom_fields, field)
    for index, custom_field in enumerate(custom_fields):
        entry = f"{field}[{index}]"
        _object(custom_field, entry)
        if custom_field.get("key") not in CUSTOM_FIELD_KEYS:
            raise invalid_request(f"{entry}.key", f"must be one of {', '.join(CUSTOM_FIELD_KEYS)}")
        # An empty value is a value: it clears the field.
        if not isinstance(custom_field.get("value"), str):
            raise invalid_request(f"{entry}.value", "must be a string")


def _check_device_ids(device_ids, field):
    _list(device_ids, field)
    for index, device_id in enumerate(device_ids):
        entry = f"{field}[{index}]"
        _object(device_id, entry)
        if device_id.get("kind") not in DEVICE_ID_KINDS:
            raise invalid_request(f"{entry}.kind", f"must be one of {', '.join(DEVICE_ID_KINDS)}")
        string_field(device_id, "id", f"{entry}.id")


def _check_devices(devices):
    _list(devices, "devices", MAX_DEVICES)
    for index, device in enumerate(devices):
        entry = f"devices[{index}]"
        _object(device, entry)
        if "deviceIds" not in device:
            raise invalid_request(f"{entry}.deviceIds", "is required")
        _check_device_ids(device["deviceIds"], f"{entry}.deviceIds")
        ip_address = string_field(device, "ipAddress", f"{entry}.ipAddress", required=False)
        if ip_address is not None and not _is_ip_address(ip_address):
            raise invalid_request(f"{entry}.ipAddress", "must be an address 1-255.0-255.0-255.0-255")


def _check_filter(device_filter):
    _object(device_filter, "filter")
    _no_unknown_keys(device_filter, FILTER_KEYS, "filter.")
    if not device_filter:
        raise invalid_request("filter", f"must give at least one of {', '.join(FILTER_KEYS)}")
    for key in ("accountName", "groupName", "servicePlan"):
        string_field(device_filter, key, f"filter.{key}", required=False)
    if "customFields" in device_filter:
        _check_custom_fields(device_filter["customFields"], "filter.customFields")
    for key in FILTER_KEYS_NEEDING_ACCOUNT:
        if key in device_filter and "accountName" not in device_filter:
            raise invalid_request(f"filter.{key}", "needs filter.accountName")


def validate_go_to_state(body):
    """Raise the 400 for the first rule of the REST document that ``body`` breaks."""
    _object(body, "body")
    _no_unknown_keys(body, _GO_TO_STATE_KEYS)
    for key in _REQUIRED_STRINGS:
        string_field(body, key)
    for key in _OPTIONAL_STRINGS:
        string_field(body, key, required=False)
    if len(body.get("skuNumber", "")) > MAX_SKU_LENGTH:
        raise invalid_request("skuNumber", f"must be at most {MAX_SKU_LENGTH} characters")
    if "publicIpRestriction" in body and body["publicIpRestriction"] not in PUBLIC_IP_RESTRICTIONS:
        raise invalid_request("publicIpRestriction", 'must be "R" or "U"')
    if ("devices" in body) == ("filter" in body):
        raise invalid_request("devices", "give exactly one of devices and filter")
    if "devices" in body:
        _check_devices(body["devices"])
    else:
        _check_filter(body["filter"])
    if "customFields" in body:
        _check_custom_fields(body["customFields"], "customFields")
    if "devicesWithServiceAddress" in body:
        _list(body["devicesWithServiceAddress"], "devicesWithServiceAddress")
    if "primaryPlaceOfUse" in body:
        _object(body["primaryPlaceOfUse"], "primaryPlaceOfUse")
