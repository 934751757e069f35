"""Spyne's WSDL 1.1 document, made importable by every toolkit we know of.

Spyne's own WSDL trips real toolkits (measured with twelve of them):

- the header part names a ``token`` element the schema never declares
  (zeep, suds, strong-soap, gSOAP, wsimport, Axis 1 and Mono fail on it);
- unused SOAP 1.2 namespace declarations make gSOAP generate a SOAP 1.2 client;
- body parts named after the element instead of ``parameters`` leave Mono's
  svcutil with an empty proxy;
- soapAction is the bare operation name instead of WCF's action.

``WcfWsdl11`` fixes each on Spyne's ``wsdl_document_built`` event and also names
portType, binding and messages as WCF did, so that a regenerated .NET or Java
client keeps the class names the old one had.
"""

from copy import deepcopy
from xml.sax.saxutils import escape

from lxml import etree
from spyne.interface import InterfaceDocuments
from spyne.interface.wsdl import Wsdl11

from gateway import ns
from gateway.soap import conventions

# The documents are built once with this address; each request gets its own
# URL in its place (the client's, as seen through a reverse proxy).
ADDRESS_PLACEHOLDER = "http://gateway.invalid/address"
_PLACEHOLDER = ADDRESS_PLACEHOLDER.encode()

# Attributes whose values are QNames: their prefixes must stay declared.
_QNAME_ATTRIBUTES = ("type", "element", "message", "binding", "base", "ref")


def _q(namespace, name):
    return f"{{{namespace}}}{name}"


class WcfWsdl11(Wsdl11):
    def __init__(self, interface=None, **kwargs):
        super().__init__(interface, **kwargs)
        self.event_manager.add_listener("wsdl_document_built", _apply_wcf_conventions)
        self._documents = {}

    def build_interface_document(self, url):
        super().build_interface_document(url)
        self._documents = _documents(self.root_elt)

    def get_interface_document(self):
        return self._documents["singlewsdl"]

    def document(self, name, url):
        """Document ``name`` with ``url`` as the service's address, or None.

        ``wsdl`` and ``singlewsdl``: one flat WSDL with the schemas inlined, as
        WCF services with a flat-WSDL behaviour serve ``?wsdl``: WCF's modular
        form (schemas imported from ``?xsd=``) is one that Mono's svcutil cannot
        import (it compiles each schema twice), and Java's xjc and Azure API
        Management take only a flat one. ``xsdN``: each schema on its own.
        """
        template = self._documents.get(name)
        if template is None:
            return None
        return template.replace(_PLACEHOLDER, escape(url, {'"': "&quot;"}).encode())


class WcfInterfaceDocuments(InterfaceDocuments):
    """Hands Spyne our WSDL builder instead of its own."""

    def __init__(self, interface):
        super().__init__(interface)
        self.wsdl11 = WcfWsdl11(interface)


def _documents(root):
    """The flat WSDL (under both its names) and each of its schemas."""
    flat = _serialized(root)
    documents = {"wsdl": flat, "singlewsdl": flat}
    types = root.find(_q(ns.WSDL, "types"))
    names = {schema.get("targetNamespace"): f"xsd{n}" for n, schema in enumerate(types)}
    for schema in types:
        # The WSDL root's declarations: the QNames in attribute values need them.
        standalone = etree.Element(schema.tag, attrib=dict(schema.attrib), nsmap=root.nsmap)
        standalone.extend(deepcopy(child) for child in schema)
        _drop_unused_namespaces(standalone)
        for imported in standalone.iterfind(_q(ns.XSD, "import")):
            imported.set("schemaLocation", f"{ADDRESS_PLACEHOLDER}?xsd={names[imported.get('namespace')]}")
        documents[names[schema.get("targetNamespace")]] = _serialized(standalone)
    return documents


def _serialized(element):
    # Indented, so that a change to the contract reads as a diff in review.
    return etree.tostring(element, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def _apply_wcf_conventions(document):
    root = document.root_elt
    service = document.interface.app.name
    prefix = document.interface.get_namespace_prefix(ns.V2)
    _declare_token_element(root)
    _rename_messages(root, service, prefix)
    _rename_port_type_and_binding(root, service, prefix)
    for operation in root.iter(_q(ns.WSDL_SOAP, "operation")):
        name = operation.getparent().get("name")
        operation.set("soapAction", conventions.soap_action(service, name))
    for operation in root.iter(_q(ns.WSDL, "operation")):
        operation.attrib.pop("parameterOrder", None)  # meant for RPC style only
    root.append(root.find(_q(ns.WSDL, "service")))  # last, where older toolkits look
    _declare_addressing_actions(root, service)
    _sort_schemas(root)
    _drop_unused_namespaces(root)


def _declare_token_element(root):
    if root.find(f"{_q(ns.WSDL, 'message')}/{_q(ns.WSDL, 'part')}[@name='token']") is None:
        return
    for schema in root.iter(_q(ns.XSD, "schema")):
        if schema.get("targetNamespace") == ns.V2:
            element = etree.SubElement(schema, _q(ns.XSD, "element"))
            element.set("name", "token")
            element.set("type", "xs:string")
            return


def _declare_addressing_actions(root, service):
    # Mono's svcutil takes an operation's action only from wsaw:Action on the
    # portType's input, as WCF writes it, and otherwise generates Action="*":
    # its client then sends SOAPAction "*". The output's is WCF's reply action.
    for operation in root.iterfind(f"{_q(ns.WSDL, 'portType')}/{_q(ns.WSDL, 'operation')}"):
        action = conventions.soap_action(service, operation.get("name"))
        for message, suffix in (("input", ""), ("output", "Response")):
            element = operation.find(_q(ns.WSDL, message))
            if element is not None:
                element.set(_q(ns.WSAW, "Action"), action + suffix)
    # Declared once, on the root, as wsaw (not once per element as ns0); the
    # other declarations stay for _drop_unused_namespaces to judge.
    etree.cleanup_namespaces(root, top_nsmap={"wsaw": ns.WSAW}, keep_ns_prefixes=[p for p in root.nsmap if p])


def _sort_schemas(root):
    # Spyne emits declarations in an order that varies from run to run; the
    # snapshot in wsdl/ must not.
    types = root.find(_q(ns.WSDL, "types"))
    types[:] = sorted(types, key=lambda schema: schema.get("targetNamespace"))
    rank = {_q(ns.XSD, "import"): 0, _q(ns.XSD, "simpleType"): 1, _q(ns.XSD, "complexType"): 1}
    for schema in types:
        schema[:] = sorted(schema, key=lambda d: (rank.get(d.tag, 2), d.get("namespace") or d.get("name")))


def _rename_messages(root, service, prefix):
    renamed = {}
    for message in root.findall(_q(ns.WSDL, "message")):
        old = message.get("name")
        part = message.find(_q(ns.WSDL, "part"))
        if part.get("name") == "token":
            new = conventions.header_message(service)
        elif old.endswith("Response"):
            new = conventions.message(service, old[: -len("Response")], "Output")
            part.set("name", "parameters")
        else:
            new = conventions.message(service, old, "Input")
            part.set("name", "parameters")
        message.set("name", new)
        renamed[f"{prefix}:{old}"] = f"{prefix}:{new}"
    for element in root.iter(_q(ns.WSDL, "input"), _q(ns.WSDL, "output"), _q(ns.WSDL_SOAP, "header")):
        if element.get("message") in renamed:
            element.set("message", renamed[element.get("message")])


def _rename_port_type_and_binding(root, service, prefix):
    port_type = conventions.port_type(service)
    binding = conventions.binding(service)
    root.find(_q(ns.WSDL, "portType")).set("name", port_type)
    binding_element = root.find(_q(ns.WSDL, "binding"))
    binding_element.set("name", binding)
    binding_element.set("type", f"{prefix}:{port_type}")
    port = root.find(f"{_q(ns.WSDL, 'service')}/{_q(ns.WSDL, 'port')}")
    port.set("name", binding)
    port.set("binding", f"{prefix}:{binding}")


def _drop_unused_namespaces(root):
    used = {
        value.split(":", 1)[0]
        for element in root.iter()
        for name in _QNAME_ATTRIBUTES
        if ":" in (value := element.get(name) or "")
    }
    etree.cleanup_namespaces(root, keep_ns_prefixes=sorted(used))
