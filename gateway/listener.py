"""A legacy callback listener for demos: prints each SOAP CallbackRequest it receives."""

import logging

from lxml import etree

from gateway import ns
from gateway.access import QuietRequestHandler
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

log = logging.getLogger("gateway.listener")


def listener(environ, start_response):
    request = Request(environ)
    body = request.get_data()
    try:
        envelope = etree.fromstring(body)
    except etree.XMLSyntaxError:
        shown = body.decode("utf-8", "replace")
    else:
        for password in envelope.iter(f"{{{ns.V2}}}Password"):
            password.text = "********" if password.text else None  # no secret in a log line
        shown = etree.tostring(envelope, pretty_print=True).decode()
    log.info("callback received on %s:\n%s", request.path, shown)
    return Response(status=200)(environ, start_response)


def serve(host, port):
    log.info("demo listener on http://%s:%d/", host, port)
    run_simple(host, port, listener, threaded=True, request_handler=QuietRequestHandler)
