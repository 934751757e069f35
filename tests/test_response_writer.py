"""Answers written directly (text-only results) are byte for byte what Spyne's serializer and the WCF rewrite write."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from spyne import MethodContext
from spyne.protocol.soap import Soap11
from spyne.server.null import NullServer

from gateway.soap.application import GatewayApplication
from gateway.soap.response_writer import text_result_envelope, wcf_envelope
from gateway.soap.services import SERVICES
from gateway.xmlchars import xml_safe

OPERATIONS = [
    (service, descriptor)
    for service in SERVICES.values()
    for (descriptor,) in GatewayApplication(service).interface.service_method_map.values()
]
# Every operation but GetCallbackRegistrations (a list of registrations) answers text fields only.
TEXT_RESULTS = [(s, d) for s, d in OPERATIONS if d.name != "GetCallbackRegistrations"]


def answers(service, descriptor, result):
    """(written directly, written the long way) for an answer carrying ``result``."""
    app = GatewayApplication(service)
    ctx = MethodContext(NullServer(app), MethodContext.SERVER)
    ctx.descriptor, ctx.out_object = descriptor, [result]
    direct = text_result_envelope(descriptor, ctx.out_object)
    Soap11.serialize(app.out_protocol, ctx, Soap11.RESPONSE)
    return (None if direct is None else etree.tostring(direct)), etree.tostring(wcf_envelope(ctx.out_document))


def result_class(descriptor):
    (cls,) = descriptor.out_message._type_info.values()
    return cls


def test_every_operation_but_the_list_is_written_directly():
    assert [d.name for _, d in TEXT_RESULTS] == ["LogIn", "LogOut", "GoToState", "RegisterCallback", "UnregisterCallback"]
    for service, descriptor in OPERATIONS:
        cls = result_class(descriptor)
        direct, _ = answers(service, descriptor, cls(**{name: "x" for name in cls._type_info if name != "Registrations"}))
        assert (direct is not None) == (descriptor.name != "GetCallbackRegistrations")


@pytest.mark.parametrize("service, descriptor", TEXT_RESULTS, ids=[d.name for _, d in TEXT_RESULTS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_text_result_is_written_as_spyne_and_the_rewrite_write_it(service, descriptor, data):
    cls = result_class(descriptor)
    text = st.one_of(st.none(), st.text(max_size=20).map(xml_safe), st.sampled_from(["", "a&b<c>d\"e'", "r-1"]))
    result = data.draw(st.one_of(st.none(), st.fixed_dictionaries({name: text for name in cls._type_info}).map(lambda v: cls(**v))))
    direct, long_way = answers(service, descriptor, result)
    values = [] if result is None else [getattr(result, name) for name in cls._type_info]
    if any(":" in value for value in values if value is not None):
        assert direct is None  # the long way, for the rewrite's prefix rule
    else:
        assert direct == long_way
