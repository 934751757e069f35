"""Rewrite an outgoing SOAP envelope with the prefixes WCF writes.

WCF answers ``<s:Envelope>``, puts a default namespace on the operation
wrapper, and declares ``a:``, ``b:``, ...
for data-contract namespaces on the element whose children first use them
(with ``i:`` for XML Schema instance beside the first one). Clients in the
wild look responses up by qualified name (``GetElementsByTagName("a:SessionToken")``),
so these prefixes are part of the contract. lxml cannot rename a prefix in
place, hence the rebuild.
"""

import functools
from string import ascii_lowercase

from lxml import etree
from spyne import ComplexModel, Unicode
from spyne.descriptor import BODY_STYLE_WRAPPED

from gateway import ns


def wcf_envelope(envelope):
    """A copy of ``envelope`` written with WCF's prefixes."""
    out = etree.Element(envelope.tag, nsmap={"s": ns.SOAP_ENV})
    for part in envelope:  # Header, Body
        out_part = etree.SubElement(out, part.tag)
        for child in part:
            _copy(child, out_part, {ns.SOAP_ENV}, iter(ascii_lowercase), wrapper=True)
    return out


def text_result_envelope(descriptor, out_object):
    """The WCF answer carrying ``out_object``, written directly, when its result is text fields only; else None.

    For the operations called all the time (GoToState, LogIn): Spyne's generic
    serializer and the rewrite above cost more than the rest of the SOAP work
    of a small request. The bytes are those of that pair, which still writes
    every other answer: a field left None is left out, and WCF's prefixes are
    declared on Output only when it has a field. A value with a colon goes
    the long way, as the rewrite may declare a prefix it looks like
    (``_text_qname_prefix``).
    """
    out_message = descriptor.out_message
    result_class = _text_result_class(out_message) if descriptor.body_style is BODY_STYLE_WRAPPED else None
    if result_class is None or len(out_object) != 1:
        return None
    result = out_object[0]
    fields = []
    if result is not None:
        for name in result_class._type_info:
            value = getattr(result, name)
            if value is None:
                continue
            if type(value) is not str or ":" in value:
                return None
            fields.append((name, value))
    envelope = etree.Element(f"{{{ns.SOAP_ENV}}}Envelope", nsmap={"s": ns.SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{ns.SOAP_ENV}}}Body")
    namespace = out_message.get_namespace()
    wrapper = etree.SubElement(body, f"{{{namespace}}}{out_message.get_type_name()}", nsmap={None: namespace})
    if result is None:
        return envelope
    result_namespace = result_class.get_namespace()
    prefixes = {"a": result_namespace, "i": ns.XSI} if fields else None
    output = etree.SubElement(wrapper, f"{{{namespace}}}{next(iter(out_message._type_info))}", nsmap=prefixes)
    for name, value in fields:
        etree.SubElement(output, f"{{{result_namespace}}}{name}").text = value
    return envelope


@functools.lru_cache(maxsize=None)
def _text_result_class(out_message):
    """The result class of a wrapped out message whose one part has only plain text fields, else None."""
    if len(out_message._type_info) != 1:
        return None
    (result_class,) = out_message._type_info.values()
    plain = (
        isinstance(result_class, type)
        and issubclass(result_class, ComplexModel)
        and result_class.Attributes.sub_ns is None
        and result_class.Attributes.sub_name is None
        and result_class.get_namespace() not in (out_message.get_namespace(), ns.SOAP_ENV, ns.XSI)
    )
    if not plain:
        return None
    for field in result_class._type_info.values():
        if not issubclass(field, Unicode) or (field.Attributes.sub_ns, field.Attributes.sub_name) != (None, None):
            return None
    return result_class


def _copy(element, parent, in_scope, letters, wrapper=False):
    nsmap = {}
    namespace = etree.QName(element).namespace
    if wrapper and namespace not in in_scope:
        nsmap[None] = namespace
    nsmap.update(_text_qname_prefix(element))
    declared = in_scope | set(nsmap.values())
    introduced = [n for n in _child_namespaces(element) if n not in declared]
    for child_namespace in introduced:
        nsmap[next(letters)] = child_namespace
    if introduced and ns.XSI not in in_scope:
        nsmap["i"] = ns.XSI
    scope = in_scope | set(nsmap.values())
    out = etree.SubElement(parent, element.tag, attrib=dict(element.attrib), nsmap=nsmap)
    out.text, out.tail = element.text, element.tail
    for child in element:
        _copy(child, out, scope, letters)


def _text_qname_prefix(element):
    """A QName in text (``a:DeserializationFailed``) keeps its prefix declared."""
    prefix, colon, _ = (element.text or "").partition(":")
    if colon and prefix != "s" and prefix in element.nsmap:
        return {prefix: element.nsmap[prefix]}
    return {}


def _child_namespaces(element):
    seen = []
    for child in element:
        namespace = etree.QName(child).namespace
        if namespace is not None and namespace not in seen:
            seen.append(namespace)
    return seen
