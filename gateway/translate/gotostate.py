"""A legacy GoToState request, checked against the legacy rules, as the REST goToState body.

Checks run in a fixed order so that the first problem found is the one the
client hears about:

1. Device selection: DeviceList and the four filters exclude each other, one
   of them is required, and DeviceServicePlanFilter / DeviceCustomFieldFilter
   need AccountNameFilter.
2. The required ServiceName, StateName, ServicePlan.
3. Each remaining field in the order of the legacy parameter table:
   DeviceList (size, then device by device, identifier by identifier, Kind
   before Identifier), DeviceCustomFieldFilter, MdnZipCode, CustomFields,
   PublicIPRestriction, SkuNumber.

Values go upstream exactly as sent (no stripping); only device kinds are
lower-cased, because ThingSpace spells them that way.
"""

import re

from gateway.exceptions import RequestInvalid
from gateway.translate.quote import shown

MAX_DEVICES = 10_000
MAX_SKU_NUMBER_LENGTH = 20

DEVICE_KINDS = ("ESN", "ICCID", "IMEI", "MDN", "MEID", "MSISDN")
CUSTOM_FIELD_NAMES = frozenset(f"CustomField{n}" for n in range(1, 6))

# Compared in lower case, the form sent upstream: upper-casing would accept
# look-alikes such as a dotless "ı" ("ımeı".upper() == "IMEI") and send them on.
_LOWER_DEVICE_KINDS = frozenset(kind.lower() for kind in DEVICE_KINDS)
_DEVICE_KINDS_TEXT = ", ".join(DEVICE_KINDS)

# Explicit ASCII ranges: \w would let through any Unicode letter or digit.
_NOT_CUSTOM_VALUE_CHARACTER = re.compile(r"[^A-Za-z0-9/ @.,:\-_()\[\]#]")
_CUSTOM_VALUE_CHARACTERS_TEXT = "ASCII letters and digits, space and / @ . , : - _ ( ) [ ] #"

_PUBLIC_IP_RESTRICTION_CODES = {"restricted": "R", "unrestricted": "U"}

# Each kind as the legacy document spells it (what generated clients send),
# and as ThingSpace spells it.
REST_KIND_OF_LEGACY_KIND = {kind: kind.lower() for kind in DEVICE_KINDS}


class Devices(list):
    """The REST devices of a DeviceList that was read straight into them (gateway/soap/device_list.py):
    every DeviceList rule below already held, every kind spelled as the legacy document spells it."""


def to_rest(request, default_mdn_zip_code=None):
    """The REST goToState body for a ``GoToStateRequest``, ready for ``json.dumps``.

    ``default_mdn_zip_code`` stands in for an absent MdnZipCode, which ThingSpace
    requires. Raises ``RequestInvalid`` for the first broken rule (see the
    module docstring for the order). Absent values (None, empty string, empty
    optional list) produce no key.
    """
    _check_device_selection(request)
    for name in ("ServiceName", "StateName", "ServicePlan"):
        _check_required(name, getattr(request, name))

    devices = _devices(request.DeviceList)
    filter_custom_fields = _custom_fields(
        request.DeviceCustomFieldFilter, "DeviceCustomFieldFilter", "CustomFieldFilterObject"
    )
    mdn_zip_code = _mdn_zip_code(request.MdnZipCode, default_mdn_zip_code)
    custom_fields = _custom_fields(request.CustomFields, "CustomFields", "CustomField")
    public_ip_restriction = _public_ip_restriction(request.PublicIPRestriction)
    _check_sku_number(request.SkuNumber)

    # Keys in the order of the REST document's field table.
    return _present_only(
        {
            "devices": devices,
            "filter": _present_only(
                {
                    "accountName": request.AccountNameFilter,
                    "groupName": request.DeviceGroupNameFilter,
                    "servicePlan": request.DeviceServicePlanFilter,
                    "customFields": filter_custom_fields,
                }
            ),
            "serviceName": request.ServiceName,
            "stateName": request.StateName,
            "servicePlan": request.ServicePlan,
            "carrierIpPoolName": request.CarrierIpPoolName,
            "mdnZipCode": mdn_zip_code,
            "groupName": request.DeviceGroupNames,
            "skuNumber": request.SkuNumber,
            "customFields": custom_fields,
            "publicIpRestriction": public_ip_restriction,
        }
    )


def _present_only(fields):
    """``fields`` without the absent ones: ThingSpace gets no key rather than null or ""."""
    return {key: value for key, value in fields.items() if value}


def _check_device_selection(request):
    filters = {
        "AccountNameFilter": request.AccountNameFilter,
        "DeviceGroupNameFilter": request.DeviceGroupNameFilter,
        "DeviceServicePlanFilter": request.DeviceServicePlanFilter,
        "DeviceCustomFieldFilter": request.DeviceCustomFieldFilter,
    }
    filters_given = [name for name, value in filters.items() if value]
    # A DeviceList element that is present but empty still counts as the
    # client's choice of DeviceList; _devices reports it as empty.
    if request.DeviceList is not None:
        if filters_given:
            raise RequestInvalid(
                "DeviceList",
                f"cannot be combined with {', '.join(filters_given)}; "
                "send either DeviceList or filters, not both",
            )
        return
    if not filters_given:
        raise RequestInvalid(
            "DeviceList",
            f"either DeviceList or at least one of {', '.join(filters)} is required",
        )
    for name in ("DeviceServicePlanFilter", "DeviceCustomFieldFilter"):
        if filters[name] and not request.AccountNameFilter:
            raise RequestInvalid(name, "needs AccountNameFilter: name the billing account to filter in")


def _check_required(name, value):
    if value is None or not value.strip():
        raise RequestInvalid(name, "is required and must not be empty or only whitespace")


def _devices(device_list):
    if device_list is None or isinstance(device_list, Devices):
        return device_list
    if not device_list:
        raise RequestInvalid(
            "DeviceList", "is empty; it needs at least one DeviceIdentifierCollection"
        )
    if len(device_list) > MAX_DEVICES:
        raise RequestInvalid(
            "DeviceList",
            f"holds {len(device_list):,} devices; at most {MAX_DEVICES:,} are allowed in one request",
        )
    return [_device(device, number) for number, device in enumerate(device_list, 1)]


def _device(device, device_number):
    # The hot loop of a 10,000-device request: one cheap test per identifier,
    # paths and messages only when it fails.
    identifiers = device.DeviceIdentifiers if device is not None else None
    if not identifiers:
        raise RequestInvalid(
            f"DeviceList/DeviceIdentifierCollection[{device_number}]/DeviceIdentifiers",
            "needs at least one DeviceIdentifier (Kind and Identifier)",
        )
    device_ids = []
    for identifier_number, identifier in enumerate(identifiers, 1):
        kind, value = (identifier.Kind, identifier.Identifier) if identifier is not None else (None, None)
        lower_kind = kind.lower() if kind else None
        if lower_kind not in _LOWER_DEVICE_KINDS or not value:
            _refuse_device_id(kind, device_number, identifier_number)
        device_ids.append({"kind": lower_kind, "id": value})
    return {"deviceIds": device_ids}


def _refuse_device_id(kind, device_number, identifier_number):
    """Raise what is wrong with an identifier: Kind missing, Kind unknown, or Identifier missing."""
    if not kind:
        raise RequestInvalid(
            _identifier_path(device_number, identifier_number, "Kind"),
            f"is required: one of {_DEVICE_KINDS_TEXT}",
        )
    if kind.lower() not in _LOWER_DEVICE_KINDS:
        raise RequestInvalid(
            _identifier_path(device_number, identifier_number, "Kind"),
            f"must be one of {_DEVICE_KINDS_TEXT} (any case), got {shown(kind)}",
        )
    raise RequestInvalid(
        _identifier_path(device_number, identifier_number, "Identifier"),
        f"is required: the device's {kind}",
    )


def _identifier_path(device_number, identifier_number, leaf):
    return (
        f"DeviceList/DeviceIdentifierCollection[{device_number}]"
        f"/DeviceIdentifiers/DeviceIdentifier[{identifier_number}]/{leaf}"
    )


def _custom_fields(items, list_name, item_name):
    """CustomFields and DeviceCustomFieldFilter: the same Name/Value pairs under the same rules."""
    if not items:
        return None
    pairs = []
    for number, item in enumerate(items, 1):
        path = f"{list_name}/{item_name}[{number}]"
        name, value = (item.Name, item.Value) if item is not None else (None, None)
        if not name:
            raise RequestInvalid(f"{path}/Name", "is required: one of CustomField1..CustomField5")
        if name not in CUSTOM_FIELD_NAMES:
            raise RequestInvalid(
                f"{path}/Name", f"must be one of CustomField1..CustomField5, got {shown(name)}"
            )
        if not value:
            raise RequestInvalid(f"{path}/Value", f"is required for {name}")
        _check_custom_field_value(f"{path}/Value", value)
        pairs.append({"key": name, "value": value})
    return pairs


def _check_custom_field_value(path, value):
    bad = _NOT_CUSTOM_VALUE_CHARACTER.search(value)
    if bad:
        raise RequestInvalid(
            path,
            f"contains {bad.group()!r} at position {bad.start() + 1}; "
            f"allowed are {_CUSTOM_VALUE_CHARACTERS_TEXT}",
        )


def _mdn_zip_code(sent, default):
    zip_code = sent or default
    if not zip_code:
        raise RequestInvalid(
            "MdnZipCode",
            "is required by ThingSpace; send MdnZipCode or configure [defaults] mdn_zip_code",
        )
    return zip_code


def _public_ip_restriction(value):
    if not value:
        return None
    code = _PUBLIC_IP_RESTRICTION_CODES.get(value.lower())
    if code is None:
        raise RequestInvalid(
            "PublicIPRestriction",
            f"must be 'restricted' or 'unrestricted' (any case), got {shown(value)}",
        )
    return code


def _check_sku_number(value):
    if value and len(value) > MAX_SKU_NUMBER_LENGTH:
        raise RequestInvalid(
            "SkuNumber",
            f"must be at most {MAX_SKU_NUMBER_LENGTH} characters, got {len(value)}",
        )
