"""The floor: what any Python gateway must at least do with a GoToState, in lxml and plain Python.

Used by the bulk benchmark (in-process) and by the bare WSGI app of the
small-request benchmark, so that both compare the gateway with the same code.
"""

import json
import time

from lxml import etree

# The Input children the benchmark requests carry, and their REST names.
REST_NAMES = {"ServiceName": "serviceName", "StateName": "stateName", "ServicePlan": "servicePlan", "MdnZipCode": "mdnZipCode"}
STAGES = ("parse", "collect", "json")


def to_rest_json(body, stages=None):
    """The REST goToState JSON bytes of a GoToState envelope (devices and the scalar fields):
    ``etree.fromstring``, a hand-written loop, ``json.dumps``. No checks beyond a token.

    Adds each stage's seconds to ``stages`` (a dict) if given.
    """
    clock = time.perf_counter
    t0 = clock()
    envelope = etree.fromstring(body)
    t1 = clock()
    header, soap_body = envelope
    if not header[0].text:
        raise ValueError("no token header")
    devices = None
    values = {}
    for child in soap_body[0][0]:  # Body/GoToState/Input
        name = child.tag.rpartition("}")[2]
        if name == "DeviceList":
            devices = [
                {"deviceIds": [{"kind": identifier[0].text.lower(), "id": identifier[1].text} for identifier in collection[0]]}
                for collection in child
            ]
        else:
            values[name] = child.text
    rest = {"devices": devices}
    for legacy, rest_name in REST_NAMES.items():
        if values.get(legacy):
            rest[rest_name] = values[legacy]
    t2 = clock()
    out = json.dumps(rest).encode()
    t3 = clock()
    if stages is not None:
        for name, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            stages[name] = stages.get(name, 0.0) + seconds
    return out
