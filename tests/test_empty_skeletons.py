"""Optional collections sent as empty skeletons (Ruby soap4r's generic driver) read as absent."""

import pytest

from tests import envelopes
from tests.inprocess import InProcess, outcome

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
DEVICES = {"DeviceList": {"xml": envelopes.devices_xml([[("IMEI", "990000862471854")]])}}
NIL = 'i:nil="true" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'


def pair_skeleton(item, name=f"<c:Name {NIL}/>", value=f"<c:Value {NIL}/>"):
    """One ``item`` with a nil (or given) Name and Value, byte for byte as soap4r sends a nil list."""
    return {"xml": f"<c:{item}>{name}{value}</c:{item}>"}


# soap4r's skeleton of a DeviceList the caller left out: nils all the way down.
DEVICE_LIST_SKELETON = {
    "xml": f"<c:DeviceIdentifierCollection><c:DeviceIdentifiers><c:DeviceIdentifier><c:Kind {NIL}/>"
    f"<c:Identifier {NIL}/></c:DeviceIdentifier></c:DeviceIdentifiers></c:DeviceIdentifierCollection>"
}


@pytest.fixture
def gateway(gateway_app, upstream):
    return InProcess(gateway_app)


def go_to_state(gateway, fields):
    return outcome(*gateway.post("StateService", envelopes.go_to_state({**envelopes.VALID, **fields}, gateway.log_in())))


def test_skeletons_of_both_name_value_lists_are_read_as_absent(gateway, upstream):
    fields = {
        **DEVICES,
        "DeviceCustomFieldFilter": pair_skeleton("CustomFieldFilterObject"),
        "CustomFields": pair_skeleton("CustomField"),
    }
    status, code, text = go_to_state(gateway, fields)
    assert (status, code) == (200, None), text
    (record,) = upstream.requests(GO_TO_STATE)
    assert record["json"] == {
        "devices": [{"deviceIds": [{"kind": "imei", "id": "990000862471854"}]}],
        "serviceName": "fast1", "stateName": "new active", "servicePlan": "4G East", "mdnZipCode": "94203",
    }


def test_a_nested_skeleton_is_absent_too(gateway, upstream):
    # A filter call whose DeviceList soap4r filled with nils at every level.
    fields = {"DeviceList": DEVICE_LIST_SKELETON, "AccountNameFilter": "0000123456-00001"}
    status, code, text = go_to_state(gateway, fields)
    assert (status, code) == (200, None), text
    (record,) = upstream.requests(GO_TO_STATE)
    assert "devices" not in record["json"] and record["json"]["filter"] == {"accountName": "0000123456-00001"}


@pytest.mark.parametrize(
    "item, field",
    [
        (pair_skeleton("CustomField", name="<c:Name>CustomField1</c:Name>"), "CustomFields/CustomField[1]/Value"),
        (pair_skeleton("CustomField", value="<c:Value>blue</c:Value>"), "CustomFields/CustomField[1]/Name"),
        # An empty string is something: only nil or absent is nothing.
        (pair_skeleton("CustomField", name="<c:Name></c:Name>"), "CustomFields/CustomField[1]/Name"),
    ],
)
def test_a_half_filled_item_is_still_a_client_fault_naming_the_field(gateway, upstream, item, field):
    status, code, text = go_to_state(gateway, {**DEVICES, "CustomFields": item})
    assert (status, code) == (500, "s:Client")
    assert text.startswith(f"{field}: is required")
    assert upstream.requests(GO_TO_STATE) == []


def test_a_skeleton_beside_a_real_item_is_judged_with_it(gateway, upstream):
    items = {"xml": envelopes.pairs_xml("CustomField", [("CustomField1", "blue")]) + pair_skeleton("CustomField")["xml"]}
    status, code, text = go_to_state(gateway, {**DEVICES, "CustomFields": items})
    assert (status, code) == (500, "s:Client")
    assert text.startswith("CustomFields/CustomField[2]/Name: is required")
    assert upstream.requests(GO_TO_STATE) == []
