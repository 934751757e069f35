"""suds (suds-community): types from the WSDL's factory, the header by name.

Usage: python client.py SESSION_WSDL_URL STATE_WSDL_URL
"""

import sys

import suds
import suds.client

SESSION = "http://schemas.datacontract.org/2004/07/NPhase.UnifiedWebService.APIs.v2.Contract.SessionService"
STATE = "http://schemas.datacontract.org/2004/07/NPhase.UnifiedWebService.APIs.v2.Contract.StateService"
COMMON = "http://schemas.datacontract.org/2004/07/NPhase.UnifiedWebService.APIs.v2.Contract.Common"
DEVICES = [("990000862471854", "89148000000800784259"), ("990000862471855", "89148000000800784260")]


def main(session_wsdl, state_wsdl):
    session = suds.client.Client(session_wsdl, cache=None)
    state = suds.client.Client(state_wsdl, cache=None)
    print("IMPORTED", flush=True)

    login = session.factory.create(f"{{{SESSION}}}LogInRequest")
    login.Username, login.Password = "demo", "demo-password"
    token = session.service.LogIn(login).SessionToken
    print(f"SESSION {token}", flush=True)

    # suds fills declared soap:header parts from a dict keyed by part name.
    state.set_options(soapheaders={"token": token})
    request = state.factory.create(f"{{{STATE}}}GoToStateRequest")
    device_list = state.factory.create(f"{{{COMMON}}}ArrayOfDeviceIdentifierCollection")
    for imei, iccid in DEVICES:
        collection = state.factory.create(f"{{{COMMON}}}DeviceIdentifierCollection")
        identifiers = state.factory.create(f"{{{COMMON}}}ArrayOfDeviceIdentifier")
        for kind, value in (("IMEI", imei), ("ICCID", iccid)):
            identifier = state.factory.create(f"{{{COMMON}}}DeviceIdentifier")
            identifier.Kind, identifier.Identifier = kind, value
            identifiers.DeviceIdentifier.append(identifier)
        collection.DeviceIdentifiers = identifiers
        device_list.DeviceIdentifierCollection.append(collection)
    request.DeviceList = device_list
    request.ServiceName, request.StateName, request.ServicePlan = "fast1", "new active", "4G East"
    request.MdnZipCode = "94203"

    # The session has expired (the simulator says so), then a legacy rule broken.
    for key, sku_number in (("EXPIRED_FAULT", None), ("CLIENT_FAULT", "S" * 21)):
        request.SkuNumber = sku_number
        try:
            state.service.GoToState(request)
            print(f"{key} none: the call succeeded", flush=True)
        except suds.WebFault as error:
            print(f"{key} {error.fault.faultcode} {error.fault.faultstring}", flush=True)

    request.SkuNumber = None
    result = state.service.GoToState(request)
    print(f"REQUEST {result.RequestId}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
