"""Real SOAP toolkits (zeep, suds) import the served WSDL and call through to the simulator."""

import logging

import pytest
import suds.client
import zeep

from gateway import ns

GO_TO_STATE = "/api/m2m/v1/devices/actions/goToState"
LOGIN = "/api/m2m/v1/session/login"

TWO_DEVICES = [
    [("IMEI", "990000862471854"), ("ICCID", "89148000000800784259")],
    [("IMEI", "990000862471855"), ("ICCID", "89148000000800784260")],
]

EXPECTED_TWO_DEVICES = {
    "devices": [
        {"deviceIds": [{"kind": "imei", "id": "990000862471854"}, {"kind": "iccid", "id": "89148000000800784259"}]},
        {"deviceIds": [{"kind": "imei", "id": "990000862471855"}, {"kind": "iccid", "id": "89148000000800784260"}]},
    ],
    "serviceName": "fast1",
    "stateName": "new active",
    "servicePlan": "4G East",
    "mdnZipCode": "94203",
}

# Every optional field that can go with a filter (DeviceList excludes the filters).
EXPECTED_EVERY_OPTIONAL_FIELD = {
    "filter": {
        "accountName": "0000123456-00001",
        "groupName": "West",
        "servicePlan": "4G East",
        "customFields": [{"key": "CustomField1", "value": "Fleet 7 (north) [A]"}],
    },
    "serviceName": "fast1",
    "stateName": "new active",
    "servicePlan": "4G West",
    "carrierIpPoolName": "pool-1",
    "mdnZipCode": "10001",
    "groupName": "Activated",
    "skuNumber": "SKU-12345678901234",
    "customFields": [
        {"key": "CustomField2", "value": "rack/3 @site, row:4 #9"},
        {"key": "CustomField5", "value": "x_y-z."},
    ],
    "publicIpRestriction": "R",
}


@pytest.fixture(autouse=True)
def quiet_toolkits():
    # zeep and suds log every schema they read at DEBUG; keep failures readable.
    logging.getLogger("suds").setLevel(logging.ERROR)
    logging.getLogger("zeep").setLevel(logging.ERROR)


def _exchange(upstream, path):
    """The one call the simulator saw on ``path``: what it received and answered."""
    (record,) = upstream.requests(path)
    return record


# -- zeep ------------------------------------------------------------------


def zeep_client(served_gateway, service):
    return zeep.Client(served_gateway.service_url(service) + "?wsdl")


# zeep unwraps an Output of one child: LogIn returns the SessionToken itself,
# GoToState the RequestId.


def zeep_log_in(served_gateway):
    return zeep_client(served_gateway, "SessionService").service.LogIn(Input={"Username": "demo", "Password": "demo-password"})


def test_zeep_logs_in_and_the_token_is_thingspaces_session_token(served_gateway, upstream):
    token = zeep_log_in(served_gateway)
    record = _exchange(upstream, LOGIN)
    assert record["json"] == {"username": "demo", "password": "demo-password"}
    assert token == record["response"]["sessionToken"]


def test_zeep_go_to_state_with_two_devices(served_gateway, upstream):
    token = zeep_log_in(served_gateway)
    devices = [
        {"DeviceIdentifiers": {"DeviceIdentifier": [{"Kind": kind, "Identifier": value} for kind, value in device]}}
        for device in TWO_DEVICES
    ]
    result = zeep_client(served_gateway, "StateService").service.GoToState(
        Input={
            "DeviceList": {"DeviceIdentifierCollection": devices},
            "ServiceName": "fast1",
            "StateName": "new active",
            "ServicePlan": "4G East",
            "MdnZipCode": "94203",
        },
        _soapheaders={"token": token},
    )
    record = _exchange(upstream, GO_TO_STATE)
    assert record["json"] == EXPECTED_TWO_DEVICES
    assert record["headers"]["VZ-M2M-Token"] == token
    assert record["headers"]["Authorization"].startswith("Bearer ")
    assert result == record["response"]["requestId"]


def test_zeep_go_to_state_with_every_optional_field(served_gateway, upstream):
    token = zeep_log_in(served_gateway)
    result = zeep_client(served_gateway, "StateService").service.GoToState(
        Input={
            "AccountNameFilter": "0000123456-00001",
            "DeviceGroupNameFilter": "West",
            "DeviceServicePlanFilter": "4G East",
            "DeviceCustomFieldFilter": {
                "CustomFieldFilterObject": [{"Name": "CustomField1", "Value": "Fleet 7 (north) [A]"}]
            },
            "ServiceName": "fast1",
            "StateName": "new active",
            "ServicePlan": "4G West",
            "CarrierIpPoolName": "pool-1",
            "MdnZipCode": "10001",
            "CustomFields": {
                "CustomField": [
                    {"Name": "CustomField2", "Value": "rack/3 @site, row:4 #9"},
                    {"Name": "CustomField5", "Value": "x_y-z."},
                ]
            },
            "DeviceGroupNames": "Activated",
            "PublicIPRestriction": "restricted",
            "SkuNumber": "SKU-12345678901234",
        },
        _soapheaders={"token": token},
    )
    record = _exchange(upstream, GO_TO_STATE)
    assert record["json"] == EXPECTED_EVERY_OPTIONAL_FIELD
    assert result == record["response"]["requestId"]


def test_zeep_sees_thingspace_errors_as_faults_with_their_code(served_gateway, upstream):
    with pytest.raises(zeep.exceptions.Fault) as raised:
        zeep_client(served_gateway, "SessionService").service.LogIn(Input={"Username": "demo", "Password": "wrong"})
    assert raised.value.code == "UnifiedWebService.REQUEST_FAILED.InvalidCredentials"
    assert raised.value.message == "Invalid username or password"
    assert len(upstream.requests(LOGIN)) == 1, "a refused login must never be retried"


def test_zeep_hears_the_session_has_expired_for_a_dead_token(served_gateway, upstream):
    with pytest.raises(zeep.exceptions.Fault) as raised:
        zeep_client(served_gateway, "StateService").service.GoToState(
            Input={"AccountNameFilter": "0000123456-00001", "ServiceName": "a", "StateName": "b",
                   "ServicePlan": "c", "MdnZipCode": "94203"},
            _soapheaders={"token": "not-a-session"},
        )
    assert raised.value.message == "The session has expired."


def test_zeep_log_out_ends_the_session(served_gateway, upstream):
    token = zeep_log_in(served_gateway)
    result = zeep_client(served_gateway, "SessionService").service.LogOut(Input={"SessionToken": token})
    assert result == token
    (record,) = upstream.requests("/api/m2m/v1/session/logout")
    assert record["headers"]["VZ-M2M-Token"] == token


# -- suds ------------------------------------------------------------------


def suds_client(served_gateway, service):
    return suds.client.Client(served_gateway.service_url(service) + "?wsdl", cache=None)


def test_suds_logs_in_and_calls_go_to_state_with_two_devices(served_gateway, upstream):
    session = suds_client(served_gateway, "SessionService")
    login = session.factory.create(f"{{{ns.SESSION}}}LogInRequest")
    login.Username, login.Password = "demo", "demo-password"
    token = session.service.LogIn(login).SessionToken

    state = suds_client(served_gateway, "StateService")
    state.set_options(soapheaders={"token": token})
    request = state.factory.create(f"{{{ns.STATE}}}GoToStateRequest")
    device_list = state.factory.create(f"{{{ns.COMMON}}}ArrayOfDeviceIdentifierCollection")
    for device in TWO_DEVICES:
        collection = state.factory.create(f"{{{ns.COMMON}}}DeviceIdentifierCollection")
        identifiers = state.factory.create(f"{{{ns.COMMON}}}ArrayOfDeviceIdentifier")
        for kind, value in device:
            identifier = state.factory.create(f"{{{ns.COMMON}}}DeviceIdentifier")
            identifier.Kind, identifier.Identifier = kind, value
            identifiers.DeviceIdentifier.append(identifier)
        collection.DeviceIdentifiers = identifiers
        device_list.DeviceIdentifierCollection.append(collection)
    request.DeviceList = device_list
    request.ServiceName, request.StateName, request.ServicePlan = "fast1", "new active", "4G East"
    request.MdnZipCode = "94203"
    result = state.service.GoToState(request)

    assert token == _exchange(upstream, LOGIN)["response"]["sessionToken"]
    record = _exchange(upstream, GO_TO_STATE)
    assert record["json"] == EXPECTED_TWO_DEVICES
    assert record["headers"]["VZ-M2M-Token"] == token
    assert result.RequestId == record["response"]["requestId"]


def test_suds_gets_a_client_fault_for_a_broken_rule_and_nothing_goes_upstream(served_gateway, upstream):
    state = suds_client(served_gateway, "StateService")
    state.set_options(soapheaders={"token": "any"})
    request = state.factory.create(f"{{{ns.STATE}}}GoToStateRequest")
    request.AccountNameFilter = "0000123456-00001"
    request.ServiceName, request.StateName, request.ServicePlan = "fast1", "new active", "4G East"
    request.MdnZipCode = "94203"
    request.SkuNumber = "S" * 21
    with pytest.raises(suds.WebFault) as raised:
        state.service.GoToState(request)
    fault = raised.value.fault
    assert fault.faultcode == "s:Client"
    assert fault.faultstring.startswith("SkuNumber:")
    assert "20" in fault.faultstring
    assert upstream.requests() == []
