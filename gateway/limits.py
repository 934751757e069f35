"""Request bodies over the configured size are refused with 413, unread."""

import io

from werkzeug.wrappers import Response


class BodyLimit:
    """WSGI middleware: at most ``max_bytes`` of request body reach the application.

    A declared Content-Length over the limit is refused before a byte of the
    body is read; a chunked body is read up to one byte past the limit and
    refused there, so memory stays bounded whatever the client sends.
    """

    def __init__(self, app, max_bytes):
        self.app = app
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        declared = environ.get("CONTENT_LENGTH")
        if declared:
            if not declared.isdigit():
                return _refuse(400, "Content-Length is not a number", environ, start_response)
            if int(declared) > self.max_bytes:
                return self._too_large(environ, start_response)
        elif environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read(self.max_bytes + 1)
            if len(body) > self.max_bytes:
                return self._too_large(environ, start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _too_large(self, environ, start_response):
        message = f"The request body is larger than the {self.max_bytes:,} bytes accepted ([server] max_body_bytes)"
        return _refuse(413, message, environ, start_response)


def _refuse(status, message, environ, start_response):
    return Response(message + "\n", status=status, mimetype="text/plain")(environ, start_response)
