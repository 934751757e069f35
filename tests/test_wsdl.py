"""The WSDL faults that broke real toolkits (measured with twelve of them) stay fixed."""

from collections import defaultdict
from pathlib import Path

import pytest
from lxml import etree

from gateway import ns
from gateway.soap.conventions import soap_action

WSDL_DIR = Path(__file__).resolve().parents[1] / "wsdl"
SERVICES = ["CallbackRegistrationService", "SessionService", "StateService"]
Q = {"wsdl": ns.WSDL, "xs": ns.XSD, "soap": ns.WSDL_SOAP}


@pytest.fixture(params=SERVICES)
def wsdl(request):
    return request.param, etree.parse(str(WSDL_DIR / f"{request.param}.wsdl")).getroot()


def test_every_header_part_names_a_declared_element(wsdl):
    # zeep, suds, strong-soap, gSOAP, wsimport, Axis 1 and Mono fail otherwise.
    _, root = wsdl
    declared = {
        (schema.get("targetNamespace"), element.get("name"))
        for schema in root.iterfind(".//xs:schema", Q)
        for element in schema.iterfind("xs:element", Q)
    }
    for header in root.iterfind(".//soap:header", Q):
        message = header.get("message").split(":")[1]
        part = root.find(f"wsdl:message[@name='{message}']/wsdl:part[@name='{header.get('part')}']", Q)
        prefix, name = part.get("element").split(":")
        assert (part.nsmap[prefix], name) in declared


def test_no_soap_12_namespace_is_declared(wsdl):
    # gSOAP generates a SOAP 1.2 client when it sees one.
    _, root = wsdl
    declared = {uri for element in root.iter() for uri in element.nsmap.values()}
    assert not {ns.SOAP12_ENV, "http://schemas.xmlsoap.org/wsdl/soap12/", "http://www.w3.org/2003/05/soap-encoding"} & declared


def test_body_parts_are_named_parameters(wsdl):
    # Mono's svcutil generates an empty proxy otherwise.
    _, root = wsdl
    parts = [part for part in root.iterfind("wsdl:message/wsdl:part", Q) if part.get("name") != "token"]
    assert parts and all(part.get("name") == "parameters" for part in parts)


def test_no_type_name_is_used_in_two_namespaces(wsdl):
    # Perl's SOAP::WSDL breaks on that.
    _, root = wsdl
    namespaces = defaultdict(set)
    for schema in root.iterfind(".//xs:schema", Q):
        for declaration in schema.iterfind("xs:complexType", Q):
            namespaces[declaration.get("name")].add(schema.get("targetNamespace"))
    assert {name: uris for name, uris in namespaces.items() if len(uris) > 1} == {}


def test_soap_actions_are_wcfs(wsdl):
    service, root = wsdl
    operations = root.findall("wsdl:binding/wsdl:operation", Q)
    assert operations
    for operation in operations:
        action = operation.find("soap:operation", Q).get("soapAction")
        assert action == soap_action(service, operation.get("name"))


def test_names_follow_wcf_so_regenerated_clients_keep_their_class_names(wsdl):
    service, root = wsdl
    assert root.find("wsdl:portType", Q).get("name") == f"I{service}"
    assert root.find("wsdl:binding", Q).get("name") == f"BasicHttpBinding_I{service}"
    assert root.find("wsdl:service", Q).get("name") == service


def test_port_type_messages_carry_wcfs_addressing_actions(wsdl):
    # Mono's svcutil reads the action only from wsaw:Action; without it, its
    # client sends SOAPAction "*".
    service, root = wsdl
    wsaw = "{http://www.w3.org/2006/05/addressing/wsdl}Action"
    for operation in root.iterfind("wsdl:portType/wsdl:operation", Q):
        action = soap_action(service, operation.get("name"))
        assert operation.find("wsdl:input", Q).get(wsaw) == action
        assert operation.find("wsdl:output", Q).get(wsaw) == action + "Response"
