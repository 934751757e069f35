"""One HTTP/1.1 exchange on a connection: the request sent in one piece, its answer read strictly.

What http.client does around a kept-alive call costs more CPU than the
call: a request head validated and sent header by header, then sent apart
from its body (two system calls), an answer's headers parsed by the email
package through a buffered file. Here the head is one string, checked once
and sent with the body in one ``sendall``; the answer is received into one
buffer and taken apart with ``bytes`` methods.

The reader is without I/O (:func:`read_answer`, a generator told what was
received), so one parser serves both drivers: :func:`exchange` on a
blocking socket (the threads' calls to ThingSpace) and :func:`exchange_async`
on asyncio's streams (the delivery worker's loop).

It takes RFC 9112's answers and refuses the rest (:class:`BadAnswer`):
a status line, header lines (none folded), then a body framed by chunked
transfer coding, by Content-Length or by the connection's end; none after a
HEAD, a 204, a 304 or a 2xx to CONNECT. Interim 1xx answers are skipped. Heads (the interim
ones together), a chunk line, or a chunk line and the trailers after it,
longer than :data:`MAX_HEAD_BYTES` are refused rather than buffered.
"""

import asyncio
import re

# The most head bytes taken; http.client takes 100 lines of 64 KiB each, and none of
# the servers the gateway calls needs more than a few hundred bytes.
MAX_HEAD_BYTES = 65536
RECEIVE_BYTES = 65536
# http.client sends a Content-Length: 0 for these when they have no body; servers may require it.
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# What no request target may hold (http.client's rule): controls, space, DEL.
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
# What no header name or value may hold: it would end the line, or the head, early.
_BAD_FIELD = re.compile(r"[\r\n\x00]")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9]\d\d)(?: [^\r\n]*)?")
_FIELD_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
_CLOSED_EARLY = "the server closed the connection before its answer was whole"


class BadAnswer(Exception):
    """The server's answer is not an HTTP/1.1 answer, or ended before it was whole."""


def request_head(method, target, host, headers, body_length):
    """A request's head as bytes, its empty line included.

    ``ValueError`` for a target or header that would break the message (a
    CR or LF in a value from a client), as http.client raises.
    """
    if _BAD_TARGET.search(target):
        # Not echoed: a listener's query may hold a token, and this text goes to the log.
        raise ValueError("the request target holds a control character or a space")
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"]
    for name, value in headers.items():
        if not name or ":" in name or _BAD_FIELD.search(name) or _BAD_FIELD.search(value):
            raise ValueError(f"the header {name!r} cannot be sent as it is")
        lines.append(f"{name}: {value}\r\n")
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}\r\n\r\n")
    else:
        lines.append("Content-Length: 0\r\n\r\n" if method in _METHODS_WITH_BODY else "\r\n")
    return "".join(lines).encode("latin-1")


def host_header(hostname, port, default_port):
    """The Host header's value for ``hostname`` (as ``urlsplit`` gives it) and ``port``."""
    host = hostname if hostname.isascii() else hostname.encode("idna").decode("ascii")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return host if port is None or port == default_port else f"{host}:{port}"


def exchange(sock, method, request):
    """Send ``request`` (head and body), read its answer: ``(status, body, reusable)``.

    ``reusable`` is false when the connection cannot carry another request:
    the server said ``Connection: close`` or spoke HTTP/1.0, ended the body
    by closing the connection, or sent more than its answer. ``OSError`` from
    the socket (``TimeoutError`` when a read timed out) and :class:`BadAnswer`
    go to the caller.
    """
    sock.sendall(request)
    reading = read_answer(method)
    try:
        wanted = next(reading)
        while True:
            wanted = reading.send(sock.recv(wanted))
    except StopIteration as read:
        return read.value


async def exchange_async(reader, writer, method, request, timeout_s):
    """:func:`exchange` over asyncio's streams: ``TimeoutError`` when sending, or one read,
    takes longer than ``timeout_s`` (the connection is then aborted)."""
    watchdog = _Watchdog(writer.transport, timeout_s)
    try:
        writer.write(request)
        await writer.drain()
        reading = read_answer(method)
        wanted = next(reading)
        while True:
            data = await reader.read(wanted)
            watchdog.progressed()
            wanted = reading.send(data)
    except StopIteration as read:
        return read.value
    except (OSError, BadAnswer):
        if watchdog.fired:  # what it ended reads as a closed connection
            raise TimeoutError(f"no progress within {timeout_s:g} s") from None
        raise
    finally:
        watchdog.cancel()


class _Watchdog:
    """Aborts a connection on which nothing progressed for ``timeout_s``: one timer for the
    whole exchange, moved on only when it comes due, where ``asyncio.timeout`` around each
    read cost a timer and a context each (a tenth of a millisecond a callback)."""

    def __init__(self, transport, timeout_s):
        self._transport = transport
        self._timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._progressed_at = self._loop.time()
        self._timer = self._loop.call_at(self._progressed_at + timeout_s, self._due)
        self.fired = False

    def progressed(self):
        self._progressed_at = self._loop.time()

    def cancel(self):
        self._timer.cancel()

    def _due(self):
        due_at = self._progressed_at + self._timeout_s
        if self._loop.time() < due_at:
            self._timer = self._loop.call_at(due_at, self._due)
            return
        self.fired = True
        self._transport.abort()


def read_answer(method):
    """The reading of one answer to a ``method`` request, without I/O: a generator that yields
    how many bytes it takes at most and is sent what was received (``b""`` once the server
    closed), until it returns ``(status, body, reusable)``. Each driver above feeds it from
    its own kind of connection: one parser, not one per kind."""
    return _Answer().read(method)


class _Answer:
    """The reading of one answer; ``_buffer`` holds what was received and not yet taken."""

    def __init__(self):
        self._buffer = b""
        self._counted = 0  # bytes of heads, a chunk line or trailers taken: MAX_HEAD_BYTES at most

    def read(self, method):
        status, version, fields = yield from self._head()
        while status < 200:
            if status == 101:
                raise BadAnswer("101 Switching Protocols, when no upgrade was asked for")
            status, version, fields = yield from self._head()
        reusable = version == b"1" and b"close" not in _tokens(fields.get(b"connection", b""))
        if method == "HEAD" or status in (204, 304) or method == "CONNECT" and status < 300:  # a tunnel follows a CONNECT's
            body = b""
        elif b"transfer-encoding" in fields:
            if _tokens(fields[b"transfer-encoding"]) != [b"chunked"]:
                raise BadAnswer("a transfer coding other than chunked, which was not asked for")
            body = yield from self._chunked()
            reusable = reusable and b"content-length" not in fields  # RFC 9112 6.3: a message smuggled past others
        elif b"content-length" in fields:
            body = yield from self._exactly(_content_length(fields[b"content-length"]))
        else:
            return status, (yield from self._until_closed()), False
        return status, body, reusable and not self._buffer

    def _head(self):
        """The next head: its status, HTTP minor version and fields."""
        lines = (yield from self._through(b"\r\n\r\n", "heads")).split(b"\r\n")
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            raise BadAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        return int(match.group(2)), match.group(1), _fields(lines[1:])

    def _through(self, end_mark, what):
        """The bytes up to the next ``end_mark``, without it; counted against MAX_HEAD_BYTES."""
        while (end := self._buffer.find(end_mark)) < 0:
            if self._counted + len(self._buffer) > MAX_HEAD_BYTES:
                raise BadAnswer(f"{what} longer than {MAX_HEAD_BYTES} bytes")
            self._buffer += yield from self._receive(RECEIVE_BYTES)
        self._counted += end + len(end_mark)
        if self._counted > MAX_HEAD_BYTES:
            raise BadAnswer(f"{what} longer than {MAX_HEAD_BYTES} bytes")
        taken, self._buffer = self._buffer[:end], self._buffer[end + len(end_mark) :]
        return taken

    @staticmethod
    def _receive(most):
        data = yield most
        if not data:
            raise BadAnswer(_CLOSED_EARLY)
        return data

    def _exactly(self, length):
        """The next ``length`` bytes; memory taken as they arrive, not as the server announces them."""
        have = len(self._buffer)
        if have >= length:
            data, self._buffer = self._buffer[:length], self._buffer[length:]
            return data
        parts = [self._buffer]
        self._buffer = b""
        while have < length:
            data = yield from self._receive(min(length - have, RECEIVE_BYTES))  # never past them
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def _chunked(self):
        chunks = []
        while True:
            self._counted = 0  # each chunk line on its own: a body of many small chunks is no long head
            match = _CHUNK_SIZE.fullmatch((yield from self._through(b"\r\n", "chunk lines and trailers")))
            if match is None:
                raise BadAnswer("a malformed chunk size line")
            size = int(match.group(1), 16)
            if size == 0:
                break
            chunks.append((yield from self._exactly(size)))
            if (yield from self._exactly(2)) != b"\r\n":
                raise BadAnswer("a chunk longer than its size")
        while (yield from self._through(b"\r\n", "chunk lines and trailers")):  # trailer fields, not used
            pass
        return b"".join(chunks)

    def _until_closed(self):
        parts = [self._buffer]
        while data := (yield RECEIVE_BYTES):
            parts.append(data)
        self._buffer = b""
        return b"".join(parts)


def _fields(lines):
    """Header lines as {lower-case name: value}, the values of a repeated name joined by commas."""
    fields = {}
    for line in lines:
        match = _FIELD_LINE.fullmatch(line)
        if match is None:  # folded (obsolete), or not a field at all
            raise BadAnswer(f"a malformed header line: {line[:80]!r}")
        name, value = match.group(1).lower(), match.group(2)
        fields[name] = fields[name] + b", " + value if name in fields else value
    return fields


def _tokens(value):
    return [token.strip().lower() for token in value.split(b",")]


def _content_length(value):
    lengths = {length.strip() for length in value.split(b",")}
    if len(lengths) != 1 or not (length := lengths.pop()).isdigit() or len(length) > 15:
        raise BadAnswer(f"an unusable Content-Length: {value[:40]!r}")
    return int(length)
