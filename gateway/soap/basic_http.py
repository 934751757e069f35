"""What WCF's basicHttpBinding answers at the HTTP level, before any SOAP is read.

A ``.svc`` endpoint takes SOAP 1.1 as ``POST`` with ``Content-Type: text/xml``
and serves its documents on ``GET``. WCF refuses anything else outright, and
legacy clients recognise those answers:

- another method gets 405 with ``Allow``;
- another content type (``application/soap+xml`` from a SOAP 1.2 client,
  ``text/plain``, ``application/json``, none at all) gets 415 with WCF's own
  sentence as the reason phrase and the body.

Neither is a SOAP fault: WCF never got as far as reading an envelope.
"""

from werkzeug.http import parse_options_header
from werkzeug.wrappers import Response

SOAP11_CONTENT_TYPE = "text/xml; charset=utf-8"
# Of a client's Content-Type, what the answer quotes back: enough to recognise it.
_SHOWN_CONTENT_TYPE = 100


def refusal(environ, is_document_request):
    """The 405 or 415 WCF would answer this request with, or None to let it through.

    ``is_document_request``: the URL names a WSDL or schema (``?wsdl``,
    ``?singleWsdl``, ``?xsd=``), which ``GET`` may fetch.
    """
    method = environ["REQUEST_METHOD"]
    if method == "GET" and is_document_request:
        return None
    if method != "POST":
        return _method_not_allowed(method, is_document_request)
    content_type = environ.get("CONTENT_TYPE", "")
    if parse_options_header(content_type)[0].lower() != "text/xml":
        return _unsupported_media_type(content_type)
    return None


def _method_not_allowed(method, is_document_request):
    # The methods the URL itself takes: POST everywhere, GET on a document's URL.
    allowed = "GET, POST" if is_document_request else "POST"
    text = (
        f"Method {_printable(method)} is not allowed: this endpoint takes SOAP 1.1 by POST, "
        "and GET only with ?wsdl, ?singleWsdl or ?xsd=xsdN"
    )
    return Response(text + "\n", status=405, mimetype="text/plain", headers={"Allow": allowed})


def _unsupported_media_type(content_type):
    text = (
        f"Cannot process the message because the content type '{_printable(content_type)}' "
        f"was not the expected type '{SOAP11_CONTENT_TYPE}'."
    )
    response = Response(text + "\n", mimetype="text/plain")
    # As WCF: the sentence is the reason phrase too, which is what .NET's
    # WebException and many HTTP clients show.
    response.status = f"415 {text}"
    return response


def _printable(value):
    """``value`` safe for a status line and a log: printable ASCII, shortened."""
    shown = "".join(c if " " <= c <= "~" else "?" for c in value[:_SHOWN_CONTENT_TYPE])
    return shown + ("..." if len(value) > _SHOWN_CONTENT_TYPE else "")
