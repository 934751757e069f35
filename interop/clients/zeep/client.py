"""zeep: the WSDL builds the client; the token header is declared there too.

Usage: python client.py SESSION_WSDL_URL STATE_WSDL_URL
"""

import sys

import zeep

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
    request_id = state.service.GoToState(
        Input={
            "DeviceList": {"DeviceIdentifierCollection": devices},
            "ServiceName": "fast1",
            "StateName": "new active",
            "ServicePlan": "4G East",
            "MdnZipCode": "94203",
        },
        _soapheaders={"token": token},  # by name: the header part the WSDL declares
    )
    print(f"REQUEST {request_id}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
