"""A legacy callback listener for demos: prints each SOAP CallbackRequest it receives."""

import logging

from lxml import etree
from werkzeug.serving import WSGIRequestHandler, run_simple
from werkzeug.wrappers import Request, Response

log = logging.getLogger("gateway.listener")


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass  # the envelope printed below says more than an access line


def listener(environ, start_response):
    request = Request(environ)
    body = request.get_data()
    try:
        shown = etree.tostring(etree.fromstring(body), pretty_print=True).decode()
    except etree.XMLSyntaxError:
        shown = body.decode("utf-8", "replace")
    log.info("callback received on %s:\n%s", request.path, shown)
    return Response(status=200)(environ, start_response)


def serve(host, port):
    log.info("demo listener on http://%s:%d/", host, port)
    run_simple(host, port, listener, threaded=True, request_handler=_QuietHandler)
