"""The bare baseline of the small-request benchmark: werkzeug + lxml, no Spyne, no store.

Reads the request as werkzeug does, turns it into the REST JSON with the same
hand-written lxml code as the bulk benchmark's floor (bench/floor.py), and
answers the very bytes the gateway answered for that request (the file named
by ``$BENCH_BARE_RESPONSE``, captured from the gateway in the same run).

With ``$BENCH_BARE_UPSTREAM`` (``host:port``) set it also PUTs that JSON to the
upstream stub, as the gateway must, over one kept-alive ``http.client``
connection per thread: the least an upstream call can cost in Python.
"""

import http.client
import os
import threading
from pathlib import Path

from werkzeug.wrappers import Request, Response

from bench.floor import to_rest_json

RESPONSE = Path(os.environ["BENCH_BARE_RESPONSE"]).read_bytes()
CONTENT_TYPE = os.environ.get("BENCH_BARE_CONTENT_TYPE", "text/xml; charset=utf-8")
UPSTREAM = os.environ.get("BENCH_BARE_UPSTREAM")
GO_TO_STATE_PATH = "/api/m2m/v1/devices/actions/goToState"
_local = threading.local()


def application(environ, start_response):
    request = Request(environ)
    rest = to_rest_json(request.get_data())
    if UPSTREAM:
        _put(rest)
    return Response(RESPONSE, content_type=CONTENT_TYPE)(environ, start_response)


def _put(body):
    connection = getattr(_local, "connection", None)
    if connection is None:
        host, port = UPSTREAM.rsplit(":", 1)
        connection = _local.connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("PUT", GO_TO_STATE_PATH, body, {"Content-Type": "application/json", "VZ-M2M-Token": "s"})
        answer = connection.getresponse()
        answer.read()
    except (OSError, http.client.HTTPException):
        connection.close()
        _local.connection = None
        raise
    if answer.status != 200:
        raise RuntimeError(f"upstream answered {answer.status}")
