"""gateway.translate.gotostate: the legacy GoToState request as the REST goToState body."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.exceptions import RequestInvalid
from gateway.soap.models import (
    CustomField,
    CustomFieldFilterObject,
    DeviceIdentifier,
    DeviceIdentifierCollection,
    GoToStateRequest,
)
from gateway.translate.gotostate import to_rest

CONTRACT = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "CONTRACT.md"

ACCOUNT = "0000123456-00001"
ICCID = "89144259800000080079"
IMEI = "990000862471854"
REQUIRED = {"ServiceName": "fast1", "StateName": "inter-active", "ServicePlan": "4G East"}
REQUIRED_REST = {"serviceName": "fast1", "stateName": "inter-active", "servicePlan": "4G East"}

# Both lists of Name/Value pairs: (list element, item element, model class).
CUSTOM_FIELD_LISTS = [
    pytest.param("CustomFields", "CustomField", CustomField, id="CustomFields"),
    pytest.param(
        "DeviceCustomFieldFilter",
        "CustomFieldFilterObject",
        CustomFieldFilterObject,
        id="DeviceCustomFieldFilter",
    ),
]
FILTERS = ["AccountNameFilter", "DeviceGroupNameFilter", "DeviceServicePlanFilter", "DeviceCustomFieldFilter"]


def identifier(kind="ICCID", value=ICCID):
    return DeviceIdentifier(Kind=kind, Identifier=value)


def device(*identifiers):
    return DeviceIdentifierCollection(DeviceIdentifiers=list(identifiers) or [identifier()])


def by_devices(**fields):
    """A valid request naming one device, with ``fields`` replaced."""
    values = {"DeviceList": [device()], **REQUIRED, "MdnZipCode": "94203"}
    values.update(fields)
    return GoToStateRequest(**values)


def by_filter(**fields):
    """A valid request selecting an account's devices, with ``fields`` replaced."""
    return by_devices(**{"DeviceList": None, "AccountNameFilter": ACCOUNT, **fields})


def with_custom_fields(list_name, item_class, *pairs):
    """A valid request whose ``list_name`` holds ``pairs`` (None for an empty item)."""
    items = [None if pair is None else item_class(Name=pair[0], Value=pair[1]) for pair in pairs]
    return by_filter(**{list_name: items})


def fault(request, **kwargs):
    with pytest.raises(RequestInvalid) as raised:
        to_rest(request, **kwargs)
    return raised.value


ALL_FIELDS_BY_FILTER = by_filter(
    DeviceGroupNameFilter="West fleet",
    DeviceServicePlanFilter="OldPlan",
    DeviceCustomFieldFilter=[CustomFieldFilterObject(Name="CustomField1", Value="batch 7")],
    CarrierIpPoolName="pool-a",
    MdnZipCode="94203",
    CustomFields=[
        CustomField(Name="CustomField2", Value="site: HQ"),
        CustomField(Name="CustomField5", Value="x"),
    ],
    DeviceGroupNames="4G West",
    PublicIPRestriction="unrestricted",
    SkuNumber="SKU-123",
)
ALL_FIELDS_BY_FILTER_REST = {
    "filter": {
        "accountName": ACCOUNT,
        "groupName": "West fleet",
        "servicePlan": "OldPlan",
        "customFields": [{"key": "CustomField1", "value": "batch 7"}],
    },
    **REQUIRED_REST,
    "carrierIpPoolName": "pool-a",
    "mdnZipCode": "94203",
    "groupName": "4G West",
    "skuNumber": "SKU-123",
    "customFields": [
        {"key": "CustomField2", "value": "site: HQ"},
        {"key": "CustomField5", "value": "x"},
    ],
    "publicIpRestriction": "U",
}

ALL_FIELDS_BY_DEVICES = by_devices(
    DeviceList=[device(identifier("IMEI", IMEI), identifier("ICCID", ICCID)), device(identifier("MDN", "5555550100"))],
    CarrierIpPoolName="pool-a",
    MdnZipCode="94203",
    CustomFields=[CustomField(Name="CustomField3", Value="y")],
    DeviceGroupNames="4G West",
    PublicIPRestriction="Restricted",
    SkuNumber="SKU-123",
)
ALL_FIELDS_BY_DEVICES_REST = {
    "devices": [
        {"deviceIds": [{"kind": "imei", "id": IMEI}, {"kind": "iccid", "id": ICCID}]},
        {"deviceIds": [{"kind": "mdn", "id": "5555550100"}]},
    ],
    **REQUIRED_REST,
    "carrierIpPoolName": "pool-a",
    "mdnZipCode": "94203",
    "groupName": "4G West",
    "skuNumber": "SKU-123",
    "customFields": [{"key": "CustomField3", "value": "y"}],
    "publicIpRestriction": "R",
}


# -- every optional field at once ------------------------------------------------


@pytest.mark.parametrize(
    "request_, expected",
    [
        pytest.param(ALL_FIELDS_BY_FILTER, ALL_FIELDS_BY_FILTER_REST, id="by-filter"),
        pytest.param(ALL_FIELDS_BY_DEVICES, ALL_FIELDS_BY_DEVICES_REST, id="by-devices"),
    ],
)
def test_all_fields_request_translates_exactly_and_in_the_rest_documents_key_order(request_, expected):
    body = to_rest(request_)

    assert body == expected
    assert list(body) == list(expected)
    if "filter" in expected:
        assert list(body["filter"]) == list(expected["filter"])
    assert json.loads(json.dumps(body)) == expected


def test_minimal_request_has_only_the_required_keys():
    assert to_rest(by_devices()) == {
        "devices": [{"deviceIds": [{"kind": "iccid", "id": ICCID}]}],
        **REQUIRED_REST,
        "mdnZipCode": "94203",
    }


@pytest.mark.parametrize(
    "field, absent",
    [
        (field, absent)
        for field in ("CarrierIpPoolName", "DeviceGroupNames", "PublicIPRestriction", "SkuNumber")
        for absent in (None, "")
    ]
    + [("CustomFields", None), ("CustomFields", [])],
)
def test_absent_optional_value_produces_no_key(field, absent):
    assert to_rest(by_devices(**{field: absent})) == to_rest(by_devices())


@pytest.mark.parametrize("absent", [None, ""], ids=["none", "empty"])
def test_absent_filter_values_produce_no_filter_keys(absent):
    body = to_rest(
        by_filter(DeviceGroupNameFilter=absent, DeviceServicePlanFilter=absent, DeviceCustomFieldFilter=None)
    )

    assert body["filter"] == {"accountName": ACCOUNT}


def test_filter_is_absent_when_devices_are_named():
    body = to_rest(by_devices(AccountNameFilter="", DeviceCustomFieldFilter=[]))

    assert "filter" not in body


# -- the mapping table, row by row -------------------------------------------------


def test_device_list_maps_to_devices_with_lower_cased_kinds():
    request = by_devices(
        DeviceList=[device(identifier("Imei", IMEI), identifier("iccid", ICCID)), device(identifier("MEID", "A1000000444461"))]
    )

    assert to_rest(request)["devices"] == [
        {"deviceIds": [{"kind": "imei", "id": IMEI}, {"kind": "iccid", "id": ICCID}]},
        {"deviceIds": [{"kind": "meid", "id": "A1000000444461"}]},
    ]


@pytest.mark.parametrize("kind", ["ESN", "ICCID", "IMEI", "MDN", "MEID", "MSISDN", "msisdn", "eSn"])
def test_every_legacy_kind_is_accepted_in_any_case(kind):
    body = to_rest(by_devices(DeviceList=[device(identifier(kind, "123"))]))

    assert body["devices"] == [{"deviceIds": [{"kind": kind.lower(), "id": "123"}]}]


def test_identifier_goes_upstream_unchanged():
    body = to_rest(by_devices(DeviceList=[device(identifier("MDN", " 555-0100 "))]))

    assert body["devices"][0]["deviceIds"][0]["id"] == " 555-0100 "


def test_account_name_filter_maps_to_filter_account_name():
    body = to_rest(by_filter())

    assert body["filter"] == {"accountName": ACCOUNT}
    assert "devices" not in body


def test_device_group_name_filter_maps_to_filter_group_name_and_needs_no_account():
    body = to_rest(by_filter(AccountNameFilter=None, DeviceGroupNameFilter="West fleet"))

    assert body["filter"] == {"groupName": "West fleet"}


def test_device_service_plan_filter_maps_to_filter_service_plan():
    body = to_rest(by_filter(DeviceServicePlanFilter="OldPlan"))

    assert body["filter"] == {"accountName": ACCOUNT, "servicePlan": "OldPlan"}


def test_device_custom_field_filter_maps_to_filter_custom_fields():
    request = with_custom_fields(
        "DeviceCustomFieldFilter", CustomFieldFilterObject, ("CustomField1", "1"), ("CustomField4", "b")
    )

    assert to_rest(request)["filter"] == {
        "accountName": ACCOUNT,
        "customFields": [{"key": "CustomField1", "value": "1"}, {"key": "CustomField4", "value": "b"}],
    }


def test_service_state_and_plan_map_to_their_rest_names_unchanged():
    body = to_rest(by_devices(ServiceName=" fast1", StateName="new active", ServicePlan="87641 "))

    assert (body["serviceName"], body["stateName"], body["servicePlan"]) == (" fast1", "new active", "87641 ")


def test_carrier_ip_pool_name_maps_to_carrier_ip_pool_name():
    assert to_rest(by_devices(CarrierIpPoolName="pool-a"))["carrierIpPoolName"] == "pool-a"


def test_mdn_zip_code_maps_to_mdn_zip_code_and_wins_over_the_default():
    assert to_rest(by_devices(MdnZipCode="94203"), default_mdn_zip_code="10001")["mdnZipCode"] == "94203"


@pytest.mark.parametrize("absent", [None, ""], ids=["none", "empty"])
def test_absent_mdn_zip_code_takes_the_configured_default(absent):
    assert to_rest(by_devices(MdnZipCode=absent), default_mdn_zip_code="10001")["mdnZipCode"] == "10001"


def test_custom_fields_map_to_custom_fields():
    request = with_custom_fields("CustomFields", CustomField, ("CustomField2", "a"), ("CustomField3", "b"))

    assert to_rest(request)["customFields"] == [
        {"key": "CustomField2", "value": "a"},
        {"key": "CustomField3", "value": "b"},
    ]


def test_device_group_names_maps_to_group_name():
    assert to_rest(by_devices(DeviceGroupNames="4G West"))["groupName"] == "4G West"


@pytest.mark.parametrize(
    "legacy, rest",
    [("restricted", "R"), ("RESTRICTED", "R"), ("Restricted", "R"), ("unrestricted", "U"), ("UnRestricted", "U")],
)
def test_public_ip_restriction_maps_to_r_or_u_in_any_case(legacy, rest):
    assert to_rest(by_devices(PublicIPRestriction=legacy))["publicIpRestriction"] == rest


def test_sku_number_maps_to_sku_number():
    assert to_rest(by_devices(SkuNumber="SKU-123"))["skuNumber"] == "SKU-123"


# -- the contract table is fully mapped --------------------------------------------


def _rest_fields_in_contract_table(text):
    """The REST field paths the request rows of CONTRACT.md's mapping table name.

    Backticked names in a cell are fields; names in parentheses are fields of
    the array named before them (``customFields[]`` (``key``, ``value``) gives
    ``customFields[].key``). Upper-case names (``R`` / ``U``) are values, and the
    ``response`` row is not part of the request.
    """
    section = text.split("## Field mapping, legacy GoToState → REST goToState", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # after header and rule
    fields = set()
    for row in rows:
        legacy, rest = (cell.strip() for cell in row.strip().strip("|").split("|"))
        if legacy.startswith("response"):
            continue
        parent = None
        for match in re.finditer(r"\(([^)]*)\)|`([^`]+)`", rest):
            children, name = match.groups()
            if name is not None and name[0].islower():
                parent = name
                fields.add(name)
            elif children is not None:
                fields.update(f"{parent}.{child}" for child in re.findall(r"`([^`]+)`", children))
    return fields


def _json_paths(value, prefix=""):
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _json_paths(child, path)
    elif isinstance(value, list):
        for item in value:
            yield f"{prefix}[]"
            yield from _json_paths(item, f"{prefix}[]")


def test_every_rest_field_of_the_contract_mapping_table_is_produced():
    if not CONTRACT.is_file():
        pytest.skip(f"the shared contract is not checked out at {CONTRACT}")
    fields = _rest_fields_in_contract_table(CONTRACT.read_text(encoding="utf-8"))
    # Guards the parser itself: an empty result would make the check vacuous.
    assert {"devices[].deviceIds[].kind", "filter.customFields[].key", "serviceName"} <= fields

    # DeviceList and the filters exclude each other: all fields take two requests.
    produced = set(_json_paths(to_rest(ALL_FIELDS_BY_FILTER))) | set(_json_paths(to_rest(ALL_FIELDS_BY_DEVICES)))

    assert fields - produced == set()


# -- rules: device selection ---------------------------------------------------------


@pytest.mark.parametrize(
    "filter_name, value",
    [
        ("AccountNameFilter", ACCOUNT),
        ("DeviceGroupNameFilter", "West fleet"),
        ("DeviceServicePlanFilter", "OldPlan"),
        ("DeviceCustomFieldFilter", [CustomFieldFilterObject(Name="CustomField1", Value="1")]),
    ],
)
def test_device_list_cannot_be_combined_with_a_filter(filter_name, value):
    error = fault(by_devices(**{filter_name: value}))

    assert error.field == "DeviceList"
    assert f"cannot be combined with {filter_name}" in error.rule


@pytest.mark.parametrize("absent", [None, ""], ids=["none", "empty"])
def test_device_list_or_a_filter_is_required(absent):
    error = fault(by_devices(DeviceList=None, AccountNameFilter=absent, DeviceGroupNameFilter=absent))

    assert error.field == "DeviceList"
    assert "either DeviceList or at least one of" in error.rule
    assert all(name in error.rule for name in FILTERS)


@pytest.mark.parametrize(
    "filter_name, value",
    [
        ("DeviceServicePlanFilter", "OldPlan"),
        ("DeviceCustomFieldFilter", [CustomFieldFilterObject(Name="CustomField1", Value="1")]),
    ],
)
@pytest.mark.parametrize("account", [None, ""], ids=["none", "empty"])
def test_service_plan_and_custom_field_filters_need_account_name_filter(filter_name, value, account):
    error = fault(by_filter(AccountNameFilter=account, DeviceGroupNameFilter="West fleet", **{filter_name: value}))

    assert error.field == filter_name
    assert "needs AccountNameFilter" in error.rule


# -- rules: required fields ----------------------------------------------------------


@pytest.mark.parametrize("field", ["ServiceName", "StateName", "ServicePlan"])
@pytest.mark.parametrize("value", [None, "", " \t\n"], ids=["none", "empty", "whitespace"])
def test_service_state_and_plan_are_required(field, value):
    error = fault(by_devices(**{field: value}))

    assert error.field == field
    assert "is required" in error.rule


@pytest.mark.parametrize("default", [None, ""], ids=["no-default", "empty-default"])
@pytest.mark.parametrize("sent", [None, ""], ids=["none", "empty"])
def test_mdn_zip_code_is_required_without_a_configured_default(sent, default):
    error = fault(by_devices(MdnZipCode=sent), default_mdn_zip_code=default)

    assert error.field == "MdnZipCode"
    assert "required by ThingSpace" in error.rule
    assert "[defaults] mdn_zip_code" in error.rule


# -- rules: the device list ----------------------------------------------------------


def test_device_list_must_not_be_empty():
    error = fault(by_devices(DeviceList=[]))

    assert error.field == "DeviceList"
    assert "is empty" in error.rule


def test_ten_thousand_devices_are_accepted_quickly():
    request = by_devices(DeviceList=[device(identifier("MDN", str(n))) for n in range(10_000)])

    started = time.perf_counter()
    body = to_rest(request)
    elapsed = time.perf_counter() - started

    assert len(body["devices"]) == 10_000
    assert body["devices"][-1] == {"deviceIds": [{"kind": "mdn", "id": "9999"}]}
    # Typically ~10 ms; the bound only catches quadratic or regex-compiling loops.
    assert elapsed < 1.0


def test_more_than_ten_thousand_devices_is_a_fault():
    error = fault(by_devices(DeviceList=[device() for _ in range(10_001)]))

    assert error.field == "DeviceList"
    assert "10,001 devices" in error.rule
    assert "at most 10,000" in error.rule


@pytest.mark.parametrize("identifiers", [None, []], ids=["none", "empty"])
def test_each_device_needs_an_identifier(identifiers):
    request = by_devices(DeviceList=[device(), DeviceIdentifierCollection(DeviceIdentifiers=identifiers)])

    error = fault(request)

    assert error.field == "DeviceList/DeviceIdentifierCollection[2]/DeviceIdentifiers"
    assert "at least one DeviceIdentifier" in error.rule


def test_an_empty_device_element_needs_an_identifier():
    error = fault(by_devices(DeviceList=[None]))

    assert error.field == "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers"
    assert "at least one DeviceIdentifier" in error.rule


@pytest.mark.parametrize("kind", [None, ""], ids=["none", "empty"])
def test_each_identifier_needs_a_kind(kind):
    request = by_devices(DeviceList=[device(), device(identifier(), identifier(kind, IMEI))])

    error = fault(request)

    assert error.field == "DeviceList/DeviceIdentifierCollection[2]/DeviceIdentifiers/DeviceIdentifier[2]/Kind"
    assert "is required" in error.rule


@pytest.mark.parametrize("value", [None, ""], ids=["none", "empty"])
def test_each_identifier_needs_an_identifier(value):
    error = fault(by_devices(DeviceList=[device(identifier("IMEI", value))]))

    assert error.field == "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers/DeviceIdentifier[1]/Identifier"
    assert "is required" in error.rule


def test_an_empty_identifier_element_needs_a_kind():
    error = fault(by_devices(DeviceList=[DeviceIdentifierCollection(DeviceIdentifiers=[None])]))

    assert error.field == "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers/DeviceIdentifier[1]/Kind"
    assert "is required" in error.rule


# MIN appears only among the legacy callback's kinds; IMSI and EID are REST-only;
# the dotless "ı" upper-cases to "I" and must not slip through as IMEI.
@pytest.mark.parametrize("kind", ["MIN", "IMSI", "EID", "Foo", " ICCID", "ICCID ", "ımeı"])
def test_kind_must_be_a_legacy_kind(kind):
    error = fault(by_devices(DeviceList=[device(identifier(kind, "123"))]))

    assert error.field == "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers/DeviceIdentifier[1]/Kind"
    assert "must be one of ESN, ICCID, IMEI, MDN, MEID, MSISDN" in error.rule
    assert repr(kind) in error.rule


# -- rules: custom fields (CustomFields and DeviceCustomFieldFilter alike) ------------


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
def test_all_five_custom_field_names_are_accepted(list_name, item_name, item_class):
    names = [f"CustomField{n}" for n in range(1, 6)]

    body = to_rest(with_custom_fields(list_name, item_class, *((name, "v") for name in names)))

    produced = body["customFields"] if list_name == "CustomFields" else body["filter"]["customFields"]
    assert [pair["key"] for pair in produced] == names


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
@pytest.mark.parametrize("name", ["Foo", "CustomField0", "CustomField6", "customfield1", "CustomField1 "])
def test_custom_field_name_must_be_custom_field_1_to_5(list_name, item_name, item_class, name):
    error = fault(with_custom_fields(list_name, item_class, ("CustomField1", "ok"), (name, "v")))

    assert error.field == f"{list_name}/{item_name}[2]/Name"
    assert f"must be one of CustomField1..CustomField5, got {name!r}" in error.rule


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
@pytest.mark.parametrize("name", [None, ""], ids=["none", "empty"])
def test_custom_field_name_is_required(list_name, item_name, item_class, name):
    error = fault(with_custom_fields(list_name, item_class, (name, "v")))

    assert error.field == f"{list_name}/{item_name}[1]/Name"
    assert "is required" in error.rule


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
def test_an_empty_custom_field_element_needs_a_name(list_name, item_name, item_class):
    error = fault(with_custom_fields(list_name, item_class, ("CustomField1", "ok"), None))

    assert error.field == f"{list_name}/{item_name}[2]/Name"
    assert "is required" in error.rule


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
@pytest.mark.parametrize("value", [None, ""], ids=["none", "empty"])
def test_custom_field_value_is_required(list_name, item_name, item_class, value):
    error = fault(with_custom_fields(list_name, item_class, ("CustomField3", value)))

    assert error.field == f"{list_name}/{item_name}[1]/Value"
    assert "is required" in error.rule


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
@pytest.mark.parametrize("character", list("/ @.,:-_()[]#"))
def test_each_allowed_special_character_is_accepted_in_custom_field_values(
    list_name, item_name, item_class, character
):
    value = f"a{character}1"

    body = to_rest(with_custom_fields(list_name, item_class, ("CustomField1", value)))

    produced = body["customFields"] if list_name == "CustomFields" else body["filter"]["customFields"]
    assert produced == [{"key": "CustomField1", "value": value}]


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
def test_ascii_letters_and_digits_are_accepted_in_custom_field_values(list_name, item_name, item_class):
    value = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    assert to_rest(with_custom_fields(list_name, item_class, ("CustomField1", value)))


@pytest.mark.parametrize("list_name, item_name, item_class", CUSTOM_FIELD_LISTS)
@pytest.mark.parametrize("character", ["!", "'", "<", "&", "\t", "é", "٣"])
def test_a_disallowed_character_in_a_custom_field_value_is_a_fault(list_name, item_name, item_class, character):
    error = fault(with_custom_fields(list_name, item_class, ("CustomField2", f"ab{character}c")))

    assert error.field == f"{list_name}/{item_name}[1]/Value"
    assert f"contains {character!r} at position 3" in error.rule
    assert "allowed are ASCII letters and digits" in error.rule


# -- rules: single fields -------------------------------------------------------------


@pytest.mark.parametrize("value", ["open", "R", " restricted", "unrestricted."])
def test_public_ip_restriction_must_be_restricted_or_unrestricted(value):
    error = fault(by_devices(PublicIPRestriction=value))

    assert error.field == "PublicIPRestriction"
    assert f"must be 'restricted' or 'unrestricted' (any case), got {value!r}" in error.rule


def test_sku_number_of_twenty_characters_is_accepted():
    assert to_rest(by_devices(SkuNumber="S" * 20))["skuNumber"] == "S" * 20


def test_sku_number_longer_than_twenty_characters_is_a_fault():
    error = fault(by_devices(SkuNumber="S" * 21))

    assert error.field == "SkuNumber"
    assert "at most 20 characters, got 21" in error.rule


# -- fault texts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_request",
    [
        pytest.param(lambda huge: by_devices(DeviceList=[device(identifier(huge, "1"))]), id="Kind"),
        pytest.param(lambda huge: with_custom_fields("CustomFields", CustomField, (huge, "v")), id="CustomField-Name"),
        pytest.param(lambda huge: by_devices(PublicIPRestriction=huge), id="PublicIPRestriction"),
    ],
)
def test_echoed_values_are_cut_short(make_request):
    huge = "X" * 100_000

    error = fault(make_request(huge))

    assert "X" * 41 not in error.rule
    assert repr("X" * 40) in error.rule
    assert "100,000 characters" in error.rule


# -- the order of checks: the first problem found is the one reported -----------------


@pytest.mark.parametrize(
    "request_, field",
    [
        pytest.param(by_devices(AccountNameFilter=ACCOUNT, ServiceName=None), "DeviceList", id="selection-before-required"),
        pytest.param(
            by_filter(AccountNameFilter=None, DeviceServicePlanFilter="p", StateName=""),
            "DeviceServicePlanFilter",
            id="filter-dependency-before-required",
        ),
        pytest.param(
            by_devices(DeviceList=[device(identifier("Foo", "1"))], ServicePlan=" "),
            "ServicePlan",
            id="required-before-devices",
        ),
        pytest.param(
            by_devices(DeviceList=[device(identifier("Foo", "1")) for _ in range(10_001)]),
            "DeviceList",
            id="device-count-before-each-device",
        ),
        pytest.param(
            by_devices(DeviceList=[device(identifier("Foo", "1")), device(identifier("ICCID", None))]),
            "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers/DeviceIdentifier[1]/Kind",
            id="first-device-first",
        ),
        pytest.param(
            by_devices(DeviceList=[device(identifier(None, None))]),
            "DeviceList/DeviceIdentifierCollection[1]/DeviceIdentifiers/DeviceIdentifier[1]/Kind",
            id="kind-before-identifier",
        ),
        pytest.param(
            by_filter(
                DeviceCustomFieldFilter=[CustomFieldFilterObject(Name="Foo", Value="1")],
                MdnZipCode=None,
                CustomFields=[CustomField(Name="Bar", Value="1")],
            ),
            "DeviceCustomFieldFilter/CustomFieldFilterObject[1]/Name",
            id="filter-custom-fields-before-zip-code",
        ),
        pytest.param(
            by_devices(MdnZipCode=None, CustomFields=[CustomField(Name="Bar", Value="1")]),
            "MdnZipCode",
            id="zip-code-before-custom-fields",
        ),
        pytest.param(
            by_devices(CustomFields=[CustomField(Name="CustomField1", Value="!")], PublicIPRestriction="open"),
            "CustomFields/CustomField[1]/Value",
            id="custom-fields-before-public-ip-restriction",
        ),
        pytest.param(
            by_devices(PublicIPRestriction="open", SkuNumber="S" * 21),
            "PublicIPRestriction",
            id="public-ip-restriction-before-sku-number",
        ),
    ],
)
def test_checks_run_in_the_documented_order(request_, field):
    assert fault(request_).field == field


# -- purity ---------------------------------------------------------------------------


@pytest.mark.process
def test_module_imports_no_soap_http_or_wsgi_library():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, gateway.translate.gotostate; "
            "print(' '.join(m for m in ('spyne', 'requests', 'werkzeug', 'lxml') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert loaded.stdout.strip() == ""
