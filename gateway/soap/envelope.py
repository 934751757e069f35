"""Reading an incoming SOAP 1.1 envelope, safely.

The parser resolves no entity, loads no DTD and touches no network; a DOCTYPE
is refused outright (not stripped), so entity expansion, external entities
and parameter entities never get a chance. libxml2's own limits (256 levels
of nesting, 10 MB text nodes) stay on. What the parser says goes to no client
and no log: a client hears where its document broke, in our words.
"""

import re

from lxml import etree

from gateway import ns
from gateway.soap.faults import ClientFault, VersionMismatch

_PARSER = etree.XMLParser(
    resolve_entities=False,
    load_dtd=False,
    dtd_validation=False,
    no_network=True,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)

# What may come before the root element: a BOM, the XML declaration,
# comments, processing instructions and white space.
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.S)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.I)

DOCTYPE_REFUSED = "DOCTYPE is not allowed in a SOAP message (no DTD, no entity declarations)"


def parse(body):
    """The envelope element of ``body`` (bytes), or a client fault saying what is wrong."""
    if _has_doctype(body):
        raise ClientFault(DOCTYPE_REFUSED)
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise ClientFault(_not_well_formed(error)) from None
    if root.getroottree().docinfo.doctype:  # an encoding the prolog scan cannot read
        raise ClientFault(DOCTYPE_REFUSED)
    return root


def split(envelope):
    """``(header children, the one body element)`` of a SOAP 1.1 envelope."""
    if envelope.tag == f"{{{ns.SOAP12_ENV}}}Envelope":
        raise VersionMismatch("This endpoint speaks SOAP 1.1; the message is a SOAP 1.2 envelope")
    if envelope.tag != f"{{{ns.SOAP_ENV}}}Envelope":
        raise VersionMismatch(f"The root element must be {{{ns.SOAP_ENV}}}Envelope")
    parts = list(envelope)
    header = []
    if parts and parts[0].tag == f"{{{ns.SOAP_ENV}}}Header":
        header = list(parts.pop(0))
    if len(parts) != 1 or parts[0].tag != f"{{{ns.SOAP_ENV}}}Body":
        raise ClientFault("The envelope must hold an optional Header then one Body, and nothing else")
    operations = list(parts[0])
    if len(operations) != 1:
        raise ClientFault(f"The Body must hold exactly one operation element; it holds {len(operations)}")
    return header, operations[0]


def _has_doctype(body):
    position = 3 if body.startswith(b"\xef\xbb\xbf") else 0
    while match := _PROLOG_ITEM.match(body, position):
        position = match.end()
    return bool(_DOCTYPE.match(body, position))


def _not_well_formed(error):
    line, column = error.position
    message = str(error.msg)
    if "Excessive depth" in message:
        problem = "elements are nested too deeply (at most 256 levels)"
    elif "huge" in message.lower():
        problem = "a text node is too large"
    elif "encoding" in message.lower() or "utf-8" in message.lower() or "bytes" in message.lower():
        problem = "the text is not valid in its declared encoding"
    else:
        problem = "the document is not well-formed XML"
    return f"The request cannot be read: {problem} (line {line}, column {column})"
