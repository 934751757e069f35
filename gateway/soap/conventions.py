"""WCF's naming conventions, which the legacy WSDL and clients follow.

A .NET client generated from the original service dispatches on these names
(SOAPAction) and names its proxy classes after them (portType, binding).
"""

from gateway import ns


def soap_action(service, operation):
    return f"{ns.V2}/I{service}/{operation}"


def port_type(service):
    return f"I{service}"


def binding(service):
    return f"BasicHttpBinding_I{service}"


def message(service, operation, direction):
    """``direction`` is ``Input`` or ``Output``."""
    return f"I{service}_{operation}_{direction}Message"


def header_message(service):
    return f"I{service}_token"
