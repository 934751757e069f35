"""Rewrite an outgoing SOAP envelope with the prefixes WCF writes.

WCF answers ``<s:Envelope>``, puts a default namespace on the operation
wrapper, and declares ``a:``, ``b:``, ...
for data-contract namespaces on the element whose children first use them
(with ``i:`` for XML Schema instance beside the first one). Clients in the
wild look responses up by qualified name (``GetElementsByTagName("a:SessionToken")``),
so these prefixes are part of the contract. lxml cannot rename a prefix in
place, hence the rebuild.
"""

from string import ascii_lowercase

from lxml import etree

from gateway import ns


def wcf_envelope(envelope):
    """A copy of ``envelope`` written with WCF's prefixes."""
    out = etree.Element(envelope.tag, nsmap={"s": ns.SOAP_ENV})
    for part in envelope:  # Header, Body
        out_part = etree.SubElement(out, part.tag)
        for child in part:
            _copy(child, out_part, {ns.SOAP_ENV}, iter(ascii_lowercase), wrapper=True)
    return out


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
