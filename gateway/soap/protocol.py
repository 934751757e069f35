"""Spyne's SOAP 1.1 protocol, made to speak like the WCF service it replaces."""

from lxml import etree
from spyne.protocol.soap import Soap11

from gateway import ns
from gateway.soap.conventions import soap_action
from gateway.soap.faults import ClientFault, UpstreamFault
from gateway.soap.prefixes import wcf_envelope

# Generated clients that do not know the action send one of these.
ANY_ACTION = frozenset({"", "*"})


class WcfSoap11(Soap11):
    """SOAP 1.1 with WCF's SOAPAction rule, response prefixes and fault shape."""

    def __init__(self, **kwargs):
        super().__init__(xml_declaration=False, cleanup_namespaces=False, **kwargs)

    def generate_method_contexts(self, ctx):
        # Spyne dispatches on the body element; WCF on SOAPAction. We dispatch
        # on the body, and refuse an action that names another operation, so
        # that a misrouted client hears about it instead of doing the wrong thing.
        contexts = super().generate_method_contexts(ctx)
        sent = ctx.transport.req_env.get("HTTP_SOAPACTION", "").strip().strip('"')
        expected = soap_action(self.app.name, contexts[0].descriptor.operation_name)
        if sent not in ANY_ACTION and sent != expected:
            raise ClientFault(
                f"SOAPAction {sent[:200]!r} does not match the operation in the body; expected {expected!r}"
            )
        return contexts

    def serialize(self, ctx, message):
        super().serialize(ctx, message)
        ctx.out_document = wcf_envelope(ctx.out_document)

    def fault_to_parent(self, ctx, cls, inst, parent, ns_, *args, **kwargs):
        if isinstance(inst, UpstreamFault):
            code = inst.faultcode
        else:
            # Spyne's own faults carry sub-codes (Client.SchemaValidationError);
            # WCF clients know only the two SOAP 1.1 classes.
            code = "s:Client" if inst.faultcode.startswith("Client") else "s:Server"
        fault = etree.SubElement(parent, f"{{{ns.SOAP_ENV}}}Fault")
        etree.SubElement(fault, "faultcode").text = code
        faultstring = etree.SubElement(fault, "faultstring")
        faultstring.text = inst.faultstring
        faultstring.set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
