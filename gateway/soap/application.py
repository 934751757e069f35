"""One Spyne application per legacy ``.svc`` endpoint."""

import logging
from urllib.parse import parse_qs

import spyne.const
from spyne import Application, Fault
from spyne.server.wsgi import WsgiApplication
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_host

from gateway import ns
from gateway.exceptions import GatewayError, StoreUnavailable
from gateway.logs import RateLimited, current_request_id, excerpt
from gateway.metrics import SOAP_REQUESTS
from gateway.soap import basic_http
from gateway.soap.events import ListenersOnlyEventManager
from gateway.soap.faults import ServerFault, fault_outcome, is_client_fault, to_fault
from gateway.soap.protocol import WcfSoap11
from gateway.soap.services import SERVICES
from gateway.soap.wsdl import ADDRESS_PLACEHOLDER, WcfInterfaceDocuments

log = logging.getLogger(__name__)

# Spyne runs a full gc.collect() at the end of a request once a second (to
# close files it may leave behind; the gateway keeps none), a pause of 8-10 ms
# in p99. Python's own generational collection still runs.
spyne.const.MIN_GC_INTERVAL = float("inf")
# A client can send bad requests as fast as it likes; the log must not follow.
_rejections = RateLimited(log)
_failures = RateLimited(log)

# Each followed by the request id, under which the gateway's log has the details.
UNEXPECTED_TEXT = "The gateway failed unexpectedly; its log has the details under request id"
RESPONSE_FAILED_TEXT = "The operation ran, but the gateway failed writing its answer; its log has the details under request id"


class GatewayApplication(Application):
    """A legacy service bound to what its operations need at run time (``runtime``)."""

    def __init__(self, service, runtime=None):
        super().__init__(
            [service],
            tns=ns.V2,
            name=service.__name__,
            in_protocol=WcfSoap11(),
            out_protocol=WcfSoap11(),
            documents_container=WcfInterfaceDocuments,
        )
        self.transport = ns.SOAP_HTTP_TRANSPORT
        self.runtime = runtime
        self.interface.docs.wsdl11.build_interface_document(ADDRESS_PLACEHOLDER)
        self.event_manager = ListenersOnlyEventManager(self, self.event_manager.handlers)
        self.event_manager.add_listener("method_exception_object", _log_fault)

    def call_wrapper(self, ctx):
        try:
            return super().call_wrapper(ctx)
        except StoreUnavailable as error:
            _failures.warning("%s: %s", _operation(ctx), error)
            raise to_fault(error) from None
        except GatewayError as error:
            raise to_fault(error) from None
        except Fault:
            raise
        except Exception:
            log.exception("unexpected error in %s", ctx.method_request_string)
            raise ServerFault(f"{UNEXPECTED_TEXT} {current_request_id()}") from None


def _operation(ctx):
    # The descriptor's name, never the client's element name: metric labels
    # must stay a small, known set.
    return ctx.descriptor.operation_name if ctx.descriptor is not None else "unknown"


def _log_fault(ctx):
    """One line per fault; a client's own mistakes rate-limited, with a masked excerpt."""
    fault = ctx.out_error
    code = getattr(fault, "code", fault.faultcode)
    operation = _operation(ctx)
    SOAP_REQUESTS.labels(ctx.app.name, operation, fault_outcome(fault)).inc()
    if is_client_fault(fault):
        body = b"".join(ctx.in_string) if isinstance(ctx.in_string, list) else b""
        _rejections.warning("%s refused (%s): %s; body: %s", operation, code, fault.faultstring, excerpt(body))
    else:
        _failures.warning("%s failed (%s): %s", operation, code, fault.faultstring)


def _unlink_contexts(ctx):
    """Once the answer is written, the request's context parts stop pointing back at it (``parent``).

    Otherwise each request was a reference cycle, its documents and objects
    freed by Python's cycle collector (a pause every dozen requests) rather
    than as soon as the server lets go of it (see ``AcyclicProtocolContext``).
    """
    for part in (ctx.transport, ctx.inprot_ctx, ctx.outprot_ctx, ctx.event):
        if part is not None:
            part.parent = None


def _document_name(environ):
    """``wsdl``, ``singlewsdl`` or ``xsdN`` from the query string (any case, as WCF), else None."""
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    keys = {key.lower(): values for key, values in query.items()}
    if "xsd" in keys:
        return keys["xsd"][0].lower()
    return next((name for name in ("wsdl", "singlewsdl") if name in keys), None)


class ServiceEndpoint(WsgiApplication):
    """A ``.svc`` URL: SOAP on POST, the WSDL on ``GET ?wsdl`` / ``?singleWsdl`` / ``?xsd=xsdN``;
    any other method or content type refused as WCF refused it (basic_http)."""

    def __init__(self, app, path, max_body_bytes, public_url=None):
        super().__init__(app, max_content_length=max_body_bytes)
        self.path = path
        self._public_url = public_url
        self.event_manager = ListenersOnlyEventManager(self, self.event_manager.handlers)
        self.event_manager.add_listener("wsgi_close", _unlink_contexts)

    def __call__(self, req_env, start_response, wsgi_url=None):
        document_request = _document_name(req_env) is not None
        refused = basic_http.refusal(req_env, document_request)
        if refused is not None:
            return refused(req_env, start_response)
        # Not through WsgiApplication.__call__: it rebuilds the request's URL
        # on every call for the WSDL, whose address is ours (``address``).
        if document_request and req_env["REQUEST_METHOD"] == "GET":
            return self.handle_wsdl_request(req_env, start_response, None)
        return self.handle_rpc(req_env, start_response)

    def get_out_string(self, ctx):
        """Write the answer; counted ``ok`` only once it is written.

        Spyne answers an error while writing a response with a bare "Internal
        Error" fault, logged to its own (muted) logger, after the operation
        was already counted a success: here it is logged with the request id,
        counted as a server fault, and the client gets our server fault.
        """
        if ctx.out_error is not None:
            return super().get_out_string(ctx)
        operation = _operation(ctx)
        try:
            super().get_out_string(ctx)
        except Exception:
            log.exception("%s ran, but its answer could not be written", operation)
            ctx.out_error = ServerFault(f"{RESPONSE_FAILED_TEXT} {current_request_id()}")
            ctx.out_document = ctx.out_string = None
            ctx.transport.resp_code = ctx.out_protocol.fault_to_http_response_code(ctx.out_error)
            SOAP_REQUESTS.labels(self.app.name, operation, "server_fault").inc()
            return super().get_out_string(ctx)
        SOAP_REQUESTS.labels(self.app.name, operation, "ok").inc()

    def handle_wsdl_request(self, req_env, start_response, url):
        document = self.doc.wsdl11.document(_document_name(req_env), self.address(req_env))
        if document is None:
            response = Response("No such document: ?wsdl, ?singleWsdl or ?xsd=xsdN\n", 404, mimetype="text/plain")
            return response(req_env, start_response)
        start_response(
            "200 OK",
            [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(document)))],
        )
        return [document]

    def address(self, environ):
        """This endpoint's URL as the client reaches it."""
        if self._public_url:
            return self._public_url + self.path
        # SCRIPT_NAME is the reverse proxy's prefix plus our mount path.
        return iri_to_uri(f"{environ['wsgi.url_scheme']}://{get_host(environ)}{environ.get('SCRIPT_NAME', '')}")
