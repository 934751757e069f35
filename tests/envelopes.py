"""Legacy GoToState envelopes as a hand-written client sends them, for tests."""

from xml.sax.saxutils import escape

from gateway import ns

# The Input children in the legacy document's order.
ORDER = [
    "DeviceList", "AccountNameFilter", "DeviceGroupNameFilter", "DeviceServicePlanFilter",
    "DeviceCustomFieldFilter", "ServiceName", "StateName", "ServicePlan", "CarrierIpPoolName",
    "MdnZipCode", "CustomFields", "DeviceGroupNames", "PublicIPRestriction", "SkuNumber",
]
VALID = {"ServiceName": "fast1", "StateName": "new active", "ServicePlan": "4G East", "MdnZipCode": "94203"}


def devices_xml(devices):
    """``devices``: a list of devices, each a list of (Kind, Identifier)."""
    return "".join(
        "<c:DeviceIdentifierCollection><c:DeviceIdentifiers>"
        + "".join(
            f"<c:DeviceIdentifier><c:Kind>{escape(kind)}</c:Kind><c:Identifier>{escape(value)}</c:Identifier></c:DeviceIdentifier>"
            for kind, value in device
        )
        + "</c:DeviceIdentifiers></c:DeviceIdentifierCollection>"
        for device in devices
    )


def pairs_xml(item, pairs):
    return "".join(f"<c:{item}><c:Name>{escape(n)}</c:Name><c:Value>{escape(v)}</c:Value></c:{item}>" for n, v in pairs)


def input_xml(fields):
    """``fields``: Input child name → text, or raw XML for DeviceList and the Name/Value lists
    (given as {"xml": ...})."""
    parts = []
    for name in ORDER:
        if name not in fields:
            continue
        value = fields[name]
        inner = value["xml"] if isinstance(value, dict) else escape(value)
        parts.append(f"<n:{name}>{inner}</n:{name}>")
    return "".join(parts)


def go_to_state(fields, token="t", header=None):
    token_xml = "" if token is None else f"<v2:token>{escape(token)}</v2:token>"
    return envelope(
        header if header is not None else token_xml,
        f"<v2:GoToState><v2:Input>{input_xml(fields)}</v2:Input></v2:GoToState>",
    ).encode()


def envelope(header, body):
    return (
        f'<s:Envelope xmlns:s="{ns.SOAP_ENV}" xmlns:v2="{ns.V2}" xmlns:n="{ns.STATE}" xmlns:c="{ns.COMMON}">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
