"""A legacy callback listener for demos: prints each SOAP CallbackRequest it receives.

Each envelope is printed to standard output as a block of its own, indented
under a line saying when and where it arrived: the one-line log format would
squash it into one line full of ``\\n``.
"""

import logging
import sys
import textwrap
import threading
import time

from lxml import etree
from werkzeug.wrappers import Request, Response

from gateway import ns
from gateway.access import serve_quietly
from gateway.logs import iso_utc

log = logging.getLogger("gateway.listener")

# The server answers on several threads: one block at a time.
_printing = threading.Lock()


def listener(environ, start_response):
    request = Request(environ)
    body = request.get_data()
    try:
        envelope = etree.fromstring(body)
    except etree.XMLSyntaxError:
        shown = body.decode("utf-8", "replace")
    else:
        for password in envelope.iter(f"{{{ns.V2}}}Password"):
            password.text = "********" if password.text else None  # no secret on the screen
        shown = etree.tostring(envelope, pretty_print=True).decode()
    block = textwrap.indent(shown.rstrip(), "    ")
    with _printing:
        sys.stdout.write(f"\n{iso_utc(time.time())} callback received on {request.path}:\n{block}\n\n")
        sys.stdout.flush()
    return Response(status=200)(environ, start_response)


def serve(host, port):
    log.info("demo listener on http://%s:%d/", host, port)
    serve_quietly(host, port, listener)
