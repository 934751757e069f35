"""Spyne's SOAP 1.1 protocol, made to read and speak like the WCF service it replaces."""

from lxml import etree
from spyne.context import ProtocolContext
from spyne.error import ResourceNotFoundError
from spyne.protocol.soap import Soap11

from gateway import ns
from gateway.soap import deserializer, device_list, envelope
from gateway.soap.conventions import soap_action
from gateway.soap.faults import ClientFault
from gateway.soap.models import GoToStateRequest
from gateway.soap.response_writer import text_result_envelope, wcf_envelope
from gateway.xmlchars import xml_safe

# Generated clients that do not know the action send one of these.
ANY_ACTION = frozenset({"", "*"})

deserializer.shortcut(GoToStateRequest._type_info["DeviceList"], device_list.read)


class AcyclicProtocolContext(ProtocolContext):
    """Spyne's protocol context without its factory of sub-contexts, a closure over the context itself.

    That closure made each request's contexts a reference cycle, and with
    them its documents and objects (about 70 objects a request), which only
    Python's cycle collector freed. Sub-contexts (``ctx.inprot_ctx[key]``,
    which neither Spyne's SOAP nor the gateway uses) are still made on first use.
    """

    def __init__(self, parent, transport, type=None):
        self.parent = parent
        self.itself = transport
        self.type = type
        self._subctx = {}

    def __getitem__(self, item):
        if item not in self._subctx:
            self._subctx[item] = type(self)(self.parent, self.itself, self.type)
        return self._subctx[item]


class WcfSoap11(Soap11):
    """SOAP 1.1 with a hardened parser, WCF's strictness, SOAPAction rule,
    response prefixes and fault shape."""

    def __init__(self, **kwargs):
        super().__init__(xml_declaration=False, cleanup_namespaces=False, **kwargs)

    def get_context(self, parent, transport):
        return AcyclicProtocolContext(parent, transport)

    def create_in_document(self, ctx, charset=None):
        body = b"".join(ctx.in_string)
        ctx.in_string = [body]  # kept for the log excerpt of a refused request
        # The body's own declaration or BOM says its encoding, as for WCF.
        ctx.in_document = envelope.parse(body)

    def decompose_incoming_envelope(self, ctx, message=Soap11.REQUEST):
        ctx.in_header_doc, ctx.in_body_doc = envelope.split(ctx.in_document)
        ctx.method_request_string = ctx.in_body_doc.tag

    def generate_method_contexts(self, ctx):
        # Spyne dispatches on the body element; WCF on SOAPAction. We dispatch
        # on the body, and refuse an action that names another operation, so
        # that a misrouted client hears about it instead of doing the wrong thing.
        try:
            contexts = super().generate_method_contexts(ctx)
        except ResourceNotFoundError:
            operations = ", ".join(sorted(self.app.interface.service_method_map))
            raise ClientFault(
                f"{ctx.method_request_string[:200]} is not an operation of {self.app.name}; it has {operations}"
            ) from None
        sent = ctx.transport.req_env.get("HTTP_SOAPACTION", "").strip().strip('"')
        expected = soap_action(self.app.name, contexts[0].descriptor.operation_name)
        if sent not in ANY_ACTION and sent != expected:
            raise ClientFault(
                f"SOAPAction {sent[:200]!r} does not match the operation in the body; expected {expected!r}"
            )
        # The contexts are copies; the original, left in a reference cycle
        # until a full collection, need not keep the body and the tree too.
        ctx.in_string = ctx.in_document = ctx.in_header_doc = ctx.in_body_doc = None
        return contexts

    def deserialize(self, ctx, message):
        if message is not self.REQUEST:
            return super().deserialize(ctx, message)
        self.event_manager.fire_event("before_deserialize", ctx)
        headers = ctx.descriptor.in_header or ()
        values = deserializer.read_headers(ctx.in_header_doc, headers)
        ctx.in_header = values[0] if len(values) == 1 else values
        ctx.in_object = list(deserializer.read(ctx.in_body_doc, ctx.descriptor.in_message))
        # Read: the tree (15 MB for 10,000 devices) goes now, not with the
        # context, before the operation builds its own data from the records.
        ctx.in_document = ctx.in_header_doc = ctx.in_body_doc = None
        self.event_manager.fire_event("after_deserialize", ctx)

    def serialize(self, ctx, message):
        if message is self.RESPONSE and ctx.out_error is None and ctx.out_header is None:
            document = text_result_envelope(ctx.descriptor, ctx.out_object)
            if document is not None:
                self.event_manager.fire_event("before_serialize", ctx)
                ctx.out_document = document
                ctx.out_body_doc = document[0]
                self.event_manager.fire_event("after_serialize", ctx)
                return
        super().serialize(ctx, message)
        ctx.out_document = wcf_envelope(ctx.out_document)

    def fault_to_parent(self, ctx, cls, inst, parent, ns_, *args, **kwargs):
        code = getattr(inst, "code", None)
        if code is None:
            # Spyne's own faults carry sub-codes (Client.SchemaValidationError);
            # WCF clients know only the SOAP 1.1 classes.
            code = "s:Client" if inst.faultcode.startswith("Client") else "s:Server"
        fault = etree.SubElement(parent, f"{{{ns.SOAP_ENV}}}Fault")
        etree.SubElement(fault, "faultcode", nsmap=getattr(inst, "code_nsmap", {})).text = code
        faultstring = etree.SubElement(fault, "faultstring")
        faultstring.text = xml_safe(inst.faultstring)
        faultstring.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
        # No detail, as WCF wrote none: an element the WSDL does not declare
        # there stops strict toolkits (Perl's SOAP::WSDL) from reading the
        # fault at all. The request id is the X-Request-Id header's.
