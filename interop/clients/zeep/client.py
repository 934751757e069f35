"""zeep: the WSDL builds the client; the token header is declared there too.

Usage: python client.py SESSION_WSDL_URL STATE_WSDL_URL
"""

import sys

import zeep
import zeep.exceptions

DEVICES = [("990000862471854", "89148000000800784259"), ("990000862471855", "89148000000800784260")]


def main(session_wsdl, state_wsdl):
    session = zeep.Client(session_wsdl)
    state = zeep.Client(state_wsdl)
    print("IMPORTED", flush=True)

    # zeep unwraps an Output of one child: LogIn returns the SessionToken itself.
    token = session.service.LogIn(Input={"Username": "demo", "Password": "demo-password"})
    print(f"SESSION {token}", flush=True)

    devices = [
        {"DeviceIdentifiers": {"DeviceIdentifier": [
            {"Kind": "IMEI", "Identifier": imei},
            {"Kind": "ICCID", "Identifier": iccid},
        ]}}
        for imei, iccid in DEVICES
    ]
    request = {
        "DeviceList": {"DeviceIdentifierCollection": devices},
        "ServiceName": "fast1",
        "StateName": "new active",
        "ServicePlan": "4G East",
        "MdnZipCode": "94203",
    }

    def go_to_state(**extra):
        # The header by name: the header part the WSDL declares.
        return state.service.GoToState(Input={**request, **extra}, _soapheaders={"token": token})

    # The session has expired (the simulator says so), then a legacy rule broken.
    for key, extra in (("EXPIRED_FAULT", {}), ("CLIENT_FAULT", {"SkuNumber": "S" * 21})):
        try:
            go_to_state(**extra)
            print(f"{key} none: the call succeeded", flush=True)
        except zeep.exceptions.Fault as fault:
            print(f"{key} {fault.code} {fault.message}", flush=True)

    print(f"REQUEST {go_to_state()}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
