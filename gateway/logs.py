"""How the gateway logs: request ids, one line per record, no secrets, no floods.

Every record carries the id of the request it was logged in (``-`` outside a
request), so the lines of one SOAP call can be picked out of a busy log and
matched with the client's own ``X-Request-Id``. A record is always exactly one
line, in either format, so a log reader can split on newlines. Request bodies
are only ever logged as a bounded :func:`excerpt` with credentials masked, and
lines a client can trigger at will go through :class:`RateLimited`.
"""

import contextvars
import datetime
import json
import logging
import re
import secrets
import sys
import threading
import time

request_id = contextvars.ContextVar("request_id", default="-")

REQUEST_ID_HEADER = "X-Request-Id"
# Conservative on purpose: the id is echoed into a response header and into
# every log line, so it must not carry newlines, quotes or unbounded length.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def current_request_id():
    """The id of the request being handled in this thread, or ``-``."""
    return request_id.get()


class RequestIds:
    """WSGI middleware giving every request an id, for its log lines and its response.

    The client's ``X-Request-Id`` is kept when it is a plain token, so that the
    client and the gateway talk about the same id; otherwise a new one is made.
    The id is set for the duration of the application call: lines logged while
    the server iterates the response body afterwards show ``-``.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        this_request = request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        environ["gateway.request_id"] = this_request

        def start_response_with_id(status, headers, exc_info=None):
            headers = [(name, value) for name, value in headers if name.lower() != REQUEST_ID_HEADER.lower()]
            return start_response(status, [*headers, (REQUEST_ID_HEADER, this_request)], exc_info)

        token = request_id.set(this_request)
        try:
            return self.app(environ, start_response_with_id)
        finally:
            request_id.reset(token)


def request_id_for(incoming):
    """The id of a request whose client sent ``incoming`` as its X-Request-Id (``""``: none)."""
    return incoming if _VALID_REQUEST_ID.fullmatch(incoming) else secrets.token_hex(8)


def configure(format="text", level="INFO", stream=None):
    """Send every record to ``stream`` (standard error) as one line of ``format``: text or json."""
    formatters = {"text": _TextFormatter, "json": _JsonFormatter}
    if format not in formatters:
        raise ValueError(f"log format must be one of {', '.join(formatters)}, got {format!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatters[format]())
    # On the handler, not on a logger: a logger's filters do not see the
    # records that propagate to it from its children.
    handler.addFilter(_add_request_id)
    root = logging.getLogger()
    for existing in root.handlers[:]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Both formats use none of a record's caller, thread or process fields:
    # not gathering them saves a stack walk and three lookups on every line,
    # the access line of every request among them (the logging HOWTO's
    # "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Spyne logs a traceback (and for a parse error the whole body) for every
    # fault; the gateway logs one line of its own per fault instead.
    logging.getLogger("spyne").setLevel(logging.CRITICAL)


def iso_utc(timestamp):
    """Epoch seconds as ISO 8601 UTC to the millisecond (``2026-12-02T04:30:38.673Z``); None stays None.

    The times of JSON log lines, of ``trace`` and of the outbox listings: one
    format, so that they can be matched with each other.
    """
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _add_request_id(record):
    record.request_id = request_id.get()
    return True


class _TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__(TEXT_FORMAT)
        self._second = None
        self._second_text = ""

    def formatTime(self, record, datefmt=None):
        # logging's own layout (``2026-12-02 04:30:38,673``), with the
        # strftime of the second made once per second rather than once per
        # line: every request logs its access line.
        second = int(record.created)
        if second != self._second:
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._second_text, record.msecs)

    def format(self, record):
        # A message (or a traceback) spanning lines would look like several
        # records, the later ones without time, level or request id.
        line = super().format(record)
        if "\n" in line or "\r" in line:
            return line.replace("\r", "\\r").replace("\n", "\\n")
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "time": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "request_id": record.request_id,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


# Elements and JSON keys whose values are credentials, compared without case.
SECRET_NAMES = ("Password", "token", "SessionToken")
_SECRET_NAME = "(?:" + "|".join(SECRET_NAMES) + ")"
# <Password>, <ns:Password attr="...">: the text up to the next tag, or to the
# end of a cut excerpt; a CDATA section is text too. <Password/> holds nothing.
_SECRET_ELEMENT = re.compile(
    rf"(<(?:[\w.-]+:)?{_SECRET_NAME}(?:\s[^>]*)?(?<!/)>)(?:[^<]|<!\[CDATA\[.*?(?:\]\]>|\Z))*",
    re.IGNORECASE | re.DOTALL,
)
# "password": "...": the string up to its closing quote, or to the end of a cut excerpt.
_SECRET_JSON_VALUE = re.compile(
    rf'("{_SECRET_NAME}"\s*:\s*)"(?:\\.|[^"\\])*(?:"|\\?\Z)', re.IGNORECASE | re.DOTALL
)
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def excerpt(body, limit=200):
    """The start of a request body, fit for a log line: bounded, one line, credentials masked."""
    text = body[:limit].decode("utf-8", errors="replace")
    text = _SECRET_ELEMENT.sub(r"\1***", text)
    text = _SECRET_JSON_VALUE.sub(r'\1"***"', text)
    text = _CONTROL_CHARACTER.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    return f"{text}… ({len(body)} bytes)" if len(body) > limit else text


class RateLimited:
    """A logger's ``warning`` and ``info`` through a token bucket.

    For lines a client can cause at will (rejected requests): a flood of them
    must not flood the log. ``burst`` lines pass at once, then ``per_second``;
    the first line to pass after some were dropped is preceded by their count.
    """

    def __init__(self, logger, per_second=5.0, burst=20, clock=time.monotonic):
        self.logger = logger
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._tokens = float(burst)
        self._refilled_at = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message, *args):
        self._log(logging.WARNING, message, args)

    def info(self, message, *args):
        self._log(logging.INFO, message, args)

    def _log(self, level, message, args):
        # A disabled level must not spend the tokens of the enabled ones.
        if not self.logger.isEnabledFor(level):
            return
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._refilled_at) * self.per_second)
            self._refilled_at = now
            if self._tokens < 1:
                self._suppressed += 1
                return
            self._tokens -= 1
            suppressed, self._suppressed = self._suppressed, 0
        if suppressed:
            self.logger.log(level, "%d similar lines suppressed", suppressed)
        self.logger.log(level, message, *args)
