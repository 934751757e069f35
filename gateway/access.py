"""Access logging: one line per request, with its id, and never its query string."""

import logging
import time

from werkzeug.serving import WSGIRequestHandler, make_server

log = logging.getLogger("gateway.access")


class AccessLog:
    """WSGI middleware logging ``METHOD path status duration`` once per request.

    The query string is left out: clients put the oddest things there, secrets
    included. Runs inside :class:`gateway.logs.RequestIds`, so the line carries
    the request's id.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        started = time.monotonic()
        status = []

        def recording_start_response(status_line, headers, exc_info=None):
            status.append(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, recording_start_response)
        finally:
            log_access(
                environ.get("REQUEST_METHOD", "-"),
                environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
                status[-1] if status else "-",
                started,
            )


def log_access(method, path, status, started):
    """The access line of a request answered ``status`` (its code), begun at ``started`` (``time.monotonic()``)."""
    log.info("%s %s %s %.1f ms", method, path, status, (time.monotonic() - started) * 1000)


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler without its own access lines (query strings, colours)."""

    def log_request(self, code="-", size="-"):
        pass


def quiet_server(host, port, app, fd=None):
    """``app`` on werkzeug's threaded development server, bound and not yet serving.

    For the simulator, the demo listener and the tests' in-process gateways.
    Not through ``run_simple``: its banner is in ANSI colours and spans lines,
    which the one-line log format shows as escape codes and a literal ``\\n``;
    the callers log their URL. ``fd``: a socket listening on ``host:port``
    already, served (through a duplicate) rather than a new one bound.
    """
    return make_server(host, port, app, threaded=True, request_handler=_QuietRequestHandler, fd=fd)


def serve_quietly(host, port, app):
    """Serve ``app`` on :func:`quiet_server` until interrupted."""
    quiet_server(host, port, app).serve_forever()
